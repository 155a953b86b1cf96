// Image decoding/encoding (stb), PIL-compatible resizing, model preprocessing,
// and label-map helpers for segmentation outputs.
#include "atrous/image.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <memory>
#include <unordered_map>

#include "io/file.h"

#define STB_IMAGE_IMPLEMENTATION
#define STBI_MAX_DIMENSIONS (1 << 24)
#include <stb/stb_image.h>
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>

namespace atrous {

namespace {

// Width and height from the header of a PNG, JPEG, GIF or BMP, read before
// stb_image sees the file, so that an absurd size is refused with its numbers
// even when stb_image would refuse it with a vaguer message.
bool sniff_dimensions(const uint8_t* d, size_t n, int64_t* w, int64_t* h) {
  auto be16 = [&](size_t i) { return (int64_t(d[i]) << 8) | d[i + 1]; };
  auto be32 = [&](size_t i) { return (int64_t(d[i]) << 24) | (int64_t(d[i + 1]) << 16) | (int64_t(d[i + 2]) << 8) | d[i + 3]; };
  auto le32 = [&](size_t i) { return int64_t(int32_t(uint32_t(d[i]) | (uint32_t(d[i + 1]) << 8) | (uint32_t(d[i + 2]) << 16) | (uint32_t(d[i + 3]) << 24))); };
  if (n >= 24 && std::memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0 && std::memcmp(d + 12, "IHDR", 4) == 0) {
    *w = be32(16);
    *h = be32(20);
    return true;
  }
  if (n >= 10 && (std::memcmp(d, "GIF87a", 6) == 0 || std::memcmp(d, "GIF89a", 6) == 0)) {
    *w = d[6] | (int64_t(d[7]) << 8);
    *h = d[8] | (int64_t(d[9]) << 8);
    return true;
  }
  if (n >= 26 && d[0] == 'B' && d[1] == 'M') {
    *w = le32(18);
    *h = std::llabs(le32(22));
    return true;
  }
  if (n >= 4 && d[0] == 0xFF && d[1] == 0xD8) {  // JPEG: walk markers to the first SOFn
    size_t i = 2;
    while (i + 9 < n) {
      if (d[i] != 0xFF) return false;
      uint8_t m = d[i + 1];
      if (m == 0xFF) { ++i; continue; }
      size_t len = static_cast<size_t>(be16(i + 2));
      if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
        *h = be16(i + 5);
        *w = be16(i + 7);
        return true;
      }
      if (len < 2) return false;
      i += 2 + len;
    }
  }
  return false;
}

// stb_image 2.27 (Debian 12) builds a Huffman table from a DHT segment's 16 code
// counts without checking that they add up to at most 256 symbols, and writes past its
// table when they do (found by fuzz_image; upstream fixed it in 2.28). Every 0xFF 0xC4
// (DHT marker) in a JPEG is checked the way stb reads the segment: tables while the
// segment's remaining length is positive, each 1 + 16 count bytes + its symbols, even when
// the length field is too short for them. Checking every occurrence, not only the ones
// a marker walk reaches, is a superset of what stb can see; a valid file never has a
// table over 256 codes, wherever the bytes are.
bool jpeg_huffman_tables_ok(const uint8_t* d, size_t n) {
  // stb takes any run of 0xFF fill bytes before the SOI marker (0xD8).
  size_t soi = 0;
  while (soi < n && d[soi] == 0xFF) ++soi;
  if (soi == 0 || soi >= n || d[soi] != 0xD8) return true;
  for (size_t m = 0; m + 3 < n; ++m) {
    if (d[m] != 0xFF || d[m + 1] != 0xC4) continue;
    int64_t left = ((static_cast<int64_t>(d[m + 2]) << 8) | d[m + 3]) - 2;
    size_t i = m + 4;
    while (left > 0 && i < n) {
      int symbols = 0;
      for (size_t k = 1; k <= 16 && i + k < n; ++k) symbols += d[i + k];
      if (symbols > 256) return false;
      i += 17 + static_cast<size_t>(symbols);
      left -= 17 + symbols;
    }
  }
  return true;
}

}  // namespace

Result<Image> decode_image(const uint8_t* data, size_t size, const std::string& label, int64_t max_pixels) {
  const std::string who = "image '" + label + "'";
  if (size == 0) return invalid_argument(who + " is empty");
  if (size > static_cast<size_t>(INT32_MAX)) return invalid_argument(who + " is larger than 2 GiB");
  int64_t sw = 0, sh = 0;
  if (sniff_dimensions(data, size, &sw, &sh) && sw > 0 && sh > 0 && sw > max_pixels / sh)
    return out_of_memory(who + " claims " + std::to_string(sw) + "x" + std::to_string(sh) + " = " +
                         std::to_string(static_cast<uint64_t>(sw) * static_cast<uint64_t>(sh)) +  // both < 2^32
                         " pixels, over the limit of " + std::to_string(max_pixels));
  if (!jpeg_huffman_tables_ok(data, size))
    return invalid_argument(who + " is corrupt (a JPEG Huffman table lists more than 256 codes)");
  int w = 0, h = 0, c = 0;
  if (!stbi_info_from_memory(data, static_cast<int>(size), &w, &h, &c))
    return invalid_argument(who + " is not a readable image (" + stbi_failure_reason() + ")");
  if (w <= 0 || h <= 0) return invalid_argument(who + " has no pixels");
  int64_t pixels = static_cast<int64_t>(w) * h;
  if (pixels > max_pixels)
    return out_of_memory(who + " claims " + std::to_string(w) + "x" + std::to_string(h) + " = " + std::to_string(pixels) +
                         " pixels, over the limit of " + std::to_string(max_pixels));
  unsigned char* p = stbi_load_from_memory(data, static_cast<int>(size), &w, &h, &c, 0);
  if (!p) return invalid_argument(who + " is corrupt (" + stbi_failure_reason() + ")");
  Image img;
  img.width = w;
  img.height = h;
  img.channels = c;
  img.pixels.assign(p, p + static_cast<size_t>(w) * h * c);
  stbi_image_free(p);
  return img;
}

Result<Image> load_image(const std::string& path, int64_t max_pixels) {
  ATROUS_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, io::read_whole_file(path, kMaxImageFileBytes, "image"));
  return decode_image(bytes.data(), bytes.size(), path, max_pixels);
}

Status save_png(const std::string& path, const Image& image) {
  if (image.width <= 0 || image.height <= 0 || image.channels < 1 || image.channels > 4 ||
      image.pixels.size() != static_cast<size_t>(image.width) * image.height * image.channels)
    return invalid_argument("save_png: inconsistent image");
  if (!stbi_write_png(path.c_str(), image.width, image.height, image.channels, image.pixels.data(), image.width * image.channels))
    return io_error("cannot write PNG '" + path + "'");
  return Status::Ok();
}

Image to_rgb(const Image& im) {
  if (im.channels == 3) return im;
  Image o;
  o.width = im.width;
  o.height = im.height;
  o.channels = 3;
  size_t n = static_cast<size_t>(im.width) * im.height;
  o.pixels.resize(n * 3);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* s = &im.pixels[i * static_cast<size_t>(im.channels)];
    uint8_t* d = &o.pixels[i * 3];
    if (im.channels <= 2) d[0] = d[1] = d[2] = s[0];
    else { d[0] = s[0]; d[1] = s[1]; d[2] = s[2]; }
  }
  return o;
}

namespace {

// PIL's resampling (Imaging/Resample.c): per output pixel, a triangle filter
// with support scaled by the downscale factor, coefficients normalised and
// converted to fixed point with 22 fractional bits; horizontal pass first,
// rounded to 8 bits, then vertical.
constexpr int kPrecisionBits = 32 - 8 - 2;

struct Coeffs {
  int ksize = 0;
  std::vector<int> bounds;   // per output: xmin, xsize
  std::vector<int32_t> k;    // per output: ksize coefficients
};

Coeffs precompute(int in_size, int out_size) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = 1.0 * filterscale;  // bilinear filter support is 1
  Coeffs c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.bounds.resize(static_cast<size_t>(out_size) * 2);
  c.k.assign(static_cast<size_t>(out_size) * c.ksize, 0);
  std::vector<double> kk(static_cast<size_t>(c.ksize));
  for (int xx = 0; xx < out_size; ++xx) {
    double center = (xx + 0.5) * scale;
    double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      double t = (x + xmin - center + 0.5) * ss;
      if (t < 0) t = -t;
      double w = t < 1.0 ? 1.0 - t : 0.0;
      kk[static_cast<size_t>(x)] = w;
      ww += w;
    }
    for (int x = 0; x < xmax; ++x) {
      double v = ww != 0.0 ? kk[static_cast<size_t>(x)] / ww : kk[static_cast<size_t>(x)];
      c.k[static_cast<size_t>(xx) * c.ksize + x] = static_cast<int32_t>(v < 0 ? v * (1 << kPrecisionBits) - 0.5
                                                                             : v * (1 << kPrecisionBits) + 0.5);
    }
    c.bounds[static_cast<size_t>(xx) * 2] = xmin;
    c.bounds[static_cast<size_t>(xx) * 2 + 1] = xmax;
  }
  return c;
}

inline uint8_t clip8(int64_t v) {
  v >>= kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

}  // namespace

Image resize_bilinear_antialias(const Image& im, int width, int height) {
  const int C = im.channels;
  Image tmp;  // horizontal pass
  if (width != im.width) {
    Coeffs cx = precompute(im.width, width);
    tmp.width = width;
    tmp.height = im.height;
    tmp.channels = C;
    tmp.pixels.resize(static_cast<size_t>(width) * im.height * C);
#pragma omp parallel for schedule(static)
    for (int y = 0; y < im.height; ++y)
      for (int xx = 0; xx < width; ++xx) {
        int xmin = cx.bounds[static_cast<size_t>(xx) * 2], xs = cx.bounds[static_cast<size_t>(xx) * 2 + 1];
        const int32_t* k = &cx.k[static_cast<size_t>(xx) * cx.ksize];
        for (int c = 0; c < C; ++c) {
          int64_t ss = 1 << (kPrecisionBits - 1);
          for (int x = 0; x < xs; ++x) ss += static_cast<int64_t>(im.pixels[(static_cast<size_t>(y) * im.width + xmin + x) * C + c]) * k[x];
          tmp.pixels[(static_cast<size_t>(y) * width + xx) * C + c] = clip8(ss);
        }
      }
  } else {
    tmp = im;
  }
  if (height == tmp.height) return tmp;
  Coeffs cy = precompute(tmp.height, height);
  Image out;
  out.width = width;
  out.height = height;
  out.channels = C;
  out.pixels.resize(static_cast<size_t>(width) * height * C);
#pragma omp parallel for schedule(static)
  for (int yy = 0; yy < height; ++yy) {
    int ymin = cy.bounds[static_cast<size_t>(yy) * 2], ys = cy.bounds[static_cast<size_t>(yy) * 2 + 1];
    const int32_t* k = &cy.k[static_cast<size_t>(yy) * cy.ksize];
    for (int x = 0; x < width; ++x)
      for (int c = 0; c < C; ++c) {
        int64_t ss = 1 << (kPrecisionBits - 1);
        for (int y = 0; y < ys; ++y) ss += static_cast<int64_t>(tmp.pixels[(static_cast<size_t>(ymin + y) * width + x) * C + c]) * k[y];
        out.pixels[(static_cast<size_t>(yy) * width + x) * C + c] = clip8(ss);
      }
  }
  return out;
}

Image resize_bilinear(const Image& im, int width, int height) {
  Image out;
  out.width = width;
  out.height = height;
  out.channels = im.channels;
  out.pixels.resize(static_cast<size_t>(width) * height * im.channels);
  const float sy = static_cast<float>(im.height) / height, sx = static_cast<float>(im.width) / width;
#pragma omp parallel for schedule(static)
  for (int y = 0; y < height; ++y) {
    float fy = std::max((y + 0.5f) * sy - 0.5f, 0.0f);
    int y0 = std::min(static_cast<int>(fy), im.height - 1), y1 = std::min(y0 + 1, im.height - 1);
    float ly = fy - y0;
    for (int x = 0; x < width; ++x) {
      float fx = std::max((x + 0.5f) * sx - 0.5f, 0.0f);
      int x0 = std::min(static_cast<int>(fx), im.width - 1), x1 = std::min(x0 + 1, im.width - 1);
      float lx = fx - x0;
      for (int c = 0; c < im.channels; ++c) {
        auto at = [&](int yy, int xx) { return static_cast<float>(im.pixels[(static_cast<size_t>(yy) * im.width + xx) * im.channels + c]); };
        float v = (1 - ly) * ((1 - lx) * at(y0, x0) + lx * at(y0, x1)) + ly * ((1 - lx) * at(y1, x0) + lx * at(y1, x1));
        out.pixels[(static_cast<size_t>(y) * width + x) * im.channels + c] = static_cast<uint8_t>(std::lround(std::min(std::max(v, 0.f), 255.f)));
      }
    }
  }
  return out;
}

Result<Preprocessed> preprocess_image(const Image& image, const PreprocessInfo& pre, int channels) {
  if (image.width <= 0 || image.height <= 0) return invalid_argument("preprocess: empty image");
  if (channels < 0) channels = pre.mean.size() == 1 ? 1 : 3;
  if (channels != 1 && channels != 3) return unsupported("preprocess: the model input has " + std::to_string(channels) + " channels; images give 1 or 3");
  // Channels first: gray (luma) or RGB.
  Image src;
  if (channels == 3) {
    src = to_rgb(image);
  } else {
    src.width = image.width;
    src.height = image.height;
    src.channels = 1;
    src.pixels.resize(static_cast<size_t>(image.width) * image.height);
    for (size_t i = 0; i < src.pixels.size(); ++i) {
      const uint8_t* s = &image.pixels[i * static_cast<size_t>(image.channels)];
      src.pixels[i] = image.channels >= 3 ? static_cast<uint8_t>((299 * s[0] + 587 * s[1] + 114 * s[2] + 500) / 1000) : s[0];
    }
  }
  int w = src.width, h = src.height;
  switch (pre.resize) {
    case PreprocessInfo::Resize::kKeep: break;
    case PreprocessInfo::Resize::kStretch: w = pre.width; h = pre.height; break;
    case PreprocessInfo::Resize::kLongestSide: {
      double scale = static_cast<double>(pre.width) / std::max(src.width, src.height);
      w = static_cast<int>(src.width * scale + 0.5);
      h = static_cast<int>(src.height * scale + 0.5);
      break;
    }
  }
  if (w < 1 || h < 1) return invalid_argument("preprocess: the image resizes to " + std::to_string(w) + "x" + std::to_string(h));
  if (w != src.width || h != src.height) src = pre.antialias ? resize_bilinear_antialias(src, w, h) : resize_bilinear(src, w, h);
  int pw = w, ph = h;
  if (pre.pad_width > 0) pw = std::max(pw, pre.pad_width);
  if (pre.pad_height > 0) ph = std::max(ph, pre.pad_height);
  if (pre.pad_multiple > 1) {
    pw = (pw + pre.pad_multiple - 1) / pre.pad_multiple * pre.pad_multiple;
    ph = (ph + pre.pad_multiple - 1) / pre.pad_multiple * pre.pad_multiple;
  }
  Preprocessed out;
  out.input_name = pre.input;
  out.content_width = w;
  out.content_height = h;
  out.original_width = image.width;
  out.original_height = image.height;
  out.tensor = Tensor::zeros(DType::kF32, {1, channels, ph, pw});
  float* t = out.tensor.data<float>();
  for (int c = 0; c < channels; ++c) {
    int sc = (channels == 3 && pre.bgr) ? 2 - c : c;
    float mean = pre.mean.empty() ? 0.f : pre.mean[std::min<size_t>(static_cast<size_t>(c), pre.mean.size() - 1)];
    float stdv = pre.std.empty() ? 1.f : pre.std[std::min<size_t>(static_cast<size_t>(c), pre.std.size() - 1)];
    float* plane = t + static_cast<size_t>(c) * ph * pw;
    std::fill(plane, plane + static_cast<size_t>(ph) * pw, pre.pad_value);
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        plane[static_cast<size_t>(y) * pw + x] =
            (src.pixels[(static_cast<size_t>(y) * w + x) * channels + sc] * pre.value_scale - mean) / stdv;
  }
  return out;
}

Result<std::vector<int32_t>> argmax_classes(const TensorView& scores) {
  if (scores.dtype != DType::kF32 || scores.shape.size() != 4 || scores.shape[0] != 1)
    return invalid_argument("class scores must be f32 [1, K, H, W], got " + std::string(dtype_name(scores.dtype)) + " " + shape_string(scores.shape));
  const int64_t K = scores.shape[1], HW = scores.shape[2] * scores.shape[3];
  const float* s = scores.as<float>();
  std::vector<int32_t> out(static_cast<size_t>(HW), 0);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < HW; ++i) {
    float best = s[i];
    int32_t arg = 0;
    for (int64_t k = 1; k < K; ++k)
      if (s[k * HW + i] > best) { best = s[k * HW + i]; arg = static_cast<int32_t>(k); }
    out[static_cast<size_t>(i)] = arg;
  }
  return out;
}

std::vector<int32_t> resize_labels(const std::vector<int32_t>& labels, int width, int height, int crop_width,
                                   int crop_height, int out_width, int out_height) {
  std::vector<int32_t> out(static_cast<size_t>(out_width) * out_height);
  for (int y = 0; y < out_height; ++y) {
    int sy = std::min(static_cast<int>(static_cast<int64_t>(y) * crop_height / out_height), height - 1);
    for (int x = 0; x < out_width; ++x) {
      int sx = std::min(static_cast<int>(static_cast<int64_t>(x) * crop_width / out_width), width - 1);
      out[static_cast<size_t>(y) * out_width + x] = labels[static_cast<size_t>(sy) * width + sx];
    }
  }
  return out;
}

std::vector<uint8_t> default_palette() {
  std::vector<uint8_t> p(256 * 3);
  for (int i = 0; i < 256; ++i) {
    int c = i, r = 0, g = 0, b = 0;
    for (int j = 0; j < 8; ++j) {
      r |= ((c >> 0) & 1) << (7 - j);
      g |= ((c >> 1) & 1) << (7 - j);
      b |= ((c >> 2) & 1) << (7 - j);
      c >>= 3;
    }
    p[static_cast<size_t>(i) * 3] = static_cast<uint8_t>(r);
    p[static_cast<size_t>(i) * 3 + 1] = static_cast<uint8_t>(g);
    p[static_cast<size_t>(i) * 3 + 2] = static_cast<uint8_t>(b);
  }
  return p;
}

Image colorize(const std::vector<int32_t>& labels, int width, int height, const std::vector<uint8_t>& palette) {
  const std::vector<uint8_t>& pal = palette.size() >= 3 ? palette : default_palette();
  const size_t n = pal.size() / 3;
  Image o;
  o.width = width;
  o.height = height;
  o.channels = 3;
  o.pixels.resize(static_cast<size_t>(width) * height * 3);
  for (size_t i = 0; i < labels.size(); ++i) {
    size_t k = static_cast<size_t>(labels[i] < 0 ? 0 : labels[i]) % n;
    std::memcpy(&o.pixels[i * 3], &pal[k * 3], 3);
  }
  return o;
}

Image overlay(const Image& rgb, const std::vector<int32_t>& labels, const std::vector<uint8_t>& palette, float alpha) {
  const std::vector<uint8_t>& pal = palette.size() >= 3 ? palette : default_palette();
  const size_t n = pal.size() / 3;
  Image o = to_rgb(rgb);
  for (size_t i = 0; i < labels.size() && i * 3 < o.pixels.size(); ++i) {
    if (labels[i] == 0) continue;
    size_t k = static_cast<size_t>(labels[i] < 0 ? 0 : labels[i]) % n;
    for (int c = 0; c < 3; ++c)
      o.pixels[i * 3 + static_cast<size_t>(c)] = static_cast<uint8_t>(
          std::lround((1 - alpha) * o.pixels[i * 3 + static_cast<size_t>(c)] + alpha * pal[k * 3 + static_cast<size_t>(c)]));
  }
  return o;
}

namespace {

uint32_t crc32(const uint8_t* d, size_t n, uint32_t crc = 0) {
  static uint32_t table[256];
  static bool init = [] {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
    return true;
  }();
  (void)init;
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ d[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

void put32(std::vector<uint8_t>& v, uint32_t x) {
  for (int s = 24; s >= 0; s -= 8) v.push_back(static_cast<uint8_t>(x >> s));
}

void chunk(std::vector<uint8_t>& png, const char* type, const std::vector<uint8_t>& data) {
  put32(png, static_cast<uint32_t>(data.size()));
  size_t start = png.size();
  png.insert(png.end(), type, type + 4);
  png.insert(png.end(), data.begin(), data.end());
  put32(png, crc32(&png[start], png.size() - start));
}

}  // namespace

Status save_label_png(const std::string& path, const LabelMap& map, const std::vector<uint8_t>& palette) {
  if (map.width <= 0 || map.height <= 0 || map.labels.size() != static_cast<size_t>(map.width) * map.height)
    return invalid_argument("save_label_png: inconsistent label map");
  std::vector<uint8_t> pal = palette.size() >= 3 ? palette : default_palette();
  if (pal.size() > 256 * 3) pal.resize(256 * 3);
  std::vector<uint8_t> raw;
  raw.reserve(static_cast<size_t>(map.width + 1) * map.height);
  for (int y = 0; y < map.height; ++y) {
    raw.push_back(0);  // filter: none
    for (int x = 0; x < map.width; ++x) {
      int32_t l = map.labels[static_cast<size_t>(y) * map.width + x];
      if (l < 0 || l > 255) return invalid_argument("save_label_png: label " + std::to_string(l) + " does not fit in 8 bits");
      raw.push_back(static_cast<uint8_t>(l));
    }
  }
  int zlen = 0;
  unsigned char* z = stbi_zlib_compress(raw.data(), static_cast<int>(raw.size()), &zlen, 8);
  if (!z) return internal_error("PNG compression failed");
  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  std::vector<uint8_t> ihdr;
  put32(ihdr, static_cast<uint32_t>(map.width));
  put32(ihdr, static_cast<uint32_t>(map.height));
  ihdr.insert(ihdr.end(), {8, 3, 0, 0, 0});  // 8-bit, indexed colour
  chunk(png, "IHDR", ihdr);
  chunk(png, "PLTE", pal);
  chunk(png, "IDAT", std::vector<uint8_t>(z, z + zlen));
  STBIW_FREE(z);
  chunk(png, "IEND", {});
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return io_error("cannot write '" + path + "': " + std::strerror(errno));
  bool ok = std::fwrite(png.data(), 1, png.size(), f) == png.size();
  ok = std::fclose(f) == 0 && ok;
  return ok ? Status::Ok() : io_error("writing '" + path + "' failed");
}

namespace {

uint32_t be32(const uint8_t* p) { return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3]; }

// Undoes the PNG row filters in place (bpp: bytes per complete pixel, >= 1).
bool unfilter(uint8_t* data, size_t rows, size_t stride, size_t bpp) {
  std::vector<uint8_t> zero(stride, 0);
  const uint8_t* prev = zero.data();
  for (size_t y = 0; y < rows; ++y) {
    uint8_t* row = data + y * (stride + 1);
    const uint8_t f = row[0];
    uint8_t* cur = row + 1;
    for (size_t x = 0; x < stride; ++x) {
      const int a = x >= bpp ? cur[x - bpp] : 0, b = prev[x], c = x >= bpp ? prev[x - bpp] : 0;
      int v = cur[x];
      switch (f) {
        case 0: break;
        case 1: v += a; break;
        case 2: v += b; break;
        case 3: v += (a + b) / 2; break;
        case 4: {
          const int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
          v += (pa <= pb && pa <= pc) ? a : (pb <= pc ? b : c);
          break;
        }
        default: return false;
      }
      cur[x] = static_cast<uint8_t>(v);
    }
    prev = cur;
  }
  return true;
}

}  // namespace

Result<LabelMap> load_label_png(const std::string& path, int64_t max_pixels) {
  ATROUS_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, io::read_whole_file(path, kMaxImageFileBytes, "label map"));
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (bytes.size() < 33 || std::memcmp(bytes.data(), sig, 8) != 0) return invalid_argument("'" + path + "' is not a PNG label map");
  // Walk the chunks for the header, the palette and the image data.
  int color_type = -1, bit_depth = 0, interlace = 0;
  uint32_t width = 0, height = 0;
  std::vector<uint8_t> plte, idat;
  size_t pos = 8;
  while (pos + 12 <= bytes.size()) {
    const uint32_t len = be32(&bytes[pos]);
    if (len > bytes.size() - pos - 12) return invalid_argument("'" + path + "': truncated PNG chunk");
    const uint8_t* type = &bytes[pos + 4];
    const uint8_t* data = &bytes[pos + 8];
    if (std::memcmp(type, "IHDR", 4) == 0 && len >= 13) {
      width = be32(data);
      height = be32(data + 4);
      bit_depth = data[8];
      color_type = data[9];
      interlace = data[12];
    }
    if (std::memcmp(type, "PLTE", 4) == 0) plte.assign(data, data + len);
    if (std::memcmp(type, "IDAT", 4) == 0) idat.insert(idat.end(), data, data + len);
    if (std::memcmp(type, "IEND", 4) == 0) break;
    pos += 12 + len;
  }
  LabelMap m;
  // Indexed, not interlaced (what save_label_png, PIL and PASCAL VOC write): the
  // palette indices themselves, decoded here, so palettes that repeat a colour
  // (or colours never used) do not matter.
  if (color_type == 3 && interlace == 0 && (bit_depth == 1 || bit_depth == 2 || bit_depth == 4 || bit_depth == 8) &&
      width > 0 && height > 0) {
    if (static_cast<int64_t>(width) * height > max_pixels)
      return out_of_memory("label map '" + path + "' claims " + std::to_string(width) + "x" + std::to_string(height) +
                           " pixels, over the limit of " + std::to_string(max_pixels));
    const size_t stride = (static_cast<size_t>(width) * bit_depth + 7) / 8;
    const size_t expect = (stride + 1) * height;
    if (idat.size() > static_cast<size_t>(INT32_MAX) || expect > static_cast<size_t>(INT32_MAX))
      return invalid_argument("label map '" + path + "' is too large");
    int got = 0;
    char* raw = stbi_zlib_decode_malloc_guesssize(reinterpret_cast<const char*>(idat.data()), static_cast<int>(idat.size()),
                                                   static_cast<int>(expect), &got);
    if (!raw) return invalid_argument("label map '" + path + "' is corrupt (bad compressed data)");
    std::unique_ptr<char, void (*)(void*)> hold(raw, [](void* q) { STBI_FREE(q); });
    if (static_cast<size_t>(got) < expect) return invalid_argument("label map '" + path + "' is truncated");
    auto* d = reinterpret_cast<uint8_t*>(raw);
    if (!unfilter(d, height, stride, 1)) return invalid_argument("label map '" + path + "' is corrupt (bad row filter)");
    m.width = static_cast<int>(width);
    m.height = static_cast<int>(height);
    m.labels.resize(static_cast<size_t>(width) * height);
    const int per_byte = 8 / bit_depth, mask = (1 << bit_depth) - 1;
    for (size_t y = 0; y < height; ++y) {
      const uint8_t* row = d + y * (stride + 1) + 1;
      for (size_t x = 0; x < width; ++x) {
        const int shift = 8 - bit_depth * (1 + static_cast<int>(x % static_cast<size_t>(per_byte)));
        m.labels[y * width + x] = (row[x / static_cast<size_t>(per_byte)] >> shift) & mask;
      }
    }
    return m;
  }
  ATROUS_ASSIGN_OR_RETURN(Image img, decode_image(bytes.data(), bytes.size(), path, max_pixels));
  m.width = img.width;
  m.height = img.height;
  m.labels.resize(static_cast<size_t>(img.width) * img.height);
  if (color_type == 0 || color_type == 4) {  // gray (+alpha): the value is the label
    if (bit_depth == 16)
      return unsupported("'" + path + "' is a 16-bit grayscale PNG: label maps must have 8-bit values (classes 0..255)");
    for (size_t i = 0; i < m.labels.size(); ++i) m.labels[i] = img.pixels[i * static_cast<size_t>(img.channels)];
    return m;
  }
  if (color_type != 3 || plte.size() < 3)
    return invalid_argument("'" + path + "' is an RGB PNG: label maps must be indexed (palette) or grayscale PNGs");
  // Interlaced indexed PNG: stb expands it to RGB(A); map colours back to the first palette index that has them.
  std::unordered_map<uint32_t, int32_t> index_of;
  for (size_t k = plte.size() / 3; k-- > 0;)
    index_of[(uint32_t(plte[k * 3]) << 16) | (uint32_t(plte[k * 3 + 1]) << 8) | plte[k * 3 + 2]] = static_cast<int32_t>(k);
  for (size_t i = 0; i < m.labels.size(); ++i) {
    const uint8_t* p = &img.pixels[i * static_cast<size_t>(img.channels)];
    auto it = index_of.find((uint32_t(p[0]) << 16) | (uint32_t(p[1]) << 8) | p[2]);
    if (it == index_of.end()) return internal_error("'" + path + "': a pixel colour is not in the palette");
    m.labels[i] = it->second;
  }
  return m;
}

}  // namespace atrous
