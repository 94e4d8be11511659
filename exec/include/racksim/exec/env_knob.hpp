#pragma once
// The executor's variant knobs: environment variables, each one of a fixed set of values, read
// once by the kernel files for same-run A/B measurements on a device (docs/executor.md).

#include <array>
#include <cstddef>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <span>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "racksim/common/error.hpp"

namespace racksim::exec {

/// The index of `value` in `allowed` for the environment variable `name`; nullopt when unset
/// (null). Any other value: InputError "environment NAME: 'VALUE' is not one of A, B, ...".
[[nodiscard]] inline std::optional<std::size_t> env_choice(std::string_view name, const char* value,
                                                           std::initializer_list<std::string_view> allowed) {
  if (!value) return std::nullopt;
  const std::string_view v = value;
  std::size_t i = 0;
  std::string list;
  for (const std::string_view a : allowed) {
    if (a == v) return i;
    list += fmt::format("{}{}", i++ ? ", " : "", a);
  }
  throw InputError(fmt::format("environment {}: '{}' is not one of {}", name, v, list));
}

/// Every executor knob (docs/executor.md "Variant knobs", a table of all fifteen): the fused FP4
/// GEMM's eight and its per-shape tuning, the large-M path's format, decode attention's MMA mapping, FP8 attention's P, the
/// residual add + RMSNorm and gate_up + SwiGLU fusions and programmatic dependent launch.
inline constexpr std::array<std::string_view, 15> kExecutorKnobs = {
    "RACKSIM_FP4_MMA_SPLITS", "RACKSIM_FP4_MMA_TILES",    "RACKSIM_FP4_MMA_DEPTH",   "RACKSIM_FP4_MMA_MMA",
    "RACKSIM_FP4_MMA_PIPE",   "RACKSIM_FP4_MMA_X",        "RACKSIM_FP4_MMA_REDUCE",  "RACKSIM_FP4_MMA_CTAS",    "RACKSIM_FP4_MMA_TUNE",    "RACKSIM_FP4_LARGE_M",     "RACKSIM_ATTENTION_DECODE",
    "RACKSIM_ATTENTION_FP8_P", "RACKSIM_FUSE_NORM",       "RACKSIM_FUSE_SWIGLU",     "RACKSIM_PDL"};

/// The knobs set in the environment as "NAME=VALUE " words in kExecutorKnobs' order, "" when none:
/// the prefix that makes a measurement file's `source` the command that reproduces it (a file
/// measured under a variant says so). `get` looks a name up (std::getenv's contract).
[[nodiscard]] inline std::string executor_knobs_prefix(const std::function<const char*(const char*)>& get) {
  std::string out;
  for (const std::string_view k : kExecutorKnobs)
    if (const char* v = get(std::string(k).c_str())) out += fmt::format("{}={} ", k, v);
  return out;
}

/// The names of this process's environment variables (POSIX `environ`), in its order.
[[nodiscard]] std::vector<std::string> environment_names();

/// Checks the executor's environment before a command does any work, so that a bad knob costs a
/// one-line error and exit 2 at once instead of failing after the weights are on the device, or
/// (a misspelt name) being silently ignored while a same-run A/B measures the default twice:
/// - every name of `names` that starts with "RACKSIM_", is no knob, and looks like one (in a
///   knob's family, RACKSIM_FP4, RACKSIM_ATTENTION, RACKSIM_FUSE or RACKSIM_PDL, or within two
///   edits of a knob) is refused, naming the nearest knob; other RACKSIM_ names (the build's and
///   the test scripts' own, e.g. RACKSIM_UPDATE_GOLDEN) pass;
/// - every knob's value is parsed by the parser that reads it at launch (fp4_mma_knobs also
///   checks the fused GEMM's eight together: the combinations it refuses are refused here).
/// InputError, the parser's own message where a value is bad. `get` looks a name up (getenv's contract).
void check_executor_environment(std::span<const std::string> names, const std::function<const char*(const char*)>& get);

}  // namespace racksim::exec
