// Replays every saved input in tests/security/regressions/<target>/ (inputs
// that once crashed or hung a fuzz target, and hand-made hostile files)
// through the same code as the fuzz target. Each must complete normally.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "targets.h"

namespace fs = std::filesystem;

TEST_CASE("fuzz regression inputs complete without crashing", "[security]") {
  fs::path root = fs::path(ATROUS_REGRESSIONS_DIR);
  REQUIRE(fs::is_directory(root));
  int replayed = 0;
  for (const auto& target : fs::directory_iterator(root)) {
    if (!target.is_directory()) continue;
    for (const auto& f : fs::directory_iterator(target.path())) {
      if (!f.is_regular_file()) continue;
      std::ifstream in(f.path(), std::ios::binary);
      std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      INFO("replaying " << f.path().string());
      CHECK(atrous::fuzz::run_target(target.path().filename().string(), bytes.data(), bytes.size()));
      ++replayed;
    }
  }
  CHECK(replayed > 0);
}
