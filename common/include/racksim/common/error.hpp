#pragma once
/// Errors at the edges of racksim and the process exit codes they map to (spec: "Exit codes").

#include <stdexcept>
#include <string>

namespace racksim {

/// Exit codes of the racksim binary (spec: 0 done, 2 bad input, 3 cannot run as asked).
enum class ExitCode : int { ok = 0, internal = 1, bad_input = 2, infeasible = 3 };

/// Base of every error racksim reports to a user; what() is the one-line message without "error: ".
class Error : public std::runtime_error {
 public:
  Error(ExitCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  /// The exit code the command line returns for this error.
  [[nodiscard]] ExitCode code() const noexcept { return code_; }

 private:
  ExitCode code_;
};

/// The command line or a file is wrong (exit 2): names file, key, value and what is allowed.
class InputError : public Error {
 public:
  explicit InputError(const std::string& message) : Error(ExitCode::bad_input, message) {}
};

/// The scenario is valid but cannot run as asked (exit 3); the message says why in numbers.
class InfeasibleError : public Error {
 public:
  explicit InfeasibleError(const std::string& message) : Error(ExitCode::infeasible, message) {}
};

/// Aborts with file, line and the failed expression; never compiled out (unlike assert).
[[noreturn]] void assertion_failed(const char* expr, const char* file, int line, const std::string& msg);

}  // namespace racksim

/// Invariant check that stays in release builds.
#define RACKSIM_ASSERT(cond, msg)                                              \
  do {                                                                          \
    if (!(cond)) ::racksim::assertion_failed(#cond, __FILE__, __LINE__, (msg)); \
  } while (false)
