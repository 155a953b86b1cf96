// .npy reading: whole-file loads, and the two-step read straight into someone else's
// memory (read_npy_info, read_npy_into) that the CLI uses to fill a Session's arena.
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "atrous/npy.h"

namespace atrous {
namespace {

// A fresh folder under $TMPDIR, removed with its files at scope exit.
struct TempDir {
  std::string path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "atrous-npy-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()));
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

// A v1 .npy file with any descr and raw data bytes, written by hand (f64 is not
// something save_npy writes).
void write_raw_npy(const std::string& path, const std::string& descr, const std::string& shape, const void* data, size_t n) {
  std::string h = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  h.append((64 - (10 + h.size() + 1) % 64) % 64, ' ');
  h += '\n';
  std::FILE* f = std::fopen(path.c_str(), "wb");
  REQUIRE(f);
  const unsigned char magic[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, static_cast<unsigned char>(h.size() & 0xff),
                                   static_cast<unsigned char>(h.size() >> 8)};
  std::fwrite(magic, 1, sizeof magic, f);
  std::fwrite(h.data(), 1, h.size(), f);
  if (n) std::fwrite(data, 1, n, f);
  std::fclose(f);
}

TEST_CASE("read_npy_into fills a caller's buffer with the file's data", "[npy]") {
  TempDir tmp;
  const std::string& dir = tmp.path;
  Tensor t = Tensor::zeros(DType::kF32, {3, 5, 7});
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = 0.25f * static_cast<float>(i) - 3.0f;
  REQUIRE(save_npy(dir + "/a.npy", t.view()).ok());
  auto info = read_npy_info(dir + "/a.npy");
  REQUIRE(info.ok());
  CHECK(info->dtype == DType::kF32);
  CHECK(info->shape == Shape{3, 5, 7});
  std::vector<float> dst(105, -1.f);
  REQUIRE(read_npy_into(dir + "/a.npy", TensorView{DType::kF32, {3, 5, 7}, dst.data()}).ok());
  CHECK(std::memcmp(dst.data(), t.raw(), t.nbytes()) == 0);
  auto loaded = load_npy(dir + "/a.npy");
  REQUIRE(loaded.ok());
  CHECK(std::memcmp(loaded->raw(), t.raw(), t.nbytes()) == 0);

  Status st = read_npy_into(dir + "/a.npy", TensorView{DType::kF32, {5, 3, 7}, dst.data()});
  CHECK_THAT(st.message(), Catch::Contains("holds f32 [3, 5, 7], the destination is f32 [5, 3, 7]"));
  st = read_npy_into(dir + "/a.npy", TensorView{DType::kI32, {3, 5, 7}, dst.data()});
  CHECK_THAT(st.message(), Catch::Contains("the destination is i32"));
  CHECK_THAT(read_npy_info(dir + "/none.npy").status().message(), Catch::Contains("cannot open"));
}

TEST_CASE("f64 files are narrowed to f32 across the reader's chunks", "[npy]") {
  TempDir tmp;
  const std::string& dir = tmp.path;
  const size_t n = 20011;  // more than two 8192-element chunks, ragged
  std::vector<double> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = 1e-3 * static_cast<double>(i) - 7.123456789;
  write_raw_npy(dir + "/d.npy", "<f8", "(" + std::to_string(n) + ",)", v.data(), n * 8);
  auto info = read_npy_info(dir + "/d.npy");
  REQUIRE(info.ok());
  CHECK(info->dtype == DType::kF32);
  std::vector<float> dst(n);
  REQUIRE(read_npy_into(dir + "/d.npy", TensorView{DType::kF32, {static_cast<int64_t>(n)}, dst.data()}).ok());
  auto whole = load_npy(dir + "/d.npy");
  REQUIRE(whole.ok());
  for (size_t i = 0; i < n; ++i) {
    INFO("element " << i);
    REQUIRE(dst[i] == static_cast<float>(v[i]));
    REQUIRE(whole->data<float>()[i] == static_cast<float>(v[i]));
  }
}

TEST_CASE("truncated and malformed .npy files are refused by name", "[npy]") {
  TempDir tmp;
  const std::string& dir = tmp.path;
  std::vector<float> v(10, 1.f);
  write_raw_npy(dir + "/short.npy", "<f4", "(4, 5)", v.data(), v.size() * 4);  // 20 elements claimed, 10 present
  CHECK_THAT(read_npy_info(dir + "/short.npy").status().message(),
             Catch::Contains("short.npy' is truncated: shape [4, 5] needs 80 data bytes, the file has 40"));
  CHECK_THAT(load_npy(dir + "/short.npy").status().message(), Catch::Contains("is truncated"));
  write_raw_npy(dir + "/c.npy", "<c8", "(2,)", v.data(), 16);
  CHECK_THAT(read_npy_info(dir + "/c.npy").status().message(), Catch::Contains("dtype '<c8' is not supported"));
  std::FILE* f = std::fopen((dir + "/junk.npy").c_str(), "wb");
  std::fputs("not a numpy file", f);
  std::fclose(f);
  CHECK_THAT(read_npy_info(dir + "/junk.npy").status().message(), Catch::Contains("is not a .npy file (bad magic)"));
  CHECK_THAT(read_npy_info(dir).status().message(), Catch::Contains("is not a regular file"));
}

}  // namespace
}  // namespace atrous
