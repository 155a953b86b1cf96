#include "targets.h"

#include <vector>

#include "atrous/atrous.h"
#include "atrous/image.h"
#include "atrous/npy.h"
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

bool run_target(const std::string& name, const uint8_t* data, size_t size) {
  if (name == "model") model_one(data, size);
  else if (name == "weights") weights_one(data, size);
  else if (name == "pickle") pickle_one(data, size);
  else if (name == "image") image_one(data, size);
  else if (name == "npy") npy_one(data, size);
  else return false;
  return true;
}

}  // namespace atrous::fuzz
