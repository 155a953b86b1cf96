// The one registry table. Adding an op: its file in ops/, one line in ATROUS_OPS,
// one test. Names come from the schema's Op union (fb::EnumNameOp).
#include <array>

#include "ops/op_registry.h"

namespace atrous {

namespace {
constexpr size_t kNumOpTypes = static_cast<size_t>(fb::Op::MAX) + 1;

const std::array<const OpDef*, kNumOpTypes>& table() {
  static const std::array<const OpDef*, kNumOpTypes> t = [] {
    std::array<const OpDef*, kNumOpTypes> a{};
#define ATROUS_REGISTER_OP(name) a[static_cast<size_t>(fb::Op::name)] = &k##name##Op;
    ATROUS_OPS(ATROUS_REGISTER_OP)
#undef ATROUS_REGISTER_OP
    return a;
  }();
  return t;
}
}  // namespace

const OpDef* find_op(fb::Op type) {
  auto i = static_cast<size_t>(type);
  return i < kNumOpTypes ? table()[i] : nullptr;
}

std::vector<const OpDef*> all_ops() {
  std::vector<const OpDef*> v;
  for (const OpDef* d : table())
    if (d) v.push_back(d);
  return v;
}

}  // namespace atrous
