#pragma once
/// A catalog number with its unit and source: the datasheet value is never overwritten;
/// calibration writes factors beside it.

#include <string>

#include "racksim/common/units.hpp"
#include "racksim/common/yaml_reader.hpp"

namespace racksim {

/// One sourced figure: `value` in SI base units, `raw` and `unit` as written in the file.
struct Figure {
  double value = 0;
  double raw = 0;
  std::string unit;
  std::string source;
  std::string note;
  bool placeholder = false;  ///< nobody has confirmed it: an estimate to replace
};

/// Reads `key: {value, unit, source[, placeholder][, note]}` measuring dimension `d`.
[[nodiscard]] Figure read_figure(const YamlMap& parent, std::string_view key, Dimension d);

}  // namespace racksim
