#pragma once
// The executor's variant knobs: environment variables, each one of a fixed set of values, read
// once by the kernel files for same-run A/B measurements on a device (docs/executor.md).

#include <cstddef>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

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

}  // namespace racksim::exec
