#include "model_writer.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>

#include "atrous/atrous_generated.h"
#include "model_file.h"

namespace atrous {
namespace {

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

struct FileSink {
  std::FILE* f;
  std::string path;
  Status put(const void* p, uint64_t n) {
    if (n && std::fwrite(p, 1, n, f) != n)
      return io_error("writing '" + path + "' failed: " + std::strerror(errno));
    return Status::Ok();
  }
};

struct MemorySink {
  std::vector<uint8_t>* out;
  Status put(const void* p, uint64_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    out->insert(out->end(), b, b + n);
    return Status::Ok();
  }
};

}  // namespace

uint64_t ModelWriter::add_data(uint64_t length, Fill fill) {
  uint64_t off = align_up(data_size_, kDataAlignment);
  chunks_.push_back(Chunk{off, length, std::move(fill)});
  data_size_ = off + length;
  return off;
}

uint64_t ModelWriter::add_data_copy(const void* src, uint64_t length) {
  auto copy = std::make_shared<std::vector<uint8_t>>(static_cast<const uint8_t*>(src),
                                                     static_cast<const uint8_t*>(src) + length);
  return add_data(length, [copy](void* dst) {
    if (!copy->empty()) std::memcpy(dst, copy->data(), copy->size());
    return Status::Ok();
  });
}

template <class Sink>
Status ModelWriter::emit(const fb::ModelT& model, Sink& sink) const {
  flatbuffers::FlatBufferBuilder fbb(1 << 16);
  fbb.Finish(fb::Model::Pack(fbb, &model), fb::ModelIdentifier());
  FileHeader h{};
  std::memcpy(h.magic, kFileMagic, sizeof(kFileMagic));
  h.version_major = kFormatMajor;
  h.version_minor = kFormatMinor;
  h.graph_offset = kHeaderSize;
  h.graph_size = fbb.GetSize();
  h.data_offset = align_up(kHeaderSize + h.graph_size, kDataAlignment);
  h.data_size = data_size_;
  ATROUS_RETURN_IF_ERROR(sink.put(&h, sizeof(h)));
  ATROUS_RETURN_IF_ERROR(sink.put(fbb.GetBufferPointer(), fbb.GetSize()));
  static const uint8_t zeros[kDataAlignment] = {};
  ATROUS_RETURN_IF_ERROR(sink.put(zeros, h.data_offset - kHeaderSize - h.graph_size));
  uint64_t pos = 0;
  std::vector<uint8_t> buf;
  for (const Chunk& c : chunks_) {
    ATROUS_RETURN_IF_ERROR(sink.put(zeros, c.offset - pos));
    buf.assign(c.length, 0);
    ATROUS_RETURN_IF_ERROR(c.fill(buf.data()));
    ATROUS_RETURN_IF_ERROR(sink.put(buf.data(), c.length));
    std::vector<uint8_t>().swap(buf);  // release: memory is bounded by the largest tensor
    pos = c.offset + c.length;
  }
  return Status::Ok();
}

Status ModelWriter::write(const fb::ModelT& model, const std::string& path) const {
  std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) return io_error("cannot create '" + tmp + "': " + std::strerror(errno));
  FileSink sink{f, path};
  Status st;
  try {
    st = emit(model, sink);
  } catch (const std::bad_alloc&) {
    st = out_of_memory("writing '" + path + "': out of memory while producing the weights");
  }
  if (std::fclose(f) != 0 && st.ok()) st = io_error("closing '" + tmp + "' failed: " + std::strerror(errno));
  if (st.ok() && std::rename(tmp.c_str(), path.c_str()) != 0)
    st = io_error("cannot rename '" + tmp + "' to '" + path + "': " + std::strerror(errno));
  if (!st.ok()) std::remove(tmp.c_str());
  return st;
}

Result<std::vector<uint8_t>> ModelWriter::write_to_memory(const fb::ModelT& model) const {
  std::vector<uint8_t> out;
  MemorySink sink{&out};
  ATROUS_RETURN_IF_ERROR(emit(model, sink));
  return out;
}

}  // namespace atrous
