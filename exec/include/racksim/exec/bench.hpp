#pragma once
/// The CPU side of `racksim bench`: shape sweeps, timing statistics and the measurement records
/// the benchmarks write (common/measurement.hpp). Built in every configuration, so it is unit
/// tested without a GPU; the timing itself is in exec/cuda/ (cuda_ops.hpp routes to it).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
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

/// Default M sweep of `bench gemm`: each power of two 1..8192 (decode batches to prefill chunks)
/// and the M after it (1, 2, 3, 4, 5, 8, 9, ..., 8192, 8193: 27 points): a kernel's cost steps
/// where M crosses a tile (the fused FP4 kernel's 8-row tiles, cuBLASLt's tile shapes), and the
/// pair prices the step.
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
/// nvfp4 x nvfp4 -> bf16 through cuBLASLt, on Hopper bf16 x nvfp4 -> bf16 through the step
/// executor's FP4-weight kernels (fp4_mma_plan: the fused tensor-core kernel up to M = 128,
/// dequantize-to-BF16 then cuBLASLt above).
/// InputError naming the allowed names otherwise.
[[nodiscard]] GemmCase gemm_case(std::string_view dtype_name, const GemmShape& shape, std::int64_t m, int sm_major);

/// Every (dtype, shape, m) of the sweep, in that nesting order.
[[nodiscard]] std::vector<GemmCase> gemm_sweep(std::span<const std::string> dtypes, std::span<const GemmShape> shapes,
                                               std::span<const std::int64_t> ms, int sm_major);

/// Timed repetitions for a case whose one call is estimated at `estimate_s`: enough to fill
/// `target_s`, clamped to [min_reps, max_reps].
[[nodiscard]] int reps_for(double estimate_s, double target_s, int min_reps, int max_reps) noexcept;

/// Timing rules shared by the benches: `warmup` untimed calls, then reps_for(one call's time,
/// target_s, min_reps, max_reps) timed calls, each between CUDA events; with flush_l2 a read of
/// 2 x L2 bytes goes before every timed call (outside the events; the collectives never flush),
/// leaving the L2 full of clean lines as a decode step's weight reads do (a write would leave
/// dirty lines whose write-back the timed call would pay for).
///
/// With `graph` (`racksim bench --timing graph`: the gemm, memory, attention and elementwise suites) the calls run
/// back to back as a serving step's CUDA graph runs them: graph_calls() calls, rotating over
/// graph_banks() copies of the operands (or offsets) so that each call still reads from DRAM,
/// are captured into one graph; warm-up replays, one probe replay sizing reps_for(replay time),
/// then that many replays each between its own pair of events; a sample is the replay's time /
/// calls (no L2 flush: the rotation keeps the data cold). The run header says `timing: graph`.
struct BenchTiming {
  int warmup = 2;
  int min_reps = 3;
  int max_reps = 50;
  double target_s = 0.05;
  bool flush_l2 = true;
  bool graph = false;
};

/// --timing graph: the most operand copies a bench rotates over, and the fewest and most calls in
/// one graph; kGraphReplayS is the replay length graph_calls aims for, so that the replay's own
/// fixed cost (a graph launch, a few us) is under 1% of it.
inline constexpr int kGraphMaxBanks = 512;
inline constexpr int kGraphMinCalls = 8;
inline constexpr int kGraphMaxCalls = 4096;
inline constexpr double kGraphReplayS = 1e-3;
/// Seed offset between operand copies (copy b fills from seed + b x this; copy 0 keeps the seeds
/// of call timing).
inline constexpr std::uint64_t kGraphCopySeedStride = 0x100000;

/// Copies of one call's operands (bytes_per_call: what one call reads and writes) that keep a
/// rotation over them out of the L2: ceil(2 x l2_bytes / bytes_per_call), clamped to
/// [1, kGraphMaxBanks]. InputError unless both are positive.
[[nodiscard]] int graph_banks(double bytes_per_call, std::int64_t l2_bytes);
/// Calls in one graph for a call estimated at `call_s`: ceil(kGraphReplayS / call_s) clamped to
/// [kGraphMinCalls, kGraphMaxCalls], then rounded up to a multiple of `banks` (each copy is read
/// equally often; never past kGraphMaxCalls rounded down to a multiple, and at least `banks`).
/// A call_s that is not finite and positive counts as kGraphMinCalls' worth. InputError unless
/// 1 <= banks <= kGraphMaxCalls.
[[nodiscard]] int graph_calls(double call_s, int banks);
/// "" when `copies` distinct copies of `bytes_per_call` span at least 2 x l2_bytes (the rotation
/// reads from DRAM); else a one-line note for stderr saying the calls partly hit the L2 (below
/// 2 x L2 / kGraphMaxBanks bytes a call, 246 KB on an H200: a step's small activations do too).
[[nodiscard]] std::string graph_warm_note(double bytes_per_call, int copies, std::int64_t l2_bytes);
/// The run header's `timing` for a BenchTiming: "graph" or "" (each call alone, the default).
[[nodiscard]] std::string timing_name(const BenchTiming& t);

/// Median, min and max of per-repetition times (seconds). InputError if `samples` is empty
/// or holds a value that is not finite and positive.
struct TimingStats {
  double median_s = 0, min_s = 0, max_s = 0;
  std::int64_t reps = 0;
};
[[nodiscard]] TimingStats timing_stats(std::span<const double> samples);
/// A record of `op` with the timings of `t` (median, min, max, reps); the caller adds FLOPs and bytes.
[[nodiscard]] MeasurementRecord timed_record(MeasuredOp op, const TimingStats& t);

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
  std::optional<double> mean_sm_clock_mhz;  ///< mean of the samples' SM clocks
  std::uint64_t clock_events = 0;    ///< NVML clock-event reasons seen in any sample (clock_event_names)
};
/// A GEMM record carrying power: time per call = seconds / calls, energy_j per call, power_w mean.
[[nodiscard]] MeasurementRecord power_record(const GemmCase& c, const PowerSample& p);
/// The idle record: the device with nothing launched for `p.seconds` (kind "idle").
[[nodiscard]] MeasurementRecord idle_record(const PowerSample& p);

/// The device of `racksim bench --device`: "cuda:N" -> N. InputError (exit 2) naming the
/// option, the value and the allowed form for anything else ("cpu", "cuda:x", "cuda:-1"); with
/// `device_count` > 0 also when N >= device_count (the allowed range is listed). device_count 0
/// (no CUDA build, driver or device) skips the range check: the bench then fails with "no CUDA
/// device" (exit 3).
[[nodiscard]] int parse_cuda_device(std::string_view value, int device_count);

/// Calls `done` with each record as it is measured: progress lines, and the stop check between
/// points (SweepRecorder).
using RecordSink = std::function<void(const MeasurementRecord&)>;

// ---- stopping a sweep between points (SIGINT / SIGTERM) -----------------------------------

/// The signal that asked the running sweep to stop (SIGINT, SIGTERM), 0 if none: a
/// std::sig_atomic_t set by the handler, read between points. Under a StopAgreement, the value
/// every rank agreed on instead.
[[nodiscard]] int stop_requested() noexcept;
/// The signal this process received (the handler's flag), whatever a StopAgreement says.
[[nodiscard]] int signal_received() noexcept;
/// Sets the flag as the handler does (tests).
void request_stop(int signal) noexcept;
/// Clears the flag.
void clear_stop() noexcept;

/// While alive, stop_requested() reports the stop the ranks of a multi-process sweep agreed on
/// (set_agreed_stop, after each point's MPI_Allreduce of signal_received()), not this process's
/// own flag: a signal landing on one rank between the agreement and the check cannot make that
/// rank stop alone and leave the others waiting in the next collective. Nests.
class StopAgreement {
 public:
  StopAgreement() noexcept;
  ~StopAgreement();
  StopAgreement(const StopAgreement&) = delete;
  StopAgreement& operator=(const StopAgreement&) = delete;
};
/// The agreed stop (the largest signal any rank received; 0 = go on).
void set_agreed_stop(int signal) noexcept;

/// While alive, SIGINT and SIGTERM set the stop flag (and say so on stderr) instead of ending
/// the process; a second signal ends it at once (SA_RESETHAND). The previous handlers come back
/// when it goes. One at a time (the previous handlers are kept in bench.cpp).
class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
};

/// Thrown out of a bench by SweepRecorder when a stop was requested; SweepRecorder::run catches it.
class SweepStopped : public std::exception {
 public:
  [[nodiscard]] const char* what() const noexcept override { return "sweep stopped by a signal"; }
};

/// Exit code of a run stopped by `signal`: 128 + signal (SIGINT 130, SIGTERM 143), the shell's
/// convention; 0 for 0.
[[nodiscard]] int stopped_exit_code(int signal) noexcept;

/// One progress line: "[12/96] gemm m=64 n=10240 k=8192 a=bf16 w=bf16 c=bf16, 3.2 s elapsed".
[[nodiscard]] std::string progress_line(std::size_t done, std::size_t total, std::string_view what, double elapsed_s);

/// The records of a bench run as they are measured. Each point is kept, its result line printed
/// to `log` (if any), then a progress line to `progress` (overwritten in place with \r when
/// `progress_tty`, one line per point otherwise); then, if a stop was requested, SweepStopped
/// is thrown, so the sweep ends after the point that was running and every finished point stays.
class SweepRecorder {
 public:
  struct Output {
    std::FILE* log = nullptr;       ///< result lines (stdout, or stderr when the file goes to stdout)
    std::FILE* progress = nullptr;  ///< progress lines (stderr); nullptr: none
    bool progress_tty = false;
    std::function<std::string(const MeasurementRecord&)> describe;  ///< result line; identity() when empty
  };
  SweepRecorder(std::size_t total_points, Output out);

  /// Keeps `r`, prints, and throws SweepStopped when stop_requested().
  void add(const MeasurementRecord& r);
  /// add() as a RecordSink for the benches.
  [[nodiscard]] RecordSink sink();
  /// Runs `body` (a bench, given sink()); returns the signal that stopped it, 0 when it ran to
  /// its end. A stop requested before the body starts skips it. Other exceptions pass through.
  int run(const std::function<void(const RecordSink&)>& body);
  /// Points that will not run after all (a suite skipped): lowers the progress total.
  void drop_planned(std::size_t points) noexcept;
  /// Ends a TTY progress line, so what is printed next starts on a clean line.
  void finish();

  [[nodiscard]] const std::vector<MeasurementRecord>& records() const noexcept { return records_; }
  [[nodiscard]] std::size_t planned() const noexcept { return total_; }
  [[nodiscard]] double elapsed_s() const;

 private:
  std::size_t total_;
  Output out_;
  std::vector<MeasurementRecord> records_;
  std::chrono::steady_clock::time_point t0_;
  bool line_open_ = false;
};

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
