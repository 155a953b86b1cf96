// atrous/seg_metrics.h against confusion matrices worked out by hand.
#include <cmath>

#include "atrous/seg_metrics.h"
#include "test_util.h"

namespace atrous::test {
namespace {

// GT   0 0 0 1 1 2 2 255
// pred 0 0 1 1 2 2 0 1      (the last pixel is ignored)
// rows = ground truth:  [2 1 0] [0 1 1] [1 0 1];  7 pixels counted, 4 on the diagonal.
ConfusionMatrix three_class_matrix() {
  ConfusionMatrix cm(3, 255);
  Status st = cm.add({0, 0, 1, 1, 2, 2, 0, 1}, {0, 0, 0, 1, 1, 2, 2, 255}, "hand", 4);
  REQUIRE(st.ok());
  return cm;
}

TEST_CASE("the confusion matrix counts ground truth by rows and skips the ignore index", "[segmentation][metrics]") {
  ConfusionMatrix cm = three_class_matrix();
  const uint64_t expected[3][3] = {{2, 1, 0}, {0, 1, 1}, {1, 0, 1}};
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) CHECK(cm.at(i, j) == expected[i][j]);
  CHECK(cm.total() == 7);
  CHECK(cm.ignored() == 1);
}

TEST_CASE("PA, MPA, IoU, MIoU and FWIoU of a hand-computed matrix", "[segmentation][metrics]") {
  SegMetrics m = compute_metrics(three_class_matrix());
  CHECK(m.pixel_accuracy == Approx(4.0 / 7));
  CHECK(m.class_accuracy[0] == Approx(2.0 / 3));
  CHECK(m.class_accuracy[1] == Approx(0.5));
  CHECK(m.class_accuracy[2] == Approx(0.5));
  CHECK(m.mean_pixel_accuracy == Approx(5.0 / 9));
  // IoU_i = p_ii / (Σ_j p_ij + Σ_j p_ji − p_ii): 2/(3+3−2), 1/(2+2−1), 1/(2+2−1)
  CHECK(m.class_iou[0] == Approx(0.5));
  CHECK(m.class_iou[1] == Approx(1.0 / 3));
  CHECK(m.class_iou[2] == Approx(1.0 / 3));
  CHECK(m.mean_iou == Approx(7.0 / 18));
  // FWIoU = 3/7 · 1/2 + 2/7 · 1/3 + 2/7 · 1/3 = 17/42
  CHECK(m.fw_iou == Approx(17.0 / 42));
  CHECK(m.gt_pixels == std::vector<uint64_t>{3, 2, 2});
  CHECK(m.pred_pixels == std::vector<uint64_t>{3, 2, 2});
}

TEST_CASE("a class absent from both maps is left out of the means", "[segmentation][metrics]") {
  ConfusionMatrix cm(5, 255);  // classes 3 and 4 never appear
  REQUIRE(cm.add({0, 0, 1, 1, 2, 2, 0, 1}, {0, 0, 0, 1, 1, 2, 2, 255}).ok());
  SegMetrics m = compute_metrics(cm);
  CHECK(std::isnan(m.class_iou[3]));
  CHECK(std::isnan(m.class_accuracy[4]));
  CHECK(m.classes_in_mean_iou == 3);
  CHECK(m.classes_in_mean_accuracy == 3);
  CHECK(m.mean_iou == Approx(7.0 / 18));
  CHECK(m.mean_pixel_accuracy == Approx(5.0 / 9));
  CHECK(m.fw_iou == Approx(17.0 / 42));
}

TEST_CASE("a class that is only predicted has IoU 0 in MIoU and no accuracy", "[segmentation][metrics]") {
  // GT 0 0 1 1, pred 0 2 1 1: class 2 has no ground truth but one false positive.
  ConfusionMatrix cm(3, -1);
  REQUIRE(cm.add({0, 2, 1, 1}, {0, 0, 1, 1}).ok());
  SegMetrics m = compute_metrics(cm);
  CHECK(m.class_iou[0] == Approx(0.5));  // 1 / (2 + 1 − 1)
  CHECK(m.class_iou[1] == Approx(1.0));
  CHECK(m.class_iou[2] == Approx(0.0));
  CHECK(std::isnan(m.class_accuracy[2]));
  CHECK(m.mean_iou == Approx(0.5));              // (0.5 + 1 + 0) / 3
  CHECK(m.mean_pixel_accuracy == Approx(0.75));  // (1/2 + 1) / 2
  CHECK(m.pixel_accuracy == Approx(0.75));
  CHECK(m.fw_iou == Approx(0.75));  // 2/4 · 0.5 + 2/4 · 1
}

TEST_CASE("the matrix accumulates over images (one matrix, not a mean of per-image scores)", "[segmentation][metrics]") {
  ConfusionMatrix cm(2, 255);
  REQUIRE(cm.add({0, 0, 0, 0}, {0, 0, 0, 0}).ok());  // perfect on its own
  REQUIRE(cm.add({0, 1}, {1, 1}).ok());              // IoU_0 = 0, IoU_1 = 0.5 on its own
  SegMetrics m = compute_metrics(cm);
  CHECK(m.class_iou[0] == Approx(4.0 / 5));
  CHECK(m.class_iou[1] == Approx(1.0 / 2));
  CHECK(m.pixel_accuracy == Approx(5.0 / 6));
}

TEST_CASE("bad label maps are refused with the image, pixel and value named, and add nothing", "[segmentation][metrics]") {
  ConfusionMatrix cm(3, 255);
  Status st = cm.add({0, 1}, {0, 1, 2}, "a.png");
  CHECK(st.message().find("'a.png': the prediction has 2 pixels, the ground truth 3") != std::string::npos);
  st = cm.add({0, 1, 2, 0}, {0, 1, 7, 0}, "b.png", 2);
  CHECK(st.message() == "'b.png': ground-truth label 7 at pixel (x 0, y 1) is not a class (0..2) nor the ignore index 255; "
                        "check --num-classes and --ignore-index");
  st = cm.add({0, 3, 2}, {0, 1, 2}, "c.png");
  CHECK(st.message() == "'c.png': predicted label 3 at pixel 1 is not a class (0..2); check --num-classes");
  st = cm.add({0, 255, 2}, {0, 1, 2}, "d.png");  // a prediction cannot be "ignored" where the ground truth is a class
  CHECK(st.message().find("predicted label 255 at pixel 1") != std::string::npos);
  CHECK(cm.total() == 0);
  REQUIRE(cm.add({0, 255, 2}, {0, 255, 2}, "e.png").ok());  // both ignored: skipped
  CHECK(cm.total() == 2);
  CHECK(cm.ignored() == 1);
}

}  // namespace
}  // namespace atrous::test
