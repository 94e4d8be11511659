// The elementwise step ops: RMSNorm (optionally fused with the residual add), residual add,
// QK-norm (per head, Qwen3; over the layer, MiniMax-M2), rotate-half RoPE (whole or partial), SwiGLU, embedding gather and greedy argmax. BF16 in and out with FP32 math,
// the same equations as cpu_ops.cpp. Memory-bound: each kernel reads and writes every element
// once, 16 bytes per access where the width and the pointers allow (`V` = 8 BF16 values), else
// 2 bytes. Arguments were checked by cuda_ops (backend_registry.cpp) before these launch.

#include "ops_elementwise.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "racksim/common/error.hpp"

#include "bf16_vec.cuh"
#include "cuda_check.hpp"
#include "pdl.cuh"

namespace racksim::exec::cuda {

namespace {

using I = long long;

constexpr int kThreads = 256;             // threads per CTA of every kernel here
constexpr I kMaxGrid = I{1} << 20;        // grid-stride kernels cap their grid here (below 2^31 - 1)

unsigned grid_for(I work_items) { return static_cast<unsigned>(std::clamp<I>((work_items + kThreads - 1) / kThreads, 1, kMaxGrid)); }

cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

// ---- RMSNorm: one CTA per row. Pass 1 sums squares (and, fused, writes bf16(hidden + branch));
// pass 2 re-reads the row (this thread's own elements, so no barrier is needed between its
// writes and reads) and writes y = (x * inv) * weight, the CPU reference's order.
template <int V, bool kFused>
__global__ void __launch_bounds__(kThreads) rmsnorm_kernel(std::uint16_t* __restrict__ x, const std::uint16_t* __restrict__ branch,
                                                           const std::uint16_t* __restrict__ weight, int width, float eps,
                                                           std::uint16_t* __restrict__ y) {
  pdl_begin();  // exec/cuda/pdl.cuh: first, before any memory access
  __shared__ float scratch[32];
  const I row = static_cast<I>(blockIdx.x) * width;
  float ss = 0.0f;
  for (int c = static_cast<int>(threadIdx.x) * V; c < width; c += kThreads * V) {
    float v[V];
    load_bf16<V>(x + row + c, v);
    if constexpr (kFused) {
      float b[V];
      load_bf16<V>(branch + row + c, b);
#pragma unroll
      for (int i = 0; i < V; ++i) v[i] = bf16_to_float(float_to_bf16(v[i] + b[i]));  // the stored hidden value
      store_bf16<V>(x + row + c, v);
    }
#pragma unroll
    for (int i = 0; i < V; ++i) ss += v[i] * v[i];
  }
  ss = block_sum(ss, scratch);
  // 1 / sqrt as cpu_ops does (IEEE sqrt and division: nvcc's default -prec-sqrt/-prec-div).
  const float inv = 1.0f / sqrtf(ss / static_cast<float>(width) + eps);
  for (int c = static_cast<int>(threadIdx.x) * V; c < width; c += kThreads * V) {
    float v[V], w[V];
    load_bf16<V>(x + row + c, v);
    load_bf16<V>(weight + c, w);
#pragma unroll
    for (int i = 0; i < V; ++i) v[i] = v[i] * inv * w[i];
    store_bf16<V>(y + row + c, v);
  }
}

// ---- Residual add: grid-stride over chunks of V values.
template <int V>
__global__ void __launch_bounds__(kThreads) residual_add_kernel(std::uint16_t* __restrict__ hidden, const std::uint16_t* __restrict__ branch,
                                                                I chunks) {
  pdl_begin();  // exec/cuda/pdl.cuh: first, before any memory access
  for (I i = static_cast<I>(blockIdx.x) * kThreads + threadIdx.x; i < chunks; i += static_cast<I>(gridDim.x) * kThreads) {
    float h[V], b[V];
    load_bf16<V>(hidden + i * V, h);
    load_bf16<V>(branch + i * V, b);
#pragma unroll
    for (int k = 0; k < V; ++k) h[k] += b[k];
    store_bf16<V>(hidden + i * V, h);
  }
}

// ---- RoPE: thread (i, ty) of CTA (x, y) owns pair index i of heads y x blockDim.y + ty + j x
// gridDim.y x blockDim.y (q and k heads alike) of rows x, x + gridDim.x, ...; its frequency comes
// from the host (RopeFreqs: std::pow in float64, cpu_ops' own formula and library, so the same
// bits; the device's float64 pow spilled registers of its own) and per row it computes one angle, reduced to [-pi, pi] in float64 before the FP32 sincosf, so the FP32
// angle carries no error proportional to the position. Heads spread over threads and CTAs: a
// decode step's few rows still fill the GPU (one thread looping over a row's 72 heads took 18 us
// for Llama-2-70B at batch 1 on an H200, 2026-11-30).
// Partial RoPE (rotary_dim < head_dim): the pairs are (i, i + rotary_dim / 2) of each head's first
// rotary_dim values, frequencies theta^(-2i/rotary_dim); the rest of the head is not touched.
/// theta^(-2i / rotary_dim) for i < rotary_dim / 2 (<= 256 threads along x: 2 KiB of the 4 KiB a
/// kernel's parameters may take), passed by value so a captured graph holds them.
struct RopeFreqs {
  double f[kThreads];
};

__global__ void __launch_bounds__(kThreads) rope_kernel(std::uint16_t* __restrict__ qkv, I rows, I row_width, int rotated_heads,
                                                        int head_dim, int rotary_dim, const std::int32_t* __restrict__ positions,
                                                        const __grid_constant__ RopeFreqs freqs) {
  pdl_begin();  // exec/cuda/pdl.cuh: first, before any memory access
  const int half = rotary_dim / 2;
  const int i = static_cast<int>(threadIdx.x);
  const int h0 = static_cast<int>(blockIdx.y * blockDim.y + threadIdx.y), h_step = static_cast<int>(gridDim.y * blockDim.y);
  if (h0 >= rotated_heads) return;
  const double freq = freqs.f[i];
  constexpr double kTwoPi = 6.283185307179586;  // 2 pi rounded to float64
  for (I r = blockIdx.x; r < rows; r += gridDim.x) {
    const double angle = static_cast<double>(positions[r]) * freq;
    const double reduced = angle - kTwoPi * rint(angle / kTwoPi);
    float s, c;
    sincosf(static_cast<float>(reduced), &s, &c);
    for (int h = h0; h < rotated_heads; h += h_step) {  // one angle serves the thread's heads
      std::uint16_t* xh = qkv + r * row_width + static_cast<I>(h) * head_dim;
      const float a = bf16_to_float(xh[i]), b = bf16_to_float(xh[i + half]);
      xh[i] = float_to_bf16(a * c - b * s);
      xh[i + half] = float_to_bf16(b * c + a * s);
    }
  }
}

// ---- SwiGLU: chunk k of V outputs is row k / (ffn / V), columns (k % (ffn / V)) x V.
template <int V>
__global__ void __launch_bounds__(kThreads) swiglu_kernel(const std::uint16_t* __restrict__ gate_up, I ffn, I chunks,
                                                          std::uint16_t* __restrict__ y) {
  pdl_begin();  // exec/cuda/pdl.cuh: first, before any memory access
  const I per_row = ffn / V;
  for (I k = static_cast<I>(blockIdx.x) * kThreads + threadIdx.x; k < chunks; k += static_cast<I>(gridDim.x) * kThreads) {
    const I r = k / per_row, c = (k % per_row) * V;
    float g[V], u[V];
    load_bf16<V>(gate_up + r * 2 * ffn + c, g);
    load_bf16<V>(gate_up + r * 2 * ffn + ffn + c, u);
#pragma unroll
    for (int i = 0; i < V; ++i) g[i] = silu_times(g[i], u[i]);
    store_bf16<V>(y + r * ffn + c, g);
  }
}

// ---- Per-head RMSNorm (Qwen3's QK-norm), in place: one warp per (row, head); the first q_heads
// heads of a row take q_weight, the next kv_heads k_weight. cpu_ops rmsnorm's formula per head:
// inv = 1 / sqrt(sum x^2 / n + eps), y = (x * inv) * w (the sum in another order: lanes, then a tree).
__global__ void __launch_bounds__(kThreads) head_rmsnorm_kernel(std::uint16_t* __restrict__ qkv, I rows, I row_width, int q_heads,
                                                                int heads, int head_dim, const std::uint16_t* __restrict__ q_weight,
                                                                const std::uint16_t* __restrict__ k_weight, float eps) {
  pdl_begin();  // exec/cuda/pdl.cuh: first, before any memory access
  const I item = static_cast<I>(blockIdx.x) * (kThreads / 32) + static_cast<I>(threadIdx.x) / 32;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  if (item >= rows * heads) return;  // the whole warp
  const I r = item / heads;
  const int h = static_cast<int>(item % heads);
  std::uint16_t* x = qkv + r * row_width + static_cast<I>(h) * head_dim;
  const std::uint16_t* w = h < q_heads ? q_weight : k_weight;
  float ss = 0.0f;
  for (int i = lane; i < head_dim; i += 32) {
    const float v = bf16_to_float(x[i]);
    ss += v * v;
  }
#pragma unroll
  for (int o = 16; o > 0; o /= 2) ss += __shfl_xor_sync(0xFFFFFFFFu, ss, o);
  const float inv = 1.0f / sqrtf(ss / static_cast<float>(head_dim) + eps);
  for (int i = lane; i < head_dim; i += 32) x[i] = float_to_bf16(bf16_to_float(x[i]) * inv * bf16_to_float(w[i]));
}

// ---- MiniMax-M2's QK-norm over a whole layer: one CTA per row (grid-stride over rows). SUMS_ONLY:
// writes each row's sums of squares of its q values and of its k values (cpu_ops qk_sum_squares),
// for a TP all-reduce. Else normalises the row in place (cpu_ops qk_layer_norm): with the sums
// given (the all-reduced ones) or, without them, the row's own; inv = 1 / sqrt(sum / count + eps),
// y = (x * inv) * w. The sums go lanes, then a tree (another order than the CPU's).
template <bool SUMS_ONLY>
__global__ void __launch_bounds__(kThreads) qk_layer_kernel(std::uint16_t* __restrict__ qkv, I rows, I row_width, int q_width, int k_width,
                                                            const float* __restrict__ sums_in, float* __restrict__ sums_out, float q_count,
                                                            float k_count, const std::uint16_t* __restrict__ q_weight,
                                                            const std::uint16_t* __restrict__ k_weight, float eps) {
  pdl_begin();  // exec/cuda/pdl.cuh: first, before any memory access
  __shared__ float scratch_q[32], scratch_k[32];
  const int t = static_cast<int>(threadIdx.x);
  for (I r = blockIdx.x; r < rows; r += gridDim.x) {
    std::uint16_t* x = qkv + r * row_width;
    float q = 0.0f, k = 0.0f;
    if (SUMS_ONLY || !sums_in) {  // uniform over the CTA: every thread reaches block_sum's barrier
      for (int i = t; i < q_width; i += kThreads) {
        const float v = bf16_to_float(x[i]);
        q += v * v;
      }
      for (int i = t; i < k_width; i += kThreads) {
        const float v = bf16_to_float(x[q_width + i]);
        k += v * v;
      }
      q = block_sum(q, scratch_q);
      k = block_sum(k, scratch_k);
    } else {
      q = sums_in[2 * r];
      k = sums_in[2 * r + 1];
    }
    if constexpr (SUMS_ONLY) {
      if (t == 0) {
        sums_out[2 * r] = q;
        sums_out[2 * r + 1] = k;
      }
    } else {
      const float q_inv = 1.0f / sqrtf(q / q_count + eps), k_inv = 1.0f / sqrtf(k / k_count + eps);
      for (int i = t; i < q_width; i += kThreads) x[i] = float_to_bf16(bf16_to_float(x[i]) * q_inv * bf16_to_float(q_weight[i]));
      for (int i = t; i < k_width; i += kThreads)
        x[q_width + i] = float_to_bf16(bf16_to_float(x[q_width + i]) * k_inv * bf16_to_float(k_weight[i]));
    }
    __syncthreads();  // the next row's block_sum rewrites the scratch
  }
}

// ---- Embedding: chunk k of V values is row k / (width / V); an id outside the table writes zeros.
template <int V>
__global__ void __launch_bounds__(kThreads) embedding_kernel(const std::uint16_t* __restrict__ table, I vocab, I width,
                                                             const std::int32_t* __restrict__ tokens, I chunks,
                                                             std::uint16_t* __restrict__ y) {
  pdl_begin();  // exec/cuda/pdl.cuh: first, before any memory access
  const I per_row = width / V;
  for (I k = static_cast<I>(blockIdx.x) * kThreads + threadIdx.x; k < chunks; k += static_cast<I>(gridDim.x) * kThreads) {
    const I r = k / per_row, c = (k % per_row) * V;
    const I id = tokens[r];
    std::uint16_t* dst = y + r * width + c;
    if constexpr (V == 8) {
      *reinterpret_cast<uint4*>(dst) = (id >= 0 && id < vocab) ? *reinterpret_cast<const uint4*>(table + id * width + c) : make_uint4(0, 0, 0, 0);
    } else {
      *dst = (id >= 0 && id < vocab) ? table[id * width + c] : std::uint16_t{0};
    }
  }
}

// ---- Argmax: one CTA per row. (value, id) pairs; b beats a if larger, or equal with a lower id
// (the CPU's lowest-id rule). A thread's ids increase, so its own scan needs "larger" only after
// the first candidate; the -inf start with id INT32_MAX lets an all -inf row return id 0.
struct Best {
  float v;
  int id;
};

__device__ __forceinline__ Best better(Best a, Best b) { return (b.v > a.v || (b.v == a.v && b.id < a.id)) ? b : a; }

__global__ void __launch_bounds__(kThreads) argmax_kernel(const float* __restrict__ logits, int vocab, std::int32_t* __restrict__ tokens) {
  pdl_begin();  // exec/cuda/pdl.cuh: first, before any memory access
  __shared__ Best warp_best[kThreads / 32];
  const float* row = logits + static_cast<I>(blockIdx.x) * vocab;
  Best best{-INFINITY, INT32_MAX};
  for (int j = static_cast<int>(threadIdx.x); j < vocab; j += kThreads) best = better(best, Best{row[j], j});
#pragma unroll
  for (int o = 16; o > 0; o /= 2) best = better(best, Best{__shfl_xor_sync(0xFFFFFFFFu, best.v, o), __shfl_xor_sync(0xFFFFFFFFu, best.id, o)});
  const int lane = static_cast<int>(threadIdx.x) % 32, warp = static_cast<int>(threadIdx.x) / 32;
  if (lane == 0) warp_best[warp] = best;
  __syncthreads();
  if (threadIdx.x == 0) {
    Best b = warp_best[0];
    for (int w = 1; w < kThreads / 32; ++w) b = better(b, warp_best[w]);
    tokens[blockIdx.x] = b.id == INT32_MAX ? 0 : b.id;  // every logit NaN: id 0
  }
}

}  // namespace

void rmsnorm_launch(std::uint16_t* x, const std::uint16_t* branch, const std::uint16_t* weight, std::int64_t rows, std::int64_t width,
                    float eps, std::uint16_t* y, void* stream) {
  if (rows == 0) return;
  const bool vec = width % 8 == 0 && aligned16(x) && aligned16(weight) && aligned16(y) && (!branch || aligned16(branch));
  const auto grid = static_cast<unsigned>(rows);
  const int w = static_cast<int>(width);
  const cudaStream_t s = as_stream(stream);
  if (branch) {
    if (vec)
      launch_kernel(rmsnorm_kernel<8, true>, grid, kThreads, 0, s, x, branch, weight, w, eps, y);
    else
      launch_kernel(rmsnorm_kernel<1, true>, grid, kThreads, 0, s, x, branch, weight, w, eps, y);
  } else {
    if (vec)
      launch_kernel(rmsnorm_kernel<8, false>, grid, kThreads, 0, s, x, nullptr, weight, w, eps, y);
    else
      launch_kernel(rmsnorm_kernel<1, false>, grid, kThreads, 0, s, x, nullptr, weight, w, eps, y);
  }
  RACKSIM_CUDA_CHECK(cudaGetLastError());
}

void residual_add_launch(std::uint16_t* hidden, const std::uint16_t* branch, std::int64_t count, void* stream) {
  if (count == 0) return;
  const cudaStream_t s = as_stream(stream);
  if (count % 8 == 0 && aligned16(hidden) && aligned16(branch))
    launch_kernel(residual_add_kernel<8>, grid_for(count / 8), kThreads, 0, s, hidden, branch, count / 8);
  else
    launch_kernel(residual_add_kernel<1>, grid_for(count), kThreads, 0, s, hidden, branch, count);
  RACKSIM_CUDA_CHECK(cudaGetLastError());
}

void rope_rotate_half_launch(std::uint16_t* qkv, std::int64_t rows, std::int64_t row_width, std::int64_t rotated_heads,
                             std::int64_t head_dim, std::int64_t rotary_dim, const std::int32_t* positions, double theta, void* stream) {
  if (rows == 0 || rotated_heads == 0) return;
  // rotary_dim / 2 threads along x (<= 256, checked), as many heads along y as fill 256 threads;
  // grid: rows (up to 65,535, then each CTA strides) x head groups, as many groups as bring the
  // grid to about 4 CTAs per SM of an H200 (528): a decode step's few rows spread every head over
  // its own thread; a prefill's thousand rows keep one group, each thread looping over its heads
  // with the one angle (each thread a sincosf per row; the frequencies come from the host).
  const auto half = static_cast<unsigned>(rotary_dim / 2);
  const unsigned heads_per_cta = std::max(1u, kThreads / half);
  const I groups = (rotated_heads + heads_per_cta - 1) / heads_per_cta;
  const dim3 grid(static_cast<unsigned>(std::clamp<I>(rows, 1, 65535)),
                  static_cast<unsigned>(std::clamp<I>((528 + rows - 1) / rows, 1, groups)));
  // The frequencies as cpu_ops computes them (std::pow in float64), once per thread for each
  // (theta, rotary_dim): a step's layers all ask for the same.
  RACKSIM_ASSERT(half <= static_cast<unsigned>(kThreads), "rope: rotary_dim / 2 above the threads of a CTA (check_rope caps head_dim at 512)");
  thread_local double cached_theta = 0.0;
  thread_local std::int64_t cached_dim = 0;
  thread_local RopeFreqs freqs{};
  if (cached_dim != rotary_dim || cached_theta != theta) {
    for (unsigned i = 0; i < half; ++i) freqs.f[i] = std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(rotary_dim));
    cached_theta = theta, cached_dim = rotary_dim;
  }
  launch_kernel(rope_kernel, grid, dim3(half, heads_per_cta), 0, as_stream(stream), qkv, rows, row_width, static_cast<int>(rotated_heads),
                static_cast<int>(head_dim), static_cast<int>(rotary_dim), positions, freqs);
  RACKSIM_CUDA_CHECK(cudaGetLastError());
}

void swiglu_launch(const std::uint16_t* gate_up, std::int64_t rows, std::int64_t ffn, std::uint16_t* y, void* stream) {
  if (rows == 0) return;
  const cudaStream_t s = as_stream(stream);
  if (ffn % 8 == 0 && aligned16(gate_up) && aligned16(y))
    launch_kernel(swiglu_kernel<8>, grid_for(rows * ffn / 8), kThreads, 0, s, gate_up, ffn, rows * ffn / 8, y);
  else
    launch_kernel(swiglu_kernel<1>, grid_for(rows * ffn), kThreads, 0, s, gate_up, ffn, rows * ffn, y);
  RACKSIM_CUDA_CHECK(cudaGetLastError());
}

void head_rmsnorm_launch(std::uint16_t* qkv, std::int64_t rows, std::int64_t row_width, std::int64_t q_heads, std::int64_t kv_heads,
                         std::int64_t head_dim, const std::uint16_t* q_weight, const std::uint16_t* k_weight, float eps, void* stream) {
  const I items = rows * (q_heads + kv_heads);
  if (items == 0) return;
  constexpr I per_cta = kThreads / 32;
  launch_kernel(head_rmsnorm_kernel, static_cast<unsigned>((items + per_cta - 1) / per_cta), kThreads, 0, as_stream(stream), qkv, rows, row_width,
                static_cast<int>(q_heads), static_cast<int>(q_heads + kv_heads), static_cast<int>(head_dim), q_weight, k_weight, eps);
  RACKSIM_CUDA_CHECK(cudaGetLastError());
}

void qk_sum_squares_launch(const std::uint16_t* qkv, std::int64_t rows, std::int64_t row_width, std::int64_t q_width, std::int64_t k_width,
                           float* sums, void* stream) {
  if (rows == 0) return;
  launch_kernel(qk_layer_kernel<true>, static_cast<unsigned>(std::min<I>(rows, kMaxGrid)), kThreads, 0, as_stream(stream),
                const_cast<std::uint16_t*>(qkv), rows, row_width, static_cast<int>(q_width), static_cast<int>(k_width), nullptr, sums, 0.0f, 0.0f,
                nullptr, nullptr, 0.0f);  // reads qkv only
  RACKSIM_CUDA_CHECK(cudaGetLastError());
}

void qk_layer_norm_launch(std::uint16_t* qkv, std::int64_t rows, std::int64_t row_width, std::int64_t q_width, std::int64_t k_width,
                          const float* sums, std::int64_t q_count, std::int64_t k_count, const std::uint16_t* q_weight,
                          const std::uint16_t* k_weight, float eps, void* stream) {
  if (rows == 0) return;
  launch_kernel(qk_layer_kernel<false>, static_cast<unsigned>(std::min<I>(rows, kMaxGrid)), kThreads, 0, as_stream(stream), qkv, rows, row_width,
                static_cast<int>(q_width), static_cast<int>(k_width), sums, nullptr, static_cast<float>(q_count), static_cast<float>(k_count),
                q_weight, k_weight, eps);
  RACKSIM_CUDA_CHECK(cudaGetLastError());
}

void embedding_launch(const std::uint16_t* table, std::int64_t vocab, std::int64_t width, const std::int32_t* tokens, std::int64_t rows,
                      std::uint16_t* y, void* stream) {
  if (rows == 0) return;
  const cudaStream_t s = as_stream(stream);
  if (width % 8 == 0 && aligned16(table) && aligned16(y))
    launch_kernel(embedding_kernel<8>, grid_for(rows * width / 8), kThreads, 0, s, table, vocab, width, tokens, rows * width / 8, y);
  else
    launch_kernel(embedding_kernel<1>, grid_for(rows * width), kThreads, 0, s, table, vocab, width, tokens, rows * width, y);
  RACKSIM_CUDA_CHECK(cudaGetLastError());
}

void argmax_launch(const float* logits, std::int64_t rows, std::int64_t vocab, std::int32_t* tokens, void* stream) {
  if (rows == 0) return;
  launch_kernel(argmax_kernel, static_cast<unsigned>(rows), kThreads, 0, as_stream(stream), logits, static_cast<int>(vocab), tokens);
  RACKSIM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace racksim::exec::cuda
