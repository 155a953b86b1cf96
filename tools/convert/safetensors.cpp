// Reader for .safetensors files: an 8-byte little-endian header length, a JSON
// header {name: {"dtype", "shape", "data_offsets": [begin, end)}} with offsets
// relative to the data area that follows, then the raw little-endian bytes.
//
// Everything in the header is checked against the file before any tensor is
// listed: the header fits, every tensor's byte range lies inside the file and
// has exactly numel * element size bytes, and no two ranges overlap. Reads use
// pread on the one range asked for, so memory stays bounded by one tensor.
#include <algorithm>
#include <limits>
#include <new>
#include <nlohmann/json.hpp>
#include <set>

#include "convert/weight_readers.h"

namespace atrous::convert {

namespace {

// The safetensors reference implementation refuses headers above 100 MB.
constexpr uint64_t kMaxHeaderBytes = uint64_t{100} << 20;

bool parse_dtype_code(const std::string& s, StoredType* out) {
  static const std::pair<const char*, StoredType> kCodes[] = {
      {"F64", StoredType::kF64}, {"F32", StoredType::kF32},   {"F16", StoredType::kF16}, {"BF16", StoredType::kBF16},
      {"I64", StoredType::kI64}, {"I32", StoredType::kI32},   {"I16", StoredType::kI16}, {"I8", StoredType::kI8},
      {"U8", StoredType::kU8},   {"BOOL", StoredType::kBool},
  };
  for (const auto& [code, type] : kCodes)
    if (s == code) {
      *out = type;
      return true;
    }
  return false;
}

bool as_int64(const nlohmann::ordered_json& j, int64_t* out) {
  if (!j.is_number_unsigned() && !(j.is_number_integer() && j.get<int64_t>() >= 0)) return false;
  uint64_t u = j.get<uint64_t>();
  if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
  *out = static_cast<int64_t>(u);
  return true;
}

class SafetensorsSource : public WeightSource {
 public:
  static Result<std::unique_ptr<WeightSource>> open(std::unique_ptr<ByteSource> bytes) {
    std::unique_ptr<SafetensorsSource> s(new SafetensorsSource());
    s->bytes_ = std::move(bytes);
    ATROUS_RETURN_IF_ERROR(s->parse_header());
    ATROUS_RETURN_IF_ERROR(s->index_names());
    return std::unique_ptr<WeightSource>(std::move(s));
  }

  const std::vector<SourceTensor>& tensors() const override { return tensors_; }

  Status read(size_t index, DType to, void* dst) const override {
    if (index >= tensors_.size())
      return invalid_argument(bytes_->name() + ": tensor index " + std::to_string(index) + " out of range (" +
                              std::to_string(tensors_.size()) + " tensors)");
    const SourceTensor& t = tensors_[index];
    try {
      uint64_t offset = begins_[index];
      return stream_elements(t, numels_[index], to, dst, [&](void* buf, size_t n) {
        Status st = bytes_->read_at(offset, buf, n);
        offset += n;
        return st;
      });
    } catch (const std::bad_alloc&) {
      return out_of_memory("out of memory while reading tensor '" + t.name + "' from " + t.file);
    }
  }

 private:
  Status fail(const std::string& what) const { return invalid_model("safetensors " + bytes_->name() + ": " + what); }

  Status parse_header() {
    const uint64_t file_size = bytes_->size();
    if (file_size < 8) return fail("file of " + std::to_string(file_size) + " bytes is too short for a header");
    uint8_t len_bytes[8];
    ATROUS_RETURN_IF_ERROR(bytes_->read_at(0, len_bytes, 8));
    uint64_t header_len = 0;
    for (int i = 0; i < 8; ++i) header_len |= static_cast<uint64_t>(len_bytes[i]) << (8 * i);
    if (header_len > file_size - 8)
      return fail("header length " + std::to_string(header_len) + " is larger than the rest of the file (" +
                  std::to_string(file_size - 8) + " bytes); the file is truncated or not safetensors");
    if (header_len < 2 || header_len > kMaxHeaderBytes)
      return fail("header length " + std::to_string(header_len) + " is outside 2.." + std::to_string(kMaxHeaderBytes));
    std::string text(static_cast<size_t>(header_len), '\0');
    ATROUS_RETURN_IF_ERROR(bytes_->read_at(8, text.data(), text.size()));

    // nlohmann keeps the last of repeated keys silently; a header naming one
    // tensor twice is lying about one of them, so catch repeats while parsing.
    std::set<std::string> seen;
    std::string repeated;
    auto on_event = [&](int depth, nlohmann::ordered_json::parse_event_t event, nlohmann::ordered_json& parsed) {
      if (event == nlohmann::ordered_json::parse_event_t::key && depth == 1 && parsed.is_string() &&
          !seen.insert(parsed.get<std::string>()).second && repeated.empty())
        repeated = parsed.get<std::string>();
      return true;
    };
    nlohmann::ordered_json header;
    try {
      header = nlohmann::ordered_json::parse(text, on_event);
    } catch (const nlohmann::json::exception& e) {
      return fail(std::string("header is not valid JSON: ") + e.what());
    }
    if (!repeated.empty()) return fail("header lists tensor '" + repeated + "' twice");
    if (!header.is_object()) return fail("header is not a JSON object");

    const uint64_t data_start = 8 + header_len;
    const uint64_t data_size = file_size - data_start;
    struct Entry {
      SourceTensor t;
      uint64_t begin, end;
      int64_t numel;
    };
    std::vector<Entry> entries;
    for (const auto& [name, info] : header.items()) {
      if (name == "__metadata__") continue;  // free-form strings; nothing to read
      const std::string where = "tensor '" + name + "'";
      if (!info.is_object()) return fail(where + ": entry is not an object");
      if (!info.contains("dtype") || !info["dtype"].is_string()) return fail(where + ": missing \"dtype\" string");
      if (!info.contains("shape") || !info["shape"].is_array()) return fail(where + ": missing \"shape\" array");
      if (!info.contains("data_offsets") || !info["data_offsets"].is_array() || info["data_offsets"].size() != 2)
        return fail(where + ": missing \"data_offsets\" [begin, end]");
      Entry e;
      e.t.name = name;
      e.t.file = bytes_->name();
      std::string code = info["dtype"].get<std::string>();
      if (!parse_dtype_code(code, &e.t.stored))
        return Status(StatusCode::kUnsupported,
                      "safetensors " + bytes_->name() + ": " + where + " has dtype " + code +
                          ", which is not supported (F32, F16, BF16, F64, I64, I32, I16, I8, U8 and BOOL are)");
      e.t.dtype = reported_dtype(e.t.stored);
      for (const auto& d : info["shape"]) {
        int64_t dim;
        if (!as_int64(d, &dim)) return fail(where + ": shape holds " + d.dump() + ", not a non-negative integer");
        e.t.shape.push_back(dim);
      }
      int64_t begin, end;
      if (!as_int64(info["data_offsets"][0], &begin) || !as_int64(info["data_offsets"][1], &end))
        return fail(where + ": data_offsets " + info["data_offsets"].dump() + " are not non-negative integers");
      int64_t nbytes;
      Result<int64_t> numel = checked_numel(e.t.shape);
      if (!numel.ok() || !checked_mul(*numel, static_cast<int64_t>(stored_type_size(e.t.stored)), &nbytes))
        return fail(where + ": shape " + shape_string(e.t.shape) + " has too many elements");
      const std::string range = "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) + ")";
      if (begin > end) return fail(where + ": " + range + " end before they begin");
      if (static_cast<uint64_t>(end) > data_size)
        return fail(where + ": " + range + " run past the end of the file (the data area holds " +
                    std::to_string(data_size) + " bytes)");
      if (end - begin != nbytes)
        return fail(where + ": " + range + " hold " + std::to_string(end - begin) + " bytes but " + code + " " +
                    shape_string(e.t.shape) + " needs " + std::to_string(nbytes));
      e.begin = static_cast<uint64_t>(begin);
      e.end = static_cast<uint64_t>(end);
      e.numel = *numel;
      entries.push_back(std::move(e));
    }

    // File order is data order; overlapping ranges mean the header is lying.
    std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.begin < b.begin; });
    const Entry* last = nullptr;
    for (const Entry& e : entries) {
      if (e.begin == e.end) continue;
      if (last && e.begin < last->end)
        return fail("tensor '" + e.t.name + "' at [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
                    ") overlaps tensor '" + last->t.name + "' at [" + std::to_string(last->begin) + ", " +
                    std::to_string(last->end) + ")");
      last = &e;
    }
    for (Entry& e : entries) {
      tensors_.push_back(std::move(e.t));
      begins_.push_back(data_start + e.begin);
      numels_.push_back(static_cast<uint64_t>(e.numel));
    }
    description_ = "safetensors file " + bytes_->name() + " (" + std::to_string(tensors_.size()) + " tensors)";
    return Status::Ok();
  }

  std::unique_ptr<ByteSource> bytes_;
  std::vector<SourceTensor> tensors_;
  std::vector<uint64_t> begins_;  // absolute file offset of each tensor's bytes
  std::vector<uint64_t> numels_;
};

}  // namespace

Result<std::unique_ptr<WeightSource>> open_safetensors(std::unique_ptr<ByteSource> bytes) {
  return SafetensorsSource::open(std::move(bytes));
}

}  // namespace atrous::convert
