// Image decoding/encoding (stb), PIL-compatible resizing, model preprocessing,
// and label-map helpers for segmentation outputs.
#include "atrous/image.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>

#define STB_IMAGE_IMPLEMENTATION
#define STBI_MAX_DIMENSIONS (1 << 24)
#include <stb/stb_image.h>
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>

namespace atrous {

Result<Image> decode_image(const uint8_t* data, size_t size, const std::string& label, int64_t max_pixels) {
  const std::string who = "image '" + label + "'";
  if (size == 0) return invalid_argument(who + " is empty");
  if (size > static_cast<size_t>(INT32_MAX)) return invalid_argument(who + " is larger than 2 GiB");
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
  std::ifstream f(path, std::ios::binary);
  if (!f) return io_error("cannot open image '" + path + "': " + std::strerror(errno));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
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

Result<LabelMap> load_label_png(const std::string& path, int64_t max_pixels) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return io_error("cannot open '" + path + "': " + std::strerror(errno));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (bytes.size() < 33 || std::memcmp(bytes.data(), sig, 8) != 0) return invalid_argument("'" + path + "' is not a PNG label map");
  // Walk the chunks for the colour type and the palette.
  int color_type = -1;
  std::vector<uint8_t> plte;
  size_t pos = 8;
  while (pos + 12 <= bytes.size()) {
    uint32_t len = (uint32_t(bytes[pos]) << 24) | (uint32_t(bytes[pos + 1]) << 16) | (uint32_t(bytes[pos + 2]) << 8) | bytes[pos + 3];
    if (len > bytes.size() - pos - 12) return invalid_argument("'" + path + "': truncated PNG chunk");
    const uint8_t* type = &bytes[pos + 4];
    const uint8_t* data = &bytes[pos + 8];
    if (std::memcmp(type, "IHDR", 4) == 0 && len >= 13) color_type = data[9];
    if (std::memcmp(type, "PLTE", 4) == 0) plte.assign(data, data + len);
    if (std::memcmp(type, "IEND", 4) == 0) break;
    pos += 12 + len;
  }
  ATROUS_ASSIGN_OR_RETURN(Image img, decode_image(bytes.data(), bytes.size(), path, max_pixels));
  LabelMap m;
  m.width = img.width;
  m.height = img.height;
  m.labels.resize(static_cast<size_t>(img.width) * img.height);
  if (color_type == 0 || color_type == 4) {  // gray (+alpha): the value is the label
    for (size_t i = 0; i < m.labels.size(); ++i) m.labels[i] = img.pixels[i * static_cast<size_t>(img.channels)];
    return m;
  }
  if (color_type != 3 || plte.size() < 3)
    return invalid_argument("'" + path + "' is an RGB PNG: label maps must be indexed (palette) or grayscale PNGs");
  // stb expands palette images to RGB(A); map colours back to the first palette index that has them.
  std::vector<int32_t> index_of(1 << 24, -1);
  for (size_t k = plte.size() / 3; k-- > 0;)
    index_of[(size_t(plte[k * 3]) << 16) | (size_t(plte[k * 3 + 1]) << 8) | plte[k * 3 + 2]] = static_cast<int32_t>(k);
  for (size_t i = 0; i < m.labels.size(); ++i) {
    const uint8_t* p = &img.pixels[i * static_cast<size_t>(img.channels)];
    int32_t k = index_of[(size_t(p[0]) << 16) | (size_t(p[1]) << 8) | p[2]];
    if (k < 0) return internal_error("'" + path + "': a pixel colour is not in the palette");
    m.labels[i] = k;
  }
  return m;
}

}  // namespace atrous
