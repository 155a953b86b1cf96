// Status and Result: how every Atrous call reports failure.
//
// No exception and no abort crosses the library boundary. A call that can fail
// returns a Status (or a Result<T> holding either a value or a Status). The
// message names what went wrong in terms a user can act on: the node (index and
// name), the tensor, the expected and the found value.
//
//   atrous::Result<std::shared_ptr<const atrous::Model>> m = atrous::Model::open(path);
//   if (!m.ok()) { std::cerr << m.status().to_string() << "\n"; return 1; }
//
// "Unsupported" is not "error": a kernel that declines a configuration returns
// kUnsupported, and the planner moves on to the next candidate.
#pragma once

#include <optional>
#include <string>
#include <utility>

namespace atrous {

enum class StatusCode {
  kOk = 0,
  kInvalidModel,     // the model file is malformed or inconsistent
  kInvalidArgument,  // the caller passed something wrong (shape, name, value)
  kUnsupported,      // valid, but not handled (by this kernel, op or version)
  kOutOfMemory,      // over the memory budget, or an allocation failed
  kNotFound,         // a named thing (input, output, entry point, file) is absent
  kIoError,          // reading or writing a file failed
  kInternal,         // a bug in Atrous or a failure inside a dependency
};

const char* status_code_name(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "invalid model: node 3 'conv1': ..." ; "ok" when ok.
  std::string to_string() const;

  // Prefixes context to the message ("while loading x.atrous: ...").
  Status with_context(const std::string& context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status invalid_model(std::string m) { return Status(StatusCode::kInvalidModel, std::move(m)); }
inline Status invalid_argument(std::string m) { return Status(StatusCode::kInvalidArgument, std::move(m)); }
inline Status unsupported(std::string m) { return Status(StatusCode::kUnsupported, std::move(m)); }
inline Status out_of_memory(std::string m) { return Status(StatusCode::kOutOfMemory, std::move(m)); }
inline Status not_found(std::string m) { return Status(StatusCode::kNotFound, std::move(m)); }
inline Status io_error(std::string m) { return Status(StatusCode::kIoError, std::move(m)); }
inline Status internal_error(std::string m) { return Status(StatusCode::kInternal, std::move(m)); }

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {  // NOLINT: implicit by design
    if (status_.ok()) status_ = internal_error("Result constructed from an ok Status without a value");
  }

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }

  // Only valid when ok().
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace atrous

#define ATROUS_CONCAT_INNER(a, b) a##b
#define ATROUS_CONCAT(a, b) ATROUS_CONCAT_INNER(a, b)

// Returns the Status from the enclosing function when expr is not ok.
#define ATROUS_RETURN_IF_ERROR(expr)            \
  do {                                          \
    ::atrous::Status atrous_status_ = (expr);   \
    if (!atrous_status_.ok()) return atrous_status_; \
  } while (0)

// lhs = value of a Result expression, or return its Status.
#define ATROUS_ASSIGN_OR_RETURN(lhs, expr) \
  ATROUS_ASSIGN_OR_RETURN_IMPL(ATROUS_CONCAT(atrous_result_, __LINE__), lhs, expr)
#define ATROUS_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return tmp.status();                \
  lhs = std::move(tmp).value()
