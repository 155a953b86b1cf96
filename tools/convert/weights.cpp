// open_weights(): format detection, shard sets, and the element conversions
// that both readers share.
#include "convert/weights.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>
#include <nlohmann/json.hpp>

#include "convert/weight_readers.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the weight readers assume a little-endian host (both formats store little-endian data)"
#endif

namespace atrous::convert {

// ---------------------------------------------------------------- types

const char* stored_type_name(StoredType t) {
  switch (t) {
    case StoredType::kF64:
      return "f64";
    case StoredType::kF32:
      return "f32";
    case StoredType::kF16:
      return "f16";
    case StoredType::kBF16:
      return "bf16";
    case StoredType::kI64:
      return "i64";
    case StoredType::kI32:
      return "i32";
    case StoredType::kI16:
      return "i16";
    case StoredType::kI8:
      return "i8";
    case StoredType::kU8:
      return "u8";
    case StoredType::kBool:
      return "bool";
  }
  return "?";
}

size_t stored_type_size(StoredType t) {
  switch (t) {
    case StoredType::kF64:
    case StoredType::kI64:
      return 8;
    case StoredType::kF32:
    case StoredType::kI32:
      return 4;
    case StoredType::kF16:
    case StoredType::kBF16:
    case StoredType::kI16:
      return 2;
    case StoredType::kI8:
    case StoredType::kU8:
    case StoredType::kBool:
      return 1;
  }
  return 1;
}

bool stored_type_is_float(StoredType t) {
  return t == StoredType::kF64 || t == StoredType::kF32 || t == StoredType::kF16 || t == StoredType::kBF16;
}

DType reported_dtype(StoredType t) {
  switch (t) {
    case StoredType::kF64:
    case StoredType::kF32:
      return DType::kF32;
    case StoredType::kF16:
      return DType::kF16;
    case StoredType::kBF16:
      return DType::kBF16;
    case StoredType::kI64:
      return DType::kI64;
    case StoredType::kI32:
    case StoredType::kI16:
    case StoredType::kI8:
      return DType::kI32;
    case StoredType::kU8:
    case StoredType::kBool:
      return DType::kU8;
  }
  return DType::kF32;
}

bool checked_mul(int64_t a, int64_t b, int64_t* out) { return a >= 0 && b >= 0 && !__builtin_mul_overflow(a, b, out); }
bool checked_add(int64_t a, int64_t b, int64_t* out) { return a >= 0 && b >= 0 && !__builtin_add_overflow(a, b, out); }

// ---------------------------------------------------------------- conversion

namespace {

bool dtype_is_float(DType t) { return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16; }

// Same bytes in and out: read() can copy without converting.
bool is_identity(StoredType s, DType d) {
  return (s == StoredType::kF32 && d == DType::kF32) || (s == StoredType::kF16 && d == DType::kF16) ||
         (s == StoredType::kBF16 && d == DType::kBF16) || (s == StoredType::kI64 && d == DType::kI64) ||
         (s == StoredType::kI32 && d == DType::kI32) || (s == StoredType::kU8 && d == DType::kU8);
}

template <class T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// double -> float rounded to odd: when the result is inexact its last bit is
// set. Rounding that to f16/bf16 (13+ fewer bits) to nearest even then equals
// rounding the double directly, avoiding double rounding through f32.
float f64_to_f32_round_odd(double d) {
  float f = static_cast<float>(d);
  if (std::isnan(d) || std::isinf(f) || static_cast<double>(f) == d) return f;
  if (std::fabs(static_cast<double>(f)) > std::fabs(d)) f = std::nextafter(f, 0.0f);
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  bits |= 1;
  std::memcpy(&f, &bits, 4);
  return f;
}

void store_float(DType to, float f, uint8_t* dst) {
  if (to == DType::kF32) {
    std::memcpy(dst, &f, 4);
  } else {
    uint16_t h = to == DType::kF16 ? f32_to_f16(f) : f32_to_bf16(f);
    std::memcpy(dst, &h, 2);
  }
}

int64_t load_int(StoredType s, const uint8_t* p) {
  switch (s) {
    case StoredType::kI64:
      return load<int64_t>(p);
    case StoredType::kI32:
      return load<int32_t>(p);
    case StoredType::kI16:
      return load<int16_t>(p);
    case StoredType::kI8:
      return load<int8_t>(p);
    case StoredType::kU8:
      return *p;
    case StoredType::kBool:
      return *p != 0;
    default:
      return 0;
  }
}

// An integer as a float type, if exactly representable.
bool int_to_float_exact(int64_t v, DType to, uint8_t* dst) {
  float f = static_cast<float>(v);
  if (!(std::fabs(f) < 9.2e18f) || static_cast<int64_t>(f) != v) return false;
  if (to == DType::kF16) {
    uint16_t h = f32_to_f16(f);
    if (f16_to_f32(h) != f) return false;
    std::memcpy(dst, &h, 2);
  } else if (to == DType::kBF16) {
    uint16_t h = f32_to_bf16(f);
    if (bf16_to_f32(h) != f) return false;
    std::memcpy(dst, &h, 2);
  } else {
    std::memcpy(dst, &f, 4);
  }
  return true;
}

}  // namespace

Status check_conversion(const SourceTensor& t, DType to) {
  if (stored_type_is_float(t.stored) && !dtype_is_float(to))
    return invalid_argument("tensor '" + t.name + "' in " + t.file + " holds " + stored_type_name(t.stored) +
                            " values; reading them as " + dtype_name(to) +
                            " would truncate (float to integer conversion is refused)");
  return Status::Ok();
}

Status convert_elements(const SourceTensor& t, const uint8_t* src, uint64_t first, size_t count, DType to,
                        void* dst_void) {
  ATROUS_RETURN_IF_ERROR(check_conversion(t, to));
  uint8_t* dst = static_cast<uint8_t*>(dst_void);
  const size_t ss = stored_type_size(t.stored);
  const size_t ds = dtype_size(to);
  if (is_identity(t.stored, to)) {
    std::memcpy(dst, src, count * ss);
    return Status::Ok();
  }
  if (stored_type_is_float(t.stored)) {
    for (size_t i = 0; i < count; ++i) {
      const uint8_t* p = src + i * ss;
      float f;
      switch (t.stored) {
        case StoredType::kF64: {
          double d = load<double>(p);
          f = to == DType::kF32 ? static_cast<float>(d) : f64_to_f32_round_odd(d);
          break;
        }
        case StoredType::kF32:
          f = load<float>(p);
          break;
        case StoredType::kF16:
          f = f16_to_f32(load<uint16_t>(p));
          break;
        default:
          f = bf16_to_f32(load<uint16_t>(p));
          break;
      }
      store_float(to, f, dst + i * ds);
    }
    return Status::Ok();
  }
  for (size_t i = 0; i < count; ++i) {
    int64_t v = load_int(t.stored, src + i * ss);
    uint8_t* out = dst + i * ds;
    bool fits = true;
    switch (to) {
      case DType::kI64:
        std::memcpy(out, &v, 8);
        break;
      case DType::kI32: {
        fits = v >= std::numeric_limits<int32_t>::min() && v <= std::numeric_limits<int32_t>::max();
        int32_t x = static_cast<int32_t>(v);
        std::memcpy(out, &x, 4);
        break;
      }
      case DType::kU8:
        fits = v >= 0 && v <= 255;
        *out = static_cast<uint8_t>(v);
        break;
      default:
        fits = int_to_float_exact(v, to, out);
        break;
    }
    if (!fits)
      return invalid_argument("tensor '" + t.name + "' in " + t.file + ": element " + std::to_string(first + i) +
                              " is " + std::to_string(v) + ", which " + dtype_name(to) +
                              (dtype_is_float(to) ? " cannot represent exactly" : " cannot hold"));
  }
  return Status::Ok();
}

Status stream_elements(const SourceTensor& t, uint64_t numel, DType to, void* dst, const ByteStream& next) {
  ATROUS_RETURN_IF_ERROR(check_conversion(t, to));
  const size_t ss = stored_type_size(t.stored);
  if (is_identity(t.stored, to)) return next(dst, static_cast<size_t>(numel) * ss);
  const uint64_t kChunk = (uint64_t{4} << 20) / ss;  // elements per 4 MiB of stored bytes
  std::vector<uint8_t> buf(static_cast<size_t>(std::min(numel, kChunk)) * ss);
  uint8_t* out = static_cast<uint8_t*>(dst);
  for (uint64_t done = 0; done < numel;) {
    size_t n = static_cast<size_t>(std::min(kChunk, numel - done));
    ATROUS_RETURN_IF_ERROR(next(buf.data(), n * ss));
    ATROUS_RETURN_IF_ERROR(convert_elements(t, buf.data(), done, n, to, out + done * dtype_size(to)));
    done += n;
  }
  return Status::Ok();
}

// ---------------------------------------------------------------- byte sources

namespace {

class FileBytes : public ByteSource {
 public:
  FileBytes(std::string path, int fd, uint64_t size) : ByteSource(std::move(path)), fd_(fd), size_(size) {}
  ~FileBytes() override { ::close(fd_); }
  uint64_t size() const override { return size_; }
  Status read_at(uint64_t offset, void* dst, size_t n) const override {
    if (offset > size_ || n > size_ - offset)
      return invalid_model(name() + ": read of " + std::to_string(n) + " bytes at offset " + std::to_string(offset) +
                           " runs past the end of the file (" + std::to_string(size_) + " bytes)");
    uint8_t* p = static_cast<uint8_t*>(dst);
    while (n > 0) {
      ssize_t got = ::pread(fd_, p, std::min<size_t>(n, size_t{1} << 30), static_cast<off_t>(offset));
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) return io_error(name() + ": read failed: " + std::strerror(errno));
      if (got == 0) return io_error(name() + ": file ended early (was it truncated while open?)");
      p += got;
      offset += static_cast<uint64_t>(got);
      n -= static_cast<size_t>(got);
    }
    return Status::Ok();
  }

 private:
  int fd_;
  uint64_t size_;
};

class MemoryBytes : public ByteSource {
 public:
  MemoryBytes(const uint8_t* data, size_t size, std::string name)
      : ByteSource(std::move(name)), data_(data), size_(size) {}
  uint64_t size() const override { return size_; }
  Status read_at(uint64_t offset, void* dst, size_t n) const override {
    if (offset > size_ || n > size_ - offset)
      return invalid_model(name() + ": read of " + std::to_string(n) + " bytes at offset " + std::to_string(offset) +
                           " runs past the end of the data (" + std::to_string(size_) + " bytes)");
    if (n) std::memcpy(dst, data_ + offset, n);
    return Status::Ok();
  }
  const uint8_t* memory() const override { return data_; }

 private:
  const uint8_t* data_;
  size_t size_;
};

}  // namespace

Result<std::unique_ptr<ByteSource>> open_file_bytes(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    if (e == ENOENT) return not_found(path + ": no such file");
    return io_error(path + ": cannot open: " + std::strerror(e));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return invalid_argument(path + ": not a regular file");
  }
  return std::unique_ptr<ByteSource>(new FileBytes(path, fd, static_cast<uint64_t>(st.st_size)));
}

std::unique_ptr<ByteSource> memory_bytes(const uint8_t* data, size_t size, std::string name) {
  return std::make_unique<MemoryBytes>(data, size, std::move(name));
}

// ---------------------------------------------------------------- WeightSource

const SourceTensor* WeightSource::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors()[it->second];
}

Status WeightSource::index_names() {
  by_name_.clear();
  const std::vector<SourceTensor>& ts = tensors();
  by_name_.reserve(ts.size());
  for (size_t i = 0; i < ts.size(); ++i) {
    auto [it, inserted] = by_name_.emplace(ts[i].name, i);
    if (!inserted) {
      const SourceTensor& prev = ts[it->second];
      if (prev.file == ts[i].file) return invalid_model("tensor '" + ts[i].name + "' appears twice in " + ts[i].file);
      return invalid_model("tensor '" + ts[i].name + "' appears in both " + prev.file + " and " + ts[i].file);
    }
  }
  return Status::Ok();
}

namespace {

// Several files read as one: shards of a sharded checkpoint.
class MergedSource : public WeightSource {
 public:
  static Result<std::unique_ptr<WeightSource>> make(std::vector<std::unique_ptr<WeightSource>> parts,
                                                    std::string description) {
    std::unique_ptr<MergedSource> m(new MergedSource());
    for (size_t p = 0; p < parts.size(); ++p) {
      const auto& ts = parts[p]->tensors();
      for (size_t i = 0; i < ts.size(); ++i) {
        m->tensors_.push_back(ts[i]);
        m->where_.emplace_back(p, i);
      }
    }
    m->parts_ = std::move(parts);
    m->description_ = std::move(description);
    ATROUS_RETURN_IF_ERROR(m->index_names());
    return std::unique_ptr<WeightSource>(std::move(m));
  }
  const std::vector<SourceTensor>& tensors() const override { return tensors_; }
  Status read(size_t index, DType to, void* dst) const override {
    if (index >= where_.size())
      return invalid_argument("tensor index " + std::to_string(index) + " out of range (" +
                              std::to_string(where_.size()) + " tensors)");
    return parts_[where_[index].first]->read(where_[index].second, to, dst);
  }

 private:
  std::vector<std::unique_ptr<WeightSource>> parts_;
  std::vector<SourceTensor> tensors_;
  std::vector<std::pair<size_t, size_t>> where_;  // (part, index in part)
};

enum class FileKind { kTorchZip, kLegacyTorch, kPickle, kSafetensors, kJson, kUnknown };

// By content only. JSON text never has a NUL in its first 8 bytes, while a
// safetensors length prefix below 2^56 always does, so a safetensors header
// length whose low byte happens to be '{' is not mistaken for JSON.
FileKind detect(const uint8_t* head, size_t n) {
  if (n >= 4 && head[0] == 'P' && head[1] == 'K' && ((head[2] == 3 && head[3] == 4) || (head[2] == 5 && head[3] == 6)))
    return FileKind::kTorchZip;
  size_t i = 0;
  if (n >= 3 && head[0] == 0xef && head[1] == 0xbb && head[2] == 0xbf) i = 3;  // UTF-8 BOM
  while (i < n && (head[i] == ' ' || head[i] == '\t' || head[i] == '\n' || head[i] == '\r')) ++i;
  if (i < n && head[i] == '{' && std::find(head, head + std::min<size_t>(n, 8), 0) == head + std::min<size_t>(n, 8))
    return FileKind::kJson;
  if (n >= 9 && head[8] == '{') return FileKind::kSafetensors;
  if (n >= 2 && head[0] == 0x80 && head[1] <= 5) {
    // Legacy torch.save starts its pickle with a LONG1 magic number.
    static const uint8_t kMagic[] = {0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
    if (n >= 2 + sizeof(kMagic) && std::memcmp(head + 2, kMagic, sizeof(kMagic)) == 0) return FileKind::kLegacyTorch;
    return FileKind::kPickle;
  }
  return FileKind::kUnknown;
}

std::string hex_head(const uint8_t* head, size_t n) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < std::min<size_t>(n, 8); ++i) {
    if (i) s += ' ';
    s += d[head[i] >> 4];
    s += d[head[i] & 15];
  }
  return s;
}

Result<FileKind> sniff(const ByteSource& bytes) {
  if (bytes.size() == 0) return invalid_model(bytes.name() + ": file is empty");
  uint8_t head[16];
  size_t n = static_cast<size_t>(std::min<uint64_t>(sizeof(head), bytes.size()));
  ATROUS_RETURN_IF_ERROR(bytes.read_at(0, head, n));
  FileKind kind = detect(head, n);
  if (kind == FileKind::kLegacyTorch)
    return unsupported(bytes.name() +
                       ": legacy torch.save format; re-save with torch.save(..., "
                       "_use_new_zipfile_serialization=True)");
  if (kind == FileKind::kPickle)
    return unsupported(bytes.name() +
                       ": a bare Python pickle, not a torch.save checkpoint; save the weights with "
                       "torch.save(model.state_dict(), path) or as safetensors");
  if (kind == FileKind::kUnknown)
    return invalid_model(bytes.name() +
                         ": not a PyTorch checkpoint (zip), a safetensors file or a shard index "
                         "(first bytes: " +
                         hex_head(head, n) + ")");
  return kind;
}

Result<std::unique_ptr<WeightSource>> open_single(std::unique_ptr<ByteSource> bytes, FileKind kind) {
  if (kind == FileKind::kTorchZip) return open_torch_zip(std::move(bytes));
  return open_safetensors(std::move(bytes));
}

std::string parent_dir(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return "";
  return path.substr(0, slash + 1);
}

// A shard index: {"weight_map": {tensor name: shard file}}, as written by
// Hugging Face for sharded safetensors and PyTorch checkpoints alike.
Result<std::unique_ptr<WeightSource>> open_index(const ByteSource& bytes) {
  const std::string& path = bytes.name();
  const uint64_t kMaxIndexBytes = uint64_t{64} << 20;
  if (bytes.size() > kMaxIndexBytes)
    return invalid_model(path + ": shard index of " + std::to_string(bytes.size()) + " bytes is larger than " +
                         std::to_string(kMaxIndexBytes) + " bytes");
  std::string text(static_cast<size_t>(bytes.size()), '\0');
  ATROUS_RETURN_IF_ERROR(bytes.read_at(0, text.data(), text.size()));
  nlohmann::ordered_json j;
  try {
    j = nlohmann::ordered_json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    return invalid_model(path + ": not valid JSON: " + e.what());
  }
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    return invalid_model(path + ": JSON without a \"weight_map\" object, so not a shard index");
  std::vector<std::string> files;  // in order of first mention
  std::vector<std::pair<std::string, std::string>> listed;
  for (const auto& [name, file] : j["weight_map"].items()) {
    if (!file.is_string()) return invalid_model(path + ": weight_map entry '" + name + "' is not a file name");
    std::string f = file.get<std::string>();
    // Shard names come from a stranger too: keep them inside the index's folder.
    if (f.empty() || f[0] == '/' || f == ".." || f.rfind("../", 0) == 0 || f.find("/../") != std::string::npos ||
        (f.size() >= 3 && f.compare(f.size() - 3, 3, "/..") == 0))
      return invalid_model(path + ": weight_map entry '" + name + "' names '" + f +
                           "', which is not a path inside the index's folder");
    if (std::find(files.begin(), files.end(), f) == files.end()) files.push_back(f);
    listed.emplace_back(name, f);
  }
  if (files.empty()) return invalid_model(path + ": weight_map is empty");

  std::vector<std::unique_ptr<WeightSource>> parts;
  std::string dir = parent_dir(path);
  std::string shard_list;
  for (const std::string& f : files) {
    ATROUS_ASSIGN_OR_RETURN(std::unique_ptr<ByteSource> shard, open_file_bytes(dir + f));
    ATROUS_ASSIGN_OR_RETURN(FileKind kind, sniff(*shard));
    if (kind == FileKind::kJson)
      return invalid_model(path + ": shard '" + f + "' is itself an index; expected a weights file");
    ATROUS_ASSIGN_OR_RETURN(std::unique_ptr<WeightSource> part, open_single(std::move(shard), kind));
    if (!shard_list.empty()) shard_list += ", ";
    shard_list += f;
    parts.push_back(std::move(part));
  }
  std::string desc = "shard index " + path + " over " + std::to_string(files.size()) + " file" +
                     (files.size() == 1 ? "" : "s") + " (" + shard_list + ")";
  ATROUS_ASSIGN_OR_RETURN(std::unique_ptr<WeightSource> merged, MergedSource::make(std::move(parts), std::move(desc)));
  // The index must not promise tensors its shards do not have.
  for (const auto& [name, f] : listed) {
    const SourceTensor* t = merged->find(name);
    if (t == nullptr || t->file != dir + f)
      return invalid_model(path + ": lists tensor '" + name + "' in " + dir + f + ", which does not hold it");
  }
  return merged;
}

Result<std::unique_ptr<WeightSource>> open_path(const std::string& path) {
  ATROUS_ASSIGN_OR_RETURN(std::unique_ptr<ByteSource> bytes, open_file_bytes(path));
  ATROUS_ASSIGN_OR_RETURN(FileKind kind, sniff(*bytes));
  if (kind == FileKind::kJson) return open_index(*bytes);
  return open_single(std::move(bytes), kind);
}

Result<std::unique_ptr<WeightSource>> open_paths(const std::vector<std::string>& paths) {
  if (paths.empty()) return invalid_argument("no weight files given");
  if (paths.size() == 1) return open_path(paths[0]);
  std::vector<std::unique_ptr<WeightSource>> parts;
  std::string desc = std::to_string(paths.size()) + " files merged: ";
  for (size_t i = 0; i < paths.size(); ++i) {
    ATROUS_ASSIGN_OR_RETURN(std::unique_ptr<WeightSource> part, open_path(paths[i]));
    desc += (i ? "; " : "") + part->description();
    parts.push_back(std::move(part));
  }
  return MergedSource::make(std::move(parts), std::move(desc));
}

}  // namespace

Result<std::unique_ptr<WeightSource>> open_weights(const std::vector<std::string>& paths) {
  try {
    return open_paths(paths);
  } catch (const std::bad_alloc&) {
    return out_of_memory("out of memory while opening weights");
  } catch (const std::exception& e) {
    return internal_error(std::string("unexpected failure while opening weights: ") + e.what());
  }
}

Result<std::unique_ptr<WeightSource>> open_weights_from_memory(const uint8_t* data, size_t size,
                                                               const std::string& name) {
  if (data == nullptr && size != 0) return invalid_argument(name + ": null data");
  try {
    std::unique_ptr<ByteSource> bytes = memory_bytes(data, size, name);
    ATROUS_ASSIGN_OR_RETURN(FileKind kind, sniff(*bytes));
    if (kind == FileKind::kJson)
      return invalid_argument(name + ": a shard index cannot be opened from memory (its shards are files)");
    return open_single(std::move(bytes), kind);
  } catch (const std::bad_alloc&) {
    return out_of_memory("out of memory while opening " + name);
  } catch (const std::exception& e) {
    return internal_error("unexpected failure while opening " + name + ": " + e.what());
  }
}

}  // namespace atrous::convert
