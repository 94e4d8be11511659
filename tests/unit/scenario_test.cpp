// sim/: scenario loading, the spec's errors and exit codes, and the memory plan.

#include <catch2/catch.hpp>

#include "racksim/common/error.hpp"
#include "racksim/sim/scenario.hpp"
#include "test_support.hpp"

using namespace racksim;
using test::scenario_text;
using test::write_temp;

namespace {
const std::string kExample = std::string(RACKSIM_SOURCE_DIR) + "/examples/mlperf-llama2-70b-offline-gb300-nvl72.yaml";

ExitCode code_of(const std::string& path, const std::vector<std::string>& sets = {}) {
  try {
    (void)load_scenario(path, sets);
  } catch (const Error& e) {
    return e.code();
  }
  return ExitCode::ok;
}
}  // namespace

TEST_CASE("the headline example loads", "[sim][scenario]") {
  const Scenario s = load_scenario(kExample);
  CHECK(s.system.id == "gb300-nvl72");
  CHECK(s.model.id == "llama2-70b");
  CHECK(s.replicas == 72);  // auto: 72 GPUs / (TP1 x PP1)
  CHECK(s.precision.weights == DType::nvfp4);
  CHECK(s.serving.max_batch_size == 3072);
  CHECK(s.workload.output_tokens.mean == 273);
  // Memory: TP1 PP1 holds all 39,554,924,544 weight bytes (model_test); activations reserve
  // 2 x 4608 x (8192 + 57344) x 2 B + 3072 x 32000 x 4 B = 1,207,959,552 + 393,216,000.
  const MemoryPlan p = plan_memory(s);
  CHECK(p.weights_per_gpu == Approx(39'554'924'544.0).epsilon(1e-12));
  CHECK(p.activations_per_gpu == 1'207'959'552.0 + 393'216'000.0);
  CHECK(p.kv_bytes_per_gpu == Approx((288.0 * 1073741824 - 39'554'924'544.0 - 1'601'175'552.0) * 0.95));
  // KV per token per GPU: 163,840 B (FP8); capacity in whole 32-token blocks.
  CHECK(p.kv_tokens_per_replica == static_cast<std::int64_t>(p.kv_bytes_per_gpu / (163840.0 * 32)) * 32);
}

TEST_CASE("set overrides replace scenario keys by dotted path", "[sim][scenario]") {
  const Scenario s = load_scenario(kExample, {"serving.max_batch_size=1024", "deployment.replicas=10"});
  CHECK(s.serving.max_batch_size == 1024);
  CHECK(s.replicas == 10);
  CHECK_THROWS_WITH(load_scenario(kExample, {"serving.max_batch_sise=4"}),
                    Catch::StartsWith("--set serving.max_batch_sise=4: serving.max_batch_sise: unknown key (did you mean 'max_batch_size'?)"));
}

TEST_CASE("calibration: calibrated by default, datasheet on request, nothing else", "[sim][scenario]") {
  CHECK(load_scenario(kExample).calibrated);
  CHECK_FALSE(load_scenario(kExample, {"calibration=datasheet"}).calibrated);
  CHECK(load_scenario(kExample, {"calibration=calibrated"}).calibrated);
  CHECK_THROWS_WITH(load_scenario(kExample, {"calibration=seed"}),
                    Catch::Contains("calibration: 'seed' is not one of calibrated, datasheet"));
}

TEST_CASE("serving.all_reduce: auto by default (the engines' choice), nccl on request, nothing else", "[sim][scenario]") {
  CHECK(load_scenario(kExample).serving.all_reduce == AllReduceImpl::automatic);
  CHECK(cost_model_options(load_scenario(kExample)).all_reduce == AllReduceImpl::automatic);
  const Scenario n = load_scenario(kExample, {"serving.all_reduce=nccl", "calibration=datasheet"});
  CHECK(n.serving.all_reduce == AllReduceImpl::nccl);
  CHECK(cost_model_options(n).all_reduce == AllReduceImpl::nccl);
  CHECK_FALSE(cost_model_options(n).calibrated);
  CHECK_THROWS_WITH(load_scenario(kExample, {"serving.all_reduce=oneshot"}),
                    Catch::Contains("serving.all_reduce: 'oneshot' is not one of auto, nccl"));
}

TEST_CASE("precision.activation_quantize: fused by default, separate on request", "[sim][scenario]") {
  CHECK(load_scenario(kExample).precision.fused_quantize);
  CHECK_FALSE(load_scenario(kExample, {"precision.activation_quantize=separate"}).precision.fused_quantize);
  CHECK_THROWS_WITH(load_scenario(kExample, {"precision.activation_quantize=eager"}),
                    Catch::Contains("precision.activation_quantize: 'eager' is not one of fused, separate"));
}

TEST_CASE("fp8_block names both GEMM operands, and its quantize is never fused", "[sim][scenario]") {
  // Block-scaled FP8 GEMMs scale both operands (1 x 128 activations, 128 x 128 weights).
  const Scenario b = load_scenario(kExample, {"system=dgx-h100", "precision.weights=fp8_block", "precision.activations=fp8_block",
                                              "precision.kv_cache=fp8", "deployment.tensor_parallel=2"});
  CHECK(b.precision.weights == DType::fp8_block);
  CHECK(b.precision.activations == DType::fp8_block);
  CHECK_THROWS_WITH(load_scenario(kExample, {"precision.weights=fp8_block", "precision.activations=fp8"}),
                    Catch::EndsWith("precision.activations: 'fp8' must be fp8_block when the other of weights and activations is "
                                    "(block-scaled FP8 GEMMs scale both operands)"));
  CHECK_THROWS_WITH(load_scenario(kExample, {"precision.weights=fp8", "precision.activations=fp8_block"}),
                    Catch::EndsWith("precision.weights: 'fp8' must be fp8_block when the other of weights and activations is "
                                    "(block-scaled FP8 GEMMs scale both operands)"));
  // Its 1 x 128 quantize is a kernel of its own in the engines, inside the measured calls: an
  // explicit `fused` is refused rather than ignored; `separate` is what it does anyway.
  const std::vector<std::string> fp8b = {"precision.weights=fp8_block", "precision.activations=fp8_block"};
  auto with = [&](std::string extra) {
    auto v = fp8b;
    v.push_back(std::move(extra));
    return v;
  };
  CHECK_THROWS_WITH(load_scenario(kExample, with("precision.activation_quantize=fused")),
                    Catch::Contains("precision.activation_quantize: 'fused' cannot be fused with fp8_block activations"));
  CHECK_FALSE(load_scenario(kExample, with("precision.activation_quantize=separate")).precision.fused_quantize);
  CHECK(code_of(kExample, with("precision.activation_quantize=fused")) == ExitCode::bad_input);
  // Per-GPU slices must be whole 128 x 128 blocks: MiniMax-M2.5's expert FFN of 1,536 over TP8
  // (no EP) is 192 per GPU; with EP8 each GPU holds whole experts (1,536).
  auto minimax = [&](std::vector<std::string> extra) {
    std::vector<std::string> v = {"system=dgx-b200", "model=minimax-m2.5", "precision.kv_cache=fp8"};
    v.insert(v.end(), fp8b.begin(), fp8b.end());
    v.insert(v.end(), extra.begin(), extra.end());
    return v;
  };
  CHECK_THROWS_WITH(load_scenario(kExample, minimax({"deployment.tensor_parallel=8"})),
                    Catch::Contains("deployment.tensor_parallel: '8' splits minimax-m2.5's fp8_block weights into slices that are "
                                    "not whole 128 x 128 blocks (per GPU: FFN 192, q heads x head_dim 768, hidden 3072)"));
  CHECK(load_scenario(kExample, minimax({"deployment.tensor_parallel=8", "deployment.expert_parallel=8"})).deployment.expert_parallel == 8);
  CHECK(load_scenario(kExample, minimax({"deployment.tensor_parallel=4"})).deployment.tensor_parallel == 4);  // FFN 384
}

TEST_CASE("a misspelt key is an input error naming file and key", "[sim][scenario]") {
  const std::string path = write_temp("typo.yaml", scenario_text("dgx-b200", "nvfp4", "nvfp4", "fp8", 1, 1, "  kv_blok_tokens: 32\n"));
  CHECK(code_of(path) == ExitCode::bad_input);
  CHECK_THROWS_WITH(load_scenario(path), path + ": serving.kv_blok_tokens: unknown key (did you mean 'kv_block_tokens'?); "
                                                "allowed here: max_batch_size, max_num_tokens, chunked_prefill, mixed_batches, kv_block_tokens, "
                                                "kv_memory_fraction, capacity_policy, router, all_reduce, fixed_step_time");
}

TEST_CASE("an unknown dtype is an input error listing the allowed ones", "[sim][scenario]") {
  // The spec's own example message.
  const std::string path = write_temp("fp3.yaml", scenario_text("dgx-b200", "fp3", "nvfp4", "fp8", 1, 1));
  CHECK(code_of(path) == ExitCode::bad_input);
  CHECK_THROWS_WITH(load_scenario(path), path + ": precision.weights: 'fp3' is not one of bf16, fp16, fp8, fp8_block, nvfp4, mxfp4");
}

TEST_CASE("bf16 Llama-2-70B on one H100 cannot run", "[sim][scenario]") {
  // 137,953,296,384 B = 128.5 GiB of weights on one 80 GiB GPU (spec's example message).
  const std::string path = write_temp("h100.yaml", scenario_text("dgx-h100", "bf16", "bf16", "bf16", 1, 1));
  CHECK(code_of(path) == ExitCode::infeasible);
  CHECK_THROWS_WITH(load_scenario(path), "llama2-70b with bf16 weights needs 128.5 GiB per GPU at tensor_parallel=1; h100-sxm has 80 GiB");
  // At TP2 each GPU holds 64.2 GiB plus activations: it fits.
  CHECK(code_of(write_temp("h100tp2.yaml", scenario_text("dgx-h100", "bf16", "bf16", "bf16", 2, 1))) == ExitCode::ok);
}

TEST_CASE("other scenarios the loader refuses", "[sim][scenario]") {
  // Hopper has no FP4 tensor cores: NVFP4 GEMMs cannot run (FP4 weights with FP8 GEMMs can).
  CHECK(code_of(write_temp("a.yaml", scenario_text("dgx-h100", "nvfp4", "nvfp4", "fp8", 1, 1))) == ExitCode::infeasible);
  CHECK(code_of(write_temp("b.yaml", scenario_text("dgx-h100", "nvfp4", "fp8", "fp8", 1, 1))) == ExitCode::ok);
  // GEMM inputs narrower than the weights.
  CHECK(code_of(write_temp("c.yaml", scenario_text("dgx-b200", "bf16", "nvfp4", "fp8", 1, 1))) == ExitCode::bad_input);
  // TP beyond the 8-GPU NVLink domain; TP that does not divide the heads.
  CHECK(code_of(write_temp("d.yaml", scenario_text("dgx-b200", "nvfp4", "nvfp4", "fp8", 16, 1))) == ExitCode::bad_input);
  CHECK(code_of(write_temp("e.yaml", scenario_text("gb300-nvl72", "nvfp4", "nvfp4", "fp8", 3, 1))) == ExitCode::bad_input);
  // More replicas than GPUs.
  CHECK(code_of(write_temp("f.yaml", scenario_text("dgx-b200", "nvfp4", "nvfp4", "fp8", 1, 1)), {"deployment.replicas=9"}) ==
        ExitCode::infeasible);
  // Missing files.
  CHECK(code_of("/nonexistent/scenario.yaml") == ExitCode::bad_input);
  CHECK(code_of(write_temp("g.yaml", scenario_text("./no-such-system.yaml", "nvfp4", "nvfp4", "fp8", 1, 1))) == ExitCode::bad_input);
  // YAML syntax errors carry line and column.
  CHECK_THROWS_WITH(load_scenario(write_temp("h.yaml", "name: [unclosed\n")), Catch::Contains(":2:1: YAML syntax error"));
}

TEST_CASE("pipeline parallelism splits the weights", "[sim][scenario]") {
  // H100 v5.0 deployment: FP8 weights, TP1 x PP2: 40 layers per GPU
  // (40 x (855,638,016 linear x 1 B + 16,384 norm x 2 B)) plus the larger of embedding and
  // lm_head (262,144,000 x 2 B each), plus the final norm counted per layer share.
  const Scenario s = load_scenario(std::string(RACKSIM_SOURCE_DIR) + "/examples/mlperf-llama2-70b-offline-dgx-h100.yaml");
  CHECK(s.replicas == 4);
  const MemoryPlan p = plan_memory(s);
  const double norms_per_layer = 1'318'912.0 / 80 * 2;
  CHECK(p.weights_per_gpu == Approx(40 * (855'638'016.0 + norms_per_layer) + 524'288'000.0));
}

TEST_CASE("a relative model path is found beside the scenario file", "[sim][scenario]") {
  // examples/exec-tiny-llama-cpu.yaml names "models/tiny-llama.yaml": found from any working
  // directory because it is looked up beside the scenario first.
  const std::string dir = std::filesystem::path(write_temp("probe.txt", "")).parent_path().string() + "/beside";
  std::filesystem::create_directories(dir + "/models");
  std::filesystem::copy_file(RACKSIM_SOURCE_DIR "/examples/models/tiny-llama.yaml", dir + "/models/tiny-llama.yaml",
                             std::filesystem::copy_options::overwrite_existing);
  std::string text = scenario_text("dgx-h100", "nvfp4", "bf16", "bf16", 1, 1);
  text.replace(text.find("llama2-70b"), 10, "models/tiny-llama.yaml");
  std::ofstream(dir + "/s.yaml") << text;
  const Scenario s = load_scenario(dir + "/s.yaml");
  CHECK(s.model.id == "tiny-llama");
  CHECK(s.model.hidden == 256);
  // A path that exists nowhere is still an input error naming it.
  text.replace(text.find("models/tiny-llama.yaml"), 22, "models/none.yaml");
  std::ofstream(dir + "/t.yaml") << text;
  CHECK_THROWS_WITH(load_scenario(dir + "/t.yaml"), Catch::Contains("'models/none.yaml': model file not found"));
}
