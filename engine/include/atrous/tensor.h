// Tensors at the API boundary: element types, shapes, borrowed views and an
// owning, 64-byte-aligned Tensor.
//
// A TensorView borrows memory: it never owns or frees it, and it is valid only
// as long as whoever handed it out says (for Session outputs: until the next
// run or reshape of that Session). A Tensor owns its buffer.
//
//   atrous::Tensor t = atrous::Tensor::zeros(atrous::DType::kF32, {1, 3, 224, 224});
//   float* p = t.data<float>();
//   session->set_input("image", t.view());
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "atrous/status.h"

namespace atrous {

enum class DType : uint8_t { kF32 = 0, kF16 = 1, kBF16 = 2, kI32 = 3, kI64 = 4, kU8 = 5 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);  // "f32", "f16", "bf16", "i32", "i64", "u8"
Result<DType> parse_dtype(const std::string& name);

using Shape = std::vector<int64_t>;

// "[1, 3, 224, 224]"
std::string shape_string(const Shape& shape);
// Product of dims, or an error when a dim is negative or the product overflows int64.
Result<int64_t> checked_numel(const Shape& shape);
// numel * dtype_size with overflow checks.
Result<uint64_t> checked_nbytes(const Shape& shape, DType dtype);

struct TensorView {
  DType dtype = DType::kF32;
  Shape shape;          // dims, outermost first
  void* data = nullptr; // numel * dtype_size bytes, dense, row-major

  int64_t numel() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  template <class T> T* as() const { return static_cast<T*>(data); }
};

// An owning dense tensor with a 64-byte-aligned buffer.
class Tensor {
 public:
  Tensor() = default;
  static Tensor zeros(DType dtype, Shape shape);
  // Copies the view's bytes.
  static Tensor copy_of(const TensorView& v);

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t numel() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  void* raw() const { return buf_.get(); }
  template <class T> T* data() const { return static_cast<T*>(raw()); }
  TensorView view() const { return TensorView{dtype_, shape_, raw()}; }

 private:
  struct Free { void operator()(void* p) const; };
  DType dtype_ = DType::kF32;
  Shape shape_;
  std::shared_ptr<void> buf_;
};

// f16 / bf16 <-> f32 conversions (round to nearest even).
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);

}  // namespace atrous
