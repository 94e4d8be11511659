#pragma once
// Programmatic dependent launch (compute capability 9.0 and newer; CUDA Programming Guide,
// "Programmatic Dependent Launch and Synchronization"; PTX ISA `griddepcontrol`), behind
// RACKSIM_PDL=on (step_plan.hpp pdl_knob; default off until a device session measures it).
//
// A kernel launched with programmatic stream serialization may be scheduled while the stream's
// previous kernel is still running, once every CTA of that kernel has issued
// `griddepcontrol.launch_dependents` (or exited). So the next kernel's launch latency and CTA
// rasterization overlap the previous kernel's last wave, instead of following its end: a decode
// step of Llama-2-70B is ~14 dependent kernels per layer, 80 layers (TensorRT-LLM enables the same
// with TRTLLM_ENABLE_PDL).
//
// Correctness rests on one rule: every kernel launched through launch_kernel() calls pdl_begin(),
// whose `griddepcontrol.wait` returns only when the previous grid has completed and its memory is
// visible, before it reads or writes anything another kernel of the step writes or reads. Most
// call it first; the fused FP4 GEMM first loads its first spans of weights (the model's, written
// before any step), so that under PDL its weight stream starts during the previous kernel's end,
// as TensorRT-LLM's low-latency GEMMs prefetch weights before cudaGridDependencySynchronize.
// The trigger comes after the wait, so a kernel's dependents are scheduled only once it runs,
// never while its own prerequisite still does (they would hold SM slots its later waves need).
// Both instructions are no-ops for a kernel launched without the attribute (RACKSIM_PDL unset, or
// launched with <<<>>>), which is how every kernel runs by default.
//
// What precedes a launch need not be a kernel: the attribute only lets the runtime "opportunistically
// allow the grid's execution to overlap with the previous kernel in the stream, if that kernel
// requests the overlap" (CUDA 13.0 driver_types.h, cudaLaunchAttributeProgrammaticStreamSerialization).
// After a memcpy or an NCCL call (the tensor-parallel step's logits gather before sampling), or as a
// graph's first node, nothing requests it and the launch is ordered as a plain one, its wait a no-op.

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdlib>
#include <utility>

#include "cuda_check.hpp"
#include "racksim/exec/step_plan.hpp"

namespace racksim::exec::cuda {

/// The first statement of every kernel launch_kernel() launches: wait for the previous grid (PDL),
/// then let the next one be scheduled.
__device__ __forceinline__ void pdl_begin() {
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
}

/// RACKSIM_PDL=on, read once per process.
inline bool pdl_on() {
  static const bool v = pdl_knob(std::getenv("RACKSIM_PDL"));
  return v;
}

/// kernel<<<grid, block, smem, stream>>>(args...), with programmatic stream serialization under
/// RACKSIM_PDL=on; `kernel` must call pdl_begin() before touching what other kernels write or
/// read. Throws on a launch error.
template <class... Params, class... Args>
void launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, std::size_t smem, cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  if (pdl_on()) {
    cfg.attrs = &attr;
    cfg.numAttrs = 1;
  }
  RACKSIM_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

}  // namespace racksim::exec::cuda
