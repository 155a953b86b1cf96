// Private to tools/convert: what the format readers (torch_zip.cpp,
// safetensors.cpp) share with weights.cpp. Not part of the converter's
// interface; include weights.h instead.
//
// A ByteSource is random access to one file or buffer; the readers own theirs
// for as long as they live. The conversion helpers implement read()'s type
// rules once so that both formats convert identically.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "convert/weights.h"

namespace atrous::convert {

class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual uint64_t size() const = 0;
  // Reads exactly n bytes at offset, or fails (a short read is an error).
  virtual Status read_at(uint64_t offset, void* dst, size_t n) const = 0;
  // The whole content when it is already in memory, else null.
  virtual const uint8_t* memory() const { return nullptr; }
  const std::string& name() const { return name_; }

 protected:
  explicit ByteSource(std::string name) : name_(std::move(name)) {}

 private:
  std::string name_;
};

Result<std::unique_ptr<ByteSource>> open_file_bytes(const std::string& path);
std::unique_ptr<ByteSource> memory_bytes(const uint8_t* data, size_t size, std::string name);

// Refuses conversions read() does not do (float -> integer).
Status check_conversion(const SourceTensor& t, DType to);

// Converts `count` elements stored as t.stored at `src` to `to` at `dst`.
// `first` is the index of src[0] within the tensor, for messages.
Status convert_elements(const SourceTensor& t, const uint8_t* src, uint64_t first, size_t count, DType to, void* dst);

// Reads `numel` densely stored elements of t by calling `next(buf, nbytes)`
// for consecutive byte ranges, converting into dst. Identity conversions read
// straight into dst; others go through a buffer of at most a few MiB.
using ByteStream = std::function<Status(void* buf, size_t nbytes)>;
Status stream_elements(const SourceTensor& t, uint64_t numel, DType to, void* dst, const ByteStream& next);

// a * b and a + b for non-negative int64, false on overflow.
bool checked_mul(int64_t a, int64_t b, int64_t* out);
bool checked_add(int64_t a, int64_t b, int64_t* out);

// The readers. `bytes` names the file in messages; a torch zip from a file is
// reopened by libzip through its path, from memory through bytes->memory().
Result<std::unique_ptr<WeightSource>> open_torch_zip(std::unique_ptr<ByteSource> bytes);
Result<std::unique_ptr<WeightSource>> open_safetensors(std::unique_ptr<ByteSource> bytes);

}  // namespace atrous::convert
