#pragma once
// Device helpers shared by the step-op kernels: BF16 <-> FP32, eight BF16 values in one 16-byte
// word, FP8 E4M3 to BF16, and block-wide reductions. BF16 tensors are uint16 bit patterns.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace racksim::exec::cuda {

/// The FP32 value of BF16 bits (exact: BF16 is FP32's top half).
__device__ __forceinline__ float bf16_to_float(std::uint16_t b) { return __uint_as_float(static_cast<unsigned>(b) << 16); }

/// x rounded to the nearest BF16, ties to even (cvt.rn.bf16.f32; same as act::bf16_bits for finite x).
__device__ __forceinline__ std::uint16_t float_to_bf16(float x) { return __bfloat16_as_ushort(__float2bfloat16_rn(x)); }

/// SwiGLU's silu(g) x u in cpu_ops' order: the one formula of swiglu_kernel and of the fused GEMM's
/// SwiGLU reduce (fp4_mma_reduce_swiglu), whose bits must agree.
__device__ __forceinline__ float silu_times(float g, float u) { return g / (1.0f + expf(-g)) * u; }

/// The eight BF16 values of a 16-byte word; element 0 at the lowest address (little-endian).
__device__ __forceinline__ void unpack_bf16x8(const uint4& w, float (&f)[8]) {
  const unsigned u[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(u[i] << 16);
    f[2 * i + 1] = __uint_as_float(u[i] & 0xFFFF0000u);
  }
}

/// Eight values rounded to BF16 and packed into a 16-byte word (inverse layout of unpack_bf16x8).
__device__ __forceinline__ uint4 pack_bf16x8(const float (&f)[8]) {
  unsigned u[4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
    u[i] = static_cast<unsigned>(float_to_bf16(f[2 * i])) | (static_cast<unsigned>(float_to_bf16(f[2 * i + 1])) << 16);
  return make_uint4(u[0], u[1], u[2], u[3]);
}

/// Eight E4M3 codes (8 bytes, code 0 lowest) as eight BF16 values of the codes (no scale): the
/// hardware FP8 -> FP16 convert (sm_89+), then FP16 -> FP32 -> BF16, all exact because every
/// E4M3 value (3 mantissa bits, 2^-9..448) is an FP16 and a BF16 value.
__device__ __forceinline__ uint4 e4m3x8_to_bf16x8(const uint2& codes) {
  const unsigned c[2] = {codes.x, codes.y};
  unsigned u[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const auto pair = static_cast<__nv_fp8x2_storage_t>((c[i / 2] >> (16 * (i % 2))) & 0xFFFFu);
    const float2 f = __half22float2(__half2(__nv_cvt_fp8x2_to_halfraw2(pair, __NV_E4M3)));
    u[i] = static_cast<unsigned>(float_to_bf16(f.x)) | (static_cast<unsigned>(float_to_bf16(f.y)) << 16);
  }
  return make_uint4(u[0], u[1], u[2], u[3]);
}

/// Loads V consecutive BF16 values as floats (V = 8: one 16-byte load; the caller checked alignment).
template <int V>
__device__ __forceinline__ void load_bf16(const std::uint16_t* p, float (&f)[V]) {
  if constexpr (V == 8) {
    unpack_bf16x8(*reinterpret_cast<const uint4*>(p), f);
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i) f[i] = bf16_to_float(p[i]);
  }
}

/// Stores V floats rounded to BF16.
template <int V>
__device__ __forceinline__ void store_bf16(std::uint16_t* p, const float (&f)[V]) {
  if constexpr (V == 8) {
    *reinterpret_cast<uint4*>(p) = pack_bf16x8(f);
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i) p[i] = float_to_bf16(f[i]);
  }
}

/// 16-byte alignment of a device pointer (the vectorized paths need it).
__host__ __device__ __forceinline__ bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }

/// Sum of `v` over the block, returned to every thread. blockDim.x must be a multiple of 32 and
/// at most 1024; `scratch` holds 32 floats; every thread must call it (it synchronizes).
__device__ __forceinline__ float block_sum(float v, float* scratch) {
#pragma unroll
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
  const int lane = static_cast<int>(threadIdx.x) % 32, warp = static_cast<int>(threadIdx.x) / 32;
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  const int warps = static_cast<int>(blockDim.x) / 32;
  v = lane < warps ? scratch[lane] : 0.0f;
#pragma unroll
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
  return v;
}

}  // namespace racksim::exec::cuda
