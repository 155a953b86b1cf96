// Segment Anything prompts without a model: text parsing (the CLI's --point and
// --box), the checks SamPredictor::decode makes, and the map from original-image
// pixels to the model's input frame. Every function takes hostile input
// (tools/fuzz/fuzz_prompt.cpp) and answers with a Status.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <string_view>
#include <system_error>

#include "atrous/sam.h"

namespace atrous {
namespace {

// The text for an error message: quoted, and shortened when long.
std::string quoted(std::string_view text) {
  constexpr size_t kMax = 40;
  if (text.size() <= kMax) return "'" + std::string(text) + "'";
  return "'" + std::string(text.substr(0, kMax)) + "...' (" + std::to_string(text.size()) + " characters)";
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// -?digits[.digits][(e|E)[+-]digits], with at least one mantissa digit: the only
// spellings accepted (from_chars alone would also take "inf", "nan", "infinity").
bool is_decimal(std::string_view t) {
  size_t i = 0, n = t.size();
  if (i < n && t[i] == '-') ++i;
  size_t digits = 0;
  while (i < n && is_digit(t[i])) ++i, ++digits;
  if (i < n && t[i] == '.') {
    ++i;
    while (i < n && is_digit(t[i])) ++i, ++digits;
  }
  if (digits == 0) return false;
  if (i < n && (t[i] == 'e' || t[i] == 'E')) {
    ++i;
    if (i < n && (t[i] == '+' || t[i] == '-')) ++i;
    size_t exp_digits = 0;
    while (i < n && is_digit(t[i])) ++i, ++exp_digits;
    if (exp_digits == 0) return false;
  }
  return i == n;
}

// The comma-separated numbers of `text`: exactly `min`..`max` of them, each a finite
// float. Errors name `what` ("point") and quote `shown` (the whole text) with `form`,
// the expected spelling ("X,Y or X,Y,LABEL").
Status parse_numbers(std::string_view text, std::string_view shown, const char* what, const char* form, size_t min, size_t max,
                     float* out, size_t* count) {
  auto bad = [&](const std::string& why) {
    return invalid_argument(std::string(what) + " " + quoted(shown) + ": expected " + form + " (numbers separated by commas); " +
                            why);
  };
  if (text.empty()) return bad("the text is empty");
  const size_t fields = static_cast<size_t>(std::count(text.begin(), text.end(), ',')) + 1;
  if (fields < min || fields > max)
    return bad("found " + std::to_string(fields) + " field" + (fields == 1 ? "" : "s"));
  size_t start = 0;
  for (size_t k = 0; k < fields; ++k) {
    size_t end = text.find(',', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view tok = text.substr(start, end - start);
    const std::string nth = "number " + std::to_string(k + 1);
    if (tok.empty()) return bad(nth + " is empty");
    if (!is_decimal(tok)) return bad(nth + " " + quoted(tok) + " is not a decimal number");
    float v = 0;
    const auto r = std::from_chars(tok.data(), tok.data() + tok.size(), v, std::chars_format::general);
    if (r.ec == std::errc::result_out_of_range) return bad(nth + " " + quoted(tok) + " is out of float's range");
    if (r.ec != std::errc() || r.ptr != tok.data() + tok.size() || !std::isfinite(v))
      return bad(nth + " " + quoted(tok) + " is not a finite number");
    out[k] = v;
    start = end + 1;
  }
  *count = fields;
  return Status::Ok();
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

}  // namespace

Result<SamPoint> parse_sam_point(const std::string& text) {
  const char* form = "X,Y or X,Y,LABEL";
  // The label is checked as text first: "2" should say "LABEL must be ...", not be read as a coordinate.
  const size_t last = text.rfind(',');
  const size_t commas = static_cast<size_t>(std::count(text.begin(), text.end(), ','));
  float v[3] = {0, 0, 0};
  size_t n = 0;
  if (commas == 2) {
    const std::string_view label = std::string_view(text).substr(last + 1);
    ATROUS_RETURN_IF_ERROR(parse_numbers(std::string_view(text).substr(0, last), text, "point", form, 2, 2, v, &n));
    if (label != "0" && label != "1")
      return invalid_argument("point " + quoted(text) + ": LABEL must be 1 (foreground) or 0 (background), got " + quoted(label));
    return SamPoint{v[0], v[1], label == "1" ? 1 : 0};
  }
  ATROUS_RETURN_IF_ERROR(parse_numbers(text, text, "point", form, 2, 3, v, &n));
  return SamPoint{v[0], v[1], 1};
}

Result<SamBox> parse_sam_box(const std::string& text) {
  float v[4] = {0, 0, 0, 0};
  size_t n = 0;
  ATROUS_RETURN_IF_ERROR(parse_numbers(text, text, "box", "X0,Y0,X1,Y1", 4, 4, v, &n));
  return SamBox{v[0], v[1], v[2], v[3]};
}

Status check_sam_prompt(const SamPrompt& prompt, int width, int height, int mask_input_size) {
  const int W = width, H = height;
  if (W < 1 || H < 1) return invalid_argument("image size " + std::to_string(W) + "x" + std::to_string(H) + " is empty");
  const std::string image = std::to_string(W) + "x" + std::to_string(H) + " image";
  if (prompt.points.empty() && !prompt.has_box) return invalid_argument("no prompt: give at least one point or a box");
  if (prompt.points.size() > kSamMaxPoints)
    return invalid_argument("the prompt has " + std::to_string(prompt.points.size()) + " points, at most " +
                            std::to_string(kSamMaxPoints) + " are allowed");
  // Compared in double: an int side above 2^24 is not exact in float.
  for (size_t i = 0; i < prompt.points.size(); ++i) {
    const SamPoint& p = prompt.points[i];
    const double x = p.x, y = p.y;
    const std::string what = "point " + std::to_string(i + 1) + " (" + num(x) + ", " + num(y) + ")";
    if (!std::isfinite(x) || !std::isfinite(y) || x < 0 || y < 0 || x >= W || y >= H)
      return invalid_argument(what + " is outside the " + image);
    if (p.label != 0 && p.label != 1) return invalid_argument(what + " has label " + std::to_string(p.label) + " (1 foreground, 0 background)");
  }
  if (prompt.has_box) {
    const double x0 = prompt.box.x0, y0 = prompt.box.y0, x1 = prompt.box.x1, y1 = prompt.box.y1;
    const bool finite = std::isfinite(x0) && std::isfinite(y0) && std::isfinite(x1) && std::isfinite(y1);
    if (!finite || x0 < 0 || y0 < 0 || x1 > W || y1 > H)
      return invalid_argument("box (" + num(x0) + ", " + num(y0) + ", " + num(x1) + ", " + num(y1) + ") is outside the " + image);
    if (x1 < x0 || y1 < y0) return invalid_argument("box corners must be top-left then bottom-right (x0 <= x1, y0 <= y1)");
  }
  if (mask_input_size > 0 && prompt.mask_input.raw() != nullptr) {
    const int64_t ms = mask_input_size;
    const Shape& s = prompt.mask_input.shape();
    if (prompt.mask_input.dtype() != DType::kF32 || (s != Shape{ms, ms} && s != Shape{1, ms, ms} && s != Shape{1, 1, ms, ms}))
      return invalid_argument("mask_input must be f32 " + shape_string({1, 1, ms, ms}) + " (or " + shape_string({1, ms, ms}) +
                              ") low-resolution logits, got " + dtype_name(prompt.mask_input.dtype()) + " " + shape_string(s));
  }
  return Status::Ok();
}

Status sam_resized_size(int width, int height, int image_size, int* input_width, int* input_height) {
  if (width < 1 || height < 1) return invalid_argument("image size " + std::to_string(width) + "x" + std::to_string(height) + " is empty");
  if (image_size < 1) return invalid_argument("model input size " + std::to_string(image_size) + " is not positive");
  const double scale = static_cast<double>(image_size) / std::max(width, height);
  const int w = static_cast<int>(width * scale + 0.5), h = static_cast<int>(height * scale + 0.5);
  if (w < 1 || h < 1)
    return invalid_argument("a " + std::to_string(width) + "x" + std::to_string(height) + " image resizes to " + std::to_string(w) +
                            "x" + std::to_string(h) + " in the model's " + std::to_string(image_size) + "-pixel input");
  *input_width = w;
  *input_height = h;
  return Status::Ok();
}

Status sam_prompt_tensors(const SamPrompt& prompt, int width, int height, int input_width, int input_height, Tensor* coords,
                          Tensor* labels) {
  if (width < 1 || height < 1 || input_width < 1 || input_height < 1)
    return invalid_argument("image size " + std::to_string(width) + "x" + std::to_string(height) + " (resized to " +
                            std::to_string(input_width) + "x" + std::to_string(input_height) + ") is empty");
  ATROUS_RETURN_IF_ERROR(check_sam_prompt(prompt, width, height, 0));
  const int64_t n = static_cast<int64_t>(prompt.points.size()) + (prompt.has_box ? 2 : 1);
  *coords = Tensor::zeros(DType::kF32, {1, n, 2});
  *labels = Tensor::zeros(DType::kF32, {1, n});
  float* c = coords->data<float>();
  float* l = labels->data<float>();
  const double sx = static_cast<double>(input_width) / width, sy = static_cast<double>(input_height) / height;
  int64_t k = 0;
  auto put = [&](double x, double y, float label) {
    c[2 * k] = static_cast<float>(x * sx);
    c[2 * k + 1] = static_cast<float>(y * sy);
    l[k++] = label;
  };
  for (const SamPoint& p : prompt.points) put(p.x, p.y, static_cast<float>(p.label));
  if (prompt.has_box) {
    put(prompt.box.x0, prompt.box.y0, 2.0f);
    put(prompt.box.x1, prompt.box.y1, 3.0f);
  } else {
    c[2 * k] = c[2 * k + 1] = 0.0f;  // the padding point
    l[k++] = -1.0f;
  }
  return Status::Ok();
}

}  // namespace atrous
