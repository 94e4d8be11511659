// racksim calibrate --measurements FILE... [--steps EXEC_FILE...] --out DIR

#include <iostream>

#include <fmt/format.h>

#include "cli.hpp"
#include "racksim/calibrate/aic_import.hpp"
#include "racksim/calibrate/calibration.hpp"
#include "racksim/common/error.hpp"

namespace racksim::cli {

int cmd_calibrate(const Args& args) {
  po::options_description desc("calibrate options");
  std::vector<std::string> files, step_files;
  std::string out;
  desc.add_options()("measurements", po::value(&files)->multitoken()->required(),
                     "measurement files (racksim JSON, or the aiconfigurator GEMM/NCCL CSVs)")(
      "out", po::value(&out)->required(), "directory for <gpu>.yaml, residuals.md and residuals.json")(
      "steps", po::value(&step_files)->multitoken(),
      "racksim exec files whose step records check the power fit and the simulator's step time with these factors (their op records are not fitted)");
  po::positional_options_description pos;
  po::variables_map vm;
  if (!parse(args, desc, pos, vm, "racksim calibrate --measurements FILE... [--steps EXEC_FILE...] --out DIR")) return 0;
  std::map<std::string, std::size_t> skipped;
  auto inputs = calibrate::load_measurement_inputs(files, &skipped);
  for (auto& f : calibrate::load_step_inputs(step_files, &skipped)) inputs.push_back(std::move(f));
  calibrate::CalibrationResult r = calibrate::run_calibration(inputs, fmt::format("racksim {} calibrate", RACKSIM_VERSION));
  for (const auto& [why, n] : skipped) r.skipped[why] += n;
  const auto written = calibrate::write_calibration(r, out);
  fmt::print("{:<10} {:<22} {:>7} {:>16} {:>15}\n", "gpu", "family", "points", "held-out median", "held-out worst");
  for (const auto& g : r.gpus) {
    for (const auto& [t, c] : g.gemm)
      fmt::print("{:<10} {:<22} {:>7} {:>15.1f}% {:>14.1f}%\n", g.gpu, fmt::format("gemm {}", to_string(t)), c.points,
                 c.holdout_median_error * 100, c.holdout_worst_error * 100);
    for (const auto& c : g.collectives)
      fmt::print("{:<10} {:<22} {:>7} {:>15.1f}% {:>14.1f}%\n", g.gpu, fmt::format("{} x{}", c.op, c.ranks), c.efficiency.size(),
                 c.holdout_median_error * 100, c.holdout_worst_error * 100);
    // The executor's device-level fits with a hold-out (docs/calibration.md).
    if (const auto& m = g.memory)
      fmt::print("{:<10} {:<22} {:>7} {:>15.1f}% {:>14.1f}%\n", g.gpu, fmt::format("memcpy {}", m->variant), m->points,
                 m->holdout_median_error * 100, m->holdout_worst_error * 100);
    if (const auto& a = g.attention) {
      for (const auto& [kv, d] : a->decode)
        fmt::print("{:<10} {:<22} {:>7} {:>15.1f}% {:>14.1f}%\n", g.gpu, fmt::format("attention_decode {}", to_string(kv)), d.points,
                   d.holdout_median_error * 100, d.holdout_worst_error * 100);
      for (const auto& [kv, p] : a->prefill)
        fmt::print("{:<10} {:<22} {:>7} {:>15.1f}% {:>14.1f}%\n", g.gpu, fmt::format("attention_prefill {}", to_string(kv)), p.points,
                   p.holdout_median_error * 100, p.holdout_worst_error * 100);
    }
  }
  // racksim exec's steps against the power fit: a check on work the fit never saw.
  for (const auto& c : r.step_power)
    fmt::print("step power {} {}: measured {:.0f} W, predicted {:.0f} W{} ({}): {:+.1f}%\n", c.gpu, c.identity, c.measured_w, c.predicted_w,
               c.capped ? " at the limit" : "", c.power, c.error() * 100);
  for (const auto& c : r.step_time)
    fmt::print("step time {} {}: measured {:.3f} ms ({}), predicted {:.3f} ms on {}: {:+.1f}%\n", c.gpu, c.identity, c.measured_s * 1e3,
               c.timing, c.predicted_s * 1e3, c.system, c.error() * 100);
  for (const auto& [why, n] : r.skipped) fmt::print("skipped {} records: {}\n", n, why);
  for (const auto& p : written) fmt::print("wrote {}\n", p);
  return 0;
}

}  // namespace racksim::cli
