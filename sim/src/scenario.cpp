#include "racksim/sim/scenario.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>

#include <fmt/format.h>

#include "racksim/common/error.hpp"
#include "racksim/common/units.hpp"
#include "racksim/common/yaml_reader.hpp"
#include "racksim/hwmodels/energy_model.hpp"
#include "racksim/hwmodels/gpu_calibration.hpp"
#include "racksim/workloads/model_catalog.hpp"

namespace racksim {
namespace {

/// A relative model or system path is looked up beside the scenario file first, then from the
/// working directory (the spec's "a path to a model YAML"); catalog ids pass through unchanged.
std::string beside_scenario(const std::string& scenario, const std::string& value) {
  const bool is_path = value.find('/') != std::string::npos || value.ends_with(".yaml");
  if (!is_path || std::filesystem::path(value).is_absolute()) return value;
  const auto candidate = std::filesystem::path(scenario).parent_path() / value;
  return std::filesystem::is_regular_file(candidate) ? candidate.string() : value;
}

constexpr std::array<std::string_view, 6> kWeightTypes = {"bf16", "fp16", "fp8", "fp8_block", "nvfp4", "mxfp4"};
constexpr std::array<std::string_view, 4> kActivationTypes = {"bf16", "fp8", "fp8_block", "nvfp4"};
constexpr std::array<std::string_view, 3> kKvTypes = {"bf16", "fp8", "nvfp4"};
constexpr std::array<std::string_view, 5> kScenarios = {"offline", "server", "interactive", "trace", "concurrency"};
constexpr std::array<std::string_view, 2> kCalibration = {"calibrated", "datasheet"};
constexpr std::array<std::string_view, 4> kDistributions = {"fixed", "uniform", "lognormal", "dataset"};
constexpr std::array<std::string_view, 1> kDatasets = {"mlperf-llama2-70b"};

constexpr std::int64_t kMaxCount = std::int64_t{1} << 40;

DType read_dtype(const YamlMap& y, std::string_view key, std::span<const std::string_view> allowed) {
  return *parse_dtype(y.choice(key, allowed));
}

LengthDistribution read_lengths(const YamlMap& parent, std::string_view key, bool output) {
  YamlMap y = parent.map(key);
  LengthDistribution d;
  d.kind = y.choice("distribution", kDistributions);
  if (d.kind == "fixed") {
    d.value = y.integer("value", 1, 1 << 24);
  } else if (d.kind == "uniform") {
    d.min = y.integer("min", 1, 1 << 24);
    d.max = y.integer("max", d.min, 1 << 24);
  } else if (d.kind == "lognormal") {
    d.mean = y.number("mean", 1, 1 << 24);
    d.max = y.integer("max", 1, 1 << 24);
    if (d.mean > static_cast<double>(d.max)) y.fail("mean", fmt::format("must not exceed max ({})", d.max));
  } else {
    d.name = y.choice("name", kDatasets);
    // MLPerf publishes only the generated-length mean, so output lengths rescale the data
    // set's reference-answer shape to it (spec).
    if (output && y.has("mean")) d.mean = y.number("mean", 1, 1 << 24);
  }
  y.finish();
  return d;
}

}  // namespace

Scenario load_scenario(const std::string& path, const std::vector<std::string>& overrides) {
  if (!std::filesystem::is_regular_file(path)) throw InputError(fmt::format("{}: scenario file not found", path));
  YAML::Node root = load_yaml_file(path);
  auto source = std::make_shared<YamlSource>();
  source->file = path;
  // `--set system.KEY=...` on a scenario whose system is a plain id: make it {id: ...} first.
  for (const auto& o : overrides)
    if (o.starts_with("system.") && root["system"] && root["system"].IsScalar()) {
      const std::string id = root["system"].Scalar();
      root["system"] = YAML::Node(YAML::NodeType::Map);
      root["system"]["id"] = id;
    }
  for (const auto& o : overrides) apply_override(root, o, *source);
  YamlMap y = YamlMap::root(root, source);

  Scenario s;
  s.file = path;
  s.name = y.has("name") ? y.string("name") : std::filesystem::path(path).stem().string();
  if (y.has("calibration")) s.calibrated = y.choice("calibration", kCalibration) == "calibrated";
  // system: an id or path, or a mapping {id: ..., gpu_power_limit_w: ...} so that
  // `--set system.gpu_power_limit_w=500` caps every GPU of the system.
  if (y.has("system") && y.node("system").IsMap()) {
    YamlMap sys = y.map("system");
    s.system = find_system(beside_scenario(path, sys.string("id")), sys.origin("id"), "system.id");
    if (sys.has("gpu_power_limit_w")) {
      // Above the idle the simulation runs with (the power fit's where calibrated, energy_model_for):
      // a cap at or below it leaves no power for work, and the energy model would not apply it.
      const double idle = energy_model_for(s.system.gpu, s.calibrated ? GpuCalibration(s.system.gpu) : GpuCalibration()).idle_w;
      const double limit = s.system.gpu.power_limit.value;
      s.gpu_power_limit_w = sys.number("gpu_power_limit_w", -1e300, 1e300);
      if (s.gpu_power_limit_w < idle + 1 || s.gpu_power_limit_w > limit)
        sys.fail("gpu_power_limit_w",
                 fmt::format("is out of range; allowed {:g} (1 W above the {:g} W idle the energy model uses) to {:g}", idle + 1, idle, limit));
    }
    sys.finish();
  } else {
    s.system = find_system(beside_scenario(path, y.string("system")), y.origin("system"), "system");
  }
  s.model = find_model(beside_scenario(path, y.string("model")), y.origin("model"), "model");

  YamlMap p = y.map("precision");
  s.precision.weights = read_dtype(p, "weights", kWeightTypes);
  s.precision.activations = read_dtype(p, "activations", kActivationTypes);
  s.precision.kv_cache = read_dtype(p, "kv_cache", kKvTypes);
  static constexpr std::array<std::string_view, 2> kQuantize = {"fused", "separate"};
  if (p.has("activation_quantize")) s.precision.fused_quantize = p.choice("activation_quantize", kQuantize) == "fused";
  p.finish();
  if (element_bits(s.precision.activations) < element_bits(s.precision.weights))
    p.fail("activations", fmt::format("is narrower than the weights ({}); GEMMs run in the activation format, "
                                      "so it must be at least as wide", to_string(s.precision.weights)));
  // Block-scaled FP8 GEMMs take both operands block-scaled (1 x 128 activations, 128 x 128
  // weights): the two keys name it together or not at all.
  if ((s.precision.weights == DType::fp8_block) != (s.precision.activations == DType::fp8_block))
    p.fail(s.precision.weights == DType::fp8_block ? "activations" : "weights",
           "must be fp8_block when the other of weights and activations is (block-scaled FP8 GEMMs scale both operands)");
  if (s.precision.activations == DType::fp8_block && p.has("activation_quantize") && s.precision.fused_quantize)
    p.fail("activation_quantize", "cannot be fused with fp8_block activations: the engines quantize each 1 x 128 group in "
                                  "a kernel of its own, which the fp8_block GEMM fits include; use separate or leave it out");

  YamlMap d = y.map("deployment");
  s.deployment.tensor_parallel = static_cast<int>(d.integer("tensor_parallel", 1, 1024));
  s.deployment.pipeline_parallel = static_cast<int>(d.integer("pipeline_parallel", 1, 1024));
  s.deployment.expert_parallel = d.has("expert_parallel") ? static_cast<int>(d.integer("expert_parallel", 1, 1024)) : 1;
  const std::string replicas_text = d.has("replicas") ? d.string("replicas") : "auto";
  d.finish();
  const auto& m = s.model;
  const int tp = s.deployment.tensor_parallel, pp = s.deployment.pipeline_parallel, ep = s.deployment.expert_parallel;
  if (m.heads % tp != 0 || m.ffn % tp != 0)
    d.fail("tensor_parallel", fmt::format("must divide {}'s {} attention heads and FFN width {}", m.id, m.heads, m.ffn));
  if (pp > m.layers) d.fail("pipeline_parallel", fmt::format("exceeds {}'s {} layers", m.id, m.layers));
  if (ep > 1 && !m.is_moe()) d.fail("expert_parallel", fmt::format("must be 1: {} is not a mixture-of-experts model", m.id));
  if (m.is_moe() && (tp % ep != 0 || m.moe.experts % ep != 0))
    d.fail("expert_parallel", fmt::format("must divide tensor_parallel ({}) and the {} experts", tp, m.moe.experts));
  // Block-scaled FP8 splits weights into 128 x 128 blocks, so every per-GPU slice of a linear
  // must be whole blocks (vLLM refuses the layout otherwise: "not divisible by weight
  // quantization block_n = 128"): the FFN (per expert: over moe_tp = tp / ep) and the q heads.
  if (s.precision.weights == DType::fp8_block) {
    const int ffn_gpu = m.ffn / (m.is_moe() ? tp / ep : tp), q_gpu = m.heads / tp * m.head_dim;
    if (ffn_gpu % 128 != 0 || q_gpu % 128 != 0 || m.hidden % 128 != 0)
      d.fail("tensor_parallel", fmt::format("splits {}'s fp8_block weights into slices that are not whole 128 x 128 blocks "
                                            "(per GPU: FFN {}, q heads x head_dim {}, hidden {})",
                                            m.id, ffn_gpu, q_gpu, m.hidden));
  }
  const int per_replica = tp * pp;
  if (tp > s.system.domain_size())
    d.fail("tensor_parallel", fmt::format("exceeds the NVLink domain of {} ({} GPUs); tensor parallelism stays inside one domain",
                                          s.system.id, s.system.domain_size()));
  if (per_replica > s.system.gpus())
    throw InfeasibleError(fmt::format("{}: one replica needs {} GPUs (tensor_parallel {} x pipeline_parallel {}); {} has {}",
                                      path, per_replica, tp, pp, s.system.id, s.system.gpus()));
  const int fit = s.system.gpus() / per_replica;
  if (replicas_text == "auto") {
    s.replicas = fit;
  } else {
    auto r = parse_quantity(replicas_text, Dimension::count);
    if (!r || *r < 1 || *r != std::floor(*r)) d.fail("replicas", "is not 'auto' or a whole number >= 1");
    s.replicas = static_cast<int>(*r);
    if (s.replicas > fit)
      throw InfeasibleError(fmt::format("{}: {} replicas of {} GPUs need {} GPUs; {} has {}", path, s.replicas, per_replica,
                                        s.replicas * per_replica, s.system.id, s.system.gpus()));
  }

  YamlMap sv = y.map("serving");
  s.serving.max_batch_size = sv.integer("max_batch_size", 1, 1 << 20);
  if (s.serving.max_batch_size < pp)
    sv.fail("max_batch_size", fmt::format("is below deployment.pipeline_parallel ({}): the sequences in flight are shared by the "
                                          "{} pipeline micro-batches, each needs at least one", pp, pp));
  s.serving.max_num_tokens = sv.integer("max_num_tokens", 1, 1 << 24);
  s.serving.chunked_prefill = sv.has("chunked_prefill") ? sv.boolean("chunked_prefill") : true;
  s.serving.mixed_batches = sv.has("mixed_batches") ? sv.boolean("mixed_batches") : true;
  s.serving.kv_block_tokens = sv.has("kv_block_tokens") ? sv.integer("kv_block_tokens", 1, 1 << 16) : 32;
  s.serving.kv_memory_fraction = sv.has("kv_memory_fraction") ? sv.number("kv_memory_fraction", 1e-6, 1.0) : 0.9;
  static constexpr std::array<std::string_view, 2> kPolicies = {"guaranteed_no_evict", "max_utilization"};
  if (sv.has("capacity_policy")) s.serving.capacity_policy = sv.choice("capacity_policy", kPolicies);
  static constexpr std::array<std::string_view, 3> kRouters = {"input_balanced", "least_loaded", "round_robin"};
  if (sv.has("router")) s.serving.router = sv.choice("router", kRouters);
  static constexpr std::array<std::string_view, 2> kAllReduce = {"auto", "nccl"};
  if (sv.has("all_reduce"))
    s.serving.all_reduce = sv.choice("all_reduce", kAllReduce) == "nccl" ? AllReduceImpl::nccl : AllReduceImpl::automatic;
  if (sv.has("fixed_step_time")) {
    s.serving.fixed_step_time_s = sv.quantity("fixed_step_time", Dimension::seconds);
    if (s.serving.fixed_step_time_s <= 0 || s.serving.fixed_step_time_s > 1e4)
      sv.fail("fixed_step_time", "must be above 0 and at most 10000 s");
  }
  sv.finish();

  YamlMap w = y.map("workload");
  auto& wl = s.workload;
  wl.scenario = w.choice("scenario", kScenarios);
  if (wl.scenario == "trace") {
    wl.trace = w.string("trace");
    // Relative trace paths are relative to the scenario file.
    std::filesystem::path tp_path(wl.trace);
    if (tp_path.is_relative()) tp_path = std::filesystem::path(path).parent_path() / tp_path;
    if (!std::filesystem::is_regular_file(tp_path))
      w.fail("trace", fmt::format("is not a file (looked for {})", tp_path.string()));
    wl.trace = tp_path.string();
    // Optional: replay only the first N rows (0 = all; more than the trace holds fails when it is read).
    if (w.has("requests")) wl.requests = w.integer("requests", 1, kMaxCount);
  } else {
    wl.requests = w.integer("requests", 1, kMaxCount);
    wl.input_tokens = read_lengths(w, "input_tokens", false);
    wl.output_tokens = read_lengths(w, "output_tokens", true);
  }
  if (wl.scenario == "server" || wl.scenario == "interactive") wl.qps = w.number("qps", 1e-9, 1e12);
  // Closed loop: this many clients, each sending its next request when its last one finished
  // (aiperf / genai-perf / vLLM's benchmark_serving --max-concurrency).
  if (wl.scenario == "concurrency") wl.concurrency = w.integer("concurrency", 1, kMaxCount);
  // A key another scenario reads is named as such, not as an unknown key.
  if (wl.scenario != "server" && wl.scenario != "interactive" && w.has("qps"))
    w.fail_plain("qps", fmt::format("is read with scenario server or interactive, not {}", wl.scenario));
  if (wl.scenario != "concurrency" && w.has("concurrency"))
    w.fail_plain("concurrency", fmt::format("is read with scenario concurrency, not {}", wl.scenario));
  // MLPerf latency limits (mlperf.md): Server 2,000 / 200 ms, Interactive 450 / 40 ms;
  // Offline and trace have none unless given.
  if (wl.scenario == "server") {
    wl.ttft_p99_ms = 2000;
    wl.tpot_p99_ms = 200;
  } else if (wl.scenario == "interactive") {
    wl.ttft_p99_ms = 450;
    wl.tpot_p99_ms = 40;
  }
  if (auto lim = w.optional_map("latency_limits")) {
    if (lim->has("ttft_p99_ms")) wl.ttft_p99_ms = lim->number("ttft_p99_ms", 0, 1e9);
    if (lim->has("tpot_p99_ms")) wl.tpot_p99_ms = lim->number("tpot_p99_ms", 0, 1e9);
    lim->finish();
  }
  w.finish();

  if (s.gpu_power_limit_w <= 0) s.gpu_power_limit_w = s.system.gpu.power_limit.value;
  s.seed = y.has("seed") ? static_cast<std::uint64_t>(y.integer("seed", 0, std::int64_t{1} << 62)) : 1;
  y.finish();

  // The GEMM format needs tensor cores for it (Hopper has none for FP4: FP4 weights there run
  // as W4A16/W4A8, dequantized in registers; executor.md).
  const GpuSpec& g = s.system.gpu;
  if (!g.peak(s.precision.activations)) {
    std::string have;
    for (const auto& [t, f] : g.dense_peak) have += (have.empty() ? "" : ", ") + std::string(to_string(t));
    throw InfeasibleError(fmt::format("{}: precision.activations: {} has no {} tensor cores (it has {}); "
                                      "run the GEMMs in fp8 or bf16 (FP4 weights are dequantized in registers)",
                                      y.origin("precision"), g.id, to_string(s.precision.activations), have));
  }
  (void)plan_memory(s);
  return s;
}

MemoryPlan plan_memory(const Scenario& s) {
  const auto& m = s.model;
  const auto& dep = s.deployment;
  MemoryPlan plan;
  plan.hbm_per_gpu = s.system.gpu.hbm_capacity.value;
  // Weights per GPU: every linear layer and the lm_head/embedding split over tensor_parallel;
  // the pipeline stage with the most layers also holds the embedding or the lm_head.
  const ParamCounts pc = count_params(m);
  const int tp = dep.tensor_parallel, pp = dep.pipeline_parallel;
  const int first_stage_layers = layers_per_stage(m.layers, pp).front();
  // q and o split over tp; k and v too, except that with tp > kv_heads each GPU keeps one
  // whole (replicated) KV head, as the step graph does.
  const int kv_heads_gpu = std::max(1, m.kv_heads / tp);
  const double h = m.hidden, hd = m.head_dim;
  const double layer_linear_gpu = 2.0 * h * m.heads * hd / tp + 2.0 * h * kv_heads_gpu * hd +
                                  static_cast<double>(pc.mlp) / m.layers / tp;
  const double layer_rest = static_cast<double>(pc.router + pc.norms) / m.layers;
  const double per_layer = weight_storage_bytes(s.precision.weights, layer_linear_gpu) + storage_bytes(DType::bf16, layer_rest);
  const double table = storage_bytes(DType::bf16, static_cast<double>(pc.embedding)) / tp;
  const double head = storage_bytes(DType::bf16, static_cast<double>(pc.lm_head)) / tp;
  plan.weights_per_gpu = first_stage_layers * per_layer + (pp == 1 ? table + head : std::max(table, head));
  // Activation and workspace reserve: BF16 hidden states and the widest intermediate (gate_up)
  // for max_num_tokens tokens, double-buffered, plus FP32 logits of max_batch_size sequences.
  const double tokens = static_cast<double>(s.serving.max_num_tokens);
  const double widest = std::max<double>(m.hidden, 2.0 * m.ffn / tp);
  plan.activations_per_gpu = 2.0 * storage_bytes(DType::bf16, tokens * (m.hidden + widest)) +
                             storage_bytes(DType::fp32, static_cast<double>(s.serving.max_batch_size) * m.vocab / tp);
  const double needed = plan.weights_per_gpu + plan.activations_per_gpu;
  const std::string where = fmt::format("tensor_parallel={}{}", tp, pp > 1 ? fmt::format(", pipeline_parallel={}", pp) : "");
  if (plan.weights_per_gpu > plan.hbm_per_gpu)
    throw InfeasibleError(fmt::format("{} with {} weights needs {} per GPU at {}; {} has {}", m.id, to_string(s.precision.weights),
                                      format_gib(plan.weights_per_gpu), where, s.system.gpu.id, format_gib(plan.hbm_per_gpu)));
  if (needed > plan.hbm_per_gpu)
    throw InfeasibleError(fmt::format("{} with {} weights needs {} of weights and {} of activations per GPU at {}; {} has {}",
                                      m.id, to_string(s.precision.weights), format_gib(plan.weights_per_gpu),
                                      format_gib(plan.activations_per_gpu), where, s.system.gpu.id, format_gib(plan.hbm_per_gpu)));
  plan.kv_bytes_per_gpu = (plan.hbm_per_gpu - needed) * s.serving.kv_memory_fraction;
  // KV per token per GPU: this GPU's KV heads (replicated when tp > kv_heads) of its stage's layers.
  const double kv_token_gpu = storage_bytes(s.precision.kv_cache, 2.0 * first_stage_layers * kv_heads_gpu * m.head_dim);
  const auto blocks = static_cast<std::int64_t>(std::floor(plan.kv_bytes_per_gpu / (kv_token_gpu * static_cast<double>(s.serving.kv_block_tokens))));
  plan.kv_tokens_per_replica = blocks * s.serving.kv_block_tokens;
  if (blocks < 1)
    throw InfeasibleError(fmt::format("{} at {} leaves {} per GPU for the KV cache, less than one {}-token block ({})", m.id,
                                      where, format_gib(plan.kv_bytes_per_gpu), s.serving.kv_block_tokens,
                                      format_gib(kv_token_gpu * static_cast<double>(s.serving.kv_block_tokens))));
  return plan;
}

}  // namespace racksim
