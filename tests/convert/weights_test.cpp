// open_weights() against files written by torch.save and by hand
// (make_weight_fixtures.py): good files must give back exactly the tensors
// Python put in, hostile ones must fail with a message that says which file,
// which tensor and what is wrong.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "convert/weights.h"

using atrous::DType;
using atrous::StatusCode;
using atrous::convert::open_weights;
using atrous::convert::open_weights_from_memory;
using atrous::convert::SourceTensor;
using atrous::convert::StoredType;
using atrous::convert::WeightSource;

namespace {

std::string fixtures() {
  const char* dir = std::getenv("ATROUS_CONVERT_FIXTURES");
  if (!dir || !*dir) FAIL("set ATROUS_CONVERT_FIXTURES to the output folder of make_weight_fixtures.py");
  return dir;
}

std::string fx(const std::string& name) { return fixtures() + "/" + name; }

std::vector<uint8_t> slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  REQUIRE(f.good());
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

const nlohmann::json& manifest() {
  static nlohmann::json m = [] {
    std::ifstream f(fx("manifest.json"));
    REQUIRE(f.good());
    return nlohmann::json::parse(f);
  }();
  return m;
}

std::unique_ptr<WeightSource> open_ok(const std::vector<std::string>& paths) {
  auto r = open_weights(paths);
  INFO(r.status().to_string());
  REQUIRE(r.ok());
  return std::move(r).value();
}

std::unique_ptr<WeightSource> open_ok(const std::string& name) { return open_ok(std::vector<std::string>{fx(name)}); }

std::vector<uint8_t> read_as(const WeightSource& src, const std::string& name, DType to) {
  const SourceTensor* t = src.find(name);
  REQUIRE(t != nullptr);
  size_t index = static_cast<size_t>(t - src.tensors().data());
  auto nbytes = atrous::checked_nbytes(t->shape, to);
  REQUIRE(nbytes.ok());
  std::vector<uint8_t> out(*nbytes);
  atrous::Status st = src.read(index, to, out.data());
  INFO(st.to_string());
  REQUIRE(st.ok());
  return out;
}

atrous::Status try_read(const WeightSource& src, const std::string& name, DType to) {
  const SourceTensor* t = src.find(name);
  REQUIRE(t != nullptr);
  std::vector<uint8_t> out(*atrous::checked_nbytes(t->shape, to));
  return src.read(static_cast<size_t>(t - src.tensors().data()), to, out.data());
}

std::string error_text(const std::vector<std::string>& paths) {
  auto r = open_weights(paths);
  REQUIRE_FALSE(r.ok());
  return r.status().to_string();
}

}  // namespace

TEST_CASE("good fixtures give back exactly the tensors torch saved", "[weights]") {
  for (const auto& [fixture, spec] : manifest()["good"].items()) {
    DYNAMIC_SECTION(fixture) {
      std::unique_ptr<WeightSource> src = open_ok(fixture);
      INFO(src->description());
      for (const auto& want : spec["description"])
        CHECK_THAT(src->description(), Catch::Contains(want.get<std::string>()));
      const auto& expected = spec["tensors"];
      REQUIRE(src->tensors().size() == expected.size());
      for (size_t i = 0; i < expected.size(); ++i) {
        const SourceTensor& t = src->tensors()[i];
        const auto& e = expected[i];
        INFO("tensor " << i << " '" << t.name << "'");
        CHECK(t.name == e["name"].get<std::string>());
        CHECK(atrous::dtype_name(t.dtype) == e["dtype"].get<std::string>());
        CHECK(t.shape == e["shape"].get<std::vector<int64_t>>());
        if (e.contains("stored")) CHECK(stored_type_name(t.stored) == e["stored"].get<std::string>());
        CHECK(src->find(t.name) == &t);
        std::vector<uint8_t> got = read_as(*src, t.name, t.dtype);
        CHECK(got == slurp(fx(e["data"].get<std::string>())));
      }
      CHECK(src->find("no such tensor") == nullptr);
    }
  }
  CHECK(manifest()["good"].size() >= 15);
}

TEST_CASE("conversions match numpy and torch", "[weights]") {
  for (const auto& c : manifest()["conversions"]) {
    std::string what =
        c["fixture"].get<std::string>() + " " + c["name"].get<std::string>() + " -> " + c["to"].get<std::string>();
    DYNAMIC_SECTION(what) {
      std::unique_ptr<WeightSource> src = open_ok(c["fixture"].get<std::string>());
      auto to = atrous::parse_dtype(c["to"].get<std::string>());
      REQUIRE(to.ok());
      CHECK(read_as(*src, c["name"].get<std::string>(), *to) == slurp(fx(c["data"].get<std::string>())));
    }
  }
  CHECK(manifest()["conversions"].size() >= 10);
}

TEST_CASE("hostile and unsupported files fail with one clear message", "[weights][security]") {
  for (const auto& [fixture, spec] : manifest()["bad"].items()) {
    DYNAMIC_SECTION(fixture) {
      auto r = open_weights({fx(fixture)});
      REQUIRE_FALSE(r.ok());
      std::string msg = r.status().to_string();
      INFO(msg);
      for (const auto& want : spec["contains"]) CHECK_THAT(msg, Catch::Contains(want.get<std::string>()));
      if (!spec["code"].is_null())
        CHECK(std::string(status_code_name(r.status().code())) == spec["code"].get<std::string>());
      // The same bytes from memory fail the same way (indexes need files, so they are refused).
      if (fixture.find(".json") == std::string::npos) {
        std::vector<uint8_t> bytes = slurp(fx(fixture));
        auto m = open_weights_from_memory(bytes.data(), bytes.size(), fixture);
        REQUIRE_FALSE(m.ok());
        CHECK(m.status().code() == r.status().code());
      }
    }
  }
  CHECK(manifest()["bad"].size() >= 40);
}

TEST_CASE("the code-execution pickle is refused with the exact message", "[weights][security]") {
  std::string path = fx("evil_os_system.pth");
  CHECK(error_text({path}) == "unsupported: pickle in " + path +
                                  ": global 'os.system' is not allowed (only tensors, dicts, lists and numbers can "
                                  "be read)");
}

TEST_CASE("shared storage: tied weights, views, transposes and expands", "[weights]") {
  std::unique_ptr<WeightSource> src = open_ok("shared.pth");
  // w = arange(24).reshape(4, 6) * 0.5 - 3, so element (r, c) is (6r + c) * 0.5 - 3.
  auto w = [](int r, int c) { return (6 * r + c) * 0.5f - 3; };
  auto floats = [&](const std::string& name) {
    std::vector<uint8_t> b = read_as(*src, name, DType::kF32);
    std::vector<float> f(b.size() / 4);
    std::memcpy(f.data(), b.data(), b.size());
    return f;
  };
  CHECK(floats("a") == floats("tied"));
  CHECK(floats("row") == std::vector<float>{w(1, 0), w(1, 1), w(1, 2), w(1, 3), w(1, 4), w(1, 5)});
  CHECK(floats("strided") == std::vector<float>{w(0, 0), w(0, 3), w(2, 0), w(2, 3)});
  std::vector<float> t = floats("t");
  REQUIRE(t.size() == 24);
  CHECK(t[1] == w(1, 0));
  CHECK(t[1 * 4 + 2] == w(2, 1));  // t is [6, 4] and t[i][j] == w[j][i]
  CHECK(floats("cols") == std::vector<float>{w(0, 2), w(0, 3), w(0, 4), w(1, 2), w(1, 3), w(1, 4), w(2, 2), w(2, 3),
                                             w(2, 4), w(3, 2), w(3, 3), w(3, 4)});
  CHECK(floats("elem") == std::vector<float>{w(3, 5)});
  CHECK(src->find("elem")->shape.empty());
  CHECK(floats("expanded") == std::vector<float>{1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3});
}

TEST_CASE("read() refuses lossy and out-of-range conversions", "[weights]") {
  std::unique_ptr<WeightSource> src = open_ok("basic.pth");
  SECTION("float to integer") {
    atrous::Status st = try_read(*src, "f32", DType::kI64);
    CHECK(st.code() == StatusCode::kInvalidArgument);
    CHECK_THAT(st.message(), Catch::Contains("tensor 'f32'") && Catch::Contains("basic.pth") &&
                                 Catch::Contains("float to integer conversion is refused"));
    CHECK_THAT(try_read(*src, "f64", DType::kU8).message(), Catch::Contains("holds f64 values"));
  }
  SECTION("integers are range-checked") {
    // i64 holds [-3, 0, 7, 2^40].
    CHECK_THAT(try_read(*src, "i64", DType::kI32).message(),
               Catch::Contains("tensor 'i64'") && Catch::Contains("element 3 is 1099511627776, which i32 cannot hold"));
    CHECK_THAT(try_read(*src, "i64", DType::kU8).message(), Catch::Contains("element 0 is -3, which u8 cannot hold"));
    CHECK_THAT(try_read(*src, "i8", DType::kU8).message(), Catch::Contains("element 0 is -128"));
    CHECK(try_read(*src, "u8", DType::kI64).ok());
  }
  SECTION("integers become floats only when exact") {
    CHECK(try_read(*src, "i64", DType::kF32).ok());  // 2^40 is a power of two
    CHECK_THAT(try_read(*src, "i64", DType::kF16).message(),
               Catch::Contains("element 3 is 1099511627776, which f16 cannot represent exactly"));
    CHECK_THAT(try_read(*src, "i16", DType::kBF16).message(), Catch::Contains("element 1 is 257, which bf16 cannot"));
    CHECK(try_read(*src, "i16", DType::kF16).ok());
  }
  SECTION("booleans read as 0 and 1") {
    CHECK(read_as(*src, "bool", DType::kI32) == std::vector<uint8_t>{1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0});
  }
  SECTION("f64 is reported as f32 and flagged") {
    const SourceTensor* t = src->find("f64");
    CHECK(t->dtype == DType::kF32);
    CHECK(t->from_f64());
    CHECK_FALSE(src->find("f32")->from_f64());
  }
  SECTION("index out of range") {
    uint8_t dummy[8];
    CHECK_THAT(src->read(999, DType::kF32, dummy).message(), Catch::Contains("tensor index 999 out of range"));
  }
}

TEST_CASE("shards: index files and several paths", "[weights]") {
  SECTION("safetensors shards given directly merge in order") {
    std::unique_ptr<WeightSource> src = open_ok(std::vector<std::string>{
        fx("sharded/model-00001-of-00002.safetensors"), fx("sharded/model-00002-of-00002.safetensors")});
    REQUIRE(src->tensors().size() == 4);
    CHECK(src->tensors()[0].name == "embed.weight");
    CHECK(src->tensors()[3].name == "head.bias");
    CHECK_THAT(src->tensors()[3].file, Catch::Contains("model-00002-of-00002.safetensors"));
    CHECK_THAT(src->description(), Catch::Contains("2 files merged"));
    std::unique_ptr<WeightSource> via_index = open_ok("sharded/model.safetensors.index.json");
    CHECK(read_as(*src, "layer.1.weight", DType::kF32) == read_as(*via_index, "layer.1.weight", DType::kF32));
  }
  SECTION("a name in two files is an error naming both") {
    std::string a = fx("bad_index/one.safetensors"), b = fx("bad_index/dup.safetensors");
    CHECK_THAT(error_text({a, b}), Catch::Contains("tensor 'x' appears in both " + a + " and " + b));
  }
  SECTION("nothing to open") { CHECK_THAT(error_text({}), Catch::Contains("no weight files given")); }
  SECTION("a missing file") { CHECK_THAT(error_text({fx("nope.pth")}), Catch::Contains("nope.pth: no such file")); }
  SECTION("an index cannot be opened from memory") {
    std::vector<uint8_t> bytes = slurp(fx("sharded/model.safetensors.index.json"));
    auto r = open_weights_from_memory(bytes.data(), bytes.size(), "index.json");
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.status().message(), Catch::Contains("cannot be opened from memory"));
  }
}

TEST_CASE("truncating a checkpoint anywhere gives an error, never a crash", "[weights][security]") {
  for (const char* name : {"shared.pth", "shared_deflated.pth", "basic.safetensors", "module.pth"}) {
    std::vector<uint8_t> bytes = slurp(fx(name));
    std::vector<size_t> cuts;
    for (size_t c = 0; c < bytes.size(); c += 1 + bytes.size() / 97) cuts.push_back(c);
    for (size_t back = 1; back <= 40 && back <= bytes.size(); ++back) cuts.push_back(bytes.size() - back);
    for (size_t cut : cuts) {
      std::vector<uint8_t> part(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(cut));
      auto r = open_weights_from_memory(part.data(), part.size(), name);
      INFO(name << " cut at " << cut << " of " << bytes.size());
      REQUIRE_FALSE(r.ok());
      CHECK_THAT(r.status().message(), Catch::Contains(name));
    }
  }
}

TEST_CASE("random byte damage never crashes open or read", "[weights][security]") {
  std::mt19937 rng(42);
  int opened = 0, failed = 0;
  for (const char* name : {"shared.pth", "module.pth", "basic.safetensors", "shared_deflated.pth"}) {
    const std::vector<uint8_t> clean = slurp(fx(name));
    for (int iter = 0; iter < 300; ++iter) {
      std::vector<uint8_t> bytes = clean;
      int flips = 1 + static_cast<int>(rng() % 4);
      for (int f = 0; f < flips; ++f) bytes[rng() % bytes.size()] = static_cast<uint8_t>(rng());
      auto r = open_weights_from_memory(bytes.data(), bytes.size(), name);
      if (!r.ok()) {
        ++failed;
        CHECK_FALSE(r.status().message().empty());
        continue;
      }
      ++opened;
      const WeightSource& src = **r;
      for (size_t i = 0; i < src.tensors().size(); ++i) {
        const SourceTensor& t = src.tensors()[i];
        DType to = atrous::convert::stored_type_is_float(t.stored) ? DType::kF32 : DType::kI64;
        auto nbytes = atrous::checked_nbytes(t.shape, to);
        REQUIRE(nbytes.ok());
        REQUIRE(*nbytes <= (uint64_t{1} << 30));  // open() bounds what a damaged file can make us allocate
        std::vector<uint8_t> out(*nbytes);
        atrous::Status st = src.read(i, to, out.data());
        (void)st;  // damaged data may fail to read (CRC, inflate); it must not crash
      }
    }
  }
  CHECK(opened > 0);
  CHECK(failed > 0);
}

TEST_CASE("reads from several threads at once agree", "[weights]") {
  std::unique_ptr<WeightSource> src = open_ok("shared_deflated.pth");
  std::vector<std::vector<uint8_t>> want;
  for (const SourceTensor& t : src->tensors()) want.push_back(read_as(*src, t.name, DType::kF32));
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      for (int rep = 0; rep < 20; ++rep)
        for (size_t i = 0; i < src->tensors().size(); ++i) {
          std::vector<uint8_t> out(want[i].size());
          if (!src->read(i, DType::kF32, out.data()).ok() || out != want[i]) ++mismatches[k];
        }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(mismatches == std::vector<int>(4, 0));
}

TEST_CASE("f64 narrows to f16 and bf16 in one rounding, not two", "[weights]") {
  // Each value sits just above a tie of the narrow type but rounds to the tie
  // in f32; rounding through f32 would then round the tie to even (down).
  const double values[] = {1 + 0x1p-11 + 0x1p-40, -(1 + 0x1p-11 + 0x1p-40), 1 + 0x1p-11, 1 + 0x1p-8 + 0x1p-40,
                           65520.0 - 0x1p-30};
  std::string header = R"({"d":{"dtype":"F64","shape":[5],"data_offsets":[0,40]}})";
  header.resize((header.size() + 7) / 8 * 8, ' ');
  std::vector<uint8_t> file(8);
  uint64_t len = header.size();
  std::memcpy(file.data(), &len, 8);
  file.insert(file.end(), header.begin(), header.end());
  const uint8_t* raw = reinterpret_cast<const uint8_t*>(values);
  file.insert(file.end(), raw, raw + sizeof(values));
  auto src = open_weights_from_memory(file.data(), file.size(), "f64.safetensors");
  REQUIRE(src.ok());
  auto halves = [&](DType to) {
    std::vector<uint8_t> b = read_as(**src, "d", to);
    std::vector<uint16_t> h(5);
    std::memcpy(h.data(), b.data(), 10);
    return h;
  };
  // f16 expectations agree with numpy's float64 -> float16; bf16 computed by hand
  // (torch's own double -> bfloat16 rounds through f32 and gives 0x3f80 for [3]).
  CHECK(halves(DType::kF16) == std::vector<uint16_t>{0x3c01, 0xbc01, 0x3c00, 0x3c04, 0x7bff});
  CHECK(halves(DType::kBF16) == std::vector<uint16_t>{0x3f80, 0xbf80, 0x3f80, 0x3f81, 0x4780});
}

namespace {

// Peak resident set size of this process since the last reset_peak_rss(), in KiB.
long peak_rss_kib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

bool reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";  // Linux: resets VmHWM to the current RSS
  f.flush();
  return f.good();
}

}  // namespace

TEST_CASE("reading one tensor costs memory for that tensor, not the file", "[weights]") {
  for (const char* name : {"big.pth", "big.safetensors"}) {
    DYNAMIC_SECTION(name) {
      std::unique_ptr<WeightSource> src = open_ok(name);
      std::vector<uint8_t> small(16), big(size_t{2048} * 4096 * 2);
      std::fill(big.begin(), big.end(), 1);  // touch it now so it is not counted below
      if (!reset_peak_rss()) WARN("cannot reset the peak RSS here; memory bound not checked");
      long before = peak_rss_kib();
      REQUIRE(before > 0);
      // The file holds 32 MiB; reading 16 bytes of it must not touch that much memory.
      REQUIRE(src->read(src->find("small") - src->tensors().data(), DType::kF32, small.data()).ok());
      CHECK(peak_rss_kib() - before < 4 * 1024);
      // Reading the big tensor converted to f16 goes through a bounded chunk buffer.
      REQUIRE(src->read(src->find("big") - src->tensors().data(), DType::kF16, big.data()).ok());
      CHECK(peak_rss_kib() - before < 8 * 1024);
      uint16_t h;
      std::memcpy(&h, big.data() + big.size() - 2, 2);
      CHECK(h == 0x3800);  // 0.5
    }
  }
}
