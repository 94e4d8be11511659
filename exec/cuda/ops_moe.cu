// The MoE routing ops of a Mixtral-style block (docs/executor.md, "MoE on the device"), the same
// equations and orders as the CPU reference (cpu_ops moe_top_k, moe_expert_order and
// CpuReference's experts.finalize):
//   top-k: one warp per token picks the k largest router logits (ties: the lower expert id) and
//     softmaxes over those k, exp(l_j - l_0) / sum in rank order; or, with a bias (MiniMax-M2),
//     the k largest sigmoid(l) + bias, weighted sigmoid(l_j) / sum (cpu_ops moe_top_k_sigmoid);
//   permute: one CTA sorts the assignments by expert, stably (a counting sort: counts, a scan,
//     then each chunk of 1,024 assignments ranked within its warp by __match_any_sync and across
//     warps by per-warp counts), so every expert's rows are one contiguous block;
//   finalize: y[t] = sum_j w_j x rows[position[t k + j]] in FP32, j in rank order, without fused
//     multiply-adds (the CPU's order and roundings), then BF16.
// Arguments were checked by cuda_ops (backend_registry.cpp) before these launch.

#include "ops_moe.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>

#include "bf16_vec.cuh"
#include "cuda_check.hpp"
#include "pdl.cuh"
#include "racksim/exec/cpu_ops.hpp"

namespace racksim::exec::cuda {

namespace {

using I = long long;

constexpr unsigned kFull = 0xFFFFFFFFu;
constexpr int kTopkThreads = 256;     // 8 tokens per CTA, a warp each
constexpr int kPermuteThreads = 1024;  // one CTA: 32 warps
constexpr int kThreads = 256;
constexpr I kMaxGrid = I{1} << 20;

cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

struct Best {
  float v;
  int id;
};

/// The larger logit, or at equal logits the lower expert id (NaN is never larger, so it is never
/// picked while a number remains).
__device__ __forceinline__ Best better(Best a, Best b) { return (b.v > a.v || (b.v == a.v && b.id < a.id)) ? b : a; }

/// MiniMax-M2's score: sigmoid in FP32, cpu_ops moe_top_k_sigmoid's 1 / (1 + exp(-l)) (expf:
/// within 2 ulp of the CPU's std::exp).
__device__ __forceinline__ float sigmoid_score(float l) { return 1.0f / (1.0f + expf(-l)); }

/// SIGMOID false: Mixtral's top-k of the logits, softmax over the k. SIGMOID true: MiniMax-M2's
/// top-k of sigmoid(l) + bias[e], weights sigmoid(l) over their sum (clamped at 1e-12).
template <bool SIGMOID>
__global__ void __launch_bounds__(kTopkThreads) moe_topk_kernel(const float* __restrict__ logits, const float* __restrict__ bias, I rows,
                                                                int experts, int k, std::int32_t* __restrict__ ids,
                                                                float* __restrict__ weights) {
  pdl_begin();  // exec/cuda/pdl.cuh: first, before any memory access
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const I row = static_cast<I>(blockIdx.x) * (kTopkThreads / 32) + static_cast<I>(threadIdx.x) / 32;
  if (row >= rows) return;  // the whole warp
  const float* lg = logits + row * experts;
  const float* keys = lg;  // what the k passes rank
  if constexpr (SIGMOID) {
    // sigmoid(l) + bias once per expert, into the warp's row of shared memory (4 KiB a warp), not
    // once per pass: 8 expf per lane at 256 experts, not 64 at top-8.
    __shared__ float warp_keys[kTopkThreads / 32][kMoeMaxExperts];
    float* mine_keys = warp_keys[threadIdx.x / 32];
    for (int e = lane; e < experts; e += 32) mine_keys[e] = __fadd_rn(sigmoid_score(lg[e]), bias[e]);
    __syncwarp();
    keys = mine_keys;
  }
  unsigned taken = 0;  // bit c: expert lane + 32 c is picked (experts <= 1,024)
  float top = 0.0f, sum = 0.0f, mine = 0.0f;
  int my_id = 0;
  for (int j = 0; j < k; ++j) {
    Best b{-INFINITY, INT_MAX};
    for (int c = 0, e = lane; e < experts; ++c, e += 32)
      if (!((taken >> c) & 1u)) b = better(b, Best{keys[e], e});
#pragma unroll
    for (int o = 16; o > 0; o /= 2) b = better(b, Best{__shfl_xor_sync(kFull, b.v, o), __shfl_xor_sync(kFull, b.id, o)});
    if (b.id == INT_MAX) {  // every logit left is NaN: the lowest expert not yet picked
      int low = INT_MAX;
      for (int c = 0, e = lane; e < experts; ++c, e += 32)
        if (!((taken >> c) & 1u)) {
          low = e;
          break;
        }
#pragma unroll
      for (int o = 16; o > 0; o /= 2) low = min(low, __shfl_xor_sync(kFull, low, o));
      b.id = low;
    }
    if ((b.id & 31) == lane) taken |= 1u << (b.id >> 5);
    const float v = lg[b.id];
    if (j == 0) top = v;
    const float x = SIGMOID ? sigmoid_score(v) : expf(v - top);
    sum += x;  // every lane, in rank order: moe_top_k's sum
    if (lane == j) mine = x, my_id = b.id;
  }
  if (lane < k) {
    ids[row * k + lane] = my_id;
    // The clamp as std::max(sum, 1e-12f) on the host: a NaN sum stays NaN (fmaxf would drop it).
    weights[row * k + lane] = mine / (SIGMOID && sum < 1e-12f ? 1e-12f : sum);
  }
}

/// The exclusive prefix sum of one value per thread over the permute's CTA (32 warps), and the
/// total. `scratch` must be free on entry (a barrier after its last use); it is read on exit.
__device__ __forceinline__ int block_exclusive_scan(int v, int (&scratch)[33], int& total) {
  const int lane = static_cast<int>(threadIdx.x) % 32, warp = static_cast<int>(threadIdx.x) / 32;
  int incl = v;
#pragma unroll
  for (int o = 1; o < 32; o *= 2) {
    const int n = __shfl_up_sync(kFull, incl, o);
    if (lane >= o) incl += n;
  }
  if (lane == 31) scratch[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    const int w = scratch[lane];
    int wi = w;
#pragma unroll
    for (int o = 1; o < 32; o *= 2) {
      const int n = __shfl_up_sync(kFull, wi, o);
      if (lane >= o) wi += n;
    }
    scratch[lane] = wi - w;
    if (lane == 31) scratch[32] = wi;
  }
  __syncthreads();
  total = scratch[32];
  return scratch[warp] + incl - v;
}

__global__ void __launch_bounds__(kPermuteThreads) moe_permute_kernel(const std::int32_t* __restrict__ ids, int assignments, int experts,
                                                                      int k, int slots, std::int32_t* __restrict__ offsets,
                                                                      std::int32_t* __restrict__ position, std::int32_t* __restrict__ order,
                                                                      std::int32_t* __restrict__ source_rows, std::int32_t* __restrict__ active) {
  pdl_begin();  // exec/cuda/pdl.cuh: first, before any memory access
  static_assert(kPermuteThreads == 32 * 32, "block_exclusive_scan: 32 warps, one expert per thread");
  __shared__ int next[kMoeMaxExperts];                        // counts, then each expert's next free row
  __shared__ unsigned char warp_count[32][kMoeMaxExperts];    // this chunk: assignments of expert e in warp w (<= 32)
  __shared__ int warp_scan[33];
  const int t = static_cast<int>(threadIdx.x), lane = t % 32, warp = t / 32;
  for (int e = t; e < experts; e += kPermuteThreads) next[e] = 0;
  for (int i = t; i < 32 * kMoeMaxExperts; i += kPermuteThreads) (&warp_count[0][0])[i] = 0;
  __syncthreads();
  for (int a = t; a < assignments; a += kPermuteThreads) atomicAdd(&next[ids[a]], 1);  // integer counts: order-free
  __syncthreads();
  // Exclusive scan of the counts, one expert per thread (experts <= 1,024 = the block).
  const int count = t < experts ? next[t] : 0;
  int total = 0;
  const int first = block_exclusive_scan(count, warp_scan, total);
  if (t < experts) {
    offsets[t] = first;
    next[t] = first;
  }
  if (t == 0) offsets[experts] = assignments;
  __syncthreads();
  // The experts with rows, in id order, to active[0 .. used), then -1 to `slots` (moe_active_slots:
  // min(experts, assignments) >= used): a second scan, of the flags count > 0.
  int used = 0;
  const int slot = block_exclusive_scan(count > 0 ? 1 : 0, warp_scan, used);
  if (count > 0) active[slot] = t;
  for (int j = used + t; j < slots; j += kPermuteThreads) active[j] = -1;
  __syncthreads();
  // Chunks of 1,024 assignments in order; within a chunk, by warp then lane: increasing a.
  for (int base = 0; base < assignments; base += kPermuteThreads) {
    const int a = base + t;
    const int e = a < assignments ? ids[a] : -1;
    const unsigned same = __match_any_sync(kFull, e);
    const int rank = __popc(same & ((1u << lane) - 1u));  // earlier lanes of this warp with the same expert
    const bool leader = rank == 0;
    if (leader && e >= 0) warp_count[warp][e] = static_cast<unsigned char>(__popc(same));
    __syncthreads();
    if (e >= 0) {
      int before = 0;
      for (int w = 0; w < warp; ++w) before += warp_count[w][e];
      const int p = next[e] + before + rank;
      position[a] = p;
      order[p] = a;
      source_rows[p] = a / k;
    }
    __syncthreads();
    for (int x = t; x < experts; x += kPermuteThreads) {
      int s = 0;
      for (int w = 0; w < 32; ++w) s += warp_count[w][x];
      next[x] += s;
    }
    __syncthreads();
    if (leader && e >= 0) warp_count[warp][e] = 0;
    __syncthreads();
  }
}

template <int V>
__global__ void __launch_bounds__(kThreads) moe_finalize_kernel(const std::uint16_t* __restrict__ rows, const std::int32_t* __restrict__ position,
                                                                const float* __restrict__ weights, I width, int k, I chunks,
                                                                std::uint16_t* __restrict__ y) {
  pdl_begin();  // exec/cuda/pdl.cuh: first, before any memory access
  const I per_row = width / V;
  for (I c = static_cast<I>(blockIdx.x) * kThreads + threadIdx.x; c < chunks; c += static_cast<I>(gridDim.x) * kThreads) {
    const I t = c / per_row, i = (c % per_row) * V;
    float acc[V];
#pragma unroll
    for (int u = 0; u < V; ++u) acc[u] = 0.0f;
    for (int j = 0; j < k; ++j) {
      const I a = t * k + j;
      const float w = weights[a];
      float v[V];
      load_bf16<V>(rows + static_cast<I>(position[a]) * width + i, v);
#pragma unroll
      for (int u = 0; u < V; ++u) acc[u] = __fadd_rn(acc[u], __fmul_rn(w, v[u]));
    }
    store_bf16<V>(y + t * width + i, acc);
  }
}

}  // namespace

void moe_topk_launch(const float* logits, const float* bias, std::int64_t rows, int experts, int k, std::int32_t* expert_ids, float* weights,
                     void* stream) {
  if (rows == 0) return;
  constexpr I per_cta = kTopkThreads / 32;
  const auto grid = static_cast<unsigned>((rows + per_cta - 1) / per_cta);
  if (bias)
    launch_kernel(moe_topk_kernel<true>, grid, kTopkThreads, 0, as_stream(stream), logits, bias, rows, experts, k, expert_ids, weights);
  else
    launch_kernel(moe_topk_kernel<false>, grid, kTopkThreads, 0, as_stream(stream), logits, nullptr, rows, experts, k, expert_ids, weights);
  RACKSIM_CUDA_CHECK(cudaGetLastError());
}

void moe_permute_launch(const std::int32_t* expert_ids, std::int64_t assignments, int experts, int k, std::int32_t* offsets,
                        std::int32_t* position, std::int32_t* order, std::int32_t* source_rows, std::int32_t* active, void* stream) {
  const auto slots = static_cast<int>(moe_active_slots(experts, assignments));
  launch_kernel(moe_permute_kernel, 1, kPermuteThreads, 0, as_stream(stream), expert_ids, static_cast<int>(assignments), experts, k, slots, offsets,
                position, order, source_rows, active);
  RACKSIM_CUDA_CHECK(cudaGetLastError());
}

void moe_finalize_launch(const std::uint16_t* expert_rows, const std::int32_t* position, const float* weights, std::int64_t rows, int k,
                         std::int64_t width, std::uint16_t* y, void* stream) {
  if (rows == 0) return;
  const cudaStream_t s = as_stream(stream);
  auto grid = [](I items) { return static_cast<unsigned>(std::clamp<I>((items + kThreads - 1) / kThreads, 1, kMaxGrid)); };
  if (width % 8 == 0 && aligned16(expert_rows) && aligned16(y))
    launch_kernel(moe_finalize_kernel<8>, grid(rows * width / 8), kThreads, 0, s, expert_rows, position, weights, width, k, rows * width / 8, y);
  else
    launch_kernel(moe_finalize_kernel<1>, grid(rows * width), kThreads, 0, s, expert_rows, position, weights, width, k, rows * width, y);
  RACKSIM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace racksim::exec::cuda
