#include "lt_plan.cuh"

namespace racksim::exec::cuda {

namespace {

/// One thread per 16-value block (grid-stride).
__global__ void dequant_nvfp4_bf16_kernel(const uint2* __restrict__ packed, const std::uint8_t* __restrict__ scales, float tensor_scale,
                                          std::size_t blocks, __nv_bfloat16* __restrict__ out) {
  for (std::size_t b = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; b < blocks; b += std::size_t{gridDim.x} * blockDim.x) {
    const uint2 q = packed[b];
    const float s = fp4::decode_ue4m3(scales[b]) * tensor_scale;
    const std::uint32_t words[2] = {q.x, q.y};
    __align__(16) __nv_bfloat16 v[16];
#pragma unroll
    for (int i = 0; i < 16; ++i)
      v[i] = __float2bfloat16_rn(fp4::decode_e2m1(static_cast<std::uint8_t>((words[i / 8] >> (4 * (i % 8))) & 0xFu)) * s);
    uint4* o = reinterpret_cast<uint4*>(out + b * 16);
    o[0] = *reinterpret_cast<const uint4*>(&v[0]);
    o[1] = *reinterpret_cast<const uint4*>(&v[8]);
  }
}

}  // namespace

void dequant_nvfp4_bf16(const std::uint8_t* packed, const std::uint8_t* scales, float tensor_scale, std::size_t blocks, __nv_bfloat16* out,
                        cudaStream_t s) {
  if (blocks == 0) return;
  dequant_nvfp4_bf16_kernel<<<fill_grid(blocks), 256, 0, s>>>(reinterpret_cast<const uint2*>(packed), scales, tensor_scale, blocks, out);
  RACKSIM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace racksim::exec::cuda
