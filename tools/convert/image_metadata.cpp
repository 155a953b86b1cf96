// Image recipes' preprocessing and postprocessing keys, and how they become
// the model's Preprocess/Postprocess tables (what `atrous run` reads).
#include "convert/recipe.h"

namespace atrous::convert {

std::vector<ConfigKey> image_config_keys() {
  return {
      {"input_size", ConfigType::kIntList, "", "[H, W] the image is resized to (stretch), or [S] for the longest side"},
      {"resize", ConfigType::kString, "", "keep | stretch | longest_side (default: stretch for [H, W], longest_side for [S], else keep)"},
      {"antialias", ConfigType::kBool, "", "PIL-style antialiased resize"},
      {"channel_order", ConfigType::kString, "", "RGB | BGR"},
      {"value_scale", ConfigType::kFloat, "", "pixel values (0..255) are multiplied by this first (1/255 for [0, 1])"},
      {"mean", ConfigType::kFloatList, "", "per-channel mean subtracted after value_scale"},
      {"std", ConfigType::kFloatList, "", "per-channel std divided by after the mean"},
      {"pad_size", ConfigType::kIntList, "", "[H, W]: pad right/bottom to this size"},
      {"pad_multiple", ConfigType::kInt, "", "pad right/bottom to a multiple of this"},
      {"pad_value", ConfigType::kFloat, "", "padding value (normalised units)"},
      {"image_input", ConfigType::kString, "", "graph input that takes the image (default: the first)"},
      {"postprocess", ConfigType::kString, "",
       "none | argmax_classes | class_index | mask_threshold (default: argmax_classes when class_names are given)"},
      {"scores_output", ConfigType::kString, "", "graph output the postprocessing reads (default: the first)"},
      {"class_names", ConfigType::kStringList, "", "one name per class"},
      {"palette", ConfigType::kArray, "", "RGB colour per class: [[r, g, b], ...] or a flat list"},
      {"mask_threshold", ConfigType::kFloat, "", "mask where the logit exceeds this (mask_threshold)"},
  };
}

Status RecipeContext::apply_image_metadata(GraphBuilder& g, const std::string& input, const std::string& output) {
  const Config& c = config_;
  auto bad = [](const std::string& key, const std::string& why) {
    return invalid_argument("config key '" + key + "': " + why);
  };
  static const char* kPreKeys[] = {"input_size", "resize",   "antialias", "channel_order", "value_scale", "mean",
                                   "std",        "pad_size", "pad_multiple", "pad_value",   "image_input"};
  bool any_pre = false;
  for (const char* k : kPreKeys) any_pre = any_pre || (c.declared(k) && c.has(k));
  if (any_pre) {
    fb::PreprocessT p;
    p.input = input;
    if (c.has("image_input")) { ATROUS_ASSIGN_OR_RETURN(p.input, c.get_string("image_input")); }
    std::vector<int64_t> size;
    if (c.has("input_size")) {
      ATROUS_ASSIGN_OR_RETURN(size, c.get_ints("input_size"));
      if (size.empty() || size.size() > 2) return bad("input_size", "expected [H, W] or [S]");
      for (int64_t d : size)
        if (d < 1 || d > 65536) return bad("input_size", "sizes must be in 1..65536");
    }
    std::string resize = size.empty() ? "keep" : size.size() == 1 ? "longest_side" : "stretch";
    if (c.has("resize")) { ATROUS_ASSIGN_OR_RETURN(resize, c.get_string("resize")); }
    if (resize == "keep") {
      p.resize = fb::ResizePolicy::Keep;
    } else if (resize == "stretch") {
      if (size.size() != 2) return bad("resize", "stretch needs input_size [H, W]");
      p.resize = fb::ResizePolicy::Stretch;
      p.height = static_cast<int32_t>(size[0]);
      p.width = static_cast<int32_t>(size[1]);
    } else if (resize == "longest_side") {
      if (size.empty()) return bad("resize", "longest_side needs input_size [S]");
      p.resize = fb::ResizePolicy::LongestSide;
      p.width = p.height = static_cast<int32_t>(size.back());
    } else {
      return bad("resize", "'" + resize + "' is not one of keep, stretch, longest_side");
    }
    if (c.has("antialias")) { ATROUS_ASSIGN_OR_RETURN(p.antialias, c.get_bool("antialias")); }
    if (c.has("channel_order")) {
      ATROUS_ASSIGN_OR_RETURN(std::string order, c.get_string("channel_order"));
      if (order == "RGB" || order == "rgb") p.channel_order = fb::ChannelOrder::RGB;
      else if (order == "BGR" || order == "bgr") p.channel_order = fb::ChannelOrder::BGR;
      else return bad("channel_order", "'" + order + "' is not RGB or BGR");
    }
    if (c.has("value_scale")) {
      ATROUS_ASSIGN_OR_RETURN(double v, c.get_float("value_scale"));
      p.value_scale = static_cast<float>(v);
    }
    std::vector<double> mean, stdv;
    if (c.has("mean")) { ATROUS_ASSIGN_OR_RETURN(mean, c.get_floats("mean")); }
    if (c.has("std")) { ATROUS_ASSIGN_OR_RETURN(stdv, c.get_floats("std")); }
    if (mean.size() > 4) return bad("mean", "at most 4 channels");
    if (!stdv.empty() && stdv.size() != mean.size() && !mean.empty()) return bad("std", "needs one entry per mean entry");
    if (mean.empty() && !stdv.empty()) mean.assign(stdv.size(), 0.0);
    for (double s : stdv)
      if (!(s > 0)) return bad("std", "entries must be positive");
    for (double m : mean) p.mean.push_back(static_cast<float>(m));
    for (double s : stdv) p.std.push_back(static_cast<float>(s));
    if (c.has("pad_size")) {
      ATROUS_ASSIGN_OR_RETURN(auto pad, c.get_ints("pad_size"));
      if (pad.size() != 2 || pad[0] < 0 || pad[1] < 0 || pad[0] > 65536 || pad[1] > 65536)
        return bad("pad_size", "expected [H, W] within 0..65536");
      p.pad_height = static_cast<int32_t>(pad[0]);
      p.pad_width = static_cast<int32_t>(pad[1]);
    }
    if (c.has("pad_multiple")) {
      ATROUS_ASSIGN_OR_RETURN(int64_t m, c.get_int("pad_multiple"));
      if (m < 0 || m > 4096) return bad("pad_multiple", "must be in 0..4096");
      p.pad_multiple = static_cast<int32_t>(m);
    }
    if (c.has("pad_value")) {
      ATROUS_ASSIGN_OR_RETURN(double v, c.get_float("pad_value"));
      p.pad_value = static_cast<float>(v);
    }
    g.set_preprocess(p);
  }

  bool any_post = false;
  for (const char* k : {"postprocess", "class_names", "palette", "mask_threshold", "scores_output"})
    any_post = any_post || (c.declared(k) && c.has(k));
  if (any_post) {
    fb::PostprocessT p;
    p.output = output;
    if (c.has("scores_output")) { ATROUS_ASSIGN_OR_RETURN(p.output, c.get_string("scores_output")); }
    std::string kind = c.has("class_names") ? "argmax_classes" : c.has("mask_threshold") ? "mask_threshold" : "none";
    if (c.has("postprocess")) { ATROUS_ASSIGN_OR_RETURN(kind, c.get_string("postprocess")); }
    if (kind == "none") p.kind = fb::PostKind::None;
    else if (kind == "argmax_classes") p.kind = fb::PostKind::ArgmaxClasses;
    else if (kind == "class_index") p.kind = fb::PostKind::ClassIndex;
    else if (kind == "mask_threshold") p.kind = fb::PostKind::MaskThreshold;
    else return bad("postprocess", "'" + kind + "' is not one of none, argmax_classes, class_index, mask_threshold");
    if (c.has("class_names")) { ATROUS_ASSIGN_OR_RETURN(p.class_names, c.get_strings("class_names")); }
    if (c.has("palette")) {
      ATROUS_ASSIGN_OR_RETURN(nlohmann::json pal, c.get_json("palette"));
      for (const auto& e : pal) {
        std::vector<nlohmann::json> items = e.is_array() ? e.get<std::vector<nlohmann::json>>() : std::vector<nlohmann::json>{e};
        if (e.is_array() && items.size() != 3) return bad("palette", "each colour is [r, g, b]");
        for (const auto& v : items) {
          if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > 255)
            return bad("palette", "colour components are integers in 0..255");
          p.palette.push_back(static_cast<uint8_t>(v.get<int64_t>()));
        }
      }
      if (p.palette.size() % 3 != 0) return bad("palette", "a flat palette needs 3 values per class");
      if (!p.class_names.empty() && p.palette.size() / 3 < p.class_names.size())
        return bad("palette", std::to_string(p.palette.size() / 3) + " colours for " +
                                  std::to_string(p.class_names.size()) + " classes");
    }
    if (c.has("mask_threshold")) {
      ATROUS_ASSIGN_OR_RETURN(double v, c.get_float("mask_threshold"));
      p.mask_threshold = static_cast<float>(v);
    }
    g.set_postprocess(p);
  }
  return Status::Ok();
}

}  // namespace atrous::convert
