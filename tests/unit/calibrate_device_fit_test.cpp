// calibrate/device_fit: HBM bandwidth by size, launch latency and power coefficients from the
// executor's measurement records (racksim bench memory|launch|power). The records here are
// synthesised from known coefficients, so the fit must give those coefficients back; the
// reasons for each number are in the comments.

#include <cmath>

#include <catch2/catch.hpp>

#include "racksim/calibrate/device_fit.hpp"
#include "racksim/common/error.hpp"
#include "test_support.hpp"

using namespace racksim;
using namespace racksim::calibrate;

namespace {

// H100 SXM datasheet HBM3 bandwidth (hwmodels/data/gpus/h100-sxm.yaml): 3.35 TB/s.
constexpr double kBw = 3.35e12;

MeasurementRecord gemm_power(const std::string& fmt, double flop_rate, double byte_rate, double power_w) {
  MeasurementRecord r;
  r.op.kind = "gemm";
  r.op.m = 8192;
  r.op.n = 8192;
  r.op.k = 8192;
  r.op.a_dtype = r.op.w_dtype = fmt;
  r.op.c_dtype = "bf16";
  r.time_median_s = 1e-3;  // per call
  r.flops = flop_rate * r.time_median_s;
  r.bytes_moved = byte_rate * r.time_median_s;
  r.energy_j = power_w * r.time_median_s;  // per call: the counter difference / calls
  r.power_w = power_w + 7;                  // a sampled mean that disagrees: energy / time wins
  return r;
}

}  // namespace

TEST_CASE("memory fit gives back the bandwidth efficiency and fixed latency it was made from", "[calibrate][device]") {
  // t = 4 us + moved / (0.91 x 3.35 TB/s), copy (read + write), 4 KiB .. 4 GiB in x4 steps.
  std::vector<MeasurementRecord> recs;
  for (double s = 4096; s <= 4.0 * (1ULL << 30); s *= 4) recs.push_back(test::bench_memcpy("copy", s, 4e-6 + 2 * s / (0.91 * kBw)));
  recs.push_back(test::bench_memcpy("read", 1 << 20, 1.0));  // another variant: not in this fit
  std::vector<Residual> res;
  const MemoryFit f = fit_memory(recs, "copy", kBw, "h100-sxm", "test.json", &res);
  CHECK(f.efficiency == Approx(0.91).epsilon(1e-9));
  CHECK(f.fixed_latency_s == Approx(4e-6).epsilon(1e-6));
  REQUIRE(f.points.size() == 11);
  // Measured efficiency by size: at 4 KiB the 4 us fixed time dominates (8 KiB moved in
  // 4 us + 2.7 ns: 0.061%); at 4 GiB (8 GiB moved in 2.818 ms + 4 us) it is 0.14% under 0.91.
  CHECK(f.points.front().second == Approx(8192 / (kBw * (4e-6 + 8192 / (0.91 * kBw)))).epsilon(1e-9));
  CHECK(f.points.front().second < 0.001);
  const double t_bw = 8.0 * (1ULL << 30) / (0.91 * kBw);
  CHECK(f.points.back().second == Approx(0.91 * t_bw / (t_bw + 4e-6)).epsilon(1e-9));
  CHECK(f.points.back().second == Approx(0.9087).epsilon(1e-4));
  CHECK(f.fitted_points == 11);  // every size: the 5th and 10th are held out of the report's fit only
  REQUIRE(res.size() == 11);
  for (const auto& r : res) CHECK(std::fabs(r.error()) < 1e-9);
}

TEST_CASE("memory fit under measurement noise stays within the noise", "[calibrate][device]") {
  // +-2% alternating noise on the same law: efficiency and held-out errors stay within ~2%.
  std::vector<MeasurementRecord> recs;
  int i = 0;
  for (double s = 65536; s <= 4.0 * (1ULL << 30); s *= 2, ++i)
    recs.push_back(test::bench_memcpy("read", s, (3e-6 + s / (0.93 * kBw)) * (i % 2 ? 1.02 : 0.98)));
  std::vector<Residual> res;
  const MemoryFit f = fit_memory(recs, "read", kBw, "h100-sxm", "test.json", &res);
  CHECK(f.efficiency == Approx(0.93).epsilon(0.025));
  for (const auto& r : res)
    if (r.held_out) CHECK(std::fabs(r.error()) < 0.045);
}

TEST_CASE("memory fit refuses what it cannot fit", "[calibrate][device]") {
  const std::vector<MeasurementRecord> one{test::bench_memcpy("copy", 1 << 20, 1e-5)};
  CHECK_THROWS_AS(fit_memory(one, "copy", kBw, "h100-sxm", "x.json", nullptr), InputError);
  CHECK_THROWS_WITH(fit_memory(one, "copy", kBw, "h100-sxm", "x.json", nullptr),
                    Catch::Contains("x.json") && Catch::Contains("two distinct sizes"));
}

TEST_CASE("launch latency is the median per variant", "[calibrate][device]") {
  std::vector<MeasurementRecord> recs;
  for (double t : {4.1e-6, 3.9e-6, 4.4e-6}) recs.push_back(test::bench_launch("kernel", t));
  recs.push_back(test::bench_launch("graph_node", 1.6e-6));
  const LaunchFit f = fit_launch(recs);
  CHECK(f.points == 4);
  CHECK(f.latency_s.at("kernel") == Approx(4.1e-6));
  CHECK(f.latency_s.at("graph_node") == Approx(1.6e-6));
}

TEST_CASE("power fit gives back idle power and energy per FLOP and per byte", "[calibrate][device]") {
  // Made from: idle 95 W; 0.55 pJ/FLOP bf16, 0.30 fp8, 0.18 nvfp4; 60 pJ per HBM byte. Each
  // format at a compute-bound and a memory-bound rate, so the per-byte term is determined.
  const double idle_w = 95, pb = 60;
  const std::map<std::string, double> pf{{"bf16", 0.55}, {"fp8", 0.30}, {"nvfp4", 0.18}};
  std::vector<MeasurementRecord> recs{test::bench_idle(idle_w), test::bench_idle(idle_w + 2), test::bench_idle(idle_w - 2)};
  for (const auto& [fmt, e] : pf)
    for (const auto& [flops, bytes] : {std::pair{6.5e14, 0.4e12}, std::pair{0.4e14, 3.0e12}})
      recs.push_back(gemm_power(fmt, flops, bytes, idle_w + (e * flops + pb * bytes) * 1e-12));
  const PowerFit f = fit_power(recs, 77, "power.json");
  CHECK(f.idle_w == Approx(idle_w));  // median of 93, 95, 97
  CHECK(f.points == 6);
  CHECK(f.pj_per_byte_fitted);
  CHECK(f.pj_per_byte == Approx(pb).epsilon(1e-6));
  for (const auto& [fmt, e] : pf) CHECK(f.pj_per_flop.at(fmt) == Approx(e).epsilon(1e-6));
  CHECK(f.worst_error < 1e-9);
  // bf16 at 6.5e14 FLOP/s and 0.4 TB/s: 95 + 357.5 + 24 = 476.5 W (a hand check of the law).
  CHECK(recs[3].energy_j.value() / recs[3].time_median_s == Approx(476.5));
}

TEST_CASE("power fit with one record per format holds the per-byte energy at the seed", "[calibrate][device]") {
  // 3 records, 4 unknowns: the per-byte energy cannot be separated, so it stays at the seed
  // (77 pJ/B, docs/models.md "Power") and the per-FLOP energies take the rest.
  std::vector<MeasurementRecord> recs{test::bench_idle(80)};
  for (const auto& [fmt, e] : {std::pair{"bf16", 0.5}, std::pair{"fp8", 0.28}, std::pair{"nvfp4", 0.2}})
    recs.push_back(gemm_power(fmt, 6e14, 0.5e12, 80 + (e * 6e14 + 77 * 0.5e12) * 1e-12));
  const PowerFit f = fit_power(recs, 77, "power.json");
  CHECK_FALSE(f.pj_per_byte_fitted);
  CHECK(f.pj_per_byte == 77);
  CHECK(f.pj_per_flop.at("bf16") == Approx(0.5).epsilon(1e-9));
  CHECK(f.pj_per_flop.at("nvfp4") == Approx(0.2).epsilon(1e-9));
  // No idle record: no fit, and the message says why.
  recs.erase(recs.begin());
  CHECK_THROWS_WITH(fit_power(recs, 77, "power.json"), Catch::Contains("power.json") && Catch::Contains("idle"));
}
