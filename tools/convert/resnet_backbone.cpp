#include "convert/resnet_backbone.h"

namespace atrous::convert {

int conv_node(RecipeContext& ctx, GraphBuilder& g, const std::string& conv_key, int x, int64_t in, int64_t out,
              const ConvSpec& s) {
  fb::Conv2dT a;
  a.stride_h = a.stride_w = s.stride;
  a.dilation_h = a.dilation_w = s.dilation;
  const int ph = s.pad_h >= 0 ? s.pad_h : s.dilation * (s.kh - 1) / 2;
  const int pw = s.pad_w >= 0 ? s.pad_w : s.dilation * (s.kw - 1) / 2;
  a.pad_top = a.pad_bottom = ph;
  a.pad_left = a.pad_right = pw;
  int64_t in_per_group = in;
  // Grouped convs (ResNeXt): the weight's second dim tells the group count.
  if (const SourceTensor* t = ctx.find(conv_key + ".weight"); t && t->shape.size() == 4 && t->shape[1] > 0 &&
                                                               in > 0 && in % t->shape[1] == 0 && t->shape[1] != in) {
    a.groups = static_cast<int>(in / t->shape[1]);
    in_per_group = t->shape[1];
  }
  int w = ctx.param(g, conv_key + ".weight", {out, in_per_group, s.kh, s.kw});
  int b = s.bias ? ctx.param(g, conv_key + ".bias", {out}) : -1;
  return g.node(conv_key, a, {x, w, b});
}

int bn_node(RecipeContext& ctx, GraphBuilder& g, const std::string& bn_key, int x, int64_t c) {
  fb::BatchNormT a;
  ctx.ignore(bn_key + ".num_batches_tracked");
  return g.node(bn_key, a,
                {x, ctx.param(g, bn_key + ".weight", {c}), ctx.param(g, bn_key + ".bias", {c}),
                 ctx.param(g, bn_key + ".running_mean", {c}), ctx.param(g, bn_key + ".running_var", {c})});
}

int relu_node(GraphBuilder& g, const std::string& name, int x) {
  fb::UnaryT u;
  u.kind = fb::ActKind::Relu;
  return g.node(name, u, {x});
}

int conv_bn_relu(RecipeContext& ctx, GraphBuilder& g, const std::string& conv_key, const std::string& bn_key,
                 const std::string& relu_name, int x, int64_t in, int64_t out, const ConvSpec& s) {
  int y = bn_node(ctx, g, bn_key, conv_node(ctx, g, conv_key, x, in, out, s), out);
  return relu_name.empty() ? y : relu_node(g, relu_name, y);
}

std::string ResNetFeatures::describe() const {
  std::string depth = "?";
  const std::array<int, 4> r50 = {3, 4, 6, 3}, r101 = {3, 4, 23, 3}, r152 = {3, 8, 36, 3}, r18 = {2, 2, 2, 2};
  if (bottleneck && blocks == r50) depth = "resnet50";
  else if (bottleneck && blocks == r101) depth = "resnet101";
  else if (bottleneck && blocks == r152) depth = "resnet152";
  else if (!bottleneck && blocks == r18) depth = "resnet18";
  else if (!bottleneck && blocks == r50) depth = "resnet34";
  else depth = "resnet";
  std::string s = depth + " (" + (bottleneck ? "bottleneck " : "basic ");
  for (int i = 0; i < 4; ++i) s += (i ? "-" : "") + std::to_string(blocks[static_cast<size_t>(i)]);
  s += "), widths ";
  for (int i = 0; i < 4; ++i) s += (i ? "-" : "") + std::to_string(channels[static_cast<size_t>(i)]);
  return s;
}

Result<ResNetFeatures> build_resnet(RecipeContext& ctx, GraphBuilder& g, int x, const ResNetSpec& spec) {
  const std::string& p = spec.prefix;
  ResNetFeatures f;
  // Stem: conv1 (k×k, stride 2, "same" padding), bn1, relu, maxpool 3×3/2.
  const int64_t stem = ctx.dim(p + ".conv1.weight", 0);
  const int64_t stem_in = ctx.dim(p + ".conv1.weight", 1);
  const int64_t stem_k = ctx.dim(p + ".conv1.weight", 2);
  if (stem < 1 || stem_in < 1 || stem_k < 1) return Status::Ok();  // the missing key is a recorded problem
  ConvSpec sc;
  sc.kh = sc.kw = static_cast<int>(stem_k);
  sc.stride = 2;
  sc.pad_h = sc.pad_w = static_cast<int>(stem_k / 2);
  f.stem = conv_bn_relu(ctx, g, p + ".conv1", p + ".bn1", p + ".relu", x, stem_in, stem, sc);
  f.stem_channels = stem;
  fb::Pool2dT mp;
  mp.kind = fb::PoolKind::Max;
  mp.kernel_h = mp.kernel_w = 3;
  mp.stride_h = mp.stride_w = 2;
  mp.pad_top = mp.pad_left = mp.pad_bottom = mp.pad_right = 1;
  int y = g.node(p + ".maxpool", mp, {f.stem});

  f.bottleneck = ctx.has(p + ".layer1.0.conv3.weight");
  int64_t in = stem;
  int dilation = 1;
  for (int l = 0; l < 4; ++l) {
    const std::string layer = p + ".layer" + std::to_string(l + 1);
    ATROUS_ASSIGN_OR_RETURN(int blocks, ctx.count_blocks(layer + ".{i}"));
    f.blocks[static_cast<size_t>(l)] = blocks;
    int stride = l == 0 ? 1 : 2;
    const int previous_dilation = dilation;
    if (l > 0 && spec.dilate[static_cast<size_t>(l - 1)]) {
      dilation *= stride;
      stride = 1;
    }
    for (int b = 0; b < blocks; ++b) {
      const std::string k = layer + "." + std::to_string(b);
      const int s = b == 0 ? stride : 1;
      const int d = b == 0 ? previous_dilation : dilation;  // torchvision: the first block keeps the previous dilation
      const int64_t width = ctx.dim(k + ".conv1.weight", 0);
      int main;
      int64_t out;
      ConvSpec c3;
      c3.kh = c3.kw = 3;
      c3.stride = s;
      c3.dilation = d;
      if (f.bottleneck) {
        out = ctx.dim(k + ".conv3.weight", 0);
        if (width < 1 || out < 1) return Status::Ok();
        int h = conv_bn_relu(ctx, g, k + ".conv1", k + ".bn1", k + ".relu1", y, in, width, ConvSpec{});
        h = conv_bn_relu(ctx, g, k + ".conv2", k + ".bn2", k + ".relu2", h, width, width, c3);
        main = conv_bn_relu(ctx, g, k + ".conv3", k + ".bn3", "", h, width, out, ConvSpec{});
      } else {
        out = width;
        if (width < 1) return Status::Ok();
        if (d != 1)
          return invalid_argument("block '" + k + "' is a BasicBlock, which torchvision does not dilate: "
                                  "replace_stride_with_dilation needs Bottleneck blocks");
        int h = conv_bn_relu(ctx, g, k + ".conv1", k + ".bn1", k + ".relu1", y, in, width, c3);
        ConvSpec c3b;
        c3b.kh = c3b.kw = 3;
        main = conv_bn_relu(ctx, g, k + ".conv2", k + ".bn2", "", h, width, width, c3b);
      }
      int identity = y;
      if (ctx.has_prefix(k + ".downsample.")) {
        ConvSpec ds;
        ds.stride = s;
        identity = conv_bn_relu(ctx, g, k + ".downsample.0", k + ".downsample.1", "", y, in, out, ds);
      }
      fb::BinaryT add;
      add.kind = fb::BinaryKind::Add;
      add.activation = fb::ActKind::Relu;
      y = g.node(k, add, {main, identity});  // named after the block: its output is the block's
      in = out;
    }
    f.stages[static_cast<size_t>(l)] = y;
    f.channels[static_cast<size_t>(l)] = in;
  }
  return f;
}

Result<std::array<bool, 3>> dilation_config(const Config& c, const std::string& key) {
  ATROUS_ASSIGN_OR_RETURN(nlohmann::json j, c.get_json(key));
  if (!j.is_array() || j.size() != 3)
    return invalid_argument("config key '" + key + "': expected 3 booleans (layer2, layer3, layer4), got " + j.dump());
  std::array<bool, 3> d{};
  for (size_t i = 0; i < 3; ++i) {
    if (!j[i].is_boolean()) return invalid_argument("config key '" + key + "': expected booleans, got " + j.dump());
    d[i] = j[i].get<bool>();
  }
  return d;
}

}  // namespace atrous::convert
