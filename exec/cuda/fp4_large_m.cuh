#pragma once
// Hopper's FP4-weight GEMM for the M the fused kernel does not take (M > 128, or K % 32 != 0 at
// M > 1): W dequantized on every call, then cuBLASLt, in the format RACKSIM_FP4_LARGE_M picks
// (fp4_gemm_path.hpp: bf16, the default, exact; fp8, half the bytes and twice the tensor rate at
// one E4M3 rounding of W and of x). Shared by the step executor and `racksim bench gemm`, so the
// bench times the executor's calls. Compiled only with RACKSIM_CUDA.

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <memory>

#include "device_buffer.cuh"
#include "fp4_gemm_mma.hpp"
#include "lt_plan.cuh"
#include "racksim/exec/activation_formats.hpp"
#include "racksim/exec/fp4_gemm_path.hpp"

namespace racksim::exec::cuda {

/// RACKSIM_FP4_LARGE_M read once per process (InputError on a bad value at the first use).
inline bool large_m_fp8_knob() {
  static const bool v = fp4_large_m_fp8(std::getenv("RACKSIM_FP4_LARGE_M"));
  return v;
}

/// The dequantized weight, the FP8 variant's quantized activations and its scales, sized once for
/// the largest weight (n x k values) and activation (m x k values) it will see.
class Fp4LargeM {
 public:
  Fp4LargeM() = default;
  /// fp8: the E4M3 variant (callers pass large_m_fp8_knob(); the [cuda] tests run both).
  Fp4LargeM(std::int64_t max_weight_values, std::int64_t max_act_values, bool fp8) : fp8_(fp8) {
    const auto w = static_cast<std::size_t>(max_weight_values);
    w_ = DeviceBytes(fp8_ ? w : 2 * w);
    if (fp8_) x8_ = DeviceBytes(static_cast<std::size_t>(max_act_values)), scratch_ = DeviceBytes(static_cast<std::size_t>(kFp8ScratchBytes));
  }

  [[nodiscard]] const LtTypes& types() const noexcept { return fp8_ ? kLtFp8 : kLtBf16; }
  /// The FP8 variant's device scratch: [kFp8ScaleB] holds the last call's x scale.
  [[nodiscard]] const float* scratch() const noexcept { return scratch_.as<float>(); }
  /// The FP8 variant's quantized activations of the last call.
  [[nodiscard]] const std::uint8_t* x8() const noexcept { return x8_.as<std::uint8_t>(); }

  /// The cuBLASLt plan of m x n x k in this format (FP8: its scale pointers on this scratch), for
  /// x and y of `align` (BF16 reads x itself; FP8 reads its own quantized copy, aligned).
  [[nodiscard]] std::unique_ptr<LtPlan> make_plan(cublasLtHandle_t h, std::int64_t m, std::int64_t n, std::int64_t k, LtAlign align = {}) const {
    const LtTypes& t = types();
    const float* sc = fp8_ ? scratch_.as<float>() : nullptr;
    if (fp8_) align.b = 256;
    return std::make_unique<LtPlan>(h, t.ab, t.cd, m, n, k, sc ? sc + kFp8ScaleA : nullptr, sc ? sc + kFp8ScaleB : nullptr, false, align);
  }

  /// y[m x n] = x[m x k] W^T on `s` with `plan` (make_plan at m, n, k). W: NVFP4 codes and UE4M3
  /// scales, tiled (fp4_mma_tiling) or row-major, and its FP32 tensor scale.
  void run(cublasLtHandle_t h, const LtPlan& plan, const std::uint8_t* codes, const std::uint8_t* scales, bool tiled, float tensor_scale,
           const __nv_bfloat16* x, std::int64_t m, std::int64_t n, std::int64_t k, __nv_bfloat16* y, void* ws, cudaStream_t s) const {
    const auto blocks = static_cast<std::size_t>(n) * static_cast<std::size_t>(k) / 16;
    if (static_cast<std::size_t>(n) * static_cast<std::size_t>(k) * (fp8_ ? 1 : 2) > w_.size() ||
        (fp8_ && static_cast<std::size_t>(m) * static_cast<std::size_t>(k) > x8_.size()))
      throw Error(ExitCode::internal, text("Fp4LargeM::run: ", m, " x ", n, " x ", k, " exceeds the scratch it was sized for (", w_.size(),
                                           " weight bytes, ", x8_.size(), " activation bytes)"));
    if (!fp8_) {
      if (tiled)
        fp4_mma_dequant_bf16_launch(codes, scales, n, k, tensor_scale, w_.as<std::uint16_t>(), s);
      else
        dequant_nvfp4_bf16(codes, scales, tensor_scale, blocks, w_.as<__nv_bfloat16>(), s);
      plan.run(h, 1.0f, w_.as(), x, y, ws, s);
      return;
    }
    // Tiled: x's amax pass rides in the dequantize's launch (its first blocks), so x costs one launch.
    float* sc = scratch_.as<float>();
    if (tiled)
      fp4_mma_dequant_e4m3_launch(codes, scales, n, k, w_.as<std::uint8_t>(), s, reinterpret_cast<const std::uint16_t*>(x), m * k,
                                  sc + kFp8Partials);
    else
      dequant_nvfp4_e4m3(codes, scales, blocks, w_.as<std::uint8_t>(), s);
    quantize_bf16_e4m3_pow2(x, static_cast<std::size_t>(m) * static_cast<std::size_t>(k), sc, x8_.as<std::uint8_t>(), s, /*amax_done=*/tiled);
    // D = alpha x scale_A x scale_B x sum(w8 x8): alpha = tensor_scale x 8, scale_A = 1, scale_B = x's.
    plan.run(h, tensor_scale * act::kNvfp4E4m3WeightDivisor, w_.as(), x8_.as(), y, ws, s);
  }

 private:
  bool fp8_ = false;
  DeviceBytes w_, x8_, scratch_;
};

}  // namespace racksim::exec::cuda
