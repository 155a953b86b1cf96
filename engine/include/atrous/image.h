// Images in and out, and the model's own pre- and postprocessing.
//
// Decoding (JPEG, PNG, BMP, TGA, GIF's first frame; via stb_image) treats the
// bytes as untrusted: the header's dimensions are checked against a pixel
// limit before anything is decoded, so a file claiming 100000×100000 pixels
// is refused, not allocated. Images are 8-bit, interleaved, 1–4 channels.
//
//   ATROUS_ASSIGN_OR_RETURN(atrous::Image img, atrous::load_image("street.jpg"));
//   ATROUS_ASSIGN_OR_RETURN(atrous::Preprocessed p,
//                           atrous::preprocess_image(img, model->entry("")->preprocess));
//   session->set_input(p.input_name, p.tensor.view());
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "atrous/model.h"
#include "atrous/status.h"
#include "atrous/tensor.h"

namespace atrous {

struct Image {
  int width = 0, height = 0, channels = 0;  // channels: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA
  std::vector<uint8_t> pixels;              // height × width × channels
};

constexpr int64_t kDefaultMaxPixels = 100'000'000;  // 100 megapixels
// load_image() and load_label_png() read regular files of at most this size (a FIFO or
// /dev/zero is refused instead of read until memory runs out).
constexpr uint64_t kMaxImageFileBytes = uint64_t{1} << 30;  // 1 GiB

Result<Image> decode_image(const uint8_t* data, size_t size, const std::string& label = "<memory>",
                           int64_t max_pixels = kDefaultMaxPixels);
Result<Image> load_image(const std::string& path, int64_t max_pixels = kDefaultMaxPixels);
Status save_png(const std::string& path, const Image& image);

// Gray, gray+alpha or RGBA to RGB (alpha dropped); RGB unchanged.
Image to_rgb(const Image& image);
// PIL-compatible resize of 8-bit images (Image.resize with BILINEAR: a triangle
// filter widened by the downscale factor, i.e. antialiased, 22-bit fixed point).
Image resize_bilinear_antialias(const Image& image, int width, int height);
// Plain bilinear (half-pixel centres, no antialiasing), rounded to 8 bits.
Image resize_bilinear(const Image& image, int width, int height);

// The tensor the model's preprocessing makes of an image, and where the image
// content lies in it (before padding).
struct Preprocessed {
  std::string input_name;
  Tensor tensor;                   // [1, C, H, W] f32
  int content_width = 0, content_height = 0;  // resized image inside the (padded) tensor
  int original_width = 0, original_height = 0;
};
// `channels` is the model input's channel count (1 or 3; -1 to follow mean/std).
Result<Preprocessed> preprocess_image(const Image& image, const PreprocessInfo& pre, int channels = 3);

// Class index per pixel from [1, K, H, W] scores (first maximum wins).
Result<std::vector<int32_t>> argmax_classes(const TensorView& scores);
// Nearest-neighbour resize of a label map (content region crop first).
std::vector<int32_t> resize_labels(const std::vector<int32_t>& labels, int width, int height, int crop_width,
                                   int crop_height, int out_width, int out_height);
// The PASCAL VOC colour map (256 entries), used when a model has no palette.
std::vector<uint8_t> default_palette();
// Colour image of a label map; labels beyond the palette wrap around it.
Image colorize(const std::vector<int32_t>& labels, int width, int height, const std::vector<uint8_t>& palette);
// Blends colours over the image (RGB) where label != 0 (background stays visible).
Image overlay(const Image& rgb, const std::vector<int32_t>& labels, const std::vector<uint8_t>& palette, float alpha = 0.5f);

// Label maps as PNG: an 8-bit indexed (palette) PNG whose pixel values are the
// class indices and whose palette colours them, as PASCAL VOC ships them.
struct LabelMap {
  int width = 0, height = 0;
  std::vector<int32_t> labels;
};
Status save_label_png(const std::string& path, const LabelMap& map, const std::vector<uint8_t>& palette);
// Reads class indices from an indexed PNG (palette indices), or a grayscale PNG
// (values). RGB PNGs are refused: their colours are not indices.
Result<LabelMap> load_label_png(const std::string& path, int64_t max_pixels = kDefaultMaxPixels);

}  // namespace atrous
