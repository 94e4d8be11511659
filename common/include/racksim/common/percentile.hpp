#pragma once
/// Latency percentiles as MLPerf's loadgen takes them, shared by the simulator, the executor's
/// serving loop and `racksim validate`'s group summaries.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <iterator>
#include <vector>

namespace racksim {

/// The index of the p-th percentile (0 <= p <= 1) among n > 0 sorted samples: sorted[floor(n p)],
/// clamped to the last (mlcommons/inference loadgen/results.cc: sample_latencies[sample_count *
/// percentile]).
[[nodiscard]] inline std::size_t loadgen_percentile_index(std::size_t n, double p) {
  return std::min(n - 1, static_cast<std::size_t>(std::floor(p * static_cast<double>(n))));
}

/// Mean and loadgen percentiles of a set of latencies, in the samples' own unit.
struct LoadgenSummary {
  double mean = 0, p50 = 0, p90 = 0, p99 = 0;
  std::size_t count = 0;
};

/// The summary of `v` (float or double; reordered in place by nth_element, not fully sorted,
/// so an 11-million-sample run needs no second copy). All zero for no samples.
template <class T>
[[nodiscard]] LoadgenSummary loadgen_summary(std::vector<T>& v) {
  LoadgenSummary s;
  s.count = v.size();
  if (v.empty()) return s;
  double sum = 0;
  for (const T x : v) sum += static_cast<double>(x);
  s.mean = sum / static_cast<double>(v.size());
  auto at = [&](double p) {
    const auto idx = loadgen_percentile_index(v.size(), p);
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(idx), v.end());
    return static_cast<double>(v[idx]);
  };
  s.p50 = at(0.50);
  s.p90 = at(0.90);
  s.p99 = at(0.99);
  return s;
}

}  // namespace racksim
