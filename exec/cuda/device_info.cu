#include "device_info.hpp"

#include <cublasLt.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include <string>

namespace racksim::exec::cuda {

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device / no driver" error
    return 0;
  }
  return n;
}

std::string device_summary() {
  int runtime = 0, driver = 0, nccl = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);
  ncclGetVersion(&nccl);
  const size_t lt = cublasLtGetVersion();
  std::string s = "built for " RACKSIM_CUDA_ARCHS "; CUDA runtime " + std::to_string(runtime) + ", driver " +
                  std::to_string(driver) + ", cuBLASLt " + std::to_string(lt) + ", NCCL " + std::to_string(nccl);
  const int n = device_count();
  if (n == 0) return s + "; no CUDA device visible";
  s += "; " + std::to_string(n) + " device(s):";
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    s += " [" + std::to_string(i) + "] " + p.name + " sm_" + std::to_string(p.major) + std::to_string(p.minor) + " " +
         std::to_string(p.totalGlobalMem >> 20) + " MiB";
  }
  return s;
}

}  // namespace racksim::exec::cuda
