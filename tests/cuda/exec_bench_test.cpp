// [cuda] racksim bench's GEMM paths against an FP64 host GEMM of the same quantized inputs
// (cuda_check_gemm), and a tiny run of each bench producing schema-valid records.

#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "racksim/common/measurement.hpp"
#include "racksim/exec/bench.hpp"
#include "racksim/exec/cuda_bench.hpp"

using namespace racksim;
using namespace racksim::exec;

TEST_CASE("every GEMM path matches the FP64 host GEMM of its quantized inputs", "[cuda][bench]") {
  // Per path: BF16 output -> ||D - ref|| / ||ref|| <= 1e-2 (one BF16 rounding, 2^-9, per
  // element). On Hopper nvfp4 at m = 1..128 takes the fused kernel (128: two launches of 64) and
  // m = 256 the dequantize + cuBLASLt path (under RACKSIM_FP4_LARGE_M=fp8 against the FP64 GEMM of
  // the E4M3 operands it made); N = 256 and K = 512 are multiples of the 16-byte alignment FP8/FP4
  // need. cuda_check_gemm throws with path, shape and error.
  for (const char* d : {"bf16", "fp8", "nvfp4"})
    for (std::int64_t m : {std::int64_t{1}, std::int64_t{8}, std::int64_t{17}, std::int64_t{64}, std::int64_t{128}, std::int64_t{256}}) {
      INFO(d << " m=" << m);
      const double err = cuda_check_gemm(d, m, 256, 512);
      CHECK(err <= 1e-2);
    }
}

TEST_CASE("the benches write records calibrate can read", "[cuda][bench]") {
  const CudaDevice dev = cuda_require_device();
  BenchTiming t;
  t.warmup = 1;
  t.min_reps = 3;
  t.max_reps = 5;
  const std::vector<std::string> dtypes = {"bf16", "fp8"};
  const std::vector<GemmShape> shapes = {{"o_proj", 1024, 1024}};
  const std::vector<std::int64_t> ms = {1, 128};
  const auto cases = gemm_sweep(dtypes, shapes, ms, dev.sm_major);
  MeasurementFile f;
  f.records = cuda_bench_gemm(cases, t, nullptr);
  REQUIRE(f.records.size() == 4);
  const std::vector<double> sizes = {4096, 1 << 20};
  for (auto& r : cuda_bench_memory(sizes, t, nullptr)) f.records.push_back(r);
  for (auto& r : cuda_bench_launch(100, t, nullptr)) f.records.push_back(r);
  REQUIRE(f.records.size() == 4 + 4 + 2);
  f.run = cuda_measurement_run("exec_bench_test");
  CHECK(f.run.device == dev.name);
  const MeasurementFile back = parse_measurements(format_measurements(f), "bench.json");
  for (const auto& r : back.records) {
    INFO(r.op.identity());
    CHECK(r.time_median_s > 0);
    CHECK(r.time_median_s < 1.0);
  }
}
