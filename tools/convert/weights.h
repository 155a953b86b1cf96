// Reading trained weights without Python: PyTorch checkpoints and safetensors.
//
// The converter turns a PyTorch model into an .atrous file; this is the half
// that gets the numbers out of the files people download. open_weights()
// detects each file's kind by its content (zip magic -> torch.save checkpoint,
// 8-byte length + JSON -> safetensors, JSON with "weight_map" -> shard index)
// and lists the tensors with their names, element types and shapes. read()
// then streams one tensor's bytes, converting the element type if asked.
//
// Files are untrusted. Opening validates everything that can be checked without
// reading tensor data (pickle opcodes and globals, zip structure, safetensors
// offsets, every tensor's extent inside its storage), so after open_weights()
// succeeds each listed tensor is known to lie inside its file. read() uses
// memory bounded by that one tensor (for a strided view: the span of storage
// it touches), never by the file, and may still fail on I/O errors, on zip
// data that does not decompress, or on integer values that do not fit `to`.
//
// Ownership: a WeightSource keeps its files open until destroyed. read() is
// const and safe to call from several threads (zip reads are serialised). The
// memory passed to open_weights_from_memory() must outlive the source.
//
//   ATROUS_ASSIGN_OR_RETURN(auto src, atrous::convert::open_weights({"model.pth"}));
//   for (size_t i = 0; i < src->tensors().size(); ++i) {
//     const atrous::convert::SourceTensor& t = src->tensors()[i];
//     atrous::Tensor dst = atrous::Tensor::zeros(atrous::DType::kF32, t.shape);
//     ATROUS_RETURN_IF_ERROR(src->read(i, atrous::DType::kF32, dst.raw()));
//   }
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "atrous/status.h"
#include "atrous/tensor.h"

namespace atrous::convert {

// Element type as it is stored in the file. Wider than DType because files
// hold types the engine does not compute in.
enum class StoredType : uint8_t { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

// "f64", "f32", ..., "bool".
const char* stored_type_name(StoredType t);
size_t stored_type_size(StoredType t);
bool stored_type_is_float(StoredType t);
// The engine type a stored type is reported as: itself where it exists, f64 ->
// f32 (the one lossy case), i16/i8 -> i32, bool -> u8 (0 or 1).
DType reported_dtype(StoredType t);

struct SourceTensor {
  std::string name;                      // state-dict key (after dropping a DataParallel "module." prefix)
  DType dtype = DType::kF32;             // type read() returns without loss; see reported_dtype()
  StoredType stored = StoredType::kF32;  // type in the file; kF64 means "converted to f32 on read"
  Shape shape;                           // dims, outermost first; [] for a scalar
  std::string file;                      // the file holding the bytes, as the caller named it (or a shard path)

  bool from_f64() const { return stored == StoredType::kF64; }
};

class WeightSource {
 public:
  virtual ~WeightSource() = default;

  // In file order (dict insertion order for checkpoints, data order for
  // safetensors, shard by shard); names are unique.
  virtual const std::vector<SourceTensor>& tensors() const = 0;

  // The tensor called `name`, or null.
  const SourceTensor* find(const std::string& name) const;

  // Writes tensor `index` densely, row-major, converted to `to`, into `dst`
  // (numel * dtype_size(to) bytes). Allowed: float <-> float (f64/f32/f16/bf16
  // sources to f32/f16/bf16, rounding once to nearest even), integer <-> integer
  // (each value range-checked), and integer -> float when every value is exactly
  // representable. Float -> integer is refused. On failure `dst` holds garbage.
  virtual Status read(size_t index, DType to, void* dst) const = 0;

  // Where the tensors came from, for the user, e.g.
  // "PyTorch checkpoint x.pth (state dict under 'model', 12 tensors, 'module.' prefix removed)".
  const std::string& description() const { return description_; }

 protected:
  // Called by implementations once tensors() is final: builds the name index,
  // refusing duplicates with a message that names both files.
  Status index_names();
  std::string description_;

 private:
  std::unordered_map<std::string, size_t> by_name_;
};

// Opens one file, or several that together form one set of weights.
//  - a PyTorch checkpoint written by torch.save (zip format);
//  - a .safetensors file;
//  - an index (e.g. model.safetensors.index.json, {"weight_map": {name: file}}):
//    its shards are opened relative to the index's folder;
//  - several paths: shards merged in the order given. A name in two files is an
//    error naming both.
// The kind of each file is decided by its content, not its extension.
Result<std::unique_ptr<WeightSource>> open_weights(const std::vector<std::string>& paths);

// The same for one checkpoint or safetensors file already in memory (an index
// needs its shards on disk, so is refused). `name` is used in messages. The
// bytes are not copied: they must stay valid while the source lives. This is
// the entry point for fuzzing.
Result<std::unique_ptr<WeightSource>> open_weights_from_memory(const uint8_t* data, size_t size,
                                                               const std::string& name);

}  // namespace atrous::convert
