#include "models/mamba.h"

namespace atrous::models {
namespace {

std::string layer_key(int64_t i, const std::string& rest) { return "backbone.layers." + std::to_string(i) + "." + rest; }

Status expect_shape(const MambaWeightSource& w, const std::string& key, const Shape& want, bool optional = false) {
  const Shape* s = w.shape(key);
  if (!s) {
    if (optional) return Status::Ok();
    return not_found("mamba: the weights have no '" + key + "' (expected " + shape_string(want) + ")");
  }
  if (*s != want) return invalid_model("mamba: '" + key + "' has shape " + shape_string(*s) + ", expected " + shape_string(want));
  return Status::Ok();
}

}  // namespace

Result<MambaConfig> infer_mamba_config(const MambaWeightSource& w, float norm_eps) {
  MambaConfig c;
  c.norm_eps = norm_eps;
  if (!w.shape(c.embedding_key) && w.shape("backbone.embeddings.weight")) c.embedding_key = "backbone.embeddings.weight";
  const Shape* emb = w.shape(c.embedding_key);
  if (!emb) return not_found("mamba: the weights have no 'backbone.embedding.weight': not a mamba_ssm MambaLMHeadModel state dict");
  if (emb->size() != 2) return invalid_model("mamba: '" + c.embedding_key + "' has shape " + shape_string(*emb) + ", expected [vocab, d_model]");
  c.vocab = (*emb)[0];
  c.d_model = (*emb)[1];
  while (w.shape(layer_key(c.n_layer, "mixer.in_proj.weight"))) ++c.n_layer;
  if (c.n_layer == 0) return not_found("mamba: no 'backbone.layers.0.mixer.in_proj.weight'");

  const Shape* in_proj = w.shape(layer_key(0, "mixer.in_proj.weight"));
  const Shape* a_log = w.shape(layer_key(0, "mixer.A_log"));
  const Shape* dt_proj = w.shape(layer_key(0, "mixer.dt_proj.weight"));
  const Shape* conv = w.shape(layer_key(0, "mixer.conv1d.weight"));
  if (in_proj->size() != 2 || (*in_proj)[0] % 2 != 0)
    return invalid_model("mamba: 'backbone.layers.0.mixer.in_proj.weight' has shape " + shape_string(*in_proj) + ", expected [2*d_inner, d_model]");
  c.d_inner = (*in_proj)[0] / 2;
  if (!a_log || a_log->size() != 2) return invalid_model("mamba: 'backbone.layers.0.mixer.A_log' is missing or not [d_inner, d_state]");
  c.d_state = (*a_log)[1];
  if (!dt_proj || dt_proj->size() != 2) return invalid_model("mamba: 'backbone.layers.0.mixer.dt_proj.weight' is missing or not [d_inner, dt_rank]");
  c.dt_rank = (*dt_proj)[1];
  if (!conv || conv->size() != 3) return invalid_model("mamba: 'backbone.layers.0.mixer.conv1d.weight' is missing or not [d_inner, 1, d_conv]");
  c.d_conv = (*conv)[2];

  const int64_t Dm = c.d_model, Di = c.d_inner;
  for (int64_t i = 0; i < c.n_layer; ++i) {
    ATROUS_RETURN_IF_ERROR(expect_shape(w, layer_key(i, "norm.weight"), {Dm}));
    ATROUS_RETURN_IF_ERROR(expect_shape(w, layer_key(i, "mixer.in_proj.weight"), {2 * Di, Dm}));
    ATROUS_RETURN_IF_ERROR(expect_shape(w, layer_key(i, "mixer.in_proj.bias"), {2 * Di}, true));
    ATROUS_RETURN_IF_ERROR(expect_shape(w, layer_key(i, "mixer.conv1d.weight"), {Di, 1, c.d_conv}));
    ATROUS_RETURN_IF_ERROR(expect_shape(w, layer_key(i, "mixer.conv1d.bias"), {Di}, true));
    ATROUS_RETURN_IF_ERROR(expect_shape(w, layer_key(i, "mixer.x_proj.weight"), {c.dt_rank + 2 * c.d_state, Di}));
    ATROUS_RETURN_IF_ERROR(expect_shape(w, layer_key(i, "mixer.dt_proj.weight"), {Di, c.dt_rank}));
    ATROUS_RETURN_IF_ERROR(expect_shape(w, layer_key(i, "mixer.dt_proj.bias"), {Di}, true));
    ATROUS_RETURN_IF_ERROR(expect_shape(w, layer_key(i, "mixer.A_log"), {Di, c.d_state}));
    ATROUS_RETURN_IF_ERROR(expect_shape(w, layer_key(i, "mixer.D"), {Di}, true));
    ATROUS_RETURN_IF_ERROR(expect_shape(w, layer_key(i, "mixer.out_proj.weight"), {Dm, Di}));
    ATROUS_RETURN_IF_ERROR(expect_shape(w, layer_key(i, "mixer.out_proj.bias"), {Dm}, true));
  }
  ATROUS_RETURN_IF_ERROR(expect_shape(w, "backbone.norm_f.weight", {Dm}));
  ATROUS_RETURN_IF_ERROR(expect_shape(w, "lm_head.weight", {c.vocab, Dm}, true));
  c.tied = w.shape("lm_head.weight") == nullptr || w.same_data("lm_head.weight", c.embedding_key);
  return c;
}

Result<MambaConstants> build_mamba_lm(GraphBuilder& g, const MambaWeightSource& w, const MambaConfig& cfg,
                                      const MambaGraphOptions& opts, const GraphBuilder* share_from,
                                      const MambaConstants* shared) {
  MambaConstants consts;
  // A weight of this graph: shared with the earlier graph when given, else added. -1 = absent.
  auto weight = [&](const std::string& key) -> int {
    if (!w.shape(key)) return -1;
    auto it = consts.find(key);
    if (it != consts.end()) return it->second;
    int id = -1;
    if (share_from && shared && shared->count(key)) id = g.shared_constant(key, *share_from, shared->at(key));
    else id = w.add_constant(g, key);
    consts[key] = id;
    return id;
  };
  const int64_t Di = cfg.d_inner;
  const int ids = g.input("input_ids", opts.ids_dtype, {-1, -1});
  const int emb_w = weight(cfg.embedding_key);
  int hidden = g.node("backbone.embedding", fb::EmbeddingT{}, {ids, emb_w});
  int residual = -1;
  std::vector<std::pair<int, std::string>> state_outputs;  // after the logits
  fb::RMSNormT norm;
  norm.eps = cfg.norm_eps;
  for (int64_t i = 0; i < cfg.n_layer; ++i) {
    const std::string p = "backbone.layers." + std::to_string(i) + ".";
    // add -> norm: the first layer's residual is the embedding itself
    int normed;
    if (residual < 0) {
      normed = g.node(p + "norm", norm, {hidden, weight(p + "norm.weight")});
      residual = hidden;
    } else {
      auto outs = g.node_n(p + "norm", norm, {hidden, weight(p + "norm.weight"), residual}, 2);
      normed = outs[0];
      residual = outs[1];
    }
    const int xz = g.node(p + "mixer.in_proj", fb::LinearT{}, {normed, weight(p + "mixer.in_proj.weight"), weight(p + "mixer.in_proj.bias")});
    std::vector<int> scan_in = {xz,
                                weight(p + "mixer.conv1d.weight"),
                                weight(p + "mixer.conv1d.bias"),
                                weight(p + "mixer.x_proj.weight"),
                                weight(p + "mixer.dt_proj.weight"),
                                weight(p + "mixer.dt_proj.bias"),
                                weight(p + "mixer.A_log"),
                                weight(p + "mixer.D")};
    if (opts.state_inputs) {
      scan_in.push_back(g.input("conv_state." + std::to_string(i), DType::kF32, {-1, Di, cfg.d_conv}));
      scan_in.push_back(g.input("ssm_state." + std::to_string(i), DType::kF32, {-1, Di, cfg.d_state}));
    }
    auto scan = g.node_n(p + "mixer.scan", fb::MambaScanT{}, scan_in, opts.state_outputs ? 3 : 1);
    if (opts.state_outputs) {
      state_outputs.emplace_back(scan[1], "conv_state_out." + std::to_string(i));
      state_outputs.emplace_back(scan[2], "ssm_state_out." + std::to_string(i));
    }
    hidden = g.node(p + "mixer.out_proj", fb::LinearT{}, {scan[0], weight(p + "mixer.out_proj.weight"), weight(p + "mixer.out_proj.bias")});
  }
  const int final_norm = g.node("backbone.norm_f", norm, {hidden, weight("backbone.norm_f.weight"), residual});
  const int head = cfg.tied ? emb_w : weight("lm_head.weight");
  const int logits = g.node("lm_head", fb::LinearT{}, {final_norm, head});
  g.output(logits, "logits");
  for (const auto& [value, name] : state_outputs) g.output(value, name);
  ATROUS_RETURN_IF_ERROR(g.status());
  return consts;
}

Result<MambaConfig> build_mamba_model(ModelBuilder& mb, const MambaWeightSource& w, float norm_eps) {
  ATROUS_ASSIGN_OR_RETURN(MambaConfig cfg, infer_mamba_config(w, norm_eps));
  mb.set_metadata("architecture", "mamba");
  mb.set_metadata("mamba.config", "d_model=" + std::to_string(cfg.d_model) + " n_layer=" + std::to_string(cfg.n_layer) +
                                      " vocab=" + std::to_string(cfg.vocab) + " d_inner=" + std::to_string(cfg.d_inner) +
                                      " d_state=" + std::to_string(cfg.d_state) + " dt_rank=" + std::to_string(cfg.dt_rank) +
                                      " d_conv=" + std::to_string(cfg.d_conv) + (cfg.tied ? " tied" : " untied"));
  GraphBuilder& main = mb.graph("main");
  MambaGraphOptions main_opts;
  ATROUS_ASSIGN_OR_RETURN(MambaConstants consts, build_mamba_lm(main, w, cfg, main_opts));
  GraphBuilder& step = mb.graph("step");
  MambaGraphOptions step_opts;
  step_opts.state_inputs = true;
  ATROUS_RETURN_IF_ERROR(build_mamba_lm(step, w, cfg, step_opts, &main, &consts).status());
  return cfg;
}

}  // namespace atrous::models
