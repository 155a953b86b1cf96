// Loads a model, runs one entry point on .npy inputs, prints each output's
// shape and a checksum. Shows the whole public API an application needs:
// Model (shared, immutable), Session (one per thread), Status everywhere.
//
//   embed_example model.atrous input.npy [more inputs in entry-point order]
#include <atrous/atrous.h>
#include <atrous/npy.h>

#include <cstdio>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL INPUT.npy...\n", argv[0]);
    return 2;
  }
  auto model = atrous::Model::open(argv[1]);
  if (!model.ok()) {
    std::fprintf(stderr, "error: %s\n", model.status().to_string().c_str());
    return 1;
  }
  atrous::SessionOptions options;
  options.threads = 1;
  auto session = atrous::Session::create(*model, options);
  if (!session.ok()) {
    std::fprintf(stderr, "error: %s\n", session.status().to_string().c_str());
    return 1;
  }
  const atrous::EntryPointInfo& entry = (*session)->entry();
  std::vector<atrous::Tensor> inputs;
  for (int i = 2; i < argc && static_cast<size_t>(i - 2) < entry.inputs.size(); ++i) {
    auto t = atrous::load_npy(argv[i]);
    if (!t.ok()) {
      std::fprintf(stderr, "error: %s\n", t.status().to_string().c_str());
      return 1;
    }
    inputs.push_back(std::move(t).value());
    atrous::Status st = (*session)->set_input(entry.inputs[static_cast<size_t>(i - 2)].name, inputs.back().view());
    if (!st.ok()) {
      std::fprintf(stderr, "error: %s\n", st.to_string().c_str());
      return 1;
    }
  }
  if (atrous::Status st = (*session)->run(); !st.ok()) {
    std::fprintf(stderr, "error: %s\n", st.to_string().c_str());
    return 1;
  }
  for (const auto& out : entry.outputs) {
    atrous::TensorView v = *(*session)->output(out.name);
    double sum = 0;
    if (v.dtype == atrous::DType::kF32)
      for (int64_t i = 0; i < v.numel(); ++i) sum += v.as<float>()[i];
    std::printf("%s %s %s sum=%.6f\n", out.name.c_str(), atrous::dtype_name(v.dtype), atrous::shape_string(v.shape).c_str(), sum);
  }
  return 0;
}
