// atrous: run, inspect, benchmark, convert and evaluate models.
#include <malloc.h>

#include <spdlog/sinks/stdout_color_sinks.h>

#include <cstdio>

#include "cli.h"

namespace atrous::cli {
extern const Command kInspect, kRun, kBench, kConvert, kSegment, kEval;
}

int main(int argc, char** argv) {
  // oneDNN's sgemm allocates and frees its multi-MiB packing buffers on every call.
  // glibc's dynamic mmap threshold then serves them from the heap, where freed memory
  // stays resident: 10-18 MiB of peak RSS in SAM's encoder. A fixed threshold keeps
  // them in mmap (returned on free); the encoder's run time did not change measurably.
  // Apps embedding the library can do the same (docs/performance.md).
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  mallopt(M_TRIM_THRESHOLD, 1 << 20);
  using namespace atrous::cli;
  CLI::App app{"atrous: a CPU inference engine for segmentation and efficient-sequence models"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "atrous 0.1.0");
  int verbosity = 0;
  app.add_flag("-v,--verbose", verbosity, "more logging (-v: info, -vv: debug)");
  std::vector<std::pair<CLI::App*, Runner>> runners;
  for (const Command* c : {&kInspect, &kRun, &kBench, &kConvert, &kSegment, &kEval}) {
    CLI::App* sub = app.add_subcommand(c->name);
    runners.emplace_back(sub, c->setup(*sub));
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "error: %s (see atrous --help)\n", e.what());
    return 2;
  }
  spdlog::set_default_logger(spdlog::stderr_color_mt("atrous"));
  spdlog::set_pattern("%^%l%$: %v");
  spdlog::set_level(verbosity >= 2 ? spdlog::level::debug : verbosity == 1 ? spdlog::level::info : spdlog::level::warn);
  for (auto& [sub, run] : runners)
    if (sub->parsed()) {
      try {
        return run();
      } catch (const std::exception& e) {
        return fail(std::string("unexpected: ") + e.what());
      }
    }
  return 1;
}
