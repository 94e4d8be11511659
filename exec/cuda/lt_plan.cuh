#pragma once
// cuBLASLt plans and the NVFP4 -> BF16 dequantize kernel, shared by the GEMM bench and the step
// executor (compiled only with RACKSIM_CUDA). cuBLASLt is called in "TN" form, which FP8 and FP4
// require: y[M x N] row-major is the column-major N x M D = op(A) B with A = W stored K-major
// (transa = T) and B = x (K x M).

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "device_buffer.cuh"
#include "random_fill.cuh"
#include "racksim/exec/fp4.hpp"
#include "racksim/exec/fp4_gemm_path.hpp"

namespace racksim::exec::cuda {

inline constexpr std::size_t kLtWorkspaceBytes = std::size_t{32} << 20;  // cuBLAS docs: 32 MiB on Hopper

/// NVFP4 [rows x k] weights row-major (packed `blocks` x 8 bytes, one UE4M3 per block, row-major)
/// to BF16 [rows x k] on `s` (lt_plan.cu): the FP32 product e2m1 x ue4m3 x tensor scale rounded
/// once to BF16. `out` 16-byte aligned.
void dequant_nvfp4_bf16(const std::uint8_t* packed, const std::uint8_t* scales, float tensor_scale, std::size_t blocks,
                        __nv_bfloat16* out, cudaStream_t s);

/// NVFP4 [rows x k] weights row-major (as dequant_nvfp4_bf16) to E4M3 codes [rows x k] of
/// e2m1 x ue4m3 / 8 (act::nvfp4_e4m3_weight_code, the same routine as the host's; the tensor
/// scale x 8 goes to the GEMM's alpha): RACKSIM_FP4_LARGE_M=fp8 for a weight not held tiled.
void dequant_nvfp4_e4m3(const std::uint8_t* packed, const std::uint8_t* scales, std::size_t blocks, std::uint8_t* out, cudaStream_t s);

// The FP8 variant's scratch layout (kFp8ScaleA, kFp8ScaleB, kFp8Partials, kFp8AmaxBlocks,
// kFp8ScratchBytes) is in racksim/exec/fp4_gemm_path.hpp, where the footprint sees it too.

/// The maximum of `v` over a block of 256 threads, returned to every thread (shuffles within each
/// warp, then the 8 warp maxima through shared memory). Block-uniform call sites only.
__device__ inline float block256_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xFFFFFFFFu, v, o));
  __shared__ float warp_max[8];
  if ((threadIdx.x & 31) == 0) warp_max[threadIdx.x / 32] = v;
  __syncthreads();
  float b = warp_max[0];
#pragma unroll
  for (int w = 1; w < 8; ++w) b = fmaxf(b, warp_max[w]);
  return b;
}

/// Block `block` of the amax pass over x (`units` 16-byte units of 8 BF16): a grid-stride maximum
/// of |x| over kFp8AmaxBlocks blocks of 256 threads, reduced in the block (shuffles, then shared
/// memory) and written to partials[block]; 0 for a block with no units. Deterministic: a maximum
/// does not depend on the order. Shared by the standalone pass and the tiled dequantize, which runs
/// it in the first kFp8AmaxBlocks blocks of its own launch.
__device__ inline void amax_partial_block(const uint4* __restrict__ x, std::size_t units, float* __restrict__ partials, int block) {
  float m = 0.0f;
  // Unrolled so a thread has several 16-byte loads in flight (at M = 4,096 x K = 28,672 each thread
  // walks 1,792 units).
#pragma unroll 4
  for (std::size_t u = static_cast<std::size_t>(block) * 256 + threadIdx.x; u < units; u += std::size_t{kFp8AmaxBlocks} * 256) {
    const uint4 v = x[u];
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 f = __bfloat1622float2(h[i]);
      m = fmaxf(m, fmaxf(fabsf(f.x), fabsf(f.y)));
    }
  }
  const float b = block256_max(m);
  if (threadIdx.x == 0) partials[block] = b;
}

/// BF16 x [count] to E4M3 codes of x / s with one power-of-two scale s = act::e4m3_pow2_scale(max
/// |x|), on `s` (the routine fp4_large_m_fp8_operands emulates): the amax pass (unless
/// `amax_done`: the tiled E4M3 dequantize ran it over this x already), then the quantize, whose
/// every block reduces the partials to the same amax; it also writes scratch[kFp8ScaleA] = 1 and
/// scratch[kFp8ScaleB] = s for cuBLASLt. Nothing leaves the device, so a CUDA graph captures it.
/// count % 8 == 0; x and out 16-byte aligned; `scratch` holds kFp8ScratchBytes.
void quantize_bf16_e4m3_pow2(const __nv_bfloat16* x, std::size_t count, float* scratch, std::uint8_t* out, cudaStream_t s,
                             bool amax_done = false);

/// BF16 activations [rows x cols] row-major to NVFP4 for the block-scaled cuBLASLt GEMM on `s`
/// (lt_plan.cu): packed E2M1 [rows x cols/2] (element 2j in the low nibble) and one UE4M3 scale
/// per 16 values written at fp4::cublaslt_scale_offset, under encode scale `s_in`
/// (fp4::nvfp4_quantize_block16, the CPU quantizer's routine). cols % 16 == 0; `x` 16-byte
/// aligned. The scale buffer's padding is not written: zero it once when allocating.
void quantize_bf16_nvfp4_cublaslt(const __nv_bfloat16* x, std::int64_t rows, std::int64_t cols, float s_in, std::uint8_t* packed,
                                  std::uint8_t* scales, cudaStream_t s);

/// Why the current device cannot run quantize_bf16_nvfp4_cublaslt's kernel ("" if it can): a
/// build whose RACKSIM_CUDA_ARCHITECTURES left out this device's code (sm_100a, sm_103a) has
/// none. Asked before the native path is chosen, so that it falls back instead of failing at the
/// first step's quantize.
[[nodiscard]] std::string nvfp4_quantize_kernel_missing();

/// Operand and output types of the step executor's cuBLASLt GEMMs (the same constants build its
/// plans and describe_gemm, which the CPU tests read back).
struct LtTypes {
  cudaDataType_t ab;
  cudaDataType_t cd;
  bool block_scaled;
};
/// Blackwell's native linears: E2M1 x E2M1 with VEC16_UE4M3 block scales -> BF16.
inline constexpr LtTypes kLtNativeNvfp4{CUDA_R_4F_E2M1, CUDA_R_16BF, true};
/// Hopper's large-M linears after dequantization: BF16 x BF16 -> BF16.
inline constexpr LtTypes kLtBf16{CUDA_R_16BF, CUDA_R_16BF, false};
/// The same under RACKSIM_FP4_LARGE_M=fp8: E4M3 x E4M3 -> BF16, per-tensor scale pointers.
inline constexpr LtTypes kLtFp8{CUDA_R_8F_E4M3, CUDA_R_16BF, false};
/// lm_head: BF16 x BF16 -> FP32 logits.
inline constexpr LtTypes kLtBf16ToFp32{CUDA_R_16BF, CUDA_R_32F, false};

/// A cuBLASLt matmul's descriptors, set up without a device or handle (cublasLtMatmulDescCreate
/// and cublasLtMatrixLayoutCreate are host calls), so the setup is unit-tested on machines
/// without a GPU (describe_lt_matmul, lt_describe.hpp). Destroyed on scope exit.
class LtDescriptors {
 public:
  LtDescriptors(cudaDataType_t ab, cudaDataType_t cd, std::int64_t m, std::int64_t n, std::int64_t k, const void* a_scale,
                const void* b_scale, bool block_scaled) {
    try {
      RACKSIM_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
      const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
      RACKSIM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
      RACKSIM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
      if (block_scaled) {
        const cublasLtMatmulMatrixScale_t mode = CUBLASLT_MATMUL_MATRIX_SCALE_VEC16_UE4M3;
        RACKSIM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &mode, sizeof mode));
        RACKSIM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &mode, sizeof mode));
      }
      set_scale_pointers(a_scale, b_scale);
      const auto u = [](std::int64_t v) { return static_cast<std::uint64_t>(v); };
      RACKSIM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&a, ab, u(k), u(n), k));
      RACKSIM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&b, ab, u(k), u(m), k));
      RACKSIM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&c, cd, u(n), u(m), n));
    } catch (...) {
      destroy();
      throw;
    }
  }
  ~LtDescriptors() { destroy(); }
  LtDescriptors(const LtDescriptors&) = delete;
  LtDescriptors& operator=(const LtDescriptors&) = delete;

  /// Points the block scales at other buffers (null leaves one unset).
  void set_scale_pointers(const void* a_scale, const void* b_scale) {
    if (a_scale) RACKSIM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &a_scale, sizeof a_scale));
    if (b_scale) RACKSIM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &b_scale, sizeof b_scale));
  }

  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;

 private:
  void destroy() noexcept {
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (desc) cublasLtMatmulDescDestroy(desc);
    c = b = a = nullptr;
    desc = nullptr;
  }
};

/// The alignment cuBLASLt may assume of a pointer (lt_pointer_alignment, fp4_gemm_path.hpp).
inline int lt_alignment(const void* p) { return lt_pointer_alignment(reinterpret_cast<std::uintptr_t>(p)); }

/// The least alignment, in bytes, a plan's operands will have (lt_alignment of the pointers it
/// runs on). Below 256 the heuristic is told (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*_BYTES), so it
/// returns only algorithms that take such pointers: a MoE expert's rows start inside the
/// expert-ordered buffers, at any multiple of a row's bytes.
struct LtAlign {
  int b = 256;   ///< x (cuBLASLt's B)
  int cd = 256;  ///< y (C and D)
};

/// A cuBLASLt matmul plan: its descriptors and the heuristic's algorithms, best first. run() uses
/// the first one cuBLASLt accepts: the heuristic does not see the operands' pointers, and an
/// algorithm it returns can still be refused at the call (CUBLAS_STATUS_NOT_SUPPORTED; seen on an
/// H200 with cuBLASLt 13.1 for FP8 x FP8 -> BF16, 2026-11-30), so a refused one is dropped and
/// the next tried.
class LtPlan {
 public:
  static constexpr int kAlgos = 8;

  LtPlan(cublasLtHandle_t h, cudaDataType_t ab, cudaDataType_t cd, std::int64_t m, std::int64_t n, std::int64_t k,
         const void* a_scale, const void* b_scale, bool block_scaled, LtAlign align = {})
      : d_(ab, cd, m, n, k, a_scale, b_scale, block_scaled), m_(m), n_(n), k_(k) {
    cublasLtMatmulPreference_t pref = nullptr;
    RACKSIM_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    const std::uint64_t ws = kLtWorkspaceBytes;
    cublasLtMatmulHeuristicResult_t res[kAlgos]{};
    int found = 0;
    cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    const std::uint32_t ab_align = static_cast<std::uint32_t>(align.b), cd_align = static_cast<std::uint32_t>(align.cd);
    if (st == CUBLAS_STATUS_SUCCESS && align.b < 256)
      st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ab_align, sizeof ab_align);
    for (const auto attr : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
      if (st == CUBLAS_STATUS_SUCCESS && align.cd < 256) st = cublasLtMatmulPreferenceSetAttribute(pref, attr, &cd_align, sizeof cd_align);
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatmulAlgoGetHeuristic(h, d_.desc, d_.a, d_.b, d_.c, d_.c, pref, kAlgos, res, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    for (int i = 0; st == CUBLAS_STATUS_SUCCESS && i < found; ++i)
      if (res[i].state == CUBLAS_STATUS_SUCCESS) algos_[count_++] = res[i].algo;
    if (st != CUBLAS_STATUS_SUCCESS || count_ == 0)
      throw Error(ExitCode::internal, text("cuBLASLt has no algorithm for m=", m, " n=", n, " k=", k, " (cudaDataType ",
                                             static_cast<int>(ab), " -> ", static_cast<int>(cd), ", x aligned to ", align.b, " B, y to ",
                                             align.cd, " B): ",
                                             st == CUBLAS_STATUS_SUCCESS ? "heuristic returned none" : cublasLtGetStatusString(st)));
  }

  /// Points the block scales at other buffers (a plan serves every layer of its shape); the next
  /// run() reads them, captured into a CUDA graph as they were at capture.
  void set_scale_pointers(const void* a_scale, const void* b_scale) { d_.set_scale_pointers(a_scale, b_scale); }

  /// D = alpha x op(A) B on `s`; `ws` holds kLtWorkspaceBytes.
  void run(cublasLtHandle_t h, float alpha, const void* a, const void* b, void* d, void* ws, cudaStream_t s) const {
    const float beta = 0.0f;
    while (true) {
      const cublasStatus_t st =
          cublasLtMatmul(h, d_.desc, &alpha, a, d_.a, b, d_.b, &beta, d, d_.c, d, d_.c, &algos_[next_], ws, kLtWorkspaceBytes, s);
      if (st == CUBLAS_STATUS_SUCCESS) return;
      if (st != CUBLAS_STATUS_NOT_SUPPORTED || next_ + 1 >= count_)
        throw Error(ExitCode::internal, text("cuBLASLt error '", cublasLtGetStatusString(st), "' in cublasLtMatmul m=", m_, " n=", n_,
                                             " k=", k_, " with algorithm ", next_ + 1, " of the heuristic's ", count_));
      ++next_;  // refused at the call: the next algorithm
    }
  }

 private:
  LtDescriptors d_;
  std::int64_t m_, n_, k_;
  cublasLtMatmulAlgo_t algos_[kAlgos]{};
  int count_ = 0;
  mutable int next_ = 0;  ///< the first algorithm not refused so far
};

}  // namespace racksim::exec::cuda
