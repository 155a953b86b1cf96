// Math shared by the attention ops (multi_head_attention.cpp, linear_attention.cpp,
// performer_attention.cpp, norm_attention.cpp, gated_attention_unit.cpp, lite_mla.cpp).
//
// - Projections: rows × weightᵀ + bias through sgemm (fast kernels) or plain loops
//   (reference kernels).
// - Vector math for softmax rows and feature maps: exp, max, sums. An AVX-512,
//   an AVX2+FMA and a scalar path, chosen once from the CPU's features. The
//   vector exp is a degree-6 polynomial after range reduction (about 2 ulp);
//   inputs below about -103 give 0, so -inf (a mask) gives exactly 0.
// - The linear-attention core (LinearCore): for one (batch, head) it computes
//   y_i = (φq_i · S_i) / (φq_i · z_i + eps) where S_i, z_i sum φk_j ⊗ v_j and φk_j over
//   j ≤ i (causal) or over all j. Non-causal: S += φKᵀV (accumulate), then φQ·S in row
//   blocks with 1/denominator applied as each output tile is stored (read). Causal, per
//   chunk of C tokens: y_c = [φQc | tril(φQc φKcᵀ)] · [S ; Vc], one GEMM for the earlier
//   chunks (through the running state) and this one (the masked quadratic form), with
//   φQc and Vc read in place (small_sgemm_concat), then S += φKcᵀ Vc. Every product is
//   a small_sgemm or small_sgemm_concat (ops/small_gemm.h). The state starts
//   from `state` (a streaming step's input) and ends there (its output).
//   Limits: the state is f32, so sums over very long sequences lose the
//   precision of f32 accumulation (as the references do).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "atrous/status.h"
#include "atrous/tensor.h"
#include "onednn/packed_gemm.h"
#include "ops/op_registry.h"

namespace atrous::attn {

// ---- projections --------------------------------------------------------------
// dst[r, n] = Σ_k src[r, k] · w[n, k] + b[n]; rows of src and dst are contiguous
// with leading dims ld_src / ld_dst. sgemm: one GEMM, multi-threaded by oneDNN
// when called outside a parallel region.
Status project(const float* src, int64_t rows, int64_t k, int64_t ld_src, const float* w, const float* b, int64_t n,
               float* dst, int64_t ld_dst);
// The same with plain loops (reference kernels), OpenMP-parallel over rows.
void project_ref(const float* src, int64_t rows, int64_t k, int64_t ld_src, const float* w, const float* b, int64_t n,
                 float* dst, int64_t ld_dst);

// ---- vector math ----------------------------------------------------------------
float row_max(const float* x, int64_t n);
// x[i] = exp(x[i] - shift); returns Σ x[i] after the update.
float exp_shift_sum(float* x, int64_t n, float shift);
// y[i] = exp(x[i] + add) + offset (x and y may alias).
void exp_add(const float* x, float* y, int64_t n, float add, float offset = 0.0f);
// x[i] = elu(x[i]) + add (alpha 1), vectorised, on the calling thread.
void elu_add_serial(float* x, int64_t n, float add);
// "avx512", "avx2" or "scalar": the path the functions above take.
const char* vector_isa();
// The linear core's denominators: inv[i] = 1 / (q_i · z + extra[i] + eps + eps_qsum · Σ_f q_if)
// over n rows of d floats (extra may be null, or alias inv). AVX-512: four rows at a time.
void inverse_denominators(const float* q, int64_t ldq, int64_t n, const float* z, int64_t d, const float* extra, float eps,
                          float eps_qsum, float* inv);
// z[f] += Σ_j k[j, f] over n rows of d floats. AVX-512: 64 columns in registers at a time.
void add_column_sums(const float* k, int64_t ldk, int64_t n, int64_t d, float* z);
// The causal chunk's scores [c, c] (row stride lda): a[i, j] = 0 for j > i, and
// sums[i] = Σ_{j ≤ i} a[i, j] (sums may be null). AVX-512: 16 columns at a time.
void causal_mask_rows(float* a, int64_t lda, int64_t c, float* sums);
// Their plain-loop paths (taken without AVX-512), for tests.
void inverse_denominators_scalar(const float* q, int64_t ldq, int64_t n, const float* z, int64_t d, const float* extra,
                                 float eps, float eps_qsum, float* inv);
void add_column_sums_scalar(const float* k, int64_t ldk, int64_t n, int64_t d, float* z);
void causal_mask_rows_scalar(float* a, int64_t lda, int64_t c, float* sums);

// ---- linear attention core ---------------------------------------------------------
// The causal chunk of the projected linear-attention kernels (LinearAttention,
// NormAttention's linear form, PerformerAttention): 16 measured fastest of 8-64 with
// the chunk's operands read in place (docs/performance.md).
constexpr int64_t kCausalChunk = 16;
struct LinearCoreShape {
  int64_t lq = 1, lk = 1;  // query / key lengths (equal when causal)
  int64_t d = 1;           // feature dim of φq, φk
  int64_t m = 1;           // value dim
  bool causal = false;
  bool denominator = true;   // y = num / (den + eps + eps_qsum · Σ_f φq_f); else y = num
  float eps = 0.0f;
  float eps_qsum = 0.0f;
  int64_t chunk = 64;        // causal chunk length
};

class LinearCore {
 public:
  explicit LinearCore(const LinearCoreShape& s) : s_(s) {}
  const LinearCoreShape& shape() const { return s_; }
  // State of one (batch, head): S = Σ φk vᵀ [d, m] (row-major), then, with a
  // denominator, z = Σ φk [d].
  int64_t state_floats() const { return s_.d * (s_.m + (s_.denominator ? 1 : 0)); }
  // Scratch one call of run() needs (floats), besides the state.
  int64_t scratch_floats() const;

  // One (batch, head), on the calling thread. q [lq, d] (row stride ldq), k [lk, d],
  // v [lk, m], y [lq, m], each read or written in place. state: in: the initial state
  // (zeros for a fresh start); out: the final state. scratch: scratch_floats().
  Status run(const float* q, int64_t ldq, const float* k, int64_t ldk, const float* v, int64_t ldv, float* y,
             int64_t ldy, float* state, float* scratch) const;
  // The same math, token by token (the RNN form for causal, two plain passes
  // otherwise), with plain loops: the reference kernels' core. No scratch.
  void run_ref(const float* q, int64_t ldq, const float* k, int64_t ldk, const float* v, int64_t ldv, float* y,
               int64_t ldy, float* state) const;
  // The non-causal form in pieces, for kernels that produce keys and queries a block
  // of rows at a time (the fused kernels): accumulate() adds `rows` keys and values
  // to the state (S += φKᵀV, z += Σ φk); read() computes `rows` outputs from it.
  // read's scratch: read_scratch_floats().
  Status accumulate(const float* k, int64_t ldk, const float* v, int64_t ldv, int64_t rows, float* state) const;
  Status read(const float* q, int64_t ldq, int64_t rows, float* y, int64_t ldy, const float* state, float* scratch) const;
  int64_t read_scratch_floats() const { return kReadBlock; }
  static constexpr int64_t kReadBlock = 256;
  // The same core over a different number of rows (a block of a longer sequence).
  LinearCore with_rows(int64_t lq, int64_t lk) const {
    LinearCoreShape s = s_;
    s.lq = lq;
    s.lk = lk;
    return LinearCore(s);
  }
  // GEMM flops of run() (causal: the intra-chunk products count the masked-out half too).
  double flops() const;

 private:
  LinearCoreShape s_;
};

// State tensors ([B, H, d, m] and [B, H, d]) of (b, h) to/from the core's [d, m(+1)].
void state_in(const float* kv, const float* z, int64_t d, int64_t m, bool with_z, float* state);
void state_out(const float* state, int64_t d, int64_t m, bool with_z, float* kv, float* z);

// ---- shared node layout (inputs 0-10 of the projected attention nodes) ----------------
enum ProjInput { kQuery = 0, kKey, kValue, kWq, kBq, kWk, kBk, kWv, kBv, kWo, kBo, kNumProjInputs };

// Shapes of a projected attention node, from its input shapes.
struct ProjShapes {
  int64_t batch = 1, lq = 1, lk = 1;
  int64_t eq = 1, ek = 1, ev = 1;  // model dims of query / key / value sources
  int64_t inner = 1, inner_v = 1;  // heads · D, heads · M
  int64_t heads = 1, d = 1, m = 1;
  int64_t eo = 1;                  // output dim
};

// Input i of a step, or nullptr when absent (also past the node's last input).
inline const float* input_or_null(const RunBuffers& b, int i) {
  return i < static_cast<int>(b.in.size()) ? static_cast<const float*>(b.in[static_cast<size_t>(i)]) : nullptr;
}
inline float* output_or_null(const RunBuffers& b, int i) {
  return i < static_cast<int>(b.out.size()) ? static_cast<float*>(b.out[static_cast<size_t>(i)]) : nullptr;
}
inline bool present(const KernelContext& ctx, int i) { return i < static_cast<int>(ctx.present.size()) && ctx.present[static_cast<size_t>(i)]; }

// Attribute-independent checks of inputs 0-10: dtypes, constant weights, 2-D weights, 1-D biases.
Status check_projections(CheckContext& ctx);
// Shapes of inputs 0-10 against each other and `heads`; fills *s.
Status infer_projections(ShapeContext& ctx, int64_t heads, ProjShapes* s);
ProjShapes proj_shapes(const KernelContext& ctx, int64_t heads);

// The four projection calls of one session, bound to its buffers (PackedGemm::Bound);
// an entry is null where that projection takes sgemm.
struct BoundProjections : KernelState {
  std::unique_ptr<PackedGemm::Bound> q, k, v, o;
};

// The four projection weights packed at plan time (PackedGemm); an entry stays null
// when oneDNN declines it, and that projection takes sgemm on each call.
struct PackedProjections {
  std::unique_ptr<PackedGemm> q, k, v, o;
  static std::unique_ptr<PackedProjections> create(KernelContext& ctx, const ProjShapes& s);
  // Binds the calls to the step's buffers: Q, K, V and O in scratch, y the output.
  Result<std::unique_ptr<BoundProjections>> bind(const RunBuffers& b, float* q_dst, float* k_dst, float* v_dst,
                                                 const float* o_src, float* y) const;
};

// Q [B·lq, inner], K [B·lk, inner], V [B·lk, inner_v] from the run buffers (a missing
// key is the query, a missing value the key). ref: plain loops instead of sgemm;
// bound: the packed projections bound in bind(), where there are some.
Status project_qkv(const ProjShapes& s, const RunBuffers& b, float* q, float* k, float* v, bool ref,
                   const BoundProjections* bound = nullptr);
// y [B·lq, eo] = o [B·lq, inner_v] · woᵀ + bo.
Status project_out(const ProjShapes& s, const RunBuffers& b, const float* o, float* y, bool ref,
                   const BoundProjections* bound = nullptr);
// Flops of the four projections.
double projection_flops(const ProjShapes& s);
// y[i] += residual[i] for n floats, OpenMP-parallel; nothing when residual is null.
void add_residual(const float* residual, float* y, int64_t n, int threads);

// The unfused run of the projected linear-attention kernels (PerformerAttention,
// NormAttention's block form, the reference kernels): Q, K, V projected into scratch
// (weights packed at plan time unless ref), a hook over the whole Q and K, one task per
// (batch, head) on the session's threads, each with its own thread scratch, a hook over
// O, the output projection. A derived constructor calls request_scratch() last (it
// needs thread_floats()).
//
// Fused mode (enable_fused; every kernel of LinearAttention and NormAttention's linear
// form but the reference ones): each thread owns a group of adjacent heads and walks
// the sequence in blocks of 256 tokens. For its heads only it projects the block's q, k
// and v (the *_fused kernels: the weights' rows of those heads packed at plan time, one
// PackedGemm per group; linear_attention_chunked and norm_attention_gemm: sgemm on
// those rows in place), applies φ, and runs the core on the block while it is in cache:
// causal, the chunked core carrying the state from block to block; non-causal,
// LinearCore::accumulate over the key blocks, then LinearCore::read over the query
// blocks. After each query block a barrier; then the block's O rows, split between the
// threads, go through after_rows and the output projection. In the unfused layout a
// head's q, k, v rows are 256 B out of every 2 KiB of three sequence-long buffers: the
// core then waits on memory (docs/performance.md).
class ProjectedHeadsKernel : public Kernel {
 public:
  Result<std::unique_ptr<KernelState>> bind(const RunBuffers& b) const final;
  Status run(const RunBuffers& b, KernelState* state) const final;
  std::string detail() const override;
  // Ok, or why the fused mode asked for could not be set up (the kernel then declines).
  const Status& fused_status() const { return fused_status_; }

 protected:
  // fused: the kernel will call enable_fused() (nothing is packed here).
  ProjectedHeadsKernel(KernelContext& ctx, int64_t heads, bool ref, const char* what, bool fused = false);
  void request_scratch(KernelContext& ctx);
  // Sets up the fused mode for `core` (its shape for the whole sequence) with the state
  // inputs kv_input / z_input (-1: none). Call before request_scratch(). packed: the
  // projection weights packed at plan time; fails with the reason when a group's
  // projections cannot be packed. Not packed: sgemm on the weights in place, block by
  // block.
  Status enable_fused(KernelContext& ctx, const LinearCore& core, int kv_input, int z_input, bool packed = true);
  // φ over n floats of a block of q or k, in fused mode.
  virtual void feature(float* /*x*/, int64_t /*n*/) const {}

  // Floats of scratch each thread gets.
  virtual int64_t thread_floats() const = 0;
  virtual void before_heads(float* /*q*/, float* /*k*/) const {}
  // Head h of batch bi: q, k, v, o point at that head's first column (row strides
  // s_.inner, s_.inner, s_.inner_v, s_.inner_v); st is this thread's scratch.
  virtual Status head(const RunBuffers& b, int64_t bi, int64_t h, const float* q, const float* k, const float* v, float* o,
                      float* st) const = 0;
  virtual void after_heads(const RunBuffers& /*b*/, float* /*o*/) const {}
  // The same over `rows` rows of O (fused mode, on the calling thread).
  virtual void after_rows(const RunBuffers& /*b*/, float* /*o*/, int64_t /*rows*/) const {}

  // The reference kernels' core over one head whose state (d × m, plus z when with_z) is
  // carried in the optional state inputs/outputs: state_in, LinearCore::run_ref,
  // state_out. st holds the core's state.
  void ref_core_head(const RunBuffers& b, const LinearCore& core, int64_t bh, int kv_input, int z_input, const float* q,
                     int64_t ldq, const float* k, int64_t ldk, const float* v, float* o, float* st) const;
  int64_t core_thread_floats(const LinearCore& core) const { return core.state_floats() + (ref_ ? 0 : core.scratch_floats()); }
  // ref_core_head's first and last steps, for a head() that runs the core in pieces: st from
  // the state inputs (or zeros), and st to the state outputs (where the node has them).
  void head_state_in(const RunBuffers& b, const LinearCore& core, int64_t bh, int kv_input, int z_input, float* st) const;
  void head_state_out(const RunBuffers& b, const LinearCore& core, int64_t bh, int z_input, const float* st) const;

  bool ref_;
  ProjShapes s_;
  std::unique_ptr<PackedProjections> packed_;  // null for the reference and fused kernels
  int threads_ = 1;
  Status fused_status_;  // set by a derived constructor that asks for the fused mode

 private:
  struct Fused;
  struct FusedBound;
  void request_fused_scratch(KernelContext& ctx);
  Result<std::unique_ptr<KernelState>> bind_fused(const RunBuffers& b) const;
  Status run_fused(const RunBuffers& b, const KernelState* state) const;

  const char* what_;
  int q_scr_ = -1, k_scr_ = -1, v_scr_ = -1, o_scr_ = -1, t_scr_ = -1;
  std::shared_ptr<Fused> fused_;  // null unless enable_fused succeeded
};
// create() of a fused kernel: K(ctx, args...) built in fused mode, or its decline.
template <class K, class... Args>
Result<std::unique_ptr<Kernel>> create_fused_kernel(KernelContext& ctx, Args... args) {
  std::unique_ptr<K> k(new K(ctx, args...));
  if (!k->fused_status().ok()) return k->fused_status();
  return std::unique_ptr<Kernel>(std::move(k));
}

// Fails unless the optional state input i has shape `want` (when present).
Status expect_state_shape(ShapeContext& ctx, int i, const Shape& want, const char* what);

}  // namespace atrous::attn
