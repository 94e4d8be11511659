// exec/bench.hpp, the host side of a `racksim bench` run without a GPU: --device parsing, the
// progress lines, and what an interrupted run keeps (a real SIGINT / SIGTERM raised mid-sweep).

#include <catch2/catch.hpp>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include "racksim/common/error.hpp"
#include "racksim/common/measurement.hpp"
#include "racksim/exec/bench.hpp"
#include "test_support.hpp"

using namespace racksim;
using namespace racksim::exec;

namespace {

/// A sweep of `points` launch records whose point `signal_at` receives `sig` while it runs
/// (as a Ctrl-C lands during a measurement); -1 for none.
std::function<void(const RecordSink&)> fake_sweep(int points, int signal_at, int sig) {
  return [=](const RecordSink& sink) {
    for (int i = 0; i < points; ++i) {
      if (i == signal_at) std::raise(sig);
      sink(launch_record("kernel", TimingStats{1e-6 * (i + 1), 1e-6, 1e-5, 20}));
    }
  };
}

std::string read_all(std::FILE* f) {
  std::rewind(f);
  std::string s;
  for (int c = std::fgetc(f); c != EOF; c = std::fgetc(f)) s.push_back(static_cast<char>(c));
  return s;
}

}  // namespace

TEST_CASE("the bench device option takes cuda:N with N a visible device", "[exec][bench]") {
  CHECK(parse_cuda_device("cuda:0", 2) == 0);
  CHECK(parse_cuda_device("cuda:1", 2) == 1);
  CHECK(parse_cuda_device("cuda:7", 0) == 7);  // no device seen: the bench itself reports "no CUDA device" (exit 3)
  CHECK_THROWS_WITH(parse_cuda_device("cpu", 2), Catch::Contains("--device: 'cpu' is not allowed; use cuda:N"));
  CHECK_THROWS_AS(parse_cuda_device("cuda:x", 2), InputError);
  CHECK_THROWS_AS(parse_cuda_device("cuda:", 2), InputError);
  CHECK_THROWS_AS(parse_cuda_device("cuda:-1", 2), InputError);
  CHECK_THROWS_AS(parse_cuda_device("CUDA:0", 2), InputError);
  CHECK_THROWS_AS(parse_cuda_device("cuda:99999999999", 0), InputError);
  CHECK_THROWS_WITH(parse_cuda_device("cuda:2", 2), Catch::Contains("'cuda:2' is not a visible device; allowed: cuda:0..cuda:1 (2 CUDA devices visible)"));
  CHECK_THROWS_WITH(parse_cuda_device("cuda:1", 1), Catch::Contains("allowed: cuda:0 (1 CUDA device visible)"));
}

TEST_CASE("progress: one line per point, or one line rewritten on a terminal", "[exec][bench]") {
  CHECK(progress_line(12, 96, "gemm m=64 n=10240 k=8192 a=bf16 w=bf16 c=bf16", 3.21) ==
        "[12/96] gemm m=64 n=10240 k=8192 a=bf16 w=bf16 c=bf16, 3.2 s elapsed");
  clear_stop();
  std::FILE* log = std::tmpfile();
  std::FILE* progress = std::tmpfile();
  REQUIRE((log && progress));
  {
    SweepRecorder rec(3, {log, progress, false, nullptr});
    CHECK(rec.run(fake_sweep(3, -1, 0)) == 0);
  }
  // Not a terminal: each point's result line in the log, and its own progress line.
  CHECK(read_all(log) == "launch variant=kernel\nlaunch variant=kernel\nlaunch variant=kernel\n");
  const std::string lines = read_all(progress);
  CHECK(lines.find("[1/3] launch variant=kernel, ") == 0);
  CHECK(lines.find("[3/3] launch variant=kernel, ") != std::string::npos);
  CHECK(std::count(lines.begin(), lines.end(), '\n') == 3);
  std::FILE* tty = std::tmpfile();
  {
    SweepRecorder rec(2, {nullptr, tty, true, nullptr});
    CHECK(rec.run(fake_sweep(2, -1, 0)) == 0);
    rec.finish();
  }
  // A terminal: no newline; each line is wiped (\r, clear to end of line) before the next.
  const std::string t = read_all(tty);
  CHECK(std::count(t.begin(), t.end(), '\n') == 0);
  CHECK(t.find("\r\033[K[2/2] launch variant=kernel") != std::string::npos);
  CHECK(t.substr(t.size() - 4) == "\r\033[K");
  std::fclose(log);
  std::fclose(progress);
  std::fclose(tty);
}

TEST_CASE("an interrupted sweep keeps the points finished and stops after the current one", "[exec][bench]") {
  // 10 points; SIGINT arrives while point 4 (index 3) runs. That point completes and is kept,
  // no later point runs: 4 records, written whole (write_measurements: temporary file, rename),
  // and the run's exit code is 128 + SIGINT = 130. Without the flag check, all 10 would run.
  clear_stop();
  const std::string path = test::write_temp("partial.json", "");
  {
    const StopSignals handlers;  // SIGINT sets the flag instead of ending the test process
    SweepRecorder rec(10, {});
    const int sig = rec.run(fake_sweep(10, 3, SIGINT));
    CHECK(sig == SIGINT);
    REQUIRE(rec.records().size() == 4);
    CHECK(stopped_exit_code(sig) == 130);
    MeasurementFile f;
    f.run.device = "test";
    f.run.source = "exec_bench_sweep_test";
    f.records = rec.records();
    write_measurements(path, f);
    // A stop already requested: the next suite does not start at all.
    CHECK(rec.run(fake_sweep(5, -1, 0)) == SIGINT);
    CHECK(rec.records().size() == 4);
  }
  const MeasurementFile back = read_measurements(path);
  REQUIRE(back.records.size() == 4);
  CHECK(back.records[3].time_median_s == Approx(4e-6));
  clear_stop();
  // SIGTERM the same way, on the first point: 1 record, exit 143.
  {
    const StopSignals handlers;
    SweepRecorder rec(10, {});
    const int sig = rec.run(fake_sweep(10, 0, SIGTERM));
    CHECK((sig == SIGTERM && rec.records().size() == 1 && stopped_exit_code(sig) == 143));
  }
  clear_stop();
  // No signal: the whole sweep, exit 0.
  SweepRecorder rec(10, {});
  CHECK(rec.run(fake_sweep(10, -1, 0)) == 0);
  CHECK(rec.records().size() == 10);
  CHECK(stopped_exit_code(0) == 0);
}

TEST_CASE("under a stop agreement, the agreed value decides, not this process's signal", "[exec][bench][mpi]") {
  // Multi-process sweeps: a signal on one rank after the ranks agreed must not stop that rank
  // alone (the others would wait in the next collective); it counts at the next agreement.
  clear_stop();
  {
    const StopAgreement agreement;
    request_stop(SIGINT);
    CHECK(signal_received() == SIGINT);
    CHECK(stop_requested() == 0);
    SweepRecorder rec(3, {});
    CHECK(rec.run(fake_sweep(3, -1, 0)) == 0);
    CHECK(rec.records().size() == 3);
    set_agreed_stop(SIGTERM);  // another rank's signal, spread by the agreement
    CHECK(stop_requested() == SIGTERM);
  }
  CHECK(stop_requested() == SIGINT);  // outside an agreement, this process's own flag again
  clear_stop();
  CHECK(stop_requested() == 0);
}
