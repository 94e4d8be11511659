// Paged KV append, decode attention (split-K over the context, FlashDecoding / vLLM
// paged_attention_v2) and prefill attention (FlashAttention-style tiles), BF16 queries and
// outputs, BF16 or FP8 E4M3 (per-tensor scale) K/V, FP32 math on CUDA cores. Layout and
// planning: paged_kv.hpp; arguments were checked by cuda_ops (backend_registry.cpp).
//
// One kernel body serves both attentions. A CTA owns a tile of R <= RMAX query rows that share
// one KV head g: row r is token r / group of its sequence (or chunk) and query head
// g x group + r % group, so every K/V byte the CTA loads serves all the group's heads (GQA).
// Decode: R = group (one token), RMAX 16, 128 threads, one CTA per (partition, KV head,
// sequence); prefill: R = (RMAX / group) x group rows of consecutive tokens, RMAX 64, 256
// threads, one CTA per (token tile, KV head, chunk). Per 64-key tile (kTile):
//   1. K and V rows -> shared memory as BF16 (FP8 codes widened exactly; scales applied later),
//   2. scores s[r][j] = (q_r . k_j) x softmax_scale x log2(e) x k_scale, -inf where masked,
//   3. online softmax per row (one warp per row): m' = max(m, max_j s), p = 2^(s - m'),
//      l' = l 2^(m - m') + sum p,
//   4. acc[r][d] = acc[r][d] 2^(m - m') + sum_j p[r][j] v[j][d].
// The end writes acc x v_scale / l (one partition), or acc x v_scale, m and l to the decode
// workspace for the merge kernel: out = sum_p 2^(m_p - M) acc_p / sum_p 2^(m_p - M) l_p.

#include "attention.hpp"

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <type_traits>
#include <utility>

#include "bf16_vec.cuh"
#include "cuda_check.hpp"
#include "racksim/exec/activation_formats.hpp"

namespace racksim::exec::cuda {

namespace {

using I = long long;

constexpr int kTile = static_cast<int>(kAttentionKeyTile);  // keys per tile (paged_kv.hpp)
static_assert(kTile == 64, "the softmax step gives each lane keys lane and lane + 32");
constexpr float kLog2e = 1.4426950408889634f;  // log2(e): exp(x) = exp2(x log2 e)
constexpr int kDecodeRows = 16, kDecodeThreads = 128;    // decode: group <= 16 (Llama-3.1-405B: 128 / 8)
constexpr int kPrefillRows = 64, kPrefillThreads = 256;  // prefill: 64 / group tokens per CTA

/// Compile-time shape of one attention CTA and its shared memory (byte offsets, 16-aligned).
template <int HD, int RMAX, int NT>
struct Shape {
  static_assert(HD % 8 == 0 && NT % kTile == 0 && NT % HD == 0 && NT % 32 == 0, "thread mappings need these");
  static constexpr int kScoreSlots = NT / kTile;  // score step: thread t -> key t % kTile, rows t / kTile + k x kScoreSlots
  static constexpr int kScoreRows = RMAX / kScoreSlots;
  static constexpr int kValueSlots = NT / HD;     // PV step: thread t -> dim t % HD, rows t / HD + k x kValueSlots
  static constexpr int kValueRows = RMAX / kValueSlots;
  static_assert(RMAX % kScoreSlots == 0 && RMAX % kValueSlots == 0, "rows split evenly over the slots");
  // K rows are padded by 8 BF16 (16 bytes): lanes reading 16 bytes of consecutive keys then hit
  // distinct bank quads within each 8-lane phase ((HD + 8) x 2 / 4 words apart: 4 (mod 32) for
  // HD 64 and 128, 12 for HD 16).
  static constexpr int kKStride = HD + 8;
  static constexpr std::size_t kQ = 0;                                            // float [RMAX][HD], pre-scaled
  static constexpr std::size_t kK = kQ + sizeof(float) * RMAX * HD;               // bf16 [kTile][kKStride]
  static constexpr std::size_t kV = kK + sizeof(std::uint16_t) * kTile * kKStride;  // bf16 [kTile][HD]
  static constexpr std::size_t kP = kV + sizeof(std::uint16_t) * kTile * HD;      // float [RMAX][kTile]
  static constexpr std::size_t kStats = kP + sizeof(float) * RMAX * kTile;        // float m, l, alpha [RMAX]; int limit [RMAX]
  static constexpr std::size_t kBytes = kStats + 4 * sizeof(float) * RMAX;
  static_assert(kK % 16 == 0 && kV % 16 == 0 && kP % 16 == 0 && kStats % 16 == 0, "16-byte aligned regions");
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
  float q_scale;  // softmax_scale x log2(e)
  float k_scale, v_scale;
  std::uint16_t* out;
  I out_stride;
  // decode workspace: partials of (sequence, KV head, partition, row) at index
  // ((seq x kv_heads + g) x partitions + partition) x group + row
  float* part_o;
  float* part_m;
  float* part_l;
  int partitions;
};

/// One CTA's work, the same in every thread.
struct Work {
  int seq;          // block-table row, and the decode workspace's sequence
  I q_row0;         // q and out row of the tile's first token
  int rows;         // R query rows
  int keys_before;  // row r's token sees keys 0 .. keys_before + r / group
  int key_begin, key_end;
  int partition;
  bool direct;      // write the normalized output (else the decode partials)
};

template <int HD, int RMAX, int NT, bool kFp8>
__device__ __forceinline__ void attend(const Params& a, const Work& w, int g) {
  using S = Shape<HD, RMAX, NT>;
  extern __shared__ __align__(16) unsigned char smem[];
  float* q_s = reinterpret_cast<float*>(smem + S::kQ);
  std::uint16_t* k_s = reinterpret_cast<std::uint16_t*>(smem + S::kK);
  std::uint16_t* v_s = reinterpret_cast<std::uint16_t*>(smem + S::kV);
  float* p_s = reinterpret_cast<float*>(smem + S::kP);
  float* m_s = reinterpret_cast<float*>(smem + S::kStats);
  float* l_s = m_s + RMAX;
  float* alpha_s = l_s + RMAX;
  int* limit_s = reinterpret_cast<int*>(alpha_s + RMAX);

  const int t = static_cast<int>(threadIdx.x), lane = t % 32, warp = t / 32;
  const int R = w.rows;
  for (int r = t; r < RMAX; r += NT) {
    limit_s[r] = r < R ? w.keys_before + r / a.group + 1 : 0;
    m_s[r] = -INFINITY;
    l_s[r] = 0.0f;
    alpha_s[r] = 1.0f;
  }
  for (int i = t; i < RMAX * HD; i += NT) {
    const int r = i / HD, d = i % HD;
    float qv = 0.0f;
    if (r < R) {
      const I row = w.q_row0 + r / a.group, head = static_cast<I>(g) * a.group + r % a.group;
      qv = bf16_to_float(a.q[row * a.q_stride + head * HD + d]) * a.q_scale;
    }
    q_s[i] = qv;
  }
  const std::int32_t* table = a.block_tables + static_cast<I>(w.seq) * a.block_table_stride;
  const int key_j = t % kTile, score_slot = t / kTile;  // score step
  const int dim = t % HD, value_slot = t / HD;          // PV step
  float acc[S::kValueRows];
#pragma unroll
  for (int k = 0; k < S::kValueRows; ++k) acc[k] = 0.0f;
  __syncthreads();

  for (int k0 = w.key_begin; k0 < w.key_end; k0 += kTile) {
    const int n = min(kTile, w.key_end - k0);
    // 1. K and V tile: chunk c is key c / (HD / 8), dims (c % (HD / 8)) x 8 .. + 7; keys past n are zeros.
    for (int c = t; c < kTile * HD / 8; c += NT) {
      const int j = c / (HD / 8), d0 = (c % (HD / 8)) * 8;
      uint4 kw = make_uint4(0, 0, 0, 0), vw = make_uint4(0, 0, 0, 0);
      if (j < n) {
        const int key = k0 + j;
        const I block = table[key / a.block_tokens];
        const I idx = ((block * a.kv_heads + g) * a.block_tokens + key % a.block_tokens) * HD + d0;
        if constexpr (kFp8) {
          kw = e4m3x8_to_bf16x8(*reinterpret_cast<const uint2*>(static_cast<const std::uint8_t*>(a.k_cache) + idx));
          vw = e4m3x8_to_bf16x8(*reinterpret_cast<const uint2*>(static_cast<const std::uint8_t*>(a.v_cache) + idx));
        } else {
          kw = *reinterpret_cast<const uint4*>(static_cast<const std::uint16_t*>(a.k_cache) + idx);
          vw = *reinterpret_cast<const uint4*>(static_cast<const std::uint16_t*>(a.v_cache) + idx);
        }
      }
      *reinterpret_cast<uint4*>(k_s + j * S::kKStride + d0) = kw;
      *reinterpret_cast<uint4*>(v_s + j * HD + d0) = vw;
    }
    __syncthreads();

    // 2. Scores of key key_j for rows score_slot + k x kScoreSlots (a warp shares its rows, so
    // the q reads are broadcasts).
    {
      float s[S::kScoreRows];
#pragma unroll
      for (int k = 0; k < S::kScoreRows; ++k) s[k] = 0.0f;
#pragma unroll 4
      for (int d0 = 0; d0 < HD; d0 += 8) {
        float kf[8];
        unpack_bf16x8(*reinterpret_cast<const uint4*>(k_s + key_j * S::kKStride + d0), kf);
#pragma unroll
        for (int k = 0; k < S::kScoreRows; ++k) {
          const int r = score_slot + k * S::kScoreSlots;
          if (r < R) {
            const float4 qa = *reinterpret_cast<const float4*>(q_s + r * HD + d0);
            const float4 qb = *reinterpret_cast<const float4*>(q_s + r * HD + d0 + 4);
            s[k] += qa.x * kf[0] + qa.y * kf[1] + qa.z * kf[2] + qa.w * kf[3] + qb.x * kf[4] + qb.y * kf[5] + qb.z * kf[6] + qb.w * kf[7];
          }
        }
      }
      const int key = k0 + key_j;
#pragma unroll
      for (int k = 0; k < S::kScoreRows; ++k) {
        const int r = score_slot + k * S::kScoreSlots;
        if (r < R) p_s[r * kTile + key_j] = (key_j < n && key < limit_s[r]) ? s[k] * a.k_scale : -INFINITY;
      }
    }
    __syncthreads();

    // 3. Online softmax, one warp per row; lane holds keys lane and lane + 32.
    for (int r = warp; r < R; r += NT / 32) {
      float* pr = p_s + r * kTile;
      const float x0 = pr[lane], x1 = pr[lane + 32];
      float mx = fmaxf(x0, x1);
#pragma unroll
      for (int o = 16; o > 0; o /= 2) mx = fmaxf(mx, __shfl_xor_sync(0xFFFFFFFFu, mx, o));
      const float m_old = m_s[r], m_new = fmaxf(m_old, mx);
      float p0 = 0.0f, p1 = 0.0f, alpha = 1.0f;
      if (m_new != -INFINITY) {  // else every key so far is masked: nothing to add, nothing to rescale
        p0 = exp2f(x0 - m_new);
        p1 = exp2f(x1 - m_new);
        alpha = exp2f(m_old - m_new);  // 0 when m_old is -inf
      }
      pr[lane] = p0;
      pr[lane + 32] = p1;
      float sum = p0 + p1;
#pragma unroll
      for (int o = 16; o > 0; o /= 2) sum += __shfl_xor_sync(0xFFFFFFFFu, sum, o);
      if (lane == 0) {
        l_s[r] = l_s[r] * alpha + sum;
        m_s[r] = m_new;
        alpha_s[r] = alpha;
      }
    }
    __syncthreads();

    // 4. acc = acc x alpha + P V for dim `dim` of rows value_slot + k x kValueSlots.
#pragma unroll
    for (int k = 0; k < S::kValueRows; ++k) {
      const int r = value_slot + k * S::kValueSlots;
      if (r < R) acc[k] *= alpha_s[r];
    }
    for (int j = 0; j < n; ++j) {
      const float v = bf16_to_float(v_s[j * HD + dim]);
#pragma unroll
      for (int k = 0; k < S::kValueRows; ++k) {
        const int r = value_slot + k * S::kValueSlots;
        if (r < R) acc[k] = fmaf(p_s[r * kTile + j], v, acc[k]);
      }
    }
    __syncthreads();  // the next tile overwrites k_s, v_s and p_s
  }

#pragma unroll
  for (int k = 0; k < S::kValueRows; ++k) {
    const int r = value_slot + k * S::kValueSlots;
    if (r >= R) continue;
    if (w.direct) {
      const I row = w.q_row0 + r / a.group, head = static_cast<I>(g) * a.group + r % a.group;
      a.out[row * a.out_stride + head * HD + dim] = float_to_bf16(acc[k] * a.v_scale / l_s[r]);
    } else {
      const I part = ((static_cast<I>(w.seq) * a.kv_heads + g) * a.partitions + w.partition) * a.group + r;
      a.part_o[part * HD + dim] = acc[k] * a.v_scale;
      if (dim == 0) {
        a.part_m[part] = m_s[r];
        a.part_l[part] = l_s[r];
      }
    }
  }
}

/// Decode: grid (partition, KV head, sequence). A partition past its sequence's context exits
/// (the same in every thread, before any barrier).
template <int HD, bool kFp8>
__global__ void __launch_bounds__(kDecodeThreads) attention_decode_kernel(Params a, const std::int32_t* __restrict__ context_lens,
                                                                         int partition_tokens) {
  const int b = static_cast<int>(blockIdx.z), g = static_cast<int>(blockIdx.y), p = static_cast<int>(blockIdx.x);
  const int context = context_lens[b];
  const int begin = p * partition_tokens;
  if (begin >= context) return;
  Work w{};
  w.seq = b;
  w.q_row0 = b;
  w.rows = a.group;
  w.keys_before = context - 1;
  w.key_begin = begin;
  w.key_end = min(begin + partition_tokens, context);
  w.partition = p;
  w.direct = a.partitions == 1;
  attend<HD, kDecodeRows, kDecodeThreads, kFp8>(a, w, g);
}

/// The log-sum-exp merge of the decode partitions: grid (query head, sequence), HD threads.
template <int HD>
__global__ void __launch_bounds__(HD) attention_decode_merge_kernel(Params a, const std::int32_t* __restrict__ context_lens,
                                                                    int partition_tokens) {
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

/// Prefill: grid (token tile, KV head, segment). A tile past its segment's tokens exits.
template <int HD, bool kFp8>
__global__ void __launch_bounds__(kPrefillThreads) attention_prefill_kernel(Params a, const PrefillSegment* __restrict__ segments) {
  const int s = static_cast<int>(blockIdx.z), g = static_cast<int>(blockIdx.y);
  const PrefillSegment seg = segments[s];
  const int tile_tokens = kPrefillRows / a.group;
  const int t0 = static_cast<int>(blockIdx.x) * tile_tokens;
  if (t0 >= seg.tokens) return;
  const int tokens = min(tile_tokens, seg.tokens - t0);
  Work w{};
  w.seq = s;
  w.q_row0 = static_cast<I>(seg.q_row) + t0;
  w.rows = tokens * a.group;
  w.keys_before = seg.cached + t0;
  w.key_begin = 0;
  w.key_end = seg.cached + t0 + tokens;  // the tile's last token sees keys 0 .. cached + t0 + tokens - 1
  w.partition = 0;
  w.direct = true;
  attend<HD, kPrefillRows, kPrefillThreads, kFp8>(a, w, g);
}

/// kv_append: CTA per row; element e of the row's 2 x kv_heads x head_dim K-then-V values.
template <bool kFp8>
__global__ void __launch_bounds__(256) kv_append_kernel(void* __restrict__ k_cache, void* __restrict__ v_cache, I slots_total,
                                                        int kv_heads, int head_dim, int block_tokens, float k_scale, float v_scale,
                                                        const std::uint16_t* __restrict__ qkv, I row_width, I k_column,
                                                        const std::int32_t* __restrict__ slots) {
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
  // 1 / sqrt(head_dim) as cpu_ops computes it, times log2(e) for exp2f.
  a.q_scale = 1.0f / std::sqrt(static_cast<float>(c.layout.head_dim)) * kLog2e;
  a.k_scale = c.layout.dtype == DType::fp8 ? c.k_scale : 1.0f;
  a.v_scale = c.layout.dtype == DType::fp8 ? c.v_scale : 1.0f;
  a.out = out;
  a.out_stride = out_stride;
  a.partitions = 1;
  return a;
}

/// Calls f(integral_constant<HD>, bool_constant<fp8>) for the cache's head_dim (16, 64 or 128,
/// checked by cuda_ops) and dtype: the kernels are instantiated for these only.
template <class F>
void by_shape(const PagedKvLayout& l, F&& f) {
  const bool fp8 = l.dtype == DType::fp8;
  const auto with = [&](auto hd) {
    if (fp8) f(hd, std::true_type{});
    else f(hd, std::false_type{});
  };
  if (l.head_dim == 16) with(std::integral_constant<int, 16>{});
  else if (l.head_dim == 64) with(std::integral_constant<int, 64>{});
  else if (l.head_dim == 128) with(std::integral_constant<int, 128>{});
  else throw InputError("attention: head_dim " + std::to_string(l.head_dim) + " is not one of 16, 64, 128");
}

/// Opts `kernel` in to `bytes` of dynamic shared memory when that is above the default 48 KiB
/// (CUDA C++ Programming Guide, "Shared Memory": larger allocations need the attribute).
/// The attribute holds per kernel and device, so it is set once for each (not on every launch:
/// a prefill step launches this per layer).
template <class Kernel>
void allow_smem(Kernel* kernel, std::size_t bytes) {
  if (bytes <= 48 * 1024) return;
  static std::mutex mu;
  static std::set<std::pair<const void*, int>> done;
  int device = 0;
  RACKSIM_CUDA_CHECK(cudaGetDevice(&device));
  const std::pair<const void*, int> key{reinterpret_cast<const void*>(kernel), device};
  const std::lock_guard lock(mu);
  if (done.count(key)) return;
  RACKSIM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  done.insert(key);
}

}  // namespace

void kv_append_launch(const DevicePagedKv& c, const std::uint16_t* qkv, std::int64_t rows, std::int64_t row_width, std::int64_t heads,
                      const std::int32_t* slots, void* stream) {
  if (rows == 0) return;
  const PagedKvLayout& l = c.layout;
  const I slots_total = l.blocks * l.block_tokens, k_column = heads * l.head_dim;
  const auto s = static_cast<cudaStream_t>(stream);
  if (l.dtype == DType::fp8)
    kv_append_kernel<true><<<static_cast<unsigned>(rows), 256, 0, s>>>(c.k, c.v, slots_total, static_cast<int>(l.kv_heads),
                                                                       static_cast<int>(l.head_dim), static_cast<int>(l.block_tokens),
                                                                       c.k_scale, c.v_scale, qkv, row_width, k_column, slots);
  else
    kv_append_kernel<false><<<static_cast<unsigned>(rows), 256, 0, s>>>(c.k, c.v, slots_total, static_cast<int>(l.kv_heads),
                                                                        static_cast<int>(l.head_dim), static_cast<int>(l.block_tokens),
                                                                        1.0f, 1.0f, qkv, row_width, k_column, slots);
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
    constexpr std::size_t smem = Shape<HD, kDecodeRows, kDecodeThreads>::kBytes;
    auto* kernel = attention_decode_kernel<HD, kFp8>;
    allow_smem(kernel, smem);
    const dim3 grid(static_cast<unsigned>(parts), static_cast<unsigned>(c.layout.kv_heads), static_cast<unsigned>(d.batch));
    kernel<<<grid, kDecodeThreads, smem, s>>>(a, d.context_lens, ptok);
    RACKSIM_CUDA_CHECK(cudaGetLastError());
    if (parts > 1) {
      attention_decode_merge_kernel<HD><<<dim3(static_cast<unsigned>(d.heads), static_cast<unsigned>(d.batch)), HD, 0, s>>>(
          a, d.context_lens, ptok);
      RACKSIM_CUDA_CHECK(cudaGetLastError());
    }
  });
}

void attention_prefill_launch(const DevicePagedKv& c, const AttentionPrefillArgs& p, void* stream) {
  if (p.segment_count == 0 || p.max_segment_tokens == 0) return;
  const Params a = params_of(c, p.q, p.q_stride, p.heads, p.block_tables, p.block_table_stride, p.out, p.out_stride);
  const I tile_tokens = kPrefillRows / a.group;
  const auto s = static_cast<cudaStream_t>(stream);
  by_shape(c.layout, [&](auto hd, auto fp8) {
    constexpr int HD = decltype(hd)::value;
    constexpr bool kFp8 = decltype(fp8)::value;
    constexpr std::size_t smem = Shape<HD, kPrefillRows, kPrefillThreads>::kBytes;
    auto* kernel = attention_prefill_kernel<HD, kFp8>;
    allow_smem(kernel, smem);
    const dim3 grid(static_cast<unsigned>((p.max_segment_tokens + tile_tokens - 1) / tile_tokens), static_cast<unsigned>(c.layout.kv_heads),
                    static_cast<unsigned>(p.segment_count));
    kernel<<<grid, kPrefillThreads, smem, s>>>(a, p.segments);
    RACKSIM_CUDA_CHECK(cudaGetLastError());
  });
}

}  // namespace racksim::exec::cuda
