// Reader for checkpoints written by torch.save (the zip format, torch >= 1.6).
//
// The archive holds <folder>/data.pkl (the object tree, read by the safe
// unpickler in pickle.h), <folder>/data/<key> (one entry per storage, raw
// little-endian elements) and <folder>/version. A tensor is a strided view of
// a storage: element (i0, i1, ...) sits at storage_offset + sum(ik * stride_k).
// Several tensors may view one storage (tied weights, slices).
//
// Opening parses the pickle, picks the state dict and checks every tensor's
// extent against its storage entry's size, so read() cannot leave the entry.
// read() streams from libzip: contiguous tensors read exactly their bytes
// (zip_fseek on stored entries; compressed entries are read and discarded up
// to the start); strided views read the span of storage they touch and gather.
#include <zip.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <new>

#include "convert/pickle.h"
#include "convert/weight_readers.h"

namespace atrous::convert {

namespace {

constexpr uint64_t kMaxPickleBytes = uint64_t{256} << 20;
// Deflate cannot compress better than about 1032:1; a larger claimed ratio
// means the entry's size field is lying (and would drive allocations).
constexpr uint64_t kMaxCompressionRatio = 1100;
// A view that repeats storage elements (stride 0, as from expand()) becomes
// larger when made dense; past this it is refused rather than materialised.
constexpr int64_t kMaxExpandedBytes = int64_t{1} << 30;

// State dicts are often saved inside a checkpoint dict; these keys are tried
// in order before the top level itself.
const char* const kNestedKeys[] = {"model", "state_dict", "module", "model_state_dict", "state_dict_ema", "net"};

bool storage_type(const std::string& cls, StoredType* out) {
  static const std::pair<const char*, StoredType> kTypes[] = {
      {"torch.FloatStorage", StoredType::kF32}, {"torch.DoubleStorage", StoredType::kF64},
      {"torch.HalfStorage", StoredType::kF16},  {"torch.BFloat16Storage", StoredType::kBF16},
      {"torch.LongStorage", StoredType::kI64},  {"torch.IntStorage", StoredType::kI32},
      {"torch.ShortStorage", StoredType::kI16}, {"torch.CharStorage", StoredType::kI8},
      {"torch.ByteStorage", StoredType::kU8},   {"torch.BoolStorage", StoredType::kBool},
  };
  for (const auto& [name, type] : kTypes)
    if (cls == name) {
      *out = type;
      return true;
    }
  return false;
}

bool holds_tensor(const PickleValue* v) {
  if (!v || !v->is(PickleValue::Kind::kDict)) return false;
  for (const auto& e : v->entries)
    if (e.second->is(PickleValue::Kind::kTensor)) return true;
  return false;
}

std::string describe_keys(const PickleValue& dict) {
  std::string s;
  size_t shown = 0;
  for (const auto& e : dict.entries) {
    if (shown == 10) return s + ", ... (" + std::to_string(dict.entries.size()) + " keys)";
    if (shown++) s += ", ";
    s += e.first->is(PickleValue::Kind::kString) ? "'" + e.first->text + "'" : pickle_kind_name(e.first->kind);
  }
  return s.empty() ? "no keys" : "keys " + s;
}

std::string nested_key_list() {
  std::string s;
  for (const char* k : kNestedKeys) s += (s.empty() ? "'" : ", '") + std::string(k) + "'";
  return s;
}

struct Found {
  const PickleValue* dict;
  std::string where;
};

Result<Found> find_state_dict(const PickleValue& root, const std::string& path) {
  if (!root.is(PickleValue::Kind::kDict))
    return invalid_model("PyTorch checkpoint " + path + ": top-level object is a " + pickle_kind_name(root.kind) +
                         ", not a dict; expected a state dict (name -> tensor) or a checkpoint dict holding one "
                         "under " +
                         nested_key_list());
  for (const char* key : kNestedKeys) {
    const PickleValue* v = root.get(key);
    if (holds_tensor(v)) return Found{v, std::string("state dict under '") + key + "'"};
  }
  if (holds_tensor(&root)) return Found{&root, "top-level state dict"};
  return invalid_model("PyTorch checkpoint " + path + ": no state dict found: the top-level dict has " +
                       describe_keys(root) + ", holds no tensors, and none of " + nested_key_list() +
                       " is a dict of tensors");
}

std::string zip_message(zip_error_t* err) { return zip_error_strerror(err); }

class TorchZipSource : public WeightSource {
 public:
  static Result<std::unique_ptr<WeightSource>> open(std::unique_ptr<ByteSource> bytes) {
    std::unique_ptr<TorchZipSource> s(new TorchZipSource());
    s->path_ = bytes->name();
    s->archive_size_ = bytes->size();
    ATROUS_RETURN_IF_ERROR(s->open_zip(*bytes));
    ATROUS_RETURN_IF_ERROR(s->load());
    ATROUS_RETURN_IF_ERROR(s->index_names());
    return std::unique_ptr<WeightSource>(std::move(s));
  }

  ~TorchZipSource() override {
    if (zip_) zip_discard(zip_);
  }

  const std::vector<SourceTensor>& tensors() const override { return tensors_; }

  Status read(size_t index, DType to, void* dst) const override {
    if (index >= tensors_.size())
      return invalid_argument(path_ + ": tensor index " + std::to_string(index) + " out of range (" +
                              std::to_string(tensors_.size()) + " tensors)");
    const SourceTensor& t = tensors_[index];
    try {
      ATROUS_RETURN_IF_ERROR(check_conversion(t, to));
      std::lock_guard<std::mutex> lock(mu_);  // a zip_t is not safe for concurrent use
      return read_locked(t, locs_[index], to, dst)
          .with_context("PyTorch checkpoint " + path_ + ": tensor '" + t.name + "'");
    } catch (const std::bad_alloc&) {
      return out_of_memory("out of memory while reading tensor '" + t.name + "' from " + path_);
    }
  }

 private:
  struct Entry {
    zip_uint64_t index = 0;
    uint64_t size = 0;  // uncompressed bytes
  };
  // Where a tensor's elements are: storage entry, and the view onto it.
  struct Locator {
    std::string entry_name;  // for messages
    Entry entry;
    int64_t offset = 0;            // storage_offset, elements
    std::vector<int64_t> strides;  // elements
    bool contiguous = true;
    int64_t lo = 0, hi = 0;  // first and last storage element touched (numel > 0)
    uint64_t numel = 0;
  };

  // An open entry, closed on scope exit.
  struct OpenFile {
    zip_file_t* f = nullptr;
    ~OpenFile() {
      if (f) zip_fclose(f);
    }
  };

  Status fail(const std::string& what) const { return invalid_model("PyTorch checkpoint " + path_ + ": " + what); }

  Status open_zip(const ByteSource& bytes) {
    const int flags = ZIP_RDONLY | ZIP_CHECKCONS;
    zip_error_t err;
    zip_error_init(&err);
    if (bytes.memory() != nullptr) {
      zip_source_t* src = zip_source_buffer_create(bytes.memory(), bytes.size(), 0, &err);
      if (src) {
        zip_ = zip_open_from_source(src, flags, &err);
        if (!zip_) zip_source_free(src);
      }
    } else {
      int code = 0;
      zip_ = zip_open(path_.c_str(), flags, &code);
      if (!zip_) zip_error_init_with_code(&err, code);
    }
    if (!zip_) {
      std::string msg = zip_message(&err);
      zip_error_fini(&err);
      return fail("cannot read the zip archive (libzip: " + msg + "); the file is truncated or damaged");
    }
    zip_error_fini(&err);
    return Status::Ok();
  }

  Result<Entry> stat_entry(zip_uint64_t index, const std::string& name) const {
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(zip_, index, 0, &st) != 0)
      return fail("cannot read the directory entry of '" + name + "' (libzip: " + zip_strerror(zip_) + ")");
    if (!(st.valid & ZIP_STAT_SIZE) || !(st.valid & ZIP_STAT_COMP_SIZE) || !(st.valid & ZIP_STAT_COMP_METHOD))
      return fail("directory entry of '" + name + "' lacks its sizes");
    if ((st.valid & ZIP_STAT_ENCRYPTION_METHOD) && st.encryption_method != ZIP_EM_NONE)
      return unsupported("PyTorch checkpoint " + path_ + ": entry '" + name + "' is encrypted");
    if (st.comp_size > archive_size_)
      return fail("entry '" + name + "' claims " + std::to_string(st.comp_size) + " stored bytes but the archive has " +
                  std::to_string(archive_size_));
    if (st.comp_method == ZIP_CM_STORE ? st.size != st.comp_size : st.size / kMaxCompressionRatio > st.comp_size)
      return fail("entry '" + name + "' claims to expand from " + std::to_string(st.comp_size) + " to " +
                  std::to_string(st.size) + " bytes, which is not plausible");
    return Entry{index, st.size};
  }

  Status read_exact(zip_file_t* f, void* dst, size_t n, const std::string& name) const {
    uint8_t* p = static_cast<uint8_t*>(dst);
    while (n > 0) {
      zip_int64_t got = zip_fread(f, p, std::min<size_t>(n, size_t{1} << 30));
      if (got < 0) return fail("reading '" + name + "' failed (libzip: " + zip_file_strerror(f) + ")");
      if (got == 0) return fail("entry '" + name + "' ended early");
      p += got;
      n -= static_cast<size_t>(got);
    }
    return Status::Ok();
  }

  Status open_at(OpenFile& file, const Entry& e, uint64_t offset, const std::string& name) const {
    file.f = zip_fopen_index(zip_, e.index, 0);
    if (!file.f) return fail("cannot open entry '" + name + "' (libzip: " + zip_strerror(zip_) + ")");
    if (offset == 0) return Status::Ok();
    if (zip_fseek(file.f, static_cast<zip_int64_t>(offset), SEEK_SET) == 0) return Status::Ok();
    // Compressed entries cannot seek: reopen (the failed seek leaves an error
    // state) and read up to the offset through a small buffer.
    zip_fclose(file.f);
    file.f = zip_fopen_index(zip_, e.index, 0);
    if (!file.f) return fail("cannot open entry '" + name + "' (libzip: " + zip_strerror(zip_) + ")");
    std::vector<uint8_t> skip(static_cast<size_t>(std::min<uint64_t>(offset, 1 << 16)));
    for (uint64_t left = offset; left > 0;) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(left, skip.size()));
      ATROUS_RETURN_IF_ERROR(read_exact(file.f, skip.data(), n, name));
      left -= n;
    }
    return Status::Ok();
  }

  Result<std::string> read_small_entry(const std::string& name, uint64_t limit) const {
    zip_int64_t i = zip_name_locate(zip_, name.c_str(), 0);
    if (i < 0) return not_found(name);
    ATROUS_ASSIGN_OR_RETURN(Entry e, stat_entry(static_cast<zip_uint64_t>(i), name));
    if (e.size > limit)
      return fail("entry '" + name + "' of " + std::to_string(e.size) + " bytes is larger than the limit of " +
                  std::to_string(limit));
    std::string data(static_cast<size_t>(e.size), '\0');
    OpenFile file;
    ATROUS_RETURN_IF_ERROR(open_at(file, e, 0, name));
    ATROUS_RETURN_IF_ERROR(read_exact(file.f, data.data(), data.size(), name));
    return data;
  }

  bool has_entry(const std::string& name) const { return zip_name_locate(zip_, name.c_str(), 0) >= 0; }

  // Finds the archive folder: the one top-level folder holding data.pkl.
  Status find_folder() {
    zip_int64_t n = zip_get_num_entries(zip_, 0);
    bool found = false;
    bool torchscript = false;
    for (zip_int64_t i = 0; i < n; ++i) {
      const char* raw = zip_get_name(zip_, static_cast<zip_uint64_t>(i), 0);
      if (!raw) continue;
      std::string name(raw);
      size_t slash = name.find('/');
      if (slash == std::string::npos || slash == 0) continue;
      std::string rest = name.substr(slash + 1);
      if (rest == "constants.pkl" || rest.rfind("code/", 0) == 0) torchscript = true;
      if (rest != "data.pkl") continue;
      if (found && name.substr(0, slash + 1) != folder_)
        return fail("zip archive holds two checkpoints ('" + folder_ + "data.pkl' and '" + name + "')");
      folder_ = name.substr(0, slash + 1);
      found = true;
    }
    if (torchscript)
      return unsupported("PyTorch checkpoint " + path_ +
                         ": this is a TorchScript archive (torch.jit.save), not a torch.save checkpoint; load it "
                         "with torch.jit.load and save model.state_dict() with torch.save");
    if (!found) return fail("zip archive without a <folder>/data.pkl entry, so not written by torch.save");
    return Status::Ok();
  }

  Status load() {
    ATROUS_RETURN_IF_ERROR(find_folder());
    if (has_entry(folder_ + "byteorder")) {
      ATROUS_ASSIGN_OR_RETURN(std::string order, read_small_entry(folder_ + "byteorder", 16));
      if (order != "little")
        return unsupported("PyTorch checkpoint " + path_ + ": saved with byte order '" + order +
                           "'; only little-endian checkpoints are read");
    }
    ATROUS_ASSIGN_OR_RETURN(std::string pkl, read_small_entry(folder_ + "data.pkl", kMaxPickleBytes));
    Result<Pickle> parsed = parse_pickle(reinterpret_cast<const uint8_t*>(pkl.data()), pkl.size());
    if (!parsed.ok()) return parsed.status().with_context("pickle in " + path_);
    // The tree is only needed here: tensors keep copies of what they need.
    const Pickle pickle = std::move(parsed).value();

    ATROUS_ASSIGN_OR_RETURN(Found found, find_state_dict(pickle.root(), path_));
    size_t skipped = 0;
    for (const auto& [key, value] : found.dict->entries) {
      if (!key->is(PickleValue::Kind::kString) || !value->is(PickleValue::Kind::kTensor)) {
        ++skipped;  // e.g. config values kept beside the weights
        continue;
      }
      ATROUS_RETURN_IF_ERROR(add_tensor(key->text, *value->tensor));
    }

    // nn.DataParallel saves every name with a "module." prefix.
    const std::string prefix = "module.";
    bool all_prefixed = !tensors_.empty();
    for (const SourceTensor& t : tensors_) all_prefixed = all_prefixed && t.name.rfind(prefix, 0) == 0;
    if (all_prefixed)
      for (SourceTensor& t : tensors_) t.name.erase(0, prefix.size());

    description_ =
        "PyTorch checkpoint " + path_ + " (" + found.where + ", " + std::to_string(tensors_.size()) + " tensors";
    if (all_prefixed) description_ += ", 'module.' prefix removed";
    if (skipped) description_ += ", " + std::to_string(skipped) + " non-tensor entries skipped";
    description_ += ")";
    return Status::Ok();
  }

  Result<Entry> storage_entry(const std::string& key) {
    auto it = entries_.find(key);
    if (it != entries_.end()) return it->second;
    std::string name = folder_ + "data/" + key;
    zip_int64_t i = zip_name_locate(zip_, name.c_str(), 0);
    if (i < 0) return fail("storage '" + key + "' has no archive entry '" + name + "'");
    ATROUS_ASSIGN_OR_RETURN(Entry e, stat_entry(static_cast<zip_uint64_t>(i), name));
    entries_.emplace(key, e);
    return e;
  }

  // Checks the view against its storage and records where its bytes are.
  Status add_tensor(const std::string& name, const PickleTensor& pt) {
    const PickleStorage& st = *pt.storage->storage;
    auto bad = [&](const std::string& what) { return fail("tensor '" + name + "': " + what); };
    SourceTensor t;
    t.name = name;
    t.file = path_;
    if (!storage_type(st.storage_class, &t.stored))
      return unsupported("PyTorch checkpoint " + path_ + ": tensor '" + name + "' has storage type " +
                         st.storage_class + ", which is not supported");
    t.dtype = reported_dtype(t.stored);
    t.shape = pt.size;
    ATROUS_ASSIGN_OR_RETURN(Entry entry, storage_entry(st.key));
    const int64_t es = static_cast<int64_t>(stored_type_size(t.stored));

    Result<int64_t> numel = checked_numel(t.shape);
    if (!numel.ok()) return bad("shape " + shape_string(t.shape) + ": " + numel.status().message());
    if (pt.storage_offset < 0) return bad("negative storage offset " + std::to_string(pt.storage_offset));
    Locator loc;
    loc.entry_name = folder_ + "data/" + st.key;
    loc.entry = entry;
    loc.offset = pt.storage_offset;
    loc.strides = pt.stride;
    loc.numel = static_cast<uint64_t>(*numel);
    if (st.numel < 0) return bad("storage '" + st.key + "' has negative size " + std::to_string(st.numel));
    int64_t declared;
    if (!checked_mul(st.numel, es, &declared) || static_cast<uint64_t>(declared) > entry.size)
      return bad("storage '" + st.key + "' should hold " + std::to_string(st.numel) + " " + stored_type_name(t.stored) +
                 " elements but its entry has " + std::to_string(entry.size) + " bytes (truncated?)");
    if (*numel > 0) {
      // Last element touched; every index in between is inside [lo, hi]
      // because strides are non-negative.
      int64_t hi = pt.storage_offset;
      int64_t expect = 1;  // row-major stride of the current dim
      for (size_t d = pt.size.size(); d-- > 0;) {
        if (pt.stride[d] < 0) return bad("negative stride " + std::to_string(pt.stride[d]));
        int64_t step;
        if (!checked_mul(pt.size[d] - 1, pt.stride[d], &step) || !checked_add(hi, step, &hi))
          return bad("view of shape " + shape_string(t.shape) + " overflows 64-bit indices");
        if (pt.size[d] != 1 && pt.stride[d] != expect) loc.contiguous = false;
        expect *= pt.size[d];  // cannot overflow: bounded by numel
      }
      int64_t end_bytes;
      if (!checked_add(hi, 1, &end_bytes) || !checked_mul(end_bytes, es, &end_bytes) ||
          static_cast<uint64_t>(end_bytes) > entry.size)
        return bad("view (offset " + std::to_string(pt.storage_offset) + ", shape " + shape_string(t.shape) +
                   ", strides " + shape_string(pt.stride) + ") reaches element " + std::to_string(hi) +
                   " but storage '" + st.key + "' holds " + std::to_string(entry.size / static_cast<uint64_t>(es)) +
                   " elements");
      int64_t dense;
      if (!checked_mul(*numel, es, &dense) || (static_cast<uint64_t>(dense) > entry.size && dense > kMaxExpandedBytes))
        return bad("view of shape " + shape_string(t.shape) +
                   " repeats storage elements and would expand to more "
                   "than " +
                   std::to_string(kMaxExpandedBytes) + " bytes");
      loc.lo = pt.storage_offset;
      loc.hi = hi;
    }
    tensors_.push_back(std::move(t));
    locs_.push_back(std::move(loc));
    return Status::Ok();
  }

  Status read_locked(const SourceTensor& t, const Locator& loc, DType to, void* dst) const {
    if (loc.numel == 0) return Status::Ok();
    const std::string& entry_name = loc.entry_name;
    const uint64_t es = stored_type_size(t.stored);
    OpenFile file;
    if (loc.contiguous) {
      ATROUS_RETURN_IF_ERROR(open_at(file, loc.entry, static_cast<uint64_t>(loc.offset) * es, entry_name));
      return stream_elements(t, loc.numel, to, dst,
                             [&](void* buf, size_t n) { return read_exact(file.f, buf, n, entry_name); });
    }
    // A strided view: read the span it touches, then gather in row-major order.
    const uint64_t span_elems = static_cast<uint64_t>(loc.hi - loc.lo) + 1;
    std::vector<uint8_t> span(static_cast<size_t>(span_elems * es));
    ATROUS_RETURN_IF_ERROR(open_at(file, loc.entry, static_cast<uint64_t>(loc.lo) * es, entry_name));
    ATROUS_RETURN_IF_ERROR(read_exact(file.f, span.data(), span.size(), entry_name));

    std::vector<uint8_t> gathered(static_cast<size_t>(loc.numel * es));
    const Shape& shape = t.shape;
    const size_t rank = shape.size();
    std::vector<int64_t> idx(rank, 0);
    int64_t pos = loc.offset - loc.lo;  // element within span
    uint8_t* out = gathered.data();
    for (uint64_t e = 0; e < loc.numel; ++e) {
      std::memcpy(out + e * es, span.data() + static_cast<uint64_t>(pos) * es, es);
      for (size_t d = rank; d-- > 0;) {
        if (++idx[d] < shape[d]) {
          pos += loc.strides[d];
          break;
        }
        pos -= loc.strides[d] * (shape[d] - 1);
        idx[d] = 0;
      }
    }
    span = std::vector<uint8_t>();  // release before converting
    return convert_elements(t, gathered.data(), 0, static_cast<size_t>(loc.numel), to, dst);
  }

  std::string path_;
  uint64_t archive_size_ = 0;
  zip_t* zip_ = nullptr;
  mutable std::mutex mu_;
  std::string folder_;                    // "<archive>/"
  std::map<std::string, Entry> entries_;  // storage key -> entry, filled while opening
  std::vector<SourceTensor> tensors_;
  std::vector<Locator> locs_;
};

}  // namespace

Result<std::unique_ptr<WeightSource>> open_torch_zip(std::unique_ptr<ByteSource> bytes) {
  return TorchZipSource::open(std::move(bytes));
}

}  // namespace atrous::convert
