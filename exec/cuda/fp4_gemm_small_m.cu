// Hopper FP4-weight small-M GEMM: sm_90 has no FP4 tensor cores and no FP4 convert instruction,
// so the E2M1 codes are turned into FP16 with the two-mask-and-shift trick (fp4.hpp, after vLLM
// marlin) and the 2^14 bias correction rides on the block scale. First version: FP32 FMAs on
// CUDA cores, one warp per output column n, x staged through shared memory in K chunks of 512
// shared by the CTA's 8 warps. Tensor-core MMA for M > 1 is the next step (issue 5).

#include "fp4_gemm_small_m.hpp"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <string>

#include "cuda_check.hpp"
#include "racksim/exec/fp4.hpp"

namespace racksim::exec::cuda {

namespace {

constexpr int kWarps = 8;                      // output columns per CTA
constexpr int kChunk = 32 * fp4::kNvfp4Block;  // K elements per chunk: one 16-element block per lane

__device__ inline float to_float(float v) { return v; }
__device__ inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ inline void store(float* p, float v) { *p = v; }
__device__ inline void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

/// In / Out: float, or __nv_bfloat16 (the step executor's activations: x converted to FP32 as it
/// is staged, the FP32 sum rounded once to BF16).
template <class In, class Out>
__global__ void __launch_bounds__(kWarps * 32)
    fp4_gemm_small_m_kernel(const In* __restrict__ x, int m, int n, int k, const uint2* __restrict__ packed,
                            const std::uint8_t* __restrict__ scales, float tensor_scale, Out* __restrict__ y) {
  __shared__ float xs[kSmallMMax][kChunk];
  const int lane = static_cast<int>(threadIdx.x) % 32, warp = static_cast<int>(threadIdx.x) / 32;
  const int col = static_cast<int>(blockIdx.x) * kWarps + warp;
  const int kblocks = k / fp4::kNvfp4Block;
  // Folds the bit trick's 2^-14 back in along with the tensor scale.
  const float scale_factor = tensor_scale * fp4::kFp16BitTrickScale;
  float acc[kSmallMMax];
#pragma unroll
  for (int i = 0; i < kSmallMMax; ++i) acc[i] = 0.0f;

  for (int k0 = 0; k0 < k; k0 += kChunk) {
    const int len = min(kChunk, k - k0);
    __syncthreads();
    for (int i = static_cast<int>(threadIdx.x); i < m * kChunk; i += kWarps * 32) {
      const int r = i / kChunk, c = i % kChunk;
      xs[r][c] = c < len ? to_float(x[static_cast<long long>(r) * k + k0 + c]) : 0.0f;
    }
    __syncthreads();
    const int kb = k0 / fp4::kNvfp4Block + lane;
    if (col >= n || kb >= kblocks) continue;
    // 16 codes (8 bytes) and one UE4M3 scale per lane.
    const uint2 w = packed[static_cast<long long>(col) * kblocks + kb];
    const float s = fp4::decode_ue4m3(scales[static_cast<long long>(col) * kblocks + kb]) * scale_factor;
    float wv[16];
    const std::uint32_t words[2] = {w.x, w.y};
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const fp4::Fp16x8 f = fp4::e2m1x8_to_fp16x8_scaled(words[h]);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float2 p = __half22float2(__halves2half2(__ushort_as_half(static_cast<unsigned short>(f.pairs[i] & 0xFFFFu)),
                                                       __ushort_as_half(static_cast<unsigned short>(f.pairs[i] >> 16))));
        wv[8 * h + i] = p.x * s;      // element i of the word
        wv[8 * h + i + 4] = p.y * s;  // element i + 4
      }
    }
    const int c0 = lane * fp4::kNvfp4Block;
#pragma unroll
    for (int r = 0; r < kSmallMMax; ++r) {
      if (r >= m) break;
      float a = acc[r];
#pragma unroll
      for (int e = 0; e < 16; ++e) a = fmaf(wv[e], xs[r][c0 + e], a);
      acc[r] = a;
    }
  }
  if (col >= n) return;
#pragma unroll
  for (int r = 0; r < kSmallMMax; ++r) {
    if (r >= m) break;
    float a = acc[r];
#pragma unroll
    for (int off = 16; off > 0; off /= 2) a += __shfl_xor_sync(0xFFFFFFFFu, a, off);
    if (lane == 0) store(&y[static_cast<long long>(r) * n + col], a);
  }
}

/// A device buffer freed on scope exit (an exception from a later check must not leak it).
template <class T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(std::size_t count) { RACKSIM_CUDA_CHECK(cudaMalloc(&ptr_, count * sizeof(T))); }
  ~DeviceBuffer() { cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* get() const { return ptr_; }

 private:
  T* ptr_ = nullptr;
};

}  // namespace

namespace {

void check_shape(std::int64_t m, std::int64_t n, std::int64_t k) {
  if (m < 1 || m > kSmallMMax || n < 1 || k < 1 || k % fp4::kNvfp4Block != 0 || k > (1 << 30) || n > (1 << 30))
    throw InputError("fp4_gemm_small_m: need 1 <= m <= 16, n >= 1 and k a positive multiple of 16 (got m=" +
                     std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k) + ")");
}

}  // namespace

void fp4_gemm_small_m_launch(const float* x, std::int64_t m, std::int64_t n, std::int64_t k, const std::uint8_t* packed,
                             const std::uint8_t* scales, float tensor_scale, float* y, void* stream) {
  check_shape(m, n, k);
  const unsigned grid = static_cast<unsigned>((n + kWarps - 1) / kWarps);
  fp4_gemm_small_m_kernel<<<grid, kWarps * 32, 0, static_cast<cudaStream_t>(stream)>>>(
      x, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), reinterpret_cast<const uint2*>(packed), scales,
      tensor_scale, y);
  RACKSIM_CUDA_CHECK(cudaGetLastError());
}

void fp4_gemm_small_m_bf16_launch(const std::uint16_t* x, std::int64_t m, std::int64_t n, std::int64_t k, const std::uint8_t* packed,
                                  const std::uint8_t* scales, float tensor_scale, std::uint16_t* y, void* stream) {
  check_shape(m, n, k);
  const unsigned grid = static_cast<unsigned>((n + kWarps - 1) / kWarps);
  fp4_gemm_small_m_kernel<<<grid, kWarps * 32, 0, static_cast<cudaStream_t>(stream)>>>(
      reinterpret_cast<const __nv_bfloat16*>(x), static_cast<int>(m), static_cast<int>(n), static_cast<int>(k),
      reinterpret_cast<const uint2*>(packed), scales, tensor_scale, reinterpret_cast<__nv_bfloat16*>(y));
  RACKSIM_CUDA_CHECK(cudaGetLastError());
}

void fp4_gemm_small_m(const float* x, std::int64_t m, std::int64_t n, std::int64_t k, const std::uint8_t* packed,
                      const std::uint8_t* scales, float tensor_scale, float* y) {
  check_shape(m, n, k);
  const auto mu = static_cast<std::size_t>(m), nu = static_cast<std::size_t>(n), ku = static_cast<std::size_t>(k);
  DeviceBuffer<float> dx(mu * ku), dy(mu * nu);
  DeviceBuffer<uint2> dw(nu * ku / 16);
  DeviceBuffer<std::uint8_t> ds(nu * ku / 16);
  RACKSIM_CUDA_CHECK(cudaMemcpy(dx.get(), x, mu * ku * sizeof(float), cudaMemcpyHostToDevice));
  RACKSIM_CUDA_CHECK(cudaMemcpy(dw.get(), packed, nu * ku / 2, cudaMemcpyHostToDevice));
  RACKSIM_CUDA_CHECK(cudaMemcpy(ds.get(), scales, nu * ku / 16, cudaMemcpyHostToDevice));
  const unsigned grid = static_cast<unsigned>((n + kWarps - 1) / kWarps);
  fp4_gemm_small_m_kernel<<<grid, kWarps * 32>>>(dx.get(), static_cast<int>(m), static_cast<int>(n), static_cast<int>(k),
                                                 dw.get(), ds.get(), tensor_scale, dy.get());
  RACKSIM_CUDA_CHECK(cudaGetLastError());
  RACKSIM_CUDA_CHECK(cudaMemcpy(y, dy.get(), mu * nu * sizeof(float), cudaMemcpyDeviceToHost));
}

}  // namespace racksim::exec::cuda
