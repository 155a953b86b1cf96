// MambaScan: Mamba's path between in_proj and out_proj (conv1d + SiLU, x_proj,
// dt_proj + softplus, selective scan with D skip, SiLU(z) gate), mamba_ssm layout.
// inputs: xz [B, L, 2Di] (or [B, H, W, 2Di]), conv_weight, conv_bias, x_proj_weight,
//         dt_proj_weight, dt_proj_bias, A_log, D (see mamba_path.h),
//         conv_state [B, Di, K] (opt), ssm_state [B, Di, N] (opt)
// outputs: y [B, L, Di] (or [B, H, W, Di]), conv_state_out [B, Di, K] (opt), ssm_state_out [B, Di, N] (opt)
// Feeding a sequence in pieces, each piece with the states the previous one output,
// gives the same y as the whole sequence at once (the "step" entry point of a Mamba LM).
#include "ops/mamba_path.h"
#include "ops/ssm_kernels.h"

namespace atrous {
namespace {

constexpr int kFirstWeight = 1, kConvState = 8, kSsmState = 9;

// ---- attributes -------------------------------------------------------------
Status check(CheckContext& ctx) {
  MambaDims d;
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(0, {DType::kF32}));
  ATROUS_RETURN_IF_ERROR(check_mamba_weights(ctx, kFirstWeight, &d));
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(kConvState, {DType::kF32}));
  ATROUS_RETURN_IF_ERROR(ctx.expect_dtype(kSsmState, {DType::kF32}));
  ctx.outputs_are(DType::kF32);
  return Status::Ok();
}

// ---- shapes -----------------------------------------------------------------
Status infer(ShapeContext& ctx) {
  MambaDims d;
  ATROUS_RETURN_IF_ERROR(infer_mamba_input(ctx, kFirstWeight, &d));
  const Shape conv_state{d.batch, d.Di, d.K}, ssm_state{d.batch, d.Di, d.N};
  if (ctx.has(kConvState) && ctx.in[kConvState] != conv_state)
    return ctx.fail("input conv_state has shape " + shape_string(ctx.in[kConvState]) + ", expected " + shape_string(conv_state) +
                    " ([batch, d_inner, d_conv])");
  if (ctx.has(kSsmState) && ctx.in[kSsmState] != ssm_state)
    return ctx.fail("input ssm_state has shape " + shape_string(ctx.in[kSsmState]) + ", expected " + shape_string(ssm_state) +
                    " ([batch, d_inner, d_state])");
  Shape y = ctx.in[0];
  y.back() = d.Di;
  ctx.out = {y, conv_state, ssm_state};
  ctx.out.resize(ctx.node.outputs.size());
  return Status::Ok();
}

// ---- kernels: vectorised (AVX-512, AVX2) and the scalar reference ------------
class MambaScanKernel : public Kernel {
 public:
  MambaScanKernel(const ssm::SsmIsa* isa, const MambaDims& d, const MambaWeights& w) : isa_(isa), d_(d), w_(w) {}

  Status run(const RunBuffers& b, KernelState*) const override {
    auto in = [&](int i) { return i < static_cast<int>(b.in.size()) ? static_cast<const float*>(b.in[static_cast<size_t>(i)]) : nullptr; };
    auto out = [&](int i) { return i < static_cast<int>(b.out.size()) ? static_cast<float*>(b.out[static_cast<size_t>(i)]) : nullptr; };
    const int64_t Di = d_.Di, L = d_.L, K = d_.K, N = d_.N;
    for (int64_t n = 0; n < d_.batch; ++n) {
      MambaPathIO io;
      io.xz = in(0) + n * L * 2 * Di;
      io.conv_state = in(kConvState) ? in(kConvState) + n * Di * K : nullptr;
      io.ssm_state = in(kSsmState) ? in(kSsmState) + n * Di * N : nullptr;
      io.y = out(0) + n * L * Di;
      io.conv_state_out = out(1) ? out(1) + n * Di * K : nullptr;
      io.ssm_state_out = out(2) ? out(2) + n * Di * N : nullptr;
      if (isa_) ATROUS_RETURN_IF_ERROR(run_mamba_path(*isa_, d_, w_, io, b, scratch_));
      else run_mamba_path_ref(d_, w_, io, static_cast<float*>(b.scratch[static_cast<size_t>(ref_work_)]));
    }
    return Status::Ok();
  }
  double flops() const override {
    const double per_token = 2.0 * d_.Di * (d_.K + (d_.R + 2 * d_.N) + d_.R) + 6.0 * d_.Di * d_.N;
    return per_token * static_cast<double>(d_.batch * d_.L);
  }
  std::string detail() const override {
    return isa_ ? std::string(isa_->name) + ", chunks of " + std::to_string(kMambaChunk) + " steps" : "scalar";
  }

  MambaPathScratch scratch_;
  int ref_work_ = -1;

 private:
  const ssm::SsmIsa* isa_;
  MambaDims d_;
  MambaWeights w_;
};

Result<std::unique_ptr<Kernel>> create_with(KernelContext& ctx, const ssm::SsmIsa* isa) {
  const MambaDims d = mamba_dims(ctx, kFirstWeight);
  ATROUS_ASSIGN_OR_RETURN(MambaWeights w, prepare_mamba_weights(ctx, kFirstWeight, d));
  auto k = std::make_unique<MambaScanKernel>(isa, d, w);
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

const KernelDef kMambaScanAvx512 = {"mamba_scan_avx512", false, create_avx512};
const KernelDef kMambaScanAvx2 = {"mamba_scan_avx2", false, create_avx2};
const KernelDef kMambaScanRef = {"mamba_scan_ref", false, create_ref};

}  // namespace

const OpDef kMambaScanOp = {"MambaScan", 2, 10, 1, 3, check, infer, {&kMambaScanAvx512, &kMambaScanAvx2, &kMambaScanRef}};

}  // namespace atrous
