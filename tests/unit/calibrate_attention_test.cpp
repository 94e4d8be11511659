// The attention fits end to end (docs/calibration.md, "Attention from the executor's files"): a
// synthetic `racksim bench --suite attention` file for h100-sxm, its records built by the
// bench's own record writers (exec/cuda_ops_bench.hpp) with times from known coefficients, goes
// through the measurement-file writer and reader and run_calibration; the fits must give those
// coefficients back, round-trip through the calibrated YAML and reach the cost model, own and
// carried to h200-sxm. No such file has been measured on a GPU yet.

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "racksim/calibrate/calibration.hpp"
#include "racksim/calibrate/device_fit.hpp"
#include "racksim/common/error.hpp"
#include "racksim/common/measurement.hpp"
#include "racksim/exec/cuda_ops_bench.hpp"
#include "racksim/hwmodels/cost_model.hpp"
#include "racksim/hwmodels/gpu_calibration.hpp"
#include "calibrate_test_support.hpp"
#include "test_support.hpp"

using namespace racksim;
using namespace racksim::calibrate;

namespace {

// H100 SXM datasheet figures (hwmodels/data/gpus/h100-sxm.yaml): HBM3 3.35 TB/s, dense BF16
// 989 TFLOP/s, dense FP8 1,979 TFLOP/s, launch_overhead 2 us. H200 SXM (h200-sxm.yaml): HBM3e
// 4.8 TB/s, BF16 989 TFLOP/s.
constexpr double kBw = 3.35e12, kBf16Peak = 989e12, kFp8Peak = 1979e12, kLaunch = 2e-6, kH200Bw = 4.8e12;
// The coefficients the synthetic file is made from.
constexpr double kDecodeEff = 0.8, kDecodeT0 = 6e-6;  // decode, FP8 KV: t = 6 us + bytes / (0.8 x 3.35 TB/s)
constexpr double kPrefillEff = 0.5;                   // prefill, BF16 KV: t = FLOPs / (0.5 x 989 TFLOP/s)
// Prefill, FP8 KV (FP8 math on H100): efficiency linear in log2 FLOPs, so interpolation on log
// FLOPs between training points is exact and a held-out point inside the range is predicted exactly.
double fp8_prefill_eff(double flops) { return 0.2 + 0.05 * std::log2(flops / 1e9); }

exec::TimingStats timing(double t) { return exec::TimingStats{t, t, t, 100}; }

// Decode, batch 8, context 2^j - 1 (so 8 x 2^j keys), j = 7..16: ten sizes, the 5th and 10th held
// out. Bytes (the bench's count, Llama-2-70B geometry 64 heads, 8 KV heads, head_dim 128):
// keys x 2 x 8 x 128 x 1 B (FP8 K and V) + q and output 2 x 8 x 64 x 128 x 2 B = 262,144.
std::vector<MeasurementRecord> decode_records() {
  std::vector<MeasurementRecord> out;
  for (int j = 7; j <= 16; ++j) {
    const exec::AttentionDecodeCase c{8, (std::int64_t{1} << j) - 1, DType::fp8, {}};
    const double bytes = *exec::attention_decode_record(c, timing(1)).bytes_moved;
    out.push_back(exec::attention_decode_record(c, timing(kDecodeT0 + bytes / (kDecodeEff * kBw))));
  }
  return out;
}

// Prefill, batch 1, seq_len 256 .. 32768 (x2): eight sizes, the 5th (4096) held out, the last
// (32768) trained on. FLOPs = 4 x 64 x 128 x seq (seq + 1) / 2.
std::vector<MeasurementRecord> prefill_records(DType kv) {
  std::vector<MeasurementRecord> out;
  for (std::int64_t s = 256; s <= 32768; s *= 2) {
    const exec::AttentionPrefillCase c{s, 1, kv, {}};
    const double flops = *exec::attention_prefill_record(c, timing(1)).flops;
    const double t = kv == DType::fp8 ? flops / (fp8_prefill_eff(flops) * kFp8Peak) : flops / (kPrefillEff * kBf16Peak);
    out.push_back(exec::attention_prefill_record(c, timing(t)));
  }
  return out;
}

MeasurementFile attention_file() {
  MeasurementFile f;
  f.run.device = "NVIDIA H100 80GB HBM3";
  f.run.gpu = "h100-sxm";
  f.run.driver = "570.86";
  f.run.cuda = "12.8";
  f.run.sm_clock_mhz = 1980;
  f.run.power_limit_w = 700;
  f.run.date = "2026-03-02";
  f.run.commit = "abc1234";
  f.run.source = "racksim bench --suite attention";
  f.records = decode_records();
  for (DType kv : {DType::bf16, DType::fp8}) {
    const auto p = prefill_records(kv);
    f.records.insert(f.records.end(), p.begin(), p.end());
  }
  // One BF16-KV decode record: too few for a fit (skipped, with its reason).
  f.records.push_back(exec::attention_decode_record({8, 1023, DType::bf16, {}}, timing(20e-6)));
  return f;
}

// The calibrated h100 factors as the binary would read them: fitted, written and parsed back.
CalibratedFactors h100_factors() {
  const CalibrationResult r = run_calibration(test::written_and_read({attention_file()}, "attention"), "t");
  return parse_calibrated_yaml(format_calibrated_yaml(test::only_gpu(r), "t"), "h100-sxm.yaml");
}

// A decode op of the step graph's shape at the bench's 8 x 1024 keys on FP8 KV: 17,039,360 bytes,
// the size of the fourth decode record (trained on).
Op decode_op(DType kv) {
  Op op;
  op.name = "attention_decode";
  op.kind = OpKind::attention_decode;
  op.weight_dtype = kv;
  op.m = 8, op.n = 64, op.k = 128;
  op.sequences = 8;
  op.attended_pairs = 8 * 1024;
  op.flops = 4.0 * 64 * 128 * op.attended_pairs;
  op.exp_ops = 64 * op.attended_pairs;
  op.kv_bytes_read = op.attended_pairs * 2048;
  op.act_bytes_read = op.bytes_written = 131072;
  return op;
}

// A prefill op of `flops` FLOPs (64 heads, head_dim 128), with `bytes` of q, K/V and output.
Op prefill_op(DType kv, double flops, double bytes) {
  Op op;
  op.name = "attention_prefill";
  op.kind = OpKind::attention_prefill;
  op.weight_dtype = kv;
  op.n = 64, op.k = 128;
  op.flops = flops;
  op.attended_pairs = flops / (4.0 * 64 * 128);
  op.exp_ops = 64 * op.attended_pairs;
  op.act_bytes_read = bytes;
  return op;
}

}  // namespace

TEST_CASE("a bench file's attention records become decode and prefill fits per KV format", "[calibrate][attention]") {
  // Noise-free data, so the fits return the coefficients: decode FP8 efficiency 0.8 and 6 us; the
  // BF16 prefill curve 0.5 at every size on the BF16 peak; FP8 prefill on the FP8 peak (1,979
  // TFLOP/s, the cost model's rule for an FP8 KV cache on a GPU with FP8).
  const auto files = test::written_and_read({attention_file()}, "attention");
  const CalibrationResult r = run_calibration(files, "racksim tests");
  const CalibratedFactors& f = test::only_gpu(r);
  CHECK(f.gpu == "h100-sxm");
  CHECK(f.gemm.empty());
  CHECK_FALSE(f.memory);
  REQUIRE(f.attention);
  const CalibratedAttention& a = *f.attention;
  CHECK(a.hbm_bandwidth == kBw);

  REQUIRE(a.decode.size() == 1);  // FP8 only: BF16 has one record
  const AttentionDecodeFit& d = a.decode.at(DType::fp8);
  CHECK(d.efficiency == Approx(kDecodeEff).epsilon(1e-9));
  CHECK(d.fixed_latency_s == Approx(kDecodeT0).epsilon(1e-6));
  CHECK(d.points == 10);  // every size: the 5th and 10th are held out of the report's fit only
  REQUIRE(d.curve.size() == 10);
  CHECK(d.holdout_worst_error < 1e-9);
  // The curve at 8 x 1024 keys: 17,039,360 B / (3.35 TB/s x (6 us + 17,039,360 / 2.68e12 s =
  // 12.35797 us)) = 0.411587.
  CHECK(d.efficiency_at(17'039'360) == Approx(0.411587).epsilon(1e-5));

  REQUIRE(a.prefill.size() == 2);
  const AttentionPrefillFit& pb = a.prefill.at(DType::bf16);
  CHECK(pb.math == DType::bf16);
  CHECK(pb.peak_flops == kBf16Peak);
  CHECK(pb.points == 8);  // every size: the 5th (seq 4096) is held out of the report's fit only
  CHECK(pb.curve.size() == 8);
  for (const auto& [flops, eff] : pb.curve) CHECK(eff == Approx(kPrefillEff).epsilon(1e-12));
  CHECK(pb.holdout_worst_error < 1e-12);
  const AttentionPrefillFit& pf = a.prefill.at(DType::fp8);
  CHECK(pf.math == DType::fp8);
  CHECK(pf.peak_flops == kFp8Peak);
  // Held out: seq 4096, 274,945,015,808 FLOPs, efficiency 0.2 + 0.05 log2(274.945) = 0.605150,
  // predicted exactly from its neighbours (seq 2048: 0.505168, seq 8192: 0.705141) on log FLOPs.
  CHECK(pf.efficiency_at(274'945'015'808.0) == Approx(0.605150).epsilon(1e-5));
  CHECK(pf.holdout_worst_error < 1e-9);

  // Residuals: every point, held-out ones flagged (2 of 10 decode sizes, 1 of 8 per prefill format).
  auto count = [&](const std::string& family, bool held) {
    return std::count_if(r.residuals.begin(), r.residuals.end(), [&](const Residual& x) { return x.family == family && x.held_out == held; });
  };
  CHECK(count("attention_decode fp8", false) == 8);
  CHECK(count("attention_decode fp8", true) == 2);
  CHECK(count("attention_prefill bf16", true) == 1);
  CHECK(count("attention_prefill fp8", true) == 1);
  CHECK(count("attention_prefill fp8", false) == 7);
  CHECK(residual_markdown(r).find("attention_prefill fp8") != std::string::npos);

  // The BF16-KV decode format with one record is skipped with its reason, not fitted.
  REQUIRE(r.skipped.size() == 1);
  CHECK(r.skipped.begin()->first == files[0].path + ": attention_decode bf16 on h100-sxm: 1 training point; the fit needs at least two of distinct size");
  CHECK(r.skipped.begin()->second == 1);

  // Provenance from the run header.
  CHECK(a.provenance.device == "NVIDIA H100 80GB HBM3");
  CHECK(a.provenance.clocks == "SM 1980 MHz, power limit 700 W");
  CHECK(a.provenance.source == files[0].path + " (racksim bench --suite attention)");
  CHECK(a.provenance.fitted_by == "racksim tests");
}

TEST_CASE("the attention section round-trips through the YAML and is parsed strictly", "[calibrate][attention]") {
  // format -> parse -> format is byte-identical; the numbers survive to the printed 6 digits.
  const CalibratedFactors f = test::only_gpu(run_calibration(test::written_and_read({attention_file()}, "attention"), "t"));
  const std::string text = format_calibrated_yaml(f, "test");
  const CalibratedFactors back = parse_calibrated_yaml(text, "h100-sxm.yaml");
  CHECK(format_calibrated_yaml(back, "test") == text);
  REQUIRE(back.attention);
  CHECK(back.attention->decode.at(DType::fp8).efficiency == Approx(kDecodeEff).epsilon(1e-5));
  CHECK(back.attention->decode.at(DType::fp8).curve.size() == 10);
  CHECK(back.attention->prefill.at(DType::fp8).math == DType::fp8);
  CHECK(back.attention->prefill.at(DType::fp8).peak_flops == kFp8Peak);
  CHECK(back.attention->provenance.date == "2026-03-02");

  // Unknown keys under the section, under a format, a format that is not one, and a bad math: errors naming them.
  auto fails = [&](const std::string& from, const std::string& to, const std::string& named) {
    std::string bad = text;
    const auto at = bad.find(from);
    REQUIRE(at != std::string::npos);
    bad.replace(at, from.size(), to);
    CHECK_THROWS_WITH(parse_calibrated_yaml(bad, "bad.yaml"), Catch::Contains("bad.yaml") && Catch::Contains(named));
  };
  fails("  hbm_bandwidth_gb_per_s:", "  hbm_bandwidth_gbps:", "hbm_bandwidth_gbps");
  fails("      fixed_latency_us:", "      fixed_latency_ms:", "fixed_latency_ms");
  fails("  prefill:\n    bf16:", "  prefill:\n    bf17:", "bf17");
  fails("      math: fp8", "      math: fp4", "fp4");
  // A section with neither decode nor prefill says what it needs.
  CalibratedFactors empty = back;
  empty.attention->decode.clear();
  empty.attention->prefill.clear();
  CHECK_THROWS_WITH(parse_calibrated_yaml(format_calibrated_yaml(empty, "t"), "e.yaml"),
                    Catch::Contains("e.yaml") && Catch::Contains("decode, prefill or both"));
}

TEST_CASE("the cost model prices attention from the calibrated decode and prefill curves", "[calibrate][attention]") {
  const CalibratedFactors f = h100_factors();
  const SystemSpec dgx = find_system("dgx-h100");
  REQUIRE(dgx.gpu.hbm_bandwidth.value == kBw);
  REQUIRE(dgx.gpu.launch_overhead.value == kLaunch);
  const GpuCalibration cal(dgx.gpu, {&f});
  REQUIRE(cal.attention());
  const RooflineCostModel model(dgx, cal);

  // Decode on FP8 KV, 17,039,360 bytes, a measured size: eff = 0.411587 (curve point), so
  //   memory = 17,039,360 / (3.35 TB/s x 0.411587) = 12.35797 us (the measured time)
  //   time   = 12.35797 us + 2 us launch (datasheet; no launch fit here) = 14.35797 us.
  // Compute is far below: exponentials 64 x 8,192 / 4,182 Gop/s = 0.125 us.
  const OpCost dc = model.cost(decode_op(DType::fp8));
  CHECK(dc.memory_efficiency == Approx(0.411587).epsilon(1e-5));
  CHECK(dc.memory_s == Approx(12.35797e-6).epsilon(1e-5));
  CHECK(dc.time_s == Approx(14.35797e-6).epsilon(1e-5));
  CHECK(dc.bound == Bound::memory);
  CHECK(dc.provenance == "calibrated");
  CHECK(dc.carried_from.empty());
  // BF16 KV was not fitted (one record): the generic seed memory curve, marked seed.
  const OpCost db = model.cost(decode_op(DType::bf16));
  CHECK(db.provenance == "seed");
  CHECK(db.memory_efficiency == Approx(efficiency_for("h100-sxm").memory.at(decode_op(DType::bf16).bytes())));

  // Prefill on BF16 KV at seq 4096 (274,945,015,808 FLOPs): efficiency 0.5 on the BF16 peak,
  //   compute = 274,945,015,808 / (989 TFLOP/s x 0.5) = 556.006 us; time = 556.006 + 2 = 558.006 us.
  // Exponentials 64 x 8,390,656 / 4,182 Gop/s = 128.4 us and 84 MB of memory (~30 us) are below it.
  const double f4096 = 274'945'015'808.0;
  const OpCost pb = model.cost(prefill_op(DType::bf16, f4096, 83'886'080));
  CHECK(pb.compute_efficiency == Approx(0.5).epsilon(1e-6));
  CHECK(pb.compute_s == Approx(556.006e-6).epsilon(1e-5));
  CHECK(pb.time_s == Approx(558.006e-6).epsilon(1e-5));
  CHECK(pb.bound == Bound::compute);
  CHECK(pb.provenance == "calibrated");
  // Prefill on FP8 KV at 1 TFLOP, between measured sizes: efficiency 0.2 + 0.05 log2(1000) =
  // 0.698289 on the FP8 peak, compute = 1e12 / (1,979 TFLOP/s x 0.698289) = 723.634 us.
  const OpCost pf = model.cost(prefill_op(DType::fp8, 1e12, 1e6));
  CHECK(pf.compute_efficiency == Approx(0.698289).epsilon(1e-5));
  CHECK(pf.compute_s == Approx(723.634e-6).epsilon(1e-5));
  // Below the smallest measured size the curve is clamped: seq 256's 0.205414.
  CHECK(model.cost(prefill_op(DType::fp8, 1e8, 1e3)).compute_efficiency == Approx(0.205414).epsilon(1e-5));

  // The summary names attention as own, with the held-out errors.
  const auto summary = calibration_summary(dgx, FactorUse{}, cal);
  const auto att = std::find_if(summary.begin(), summary.end(), [](const auto& s) { return s.factor == "attention"; });
  REQUIRE(att != summary.end());
  CHECK(att->source == "own");
  CHECK(att->note.find("decode kv fp8 held-out median 0.0%") != std::string::npos);
  CHECK(att->note.find("prefill kv bf16") != std::string::npos);
  CHECK(att->note.find("other KV formats: seed efficiency") != std::string::npos);
}

TEST_CASE("attention carries within the family: h100's fits on h200's HBM bandwidth and peak", "[calibrate][attention]") {
  // h200-sxm (hopper, as h100-sxm) with h100's file as its only table: the decode efficiency
  // 0.411587 at 17,039,360 B over h200's 4.8 TB/s gives 17,039,360 / (4.8e12 x 0.411587) =
  // 8.62483 us; prefill keeps 0.5 of h200's BF16 peak (989 TFLOP/s): 556.006 us.
  const CalibratedFactors h100 = h100_factors();
  const SystemSpec hgx = find_system("hgx-h200");
  REQUIRE(hgx.gpu.hbm_bandwidth.value == kH200Bw);
  const GpuCalibration cal(hgx.gpu, {&h100});
  REQUIRE(cal.attention());
  CHECK(cal.attention()->from_gpu == "h100-sxm");
  const RooflineCostModel model(hgx, cal);
  const OpCost dc = model.cost(decode_op(DType::fp8));
  CHECK(dc.memory_s == Approx(8.62483e-6).epsilon(1e-5));
  CHECK(dc.provenance == "carried");
  CHECK(dc.carried_from == "h100-sxm");
  const OpCost pb = model.cost(prefill_op(DType::bf16, 274'945'015'808.0, 83'886'080));
  CHECK(pb.compute_s == Approx(556.006e-6).epsilon(1e-5));
  CHECK(pb.provenance == "carried");
  CHECK(pb.carried_from == "h100-sxm");
  const auto summary = calibration_summary(hgx, FactorUse{}, cal);
  const auto att = std::find_if(summary.begin(), summary.end(), [](const auto& s) { return s.factor == "attention"; });
  REQUIRE(att != summary.end());
  CHECK(att->source == "carried");
  CHECK(att->from == "h100-sxm");
  // Outside the family (b200, blackwell) nothing carries: the seed efficiency.
  const GpuCalibration b200(find_gpu("b200"), {&h100});
  CHECK(b200.attention() == nullptr);
}

TEST_CASE("attention measured in two files for one GPU is an error naming both", "[calibrate][attention]") {
  const auto twice = test::written_and_read({attention_file(), attention_file()}, "attention");
  CHECK_THROWS_AS(run_calibration(twice, "t"), InputError);
  CHECK_THROWS_WITH(run_calibration(twice, "t"), Catch::Contains(twice[0].path) && Catch::Contains(twice[1].path) &&
                                                     Catch::Contains("attention of h100-sxm"));
}

TEST_CASE("the catalog's calibrated files have no attention section", "[calibrate][attention]") {
  // They are fitted from the published GEMM and NCCL tables, which have no attention records:
  // every GPU keeps the seed attention efficiency.
  for (const auto& f : calibrated_catalog()) {
    CHECK_FALSE(f.attention);
    const GpuCalibration cal(find_gpu(f.gpu));
    CHECK(cal.attention() == nullptr);
  }
}
