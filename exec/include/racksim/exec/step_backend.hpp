#pragma once
/// A backend that executes step graphs with its own KV caches: the CPU reference, or the CUDA
/// step executor (exec/cuda/step_executor.cu, compiled only with RACKSIM_CUDA). `racksim exec`
/// drives either through this interface.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "racksim/exec/cpu_reference.hpp"
#include "racksim/exec/fp4_gemm_path.hpp"
#include "racksim/exec/tensor_parallel.hpp"
#include "racksim/workloads/step_graph.hpp"

namespace racksim::exec {

/// Called once per op of a step with the op and its time in seconds.
using OpObserver = std::function<void(const Op&, double)>;

/// A power window of a step (StepBackend::power_last_step): its captured CUDA graph replayed
/// `steps` times back to back, the GPUs' NVML total-energy counters read at both ends and their
/// power sampled every 10 ms in between (the power bench's method, exec/cuda/nvml_power.hpp).
struct StepPower {
  std::int64_t steps = 0;  ///< replays in the window
  double seconds = 0;      ///< the window, the device's events around the replays
  double energy_j = 0;     ///< energy-counter differences, summed over the GPUs
  double power_w = 0;      ///< mean power, summed over the GPUs: each GPU's energy over the window (NVML's power readings trail by a second)
  int gpus = 0;            ///< GPUs summed
  double sm_clock_mhz = 0; ///< mean SM clock of the samples, over the GPUs (0: none sampled)
  std::uint64_t clock_events = 0;  ///< NVML clock-event reasons any GPU reported in any sample (clock_event_names)
  [[nodiscard]] double energy_per_step_j() const { return steps > 0 ? energy_j / static_cast<double>(steps) : 0.0; }
  /// Adds another GPU group's window to this one: energy, power and GPUs summed, the longest
  /// window, the SM clock averaged over all the GPUs, the clock events of either.
  void add_gpus(const StepPower& o) {
    const int all = gpus + o.gpus;
    sm_clock_mhz = all > 0 ? (sm_clock_mhz * gpus + o.sm_clock_mhz * o.gpus) / all : 0.0;
    seconds = seconds > o.seconds ? seconds : o.seconds;
    energy_j += o.energy_j;
    power_w += o.power_w;
    gpus = all;
    clock_events |= o.clock_events;
  }
};

/// The GPUs' energy and mean power over a stretch of host-driven work (StepBackend::power_meter):
/// the window opens when the meter is made (the energy counter read, the sampler started) and
/// closes at stop(), after the GPUs finished what was queued.
class PowerMeter {
 public:
  virtual ~PowerMeter() = default;
  /// The window: `seconds` (host clock), energy and mean power summed over the meter's GPUs,
  /// `gpus`; `steps` left 0 for the caller. nullopt with `why` ("power unavailable: ...").
  virtual std::optional<StepPower> stop(std::string* why) = 0;
};

class StepBackend {
 public:
  virtual ~StepBackend() = default;
  /// Runs one step (CpuReference::run's contract); the observer gets every op's time.
  virtual StepOutput run(const StepGraph& graph, const StepTokens& tokens, const OpObserver& observer) = 0;
  [[nodiscard]] virtual std::int64_t cached_tokens(std::int64_t sequence) const = 0;
  virtual void release(std::int64_t sequence) = 0;
  /// Keeps the first `tokens` cached tokens (the cache's storage stays reserved, so a step run
  /// again at the same context writes the same slots).
  virtual void truncate(std::int64_t sequence, std::int64_t tokens) = 0;
  /// Runs the last step run() ran again, as one captured CUDA graph, after the caller restored the
  /// caches it started from: its time in seconds; nullopt where graphs are not supported.
  virtual std::optional<double> replay_last_step() { return std::nullopt; }
  /// Whether replay_last_step() would replay (not return nullopt): a tensor-parallel group replays
  /// only when every rank can, since a rank's captured collectives wait for the others'.
  [[nodiscard]] virtual bool can_replay_last_step() const { return false; }
  /// After replay_last_step() replayed: that graph `steps` times back to back in one power
  /// window (StepPower). nullopt where there is no graph or no power counter, `why` then saying
  /// which ("power unavailable: ..."); a tensor-parallel group needs every rank's.
  virtual std::optional<StepPower> power_last_step(std::int64_t steps, std::string* why) {
    (void)steps;
    if (why) *why = "power unavailable: no CUDA graph on this backend";
    return std::nullopt;
  }
  /// Whether power_meter() gives a meter (a GPU backend; a tensor-parallel group: every rank's).
  [[nodiscard]] virtual bool measures_power() const { return false; }
  /// A meter over this backend's GPUs, opened now; null where measures_power() is false. For steps
  /// run eagerly (a prefill, a decode step that cannot be captured), which have no graph to replay.
  [[nodiscard]] virtual std::unique_ptr<PowerMeter> power_meter() { return nullptr; }
  /// What runs it, in words ("NVIDIA H100 80GB HBM3 (cuda:0, sm_90)").
  [[nodiscard]] virtual std::string describe() const = 0;
  /// Which kernels run the FP4 linear layers and why (fp4_gemm_path.hpp), "" where there is no choice.
  [[nodiscard]] virtual std::string linear_path() const { return ""; }
  /// The per-shape kernel variants this backend's tuner chose, without their times
  /// (RACKSIM_FP4_MMA_TUNE=on; exec/cuda/step_executor.cu), "" where none: what tensor-parallel
  /// ranks compare to say whether their picks differ.
  [[nodiscard]] virtual std::string tuned_picks() const { return ""; }
  /// The GEMMs that ran padded so far (padded_native_gemm_note, fp4_gemm_path.hpp), "" if none:
  /// stated after a run, since a serving loop meets new row counts as it goes.
  [[nodiscard]] virtual std::string linear_padding_note() const { return ""; }
};

/// Tensor-parallel ranks as threads of this process, each rank a backend of its own: every step
/// runs on all ranks at once, rank 0's op times and outputs are the step's, and a decode step is
/// replayed only when every rank can replay (all or none). What `racksim exec` builds over the CPU
/// reference's ranks and the CUDA executor's GPUs (there with the communicators the ranks meet in,
/// aborted when a rank fails); this one owns none, for ranks that own theirs, and for tests.
[[nodiscard]] std::unique_ptr<StepBackend> tp_rank_threads(std::vector<std::unique_ptr<StepBackend>> ranks, std::string describe);

/// What the CUDA step executor is built for.
struct CudaStepOptions {
  int device = 0;
  std::int64_t max_rows = 0;       ///< most tokens through one step (activation buffers)
  std::int64_t max_sampled = 0;    ///< most sampled sequences in one step (logits buffer)
  std::int64_t kv_tokens = 0;      ///< KV-cache capacity over all sequences (paged pool)
  std::int64_t block_tokens = 32;  ///< tokens per KV block
  std::uint64_t seed = 1;
  /// true: the CPU reference's weights (generate_weights(model, nvfp4, seed)) uploaded, so the
  /// two backends compute the same model; false: random codes generated on the device (large
  /// models, where only speed matters).
  bool reference_weights = true;
  bool keep_logits = false;        ///< copy every step's logits back (StepOutput::logits)
  Fp4GemmMode fp4_gemm = Fp4GemmMode::automatic;  ///< native Blackwell FP4 GEMMs or the Hopper kernels
  /// Tensor parallelism (tensor_parallel.hpp): this rank's communicator (null: one GPU), which
  /// must outlive the executor; tp_size is its size (the footprint reads it without one).
  DeviceTpComm* tp = nullptr;
  int tp_size = 1;
};

/// The CUDA step executor on `options.device`: NVFP4 weights (fp4_gemm_path.hpp: Hopper, the
/// small-M FP4 kernel for M <= 16 and dequantize + cuBLASLt BF16 above; Blackwell, activations
/// quantized to NVFP4 and cuBLASLt's block-scaled FP4 GEMM), BF16 activations between ops, a
/// paged BF16 or FP8 KV cache, FP32 logits. Dense Llama models only.
/// Error (exit 3) without CUDA or a device; InputError for what it does not run.
[[nodiscard]] std::unique_ptr<StepBackend> make_cuda_step_backend(const ModelConfig& model, const Precision& precision,
                                                                  const CudaStepOptions& options);

/// Device bytes the CUDA step executor needs for `model` with these options, split as the
/// layers (per layer) and everything else; what `racksim exec` sizes layers by.
struct CudaStepFootprint {
  double per_layer = 0;   ///< packed weights and norms, plus the layer's KV cache
  double fixed = 0;       ///< embedding, lm_head, activations, dequant scratch or FP4 activations, workspaces
};
/// The most SMs the footprint's decode-attention bound allows for (B300 and GB300 160, B200 148, H100 132:
/// datasheets in hwmodels/data/gpus); only the few-MB split-K scratch depends on it.
inline constexpr double kFootprintMaxSms = 256;
[[nodiscard]] CudaStepFootprint cuda_step_footprint(const ModelConfig& model, const Precision& precision, const CudaStepOptions& options);

/// Free and total bytes of CUDA device `device`; Error without CUDA or a device.
struct DeviceMemoryInfo {
  double free = 0;
  double total = 0;
};
[[nodiscard]] DeviceMemoryInfo cuda_device_memory(int device);

}  // namespace racksim::exec
