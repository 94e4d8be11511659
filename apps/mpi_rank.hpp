#pragma once
// One process per GPU under mpirun / srun, as `racksim bench --suite collectives` and `racksim
// exec` run it: the bootstrap (rank 0's NCCL id on every rank, the GPU of this process's local
// rank) and the rule that one failing rank ends the whole job.

#include <functional>
#include <memory>

#include "racksim/exec/collectives.hpp"
#include "racksim/exec/process_group.hpp"

namespace racksim::cli {

/// This process's place in a multi-process GPU run.
struct MpiGpuRank {
  exec::RankPlacement placement;
  exec::NcclId id{};  ///< rank 0's ncclUniqueId
  int device = 0;     ///< the CUDA device of this process's local rank
};

/// Bootstraps `group` (collective: every rank calls it): Error (exit 3) when this process sees
/// no usable GPU, saying why.
[[nodiscard]] MpiGpuRank join_mpi_gpu_run(exec::ProcessGroup& group);

/// f(); if it throws on one rank of several, prints "error: rank R of N: ..." and ends every
/// process of the run with the error's exit code (MPI_Abort): a rank failing alone would leave
/// the others waiting in a collective. With one process the error propagates as usual.
int abort_all_on_failure(exec::ProcessGroup& group, const std::function<int()>& f);

}  // namespace racksim::cli
