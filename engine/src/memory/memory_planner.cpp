#include "memory/memory_planner.h"

#include <algorithm>
#include <cstdio>
#include <numeric>

namespace atrous {

int MemoryPlanner::add_buffer(uint64_t bytes, int first_step, int last_step, std::string label) {
  MemoryBuffer b;
  b.bytes = (bytes + alignment_ - 1) / alignment_ * alignment_;
  b.first = first_step;
  b.last = std::max(first_step, last_step);
  b.label = std::move(label);
  buffers_.push_back(std::move(b));
  return static_cast<int>(buffers_.size()) - 1;
}

void MemoryPlanner::extend(int id, int first_step, int last_step) {
  MemoryBuffer& b = buffers_[static_cast<size_t>(id)];
  b.first = std::min(b.first, first_step);
  b.last = std::max(b.last, last_step);
}

MemoryPlan MemoryPlanner::plan() const {
  MemoryPlan p;
  p.buffers = buffers_;
  int steps = 0;
  for (const auto& b : p.buffers) {
    p.naive_bytes += b.bytes;
    steps = std::max(steps, b.last + 1);
  }
  p.num_steps = steps;
  // Lower bound: bytes alive per step, by a difference array over steps.
  std::vector<int64_t> delta(static_cast<size_t>(steps) + 1, 0);
  for (const auto& b : p.buffers) {
    delta[static_cast<size_t>(b.first)] += static_cast<int64_t>(b.bytes);
    delta[static_cast<size_t>(b.last) + 1] -= static_cast<int64_t>(b.bytes);
  }
  int64_t live = 0;
  for (int s = 0; s < steps; ++s) {
    live += delta[static_cast<size_t>(s)];
    p.lower_bound = std::max<uint64_t>(p.lower_bound, static_cast<uint64_t>(live));
  }
  // Greedy by size; ties broken by longer lifetime, then by id for determinism.
  std::vector<size_t> order(p.buffers.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const auto &x = p.buffers[a], &y = p.buffers[b];
    if (x.bytes != y.bytes) return x.bytes > y.bytes;
    return (x.last - x.first) > (y.last - y.first);
  });
  std::vector<size_t> placed;
  std::vector<std::pair<uint64_t, uint64_t>> busy;  // [offset, end) of conflicting buffers
  for (size_t id : order) {
    MemoryBuffer& b = p.buffers[id];
    busy.clear();
    for (size_t o : placed) {
      const MemoryBuffer& q = p.buffers[o];
      if (q.first <= b.last && b.first <= q.last) busy.emplace_back(q.offset, q.offset + q.bytes);
    }
    std::sort(busy.begin(), busy.end());
    uint64_t off = 0;
    for (const auto& [s, e] : busy) {
      if (s >= off + b.bytes) break;  // fits in the gap before this one
      off = std::max(off, e);
    }
    b.offset = off;
    p.arena_bytes = std::max(p.arena_bytes, off + b.bytes);
    placed.push_back(id);
  }
  return p;
}

std::string MemoryPlan::timeline(size_t max_rows) const {
  std::string out;
  char line[512];
  const int width = std::min(num_steps, 60);
  for (size_t i = 0; i < buffers.size() && i < max_rows; ++i) {
    const auto& b = buffers[i];
    std::string bar(static_cast<size_t>(width), '.');
    if (num_steps > 0) {
      int a = b.first * width / num_steps, z = b.last * width / num_steps;
      for (int s = a; s <= z && s < width; ++s) bar[static_cast<size_t>(s)] = '#';
    }
    std::snprintf(line, sizeof(line), "  %-36.36s %12llu B @ %12llu  steps %3d-%-3d |%s|\n", b.label.c_str(),
                  static_cast<unsigned long long>(b.bytes), static_cast<unsigned long long>(b.offset), b.first, b.last,
                  bar.c_str());
    out += line;
  }
  if (buffers.size() > max_rows) out += "  ... " + std::to_string(buffers.size() - max_rows) + " more buffers\n";
  return out;
}

}  // namespace atrous
