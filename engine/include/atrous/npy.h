// .npy files (NumPy's format, version 1.0-3.0): how raw tensors go in and out
// of the CLI and the tests. Little-endian f32/f16/f64/i32/i64/u8/bool; f64 is
// read as f32 and bool as u8. C order only (Fortran order is refused). The
// parser treats the file as untrusted: header length, dtype, shape and data
// size are all checked.
//
//   ATROUS_ASSIGN_OR_RETURN(atrous::Tensor t, atrous::load_npy("x.npy"));
//   ATROUS_RETURN_IF_ERROR(atrous::save_npy("y.npy", t.view()));
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "atrous/status.h"
#include "atrous/tensor.h"

namespace atrous {

Result<Tensor> load_npy(const std::string& path);

// Reading in two steps, to fill memory someone else owns (e.g. a Session's input
// slot, Session::input_buffer) without a tensor-sized copy in between: the file's
// dtype (as loaded) and shape, then its data into `dst`, whose dtype and shape must
// match. The header is checked again by read_npy_into.
struct NpyInfo {
  DType dtype = DType::kF32;
  Shape shape;
};
Result<NpyInfo> read_npy_info(const std::string& path);
Status read_npy_into(const std::string& path, const TensorView& dst);
Result<Tensor> parse_npy(const uint8_t* data, size_t size, const std::string& label = "<memory>");
Status save_npy(const std::string& path, const TensorView& t);
std::vector<uint8_t> encode_npy(const TensorView& t);

}  // namespace atrous
