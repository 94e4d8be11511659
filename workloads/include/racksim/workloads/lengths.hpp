#pragma once
/// Per-sample token lengths of published data sets, shipped with racksim (workloads/data/lengths).

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace racksim {

/// One data set's per-sample input and reference-output lengths, in data-set order.
struct LengthTable {
  std::string name;
  std::vector<std::uint32_t> input;
  std::vector<std::uint32_t> output;   ///< reference answers (not what the served model generates)
  std::uint32_t max_output = 0;        ///< the benchmark's cap on generated tokens
  [[nodiscard]] double mean_input() const;
  [[nodiscard]] double mean_output() const;
};

/// Names of the shipped data sets.
[[nodiscard]] std::vector<std::string> dataset_names();
/// A shipped data set; InputError listing the names otherwise.
[[nodiscard]] const LengthTable& dataset_lengths(std::string_view name);

}  // namespace racksim
