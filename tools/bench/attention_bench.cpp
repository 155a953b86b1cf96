// attention_bench: time and peak memory of the attention nodes against sequence
// length, next to PyTorch computing the same thing, in one run.
//
//   build/bin/attention_bench [--n 1024,2048,4096,16384,65536] [--variants softmax,linear,...]
//                             [--causal] [--reps 3] [--threads 2] [--no-torch] [--torch-budget 30]
//
// Every variant is one node at batch 1, 8 heads × 64 dims (model dim 512) unless
// noted: softmax (MultiHeadAttention, mha_tiled), linear (LinearAttention), performer
// (PerformerAttention, 266 features), transnormer (NormAttention, linear form),
// flash (GatedAttentionUnit, FLASH group 256, dim 512, qk 128, hidden 1024: one head),
// litemla (LiteMLA on a [1, 512, h, n/h] map, h = 2^floor(log2 √n), dim 64 = 8 heads, scale 5),
// litemla0 (the same without scales; not in the default list).
// Each (variant, n) runs in a forked child: one warm-up run (plans), then the median
// of --reps runs (one run when a run takes over 5 s). Memory is the child's peak RSS
// growth (input, weights, arena and plan; the same measure as PyTorch's column), and
// the plan's arena. GFLOP/s counts the node's flops (Kernel::flops: projections and
// attention products) over the whole node time. A second table times the matrix-shaped
// parts alone against the FMA peak: the sgemm projections, the linear-attention core,
// LiteMLA's four products and Performer's feature GEMM and core, with the calls and shapes
// their kernels make.
// PyTorch numbers come from attention_bench.py beside this file (same threads).
#include <omp.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "atrous/atrous.h"
#include "builder/graph_builder.h"
#include "onednn/gemm.h"
#include "ops/attention_common.h"
#include "plan/kernel.h"
#include "ops/lite_mla.h"
#include "ops/narrow_gemm.h"
#include "ops/small_gemm.h"
#include "ops/transpose_panel.h"

using namespace atrous;

namespace {

constexpr int64_t kDim = 512, kHeads = 8, kHeadDim = 64;

struct Options {
  std::vector<int64_t> n = {1024, 2048, 4096, 16384, 65536};
  std::vector<std::string> variants = {"softmax", "linear", "performer", "transnormer", "flash", "litemla"};
  bool causal = false, torch = true;
  int reps = 3, threads = 2;
  double torch_budget = 30;
  int64_t parts_n = 16384;  // 0: skip the matrix-shaped parts table
  std::vector<std::string> kernels;  // --kernels: the only kernels allowed (empty: all)
};

// 64-byte aligned storage for the parts tables, as the plan's arena gives the kernels
// (a plain std::vector of this size starts 16 bytes past a cache line).
template <class T>
struct Aligned64 {
  using value_type = T;
  Aligned64() = default;
  template <class U>
  Aligned64(const Aligned64<U>&) {}
  T* allocate(size_t n) {
    void* p = std::aligned_alloc(64, (n * sizeof(T) + 63) / 64 * 64);
    if (!p) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) { std::free(p); }
  bool operator==(const Aligned64&) const { return true; }
  bool operator!=(const Aligned64&) const { return false; }
};
using Floats = std::vector<float, Aligned64<float>>;

Floats randn_aligned(size_t count, float scale, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  Floats v(count);
  for (float& x : v) x = d(rng);
  return v;
}
std::vector<float> randn(size_t count, float scale, uint32_t seed) {
  Floats a = randn_aligned(count, scale, seed);
  return std::vector<float>(a.begin(), a.end());
}

int weight(GraphBuilder& g, const std::string& name, const Shape& shape, float scale, uint32_t seed) {
  size_t n = 1;
  for (int64_t d : shape) n *= static_cast<size_t>(d);
  return g.constant_f32(name, shape, randn(n, scale, seed));
}

// Inputs 0-10 of a projected attention node (model dim 512 -> 8 × 64).
std::vector<int> proj_inputs(GraphBuilder& g, int x) {
  const float s = 1.0f / std::sqrt(static_cast<float>(kDim));
  std::vector<int> in = {x, -1, -1};
  const char* names[] = {"q", "k", "v", "o"};
  for (int i = 0; i < 4; ++i) {
    in.push_back(weight(g, std::string(names[i]) + ".weight", {kDim, kDim}, s, 10 + i));
    in.push_back(weight(g, std::string(names[i]) + ".bias", {kDim}, 0.1f, 20 + i));
  }
  return in;
}

// The model of one variant at length n; *x_shape gets its input's shape.
Result<std::vector<uint8_t>> build(const std::string& v, int64_t n, bool causal, Shape* x_shape) {
  ModelBuilder mb(v, "attention_bench");
  GraphBuilder& g = mb.graph("main");
  int y = -1;
  if (v == "litemla" || v == "litemla0") {
    int64_t h = 1;  // h = 2^floor(log2(sqrt(n))), w = n / h: 32×32, 32×64, 64×64, ...
    while ((2 * h) * (2 * h) <= n) h *= 2;
    *x_shape = {1, kDim, h, n / h};
    int x = g.input("x", DType::kF32, *x_shape);
    fb::LiteMLAT a;
    a.dim = kHeadDim;
    const bool scaled = v == "litemla";
    if (scaled) a.scales = {5};
    const float s = 1.0f / std::sqrt(static_cast<float>(kDim));
    std::vector<int> in = {x, weight(g, "qkv.conv.weight", {3 * kDim, kDim, 1, 1}, s, 1),
                           weight(g, "proj.conv.weight", {kDim, (scaled ? 2 : 1) * kDim, 1, 1}, s, 2), -1};
    if (scaled) {
      in.push_back(weight(g, "aggreg.0.0.weight", {3 * kDim, 1, 5, 5}, 0.2f, 3));
      in.push_back(weight(g, "aggreg.0.1.weight", {3 * kDim, kHeadDim, 1, 1}, 0.125f, 4));
    }
    y = g.node("mla", a, in);
  } else if (v == "flash") {
    *x_shape = {1, n, kDim};
    int x = g.input("x", DType::kF32, *x_shape);
    fb::GatedAttentionUnitT a;
    a.group_size = 256;
    a.causal = causal;
    a.rel_pos_scale = std::sqrt(128.0f);
    const float s = 1.0f / std::sqrt(static_cast<float>(kDim));
    std::vector<int> in = {x, weight(g, "norm.weight", {kDim}, 0.1f, 1), weight(g, "norm.bias", {kDim}, 0.1f, 2),
                           weight(g, "to_hidden.0.weight", {4 * kDim, kDim}, s, 3), weight(g, "to_hidden.0.bias", {4 * kDim}, 0.1f, 4),
                           weight(g, "to_qk.0.weight", {128, kDim}, s, 5), weight(g, "to_qk.0.bias", {128}, 0.1f, 6),
                           weight(g, "gamma", {4, 128}, 0.5f, 7), weight(g, "beta", {4, 128}, 0.1f, 8),
                           weight(g, "to_out.weight", {kDim, 2 * kDim}, 1.0f / 32, 9), weight(g, "to_out.bias", {kDim}, 0.1f, 10),
                           weight(g, "rel_pos", {32, 1}, 0.05f, 11)};
    y = g.node("flash", a, in);
  } else {
    *x_shape = {1, n, kDim};
    int x = g.input("x", DType::kF32, *x_shape);
    std::vector<int> in = proj_inputs(g, x);
    if (v == "projection") {  // one projection alone, the way the attention nodes run theirs
      y = g.node("proj", fb::LinearT{}, {x, in[3], in[4]});
    } else if (v == "softmax") {
      fb::MultiHeadAttentionT a;
      a.num_heads = kHeads;
      a.causal = causal;
      y = g.node("attn", a, in);
    } else if (v == "linear") {
      fb::LinearAttentionT a;
      a.num_heads = kHeads;
      a.causal = causal;
      y = g.node("attn", a, in);
    } else if (v == "performer") {
      fb::PerformerAttentionT a;
      a.num_heads = kHeads;
      a.causal = causal;
      in.push_back(weight(g, "projection_matrix", {266, kHeadDim}, 1.0f, 30));
      y = g.node("attn", a, in);
    } else if (v == "transnormer") {
      fb::NormAttentionT a;
      a.num_heads = kHeads;
      a.causal = causal;
      in.push_back(weight(g, "layer_norm.weight", {kDim}, 0.1f, 31));
      in.push_back(weight(g, "layer_norm.bias", {kDim}, 0.1f, 32));
      y = g.node("attn", a, in);
    } else {
      return invalid_argument("unknown variant '" + v + "'");
    }
  }
  g.output(y, "y");
  return mb.to_bytes();
}

struct Measure {
  double ms = 0, gflops = 0, arena_mib = 0, rss_mib = 0;
  std::string kernel, error;
};

double rss_mib_now() {
  long pages = 0, resident = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1 << 20);
}

// In the child: build, plan, run; prints one result line to fd.
void measure_child(const std::string& v, int64_t n, bool causal, const Options& o, int fd) {
  const double rss0 = rss_mib_now();
  Measure m;
  auto fail = [&](const std::string& e) { dprintf(fd, "ERR %s\n", e.c_str()); };
  Shape xs;
  auto bytes = build(v, n, causal, &xs);
  if (!bytes.ok()) return fail(bytes.status().to_string());
  auto model = Model::from_memory(bytes->data(), bytes->size());
  if (!model.ok()) return fail(model.status().to_string());
  SessionOptions so;
  so.threads = o.threads;
  so.allowed_kernels = o.kernels;
  auto s = Session::create(*model, so);
  if (!s.ok()) return fail(s.status().to_string());
  Tensor x = Tensor::zeros(DType::kF32, xs);
  {
    std::vector<float> r = randn(static_cast<size_t>(x.numel()), 1.0f, 7);
    std::memcpy(x.data<float>(), r.data(), r.size() * sizeof(float));
  }
  std::vector<double> times;
  for (int rep = 0; rep <= o.reps; ++rep) {
    if (Status in = (*s)->set_input("x", x.view()); !in.ok()) return fail(in.to_string());
    auto t0 = std::chrono::steady_clock::now();
    Status st = (*s)->run();
    double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!st.ok()) return fail(st.to_string());
    if (rep > 0) times.push_back(sec);
    if (sec > 5.0 && rep > 0) break;  // slow: one timed run is enough
    if (rep == 0 && sec > 5.0) {      // the warm-up already shows the steady time (plan is cheap)
      times.push_back(sec);
      break;
    }
  }
  std::sort(times.begin(), times.end());
  m.ms = times[times.size() / 2] * 1e3;
  auto info = (*s)->plan_info();
  double flops = 0;
  for (const auto& step : info->steps) {
    flops += step.flops;
    if (!step.kernel.empty()) m.kernel = step.kernel;
  }
  m.gflops = flops / (m.ms * 1e-3) / 1e9;
  m.arena_mib = static_cast<double>(info->memory.arena_bytes + info->memory.persistent_bytes) / (1 << 20);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  m.rss_mib = static_cast<double>(ru.ru_maxrss) / 1024.0 - rss0;
  dprintf(fd, "OK %.3f %.2f %.2f %.2f %s\n", m.ms, m.gflops, m.arena_mib, m.rss_mib, m.kernel.c_str());
}

Measure measure(const std::string& v, int64_t n, bool causal, const Options& o) {
  int p[2];
  Measure m;
  if (pipe(p) != 0) {
    m.error = "pipe failed";
    return m;
  }
  std::fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    measure_child(v, n, causal, o, p[1]);
    close(p[1]);
    _exit(0);
  }
  close(p[1]);
  std::string line;
  char buf[512];
  ssize_t k;
  while ((k = read(p[0], buf, sizeof buf)) > 0) line.append(buf, static_cast<size_t>(k));
  close(p[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  std::istringstream is(line);
  std::string tag;
  is >> tag;
  if (tag == "OK") is >> m.ms >> m.gflops >> m.arena_mib >> m.rss_mib >> m.kernel;
  else m.error = line.empty() ? "child died (status " + std::to_string(status) + ")" : line;
  return m;
}

// Seconds of f(): the median of 5 runs (the parts tables).
template <class F>
double median_of_5(F&& f) {
  std::vector<double> t;
  for (int r = 0; r < 5; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[2];
}

// One row of a parts table: `variant what: ms GFLOP/s`.
void part_row(const char* variant, const char* what, double flops, double s) {
  std::printf("  %s %-*s: %8.2f ms  %6.1f GFLOP/s\n", variant, static_cast<int>(52 - std::strlen(variant)), what, s * 1e3, flops / s / 1e9);
}

// The matrix-shaped parts alone: the projections and the linear core of 8 heads, as the
// fused kernels (packed projections) and linear_attention_chunked / norm_attention_gemm
// (the same schedule with sgemm projections) run them.
void gemm_parts(const Options& o, int64_t n) {
  // What the attention nodes run: W packed once at plan time (PackedGemm = linear_onednn's
  // primitive). Measured first, in a forked child like the variants: a child forked after
  // this process has started OpenMP threads would hang in its first parallel region.
  Measure pm = measure("projection", n, false, o);
  omp_set_num_threads(o.threads);
  Floats x = randn_aligned(static_cast<size_t>(n * kDim), 1.0f, 1), w = randn_aligned(kDim * kDim, 0.05f, 2), b(kDim, 0.1f);
  if (pm.error.empty())
    std::printf("  projection packed [%ld x 512] x [512 x 512]ᵀ: %8.2f ms  %6.1f GFLOP/s (%s, as the fused kernels run it)\n",
                static_cast<long>(n), pm.ms, pm.gflops, pm.kernel.c_str());
  // The sgemm projections of linear_attention_chunked / norm_attention_gemm: per block of
  // 256 rows, each thread its head group's rows of W ([256 x 512]·[512 x 256]ᵀ, bias
  // included); per block, each thread its half of the rows through the output
  // projection ([128 x 512]·[512 x 512]ᵀ).
  {
    const int64_t rows = 256, hg = kHeads / o.threads, nq = hg * kHeadDim;
    Floats blocks(static_cast<size_t>(o.threads * rows * kDim));
    double tq = median_of_5([&] {
#pragma omp parallel num_threads(o.threads)
      {
        const int64_t tid = omp_get_thread_num();
        float* dst = blocks.data() + tid * rows * kDim;
        for (int64_t r0 = 0; r0 < n; r0 += rows)
          (void)attn::project(x.data() + r0 * kDim, std::min(rows, n - r0), kDim, kDim, w.data() + tid * nq * kDim,
                              b.data() + tid * nq, nq, dst, nq);
      }
    });
    std::printf("  projection sgemm per head group, [256 x 512] x [512 x %ld]ᵀ blocks: %8.2f ms  %6.1f GFLOP/s (the chunked kernels)\n",
                static_cast<long>(nq), tq * 1e3, 2.0 * n * kDim * kDim / tq / 1e9);
    double to = median_of_5([&] {
#pragma omp parallel num_threads(o.threads)
      {
        const int64_t tid = omp_get_thread_num(), part = rows / o.threads;
        float* dst = blocks.data() + tid * rows * kDim;
        for (int64_t r0 = 0; r0 < n; r0 += rows) {
          const int64_t p0 = std::min(n - r0, tid * part), p1 = std::min(n - r0, (tid + 1) * part);
          if (p1 > p0)
            (void)attn::project(x.data() + (r0 + p0) * kDim, p1 - p0, kDim, kDim, w.data(), b.data(), kDim, dst, kDim);
        }
      }
    });
    std::printf("  projection sgemm per block part, [%ld x 512] x [512 x 512]ᵀ: %8.2f ms  %6.1f GFLOP/s (the chunked kernels' output)\n",
                static_cast<long>(rows / o.threads), to * 1e3, 2.0 * n * kDim * kDim / to / 1e9);
  }
  for (bool causal : {false, true}) {
    attn::LinearCoreShape cs;
    cs.lq = cs.lk = n;
    cs.d = cs.m = kHeadDim;
    cs.causal = causal;
    cs.chunk = attn::kCausalChunk;  // as the fused and chunked kernels
    attn::LinearCore core(cs);
    // The core as the fused and chunked kernels run it: each thread
    // owns a group of heads; per block of 256 rows its q, k, v blocks [256, heads · 64]
    // have just been projected (in cache); outputs go to the block's [256, 512] O buffer.
    const int64_t rows = 256, hg = kHeads / o.threads, nq = hg * kHeadDim;
    const int64_t per_thread = 3 * rows * nq + rows * kDim + hg * core.state_floats() + core.scratch_floats();
    Floats blocks = randn_aligned(static_cast<size_t>(o.threads * per_thread), 0.5f, 7);
    for (float& e : blocks) e = std::fabs(e);
    double flops = 0;
    for (int64_t r0 = 0; r0 < n; r0 += rows) flops += kHeads * core.with_rows(std::min(rows, n - r0), std::min(rows, n - r0)).flops();
    double tf = median_of_5([&] {
#pragma omp parallel num_threads(o.threads)
      {
        float* qb = blocks.data() + omp_get_thread_num() * per_thread;
        float *kb = qb + rows * nq, *vb = kb + rows * nq, *ob = vb + rows * nq, *sts = ob + rows * kDim;
        float* cs = sts + hg * core.state_floats();
        std::fill(sts, sts + hg * core.state_floats(), 0.0f);
        for (int pass = causal ? 1 : 0; pass < 2; ++pass)  // non-causal: all keys (pass 0), then all queries
          for (int64_t r0 = 0; r0 < n; r0 += rows) {
            const int64_t nb = std::min(rows, n - r0);
            const attn::LinearCore blk = core.with_rows(nb, nb);
            for (int64_t j = 0; j < hg; ++j) {
              float* st_j = sts + j * core.state_floats();
              if (causal) (void)blk.run(qb + j * kHeadDim, nq, kb + j * kHeadDim, nq, vb + j * kHeadDim, nq, ob + j * kHeadDim, kDim, st_j, cs);
              else if (pass == 0) (void)core.accumulate(kb + j * kHeadDim, nq, vb + j * kHeadDim, nq, nb, st_j);
              else (void)core.read(qb + j * kHeadDim, nq, nb, ob + j * kHeadDim, kDim, st_j, cs);
            }
          }
      }
    });
    std::printf("  linear core, 8 heads x 64, %-10s        : %8.2f ms  %6.1f GFLOP/s (256-row blocks in cache)\n",
                causal ? "causal" : "non-causal", tf * 1e3, flops / tf / 1e9);
  }
}

// LiteMLA's matrix-shaped parts at n tokens (the litemla variant: 512 channels, dim 64,
// scale 5, so 8 heads of 2 attention groups), each with the library calls
// lite_mla_banded makes, on bands of 512 tokens: the qkv 1×1 (sgemm, the whole map, rows
// lite_mla_map_stride apart); per band the grouped 1×1 aggregation (narrow_gemm, 24
// groups of 64) from and into [64, 512] buffers in L2; v relu(k)ᵀ and Σ relu(k) (per 64
// tokens: relu(k)ᵀ by register transposes, column sums, small_sgemm; flops counted with
// the row of ones, as the node counts them) with k and v in those buffers — where the
// node finds them, its own groups' rows too, just read by the depthwise copies — and,
// as a node without scales reads them, from the qkv map in memory, each block's product
// prefetching the next block's rows (8 groups); the read-out (narrow_ratio: ReLU and
// division included), q of the own groups from the map, of the aggregated groups from a
// buffer, out written past the cache; the output 1×1 (sgemm, 1024 -> 512, beta 1).
void litemla_parts(const Options& o, int64_t n) {
  omp_set_num_threads(o.threads);
  const int64_t t3 = 3 * kDim, d = kHeadDim, groups = 2 * kHeads, T = 512, blk_n = 64, bands = (n + T - 1) / T;
  const int64_t ldm = lite_mla_map_stride(n);
  Floats x = randn_aligned(static_cast<size_t>(kDim * n), 1.0f, 1), wq = randn_aligned(static_cast<size_t>(t3 * kDim), 0.05f, 2);
  Floats wp = randn_aligned(static_cast<size_t>(kDim * groups * d), 0.03f, 3), pw = randn_aligned(static_cast<size_t>(t3 * d), 0.1f, 4);
  Floats qkv(static_cast<size_t>(t3 * ldm)), out(static_cast<size_t>(groups * d * n)), y(static_cast<size_t>(kDim * n));
  // Per thread: three [d, T] band buffers, a relu(k)ᵀ block, vk and ksum.
  const int64_t per_thread = 3 * d * T + blk_n * d + d * d + d;
  Floats thr = randn_aligned(static_cast<size_t>(o.threads * per_thread), 1.0f, 5);
  auto row = [](const char* what, double flops, double s) { part_row("litemla", what, flops, s); };
  auto buffers = [&](int tid) { return thr.data() + tid * per_thread; };
  row("qkv 1x1 [1536 x 512] x [512 x n] (sgemm)", 2.0 * t3 * kDim * n,
      median_of_5([&] { (void)sgemm(false, false, t3, n, kDim, 1.0f, wq.data(), kDim, x.data(), n, 0.0f, qkv.data(), ldm); }));
  row("aggregation 24 x [64 x 64] x [64 x 512] per band (narrow)", 2.0 * t3 * d * n, median_of_5([&] {
#pragma omp parallel for num_threads(o.threads) schedule(dynamic)
        for (int64_t h = 0; h < kHeads; ++h) {
          float* dw = buffers(omp_get_thread_num());
          for (int64_t i = 0; i < bands; ++i)
            for (int64_t r = 3 * h; r < 3 * h + 3; ++r)
              (void)narrow_gemm(d, std::min(T, n - i * T), d, pw.data() + r * d * d, d, dw, T, dw + d * T, T, false);
        }
      }));
  // vk += v relu(k)ᵀ, ksum += Σ relu(k) over one band of k, v rows (strides ldk, ldv),
  // prefetching up to token prefetch_to of the same rows.
  auto products = [&](const float* k, int64_t ldk, const float* v, int64_t ldv, int64_t nb_all, int64_t prefetch_to, float* b) {
    float *blk = b + 3 * d * T, *vk = blk + blk_n * d, *ksum = vk + d * d;
    for (int64_t j0 = 0; j0 < nb_all; j0 += blk_n) {
      const int64_t nb = std::min(blk_n, nb_all - j0), j1 = j0 + blk_n;
      transpose_panel(k + j0, ldk, d, nb, blk, d, true);
      attn::add_column_sums(blk, d, nb, d, ksum);
      const int64_t ahead = std::clamp<int64_t>(prefetch_to - j1, 0, blk_n);
      const PrefetchRows next[2] = {{k + j1, ldk, d, ahead}, {v + j1, ldv, d, ahead}};
      (void)small_sgemm(false, false, d, d, nb, 1.0f, v + j0, ldv, blk, d, 1.0f, vk, d, nullptr, next, ahead > 0 ? 2 : 0);
    }
  };
  row("vk, ksum: 16 groups, k, v in band buffers (L2)", groups * 2.0 * n * d * (d + 1), median_of_5([&] {
#pragma omp parallel for num_threads(o.threads) schedule(dynamic)
        for (int64_t g = 0; g < groups; ++g) {
          float* b = buffers(omp_get_thread_num());
          for (int64_t i = 0; i < bands; ++i) products(b, T, b + d * T, T, std::min(T, n - i * T), 0, b);
        }
      }));
  row("vk, ksum: 8 groups, k, v from the map in memory", kHeads * 2.0 * n * d * (d + 1), median_of_5([&] {
#pragma omp parallel for num_threads(o.threads) schedule(dynamic)
        for (int64_t h = 0; h < kHeads; ++h) {
          float* b = buffers(omp_get_thread_num());
          for (int64_t i = 0; i < bands; ++i) {
            const int64_t t0 = i * T, nb = std::min(T, n - t0);
            products(qkv.data() + (h * 3 + 1) * d * ldm + t0, ldm, qkv.data() + (h * 3 + 2) * d * ldm + t0, ldm, nb,
                     nb + std::min(T, std::max<int64_t>(n - t0 - nb, 0)), b);
          }
        }
      }));
  row("read-out vk relu(q) / den, 16 groups per band (narrow_ratio)", groups * 2.0 * n * d * (d + 1), median_of_5([&] {
#pragma omp parallel for num_threads(o.threads) schedule(dynamic)
        for (int64_t g = 0; g < groups; ++g) {
          float* b = buffers(omp_get_thread_num());
          const float* vk = b + 3 * d * T + blk_n * d;
          const int64_t h = g % kHeads;
          for (int64_t i = 0; i < bands; ++i) {
            const int64_t t0 = i * T, nb = std::min(T, n - t0);
            const bool own = g < kHeads;  // q from the map; else from a band buffer
            narrow_ratio(d, nb, d, vk, d, vk + d * d, 1e-15f, own ? qkv.data() + h * 3 * d * ldm + t0 : b, own ? ldm : T,
                         out.data() + g * d * n + t0, n, true);
          }
        }
      }));
  row("projection 1x1 [512 x 1024] x [1024 x n] (sgemm)", 2.0 * kDim * groups * d * n,
      median_of_5([&] { (void)sgemm(false, false, kDim, n, groups * d, 1.0f, wp.data(), groups * d, out.data(), n, 1.0f, y.data(), n); }));
}

// PerformerAttention's matrix-shaped parts at n tokens (266 features, 8 heads × 64), with
// the calls performer_chunked makes per (head, block of 256 rows): the feature GEMM
// dd = x Wᵀ [256 × 64]·[64 × 266]ᵀ (sgemm), then the core on the features: non-causal
// accumulate + read (small_sgemm), causal the chunked run() (attn::kCausalChunk). Each thread
// works on its own heads, as in the node; inputs are fixed blocks (no exp, no max).
void performer_parts(const Options& o, int64_t n) {
  omp_set_num_threads(o.threads);
  const int64_t F = 266, rows = 256, ldq = F;
  Floats x = randn_aligned(static_cast<size_t>(n * kDim), 1.0f, 1), w = randn_aligned(static_cast<size_t>(F * kHeadDim), 1.0f, 2);
  const int64_t per_thread_feats = rows * (ldq + F);  // φ(Q) [rows, ldq], φ(K) [rows, F]
  Floats feats = randn_aligned(static_cast<size_t>(o.threads * per_thread_feats), 0.5f, 3);
  for (float& e : feats) e = std::fabs(e);
  Floats y(static_cast<size_t>(n * kDim));
  auto row = [](const char* what, double flops, double s) { part_row("performer", what, flops, s); };
  // q and k of every head: 2 · 8 · n/256 GEMMs
  row("features [256 x 64] x [64 x 266]^T (sgemm)", 2.0 * 2 * kHeads * n * kHeadDim * F, median_of_5([&] {
#pragma omp parallel for num_threads(o.threads) schedule(dynamic)
        for (int64_t h = 0; h < kHeads; ++h) {
          float* out = feats.data() + omp_get_thread_num() * per_thread_feats;
          for (int pass = 0; pass < 2; ++pass)
            for (int64_t r0 = 0; r0 < n; r0 += rows)
              (void)sgemm(false, true, std::min(rows, n - r0), F, kHeadDim, 0.35f, x.data() + r0 * kDim + h * kHeadDim, kDim, w.data(),
                          kHeadDim, 0.0f, out + pass * rows * F, F);
        }
      }));
  for (bool causal : {false, true}) {
    attn::LinearCoreShape cs;
    cs.lq = cs.lk = rows;
    cs.d = F;
    cs.m = kHeadDim;
    cs.causal = causal;
    cs.chunk = attn::kCausalChunk;  // as performer_chunked
    cs.eps = 1e-6f;
    attn::LinearCore core(cs);
    const int64_t per_thread = KernelContext::thread_slice_floats(core.state_floats() + core.scratch_floats());
    Floats st(static_cast<size_t>(o.threads * per_thread));
    double flops = 0;
    for (int64_t r0 = 0; r0 < n; r0 += rows) flops += kHeads * core.with_rows(std::min(rows, n - r0), std::min(rows, n - r0)).flops();
    row(causal ? "core causal (chunked), d 266, m 64" : "core accumulate + read, d 266, m 64", flops, median_of_5([&] {
#pragma omp parallel for num_threads(o.threads) schedule(dynamic)
          for (int64_t h = 0; h < kHeads; ++h) {
            float* s = st.data() + omp_get_thread_num() * per_thread;
            float* qf = feats.data() + omp_get_thread_num() * per_thread_feats;
            const float* kf = qf + rows * ldq;
            std::fill(s, s + core.state_floats(), 0.0f);
            const float* v = x.data() + h * kHeadDim;
            float* out = y.data() + h * kHeadDim;
            if (causal) {
              for (int64_t r0 = 0; r0 < n; r0 += rows) {
                const int64_t nb = std::min(rows, n - r0);
                (void)core.with_rows(nb, nb).run(qf, ldq, kf, F, v + r0 * kDim, kDim, out + r0 * kDim, kDim, s, s + core.state_floats());
              }
            } else {
              for (int64_t r0 = 0; r0 < n; r0 += rows)
                (void)core.accumulate(kf, F, v + r0 * kDim, kDim, std::min(rows, n - r0), s);
              for (int64_t r0 = 0; r0 < n; r0 += rows)
                (void)core.read(qf, F, std::min(rows, n - r0), out + r0 * kDim, kDim, s, s + core.state_floats());
            }
          }
        }));
  }
}

std::vector<int64_t> parse_ints(const std::string& s) {
  std::vector<int64_t> v;
  std::stringstream ss(s);
  std::string t;
  while (std::getline(ss, t, ',')) v.push_back(std::stoll(t));
  return v;
}
std::vector<std::string> parse_strs(const std::string& s) {
  std::vector<std::string> v;
  std::stringstream ss(s);
  std::string t;
  while (std::getline(ss, t, ',')) v.push_back(t);
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--n") o.n = parse_ints(next());
    else if (a == "--variants") o.variants = parse_strs(next());
    else if (a == "--causal") o.causal = true;
    else if (a == "--reps") o.reps = std::max(1, std::stoi(next()));
    else if (a == "--threads") o.threads = std::max(1, std::stoi(next()));
    else if (a == "--no-torch") o.torch = false;
    else if (a == "--torch-budget") o.torch_budget = std::stod(next());
    else if (a == "--parts-n") o.parts_n = std::stoll(next());
    else if (a == "--kernels") o.kernels = parse_strs(next());
    else {
      std::printf("usage: %s [--n 1024,4096,...] [--variants softmax,linear,performer,transnormer,flash,litemla] [--causal] "
                  "[--reps 3] [--threads 2] [--no-torch] [--torch-budget seconds] [--parts-n 16384] [--kernels a,b,...]\n", argv[0]);
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  std::printf("attention_bench: batch 1, 8 heads x 64 (dim 512), %d threads, vector path %s, %s\n", o.threads,
              attn::vector_isa(), o.causal ? "causal" : "non-causal");

  // PyTorch first (its own processes), so that the engine runs are not disturbed.
  std::map<std::pair<std::string, int64_t>, std::string> torch_ms, torch_mib;
  if (o.torch) {
    std::string ns, vs;
    for (int64_t n : o.n) ns += (ns.empty() ? "" : ",") + std::to_string(n);
    for (const auto& v : o.variants) vs += (vs.empty() ? "" : ",") + v;
    std::string cmd = std::string(ATROUS_PYTHON) + " " + ATROUS_BENCH_DIR + "/attention_bench.py --n " + ns + " --variants " + vs +
                      " --threads " + std::to_string(o.threads) + " --budget " + std::to_string(o.torch_budget) +
                      (o.causal ? " --causal" : "");
    std::fflush(stdout);
    if (FILE* p = popen(cmd.c_str(), "r")) {
      char line[512];
      while (std::fgets(line, sizeof line, p)) {
        char v[64], ms[64], mib[64];
        long long n;
        if (std::sscanf(line, "TORCH %63s %lld %63s %63s", v, &n, ms, mib) == 4) {
          torch_ms[{v, n}] = ms;
          torch_mib[{v, n}] = mib;
        }
      }
      pclose(p);
    }
  }

  std::printf("\n%-12s %7s | %10s %8s %9s %9s | %10s %9s | %s\n", "variant", "n", "engine ms", "GFLOP/s", "peak MiB", "arena MiB",
              "torch ms", "peak MiB", "kernel");
  std::map<std::string, std::map<int64_t, Measure>> all;
  for (const auto& v : o.variants) {
    for (int64_t n : o.n) {
      Measure m = measure(v, n, o.causal, o);
      all[v][n] = m;
      auto tm = torch_ms.count({v, n}) ? torch_ms[{v, n}] : std::string("-");
      auto tb = torch_mib.count({v, n}) ? torch_mib[{v, n}] : std::string("-");
      if (!m.error.empty()) std::printf("%-12s %7ld | %s\n", v.c_str(), static_cast<long>(n), m.error.c_str());
      else
        std::printf("%-12s %7ld | %10.1f %8.1f %9.1f %9.1f | %10s %9s | %s\n", v.c_str(), static_cast<long>(n), m.ms, m.gflops,
                    m.rss_mib, m.arena_mib, tm.c_str(), tb.c_str(), m.kernel.c_str());
      std::fflush(stdout);
    }
  }
  // Growth from 4k to 64k (linear: ~16).
  if (std::count(o.n.begin(), o.n.end(), 4096) && std::count(o.n.begin(), o.n.end(), 65536)) {
    std::printf("\ngrowth 4k -> 64k (linear scaling = 16):\n");
    for (const auto& v : o.variants) {
      const Measure &a = all[v][4096], &b = all[v][65536];
      if (a.error.empty() && b.error.empty() && a.ms > 0)
        std::printf("  %-12s time x%.1f, peak memory x%.1f, arena x%.1f\n", v.c_str(), b.ms / a.ms, b.rss_mib / std::max(a.rss_mib, 1e-3),
                    b.arena_mib / std::max(a.arena_mib, 1e-3));
    }
  }
  if (o.parts_n > 0) {
    std::printf("\nmatrix-shaped parts alone (%d threads; compare with build/bin/fma_peak):\n", o.threads);
    gemm_parts(o, o.parts_n);
    litemla_parts(o, o.parts_n);
    performer_parts(o, o.parts_n);
  }
  return 0;
}
