// atrous eval --pred DIR --gt DIR --num-classes N [--ignore-index 255] [--class-names FILE] [--json]
//
// Label maps (indexed or grayscale PNGs: the pixel value is the class) are paired by
// file name without extension (pred/img_001.png with gt/img_001.png). One confusion
// matrix over every pair gives PA, MPA, per-class IoU, MIoU and FWIoU
// (atrous/seg_metrics.h, docs/segmentation.md). A ground-truth file without a
// prediction, a size mismatch, or a label outside the classes stops with an error that
// names the file; predictions without ground truth (e.g. overlays written next to the
// masks) are listed on stderr and not counted.
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "atrous/image.h"
#include "atrous/seg_metrics.h"
#include "cli.h"
#include "io/file.h"

namespace atrous::cli {
namespace {

namespace fs = std::filesystem;

struct Options {
  std::string pred, gt, class_names;
  int num_classes = 0, ignore_index = 255;
  bool json = false;
};

// stem -> path of the .png files in dir.
Result<std::map<std::string, std::string>> label_files(const std::string& dir, const char* what) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return invalid_argument(std::string(what) + " folder '" + dir + "' does not exist or is not a folder");
  std::map<std::string, std::string> files;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (!e.is_regular_file()) continue;
    std::string ext = e.path().extension().string();
    for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (ext == ".png") files[e.path().stem().string()] = e.path().string();
  }
  if (ec) return io_error("cannot list '" + dir + "': " + ec.message());
  return files;
}

Result<std::vector<std::string>> read_class_names(const std::string& path, int n) {
  ATROUS_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, io::read_whole_file(path, 16 << 20, "class names file"));
  std::istringstream f(std::string(bytes.begin(), bytes.end()));
  std::vector<std::string> names;
  std::string line;
  while (std::getline(f, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
    if (!line.empty()) names.push_back(line);
  }
  if (static_cast<int>(names.size()) != n)
    return invalid_argument("class names file '" + path + "' has " + std::to_string(names.size()) + " names (one per line), --num-classes is " +
                            std::to_string(n));
  return names;
}

std::string list_some(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size() && i < 5; ++i) s += (i ? ", " : "") + v[i];
  if (v.size() > 5) s += ", ... (" + std::to_string(v.size() - 5) + " more)";
  return s;
}

nlohmann::json number_or_null(double v) { return std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(v); }

std::string fixed(double v) {
  if (std::isnan(v)) return "-";
  char b[32];
  std::snprintf(b, sizeof b, "%.4f", v);
  return b;
}

int run(const Options& o) {
  if (o.num_classes < 1 || o.num_classes > 65536) return fail("--num-classes must be in 1..65536");
  if (o.ignore_index >= 0 && o.ignore_index < o.num_classes)
    return fail("--ignore-index " + std::to_string(o.ignore_index) + " is one of the classes (0.." + std::to_string(o.num_classes - 1) +
                "); use -1 for none");
  std::vector<std::string> names;
  if (!o.class_names.empty()) {
    auto n = read_class_names(o.class_names, o.num_classes);
    if (!n.ok()) return fail(n.status());
    names = *n;
  } else {
    for (int i = 0; i < o.num_classes; ++i) names.push_back("class " + std::to_string(i));
  }
  auto preds = label_files(o.pred, "prediction");
  if (!preds.ok()) return fail(preds.status());
  auto gts = label_files(o.gt, "ground-truth");
  if (!gts.ok()) return fail(gts.status());
  if (gts->empty()) return fail("no ground-truth label maps (.png) in '" + o.gt + "'");
  std::vector<std::string> missing, extra;
  for (const auto& [stem, path] : *gts)
    if (!preds->count(stem)) missing.push_back(stem + ".png");
  for (const auto& [stem, path] : *preds)
    if (!gts->count(stem)) extra.push_back(fs::path(path).filename().string());
  if (!missing.empty())
    return fail(std::to_string(missing.size()) + " of " + std::to_string(gts->size()) + " ground-truth maps have no prediction in '" +
                o.pred + "' (paired by name): " + list_some(missing));
  if (!extra.empty())
    std::fprintf(stderr, "note: %zu prediction%s without ground truth, not counted: %s\n", extra.size(), extra.size() == 1 ? "" : "s",
                 list_some(extra).c_str());

  ConfusionMatrix cm(o.num_classes, o.ignore_index);
  Progress bar(gts->size(), !o.json);
  size_t done = 0;
  for (const auto& [stem, gt_path] : *gts) {
    const std::string& pred_path = preds->at(stem);
    auto gt = load_label_png(gt_path);
    if (!gt.ok()) return bar.finish(), fail(gt.status());
    auto pr = load_label_png(pred_path);
    if (!pr.ok()) return bar.finish(), fail(pr.status());
    if (gt->width != pr->width || gt->height != pr->height)
      return bar.finish(), fail("'" + stem + "': the prediction " + pred_path + " is " + std::to_string(pr->width) + "x" +
                                std::to_string(pr->height) + ", the ground truth " + gt_path + " is " + std::to_string(gt->width) +
                                "x" + std::to_string(gt->height));
    Status st = cm.add(pr->labels, gt->labels, stem + ".png", gt->width);
    if (!st.ok()) return bar.finish(), fail(st);
    bar.update(++done, stem);
  }
  bar.finish();
  SegMetrics m = compute_metrics(cm);

  if (o.json) {
    nlohmann::json j = {{"images", gts->size()},
                        {"pixels", cm.total()},
                        {"ignored_pixels", cm.ignored()},
                        {"num_classes", o.num_classes},
                        {"ignore_index", o.ignore_index},
                        {"pixel_accuracy", number_or_null(m.pixel_accuracy)},
                        {"mean_pixel_accuracy", number_or_null(m.mean_pixel_accuracy)},
                        {"mean_iou", number_or_null(m.mean_iou)},
                        {"fw_iou", number_or_null(m.fw_iou)},
                        {"classes_in_mean_accuracy", m.classes_in_mean_accuracy},
                        {"classes_in_mean_iou", m.classes_in_mean_iou}};
    j["classes"] = nlohmann::json::array();
    for (int i = 0; i < o.num_classes; ++i) {
      const size_t k = static_cast<size_t>(i);
      j["classes"].push_back({{"index", i},
                              {"name", names[k]},
                              {"iou", number_or_null(m.class_iou[k])},
                              {"accuracy", number_or_null(m.class_accuracy[k])},
                              {"gt_pixels", m.gt_pixels[k]},
                              {"pred_pixels", m.pred_pixels[k]}});
    }
    nlohmann::json rows = nlohmann::json::array();
    for (int i = 0; i < o.num_classes; ++i) {
      nlohmann::json row = nlohmann::json::array();
      for (int k = 0; k < o.num_classes; ++k) row.push_back(cm.at(i, k));
      rows.push_back(row);
    }
    j["confusion_matrix"] = rows;  // rows: ground truth, columns: prediction
    std::printf("%s\n", j.dump(1).c_str());
    return 0;
  }
  std::printf("%zu image pairs, %llu pixels counted, %llu ignored (ground truth = %d), %d classes\n", gts->size(),
              static_cast<unsigned long long>(cm.total()), static_cast<unsigned long long>(cm.ignored()), o.ignore_index,
              o.num_classes);
  size_t w = 5;
  for (const auto& n : names) w = std::max(w, n.size());
  w = std::min<size_t>(w, 32);
  std::printf("  %-5s %-*s %8s %8s %12s %12s\n", "class", static_cast<int>(w), "name", "IoU", "Acc", "GT pixels", "predicted");
  for (int i = 0; i < o.num_classes; ++i) {
    const size_t k = static_cast<size_t>(i);
    std::printf("  %-5d %-*.*s %8s %8s %12llu %12llu\n", i, static_cast<int>(w), static_cast<int>(w), names[k].c_str(),
                fixed(m.class_iou[k]).c_str(), fixed(m.class_accuracy[k]).c_str(), static_cast<unsigned long long>(m.gt_pixels[k]),
                static_cast<unsigned long long>(m.pred_pixels[k]));
  }
  std::printf("PA %s  MPA %s  MIoU %s  FWIoU %s\n", fixed(m.pixel_accuracy).c_str(), fixed(m.mean_pixel_accuracy).c_str(),
              fixed(m.mean_iou).c_str(), fixed(m.fw_iou).c_str());
  if (m.classes_in_mean_iou < o.num_classes || m.classes_in_mean_accuracy < o.num_classes)
    std::printf("(MIoU over the %d classes present in the ground truth or the predictions, MPA over the %d with ground truth; '-' = "
                "undefined, left out)\n",
                m.classes_in_mean_iou, m.classes_in_mean_accuracy);
  return 0;
}

Runner setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  app.description("Segmentation metrics (PA, MPA, per-class IoU, MIoU, FWIoU) of predicted label maps against ground truth");
  app.add_option("--pred", o->pred, "folder of predicted label maps (indexed or grayscale PNG)")->required();
  app.add_option("--gt", o->gt, "folder of ground-truth label maps, paired with --pred by file name")->required();
  app.add_option("--num-classes", o->num_classes, "number of classes N (labels 0..N-1)")->required();
  app.add_option("--ignore-index", o->ignore_index, "ground-truth label to skip (default 255; -1: none)");
  app.add_option("--class-names", o->class_names, "text file with one class name per line");
  app.add_flag("--json", o->json, "JSON output (metrics, per-class values, confusion matrix)");
  return [o] { return run(*o); };
}

}  // namespace

extern const Command kEval;
const Command kEval = {"eval", setup};

}  // namespace atrous::cli
