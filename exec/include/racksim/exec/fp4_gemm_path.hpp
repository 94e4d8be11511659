#pragma once
/// Which kernels run the CUDA step executor's NVFP4 linear layers, decided on the host from the
/// device's compute capability and the cuBLASLt version (plain C++, unit-tested on the CPU; the
/// Blackwell path cannot run on the Hopper machines this project measures on).
///   native: activations quantized to NVFP4 on the device (a static encode scale, one UE4M3
///           scale per 16 values written straight into cuBLASLt's swizzled layout), then the
///           cuBLASLt block-scaled FP4 x FP4 GEMM (CUBLASLT_MATMUL_MATRIX_SCALE_VEC16_UE4M3,
///           sm_100 / sm_103, cuBLASLt >= 12.8), every M;
///   hopper: the small-M kernel (E2M1 dequantized in registers) for M <= 16, dequantize to BF16
///           + cuBLASLt BF16 above: any GPU the build targets.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace racksim::exec {

/// What `racksim exec --fp4-gemm` asks for.
enum class Fp4GemmMode {
  automatic,  ///< native where the device and cuBLASLt have it, else hopper
  native,     ///< native or an error (exit 3)
  hopper,     ///< the Hopper kernels on any GPU (to compare the two on Blackwell)
};

/// "auto", "native", "hopper".
[[nodiscard]] std::string_view to_string(Fp4GemmMode m) noexcept;
/// The mode named `s`, or nullopt.
[[nodiscard]] std::optional<Fp4GemmMode> parse_fp4_gemm_mode(std::string_view s) noexcept;

/// First cuBLASLt with block-scaled FP4 (CUDA 12.8 release notes: VEC16_UE4M3 and VEC32_UE8M0
/// scale modes, CUDA_R_4F_E2M1); cublasLtGetVersion() spells 12.8.0 as 120800.
inline constexpr std::size_t kCublasLtBlockScaledFp4Version = 120800;

/// The activations' NVFP4 encode scale s_in (x is stored as e2m1(x s_in / block scale)). 1: the
/// UE4M3 block scales then cover block maxima from 6 x 2^-9 = 0.0117 to 6 x 448 = 2688, where
/// post-RMSNorm and SwiGLU activations of unit scale lie. TensorRT-LLM calibrates one per layer
/// offline; racksim has no calibration data for random or generated weights.
inline constexpr float kActivationNvfp4EncodeScale = 1.0f;

/// The decision and why, in words (stated in `racksim exec` output and the measurement file).
struct Fp4GemmChoice {
  bool native = false;
  std::string reason;
};

/// Native needs compute capability 10.0 or 10.3 (the builds' sm_100a / sm_103a; other
/// Blackwell parts, sm_110 and sm_120, have no cubin here) and cuBLASLt >= 12.8. `automatic`
/// falls back to hopper with the reason; `native` without support is an Error (exit 3).
[[nodiscard]] Fp4GemmChoice choose_fp4_gemm(Fp4GemmMode mode, int sm_major, int sm_minor, std::size_t cublaslt_version);

/// The same choice after the native path's plans were probed: `probe_error` non-empty (cuBLASLt
/// found no algorithm for one of the model's shapes) turns `automatic` into hopper, with the
/// error as the reason, and is an Error (exit 3) under `native`.
[[nodiscard]] Fp4GemmChoice after_probe(Fp4GemmMode mode, Fp4GemmChoice choice, const std::string& probe_error);

/// Bytes of the native path's activation buffers for `rows` x `cols` (the largest linear input):
/// packed E2M1 (cols / 2 per row) and the swizzled scales (fp4::cublaslt_scale_bytes).
[[nodiscard]] std::int64_t native_activation_bytes(std::int64_t rows, std::int64_t cols) noexcept;

}  // namespace racksim::exec
