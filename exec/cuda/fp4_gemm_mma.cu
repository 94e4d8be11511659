// Hopper FP4-weight GEMM on tensor cores for decode batches (M <= 128, in launches of <= 64 rows).
// sm_90 has no FP4 tensor cores: each lane turns its E2M1 codes into FP16 with the mask-and-shift
// trick (fp4.hpp, after vLLM marlin; values x 2^-14, folded back in the epilogue), on words stored
// in a bit order that needs 11 ALU instructions per 8 codes instead of 15 (e2m1x8_to_mma_order),
// multiplies them by their UE4M3 block scale in FP16 (exact: a 2-bit by a 4-bit significand, and
// every product a multiple of 2^-24), and feeds them to mma.sync.m16n8k16 (FP16 in, FP32
// accumulate) with the weights as the A operand (16 output features x 16 K) and the tokens as B
// (16 K x 8 tokens).
//
// The weights are read once, 16 bytes per lane, from the tiled layout (fp4_gemm_path.hpp: a warp's
// 32 rows x 128 values are one contiguous 2 KB tile, in the order the lanes load them). A dot
// product does not care in which order K is summed, so each lane takes a whole 32-value piece of
// a row (tig = lane % 4 picks the piece of a 128-value span) and assigns its values to the MMA's
// K slots of that lane; x is staged in shared memory in the same order, so the B fragment of token
// g and slot (tig, j) holds the x value that the A fragment's weight in slot (tig, j) multiplies.
// With fp4.hpp's pair order (word i -> elements i, i + 4):
//   k-step 2w:   A lo = (e0, e4), A hi = (e1, e5) of word w;  B = (x0, x4), (x1, x5)
//   k-step 2w+1: A lo = (e2, e6), A hi = (e3, e7);            B = (x2, x6), (x3, x7)
// and shared memory holds each 8-value group of x as (x0, x4, x1, x5, x2, x6, x3, x7) in FP16.
//
// CTA: 4 warps x 32 rows (two 16-row MMA tiles per warp) = 128 output features, looping over its
// split's 128-value K spans; x's span for all tokens staged once per CTA and read by its 4 warps.
// The next span's weights (two spans ahead at 2 tiles) are loaded before the current one is
// multiplied. 1, 2, 4 or 8 token tiles (M <= 8, 16, 32, 64). K splits write FP32 partials that
// fp4_mma_reduce sums in split order (deterministic); fp4_mma_plan decides, and the knobs below
// (RACKSIM_FP4_MMA_*) select the variants measured against each other.

#include "fp4_gemm_mma.hpp"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bf16_vec.cuh"
#include "cuda_check.hpp"
#include "device_buffer.cuh"
#include "lt_plan.cuh"
#include "ops_elementwise.hpp"
#include "pdl.cuh"
#include "racksim/exec/activation_formats.hpp"
#include "racksim/exec/bench.hpp"
#include "racksim/exec/cpu_ops.hpp"
#include "racksim/exec/fp4.hpp"
#include "racksim/exec/fp4_gemm_path.hpp"

namespace racksim::exec::cuda {

namespace {

constexpr int kThreads = 128;
constexpr int kSpan = static_cast<int>(kFp4MmaSpan);             // K values per span
constexpr int kRowsPerCta = static_cast<int>(kFp4MmaRowsPerCta);  // 4 warps x 32
constexpr int kChunkStride = kSpan / 8 + 4;  // 16-byte chunks per staged token row: 16 + 64 bytes of padding
static_assert(kRowsPerCta == 4 * 32 && kSpan == 128, "fp4_gemm_mma.cu assumes 4 warps of 32 rows and 4 pieces of 32 values");

__device__ inline std::uint32_t half2_bits(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);
  std::uint32_t u;
  std::memcpy(&u, &h, 4);
  return u;
}

__device__ inline std::uint32_t hmul2_bits(std::uint32_t a, __half2 s) {
  __half2 h;
  std::memcpy(&h, &a, 4);
  h = __hmul2(h, s);
  std::uint32_t u;
  std::memcpy(&u, &h, 4);
  return u;
}

__device__ inline float bf16_lo(std::uint32_t w) { return __uint_as_float(w << 16); }
__device__ inline float bf16_hi(std::uint32_t w) { return __uint_as_float(w & 0xFFFF0000u); }

/// An 8-value chunk of x as staged for the B fragments: r.x = (x0, x1), r.y = (x2, x3), r.z =
/// (x4, x5), r.w = (x6, x7) in BF16 -> (x0, x4), (x1, x5), (x2, x6), (x3, x7) in FP16.
__device__ inline uint4 x_chunk_to_mma_fp16(uint4 r) {
  uint4 out;
  out.x = half2_bits(bf16_lo(r.x), bf16_lo(r.z));
  out.y = half2_bits(bf16_hi(r.x), bf16_hi(r.z));
  out.z = half2_bits(bf16_lo(r.y), bf16_lo(r.w));
  out.w = half2_bits(bf16_hi(r.y), bf16_hi(r.w));
  return out;
}

/// D += A B, m16n8k16, FP16 in, FP32 accumulate. a: {row g k-lo, row g+8 k-lo, row g k-hi, row g+8 k-hi}.
__device__ inline void mma_16816(float (&d)[4], const std::uint32_t (&a)[4], std::uint32_t b0, std::uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// The wgmma variant (RACKSIM_FP4_MMA_MMA=wgmma, M > 8; sm_90a only: wgmma is Hopper's, so the
// sm_100a/sm_103a builds compile it to a trap the host never launches). The CTA's 4 warps are one
// warpgroup; each k-step the warpgroup issues one wgmma.m64nNk16 per m-tile t (N = 8 NT tokens):
// warp w supplies its rows 32 w + 16 t .. + 15 as the A operand from registers, in the very
// fragment layout mma.sync's A takes (so the decode is shared), and wgmma's D rows 16 w + r are
// those rows, with mma.sync's C fragment repeated along N (so the epilogue is shared too). B (x)
// is read from shared memory by descriptor, in the canonical no-swizzle K-major layout: per k-step,
// 8-token groups of two 8 x 16-byte core matrices (K slots 0..7 and 8..15).
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define RACKSIM_FP4_WGMMA 1
#else
#define RACKSIM_FP4_WGMMA 0
#endif

template <int NT>
constexpr int kWgStepBytes = static_cast<int>(fp4_wgmma_step_bytes(NT));

template <int NT>
__device__ inline int wg_b_offset(int tok, int p, int w, int pair) {
  return static_cast<int>(fp4_wgmma_b_offset(NT, tok, p, w, pair));
}

/// k-step `step`'s B descriptor (fp4_wgmma_desc).
__device__ inline std::uint64_t wg_b_desc(const void* b, int step, int step_bytes) {
  const auto addr = static_cast<std::uint32_t>(__cvta_generic_to_shared(b)) + static_cast<std::uint32_t>(step * step_bytes);
  return fp4_wgmma_desc(addr);
}

// wgmma's fence, commit and wait, and the proxy fence that makes generic-proxy stores to shared
// memory visible to the async proxy wgmma reads through (no-ops where wgmma does not exist).
#if RACKSIM_FP4_WGMMA
__device__ inline void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ inline void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
__device__ inline void wgmma_wait_all() { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }
__device__ inline void fence_proxy_async_shared() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
#else
__device__ inline void wgmma_fence() {}
__device__ inline void wgmma_commit() {}
__device__ inline void wgmma_wait_all() {}
__device__ inline void fence_proxy_async_shared() {}
#endif
/// Keeps a register's value where it is across the asynchronous wgmma (CUTLASS's
/// warpgroup_fence_operand): the compiler must not reuse or move an A fragment or accumulator
/// register before the wait that covers the wgmma reading it.
__device__ inline void keep_reg(std::uint32_t& r) { asm volatile("" : "+r"(r)::"memory"); }
__device__ inline void keep_reg(float& r) { asm volatile("" : "+f"(r)::"memory"); }

/// D (64 x 8 NT, FP32) += A (64 x 16, FP16, registers) B (16 x 8 NT, FP16, shared memory).
template <int NT>
__device__ inline void wgmma_rs(float (&d)[NT][4], const std::uint32_t (&a)[4], std::uint64_t desc);

#if RACKSIM_FP4_WGMMA
template <>
__device__ inline void wgmma_rs<2>(float (&d)[2][4], const std::uint32_t (&a)[4], std::uint64_t desc) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %13, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n16k16.f32.f16.f16 {%0,%1,%2,%3,%4,%5,%6,%7}, {%8,%9,%10,%11}, %12, p, 1, 1, 0;\n}\n"
      : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(1)
      : "memory");
}

template <>
__device__ inline void wgmma_rs<4>(float (&d)[4][4], const std::uint32_t (&a)[4], std::uint64_t desc) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %21, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n32k16.f32.f16.f16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15}, {%16,%17,%18,%19}, %20, p, 1, 1, 0;\n}\n"
      : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(1)
      : "memory");
}

template <>
__device__ inline void wgmma_rs<8>(float (&d)[8][4], const std::uint32_t (&a)[4], std::uint64_t desc) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, {%32,%33,%34,%35}, %36, p, 1, 1, 0;\n}\n"
      : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(1)
      : "memory");
}
#else
template <int NT>
__device__ inline void wgmma_rs(float (&)[NT][4], const std::uint32_t (&)[4], std::uint64_t) {
  __trap();  // not Hopper: the host refuses the knob before launching (fp4_gemm_mma_launch)
}
#endif

/// One lane's weights of one span: for m-tile t and half h (rows +0 / +8), 32 E2M1 codes and the
/// two UE4M3 codes of their blocks.
struct SpanWeights {
  uint4 w[2][2];
  uint2 sc;  ///< the scale codes as loaded: m-tile 0 in .x, 1 in .y; half h in bits 16 h .. 16 h + 15
  __half2 sc2[2][2];  ///< the two block scales as FP16 (ue4m3_pair_to_half2), filled before use
};

/// Two UE4M3 codes (bits 0..7 and 8..15) as an FP16 pair, exactly: a UE4M3 code shifted left by 7
/// is the FP16 bit pattern of its value x 2^-8 (exponent field eeee under FP16's bias 15 instead of
/// UE4M3's 7; UE4M3 subnormals land on FP16 subnormals with the same factor), and x 256 is exact.
/// No NaN code (0x7F) is ever written by the quantizers.
__device__ inline __half2 ue4m3_pair_to_half2(unsigned codes) {
  const std::uint32_t bits = ((codes & 0xFFu) << 7) | ((codes & 0xFF00u) << 15);
  __half2 h;
  std::memcpy(&h, &bits, 4);
  return __hmul2(h, __float2half2_rn(256.0f));
}

/// The span's weights of the warp's row tile from the tiled layout (fp4_gemm_path.hpp): 4 x 16
/// bytes of codes (units t x 2 + h, each 512 contiguous bytes across the warp) and 8 bytes of
/// scales per lane. A warp whose rows all lie past n (the CTA's last warps) loads zeros.
__device__ inline void load_span(SpanWeights& s, const std::uint8_t* __restrict__ codes, const std::uint8_t* __restrict__ tscales,
                                 long long tile, int lane, bool active) {
  if (!active) {
#pragma unroll
    for (int u = 0; u < 4; ++u) s.w[u / 2][u % 2] = make_uint4(0, 0, 0, 0);  // E2M1 code 0 is +0: contributes nothing
    s.sc = make_uint2(0, 0);
    return;
  }
  const uint4* c = reinterpret_cast<const uint4*>(codes + tile * kFp4MmaTileCodeBytes) + lane;
#pragma unroll
  for (int u = 0; u < 4; ++u) s.w[u / 2][u % 2] = __ldg(c + u * 32);
  s.sc = __ldg(reinterpret_cast<const uint2*>(tscales + tile * kFp4MmaTileScaleBytes) + lane);
}

/// CTAs per SM the register budget is set for: small tiles keep more CTAs resident (latency
/// hiding for the weight stream); four tiles need their 32 accumulators, eight their 64.
/// (Loading the weights two spans ahead instead of one, at 4 CTAs per SM, ran 3-9% slower at
/// M = 1..8 on the H200, 2026-11-30 second session: exec/measurements/h200-sxm-2026-11-30b.)
/// The wgmma variant keeps all 4 words' A fragments live until its wait (64 registers), so its
/// 2-tile kernel is set for 3 CTAs (at 4-5 it spilled 108-372 bytes: ptxas, sm_90a).
/// One tile at depth 1 (every M <= 8 GEMV) is set for 6: since the span's scale codes stay as
/// loaded (SpanWeights::sc), it needs 78-80 registers, which 6 CTAs of 128 threads allow (80
/// each), where at 85-91 it ran 5 (2026-12-02; docs/executor.md "Register spills"). The build
/// refuses a spill (-Xptxas=-warn-spills under -Werror), so code that outgrows a bound fails to
/// build instead of losing occupancy or spilling unseen.
template <int NT, int DEPTH, bool WG = false>
constexpr int kMinCtas = WG && NT == 2 ? 3 : NT == 1 && DEPTH == 1 ? 6 : NT <= 2 ? (DEPTH == 1 ? 5 : 4) : NT == 4 ? 3 : 2;

// The cp.async variant (RACKSIM_FP4_MMA_PIPE=cpasync, M <= 16): each warp streams its tiles
// through a private ring of kRing spans in shared memory instead of one span ahead in registers,
// so kRing - 1 spans (6.75 KB per warp) are in flight without costing registers. Each lane copies
// exactly the 16-byte units (and the 8 scale bytes) it later reads, so a lane's own
// cp.async.wait_group is all the synchronisation the ring needs.
constexpr int kRing = 4;
constexpr int kRingUnits = 4 * 32;  // 16-byte code units per span per warp

__device__ inline void cp_async16(void* dst, const void* src, bool valid) {
  const auto d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(valid ? 16 : 0) : "memory");
}
__device__ inline void cp_async8(void* dst, const void* src, bool valid) {
  const auto d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(d), "l"(src), "r"(valid ? 8 : 0) : "memory");
}
__device__ inline void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ inline void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

/// This lane's copies of `tile` into ring slot `slot` of its warp (zero-filled when the warp's rows
/// all lie past n, as load_span's zeros); one lane's part of what load_span reads.
__device__ inline void ring_issue(uint4* ring, uint2* ring_sc, int slot, const std::uint8_t* __restrict__ codes,
                                  const std::uint8_t* __restrict__ tscales, long long tile, int lane, bool active) {
  const uint4* c = active ? reinterpret_cast<const uint4*>(codes + tile * kFp4MmaTileCodeBytes) + lane : reinterpret_cast<const uint4*>(codes);
  const uint2* sc = active ? reinterpret_cast<const uint2*>(tscales + tile * kFp4MmaTileScaleBytes) + lane : reinterpret_cast<const uint2*>(tscales);
#pragma unroll
  for (int u = 0; u < 4; ++u) cp_async16(ring + slot * kRingUnits + u * 32 + lane, active ? c + u * 32 : c, active);
  cp_async8(ring_sc + slot * 32 + lane, sc, active);
}

/// Ring slot `slot` into the registers load_span would have filled.
__device__ inline void ring_read(SpanWeights& s, const uint4* ring, const uint2* ring_sc, int slot, int lane) {
#pragma unroll
  for (int u = 0; u < 4; ++u) s.w[u / 2][u % 2] = ring[slot * kRingUnits + u * 32 + lane];
  s.sc = ring_sc[slot * 32 + lane];
}

/// Word wd of the span's weights as the A fragments of the two k-steps 2 wd (ae) and 2 wd + 1 (ao),
/// per m-tile t: E2M1 -> FP16 (x 2^-14), times the block scale.
__device__ inline void decode_word(const SpanWeights& cur, int wd, std::uint32_t (&ae)[2][4], std::uint32_t (&ao)[2][4]) {
#pragma unroll
  for (int t = 0; t < 2; ++t)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const uint4 wv = cur.w[t][h];
      const std::uint32_t word = wd == 0 ? wv.x : wd == 1 ? wv.y : wd == 2 ? wv.z : wv.w;
      const __half2 s = wd < 2 ? __low2half2(cur.sc2[t][h]) : __high2half2(cur.sc2[t][h]);
      const fp4::Fp16x8 f = fp4::e2m1x8_mma_order_to_fp16x8_scaled(word);
      ae[t][h] = hmul2_bits(f.pairs[0], s);      // (e0, e4): k lo of the even step
      ae[t][2 + h] = hmul2_bits(f.pairs[1], s);  // (e1, e5): k hi
      ao[t][h] = hmul2_bits(f.pairs[2], s);      // (e2, e6)
      ao[t][2 + h] = hmul2_bits(f.pairs[3], s);  // (e3, e7)
    }
}

/// Shared memory of the kernel, in 16-byte units: the staged x span as mma.sync's B fragments
/// read it (NT x 8 tokens x kChunkStride), or as wgmma's descriptor reads it (8 k-steps).
template <int NT, bool WG>
constexpr int kSmemUnits = WG ? 8 * kWgStepBytes<NT> / 16 : NT * 8 * kChunkStride;

/// A grouped launch's device arrays (fp4_gemm_mma_grouped_launch): blockIdx.z is a slot, whose
/// expert is active[z] (-1: no expert, nothing to do).
struct GroupArgs {
  const std::int32_t* offsets = nullptr;
  const std::int32_t* active = nullptr;
  const Fp4MmaExpert* experts = nullptr;
  long long total_mn = 0;  ///< all experts' rows x n: the stride of a split's partials
};

/// RACKSIM_FP4_MMA_REDUCE=serial's arguments (counters null: the reduce launch sums the partials).
/// With act, a gate_up of 2 x ffn rows (ffn a multiple of kRowsPerCta, so gate row block b and up
/// row block b + pairs hold the same columns): one counter per pair, 2 x splits tickets, and its
/// last CTA writes act = silu(gate) x up, as fp4_mma_reduce_swiglu does.
struct SerialArgs {
  unsigned* counters = nullptr;
  std::uint16_t* act = nullptr;
  int pairs = 0;  ///< ffn / kRowsPerCta with act
};

template <int NT, int DEPTH, bool WG = false, bool RING = false, bool GROUP = false, bool XALL = false>
__global__ void __launch_bounds__(kThreads, kMinCtas<NT, DEPTH, WG>)
    fp4_mma_kernel(const __nv_bfloat16* __restrict__ x, int m, int n, int k, const std::uint8_t* __restrict__ codes,
                   const std::uint8_t* __restrict__ tscales, float out_scale, int spans_per_split, __nv_bfloat16* __restrict__ y,
                   float* __restrict__ partials, GroupArgs group, SerialArgs serial) {
  static_assert(!WG || NT >= 2, "wgmma runs 16, 32 or 64 tokens");
  static_assert(!RING || (!WG && DEPTH == 1 && NT <= 2), "the cp.async ring is the M <= 16 variant");
  static_assert(!GROUP || (DEPTH == 1 && !WG && !RING && !XALL), "the grouped launch runs the default kernel");
  static_assert(!XALL || (NT == 1 && DEPTH == 1 && !WG), "x staged once per split is the M <= 8 variant");
  // exec/cuda/pdl.cuh: nothing the previous kernel writes is touched before pdl_begin(). A grouped
  // launch reads the permute's offsets first, so it waits at once; the others read only the
  // model's weights (written before any step) until the wait below, so under RACKSIM_PDL their
  // first spans' loads overlap the previous kernel's end.
  if constexpr (GROUP) pdl_begin();
  if constexpr (GROUP) {
    // Expert active[blockIdx.z]: its rows of x and y, its weight; no expert or no rows, nothing to
    // do (the whole CTA).
    const int e = group.active[blockIdx.z];
    if (e < 0) return;
    const int r0 = group.offsets[e];
    m = group.offsets[e + 1] - r0;
    if (m <= 0) return;
    if (m > NT * 8) __trap();  // more rows than the tiles hold (the host sized them for max_m): fail loudly, never drop rows
    x += static_cast<long long>(r0) * k;
    y += static_cast<long long>(r0) * n;
    if (partials) partials += static_cast<long long>(r0) * n;  // split s of row r at s x total_mn + r x n
    const Fp4MmaExpert w = group.experts[e];
    codes = w.codes;
    tscales = w.tiled_scales;
    out_scale = w.tensor_scale * fp4::kFp16BitTrickScale;
  } else {
    (void)group;
  }
  __shared__ uint4 smem[XALL ? 1 : kSmemUnits<NT, WG>];
  // 4 warps x kRing spans: 32 KB of codes and 4 KB of scales (with x's staging, under the 48 KB a
  // CTA may declare statically).
  __shared__ uint4 ring_all[RING ? 4 * kRing * kRingUnits : 1];
  __shared__ uint2 ring_sc_all[RING ? 4 * kRing * 32 : 1];
  // RACKSIM_FP4_MMA_X=split: the split's whole x, staged once (fp4_mma_x_split_bytes: per span, m
  // token rows of kChunkStride 16-byte units, in the per-span layout's order), launched with that
  // much dynamic shared memory.
  extern __shared__ uint4 xall[];
  [[maybe_unused]] auto xs = reinterpret_cast<uint4(*)[kChunkStride]>(smem);  // the mma.sync layout
  const int lane = static_cast<int>(threadIdx.x) & 31, warp = static_cast<int>(threadIdx.x) >> 5;
  const int g = lane >> 2, tig = lane & 3;
  const int row0 = static_cast<int>(blockIdx.x) * kRowsPerCta + warp * 32;
  const int split = static_cast<int>(blockIdx.y);
  const int spans = (k + kSpan - 1) / kSpan;
  const int sp_begin = split * spans_per_split, sp_end = min(spans, sp_begin + spans_per_split);

  float acc[2][NT][4];
#pragma unroll
  for (int t = 0; t < 2; ++t)
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[t][j][i] = 0.0f;

  // x of the next span, raw BF16, one 8-value chunk per thread per 8-token tile (NT x 8 tokens x
  // 16 chunks = NT x 128): loaded a span ahead, like the weights, so no span waits on a load.
  uint4 xr[NT];
  const auto load_x = [&](int k0) {
#pragma unroll
    for (int i = 0; i < NT; ++i) {
      const int c = static_cast<int>(threadIdx.x) + i * kThreads, tok = c >> 4, kk = k0 + (c & 15) * 8;
      xr[i] = tok < m && kk < k ? __ldg(reinterpret_cast<const uint4*>(x + static_cast<long long>(tok) * k + kk)) : make_uint4(0, 0, 0, 0);
    }
  };
  const long long tile0 = static_cast<long long>(row0 / 32) * spans;  // the warp's row tile, span 0
  const bool active = row0 < n;
  static_assert(DEPTH == 1 || DEPTH == 2, "weights loaded one or two spans ahead");
  SpanWeights cur, nxt, nxt2;
  [[maybe_unused]] uint4* ring = ring_all + warp * kRing * kRingUnits;
  [[maybe_unused]] uint2* ring_sc = ring_sc_all + warp * kRing * 32;
  if constexpr (RING) {  // fill: spans sp_begin .. + kRing - 2, one commit group each (empty past the end)
#pragma unroll
    for (int i = 0; i < kRing - 1; ++i) {
      if (sp_begin + i < sp_end) ring_issue(ring, ring_sc, i, codes, tscales, tile0 + sp_begin + i, lane, active);
      cp_async_commit();
    }
  }
  if (sp_begin < sp_end) {
    if constexpr (!RING) load_span(cur, codes, tscales, tile0 + sp_begin, lane, active);
    if (DEPTH == 2 && sp_begin + 1 < sp_end) load_span(nxt, codes, tscales, tile0 + sp_begin + 1, lane, active);
  }
  // x is the previous kernel's output, and y and the partials may be read by it: wait here.
  if constexpr (!GROUP) pdl_begin();
  if constexpr (XALL) {
    // Every span's x of the split at once, as the per-span staging below would store it, but m
    // token rows per span instead of 8 (lanes of rows g >= m read row m - 1, below): then the span
    // loop has no barrier, and each warp streams its weights at its own pace.
    const int units = (sp_end - sp_begin) * m * 16;
    for (int c = static_cast<int>(threadIdx.x); c < units; c += kThreads) {
      const int q = c & 15, tok = (c >> 4) % m, s = (c >> 4) / m, kk = (sp_begin + s) * kSpan + q * 8;
      const uint4 r = kk < k ? __ldg(reinterpret_cast<const uint4*>(x + static_cast<long long>(tok) * k + kk)) : make_uint4(0, 0, 0, 0);
      xall[(s * m + tok) * kChunkStride + (q & 3) * 4 + (q >> 2)] = x_chunk_to_mma_fp16(r);
    }
    __syncthreads();
  } else {
    if (sp_begin < sp_end) load_x(sp_begin * kSpan);
  }
  [[maybe_unused]] const uint4* xlane = xall + min(g, m - 1) * kChunkStride + tig;
  [[maybe_unused]] const int xspan_units = m * kChunkStride;
  for (int sp = sp_begin; sp < sp_end; ++sp) {
    if constexpr (!XALL) {  // stage this span's x (XALL: staged before the loop)
      __syncthreads();  // every warp is done reading the previous span's x
#pragma unroll
      for (int i = 0; i < NT; ++i) {
        const int c = static_cast<int>(threadIdx.x) + i * kThreads, tok = c >> 4, q = c & 15;  // q: 8-value group; piece q / 4, word q % 4
        const uint4 out = x_chunk_to_mma_fp16(xr[i]);  // zeros past m and k
        if constexpr (WG) {
          auto* b = reinterpret_cast<unsigned char*>(smem);
          const int pc = q >> 2, w = q & 3;
          *reinterpret_cast<std::uint32_t*>(b + wg_b_offset<NT>(tok, pc, w, 0)) = out.x;
          *reinterpret_cast<std::uint32_t*>(b + wg_b_offset<NT>(tok, pc, w, 1)) = out.y;
          *reinterpret_cast<std::uint32_t*>(b + wg_b_offset<NT>(tok, pc, w, 2)) = out.z;
          *reinterpret_cast<std::uint32_t*>(b + wg_b_offset<NT>(tok, pc, w, 3)) = out.w;
        } else {
          xs[tok][(q & 3) * 4 + (q >> 2)] = out;  // word-major, then piece: lanes tig 0..3 read 64 contiguous bytes
        }
      }
      if constexpr (WG) fence_proxy_async_shared();
      __syncthreads();
    }
    if constexpr (RING) {
      // Groups complete in order: kRing - 1 + i committed, so at most kRing - 2 pending means span
      // sp's (group i) has landed. Then refill the slot read last span (its data is in registers).
      const int i = sp - sp_begin;
      cp_async_wait<kRing - 2>();
      ring_read(cur, ring, ring_sc, i % kRing, lane);
      if (sp + kRing - 1 < sp_end) ring_issue(ring, ring_sc, (i + kRing - 1) % kRing, codes, tscales, tile0 + sp + kRing - 1, lane, active);
      cp_async_commit();
    } else if constexpr (DEPTH == 1) {
      if (sp + 1 < sp_end) load_span(nxt, codes, tscales, tile0 + sp + 1, lane, active);
    } else {
      if (sp + 2 < sp_end) load_span(nxt2, codes, tscales, tile0 + sp + 2, lane, active);
    }
    if (!XALL && sp + 1 < sp_end) load_x((sp + 1) * kSpan);
    // XALL: this span's token row g of the staged x. Lanes of tokens g >= m read row m - 1
    // instead: B's column g only reaches D's column g, which the epilogue never stores (tok >= m).
    [[maybe_unused]] const uint4* xspan = xlane + (sp - sp_begin) * xspan_units;

#pragma unroll
    for (int t = 0; t < 2; ++t)
#pragma unroll
      for (int h = 0; h < 2; ++h) cur.sc2[t][h] = ue4m3_pair_to_half2((t == 0 ? cur.sc.x : cur.sc.y) >> (16 * h));
    if constexpr (WG) {
      // All 4 words' fragments stay in their registers until the wait: wgmma reads them late.
      std::uint32_t a[4][2][2][4];  // [word][even, odd k-step][m-tile][register]
#pragma unroll
      for (int wd = 0; wd < 4; ++wd) {
        decode_word(cur, wd, a[wd][0], a[wd][1]);
        // Pin the fragments (and, first, the accumulators) before the fence, so that no write to
        // them can be scheduled after it (ptxas would then serialize the wgmmas; FlashAttention-3's
        // gemm() fences its operands the same way).
#pragma unroll
        for (int e = 0; e < 2; ++e)
#pragma unroll
          for (int t = 0; t < 2; ++t)
#pragma unroll
            for (int i = 0; i < 4; ++i) keep_reg(a[wd][e][t][i]);
        if (wd == 0) {
#pragma unroll
          for (int t = 0; t < 2; ++t)
#pragma unroll
            for (int j = 0; j < NT; ++j)
#pragma unroll
              for (int i = 0; i < 4; ++i) keep_reg(acc[t][j][i]);
        }
        wgmma_fence();  // the fragments (and, first, the accumulators) were written by ordinary instructions
#pragma unroll
        for (int e = 0; e < 2; ++e)
#pragma unroll
          for (int t = 0; t < 2; ++t) wgmma_rs<NT>(acc[t], a[wd][e][t], wg_b_desc(smem, 2 * wd + e, kWgStepBytes<NT>));
        wgmma_commit();
      }
      wgmma_wait_all();  // before the next span's staging overwrites B, and before a[] is reused
#pragma unroll
      for (int wd = 0; wd < 4; ++wd)
#pragma unroll
        for (int e = 0; e < 2; ++e)
#pragma unroll
          for (int t = 0; t < 2; ++t)
#pragma unroll
            for (int i = 0; i < 4; ++i) keep_reg(a[wd][e][t][i]);
#pragma unroll
      for (int t = 0; t < 2; ++t)
#pragma unroll
        for (int j = 0; j < NT; ++j)
#pragma unroll
          for (int i = 0; i < 4; ++i) keep_reg(acc[t][j][i]);
    } else {
#pragma unroll
      for (int wd = 0; wd < 4; ++wd) {
        std::uint32_t ae[2][4], ao[2][4];  // per m-tile: the even and odd k-step's A fragment
        decode_word(cur, wd, ae, ao);
#pragma unroll
        for (int j = 0; j < NT; ++j) {
          const uint4 b = XALL ? xspan[wd * 4] : xs[j * 8 + g][wd * 4 + tig];
#pragma unroll
          for (int t = 0; t < 2; ++t) {
            mma_16816(acc[t][j], ae[t], b.x, b.y);
            mma_16816(acc[t][j], ao[t], b.z, b.w);
          }
        }
      }
    }
    if (!RING && sp + 1 < sp_end) cur = nxt;
    if (DEPTH == 2 && sp + 2 < sp_end) nxt = nxt2;
  }

  // C fragment: c0, c1 = (row g, tokens 2 tig, 2 tig + 1); c2, c3 = row g + 8.
#pragma unroll
  for (int t = 0; t < 2; ++t)
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int row = row0 + 16 * t + g + (i >= 2 ? 8 : 0);
        const int tok = j * 8 + 2 * tig + (i & 1);
        if (row >= n || tok >= m) continue;
        const long long at = static_cast<long long>(tok) * n + row;
        if constexpr (GROUP) {  // each expert's own scale applied here: the reduce sums scaled partials
          if (partials) partials[static_cast<long long>(split) * group.total_mn + at] = acc[t][j][i] * out_scale;
          else y[at] = __float2bfloat16_rn(acc[t][j][i] * out_scale);
        } else {
          if (partials) partials[static_cast<long long>(split) * m * n + at] = acc[t][j][i];
          else y[at] = __float2bfloat16_rn(acc[t][j][i] * out_scale);
        }
      }
  if constexpr (!GROUP) {
    // RACKSIM_FP4_MMA_REDUCE=serial (fp4_gemm_path.hpp fp4_mma_knobs): the row block's last CTA to
    // finish sums its partials, so no reduce launch follows. The CUDA C++ Programming Guide's
    // threadFenceReduction: each thread's partials made visible device-wide, then one ticket per
    // CTA; the CTA that draws gridDim.y - 1 sees every split's partials.
    if (!serial.counters || !partials) return;
    const bool swiglu = serial.act != nullptr;
    const int counter = swiglu ? static_cast<int>(blockIdx.x) % serial.pairs : static_cast<int>(blockIdx.x);
    const unsigned tickets = (swiglu ? 2u : 1u) * gridDim.y;
    __shared__ int last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(&serial.counters[counter], 1u) == tickets - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    const long long mn = static_cast<long long>(m) * n;
    const int splits = static_cast<int>(gridDim.y);
    if (swiglu) {  // fp4_mma_reduce_swiglu's sums and formula over the pair's kRowsPerCta columns
      const int ffn = n / 2, c0 = counter * kRowsPerCta;
      for (int e = static_cast<int>(threadIdx.x); e < m * kRowsPerCta; e += kThreads) {
        const int tok = e / kRowsPerCta, c = c0 + e % kRowsPerCta;
        const long long gi = static_cast<long long>(tok) * n + c;
        float gs = 0.0f, us = 0.0f;
        for (int p = 0; p < splits; ++p) {
          gs += __ldcg(partials + p * mn + gi);
          us += __ldcg(partials + p * mn + gi + ffn);
        }
        const float gb = bf16_to_float(float_to_bf16(gs * out_scale)), ub = bf16_to_float(float_to_bf16(us * out_scale));
        serial.act[static_cast<long long>(tok) * ffn + c] = float_to_bf16(silu_times(gb, ub));
      }
    } else {
      const int r0 = static_cast<int>(blockIdx.x) * kRowsPerCta, rows = min(kRowsPerCta, n - r0);
      for (int e = static_cast<int>(threadIdx.x); e < m * rows; e += kThreads) {
        const long long at = static_cast<long long>(e / rows) * n + r0 + e % rows;
        float sum = 0.0f;  // fp4_mma_reduce's sum, in split order: the same bits
        for (int p = 0; p < splits; ++p) sum += __ldcg(partials + p * mn + at);
        y[at] = __float2bfloat16_rn(sum * out_scale);
      }
    }
    if (threadIdx.x == 0) serial.counters[counter] = 0u;  // for the next launch (and graph replay) on this device
  }
}

/// y = BF16(out_scale x sum over splits of the partials), summed in split order.
__global__ void fp4_mma_reduce(const float* __restrict__ partials, long long mn, int splits, float out_scale, __nv_bfloat16* __restrict__ y) {
  pdl_begin();  // exec/cuda/pdl.cuh: first, before any memory access
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < mn; i += static_cast<long long>(gridDim.x) * blockDim.x) {
    float s = 0.0f;
    for (int p = 0; p < splits; ++p) s += partials[p * mn + i];
    y[i] = __float2bfloat16_rn(s * out_scale);
  }
}

/// RACKSIM_FUSE_SWIGLU: act[t][c] = silu(gate) x up for c < ffn, where gate and up are what
/// fp4_mma_reduce would write at y[t][c] and y[t][ffn + c] (the same sums in split order, rounded
/// once to BF16), then ops_elementwise.cu's swiglu_kernel formula on those BF16 values: the same
/// bits the GEMM and the SwiGLU kernel give one after the other, without y.
__global__ void fp4_mma_reduce_swiglu(const float* __restrict__ partials, long long mn, int splits, float out_scale, long long ffn,
                                      long long count, std::uint16_t* __restrict__ act) {
  pdl_begin();  // exec/cuda/pdl.cuh: first, before any memory access
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < count; i += static_cast<long long>(gridDim.x) * blockDim.x) {
    const long long t = i / ffn, c = i - t * ffn, gi = t * 2 * ffn + c;
    float g = 0.0f, u = 0.0f;
    for (int p = 0; p < splits; ++p) {
      g += partials[p * mn + gi];
      u += partials[p * mn + gi + ffn];
    }
    const float gb = bf16_to_float(float_to_bf16(g * out_scale)), ub = bf16_to_float(float_to_bf16(u * out_scale));
    act[i] = float_to_bf16(silu_times(gb, ub));  // swiglu_kernel's formula (bf16_vec.cuh)
  }
}

/// CTAs of fp4_mma_kernel<NT> resident per SM on the current device (the occupancy API), with
/// `dynamic` bytes of dynamic shared memory per CTA, clamped to fp4_mma_plan's 1..8.
template <int NT, int DEPTH = 1, bool WG = false, bool RING = false>
int resident_per_sm(std::size_t dynamic = 0) {
  int blocks = 0;
  RACKSIM_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, fp4_mma_kernel<NT, DEPTH, WG, RING>, kThreads, dynamic));
  return std::clamp(blocks, 1, 8);
}

/// RACKSIM_FP4_MMA_CTAS's dynamic shared memory for fp4_mma_kernel<NT, DEPTH> on the current
/// device (fp4_mma_ctas_pad_bytes over the kernel's static bytes and the device's per-SM and
/// reserved bytes); 0 without a cap. Every capped launch is padded, also where registers alone
/// hold the kernel to the cap: then CTAS=5 and CTAS=6 leave the same shared-memory carveout (L1
/// size) on the SM and differ in occupancy only. Asked once per thread, device and cap (the
/// tensor-parallel ranks are threads: no lock on a launch).
template <int NT, int DEPTH>
std::size_t ctas_pad(int cap) {
  if (cap == 0) return 0;
  thread_local std::map<std::pair<int, int>, std::size_t> known;
  int dev = 0;
  RACKSIM_CUDA_CHECK(cudaGetDevice(&dev));
  if (const auto it = known.find({dev, cap}); it != known.end()) return it->second;
  cudaFuncAttributes fa{};
  RACKSIM_CUDA_CHECK(cudaFuncGetAttributes(&fa, fp4_mma_kernel<NT, DEPTH>));
  int sm_bytes = 0, reserved = 0;
  RACKSIM_CUDA_CHECK(cudaDeviceGetAttribute(&sm_bytes, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev));
  RACKSIM_CUDA_CHECK(cudaDeviceGetAttribute(&reserved, cudaDevAttrReservedSharedMemoryPerBlock, dev));
  const auto pad = static_cast<std::size_t>(fp4_mma_ctas_pad_bytes(static_cast<std::int64_t>(fa.sharedSizeBytes), sm_bytes, reserved, cap));
  // What a launch may use without cudaFuncAttributeMaxDynamicSharedMemorySize (CUDA C++
  // Programming Guide, "Shared Memory": above 48 KB a kernel must opt in).
  constexpr std::size_t kNoOptIn = 48 * 1024;
  if (fa.sharedSizeBytes + pad > kNoOptIn)
    throw InputError(text("environment RACKSIM_FP4_MMA_CTAS=", cap, ": the ", NT, "-tile kernel would need ", fa.sharedSizeBytes + pad,
                          " B of shared memory per CTA on this device (", sm_bytes, " B per SM), past the ", kNoOptIn, " B a launch takes without opt-in"));
  return known[{dev, cap}] = pad;
}

template <int NT, int DEPTH = 1, bool WG = false, bool RING = false>
void launch_nt(const Fp4MmaPlan& p, const __nv_bfloat16* x, int m, int n, int k, const std::uint8_t* codes, const std::uint8_t* tscales,
               float out_scale, __nv_bfloat16* y, float* partials, SerialArgs serial, cudaStream_t s, int ctas = 0) {
  const dim3 grid(static_cast<unsigned>(p.row_blocks), static_cast<unsigned>(p.splits));
  std::size_t pad = 0;
  if constexpr (!WG && !RING) pad = ctas_pad<NT, DEPTH>(ctas);  // the launch plan leaves ctas 0 for the others
  launch_kernel(fp4_mma_kernel<NT, DEPTH, WG, RING>, grid, kThreads, pad, s, x, m, n, k, codes, tscales, out_scale,
                static_cast<int>(p.spans_per_split), y, partials, GroupArgs{}, serial);
}

/// RACKSIM_FP4_MMA_X=split's launch (one tile, depth 1; with or without the ring): the split's x in
/// fp4_mma_x_split_bytes of dynamic shared memory, at most fp4_mma_x_split_max_bytes(RING), which
/// with the kernel's static shared memory stays within the 48 KiB a launch takes without opting in.
static_assert(kChunkStride * 16 == kFp4MmaXRowBytes, "fp4_mma_x_split_bytes counts the kernel's token rows");
static_assert(sizeof(uint4) * 4 * kRing * kRingUnits + sizeof(uint2) * 4 * kRing * 32 + sizeof(uint4) + kFp4MmaXSplitMaxBytesRing <= 48 * 1024,
              "the ring's static shared memory and the split's x fit in 48 KiB");
template <bool RING>
void launch_x_split(const Fp4MmaPlan& p, const __nv_bfloat16* x, int m, int n, int k, const std::uint8_t* codes, const std::uint8_t* tscales,
                    float out_scale, __nv_bfloat16* y, float* partials, SerialArgs serial, cudaStream_t s) {
  const dim3 grid(static_cast<unsigned>(p.row_blocks), static_cast<unsigned>(p.splits));
  const auto smem = static_cast<std::size_t>(fp4_mma_x_split_bytes(m, p.spans_per_split));
  if (smem > static_cast<std::size_t>(fp4_mma_x_split_max_bytes(RING)))
    throw InputError(text("fp4_gemm_mma_launch: x of ", p.spans_per_split, " spans x ", m, " rows needs ", smem, " B of shared memory (at most ",
                          fp4_mma_x_split_max_bytes(RING), ")"));
  launch_kernel(fp4_mma_kernel<1, 1, false, RING, false, true>, grid, kThreads, smem, s, x, m, n, k, codes, tscales, out_scale,
                static_cast<int>(p.spans_per_split), y, partials, GroupArgs{}, serial);
}

/// The grouped launch: the plan's row blocks and K splits per expert (grid z), depth 1, mma.sync.
template <int NT>
void launch_grouped(const Fp4MmaPlan& p, int slices, const __nv_bfloat16* x, int n, int k, GroupArgs g, __nv_bfloat16* y, float* partials,
                    cudaStream_t s) {
  const dim3 grid(static_cast<unsigned>(p.row_blocks), static_cast<unsigned>(p.splits), static_cast<unsigned>(slices));
  launch_kernel(fp4_mma_kernel<NT, 1, false, false, true>, grid, kThreads, 0, s, x, 0, n, k, nullptr, nullptr, 0.0f,
                static_cast<int>(p.spans_per_split), y, partials, g, SerialArgs{});
}

/// The variant knobs (fp4_mma_knobs, read once from the environment; docs/executor.md "Measured on
/// an H200, second session"), for
/// same-session A/B runs on a device:
/// - RACKSIM_FP4_MMA_SPLITS = auto | fill8 | wave | balance: fp4_mma_plan's default rule, its
///   whole-wave rule at the kernel's occupancy, (auto, the default) whole-wave for 1 and 2 tiles
///   (M <= 16) when it still splits K, else the default; or at 1-2 tiles the wave model's pick
///   (fp4_mma_plan_balanced; not yet measured). H200, same-session ratios whole-wave / default: row-major
///   weights 0.90-0.97 at M <= 16 for qkv, down and gate_up, 1.04-1.09 at M = 32 (2026-11-30b,
///   first run); tiled weights 0.89-0.97 for qkv at M <= 16, 0.92-0.95 at M = 16, 1.00 +- 0.01
///   elsewhere, but 1.04-1.06 for gate_up at M <= 4, where it leaves K unsplit
///   (exec/measurements/h200-sxm-2026-11-30c/history/runs/gemm-nvfp4-fill8-tiled-34f0475.json
///   against gemm-nvfp4-tiled-34f0475.json).
/// - RACKSIM_FP4_MMA_TILES = 4 | 8: M = 33..64 as two passes of <= 4 tiles, or (8, the default)
///   one pass of 8 tiles (the weights read once; 2 CTAs per SM): 0.64-1.00x the two passes' time
///   on the H200 (2026-11-30b), and the batch-64 Llama-2-70B step 62.4 -> 47.1 ms (graph).
/// - RACKSIM_FP4_MMA_DEPTH = auto | 1 | 2: spans of weights in flight per warp (at 1-2 tiles 2
///   costs CTAs per SM: 4 instead of 6 at 1 tile (5 before 2026-12-02), 4 instead of 5 at 2; at 4 and 8 tiles, 2 only when set, not by auto: the
///   8-tile kernel keeps 2 CTAs per SM at 224 registers instead of 207, the 4-tile one 3 at 158
///   instead of 130, no spills (ptxas, sm_90a, 2026-12-02; 233/214 and 159/141 when written); written 2026-12-01 without a device for the
///   M = 17..64 GEMMs, which 8-12 warps per SM leave latency-bound). Row-major layout: 2 ran
///   1.03-1.09x slower at M = 1..8 (2026-11-30b, first run); tiled layout: 1.00-1.13x at M = 1..8, but 0.90-0.97x at M = 16 for o_proj, down and gate_up
///   (qkv 1.03x; history/runs/gemm-nvfp4-depth2-tiled-bd797a1.json against
///   gemm-nvfp4-smem-dequant-bd797a1.json, same run). auto (the default): 2 for 2 tiles
///   (M = 9..16), else 1.
/// - RACKSIM_FP4_MMA_MMA = sync | wgmma: the MMA instruction at M > 8 (M <= 8 always runs
///   mma.sync). wgmma (written 2026-11-30 without a device; not yet run) issues one
///   wgmma.m64nNk16 per m-tile and k-step for the warpgroup instead of NT mma.sync per warp, and
///   reads B straight from shared memory: at 8 tiles the span loop's PTX goes 790 -> 642
///   instructions (tools/ptx_loop_count.py). InputError on a device other than compute capability 9.
/// - RACKSIM_FP4_MMA_PIPE = regs | cpasync: at M <= 16, the next spans' weights one ahead in
///   registers (regs, the default) or kRing - 1 = 3 ahead through a per-warp cp.async ring in
///   shared memory (written 2026-11-30 without a device; not yet run): 3x the bytes in flight
///   per warp without the registers that cost depth 2 its occupancy.
/// - RACKSIM_FP4_MMA_X = span | split: at M <= 8, x staged per span between two barriers (span,
///   the default) or once per CTA for its whole K split before the span loop (split, written
///   2026-12-01 without a device; not yet run), at depth 1 and where that fits in
///   fp4_mma_x_split_max_bytes (fp4_mma_x_split_bytes); planned as the kernel without it. The
///   loop then has no barrier, so a warp whose weights have landed never waits for the CTA's
///   slowest; ncu put the M = 1 GEMV at 58% issue and 59% DRAM (the second H200 session):
///   latency, which the two barriers per span add to. With RACKSIM_FP4_MMA_PIPE=cpasync too, each
///   warp is an independent stream of 3 spans in flight.
/// - RACKSIM_FP4_MMA_CTAS = auto | 4 | 5 | 6: at most that many CTAs per SM of the register-staged
///   mma.sync kernel, by dynamic shared memory (ctas_pad, fp4_mma_ctas_pad_bytes); the plan counts
///   the capped occupancy (capped_resident). Written 2026-12-02 without a device, for the same-run
///   ratio of the M <= 8 GEMV at 5 CTAs per SM (2af6518's) against 6, today's default: CTAS=5
///   against CTAS=6 (the same carveout), and CTAS=6 against the default (the carveout alone).
/// Any other value: InputError naming the variable.
using Knobs = Fp4MmaKnobs;

const Knobs& knobs() {
  static const Knobs k = fp4_mma_knobs_from_env();
  return k;
}

/// Unit u (16 bytes of codes) of the tiled layout -> its row and first value (fp4_gemm_path.hpp).
__device__ inline void unit_position(long long u, long long spans, long long& r, long long& k0, long long& tile, int& lane, int& unit) {
  tile = u / 128;
  const int w = static_cast<int>(u % 128);
  unit = w / 32, lane = w % 32;
  r = (tile / spans) * 32 + (unit / 2) * 16 + (unit % 2) * 8 + lane / 4;
  k0 = (tile % spans) * 128 + (lane % 4) * 32;
}

/// Row-major NVFP4 -> tiled: one thread per 16-byte unit of the tiled buffer (grid-stride), zeros
/// past n and k.
__global__ void fp4_mma_tile_kernel(const std::uint8_t* __restrict__ packed, const std::uint8_t* __restrict__ scales, long long n,
                                    long long k, long long spans, long long units, std::uint8_t* __restrict__ codes,
                                    std::uint8_t* __restrict__ tscales) {
  for (long long u = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; u < units; u += static_cast<long long>(gridDim.x) * blockDim.x) {
    long long r, k0, tile;
    int lane, unit;
    unit_position(u, spans, r, k0, tile, lane, unit);
    uint4 v = make_uint4(0, 0, 0, 0);
    unsigned short sc = 0;
    if (r < n && k0 < k) {
      v = *reinterpret_cast<const uint4*>(packed + r * (k / 2) + k0 / 2);
      v = make_uint4(fp4::e2m1x8_to_mma_order(v.x), fp4::e2m1x8_to_mma_order(v.y), fp4::e2m1x8_to_mma_order(v.z),
                     fp4::e2m1x8_to_mma_order(v.w));  // each word in the fused kernel's bit order (fp4.hpp)
      const std::uint8_t* src = scales + r * (k / 16) + k0 / 16;
      sc = static_cast<unsigned short>(src[0] | (src[1] << 8));
    }
    reinterpret_cast<uint4*>(codes)[u] = v;
    *reinterpret_cast<unsigned short*>(tscales + tile * kFp4MmaTileScaleBytes + lane * 8 + unit * 2) = sc;
  }
}

/// Tiled NVFP4 -> row-major BF16 (value x block scale x tensor_scale, each exact in FP32 and
/// rounded once) or, E4M3 = true, row-major E4M3 codes of value x block scale / 8 (the FP8
/// large-M variant: act::nvfp4_e4m3_weight_code; `factor` is then 1/8 and tensor_scale x 8 goes to
/// the GEMM's alpha): one thread per 16-byte unit in tile order (grid-stride): coalesced reads, and
/// each thread's 32 values stored contiguously (64 bytes of BF16 or 32 of E4M3; a lane column's 4
/// lanes: 128 values of one row). H200, M = 128..256 (dequantize + cuBLASLt BF16), against the
/// row-major layout's dequantize: 1.04-1.08x; walking row-major instead (scattered 16-byte reads)
/// 1.08-1.16x, and staging 4 spans of a row tile in shared memory for 1 KB row stores 1.12-1.21x
/// (2026-11-30, second session's runs).
/// With E4M3 and `amax.x` set, the first kFp8AmaxBlocks blocks run the FP8 variant's amax pass over
/// the GEMM's x instead (amax_partial_block): one launch fewer per GEMM, and first in the grid so
/// that they run beside the dequantize's blocks rather than after them.
struct AmaxJob {
  const uint4* x = nullptr;
  std::size_t units = 0;
  float* partials = nullptr;
};

template <bool E4M3>
__global__ void __launch_bounds__(256) fp4_mma_dequant_kernel(const std::uint8_t* __restrict__ codes, const std::uint8_t* __restrict__ tscales,
                                                              long long n, long long k, long long spans, long long units, float factor,
                                                              void* __restrict__ out, unsigned dequant_blocks, AmaxJob amax) {
  unsigned block = blockIdx.x;
  if constexpr (E4M3) {
    if (amax.x) {
      if (block < static_cast<unsigned>(kFp8AmaxBlocks)) {  // uniform per block, so the pass's __syncthreads is safe
        amax_partial_block(amax.x, amax.units, amax.partials, static_cast<int>(block));
        return;
      }
      block -= kFp8AmaxBlocks;
    }
  }
  for (long long u = block * static_cast<long long>(blockDim.x) + threadIdx.x; u < units; u += static_cast<long long>(dequant_blocks) * blockDim.x) {
    long long r, k0, tile;
    int lane, unit;
    unit_position(u, spans, r, k0, tile, lane, unit);
    if (r >= n || k0 >= k) continue;
    const uint4 v = reinterpret_cast<const uint4*>(codes)[u];
    const std::uint8_t* sp = tscales + tile * kFp4MmaTileScaleBytes + lane * 8 + unit * 2;
    const float s0 = fp4::decode_ue4m3(sp[0]) * factor, s1 = fp4::decode_ue4m3(sp[1]) * factor;
    // Word w holds values 8 w .. 8 w + 7 in the kernel's bit order; its FP16 pair q (the same 11
    // instructions as the fused kernel) is values 8 w + q and 8 w + q + 4, each E2M1 x 2^-14 exactly,
    // so x (2^14 x s) gives the same FP32 product as E2M1 x s (exact under factor 1/8).
    const std::uint32_t words[4] = {v.x, v.y, v.z, v.w};
    float p[32];
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      const fp4::Fp16x8 f = fp4::e2m1x8_mma_order_to_fp16x8_scaled(words[w]);
      const float s = (w < 2 ? s0 : s1) * fp4::kFp16BitTrickScale;
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        __half2 h;
        std::memcpy(&h, &f.pairs[q], 4);
        const float2 e = __half22float2(h);
        p[8 * w + q] = e.x * s;
        p[8 * w + q + 4] = e.y * s;
      }
    }
    if constexpr (E4M3) {
      // cvt.rn.satfinite.e4m3x2.f32: round to nearest even, as act::e4m3_code (never saturates here).
      __align__(16) __nv_fp8x2_storage_t o[16];
#pragma unroll
      for (int i = 0; i < 16; ++i) o[i] = __nv_cvt_float2_to_fp8x2(make_float2(p[2 * i], p[2 * i + 1]), __NV_SATFINITE, __NV_E4M3);
      uint4* dst = reinterpret_cast<uint4*>(static_cast<std::uint8_t*>(out) + r * k + k0);
      dst[0] = reinterpret_cast<const uint4*>(o)[0];
      dst[1] = reinterpret_cast<const uint4*>(o)[1];
    } else {
      __align__(16) __nv_bfloat16 o[32];
#pragma unroll
      for (int i = 0; i < 32; ++i) o[i] = __float2bfloat16_rn(p[i]);
      uint4* dst = reinterpret_cast<uint4*>(static_cast<__nv_bfloat16*>(out) + r * k + k0);
#pragma unroll
      for (int i = 0; i < 4; ++i) dst[i] = reinterpret_cast<const uint4*>(o)[i];
    }
  }
}

unsigned unit_grid(long long units) { return static_cast<unsigned>(std::min<long long>((units + 255) / 256, 65535LL * 4)); }

/// resident_per_sm of the register-staged mma.sync kernel launched under RACKSIM_FP4_MMA_CTAS=cap
/// (its ctas_pad), asked once per thread, device and cap.
template <int NT, int DEPTH>
int capped_resident(int cap) {
  thread_local std::map<std::pair<int, int>, int> known;
  int dev = 0;
  RACKSIM_CUDA_CHECK(cudaGetDevice(&dev));
  if (const auto it = known.find({dev, cap}); it != known.end()) return it->second;
  return known[{dev, cap}] = resident_per_sm<NT, DEPTH>(ctas_pad<NT, DEPTH>(cap));
}

/// RACKSIM_FP4_MMA_MMA=wgmma needs a Hopper device and sm_90a code in this build (wgmma exists on
/// sm_90a only; a plain sm_90 build compiles the variant to a trap); asked once.
void require_hopper_for_wgmma() {
#ifdef RACKSIM_CUDA_ARCHS
  if (std::string_view(RACKSIM_CUDA_ARCHS).find("sm_90a") == std::string_view::npos)
    throw InputError(text("environment RACKSIM_FP4_MMA_MMA=wgmma: this build has no sm_90a code (CUDA architectures ", RACKSIM_CUDA_ARCHS,
                          "); wgmma needs RACKSIM_CUDA_ARCHITECTURES to include 90a"));
#endif
  static const int major = [] {
    int dev = 0, v = 0;
    RACKSIM_CUDA_CHECK(cudaGetDevice(&dev));
    RACKSIM_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrComputeCapabilityMajor, dev));
    return v;
  }();
  if (major != 9)
    throw InputError(text("environment RACKSIM_FP4_MMA_MMA=wgmma: the device has compute capability ", major,
                          ".x; wgmma is Hopper's instruction (9.0); unset it or set sync"));
}

void dequant_launch(bool e4m3, const std::uint8_t* codes, const std::uint8_t* tiled_scales, std::int64_t n, std::int64_t k, float factor,
                    void* out, void* stream, AmaxJob amax = {}) {
  if (n < 1 || k < 32 || k % 32 != 0)
    throw InputError(text("fp4_mma_dequant_", e4m3 ? "e4m3" : "bf16", "_launch: ", n, " x ", k, ": k must be a positive multiple of 32"));
  const Fp4MmaTiling t = fp4_mma_tiling(n, k);
  const long long units = t.code_bytes / 16;
  const auto s = static_cast<cudaStream_t>(stream);
  const unsigned blocks = unit_grid(units), extra = amax.x ? static_cast<unsigned>(kFp8AmaxBlocks) : 0u;
  if (e4m3)
    fp4_mma_dequant_kernel<true><<<blocks + extra, 256, 0, s>>>(codes, tiled_scales, n, k, t.spans, units, factor, out, blocks, amax);
  else
    fp4_mma_dequant_kernel<false><<<blocks, 256, 0, s>>>(codes, tiled_scales, n, k, t.spans, units, factor, out, blocks, amax);
  RACKSIM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void fp4_mma_tile_launch(const std::uint8_t* packed, const std::uint8_t* scales, std::int64_t n, std::int64_t k, std::uint8_t* codes,
                         std::uint8_t* tiled_scales, void* stream) {
  if (n < 1 || k < 32 || k % 32 != 0) throw InputError(text("fp4_mma_tile_launch: ", n, " x ", k, ": k must be a positive multiple of 32"));
  const Fp4MmaTiling t = fp4_mma_tiling(n, k);
  const long long units = t.code_bytes / 16;
  fp4_mma_tile_kernel<<<unit_grid(units), 256, 0, static_cast<cudaStream_t>(stream)>>>(packed, scales, n, k, t.spans, units, codes,
                                                                                      tiled_scales);
  RACKSIM_CUDA_CHECK(cudaGetLastError());
  // The tiles complete before any GEMM reads them ahead of its PDL wait (the header says why).
  RACKSIM_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)));
}

void fp4_mma_dequant_bf16_launch(const std::uint8_t* codes, const std::uint8_t* tiled_scales, std::int64_t n, std::int64_t k,
                                 float tensor_scale, std::uint16_t* out, void* stream) {
  dequant_launch(false, codes, tiled_scales, n, k, tensor_scale, out, stream);
}

void fp4_mma_dequant_e4m3_launch(const std::uint8_t* codes, const std::uint8_t* tiled_scales, std::int64_t n, std::int64_t k,
                                 std::uint8_t* out, void* stream, const std::uint16_t* amax_x, std::int64_t amax_count, float* amax_partials) {
  if (amax_x && (amax_count % 8 != 0 || !amax_partials))
    throw InputError(text("fp4_mma_dequant_e4m3_launch: the amax pass needs a multiple of 8 values (got ", amax_count, ") and a partials buffer"));
  const AmaxJob job{amax_x ? reinterpret_cast<const uint4*>(amax_x) : nullptr, static_cast<std::size_t>(amax_count / 8), amax_partials};
  dequant_launch(true, codes, tiled_scales, n, k, 1.0f / act::kNvfp4E4m3WeightDivisor, out, stream, job);
}

namespace {

/// CTAs of each kernel variant resident per SM on the current device (the occupancy API), asked
/// once for all of them; `of(knobs)` is fp4_mma_launch_plan's `resident` for a knob set: the
/// kernel each (tiles, depth) launches under it. 1 tile never runs wgmma; the ring always runs
/// depth 1.
struct Occupancy {
  int plain[4][2], ring[2], wg[4][2];
  static int row(int tiles) { return tiles == 1 ? 0 : tiles == 2 ? 1 : tiles == 4 ? 2 : 3; }
  [[nodiscard]] std::function<int(int, int)> of(const Knobs& kn) const {
    return [this, ring_on = kn.ring, wg_on = kn.wgmma, cap = kn.ctas](int tiles, int depth) {
      const int r = row(tiles), d = depth == 2 ? 1 : 0;
      if (ring_on && tiles <= 2) return ring[r];
      if (wg_on && tiles >= 2) return wg[r][d];
      if (cap != 0) return capped(tiles, depth, cap);  // RACKSIM_FP4_MMA_CTAS: the padded launch's occupancy
      return plain[r][d];
    };
  }
  static int capped(int tiles, int depth, int cap) {
    const bool deep = depth == 2;
    switch (tiles) {
      case 1: return deep ? capped_resident<1, 2>(cap) : capped_resident<1, 1>(cap);
      case 2: return deep ? capped_resident<2, 2>(cap) : capped_resident<2, 1>(cap);
      case 4: return deep ? capped_resident<4, 2>(cap) : capped_resident<4, 1>(cap);
      default: return deep ? capped_resident<8, 2>(cap) : capped_resident<8, 1>(cap);
    }
  }
};

const Occupancy& occupancy() {
  static const Occupancy o = [] {
    Occupancy v{};
    v.plain[0][0] = resident_per_sm<1>(), v.plain[0][1] = resident_per_sm<1, 2>();
    v.plain[1][0] = resident_per_sm<2>(), v.plain[1][1] = resident_per_sm<2, 2>();
    v.plain[2][0] = resident_per_sm<4>(), v.plain[2][1] = resident_per_sm<4, 2>();
    v.plain[3][0] = resident_per_sm<8>(), v.plain[3][1] = resident_per_sm<8, 2>();
    v.ring[0] = resident_per_sm<1, 1, false, true>(), v.ring[1] = resident_per_sm<2, 1, false, true>();
    v.wg[0][0] = v.wg[0][1] = v.plain[0][0];  // never launched: M <= 8 runs mma.sync
    v.wg[1][0] = resident_per_sm<2, 1, true>(), v.wg[1][1] = resident_per_sm<2, 2, true>();
    v.wg[2][0] = v.wg[2][1] = resident_per_sm<4, 1, true>();  // no depth-2 wgmma at 4 and 8 tiles
    v.wg[3][0] = v.wg[3][1] = resident_per_sm<8, 1, true>();
    return v;
  }();
  return o;
}

/// RACKSIM_FP4_MMA_REDUCE=serial's ticket counters: one array of kSerialCounters per device,
/// allocated and zeroed on first use, kept for the process's life; every serial launch leaves the
/// counters of its row blocks at 0 (the last CTA resets its own).
constexpr std::int64_t kSerialCounters = 65536;  // row blocks of 128 rows: n up to 8,388,608

unsigned* device_serial_counters(bool allocate) {
  static std::mutex mu;
  static std::map<int, unsigned*> per_device;
  int dev = 0;
  RACKSIM_CUDA_CHECK(cudaGetDevice(&dev));
  const std::lock_guard<std::mutex> lock(mu);
  if (const auto it = per_device.find(dev); it != per_device.end()) return it->second;
  if (!allocate) return nullptr;
  void* p = nullptr;
  RACKSIM_CUDA_CHECK(cudaMalloc(&p, kSerialCounters * sizeof(unsigned)));
  RACKSIM_CUDA_CHECK(cudaMemset(p, 0, kSerialCounters * sizeof(unsigned)));
  RACKSIM_CUDA_CHECK(cudaDeviceSynchronize());  // zero before any stream's first serial launch
  return per_device[dev] = static_cast<unsigned*>(p);
}

/// The current device's counters for a serial launch of `row_blocks` on `s`; allocated here unless
/// `s` is being captured (a graph cannot hold the allocation: fp4_mma_serial_prepare first).
unsigned* serial_counters(std::int64_t row_blocks, cudaStream_t s) {
  if (row_blocks > kSerialCounters)
    throw InputError(text("fp4_gemm_mma_launch: RACKSIM_FP4_MMA_REDUCE=serial counts ", kSerialCounters, " row blocks at most (got ", row_blocks, ")"));
  // This thread's last answer, per device, so a launch takes no lock (one cudaGetDevice).
  thread_local int cached_device = -1;
  thread_local unsigned* cached = nullptr;
  int dev = 0;
  RACKSIM_CUDA_CHECK(cudaGetDevice(&dev));
  if (dev == cached_device) return cached;
  if (unsigned* c = device_serial_counters(false)) {
    cached_device = dev;
    return cached = c;
  }
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  RACKSIM_CUDA_CHECK(cudaStreamIsCapturing(s, &capturing));
  if (capturing != cudaStreamCaptureStatusNone)
    throw InputError("fp4_gemm_mma_launch: RACKSIM_FP4_MMA_REDUCE=serial during stream capture needs fp4_mma_serial_prepare() before it");
  cached_device = dev;
  return cached = device_serial_counters(true);
}

/// fp4_gemm_mma_launch, and with `act` fp4_gemm_mma_swiglu_launch: true when the reduce wrote act.
bool gemm_launch(const std::uint16_t* x, std::int64_t m, std::int64_t n, std::int64_t k, const std::uint8_t* packed, const std::uint8_t* scales,
                 float tensor_scale, std::uint16_t* y, std::uint16_t* act, float* workspace, int sms, void* stream, const Knobs& kn) {
  const Fp4MmaPlan full = fp4_mma_plan(m, n, k, sms);  // InputError on an unsupported shape; sizes the workspace
  if (full.workspace_bytes > 0 && !workspace)
    throw InputError("fp4_gemm_mma_launch: this shape needs a workspace of fp4_mma_plan's workspace_bytes (its K splits' partials)");
  if (act && n % 2 != 0) throw InputError(text("fp4_gemm_mma_swiglu_launch: n = ", n, " is not 2 x ffn"));
  if (m > kFp4MmaLaunchM) {  // M = 65..128: launches of 64 rows in stream order (the plan's workspace covers each); y only
    for (std::int64_t r = 0; r < m; r += kFp4MmaLaunchM)
      gemm_launch(x + r * k, std::min(kFp4MmaLaunchM, m - r), n, k, packed, scales, tensor_scale, y + r * n, nullptr, workspace, sms, stream, kn);
    return false;
  }
  const auto s = static_cast<cudaStream_t>(stream);
  const auto* xb = reinterpret_cast<const __nv_bfloat16*>(x);
  auto* yb = reinterpret_cast<__nv_bfloat16*>(y);
  const float out_scale = tensor_scale * fp4::kFp16BitTrickScale;
  const int mi = static_cast<int>(m), ni = static_cast<int>(n), ki = static_cast<int>(k);
  if (kn.wgmma && m > 8) require_hopper_for_wgmma();
  // The whole-wave split at the occupancy of the kernel the knobs launch.
  const Fp4MmaLaunch l = fp4_mma_launch_plan(m, n, k, sms, kn, occupancy().of(kn));
  const bool wg = kn.wgmma;
  if (l.two_passes) {  // rows 32 i .. : each pass reads the weights again (the plan's workspace covers both); y only
    for (std::int64_t r = 0; r < m; r += kFp4MmaPassM)
      gemm_launch(x + r * k, std::min(kFp4MmaPassM, m - r), n, k, packed, scales, tensor_scale, y + r * n, nullptr, workspace, sms, stream, kn);
    return false;
  }
  const Fp4MmaPlan& p = l.plan;
  float* partials = p.splits > 1 ? workspace : nullptr;
  const bool deep = l.depth == 2;
  // The serial sum (RACKSIM_FP4_MMA_REDUCE=serial): the device's counters, one per row block, or
  // with act one per gate/up pair of row blocks where ffn is a whole number of them.
  SerialArgs serial;
  if (l.serial) {
    serial.counters = serial_counters(p.row_blocks, s);
    if (act && (n / 2) % kRowsPerCta == 0) {
      serial.act = act;
      serial.pairs = static_cast<int>(n / 2 / kRowsPerCta);
    }
  }
  switch (p.n_tiles) {
    case 1:
      if (l.x_split && l.ring) launch_x_split<true>(p, xb, mi, ni, ki, packed, scales, out_scale, yb, partials, serial, s);
      else if (l.x_split) launch_x_split<false>(p, xb, mi, ni, ki, packed, scales, out_scale, yb, partials, serial, s);
      else if (l.ring) launch_nt<1, 1, false, true>(p, xb, mi, ni, ki, packed, scales, out_scale, yb, partials, serial, s);
      else if (deep) launch_nt<1, 2>(p, xb, mi, ni, ki, packed, scales, out_scale, yb, partials, serial, s, l.ctas);
      else launch_nt<1>(p, xb, mi, ni, ki, packed, scales, out_scale, yb, partials, serial, s, l.ctas);
      break;
    case 2:
      if (l.ring) {
        launch_nt<2, 1, false, true>(p, xb, mi, ni, ki, packed, scales, out_scale, yb, partials, serial, s);
      } else if (wg) {
        if (deep) launch_nt<2, 2, true>(p, xb, mi, ni, ki, packed, scales, out_scale, yb, partials, serial, s);
        else launch_nt<2, 1, true>(p, xb, mi, ni, ki, packed, scales, out_scale, yb, partials, serial, s);
      } else if (deep) {
        launch_nt<2, 2>(p, xb, mi, ni, ki, packed, scales, out_scale, yb, partials, serial, s, l.ctas);
      } else {
        launch_nt<2>(p, xb, mi, ni, ki, packed, scales, out_scale, yb, partials, serial, s, l.ctas);
      }
      break;
    case 4:
      if (wg) launch_nt<4, 1, true>(p, xb, mi, ni, ki, packed, scales, out_scale, yb, partials, serial, s);
      else if (deep) launch_nt<4, 2>(p, xb, mi, ni, ki, packed, scales, out_scale, yb, partials, serial, s, l.ctas);
      else launch_nt<4>(p, xb, mi, ni, ki, packed, scales, out_scale, yb, partials, serial, s, l.ctas);
      break;
    default:
      if (wg) launch_nt<8, 1, true>(p, xb, mi, ni, ki, packed, scales, out_scale, yb, partials, serial, s);
      else if (deep) launch_nt<8, 2>(p, xb, mi, ni, ki, packed, scales, out_scale, yb, partials, serial, s, l.ctas);
      else launch_nt<8>(p, xb, mi, ni, ki, packed, scales, out_scale, yb, partials, serial, s, l.ctas);
      break;
  }
  RACKSIM_CUDA_CHECK(cudaGetLastError());
  if (serial.counters) return serial.act != nullptr;  // the last CTAs wrote act, or y (the caller's SwiGLU kernel follows)
  if (partials && act) {  // the SwiGLU from the partials: y is never written
    const long long ffn = n / 2, mn = m * n, count = m * ffn;
    const unsigned blocks = static_cast<unsigned>(std::min<long long>((count + 255) / 256, 4LL * sms));
    launch_kernel(fp4_mma_reduce_swiglu, blocks, 256, 0, s, partials, mn, static_cast<int>(p.splits), out_scale, ffn, count, act);
    RACKSIM_CUDA_CHECK(cudaGetLastError());
    return true;
  }
  if (partials) {
    const long long mn = m * n;
    const unsigned blocks = static_cast<unsigned>(std::min<long long>((mn + 255) / 256, 4LL * sms));
    launch_kernel(fp4_mma_reduce, blocks, 256, 0, s, partials, mn, static_cast<int>(p.splits), out_scale, yb);
    RACKSIM_CUDA_CHECK(cudaGetLastError());
  }
  return false;
}

}  // namespace

const Fp4MmaKnobs& fp4_mma_env_knobs() { return knobs(); }

int fp4_mma_resident_per_sm(int tiles, int depth, const Fp4MmaKnobs& kn) {
  if ((tiles != 1 && tiles != 2 && tiles != 4 && tiles != 8) || (depth != 1 && depth != 2))
    throw InputError(text("fp4_mma_resident_per_sm: tiles ", tiles, " (1, 2, 4 or 8), depth ", depth, " (1 or 2)"));
  return occupancy().of(kn)(tiles, depth);
}

void fp4_mma_serial_prepare() { (void)device_serial_counters(true); }

void fp4_gemm_mma_launch(const std::uint16_t* x, std::int64_t m, std::int64_t n, std::int64_t k, const std::uint8_t* packed,
                         const std::uint8_t* scales, float tensor_scale, std::uint16_t* y, float* workspace, int sms, void* stream,
                         const Fp4MmaKnobs* kn) {
  (void)gemm_launch(x, m, n, k, packed, scales, tensor_scale, y, nullptr, workspace, sms, stream, kn ? *kn : knobs());
}

bool fp4_gemm_mma_swiglu_launch(const std::uint16_t* x, std::int64_t m, std::int64_t n, std::int64_t k, const std::uint8_t* packed,
                                const std::uint8_t* scales, float tensor_scale, std::uint16_t* y, std::uint16_t* act, float* workspace, int sms,
                                void* stream, const Fp4MmaKnobs* kn) {
  if (!act || !y) throw InputError("fp4_gemm_mma_swiglu_launch: needs y and act");
  return gemm_launch(x, m, n, k, packed, scales, tensor_scale, y, act, workspace, sms, stream, kn ? *kn : knobs());
}

bool fp4_mma_wgmma_available() {
#ifdef RACKSIM_CUDA_ARCHS
  if (std::string_view(RACKSIM_CUDA_ARCHS).find("sm_90a") == std::string_view::npos) return false;
#endif
  int dev = 0, major = 0;
  RACKSIM_CUDA_CHECK(cudaGetDevice(&dev));
  RACKSIM_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  return major == 9;
}

Fp4MmaTuneResult fp4_mma_tune(const std::uint16_t* x, std::int64_t m, std::int64_t n, std::int64_t k, const std::uint8_t* packed,
                              const std::uint8_t* scales, float tensor_scale, std::uint16_t* y, float* workspace, int sms, void* stream, int reps,
                              DeviceBytes* flush, std::uint16_t* act) {
  if (reps < 1) throw InputError(text("fp4_mma_tune: reps = ", reps, " (at least 1)"));
  if (act && n % 2 != 0) throw InputError(text("fp4_mma_tune: with act, n = ", n, " is not 2 x ffn"));
  const Occupancy& occ = occupancy();
  Fp4MmaTuneResult r;
  for (const Knobs& c : fp4_mma_tune_candidates(knobs(), m, fp4_mma_wgmma_available())) {
    bool seen = false;
    for (const Knobs& d : r.candidates) seen = seen || fp4_mma_same_launch(c, d, m, n, k, sms, occ.of(c), occ.of(d));
    if (!seen) r.candidates.push_back(c);
  }
  const auto s = static_cast<cudaStream_t>(stream);
  if (flush && flush->size() > 0) RACKSIM_CUDA_CHECK(cudaMemsetAsync(flush->as(), 0, flush->size(), s));  // defined bytes for evict_l2
  const EventPair ev;
  const std::size_t C = r.candidates.size();
  std::vector<std::vector<double>> times(C);
  // One untimed launch of each first (first-launch costs), then the candidates in turn, round by
  // round, so that a drift in clocks or temperature touches all of them alike.
  for (int rep = -1; rep < reps; ++rep)
    for (std::size_t c = 0; c < C; ++c) {
      if (flush) evict_l2(*flush, s);
      RACKSIM_CUDA_CHECK(cudaEventRecord(ev.start, s));
      // With act, as the step executor runs a gate_up under RACKSIM_FUSE_SWIGLU: the SwiGLU in the
      // reduce where the variant splits K, else its own kernel after the GEMM, timed with it.
      if (!gemm_launch(x, m, n, k, packed, scales, tensor_scale, y, act, workspace, sms, stream, r.candidates[c]) && act)
        swiglu_launch(y, m, n / 2, act, stream);
      RACKSIM_CUDA_CHECK(cudaEventRecord(ev.stop, s));
      RACKSIM_CUDA_CHECK(cudaEventSynchronize(ev.stop));
      if (rep >= 0) times[c].push_back(ev.elapsed_s());
    }
  for (const auto& t : times) r.median_s.push_back(timing_stats(t).median_s);
  r.pick = fp4_mma_tune_pick(r.median_s);
  return r;
}

void fp4_gemm_mma(const std::uint16_t* x, std::int64_t m, std::int64_t n, std::int64_t k, const std::uint8_t* packed,
                  const std::uint8_t* scales, float tensor_scale, std::uint16_t* y, std::uint16_t* act, bool* fused, const Fp4MmaKnobs* kn) {
  int dev = 0, sms = 0;
  RACKSIM_CUDA_CHECK(cudaGetDevice(&dev));
  RACKSIM_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  const Fp4MmaPlan p = fp4_mma_plan(m, n, k, sms);
  const auto mu = static_cast<std::size_t>(m), nu = static_cast<std::size_t>(n), ku = static_cast<std::size_t>(k);
  const Fp4MmaTiling t = fp4_mma_tiling(n, k);
  DeviceBytes dx(mu * ku * 2), dy(mu * nu * 2), dw(nu * ku / 2), ds(nu * ku / 16), dws(static_cast<std::size_t>(p.workspace_bytes));
  DeviceBytes tw(static_cast<std::size_t>(t.code_bytes)), ts(static_cast<std::size_t>(t.scale_bytes));
  RACKSIM_CUDA_CHECK(cudaMemcpy(dx.as(), x, mu * ku * 2, cudaMemcpyHostToDevice));
  RACKSIM_CUDA_CHECK(cudaMemcpy(dw.as(), packed, nu * ku / 2, cudaMemcpyHostToDevice));
  RACKSIM_CUDA_CHECK(cudaMemcpy(ds.as(), scales, nu * ku / 16, cudaMemcpyHostToDevice));
  RACKSIM_CUDA_CHECK(cudaMemset(dy.as(), 0xFF, mu * nu * 2));  // poison: BF16 NaN where nothing is written
  RACKSIM_CUDA_CHECK(cudaMemset(tw.as(), 0xFF, tw.size()));    // and the tiles: the conversion must write every byte
  RACKSIM_CUDA_CHECK(cudaMemset(ts.as(), 0xFF, ts.size()));
  fp4_mma_tile_launch(dw.as<std::uint8_t>(), ds.as<std::uint8_t>(), n, k, tw.as<std::uint8_t>(), ts.as<std::uint8_t>(), nullptr);
  if (act) {  // as the step executor runs it: the SwiGLU kernel after the GEMM where the reduce did not write act
    DeviceBytes da(mu * nu);  // m x n / 2 BF16
    RACKSIM_CUDA_CHECK(cudaMemset(da.as(), 0xFF, da.size()));
    const bool f = fp4_gemm_mma_swiglu_launch(dx.as<std::uint16_t>(), m, n, k, tw.as<std::uint8_t>(), ts.as<std::uint8_t>(), tensor_scale,
                                              dy.as<std::uint16_t>(), da.as<std::uint16_t>(), dws.as<float>(), sms, nullptr, kn);
    if (!f) swiglu_launch(dy.as<std::uint16_t>(), m, n / 2, da.as<std::uint16_t>(), nullptr);
    if (fused) *fused = f;
    RACKSIM_CUDA_CHECK(cudaDeviceSynchronize());
    RACKSIM_CUDA_CHECK(cudaMemcpy(act, da.as(), da.size(), cudaMemcpyDeviceToHost));
    return;
  }
  fp4_gemm_mma_launch(dx.as<std::uint16_t>(), m, n, k, tw.as<std::uint8_t>(), ts.as<std::uint8_t>(), tensor_scale, dy.as<std::uint16_t>(),
                      dws.as<float>(), sms, nullptr, kn);
  RACKSIM_CUDA_CHECK(cudaDeviceSynchronize());
  RACKSIM_CUDA_CHECK(cudaMemcpy(y, dy.as(), mu * nu * 2, cudaMemcpyDeviceToHost));
}

void fp4_gemm_mma_grouped_launch(const std::uint16_t* x, const std::int32_t* offsets, const std::int32_t* active, int n_experts,
                                 std::int64_t max_m, std::int64_t total_rows, std::int64_t n, std::int64_t k, const Fp4MmaExpert* experts,
                                 std::uint16_t* y, float* workspace, int sms, void* stream) {
  if (n_experts < 1 || n_experts > 65535 || !offsets || !active || !experts || total_rows < 0)
    throw InputError(text("fp4_gemm_mma_grouped_launch: ", n_experts, " experts (1..65535) with their offsets, active experts and weights, ",
                          total_rows, " rows"));
  if (!fp4_mma_grouped_supported(max_m, n, k))
    throw InputError(text("fp4_gemm_mma_grouped_launch: experts of up to ", max_m, " rows of ", n, " x ", k, ": one launch takes 1..",
                          kFp4MmaLaunchM, " rows per expert and k a positive multiple of 32"));
  // The plan of one max_m-row GEMM: its tiles, row blocks and K split (each expert's CTAs split K
  // as one GEMM of max_m rows would; the partials of all total_rows rows share the workspace).
  // InputError on an unsupported shape; the K split for the device's SMs shared by the slots.
  const Fp4MmaPlan p = fp4_mma_plan(max_m, n, k, fp4_mma_grouped_sms(n_experts, total_rows, sms));
  // One slice of the grid per active slot (moe_active_slots: min(experts, rows)), not per expert.
  const int slices = static_cast<int>(moe_active_slots(n_experts, total_rows));
  if (slices == 0) return;  // no rows: nothing to compute or reduce (and no workspace needed)
  if (p.splits > 1 && !workspace) throw InputError("fp4_gemm_mma_grouped_launch: this shape splits K and needs a workspace");
  float* partials = p.splits > 1 ? workspace : nullptr;
  const GroupArgs g{offsets, active, experts, total_rows * n};
  const auto s = static_cast<cudaStream_t>(stream);
  const auto* xb = reinterpret_cast<const __nv_bfloat16*>(x);
  auto* yb = reinterpret_cast<__nv_bfloat16*>(y);
  const int ni = static_cast<int>(n), ki = static_cast<int>(k);
  switch (p.n_tiles) {
    case 1: launch_grouped<1>(p, slices, xb, ni, ki, g, yb, partials, s); break;
    case 2: launch_grouped<2>(p, slices, xb, ni, ki, g, yb, partials, s); break;
    case 4: launch_grouped<4>(p, slices, xb, ni, ki, g, yb, partials, s); break;
    default: launch_grouped<8>(p, slices, xb, ni, ki, g, yb, partials, s); break;
  }
  RACKSIM_CUDA_CHECK(cudaGetLastError());
  if (partials && total_rows > 0) {  // the experts' scales are in the partials: sum them at scale 1
    const long long mn = total_rows * n;
    const unsigned blocks = static_cast<unsigned>(std::min<long long>((mn + 255) / 256, 4LL * sms));
    launch_kernel(fp4_mma_reduce, blocks, 256, 0, s, partials, mn, static_cast<int>(p.splits), 1.0f, yb);
    RACKSIM_CUDA_CHECK(cudaGetLastError());
  }
}

void fp4_gemm_mma_grouped(const std::uint16_t* x, const std::vector<std::int32_t>& offsets, std::int64_t max_m, std::int64_t n, std::int64_t k,
                          const std::vector<const std::uint8_t*>& packed, const std::vector<const std::uint8_t*>& scales,
                          const std::vector<float>& tensor_scales, std::uint16_t* y) {
  const std::size_t E = packed.size();
  if (E == 0 || offsets.size() != E + 1 || scales.size() != E || tensor_scales.size() != E)
    throw InputError("fp4_gemm_mma_grouped: one packed weight, scale array and tensor scale per expert, and experts + 1 offsets");
  int dev = 0, sms = 0;
  RACKSIM_CUDA_CHECK(cudaGetDevice(&dev));
  RACKSIM_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  const auto rows = static_cast<std::size_t>(offsets.back()), nu = static_cast<std::size_t>(n), ku = static_cast<std::size_t>(k);
  const Fp4MmaTiling t = fp4_mma_tiling(n, k);
  DeviceBytes dx(std::max<std::size_t>(rows * ku * 2, 16)), dy(std::max<std::size_t>(rows * nu * 2, 16)), doff(offsets.size() * 4),
      dw(nu * ku / 2), ds(nu * ku / 16), dtable(E * sizeof(Fp4MmaExpert)),
      dws(static_cast<std::size_t>(fp4_mma_grouped_workspace_bytes(max_m, static_cast<std::int64_t>(rows), static_cast<std::int64_t>(E), n, k, sms)));
  std::vector<DeviceBytes> tiles;
  std::vector<Fp4MmaExpert> table(E);
  for (std::size_t e = 0; e < E; ++e) {
    RACKSIM_CUDA_CHECK(cudaMemcpy(dw.as(), packed[e], nu * ku / 2, cudaMemcpyHostToDevice));
    RACKSIM_CUDA_CHECK(cudaMemcpy(ds.as(), scales[e], nu * ku / 16, cudaMemcpyHostToDevice));
    tiles.emplace_back(static_cast<std::size_t>(t.code_bytes));
    tiles.emplace_back(static_cast<std::size_t>(t.scale_bytes));
    DeviceBytes& tw = tiles[tiles.size() - 2];
    DeviceBytes& ts = tiles.back();
    RACKSIM_CUDA_CHECK(cudaMemset(tw.as(), 0xFF, tw.size()));  // poison: the tiling must write every byte
    RACKSIM_CUDA_CHECK(cudaMemset(ts.as(), 0xFF, ts.size()));
    fp4_mma_tile_launch(dw.as<std::uint8_t>(), ds.as<std::uint8_t>(), n, k, tw.as<std::uint8_t>(), ts.as<std::uint8_t>(), nullptr);
    RACKSIM_CUDA_CHECK(cudaDeviceSynchronize());  // dw and ds are reused by the next expert
    table[e] = {tw.as<std::uint8_t>(), ts.as<std::uint8_t>(), tensor_scales[e]};
  }
  if (rows > 0) RACKSIM_CUDA_CHECK(cudaMemcpy(dx.as(), x, rows * ku * 2, cudaMemcpyHostToDevice));
  RACKSIM_CUDA_CHECK(cudaMemcpy(doff.as(), offsets.data(), offsets.size() * 4, cudaMemcpyHostToDevice));
  // The experts with rows in id order, then -1 (MoeOrder::active, as the permute kernel writes it).
  std::vector<std::int32_t> active;
  for (std::size_t e = 0; e < E; ++e)
    if (offsets[e + 1] > offsets[e]) active.push_back(static_cast<std::int32_t>(e));
  active.resize(std::min(E, rows), -1);
  DeviceBytes dactive(std::max<std::size_t>(active.size() * 4, 4));
  if (!active.empty()) RACKSIM_CUDA_CHECK(cudaMemcpy(dactive.as(), active.data(), active.size() * 4, cudaMemcpyHostToDevice));
  RACKSIM_CUDA_CHECK(cudaMemcpy(dtable.as(), table.data(), E * sizeof(Fp4MmaExpert), cudaMemcpyHostToDevice));
  RACKSIM_CUDA_CHECK(cudaMemset(dy.as(), 0xFF, dy.size()));  // poison: BF16 NaN where nothing is written
  fp4_gemm_mma_grouped_launch(dx.as<std::uint16_t>(), doff.as<std::int32_t>(), dactive.as<std::int32_t>(), static_cast<int>(E), max_m, static_cast<std::int64_t>(rows), n,
                              k, dtable.as<Fp4MmaExpert>(), dy.as<std::uint16_t>(), dws.size() ? dws.as<float>() : nullptr, sms, nullptr);
  RACKSIM_CUDA_CHECK(cudaDeviceSynchronize());
  if (rows > 0) RACKSIM_CUDA_CHECK(cudaMemcpy(y, dy.as(), rows * nu * 2, cudaMemcpyDeviceToHost));
}

void fp4_mma_tile_dequant(const std::uint8_t* packed, const std::uint8_t* scales, std::int64_t n, std::int64_t k, float tensor_scale,
                          std::vector<std::uint8_t>& codes, std::vector<std::uint8_t>& tiled_scales, std::uint16_t* out,
                          std::uint8_t* out_e4m3) {
  const Fp4MmaTiling t = fp4_mma_tiling(n, k);
  const auto nu = static_cast<std::size_t>(n), ku = static_cast<std::size_t>(k);
  DeviceBytes dw(nu * ku / 2), ds(nu * ku / 16), tw(static_cast<std::size_t>(t.code_bytes)), ts(static_cast<std::size_t>(t.scale_bytes)),
      dy(nu * ku * 2);
  RACKSIM_CUDA_CHECK(cudaMemcpy(dw.as(), packed, nu * ku / 2, cudaMemcpyHostToDevice));
  RACKSIM_CUDA_CHECK(cudaMemcpy(ds.as(), scales, nu * ku / 16, cudaMemcpyHostToDevice));
  RACKSIM_CUDA_CHECK(cudaMemset(tw.as(), 0xFF, tw.size()));  // poison: every byte must be written
  RACKSIM_CUDA_CHECK(cudaMemset(ts.as(), 0xFF, ts.size()));
  RACKSIM_CUDA_CHECK(cudaMemset(dy.as(), 0xFF, dy.size()));
  fp4_mma_tile_launch(dw.as<std::uint8_t>(), ds.as<std::uint8_t>(), n, k, tw.as<std::uint8_t>(), ts.as<std::uint8_t>(), nullptr);
  fp4_mma_dequant_bf16_launch(tw.as<std::uint8_t>(), ts.as<std::uint8_t>(), n, k, tensor_scale, dy.as<std::uint16_t>(), nullptr);
  RACKSIM_CUDA_CHECK(cudaDeviceSynchronize());
  codes.resize(tw.size());
  tiled_scales.resize(ts.size());
  RACKSIM_CUDA_CHECK(cudaMemcpy(codes.data(), tw.as(), tw.size(), cudaMemcpyDeviceToHost));
  RACKSIM_CUDA_CHECK(cudaMemcpy(tiled_scales.data(), ts.as(), ts.size(), cudaMemcpyDeviceToHost));
  RACKSIM_CUDA_CHECK(cudaMemcpy(out, dy.as(), dy.size(), cudaMemcpyDeviceToHost));
  if (!out_e4m3) return;
  DeviceBytes d8(nu * ku);
  RACKSIM_CUDA_CHECK(cudaMemset(d8.as(), 0x7F, d8.size()));  // poison: E4M3 NaN
  fp4_mma_dequant_e4m3_launch(tw.as<std::uint8_t>(), ts.as<std::uint8_t>(), n, k, d8.as<std::uint8_t>(), nullptr);
  RACKSIM_CUDA_CHECK(cudaDeviceSynchronize());
  RACKSIM_CUDA_CHECK(cudaMemcpy(out_e4m3, d8.as(), d8.size(), cudaMemcpyDeviceToHost));
}

}  // namespace racksim::exec::cuda
