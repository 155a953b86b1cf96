// Streaming equals full: a sequence fed in pieces, each piece given the states the
// previous one output, gives the outputs (and final states) of the whole sequence.
// MambaScan with every kernel; S4D across its modes (pieces through the recurrence,
// the whole sequence through the FFT or direct convolution).
#include <cstring>

#include "ops/ssm_kernels.h"
#include "test_util.h"

namespace atrous::test {
namespace {

std::shared_ptr<const Model> save_and_load(ModelBuilder& mb) {
  auto bytes = mb.to_bytes();
  INFO(bytes.status().to_string());
  REQUIRE(bytes.ok());
  auto model = Model::from_memory(bytes->data(), bytes->size());
  INFO(model.status().to_string());
  REQUIRE(model.ok());
  return *model;
}

// Copies [.., t0:t0+len, ..] of src (time on `axis`) into dst at the same place.
void put_time_slice(const TensorView& piece, Tensor& dst, int axis, int64_t t0) {
  const Shape& s = dst.shape();
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < axis; ++i) outer *= s[static_cast<size_t>(i)];
  for (size_t i = static_cast<size_t>(axis) + 1; i < s.size(); ++i) inner *= s[i];
  const int64_t len = piece.shape[static_cast<size_t>(axis)], L = s[static_cast<size_t>(axis)];
  for (int64_t o = 0; o < outer; ++o)
    std::memcpy(dst.data<float>() + (o * L + t0) * inner, piece.as<float>() + o * len * inner,
                static_cast<size_t>(len * inner) * sizeof(float));
}

Tensor time_slice(const Tensor& src, int axis, int64_t t0, int64_t len) {
  Shape s = src.shape();
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < axis; ++i) outer *= s[static_cast<size_t>(i)];
  for (size_t i = static_cast<size_t>(axis) + 1; i < s.size(); ++i) inner *= s[i];
  const int64_t L = s[static_cast<size_t>(axis)];
  s[static_cast<size_t>(axis)] = len;
  Tensor t = Tensor::zeros(DType::kF32, s);
  for (int64_t o = 0; o < outer; ++o)
    std::memcpy(t.data<float>() + o * len * inner, src.data<float>() + (o * L + t0) * inner,
                static_cast<size_t>(len * inner) * sizeof(float));
  return t;
}

}  // namespace

TEST_CASE("MambaScan fed in pieces equals the whole sequence, every kernel", "[ssm][streaming]") {
  const RefCase c = load_case(data_dir("ATROUS_SSM_CASES"), "mamba_states_l200");
  const Tensor& xz = c.tensors.at("xz");  // [1, 200, 2Di]
  const Shape& cs = c.tensors.at("conv_state").shape();
  const Shape& ss = c.tensors.at("ssm_state").shape();
  ModelBuilder mb("mamba_stream", "tests");
  GraphBuilder& g = mb.graph("main");
  std::vector<int> in = {g.input("xz", DType::kF32, {1, -1, xz.shape()[2]})};
  for (const char* k : {"w.conv_w", "w.conv_b", "w.x_proj", "w.dt_proj", "w.dt_b", "w.A_log", "w.D"})
    in.push_back(g.constant(k, c.tensors.at(k)));
  in.push_back(g.input("conv_state", DType::kF32, cs));
  in.push_back(g.input("ssm_state", DType::kF32, ss));
  auto outs = g.node_n("scan", fb::MambaScanT{}, in, 3);
  g.output(outs[0], "y");
  g.output(outs[1], "conv_state_out");
  g.output(outs[2], "ssm_state_out");
  auto model = save_and_load(mb);

  const int64_t L = xz.shape()[1];
  for (const char* kernel : {"mamba_scan_avx512", "mamba_scan_avx2", "mamba_scan_ref"}) {
    SessionOptions opts;
    opts.threads = 2;
    if (std::string(kernel) == "mamba_scan_ref") opts.reference_only = true;
    else if (std::string(kernel) == "mamba_scan_avx512" && !ssm::ssm_isa_avx512()) continue;
    else opts.allowed_kernels = {kernel};
    INFO("kernel " << kernel);
    auto s = Session::create(model, opts);
    REQUIRE(s.ok());
    Tensor y = Tensor::zeros(DType::kF32, c.tensors.at("y").shape());
    Tensor conv_state = Tensor::copy_of(c.tensors.at("conv_state").view());
    Tensor ssm_state = Tensor::copy_of(c.tensors.at("ssm_state").view());
    int64_t t0 = 0;
    for (int64_t len : {1, 1, 2, 60, 64, 72}) {
      Tensor piece = time_slice(xz, 1, t0, len);
      REQUIRE((*s)->set_input("xz", piece.view()).ok());
      REQUIRE((*s)->set_input("conv_state", conv_state.view()).ok());
      REQUIRE((*s)->set_input("ssm_state", ssm_state.view()).ok());
      REQUIRE((*s)->run().to_string() == "ok");
      put_time_slice(*(*s)->output("y"), y, 1, t0);
      conv_state = Tensor::copy_of(*(*s)->output("conv_state_out"));
      ssm_state = Tensor::copy_of(*(*s)->output("ssm_state_out"));
      t0 += len;
    }
    REQUIRE(t0 == L);
    check_close(y.view(), c.tensors.at("y").view(), 1e-4, "y fed in 6 pieces");
    check_close(conv_state.view(), c.tensors.at("conv_state_out").view(), 1e-6, "final conv state");
    check_close(ssm_state.view(), c.tensors.at("ssm_state_out").view(), 1e-4, "final ssm state");
  }
}

TEST_CASE("S4D recurrence in pieces equals the FFT and direct convolution of the whole", "[ssm][streaming]") {
  for (const char* case_name : {"s4d_l257", "s4d_real_l257"}) {
    const RefCase c = load_case(data_dir("ATROUS_SSM_CASES"), case_name);
    INFO("case " << case_name);
    const Tensor& u = c.tensors.at("u");  // [1, H, L]
    const Shape& cshape = c.tensors.at("p.C").shape();
    const bool complex = cshape.size() == 3;
    const int64_t H = u.shape()[1], L = u.shape()[2];
    Shape state_shape{1, H, cshape[1]};
    if (complex) state_shape.push_back(2);

    ModelBuilder mb("s4d_stream", "tests");
    for (int stateful = 0; stateful < 2; ++stateful) {
      GraphBuilder& g = mb.graph(stateful ? "step" : "main");
      std::vector<int> in = {g.input("u", DType::kF32, {1, H, -1})};
      for (const char* k : {"p.log_dt", "p.C", "p.log_A_real", "p.A_imag", "p.D", "p.out_w", "p.out_b"})
        in.push_back(c.tensors.count(k) ? g.constant(k, c.tensors.at(k)) : -1);
      if (stateful) in.push_back(g.input("state", DType::kF32, state_shape));
      auto outs = g.node_n("s4d", fb::S4DT{}, in, stateful ? 2 : 1);
      g.output(outs[0], "y");
      if (stateful) g.output(outs[1], "state_out");
    }
    auto model = save_and_load(mb);

    for (const char* whole_kernel : {"s4d_fft_avx512", "s4d_fft_avx2", "s4d_direct_avx512", "s4d_direct_avx2"}) {
      if (std::string(whole_kernel).find("avx512") != std::string::npos && !ssm::ssm_isa_avx512()) continue;
      INFO("whole sequence with " << whole_kernel);
      SessionOptions opts;
      opts.threads = 2;
      opts.entry = "main";
      opts.allowed_kernels = {whole_kernel};
      RunOutput full = run_model(model, {{"u", u.view()}}, opts);
      REQUIRE(full.status.to_string() == "ok");
      CHECK(full.plan.steps.back().kernel == whole_kernel);
      check_close(full.outputs[0].view(), c.tensors.at("y").view(), 1e-4, std::string("whole sequence with ") + whole_kernel);

      SessionOptions step_opts;
      step_opts.threads = 2;
      step_opts.entry = "step";
      auto s = Session::create(model, step_opts);
      REQUIRE(s.ok());
      Tensor y = Tensor::zeros(DType::kF32, u.shape());
      Tensor state = Tensor::zeros(DType::kF32, state_shape);
      int64_t t0 = 0;
      for (int64_t len : {1, 100, 1, 155}) {
        Tensor piece = time_slice(u, 2, t0, len);
        REQUIRE((*s)->set_input("u", piece.view()).ok());
        REQUIRE((*s)->set_input("state", state.view()).ok());
        REQUIRE((*s)->run().to_string() == "ok");
        CHECK((*(*s)->plan_info()).steps.back().kernel == "s4d_ref");
        put_time_slice(*(*s)->output("y"), y, 2, t0);
        state = Tensor::copy_of(*(*s)->output("state_out"));
        t0 += len;
      }
      REQUIRE(t0 == L);
      check_close(y.view(), full.outputs[0].view(), 1e-4, "recurrence in 4 pieces vs the whole convolution");
    }
  }
}

}  // namespace atrous::test
