// Whole Segment Anything models against the PyTorch implementation in
// sam_reference.py (make_sam_cases.py writes the checkpoints and references;
// CMakeLists.txt converts them with `atrous convert --arch sam`):
//  - the image embedding of SamPredictor::encode (PIL-style resize, normalise,
//    pad, encoder) within 1e-3 of max |reference|;
//  - per prompt case: the low-resolution logits and IoU predictions within 1e-3,
//    and the masks at the original size identical wherever |reference logit| >= 1e-3;
//    through decode_prepared (prompts without a mask) and through the whole decoder;
//  - the small model also with reference kernels only, with concurrent decodes
//    against one embedding, and with bad prompts.
// ATROUS_SAM_MODEL_DIR names the folder (small/ or vitb/) with cases.json and model.atrous.
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "atrous/sam.h"
#include "test_util.h"

namespace atrous::test {
namespace {

using json = nlohmann::json;

json read_json(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return json::parse(ss.str());
}

Tensor npy(const std::string& path) {
  auto t = load_npy(path);
  INFO(path);
  REQUIRE(t.ok());
  return std::move(t).value();
}

// check_close, and the relative error printed for the record.
void compare(const TensorView& got, const Tensor& ref, const std::string& what) {
  double err = 0, mx = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) {
    err = std::max(err, std::fabs(static_cast<double>(got.as<float>()[i]) - ref.data<float>()[i]));
    mx = std::max(mx, std::fabs(static_cast<double>(ref.data<float>()[i])));
  }
  std::printf("  %-48s max abs error %.3g = %.2e x max|ref|\n", what.c_str(), err, mx > 0 ? err / mx : 0.0);
  check_close(got, ref.view(), 1e-3, what);
}

SamPrompt prompt_of(const json& c, const std::string& dir, int index) {
  SamPrompt p;
  if (c.contains("points"))
    for (size_t i = 0; i < c["points"].size(); ++i)
      p.points.push_back({c["points"][i][0].get<float>(), c["points"][i][1].get<float>(), c["labels"][i].get<int>()});
  if (c.contains("box")) {
    p.has_box = true;
    p.box = {c["box"][0].get<float>(), c["box"][1].get<float>(), c["box"][2].get<float>(), c["box"][3].get<float>()};
  }
  if (c.value("mask_from_previous", false)) p.mask_input = npy(dir + "/case" + std::to_string(index) + "_mask_input.npy");
  p.multimask = c["multimask"].get<bool>();
  return p;
}

// Masks equal to (reference logits > 0) wherever |reference| >= 1e-3; returns the
// number of pixels compared.
size_t check_masks(const SamMasks& got, const Tensor& ref_logits, const std::string& what) {
  REQUIRE(ref_logits.shape() == Shape{got.count, got.height, got.width});
  const float* r = ref_logits.data<float>();
  size_t compared = 0, wrong = 0, first = 0;
  for (size_t i = 0; i < got.masks.size(); ++i) {
    if (std::fabs(r[i]) < 1e-3f) continue;
    ++compared;
    if ((r[i] > 0.0f) != (got.masks[i] != 0) && wrong++ == 0) first = i;
  }
  if (wrong) std::printf("  %s: %zu of %zu mask pixels differ\n", what.c_str(), wrong, compared);
  INFO(what << ": " << wrong << " of " << compared << " mask pixels differ (first at " << first << ", ref logit " << r[first] << ")");
  CHECK(wrong == 0);
  return compared;
}

struct Loaded {
  std::string dir;
  json cases;
  std::shared_ptr<const Model> model;
  Image image;
};

Loaded load() {
  Loaded l;
  l.dir = data_dir("ATROUS_SAM_MODEL_DIR");
  l.cases = read_json(l.dir + "/cases.json");
  auto m = Model::open(l.dir + "/model.atrous");
  INFO(m.status().to_string());
  REQUIRE(m.ok());
  l.model = *m;
  auto img = load_image(l.dir + "/" + l.cases["image"].get<std::string>());
  REQUIRE(img.ok());
  l.image = std::move(img).value();
  return l;
}

void check_model(const Loaded& l, const SamOptions& opts) {
  std::printf("%s (%s kernels):\n", l.dir.c_str(), opts.reference_only ? "reference" : "default");
  auto sam = SamPredictor::create(l.model, opts);
  INFO(sam.status().to_string());
  REQUIRE(sam.ok());
  auto emb = (*sam)->encode(l.image);
  INFO(emb.status().to_string());
  REQUIRE(emb.ok());
  CHECK(emb->input_height == l.cases["input_size"][0].get<int>());
  CHECK(emb->input_width == l.cases["input_size"][1].get<int>());
  compare(emb->embedding.view(), npy(l.dir + "/embedding.npy"), "image embedding");
  // The model has prepare_image: prompts without a mask go through decode_prepared.
  // Every case runs that way and again through the whole decoder (no prepared tensors).
  REQUIRE(emb->prepared.size() == 4);
  SamEmbedding whole = *emb;
  whole.prepared.clear();
  const auto& cases = l.cases["cases"];
  for (size_t k = 0; k < 2 * cases.size(); ++k) {
    const size_t i = k % cases.size();
    const bool prepared = k < cases.size();
    const std::string name = cases[i]["name"].get<std::string>() + (prepared ? "" : " (whole decoder)");
    const std::string base = l.dir + "/case" + std::to_string(i);
    auto masks = (*sam)->decode(prepared ? *emb : whole, prompt_of(cases[i], l.dir, static_cast<int>(i)));
    INFO("case " << i << " '" << name << "': " << masks.status().to_string());
    REQUIRE(masks.ok());
    compare(masks->low_res_logits.view(), npy(base + "_low_res.npy"), name + ": low-res logits");
    Tensor scores = Tensor::zeros(DType::kF32, {masks->count});
    std::copy(masks->scores.begin(), masks->scores.end(), scores.data<float>());
    compare(scores.view(), npy(base + "_iou.npy"), name + ": IoU predictions");
    const size_t px = check_masks(*masks, npy(base + "_logits.npy"), name);
    std::printf("  %-48s masks identical on %zu pixels with |logit| >= 1e-3\n", (name + ": masks").c_str(), px);
    CHECK(px > 0);
  }
}

TEST_CASE("SAM model matches PyTorch: embedding, logits, IoU, masks", "[sam][model]") { check_model(load(), SamOptions{}); }

TEST_CASE("SAM model with reference kernels only", "[sam][model][reference]") {
  Loaded l = load();
  if (l.cases["config"]["embed_dim"].get<int>() > 128) {
    SUCCEED("skipped: plain loops take minutes at the vit_b size; the small model covers the reference kernels");
    return;
  }
  SamOptions o;
  o.reference_only = true;
  check_model(l, o);
}

TEST_CASE("SAM decodes concurrently against one embedding", "[sam][model][threads]") {
  Loaded l = load();
  auto sam = SamPredictor::create(l.model);
  REQUIRE(sam.ok());
  auto emb = (*sam)->encode(l.image);
  REQUIRE(emb.ok());
  const auto& cases = l.cases["cases"];
  std::vector<SamMasks> sequential;
  for (size_t i = 0; i < cases.size(); ++i) {
    auto m = (*sam)->decode(*emb, prompt_of(cases[i], l.dir, static_cast<int>(i)));
    REQUIRE(m.ok());
    sequential.push_back(std::move(m).value());
  }
  constexpr int kThreads = 4, kRounds = 3;
  std::vector<std::string> errors(kThreads);
  std::vector<std::thread> pool;
  for (int t = 0; t < kThreads; ++t)
    pool.emplace_back([&, t] {
      for (int r = 0; r < kRounds; ++r)
        for (size_t k = 0; k < cases.size(); ++k) {
          const size_t i = (k + static_cast<size_t>(t)) % cases.size();
          SamPrompt p = prompt_of(cases[i], l.dir, static_cast<int>(i));
          auto m = (*sam)->decode(*emb, p);
          if (!m.ok()) errors[static_cast<size_t>(t)] = m.status().to_string();
          else if (m->masks != sequential[i].masks || m->scores != sequential[i].scores)
            errors[static_cast<size_t>(t)] = "case " + std::to_string(i) + " differs from the sequential decode";
        }
    });
  for (auto& th : pool) th.join();
  for (const std::string& e : errors) CHECK(e.empty());
}

TEST_CASE("SAM embeddings decode alike through any predictor of the model", "[sam][model]") {
  // Each decode session caches the prepared set it staged by SamEmbedding::prepared_id,
  // so ids must not collide between predictors: B decodes its own embedding, then A's,
  // and must give what A gives.
  Loaded l = load();
  auto a = SamPredictor::create(l.model), b = SamPredictor::create(l.model);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  const int W = l.image.width, H = l.image.height;
  Tensor raw = npy(l.dir + "/embedding.npy"), other = Tensor::copy_of(raw.view());
  for (int64_t i = 0; i < other.numel(); ++i) other.data<float>()[i] *= -0.5f;
  auto ea = (*a)->embedding_from(raw, W, H);
  auto eb = (*b)->embedding_from(other, W, H);
  REQUIRE(ea.ok());
  REQUIRE(eb.ok());
  CHECK(ea->prepared_id != 0);
  CHECK(ea->prepared_id != eb->prepared_id);
  SamPrompt p;
  p.points = {{W / 3.0f, H / 2.0f, 1}};
  auto want = (*a)->decode(*ea, p);
  auto own = (*b)->decode(*eb, p);
  auto got = (*b)->decode(*ea, p);
  REQUIRE(want.ok());
  REQUIRE(own.ok());
  REQUIRE(got.ok());
  CHECK(got->scores == want->scores);
  CHECK(got->masks == want->masks);
  CHECK(own->scores != want->scores);
}

TEST_CASE("SAM refuses bad prompts with clear errors", "[sam][model][errors]") {
  Loaded l = load();
  auto sam = SamPredictor::create(l.model);
  REQUIRE(sam.ok());
  const int W = l.image.width, H = l.image.height;
  auto emb = (*sam)->embedding_from(npy(l.dir + "/embedding.npy"), W, H);
  REQUIRE(emb.ok());
  auto fails = [&](const SamPrompt& p, const std::string& text) {
    auto m = (*sam)->decode(*emb, p);
    INFO(m.status().to_string());
    CHECK(m.status().code() == StatusCode::kInvalidArgument);
    CHECK(m.status().message().find(text) != std::string::npos);
  };
  SamPrompt none;
  fails(none, "no prompt");
  SamPrompt outside;
  outside.points = {{static_cast<float>(W), 3, 1}};
  fails(outside, "outside the " + std::to_string(W) + "x" + std::to_string(H) + " image");
  SamPrompt negative;
  negative.points = {{-1, 3, 1}};
  fails(negative, "outside");
  SamPrompt label;
  label.points = {{1, 1, 2}};
  fails(label, "label 2");
  SamPrompt box;
  box.has_box = true;
  box.box = {10, 10, 5, 20};
  fails(box, "top-left then bottom-right");
  SamPrompt big_box;
  big_box.has_box = true;
  big_box.box = {0, 0, static_cast<float>(W + 1), 10};
  fails(big_box, "outside");
  SamPrompt mask;
  mask.points = {{1, 1, 1}};
  mask.mask_input = Tensor::zeros(DType::kF32, {1, 1, 3, 3});
  fails(mask, "mask_input");
  CHECK(!(*sam)->embedding_from(Tensor::zeros(DType::kF32, {1, 2, 3, 4}), W, H).ok());
  // Prepared tensors put together by hand: a wrong shape, a missing one, an unknown one.
  REQUIRE(emb->prepared.size() == 4);
  SamPrompt one;
  one.points = {{1, 1, 1}};
  auto refused = [&](SamEmbedding e, const std::string& text) {
    e.prepared_id = 0;
    auto m = (*sam)->decode(e, one);
    INFO(m.status().to_string());
    CHECK(!m.ok());
    CHECK(m.status().message().find(text) != std::string::npos);
  };
  SamEmbedding bad = *emb;
  bad.prepared[2].second = Tensor::zeros(DType::kF32, {1, 2, 3});
  refused(bad, "input 'keys0' has shape [1, 2, 3]");
  bad = *emb;
  bad.prepared[0].second = Tensor::zeros(DType::kI32, bad.prepared[0].second.shape());
  const std::string tokens = shape_string(bad.prepared[0].second.shape());
  refused(bad, "the embedding's prepared tensors do not fit decode_prepared: input 'image_tokens' is i32 " + tokens +
                   ", the plan takes f32 " + tokens);
  bad = *emb;
  bad.prepared.pop_back();
  refused(bad, "no 'values0'");
  bad = *emb;
  bad.prepared.emplace_back("extra", Tensor::zeros(DType::kF32, {1}));
  refused(bad, "no input 'extra'");
  // The same embedding rebuilt from the .npy decodes like the encoder's.
  SamPrompt ok;
  ok.points = {{W / 2.0f, H / 2.0f, 1}};
  CHECK((*sam)->decode(*emb, ok).ok());
}

}  // namespace
}  // namespace atrous::test
