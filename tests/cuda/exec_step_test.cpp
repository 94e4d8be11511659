// [cuda] The CUDA step executor against the CPU reference: the same tiny Llama and the same NVFP4
// weights (uploaded from generate_weights), a chunked prefill of two sequences, then decode steps
// of both, logits compared step by step; and the executor's CUDA-graph replay.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <thread>
#include <vector>

#include "racksim/common/error.hpp"
#include "racksim/exec/backend.hpp"
#include "racksim/exec/cpu_reference.hpp"
#include "racksim/exec/cuda_bench.hpp"
#include "racksim/exec/executor.hpp"
#include "racksim/exec/step_backend.hpp"
#include "racksim/exec/tensor_parallel.hpp"
#include "tiny_models.hpp"

using namespace racksim;
using namespace racksim::exec;

namespace {

ModelConfig tiny() { return test::tiny_llama(); }

/// max |a - b| over the rows, relative to max(1, max |b|).
double rel_diff(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
  double worst = 0, scale = 1;
  for (std::size_t r = 0; r < b.size(); ++r)
    for (std::size_t i = 0; i < b[r].size(); ++i) {
      worst = std::max(worst, std::fabs(static_cast<double>(a[r][i]) - b[r][i]));
      scale = std::max(scale, std::fabs(static_cast<double>(b[r][i])));
    }
  return worst / scale;
}

/// false (after saying why) where device 0 or the cuBLASLt linked lacks `mode`: native needs
/// sm_100 / sm_103 and cuBLASLt 12.8. Only that skips: any other failure of the native path fails.
bool runs_here(Fp4GemmMode mode) {
  if (mode != Fp4GemmMode::native) return true;
  const CudaDevice d = cuda_require_device(0);
  const Fp4GemmChoice c = choose_fp4_gemm(Fp4GemmMode::automatic, d.sm_major, d.sm_minor, cuda_cublaslt_version());
  if (!c.native) WARN("SKIPPED on this device: " << c.reason);
  return c.native;
}

/// The options the comparisons with the CPU reference use: its weights (seed 11), logits kept.
CudaStepOptions compare_options(Fp4GemmMode mode, std::int64_t max_rows, std::int64_t kv_tokens) {
  CudaStepOptions o;
  o.fp4_gemm = mode;
  o.max_rows = max_rows;
  o.max_sampled = 4;
  o.kv_tokens = kv_tokens;
  o.block_tokens = 16;
  o.seed = 11;
  o.keep_logits = true;
  return o;
}

/// `prompt`: sequence 2's prompt length (step 2 prefills all but its first 40, plus sequence 1's
/// decode: 111 rows at the default 150, within the fused FP4 kernel's 128; at 200, 161 rows, above
/// it: the large-M path).
void compare(DType kv, double tolerance, Fp4GemmMode mode, const ModelConfig& m = tiny(), int prompt = 150) {
  if (!runs_here(mode)) return;
  const Precision p{DType::nvfp4, DType::bf16, kv};
  const CudaStepOptions o = compare_options(mode, 256, 512);
  auto gpu = make_cuda_step_backend(m, p, o);
  CpuReference cpu(m, DType::nvfp4, 11);
  cpu.set_nvfp4_linear_inputs(mode == Fp4GemmMode::native);
  // Step 1: sequence 1's whole 5-token prompt and the first 40 of sequence 2's 150 (chunked).
  StepBatch b1;
  b1.prefill = {{5, 0, true}, {40, 0, false}};
  StepTokens t1;
  std::vector<std::int32_t> long_prompt;
  for (int i = 0; i < prompt; ++i) long_prompt.push_back((i * 37 + 3) % 97);
  t1.prefill = {{1, {4, 8, 15, 16, 23}}, {2, std::vector<std::int32_t>(long_prompt.begin(), long_prompt.begin() + 40)}};
  // Step 2: sequence 2's last 110 prompt tokens after 40 cached (prefill attention over 3 key
  // tiles), and sequence 1 decodes. Later decodes of sequence 2 attend 151+ keys: several 64-key
  // tiles and, with 2 x 2 KV heads far below 2 CTAs per SM, several partitions merged by
  // log-sum-exp (decode_partition_tokens).
  StepBatch b2;
  b2.prefill = {{prompt - 40, 40, true}};
  b2.decode_contexts = {5};
  StepOutput last_cpu;
  for (int step = 0; step < 6; ++step) {
    StepBatch b;
    StepTokens t;
    if (step == 0) {
      b = b1;
      t = t1;
    } else if (step == 1) {
      b = b2;
      t.prefill = {{2, std::vector<std::int32_t>(long_prompt.begin() + 40, long_prompt.end())}};
      t.decode = {{1, last_cpu.next_tokens[0]}};
    } else {
      // Both decode, fed the CPU's greedy tokens (so a near-tie cannot make the inputs diverge).
      b.decode_contexts = {cpu.cached_tokens(1), cpu.cached_tokens(2)};
      for (std::size_t i = 0; i < last_cpu.sequences.size(); ++i) {
        const std::int64_t seq = last_cpu.sequences[i];
        t.decode.push_back({seq, last_cpu.next_tokens[i]});
      }
      std::sort(t.decode.begin(), t.decode.end(), [](const auto& x, const auto& y) { return x.sequence < y.sequence; });
    }
    const StepGraph g(m, b, Deployment{}, p);
    const StepOutput want = cpu.run(g, t);
    std::size_t ops = 0;
    const StepOutput got = gpu->run(g, t, [&](const Op&, double s) {
      ++ops;
      CHECK(s >= 0);
    });
    CHECK(ops == g.size());
    REQUIRE(got.sequences == want.sequences);
    REQUIRE(got.logits.size() == want.logits.size());
    INFO("step " << step << " kv " << to_string(kv) << " linears " << gpu->linear_path());
    for (const auto& row : got.logits)
      for (float v : row) REQUIRE(std::isfinite(v));
    CHECK(rel_diff(got.logits, want.logits) <= tolerance);
    CHECK(gpu->cached_tokens(1) == cpu.cached_tokens(1));
    last_cpu = want;
  }
}

/// Prefills sequence 1 with 8 tokens, decodes one, then replays that decode as a CUDA graph (after
/// truncating the cache back): the replay takes time and leaves the cache at 8 tokens, and an eager
/// re-run at the same context gives the first run's token.
void check_decode_replay(StepBackend& gpu, const ModelConfig& m, const Precision& p) {
  StepBatch pre;
  pre.prefill = {{8, 0, true}};
  StepTokens tp;
  tp.prefill = {{1, {4, 8, 15, 16, 23, 42, 7, 1}}};
  (void)gpu.run(StepGraph(m, pre, Deployment{}, p), tp, {});
  StepBatch dec;
  dec.decode_contexts = {8};
  StepTokens td;
  td.decode = {{1, 9}};
  const StepOutput first = gpu.run(StepGraph(m, dec, Deployment{}, p), td, {});
  gpu.truncate(1, 8);
  const auto t = gpu.replay_last_step();
  REQUIRE(t);
  CHECK(*t > 0);
  CHECK(gpu.cached_tokens(1) == 8);  // a replay does not advance the cache
  // Its power window (racksim exec --power-seconds): 0.3 s of back-to-back replays, sized from a
  // second replay (the first uploads the graph). Where NVML answers (the H200 of 2026-11-30: 120 W
  // idle, 700 W cap) and the window is long enough for the energy counter's updates, the mean
  // power lies between an idle card's and the cap's (20..1,500 W, any GPU racksim knows).
  const auto t2 = gpu.replay_last_step();
  REQUIRE(t2);
  const int n = power_window_steps(0.3, *t2);
  std::string why;
  const std::optional<StepPower> w = gpu.power_last_step(n, &why);
  CHECK(gpu.cached_tokens(1) == 8);
  if (w) {
    CHECK(w->steps == n);
    CHECK(w->gpus == 1);
    CHECK(w->seconds > 0);
    CHECK(w->power_w == Approx(w->energy_j / w->seconds));
    if (w->seconds >= 0.25) {
      CHECK(w->power_w > 20);
      CHECK(w->power_w < 1500);
    }
  } else {
    WARN("no power window: " << why);
    CHECK(why.rfind("power unavailable: ", 0) == 0);
  }
  // A meter over eager runs (a prefill's window, racksim exec's other kind): 20 decode steps run
  // and truncated back; where NVML answers, the same bounds.
  REQUIRE(gpu.measures_power());
  auto meter = gpu.power_meter();
  REQUIRE(meter);
  for (int i = 0; i < 20; ++i) {
    (void)gpu.run(StepGraph(m, dec, Deployment{}, p), td, {});
    gpu.truncate(1, 8);
  }
  const std::optional<StepPower> e = meter->stop(&why);
  if (e) {
    CHECK(e->gpus == 1);
    CHECK(e->seconds > 0);
    CHECK(e->power_w >= 0);
    CHECK(e->power_w < 1500);
  } else {
    CHECK(why.rfind("power unavailable: ", 0) == 0);
  }
  const StepOutput again = gpu.run(StepGraph(m, dec, Deployment{}, p), td, {});
  CHECK(again.next_tokens == first.next_tokens);
}

/// Two ranks of tensor parallel 2 on cuda:0 and cuda:1 against the one-rank CPU reference of `m`.
void tp2_compare(const ModelConfig& m, double tolerance) {
  const Precision p{DType::nvfp4, DType::bf16, DType::bf16};
  auto comms = make_device_tp_comms(std::vector<int>{0, 1});
  std::vector<std::unique_ptr<StepBackend>> ranks;
  for (int r = 0; r < 2; ++r) {
    CudaStepOptions o = compare_options(Fp4GemmMode::hopper, 64, 256);
    o.device = r;
    o.tp = comms[static_cast<std::size_t>(r)].get();
    o.tp_size = 2;
    ranks.push_back(make_cuda_step_backend(m, p, o));
  }
  CpuReference cpu(m, DType::nvfp4, 11);
  Deployment d;
  d.tensor_parallel = 2;
  StepBatch b;
  b.prefill = {{7, 0, true}, {20, 0, true}};
  StepTokens t;
  t.prefill = {{1, {4, 8, 15, 16, 23, 42, 7}}, {2, {1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 44, 33, 22, 11, 0, 9, 18, 27, 36, 45}}};
  for (int step = 0; step < 4; ++step) {
    const StepOutput want = cpu.run(StepGraph(m, b, Deployment{}, p), t);
    std::vector<StepOutput> got(2);
    const StepGraph g(m, b, d, p);
    // A rank that fails aborts the communicators, so the other is not left waiting in a collective.
    std::exception_ptr failed1;
    std::thread other([&] {
      try {
        got[1] = ranks[1]->run(g, t, {});
      } catch (...) {
        failed1 = std::current_exception();
        for (auto& c : comms) c->abort();
      }
    });
    try {
      got[0] = ranks[0]->run(g, t, {});
    } catch (...) {
      for (auto& c : comms) c->abort();
      other.join();
      throw;
    }
    other.join();
    if (failed1) std::rethrow_exception(failed1);
    INFO("step " << step);
    REQUIRE(got[0].sequences == want.sequences);
    CHECK(got[1].logits == got[0].logits);  // every rank holds the gathered logits
    CHECK(rel_diff(got[0].logits, want.logits) <= tolerance);
    b = StepBatch{};
    b.decode_contexts = {cpu.cached_tokens(1), cpu.cached_tokens(2)};
    t = StepTokens{};
    t.decode = {{1, want.next_tokens[0]}, {2, want.next_tokens[1]}};
  }
}

}  // namespace

TEST_CASE("CUDA step executor matches the CPU reference, BF16 KV cache", "[cuda][exec]") {
  // The CPU reference keeps activations and the KV cache in FP32; the GPU rounds every activation
  // to BF16 (relative 2^-9) at each of ~12 op boundaries per layer over 2 layers, and accumulates
  // in FP32: a 24 x 2^-9 = 4.7% worst case, so 5% of the largest logit.
  compare(DType::bf16, 0.05, Fp4GemmMode::hopper);
}

TEST_CASE("CUDA step executor matches the CPU reference at hidden 256: every linear splits K at decode", "[cuda][exec]") {
  // tiny_llama widened (hidden 256 = 4 heads of 64, FFN 512): at the decode steps' 2 rows gate_up
  // (1,024 x 256: 8 row blocks, 2 spans) splits K in 2 on 132 SMs, so under RACKSIM_FUSE_SWIGLU=on
  // its split-K reduce writes the SwiGLU (the device session runs this case under the knob), and
  // the other linears split too. A 200-token prompt makes step 2 161 rows: above the fused
  // kernel's 128, the large-M path (dequantize + cuBLASLt), which tiny_llama's 111 rows no longer
  // reach. The same rounding budget as tiny_llama: 5%.
  ModelConfig m = test::tiny_llama();
  m.hidden = 256;
  m.head_dim = 64;
  m.ffn = 512;
  compare(DType::bf16, 0.05, Fp4GemmMode::hopper, m, 200);
}

TEST_CASE("CUDA step executor runs a MoE block as the CPU reference (top-4 of 4 experts)", "[cuda][exec]") {
  // tiny_moe with every expert chosen (k = 4 of 4): the routing cannot flip between the backends
  // (with k < experts, a near-tie of two router logits can send a token to another expert on one
  // side: the step's output for that token then differs by far more than rounding), while the
  // router, top-k order and weights, permute, the per-expert GEMMs (the fused kernel at step 1's
  // 45 rows and, as launches of 64 and 47, at step 2's 111), the expert SwiGLU and the finalize
  // all run.
  // The softmax weights are continuous in the logits. Budget: the dense case's worst case counts
  // 24 BF16 roundings (2^-9 each) on the path to a logit; the MoE block adds the expert rows' and
  // the finalize's, 28 x 2^-9 = 5.5%: 6%.
  ModelConfig m = test::tiny_moe();
  m.moe.experts_per_token = 4;
  compare(DType::bf16, 0.06, Fp4GemmMode::hopper, m);
}

TEST_CASE("CUDA step executor matches the CPU reference on Qwen3's QK-norm, dense and MoE (top-4 of 4)", "[cuda][exec]") {
  // One more BF16 rounding per q and k head per layer than tiny_llama: 26 x 2^-9 = 5.1%, and with
  // the MoE block's (above) 30 x 2^-9 = 5.9%: 6%.
  compare(DType::bf16, 0.06, Fp4GemmMode::hopper, test::tiny_qwen3());
  ModelConfig m = test::tiny_qwen3_moe();
  m.moe.experts_per_token = 4;
  compare(DType::bf16, 0.06, Fp4GemmMode::hopper, m);
}

TEST_CASE("CUDA step executor matches the CPU reference on MiniMax-M2's layer-wide QK-norm, partial RoPE and sigmoid routing",
          "[cuda][exec]") {
  // tiny_minimax with top-4 of 4 (no routing flips; the weights are sigmoid(l) over their sum,
  // continuous in the logits): the QK-norm adds one BF16 rounding per q and k value per layer, as
  // Qwen3's does: the MoE budget above, 6%. Then top-2 of 4, where the bias picks the experts: the
  // smoke bound of tiny_moe's top-2 case (a near-tie of keys may route a token otherwise).
  ModelConfig m = test::tiny_minimax();
  m.moe.experts_per_token = 4;
  compare(DType::bf16, 0.06, Fp4GemmMode::hopper, m);
  compare(DType::bf16, 0.5, Fp4GemmMode::hopper, test::tiny_minimax());
  // Its decode step captures and replays as a graph too (grouped expert GEMMs, no host reads).
  const Precision p{DType::nvfp4, DType::bf16, DType::bf16};
  auto gpu = make_cuda_step_backend(m, p, compare_options(Fp4GemmMode::hopper, 128, 256));
  check_decode_replay(*gpu, m, p);
}

TEST_CASE("CUDA step executor runs tiny_moe (top-2 of 4): every op, finite logits", "[cuda][exec]") {
  // Top-2: experts receive different row counts (some none), so the per-expert GEMMs run at
  // uneven M. The logits are compared loosely: a near-tie of router logits may route a token
  // differently on the two sides (the exact routing is checked op by op in exec_ops_test.cpp);
  // this bound only catches gross errors (rows lost or doubled, garbage, NaN).
  compare(DType::bf16, 0.5, Fp4GemmMode::hopper, test::tiny_moe());
}

TEST_CASE("CUDA step executor replays a MoE decode step as a CUDA graph (grouped expert GEMMs)", "[cuda][exec]") {
  // At <= 64 rows on the Hopper path each MoE GEMM is one grouped launch reading the expert
  // offsets on the device, so the step captures: the replay takes time, leaves the cache as it
  // was, and an eager re-run gives the first run's token. A 70-row prefill runs the per-expert
  // GEMMs (the offsets read on the host): no replay.
  const ModelConfig m = test::tiny_moe();
  const Precision p{DType::nvfp4, DType::bf16, DType::bf16};
  auto gpu = make_cuda_step_backend(m, p, compare_options(Fp4GemmMode::hopper, 128, 256));
  check_decode_replay(*gpu, m, p);
  StepBatch big;
  big.prefill = {{70, 0, true}};
  StepTokens tb;
  std::vector<std::int32_t> ids;
  for (int i = 0; i < 70; ++i) ids.push_back((i * 13 + 5) % 97);
  tb.prefill = {{2, ids}};
  (void)gpu->run(StepGraph(m, big, Deployment{}, p), tb, {});
  CHECK_FALSE(gpu->replay_last_step().has_value());
}

TEST_CASE("CUDA step executor matches the CPU reference, FP8 KV cache", "[cuda][exec]") {
  // E4M3 keeps 3 mantissa bits (relative 2^-4 per K and V element): attention outputs move by up
  // to ~6% per layer on top of the BF16 budget above; 15% of the largest logit.
  compare(DType::fp8, 0.15, Fp4GemmMode::hopper);
}

TEST_CASE("CUDA step executor's native NVFP4 path matches the W4A4 CPU reference (sm_100 / sm_103)", "[cuda][exec]") {
  // Both quantize every linear input to NVFP4 (the CPU reference from its FP32 activations
  // rounded to BF16, the GPU from its BF16 ones). The BF16 budget above (5%) holds, plus code
  // flips: the two inputs differ by about one BF16 ulp (2^-8 of a value, ~0.01 of an E2M1 unit
  // at 3 units), so ~1% of elements land on the other side of an E2M1 boundary and move by half a
  // gap (0.5-1 unit of the block scale, up to a third of the block's maximum); over 64-128-term
  // dot products that is a few percent per linear, ~8 linears deep: 25% of the largest logit,
  // still far below what a wrong scale layout, alpha or nibble order gives (O(1)).
  compare(DType::bf16, 0.25, Fp4GemmMode::native);
  // And a MoE block (top-4 of 4, so no routing flips): the experts' inputs quantized on both sides
  // (CpuReference's expert GEMMs take NVFP4 inputs too), the same budget.
  ModelConfig moe = test::tiny_moe();
  moe.moe.experts_per_token = 4;
  compare(DType::bf16, 0.25, Fp4GemmMode::native, moe);
}

TEST_CASE("CUDA step executor replays a decode step as a CUDA graph", "[cuda][exec]") {
  const ModelConfig m = tiny();
  const Precision p{DType::nvfp4, DType::bf16, DType::bf16};
  CudaStepOptions o;
  o.max_rows = 16;
  o.max_sampled = 2;
  o.kv_tokens = 128;
  auto gpu = make_cuda_step_backend(m, p, o);
  check_decode_replay(*gpu, m, p);
}

TEST_CASE("CUDA step executor with tensor parallel 2 over two GPUs matches the CPU reference", "[cuda][exec]") {
  // Rank r on cuda:r with its shard (tensor_parallel.hpp), NCCL all-reduces and the logits'
  // all-gather; against the one-rank CPU reference. The BF16 budget of the one-GPU test (5%)
  // holds: the row-parallel sums add two BF16-rounded partials instead of one FP32 sum, one more
  // rounding per all-reduce (2 x 2 layers x 2^-9).
  if (cuda_device_count() < 2) {
    WARN("SKIPPED: tensor parallel 2 needs 2 GPUs; " << cuda_device_count() << " visible");
    return;
  }
  ModelConfig m = tiny();
  m.vocab = 96;  // the vocabulary is split between the ranks
  tp2_compare(m, 0.05);
  // A MoE (top-4 of 4: no routing flips), each expert split between the ranks, the router whole:
  // the MoE block's roundings as in the one-GPU case (6%) plus its all-reduce's.
  ModelConfig moe = test::tiny_moe();
  moe.vocab = 96;
  moe.moe.experts_per_token = 4;
  tp2_compare(moe, 0.07);
  // MiniMax-M2's QK-norm under TP: each rank's FP32 sums of squares, all-reduced in FP32
  // (qk_norm_all_reduce), so no BF16 rounding more than one GPU's: the same 7%.
  ModelConfig mm = test::tiny_minimax();
  mm.vocab = 96;
  mm.moe.experts_per_token = 4;
  tp2_compare(mm, 0.07);
}
