#pragma once
/// The requests of a scenario: arrival times and input/output lengths, drawn in a seeded,
/// reproducible order (or read from a trace file).

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "racksim/sim/engine.hpp"
#include "racksim/sim/scenario.hpp"

namespace racksim {

/// Structure of arrays: request i arrives at arrival[i] with input[i] prompt tokens and
/// generates output[i] tokens.
struct RequestSet {
  std::vector<SimTime> arrival;
  std::vector<std::uint32_t> input;
  std::vector<std::uint32_t> output;
  [[nodiscard]] std::size_t size() const noexcept { return input.size(); }
};

/// Draws the scenario's requests; `qps` overrides workload.qps (for --find-max-qps).
[[nodiscard]] RequestSet generate_requests(const Scenario& s, double qps);

/// Reads "arrival_s,input_tokens,output_tokens" lines (a header line and '#' comments allowed).
[[nodiscard]] RequestSet read_trace(const std::string& path);

/// Deterministic random numbers: std::mt19937_64 (its sequence is fixed by the C++ standard)
/// with racksim's own transforms, so results do not depend on the standard library's
/// distribution implementations.
class Rng {
 public:
  explicit Rng(std::uint64_t seed, std::uint64_t stream);
  [[nodiscard]] double uniform();                    ///< [0, 1), 53 bits
  [[nodiscard]] std::uint64_t below(std::uint64_t n);  ///< [0, n), unbiased
  [[nodiscard]] double exponential(double rate);     ///< mean 1/rate
  [[nodiscard]] double normal();                     ///< standard normal (Box-Muller)

 private:
  std::mt19937_64 gen_;
};

}  // namespace racksim
