// Carrying calibrated factors between GPUs of a family (docs/calibration.md, "Transfer between
// GPUs of a family"): the rule in the cost model (hwmodels/gpu_calibration.hpp), its marking,
// and its error on the published tables (../shared/reference/aic_kernels).

#include <algorithm>
#include <cmath>
#include <vector>

#include <catch2/catch.hpp>

#include "racksim/calibrate/aic_import.hpp"
#include "racksim/calibrate/transfer.hpp"
#include "racksim/common/dtype.hpp"
#include "racksim/hwmodels/cost_model.hpp"
#include "racksim/hwmodels/efficiency.hpp"
#include "racksim/hwmodels/gpu_calibration.hpp"

using namespace racksim;

namespace {

const std::string kGemmCsv = std::string(RACKSIM_REFERENCE_DIR) + "/aic_kernels/gemm_trtllm_1.3.0rc20_subset.csv";

// The catalog's calibrated tables without those of `hidden`: GPUs with no measurements.
std::vector<const CalibratedFactors*> tables_without(const std::vector<std::string>& hidden) {
  std::vector<const CalibratedFactors*> out;
  for (const auto& t : calibrated_catalog())
    if (std::find(hidden.begin(), hidden.end(), t.gpu) == hidden.end()) out.push_back(&t);
  return out;
}

Op gemm_op(std::int64_t m, std::int64_t n, std::int64_t k, DType t) {
  Op op;
  op.name = "g";
  op.kind = OpKind::gemm;
  op.m = m, op.n = n, op.k = k;
  op.in_dtype = op.weight_dtype = t;
  op.out_dtype = DType::bf16;
  const double dm = static_cast<double>(m), dn = static_cast<double>(n), dk = static_cast<double>(k);
  op.flops = 2.0 * dm * dn * dk;
  op.act_bytes_read = storage_bytes(t, dm * dk);
  op.weight_bytes = storage_bytes(t, dn * dk);
  op.bytes_written = storage_bytes(DType::bf16, dm * dn);
  return op;
}

// The measured GEMMs of one GPU and format from the published table, as the fit sees them.
std::vector<calibrate::GemmPoint> measured_gemms(const std::string& gpu, DType t) {
  std::vector<calibrate::GemmPoint> out;
  for (const auto& f : calibrate::import_aic_gemm_csv(kGemmCsv).files) {
    if (f.run.gpu != gpu) continue;
    for (const auto& r : f.records) {
      if (parse_dtype(r.op.a_dtype) != t) continue;
      const Op op = gemm_op(r.op.m, r.op.n, r.op.k, t);
      out.push_back({static_cast<double>(r.op.m), static_cast<double>(r.op.n), static_cast<double>(r.op.k), op.bytes(),
                     r.time_median_s, r.op.identity()});
    }
  }
  return out;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

TEST_CASE("a GPU without its own calibrated factors takes its family donor's efficiencies on its own peak", "[calibrate][transfer]") {
  // gb200 with its own file hidden: its family (blackwell) has one other calibrated GPU, b200
  // (148 SMs as gb200). The b200 NVFP4 model is carried with its efficiencies, tile, k_ramp and
  // blend; the time follows from gb200's datasheet. NVFP4 16384^3: 128 x 64 = 8,192 tiles of
  // 128x256, ceil(8192 / 148) = 56 waves on both GPUs, so the wave FLOPs are equal and
  //   t_c(gb200) / t_c(b200) = peak(b200) / peak(gb200) = 9,000 / 10,000 = 0.9 exactly,
  //   t_m(gb200) / t_m(b200) = HBM(b200) / HBM(gb200) = 7.7 / 8 = 0.9625 exactly.
  // The shape is compute-bound (t_c ~ 12x t_m), so the whole call's time scales by ~0.9 too.
  const SystemSpec tray = find_system("gb200-tray"), dgx = find_system("dgx-b200");
  GpuCalibration hidden(tray.gpu, tables_without({"gb200"}));
  CHECK(hidden.own() == nullptr);
  REQUIRE(hidden.donors() == std::vector<std::string>{"b200"});
  const GemmFactor* f = hidden.gemm(DType::nvfp4);
  REQUIRE(f != nullptr);
  CHECK(f->from_gpu == "b200");
  CHECK(f->model.compute_efficiency == calibrated_for("b200")->gemm.at(DType::nvfp4).model.compute_efficiency);
  CHECK(f->model.sm_count == 148);

  const RooflineCostModel carried(tray, hidden), donor(dgx);
  const Op op = gemm_op(16384, 16384, 16384, DType::nvfp4);
  const OpCost c = carried.cost(op), d = donor.cost(op);
  CHECK(c.bound == Bound::compute);
  CHECK(c.compute_s / d.compute_s == Approx(0.9).epsilon(1e-12));
  CHECK(c.memory_s / d.memory_s == Approx(7.7 / 8.0).epsilon(1e-12));
  CHECK(c.launch_s == Approx(d.launch_s).epsilon(1e-12));  // t0 and the per-A-element term travel as they are
  CHECK((c.time_s - c.launch_s) / (d.time_s - d.launch_s) == Approx(0.9).epsilon(0.01));
  // Hand check of t_c from the b200 factors: 56 waves x 148 x 128 x 256 x 2 x 16384 FLOPs over
  // 10 PFLOP/s x eff_c, times (1 + k_ramp / k).
  const GemmLatencyModel& m = f->model;
  CHECK(c.compute_s == Approx(56.0 * 148 * 128 * 256 * 2 * 16384 / (10e15 * m.compute_efficiency) * (1 + m.k_ramp / 16384)).epsilon(1e-12));

  // The SM count is the recipient's: a gb200 with 160 SMs gets 160 in the carried model
  // (ceil(8192 / 160) = 52 waves instead of 56).
  GpuSpec more_sms = tray.gpu;
  more_sms.sm_count.value = 160;
  CHECK(GpuCalibration(more_sms, tables_without({"gb200"})).gemm(DType::nvfp4)->model.sm_count == 160);
}

TEST_CASE("every prediction says whether its factors are the GPU's own or carried, and from where", "[calibrate][transfer]") {
  // The catalog as it is: gb200 has its own GEMM fits and 2- and 4-GPU NCCL curves; NCCL was
  // measured on 8 GPUs only on HGX systems, so on a GB200 NVL72 an 8-GPU all-reduce takes b200's
  // curve (same family, NVLink 5 both, 900 GB/s both); 16 GPUs has no fit anywhere: seed.
  const SystemSpec rack = find_system("gb200-nvl72");
  const RooflineCostModel model(rack, true, AllReduceImpl::nccl);  // NCCL's curves, not the one-shot kernel
  const OpCost own = model.cost(gemm_op(256, 8192, 8192, DType::nvfp4));
  CHECK(own.provenance == "calibrated");
  CHECK(own.carried_from.empty());
  const OpCost ar8 = model.collective(OpKind::all_reduce, 1 << 20, 8);
  CHECK(ar8.provenance == "carried");
  CHECK(ar8.carried);
  CHECK(ar8.carried_from == "b200");
  CHECK(ar8.algorithm == CollectiveAlgorithm::measured);
  CHECK(ar8.time_s == Approx(calibrated_for("b200")->collective("all_reduce", 8)->time(1 << 20)).epsilon(1e-12));
  CHECK(model.collective(OpKind::all_reduce, 1 << 20, 4).provenance == "calibrated");
  CHECK(model.collective(OpKind::all_reduce, 1 << 20, 16).provenance == "seed");

  // With gb200's own file hidden the GEMM says carried from b200 too.
  const RooflineCostModel hidden(rack, GpuCalibration(rack.gpu, tables_without({"gb200"})));
  const OpCost g = hidden.cost(gemm_op(256, 8192, 8192, DType::nvfp4));
  CHECK(g.provenance == "carried");
  CHECK(g.carried_from == "b200");
  // A format carried within the GPU (fp16 <- bf16) is carried but from no other GPU.
  const OpCost fp16 = model.cost(gemm_op(256, 8192, 8192, DType::fp16));
  CHECK(fp16.provenance == "carried");
  CHECK(fp16.carried_from.empty());

  // The per-run summary lists each factor family with its source.
  FactorUse use;
  for (DType t : {DType::nvfp4, DType::fp16}) use.add(gemm_op(1, 1, 1, t));
  for (int n : {4, 8, 16}) {
    Op ar;
    ar.kind = OpKind::all_reduce;
    ar.participants = n;
    use.add(ar);
  }
  const auto summary = calibration_summary(rack, use);
  auto source_of = [&](const std::string& factor) {
    for (const auto& s : summary)
      if (s.factor == factor) return s;
    FAIL("no factor " << factor);
    return FactorSource{};
  };
  CHECK(source_of("gemm nvfp4").source == "own");
  CHECK(source_of("gemm fp16").source == "carried");
  CHECK(source_of("gemm fp16").from == "gb200 bf16");
  CHECK(source_of("all_reduce x4").source == "own");
  CHECK(source_of("all_reduce x8").source == "carried");
  CHECK(source_of("all_reduce x8").from == "b200");
  CHECK(source_of("all_reduce x8").text().rfind("carried from b200 (", 0) == 0);
  CHECK(source_of("all_reduce x16").source == "seed");
  CHECK(source_of("memory").source == "seed");
  CHECK(source_of("attention").source == "seed");
  // On a 4-GPU tray an 8-GPU group leaves the NVLink domain: seed, and the summary says why.
  const auto tray = calibration_summary(find_system("gb200-tray"), use);
  CHECK(std::find_if(tray.begin(), tray.end(), [](const auto& s) {
          return s.factor == "all_reduce x8" && s.source == "seed" && s.note.find("NVLink domain") != std::string::npos;
        }) != tray.end());
}

TEST_CASE("b200's factors predict gb200's measured NVFP4 GEMMs within 5% median", "[calibrate][transfer]") {
  // The same B200 GPU (compute capability 10.0, 148 SMs) at another power limit and clock, so
  // the achieved fraction of peak should carry. Measured (racksim calibrate, residuals.md
  // "Transfer"): b200 -> gb200 NVFP4 over all 1,768 gb200 shapes, median 3.5%, worst 39.1%
  // (m=32768 n=16384 k=16384: 5.97 ms measured, 3.64 ms carried); gb200's own fit has a held-out
  // median of 3.2%. Bound: median < 5% (the acceptance bar of an own fit is 10%), and
  // carrying efficiency must beat carrying b200's time as it is (6.7% median): the 11% higher
  // gb200 peak is real.
  const SystemSpec tray = find_system("gb200-tray");
  const RooflineCostModel carried(tray, GpuCalibration(tray.gpu, tables_without({"gb200"})));
  const RooflineCostModel b200_time(find_system("dgx-b200"));
  const auto points = measured_gemms("gb200", DType::nvfp4);
  REQUIRE(points.size() == 1768);
  std::vector<double> eff_err, time_err;
  for (const auto& p : points) {
    Op op = gemm_op(static_cast<std::int64_t>(p.m), static_cast<std::int64_t>(p.n), static_cast<std::int64_t>(p.k), DType::nvfp4);
    const OpCost c = carried.cost(op);  // the table's torch_flow times include the A quantize pass
    REQUIRE(c.carried_from == "b200");
    eff_err.push_back(std::abs(c.time_s / p.time_s - 1));
    time_err.push_back(std::abs(b200_time.cost(op).time_s / p.time_s - 1));
  }
  const double eff_median = median(eff_err), time_median = median(time_err);
  INFO("efficiency carried median " << eff_median << ", time carried median " << time_median);
  CHECK(eff_median < 0.05);
  CHECK(eff_median < time_median);
  CHECK(*std::max_element(eff_err.begin(), eff_err.end()) < 0.45);

  // The report (calibrate/transfer.hpp) evaluates the same rule: same median on the same table.
  std::vector<CalibratedFactors> fitted = {*calibrated_for("b200"), *calibrated_for("gb200")};
  calibrate::MeasuredTables measured;
  measured.gemm[{"gb200", DType::nvfp4}] = points;
  const auto t = calibrate::evaluate_transfer(fitted, measured);
  REQUIRE(t.size() == 1);
  CHECK(t[0].donor == "b200");
  CHECK(t[0].recipient == "gb200");
  CHECK(t[0].points == 1768);
  CHECK(t[0].median == Approx(eff_median).epsilon(1e-9));
  CHECK(t[0].time_carried_median == Approx(time_median).epsilon(1e-9));
}

TEST_CASE("a GPU whose family has no calibrated member falls back to the seed curves and says so", "[calibrate][transfer]") {
  // b300 with both Blackwell Ultra files (b300, gb300) hidden: b200 and gb200 are calibrated
  // but of another family (another die, compute capability 10.0 vs 10.3), so nothing carries.
  const SystemSpec hgx = find_system("hgx-b300");
  GpuCalibration none(hgx.gpu, tables_without({"b300", "gb300"}));
  CHECK(none.own() == nullptr);
  CHECK(none.donors().empty());
  CHECK(none.gemm(DType::nvfp4) == nullptr);
  CHECK(none.collective("all_reduce", 8) == nullptr);
  const RooflineCostModel model(hgx, none);
  const Op op = gemm_op(4096, 8192, 8192, DType::nvfp4);
  const OpCost c = model.cost(op);
  // The seed roofline: b300's seed NVFP4 curve and its launch overhead. Its provenance reads
  // "carried" because b300's seed memory curve is itself carried from gb300
  // (efficiency/b300.yaml), but from no calibrated GPU.
  CHECK(c.compute_efficiency == efficiency_for("b300").gemm_curve(DType::nvfp4).at(op.flops));
  CHECK(c.launch_s == hgx.gpu.launch_overhead.value);
  CHECK(c.provenance != "calibrated");
  CHECK(c.carried_from.empty());
  CHECK(model.collective(OpKind::all_reduce, 1 << 20, 8).provenance == "seed");
  FactorUse use;
  use.add(gemm_op(1, 1, 1, DType::nvfp4));
  const auto summary = calibration_summary(hgx, use, none);
  REQUIRE(!summary.empty());
  CHECK(summary.front().factor == "gemm nvfp4");
  CHECK(summary.front().source == "seed");
  CHECK(summary.front().note.find("no nvfp4 fit on b300 or its family") != std::string::npos);
  // Resolved but empty is calibration on with nothing fitted; default-constructed is calibration
  // off, and the note says so instead of naming a missing fit.
  CHECK(none.enabled());
  const GpuCalibration off;
  CHECK_FALSE(off.enabled());
  const auto off_summary = calibration_summary(hgx, use, off);
  REQUIRE(!off_summary.empty());
  CHECK(off_summary.front().source == "seed");
  CHECK(off_summary.front().note.rfind("calibration: datasheet (calibrated factors not used); seed curve: ", 0) == 0);
}

TEST_CASE("a prediction that may use the engines' one-shot all-reduce names its seed", "[calibrate][transfer]") {
  // serving.all_reduce: auto on 8 B200s: the all_reduce x8 NCCL curve is b200's own, and the
  // one-shot kernel's seed is H100's, carried (efficiency/b200.yaml).
  const SystemSpec dgx = find_system("dgx-b200");
  Op ar;
  ar.kind = OpKind::all_reduce;
  ar.participants = 8;
  FactorUse use;
  use.add(ar);
  auto has_one_shot = [](const std::vector<FactorSource>& v) {
    return std::any_of(v.begin(), v.end(), [](const FactorSource& f) { return f.factor == "one_shot all_reduce"; });
  };
  CHECK_FALSE(has_one_shot(calibration_summary(dgx, use)));
  use.one_shot_all_reduce = true;
  const auto summary = calibration_summary(dgx, use);
  REQUIRE(summary.size() >= 2);
  CHECK(summary[0].factor == "all_reduce x8");
  CHECK(summary[0].source == "own");
  CHECK(summary[1].factor == "one_shot all_reduce");
  CHECK(summary[1].source == "seed");
  CHECK(summary[1].note.find("seed (carried): hardware.md: custom one-shot all-reduce on 8x H100") != std::string::npos);
}

TEST_CASE("the fused quantize drops t0 above BF16's only when both fits are one GPU's", "[calibrate][transfer][cost]") {
  // docs/calibration.md, "Fused activation quantize". b200 with its own file hidden carries both
  // fits from gb200: the drop is gb200's FP8 t0 minus gb200's BF16 t0 (14.145 - 2.414 us).
  const SystemSpec dgx = find_system("dgx-b200");
  Op op = gemm_op(8, 8192, 1024, DType::fp8);
  op.input_prequantized = true;
  auto eager_minus_fused = [&](const GpuCalibration& cal) {
    const RooflineCostModel m(dgx, cal);
    Op eager = op;
    eager.input_prequantized = false;
    const double per_element = 8.0 * 1024 * cal.gemm(DType::fp8)->model.a_element_s;
    return m.cost(eager).time_s - m.cost(op).time_s - per_element;
  };
  const GpuCalibration carried(dgx.gpu, tables_without({"b200"}));
  REQUIRE(carried.gemm(DType::fp8)->from_gpu == "gb200");
  REQUIRE(carried.gemm(DType::bf16)->from_gpu == "gb200");
  const CalibratedFactors* gb200 = calibrated_for("gb200");
  REQUIRE(gb200 != nullptr);
  const double gb200_drop = gb200->gemm.at(DType::fp8).model.fixed_latency_s - gb200->gemm.at(DType::bf16).model.fixed_latency_s;
  CHECK(gb200_drop == Approx(11.731e-6).epsilon(1e-3));
  CHECK(eager_minus_fused(carried) == Approx(gb200_drop).epsilon(1e-9));
  // b200's own FP8 fit with its BF16 fit removed: BF16 then comes from gb200, another GPU, and
  // FP8's t0 stays whole (only the per-element term goes).
  CalibratedFactors own = *calibrated_for("b200");
  own.gemm.erase(DType::bf16);
  std::vector<const CalibratedFactors*> tables = tables_without({"b200"});
  tables.push_back(&own);
  const GpuCalibration mixed(dgx.gpu, tables);
  REQUIRE(mixed.gemm(DType::fp8)->from_gpu == "b200");
  REQUIRE(mixed.gemm(DType::bf16)->from_gpu == "gb200");
  CHECK(eager_minus_fused(mixed) == Approx(0.0).margin(1e-15));
}
