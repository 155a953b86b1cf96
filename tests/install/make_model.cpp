// Writes a small model and an input for the install test: y = relu(conv(x)) + 1.
#include <cstdio>

#include "atrous/npy.h"
#include "builder/graph_builder.h"

int main(int argc, char** argv) {
  using namespace atrous;
  if (argc != 3) return 2;
  ModelBuilder mb("install-test", "tests");
  GraphBuilder& g = mb.graph("main");
  int x = g.input("x", DType::kF32, {1, 2, -1, -1});
  std::vector<float> w(3 * 2 * 3 * 3);
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(i % 7) * 0.1f - 0.3f;
  fb::Conv2dT c;
  c.pad_top = c.pad_left = c.pad_bottom = c.pad_right = 1;
  c.activation = fb::ActKind::Relu;
  int y = g.node("conv", c, {x, g.constant_f32("conv.weight", {3, 2, 3, 3}, w), -1});
  fb::BinaryT add;
  add.kind = fb::BinaryKind::Add;
  int z = g.node("plus_one", add, {y, g.constant_f32("one", {1}, {1.0f})});
  g.output(z, "y");
  Status st = mb.save(argv[1]);
  if (!st.ok()) {
    std::fprintf(stderr, "%s\n", st.to_string().c_str());
    return 1;
  }
  Tensor in = Tensor::zeros(DType::kF32, {1, 2, 5, 4});
  for (int64_t i = 0; i < in.numel(); ++i) in.data<float>()[i] = static_cast<float>(i) * 0.05f;
  return save_npy(argv[2], in.view()).ok() ? 0 : 1;
}
