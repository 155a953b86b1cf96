// Segment Anything in an application: encode an image once, then decode any
// number of prompts (points, a box, a previous mask) against it, with the
// pre- and postprocessing of segment_anything's SamPredictor.
//
// A SamPredictor wraps a model converted with `atrous convert --arch sam` (entry
// points encode_image and decode, and prepare_image and decode_prepared in models
// converted since 2026-11-29; docs/sam.md). encode() resizes the image's
// longest side to the model's input size with PIL's antialiased bilinear,
// normalises, pads and runs the encoder. The SamEmbedding it returns is a value:
// it owns its tensor, never changes, and may be shared between threads, saved
// (save_npy on .embedding plus the sizes) and rebuilt later with embedding_from().
// decode() maps prompts given in original-image pixels into the model's frame,
// runs the decoder and returns masks at the original size, their predicted IoU
// and the low-resolution logits (one of which can be the next prompt's
// mask_input). decode() is const and thread-safe: each call takes a session
// from an internal pool (one per prompt length in use), so concurrent decodes
// against the same embedding are independent. encode() is serialised
// internally. The predictor keeps the Model alive; destroy it before relying
// on the model's memory being released.
//
//   auto model = atrous::Model::open("sam_vit_b.atrous");
//   auto sam = atrous::SamPredictor::create(*model);
//   auto image = atrous::load_image("dog.jpg");
//   auto emb = (*sam)->encode(*image);                  // ~seconds, once per image
//   atrous::SamPrompt prompt;
//   prompt.points = {{420, 310, 1}, {100, 80, 0}};     // x, y, label (1 fg, 0 bg)
//   auto masks = (*sam)->decode(*emb, prompt);          // ~milliseconds, any number of times
//   const uint8_t* best = masks->mask(masks->best());  // height × width, 1 inside
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "atrous/image.h"
#include "atrous/model.h"
#include "atrous/status.h"
#include "atrous/tensor.h"

namespace atrous {

struct SamPoint {
  float x = 0, y = 0;  // original-image pixels, 0 <= x < width, 0 <= y < height
  int label = 1;       // 1 foreground, 0 background
};

struct SamBox {
  float x0 = 0, y0 = 0, x1 = 0, y1 = 0;  // top-left and bottom-right corners, original-image pixels
};

struct SamPrompt {
  std::vector<SamPoint> points;
  bool has_box = false;
  SamBox box;
  // Low-resolution logits [1, 1, M, M] or [1, M, M] (M = mask_input_size(), 256 for the official
  // models), e.g. SamMasks::low_res(i) of an earlier decode; a default Tensor: none.
  Tensor mask_input;
  bool multimask = true;  // three masks (ambiguous prompts) instead of one
};

struct SamEmbedding {
  Tensor embedding;                             // [1, E, G, G]
  int original_width = 0, original_height = 0;  // the image as given
  int input_width = 0, input_height = 0;        // the resized image inside the padded model input
  // What every prompt without a mask_input shares (the outputs of the model's
  // prepare_image entry point, by name: image tokens, the first attention's keys and
  // values), computed from `embedding` by encode() and embedding_from(); decode() then
  // runs decode_prepared instead of decode. Empty for models converted before that
  // entry point existed, or for an embedding put together by hand: decode() runs the
  // whole decoder.
  std::vector<std::pair<std::string, Tensor>> prepared;
  // Names this `prepared` set for the decode sessions: one that staged it in its arena
  // already (SessionOptions::keep_inputs) runs without copying it again. Set by
  // encode() and embedding_from(), unique in the process (an embedding may be decoded
  // by another predictor of the model); 0 (a set made by hand) is copied on every
  // decode. Change `prepared` only together with it.
  uint64_t prepared_id = 0;
};

struct SamMasks {
  int count = 0, width = 0, height = 0;
  std::vector<uint8_t> masks;  // count × height × width; 1 where the logit > 0
  std::vector<float> scores;   // predicted IoU of each mask
  Tensor low_res_logits;       // [count, M, M]

  const uint8_t* mask(int i) const { return masks.data() + static_cast<size_t>(i) * width * height; }
  // The highest-scoring mask (the first of equal scores).
  int best() const;
  // Mask i's logits as [1, 1, M, M], ready to be a SamPrompt::mask_input (a copy).
  Tensor low_res(int i) const;
};

struct SamOptions {
  int threads = 0;              // per session; 0 = every core
  bool reference_only = false;  // reference kernels (tests, debugging)
};

class SamPredictor {
 public:
  ~SamPredictor();
  // Fails unless the model has the entry points and shapes of the sam recipe.
  static Result<std::unique_ptr<SamPredictor>> create(std::shared_ptr<const Model> model, const SamOptions& options = {});

  Result<SamEmbedding> encode(const Image& image) const;
  Result<SamMasks> decode(const SamEmbedding& embedding, const SamPrompt& prompt) const;

  // An embedding saved earlier (e.g. loaded from .npy), for an image of this size
  // (its `prepared` tensors are computed here: a few milliseconds).
  Result<SamEmbedding> embedding_from(Tensor embedding, int original_width, int original_height) const;

  // The decode entry point's inputs for a prompt: sam_prompt_tensors() with the
  // embedding's sizes (the prompt is checked; its mask_input is not looked at).
  Status prompt_tensors(const SamEmbedding& embedding, const SamPrompt& prompt, Tensor* coords, Tensor* labels) const;

  int image_size() const;       // model input side (1024)
  int mask_input_size() const;  // low-resolution mask side (256)
  const std::shared_ptr<const Model>& model() const;

 private:
  struct Impl;
  explicit SamPredictor(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// ---- prompts without a model (the CLI, tools/fuzz/fuzz_prompt) -------------------------

// The most points one prompt may have: each is a decoder token, and the decoder's
// time and memory grow with their number.
constexpr size_t kSamMaxPoints = 1024;

// A point as text, in original-image pixels: "X,Y" (foreground) or "X,Y,LABEL" with
// LABEL 1 (foreground) or 0 (background). Strict: decimal numbers (an optional '-',
// digits with an optional fraction and exponent: "12", "-3.5", "1e2") separated by
// single commas, nothing else: no spaces, no empty field, no inf or nan, nothing
// beyond float's range. Whether the point is inside the image is check_sam_prompt's
// job. The error quotes the text (shortened) and says what is wrong with it.
Result<SamPoint> parse_sam_point(const std::string& text);
// A box as text: "X0,Y0,X1,Y1" (top-left, bottom-right), the numbers as for points.
Result<SamBox> parse_sam_box(const std::string& text);

// What SamPredictor::decode checks before it runs anything, for an original image of
// width × height: at least one point or a box; at most kSamMaxPoints points; every point
// finite with 0 <= x < width, 0 <= y < height and label 0 or 1; a box finite inside
// [0, width] × [0, height] with x0 <= x1 and y0 <= y1; and, when mask_input_size > 0, a
// mask_input (if there is one) that is f32 [M, M], [1, M, M] or [1, 1, M, M] with
// M = mask_input_size (0: mask_input is not checked).
Status check_sam_prompt(const SamPrompt& prompt, int width, int height, int mask_input_size);

// The size of a width × height image inside the image_size² model input after the
// longest-side resize (segment_anything's ResizeLongestSide.get_preprocess_shape:
// round(side · image_size / longest side)). Fails for an empty image or one so
// elongated that a side resizes to 0 pixels.
Status sam_resized_size(int width, int height, int image_size, int* input_width, int* input_height);

// The decode entry point's inputs for a prompt on a width × height image that was
// resized to input_width × input_height: point_coords [1, N, 2] in the model's input
// frame (x · input_width / width, y · input_height / height, in double then f32) and
// point_labels [1, N]: the points, a padding point (0, 0, label −1) when there is no
// box, then the box corners (labels 2, 3). Checks the prompt first
// (check_sam_prompt without mask_input).
Status sam_prompt_tensors(const SamPrompt& prompt, int width, int height, int input_width, int input_height, Tensor* coords,
                          Tensor* labels);

// segment_anything's Sam.postprocess_masks for one mask: logits [M, M] bilinearly
// upsampled to image_size², cropped to input_width × input_height, then resized to
// out_width × out_height (bilinear, align_corners false, as F.interpolate). Returns
// out_height × out_width logits.
std::vector<float> sam_upscale_logits(const float* logits, int m, int image_size, int input_width, int input_height,
                                      int out_width, int out_height);

}  // namespace atrous
