// Reading files the library is handed by path (.npy tensors, images, label maps): only
// regular files (a FIFO or /dev/zero would block or never end), read with pread, errors
// naming the file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "atrous/status.h"

namespace atrous::io {

// An open regular file, closed on scope exit.
struct File {
  int fd = -1;
  uint64_t size = 0;
  File() = default;
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  ~File();
};

// Opens `path` for reading; refuses anything but a regular file.
Status open_file(const std::string& path, File* f);
// Exactly n bytes at offset, or an error naming the file.
Status pread_all(const File& f, void* dst, size_t n, uint64_t offset, const std::string& path);
// The whole of a regular file of at most max_bytes; `what` names it in errors ("image").
Result<std::vector<uint8_t>> read_whole_file(const std::string& path, uint64_t max_bytes, const std::string& what);

}  // namespace atrous::io
