#include "convert/npz.h"

#include <zip.h>

#include <memory>

#include "atrous/npy.h"

namespace atrous::convert {

Result<NamedTensors> load_npz(const std::string& path, uint64_t max_member_bytes) {
  int code = 0;
  zip_t* z = zip_open(path.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &code);
  if (!z) {
    zip_error_t err;
    zip_error_init_with_code(&err, code);
    std::string msg = zip_error_strerror(&err);
    zip_error_fini(&err);
    return invalid_argument("'" + path + "' is not a readable .npz archive (libzip: " + msg + ")");
  }
  std::unique_ptr<zip_t, void (*)(zip_t*)> guard(z, [](zip_t* p) { zip_discard(p); });
  NamedTensors out;
  zip_int64_t n = zip_get_num_entries(z, 0);
  for (zip_int64_t i = 0; i < n; ++i) {
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(z, static_cast<zip_uint64_t>(i), 0, &st) != 0 || !(st.valid & ZIP_STAT_NAME) ||
        !(st.valid & ZIP_STAT_SIZE))
      return invalid_argument("'" + path + "': cannot read member " + std::to_string(i) + " (libzip: " + zip_strerror(z) + ")");
    std::string name = st.name;
    if (name.size() < 5 || name.compare(name.size() - 4, 4, ".npy") != 0)
      return invalid_argument("'" + path + "': member '" + name + "' is not a .npy array");
    name = name.substr(0, name.size() - 4);
    if (st.size > max_member_bytes)
      return invalid_argument("'" + path + "': member '" + name + "' is too large (" + std::to_string(st.size) + " bytes)");
    std::vector<uint8_t> bytes(static_cast<size_t>(st.size));
    zip_file_t* f = zip_fopen_index(z, static_cast<zip_uint64_t>(i), 0);
    if (!f) return invalid_argument("'" + path + "': cannot open member '" + name + "' (libzip: " + zip_strerror(z) + ")");
    size_t done = 0;
    Status rs;
    while (done < bytes.size()) {
      zip_int64_t got = zip_fread(f, bytes.data() + done, bytes.size() - done);
      if (got <= 0) {
        rs = invalid_argument("'" + path + "': member '" + name + "' is truncated or corrupt (libzip: " +
                              zip_file_strerror(f) + ")");
        break;
      }
      done += static_cast<size_t>(got);
    }
    zip_fclose(f);
    ATROUS_RETURN_IF_ERROR(rs);
    for (const auto& [other, _] : out)
      if (other == name) return invalid_argument("'" + path + "': array '" + name + "' appears twice");
    auto t = parse_npy(bytes.data(), bytes.size(), path + ":" + name + ".npy");
    if (!t.ok()) return t.status();
    out.emplace_back(name, std::move(t).value());
  }
  return out;
}

}  // namespace atrous::convert
