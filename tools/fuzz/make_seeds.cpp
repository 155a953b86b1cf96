// Writes seed corpora for the fuzz targets: every reference op case (a folder
// written by tests/ops/make_op_cases.py) as a model file.
//   make_seeds CASES_DIR OUT_DIR
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "atrous/npy.h"
#include "builder/graph_builder.h"
#include "builder/graph_json.h"

int main(int argc, char** argv) {
  using namespace atrous;
  if (argc != 3) return 2;
  std::string dir = argv[1], out = argv[2];
  std::ifstream idx(dir + "/index.json");
  auto names = nlohmann::json::parse(idx).get<std::vector<std::string>>();
  int written = 0;
  for (const auto& name : names) {
    std::ifstream f(dir + "/" + name + "/case.json");
    auto j = nlohmann::json::parse(f);
    ModelBuilder mb(name, "fuzz-seeds");
    GraphBuilder& g = mb.graph("main");
    Status st = build_graph_from_json(g, j.at("graph").dump(), [&](GraphBuilder& gb, const std::string& c) -> Result<int> {
      std::string file = c;
      for (char& ch : file)
        if (ch == '/' || ch == ':') ch = '_';
      ATROUS_ASSIGN_OR_RETURN(Tensor t, load_npy(dir + "/" + name + "/" + file + ".npy"));
      return gb.constant(c, t);
    });
    if (!st.ok()) continue;
    auto bytes = mb.to_bytes();
    if (!bytes.ok()) continue;
    std::ofstream o(out + "/" + name + ".atrous", std::ios::binary);
    o.write(reinterpret_cast<const char*>(bytes->data()), static_cast<std::streamsize>(bytes->size()));
    ++written;
  }
  std::printf("%d seed models\n", written);
  return 0;
}
