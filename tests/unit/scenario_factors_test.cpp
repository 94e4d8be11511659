// apps/scenario_factors.hpp: which factor families a scenario's prediction names, and where each
// comes from (the list `simulate --json` and `validate` print).

#include <algorithm>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "scenario_factors.hpp"

using namespace racksim;

namespace {

const std::string kB200 = std::string(RACKSIM_SOURCE_DIR) + "/examples/mlperf-llama2-70b-offline-dgx-b200.yaml";

const FactorSource* factor(const std::vector<FactorSource>& v, const std::string& name) {
  auto it = std::find_if(v.begin(), v.end(), [&](const FactorSource& f) { return f.factor == name; });
  return it == v.end() ? nullptr : &*it;
}

}  // namespace

TEST_CASE("the factor summary names the one-shot all-reduce seed exactly when the engines may use it", "[cli][factors]") {
  // TP8 on 8 B200s, serving.all_reduce auto (the default): the 8-rank all-reduces may run as the
  // engines' one-shot kernel (2..8 even ranks inside the NVLink domain), whose figures are a seed
  // carried from H100; NCCL's all_reduce x8 curve is b200's own fit.
  const Scenario tp8 = load_scenario(kB200, {"deployment.tensor_parallel=8"});
  const auto automatic = cli::calibration_sources(tp8);
  REQUIRE(factor(automatic, "all_reduce x8") != nullptr);
  CHECK(factor(automatic, "all_reduce x8")->source == "own");
  REQUIRE(factor(automatic, "one_shot all_reduce") != nullptr);
  CHECK(factor(automatic, "one_shot all_reduce")->source == "seed");
  // serving.all_reduce: nccl: every all-reduce is NCCL's, so the one-shot seed is not named.
  const auto nccl = cli::calibration_sources(load_scenario(kB200, {"deployment.tensor_parallel=8", "serving.all_reduce=nccl"}));
  CHECK(factor(nccl, "all_reduce x8") != nullptr);
  CHECK(factor(nccl, "one_shot all_reduce") == nullptr);
  // TP1 has no all-reduce at all.
  const auto tp1 = cli::calibration_sources(load_scenario(kB200, {"deployment.tensor_parallel=1"}));
  CHECK(factor(tp1, "one_shot all_reduce") == nullptr);
  CHECK(factor(tp1, "all_reduce x8") == nullptr);
}

TEST_CASE("block-scaled FP8 names its own GEMM fit", "[cli][factors]") {
  // Qwen3-235B-A22B in fp8_block on 8 H100s, TP4 EP4: the GEMM formats are fp8_block (the
  // quantized linears) and bf16 (router, lm_head); both fitted on h100-sxm itself.
  const Scenario s = load_scenario(kB200, {"system=dgx-h100", "model=qwen3-235b-a22b", "precision.weights=fp8_block",
                                           "precision.activations=fp8_block", "precision.kv_cache=bf16",
                                           "deployment.tensor_parallel=4", "deployment.expert_parallel=4"});
  const auto v = cli::calibration_sources(s);
  REQUIRE(factor(v, "gemm fp8_block") != nullptr);
  CHECK(factor(v, "gemm fp8_block")->source == "own");
  CHECK(factor(v, "gemm fp8_block")->note == "held-out median 8.8% on h100-sxm fp8_block");
  REQUIRE(factor(v, "gemm bf16") != nullptr);
  CHECK(factor(v, "gemm fp8") == nullptr);
}
