// `atrous run` on images and folders, and `atrous eval`, through the binary.
//   run: the tiny GCN model (converted from make_seg_cases.py's checkpoint) on PNG
//     RGB/gray/RGBA and JPEG images of odd sizes: a palette PNG mask and an overlay at
//     the image's own size, scores as .npy equal to PyTorch's; a folder with a corrupt
//     image and a text file: the corrupt one is reported by name and skipped.
//   eval: label maps written here, metrics worked out by hand; the errors users meet.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "atrous/image.h"
#include "atrous/npy.h"
#include "cli_runner.h"

namespace fs = std::filesystem;
using atrous::test::run_cli;
using nlohmann::json;

namespace {

std::string seg_cases(const std::string& rel) {
  const char* d = std::getenv("ATROUS_SEG_CASES");
  if (!d || !*d) FAIL("set ATROUS_SEG_CASES (run through ctest)");
  return std::string(d) + "/" + rel;
}

// The tiny GCN model (5 classes), converted once for all run tests.
const std::string& tiny_model() {
  static std::string path;
  if (path.empty()) {
    std::ifstream f(seg_cases("recipes/manifest.json"));
    REQUIRE(f.good());
    json m = json::parse(f);
    for (const json& c : m["cases"])
      if (c["name"] == "gcn_tiny_dilated") {
        std::string out = atrous::test::temp_dir("tiny") + "/tiny.atrous";
        std::vector<std::string> args = {"convert", "--arch", "gcn", c["weights"], "-o", out, "--set",
                                         "class_names=background,a,b,c,d"};
        for (const auto& s : c["conversions"][0]["sets"]) args.insert(args.end(), {"--set", s});
        auto r = run_cli(args);
        INFO(r.out << r.err);
        REQUIRE(r.code == 0);
        path = out;
      }
    REQUIRE(!path.empty());
  }
  return path;
}

void write_labels(const std::string& path, int w, int h, const std::vector<int32_t>& labels, bool gray = false) {
  if (gray) {
    atrous::Image im;
    im.width = w;
    im.height = h;
    im.channels = 1;
    for (int32_t l : labels) im.pixels.push_back(static_cast<uint8_t>(l));
    REQUIRE(atrous::save_png(path, im).ok());
  } else {
    atrous::LabelMap m{w, h, labels};
    REQUIRE(atrous::save_label_png(path, m, {}).ok());
  }
}

}  // namespace

TEST_CASE("atrous run: one image to a palette mask, an overlay and scores at the image's size", "[segmentation][cli]") {
  std::string dir = atrous::test::temp_dir("run");
  auto r = run_cli({"run", tiny_model(), seg_cases("images/rgb_37x53.png"), "-o", dir + "/mask.png", "--overlay",
                    dir + "/overlay.png", "--scores", dir + "/scores.npy"});
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  CHECK(r.out.find("mask:    " + dir + "/mask.png") != std::string::npos);
  auto mask = atrous::load_label_png(dir + "/mask.png");
  REQUIRE(mask.ok());
  CHECK(mask->width == 53);
  CHECK(mask->height == 37);
  auto ref = atrous::load_npy(seg_cases("images/rgb_37x53_classes.npy"));
  REQUIRE(ref.ok());
  REQUIRE(ref->numel() == 53 * 37);
  int same = 0;
  for (int64_t i = 0; i < ref->numel(); ++i) same += mask->labels[static_cast<size_t>(i)] == ref->data<int32_t>()[i];
  CHECK(same >= 53 * 37 * 99 / 100);  // the same classes as PyTorch (ties aside)
  auto ov = atrous::load_image(dir + "/overlay.png");
  REQUIRE(ov.ok());
  CHECK(ov->width == 53);
  CHECK(ov->height == 37);
  CHECK(ov->channels == 3);
  auto scores = atrous::load_npy(dir + "/scores.npy");
  auto ref_scores = atrous::load_npy(seg_cases("images/rgb_37x53_scores.npy"));
  REQUIRE(scores.ok());
  REQUIRE(ref_scores.ok());
  REQUIRE(scores->shape() == ref_scores->shape());
  double max_abs = 0, max_ref = 0;
  for (int64_t i = 0; i < scores->numel(); ++i) {
    max_abs = std::max(max_abs, static_cast<double>(std::fabs(scores->data<float>()[i] - ref_scores->data<float>()[i])));
    max_ref = std::max(max_ref, static_cast<double>(std::fabs(ref_scores->data<float>()[i])));
  }
  CHECK(max_abs <= 1e-3 * max_ref);
}

TEST_CASE("atrous run: grayscale, RGBA and JPEG images of any size", "[segmentation][cli]") {
  std::string dir = atrous::test::temp_dir("formats");
  struct Want { const char* file; int w, h; };
  for (Want want : {Want{"gray_37x53.png", 53, 37}, Want{"rgba_37x53.png", 53, 37}, Want{"photo_101x64.jpg", 64, 101}}) {
    INFO(want.file);
    std::string mask = dir + "/" + want.file + ".mask.png";
    auto r = run_cli({"run", tiny_model(), seg_cases(std::string("images/") + want.file), "-o", mask});
    INFO(r.out << r.err);
    REQUIRE(r.code == 0);
    auto m = atrous::load_label_png(mask);
    REQUIRE(m.ok());
    CHECK(m->width == want.w);
    CHECK(m->height == want.h);
  }
  // A corrupt image alone is an error that names it.
  auto r = run_cli({"run", tiny_model(), seg_cases("images/broken.png"), "-o", dir + "/x.png"});
  CHECK(r.code == 1);
  CHECK(r.err.find("broken.png") != std::string::npos);
}

TEST_CASE("atrous run: a folder, with a corrupt image reported by name and skipped", "[segmentation][cli]") {
  std::string out = atrous::test::temp_dir("folder");
  auto r = run_cli({"run", tiny_model(), seg_cases("images") + "/", "--output-dir", out, "--overlay"});
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  CHECK(r.err.find("skipped " + seg_cases("images") + "/broken.png") != std::string::npos);
  CHECK(r.out.find("4 images segmented, 1 skipped, mean latency") != std::string::npos);
  for (const char* stem : {"gray_37x53", "rgb_37x53", "rgba_37x53", "photo_101x64"}) {
    CHECK(fs::exists(out + "/" + stem + ".png"));
    CHECK(fs::exists(out + "/" + stem + "_overlay.png"));
  }
  CHECK(!fs::exists(out + "/broken.png"));
  auto m = atrous::load_label_png(out + "/photo_101x64.png");
  REQUIRE(m.ok());
  CHECK(m->width == 64);
  CHECK(m->height == 101);
}

TEST_CASE("atrous eval: hand-computed metrics over two image pairs", "[segmentation][cli][eval]") {
  std::string gt = atrous::test::temp_dir("gt"), pred = atrous::test::temp_dir("pred");
  // Together: GT 0 0 0 1 | 1 2 2 255, pred 0 0 1 1 | 2 2 0 1 -> rows [2 1 0] [0 1 1] [1 0 1].
  write_labels(gt + "/a.png", 4, 1, {0, 0, 0, 1}, /*gray=*/true);
  write_labels(gt + "/b.png", 2, 2, {1, 2, 2, 255}, /*gray=*/true);
  write_labels(pred + "/a.png", 4, 1, {0, 0, 1, 1});
  write_labels(pred + "/b.png", 2, 2, {2, 2, 0, 1});
  write_labels(pred + "/a_overlay.png", 4, 1, {0, 0, 0, 0});  // no ground truth: listed, not counted
  std::ofstream(gt + "/../names.txt") << "background\ncat\ndog\n";

  auto r = run_cli({"eval", "--pred", pred, "--gt", gt, "--num-classes", "3", "--json"});
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  CHECK(r.err.find("note: 1 prediction without ground truth, not counted: a_overlay.png") != std::string::npos);
  json j = json::parse(r.out);
  CHECK(j["images"] == 2);
  CHECK(j["pixels"] == 7);
  CHECK(j["ignored_pixels"] == 1);
  CHECK(j["pixel_accuracy"].get<double>() == Approx(4.0 / 7));
  CHECK(j["mean_pixel_accuracy"].get<double>() == Approx(5.0 / 9));
  CHECK(j["mean_iou"].get<double>() == Approx(7.0 / 18));
  CHECK(j["fw_iou"].get<double>() == Approx(17.0 / 42));
  CHECK(j["classes"][0]["iou"].get<double>() == Approx(0.5));
  CHECK(j["classes"][2]["iou"].get<double>() == Approx(1.0 / 3));
  CHECK(j["confusion_matrix"] == json::parse("[[2,1,0],[0,1,1],[1,0,1]]"));

  r = run_cli({"eval", "--pred", pred, "--gt", gt, "--num-classes", "4", "--class-names", gt + "/../names.txt"});
  CHECK(r.code == 1);
  CHECK(r.err.find("has 3 names (one per line), --num-classes is 4") != std::string::npos);
  r = run_cli({"eval", "--pred", pred, "--gt", gt, "--num-classes", "3", "--class-names", gt + "/../names.txt"});
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  CHECK(r.out.find("2 image pairs, 7 pixels counted, 1 ignored (ground truth = 255), 3 classes") != std::string::npos);
  CHECK(r.out.find("dog") != std::string::npos);
  CHECK(r.out.find("PA 0.5714  MPA 0.5556  MIoU 0.3889  FWIoU 0.4048") != std::string::npos);
}

TEST_CASE("atrous eval: missing pairs, size mismatches and labels outside the classes are clear errors",
          "[segmentation][cli][eval]") {
  std::string gt = atrous::test::temp_dir("gt"), pred = atrous::test::temp_dir("pred");
  write_labels(gt + "/a.png", 4, 1, {0, 0, 0, 1});
  write_labels(gt + "/b.png", 4, 1, {0, 1, 1, 1});
  write_labels(pred + "/a.png", 4, 1, {0, 0, 1, 1});
  auto r = run_cli({"eval", "--pred", pred, "--gt", gt, "--num-classes", "2"});
  CHECK(r.code == 1);
  CHECK(r.err == "error: 1 of 2 ground-truth maps have no prediction in '" + pred + "' (paired by name): b.png\n");

  write_labels(pred + "/b.png", 2, 2, {0, 1, 1, 1});
  r = run_cli({"eval", "--pred", pred, "--gt", gt, "--num-classes", "2"});
  CHECK(r.code == 1);
  CHECK(r.err.find("'b': the prediction " + pred + "/b.png is 2x2, the ground truth " + gt + "/b.png is 4x1") !=
        std::string::npos);

  write_labels(pred + "/b.png", 4, 1, {0, 1, 1, 1});
  write_labels(gt + "/a.png", 4, 1, {0, 0, 7, 1});
  r = run_cli({"eval", "--pred", pred, "--gt", gt, "--num-classes", "2"});
  CHECK(r.code == 1);
  CHECK(r.err.find("'a.png': ground-truth label 7 at pixel (x 2, y 0) is not a class (0..1) nor the ignore index 255") !=
        std::string::npos);

  write_labels(gt + "/a.png", 4, 1, {0, 0, 1, 1});
  write_labels(pred + "/a.png", 4, 1, {0, 0, 2, 1});
  r = run_cli({"eval", "--pred", pred, "--gt", gt, "--num-classes", "2"});
  CHECK(r.code == 1);
  CHECK(r.err.find("'a.png': predicted label 2 at pixel (x 2, y 0) is not a class (0..1); check --num-classes") !=
        std::string::npos);

  r = run_cli({"eval", "--pred", pred + "/nowhere", "--gt", gt, "--num-classes", "2"});
  CHECK(r.code == 1);
  CHECK(r.err.find("does not exist or is not a folder") != std::string::npos);
  r = run_cli({"eval", "--pred", pred, "--gt", gt, "--num-classes", "2", "--ignore-index", "1"});
  CHECK(r.code == 1);
  CHECK(r.err.find("--ignore-index 1 is one of the classes") != std::string::npos);
  r = run_cli({"eval", "--pred", pred, "--gt", gt, "--num-classes", "2", "--class-names", "/dev/zero"});
  CHECK(r.code == 1);
  CHECK(r.err.find("'/dev/zero' is not a regular file") != std::string::npos);
}

TEST_CASE("label PNGs: palette indices are read as written, whatever the palette's colours", "[segmentation][cli][eval]") {
  for (const char* name : {"labels_4bit", "labels_8bit"}) {
    INFO(name);
    auto m = atrous::load_label_png(seg_cases(std::string("labels/") + name + ".png"));
    INFO(m.status().to_string());
    REQUIRE(m.ok());
    auto want = atrous::load_npy(seg_cases(std::string("labels/") + name + ".npy"));
    REQUIRE(want.ok());
    REQUIRE(m->labels.size() == static_cast<size_t>(want->numel()));
    CHECK(m->width == want->shape()[1]);
    for (int64_t i = 0; i < want->numel(); ++i) REQUIRE(m->labels[static_cast<size_t>(i)] == want->data<int32_t>()[i]);
  }
}

TEST_CASE("atrous bench and inspect: --shape must name an input; huge shapes and thread counts are errors", "[segmentation][cli]") {
  // A misspelt name used to be ignored, and the default shape was measured instead.
  for (const char* cmd : {"bench", "inspect"}) {
    std::vector<std::string> args = {cmd, tiny_model(), "--shape", "input=1,3,40,56"};
    if (std::string(cmd) == "bench") args.insert(args.end(), {"--runs", "1", "--warmup", "0"});
    auto r = run_cli(args);
    INFO(cmd << ": " << r.out << r.err);
    CHECK(r.code != 0);
    CHECK(r.err.find("--shape input=1,3,40,56: entry point 'main' has no input named 'input' (its inputs: image)") != std::string::npos);
    args[3] = "image=1,3,40,56";
    r = run_cli(args);
    INFO(r.out << r.err);
    CHECK(r.code == 0);
    CHECK(r.out.find("40") != std::string::npos);
  }
  // Shapes beyond the memory budget and impossible thread counts: errors, not crashes
  // (both used to end in a segmentation fault).
  auto r = run_cli({"bench", tiny_model(), "--shape", "image=1,3,100000,100000", "--runs", "1"});
  INFO(r.out << r.err);
  CHECK(r.code == 1);
  CHECK(r.err.find("over the memory budget") != std::string::npos);
  for (const char* cmd : {"bench", "inspect", "run"}) {
    r = run_cli({cmd, tiny_model(), "--threads", "100000"});
    INFO(r.out << r.err);
    CHECK(r.code == 2);
    CHECK(r.err.find("--threads: Value 100000 not in range 0 to 1024") != std::string::npos);
  }
}
