// BiMambaScan: Vision Mamba's bidirectional ("v2") mixer core on a flattened
// feature map. The MambaScan path runs forward with the first weight set and,
// with the second set (conv1d_b, x_proj_b, dt_proj_b, A_b_log, D_b), over the
// reversed sequence (anti-causal conv, scan from the last token); the gate SiLU(z)
// is shared:  y = (y_fwd + y_bwd) ⊙ SiLU(z) · (divide_out ? 1/2 : 1).
// inputs: xz [B, L, 2Di] or [B, H, W, 2Di] (row-major flattening of H×W),
//         7 forward weights, 7 backward weights (see mamba_path.h)
// outputs: y [B, L, Di] or [B, H, W, Di]
#include "ops/mamba_path.h"
#include "ops/ssm_kernels.h"

namespace atrous {
namespace {

constexpr int kFwd = 1, kBwd = 1 + kMambaWeightInputs;

// ---- attributes -------------------------------------------------------------
Status check(CheckContext& ctx) {
  MambaDims f, b;
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(0, {DType::kF32}));
  ATROUS_RETURN_IF_ERROR(check_mamba_weights(ctx, kFwd, &f));
  ATROUS_RETURN_IF_ERROR(check_mamba_weights(ctx, kBwd, &b));
  if (f.Di != b.Di || f.N != b.N || f.R != b.R || f.K != b.K)
    return ctx.fail("the backward weights (d_inner " + std::to_string(b.Di) + ", d_state " + std::to_string(b.N) + ", dt_rank " +
                    std::to_string(b.R) + ", d_conv " + std::to_string(b.K) + ") differ in size from the forward ones (" +
                    std::to_string(f.Di) + ", " + std::to_string(f.N) + ", " + std::to_string(f.R) + ", " + std::to_string(f.K) + ")");
  ctx.outputs_are(DType::kF32);
  return Status::Ok();
}

// ---- shapes -----------------------------------------------------------------
Status infer(ShapeContext& ctx) {
  MambaDims d;
  ATROUS_RETURN_IF_ERROR(infer_mamba_input(ctx, kFwd, &d));
  Shape y = ctx.in[0];
  y.back() = d.Di;
  ctx.out = {y};
  return Status::Ok();
}

// ---- kernels ------------------------------------------------------------------
class BiMambaScanKernel : public Kernel {
 public:
  BiMambaScanKernel(const ssm::SsmIsa* isa, const MambaDims& d, const MambaWeights& fwd, const MambaWeights& bwd, float scale)
      : isa_(isa), d_(d), fwd_(fwd), bwd_(bwd), scale_(scale) {}

  Status run(const RunBuffers& b, KernelState*) const override {
    const int64_t Di = d_.Di, L = d_.L;
    for (int64_t n = 0; n < d_.batch; ++n) {
      MambaPathIO io;
      io.xz = static_cast<const float*>(b.in[0]) + n * L * 2 * Di;
      io.y = static_cast<float*>(b.out[0]) + n * L * Di;
      io.out_scale = scale_;
      for (int dir = 0; dir < 2; ++dir) {
        io.reverse = dir == 1;
        io.accumulate = dir == 1;
        const MambaWeights& w = dir == 0 ? fwd_ : bwd_;
        if (isa_) ATROUS_RETURN_IF_ERROR(run_mamba_path(*isa_, d_, w, io, b, scratch_));
        else run_mamba_path_ref(d_, w, io, static_cast<float*>(b.scratch[static_cast<size_t>(ref_work_)]));
      }
    }
    return Status::Ok();
  }
  double flops() const override {
    const double per_token = 2.0 * d_.Di * (d_.K + (d_.R + 2 * d_.N) + d_.R) + 6.0 * d_.Di * d_.N;
    return 2.0 * per_token * static_cast<double>(d_.batch * d_.L);
  }
  std::string detail() const override { return isa_ ? std::string(isa_->name) + ", both directions" : "scalar"; }

  MambaPathScratch scratch_;
  int ref_work_ = -1;

 private:
  const ssm::SsmIsa* isa_;
  MambaDims d_;
  MambaWeights fwd_, bwd_;
  float scale_;
};

Result<std::unique_ptr<Kernel>> create_with(KernelContext& ctx, const ssm::SsmIsa* isa) {
  const MambaDims d = mamba_dims(ctx, kFwd);
  ATROUS_ASSIGN_OR_RETURN(MambaWeights fwd, prepare_mamba_weights(ctx, kFwd, d));
  ATROUS_ASSIGN_OR_RETURN(MambaWeights bwd, prepare_mamba_weights(ctx, kBwd, d));
  const float scale = ctx.attrs<fb::BiMambaScanT>().divide_out ? 0.5f : 1.0f;
  auto k = std::make_unique<BiMambaScanKernel>(isa, d, fwd, bwd, scale);
  if (isa) k->scratch_.request(ctx, d);
  else k->ref_work_ = ctx.scratch(static_cast<uint64_t>(mamba_path_ref_work(d)) * sizeof(float));
  return std::unique_ptr<Kernel>(std::move(k));
}

Result<std::unique_ptr<Kernel>> create_avx512(KernelContext& ctx) {
  const ssm::SsmIsa* isa = ssm::ssm_isa_avx512();
  if (!isa) return KernelContext::decline("this CPU lacks AVX-512 (F, DQ, VL)");
  return create_with(ctx, isa);
}
Result<std::unique_ptr<Kernel>> create_avx2(KernelContext& ctx) {
  const ssm::SsmIsa* isa = ssm::ssm_isa_avx2();
  if (!isa) return KernelContext::decline("this CPU lacks AVX2 + FMA");
  return create_with(ctx, isa);
}
Result<std::unique_ptr<Kernel>> create_ref(KernelContext& ctx) { return create_with(ctx, nullptr); }

const KernelDef kBiMambaScanAvx512 = {"bi_mamba_scan_avx512", false, create_avx512};
const KernelDef kBiMambaScanAvx2 = {"bi_mamba_scan_avx2", false, create_avx2};
const KernelDef kBiMambaScanRef = {"bi_mamba_scan_ref", false, create_ref};

}  // namespace

const OpDef kBiMambaScanOp = {"BiMambaScan", 2, 15, 1, 1, check, infer,
                              {&kBiMambaScanAvx512, &kBiMambaScanAvx2, &kBiMambaScanRef}};

}  // namespace atrous
