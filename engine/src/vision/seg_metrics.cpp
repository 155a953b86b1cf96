// Confusion matrix and the standard segmentation metrics (see atrous/seg_metrics.h).
#include "atrous/seg_metrics.h"

#include <cmath>
#include <limits>

namespace atrous {

ConfusionMatrix::ConfusionMatrix(int num_classes, int ignore_index)
    : n_(num_classes < 1 ? 1 : (num_classes > 65536 ? 65536 : num_classes)),
      ignore_(ignore_index),
      m_(static_cast<size_t>(n_) * static_cast<size_t>(n_), 0) {}

Status ConfusionMatrix::add(const std::vector<int32_t>& pred, const std::vector<int32_t>& gt, const std::string& label,
                            int width) {
  const std::string who = label.empty() ? std::string("image") : "'" + label + "'";
  if (pred.size() != gt.size())
    return invalid_argument(who + ": the prediction has " + std::to_string(pred.size()) + " pixels, the ground truth " +
                            std::to_string(gt.size()));
  auto where = [&](size_t i) {
    if (width <= 0) return "pixel " + std::to_string(i);
    return "pixel (x " + std::to_string(i % static_cast<size_t>(width)) + ", y " + std::to_string(i / static_cast<size_t>(width)) + ")";
  };
  // Validate first so that a bad image adds nothing.
  uint64_t skipped = 0;
  for (size_t i = 0; i < gt.size(); ++i) {
    const int32_t g = gt[i], p = pred[i];
    const bool ignored = ignore_ >= 0 && g == ignore_;
    if (!ignored && (g < 0 || g >= n_))
      return invalid_argument(who + ": ground-truth label " + std::to_string(g) + " at " + where(i) + " is not a class (0.." +
                              std::to_string(n_ - 1) + ")" + (ignore_ >= 0 ? " nor the ignore index " + std::to_string(ignore_) : "") +
                              "; check --num-classes and --ignore-index");
    // A prediction may hold the ignore index only where the ground truth is ignored too.
    if ((p < 0 || p >= n_) && !(ignored && p == ignore_))
      return invalid_argument(who + ": predicted label " + std::to_string(p) + " at " + where(i) + " is not a class (0.." +
                              std::to_string(n_ - 1) + "); check --num-classes");
    skipped += ignored ? 1 : 0;
  }
  for (size_t i = 0; i < gt.size(); ++i) {
    const int32_t g = gt[i];
    if (ignore_ >= 0 && g == ignore_) continue;
    ++m_[static_cast<size_t>(g) * static_cast<size_t>(n_) + static_cast<size_t>(pred[i])];
  }
  total_ += gt.size() - skipped;
  ignored_ += skipped;
  return Status::Ok();
}

SegMetrics compute_metrics(const ConfusionMatrix& cm) {
  const int n = cm.num_classes();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  SegMetrics r;
  r.class_accuracy.assign(static_cast<size_t>(n), nan);
  r.class_iou.assign(static_cast<size_t>(n), nan);
  r.gt_pixels.assign(static_cast<size_t>(n), 0);
  r.pred_pixels.assign(static_cast<size_t>(n), 0);
  uint64_t diag = 0;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      r.gt_pixels[static_cast<size_t>(i)] += cm.at(i, j);
      r.pred_pixels[static_cast<size_t>(j)] += cm.at(i, j);
    }
  const double total = static_cast<double>(cm.total());
  double acc_sum = 0, iou_sum = 0, fw = 0;
  for (int i = 0; i < n; ++i) {
    const size_t k = static_cast<size_t>(i);
    const uint64_t tp = cm.at(i, i);
    diag += tp;
    if (r.gt_pixels[k] > 0) {
      r.class_accuracy[k] = static_cast<double>(tp) / static_cast<double>(r.gt_pixels[k]);
      acc_sum += r.class_accuracy[k];
      ++r.classes_in_mean_accuracy;
    }
    const uint64_t uni = r.gt_pixels[k] + r.pred_pixels[k] - tp;
    if (uni > 0) {
      r.class_iou[k] = static_cast<double>(tp) / static_cast<double>(uni);
      iou_sum += r.class_iou[k];
      ++r.classes_in_mean_iou;
      fw += static_cast<double>(r.gt_pixels[k]) / total * r.class_iou[k];
    }
  }
  r.pixel_accuracy = cm.total() ? static_cast<double>(diag) / total : nan;
  r.mean_pixel_accuracy = r.classes_in_mean_accuracy ? acc_sum / r.classes_in_mean_accuracy : nan;
  r.mean_iou = r.classes_in_mean_iou ? iou_sum / r.classes_in_mean_iou : nan;
  r.fw_iou = cm.total() ? fw : nan;
  return r;
}

}  // namespace atrous
