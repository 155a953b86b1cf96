// Session: runs one entry point of a Model. One Session per thread.
//
// set_input() borrows the caller's data until run() returns; run() plans for the
// given input shapes when they changed (a shape seen before reuses the Model's
// cached plan), copies the inputs into the arena and walks the steps. Or the
// caller writes an input straight into the arena (reshape(), input_buffer()). With
// unchanged shapes, run() allocates nothing. Outputs are views into the
// Session's arena, valid until the next run() or reshape of this Session.
//
//   auto s = atrous::Session::create(model, {.threads = 2});
//   (*s)->set_input("image", tensor.view());
//   if (auto st = (*s)->run(); !st.ok()) ...
//   atrous::TensorView logits = *(*s)->output("logits");
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "atrous/model.h"
#include "atrous/plan_info.h"
#include "atrous/status.h"
#include "atrous/tensor.h"

namespace atrous {

// More threads than this is an error (OpenMP cannot start 100000 threads and would take the
// process down with it).
inline constexpr int kMaxThreads = 1024;

struct SessionOptions {
  std::string entry;            // entry point name; "" = the first
  int threads = 0;              // 0 = every core, at most kMaxThreads; honoured by oneDNN and reference kernels alike
  bool reference_only = false;  // force the reference kernel of every op
  // When not empty: only these kernels may be chosen (e.g. {"conv2d_onednn"}); an op
  // with none of them allowed falls back to its reference kernel.
  std::vector<std::string> allowed_kernels;
  // Kernels never to choose (e.g. {"window_attention_packed"}, to measure the next
  // candidate). A reference kernel stays available: every op keeps its last kernel.
  std::vector<std::string> excluded_kernels;
  bool fuse = true;             // plan-time fusion (BN folding, activation/residual into conv)
  // Refuse a plan whose arena plus plan-owned weights exceed this many bytes
  // (0 = 16 GiB). Checked before allocating.
  uint64_t max_memory = 0;
  bool profile = false;         // record per-step times (see step_times())
  // Intermediate values to keep readable through output(name) after run(), e.g. to
  // compare against a reference layer by layer. They stay in plain layout and are
  // not fused away (fusion is skipped for nodes producing them).
  std::vector<std::string> expose;
  // Inputs keep their arena slots for the whole run and no kernel writes over them, so
  // an input filled through input_buffer() stays valid after run(): fill it once, run
  // any number of times (SamPredictor stages an image's prepared tensors once per
  // decode session). Costs arena: the inputs' slots are not reused by intermediates.
  bool keep_inputs = false;
};

namespace internal { class SessionImpl; }

class Session {
 public:
  ~Session();
  static Result<std::unique_ptr<Session>> create(std::shared_ptr<const Model> model, SessionOptions options = {});

  const EntryPointInfo& entry() const;

  // Borrows `tensor` until run() returns. The dtype must match; free (-1) dims take any size.
  Status set_input(const std::string& name, const TensorView& tensor);
  // Plans (or fetches the cached plan) for these input shapes and sizes the arena;
  // nothing to do when they are the current plan's. run() calls it when the shapes changed.
  Status reshape(const std::vector<Shape>& input_shapes);
  // Zero-copy input: the arena slot of input `name` in the current plan (after
  // reshape() or run()), for the caller to fill before run() instead of set_input().
  // run() then reads it in place: no second copy of a large input stays resident
  // (SAM's 12 MiB image: the slot is reused by later intermediates). The slot is
  // overwritten during run(), so fill it again before every run, unless the session
  // has SessionOptions::keep_inputs: then it stays filled for later runs. A later
  // set_input() for this input, or a reshape() to other shapes, discards it; a
  // run() that must re-plan for another input's new shape refuses to run with it.
  Result<TensorView> input_buffer(const std::string& name);
  // input_buffer() plus the copy: checks that `data` has the dtype and shape the current
  // plan takes for input `name` (an error names both), then copies it into the slot.
  Status stage_input(const std::string& name, const TensorView& data);
  // Frees the arena and the kernels' bindings, for a Session that will sit idle (SAM's
  // predictor releases its encoder's 82 MiB between images). Outputs and staged inputs
  // are gone; the next run() or reshape() binds again from the Model's cached plan.
  void release_memory();
  Status run();

  Result<TensorView> output(const std::string& name) const;
  Result<TensorView> output(size_t index) const;

  // The current plan (after reshape() or run()).
  Result<PlanInfo> plan_info() const;
  // Seconds per step of the last run (profile = true).
  const std::vector<double>& step_times() const;

 private:
  Session() = default;
  std::unique_ptr<internal::SessionImpl> impl_;
};

}  // namespace atrous
