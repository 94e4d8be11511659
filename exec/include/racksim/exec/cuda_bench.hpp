#pragma once
/// `racksim bench` on one CUDA device (`--device cuda:N`, default 0): GEMMs (cuBLASLt BF16 / FP8, NVFP4 on Blackwell, the Hopper
/// FP4-weight path), device memory, launch overhead and NVML power. Callable from plain C++ in
/// every build: without the CUDA backend, or without a device, each entry point throws
/// InfeasibleError (exit 3) saying which (backend_registry.cpp routes them). Each entry point
/// makes `device` the calling thread's current device. The NCCL collectives are in collectives.hpp.

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "racksim/common/measurement.hpp"
#include "racksim/exec/bench.hpp"

namespace racksim::exec {

/// What the benches need to know about a device.
struct CudaDevice {
  std::string name;           ///< as the driver reports it
  int sm_major = 0, sm_minor = 0;
  int sm_count = 0;
  std::int64_t l2_bytes = 0;
  std::int64_t memory_bytes = 0;
};

/// Device `device`, made current, or InfeasibleError: "no CUDA device: ..." (no driver / no
/// device) or "built without CUDA: ..." (RACKSIM_CUDA=OFF or no toolkit at configure time).
/// InputError when `device` is not one of the visible devices.
[[nodiscard]] CudaDevice cuda_require_device(int device = 0);

/// The measurement-file header for `device`: device name, catalog GPU id, driver (NVML, else
/// the CUDA driver API version), CUDA runtime and cuBLASLt versions, SM and memory clocks and
/// the enforced power limit read through NVML now (absent if NVML is missing), UTC date, commit.
[[nodiscard]] MeasurementRun cuda_measurement_run(const std::string& source, int device = 0);

/// Runs the GEMM path of `dtype_name` ("bf16", "fp8", "nvfp4": bench.hpp gemm_case) at m x n x k
/// on fresh random inputs and compares with an FP64 host GEMM of the same quantized values:
/// returns ||D - ref|| / ||ref||. Error (exit 1) naming path, shape, error and tolerance when it
/// exceeds the tolerance (1e-2 for BF16 outputs, 1e-5 for FP32) or an output is not finite.
[[nodiscard]] double cuda_check_gemm(std::string_view dtype_name, std::int64_t m, std::int64_t n, std::int64_t k, int device = 0);

/// Times every case (cuBLASLt heuristic algorithm, 32 MiB workspace, random non-zero inputs).
[[nodiscard]] std::vector<MeasurementRecord> cuda_bench_gemm(std::span<const GemmCase> cases, const BenchTiming& timing,
                                                             const RecordSink& done, int device = 0);

/// Device-memory bandwidth by size: "copy" (cudaMemcpyAsync device to device) and "read" (a
/// reduction kernel reading every byte once), each size at offsets rotated through a buffer of
/// max(4 x L2, largest size) so no call finds its data in L2.
[[nodiscard]] std::vector<MeasurementRecord> cuda_bench_memory(std::span<const double> sizes, const BenchTiming& timing,
                                                               const RecordSink& done, int device = 0);

/// Launch overhead: "kernel" (one empty kernel in a stream of `batch` back-to-back launches,
/// event time / batch) and "graph_node" (a CUDA graph of `batch` empty-kernel nodes replayed,
/// event time / batch). Also prints the launch + synchronize round trip on stdout.
[[nodiscard]] std::vector<MeasurementRecord> cuda_bench_launch(int batch, const BenchTiming& timing, const RecordSink& done,
                                                               int device = 0);

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
                                                              const RecordSink& done, int device = 0);

}  // namespace racksim::exec
