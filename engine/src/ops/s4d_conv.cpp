// S4D convolution mode: y = causal_conv(u, K) + D·u with K computed at plan time
// for the planned length (s4d_common.h), then the block's output stage. Two methods,
// each compiled for AVX-512 and for AVX2 (kernels s4d_{direct,fft}_{avx512,avx2}):
//  - direct: register-blocked time-domain convolution, L²/2 multiply-adds per
//    channel at near-peak FMA throughput; chosen up to kDirectMaxL.
//  - fft: radix-2 Stockham FFT of length 2^ceil(log2(2L)) (linear, not circular,
//    convolution), two real channels packed into one complex transform; the kernel's
//    spectrum is computed at plan time with 1/n folded in.
// The crossover is measured (docs/performance.md, `ssm_bench s4d`). Neither carries
// a state: with a state input or output they decline and the recurrence runs.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "ops/s4d_common.h"

namespace atrous {
namespace {

// Above this length the FFT kernel is faster on this machine (see the header comment).
constexpr int64_t kDirectMaxL = 1024;

const float* input(const RunBuffers& b, int i) { return static_cast<const float*>(b.in[static_cast<size_t>(i)]); }
const float* constant_or_null(const KernelContext& ctx, int i) {
  return ctx.present.size() > static_cast<size_t>(i) && ctx.present[static_cast<size_t>(i)]
             ? static_cast<const float*>(ctx.constant[static_cast<size_t>(i)]) : nullptr;
}

Status decline_state(const KernelContext& ctx, const ssm::SsmIsa* isa) {
  if (!isa) return KernelContext::decline("this CPU lacks the instruction set");
  if ((ctx.present.size() > kS4DState && ctx.present[kS4DState]) || ctx.out.size() > 1)
    return KernelContext::decline("a state input or output needs the recurrent kernel");
  return Status::Ok();
}

// Shared by both: plan-time pieces and the per-sequence output stage.
class S4DConvBase : public Kernel {
 public:
  S4DConvBase(const ssm::SsmIsa* isa, const S4DDims& d, int threads) : isa_(isa), d_(d), threads_(threads) {}
  double flops() const override { return 0; }

  const ssm::SsmIsa* isa_;
  S4DDims d_;
  int threads_;
  const float *D_ = nullptr, *W_ = nullptr, *bias_ = nullptr;
  int y_ = -1, z_ = -1, work_ = -1;

  void init(KernelContext& ctx, uint64_t work_floats_per_thread) {
    D_ = constant_or_null(ctx, kS4DD);
    W_ = constant_or_null(ctx, kS4DOutWeight);
    bias_ = constant_or_null(ctx, kS4DOutBias);
    y_ = ctx.scratch(static_cast<uint64_t>(d_.H * d_.L) * sizeof(float));
    if (d_.has_output) z_ = ctx.scratch(static_cast<uint64_t>(2 * d_.H * d_.L) * sizeof(float));
    work_ = ctx.scratch(work_floats_per_thread * static_cast<uint64_t>(threads_) * sizeof(float));
  }
  float* scratch(const RunBuffers& b, int i) const { return i >= 0 ? static_cast<float*>(b.scratch[static_cast<size_t>(i)]) : nullptr; }
};

// ---- direct ---------------------------------------------------------------------
class S4DDirectKernel : public S4DConvBase {
 public:
  using S4DConvBase::S4DConvBase;
  const float* k_ = nullptr;  // [H, L + P]

  Status run(const RunBuffers& b, KernelState*) const override {
    constexpr int64_t P = ssm::causal_conv_pad();
    const int64_t H = d_.H, L = d_.L, per_thread = 3 * P + 2 * L;
    float* y = scratch(b, y_);
    float* work = scratch(b, work_);
    for (int64_t n = 0; n < d_.batch; ++n) {
#pragma omp parallel num_threads(threads_)
      {
        float* u_pad = work + omp_get_thread_num() * per_thread;  // [P + L + P]
        float* y_pad = u_pad + 2 * P + L;                         // [L + P]
        std::memset(u_pad, 0, P * sizeof(float));
        std::memset(u_pad + P + L, 0, P * sizeof(float));
#pragma omp for schedule(static)
        for (int64_t h = 0; h < H; ++h) {
          const float* uh = s4d_channel(d_, input(b, kS4DU), n, h, u_pad + P);
          if (uh != u_pad + P) std::memcpy(u_pad + P, uh, static_cast<size_t>(L) * sizeof(float));
          isa_->causal_conv(k_ + h * (L + P), u_pad, y_pad, L);
          const float dh = D_ ? D_[h] : 0.0f;
          for (int64_t l = 0; l < L; ++l) y[h * L + l] = y_pad[l] + dh * u_pad[P + l];
        }
      }
      ATROUS_RETURN_IF_ERROR(s4d_finish_fast(*isa_, d_, W_, bias_, y, scratch(b, z_), static_cast<float*>(b.out[0]), n));
    }
    return Status::Ok();
  }
  double flops() const override { return static_cast<double>(d_.batch * d_.H) * d_.L * (d_.L + 1); }
  std::string detail() const override { return std::string(isa_->name) + ", direct, L = " + std::to_string(d_.L); }
};

Result<std::unique_ptr<Kernel>> create_direct(KernelContext& ctx, const ssm::SsmIsa* isa) {
  ATROUS_RETURN_IF_ERROR(decline_state(ctx, isa));
  const S4DDims d = s4d_dims(ctx);
  if (d.L > kDirectMaxL) return KernelContext::decline("length " + std::to_string(d.L) + " > " + std::to_string(kDirectMaxL) + ": the FFT is faster");
  ATROUS_ASSIGN_OR_RETURN(S4DModes m, s4d_modes(ctx, d));
  constexpr int64_t P = ssm::causal_conv_pad();
  auto* k = static_cast<float*>(ctx.persistent(static_cast<uint64_t>(d.H * (d.L + P)) * sizeof(float)));
  if (!k) return out_of_memory(ctx.label() + ": no memory for the S4D kernel");
  s4d_conv_kernel(d, m, k, d.L + P);  // the padding stays zero
  auto kern = std::make_unique<S4DDirectKernel>(isa, d, ctx.threads);
  kern->k_ = k;
  kern->init(ctx, static_cast<uint64_t>(3 * P + 2 * d.L));
  return std::unique_ptr<Kernel>(std::move(kern));
}

// ---- FFT ------------------------------------------------------------------------
class S4DFftKernel : public S4DConvBase {
 public:
  using S4DConvBase::S4DConvBase;
  int64_t n_ = 0;                       // transform length
  const float *tw_re_ = nullptr, *tw_im_ = nullptr;
  const float* spec_ = nullptr;         // per channel pair: P re, P im, Q re, Q im, n floats each

  Status run(const RunBuffers& b, KernelState*) const override {
    const int64_t H = d_.H, L = d_.L, nf = n_, pairs = (H + 1) / 2;
    float* y = scratch(b, y_);
    float* work = scratch(b, work_);
    for (int64_t n = 0; n < d_.batch; ++n) {
#pragma omp parallel num_threads(threads_)
      {
        float* re = work + omp_get_thread_num() * 4 * nf;
        float *im = re + nf, *tre = im + nf, *tim = tre + nf;
#pragma omp for schedule(static)
        for (int64_t p = 0; p < pairs; ++p) {
          const int64_t ha = 2 * p, hb = 2 * p + 1;
          // z = u_a + i·u_b, zero-padded to nf
          s4d_channel_into(b, n, ha, re);
          if (hb < H) s4d_channel_into(b, n, hb, im);
          else std::memset(im, 0, static_cast<size_t>(L) * sizeof(float));
          std::memset(re + L, 0, static_cast<size_t>(nf - L) * sizeof(float));
          std::memset(im + L, 0, static_cast<size_t>(nf - L) * sizeof(float));
          ssm::FftArgs f{nf, re, im, tre, tim, tw_re_, tw_im_, false};
          isa_->fft(f);
          // W[k] = Z[k]·P[k] + conj(Z[-k])·Q[k]: both channels' products in one spectrum
          const float* s = spec_ + p * 4 * nf;
          const float *pr = s, *pi = s + nf, *qr = s + 2 * nf, *qi = s + 3 * nf;
          for (int64_t k = 0; k < nf; ++k) {
            const int64_t km = (nf - k) & (nf - 1);
            const float zr = re[k], zi = im[k], cr = re[km], ci = -im[km];
            tre[k] = zr * pr[k] - zi * pi[k] + cr * qr[k] - ci * qi[k];
            tim[k] = zr * pi[k] + zi * pr[k] + cr * qi[k] + ci * qr[k];
          }
          ssm::FftArgs g{nf, tre, tim, re, im, tw_re_, tw_im_, true};
          isa_->fft(g);
          add_skip(b, n, ha, tre, y + ha * L);
          if (hb < H) add_skip(b, n, hb, tim, y + hb * L);
        }
      }
      ATROUS_RETURN_IF_ERROR(s4d_finish_fast(*isa_, d_, W_, bias_, y, scratch(b, z_), static_cast<float*>(b.out[0]), n));
    }
    return Status::Ok();
  }
  double flops() const override {
    const double lg = std::log2(static_cast<double>(n_));
    return static_cast<double>(d_.batch * (d_.H + 1) / 2) * (2 * 5.0 * n_ * lg + 8.0 * n_);
  }
  std::string detail() const override { return std::string(isa_->name) + ", FFT length " + std::to_string(n_); }

 private:
  void s4d_channel_into(const RunBuffers& b, int64_t n, int64_t h, float* dst) const {
    const float* src = s4d_channel(d_, input(b, kS4DU), n, h, dst);
    if (src != dst) std::memcpy(dst, src, static_cast<size_t>(d_.L) * sizeof(float));
  }
  void add_skip(const RunBuffers& b, int64_t n, int64_t h, const float* conv, float* yh) const {
    const float dh = D_ ? D_[h] : 0.0f;
    const int64_t L = d_.L;
    if (d_.transposed) {
      const float* uh = input(b, kS4DU) + (n * d_.H + h) * L;
      for (int64_t l = 0; l < L; ++l) yh[l] = conv[l] + dh * uh[l];
    } else {
      const float* uh = input(b, kS4DU) + n * L * d_.H + h;
      for (int64_t l = 0; l < L; ++l) yh[l] = conv[l] + dh * uh[l * d_.H];
    }
  }
};

Result<std::unique_ptr<Kernel>> create_fft(KernelContext& ctx, const ssm::SsmIsa* isa) {
  ATROUS_RETURN_IF_ERROR(decline_state(ctx, isa));
  const S4DDims d = s4d_dims(ctx);
  ATROUS_ASSIGN_OR_RETURN(S4DModes m, s4d_modes(ctx, d));
  int64_t nf = 2;
  while (nf < 2 * d.L) nf *= 2;
  const int64_t pairs = (d.H + 1) / 2;
  auto* tw = static_cast<float*>(ctx.persistent(static_cast<uint64_t>(nf) * sizeof(float)));
  auto* spec = static_cast<float*>(ctx.persistent(static_cast<uint64_t>(pairs * 4 * nf) * sizeof(float)));
  if (!tw || !spec) return out_of_memory(ctx.label() + ": no memory for the S4D kernel spectrum");
  for (int64_t k = 0; k < nf / 2; ++k) {
    const double a = -2.0 * M_PI * static_cast<double>(k) / static_cast<double>(nf);
    tw[k] = static_cast<float>(std::cos(a));
    tw[nf / 2 + k] = static_cast<float>(std::sin(a));
  }
  std::vector<float> kvec(static_cast<size_t>(d.H * d.L + 4 * nf));  // plan-time only
  float* kbuf = kvec.data();
  s4d_conv_kernel(d, m, kbuf, d.L);
  // Spectra of K_a, K_b from one transform of K_a + i·K_b, then P = (Ka + Kb)/2n, Q = (Ka - Kb)/2n.
  float *re = kbuf + d.H * d.L, *im = re + nf, *tre = im + nf, *tim = tre + nf;
  const float inv = 1.0f / static_cast<float>(nf);
  for (int64_t p = 0; p < pairs; ++p) {
    std::memset(re, 0, static_cast<size_t>(2 * nf) * sizeof(float));
    std::memcpy(re, kbuf + 2 * p * d.L, static_cast<size_t>(d.L) * sizeof(float));
    if (2 * p + 1 < d.H) std::memcpy(im, kbuf + (2 * p + 1) * d.L, static_cast<size_t>(d.L) * sizeof(float));
    isa->fft(ssm::FftArgs{nf, re, im, tre, tim, tw, tw + nf / 2, false});
    float* s = spec + p * 4 * nf;
    for (int64_t k = 0; k < nf; ++k) {
      const int64_t km = (nf - k) & (nf - 1);
      const float zr = re[k], zi = im[k], cr = re[km], ci = -im[km];
      const float ka_r = 0.5f * (zr + cr), ka_i = 0.5f * (zi + ci);  // (Z + conj Z(-k)) / 2
      const float kb_r = 0.5f * (zi - ci), kb_i = -0.5f * (zr - cr);  // (Z - conj Z(-k)) / 2i
      s[k] = 0.5f * inv * (ka_r + kb_r);
      s[nf + k] = 0.5f * inv * (ka_i + kb_i);
      s[2 * nf + k] = 0.5f * inv * (ka_r - kb_r);
      s[3 * nf + k] = 0.5f * inv * (ka_i - kb_i);
    }
  }
  auto kern = std::make_unique<S4DFftKernel>(isa, d, ctx.threads);
  kern->n_ = nf;
  kern->tw_re_ = tw;
  kern->tw_im_ = tw + nf / 2;
  kern->spec_ = spec;
  kern->init(ctx, static_cast<uint64_t>(4 * nf));
  return std::unique_ptr<Kernel>(std::move(kern));
}

Result<std::unique_ptr<Kernel>> direct_avx512(KernelContext& ctx) { return create_direct(ctx, ssm::ssm_isa_avx512()); }
Result<std::unique_ptr<Kernel>> direct_avx2(KernelContext& ctx) { return create_direct(ctx, ssm::ssm_isa_avx2()); }
Result<std::unique_ptr<Kernel>> fft_avx512(KernelContext& ctx) { return create_fft(ctx, ssm::ssm_isa_avx512()); }
Result<std::unique_ptr<Kernel>> fft_avx2(KernelContext& ctx) { return create_fft(ctx, ssm::ssm_isa_avx2()); }

}  // namespace

extern const KernelDef kS4DDirectAvx512, kS4DDirectAvx2, kS4DFftAvx512, kS4DFftAvx2;
const KernelDef kS4DDirectAvx512 = {"s4d_direct_avx512", false, direct_avx512};
const KernelDef kS4DDirectAvx2 = {"s4d_direct_avx2", false, direct_avx2};
const KernelDef kS4DFftAvx512 = {"s4d_fft_avx512", false, fft_avx512};
const KernelDef kS4DFftAvx2 = {"s4d_fft_avx2", false, fft_avx2};

}  // namespace atrous
