// The model file container: fixed header, FlatBuffer, 64-byte-aligned weights.
//
//   offset 0   FileHeader (64 bytes, little-endian)
//   offset 64  FlatBuffer (root table atrous.fb.Model, identifier "ATRS")
//   data_offset (multiple of 64, after the FlatBuffer) weight data section
//
// ModelFile owns the mapping (or a private copy for in-memory buffers) and
// verifies the container: header fields, version, FlatBuffers Verifier. It does
// not interpret the graph; engine/src/ir does the semantic checks. A ModelFile
// is immutable after open and can be shared between threads.
//
//   ATROUS_ASSIGN_OR_RETURN(auto file, ModelFile::open("m.atrous"));
//   const fb::Model* root = file->root();
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "atrous/status.h"

namespace atrous {
namespace fb { struct Model; }

constexpr char kFileMagic[8] = {'A', 'T', 'R', 'O', 'U', 'S', 'M', 'F'};
constexpr uint32_t kFormatMajor = 1;  // readers refuse a larger major version
constexpr uint32_t kFormatMinor = 0;  // additions old readers may ignore
constexpr uint64_t kDataAlignment = 64;
constexpr uint64_t kHeaderSize = 64;

#pragma pack(push, 1)
struct FileHeader {
  char magic[8];            // "ATROUSMF"
  uint32_t version_major;
  uint32_t version_minor;
  uint64_t graph_offset;    // = 64
  uint64_t graph_size;      // FlatBuffer bytes
  uint64_t data_offset;     // multiple of 64, >= graph_offset + graph_size
  uint64_t data_size;       // bytes in the data section
  uint8_t reserved[16];     // zero
};
#pragma pack(pop)
static_assert(sizeof(FileHeader) == kHeaderSize, "header is 64 bytes");

class ModelFile {
 public:
  ~ModelFile();
  ModelFile(const ModelFile&) = delete;
  ModelFile& operator=(const ModelFile&) = delete;

  // mmap the file read-only and verify the container.
  static Result<std::shared_ptr<const ModelFile>> open(const std::string& path);
  // Copies `size` bytes (for fuzzing and embedded models) and verifies them.
  static Result<std::shared_ptr<const ModelFile>> from_memory(const void* data, size_t size,
                                                              const std::string& label = "<memory>");

  const fb::Model* root() const { return root_; }
  const FileHeader& header() const { return header_; }
  const uint8_t* data_section() const { return base_ + header_.data_offset; }
  uint64_t data_size() const { return header_.data_size; }
  uint64_t file_size() const { return size_; }
  const std::string& path() const { return path_; }

  // Drops the file pages wholly inside [p, p + bytes) (with `partial`: every page it
  // touches), data-section pages only, from this process's memory (madvise
  // MADV_DONTNEED): for weights packed or copied at plan time. The bytes stay valid: a later read maps the pages again
  // from the file. A no-op outside the mapping and for from_memory copies (whose
  // anonymous pages would be lost, not dropped).
  void release_pages(const void* p, uint64_t bytes, bool partial = false) const;
  // Whether p lies in this file's mapping (false for from_memory copies).
  bool maps(const void* p) const {
    return mapped_ && p >= static_cast<const void*>(base_) && p < static_cast<const void*>(base_ + size_);
  }

 private:
  ModelFile() = default;
  Status verify();
  Status check_wide_vectors(const std::string& who) const;

  std::string path_;
  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  bool mapped_ = false;
  void* owned_ = nullptr;  // from_memory copy
  FileHeader header_{};
  const fb::Model* root_ = nullptr;
};

}  // namespace atrous
