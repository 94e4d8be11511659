// The device-level fits end to end (docs/calibration.md, "Memory, launch and power from the
// executor's files"): a synthetic `racksim bench memory|launch|power` file for h100-sxm, made
// from known coefficients, goes through the measurement-file writer and reader and
// run_calibration; the factors must give those coefficients back, round-trip through the
// calibrated YAML, and reach the cost model (memory curve, graph-node launch) and the energy
// model (pJ/FLOP, pJ/byte). No such file has been measured yet (no GPU here).

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "racksim/calibrate/aic_import.hpp"
#include "racksim/calibrate/calibration.hpp"
#include "racksim/common/error.hpp"
#include "racksim/common/measurement.hpp"
#include "racksim/hwmodels/cost_model.hpp"
#include "racksim/hwmodels/energy_model.hpp"
#include "racksim/hwmodels/gpu_calibration.hpp"
#include "racksim/sim/step_prediction.hpp"
#include "racksim/workloads/model_catalog.hpp"
#include "calibrate_test_support.hpp"
#include "test_support.hpp"

using namespace racksim;
using namespace racksim::calibrate;

namespace {

// H100 SXM datasheet HBM3 bandwidth (hwmodels/data/gpus/h100-sxm.yaml): 3.35 TB/s.
constexpr double kBw = 3.35e12;
// The coefficients the synthetic file is made from.
constexpr double kReadEff = 0.92, kReadT0 = 3e-6;   // memcpy read: t = 3 us + s / (0.92 x 3.35 TB/s)
constexpr double kCopyEff = 0.88, kCopyT0 = 4e-6;   // memcpy copy: t = 4 us + 2s / (0.88 x 3.35 TB/s)
constexpr double kKernelS = 4.0e-6, kGraphNodeS = 1.5e-6;
constexpr double kIdleW = 90, kPjBf16 = 0.5, kPjFp8 = 0.27, kPjByte = 65;

// A sustained GEMM at `flop_rate` FLOP/s and `byte_rate` HBM B/s; its energy per call follows
// the power law idle + pJ/FLOP x FLOP/s + pJ/B x B/s.
MeasurementRecord gemm_power(const std::string& fmt, std::int64_t m, double flop_rate, double byte_rate, double pj_flop) {
  MeasurementRecord r;
  r.op.kind = "gemm";
  r.op.m = m;
  r.op.n = 8192;
  r.op.k = 8192;
  r.op.a_dtype = r.op.w_dtype = fmt;
  r.op.c_dtype = "bf16";
  r.time_median_s = 2e-3;
  r.flops = flop_rate * r.time_median_s;
  r.bytes_moved = byte_rate * r.time_median_s;
  r.energy_j = (kIdleW + (pj_flop * flop_rate + kPjByte * byte_rate) * 1e-12) * r.time_median_s;
  r.reps = 200;
  return r;
}

MeasurementRun h100_run(const std::string& source) {
  MeasurementRun run;
  run.device = "NVIDIA H100 80GB HBM3";
  run.gpu = "h100-sxm";
  run.system = "dgx-h100";
  run.driver = "570.86";
  run.cuda = "12.8";
  run.sm_clock_mhz = 1980;
  run.memory_clock_mhz = 2619;
  run.power_limit_w = 700;
  run.date = "2026-03-01";
  run.commit = "abc1234";
  run.source = source;
  return run;
}

// The bench's file: memcpy read and copy 4 KiB .. 4 GiB in x4 steps, kernel and graph-node
// launches, three idle readings and bf16/fp8 GEMMs at a compute-bound and a memory-bound rate
// each (so the per-byte term is determined: 4 records, 3 unknowns).
MeasurementFile device_file() {
  MeasurementFile f;
  f.run = h100_run("racksim bench memory launch power");
  for (double s = 4096; s <= 4.0 * (1ULL << 30); s *= 4) {
    f.records.push_back(test::bench_memcpy("read", s, kReadT0 + s / (kReadEff * kBw)));
    f.records.push_back(test::bench_memcpy("copy", s, kCopyT0 + 2 * s / (kCopyEff * kBw)));
  }
  for (double t : {4.2e-6, kKernelS, 3.8e-6}) f.records.push_back(test::bench_launch("kernel", t));
  f.records.push_back(test::bench_launch("graph_node", kGraphNodeS));
  for (double w : {kIdleW - 2, kIdleW, kIdleW + 2}) f.records.push_back(test::bench_idle(w));
  f.records.push_back(gemm_power("bf16", 8192, 6.0e14, 0.4e12, kPjBf16));
  f.records.push_back(gemm_power("bf16", 16, 0.5e14, 3.0e12, kPjBf16));
  f.records.push_back(gemm_power("fp8", 8192, 1.2e15, 0.3e12, kPjFp8));
  f.records.push_back(gemm_power("fp8", 16, 0.9e14, 3.1e12, kPjFp8));
  return f;
}

}  // namespace

TEST_CASE("a bench file's memcpy, launch and power records become the GPU's calibrated factors", "[calibrate][device]") {
  // The fits are exact on noise-free data: read efficiency 0.92 and 3 us, launches 4.0 us
  // (median of 3.8, 4.0, 4.2) and 1.5 us, idle 90 W (median of 88, 90, 92), 0.5 / 0.27 pJ/FLOP
  // and 65 pJ/B.
  const auto files = test::written_and_read({device_file()}, "device");
  const CalibrationResult r = run_calibration(files, "racksim tests");
  const CalibratedFactors& f = test::only_gpu(r);
  CHECK(f.gpu == "h100-sxm");
  CHECK(f.gemm.empty());  // the power GEMMs feed the power fit only (sustained loops, capped clocks)
  CHECK(f.collectives.empty());
  CHECK(r.skipped.empty());

  REQUIRE(f.memory);
  CHECK(f.memory->variant == "read");  // both measured: read is kept
  CHECK(f.memory->efficiency == Approx(kReadEff).epsilon(1e-9));
  CHECK(f.memory->fixed_latency_s == Approx(kReadT0).epsilon(1e-6));
  CHECK(f.memory->hbm_bandwidth == kBw);
  REQUIRE(f.memory->curve.size() == 11);
  CHECK(f.memory->points == 11);  // every size (5th and 10th held out of the report's fit only)
  CHECK(f.memory->holdout_worst_error < 1e-9);
  // The curve at 256 MiB: 268,435,456 B / (3.35 TB/s x (3 us + 87.098 us)) = 0.88937.
  const double s256 = 256.0 * (1 << 20);
  CHECK(f.memory->efficiency_at(s256) == Approx(s256 / (kBw * (kReadT0 + s256 / (kReadEff * kBw)))).epsilon(1e-12));
  CHECK(f.memory->efficiency_at(s256) == Approx(0.889367).epsilon(1e-5));

  REQUIRE(f.launch);
  CHECK(f.launch->kernel_s.value() == Approx(kKernelS));
  CHECK(f.launch->graph_node_s.value() == Approx(kGraphNodeS));
  CHECK(f.launch->points == 4);

  REQUIRE(f.power);
  CHECK(f.power->idle_w == Approx(kIdleW));
  CHECK(f.power->pj_per_flop.at(DType::bf16) == Approx(kPjBf16).epsilon(1e-6));
  CHECK(f.power->pj_per_flop.at(DType::fp8) == Approx(kPjFp8).epsilon(1e-6));
  CHECK(f.power->pj_per_byte_fitted);
  CHECK(f.power->pj_per_byte == Approx(kPjByte).epsilon(1e-6));
  CHECK(f.power->points == 4);

  // Provenance from the run header: device, driver, clocks and power limit, date, commit, file.
  const Provenance& p = f.power->provenance;
  CHECK(p.device == "NVIDIA H100 80GB HBM3");
  CHECK(p.driver == "driver 570.86, CUDA 12.8");
  CHECK(p.clocks == "SM 1980 MHz, memory 2619 MHz, power limit 700 W");
  CHECK(p.date == "2026-03-01");
  CHECK(p.commit == "abc1234");
  CHECK(p.source == files[0].path + " (racksim bench memory launch power)");
  CHECK(p.fitted_by == "racksim tests");

  // Both memcpy variants are in the residual report, 11 sizes each.
  for (const std::string family : {"memcpy read", "memcpy copy"})
    CHECK(std::count_if(r.residuals.begin(), r.residuals.end(), [&](const Residual& x) { return x.family == family; }) == 11);
  CHECK(residual_markdown(r).find("memcpy read") != std::string::npos);
}

TEST_CASE("calibrate refuses a file timed back to back in a CUDA graph", "[calibrate][device]") {
  // Its times leave out each call's launch and ramp, which the fitted curves include (and the cost
  // model adds a launch to): a cross-check, refused by name, never pooled with the call-timed fits.
  MeasurementFile graph = device_file();
  graph.run.timing = "graph";
  const auto files = test::written_and_read({graph}, "device-graph");
  CHECK_THROWS_WITH(run_calibration(files, "racksim tests"),
                    Catch::Contains(files[0].path + ": run.timing: 'graph' (calls timed back to back in a CUDA graph) is a cross-check") &&
                        Catch::Contains("allowed: call"));
  // Said explicitly, "call" is the default's meaning: the same fit as the file without the key.
  MeasurementFile call = device_file();
  call.run.timing = "call";
  const CalibrationResult r = run_calibration(test::written_and_read({call}, "device-call"), "racksim tests");
  const CalibratedFactors& f = test::only_gpu(r);
  REQUIRE(f.memory);
  CHECK(f.memory->efficiency == Approx(kReadEff).epsilon(1e-9));
}

TEST_CASE("calibrated memory, launch and power sections round-trip through the YAML", "[calibrate][device]") {
  // format -> parse -> format is byte-identical, and the parsed numbers are the fitted ones to
  // the printed 6 significant digits.
  const CalibratedFactors f = test::only_gpu(run_calibration(test::written_and_read({device_file()}, "device"), "racksim tests"));
  const std::string text = format_calibrated_yaml(f, "test");
  const CalibratedFactors back = parse_calibrated_yaml(text, "h100-sxm.yaml");
  CHECK(format_calibrated_yaml(back, "test") == text);
  REQUIRE(back.memory);
  REQUIRE(back.launch);
  REQUIRE(back.power);
  CHECK(back.memory->efficiency == Approx(kReadEff).epsilon(1e-5));
  CHECK(back.memory->curve.size() == 11);
  CHECK(back.memory->provenance.clocks == f.memory->provenance.clocks);
  CHECK(back.launch->graph_node_s.value() == Approx(kGraphNodeS).epsilon(1e-5));
  CHECK(back.power->pj_per_flop.at(DType::fp8) == Approx(kPjFp8).epsilon(1e-5));
  CHECK(back.power->pj_per_byte == Approx(kPjByte).epsilon(1e-5));
  // A file with only a kernel launch keeps only that key; strictness: an unknown key fails.
  CalibratedFactors k = back;
  k.launch->graph_node_s.reset();
  const CalibratedFactors kb = parse_calibrated_yaml(format_calibrated_yaml(k, "t"), "k.yaml");
  CHECK_FALSE(kb.launch->graph_node_s);
  std::string bad = text;
  bad.replace(bad.find("  idle_w:"), 9, "  idle_ww:");
  CHECK_THROWS_WITH(parse_calibrated_yaml(bad, "bad.yaml"), Catch::Contains("bad.yaml") && Catch::Contains("idle_ww"));
}

TEST_CASE("the cost and energy models use the calibrated memory curve, graph-node launch and power coefficients",
          "[calibrate][device]") {
  const CalibrationResult r = run_calibration(test::written_and_read({device_file()}, "device"), "t");
  const CalibratedFactors f = parse_calibrated_yaml(format_calibrated_yaml(test::only_gpu(r), "t"), "h100.yaml");
  const SystemSpec dgx = find_system("dgx-h100");
  const GpuCalibration cal(dgx.gpu, {&f});
  REQUIRE(cal.memory());
  const RooflineCostModel model(dgx, cal);

  // A memory-bound residual add: 128 MiB read + 128 MiB written = 256 MiB, a measured size, so
  //   eff  = 256 MiB / (3.35 TB/s x (3 us + 87.0978 us)) = 0.889367 (curve point)
  //   time = 256 MiB / (eff x 3.35 TB/s) + graph node = 90.0978 us + 1.5 us = 91.5978 us.
  Op add;
  add.name = "add";
  add.kind = OpKind::residual_add;
  add.m = 8192, add.n = 8192;
  add.act_bytes_read = 128.0 * (1 << 20);
  add.bytes_written = 128.0 * (1 << 20);
  add.flops = 8192.0 * 8192.0;
  const double eff = f.memory->efficiency_at(256.0 * (1 << 20));
  const OpCost c = model.cost(add);
  CHECK(c.memory_efficiency == Approx(eff).epsilon(1e-12));
  CHECK(c.memory_s == Approx(256.0 * (1 << 20) / (eff * kBw)).epsilon(1e-12));
  CHECK(c.launch_s == Approx(kGraphNodeS).epsilon(1e-5));
  CHECK(c.time_s == Approx(91.5978e-6).epsilon(1e-5));
  CHECK(c.bound == Bound::memory);
  CHECK(c.provenance == "calibrated");
  CHECK_FALSE(c.carried);

  // Energy of a BF16 GEMM 4096^3: 2 x 4096^3 = 137.44 GFLOP x 0.5 pJ = 68.719 mJ, plus
  // 3 x 4096^2 x 2 B = 100.66 MB x 65 pJ = 6.543 mJ: 75.262 mJ, whatever its compute time.
  Op g;
  g.name = "g";
  g.kind = OpKind::gemm;
  g.m = g.n = g.k = 4096;
  g.flops = 2.0 * 4096 * 4096 * 4096;
  g.act_bytes_read = g.weight_bytes = g.bytes_written = 2.0 * 4096 * 4096;
  const EnergyModel e = energy_model_for(dgx.gpu, cal);
  CHECK(e.idle_w == Approx(kIdleW));
  CHECK(e.provenance == "calibrated");
  CHECK(op_energy_j(e, g, 1.0) == Approx(0.5e-12 * g.flops + 65e-12 * g.bytes()).epsilon(1e-5));
  CHECK(op_energy_j(e, g, 1.0) == Approx(75.262e-3).epsilon(1e-4));
  // FP16 takes BF16's per-FLOP energy (the same tensor-core path); an all-reduce stays the link term.
  g.in_dtype = DType::fp16;
  CHECK(op_energy_j(e, g, 1.0) == Approx(75.262e-3).epsilon(1e-4));
  // The cap is unchanged: idle 90 W + 700 W limit; 1 J in 1 ms would be 1,090 W, so it stretches.
  CHECK(apply_power_limit(e, 1e-3, 1.0).time_s == Approx(1.0 / (700 - 90)));

  // The summary names each device factor's source.
  FactorUse use;
  use.add(g);
  const auto summary = calibration_summary(dgx, use, cal);
  auto source_of = [&](const std::string& factor) {
    for (const auto& s : summary)
      if (s.factor == factor) return s.source;
    return std::string("absent");
  };
  CHECK(source_of("memory") == "own");
  CHECK(source_of("launch") == "own");
  CHECK(source_of("power") == "own");
  CHECK(source_of("attention") == "seed");
}

TEST_CASE("a format without a fitted energy per FLOP takes BF16's scaled by the two peaks", "[calibrate][device]") {
  // The h100 file's power fit without its FP8 term: FP8 takes BF16's 0.5 pJ/FLOP x 989 / 1,979
  // TFLOP/s (H100 SXM dense BF16 and FP8 peaks, hwmodels/data/gpus/h100-sxm.yaml) = 0.24987 pJ, so
  // an FP8 GEMM at the FP8 peak draws what a BF16 GEMM draws at the BF16 peak; fp8_block follows
  // fp8 (its tensor-core path, same peak); FP16 follows BF16 unscaled (same peak).
  CalibratedFactors f = test::only_gpu(run_calibration(test::written_and_read({device_file()}, "device"), "t"));
  REQUIRE(f.power);
  f.power->pj_per_flop.erase(DType::fp8);
  const SystemSpec dgx = find_system("dgx-h100");
  const GpuCalibration cal(dgx.gpu, {&f});
  const EnergyModel e = energy_model_for(dgx.gpu, cal);
  REQUIRE(e.joules_per_flop.contains(DType::fp8));
  CHECK(e.joules_per_flop.at(DType::fp8) == Approx(0.5e-12 * 989 / 1979).epsilon(1e-9));
  CHECK(e.joules_per_flop.at(DType::fp8) * dgx.gpu.peak(DType::fp8)->value ==
        Approx(e.joules_per_flop.at(DType::bf16) * dgx.gpu.peak(DType::bf16)->value));
  CHECK(e.joules_per_flop.at(DType::fp8_block) == Approx(e.joules_per_flop.at(DType::fp8)));
  CHECK(e.joules_per_flop.at(DType::fp16) == Approx(0.5e-12));
  // A fitted format keeps its own figure.
  const CalibratedFactors fitted = test::only_gpu(run_calibration(test::written_and_read({device_file()}, "device"), "t"));
  const EnergyModel full = energy_model_for(dgx.gpu, GpuCalibration(dgx.gpu, {&fitted}));
  CHECK(full.joules_per_flop.at(DType::fp8) == Approx(kPjFp8 * 1e-12).epsilon(1e-5));
}

TEST_CASE("memory and launch carry within a family; power only to the same power limit", "[calibrate][device]") {
  // The h100 file's sections as h200's donor (hopper, both 700 W): all three carry. As b200's
  // (blackwell, 1,000 W) to gb200 (1,200 W): memory and launch carry, power stays seed.
  const CalibratedFactors h100 = test::only_gpu(run_calibration(test::written_and_read({device_file()}, "device"), "t"));
  const SystemSpec hgx = find_system("hgx-h200");
  const GpuCalibration h200(hgx.gpu, {&h100});
  REQUIRE(h200.memory());
  CHECK(h200.memory()->from_gpu == "h100-sxm");
  REQUIRE(h200.power());
  // Carried: h200's own HBM (4.8 TB/s) times h100's efficiency curve.
  Op add;
  add.name = "add";
  add.kind = OpKind::residual_add;
  add.act_bytes_read = add.bytes_written = 128.0 * (1 << 20);
  const OpCost c = RooflineCostModel(hgx, h200).cost(add);
  CHECK(c.provenance == "carried");
  CHECK(c.carried_from == "h100-sxm");
  CHECK(c.memory_s == Approx(256.0 * (1 << 20) / (h100.memory->efficiency_at(256.0 * (1 << 20)) * hgx.gpu.hbm_bandwidth.value)));
  CHECK(energy_model_for(hgx.gpu, h200).provenance == "carried");

  CalibratedFactors b200 = h100;
  b200.gpu = "b200";
  const GpuSpec& gb200 = find_gpu("gb200");
  const GpuCalibration cal(gb200, {&b200});
  CHECK(cal.memory() != nullptr);
  CHECK(cal.launch() != nullptr);
  CHECK(cal.power() == nullptr);
  CHECK(energy_model_for(gb200, cal).provenance == "seed");
  const auto summary = calibration_summary(find_system("gb200-tray"), FactorUse{}, cal);
  const auto power = std::find_if(summary.begin(), summary.end(), [](const auto& s) { return s.factor == "power"; });
  REQUIRE(power != summary.end());
  CHECK(power->source == "seed");
}

TEST_CASE("device sections merge per GPU with other files; a section measured twice is an error", "[calibrate][device]") {
  // A second h100 file with all-reduce x2 at 6 sizes (t = 8 us + 2(n-1)/n x bytes / (0.8 x
  // 450 GB/s)): one CalibratedFactors for h100 with both the collective and the device sections.
  MeasurementFile nccl;
  nccl.run = h100_run("nccl-tests all_reduce_perf");
  for (double b = 1 << 20; b <= 1 << 30; b *= 4) {
    MeasurementRecord r;
    r.op.kind = "all_reduce";
    r.op.ranks = 2;
    r.op.bytes = b;
    r.op.dtype = "fp16";
    r.time_median_s = 8e-6 + b / (0.8 * 450e9);
    nccl.records.push_back(r);
  }
  const CalibrationResult r = run_calibration(test::written_and_read({device_file(), nccl}, "device"), "t");
  const CalibratedFactors& f = test::only_gpu(r);
  CHECK(f.collective("all_reduce", 2) != nullptr);
  CHECK(f.memory);
  CHECK(f.power);

  // The same memcpy records in two files: which one is the memory section? An error names both.
  const auto twice = test::written_and_read({device_file(), device_file()}, "device");
  CHECK_THROWS_AS(run_calibration(twice, "t"), InputError);
  CHECK_THROWS_WITH(run_calibration(twice, "t"), Catch::Contains(twice[0].path) && Catch::Contains(twice[1].path) &&
                                                     Catch::Contains("memory of h100-sxm"));
}

TEST_CASE("a calibration of the published tables has no memory, launch or power sections", "[calibrate][device]") {
  // aiconfigurator's NCCL table has no memcpy, launch or power records: the collectives only. The
  // catalog's calibrated files are fitted from both published tables plus the H200 device
  // session's memory.json, launch.json and power.json (exec/measurements/h200-sxm-2026-11-30):
  // so h200-sxm, and only it, has memory, launch and power sections; the other GPUs' energy
  // models are the seed one, or carried from h200-sxm (h100-sxm: same family and power limit).
  const auto files = import_aic_nccl_csv(std::string(RACKSIM_REFERENCE_DIR) + "/aic_kernels/nccl_2.29.2.csv").files;
  const CalibrationResult r = run_calibration(files, "t");
  CHECK_FALSE(r.gpus.empty());
  for (const auto& f : r.gpus) {
    CHECK_FALSE(f.memory);
    CHECK_FALSE(f.launch);
    CHECK_FALSE(f.power);
  }
  for (const auto& f : calibrated_catalog()) {
    INFO(f.gpu);
    CHECK(static_cast<bool>(f.memory) == (f.gpu == "h200-sxm"));
    CHECK(static_cast<bool>(f.launch) == (f.gpu == "h200-sxm"));
    CHECK(static_cast<bool>(f.power) == (f.gpu == "h200-sxm"));
    const std::string want = f.gpu == "h200-sxm" ? "calibrated" : f.gpu == "h100-sxm" ? "carried" : "seed";
    CHECK(energy_model_for(find_gpu(f.gpu)).provenance == want);
  }
}

TEST_CASE("fitted per-FLOP energy is taken by the format each op computes in", "[calibrate][device]") {
  // 1 TFLOP with no bytes: energy = pJ/FLOP of the op's format. GEMMs use their compute format,
  // along the tensor-core path when that one was not fitted (mxfp4 -> nvfp4); attention reads
  // its KV cache format (fp8 KV: fp8 MMA), else bf16; other ops bf16; nothing fitted -> the seed
  // compute_active_w x compute time.
  EnergyModel e;
  e.compute_active_w = 500;
  e.joules_per_flop = {{DType::bf16, 0.5e-12}, {DType::fp8, 0.3e-12}, {DType::nvfp4, 0.2e-12}};
  Op op;
  op.flops = 1e12;
  op.kind = OpKind::gemm;
  op.in_dtype = DType::mxfp4;
  CHECK(op_energy_j(e, op, 1.0) == Approx(0.2));
  op.kind = OpKind::attention_decode;
  op.in_dtype = DType::bf16;
  op.weight_dtype = DType::fp8;
  CHECK(op_energy_j(e, op, 1.0) == Approx(0.3));
  op.weight_dtype = DType::bf16;
  CHECK(op_energy_j(e, op, 1.0) == Approx(0.5));
  op.kind = OpKind::rmsnorm;
  CHECK(op_energy_j(e, op, 1.0) == Approx(0.5));
  e.joules_per_flop.clear();
  CHECK(op_energy_j(e, op, 0.002) == Approx(1.0));  // 500 W x 2 ms
}

TEST_CASE("mixed-format GEMMs, forced collective algorithms and repeated points are skipped, counted and named", "[calibrate]") {
  // An h100 file: all-reduce x2 fp16 at 4 sizes (t = 8 us + bytes / (0.8 x 450 GB/s) x 2(n-1)/n),
  // the 1 MiB size again (slower), a forced-ring curve at the same sizes (2x slower), and a
  // BF16-activation x NVFP4-weight GEMM (the Hopper FP4 path). The fitted curve must be the
  // library's own, through its first measurements; each other record is counted with its reason.
  MeasurementFile f;
  f.run = h100_run("racksim bench --suite collectives gemm");
  const auto ar = [](double bytes, double t, const std::string& algorithm) {
    MeasurementRecord r;
    r.op.kind = "all_reduce";
    r.op.ranks = 2;
    r.op.bytes = bytes;
    r.op.dtype = "fp16";
    r.op.algorithm = algorithm;
    r.time_median_s = t;
    return r;
  };
  const auto t_lib = [](double b) { return 8e-6 + b / (0.8 * 450e9); };
  for (double b = 1 << 20; b <= 1 << 26; b *= 4) {
    f.records.push_back(ar(b, t_lib(b), ""));
    f.records.push_back(ar(b, 2 * t_lib(b), "ring"));
  }
  f.records.push_back(ar(1 << 20, 3 * t_lib(1 << 20), ""));
  MeasurementRecord g;
  g.op.kind = "gemm";
  g.op.m = 16;
  g.op.n = g.op.k = 8192;
  g.op.a_dtype = "bf16";
  g.op.w_dtype = "nvfp4";
  g.op.c_dtype = "bf16";
  g.time_median_s = 12e-6;
  f.records.push_back(g);
  const auto files = test::written_and_read({f}, "device");
  const CalibrationResult r = run_calibration(files, "t");
  const CalibratedFactors& h = test::only_gpu(r);
  CHECK(h.gemm.empty());
  const CalibratedCollective* c = h.collective("all_reduce", 2);
  REQUIRE(c != nullptr);
  // Above the smallest size the curve is exact; at the smallest (alpha's own size, where the
  // efficiency is capped at 1.5 by design) it is alpha + 1 MiB / (1.5 x 450 GB/s): 12.47 us, not
  // the repeated 32.7 us nor the ring's 21.8 us.
  for (double b = 1 << 22; b <= 1 << 26; b *= 4) CHECK(c->time(b) == Approx(t_lib(b)).epsilon(1e-9));
  CHECK(c->time(1 << 20) == Approx(t_lib(1 << 20) + (1 << 20) / (1.5 * 450e9)).epsilon(1e-9));
  const std::string& path = files[0].path;
  CHECK(r.skipped.at(path + ": h100-sxm all_reduce x2 fp16 with algorithm 'ring' forced (only the library's own choice, algorithm \"\", "
                            "is fitted)") == 4);
  CHECK(r.skipped.at(path + ": h100-sxm all_reduce x2 fp16: a size measured again (the first measurement is kept)") == 1);
  CHECK(r.skipped.at(path + ": gemm a=bf16 w=nvfp4 (mixed-format GEMMs are not fitted: the GEMM factors are per format, weights in the "
                            "same format)") == 1);
  CHECK(r.skipped.size() == 3);
}

namespace {

// Records skipped for a reason that contains `part`.
std::size_t skipped_count(const CalibrationResult& r, const std::string& part) {
  std::size_t n = 0;
  for (const auto& [why, count] : r.skipped)
    if (why.find(part) != std::string::npos) n += count;
  return n;
}

// A `racksim exec` step record: one GPU's FLOPs and HBM bytes per step, and a power window of
// `step_s` per step at `power_w` over its `gpus` GPUs (energy per step = power x time).
MeasurementRecord exec_step(std::string variant, int gpus, double flops, double bytes, double step_s, double power_w) {
  MeasurementRecord r;
  r.op.kind = "step";
  r.op.model = "llama2-70b";
  r.op.variant = std::move(variant);
  r.op.sequences = 64;
  r.op.m = 64;
  r.op.n = 1024;
  r.op.k = 80;
  r.op.ranks = gpus;
  r.op.a_dtype = "bf16";
  r.op.w_dtype = "nvfp4";
  r.op.dtype = "fp8";
  r.time_median_s = step_s * 0.98;  // the timed replays; the check uses the window's own time per step
  r.reps = 10;
  r.timing = "graph";
  r.flops = flops;
  r.bytes_moved = bytes;
  r.energy_j = power_w * step_s;
  r.power_w = power_w;
  return r;
}

}  // namespace

TEST_CASE("racksim exec's steps are checked against the power fit, own and carried, never fitted on", "[calibrate][device]") {
  // The bench file fits idle 90 W, 0.5 pJ per BF16 FLOP and 65 pJ per HBM byte (exact, above).
  // A decode step of 0.28 TFLOP and 35 GB per GPU in a 20 ms window runs 14 TFLOP/s and
  // 1.75 TB/s: 90 + 0.5 x 14 + 65 x 1.75 = 210.75 W per GPU.
  MeasurementFile exec;
  exec.run = h100_run("racksim exec llama.yaml --device cuda:0");
  exec.records.push_back(exec_step("decode", 1, 2.8e11, 3.5e10, 0.020, 200.0));   // +5.375%
  exec.records.push_back(exec_step("decode", 2, 2.8e11, 3.5e10, 0.020, 421.5));   // two GPUs of the same: 0%
  // A prefill of 60 TFLOP and 100 GB in 50 ms asks 90 + 0.5 x 1,200 + 65 x 2 = 820 W: capped at
  // the datasheet's 700 W; measured 690 W: +1.449%.
  exec.records.push_back(exec_step("prefill", 1, 6.0e13, 1.0e11, 0.050, 690.0));
  MeasurementRecord no_window = exec_step("decode", 1, 2.8e11, 3.5e10, 0.020, 200.0);
  no_window.op.n = 2048;
  no_window.energy_j.reset();
  no_window.power_w.reset();
  exec.records.push_back(no_window);
  MeasurementRecord zero_energy = exec_step("decode", 1, 2.8e11, 3.5e10, 0.020, 200.0);
  zero_energy.op.n = 4096;
  zero_energy.energy_j = 0.0;  // a window with no time per step: not checked (it would predict idle alone)
  exec.records.push_back(zero_energy);
  // The same step on an H200 (Hopper, 700 W as the H100: the power fit carries) and on a GB300
  // (no power fit of its family in these files).
  MeasurementFile h200;
  h200.run = h100_run("racksim exec llama.yaml --device cuda:0");
  h200.run.device = "NVIDIA H200";
  h200.run.gpu = "h200-sxm";
  h200.records.push_back(exec_step("decode", 1, 2.8e11, 3.5e10, 0.020, 210.75));
  MeasurementFile gb300 = h200;
  gb300.run.device = "NVIDIA GB300";
  gb300.run.gpu = "gb300";

  const auto files = test::written_and_read({device_file(), exec, h200, gb300}, "steps");
  const CalibrationResult r = run_calibration(files, "racksim tests");
  REQUIRE(r.step_power.size() == 4);
  const StepPowerCheck& d1 = r.step_power[0];
  CHECK(d1.gpu == "h100-sxm");
  CHECK(d1.identity == "step decode model=llama2-70b seqs=64 tokens=64 context=1024 layers=80 gpus=1 a=bf16 w=nvfp4 kv=fp8");
  CHECK(d1.power == "calibrated");
  CHECK(d1.step_s == Approx(0.020));
  CHECK(d1.predicted_w == Approx(210.75).epsilon(1e-9));
  CHECK(d1.error() == Approx(0.05375).epsilon(1e-7));
  CHECK_FALSE(d1.capped);
  CHECK(r.step_power[1].gpus == 2);
  CHECK(r.step_power[1].predicted_w == Approx(421.5).epsilon(1e-9));
  CHECK(std::fabs(r.step_power[1].error()) < 1e-9);
  CHECK(r.step_power[2].capped);
  CHECK(r.step_power[2].predicted_w == Approx(700.0));
  CHECK(r.step_power[2].error() == Approx(700.0 / 690.0 - 1).epsilon(1e-9));
  CHECK(r.step_power[3].gpu == "h200-sxm");
  CHECK(r.step_power[3].power == "carried from h100-sxm");
  CHECK(std::fabs(r.step_power[3].error()) < 1e-9);
  // Not checked, each said: the steps without a window or with no energy in it, the GB300's (no
  // fit own or carried); and no step time for any of them: their round FLOPs are not Llama-2-70B's
  // at their shapes (the next test case checks step times on the graph's own FLOPs).
  const auto skipped_with = [&](const std::string& part) { return skipped_count(r, part); };
  CHECK(skipped_with("step without energy_j and power_w above 0") == 2);
  CHECK(skipped_with("step on gb300: no power fit in these files") == 1);
  CHECK(skipped_with("are not those of catalog model llama2-70b at that shape") == 7);
  CHECK(r.step_time.empty());
  // The steps never enter a fit: the power section is the bench file's alone.
  CHECK(test::only_gpu(r).power->points == 4);
  // The report's table and JSON carry them.
  CHECK_THAT(step_power_markdown(r.step_power), Catch::Contains("| h100-sxm | step prefill model=llama2-70b seqs=64 tokens=64 context=1024 layers=80 gpus=1 "
                                                                "a=bf16 w=nvfp4 kv=fp8 | calibrated | 1 | 50.000 ms | 690 W | 700 W (at the "
                                                                "limit) | +1.4% |"));
  CHECK_THAT(residual_json(r), Catch::Contains("\"power\": \"carried from h100-sxm\""));
}

namespace {

// One GPU's FLOPs per step of Llama-2-70B at this shape, as racksim exec writes them (step_work;
// exec_executor_test checks that sum by hand on tiny-llama).
double llama_step_flops(bool decode, std::int64_t seqs, std::int64_t n, int tp) {
  Precision fmt;
  fmt.weights = DType::nvfp4;
  fmt.activations = DType::bf16;
  fmt.kv_cache = DType::fp8;
  Deployment dep;
  dep.tensor_parallel = tp;
  return step_work(StepGraph(find_model("llama2-70b"), decode ? StepBatch::decode(seqs, n) : StepBatch::prefill_only(seqs, n), dep, fmt)).flops;
}

}  // namespace

TEST_CASE("racksim exec's steps are checked against the simulator's time with this run's factors", "[calibrate][device]") {
  // The bench file's H100 factors (memory, launch, power), the same steps with the FLOPs exec
  // writes for them: decode 64 x 1024 at TP 1 and TP 2 on the H100, and at TP 1 on an H200
  // (factors carried from the H100) and a GB300 (none: seed).
  MeasurementFile exec;
  exec.run = h100_run("racksim exec llama.yaml --device cuda:0");
  exec.records.push_back(exec_step("decode", 1, llama_step_flops(true, 64, 1024, 1), 3.5e10, 0.020, 200.0));
  exec.records.push_back(exec_step("decode", 2, llama_step_flops(true, 64, 1024, 2), 1.8e10, 0.012, 300.0));
  exec.records.push_back(exec_step("prefill", 1, llama_step_flops(false, 64, 1024, 1), 1.0e11, 0.050, 690.0));
  MeasurementFile h200;
  h200.run = h100_run("racksim exec llama.yaml --device cuda:0");
  h200.run.device = "NVIDIA H200";
  h200.run.gpu = "h200-sxm";
  h200.records.push_back(exec_step("decode", 1, llama_step_flops(true, 64, 1024, 1), 3.5e10, 0.020, 210.75));
  MeasurementFile gb300 = h200;
  gb300.run.device = "NVIDIA GB300";
  gb300.run.gpu = "gb300";
  gb300.records.push_back(exec_step("decode", 4, llama_step_flops(true, 64, 1024, 4), 1.0e10, 0.008, 800.0));
  const CalibrationResult r = run_calibration(test::written_and_read({device_file(), exec, h200, gb300}, "steptime"), "racksim tests");
  REQUIRE(r.step_time.size() == 6);
  const StepTimeCheck& t1 = r.step_time[0];
  // Every step (a catalog model's: llama2-70b) also against the simulator's time with the factors
  // these files give, on the catalog system of its GPU that holds its GPUs (the smallest, first id:
  // dgx-h100 for the H100s, hgx-h200, gb300-tray for the GB300). tests/cli/calibrate_steps.cmake
  // checks the figure itself against racksim graph's; here the physics: two GPUs share the
  // weights, so the same decode step at TP 2 takes more than half the TP 1 step's time (the
  // all-reduces, the per-op launches) and less than all of it.
  const StepTimeCheck& t2 = r.step_time[1];
  CHECK(t1.system == "dgx-h100");
  CHECK(t1.timing == "graph");
  CHECK(t1.measured_s == Approx(0.020 * 0.98));
  CHECK((t2.gpus == 2 && t2.predicted_s > 0.5 * t1.predicted_s && t2.predicted_s < t1.predicted_s));
  const StepTimeCheck &h200_t = r.step_time[3], &gb300_t = r.step_time[4];
  CHECK((h200_t.system == "hgx-h200" && gb300_t.system == "gb300-tray"));
  // The factors are this run's (the synthetic H100 memory curve, launch and power above), not the
  // catalog's H100 factors (carried from the committed H200 files): the same step costed both ways.
  ModelConfig llama = find_model("llama2-70b");
  Precision fmt;
  fmt.weights = DType::nvfp4;
  fmt.activations = DType::bf16;
  fmt.kv_cache = DType::fp8;
  const GpuSpec& h100 = find_gpu("h100-sxm");
  const CalibratedFactors& fresh = test::only_gpu(r);
  const StepPrediction mine = predict_step_with(find_system("dgx-h100"), GpuCalibration(h100, {&fresh}), llama, Deployment{}, fmt,
                                                StepBatch::decode(64, 1024), 700, AllReduceImpl::nccl);
  const StepPrediction catalog = predict_step_with(find_system("dgx-h100"), GpuCalibration(h100), llama, Deployment{}, fmt,
                                                   StepBatch::decode(64, 1024), 700, AllReduceImpl::nccl);
  CHECK(t1.predicted_s == mine.time_s);
  CHECK(std::fabs(catalog.time_s / mine.time_s - 1) > 1e-3);
  // The all-reduces priced as NCCL's, which racksim exec runs, not the engines' one-shot kernel the
  // simulator's automatic choice takes for small messages (on the GB300 tray at TP 4 the two differ).
  const auto predicted = [&](const char* system, const GpuSpec& gpu, int tp, AllReduceImpl ar) {
    Deployment dep;
    dep.tensor_parallel = tp;
    return predict_step_with(find_system(system), GpuCalibration(gpu, {&fresh}), llama, dep, fmt, StepBatch::decode(64, 1024), 700, ar).time_s;
  };
  CHECK(t2.predicted_s == predicted("dgx-h100", h100, 2, AllReduceImpl::nccl));
  const StepTimeCheck& tray = r.step_time[5];
  CHECK((tray.system == "gb300-tray" && tray.gpus == 4));
  CHECK(tray.predicted_s == predicted("gb300-tray", find_gpu("gb300"), 4, AllReduceImpl::nccl));
  CHECK(tray.predicted_s != predicted("gb300-tray", find_gpu("gb300"), 4, AllReduceImpl::automatic));
  CHECK_THAT(step_time_markdown(r.step_time), Catch::Contains("| h200-sxm | step decode model=llama2-70b seqs=64 tokens=64 context=1024 "
                                                              "layers=80 gpus=1 a=bf16 w=nvfp4 kv=fp8 | hgx-h200 | 19.600 ms (graph) |"));
  // Every step got its time; the GB300's power alone is not checked (no power fit of its family).
  REQUIRE(r.skipped.size() == 1);
  CHECK(r.skipped.begin()->second == 2);
  CHECK_THAT(r.skipped.begin()->first, Catch::Contains("step on gb300: no power fit in these files"));
}

TEST_CASE("a step of a model outside the catalog, larger than any system of its GPU, or not one the simulator can cost gets no step time, said",
          "[calibrate][device]") {
  MeasurementFile exec;
  exec.run = h100_run("racksim exec tiny.yaml --device cuda:0");
  exec.records.push_back(exec_step("decode", 1, 2.8e11, 3.5e10, 0.020, 200.0));
  exec.records.back().op.model = "tiny-llama";
  exec.records.push_back(exec_step("decode", 16, 2.8e11, 3.5e10, 0.020, 200.0));  // no H100 system has 16 GPUs in one NVLink domain
  exec.records.push_back(exec_step("decode", 3, 2.8e11, 3.5e10, 0.020, 200.0));   // 3 does not divide Llama-2-70B's 64 heads
  exec.records.push_back(exec_step("prefill", 1, 2.8e11, 3.5e10, 0.020, 200.0));
  exec.records.back().op.n = 0;                                                  // a prefill of no prompt
  exec.records.push_back(exec_step("decode", 1, 2.8e11, 3.5e10, 0.020, 200.0));  // round FLOPs: not the model's at that shape
  exec.records.push_back(exec_step("decode", 1, 2.8e11, 3.5e10, 0.020, 200.0));
  exec.records.back().op.a_dtype = "nvfp4";  // NVFP4 activations on Hopper: no tensor-core path (the cost model refuses)
  exec.records.back().flops.reset();
  const CalibrationResult r = run_calibration(test::written_and_read({exec}, "odd"), "racksim tests");
  CHECK(r.step_time.empty());
  const auto skipped_with = [&](const std::string& part) { return skipped_count(r, part); };
  CHECK(skipped_with("step of model 'tiny-llama': not in the model catalog") == 1);
  CHECK(skipped_with("step over 16 GPUs: no catalog system of h100-sxm GPUs holds them") == 1);
  CHECK(skipped_with("tensor parallel 3 does not divide llama2-70b's 64 heads and FFN 28672") == 1);
  CHECK(skipped_with("a prefill of no prompt tokens") == 1);
  CHECK(skipped_with("are not those of catalog model llama2-70b at that shape") == 1);
  CHECK(skipped_with("no step time predicted: h100-sxm has no nvfp4 tensor cores") == 1);
}
