#include "model_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "atrous/atrous_generated.h"

namespace atrous {

ModelFile::~ModelFile() {
  if (mapped_ && base_) munmap(const_cast<uint8_t*>(base_), size_);
  std::free(owned_);
}

void ModelFile::release_pages(const void* p, uint64_t bytes, bool partial) const {
  if (!mapped_ || !base_) return;
  const auto lo = reinterpret_cast<uintptr_t>(base_), hi = lo + size_;  // base_ is page-aligned
  const auto a = reinterpret_cast<uintptr_t>(p);
  if (a < lo || a >= hi || bytes > hi - a) return;
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t round = partial ? page - 1 : 0;
  // Never the pages of the header and the verified FlatBuffer: only whole data-section pages.
  const uintptr_t data = (lo + header_.data_offset + page - 1) / page * page;
  const uintptr_t first = std::max(data, (a + page - 1 - round) / page * page);
  const uintptr_t last = std::min(hi, (a + bytes + round) / page * page);
  if (first < last) madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);  // advisory: errors ignored
}

Result<std::shared_ptr<const ModelFile>> ModelFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return io_error("cannot open model file '" + path + "': " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    return io_error("cannot stat model file '" + path + "': " + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return invalid_argument("model path '" + path + "' is not a regular file");
  }
  std::shared_ptr<ModelFile> f(new ModelFile());
  f->path_ = path;
  f->size_ = static_cast<uint64_t>(st.st_size);
  if (f->size_ == 0) {
    ::close(fd);
    return invalid_model("'" + path + "' is empty (0 bytes); expected an Atrous model file");
  }
  void* p = mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
  int e = errno;
  ::close(fd);
  if (p == MAP_FAILED) return io_error("cannot map model file '" + path + "': " + std::strerror(e));
  f->base_ = static_cast<const uint8_t*>(p);
  f->mapped_ = true;
  ATROUS_RETURN_IF_ERROR(f->verify());
  return std::shared_ptr<const ModelFile>(std::move(f));
}

Result<std::shared_ptr<const ModelFile>> ModelFile::from_memory(const void* data, size_t size,
                                                                const std::string& label) {
  std::shared_ptr<ModelFile> f(new ModelFile());
  f->path_ = label;
  f->size_ = size;
  if (size == 0) return invalid_model("'" + label + "' is empty (0 bytes); expected an Atrous model file");
  // 64-byte alignment so that weights are aligned as in a mapped file.
  f->owned_ = std::aligned_alloc(64, (size + 63) / 64 * 64);
  if (!f->owned_) return out_of_memory("cannot allocate " + std::to_string(size) + " bytes for '" + label + "'");
  std::memcpy(f->owned_, data, size);
  f->base_ = static_cast<const uint8_t*>(f->owned_);
  ATROUS_RETURN_IF_ERROR(f->verify());
  return std::shared_ptr<const ModelFile>(std::move(f));
}

Status ModelFile::verify() {
  const std::string who = "'" + path_ + "'";
  if (size_ < kHeaderSize)
    return invalid_model(who + " is truncated: " + std::to_string(size_) +
                         " bytes, shorter than the 64-byte Atrous header");
  std::memcpy(&header_, base_, sizeof(header_));
  if (std::memcmp(header_.magic, kFileMagic, sizeof(kFileMagic)) != 0)
    return invalid_model(who + " is not an Atrous model file (magic bytes are not \"ATROUSMF\")");
  if (header_.version_major > kFormatMajor)
    return unsupported(who + " uses format version " + std::to_string(header_.version_major) + "." +
                       std::to_string(header_.version_minor) + ", newer than this reader (" +
                       std::to_string(kFormatMajor) + "." + std::to_string(kFormatMinor) +
                       "); upgrade Atrous to open it");
  if (header_.version_major < 1)
    return invalid_model(who + " has format version 0, which never existed");
  if (header_.graph_offset != kHeaderSize)
    return invalid_model(who + ": graph offset " + std::to_string(header_.graph_offset) + ", expected 64");
  // Overflow-safe range checks: compare against the remaining size, never add first.
  if (header_.graph_size > size_ - kHeaderSize)
    return invalid_model(who + " is truncated: the graph needs " + std::to_string(header_.graph_size) +
                         " bytes after the header but the file has " + std::to_string(size_ - kHeaderSize));
  if (header_.data_offset % kDataAlignment != 0)
    return invalid_model(who + ": data section offset " + std::to_string(header_.data_offset) +
                         " is not a multiple of 64");
  if (header_.data_offset < kHeaderSize + header_.graph_size)
    return invalid_model(who + ": data section (offset " + std::to_string(header_.data_offset) +
                         ") overlaps the graph");
  if (header_.data_offset > size_ || header_.data_size > size_ - header_.data_offset)
    return invalid_model(who + " is truncated: the data section ends at byte " +
                         std::to_string(header_.data_offset) + " + " + std::to_string(header_.data_size) +
                         " but the file has " + std::to_string(size_) + " bytes");
  const uint8_t* fbuf = base_ + kHeaderSize;
  if (header_.graph_size < 8 || !fb::ModelBufferHasIdentifier(fbuf))
    return invalid_model(who + ": the graph does not carry the FlatBuffers identifier \"ATRS\"");
  // Depth and table limits keep a hostile buffer from costing unbounded time.
  flatbuffers::Verifier v(fbuf, header_.graph_size, /*max_depth=*/64, /*max_tables=*/10000000);
  if (!fb::VerifyModelBuffer(v))
    return invalid_model(who + ": the graph FlatBuffer failed verification (corrupt or truncated)");
  root_ = fb::GetModel(fbuf);
  // The Verifier checks a vector's length field, not the alignment of 8-byte elements.
  // A builder always aligns them; a hand-made file may not, and reading them would be
  // misaligned loads (undefined behaviour), so such a file is refused here.
  ATROUS_RETURN_IF_ERROR(check_wide_vectors(who));
  return Status::Ok();
}

Status ModelFile::check_wide_vectors(const std::string& who) const {
  auto misaligned = [](const flatbuffers::Vector<int64_t>* v) {
    return v != nullptr && reinterpret_cast<uintptr_t>(v->Data()) % alignof(int64_t) != 0;
  };
  for (const fb::Graph* g : *root_->graphs()) {
    const std::string where = who + ", entry point '" + g->name()->str() + "'";
    for (flatbuffers::uoffset_t i = 0; i < g->values()->size(); ++i)
      if (misaligned(g->values()->Get(i)->shape()))
        return invalid_model(where + ": the shape of value " + std::to_string(i) +
                             " is not 8-byte aligned in the graph FlatBuffer");
    if (!g->nodes()) continue;
    for (flatbuffers::uoffset_t i = 0; i < g->nodes()->size(); ++i) {
      const fb::Node* n = g->nodes()->Get(i);
      bool bad = false;
      if (const fb::Slice* sl = n->op_as_Slice())
        bad = misaligned(sl->starts()) || misaligned(sl->ends()) || misaligned(sl->steps());
      else if (const fb::Reshape* r = n->op_as_Reshape())
        bad = misaligned(r->shape());
      if (bad)
        return invalid_model(where + ": node " + std::to_string(i) +
                             " has an attribute vector that is not 8-byte aligned in the graph FlatBuffer");
    }
  }
  return Status::Ok();
}

}  // namespace atrous
