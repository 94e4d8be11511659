// Hopper FP4-weight GEMM on tensor cores for decode batches (M <= 32). sm_90 has no FP4 tensor
// cores: each lane turns its E2M1 codes into FP16 with the two-mask-and-shift trick (fp4.hpp,
// after vLLM marlin; values x 2^-14, folded back in the epilogue), multiplies them by their UE4M3
// block scale in FP16 (exact: a 2-bit by a 4-bit significand, and every product a multiple of
// 2^-24), and feeds them to mma.sync.m16n8k16 (FP16 in, FP32 accumulate) with the weights as the
// A operand (16 output features x 16 K) and the tokens as B (16 K x 8 tokens).
//
// The weights are read once, straight from the step executor's row-major layout, with no
// repacking: a dot product does not care in which order K is summed, so each lane takes a whole
// 32-value piece of a row (tig = lane % 4 picks the piece of a 128-value span) and assigns its
// values to the MMA's K slots of that lane; the B fragment of token g and slot (tig, j) is built
// from the x values that the A fragment's weights in slot (tig, j) multiply. With fp4.hpp's pair
// order (word i -> elements i, i + 4):
//   k-step 2w:   A lo = (e0, e4), A hi = (e1, e5) of word w;  B = (x0, x4), (x1, x5)
//   k-step 2w+1: A lo = (e2, e6), A hi = (e3, e7);            B = (x2, x6), (x3, x7)
//
// CTA: 4 warps x 32 rows (two 16-row MMA tiles per warp) = 128 output features, looping over its
// split's 128-value K spans through a kStages-deep cp.async pipeline in shared memory: per span
// the CTA's 128 rows x 64 bytes of codes, 128 x 8 UE4M3 codes and the span of x for all tokens
// (BF16, converted to FP16 pairs as each warp reads it). Memory-level parallelism comes from the
// copies in flight, not from registers (the first version kept one span ahead in registers, used
// 92 registers at one tile and stalled on global loads 41% of the time: ncu, H200, 2026-11-30).
// K splits write FP32 partials that fp4_mma_reduce sums in split order (deterministic);
// fp4_mma_plan decides the split, sized to whole waves of resident CTAs.

#include "fp4_gemm_mma.hpp"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstring>

#include "cuda_check.hpp"
#include "racksim/exec/fp4.hpp"
#include "racksim/exec/fp4_gemm_path.hpp"

namespace racksim::exec::cuda {

namespace {

constexpr int kThreads = 128;
constexpr int kSpan = static_cast<int>(kFp4MmaSpan);             // K values per span
constexpr int kRowsPerCta = static_cast<int>(kFp4MmaRowsPerCta);  // 4 warps x 32
constexpr int kStages = 3;
constexpr int kXRowBytes = 320;  // a token's 256 bytes of x + 64 of padding: tokens g, g + 1 on other banks
static_assert(kRowsPerCta == 4 * 32 && kSpan == 128, "fp4_gemm_mma.cu assumes 4 warps of 32 rows and 4 pieces of 32 values");

/// One stage of shared memory: codes [128 rows][4 pieces] (16 bytes each), UE4M3 codes
/// [128 rows][8 blocks], x [8 NT tokens][16 groups of 8 BF16], group (piece p, word w) at
/// (w x 4 + p) x 16 bytes so that the 4 lanes of a row group read 64 contiguous bytes.
template <int NT>
struct Stage {
  static constexpr int kCodes = 0;
  static constexpr int kScales = kCodes + kRowsPerCta * 64;
  static constexpr int kX = kScales + kRowsPerCta * 8;
  static constexpr int kBytes = kX + NT * 8 * kXRowBytes;
};
template <int NT>
constexpr int kSmemBytes = kStages * Stage<NT>::kBytes;

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

/// D += A B, m16n8k16, FP16 in, FP32 accumulate. a: {row g k-lo, row g+8 k-lo, row g k-hi, row g+8 k-hi}.
__device__ inline void mma_16816(float (&d)[4], const std::uint32_t (&a)[4], std::uint32_t b0, std::uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/// cp.async of 16 (L2 only) or 8 bytes; `valid` false zero-fills the destination and reads nothing.
__device__ inline void cp_async16(unsigned char* dst, const void* src, bool valid) {
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(valid ? 16 : 0));
}
__device__ inline void cp_async8(unsigned char* dst, const void* src, bool valid) {
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(d), "l"(src), "r"(valid ? 8 : 0));
}
__device__ inline void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ inline void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

/// The CTA's copies of span `sp` into stage `st` (every thread; one commit group).
template <int NT>
__device__ inline void load_stage(unsigned char* st, int sp, const __nv_bfloat16* __restrict__ x, int m, int n, int k,
                                  const std::uint8_t* __restrict__ packed, const std::uint8_t* __restrict__ scales, int cta_row0) {
  const int t = static_cast<int>(threadIdx.x);
  const int k0 = sp * kSpan;
#pragma unroll
  for (int it = 0; it < 4; ++it) {  // 128 rows x 4 pieces: lanes cover 8 rows x 64 contiguous bytes
    const int c = it * kThreads + t, row = c >> 2, piece = c & 3;
    const int grow = cta_row0 + row;
    const bool ok = grow < n;
    const std::uint8_t* src = ok ? packed + static_cast<long long>(grow) * (k / 2) + (k0 + piece * 32) / 2 : packed;
    cp_async16(st + Stage<NT>::kCodes + row * 64 + piece * 16, src, ok);
  }
  {
    const int grow = cta_row0 + t;
    const bool ok = grow < n;
    const std::uint8_t* src = ok ? scales + static_cast<long long>(grow) * (k / 16) + k0 / 16 : scales;
    cp_async8(st + Stage<NT>::kScales + t * 8, src, ok);
  }
#pragma unroll
  for (int i = 0; i < NT; ++i) {  // 8 NT tokens x 16 groups of 8 values
    const int c = i * kThreads + t, tok = c >> 4, q = c & 15;  // group q: piece q / 4, word q % 4
    const bool ok = tok < m;
    const __nv_bfloat16* src = ok ? x + static_cast<long long>(tok) * k + k0 + q * 8 : x;
    cp_async16(st + Stage<NT>::kX + tok * kXRowBytes + ((q & 3) * 4 + (q >> 2)) * 16, src, ok);
  }
}

/// CTAs per SM the register budget is set for (fp4_mma_plan's ctas_per_sm).
template <int NT>
constexpr int kMinCtas = NT <= 2 ? 5 : 3;

template <int NT>
__global__ void __launch_bounds__(kThreads, kMinCtas<NT>)
    fp4_mma_kernel(const __nv_bfloat16* __restrict__ x, int m, int n, int k, const std::uint8_t* __restrict__ packed,
                   const std::uint8_t* __restrict__ scales, float out_scale, int spans_per_split, __nv_bfloat16* __restrict__ y,
                   float* __restrict__ partials) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int lane = static_cast<int>(threadIdx.x) & 31, warp = static_cast<int>(threadIdx.x) >> 5;
  const int g = lane >> 2, tig = lane & 3;
  const int cta_row0 = static_cast<int>(blockIdx.x) * kRowsPerCta;
  const int split = static_cast<int>(blockIdx.y);
  const int spans = k / kSpan;
  const int sp_begin = split * spans_per_split, sp_end = min(spans, sp_begin + spans_per_split);

  float acc[2][NT][4];
#pragma unroll
  for (int t = 0; t < 2; ++t)
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[t][j][i] = 0.0f;

  // Fill: stages for the first kStages - 1 spans (an empty group where the split has fewer).
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (sp_begin + s < sp_end) load_stage<NT>(smem + s * Stage<NT>::kBytes, sp_begin + s, x, m, n, k, packed, scales, cta_row0);
    cp_async_commit();
  }
  for (int sp = sp_begin; sp < sp_end; ++sp) {
    const int i = sp - sp_begin;
    cp_async_wait<kStages - 2>();  // this thread's copies of span sp have landed
    __syncthreads();               // everyone's have; and everyone is done with the stage refilled below
    if (sp + kStages - 1 < sp_end)
      load_stage<NT>(smem + ((i + kStages - 1) % kStages) * Stage<NT>::kBytes, sp + kStages - 1, x, m, n, k, packed, scales, cta_row0);
    cp_async_commit();
    const unsigned char* st = smem + (i % kStages) * Stage<NT>::kBytes;

    uint4 w[2][2];
    __half2 sc[2][2];
#pragma unroll
    for (int t = 0; t < 2; ++t)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int row = warp * 32 + 16 * t + 8 * h + g;
        w[t][h] = *reinterpret_cast<const uint4*>(st + Stage<NT>::kCodes + row * 64 + tig * 16);
        const uint2 s8 = *reinterpret_cast<const uint2*>(st + Stage<NT>::kScales + row * 8);
        const unsigned codes = ((tig < 2 ? s8.x : s8.y) >> ((tig & 1) * 16)) & 0xFFFFu;  // blocks 2 tig, 2 tig + 1
        sc[t][h] = ue4m3_pair_to_half2(codes);
      }
#pragma unroll
    for (int wd = 0; wd < 4; ++wd) {
      std::uint32_t ae[2][4], ao[2][4];  // per m-tile: the even and odd k-step's A fragment
#pragma unroll
      for (int t = 0; t < 2; ++t)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const uint4 wv = w[t][h];
          const std::uint32_t word = wd == 0 ? wv.x : wd == 1 ? wv.y : wd == 2 ? wv.z : wv.w;
          const __half2 s = wd < 2 ? __low2half2(sc[t][h]) : __high2half2(sc[t][h]);
          const fp4::Fp16x8 f = fp4::e2m1x8_to_fp16x8_scaled(word);
          ae[t][h] = hmul2_bits(f.pairs[0], s);      // (e0, e4): k lo of the even step
          ae[t][2 + h] = hmul2_bits(f.pairs[1], s);  // (e1, e5): k hi
          ao[t][h] = hmul2_bits(f.pairs[2], s);      // (e2, e6)
          ao[t][2 + h] = hmul2_bits(f.pairs[3], s);  // (e3, e7)
        }
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        // x0..x7 of token j x 8 + g, piece tig, word wd: r.x = (x0, x1), r.y = (x2, x3), r.z = (x4, x5), r.w = (x6, x7)
        const uint4 r = *reinterpret_cast<const uint4*>(st + Stage<NT>::kX + (j * 8 + g) * kXRowBytes + (wd * 4 + tig) * 16);
        const std::uint32_t b0 = half2_bits(bf16_lo(r.x), bf16_lo(r.z));  // (x0, x4)
        const std::uint32_t b1 = half2_bits(bf16_hi(r.x), bf16_hi(r.z));  // (x1, x5)
        const std::uint32_t b2 = half2_bits(bf16_lo(r.y), bf16_lo(r.w));  // (x2, x6)
        const std::uint32_t b3 = half2_bits(bf16_hi(r.y), bf16_hi(r.w));  // (x3, x7)
#pragma unroll
        for (int t = 0; t < 2; ++t) {
          mma_16816(acc[t][j], ae[t], b0, b1);
          mma_16816(acc[t][j], ao[t], b2, b3);
        }
      }
    }
  }
  cp_async_wait<0>();

  // C fragment: c0, c1 = (row g, tokens 2 tig, 2 tig + 1); c2, c3 = row g + 8.
  const int row0 = cta_row0 + warp * 32;
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
        if (partials) partials[static_cast<long long>(split) * m * n + at] = acc[t][j][i];
        else y[at] = __float2bfloat16_rn(acc[t][j][i] * out_scale);
      }
}

/// y = BF16(out_scale x sum over splits of the partials), summed in split order.
__global__ void fp4_mma_reduce(const float* __restrict__ partials, long long mn, int splits, float out_scale, __nv_bfloat16* __restrict__ y) {
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < mn; i += static_cast<long long>(gridDim.x) * blockDim.x) {
    float s = 0.0f;
    for (int p = 0; p < splits; ++p) s += partials[p * mn + i];
    y[i] = __float2bfloat16_rn(s * out_scale);
  }
}

template <int NT>
void launch_nt(const Fp4MmaPlan& p, const __nv_bfloat16* x, int m, int n, int k, const std::uint8_t* packed, const std::uint8_t* scales,
               float out_scale, __nv_bfloat16* y, float* partials, cudaStream_t s) {
  // Above 48 KiB of dynamic shared memory a kernel must opt in; once per process and instantiation
  // (the current device's; the executor and benches use one device per process).
  static const cudaError_t opt_in =
      cudaFuncSetAttribute(fp4_mma_kernel<NT>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes<NT>);
  RACKSIM_CUDA_CHECK(opt_in);
  const dim3 grid(static_cast<unsigned>(p.row_blocks), static_cast<unsigned>(p.splits));
  fp4_mma_kernel<NT><<<grid, kThreads, kSmemBytes<NT>, s>>>(x, m, n, k, packed, scales, out_scale, static_cast<int>(p.spans_per_split), y,
                                                             partials);
}

/// A device buffer freed on scope exit.
template <class T>
class Buffer {
 public:
  explicit Buffer(std::size_t count) {
    if (count) RACKSIM_CUDA_CHECK(cudaMalloc(&ptr_, count * sizeof(T)));
  }
  ~Buffer() { cudaFree(ptr_); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  T* get() const { return ptr_; }

 private:
  T* ptr_ = nullptr;
};

}  // namespace

void fp4_gemm_mma_launch(const std::uint16_t* x, std::int64_t m, std::int64_t n, std::int64_t k, const std::uint8_t* packed,
                         const std::uint8_t* scales, float tensor_scale, std::uint16_t* y, float* workspace, int sms, void* stream) {
  const Fp4MmaPlan p = fp4_mma_plan(m, n, k, sms);  // InputError on an unsupported shape
  if (p.workspace_bytes > 0 && !workspace) throw InputError("fp4_gemm_mma_launch: this shape splits K and needs a workspace");
  const auto s = static_cast<cudaStream_t>(stream);
  const auto* xb = reinterpret_cast<const __nv_bfloat16*>(x);
  auto* yb = reinterpret_cast<__nv_bfloat16*>(y);
  const float out_scale = tensor_scale * fp4::kFp16BitTrickScale;
  float* partials = p.splits > 1 ? workspace : nullptr;
  const int mi = static_cast<int>(m), ni = static_cast<int>(n), ki = static_cast<int>(k);
  switch (p.n_tiles) {
    case 1: launch_nt<1>(p, xb, mi, ni, ki, packed, scales, out_scale, yb, partials, s); break;
    case 2: launch_nt<2>(p, xb, mi, ni, ki, packed, scales, out_scale, yb, partials, s); break;
    default: launch_nt<4>(p, xb, mi, ni, ki, packed, scales, out_scale, yb, partials, s); break;
  }
  RACKSIM_CUDA_CHECK(cudaGetLastError());
  if (partials) {
    const long long mn = m * n;
    const unsigned blocks = static_cast<unsigned>(std::min<long long>((mn + 255) / 256, 4LL * sms));
    fp4_mma_reduce<<<blocks, 256, 0, s>>>(partials, mn, static_cast<int>(p.splits), out_scale, yb);
    RACKSIM_CUDA_CHECK(cudaGetLastError());
  }
}

void fp4_gemm_mma(const std::uint16_t* x, std::int64_t m, std::int64_t n, std::int64_t k, const std::uint8_t* packed,
                  const std::uint8_t* scales, float tensor_scale, std::uint16_t* y) {
  int dev = 0, sms = 0;
  RACKSIM_CUDA_CHECK(cudaGetDevice(&dev));
  RACKSIM_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  const Fp4MmaPlan p = fp4_mma_plan(m, n, k, sms);
  const auto mu = static_cast<std::size_t>(m), nu = static_cast<std::size_t>(n), ku = static_cast<std::size_t>(k);
  Buffer<std::uint16_t> dx(mu * ku), dy(mu * nu);
  Buffer<std::uint8_t> dw(nu * ku / 2), ds(nu * ku / 16);
  Buffer<float> dws(static_cast<std::size_t>(p.workspace_bytes) / 4);
  RACKSIM_CUDA_CHECK(cudaMemcpy(dx.get(), x, mu * ku * 2, cudaMemcpyHostToDevice));
  RACKSIM_CUDA_CHECK(cudaMemcpy(dw.get(), packed, nu * ku / 2, cudaMemcpyHostToDevice));
  RACKSIM_CUDA_CHECK(cudaMemcpy(ds.get(), scales, nu * ku / 16, cudaMemcpyHostToDevice));
  RACKSIM_CUDA_CHECK(cudaMemset(dy.get(), 0xFF, mu * nu * 2));  // poison: BF16 NaN where nothing is written
  fp4_gemm_mma_launch(dx.get(), m, n, k, dw.get(), ds.get(), tensor_scale, dy.get(), dws.get(), sms, nullptr);
  RACKSIM_CUDA_CHECK(cudaDeviceSynchronize());
  RACKSIM_CUDA_CHECK(cudaMemcpy(y, dy.get(), mu * nu * 2, cudaMemcpyDeviceToHost));
}

}  // namespace racksim::exec::cuda
