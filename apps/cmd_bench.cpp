// racksim bench --suite gemm|memory|launch|power|attention|elementwise|collectives|all --out FILE (or `racksim bench gemm
// ...`): microbenchmarks on one CUDA device (--device cuda:N) and NCCL collectives over several
// (one process over this node's GPUs, or one process per GPU under mpirun/srun), written to a
// measurement file (common/measurement.hpp) that `racksim calibrate` reads. docs/executor.md.

#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <sstream>

#include <fmt/format.h>

#include "cli.hpp"
#include "mpi_rank.hpp"
#include "racksim/common/error.hpp"
#include "racksim/common/output.hpp"
#include "racksim/exec/backend.hpp"
#include "racksim/exec/bench.hpp"
#include "racksim/exec/collectives.hpp"
#include "racksim/exec/cuda_bench.hpp"
#include "racksim/exec/cuda_ops_bench.hpp"
#include "racksim/exec/env_knob.hpp"
#include "racksim/exec/process_group.hpp"
#include "racksim/workloads/model_catalog.hpp"

namespace racksim::cli {

namespace {

constexpr const char* kSuites[] = {"gemm", "memory", "launch", "power", "attention", "elementwise", "collectives", "all"};
constexpr const char* kSuiteList = "gemm, memory, launch, power, attention, elementwise, collectives, all";
// `--suite all` in one process: power first (its idle record wants a card that has not just
// been loaded), then the GEMMs calibrate fits, memory, launch, and collectives where they apply.
constexpr const char* kAllOrder[] = {"power", "gemm", "memory", "launch", "attention", "elementwise", "collectives"};

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

std::vector<std::int64_t> int_list(const std::string& s, const char* option) {
  std::vector<std::int64_t> out;
  for (const auto& item : split_list(s)) {
    std::size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || v < 1)
      throw InputError(fmt::format("racksim bench: {}: '{}' is not a positive integer (a comma-separated list is expected)", option, item));
    out.push_back(v);
  }
  if (out.empty()) throw InputError(fmt::format("racksim bench: {}: empty list", option));
  return out;
}

std::vector<exec::GemmShape> pick_shapes(const std::string& model_id, int tp, const std::string& names) {
  const auto all = exec::layer_gemm_shapes(find_model(model_id), tp);
  if (names.empty()) return all;
  std::vector<exec::GemmShape> out;
  for (const auto& n : split_list(names)) {
    const auto it = std::find_if(all.begin(), all.end(), [&](const exec::GemmShape& s) { return s.name == n; });
    if (it == all.end()) {
      std::string allowed;
      for (const auto& s : all) allowed += (allowed.empty() ? "" : ", ") + s.name;
      throw InputError(fmt::format("racksim bench: --shapes: '{}' is not one of {}", n, allowed));
    }
    out.push_back(*it);
  }
  return out;
}

std::string describe(const MeasurementRecord& r) {
  const double t = r.time_median_s;
  std::string s = fmt::format("{:<58} {:>12.2f} us", r.op.identity(), t * 1e6);
  if (r.flops && r.op.kind == "gemm") s += fmt::format(" {:>8.1f} TFLOP/s", *r.flops / t / 1e12);
  if (r.bytes_moved) s += fmt::format(" {:>8.1f} GB/s", *r.bytes_moved / t / 1e9);
  if (is_collective_kind(r.op.kind)) s += fmt::format(" algbw {:>7.2f} GB/s busbw {:>7.2f} GB/s", exec::algbw(r) / 1e9, exec::busbw(r) / 1e9);
  if (r.power_w) s += fmt::format(" {:>6.0f} W", *r.power_w);
  if (r.energy_j) s += fmt::format(" {:.4g} J/call", *r.energy_j);
  if (r.reps) s += fmt::format(" (reps {})", r.reps);
  return s;
}

std::string signal_name(int sig) {
  if (sig == SIGINT) return "SIGINT";
  if (sig == SIGTERM) return "SIGTERM";
  return fmt::format("signal {}", sig);
}

/// Everything a run needs, validated before any device is touched.
struct BenchPlan {
  std::vector<std::string> suites;   ///< in run order
  bool all = false;                  ///< --suite all: a suite that does not apply is skipped with a note
  std::string out;
  int device = 0;
  int gpus = 0;                      ///< collectives in one process; 0 = every visible device
  exec::BenchTiming timing;
  exec::PowerOptions power;
  int batch = 1000;
  bool check_gemms = true;
  std::vector<std::string> gemm_dtypes;
  std::vector<exec::GemmShape> gemm_shapes, power_shapes;
  std::vector<std::int64_t> gemm_ms, power_ms;
  std::vector<double> memory_sizes, collective_sizes;
  std::vector<exec::CollectiveOp> ops;
  std::vector<exec::CollectiveDType> collective_dtypes;
  std::vector<exec::AttentionDecodeCase> decode_cases;
  std::vector<exec::AttentionPrefillCase> prefill_cases;
  std::vector<exec::ElementwiseCase> elementwise_cases;
  std::string source;

  [[nodiscard]] bool has(std::string_view s) const { return std::find(suites.begin(), suites.end(), s) != suites.end(); }
};

/// Ends a run: writes what was measured (all of it, or the points finished before a stop) and
/// says so; returns the exit code (0, or 128 + signal).
int write_run(const BenchPlan& plan, MeasurementFile& file, const exec::SweepRecorder& rec, int sig, std::FILE* log) {
  if (sig && file.records.empty()) {
    std::fprintf(stderr, "racksim bench: stopped by %s before any point finished; nothing written\n", signal_name(sig).c_str());
    return exec::stopped_exit_code(sig);
  }
  write_measurements(plan.out, file);
  if (sig) {
    std::fprintf(stderr, "racksim bench: stopped by %s: kept the %zu of %zu points that finished, in %s\n", signal_name(sig).c_str(),
                 file.records.size(), rec.planned(), plan.out.c_str());
    return exec::stopped_exit_code(sig);
  }
  std::fprintf(log, "%zu records in %.1f s; SM clock %.0f MHz, memory clock %.0f MHz, power limit %.0f W; wrote %s\n",
               file.records.size(), rec.elapsed_s(), file.run.sm_clock_mhz.value_or(0), file.run.memory_clock_mhz.value_or(0),
               file.run.power_limit_w.value_or(0), plan.out.c_str());
  return 0;
}

exec::SweepRecorder::Output recorder_output(std::FILE* log) {
  exec::SweepRecorder::Output o;
  o.log = log;
  o.progress = stderr;
  o.progress_tty = ::isatty(::fileno(stderr)) == 1;
  o.describe = describe;
  return o;
}

/// One process: the single-device suites on plan.device, collectives over devices 0..gpus-1.
int run_one_process(const BenchPlan& plan, const std::string& gpu_override, bool gpu_given) {
  const exec::CudaDevice dev = exec::cuda_require_device(plan.device);
  const int visible = exec::cuda_device_count();
  std::FILE* log = plan.out == "-" ? stderr : stdout;
  std::fprintf(log, "device: cuda:%d %s (sm_%d%d, %d SMs, L2 %lld MiB, %lld MiB); %d CUDA device%s visible\n", plan.device, dev.name.c_str(),
               dev.sm_major, dev.sm_minor, dev.sm_count, static_cast<long long>(dev.l2_bytes >> 20),
               static_cast<long long>(dev.memory_bytes >> 20), visible, visible == 1 ? "" : "s");

  // Collectives: how many ranks, or why they do not run.
  const int ranks = plan.gpus > 0 ? plan.gpus : visible;
  std::vector<exec::CollectiveCase> coll_cases;
  std::string coll_skip;
  if (plan.has("collectives")) {
    if (plan.gpus > visible)
      throw InputError(fmt::format("racksim bench: --gpus {}: allowed 1..{} ({} CUDA device{} visible)", plan.gpus, visible, visible,
                                   visible == 1 ? "" : "s"));
    if (plan.gpus == 0 && visible < 2) {
      const std::string why = fmt::format("collectives need 2 or more GPUs (found {})", visible);
      if (!plan.all) throw InfeasibleError(why + "; --gpus 1 times the 1-rank case");
      coll_skip = why;
    } else {
      coll_cases = exec::collective_sweep(plan.ops, plan.collective_dtypes, plan.collective_sizes, ranks);
    }
  }

  const auto gemm_cases = plan.has("gemm") ? exec::gemm_sweep(plan.gemm_dtypes, plan.gemm_shapes, plan.gemm_ms, dev.sm_major)
                                           : std::vector<exec::GemmCase>{};
  const auto power_cases = plan.has("power") ? exec::gemm_sweep(plan.gemm_dtypes, plan.power_shapes, plan.power_ms, dev.sm_major)
                                             : std::vector<exec::GemmCase>{};
  std::size_t planned = 0;
  for (const auto& s : plan.suites) {
    if (s == "gemm") planned += gemm_cases.size();
    if (s == "power") planned += 1 + power_cases.size();
    if (s == "memory") planned += 2 * plan.memory_sizes.size();
    if (s == "launch") planned += 2;
    if (s == "collectives") planned += coll_cases.size();
    if (s == "attention") planned += plan.decode_cases.size() + plan.prefill_cases.size();
    if (s == "elementwise") planned += plan.elementwise_cases.size();
  }

  const exec::StopSignals signals;
  exec::SweepRecorder rec(planned, recorder_output(log));
  int sig = 0;
  bool checked = false, collectives_ran = false;
  for (const auto& suite : plan.suites) {
    if (sig) break;
    if ((suite == "gemm" || suite == "power") && plan.check_gemms && !checked) {
      for (const auto& d : plan.gemm_dtypes)
        // Hopper's nvfp4 paths: 8 and 64 one launch of the fused kernel, 128 two (launches of 64),
        // 256 the large-M path (dequantize + cuBLASLt).
        for (std::int64_t m : {std::int64_t{8}, std::int64_t{64}, std::int64_t{128}, std::int64_t{256}}) {
          const double err = exec::cuda_check_gemm(d, m, 256, 512, plan.device);
          std::fprintf(log, "check %s m=%lld n=256 k=512 against the FP64 host GEMM: relative error %.3g (passed)\n", d.c_str(),
                       static_cast<long long>(m), err);
        }
      checked = true;
    }
    if (suite == "gemm") {
      sig = rec.run([&](const exec::RecordSink& sink) { (void)exec::cuda_bench_gemm(gemm_cases, plan.timing, sink, plan.device); });
    } else if (suite == "memory") {
      sig = rec.run([&](const exec::RecordSink& sink) { (void)exec::cuda_bench_memory(plan.memory_sizes, plan.timing, sink, plan.device); });
    } else if (suite == "launch") {
      sig = rec.run([&](const exec::RecordSink& sink) { (void)exec::cuda_bench_launch(plan.batch, plan.timing, sink, plan.device); });
    } else if (suite == "power") {
      sig = rec.run([&](const exec::RecordSink& sink) {
        try {
          (void)exec::cuda_bench_power(power_cases, plan.power, sink, plan.device);
        } catch (const InfeasibleError& e) {  // NVML missing: it fails before its first point
          if (!plan.all) throw;
          rec.drop_planned(1 + power_cases.size());
          rec.finish();
          std::fprintf(log, "power skipped: %s\n", e.what());
        }
      });
    } else if (suite == "attention") {
      sig = rec.run([&](const exec::RecordSink& sink) {
        (void)exec::cuda_bench_attention_decode(plan.decode_cases, plan.timing, sink, plan.device);
        (void)exec::cuda_bench_attention_prefill(plan.prefill_cases, plan.timing, sink, plan.device);
      });
    } else if (suite == "elementwise") {
      sig = rec.run([&](const exec::RecordSink& sink) {
        (void)exec::cuda_bench_elementwise(plan.elementwise_cases, plan.timing, sink, plan.device);
      });
    } else if (suite == "collectives") {
      if (!coll_skip.empty()) {
        rec.finish();
        std::fprintf(log, "collectives skipped: %s (--gpus 1 times the 1-rank case)\n", coll_skip.c_str());
        continue;
      }
      std::fprintf(log, "collectives: %d rank%s in one process (cuda:0..cuda:%d), NCCL %s\n", ranks, ranks == 1 ? "" : "s", ranks - 1,
                   exec::cuda_nccl_version().c_str());
      collectives_ran = true;
      sig = rec.run([&](const exec::RecordSink& sink) { (void)exec::cuda_bench_collectives(coll_cases, plan.timing, ranks, sink); });
    }
  }
  rec.finish();
  MeasurementFile file;
  file.records = rec.records();
  // Read right after the last timed call, so the clocks are the loaded ones.
  file.run = exec::cuda_measurement_run(plan.source, plan.device);
  file.run.timing = exec::timing_name(plan.timing);
  if (gpu_given) file.run.gpu = gpu_override;
  if (collectives_ran) {
    file.run.nccl = exec::cuda_nccl_version();
    file.run.system = fmt::format("{} GPU{} driven by one process (NCCL collectives)", ranks, ranks == 1 ? "" : "s");
  }
  return write_run(plan, file, rec, sig, log);
}

/// One process per GPU (mpirun / srun): the collectives only; rank 0 prints and writes.
int run_mpi(const BenchPlan& plan, const std::string& gpu_override, bool gpu_given) {
  // No device visible (or no CUDA built in): exit 3 now, before MPI_Init, which a process started
  // without a launcher would run as a singleton (and which aborted under the sanitizers).
  if (exec::cuda_device_count() == 0) (void)exec::cuda_require_device(0);
  const std::unique_ptr<exec::ProcessGroup> group = exec::mpi_group();
  const bool root = group->rank() == 0;
  return abort_all_on_failure(*group, [&] {
    if (root) check_output_path(plan.out, "--out");
    const MpiGpuRank me = join_mpi_gpu_run(*group);
    const exec::RankPlacement& placement = me.placement;
    const int device = me.device;
    const exec::CudaDevice dev = exec::cuda_require_device(device);
    const auto cases = exec::collective_sweep(plan.ops, plan.collective_dtypes, plan.collective_sizes, placement.ranks);
    std::FILE* log = plan.out == "-" ? stderr : stdout;
    if (root)
      std::fprintf(log, "collectives: %d ranks on %d node%s, one GPU each (MPI; rank 0: cuda:%d %s, local rank from %s), NCCL %s\n",
                   placement.ranks, placement.nodes, placement.nodes == 1 ? "" : "s", device, dev.name.c_str(),
                   placement.local_rank_from.c_str(), exec::cuda_nccl_version().c_str());
    const exec::StopAgreement agreement;
    const exec::StopSignals signals;
    exec::SweepRecorder::Output quiet;
    exec::SweepRecorder rec(cases.size(), root ? recorder_output(log) : quiet);
    const int sig = rec.run([&](const exec::RecordSink& sink) {
      (void)exec::cuda_bench_collectives_mpi(*group, placement, device, me.id, cases, plan.timing, sink);
    });
    rec.finish();
    if (!root) return exec::stopped_exit_code(sig);
    MeasurementFile file;
    file.records = rec.records();
    file.run = exec::cuda_measurement_run(plan.source, device);
    if (gpu_given) file.run.gpu = gpu_override;
    file.run.nccl = exec::cuda_nccl_version();
    file.run.system = fmt::format("{} ranks on {} node{}, one GPU per process (MPI)", placement.ranks, placement.nodes,
                                  placement.nodes == 1 ? "" : "s");
    return write_run(plan, file, rec, sig, log);
  });
}

}  // namespace

int cmd_bench(const Args& args) {
  po::options_description desc("bench options");
  std::string what, suite, out, gpu, dtypes, model = "llama2-70b", ms, shapes, device = "cuda:0", ops, timing_mode = "call";
  int tp = 1, batch = 1000, gpus = 0;
  exec::BenchTiming timing;
  exec::PowerOptions power;
  double target_ms = timing.target_s * 1e3, min_bytes = 0, max_bytes = 0;
  bool no_flush = false, no_check = false, mpi = false;
  desc.add_options()("suite", po::value(&suite), "gemm | memory | launch | power | attention | elementwise | collectives | all (or name it first: racksim bench gemm ...)")(
      "what", po::value(&what), "the suite, as the first argument")(
      "out", po::value(&out), "measurement file to write ('-' for stdout); required")(
      "device", po::value(&device), "cuda:N: the device of gemm, memory, launch and power (default cuda:0)")(
      "gpu", po::value(&gpu), "catalog GPU id to record (default: from the device name; '' if not in the catalog)")(
      "dtypes", po::value(&dtypes),
      "comma-separated; gemm, power: bf16, fp8, nvfp4 (default bf16,fp8); collectives: fp32, bf16, fp16, int8 (default bf16,fp32)")(
      "model", po::value(&model), "gemm, power: model whose layer GEMMs are timed (default llama2-70b)")(
      "tp", po::value(&tp), "gemm, power: tensor parallel size of those shapes (default 1)")(
      "shapes", po::value(&shapes), "gemm, power: comma-separated qkv_proj, o_proj, gate_up_proj, down_proj (default all; power: gate_up_proj)")(
      "m", po::value(&ms), "gemm, power: comma-separated M values (default 1,2,3,4,5,8,9,...,8192,8193: powers of two and the M after each; power: 1,4096)")(
      "no-check", po::bool_switch(&no_check), "gemm, power: skip the on-device correctness checks")(
      "warmup", po::value(&timing.warmup), "untimed calls before timing (default 2)")(
      "min-reps", po::value(&timing.min_reps), "fewest timed calls (default 3)")(
      "max-reps", po::value(&timing.max_reps), "most timed calls (default 50)")(
      "target-ms", po::value(&target_ms), "timed calls fill about this many ms per case (default 50)")(
      "no-flush", po::bool_switch(&no_flush), "gemm, memory: do not flush L2 before each timed call")(
      "timing", po::value(&timing_mode),
      "gemm, memory, attention, elementwise: call (each call alone between its events, L2 flushed before it; default) or graph (calls back to "
      "back in a replayed CUDA graph, rotating over copies of the operands that keep them out of L2)")(
      "min-bytes", po::value(&min_bytes), "memory: smallest size (default 4096); collectives: smallest nccl-tests size (default 1024)")(
      "max-bytes", po::value(&max_bytes),
      "memory: largest size (default 4294967296); collectives: largest nccl-tests size (default 1073741824)")(
      "batch", po::value(&batch), "launch: launches per timed batch (default 1000)")(
      "seconds", po::value(&power.seconds), "power: sustained load per case, s (default 3)")(
      "idle-seconds", po::value(&power.idle_s), "power: idle window, s (default 3)")(
      "ops", po::value(&ops), "collectives: comma-separated all_reduce, all_gather, reduce_scatter (default all three)")(
      "gpus", po::value(&gpus),
      "collectives in one process: devices cuda:0..N-1 (default every visible device, at least 2; --gpus 1 times the 1-rank case)")(
      "mpi", po::bool_switch(&mpi),
      "collectives: one process per GPU under mpirun or srun (automatic when the launcher started more than one process)");
  po::positional_options_description pos;
  pos.add("what", 1);
  po::variables_map vm;
  if (!parse(args, desc, pos, vm,
             "racksim bench --suite gemm|memory|launch|power|attention|elementwise|collectives|all --out FILE [--device cuda:N] [options]\n"
             "       racksim bench gemm|memory|launch|power|collectives|all --out FILE [options]\n"
             "       mpirun -np N racksim bench --suite collectives --out FILE   (one process per GPU; rank 0 writes)\n"
             "SIGINT or SIGTERM stops after the current point and writes the points finished so far (exit 128 + signal)"))
    return 0;
  exec::check_executor_environment(exec::environment_names(), exec::process_env());  // a bad knob: exit 2 before any device work

  // The suite: --suite or the first argument, one of kSuites.
  if (!what.empty() && !suite.empty() && what != suite)
    throw InputError(fmt::format("racksim bench: the suite is given twice ('{}' and --suite {}); give one", what, suite));
  const std::string name = suite.empty() ? what : suite;
  if (name.empty()) throw InputError(fmt::format("racksim bench: no suite: give --suite NAME (or name it first); allowed: {}", kSuiteList));
  if (std::find(std::begin(kSuites), std::end(kSuites), name) == std::end(kSuites))
    throw InputError(fmt::format("racksim bench: {}: '{}' is not one of {}", suite.empty() ? "suite" : "--suite", name, kSuiteList));
  if (out.empty()) throw InputError("racksim bench: --out FILE is required (the measurement file to write, '-' for stdout)");

  BenchPlan plan;
  plan.out = out;
  plan.all = name == "all";
  plan.device = exec::parse_cuda_device(device, exec::cuda_device_count());

  // One process per GPU when asked, or when the launcher started more than one process.
  std::string launcher_var;
  const int launched = exec::launcher_world_size(exec::process_env(), &launcher_var);
  const bool use_mpi = mpi || launched > 1;
  if (use_mpi) {
    const std::string how = mpi ? std::string("--mpi") : fmt::format("{} processes ({}={})", launched, launcher_var, launched);
    if (name != "collectives" && name != "all")
      throw InputError(fmt::format("racksim bench: --suite {} runs in one process on one device; under MPI ({}) only collectives runs", name, how));
    if (vm.count("device"))
      throw InputError(fmt::format("racksim bench: --device {}: under MPI ({}) each process takes the GPU of its local rank", device, how));
    if (vm.count("gpus"))
      throw InputError(fmt::format("racksim bench: --gpus {}: under MPI ({}) each process drives one GPU; start as many as you want ranks", gpus, how));
    plan.suites = {"collectives"};
  } else if (plan.all) {
    plan.suites.assign(std::begin(kAllOrder), std::end(kAllOrder));
  } else {
    plan.suites = {name};
  }
  if (vm.count("gpus") && gpus < 1) throw InputError(fmt::format("racksim bench: --gpus {}: need at least 1", gpus));
  plan.gpus = gpus;

  if (timing.warmup < 0 || timing.min_reps < 1 || timing.max_reps < timing.min_reps || !(target_ms > 0))
    throw InputError(fmt::format("racksim bench: need --warmup >= 0, 1 <= --min-reps <= --max-reps and --target-ms > 0 "
                                 "(got {}, {}, {}, {})", timing.warmup, timing.min_reps, timing.max_reps, target_ms));
  if (!(power.seconds > 0) || !(power.idle_s > 0))
    throw InputError(fmt::format("racksim bench: --seconds {} and --idle-seconds {} must be positive", power.seconds, power.idle_s));
  if (batch < 1) throw InputError(fmt::format("racksim bench: --batch {} must be >= 1", batch));
  timing.target_s = target_ms * 1e-3;
  timing.flush_l2 = !no_flush;
  if (timing_mode != "call" && timing_mode != "graph")
    throw InputError(fmt::format("racksim bench: --timing: '{}' is not one of call, graph", timing_mode));
  timing.graph = timing_mode == "graph";
  if (timing.graph) {
    for (const auto& s : plan.suites)
      if (s != "gemm" && s != "memory" && s != "attention" && s != "elementwise")
        throw InputError(fmt::format("racksim bench: --timing graph: {} has no graph timing; --timing graph applies to gemm, memory, "
                                     "attention and elementwise only", plan.all ? "--suite all runs " + s + ", which" : "the " + s + " suite"));
    if (no_flush)
      throw InputError("racksim bench: --no-flush: --timing graph never flushes the L2 (its operand copies keep each call's data out of "
                       "it); give one of the two");
    timing.flush_l2 = false;
  }
  plan.timing = timing;
  plan.power = power;
  plan.batch = batch;
  plan.check_gemms = !no_check;

  // Each suite's inputs, checked now (a bad one fails before any device work): --dtypes,
  // --min-bytes and --max-bytes apply to every suite that takes them, with each suite's defaults.
  if (plan.has("gemm") || plan.has("power")) {
    plan.gemm_dtypes = split_list(dtypes.empty() ? std::string("bf16,fp8") : dtypes);
    plan.gemm_shapes = pick_shapes(model, tp, shapes);
    plan.power_shapes = pick_shapes(model, tp, shapes.empty() ? std::string("gate_up_proj") : shapes);
    plan.gemm_ms = ms.empty() ? exec::default_gemm_ms() : int_list(ms, "--m");
    plan.power_ms = ms.empty() ? std::vector<std::int64_t>{1, 4096} : int_list(ms, "--m");
    (void)exec::gemm_sweep(plan.gemm_dtypes, plan.gemm_shapes, plan.gemm_ms, 9);  // names and shapes (InputError)
  }
  if (plan.has("memory"))
    plan.memory_sizes = exec::memory_sizes(vm.count("min-bytes") ? min_bytes : 4096, vm.count("max-bytes") ? max_bytes : 4294967296.0);
  if (plan.has("collectives")) {
    for (const auto& o : split_list(ops.empty() ? std::string("all_reduce,all_gather,reduce_scatter") : ops))
      plan.ops.push_back(exec::parse_collective_op(o, "--ops"));
    for (const auto& d : split_list(dtypes.empty() ? std::string("bf16,fp32") : dtypes))
      plan.collective_dtypes.push_back(exec::parse_collective_dtype(d, "--dtypes"));
    if (plan.ops.empty() || plan.collective_dtypes.empty()) throw InputError("racksim bench: --ops and --dtypes need at least one name each");
    plan.collective_sizes =
        exec::collective_sizes(vm.count("min-bytes") ? min_bytes : 1024, vm.count("max-bytes") ? max_bytes : 1073741824.0);
  }
  if (plan.has("attention")) {
    // Decode and prefill attention of Llama-2-70B on one GPU over the KV formats in --dtypes
    // (bf16, fp8; default both): cuda_ops_bench.hpp's default sweeps.
    std::vector<DType> kv;
    for (const auto& d : split_list(dtypes.empty() ? std::string("bf16,fp8") : dtypes)) {
      if (d != "bf16" && d != "fp8")
        throw InputError(fmt::format("racksim bench: --dtypes: '{}' is not a KV-cache format of the attention suite; allowed: bf16, fp8", d));
      kv.push_back(d == "fp8" ? DType::fp8 : DType::bf16);
    }
    plan.decode_cases = exec::default_attention_decode_cases(kv);
    plan.prefill_cases = exec::default_attention_prefill_cases(kv);
  }
  if (plan.has("elementwise")) plan.elementwise_cases = exec::default_elementwise_cases();
  plan.source = exec::executor_knobs_prefix(exec::process_env()) + "racksim bench";
  for (const auto& a : args.argv) plan.source += " " + a;

  if (use_mpi) return run_mpi(plan, gpu, vm.count("gpu") > 0);
  check_output_path(out, "--out");
  return run_one_process(plan, gpu, vm.count("gpu") > 0);
}

}  // namespace racksim::cli
