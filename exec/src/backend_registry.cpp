#include "racksim/exec/backend.hpp"

#ifdef RACKSIM_HAVE_CUDA
#include "cuda/device_info.hpp"
#endif

namespace racksim::exec {

const Registry<BackendStatus>& backend_registry() {
  static const Registry<BackendStatus> registry = [] {
    Registry<BackendStatus> r("backend");
#ifdef RACKSIM_HAVE_CUDA
    r.add("cuda", "CUDA GPUs: cuBLASLt GEMMs, NCCL collectives, NVML power", [] { return cuda::device_summary(); });
#else
    r.add("cuda", "CUDA GPUs (not built)", [] { return std::string("not built (RACKSIM_CUDA=OFF or no CUDA toolkit at configure time)"); });
#endif
    return r;
  }();
  return registry;
}

int cuda_device_count() {
#ifdef RACKSIM_HAVE_CUDA
  return cuda::device_count();
#else
  return 0;
#endif
}

}  // namespace racksim::exec
