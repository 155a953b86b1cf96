// The safe unpickler on hand-written byte strings: what torch.save writes is
// understood, and everything else (code-running globals, malformed streams,
// oversized input) is refused with a message saying what and where.
#include <catch2/catch.hpp>
#include <cstdint>
#include <random>
#include <string>

#include "convert/pickle.h"

using namespace std::string_literals;

using atrous::StatusCode;
using atrous::convert::parse_pickle;
using atrous::convert::Pickle;
using atrous::convert::PickleLimits;
using atrous::convert::PickleValue;
using K = atrous::convert::PickleValue::Kind;

namespace {

atrous::Result<Pickle> parse(const std::string& bytes, const PickleLimits& limits = {}) {
  return parse_pickle(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), limits);
}

std::string error_of(const std::string& bytes, const PickleLimits& limits = {}) {
  atrous::Result<Pickle> p = parse(bytes, limits);
  REQUIRE_FALSE(p.ok());
  return p.status().to_string();
}

// {'p': nn.Parameter(torch.ones(2))} as torch 1.13 pickles it (protocol 2).
const std::string kParameterPickle(
    "\x80\x02}q\x00X\x01\x00\x00\x00pq\x01"
    "ctorch._utils\n_rebuild_parameter\nq\x02"
    "ctorch._utils\n"
    "_rebuild_tensor_v2\nq\x03((X\x07\x00\x00\x00storageq\x04"
    "ctorch\nFloatStorage\nq\x05X\x01\x00\x00\x00"
    "0q\x06X\x03\x00\x00\x00"
    "cpuq\x07K\x02tq\x08QK\x00K\x02\x85q\tK\x01\x85q\n\x89"
    "ccollections\n"
    "OrderedDict\nq\x0b)Rq\x0ctq\rRq\x0e\x88h\x0b)Rq\x0f\x87q\x10Rq\x11s."s);

}  // namespace

TEST_CASE("pickle: a torch.save parameter becomes a tensor reference", "[pickle]") {
  REQUIRE(kParameterPickle.back() == '.');
  atrous::Result<Pickle> p = parse(kParameterPickle);
  REQUIRE(p.ok());
  const PickleValue& root = p->root();
  REQUIRE(root.is(K::kDict));
  const PickleValue* t = root.get("p");
  REQUIRE(t != nullptr);
  REQUIRE(t->is(K::kTensor));
  CHECK(t->tensor->size == std::vector<int64_t>{2});
  CHECK(t->tensor->stride == std::vector<int64_t>{1});
  CHECK(t->tensor->storage_offset == 0);
  const auto& st = *t->tensor->storage->storage;
  CHECK(st.storage_class == "torch.FloatStorage");
  CHECK(st.key == "0");
  CHECK(st.location == "cpu");
  CHECK(st.numel == 2);
}

TEST_CASE("pickle: scalars, strings and containers", "[pickle]") {
  // [None, True, False, -2, 255, 65535, LONG1 -1, LONG1 2^40, LONG1 0, 1.5, 'é', b'\x00\x01', (1,), ()]
  std::string s(
      "\x80\x02](N\x88\x89J\xfe\xff\xff\xffK\xffM\xff\xff\x8a\x01\xff\x8a\x06\x00\x00\x00\x00\x00\x01"
      "\x8a\x00G\x3f\xf8\x00\x00\x00\x00\x00\x00X\x02\x00\x00\x00\xc3\xa9"
      "C\x02\x00\x01K\x01\x85)e."s);
  atrous::Result<Pickle> p = parse(s);
  REQUIRE(p.ok());
  const auto& v = p->root().items;
  REQUIRE(v.size() == 14);
  CHECK(v[0]->is(K::kNone));
  CHECK((v[1]->is(K::kBool) && v[1]->boolean));
  CHECK((v[2]->is(K::kBool) && !v[2]->boolean));
  CHECK(v[3]->integer == -2);
  CHECK(v[4]->integer == 255);
  CHECK(v[5]->integer == 65535);
  CHECK(v[6]->integer == -1);
  CHECK(v[7]->integer == (int64_t{1} << 40));
  CHECK(v[8]->integer == 0);
  CHECK(v[9]->real == 1.5);
  CHECK(v[10]->text == "\xc3\xa9");
  CHECK(v[11]->is(K::kBytes));
  CHECK(v[11]->text == std::string("\x00\x01", 2));
  CHECK((v[12]->is(K::kTuple) && v[12]->items.size() == 1));
  CHECK((v[13]->is(K::kTuple) && v[13]->items.empty()));
}

TEST_CASE("pickle: protocol 4 framing, memoize and stack global", "[pickle]") {
  // PROTO 4, FRAME, {'a': OrderedDict()} via STACK_GLOBAL and MEMOIZE, BINGET of the memo.
  std::string s(
      "\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01"
      "a\x94\x8c\x0b"
      "collections\x94\x8c\x0b"
      "OrderedDict\x94\x93\x94)R\x94s\x8c\x01"
      "bh\x04)Rs."s);
  // Fix the frame length to what follows it.
  uint64_t frame = s.size() - 11;
  for (int i = 0; i < 8; ++i) s[3 + i] = static_cast<char>((frame >> (8 * i)) & 0xff);
  atrous::Result<Pickle> p = parse(s);
  REQUIRE(p.ok());
  REQUIRE(p->root().entries.size() == 2);
  CHECK(p->root().get("a")->is(K::kDict));
  CHECK(p->root().get("b")->is(K::kDict));
}

TEST_CASE("pickle: globals outside the allow-list are refused by name", "[pickle][security]") {
  SECTION("GLOBAL os.system") {
    std::string e = error_of(
        "\x80\x02"
        "cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85R."s);
    CHECK(e == "unsupported: global 'os.system' is not allowed (only tensors, dicts, lists and numbers can be read)");
  }
  SECTION("GLOBAL __builtin__.exec") {
    CHECK_THAT(error_of("\x80\x02"
                        "c__builtin__\nexec\n."s),
               Catch::Contains("global '__builtin__.exec' is not allowed"));
  }
  SECTION("STACK_GLOBAL builtins.eval") {
    CHECK_THAT(error_of("\x80\x04\x8c\x08"
                        "builtins\x8c\x04"
                        "eval\x93."s),
               Catch::Contains("global 'builtins.eval' is not allowed"));
  }
  SECTION("look-alikes of allowed names") {
    CHECK_THAT(error_of("\x80\x02"
                        "ctorch\n_utils._rebuild_tensor_v2\n."s),
               Catch::Contains("is not allowed"));
    CHECK_THAT(error_of("\x80\x02"
                        "ctorch._utils\n_rebuild_device_tensor_from_numpy\n."s),
               Catch::Contains("global 'torch._utils._rebuild_device_tensor_from_numpy' is not allowed"));
    CHECK_THAT(error_of("\x80\x02"
                        "ctorch\nload\n."s),
               Catch::Contains("global 'torch.load' is not allowed"));
  }
  SECTION("allowed classes cannot be called") {
    CHECK_THAT(error_of("\x80\x02"
                        "ctorch\nFloatStorage\n)R."s),
               Catch::Contains("'torch.FloatStorage' cannot be called"));
    CHECK_THAT(error_of("\x80\x02"
                        "ccollections\nOrderedDict\n]\x85R."s),
               Catch::Contains("OrderedDict called with arguments"));
  }
  SECTION("opcodes torch.save never writes") {
    CHECK_THAT(error_of("\x80\x02S'ls'\n."s), Catch::Contains("opcode STRING (0x53)"));
    CHECK_THAT(error_of("\x80\x02(cos\nsystem\n"s), Catch::Contains("global 'os.system'"));
    CHECK_THAT(error_of("\x80\x02\x81."s), Catch::Contains("opcode NEWOBJ"));
    CHECK_THAT(error_of("\x80\x02\xff."s), Catch::Contains("unknown opcode 0xff at byte 2"));
    CHECK_THAT(error_of("\x80\x06N."s), Catch::Contains("pickle protocol 6"));
  }
  SECTION("persistent ids other than torch storages") {
    CHECK_THAT(error_of("\x80\x02X\x01\x00\x00\x00xQ."s), Catch::Contains("not a torch storage reference"));
  }
}

TEST_CASE("pickle: malformed streams give located errors", "[pickle]") {
  CHECK_THAT(error_of(""s), Catch::Contains("ends without a STOP opcode"));
  CHECK_THAT(error_of("\x80\x02N"s), Catch::Contains("ends without a STOP opcode"));
  CHECK_THAT(error_of("\x80\x02X\x10\x00\x00\x00"
                      "abc"s),
             Catch::Contains("BINUNICODE: pickle is truncated (at byte 2)"));
  CHECK_THAT(error_of("\x80\x02J\x01\x02"s), Catch::Contains("BININT: pickle is truncated"));
  CHECK_THAT(error_of("\x80\x02t."s), Catch::Contains("TUPLE without a preceding MARK"));
  CHECK_THAT(error_of("\x80\x02N\x86."s), Catch::Contains("TUPLE2: stack underflow"));
  CHECK_THAT(error_of("\x80\x02R."s), Catch::Contains("REDUCE: stack underflow"));
  CHECK_THAT(error_of("\x80\x02N(s."s), Catch::Contains("SETITEM: stack underflow"));  // items below MARK are hidden
  CHECK_THAT(error_of("\x80\x02h\x05."s), Catch::Contains("BINGET: memo index 5 was never stored"));
  CHECK_THAT(error_of("\x80\x02j\x00\x00\x00\x80."s), Catch::Contains("memo index 2147483648 was never stored"));
  CHECK_THAT(error_of("\x80\x02q\x00."s), Catch::Contains("BINPUT: stack underflow"));
  CHECK_THAT(error_of("\x80\x02NN."s), Catch::Contains("STOP with 2 values on the stack"));
  CHECK_THAT(error_of("\x80\x02(N."s), Catch::Contains("STOP with an unclosed MARK"));
  CHECK_THAT(error_of("\x80\x02]NNs."s), Catch::Contains("SETITEM: target is a list, not a dict"));
  CHECK_THAT(error_of("\x80\x02}]Ns."s), Catch::Contains("unhashable list"));
  CHECK_THAT(error_of("\x80\x02}(NNNu."s), Catch::Contains("SETITEMS: odd number of items"));
  CHECK_THAT(error_of("\x80\x02NNa."s), Catch::Contains("APPEND: target is a None"));
  CHECK_THAT(error_of("\x80\x02X\x02\x00\x00\x00\xc3\x28."s), Catch::Contains("not valid UTF-8"));
  CHECK_THAT(error_of("\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01."s),
             Catch::Contains("integer wider than 64 bits"));
  CHECK_THAT(error_of("\x80\x02"
                      "cos"s),
             Catch::Contains("GLOBAL: missing newline"));
  CHECK_THAT(error_of("\x80\x04\x95\xff\x00\x00\x00\x00\x00\x00\x00N."s), Catch::Contains("FRAME: frame of 255 bytes"));
  CHECK_THAT(error_of("\x80\x02X\xff\xff\xff\xff."s),
             Catch::Contains("BINUNICODE: length 4294967295 exceeds the limit of 67108864 bytes"));
  CHECK(parse("\x80\x02X\xff\xff\xff\xff."s).status().code() == StatusCode::kInvalidModel);
}

TEST_CASE("pickle: limits bound memory on hostile input", "[pickle][security]") {
  PickleLimits small;
  small.max_stack = 8;
  small.max_marks = 4;
  small.max_memo = 3;
  small.max_values = 20;
  small.max_string_bytes = 4;
  CHECK_THAT(error_of("\x80\x02"s + std::string(9, 'N') + ".", small), Catch::Contains("stack holds more than 8"));
  CHECK_THAT(error_of("\x80\x02"s + std::string(5, '(') + ".", small), Catch::Contains("more than 4 nested MARKs"));
  CHECK_THAT(error_of("\x80\x02Nq\x00q\x01q\x02q\x03."s, small), Catch::Contains("memo holds more than 3"));
  CHECK(parse("\x80\x02Nq\x00q\x00q\x00q\x00."s, small).ok());  // overwriting one slot is fine
  CHECK_THAT(error_of("\x80\x02X\x05\x00\x00\x00hello."s, small), Catch::Contains("exceeds the limit of 4 bytes"));
  std::string many = "\x80\x02]";
  for (int i = 0; i < 30; ++i) many += "Na";
  CHECK_THAT(error_of(many + ".", small), Catch::Contains("more than 20 values"));
  // Default limits: deep nesting is refused long before anything recursive could matter.
  CHECK_THAT(error_of("\x80\x02"s + std::string(100000, '(') + "."), Catch::Contains("nested MARKs"));
}

TEST_CASE("pickle: shared and self-referencing values", "[pickle]") {
  SECTION("a list that contains itself parses and frees without looping") {
    atrous::Result<Pickle> p = parse(
        "\x80\x02]q\x00h\x00"
        "a."s);
    REQUIRE(p.ok());
    CHECK(p->root().items.size() == 1);
    CHECK(p->root().items[0] == &p->root());
  }
  SECTION("a repeated dict key replaces the value in place, as in Python") {
    atrous::Result<Pickle> p = parse(
        "\x80\x02}(X\x01\x00\x00\x00"
        "aK\x01X\x01\x00\x00\x00"
        "bK\x02X\x01\x00\x00\x00"
        "aK\x03u."s);
    REQUIRE(p.ok());
    REQUIRE(p->root().entries.size() == 2);
    CHECK(p->root().entries[0].first->text == "a");
    CHECK(p->root().entries[0].second->integer == 3);
  }
  SECTION("BUILD keeps a state dict's _metadata as attributes") {
    atrous::Result<Pickle> p = parse(
        "\x80\x02}}(X\x01\x00\x00\x00vK\x01u"
        "b."s);
    REQUIRE(p.ok());
    REQUIRE(p->root().attrs != nullptr);
    CHECK(p->root().attrs->get("v")->integer == 1);
  }
}

TEST_CASE("pickle: random opcode soup never crashes", "[pickle][security]") {
  // Draw from the opcodes we implement plus a few argument bytes, so that the
  // parser gets deep into its states instead of stopping at the first byte.
  const std::string alphabet = "().NKJMXqhjtsuae}])\x85\x86\x87\x88\x89\x8a\x8c\x93\x94QRbc0122\x00\x01\x02\x05\n"s;
  std::mt19937 rng(1234);
  const std::string globals[] = {"ccollections\nOrderedDict\n", "ctorch._utils\n_rebuild_tensor_v2\n",
                                 "ctorch\nFloatStorage\n", "X\x07\x00\x00\x00storage"s};
  int ok = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string s = "\x80\x02";
    size_t len = rng() % 80;
    for (size_t i = 0; i < len; ++i) {
      if (rng() % 10 == 0)
        s += globals[rng() % 4];
      else
        s += alphabet[rng() % alphabet.size()];
    }
    if (rng() % 2) s += '.';
    atrous::Result<Pickle> p = parse(s);
    if (p.ok())
      ++ok;
    else
      CHECK_FALSE(p.status().message().empty());
  }
  // Also byte flips of the real torch.save pickle.
  for (int iter = 0; iter < 3000; ++iter) {
    std::string s = kParameterPickle;
    int flips = 1 + static_cast<int>(rng() % 3);
    for (int f = 0; f < flips; ++f) s[rng() % s.size()] = static_cast<char>(rng() & 0xff);
    atrous::Result<Pickle> p = parse(s.substr(0, rng() % (s.size() + 1)));
    if (p.ok()) ++ok;
  }
  CHECK(ok > 0);
}
