// Plan-time rewrites on the planner's copy of the graph (shapes already inferred):
//   Conv2d → BatchNorm          weights and bias folded (BN eps honoured)
//   Conv2d → Binary(Add, x)     x becomes the conv's residual input (oneDNN sum post-op)
//   Conv2d/Linear → Unary(act)  the activation becomes the conv's post-op
//   Conv2d(ReLU) → Conv2d(residual = the first conv's input)
//                               one BoundaryRefinement node, when boundary_refinement_fused
//                               takes it (GCN's BR block, after the rewrites above)
// A rewrite applies only when the conv's output has that single consumer and is
// not a graph output. The merged node takes the consumer's place in the node
// order, which keeps the order topological (all its inputs come before it).
#include <cmath>

#include "plan/fusion.h"
#include "ops/boundary_refinement.h"
#include "ops/op_registry.h"
#include "runtime/model_impl.h"

namespace atrous {
namespace {

struct Uses {
  std::vector<std::vector<int>> consumers;  // per value: consuming node indices
  std::vector<bool> is_output;
};

Uses count_uses(const ir::Graph& g) {
  Uses u;
  u.consumers.resize(g.values.size());
  u.is_output.assign(g.values.size(), false);
  for (size_t n = 0; n < g.nodes.size(); ++n)
    for (int v : g.nodes[n].inputs)
      if (v >= 0) u.consumers[static_cast<size_t>(v)].push_back(static_cast<int>(n));
  for (int o : g.outputs) u.is_output[static_cast<size_t>(o)] = true;
  return u;
}

bool is_constant(const ir::Graph& g, int v) {
  return v >= 0 && g.values[static_cast<size_t>(v)].kind == ir::ValueKind::kConstant;
}

bool fusable_activation(const fb::UnaryT& u) {
  switch (u.kind) {
    case fb::ActKind::Relu: case fb::ActKind::Relu6: case fb::ActKind::Gelu: case fb::ActKind::GeluTanh:
    case fb::ActKind::Silu: case fb::ActKind::Sigmoid: case fb::ActKind::Tanh: case fb::ActKind::HardSwish:
      return true;
    case fb::ActKind::Elu: case fb::ActKind::LeakyRelu:
      return true;  // alpha carried over
    default:
      return false;
  }
}

// The single consumer of node n's only output, or -1.
int single_consumer(const ir::Graph& g, const Uses& u, int n) {
  const ir::Node& node = g.nodes[static_cast<size_t>(n)];
  if (node.outputs.size() != 1) return -1;
  int v = node.outputs[0];
  if (u.is_output[static_cast<size_t>(v)]) return -1;
  const auto& c = u.consumers[static_cast<size_t>(v)];
  if (c.size() != 1) return -1;
  return c[0];
}

// Moves node `from` into position `to` (replacing it), taking `to`'s outputs.
void merge_into(ir::Graph& g, int from, int to, std::vector<std::vector<std::string>>& fused) {
  ir::Node merged = std::move(g.nodes[static_cast<size_t>(from)]);
  merged.outputs = g.nodes[static_cast<size_t>(to)].outputs;
  for (int o : merged.outputs) g.values[static_cast<size_t>(o)].producer = to;
  std::vector<std::string> names = fused[static_cast<size_t>(from)];
  names.push_back(g.nodes[static_cast<size_t>(to)].name);
  for (std::string& f : fused[static_cast<size_t>(to)]) names.push_back(std::move(f));  // what `to` had merged
  fused[static_cast<size_t>(to)] = std::move(names);
  g.nodes[static_cast<size_t>(to)] = std::move(merged);
  g.nodes.erase(g.nodes.begin() + from);
  fused.erase(fused.begin() + from);
  for (size_t i = static_cast<size_t>(from); i < g.nodes.size(); ++i)
    for (int o : g.nodes[i].outputs) g.values[static_cast<size_t>(o)].producer = static_cast<int>(i);
}

Status fold_batchnorm(ir::Graph& g, const internal::ModelImpl& model, int conv_i, int bn_i) {
  const ir::Node& conv = g.nodes[static_cast<size_t>(conv_i)];
  const ir::Node& bn = g.nodes[static_cast<size_t>(bn_i)];
  const float eps = bn.op.AsBatchNorm()->eps;
  const ir::Value& w = g.values[static_cast<size_t>(conv.inputs[1])];
  const int64_t out_ch = w.shape[0];
  const int64_t per_out = w.shape[1] * w.shape[2] * w.shape[3];
  ATROUS_ASSIGN_OR_RETURN(const void* wdata, model.constant_data(g, conv.inputs[1]));
  const float* bias = nullptr;
  if (conv.inputs.size() > 2 && conv.inputs[2] >= 0) {
    ATROUS_ASSIGN_OR_RETURN(const void* b, model.constant_data(g, conv.inputs[2]));
    bias = static_cast<const float*>(b);
  }
  const float* p[4];
  for (int k = 0; k < 4; ++k) {
    ATROUS_ASSIGN_OR_RETURN(const void* d, model.constant_data(g, bn.inputs[static_cast<size_t>(k) + 1]));
    p[k] = static_cast<const float*>(d);
  }
  const float *gamma = p[0], *beta = p[1], *mean = p[2], *var = p[3];
  void* nw = nullptr;
  void* nb = nullptr;
  Shape wshape = w.shape;
  std::string base = conv.name.empty() ? bn.name : conv.name;
  int wi = ir::add_owned_constant(g, base + ".weight#bn_folded", DType::kF32, wshape, &nw);
  int bi = ir::add_owned_constant(g, base + ".bias#bn_folded", DType::kF32, {out_ch}, &nb);
  if (!nw || !nb) return out_of_memory("node '" + bn.name + "': no memory to fold the BatchNorm into '" + conv.name + "'");
  const float* src = static_cast<const float*>(wdata);
  auto* dw = static_cast<float*>(nw);
  auto* db = static_cast<float*>(nb);
  for (int64_t o = 0; o < out_ch; ++o) {
    const float s = gamma[o] / std::sqrt(var[o] + eps);
    for (int64_t k = 0; k < per_out; ++k) dw[o * per_out + k] = src[o * per_out + k] * s;
    db[o] = ((bias ? bias[o] : 0.0f) - mean[o]) * s + beta[o];
  }
  ir::Node& c = g.nodes[static_cast<size_t>(conv_i)];
  c.inputs.resize(std::max<size_t>(c.inputs.size(), 3), -1);
  c.inputs[1] = wi;
  c.inputs[2] = bi;
  return Status::Ok();
}

// A stride-1, dense, ungrouped conv with "same" padding of an odd kernel and constant
// weights and bias: a BR conv.
bool same_conv(const ir::Graph& g, const ir::Node& n) {
  const fb::Conv2dT& a = *n.op.AsConv2d();
  const Shape& w = g.values[static_cast<size_t>(n.inputs[1])].shape;
  if (a.stride_h != 1 || a.stride_w != 1 || a.dilation_h != 1 || a.dilation_w != 1 || a.groups != 1) return false;
  if (w.size() != 4 || w[2] % 2 == 0 || w[3] % 2 == 0) return false;
  const int64_t ph = (w[2] - 1) / 2, pw = (w[3] - 1) / 2;
  if (a.pad_top != ph || a.pad_bottom != ph || a.pad_left != pw || a.pad_right != pw) return false;
  return is_constant(g, n.inputs[1]) && (n.inputs.size() < 3 || n.inputs[2] < 0 || is_constant(g, n.inputs[2]));
}

// conv1 = Conv2d(x) with ReLU and conv2 = Conv2d(conv1) + x, both same_conv, and
// boundary_refinement_fused takes their sizes: the BoundaryRefinement node's inputs.
bool boundary_refinement(const ir::Graph& g, const ir::Node& conv1, const ir::Node& conv2, std::vector<int>* inputs) {
  const fb::Conv2dT& a1 = *conv1.op.AsConv2d();
  const fb::Conv2dT& a2 = *conv2.op.AsConv2d();
  const int x = conv1.inputs[0];
  if (a1.activation != fb::ActKind::Relu || a2.activation != fb::ActKind::None) return false;
  if (conv1.inputs.size() > 3 && conv1.inputs[3] >= 0) return false;
  if (conv2.inputs[0] != conv1.outputs[0] || conv2.inputs.size() < 4 || conv2.inputs[3] != x) return false;
  if (!same_conv(g, conv1) || !same_conv(g, conv2)) return false;
  const Shape& xs = g.values[static_cast<size_t>(x)].shape;
  const Shape& w1 = g.values[static_cast<size_t>(conv1.inputs[1])].shape;
  const Shape& w2 = g.values[static_cast<size_t>(conv2.inputs[1])].shape;
  if (xs.size() != 4 || g.values[static_cast<size_t>(x)].dtype != DType::kF32 || w2[0] != xs[1]) return false;
  if (!boundary_refinement_fused_declines({xs[1], w1[0], xs[2], xs[3], w1[2], w1[3], w2[2], w2[3]}).empty()) return false;
  auto bias = [](const ir::Node& n) { return n.inputs.size() > 2 ? n.inputs[2] : -1; };
  *inputs = {x, conv1.inputs[1], conv2.inputs[1], bias(conv1), bias(conv2)};
  return true;
}

}  // namespace

Status fuse_graph(ir::Graph& g, const internal::ModelImpl& model, const std::function<bool(const std::string&)>& kernel_allowed,
                  std::vector<std::vector<std::string>>* fused) {
  fused->assign(g.nodes.size(), {});
  const bool fuse_br = kernel_allowed("boundary_refinement_fused");
  bool changed = true;
  while (changed) {
    changed = false;
    Uses u = count_uses(g);
    for (int n = 0; n < static_cast<int>(g.nodes.size()) && !changed; ++n) {
      ir::Node& node = g.nodes[static_cast<size_t>(n)];
      bool is_conv = node.op.type == fb::Op::Conv2d;
      bool is_linear = node.op.type == fb::Op::Linear;
      if (!is_conv && !is_linear) continue;
      int c = single_consumer(g, u, n);
      if (c < 0) continue;
      ir::Node& next = g.nodes[static_cast<size_t>(c)];
      bool has_residual = is_conv && node.inputs.size() > 3 && node.inputs[3] >= 0;
      fb::ActKind act = is_conv ? node.op.AsConv2d()->activation : node.op.AsLinear()->activation;
      std::vector<int> br_inputs;
      if (fuse_br && is_conv && next.op.type == fb::Op::Conv2d && boundary_refinement(g, node, next, &br_inputs)) {
        node.op.Set(fb::BoundaryRefinementT{});
        node.inputs = br_inputs;
        // Named after the block: "brm9.conv1" + "brm9.conv2" -> "brm9" (else conv1's name),
        // with conv1's own name then listed among the merged nodes.
        const std::string conv1_name = node.name;
        const std::string& b = next.name;
        size_t common = 0;
        while (common < conv1_name.size() && common < b.size() && conv1_name[common] == b[common]) ++common;
        const size_t dot = conv1_name.rfind('.', common == 0 ? 0 : common - 1);
        if (common > 0 && dot != std::string::npos && dot > 0 && dot < common) node.name = conv1_name.substr(0, dot);
        const bool renamed = node.name != conv1_name;
        const int at = c < n ? c : c - 1;  // the merged node's index once node n is erased
        merge_into(g, n, c, *fused);
        if (renamed) {
          auto& names = (*fused)[static_cast<size_t>(at)];
          names.insert(names.begin(), conv1_name);
        }
        changed = true;
      } else if (is_conv && next.op.type == fb::Op::BatchNorm && next.inputs[0] == node.outputs[0] &&
          act == fb::ActKind::None && !has_residual && is_constant(g, node.inputs[1]) &&
          (node.inputs.size() < 3 || node.inputs[2] < 0 || is_constant(g, node.inputs[2])) &&
          is_constant(g, next.inputs[1]) && is_constant(g, next.inputs[2]) && is_constant(g, next.inputs[3]) &&
          is_constant(g, next.inputs[4])) {
        ATROUS_RETURN_IF_ERROR(fold_batchnorm(g, model, n, c));
        merge_into(g, n, c, *fused);
        changed = true;
      } else if (is_conv && next.op.type == fb::Op::Binary && next.op.AsBinary()->kind == fb::BinaryKind::Add &&
                 act == fb::ActKind::None && !has_residual) {
        int other = next.inputs[0] == node.outputs[0] ? next.inputs[1] : next.inputs[0];
        if (other == node.outputs[0]) continue;  // x + x
        const ir::Value& ov = g.values[static_cast<size_t>(other)];
        const ir::Value& cv = g.values[static_cast<size_t>(node.outputs[0])];
        if (ov.shape != cv.shape || ov.dtype != DType::kF32) continue;
        fb::ActKind post = next.op.AsBinary()->activation;
        node.inputs.resize(4, -1);
        node.inputs[3] = other;
        node.op.AsConv2d()->activation = post;
        merge_into(g, n, c, *fused);
        changed = true;
      } else if (next.op.type == fb::Op::Unary && act == fb::ActKind::None && fusable_activation(*next.op.AsUnary())) {
        const fb::UnaryT& un = *next.op.AsUnary();
        if (is_conv) {
          node.op.AsConv2d()->activation = un.kind;
          node.op.AsConv2d()->act_alpha = un.alpha;
        } else {
          node.op.AsLinear()->activation = un.kind;
          node.op.AsLinear()->act_alpha = un.alpha;
        }
        merge_into(g, n, c, *fused);
        changed = true;
      }
    }
  }
  return Status::Ok();
}

}  // namespace atrous
