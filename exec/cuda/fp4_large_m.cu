// fp4_gemm_large_m (fp4_gemm_mma.hpp): the large-M path of fp4_large_m.cuh on host arrays, for
// the [cuda] tests.

#include <cublasLt.h>
#include <cuda_runtime.h>

#include "cuda_check.hpp"
#include "device_buffer.cuh"
#include "fp4_gemm_mma.hpp"
#include "fp4_large_m.cuh"
#include "lt_plan.cuh"
#include "racksim/exec/fp4_gemm_path.hpp"

namespace racksim::exec::cuda {

void fp4_gemm_large_m(const std::uint16_t* x, std::int64_t m, std::int64_t n, std::int64_t k, const std::uint8_t* packed,
                      const std::uint8_t* scales, float tensor_scale, bool fp8, std::uint16_t* y, std::uint8_t* x_codes, float* x_scale) {
  if (m < 1 || n < 1 || k < 16 || k % 16 != 0) throw InputError(text("fp4_gemm_large_m: ", m, " x ", n, " x ", k, ": k must be a positive multiple of 16"));
  const auto mu = static_cast<std::size_t>(m), nu = static_cast<std::size_t>(n), ku = static_cast<std::size_t>(k);
  const bool tiled = fp4_mma_supported(1, n, k);
  DeviceBytes dx(mu * ku * 2), dw(nu * ku / 2), ds(nu * ku / 16), dy(mu * nu * 2), ws(kLtWorkspaceBytes), tw, ts;
  RACKSIM_CUDA_CHECK(cudaMemcpy(dx.as(), x, dx.size(), cudaMemcpyHostToDevice));
  RACKSIM_CUDA_CHECK(cudaMemcpy(dw.as(), packed, dw.size(), cudaMemcpyHostToDevice));
  RACKSIM_CUDA_CHECK(cudaMemcpy(ds.as(), scales, ds.size(), cudaMemcpyHostToDevice));
  RACKSIM_CUDA_CHECK(cudaMemset(dy.as(), 0xFF, dy.size()));  // poison: BF16 NaN
  if (tiled) {
    const Fp4MmaTiling t = fp4_mma_tiling(n, k);
    tw = DeviceBytes(static_cast<std::size_t>(t.code_bytes)), ts = DeviceBytes(static_cast<std::size_t>(t.scale_bytes));
    fp4_mma_tile_launch(dw.as<std::uint8_t>(), ds.as<std::uint8_t>(), n, k, tw.as<std::uint8_t>(), ts.as<std::uint8_t>(), nullptr);
  }
  cublasLtHandle_t h = nullptr;
  RACKSIM_CUBLAS_CHECK(cublasLtCreate(&h));
  try {
    const Fp4LargeM large(n * k, m * k, fp8);
    const auto plan = large.make_plan(h, m, n, k);
    large.run(h, *plan, (tiled ? tw : dw).as<std::uint8_t>(), (tiled ? ts : ds).as<std::uint8_t>(), tiled, tensor_scale, dx.as<__nv_bfloat16>(),
              m, n, k, dy.as<__nv_bfloat16>(), ws.as(), nullptr);
    RACKSIM_CUDA_CHECK(cudaDeviceSynchronize());
    RACKSIM_CUDA_CHECK(cudaMemcpy(y, dy.as(), dy.size(), cudaMemcpyDeviceToHost));
    if (fp8 && x_codes) RACKSIM_CUDA_CHECK(cudaMemcpy(x_codes, large.x8(), mu * ku, cudaMemcpyDeviceToHost));
    if (fp8 && x_scale) RACKSIM_CUDA_CHECK(cudaMemcpy(x_scale, large.scratch() + kFp8ScaleB, sizeof(float), cudaMemcpyDeviceToHost));
  } catch (...) {
    cublasLtDestroy(h);
    throw;
  }
  cublasLtDestroy(h);
}

}  // namespace racksim::exec::cuda
