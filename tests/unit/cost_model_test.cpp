// hwmodels/: the roofline cost model against hand calculations and the measurements it was seeded
// from. These check the seed model (use_calibrated = false); the calibrated factors are checked
// against held-out measurements in calibrate_fit_test.cpp, and against the seed model below.

#include <tuple>

#include <catch2/catch.hpp>

#include "racksim/common/error.hpp"
#include "racksim/hwmodels/cost_model.hpp"
#include "racksim/workloads/model_catalog.hpp"
#include "racksim/workloads/step_graph.hpp"

using namespace racksim;

namespace {

Op gemm(std::int64_t m, std::int64_t n, std::int64_t k, DType t) {
  const double dm = static_cast<double>(m), dn = static_cast<double>(n), dk = static_cast<double>(k);
  Op op;
  op.name = "g";
  op.kind = OpKind::gemm;
  op.m = m;
  op.n = n;
  op.k = k;
  op.in_dtype = op.weight_dtype = op.out_dtype = t;
  op.flops = 2.0 * dm * dn * dk;
  op.weight_bytes = weight_storage_bytes(t, dn * dk);
  op.act_bytes_read = storage_bytes(t, dm * dk);
  op.bytes_written = storage_bytes(t, dm * dn);
  return op;
}

}  // namespace

TEST_CASE("a large GEMM is compute bound at its measured efficiency", "[hwmodels][cost]") {
  // H100 BF16 8192^3: 1.0995e12 FLOPs; seed efficiency at that size 0.7914 (aic_kernels
  // h100_sxm bfloat16 8192^3 = 1.4048 ms): time = 1.0995e12 / (989e12 x 0.7914) + 2 us launch.
  RooflineCostModel model(find_system("dgx-h100"), false);
  const OpCost c = model.cost(gemm(8192, 8192, 8192, DType::bf16));
  CHECK(c.bound == Bound::compute);
  CHECK(c.compute_efficiency == Approx(0.7914).epsilon(1e-4));
  CHECK(c.time_s == Approx(1.0995116e12 / (989e12 * 0.7914) + 2e-6).epsilon(1e-4));
  CHECK(c.time_s == Approx(1.4048e-3).epsilon(0.01));  // the measurement itself, within 1%
}

TEST_CASE("a decode GEMV is memory bound at stream bandwidth", "[hwmodels][cost]") {
  // H100 FP8, m = 1, n = 10240, k = 8192: bytes = 83.9 MB weights + 8 KB in + 20 KB out;
  // time = bytes / (3.35e12 x 2.97/3.35) + 2 us = bytes / 2.97e12 + 2 us.
  RooflineCostModel model(find_system("dgx-h100"), false);
  const Op op = gemm(1, 10240, 8192, DType::fp8);
  const OpCost c = model.cost(op);
  CHECK(c.bound == Bound::memory);
  CHECK(c.time_s == Approx(op.bytes() / 2.97e12 + 2e-6).epsilon(1e-3));
}

TEST_CASE("tiny ops are launch bound", "[hwmodels][cost]") {
  RooflineCostModel model(find_system("gb300-nvl72"), false);
  const OpCost c = model.cost(gemm(1, 64, 64, DType::bf16));
  CHECK(c.bound == Bound::launch);
  CHECK(c.time_s == Approx(2e-6).epsilon(0.01));
}

TEST_CASE("all-reduce follows the alpha-beta model per algorithm", "[hwmodels][cost]") {
  // 8x H100, 512 MiB: NVLS = base + 2(n-1) steps + S / (450 GB/s x 0.5651). The seed took its NVLS
  // efficiency and latencies from this very measurement (aic_kernels nccl 2.11106 ms), so the
  // model must give it back; ring would take 2(7/8) S / (450 GB/s x 0.7074), slower.
  RooflineCostModel model(find_system("dgx-h100"), false, AllReduceImpl::nccl);
  const double S = 536870912;
  const OpCost c = model.collective(OpKind::all_reduce, S, 8);
  CHECK(c.algorithm == CollectiveAlgorithm::nvls);
  CHECK(c.bound == Bound::network);
  CHECK(c.time_s == Approx(2.11106e-3).epsilon(0.01));
  // Two GPUs: ring (NVLS needs more than two); busbw = S/t x 2(n-1)/n = 0.7074 x 450 GB/s at size.
  const OpCost r = model.collective(OpKind::all_reduce, S, 2);
  CHECK(r.algorithm == CollectiveAlgorithm::ring);
  CHECK(S / r.time_s == Approx(0.7074 * 450e9).epsilon(0.01));
  // Small messages cost the fitted latency: base 4.33 us + 2(n-1) x 0.81 us at n = 8 -> ~15.6 us
  // (measured 15.59 us at 1 KB).
  CHECK(model.collective(OpKind::all_reduce, 1024, 8).time_s == Approx(15.6e-6).epsilon(0.05));
  // A group larger than the NVLink domain crosses InfiniBand at the NIC's 400 Gb/s.
  const OpCost ib = model.collective(OpKind::all_reduce, S, 16);
  CHECK(ib.time_s > 2 * 15.0 / 16 * S / 50e9);
  CHECK(model.collective(OpKind::all_reduce, S, 1).time_s == 0);
}

TEST_CASE("the engines' one-shot all-reduce reproduces its measurement and is used where it beats NCCL", "[hwmodels][cost]") {
  // hardware.md: custom one-shot all-reduce on 8x H100 (public SGLang measurements) ~6 us at
  // 512 B, ~8 us at 32 KB, ~17 us at 256 KB; the seed's least-squares fit of
  // latency + 7 x bytes / (450 GB/s x efficiency) must give them back within 6%.
  RooflineCostModel h100(find_system("dgx-h100"), false);
  CHECK(h100.one_shot_all_reduce(512, 8).time_s == Approx(6e-6).epsilon(0.06));
  CHECK(h100.one_shot_all_reduce(32768, 8).time_s == Approx(8e-6).epsilon(0.06));
  CHECK(h100.one_shot_all_reduce(262144, 8).time_s == Approx(17e-6).epsilon(0.06));
  // Under auto a 32 KB all-reduce is the one-shot kernel (NCCL's measured small-message time on
  // 8 H100s is 15.6 us, cost model test above); under nccl it is NCCL's.
  const OpCost small = h100.collective(OpKind::all_reduce, 32768, 8);
  CHECK(small.algorithm == CollectiveAlgorithm::one_shot);
  CHECK(small.provenance == "seed");
  CHECK(!small.carried);
  RooflineCostModel h100_nccl(find_system("dgx-h100"), false, AllReduceImpl::nccl);
  CHECK(h100_nccl.collective(OpKind::all_reduce, 32768, 8).algorithm == CollectiveAlgorithm::nvls);
  CHECK(h100_nccl.collective(OpKind::all_reduce, 32768, 8).time_s > 2 * small.time_s);
  // The one-shot read grows as 7 x bytes: at 4 MiB it takes 6.3 + 7 x 4 MiB / (450 GB/s x 0.379)
  // = 178 us; NCCL's NVLS 4.33 + 14 x 0.81 + 4 MiB / (450 GB/s x 0.565) = 32 us wins.
  CHECK(h100.one_shot_all_reduce(4 << 20, 8).time_s == Approx(178e-6).epsilon(0.02));
  CHECK(h100.collective(OpKind::all_reduce, 4 << 20, 8).algorithm == CollectiveAlgorithm::nvls);
  // Where it does not apply: one rank, more than 8 ranks (vLLM's supported world sizes), across
  // NVLink domains, above 8 MiB; other collectives are never one-shot.
  CHECK(h100.one_shot_all_reduce(32768, 1).network_s == 0);
  CHECK(h100.one_shot_all_reduce(32768, 16).network_s == 0);
  CHECK(h100.one_shot_all_reduce(32768, 3).network_s == 0);  // vLLM: world sizes 2, 4, 6, 8
  CHECK(h100.one_shot_all_reduce(32768, 6).network_s > 0);
  CHECK(h100.one_shot_all_reduce(9 << 20, 8).network_s == 0);
  RooflineCostModel rack(find_system("gb200-nvl72"), false);
  CHECK(rack.one_shot_all_reduce(32768, 16).network_s == 0);
  CHECK(rack.collective(OpKind::all_gather, 32768, 8).algorithm != CollectiveAlgorithm::one_shot);
  // Blackwell carries H100's latency and efficiency over its own 900 GB/s NVLink: 128 KiB on
  // 8 B200s = 6.295 + 7 x 131072 / (900 GB/s x 0.3794) = 8.98 us, marked carried.
  RooflineCostModel b200(find_system("dgx-b200"), false);
  const OpCost ar = b200.collective(OpKind::all_reduce, 131072, 8);
  CHECK(ar.algorithm == CollectiveAlgorithm::one_shot);
  CHECK(ar.time_s == Approx(8.98e-6).epsilon(0.01));
  CHECK(ar.provenance == "carried");
  CHECK(ar.carried);
}

TEST_CASE("FP4 GEMMs need FP4 tensor cores", "[hwmodels][cost]") {
  RooflineCostModel h100(find_system("dgx-h100"), false);
  CHECK_THROWS_AS(h100.cost(gemm(128, 128, 128, DType::nvfp4)), InfeasibleError);
  RooflineCostModel gb300(find_system("gb300-nvl72"), false);
  CHECK(gb300.cost(gemm(8192, 8192, 8192, DType::nvfp4)).compute_efficiency == Approx(0.3220).epsilon(1e-3));
}

TEST_CASE("attention compute is bounded by tensor cores or exponentials", "[hwmodels][cost]") {
  // A long prefill: 4096 tokens. Tensor FLOPs at FP8 (FP8 KV) x 0.75; exponentials at
  // exp_throughput. GB300's doubled SFU rate makes its exp term half of GB200's per SM-clock.
  const ModelConfig m = find_model("llama2-70b");
  const StepGraph g(m, StepBatch::prefill_only(1, 4096), Deployment{}, Precision{DType::nvfp4, DType::nvfp4, DType::fp8});
  const Op* att = nullptr;
  for (std::size_t v = 0; v < g.size(); ++v)
    if (g.op(v).kind == OpKind::attention_prefill) att = &g.op(v);
  REQUIRE(att != nullptr);
  const SystemSpec s = find_system("gb200-nvl72");
  RooflineCostModel model(s, false);
  const OpCost c = model.cost(*att);
  const double tensor = att->flops / (s.gpu.peak(DType::fp8)->value * 0.75);
  const double exps = att->exp_ops / s.gpu.exp_throughput.value;
  CHECK(c.compute_s == Approx(std::max(tensor, exps)));
}

TEST_CASE("cost models register by name", "[hwmodels][cost]") {
  CHECK(cost_model_registry().get("roofline").factory(find_system("dgx-b200"), CostModelOptions{})->name() == "roofline");
  CHECK_THROWS_WITH(cost_model_registry().get("magic"), "unknown cost model 'magic'; valid: roofline");
}

TEST_CASE("calibrated factors replace the seed curves and say so", "[hwmodels][cost]") {
  // H100 BF16 8192^3 measured 1.4048 ms (aic_kernels): the calibrated GEMM model is fitted to
  // the whole table, so it lands within 10% of this training point; the seed model marks its
  // GEMM costs "seed", the calibrated one "calibrated".
  const SystemSpec sys = find_system("dgx-h100");
  RooflineCostModel seed(sys, false), fitted(sys, true);
  const Op big = gemm(8192, 8192, 8192, DType::bf16);
  CHECK(fitted.cost(big).time_s == Approx(1.4048e-3).epsilon(0.10));
  CHECK(fitted.cost(big).provenance == "calibrated");
  CHECK(seed.cost(big).provenance == "seed");
  // 8-GPU all-reduce of 512 MiB measured 2.11106 ms (aic_kernels nccl): the fitted curve gives it back.
  CHECK(fitted.collective(OpKind::all_reduce, 536870912, 8).time_s == Approx(2.11106e-3).epsilon(0.10));
}

TEST_CASE("a GEMM fed pre-quantized activations skips the fitted quantize pass", "[hwmodels][cost]") {
  // The calibrated FP8 model on H100 carries a per-A-element term (the activation quantize pass
  // inside the measured torch_flow call, docs/calibration.md). The step graph's GEMMs read
  // activations their producer already wrote in FP8, so the cost model drops m x k x a_element.
  const SystemSpec sys = find_system("dgx-h100");
  RooflineCostModel fitted(sys, true);
  Op op = gemm(4096, 8192, 8192, DType::fp8);
  const double raw = fitted.cost(op).time_s;
  op.input_prequantized = true;
  const double fused = fitted.cost(op).time_s;
  REQUIRE(fitted.calibrated() != nullptr);
  const double a_element = fitted.calibrated()->gemm.at(DType::fp8).model.a_element_s;
  CHECK(a_element > 0);
  // And the quantize kernels' launches: the part of FP8's fitted t0 above BF16's on the same GPU
  // (hwmodels/data/calibrated/h100-sxm.yaml: 12.797 - 3.716 = 9.081 us; the table's smallest
  // FP8 calls take 12.9 us against 4.0 us in BF16).
  const double t0_fp8 = fitted.calibrated()->gemm.at(DType::fp8).model.fixed_latency_s;
  const double t0_bf16 = fitted.calibrated()->gemm.at(DType::bf16).model.fixed_latency_s;
  CHECK(t0_fp8 - t0_bf16 == Approx(9.081e-6).epsilon(1e-3));
  CHECK(raw - fused == Approx(4096.0 * 8192 * a_element + (t0_fp8 - t0_bf16)).epsilon(1e-9));
  // A decode-sized GEMM (m = 8, n = 8192, k = 1024: 8.4 MB of FP8 weights) then costs BF16's t0
  // plus at least its weights at the datasheet 3.35 TB/s (2.5 us), and less than FP8's eager t0
  // alone (12.8 us), which it cost at least before.
  Op small = gemm(8, 8192, 1024, DType::fp8);
  small.input_prequantized = true;
  CHECK(fitted.cost(small).time_s >= t0_bf16 + 8192.0 * 1024 / 3.35e12);
  CHECK(fitted.cost(small).time_s < t0_fp8);
}

TEST_CASE("block-scaled FP8 GEMMs run at FP8's peak with their own measured fit", "[hwmodels][cost]") {
  // fp8_block runs on the FP8 tensor cores, so its datasheet peak is FP8's; its latency model is
  // fitted to its own measured calls (aic_kernels gemm_trtllm_1.3.0rc20_subset.csv, fp8_block:
  // torch_flow on H100, DeepGEMM on B200), which include the 1 x 128 activation quantize (the
  // step graph never marks its input pre-quantized). Measured m = 16, n = k = 4096: 11.73 us on
  // H100 (per-tensor FP8 with its amax and quantize passes: 19.2 us), 9.52 us on B200; m = 8192:
  // 285.7 us and 112.7 us.
  for (const auto& [system, small_us, large_us] : {std::tuple{"dgx-h100", 11.729, 285.675}, std::tuple{"dgx-b200", 9.519, 112.699}}) {
    INFO(system);
    const SystemSpec sys = find_system(system);
    REQUIRE(sys.gpu.peak(DType::fp8_block) != nullptr);
    CHECK(sys.gpu.peak(DType::fp8_block)->value == sys.gpu.peak(DType::fp8)->value);
    RooflineCostModel fitted(sys, true);
    const OpCost small = fitted.cost(gemm(16, 4096, 4096, DType::fp8_block));
    CHECK(small.provenance == "calibrated");
    CHECK(small.time_s == Approx(small_us * 1e-6).epsilon(0.15));
    CHECK(fitted.cost(gemm(8192, 4096, 4096, DType::fp8_block)).time_s == Approx(large_us * 1e-6).epsilon(0.15));
  }
  // The seed model (no fit) carries FP8's efficiency curve, marked carried.
  RooflineCostModel seed(find_system("dgx-h100"), false);
  CHECK(seed.cost(gemm(8192, 8192, 8192, DType::fp8_block)).carried);
}
