#include "io/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>

namespace atrous::io {

File::~File() {
  if (fd >= 0) ::close(fd);
}

Status open_file(const std::string& path, File* f) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer (fstat then refuses it); it
  // changes nothing for regular files.
  f->fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (f->fd < 0) return io_error("cannot open '" + path + "': " + std::strerror(errno));
  struct stat st;
  if (::fstat(f->fd, &st) != 0) return io_error("cannot stat '" + path + "': " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return io_error("'" + path + "' is not a regular file");
  f->size = static_cast<uint64_t>(st.st_size);
  return Status::Ok();
}

Status pread_all(const File& f, void* dst, size_t n, uint64_t offset, const std::string& path) {
  auto* d = static_cast<uint8_t*>(dst);
  while (n > 0) {
    ssize_t r = ::pread(f.fd, d, n, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return io_error("reading '" + path + "' failed: " + std::strerror(errno));
    if (r == 0) return io_error("'" + path + "' shrank while being read");
    d += r;
    n -= static_cast<size_t>(r);
    offset += static_cast<uint64_t>(r);
  }
  return Status::Ok();
}

Result<std::vector<uint8_t>> read_whole_file(const std::string& path, uint64_t max_bytes, const std::string& what) {
  File f;
  ATROUS_RETURN_IF_ERROR(open_file(path, &f));
  if (f.size > max_bytes)
    return invalid_argument(what + " '" + path + "' is " + std::to_string(f.size) + " bytes, over the limit of " +
                            std::to_string(max_bytes));
  std::vector<uint8_t> bytes;
  try {
    bytes.resize(static_cast<size_t>(f.size));
  } catch (const std::bad_alloc&) {
    return out_of_memory("cannot allocate " + std::to_string(f.size) + " bytes to read " + what + " '" + path + "'");
  }
  ATROUS_RETURN_IF_ERROR(pread_all(f, bytes.data(), bytes.size(), 0, path));
  return bytes;
}

}  // namespace atrous::io
