// exec/collectives.hpp and exec/process_group.hpp without a GPU or MPI: the collectives sweep
// (nccl-tests sizes, counts, bus bandwidth), its records, and the multi-process bootstrap's
// choices (launcher detection, local rank, device) and racksim exec's agreements over a fake
// process group.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "racksim/common/error.hpp"
#include "racksim/common/measurement.hpp"
#include "racksim/exec/collectives.hpp"
#include "racksim/exec/process_group.hpp"
#include "racksim/exec/step_backend.hpp"

using namespace racksim;
using namespace racksim::exec;

namespace {

/// Environment from a map (nullptr for a missing name, as getenv).
EnvLookup env_of(const std::map<std::string, std::string>& vars) {
  return [vars](const char* name) -> const char* {
    const auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}

/// One rank of a pretend run: broadcast copies `root_bytes`, node_gather returns what the test
/// says the other processes on the node hold (with this rank's own value at its node_rank).
class FakeGroup final : public ProcessGroup {
 public:
  FakeGroup(int rank, int size, int node_rank, std::vector<int> node_values, std::vector<std::byte> root_bytes)
      : rank_(rank), size_(size), node_rank_(node_rank), node_values_(std::move(node_values)), root_bytes_(std::move(root_bytes)) {}
  [[nodiscard]] int rank() const override { return rank_; }
  [[nodiscard]] int size() const override { return size_; }
  [[nodiscard]] int node_rank() const override { return node_rank_; }
  [[nodiscard]] int node_size() const override { return static_cast<int>(node_values_.size()); }
  [[nodiscard]] int nodes() const override { return 2; }
  void broadcast(std::span<std::byte> bytes, int root) override {
    CHECK(root == 0);
    if (rank_ != 0) std::copy(root_bytes_.begin(), root_bytes_.begin() + static_cast<std::ptrdiff_t>(bytes.size()), bytes.begin());
  }
  /// What the other ranks contribute to max(), element by element (empty: nothing).
  std::vector<double> others_max;
  void max(std::span<double> values) override {
    for (std::size_t i = 0; i < values.size() && i < others_max.size(); ++i) values[i] = std::max(values[i], others_max[i]);
  }
  /// What the other ranks add in sum(), element by element (empty: nothing).
  std::vector<double> others_sum;
  void sum(std::span<double> values) override {
    for (std::size_t i = 0; i < values.size() && i < others_sum.size(); ++i) values[i] += others_sum[i];
  }
  [[nodiscard]] std::vector<int> node_gather(int value) override {
    std::vector<int> v = node_values_;
    v[static_cast<std::size_t>(node_rank_)] = value;
    ++gathers;
    return v;
  }
  [[noreturn]] void abort(int) override { throw Error(ExitCode::internal, "abort"); }
  int gathers = 0;

 private:
  int rank_, size_, node_rank_;
  std::vector<int> node_values_;
  std::vector<std::byte> root_bytes_;
};

}  // namespace

TEST_CASE("collective cases follow nccl-tests sizes and counts", "[exec][collectives]") {
  // all_reduce 1 MiB of bf16 on 8 ranks: 524,288 elements in and out on each rank.
  const CollectiveCase ar = collective_case(CollectiveOp::all_reduce, CollectiveDType::bf16, 1 << 20, 8);
  CHECK((ar.count == 524288 && ar.send_count == 524288 && ar.recv_count == 524288));
  CHECK(ar.size_bytes() == 1048576.0);
  // all_gather: size is the gathered output, each rank sends 1/8 of it (NCCL sendcount).
  const CollectiveCase ag = collective_case(CollectiveOp::all_gather, CollectiveDType::fp32, 1 << 20, 8);
  CHECK((ag.count == 32768 && ag.send_count == 32768 && ag.recv_count == 262144));
  CHECK((ag.send_bytes() == 131072.0 && ag.recv_bytes() == 1048576.0 && ag.size_bytes() == 1048576.0));
  // reduce_scatter: size is each rank's input, NCCL's recvcount is 1/8 of it.
  const CollectiveCase rs = collective_case(CollectiveOp::reduce_scatter, CollectiveDType::fp32, 1 << 20, 8);
  CHECK((rs.count == 32768 && rs.send_count == 262144 && rs.recv_count == 32768 && rs.size_bytes() == 1048576.0));
  // 3 ranks, 1 KiB of fp32 = 256 elements: 85 per rank, 255 timed (nccl-tests rounds down).
  const CollectiveCase odd = collective_case(CollectiveOp::all_gather, CollectiveDType::fp32, 1024, 3);
  CHECK((odd.count == 85 && odd.recv_count == 255 && odd.size_bytes() == 1020.0));
  // Too small to give every rank an element: count 0, and the sweep leaves it out.
  CHECK(collective_case(CollectiveOp::reduce_scatter, CollectiveDType::fp32, 4, 2).count == 0);
  CHECK_THROWS_AS(collective_case(CollectiveOp::all_reduce, CollectiveDType::fp32, 1024, 0), InputError);
  CHECK_THROWS_AS(collective_case(CollectiveOp::all_reduce, CollectiveDType::fp32, 0, 2), InputError);
}

TEST_CASE("collective sweep: 1 KiB .. 1 GiB, three ops, skipped tiny cases", "[exec][collectives]") {
  const auto sizes = collective_sizes();
  REQUIRE(sizes.size() == 21);  // 2^10 .. 2^30
  CHECK((sizes.front() == 1024 && sizes.back() == 1073741824.0));
  CHECK(collective_sizes(1000, 5000) == std::vector<double>{1024, 2048, 4096});
  CHECK_THROWS_AS(collective_sizes(0, 10), InputError);
  CHECK_THROWS_AS(collective_sizes(4096, 1024), InputError);
  const std::vector<CollectiveOp> ops = {CollectiveOp::all_reduce, CollectiveOp::all_gather, CollectiveOp::reduce_scatter};
  const std::vector<CollectiveDType> dtypes = {CollectiveDType::bf16, CollectiveDType::fp32};
  CHECK(collective_sweep(ops, dtypes, sizes, 8).size() == 3 * 2 * 21);
  // 4 bytes on 4 ranks: all_reduce of 1 fp32 element runs; gather/scatter of fp32 need 16 bytes.
  const std::vector<double> tiny = {4};
  const std::vector<CollectiveDType> fp32 = {CollectiveDType::fp32};
  const auto t = collective_sweep(ops, fp32, tiny, 4);
  REQUIRE(t.size() == 1);
  CHECK(t[0].op == CollectiveOp::all_reduce);
  CHECK(parse_collective_op("all_gather", "--ops") == CollectiveOp::all_gather);
  CHECK_THROWS_WITH(parse_collective_op("all_to_all", "--ops"),
                    Catch::Contains("--ops: 'all_to_all' is not one of all_reduce, all_gather, reduce_scatter"));
  CHECK(parse_collective_dtype("fp16", "--dtypes") == CollectiveDType::fp16);
  CHECK_THROWS_WITH(parse_collective_dtype("nvfp4", "--dtypes"), Catch::Contains("allowed: fp32, bf16, fp16, int8"));
  CHECK((element_bytes(CollectiveDType::fp32) == 4 && element_bytes(CollectiveDType::bf16) == 2 &&
         element_bytes(CollectiveDType::int8) == 1));
}

TEST_CASE("collective records: schema kinds, algbw and busbw as nccl-tests defines them", "[exec][collectives]") {
  // nccl-tests doc/PERFORMANCE.md: algbw = size / time; busbw = algbw x 2(n-1)/n (all-reduce),
  // x (n-1)/n (all-gather, reduce-scatter). 8 ranks, 1 GiB all-reduce in 5 ms: algbw 214.7 GB/s,
  // busbw 214.7 x 14/8 = 375.8 GB/s.
  const CollectiveCase ar = collective_case(CollectiveOp::all_reduce, CollectiveDType::bf16, 1073741824.0, 8);
  const MeasurementRecord r = collective_record(ar, TimingStats{5e-3, 4.9e-3, 5.2e-3, 13});
  CHECK(r.op.identity() == "all_reduce ranks=8 bytes=1073741824 dtype=bf16");
  CHECK(algbw(r) == Approx(1073741824.0 / 5e-3));
  CHECK(busbw(r) == Approx(1073741824.0 / 5e-3 * 14.0 / 8.0));
  const MeasurementRecord g =
      collective_record(collective_case(CollectiveOp::all_gather, CollectiveDType::fp32, 1 << 20, 4), TimingStats{1e-5, 1e-5, 1e-5, 50});
  CHECK(busbw(g) == Approx(1048576.0 / 1e-5 * 3.0 / 4.0));
  CHECK((bus_factor(CollectiveOp::all_reduce, 2) == 1.0 && bus_factor(CollectiveOp::reduce_scatter, 2) == 0.5));
  CHECK(bus_factor(CollectiveOp::all_reduce, 1) == 0.0);  // one rank: nothing crosses a link
  // The records round-trip through the schema calibrate reads.
  MeasurementFile f;
  f.run.device = "NVIDIA H100 80GB HBM3";
  f.run.source = "racksim bench collectives";
  f.run.nccl = nccl_version_text(22809);
  f.records = {r, g, collective_record(collective_case(CollectiveOp::reduce_scatter, CollectiveDType::int8, 4096, 2), TimingStats{1e-5, 1e-5, 1e-5, 3})};
  const MeasurementFile back = parse_measurements(format_measurements(f), "c.json");
  REQUIRE(back.records.size() == 3);
  CHECK(back.run.nccl == "2.28.9");
  CHECK(back.records[1].op.identity() == "all_gather ranks=4 bytes=1048576 dtype=fp32");
  CHECK(back.records[2].op.identity() == "reduce_scatter ranks=2 bytes=4096 dtype=int8");
  CHECK(*back.records[0].time_max_s == 5.2e-3);
  // NCCL version codes: X*10000 + Y*100 + Z from 2.9, X*1000 + Y*100 + Z before.
  CHECK(nccl_version_text(22905) == "2.29.5");
  CHECK(nccl_version_text(2804) == "2.8.4");
  CHECK(nccl_version_text(0).empty());
}

TEST_CASE("launcher environment: world size and local rank", "[exec][collectives][mpi]") {
  std::string src;
  CHECK(launcher_world_size(env_of({}), &src) == 1);
  CHECK(src.empty());
  CHECK(launcher_world_size(env_of({{"OMPI_COMM_WORLD_SIZE", "16"}, {"SLURM_STEP_NUM_TASKS", "2"}}), &src) == 16);
  CHECK(src == "OMPI_COMM_WORLD_SIZE");
  CHECK(launcher_world_size(env_of({{"SLURM_STEP_NUM_TASKS", "8"}}), &src) == 8);
  CHECK(launcher_world_size(env_of({{"PMI_SIZE", "x"}}), &src) == 1);  // not a number: ignored
  // Open MPI's own variable wins over an inherited Slurm one.
  CHECK(launcher_local_rank(env_of({{"SLURM_LOCALID", "0"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "3"}}), &src) == 3);
  CHECK(src == "OMPI_COMM_WORLD_LOCAL_RANK");
  CHECK(launcher_local_rank(env_of({{"SLURM_LOCALID", "5"}}), &src) == 5);
  CHECK(launcher_local_rank(env_of({{"SLURM_LOCALID", "-1"}}), &src) == -1);
  CHECK(launcher_local_rank(env_of({}), &src) == -1);
  CHECK(valid_local_ranks(std::vector<int>{2, 0, 1}));
  CHECK_FALSE(valid_local_ranks(std::vector<int>{0, 0}));    // mpirun in an sbatch script: every rank inherits SLURM_LOCALID=0
  CHECK_FALSE(valid_local_ranks(std::vector<int>{0, 2}));    // 2 is no rank of a 2-process node
  CHECK_FALSE(valid_local_ranks(std::vector<int>{-1, 0}));   // one process without the variable
}

TEST_CASE("bootstrap: rank 0's id reaches every rank; the local rank picks the GPU", "[exec][collectives][mpi]") {
  std::vector<std::byte> root_id(128);
  for (std::size_t i = 0; i < root_id.size(); ++i) root_id[i] = static_cast<std::byte>(i * 7 + 3);
  int made = 0;
  const auto make_id = [&](std::span<std::byte> b) {
    ++made;
    std::copy(root_id.begin(), root_id.end(), b.begin());
  };
  SECTION("rank 0 makes the id; launcher local ranks are distinct, so they are used") {
    FakeGroup g(0, 4, 0, {0, 1}, {});
    std::vector<std::byte> id(128, std::byte{0xEE});
    const RankPlacement p = bootstrap_ranks(g, id, make_id, env_of({{"OMPI_COMM_WORLD_LOCAL_RANK", "0"}}));
    CHECK(made == 1);
    CHECK(id == root_id);
    CHECK((p.rank == 0 && p.ranks == 4 && p.local_rank == 0 && p.nodes == 2 && p.local_rank_from == "OMPI_COMM_WORLD_LOCAL_RANK"));
    CHECK(g.gathers == 1);
  }
  SECTION("another rank receives rank 0's bytes and never makes an id") {
    FakeGroup g(3, 4, 1, {0, 1}, root_id);
    std::vector<std::byte> id(128, std::byte{0xEE});
    const RankPlacement p = bootstrap_ranks(g, id, make_id, env_of({{"SLURM_LOCALID", "1"}}));
    CHECK(made == 0);
    CHECK(id == root_id);
    CHECK((p.rank == 3 && p.local_rank == 1 && p.local_rank_from == "SLURM_LOCALID"));
  }
  SECTION("an inherited SLURM_LOCALID (0 on every rank) falls back to the node rank") {
    FakeGroup g(1, 2, 1, {0, 0}, root_id);
    std::vector<std::byte> id(128);
    const RankPlacement p = bootstrap_ranks(g, id, make_id, env_of({{"SLURM_LOCALID", "0"}}));
    CHECK(p.local_rank == 1);
    CHECK(p.local_rank_from.find("MPI_Comm_split_type(SHARED); SLURM_LOCALID is not distinct") == 0);
  }
  SECTION("no launcher variable: the node rank, and the gather still runs (every process takes part)") {
    FakeGroup g(1, 2, 1, {0, 1}, root_id);
    std::vector<std::byte> id(128);
    const RankPlacement p = bootstrap_ranks(g, id, make_id, env_of({}));
    CHECK((p.local_rank == 1 && p.local_rank_from == "MPI_Comm_split_type(SHARED)"));
    CHECK(g.gathers == 1);
  }
  SECTION("one process alone: SingleProcess") {
    SingleProcess g;
    std::vector<std::byte> id(128);
    const RankPlacement p = bootstrap_ranks(g, id, make_id, env_of({}));
    CHECK((made == 1 && id == root_id && p.rank == 0 && p.ranks == 1 && p.local_rank == 0));
  }
}

TEST_CASE("racksim exec under MPI: the ranks agree on the fewest layers and on replaying all or none", "[exec][collectives][mpi]") {
  FakeGroup g(1, 2, 1, {0, 0}, {});
  // The other rank's contribution is what it sends to max(): the negation of its layer count, and
  // 1 for "cannot replay", 0 for "can" (process_group.cpp).
  g.others_max = {-40.0};
  CHECK(fewest_over_ranks(g, 80) == 40);  // the other rank's GPU fits 40 layers: both run 40
  CHECK(fewest_over_ranks(g, 12) == 12);
  g.others_max = {-2147483647.0};
  CHECK(fewest_over_ranks(g, 2147483647) == 2147483647);  // INT_MAX survives the double round trip
  g.others_max = {1.0};                                   // the other rank cannot replay
  CHECK_FALSE(all_ranks(g, true));                        // so this one must not either
  CHECK_FALSE(all_ranks(g, false));
  g.others_max = {0.0};
  CHECK(all_ranks(g, true));
  CHECK_FALSE(all_ranks(g, false));
  SingleProcess alone;  // max() is the identity: a process's own answer
  CHECK(fewest_over_ranks(alone, 7) == 7);
  CHECK(all_ranks(alone, true));
  CHECK_FALSE(all_ranks(alone, false));
}

TEST_CASE("the device of a local rank", "[exec][collectives][mpi]") {
  CHECK(device_for_local_rank(3, 8) == 3);
  CHECK(device_for_local_rank(5, 1) == 0);  // srun --gpus-per-task=1: each process sees its own GPU as cuda:0
  CHECK_THROWS_WITH(device_for_local_rank(8, 8), Catch::Contains("local rank 8 has no GPU of its own: this process sees 8 CUDA devices"));
  CHECK_THROWS_AS(device_for_local_rank(0, 0), InfeasibleError);
  if (!mpi_built()) CHECK_THROWS_WITH(mpi_group(), Catch::Contains("built without MPI"));
}

TEST_CASE("an MPI run's power window sums every rank's GPU, or has none when a rank has none", "[exec][collectives]") {
  // This rank: 5 replays in 0.1 s, 10 J, 100 W on 1 GPU; the other ranks (3 GPUs) add 20 J and
  // 200 W, the longest of their windows 0.3 s: the group's 30 J (6 J per step), 300 W, 4 GPUs, 0.3 s.
  FakeGroup g(0, 4, 0, {0}, {});
  // Clocks: this GPU 1700 MHz, the other three 1500 (4,500 MHz x GPU summed): 6,200 / 4 = 1550;
  // clock events: this rank's sw_power_cap (0x4), another's hw_thermal (bit 6 of the max's flags).
  std::vector<double> max_flags(2 + 64, 0.0);
  max_flags[1] = 0.3;
  max_flags[2 + 6] = 1.0;
  g.others_max = max_flags;
  g.others_sum = {20.0, 200.0, 3.0, 4500.0};
  const StepPower mine{5, 0.1, 10.0, 100.0, 1, 1700.0, 0x4};
  const std::optional<StepPower> p = power_over_ranks(g, mine);
  REQUIRE(p.has_value());
  CHECK(p->steps == 5);
  CHECK(p->seconds == Approx(0.3));
  CHECK(p->energy_j == Approx(30.0));
  CHECK(p->energy_per_step_j() == Approx(6.0));
  CHECK(p->power_w == Approx(200.0 + 100.0));
  CHECK(p->gpus == 4);
  CHECK(p->sm_clock_mhz == Approx(1550.0));
  CHECK(p->clock_events == (0x4 | 0x40));
  // Another rank without a counter (its flag 1 in the max): none here either; none here: none.
  max_flags[0] = 1.0;
  g.others_max = max_flags;
  CHECK_FALSE(power_over_ranks(g, mine).has_value());
  max_flags[0] = 0.0;
  g.others_max = max_flags;
  CHECK_FALSE(power_over_ranks(g, std::nullopt).has_value());
  // One process on its own: its own window.
  SingleProcess one;
  const std::optional<StepPower> alone = power_over_ranks(one, mine);
  REQUIRE(alone.has_value());
  CHECK(alone->energy_j == 10.0);
  CHECK(alone->gpus == 1);
}
