#include "convert/param_table.h"

#include <cctype>

#include "ops/op_registry.h"

namespace atrous::convert {
namespace {

void bind_conv_transpose(const fb::OpUnion& op, std::map<std::string, int64_t>* s) {
  if (const auto* a = op.AsConvTranspose2d()) (*s)["groups"] = a->groups;
}

void bind_lite_mla(const fb::OpUnion& op, std::map<std::string, int64_t>* s) {
  if (const auto* a = op.AsLiteMLA()) (*s)["dim"] = a->dim;
}

// LiteMLA: per scale s, the depthwise k×k conv then the grouped 1×1 conv (inputs 4+2s, 5+2s).
void lite_mla_scales(const fb::OpUnion& op, std::vector<ParamSlot>* slots) {
  const auto* a = op.AsLiteMLA();
  if (!a) return;
  for (size_t i = 0; i < a->scales.size(); ++i) {
    std::string k = std::to_string(a->scales[i]);
    int in = 4 + 2 * static_cast<int>(i);
    slots->push_back({in, "aggreg." + std::to_string(i) + ".0.weight", false, "[T3, 1, " + k + ", " + k + "]"});
    slots->push_back({in + 1, "aggreg." + std::to_string(i) + ".1.weight", false, "[T3, dim, 1, 1]"});
  }
}

// Projections of the projected-attention nodes (inputs 3-10: wq, bq, wk, bk, wv, bv,
// wo, bo; docs/ops/attention.md): four Linear modules named q, k, v, out.
std::vector<ParamSlot> projections(const std::string& q, const std::string& k, const std::string& v,
                                   const std::string& o, bool bias_optional = true) {
  return {{3, q + ".weight", false, "[I, Eq]"},  {4, q + ".bias", bias_optional, "[I]"},
          {5, k + ".weight", false, "[I, Ek]"},  {6, k + ".bias", bias_optional, "[I]"},
          {7, v + ".weight", false, "[Iv, Ev]"}, {8, v + ".bias", bias_optional, "[Iv]"},
          {9, o + ".weight", false, "[Eo, Iv]"}, {10, o + ".bias", bias_optional, "[Eo]"}};
}

std::vector<ParamSlot> with(std::vector<ParamSlot> a, const std::vector<ParamSlot>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Packed q/k/v: one [3I, E] weight split in row thirds.
std::vector<ParamSlot> packed(const std::string& w, const std::string& b, const std::string& o) {
  return {{3, w, false, "[I, E]", 0, 3}, {4, b, true, "[I]", 0, 3},  {5, w, false, "[I, E]", 1, 3},
          {6, b, true, "[I]", 1, 3},     {7, w, false, "[I, E]", 2, 3}, {8, b, true, "[I]", 2, 3},
          {9, o + ".weight", false, "[Eo, I]"}, {10, o + ".bias", true, "[Eo]"}};
}

std::vector<ParamLayout> mha_layouts() {
  return {
      {"torch", "torch.nn.MultiheadAttention (equal q/k/v dims)", packed("in_proj_weight", "in_proj_bias", "out_proj"), {}},
      {"torch_kvdim", "torch.nn.MultiheadAttention with kdim/vdim",
       {{3, "q_proj_weight", false, "[I, Eq]"}, {4, "in_proj_bias", true, "[I]", 0, 3},
        {5, "k_proj_weight", false, "[I, Ek]"}, {6, "in_proj_bias", true, "[I]", 1, 3},
        {7, "v_proj_weight", false, "[I, Ev]"}, {8, "in_proj_bias", true, "[I]", 2, 3},
        {9, "out_proj.weight", false, "[Eo, I]"}, {10, "out_proj.bias", true, "[Eo]"}},
       {}},
      {"qkv", "timm ViT Attention (qkv, proj)", packed("qkv.weight", "qkv.bias", "proj"), {}},
      {"separate", "segment-anything Attention, Hugging Face (q_proj, k_proj, v_proj, out_proj)",
       projections("q_proj", "k_proj", "v_proj", "out_proj"), {}},
  };
}

std::vector<ParamSlot> gau_slots(const std::string& norm1, const std::string& offset, const std::string& out) {
  return {{1, norm1, true, norm1 == "norm.g" ? "[1]" : "[D]"},
          {2, "norm.bias", true, "[D]"},
          {3, "to_hidden.0.weight", false, "[H2, D]"},
          {4, "to_hidden.0.bias", true, "[H2]"},
          {5, "to_qk.0.weight", false, "[S, D]"},
          {6, "to_qk.0.bias", true, "[S]"},
          {7, offset + ".gamma", false, "[R, S]"},
          {8, offset + ".beta", false, "[R, S]"},
          {9, out + ".weight", false, "[D, E]"},
          {10, out + ".bias", true, "[D]"},
          {11, "rel_pos_bias.relative_attention_bias.weight", true, "[NB, 1]"}};
}

// State-space nodes: layouts from the schema comments (format/atrous.fbs) and the
// reference code's module names (mamba_ssm Mamba, Vim bimamba v2, state-spaces S4D).
std::vector<ParamSlot> mamba_slots(const std::string& sfx, const std::string& a_log) {
  return {{1, "conv1d" + sfx + ".weight", false, "[Di, 1, K]"},
          {2, "conv1d" + sfx + ".bias", true, "[Di]"},
          {3, "x_proj" + sfx + ".weight", false, "[RN, Di]"},
          {4, "dt_proj" + sfx + ".weight", false, "[Di, R]"},
          {5, "dt_proj" + sfx + ".bias", true, "[Di]"},
          {6, a_log, false, "[Di, N]"},
          {7, "D" + sfx, true, "[Di]"}};
}

std::vector<ParamSlot> shifted(std::vector<ParamSlot> slots, int by) {
  for (ParamSlot& s : slots) s.input += by;
  return slots;
}

const std::vector<OpParams>& table() {
  static const std::vector<OpParams> t = {
      {"Conv2d", {{"torch", "torch.nn.Conv2d", {{1, "weight", false, "[O, Ig, kH, kW]"}, {2, "bias", true, "[O]"}}, {}}}},
      {"BoundaryRefinement",
       {{"gcn", "GCN Boundary Refinement block: x + conv2(relu(conv1(x))), two torch.nn.Conv2d",
         {{1, "conv1.weight", false, "[M, C, Kh, Kw]"}, {2, "conv2.weight", false, "[C, M, Lh, Lw]"},
          {3, "conv1.bias", true, "[M]"}, {4, "conv2.bias", true, "[C]"}},
         {}}}},
      {"ConvTranspose2d",
       {{"torch", "torch.nn.ConvTranspose2d",
         {{1, "weight", false, "[C, Og, kH, kW]"}, {2, "bias", true, "[Og*groups]"}}, {}}},
       bind_conv_transpose},
      {"BatchNorm",
       {{"torch", "torch.nn.BatchNorm2d / BatchNorm1d",
         {{1, "weight", false, "[C]"}, {2, "bias", false, "[C]"}, {3, "running_mean", false, "[C]"},
          {4, "running_var", false, "[C]"}},
         {"num_batches_tracked"}}}},
      {"Linear", {{"torch", "torch.nn.Linear", {{1, "weight", false, "[N, K]"}, {2, "bias", true, "[N]"}}, {}}}},
      {"LayerNorm",
       {{"torch", "torch.nn.LayerNorm (one normalised dim)", {{1, "weight", true, "[D]"}, {2, "bias", true, "[D]"}}, {}}}},
      {"MultiHeadAttention", mha_layouts()},
      {"LinearAttention",
       {{"fast_transformers", "fast-transformers AttentionLayer",
         projections("query_projection", "key_projection", "value_projection", "out_projection"), {}}}},
      {"PerformerAttention",
       {{"performer", "performer-pytorch Attention / SelfAttention",
         with(projections("to_q", "to_k", "to_v", "to_out"),
              {{11, "fast_attention.projection_matrix", false, "[M, Dh]"}}),
         {}}}},
      {"NormAttention",
       {{"linear", "fairseq-evo NormLinearAttention (LayerNorm)",
         with(projections("q_proj", "k_proj", "v_proj", "out_proj"),
              {{11, "layer_norm.weight", true, "[Iv]"}, {12, "layer_norm.bias", true, "[Iv]"}}),
         {}},
        {"linear_rms", "fairseq-evo NormLinearAttention (RMSNorm)",
         with(projections("q_proj", "k_proj", "v_proj", "out_proj"), {{11, "layer_norm.scale", false, "[Iv]"}}), {}},
        {"local", "fairseq-evo NormLocalAttention (GatedRMSNorm)",
         with(projections("q_proj", "k_proj", "v_proj", "out_proj"),
              {{11, "gated_rms_norm.scale", false, "[Iv]"}, {12, "gated_rms_norm.gate", false, "[Iv]"}}),
         {}}}},
      {"GatedAttentionUnit",
       {{"gau", "FLASH-pytorch GAU", gau_slots("norm.weight", "offsetscale", "to_out.0"), {}},
        {"gau_scalenorm", "FLASH-pytorch GAU with ScaleNorm", gau_slots("norm.g", "offsetscale", "to_out.0"), {}},
        {"flash", "FLASH-pytorch FLASH", gau_slots("norm.weight", "qk_offset_scale", "to_out"), {}},
        {"flash_scalenorm", "FLASH-pytorch FLASH with ScaleNorm (FLASHTransformer)",
         gau_slots("norm.g", "qk_offset_scale", "to_out"), {}}}},
      {"LiteMLA",
       {{"efficientvit", "efficientvit LiteMLA",
         {{1, "qkv.conv.weight", false, "[T3, C, 1, 1]"},
          {2, "proj.conv.weight", false, "[Co, TS, 1, 1]"},
          {3, "proj.conv.bias", true, "[Co]"}},
         {}}},
       bind_lite_mla,
       lite_mla_scales},
      {"Embedding", {{"torch", "torch.nn.Embedding", {{1, "weight", false, "[V, D]"}}, {}}}},
      {"RMSNorm", {{"torch", "RMSNorm modules (weight)", {{1, "weight", true, "[D]"}}, {}}}},
      {"MambaScan", {{"mamba_ssm", "mamba_ssm Mamba mixer (in_proj/out_proj are Linear nodes)",
                      mamba_slots("", "A_log"), {}}}},
      {"BiMambaScan", {{"vim", "Vim bimamba v2 mixer (in_proj/out_proj are Linear nodes)",
                        with(mamba_slots("", "A_log"), shifted(mamba_slots("_b", "A_b_log"), 7)), {}}}},
      {"S4D", {{"s4d", "state-spaces S4D (models/s4/s4d.py)",
                {{1, "kernel.log_dt", false, "[H]"},
                 {2, "kernel.C", false, "[H, N2, 2]"},
                 {3, "kernel.log_A_real", false, "[H, N2]"},
                 {4, "kernel.A_imag", true, "[H, N2]"},
                 {5, "D", true, "[H]"},
                 {6, "output_linear.0.weight", true, "[H2, H, 1]"},
                 {7, "output_linear.0.bias", true, "[H2]"}},
                {}}}},
      {"WindowAttention",
       {{"sam", "segment-anything / ViTDet image-encoder Attention (qkv, proj, rel_pos_h/w)",
         {{1, "qkv.weight", false, "[C3, C]"}, {2, "qkv.bias", true, "[C3]"}, {3, "proj.weight", false, "[C, C]"},
          {4, "proj.bias", true, "[C]"}, {5, "rel_pos_h", true, "[Lh, D]"}, {6, "rel_pos_w", true, "[Lw, D]"}},
         {}}}},
      {"FeedForward",
       {{"sam", "segment-anything MLPBlock (lin1, lin2)",
         {{1, "lin1.weight", false, "[F, C]"}, {2, "lin1.bias", true, "[F]"}, {3, "lin2.weight", false, "[Co, F]"},
          {4, "lin2.bias", true, "[Co]"}},
         {}},
        {"timm", "timm Mlp (fc1, fc2)",
         {{1, "fc1.weight", false, "[F, C]"}, {2, "fc1.bias", true, "[F]"}, {3, "fc2.weight", false, "[Co, F]"},
          {4, "fc2.bias", true, "[Co]"}},
         {}}}},
  };
  return t;
}

}  // namespace

const std::vector<OpParams>& all_op_params() { return table(); }

const OpParams* find_op_params(const std::string& op) {
  for (const OpParams& p : table())
    if (op == p.op) return &p;
  return nullptr;
}

Result<Shape> evaluate_shape_rule(const std::string& rule, std::map<std::string, int64_t>* symbols,
                                  const Shape* actual) {
  std::string r;
  for (char c : rule)
    if (!std::isspace(static_cast<unsigned char>(c))) r += c;
  if (r.size() < 2 || r.front() != '[' || r.back() != ']') return internal_error("bad shape rule '" + rule + "'");
  r = r.substr(1, r.size() - 2);
  std::vector<std::string> dims;
  if (!r.empty()) {
    size_t p = 0;
    while (true) {
      size_t q = r.find(',', p);
      dims.push_back(r.substr(p, q == std::string::npos ? std::string::npos : q - p));
      if (q == std::string::npos) break;
      p = q + 1;
    }
  }
  Shape expected;
  std::vector<std::string> single(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t value = 1;
    bool known = true;
    size_t p = 0;
    int factors = 0;
    while (p <= dims[i].size()) {
      size_t q = dims[i].find('*', p);
      std::string f = dims[i].substr(p, q == std::string::npos ? std::string::npos : q - p);
      if (f.empty()) return internal_error("bad shape rule '" + rule + "'");
      ++factors;
      if (std::isdigit(static_cast<unsigned char>(f[0]))) {
        value *= std::stoll(f);
      } else {
        auto it = symbols->find(f);
        if (it == symbols->end()) {
          known = false;
          single[i] = f;
        } else {
          value *= it->second;
        }
      }
      if (q == std::string::npos) break;
      p = q + 1;
    }
    if (factors != 1) single[i].clear();  // only a lone symbol binds
    expected.push_back(known ? value : -1);
  }
  if (actual && actual->size() == dims.size())
    for (size_t i = 0; i < dims.size(); ++i)
      if (!single[i].empty() && expected[i] < 0) (*symbols)[single[i]] = (*actual)[i];
  return expected;
}

Result<NodeParams> plan_node_params(const RecipeContext& ctx, const std::string& op, const fb::OpUnion& attrs,
                                    const std::string& prefix, const std::string& layout) {
  const OpParams* table_entry = find_op_params(op);
  if (!table_entry) {
    std::string known;
    for (const OpParams& p : table()) known += (known.empty() ? "" : ", ") + std::string(p.op);
    return invalid_argument("node type '" + op + "' has no parameter table (ops with one: " + known +
                            "); list its parameters in \"inputs\" instead");
  }
  auto key_of = [&](const ParamSlot& s) { return prefix.empty() ? std::string(s.suffix) : prefix + "." + s.suffix; };
  const ParamLayout* chosen = nullptr;
  if (!layout.empty()) {
    std::string names;
    for (const ParamLayout& l : table_entry->layouts) {
      names += (names.empty() ? "" : ", ") + std::string(l.name);
      if (layout == l.name) chosen = &l;
    }
    if (!chosen) return invalid_argument("unknown parameter layout '" + layout + "' for " + op + " (known: " + names + ")");
  } else {
    // Complete layouts first, then the most keys present; the first on a tie.
    int best = -1;
    for (const ParamLayout& l : table_entry->layouts) {
      int present = 0;
      bool complete = true;
      for (const ParamSlot& s : l.slots) {
        bool have = ctx.has(key_of(s));
        present += have;
        complete = complete && (have || s.optional);
      }
      int score = (complete ? 1 << 20 : 0) + present;
      if (score > best) {
        best = score;
        chosen = &l;
      }
    }
  }
  NodeParams np;
  np.layout = chosen->name;
  std::map<std::string, int64_t> symbols;
  if (table_entry->bind_attrs) table_entry->bind_attrs(attrs, &symbols);
  std::vector<ParamSlot> slots = chosen->slots;
  if (table_entry->more_slots) table_entry->more_slots(attrs, &slots);
  std::vector<bool> taken;
  for (const ParamSlot& s : slots) {
    std::string key = key_of(s);
    const SourceTensor* t = ctx.find(key);
    if (!t && s.optional) {
      if (taken.size() <= static_cast<size_t>(s.input)) taken.resize(static_cast<size_t>(s.input) + 1, false);
      taken[static_cast<size_t>(s.input)] = true;  // absent optional parameter, not a data input
      continue;
    }
    Shape actual;
    const Shape* a = nullptr;
    if (t) {
      actual = t->shape;
      if (s.parts > 1 && !actual.empty() && actual[0] % s.parts == 0) actual[0] /= s.parts;
      a = &actual;
    }
    ATROUS_ASSIGN_OR_RETURN(Shape expected, evaluate_shape_rule(s.shape, &symbols, a));
    ParamRef ref;
    ref.input = s.input;
    ref.key = key;
    ref.part = s.part;
    ref.parts = s.parts;
    ref.value_name = s.parts > 1 ? key + "[" + std::to_string(s.part) + "/" + std::to_string(s.parts) + "]" : key;
    ref.expected = expected;
    ref.integer = s.integer;
    np.params.push_back(ref);
    if (taken.size() <= static_cast<size_t>(s.input)) taken.resize(static_cast<size_t>(s.input) + 1, false);
    taken[static_cast<size_t>(s.input)] = true;
  }
  for (const char* ig : chosen->ignored) np.ignored.push_back(prefix.empty() ? std::string(ig) : prefix + "." + ig);
  int max_inputs = static_cast<int>(taken.size());
  if (const OpDef* def = find_op(attrs.type)) {
    max_inputs = std::max(max_inputs, def->max_inputs);
    np.min_inputs = def->min_inputs;
  }
  for (int i = 0; i < max_inputs; ++i)
    if (static_cast<size_t>(i) >= taken.size() || !taken[static_cast<size_t>(i)]) np.data_positions.push_back(i);
  return np;
}

int register_param(RecipeContext& ctx, GraphBuilder& g, const ParamRef& p) {
  ParamOptions o;
  o.integer = p.integer;
  if (p.parts > 1) return ctx.param_rows(g, p.key, p.part, p.parts, p.expected, o);
  return ctx.param(g, p.key, p.expected, o);
}

Result<std::vector<int>> node_inputs(RecipeContext& ctx, GraphBuilder& g, const NodeParams& np,
                                     const std::vector<int>& data_inputs) {
  if (data_inputs.size() > np.data_positions.size())
    return invalid_argument(std::to_string(data_inputs.size()) + " data inputs given, the node has room for " +
                            std::to_string(np.data_positions.size()));
  int n = np.min_inputs;
  for (const ParamRef& p : np.params) n = std::max(n, p.input + 1);
  for (size_t k = 0; k < data_inputs.size(); ++k)
    if (data_inputs[k] != -1) n = std::max(n, np.data_positions[k] + 1);
  std::vector<int> inputs(static_cast<size_t>(n), -1);
  for (size_t k = 0; k < data_inputs.size(); ++k)
    if (np.data_positions[k] < n) inputs[static_cast<size_t>(np.data_positions[k])] = data_inputs[k];
  for (const ParamRef& p : np.params) inputs[static_cast<size_t>(p.input)] = register_param(ctx, g, p);
  for (const std::string& k : np.ignored) ctx.ignore(k);
  return inputs;
}

}  // namespace atrous::convert
