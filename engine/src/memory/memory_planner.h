// The static memory planner: places buffers with known lifetimes in one arena.
//
// Interface: add a buffer (bytes, first step, last step), plan, read offsets.
// Algorithm: greedy by size (largest first), each buffer at the lowest offset
// that does not overlap any already placed buffer whose lifetime intersects
// its own (the TFLite / OpenVINO standard; near-optimal in practice). The lower
// bound reported beside the arena is the largest total of bytes alive at any
// one step: no placement can do better. Sizes are rounded up to the alignment.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace atrous {

struct MemoryBuffer {
  uint64_t bytes = 0;    // rounded up to the alignment
  int first = 0;         // first step that touches it
  int last = 0;          // last step that touches it (inclusive)
  std::string label;
  uint64_t offset = 0;   // set by plan()
};

struct MemoryPlan {
  std::vector<MemoryBuffer> buffers;
  uint64_t arena_bytes = 0;   // end of the highest placed buffer
  uint64_t naive_bytes = 0;   // sum of all buffers (no reuse)
  uint64_t lower_bound = 0;   // max over steps of bytes alive at that step
  int num_steps = 0;

  // One line per buffer: label, size, offset and a bar over the steps it lives.
  std::string timeline(size_t max_rows = 200) const;
};

class MemoryPlanner {
 public:
  explicit MemoryPlanner(uint64_t alignment = 64) : alignment_(alignment) {}
  // Returns the buffer id.
  int add_buffer(uint64_t bytes, int first_step, int last_step, std::string label = {});
  // Extends a buffer's lifetime (used when a later value takes over the buffer).
  void extend(int id, int first_step, int last_step);
  MemoryPlan plan() const;

 private:
  uint64_t alignment_;
  std::vector<MemoryBuffer> buffers_;
};

}  // namespace atrous
