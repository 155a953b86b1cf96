// Recipe `deeplabv3`: torchvision's deeplabv3_resnet50 / deeplabv3_resnet101 (and
// any torchvision ResNet depth) state dicts, keys backbone.*, classifier.*,
// optional aux_classifier.*.
//
// The graph is torchvision's DeepLabV3.forward in eval mode:
//   backbone: ResNet with replace_stride_with_dilation [false, true, true] (output
//     stride 8: layer3 dilation 2, layer4 dilation 4; the first block of a dilated
//     stage keeps the previous dilation), BatchNorm as nodes (folded at plan time);
//   classifier.0 = ASPP: 1×1 conv-BN-ReLU, one 3×3 conv-BN-ReLU per atrous rate
//     (dilation = padding = rate), image pooling (global average → 1×1 conv-BN-ReLU →
//     bilinear back to the map, align_corners false), concat, 1×1 projection-BN-ReLU
//     (dropout is the identity);
//   classifier.1-4: 3×3 conv-BN-ReLU, 1×1 conv to the classes;
//   output "out": bilinear to the input size (align_corners false).
// aux_classifier (FCNHead on layer3) becomes a second output "aux" with `aux: true`;
// by default its keys are dropped (inference rarely wants it, and it costs a 3×3
// conv over 1024 channels at 1/8 resolution).
// Node names follow the PyTorch modules, so `--check` can compare intermediates
// (a block's output is named after the block, e.g. backbone.layer4.2).
#include "convert/resnet_backbone.h"

namespace atrous::convert {
namespace {

const char* const kVocClasses[] = {"background", "aeroplane", "bicycle", "bird",  "boat",        "bottle", "bus",
                                   "car",        "cat",       "chair",   "cow",   "diningtable", "dog",    "horse",
                                   "motorbike",  "person",    "pottedplant", "sheep", "sofa",    "train",  "tvmonitor"};

int resize_like(GraphBuilder& g, const std::string& name, int x, int like, bool align_corners) {
  fb::ResizeT r;
  r.mode = fb::ResizeMode::Bilinear;
  r.align_corners = align_corners;
  return g.node(name, r, {x, like});
}

// torchvision.models.segmentation.deeplabv3.ASPP, keys <p>.convs.{i}.*, <p>.project.*.
int aspp(RecipeContext& ctx, GraphBuilder& g, const std::string& p, int x, int64_t in, const std::vector<int64_t>& rates) {
  const int64_t out = ctx.dim(p + ".convs.0.0.weight", 0);
  std::vector<int> branches;
  branches.push_back(conv_bn_relu(ctx, g, p + ".convs.0.0", p + ".convs.0.1", p + ".convs.0", x, in, out, ConvSpec{}));
  for (size_t i = 0; i < rates.size(); ++i) {
    const std::string b = p + ".convs." + std::to_string(i + 1);
    ConvSpec s;
    s.kh = s.kw = 3;
    s.dilation = static_cast<int>(rates[i]);
    branches.push_back(conv_bn_relu(ctx, g, b + ".0", b + ".1", b, x, in, out, s));
  }
  const std::string pool = p + ".convs." + std::to_string(rates.size() + 1);
  fb::GlobalPoolT gp;
  gp.kind = fb::PoolKind::Avg;
  int pooled = g.node(pool + ".0", gp, {x});
  pooled = conv_bn_relu(ctx, g, pool + ".1", pool + ".2", pool + ".3", pooled, in, out, ConvSpec{});
  branches.push_back(resize_like(g, pool, pooled, x, false));
  fb::ConcatT cat;
  cat.axis = 1;
  int y = g.node(p + ".cat", cat, branches);
  const int64_t n = static_cast<int64_t>(branches.size());
  return conv_bn_relu(ctx, g, p + ".project.0", p + ".project.1", p + ".project", y, n * out, out, ConvSpec{});
}

Status set_class_postprocess(RecipeContext& ctx, GraphBuilder& g, int64_t classes) {
  ATROUS_RETURN_IF_ERROR(ctx.apply_image_metadata(g, "image", "out"));
  const Config& c = ctx.config();
  if (c.given("class_names") || c.given("postprocess") || c.given("scores_output")) return Status::Ok();
  // No names given: torchvision's VOC categories for 21 classes, else none.
  fb::PostprocessT post;
  post.kind = fb::PostKind::ArgmaxClasses;
  post.output = "out";
  if (classes == 21)
    for (const char* n : kVocClasses) post.class_names.push_back(n);
  if (c.given("palette")) {
    ATROUS_ASSIGN_OR_RETURN(nlohmann::json pal, c.get_json("palette"));
    for (const auto& e : pal)
      for (const auto& v : (e.is_array() ? e : nlohmann::json::array({e}))) post.palette.push_back(v.get<uint8_t>());
  }
  g.set_postprocess(post);
  return Status::Ok();
}

Status build_deeplabv3(RecipeContext& ctx) {
  GraphBuilder& g = ctx.model().graph("main");
  const Config& c = ctx.config();
  ATROUS_ASSIGN_OR_RETURN(std::vector<int64_t> rates, c.get_ints("atrous_rates"));
  ATROUS_ASSIGN_OR_RETURN(bool with_aux, c.get_bool("aux"));
  ResNetSpec spec;
  spec.prefix = "backbone";
  ATROUS_ASSIGN_OR_RETURN(spec.dilate, dilation_config(c, "replace_stride_with_dilation"));
  for (int64_t r : rates)
    if (r < 1 || r > 4096) return invalid_argument("deeplabv3: atrous rates must be in 1..4096, got " + std::to_string(r));

  ATROUS_ASSIGN_OR_RETURN(int branches, ctx.count_blocks("classifier.0.convs.{i}"));
  if (branches != static_cast<int>(rates.size()) + 2)
    return invalid_argument("deeplabv3: the checkpoint's ASPP has " + std::to_string(branches) +
                            " branches (1×1, one per rate, pooling), but atrous_rates lists " +
                            std::to_string(rates.size()) + " rates");
  const int64_t classes = ctx.dim("classifier.4.weight", 0);
  const int64_t head = ctx.dim("classifier.1.weight", 0);
  if (classes < 1 || head < 1) return Status::Ok();  // recorded as missing keys

  int image = g.input("image", DType::kF32, {-1, 3, -1, -1});
  ATROUS_ASSIGN_OR_RETURN(ResNetFeatures f, build_resnet(ctx, g, image, spec));
  if (!ctx.problems().empty()) return Status::Ok();

  int x = aspp(ctx, g, "classifier.0", f.stages[3], f.channels[3], rates);
  const int64_t aspp_out = ctx.dim("classifier.0.project.0.weight", 0);
  ConvSpec c3;
  c3.kh = c3.kw = 3;
  x = conv_bn_relu(ctx, g, "classifier.1", "classifier.2", "classifier.3", x, aspp_out, head, c3);
  ConvSpec cls;
  cls.bias = true;
  x = conv_node(ctx, g, "classifier.4", x, head, classes, cls);
  g.output(resize_like(g, "upsample", x, image, false), "out");

  const bool has_aux = ctx.has_prefix("aux_classifier.");
  if (with_aux && !has_aux)
    ctx.problem(ProblemKind::kMissing, "aux_classifier.0.weight",
                "aux: true, but the checkpoint has no aux_classifier.* keys (convert with --set aux=false)");
  if (with_aux && has_aux) {
    const int64_t aux_mid = ctx.dim("aux_classifier.0.weight", 0);
    const int64_t aux_classes = ctx.dim("aux_classifier.4.weight", 0);
    int a = conv_bn_relu(ctx, g, "aux_classifier.0", "aux_classifier.1", "aux_classifier.2", f.stages[2], f.channels[2],
                         aux_mid, c3);
    a = conv_node(ctx, g, "aux_classifier.4", a, aux_mid, aux_classes, cls);
    g.output(resize_like(g, "aux_upsample", a, image, false), "aux");
  } else {
    for (const std::string& k : ctx.keys_with_prefix("aux_classifier.")) ctx.ignore(k);
  }
  for (const std::string& k : ctx.keys_with_prefix("backbone.fc.")) ctx.ignore(k);

  ModelBuilder& mb = ctx.model();
  mb.set_metadata("deeplabv3.backbone", f.describe());
  std::string r;
  for (int64_t v : rates) r += (r.empty() ? "" : ",") + std::to_string(v);
  mb.set_metadata("deeplabv3.atrous_rates", r);
  mb.set_metadata("deeplabv3.output_stride", std::to_string(spec.dilate[2] ? (spec.dilate[1] ? 8 : 16) : 32));
  mb.set_metadata("deeplabv3.num_classes", std::to_string(classes));
  return set_class_postprocess(ctx, g, classes);
}

}  // namespace

const Recipe kDeeplabv3Recipe = {
    "deeplabv3",
    "torchvision DeepLabV3 with a ResNet backbone (deeplabv3_resnet50/101): backbone.*, classifier.*, aux_classifier.*",
    {
        {"atrous_rates", ConfigType::kIntList, "[12, 24, 36]", "ASPP rates (torchvision: 12, 24, 36)"},
        {"replace_stride_with_dilation", ConfigType::kArray, "[false, true, true]",
         "dilation instead of stride in layer2..4 (torchvision: [false, true, true], output stride 8)"},
        {"aux", ConfigType::kBool, "false",
         "convert aux_classifier.* as a second output 'aux' (else its keys are dropped)"},
        {"value_scale", ConfigType::kFloat, "0.00392156862745098", "pixels × this first (torchvision: 1/255)"},
        {"mean", ConfigType::kFloatList, "[0.485, 0.456, 0.406]", "per-channel mean (ImageNet)"},
        {"std", ConfigType::kFloatList, "[0.229, 0.224, 0.225]", "per-channel std (ImageNet)"},
    },
    build_deeplabv3,
    /*image=*/true,
};

}  // namespace atrous::convert
