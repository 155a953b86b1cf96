#include "cli_runner.h"

#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace atrous::test {
namespace fs = std::filesystem;

namespace {

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct TempRoot {
  std::string path;
  TempRoot() {
    std::string tmpl = (fs::temp_directory_path() / "atrous-convert-test-XXXXXX").string();
    path = mkdtemp(tmpl.data()) ? tmpl : std::string();
  }
  ~TempRoot() {
    std::error_code ec;
    if (!path.empty()) fs::remove_all(path, ec);
  }
};

TempRoot& root() {
  static TempRoot r;
  return r;
}

}  // namespace

CliResult run_cli(const std::vector<std::string>& args) {
  std::string dir = temp_dir("cli");
  std::string cmd = quote(ATROUS_CLI_PATH);
  for (const auto& a : args) cmd += " " + quote(a);
  cmd += " >" + quote(dir + "/out") + " 2>" + quote(dir + "/err");
  int st = std::system(cmd.c_str());
  CliResult r;
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.out = slurp(dir + "/out");
  r.err = slurp(dir + "/err");
  return r;
}

std::string temp_dir(const std::string& label) {
  static int counter = 0;
  REQUIRE(!root().path.empty());
  std::string d = root().path + "/" + label + "-" + std::to_string(counter++);
  fs::create_directories(d);
  return d;
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  return names;
}

std::string cases_path(const std::string& rel) {
  const char* d = std::getenv("ATROUS_CONVERT_CASES");
  if (!d || !*d) FAIL("set ATROUS_CONVERT_CASES to the output folder of make_convert_cases.py");
  return rel.empty() ? std::string(d) : std::string(d) + "/" + rel;
}

}  // namespace atrous::test
