#include "racksim/exec/fp4_gemm_path.hpp"

#include <fmt/format.h>

#include "racksim/common/error.hpp"
#include "racksim/exec/fp4.hpp"

namespace racksim::exec {

std::string_view to_string(Fp4GemmMode m) noexcept {
  switch (m) {
    case Fp4GemmMode::automatic: return "auto";
    case Fp4GemmMode::native: return "native";
    case Fp4GemmMode::hopper: return "hopper";
  }
  return "?";
}

std::optional<Fp4GemmMode> parse_fp4_gemm_mode(std::string_view s) noexcept {
  for (Fp4GemmMode m : {Fp4GemmMode::automatic, Fp4GemmMode::native, Fp4GemmMode::hopper})
    if (to_string(m) == s) return m;
  return std::nullopt;
}

namespace {

std::string version_text(std::size_t v) { return fmt::format("{}.{}.{}", v / 10000, v / 100 % 100, v % 100); }

}  // namespace

Fp4GemmChoice choose_fp4_gemm(Fp4GemmMode mode, int sm_major, int sm_minor, std::size_t cublaslt_version) {
  const std::string device = fmt::format("sm_{}{}", sm_major, sm_minor);
  if (mode == Fp4GemmMode::hopper)
    return {false, fmt::format("--fp4-gemm hopper on {}: small-M FP4 kernel (M <= 16), dequantize + cuBLASLt BF16 above", device)};
  std::string missing;
  if (sm_major != 10 || (sm_minor != 0 && sm_minor != 3))
    missing = fmt::format("{} is not sm_100 or sm_103 (the builds' Blackwell targets with block-scaled FP4 tensor cores)", device);
  else if (cublaslt_version < kCublasLtBlockScaledFp4Version)
    missing = fmt::format("cuBLASLt {} predates block-scaled FP4 (12.8)", version_text(cublaslt_version));
  if (missing.empty())
    return {true, fmt::format("native NVFP4 on {}: activations quantized on the device (encode scale {:g}), cuBLASLt {} FP4 x FP4 "
                              "with VEC16_UE4M3 scales",
                              device, kActivationNvfp4EncodeScale, version_text(cublaslt_version))};
  if (mode == Fp4GemmMode::native) throw Error(ExitCode::infeasible, fmt::format("--fp4-gemm native: {}", missing));
  return {false, fmt::format("Hopper FP4 kernels: {}; small-M FP4 kernel (M <= 16), dequantize + cuBLASLt BF16 above", missing)};
}

Fp4GemmChoice after_probe(Fp4GemmMode mode, Fp4GemmChoice choice, const std::string& probe_error) {
  if (!choice.native || probe_error.empty()) return choice;
  if (mode == Fp4GemmMode::native) throw Error(ExitCode::infeasible, fmt::format("--fp4-gemm native: {}", probe_error));
  return {false, fmt::format("Hopper FP4 kernels: {}; small-M FP4 kernel (M <= 16), dequantize + cuBLASLt BF16 above", probe_error)};
}

std::int64_t native_activation_bytes(std::int64_t rows, std::int64_t cols) noexcept {
  return rows * ((cols + 1) / 2) + fp4::cublaslt_scale_bytes(rows, (cols + fp4::kNvfp4Block - 1) / fp4::kNvfp4Block);
}

}  // namespace racksim::exec
