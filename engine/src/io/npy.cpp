#include "atrous/npy.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>

namespace atrous {
namespace {

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

}  // namespace

Result<Tensor> parse_npy(const uint8_t* data, size_t size, const std::string& label) {
  const std::string who = "'" + label + "'";
  if (size < 10 || std::memcmp(data, "\x93NUMPY", 6) != 0) return invalid_argument(who + " is not a .npy file (bad magic)");
  uint8_t major = data[6];
  size_t hlen, hstart;
  if (major == 1) {
    hlen = data[8] | (static_cast<size_t>(data[9]) << 8);
    hstart = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12) return invalid_argument(who + " is truncated");
    hlen = data[8] | (static_cast<size_t>(data[9]) << 8) | (static_cast<size_t>(data[10]) << 16) | (static_cast<size_t>(data[11]) << 24);
    hstart = 12;
  } else {
    return invalid_argument(who + ": unsupported .npy version " + std::to_string(major));
  }
  if (hlen > 65536 || hlen > size - hstart) return invalid_argument(who + ": header length " + std::to_string(hlen) + " is invalid or truncated");
  std::string h(reinterpret_cast<const char*>(data + hstart), hlen);
  std::string descr = header_field(h, "descr"), order = header_field(h, "fortran_order"), shp = header_field(h, "shape");
  if (descr.size() < 3 || shp.empty()) return invalid_argument(who + ": header lacks descr or shape");
  if (order.find("True") != std::string::npos) return unsupported(who + ": Fortran-order arrays are not supported; save with np.ascontiguousarray");
  descr = descr.substr(1, descr.size() - 2);
  DType dt;
  size_t src_size;
  bool from_f64 = false;
  if (descr == "<f4") { dt = DType::kF32; src_size = 4; }
  else if (descr == "<f8") { dt = DType::kF32; src_size = 8; from_f64 = true; }
  else if (descr == "<f2") { dt = DType::kF16; src_size = 2; }
  else if (descr == "<i4") { dt = DType::kI32; src_size = 4; }
  else if (descr == "<i8") { dt = DType::kI64; src_size = 8; }
  else if (descr == "|u1" || descr == "|b1") { dt = DType::kU8; src_size = 1; }
  else return unsupported(who + ": dtype '" + descr + "' is not supported (f4, f8, f2, i4, i8, u1, b1 are)");
  Shape shape;
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
      shape.push_back(std::stoll(tok));
    }
    if (q == std::string::npos) break;
    p = q + 1;
  }
  if (shape.size() > 8) return invalid_argument(who + ": rank " + std::to_string(shape.size()) + " above 8");
  auto n = checked_numel(shape);
  if (!n.ok()) return invalid_argument(who + ": " + n.status().message());
  const size_t dstart = hstart + hlen;
  if (static_cast<uint64_t>(*n) > (size - dstart) / src_size)
    return invalid_argument(who + " is truncated: shape " + shape_string(shape) + " needs " +
                            std::to_string(static_cast<uint64_t>(*n) * src_size) + " data bytes, the file has " + std::to_string(size - dstart));
  Tensor t = Tensor::zeros(dt, shape);
  if (!t.raw()) return out_of_memory(who + ": cannot allocate " + shape_string(shape));
  if (from_f64) {
    float* d = t.data<float>();
    for (int64_t i = 0; i < *n; ++i) {
      double v;
      std::memcpy(&v, data + dstart + static_cast<size_t>(i) * 8, 8);
      d[i] = static_cast<float>(v);
    }
  } else {
    std::memcpy(t.raw(), data + dstart, static_cast<size_t>(*n) * src_size);
  }
  return t;
}

// The file is mapped, not read into a buffer: the tensor is the only copy that outlives
// the call (a read buffer grown by doubling left its freed chunks resident in the heap:
// 12-16 MiB of peak RSS for SAM's 12 MiB input image).
Result<Tensor> load_npy(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return io_error("cannot open '" + path + "': " + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    return io_error("cannot stat '" + path + "': " + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return io_error("'" + path + "' is not a regular file");
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size == 0) {
    ::close(fd);
    return parse_npy(nullptr, 0, path);
  }
  void* m = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int e = errno;
  ::close(fd);
  if (m == MAP_FAILED) return io_error("cannot map '" + path + "': " + std::strerror(e));
  Result<Tensor> t = parse_npy(static_cast<const uint8_t*>(m), size, path);
  ::munmap(m, size);
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
