// Recipe `gcn`: Global Convolutional Network (Peng et al., "Large Kernel Matters",
// 2017) in the formulation of the commonly used PyTorch code
// (ZijunDeng/pytorch-semantic-segmentation, models/gcn.py) with a torchvision
// ResNet backbone. The reference module is tests/segmentation/gcn_net.py; the key
// layout is documented in docs/converter.md ("gcn"):
//   backbone.*                      torchvision ResNet (any depth/width; fc.* ignored)
//   gcm{1..4}.conv_{l1,l2,r1,r2}.*  GCN blocks on layer4, layer3, layer2, layer1
//   brm{1..9}.conv{1,2}.*           Boundary Refinement blocks
// Forward:
//   fm0 = relu(bn1(conv1(x)))  (stride 2);  fm1..fm4 = layer1..layer4
//   g1 = brm1(gcm1(fm4)); g2 = brm2(gcm2(fm3)); g3 = brm3(gcm3(fm2)); g4 = brm4(gcm4(fm1))
//   fs1 = brm5(up(g1, fm3) + g2); fs2 = brm6(up(fs1, fm2) + g3); fs3 = brm7(up(fs2, fm1) + g4)
//   fs4 = brm8(up(fs3, fm0));  out = brm9(up(fs4, x))
// with up() bilinear to the other map's size (align_corners true, as F.upsample_bilinear;
// config `align_corners`). GCN(x) = conv_l2(conv_l1(x)) + conv_r2(conv_r1(x)) with k×1,
// 1×k, 1×k, k×1 convs (bias, no BN or activation; k odd, read per block from the
// weights); BR(x) = x + conv2(relu(conv1(x))) with 3×3 convs. At plan time the GCN
// sum becomes conv_l2's fused residual (conv_r2's output) and BR becomes two convs
// (ReLU and the residual add fused); the class-channel convs run conv2d_spatial in NCHW
// where it takes them, oneDNN in its blocked layout elsewhere (docs/segmentation.md).
#include "convert/resnet_backbone.h"

namespace atrous::convert {
namespace {

// GCN block: left k×1 → 1×k, right 1×k → k×1, summed (the Add node is named `p`).
int gcn_block(RecipeContext& ctx, GraphBuilder& g, const std::string& p, int x, int64_t in, int64_t out) {
  const int64_t k = ctx.dim(p + ".conv_l1.weight", 2);
  if (k < 1) return x;
  if (k % 2 == 0)
    ctx.problem(ProblemKind::kShape, p + ".conv_l1.weight",
                "GCN block '" + p + "' has an even kernel size " + std::to_string(k) + " (the block needs odd k for 'same' padding)");
  const int kk = static_cast<int>(k);
  ConvSpec col, row;  // k×1 and 1×k, bias, "same" padding
  col.kh = kk;
  row.kw = kk;
  col.bias = row.bias = true;
  int l = conv_node(ctx, g, p + ".conv_l1", x, in, out, col);
  l = conv_node(ctx, g, p + ".conv_l2", l, out, out, row);
  int r = conv_node(ctx, g, p + ".conv_r1", x, in, out, row);
  r = conv_node(ctx, g, p + ".conv_r2", r, out, out, col);
  fb::BinaryT add;
  add.kind = fb::BinaryKind::Add;
  return g.node(p, add, {l, r});
}

// Boundary Refinement: x + conv2(relu(conv1(x))), 3×3 convs with bias.
int br_block(RecipeContext& ctx, GraphBuilder& g, const std::string& p, int x, int64_t c) {
  ConvSpec s;
  s.kh = s.kw = 3;
  s.bias = true;
  int r = relu_node(g, p + ".relu", conv_node(ctx, g, p + ".conv1", x, c, c, s));
  r = conv_node(ctx, g, p + ".conv2", r, c, c, s);
  fb::BinaryT add;
  add.kind = fb::BinaryKind::Add;
  return g.node(p, add, {x, r});
}

Status build_gcn(RecipeContext& ctx) {
  GraphBuilder& g = ctx.model().graph("main");
  const Config& c = ctx.config();
  ResNetSpec spec;
  spec.prefix = "backbone";
  ATROUS_ASSIGN_OR_RETURN(spec.dilate, dilation_config(c, "replace_stride_with_dilation"));
  ATROUS_ASSIGN_OR_RETURN(bool align_corners, c.get_bool("align_corners"));
  const int64_t classes = ctx.dim("gcm1.conv_l1.weight", 0);
  if (classes < 1) return Status::Ok();

  int image = g.input("image", DType::kF32, {-1, 3, -1, -1});
  ATROUS_ASSIGN_OR_RETURN(ResNetFeatures f, build_resnet(ctx, g, image, spec));
  if (!ctx.problems().empty()) return Status::Ok();
  for (const std::string& k : ctx.keys_with_prefix("backbone.fc.")) ctx.ignore(k);

  auto up = [&](const std::string& name, int x, int like) {
    fb::ResizeT r;
    r.mode = fb::ResizeMode::Bilinear;
    r.align_corners = align_corners;
    return g.node(name, r, {x, like});
  };
  auto add = [&](const std::string& name, int a, int b) {
    fb::BinaryT t;
    t.kind = fb::BinaryKind::Add;
    return g.node(name, t, {a, b});
  };
  // gcm1 reads layer4 (deepest), gcm4 layer1.
  std::array<int, 4> gc{};
  std::string ks;
  for (int i = 0; i < 4; ++i) {
    const std::string gp = "gcm" + std::to_string(i + 1);
    const size_t stage = static_cast<size_t>(3 - i);
    gc[static_cast<size_t>(i)] =
        br_block(ctx, g, "brm" + std::to_string(i + 1), gcn_block(ctx, g, gp, f.stages[stage], f.channels[stage], classes), classes);
    ks += (ks.empty() ? "" : ",") + std::to_string(ctx.dim(gp + ".conv_l1.weight", 2));
  }
  int fs = br_block(ctx, g, "brm5", add("fuse1", up("up1", gc[0], f.stages[2]), gc[1]), classes);
  fs = br_block(ctx, g, "brm6", add("fuse2", up("up2", fs, f.stages[1]), gc[2]), classes);
  fs = br_block(ctx, g, "brm7", add("fuse3", up("up3", fs, f.stages[0]), gc[3]), classes);
  fs = br_block(ctx, g, "brm8", up("up4", fs, f.stem), classes);
  fs = br_block(ctx, g, "brm9", up("up5", fs, image), classes);
  g.output(fs, "out");

  ModelBuilder& mb = ctx.model();
  mb.set_metadata("gcn.backbone", f.describe());
  mb.set_metadata("gcn.kernel_sizes", ks);
  mb.set_metadata("gcn.num_classes", std::to_string(classes));
  ATROUS_RETURN_IF_ERROR(ctx.apply_image_metadata(g, "image", "out"));
  return Status::Ok();
}

}  // namespace

const Recipe kGcnRecipe = {
    "gcn",
    "Global Convolutional Network (GCN + Boundary Refinement) on a torchvision ResNet: backbone.*, gcm1-4.*, brm1-9.*",
    {
        {"replace_stride_with_dilation", ConfigType::kArray, "[false, false, false]",
         "dilation instead of stride in layer2..4 (Bottleneck blocks only)"},
        {"align_corners", ConfigType::kBool, "true", "bilinear upsampling with align_corners (F.upsample_bilinear: true)"},
        {"value_scale", ConfigType::kFloat, "0.00392156862745098", "pixels × this first (1/255)"},
        {"mean", ConfigType::kFloatList, "[0.485, 0.456, 0.406]", "per-channel mean (ImageNet)"},
        {"std", ConfigType::kFloatList, "[0.229, 0.224, 0.225]", "per-channel std (ImageNet)"},
        {"postprocess", ConfigType::kString, "\"argmax_classes\"", "none | argmax_classes | class_index | mask_threshold"},
    },
    build_gcn,
    /*image=*/true,
};

}  // namespace atrous::convert
