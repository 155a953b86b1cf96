// Runs the `atrous` binary for end-to-end converter tests and captures what it says.
#pragma once

#include <string>
#include <vector>

namespace atrous::test {

struct CliResult {
  int code = -1;     // exit status
  std::string out;   // stdout
  std::string err;   // stderr
};

// ATROUS_CLI_PATH (a compile definition) with these arguments.
CliResult run_cli(const std::vector<std::string>& args);

// A fresh empty folder under the system temp dir, removed at exit.
std::string temp_dir(const std::string& label);

// Files in `dir` (names only).
std::vector<std::string> list_dir(const std::string& dir);

// ATROUS_CONVERT_CASES (set by ctest) joined with `rel`.
std::string cases_path(const std::string& rel = "");

}  // namespace atrous::test
