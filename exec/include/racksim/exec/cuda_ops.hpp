#pragma once
/// Host entry points to the CUDA kernels, callable from plain C++ in every build: without the
/// CUDA backend they throw an Error saying so (backend_registry.cpp routes them).
///
/// Two layers for the step ops (docs/executor.md, "CUDA step ops"):
/// - `cuda_*_launch`: device pointers and a stream; they check their arguments (InputError),
///   launch, check the launch error and return without synchronizing. BF16 tensors are arrays of
///   BF16 bit patterns (`Bf16`), row-major. Outputs must not alias inputs unless a function says
///   it works in place.
/// - host wrappers of the same names without `_launch`: host arrays in (BF16 values as floats:
///   rounded to BF16 on the way in, exact for BF16-valued input), device 0, results copied back.
///   For tests and small tools, not for a serving loop.

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "racksim/exec/cpu_ops.hpp"
#include "racksim/exec/fp4_gemm_path.hpp"
#include "racksim/exec/fp4_matrix.hpp"
#include "racksim/exec/paged_kv.hpp"

namespace racksim::exec {

/// y[m x w.rows] = x[m x w.cols] w^T on CUDA device 0 with the Hopper FP4-weight small-M kernel
/// (E2M1 dequantized in registers); w NVFP4 with cols % 16 == 0, 1 <= m <= 16. FP32 in and out.
[[nodiscard]] std::vector<float> cuda_fp4_gemm_small_m(std::span<const float> x, std::int64_t m, const Fp4Matrix& w);

/// y[m x w.rows] = x[m x w.cols] w^T on the current CUDA device with Hopper's fused FP4-weight
/// tensor-core kernel (exec/cuda/fp4_gemm_mma.hpp): x rounded to BF16 on the way in, y BF16
/// values as floats. InputError unless w is NVFP4 and fp4_mma_supported(m, w.rows, w.cols). With
/// `swiglu` (w a gate_up weight, rows = 2 x ffn) the fused SwiGLU variant
/// (fp4_gemm_mma_swiglu_launch, RACKSIM_FUSE_SWIGLU): silu(gate) x up [m x rows / 2] instead, and
/// `fused` (if not null) says whether the split-K reduce wrote it (else the SwiGLU kernel did).
/// Under `knobs` when not null (a variant, as the tuner runs it), else the environment's.
[[nodiscard]] std::vector<float> cuda_fp4_gemm_mma(std::span<const float> x, std::int64_t m, const Fp4Matrix& w, bool swiglu = false,
                                                   bool* fused = nullptr, const Fp4MmaKnobs* knobs = nullptr);
/// Whether RACKSIM_FP4_MMA_MMA=wgmma can run here (sm_90a code and a Hopper device).
[[nodiscard]] bool cuda_fp4_mma_wgmma_available();
/// CTAs per SM of the fused GEMM's kernel at `tiles` and `depth` under `knobs` on the current
/// device (exec/cuda/fp4_gemm_mma.hpp fp4_mma_resident_per_sm).
[[nodiscard]] int cuda_fp4_mma_resident_per_sm(int tiles, int depth, const Fp4MmaKnobs& knobs);
/// A MoE layer's expert GEMMs in one grouped launch of that kernel (fp4_gemm_mma_grouped_launch):
/// rows offsets[e] .. offsets[e + 1] - 1 of x [offsets.back() x cols] times experts[e] (NVFP4, all
/// of one shape), tiles and K split of a max_m-row GEMM (every expert's count <= max_m); y [rows x
/// experts' rows] BF16 values as floats. InputError unless the shapes, offsets and
/// fp4_mma_grouped_supported(max_m, rows, cols) hold.
[[nodiscard]] std::vector<float> cuda_fp4_gemm_mma_grouped(std::span<const float> x, std::span<const std::int32_t> offsets, std::int64_t max_m,
                                                          const std::vector<Fp4Matrix>& experts);

/// w (NVFP4, cols % 32 == 0) converted to the fused kernel's tiled layout on the current CUDA
/// device (fp4_mma_tile_launch; the buffers poisoned first), returned in `codes` and
/// `tiled_scales`, and dequantized from it to BF16 by the large-M path's kernel
/// (fp4_mma_dequant_bf16_launch), returned as floats [rows x cols]; with `e4m3_codes`, also
/// the FP8 variant's dequantize from the tiles (fp4_mma_dequant_e4m3_launch), its E4M3 codes.
[[nodiscard]] std::vector<float> cuda_fp4_mma_tile_dequant(const Fp4Matrix& w, std::vector<std::uint8_t>& codes,
                                                           std::vector<std::uint8_t>& tiled_scales,
                                                           std::vector<std::uint8_t>* e4m3_codes = nullptr);

/// y[m x rows] = x[m x cols] w^T on CUDA device 0 through Hopper's large-M path (dequantize W,
/// then cuBLASLt; exec/cuda/fp4_large_m.cuh), whatever M: BF16, or with fp8 E4M3 W and x and
/// cuBLASLt FP8 (RACKSIM_FP4_LARGE_M=fp8), whose device-quantized x codes and scale then go to
/// `x_codes` and `x_scale` when given. x rounded to BF16 on the way in; y BF16 values as floats.
/// InputError unless w is NVFP4, cols % 16 == 0 and x holds m x cols values.
[[nodiscard]] std::vector<float> cuda_fp4_gemm_large_m(std::span<const float> x, std::int64_t m, const Fp4Matrix& w, bool fp8,
                                                       std::vector<std::uint8_t>* x_codes = nullptr, float* x_scale = nullptr);

/// The native NVFP4 path's activations (fp4_gemm_path.hpp): packed E2M1 codes and the UE4M3
/// scales in cuBLASLt's layout (fp4::cublaslt_scale_offset, padding zero).
struct Nvfp4Activations {
  std::vector<std::uint8_t> packed;
  std::vector<std::uint8_t> scales;
};
/// x [rows x cols] (BF16 values as floats, rounded to BF16 on the way in) quantized on CUDA device
/// 0 by the step executor's kernel under encode scale `encode_scale`; what quantize_nvfp4_static
/// and swizzle_scales_cublaslt give on the host, bit for bit. InputError unless rows >= 1 and
/// cols % 16 == 0.
[[nodiscard]] Nvfp4Activations cuda_quantize_nvfp4_activations(std::span<const float> x, std::int64_t rows, std::int64_t cols,
                                                               float encode_scale);

// ---- Device memory and streams -------------------------------------------------------------

/// A CUDA stream (cudaStream_t) as an opaque pointer; nullptr is the legacy default stream.
using CudaStream = void*;
/// A BF16 value on the device, as its bit pattern (activation_formats.hpp).
using Bf16 = std::uint16_t;

/// Memory on the current CUDA device, freed when destroyed; move-only. The copies are
/// synchronous (cudaMemcpy: they wait for the legacy default stream, not for non-blocking
/// streams: synchronize those first).
class DeviceMemory {
 public:
  DeviceMemory() = default;
  /// `bytes` of device memory (cudaMalloc: 256-byte aligned); Error without CUDA or a device.
  explicit DeviceMemory(std::size_t bytes);
  ~DeviceMemory();
  DeviceMemory(DeviceMemory&& other) noexcept;
  DeviceMemory& operator=(DeviceMemory&& other) noexcept;
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;

  [[nodiscard]] void* get() const noexcept { return ptr_; }
  template <class T>
  [[nodiscard]] T* as() const noexcept {
    return static_cast<T*>(ptr_);
  }
  [[nodiscard]] std::size_t bytes() const noexcept { return bytes_; }
  /// Copies `bytes` host bytes to offset `offset`; InputError past the end.
  void upload(const void* host, std::size_t bytes, std::size_t offset = 0);
  /// Copies `bytes` bytes at `offset` to the host; InputError past the end.
  void download(void* host, std::size_t bytes, std::size_t offset = 0) const;
  /// Sets every byte to zero.
  void zero();

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

/// Waits for `stream`'s work; Error with CUDA's message if a kernel on it failed.
void cuda_stream_synchronize(CudaStream stream);
/// Streaming multiprocessors of the current device (decode_partition_tokens' `sm_count`).
[[nodiscard]] int cuda_sm_count();

// ---- Elementwise step ops on device arrays -------------------------------------------------

/// y = x / sqrt(mean(x^2) + eps) * weight per row (cpu_ops rmsnorm); x, y [rows x width], weight [width].
void cuda_rmsnorm_launch(const Bf16* x, const Bf16* weight, std::int64_t rows, std::int64_t width, float eps, Bf16* y,
                         CudaStream stream);
/// hidden = bf16(hidden + branch) (stored), then y = rmsnorm(hidden): residual_add then rmsnorm
/// in one pass over the rows (vLLM's fused_add_rms_norm). hidden [rows x width] in place.
void cuda_residual_add_rmsnorm_launch(Bf16* hidden, const Bf16* branch, const Bf16* weight, std::int64_t rows, std::int64_t width,
                                      float eps, Bf16* y, CudaStream stream);
/// Qwen3's QK-norm, in place: in each of `rows` rows (row_width apart), the first q_heads heads of
/// head_dim values RMS-normed with q_weight, the next kv_heads with k_weight (cpu_ops rmsnorm per head).
void cuda_head_rmsnorm_launch(Bf16* qkv, std::int64_t rows, std::int64_t row_width, std::int64_t q_heads, std::int64_t kv_heads,
                              std::int64_t head_dim, const Bf16* q_weight, const Bf16* k_weight, float eps, CudaStream stream);
/// hidden = bf16(hidden + branch) for `count` values, in place.
void cuda_residual_add_launch(Bf16* hidden, const Bf16* branch, std::int64_t count, CudaStream stream);
/// MiniMax-M2's QK-norm over a layer, first half: sums[2 r], sums[2 r + 1] = the sums of squares
/// of row r's first q_width values and its next k_width (cpu_ops qk_sum_squares); FP32 [rows x 2].
void cuda_qk_sum_squares_launch(const Bf16* qkv, std::int64_t rows, std::int64_t row_width, std::int64_t q_width, std::int64_t k_width,
                                float* sums, CudaStream stream);
/// Second half, in place (cpu_ops qk_layer_norm): q values x / sqrt(sum_q / q_count + eps) x
/// q_weight, k values likewise; `sums` the all-reduced sums of a TP group, or null for each row's
/// own (one GPU: then q_count and k_count must equal q_width and k_width).
void cuda_qk_layer_norm_launch(Bf16* qkv, std::int64_t rows, std::int64_t row_width, std::int64_t q_width, std::int64_t k_width,
                               const float* sums, std::int64_t q_count, std::int64_t k_count, const Bf16* q_weight, const Bf16* k_weight,
                               float eps, CudaStream stream);
/// Rotate-half RoPE in place on the first `rotated_heads` heads (q then k) of each qkv row (row
/// stride `row_width`): pairs (i, i + d/2) of each head's first d = rotary_dim values (even,
/// 2..head_dim; partial RoPE below head_dim), angle positions[row] x theta^(-2i/d) (cpu_ops
/// rope_rotate_half).
void cuda_rope_rotate_half_launch(Bf16* qkv, std::int64_t rows, std::int64_t row_width, std::int64_t rotated_heads,
                                  std::int64_t head_dim, std::int64_t rotary_dim, const std::int32_t* positions, double theta,
                                  CudaStream stream);
/// y[r, i] = silu(gate) x up from gate_up [rows x 2 ffn] (gate columns, then up); y [rows x ffn].
void cuda_swiglu_launch(const Bf16* gate_up, std::int64_t rows, std::int64_t ffn, Bf16* y, CudaStream stream);
/// y[r] = table[tokens[r]] (table [vocab x width]); an id outside 0..vocab-1 gives a zero row.
void cuda_embedding_launch(const Bf16* table, std::int64_t vocab, std::int64_t width, const std::int32_t* tokens, std::int64_t rows,
                           Bf16* y, CudaStream stream);
/// tokens[r] = argmax of logits row r (FP32 [rows x vocab]), the lowest id among equal maxima;
/// NaN logits are skipped.
void cuda_argmax_launch(const float* logits, std::int64_t rows, std::int64_t vocab, std::int32_t* tokens, CudaStream stream);

// ---- MoE routing (Mixtral's softmax over the top-k logits; MiniMax-M2's biased sigmoid) -------

/// The most experts and the largest top-k the MoE kernels take.
inline constexpr int kCudaMoeMaxExperts = 1024;
inline constexpr int kCudaMoeMaxTopK = 32;
/// Per token r: the k largest logits of row r (FP32 [rows x experts]; ties: the lower expert
/// id; NaN ranks below every number) and their softmax over those k, in rank order, to
/// expert_ids and weights [rows x k] (cpu_ops moe_top_k; expf, so within an ulp or two of it).
/// With `bias` (FP32 [experts], MiniMax-M2's routing bias): the k largest sigmoid(logit) +
/// bias, weighted sigmoid(logit) over their sum (cpu_ops moe_top_k_sigmoid).
void cuda_moe_topk_launch(const float* logits, const float* bias, std::int64_t rows, int experts, int k, std::int32_t* expert_ids,
                          float* weights, CudaStream stream);
/// moe_expert_order (cpu_ops.hpp) of the `assignments` expert ids (token-major, k per token) on
/// the device: offsets [experts + 1], position, order and source_rows [assignments], active
/// [moe_active_slots(experts, assignments)]. One CTA; the ids must be in 0..experts-1 (not
/// checked on the device).
void cuda_moe_permute_launch(const std::int32_t* expert_ids, std::int64_t assignments, int experts, int k, std::int32_t* offsets,
                             std::int32_t* position, std::int32_t* order, std::int32_t* source_rows, std::int32_t* active,
                             CudaStream stream);
/// y[t] = bf16(sum_j weights[t k + j] x expert_rows[position[t k + j]]) for t < rows, FP32 in
/// rank order without fused multiply-adds (CpuReference's experts.finalize); expert_rows and y
/// [.. x width] BF16.
void cuda_moe_finalize_launch(const Bf16* expert_rows, const std::int32_t* position, const float* weights, std::int64_t rows, int k,
                              std::int64_t width, Bf16* y, CudaStream stream);

// ---- Paged KV cache and attention on device arrays -----------------------------------------

/// One layer's paged K and V caches on the device (layout: paged_kv.hpp), 16-byte aligned.
struct DevicePagedKv {
  PagedKvLayout layout;
  void* k = nullptr;
  void* v = nullptr;
  float k_scale = 1.0f;  ///< fp8: K value = code x k_scale
  float v_scale = 1.0f;
};

/// Writes row r's K and V (qkv row r: K heads from column heads x head_dim, then V heads) to
/// cache slot slots[r] (kv_slot); a negative slot skips the row. FP8 caches store
/// e4m3_code(x / scale), exactly as HostPagedKv::store.
void cuda_kv_append_launch(const DevicePagedKv& cache, const Bf16* qkv, std::int64_t rows, std::int64_t row_width, std::int64_t heads,
                           const std::int32_t* slots, CudaStream stream);

/// Decode attention: one query token per sequence over its paged K/V.
struct AttentionDecodeArgs {
  const Bf16* q = nullptr;             ///< [batch rows x q_stride]; query heads at the start of a row (a qkv row works)
  std::int64_t q_stride = 0;
  std::int64_t batch = 0;
  std::int64_t heads = 0;              ///< query heads; kv_heads (the cache's) divides them, heads / kv_heads <= 16
  const std::int32_t* block_tables = nullptr;  ///< [batch x block_table_stride] block ids
  std::int64_t block_table_stride = 0;
  const std::int32_t* context_lens = nullptr;  ///< [batch] keys per sequence, new token included (1..max_context)
  std::int64_t max_context = 0;        ///< >= every context (sizes the grid)
  std::int64_t partition_tokens = 0;   ///< multiple of kAttentionKeyTile (decode_partition_tokens)
  void* workspace = nullptr;           ///< decode_workspace_bytes(...) FP32 scratch (none if 1 partition)
  std::size_t workspace_bytes = 0;
  Bf16* out = nullptr;                 ///< [batch rows x out_stride]; heads x head_dim written
  std::int64_t out_stride = 0;
};
/// Split-K decode attention (FlashDecoding): a CTA per (partition, KV head, sequence) serves all
/// query heads of its KV head; a second kernel merges the partitions by log-sum-exp.
void cuda_attention_decode_launch(const DevicePagedKv& cache, const AttentionDecodeArgs& args, CudaStream stream);

/// Prefill attention: causal attention of prefill chunks over the paged cache, after the
/// chunks' own K/V rows were appended.
struct AttentionPrefillArgs {
  const Bf16* q = nullptr;             ///< query rows (q_stride apart), heads at the start of a row
  std::int64_t q_stride = 0;
  std::int64_t heads = 0;              ///< query heads; kv_heads divides them, heads / kv_heads <= 64
  const PrefillSegment* segments = nullptr;  ///< [segment_count] on the device
  std::int64_t segment_count = 0;
  std::int64_t max_segment_tokens = 0; ///< >= every segment's tokens (sizes the grid)
  const std::int32_t* block_tables = nullptr;  ///< [segment_count x block_table_stride]
  std::int64_t block_table_stride = 0;
  Bf16* out = nullptr;                 ///< row q_row + i of segment s gets its token i's heads x head_dim
  std::int64_t out_stride = 0;
};
/// FlashAttention-style tiles on CUDA cores: a CTA holds a tile of query rows (tokens x the
/// query heads of one KV head) in shared memory and streams K/V tiles with an online softmax.
void cuda_attention_prefill_launch(const DevicePagedKv& cache, const AttentionPrefillArgs& args, CudaStream stream);

// ---- Host wrappers (device 0, synchronous) -------------------------------------------------

/// cuda_rmsnorm_launch on host rows: x [rows x weight.size()].
[[nodiscard]] std::vector<float> cuda_rmsnorm(std::span<const float> x, std::int64_t rows, std::span<const float> weight, float eps);
/// What the fused residual add and RMSNorm wrote: the new hidden rows and the normed rows.
struct ResidualNorm {
  std::vector<float> hidden;
  std::vector<float> normed;
};
[[nodiscard]] ResidualNorm cuda_residual_add_rmsnorm(std::span<const float> hidden, std::span<const float> branch, std::int64_t rows,
                                                     std::span<const float> weight, float eps);
[[nodiscard]] std::vector<float> cuda_residual_add(std::span<const float> hidden, std::span<const float> branch);
/// cuda_head_rmsnorm_launch on host rows [rows x row_width]; returns the whole array.
[[nodiscard]] std::vector<float> cuda_head_rmsnorm(std::span<const float> qkv, std::int64_t rows, std::int64_t row_width, std::int64_t q_heads,
                                                   std::int64_t kv_heads, std::span<const float> q_weight, std::span<const float> k_weight,
                                                   float eps);
/// Returns the whole rotated qkv array (rotary_dim 0: head_dim).
[[nodiscard]] std::vector<float> cuda_rope_rotate_half(std::span<const float> qkv, std::int64_t rows, std::int64_t row_width,
                                                       std::int64_t rotated_heads, std::int64_t head_dim,
                                                       std::span<const std::int32_t> positions, double theta, std::int64_t rotary_dim = 0);
/// cuda_qk_sum_squares_launch on host rows: [rows x 2].
[[nodiscard]] std::vector<float> cuda_qk_sum_squares(std::span<const float> qkv, std::int64_t rows, std::int64_t row_width,
                                                     std::int64_t q_width, std::int64_t k_width);
/// cuda_qk_layer_norm_launch on host rows (sums empty: each row's own); returns the whole array.
[[nodiscard]] std::vector<float> cuda_qk_layer_norm(std::span<const float> qkv, std::int64_t rows, std::int64_t row_width,
                                                    std::int64_t q_width, std::int64_t k_width, std::span<const float> sums,
                                                    std::int64_t q_count, std::int64_t k_count, std::span<const float> q_weight,
                                                    std::span<const float> k_weight, float eps);
[[nodiscard]] std::vector<float> cuda_swiglu(std::span<const float> gate_up, std::int64_t rows, std::int64_t ffn);
/// table [vocab x width]; InputError for an id outside the table.
[[nodiscard]] std::vector<float> cuda_embedding(std::span<const float> table, std::int64_t width, std::span<const std::int32_t> tokens);
/// logits [rows x vocab].
[[nodiscard]] std::vector<std::int32_t> cuda_argmax(std::span<const float> logits, std::int64_t rows);
/// cuda_moe_topk_launch on host logits [rows x experts]: rows x k (expert, weight), rank order;
/// `bias` empty: softmax routing; else [experts]: the biased sigmoid routing.
[[nodiscard]] std::vector<ExpertWeight> cuda_moe_topk(std::span<const float> logits, std::int64_t rows, int experts, int k,
                                                      std::span<const float> bias = {});
/// cuda_moe_permute_launch on host expert ids (token-major, k per token).
[[nodiscard]] MoeOrder cuda_moe_permute(std::span<const std::int32_t> expert_ids, int experts, int k);
/// cuda_moe_finalize_launch: expert_rows [assignments x width] (BF16 values as floats, rounded
/// on the way in), position and weights [rows x k]; returns [rows x width].
[[nodiscard]] std::vector<float> cuda_moe_finalize(std::span<const float> expert_rows, std::span<const std::int32_t> position,
                                                   std::span<const float> weights, std::int64_t rows, int k, std::int64_t width);
/// Appends rows to a host cache (uploaded, appended on the device, downloaded into `cache`).
void cuda_kv_append(HostPagedKv& cache, std::span<const float> qkv, std::int64_t rows, std::int64_t row_width, std::int64_t heads,
                    std::span<const std::int32_t> slots);
/// Decode attention of `batch` query rows (q_stride apart) over a host cache; [batch x heads x
/// head_dim]. partition_tokens 0 picks decode_partition_tokens for device 0.
[[nodiscard]] std::vector<float> cuda_attention_decode(const HostPagedKv& cache, std::span<const float> q, std::int64_t q_stride,
                                                       std::int64_t batch, std::int64_t heads, std::span<const std::int32_t> block_tables,
                                                       std::int64_t block_table_stride, std::span<const std::int32_t> context_lens,
                                                       std::int64_t partition_tokens = 0);
/// Prefill attention of `rows` query rows over a host cache; [rows x heads x head_dim] (rows no
/// segment covers stay zero).
[[nodiscard]] std::vector<float> cuda_attention_prefill(const HostPagedKv& cache, std::span<const float> q, std::int64_t q_stride,
                                                        std::int64_t rows, std::int64_t heads, std::span<const PrefillSegment> segments,
                                                        std::span<const std::int32_t> block_tables, std::int64_t block_table_stride);

}  // namespace racksim::exec
