// Recipe `sam`: Segment Anything (facebookresearch/segment-anything) checkpoints,
// keys image_encoder.*, prompt_encoder.*, mask_decoder.*, to a model with four
// entry points:
//   encode_image: image [1, 3, S, S] (normalised, padded; S = 1024 for the official
//     models) -> image_embeddings [1, E, S/16, S/16]
//   decode: image_embeddings, point_coords [1, N, 2] (input-frame pixels),
//     point_labels [1, N] (1 fg, 0 bg, -1 padding, 2/3 box corners), mask_input
//     [1, 1, S/4, S/4], has_mask_input [1] -> low_res_masks [1, 4, S/4, S/4],
//     iou_predictions [1, 4] (all four mask tokens; single-mask output is #0,
//     multimask is #1..3, as MaskDecoder slices them).
//   prepare_image: image_embeddings -> image_tokens, image_tokens_pe [1, G², E], keys0
//     [1, heads, d, G²], values0 [1, heads, G², d]: what decode computes the same for every prompt without
//     a mask input (decoder() below);
//   decode_prepared: those four, point_coords, point_labels -> low_res_masks,
//     iou_predictions: decode for prompts without a mask input, from them.
// The decode inputs follow segment-anything's ONNX export (SamOnnxModel), so prompts
// are built the same way: points, then a padding point (label -1) when there is no
// box, then the box corners. docs/sam.md has the whole pipeline.
//
// Hyperparameters come from shapes: embed dim and patch size from patch_embed,
// grid from pos_embed, depth from the block count, encoder heads from the rel-pos
// tables' head dim, window size and global blocks from the official tables (or the
// rel-pos table lengths for other depths). Decoder heads are not in the weights:
// 8 unless the config says otherwise.
#include <cmath>
#include <algorithm>
#include <cstring>
#include <functional>
#include <map>

#include "convert/recipe.h"

namespace atrous::convert {
namespace {

constexpr float kPixelMean[3] = {123.675f, 116.28f, 103.53f};
constexpr float kPixelStd[3] = {58.395f, 57.12f, 57.375f};

std::string idx(const std::string& prefix, int i) { return prefix + "." + std::to_string(i); }

// The positional encoding of the G_h × G_w grid as [1, G_h·G_w, 2F] (token-major),
// PositionEmbeddingRandom.forward in PyTorch's float32 order.
void dense_pe(const float* g, int64_t f, int64_t gh, int64_t gw, float* out) {
  const float two_pi = static_cast<float>(2.0 * M_PI);
  for (int64_t y = 0; y < gh; ++y)
    for (int64_t x = 0; x < gw; ++x) {
      const float ux = (static_cast<float>(x + 1) - 0.5f) / static_cast<float>(gw) * 2.0f - 1.0f;
      const float uy = (static_cast<float>(y + 1) - 0.5f) / static_cast<float>(gh) * 2.0f - 1.0f;
      float* o = out + (y * gw + x) * 2 * f;
      for (int64_t i = 0; i < f; ++i) {
        const float v = (ux * g[i] + uy * g[f + i]) * two_pi;
        o[i] = std::sin(v);
        o[f + i] = std::cos(v);
      }
    }
}

class SamBuilder {
 public:
  explicit SamBuilder(RecipeContext& ctx) : ctx_(ctx) {}

  Status build() {
    ATROUS_RETURN_IF_ERROR(infer());
    if (!ctx_.problems().empty()) return Status::Ok();  // reported by convert(); shapes are unknown
    ATROUS_RETURN_IF_ERROR(encoder());
    ATROUS_RETURN_IF_ERROR(decoder());
    ModelBuilder& mb = ctx_.model();
    mb.set_metadata("sam.variant", variant_);
    mb.set_metadata("sam.image_size", std::to_string(img_));
    mb.set_metadata("sam.embedding_grid", std::to_string(grid_));
    mb.set_metadata("sam.embed_dim", std::to_string(out_));
    mb.set_metadata("sam.mask_input_size", std::to_string(4 * grid_));
    mb.set_metadata("sam.encoder", "dim " + std::to_string(dim_) + ", depth " + std::to_string(depth_) + ", heads " +
                                       std::to_string(heads_) + ", window " + std::to_string(window_));
    return Status::Ok();
  }

 private:
  // ---- hyperparameters ----------------------------------------------------------
  Status infer() {
    const std::string pe = "image_encoder.patch_embed.proj.weight";
    dim_ = ctx_.dim(pe, 0);
    patch_ = ctx_.dim(pe, 2);
    grid_ = ctx_.dim("image_encoder.pos_embed", 1);
    out_ = ctx_.dim("image_encoder.neck.0.weight", 0);
    if (dim_ < 1 || patch_ < 1 || grid_ < 1 || out_ < 1) return Status::Ok();
    img_ = grid_ * patch_;
    ATROUS_ASSIGN_OR_RETURN(depth_, ctx_.count_blocks("image_encoder.blocks.{i}"));
    rel_pos_ = ctx_.has("image_encoder.blocks.0.attn.rel_pos_h");
    const Config& c = ctx_.config();
    if (c.has("encoder_heads")) {
      ATROUS_ASSIGN_OR_RETURN(heads_, c.get_int("encoder_heads"));
    } else if (rel_pos_) {
      const int64_t hd = ctx_.dim("image_encoder.blocks.0.attn.rel_pos_h", 1);
      heads_ = hd > 0 ? dim_ / hd : 1;
    } else {
      heads_ = dim_ == 768 ? 12 : 16;
    }
    if (heads_ < 1 || dim_ % heads_ != 0)
      return invalid_argument("sam: " + std::to_string(heads_) + " encoder heads do not divide the embed dim " + std::to_string(dim_) +
                              " (set encoder_heads)");
    // Official variants: build_sam.py's tables.
    struct Official { int64_t dim, depth; const char* name; std::vector<int64_t> global; };
    const Official kOfficial[] = {{768, 12, "vit_b", {2, 5, 8, 11}}, {1024, 24, "vit_l", {5, 11, 17, 23}},
                                  {1280, 32, "vit_h", {7, 15, 23, 31}}};
    variant_ = "custom";
    std::vector<int64_t> global;
    bool have_global = false;
    for (const Official& o : kOfficial)
      if (o.dim == dim_ && o.depth == depth_ && img_ == 1024) {
        variant_ = o.name;
        global = o.global;
        have_global = true;
      }
    if (c.has("global_attn_indexes")) {
      ATROUS_ASSIGN_OR_RETURN(global, c.get_ints("global_attn_indexes"));
      have_global = true;
    }
    window_ = 14;
    if (c.has("window_size")) {
      ATROUS_ASSIGN_OR_RETURN(window_, c.get_int("window_size"));
    }
    global_.assign(static_cast<size_t>(depth_), false);
    if (have_global) {
      for (int64_t g : global) {
        if (g < 0 || g >= depth_) return invalid_argument("sam: global_attn_indexes has " + std::to_string(g) + ", outside 0.." + std::to_string(depth_ - 1));
        global_[static_cast<size_t>(g)] = true;
      }
    } else if (rel_pos_) {  // a global block's tables span the grid: 2·grid − 1
      bool window_found = c.has("window_size");
      for (int i = 0; i < depth_; ++i) {
        const int64_t len = ctx_.dim("image_encoder.blocks." + std::to_string(i) + ".attn.rel_pos_h", 0);
        global_[static_cast<size_t>(i)] = len == 2 * grid_ - 1;
        if (!global_[static_cast<size_t>(i)] && !window_found && len > 0) {
          window_ = (len + 1) / 2;
          window_found = true;
        }
      }
    }
    if (window_ < 1) return invalid_argument("sam: window_size must be >= 1, got " + std::to_string(window_));
    // Prompt encoder and mask decoder.
    embed_ = ctx_.dim("prompt_encoder.point_embeddings.0.weight", 1);
    mask_chans_ = ctx_.dim("prompt_encoder.mask_downscaling.3.weight", 0);
    tdim_ = ctx_.dim("mask_decoder.iou_token.weight", 1);
    tokens_ = ctx_.dim("mask_decoder.mask_tokens.weight", 0);
    ATROUS_ASSIGN_OR_RETURN(tdepth_, ctx_.count_blocks("mask_decoder.transformer.layers.{i}"));
    mlp_ = ctx_.dim("mask_decoder.transformer.layers.0.mlp.lin1.weight", 0);
    internal_ = ctx_.dim("mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight", 0);
    ATROUS_ASSIGN_OR_RETURN(iou_depth_, ctx_.count_blocks("mask_decoder.iou_prediction_head.layers.{i}"));
    ATROUS_ASSIGN_OR_RETURN(hyper_depth_, ctx_.count_blocks("mask_decoder.output_hypernetworks_mlps.0.layers.{i}"));
    iou_hidden_ = ctx_.dim("mask_decoder.iou_prediction_head.layers.0.weight", 0);
    ATROUS_ASSIGN_OR_RETURN(dec_heads_, c.get_int("decoder_heads"));
    if (embed_ != out_ || tdim_ != out_)
      ctx_.problem(ProblemKind::kShape, "prompt_encoder.point_embeddings.0.weight",
                   "the prompt embedding (" + std::to_string(embed_) + ") and decoder (" + std::to_string(tdim_) +
                       ") dims must equal the image embedding's " + std::to_string(out_));
    if (tokens_ < 1 || dec_heads_ < 1 || tdim_ % dec_heads_ != 0 || internal_ % dec_heads_ != 0 || tdim_ % 8 != 0)
      return invalid_argument("sam: decoder_heads " + std::to_string(dec_heads_) + " must divide the decoder dims " +
                              std::to_string(tdim_) + " and " + std::to_string(internal_) + " (and the dim must be a multiple of 8)");
    return Status::Ok();
  }

  // ---- helpers --------------------------------------------------------------------
  // Each constant is written to the file once: the first graph that asks for a name
  // makes it, and later graphs get a shared_constant over the same bytes (decode and
  // decode_prepared share every decoder weight).
  int once(GraphBuilder& g, const std::string& name, const std::function<int()>& make) {
    auto local = made_.find({&g, name});
    if (local != made_.end()) return local->second;
    auto first = first_.find(name);
    const int id = first != first_.end() ? g.shared_constant(name, *first->second.first, first->second.second) : make();
    if (id >= 0) {
      made_[{&g, name}] = id;
      if (first == first_.end()) first_[name] = {&g, id};
    }
    return id;
  }
  int p(GraphBuilder& g, const std::string& key, const Shape& s) {
    return once(g, key, [&] { return ctx_.param(g, key, s); });
  }
  int p32(GraphBuilder& g, const std::string& key, const Shape& s) {
    return once(g, key, [&] {
      ParamOptions o;
      o.keep_f32 = true;
      return ctx_.param(g, key, s, o);
    });
  }
  int zeros(GraphBuilder& g, const std::string& name, const Shape& s) {
    return once(g, name, [&] { return g.constant_f32(name, s, std::vector<float>(static_cast<size_t>(checked_numel(s).value()), 0.0f)); });
  }

  // Tensor `key` (checked against `expected`) stored under `name` with another shape
  // of the same size, f32; or several keys stacked along dim 0.
  int derived(GraphBuilder& g, const std::string& name, const std::vector<std::string>& keys, const Shape& expected,
              const Shape& shape) {
    return once(g, name, [&] { return make_derived(g, name, keys, expected, shape); });
  }
  int make_derived(GraphBuilder& g, const std::string& name, const std::vector<std::string>& keys, const Shape& expected,
                   const Shape& shape) {
    std::vector<size_t> index;
    bool ok = true;
    for (const std::string& key : keys) {
      const SourceTensor* t = ctx_.find(key);
      if (!t) {
        ctx_.problem(ProblemKind::kMissing, key, "missing key '" + key + "' (expected shape " + shape_string(expected) + ")");
        ok = false;
        continue;
      }
      ctx_.ignore(key);  // used, through this derived constant
      if (t->shape != expected || !stored_type_is_float(t->stored)) {
        ctx_.problem(ProblemKind::kShape, key, "shape mismatch for '" + key + "': the file has " + shape_string(t->shape) + " " +
                                                   stored_type_name(t->stored) + ", the recipe expects " + shape_string(expected));
        ok = false;
      }
      index.push_back(static_cast<size_t>(t - ctx_.source().tensors().data()));
    }
    if (!ok) return g.constant_streamed(name, DType::kF32, shape, [name](void*) { return internal_error("placeholder '" + name + "' written"); });
    const WeightSource* src = &ctx_.source();
    const int64_t part = checked_numel(expected).value();
    return g.constant_streamed(name, DType::kF32, shape, [src, index, part](void* dst) {
      auto* d = static_cast<float*>(dst);
      for (size_t i = 0; i < index.size(); ++i) ATROUS_RETURN_IF_ERROR(src->read(index[i], DType::kF32, d + static_cast<int64_t>(i) * part));
      return Status::Ok();
    });
  }

  // A ConvTranspose2d with kernel 2×2, stride 2 as a Linear on input pixels: weight
  // [C, O, 2, 2] -> [(a, b, o), C], bias [O] -> [(a, b, o)] (see decoder()).
  int convt_weight(GraphBuilder& g, const std::string& key, int64_t c, int64_t o) {
    return once(g, key + ".weight#pixels", [&] { return make_convt_weight(g, key, c, o); });
  }
  int make_convt_weight(GraphBuilder& g, const std::string& key, int64_t c, int64_t o) {
    const std::string k = key + ".weight";
    const SourceTensor* t = ctx_.find(k);
    const Shape want{c, o, 2, 2};
    if (!t || t->shape != want || !stored_type_is_float(t->stored)) return p(g, k, want);  // records the problem
    ctx_.ignore(k);
    const WeightSource* src = &ctx_.source();
    const size_t index = static_cast<size_t>(t - src->tensors().data());
    return g.constant_streamed(k + "#pixels", DType::kF32, {4 * o, c}, [src, index, c, o](void* dst) {
      std::vector<float> w(static_cast<size_t>(c * o * 4));
      ATROUS_RETURN_IF_ERROR(src->read(index, DType::kF32, w.data()));
      auto* d = static_cast<float*>(dst);
      for (int64_t ci = 0; ci < c; ++ci)
        for (int64_t oi = 0; oi < o; ++oi)
          for (int64_t ab = 0; ab < 4; ++ab) d[(ab * o + oi) * c + ci] = w[static_cast<size_t>((ci * o + oi) * 4 + ab)];
      return Status::Ok();
    });
  }
  int convt_bias(GraphBuilder& g, const std::string& key, int64_t o) {
    return once(g, key + ".bias#pixels", [&] { return make_convt_bias(g, key, o); });
  }
  int make_convt_bias(GraphBuilder& g, const std::string& key, int64_t o) {
    const std::string k = key + ".bias";
    const SourceTensor* t = ctx_.find(k);
    if (!t || t->shape != Shape{o} || !stored_type_is_float(t->stored)) return p32(g, k, {o});
    ctx_.ignore(k);
    const WeightSource* src = &ctx_.source();
    const size_t index = static_cast<size_t>(t - src->tensors().data());
    return g.constant_streamed(k + "#pixels", DType::kF32, {4 * o}, [src, index, o](void* dst) {
      auto* d = static_cast<float*>(dst);
      ATROUS_RETURN_IF_ERROR(src->read(index, DType::kF32, d));
      for (int64_t ab = 1; ab < 4; ++ab) std::copy(d, d + o, d + ab * o);
      return Status::Ok();
    });
  }

  int ln(GraphBuilder& g, const std::string& key, int x, int64_t c, float eps, int axis = -1) {
    fb::LayerNormT a;
    a.axis = axis;
    a.eps = eps;
    return g.node(key, a, {x, p32(g, key + ".weight", {c}), p32(g, key + ".bias", {c})});
  }
  int add(GraphBuilder& g, const std::string& name, int a, int b) {
    fb::BinaryT t;
    t.kind = fb::BinaryKind::Add;
    return g.node(name, t, {a, b});
  }
  int transpose(GraphBuilder& g, const std::string& name, int x, std::vector<int32_t> perm) {
    fb::TransposeT t;
    t.perm = std::move(perm);
    return g.node(name, t, {x});
  }
  int reshape(GraphBuilder& g, const std::string& name, int x, std::vector<int64_t> shape) {
    fb::ReshapeT r;
    r.shape = std::move(shape);
    return g.node(name, r, {x});
  }
  int linear(GraphBuilder& g, const std::string& key, int x, int64_t n, int64_t k, fb::ActKind act = fb::ActKind::None) {
    fb::LinearT a;
    a.activation = act;
    return g.node(key, a, {x, p(g, key + ".weight", {n, k}), p32(g, key + ".bias", {n})});
  }
  int slice(GraphBuilder& g, const std::string& name, int x, int axis, int64_t start, int64_t end) {
    fb::SliceT s;
    s.axes = {axis};
    s.starts = {start};
    s.ends = {end};
    s.steps = {1};
    return g.node(name, s, {x});
  }
  // MLP of the mask decoder: ReLU between layers, none after the last.
  int mlp(GraphBuilder& g, const std::string& key, int x, int depth, int64_t in, int64_t hidden, int64_t out) {
    for (int i = 0; i < depth; ++i) {
      const int64_t k = i == 0 ? in : hidden, n = i == depth - 1 ? out : hidden;
      x = linear(g, idx(key + ".layers", i), x, n, k, i < depth - 1 ? fb::ActKind::Relu : fb::ActKind::None);
    }
    return x;
  }

  // ---- encode_image -----------------------------------------------------------------
  Status encoder() {
    GraphBuilder& g = ctx_.model().graph("encode_image");
    const std::string e = "image_encoder";
    int x = g.input("image", DType::kF32, {1, 3, img_, img_});
    fb::Conv2dT pc;
    pc.stride_h = pc.stride_w = static_cast<int32_t>(patch_);
    x = g.node(e + ".patch_embed.proj", pc, {x, p(g, e + ".patch_embed.proj.weight", {dim_, 3, patch_, patch_}), p32(g, e + ".patch_embed.proj.bias", {dim_})});
    x = transpose(g, e + ".patch_embed.permute", x, {0, 2, 3, 1});
    x = add(g, e + ".pos_embed.add", x, p(g, e + ".pos_embed", {1, grid_, grid_, dim_}));
    const int64_t hd = dim_ / heads_;
    for (int i = 0; i < depth_; ++i) {
      const std::string b = idx(e + ".blocks", i);
      int xn = ln(g, b + ".norm1", x, dim_, 1e-6f);
      fb::WindowAttentionT wa;
      wa.num_heads = static_cast<int32_t>(heads_);
      wa.window_size = global_[static_cast<size_t>(i)] ? 0 : static_cast<int32_t>(window_);
      const int rel_h = rel_pos_ ? p32(g, b + ".attn.rel_pos_h", {-1, hd}) : -1;
      const int rel_w = rel_pos_ ? p32(g, b + ".attn.rel_pos_w", {-1, hd}) : -1;
      x = g.node(b + ".attn", wa,
                 {xn, p(g, b + ".attn.qkv.weight", {3 * dim_, dim_}), ctx_.optional_param(g, b + ".attn.qkv.bias", {3 * dim_}),
                  p(g, b + ".attn.proj.weight", {dim_, dim_}), p32(g, b + ".attn.proj.bias", {dim_}), rel_h, rel_w, x});
      xn = ln(g, b + ".norm2", x, dim_, 1e-6f);
      const int64_t hidden = ctx_.dim(b + ".mlp.lin1.weight", 0);
      if (hidden < 1) return Status::Ok();
      fb::FeedForwardT ff;
      ff.activation = fb::ActKind::Gelu;
      x = g.node(b + ".mlp", ff, {xn, p(g, b + ".mlp.lin1.weight", {hidden, dim_}), p32(g, b + ".mlp.lin1.bias", {hidden}),
                                  p(g, b + ".mlp.lin2.weight", {dim_, hidden}), p32(g, b + ".mlp.lin2.bias", {dim_}), x});
    }
    // Neck: the 1×1 conv as a Linear on [1, G, G, D] (no layout change for 768 channels).
    fb::LinearT nl;
    x = g.node(e + ".neck.0", nl, {x, derived(g, e + ".neck.0.weight", {e + ".neck.0.weight"}, {out_, dim_, 1, 1}, {out_, dim_})});
    x = ln(g, e + ".neck.1", x, out_, 1e-6f);
    x = transpose(g, e + ".neck.permute", x, {0, 3, 1, 2});
    fb::Conv2dT c3;
    c3.pad_top = c3.pad_left = c3.pad_bottom = c3.pad_right = 1;
    x = g.node(e + ".neck.2", c3, {x, p(g, e + ".neck.2.weight", {out_, out_, 3, 3})});
    x = ln(g, e + ".neck.3", x, out_, 1e-6f, 1);
    g.output(x, "image_embeddings");
    fb::PreprocessT pre;
    pre.input = "image";
    pre.resize = fb::ResizePolicy::LongestSide;
    pre.width = pre.height = static_cast<int32_t>(img_);
    pre.antialias = true;
    pre.channel_order = fb::ChannelOrder::RGB;
    pre.mean.assign(kPixelMean, kPixelMean + 3);
    pre.std.assign(kPixelStd, kPixelStd + 3);
    pre.pad_width = pre.pad_height = static_cast<int32_t>(img_);
    pre.pad_value = 0.0f;
    g.set_preprocess(pre);
    return Status::Ok();
  }

  // ---- decode -------------------------------------------------------------------------
  // One MHA node (segment_anything's decoder Attention) with its projections, plus
  // `residual` when given (-1: none).
  int attention(GraphBuilder& g, const std::string& key, int q, int k, int v, int64_t inner, int residual = -1) {
    fb::MultiHeadAttentionT a;
    a.num_heads = static_cast<int32_t>(dec_heads_);
    std::vector<int> in = {q, k, v, p(g, key + ".q_proj.weight", {inner, tdim_}), p32(g, key + ".q_proj.bias", {inner}),
                           p(g, key + ".k_proj.weight", {inner, tdim_}), p32(g, key + ".k_proj.bias", {inner}),
                           p(g, key + ".v_proj.weight", {inner, tdim_}), p32(g, key + ".v_proj.bias", {inner}),
                           p(g, key + ".out_proj.weight", {tdim_, inner}), p32(g, key + ".out_proj.bias", {tdim_})};
    if (residual >= 0) in.insert(in.end(), {-1, residual});  // input 11 (bias) absent, 12 the residual
    return g.node(key, a, in);
  }

  // The attention above with its keys and values projected and split into heads already
  // (prepare_image's keys0 [1, h, d, L] and values0 [1, h, L, d]): q_proj, the scaled scores
  // as a MatMul, Softmax, the MatMul with the values and out_proj, as Attention.forward.
  int prepared_attention(GraphBuilder& g, const std::string& key, int q, int keys0, int values0) {
    const int64_t h = dec_heads_, d = internal_ / dec_heads_;
    int qh = linear(g, key + ".q_proj", q, internal_, tdim_);
    qh = transpose(g, key + ".q_heads", reshape(g, key + ".q_split", qh, {1, -1, h, d}), {0, 2, 1, 3});
    fb::MatMulT sc;
    sc.alpha = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)));
    fb::SoftmaxT sm;
    sm.axis = -1;
    int a = g.node(key + ".softmax", sm, {g.node(key + ".scores", sc, {qh, keys0})});
    int o = g.node(key + ".mix", fb::MatMulT{}, {a, values0});
    o = reshape(g, key + ".o_merge", transpose(g, key + ".o_tokens", o, {0, 2, 1, 3}), {1, -1, internal_});
    return linear(g, key + ".out_proj", o, tdim_, internal_);
  }

  // The dense positional encoding of the grid, token-major [1, G·G, E], computed from the
  // Gaussian matrix when the model is written (PositionEmbeddingRandom.forward).
  int dense_pe_constant(GraphBuilder& g) {
    const std::string gk = "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix";
    const int64_t F = out_ / 2, G = grid_;
    // (decode_graph's p32 of the key records a missing or misshapen matrix)
    return once(g, "prompt_encoder.dense_pe", [&] {
      const SourceTensor* t = ctx_.find(gk);
      const WeightSource* srcw = &ctx_.source();
      const size_t index = t ? static_cast<size_t>(t - ctx_.source().tensors().data()) : 0;
      const bool ok = t && t->shape == Shape{2, F};
      return g.constant_streamed("prompt_encoder.dense_pe", DType::kF32, {1, G * G, out_}, [srcw, index, ok, F, G](void* dst) {
        if (!ok) return internal_error("placeholder dense_pe written");
        std::vector<float> gm(static_cast<size_t>(2 * F));
        ATROUS_RETURN_IF_ERROR(srcw->read(index, DType::kF32, gm.data()));
        dense_pe(gm.data(), F, G, G, static_cast<float*>(dst));
        return Status::Ok();
      });
    });
  }

  // [1, E, G, G] -> the image tokens [1, G·G, E].
  int image_tokens(GraphBuilder& g, int emb) {
    const std::string md = "mask_decoder";
    return reshape(g, md + ".src_tokens", transpose(g, md + ".src_nhwc", emb, {0, 2, 3, 1}), {1, grid_ * grid_, out_});
  }
  int no_mask_embed(GraphBuilder& g) {
    const std::string k = "prompt_encoder.no_mask_embed.weight";
    return derived(g, k, {k}, {1, out_}, {1, 1, out_});
  }

  // decode: the prompt encoder and mask decoder on the image embedding, for any prompt.
  // prepare_image + decode_prepared: the same for prompts without a mask input, split at
  // what does not depend on the prompt. Without a mask the dense prompt is the constant
  // no_mask_embed, so the image tokens, their sum with the positional encoding and the
  // first token-to-image attention's key and value projections are the same for every
  // prompt; prepare_image computes them once per image, and decode_prepared starts from
  // them. SamPredictor takes that path for prompts without a mask (docs/sam.md).
  Status decoder() {
    ATROUS_RETURN_IF_ERROR(decode_graph(false));
    ATROUS_RETURN_IF_ERROR(prepare_graph());
    return decode_graph(true);
  }

  // prepare_image: image_embeddings [1, E, G, G] -> image_tokens [1, G·G, E] (+ no_mask_embed),
  // image_tokens_pe [1, G·G, E] (+ the dense positional encoding), keys0 [1, h, d, G·G] and
  // values0 [1, h, G·G, d]: layer 0's cross_attn_token_to_image k_proj of image_tokens_pe and
  // v_proj of image_tokens, by head (the keys transposed for the score product).
  Status prepare_graph() {
    GraphBuilder& g = ctx_.model().graph("prepare_image");
    const std::string md = "mask_decoder", a = "mask_decoder.transformer.layers.0.cross_attn_token_to_image";
    const int64_t G = grid_, E = out_, h = dec_heads_, d = internal_ / dec_heads_;
    int emb = g.input("image_embeddings", DType::kF32, {1, E, G, G});
    int src = add(g, md + ".src_no_mask", image_tokens(g, emb), no_mask_embed(g));
    int src_pe = add(g, md + ".src_pe", src, dense_pe_constant(g));
    auto heads = [&](const std::string& name, int x, std::vector<int32_t> perm) {
      return transpose(g, name + "_heads", reshape(g, name + "_split", x, {1, G * G, h, d}), std::move(perm));
    };
    g.output(src, "image_tokens");
    g.output(src_pe, "image_tokens_pe");
    g.output(heads(a + ".k", linear(g, a + ".k_proj", src_pe, internal_, tdim_), {0, 2, 3, 1}), "keys0");
    g.output(heads(a + ".v", linear(g, a + ".v_proj", src, internal_, tdim_), {0, 2, 1, 3}), "values0");
    return Status::Ok();
  }

  Status decode_graph(bool prepared) {
    GraphBuilder& g = ctx_.model().graph(prepared ? "decode_prepared" : "decode");
    const std::string pe = "prompt_encoder", md = "mask_decoder", tr = "mask_decoder.transformer";
    const int64_t G = grid_, E = out_, M = 4 * grid_, F = E / 2, h = dec_heads_, d = internal_ / dec_heads_;
    int keys = -1, k0 = -1, keys0 = -1, values0 = -1, emb = -1, mask_in = -1, has_mask = -1;
    if (prepared) {
      keys = g.input("image_tokens", DType::kF32, {1, G * G, E});
      k0 = g.input("image_tokens_pe", DType::kF32, {1, G * G, E});
      keys0 = g.input("keys0", DType::kF32, {1, h, d, G * G});
      values0 = g.input("values0", DType::kF32, {1, h, G * G, d});
    } else {
      emb = g.input("image_embeddings", DType::kF32, {1, E, G, G});
    }
    int coords = g.input("point_coords", DType::kF32, {1, -1, 2});
    int labels = g.input("point_labels", DType::kF32, {1, -1});
    if (!prepared) {
      mask_in = g.input("mask_input", DType::kF32, {1, 1, M, M});
      has_mask = g.input("has_mask_input", DType::kF32, {1});
    }

    // Sparse prompt tokens.
    std::vector<std::string> pkeys;
    for (int i = 0; i < 4; ++i) pkeys.push_back(idx(pe + ".point_embeddings", i) + ".weight");
    fb::PromptEncodingT pa;
    pa.width = pa.height = static_cast<float>(img_);
    const int gauss = p32(g, pe + ".pe_layer.positional_encoding_gaussian_matrix", {2, F});
    int sparse = g.node(pe + ".sparse", pa,
                        {coords, labels, gauss, derived(g, pe + ".point_embeddings", pkeys, {1, E}, {4, E}),
                         derived(g, pe + ".not_a_point_embed.weight", {pe + ".not_a_point_embed.weight"}, {1, E}, {E})});
    fb::UnaryT gelu;
    gelu.kind = fb::ActKind::Gelu;
    if (!prepared) {
      // Dense prompt: has_mask · mask_downscaling(mask) + (1 − has_mask) · no_mask_embed
      // (SamOnnxModel), added to the image tokens.
      const std::string ds = pe + ".mask_downscaling";
      const int64_t c1 = mask_chans_ / 4, c2 = mask_chans_;
      fb::Conv2dT k2;
      k2.stride_h = k2.stride_w = 2;
      int m = g.node(ds + ".0", k2, {mask_in, p(g, ds + ".0.weight", {c1, 1, 2, 2}), p32(g, ds + ".0.bias", {c1})});
      m = ln(g, ds + ".1", m, c1, 1e-6f, 1);
      m = g.node(ds + ".2", gelu, {m});
      m = g.node(ds + ".3", k2, {m, p(g, ds + ".3.weight", {c2, c1, 2, 2}), p32(g, ds + ".3.bias", {c2})});
      m = ln(g, ds + ".4", m, c2, 1e-6f, 1);
      m = g.node(ds + ".5", gelu, {m});
      // The last 1×1 conv as a Linear on channels-last tokens: the blend with the no-mask
      // embedding and the image tokens then happens in the [1, G·G, E] layout the
      // transformer uses, on plain tensors.
      m = reshape(g, ds + ".tokens", transpose(g, ds + ".nhwc", m, {0, 2, 3, 1}), {1, G * G, c2});
      fb::LinearT l6;
      m = g.node(ds + ".6", l6, {m, derived(g, ds + ".6.weight", {ds + ".6.weight"}, {E, c2, 1, 1}, {E, c2}), p32(g, ds + ".6.bias", {E})});
      fb::BinaryT mul;
      mul.kind = fb::BinaryKind::Mul;
      fb::BinaryT sub;
      sub.kind = fb::BinaryKind::Sub;
      m = g.node(pe + ".mask_embedding", mul, {m, has_mask});
      int one = g.constant_f32(pe + ".one", {1}, {1.0f});
      int no_mask = g.node(pe + ".no_mask_weight", mul, {no_mask_embed(g), g.node(pe + ".no_mask_scale", sub, {one, has_mask})});
      keys = add(g, md + ".src", add(g, md + ".src_no_mask", image_tokens(g, emb), no_mask), m);
    }
    const int key_pe = dense_pe_constant(g);
    fb::ConcatT cat1;
    cat1.axis = 1;
    int tokens = g.node(md + ".tokens", cat1,
                        {derived(g, md + ".iou_token.weight", {md + ".iou_token.weight"}, {1, E}, {1, 1, E}),
                         derived(g, md + ".mask_tokens.weight", {md + ".mask_tokens.weight"}, {tokens_, E}, {1, tokens_, E}), sparse});

    // Two-way transformer.
    int queries = tokens;
    for (int i = 0; i < tdepth_; ++i) {
      const std::string l = idx(tr + ".layers", i);
      const int64_t self_inner = ctx_.dim(l + ".self_attn.q_proj.weight", 0);
      if (i == 0) {
        queries = attention(g, l + ".self_attn", queries, -1, -1, self_inner);
      } else {
        int q = add(g, l + ".self_attn.q", queries, tokens);
        queries = attention(g, l + ".self_attn", q, q, queries, self_inner, queries);
      }
      queries = ln(g, l + ".norm1", queries, E, 1e-5f);
      int q = add(g, l + ".q_pe", queries, tokens);
      const bool from_prepared = prepared && i == 0;
      int k = from_prepared ? k0 : add(g, l + ".k_pe", keys, key_pe);
      const std::string ti = l + ".cross_attn_token_to_image";
      queries = from_prepared ? add(g, ti + ".residual", queries, prepared_attention(g, ti, q, keys0, values0))
                              : attention(g, ti, q, k, keys, internal_, queries);
      queries = ln(g, l + ".norm2", queries, E, 1e-5f);
      fb::FeedForwardT ff;
      ff.activation = fb::ActKind::Relu;
      queries = g.node(l + ".mlp", ff, {queries, p(g, l + ".mlp.lin1.weight", {mlp_, E}), p32(g, l + ".mlp.lin1.bias", {mlp_}),
                                        p(g, l + ".mlp.lin2.weight", {E, mlp_}), p32(g, l + ".mlp.lin2.bias", {E}), queries});
      queries = ln(g, l + ".norm3", queries, E, 1e-5f);
      q = add(g, l + ".q_pe2", queries, tokens);
      keys = attention(g, l + ".cross_attn_image_to_token", k, q, queries, internal_, keys);
      keys = ln(g, l + ".norm4", keys, E, 1e-5f);
    }
    {
      int q = add(g, tr + ".final_q", queries, tokens);
      int k = add(g, tr + ".final_k", keys, key_pe);
      queries = attention(g, tr + ".final_attn_token_to_image", q, k, keys, internal_, queries);
      queries = ln(g, tr + ".norm_final_attn", queries, E, 1e-5f);
    }

    // Output upscaling (ConvTranspose2d 2×2/2, LayerNorm2d, GELU, ConvTranspose2d 2×2/2, GELU) on
    // channels-last tokens: a transposed conv whose kernel equals its stride maps each input
    // pixel to its own 2×2 output pixels, so it is a Linear per pixel whose outputs are ordered
    // (a, b, o) — output pixel (2i + a, 2j + b), channel o. LayerNorm2d is then a LayerNorm
    // over each group of o. The masks come out in (i, j, a, b, a2, b2) pixel order and one
    // Transpose puts them in image order, so no feature map is ever transposed.
    const std::string us = md + ".output_upscaling";
    const int64_t c4 = E / 4, c8 = E / 8;
    int up = g.node(us + ".0", fb::LinearT{}, {keys, convt_weight(g, us + ".0", E, c4), convt_bias(g, us + ".0", c4)});
    up = reshape(g, us + ".0.pixels", up, {1, G * G, 4, c4});
    up = ln(g, us + ".1", up, c4, 1e-6f);
    up = g.node(us + ".2", gelu, {up});
    up = reshape(g, us + ".2.pixels", up, {1, 4 * G * G, c4});
    // Hypernetworks: one MLP per mask token -> [1, tokens, E/8].
    std::vector<int> hyper;
    for (int i = 0; i < tokens_; ++i) {
      int t = slice(g, idx(md + ".mask_token_out", i), queries, 1, 1 + i, 2 + i);
      hyper.push_back(mlp(g, idx(md + ".output_hypernetworks_mlps", i), t, hyper_depth_, E, E, c8));
    }
    int hyper_in = reshape(g, md + ".hyper_in_rows", g.node(md + ".hyper_in", cat1, hyper), {tokens_, c8});
    // The second upscaling conv (a Linear c4 -> (a2, b2, o)), its GELU and the mask product
    // masks = upscaled · hyper_inᵀ in one FeedForward, so the [16·G², E/8] upscaled features
    // are never written: its w2 is the block-diagonal [4·tokens, 4·c8] of hyper_in (block s
    // for output sub-pixel s = (a2, b2)), and its output rows (i, j, a, b) hold (a2, b2, t):
    // the order a MatMul over [1, 16·G², c8] gave.
    fb::ConcatT cat0;
    cat0.axis = 0;
    std::vector<int> blocks;
    for (int s = 0; s < 4; ++s) {
      std::vector<int> parts;
      if (s > 0) parts.push_back(zeros(g, idx(md + ".hyper_zeros_left", s), {tokens_, s * c8}));
      parts.push_back(hyper_in);
      if (s < 3) parts.push_back(zeros(g, idx(md + ".hyper_zeros_right", s), {tokens_, (3 - s) * c8}));
      fb::ConcatT cat_cols;
      cat_cols.axis = 1;
      blocks.push_back(g.node(idx(md + ".hyper_block", s), cat_cols, parts));
    }
    int hyper_blocks = g.node(md + ".hyper_blocks", cat0, blocks);  // [4·tokens, 4·c8]
    fb::FeedForwardT head;
    head.activation = fb::ActKind::Gelu;
    int masks = g.node(md + ".masks", head, {up, convt_weight(g, us + ".3", c4, c8), convt_bias(g, us + ".3", c8), hyper_blocks});
    masks = reshape(g, md + ".masks_pixels", masks, {1, G, G, 2, 2, 2, 2, tokens_});  // from [1, 4·G², 4·tokens]
    masks = transpose(g, md + ".masks_order", masks, {0, 7, 1, 3, 5, 2, 4, 6});  // [1, T, i, a, a2, j, b, b2]
    masks = reshape(g, md + ".masks_grid", masks, {1, tokens_, M, M});
    g.output(masks, "low_res_masks");
    int iou = reshape(g, md + ".iou_token_out", slice(g, md + ".iou_token_slice", queries, 1, 0, 1), {1, E});
    iou = mlp(g, md + ".iou_prediction_head", iou, iou_depth_, E, iou_hidden_, tokens_);
    g.output(iou, "iou_predictions");
    fb::PostprocessT post;
    post.kind = fb::PostKind::MaskThreshold;
    post.output = "low_res_masks";
    post.mask_threshold = 0.0f;
    g.set_postprocess(post);
    return Status::Ok();
  }

  RecipeContext& ctx_;
  std::map<std::pair<const GraphBuilder*, std::string>, int> made_;  // once(): each graph's constants by name
  std::map<std::string, std::pair<GraphBuilder*, int>> first_;       // the graph that made each, and its value
  int64_t dim_ = 0, patch_ = 0, grid_ = 0, out_ = 0, img_ = 0, heads_ = 0, window_ = 14;
  int depth_ = 0;
  bool rel_pos_ = false;
  std::vector<bool> global_;
  std::string variant_;
  int64_t embed_ = 0, mask_chans_ = 0, tdim_ = 0, tokens_ = 0, mlp_ = 0, internal_ = 0, iou_hidden_ = 0, dec_heads_ = 8;
  int tdepth_ = 0, iou_depth_ = 0, hyper_depth_ = 0;
};

Status build_sam(RecipeContext& ctx) { return SamBuilder(ctx).build(); }

}  // namespace

extern const Recipe kSamRecipe;
const Recipe kSamRecipe = {
    "sam",
    "Segment Anything (official vit_b / vit_l / vit_h state dicts): entry points encode_image, decode, prepare_image and decode_prepared",
    {{"encoder_heads", ConfigType::kInt, "", "image encoder heads (default: embed dim / rel-pos head dim)"},
     {"window_size", ConfigType::kInt, "", "encoder window size (default 14, or from the rel-pos tables)"},
     {"global_attn_indexes", ConfigType::kIntList, "", "encoder blocks with global attention (default: the official ones)"},
     {"decoder_heads", ConfigType::kInt, "8", "mask decoder attention heads"}},
    build_sam,
};

}  // namespace atrous::convert
