// atrous segment MODEL IMAGE --point X,Y[,LABEL]... [--box X0,Y0,X1,Y1] [--multimask]
//   -o mask.png [--overlay overlay.png] [--json result.json]
//   [--save-embedding FILE.npy] [--embedding FILE.npy]
// Promptable segmentation with a Segment Anything model (SamPredictor). The
// embedding cache is FILE.npy (the [1, E, G, G] image embedding) plus FILE.npy.json
// (the image size it was computed for), so a second call with new prompts skips
// the encoder.
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "atrous/image.h"
#include "atrous/npy.h"
#include "atrous/sam.h"
#include "cli.h"
#include "io/file.h"

namespace atrous::cli {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

struct Options {
  std::string model, image, output = "mask.png", overlay, json_out, save_embedding, embedding;
  std::vector<std::string> points;
  std::string box;
  bool multimask = false, reference = false;
  int threads = 0;
};

Result<SamPrompt> parse_prompt(const Options& o) {
  SamPrompt p;
  for (const std::string& s : o.points) {
    ATROUS_ASSIGN_OR_RETURN(SamPoint pt, parse_sam_point(s));
    p.points.push_back(pt);
  }
  if (!o.box.empty()) {
    ATROUS_ASSIGN_OR_RETURN(p.box, parse_sam_box(o.box));
    p.has_box = true;
  }
  if (p.points.empty() && !p.has_box) return invalid_argument("no prompt: give at least one --point X,Y[,LABEL] or a --box X0,Y0,X1,Y1");
  p.multimask = o.multimask;
  return p;
}

std::string sidecar(const std::string& npy) { return npy + ".json"; }

Status save_embedding(const std::string& path, const SamEmbedding& e, const Model& model) {
  ATROUS_RETURN_IF_ERROR(save_npy(path, e.embedding.view()));
  json j = {{"original_width", e.original_width}, {"original_height", e.original_height}, {"input_width", e.input_width},
            {"input_height", e.input_height}, {"model", model.info().name}};
  auto it = model.info().metadata.find("sam.variant");
  if (it != model.info().metadata.end()) j["variant"] = it->second;
  std::ofstream f(sidecar(path));
  f << j.dump(1) << "\n";
  if (!f) return io_error("cannot write '" + sidecar(path) + "'");
  return Status::Ok();
}

Result<SamEmbedding> load_embedding(const SamPredictor& sam, const std::string& path, const Image& img) {
  ATROUS_ASSIGN_OR_RETURN(Tensor t, load_npy(path));
  if (fs::exists(sidecar(path))) {
    ATROUS_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, io::read_whole_file(sidecar(path), 1 << 20, "embedding description"));
    json j;
    try {
      j = json::parse(bytes.begin(), bytes.end());
      const int w = j.at("original_width").get<int>(), h = j.at("original_height").get<int>();
      if (w != img.width || h != img.height)
        return invalid_argument("embedding '" + path + "' was computed for a " + std::to_string(w) + "x" + std::to_string(h) +
                                " image, this image is " + std::to_string(img.width) + "x" + std::to_string(img.height));
    } catch (const std::exception& e) {
      return invalid_argument("'" + sidecar(path) + "' is not a valid embedding description: " + e.what());
    }
  }
  auto e = sam.embedding_from(std::move(t), img.width, img.height);
  if (!e.ok()) return e.status().with_context("embedding '" + path + "'");
  return e;
}

// Inclusive pixel bounds of a mask, or empty when the mask is empty.
std::vector<int> bbox(const uint8_t* m, int w, int h, int64_t* area) {
  int x0 = w, y0 = h, x1 = -1, y1 = -1;
  *area = 0;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      if (m[static_cast<size_t>(y) * w + x]) {
        ++*area;
        x0 = std::min(x0, x);
        x1 = std::max(x1, x);
        y0 = std::min(y0, y);
        y1 = std::max(y1, y);
      }
  if (x1 < 0) return {};
  return {x0, y0, x1, y1};
}

Status write_mask(const std::string& path, const uint8_t* m, int w, int h) {
  Image out;
  out.width = w;
  out.height = h;
  out.channels = 1;
  out.pixels.resize(static_cast<size_t>(w) * h);
  for (size_t i = 0; i < out.pixels.size(); ++i) out.pixels[i] = m[i] ? 255 : 0;
  return save_png(path, out);
}

int run(const Options& o) {
  auto prompt = parse_prompt(o);
  if (!prompt.ok()) return fail(prompt.status());
  auto model = Model::open(o.model);
  if (!model.ok()) return fail(model.status());
  SamOptions so;
  so.threads = o.threads;
  so.reference_only = o.reference;
  auto sam = SamPredictor::create(*model, so);
  if (!sam.ok()) return fail(sam.status());
  auto img = load_image(o.image);
  if (!img.ok()) return fail(img.status());
  // Check the prompt against the image before spending seconds on the encoder.
  if (Status st = check_sam_prompt(*prompt, img->width, img->height, (*sam)->mask_input_size()); !st.ok()) return fail(st);

  using clock = std::chrono::steady_clock;
  double encode_s = 0;
  Result<SamEmbedding> emb = invalid_argument("no embedding");
  if (!o.embedding.empty()) {
    emb = load_embedding(**sam, o.embedding, *img);
  } else {
    auto t0 = clock::now();
    emb = (*sam)->encode(*img);
    encode_s = std::chrono::duration<double>(clock::now() - t0).count();
  }
  if (!emb.ok()) return fail(emb.status());
  if (!o.save_embedding.empty()) {
    if (Status st = save_embedding(o.save_embedding, *emb, **model); !st.ok()) return fail(st);
  }
  auto t0 = clock::now();
  auto masks = (*sam)->decode(*emb, *prompt);
  const double decode_s = std::chrono::duration<double>(clock::now() - t0).count();
  if (!masks.ok()) return fail(masks.status());
  const int best = masks->best(), W = masks->width, H = masks->height;

  if (Status st = write_mask(o.output, masks->mask(best), W, H); !st.ok()) return fail(st);
  json jm = json::array();
  const fs::path out(o.output);
  for (int i = 0; i < masks->count; ++i) {
    int64_t area = 0;
    std::vector<int> bb = bbox(masks->mask(i), W, H, &area);
    json m = {{"index", i}, {"score", masks->scores[static_cast<size_t>(i)]}, {"area", area},
              {"bbox", bb.empty() ? json(nullptr) : json(bb)}};
    if (masks->count > 1) {  // every mask of a multimask call, next to the best one
      std::string file = (out.parent_path() / (out.stem().string() + "_" + std::to_string(i) + out.extension().string())).string();
      if (Status st = write_mask(file, masks->mask(i), W, H); !st.ok()) return fail(st);
      m["file"] = file;
    }
    jm.push_back(m);
  }
  if (!o.overlay.empty()) {
    std::vector<int32_t> labels(masks->mask(best), masks->mask(best) + static_cast<size_t>(W) * H);
    std::vector<uint8_t> palette = {0, 0, 0, 30, 144, 255};
    Image ov = overlay(to_rgb(*img), labels, palette, 0.5f);
    auto dot = [&](double fx, double fy, uint8_t r, uint8_t g, uint8_t b) {
      const int cx = static_cast<int>(fx), cy = static_cast<int>(fy), rad = std::max(2, std::min(W, H) / 150);
      for (int y = cy - rad; y <= cy + rad; ++y)
        for (int x = cx - rad; x <= cx + rad; ++x)
          if (x >= 0 && y >= 0 && x < W && y < H && (x - cx) * (x - cx) + (y - cy) * (y - cy) <= rad * rad) {
            uint8_t* p = &ov.pixels[(static_cast<size_t>(y) * W + x) * 3];
            p[0] = r, p[1] = g, p[2] = b;
          }
    };
    for (const SamPoint& p : prompt->points) dot(p.x, p.y, p.label ? 0 : 255, p.label ? 220 : 40, p.label ? 0 : 40);
    if (prompt->has_box) {
      const SamBox& b = prompt->box;
      for (double x = b.x0; x <= b.x1; x += 1) dot(x, b.y0, 0, 220, 0), dot(x, b.y1, 0, 220, 0);
      for (double y = b.y0; y <= b.y1; y += 1) dot(b.x0, y, 0, 220, 0), dot(b.x1, y, 0, 220, 0);
    }
    if (Status st = save_png(o.overlay, ov); !st.ok()) return fail(st);
  }
  if (!o.json_out.empty()) {
    json pts = json::array();
    for (const SamPoint& p : prompt->points) pts.push_back({{"x", p.x}, {"y", p.y}, {"label", p.label}});
    json j = {{"image", o.image}, {"width", W}, {"height", H}, {"points", pts}, {"multimask", o.multimask},
              {"best", best}, {"mask", o.output}, {"masks", jm},
              {"seconds", {{"encode", encode_s}, {"decode", decode_s}}}};
    if (prompt->has_box) j["box"] = {prompt->box.x0, prompt->box.y0, prompt->box.x1, prompt->box.y1};
    if (!o.embedding.empty()) j["embedding"] = o.embedding;
    std::ofstream f(o.json_out);
    f << j.dump(1) << "\n";
    if (!f) return fail("cannot write '" + o.json_out + "'");
  }
  std::printf("segmented %s (%dx%d): %d mask%s, best #%d score %.3f\n", o.image.c_str(), W, H, masks->count,
              masks->count == 1 ? "" : "s", best, masks->scores[static_cast<size_t>(best)]);
  std::printf("  encode %s, decode %s\n", o.embedding.empty() ? format_seconds(encode_s).c_str() : "skipped (--embedding)",
              format_seconds(decode_s).c_str());
  std::printf("  mask:    %s\n", o.output.c_str());
  if (!o.overlay.empty()) std::printf("  overlay: %s\n", o.overlay.c_str());
  if (!o.json_out.empty()) std::printf("  json:    %s\n", o.json_out.c_str());
  if (!o.save_embedding.empty()) std::printf("  embedding: %s (+ %s)\n", o.save_embedding.c_str(), sidecar(o.save_embedding).c_str());
  return 0;
}

Runner setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  app.description("Promptable segmentation with a Segment Anything model (points and boxes in image pixels)");
  app.add_option("model", o->model, "model file (atrous convert --arch sam)")->required();
  app.add_option("image", o->image, "image file")->required();
  app.add_option("--point", o->points, "X,Y[,LABEL]: a point in image pixels, LABEL 1 foreground (default) or 0 background (repeatable)");
  app.add_option("--box", o->box, "X0,Y0,X1,Y1: a box in image pixels (top-left, bottom-right)");
  app.add_flag("--multimask", o->multimask, "three candidate masks (for an ambiguous prompt); -o gets the best, <stem>_<i> each");
  app.add_option("-o,--output", o->output, "mask PNG (0/255, the image's size; default mask.png)");
  app.add_option("--overlay", o->overlay, "overlay PNG: the image with the mask and the prompts");
  app.add_option("--json", o->json_out, "JSON with each mask's score, area and bounding box");
  app.add_option("--save-embedding", o->save_embedding, "save the image embedding as FILE.npy (+ FILE.npy.json)");
  app.add_option("--embedding", o->embedding, "reuse an embedding saved with --save-embedding (skips the encoder)");
  app.add_option("--threads", o->threads, "threads (0 = all cores)")->check(CLI::Range(0, atrous::kMaxThreads));
  app.add_flag("--reference", o->reference, "use reference kernels only");
  return [o] { return run(*o); };
}

}  // namespace

extern const Command kSegment;
const Command kSegment = {"segment", setup};

}  // namespace atrous::cli
