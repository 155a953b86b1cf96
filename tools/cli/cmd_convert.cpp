// atrous convert --arch NAME [--config FILE.json] [--set KEY=VALUE]... WEIGHTS... -o MODEL.atrous
//                [--dtype f32|f16|bf16] [--check INPUTS.npz OUTPUTS.npz]
// atrous convert --list-archs
//
// PyTorch weights (.pth, .safetensors, shards) to a model file through a recipe
// (tools/convert/recipe.h). Every problem with the weights is printed, one line
// each, before anything is written; with --check the model is only put in place
// after it matched the reference outputs.
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "cli.h"
#include "convert/check.h"
#include "convert/recipe.h"

namespace atrous::cli {
namespace {

namespace fs = std::filesystem;
namespace cv = atrous::convert;

struct Options {
  std::string arch, config, output, dtype = "f32", entry;
  std::vector<std::string> sets, weights, check;
  bool list = false, reference = false;
  double tolerance = -1;
  int threads = 0;
};

int list_archs() {
  for (const cv::Recipe* r : cv::all_recipes()) {
    std::printf("%s\n  %s\n  config keys:\n", r->name, r->description);
    for (const cv::ConfigKey& k : cv::recipe_config_keys(*r)) {
      std::string def = k.default_json.empty() ? "" : ", default " + k.default_json;
      std::printf("    %-16s (%s%s) %s\n", k.name.c_str(), cv::config_type_name(k.type), def.c_str(), k.help.c_str());
    }
  }
  return 0;
}

int run(const Options& o) {
  if (o.list) return list_archs();
  if (o.arch.empty()) return fail("--arch NAME is required (known: " + cv::recipe_names() + "; see --list-archs)");
  if (o.weights.empty()) return fail("no weight files given (a .pth checkpoint, .safetensors files or an index)");
  if (o.output.empty()) return fail("no output file: give -o MODEL.atrous");
  auto dt = parse_dtype(o.dtype);
  if (!dt.ok() || (*dt != DType::kF32 && *dt != DType::kF16 && *dt != DType::kBF16))
    return fail("--dtype '" + o.dtype + "': expected f32, f16 or bf16");

  cv::ConvertOptions co;
  co.arch = o.arch;
  co.config_file = o.config;
  co.sets = o.sets;
  co.weights = o.weights;
  co.dtype = *dt;
  // With --check, the model goes to a temporary name and is only moved into place once it passed.
  bool checking = !o.check.empty();
  co.output = checking ? o.output + ".unchecked-" + std::to_string(::getpid()) : o.output;

  cv::ConvertOutcome out = cv::convert(co);
  if (!out.status.ok()) {
    for (const cv::Problem& p : out.problems) std::fprintf(stderr, "error: %s\n", p.message.c_str());
    return fail(out.status);
  }
  std::error_code ec;
  uint64_t size = fs::file_size(co.output, ec);
  std::printf("converted %s\n  recipe '%s', %zu constants, weights %s as %s -> %s (%s)\n", out.source_description.c_str(),
              o.arch.c_str(), out.tensors_used, human_bytes(out.weight_bytes).c_str(), o.dtype.c_str(), o.output.c_str(),
              human_bytes(size).c_str());
  if (!checking) return 0;

  cv::CheckOptions ck;
  ck.entry = o.entry;
  ck.threads = o.threads;
  ck.reference_only = o.reference;
  ck.tolerance = o.tolerance >= 0 ? o.tolerance : cv::default_tolerance(*dt);
  auto report = cv::check_model(co.output, o.check[0], o.check[1], ck);
  if (!report.ok() || !report->passed) {
    std::remove(co.output.c_str());
    if (!report.ok()) return fail(report.status().with_context("--check"));
    std::fputs(report->to_text().c_str(), stdout);
    std::fflush(stdout);  // the report before the error line, also when both go to one pipe
    return fail("the converted model does not match the reference outputs; " + o.output + " was not written");
  }
  std::fputs(report->to_text().c_str(), stdout);
  fs::rename(co.output, o.output, ec);
  if (ec) {
    std::remove(co.output.c_str());
    return fail("cannot move the checked model to '" + o.output + "': " + ec.message());
  }
  return 0;
}

Runner setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  app.description("Convert PyTorch weights (.pth, .safetensors) to a model file through an architecture recipe");
  app.add_option("weights", o->weights, "weight files: a torch.save checkpoint, .safetensors files, or a shard index");
  app.add_option("--arch", o->arch, "recipe name (see --list-archs)");
  app.add_option("--config", o->config, "recipe config as a JSON object (for --arch graph: the network)");
  app.add_option("--set", o->sets, "override one config key: KEY=VALUE (repeatable; VALUE is JSON or text)")
      ->allow_extra_args(false);  // one KEY=VALUE per --set: the weight files that follow stay positional
  app.add_option("-o,--output", o->output, "model file to write (.atrous)");
  app.add_option("--dtype", o->dtype, "storage type of float weights with 2+ dims: f32, f16 or bf16 (default f32)");
  app.add_option("--check", o->check, "INPUTS.npz OUTPUTS.npz: run the new model on reference inputs and compare")
      ->expected(2);
  app.add_option("--tolerance", o->tolerance,
                 "--check passes when max abs error <= tolerance x max |reference| (default 1e-4; f16 1e-2; bf16 5e-2)");
  app.add_option("--entry", o->entry, "entry point for --check (default: the first)");
  app.add_option("--threads", o->threads, "threads for --check (0 = all cores)")->check(CLI::Range(0, atrous::kMaxThreads));
  app.add_flag("--reference", o->reference, "--check with reference kernels only");
  app.add_flag("--list-archs", o->list, "list the recipes and their config keys");
  return [o] { return run(*o); };
}

}  // namespace

extern const Command kConvert;
const Command kConvert = {"convert", setup};

}  // namespace atrous::cli
