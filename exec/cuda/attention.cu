// Paged KV append, decode attention (split-K over the context, FlashDecoding / vLLM
// paged_attention_v2) and prefill attention (FlashAttention-2-style), BF16 queries and outputs,
// BF16 or FP8 E4M3 (per-tensor scale) K/V, on the tensor cores (mma.sync.m16n8k16, FP32
// accumulate). Layout and planning: paged_kv.hpp; arguments were checked by cuda_ops
// (backend_registry.cpp).
//
// One warp routine (warp_attend) serves both attentions. A warp owns a tile of 16 query rows
// (the MMA's M) that share one KV head g: row r is token r / group of its sequence (or chunk) and
// query head g x group + r % group, so every K/V byte the warp loads serves all the group's heads
// (GQA). It walks its keys 16 at a time (a step), reading K and V straight from the paged cache
// into registers (no shared memory, no block barriers):
//   1. S = Q K^T: two n8 tiles (keys 0-7, 8-15) x head_dim / 16 k-steps. Q sits in A fragments
//      for the whole walk; a lane loads 8 (head_dim 16: 4) consecutive dims of one key's row,
//      which are B fragments of the n8 tile if the k order inside the dot product is permuted the
//      same way in Q's fragments (dim_of below): a sum does not care about its order.
//   2. s x softmax_scale x log2(e) x k_scale, -inf where masked (past the walk's end, or causally
//      past the row's token); online softmax per row in FP32: m' = max(m, max_j s),
//      p = 2^(s - m'), l' = l 2^(m - m') + sum p (a row with nothing unmasked adds nothing).
//   3. O = O 2^(m - m') + P V: P's C fragments are the A fragment of a k16 step
//      (FlashAttention-2), split into hi + lo halves (p = hi + lo to 2^-16 relative: a single
//      16-bit P would cost 2^-9 of vmax, above the FP32 tolerance the tests hold the kernel to;
//      FP8 K/V under RACKSIM_ATTENTION_FP8_P=single take hi alone, FP16: 2^-11 of vmax, half
//      the P V MMAs);
//      V is read like K (row-major, 8 dims of one key per lane) and turned into B fragments by
//      movmatrix.trans (an 8x8 transpose across the warp), so output tile (q, r) of a lane holds
//      dims dim_of(...): 8 consecutive dims per chunk, stored as one 16-byte word.
// Operands: BF16 K/V run in BF16 (Q and K exact); FP8 K/V run in FP16: E4M3 codes widen to FP16
// exactly in one convert per pair (cvt.rn.f16x2.e4m3x2), Q is rounded to FP16 once (exact for
// BF16 values of magnitude 2^-14..65504; smaller ones keep an absolute error <= 2^-25, larger
// ones saturate to 65504) and the scales multiply the scores and the output.
// Decode: a CTA of 4 warps per (partition, KV head, sequence), the warps take interleaved steps
// of the partition and merge their (m, l, O) in shared memory; the end writes O x v_scale / l
// (one partition), or O x v_scale, m and l to the decode workspace for the merge kernel:
// out = sum_p 2^(m_p - M) O_p / sum_p 2^(m_p - M) l_p. Prefill: a CTA of 4 warps = 64 rows of
// one chunk and KV head; each warp walks keys 0 .. its last row's limit.

#include "attention.hpp"

#include <cuda_runtime.h>

#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

#include "bf16_vec.cuh"
#include "cuda_check.hpp"
#include "pdl.cuh"
#include "racksim/exec/activation_formats.hpp"

namespace racksim::exec::cuda {

namespace {

using I = long long;

constexpr float kLog2e = 1.4426950408889634f;  // log2(e): exp(x) = exp2(x log2 e)
constexpr int kWarps = 4, kThreads = 32 * kWarps;
// Blackwell's code generator (sm_100a, sm_103a) needs more registers for the same kernels than
// Hopper's: with the next step's FP8 K and V loaded ahead (32 registers at head_dim 128), the
// decode and prefill kernels spilled 88-134 bytes at the 255-register ceiling and the transposed
// decode 324 bytes at its 168 (ptxas -warn-spills, CUDA 13.0, 2026-12-02). There, FP8 at head_dim
// 128 loads each step's K and V at the step's start instead (211, 212 and 144 registers, no
// spill); sm_90a's code is unchanged (docs/executor.md, "Register spills").
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 1000
constexpr bool kBlackwellPtxas = true;
#else
constexpr bool kBlackwellPtxas = false;
#endif
constexpr int kTileRows = 16;                     // query rows per warp (the MMA's M)
constexpr int kStepKeys = 16;                     // keys per warp step (the P V MMA's K)
constexpr int kPrefillRows = kWarps * kTileRows;  // query rows per prefill CTA
static_assert(kAttentionKeyTile == kWarps * kStepKeys, "a decode partition (a multiple of 64 keys) gives each warp whole steps");

/// Fragment geometry for head_dim HD: a lane loads W consecutive dims of a key row (chunk q,
/// lane column c = lane % 4: dims q x 4W + c x W .. + W - 1) into W / 2 32-bit registers of two
/// 16-bit values; register i (chunk i / kRegs, pair i % kRegs) holds dims dim_of(i, c) + 0, 1.
/// Q K^T k-step t takes registers 2t (B's k 2c, 2c + 1) and 2t + 1 (k 8 + 2c, + 1); P V output
/// tile i is register i's dims (movmatrix: logical column j of the tile is dim_of(i, j / 2) + j % 2).
template <int HD>
struct Frag {
  static constexpr int W = HD >= 32 ? 8 : 4;
  static constexpr int kRegs = W / 2;        // registers per chunk
  static constexpr int kPairs = HD / 2 / 4;  // registers per key row per lane (= HD / 8)
  static constexpr int kSteps = HD / 16;     // Q K^T k-steps
  static_assert(HD % (4 * W) == 0 && kPairs == 2 * kSteps && kRegs % 2 == 0, "head_dim 16, 32, 64 or 128");
  __device__ static constexpr int dim_of(int i, int c) { return (i / kRegs) * 4 * W + c * W + 2 * (i % kRegs); }
};

/// What all attention CTAs share.
struct Params {
  const std::uint16_t* q;
  I q_stride;
  const void* k_cache;
  const void* v_cache;
  int kv_heads, block_tokens, group;
  const std::int32_t* block_tables;
  I block_table_stride;
  float score_scale;  // softmax_scale x log2(e) x k_scale
  float v_scale;
  std::uint16_t* out;
  I out_stride;
  // decode workspace: partials of (sequence, KV head, partition, row) at index
  // ((seq x kv_heads + g) x partitions + partition) x group + row
  float* part_o;
  float* part_m;
  float* part_l;
  int partitions;
  bool split_p;  // P V with P as hi + lo halves (always for BF16 K/V; FP8: unless RACKSIM_ATTENTION_FP8_P=single)
};

template <class T>
__device__ __forceinline__ std::uint32_t bits32(const T& x) {
  static_assert(sizeof(T) == 4);
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}

/// Two floats as the MMA's 16-bit pair (lo in the low half), rounded to nearest; FP16 saturating.
template <bool kF16>
__device__ __forceinline__ std::uint32_t pack2(float lo, float hi) {
  if constexpr (kF16) {
    std::uint32_t u;
    asm("cvt.rn.satfinite.f16x2.f32 %0, %1, %2;\n" : "=r"(u) : "f"(hi), "f"(lo));
    return u;
  } else {
    return bits32(__floats2bfloat162_rn(lo, hi));
  }
}

template <bool kF16>
__device__ __forceinline__ float2 unpack2(std::uint32_t u) {
  if constexpr (kF16) {
    __half2 h;
    std::memcpy(&h, &u, 4);
    return __half22float2(h);
  } else {
    return make_float2(__uint_as_float(u << 16), __uint_as_float(u & 0xFFFF0000u));
  }
}

/// D += A B, m16n8k16, FP32 accumulate; BF16 or FP16 operands.
template <bool kF16>
__device__ __forceinline__ void mma(float (&d)[4], const std::uint32_t (&a)[4], std::uint32_t b0, std::uint32_t b1) {
  if constexpr (kF16)
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/// The 8x8 16-bit matrix held one row per 4 lanes (lane: row lane / 4, columns 2 (lane % 4), + 1)
/// transposed in place (PTX movmatrix, sm_75+).
__device__ __forceinline__ std::uint32_t transpose8x8(std::uint32_t x) {
  std::uint32_t y;
  asm volatile("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;\n" : "=r"(y) : "r"(x));
  return y;
}

/// Two E4M3 codes (bits 0-7, 8-15) as an FP16 pair, exactly (every E4M3 value is an FP16 value).
__device__ __forceinline__ std::uint32_t e4m3x2_to_f16x2(unsigned codes) {
  const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(codes & 0xFFFFu), __NV_E4M3);
  return static_cast<std::uint32_t>(h.x) | (static_cast<std::uint32_t>(h.y) << 16);
}

/// One step's K and V as loaded, before widening (FP8 codes stay 8-bit here): lane column c's
/// chunks of key rows n (h = 0) and n + 8 (h = 1).
template <int HD, bool kFp8>
struct KvRaw {
  static constexpr int W = Frag<HD>::W, kChunks = HD / (4 * W);
  using Unit = std::conditional_t<kFp8, std::conditional_t<W == 8, uint2, unsigned>, std::conditional_t<W == 8, uint4, uint2>>;
  Unit k[2][kChunks], v[2][kChunks];
};

/// Loads half h of a step: key row `row` (element index of its dim 0 in the cache, or -1: zeros).
template <int HD, bool kFp8>
__device__ __forceinline__ void load_raw(KvRaw<HD, kFp8>& r, int h, const Params& a, I row, int c) {
  using R = KvRaw<HD, kFp8>;
  using Unit = typename R::Unit;
  constexpr int esize = kFp8 ? 1 : 2;
#pragma unroll
  for (int q = 0; q < R::kChunks; ++q) {
    if (row < 0) {
      r.k[h][q] = Unit{};
      r.v[h][q] = Unit{};
      continue;
    }
    const I e = (row + q * 4 * R::W + c * R::W) * esize;  // bytes
    r.k[h][q] = __ldg(reinterpret_cast<const Unit*>(static_cast<const std::uint8_t*>(a.k_cache) + e));
    r.v[h][q] = __ldg(reinterpret_cast<const Unit*>(static_cast<const std::uint8_t*>(a.v_cache) + e));
  }
}

/// Loads the step of keys k0 .. k0 + 15 of KV head g through the block table (lane column c's
/// chunks of key rows n and n + 8; keys at or past k_end as zeros).
template <int HD, bool kFp8>
__device__ __forceinline__ void fetch_step(KvRaw<HD, kFp8>& raw, const Params& a, int g, const std::int32_t* __restrict__ table, int k0,
                                           int k_end, int n, int c) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int key = k0 + 8 * h + n;
    I row = -1;
    if (key < k_end) {
      const I block = table[key / a.block_tokens];
      row = ((block * a.kv_heads + g) * a.block_tokens + key % a.block_tokens) * HD;
    }
    load_raw<HD, kFp8>(raw, h, a, row, c);
  }
}

/// Raw chunks -> the MMA's 32-bit registers (Frag order): BF16 as stored, FP8 codes widened to FP16.
template <int HD, bool kFp8>
__device__ __forceinline__ void widen(std::uint32_t (&d)[Frag<HD>::kPairs], const typename KvRaw<HD, kFp8>::Unit (&u)[KvRaw<HD, kFp8>::kChunks]) {
  using R = KvRaw<HD, kFp8>;
  constexpr int kRegs = Frag<HD>::kRegs;
#pragma unroll
  for (int q = 0; q < R::kChunks; ++q) {
    std::uint32_t* o = d + q * kRegs;
    if constexpr (!kFp8 && R::W == 8) {
      o[0] = u[q].x, o[1] = u[q].y, o[2] = u[q].z, o[3] = u[q].w;
    } else if constexpr (!kFp8) {
      o[0] = u[q].x, o[1] = u[q].y;
    } else if constexpr (R::W == 8) {
      o[0] = e4m3x2_to_f16x2(u[q].x), o[1] = e4m3x2_to_f16x2(u[q].x >> 16), o[2] = e4m3x2_to_f16x2(u[q].y), o[3] = e4m3x2_to_f16x2(u[q].y >> 16);
    } else {
      o[0] = e4m3x2_to_f16x2(u[q]), o[1] = e4m3x2_to_f16x2(u[q] >> 16);
    }
  }
}

/// Where a warp tile's query rows are: q row `qrow[i]` x q_stride + head `head[i]` x HD, for the
/// lane's rows lane / 4 (i = 0) and lane / 4 + 8 (i = 1); qrow -1 for a padding row (zeros).
struct Rows {
  I qrow[2];
  int head[2];
  int limit[2];  // keys < limit are visible to the row (causal); INT_MAX in decode
};

/// The lane's A fragments of Q for every k-step (the permuted k order of Frag::dim_of).
template <int HD, bool kF16>
__device__ __forceinline__ void load_q(std::uint32_t (&qa)[Frag<HD>::kSteps][4], const Params& a, const Rows& rows, int c) {
  using F = Frag<HD>;
#pragma unroll
  for (int t = 0; t < F::kSteps; ++t)
#pragma unroll
    for (int j = 0; j < 4; ++j) {  // a0a1: row 0, register 2t; a2a3: row 1, 2t; a4a5: row 0, 2t + 1; a6a7: row 1, 2t + 1
      const int i = j % 2, reg = 2 * t + j / 2;
      std::uint32_t v = 0;
      if (rows.qrow[i] >= 0) {
        const std::uint16_t* q = a.q + rows.qrow[i] * a.q_stride + static_cast<I>(rows.head[i]) * HD + F::dim_of(reg, c);
        if constexpr (kF16) v = pack2<true>(bf16_to_float(q[0]), bf16_to_float(q[1]));
        else v = static_cast<std::uint32_t>(q[0]) | (static_cast<std::uint32_t>(q[1]) << 16);
      }
      qa[t][j] = v;
    }
}

/// A warp's running attention state: O (16 rows x HD, C fragments), and per lane row the max m
/// and the lane's share of the sum l (summed over the lane's quad by finish_l).
template <int HD>
struct WarpState {
  float o[Frag<HD>::kPairs][4];
  float m[2], l[2];
};

/// Walks keys k_first, k_first + stride, ... (16 per step) below k_end of KV head g in the paged
/// cache through `table`, accumulating into st (see the file comment).
template <int HD, bool kFp8>
__device__ __forceinline__ void warp_attend(const Params& a, int g, const std::int32_t* __restrict__ table,
                                            const std::uint32_t (&qa)[Frag<HD>::kSteps][4], const Rows& rows, int k_first, int k_end,
                                            int stride, WarpState<HD>& st) {
  using F = Frag<HD>;
  constexpr bool kF16 = kFp8;
  const int lane = static_cast<int>(threadIdx.x) % 32, c = lane % 4, n = lane / 4;
#pragma unroll
  for (int i = 0; i < F::kPairs; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) st.o[i][e] = 0.0f;
  st.m[0] = st.m[1] = -INFINITY;
  st.l[0] = st.l[1] = 0.0f;

  // The next step's K and V are loaded before this step's math (software pipelining) where the
  // registers allow: FP8 codes (32 registers at head_dim 128) and BF16 up to head_dim 64; BF16 at
  // 128 would need 64 more and spill, and streams at 84-87% of copy bandwidth without it (H200).
  constexpr bool kAhead = HD <= 64 || (kFp8 && !kBlackwellPtxas);  // see kBlackwellPtxas
  KvRaw<HD, kFp8> raw;
  const auto fetch = [&](int k0) { fetch_step<HD, kFp8>(raw, a, g, table, k0, k_end, n, c); };
  if (kAhead && k_first < k_end) fetch(k_first);
  for (int k0 = k_first; k0 < k_end; k0 += stride) {
    if (!kAhead) fetch(k0);
    std::uint32_t kr[2][F::kPairs], vr[2][F::kPairs];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      widen<HD, kFp8>(kr[h], raw.k[h]);
      widen<HD, kFp8>(vr[h], raw.v[h]);
    }
    if (kAhead && k0 + stride < k_end) fetch(k0 + stride);
    // 1. Scores: s[h] rows n (0, 1) and n + 8 (2, 3), keys k0 + 8h + 2c (+1).
    float s[2][4] = {{0, 0, 0, 0}, {0, 0, 0, 0}};
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int t = 0; t < F::kSteps; ++t) mma<kF16>(s[h], qa[t], kr[h][2 * t], kr[h][2 * t + 1]);
    // 2. Scale, mask, online softmax (a row's four lanes hold its 16 keys).
    float alpha[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      float mx = -INFINITY;
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int key = k0 + 8 * h + 2 * c + e;
          float& x = s[h][2 * i + e];
          x = (key < k_end && key < rows.limit[i]) ? x * a.score_scale : -INFINITY;
          mx = fmaxf(mx, x);
        }
      mx = fmaxf(mx, __shfl_xor_sync(0xFFFFFFFFu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xFFFFFFFFu, mx, 2));
      const float m_new = fmaxf(st.m[i], mx), base = m_new == -INFINITY ? 0.0f : m_new;
      alpha[i] = exp2f(st.m[i] - base);  // 0 when m is -inf
      st.m[i] = m_new;
      float sum = 0.0f;
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          float& x = s[h][2 * i + e];
          x = exp2f(x - base);  // 0 where masked
          sum += x;
        }
      st.l[i] = st.l[i] * alpha[i] + sum;
    }
    // 3. O = O alpha + P V, P = hi + lo (A fragments: a0a1 row n keys 2c, a2a3 row n + 8,
    // a4a5 / a6a7 the same for keys 8 + 2c); FP8 K/V under RACKSIM_ATTENTION_FP8_P=single: hi alone.
    const bool split = !kFp8 || a.split_p;
    std::uint32_t ph[4], pl[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int h = j / 2, i = j % 2;
      ph[j] = pack2<kF16>(s[h][2 * i], s[h][2 * i + 1]);
      const float2 back = unpack2<kF16>(ph[j]);
      pl[j] = split ? pack2<kF16>(s[h][2 * i] - back.x, s[h][2 * i + 1] - back.y) : 0u;
    }
#pragma unroll
    for (int i = 0; i < F::kPairs; ++i) {
      st.o[i][0] *= alpha[0];
      st.o[i][1] *= alpha[0];
      st.o[i][2] *= alpha[1];
      st.o[i][3] *= alpha[1];
      const std::uint32_t b0 = transpose8x8(vr[0][i]), b1 = transpose8x8(vr[1][i]);
      mma<kF16>(st.o[i], ph, b0, b1);
      if (split) mma<kF16>(st.o[i], pl, b0, b1);
    }
  }
  // The row sums over the quad.
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    st.l[i] += __shfl_xor_sync(0xFFFFFFFFu, st.l[i], 1);
    st.l[i] += __shfl_xor_sync(0xFFFFFFFFu, st.l[i], 2);
  }
}

/// The end of both decode kernels: thread t of the CTA combines elements t, t + 128, ... of the
/// R x HD output from the 4 warps' (O, m, l) in shared memory (rows < R written, then a barrier)
/// and writes the normalized output (one partition) or the partition's O x v_scale, m and l.
template <int HD, int ROWS>
__device__ __forceinline__ void merge_warps(const Params& a, int b, int g, int p, int R, const float (&o_s)[kWarps][ROWS][HD],
                                            const float (&m_s)[kWarps][ROWS], const float (&l_s)[kWarps][ROWS]) {
  const int t = static_cast<int>(threadIdx.x);
  for (int e = t; e < R * HD; e += kThreads) {
    const int r = e / HD, d = e % HD;
    float m = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) m = fmaxf(m, m_s[w][r]);  // finite: warp 0 saw key `begin`
    float l = 0.0f, o = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float wgt = exp2f(m_s[w][r] - m);  // 0 for a warp that had no keys (m -inf)
      l += wgt * l_s[w][r];
      o += wgt * o_s[w][r][d];
    }
    const int head = g * a.group + r;
    if (a.partitions == 1) {
      a.out[static_cast<I>(b) * a.out_stride + static_cast<I>(head) * HD + d] = float_to_bf16(o * a.v_scale / l);
    } else {
      const I part = ((static_cast<I>(b) * a.kv_heads + g) * a.partitions + p) * a.group + r;
      a.part_o[part * HD + d] = o * a.v_scale;
      if (d == 0) {
        a.part_m[part] = m;
        a.part_l[part] = l;
      }
    }
  }
}

/// Decode with the keys as the MMA's M (group <= 8): S^T = K Q^T (16 keys x 8 heads per k-step,
/// one MMA where the rows-as-M routine needs two with half their rows padding), softmax down the
/// columns (a head's 16 keys sit in the 8 lanes of one lane column: 3 shuffles), then
/// O^T = V^T P^T: V's movmatrix-transposed registers are the A fragments of 16-dim tiles (rows
/// 0-7 register i, rows 8-15 register i + 1), P^T's accumulators transposed the B fragment.
/// Half the MMAs and accumulators of warp_attend, for the decode batches of GQA <= 8 models.
template <int HD>
struct WarpStateT {
  float o[Frag<HD>::kPairs / 2][4];  // tile mt: c0, c1 = (dim of row n, heads 2c, 2c + 1); c2, c3 = row n + 8
  float m[2], l[2];                  // heads 2c, 2c + 1
};

/// Physical dim of row r (0..15) of output tile mt (registers 2 mt and 2 mt + 1).
template <int HD>
__device__ __forceinline__ int tile_dim(int mt, int r) {
  return Frag<HD>::dim_of(2 * mt + r / 8, (r % 8) / 2) + r % 2;
}

template <int HD, bool kFp8>
__device__ __forceinline__ void warp_attend_t(const Params& a, int g, const std::int32_t* __restrict__ table,
                                              const std::uint32_t (&qb)[Frag<HD>::kSteps][2], int k_first, int k_end, int stride,
                                              WarpStateT<HD>& st) {
  using F = Frag<HD>;
  constexpr bool kF16 = kFp8;
  constexpr int kTiles = F::kPairs / 2;
  const int lane = static_cast<int>(threadIdx.x) % 32, c = lane % 4, n = lane / 4;
#pragma unroll
  for (int i = 0; i < kTiles; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) st.o[i][e] = 0.0f;
  st.m[0] = st.m[1] = -INFINITY;
  st.l[0] = st.l[1] = 0.0f;
  KvRaw<HD, kFp8> raw;
  const auto fetch = [&](int k0) { fetch_step<HD, kFp8>(raw, a, g, table, k0, k_end, n, c); };
  constexpr bool kAhead = HD <= 64 || !kFp8 || !kBlackwellPtxas;  // see kBlackwellPtxas
  if (kAhead && k_first < k_end) fetch(k_first);
  for (int k0 = k_first; k0 < k_end; k0 += stride) {
    if (!kAhead) fetch(k0);
    std::uint32_t kr[2][F::kPairs], vr[2][F::kPairs];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      widen<HD, kFp8>(kr[h], raw.k[h]);
      widen<HD, kFp8>(vr[h], raw.v[h]);
    }
    if (kAhead && k0 + stride < k_end) fetch(k0 + stride);
    // S^T: s[0], s[1] = key k0 + n, heads 2c, 2c + 1; s[2], s[3] = key k0 + n + 8.
    float s[4] = {0, 0, 0, 0};
#pragma unroll
    for (int t = 0; t < F::kSteps; ++t) {
      const std::uint32_t af[4] = {kr[0][2 * t], kr[1][2 * t], kr[0][2 * t + 1], kr[1][2 * t + 1]};
      mma<kF16>(s, af, qb[t][0], qb[t][1]);
    }
    const bool valid0 = k0 + n < k_end, valid1 = k0 + n + 8 < k_end;
    float alpha[2];
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      float& x0 = s[e];
      float& x1 = s[2 + e];
      x0 = valid0 ? x0 * a.score_scale : -INFINITY;
      x1 = valid1 ? x1 * a.score_scale : -INFINITY;
      float mx = fmaxf(x0, x1);
      mx = fmaxf(mx, __shfl_xor_sync(0xFFFFFFFFu, mx, 4));
      mx = fmaxf(mx, __shfl_xor_sync(0xFFFFFFFFu, mx, 8));
      mx = fmaxf(mx, __shfl_xor_sync(0xFFFFFFFFu, mx, 16));
      const float m_new = fmaxf(st.m[e], mx), base = m_new == -INFINITY ? 0.0f : m_new;
      alpha[e] = exp2f(st.m[e] - base);
      st.m[e] = m_new;
      x0 = exp2f(x0 - base);
      x1 = exp2f(x1 - base);
      st.l[e] = st.l[e] * alpha[e] + x0 + x1;
    }
    // P^T (key rows, head columns) as 16-bit hi + lo pairs, transposed into B fragments:
    // b0b1 = keys 2c, 2c + 1 of head n (keys 0-7), b2b3 = keys 8 + 2c, + 1. FP8 K/V under
    // RACKSIM_ATTENTION_FP8_P=single: hi alone (half the P V MMAs).
    const bool split = !kFp8 || a.split_p;
    const std::uint32_t h0 = pack2<kF16>(s[0], s[1]), h1 = pack2<kF16>(s[2], s[3]);
    const std::uint32_t bh0 = transpose8x8(h0), bh1 = transpose8x8(h1);
    std::uint32_t bl0 = 0, bl1 = 0;
    if (split) {
      const float2 r0 = unpack2<kF16>(h0), r1 = unpack2<kF16>(h1);
      bl0 = transpose8x8(pack2<kF16>(s[0] - r0.x, s[1] - r0.y));
      bl1 = transpose8x8(pack2<kF16>(s[2] - r1.x, s[3] - r1.y));
    }
#pragma unroll
    for (int mt = 0; mt < kTiles; ++mt) {
      st.o[mt][0] *= alpha[0];
      st.o[mt][1] *= alpha[1];
      st.o[mt][2] *= alpha[0];
      st.o[mt][3] *= alpha[1];
      const std::uint32_t af[4] = {transpose8x8(vr[0][2 * mt]), transpose8x8(vr[0][2 * mt + 1]), transpose8x8(vr[1][2 * mt]),
                                   transpose8x8(vr[1][2 * mt + 1])};
      mma<kF16>(st.o[mt], af, bh0, bh1);
      if (split) mma<kF16>(st.o[mt], af, bl0, bl1);
    }
  }
#pragma unroll
  for (int e = 0; e < 2; ++e) {
    st.l[e] += __shfl_xor_sync(0xFFFFFFFFu, st.l[e], 4);
    st.l[e] += __shfl_xor_sync(0xFFFFFFFFu, st.l[e], 8);
    st.l[e] += __shfl_xor_sync(0xFFFFFFFFu, st.l[e], 16);
  }
}

/// Decode, group <= 8: grid (partition, KV head, sequence), 4 warps on interleaved 16-key steps
/// of the partition (warp_attend_t), merged in shared memory as in attention_decode_kernel.
/// CTAs per SM for the register budget: 3 (<= 168 registers) where the prefetched step fits, 2
/// for BF16 at head_dim 128 (it spilled 120 bytes at 3).
template <int HD, bool kFp8>
constexpr int kDecodeTCtas = (kFp8 || HD <= 64) ? 3 : 2;

template <int HD, bool kFp8>
__global__ void __launch_bounds__(kThreads, kDecodeTCtas<HD, kFp8>) attention_decode_t_kernel(Params a, const std::int32_t* __restrict__ context_lens,
                                                                        int partition_tokens) {
  pdl_begin();  // exec/cuda/pdl.cuh: first, before any memory access
  using F = Frag<HD>;
  constexpr int kTiles = F::kPairs / 2;
  const int b = static_cast<int>(blockIdx.z), g = static_cast<int>(blockIdx.y), p = static_cast<int>(blockIdx.x);
  const int context = context_lens[b];
  const int begin = p * partition_tokens;
  if (begin >= context) return;
  const int end = min(begin + partition_tokens, context);
  const int t = static_cast<int>(threadIdx.x), lane = t % 32, warp = t / 32, c = lane % 4, n = lane / 4;
  const int R = a.group;
  // Q^T's B fragments: head n (zeros past the group), dims in Frag::dim_of order.
  std::uint32_t qb[F::kSteps][2];
#pragma unroll
  for (int s2 = 0; s2 < F::kSteps; ++s2)
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      std::uint32_t v = 0;
      if (n < R) {
        const std::uint16_t* q = a.q + static_cast<I>(b) * a.q_stride + static_cast<I>(g * a.group + n) * HD + F::dim_of(2 * s2 + j, c);
        if constexpr (kFp8) v = pack2<true>(bf16_to_float(q[0]), bf16_to_float(q[1]));
        else v = static_cast<std::uint32_t>(q[0]) | (static_cast<std::uint32_t>(q[1]) << 16);
      }
      qb[s2][j] = v;
    }
  WarpStateT<HD> st;
  warp_attend_t<HD, kFp8>(a, g, a.block_tables + static_cast<I>(b) * a.block_table_stride, qb, begin + kStepKeys * warp, end,
                          kStepKeys * kWarps, st);

  __shared__ __align__(16) float o_s[kWarps][8][HD];
  __shared__ float m_s[kWarps][8], l_s[kWarps][8];
#pragma unroll
  for (int e = 0; e < 2; ++e) {
    const int head = 2 * c + e;
    if (head >= R) continue;
#pragma unroll
    for (int mt = 0; mt < kTiles; ++mt) {
      o_s[warp][head][tile_dim<HD>(mt, n)] = st.o[mt][e];
      o_s[warp][head][tile_dim<HD>(mt, n + 8)] = st.o[mt][2 + e];
    }
    if (n == 0) {
      m_s[warp][head] = st.m[e];
      l_s[warp][head] = st.l[e];
    }
  }
  __syncthreads();
  merge_warps<HD>(a, b, g, p, R, o_s, m_s, l_s);
}

/// Decode: grid (partition, KV head, sequence), 4 warps. A partition past its sequence's context
/// exits (the same in every thread, before any barrier).
template <int HD, bool kFp8>
__global__ void __launch_bounds__(kThreads, 2) attention_decode_kernel(Params a, const std::int32_t* __restrict__ context_lens,
                                                                      int partition_tokens) {
  pdl_begin();  // exec/cuda/pdl.cuh: first, before any memory access
  using F = Frag<HD>;
  const int b = static_cast<int>(blockIdx.z), g = static_cast<int>(blockIdx.y), p = static_cast<int>(blockIdx.x);
  const int context = context_lens[b];
  const int begin = p * partition_tokens;
  if (begin >= context) return;
  const int end = min(begin + partition_tokens, context);
  const int t = static_cast<int>(threadIdx.x), lane = t % 32, warp = t / 32, c = lane % 4, n = lane / 4;
  const int R = a.group;
  Rows rows{};
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int r = n + 8 * i;
    rows.qrow[i] = r < R ? b : -1;
    rows.head[i] = g * a.group + r;
    rows.limit[i] = INT_MAX;
  }
  std::uint32_t qa[F::kSteps][4];
  load_q<HD, kFp8>(qa, a, rows, c);
  WarpState<HD> st;
  warp_attend<HD, kFp8>(a, g, a.block_tables + static_cast<I>(b) * a.block_table_stride, qa, rows, begin + kStepKeys * warp, end,
                        kStepKeys * kWarps, st);

  // Merge the warps: O_w, m_w, l_w -> shared memory (rows < R), then thread t combines elements
  // t, t + 128, ... of the R x HD output.
  __shared__ __align__(16) float o_s[kWarps][kTileRows][HD];
  __shared__ float m_s[kWarps][kTileRows], l_s[kWarps][kTileRows];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int r = n + 8 * i;
    if (r >= R) continue;
#pragma unroll
    for (int j = 0; j < F::kPairs; ++j)
      *reinterpret_cast<float2*>(&o_s[warp][r][F::dim_of(j, c)]) = make_float2(st.o[j][2 * i], st.o[j][2 * i + 1]);
    if (c == 0) {
      m_s[warp][r] = st.m[i];
      l_s[warp][r] = st.l[i];
    }
  }
  __syncthreads();
  merge_warps<HD>(a, b, g, p, R, o_s, m_s, l_s);
}

/// The log-sum-exp merge of the decode partitions: grid (query head, sequence), HD threads.
template <int HD>
__global__ void __launch_bounds__(HD) attention_decode_merge_kernel(Params a, const std::int32_t* __restrict__ context_lens,
                                                                    int partition_tokens) {
  pdl_begin();  // exec/cuda/pdl.cuh: first, before any memory access
  const int h = static_cast<int>(blockIdx.x), b = static_cast<int>(blockIdx.y), d = static_cast<int>(threadIdx.x);
  const int g = h / a.group, r = h % a.group;
  // Clamped to the grid's partitions: a context above max_context (refused by cuda_ops) must not
  // read another head's partials.
  const int parts = min((context_lens[b] + partition_tokens - 1) / partition_tokens, a.partitions);
  const I first = (static_cast<I>(b) * a.kv_heads + g) * a.partitions * a.group + r;  // partition p at first + p x group
  float m = -INFINITY;
  for (int p = 0; p < parts; ++p) m = fmaxf(m, a.part_m[first + static_cast<I>(p) * a.group]);
  float l = 0.0f, o = 0.0f;
  for (int p = 0; p < parts; ++p) {
    const I i = first + static_cast<I>(p) * a.group;
    const float wgt = exp2f(a.part_m[i] - m);
    l += wgt * a.part_l[i];
    o += wgt * a.part_o[i * HD + d];
  }
  a.out[static_cast<I>(b) * a.out_stride + static_cast<I>(h) * HD + d] = float_to_bf16(parts > 0 ? o / l : 0.0f);
}

/// Prefill: grid (64-row tile, KV head, segment); warp w owns rows 64 x tile + 16 w .. + 15 of
/// the segment's tokens x group rows (row r: token r / group, head g x group + r % group) and
/// walks keys 0 .. cached + (its last row's token) causally. No block barrier: idle warps exit.
template <int HD, bool kFp8>
__global__ void __launch_bounds__(kThreads, 2) attention_prefill_kernel(Params a, const PrefillSegment* __restrict__ segments) {
  pdl_begin();  // exec/cuda/pdl.cuh: first, before any memory access
  using F = Frag<HD>;
  const int s = static_cast<int>(blockIdx.z), g = static_cast<int>(blockIdx.y);
  const PrefillSegment seg = segments[s];
  const int t = static_cast<int>(threadIdx.x), lane = t % 32, warp = t / 32, c = lane % 4, n = lane / 4;
  const I total = static_cast<I>(seg.tokens) * a.group;
  const I r0 = static_cast<I>(blockIdx.x) * kPrefillRows + kTileRows * warp;
  if (r0 >= total) return;
  Rows rows{};
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const I r = r0 + n + 8 * i;
    const bool valid = r < total;
    rows.qrow[i] = valid ? seg.q_row + r / a.group : -1;
    rows.head[i] = g * a.group + static_cast<int>(r % a.group);
    rows.limit[i] = valid ? seg.cached + static_cast<int>(r / a.group) + 1 : 0;
  }
  const I last = min(r0 + kTileRows, total) - 1;
  const int k_end = seg.cached + static_cast<int>(last / a.group) + 1;
  std::uint32_t qa[F::kSteps][4];
  load_q<HD, kFp8>(qa, a, rows, c);
  WarpState<HD> st;
  warp_attend<HD, kFp8>(a, g, a.block_tables + static_cast<I>(s) * a.block_table_stride, qa, rows, 0, k_end, kStepKeys, st);
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    if (rows.qrow[i] < 0) continue;
    const float f = a.v_scale / st.l[i];
    std::uint16_t* out = a.out + rows.qrow[i] * a.out_stride + static_cast<I>(rows.head[i]) * HD;
#pragma unroll
    for (int q = 0; q < HD / (4 * F::W); ++q) {  // registers q x kRegs .. + kRegs - 1: W consecutive dims
      std::uint32_t w[F::kRegs];
#pragma unroll
      for (int j = 0; j < F::kRegs; ++j) {
        const float* o = st.o[q * F::kRegs + j];
        w[j] = pack2<false>(o[2 * i] * f, o[2 * i + 1] * f);
      }
      std::uint16_t* dst = out + F::dim_of(q * F::kRegs, c);
      if ((reinterpret_cast<std::uintptr_t>(dst) & (2 * F::W - 1)) != 0) {  // out or out_stride not vector-aligned
#pragma unroll
        for (int j = 0; j < F::kRegs; ++j) {
          dst[2 * j] = static_cast<std::uint16_t>(w[j] & 0xFFFFu);
          dst[2 * j + 1] = static_cast<std::uint16_t>(w[j] >> 16);
        }
      } else if constexpr (F::W == 8) {
        *reinterpret_cast<uint4*>(dst) = make_uint4(w[0], w[1], w[2], w[3]);
      } else {
        *reinterpret_cast<uint2*>(dst) = make_uint2(w[0], w[1]);
      }
    }
  }
}

/// kv_append: CTA per row; element e of the row's 2 x kv_heads x head_dim K-then-V values.
template <bool kFp8>
__global__ void __launch_bounds__(256) kv_append_kernel(void* __restrict__ k_cache, void* __restrict__ v_cache, I slots_total,
                                                        int kv_heads, int head_dim, int block_tokens, float k_scale, float v_scale,
                                                        const std::uint16_t* __restrict__ qkv, I row_width, I k_column,
                                                        const std::int32_t* __restrict__ slots) {
  pdl_begin();  // exec/cuda/pdl.cuh: first, before any memory access
  const I r = blockIdx.x;
  const I slot = slots[r];
  if (slot < 0 || slot >= slots_total) return;
  const I block = slot / block_tokens, row = slot % block_tokens;
  const int width = kv_heads * head_dim;
  for (int e = static_cast<int>(threadIdx.x); e < 2 * width; e += static_cast<int>(blockDim.x)) {
    const bool is_v = e >= width;
    const int f = is_v ? e - width : e, h = f / head_dim, d = f % head_dim;
    const float x = bf16_to_float(qkv[r * row_width + k_column + e]);  // K heads, then V heads, contiguous in the row
    const I idx = ((block * kv_heads + h) * block_tokens + row) * head_dim + d;
    if constexpr (kFp8) {
      static_cast<std::uint8_t*>(is_v ? v_cache : k_cache)[idx] = act::e4m3_code(x / (is_v ? v_scale : k_scale));
    } else {
      static_cast<std::uint16_t*>(is_v ? v_cache : k_cache)[idx] = float_to_bf16(x);
    }
  }
}

/// Decode with keys as the MMA's M for group <= 8 (attention_decode_t_kernel) unless the
/// environment sets RACKSIM_ATTENTION_DECODE=rows (the rows-as-M kernel for every group: the
/// same-session A/B of docs/executor.md); any other value is an InputError.
bool keys_as_m() {
  static const bool v = attention_decode_keys_as_m(std::getenv("RACKSIM_ATTENTION_DECODE"));
  return v;
}

/// FP8 K/V's P V with P rounded once to FP16 when RACKSIM_ATTENTION_FP8_P=single (paged_kv.hpp
/// attention_fp8_single_p); read once per process.
bool fp8_single_p() {
  static const bool v = attention_fp8_single_p(std::getenv("RACKSIM_ATTENTION_FP8_P"));
  return v;
}

Params params_of(const DevicePagedKv& c, const std::uint16_t* q, I q_stride, I heads, const std::int32_t* tables, I table_stride,
                 std::uint16_t* out, I out_stride) {
  Params a{};
  a.q = q;
  a.q_stride = q_stride;
  a.k_cache = c.k;
  a.v_cache = c.v;
  a.kv_heads = static_cast<int>(c.layout.kv_heads);
  a.block_tokens = static_cast<int>(c.layout.block_tokens);
  a.group = static_cast<int>(heads / c.layout.kv_heads);
  a.block_tables = tables;
  a.block_table_stride = table_stride;
  // 1 / sqrt(head_dim) as cpu_ops computes it, times log2(e) for exp2f, times K's FP8 scale.
  a.score_scale = 1.0f / std::sqrt(static_cast<float>(c.layout.head_dim)) * kLog2e * (c.layout.dtype == DType::fp8 ? c.k_scale : 1.0f);
  a.split_p = c.layout.dtype != DType::fp8 || !fp8_single_p();
  a.v_scale = c.layout.dtype == DType::fp8 ? c.v_scale : 1.0f;
  a.out = out;
  a.out_stride = out_stride;
  a.partitions = 1;
  return a;
}

/// Calls f(integral_constant<HD>, bool_constant<fp8>) for the cache's head_dim (16, 32, 64 or 128,
/// checked by cuda_ops) and dtype: the kernels are instantiated for these only.
template <class F>
void by_shape(const PagedKvLayout& l, F&& f) {
  const bool fp8 = l.dtype == DType::fp8;
  const auto with = [&](auto hd) {
    if (fp8) f(hd, std::true_type{});
    else f(hd, std::false_type{});
  };
  if (l.head_dim == 16) with(std::integral_constant<int, 16>{});
  else if (l.head_dim == 32) with(std::integral_constant<int, 32>{});
  else if (l.head_dim == 64) with(std::integral_constant<int, 64>{});
  else if (l.head_dim == 128) with(std::integral_constant<int, 128>{});
  else throw InputError("attention: head_dim " + std::to_string(l.head_dim) + " is not one of 16, 32, 64, 128");
}

}  // namespace

void kv_append_launch(const DevicePagedKv& c, const std::uint16_t* qkv, std::int64_t rows, std::int64_t row_width, std::int64_t heads,
                      const std::int32_t* slots, void* stream) {
  if (rows == 0) return;
  const PagedKvLayout& l = c.layout;
  const I slots_total = l.blocks * l.block_tokens, k_column = heads * l.head_dim;
  const auto s = static_cast<cudaStream_t>(stream);
  if (l.dtype == DType::fp8)
    launch_kernel(kv_append_kernel<true>, static_cast<unsigned>(rows), 256, 0, s, c.k, c.v, slots_total, static_cast<int>(l.kv_heads),
                  static_cast<int>(l.head_dim), static_cast<int>(l.block_tokens), c.k_scale, c.v_scale, qkv, row_width, k_column, slots);
  else
    launch_kernel(kv_append_kernel<false>, static_cast<unsigned>(rows), 256, 0, s, c.k, c.v, slots_total, static_cast<int>(l.kv_heads),
                  static_cast<int>(l.head_dim), static_cast<int>(l.block_tokens), 1.0f, 1.0f, qkv, row_width, k_column, slots);
  RACKSIM_CUDA_CHECK(cudaGetLastError());
}

void attention_decode_launch(const DevicePagedKv& c, const AttentionDecodeArgs& d, void* stream) {
  if (d.batch == 0) return;
  Params a = params_of(c, d.q, d.q_stride, d.heads, d.block_tables, d.block_table_stride, d.out, d.out_stride);
  const I parts = decode_partitions(d.max_context, d.partition_tokens);
  a.partitions = static_cast<int>(parts);
  if (parts > 1) {
    const I slots = d.batch * d.heads * parts;  // decode_workspace_bytes: o [slots x HD], then m [slots], l [slots]
    a.part_o = static_cast<float*>(d.workspace);
    a.part_m = a.part_o + slots * c.layout.head_dim;
    a.part_l = a.part_m + slots;
  }
  const auto s = static_cast<cudaStream_t>(stream);
  const auto ptok = static_cast<int>(d.partition_tokens);
  by_shape(c.layout, [&](auto hd, auto fp8) {
    constexpr int HD = decltype(hd)::value;
    constexpr bool kFp8 = decltype(fp8)::value;
    const dim3 grid(static_cast<unsigned>(parts), static_cast<unsigned>(c.layout.kv_heads), static_cast<unsigned>(d.batch));
    if (a.group <= 8 && keys_as_m())
      launch_kernel(attention_decode_t_kernel<HD, kFp8>, grid, kThreads, 0, s, a, d.context_lens, ptok);
    else
      launch_kernel(attention_decode_kernel<HD, kFp8>, grid, kThreads, 0, s, a, d.context_lens, ptok);
    RACKSIM_CUDA_CHECK(cudaGetLastError());
    if (parts > 1) {
      launch_kernel(attention_decode_merge_kernel<HD>, dim3(static_cast<unsigned>(d.heads), static_cast<unsigned>(d.batch)), HD, 0, s, a,
                    d.context_lens, ptok);
      RACKSIM_CUDA_CHECK(cudaGetLastError());
    }
  });
}

void attention_prefill_launch(const DevicePagedKv& c, const AttentionPrefillArgs& p, void* stream) {
  if (p.segment_count == 0 || p.max_segment_tokens == 0) return;
  const Params a = params_of(c, p.q, p.q_stride, p.heads, p.block_tables, p.block_table_stride, p.out, p.out_stride);
  const I tiles = (p.max_segment_tokens * a.group + kPrefillRows - 1) / kPrefillRows;  // <= 2^30 x 64 / 64 (prefill_shape)
  const auto s = static_cast<cudaStream_t>(stream);
  by_shape(c.layout, [&](auto hd, auto fp8) {
    constexpr int HD = decltype(hd)::value;
    constexpr bool kFp8 = decltype(fp8)::value;
    const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(c.layout.kv_heads), static_cast<unsigned>(p.segment_count));
    launch_kernel(attention_prefill_kernel<HD, kFp8>, grid, kThreads, 0, s, a, p.segments);
    RACKSIM_CUDA_CHECK(cudaGetLastError());
  });
}

}  // namespace racksim::exec::cuda
