// Semantic segmentation metrics from one confusion matrix, as papers report them
// (Long et al., FCN; Garcia-Garcia et al. survey): with p_ij the number of pixels
// of ground-truth class i predicted as class j,
//   Pixel Accuracy         PA    = Σ_i p_ii / Σ_ij p_ij
//   Mean Pixel Accuracy    MPA   = mean_i  p_ii / Σ_j p_ij
//   per-class IoU          IoU_i = p_ii / (Σ_j p_ij + Σ_j p_ji − p_ii)
//   Mean IoU               MIoU  = mean_i IoU_i
//   Frequency-Weighted IoU FWIoU = Σ_i (Σ_j p_ij / Σ_ij p_ij) · IoU_i
// A class with no ground-truth pixel has no accuracy (0/0): it is left out of MPA.
// A class absent from both the ground truth and the prediction has no IoU: it is
// left out of MIoU. A class that is only predicted has IoU 0 and counts in MIoU.
// (This is the "nanmean" convention of the FCN / DeepLab / mmsegmentation code.)
// FWIoU weighs by ground-truth frequency, so classes without ground truth add 0.
//
// The matrix accumulates over any number of images (one matrix over the whole set,
// not a mean of per-image scores). Pixels whose ground truth is the ignore index are
// skipped; every other label, in either map, must be in [0, N).
//
//   atrous::ConfusionMatrix cm(21);
//   for (each image) ATROUS_RETURN_IF_ERROR(cm.add(pred.labels, gt.labels, "img_001"));
//   atrous::SegMetrics m = atrous::compute_metrics(cm);
//   printf("MIoU %.4f\n", m.mean_iou);
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "atrous/status.h"

namespace atrous {

class ConfusionMatrix {
 public:
  // num_classes in 1..65536; ignore_index < 0 means none.
  explicit ConfusionMatrix(int num_classes, int ignore_index = 255);

  // Adds the pixels of one image. Both label maps are row-major with equal sizes;
  // `label` names the image in errors. On error (a size mismatch, a label outside
  // [0, N) that is not an ignored ground-truth pixel) nothing is added, and the
  // message names the image, the pixel, the value and which map holds it.
  Status add(const std::vector<int32_t>& pred, const std::vector<int32_t>& gt, const std::string& label = "",
             int width = 0);

  int num_classes() const { return n_; }
  int ignore_index() const { return ignore_; }
  // Pixels of ground-truth class `gt` predicted as `pred`.
  uint64_t at(int gt, int pred) const { return m_[static_cast<size_t>(gt) * static_cast<size_t>(n_) + static_cast<size_t>(pred)]; }
  uint64_t total() const { return total_; }      // pixels counted
  uint64_t ignored() const { return ignored_; }  // pixels skipped (ground truth = ignore index)

 private:
  int n_, ignore_;
  std::vector<uint64_t> m_;  // [N, N], row = ground truth, column = prediction
  uint64_t total_ = 0, ignored_ = 0;
};

struct SegMetrics {
  double pixel_accuracy = 0;       // NaN when no pixel was counted
  double mean_pixel_accuracy = 0;  // over classes with ground truth
  double mean_iou = 0;             // over classes present in the ground truth or the prediction
  double fw_iou = 0;
  std::vector<double> class_accuracy;  // [N], NaN: no ground-truth pixel
  std::vector<double> class_iou;       // [N], NaN: absent from both
  std::vector<uint64_t> gt_pixels;     // [N] Σ_j p_ij
  std::vector<uint64_t> pred_pixels;   // [N] Σ_j p_ji
  int classes_in_mean_accuracy = 0, classes_in_mean_iou = 0;
};

SegMetrics compute_metrics(const ConfusionMatrix& cm);

}  // namespace atrous
