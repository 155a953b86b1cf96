#include "memory/memory_planner.h"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <random>
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
  // Greedy placement (each buffer at the lowest offset free over its lifetime) in
  // several orders; the smallest arena wins. Size-first is the classic heuristic;
  // the others win when a long-lived small buffer would split the space that big
  // short-lived ones need. Ties keep the earlier order, so plans are deterministic.
  const auto& bufs = p.buffers;
  auto life = [&](size_t i) { return static_cast<int64_t>(bufs[i].last - bufs[i].first); };
  using Less = std::function<bool(size_t, size_t)>;
  const Less orders[] = {
      [&](size_t a, size_t b) { return bufs[a].bytes != bufs[b].bytes ? bufs[a].bytes > bufs[b].bytes : life(a) > life(b); },
      [&](size_t a, size_t b) { return life(a) != life(b) ? life(a) > life(b) : bufs[a].bytes > bufs[b].bytes; },
      [&](size_t a, size_t b) {
        const double x = static_cast<double>(bufs[a].bytes) * static_cast<double>(life(a) + 1);
        const double y = static_cast<double>(bufs[b].bytes) * static_cast<double>(life(b) + 1);
        return x != y ? x > y : bufs[a].bytes > bufs[b].bytes;
      },
      [&](size_t a, size_t b) { return bufs[a].first != bufs[b].first ? bufs[a].first < bufs[b].first : bufs[a].bytes > bufs[b].bytes; },
  };
  std::vector<uint64_t> best_offsets;
  uint64_t best_arena = 0;
  std::vector<size_t> order(bufs.size());
  std::vector<uint64_t> offsets(bufs.size());
  std::vector<size_t> placed;
  std::vector<std::pair<uint64_t, uint64_t>> busy;  // [offset, end) of conflicting buffers
  auto place = [&](const std::vector<size_t>& ord) {
    placed.clear();
    uint64_t arena = 0;
    for (size_t id : ord) {
      const MemoryBuffer& b = bufs[id];
      busy.clear();
      for (size_t o : placed) {
        const MemoryBuffer& q = bufs[o];
        if (q.first <= b.last && b.first <= q.last) busy.emplace_back(offsets[o], offsets[o] + q.bytes);
      }
      std::sort(busy.begin(), busy.end());
      uint64_t off = 0;
      for (const auto& [s, e] : busy) {
        if (s >= off + b.bytes) break;  // fits in the gap before this one
        off = std::max(off, e);
      }
      offsets[id] = off;
      arena = std::max(arena, off + b.bytes);
      placed.push_back(id);
    }
    return arena;
  };
  std::vector<size_t> best_order;
  for (const Less& less : orders) {
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), less);
    const uint64_t arena = place(order);
    if (best_offsets.empty() || arena < best_arena) {
      best_arena = arena;
      best_offsets = offsets;
      best_order = order;
    }
  }
  // Still above the lower bound: a local search over placement orders (move one buffer
  // elsewhere in the order, keep the result when the arena does not grow), with a fixed
  // seed so the same graph always gets the same plan. The budget bounds the pair checks
  // (~n² per placement) to a few tens of milliseconds.
  const size_t n = bufs.size();
  if (n > 1 && best_arena > p.lower_bound) {
    std::mt19937 rng(12345);
    const uint64_t budget = uint64_t{20000000} / (static_cast<uint64_t>(n) * n);
    const uint64_t tries = std::min<uint64_t>(4000, budget);
    for (uint64_t t = 0; t < tries && best_arena > p.lower_bound; ++t) {
      order = best_order;
      const size_t from = rng() % n, to = rng() % n;
      const size_t moved = order[from];
      order.erase(order.begin() + static_cast<std::ptrdiff_t>(from));
      order.insert(order.begin() + static_cast<std::ptrdiff_t>(to), moved);
      const uint64_t arena = place(order);
      if (arena <= best_arena) {
        best_offsets = offsets;
        best_arena = arena;
        best_order = order;
      }
    }
  }
  for (size_t i = 0; i < p.buffers.size(); ++i) p.buffers[i].offset = best_offsets.empty() ? 0 : best_offsets[i];
  p.arena_bytes = best_arena;
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
