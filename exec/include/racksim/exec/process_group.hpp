#pragma once
/// The processes of a multi-process collectives run (one process per GPU, under mpirun or srun)
/// and its bootstrap: rank 0 makes the NCCL unique id, every rank receives its bytes, and each
/// picks its GPU from its local rank (NCCL docs, "Example 2: One Device per Process or Thread").
/// Host code only: the bootstrap is tested without a GPU (an id is just 128 bytes here), and
/// MPI appears only in process_group.cpp (built with it when RACKSIM_HAVE_MPI).

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace racksim::exec {

/// The ranks of one run and the few host-side exchanges the collectives bench needs.
class ProcessGroup {
 public:
  virtual ~ProcessGroup() = default;
  [[nodiscard]] virtual int rank() const = 0;        ///< this process, 0..size()-1
  [[nodiscard]] virtual int size() const = 0;        ///< processes in the run
  [[nodiscard]] virtual int node_rank() const = 0;   ///< this process among those sharing its node's memory
  [[nodiscard]] virtual int node_size() const = 0;   ///< processes on this node
  [[nodiscard]] virtual int nodes() const = 0;       ///< nodes in the run
  /// Every rank gets `root`'s bytes (same length on every rank).
  virtual void broadcast(std::span<std::byte> bytes, int root) = 0;
  /// Element-wise maximum over all ranks, in place (every rank gets it).
  virtual void max(std::span<double> values) = 0;
  /// Element-wise sum over all ranks, in place (every rank gets it).
  virtual void sum(std::span<double> values) = 0;
  /// `value` of every process on this node, in node_rank order.
  [[nodiscard]] virtual std::vector<int> node_gather(int value) = 0;
  /// Ends every process of the run with `code` (MPI_Abort): a rank that failed alone would
  /// otherwise leave the others waiting in a collective.
  [[noreturn]] virtual void abort(int code) = 0;
};

/// One process on its own: rank 0 of 1; every exchange is the identity.
class SingleProcess final : public ProcessGroup {
 public:
  [[nodiscard]] int rank() const override { return 0; }
  [[nodiscard]] int size() const override { return 1; }
  [[nodiscard]] int node_rank() const override { return 0; }
  [[nodiscard]] int node_size() const override { return 1; }
  [[nodiscard]] int nodes() const override { return 1; }
  void broadcast(std::span<std::byte>, int) override {}
  void max(std::span<double>) override {}
  void sum(std::span<double>) override {}
  [[nodiscard]] std::vector<int> node_gather(int value) override { return {value}; }
  [[noreturn]] void abort(int code) override;
};

/// True when this binary was built with MPI (RACKSIM_MPI, cmake/RacksimDependencies.cmake).
[[nodiscard]] bool mpi_built() noexcept;

/// The MPI run this process belongs to (MPI_Init unless already initialized; MPI_Finalize when
/// the object goes, if it initialized). InfeasibleError (exit 3) when built without MPI.
[[nodiscard]] std::unique_ptr<ProcessGroup> mpi_group();

/// Reads an environment variable: nullptr when unset (std::getenv's contract).
using EnvLookup = std::function<const char*(const char*)>;
/// std::getenv.
[[nodiscard]] EnvLookup process_env();

/// How many processes the launcher started, read from its environment before MPI_Init:
/// OMPI_COMM_WORLD_SIZE (Open MPI's mpirun), PMI_SIZE (MPICH's Hydra, Slurm's PMI-2),
/// SLURM_STEP_NUM_TASKS (srun), the first one set; 1 when none is (a plain process).
/// `source` (if given) gets the variable's name, "" when none.
[[nodiscard]] int launcher_world_size(const EnvLookup& env, std::string* source = nullptr);

/// A local rank as the launcher states it, the first of OMPI_COMM_WORLD_LOCAL_RANK (mpirun),
/// MPI_LOCALRANKID (MPICH's Hydra) and SLURM_LOCALID (srun) that is set and a non-negative
/// integer; -1 when none is. `source` gets the variable's name.
[[nodiscard]] int launcher_local_rank(const EnvLookup& env, std::string* source = nullptr);

/// True when `local_ranks` (the candidates of every process on one node) are distinct and
/// each lies in [0, size). An inherited SLURM_LOCALID (mpirun inside an sbatch script gives
/// every rank the batch step's 0) fails this.
[[nodiscard]] bool valid_local_ranks(std::span<const int> local_ranks);

/// Where this process sits in the run.
struct RankPlacement {
  int rank = 0;
  int ranks = 1;
  int local_rank = 0;           ///< index among the processes on this node: picks the GPU
  int nodes = 1;
  std::string local_rank_from;  ///< which variable (or MPI_Comm_split_type) gave local_rank
};

/// The host half of the multi-process bootstrap. Rank 0 calls `make_id` to fill `id` (the NCCL
/// unique id, 128 bytes; tests pass any buffer); every rank then holds rank 0's bytes. The local
/// rank is launcher_local_rank(env) when every process on the node got a distinct valid one
/// (checked through node_gather), else the rank within MPI_Comm_split_type(SHARED). Collective:
/// every rank of `group` must call it.
[[nodiscard]] RankPlacement bootstrap_ranks(ProcessGroup& group, std::span<std::byte> id,
                                            const std::function<void(std::span<std::byte>)>& make_id, const EnvLookup& env);

/// The fewest of every rank's `value` (every rank gets it). Collective: every rank calls it.
/// `racksim exec` under MPI: the layer count each rank's GPU fits, so that all run the same
/// layers and therefore the same collectives.
[[nodiscard]] int fewest_over_ranks(ProcessGroup& group, int value);

/// True on every rank when `value` is true on every rank. Collective. `racksim exec` under MPI:
/// whether each rank can replay its last decode step as a CUDA graph; a rank replaying alone
/// would wait forever in its captured all-reduces.
[[nodiscard]] bool all_ranks(ProcessGroup& group, bool value);

struct StepPower;
/// A decode step's power window over every rank's GPU (`racksim exec` under MPI, each process
/// measuring its own): energy, power and GPUs summed, the longest window; none on every rank
/// when any rank has none. Collective: every rank calls it, with or without a window.
[[nodiscard]] std::optional<StepPower> power_over_ranks(ProcessGroup& group, const std::optional<StepPower>& mine);

/// The CUDA device of a process: device 0 when it sees one device (the launcher gave each
/// process its own GPU through CUDA_VISIBLE_DEVICES), else its local rank. InfeasibleError
/// (exit 3) when it sees none, or fewer than local_rank + 1.
[[nodiscard]] int device_for_local_rank(int local_rank, int device_count);

}  // namespace racksim::exec
