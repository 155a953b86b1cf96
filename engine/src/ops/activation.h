// Scalar activation functions shared by the reference kernels (Unary, and the
// fused activations of Conv2d, ConvTranspose2d, Linear and Binary), written as
// PyTorch defines them.
#pragma once

#include <algorithm>
#include <cmath>

#include "atrous/atrous_generated.h"

namespace atrous {

// alpha: Elu alpha / LeakyRelu slope; beta, threshold: Softplus (PyTorch defaults 1, 20).
inline float activate(float x, fb::ActKind kind, float alpha = 1.0f, float beta = 1.0f, float threshold = 20.0f) {
  switch (kind) {
    case fb::ActKind::None:
    case fb::ActKind::Identity: return x;
    case fb::ActKind::Relu: return x > 0.f ? x : 0.f;
    case fb::ActKind::LeakyRelu: return x > 0.f ? x : alpha * x;
    case fb::ActKind::Relu6: return std::min(std::max(x, 0.f), 6.f);
    case fb::ActKind::Gelu: return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f));
    case fb::ActKind::GeluTanh: {
      const float c = 0.79788456080286536f;  // sqrt(2/pi)
      return 0.5f * x * (1.0f + std::tanh(c * (x + 0.044715f * x * x * x)));
    }
    case fb::ActKind::Silu: return x / (1.0f + std::exp(-x));
    case fb::ActKind::Sigmoid: return 1.0f / (1.0f + std::exp(-x));
    case fb::ActKind::Tanh: return std::tanh(x);
    case fb::ActKind::Elu: return x > 0.f ? x : alpha * std::expm1(x);
    case fb::ActKind::Softplus: return beta * x > threshold ? x : std::log1p(std::exp(beta * x)) / beta;
    case fb::ActKind::HardSwish: return x * std::min(std::max(x + 3.f, 0.f), 6.f) / 6.f;
    case fb::ActKind::Exp: return std::exp(x);
    case fb::ActKind::Neg: return -x;
    case fb::ActKind::Sqrt: return std::sqrt(x);
    case fb::ActKind::Rsqrt: return 1.0f / std::sqrt(x);
    case fb::ActKind::Abs: return std::fabs(x);
    case fb::ActKind::Square: return x * x;
    case fb::ActKind::ReluSquare: { float r = x > 0.f ? x : 0.f; return r * r; }
    case fb::ActKind::Log: return std::log(x);
  }
  return x;
}

inline bool valid_activation(fb::ActKind k) { return k >= fb::ActKind::MIN && k <= fb::ActKind::MAX; }

}  // namespace atrous
