#pragma once
/// Latency percentiles as MLPerf's loadgen takes them, shared by the simulator, the executor's
/// serving loop and `racksim validate`'s group summaries.

#include <algorithm>
#include <cmath>
#include <cstddef>

namespace racksim {

/// The index of the p-th percentile (0 <= p <= 1) among n > 0 sorted samples: sorted[floor(n p)],
/// clamped to the last (mlcommons/inference loadgen/results.cc: sample_latencies[sample_count *
/// percentile]).
[[nodiscard]] inline std::size_t loadgen_percentile_index(std::size_t n, double p) {
  return std::min(n - 1, static_cast<std::size_t>(std::floor(p * static_cast<double>(n))));
}

}  // namespace racksim
