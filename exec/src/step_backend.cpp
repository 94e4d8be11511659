// step_backend.hpp: the CUDA step executor's entry points in every build (without CUDA they
// throw, exit 3) and its device-memory footprint (plain arithmetic, tested on the CPU).

#include "racksim/exec/step_backend.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "racksim/common/error.hpp"
#include "racksim/exec/paged_kv.hpp"

#ifdef RACKSIM_HAVE_CUDA
#include "cuda/step_executor.hpp"
#endif

namespace racksim::exec {

std::unique_ptr<StepBackend> make_cuda_step_backend(const ModelConfig& model, const Precision& precision, const CudaStepOptions& options) {
#ifdef RACKSIM_HAVE_CUDA
  return cuda::make_cuda_step(model, precision, options);
#else
  (void)model, (void)precision;
  throw Error(ExitCode::infeasible, fmt::format("built without CUDA: the CUDA step executor (cuda:{}) needs a build with RACKSIM_CUDA",
                                                options.device));
#endif
}

DeviceMemoryInfo cuda_device_memory(int device) {
#ifdef RACKSIM_HAVE_CUDA
  return cuda::device_memory(device);
#else
  throw Error(ExitCode::infeasible, fmt::format("built without CUDA: no device cuda:{}", device));
#endif
}

CudaStepFootprint cuda_step_footprint(const ModelConfig& m, const Precision& p, const CudaStepOptions& o) {
  using D = double;
  const D H = m.hidden, hd = m.head_dim, heads = m.heads, kvh = m.kv_heads, ffn = m.ffn, vocab = m.vocab;
  const D qkv_w = (heads + 2 * kvh) * hd;
  // NVFP4: 0.5 B per weight + one UE4M3 byte per 16 (executor.md "NVFP4").
  const D linear = qkv_w * H + H * heads * hd + 2 * ffn * H + H * ffn;
  const D blocks = std::max<D>(1, static_cast<D>((o.kv_tokens + o.block_tokens - 1) / o.block_tokens));
  const D kv_element = p.kv_cache == DType::fp8 ? 1 : 2;
  CudaStepFootprint f;
  f.per_layer = linear * (0.5 + 1.0 / 16) + 2 * 2 * H + 2 * blocks * static_cast<D>(o.block_tokens) * kvh * hd * kv_element;
  const D R = static_cast<D>(o.max_rows), S = static_cast<D>(o.max_sampled);
  const D activations = 2 * R * (3 * H + qkv_w + heads * hd + 3 * ffn) + S * (2 * H + 4 * vocab + 4);
  const D largest = std::max({qkv_w * H, H * heads * hd, 2 * ffn * H, H * ffn});
  const D dequant = o.max_rows > 16 ? 2 * largest : 0;  // fp4_gemm_small_m's M limit
  f.fixed = 2 * 2 * vocab * H + 2 * H + activations + dequant + D(32 << 20);  // + the 32 MiB cuBLASLt workspace
  return f;
}

}  // namespace racksim::exec
