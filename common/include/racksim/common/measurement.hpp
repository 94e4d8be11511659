#pragma once
/// Measurement files: what the executor's benchmarks write and calibration reads (JSON, strict).
/// One file holds one run on one device: a header (device, software, clocks, provenance) and
/// records keyed by op identity (kind, shape, dtypes; collectives: op, ranks, bytes).
/// Format and keys: docs/calibration.md.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace racksim {

/// Schema tag written into and required from every file.
inline constexpr std::string_view kMeasurementSchema = "racksim-measurements/1";

/// Where and how a run was measured: enough to reproduce it and to judge a factor fitted on it.
struct MeasurementRun {
  std::string device;        ///< device name as the driver reports it ("NVIDIA H100 80GB HBM3")
  std::string gpu;           ///< catalog GPU id ("h100-sxm"), or "" if the device is not in the catalog
  std::string system;        ///< system or host description ("h100_sxm", "dgx-h100"), free text
  std::string driver;        ///< driver version, "" if unknown
  std::string cuda;          ///< CUDA runtime version, "" if unknown
  std::string nccl;          ///< NCCL version (racksim's CUDA runs: the library linked in), "" if unknown
  std::string software;      ///< kernel library and version ("TensorRT-LLM 1.3.0rc20 torch_flow")
  std::optional<double> sm_clock_mhz;       ///< SM clock during the run
  std::optional<double> memory_clock_mhz;   ///< memory clock during the run
  std::optional<double> power_limit_w;      ///< enforced power limit
  std::optional<double> temperature_c;      ///< GPU temperature (NVML's GPU sensor, degrees C) when the run block was read
  std::string date;          ///< when measured (ISO 8601), "" if unknown
  std::string commit;        ///< racksim (or source data) commit the run came from
  std::string source;        ///< where the numbers come from: a bench command line or a data set path
  /// How the records' times were taken: "" or "call" = each call alone between its own events
  /// (racksim bench's default, and every source that does not say); "graph" = calls back to back
  /// in a replayed CUDA graph, a sample = replay time / calls (`racksim bench --timing graph`).
  std::string timing;
};

/// What one record measured; the fields that do not apply to its kind stay 0 / "".
struct MeasuredOp {
  std::string kind;          ///< one of measurement_kinds(): "gemm", "all_reduce", ..., "step"
  std::int64_t m = 0;        ///< GEMM / elementwise shape
  std::int64_t n = 0;
  std::int64_t k = 0;
  std::string a_dtype;       ///< GEMM A operand = compute format (a DType name)
  std::string w_dtype;       ///< GEMM B operand (weights)
  std::string c_dtype;       ///< GEMM output
  std::string dtype;         ///< collectives and memory ops: element type ("fp16", "bf16", "int8", ...)
  int ranks = 0;             ///< collectives: GPUs in the group
  double bytes = 0;          ///< collectives: nccl-tests "size" (buffer per rank); memory ops: bytes moved
  std::string algorithm;     ///< collectives: algorithm/protocol if forced ("ring", "nvls"), "" = library's choice
  std::string variant;       ///< memcpy: "copy" or "read"; launch: "kernel" or "graph_node"; "" = not said
  /// Attention (attention_prefill, attention_decode): m = query tokens, n = query heads,
  /// k = head_dim, a_dtype = query format, w_dtype = KV-cache format (Op::identity's spelling),
  /// and the two sums the cost depends on: sequences and the sum over query tokens of keys attended.
  std::int64_t sequences = 0;
  double pairs = 0;
  /// A whole step of `racksim exec` (kind "step"): model = the catalog model id (or the model
  /// file's id), variant = "decode" or "prefill", sequences,
  /// m = tokens through the GEMMs, n = decode: cached tokens per sequence / prefill: prompt
  /// length, k = layers run, ranks = GPUs (tensor parallel), a_dtype = activations, w_dtype =
  /// weights, dtype = KV cache; flops and bytes_moved are one GPU's per step (the graph's ops,
  /// collectives left out), energy_j and power_w the step's over all its GPUs.
  std::string model;

  /// One-line identity used to join measurements to predictions and to sort records.
  [[nodiscard]] std::string identity() const;
};

/// One measured op: timings over `reps` repetitions, and what it moved and computed.
struct MeasurementRecord {
  MeasuredOp op;
  double time_median_s = 0;
  std::optional<double> time_min_s;
  std::optional<double> time_max_s;
  std::int64_t reps = 0;               ///< timed repetitions; 0 if the source does not say
  std::optional<double> flops;         ///< FLOPs of one call
  std::optional<double> bytes_moved;   ///< HBM bytes of one call as the benchmark counts them
  std::optional<double> energy_j;      ///< energy of one call (NVML counter difference / reps)
  std::optional<double> power_w;       ///< average board power while timing
  std::optional<double> sm_clock_mhz;  ///< mean SM clock over the record's power window (NVML samples)
  /// NVML clock-event ("throttle") reasons seen in that window, by clock_event_names; empty where
  /// none was seen or the source does not say.
  std::vector<std::string> clock_events;
  /// Step records only: "graph" (the time is the captured step's replays) or "eager" (the timed
  /// reps as run op by op); "" for every other kind.
  std::string timing;
};

/// The NVML clock-event (throttle) reasons a mask holds, by name, in bit order (nvml.h's
/// nvmlClocksEventReason*: 0x1 gpu_idle, 0x2 applications_clocks, 0x4 sw_power_cap,
/// 0x8 hw_slowdown, 0x10 sync_boost, 0x20 sw_thermal, 0x40 hw_thermal, 0x80 hw_power_brake,
/// 0x100 display_clocks); a bit NVML may add later as "bit_N".
[[nodiscard]] std::vector<std::string> clock_event_names(std::uint64_t mask);
/// The names clock_event_names gives for the nine known bits (what a file's clock_events may hold,
/// besides "bit_N" for N in 9..63).
[[nodiscard]] std::span<const std::string_view> clock_event_kinds() noexcept;

/// A whole measurement file.
struct MeasurementFile {
  MeasurementRun run;
  std::vector<MeasurementRecord> records;
  std::string path;  ///< file it was read from (not written)
};

/// Kinds a record may have: racksim's op kinds plus "reduce_scatter", "memcpy", "launch",
/// "idle" (the device with nothing running: a power record) and "step" (a whole step of
/// `racksim exec`: its time, and its energy and power where a power window ran).
[[nodiscard]] std::span<const std::string_view> measurement_kinds() noexcept;
/// True for the collective kinds (all_reduce, all_gather, reduce_scatter, all_to_all, send_recv).
[[nodiscard]] bool is_collective_kind(std::string_view kind) noexcept;

/// Parses a measurement file's text; InputError naming `name`, the key path and the value on
/// a missing, unknown or malformed key.
[[nodiscard]] MeasurementFile parse_measurements(std::string_view text, const std::string& name);
/// Reads a measurement file from disk.
[[nodiscard]] MeasurementFile read_measurements(const std::string& path);
/// The file's JSON text (2-space indent, records in the given order); parse_measurements reads it back.
[[nodiscard]] std::string format_measurements(const MeasurementFile& file);
/// Writes the file atomically (write_output).
void write_measurements(const std::string& path, const MeasurementFile& file);

}  // namespace racksim
