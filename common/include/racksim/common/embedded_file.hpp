#pragma once
/// A data file compiled into the binary (see cmake/RacksimEmbed.cmake).

#include <span>
#include <string_view>

namespace racksim {

/// One embedded file: its path relative to the module's data folder, and its bytes.
struct EmbeddedFile {
  std::string_view path;
  std::string_view contents;
};

}  // namespace racksim
