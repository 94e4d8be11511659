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

/// cublasLtGetVersion() of the cuBLASLt this binary links (no device needed); 0 without CUDA built in.
[[nodiscard]] std::size_t cuda_cublaslt_version() noexcept;

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

/// The step executor's cuBLASLt GEMMs.
enum class LtGemm {
  native_nvfp4,  ///< Blackwell linears: E2M1 x E2M1, VEC16_UE4M3 scales -> BF16
  bf16,          ///< Hopper large-M linears after dequantization -> BF16
  bf16_to_fp32,  ///< lm_head -> FP32 logits
};

/// A GEMM's cuBLASLt descriptors as set up, read back from cuBLASLt (`cublasLt*GetAttribute`).
struct LtGemmSetup {
  std::string compute;         ///< compute type: "32F"
  std::string scale;           ///< alpha/beta type: "fp32"
  bool transa = false;         ///< A (the weights, stored [n x k] K-major) transposed: "TN"
  bool transb = false;
  std::string a_scale_mode;    ///< "vec16_ue4m3" or "scalar_fp32" (cuBLASLt's default)
  std::string b_scale_mode;
  bool a_scale_pointer = false;  ///< a block-scale pointer is set
  bool b_scale_pointer = false;
  struct Layout {
    std::string type;          ///< "e2m1", "bf16", "fp32"
    std::uint64_t rows = 0, cols = 0;
    std::int64_t ld = 0;
  } a, b, c;
};

/// The descriptors the step executor builds for `kind` at y[m x n] = x[m x k] W^T, set up and
/// read back on the host: no device or cuBLASLt handle needed. Error (exit 3) without CUDA built in.
[[nodiscard]] LtGemmSetup describe_cuda_gemm(LtGemm kind, std::int64_t m, std::int64_t n, std::int64_t k);

}  // namespace racksim::exec
