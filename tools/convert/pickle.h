// A safe reader for the subset of Python pickle that torch.save writes.
//
// torch.save stores the object tree of a checkpoint (dicts, lists, numbers,
// tensors) as a pickle and the tensor bytes as separate files. Python's own
// unpickler runs arbitrary code named in the file; this one never imports or
// executes anything. It interprets the opcodes itself, accepts only an
// allow-list of globals (OrderedDict, the torch tensor/parameter rebuild
// functions and the typed storage classes) and builds a plain value tree.
// Any other global is refused by name before anything could be called.
//
// Input is untrusted: every read is bounds-checked, and stack size, nesting,
// memo size, string length and value count are capped (PickleLimits), so a
// malformed or hostile pickle yields a Status, never a crash or a huge
// allocation. The parser is iterative; nothing recurses on input depth.
//
// Ownership: a Pickle owns every value it holds; PickleValue pointers stay valid
// as long as the Pickle lives (moving the Pickle keeps them valid). Values may
// be shared (the pickle memo lets one object appear twice, e.g. tied weights),
// and a hostile pickle can even make a container contain itself, so code that
// walks the tree must bound its own depth.
//
//   atrous::Result<Pickle> p = parse_pickle(bytes.data(), bytes.size());
//   if (!p.ok()) return p.status().with_context("pickle in " + path);
//   const PickleValue& root = p->root();
//   if (root.kind == PickleValue::Kind::kDict) ...
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "atrous/status.h"

namespace atrous::convert {

struct PickleValue;

// What torch.save's persistent id names: one storage file of the archive.
struct PickleStorage {
  std::string storage_class;  // allow-listed global, e.g. "torch.FloatStorage"
  std::string key;            // archive entry under data/, e.g. "0"
  std::string location;       // device it was saved from ("cpu", "cuda:0"); informative only
  int64_t numel = 0;          // element count as declared by the pickle (not trusted)
};

// A tensor as torch._utils._rebuild_tensor_v2 describes it: a strided view of
// a storage. Nothing here is validated against the storage yet.
struct PickleTensor {
  const PickleValue* storage = nullptr;  // kind == kStorage
  int64_t storage_offset = 0;            // in elements
  std::vector<int64_t> size;             // dims, outermost first
  std::vector<int64_t> stride;           // in elements, one per dim
};

struct PickleValue {
  enum class Kind : uint8_t {
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kBytes,
    kTuple,
    kList,
    kDict,
    kGlobal,   // an allow-listed callable or class, not yet called; text = "module.name"
    kStorage,  // a persistent id resolved to a storage reference
    kTensor,
  };

  Kind kind = Kind::kNone;
  bool boolean = false;                   // kBool
  int64_t integer = 0;                    // kInt
  double real = 0;                        // kFloat
  std::string text;                       // kString (UTF-8), kBytes, kGlobal
  std::vector<const PickleValue*> items;  // kTuple, kList
  // kDict, in insertion order. String keys are unique (a repeated key replaces
  // the value in place, as in Python); other keys are kept as they come.
  std::vector<std::pair<const PickleValue*, const PickleValue*>> entries;
  const PickleValue* attrs = nullptr;      // kDict: state set by BUILD (e.g. `_metadata`), else null
  std::unique_ptr<PickleStorage> storage;  // kStorage
  std::unique_ptr<PickleTensor> tensor;    // kTensor

  bool is(Kind k) const { return kind == k; }
  // Value for a string key of a dict, or null.
  const PickleValue* get(const std::string& key) const;
};

// "dict", "list", "tensor", ... for messages.
const char* pickle_kind_name(PickleValue::Kind kind);

// Caps that keep a hostile pickle from exhausting memory. The defaults are far
// above what a torch.save of a very large model needs (Python batches SETITEMS
// in groups of 1000, and a state dict of 100k tensors has a few million values).
struct PickleLimits {
  size_t max_stack = size_t{1} << 20;   // values on the stack at once
  size_t max_marks = 1000;              // nested MARKs (container nesting while building)
  size_t max_memo = size_t{1} << 24;    // memo entries
  size_t max_values = size_t{1} << 24;  // values created in total
  size_t max_string_bytes = size_t{64} << 20;
};

class Pickle {
 public:
  const PickleValue& root() const { return *root_; }

 private:
  friend class PickleParser;
  std::vector<std::unique_ptr<PickleValue>> values_;  // owns every value
  const PickleValue* root_ = nullptr;
};

// Parses one pickle (up to its STOP opcode; trailing bytes are ignored) from
// memory. Errors name the opcode and byte offset; the caller adds the file name.
// Disallowed globals and opcodes give kUnsupported, malformed input kInvalidModel.
Result<Pickle> parse_pickle(const uint8_t* data, size_t size, const PickleLimits& limits = {});

}  // namespace atrous::convert
