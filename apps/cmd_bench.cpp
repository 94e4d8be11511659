// racksim bench gemm|memory|launch|power --out FILE: microbenchmarks on CUDA device 0, written to a
// measurement file (common/measurement.hpp) that `racksim calibrate` reads. docs/executor.md.

#include <chrono>
#include <cstdio>
#include <sstream>

#include <fmt/format.h>

#include "cli.hpp"
#include "racksim/common/error.hpp"
#include "racksim/common/output.hpp"
#include "racksim/exec/bench.hpp"
#include "racksim/exec/cuda_bench.hpp"
#include "racksim/workloads/model_catalog.hpp"

namespace racksim::cli {

namespace {

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
  if (r.power_w) s += fmt::format(" {:>6.0f} W", *r.power_w);
  if (r.energy_j) s += fmt::format(" {:.4g} J/call", *r.energy_j);
  if (r.reps) s += fmt::format(" (reps {})", r.reps);
  return s;
}

}  // namespace

int cmd_bench(const Args& args) {
  po::options_description desc("bench options");
  std::string what, out, gpu, dtypes = "bf16,fp8", model = "llama2-70b", ms, shapes;
  int tp = 1, batch = 1000;
  exec::BenchTiming timing;
  exec::PowerOptions power;
  double target_ms = timing.target_s * 1e3, min_bytes = 4096, max_bytes = 4294967296.0;
  bool no_flush = false, no_check = false;
  desc.add_options()("what", po::value(&what)->required(), "gemm | memory | launch | power")(
      "out", po::value(&out)->required(), "measurement file to write ('-' for stdout)")(
      "gpu", po::value(&gpu), "catalog GPU id to record (default: from the device name; '' if not in the catalog)")(
      "dtypes", po::value(&dtypes), "gemm, power: comma-separated bf16, fp8, nvfp4 (default bf16,fp8)")(
      "model", po::value(&model), "gemm, power: model whose layer GEMMs are timed (default llama2-70b)")(
      "tp", po::value(&tp), "gemm, power: tensor parallel size of those shapes (default 1)")(
      "shapes", po::value(&shapes), "gemm, power: comma-separated qkv_proj, o_proj, gate_up_proj, down_proj (default all; power: gate_up_proj)")(
      "m", po::value(&ms), "gemm, power: comma-separated M values (default 1,2,4,...,8192; power: 1,4096)")(
      "no-check", po::bool_switch(&no_check), "gemm, power: skip the on-device correctness checks")(
      "warmup", po::value(&timing.warmup), "untimed calls before timing (default 2)")(
      "min-reps", po::value(&timing.min_reps), "fewest timed calls (default 3)")(
      "max-reps", po::value(&timing.max_reps), "most timed calls (default 50)")(
      "target-ms", po::value(&target_ms), "timed calls fill about this many ms per case (default 50)")(
      "no-flush", po::bool_switch(&no_flush), "do not flush L2 before each timed call")(
      "min-bytes", po::value(&min_bytes), "memory: smallest size (default 4096)")(
      "max-bytes", po::value(&max_bytes), "memory: largest size (default 4294967296)")(
      "batch", po::value(&batch), "launch: launches per timed batch (default 1000)")(
      "seconds", po::value(&power.seconds), "power: sustained load per case, s (default 3)")(
      "idle-seconds", po::value(&power.idle_s), "power: idle window, s (default 3)");
  po::positional_options_description pos;
  pos.add("what", 1);
  po::variables_map vm;
  if (!parse(args, desc, pos, vm, "racksim bench gemm|memory|launch|power --out FILE [options]")) return 0;
  if (what != "gemm" && what != "memory" && what != "launch" && what != "power")
    throw InputError(fmt::format("racksim bench: '{}' is not one of gemm, memory, launch, power", what));
  if (timing.warmup < 0 || timing.min_reps < 1 || timing.max_reps < timing.min_reps || !(target_ms > 0))
    throw InputError(fmt::format("racksim bench: need --warmup >= 0, 1 <= --min-reps <= --max-reps and --target-ms > 0 "
                                 "(got {}, {}, {}, {})", timing.warmup, timing.min_reps, timing.max_reps, target_ms));
  if (!(power.seconds > 0) || !(power.idle_s > 0))
    throw InputError(fmt::format("racksim bench: --seconds {} and --idle-seconds {} must be positive", power.seconds, power.idle_s));
  timing.target_s = target_ms * 1e-3;
  timing.flush_l2 = !no_flush;
  const auto dtype_list = split_list(dtypes);
  const auto shape_list = pick_shapes(model, tp, shapes.empty() && what == "power" ? "gate_up_proj" : shapes);
  const auto m_list = ms.empty() ? (what == "power" ? std::vector<std::int64_t>{1, 4096} : exec::default_gemm_ms()) : int_list(ms, "--m");
  const auto sizes = exec::memory_sizes(min_bytes, max_bytes);
  check_output_path(out, "--out");

  const exec::CudaDevice dev = exec::cuda_require_device();
  std::FILE* log = out == "-" ? stderr : stdout;
  std::fprintf(log, "device: %s (sm_%d%d, %d SMs, L2 %lld MiB, %lld MiB)\n", dev.name.c_str(), dev.sm_major, dev.sm_minor,
               dev.sm_count, static_cast<long long>(dev.l2_bytes >> 20), static_cast<long long>(dev.memory_bytes >> 20));
  const auto print = [&](const MeasurementRecord& r) {
    std::fprintf(log, "%s\n", describe(r).c_str());
    std::fflush(log);
  };
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<exec::GemmCase> cases;
  if (what == "gemm" || what == "power") {
    cases = exec::gemm_sweep(dtype_list, shape_list, m_list, dev.sm_major);
    if (!no_check)
      for (const auto& d : dtype_list)
        for (std::int64_t m : {std::int64_t{8}, std::int64_t{64}}) {
          const double err = exec::cuda_check_gemm(d, m, 256, 512);
          std::fprintf(log, "check %s m=%lld n=256 k=512 against the FP64 host GEMM: relative error %.3g (passed)\n", d.c_str(),
                       static_cast<long long>(m), err);
        }
  }
  MeasurementFile file;
  if (what == "gemm") file.records = exec::cuda_bench_gemm(cases, timing, print);
  else if (what == "memory") file.records = exec::cuda_bench_memory(sizes, timing, print);
  else if (what == "launch") file.records = exec::cuda_bench_launch(batch, timing, print);
  else file.records = exec::cuda_bench_power(cases, power, print);
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::string source = "racksim bench";
  for (const auto& a : args.argv) source += " " + a;
  // Read right after the last timed call, so the clocks are the loaded ones.
  file.run = exec::cuda_measurement_run(source);
  if (vm.count("gpu")) file.run.gpu = gpu;
  write_measurements(out, file);
  std::fprintf(log, "%zu records in %.1f s; SM clock %.0f MHz, memory clock %.0f MHz, power limit %.0f W; wrote %s\n",
               file.records.size(), elapsed, file.run.sm_clock_mhz.value_or(0), file.run.memory_clock_mhz.value_or(0),
               file.run.power_limit_w.value_or(0), out.c_str());
  return 0;
}

}  // namespace racksim::cli
