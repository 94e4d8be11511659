#pragma once
// Hopper's fused FP4-weight GEMM on tensor cores (compiled only with RACKSIM_CUDA; fp4_gemm_mma.cu).
// Plain C++ interface so that host code never includes CUDA headers. The launch geometry and the
// split over K are decided on the host by fp4_mma_plan (racksim/exec/fp4_gemm_path.hpp), which the
// CPU tests check.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "racksim/exec/fp4_gemm_path.hpp"

namespace racksim::exec::cuda {

class DeviceBytes;  // device_buffer.cuh

/// Row-major NVFP4 (`packed` n x k/2 bytes, element 0 in the low nibble; `scales` n x k/16 UE4M3
/// codes) -> the fused kernel's tiled layout (fp4_gemm_path.hpp, fp4_mma_tiling(n, k) bytes in
/// `codes` and `tiled_scales`, zeros past n and k). k % 32 == 0, else InputError. On `stream`,
/// which it then synchronizes: the fused GEMM loads its first weight spans before its PDL wait
/// (pdl.cuh: weights are written before any step), so under RACKSIM_PDL=on a GEMM launched right
/// after the conversion could otherwise read tiles not yet visible. A one-time conversion (model
/// load, a bench case's setup, a test), never inside a CUDA graph capture.
void fp4_mma_tile_launch(const std::uint8_t* packed, const std::uint8_t* scales, std::int64_t n, std::int64_t k, std::uint8_t* codes,
                         std::uint8_t* tiled_scales, void* stream);

/// Tiled NVFP4 -> row-major BF16 bits [n x k] (E2M1 value x UE4M3 x tensor_scale, rounded once):
/// the large-M path's dequantize when the weight is held tiled. On `stream`.
void fp4_mma_dequant_bf16_launch(const std::uint8_t* codes, const std::uint8_t* tiled_scales, std::int64_t n, std::int64_t k,
                                 float tensor_scale, std::uint16_t* out, void* stream);

/// Tiled NVFP4 -> row-major E4M3 codes [n x k] of E2M1 value x UE4M3 / 8
/// (act::nvfp4_e4m3_weight_code): the large-M path's dequantize under RACKSIM_FP4_LARGE_M=fp8,
/// the tensor scale x 8 left to the GEMM's alpha. On `stream`. With `amax_x` (BF16 bits,
/// amax_count values, a multiple of 8), the same launch also runs the activations' amax pass into
/// `amax_partials` (lt_plan.cuh amax_partial_block; then quantize_bf16_e4m3_pow2 with amax_done).
void fp4_mma_dequant_e4m3_launch(const std::uint8_t* codes, const std::uint8_t* tiled_scales, std::int64_t n, std::int64_t k,
                                 std::uint8_t* out, void* stream, const std::uint16_t* amax_x = nullptr, std::int64_t amax_count = 0,
                                 float* amax_partials = nullptr);

/// y[m x n] (BF16 bits) = x[m x k] (BF16 bits) times W^T for an NVFP4 weight W [n x k] in the
/// tiled layout (`packed`: its codes, `scales`: its tiled scales; fp4_mma_tile_launch),
/// `tensor_scale` its FP32 decode scale. x is converted to FP16
/// for the MMA (exact for BF16 values of magnitude 2^-14 .. 65504; larger ones overflow: the
/// decode activations of the models measured are far inside), the products are summed in FP32 and
/// y rounded once to BF16. Requires fp4_mma_supported(m, n, k); `workspace` holds
/// fp4_mma_plan(m, n, k, sms).workspace_bytes (null when that is 0); x, packed and y 16-byte aligned.
/// Launched on `stream` (a cudaStream_t); checks the launch errors only. Under `knobs` when not
/// null (the tuner's pick, fp4_mma_tune), else the environment's (fp4_mma_env_knobs).
void fp4_gemm_mma_launch(const std::uint16_t* x, std::int64_t m, std::int64_t n, std::int64_t k, const std::uint8_t* packed,
                         const std::uint8_t* scales, float tensor_scale, std::uint16_t* y, float* workspace, int sms, void* stream,
                         const Fp4MmaKnobs* knobs = nullptr);

/// The variant knobs RACKSIM_FP4_MMA_* set (fp4_mma_knobs), read once.
[[nodiscard]] const Fp4MmaKnobs& fp4_mma_env_knobs();

/// Allocates and zeroes the current device's counters for RACKSIM_FP4_MMA_REDUCE=serial
/// (fp4_gemm_path.hpp fp4_mma_knobs), once per device; a launch does it itself when not capturing.
/// Before capturing a graph that may hold a serial launch (the step executor calls it when the
/// knob or the tuner may choose one).
void fp4_mma_serial_prepare();

/// True when this build has sm_90a code and the current device is a Hopper (compute capability
/// 9): where RACKSIM_FP4_MMA_MMA=wgmma can run.
[[nodiscard]] bool fp4_mma_wgmma_available();

/// CTAs per SM (the occupancy API, clamped to 1..8) of the kernel fp4_gemm_mma_launch runs under
/// `knobs` at `tiles` (1, 2, 4, 8) and `depth` (1, 2) on the current device: the figure its
/// whole-wave split plans with; under RACKSIM_FP4_MMA_CTAS, of the launch padded for the cap.
[[nodiscard]] int fp4_mma_resident_per_sm(int tiles, int depth, const Fp4MmaKnobs& knobs);

/// What fp4_mma_tune measured: the distinct launches tried (the environment's knobs first), each
/// one's median time, and the index fp4_mma_tune_pick chose.
struct Fp4MmaTuneResult {
  std::vector<Fp4MmaKnobs> candidates;
  std::vector<double> median_s;
  std::size_t pick = 0;
};

/// Times fp4_gemm_mma_launch of m x n x k (m <= kFp4MmaLaunchM) under each of
/// fp4_mma_tune_candidates(fp4_mma_env_knobs(), m, fp4_mma_wgmma_available()) that launches
/// something the earlier ones do not (fp4_mma_same_launch, at each kernel's occupancy on the
/// device): one untimed launch of each, then `reps` rounds over all of them, each launch after
/// a read of all of `flush` (evict_l2; null: none; 2 x L2 bytes make the weights come from HBM,
/// as they do in a step, with no dirty lines left to write back) and timed alone by CUDA events;
/// medians (timing_stats). The arguments as fp4_gemm_mma_launch
/// (y receives the product; the workspace of fp4_mma_plan(m, n, k, sms) serves every candidate).
/// With `act` (m x n / 2 BF16), each candidate is timed as fp4_gemm_mma_swiglu_launch runs a
/// gate_up (RACKSIM_FUSE_SWIGLU): the SwiGLU in the split-K reduce, or, where the variant does not
/// split K, swiglu_launch after it, inside the timed pair: a variant that drops the split pays
/// for the SwiGLU launch it brings back. Synchronizes `stream`. InputError if reps < 1.
/// The pick follows from timings: two runs may pick differently where variants are within noise,
/// and the variants sum K in different orders, so their outputs differ in the last bits.
[[nodiscard]] Fp4MmaTuneResult fp4_mma_tune(const std::uint16_t* x, std::int64_t m, std::int64_t n, std::int64_t k, const std::uint8_t* packed,
                                            const std::uint8_t* scales, float tensor_scale, std::uint16_t* y, float* workspace, int sms,
                                            void* stream, int reps, DeviceBytes* flush, std::uint16_t* act = nullptr);

/// fp4_gemm_mma_launch of a gate_up weight (n = 2 x ffn rows: gate, then up) with the SwiGLU
/// after it (RACKSIM_FUSE_SWIGLU). Where the launch is one and splits K (m <= 64), its split-K
/// reduce writes act [m x ffn] (BF16 bits) = silu(gate) x up from the FP32 partials, bit for bit
/// what swiglu_launch would compute from the BF16 y, y is left as it was (one launch fewer, and
/// y's m x n BF16 neither written nor read), and it returns true; so does the serial sum
/// (RACKSIM_FP4_MMA_REDUCE=serial) where ffn is a multiple of 128 (its last CTA per gate/up pair
/// of row blocks writes act; at other ffn it writes y). Otherwise it writes y as
/// fp4_gemm_mma_launch does and returns false: the caller runs the SwiGLU. As
/// fp4_gemm_mma_launch; InputError if n is odd or y or act is null.
bool fp4_gemm_mma_swiglu_launch(const std::uint16_t* x, std::int64_t m, std::int64_t n, std::int64_t k, const std::uint8_t* packed,
                                const std::uint8_t* scales, float tensor_scale, std::uint16_t* y, std::uint16_t* act, float* workspace, int sms,
                                void* stream, const Fp4MmaKnobs* knobs = nullptr);

/// One expert of a grouped launch (a MoE layer's experts): its weight in the tiled layout and its
/// FP32 tensor scale.
struct Fp4MmaExpert {
  const std::uint8_t* codes = nullptr;
  const std::uint8_t* tiled_scales = nullptr;
  float tensor_scale = 1.0f;
};

/// A MoE layer's expert GEMMs in one launch: expert e's rows offsets[e] .. offsets[e + 1] - 1 of
/// x [total_rows x k] and y [total_rows x n] (BF16 bits) times experts[e]'s weight, both arrays on
/// the device (offsets [n_experts + 1], int32, as moe_expert_order writes them; offsets[n_experts]
/// = total_rows). The kernel's tiles and K split are fp4_mma_plan(max_m, n, k,
/// fp4_mma_grouped_sms(n_experts, total_rows, sms))'s (the SMs shared by the slots), the split's
/// FP32 partials (each already times its expert's scale) in `workspace`
/// (fp4_mma_grouped_workspace_bytes; null when that is 0), summed by the reduce kernel. Every
/// expert's row count must be <= max_m (the top-k routing gives an expert at most one row per
/// token); a CTA that finds more traps (a launch error, never silently dropped rows). `active`
/// (device, as moe_expert_order writes MoeOrder::active: the experts with rows, then -1, over
/// moe_active_slots(n_experts, total_rows) slots) gives the grid one slice of CTAs per slot, not per
/// expert: at MiniMax-M2's one decode token 8 slices instead of 256, the rest of which would only
/// read two offsets and exit. An expert with no rows (a slot of -1) exits at once.
/// Requires fp4_mma_grouped_supported(max_m, n, k); x and y 16-byte aligned.
/// On `stream`; checks the launch errors only. Graph-capturable: no host-side row counts.
void fp4_gemm_mma_grouped_launch(const std::uint16_t* x, const std::int32_t* offsets, const std::int32_t* active, int n_experts,
                                 std::int64_t max_m,
                                 std::int64_t total_rows, std::int64_t n, std::int64_t k, const Fp4MmaExpert* experts, std::uint16_t* y,
                                 float* workspace, int sms, void* stream);

/// The same on host arrays on the current device: experts' weights row-major (packed, scales,
/// tensor scale each), tiled on the device; returns y [offsets.back() x n] (BF16 bits).
void fp4_gemm_mma_grouped(const std::uint16_t* x, const std::vector<std::int32_t>& offsets, std::int64_t max_m, std::int64_t n, std::int64_t k,
                          const std::vector<const std::uint8_t*>& packed, const std::vector<const std::uint8_t*>& scales,
                          const std::vector<float>& tensor_scales, std::uint16_t* y);

/// The same on host arrays on the current device, W row-major: copies in, converts W to the tiled
/// layout on the device, runs with the device's multiprocessor count, copies back, synchronizes
/// (the [cuda] tests). With `act`, fp4_gemm_mma_swiglu_launch instead (then swiglu_launch where it
/// returns false, as the step executor does): act [m x n / 2] copied back, y untouched, and
/// `fused` (if not null) set to what it returned. Under `knobs` when not null.
void fp4_gemm_mma(const std::uint16_t* x, std::int64_t m, std::int64_t n, std::int64_t k, const std::uint8_t* packed,
                  const std::uint8_t* scales, float tensor_scale, std::uint16_t* y, std::uint16_t* act = nullptr, bool* fused = nullptr,
                  const Fp4MmaKnobs* knobs = nullptr);

/// The tiling and the tiled dequantize on host arrays (the [cuda] tests): W row-major in, the
/// tiled bytes (`codes`, `tiled_scales`, resized) and BF16 bits [n x k] (`out`) back, and, when
/// `out_e4m3` is not null, the E4M3 dequantize's codes [n x k] (fp4_mma_dequant_e4m3_launch).
void fp4_mma_tile_dequant(const std::uint8_t* packed, const std::uint8_t* scales, std::int64_t n, std::int64_t k, float tensor_scale,
                          std::vector<std::uint8_t>& codes, std::vector<std::uint8_t>& tiled_scales, std::uint16_t* out,
                          std::uint8_t* out_e4m3 = nullptr);

/// The large-M path (fp4_large_m.cuh) on host arrays on the current device: y[m x n] (BF16 bits)
/// = x[m x k] (BF16 bits) W^T, W row-major NVFP4 (held tiled when fp4_mma_supported(1, n, k), as
/// the executor holds it), dequantized to BF16, or with fp8 to E4M3 with x quantized to E4M3; then
/// `x_codes` (m x k) and `x_scale` get the device's E4M3 activations (fp8 only; the [cuda] tests).
void fp4_gemm_large_m(const std::uint16_t* x, std::int64_t m, std::int64_t n, std::int64_t k, const std::uint8_t* packed,
                      const std::uint8_t* scales, float tensor_scale, bool fp8, std::uint16_t* y, std::uint8_t* x_codes, float* x_scale);

}  // namespace racksim::exec::cuda
