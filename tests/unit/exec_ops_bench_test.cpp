// exec/: the step-op bench records (cuda_ops_bench.hpp): FLOPs and bytes by hand, and identities
// that join the step graph's ops (Op::identity), so calibration can match a measured attention
// or norm to the op the simulator predicts.

#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "racksim/common/error.hpp"
#include "racksim/exec/backend.hpp"
#include "racksim/exec/cuda_ops_bench.hpp"
#include "racksim/workloads/model_catalog.hpp"
#include "racksim/workloads/step_graph.hpp"

using namespace racksim;
using namespace racksim::exec;

namespace {

const Op& find_op(const StepGraph& g, const std::string& name) {
  for (std::size_t v = 0; v < g.size(); ++v)
    if (g.op(v).name == name) return g.op(v);
  FAIL("no op " << name);
  return g.op(0);
}

const TimingStats kTime{1e-4, 9e-5, 2e-4, 10};

}  // namespace

TEST_CASE("decode and prefill attention records: pairs, FLOPs and bytes by hand", "[exec][bench]") {
  // Decode: batch 8 at context 1023 attends 8 x 1024 = 8,192 (query, key) pairs on Llama-2-70B
  // (64 heads, 8 KV heads, head_dim 128). FLOPs 4 x 64 x 128 x 8,192 = 268,435,456. Bytes: K and V
  // of 8,192 keys x 8 heads x 128 x 2 B = 4,096 B each = 33,554,432, plus q and out 2 x 8 x 64 x
  // 128 x 2 = 262,144: 33,816,576. FP8 halves the KV part: 16,777,216 + 262,144.
  const MeasurementRecord d = attention_decode_record({8, 1023, DType::bf16, {}}, kTime);
  CHECK(d.op.identity() == "attention_decode tokens=8 heads=64 head_dim=128 seqs=8 pairs=8192 q=bf16 kv=bf16");
  CHECK(*d.flops == 268'435'456.0);
  CHECK(*d.bytes_moved == 33'816'576.0);
  CHECK(d.time_median_s == 1e-4);
  CHECK(d.reps == 10);
  CHECK(*attention_decode_record({8, 1023, DType::fp8, {}}, kTime).bytes_moved == 17'039'360.0);
  // Prefill: one 128-token prompt: 128 x 129 / 2 = 8,256 causal pairs; FLOPs 4 x 64 x 128 x 8,256
  // = 270,532,608; bytes K/V 128 x 4,096 = 524,288 + q and out 2 x 128 x 64 x 128 x 2 = 4,194,304.
  const MeasurementRecord p = attention_prefill_record({128, 1, DType::bf16, {}}, kTime);
  CHECK(p.op.identity() == "attention_prefill tokens=128 heads=64 head_dim=128 seqs=1 pairs=8256 q=bf16 kv=bf16");
  CHECK(*p.flops == 270'532'608.0);
  CHECK(*p.bytes_moved == 4'718'592.0);
  CHECK_THROWS_AS(attention_decode_record({8, 10, DType::nvfp4, {}}, kTime), InputError);  // KV is bf16 or fp8
}

TEST_CASE("the attention records join the step graph's ops of the same shape", "[exec][bench]") {
  // Llama-2-70B, TP1, decode batch 8 at context 1023 and a prefill of 1 x 128: the graph's
  // attention ops and the bench's records must spell the same identity (BF16 q, FP8 KV).
  const ModelConfig m = find_model("llama2-70b");
  const Precision prec{DType::nvfp4, DType::bf16, DType::fp8};
  const StepGraph dec(m, StepBatch::decode(8, 1023), Deployment{}, prec);
  CHECK(attention_decode_record({8, 1023, DType::fp8, {}}, kTime).op.identity() == find_op(dec, "layers.0.attention_decode").identity());
  const StepGraph pre(m, StepBatch::prefill_only(1, 128), Deployment{}, prec);
  CHECK(attention_prefill_record({128, 1, DType::fp8, {}}, kTime).op.identity() ==
        find_op(pre, "layers.0.attention_prefill").identity());
  // And the elementwise ops with BF16 activations: input_norm, swiglu and sampling.
  const ElementwiseCase norm{"rmsnorm", 8, 8192}, act{"swiglu", 8, 28672}, sample{"sampling", 8, 32000};
  CHECK(elementwise_record(norm, kTime).op.identity() == find_op(dec, "layers.0.input_norm").identity());
  CHECK(elementwise_record(act, kTime).op.identity() == find_op(dec, "layers.0.swiglu").identity());
  CHECK(elementwise_record(sample, kTime).op.identity() == find_op(dec, "sampling").identity());
}

TEST_CASE("elementwise records: FLOPs as the step graph counts them, bytes the kernel moves", "[exec][bench]") {
  // rmsnorm 16 x 8192 = 131,072 values: 4 FLOPs each = 524,288; x in and y out (2 B each) plus
  // the weight row: 2 x 131,072 x 2 + 8,192 x 2 = 540,672 bytes.
  const MeasurementRecord n = elementwise_record({"rmsnorm", 16, 8192}, kTime);
  CHECK(n.op.identity() == "rmsnorm m=16 n=8192 k=0 a=bf16 w=bf16 c=bf16");
  CHECK(*n.flops == 524'288.0);
  CHECK(*n.bytes_moved == 540'672.0);
  // sampling 2 x 32000 FP32 logits: 2 FLOPs each = 128,000; 256,000 bytes in + 2 ids out.
  const MeasurementRecord s = elementwise_record({"sampling", 2, 32000}, kTime);
  CHECK(s.op.identity() == "sampling m=2 n=32000 k=0 a=fp32 w=fp32 c=fp32");
  CHECK(*s.flops == 128'000.0);
  CHECK(*s.bytes_moved == 256'008.0);
  // swiglu 1 x 100: gate and up in, product out: 3 x 100 x 2 = 600 bytes.
  CHECK(*elementwise_record({"swiglu", 1, 100}, kTime).bytes_moved == 600.0);
  CHECK_THROWS_WITH(elementwise_record({"layernorm", 1, 8}, kTime), Catch::Contains("rmsnorm, residual_add, rope"));
  // Default sweeps: 2 KV formats x 4 batches x 3 contexts; 5 prefill lengths; 6 kinds x 4 row
  // counts less sampling at 4,096 rows.
  const std::vector<DType> kv = {DType::bf16, DType::fp8};
  CHECK(default_attention_decode_cases(kv).size() == 24);
  CHECK(default_attention_prefill_cases(kv).size() == 10);
  CHECK(default_elementwise_cases().size() == 59);  // + 3 MoE models x 3 kinds x 4 token counts
}

TEST_CASE("MoE routing records: FLOPs as the step graph counts them, bytes by hand, identities joined", "[exec][bench]") {
  // Mixtral-8x7B at 16 tokens (8 experts, top-2, hidden 4096). router_topk: 16 x 8 = 128 FP32
  // logits, 4 FLOPs each = 512; 512 bytes in, 16 x 2 assignments x (id + weight) = 256 out: 768.
  const MeasurementRecord t = elementwise_record({"moe_router_topk", 16, 8, 8, 2}, kTime);
  CHECK(t.op.identity() == "moe_router_topk m=16 n=8 k=0 a=fp32 w=fp32 c=fp32");
  CHECK(*t.flops == 512.0);
  CHECK(*t.bytes_moved == 768.0);
  // permute: 32 assignment rows of 4096: the gathered rows in and out 2 x 131,072 x 2 = 524,288,
  // 4 int32 per assignment (id in; position, order, source row out) 512, the 9 offsets 36, the
  // active experts' min(8, 32) = 8 slots 32: 524,868.
  const MeasurementRecord p = elementwise_record({"moe_permute", 32, 4096, 8, 2}, kTime);
  CHECK(*p.flops == 0.0);
  CHECK(*p.bytes_moved == 524'868.0);
  // finalize: 2 FLOPs per expert-row element = 262,144; expert rows in 262,144 B, a position and a
  // weight per row 256, 16 token rows out 131,072: 393,472.
  const MeasurementRecord f = elementwise_record({"moe_finalize", 32, 4096, 8, 2}, kTime);
  CHECK(*f.flops == 262'144.0);
  CHECK(*f.bytes_moved == 393'472.0);
  // The step graph's MoE ops of Mixtral at decode batch 16 spell the same identities.
  const ModelConfig m = find_model("mixtral-8x7b");
  const StepGraph dec(m, StepBatch::decode(16, 100), Deployment{}, Precision{DType::nvfp4, DType::bf16, DType::fp8});
  CHECK(t.op.identity() == find_op(dec, "layers.0.router_topk").identity());
  CHECK(p.op.identity() == find_op(dec, "layers.0.experts.permute").identity());
  CHECK(f.op.identity() == find_op(dec, "layers.0.experts.finalize").identity());
  // MiniMax-M2.5 at 16 tokens (256 experts, top-8, the biased sigmoid routing): 16 x 256 logits
  // in, 16,384 B; 128 assignments x 8 B out, 1,024; the 256 FP32 biases once, 1,024: 18,432 B;
  // and the identity of the graph's op.
  const MeasurementRecord sg = elementwise_record({"moe_router_topk", 16, 256, 256, 8, true}, kTime);
  CHECK(*sg.bytes_moved == 18'432.0);
  const StepGraph mm(find_model("minimax-m2.5"), StepBatch::decode(16, 100), Deployment{}, Precision{DType::nvfp4, DType::bf16, DType::fp8});
  CHECK(sg.op.identity() == find_op(mm, "layers.0.router_topk").identity());
  CHECK_THROWS_AS(elementwise_record({"moe_permute", 32, 4096, 8, 2, true}, kTime), InputError);  // sigmoid is a top-k matter
  // Shapes the kinds cannot have.
  CHECK_THROWS_AS(elementwise_record({"moe_permute", 33, 4096, 8, 2}, kTime), InputError);     // not whole tokens of 2
  CHECK_THROWS_AS(elementwise_record({"moe_router_topk", 16, 9, 8, 2}, kTime), InputError);    // width is not the experts
  CHECK_THROWS_AS(elementwise_record({"moe_finalize", 32, 4096, 8, 0}, kTime), InputError);    // no top-k
  CHECK_THROWS_AS(elementwise_record({"moe_finalize", 32, 4096, 2, 4}, kTime), InputError);    // top-k above the experts
}

TEST_CASE("the step-op benches need the CUDA backend and a device", "[exec][bench]") {
  // Without a device (or without CUDA built in) each bench entry point refuses with
  // InfeasibleError (exit 3), as the GEMM benches do.
  if (cuda_device_count() > 0) return;
  const std::vector<ElementwiseCase> cases = {{"rmsnorm", 1, 64}};
  CHECK_THROWS_AS(cuda_bench_elementwise(cases, BenchTiming{}, {}), InfeasibleError);
}
