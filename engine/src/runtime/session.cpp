// Session: binds a plan to one arena and walks its steps.
#include "atrous/session.h"

#include <omp.h>

#include <chrono>
#include <cstdlib>
#include <cstring>

#include "ops/op_registry.h"
#include "runtime/model_impl.h"

namespace atrous {
namespace internal {

class SessionImpl {
 public:
  std::shared_ptr<const Model> model;
  const ModelImpl* mi = nullptr;
  int graph = 0;
  SessionOptions opts;
  int threads = 1;

  std::vector<TensorView> inputs;  // borrowed until run() returns
  std::vector<bool> input_set;
  std::vector<bool> input_staged;  // written in place through input_buffer()

  std::shared_ptr<const Plan> plan;
  std::shared_ptr<void> arena;
  uint64_t arena_bytes = 0;
  std::vector<RunBuffers> bufs;                       // per step
  std::vector<std::unique_ptr<KernelState>> states;   // per step
  std::vector<void*> value_ptr;                       // per plan value
  std::vector<double> times;

  int input_index(const std::string& name) const {
    const auto& e = mi->info.entries[static_cast<size_t>(graph)];
    for (size_t i = 0; i < e.inputs.size(); ++i)
      if (e.inputs[i].name == name) return static_cast<int>(i);
    return -1;
  }

  Status no_such_input(const std::string& name) const {
    const auto& e = mi->info.entries[static_cast<size_t>(graph)];
    std::string names;
    for (const auto& t : e.inputs) names += (names.empty() ? "" : ", ") + t.name;
    return not_found("entry point '" + e.name + "' has no input '" + name + "' (inputs: " + names + ")");
  }

  // Drops the binding (kernel states, buffers, plan); inputs staged in the arena are
  // lost with it. The arena itself stays for the next binding.
  void unbind() {
    for (size_t i = 0; i < inputs.size(); ++i)
      if (input_staged[i]) input_staged[i] = input_set[i] = false;
    states.clear();
    bufs.clear();
    value_ptr.clear();
    plan.reset();
  }

  Status reshape(const std::vector<Shape>& shapes) {
    if (plan && plan->input_shapes == shapes) return Status::Ok();  // bound already (staged inputs stay)
    PlanOptions po;
    po.threads = threads;
    po.reference_only = opts.reference_only;
    po.allowed_kernels = opts.allowed_kernels;
    po.excluded_kernels = opts.excluded_kernels;
    po.fuse = opts.fuse;
    po.max_memory = opts.max_memory;
    po.expose = opts.expose;
    po.keep_inputs = opts.keep_inputs;
    omp_set_num_threads(threads);
    ATROUS_ASSIGN_OR_RETURN(std::shared_ptr<const Plan> p, mi->plan(graph, shapes, po));
    unbind();  // before allocating the new binding
    if (p->memory.arena_bytes > arena_bytes || !arena) {
      arena.reset();
      uint64_t bytes = (p->memory.arena_bytes + 63) / 64 * 64;
      void* a = std::aligned_alloc(64, bytes ? bytes : 64);
      if (!a) return out_of_memory("cannot allocate the arena of " + std::to_string(bytes) + " bytes");
      arena = std::shared_ptr<void>(a, [](void* q) { std::free(q); });
      arena_bytes = bytes;
    }
    auto* base = static_cast<uint8_t*>(arena.get());
    value_ptr.assign(p->values.size(), nullptr);
    for (size_t v = 0; v < p->values.size(); ++v) {
      const PlanValue& pv = p->values[v];
      value_ptr[v] = pv.in_arena ? base + p->memory.buffers[static_cast<size_t>(pv.buffer)].offset
                                 : const_cast<void*>(pv.constant);
    }
    bufs.resize(p->steps.size());
    states.resize(p->steps.size());
    for (size_t s = 0; s < p->steps.size(); ++s) {
      const PlanStep& st = p->steps[s];
      RunBuffers& b = bufs[s];
      for (int v : st.inputs) b.in.push_back(v >= 0 ? value_ptr[static_cast<size_t>(v)] : nullptr);
      for (int v : st.outputs) b.out.push_back(value_ptr[static_cast<size_t>(v)]);
      for (int id : st.scratch) b.scratch.push_back(base + p->memory.buffers[static_cast<size_t>(id)].offset);
      if (st.impl) {
        auto state = st.impl->bind(b);
        if (!state.ok()) return state.status().with_context(st.node.empty() ? st.op : st.node);
        states[s] = std::move(state).value();
      }
    }
    times.assign(p->steps.size(), 0.0);
    plan = std::move(p);
    return Status::Ok();
  }

  Status run() {
    const auto& e = mi->info.entries[static_cast<size_t>(graph)];
    bool same = plan != nullptr;
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (!input_set[i]) return invalid_argument("input '" + e.inputs[i].name + "' was not set");
      if (same && inputs[i].shape != plan->input_shapes[i]) same = false;
    }
    if (!same) {  // new shapes: plan (or fetch the cached plan) and bind; allocates
      for (size_t i = 0; i < inputs.size(); ++i)
        if (input_staged[i])
          return invalid_argument("input '" + e.inputs[i].name + "' was written through input_buffer() for shape " +
                                  shape_string(inputs[i].shape) + ", but the other inputs' shapes need a new plan: " +
                                  "call reshape() with every input's shape before input_buffer()");
      std::vector<Shape> shapes;
      for (const auto& t : inputs) shapes.push_back(t.shape);
      ATROUS_RETURN_IF_ERROR(reshape(shapes));
    }
    omp_set_num_threads(threads);
    for (size_t i = 0; i < inputs.size(); ++i)
      // memmove: a caller may pass a previous output of this session (a recurrent state) as an input.
      if (!input_staged[i]) std::memmove(value_ptr[static_cast<size_t>(plan->inputs[i])], inputs[i].data, inputs[i].nbytes());
    for (size_t s = 0; s < plan->steps.size(); ++s) {
      const PlanStep& st = plan->steps[s];
      if (!st.impl) continue;
      auto t0 = opts.profile ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
      Status status;
      try {
        status = st.impl->run(bufs[s], states[s].get());
      } catch (const std::exception& ex) {
        status = internal_error(std::string("unexpected exception: ") + ex.what());
      } catch (...) {
        status = internal_error("unexpected exception");
      }
      if (!status.ok())
        return status.with_context("step " + std::to_string(s) + " (" + (st.node.empty() ? st.op : st.node) + ")");
      if (opts.profile)
        times[s] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    // Inputs are borrowed only until run() returns; with keep_inputs, those staged
    // through input_buffer() stay in place for the next run.
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (opts.keep_inputs && input_staged[i]) continue;
      inputs[i].data = nullptr;
      input_set[i] = input_staged[i] = false;
    }
    return Status::Ok();
  }
};

}  // namespace internal

Session::~Session() = default;

Result<std::unique_ptr<Session>> Session::create(std::shared_ptr<const Model> model, SessionOptions options) {
  if (!model) return invalid_argument("Session::create: model is null");
  int g = model->impl().find_graph(options.entry);
  if (g < 0) {
    std::string names;
    for (const auto& e : model->info().entries) names += (names.empty() ? "" : ", ") + e.name;
    return not_found("entry point '" + options.entry + "' is not in the model (it has: " + names + ")");
  }
  if (options.threads < 0 || options.threads > kMaxThreads)
    return invalid_argument("threads must be in 0.." + std::to_string(kMaxThreads) + " (0 = every core), got " +
                            std::to_string(options.threads));
  for (const auto* list : {&options.allowed_kernels, &options.excluded_kernels})
    for (const std::string& name : *list) {
      bool known = false;
      for (const OpDef* op : all_ops())
        for (const KernelDef* k : op->kernels) known |= name == k->name;
      if (!known) return invalid_argument("unknown kernel '" + name + "' (atrous inspect --explain lists the kernels of each node)");
    }
  std::unique_ptr<Session> s(new Session());
  auto impl = std::make_unique<internal::SessionImpl>();
  impl->model = std::move(model);
  impl->mi = &impl->model->impl();
  impl->graph = g;
  impl->opts = std::move(options);
  impl->threads = impl->opts.threads > 0 ? impl->opts.threads : omp_get_num_procs();
  size_t n = impl->mi->info.entries[static_cast<size_t>(g)].inputs.size();
  impl->inputs.resize(n);
  impl->input_set.assign(n, false);
  impl->input_staged.assign(n, false);
  s->impl_ = std::move(impl);
  return s;
}

const EntryPointInfo& Session::entry() const { return impl_->mi->info.entries[static_cast<size_t>(impl_->graph)]; }

Status Session::set_input(const std::string& name, const TensorView& tensor) {
  int i = impl_->input_index(name);
  const auto& e = entry();
  if (i < 0) return impl_->no_such_input(name);
  const TensorInfo& info = e.inputs[static_cast<size_t>(i)];
  if (tensor.dtype != info.dtype)
    return invalid_argument("input '" + name + "' must be " + dtype_name(info.dtype) + ", got " + dtype_name(tensor.dtype));
  if (!tensor.data) return invalid_argument("input '" + name + "': data is null");
  if (!info.shape.empty()) {
    bool ok = tensor.shape.size() == info.shape.size();
    for (size_t d = 0; ok && d < info.shape.size(); ++d) ok = info.shape[d] < 0 || info.shape[d] == tensor.shape[d];
    if (!ok)
      return invalid_argument("input '" + name + "' has shape " + shape_string(tensor.shape) + ", the model expects " +
                              shape_string(info.shape) + " (-1 = any size)");
  }
  for (int64_t d : tensor.shape)
    if (d < 1) return invalid_argument("input '" + name + "' has shape " + shape_string(tensor.shape) + ": every dimension must be at least 1");
  if (!checked_nbytes(tensor.shape, tensor.dtype).ok())
    return invalid_argument("input '" + name + "' has shape " + shape_string(tensor.shape) + ", too large");
  impl_->inputs[static_cast<size_t>(i)] = tensor;
  impl_->input_set[static_cast<size_t>(i)] = true;
  impl_->input_staged[static_cast<size_t>(i)] = false;
  return Status::Ok();
}

Status Session::reshape(const std::vector<Shape>& input_shapes) { return impl_->reshape(input_shapes); }

void Session::release_memory() {
  impl_->unbind();
  impl_->arena.reset();
  impl_->arena_bytes = 0;
}

Result<TensorView> Session::input_buffer(const std::string& name) {
  int i = impl_->input_index(name);
  if (i < 0) return impl_->no_such_input(name);
  if (!impl_->plan) return invalid_argument("input_buffer('" + name + "'): no plan yet: call reshape() with the input shapes first");
  const size_t k = static_cast<size_t>(i);
  const int v = impl_->plan->inputs[k];
  const PlanValue& pv = impl_->plan->values[static_cast<size_t>(v)];
  if (!pv.in_arena) return internal_error("input '" + name + "' has no arena slot");
  TensorView slot{pv.desc.dtype, impl_->plan->input_shapes[k], impl_->value_ptr[static_cast<size_t>(v)]};
  impl_->inputs[k] = slot;
  impl_->input_set[k] = impl_->input_staged[k] = true;
  return slot;
}

Status Session::stage_input(const std::string& name, const TensorView& data) {
  const int i = impl_->input_index(name);
  if (i < 0) return impl_->no_such_input(name);
  if (!impl_->plan) return invalid_argument("stage_input('" + name + "'): no plan yet: call reshape() with the input shapes first");
  const size_t k = static_cast<size_t>(i);
  const DType want = impl_->plan->values[static_cast<size_t>(impl_->plan->inputs[k])].desc.dtype;
  const Shape& shape = impl_->plan->input_shapes[k];
  if (data.dtype != want || data.shape != shape)
    return invalid_argument("input '" + name + "' is " + dtype_name(data.dtype) + " " + shape_string(data.shape) +
                            ", the plan takes " + dtype_name(want) + " " + shape_string(shape));
  if (!data.data && data.nbytes() > 0) return invalid_argument("input '" + name + "' has no data");
  ATROUS_ASSIGN_OR_RETURN(TensorView slot, input_buffer(name));
  if (slot.nbytes() > 0) std::memcpy(slot.data, data.data, slot.nbytes());
  return Status::Ok();
}

Status Session::run() { return impl_->run(); }

Result<TensorView> Session::output(size_t index) const {
  const auto& e = entry();
  if (index >= e.outputs.size())
    return not_found("entry point '" + e.name + "' has " + std::to_string(e.outputs.size()) + " outputs, asked for #" + std::to_string(index));
  if (!impl_->plan) return invalid_argument("no output yet: call run() first");
  const Plan& p = *impl_->plan;
  int v = p.outputs[index];
  const PlanValue& pv = p.values[static_cast<size_t>(v)];
  return TensorView{pv.desc.dtype, pv.desc.shape, impl_->value_ptr[static_cast<size_t>(v)]};
}

Result<TensorView> Session::output(const std::string& name) const {
  const auto& e = entry();
  for (size_t i = 0; i < e.outputs.size(); ++i)
    if (e.outputs[i].name == name) return output(i);
  if (impl_->plan)
    for (size_t k = 0; k < impl_->opts.expose.size() && k < impl_->plan->exposed.size(); ++k)
      if (impl_->opts.expose[k] == name) {
        int v = impl_->plan->exposed[k];
        const PlanValue& pv = impl_->plan->values[static_cast<size_t>(v)];
        return TensorView{pv.desc.dtype, pv.desc.shape, impl_->value_ptr[static_cast<size_t>(v)]};
      }
  std::string names;
  for (const auto& t : e.outputs) names += (names.empty() ? "" : ", ") + t.name;
  return not_found("entry point '" + e.name + "' has no output '" + name + "' (outputs: " + names + ")");
}

Result<PlanInfo> Session::plan_info() const {
  if (!impl_->plan) return invalid_argument("no plan yet: call reshape() or run() first");
  return impl_->plan->info(entry().name);
}

const std::vector<double>& Session::step_times() const { return impl_->times; }

}  // namespace atrous
