#include "builder/op_json.h"

#include <flatbuffers/idl.h>

#include <mutex>

namespace atrous {

extern const char* const kSchemaText;

namespace {

struct SchemaParser {
  std::mutex mu;
  flatbuffers::Parser parser;
  bool ok = false;
  std::string error;
  SchemaParser() {
    parser.opts.strict_json = false;
    parser.opts.output_default_scalars_in_json = false;
    ok = parser.Parse(kSchemaText);
    if (!ok) error = parser.error_;
  }
};

SchemaParser& schema() {
  static SchemaParser p;
  return p;
}

}  // namespace

std::vector<std::string> op_type_names() {
  std::vector<std::string> v;
  for (int i = 1; i <= static_cast<int>(fb::Op::MAX); ++i) v.push_back(fb::EnumNameOp(static_cast<fb::Op>(i)));
  return v;
}

Result<fb::OpUnion> op_from_json(const std::string& op_type, const std::string& attrs_json) {
  fb::Op type = fb::Op::NONE;
  for (int i = 1; i <= static_cast<int>(fb::Op::MAX); ++i)
    if (op_type == fb::EnumNameOp(static_cast<fb::Op>(i))) type = static_cast<fb::Op>(i);
  if (type == fb::Op::NONE) {
    std::string names;
    for (const auto& n : op_type_names()) names += (names.empty() ? "" : ", ") + n;
    return invalid_argument("unknown node type '" + op_type + "' (known: " + names + ")");
  }
  SchemaParser& s = schema();
  std::lock_guard<std::mutex> lock(s.mu);
  if (!s.ok) return internal_error("embedded schema does not parse: " + s.error);
  if (!s.parser.SetRootType(("atrous.fb." + op_type).c_str()))
    return internal_error("schema has no table " + op_type);
  if (!s.parser.Parse(attrs_json.c_str())) {
    std::string err = s.parser.error_;
    return invalid_argument("attributes of " + op_type + ": " + err);
  }
  const uint8_t* buf = s.parser.builder_.GetBufferPointer();
  fb::OpUnion u;
  u.type = type;
  u.value = fb::OpUnion::UnPack(flatbuffers::GetRoot<void>(buf), type, nullptr);
  return u;
}

std::string op_to_json(const fb::OpUnion& op) {
  if (op.type == fb::Op::NONE || !op.value) return "{}";
  flatbuffers::FlatBufferBuilder fbb;
  fbb.Finish(op.Pack(fbb));
  SchemaParser& s = schema();
  std::lock_guard<std::mutex> lock(s.mu);
  if (!s.ok) return "{}";
  if (!s.parser.SetRootType((std::string("atrous.fb.") + fb::EnumNameOp(op.type)).c_str())) return "{}";
  std::string out;
  s.parser.opts.indent_step = -1;
  if (!flatbuffers::GenerateText(s.parser, fbb.GetBufferPointer(), &out)) return "{}";
  return out;
}

}  // namespace atrous
