// Pieces the segmentation recipes share: conv + BatchNorm (+ ReLU) nodes named
// after their PyTorch modules, and a torchvision ResNet backbone read from a
// state dict (any depth and width, BasicBlock or Bottleneck, optional dilation
// instead of stride in the last stages as torchvision's
// replace_stride_with_dilation does).
//
// BatchNorm stays a node in the graph (the planner folds it into the conv at
// plan time), so a converted model keeps the checkpoint's numbers as they are.
// Every parameter goes through RecipeContext::param(), so a missing key or a
// wrong shape is reported as a conversion problem, not a crash.
//
//   ResNetSpec spec;
//   spec.prefix = "backbone";
//   spec.dilate = {false, true, true};   // output stride 8
//   ATROUS_ASSIGN_OR_RETURN(ResNetFeatures f, build_resnet(ctx, g, image, spec));
//   int c5 = f.stages[3];                 // [N, 2048, H/8, W/8] for resnet50
#pragma once

#include <array>
#include <string>
#include <vector>

#include "convert/recipe.h"

namespace atrous::convert {

struct ConvSpec {
  int kh = 1, kw = 1;
  int stride = 1;
  int dilation = 1;
  int pad_h = -1, pad_w = -1;  // -1: "same" for stride 1, i.e. dilation·(k−1)/2
  bool bias = false;           // the conv has a bias tensor (<key>.bias)
};

// Conv2d node `conv_key` with weight [out, in, kh, kw] (+ bias). Returns its output.
int conv_node(RecipeContext& ctx, GraphBuilder& g, const std::string& conv_key, int x, int64_t in, int64_t out,
              const ConvSpec& s);
// BatchNorm node `bn_key` (weight, bias, running_mean, running_var [c]; num_batches_tracked dropped).
int bn_node(RecipeContext& ctx, GraphBuilder& g, const std::string& bn_key, int x, int64_t c);
int relu_node(GraphBuilder& g, const std::string& name, int x);
// conv → BN → ReLU; the ReLU node is named `relu_name` ("" = no ReLU).
int conv_bn_relu(RecipeContext& ctx, GraphBuilder& g, const std::string& conv_key, const std::string& bn_key,
                 const std::string& relu_name, int x, int64_t in, int64_t out, const ConvSpec& s);

struct ResNetSpec {
  std::string prefix = "backbone";           // keys <prefix>.conv1.weight, <prefix>.layer1.0.conv1.weight, ...
  std::array<bool, 3> dilate = {false, false, false};  // replace_stride_with_dilation for layer2..4
};

struct ResNetFeatures {
  int stem = -1;                 // after conv1/bn1/relu: stride 2
  std::array<int, 4> stages{};   // layer1..layer4 outputs
  std::array<int64_t, 4> channels{};
  int64_t stem_channels = 0;
  bool bottleneck = false;
  std::array<int, 4> blocks{};   // blocks per stage
  std::string describe() const;  // e.g. "resnet50 (bottleneck 3-4-6-3), widths 256-512-1024-2048"
};

// Builds the backbone on x [N, 3, H, W]. Block types and counts, and every width,
// come from the state dict. Unused classifier keys (<prefix>.fc.*) are not read.
Result<ResNetFeatures> build_resnet(RecipeContext& ctx, GraphBuilder& g, int x, const ResNetSpec& spec);

// The replace_stride_with_dilation list from config key `key` (3 bools).
Result<std::array<bool, 3>> dilation_config(const Config& c, const std::string& key);

}  // namespace atrous::convert
