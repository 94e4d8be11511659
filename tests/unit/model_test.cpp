// workloads/: the model catalog and its byte counts.

#include <regex>

#include <catch2/catch.hpp>

#include "racksim/common/error.hpp"
#include "racksim/workloads/model_catalog.hpp"

using namespace racksim;

TEST_CASE("Llama-2-70B parameters, by hand", "[workloads][model]") {
  // hardware.md "Model facts": 80 layers, hidden 8192, 64 q heads, 8 kv heads, head_dim 128,
  // FFN 28672, vocab 32000, untied embeddings.
  //   embedding = lm_head = 32000 * 8192                      =    262,144,000 each
  //   attention/layer = 2*8192*8192 (q,o) + 2*8192*1024 (k,v) =    150,994,944
  //   mlp/layer       = 3 * 8192 * 28672                      =    704,643,072
  //   norms = 80 * 2 * 8192 + 8192                            =      1,318,912
  //   total = 2*262,144,000 + 80*(150,994,944 + 704,643,072) + 1,318,912 = 68,976,648,192
  const ModelConfig m = find_model("llama2-70b");
  const ParamCounts p = count_params(m);
  CHECK(p.embedding == 262'144'000);
  CHECK(p.lm_head == 262'144'000);
  CHECK(p.attention == 80LL * 150'994'944);
  CHECK(p.mlp == 80LL * 704'643'072);
  CHECK(p.norms == 1'318'912);
  CHECK(p.total() == 68'976'648'192LL);
  // GEMM weights touched per token: linear 68,451,041,280 + lm_head 262,144,000.
  CHECK(gemm_params_per_token(m) == 68'713'185'280LL);
}

TEST_CASE("Llama-2-70B weight and KV bytes per precision, by hand", "[workloads][model]") {
  // Linear weights (68,451,041,280) take the format; the other 525,606,912 parameters
  // (embedding, lm_head, norms) stay BF16 = 1,051,213,824 bytes.
  const ModelConfig m = find_model("llama2-70b");
  CHECK(weight_bytes(m, DType::bf16) == 137'953'296'384.0);                 // 2 bytes each
  CHECK(weight_bytes(m, DType::fp8) == 68'451'041'280.0 + 1'051'213'824.0);  // 69,502,255,104
  CHECK(weight_bytes(m, DType::nvfp4) == 38'503'710'720.0 + 1'051'213'824.0);  // x 0.5625 = 39,554,924,544
  CHECK(weight_bytes(m, DType::mxfp4) == 36'364'615'680.0 + 1'051'213'824.0);  // x 0.53125
  // KV per token: 2 (K,V) x 80 layers x 8 heads x 128 = 163,840 values (hardware.md: 320 KiB BF16, 160 KiB FP8).
  CHECK(kv_bytes_per_token(m, DType::bf16) == 327'680.0);
  CHECK(kv_bytes_per_token(m, DType::fp8) == 163'840.0);
  CHECK(kv_bytes_per_token(m, DType::nvfp4) == 92'160.0);  // 163,840 x 0.5625
}

TEST_CASE("catalog models match their published parameter counts", "[workloads][model]") {
  // Hugging Face model cards / safetensors metadata of each checkpoint.
  CHECK(count_params(find_model("llama2-7b")).total() == 6'738'415'616LL);
  CHECK(count_params(find_model("llama3.1-8b")).total() == 8'030'261'248LL);
  CHECK(count_params(find_model("llama3.1-70b")).total() == 70'553'706'496LL);
  CHECK(count_params(find_model("llama3.1-405b")).total() == 405'853'388'800LL);
  CHECK(count_params(find_model("mixtral-8x7b")).total() == 46'702'792'704LL);
  // Qwen3-32B's model card: 32.8 B parameters, 31.2 B without the embeddings. By hand: per layer
  // attention 2 x 5120 x 64 x 128 + 2 x 5120 x 8 x 128 = 94,371,840, MLP 3 x 5120 x 25600 =
  // 393,216,000, norms 2 x 5120 + q_norm and k_norm 2 x 128; x 64 layers; embedding and lm_head
  // 151,936 x 5120 each; the final norm 5120.
  const ParamCounts q = count_params(find_model("qwen3-32b"));
  CHECK(q.total() == 64LL * (94'371'840 + 393'216'000 + 2 * 5120 + 2 * 128) + 2LL * 151'936 * 5120 + 5120);
  CHECK(q.total() == Approx(32.8e9).epsilon(0.002));
  CHECK(q.total() - q.embedding - q.lm_head == Approx(31.2e9).epsilon(0.002));
  // Qwen3-235B-A22B: 235,093,634,560 (keras-hub's preset, asserted equal to the Hugging Face
  // model's num_parameters). By hand per layer: attention 2 x 4096 x 64 x 128 + 2 x 4096 x 4 x 128
  // = 71,303,168; 128 experts x 3 x 4096 x 1536 = 2,415,919,104; router 4096 x 128; norms
  // 2 x 4096 + 2 x 128. Model card: 22 B activated per token (8 of 128 experts).
  const ModelConfig qm = find_model("qwen3-235b-a22b");
  CHECK(count_params(qm).total() == 94LL * (71'303'168 + 2'415'919'104 + 4096 * 128 + 2 * 4096 + 2 * 128) + 2LL * 151'936 * 4096 + 4096);
  CHECK(count_params(qm).total() == 235'093'634'560LL);
  // Per token: 94 x (attention + 8 experts x 3 x 4096 x 1536 + router) + lm_head = 21,567,635,456;
  // with the embedding row table, 22.19 B: the card's "22B activated".
  CHECK(gemm_params_per_token(qm) == 94LL * (71'303'168 + 8LL * 3 * 4096 * 1536 + 4096 * 128) + 151'936LL * 4096);
  CHECK(gemm_params_per_token(qm) + count_params(qm).embedding == Approx(22e9).epsilon(0.01));
  // MiniMax-M2.5, by hand per layer: attention 2 x 3072 x 48 x 128 + 2 x 3072 x 8 x 128 =
  // 44,040,192; 256 experts x 3 x 3072 x 1536 = 3,623,878,656; router 3072 x 256; norms 2 x 3072
  // plus its per-layer q_norm and k_norm, one weight per q and k element: (48 + 8) x 128 = 7,168;
  // and its routing bias (e_score_correction_bias), one per expert: 256. 228.7 B in all, 10.4 B per token with the lm_head: the docs' "230 billion total parameters
  // with 10 billion active".
  const ModelConfig mm = find_model("minimax-m2.5");
  CHECK(mm.qk_norm_per_layer());
  CHECK(mm.rope_dim() == 64);
  CHECK(count_params(mm).total() == 62LL * (44'040'192 + 3'623'878'656 + 3072 * 256 + 2 * 3072 + 56 * 128 + 256) + 2LL * 200'064 * 3072 + 3072);
  CHECK(count_params(mm).routing_bias == 62 * 256);
  CHECK(mm.moe_sigmoid_routing());
  CHECK(count_params(find_model("mixtral-8x7b")).routing_bias == 0);
  CHECK(count_params(mm).total() == Approx(230e9).epsilon(0.01));
  CHECK(gemm_params_per_token(mm) == 62LL * (44'040'192 + 8LL * 3 * 3072 * 1536 + 3072 * 256) + 200'064LL * 3072);
  CHECK(gemm_params_per_token(mm) == Approx(10e9).epsilon(0.05));
  // Mixtral's router (32 layers x 4096 x 8) stays BF16; 2 of 8 experts run per token.
  const ModelConfig mx = find_model("mixtral-8x7b");
  CHECK(count_params(mx).router == 32LL * 4096 * 8);
  CHECK(gemm_params_per_token(mx) == count_params(mx).attention + count_params(mx).mlp / 4 + 32LL * 4096 * 8 + 32000LL * 4096);
}

TEST_CASE("unknown models and malformed model files are input errors", "[workloads][model]") {
  CHECK_THROWS_WITH(find_model("llama9", "s.yaml", "model"),
                    Catch::StartsWith("s.yaml: model: 'llama9' is not a catalog model; allowed: llama2-70b, llama2-7b"));
  CHECK_THROWS_WITH(find_model("nope/m.yaml", "s.yaml", "model"), "s.yaml: model: 'nope/m.yaml': model file not found");
  const std::string bad =
      "id: x\nname: x\nsource: x\narchitecture: llama\nlayers: 2\nhidden: 64\nheads: 4\nkv_heads: 3\nhead_dim: 16\n"
      "ffn: 128\nvocab: 100\ntied_embeddings: false\nrope_theta: 10000\nmax_position: 128\nnorm_eps: 1e-5\n";
  CHECK_THROWS_WITH(parse_model_yaml(bad, "m.yaml"), "m.yaml: kv_heads: '3' must divide heads (4)");
  CHECK_THROWS_WITH(parse_model_yaml(bad + "colour: red\n", "m.yaml"), Catch::StartsWith("m.yaml: colour: unknown key"));
  const std::string dense = "id: x\nname: x\nsource: x\narchitecture: ARCH\nlayers: 2\nhidden: 64\nheads: 4\nkv_heads: 2\nhead_dim: 16\n"
                            "ffn: 128\nvocab: 100\ntied_embeddings: false\nrope_theta: 10000\nmax_position: 128\nnorm_eps: 1e-5\n";
  auto with_arch = [&](const std::string& arch) { return std::regex_replace(dense, std::regex("ARCH"), arch); };
  CHECK_THROWS_WITH(parse_model_yaml(with_arch("qwen3_moe"), "m.yaml"),
                    "m.yaml: architecture: 'qwen3_moe' needs a moe: section (mixtral, qwen3_moe and minimax_m2 need one; llama and qwen3 have none)");
  CHECK_THROWS_WITH(parse_model_yaml(with_arch("qwen3") + "moe:\n  experts: 4\n  experts_per_token: 2\n", "m.yaml"),
                    "m.yaml: architecture: 'qwen3' cannot have a moe: section (mixtral, qwen3_moe and minimax_m2 need one; llama and qwen3 have none)");
  CHECK(parse_model_yaml(with_arch("qwen3_moe") + "moe:\n  experts: 4\n  experts_per_token: 2\n", "m.yaml").qk_norm());
}
