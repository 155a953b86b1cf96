#include "convert/pickle.h"

#include <cstring>
#include <new>
#include <unordered_map>

namespace atrous::convert {

namespace {

// The allow-list, as (module, name) pairs exactly as pickle writes them.
// These are the only globals torch.save writes for tensors, parameters and
// state dicts; everything else is refused by name.
const char* const kAllowedGlobals[][2] = {
    {"collections", "OrderedDict"},
    {"torch._utils", "_rebuild_tensor_v2"},
    {"torch._utils", "_rebuild_parameter"},
    {"torch._utils", "_rebuild_parameter_with_state"},
    {"torch", "FloatStorage"},
    {"torch", "DoubleStorage"},
    {"torch", "HalfStorage"},
    {"torch", "BFloat16Storage"},
    {"torch", "LongStorage"},
    {"torch", "IntStorage"},
    {"torch", "ShortStorage"},
    {"torch", "CharStorage"},
    {"torch", "ByteStorage"},
    {"torch", "BoolStorage"},
};

bool is_allowed_global(const std::string& module, const std::string& name) {
  for (const auto& g : kAllowedGlobals)
    if (module == g[0] && name == g[1]) return true;
  return false;
}

bool is_storage_class(const std::string& name) {
  return name.size() > 13 && name.compare(0, 6, "torch.") == 0 && name.compare(name.size() - 7, 7, "Storage") == 0;
}

// Names of opcodes we do not implement, so that a refusal says what was found.
const char* opcode_name(uint8_t op) {
  switch (op) {
    case 'S':
      return "STRING";
    case 'T':
      return "BINSTRING";
    case 'U':
      return "SHORT_BINSTRING";
    case 'V':
      return "UNICODE";
    case 'I':
      return "INT";
    case 'L':
      return "LONG";
    case 'F':
      return "FLOAT";
    case 'P':
      return "PERSID";
    case 'p':
      return "PUT";
    case 'g':
      return "GET";
    case 'd':
      return "DICT";
    case 'l':
      return "LIST";
    case 'i':
      return "INST";
    case 'o':
      return "OBJ";
    case 0x81:
      return "NEWOBJ";
    case 0x92:
      return "NEWOBJ_EX";
    case 0x82:
      return "EXT1";
    case 0x83:
      return "EXT2";
    case 0x84:
      return "EXT4";
    case 0x8f:
      return "EMPTY_SET";
    case 0x90:
      return "ADDITEMS";
    case 0x91:
      return "FROZENSET";
    case 0x96:
      return "BYTEARRAY8";
    case 0x97:
      return "NEXT_BUFFER";
    case 0x98:
      return "READONLY_BUFFER";
    default:
      return nullptr;
  }
}

std::string hex_byte(uint8_t b) {
  const char* digits = "0123456789abcdef";
  return std::string("0x") + digits[b >> 4] + digits[b & 15];
}

// Structural UTF-8 check: Python refuses to unpickle invalid UTF-8 in
// BINUNICODE, and names that reach JSON writers later must be valid.
bool valid_utf8(const uint8_t* s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    size_t extra;
    if (c < 0x80)
      extra = 0;
    else if ((c & 0xe0) == 0xc0 && c >= 0xc2)
      extra = 1;
    else if ((c & 0xf0) == 0xe0)
      extra = 2;
    else if ((c & 0xf8) == 0xf0 && c <= 0xf4)
      extra = 3;
    else
      return false;
    if (n - i <= extra) return false;
    for (size_t k = 1; k <= extra; ++k)
      if ((s[i + k] & 0xc0) != 0x80) return false;
    i += extra + 1;
  }
  return true;
}

}  // namespace

const PickleValue* PickleValue::get(const std::string& key) const {
  if (kind != Kind::kDict) return nullptr;
  for (const auto& [k, v] : entries)
    if (k->kind == Kind::kString && k->text == key) return v;
  return nullptr;
}

const char* pickle_kind_name(PickleValue::Kind kind) {
  using K = PickleValue::Kind;
  switch (kind) {
    case K::kNone:
      return "None";
    case K::kBool:
      return "bool";
    case K::kInt:
      return "int";
    case K::kFloat:
      return "float";
    case K::kString:
      return "str";
    case K::kBytes:
      return "bytes";
    case K::kTuple:
      return "tuple";
    case K::kList:
      return "list";
    case K::kDict:
      return "dict";
    case K::kGlobal:
      return "global";
    case K::kStorage:
      return "storage";
    case K::kTensor:
      return "tensor";
  }
  return "?";
}

// A stack machine over the opcodes, in the manner of CPython's _Unpickler but
// with every effect replaced by building a PickleValue. Items below the most
// recent MARK are out of reach until that mark is popped, as in Python 3.
class PickleParser {
 public:
  PickleParser(const uint8_t* data, size_t size, const PickleLimits& limits)
      : data_(data), size_(size), limits_(limits) {}

  Result<Pickle> run() {
    while (true) {
      if (pos_ >= size_) return malformed("pickle ends without a STOP opcode (truncated?)");
      op_pos_ = pos_;
      uint8_t op = data_[pos_++];
      if (op == '.') {
        if (!marks_.empty()) return malformed("STOP with an unclosed MARK");
        if (stack_.size() != 1)
          return malformed("STOP with " + std::to_string(stack_.size()) + " values on the stack (expected 1)");
        out_.root_ = stack_.back();
        return std::move(out_);
      }
      ATROUS_RETURN_IF_ERROR(step(op));
    }
  }

 private:
  using V = PickleValue;
  using K = PickleValue::Kind;

  Status malformed(const std::string& what) const {
    return invalid_model(what + " (at byte " + std::to_string(op_pos_) + ")");
  }

  Result<V*> make(K kind) {
    if (out_.values_.size() >= limits_.max_values)
      return malformed("more than " + std::to_string(limits_.max_values) + " values");
    out_.values_.push_back(std::make_unique<V>());
    V* v = out_.values_.back().get();
    v->kind = kind;
    return v;
  }

  Status push(V* v) {
    if (stack_.size() >= limits_.max_stack)
      return malformed("stack holds more than " + std::to_string(limits_.max_stack) + " values");
    stack_.push_back(v);
    return Status::Ok();
  }

  size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }

  Result<V*> pop(const char* opname) {
    if (stack_.size() <= floor()) return malformed(std::string(opname) + ": stack underflow");
    V* v = stack_.back();
    stack_.pop_back();
    return v;
  }

  Result<V*> top(const char* opname) {
    if (stack_.size() <= floor()) return malformed(std::string(opname) + ": stack underflow");
    return stack_.back();
  }

  // Values pushed since the most recent MARK, and the mark popped.
  Result<std::vector<V*>> pop_mark(const char* opname) {
    if (marks_.empty()) return malformed(std::string(opname) + " without a preceding MARK");
    size_t base = marks_.back();
    marks_.pop_back();
    std::vector<V*> items(stack_.begin() + static_cast<std::ptrdiff_t>(base), stack_.end());
    stack_.resize(base);
    return items;
  }

  Result<const uint8_t*> take(size_t n, const char* opname) {
    if (size_ - pos_ < n) return malformed(std::string(opname) + ": pickle is truncated");
    const uint8_t* p = data_ + pos_;
    pos_ += n;
    return p;
  }

  Result<uint64_t> take_le(size_t n, const char* opname) {
    ATROUS_ASSIGN_OR_RETURN(const uint8_t* p, take(n, opname));
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
    return v;
  }

  Result<std::string> take_line(const char* opname) {
    const size_t kMaxLine = 256;
    for (size_t i = pos_; i < size_ && i - pos_ <= kMaxLine; ++i) {
      if (data_[i] == '\n') {
        std::string s(reinterpret_cast<const char*>(data_ + pos_), i - pos_);
        pos_ = i + 1;
        return s;
      }
    }
    return malformed(std::string(opname) + ": missing newline (truncated, or a name longer than 256 bytes)");
  }

  Status push_text(K kind, uint64_t n, const char* opname) {
    if (n > limits_.max_string_bytes)
      return malformed(std::string(opname) + ": length " + std::to_string(n) + " exceeds the limit of " +
                       std::to_string(limits_.max_string_bytes) + " bytes");
    ATROUS_ASSIGN_OR_RETURN(const uint8_t* p, take(static_cast<size_t>(n), opname));
    if (kind == K::kString && !valid_utf8(p, static_cast<size_t>(n)))
      return malformed(std::string(opname) + ": string is not valid UTF-8");
    ATROUS_ASSIGN_OR_RETURN(V * v, make(kind));
    v->text.assign(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
    return push(v);
  }

  Status push_int(int64_t x) {
    ATROUS_ASSIGN_OR_RETURN(V * v, make(K::kInt));
    v->integer = x;
    return push(v);
  }

  Status push_bool(bool b) {
    ATROUS_ASSIGN_OR_RETURN(V * v, make(K::kBool));
    v->boolean = b;
    return push(v);
  }

  // LONG1/LONG4: little-endian two's complement of n bytes. Anything wider
  // than 64 bits is refused rather than approximated.
  Status push_long(uint64_t n, const char* opname) {
    if (n > 8)
      return unsupported(std::string(opname) + ": integer wider than 64 bits (at byte " + std::to_string(op_pos_) +
                         ")");
    ATROUS_ASSIGN_OR_RETURN(const uint8_t* p, take(static_cast<size_t>(n), opname));
    uint64_t u = 0;
    for (size_t i = 0; i < n; ++i) u |= static_cast<uint64_t>(p[i]) << (8 * i);
    if (n > 0 && n < 8 && (p[n - 1] & 0x80)) u |= ~uint64_t{0} << (8 * n);  // sign-extend
    int64_t x;
    std::memcpy(&x, &u, 8);
    return push_int(x);
  }

  Status memo_put(uint64_t index, const char* opname) {
    ATROUS_ASSIGN_OR_RETURN(V * v, top(opname));
    auto it = memo_.find(index);
    if (it == memo_.end() && memo_.size() >= limits_.max_memo)
      return malformed(std::string(opname) + ": memo holds more than " + std::to_string(limits_.max_memo) + " entries");
    memo_[index] = v;
    return Status::Ok();
  }

  Status memo_get(uint64_t index, const char* opname) {
    auto it = memo_.find(index);
    if (it == memo_.end())
      return malformed(std::string(opname) + ": memo index " + std::to_string(index) + " was never stored");
    return push(it->second);
  }

  Status push_global(const std::string& module, const std::string& name) {
    std::string full = module + "." + name;
    if (!is_allowed_global(module, name)) {
      if (module == "torch" && is_storage_class(full))
        return unsupported("tensor storage type '" + full +
                           "' is not supported (f64, f32, f16, bf16, i64, i32, "
                           "i16, i8, u8 and bool tensors are)");
      std::string message = "global '" + full + "' is not allowed (only tensors, dicts, lists and numbers can be read)";
      // A whole nn.Module pickles its class; say how to get a readable file.
      for (const char* prefix : {"__main__", "torch.nn.", "torchvision.", "timm."})
        if (module == prefix || full.rfind(prefix, 0) == 0) {
          message += "; this looks like a whole model saved with torch.save(model): save model.state_dict() instead";
          break;
        }
      return unsupported(message);
    }
    ATROUS_ASSIGN_OR_RETURN(V * v, make(K::kGlobal));
    v->text = std::move(full);
    return push(v);
  }

  Status set_item(V* dict, V* key, V* value, const char* opname) {
    if (dict->kind != K::kDict)
      return malformed(std::string(opname) + ": target is a " + pickle_kind_name(dict->kind) + ", not a dict");
    switch (key->kind) {
      case K::kList:
      case K::kDict:
      case K::kTensor:
      case K::kStorage:
        return malformed(std::string(opname) + ": dict key is an unhashable " + pickle_kind_name(key->kind));
      default:
        break;
    }
    if (key->kind == K::kString) {
      auto& index = dict_index_[dict];
      auto it = index.find(key->text);
      if (it != index.end()) {
        dict->entries[it->second].second = value;
        return Status::Ok();
      }
      index.emplace(key->text, dict->entries.size());
    }
    dict->entries.emplace_back(key, value);
    return Status::Ok();
  }

  static bool is_int_tuple(const V* v) {
    if (v->kind != K::kTuple) return false;
    for (const V* x : v->items)
      if (x->kind != K::kInt) return false;
    return true;
  }

  // REDUCE: the only callables that can reach here are the allow-listed ones.
  Result<V*> call(V* callable, V* args) {
    if (callable->kind != K::kGlobal)
      return malformed(std::string("REDUCE: callable is a ") + pickle_kind_name(callable->kind) + ", not a global");
    if (args->kind != K::kTuple)
      return malformed(std::string("REDUCE: arguments are a ") + pickle_kind_name(args->kind) + ", not a tuple");
    const std::string& fn = callable->text;
    const std::vector<const V*>& a = args->items;
    if (fn == "collections.OrderedDict") {
      if (!a.empty()) return unsupported("OrderedDict called with arguments (at byte " + std::to_string(op_pos_) + ")");
      return make(K::kDict);
    }
    if (fn == "torch._utils._rebuild_tensor_v2") {
      // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
      if (a.size() < 6 || a.size() > 7)
        return malformed(fn + ": expected 6 or 7 arguments, got " + std::to_string(a.size()));
      if (a[0]->kind != K::kStorage)
        return malformed(fn + ": argument 1 is a " + pickle_kind_name(a[0]->kind) + ", not a storage");
      if (a[1]->kind != K::kInt) return malformed(fn + ": storage_offset is not an int");
      if (!is_int_tuple(a[2])) return malformed(fn + ": size is not a tuple of ints");
      if (!is_int_tuple(a[3])) return malformed(fn + ": stride is not a tuple of ints");
      if (a[2]->items.size() != a[3]->items.size())
        return malformed(fn + ": size has " + std::to_string(a[2]->items.size()) + " dims but stride has " +
                         std::to_string(a[3]->items.size()));
      ATROUS_ASSIGN_OR_RETURN(V * t, make(K::kTensor));
      t->tensor = std::make_unique<PickleTensor>();
      t->tensor->storage = a[0];
      t->tensor->storage_offset = a[1]->integer;
      for (const V* d : a[2]->items) t->tensor->size.push_back(d->integer);
      for (const V* s : a[3]->items) t->tensor->stride.push_back(s->integer);
      return t;
    }
    if (fn == "torch._utils._rebuild_parameter" || fn == "torch._utils._rebuild_parameter_with_state") {
      // (data, requires_grad, backward_hooks[, state]): a Parameter is its data tensor.
      if (a.size() < 3 || a.size() > 4)
        return malformed(fn + ": expected 3 or 4 arguments, got " + std::to_string(a.size()));
      if (a[0]->kind != K::kTensor)
        return malformed(fn + ": data is a " + pickle_kind_name(a[0]->kind) + ", not a tensor");
      return const_cast<V*>(a[0]);
    }
    return unsupported("'" + fn + "' cannot be called (at byte " + std::to_string(op_pos_) + ")");
  }

  // BINPERSID: torch.save's persistent id for a storage is
  // ('storage', storage_class, key, location, numel).
  Result<V*> persistent_load(V* pid) {
    const auto& a = pid->items;
    if (pid->kind != K::kTuple || a.size() != 5 || a[0]->kind != K::kString || a[0]->text != "storage")
      return unsupported("persistent id is not a torch storage reference (at byte " + std::to_string(op_pos_) + ")");
    if (a[1]->kind != K::kGlobal || !is_storage_class(a[1]->text))
      return malformed("persistent id: storage type is not a torch storage class");
    if (a[2]->kind != K::kString) return malformed("persistent id: storage key is not a string");
    if (a[3]->kind != K::kString) return malformed("persistent id: storage location is not a string");
    if (a[4]->kind != K::kInt) return malformed("persistent id: storage size is not an int");
    ATROUS_ASSIGN_OR_RETURN(V * s, make(K::kStorage));
    s->storage = std::make_unique<PickleStorage>();
    s->storage->storage_class = a[1]->text;
    s->storage->key = a[2]->text;
    s->storage->location = a[3]->text;
    s->storage->numel = a[4]->integer;
    return s;
  }

  Status step(uint8_t op) {
    switch (op) {
      case 0x80: {  // PROTO
        ATROUS_ASSIGN_OR_RETURN(uint64_t proto, take_le(1, "PROTO"));
        if (proto > 5) return unsupported("pickle protocol " + std::to_string(proto) + " (at most 5 is known)");
        return Status::Ok();
      }
      case 0x95: {  // FRAME: framing only groups reads; the content follows inline.
        ATROUS_ASSIGN_OR_RETURN(uint64_t n, take_le(8, "FRAME"));
        if (n > size_ - pos_) return malformed("FRAME: frame of " + std::to_string(n) + " bytes runs past the end");
        return Status::Ok();
      }
      case '(':  // MARK
        if (marks_.size() >= limits_.max_marks)
          return malformed("more than " + std::to_string(limits_.max_marks) + " nested MARKs");
        marks_.push_back(stack_.size());
        return Status::Ok();
      case '0':
        return pop("POP").status();
      case '1':
        return pop_mark("POP_MARK").status();
      case '2': {  // DUP
        ATROUS_ASSIGN_OR_RETURN(V * v, top("DUP"));
        return push(v);
      }
      case 'N': {
        ATROUS_ASSIGN_OR_RETURN(V * v, make(K::kNone));
        return push(v);
      }
      case 0x88:
        return push_bool(true);
      case 0x89:
        return push_bool(false);
      case 'J': {  // BININT: signed 32-bit
        ATROUS_ASSIGN_OR_RETURN(uint64_t u, take_le(4, "BININT"));
        return push_int(static_cast<int32_t>(static_cast<uint32_t>(u)));
      }
      case 'K': {
        ATROUS_ASSIGN_OR_RETURN(uint64_t u, take_le(1, "BININT1"));
        return push_int(static_cast<int64_t>(u));
      }
      case 'M': {
        ATROUS_ASSIGN_OR_RETURN(uint64_t u, take_le(2, "BININT2"));
        return push_int(static_cast<int64_t>(u));
      }
      case 0x8a: {
        ATROUS_ASSIGN_OR_RETURN(uint64_t n, take_le(1, "LONG1"));
        return push_long(n, "LONG1");
      }
      case 0x8b: {
        ATROUS_ASSIGN_OR_RETURN(uint64_t n, take_le(4, "LONG4"));
        return push_long(n, "LONG4");
      }
      case 'G': {  // BINFLOAT: big-endian IEEE double
        ATROUS_ASSIGN_OR_RETURN(const uint8_t* p, take(8, "BINFLOAT"));
        uint64_t u = 0;
        for (int i = 0; i < 8; ++i) u = (u << 8) | p[i];
        ATROUS_ASSIGN_OR_RETURN(V * v, make(K::kFloat));
        std::memcpy(&v->real, &u, 8);
        return push(v);
      }
      case 'X': {
        ATROUS_ASSIGN_OR_RETURN(uint64_t n, take_le(4, "BINUNICODE"));
        return push_text(K::kString, n, "BINUNICODE");
      }
      case 0x8c: {
        ATROUS_ASSIGN_OR_RETURN(uint64_t n, take_le(1, "SHORT_BINUNICODE"));
        return push_text(K::kString, n, "SHORT_BINUNICODE");
      }
      case 0x8d: {
        ATROUS_ASSIGN_OR_RETURN(uint64_t n, take_le(8, "BINUNICODE8"));
        return push_text(K::kString, n, "BINUNICODE8");
      }
      case 'B': {
        ATROUS_ASSIGN_OR_RETURN(uint64_t n, take_le(4, "BINBYTES"));
        return push_text(K::kBytes, n, "BINBYTES");
      }
      case 'C': {
        ATROUS_ASSIGN_OR_RETURN(uint64_t n, take_le(1, "SHORT_BINBYTES"));
        return push_text(K::kBytes, n, "SHORT_BINBYTES");
      }
      case 0x8e: {
        ATROUS_ASSIGN_OR_RETURN(uint64_t n, take_le(8, "BINBYTES8"));
        return push_text(K::kBytes, n, "BINBYTES8");
      }
      case '}': {
        ATROUS_ASSIGN_OR_RETURN(V * v, make(K::kDict));
        return push(v);
      }
      case ']': {
        ATROUS_ASSIGN_OR_RETURN(V * v, make(K::kList));
        return push(v);
      }
      case ')': {
        ATROUS_ASSIGN_OR_RETURN(V * v, make(K::kTuple));
        return push(v);
      }
      case 't': {
        ATROUS_ASSIGN_OR_RETURN(std::vector<V*> items, pop_mark("TUPLE"));
        ATROUS_ASSIGN_OR_RETURN(V * v, make(K::kTuple));
        v->items.assign(items.begin(), items.end());
        return push(v);
      }
      case 0x85:
      case 0x86:
      case 0x87: {  // TUPLE1..3
        size_t n = static_cast<size_t>(op - 0x84);
        const char* name = n == 1 ? "TUPLE1" : n == 2 ? "TUPLE2" : "TUPLE3";
        if (stack_.size() < floor() + n) return malformed(std::string(name) + ": stack underflow");
        ATROUS_ASSIGN_OR_RETURN(V * v, make(K::kTuple));
        v->items.assign(stack_.end() - static_cast<std::ptrdiff_t>(n), stack_.end());
        stack_.resize(stack_.size() - n);
        return push(v);
      }
      case 'a': {  // APPEND
        ATROUS_ASSIGN_OR_RETURN(V * x, pop("APPEND"));
        ATROUS_ASSIGN_OR_RETURN(V * list, top("APPEND"));
        if (list->kind != K::kList)
          return malformed(std::string("APPEND: target is a ") + pickle_kind_name(list->kind));
        list->items.push_back(x);
        return Status::Ok();
      }
      case 'e': {  // APPENDS
        ATROUS_ASSIGN_OR_RETURN(std::vector<V*> items, pop_mark("APPENDS"));
        ATROUS_ASSIGN_OR_RETURN(V * list, top("APPENDS"));
        if (list->kind != K::kList)
          return malformed(std::string("APPENDS: target is a ") + pickle_kind_name(list->kind));
        list->items.insert(list->items.end(), items.begin(), items.end());
        return Status::Ok();
      }
      case 's': {  // SETITEM
        ATROUS_ASSIGN_OR_RETURN(V * value, pop("SETITEM"));
        ATROUS_ASSIGN_OR_RETURN(V * key, pop("SETITEM"));
        ATROUS_ASSIGN_OR_RETURN(V * dict, top("SETITEM"));
        return set_item(dict, key, value, "SETITEM");
      }
      case 'u': {  // SETITEMS
        ATROUS_ASSIGN_OR_RETURN(std::vector<V*> items, pop_mark("SETITEMS"));
        if (items.size() % 2) return malformed("SETITEMS: odd number of items");
        ATROUS_ASSIGN_OR_RETURN(V * dict, top("SETITEMS"));
        for (size_t i = 0; i < items.size(); i += 2)
          ATROUS_RETURN_IF_ERROR(set_item(dict, items[i], items[i + 1], "SETITEMS"));
        return Status::Ok();
      }
      case 'q': {
        ATROUS_ASSIGN_OR_RETURN(uint64_t i, take_le(1, "BINPUT"));
        return memo_put(i, "BINPUT");
      }
      case 'r': {
        ATROUS_ASSIGN_OR_RETURN(uint64_t i, take_le(4, "LONG_BINPUT"));
        return memo_put(i, "LONG_BINPUT");
      }
      case 0x94:
        return memo_put(memo_.size(), "MEMOIZE");
      case 'h': {
        ATROUS_ASSIGN_OR_RETURN(uint64_t i, take_le(1, "BINGET"));
        return memo_get(i, "BINGET");
      }
      case 'j': {
        ATROUS_ASSIGN_OR_RETURN(uint64_t i, take_le(4, "LONG_BINGET"));
        return memo_get(i, "LONG_BINGET");
      }
      case 'c': {  // GLOBAL "module\nname\n"
        ATROUS_ASSIGN_OR_RETURN(std::string module, take_line("GLOBAL"));
        ATROUS_ASSIGN_OR_RETURN(std::string name, take_line("GLOBAL"));
        return push_global(module, name);
      }
      case 0x93: {  // STACK_GLOBAL
        ATROUS_ASSIGN_OR_RETURN(V * name, pop("STACK_GLOBAL"));
        ATROUS_ASSIGN_OR_RETURN(V * module, pop("STACK_GLOBAL"));
        if (module->kind != K::kString || name->kind != K::kString)
          return malformed("STACK_GLOBAL: module and name must be strings");
        return push_global(module->text, name->text);
      }
      case 'Q': {  // BINPERSID
        ATROUS_ASSIGN_OR_RETURN(V * pid, pop("BINPERSID"));
        ATROUS_ASSIGN_OR_RETURN(V * storage, persistent_load(pid));
        return push(storage);
      }
      case 'R': {  // REDUCE
        ATROUS_ASSIGN_OR_RETURN(V * args, pop("REDUCE"));
        ATROUS_ASSIGN_OR_RETURN(V * callable, pop("REDUCE"));
        ATROUS_ASSIGN_OR_RETURN(V * result, call(callable, args));
        return push(result);
      }
      case 'b': {  // BUILD: only state dicts' `_metadata` attribute needs it.
        ATROUS_ASSIGN_OR_RETURN(V * state, pop("BUILD"));
        ATROUS_ASSIGN_OR_RETURN(V * target, top("BUILD"));
        if (state->kind == K::kNone) return Status::Ok();
        if (target->kind == K::kDict && state->kind == K::kDict) {
          target->attrs = state;
          return Status::Ok();
        }
        return unsupported(std::string("BUILD of a ") + pickle_kind_name(target->kind) + " from a " +
                           pickle_kind_name(state->kind) + " (at byte " + std::to_string(op_pos_) + ")");
      }
      default: {
        const char* name = opcode_name(op);
        std::string what = name ? std::string("opcode ") + name + " (" + hex_byte(op) + ")"
                                : std::string("unknown opcode ") + hex_byte(op);
        return unsupported(what + " at byte " + std::to_string(op_pos_) +
                           " (torch.save does not write it; only tensors, dicts, lists and numbers can be read)");
      }
    }
  }

  const uint8_t* data_;
  size_t size_;
  const PickleLimits& limits_;
  size_t pos_ = 0;
  size_t op_pos_ = 0;
  std::vector<V*> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, V*> memo_;
  std::unordered_map<const V*, std::unordered_map<std::string, size_t>> dict_index_;
  Pickle out_;
};

Result<Pickle> parse_pickle(const uint8_t* data, size_t size, const PickleLimits& limits) {
  if (data == nullptr && size != 0) return invalid_argument("parse_pickle: null data");
  try {
    PickleParser parser(data, size, limits);
    return parser.run();
  } catch (const std::bad_alloc&) {
    return out_of_memory("out of memory while parsing a pickle of " + std::to_string(size) + " bytes");
  } catch (const std::exception& e) {
    return internal_error(std::string("unexpected failure while parsing a pickle: ") + e.what());
  }
}

}  // namespace atrous::convert
