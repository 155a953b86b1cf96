// Shared pieces of op checking and shape inference.
#include <string>

#include "ops/op_registry.h"

namespace atrous {

Status CheckContext::fail(const std::string& msg) const {
  return invalid_model(ir::node_label(graph, node_index) + ": " + msg);
}

Status CheckContext::expect_dtype(int i, std::initializer_list<DType> allowed) const {
  if (!has(i)) return Status::Ok();
  DType t = dtype(i);
  for (DType a : allowed)
    if (a == t) return Status::Ok();
  std::string list;
  for (DType a : allowed) list += std::string(list.empty() ? "" : " or ") + dtype_name(a);
  return fail("input " + std::to_string(i) + " " + ir::value_label(graph, node.inputs[static_cast<size_t>(i)]) +
              " has dtype " + dtype_name(t) + ", expected " + list);
}

Status CheckContext::expect_constant(int i) const {
  if (!has(i)) return fail("input " + std::to_string(i) + " is required");
  if (value(i).kind != ir::ValueKind::kConstant)
    return fail("input " + std::to_string(i) + " " + ir::value_label(graph, node.inputs[static_cast<size_t>(i)]) +
                " must be a constant (weights)");
  return Status::Ok();
}

Status ShapeContext::fail(const std::string& msg) const {
  return invalid_argument(ir::node_label(graph, node_index) + ": " + msg);
}

Status ShapeContext::expect_rank(int i, size_t rank) const {
  if (!has(i)) return fail("input " + std::to_string(i) + " is missing");
  if (in[static_cast<size_t>(i)].size() != rank)
    return fail("input " + std::to_string(i) + " " + ir::value_label(graph, node.inputs[static_cast<size_t>(i)]) +
                " has shape " + shape_string(in[static_cast<size_t>(i)]) + ", expected rank " + std::to_string(rank));
  return Status::Ok();
}

bool normalize_axis(int64_t axis, size_t rank, int* out) {
  auto r = static_cast<int64_t>(rank);
  if (axis < -r || axis >= r) return false;
  *out = static_cast<int>(axis < 0 ? axis + r : axis);
  return true;
}

bool broadcast_shapes(const Shape& a, const Shape& b, Shape* out) {
  size_t n = std::max(a.size(), b.size());
  Shape r(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (da != db && da != 1 && db != 1) return false;
    r[i] = da == 1 ? db : da;
  }
  *out = std::move(r);
  return true;
}

int64_t conv_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad_begin, int64_t pad_end, int64_t dilation) {
  int64_t span = dilation * (k - 1) + 1;
  int64_t avail = in + pad_begin + pad_end - span;
  if (avail < 0) return 0;
  return avail / stride + 1;
}

void* KernelContext::persistent(uint64_t bytes) { return persistent_fn(bytes); }

int KernelContext::scratch(uint64_t bytes) {
  scratch_bytes.push_back(bytes);
  return static_cast<int>(scratch_bytes.size()) - 1;
}

}  // namespace atrous
