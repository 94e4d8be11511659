#pragma once
// Helpers shared by the unit tests: temporary scenario files and catching racksim errors.

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>

#include <unistd.h>

#include "racksim/common/error.hpp"
#include "racksim/exec/bench.hpp"

namespace racksim::test {

/// Writes `text` to a fresh file under the system temp directory and returns its path.
inline std::string write_temp(const std::string& name, const std::string& text) {
  static std::atomic<int> counter{0};
  auto dir = std::filesystem::temp_directory_path() / ("racksim_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto path = dir / (std::to_string(counter++) + "_" + name);
  std::ofstream(path) << text;
  return path.string();
}

/// A valid Llama-2-70B scenario on `system` with the given precision and parallelism.
inline std::string scenario_text(const std::string& system, const std::string& weights, const std::string& acts,
                                 const std::string& kv, int tp, int pp, const std::string& extra_serving = "") {
  return "name: t\nsystem: " + system + "\nmodel: llama2-70b\nprecision:\n  weights: " + weights + "\n  activations: " + acts +
         "\n  kv_cache: " + kv + "\ndeployment:\n  tensor_parallel: " + std::to_string(tp) + "\n  pipeline_parallel: " +
         std::to_string(pp) + "\n  replicas: auto\nserving:\n  max_batch_size: 2048\n  max_num_tokens: 3584\n" + extra_serving +
         "workload:\n  scenario: offline\n  requests: 100\n  input_tokens: {distribution: fixed, value: 128}\n"
         "  output_tokens: {distribution: fixed, value: 64}\nseed: 3\n";
}

/// Measurement records exactly as `racksim bench` writes them (exec/bench.hpp), for the
/// calibration tests: one timing for median, min and max.
inline MeasurementRecord bench_memcpy(const std::string& variant, double size_bytes, double time_s) {
  return exec::memory_record(variant, size_bytes, exec::TimingStats{time_s, time_s, time_s, 20});
}
inline MeasurementRecord bench_launch(const std::string& variant, double time_s) {
  return exec::launch_record(variant, exec::TimingStats{time_s, time_s, time_s, 1000});
}
inline MeasurementRecord bench_idle(double watts) {
  exec::PowerSample p;
  p.seconds = 3;
  p.mean_power_w = watts;
  return exec::idle_record(p);
}

}  // namespace racksim::test
