#include "targets.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "atrous/atrous.h"
#include "atrous/image.h"
#include "atrous/npy.h"
#include "atrous/sam.h"
#include "convert/pickle.h"
#include "convert/weights.h"

namespace atrous::fuzz {

void model_one(const uint8_t* data, size_t size) {
  auto model = Model::from_memory(data, size);
  if (!model.ok()) return;
  for (const auto& e : (*model)->info().entries) {
    SessionOptions o;
    o.entry = e.name;
    o.threads = 1;
    o.max_memory = 64ull << 20;
    auto s = Session::create(*model, o);
    if (!s.ok()) continue;
    std::vector<Shape> shapes;
    for (const auto& in : e.inputs) {
      Shape sh = in.shape;
      for (auto& d : sh)
        if (d < 0) d = 7;
      shapes.push_back(sh);
    }
    (void)(*s)->reshape(shapes);
  }
}

void weights_one(const uint8_t* data, size_t size) {
  auto src = convert::open_weights_from_memory(data, size, "fuzz");
  if (!src.ok()) return;
  std::vector<uint8_t> buf;
  const auto& ts = (*src)->tensors();
  for (size_t i = 0; i < ts.size(); ++i) {
    bool integer = ts[i].dtype == DType::kI64 || ts[i].dtype == DType::kI32 || ts[i].dtype == DType::kU8;
    DType to = integer ? ts[i].dtype : DType::kF32;
    auto n = checked_nbytes(ts[i].shape, to);
    if (!n.ok() || *n > (16u << 20)) continue;
    buf.resize(*n);
    (void)(*src)->read(i, to, buf.data());
  }
}

void pickle_one(const uint8_t* data, size_t size) { (void)convert::parse_pickle(data, size); }

void image_one(const uint8_t* data, size_t size) {
  auto img = decode_image(data, size, "fuzz", /*max_pixels=*/1 << 22);
  if (!img.ok()) return;
  PreprocessInfo p;
  p.resize = PreprocessInfo::Resize::kLongestSide;
  p.width = 64;
  p.antialias = (size & 1) != 0;
  p.value_scale = 1.0f / 255;
  p.mean = {0.485f, 0.456f, 0.406f};
  p.std = {0.229f, 0.224f, 0.225f};
  p.pad_width = p.pad_height = 64;
  (void)preprocess_image(*img, p, 3);
  (void)preprocess_image(*img, p, 1);
}

void npy_one(const uint8_t* data, size_t size) { (void)parse_npy(data, size, "fuzz"); }

namespace {

// A broken invariant is a bug: stop loudly (libFuzzer keeps the input).
void require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz_prompt: invariant broken: %s\n", what);
  std::abort();
}

// A failed parse or check must be a clear InvalidArgument.
void require_clear_error(const Status& st) {
  require(st.code() == StatusCode::kInvalidArgument && !st.message().empty() && st.message().size() < 1000,
          "a refused prompt gives one short invalid-argument message");
}

bool parse_int(std::string_view t, int* v) {
  auto r = std::from_chars(t.data(), t.data() + t.size(), *v);
  return r.ec == std::errc() && r.ptr == t.data() + t.size();
}

// "W,H" or "W,H,S".
bool parse_size_line(std::string_view line, int* w, int* h, int* s) {
  size_t a = line.find(','), b = a == std::string_view::npos ? a : line.find(',', a + 1);
  if (a == std::string_view::npos) return false;
  if (!parse_int(line.substr(0, a), w)) return false;
  if (b == std::string_view::npos) return parse_int(line.substr(a + 1), h);
  return parse_int(line.substr(a + 1, b - a - 1), h) && parse_int(line.substr(b + 1), s);
}

// What parses must print and parse back to the same floats.
void check_round_trip(const SamPoint& p) {
  char buf[80];
  std::snprintf(buf, sizeof buf, "%.9g,%.9g,%d", p.x, p.y, p.label);
  auto q = parse_sam_point(buf);
  require(q.ok() && q->x == p.x && q->y == p.y && q->label == p.label, "a parsed point prints and parses back to itself");
}

}  // namespace

void prompt_one(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  int width = 640, height = 480, image_size = 1024;
  SamPrompt prompt;
  prompt.multimask = false;
  bool first = true;
  while (!in.empty()) {
    const size_t nl = in.find('\n');
    std::string_view line = in.substr(0, nl);
    in = nl == std::string_view::npos ? std::string_view() : in.substr(nl + 1);
    if (first) {
      first = false;
      if (parse_size_line(line, &width, &height, &image_size)) continue;
    }
    if (line.size() < 2 || line[1] != ' ') continue;
    const std::string text(line.substr(2));
    if (line[0] == 'p') {
      auto p = parse_sam_point(text);
      if (!p.ok()) {
        require_clear_error(p.status());
        continue;
      }
      require(std::isfinite(p->x) && std::isfinite(p->y) && (p->label == 0 || p->label == 1), "a parsed point is finite, label 0/1");
      check_round_trip(*p);
      if (prompt.points.size() <= kSamMaxPoints) prompt.points.push_back(*p);  // one past the limit, to be refused
    } else if (line[0] == 'b') {
      auto b = parse_sam_box(text);
      if (!b.ok()) {
        require_clear_error(b.status());
        continue;
      }
      require(std::isfinite(b->x0) && std::isfinite(b->y0) && std::isfinite(b->x1) && std::isfinite(b->y1), "a parsed box is finite");
      prompt.has_box = true;
      prompt.box = *b;
    } else if (line[0] == 'm') {
      int n = 0;
      if (parse_int(line.substr(2), &n) && n >= 0 && n <= 300) prompt.mask_input = Tensor::zeros(DType::kF32, {1, 1, n, n});
    }
  }

  const Status checked = check_sam_prompt(prompt, width, height, 256);
  if (!checked.ok()) require_clear_error(checked);
  int iw = 0, ih = 0;
  const Status resized = sam_resized_size(width, height, image_size, &iw, &ih);
  if (!resized.ok()) {
    require_clear_error(resized);
    return;
  }
  require(iw >= 1 && ih >= 1 && iw <= image_size && ih <= image_size && (iw == image_size || ih == image_size),
          "the resized image fits the model input and touches its side");
  Tensor coords, labels;
  const Status st = sam_prompt_tensors(prompt, width, height, iw, ih, &coords, &labels);
  const bool mask_ok = check_sam_prompt(prompt, width, height, 0).ok();
  require(st.ok() == mask_ok, "sam_prompt_tensors accepts exactly what check_sam_prompt accepts (mask_input aside)");
  if (!st.ok()) {
    require_clear_error(st);
    return;
  }
  const int64_t n = static_cast<int64_t>(prompt.points.size()) + (prompt.has_box ? 2 : 1);
  require(coords.shape() == Shape{1, n, 2} && labels.shape() == Shape{1, n}, "point_coords [1, N, 2], point_labels [1, N]");
  const float* c = coords.data<float>();
  const float* l = labels.data<float>();
  for (int64_t k = 0; k < n; ++k) {
    const double x = c[2 * k], y = c[2 * k + 1];
    // Inside the resized image (a box corner may sit on its far edge; float rounding aside).
    require(std::isfinite(x) && std::isfinite(y) && x >= 0 && y >= 0 && x <= iw * (1 + 1e-6) && y <= ih * (1 + 1e-6),
            "model-frame coordinates lie inside the resized image");
    require(l[k] == -1 || l[k] == 0 || l[k] == 1 || l[k] == 2 || l[k] == 3, "labels are -1, 0, 1, 2 or 3");
  }
}

bool run_target(const std::string& name, const uint8_t* data, size_t size) {
  if (name == "model") model_one(data, size);
  else if (name == "weights") weights_one(data, size);
  else if (name == "pickle") pickle_one(data, size);
  else if (name == "image") image_one(data, size);
  else if (name == "npy") npy_one(data, size);
  else if (name == "prompt") prompt_one(data, size);
  else return false;
  return true;
}

}  // namespace atrous::fuzz
