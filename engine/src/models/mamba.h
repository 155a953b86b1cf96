// Mamba language models (mamba_ssm's MambaLMHeadModel) as Atrous graphs.
//
// The `mamba` converter recipe and the tests call this; it owns no weights. A
// MambaWeightSource answers "what shape has key k" and "add key k to this graph"
// (the converter streams checkpoint tensors, tests copy .npy files). Sizes come from
// the tensors (d_model, n_layer, vocab, d_inner, d_state, dt_rank, d_conv), so any
// mamba_ssm checkpoint of the Mamba-1 layout converts without a config file; only
// the RMSNorm eps (1e-5 in every released config) is not in the weights.
//
// Keys (mamba_ssm layout; the HF "-hf" spelling backbone.embeddings.weight is accepted):
//   backbone.embedding.weight [vocab, d_model]
//   backbone.layers.N.norm.weight [d_model]
//   backbone.layers.N.mixer.in_proj.weight [2·d_inner, d_model]   (.bias optional)
//   backbone.layers.N.mixer.conv1d.weight [d_inner, 1, d_conv], conv1d.bias [d_inner] (optional)
//   backbone.layers.N.mixer.x_proj.weight [dt_rank + 2·d_state, d_inner]
//   backbone.layers.N.mixer.dt_proj.weight [d_inner, dt_rank], dt_proj.bias [d_inner]
//   backbone.layers.N.mixer.A_log [d_inner, d_state], D [d_inner]
//   backbone.layers.N.mixer.out_proj.weight [d_model, d_inner]   (.bias optional)
//   backbone.norm_f.weight [d_model]
//   lm_head.weight [vocab, d_model] (optional: absent, or same_data() as the embedding, means tied)
//
// Graph of one entry point (pre-norm residual stack, residual in f32):
//   input_ids [B, L] -> Embedding -> for each layer: RMSNorm(mixer_out + residual) ->
//   Linear in_proj -> MambaScan -> Linear out_proj -> ... -> RMSNorm norm_f -> Linear lm_head
//   -> logits [B, L, vocab]
// States per layer i: conv_state.i [B, d_inner, d_conv] and ssm_state.i [B, d_inner, d_state]
// (mamba_ssm's InferenceParams layout); outputs conv_state_out.i, ssm_state_out.i.
//
//   MyWeights w(...);                       // implements MambaWeightSource
//   ModelBuilder mb("mamba-130m", "atrous convert");
//   ATROUS_ASSIGN_OR_RETURN(MambaConfig cfg, build_mamba_model(mb, w));
//   ATROUS_RETURN_IF_ERROR(mb.save("mamba.atrous"));
// gives entry points "main" (a sequence from zero state; logits and final states) and
// "step" (continues from given states: feed one token at a time, or any number).
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "atrous/status.h"
#include "atrous/tensor.h"
#include "builder/graph_builder.h"

namespace atrous::models {

struct MambaConfig {
  int64_t d_model = 0, n_layer = 0, vocab = 0;
  int64_t d_inner = 0, d_state = 0, dt_rank = 0, d_conv = 0;
  bool tied = true;  // lm_head.weight absent, or the same data as the embedding
  float norm_eps = 1e-5f;
  std::string embedding_key = "backbone.embedding.weight";
};

class MambaWeightSource {
 public:
  virtual ~MambaWeightSource() = default;
  // The tensor's shape, or null when the key is absent.
  virtual const Shape* shape(const std::string& key) const = 0;
  // Adds the tensor to g as an f32 constant named `key`; returns its value id (-1 when g failed).
  virtual int add_constant(GraphBuilder& g, const std::string& key) const = 0;
  // True when both keys hold the same data (e.g. a torch.save of a tied model writes the
  // embedding under both names): lm_head.weight is then not stored a second time.
  virtual bool same_data(const std::string& /*a*/, const std::string& /*b*/) const { return false; }
};

// Sizes from the tensors; every shape is checked against the others, errors name the key.
Result<MambaConfig> infer_mamba_config(const MambaWeightSource& w, float norm_eps = 1e-5f);

struct MambaGraphOptions {
  bool state_inputs = false;   // take conv_state.i / ssm_state.i (the "step" form)
  bool state_outputs = true;   // give conv_state_out.i / ssm_state_out.i
  DType ids_dtype = DType::kI64;
};

// Constants of a built graph by key, so another entry point can share them.
using MambaConstants = std::map<std::string, int>;

// Adds one entry point to g. With `share_from`/`shared` (a graph of the same ModelBuilder built
// earlier by this function) the weights are that graph's bytes (GraphBuilder::shared_constant).
Result<MambaConstants> build_mamba_lm(GraphBuilder& g, const MambaWeightSource& w, const MambaConfig& cfg,
                                      const MambaGraphOptions& opts, const GraphBuilder* share_from = nullptr,
                                      const MambaConstants* shared = nullptr);

// "main" and "step" as described above; returns the inferred configuration.
Result<MambaConfig> build_mamba_model(ModelBuilder& mb, const MambaWeightSource& w, float norm_eps = 1e-5f);

}  // namespace atrous::models
