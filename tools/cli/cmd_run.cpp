// atrous run MODEL [IMAGE|DIR] [--input NAME=FILE.npy]... : images through the
// model's own pre/postprocessing to masks and overlays, or raw .npy tensors.
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "atrous/image.h"
#include "atrous/npy.h"
#include "cli.h"

namespace atrous::cli {
namespace {

namespace fs = std::filesystem;

struct Options {
  std::string model, target, output, overlay, scores, output_dir, entry, max_memory;
  std::vector<std::string> inputs;
  int threads = 0;
  bool reference = false, overlay_flag = false, scores_flag = false;
};

bool is_image_file(const fs::path& p) {
  std::string e = p.extension().string();
  for (auto& c : e) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return e == ".png" || e == ".jpg" || e == ".jpeg" || e == ".bmp" || e == ".tga" || e == ".gif";
}

Result<std::unique_ptr<Session>> make_session(std::shared_ptr<const Model> model, const Options& o) {
  SessionOptions so;
  so.entry = o.entry;
  so.threads = o.threads;
  so.reference_only = o.reference;
  if (!o.max_memory.empty()) {
    ATROUS_ASSIGN_OR_RETURN(so.max_memory, parse_bytes(o.max_memory));
  }
  return Session::create(std::move(model), so);
}

// Raw tensors in and out. Each .npy is read straight into its slot in the session's
// arena (Session::input_buffer), so no second copy of a large input stays resident.
int run_tensors(const std::shared_ptr<const Model>& model, const Options& o) {
  auto s = make_session(model, o);
  if (!s.ok()) return fail(s.status());
  const EntryPointInfo& e = (*s)->entry();
  std::string names;
  for (const auto& t : e.inputs) names += (names.empty() ? "" : ", ") + t.name;
  std::vector<std::string> files(e.inputs.size());
  for (const std::string& spec : o.inputs) {
    auto [name, file] = split_assignment(spec);
    if (name.empty()) {
      if (e.inputs.size() != 1)
        return fail("entry point '" + e.name + "' has " + std::to_string(e.inputs.size()) + " inputs: give them as --input NAME=FILE.npy");
      name = e.inputs[0].name;
    }
    size_t k = 0;
    while (k < e.inputs.size() && e.inputs[k].name != name) ++k;
    if (k == e.inputs.size()) return fail("entry point '" + e.name + "' has no input '" + name + "' (inputs: " + names + ")");
    if (!files[k].empty()) return fail("input '" + name + "' is given twice");
    files[k] = file;
  }
  std::vector<Shape> shapes;
  for (size_t k = 0; k < files.size(); ++k) {
    const TensorInfo& in = e.inputs[k];
    if (files[k].empty()) return fail("input '" + in.name + "' was not given (--input " + in.name + "=FILE.npy; inputs: " + names + ")");
    auto info = read_npy_info(files[k]);
    if (!info.ok()) return fail(info.status());
    if (info->dtype != in.dtype)
      return fail("'" + files[k] + "' holds " + dtype_name(info->dtype) + ", input '" + in.name + "' must be " + dtype_name(in.dtype));
    shapes.push_back(info->shape);
  }
  if (Status st = (*s)->reshape(shapes); !st.ok()) return fail(st);
  for (size_t k = 0; k < files.size(); ++k) {
    auto slot = (*s)->input_buffer(e.inputs[k].name);
    if (!slot.ok()) return fail(slot.status());
    if (Status st = read_npy_into(files[k], *slot); !st.ok()) return fail(st);
  }
  auto t0 = std::chrono::steady_clock::now();
  Status st = (*s)->run();
  if (!st.ok()) return fail(st);
  double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::string dir = o.output_dir.empty() ? "." : o.output_dir;
  std::error_code ec;
  fs::create_directories(dir, ec);
  for (const TensorInfo& out : e.outputs) {
    auto v = (*s)->output(out.name);
    if (!v.ok()) return fail(v.status());
    std::string path = (fs::path(dir) / (out.name + ".npy")).string();
    Status w = save_npy(path, *v);
    if (!w.ok()) return fail(w);
    std::printf("%s %s %s -> %s\n", out.name.c_str(), dtype_name(v->dtype), shape_string(v->shape).c_str(), path.c_str());
  }
  std::printf("ran '%s' in %s\n", e.name.c_str(), format_seconds(dt).c_str());
  return 0;
}

struct ImageResult {
  double seconds = 0;
};

// One image: preprocess, run, postprocess, write what was asked.
Result<ImageResult> run_image(Session& s, const std::string& path, const std::string& mask_out, const std::string& overlay_out,
                              const std::string& scores_out) {
  const EntryPointInfo& e = s.entry();
  ATROUS_ASSIGN_OR_RETURN(Image img, load_image(path));
  PreprocessInfo pre = e.has_preprocess ? e.preprocess : PreprocessInfo{};
  if (pre.input.empty()) pre.input = e.inputs[0].name;
  int channels = 3;
  for (const auto& in : e.inputs)
    if (in.name == pre.input && in.shape.size() == 4 && in.shape[1] > 0) channels = static_cast<int>(in.shape[1]);
  ATROUS_ASSIGN_OR_RETURN(Preprocessed p, preprocess_image(img, pre, channels));
  ATROUS_RETURN_IF_ERROR(s.set_input(pre.input, p.tensor.view()));
  auto t0 = std::chrono::steady_clock::now();
  ATROUS_RETURN_IF_ERROR(s.run());
  ImageResult r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const PostprocessInfo& post = e.postprocess;
  std::string out_name = post.output.empty() ? e.outputs[0].name : post.output;
  ATROUS_ASSIGN_OR_RETURN(TensorView out, s.output(out_name));
  if (!scores_out.empty()) ATROUS_RETURN_IF_ERROR(save_npy(scores_out, out));
  std::vector<int32_t> labels;
  int lw = 0, lh = 0;
  const Shape& os = out.shape;
  switch (post.kind) {
    case PostprocessInfo::Kind::kArgmaxClasses: {
      ATROUS_ASSIGN_OR_RETURN(labels, argmax_classes(out));
      lh = static_cast<int>(os[2]);
      lw = static_cast<int>(os[3]);
      break;
    }
    case PostprocessInfo::Kind::kClassIndex:
    case PostprocessInfo::Kind::kMaskThreshold: {
      if (os.size() < 2 || os[0] != 1) return invalid_argument("output '" + out_name + "' has shape " + shape_string(os) + ", expected [1, ..., H, W]");
      lh = static_cast<int>(os[os.size() - 2]);
      lw = static_cast<int>(os[os.size() - 1]);
      labels.resize(static_cast<size_t>(lw) * lh);
      for (size_t i = 0; i < labels.size(); ++i) {
        if (post.kind == PostprocessInfo::Kind::kMaskThreshold) {
          if (out.dtype != DType::kF32) return invalid_argument("mask logits must be f32");
          labels[i] = out.as<float>()[i] > post.mask_threshold ? 1 : 0;
        } else if (out.dtype == DType::kI64) {
          labels[i] = static_cast<int32_t>(out.as<int64_t>()[i]);
        } else if (out.dtype == DType::kI32) {
          labels[i] = out.as<int32_t>()[i];
        } else {
          return invalid_argument("class index output must be i32 or i64");
        }
      }
      break;
    }
    default:
      return unsupported("the model has no segmentation postprocessing: use --input NAME=FILE.npy and --output-dir");
  }
  // The content region of the (possibly padded) input, in output pixels, back to the original size.
  const int64_t in_h = p.tensor.shape()[2], in_w = p.tensor.shape()[3];
  int crop_w = static_cast<int>(std::max<int64_t>(1, lw * p.content_width / in_w));
  int crop_h = static_cast<int>(std::max<int64_t>(1, lh * p.content_height / in_h));
  LabelMap map;
  map.width = img.width;
  map.height = img.height;
  map.labels = resize_labels(labels, lw, lh, crop_w, crop_h, img.width, img.height);
  std::vector<uint8_t> palette = post.palette.empty() ? default_palette() : post.palette;
  if (!mask_out.empty()) ATROUS_RETURN_IF_ERROR(save_label_png(mask_out, map, palette));
  if (!overlay_out.empty()) ATROUS_RETURN_IF_ERROR(save_png(overlay_out, overlay(img, map.labels, palette)));
  return r;
}

int run_images(const std::shared_ptr<const Model>& model, const Options& o) {
  auto s = make_session(model, o);
  if (!s.ok()) return fail(s.status());
  fs::path target(o.target);
  std::error_code ec;
  if (fs::is_directory(target, ec)) {
    if (o.output_dir.empty()) return fail("a folder of images needs --output-dir OUT/");
    std::vector<fs::path> files;
    for (const auto& ent : fs::directory_iterator(target, ec))
      if (ent.is_regular_file() && is_image_file(ent.path())) files.push_back(ent.path());
    std::sort(files.begin(), files.end());
    if (files.empty()) return fail("no images (.png, .jpg, .jpeg, .bmp) in '" + o.target + "'");
    fs::create_directories(o.output_dir, ec);
    if (ec) return fail("cannot create '" + o.output_dir + "': " + ec.message());
    Progress bar(files.size(), true);
    size_t ok = 0, failed = 0;
    double total = 0;
    for (size_t i = 0; i < files.size(); ++i) {
      std::string stem = files[i].stem().string();
      fs::path od(o.output_dir);
      auto r = run_image(**s, files[i].string(), (od / (stem + ".png")).string(),
                         o.overlay_flag ? (od / (stem + "_overlay.png")).string() : "",
                         o.scores_flag ? (od / (stem + "_scores.npy")).string() : "");
      if (r.ok()) {
        ++ok;
        total += r->seconds;
      } else {
        ++failed;
        bar.finish();
        std::fprintf(stderr, "skipped %s: %s\n", files[i].string().c_str(), r.status().to_string().c_str());
      }
      bar.update(i + 1, files[i].filename().string());
    }
    bar.finish();
    std::printf("%zu images segmented, %zu skipped, mean latency %s -> %s\n", ok, failed,
                ok ? format_seconds(total / static_cast<double>(ok)).c_str() : "-", o.output_dir.c_str());
    return failed && !ok ? 1 : 0;
  }
  std::string mask = o.output.empty() ? (target.stem().string() + "_mask.png") : o.output;
  std::string ov = o.overlay_flag && o.overlay.empty() ? target.stem().string() + "_overlay.png" : o.overlay;
  auto r = run_image(**s, o.target, mask, ov, o.scores);
  if (!r.ok()) return fail(r.status());
  std::printf("segmented %s in %s\n  mask:    %s\n", o.target.c_str(), format_seconds(r->seconds).c_str(), mask.c_str());
  if (!ov.empty()) std::printf("  overlay: %s\n", ov.c_str());
  if (!o.scores.empty()) std::printf("  scores:  %s\n", o.scores.c_str());
  return 0;
}

int run(const Options& o) {
  auto model = Model::open(o.model);
  if (!model.ok()) return fail(model.status());
  if (!o.inputs.empty()) {
    if (!o.target.empty()) return fail("give either an image/folder or --input tensors, not both");
    return run_tensors(*model, o);
  }
  if (o.target.empty()) return fail("nothing to run: give an IMAGE, a folder, or --input NAME=FILE.npy");
  return run_images(*model, o);
}

Runner setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  app.description("Run a model on an image (or a folder of images) or on .npy tensors");
  app.add_option("model", o->model, "model file (.atrous)")->required();
  app.add_option("image", o->target, "image file or folder of images");
  app.add_option("-o,--output", o->output, "class-index PNG (palette) for one image (default: <image>_mask.png)");
  auto* ov = app.add_option("--overlay", o->overlay, "overlay PNG on the original image (in folder mode: a flag)");
  ov->expected(0, 1);
  app.add_option("--scores", o->scores, "write the raw scores/logits as .npy (in folder mode: a flag)")->expected(0, 1);
  app.add_option("--input", o->inputs, "raw input NAME=FILE.npy (FILE.npy alone for a single-input model)");
  app.add_option("--output-dir", o->output_dir, "folder for outputs (.npy per output, or masks in folder mode)");
  app.add_option("--entry", o->entry, "entry point (default: the first)");
  app.add_option("--threads", o->threads, "threads (0 = all cores)")->check(CLI::Range(0, atrous::kMaxThreads));
  app.add_option("--max-memory", o->max_memory, "refuse plans needing more memory than this (e.g. 2G)");
  app.add_flag("--reference", o->reference, "use reference kernels only");
  app.callback([o, &app] {
    o->overlay_flag = app.count("--overlay") > 0;
    o->scores_flag = app.count("--scores") > 0;
  });
  return [o] { return run(*o); };
}

}  // namespace

extern const Command kRun;
const Command kRun = {"run", setup};

}  // namespace atrous::cli
