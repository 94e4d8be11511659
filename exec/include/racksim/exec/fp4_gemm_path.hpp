#pragma once
/// Which kernels run the CUDA step executor's NVFP4 linear layers, decided on the host from the
/// device's compute capability and the cuBLASLt version (plain C++, unit-tested on the CPU; the
/// Blackwell path cannot run on the Hopper machines this project measures on).
///   native: activations quantized to NVFP4 on the device (a static encode scale, one UE4M3
///           scale per 16 values written straight into cuBLASLt's swizzled layout), then the
///           cuBLASLt block-scaled FP4 x FP4 GEMM (CUBLASLT_MATMUL_MATRIX_SCALE_VEC16_UE4M3,
///           sm_100 / sm_103, cuBLASLt >= 12.8), every M (an M without a cuBLASLt plan runs
///           padded to more rows: NativeGemmRows);
///   hopper: the fused FP4-weight tensor-core kernel (E2M1 dequantized in registers, mma.sync)
///           for M <= 128 and K % 32 == 0 (fp4_mma_plan), dequantize to BF16 + cuBLASLt BF16
///           above: any GPU the build targets.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "racksim/exec/fp4.hpp"
#include "racksim/exec/fp4_matrix.hpp"

namespace racksim::exec {

/// What `racksim exec --fp4-gemm` asks for.
enum class Fp4GemmMode {
  automatic,  ///< native where the device and cuBLASLt have it, else hopper
  native,     ///< native or an error (exit 3)
  hopper,     ///< the Hopper kernels on any GPU (to compare the two on Blackwell)
};

/// "auto", "native", "hopper".
[[nodiscard]] std::string_view to_string(Fp4GemmMode m) noexcept;
/// The mode named `s`, or nullopt.
[[nodiscard]] std::optional<Fp4GemmMode> parse_fp4_gemm_mode(std::string_view s) noexcept;

/// First cuBLASLt with block-scaled FP4 (CUDA 12.8 release notes: VEC16_UE4M3 and VEC32_UE8M0
/// scale modes, CUDA_R_4F_E2M1); cublasLtGetVersion() spells 12.8.0 as 120800.
inline constexpr std::size_t kCublasLtBlockScaledFp4Version = 120800;

/// The activations' NVFP4 encode scale s_in (x is stored as e2m1(x s_in / block scale)). 1: the
/// UE4M3 block scales then cover block maxima from 6 x 2^-9 = 0.0117 to 6 x 448 = 2688, where
/// post-RMSNorm and SwiGLU activations of unit scale lie. TensorRT-LLM calibrates one per layer
/// offline; racksim has no calibration data for random or generated weights.
inline constexpr float kActivationNvfp4EncodeScale = 1.0f;

/// cublasLtGetVersion() of the cuBLASLt this binary links (no device needed); 0 without CUDA built in.
[[nodiscard]] std::size_t cuda_cublaslt_version() noexcept;

/// The decision and why, in words (stated in `racksim exec` output and the measurement file).
struct Fp4GemmChoice {
  bool native = false;
  std::string reason;
};

/// Native needs compute capability 10.0 or 10.3 (the builds' sm_100a / sm_103a; other
/// Blackwell parts, sm_110 and sm_120, have no cubin here) and cuBLASLt >= 12.8. `automatic`
/// falls back to hopper with the reason; `native` without support is an Error (exit 3).
/// large_m_fp8 (RACKSIM_FP4_LARGE_M=fp8) only changes the Hopper reason's words for M > 128.
[[nodiscard]] Fp4GemmChoice choose_fp4_gemm(Fp4GemmMode mode, int sm_major, int sm_minor, std::size_t cublaslt_version,
                                            bool large_m_fp8 = false);

/// The same choice after the native path's plans were probed: `probe_error` non-empty (cuBLASLt
/// found no algorithm for one of the model's shapes) turns `automatic` into hopper, with the
/// error as the reason, and is an Error (exit 3) under `native`.
[[nodiscard]] Fp4GemmChoice after_probe(Fp4GemmMode mode, Fp4GemmChoice choice, const std::string& probe_error,
                                        bool large_m_fp8 = false);

/// Bytes of the native path's activation buffers for `rows` x `cols` (the largest linear input):
/// packed E2M1 (cols / 2 per row) and the swizzled scales (fp4::cublaslt_scale_bytes).
[[nodiscard]] std::int64_t native_activation_bytes(std::int64_t rows, std::int64_t cols) noexcept;

/// Row counts a native GEMM of `m` rows is tried at, in this order, when cuBLASLt has no plan at
/// `m`: the next multiples of 16, 32, 64 and 128 above m (cuBLASLt's FP4 tiles and the 128-row
/// scale tiles), then the powers of two above m, then max_rows (probed when the executor was made);
/// ascending, each in (m, max_rows], no repeats. The first with a plan costs the fewest extra rows.
/// m = 37, max_rows 1000: 48, 64, 128, 256, 512, 1000. Empty when m >= max_rows.
[[nodiscard]] std::vector<std::int64_t> native_padded_row_candidates(std::int64_t m, std::int64_t max_rows);

/// The rows a native GEMM of `m` rows runs at: m when `has_plan(m)`, else the first of
/// native_padded_row_candidates(m, max_rows) with a plan; nullopt when none has one.
/// InputError unless 1 <= m <= max_rows.
[[nodiscard]] std::optional<std::int64_t> native_gemm_rows(std::int64_t m, std::int64_t max_rows,
                                                           const std::function<bool(std::int64_t)>& has_plan);

/// A native GEMM y[m x n] = x[m x k] W^T that ran at `rows` > m rows (no cuBLASLt plan at m).
struct PaddedNativeGemm {
  std::int64_t m = 0, n = 0, k = 0;
  std::int64_t rows = 0;
  friend bool operator==(const PaddedNativeGemm&, const PaddedNativeGemm&) = default;
};

/// The rows each native GEMM shape runs at (native_gemm_rows), decided once per (m, n, k): the
/// probe (cuBLASLt's heuristic, host time) is asked at most once per (rows, n, k), so a serving
/// loop's new M costs the heuristic once, before the step's first timed op.
class NativeGemmRows {
 public:
  /// "" when cuBLASLt has a native plan for rows x n x k (the caller keeps it), else why not.
  using PlanProbe = std::function<std::string(std::int64_t rows, std::int64_t n, std::int64_t k)>;

  explicit NativeGemmRows(std::int64_t max_rows) : max_rows_(max_rows) {}

  /// The rows the GEMM m x n x k runs at (m, or padded: then recorded in padded() unless
  /// `record` is false, as for the start-up probe, where nothing runs). Error (internal:
  /// max_rows was probed, so this should not happen) naming the shape, the rows tried and
  /// cuBLASLt's answer at m when no row count has a plan.
  [[nodiscard]] std::int64_t rows(std::int64_t m, std::int64_t n, std::int64_t k, const PlanProbe& probe, bool record = true);
  /// The shapes that ran padded, in the order first met.
  [[nodiscard]] const std::vector<PaddedNativeGemm>& padded() const noexcept { return padded_; }

 private:
  std::int64_t max_rows_;
  std::map<std::tuple<std::int64_t, std::int64_t, std::int64_t>, std::int64_t> rows_;        ///< (m, n, k) -> rows
  std::map<std::tuple<std::int64_t, std::int64_t, std::int64_t>, std::string> probed_;       ///< (rows, n, k) -> probe's answer
  std::vector<PaddedNativeGemm> padded_;
  void record_padding(std::int64_t m, std::int64_t n, std::int64_t k, std::int64_t rows);
};

/// What `racksim exec` states (notes, the measurement file's `software`) when GEMMs ran padded:
/// each shape and its rows, and that their measured times include the padding rows; "" if none.
[[nodiscard]] std::string padded_native_gemm_note(const std::vector<PaddedNativeGemm>& padded);

/// Hopper's fused FP4-weight GEMM (exec/cuda/fp4_gemm_mma.cu): E2M1 dequantized in registers to
/// FP16 and fed to mma.sync m16n8k16 tensor-core MMAs (FP32 accumulate), weights read once
/// in its tiled layout (below), for decode batches up to kFp4MmaMaxM: up to kFp4MmaPassM rows in
/// 1, 2 or 4 8-token tiles, M = 33..64 in 8 tiles (2 CTAs per SM), M = 65..128 as launches of
/// kFp4MmaLaunchM rows (each reads the weights again). On an H200
/// (exec/measurements/h200-sxm-2026-11-30, gemm-nvfp4.json) dequantize + cuBLASLt BF16 took
/// 101-102, 120-130, 626-628 and 328-333 us at M = 48..64 for 8192 x 8192, 10240 x 8192,
/// 57344 x 8192 and 8192 x 28672; two passes of <= 32 rows took 60-70, 70-82, 327-366 and 165-188
/// (2026-11-30b) and one 8-tile pass 0.64-1.00x of those (43.8-44.9, 67-69, 262-266, 128-132 us).
/// At M = 128 the dequantize + cuBLASLt path took 109.1, 133.5, 682.9 and 347.3 us and one 8-tile
/// launch at M = 64 43.4, 66.0, 256.4 and 126.3 (2026-11-30c, commit 2af6518): two such launches
/// are 0.80, 0.99, 0.75 and 0.73x the dequantize path, so M = 65..128 run as passes of 64 rows;
/// at M = 256 four would be 1.32-1.85x of its 116.1-740.9 us, so above 128 rows the weights are
/// dequantized for cuBLASLt (fp4_large_m.cuh).
/// Each CTA (4 warps) computes kFp4MmaRowsPerCta output features over a range of K spans of
/// kFp4MmaSpan; K is split over `splits` CTAs when the row blocks alone would leave the GPU
/// under-filled, their FP32 partials summed in a fixed order by a second kernel (deterministic).
inline constexpr std::int64_t kFp4MmaMaxM = 128;    ///< rows of a dense fused GEMM (in launches of kFp4MmaLaunchM)
inline constexpr std::int64_t kFp4MmaLaunchM = 64;  ///< rows of one launch (8 tiles); a grouped (MoE) launch's most
inline constexpr std::int64_t kFp4MmaPassM = 32;
inline constexpr std::int64_t kFp4MmaRowsPerCta = 128;
inline constexpr std::int64_t kFp4MmaSpan = 128;

/// The fused kernel's weight layout ("tiled"): W [n x k] NVFP4 (k % 32 == 0) cut into tiles of
/// 32 rows x one 128-value span, tiles row-tile-major with the spans of a row tile consecutive, so
/// a warp streaming its 32 rows along K reads whole contiguous tiles: 2,048 bytes of codes (4
/// units of 32 lanes x 16 bytes, in the order the lanes load them) and, in a separate buffer, 256
/// bytes of UE4M3 scales (8 bytes per lane). In the row-major layout a warp read 64 bytes from each
/// of 32 rows 4 KB-28 KB apart per span, 32 DRAM pages per 2 KB. Lane (g x 4 + tig) and unit
/// (t x 2 + h) hold row 16 t + 8 h + g of the tile and its values tig x 32 .. + 31 of the span;
/// scale byte lane x 8 + unit x 2 + b is that piece's block b. Each 4-byte word of a unit (8
/// codes, little-endian) is stored in the kernel's bit order (fp4::e2m1x8_to_mma_order), which
/// saves 4 of the 15 ALU instructions per word of the E2M1 -> FP16 conversion. Rows past n and
/// values past k are zero codes and zero scales. Converted on the device from the row-major layout
/// (fp4_mma_tile_launch, exec/cuda/fp4_gemm_mma.hpp) when the step executor loads a weight.
inline constexpr std::int64_t kFp4MmaTileRows = 32;
inline constexpr std::int64_t kFp4MmaTileCodeBytes = kFp4MmaTileRows * 128 / 2;   // 2,048
inline constexpr std::int64_t kFp4MmaTileScaleBytes = kFp4MmaTileRows * 128 / 16;  // 256

struct Fp4MmaTiling {
  std::int64_t row_tiles = 0, spans = 0;
  std::int64_t code_bytes = 0, scale_bytes = 0;
};

[[nodiscard]] RACKSIM_HOST_DEVICE inline Fp4MmaTiling fp4_mma_tiling(std::int64_t n, std::int64_t k) noexcept {
  Fp4MmaTiling t;
  t.row_tiles = (n + kFp4MmaTileRows - 1) / kFp4MmaTileRows;
  t.spans = (k + 127) / 128;
  t.code_bytes = t.row_tiles * t.spans * kFp4MmaTileCodeBytes;
  t.scale_bytes = t.row_tiles * t.spans * kFp4MmaTileScaleBytes;
  return t;
}

/// Byte offset in the tiled code buffer of the 16-byte unit holding row r's values k0 .. k0 + 31
/// (k0 % 32 == 0), for a weight of `spans` spans.
[[nodiscard]] RACKSIM_HOST_DEVICE inline std::int64_t fp4_mma_code_offset(std::int64_t r, std::int64_t k0, std::int64_t spans) noexcept {
  const std::int64_t tile = (r / 32) * spans + k0 / 128, rr = r % 32;
  const std::int64_t lane = (rr % 8) * 4 + (k0 % 128) / 32, unit = (rr / 16) * 2 + (rr % 16) / 8;
  return tile * kFp4MmaTileCodeBytes + (unit * 32 + lane) * 16;
}

/// Byte offset in the tiled scale buffer of row r's block kb (values 16 kb .. 16 kb + 15).
[[nodiscard]] RACKSIM_HOST_DEVICE inline std::int64_t fp4_mma_scale_offset(std::int64_t r, std::int64_t kb, std::int64_t spans) noexcept {
  const std::int64_t k0 = kb * 16 / 32 * 32, tile = (r / 32) * spans + k0 / 128, rr = r % 32;
  const std::int64_t lane = (rr % 8) * 4 + (k0 % 128) / 32, unit = (rr / 16) * 2 + (rr % 16) / 8;
  return tile * kFp4MmaTileScaleBytes + lane * 8 + unit * 2 + kb % 2;
}

/// The fused kernel's wgmma variant (RACKSIM_FP4_MMA_MMA=wgmma, exec/cuda/fp4_gemm_mma.cu): x's
/// span in shared memory as wgmma's B operand, in the canonical no-swizzle K-major layout (PTX ISA,
/// "Shared memory matrix layout"): per k-step (8 per span), 8-token groups of two core matrices
/// of 8 tokens x 16 bytes (K slots 0..7, then 8..15), core matrices kFp4WgmmaLbo bytes apart along
/// K and kFp4WgmmaSbo apart along N. Each k-step block is padded by 16 bytes so the 8 blocks start
/// on different shared-memory banks.
inline constexpr std::int64_t kFp4WgmmaLbo = 128, kFp4WgmmaSbo = 256;
[[nodiscard]] RACKSIM_HOST_DEVICE constexpr std::int64_t fp4_wgmma_step_bytes(std::int64_t n_tiles) noexcept { return n_tiles * 256 + 16; }

/// Byte offset of token `tok`'s x pair `pair` of 8-value group (piece p, word w) of the span:
/// pairs 0..3 are (x0, x4), (x1, x5), (x2, x6), (x3, x7), the values the A fragment of lane
/// tig = p puts in K slots (2p, 2p + 1) of k-step 2w (pair 0), (2p + 8, 2p + 9) of 2w (pair 1),
/// and the same slots of k-step 2w + 1 (pairs 2, 3).
[[nodiscard]] RACKSIM_HOST_DEVICE constexpr std::int64_t fp4_wgmma_b_offset(std::int64_t n_tiles, std::int64_t tok, std::int64_t p,
                                                                            std::int64_t w, std::int64_t pair) noexcept {
  const std::int64_t step = 2 * w + pair / 2, kslot = 2 * p + 8 * (pair % 2);
  return step * fp4_wgmma_step_bytes(n_tiles) + (tok / 8) * kFp4WgmmaSbo + (kslot / 8) * kFp4WgmmaLbo + (tok % 8) * 16 + (kslot % 8) * 2;
}

/// wgmma's shared-memory matrix descriptor for a B block at shared address `addr` (PTX ISA,
/// "Matrix Descriptor Format"): start address, leading (K) and stride (N) byte offsets in 16-byte
/// units at bits 0-13, 16-29 and 32-45; base offset (49-51) and swizzle mode (62-63) zero.
[[nodiscard]] RACKSIM_HOST_DEVICE constexpr std::uint64_t fp4_wgmma_desc(std::uint32_t addr) noexcept {
  return static_cast<std::uint64_t>((addr >> 4) & 0x3FFFu) | (static_cast<std::uint64_t>(kFp4WgmmaLbo >> 4) << 16) |
         (static_cast<std::uint64_t>(kFp4WgmmaSbo >> 4) << 32);
}

/// The tiled layout of a row-major NVFP4 weight (`packed` n x k/2 bytes, `scales` n x k/16), on
/// the host: the reference for the device conversion and its tests. InputError unless
/// k % 32 == 0 and the sizes match.
void fp4_mma_tile(const std::vector<std::uint8_t>& packed, const std::vector<std::uint8_t>& scales, std::int64_t n, std::int64_t k,
                  std::vector<std::uint8_t>& codes, std::vector<std::uint8_t>& tiled_scales);

/// The fused GEMM's variant knobs, which exec/cuda/fp4_gemm_mma.cu reads from the environment once
/// (same-session A/B runs on a device; docs/executor.md "Measured on an H200, second session"):
/// RACKSIM_FP4_MMA_SPLITS = auto | fill8 | wave | balance (fp4_mma_plan_balanced), RACKSIM_FP4_MMA_TILES = 4 | 8,
/// RACKSIM_FP4_MMA_DEPTH = auto | 1 | 2, RACKSIM_FP4_MMA_MMA = sync | wgmma,
/// RACKSIM_FP4_MMA_PIPE = regs | cpasync, RACKSIM_FP4_MMA_X = span | split,
/// RACKSIM_FP4_MMA_REDUCE = launch | serial, RACKSIM_FP4_MMA_CTAS = auto | 4 | 5 | 6; unset means
/// the first of each (tiles: 8). cpasync with an explicit depth, or with wgmma, is refused (each
/// replaces what the other sets at 2 tiles); so is a CTAS cap with cpasync, wgmma or X=split (it
/// pads the register-staged mma.sync kernel only).
struct Fp4MmaKnobs {
  enum class Splits { automatic, fill8, wave, balance } splits = Splits::automatic;
  bool eight_tiles = true;  ///< M = 33..64 in one 8-tile pass (else two passes of <= 32 rows)
  int depth = 0;            ///< spans of weights in flight: 1, 2, or 0 = auto (2 at 2 tiles, else 1)
  bool wgmma = false;       ///< M > 8 on Hopper's warpgroup MMA (wgmma, A from registers) instead of mma.sync
  bool ring = false;        ///< M <= 16: weights through a per-warp cp.async ring in shared memory, not registers
  bool x_split = false;     ///< M <= 8: x staged once per CTA for its whole K split, not per span (fp4_mma_x_split_bytes)
  bool serial = false;      ///< split K summed by each row block's last CTA, not a reduce launch (RACKSIM_FP4_MMA_REDUCE=serial)
  int ctas = 0;             ///< at most this many CTAs per SM (RACKSIM_FP4_MMA_CTAS; fp4_mma_ctas_pad_bytes), 0 = as registers allow
};

/// The knobs from the eight variables' values (null: unset). InputError naming the variable, the
/// value and the allowed values.
/// RACKSIM_FP4_MMA_REDUCE = launch | serial (unset: launch). Where a launch splits K, its CTAs
/// write FP32 partials and, by default, a second kernel (fp4_mma_reduce) sums them into y: one
/// more launch per GEMM. On the H200, o_proj's M = 1 GEMV was a 17.2 us kernel in 23.1 us of bench
/// time, the rest the reduce launch and the ramp (ncu at 2af6518,
/// exec/measurements/h200-sxm-2026-11-30c/ncu-gemv-m1-o_proj.txt; docs/executor.md). Serial: each CTA,
/// after writing its partials, takes a ticket from its row block's counter (a fence first: the
/// CUDA C++ Programming Guide's threadFenceReduction pattern); the last of the row block's splits
/// sums the block's partials in split order (fp4_mma_reduce's order, so the same bits), writes y
/// and sets the counter back to 0 for the next launch and graph replay. The counters are one
/// per-device array, zeroed once (exec/cuda/fp4_gemm_mma.hpp fp4_mma_serial_prepare): one serial
/// launch at a time per device. Under RACKSIM_FUSE_SWIGLU, where ffn is a multiple of 128 (gate
/// row block b and up row block b + ffn / 128 hold the same columns), one counter per such pair
/// takes 2 x splits tickets and its last CTA writes the SwiGLU, fp4_mma_reduce_swiglu's bits;
/// at other ffn the serial launch writes y and the SwiGLU runs as its own kernel.
///
/// RACKSIM_FP4_MMA_CTAS = auto | 4 | 5 | 6 (unset: auto): at most that many CTAs of the fused kernel
/// per SM, by giving each launch of the register-staged mma.sync kernel (not the cp.async ring,
/// wgmma, the x split or the MoE grouped launch) enough dynamic shared memory that no more fit
/// (fp4_mma_ctas_pad_bytes), also where its registers alone already hold it to the cap; the
/// plan's whole-wave split then counts the capped occupancy, min(registers' count, cap). For the
/// same-run A/B of occupancy against latency: since 2026-12-02 the M <= 8 GEMV holds 6 CTAs per SM
/// (78 registers), where it ran 5 at 2af6518, the last measured commit. The padding has effects
/// of its own: the SM's shared-memory carveout grows (5 padded CTAs take 195,200 B, leaving about
/// 60 KB of L1 instead of about 224; the weights' non-coherent __ldg loads allocate in L1), and
/// other kernels' CTAs (PDL's overlap) find less room. So CTAS=5 against CTAS=6 (200,448 B: the
/// same carveout) is the occupancy's ratio, and CTAS=6 against the default the padding's.
[[nodiscard]] Fp4MmaKnobs fp4_mma_knobs(const char* splits, const char* tiles, const char* depth, const char* mma = nullptr,
                                        const char* pipe = nullptr, const char* x = nullptr, const char* reduce = nullptr,
                                        const char* ctas = nullptr);

/// Dynamic shared memory that leaves at most `cap` CTAs of a kernel with `static_bytes` of its own
/// resident on an SM with `sm_bytes` of shared memory, `reserved_bytes` of which the system takes
/// per CTA (cudaDevAttrMaxSharedMemoryPerMultiprocessor, cudaDevAttrReservedSharedMemoryPerBlock):
/// the least multiple of `unit_bytes` (the allocation granularity: 128 B, as cuda_occupancy.h rounds
/// a CTA's static + reserved + dynamic bytes) making
/// floor(sm_bytes / (static + pad + reserved rounded up to units)) <= cap, 0 where static alone
/// does. H100/H200 (233,472 B per SM, 1,024 reserved, 128 B units), the 1-tile kernel's 3,600 B
/// static, cap 5: a CTA must take more than 233,472 / 6 = 38,912 B, so its own bytes rounded up
/// more than 37,888 (296 units): 3,600 + pad > 37,888, pad = 34,304 B (268 units), 39,040 B a CTA,
/// 5.98 -> 5 per SM.
[[nodiscard]] constexpr std::int64_t fp4_mma_ctas_pad_bytes(std::int64_t static_bytes, std::int64_t sm_bytes, std::int64_t reserved_bytes,
                                                           int cap, std::int64_t unit_bytes = 128) noexcept {
  const auto round_up = [unit_bytes](std::int64_t v) { return (v + unit_bytes - 1) / unit_bytes * unit_bytes; };
  std::int64_t pad = 0;
  if (unit_bytes < 1 || sm_bytes < 1) return 0;
  while (cap >= 1 && sm_bytes / std::max<std::int64_t>(1, round_up(static_bytes + pad) + reserved_bytes) > cap) pad += unit_bytes;
  return pad;
}
/// fp4_mma_knobs of the environment's RACKSIM_FP4_MMA_SPLITS, _TILES, _DEPTH, _MMA, _PIPE, _X,
/// _REDUCE and _CTAS, read now (the CUDA launches read them once: exec/cuda/fp4_gemm_mma.hpp fp4_mma_env_knobs).
[[nodiscard]] Fp4MmaKnobs fp4_mma_knobs_from_env();

/// RACKSIM_FP4_MMA_X=split (M <= 8, one tile): each CTA stages the x of its whole K split in
/// shared memory once, before its span loop, instead of each span's x between two barriers per
/// span: the loop then has no barrier, and each warp streams its weights at its own pace. The
/// shared memory: per span, m token rows of 20 16-byte units (16 of x's 128 values as FP16, and 4
/// of padding, the per-span layout's stride: rows of 2 tokens fall in disjoint banks), so
/// spans_per_split x m x 320 bytes. Taken only at depth 1 and where that is at most
/// fp4_mma_x_split_max_bytes: 16 KiB (6 CTAs per SM keep 96 KiB of it), 11 KiB with the cp.async
/// ring, whose kernel has 36 KiB of its own, so that every device takes it without an opt-in past
/// the 48 KiB a launch may use (cudaFuncSetAttribute is per device); else the default staging
/// runs. The split is planned as for the kernel without it (its occupancy), so an A/B against
/// the default compares the same grid. o_proj at M = 1 (at 5 CTAs per SM, 10 whole-wave splits of 7 spans): 2,240
/// B; gate_up (3 splits of 22): 7,040; at M = 8 o_proj's 17,920 B do not fit.
inline constexpr std::int64_t kFp4MmaXRowBytes = 320;
inline constexpr std::int64_t kFp4MmaXSplitMaxBytes = 16384;
inline constexpr std::int64_t kFp4MmaXSplitMaxBytesRing = 11264;
[[nodiscard]] constexpr std::int64_t fp4_mma_x_split_max_bytes(bool ring) noexcept {
  return ring ? kFp4MmaXSplitMaxBytesRing : kFp4MmaXSplitMaxBytes;
}
[[nodiscard]] constexpr std::int64_t fp4_mma_x_split_bytes(std::int64_t m, std::int64_t spans_per_split) noexcept {
  return spans_per_split * m * kFp4MmaXRowBytes;
}

/// The launch of one fused FP4 GEMM y[m x n] = x[m x k] W^T. M = 33..64: one 8-tile launch whose
/// workspace_bytes also covers two passes of <= 32 rows (the RACKSIM_FP4_MMA_TILES=4 variant).
/// M = 65..128: ceil(m / 64) launches of kFp4MmaLaunchM rows, one after another on the stream (the
/// fields are the 64-row launch's; workspace_bytes covers every launch, the last one's included).
struct Fp4MmaPlan {
  int passes = 0;             ///< launches of the fused kernel: 1, or ceil(m / 64) above 64 rows
  int n_tiles = 0;            ///< 8-token MMA column tiles: 1, 2, 4 (m rounded up) or 8 (m > 32)
  std::int64_t row_blocks = 0;
  std::int64_t spans = 0;     ///< ceil(k / kFp4MmaSpan)
  std::int64_t splits = 0;    ///< CTAs along K; 1 writes y directly
  std::int64_t spans_per_split = 0;
  std::int64_t workspace_bytes = 0;  ///< FP32 partials: splits x m x n x 4 when splits > 1, else 0; at 1-2 tiles (default rule) also fp4_mma_plan_balanced's
};

/// True when the fused kernel takes m x n x k: 1 <= m <= kFp4MmaMaxM, n >= 1, k a positive
/// multiple of 32 (each lane reads whole 32-value pieces of a row: two NVFP4 blocks, 16 bytes).
[[nodiscard]] bool fp4_mma_supported(std::int64_t m, std::int64_t n, std::int64_t k) noexcept;

/// True when a grouped launch (fp4_gemm_mma_grouped_launch: a MoE layer's experts, one launch)
/// takes experts of up to max_m rows: fp4_mma_supported and max_m <= kFp4MmaLaunchM (its CTAs
/// hold one launch's tiles; a top-k routing gives an expert at most one row per token).
[[nodiscard]] bool fp4_mma_grouped_supported(std::int64_t max_m, std::int64_t n, std::int64_t k) noexcept;

/// What one fp4_gemm_mma_launch runs under the knobs (exec/cuda/fp4_gemm_mma.cu).
struct Fp4MmaLaunch {
  Fp4MmaPlan plan;          ///< the grid and K split of the (single) launch
  bool two_passes = false;  ///< M = 33..64 as two launches of <= 32 rows (RACKSIM_FP4_MMA_TILES=4)
  int depth = 1;            ///< spans of weights in flight: 2 by default at 2 tiles, at 1, 4 or 8 when the knob says 2
  bool ring = false;        ///< the cp.async ring (RACKSIM_FP4_MMA_PIPE=cpasync) at 1 or 2 tiles; depth is then 1
  bool x_split = false;     ///< x staged once per split (RACKSIM_FP4_MMA_X=split): 1 tile, depth 1, fp4_mma_x_split_bytes <= the max
  bool wave = false;        ///< the whole-wave K split was taken
  bool serial = false;      ///< the split's partials summed by the last CTA per row block (the knob, and splits > 1)
  int ctas = 0;             ///< the CTAs-per-SM cap the launch pads shared memory for (RACKSIM_FP4_MMA_CTAS), 0 = none
};

/// The launch of fp4_mma_plan(m, n, k, sms) under `knobs`: 8 tiles or two passes for M = 33..64;
/// the depth (auto: 2 at 2 tiles; 2 at 4 and 8 tiles only when the knob says 2, and not under
/// wgmma); the whole-wave split at the kernel's occupancy
/// `resident(n_tiles, depth)` (CTAs per SM, the occupancy API's answer on the device) when the
/// knob says wave, or by default at 1-2 tiles where it still splits K; fp4_mma_plan_balanced at
/// that occupancy when the knob says balance (1-2 tiles). One launch: InputError above
/// kFp4MmaLaunchM rows (fp4_gemm_mma_launch runs those 64 rows at a time), and as fp4_mma_plan.
[[nodiscard]] Fp4MmaLaunch fp4_mma_launch_plan(std::int64_t m, std::int64_t n, std::int64_t k, int sms, const Fp4MmaKnobs& knobs,
                                               const std::function<int(int, int)>& resident);

/// ---- Per-shape tuning of the fused kernel's variants (RACKSIM_FP4_MMA_TUNE=on) -------------
/// TensorRT's and cuBLASLt's answer to variants whose ranking depends on the GPU and the shape:
/// time each on the device and keep the fastest. The step executor, before its first step, times
/// the distinct launches fp4_mma_tune_candidates gives for each linear shape at each row class
/// (fp4_mma_tune_class) on the device it runs on (exec/cuda/fp4_gemm_mma.hpp fp4_mma_tune: cold L2
/// before each launch, the candidates interleaved, medians), keeps the pick of fp4_mma_tune_pick,
/// and states every choice in the output's notes and the measurement file's `software`.

/// RACKSIM_FP4_MMA_TUNE = off | on (unset: off). InputError naming the variable and value.
[[nodiscard]] bool fp4_mma_tune_knob(const char* value);

/// The row classes tuning keys on: 0: M = 1 (the GEMV), 1: 2..4 and 2: 5..8 (one 8-token tile;
/// apart because the x split's shared memory, m rows per span, fits o_proj's split at 4 rows and
/// not at 8: fp4_mma_x_split_bytes), 3: 9..16, 4: 17..32, 5: 33..128 (8 tiles; M > 64 as launches
/// of 64). InputError outside 1..kFp4MmaMaxM.
inline constexpr int kFp4MmaTuneClasses = 6;
[[nodiscard]] int fp4_mma_tune_class(std::int64_t m);
/// Class c's first and last M. InputError outside 0..kFp4MmaTuneClasses-1.
[[nodiscard]] std::pair<std::int64_t, std::int64_t> fp4_mma_tune_class_rows(int c);
/// The rows class c is timed at for an executor of up to max_rows rows: the class's largest M
/// (1, 4, 8, 16, 32; 64 for 33..128, the launch every M > 64 is made of but its last), or
/// max_rows where that is smaller; 0 when max_rows is below the class.
[[nodiscard]] std::int64_t fp4_mma_tune_rows(int c, std::int64_t max_rows);
/// The classes as a reader wants them: "1, 2-4, 5-8, 9-16, 17-32, 33-128".
[[nodiscard]] std::string fp4_mma_tune_classes_words();

/// The knob sets tried for an m-row launch, `base` (the environment's knobs) first, then base
/// with one knob changed where it matters at m's tile count, and the ring with x staged once per
/// split (M <= 8): at 1 tile the register kernel (no ring), depth 2, the cp.async ring, x split, ring + x split, the fill8,
/// wave and balance splits; at 2 tiles depth 1 and 2, the ring, wgmma (when `wgmma_ok`: a Hopper device and
/// sm_90a code), the fill8 and balance splits; at 4 tiles depth 2, wgmma, the wave split; at 8 tiles two
/// passes of 4 tiles, depth 2, wgmma, and two passes under the wave split (one 8-tile launch
/// never takes it); last, at every class, the serial split-K sum (RACKSIM_FP4_MMA_REDUCE=serial). Each a valid set (fp4_mma_knobs' rules: the
/// ring with depth auto and without wgmma), none equal to an earlier one.
[[nodiscard]] std::vector<Fp4MmaKnobs> fp4_mma_tune_candidates(const Fp4MmaKnobs& base, std::int64_t m, bool wgmma_ok);

/// True when knobs a and b launch the same kernel with the same grid for m x n x k
/// (fp4_mma_launch_plan's fields, and wgmma where it applies, at m > 8): timing both would
/// measure one thing twice.
[[nodiscard]] bool fp4_mma_same_launch(const Fp4MmaKnobs& a, const Fp4MmaKnobs& b, std::int64_t m, std::int64_t n, std::int64_t k, int sms,
                                       const std::function<int(int, int)>& resident_a, const std::function<int(int, int)>& resident_b);

/// Same-run noise between two launches of one kernel on the H200 (the second session's
/// repeated points, 2026-11-30c history/runs: 1-2%): a variant must beat the first candidate
/// by more than this to replace it.
inline constexpr double kFp4MmaTuneMargin = 0.02;
/// And by more than this in absolute time: a launch is timed alone by a CUDA event pair, whose
/// resolution is about 0.5 us (CUDA Runtime API, cudaEventElapsedTime); two of them, one per
/// median compared. On a ~10 us GEMV 2% is 0.2 us, below what the events resolve.
inline constexpr double kFp4MmaTuneFloorS = 1e-6;
/// The index of the fastest median, or 0 (the base) unless that beats medians[0] by more than
/// max(`margin` x medians[0], `floor_s`) (medians in seconds); ties go to the lower index.
/// InputError on an empty list or a median that is not finite and > 0.
[[nodiscard]] std::size_t fp4_mma_tune_pick(const std::vector<double>& medians, double margin = kFp4MmaTuneMargin,
                                            double floor_s = kFp4MmaTuneFloorS);

/// The knobs that differ from the defaults, as the environment would set them
/// ("RACKSIM_FP4_MMA_PIPE=cpasync RACKSIM_FP4_MMA_X=split"), or "default".
[[nodiscard]] std::string fp4_mma_knobs_words(const Fp4MmaKnobs& k);

/// The split over K for `sms` multiprocessors: enough CTAs for 8 per SM (row_blocks x splits),
/// but no more splits than spans, and no more than keep the partials' traffic (write and read,
/// 8 bytes per output per split) within half the weights' bytes (0.5625 per value).
/// m = 1, n = k = 8192 on 132 SMs: 64 row blocks x 16 splits of 4 spans; m = 32: 8 splits of 8;
/// m = 40: 8 tiles, half of m = 32's 8 splits: 4 of 16 spans; the workspace the larger of
/// 4 x 40 x n x 4 and the two passes' (32 rows: 8 x 32 x n x 4).
/// With resident_per_sm > 0 (the kernel's measured occupancy, at most 8), the whole-wave rule
/// instead: max(1, floor(resident_per_sm x sms / row_blocks)) splits wanted, so that every CTA of
/// the launch is resident at once (no second, part-empty wave); then the same caps. It never
/// splits more than the default rule, so fits the default's workspace. At one or two tiles and
/// resident_per_sm 0, workspace_bytes also covers fp4_mma_plan_balanced's splits.
/// InputError unless fp4_mma_supported, sms >= 1 and 0 <= resident_per_sm <= 8.
[[nodiscard]] Fp4MmaPlan fp4_mma_plan(std::int64_t m, std::int64_t n, std::int64_t k, int sms, int resident_per_sm = 0);

/// RACKSIM_FP4_MMA_SPLITS=balance (M <= 16, one or two tiles): the split that a wave model says
/// is fastest. A launch of C CTAs on S SMs holding r each runs ceil(C / rS) waves, each as long as
/// its longest CTA's spans, and a part-empty last wave costs as much as a full one (a CTA streams
/// its weights at the rate an SM shared by r CTAs gives it; alone in a tail it is latency-bound).
/// gate_up at M = 1 on an H200 as of 2af6518 (448 row blocks, 5 CTAs per SM: 660 slots; 6 since
/// 2026-12-02, the same 3 splits in 1.70 waves): the default's 3
/// splits are 1,344 CTAs, 2.04 waves, so the third wave holds 24 CTAs; ncu measured that kernel
/// at 59% of DRAM peak (2af6518, exec/measurements/h200-sxm-2026-11-30c/ncu-gemv-m1-gate_up.txt).
/// The rule tries every split count the no-empty rule gives from 1 to the default's, or up to
/// twice it where the partials' traffic cap, the spans and splits of kFp4MmaBalanceMinSpans spans
/// allow; models each as waves x spans per split; and, within kFp4MmaBalanceSlack of the best,
/// takes auto's split (fp4_mma_launch_plan) if it is there, else the count nearest the default's,
/// fewer on a tie. gate_up M = 1: 4 splits of 16 spans, 3 waves x 16 = 48 against the default's
/// 3 x 22 = 66. A model, not a measurement: the tuner times it. At 4 and 8 tiles the default.
/// The default plan's workspace (fp4_mma_plan with resident_per_sm 0) covers this rule at any
/// occupancy. InputError as fp4_mma_plan, and unless 1 <= resident_per_sm <= 8.
inline constexpr std::int64_t kFp4MmaBalanceMinSpans = 4;
inline constexpr double kFp4MmaBalanceSlack = 0.02;
[[nodiscard]] Fp4MmaPlan fp4_mma_plan_balanced(std::int64_t m, std::int64_t n, std::int64_t k, int sms, int resident_per_sm);

/// The largest workspace_bytes of fp4_mma_plan(m, n, k, sms) over 1 <= m <= min(max_rows,
/// kFp4MmaMaxM): what an executor running up to max_rows rows allocates once; 0 when the kernel
/// does not take n x k.
[[nodiscard]] std::int64_t fp4_mma_workspace_bound(std::int64_t n, std::int64_t k, std::int64_t max_rows, int sms);

/// The SMs a grouped launch (a MoE layer's experts in one launch, exec/cuda/fp4_gemm_mma.hpp
/// fp4_gemm_mma_grouped_launch) plans each expert's K split for: the device's `sms` shared by its
/// min(experts, total_rows) slots (cpu_ops moe_active_slots), at least 1; `sms` when there are no
/// rows. So the slots' CTAs together fill the device as one dense GEMM's do, instead of each
/// expert splitting K as if it had the device alone (on 132 SMs, Mixtral's gate_up at decode
/// batch 1: 2 slots of 224 row blocks x 5 splits before, x 3 now; MiniMax-M2's at one token: 8
/// slots of 24 x 24 CTAs before, 24 x 6 now: 1,152 CTAs in all, not 4,608).
[[nodiscard]] int fp4_mma_grouped_sms(std::int64_t experts, std::int64_t total_rows, int sms);

/// The FP32 partials of a grouped launch: fp4_mma_plan(max_m, n, k, fp4_mma_grouped_sms(experts,
/// total_rows, sms))'s K split over all `total_rows` rows, splits x total_rows x n x 4 bytes when it
/// splits, else 0. With total_rows = max_m x top-k it is at most top-k x
/// fp4_mma_workspace_bound(n, k, max_m, sms) (the splits do not grow as the SMs shrink).
[[nodiscard]] std::int64_t fp4_mma_grouped_workspace_bytes(std::int64_t max_m, std::int64_t total_rows, std::int64_t experts, std::int64_t n,
                                                           std::int64_t k, int sms);

/// The alignment cuBLASLt may assume of an operand at `address`: the largest power of two dividing
/// it, at most 256 (the heuristic's default for every operand, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*;
/// address 0, a null pointer, counts as 256). exec/cuda/lt_plan.cuh LtAlign.
[[nodiscard]] constexpr int lt_pointer_alignment(std::uintptr_t address) {
  int align = 256;
  while (align > 1 && address % static_cast<std::uintptr_t>(align) != 0) align /= 2;
  return align;
}

/// RACKSIM_FP4_LARGE_M = bf16 | fp8 (unset: bf16): the format Hopper's large-M FP4-weight GEMM
/// (M the fused kernel does not take) dequantizes W to before cuBLASLt. bf16 is exact (each
/// e2m1 x ue4m3 x tensor_scale product is rounded once to BF16, which holds 8 significant bits
/// against the product's 6). fp8 writes half the bytes and runs cuBLASLt FP8 at twice the BF16
/// tensor rate, at the cost of one E4M3 rounding of each weight (act::nvfp4_e4m3_weight_code)
/// and of x (per-tensor power-of-two scale, act::e4m3_pow2_scale): relative 2^-4 each. True for
/// fp8; InputError naming the variable, the value and the allowed values.
[[nodiscard]] bool fp4_large_m_fp8(const char* value);

/// The FP8 variant's device scratch, as floats (exec/cuda/lt_plan.cuh uses these): cuBLASLt's
/// per-tensor A and B scale pointers 16 bytes apart (cuBLASLt 13.1 refused every FP8 algorithm on an
/// H200 with B's 4 bytes after A's; bench_gemm.cu), then one partial max |x| per block of the amax
/// pass, kFp8AmaxBlocks blocks of 256 threads from float kFp8Partials on. Every call writes every
/// partial, so nothing needs zeroing between calls.
inline constexpr int kFp8ScaleA = 0, kFp8ScaleB = 4, kFp8Partials = 16;
inline constexpr int kFp8AmaxBlocks = 256;
inline constexpr std::int64_t kFp8ScratchBytes = (kFp8Partials + kFp8AmaxBlocks) * 4;

/// Device bytes of the large-M path's scratch for weights up to `largest` values and activations
/// up to `rows` x `widest`: BF16 W (2 x largest), or under RACKSIM_FP4_LARGE_M=fp8 E4M3 W and x
/// plus kFp8ScratchBytes. The larger of the two, so a footprint holds whichever the knob picks.
[[nodiscard]] constexpr std::int64_t fp4_large_m_scratch_bound(std::int64_t largest, std::int64_t rows, std::int64_t widest) noexcept {
  return std::max(2 * largest, largest + rows * widest + kFp8ScratchBytes);
}

/// The FP8 variant's GEMM operands as the device computes them: y = alpha x sum_k w[n][k] x[m][k]
/// with w and x the E4M3 codes' values (act::e4m3_value). x is taken as given (the BF16 values
/// the step holds); alpha = tensor_scale x 8 x x_scale.
struct Fp8LargeMOperands {
  std::vector<std::uint8_t> w;  ///< [n x k] E4M3 codes, row-major
  std::vector<std::uint8_t> x;  ///< [m x k] E4M3 codes of x / x_scale
  float x_scale = 1.0f;         ///< act::e4m3_pow2_scale(max |x|)
  double alpha = 1.0;           ///< what the products' sum is multiplied by
};
/// InputError unless w is NVFP4 and x holds m x w.cols values.
[[nodiscard]] Fp8LargeMOperands fp4_large_m_fp8_operands(std::span<const float> x, std::int64_t m, const Fp4Matrix& w);

/// The step executor's cuBLASLt GEMMs.
enum class LtGemm {
  native_nvfp4,  ///< Blackwell linears: E2M1 x E2M1, VEC16_UE4M3 scales -> BF16
  bf16,          ///< Hopper large-M linears after dequantization -> BF16
  fp8,           ///< the same under RACKSIM_FP4_LARGE_M=fp8: E4M3 x E4M3, per-tensor scale pointers -> BF16
  bf16_to_fp32,  ///< lm_head -> FP32 logits
};

/// A GEMM's cuBLASLt descriptors as set up, read back from cuBLASLt (`cublasLt*GetAttribute`).
struct LtGemmSetup {
  std::string compute;         ///< compute type: "32F"
  std::string scale;           ///< alpha/beta type: "fp32"
  bool transa = false;         ///< A (the weights, stored [n x k] K-major) transposed: "TN"
  bool transb = false;
  std::string a_scale_mode;    ///< "vec16_ue4m3" or "scalar_fp32" (cuBLASLt's default; per-tensor)
  std::string b_scale_mode;
  bool a_scale_pointer = false;  ///< a block-scale pointer is set
  bool b_scale_pointer = false;
  struct Layout {
    std::string type;          ///< "e2m1", "e4m3", "bf16", "fp32"
    std::uint64_t rows = 0, cols = 0;
    std::int64_t ld = 0;
  } a, b, c;
};

/// The descriptors the step executor builds for `kind` at y[m x n] = x[m x k] W^T, set up and
/// read back on the host: no device or cuBLASLt handle needed. Error (exit 3) without CUDA built in.
[[nodiscard]] LtGemmSetup describe_cuda_gemm(LtGemm kind, std::int64_t m, std::int64_t n, std::int64_t k);

}  // namespace racksim::exec
