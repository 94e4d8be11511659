// [cuda] racksim bench's GEMM paths against an FP64 host GEMM of the same quantized inputs
// (cuda_check_gemm), and a tiny run of each bench producing schema-valid records.

#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "racksim/common/measurement.hpp"
#include "racksim/exec/bench.hpp"
#include "racksim/exec/cuda_bench.hpp"
#include "racksim/exec/cuda_ops_bench.hpp"

using namespace racksim;
using namespace racksim::exec;

namespace {

/// The short timing these tests run with (1 warm-up call, 3..5 timed): they check records, not speed.
BenchTiming quick_timing() {
  BenchTiming t;
  t.warmup = 1;
  t.min_reps = 3;
  t.max_reps = 5;
  return t;
}

}  // namespace

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
  const BenchTiming t = quick_timing();
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
  // The run fields: NCCL's version (the library linked in; 2.x) and, where NVML answers
  // (it gave clocks and a power limit on the H200 of 2026-11-30), the GPU's temperature.
  CHECK(f.run.nccl.rfind("2.", 0) == 0);
  if (f.run.power_limit_w) {
    REQUIRE(f.run.temperature_c);
    CHECK(*f.run.temperature_c > 10);
    CHECK(*f.run.temperature_c < 100);
  }
  const MeasurementFile back = parse_measurements(format_measurements(f), "bench.json");
  for (const auto& r : back.records) {
    INFO(r.op.identity());
    CHECK(r.time_median_s > 0);
    CHECK(r.time_median_s < 1.0);
  }
}

TEST_CASE("the benches time calls back to back in a CUDA graph (--timing graph)", "[cuda][bench]") {
  // Every bench with graph timing captures its rotation of operand copies into a graph and replays
  // it: a call that cannot be captured (a synchronous copy, an allocation) throws here. Each record
  // is the call-timed record's identity with a positive per-call time, and the file says
  // timing: graph. One case per path: BF16, FP8 and FP4-weight GEMMs at M = 1 (the fused kernel
  // on Hopper, its split-K reduce in the graph) and 256 (the large-M path), a 1 MiB read and copy,
  // the smallest decode and prefill attention of each KV format, the first elementwise cases.
  const CudaDevice dev = cuda_require_device();
  BenchTiming t = quick_timing();
  t.flush_l2 = false;
  t.graph = true;
  const std::vector<std::string> dtypes = {"bf16", "fp8", "nvfp4"};
  const std::vector<GemmShape> shapes = {{"o_proj", 1024, 1024}};
  const std::vector<std::int64_t> ms = {1, 256};
  MeasurementFile f;
  f.records = cuda_bench_gemm(gemm_sweep(dtypes, shapes, ms, dev.sm_major), t, nullptr);
  REQUIRE(f.records.size() == 6);
  const std::vector<double> sizes = {1 << 20};
  for (auto& r : cuda_bench_memory(sizes, t, nullptr)) f.records.push_back(r);
  const std::vector<DType> kv = {DType::bf16, DType::fp8};
  std::vector<AttentionDecodeCase> decode;
  for (const auto& c : default_attention_decode_cases(kv))
    if (c.batch == 1 && c.context <= 128) decode.push_back(c);
  std::vector<AttentionPrefillCase> prefill;
  for (const auto& c : default_attention_prefill_cases(kv))
    if (c.seq_len <= 128) prefill.push_back(c);
  REQUIRE(!decode.empty());
  REQUIRE(!prefill.empty());
  for (auto& r : cuda_bench_attention_decode(decode, t, nullptr)) f.records.push_back(r);
  for (auto& r : cuda_bench_attention_prefill(prefill, t, nullptr)) f.records.push_back(r);
  const auto all = default_elementwise_cases();
  const std::vector<ElementwiseCase> elementwise(all.begin(), all.begin() + 3);
  for (auto& r : cuda_bench_elementwise(elementwise, t, nullptr)) f.records.push_back(r);
  REQUIRE(f.records.size() == 6 + 2 + decode.size() + prefill.size() + 3);
  f.run = cuda_measurement_run("exec_bench_test --timing graph");
  f.run.timing = timing_name(t);
  const MeasurementFile back = parse_measurements(format_measurements(f), "graph.json");
  CHECK(back.run.timing == "graph");
  for (const auto& r : back.records) {
    INFO(r.op.identity());
    CHECK(r.time_median_s > 0);
    CHECK(r.time_median_s < 1.0);
    CHECK(r.reps >= 3);
  }
}
