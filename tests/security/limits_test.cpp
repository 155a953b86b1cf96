// Memory limits on hostile inputs: images that claim absurd sizes are refused
// from their header, before any pixel is decoded; plans over budget are refused
// before allocating, with both numbers in the message.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "atrous/atrous.h"
#include "atrous/image.h"
#include "atrous/npy.h"
#include "builder/graph_builder.h"

namespace atrous {
namespace {

std::vector<uint8_t> read_file(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

TEST_CASE("an image claiming 100000x100000 pixels is refused from its header", "[security]") {
  std::string path = std::string(ATROUS_REGRESSIONS_DIR) + "/image/png_claims_100000x100000.png";
  auto bytes = read_file(path);
  REQUIRE(!bytes.empty());
  auto img = decode_image(bytes.data(), bytes.size(), "huge.png");
  REQUIRE_FALSE(img.ok());
  CHECK(img.status().code() == StatusCode::kOutOfMemory);
  CHECK_THAT(img.status().message(),
             Catch::Contains("claims 100000x100000 = 10000000000 pixels, over the limit of 100000000"));
  auto small = decode_image(bytes.data(), bytes.size(), "huge.png", /*max_pixels=*/1000);
  CHECK_FALSE(small.ok());
}

TEST_CASE("files given by path: special files and oversized ones are refused, never read", "[security]") {
  // /dev/zero never ends and a FIFO without a writer blocks its reader: both used to hang
  // (and /dev/zero to eat memory) in load_image, load_label_png and the CLI's text files.
  const std::string dir = std::filesystem::temp_directory_path() / ("atrous_special_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string fifo = dir + "/fifo.png", big = dir + "/big.png";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  for (const std::string& p : {std::string("/dev/zero"), fifo}) {
    auto img = load_image(p);
    REQUIRE_FALSE(img.ok());
    CHECK(img.status().message() == "'" + p + "' is not a regular file");
    auto lab = load_label_png(p);
    REQUIRE_FALSE(lab.ok());
    CHECK(lab.status().message() == "'" + p + "' is not a regular file");
    auto npy = load_npy(p);
    REQUIRE_FALSE(npy.ok());
    CHECK(npy.status().message() == "'" + p + "' is not a regular file");
  }
  // A sparse file one byte over the limit: refused from its size, nothing allocated.
  { std::ofstream(big).put('x'); }
  std::filesystem::resize_file(big, kMaxImageFileBytes + 1);
  auto img = load_image(big);
  REQUIRE_FALSE(img.ok());
  CHECK(img.status().message() == "image '" + big + "' is " + std::to_string(kMaxImageFileBytes + 1) +
                                      " bytes, over the limit of " + std::to_string(kMaxImageFileBytes));
  std::filesystem::remove_all(dir);
}

TEST_CASE("a palette PNG without a palette still gives its indices, without crashing", "[security]") {
  auto r = load_label_png(std::string(ATROUS_REGRESSIONS_DIR) + "/image/png_palette_without_plte.png");
  if (r.ok()) CHECK((r->width == 64 && r->height == 64 && r->labels.size() == 64u * 64u));
}

TEST_CASE("max_memory refuses arena plus packed weights with both numbers", "[security]") {
  ModelBuilder mb("budget", "tests");
  GraphBuilder& g = mb.graph("main");
  int x = g.input("x", DType::kF32, {1, 64, -1, -1});
  fb::Conv2dT c;
  c.pad_top = c.pad_left = c.pad_bottom = c.pad_right = 1;
  int y = g.node("conv", c, {x, g.constant_f32("w", {64, 64, 3, 3}, std::vector<float>(64 * 64 * 9, 0.01f)), -1});
  g.output(y, "y");
  auto bytes = mb.to_bytes();
  REQUIRE(bytes.ok());
  auto m = Model::from_memory(bytes->data(), bytes->size());
  REQUIRE(m.ok());
  SessionOptions o;
  o.max_memory = 2 << 20;  // 2 MiB: activations of 64x128x128 f32 alone are 4 MiB each
  auto s = Session::create(*m, o);
  REQUIRE(s.ok());
  Status st = (*s)->reshape({{1, 64, 128, 128}});
  CHECK(st.code() == StatusCode::kOutOfMemory);
  CHECK_THAT(st.message(), Catch::Contains("needs at least 8388608 bytes") && Catch::Contains("over the memory budget of 2097152 bytes"));
  // Within budget at a smaller size.
  CHECK((*s)->reshape({{1, 64, 16, 16}}).ok());
}

}  // namespace
}  // namespace atrous
