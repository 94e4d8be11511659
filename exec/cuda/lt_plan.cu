#include "lt_plan.cuh"

#include <cuda_fp8.h>

#include <string>

#include "racksim/exec/activation_formats.hpp"

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

/// One thread per 16-value block (grid-stride): two 16-byte loads, the shared block routine, one
/// 8-byte store of codes and one scale byte at its swizzled offset.
__global__ void quantize_bf16_nvfp4_kernel(const __nv_bfloat16* __restrict__ x, std::int64_t rows, std::int64_t kblocks, float s_in,
                                           std::uint8_t* __restrict__ packed, std::uint8_t* __restrict__ scales) {
  const std::int64_t total = rows * kblocks;
  for (std::int64_t b = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; b < total; b += std::int64_t{gridDim.x} * blockDim.x) {
    const std::int64_t r = b / kblocks, kb = b % kblocks;
    const uint4* src = reinterpret_cast<const uint4*>(x + b * 16);  // row r, block kb: (r kblocks + kb) x 16
    __align__(16) __nv_bfloat16 h[16];
    *reinterpret_cast<uint4*>(&h[0]) = src[0];
    *reinterpret_cast<uint4*>(&h[8]) = src[1];
    float v[16];
#pragma unroll
    for (int i = 0; i < 16; ++i) v[i] = __bfloat162float(h[i]);
    std::uint32_t words[2];
    const std::uint8_t sc = fp4::nvfp4_quantize_block16(v, s_in, words);
    reinterpret_cast<uint2*>(packed)[b] = make_uint2(words[0], words[1]);
    scales[fp4::cublaslt_scale_offset(r, kb, kblocks)] = sc;
  }
}

/// One thread per 16-value block (grid-stride), through the host's routine (this path serves
/// only weights the fused kernel does not hold tiled: K % 32 != 0, small models).
__global__ void dequant_nvfp4_e4m3_kernel(const uint2* __restrict__ packed, const std::uint8_t* __restrict__ scales, std::size_t blocks,
                                          std::uint8_t* __restrict__ out) {
  for (std::size_t b = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; b < blocks; b += std::size_t{gridDim.x} * blockDim.x) {
    const uint2 q = packed[b];
    const std::uint32_t words[2] = {q.x, q.y};
    __align__(16) std::uint8_t v[16];
#pragma unroll
    for (int i = 0; i < 16; ++i)
      v[i] = act::nvfp4_e4m3_weight_code(static_cast<std::uint8_t>((words[i / 8] >> (4 * (i % 8))) & 0xFu), scales[b]);
    reinterpret_cast<uint4*>(out)[b] = *reinterpret_cast<const uint4*>(v);
  }
}

/// The amax pass alone (the row-major path and a caller that has no dequantize to ride on).
__global__ void __launch_bounds__(256) amax_partials_kernel(const uint4* __restrict__ x, std::size_t units, float* __restrict__ partials) {
  amax_partial_block(x, units, partials, static_cast<int>(blockIdx.x));
}

/// x / s to E4M3 (8 values per thread, grid-stride), s from the amax of the partials (every block
/// reduces the same kFp8AmaxBlocks values, so every block gets the same s); block 0's thread 0
/// writes the two cuBLASLt scales.
__global__ void __launch_bounds__(256) quantize_e4m3_pow2_kernel(const uint4* __restrict__ x, std::size_t units, float* __restrict__ scratch,
                                                                 uint2* __restrict__ out) {
  static_assert(kFp8AmaxBlocks == 256, "one partial per thread of a 256-thread block");
  const float sc = act::e4m3_pow2_scale(block256_max(scratch[kFp8Partials + threadIdx.x]));
  const float inv = 1.0f / sc;  // a power of two: x x inv is x / sc exactly
  if (blockIdx.x == 0 && threadIdx.x == 0) scratch[kFp8ScaleA] = 1.0f, scratch[kFp8ScaleB] = sc;
  for (std::size_t u = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; u < units; u += std::size_t{gridDim.x} * blockDim.x) {
    const uint4 v = x[u];
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&v);
    __nv_fp8x2_storage_t q[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 f = __bfloat1622float2(h[i]);
      q[i] = __nv_cvt_float2_to_fp8x2(make_float2(f.x * inv, f.y * inv), __NV_SATFINITE, __NV_E4M3);
    }
    out[u] = *reinterpret_cast<const uint2*>(q);
  }
}

}  // namespace

std::string nvfp4_quantize_kernel_missing() {
  cudaFuncAttributes a{};
  const cudaError_t e = cudaFuncGetAttributes(&a, quantize_bf16_nvfp4_kernel);
  if (e == cudaSuccess) return "";
  (void)cudaGetLastError();  // clear it: the caller falls back
  return text("the NVFP4 activation quantize has no code for this device in this build (", cudaGetErrorString(e),
              "; RACKSIM_CUDA_ARCHITECTURES: ", RACKSIM_CUDA_ARCHS, ")");
}

void quantize_bf16_nvfp4_cublaslt(const __nv_bfloat16* x, std::int64_t rows, std::int64_t cols, float s_in, std::uint8_t* packed,
                                  std::uint8_t* scales, cudaStream_t s) {
  if (cols % 16 != 0 || rows < 0)
    throw InputError(text("quantize_bf16_nvfp4_cublaslt: ", rows, " x ", cols, ": cols must be a multiple of 16 (NVFP4 blocks)"));
  const std::int64_t blocks = rows * (cols / 16);
  if (blocks == 0) return;
  quantize_bf16_nvfp4_kernel<<<fill_grid(static_cast<std::size_t>(blocks)), 256, 0, s>>>(x, rows, cols / 16, s_in, packed, scales);
  RACKSIM_CUDA_CHECK(cudaGetLastError());
}

void dequant_nvfp4_e4m3(const std::uint8_t* packed, const std::uint8_t* scales, std::size_t blocks, std::uint8_t* out, cudaStream_t s) {
  if (blocks == 0) return;
  dequant_nvfp4_e4m3_kernel<<<fill_grid(blocks), 256, 0, s>>>(reinterpret_cast<const uint2*>(packed), scales, blocks, out);
  RACKSIM_CUDA_CHECK(cudaGetLastError());
}

void quantize_bf16_e4m3_pow2(const __nv_bfloat16* x, std::size_t count, float* scratch, std::uint8_t* out, cudaStream_t s, bool amax_done) {
  if (count % 8 != 0) throw InputError(text("quantize_bf16_e4m3_pow2: ", count, " values: a multiple of 8 is needed (16-byte units)"));
  const std::size_t units = count / 8;
  const auto* xu = reinterpret_cast<const uint4*>(x);
  if (!amax_done) amax_partials_kernel<<<kFp8AmaxBlocks, 256, 0, s>>>(xu, units, scratch + kFp8Partials);
  quantize_e4m3_pow2_kernel<<<units ? fill_grid(units) : 1, 256, 0, s>>>(xu, units, scratch, reinterpret_cast<uint2*>(out));
  RACKSIM_CUDA_CHECK(cudaGetLastError());
}

void dequant_nvfp4_bf16(const std::uint8_t* packed, const std::uint8_t* scales, float tensor_scale, std::size_t blocks, __nv_bfloat16* out,
                        cudaStream_t s) {
  if (blocks == 0) return;
  dequant_nvfp4_bf16_kernel<<<fill_grid(blocks), 256, 0, s>>>(reinterpret_cast<const uint2*>(packed), scales, tensor_scale, blocks, out);
  RACKSIM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace racksim::exec::cuda

#include "nvfp4_quantize.hpp"

namespace racksim::exec::cuda {

void quantize_bf16_nvfp4_host(const std::uint16_t* x, std::int64_t rows, std::int64_t cols, float s_in, std::uint8_t* packed,
                              std::uint8_t* scales) {
  if (cols % 16 != 0 || rows < 1)
    throw InputError(text("quantize_bf16_nvfp4_host: ", rows, " x ", cols, ": rows >= 1 and cols a multiple of 16 (NVFP4 blocks)"));
  const auto n = static_cast<std::size_t>(rows * cols);
  const auto scale_bytes = static_cast<std::size_t>(fp4::cublaslt_scale_bytes(rows, cols / 16));
  DeviceBytes dx(n * 2), dq(n / 2), ds(scale_bytes);
  RACKSIM_CUDA_CHECK(cudaMemcpy(dx.as(), x, n * 2, cudaMemcpyHostToDevice));
  RACKSIM_CUDA_CHECK(cudaMemset(ds.as(), 0, scale_bytes));
  quantize_bf16_nvfp4_cublaslt(dx.as<__nv_bfloat16>(), rows, cols, s_in, dq.as<std::uint8_t>(), ds.as<std::uint8_t>(), nullptr);
  RACKSIM_CUDA_CHECK(cudaMemcpy(packed, dq.as(), n / 2, cudaMemcpyDeviceToHost));
  RACKSIM_CUDA_CHECK(cudaMemcpy(scales, ds.as(), scale_bytes, cudaMemcpyDeviceToHost));
}

}  // namespace racksim::exec::cuda

#include <string>

#include "lt_describe.hpp"

namespace racksim::exec::cuda {

namespace {

std::string type_name(std::uint32_t t) {
  switch (static_cast<cudaDataType_t>(t)) {
    case CUDA_R_4F_E2M1: return "e2m1";
    case CUDA_R_8F_E4M3: return "e4m3";
    case CUDA_R_16BF: return "bf16";
    case CUDA_R_32F: return "fp32";
    default: return "cudaDataType " + std::to_string(t);
  }
}

std::string scale_mode_name(std::uint32_t m) {
  switch (static_cast<cublasLtMatmulMatrixScale_t>(m)) {
    case CUBLASLT_MATMUL_MATRIX_SCALE_SCALAR_32F: return "scalar_fp32";
    case CUBLASLT_MATMUL_MATRIX_SCALE_VEC16_UE4M3: return "vec16_ue4m3";
    case CUBLASLT_MATMUL_MATRIX_SCALE_VEC32_UE8M0: return "vec32_ue8m0";
    default: return "scale mode " + std::to_string(m);
  }
}

template <class T>
T desc_attr(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a) {
  T v{};
  std::size_t written = 0;
  RACKSIM_CUBLAS_CHECK(cublasLtMatmulDescGetAttribute(d, a, &v, sizeof v, &written));
  return v;
}

LtGemmSetup::Layout layout_of(cublasLtMatrixLayout_t l) {
  LtGemmSetup::Layout out;
  std::uint32_t type = 0;
  std::size_t written = 0;
  RACKSIM_CUBLAS_CHECK(cublasLtMatrixLayoutGetAttribute(l, CUBLASLT_MATRIX_LAYOUT_TYPE, &type, sizeof type, &written));
  RACKSIM_CUBLAS_CHECK(cublasLtMatrixLayoutGetAttribute(l, CUBLASLT_MATRIX_LAYOUT_ROWS, &out.rows, sizeof out.rows, &written));
  RACKSIM_CUBLAS_CHECK(cublasLtMatrixLayoutGetAttribute(l, CUBLASLT_MATRIX_LAYOUT_COLS, &out.cols, sizeof out.cols, &written));
  RACKSIM_CUBLAS_CHECK(cublasLtMatrixLayoutGetAttribute(l, CUBLASLT_MATRIX_LAYOUT_LD, &out.ld, sizeof out.ld, &written));
  out.type = type_name(type);
  return out;
}

}  // namespace

std::size_t cublaslt_version() noexcept { return cublasLtGetVersion(); }

LtGemmSetup describe_gemm(LtGemm kind, std::int64_t m, std::int64_t n, std::int64_t k) {
  const LtTypes t = kind == LtGemm::native_nvfp4 ? kLtNativeNvfp4
                    : kind == LtGemm::bf16        ? kLtBf16
                    : kind == LtGemm::fp8         ? kLtFp8
                                                  : kLtBf16ToFp32;
  // Non-null stand-ins where the executor sets scale pointers (per call, as native_plan does; the
  // FP8 variant's point at its scratch).
  static const std::uint8_t stand_in[2] = {};
  const void* scale = t.block_scaled || kind == LtGemm::fp8 ? stand_in : nullptr;
  const LtDescriptors d(t.ab, t.cd, m, n, k, scale, scale, t.block_scaled);
  LtGemmSetup s;
  s.compute = desc_attr<cublasComputeType_t>(d.desc, CUBLASLT_MATMUL_DESC_COMPUTE_TYPE) == CUBLAS_COMPUTE_32F ? "32F" : "other";
  s.scale = type_name(static_cast<std::uint32_t>(desc_attr<cudaDataType_t>(d.desc, CUBLASLT_MATMUL_DESC_SCALE_TYPE)));
  s.transa = desc_attr<std::int32_t>(d.desc, CUBLASLT_MATMUL_DESC_TRANSA) == CUBLAS_OP_T;
  s.transb = desc_attr<std::int32_t>(d.desc, CUBLASLT_MATMUL_DESC_TRANSB) == CUBLAS_OP_T;
  s.a_scale_mode = scale_mode_name(desc_attr<std::uint32_t>(d.desc, CUBLASLT_MATMUL_DESC_A_SCALE_MODE));
  s.b_scale_mode = scale_mode_name(desc_attr<std::uint32_t>(d.desc, CUBLASLT_MATMUL_DESC_B_SCALE_MODE));
  s.a_scale_pointer = desc_attr<const void*>(d.desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER) != nullptr;
  s.b_scale_pointer = desc_attr<const void*>(d.desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER) != nullptr;
  s.a = layout_of(d.a);
  s.b = layout_of(d.b);
  s.c = layout_of(d.c);
  return s;
}

}  // namespace racksim::exec::cuda
