// build_plan(): shapes → rewrites → kernels and layouts → memory plan.
//
// Layouts: a node's output may be left in a oneDNN blocked layout only when it
// is not a graph output and every consumer's op has a kernel that reads blocked
// data. If the consumer then picks a kernel that needs plain data after all,
// a reorder step is inserted before it (once per value). So chains of oneDNN
// convolutions stay blocked and reorders appear only at the chain's edges.
//
// Memory: every arena value and scratch request becomes a buffer with a
// lifetime in steps; views (Reshape) share their input's buffer, and ops that
// allow it write in place over an input that dies at that step. The memory
// planner then places all buffers in one arena.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <numeric>

#include "onednn/onednn.h"
#include "ops/op_registry.h"
#include "plan/fusion.h"
#include "plan/plan.h"
#include "runtime/model_impl.h"

namespace atrous {
namespace {

std::string human_bytes(uint64_t b) {
  char buf[64];
  if (b >= (1ull << 30)) std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(b) / (1ull << 30));
  else if (b >= (1ull << 20)) std::snprintf(buf, sizeof buf, "%.2f MiB", static_cast<double>(b) / (1ull << 20));
  else std::snprintf(buf, sizeof buf, "%.1f KiB", static_cast<double>(b) / 1024.0);
  return std::to_string(b) + " bytes (" + buf + ")";
}

Status bind_input_shapes(ir::Graph& g, const std::vector<Shape>& shapes) {
  if (shapes.size() != g.inputs.size())
    return invalid_argument("entry point '" + g.name + "' takes " + std::to_string(g.inputs.size()) +
                            " inputs, got " + std::to_string(shapes.size()));
  for (size_t i = 0; i < shapes.size(); ++i) {
    ir::Value& v = g.values[static_cast<size_t>(g.inputs[i])];
    const Shape& s = shapes[i];
    if (!v.shape.empty()) {
      bool ok = s.size() == v.shape.size();
      for (size_t d = 0; ok && d < s.size(); ++d) ok = v.shape[d] < 0 || v.shape[d] == s[d];
      if (!ok)
        return invalid_argument("input '" + v.name + "' has shape " + shape_string(s) + ", the model expects " +
                                shape_string(v.shape) + " (-1 = any size)");
    }
    for (int64_t d : s)
      if (d < 1) return invalid_argument("input '" + v.name + "' has shape " + shape_string(s) + ": every dimension must be at least 1");
    auto nb = checked_nbytes(s, v.dtype);
    if (!nb.ok()) return invalid_argument("input '" + v.name + "': " + nb.status().message());
    v.shape = s;
  }
  return Status::Ok();
}

Status infer_shapes(ir::Graph& g) {
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    const ir::Node& node = g.nodes[n];
    const OpDef* def = find_op(node.op.type);
    ShapeContext ctx(g, static_cast<int>(n));
    for (int v : node.inputs) {
      ctx.present.push_back(v >= 0);
      ctx.in.push_back(v >= 0 ? g.values[static_cast<size_t>(v)].shape : Shape{});
    }
    ATROUS_RETURN_IF_ERROR(def->infer(ctx));
    if (ctx.out.size() != node.outputs.size())
      return internal_error(ir::node_label(g, static_cast<int>(n)) + ": shape inference gave " +
                            std::to_string(ctx.out.size()) + " shapes for " + std::to_string(node.outputs.size()) + " outputs");
    for (size_t k = 0; k < ctx.out.size(); ++k) {
      ir::Value& v = g.values[static_cast<size_t>(node.outputs[k])];
      for (int64_t d : ctx.out[k])
        if (d < 1)
          return invalid_argument(ir::node_label(g, static_cast<int>(n)) + ": output '" + v.name + "' would have shape " +
                                  shape_string(ctx.out[k]) + " (empty tensors are not supported)");
      auto nb = checked_nbytes(ctx.out[k], v.dtype);
      if (!nb.ok()) return invalid_argument(ir::node_label(g, static_cast<int>(n)) + ": output '" + v.name + "': " + nb.status().message());
      v.shape = ctx.out[k];
    }
  }
  return Status::Ok();
}

// Lower bound of memory with plain layouts and no aliasing: refuses absurd
// plans before anything is allocated.
uint64_t estimate_lower_bound(const ir::Graph& g) {
  MemoryPlanner mp;
  std::vector<int> last(g.values.size(), -1);
  for (size_t n = 0; n < g.nodes.size(); ++n)
    for (int v : g.nodes[n].inputs)
      if (v >= 0) last[static_cast<size_t>(v)] = static_cast<int>(n);
  for (int o : g.outputs) last[static_cast<size_t>(o)] = static_cast<int>(g.nodes.size());
  for (size_t v = 0; v < g.values.size(); ++v) {
    const ir::Value& val = g.values[v];
    if (val.kind == ir::ValueKind::kConstant) continue;
    auto nb = checked_nbytes(val.shape, val.dtype);
    uint64_t bytes = nb.ok() ? *nb : 0;
    int first = val.kind == ir::ValueKind::kInput ? 0 : val.producer;
    if (first < 0) continue;  // an intermediate nothing produces (and so nothing reads)
    mp.add_buffer(bytes, first, std::max(first, last[v]));
  }
  return mp.plan().lower_bound;
}

bool in_list(const std::vector<std::string>& list, const char* name) {
  return std::find(list.begin(), list.end(), name) != list.end();
}

// True when every use of v by node n is at the op's shape-only input.
bool reads_only_shape(const ir::Node& n, const OpDef& def, int v) {
  if (def.shape_only_input < 0) return false;
  for (size_t i = 0; i < n.inputs.size(); ++i)
    if (n.inputs[i] == v && static_cast<int>(i) != def.shape_only_input) return false;
  return true;
}

struct UnionFind {
  std::vector<int> parent;
  explicit UnionFind(size_t n) : parent(n) { std::iota(parent.begin(), parent.end(), 0); }
  int find(int x) { return parent[static_cast<size_t>(x)] == x ? x : parent[static_cast<size_t>(x)] = find(parent[static_cast<size_t>(x)]); }
};

}  // namespace

Result<std::shared_ptr<const Plan>> build_plan(const internal::ModelImpl& model, int graph_index,
                                               const std::vector<Shape>& input_shapes, const PlanOptions& opts) {
  const uint64_t budget = opts.max_memory ? opts.max_memory : kDefaultMemoryBudget;
  auto g = std::make_shared<ir::Graph>(model.graphs[static_cast<size_t>(graph_index)]);
  ATROUS_RETURN_IF_ERROR(bind_input_shapes(*g, input_shapes));
  ATROUS_RETURN_IF_ERROR(infer_shapes(*g));
  const uint64_t estimate = estimate_lower_bound(*g);
  if (estimate > budget)
    return out_of_memory("entry point '" + g->name + "' needs at least " + human_bytes(estimate) +
                         " of activations for these input shapes, over the memory budget of " + human_bytes(budget));
  // Exposed intermediates act as extra graph outputs: plain, alive to the end, never fused away.
  std::vector<int> exposed;
  for (const std::string& name : opts.expose) {
    int found = -1;
    for (size_t v = 0; v < g->values.size(); ++v)
      if (g->values[v].name == name) found = static_cast<int>(v);
    if (found < 0) return not_found("cannot expose '" + name + "': entry point '" + g->name + "' has no value of that name");
    exposed.push_back(found);
  }
  const size_t num_real_outputs = g->outputs.size();
  for (int v : exposed) g->outputs.push_back(v);
  std::vector<std::vector<std::string>> fused(g->nodes.size());
  auto kernel_allowed = [&](const std::string& name) {
    return (opts.allowed_kernels.empty() || in_list(opts.allowed_kernels, name.c_str())) && !in_list(opts.excluded_kernels, name.c_str());
  };
  if (opts.fuse && !opts.reference_only) ATROUS_RETURN_IF_ERROR(fuse_graph(*g, model, kernel_allowed, &fused));

  auto plan = std::make_shared<Plan>();
  plan->graph_index = graph_index;
  plan->threads = opts.threads;
  plan->input_shapes = input_shapes;

  // Plan values mirror graph values; inserted reorders append more.
  plan->values.resize(g->values.size());
  for (size_t v = 0; v < g->values.size(); ++v) {
    const ir::Value& val = g->values[v];
    PlanValue& pv = plan->values[v];
    pv.name = val.name;
    pv.desc.dtype = val.dtype;
    pv.desc.shape = val.shape;
    if (val.kind == ir::ValueKind::kConstant) {
      pv.in_arena = false;
      ATROUS_ASSIGN_OR_RETURN(pv.constant, model.constant_data(*g, static_cast<int>(v)));
      pv.desc.bytes = static_cast<uint64_t>(checked_numel(val.shape).value()) * dtype_size(val.dtype);
    } else {
      pv.desc.bytes = checked_nbytes(val.shape, val.dtype).value();
    }
  }
  for (const ir::Value& val : g->values)
    if (val.kind == ir::ValueKind::kConstant) plan->weight_bytes += val.nbytes;

  // Which values may stay blocked: not graph outputs; every consumer's op reads blocked data.
  std::vector<std::vector<int>> consumers(g->values.size());
  for (size_t n = 0; n < g->nodes.size(); ++n)
    for (int v : g->nodes[n].inputs)
      if (v >= 0) consumers[static_cast<size_t>(v)].push_back(static_cast<int>(n));
  std::vector<bool> is_output(g->values.size(), false);
  for (int o : g->outputs) is_output[static_cast<size_t>(o)] = true;
  auto may_block = [&](int v) {
    if (opts.reference_only || is_output[static_cast<size_t>(v)] || consumers[static_cast<size_t>(v)].empty()) return false;
    if (g->values[static_cast<size_t>(v)].dtype != DType::kF32) return false;
    for (int c : consumers[static_cast<size_t>(v)]) {
      const ir::Node& cn = g->nodes[static_cast<size_t>(c)];
      const OpDef* def = find_op(cn.op.type);
      if (reads_only_shape(cn, *def, v)) continue;
      bool any = false;
      for (size_t k = 0; k + 1 < def->kernels.size(); ++k)
        any |= def->kernels[k]->accepts_blocked && (opts.allowed_kernels.empty() || in_list(opts.allowed_kernels, def->kernels[k]->name)) &&
               !in_list(opts.excluded_kernels, def->kernels[k]->name);
      if (!any) return false;
    }
    return true;
  };

  // Persistent (plan-owned) memory, counted against the budget as it is requested.
  uint64_t persistent_total = 0;
  Status persistent_error;
  auto persistent_fn = [&](uint64_t bytes) -> void* {
    if (estimate + persistent_total + bytes > budget) {
      persistent_error = out_of_memory("packed weights (" + human_bytes(persistent_total + bytes) +
                                       ") plus activations (" + human_bytes(estimate) +
                                       ") exceed the memory budget of " + human_bytes(budget));
      return nullptr;
    }
    uint64_t rounded = (bytes + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, rounded ? rounded : 64);
    if (!p) return nullptr;
    std::memset(p, 0, rounded);
    persistent_total += rounded;
    plan->persistent.push_back(std::shared_ptr<void>(p, [](void* q) { std::free(q); }));
    return p;
  };

  // Constants packed by their kernels: their file pages are dropped at once, so that
  // planning never holds a weight both as mapped and as packed bytes for long.
  auto release_fn = [&model](const void* data, uint64_t bytes) {
    if (model.file) model.file->release_pages(data, bytes);
  };
  // Small mapped constants (biases, norm parameters, position tables) are copied into
  // plan memory, and every mapped constant's pages are dropped once the plan is built.
  // Kernels reading small constants in the file would fault in each one's page with
  // the kernel's fault-around: up to 64 KiB of neighbouring weights, packed and
  // dropped already (6 MiB over SAM's encoder). Large ones read in place come back on
  // first use.
  constexpr uint64_t kCopyBelow = 256 << 10;
  std::vector<std::pair<const void*, uint64_t>> mapped_constants;
  for (PlanValue& pv : plan->values) {
    if (pv.in_arena || !pv.constant || !model.file || !model.file->maps(pv.constant)) continue;
    mapped_constants.emplace_back(pv.constant, pv.desc.bytes);
    if (pv.desc.bytes >= kCopyBelow) continue;
    void* copy = persistent_fn(pv.desc.bytes);
    if (!copy) return persistent_error.ok() ? out_of_memory("cannot copy weight '" + pv.name + "'") : persistent_error;
    std::memcpy(copy, pv.constant, pv.desc.bytes);
    pv.constant = copy;
  }

  std::vector<int> plain_copy(g->values.size(), -1);  // value → its inserted plain twin
  std::vector<std::vector<uint64_t>> step_scratch;
  for (size_t n = 0; n < g->nodes.size(); ++n) {
    const ir::Node& node = g->nodes[n];
    const OpDef* def = find_op(node.op.type);
    const std::string label = ir::node_label(*g, static_cast<int>(n));
    PlanStep step;
    step.node = node.name;
    step.op = def->name;
    step.opdef = def;
    step.fused = fused[n];
    step.inputs = node.inputs;
    step.outputs = node.outputs;

    // A view of plain arena data moves nothing.
    if (def->view) {
      const PlanValue& src = plan->values[static_cast<size_t>(node.inputs[0])];
      if (src.in_arena && src.desc.layout.plain()) {
        step.kernel = nullptr;
        plan->values[static_cast<size_t>(node.outputs[0])].desc.layout = Layout{};
        plan->steps.push_back(std::move(step));
        step_scratch.emplace_back();
        continue;
      }
    }

    std::unique_ptr<Kernel> chosen;
    const KernelDef* chosen_def = nullptr;
    KernelContext* chosen_ctx = nullptr;
    std::unique_ptr<KernelContext> ctx_holder;
    for (size_t k = 0; k < def->kernels.size(); ++k) {
      const KernelDef* kd = def->kernels[k];
      bool last = k + 1 == def->kernels.size();
      if (!last && opts.reference_only) {
        step.declined.push_back({kd->name, "reference kernels forced"});
        continue;
      }
      if (!last && !opts.allowed_kernels.empty() && !in_list(opts.allowed_kernels, kd->name)) {
        step.declined.push_back({kd->name, "not in the allowed kernel list"});
        continue;
      }
      if (!last && in_list(opts.excluded_kernels, kd->name)) {
        step.declined.push_back({kd->name, "excluded"});
        continue;
      }
      auto ctx = std::make_unique<KernelContext>(*g, static_cast<int>(n));
      ctx->threads = opts.threads;
      ctx->persistent_fn = persistent_fn;
      ctx->release_fn = release_fn;
      for (int v : node.inputs) {
        ctx->present.push_back(v >= 0);
        if (v < 0) {
          ctx->in.emplace_back();
          ctx->constant.push_back(nullptr);
          continue;
        }
        TensorDesc d = plan->values[static_cast<size_t>(v)].desc;
        if (!kd->accepts_blocked && !d.layout.plain()) {
          d.layout = Layout{};
          d.bytes = checked_nbytes(d.shape, d.dtype).value();
        }
        ctx->in.push_back(d);
        ctx->constant.push_back(plan->values[static_cast<size_t>(v)].constant);
      }
      for (int o : node.outputs) {
        ctx->out.push_back(plan->values[static_cast<size_t>(o)].desc);
        ctx->out_may_block.push_back(kd->accepts_blocked && may_block(o));
      }
      persistent_error = Status::Ok();
      size_t persistent_mark = plan->persistent.size();
      uint64_t persistent_before = persistent_total;
      Result<std::unique_ptr<Kernel>> r = kd->create(*ctx);
      if (!persistent_error.ok()) return persistent_error;
      if (r.ok()) {
        chosen = std::move(r).value();
        chosen_def = kd;
        ctx_holder = std::move(ctx);
        chosen_ctx = ctx_holder.get();
        break;
      }
      // Declined or failed: drop what the candidate allocated.
      plan->persistent.resize(persistent_mark);
      persistent_total = persistent_before;
      if (r.status().code() != StatusCode::kUnsupported) return r.status().with_context(label);
      step.declined.push_back({kd->name, r.status().message()});
    }
    if (!chosen) {
      std::string why;
      for (const auto& d : step.declined) why += "\n  " + d.kernel + ": " + d.reason;
      return unsupported(label + ": no kernel accepts this configuration:" + why);
    }
    // Inputs the chosen kernel needs plain but that are blocked: insert reorders.
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      int v = node.inputs[i];
      if (v < 0 || chosen_def->accepts_blocked || plan->values[static_cast<size_t>(v)].desc.layout.plain()) continue;
      if (static_cast<int>(i) == def->shape_only_input) continue;  // the kernel reads its shape only
      if (plain_copy[static_cast<size_t>(v)] < 0) {
        PlanValue twin;
        twin.name = plan->values[static_cast<size_t>(v)].name + "#plain";
        twin.desc = plan->values[static_cast<size_t>(v)].desc;
        twin.desc.layout = Layout{};
        twin.desc.bytes = checked_nbytes(twin.desc.shape, twin.desc.dtype).value();
        ATROUS_ASSIGN_OR_RETURN(auto reorder, onednn::make_reorder_to_plain(plan->values[static_cast<size_t>(v)].desc));
        plan->values.push_back(std::move(twin));
        int t = static_cast<int>(plan->values.size()) - 1;
        plain_copy[static_cast<size_t>(v)] = t;
        PlanStep rs;
        rs.op = "Reorder";
        rs.kernel = &onednn::kReorderOnednn;
        rs.impl = std::move(reorder);
        rs.inputs = {v};
        rs.outputs = {t};
        plan->steps.push_back(std::move(rs));
        step_scratch.emplace_back();
      }
      step.inputs[i] = plain_copy[static_cast<size_t>(v)];
    }
    for (size_t o = 0; o < node.outputs.size(); ++o) {
      TensorDesc d = chosen_ctx->out[o];
      if (!d.layout.plain() && !chosen_ctx->out_may_block[o])
        return internal_error(label + ": kernel " + chosen_def->name + " chose a blocked output layout where plain is required");
      if (d.layout.plain()) d.bytes = checked_nbytes(d.shape, d.dtype).value();
      plan->values[static_cast<size_t>(node.outputs[o])].desc = d;
    }
    step.kernel = chosen_def;
    step.impl = std::move(chosen);
    plan->steps.push_back(std::move(step));
    step_scratch.push_back(chosen_ctx->scratch_bytes);
  }
  plan->persistent_bytes = persistent_total;
  for (int i : g->inputs) plan->inputs.push_back(i);
  for (size_t k = 0; k < g->outputs.size(); ++k)
    (k < num_real_outputs ? plan->outputs : plan->exposed).push_back(g->outputs[k]);

  // Lifetimes in steps.
  const int nsteps = static_cast<int>(plan->steps.size());
  const size_t nv = plan->values.size();
  std::vector<int> first(nv, -1), last(nv, -1);
  for (int s = 0; s < nsteps; ++s) {
    for (int v : plan->steps[static_cast<size_t>(s)].outputs)
      if (first[static_cast<size_t>(v)] < 0) first[static_cast<size_t>(v)] = s;
    for (int v : plan->steps[static_cast<size_t>(s)].inputs)
      if (v >= 0) last[static_cast<size_t>(v)] = s;
  }
  for (int i : plan->inputs) first[static_cast<size_t>(i)] = 0;
  for (size_t v = 0; v < nv; ++v) {
    if (first[v] < 0) first[v] = 0;
    last[v] = std::max(last[v], first[v]);
  }
  // Outputs live for the whole run: they must survive it, and they must not share
  // memory with inputs, which a caller may fill from the previous run's outputs
  // (recurrent state fed back).
  for (const auto* list : {&plan->outputs, &plan->exposed})
    for (int o : *list) {
      first[static_cast<size_t>(o)] = 0;
      last[static_cast<size_t>(o)] = std::max(nsteps - 1, 0);
    }
  // keep_inputs: inputs too (and below, no kernel writes in place over one), so data
  // staged in their slots survives a run for the next.
  if (opts.keep_inputs)
    for (int i : plan->inputs) last[static_cast<size_t>(i)] = std::max(nsteps - 1, 0);

  // Buffer sharing: views and in-place writes.
  UnionFind uf(nv);
  std::vector<int> group_last(last);
  std::vector<bool> is_graph_input(nv, false), is_graph_output(nv, false);
  for (int i : plan->inputs) is_graph_input[static_cast<size_t>(i)] = true;
  for (const auto* list : {&plan->outputs, &plan->exposed})
    for (int o : *list) is_graph_output[static_cast<size_t>(o)] = true;
  for (int s = 0; s < nsteps; ++s) {
    const PlanStep& st = plan->steps[static_cast<size_t>(s)];
    const OpDef* def = st.opdef;
    if (!def || st.outputs.empty()) continue;
    int out = st.outputs[0];
    auto join = [&](int v) {
      int rv = uf.find(v), ro = uf.find(out);
      group_last[static_cast<size_t>(rv)] = std::max(group_last[static_cast<size_t>(rv)], group_last[static_cast<size_t>(ro)]);
      uf.parent[static_cast<size_t>(ro)] = rv;
    };
    if (def->view && !st.impl) {
      join(st.inputs[0]);
      continue;
    }
    int k = def->inplace_input;
    if (k < 0 || static_cast<size_t>(k) >= st.inputs.size() || st.inputs[static_cast<size_t>(k)] < 0) continue;
    int v = st.inputs[static_cast<size_t>(k)];
    const PlanValue &pv = plan->values[static_cast<size_t>(v)], &po = plan->values[static_cast<size_t>(out)];
    if (!pv.in_arena || is_graph_output[static_cast<size_t>(v)] || uf.find(out) != out) continue;
    if (opts.keep_inputs && is_graph_input[static_cast<size_t>(uf.find(v))]) continue;  // an input, or a view of one
    if (group_last[static_cast<size_t>(uf.find(v))] > s) continue;  // still read later
    if (pv.desc.bytes != po.desc.bytes || !onednn::same_layout(pv.desc.layout, po.desc.layout)) continue;
    // The same buffer must not also feed another input of this step.
    bool other_use = false;
    for (size_t i = 0; i < st.inputs.size(); ++i)
      if (static_cast<int>(i) != k && st.inputs[i] >= 0 && uf.find(st.inputs[i]) == uf.find(v)) other_use = true;
    if (other_use) continue;
    join(v);
  }

  MemoryPlanner mp;
  std::vector<int> group_buffer(nv, -1);
  for (size_t v = 0; v < nv; ++v) {
    if (!plan->values[v].in_arena) continue;
    int r = uf.find(static_cast<int>(v));
    if (group_buffer[static_cast<size_t>(r)] < 0)
      group_buffer[static_cast<size_t>(r)] = mp.add_buffer(plan->values[v].desc.bytes, first[v], last[v], plan->values[v].name);
    else
      mp.extend(group_buffer[static_cast<size_t>(r)], first[v], last[v]);  // members have equal sizes
    plan->values[v].buffer = group_buffer[static_cast<size_t>(r)];
  }
  for (int s = 0; s < nsteps; ++s) {
    for (uint64_t bytes : step_scratch[static_cast<size_t>(s)])
      plan->steps[static_cast<size_t>(s)].scratch.push_back(
          mp.add_buffer(bytes, s, s, "scratch of " + (plan->steps[static_cast<size_t>(s)].node.empty() ? std::string("reorder") : plan->steps[static_cast<size_t>(s)].node)));
  }
  plan->memory = mp.plan();
  for (size_t v = 0; v < nv; ++v)
    if (plan->values[v].in_arena && plan->values[v].desc.bytes > plan->memory.buffers[static_cast<size_t>(plan->values[v].buffer)].bytes)
      return internal_error("value '" + plan->values[v].name + "' is larger than its shared buffer");
  if (plan->memory.arena_bytes + plan->persistent_bytes > budget)
    return out_of_memory("entry point '" + g->name + "' needs an arena of " + human_bytes(plan->memory.arena_bytes) +
                         " plus " + human_bytes(plan->persistent_bytes) + " of packed weights, over the memory budget of " +
                         human_bytes(budget));
  plan->graph = std::move(g);
  for (const auto& [data, bytes] : mapped_constants) model.file->release_pages(data, bytes, /*partial=*/true);
  return std::shared_ptr<const Plan>(std::move(plan));
}

PlanInfo Plan::info(const std::string& entry) const {
  PlanInfo info;
  info.entry = entry;
  info.threads = threads;
  for (const PlanStep& s : steps) {
    StepInfo si;
    si.node = s.node;
    si.op = s.op;
    si.kernel = s.kernel ? s.kernel->name : "view";
    si.detail = s.impl ? s.impl->detail() : "";
    si.declined = s.declined;
    si.fused = s.fused;
    si.flops = s.impl ? s.impl->flops() : 0;
    for (int o : s.outputs) {
      si.output_shapes.push_back(values[static_cast<size_t>(o)].desc.shape);
      si.output_layouts.push_back(onednn::layout_name(values[static_cast<size_t>(o)].desc.layout,
                                                      values[static_cast<size_t>(o)].desc.shape.size()));
    }
    info.steps.push_back(std::move(si));
  }
  info.memory.naive_bytes = memory.naive_bytes;
  info.memory.arena_bytes = memory.arena_bytes;
  info.memory.lower_bound = memory.lower_bound;
  info.memory.persistent_bytes = persistent_bytes;
  info.memory.weight_bytes = weight_bytes;
  for (const MemoryBuffer& b : memory.buffers)
    info.memory.buffers.push_back(BufferInfo{b.label, b.bytes, b.offset, b.first, b.last});
  info.memory.timeline = memory.timeline();
  return info;
}

}  // namespace atrous
