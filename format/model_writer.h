// Writes model files: the fixed header, the FlatBuffer and the weight section.
//
// Weights are registered before writing and produced at write time by a fill
// callback, one tensor at a time, so that converting a large checkpoint needs
// memory for the largest tensor, not for the whole model. write() goes through
// a temporary file renamed into place: a failure leaves no partial output.
//
//   ModelWriter w;
//   uint64_t off = w.add_data(bytes, [&](void* dst) { return read_tensor(dst); });
//   value.data_offset = off; value.data_length = bytes;
//   ATROUS_RETURN_IF_ERROR(w.write(model, "out.atrous"));
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "atrous/status.h"

namespace atrous {
namespace fb { struct ModelT; }

class ModelWriter {
 public:
  using Fill = std::function<Status(void* dst)>;

  // Reserves `length` bytes in the data section; returns the offset from the data
  // section start (a multiple of 64). `fill` writes exactly `length` bytes.
  uint64_t add_data(uint64_t length, Fill fill);
  // Copies the bytes now (small tensors, tests).
  uint64_t add_data_copy(const void* src, uint64_t length);
  uint64_t data_size() const { return data_size_; }

  Status write(const fb::ModelT& model, const std::string& path) const;
  Result<std::vector<uint8_t>> write_to_memory(const fb::ModelT& model) const;

 private:
  struct Chunk {
    uint64_t offset;
    uint64_t length;
    Fill fill;
  };
  template <class Sink>
  Status emit(const fb::ModelT& model, Sink& sink) const;

  std::vector<Chunk> chunks_;
  uint64_t data_size_ = 0;
};

}  // namespace atrous
