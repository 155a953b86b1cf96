// SamPredictor: segment_anything's SamPredictor on top of two Sessions.
//
// Postprocessing follows Sam.postprocess_masks: F.interpolate(bilinear,
// align_corners=False) to image_size², crop, F.interpolate to the original size.
// The interpolation replays PyTorch's CPU arithmetic (float scale = in / out,
// source index (dst + 0.5)·scale − 0.5 in double rounded to float, clamped at 0;
// rows weighted after columns), so thresholded masks match except where a logit
// is within rounding of 0. Only the cropped part of the first resize is computed.
#include "atrous/sam.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>

#include "atrous/session.h"

namespace atrous {

// ---- postprocessing ------------------------------------------------------------------
namespace {

struct Taps {
  std::vector<int32_t> i0, i1;
  std::vector<float> l0, l1;
};

// Source taps of `count` output positions of an in → out resize (PyTorch's
// compute_source_index_and_lambda).
Taps taps(int in, int out, int count) {
  Taps t;
  t.i0.resize(static_cast<size_t>(count));
  t.i1.resize(static_cast<size_t>(count));
  t.l0.resize(static_cast<size_t>(count));
  t.l1.resize(static_cast<size_t>(count));
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  for (int o = 0; o < count; ++o) {
    const size_t k = static_cast<size_t>(o);
    if (in == out) {
      t.i0[k] = t.i1[k] = o;
      t.l0[k] = 1.0f;
      t.l1[k] = 0.0f;
      continue;
    }
    float src = static_cast<float>(static_cast<double>(scale) * (o + 0.5) - 0.5);
    if (src < 0) src = 0;
    const int i0 = static_cast<int>(src);
    t.i0[k] = i0;
    t.i1[k] = i0 + (i0 < in - 1 ? 1 : 0);
    t.l1[k] = src - static_cast<float>(i0);
    t.l0[k] = 1.0f - t.l1[k];
  }
  return t;
}

// dst [oh, ow] from src [h, w] (row stride ld) with the taps of an (in_h → full_h,
// in_w → full_w) resize, of which the first oh × ow outputs are wanted.
void resize(const float* src, int ld, int in_h, int in_w, int full_h, int full_w, int oh, int ow, float* dst) {
  const Taps th = taps(in_h, full_h, oh), tw = taps(in_w, full_w, ow);
#pragma omp parallel for schedule(static)
  for (int y = 0; y < oh; ++y) {
    const float* r0 = src + static_cast<int64_t>(th.i0[static_cast<size_t>(y)]) * ld;
    const float* r1 = src + static_cast<int64_t>(th.i1[static_cast<size_t>(y)]) * ld;
    const float h0 = th.l0[static_cast<size_t>(y)], h1 = th.l1[static_cast<size_t>(y)];
    float* d = dst + static_cast<int64_t>(y) * ow;
    for (int x = 0; x < ow; ++x) {
      const size_t k = static_cast<size_t>(x);
      const float a = r0[tw.i0[k]] * tw.l0[k] + r0[tw.i1[k]] * tw.l1[k];
      const float b = r1[tw.i0[k]] * tw.l0[k] + r1[tw.i1[k]] * tw.l1[k];
      d[x] = a * h0 + b * h1;
    }
  }
}

}  // namespace

std::vector<float> sam_upscale_logits(const float* logits, int m, int image_size, int input_width, int input_height,
                                      int out_width, int out_height) {
  std::vector<float> crop(static_cast<size_t>(input_width) * input_height);
  resize(logits, m, m, m, image_size, image_size, input_height, input_width, crop.data());
  std::vector<float> out(static_cast<size_t>(out_width) * out_height);
  resize(crop.data(), input_width, input_height, input_width, out_height, out_width, out_height, out_width, out.data());
  return out;
}

int SamMasks::best() const {
  int b = 0;
  for (int i = 1; i < count; ++i)
    if (scores[static_cast<size_t>(i)] > scores[static_cast<size_t>(b)]) b = i;
  return b;
}

Tensor SamMasks::low_res(int i) const {
  const int64_t m = low_res_logits.shape()[1];
  Tensor t = Tensor::zeros(DType::kF32, {1, 1, m, m});
  std::copy_n(low_res_logits.data<float>() + i * m * m, m * m, t.data<float>());
  return t;
}

// ---- predictor ---------------------------------------------------------------------------
namespace {
// prepare_image's outputs, decode_prepared's inputs besides the prompt.
constexpr const char* kPreparedNames[] = {"image_tokens", "image_tokens_pe", "keys0", "values0"};
// SamEmbedding::prepared_id of the next prepared set, unique in the process.
std::atomic<uint64_t> next_prepared_id{0};
}  // namespace

struct SamPredictor::Impl {
  std::shared_ptr<const Model> model;
  SamOptions options;
  PreprocessInfo pre;
  int image_size = 1024, grid = 64, embed = 256, mask_size = 256, mask_tokens = 4;

  mutable std::mutex encode_mu;
  mutable std::unique_ptr<Session> encoder;

  // prepare_image + decode_prepared (the model has both): prompts without a mask
  // input start from what prepare_image computed once per image.
  bool has_prepared = false;
  mutable std::mutex prepare_mu;
  mutable std::unique_ptr<Session> preparer;

  // Idle decode sessions by key (prompt length, times 2, plus 1 for decode_prepared);
  // each keeps its plan and arena. A decode_prepared session keeps its inputs
  // (keep_inputs) and remembers which prepared set it holds, so decodes against one
  // image copy the 12 MiB of prepared tensors into a session once, not per prompt.
  struct Pooled {
    std::unique_ptr<Session> session;
    uint64_t staged = 0;  // SamEmbedding::prepared_id of the prepared inputs in its arena (0: none)
  };
  static constexpr size_t kMaxIdlePerLength = 4, kMaxLengths = 6;
  mutable std::mutex decode_mu;
  mutable std::map<int64_t, std::vector<Pooled>> idle;
  mutable std::vector<int64_t> recent;  // the keys of `idle`, most recent last
  Tensor zero_mask, zero_flag, one_flag;

  SessionOptions session_options(const std::string& entry) const {
    SessionOptions so;
    so.entry = entry;
    so.threads = options.threads;
    so.reference_only = options.reference_only;
    so.keep_inputs = entry == "decode_prepared";
    return so;
  }

  Result<Pooled> take(int64_t n) const {
    {
      std::lock_guard<std::mutex> lock(decode_mu);
      auto it = idle.find(n);
      if (it != idle.end() && !it->second.empty()) {
        Pooled s = std::move(it->second.back());
        it->second.pop_back();
        return s;
      }
    }
    Pooled p;
    ATROUS_ASSIGN_OR_RETURN(p.session, Session::create(model, session_options(n % 2 ? "decode_prepared" : "decode")));
    return p;
  }

  // A decode_prepared session's inputs for this embedding and a prompt of n points:
  // the prepared tensors staged in its arena unless it holds them already.
  Status stage_prepared(Pooled* p, const SamEmbedding& emb, int64_t n) const {
    Session& s = *p->session;
    if (p->staged != 0 && p->staged == emb.prepared_id) return Status::Ok();
    p->staged = 0;
    std::vector<Shape> shapes;
    for (const TensorInfo& t : s.entry().inputs) {
      const Tensor* found = nullptr;
      for (const auto& [name, tensor] : emb.prepared)
        if (name == t.name) found = &tensor;
      if (found) shapes.push_back(found->shape());
      else if (t.name == "point_coords") shapes.push_back({1, n, 2});
      else if (t.name == "point_labels") shapes.push_back({1, n});
      else return invalid_argument("the embedding's prepared tensors have no '" + t.name + "' (decode_prepared's input)");
    }
    ATROUS_RETURN_IF_ERROR(s.reshape(shapes));
    for (const auto& [name, tensor] : emb.prepared)
      if (Status st = s.stage_input(name, tensor.view()); !st.ok())
        return invalid_argument("the embedding's prepared tensors do not fit decode_prepared: " + st.message());
    p->staged = emb.prepared_id;
    return Status::Ok();
  }

  // The prepared tensors of an embedding (none without prepare_image).
  Status prepare(SamEmbedding* e) const {
    e->prepared.clear();
    e->prepared_id = 0;
    if (!has_prepared) return Status::Ok();
    std::lock_guard<std::mutex> lock(prepare_mu);
    if (!preparer) {
      ATROUS_ASSIGN_OR_RETURN(preparer, Session::create(model, session_options("prepare_image")));
    }
    ATROUS_RETURN_IF_ERROR(preparer->set_input("image_embeddings", e->embedding.view()));
    ATROUS_RETURN_IF_ERROR(preparer->run());
    for (const char* name : kPreparedNames) {
      ATROUS_ASSIGN_OR_RETURN(TensorView out, preparer->output(name));
      e->prepared.emplace_back(name, Tensor::copy_of(out));
    }
    e->prepared_id = ++next_prepared_id;  // process-wide: an embedding may meet another predictor
    // Its arena (the outputs and a transpose, 20 MiB for ViT-B) waits for the next image.
    preparer->release_memory();
    return Status::Ok();
  }

  void give_back(int64_t n, Pooled s) const {
    std::lock_guard<std::mutex> lock(decode_mu);
    auto& pool = idle[n];
    if (pool.size() < kMaxIdlePerLength) pool.push_back(std::move(s));
    recent.erase(std::remove(recent.begin(), recent.end(), n), recent.end());
    recent.push_back(n);  // the keys of `idle`, least recently returned first
    while (idle.size() > kMaxLengths) {
      idle.erase(recent.front());
      recent.erase(recent.begin());
    }
  }
};

SamPredictor::SamPredictor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SamPredictor::~SamPredictor() = default;

int SamPredictor::image_size() const { return impl_->image_size; }
int SamPredictor::mask_input_size() const { return impl_->mask_size; }
const std::shared_ptr<const Model>& SamPredictor::model() const { return impl_->model; }

Result<std::unique_ptr<SamPredictor>> SamPredictor::create(std::shared_ptr<const Model> model, const SamOptions& options) {
  if (!model) return invalid_argument("SamPredictor: model is null");
  const EntryPointInfo* enc = model->entry("encode_image");
  const EntryPointInfo* dec = model->entry("decode");
  if (!enc || !dec)
    return invalid_argument("'" + model->info().path + "' is not a Segment Anything model: it needs the entry points encode_image and decode "
                            "(convert the checkpoint with `atrous convert --arch sam`)");
  auto impl = std::make_unique<Impl>();
  impl->model = model;
  impl->options = options;
  auto input_shape = [](const EntryPointInfo& e, const std::string& name) -> Shape {
    for (const TensorInfo& t : e.inputs)
      if (t.name == name) return t.shape;
    return {};
  };
  const Shape img = input_shape(*enc, "image"), emb = input_shape(*dec, "image_embeddings"), mask = input_shape(*dec, "mask_input");
  if (img.size() != 4 || emb.size() != 4 || mask.size() != 4 || input_shape(*dec, "point_coords").empty() ||
      input_shape(*dec, "point_labels").empty() || input_shape(*dec, "has_mask_input").empty() || !enc->has_preprocess)
    return invalid_argument("'" + model->info().path + "': the entry points encode_image/decode do not have the sam recipe's inputs");
  impl->image_size = static_cast<int>(img[2]);
  impl->embed = static_cast<int>(emb[1]);
  impl->grid = static_cast<int>(emb[2]);
  impl->mask_size = static_cast<int>(mask[2]);
  for (const TensorInfo& t : dec->outputs)
    if (t.name == "iou_predictions" && t.shape.size() == 2) impl->mask_tokens = static_cast<int>(t.shape[1]);
  impl->pre = enc->preprocess;
  if (impl->pre.input.empty()) impl->pre.input = "image";
  // decode_prepared must take what prepare_image gives, and the decode prompt inputs.
  const EntryPointInfo* prep = model->entry("prepare_image");
  const EntryPointInfo* decp = model->entry("decode_prepared");
  if (prep && decp) {
    bool fits = input_shape(*prep, "image_embeddings") == emb && !input_shape(*decp, "point_coords").empty() &&
                !input_shape(*decp, "point_labels").empty();
    for (const char* name : kPreparedNames) {
      bool out = false;
      for (const TensorInfo& t : prep->outputs) out = out || t.name == name;
      fits = fits && out && !input_shape(*decp, name).empty();
    }
    if (!fits)
      return invalid_argument("'" + model->info().path + "': the entry points prepare_image/decode_prepared do not have the sam recipe's inputs and outputs");
    impl->has_prepared = true;
  }
  ATROUS_ASSIGN_OR_RETURN(impl->encoder, Session::create(model, impl->session_options("encode_image")));
  impl->zero_mask = Tensor::zeros(DType::kF32, {1, 1, impl->mask_size, impl->mask_size});
  impl->zero_flag = Tensor::zeros(DType::kF32, {1});
  impl->one_flag = Tensor::zeros(DType::kF32, {1});
  impl->one_flag.data<float>()[0] = 1.0f;
  return std::unique_ptr<SamPredictor>(new SamPredictor(std::move(impl)));
}

Result<SamEmbedding> SamPredictor::encode(const Image& image) const {
  ATROUS_ASSIGN_OR_RETURN(Preprocessed p, preprocess_image(image, impl_->pre, 3));
  if (p.tensor.shape() != Shape{1, 3, impl_->image_size, impl_->image_size})
    return invalid_argument("SAM preprocessing gave " + shape_string(p.tensor.shape()) + ", the encoder takes " +
                            shape_string({1, 3, impl_->image_size, impl_->image_size}));
  SamEmbedding e;
  {
    std::lock_guard<std::mutex> lock(impl_->encode_mu);
    // The image goes into the encoder's arena and its own 12 MiB are freed before the
    // run: its slot is reused by intermediates, so it adds nothing to the peak.
    ATROUS_RETURN_IF_ERROR(impl_->encoder->reshape({p.tensor.shape()}));
    ATROUS_RETURN_IF_ERROR(impl_->encoder->stage_input(impl_->pre.input, p.tensor.view()));
    p.tensor = Tensor();
    ATROUS_RETURN_IF_ERROR(impl_->encoder->run());
    ATROUS_ASSIGN_OR_RETURN(TensorView out, impl_->encoder->output("image_embeddings"));
    e.embedding = Tensor::copy_of(out);
    // The encoder's arena (82 MiB for ViT-B) is not needed while prompts are decoded;
    // binding it again for the next image costs milliseconds against seconds of encoding.
    impl_->encoder->release_memory();
  }
  e.original_width = image.width;
  e.original_height = image.height;
  e.input_width = p.content_width;
  e.input_height = p.content_height;
  ATROUS_RETURN_IF_ERROR(impl_->prepare(&e));
  return e;
}

Result<SamEmbedding> SamPredictor::embedding_from(Tensor embedding, int original_width, int original_height) const {
  const Shape want{1, impl_->embed, impl_->grid, impl_->grid};
  if (embedding.dtype() != DType::kF32 || embedding.shape() != want)
    return invalid_argument("image embedding must be f32 " + shape_string(want) + " for this model, got " +
                            dtype_name(embedding.dtype()) + " " + shape_string(embedding.shape()));
  SamEmbedding e;
  ATROUS_RETURN_IF_ERROR(sam_resized_size(original_width, original_height, impl_->image_size, &e.input_width, &e.input_height));
  e.embedding = std::move(embedding);
  e.original_width = original_width;
  e.original_height = original_height;
  ATROUS_RETURN_IF_ERROR(impl_->prepare(&e));
  return e;
}

Status SamPredictor::prompt_tensors(const SamEmbedding& emb, const SamPrompt& prompt, Tensor* coords, Tensor* labels) const {
  if (emb.original_width < 1 || emb.original_height < 1 || emb.input_width < 1 || emb.input_height < 1)
    return invalid_argument("the image embedding has no image size");
  return sam_prompt_tensors(prompt, emb.original_width, emb.original_height, emb.input_width, emb.input_height, coords, labels);
}

Result<SamMasks> SamPredictor::decode(const SamEmbedding& emb, const SamPrompt& prompt) const {
  const Impl& im = *impl_;
  if (emb.embedding.shape() != Shape{1, im.embed, im.grid, im.grid})
    return invalid_argument("image embedding " + shape_string(emb.embedding.shape()) + " does not fit this model (" +
                            shape_string({1, im.embed, im.grid, im.grid}) + ")");
  if (emb.original_width < 1 || emb.original_height < 1) return invalid_argument("the image embedding has no image size");
  ATROUS_RETURN_IF_ERROR(check_sam_prompt(prompt, emb.original_width, emb.original_height, im.mask_size));
  const bool has_mask = prompt.mask_input.raw() != nullptr;
  const int64_t ms = im.mask_size;
  const TensorView mask_view = has_mask ? TensorView{DType::kF32, {1, 1, ms, ms}, prompt.mask_input.raw()} : im.zero_mask.view();
  Tensor coords, labels;
  ATROUS_RETURN_IF_ERROR(prompt_tensors(emb, prompt, &coords, &labels));
  // Without a mask, from the prepared tensors when the embedding has them.
  const bool from_prepared = !has_mask && im.has_prepared && !emb.prepared.empty();
  const int64_t n = coords.shape()[1], key = 2 * n + (from_prepared ? 1 : 0);
  ATROUS_ASSIGN_OR_RETURN(Impl::Pooled pooled, im.take(key));
  Session* s = pooled.session.get();
  if (from_prepared) {
    ATROUS_RETURN_IF_ERROR(im.stage_prepared(&pooled, emb, n));
  } else {
    ATROUS_RETURN_IF_ERROR(s->set_input("image_embeddings", emb.embedding.view()));
    ATROUS_RETURN_IF_ERROR(s->set_input("mask_input", mask_view));
    ATROUS_RETURN_IF_ERROR(s->set_input("has_mask_input", has_mask ? im.one_flag.view() : im.zero_flag.view()));
  }
  ATROUS_RETURN_IF_ERROR(s->set_input("point_coords", coords.view()));
  ATROUS_RETURN_IF_ERROR(s->set_input("point_labels", labels.view()));
  ATROUS_RETURN_IF_ERROR(s->run());
  ATROUS_ASSIGN_OR_RETURN(TensorView low, s->output("low_res_masks"));
  ATROUS_ASSIGN_OR_RETURN(TensorView iou, s->output("iou_predictions"));
  // Multimask: tokens 1..T−1; single: token 0 (MaskDecoder.forward's slices).
  const int first = prompt.multimask ? 1 : 0, count = prompt.multimask ? im.mask_tokens - 1 : 1;
  const int64_t m = ms;
  SamMasks r;
  r.count = count;
  r.width = emb.original_width;
  r.height = emb.original_height;
  r.low_res_logits = Tensor::zeros(DType::kF32, {count, m, m});
  for (int i = 0; i < count; ++i) {
    std::copy_n(low.as<float>() + (first + i) * m * m, m * m, r.low_res_logits.data<float>() + i * m * m);
    r.scores.push_back(iou.as<float>()[first + i]);
  }
  im.give_back(key, std::move(pooled));  // outputs copied: the session may serve another call
  const size_t px = static_cast<size_t>(r.width) * r.height;
  r.masks.resize(px * static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) {
    std::vector<float> full = sam_upscale_logits(r.low_res_logits.data<float>() + i * m * m, static_cast<int>(m), im.image_size,
                                                 emb.input_width, emb.input_height, r.width, r.height);
    uint8_t* dst = r.masks.data() + px * static_cast<size_t>(i);
    for (size_t k = 0; k < px; ++k) dst[k] = full[k] > 0.0f ? 1 : 0;
  }
  return r;
}

}  // namespace atrous
