// The multi-process bootstrap of `racksim bench collectives` under a real MPI launcher, without a
// GPU (CTest runs it as `mpirun -np 2`): exec::bootstrap_ranks with a 128-byte buffer in place of
// the NCCL unique id. Rank 0 fills it with bytes only it knows (from its pid and the clock);
// every other rank starts from 0xEE. Checked on rank 0 after an MPI_Gather: every rank holds
// rank 0's bytes, only rank 0 made an id, and the local ranks on this node are distinct and
// within 0..n-1 (so each rank would take its own GPU). Then racksim exec's two agreements over
// real MPI: the fewest layers any rank fits, and all-or-none graph replay. Exit 0 on success, 1 on
// any failure.

#include <mpi.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cmath>
#include <cstring>
#include <exception>
#include <random>
#include <set>
#include <span>
#include <vector>

#include "racksim/exec/process_group.hpp"
#include "racksim/exec/step_backend.hpp"

namespace {

constexpr int kIdBytes = 128;  // NCCL_UNIQUE_ID_BYTES

int run() {
  const auto group = racksim::exec::mpi_group();  // MPI_Init
  const int rank = group->rank(), size = group->size();
  std::vector<std::byte> id(kIdBytes, std::byte{0xEE});
  int made = 0;
  const auto make_id = [&](std::span<std::byte> bytes) {
    ++made;
    std::mt19937_64 rng(static_cast<std::uint64_t>(::getpid()) ^
                        static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
    for (auto& b : bytes) b = static_cast<std::byte>(rng() & 0xFF);
  };
  const racksim::exec::RankPlacement p = racksim::exec::bootstrap_ranks(*group, id, make_id, racksim::exec::process_env());
  std::printf("rank %d of %d: local rank %d (from %s), %d node(s), made %d id(s)\n", p.rank, p.ranks, p.local_rank,
              p.local_rank_from.c_str(), p.nodes, made);

  // Everything to rank 0: the id bytes, the local rank, how many ids were made, and the node rank.
  std::vector<unsigned char> mine(kIdBytes + 3 * sizeof(int));
  std::memcpy(mine.data(), id.data(), kIdBytes);
  const int extra[3] = {p.local_rank, made, group->node_rank()};
  std::memcpy(mine.data() + kIdBytes, extra, sizeof extra);
  std::vector<unsigned char> all(mine.size() * static_cast<std::size_t>(size));
  if (MPI_Gather(mine.data(), static_cast<int>(mine.size()), MPI_BYTE, all.data(), static_cast<int>(mine.size()), MPI_BYTE, 0,
                 MPI_COMM_WORLD) != MPI_SUCCESS) {
    std::printf("rank %d: MPI_Gather failed\n", rank);
    return 1;
  }
  int failures = 0;
  if (p.rank != rank || p.ranks != size) {
    std::printf("rank %d: placement says rank %d of %d\n", rank, p.rank, p.ranks);
    ++failures;
  }
  if (rank == 0) {
    if (size < 2) {
      std::printf("FAIL: run under `mpirun -np 2` (world size %d)\n", size);
      ++failures;
    }
    const std::vector<std::byte> untouched(kIdBytes, std::byte{0xEE});
    if (id == untouched) {
      std::printf("FAIL: rank 0's id was never filled\n");
      ++failures;
    }
    std::set<int> local_ranks;
    int ids_made = 0;
    for (int r = 0; r < size; ++r) {
      const unsigned char* rec = all.data() + static_cast<std::size_t>(r) * mine.size();
      if (std::memcmp(rec, id.data(), kIdBytes) != 0) {
        std::printf("FAIL: rank %d holds other id bytes than rank 0\n", r);
        ++failures;
      }
      int got[3];
      std::memcpy(got, rec + kIdBytes, sizeof got);
      ids_made += got[1];
      if (got[0] < 0 || got[0] >= size || !local_ranks.insert(got[0]).second) {
        std::printf("FAIL: rank %d's local rank %d repeats or is outside 0..%d (all on one node here)\n", r, got[0], size - 1);
        ++failures;
      }
    }
    if (ids_made != 1) {
      std::printf("FAIL: %d ids made; only rank 0 makes one\n", ids_made);
      ++failures;
    }
    std::printf("%s: %d ranks hold rank 0's 128 id bytes, local ranks distinct\n", failures ? "FAILED" : "passed", size);
  }
  // racksim exec's agreements (process_group.hpp): rank r fits 80 - r layers, so all run
  // 80 - (size - 1); only the last rank cannot replay, so none does; when all can, all do.
  const int fewest = racksim::exec::fewest_over_ranks(*group, 80 - rank);
  const bool none_replay = !racksim::exec::all_ranks(*group, rank != size - 1);
  const bool all_replay = racksim::exec::all_ranks(*group, true);
  if (fewest != 80 - (size - 1) || !none_replay || !all_replay) {
    std::printf("FAIL: rank %d: fewest layers %d (want %d), replay agreement %d/%d (want 1/1)\n", rank, fewest, 80 - (size - 1),
                none_replay, all_replay);
    ++failures;
  }
  // The decode step's power window over the ranks (power_over_ranks): rank r measured 10 (r + 1) J
  // and 100 (r + 1) W on its GPU over 0.1 (r + 1) s; the group: 10 x size (size + 1) / 2 J,
  // 100 x size (size + 1) / 2 W, size GPUs, the last rank's 0.1 x size s, the mean of the ranks'
  // clocks 1000 + 100 r (1000 + 50 (size - 1)), every rank's clock-event bit r. When the last rank has
  // no counter, no rank reports a window.
  const racksim::exec::StepPower window{7, 0.1 * (rank + 1), 10.0 * (rank + 1), 100.0 * (rank + 1), 1, 1000.0 + 100 * rank,
                                        std::uint64_t{1} << rank};
  const auto summed = racksim::exec::power_over_ranks(*group, window);
  const double tri = size * (size + 1) / 2.0;
  if (!summed || summed->steps != 7 || summed->gpus != size || std::abs(summed->energy_j - 10 * tri) > 1e-9 || std::abs(summed->power_w - 100 * tri) > 1e-9 ||
      std::abs(summed->seconds - 0.1 * size) > 1e-12 || std::abs(summed->sm_clock_mhz - (1000.0 + 50.0 * (size - 1))) > 1e-9 ||
      summed->clock_events != (std::uint64_t{1} << size) - 1) {
    std::printf("FAIL: rank %d: power over ranks %s\n", rank, summed ? "has the wrong sums" : "missing");
    ++failures;
  }
  const auto partial = racksim::exec::power_over_ranks(*group, rank == size - 1 ? std::nullopt : std::optional(window));
  if (partial) {
    std::printf("FAIL: rank %d: a power window although rank %d had none\n", rank, size - 1);
    ++failures;
  }
  int any = failures;
  MPI_Allreduce(MPI_IN_PLACE, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return any ? 1 : 0;
}

}  // namespace

int main() {
  try {
    return run();
  } catch (const std::exception& e) {
    std::printf("error: %s\n", e.what());
    return 1;
  }
}
