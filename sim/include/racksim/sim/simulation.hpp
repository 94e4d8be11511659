#pragma once
/// The discrete-event serving simulation of a whole system: every request, every iteration of
/// every replica (spec: `racksim simulate`).

#include <cstdint>
#include <string>
#include <vector>

#include "racksim/sim/engine.hpp"
#include "racksim/sim/scenario.hpp"

namespace racksim {

/// Mean and percentiles of one latency, milliseconds.
struct LatencySummary {
  double mean = 0, p50 = 0, p90 = 0, p99 = 0;
};

/// One iteration of one replica lane, for traces.
struct IterationRecord {
  std::uint32_t replica = 0;
  std::uint32_t lane = 0;
  SimTime start, end;
  SimTime stage_time;               ///< time on each pipeline stage (the step time / stages)
  std::int64_t decode = 0;          ///< decode sequences
  std::int64_t prefill_tokens = 0;  ///< prompt tokens
  bool capped = false;
  double dynamic_j = 0;             ///< dynamic energy of all the replica's GPUs for this iteration
  std::int64_t admitted = 0;        ///< requests that started (or restarted) their prefill in it
  std::int64_t preempted = 0;       ///< sequences preempted to make room for it (max_utilization)
};

/// One finished request, for --csv.
struct RequestRecord {
  std::uint32_t id = 0;
  std::uint32_t replica = 0;
  SimTime arrival, first_token, finish;
  std::uint32_t input = 0, output = 0;
};

/// What to keep beyond the summary.
struct SimOptions {
  double qps = 0;            ///< > 0: overrides workload.qps
  bool keep_requests = false;
  bool keep_iterations = false;
};

/// The spec's summary plus what tests and reports need.
struct SimResult {
  int gpus = 0;
  int replicas = 0;
  double qps = 0;
  std::int64_t requests_completed = 0;
  std::int64_t input_tokens = 0;
  std::int64_t output_tokens = 0;
  double duration_s = 0;       ///< first arrival to last finish
  double arrival_span_s = 0;   ///< first arrival to last arrival
  double output_tokens_per_s = 0;
  double requests_per_s = 0;
  LatencySummary ttft_ms, tpot_ms, e2e_ms;
  double ttft_limit_ms = 0, tpot_limit_ms = 0;  ///< 0 = no limit
  bool slo_met = true;
  double gpu_avg_w = 0;
  /// The replicas' GPUs together (replicas x TP x PP, the system's other GPUs left out): their idle
  /// plus the iterations' dynamic energy over the duration. One replica's is what `racksim exec
  /// --serve` measures on its GPUs.
  double replicas_gpu_w = 0;
  double system_avg_w = 0;
  double energy_j = 0;
  double output_tokens_per_joule = 0;
  double power_capped_share = 0;  ///< share of iterations slowed by the power limit
  double weights_gib_per_gpu = 0;
  std::int64_t kv_capacity_tokens_per_replica = 0;
  double kv_peak_utilization = 0;
  std::int64_t iterations = 0;
  std::int64_t preemptions = 0;
  std::uint64_t events = 0;
  std::vector<IterationRecord> iteration_records;
  std::vector<RequestRecord> request_records;
};

/// Runs the scenario to completion.
[[nodiscard]] SimResult simulate(const Scenario& s, const SimOptions& opt = {});

/// Server / Interactive: the highest arrival rate whose p99 TTFT and TPOT meet the scenario's
/// limits, as MLPerf submitters tune theirs (bracketed from the offline rate, then bisected to
/// 1e-4 relative; every probe sends at least 600 s of arrivals, MLPerf's minimum run), and the
/// full result there. InfeasibleError if no rate meets them.
[[nodiscard]] SimResult find_max_qps(const Scenario& s, const SimOptions& opt = {});

}  // namespace racksim
