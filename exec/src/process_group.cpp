// The multi-process bootstrap of the collectives bench (process_group.hpp). The one file that
// tests RACKSIM_HAVE_MPI: without MPI, mpi_group() says so and everything else still works
// (launcher detection, local-rank choice, device choice are plain host code).

#include "racksim/exec/process_group.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string_view>

#include <fmt/format.h>

#include "racksim/common/error.hpp"
#include "racksim/exec/step_backend.hpp"

#ifdef RACKSIM_HAVE_MPI
#include <mpi.h>
#endif

namespace racksim::exec {

namespace {

/// The variable's value as a non-negative int, or -1 when unset or not one.
int env_int(const EnvLookup& env, const char* name) {
  const char* v = env(name);
  if (!v || !*v) return -1;
  long long x = 0;
  for (const char* p = v; *p; ++p) {
    if (*p < '0' || *p > '9') return -1;
    x = x * 10 + (*p - '0');
    if (x > std::numeric_limits<int>::max()) return -1;
  }
  return static_cast<int>(x);
}

}  // namespace

void SingleProcess::abort(int code) {
  std::fflush(nullptr);
  std::_Exit(code);
}

EnvLookup process_env() {
  return [](const char* name) -> const char* { return std::getenv(name); };
}

int launcher_world_size(const EnvLookup& env, std::string* source) {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"}) {
    const int n = env_int(env, name);
    if (n >= 1) {
      if (source) *source = name;
      return n;
    }
  }
  if (source) source->clear();
  return 1;
}

int launcher_local_rank(const EnvLookup& env, std::string* source) {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"}) {
    const int r = env_int(env, name);
    if (r >= 0) {
      if (source) *source = name;
      return r;
    }
  }
  if (source) source->clear();
  return -1;
}

bool valid_local_ranks(std::span<const int> local_ranks) {
  std::vector<int> v(local_ranks.begin(), local_ranks.end());
  std::sort(v.begin(), v.end());
  const int n = static_cast<int>(v.size());
  for (int i = 0; i < n; ++i)
    if (v[static_cast<std::size_t>(i)] < 0 || v[static_cast<std::size_t>(i)] >= n || (i > 0 && v[static_cast<std::size_t>(i)] == v[static_cast<std::size_t>(i - 1)]))
      return false;
  return true;
}

RankPlacement bootstrap_ranks(ProcessGroup& group, std::span<std::byte> id, const std::function<void(std::span<std::byte>)>& make_id,
                              const EnvLookup& env) {
  if (group.rank() == 0) make_id(id);
  group.broadcast(id, 0);
  RankPlacement p;
  p.rank = group.rank();
  p.ranks = group.size();
  p.nodes = group.nodes();
  std::string source;
  const int from_env = launcher_local_rank(env, &source);
  // Every process on the node takes part, whatever its own environment says, so the gather
  // never waits on a process that skipped it.
  const std::vector<int> on_node = group.node_gather(from_env);
  if (from_env >= 0 && valid_local_ranks(on_node)) {
    p.local_rank = from_env;
    p.local_rank_from = source;
  } else {
    p.local_rank = group.node_rank();
    p.local_rank_from = source.empty() ? std::string("MPI_Comm_split_type(SHARED)")
                                       : fmt::format("MPI_Comm_split_type(SHARED); {} is not distinct on this node", source);
  }
  return p;
}

int fewest_over_ranks(ProcessGroup& group, int value) {
  std::array<double, 1> v{-static_cast<double>(value)};  // exact: every int is a double
  group.max(v);                                          // the largest negation: the fewest
  return static_cast<int>(-v[0]);
}

std::optional<StepPower> power_over_ranks(ProcessGroup& group, const std::optional<StepPower>& mine) {
  // max: any rank without a window; the longest window; then each clock-event bit any rank saw.
  std::array<double, 2 + 64> most{};
  most[0] = mine ? 0.0 : 1.0;
  most[1] = mine ? mine->seconds : 0.0;
  for (int b = 0; b < 64; ++b) most[2 + b] = mine && (mine->clock_events >> b & 1U) ? 1.0 : 0.0;
  // sum: energy, power, GPUs, and the SM clock weighted by GPUs (for its mean over them).
  std::array<double, 4> total{mine ? mine->energy_j : 0.0, mine ? mine->power_w : 0.0, mine ? static_cast<double>(mine->gpus) : 0.0,
                              mine ? mine->sm_clock_mhz * mine->gpus : 0.0};
  group.max(most);
  group.sum(total);
  if (most[0] > 0 || !mine) return std::nullopt;
  StepPower p = *mine;
  p.seconds = most[1];
  p.energy_j = total[0];
  p.power_w = total[1];
  p.gpus = static_cast<int>(total[2]);
  p.sm_clock_mhz = total[2] > 0 ? total[3] / total[2] : 0.0;
  p.clock_events = 0;
  for (int b = 0; b < 64; ++b)
    if (most[2 + b] > 0) p.clock_events |= std::uint64_t{1} << b;
  return p;
}

bool all_ranks(ProcessGroup& group, bool value) {
  std::array<double, 1> v{value ? 0.0 : 1.0};  // 1 on any rank that cannot
  group.max(v);
  return v[0] == 0.0;
}

int device_for_local_rank(int local_rank, int device_count) {
  if (device_count < 1) throw InfeasibleError("no CUDA device: this process sees none");
  if (device_count == 1) return 0;
  if (local_rank < 0 || local_rank >= device_count)
    throw InfeasibleError(fmt::format("local rank {} has no GPU of its own: this process sees {} CUDA devices (cuda:0..cuda:{}); "
                                      "start at most {} processes per node, or give each its GPU through CUDA_VISIBLE_DEVICES",
                                      local_rank, device_count, device_count - 1, device_count));
  return local_rank;
}

#ifdef RACKSIM_HAVE_MPI

namespace {

void mpi_check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw Error(ExitCode::internal, fmt::format("MPI error in {}: {}", what, std::string_view(msg, static_cast<std::size_t>(len))));
}

/// MPI_COMM_WORLD and the communicator of this node's processes (MPI_Comm_split_type SHARED).
class MpiGroup final : public ProcessGroup {
 public:
  MpiGroup() {
    int initialized = 0;
    mpi_check(MPI_Initialized(&initialized), "MPI_Initialized");
    if (!initialized) {
      mpi_check(MPI_Init(nullptr, nullptr), "MPI_Init");
      owns_ = true;
    }
    // Errors come back as return codes (checked) rather than ending the process unexplained.
    mpi_check(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    mpi_check(MPI_Comm_rank(MPI_COMM_WORLD, &rank_), "MPI_Comm_rank");
    mpi_check(MPI_Comm_size(MPI_COMM_WORLD, &size_), "MPI_Comm_size");
    mpi_check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node_), "MPI_Comm_split_type");
    mpi_check(MPI_Comm_rank(node_, &node_rank_), "MPI_Comm_rank(node)");
    mpi_check(MPI_Comm_size(node_, &node_size_), "MPI_Comm_size(node)");
    int leader = node_rank_ == 0 ? 1 : 0;
    mpi_check(MPI_Allreduce(&leader, &nodes_, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce(nodes)");
  }
  ~MpiGroup() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;
    if (node_ != MPI_COMM_NULL) MPI_Comm_free(&node_);
    if (owns_) MPI_Finalize();
  }
  MpiGroup(const MpiGroup&) = delete;
  MpiGroup& operator=(const MpiGroup&) = delete;

  [[nodiscard]] int rank() const override { return rank_; }
  [[nodiscard]] int size() const override { return size_; }
  [[nodiscard]] int node_rank() const override { return node_rank_; }
  [[nodiscard]] int node_size() const override { return node_size_; }
  [[nodiscard]] int nodes() const override { return nodes_; }

  void broadcast(std::span<std::byte> bytes, int root) override {
    if (bytes.size() > static_cast<std::size_t>(std::numeric_limits<int>::max()))
      throw Error(ExitCode::internal, fmt::format("MPI_Bcast of {} bytes: over INT_MAX", bytes.size()));
    mpi_check(MPI_Bcast(bytes.data(), static_cast<int>(bytes.size()), MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
  }

  void max(std::span<double> values) override {
    if (values.empty()) return;
    mpi_check(MPI_Allreduce(MPI_IN_PLACE, values.data(), static_cast<int>(values.size()), MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD),
              "MPI_Allreduce(MAX)");
  }

  void sum(std::span<double> values) override {
    if (values.empty()) return;
    mpi_check(MPI_Allreduce(MPI_IN_PLACE, values.data(), static_cast<int>(values.size()), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD),
              "MPI_Allreduce(SUM)");
  }

  [[nodiscard]] std::vector<int> node_gather(int value) override {
    std::vector<int> all(static_cast<std::size_t>(node_size_));
    mpi_check(MPI_Allgather(&value, 1, MPI_INT, all.data(), 1, MPI_INT, node_), "MPI_Allgather(node)");
    return all;
  }

  [[noreturn]] void abort(int code) override {
    std::fflush(nullptr);
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);  // MPI_Abort does not return; if an implementation did, still end here.
  }

 private:
  bool owns_ = false;
  int rank_ = 0, size_ = 1, node_rank_ = 0, node_size_ = 1, nodes_ = 1;
  MPI_Comm node_ = MPI_COMM_NULL;
};

}  // namespace

bool mpi_built() noexcept { return true; }
std::unique_ptr<ProcessGroup> mpi_group() { return std::make_unique<MpiGroup>(); }

#else

bool mpi_built() noexcept { return false; }
std::unique_ptr<ProcessGroup> mpi_group() {
  throw InfeasibleError("built without MPI: this racksim has no multi-process collectives (RACKSIM_MPI=OFF or no MPI at configure time; "
                        "Debian: libopenmpi-dev); run one process over this node's GPUs instead");
}

#endif

}  // namespace racksim::exec
