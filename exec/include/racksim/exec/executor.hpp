#pragma once
/// `racksim exec`: runs real steps of a scenario's model on a backend, times every op of the step
/// graph the simulator costs, and runs an offline serving loop with the simulator's batching
/// rules. The scenario is resolved by the caller (apps/cmd_exec.cpp): exec depends on the model
/// graph, not on the simulator.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "racksim/common/measurement.hpp"
#include "racksim/exec/fp4_gemm_path.hpp"
#include "racksim/exec/step_backend.hpp"
#include "racksim/workloads/model.hpp"
#include "racksim/workloads/step_graph.hpp"

namespace racksim::exec {

/// One step shape to time: `batch` whole prompts of `tokens` each (prefill), or `batch`
/// sequences decoding one token after `context` cached tokens (decode).
struct ExecShape {
  enum class Kind { prefill, decode };
  Kind kind = Kind::decode;
  std::int64_t batch = 1;
  std::int64_t tokens = 0;   ///< prefill: prompt length
  std::int64_t context = 0;  ///< decode: cached tokens per sequence

  /// "prefill 2x128" / "decode 8x512".
  [[nodiscard]] std::string label() const;
  /// Parses "prefill:L", "prefill:BxL" or "decode:BxC"; InputError naming `option` otherwise.
  [[nodiscard]] static ExecShape parse(const std::string& text, const std::string& option);
};

/// The serving settings the loop obeys (the scenario's serving section).
struct ExecServing {
  std::int64_t max_batch_size = 0;  ///< sequences in flight
  std::int64_t max_num_tokens = 0;  ///< tokens per iteration (decodes + prefill chunks)
  bool chunked_prefill = true;
  std::int64_t kv_block_tokens = 32;  ///< the CUDA executor's paged-cache block
};

/// What to run and how.
struct ExecOptions {
  std::string device = "cpu";          ///< "cpu" (the CPU reference) or "cuda:N" (the CUDA step executor)
  std::vector<ExecShape> shapes;       ///< steps to time
  int warmup = 1;                      ///< untimed runs of each shape
  int reps = 3;                        ///< timed runs of each shape
  int layers = 0;                      ///< layers to run; 0 = as many as `memory_budget_bytes` holds
  double memory_budget_bytes = 8.0 * (1ull << 30);  ///< host memory the weights may take (cpu; cuda sizes by free device memory)
  ExecServing serving;
  std::vector<std::uint32_t> serve_input;   ///< offline loop: prompt lengths (empty = no loop)
  std::vector<std::uint32_t> serve_output;  ///< offline loop: output lengths
  /// > 0: the loop is a closed loop of this many clients (workload.scenario concurrency): the
  /// first `serve_concurrency` requests wait at the start, and each finish releases the next
  /// request, which the next iteration may admit (the simulator's rule). 0: offline.
  std::int64_t serve_concurrency = 0;
  /// Timed arrivals (workload.scenario server, interactive or trace; serve_concurrency 0): request
  /// i arrives serve_arrival_s[i] seconds after the loop starts (sorted; the first at 0). An
  /// iteration admits the requests that have arrived by its start; an idle loop waits for the next
  /// arrival. Empty: offline (every request waiting at the start).
  std::vector<double> serve_arrival_s;
  /// Tests: the serving loop's clock (seconds since an arbitrary origin) and its wait until a time
  /// on that clock (a fake clock makes the loop's schedule exact): both or neither. Null: the steady clock and a sleep.
  std::function<double()> serve_clock;
  std::function<void(double)> serve_wait_until;
  /// With rank_comm and timed arrivals: how many requests every rank admits as arrived, given
  /// this rank's count (the fewest over the ranks: their iterations must hold the same requests,
  /// and each rank reads its own clock). Called on every rank at each iteration's start. Null: this
  /// process's count.
  std::function<int(int)> agree_arrived;
  std::uint64_t seed = 1;
  Fp4GemmMode fp4_gemm = Fp4GemmMode::automatic;  ///< cuda: native Blackwell FP4 GEMMs or the Hopper kernels
  int tensor_parallel = 1;             ///< ranks (tensor_parallel.hpp): cpu, threads; cuda:N, GPUs N..N+tp-1 of this process
  /// One process per GPU (mpirun / srun): this process's rank; it runs `device` alone and
  /// tensor_parallel must equal the communicator's size. Null: the ranks are in this process.
  DeviceTpComm* rank_comm = nullptr;
  /// With rank_comm: the layer count every rank runs, given this rank's fit (the fewest over the
  /// ranks, so that all run the same collectives). Null: this process's fit.
  std::function<int(int)> agree_layers;
  /// With rank_comm: whether every rank can replay its last decode step as a CUDA graph, given
  /// whether this rank can (all or none replay: a rank replaying alone would wait in its captured
  /// all-reduces). Called once per decode shape on every rank. Null: this process decides.
  std::function<bool(bool)> agree_replay;
  /// Seconds of each step back to back in its power window (StepPower: energy per step and mean
  /// power through NVML, "loops of at least a second"): a decode step's graph replays, or eager
  /// runs of a step without one (a prefill); 0 = none.
  double power_seconds = 1.0;
  /// With rank_comm: the replays every rank's power window runs, given this rank's count (the
  /// fewest over the ranks: their captured collectives must meet). Null: this process's count.
  std::function<int(int)> agree_power_steps;
  /// With rank_comm: the group's power window from this rank's (power_over_ranks: every rank's
  /// GPU summed; none when a rank has none). Called on every rank after each window. Null: this
  /// process's GPUs only.
  std::function<std::optional<StepPower>(const std::optional<StepPower>&)> combine_power;
  /// Tests: wraps the backend run_exec built (a decorator that adds graph replays or a power
  /// meter to the CPU reference, to drive the GPU-only paths of the step loop). Null: as built.
  std::function<std::unique_ptr<StepBackend>(std::unique_ptr<StepBackend>)> wrap_backend;
  std::string command_line;            ///< recorded as the measurement file's `source`
};

/// One timed shape: step wall time over the reps.
struct StepTiming {
  ExecShape shape;
  std::int64_t tokens = 0;           ///< tokens through the GEMMs per step
  double median_s = 0, min_s = 0, max_s = 0;
  int reps = 0;
  double graph_median_s = 0;         ///< decode on CUDA: the step replayed as one CUDA graph (0 = not run)
  int graph_reps = 0;                ///< replays graph_median_s is the median of (at most reps: a replay that fails ends them)
  StepWork work;  ///< one GPU's FLOPs and HBM bytes per step (step_work of the step's graph)
  /// Decode on CUDA with power_seconds > 0: the step's power window (StepPower; steps == 0:
  /// none, power_note says why).
  StepPower power;
  std::string power_note;
  std::string power_timing;  ///< "graph" (replays of the captured step) or "eager" (runs as the timed reps), "" = no window
  /// The timed reps' op times summed per op kind ("gemm", "attention_decode", ...), divided by
  /// the reps: each kind's mean seconds per step, most first (ties by name). Their sum is the
  /// step's op time; what the step's wall time holds beyond it is the host's work between ops.
  std::vector<std::pair<std::string, double>> op_time_by_kind;
  [[nodiscard]] double op_time_s() const;
  /// The step's time as the simulator's ops run, back to back: the graph replay's median where
  /// the step was captured, else the eager reps' median; measured_timing() names which.
  [[nodiscard]] bool replayed() const { return graph_median_s > 0; }
  [[nodiscard]] double measured_s() const { return replayed() ? graph_median_s : median_s; }
  [[nodiscard]] const char* measured_timing() const { return replayed() ? "graph" : "eager"; }
  /// Prefill: prompt tokens / median; decode: sequences (one new token each) / median.
  [[nodiscard]] double tokens_per_s() const { return static_cast<double>(tokens) / median_s; }
};

/// Mean and loadgen percentiles (sorted[floor(n p)], as the simulator reports them) of per-request
/// latencies, in seconds.
struct ServeLatency {
  double mean_s = 0, p50_s = 0, p90_s = 0, p99_s = 0;
  std::int64_t count = 0;
  [[nodiscard]] static ServeLatency of(std::vector<double> v);
};

/// The serving loop's outcome.
/// One iteration of the serving loop, seconds from the loop's start.
struct ServeIteration {
  double start_s = 0, end_s = 0;
  std::int64_t decode = 0;          ///< decoding sequences
  std::int64_t prefill_tokens = 0;  ///< prompt tokens (chunks)
};

struct ServeResult {
  std::int64_t concurrency = 0;      ///< closed-loop clients (0: offline or timed)
  bool timed = false;                ///< requests arrived at ExecOptions::serve_arrival_s
  double idle_s = 0;                 ///< timed: seconds the loop waited with nothing to run
  std::int64_t requests = 0;
  std::int64_t input_tokens = 0;
  std::int64_t output_tokens = 0;
  std::int64_t iterations = 0;
  std::int64_t max_in_flight = 0;    ///< most sequences in one iteration
  double wall_s = 0;
  std::vector<std::vector<std::int32_t>> outputs;  ///< per request (in request order), the tokens generated
  /// Per request, in request order: when it arrived (offline: 0; closed loop: when a client's
  /// previous request finished; timed: its arrival time), its first token and its last, in seconds
  /// from the loop's start.
  std::vector<double> arrival_s, first_token_s, finish_s;
  std::vector<ServeIteration> iteration_log;  ///< every iteration, in order (racksim exec --trace)
  ServeLatency ttft;                 ///< first token - arrival
  ServeLatency tpot;                 ///< (finish - first token) / (output - 1), requests of 2+ output tokens
  ServeLatency e2e;                  ///< finish - arrival
  /// The GPUs' energy and mean power over the whole loop (a power meter open from its first
  /// iteration to its last; `steps` = iterations), summed over a tensor-parallel group or an MPI
  /// run's ranks. None on the CPU reference, without NVML, or when the loop ran under a second, too
  /// short for the energy counter (power_note says which, "" on the CPU reference).
  std::optional<StepPower> power;
  std::string power_note;
  [[nodiscard]] double output_tokens_per_s() const { return static_cast<double>(output_tokens) / wall_s; }
};

/// Everything a run produced.
struct ExecReport {
  std::string device;                ///< what ran it, in words
  ModelConfig model;                 ///< the model as run (layers possibly reduced)
  int layers_total = 0;              ///< the scenario model's layers
  Precision precision;               ///< the scenario's formats (the graph's op identities)
  std::vector<std::string> notes;    ///< what differs from the scenario, each stated
  std::vector<StepTiming> steps;
  bool served = false;
  ServeResult serve;
  MeasurementFile measurements;      ///< per op identity, over every layer and rep
};

/// The host bytes of the CPU reference's weights (stored + the dequantized FP32 copy it keeps):
/// `fixed` (embedding and lm_head) plus `per_layer` for each layer it runs.
struct CpuWeightBytes {
  double fixed = 0;
  double per_layer = 0;
};
[[nodiscard]] CpuWeightBytes cpu_reference_weight_bytes(const ModelConfig& model, DType weights);

/// Layers of `model` whose weights (cpu_reference_weight_bytes) fit in `budget_bytes`, at least 1
/// and at most model.layers. (`racksim exec --device cpu` refuses, without --layers, a model of
/// which not even one layer fits.)
[[nodiscard]] int layers_within(const ModelConfig& model, DType weights, double budget_bytes);

/// What the CUDA step executor's buffers must hold for the shapes and the loop of `options`:
/// KV tokens (the largest shape's, or the loop's: every request whole, at most max_batch_size of
/// the longest at once; plus two blocks per sampled sequence for partly filled last blocks),
/// rows (largest step, a decode shape's cache fill in max_num_tokens chunks, the loop's budget),
/// sampled rows, and reference weights for models of at most 64 M linear parameters.
[[nodiscard]] CudaStepOptions cuda_step_options(const ModelConfig& model, const ExecOptions& options, int device);

/// Runs in a step's power window: enough back-to-back runs of `step_s` each (graph replays, or
/// eager runs of a step without a graph) to fill `seconds`, at least 1 and at most 1,000,000 (a
/// step time of 0 or below asks the most).
[[nodiscard]] int power_window_steps(double seconds, double step_s);

/// Runs `options` for `model` at `precision` (weights nvfp4, mxfp4 or bf16 on the CPU).
/// InputError for an unsupported device or format; the report states every substitution.
[[nodiscard]] ExecReport run_exec(const ModelConfig& model, const Precision& precision, const ExecOptions& options);

}  // namespace racksim::exec
