// exec/bench.hpp: the CPU side of `racksim bench` (shape sweep, timing statistics, measurement
// records) and the schema additions it writes (memcpy/launch variants, idle), checked without a GPU.

#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "racksim/common/error.hpp"
#include "racksim/common/measurement.hpp"
#include "racksim/exec/bench.hpp"
#include "racksim/exec/cuda_bench.hpp"
#include "racksim/exec/backend.hpp"
#include "racksim/workloads/model_catalog.hpp"

using namespace racksim;
using namespace racksim::exec;

TEST_CASE("layer GEMM shapes of Llama-2-70B follow the step graph", "[exec][bench]") {
  // Llama-2-70B: hidden 8192, 64 query / 8 KV heads of 128, FFN 28672. TP1: qkv (64 + 16) x 128
  // = 10240 x 8192, o 8192 x 8192, gate_up 2 x 28672 = 57344 x 8192, down 8192 x 28672.
  const auto s1 = layer_gemm_shapes(find_model("llama2-70b"), 1);
  REQUIRE(s1.size() == 4);
  CHECK((s1[0].name == "qkv_proj" && s1[0].n == 10240 && s1[0].k == 8192));
  CHECK((s1[1].name == "o_proj" && s1[1].n == 8192 && s1[1].k == 8192));
  CHECK((s1[2].name == "gate_up_proj" && s1[2].n == 57344 && s1[2].k == 8192));
  CHECK((s1[3].name == "down_proj" && s1[3].n == 8192 && s1[3].k == 28672));
  // TP8 splits heads and FFN: qkv (8 + 2) x 128 = 1280, o K = 1024, gate_up 7168, down K = 3584.
  const auto s8 = layer_gemm_shapes(find_model("llama2-70b"), 8);
  CHECK((s8[0].n == 1280 && s8[1].k == 1024 && s8[2].n == 7168 && s8[3].k == 3584));
  CHECK_THROWS_AS(layer_gemm_shapes(find_model("llama2-70b"), 3), InputError);
  CHECK_THROWS_AS(layer_gemm_shapes(find_model("mixtral-8x7b"), 1), InputError);
}

TEST_CASE("GEMM sweep: default M, formats per device generation", "[exec][bench]") {
  // The issue's "M and M+1 points": each power of two 1..8192 and the M after it, 2 counted once.
  const auto ms = default_gemm_ms();
  const std::vector<std::int64_t> want = {1,   2,   3,    4,    5,    8,    9,    16,   17,   32,   33,   64,   65,  128,
                                          129, 256, 257, 512, 513, 1024, 1025, 2048, 2049, 4096, 4097, 8192, 8193};
  CHECK(ms == want);
  REQUIRE(ms.size() == 27);
  const std::vector<GemmShape> shapes = {{"o_proj", 8192, 8192}};
  const std::vector<std::string> dtypes = {"bf16", "fp8", "nvfp4"};
  const auto hopper = gemm_sweep(dtypes, shapes, ms, 9);
  REQUIRE(hopper.size() == 3 * 27);
  // FP8: E4M3 operands, BF16 output (the step graph's c = bf16).
  CHECK((hopper[27].a == DType::fp8 && hopper[27].w == DType::fp8 && hopper[27].c == DType::bf16));
  // Hopper NVFP4: BF16 activations in and out at every M, as the step executor runs them (the
  // fused tensor-core kernel up to M = 128, dequantize + cuBLASLt BF16 above).
  CHECK((hopper[54 + 7].m == 16 && hopper[54 + 7].a == DType::bf16 && hopper[54 + 7].c == DType::bf16));
  CHECK((hopper[54 + 15].m == 256 && hopper[54 + 15].a == DType::bf16 && hopper[54 + 15].w == DType::nvfp4));
  CHECK((hopper[54 + 16].m == 257 && hopper[54 + 16].w == DType::nvfp4));
  // Blackwell: native NVFP4 x NVFP4 for every M.
  const auto bw = gemm_case("nvfp4", shapes[0], 1, 10);
  CHECK((bw.a == DType::nvfp4 && bw.w == DType::nvfp4 && bw.c == DType::bf16));
  CHECK_THROWS_WITH(gemm_case("int4", shapes[0], 1, 9), Catch::Contains("'int4' is not one of bf16, fp8, nvfp4"));
  CHECK_THROWS_AS(gemm_case("bf16", GemmShape{"odd", 8, 24}, 1, 9), InputError);
  // FLOPs and bytes of M = 1, 8192 x 8192 BF16: 2 x 8192^2 = 134,217,728 FLOP;
  // 2 x (8192 + 8192^2 + 8192) = 134,250,496 bytes (docs/calibration.md's example record).
  CHECK(hopper[0].flops() == 134217728.0);
  CHECK(hopper[0].bytes() == 134250496.0);
}

TEST_CASE("timing statistics and repetitions", "[exec][bench]") {
  // Odd count: the middle sample; even: the mean of the two middle ones.
  const std::vector<double> odd = {3e-6, 1e-6, 2e-6}, even = {4e-6, 1e-6, 3e-6, 2e-6};
  const TimingStats a = timing_stats(odd), b = timing_stats(even);
  CHECK((a.median_s == 2e-6 && a.min_s == 1e-6 && a.max_s == 3e-6 && a.reps == 3));
  CHECK(b.median_s == Approx(2.5e-6));
  CHECK_THROWS_AS(timing_stats(std::vector<double>{}), InputError);
  CHECK_THROWS_AS(timing_stats(std::vector<double>{1e-6, 0.0}), InputError);
  CHECK_THROWS_AS(timing_stats(std::vector<double>{NAN}), InputError);
  // 50 ms target: a 1 ms call gets 50 reps, an 11 ms call the minimum 3, a 1 us call the cap.
  CHECK(reps_for(1e-3, 0.05, 3, 100) == 50);
  CHECK(reps_for(11e-3, 0.05, 3, 100) == 5);
  CHECK(reps_for(0.2, 0.05, 3, 100) == 3);
  CHECK(reps_for(1e-6, 0.05, 3, 100) == 100);
  CHECK(reps_for(0, 0.05, 3, 100) == 100);
}

TEST_CASE("bench timing graph: operand copies and calls per graph", "[exec][bench]") {
  // H200: L2 60 MiB = 62,914,560 B; 2 x L2 = 125,829,120 B.
  constexpr std::int64_t l2 = 60LL << 20;
  // Llama-2-70B o_proj at M = 1: 8192 x 8192 FP4 codes (33,554,432 B) + E4M3 scales (4,194,304 B)
  // + x and y (16 KiB each) = 37,781,504 B: ceil(125,829,120 / 37,781,504) = ceil(3.33) = 4 copies.
  CHECK(graph_banks(37781504.0, l2) == 4);
  // gate_up at M = 1 (57344 x 8192: 264 MB) is over 2 x L2 alone: 1 copy.
  CHECK(graph_banks(264241152.0, l2) == 1);
  // Exactly 2 x L2 / 2: 2 copies (no rounding up past an exact quotient).
  CHECK(graph_banks(62914560.0, l2) == 2);
  // TP 8 o_proj (1024 x 8192 FP4 + scales, 4.7 MB): 27 copies.
  CHECK(graph_banks(1024.0 * 8192 * 9 / 16, l2) == 27);
  // Decode attention at batch 1, context 128 (BF16 K and V of 129 keys x 8 heads x 128 dims, and
  // q and out of 64 x 128 BF16: 528,384 + 32,768 = 561,152 B): ceil(224.2) = 225 copies.
  CHECK(graph_banks(561152.0, l2) == 225);
  // A 64 KiB call would need 1,920: the cap, 512, which rotates over 32 MiB, and says so.
  CHECK(graph_banks(65536.0, l2) == kGraphMaxBanks);
  CHECK(graph_warm_note(65536.0, kGraphMaxBanks, l2) ==
        "note: --timing graph: 512 copies of 65536 B rotate over 33554432 B, under 2 x L2 (125829120 B): the calls partly hit the L2");
  CHECK(graph_warm_note(561152.0, 225, l2).empty());
  CHECK(graph_warm_note(264241152.0, 1, l2).empty());
  CHECK_THROWS_AS(graph_banks(0.0, l2), InputError);
  CHECK_THROWS_AS(graph_banks(1e6, 0), InputError);

  // A 10 us call: 1 ms / 10 us = 100 calls; with 4 copies 100 (a multiple already), with 3, 102.
  CHECK(graph_calls(10e-6, 4) == 100);
  CHECK(graph_calls(10e-6, 3) == 102);
  // A 740 us call (gate_up at M = 256): ceil(1.35) = 2, raised to the floor of 8.
  CHECK(graph_calls(740e-6, 1) == kGraphMinCalls);
  // A 0.1 us call: 10,000 capped at 4096; with 27 copies the multiple below the cap, 4077 (151 x 27).
  CHECK(graph_calls(0.1e-6, 1) == kGraphMaxCalls);
  CHECK(graph_calls(0.1e-6, 27) == 4077);
  // No estimate: the floor; more copies than the floor: one call per copy (512: 4096 = 8 x 512).
  CHECK(graph_calls(0.0, 1) == kGraphMinCalls);
  CHECK(graph_calls(1.0, 64) == 64);
  CHECK(graph_calls(1e-6, kGraphMaxBanks) == 1024);
  CHECK(graph_calls(0.1e-6, kGraphMaxBanks) == kGraphMaxCalls);
  CHECK_THROWS_AS(graph_calls(1e-5, 0), InputError);
  CHECK_THROWS_AS(graph_calls(1e-5, kGraphMaxCalls + 1), InputError);

  BenchTiming t;
  CHECK(timing_name(t).empty());
  t.graph = true;
  CHECK(timing_name(t) == "graph");
}

TEST_CASE("memory sizes: powers of two 4 KiB .. 4 GiB", "[exec][bench]") {
  const auto s = memory_sizes(4096, 4294967296.0);
  REQUIRE(s.size() == 21);  // 2^12 .. 2^32
  CHECK((s.front() == 4096 && s.back() == 4294967296.0));
  CHECK(memory_sizes(3000, 9000) == std::vector<double>{4096, 8192});
  CHECK_THROWS_AS(memory_sizes(0, 10), InputError);
  CHECK_THROWS_AS(memory_sizes(100, 10), InputError);
}

TEST_CASE("bench records round-trip through the measurement schema", "[exec][bench]") {
  // One record of every kind the benches write, formatted and parsed back with the same
  // identities: what `racksim calibrate` will read from a device session's files.
  const GemmCase g = gemm_case("fp8", GemmShape{"qkv_proj", 10240, 8192}, 64, 9);
  const TimingStats t{1e-4, 9e-5, 2e-4, 20};
  MeasurementFile f;
  f.run.device = "NVIDIA H100 80GB HBM3";
  f.run.gpu = catalog_gpu_id(f.run.device);
  f.run.source = "racksim bench gemm --out x.json";
  f.run.date = utc_now_iso8601();
  f.run.commit = build_commit();
  f.records.push_back(gemm_record(g, t));
  f.records.push_back(memory_record("copy", 1 << 20, t));
  f.records.push_back(memory_record("read", 1 << 20, t));
  f.records.push_back(launch_record("kernel", TimingStats{2e-6, 1.9e-6, 3e-6, 20}));
  f.records.push_back(launch_record("graph_node", TimingStats{1e-6, 0.9e-6, 2e-6, 20}));
  // The GEMM loop at the power cap (NVML's sw_power_cap bit, 0x4) at a mean 1,755 MHz; idle with
  // the gpu_idle bit (0x1) and one NVML may add later (bit 12).
  f.records.push_back(power_record(g, PowerSample{3.0, 30000, 1500.0, 500.0, 300, 1755.0, 0x4}));
  f.records.push_back(idle_record(PowerSample{3.0, 0, 210.0, 70.0, 300, 345.0, 0x1 | (1U << 12)}));
  const MeasurementFile back = parse_measurements(format_measurements(f), "bench.json");
  REQUIRE(back.records.size() == f.records.size());
  for (std::size_t i = 0; i < f.records.size(); ++i) CHECK(back.records[i].op.identity() == f.records[i].op.identity());
  CHECK(back.run.gpu == "h100-sxm");
  CHECK(back.records[0].op.identity() == "gemm m=64 n=10240 k=8192 a=fp8 w=fp8 c=bf16");
  CHECK(*back.records[0].flops == Approx(2.0 * 64 * 10240 * 8192));
  // Copy moves each byte twice (read + write), the read kernel once.
  CHECK(back.records[1].op.identity() == "memcpy bytes=1048576 variant=copy");
  CHECK(*back.records[1].bytes_moved == 2.0 * (1 << 20));
  CHECK(*back.records[2].bytes_moved == 1.0 * (1 << 20));
  CHECK(back.records[4].op.identity() == "launch variant=graph_node");
  // Power: 30,000 calls in 3 s -> 100 us a call; 1500 J / 30,000 = 0.05 J a call; 500 W mean.
  CHECK(back.records[5].time_median_s == Approx(1e-4));
  CHECK(*back.records[5].energy_j == Approx(0.05));
  CHECK(*back.records[5].power_w == 500.0);
  CHECK(*back.records[5].sm_clock_mhz == 1755.0);
  CHECK(back.records[5].clock_events == std::vector<std::string>{"sw_power_cap"});
  CHECK(back.records[6].op.identity() == "idle");
  CHECK(*back.records[6].power_w == 70.0);
  CHECK(back.records[6].clock_events == std::vector<std::string>{"gpu_idle", "bit_12"});
  CHECK_THROWS_AS(memory_record("write", 1, t), InputError);
  CHECK_THROWS_AS(launch_record("sync", t), InputError);
  CHECK_THROWS_AS(power_record(g, PowerSample{}), InputError);
  // A variant the schema does not know is an InputError naming the allowed ones.
  CHECK_THROWS_WITH(parse_measurements(R"({"schema": "racksim-measurements/1", "run": {"device": "d", "source": "s"},
      "records": [{"op": {"kind": "memcpy", "bytes": 1, "variant": "write"}, "time_median_s": 1}]})", "m.json"),
                    Catch::Contains("records[0].op.variant: '\"write\"' is not one of copy, read"));
}

TEST_CASE("catalog GPU ids from device names", "[exec][bench]") {
  CHECK(catalog_gpu_id("NVIDIA H100 80GB HBM3") == "h100-sxm");
  CHECK(catalog_gpu_id("NVIDIA H200") == "h200-sxm");
  CHECK(catalog_gpu_id("NVIDIA B200") == "b200");
  CHECK(catalog_gpu_id("NVIDIA GB200") == "gb200");
  CHECK(catalog_gpu_id("NVIDIA B300 SXM6 AC") == "b300");
  CHECK(catalog_gpu_id("NVIDIA GB300") == "gb300");
  // Not the catalog's SXM parts: other clocks and power limits.
  CHECK(catalog_gpu_id("NVIDIA H100 PCIe").empty());
  CHECK(catalog_gpu_id("NVIDIA H100 NVL").empty());
  CHECK(catalog_gpu_id("NVIDIA H200 NVL").empty());
  CHECK(catalog_gpu_id("NVIDIA A100-SXM4-80GB").empty());
  CHECK(utc_now_iso8601().size() == 20);
}

TEST_CASE("bench entry points fail cleanly without a device", "[exec][bench]") {
  // Without a CUDA build or a visible device each entry point is an InfeasibleError (exit 3)
  // that says which; with a device this case has nothing to check.
  if (cuda_device_count() > 0) return;
  try {
    (void)cuda_require_device();
    FAIL("cuda_require_device returned without a device");
  } catch (const Error& e) {
    CHECK(e.code() == ExitCode::infeasible);
    const std::string what = e.what();
    CHECK((what.rfind("no CUDA device: ", 0) == 0 || what.rfind("built without CUDA: ", 0) == 0));
  }
}
