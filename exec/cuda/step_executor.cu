// The CUDA step executor: runs a StepGraph of a Llama-family model (dense or Mixtral-style MoE,
// Qwen3's QK-norm) on one GPU (one tensor-parallel rank), op by op in the graph's topological
// order (the order the simulator costs), every op between two CUDA events.
//   embedding, RMSNorm, RoPE, SwiGLU, residual add, KV append, paged decode and prefill attention,
//   argmax: the step ops of cuda_ops.hpp (ops_elementwise.cu, attention.cu);
//   linear layers (NVFP4 weights, BF16 activations): M <= 128 the fused FP4-weight tensor-core
//   kernel (E2M1 dequantized in registers to FP16, mma.sync; fp4_gemm_mma.cu; K % 32 == 0, else
//   at M = 1 the CUDA-core small-M kernel, fp4_gemm_small_m.cu); larger M the weight dequantized
//   into a scratch buffer, then cuBLASLt (executor.md: "dequantize-then-cuBLASLt for large M"):
//   BF16, or under RACKSIM_FP4_LARGE_M=fp8 E4M3 weights and E4M3 activations (fp4_large_m.cuh);
//   On Blackwell (sm_100 / sm_103, cuBLASLt >= 12.8; fp4_gemm_path.hpp decides, with the reason)
//   every linear instead quantizes its BF16 input to NVFP4 (lt_plan.cu, scales written in
//   cuBLASLt's swizzled layout) and runs cuBLASLt's block-scaled FP4 x FP4 GEMM, the weights'
//   scales stored in that layout too; `--fp4-gemm hopper` keeps the Hopper kernels there. An M
//   without a native cuBLASLt plan runs padded to the next row count with one (NativeGemmRows),
//   stated in the output.
//   lm_head: the sampled rows gathered (the embedding kernel on row ids), cuBLASLt BF16 -> FP32.
//   MoE blocks (under TP each expert split as a dense MLP, the router whole): the router on
//   cuBLASLt BF16 -> FP32, top-k and the expert-order permute on the device (ops_moe.cu), then
//   the expert GEMMs: at <= 64 rows on the Hopper path one grouped launch of the fused kernel
//   reading the permute's offsets on the device (capturable); otherwise the offsets read back to
//   the host and each expert's rows run as one GEMM of its own M through the linear paths above;
//   then the finalize.
// The host side of a step (rows, slots, tables) is exec/step_plan.hpp, tested on the CPU.

#include "step_executor.hpp"

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "device_buffer.cuh"
#include "fp4_gemm_mma.hpp"
#include "fp4_large_m.cuh"
#include "fp4_gemm_small_m.hpp"
#include "lt_plan.cuh"
#include "nvml_power.hpp"
#include "random_fill.cuh"
#include "racksim/exec/activation_formats.hpp"
#include "racksim/exec/cuda_ops.hpp"
#include "racksim/exec/fp4.hpp"
#include "racksim/exec/fp4_gemm_path.hpp"
#include "racksim/exec/fp4_matrix.hpp"
#include "racksim/exec/step_plan.hpp"
#include "racksim/exec/tensor_parallel.hpp"

namespace racksim::exec::cuda {

namespace {

using I = std::int64_t;

std::size_t z(I v) { return static_cast<std::size_t>(v); }

// ---- random weights on the device (large models: only speed matters) -----------------------

/// UE4M3 codes 0x30..0x3F: exponent field 6..7 (bias 7), any mantissa: 0.5 .. 1.875, so the random
/// weights' block scales stay near 1 and the tensor scale sets their size.
constexpr unsigned kScaleCodeLo = 0x30, kScaleCodeSpan = 16;

// ---- device state ---------------------------------------------------------------------------

/// An NVFP4 linear weight [out x in]: codes, UE4M3 scales (row-major for the small-M and
/// dequantize kernels; cuBLASLt's swizzled layout on the native path) and the FP32 tensor scale.
struct Linear {
  DeviceBytes packed, scales;  // row-major, cuBLASLt's (native), or the fused kernel's tiled layout (`tiled`)
  float tensor_scale = 1.0f;
  I out = 0, in = 0;
  bool tiled = false;
};

struct Layer {
  DeviceBytes input_norm, post_attn_norm;  // BF16 [hidden]
  DeviceBytes q_norm, k_norm;              // QK-norm, BF16: Qwen3 [head_dim]; MiniMax-M2 this rank's [q heads x head_dim], [kv heads x head_dim]
  Linear qkv, o, gate_up, down;            // MoE: gate_up and down empty
  DeviceBytes router;                      // MoE: BF16 [experts x hidden]
  DeviceBytes router_bias;                 // MiniMax-M2's routing bias: FP32 [experts]; else empty
  std::vector<Linear> expert_gate_up, expert_down;
  DeviceBytes gate_up_table, down_table;   // MoE on the Hopper path: Fp4MmaExpert per expert (grouped launches)
  DeviceBytes k, v;                        // paged caches of this layer
};

template <class T>
void upload(DeviceBytes& d, const std::vector<T>& host) {
  d = DeviceBytes(host.size() * sizeof(T));
  if (!host.empty()) RACKSIM_CUDA_CHECK(cudaMemcpy(d.as(), host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
}

std::vector<std::uint16_t> bf16_of(const std::vector<float>& v) {
  std::vector<std::uint16_t> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = act::bf16_bits(v[i]);
  return out;
}

/// Grow-only device array (its address changes only when it grows).
template <class T>
T* ensure(DeviceBytes& d, std::size_t count) {
  if (d.size() < count * sizeof(T)) d = DeviceBytes(std::max<std::size_t>(count * sizeof(T), 256));
  return d.as<T>();
}

template <class T>
void copy_in(DeviceBytes& d, const std::vector<T>& host, cudaStream_t s) {
  T* p = ensure<T>(d, std::max<std::size_t>(host.size(), 1));
  if (!host.empty()) RACKSIM_CUDA_CHECK(cudaMemcpyAsync(p, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice, s));
}


/// The options checked (before anything divides by them): the KV pool's block count.
I pool_blocks(const CudaStepOptions& o) {
  if (o.max_rows < 1 || o.max_sampled < 1 || o.kv_tokens < 1 || o.block_tokens < 1)
    throw InputError(text("CUDA step executor: max_rows ", o.max_rows, ", max_sampled ", o.max_sampled, ", kv_tokens ", o.kv_tokens,
                          " and block_tokens ", o.block_tokens, " must be >= 1"));
  return (o.kv_tokens + o.block_tokens - 1) / o.block_tokens;
}

/// A cuBLASLt handle destroyed on scope exit.
class LtHandle {
 public:
  LtHandle() { RACKSIM_CUBLAS_CHECK(cublasLtCreate(&h_)); }
  ~LtHandle() { cublasLtDestroy(h_); }
  LtHandle(const LtHandle&) = delete;
  LtHandle& operator=(const LtHandle&) = delete;
  [[nodiscard]] cublasLtHandle_t get() const noexcept { return h_; }

 private:
  cublasLtHandle_t h_ = nullptr;
};

/// Makes `device` current first (members below are created on it).
int select_device(int device) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || device < 0 || device >= count)
    throw Error(ExitCode::infeasible, text("no CUDA device: cuda:", device, " asked, ", count, " visible"));
  RACKSIM_CUDA_CHECK(cudaSetDevice(device));
  return device;
}

/// A power window over host-driven work on one GPU (StepBackend::power_meter): the NVML
/// total-energy counter read when made and at stop() (stop() first waits for the stream's queued
/// work), so the mean power is the energy over the window: NVML's power reading is a 1 s trailing
/// average on Ampere and later GPUs (nvml.h, nvmlDeviceGetPowerUsage), which in a 1 s window
/// would carry the time before it. Samples every 10 ms give the mean SM clock and the clock-event
/// reasons seen.
class CudaPowerMeter final : public PowerMeter {
 public:
  CudaPowerMeter(int device, cudaStream_t stream) : device_(device), stream_(stream), nvml_(bus_id(device)) {
    RACKSIM_CUDA_CHECK(cudaSetDevice(device_));
    RACKSIM_CUDA_CHECK(cudaStreamSynchronize(stream_));
    if (nvml_.ok()) {
      e0_ = nvml_.energy_j();
      sampler_.emplace(nvml_, 0.01);
    }
    t0_ = std::chrono::steady_clock::now();
  }

  std::optional<StepPower> stop(std::string* why) override {
    const auto fail = [&](std::string text) -> std::optional<StepPower> {
      if (why) *why = std::move(text);
      return std::nullopt;
    };
    RACKSIM_CUDA_CHECK(cudaSetDevice(device_));
    RACKSIM_CUDA_CHECK(cudaStreamSynchronize(stream_));
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    if (!nvml_.ok()) return fail("power unavailable: NVML: " + nvml_.why());
    const auto e1 = nvml_.energy_j();
    const auto& samples = sampler_->stop();
    if (!e0_ || !e1) return fail("power unavailable: NVML gave no total-energy counter");
    StepPower p;
    p.gpus = 1;
    p.seconds = seconds;
    p.energy_j = *e1 - *e0_;
    p.power_w = seconds > 0 ? p.energy_j / seconds : 0.0;
    for (const auto& x : samples) {
      p.sm_clock_mhz += x.sm_clock_mhz;
      p.clock_events |= x.reasons;
    }
    if (!samples.empty()) p.sm_clock_mhz /= static_cast<double>(samples.size());
    return p;
  }

 private:
  static std::string bus_id(int device) {
    char bus[32] = {};
    RACKSIM_CUDA_CHECK(cudaDeviceGetPCIBusId(bus, sizeof bus, device));
    return bus;
  }
  int device_;
  cudaStream_t stream_;
  NvmlDevice nvml_;                       // before sampler_, which reads through it
  std::optional<double> e0_;
  std::optional<PowerSampler> sampler_;
  std::chrono::steady_clock::time_point t0_;
};

class CudaStep final : public StepBackend {
 public:
  CudaStep(const ModelConfig& m, const Precision& p, const CudaStepOptions& o)
      : m_(m), p_(p), o_(o), pool_(pool_blocks(o), o.block_tokens), device_(select_device(o.device)), native_rows_(o.max_rows), tp_(o.tp) {
    if (m.is_moe() && (m.moe.experts > kCudaMoeMaxExperts || m.moe.experts_per_token > kCudaMoeMaxTopK))
      throw InputError(text("CUDA step executor: model '", m.id, "' routes to ", m.moe.experts_per_token, " of ", m.moe.experts,
                            " experts; the MoE kernels take at most ", kCudaMoeMaxTopK, " of ", kCudaMoeMaxExperts));
    if (p.weights != DType::nvfp4)
      throw InputError(text("CUDA step executor: precision.weights '", to_string(p.weights), "': the executor stores nvfp4 weights"));
    if (p.kv_cache != DType::bf16 && p.kv_cache != DType::fp8)
      throw InputError(text("CUDA step executor: precision.kv_cache '", to_string(p.kv_cache), "' is not one of bf16, fp8"));
    if (m.hidden % 16 || m.ffn % 16 || (m.heads * m.head_dim) % 16)
      throw InputError(text("CUDA step executor: model '", m.id, "' needs hidden, ffn and heads x head_dim multiples of 16 (NVFP4 blocks)"));
    // This rank's heads, KV heads, FFN and vocabulary slice (tensor_parallel.hpp; all of them
    // without TP).
    if ((tp_ ? tp_->size() : 1) != o.tp_size)
      throw InputError(text("CUDA step executor: tp_size ", o.tp_size, " but the communicator has ", tp_ ? tp_->size() : 1, " ranks"));
    tl_ = tp_layout(m, tp_ ? tp_->rank() : 0, o.tp_size);
    // The attention kernels' instantiations (exec/src/cuda_ops.cpp check_heads): head_dim 16, 32,
    // 64 or 128, at most 16 query heads per KV head in decode; checked before any allocation.
    if ((m.head_dim != 16 && m.head_dim != 32 && m.head_dim != 64 && m.head_dim != 128) || tl_.q_heads % tl_.kv_heads != 0 || tl_.q_heads / tl_.kv_heads > 16)
      throw InputError(text("CUDA step executor: model '", m.id, "' has head_dim ", m.head_dim, " and ", tl_.q_heads, " query heads over ",
                            tl_.kv_heads, " KV heads per GPU; the attention kernels take head_dim 16, 32, 64 or 128 and at most 16 per KV head"));
    cudaDeviceProp prop{};
    RACKSIM_CUDA_CHECK(cudaGetDeviceProperties(&prop, o.device));
    describe_ = text(prop.name, " (cuda:", o.device, ", sm_", prop.major, prop.minor, ")");
    stream_ = stream_holder_.get();
    lt_ = lt_holder_.get();
    workspace_ = DeviceBytes(kLtWorkspaceBytes);

    const I H = m.hidden, qkv_w = (tl_.q_heads + 2 * tl_.kv_heads) * m.head_dim;
    linear_shapes_ = {{qkv_w, H}, {H, tl_.q_heads * m.head_dim}, {2 * tl_.ffn, H}, {H, tl_.ffn}};
    fp4_ = choose_fp4_gemm(o.fp4_gemm, prop.major, prop.minor, cublasLtGetVersion(), large_m_fp8_knob());
    min_cd_align_ = m.is_moe() ? 16 : 256;  // expert rows start inside the expert-ordered buffers (LtAlign)
    if (fp4_.native) fp4_ = after_probe(o.fp4_gemm, fp4_, probe_native_plans(), large_m_fp8_knob());
    kv_layout_ = PagedKvLayout{pool_.blocks(), o.block_tokens, tl_.kv_heads, m.head_dim, p.kv_cache};
    kv_layout_.check();
    if (o.reference_weights) load_reference_weights();
    else make_random_weights();
    if (m.is_moe()) make_expert_tables();
    // The uploads (cudaMemcpy from pageable memory, the legacy stream) and fills must be done
    // before the first step on the non-blocking stream reads them.
    RACKSIM_CUDA_CHECK(cudaDeviceSynchronize());
    for (auto& l : layers_) {
      l.k = DeviceBytes(z(kv_layout_.bytes()));
      l.v = DeviceBytes(z(kv_layout_.bytes()));
    }
    const std::size_t R = z(o.max_rows);
    hidden_ = DeviceBytes(R * z(H) * 2);
    normed_ = DeviceBytes(R * z(H) * 2);
    branch_ = DeviceBytes(R * z(H) * 2);
    qkv_ = DeviceBytes(R * z(qkv_w) * 2);
    attn_ = DeviceBytes(R * z(tl_.q_heads * m.head_dim) * 2);
    // MoE: the expert rows, one per assignment (max_rows x k), and on the native path max_rows more:
    // a GEMM padded to M' rows (NativeGemmRows) writes past its expert's block, which the next
    // expert's GEMM then overwrites, or past the last block.
    const std::size_t ffn_rows = m.is_moe() ? R * z(m.moe.experts_per_token) + (fp4_.native ? R : 0) : R;
    gate_up_ = DeviceBytes(ffn_rows * z(2 * tl_.ffn) * 2);
    act_ = DeviceBytes(ffn_rows * z(tl_.ffn) * 2);
    if (m.is_moe()) {
      const std::size_t A = R * z(m.moe.experts_per_token);
      x_perm_ = DeviceBytes(A * z(H) * 2);
      expert_out_ = DeviceBytes(ffn_rows * z(H) * 2);
      router_logits_ = DeviceBytes(R * z(m.moe.experts) * 4);
      topk_ids_ = DeviceBytes(A * 4);
      topk_weights_ = DeviceBytes(A * 4);
      moe_position_ = DeviceBytes(A * 4);
      moe_order_ = DeviceBytes(A * 4);
      moe_source_rows_ = DeviceBytes(A * 4);
      moe_offsets_ = DeviceBytes(z(m.moe.experts + 1) * 4);
      moe_active_ = DeviceBytes(z(m.moe.experts) * 4);  // moe_active_slots(experts, A) <= experts
      moe_offsets_host_.assign(z(m.moe.experts + 1), 0);
    }
    if (m.qk_norm_per_layer() && o.tp_size > 1) qk_sums_ = DeviceBytes(R * 2 * 4);  // [rows x 2] FP32, all-reduced
    sampled_x_ = DeviceBytes(z(o.max_sampled) * z(H) * 2);
    logits_ = DeviceBytes(z(o.max_sampled) * z(m.vocab) * 4);
    if (o.tp_size > 1) {
      local_logits_ = DeviceBytes(z(o.max_sampled) * z(tl_.vocab) * 4);
      gathered_ = DeviceBytes(z(o.max_sampled) * z(m.vocab) * 4);
    }
    next_ = DeviceBytes(z(o.max_sampled) * 4);
    I widest = 0;
    for (const auto& [n, k] : linear_shapes_) widest = std::max(widest, k);
    if (fp4_.native) {
      act_q_ = DeviceBytes(R * z(widest) / 2);
      const auto scale_bytes = z(fp4::cublaslt_scale_bytes(o.max_rows, widest / 16));
      act_scales_ = DeviceBytes(scale_bytes);
      // Zero once, on the step stream (ordered before the first quantize). Rows past a step's M keep
      // the codes and scales of earlier steps (or these zeros). A GEMM padded to M' > M rows
      // (native_rows) reads rows M..M'-1 of both: every E2M1 code is finite and scale codes <= 0x7E
      // are never NaN, so its extra output rows are finite, and nothing reads output rows past M.
      // Both buffers hold max_rows rows at the widest K, so any M' <= max_rows at any K is in bounds.
      RACKSIM_CUDA_CHECK(cudaMemsetAsync(act_q_.as(), 0, R * z(widest) / 2, stream_));
      RACKSIM_CUDA_CHECK(cudaMemsetAsync(act_scales_.as(), 0, scale_bytes, stream_));
    } else {
      // Hopper: the fused kernel for M <= 128 (its K-split partials in mma_ws_), the large-M path's
      // scratch (Fp4LargeM: BF16 or E4M3 W, E4M3 x) for any shape and M the fused kernel does not take.
      I largest = 0, ws = 0;
      std::size_t shape = 0;
      for (const auto& [n, k] : linear_shapes_) {
        // MoE experts (shapes 2 and 3) also run grouped: the K split's partials of all T x top-k rows.
        const I copies = m.is_moe() && shape++ >= 2 ? m.moe.experts_per_token : 1;
        ws = std::max(ws, copies * fp4_mma_workspace_bound(n, k, o.max_rows, prop.multiProcessorCount));
        if (o.max_rows > kFp4MmaMaxM || !fp4_mma_supported(1, n, k)) largest = std::max(largest, n * k);
      }
      if (o.max_rows > 1 && largest > 0) large_m_ = Fp4LargeM(largest, o.max_rows * widest, large_m_fp8_knob());
      if (ws > 0) mma_ws_ = DeviceBytes(z(ws));
    }
    sm_count_ = prop.multiProcessorCount;
    const bool tune = !fp4_.native && fp4_mma_tune_knob(std::getenv("RACKSIM_FP4_MMA_TUNE"));
    // The serial split-K sum's counters before any capture (the knob, or a tuner that may pick it).
    if (!fp4_.native && (tune || fp4_mma_env_knobs().serial)) fp4_mma_serial_prepare();
    if (tune) tune_fused(prop);
  }

  ~CudaStep() override {
    if (graph_exec_) cudaGraphExecDestroy(graph_exec_);
    for (auto e : events_) cudaEventDestroy(e);
  }

  StepOutput run(const StepGraph& graph, const StepTokens& tokens, const OpObserver& observer) override {
    // Whatever happens below, the graph of an earlier step is gone and nothing can be replayed
    // until this step succeeded.
    drop_graph();
    ops_.clear();
    RACKSIM_CUDA_CHECK(cudaSetDevice(device_));
    const StepBatch& batch = graph.batch();
    if (batch.tokens() > o_.max_rows || batch.sampled_sequences() > o_.max_sampled)
      throw InputError(text("CUDA step executor: a step of ", batch.tokens(), " rows and ", batch.sampled_sequences(),
                            " sampled sequences exceeds the buffers (", o_.max_rows, " rows, ", o_.max_sampled, " sampled)"));
    check_graph(graph);
    plan_ = plan_step(batch, tokens, m_.vocab, pool_);
    std::vector<Op> ops;
    for (std::size_t v : graph.topological_order()) ops.push_back(graph.op(v));
    for (const Op& op : ops) check_op(op);  // every op supported, with the plan's rows, before any launch
    prepare_plans(ops);
    upload_plan();
    while (events_.size() < ops.size() + 1) {
      cudaEvent_t e = nullptr;
      RACKSIM_CUDA_CHECK(cudaEventCreate(&e));
      events_.push_back(e);
    }
    fused_ = fuse_norm() ? residual_norm_pairs(ops) : std::vector<bool>(ops.size(), false);
    fused_swiglu_ = fuse_swiglu() ? gate_up_swiglu_pairs(ops) : std::vector<bool>(ops.size(), false);
    for (std::size_t i = 0; i < ops.size(); ++i) {
      RACKSIM_CUDA_CHECK(cudaEventRecord(events_[i], stream_));
      launch_at(ops, i);
    }
    RACKSIM_CUDA_CHECK(cudaEventRecord(events_[ops.size()], stream_));
    RACKSIM_CUDA_CHECK(cudaStreamSynchronize(stream_));
    RACKSIM_CUDA_CHECK(cudaGetLastError());
    commit_step(batch, tokens, pool_);
    ops_ = std::move(ops);
    if (observer)
      for (std::size_t i = 0; i < ops_.size(); ++i) {
        float ms = 0;
        RACKSIM_CUDA_CHECK(cudaEventElapsedTime(&ms, events_[i], events_[i + 1]));
        observer(ops_[i], static_cast<double>(ms) * 1e-3);
      }
    StepOutput out;
    const std::size_t S = plan_.sampled.size();
    std::vector<std::int32_t> next(S);
    if (S) RACKSIM_CUDA_CHECK(cudaMemcpy(next.data(), next_.as(), S * 4, cudaMemcpyDeviceToHost));
    out.sequences = plan_.sampled_sequences;
    out.next_tokens = next;
    if (o_.keep_logits && S) {
      std::vector<float> all(S * z(m_.vocab));
      RACKSIM_CUDA_CHECK(cudaMemcpy(all.data(), logits_.as(), all.size() * 4, cudaMemcpyDeviceToHost));
      for (std::size_t s = 0; s < S; ++s)
        out.logits.emplace_back(all.begin() + static_cast<std::ptrdiff_t>(s * z(m_.vocab)),
                                all.begin() + static_cast<std::ptrdiff_t>((s + 1) * z(m_.vocab)));
    }
    return out;
  }

  [[nodiscard]] bool can_replay_last_step() const override {
    // MoE without grouped GEMMs: experts.permute reads the expert counts back to the host (each
    // expert's GEMM is launched with its own M), which a captured graph cannot do.
    return !ops_.empty() && !(m_.is_moe() && !moe_grouped());
  }

  std::optional<double> replay_last_step() override {
    if (!can_replay_last_step()) return std::nullopt;
    RACKSIM_CUDA_CHECK(cudaSetDevice(device_));
    if (!graph_exec_) {
      // Capture the same launches (the plan's device arrays are unchanged since run()).
      cudaGraph_t g = nullptr;
      RACKSIM_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
      try {
        for (std::size_t i = 0; i < ops_.size(); ++i) launch_at(ops_, i);
      } catch (...) {
        cudaStreamEndCapture(stream_, &g);
        if (g) cudaGraphDestroy(g);
        (void)cudaGetLastError();  // the invalidated capture's error is the exception's, not the next call's
        throw;
      }
      RACKSIM_CUDA_CHECK(cudaStreamEndCapture(stream_, &g));
      const cudaError_t err = cudaGraphInstantiate(&graph_exec_, g, 0);
      cudaGraphDestroy(g);
      if (err != cudaSuccess) graph_exec_ = nullptr;
      RACKSIM_CUDA_CHECK(err);
    }
    RACKSIM_CUDA_CHECK(cudaEventRecord(events_[0], stream_));
    RACKSIM_CUDA_CHECK(cudaGraphLaunch(graph_exec_, stream_));
    RACKSIM_CUDA_CHECK(cudaEventRecord(events_[1], stream_));
    RACKSIM_CUDA_CHECK(cudaStreamSynchronize(stream_));
    float ms = 0;
    RACKSIM_CUDA_CHECK(cudaEventElapsedTime(&ms, events_[0], events_[1]));
    return static_cast<double>(ms) * 1e-3;
  }

  /// The captured step `steps` times back to back (the caches stay where replay_last_step left
  /// them: a replay writes the same KV slots and advances nothing) inside a CudaPowerMeter's
  /// window. The replays run even without NVML: a tensor-parallel rank's captured collectives wait
  /// for them.
  std::optional<StepPower> power_last_step(std::int64_t steps, std::string* why) override {
    if (!graph_exec_) {
      if (why) *why = "power unavailable: the step has no captured graph";
      return std::nullopt;
    }
    CudaPowerMeter meter(device_, stream_);  // opens after the stream is idle
    for (std::int64_t i = 0; i < steps; ++i) RACKSIM_CUDA_CHECK(cudaGraphLaunch(graph_exec_, stream_));
    std::optional<StepPower> p = meter.stop(why);  // waits for the replays; the window the energy counter spans
    if (p) p->steps = steps;
    return p;
  }

  [[nodiscard]] bool measures_power() const override { return true; }
  [[nodiscard]] std::unique_ptr<PowerMeter> power_meter() override { return std::make_unique<CudaPowerMeter>(device_, stream_); }

  [[nodiscard]] std::int64_t cached_tokens(std::int64_t sequence) const override { return pool_.tokens(sequence); }
  void release(std::int64_t sequence) override { pool_.release(sequence); }
  void truncate(std::int64_t sequence, std::int64_t tokens) override { pool_.truncate(sequence, tokens, true); }
  [[nodiscard]] std::string describe() const override { return describe_; }
  [[nodiscard]] std::string linear_path() const override { return fp4_.reason; }
  [[nodiscard]] std::string tuned_picks() const override { return tuned_picks_; }
  [[nodiscard]] std::string linear_padding_note() const override { return padded_native_gemm_note(native_rows_.padded()); }

 private:
  void check_graph(const StepGraph& g) const {
    const ModelConfig& gm = g.model();
    if (gm.hidden != m_.hidden || gm.layers != m_.layers || gm.heads != m_.heads || gm.kv_heads != m_.kv_heads ||
        gm.head_dim != m_.head_dim || gm.ffn != m_.ffn || gm.vocab != m_.vocab || gm.rope_dim() != m_.rope_dim() ||
        gm.architecture != m_.architecture)
      throw InputError(text("step graph of model '", gm.id, "' does not match the CUDA executor's model '", m_.id, "'"));
    if (gm.moe.experts != m_.moe.experts || gm.moe.experts_per_token != m_.moe.experts_per_token)
      throw InputError(text("step graph of model '", gm.id, "' has other experts than the CUDA executor's model"));
    if (g.precision().weights != p_.weights || g.precision().kv_cache != p_.kv_cache)
      throw InputError(text("step graph weights '", to_string(g.precision().weights), "' and KV cache '", to_string(g.precision().kv_cache),
                            "'; the CUDA executor holds '", to_string(p_.weights), "' and '", to_string(p_.kv_cache), "'"));
    const Deployment& d = g.deployment();
    if (d.tensor_parallel != o_.tp_size || d.pipeline_parallel != 1 || d.expert_parallel != 1)
      throw InputError(text("CUDA step executor runs rank(s) of tensor parallel ", o_.tp_size, ": the graph's tensor, pipeline and expert "
                            "parallel must be ", o_.tp_size, ", 1, 1 (got ", d.tensor_parallel, ", ", d.pipeline_parallel, ", ",
                            d.expert_parallel, ")"));
    if (g.batch().tokens() == 0) throw InputError("CUDA step executor: the step graph has no batch (built from batch sums only?)");
  }

  /// InputError unless launch() runs `op` with the rows the plan has for it (CpuReference's
  /// require_rows), before anything is launched.
  void check_op(const Op& op) const {
    const std::string_view what = op.role();
    const I T = plan_.rows, S = static_cast<I>(plan_.sampled.size());
    I want = -1;
    switch (op.kind) {
      case OpKind::embedding:
      case OpKind::rope:
      case OpKind::residual_add: want = T; break;
      case OpKind::rmsnorm:
        if (what == "input_norm" || what == "post_attn_norm" || what == "final_norm") want = T;
        if (what == "qk_norm" && m_.qk_norm()) want = T;
        break;
      case OpKind::gemm:
        if (what == "lm_head") want = S;
        else if (what == "qkv_proj" || what == "o_proj") want = T;
        else if ((what == "gate_up_proj" || what == "down_proj") && !m_.is_moe()) want = T;
        else if (what == "router" && m_.is_moe()) want = T;
        break;
      case OpKind::swiglu:
        if (what == "swiglu" && !m_.is_moe()) want = T;
        else if (what == "experts.swiglu" && m_.is_moe()) want = T * m_.moe.experts_per_token;
        break;
      case OpKind::moe_router_topk:
        if (m_.is_moe()) want = T;
        break;
      case OpKind::moe_permute:
        if (what == "experts.permute" && m_.is_moe()) want = T * m_.moe.experts_per_token;
        break;
      case OpKind::moe_gemm:
        if ((what == "experts.gate_up_proj" || what == "experts.down_proj") && m_.is_moe()) want = T * m_.moe.experts_per_token;
        break;
      case OpKind::moe_finalize:
        if (what == "experts.finalize" && m_.is_moe()) want = T * m_.moe.experts_per_token;
        break;
      case OpKind::attention_prefill: want = plan_.prefill_rows; break;
      case OpKind::attention_decode: want = plan_.decodes; break;
      case OpKind::sampling: want = S; break;
      case OpKind::all_reduce:
      case OpKind::all_gather: {
        // The graph's TP collectives (attn_all_reduce, mlp_all_reduce, logits_all_gather) carry no rows.
        const bool known = op.kind == OpKind::all_reduce ? (what == "attn_all_reduce" || what == "mlp_all_reduce" || what == "moe_all_reduce" ||
                                                            (what == "qk_norm_all_reduce" && m_.qk_norm_per_layer()))
                                                         : what == "logits_all_gather";
        if (known && tp_ && op.participants == o_.tp_size) return;
        break;
      }
      default: break;
    }
    if (want < 0) throw InputError(text("CUDA step executor: op '", op.name, "' (", to_string(op.kind), ") is not supported"));
    if (op.m != want || want < 1) throw InputError(text("op '", op.name, "' has m = ", op.m, "; the step has ", want, " rows for it"));
  }

  void drop_graph() noexcept {
    if (graph_exec_) cudaGraphExecDestroy(graph_exec_);
    graph_exec_ = nullptr;
  }

  void load_reference_weights() {
    ModelWeights w = generate_weights(m_, DType::nvfp4, o_.seed);
    if (o_.tp_size > 1) w = shard_weights(w, m_, tl_);  // this rank's shard of the same model
    auto linear = [&](const LinearWeight& lw) {
      Linear l;
      upload(l.packed, lw.packed.packed);
      if (fp4_.native) upload(l.scales, swizzle_scales_cublaslt(lw.packed.scales, lw.out, lw.in / 16));
      else upload(l.scales, lw.packed.scales);
      l.tensor_scale = lw.packed.tensor_scale;
      l.out = lw.out;
      l.in = lw.in;
      if (holds_tiled(l.out, l.in)) {  // the fused kernel's layout, converted here; the row-major copy is freed
        const Fp4MmaTiling t = fp4_mma_tiling(l.out, l.in);
        DeviceBytes codes(z(t.code_bytes)), tscales(z(t.scale_bytes));
        fp4_mma_tile_launch(l.packed.as<std::uint8_t>(), l.scales.as<std::uint8_t>(), l.out, l.in, codes.as<std::uint8_t>(),
                            tscales.as<std::uint8_t>(), stream_);
        RACKSIM_CUDA_CHECK(cudaStreamSynchronize(stream_));
        l.packed = std::move(codes);
        l.scales = std::move(tscales);
        l.tiled = true;
      }
      return l;
    };
    for (const LayerWeights& lw : w.layers) {
      Layer l;
      upload(l.input_norm, bf16_of(lw.input_norm));
      upload(l.post_attn_norm, bf16_of(lw.post_attn_norm));
      if (m_.qk_norm()) {
        // Per head: head_dim each; over the layer (MiniMax-M2): this rank's q and k widths.
        const bool layer = m_.qk_norm_per_layer();
        RACKSIM_ASSERT(lw.q_norm.size() == z(layer ? tl_.q_heads * m_.head_dim : m_.head_dim) &&
                           lw.k_norm.size() == z(layer ? tl_.kv_heads * m_.head_dim : m_.head_dim),
                       "the QK-norm weights are this rank's");
        upload(l.q_norm, bf16_of(lw.q_norm));
        upload(l.k_norm, bf16_of(lw.k_norm));
      }
      l.qkv = linear(lw.qkv_proj);
      l.o = linear(lw.o_proj);
      if (m_.is_moe()) {
        upload(l.router, bf16_of(lw.router));
        if (m_.moe_sigmoid_routing()) {
          // Empty would route by softmax (a null bias): never silently.
          RACKSIM_ASSERT(lw.router_bias.size() == z(m_.moe.experts), "MiniMax-M2's routing bias holds one value per expert");
          upload(l.router_bias, lw.router_bias);
        }
        for (const LinearWeight& e : lw.expert_gate_up) l.expert_gate_up.push_back(linear(e));
        for (const LinearWeight& e : lw.expert_down) l.expert_down.push_back(linear(e));
      } else {
        l.gate_up = linear(lw.gate_up_proj);
        l.down = linear(lw.down_proj);
      }
      layers_.push_back(std::move(l));
    }
    upload(embed_, bf16_of(w.embed_tokens));
    upload(lm_head_, bf16_of(w.lm_head));
    upload(final_norm_, bf16_of(w.final_norm));
  }

  /// MoE on the Hopper path with the experts held tiled: each layer's device table of its experts'
  /// weights (Fp4MmaExpert), which a grouped launch reads (moe_grouped).
  void make_expert_tables() {
    const auto [gn, gk] = linear_shapes_[2];
    const auto [dn, dk] = linear_shapes_[3];
    if (!holds_tiled(gn, gk) || !holds_tiled(dn, dk)) return;
    auto table = [](const std::vector<Linear>& experts, DeviceBytes& d) {
      std::vector<Fp4MmaExpert> t;
      for (const Linear& e : experts) t.push_back({e.packed.as<std::uint8_t>(), e.scales.as<std::uint8_t>(), e.tensor_scale});
      upload(d, t);
    };
    for (Layer& l : layers_) {
      table(l.expert_gate_up, l.gate_up_table);
      table(l.expert_down, l.down_table);
    }
  }

  /// Whether this step's MoE GEMMs run grouped (one launch each, the row counts read on the
  /// device: no host round trip, so the step can be captured as a graph): the Hopper path with the
  /// experts held tiled, and at most kFp4MmaLaunchM rows (each expert gets at most one row per
  /// token; fp4_mma_grouped_supported).
  [[nodiscard]] bool moe_grouped() const {
    return m_.is_moe() && !layers_.empty() && layers_[0].gate_up_table.size() > 0 && plan_.rows <= kFp4MmaLaunchM;
  }

  void make_random_weights() {
    std::uint64_t seed = o_.seed * 0x9E3779B97F4A7C15ull;
    auto bytes = [&](DeviceBytes& d, std::size_t n, unsigned lo, unsigned span) {
      d = DeviceBytes(n);
      fill_bytes(d.as<std::uint8_t>(), n, ++seed, lo, span, nullptr);
    };
    auto bf16 = [&](DeviceBytes& d, std::size_t n, float center, float half) {
      d = DeviceBytes(n * 2);
      fill_bf16(d.as<std::uint16_t>(), n, ++seed, center, half, nullptr);
    };
    auto linear = [&](I out, I in) {
      Linear l;
      l.out = out;
      l.in = in;
      l.tiled = holds_tiled(out, in);
      const Fp4MmaTiling t = fp4_mma_tiling(out, in);
      // Random codes in whichever layout the GEMM reads (the tiled one's padding too: any code is
      // finite, and padding rows and values only meet zero inputs or unwritten outputs).
      bytes(l.packed, z(l.tiled ? t.code_bytes : out * in / 2), 0, 256);  // every E2M1 code pair
      // The native path's swizzled layout pads rows to 128 and blocks to 4; random codes there too.
      bytes(l.scales, z(l.tiled ? t.scale_bytes : fp4_.native ? fp4::cublaslt_scale_bytes(out, in / 16) : out * in / 16), kScaleCodeLo,
            kScaleCodeSpan);
      // E2M1 codes uniform over the 16: E[x^2] = (0 + .25 + 1 + 2.25 + 4 + 9 + 16 + 36) / 8 = 8.5625.
      // Block scales (1 + m/8) 2^e, m uniform 0..7, e in {-1, 0}: E[(1 + m/8)^2] = 2.1484, so
      // E[s^2] = 2.1484 (1/4 + 1) / 2 = 1.3428. Unit-variance outputs for unit-variance inputs
      // need a tensor scale of 1 / sqrt(8.5625 x 1.3428 x in) = 1 / sqrt(11.50 in).
      l.tensor_scale = static_cast<float>(1.0 / std::sqrt(11.50 * static_cast<double>(in)));
      return l;
    };
    const I H = m_.hidden, hd = m_.head_dim;
    for (int i = 0; i < m_.layers; ++i) {
      Layer l;
      bf16(l.input_norm, z(H), 1.0f, 0.1f);
      bf16(l.post_attn_norm, z(H), 1.0f, 0.1f);
      if (m_.qk_norm()) {
        const bool layer = m_.qk_norm_per_layer();  // this rank's heads' weights
        bf16(l.q_norm, z(layer ? tl_.q_heads * hd : hd), 1.0f, 0.1f);
        bf16(l.k_norm, z(layer ? tl_.kv_heads * hd : hd), 1.0f, 0.1f);
      }
      l.qkv = linear(linear_shapes_[0].first, linear_shapes_[0].second);
      l.o = linear(linear_shapes_[1].first, linear_shapes_[1].second);
      if (m_.is_moe()) {
        // The router as generate_weights makes it: uniform in +-sqrt(3 / hidden).
        bf16(l.router, z(I{m_.moe.experts} * H), 0.0f, static_cast<float>(std::sqrt(3.0 / static_cast<double>(H))));
        if (m_.moe_sigmoid_routing()) {
          // The routing bias as generate_weights makes it: FP32 uniform in +-0.1 (every rank draws
          // the same: the router is whole on each, so each routes alike).
          l.router_bias = DeviceBytes(z(m_.moe.experts) * 4);
          fill_f32(l.router_bias.as<float>(), z(m_.moe.experts), ++seed, nullptr, 0.1f);
        }
        for (int e = 0; e < m_.moe.experts; ++e) {
          l.expert_gate_up.push_back(linear(linear_shapes_[2].first, linear_shapes_[2].second));
          l.expert_down.push_back(linear(linear_shapes_[3].first, linear_shapes_[3].second));
        }
      } else {
        l.gate_up = linear(linear_shapes_[2].first, linear_shapes_[2].second);
        l.down = linear(linear_shapes_[3].first, linear_shapes_[3].second);
      }
      layers_.push_back(std::move(l));
    }
    bf16(embed_, z(I{m_.vocab} * H), 0.0f, 1.0f);
    bf16(lm_head_, z(tl_.vocab * H), 0.0f, static_cast<float>(std::sqrt(3.0 / static_cast<double>(H))));
    bf16(final_norm_, z(H), 1.0f, 0.1f);
  }

  void upload_plan() {
    copy_in(d_tokens_, plan_.tokens, stream_);
    copy_in(d_positions_, plan_.positions, stream_);
    copy_in(d_slots_, plan_.slots, stream_);
    copy_in(d_sampled_, plan_.sampled, stream_);
    copy_in(d_decode_tables_, plan_.decode_tables, stream_);
    copy_in(d_context_lens_, plan_.context_lens, stream_);
    copy_in(d_segments_, plan_.segments, stream_);
    copy_in(d_prefill_tables_, plan_.prefill_tables, stream_);
    if (plan_.decodes > 0) {
      // This rank's heads: the kernel's grid is partitions x local KV heads x sequences.
      partition_tokens_ = decode_partition_tokens(plan_.decodes, tl_.kv_heads, plan_.max_context, sm_count_);
      workspace_bytes_ = static_cast<std::size_t>(
          decode_workspace_bytes(plan_.decodes, tl_.q_heads, m_.head_dim, plan_.max_context, partition_tokens_));
      if (workspace_bytes_) ensure<std::uint8_t>(attn_workspace_, workspace_bytes_);
    }
    // The pageable host vectors must stay put until the copies ran: wait here (before any launch).
    RACKSIM_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  /// Every cuBLASLt plan the step's GEMMs use, made before the first timed op: a plan for a new M
  /// (a serving loop meets many) asks cuBLASLt's heuristic, host time that is not the GEMM's.
  /// Whether the weight of shape out x in is held in the fused kernel's tiled layout: on the
  /// Hopper path whenever the fused kernel takes the shape (at M = 1, so at any M <= 128).
  bool holds_tiled(I out, I in) const { return !fp4_.native && fp4_mma_supported(1, out, in); }

  void prepare_plans(const std::vector<Op>& ops) {
    const I T = plan_.rows, S = static_cast<I>(plan_.sampled.size());
    for (const Op& op : ops) {
      if (op.kind != OpKind::gemm) continue;
      const std::string_view what = op.role();
      if (what == "lm_head") {
        (void)lm_head_plan(S, tl_.vocab, m_.hidden);
        continue;
      }
      if (what == "router") {
        (void)lm_head_plan(T, m_.moe.experts, m_.hidden);
        continue;
      }
      const std::size_t i = what == "qkv_proj" ? 0 : what == "o_proj" ? 1 : what == "gate_up_proj" ? 2 : 3;
      prepare_linear_plan(T, linear_shapes_[i]);
    }
  }

  /// The cuBLASLt plan an NVFP4 linear of shape (n, k) = `shape` needs at M rows, if any: the
  /// native path's (padded if need be), or the large-M path's where the fused kernel does not run.
  void prepare_linear_plan(I m, std::pair<I, I> shape, LtAlign align = {}) {
    const auto [n, k] = shape;
    if (fp4_.native) (void)native_plan(native_rows(m, n, k), n, k, align.cd);
    else if (!fp4_mma_supported(m, n, k) && m > 1) (void)large_m_plan(m, n, k, align);
  }

  /// The native plans of every linear shape at max_rows, and the rows one row runs at (padded if
  /// cuBLASLt has no plan at 1: native_rows), cuBLASLt's heuristic only, nothing runs; "" if all
  /// exist, else why not (after_probe then falls back or fails). max_rows having a plan is what
  /// lets every other M fall back to padding.
  std::string probe_native_plans() {
    if (std::string why = nvfp4_quantize_kernel_missing(); !why.empty()) return why;
    for (const auto& [n, k] : linear_shapes_) {
      // Whole 64-value groups keep every scale tile's K columns inside the matrix, so no padded
      // scale is ever read against real data (fp4::cublaslt_scale_offset's 4-block tiles).
      if (k % 64 != 0) return text("linear K = ", k, " is not a multiple of 64 (cuBLASLt's 4-block scale tiles)");
      try {
        (void)native_plan(o_.max_rows, n, k, min_cd_align_);
        (void)native_rows(1, n, k, /*record=*/false);  // a probe: nothing runs, so nothing ran padded
      } catch (const Error& e) {
        plans_.clear();
        native_rows_ = NativeGemmRows(o_.max_rows);
        return e.what();
      }
    }
    return "";
  }

  /// The rows the native GEMM M x n x k runs at: M, or the padded row count with a plan
  /// (NativeGemmRows: each row count's plan asked of cuBLASLt once, the answer kept).
  I native_rows(I m, I n, I k, bool record = true) {
    return native_rows_.rows(m, n, k, [this](I rows, I pn, I pk) -> std::string {
      try {
        (void)native_plan(rows, pn, pk, min_cd_align_);
        return "";
      } catch (const Error& e) {
        return e.what();
      }
    }, record);
  }

  /// The native plan of m x n x k for a y of `cd_align` bytes (x is act_q_, aligned); the probes
  /// ask at min_cd_align_, the least any y will have, so a row count they pass runs at any y.
  LtPlan& native_plan(I m, I n, I k, int cd_align = 256) {
    const LtTypes t = kLtNativeNvfp4;
    const LtAlign align{256, cd_align};
    const auto key = std::make_tuple(static_cast<int>(t.ab), static_cast<int>(t.cd), m, n, k, align.b, align.cd);
    auto it = plans_.find(key);
    // The scale pointers are set before every run (a plan serves every layer of its shape); the
    // workspace stands in for them while the heuristic is asked.
    if (it == plans_.end())
      it = plans_.emplace(key, std::make_unique<LtPlan>(lt_, t.ab, t.cd, m, n, k, workspace_.as(), workspace_.as(), t.block_scaled, align))
               .first;
    return *it->second;
  }

  /// y[M x w.out] = x[M x w.in] w^T. On the native path `y` must hold max_rows rows (a padded
  /// GEMM writes up to max_rows; the callers pass qkv_, branch_ and gate_up_, all max_rows rows).
  void gemm(const Linear& w, const Bf16* x, I M, Bf16* y) {
    if (fp4_.native) {
      // alpha: W = codes x scales x tensor_scale and x = codes x scales / s_in (fp4_gemm_path.hpp).
      // The quantize writes M rows; a padded GEMM reads rows M..rows-1 as they are (see act_scales_).
      quantize_bf16_nvfp4_cublaslt(reinterpret_cast<const __nv_bfloat16*>(x), M, w.in, kActivationNvfp4EncodeScale,
                                   act_q_.as<std::uint8_t>(), act_scales_.as<std::uint8_t>(), stream_);
      LtPlan& p = native_plan(native_rows(M, w.out, w.in), w.out, w.in, lt_alignment(y));
      p.set_scale_pointers(w.scales.as(), act_scales_.as());
      p.run(lt_, w.tensor_scale / kActivationNvfp4EncodeScale, w.packed.as(), act_q_.as(), y, workspace_.as(), stream_);
      return;
    }
    if (fp4_mma_supported(M, w.out, w.in)) {
      fp4_gemm_mma_launch(x, M, w.out, w.in, w.packed.as<std::uint8_t>(), w.scales.as<std::uint8_t>(), w.tensor_scale, y,
                          mma_ws_.size() ? mma_ws_.as<float>() : nullptr, sm_count_, stream_, tuned_knobs(M, w.out, w.in));
      return;
    }
    if (M == 1) {  // K % 32 != 0 (tiny models): the CUDA-core small-M kernel, which needs no scratch
      fp4_gemm_small_m_bf16_launch(x, M, w.out, w.in, w.packed.as<std::uint8_t>(), w.scales.as<std::uint8_t>(), w.tensor_scale, y, stream_);
      return;
    }
    large_m_.run(lt_, large_m_plan(M, w.out, w.in, {lt_alignment(x), lt_alignment(y)}), w.packed.as<std::uint8_t>(), w.scales.as<std::uint8_t>(), w.tiled, w.tensor_scale,
                 reinterpret_cast<const __nv_bfloat16*>(x), M, w.out, w.in, reinterpret_cast<__nv_bfloat16*>(y), workspace_.as(), stream_);
  }

  /// The tuner's knobs for an M-row fused GEMM of n x k (RACKSIM_FP4_MMA_TUNE=on), or null: the
  /// environment's (tuning off, or a shape it did not time: MoE experts).
  const Fp4MmaKnobs* tuned_knobs(I M, I n, I k, bool swiglu = false) const {
    if (tuned_.empty()) return nullptr;
    const auto it = tuned_.find({fp4_mma_tune_class(M), n, k, swiglu});
    return it == tuned_.end() ? nullptr : &it->second;
  }

  /// RACKSIM_FP4_MMA_TUNE=on: every linear shape the fused kernel runs (a MoE model's attention
  /// projections; its experts run grouped under the environment's knobs), at each row class up to
  /// max_rows (fp4_mma_tune_rows), timed on this device under each distinct variant (fp4_mma_tune:
  /// layer 0's weights, random x, cold L2, kTuneReps rounds), before any step; the picks kept for
  /// gemm() and stated in linear_path() (the output's notes, the measurement file's `software`).
  void tune_fused(const cudaDeviceProp& prop) {
    static constexpr int kTuneReps = 15;
    static constexpr const char* kNames[4] = {"qkv", "o_proj", "gate_up", "down"};
    const std::size_t shapes = m_.is_moe() ? 2 : 4;
    const Linear* weights[4] = {&layers_.at(0).qkv, &layers_.at(0).o, &layers_.at(0).gate_up, &layers_.at(0).down};
    I widest = 0, tallest = 0;
    for (std::size_t i = 0; i < shapes; ++i) {
      widest = std::max(widest, linear_shapes_[i].second);
      tallest = std::max(tallest, linear_shapes_[i].first);
    }
    const I rows = std::min<I>(o_.max_rows, kFp4MmaLaunchM);
    // act: gate_up under RACKSIM_FUSE_SWIGLU is timed as it runs, with its SwiGLU (fp4_mma_tune).
    DeviceBytes x(z(rows * widest) * 2), y(z(rows * tallest) * 2), act(z(rows * tallest)), flush(2 * z(prop.l2CacheSize));
    fill_bf16(x.as<std::uint16_t>(), z(rows * widest), 0x7475u, 0.0f, 1.0f, stream_);
    std::string picks;
    for (std::size_t i = 0; i < shapes; ++i) {
      const Linear& w = *weights[i];
      if (!w.tiled || !fp4_mma_supported(1, w.out, w.in)) continue;
      for (int c = 0; c < kFp4MmaTuneClasses; ++c) {
        const I M = fp4_mma_tune_rows(c, o_.max_rows);
        if (M == 0) continue;
        const bool with_act = i == 2 && fuse_swiglu();
        const Fp4MmaTuneResult r = fp4_mma_tune(x.as<std::uint16_t>(), M, w.out, w.in, w.packed.as<std::uint8_t>(), w.scales.as<std::uint8_t>(),
                                                w.tensor_scale, y.as<std::uint16_t>(), mma_ws_.size() ? mma_ws_.as<float>() : nullptr, sm_count_,
                                                stream_, kTuneReps, &flush, with_act ? act.as<std::uint16_t>() : nullptr);
        // Keyed with the SwiGLU: a qkv of gate_up's shape (a small model) keeps its own pick.
        tuned_[{c, w.out, w.in, with_act}] = r.candidates[r.pick];
        tuned_picks_ += text(tuned_picks_.empty() ? "" : "; ", kNames[i], " M=", M, ": ", fp4_mma_knobs_words(r.candidates[r.pick]));
        picks += text(picks.empty() ? "" : "; ", kNames[i], " ", w.out, "x", w.in, " M=", M, ": ", fp4_mma_knobs_words(r.candidates[r.pick]), " ",
                      fixed(r.median_s[r.pick] * 1e6, 1), " us (", fixed(r.median_s[r.pick] / r.median_s[0], 2), "x the ",
                      fp4_mma_knobs_words(r.candidates[0]), " launch's ", fixed(r.median_s[0] * 1e6, 1), " us; ", r.candidates.size(), " tried)");
      }
    }
    if (!picks.empty())
      fp4_.reason += text("; fused-kernel variants tuned on this device (RACKSIM_FP4_MMA_TUNE=on: medians of ", kTuneReps,
                          " cold-L2 launches each, a variant kept where it beats the first by more than ", fixed(kFp4MmaTuneMargin * 100, 0),
                          "% and ", fixed(kFp4MmaTuneFloorS * 1e6, 1), " us; gate_up with its SwiGLU under RACKSIM_FUSE_SWIGLU; M classes ",
                          fp4_mma_tune_classes_words(), "): ", picks);
  }

  /// lm_head's kLtBf16ToFp32 plan.
  LtPlan& lm_head_plan(I m, I n, I k) {
    const LtTypes t = kLtBf16ToFp32;
    const auto key = std::make_tuple(static_cast<int>(t.ab), static_cast<int>(t.cd), m, n, k, 256, 256);
    auto it = plans_.find(key);
    if (it == plans_.end()) it = plans_.emplace(key, std::make_unique<LtPlan>(lt_, t.ab, t.cd, m, n, k, nullptr, nullptr, t.block_scaled)).first;
    return *it->second;
  }

  /// The large-M path's plan in its format (Fp4LargeM: kLtBf16, or kLtFp8 on its scale scratch),
  /// for an x and y of `align` (a MoE expert's rows start inside the expert-ordered buffers).
  LtPlan& large_m_plan(I m, I n, I k, LtAlign align = {}) {
    const LtTypes& t = large_m_.types();
    const auto key = std::make_tuple(static_cast<int>(t.ab), static_cast<int>(t.cd), m, n, k, align.b, align.cd);
    auto it = plans_.find(key);
    if (it == plans_.end()) it = plans_.emplace(key, large_m_.make_plan(lt_, m, n, k, align)).first;
    return *it->second;
  }

  DevicePagedKv cache_of(Layer& l) const {
    DevicePagedKv c;
    c.layout = kv_layout_;
    c.k = l.k.as();
    c.v = l.v.as();
    return c;  // FP8: scales 1 (TensorRT-LLM's default without calibrated KV scales)
  }

  /// RACKSIM_FUSE_NORM (step_plan.hpp fuse_norm_knob), read once.
  static bool fuse_norm() {
    static const bool v = fuse_norm_knob(std::getenv("RACKSIM_FUSE_NORM"));
    return v;
  }

  /// RACKSIM_FUSE_SWIGLU (step_plan.hpp fuse_swiglu_knob), read once.
  static bool fuse_swiglu() {
    static const bool v = fuse_swiglu_knob(std::getenv("RACKSIM_FUSE_SWIGLU"));
    return v;
  }

  /// The RMSNorm weight of a hidden-rows norm op (input_norm, post_attn_norm, final_norm).
  const Bf16* norm_weight(const Op& op) {
    const std::string_view what = op.role();
    if (what == "final_norm") return final_norm_.as<Bf16>();
    Layer& l = layers_.at(z(op.layer));
    return what == "input_norm" ? l.input_norm.as<Bf16>() : l.post_attn_norm.as<Bf16>();
  }

  /// ops[i], or under RACKSIM_FUSE_NORM=on (fused_, residual_norm_pairs) a residual add and the
  /// RMSNorm after it as one kernel: the pair's first op launches it and the norm's launches
  /// nothing; likewise under RACKSIM_FUSE_SWIGLU=on (fused_swiglu_, gate_up_swiglu_pairs) the
  /// gate_up GEMM and the SwiGLU, where the Hopper fused kernel runs the GEMM (else both as usual).
  void launch_at(const std::vector<Op>& ops, std::size_t i) {
    if (i > 0 && fused_[i - 1]) return;                          // ran with the residual add before it
    if (i > 0 && fused_swiglu_[i - 1] && swiglu_fused_) return;  // the gate_up GEMM's reduce wrote it
    if (fused_swiglu_[i]) {
      // The pair's GEMM; the SwiGLU op then launches nothing where the reduce wrote act (one
      // launch that splits K on the Hopper fused kernel), else runs as its own op.
      const Linear& w = layers_.at(z(ops[i].layer)).gate_up;
      const I T = plan_.rows;
      const bool hopper_fused = !fp4_.native && fp4_mma_supported(T, w.out, w.in);  // as gemm() decides
      swiglu_fused_ = hopper_fused && fp4_gemm_mma_swiglu_launch(normed_.as<Bf16>(), T, w.out, w.in, w.packed.as<std::uint8_t>(),
                                                                 w.scales.as<std::uint8_t>(), w.tensor_scale, gate_up_.as<Bf16>(),
                                                                 act_.as<Bf16>(), mma_ws_.size() ? mma_ws_.as<float>() : nullptr, sm_count_,
                                                                 stream_, tuned_knobs(T, w.out, w.in, true));
      if (!hopper_fused) launch(ops[i]);
      return;
    }
    if (fused_[i]) {
      cuda_residual_add_rmsnorm_launch(hidden_.as<Bf16>(), branch_.as<Bf16>(), norm_weight(ops[i + 1]), plan_.rows, m_.hidden,
                                       static_cast<float>(m_.norm_eps), normed_.as<Bf16>(), stream_);
      return;
    }
    launch(ops[i]);
  }

  void launch(const Op& op) {
    const std::string_view what = op.role();
    const I T = plan_.rows, S = static_cast<I>(plan_.sampled.size()), H = m_.hidden, hd = m_.head_dim;
    const I qh = tl_.q_heads, qkv_w = (qh + 2 * tl_.kv_heads) * hd, attn_w = qh * hd;
    const float eps = static_cast<float>(m_.norm_eps);
    Layer* l = op.layer >= 0 ? &layers_.at(z(op.layer)) : nullptr;
    auto B = [](DeviceBytes& d) { return d.as<Bf16>(); };
    switch (op.kind) {
      case OpKind::embedding:
        cuda_embedding_launch(B(embed_), m_.vocab, H, d_tokens_.as<std::int32_t>(), T, B(hidden_), stream_);
        return;
      case OpKind::rmsnorm: {
        if (what == "qk_norm" && m_.qk_norm_per_layer()) {
          // MiniMax-M2: the rank's q values normed as one, and its k values, with the layer's sums
          // (all-reduced by qk_norm_all_reduce under TP; else each row's own). Under TP with KV
          // heads replicated, the k sum and its count both count each replica (cpu_ops qk_layer_norm).
          const int tp = o_.tp_size;
          cuda_qk_layer_norm_launch(B(qkv_), T, qkv_w, qh * hd, tl_.kv_heads * hd, tp > 1 ? qk_sums_.as<float>() : nullptr, tp * qh * hd,
                                    tp * tl_.kv_heads * hd, B(l->q_norm), B(l->k_norm), eps, stream_);
          return;
        }
        if (what == "qk_norm") {  // Qwen3: each q and k head of the qkv rows, in place, before RoPE
          cuda_head_rmsnorm_launch(B(qkv_), T, qkv_w, qh, tl_.kv_heads, hd, B(l->q_norm), B(l->k_norm), eps, stream_);
          return;
        }
        const Bf16* w = what == "input_norm" ? B(l->input_norm) : what == "post_attn_norm" ? B(l->post_attn_norm) : B(final_norm_);
        if (what != "input_norm" && what != "post_attn_norm" && what != "final_norm") break;
        cuda_rmsnorm_launch(B(hidden_), w, T, H, eps, B(normed_), stream_);
        return;
      }
      case OpKind::gemm:
        if (what == "lm_head") {
          // The sampled rows of the normed activations (a row gather), then BF16 x BF16 -> FP32.
          // Under TP this rank's vocabulary slice, gathered by logits_all_gather.
          cuda_embedding_launch(B(normed_), T, H, d_sampled_.as<std::int32_t>(), S, B(sampled_x_), stream_);
          lm_head_plan(S, tl_.vocab, H).run(lt_, 1.0f, lm_head_.as(), sampled_x_.as(), (tp_ ? local_logits_ : logits_).as(),
                                                 workspace_.as(), stream_);
          return;
        }
        if (what == "router") {
          // BF16 x BF16 -> FP32 logits [T x experts], as lm_head.
          lm_head_plan(T, m_.moe.experts, H).run(lt_, 1.0f, l->router.as(), normed_.as(), router_logits_.as(), workspace_.as(), stream_);
          return;
        }
        if (what == "qkv_proj") return gemm(l->qkv, B(normed_), T, B(qkv_));
        if (what == "o_proj") return gemm(l->o, B(attn_), T, B(branch_));
        if (what == "gate_up_proj") return gemm(l->gate_up, B(normed_), T, B(gate_up_));
        if (what == "down_proj") return gemm(l->down, B(act_), T, B(branch_));
        break;
      case OpKind::rope:
        cuda_rope_rotate_half_launch(B(qkv_), T, qkv_w, qh + tl_.kv_heads, hd, m_.rope_dim(), d_positions_.as<std::int32_t>(), m_.rope_theta,
                                     stream_);
        return;
      case OpKind::attention_prefill: {
        const DevicePagedKv c = cache_of(*l);
        cuda_kv_append_launch(c, B(qkv_), plan_.prefill_rows, qkv_w, qh, d_slots_.as<std::int32_t>(), stream_);
        AttentionPrefillArgs a;
        a.q = B(qkv_);
        a.q_stride = qkv_w;
        a.heads = qh;
        a.segments = d_segments_.as<PrefillSegment>();
        a.segment_count = static_cast<I>(plan_.segments.size());
        a.max_segment_tokens = plan_.max_segment_tokens;
        a.block_tables = d_prefill_tables_.as<std::int32_t>();
        a.block_table_stride = plan_.prefill_table_stride;
        a.out = B(attn_);
        a.out_stride = attn_w;
        cuda_attention_prefill_launch(c, a, stream_);
        return;
      }
      case OpKind::attention_decode: {
        const DevicePagedKv c = cache_of(*l);
        const I first = plan_.prefill_rows;
        cuda_kv_append_launch(c, B(qkv_) + first * qkv_w, plan_.decodes, qkv_w, qh, d_slots_.as<std::int32_t>() + first, stream_);
        AttentionDecodeArgs a;
        a.q = B(qkv_) + first * qkv_w;
        a.q_stride = qkv_w;
        a.batch = plan_.decodes;
        a.heads = qh;
        a.block_tables = d_decode_tables_.as<std::int32_t>();
        a.block_table_stride = plan_.decode_table_stride;
        a.context_lens = d_context_lens_.as<std::int32_t>();
        a.max_context = plan_.max_context;
        a.partition_tokens = partition_tokens_;
        a.workspace = workspace_bytes_ ? attn_workspace_.as() : nullptr;
        a.workspace_bytes = workspace_bytes_;
        a.out = B(attn_) + first * attn_w;
        a.out_stride = attn_w;
        cuda_attention_decode_launch(c, a, stream_);
        return;
      }
      case OpKind::swiglu:
        if (what != "swiglu" && what != "experts.swiglu") break;
        cuda_swiglu_launch(B(gate_up_), what == "swiglu" ? T : T * m_.moe.experts_per_token, tl_.ffn, B(act_), stream_);
        return;
      case OpKind::moe_router_topk:
        cuda_moe_topk_launch(router_logits_.as<float>(), m_.moe_sigmoid_routing() ? l->router_bias.as<float>() : nullptr, T, m_.moe.experts,
                             m_.moe.experts_per_token, topk_ids_.as<std::int32_t>(), topk_weights_.as<float>(), stream_);
        return;
      case OpKind::moe_permute: {
        // Expert order (offsets, rows) and the rows gathered into it (the embedding kernel on the
        // source rows). Unless the expert GEMMs run grouped, the offsets then go back to the host:
        // each expert's GEMM is launched with its own M, and this op's time includes that round trip.
        const int E = m_.moe.experts, k = m_.moe.experts_per_token;
        cuda_moe_permute_launch(topk_ids_.as<std::int32_t>(), T * k, E, k, moe_offsets_.as<std::int32_t>(), moe_position_.as<std::int32_t>(),
                                moe_order_.as<std::int32_t>(), moe_source_rows_.as<std::int32_t>(), moe_active_.as<std::int32_t>(), stream_);
        cuda_embedding_launch(B(normed_), T, H, moe_source_rows_.as<std::int32_t>(), T * k, B(x_perm_), stream_);
        if (moe_grouped()) return;  // the grouped GEMMs read the offsets on the device
        RACKSIM_CUDA_CHECK(cudaMemcpyAsync(moe_offsets_host_.data(), moe_offsets_.as(), z(E + 1) * 4, cudaMemcpyDeviceToHost, stream_));
        RACKSIM_CUDA_CHECK(cudaStreamSynchronize(stream_));
        if (moe_offsets_host_[0] != 0 || moe_offsets_host_[z(E)] != T * k)
          throw Error(ExitCode::internal, text("experts.permute: expert offsets run from ", moe_offsets_host_[0], " to ", moe_offsets_host_[z(E)],
                                            ", not 0 to ", T * k, " assignments"));
        // The plans of this step's expert GEMMs (a row count per expert, known only now), made here
        // as prepare_plans makes the dense ones: inside this op's time, not the GEMMs'.
        // Each at the alignment its rows start at in the expert-ordered buffers (as moe_gemm runs them).
        for (int e = 0; e < E; ++e) {
          const I first = moe_offsets_host_[z(e)], rows = moe_offsets_host_[z(e) + 1] - first;
          if (rows < 1) continue;
          prepare_linear_plan(rows, linear_shapes_[2], {lt_alignment(B(x_perm_) + first * H), lt_alignment(B(gate_up_) + first * 2 * tl_.ffn)});
          prepare_linear_plan(rows, linear_shapes_[3], {lt_alignment(B(act_) + first * tl_.ffn), lt_alignment(B(expert_out_) + first * H)});
        }
        return;
      }
      case OpKind::moe_gemm: {
        // Expert e's rows offsets[e] .. offsets[e + 1] - 1 as one GEMM (none for an expert no token chose).
        const bool up = what == "experts.gate_up_proj";
        if (!up && what != "experts.down_proj") break;
        const I in_w = up ? H : tl_.ffn, out_w = up ? 2 * tl_.ffn : H;
        const Bf16* x = up ? B(x_perm_) : B(act_);
        Bf16* y = up ? B(gate_up_) : B(expert_out_);
        if (moe_grouped()) {  // one launch: the experts with rows (active), each its rows from the offsets, at most T
          fp4_gemm_mma_grouped_launch(x, moe_offsets_.as<std::int32_t>(), moe_active_.as<std::int32_t>(), m_.moe.experts, T,
                                      T * m_.moe.experts_per_token, out_w, in_w,
                                      (up ? l->gate_up_table : l->down_table).as<Fp4MmaExpert>(), y,
                                      mma_ws_.size() ? mma_ws_.as<float>() : nullptr, sm_count_, stream_);
          return;
        }
        for (int e = 0; e < m_.moe.experts; ++e) {
          const I first = moe_offsets_host_[z(e)], rows = moe_offsets_host_[z(e) + 1] - first;
          if (rows > 0) gemm(up ? l->expert_gate_up[z(e)] : l->expert_down[z(e)], x + first * in_w, rows, y + first * out_w);
        }
        return;
      }
      case OpKind::moe_finalize:
        cuda_moe_finalize_launch(B(expert_out_), moe_position_.as<std::int32_t>(), topk_weights_.as<float>(), T, m_.moe.experts_per_token, H,
                                 B(branch_), stream_);
        return;
      case OpKind::all_reduce:
        if (!tp_) break;
        if (what == "qk_norm_all_reduce") {
          // MiniMax-M2: this rank's sums of squares of its q and k values per row, summed over the
          // ranks (2 FP32 per row: the graph's 8 bytes x T), for qk_norm.
          cuda_qk_sum_squares_launch(B(qkv_), T, qkv_w, qh * hd, tl_.kv_heads * hd, qk_sums_.as<float>(), stream_);
          tp_->all_reduce_sum_f32(qk_sums_.as(), z(2 * T), stream_);
          return;
        }
        // Row-parallel o_proj / down_proj (or the experts' down GEMMs and the finalize) left this
        // rank's partial sum in branch_.
        tp_->all_reduce_sum_bf16(branch_.as(), z(T * H), stream_);
        return;
      case OpKind::all_gather: {
        // Every rank's [S x vocab/tp] slice, rank-major, then laid side by side as [S x vocab] rows.
        if (!tp_) break;
        const I V = tl_.vocab;
        tp_->all_gather_f32(local_logits_.as(), gathered_.as(), z(S * V), stream_);
        for (int r = 0; r < o_.tp_size; ++r)
          RACKSIM_CUDA_CHECK(cudaMemcpy2DAsync(logits_.as<float>() + I{r} * V, z(m_.vocab) * 4, gathered_.as<float>() + I{r} * S * V, z(V) * 4,
                                               z(V) * 4, z(S), cudaMemcpyDeviceToDevice, stream_));
        return;
      }
      case OpKind::residual_add:
        cuda_residual_add_launch(B(hidden_), B(branch_), T * H, stream_);
        return;
      case OpKind::sampling:
        cuda_argmax_launch(logits_.as<float>(), S, m_.vocab, next_.as<std::int32_t>(), stream_);
        return;
      default:
        break;
    }
    throw InputError(text("CUDA step executor: op '", op.name, "' (", to_string(op.kind), ") is not supported"));
  }

  ModelConfig m_;
  Precision p_;
  CudaStepOptions o_;
  BlockPool pool_;
  int device_ = 0;
  Stream stream_holder_;
  LtHandle lt_holder_;
  PagedKvLayout kv_layout_;
  std::string describe_;
  cudaStream_t stream_ = nullptr;
  cublasLtHandle_t lt_ = nullptr;
  int sm_count_ = 1;
  int min_cd_align_ = 256;  ///< the least alignment of a native GEMM's y: 16 with MoE experts (native_plan)
  Fp4LargeM large_m_;
  DeviceBytes workspace_, attn_workspace_, act_q_, act_scales_, mma_ws_;
  std::vector<std::pair<I, I>> linear_shapes_;  ///< (out, in) of qkv, o, gate_up, down
  Fp4GemmChoice fp4_;
  NativeGemmRows native_rows_;  ///< the rows each native GEMM shape runs at, and which ran padded
  std::vector<Layer> layers_;
  DeviceBytes embed_, lm_head_, final_norm_;
  DeviceBytes hidden_, normed_, branch_, qkv_, attn_, gate_up_, act_, sampled_x_, logits_, next_, local_logits_, gathered_;
  // MoE: expert-ordered input rows, the down GEMMs' rows, router logits, the routing (ids and
  // weights per assignment) and its order (moe_expert_order), and the offsets on the host.
  DeviceBytes x_perm_, expert_out_, router_logits_, topk_ids_, topk_weights_, moe_position_, moe_order_, moe_source_rows_, moe_offsets_, moe_active_;
  DeviceBytes qk_sums_;  // MiniMax-M2 under TP: [rows x 2] FP32 sums of squares, all-reduced
  std::vector<std::int32_t> moe_offsets_host_;
  DeviceTpComm* tp_ = nullptr;  ///< null without tensor parallelism
  TpLayout tl_;                 ///< this rank's heads, KV heads, FFN and vocabulary slice
  DeviceBytes d_tokens_, d_positions_, d_slots_, d_sampled_, d_decode_tables_, d_context_lens_, d_segments_, d_prefill_tables_;
  std::map<std::tuple<int, int, I, I, I, int, int>, std::unique_ptr<LtPlan>> plans_;  ///< (A/B type, D type, m, n, k, x and y alignment)
  StepPlan plan_;
  I partition_tokens_ = 0;
  std::size_t workspace_bytes_ = 0;
  std::vector<Op> ops_;  ///< the last step that ran to the end (what replay_last_step captures)
  std::vector<bool> fused_;  ///< per op: a residual add run fused with the RMSNorm after it (RACKSIM_FUSE_NORM)
  std::map<std::tuple<int, I, I, bool>, Fp4MmaKnobs> tuned_;  ///< (fp4_mma_tune_class, n, k, with the SwiGLU) -> the tuner's pick (RACKSIM_FP4_MMA_TUNE=on)
  std::string tuned_picks_;  ///< the picks in words, without times (tuned_picks())
  std::vector<bool> fused_swiglu_;  ///< per op: a gate_up GEMM run with the SwiGLU after it (RACKSIM_FUSE_SWIGLU)
  bool swiglu_fused_ = false;       ///< the last such GEMM's reduce wrote the SwiGLU (fp4_gemm_mma_swiglu_launch)
  std::vector<cudaEvent_t> events_;
  cudaGraphExec_t graph_exec_ = nullptr;
};

}  // namespace

std::unique_ptr<StepBackend> make_cuda_step(const ModelConfig& model, const Precision& precision, const CudaStepOptions& options) {
  return std::make_unique<CudaStep>(model, precision, options);
}

DeviceMemoryInfo device_memory(int device) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || device < 0 || device >= count)
    throw Error(ExitCode::infeasible, text("no CUDA device: cuda:", device, " asked, ", count, " visible"));
  RACKSIM_CUDA_CHECK(cudaSetDevice(device));
  std::size_t free = 0, total = 0;
  RACKSIM_CUDA_CHECK(cudaMemGetInfo(&free, &total));
  return {static_cast<double>(free), static_cast<double>(total)};
}

}  // namespace racksim::exec::cuda
