#include "convert/json_template.h"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <limits>

namespace atrous::convert {
namespace {

bool ident_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool ident_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

struct Num {
  bool is_int = true;
  int64_t i = 0;
  double d = 0;
  double as_double() const { return is_int ? static_cast<double>(i) : d; }
  static Num of_int(int64_t v) { return Num{true, v, 0}; }
  static Num of_double(double v) { return Num{false, 0, v}; }
};

// Recursive descent over the expression text.
class Parser {
 public:
  Parser(const std::string& text, const VarLookup& vars) : s_(text), vars_(vars) {}

  Result<Num> parse() {
    ATROUS_ASSIGN_OR_RETURN(Num v, expr());
    skip();
    if (p_ != s_.size()) return fail("unexpected '" + s_.substr(p_, 1) + "'");
    return v;
  }

 private:
  Status fail(const std::string& why) const {
    return invalid_argument("expression '" + s_ + "': " + why + " at position " + std::to_string(p_));
  }
  void skip() {
    while (p_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[p_]))) ++p_;
  }
  bool eat(const char* tok) {
    skip();
    size_t n = std::char_traits<char>::length(tok);
    if (s_.compare(p_, n, tok) != 0) return false;
    // "*" must not eat the first half of "**", nor "/" of "//".
    if ((n == 1 && (tok[0] == '*' || tok[0] == '/')) && p_ + 1 < s_.size() && s_[p_ + 1] == tok[0]) return false;
    p_ += n;
    return true;
  }

  Result<Num> expr() {
    ATROUS_ASSIGN_OR_RETURN(Num a, term());
    while (true) {
      if (eat("+")) {
        ATROUS_ASSIGN_OR_RETURN(Num b, term());
        ATROUS_ASSIGN_OR_RETURN(a, arith('+', a, b));
      } else if (eat("-")) {
        ATROUS_ASSIGN_OR_RETURN(Num b, term());
        ATROUS_ASSIGN_OR_RETURN(a, arith('-', a, b));
      } else {
        return a;
      }
    }
  }

  Result<Num> term() {
    ATROUS_ASSIGN_OR_RETURN(Num a, unary());
    while (true) {
      char op = 0;
      if (eat("//")) op = 'f';
      else if (eat("*")) op = '*';
      else if (eat("/")) op = '/';
      else if (eat("%")) op = '%';
      else return a;
      ATROUS_ASSIGN_OR_RETURN(Num b, unary());
      if ((op == '/' || op == 'f' || op == '%') && b.as_double() == 0) return fail("division by zero");
      ATROUS_ASSIGN_OR_RETURN(a, arith(op, a, b));
    }
  }

  Result<Num> unary() {
    if (++depth_ > kMaxDepth) return fail("nested too deeply");
    struct Leave {
      int& d;
      ~Leave() { --d; }
    } leave{depth_};
    if (eat("-")) {
      ATROUS_ASSIGN_OR_RETURN(Num v, unary());
      if (!v.is_int) return Num::of_double(-v.d);
      if (v.i == std::numeric_limits<int64_t>::min()) return overflow("-");
      return Num::of_int(-v.i);
    }
    if (eat("+")) return unary();
    return power();
  }

  Result<Num> power() {
    ATROUS_ASSIGN_OR_RETURN(Num a, atom());
    if (eat("**")) {
      ATROUS_ASSIGN_OR_RETURN(Num b, unary());
      if (a.is_int && b.is_int && b.i >= 0 && b.i < 64) {
        int64_t r = 1;
        for (int64_t k = 0; k < b.i; ++k)
          if (__builtin_mul_overflow(r, a.i, &r)) return overflow("**");
        return Num::of_int(r);
      }
      return Num::of_double(std::pow(a.as_double(), b.as_double()));
    }
    return a;
  }

  Result<Num> atom() {
    skip();
    if (p_ >= s_.size()) return fail("unexpected end");
    if (++depth_ > kMaxDepth) return fail("nested too deeply");
    struct Leave {
      int& d;
      ~Leave() { --d; }
    } leave{depth_};
    if (eat("(")) {
      ATROUS_ASSIGN_OR_RETURN(Num v, expr());
      if (!eat(")")) return fail("expected ')'");
      return v;
    }
    char c = s_[p_];
    if (std::isdigit(static_cast<unsigned char>(c)) || c == '.') {
      size_t q = p_;
      bool is_float = false;
      while (q < s_.size() && (std::isdigit(static_cast<unsigned char>(s_[q])) || s_[q] == '.' || s_[q] == 'e' ||
                               s_[q] == 'E' || ((s_[q] == '-' || s_[q] == '+') && q > p_ && (s_[q - 1] == 'e' || s_[q - 1] == 'E')))) {
        is_float = is_float || s_[q] == '.' || s_[q] == 'e' || s_[q] == 'E';
        ++q;
      }
      std::string tok = s_.substr(p_, q - p_);
      p_ = q;
      char* end = nullptr;
      if (is_float) {
        double v = std::strtod(tok.c_str(), &end);
        if (*end) return fail("bad number '" + tok + "'");
        return Num::of_double(v);
      }
      errno = 0;
      long long v = std::strtoll(tok.c_str(), &end, 10);
      if (*end) return fail("bad number '" + tok + "'");
      if (errno == ERANGE) return fail("integer " + tok + " does not fit in 64 bits");
      return Num::of_int(v);
    }
    if (!ident_start(c)) return fail("unexpected '" + std::string(1, c) + "'");
    size_t q = p_;
    while (q < s_.size() && ident_char(s_[q])) ++q;
    std::string name = s_.substr(p_, q - p_);
    p_ = q;
    if (eat("(")) {
      std::vector<Num> args;
      if (!eat(")")) {
        while (true) {
          ATROUS_ASSIGN_OR_RETURN(Num a, expr());
          args.push_back(a);
          if (eat(")")) break;
          if (!eat(",")) return fail("expected ',' or ')'");
        }
      }
      return call(name, args);
    }
    ATROUS_ASSIGN_OR_RETURN(nlohmann::json v, vars_(name));
    if (v.is_number_integer()) return Num::of_int(v.get<int64_t>());
    if (v.is_number()) return Num::of_double(v.get<double>());
    return fail("variable '" + name + "' is " + v.dump() + ", not a number");
  }

  Result<Num> call(const std::string& f, const std::vector<Num>& a) {
    auto need = [&](size_t n) { return a.size() == n; };
    if (f == "sqrt" && need(1)) {
      if (a[0].as_double() < 0) return fail("sqrt of a negative number");
      return Num::of_double(std::sqrt(a[0].as_double()));
    }
    if (f == "int" && need(1)) {
      if (a[0].is_int) return a[0];
      // 2^63 is exactly representable; anything at or beyond it (or NaN) has no int64 value.
      if (!(std::fabs(a[0].d) < 9223372036854775808.0)) return fail("int() of " + std::to_string(a[0].d) + " does not fit in 64 bits");
      return Num::of_int(static_cast<int64_t>(a[0].d));
    }
    if (f == "float" && need(1)) return Num::of_double(a[0].as_double());
    if (f == "abs" && need(1)) {
      if (!a[0].is_int) return Num::of_double(std::fabs(a[0].d));
      if (a[0].i == std::numeric_limits<int64_t>::min()) return overflow("abs()");
      return Num::of_int(a[0].i < 0 ? -a[0].i : a[0].i);
    }
    if ((f == "min" || f == "max") && a.size() >= 1) {
      Num r = a[0];
      for (const Num& x : a) {
        bool less = x.as_double() < r.as_double();
        if ((f == "min") == less && x.as_double() != r.as_double()) r = x;
      }
      return r;
    }
    return fail("unknown function " + f + "() with " + std::to_string(a.size()) +
                " arguments (known: sqrt, int, float, abs, min, max)");
  }

  Status overflow(const char* op) const { return fail(std::string("integer overflow in ") + op); }

  // Integers are 64-bit with Python's floor division and modulo; a result that does not fit
  // is an error (never wrapped, never undefined behaviour).
  Result<Num> arith(char op, const Num& a, const Num& b) const {
    if (a.is_int && b.is_int && op != '/') {
      int64_t r = 0;
      switch (op) {
        case '+':
          if (__builtin_add_overflow(a.i, b.i, &r)) return overflow("+");
          return Num::of_int(r);
        case '-':
          if (__builtin_sub_overflow(a.i, b.i, &r)) return overflow("-");
          return Num::of_int(r);
        case '*':
          if (__builtin_mul_overflow(a.i, b.i, &r)) return overflow("*");
          return Num::of_int(r);
        case 'f':
        case '%': {
          // b != 0 (checked by the caller); INT64_MIN / -1 is the one quotient that overflows.
          if (b.i == -1) {
            if (op == '%') return Num::of_int(0);
            if (a.i == std::numeric_limits<int64_t>::min()) return overflow("//");
            return Num::of_int(-a.i);
          }
          int64_t q = a.i / b.i, m = a.i % b.i;
          if (m != 0 && ((m < 0) != (b.i < 0))) {
            --q;
            m += b.i;
          }
          return Num::of_int(op == 'f' ? q : m);
        }
      }
    }
    double x = a.as_double(), y = b.as_double();
    switch (op) {
      case '+': return Num::of_double(x + y);
      case '-': return Num::of_double(x - y);
      case '*': return Num::of_double(x * y);
      case '/': return Num::of_double(x / y);
      case 'f': return Num::of_double(std::floor(x / y));
      case '%': return Num::of_double(x - std::floor(x / y) * y);
    }
    return Num::of_double(std::numeric_limits<double>::quiet_NaN());
  }

  static constexpr int kMaxDepth = 200;
  const std::string& s_;
  const VarLookup& vars_;
  size_t p_ = 0;
  int depth_ = 0;
};

std::string to_text(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_float()) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.17g", v.get<double>());
    return buf;
  }
  return v.dump();
}

}  // namespace

Result<nlohmann::json> eval_expression(const std::string& text, const VarLookup& vars) {
  Parser p(text, vars);
  ATROUS_ASSIGN_OR_RETURN(Num n, p.parse());
  if (n.is_int) return nlohmann::json(n.i);
  if (!std::isfinite(n.d)) return invalid_argument("expression '" + text + "' is not finite");
  return nlohmann::json(n.d);
}

Result<std::string> substitute_text(const std::string& text, const VarLookup& vars) {
  std::string out;
  size_t p = 0;
  while (p < text.size()) {
    size_t open = text.find('{', p);
    if (open == std::string::npos) break;
    size_t q = open + 1;
    while (q < text.size() && ident_char(text[q])) ++q;
    if (q < text.size() && text[q] == '}' && q > open + 1 && ident_start(text[open + 1])) {
      out += text.substr(p, open - p);
      std::string name = text.substr(open + 1, q - open - 1);
      auto v = vars(name);
      if (!v.ok()) return v.status().with_context("in '" + text + "'");
      if (v->is_object() || v->is_array() || v->is_null())
        return invalid_argument("'{" + name + "}' in '" + text + "' is " + v->dump() + ", not a name or number");
      out += to_text(*v);
      p = q + 1;
    } else {
      out += text.substr(p, open + 1 - p);
      p = open + 1;
    }
  }
  out += text.substr(p);
  return out;
}

namespace {

Result<nlohmann::json> substitute_at(const nlohmann::json& value, const VarLookup& vars, int depth) {
  if (depth > 64) return invalid_argument("JSON nested more than 64 levels deep");
  if (value.is_string()) {
    const std::string& s = value.get_ref<const std::string&>();
    if (s.size() >= 2 && s[0] == '$' && s[1] == '$') return nlohmann::json(s.substr(1));
    if (s.size() >= 3 && s[0] == '$' && s[1] == '(' && s.back() == ')') {
      ATROUS_ASSIGN_OR_RETURN(std::string inner, substitute_text(s.substr(2, s.size() - 3), vars));
      return eval_expression(inner, vars);
    }
    if (s.size() >= 2 && s[0] == '$' && ident_start(s[1])) {
      bool plain = true;
      for (size_t i = 1; i < s.size(); ++i) plain = plain && ident_char(s[i]);
      if (plain) return vars(s.substr(1));
    }
    ATROUS_ASSIGN_OR_RETURN(std::string t, substitute_text(s, vars));
    return nlohmann::json(t);
  }
  if (value.is_array()) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& e : value) {
      ATROUS_ASSIGN_OR_RETURN(nlohmann::json v, substitute_at(e, vars, depth + 1));
      out.push_back(std::move(v));
    }
    return out;
  }
  if (value.is_object()) {
    nlohmann::json out = nlohmann::json::object();
    for (const auto& [k, e] : value.items()) {
      ATROUS_ASSIGN_OR_RETURN(nlohmann::json v, substitute_at(e, vars, depth + 1));
      out[k] = std::move(v);
    }
    return out;
  }
  return value;
}

}  // namespace

Result<nlohmann::json> substitute(const nlohmann::json& value, const VarLookup& vars) {
  return substitute_at(value, vars, 0);
}

}  // namespace atrous::convert
