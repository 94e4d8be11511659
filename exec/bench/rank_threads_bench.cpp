// racksim_rank_threads_bench (docs/executor.md, "Host overhead per step"): the per-step cost of
// running tensor-parallel ranks, a thread started per rank per step (the executor before) vs
// RankThreads (workers kept), both in one run. Empty work, so the figure is the overhead.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <thread>
#include <vector>
#include "racksim/exec/tensor_parallel.hpp"
using Clock = std::chrono::steady_clock;
static double median(std::vector<double> v) { std::sort(v.begin(), v.end()); return v[v.size() / 2]; }
int main() {
  const int steps = 2000;
  for (int tp : {2, 4, 8}) {
    std::vector<double> spawn, kept;
    racksim::exec::RankThreads threads(tp);
    std::vector<int> sink(static_cast<std::size_t>(tp));
    std::function<void(int)> work = [&](int r) { sink[static_cast<std::size_t>(r)] += 1; };
    for (int rep = 0; rep < 7; ++rep) {
      auto t0 = Clock::now();
      for (int s = 0; s < steps; ++s) {
        std::vector<std::thread> t;
        for (int r = 1; r < tp; ++r) t.emplace_back(work, r);
        work(0);
        for (auto& x : t) x.join();
      }
      spawn.push_back(std::chrono::duration<double>(Clock::now() - t0).count() / steps * 1e6);
      t0 = Clock::now();
      for (int s = 0; s < steps; ++s) threads.run(work);
      kept.push_back(std::chrono::duration<double>(Clock::now() - t0).count() / steps * 1e6);
    }
    std::printf("tp %d: thread per step %.1f us, kept workers %.1f us, ratio %.2f (median of 7 x %d steps)\n", tp,
                median(spawn), median(kept), median(spawn) / median(kept), steps);
  }
}
