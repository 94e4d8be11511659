// workloads/: the step graph's ops, shapes, FLOPs and bytes against hand calculations.

#include <cmath>
#include <map>

#include <catch2/catch.hpp>

#include "racksim/workloads/model_catalog.hpp"
#include "racksim/workloads/step_graph.hpp"

using namespace racksim;

namespace {

struct Totals {
  std::map<OpKind, double> flops, bytes, comm, count;
};

Totals totals(const StepGraph& g) {
  Totals t;
  for (std::size_t v = 0; v < g.size(); ++v) {
    const Op& op = g.op(v);
    t.flops[op.kind] += op.flops;
    t.bytes[op.kind] += op.bytes();
    t.comm[op.kind] += op.comm_bytes;
    t.count[op.kind] += 1;
  }
  return t;
}

const Op& find(const StepGraph& g, const std::string& name) {
  for (std::size_t v = 0; v < g.size(); ++v)
    if (g.op(v).name == name) return g.op(v);
  FAIL("no op " << name);
  return g.op(0);
}

const Precision kNvfp4{DType::nvfp4, DType::nvfp4, DType::fp8};

}  // namespace

TEST_CASE("Llama-2-70B decode step FLOPs, by hand", "[workloads][graph]") {
  // Decode batch B = 2048, context c = 512, TP1, NVFP4 weights and GEMMs, FP8 KV.
  // GEMMs: 2 x 68,713,185,280 FLOPs per token (linear + lm_head) x 2048 tokens = 281,449.2 GFLOP.
  // Attention: per token 80 layers x 4 x 64 heads x 128 x (c + 1) = 2,621,440 x 513, x 2048.
  const ModelConfig m = find_model("llama2-70b");
  const StepGraph g(m, StepBatch::decode(2048, 512), Deployment{}, kNvfp4);
  Totals t = totals(g);
  CHECK(t.flops[OpKind::gemm] == 2.0 * 68'713'185'280.0 * 2048);
  CHECK(t.flops[OpKind::attention_decode] == 80.0 * 4 * 64 * 128 * 513 * 2048);
  // One op per role: embedding; 11 per layer; final norm, lm_head, sampling = 884.
  CHECK(g.size() == 1 + 80 * 11 + 3);
  CHECK(t.count[OpKind::gemm] == 80 * 4 + 1);
  CHECK(t.count[OpKind::all_reduce] == 0);  // TP1: no collectives
  // KV read: 2048 seqs x 512 tokens x 80 layers x (2 x 8 x 128) FP8 bytes.
  double kv = 0;
  for (std::size_t v = 0; v < g.size(); ++v) kv += g.op(v).kv_bytes_read;
  CHECK(kv == 2048.0 * 512 * 80 * 2048);
  // QKV GEMM shape and bytes: n = (64 + 2 x 8) x 128 = 10,240; weights 10,240 x 8,192 x 0.5625.
  const Op& qkv = find(g, "layers.0.qkv_proj");
  CHECK(qkv.m == 2048);
  CHECK(qkv.n == 10240);
  CHECK(qkv.k == 8192);
  CHECK(qkv.weight_bytes == 10240.0 * 8192 * 0.5625);
  CHECK(qkv.act_bytes_read == 2048.0 * 8192 * 0.5625);  // NVFP4 A operand
  CHECK(qkv.bytes_written == 2048.0 * 10240 * 2);       // BF16 out
  CHECK(qkv.identity() == "gemm m=2048 n=10240 k=8192 a=nvfp4 w=nvfp4 c=bf16");
  // Weights read once per step: the linear weights in NVFP4 plus the BF16 lm_head.
  double w = 0;
  for (std::size_t v = 0; v < g.size(); ++v)
    if (g.op(v).kind == OpKind::gemm) w += g.op(v).weight_bytes;
  CHECK(w == Approx(68'451'041'280.0 * 0.5625 + 262'144'000.0 * 2).epsilon(1e-12));
}

TEST_CASE("decode attention grows linearly with context", "[workloads][graph]") {
  const ModelConfig m = find_model("llama2-70b");
  const StepGraph a(m, StepBatch::decode(8, 1000), Deployment{}, kNvfp4);
  const StepGraph b(m, StepBatch::decode(8, 3000), Deployment{}, kNvfp4);
  const Op& oa = find(a, "layers.3.attention_decode");
  const Op& ob = find(b, "layers.3.attention_decode");
  CHECK(ob.flops / oa.flops == Approx(3001.0 / 1001.0));
  CHECK(ob.kv_bytes_read / oa.kv_bytes_read == Approx(3.0));
  CHECK(oa.exp_ops == 64.0 * 8 * 1001);
}

TEST_CASE("tensor parallelism shards the GEMMs and adds all-reduces", "[workloads][graph]") {
  // TP8 on Llama-2-70B: 8 q heads and 1 kv head per GPU: QKV n = (8 + 2) x 128 = 1,280;
  // gate_up n = 2 x 28,672 / 8 = 7,168; two all-reduces per layer of T x 8,192 BF16 values.
  const ModelConfig m = find_model("llama2-70b");
  const StepGraph g(m, StepBatch::decode(64, 100), Deployment{8, 1, 1}, kNvfp4);
  CHECK(find(g, "layers.0.qkv_proj").n == 1280);
  CHECK(find(g, "layers.0.gate_up_proj").n == 7168);
  CHECK(find(g, "layers.0.down_proj").k == 3584);
  const Op& ar = find(g, "layers.0.attn_all_reduce");
  CHECK(ar.kind == OpKind::all_reduce);
  CHECK(ar.comm_bytes == 64.0 * 8192 * 2);
  CHECK(ar.participants == 8);
  Totals t = totals(g);
  CHECK(t.count[OpKind::all_reduce] == 160);
  CHECK(t.count[OpKind::all_gather] == 1);  // logits
  // GEMM FLOPs per GPU are an eighth of TP1's.
  const StepGraph g1(m, StepBatch::decode(64, 100), Deployment{}, kNvfp4);
  CHECK(t.flops[OpKind::gemm] == Approx(totals(g1).flops[OpKind::gemm] / 8));
  // TP16 > 8 kv heads: each GPU keeps one replicated kv head (n = (4 + 2) x 128).
  const StepGraph g16(m, StepBatch::decode(4, 100), Deployment{16, 1, 1}, kNvfp4);
  CHECK(find(g16, "layers.0.qkv_proj").n == 768);
}

TEST_CASE("FP8 GEMM inputs are pre-quantized unless the quantize runs separately", "[workloads][graph]") {
  // precision.activation_quantize: fused (default) marks every FP8/NVFP4 GEMM input as written
  // in its format by the producer, so the cost model drops the measured quantize kernels;
  // separate keeps them. BF16 GEMMs never quantize; the lm_head runs in BF16 either way.
  const ModelConfig m = find_model("llama3.1-8b");
  Precision fused{DType::fp8, DType::fp8, DType::fp8};
  Precision separate = fused;
  separate.fused_quantize = false;
  const StepGraph gf(m, StepBatch::decode(8, 100), Deployment{}, fused);
  const StepGraph gs(m, StepBatch::decode(8, 100), Deployment{}, separate);
  CHECK(find(gf, "layers.0.qkv_proj").input_prequantized);
  CHECK(find(gf, "layers.31.down_proj").input_prequantized);
  CHECK_FALSE(find(gs, "layers.0.qkv_proj").input_prequantized);
  CHECK_FALSE(find(gs, "layers.31.down_proj").input_prequantized);
  CHECK_FALSE(find(gf, "lm_head").input_prequantized);
  const StepGraph gb(m, StepBatch::decode(8, 100), Deployment{}, Precision{});
  CHECK_FALSE(find(gb, "layers.0.qkv_proj").input_prequantized);
}

TEST_CASE("fp8_block GEMMs read block scales and quantize their input themselves", "[workloads][graph]") {
  // Llama-2-70B o_proj at TP1, decode batch 4: k = n = 8,192. Weights: 8,192^2 bytes plus one
  // FP32 scale per 128 x 128 block (4,096 blocks: 16,384 bytes). Activations: 4 x 8,192 bytes plus
  // one FP32 per 1 x 128 group (256 groups: 1,024 bytes). The engines quantize each group in a
  // kernel of their own, so the input is never marked pre-quantized, even under the default
  // fused setting (which still holds for the per-tensor FP8 graph).
  const ModelConfig m = find_model("llama2-70b");
  const StepGraph g(m, StepBatch::decode(4, 100), Deployment{}, Precision{DType::fp8_block, DType::fp8_block, DType::fp8});
  const Op& o = find(g, "layers.0.o_proj");
  CHECK(o.weight_bytes == 8192.0 * 8192 + 4096 * 4);
  CHECK(o.act_bytes_read == 4.0 * 8192 + 256 * 4);
  CHECK_FALSE(o.input_prequantized);
  CHECK(o.in_dtype == DType::fp8_block);
  const StepGraph f(m, StepBatch::decode(4, 100), Deployment{}, Precision{DType::fp8, DType::fp8, DType::fp8});
  CHECK(find(f, "layers.0.o_proj").input_prequantized);
  // What the GEMM inputs' producers write: the GEMM's format when the quantize is fused into
  // them (per-tensor FP8: 1 byte a value), BF16 when the GEMM's own call quantizes (fp8_block,
  // or activation_quantize: separate): 4 tokens x 8,192 x 2 bytes.
  CHECK(find(f, "layers.0.post_attn_norm").bytes_written == 4.0 * 8192);
  CHECK(find(f, "layers.0.attention_decode").out_dtype == DType::fp8);
  CHECK(find(g, "layers.0.post_attn_norm").bytes_written == 4.0 * 8192 * 2);
  CHECK(find(g, "layers.0.attention_decode").out_dtype == DType::bf16);
  CHECK(find(g, "layers.0.swiglu").out_dtype == DType::bf16);
  Precision separate{DType::fp8, DType::fp8, DType::fp8};
  separate.fused_quantize = false;
  const StepGraph s(m, StepBatch::decode(4, 100), Deployment{}, separate);
  CHECK(find(s, "layers.0.input_norm").out_dtype == DType::bf16);
  CHECK_FALSE(find(s, "layers.0.qkv_proj").input_prequantized);
}

TEST_CASE("Qwen3 normalises q and k per head before RoPE; Llama does not", "[workloads][graph]") {
  // Qwen3-32B at TP4: 16 q heads and 2 kv heads per GPU, head_dim 128: QKV n = (16 + 4) x 128
  // = 2,560 (wider than hidden/TP = 1,280: 64 x 128 > 5,120); o_proj k = 16 x 128 = 2,048;
  // qk_norm over the 18 q and k heads of each token: 8 tokens x 2,304 values, read once
  // (BF16 in and out, plus the weights' tiny share), between qkv_proj and rope.
  const ModelConfig m = find_model("qwen3-32b");
  const StepGraph g(m, StepBatch::decode(8, 100), Deployment{4, 1, 1}, Precision{DType::fp8, DType::fp8, DType::fp8});
  CHECK(find(g, "layers.0.qkv_proj").n == 2560);
  CHECK(find(g, "layers.0.o_proj").k == 2048);
  const Op& qk = find(g, "layers.0.qk_norm");
  CHECK(qk.kind == OpKind::rmsnorm);
  CHECK(qk.m == 8);
  CHECK(qk.n == 18 * 128);
  Totals t = totals(g);
  CHECK(t.count[OpKind::rmsnorm] == 64 * 3 + 1);  // input, qk, post-attention per layer; final
  const StepGraph llama(find_model("llama3.1-8b"), StepBatch::decode(8, 100), Deployment{}, kNvfp4);
  CHECK(totals(llama).count[OpKind::rmsnorm] == 32 * 2 + 1);
  // qk_norm feeds rope: the graph orders them.
  std::size_t qk_v = 0, rope_v = 0;
  for (std::size_t v = 0; v < g.size(); ++v) {
    if (g.op(v).name == "layers.0.qk_norm") qk_v = v;
    if (g.op(v).name == "layers.0.rope") rope_v = v;
  }
  CHECK(qk_v < rope_v);
}

TEST_CASE("MiniMax-M2.5: a QK-norm over the whole layer sums across TP ranks; RoPE on half of each head", "[workloads][graph]") {
  // TP4: 12 q heads and 2 kv heads per GPU. The per-layer norm needs each token's sum of squares
  // over all 48 q heads (and all 8 k heads): the ranks all-reduce 2 FP32 values per token,
  // 8 bytes x 8 tokens = 64 bytes, before the norm. RoPE rotates 64 of 128 dims: (12 + 2) x 64.
  const ModelConfig m = find_model("minimax-m2.5");
  const StepGraph g(m, StepBatch::decode(8, 100), Deployment{4, 1, 1}, Precision{DType::fp8_block, DType::fp8_block, DType::bf16});
  const Op& ar = find(g, "layers.0.qk_norm_all_reduce");
  CHECK(ar.kind == OpKind::all_reduce);
  CHECK(ar.comm_bytes == 64.0);
  CHECK(ar.participants == 4);
  CHECK(find(g, "layers.0.qk_norm").n == 14 * 128);
  CHECK(find(g, "layers.0.rope").n == 14 * 64);
  CHECK(find(g, "layers.0.qkv_proj").n == (12 + 4) * 128);
  Totals t = totals(g);
  CHECK(t.count[OpKind::all_reduce] == 62 * 3);  // qk-norm, attention and MoE, per layer
  // One GPU: nothing to sum across; Qwen3's per-head norm never needs it.
  const StepGraph one(m, StepBatch::decode(8, 100), Deployment{}, Precision{DType::fp8_block, DType::fp8_block, DType::bf16});
  CHECK(totals(one).count[OpKind::all_reduce] == 0);
  const StepGraph q(find_model("qwen3-32b"), StepBatch::decode(8, 100), Deployment{4, 1, 1}, Precision{DType::fp8, DType::fp8, DType::fp8});
  CHECK(totals(q).count[OpKind::all_reduce] == 64 * 2);
}

TEST_CASE("pipeline stages split the layers and pass activations", "[workloads][graph]") {
  const ModelConfig m = find_model("llama2-70b");
  CHECK(layers_per_stage(80, 3) == std::vector<int>{27, 27, 26});
  const StepGraph g(m, StepBatch::decode(16, 10), Deployment{1, 2, 1}, Precision{DType::fp8, DType::fp8, DType::fp8});
  const Op& recv = find(g, "stage1.recv");
  CHECK(recv.kind == OpKind::send_recv);
  CHECK(recv.comm_bytes == 16.0 * 8192 * 2);
  CHECK(find(g, "layers.39.qkv_proj").stage == 0);
  CHECK(find(g, "layers.40.qkv_proj").stage == 1);
  CHECK(find(g, "lm_head").stage == 1);
  const auto order = g.topological_order();
  CHECK(g.op(order.front()).name == "embedding");
  CHECK(g.op(order.back()).name == "sampling");
}

TEST_CASE("chunked prefill attends to the cached context causally", "[workloads][graph]") {
  // A chunk of q = 4 tokens after c = 10 cached: query i sees 10 + i + 1 keys:
  // 11 + 12 + 13 + 14 = 50 = q*c + q(q+1)/2.
  const ModelConfig m = find_model("llama2-70b");
  StepBatch b;
  b.prefill.push_back({4, 10, false});
  const StepGraph g(m, b, Deployment{}, kNvfp4);
  const Op& att = find(g, "layers.0.attention_prefill");
  CHECK(att.attended_pairs == 50);
  CHECK(att.flops == 4.0 * 64 * 128 * 50);
  CHECK(att.kv_bytes_read == 10.0 * 2048);   // 10 cached tokens x 2 x 8 x 128 FP8 bytes
  // Not the last chunk: no token is sampled, so no lm_head.
  for (std::size_t v = 0; v < g.size(); ++v) CHECK(g.op(v).name != "lm_head");
  // A mixed batch has both attention ops in one layer.
  StepBatch mixed = StepBatch::decode(3, 20);
  mixed.prefill.push_back({7, 0, true});
  const StepGraph gm(m, mixed, Deployment{}, kNvfp4);
  CHECK(find(gm, "layers.0.qkv_proj").m == 10);
  CHECK(find(gm, "lm_head").m == 4);
}

TEST_CASE("MoE layers route tokens to experts", "[workloads][graph]") {
  // Mixtral-8x7B, one decode token, TP2 EP2: 4 experts per GPU; 2 assignments; rows on this
  // GPU = ceil(2 x 4 / 8) = 1; experts touched: 4 x (1 - (7/8)^2) = 0.9375.
  const ModelConfig m = find_model("mixtral-8x7b");
  const StepGraph g(m, StepBatch::decode(1, 100), Deployment{2, 1, 2}, Precision{DType::fp8, DType::fp8, DType::fp8});
  const Op& gu = find(g, "layers.0.experts.gate_up_proj");
  CHECK(gu.kind == OpKind::moe_gemm);
  CHECK(gu.m == 1);
  CHECK(gu.n == 2 * 14336);  // moe_tp = 2 / 2 = 1: whole experts
  CHECK(gu.weight_bytes == Approx(4 * (1 - 49.0 / 64) * 2 * 14336 * 4096));
  CHECK(find(g, "layers.0.router").n == 8);
  // The MoE block's input stays BF16 (the router reads BF16; the permute writes the FP8 rows).
  CHECK(find(g, "layers.0.post_attn_norm").out_dtype == DType::bf16);
  CHECK(find(g, "layers.0.experts.permute").out_dtype == DType::fp8);
  // Attention is tensor-parallel, so every GPU holds every token: no all-to-all; the experts'
  // partial sums meet in one all-reduce over the 2 ranks of B(bf16, 1 x 4096) = 8,192 bytes.
  Totals t = totals(g);
  CHECK(t.count[OpKind::all_to_all] == 0);
  CHECK(t.count[OpKind::all_reduce] == 2 * 32);  // attention and MoE, per layer
  CHECK(find(g, "layers.0.moe_all_reduce").comm_bytes == 8192.0);
}

TEST_CASE("Qwen3-235B-A22B: QK-norm and 128 experts, 8 per token", "[workloads][graph]") {
  // TP4 EP4 (TensorRT-LLM's moe_ep_size 4, moe_tp_size 1): 32 whole experts per GPU; 16 q heads
  // and 1 kv head per GPU: QKV n = (16 + 2) x 128 = 2,304; qk_norm over 17 heads x 128.
  // Decode batch 4: 32 assignments; rows = ceil(32 x 32 / 128) = 8; experts touched
  // 32 x (1 - (127/128)^32) = 7.103; gate_up weights 7.103 x 2 x 1536 x 4096 FP8 bytes.
  const ModelConfig m = find_model("qwen3-235b-a22b");
  const StepGraph g(m, StepBatch::decode(4, 500), Deployment{4, 1, 4}, Precision{DType::fp8, DType::fp8, DType::bf16});
  CHECK(find(g, "layers.0.qkv_proj").n == 2304);
  CHECK(find(g, "layers.0.qk_norm").n == 17 * 128);
  const Op& gu = find(g, "layers.93.experts.gate_up_proj");
  CHECK(gu.m == 8);
  CHECK(gu.n == 2 * 1536);
  CHECK(gu.k == 4096);
  const double touched = 32 * (1 - std::pow(127.0 / 128, 32));
  CHECK(gu.weight_bytes == Approx(touched * 2 * 1536 * 4096));
  CHECK(find(g, "layers.0.experts.down_proj").weight_bytes == Approx(touched * 4096 * 1536));
  CHECK(find(g, "layers.0.router").n == 128);
  // Gather into expert order and back: permute reads the 4 x 4096 BF16 rows and 32 expert ids
  // and writes the 8 rows in FP8; finalize reads the 8 BF16 expert rows and 32 weights, writes
  // 4 x 4096 BF16, 2 FLOPs per row element.
  const Op& pm = find(g, "layers.0.experts.permute");
  CHECK(pm.kind == OpKind::moe_permute);
  CHECK(pm.act_bytes_read == 4.0 * 4096 * 2 + 32 * 4);
  CHECK(pm.bytes_written == 8.0 * 4096);
  const Op& fz = find(g, "layers.0.experts.finalize");
  CHECK(fz.kind == OpKind::moe_finalize);
  CHECK(fz.act_bytes_read == 8.0 * 4096 * 2 + 32 * 4);
  CHECK(fz.bytes_written == 4.0 * 4096 * 2);
  CHECK(fz.flops == 2.0 * 8 * 4096);
  Totals t = totals(g);
  CHECK(t.count[OpKind::moe_permute] == 94);
  CHECK(t.count[OpKind::moe_finalize] == 94);
  CHECK(t.count[OpKind::moe_gemm] == 94 * 2);
  CHECK(t.count[OpKind::rmsnorm] == 94 * 3 + 1);
  CHECK(t.count[OpKind::all_to_all] == 0);
}
