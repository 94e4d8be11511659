#pragma once
// NCCL communicators for the step executor's tensor parallelism (compiled only with
// RACKSIM_CUDA). Plain C++ interface.

#include <cstddef>
#include <memory>
#include <span>
#include <vector>

#include "racksim/exec/tensor_parallel.hpp"

namespace racksim::exec::cuda {

/// ncclCommInitAll over `devices`: rank i on devices[i].
[[nodiscard]] std::vector<std::unique_ptr<DeviceTpComm>> nccl_tp_comms(std::span<const int> devices);
/// ncclCommInitRank: rank `rank` of `size` on `device`, `id` rank 0's ncclUniqueId bytes.
[[nodiscard]] std::unique_ptr<DeviceTpComm> nccl_tp_comm(std::span<const std::byte> id, int rank, int size, int device);

}  // namespace racksim::exec::cuda
