// fma_peak: the machine's f32 FMA peak, measured with a loop of independent FMAs.
//
//   build/bin/fma_peak [threads...]      (default: 1 and every core)
//
// Each thread runs 12 independent accumulator chains of vfmadd (16 lanes with
// AVX-512, 8 with AVX2), enough to hide the FMA latency on two FMA ports. A
// multiply-add counts as 2 flops. The best of 5 runs of ~0.3 s is reported: the
// machine is shared, and the best run is the closest to what the hardware can do.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

constexpr int kChains = 12;

__attribute__((target("avx512f"))) float run_avx512(long iters) {
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(0.001f * i);
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (long it = 0; it < iters; ++it)
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  __m512 s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm512_add_ps(s, acc[i]);
  return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) float run_avx2(long iters) {
  __m256 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_ps(0.001f * i);
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (long it = 0; it < iters; ++it)
    for (int i = 0; i < kChains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  __m256 s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm256_add_ps(s, acc[i]);
  alignas(32) float t[8];
  _mm256_store_ps(t, s);
  return t[0] + t[7];
}

// GFLOP/s of `threads` threads, best of 5.
double measure(int threads, bool avx512) {
  const long iters = 20000000;
  const int lanes = avx512 ? 16 : 8;
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    volatile float sink = 0;
    auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads)
    {
      float r = avx512 ? run_avx512(iters) : run_avx2(iters);
#pragma omp atomic
      sink += r;
    }
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, 2.0 * kChains * lanes * static_cast<double>(iters) * threads / s / 1e9);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f");
  if (!avx512 && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) {
    std::printf("fma_peak: needs AVX2+FMA or AVX-512\n");
    return 1;
  }
  std::vector<int> threads;
  for (int i = 1; i < argc; ++i) threads.push_back(std::atoi(argv[i]));
  if (threads.empty()) threads = {1, omp_get_num_procs()};
  std::printf("f32 FMA peak (%s, %d chains, best of 5)\n", avx512 ? "AVX-512" : "AVX2", kChains);
  for (int t : threads) std::printf("  %d thread%s: %.1f GFLOP/s\n", t, t == 1 ? "" : "s", measure(t, avx512));
  return 0;
}
