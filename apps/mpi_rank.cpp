#include "mpi_rank.hpp"

#include <algorithm>
#include <cstdio>
#include <exception>
#include <span>

#include "racksim/common/error.hpp"
#include "racksim/exec/backend.hpp"
#include "racksim/exec/cuda_bench.hpp"

namespace racksim::cli {

MpiGpuRank join_mpi_gpu_run(exec::ProcessGroup& group) {
  MpiGpuRank r;
  r.placement = exec::bootstrap_ranks(
      group, std::span<std::byte>(r.id.data(), r.id.size()),
      [](std::span<std::byte> bytes) {
        const exec::NcclId made = exec::cuda_nccl_unique_id();
        std::copy(made.begin(), made.end(), bytes.begin());
      },
      exec::process_env());
  const int visible = exec::cuda_device_count();
  if (visible == 0) (void)exec::cuda_require_device(0);  // says why: no driver, no device, or no CUDA build
  r.device = exec::device_for_local_rank(r.placement.local_rank, visible);
  return r;
}

int abort_all_on_failure(exec::ProcessGroup& group, const std::function<int()>& f) {
  try {
    return f();
  } catch (const std::exception& e) {
    if (group.size() > 1) {
      const auto* err = dynamic_cast<const Error*>(&e);
      std::fprintf(stderr, "error: rank %d of %d: %s\n", group.rank(), group.size(), e.what());
      group.abort(static_cast<int>(err ? err->code() : ExitCode::internal));
    }
    throw;
  }
}

}  // namespace racksim::cli
