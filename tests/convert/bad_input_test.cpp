// `atrous convert` on bad input: each failure must print a message naming the
// file, tensor or key, exit non-zero, and leave no output (nor a temporary) behind.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli_runner.h"
#include "convert/recipe.h"

namespace fs = std::filesystem;
using atrous::test::CliResult;
using atrous::test::run_cli;
using nlohmann::json;

namespace {

json manifest() {
  std::ifstream f(atrous::test::cases_path("manifest.json"));
  REQUIRE(f.good());
  return json::parse(f);
}

std::string convnet(const std::string& file) { return atrous::test::cases_path("convnet/" + file); }

// Runs convert into a fresh folder; checks the exit code and that the folder stays empty.
CliResult convert_fails(std::vector<std::string> args) {
  std::string dir = atrous::test::temp_dir("bad");
  std::string out = dir + "/model.atrous";
  args.insert(args.begin(), "convert");
  args.insert(args.end(), {"-o", out});
  CliResult r = run_cli(args);
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.code != 0);
  CHECK(!fs::exists(out));
  CHECK(atrous::test::list_dir(dir).empty());
  CHECK(r.err.rfind("error: ", 0) == 0);
  return r;
}

void contains(const std::string& text, const std::string& part) {
  INFO("looking for: " << part << "\nin: " << text);
  CHECK(text.find(part) != std::string::npos);
}

}  // namespace

TEST_CASE("bad input: damaged, hostile and mismatched weight files") {
  json m = manifest();
  REQUIRE(m["bad"].size() >= 5);
  for (const json& b : m["bad"]) {
    DYNAMIC_SECTION(b["name"].get<std::string>()) {
      CliResult r = convert_fails({"--arch", "graph", "--config", convnet("config.json"), b["weights"]});
      for (const auto& part : b["contains"]) contains(r.err, part);
    }
  }
}

TEST_CASE("bad input: every problem is one line and all are reported at once") {
  CliResult r = convert_fails({"--arch", "graph", "--config", convnet("config.json"),
                               atrous::test::cases_path("bad/mismatched.pth")});
  size_t lines = 0;
  for (char c : r.err) lines += c == '\n';
  CHECK(lines == 8);  // 7 problems + the summary
}

TEST_CASE("bad input: a config that is not a regular file is refused, not read forever") {
  CliResult r = convert_fails({"--arch", "graph", "--config", "/dev/zero", convnet("model.pth")});
  contains(r.err, "error: i/o error: '/dev/zero' is not a regular file");
}

TEST_CASE("bad input: unknown arch lists the known ones") {
  CliResult r = convert_fails({"--arch", "resnet9000", convnet("model.pth")});
  contains(r.err, "error: invalid argument: unknown arch 'resnet9000' (known: " + atrous::convert::recipe_names() + ")");
  contains(r.err, "(known: graph");
}

TEST_CASE("bad input: config keys that do not exist") {
  SECTION("--set") {
    CliResult r = convert_fails({"--arch", "graph", "--config", convnet("config.json"), "--set", "colour=red",
                                 convnet("model.pth")});
    contains(r.err, "unknown config key 'colour' in --set colour=red (recipe 'graph' knows: ");
    contains(r.err, "class_names, entry, ignore");
  }
  SECTION("in the config file") {
    std::string dir = atrous::test::temp_dir("cfg");
    std::ifstream in(convnet("config.json"));
    json cfg = json::parse(in);
    cfg["num_classes"] = 5;
    std::ofstream(dir + "/net.json") << cfg.dump();
    CliResult r = convert_fails({"--arch", "graph", "--config", dir + "/net.json", convnet("model.pth")});
    contains(r.err, "unknown config key 'num_classes' in '" + dir + "/net.json' (recipe 'graph' knows: ");
  }
  SECTION("a wrongly typed value") {
    CliResult r = convert_fails({"--arch", "graph", "--config", convnet("config.json"), "--set", "mean=grey",
                                 convnet("model.pth")});
    contains(r.err, "config key 'mean' in --set mean=grey: 'grey' is not a float list");
  }
  SECTION("an unknown variable in the graph") {
    CliResult r = convert_fails({"--arch", "graph", "--config", convnet("config.json"), "--set", "vars={}",
                                 convnet("model.pth")});
    contains(r.err, "unknown variable 'bn_eps' (vars: none)");
    contains(r.err, "nodes[1].attrs");
  }
  SECTION("a missing required key") {
    CliResult r = convert_fails({"--arch", "graph", convnet("model.pth")});
    contains(r.err, "config key 'inputs' is required by recipe 'graph'");
  }
}

TEST_CASE("bad input: a config file that is not JSON") {
  std::string dir = atrous::test::temp_dir("cfg");
  std::ofstream(dir + "/net.json") << "{\"nodes\": [}";
  CliResult r = convert_fails({"--arch", "graph", "--config", dir + "/net.json", convnet("model.pth")});
  contains(r.err, "config file '" + dir + "/net.json' is not valid JSON");
}

TEST_CASE("bad input: --check that fails names the first diverging node and writes nothing") {
  // A wrong BatchNorm eps: the first node whose output differs is stem.1.
  CliResult r = convert_fails({"--arch", "graph", "--config", convnet("config.json"), "--set", "vars.bn_eps=0.5",
                               convnet("model.pth"), "--check", convnet("inputs.npz"), convnet("outputs.npz")});
  contains(r.out, "first divergence at node 'stem.1' (BatchNorm)");
  contains(r.out, "last good: stem.0 [2, 8, 12, 10]");
  contains(r.out, "check FAILED");
  contains(r.err, "does not match the reference outputs;");
  contains(r.err, "was not written");
}

TEST_CASE("bad input: --check with inputs that do not fit") {
  CliResult r = convert_fails({"--arch", "graph", "--config", convnet("config.json"), convnet("model.pth"), "--check",
                               convnet("outputs.npz"), convnet("outputs.npz")});
  contains(r.err, "has no array 'x' for input 'x' of entry 'main'");
}

TEST_CASE("bad input: an output path that cannot be written") {
  CliResult r = run_cli({"convert", "--arch", "graph", "--config", convnet("config.json"), convnet("model.pth"), "-o",
                         "/nonexistent-dir/model.atrous"});
  CHECK(r.code != 0);
  contains(r.err, "/nonexistent-dir/model.atrous");
}
