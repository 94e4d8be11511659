#pragma once
/// The CPU side of `racksim bench`: shape sweeps, timing statistics and the measurement records
/// the benchmarks write (common/measurement.hpp). Built in every configuration, so it is unit
/// tested without a GPU; the timing itself is in exec/cuda/ (cuda_ops.hpp routes to it).

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "racksim/common/dtype.hpp"
#include "racksim/common/measurement.hpp"
#include "racksim/workloads/model.hpp"

namespace racksim::exec {

/// One weight GEMM of a model's layer: y[M x n] = x[M x k] W^T, W [n x k].
struct GemmShape {
  std::string name;      ///< step-graph op name without the layer prefix ("qkv_proj")
  std::int64_t n = 0;    ///< output features (rows of W)
  std::int64_t k = 0;    ///< reduction (columns of W)
};

/// The dense layer GEMMs of `model` at tensor parallel `tp`, as workloads/step_graph.cpp builds
/// them: qkv_proj ((heads + 2 kv_heads) head_dim / tp x hidden), o_proj (hidden x heads head_dim / tp),
/// gate_up_proj (2 ffn / tp x hidden), down_proj (hidden x ffn / tp). InputError for MoE models
/// or a tp that does not divide the heads and ffn.
[[nodiscard]] std::vector<GemmShape> layer_gemm_shapes(const ModelConfig& model, int tp);

/// Default M sweep of `bench gemm`: powers of two 1..8192 (decode batches to prefill chunks).
[[nodiscard]] std::vector<std::int64_t> default_gemm_ms();

/// One GEMM to time: shape and the formats of A (activations), W (weights) and C (output),
/// spelled as the step graph's op identity (a, w, c).
struct GemmCase {
  std::string shape;     ///< GemmShape::name, for logs
  std::int64_t m = 0, n = 0, k = 0;
  DType a = DType::bf16, w = DType::bf16, c = DType::bf16;

  [[nodiscard]] double flops() const noexcept;        ///< 2 m n k
  [[nodiscard]] double bytes() const noexcept;        ///< A + W + C once each (storage_bytes, block scales included)
};

/// The formats a `bench gemm --dtypes` name times, per device generation. "bf16": bf16 x bf16 ->
/// bf16; "fp8": E4M3 x E4M3 (per-tensor scales) -> bf16; "nvfp4": on Blackwell (sm_100+)
/// nvfp4 x nvfp4 -> bf16 through cuBLASLt, on Hopper the FP4-weight path: M <= 16 the small-M
/// kernel (fp32 x nvfp4 -> fp32), larger M dequantize-to-BF16 then cuBLASLt (bf16 x nvfp4 -> bf16).
/// InputError naming the allowed names otherwise.
[[nodiscard]] GemmCase gemm_case(std::string_view dtype_name, const GemmShape& shape, std::int64_t m, int sm_major);

/// Every (dtype, shape, m) of the sweep, in that nesting order.
[[nodiscard]] std::vector<GemmCase> gemm_sweep(std::span<const std::string> dtypes, std::span<const GemmShape> shapes,
                                               std::span<const std::int64_t> ms, int sm_major);

/// Timed repetitions for a case whose one call is estimated at `estimate_s`: enough to fill
/// `target_s`, clamped to [min_reps, max_reps].
[[nodiscard]] int reps_for(double estimate_s, double target_s, int min_reps, int max_reps) noexcept;

/// Median, min and max of per-repetition times (seconds). InputError if `samples` is empty
/// or holds a value that is not finite and positive.
struct TimingStats {
  double median_s = 0, min_s = 0, max_s = 0;
  std::int64_t reps = 0;
};
[[nodiscard]] TimingStats timing_stats(std::span<const double> samples);

/// Sizes of `bench memory`: powers of two from `min_bytes` to `max_bytes` (both included when
/// they are powers of two). InputError if min_bytes < 1 or min_bytes > max_bytes.
[[nodiscard]] std::vector<double> memory_sizes(double min_bytes, double max_bytes);

/// A record for a timed GEMM: op identity as the step graph spells it, flops and bytes of one call.
[[nodiscard]] MeasurementRecord gemm_record(const GemmCase& c, const TimingStats& t);
/// A device-memory record: `variant` "copy" (bytes read + written = 2 x size) or "read"
/// (a read-only reduction kernel: bytes_moved = size). InputError for another variant.
[[nodiscard]] MeasurementRecord memory_record(std::string_view variant, double size_bytes, const TimingStats& t);
/// A launch-overhead record: `variant` "kernel" (one empty kernel launch, host to completion
/// amortized over a back-to-back stream) or "graph_node" (one node of a replayed CUDA graph).
[[nodiscard]] MeasurementRecord launch_record(std::string_view variant, const TimingStats& t);

/// Sustained-load power of one case: `calls` calls in `seconds`, NVML energy (J, if the counter
/// exists) and mean sampled power (W).
struct PowerSample {
  double seconds = 0;
  std::int64_t calls = 0;
  std::optional<double> energy_j;    ///< total-energy counter difference over the window
  std::optional<double> mean_power_w;
  std::int64_t samples = 0;          ///< power readings averaged
};
/// A GEMM record carrying power: time per call = seconds / calls, energy_j per call, power_w mean.
[[nodiscard]] MeasurementRecord power_record(const GemmCase& c, const PowerSample& p);
/// The idle record: the device with nothing launched for `p.seconds` (kind "idle").
[[nodiscard]] MeasurementRecord idle_record(const PowerSample& p);

/// Catalog GPU id (hwmodels) of a device name as the driver reports it ("NVIDIA H100 80GB HBM3"
/// -> "h100-sxm", "NVIDIA H200" -> "h200-sxm", "NVIDIA B200" -> "b200", "NVIDIA GB300" -> "gb300"),
/// or "" when the device is not one of them (PCIe and NVL cards included: their clocks and
/// power limits differ from the catalog's SXM parts).
[[nodiscard]] std::string catalog_gpu_id(std::string_view device_name);

/// The commit this binary was built from (CMake's RACKSIM_GIT_COMMIT), or "" if unknown.
[[nodiscard]] std::string build_commit();

/// Current UTC time, ISO 8601 ("2026-01-02T03:04:05Z").
[[nodiscard]] std::string utc_now_iso8601();

}  // namespace racksim::exec
