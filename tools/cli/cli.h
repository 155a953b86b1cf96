// Shared pieces of the `atrous` subcommands: registration, errors, parsing.
#pragma once

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <functional>
#include <string>
#include <vector>

#include "atrous/atrous.h"

namespace atrous::cli {

// Each subcommand file registers itself: adds its options to `app` and returns
// the function that runs it (returning the process exit code).
using Runner = std::function<int()>;
struct Command {
  const char* name;
  Runner (*setup)(CLI::App& app);
};

// Prints "error: <message>" on one line and returns 1.
int fail(const Status& s);
int fail(const std::string& message);

// "1,3,512,512" → shape.
Result<Shape> parse_shape(const std::string& text);
// "NAME=VALUE" → {NAME, VALUE}; a bare VALUE gives {"", VALUE}.
std::pair<std::string, std::string> split_assignment(const std::string& text);
// "123", "512M", "4G" → bytes.
Result<uint64_t> parse_bytes(const std::string& text);

std::string human_bytes(uint64_t b);
std::string format_seconds(double s);

// Concrete input shapes for planning: --shape overrides, then the model's fixed
// dims, then the preprocessing size, then 512 for free spatial dims.
Result<std::vector<Shape>> default_input_shapes(const EntryPointInfo& e, const std::vector<std::string>& overrides);

// A progress bar on stderr when it is a terminal.
class Progress {
 public:
  Progress(size_t total, bool enabled);
  void update(size_t done, const std::string& label);
  void finish();

 private:
  size_t total_;
  bool enabled_;
};

}  // namespace atrous::cli
