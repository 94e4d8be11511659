#pragma once
/// `racksim bench` on CUDA device 0: GEMMs (cuBLASLt BF16 / FP8, NVFP4 on Blackwell, the Hopper
/// FP4-weight path), device memory, launch overhead and NVML power. Callable from plain C++ in
/// every build: without the CUDA backend, or without a device, each entry point throws
/// InfeasibleError (exit 3) saying which (backend_registry.cpp routes them).

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "racksim/common/measurement.hpp"
#include "racksim/exec/bench.hpp"

namespace racksim::exec {

/// What the benches need to know about device 0.
struct CudaDevice {
  std::string name;           ///< as the driver reports it
  int sm_major = 0, sm_minor = 0;
  int sm_count = 0;
  std::int64_t l2_bytes = 0;
  std::int64_t memory_bytes = 0;
};

/// Device 0, or InfeasibleError: "no CUDA device: ..." (no driver / no device) or "built
/// without CUDA: ..." (RACKSIM_CUDA=OFF or no toolkit at configure time).
[[nodiscard]] CudaDevice cuda_require_device();

/// The measurement-file header for device 0: device name, catalog GPU id, driver (NVML, else
/// the CUDA driver API version), CUDA runtime and cuBLASLt versions, SM and memory clocks and
/// the enforced power limit read through NVML now (absent if NVML is missing), UTC date, commit.
[[nodiscard]] MeasurementRun cuda_measurement_run(const std::string& source);

/// Timing rules shared by the benches: `warmup` untimed calls, then reps_for(one call's time,
/// target_s, min_reps, max_reps) timed calls, each between CUDA events; with flush_l2 a write of
/// 2 x L2 bytes goes before every timed call (outside the events).
struct BenchTiming {
  int warmup = 2;
  int min_reps = 3;
  int max_reps = 50;
  double target_s = 0.05;
  bool flush_l2 = true;
};

/// Runs the GEMM path of `dtype_name` ("bf16", "fp8", "nvfp4": bench.hpp gemm_case) at m x n x k
/// on fresh random inputs and compares with an FP64 host GEMM of the same quantized values:
/// returns ||D - ref|| / ||ref||. Error (exit 1) naming path, shape, error and tolerance when it
/// exceeds the tolerance (1e-2 for BF16 outputs, 1e-5 for FP32) or an output is not finite.
[[nodiscard]] double cuda_check_gemm(std::string_view dtype_name, std::int64_t m, std::int64_t n, std::int64_t k);

/// Calls `done` with each record as it is measured (for progress lines).
using RecordSink = std::function<void(const MeasurementRecord&)>;

/// Times every case (cuBLASLt heuristic algorithm, 32 MiB workspace, random non-zero inputs).
[[nodiscard]] std::vector<MeasurementRecord> cuda_bench_gemm(std::span<const GemmCase> cases, const BenchTiming& timing,
                                                             const RecordSink& done);

/// Device-memory bandwidth by size: "copy" (cudaMemcpyAsync device to device) and "read" (a
/// reduction kernel reading every byte once), each size at offsets rotated through a buffer of
/// max(4 x L2, largest size) so no call finds its data in L2.
[[nodiscard]] std::vector<MeasurementRecord> cuda_bench_memory(std::span<const double> sizes, const BenchTiming& timing,
                                                               const RecordSink& done);

/// Launch overhead: "kernel" (one empty kernel in a stream of `batch` back-to-back launches,
/// event time / batch) and "graph_node" (a CUDA graph of `batch` empty-kernel nodes replayed,
/// event time / batch). Also prints the launch + synchronize round trip on stdout.
[[nodiscard]] std::vector<MeasurementRecord> cuda_bench_launch(int batch, const BenchTiming& timing, const RecordSink& done);

/// Power under sustained load: first the idle device for `idle_s`, then each case called back
/// to back for `seconds` (after `ramp_s` of untimed load), with NVML power sampled every
/// `sample_interval_s` on a thread and the total-energy counter read at both ends. InfeasibleError
/// when NVML cannot be loaded (the driver's libnvidia-ml.so.1).
struct PowerOptions {
  double seconds = 3;
  double ramp_s = 0.5;
  double idle_s = 3;
  double sample_interval_s = 0.01;
};
[[nodiscard]] std::vector<MeasurementRecord> cuda_bench_power(std::span<const GemmCase> cases, const PowerOptions& options,
                                                              const RecordSink& done);

}  // namespace racksim::exec
