#include <unistd.h>

#include <cstdio>

#include "cli.h"

namespace atrous::cli {

int fail(const Status& s) { return fail(s.to_string()); }

int fail(const std::string& message) {
  std::fprintf(stderr, "error: %s\n", message.c_str());
  return 1;
}

Result<Shape> parse_shape(const std::string& text) {
  Shape s;
  size_t p = 0;
  while (p <= text.size()) {
    size_t q = text.find_first_of(",x", p);
    std::string tok = text.substr(p, q == std::string::npos ? std::string::npos : q - p);
    if (tok.empty() || tok.size() > 12 || tok.find_first_not_of("0123456789") != std::string::npos)
      return invalid_argument("bad shape '" + text + "' (expected e.g. 1,3,512,512)");
    s.push_back(std::stoll(tok));
    if (q == std::string::npos) break;
    p = q + 1;
  }
  return s;
}

std::pair<std::string, std::string> split_assignment(const std::string& text) {
  size_t eq = text.find('=');
  if (eq == std::string::npos) return {"", text};
  return {text.substr(0, eq), text.substr(eq + 1)};
}

Result<uint64_t> parse_bytes(const std::string& text) {
  if (text.empty()) return invalid_argument("empty size");
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  if (i == 0) return invalid_argument("bad size '" + text + "' (expected e.g. 512M or 4G)");
  double v = std::stod(text.substr(0, i));
  std::string unit = text.substr(i);
  double mul = 1;
  if (unit == "" || unit == "B") mul = 1;
  else if (unit == "K" || unit == "KB" || unit == "KiB") mul = 1024.0;
  else if (unit == "M" || unit == "MB" || unit == "MiB") mul = 1024.0 * 1024;
  else if (unit == "G" || unit == "GB" || unit == "GiB") mul = 1024.0 * 1024 * 1024;
  else return invalid_argument("bad size unit in '" + text + "' (use K, M or G)");
  return static_cast<uint64_t>(v * mul);
}

std::string human_bytes(uint64_t b) {
  char buf[64];
  if (b >= (1ull << 30)) std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(b) / (1ull << 30));
  else if (b >= (1ull << 20)) std::snprintf(buf, sizeof buf, "%.2f MiB", static_cast<double>(b) / (1ull << 20));
  else if (b >= 1024) std::snprintf(buf, sizeof buf, "%.1f KiB", static_cast<double>(b) / 1024.0);
  else std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(b));
  return buf;
}

std::string format_seconds(double s) {
  char buf[64];
  if (s >= 1) std::snprintf(buf, sizeof buf, "%.3f s", s);
  else if (s >= 1e-3) std::snprintf(buf, sizeof buf, "%.2f ms", s * 1e3);
  else std::snprintf(buf, sizeof buf, "%.1f us", s * 1e6);
  return buf;
}

Result<std::vector<Shape>> default_input_shapes(const EntryPointInfo& e, const std::vector<std::string>& overrides) {
  std::vector<Shape> shapes;
  for (const auto& o : overrides) {  // a misspelt name must not leave the default shape in place silently
    const std::string name = split_assignment(o).first;
    bool known = name.empty() && e.inputs.size() == 1;
    std::string names;
    for (const TensorInfo& in : e.inputs) {
      known = known || in.name == name;
      names += (names.empty() ? "" : ", ") + in.name;
    }
    if (!known)
      return invalid_argument("--shape " + o + ": entry point '" + e.name + "' has no input named '" + name + "' (its inputs: " + names + ")");
  }
  for (const TensorInfo& in : e.inputs) {
    Shape s = in.shape;
    bool given = false;
    for (const auto& o : overrides) {
      auto [name, value] = split_assignment(o);
      if (name == in.name || (name.empty() && e.inputs.size() == 1)) {
        ATROUS_ASSIGN_OR_RETURN(s, parse_shape(value));
        given = true;
      }
    }
    if (!given) {
      for (size_t d = 0; d < s.size(); ++d) {
        if (s[d] >= 0) continue;
        bool spatial = s.size() == 4 && d >= 2;
        int pre = 0;
        if (spatial && e.has_preprocess && e.preprocess.input == in.name) {
          const auto& p = e.preprocess;
          if (p.resize == PreprocessInfo::Resize::kStretch) pre = d == 2 ? p.height : p.width;
          else if (p.resize == PreprocessInfo::Resize::kLongestSide) pre = p.width;
          if (p.pad_width > 0 || p.pad_height > 0) pre = d == 2 ? p.pad_height : p.pad_width;
        }
        s[d] = pre > 0 ? pre : (spatial ? 512 : 1);
      }
    }
    shapes.push_back(s);
  }
  return shapes;
}

Progress::Progress(size_t total, bool enabled) : total_(total), enabled_(enabled && isatty(STDERR_FILENO)) {}

void Progress::update(size_t done, const std::string& label) {
  if (!enabled_ || total_ == 0) return;
  const int width = 30;
  int filled = static_cast<int>(width * done / total_);
  std::fprintf(stderr, "\r[%s%s] %zu/%zu %-40.40s", std::string(static_cast<size_t>(filled), '#').c_str(),
               std::string(static_cast<size_t>(width - filled), ' ').c_str(), done, total_, label.c_str());
  std::fflush(stderr);
}

void Progress::finish() {
  if (enabled_) std::fprintf(stderr, "\n");
}

}  // namespace atrous::cli
