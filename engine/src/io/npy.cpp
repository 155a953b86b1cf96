#include "atrous/npy.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "io/file.h"

namespace atrous {
namespace {

using io::File;
using io::open_file;
using io::pread_all;

std::string header_field(const std::string& h, const std::string& key) {
  size_t k = h.find("'" + key + "'");
  if (k == std::string::npos) return "";
  size_t c = h.find(':', k);
  if (c == std::string::npos) return "";
  size_t s = h.find_first_not_of(' ', c + 1);
  if (s == std::string::npos) return "";
  size_t e;
  if (h[s] == '(') {
    e = h.find(')', s);
    return e == std::string::npos ? "" : h.substr(s, e - s + 1);
  }
  if (h[s] == '\'') {
    e = h.find('\'', s + 1);
    return e == std::string::npos ? "" : h.substr(s, e - s + 1);
  }
  e = h.find_first_of(",}", s);
  return e == std::string::npos ? "" : h.substr(s, e - s);
}

// The checked header of a .npy file: what the data is and where it starts.
struct Header {
  DType dtype = DType::kF32;  // as loaded (f64 → f32, bool → u8)
  Shape shape;
  size_t src_size = 0;        // bytes per element in the file
  bool from_f64 = false;
  size_t data_start = 0;
  int64_t numel = 0;
};

// `data` holds the file's first `available` bytes; `file_size` is the whole file's.
Result<Header> parse_header(const uint8_t* data, size_t available, uint64_t file_size, const std::string& who) {
  if (available < 10 || std::memcmp(data, "\x93NUMPY", 6) != 0) return invalid_argument(who + " is not a .npy file (bad magic)");
  uint8_t major = data[6];
  size_t hlen, hstart;
  if (major == 1) {
    hlen = data[8] | (static_cast<size_t>(data[9]) << 8);
    hstart = 10;
  } else if (major == 2 || major == 3) {
    if (available < 12) return invalid_argument(who + " is truncated");
    hlen = data[8] | (static_cast<size_t>(data[9]) << 8) | (static_cast<size_t>(data[10]) << 16) | (static_cast<size_t>(data[11]) << 24);
    hstart = 12;
  } else {
    return invalid_argument(who + ": unsupported .npy version " + std::to_string(major));
  }
  if (hlen > 65536 || hlen > available - hstart) return invalid_argument(who + ": header length " + std::to_string(hlen) + " is invalid or truncated");
  std::string h(reinterpret_cast<const char*>(data + hstart), hlen);
  std::string descr = header_field(h, "descr"), order = header_field(h, "fortran_order"), shp = header_field(h, "shape");
  if (descr.size() < 3 || shp.empty()) return invalid_argument(who + ": header lacks descr or shape");
  if (order.find("True") != std::string::npos) return unsupported(who + ": Fortran-order arrays are not supported; save with np.ascontiguousarray");
  descr = descr.substr(1, descr.size() - 2);
  Header hd;
  if (descr == "<f4") { hd.dtype = DType::kF32; hd.src_size = 4; }
  else if (descr == "<f8") { hd.dtype = DType::kF32; hd.src_size = 8; hd.from_f64 = true; }
  else if (descr == "<f2") { hd.dtype = DType::kF16; hd.src_size = 2; }
  else if (descr == "<i4") { hd.dtype = DType::kI32; hd.src_size = 4; }
  else if (descr == "<i8") { hd.dtype = DType::kI64; hd.src_size = 8; }
  else if (descr == "|u1" || descr == "|b1") { hd.dtype = DType::kU8; hd.src_size = 1; }
  else return unsupported(who + ": dtype '" + descr + "' is not supported (f4, f8, f2, i4, i8, u1, b1 are)");
  std::string inner = shp.substr(1, shp.size() - 2);
  size_t p = 0;
  while (p < inner.size()) {
    size_t q = inner.find(',', p);
    std::string tok = inner.substr(p, q == std::string::npos ? std::string::npos : q - p);
    size_t a = tok.find_first_not_of(' '), b = tok.find_last_not_of(' ');
    if (a != std::string::npos) {
      tok = tok.substr(a, b - a + 1);
      if (tok.empty() || tok.size() > 18 || tok.find_first_not_of("0123456789") != std::string::npos)
        return invalid_argument(who + ": bad shape '" + shp + "'");
      hd.shape.push_back(std::stoll(tok));
    }
    if (q == std::string::npos) break;
    p = q + 1;
  }
  if (hd.shape.size() > 8) return invalid_argument(who + ": rank " + std::to_string(hd.shape.size()) + " above 8");
  auto n = checked_numel(hd.shape);
  if (!n.ok()) return invalid_argument(who + ": " + n.status().message());
  hd.numel = *n;
  hd.data_start = hstart + hlen;
  if (static_cast<uint64_t>(*n) > (file_size - hd.data_start) / hd.src_size)
    return invalid_argument(who + " is truncated: shape " + shape_string(hd.shape) + " needs " +
                            std::to_string(static_cast<uint64_t>(*n) * hd.src_size) + " data bytes, the file has " +
                            std::to_string(file_size - hd.data_start));
  return hd;
}

// f64 → f32 of n elements.
void narrow_f64(const uint8_t* src, int64_t n, float* dst) {
  for (int64_t i = 0; i < n; ++i) {
    double v;
    std::memcpy(&v, src + static_cast<size_t>(i) * 8, 8);
    dst[i] = static_cast<float>(v);
  }
}

// The header of an open file (it is at most 12 + 65536 bytes long).
Result<Header> read_header(const File& f, const std::string& path) {
  std::vector<uint8_t> head(static_cast<size_t>(std::min<uint64_t>(f.size, 12 + 65536)));
  if (!head.empty()) ATROUS_RETURN_IF_ERROR(pread_all(f, head.data(), head.size(), 0, path));
  return parse_header(head.data(), head.size(), f.size, "'" + path + "'");
}

// The data after the header into dst (dtype and shape already checked).
Status read_data(const File& f, const Header& hd, const TensorView& dst, const std::string& path) {
  if (!hd.from_f64) return pread_all(f, dst.data, static_cast<size_t>(hd.numel) * hd.src_size, hd.data_start, path);
  // f64: narrowed in chunks, so no file-sized buffer is needed.
  constexpr int64_t kChunk = 8192;
  std::vector<uint8_t> buf(static_cast<size_t>(kChunk) * 8);
  for (int64_t i = 0; i < hd.numel; i += kChunk) {
    const int64_t n = std::min(kChunk, hd.numel - i);
    ATROUS_RETURN_IF_ERROR(pread_all(f, buf.data(), static_cast<size_t>(n) * 8, hd.data_start + static_cast<uint64_t>(i) * 8, path));
    narrow_f64(buf.data(), n, dst.as<float>() + i);
  }
  return Status::Ok();
}

}  // namespace

Result<Tensor> parse_npy(const uint8_t* data, size_t size, const std::string& label) {
  ATROUS_ASSIGN_OR_RETURN(Header hd, parse_header(data, size, size, "'" + label + "'"));
  Tensor t = Tensor::zeros(hd.dtype, hd.shape);
  if (!t.raw()) return out_of_memory("'" + label + "': cannot allocate " + shape_string(hd.shape));
  if (hd.from_f64)
    narrow_f64(data + hd.data_start, hd.numel, t.data<float>());
  else
    std::memcpy(t.raw(), data + hd.data_start, static_cast<size_t>(hd.numel) * hd.src_size);
  return t;
}

Result<NpyInfo> read_npy_info(const std::string& path) {
  File f;
  ATROUS_RETURN_IF_ERROR(open_file(path, &f));
  ATROUS_ASSIGN_OR_RETURN(Header hd, read_header(f, path));
  return NpyInfo{hd.dtype, hd.shape};
}

// The header is read again: the file is untrusted and may have changed since read_npy_info.
Status read_npy_into(const std::string& path, const TensorView& dst) {
  File f;
  ATROUS_RETURN_IF_ERROR(open_file(path, &f));
  ATROUS_ASSIGN_OR_RETURN(Header hd, read_header(f, path));
  if (hd.dtype != dst.dtype || hd.shape != dst.shape)
    return invalid_argument("'" + path + "' holds " + dtype_name(hd.dtype) + " " + shape_string(hd.shape) + ", the destination is " +
                            dtype_name(dst.dtype) + " " + shape_string(dst.shape));
  if (hd.numel > 0 && !dst.data) return invalid_argument("read_npy_into('" + path + "'): the destination is null");
  return read_data(f, hd, dst, path);
}

// Read straight into the tensor: no file-sized intermediate buffer (a read buffer grown
// by doubling left its freed chunks resident in the heap: 12-16 MiB of peak RSS for SAM's
// 12 MiB input image).
Result<Tensor> load_npy(const std::string& path) {
  File f;
  ATROUS_RETURN_IF_ERROR(open_file(path, &f));
  ATROUS_ASSIGN_OR_RETURN(Header hd, read_header(f, path));
  Tensor t = Tensor::zeros(hd.dtype, hd.shape);
  if (!t.raw()) return out_of_memory("'" + path + "': cannot allocate " + shape_string(hd.shape));
  ATROUS_RETURN_IF_ERROR(read_data(f, hd, t.view(), path));
  return t;
}

namespace {

// The .npy v1 header of t (magic, version, length, dict padded so the data is 64-aligned).
std::vector<uint8_t> npy_header(const TensorView& t) {
  const char* descr = "<f4";
  switch (t.dtype) {
    case DType::kF32: descr = "<f4"; break;
    case DType::kF16: descr = "<f2"; break;
    case DType::kBF16: descr = "<u2"; break;  // no NumPy bf16: raw bits
    case DType::kI32: descr = "<i4"; break;
    case DType::kI64: descr = "<i8"; break;
    case DType::kU8: descr = "|u1"; break;
  }
  std::string shape = "(";
  for (size_t i = 0; i < t.shape.size(); ++i) shape += std::to_string(t.shape[i]) + (t.shape.size() == 1 || i + 1 < t.shape.size() ? "," : "");
  shape += ")";
  std::string h = "{'descr': '" + std::string(descr) + "', 'fortran_order': False, 'shape': " + shape + ", }";
  size_t total = 10 + h.size() + 1;
  h.append((64 - total % 64) % 64, ' ');
  h += '\n';
  const uint8_t magic[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, static_cast<uint8_t>(h.size() & 0xff), static_cast<uint8_t>(h.size() >> 8)};
  std::vector<uint8_t> out(sizeof magic + h.size());
  std::memcpy(out.data(), magic, sizeof magic);
  std::memcpy(out.data() + sizeof magic, h.data(), h.size());
  return out;
}

}  // namespace

std::vector<uint8_t> encode_npy(const TensorView& t) {
  std::vector<uint8_t> out = npy_header(t);
  const auto* d = static_cast<const uint8_t*>(t.data);
  out.insert(out.end(), d, d + t.nbytes());
  return out;
}

// Header, then the data straight from the tensor (no second copy of a large output).
Status save_npy(const std::string& path, const TensorView& t) {
  const std::vector<uint8_t> header = npy_header(t);
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return io_error("cannot write '" + path + "': " + std::strerror(errno));
  const size_t n = static_cast<size_t>(t.nbytes());
  bool ok = std::fwrite(header.data(), 1, header.size(), f) == header.size();
  ok = ok && (n == 0 || std::fwrite(t.data, 1, n, f) == n);
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) return io_error("writing '" + path + "' failed");
  return Status::Ok();
}

}  // namespace atrous
