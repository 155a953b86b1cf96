// The loader refuses malformed model files with a message that names the
// problem, and never crashes. Files are made with the writer (valid ones) or
// by hand-editing the FlatBuffer object tree / raw bytes (hostile ones).
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "atrous/atrous.h"
#include "atrous/atrous_generated.h"
#include "builder/graph_builder.h"
#include "format/model_file.h"
#include "format/model_writer.h"
#include "test_util.h"

namespace atrous {
namespace {

// A small valid model: x → conv(3x3) → relu → y.
std::vector<uint8_t> valid_model() {
  ModelBuilder mb("tiny", "loader_test");
  GraphBuilder& g = mb.graph("main");
  int x = g.input("x", DType::kF32, {1, 2, -1, -1});
  std::vector<float> w(4 * 2 * 3 * 3, 0.1f), b(4, 0.5f);
  int wt = g.constant_f32("conv.weight", {4, 2, 3, 3}, w);
  int bi = g.constant_f32("conv.bias", {4}, b);
  fb::Conv2dT c;
  c.pad_top = c.pad_left = c.pad_bottom = c.pad_right = 1;
  int y = g.node("conv", c, {x, wt, bi});
  fb::UnaryT u;
  u.kind = fb::ActKind::Relu;
  int z = g.node("relu", u, {y});
  g.output(z, "y");
  auto bytes = mb.to_bytes();
  REQUIRE(bytes.ok());
  return *bytes;
}

std::string load_error(const std::vector<uint8_t>& bytes) {
  auto m = Model::from_memory(bytes.data(), bytes.size());
  if (m.ok()) return "ok";
  return m.status().to_string();
}

std::vector<uint8_t> edited(const std::function<void(fb::ModelT&)>& edit) { return test::edit_model(valid_model(), edit); }

fb::ValueT* value_named(fb::GraphT& g, const std::string& name) {
  for (auto& v : g.values)
    if (v->name == name) return v.get();
  FAIL("no value " << name);
  return nullptr;
}

TEST_CASE("a valid model loads and runs", "[loader]") {
  auto bytes = valid_model();
  auto m = Model::from_memory(bytes.data(), bytes.size());
  REQUIRE(m.ok());
  REQUIRE((*m)->info().entries.size() == 1);
  CHECK((*m)->info().entries[0].inputs[0].shape == Shape{1, 2, -1, -1});
}

TEST_CASE("empty file", "[loader]") {
  std::vector<uint8_t> empty;
  CHECK_THAT(load_error(empty), Catch::Contains("is empty (0 bytes)"));
}

TEST_CASE("file truncated at several points", "[loader]") {
  auto bytes = valid_model();
  FileHeader h;
  std::memcpy(&h, bytes.data(), sizeof h);
  for (size_t cut : {size_t{1}, size_t{10}, size_t{63}, size_t{64}, size_t{80}, static_cast<size_t>(h.graph_size / 2 + 64),
                     static_cast<size_t>(h.data_offset), bytes.size() - 1}) {
    INFO("cut at " << cut << " of " << bytes.size());
    std::vector<uint8_t> t(bytes.begin(), bytes.begin() + static_cast<long>(cut));
    std::string e = load_error(t);
    CHECK_THAT(e, Catch::Contains("truncated"));
  }
}

TEST_CASE("wrong magic and wrong FlatBuffers identifier", "[loader]") {
  auto bytes = valid_model();
  auto a = bytes;
  a[0] = 'X';
  CHECK_THAT(load_error(a), Catch::Contains("not an Atrous model file"));
  auto b = bytes;
  b[kHeaderSize + 4] = 'Z';  // FlatBuffers identifier "ATRS" follows the root offset
  CHECK_THAT(load_error(b), Catch::Contains("identifier \"ATRS\""));
  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  png.resize(200, 0);
  CHECK_THAT(load_error(png), Catch::Contains("not an Atrous model file"));
}

TEST_CASE("newer major version is refused clearly", "[loader]") {
  auto bytes = valid_model();
  uint32_t v = kFormatMajor + 1;
  std::memcpy(bytes.data() + 8, &v, 4);
  std::string e = load_error(bytes);
  CHECK_THAT(e, Catch::Contains("uses format version 2.0, newer than this reader (1.0)"));
  CHECK_THAT(e, Catch::StartsWith("unsupported"));
}

TEST_CASE("corrupt FlatBuffer fails verification", "[loader]") {
  auto bytes = valid_model();
  // Point the root table far outside the buffer.
  uint32_t bad = 0x7ffffff0;
  std::memcpy(bytes.data() + kHeaderSize, &bad, 4);
  CHECK_THAT(load_error(bytes), Catch::Contains("failed verification"));
}

TEST_CASE("weight offset out of range", "[loader]") {
  auto bytes = edited([](fb::ModelT& m) { value_named(*m.graphs[0], "conv.weight")->data_offset = 1ull << 40; });
  CHECK_THAT(load_error(bytes), Catch::Contains("'conv.weight'") && Catch::Contains("lies outside the data section"));
  auto huge = edited([](fb::ModelT& m) {
    value_named(*m.graphs[0], "conv.weight")->data_offset = 0xffffffffffffffc0ull;  // offset + length overflows
  });
  CHECK_THAT(load_error(huge), Catch::Contains("lies outside the data section"));
}

TEST_CASE("shape does not match the stored length", "[loader]") {
  auto bytes = edited([](fb::ModelT& m) { value_named(*m.graphs[0], "conv.weight")->shape = {4, 2, 3, 4}; });
  CHECK_THAT(load_error(bytes), Catch::Contains("'conv.weight'") && Catch::Contains("needs 384 bytes but the file stores 288"));
}

TEST_CASE("2^40-element tensor is refused without allocating", "[loader]") {
  auto bytes = edited([](fb::ModelT& m) {
    auto* v = value_named(*m.graphs[0], "conv.weight");
    v->shape = {1ll << 20, 1ll << 20, 1, 1};
  });
  CHECK_THAT(load_error(bytes), Catch::Contains("'conv.weight'") && Catch::Contains("needs 4398046511104 bytes"));
  auto overflow = edited([](fb::ModelT& m) { value_named(*m.graphs[0], "conv.weight")->shape = {1ll << 40, 1ll << 40, 1, 1}; });
  CHECK_THAT(load_error(overflow), Catch::Contains("overflows"));
}

TEST_CASE("dangling input", "[loader]") {
  auto bytes = edited([](fb::ModelT& m) {
    auto& g = *m.graphs[0];
    auto v = std::make_unique<fb::ValueT>();
    v->name = "ghost";
    g.values.push_back(std::move(v));
    g.nodes[1]->inputs[0] = static_cast<int>(g.values.size()) - 1;
  });
  CHECK_THAT(load_error(bytes), Catch::Contains("node 1 'relu'") && Catch::Contains("input 'ghost' is neither a graph input, a constant, nor produced"));
  auto out_of_range = edited([](fb::ModelT& m) { m.graphs[0]->nodes[1]->inputs[0] = 999; });
  CHECK_THAT(load_error(out_of_range), Catch::Contains("node 1 'relu'") && Catch::Contains("refers to value 999"));
}

TEST_CASE("cycle", "[loader]") {
  auto bytes = edited([](fb::ModelT& m) {
    auto& g = *m.graphs[0];
    // conv reads relu's output: conv → relu → conv.
    int relu_out = static_cast<int>(g.nodes[1]->outputs[0]);
    g.nodes[0]->inputs[0] = relu_out;
  });
  CHECK_THAT(load_error(bytes), Catch::Contains("has a cycle through node"));
}

TEST_CASE("unknown node type", "[loader]") {
  std::vector<uint8_t> bytes = valid_model();
  // Rewrite the union type byte of node 1 with a value this build does not know:
  // FlatBuffers verifies unknown union members as opaque, so our check must catch it.
  fb::Model* root = fb::GetMutableModel(bytes.data() + kHeaderSize);
  fb::Node* node = root->mutable_graphs()->GetMutableObject(0)->mutable_nodes()->GetMutableObject(1);
  REQUIRE(reinterpret_cast<flatbuffers::Table*>(node)->SetField<uint8_t>(fb::Node::VT_OP_TYPE, 200, 0));
  std::string e = load_error(bytes);
  CHECK_THAT(e, Catch::Contains("node 1 'relu'") && Catch::Contains("unknown node type 200"));
}

TEST_CASE("attribute out of range names node and attribute", "[loader]") {
  auto bytes = edited([](fb::ModelT& m) { m.graphs[0]->nodes[0]->op.AsConv2d()->stride_h = 0; });
  CHECK_THAT(load_error(bytes), Catch::Contains("node 0 'conv' (Conv2d)") && Catch::Contains("stride must be in 1..4096"));
  auto groups = edited([](fb::ModelT& m) { m.graphs[0]->nodes[0]->op.AsConv2d()->groups = 3; });
  CHECK_THAT(load_error(groups), Catch::Contains("not divisible by groups=3"));
}

TEST_CASE("wrong input dtype and wrong arity", "[loader]") {
  auto dt = edited([](fb::ModelT& m) { value_named(*m.graphs[0], "x")->dtype = fb::DType::I64; });
  CHECK_THAT(load_error(dt), Catch::Contains("node 0 'conv' (Conv2d)") && Catch::Contains("input 0 'x' has dtype i64, expected f32"));
  auto arity = edited([](fb::ModelT& m) { m.graphs[0]->nodes[1]->inputs.push_back(0); });
  CHECK_THAT(load_error(arity), Catch::Contains("node 1 'relu'") && Catch::Contains("has 2 inputs, expected 1"));
}

TEST_CASE("value produced twice or output never produced", "[loader]") {
  auto twice = edited([](fb::ModelT& m) { m.graphs[0]->nodes[1]->outputs[0] = m.graphs[0]->nodes[0]->outputs[0]; });
  CHECK_THAT(load_error(twice), Catch::Contains("is already produced by node"));
}

TEST_CASE("plan refuses input shapes whose activations exceed the memory budget", "[loader][budget]") {
  auto bytes = valid_model();
  auto m = Model::from_memory(bytes.data(), bytes.size());
  REQUIRE(m.ok());
  SessionOptions o;
  o.max_memory = 1 << 20;
  auto s = Session::create(*m, o);
  REQUIRE(s.ok());
  Status st = (*s)->reshape({{1, 2, 4000, 4000}});
  CHECK(st.code() == StatusCode::kOutOfMemory);
  CHECK_THAT(st.message(), Catch::Contains("over the memory budget of 1048576 bytes"));
  // Absurd shapes: 2^40 elements are refused before anything is allocated.
  Status huge = (*s)->reshape({{1, 2, 1 << 20, 1 << 20}});
  CHECK(huge.code() == StatusCode::kOutOfMemory);
}

// Resident KiB of this process's mappings of `path` (from /proc/self/smaps).
long resident_kib(const std::string& path) {
  std::ifstream f("/proc/self/smaps");
  std::string line;
  bool in = false;
  long kib = 0;
  while (std::getline(f, line)) {
    if (!line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) && line.find('-') != std::string::npos &&
        line.find(' ') > line.find('-'))
      in = line.size() >= path.size() && line.compare(line.size() - path.size(), path.size(), path) == 0;
    else if (in && line.rfind("Rss:", 0) == 0)
      kib += std::stol(line.substr(4));
  }
  return kib;
}

uint64_t checksum(const uint8_t* p, uint64_t n) {
  uint64_t h = 1469598103934665603ull;
  for (uint64_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

TEST_CASE("release_pages drops a mapped file's pages and the bytes read the same again", "[loader][memory]") {
  // A model whose data section spans many pages: one 1 MiB constant.
  ModelBuilder mb("big", "loader_test");
  GraphBuilder& g = mb.graph("main");
  int x = g.input("x", DType::kF32, {1, 512, -1, -1});
  std::vector<float> w(512 * 512);
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(i % 977) * 1e-3f;
  fb::Conv2dT c;
  g.output(g.node("conv", c, {x, g.constant_f32("conv.weight", {512, 512, 1, 1}, w), -1}), "y");
  auto bytes = mb.to_bytes();
  REQUIRE(bytes.ok());
  const std::string path = (std::filesystem::temp_directory_path() / ("atrous-release-" + std::to_string(::getpid()) + ".atrous")).string();
  {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes->data()), static_cast<std::streamsize>(bytes->size()));
  }
  auto file = ModelFile::open(path);
  REQUIRE(file.ok());
  const ModelFile& mf = **file;
  REQUIRE(mf.data_size() >= 1u << 20);
  const uint64_t before = checksum(mf.data_section(), mf.data_size());  // touches every page
  const long touched = resident_kib(path);
  CHECK(touched >= 1024);
  mf.release_pages(mf.data_section(), mf.data_size());
  const long after = resident_kib(path);
  INFO("resident KiB: " << touched << " touched, " << after << " after release_pages");
  CHECK(after <= touched - 1000);
  CHECK(checksum(mf.data_section(), mf.data_size()) == before);
  // Outside the mapping: nothing happens.
  std::vector<uint8_t> other(8192, 7);
  mf.release_pages(other.data(), other.size());
  CHECK(other[4096] == 7);

  // A from_memory copy is anonymous memory: releasing must not zero it.
  auto copy = ModelFile::from_memory(bytes->data(), bytes->size());
  REQUIRE(copy.ok());
  const uint64_t copy_sum = checksum((*copy)->data_section(), (*copy)->data_size());
  (*copy)->release_pages((*copy)->data_section(), (*copy)->data_size());
  CHECK(checksum((*copy)->data_section(), (*copy)->data_size()) == copy_sum);
  CHECK(copy_sum == before);

  // Through a plan: the conv packs its weight (its pages are dropped), and the model
  // opened from the file computes what the in-memory one does.
  auto from_file = Model::open(path);
  auto in_memory = Model::from_memory(bytes->data(), bytes->size());
  REQUIRE(from_file.ok());
  REQUIRE(in_memory.ok());
  Tensor xin = Tensor::zeros(DType::kF32, {1, 512, 3, 5});
  for (int64_t i = 0; i < xin.numel(); ++i) xin.data<float>()[i] = static_cast<float>(i % 13) - 6.0f;
  std::vector<Tensor> outs;
  for (auto* m : {&*from_file, &*in_memory}) {
    auto s = Session::create(*m, SessionOptions{});
    REQUIRE(s.ok());
    REQUIRE((*s)->set_input("x", xin.view()).ok());
    REQUIRE((*s)->run().ok());
    outs.push_back(Tensor::copy_of(*(*s)->output("y")));
  }
  CHECK(std::memcmp(outs[0].raw(), outs[1].raw(), outs[0].nbytes()) == 0);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace atrous
