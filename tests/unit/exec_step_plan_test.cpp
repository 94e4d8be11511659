// exec/step_plan: the host side of a device step (block pool, rows, slots, tables), traced by hand
// on a pool of 4 blocks of 4 tokens.

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "racksim/common/error.hpp"
#include "racksim/exec/env_knob.hpp"
#include "racksim/exec/paged_kv.hpp"
#include "racksim/exec/step_backend.hpp"
#include "racksim/exec/step_plan.hpp"
#include "racksim/workloads/model_catalog.hpp"

using namespace racksim;
using namespace racksim::exec;

namespace {

StepTokens prefill_tokens(std::int64_t seq, std::int64_t n) {
  StepTokens t;
  std::vector<std::int32_t> ids;
  for (std::int64_t i = 0; i < n; ++i) ids.push_back(static_cast<std::int32_t>(10 + i));
  t.prefill.push_back({seq, ids});
  return t;
}

/// The footprint tests' options: 16 rows, 16 sampled, a 1,024-token KV pool.
CudaStepOptions footprint_options() {
  CudaStepOptions o;
  o.max_rows = 16;
  o.max_sampled = 16;
  o.kv_tokens = 1024;
  return o;
}

/// The device footprint of `m` less that of the same model as architecture `twin` (per layer,
/// fixed), NVFP4 weights and an FP8 KV cache at footprint_options and tensor parallel `tp`.
std::pair<double, double> footprint_over_twin(const ModelConfig& m, const char* twin, int tp = 1) {
  ModelConfig t = m;
  t.architecture = twin;
  CudaStepOptions o = footprint_options();
  o.tp_size = tp;
  const Precision p{DType::nvfp4, DType::bf16, DType::fp8};
  const CudaStepFootprint a = cuda_step_footprint(m, p, o), b = cuda_step_footprint(t, p, o);
  return {a.per_layer - b.per_layer, a.fixed - b.fixed};
}

}  // namespace

TEST_CASE("step plan: rows, slots, sampled rows and tables in CpuReference's order", "[exec][plan]") {
  BlockPool pool(4, 4);
  // Step 1: sequence 9 prefills 5 tokens: blocks 0 and 1, slots 0..3 then 4 (block 1, row 0).
  StepBatch b1;
  b1.prefill.push_back({5, 0, true});
  const StepTokens t1 = prefill_tokens(9, 5);
  const StepPlan p1 = plan_step(b1, t1, 100, pool);
  CHECK(p1.slots == std::vector<std::int32_t>{0, 1, 2, 3, 4});
  CHECK(p1.positions == std::vector<std::int32_t>{0, 1, 2, 3, 4});
  CHECK(p1.sampled == std::vector<std::int32_t>{4});
  CHECK(pool.tokens(9) == 0);  // not written until the step ran
  commit_step(b1, t1, pool);
  CHECK(pool.tokens(9) == 5);

  // Step 2: sequence 7 prefills 6 tokens (blocks 2, 3: slots 8..13) and 9 decodes at context 5
  // (position 5: block 1, row 1 = slot 5; its 8 reserved slots suffice).
  StepBatch b2;
  b2.prefill.push_back({6, 0, true});
  b2.decode_contexts.push_back(5);
  StepTokens t2 = prefill_tokens(7, 6);
  t2.decode.push_back({9, 42});
  const StepPlan p2 = plan_step(b2, t2, 100, pool);
  CHECK(p2.rows == 7);
  CHECK(p2.prefill_rows == 6);
  CHECK(p2.slots == std::vector<std::int32_t>{8, 9, 10, 11, 12, 13, 5});
  CHECK(p2.positions == std::vector<std::int32_t>{0, 1, 2, 3, 4, 5, 5});
  CHECK(p2.tokens.back() == 42);
  CHECK(p2.sampled == std::vector<std::int32_t>{5, 6});
  CHECK(p2.sampled_sequences == std::vector<std::int64_t>{7, 9});
  REQUIRE(p2.segments.size() == 1);
  CHECK((p2.segments[0].q_row == 0 && p2.segments[0].tokens == 6 && p2.segments[0].cached == 0));
  CHECK(p2.context_lens == std::vector<std::int32_t>{6});
  CHECK(p2.max_context == 6);
  CHECK(p2.decode_table_stride == 2);
  CHECK(p2.decode_tables == std::vector<std::int32_t>{0, 1});
  CHECK(p2.prefill_tables == std::vector<std::int32_t>{2, 3});
  commit_step(b2, t2, pool);
  CHECK(pool.tokens(7) == 6);
  CHECK(pool.tokens(9) == 6);
  CHECK(pool.free_blocks() == 0);

  // The pool is full: a new sequence is infeasible, naming the pool.
  StepBatch b3;
  b3.prefill.push_back({1, 0, true});
  CHECK_THROWS_WITH(plan_step(b3, prefill_tokens(11, 1), 100, pool), Catch::Contains("0 of 4 are free"));
  // Truncating 7 to 3 tokens keeps one block (2) and frees 3; releasing 9 frees 0 and 1; the
  // next sequence gets the lowest free id.
  pool.truncate(7, 3);
  CHECK(pool.table(7) == std::vector<std::int32_t>{2});
  CHECK(pool.tokens(7) == 3);
  pool.release(9);
  CHECK(pool.free_blocks() == 3);
  const StepPlan p3 = plan_step(b3, prefill_tokens(11, 1), 100, pool);
  CHECK(p3.slots == std::vector<std::int32_t>{0});
}

TEST_CASE("step plan refuses what CpuReference refuses", "[exec][plan]") {
  BlockPool pool(8, 4);
  StepBatch b;
  b.prefill.push_back({3, 0, true});
  const StepTokens t = prefill_tokens(1, 3);
  (void)plan_step(b, t, 100, pool);
  commit_step(b, t, pool);
  // A decode whose context is not what the cache holds.
  StepBatch d;
  d.decode_contexts.push_back(2);
  StepTokens td;
  td.decode.push_back({1, 5});
  CHECK_THROWS_WITH(plan_step(d, td, 100, pool), Catch::Contains("decode of sequence 1 expects 2 cached tokens; its KV cache holds 3"));
  // The same sequence twice; a token outside the vocabulary; counts that do not match the batch.
  d.decode_contexts = {3, 3};
  td.decode = {{1, 5}, {1, 6}};
  CHECK_THROWS_WITH(plan_step(d, td, 100, pool), Catch::Contains("sequence 1 appears twice"));
  d.decode_contexts = {3};
  td.decode = {{1, 100}};
  CHECK_THROWS_WITH(plan_step(d, td, 100, pool), Catch::Contains("token id 100 outside the vocabulary 0..99"));
  td.decode.clear();
  CHECK_THROWS_WITH(plan_step(d, td, 100, pool), Catch::Contains("0 decodes; the graph has 0 and 1"));
  CHECK_THROWS_WITH(pool.truncate(1, 4), Catch::Contains("holds 3"));
  CHECK_THROWS_AS(BlockPool(0, 32), InputError);
}

TEST_CASE("truncating with keep_blocks leaves the slots a re-run writes where they were", "[exec][plan]") {
  // The CUDA executor times a decode step again at the same context: the slot of position 4 must
  // stay block 1, row 0 (slot 4), so the table is kept.
  BlockPool pool(4, 4);
  StepBatch b;
  b.prefill.push_back({4, 0, true});
  const StepTokens t = prefill_tokens(3, 4);
  (void)plan_step(b, t, 100, pool);
  commit_step(b, t, pool);
  StepBatch d;
  d.decode_contexts.push_back(4);
  StepTokens td;
  td.decode.push_back({3, 1});
  CHECK(plan_step(d, td, 100, pool).slots == std::vector<std::int32_t>{4});
  commit_step(d, td, pool);
  pool.truncate(3, 4, true);
  CHECK(pool.table(3) == std::vector<std::int32_t>{0, 1});
  CHECK(pool.free_blocks() == 2);
  pool.truncate(3, 4);
  CHECK(pool.table(3) == std::vector<std::int32_t>{0});
}

TEST_CASE("CUDA step executor's device footprint: Llama-2-70B by hand", "[exec][plan]") {
  // Per layer: linear weights (10,240 + 8,192 + 57,344) x 8,192 + 8,192 x 28,672 = 855,638,016 at
  // 0.5625 B (4 bits + one UE4M3 per 16) = 481,296,384; two BF16 norms 32,768; K and V of 32 blocks
  // of 32 tokens x 8 KV heads x 128 in FP8 = 2,097,152. Fixed: embedding and lm_head in BF16
  // 1,048,576,000, final norm 16,384, activations 2 x 16 x (3 x 8,192 + 10,240 + 8,192 + 3 x 28,672)
  // = 4,128,768 and 16 x (2 x 8,192 + 4 x 32,000 + 4) = 2,310,208 sampled, and the 32 MiB
  // cuBLASLt workspace. Scratch, the larger of the two paths `auto` may pick on the device: the
  // native Blackwell path's FP4 inputs, 16 x 28,672 / 2 + 128 x 1,792 = 458,752 (the swizzled
  // weight scales need no padding at these shapes: every N is a multiple of 128); Hopper's fused
  // kernel's K-split partials (fp4_mma_plan at 256 SMs, no dequant scratch at M <= 128), largest for
  // gate_up at M = 16: 448 row blocks want ceil(2,048 / 448) = 5 splits (the traffic cap is
  // 0.5 x 0.5625 x 8,192 / (8 x 16) = 18), and the workspace also holds the balance rule's up to
  // min(64 spans, 18, 2 x 5, 64 / 4) = 10: 10 x 16 x 57,344 x 4 B = 36,700,160. Split-K
  // decode attention's partials, bounded as (16 sampled + ceil(4 x 256 SMs / 8 KV heads)) x 64
  // heads x (128 + 2) x 4 B = 144 x 33,280 = 4,792,320 (kDecodeCtasPerSm = 4).
  const ModelConfig m = find_model("llama2-70b");
  CudaStepOptions o;
  o.max_rows = 16;
  o.max_sampled = 16;
  o.kv_tokens = 1024;
  o.block_tokens = 32;
  const CudaStepFootprint f = cuda_step_footprint(m, Precision{DType::nvfp4, DType::bf16, DType::fp8}, o);
  CHECK(f.per_layer == Approx(481296384.0 + 32768 + 2097152).epsilon(1e-12));
  const double base = 1048576000.0 + 16384 + 4128768 + 2310208 + 4792320 + 33554432;
  CHECK(f.fixed == Approx(base + 36700160).epsilon(1e-12));
  // TP8: a rank holds an eighth of every linear (q 8 heads, 1 KV head, FFN 3,584: 481,296,384 / 8
  // = 60,162,048), one of the 8 KV heads (2,097,152 / 8 = 262,144) and the whole norms (32,768).
  // Fixed, per rank: embedding (32,000 x 8,192 x 2) and the lm_head slice (4,000 x 8,192 x 2) =
  // 589,824,000; final norm 16,384; activations of the shard's widths 2 x 16 x (3 x 8,192 + 1,280
  // + 1,024 + 3 x 3,584) = 1,204,224; sampled rows 2,310,208 as above plus the logit slice and the
  // gathered slices 16 x 4 x (4,000 + 32,000) = 2,304,000; split-K attention partials (16 + 4 x
  // 256 / 1 KV head) x 8 heads x 130 x 4 = 4,326,400; the 32 MiB workspace: 633,539,648; scratch:
  // the fused GEMM's partials, largest for gate_up (7,168 x 8,192) at M = 9: 56 row blocks want
  // ceil(2,048 / 56) = 37 splits, capped at 0.5 x 0.5625 x 8,192 / (8 x 9) = 32: 32 splits of 2
  // spans, 32 x 9 x 7,168 x 4 B = 8,257,536 (more than the FP4 inputs, 16 x 4,096 + 128 x 512 =
  // 131,072): 641,797,184.
  o.tp_size = 8;
  const CudaStepFootprint t8 = cuda_step_footprint(m, Precision{DType::nvfp4, DType::bf16, DType::fp8}, o);
  CHECK(t8.per_layer == Approx(60162048.0 + 262144 + 32768).epsilon(1e-12));
  CHECK(t8.fixed == Approx(641797184.0).epsilon(1e-12));
  o.tp_size = 1;
  o.fp4_gemm = Fp4GemmMode::hopper;
  CHECK(cuda_step_footprint(m, Precision{DType::nvfp4, DType::bf16, DType::fp8}, o).fixed == Approx(base + 36700160).epsilon(1e-12));
  // M = 17: the fused kernel's partials at M = 17 (4 tiles, 5 splits: 5 x 17 x 57,344 x 4 =
  // 19,496,960) stay below M = 16's 36,700,160; the activations grow by a row.
  o.max_rows = 17;
  o.fp4_gemm = Fp4GemmMode::automatic;
  const double row = 2.0 * (3 * 8192 + 10240 + 8192 + 3 * 28672);
  const CudaStepFootprint g = cuda_step_footprint(m, Precision{DType::nvfp4, DType::bf16, DType::fp8}, o);
  CHECK(g.fixed == Approx(base + row + 36700160).epsilon(1e-12));
  // M = 33..64 run the fused kernel in 8 tiles (gate_up at M = 33: 2 splits, 2 x 33 x 57,344 x 4
  // = 15,138,816), its workspace also covering two passes of <= 32 rows: the peak is still
  // gate_up's 32-row pass (5 splits of 13 spans, the cap int(0.5 x 0.5625 x 8,192 / 256) = 9;
  // 5 x 32 x 57,344 x 4 = 36,700,160). No dequantize scratch.
  o.max_rows = 33;
  const CudaStepFootprint two = cuda_step_footprint(m, Precision{DType::nvfp4, DType::bf16, DType::fp8}, o);
  CHECK(two.fixed == Approx(base + 17 * row + 36700160).epsilon(1e-12));
  // M = 65..128 run as launches of 64 rows, each launch's partials within the peak over M <= 64:
  // still no dequantize scratch. Above M = 128 the Hopper path dequantizes the largest weight
  // (gate_up, 57,344 x 8,192) into a BF16 scratch (939,524,096 B), on top of the partials' peak.
  o.max_rows = 65;
  CHECK(cuda_step_footprint(m, Precision{DType::nvfp4, DType::bf16, DType::fp8}, o).fixed == Approx(base + 49 * row + 36700160).epsilon(1e-12));
  o.max_rows = 128;
  CHECK(cuda_step_footprint(m, Precision{DType::nvfp4, DType::bf16, DType::fp8}, o).fixed == Approx(base + 112 * row + 36700160).epsilon(1e-12));
  o.max_rows = 129;
  const CudaStepFootprint big = cuda_step_footprint(m, Precision{DType::nvfp4, DType::bf16, DType::fp8}, o);
  CHECK(big.fixed == Approx(base + 113 * row + 2.0 * 57344 * 8192 + 36700160).epsilon(1e-12));
  // The large-M scratch holds either format of RACKSIM_FP4_LARGE_M: BF16 gate_up (2 x 469,762,048 =
  // 939,524,096 B) or E4M3 gate_up, E4M3 x of max_rows x 28,672 and the 1,088-byte scale scratch
  // ((16 + 256) x 4). The FP8 one is larger from 16,384 rows on (16,384 x 28,672 = 469,762,048), so
  // from 16,383 to 16,384 rows the footprint grows by a row of activations plus 1,088 B, and from
  // 16,382 to 16,383 by the row alone.
  CHECK(kFp8ScratchBytes == 1088);
  CHECK(fp4_large_m_scratch_bound(469762048, 16383, 28672) == 939524096);
  CHECK(fp4_large_m_scratch_bound(469762048, 16384, 28672) == 939524096 + 1088);
  o.max_rows = 16382;
  const double r2 = cuda_step_footprint(m, Precision{DType::nvfp4, DType::bf16, DType::fp8}, o).fixed;
  o.max_rows = 16383;
  const double r3 = cuda_step_footprint(m, Precision{DType::nvfp4, DType::bf16, DType::fp8}, o).fixed;
  o.max_rows = 16384;
  const double r4 = cuda_step_footprint(m, Precision{DType::nvfp4, DType::bf16, DType::fp8}, o).fixed;
  CHECK(r3 - r2 == Approx(row).epsilon(1e-9));
  CHECK(r4 - r3 == Approx(row + 1088).epsilon(1e-9));
  o.max_rows = 17;
  // The native path alone: no scratch, FP4 inputs of 17 rows: 17 x 14,336 + 128 x 1,792 = 473,088.
  o.fp4_gemm = Fp4GemmMode::native;
  CHECK(cuda_step_footprint(m, Precision{DType::nvfp4, DType::bf16, DType::fp8}, o).fixed == Approx(base + row + 473088).epsilon(1e-12));
}

TEST_CASE("CUDA step executor's device footprint: Mixtral-8x7B's experts and MoE buffers by hand", "[exec][plan]") {
  // Against a dense twin of the same widths (the same shapes, so the same fused-GEMM partials and
  // dequantize scratch): per layer, 7 more copies of gate_up (28,672 x 4,096) and down (4,096 x
  // 14,336) at 0.5625 B per weight (no padding: rows multiples of 128, K of 128), 7 x (66,060,288 +
  // 33,030,144) = 693,633,024, plus the BF16 router 2 x 8 x 4,096 = 65,536.
  // Fixed, at 16 rows, top-2, `auto` (the native path may pad an expert GEMM: 16 more rows): the
  // FFN rows grow from 16 to 48: 2 x (48 - 16) x 3 x 14,336 = 2,752,512; the expert-ordered inputs
  // 2 x 32 x 4,096 = 262,144, the down rows 2 x 48 x 4,096 = 393,216, router logits 4 x 16 x 8 =
  // 512, five values per assignment 20 x 32 = 640, offsets 4 x 9 = 36, active experts 4 x 8 =
  // 32: 3,409,092. Under --fp4-gemm hopper no padding: 32 FFN rows, 2 x 16 x 3 x 14,336 + 262,144
  // + 2 x 32 x 4,096 + 512 + 640 + 36 + 32 = 1,901,764. Both plus the grouped expert GEMMs' partials: the fused kernel's
  // workspace peaks for gate_up (28,672 x 4,096) at M = 16 on 256 SMs: 224 row blocks want
  // ceil(2,048 / 224) = 10 splits, capped at int(0.5 x 0.5625 x 4,096 / (8 x 16)) = 9, so 4 of the
  // 32 spans each: 8 splits, 8 x 16 x 28,672 x 4 = 14,680,064 in the dense twin; grouped over 16 x 2
  // rows, twice that (down: 28 splits x 16 x 4,096 x 4 = 7,340,032, x 2 no larger): +14,680,064.
  const ModelConfig moe = find_model("mixtral-8x7b");
  ModelConfig dense = moe;
  dense.architecture = "llama";
  dense.moe = {};
  CudaStepOptions o = footprint_options();
  const Precision p{DType::nvfp4, DType::bf16, DType::fp8};
  const CudaStepFootprint fm = cuda_step_footprint(moe, p, o), fd = cuda_step_footprint(dense, p, o);
  CHECK(fm.per_layer - fd.per_layer == Approx(693633024.0 + 65536).epsilon(1e-12));
  CHECK(fm.fixed - fd.fixed == Approx(3409092.0 + 14680064.0).epsilon(1e-12));
  CHECK(fp4_mma_workspace_bound(28672, 4096, 16, 256) == 14680064);
  // Grouped over 16 x 2 = 32 rows of 8 experts: 8 slots share the 256 SMs, 32 each
  // (fp4_mma_grouped_sms), so gate_up splits ceil(8 x 32 / 224) = 2 ways (16 spans each):
  // 2 x 32 x 28,672 x 4 = 7,340,032, under the footprint's 2 x 14,680,064; down: 8 x 32 / 32 = 8
  // splits (cap 31; 14 of its 112 spans each): 8 x 32 x 4,096 x 4 = 4,194,304.
  CHECK(fp4_mma_grouped_sms(8, 32, 256) == 32);
  CHECK(fp4_mma_grouped_sms(256, 8, 132) == 16);   // MiniMax-M2, one token: 8 slots of 256 experts
  CHECK(fp4_mma_grouped_sms(256, 512, 132) == 1);  // more slots than SMs: one each, at least
  CHECK(fp4_mma_grouped_sms(8, 0, 132) == 132);    // no rows (nothing launches)
  CHECK(fp4_mma_grouped_workspace_bytes(16, 32, 8, 28672, 4096, 256) == 7340032);
  CHECK(fp4_mma_grouped_workspace_bytes(16, 32, 8, 4096, 14336, 256) == 4194304);
  CHECK(fp4_mma_grouped_workspace_bytes(16, 32, 8, 28672, 96, 256) == 0);  // one span: no K split
  o.fp4_gemm = Fp4GemmMode::hopper;
  CHECK(cuda_step_footprint(moe, p, o).fixed - cuda_step_footprint(dense, p, o).fixed == Approx(1901764.0 + 14680064.0).epsilon(1e-12));
  // TP2: a rank holds half of every expert (gate_up 14,336 x 4,096 and down 4,096 x 7,168 at 0.5625
  // B: 33,030,144 + 16,515,072 per expert, x 8 = 396,361,728), its 16 q + 4 KV heads (qkv 3,072 x
  // 4,096: 7,077,888; o 4,096 x 2,048: 4,718,592), the whole router 65,536 and norms 16,384, and 4
  // KV heads of the cache, 2 x 32 x 32 x 4 x 128 = 1,048,576: 409,288,704.
  o.tp_size = 2;
  CHECK(cuda_step_footprint(moe, p, o).per_layer == Approx(409288704.0).epsilon(1e-12));
}

TEST_CASE("CUDA step executor's device footprint: Qwen3's QK-norm weights", "[exec][plan]") {
  // Qwen3-32B against a llama twin: two BF16 norms of head_dim 128 per layer, 2 x 2 x 128 = 512 B.
  const auto [per_layer, fixed] = footprint_over_twin(find_model("qwen3-32b"), "llama");
  CHECK(per_layer == 512.0);
  CHECK(fixed == 0.0);
}

TEST_CASE("CUDA step executor's device footprint: MiniMax-M2's QK-norm weights, routing bias and TP sums", "[exec][plan]") {
  // MiniMax-M2.5 against a twin with Mixtral's routing and no QK-norm: per layer the BF16 q_norm
  // and k_norm over all 48 + 8 heads of 128, 2 x 56 x 128 = 14,336 B, and the FP32 bias of 256
  // experts, 1,024 B: 15,360 B. At TP 2 a rank holds 24 q and 4 KV heads' norms, 2 x 28 x 128 =
  // 7,168 B (+1,024), and the QK-norm's all-reduced sums, 2 FP32 per row: 8 x 16 = 128 B fixed.
  const ModelConfig mm = find_model("minimax-m2.5");
  const auto [per_layer, fixed] = footprint_over_twin(mm, "mixtral");
  CHECK(per_layer == 15360.0);
  CHECK(fixed == 0.0);
  const auto [per_layer_tp2, fixed_tp2] = footprint_over_twin(mm, "mixtral", 2);
  CHECK(per_layer_tp2 == 8192.0);
  CHECK(fixed_tp2 == 128.0);
}

TEST_CASE("the footprint's split-K bound holds for the partitions decode attention picks", "[exec][plan]") {
  // Llama-2-70B's 64 query / 8 KV heads of 128: the bound (batch + 4 x 256 / 8) x 64 x 130 x 4 B
  // against decode_workspace_bytes at the partition decode_partition_tokens picks. E.g. batch 1,
  // 4,096 keys, 132 SMs: 8 CTAs want 528 -> 66 partitions of 63 keys, raised to 128 -> 32
  // partitions: 1 x 64 x 32 x 130 x 4 = 1,064,960 <= 129 x 33,280 = 4,293,120.
  CHECK(decode_workspace_bytes(1, 64, 128, 4096, decode_partition_tokens(1, 8, 4096, 132)) == 1064960);
  for (std::int64_t batch : {1, 4, 16, 64})
    for (std::int64_t context : {100, 1000, 4096, 32768})
      for (int sms : {132, 148, 160}) {
        INFO("batch " << batch << " context " << context << " SMs " << sms);
        CHECK(decode_workspace_bytes(batch, 64, 128, context, decode_partition_tokens(batch, 8, context, sms)) <=
              (batch + 128) * 64 * 130 * 4);
      }
}

TEST_CASE("an op's role is its name within its layer", "[exec][plan]") {
  Op op;
  op.name = "layers.12.qkv_proj";
  op.layer = 12;
  CHECK(op.role() == "qkv_proj");
  op.name = "layers.3.experts.gate_up_proj";
  op.layer = 3;
  CHECK(op.role() == "experts.gate_up_proj");
  op.name = "lm_head";
  op.layer = -1;
  CHECK(op.role() == "lm_head");
}

TEST_CASE("FP4 linear path: native on sm_100 / sm_103 with cuBLASLt 12.8, else the Hopper kernels", "[exec][plan]") {
  using M = Fp4GemmMode;
  // CUDA 12.8 introduced block-scaled FP4 in cuBLASLt; cublasLtGetVersion() spells it 120800.
  CHECK(choose_fp4_gemm(M::automatic, 10, 0, 120800).native);   // B200 / GB200
  CHECK(choose_fp4_gemm(M::automatic, 10, 3, 130100).native);   // B300 / GB300, CUDA 13.1
  const Fp4GemmChoice h100 = choose_fp4_gemm(M::automatic, 9, 0, 130100);
  CHECK_FALSE(h100.native);
  CHECK(h100.reason.find("sm_90 is not sm_100 or sm_103") != std::string::npos);
  CHECK(h100.reason.find("dequantize + cuBLASLt BF16 above") != std::string::npos);
  // Under RACKSIM_FP4_LARGE_M=fp8 the reason says what runs above M = 64 instead.
  const std::string h100_fp8 = choose_fp4_gemm(M::automatic, 9, 0, 130100, true).reason;
  CHECK(h100_fp8.find("RACKSIM_FP4_LARGE_M=fp8: W dequantized to E4M3") != std::string::npos);
  CHECK(h100_fp8.find("BF16") == std::string::npos);
  const Fp4GemmChoice old = choose_fp4_gemm(M::automatic, 10, 0, 120700);
  CHECK_FALSE(old.native);
  CHECK(old.reason.find("cuBLASLt 12.7.0 predates") != std::string::npos);
  CHECK_FALSE(choose_fp4_gemm(M::automatic, 12, 0, 130100).native);  // sm_120: no cubin in these builds
  CHECK_FALSE(choose_fp4_gemm(M::hopper, 10, 0, 130100).native);
  try {
    (void)choose_fp4_gemm(M::native, 9, 0, 130100);
    FAIL("--fp4-gemm native on Hopper must be refused");
  } catch (const Error& e) {
    CHECK(e.code() == ExitCode::infeasible);
  }
  // A probe that found no cuBLASLt algorithm: auto falls back with the reason, native refuses.
  const Fp4GemmChoice native = choose_fp4_gemm(M::automatic, 10, 0, 130100);
  const Fp4GemmChoice back = after_probe(M::automatic, native, "cuBLASLt has no algorithm for m=1 n=10240 k=8192");
  CHECK_FALSE(back.native);
  CHECK(back.reason.find("no algorithm for m=1") != std::string::npos);
  CHECK(after_probe(M::automatic, native, "").native);
  CHECK_THROWS_AS(after_probe(M::native, native, "no algorithm"), Error);
  // Modes by name, as `racksim exec --fp4-gemm` takes them.
  CHECK(parse_fp4_gemm_mode("auto") == M::automatic);
  CHECK(parse_fp4_gemm_mode("hopper") == M::hopper);
  CHECK_FALSE(parse_fp4_gemm_mode("dequant").has_value());
  // Activation buffers at 16 rows of Llama-2-70B's widest input (28,672): 16 x 14,336 packed bytes,
  // and scales padded to 128 rows x 1,792 blocks: 229,376 + 229,376.
  CHECK(native_activation_bytes(16, 28672) == 458752);
}

TEST_CASE("native FP4 GEMM rows: an M without a cuBLASLt plan runs padded to the next row count with one", "[exec][plan]") {
  // The row counts tried after M, ascending: the next multiples of 16, 32, 64, 128 above M, the
  // powers of two above M, max_rows. 37: 48, 64, 64, 128; 64, 128, 256, 512; 1000.
  CHECK(native_padded_row_candidates(37, 1000) == std::vector<std::int64_t>{48, 64, 128, 256, 512, 1000});
  // 200 under max_rows 256: 208, 224, 256, 256; no power of two in (200, 256); 256.
  CHECK(native_padded_row_candidates(200, 256) == std::vector<std::int64_t>{208, 224, 256});
  // 48 (itself a multiple of 16) goes to the next multiple above it: 64, 64, 64, 128; 64, 128;
  // max_rows 100 drops 128 and comes last.
  CHECK(native_padded_row_candidates(48, 100) == std::vector<std::int64_t>{64, 100});
  CHECK(native_padded_row_candidates(256, 256).empty());

  // The search, with a plan oracle that logs what it was asked.
  std::vector<std::int64_t> asked;
  const auto oracle = [&](auto has) {
    return [&asked, has](std::int64_t r) {
      asked.push_back(r);
      return has(r);
    };
  };
  // A plan at M: M, asked once.
  CHECK(native_gemm_rows(37, 1000, oracle([](std::int64_t) { return true; })) == 37);
  CHECK(asked == std::vector<std::int64_t>{37});
  // Plans only at multiples of 64: 37 -> 48 (none) -> 64.
  asked.clear();
  CHECK(native_gemm_rows(37, 1000, oracle([](std::int64_t r) { return r % 64 == 0; })) == 64);
  CHECK(asked == std::vector<std::int64_t>{37, 48, 64});
  // Only max_rows (probed when the executor was made): every candidate tried, max_rows last.
  asked.clear();
  CHECK(native_gemm_rows(37, 1000, oracle([](std::int64_t r) { return r == 1000; })) == 1000);
  CHECK(asked == std::vector<std::int64_t>{37, 48, 64, 128, 256, 512, 1000});
  // None: nullopt (NativeGemmRows turns it into the error below).
  CHECK_FALSE(native_gemm_rows(37, 1000, [](std::int64_t) { return false; }).has_value());
  CHECK_THROWS_AS(native_gemm_rows(1001, 1000, [](std::int64_t) { return true; }), InputError);
  CHECK_THROWS_AS(native_gemm_rows(0, 1000, [](std::int64_t) { return true; }), InputError);

  // The cache: Llama-2-70B's qkv_proj (n 10240, k 8192) with plans at multiples of 64 only.
  std::vector<std::tuple<std::int64_t, std::int64_t, std::int64_t>> probes;
  const NativeGemmRows::PlanProbe at64 = [&](std::int64_t r, std::int64_t n, std::int64_t k) {
    probes.emplace_back(r, n, k);
    return r % 64 == 0 ? std::string() : fmt::format("no algorithm at m={}", r);
  };
  NativeGemmRows rows(1000);
  CHECK(rows.rows(37, 10240, 8192, at64) == 64);
  CHECK(probes.size() == 3);                      // 37, 48, 64
  CHECK(rows.rows(37, 10240, 8192, at64) == 64);  // kept: cuBLASLt not asked again
  CHECK(probes.size() == 3);
  CHECK(rows.rows(40, 10240, 8192, at64) == 64);  // 40 asked; 48 and 64 known
  CHECK(probes.size() == 4);
  CHECK(rows.rows(64, 10240, 8192, at64) == 64);  // a plan at its own M: not padded, not asked again
  CHECK(probes.size() == 4);
  CHECK(rows.rows(37, 8192, 8192, at64) == 64);   // o_proj's shape is another plan: asked anew
  CHECK(probes.size() == 7);
  CHECK(rows.padded() == std::vector<PaddedNativeGemm>{{37, 10240, 8192, 64}, {40, 10240, 8192, 64}, {37, 8192, 8192, 64}});
  const std::string note = padded_native_gemm_note(rows.padded());
  CHECK(note.find("m=37 n=10240 k=8192 at 64 rows, m=40 n=10240 k=8192 at 64 rows") != std::string::npos);
  CHECK(note.find("include the padding rows") != std::string::npos);
  CHECK(padded_native_gemm_note({}).empty());
  // The start-up probe (record = false) pads M = 1 without recording it: nothing ran. The first
  // real GEMM at M = 1 records it once, from the cache.
  NativeGemmRows probed(1000);
  CHECK(probed.rows(1, 10240, 8192, at64, false) == 64);
  CHECK(probed.padded().empty());
  const std::size_t probes_before = probes.size();
  CHECK(probed.rows(1, 10240, 8192, at64) == 64);
  CHECK(probed.rows(1, 10240, 8192, at64) == 64);
  CHECK(probes.size() == probes_before);
  CHECK(probed.padded() == std::vector<PaddedNativeGemm>{{1, 10240, 8192, 64}});

  // No plan even at max_rows (which was probed: should not happen): the shape, the rows tried and
  // cuBLASLt's answer at M.
  NativeGemmRows none(128);
  try {
    (void)none.rows(100, 8, 64, [](std::int64_t r, std::int64_t, std::int64_t) { return fmt::format("heuristic returned none at {}", r); });
    FAIL("no plan at any row count must be an error");
  } catch (const Error& e) {
    const std::string what = e.what();
    CHECK(e.code() == ExitCode::internal);
    CHECK(what.find("m=100 n=8 k=64") != std::string::npos);
    CHECK(what.find("nor padded to 112, 128 rows") != std::string::npos);
    CHECK(what.find("heuristic returned none at 100") != std::string::npos);
  }
  CHECK(none.padded().empty());
}

TEST_CASE("a cuBLASLt operand's alignment: the largest power of two of its address, at most 256", "[exec][plan]") {
  // cudaMalloc's buffers are 256-aligned; a MoE expert's rows start `first` rows into the
  // expert-ordered buffers: Mixtral's gate_up rows are 28,672 B (256 x 112), so any expert keeps
  // 256; Qwen3-30B-A3B's at TP 8, 2 x 768 / 8 x 2 = 384 B (128 x 3), give 128 at an odd row.
  CHECK(lt_pointer_alignment(0) == 256);
  CHECK(lt_pointer_alignment(0x7f0000000000) == 256);
  CHECK(lt_pointer_alignment(0x7f0000000000 + 5 * 28672) == 256);
  CHECK(lt_pointer_alignment(0x7f0000000000 + 3 * 384) == 128);
  CHECK(lt_pointer_alignment(0x7f0000000000 + 2 * 384) == 256);
  CHECK(lt_pointer_alignment(0x7f0000000010) == 16);
  CHECK(lt_pointer_alignment(0x7f0000000002) == 2);
  CHECK(lt_pointer_alignment(0x7f0000000001) == 1);
}

TEST_CASE("cuBLASLt descriptors of the step executor's GEMMs, read back without a device", "[exec][plan]") {
  // cuBLASLt sets up descriptors and layouts on the host, so the Blackwell path's descriptor
  // setup is checked here (CUDA builds; the CPU-only build has no cuBLASLt and says so).
  // "TN" (cuBLASLt docs: FP8 and FP4 need A transposed): y[m x n] row-major is the column-major
  // n x m D = A^T B, A = the weights stored [n x k] K-major (a k x n column-major matrix, ld k),
  // B = the activations [m x k] (k x m, ld k); D has ld n. Both operands carry VEC16_UE4M3 block
  // scales (one UE4M3 per 16 values along K) with their pointers set; alpha/beta FP32, compute 32F.
  LtGemmSetup s;
  try {
    s = describe_cuda_gemm(LtGemm::native_nvfp4, 16, 10240, 8192);  // Llama-2-70B qkv_proj at 16 rows
  } catch (const Error& e) {
    WARN("SKIPPED (CPU-only build): " << e.what());
    return;
  }
  CHECK(s.compute == "32F");
  CHECK(s.scale == "fp32");
  CHECK(s.transa);
  CHECK_FALSE(s.transb);
  CHECK(s.a_scale_mode == "vec16_ue4m3");
  CHECK(s.b_scale_mode == "vec16_ue4m3");
  CHECK(s.a_scale_pointer);
  CHECK(s.b_scale_pointer);
  CHECK(s.a.type == "e2m1");
  CHECK((s.a.rows == 8192 && s.a.cols == 10240 && s.a.ld == 8192));
  CHECK(s.b.type == "e2m1");
  CHECK((s.b.rows == 8192 && s.b.cols == 16 && s.b.ld == 8192));
  CHECK(s.c.type == "bf16");
  CHECK((s.c.rows == 10240 && s.c.cols == 16 && s.c.ld == 10240));
  // Hopper's large-M path and lm_head: BF16 operands, no block scales (cuBLASLt's default scalar mode).
  const LtGemmSetup h = describe_cuda_gemm(LtGemm::bf16, 64, 8192, 28672);
  CHECK(h.a.type == "bf16");
  CHECK(h.c.type == "bf16");
  CHECK(h.a_scale_mode == "scalar_fp32");
  CHECK_FALSE(h.a_scale_pointer);
  CHECK((h.b.rows == 28672 && h.b.cols == 64));
  // The FP8 variant (RACKSIM_FP4_LARGE_M=fp8): E4M3 operands, BF16 out, per-tensor scales (the
  // default scalar mode) with both pointers set (the variant's scratch), "TN" as FP8 requires.
  const LtGemmSetup f = describe_cuda_gemm(LtGemm::fp8, 128, 8192, 28672);
  CHECK(f.a.type == "e4m3");
  CHECK(f.b.type == "e4m3");
  CHECK(f.c.type == "bf16");
  CHECK(f.a_scale_mode == "scalar_fp32");
  CHECK(f.a_scale_pointer);
  CHECK(f.b_scale_pointer);
  CHECK(f.transa);
  CHECK((f.a.rows == 28672 && f.a.cols == 8192 && f.b.cols == 128 && f.c.ld == 8192));
  const LtGemmSetup lm = describe_cuda_gemm(LtGemm::bf16_to_fp32, 3, 32000, 8192);
  CHECK(lm.c.type == "fp32");
  CHECK((lm.c.rows == 32000 && lm.c.cols == 3 && lm.c.ld == 32000));
}

TEST_CASE("the fused FP4 GEMM's launch plan: tiles, K splits and workspace by hand", "[exec][plan]") {
  // Llama-2-70B o_proj (n = k = 8,192) on an H200's 132 SMs: 64 row blocks of 128; 64 spans of 128.
  // M = 1: 8 CTAs per SM = 1,056 wanted, ceil(1,056 / 64) = 17 splits; the traffic cap
  // 0.5 x 0.5625 x 8,192 / 8 = 288 does not bind; 17 splits of ceil(64 / 17) = 4 spans leave the
  // last empty, so 16 of 4; partials 16 x 1 x 8,192 x 4 B.
  Fp4MmaPlan p = fp4_mma_plan(1, 8192, 8192, 132);
  CHECK(p.n_tiles == 1);
  CHECK(p.row_blocks == 64);
  CHECK(p.spans == 64);
  CHECK(p.splits == 16);
  CHECK(p.spans_per_split == 4);
  CHECK(p.workspace_bytes == 16 * 8192 * 4);
  // M = 16: two 8-token tiles; the cap 2,304 / 128 = 18 does not bind: 16 splits of 4 spans.
  p = fp4_mma_plan(16, 8192, 8192, 132);
  CHECK(p.n_tiles == 2);
  CHECK(p.splits == 16);
  CHECK(p.spans_per_split == 4);
  CHECK(p.workspace_bytes == 16 * 16 * 8192 * 4);
  // M = 17 and 24 round up to 4 tiles; M = 32: cap 2,304 / 256 = 9 wanted, 8 splits of 8 spans.
  CHECK(fp4_mma_plan(17, 8192, 8192, 132).n_tiles == 4);
  CHECK(fp4_mma_plan(24, 8192, 8192, 132).n_tiles == 4);
  p = fp4_mma_plan(32, 8192, 8192, 132);
  CHECK(p.splits == 8);
  CHECK(p.spans_per_split == 8);
  CHECK(p.workspace_bytes == 8 * 32 * 8192 * 4);
  // Wide N nearly fills the GPU by itself: gate_up (57,344 rows = 448 blocks) wants
  // ceil(1,056 / 448) = 3 splits (of 22 spans) at M = 1 and at M = 32 (cap 9).
  CHECK(fp4_mma_plan(1, 57344, 8192, 132).splits == 3);
  CHECK(fp4_mma_plan(32, 57344, 8192, 132).splits == 3);
  // A K of one partial span (96 = three 32-value pieces) cannot split; no workspace.
  p = fp4_mma_plan(1, 200, 96, 132);
  CHECK(p.spans == 1);
  CHECK(p.splits == 1);
  CHECK(p.workspace_bytes == 0);
  CHECK(p.row_blocks == 2);
  // M = 40: one 8-tile pass with half of M = 32's 8 splits: 4 of 16 spans (4 x 40 x 8,192 x 4 =
  // 5,242,880 B of partials); the workspace also covers two passes, 32 rows (8 x 32 x 8,192 x 4 =
  // 8,388,608) then 8 rows (the cap 2,304 / 64 = 36 does not bind: 16 splits, 16 x 8 x 8,192 x 4 =
  // 4,194,304): 8,388,608. M = 64: 8 tiles too.
  p = fp4_mma_plan(40, 8192, 8192, 132);
  CHECK(p.passes == 1);
  CHECK(p.n_tiles == 8);
  CHECK(p.splits == 4);
  CHECK(p.spans_per_split == 16);
  CHECK(p.workspace_bytes == 8388608);
  CHECK(fp4_mma_plan(8, 8192, 8192, 132).workspace_bytes == 4194304);
  CHECK(fp4_mma_plan(64, 8192, 8192, 132).n_tiles == 8);
  CHECK(fp4_mma_plan(64, 8192, 8192, 132).workspace_bytes == 4 * 64 * 8192 * 4);
  CHECK(fp4_mma_plan(32, 8192, 8192, 132).passes == 1);
  // The whole-wave rule at the kernel's occupancy (5 CTAs per SM at M = 1, 3 at M = 32 on an
  // H200): o_proj M = 1 wants floor(5 x 132 / 64) = 10 splits, of ceil(64 / 10) = 7 spans, so
  // ceil(64 / 7) = 10: 640 CTAs, all resident at once (the default's 16 x 64 = 1,024 are 1.55
  // waves of 660); gate_up wants floor(660 / 448) = 1; o_proj M = 32: floor(396 / 64) = 6 (cap 9),
  // 6 splits of 11 spans.
  p = fp4_mma_plan(1, 8192, 8192, 132, 5);
  CHECK(p.splits == 10);
  CHECK(p.spans_per_split == 7);
  CHECK(p.row_blocks * p.splits <= 5 * 132);
  CHECK(fp4_mma_plan(1, 57344, 8192, 132, 5).splits == 1);
  p = fp4_mma_plan(32, 8192, 8192, 132, 3);
  CHECK(p.splits == 6);
  CHECK(p.spans_per_split == 11);
  // It never splits more than the default (the launch reuses the default's workspace).
  for (std::int64_t m : {1, 8, 17, 32, 40, 64})
    for (std::int64_t n : {200, 8192, 10240, 57344})
      for (std::int64_t k : {96, 8192, 28672})
        for (int r = 1; r <= 8; ++r) {
          INFO("m " << m << " n " << n << " k " << k << " resident " << r);
          CHECK(fp4_mma_plan(m, n, k, 132, r).workspace_bytes <= fp4_mma_plan(m, n, k, 132).workspace_bytes);
        }
  CHECK_THROWS_AS(fp4_mma_plan(1, 8192, 8192, 132, 9), InputError);
  // The wave rule (RACKSIM_FP4_MMA_SPLITS=balance) at 5 CTAs per SM on 132 SMs (660 slots); a
  // split's modelled time is waves x its longest CTA's spans. gate_up M = 1: 448 row blocks, 64
  // spans, the default's 3 splits (auto's too: one wave would not split); tried up to
  // max(3, min(64, cap 288, 2 x 3, 64 / 4)) = 6 splits: 1 (448 CTAs, 1 wave x 64 spans = 64),
  // 2 (896, 2 x 32 = 64), 3 (1,344, 3 x 22 = 66), 4 (1,792, 3 x 16 = 48), 5 (2,240, 4 x 13 = 52),
  // 6 (2,688, 5 x 11 = 55): 4 splits of 16 spans; the default's workspace grows to 6 x 57,344 x 4 B.
  p = fp4_mma_plan_balanced(1, 57344, 8192, 132, 5);
  CHECK(p.splits == 4);
  CHECK(p.spans_per_split == 16);
  CHECK(fp4_mma_plan(1, 57344, 8192, 132).splits == 3);
  CHECK(fp4_mma_plan(1, 57344, 8192, 132).workspace_bytes == 6 * 57344 * 4);
  // o_proj M = 1 (64 blocks): up to min(64, 288, 32, 16) = 16 splits; 10 of 7 spans (640 CTAs, one
  // wave: 7) is the best (8 of 8: 8; 11 of 6: 2 waves, 12; 16 of 4: 2 x 4 = 8), and auto's.
  p = fp4_mma_plan_balanced(1, 8192, 8192, 132, 5);
  CHECK(p.splits == 10);
  CHECK(p.spans_per_split == 7);
  CHECK(fp4_mma_plan(1, 8192, 8192, 132).workspace_bytes == 16 * 8192 * 4);  // 16 is the default's own
  // gate_up at TP 2, M = 1 (28,672 rows: 224 blocks; default ceil(1,056 / 224) = 5 splits of 13
  // spans: 1,120 CTAs, 2 waves, 26; auto: the whole wave's floor(660 / 224) = 2 of 32, 32): up to
  // 10; 8 of 8 spans (1,792 CTAs, 3 waves: 24).
  p = fp4_mma_plan_balanced(1, 28672, 8192, 132, 5);
  CHECK(fp4_mma_plan(1, 28672, 8192, 132).splits == 5);
  CHECK(p.splits == 8);
  CHECK(p.spans_per_split == 8);
  // qkv at TP 8, M = 1 (1,280 rows: 10 blocks): the default's 64 splits of 1 span (640 CTAs, one
  // wave: 1) are the best there is and auto's; never fewer than the default.
  CHECK(fp4_mma_plan_balanced(1, 1280, 8192, 132, 5).splits == 64);
  // gate_up M = 16 at 4 CTAs per SM (528 slots): 1, 2 and 4 splits model 64, 5 splits 65 (within
  // 2% of 64), 3 and 6 66; auto's 3 is out, so the nearest the default's 3, fewer on a tie: 2.
  CHECK(fp4_mma_plan_balanced(16, 57344, 8192, 132, 4).splits == 2);
  // At 4 and 8 tiles the default; a single span cannot split; occupancy must be given.
  CHECK(fp4_mma_plan_balanced(32, 57344, 8192, 132, 3).splits == fp4_mma_plan(32, 57344, 8192, 132).splits);
  CHECK(fp4_mma_plan_balanced(1, 200, 96, 132, 5).splits == 1);
  CHECK_THROWS_AS(fp4_mma_plan_balanced(1, 8192, 8192, 132, 0), InputError);
  CHECK_THROWS_AS(fp4_mma_plan_balanced(1, 8192, 8192, 132, 9), InputError);
  // Its splits always fit the default's workspace.
  for (std::int64_t m : {1, 2, 5, 8, 9, 16})
    for (std::int64_t n : {200, 8192, 10240, 28672, 57344})
      for (std::int64_t k : {96, 1088, 8192, 28672})
        for (int r = 1; r <= 8; ++r) {
          INFO("m " << m << " n " << n << " k " << k << " resident " << r);
          const Fp4MmaPlan b = fp4_mma_plan_balanced(m, n, k, 132, r);
          CHECK((b.splits > 1 ? b.splits * m * n * 4 : 0) <= fp4_mma_plan(m, n, k, 132).workspace_bytes);
          CHECK((b.splits - 1) * b.spans_per_split < b.spans);  // no empty split
        }
  // M = 65..128: launches of 64 rows (two 8-tile launches at M = 128 are 0.73-0.99x the dequantize
  // path's time on the H200, fp4_gemm_path.hpp). M = 100, n = k = 8,192: the 64-row launch's plan
  // (8 tiles, 4 splits of 16 spans) twice; the workspace the larger of the 64-row launch's
  // (8,388,608, above) and the 36-row rest's: 8 tiles, 4 splits (4 x 36 x 8,192 x 4 = 4,718,592),
  // but covering two passes of 32 (8,388,608) and 4 rows (17 splits wanted, 16 of 4 spans:
  // 2,097,152): 8,388,608. M = 65: the rest is one row (16 splits: 524,288).
  p = fp4_mma_plan(100, 8192, 8192, 132);
  CHECK(p.passes == 2);
  CHECK(p.n_tiles == 8);
  CHECK(p.splits == 4);
  CHECK(p.spans_per_split == 16);
  CHECK(p.workspace_bytes == 8388608);
  CHECK(fp4_mma_plan(36, 8192, 8192, 132).workspace_bytes == 8388608);
  CHECK(fp4_mma_plan(4, 8192, 8192, 132).workspace_bytes == 2097152);
  CHECK(fp4_mma_plan(128, 8192, 8192, 132).passes == 2);
  CHECK(fp4_mma_plan(65, 8192, 8192, 132).passes == 2);
  CHECK(fp4_mma_plan(65, 8192, 8192, 132).workspace_bytes == 8388608);
  CHECK(fp4_mma_plan(64, 8192, 8192, 132).passes == 1);
  // The kernel's limits: M 1..128 (one launch, and a grouped launch's experts, 1..64), K a
  // multiple of 32.
  CHECK(fp4_mma_supported(64, 1, 32));
  CHECK(fp4_mma_supported(128, 8192, 8192));
  CHECK_FALSE(fp4_mma_supported(129, 8192, 8192));
  CHECK_FALSE(fp4_mma_supported(1, 8192, 48));
  CHECK_FALSE(fp4_mma_supported(0, 8192, 8192));
  CHECK_THROWS_AS(fp4_mma_plan(129, 8192, 8192, 132), InputError);
  CHECK(fp4_mma_grouped_supported(64, 8192, 8192));
  CHECK_FALSE(fp4_mma_grouped_supported(65, 8192, 8192));
  CHECK_FALSE(fp4_mma_grouped_supported(1, 8192, 48));
  // The executor's bound is the peak over M <= min(max_rows, 128): gate_up at 256 SMs peaks at
  // M = 32 (5 splits of 13 spans; see the footprint test): 36,700,160 B; 0 for an unsupported K.
  CHECK(fp4_mma_workspace_bound(57344, 8192, 1000, 256) == 36700160);
  CHECK(fp4_mma_workspace_bound(8192, 48, 64, 132) == 0);
}

TEST_CASE("the fused FP4 GEMM's tiled weight layout by hand", "[exec][plan]") {
  // 200 x 1088: ceil(200 / 32) = 7 row tiles x ceil(1088 / 128) = 9 spans; 63 tiles of 2,048 code
  // bytes and 256 scale bytes.
  const Fp4MmaTiling t = fp4_mma_tiling(200, 1088);
  CHECK(t.row_tiles == 7);
  CHECK(t.spans == 9);
  CHECK(t.code_bytes == 63 * 2048);
  CHECK(t.scale_bytes == 63 * 256);
  // A unit is lane (row % 8) x 4 + piece and unit (row % 32 / 16) x 2 + (row % 16 / 8), at
  // tile x 2,048 + (unit x 32 + lane) x 16: row 1 -> lane 4 (64); row 8 -> unit 1 (512); row 16
  // -> unit 2 (1,024); values 32.. -> lane 1 (16); the next span -> tile 1 (2,048); row 32 -> the
  // next row tile, tile 9; row 37, values 96.. -> tile 9, lane 5 x 4 + 3 = 23: 18,432 + 368.
  CHECK(fp4_mma_code_offset(0, 0, 9) == 0);
  CHECK(fp4_mma_code_offset(1, 0, 9) == 64);
  CHECK(fp4_mma_code_offset(8, 0, 9) == 512);
  CHECK(fp4_mma_code_offset(16, 0, 9) == 1024);
  CHECK(fp4_mma_code_offset(0, 32, 9) == 16);
  CHECK(fp4_mma_code_offset(0, 128, 9) == 2048);
  CHECK(fp4_mma_code_offset(32, 0, 9) == 9 * 2048);
  CHECK(fp4_mma_code_offset(37, 96, 9) == 9 * 2048 + 23 * 16);
  // Scales: lane x 8 + unit x 2 + block of the piece: blocks 0 and 1 of row 0 at 0 and 1; block 2
  // (piece 1) at lane 1 = 8; row 8 block 0 at unit 1 = 2; row 1 block 3 at lane 5, byte 1 = 41.
  CHECK(fp4_mma_scale_offset(0, 0, 9) == 0);
  CHECK(fp4_mma_scale_offset(0, 1, 9) == 1);
  CHECK(fp4_mma_scale_offset(0, 2, 9) == 8);
  CHECK(fp4_mma_scale_offset(8, 0, 9) == 2);
  CHECK(fp4_mma_scale_offset(1, 3, 9) == 41);
  CHECK(fp4_mma_scale_offset(0, 8, 9) == 256);  // block 8 = value 128: the next span's tile
  // fp4_mma_tile moves every word of 8 codes once: source bytes numbered 1.. (mod 255, never 0)
  // land, each word in the kernel's bit order (fp4::e2m1x8_to_mma_order, a bit permutation, so a
  // word is never 0 either), where the offsets say, and every other byte (padding) is zero.
  const std::int64_t n = 40, k = 160;
  std::vector<std::uint8_t> packed(static_cast<std::size_t>(n * k / 2)), scales(static_cast<std::size_t>(n * k / 16));
  for (std::size_t i = 0; i < packed.size(); ++i) packed[i] = static_cast<std::uint8_t>(1 + i % 255);
  for (std::size_t i = 0; i < scales.size(); ++i) scales[i] = static_cast<std::uint8_t>(1 + i % 255);
  std::vector<std::uint8_t> codes, tiled;
  fp4_mma_tile(packed, scales, n, k, codes, tiled);
  const Fp4MmaTiling s = fp4_mma_tiling(n, k);  // 2 row tiles x 2 spans
  REQUIRE(codes.size() == static_cast<std::size_t>(s.code_bytes));
  REQUIRE(tiled.size() == static_cast<std::size_t>(s.scale_bytes));
  std::vector<int> hit(codes.size(), 0), hit_s(tiled.size(), 0);
  for (std::int64_t r = 0; r < n; ++r)
    for (std::int64_t k0 = 0; k0 < k; k0 += 32)
      for (std::int64_t w = 0; w < 4; ++w) {
        const auto at = static_cast<std::size_t>(fp4_mma_code_offset(r, k0, s.spans) + 4 * w);
        const auto src = static_cast<std::size_t>(r * k / 2 + k0 / 2 + 4 * w);
        std::uint32_t want = 0, got = 0;
        for (std::size_t b = 0; b < 4; ++b) {
          want |= static_cast<std::uint32_t>(packed[src + b]) << (8 * b);
          got |= static_cast<std::uint32_t>(codes[at + b]) << (8 * b);
          ++hit[at + b];
        }
        CHECK(got == fp4::e2m1x8_to_mma_order(want));
      }
  for (std::int64_t r = 0; r < n; ++r)
    for (std::int64_t kb = 0; kb < k / 16; ++kb) {
      const auto at = static_cast<std::size_t>(fp4_mma_scale_offset(r, kb, s.spans));
      CHECK(tiled[at] == scales[static_cast<std::size_t>(r * k / 16 + kb)]);
      ++hit_s[at];
    }
  std::size_t twice = 0, stray = 0;
  for (std::size_t i = 0; i < codes.size(); ++i) twice += hit[i] > 1, stray += hit[i] == 0 && codes[i] != 0;
  for (std::size_t i = 0; i < tiled.size(); ++i) twice += hit_s[i] > 1, stray += hit_s[i] == 0 && tiled[i] != 0;
  CHECK(twice == 0);
  CHECK(stray == 0);
  CHECK_THROWS_AS(fp4_mma_tile(packed, scales, n, 48, codes, tiled), InputError);
}

TEST_CASE("the wgmma variant's B layout is the canonical no-swizzle K-major one, every x pair once", "[exec][plan]") {
  // The canonical layout (PTX ISA, shared memory matrix layout, no swizzle, K-major): element
  // (token n, K slot s) of a k-step's block at (n / 8) SBO + (s / 8) LBO + (n % 8) x 16 + (s % 8) x 2.
  // fp4_wgmma_b_offset must send the 8 NT tokens x 4 pieces x 4 words x 4 pairs of a span onto
  // the K-slot pairs of those 8 k-steps, each exactly once.
  for (const std::int64_t nt : {2, 4, 8}) {
    const std::int64_t step = fp4_wgmma_step_bytes(nt);
    CHECK(step % 16 == 0);          // every k-step block starts 16-byte aligned (the descriptor drops 4 bits)
    CHECK(step / 4 % 32 == 4);      // and 4 banks after the previous one
    std::set<std::int64_t> want, got;
    for (std::int64_t ks = 0; ks < 8; ++ks)
      for (std::int64_t n = 0; n < 8 * nt; ++n)
        for (std::int64_t sl = 0; sl < 16; sl += 2)
          want.insert(ks * step + (n / 8) * kFp4WgmmaSbo + (sl / 8) * kFp4WgmmaLbo + (n % 8) * 16 + (sl % 8) * 2);
    for (std::int64_t tok = 0; tok < 8 * nt; ++tok)
      for (std::int64_t p = 0; p < 4; ++p)
        for (std::int64_t w = 0; w < 4; ++w)
          for (std::int64_t pair = 0; pair < 4; ++pair) got.insert(fp4_wgmma_b_offset(nt, tok, p, w, pair));
    CHECK(got.size() == static_cast<std::size_t>(8 * nt * 64));
    CHECK(got == want);
  }
  // By hand, 2 tiles (528-byte k-steps): token 9, piece 3, word 1, pair 3 = (x3, x7) -> k-step 3,
  // K slots 14, 15: 3 x 528 + group 1 x 256 + core matrix 1 x 128 + row 1 x 16 + slot 6 x 2 = 1996.
  CHECK(fp4_wgmma_b_offset(2, 9, 3, 1, 3) == 1996);
  CHECK(fp4_wgmma_b_offset(2, 0, 0, 0, 0) == 0);
  // The descriptor of a block at shared address 0x1230: 0x123 at bits 0-13, LBO 128 / 16 = 8 at
  // 16-29, SBO 256 / 16 = 16 at 32-45, no swizzle.
  CHECK(fp4_wgmma_desc(0x1230u) == 0x0000001000080123ull);
}

TEST_CASE("gate_up + SwiGLU pairs: one per dense layer, none in a MoE layer", "[exec][plan]") {
  // Llama-2-70B decode (80 layers), under TP 1 and 2 (the gate_up GEMM is column-parallel: no
  // collective between it and the SwiGLU): one pair per layer, the gate_up GEMM's index. Mixtral's
  // experts run experts.gate_up_proj and experts.swiglu (moe ops): no pair.
  for (const auto& [id, tp] : {std::pair{"llama2-70b", 1}, std::pair{"llama2-70b", 2}, std::pair{"mixtral-8x7b", 1}}) {
    const ModelConfig m = find_model(id);
    Deployment dep;
    dep.tensor_parallel = tp;
    const StepGraph g(m, StepBatch::decode(4, 100), dep, Precision{DType::nvfp4, DType::bf16, DType::fp8});
    std::vector<Op> ops;
    for (std::size_t v : g.topological_order()) ops.push_back(g.op(v));
    const std::vector<bool> pairs = gate_up_swiglu_pairs(ops);
    REQUIRE(pairs.size() == ops.size());
    int count = 0;
    for (std::size_t i = 0; i < ops.size(); ++i) {
      if (!pairs[i]) continue;
      ++count;
      CHECK(ops[i].role() == "gate_up_proj");
      CHECK(ops[i + 1].kind == OpKind::swiglu);
      CHECK(ops[i + 1].m == 4);
    }
    INFO(id << " TP " << tp);
    CHECK(count == (m.is_moe() ? 0 : m.layers));
  }
}

TEST_CASE("residual add + RMSNorm pairs: adjacent in the graph's order, two per layer", "[exec][plan]") {
  // Llama-2-70B (80 layers) decode and a MoE (Mixtral, 32 layers) prefill: per layer the attention's
  // residual add then post_attn_norm, and the MLP's (MoE's) residual add then the next layer's
  // input_norm, or final_norm after the last: 2 per layer, each the residual_add's index.
  // Under TP 2 the all-reduces come before each residual add, so the pairs are the same.
  for (const auto& [id, tp] : {std::pair{"llama2-70b", 1}, std::pair{"mixtral-8x7b", 1}, std::pair{"llama2-70b", 2}}) {
    const ModelConfig m = find_model(id);
    Deployment dep;
    dep.tensor_parallel = tp;
    const StepGraph g(m, id == std::string("llama2-70b") ? StepBatch::decode(4, 100) : StepBatch::prefill_only(1, 64), dep,
                      Precision{DType::nvfp4, DType::bf16, DType::fp8});
    std::vector<Op> ops;
    for (std::size_t v : g.topological_order()) ops.push_back(g.op(v));
    const std::vector<bool> pairs = residual_norm_pairs(ops);
    REQUIRE(pairs.size() == ops.size());
    int count = 0;
    for (std::size_t i = 0; i < ops.size(); ++i) {
      if (!pairs[i]) continue;
      ++count;
      CHECK(ops[i].kind == OpKind::residual_add);
      CHECK(ops[i + 1].kind == OpKind::rmsnorm);
    }
    INFO(id << " TP " << tp);
    CHECK(count == 2 * m.layers);
    CHECK(pairs.back() == false);
  }
  // The knob: off unless "on"; anything else named.
  CHECK_FALSE(fuse_norm_knob(nullptr));
  CHECK_FALSE(fuse_norm_knob("off"));
  CHECK(fuse_norm_knob("on"));
  CHECK_THROWS_WITH(fuse_norm_knob("1"), "environment RACKSIM_FUSE_NORM: '1' is not one of off, on");
  // RACKSIM_FUSE_SWIGLU likewise.
  CHECK_FALSE(fuse_swiglu_knob(nullptr));
  CHECK_FALSE(fuse_swiglu_knob("off"));
  CHECK(fuse_swiglu_knob("on"));
  CHECK_THROWS_WITH(fuse_swiglu_knob("ON"), "environment RACKSIM_FUSE_SWIGLU: 'ON' is not one of off, on");
  // RACKSIM_PDL likewise (exec/cuda/pdl.cuh).
  CHECK_FALSE(pdl_knob(nullptr));
  CHECK_FALSE(pdl_knob("off"));
  CHECK(pdl_knob("on"));
  CHECK_THROWS_WITH(pdl_knob("yes"), "environment RACKSIM_PDL: 'yes' is not one of off, on");
}

TEST_CASE("env_choice: a knob's value as its index among the allowed, or an error listing them", "[exec][plan]") {
  CHECK_FALSE(env_choice("X", nullptr, {"a", "b"}).has_value());
  CHECK(env_choice("X", "a", {"a", "b"}) == 0u);
  CHECK(env_choice("X", "b", {"a", "b"}) == 1u);
  CHECK_THROWS_WITH(env_choice("RACKSIM_X", "c", {"a", "b", "d"}), "environment RACKSIM_X: 'c' is not one of a, b, d");
  CHECK_THROWS_WITH(env_choice("RACKSIM_X", "", {"a"}), "environment RACKSIM_X: '' is not one of a");
}

TEST_CASE("a measurement's source names the executor knobs it ran under", "[exec][plan]") {
  // Unset: nothing. Set: NAME=VALUE words in kExecutorKnobs' order, whatever order they were set
  // in, so the source reads as the command that reproduces the file; other variables are not knobs.
  const auto none = [](const char*) -> const char* { return nullptr; };
  CHECK(executor_knobs_prefix(none).empty());
  const auto three = [](const char* n) -> const char* {
    const std::string_view v = n;
    return v == "RACKSIM_ATTENTION_FP8_P"    ? "single"
           : v == "RACKSIM_ATTENTION_DECODE" ? "rows"
           : v == "RACKSIM_FP4_LARGE_M"      ? "fp8"
           : v == "HOME"                     ? "/root"
                                             : nullptr;
  };
  CHECK(executor_knobs_prefix(three) == "RACKSIM_FP4_LARGE_M=fp8 RACKSIM_ATTENTION_DECODE=rows RACKSIM_ATTENTION_FP8_P=single ");
  CHECK(kExecutorKnobs.size() == 15);
}

TEST_CASE("the executor's environment is checked before any work: every knob's value, and names that look like a knob", "[exec][plan]") {
  using Env = std::map<std::string, std::string>;
  const auto check = [](const Env& env) {
    std::vector<std::string> names;
    for (const auto& [n, v] : env) names.push_back(n);
    check_executor_environment(names, [&env](const char* n) -> const char* {
      const auto it = env.find(n);
      return it == env.end() ? nullptr : it->second.c_str();
    });
  };
  // Nothing set, every knob at an allowed value, and variables that are no knob pass.
  CHECK_NOTHROW(check({}));
  CHECK_NOTHROW(check({{"HOME", "/root"}, {"RACKSIM_UPDATE_GOLDEN", "1"}, {"RACKSIM_CUDA", "ON"}, {"RACKSIM_FP4_MMA_DEPTH", "2"},
                       {"RACKSIM_FP4_MMA_TUNE", "on"}, {"RACKSIM_FP4_LARGE_M", "fp8"}, {"RACKSIM_ATTENTION_DECODE", "rows"},
                       {"RACKSIM_ATTENTION_FP8_P", "single"}, {"RACKSIM_FUSE_NORM", "on"}, {"RACKSIM_FUSE_SWIGLU", "on"}, {"RACKSIM_PDL", "on"}}));
  // Every one of kExecutorKnobs reaches its parser: a value no knob allows is refused naming that
  // knob (so a knob added to the list without a parser call in the check fails here).
  for (const std::string_view k : kExecutorKnobs) {
    CAPTURE(k);
    CHECK_THROWS_WITH(check({{std::string(k), "bogus"}}), Catch::Matchers::StartsWith(fmt::format("environment {}: 'bogus' is not one of", k)));
  }
  // The fused GEMM's eight are checked together: a combination its launch refuses is refused now.
  CHECK_THROWS_WITH(check({{"RACKSIM_FP4_MMA_PIPE", "cpasync"}, {"RACKSIM_FP4_MMA_DEPTH", "2"}}),
                    Catch::Matchers::Contains("RACKSIM_FP4_MMA_PIPE=cpasync replaces the register prefetch"));
  // A misspelt knob would measure the default under the variant's name: refused, the nearest named.
  CHECK_THROWS_WITH(check({{"RACKSIM_FP4_MMA_DEPHT", "2"}}),
                    Catch::Matchers::StartsWith("environment RACKSIM_FP4_MMA_DEPHT: '2': no such executor knob (nearest: RACKSIM_FP4_MMA_DEPTH); the knobs are "
                                                "RACKSIM_FP4_MMA_SPLITS, RACKSIM_FP4_MMA_TILES,"));
  CHECK_THROWS_WITH(check({{"RACKSIM_PLD", "on"}}), Catch::Matchers::StartsWith("environment RACKSIM_PLD: 'on': no such executor knob (nearest: RACKSIM_PDL)"));
  CHECK_THROWS_WITH(check({{"RACKSIM_FUSE_ROPE", "on"}}), Catch::Matchers::Contains("no such executor knob"));  // a family, far from every knob
  CHECK_THROWS_WITH(check({{"RACKSIM_ATTENTION", "keys"}}), Catch::Matchers::Contains("no such executor knob"));
  CHECK_THROWS_WITH(check({{"RACKSIM_FP4_MMA", "x"}}), Catch::Matchers::Contains("(nearest: RACKSIM_FP4_MMA_X)"));
  // The process's own environment: the names without their values.
  ::setenv("RACKSIM_TEST_ENV_NAME", "a=b", 1);
  const std::vector<std::string> names = environment_names();
  CHECK(std::count(names.begin(), names.end(), "RACKSIM_TEST_ENV_NAME") == 1);
  ::unsetenv("RACKSIM_TEST_ENV_NAME");
}

TEST_CASE("the fused FP4 GEMM's and decode attention's variant knobs parse or name what is allowed", "[exec][plan]") {
  // Unset: the measured defaults (docs/executor.md): auto split rule, 8 tiles for M = 33..64,
  // auto depth; keys as the MMA's M in decode attention.
  const Fp4MmaKnobs d = fp4_mma_knobs(nullptr, nullptr, nullptr);
  CHECK(d.splits == Fp4MmaKnobs::Splits::automatic);
  CHECK(d.eight_tiles);
  CHECK(d.depth == 0);
  const Fp4MmaKnobs k = fp4_mma_knobs("wave", "4", "2");
  CHECK(k.splits == Fp4MmaKnobs::Splits::wave);
  CHECK_FALSE(k.eight_tiles);
  CHECK(k.depth == 2);
  CHECK(fp4_mma_knobs("fill8", "8", "1").splits == Fp4MmaKnobs::Splits::fill8);
  CHECK(fp4_mma_knobs("fill8", "8", "1").depth == 1);
  CHECK(fp4_mma_knobs("auto", nullptr, "auto").depth == 0);
  CHECK_THROWS_WITH(fp4_mma_knobs("waves", nullptr, nullptr),
                    "environment RACKSIM_FP4_MMA_SPLITS: 'waves' is not one of auto, fill8, wave, balance");
  CHECK(fp4_mma_knobs("balance", nullptr, nullptr).splits == Fp4MmaKnobs::Splits::balance);
  CHECK(fp4_mma_knobs_words(fp4_mma_knobs("balance", nullptr, nullptr)) == "RACKSIM_FP4_MMA_SPLITS=balance");
  CHECK_THROWS_WITH(fp4_mma_knobs(nullptr, "16", nullptr), "environment RACKSIM_FP4_MMA_TILES: '16' is not one of 4, 8");
  CHECK_THROWS_WITH(fp4_mma_knobs(nullptr, nullptr, "3"), "environment RACKSIM_FP4_MMA_DEPTH: '3' is not one of auto, 1, 2");
  // The MMA instruction: mma.sync by default (the measured kernel), wgmma on request.
  CHECK_FALSE(d.wgmma);
  CHECK_FALSE(fp4_mma_knobs(nullptr, nullptr, nullptr, "sync").wgmma);
  CHECK(fp4_mma_knobs(nullptr, nullptr, nullptr, "wgmma").wgmma);
  CHECK_THROWS_WITH(fp4_mma_knobs(nullptr, nullptr, nullptr, "WGMMA"), "environment RACKSIM_FP4_MMA_MMA: 'WGMMA' is not one of sync, wgmma");
  // Where the weights wait: registers by default, the cp.async ring on request; the ring with an
  // explicit depth or with wgmma (both also set the 2-tile kernel) is refused, naming both.
  CHECK_FALSE(d.ring);
  CHECK_FALSE(fp4_mma_knobs(nullptr, nullptr, nullptr, nullptr, "regs").ring);
  CHECK(fp4_mma_knobs(nullptr, nullptr, "auto", "sync", "cpasync").ring);
  CHECK_THROWS_WITH(fp4_mma_knobs(nullptr, nullptr, nullptr, nullptr, "ring"),
                    "environment RACKSIM_FP4_MMA_PIPE: 'ring' is not one of regs, cpasync");
  CHECK_THROWS_WITH(fp4_mma_knobs(nullptr, nullptr, "2", nullptr, "cpasync"),
                    "environment RACKSIM_FP4_MMA_PIPE=cpasync replaces the register prefetch that RACKSIM_FP4_MMA_DEPTH sets; unset one");
  CHECK_THROWS_WITH(fp4_mma_knobs(nullptr, nullptr, nullptr, "wgmma", "cpasync"),
                    "environment RACKSIM_FP4_MMA_PIPE=cpasync and RACKSIM_FP4_MMA_MMA=wgmma are two variants of the 2-tile kernel; set one");
  // Where x waits: staged per span by default, once per split on request (with any other knob: it
  // applies where the launch runs one tile at depth 1).
  CHECK_FALSE(d.x_split);
  CHECK_FALSE(fp4_mma_knobs(nullptr, nullptr, nullptr, nullptr, nullptr, "span").x_split);
  CHECK(fp4_mma_knobs(nullptr, nullptr, nullptr, nullptr, "cpasync", "split").x_split);
  CHECK(fp4_mma_knobs(nullptr, nullptr, "2", nullptr, nullptr, "split").x_split);
  CHECK_THROWS_WITH(fp4_mma_knobs(nullptr, nullptr, nullptr, nullptr, nullptr, "all"),
                    "environment RACKSIM_FP4_MMA_X: 'all' is not one of span, split");
  // Split K summed by a reduce launch by default, by the last CTA on request.
  CHECK_FALSE(d.serial);
  CHECK_FALSE(fp4_mma_knobs(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, "launch").serial);
  CHECK(fp4_mma_knobs(nullptr, nullptr, nullptr, nullptr, "cpasync", "split", "serial").serial);
  CHECK_THROWS_WITH(fp4_mma_knobs(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, "atomic"),
                    "environment RACKSIM_FP4_MMA_REDUCE: 'atomic' is not one of launch, serial");
  CHECK(fp4_mma_knobs_words(fp4_mma_knobs(nullptr, nullptr, nullptr, nullptr, nullptr, "split", "serial")) ==
        "RACKSIM_FP4_MMA_X=split RACKSIM_FP4_MMA_REDUCE=serial");
  // The occupancy cap: none by default; 4, 5 or 6 CTAs per SM on request (the M <= 8 GEMV holds 6
  // by its registers since 2026-12-02, 5 at the last measured commit); it pads the register-staged
  // mma.sync kernel only, so with the ring, wgmma or the x split it is refused, naming both.
  CHECK(d.ctas == 0);
  CHECK(fp4_mma_knobs(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, "auto").ctas == 0);
  CHECK(fp4_mma_knobs(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, "4").ctas == 4);
  CHECK(fp4_mma_knobs(nullptr, nullptr, "2", nullptr, nullptr, nullptr, "serial", "5").ctas == 5);
  CHECK(fp4_mma_knobs(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, "6").ctas == 6);
  CHECK_THROWS_WITH(fp4_mma_knobs(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, "3"),
                    "environment RACKSIM_FP4_MMA_CTAS: '3' is not one of auto, 4, 5, 6");
  CHECK_THROWS_WITH(fp4_mma_knobs(nullptr, nullptr, nullptr, nullptr, "cpasync", nullptr, nullptr, "5"),
                    "environment RACKSIM_FP4_MMA_CTAS=5 pads the register-staged mma.sync kernel only, not RACKSIM_FP4_MMA_PIPE=cpasync; unset one");
  CHECK_THROWS_WITH(fp4_mma_knobs(nullptr, nullptr, nullptr, "wgmma", nullptr, nullptr, nullptr, "4"),
                    "environment RACKSIM_FP4_MMA_CTAS=4 pads the register-staged mma.sync kernel only, not RACKSIM_FP4_MMA_MMA=wgmma; unset one");
  CHECK_THROWS_WITH(fp4_mma_knobs(nullptr, nullptr, nullptr, nullptr, nullptr, "split", nullptr, "6"),
                    "environment RACKSIM_FP4_MMA_CTAS=6 pads the register-staged mma.sync kernel only, not RACKSIM_FP4_MMA_X=split; unset one");
  CHECK(fp4_mma_knobs_words(fp4_mma_knobs(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, "serial", "5")) ==
        "RACKSIM_FP4_MMA_REDUCE=serial RACKSIM_FP4_MMA_CTAS=5");
  // The tuner and the [cuda] tests start from the environment's eight knobs, read when asked.
  REQUIRE(std::getenv("RACKSIM_FP4_MMA_REDUCE") == nullptr);
  REQUIRE(std::getenv("RACKSIM_FP4_MMA_CTAS") == nullptr);
  ::setenv("RACKSIM_FP4_MMA_REDUCE", "serial", 1);
  ::setenv("RACKSIM_FP4_MMA_SPLITS", "balance", 1);
  ::setenv("RACKSIM_FP4_MMA_CTAS", "5", 1);
  const Fp4MmaKnobs env = fp4_mma_knobs_from_env();
  ::unsetenv("RACKSIM_FP4_MMA_REDUCE");
  ::unsetenv("RACKSIM_FP4_MMA_SPLITS");
  ::unsetenv("RACKSIM_FP4_MMA_CTAS");
  CHECK(env.serial);
  CHECK(env.splits == Fp4MmaKnobs::Splits::balance);
  CHECK(env.ctas == 5);
  CHECK_FALSE(fp4_mma_knobs_from_env().serial);
  CHECK(attention_decode_keys_as_m(nullptr));
  CHECK(attention_decode_keys_as_m("keys"));
  CHECK_FALSE(attention_decode_keys_as_m("rows"));
  CHECK_THROWS_WITH(attention_decode_keys_as_m(""), "environment RACKSIM_ATTENTION_DECODE: '' is not one of keys, rows");
  // FP8 attention's P: hi + lo halves unless "single".
  CHECK_FALSE(attention_fp8_single_p(nullptr));
  CHECK_FALSE(attention_fp8_single_p("split"));
  CHECK(attention_fp8_single_p("single"));
  CHECK_THROWS_WITH(attention_fp8_single_p("fp8"), "environment RACKSIM_ATTENTION_FP8_P: 'fp8' is not one of split, single");
}

TEST_CASE("the fused FP4 GEMM's launch under its knobs, by hand", "[exec][plan]") {
  // A stand-in for the occupancy API at H200 figures (5 CTAs per SM at 1-2 tiles, 4 with weights
  // two spans ahead, 3 at 4 tiles, 2 at 8; ptxas registers 92/96, 124, 156, 219).
  const auto resident = [](int tiles, int depth) { return tiles <= 2 ? (depth == 2 ? 4 : 5) : tiles == 4 ? 3 : 2; };
  const Fp4MmaKnobs def = fp4_mma_knobs(nullptr, nullptr, nullptr);
  // o_proj M = 1: one tile, depth 1, whole wave: floor(5 x 132 / 64) = 10 splits (see the plan test).
  Fp4MmaLaunch l = fp4_mma_launch_plan(1, 8192, 8192, 132, def, resident);
  CHECK(l.plan.n_tiles == 1);
  CHECK(l.depth == 1);
  CHECK(l.wave);
  CHECK(l.plan.splits == 10);
  CHECK_FALSE(l.two_passes);
  // gate_up M = 1: one wave would leave K unsplit (floor(660 / 448) = 1): the default's 3 splits.
  l = fp4_mma_launch_plan(1, 57344, 8192, 132, def, resident);
  CHECK_FALSE(l.wave);
  CHECK(l.plan.splits == 3);
  // o_proj M = 16: two tiles, so depth 2 and 4 CTAs per SM: floor(528 / 64) = 8 splits (under the
  // cap 0.5 x 0.5625 x 8,192 / 128 = 18), of 8 spans.
  l = fp4_mma_launch_plan(16, 8192, 8192, 132, def, resident);
  CHECK(l.depth == 2);
  CHECK(l.wave);
  CHECK(l.plan.splits == 8);
  // M = 32: four tiles keep the default rule (8 splits) and depth 1, unless the knob says wave:
  // floor(3 x 132 / 64) = 6.
  l = fp4_mma_launch_plan(32, 8192, 8192, 132, def, resident);
  CHECK_FALSE(l.wave);
  CHECK(l.depth == 1);
  CHECK(l.plan.splits == 8);
  CHECK(fp4_mma_launch_plan(32, 8192, 8192, 132, fp4_mma_knobs("wave", nullptr, nullptr), resident).plan.splits == 6);
  // The fill8 knob keeps the default at M = 1 (16 splits); depth 1 and 2 as asked at 1 tile.
  CHECK(fp4_mma_launch_plan(1, 8192, 8192, 132, fp4_mma_knobs("fill8", nullptr, nullptr), resident).plan.splits == 16);
  CHECK(fp4_mma_launch_plan(1, 8192, 8192, 132, fp4_mma_knobs(nullptr, nullptr, "2"), resident).depth == 2);
  CHECK(fp4_mma_launch_plan(16, 8192, 8192, 132, fp4_mma_knobs(nullptr, nullptr, "1"), resident).depth == 1);
  // M = 40: one 8-tile launch by default, two passes under RACKSIM_FP4_MMA_TILES=4.
  l = fp4_mma_launch_plan(40, 8192, 8192, 132, def, resident);
  CHECK(l.plan.n_tiles == 8);
  CHECK_FALSE(l.two_passes);
  CHECK(fp4_mma_launch_plan(40, 8192, 8192, 132, fp4_mma_knobs(nullptr, "4", nullptr), resident).two_passes);
  // Depth 2 at 4 and 8 tiles only when the knob asks for it, and never under wgmma (no such kernel).
  CHECK(fp4_mma_launch_plan(32, 8192, 8192, 132, def, resident).depth == 1);
  CHECK(fp4_mma_launch_plan(64, 8192, 8192, 132, def, resident).depth == 1);
  CHECK(fp4_mma_launch_plan(32, 8192, 8192, 132, fp4_mma_knobs(nullptr, nullptr, "2"), resident).depth == 2);
  CHECK(fp4_mma_launch_plan(64, 8192, 8192, 132, fp4_mma_knobs(nullptr, nullptr, "2"), resident).depth == 2);
  CHECK(fp4_mma_launch_plan(64, 8192, 8192, 132, fp4_mma_knobs(nullptr, nullptr, "2", "wgmma"), resident).depth == 1);
  CHECK(fp4_mma_launch_plan(16, 8192, 8192, 132, fp4_mma_knobs(nullptr, nullptr, "2", "wgmma"), resident).depth == 2);
  // x staged once per split (RACKSIM_FP4_MMA_X=split) at one tile where spans_per_split x m x 320 B
  // fits in 16,384: o_proj at M = 1, 10 whole-wave splits of 7 spans (as above): 2,240 B; gate_up
  // at M = 1, the default's 3 splits of 22 spans: 7,040 B; o_proj at M = 8, 10 splits of 7 spans
  // (the cap 0.5 x 0.5625 x 8,192 / 64 = 36 does not bind): 7 x 8 x 320 = 17,920 B, too many; two
  // tiles never.
  const Fp4MmaKnobs xs = fp4_mma_knobs(nullptr, nullptr, nullptr, nullptr, nullptr, "split");
  CHECK(fp4_mma_x_split_bytes(1, 7) == 2240);
  l = fp4_mma_launch_plan(1, 8192, 8192, 132, xs, resident);
  CHECK(l.plan.spans_per_split == 7);
  CHECK(l.x_split);
  l = fp4_mma_launch_plan(1, 57344, 8192, 132, xs, resident);
  CHECK(l.plan.spans_per_split == 22);
  CHECK(fp4_mma_x_split_bytes(1, 22) == 7040);
  CHECK(l.x_split);
  l = fp4_mma_launch_plan(8, 8192, 8192, 132, xs, resident);
  CHECK(l.plan.spans_per_split == 7);
  CHECK(fp4_mma_x_split_bytes(8, 7) == 17920);
  CHECK_FALSE(l.x_split);
  CHECK_FALSE(fp4_mma_launch_plan(16, 8192, 8192, 132, xs, resident).x_split);
  CHECK_FALSE(fp4_mma_launch_plan(1, 8192, 8192, 132, def, resident).x_split);
  // Depth 2 at one tile (the knob says 2) keeps the per-span staging; split still applies where
  // depth 1 runs. With the ring the most is 11,264 B (the ring's 36 KiB and x within 48 KiB, no
  // opt-in): o_proj at M = 5, 7 spans, 11,200 B fits; M = 6, 13,440 B, only without the ring.
  CHECK_FALSE(fp4_mma_launch_plan(1, 8192, 8192, 132, fp4_mma_knobs(nullptr, nullptr, "2", nullptr, nullptr, "split"), resident).x_split);
  CHECK(fp4_mma_x_split_max_bytes(false) == 16384);
  CHECK(fp4_mma_x_split_max_bytes(true) == 11264);
  const Fp4MmaKnobs rx = fp4_mma_knobs(nullptr, nullptr, nullptr, nullptr, "cpasync", "split");
  l = fp4_mma_launch_plan(5, 8192, 8192, 132, rx, resident);
  CHECK(l.plan.spans_per_split == 7);
  CHECK(fp4_mma_x_split_bytes(5, 7) == 11200);
  CHECK(l.x_split);
  CHECK(l.ring);
  l = fp4_mma_launch_plan(6, 8192, 8192, 132, rx, resident);
  CHECK(l.plan.spans_per_split == 7);
  CHECK_FALSE(l.x_split);
  CHECK(fp4_mma_launch_plan(6, 8192, 8192, 132, xs, resident).x_split);
  // One launch takes at most 64 rows: fp4_gemm_mma_launch runs M = 65..128 as launches of 64.
  CHECK_THROWS_AS(fp4_mma_launch_plan(65, 8192, 8192, 132, def, resident), InputError);
  CHECK(fp4_mma_launch_plan(64, 8192, 8192, 132, def, resident).plan.n_tiles == 8);
  // The cp.async ring at M <= 16: depth 1 (it replaces the register prefetch), at 5 CTAs per SM
  // in this stand-in, so o_proj M = 16 splits floor(5 x 132 / 64) = 10 ways instead of 8; at four
  // tiles it does not apply.
  const Fp4MmaKnobs ring = fp4_mma_knobs(nullptr, nullptr, nullptr, nullptr, "cpasync");
  l = fp4_mma_launch_plan(16, 8192, 8192, 132, ring, resident);
  CHECK(l.ring);
  CHECK(l.depth == 1);
  CHECK(l.plan.splits == 10);
  CHECK(fp4_mma_launch_plan(1, 8192, 8192, 132, ring, resident).ring);
  CHECK_FALSE(fp4_mma_launch_plan(32, 8192, 8192, 132, ring, resident).ring);
  CHECK_FALSE(fp4_mma_launch_plan(16, 8192, 8192, 132, def, resident).ring);
}

TEST_CASE("the fused FP4 GEMM's per-shape tuning: classes, candidates, duplicates and the pick, by hand", "[exec][plan]") {
  CHECK_FALSE(fp4_mma_tune_knob(nullptr));
  CHECK_FALSE(fp4_mma_tune_knob("off"));
  CHECK(fp4_mma_tune_knob("on"));
  CHECK_THROWS_WITH(fp4_mma_tune_knob("yes"), "environment RACKSIM_FP4_MMA_TUNE: 'yes' is not one of off, on");
  // Classes by the kernel's tiles (fp4_mma_plan: ceil(m / 8) tiles -> 1, 2, 4, 8), M = 1 apart
  // (batch-1 decode, the GEMV target), one tile split where the x split stops fitting o_proj
  // (7 spans x m x 320 B <= 16 KiB: m <= 7, so timed at 4 it runs, at 8 it does not), M = 65..128
  // as its launches of 64.
  const std::vector<std::pair<std::int64_t, int>> classes = {{1, 0},  {2, 1},  {4, 1},  {5, 2},  {8, 2},  {9, 3},
                                                             {16, 3}, {17, 4}, {32, 4}, {33, 5}, {64, 5}, {128, 5}};
  for (const auto& [m, c] : classes) CHECK(fp4_mma_tune_class(m) == c);
  CHECK_THROWS_AS(fp4_mma_tune_class(0), InputError);
  CHECK_THROWS_AS(fp4_mma_tune_class(129), InputError);
  CHECK(fp4_mma_tune_class_rows(5) == std::pair<std::int64_t, std::int64_t>{33, 128});
  CHECK_THROWS_AS(fp4_mma_tune_class_rows(6), InputError);
  CHECK(fp4_mma_tune_classes_words() == "1, 2-4, 5-8, 9-16, 17-32, 33-128");
  // Each class timed at its largest M (64 for 33..128: one launch), or max_rows below it; none
  // where max_rows is below the class.
  for (const std::int64_t max_rows : {64, 1000})
    for (int c = 0; c < kFp4MmaTuneClasses; ++c)
      CHECK(fp4_mma_tune_rows(c, max_rows) == std::vector<std::int64_t>{1, 4, 8, 16, 32, 64}[static_cast<std::size_t>(c)]);
  CHECK(fp4_mma_tune_rows(1, 5) == 4);
  CHECK(fp4_mma_tune_rows(2, 5) == 5);
  CHECK(fp4_mma_tune_rows(3, 5) == 0);
  CHECK(fp4_mma_tune_rows(0, 1) == 1);
  CHECK(fp4_mma_tune_rows(1, 1) == 0);
  CHECK(fp4_mma_tune_rows(5, 40) == 40);

  // The candidates from the defaults, in order, as the environment would spell them.
  const Fp4MmaKnobs def = fp4_mma_knobs(nullptr, nullptr, nullptr);
  const auto words = [](const std::vector<Fp4MmaKnobs>& ks) {
    std::vector<std::string> out;
    for (const auto& k : ks) {
      CHECK_FALSE((k.ring && (k.depth != 0 || k.wgmma)));  // fp4_mma_knobs refuses these pairs
      out.push_back(fp4_mma_knobs_words(k));
    }
    return out;
  };
  CHECK(words(fp4_mma_tune_candidates(def, 1, true)) ==
        std::vector<std::string>{"default", "RACKSIM_FP4_MMA_DEPTH=2", "RACKSIM_FP4_MMA_PIPE=cpasync", "RACKSIM_FP4_MMA_X=split",
                                 "RACKSIM_FP4_MMA_PIPE=cpasync RACKSIM_FP4_MMA_X=split", "RACKSIM_FP4_MMA_SPLITS=fill8",
                                 "RACKSIM_FP4_MMA_SPLITS=wave", "RACKSIM_FP4_MMA_SPLITS=balance", "RACKSIM_FP4_MMA_REDUCE=serial"});
  CHECK(words(fp4_mma_tune_candidates(def, 4, true)) == words(fp4_mma_tune_candidates(def, 1, true)));
  CHECK(words(fp4_mma_tune_candidates(def, 8, true)) == words(fp4_mma_tune_candidates(def, 1, true)));
  CHECK(words(fp4_mma_tune_candidates(def, 16, true)) ==
        std::vector<std::string>{"default", "RACKSIM_FP4_MMA_DEPTH=1", "RACKSIM_FP4_MMA_DEPTH=2", "RACKSIM_FP4_MMA_PIPE=cpasync",
                                 "RACKSIM_FP4_MMA_MMA=wgmma", "RACKSIM_FP4_MMA_SPLITS=fill8", "RACKSIM_FP4_MMA_SPLITS=balance",
                                 "RACKSIM_FP4_MMA_REDUCE=serial"});
  // wgmma only on a Hopper device with sm_90a code.
  CHECK(fp4_mma_tune_candidates(def, 16, false).size() == 7);
  CHECK(words(fp4_mma_tune_candidates(def, 32, true)) ==
        std::vector<std::string>{"default", "RACKSIM_FP4_MMA_DEPTH=2", "RACKSIM_FP4_MMA_MMA=wgmma", "RACKSIM_FP4_MMA_SPLITS=wave",
                                 "RACKSIM_FP4_MMA_REDUCE=serial"});
  CHECK(words(fp4_mma_tune_candidates(def, 64, true)) ==
        std::vector<std::string>{"default", "RACKSIM_FP4_MMA_TILES=4", "RACKSIM_FP4_MMA_DEPTH=2", "RACKSIM_FP4_MMA_MMA=wgmma",
                                 "RACKSIM_FP4_MMA_SPLITS=wave RACKSIM_FP4_MMA_TILES=4", "RACKSIM_FP4_MMA_REDUCE=serial"});
  CHECK(words(fp4_mma_tune_candidates(def, 128, false)) ==
        std::vector<std::string>{"default", "RACKSIM_FP4_MMA_TILES=4", "RACKSIM_FP4_MMA_DEPTH=2", "RACKSIM_FP4_MMA_SPLITS=wave RACKSIM_FP4_MMA_TILES=4",
                                 "RACKSIM_FP4_MMA_REDUCE=serial"});
  // From the environment's knobs (the ring set): the base first, then the register kernels (the
  // default, depth 2), the ring + x split once (it equals the x split from a ring base).
  const Fp4MmaKnobs ring = fp4_mma_knobs(nullptr, nullptr, nullptr, nullptr, "cpasync");
  CHECK(words(fp4_mma_tune_candidates(ring, 1, true)) ==
        std::vector<std::string>{"RACKSIM_FP4_MMA_PIPE=cpasync", "default", "RACKSIM_FP4_MMA_DEPTH=2", "RACKSIM_FP4_MMA_PIPE=cpasync RACKSIM_FP4_MMA_X=split",
                                 "RACKSIM_FP4_MMA_SPLITS=fill8 RACKSIM_FP4_MMA_PIPE=cpasync",
                                 "RACKSIM_FP4_MMA_SPLITS=wave RACKSIM_FP4_MMA_PIPE=cpasync", "RACKSIM_FP4_MMA_SPLITS=balance RACKSIM_FP4_MMA_PIPE=cpasync",
                                 "RACKSIM_FP4_MMA_PIPE=cpasync RACKSIM_FP4_MMA_REDUCE=serial"});

  // Duplicates, with the launch test's occupancy stand-in for both knob sets.
  const auto resident = [](int tiles, int depth) { return tiles <= 2 ? (depth == 2 ? 4 : 5) : tiles == 4 ? 3 : 2; };
  const auto same = [&](const Fp4MmaKnobs& a, const Fp4MmaKnobs& b, std::int64_t m, std::int64_t n, std::int64_t k) {
    return fp4_mma_same_launch(a, b, m, n, k, 132, resident, resident);
  };
  const Fp4MmaKnobs wave = fp4_mma_knobs("wave", nullptr, nullptr), fill8 = fp4_mma_knobs("fill8", nullptr, nullptr);
  const Fp4MmaKnobs xs = fp4_mma_knobs(nullptr, nullptr, nullptr, nullptr, nullptr, "split");
  const Fp4MmaKnobs wg = fp4_mma_knobs(nullptr, nullptr, nullptr, "wgmma");
  CHECK(same(def, def, 1, 8192, 8192));
  // o_proj at M = 1: auto is the whole wave (10 splits, the launch test), fill8 the default's 16.
  CHECK(same(def, wave, 1, 8192, 8192));
  CHECK_FALSE(same(def, fill8, 1, 8192, 8192));
  // gate_up at M = 1: one wave would not split K, so auto keeps the default's 3 = fill8; wave: 1.
  CHECK(same(def, fill8, 1, 57344, 8192));
  CHECK_FALSE(same(def, wave, 1, 57344, 8192));
  // x split where it fits (o_proj M = 1: 2,240 B) and not where it does not (M = 8: 17,920 B).
  CHECK_FALSE(same(def, xs, 1, 8192, 8192));
  CHECK_FALSE(same(def, xs, 4, 8192, 8192));  // 7 spans x 4 x 320 = 8,960 B
  CHECK(same(def, xs, 8, 8192, 8192));
  // The wave split is no launch of its own at 8 tiles; with two passes of 4 tiles it is.
  CHECK(same(def, wave, 64, 8192, 8192));
  CHECK_FALSE(same(fp4_mma_knobs(nullptr, "4", nullptr), fp4_mma_knobs("wave", "4", nullptr), 64, 8192, 8192));
  // wgmma at M > 8 only; at M = 65..128 both launches compared (the 64-row one and the rest).
  CHECK(same(def, wg, 8, 8192, 8192));
  CHECK_FALSE(same(def, wg, 9, 8192, 8192));
  CHECK_FALSE(same(def, fp4_mma_knobs(nullptr, "4", nullptr), 100, 8192, 8192));
  CHECK(same(def, fp4_mma_knobs(nullptr, "4", nullptr), 32, 8192, 8192));  // two passes only at 33..64 rows
  // The balance split: a launch of its own where it differs from the default's (gate_up M = 1: 4
  // splits against auto's 3), none at 4 tiles.
  const Fp4MmaKnobs bal = fp4_mma_knobs("balance", nullptr, nullptr);
  CHECK(fp4_mma_launch_plan(1, 57344, 8192, 132, bal, resident).plan.splits == 4);
  CHECK_FALSE(same(def, bal, 1, 57344, 8192));
  CHECK(same(def, bal, 1, 8192, 8192));  // o_proj: both the whole wave's 10
  CHECK(same(def, bal, 32, 8192, 8192));
  // The serial split-K sum is a launch of its own only where the launch splits K: o_proj at M = 1
  // (10 splits) and gate_up at M = 1 (3), not N = 57,344 x K = 128 (one span, one split); at
  // M = 33..64 under the two passes, each pass's split decides.
  const Fp4MmaKnobs ser = fp4_mma_knobs(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, "serial");
  CHECK_FALSE(same(def, ser, 1, 8192, 8192));
  CHECK_FALSE(same(def, ser, 1, 57344, 8192));
  CHECK(same(def, ser, 1, 57344, 128));
  CHECK(fp4_mma_launch_plan(1, 8192, 8192, 132, ser, resident).serial);
  CHECK_FALSE(fp4_mma_launch_plan(1, 8192, 8192, 132, def, resident).serial);
  CHECK_FALSE(fp4_mma_launch_plan(1, 57344, 128, 132, ser, resident).serial);
  CHECK(fp4_mma_launch_plan(64, 8192, 8192, 132, ser, resident).serial);  // 8 tiles: 4 splits of 16 spans
  CHECK_FALSE(fp4_mma_launch_plan(64, 8192, 8192, 132, fp4_mma_knobs(nullptr, "4", nullptr, nullptr, nullptr, nullptr, "serial"), resident).serial);
  CHECK_FALSE(same(fp4_mma_knobs(nullptr, "4", nullptr), fp4_mma_knobs(nullptr, "4", nullptr, nullptr, nullptr, nullptr, "serial"), 64, 8192, 8192));
  // The occupancy each knob set's kernels have enters the whole-wave split: o_proj M = 1 at 4
  // CTAs per SM: floor(4 x 132 / 64) = 8 splits, not 10.
  CHECK_FALSE(fp4_mma_same_launch(def, def, 1, 8192, 8192, 132, resident, [](int, int) { return 4; }));

  // RACKSIM_FP4_MMA_CTAS=5 against today's default on an H200 (the one-tile GEMV at 78 registers
  // holds 6 CTAs per SM; ptxas, 2026-12-02): o_proj at M = 1 plans floor(6 x 132 / 64) = 12 wanted
  // splits, ceil(64 / 12) = 6 spans each, so ceil(64 / 6) = 11 splits (704 CTAs in 792 slots);
  // capped at 5, floor(5 x 132 / 64) = 10, 7 spans each, 10 splits (640 in 660), and the launch
  // carries the cap its shared memory is padded for.
  const auto resident6 = [](int tiles, int depth) { return tiles == 1 && depth == 1 ? 6 : tiles <= 2 ? (depth == 2 ? 4 : 5) : tiles == 4 ? 3 : 2; };
  const auto capped5 = [&](int tiles, int depth) { return std::min(resident6(tiles, depth), 5); };
  const Fp4MmaKnobs c5 = fp4_mma_knobs(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, "5");
  const Fp4MmaLaunch l6 = fp4_mma_launch_plan(1, 8192, 8192, 132, def, resident6), l5 = fp4_mma_launch_plan(1, 8192, 8192, 132, c5, capped5);
  CHECK(l6.plan.splits == 11);
  CHECK(l6.plan.spans_per_split == 6);
  CHECK(l6.ctas == 0);
  CHECK(l5.plan.splits == 10);
  CHECK(l5.plan.spans_per_split == 7);
  CHECK(l5.ctas == 5);
  CHECK_FALSE(fp4_mma_same_launch(def, c5, 1, 8192, 8192, 132, resident6, capped5));
  // Every register-staged launch carries the cap, the 8-tile one too (its registers hold it to 2).
  CHECK(fp4_mma_launch_plan(64, 8192, 8192, 132, c5, capped5).ctas == 5);
  CHECK(fp4_mma_launch_plan(16, 8192, 8192, 132, c5, capped5).ctas == 5);
  // The tuner's candidates from a capped base keep the cap where it applies and drop it from the
  // ring and the x split (fp4_mma_knobs refuses those pairs).
  CHECK(words(fp4_mma_tune_candidates(c5, 1, true)) ==
        std::vector<std::string>{"RACKSIM_FP4_MMA_CTAS=5", "RACKSIM_FP4_MMA_DEPTH=2 RACKSIM_FP4_MMA_CTAS=5", "RACKSIM_FP4_MMA_PIPE=cpasync",
                                 "RACKSIM_FP4_MMA_X=split", "RACKSIM_FP4_MMA_PIPE=cpasync RACKSIM_FP4_MMA_X=split",
                                 "RACKSIM_FP4_MMA_SPLITS=fill8 RACKSIM_FP4_MMA_CTAS=5", "RACKSIM_FP4_MMA_SPLITS=wave RACKSIM_FP4_MMA_CTAS=5",
                                 "RACKSIM_FP4_MMA_SPLITS=balance RACKSIM_FP4_MMA_CTAS=5", "RACKSIM_FP4_MMA_REDUCE=serial RACKSIM_FP4_MMA_CTAS=5"});
  for (const Fp4MmaKnobs& k : fp4_mma_tune_candidates(c5, 16, true)) CHECK((k.ctas == 0) == (k.ring || k.wgmma || k.x_split));

  // The pick: the fastest where it beats the base by more than 2%, ties to the first.
  CHECK(fp4_mma_tune_pick({10.0, 9.9, 9.5}) == 2);
  CHECK(fp4_mma_tune_pick({10.0, 9.9}) == 0);    // 1% is noise (9.9 >= 9.8)
  CHECK(fp4_mma_tune_pick({10.0, 9.7, 9.7}) == 1);
  CHECK(fp4_mma_tune_pick({10.0, 10.5}) == 0);
  CHECK(fp4_mma_tune_pick({10.0}) == 0);
  CHECK(fp4_mma_tune_pick({10.0, 9.9}, 0.0) == 1);
  // And by more than 1 us, two CUDA events' resolution: on a 10 us GEMV 5% (0.5 us) is not
  // enough; on a 50 us GEMM 3% (1.5 us) is.
  CHECK(fp4_mma_tune_pick({10e-6, 9.5e-6}) == 0);
  CHECK(fp4_mma_tune_pick({10e-6, 8.9e-6}) == 1);
  CHECK(fp4_mma_tune_pick({50e-6, 48.5e-6}) == 1);
  CHECK(fp4_mma_tune_pick({10e-6, 9.5e-6}, 0.02, 0.0) == 1);
  CHECK_THROWS_AS(fp4_mma_tune_pick({}), InputError);
  CHECK_THROWS_WITH(fp4_mma_tune_pick({10.0, 0.0}), "fp4_mma_tune_pick: median 1 is 0 (must be finite and > 0)");
  CHECK_THROWS_AS(fp4_mma_tune_pick({10.0, std::nan("")}), InputError);
  CHECK(fp4_mma_knobs_words(fp4_mma_knobs("wave", "4", "2")) == "RACKSIM_FP4_MMA_SPLITS=wave RACKSIM_FP4_MMA_TILES=4 RACKSIM_FP4_MMA_DEPTH=2");
}

TEST_CASE("RACKSIM_FP4_MMA_CTAS's shared-memory padding, by hand", "[exec][plan]") {
  // An H100/H200 SM: 233,472 B of shared memory, 1,024 B reserved per CTA, 128 B allocation units
  // (cudaDevAttrMaxSharedMemoryPerMultiprocessor, cudaDevAttrReservedSharedMemoryPerBlock).
  constexpr std::int64_t sm = 233472, reserved = 1024;
  // The 1-tile kernel (3,600 B static, ptxas sm_90a) capped at 5: a CTA must take more than
  // 233,472 / 6 = 38,912 B, its own bytes rounded up more than 37,888 (296 units): 3,600 + pad >
  // 37,888, pad = 34,304 (268 units): 38,016 + 1,024 = 39,040 B, 5.98 -> 5 per SM. One unit less
  // (34,176) rounds to 37,888 + 1,024 = 38,912: exactly 6.
  CHECK(fp4_mma_ctas_pad_bytes(3600, sm, reserved, 5) == 34304);
  CHECK(sm / (38016 + reserved) == 5);
  CHECK(sm / (37888 + reserved) == 6);
  // Capped at 6: more than 233,472 / 7 = 33,353.1 B a CTA, own bytes more than 32,256 (252 units):
  // pad > 28,656, 28,672 (224 units): 32,384 + 1,024 = 33,408, 6.99 -> 6.
  CHECK(fp4_mma_ctas_pad_bytes(3600, sm, reserved, 6) == 28672);
  // The 2-tile kernel (6,160 B) capped at 4: more than 46,694.4 B, own bytes more than 45,568 (356
  // units): pad > 39,408, 39,424 (308 units): 45,696 + 1,024 = 46,720, 4.997 -> 4.
  CHECK(fp4_mma_ctas_pad_bytes(6160, sm, reserved, 4) == 39424);
  // Static bytes that alone hold the SM to the cap: no padding (40,064 + 1,024 = 41,088: 5.68 -> 5).
  CHECK(fp4_mma_ctas_pad_bytes(40000, sm, reserved, 5) == 0);
  CHECK(fp4_mma_ctas_pad_bytes(3600, sm, reserved, 0) == 0);  // no cap
  // No static bytes and none reserved: no division by zero; more than 233,472 / 6 = 38,912 B a
  // CTA, so 39,040 (305 units): 5.98 -> 5.
  CHECK(fp4_mma_ctas_pad_bytes(0, sm, 0, 5) == 39040);
}
