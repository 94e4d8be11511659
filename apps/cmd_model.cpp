// racksim model list | model show ID [--json FILE]

#include <algorithm>

#include <fmt/format.h>

#include "cli.hpp"
#include "racksim/common/output.hpp"
#include "racksim/common/error.hpp"
#include "racksim/common/units.hpp"
#include "racksim/workloads/model_catalog.hpp"

namespace racksim::cli {

int cmd_model(const Args& args) {
  po::options_description desc("model options");
  std::string action, id, json;
  desc.add_options()("action", po::value(&action)->required(), "list | show")("id", po::value(&id), "model id or YAML path (show)")(
      "json", po::value(&json), "also write JSON to FILE ('-' for stdout, then no table)");
  po::positional_options_description pos;
  pos.add("action", 1).add("id", 1);
  po::variables_map vm;
  if (!parse(args, desc, pos, vm, "racksim model list|show [ID] [--json FILE]")) return 0;
  if (!json.empty()) check_output_path(json, "--json");
  const bool table = json != "-";
  static constexpr DType kWeights[] = {DType::bf16, DType::fp16, DType::fp8, DType::fp8_block, DType::nvfp4, DType::mxfp4};
  static constexpr DType kKv[] = {DType::bf16, DType::fp8, DType::nvfp4};

  if (action == "list") {
    nlohmann::json j = nlohmann::json::array();
    std::size_t id_width = 14;  // the id column fits the longest catalog id
    for (const auto& m : model_catalog()) id_width = std::max(id_width, m.id.size());
    if (table)
      fmt::print("{:<{}} {:>16} {:>7} {:>7} {:>8} {:>13}  {}\n", "id", id_width, "params", "layers", "hidden", "experts", "nvfp4 weights", "name");
    for (const auto& m : model_catalog()) {
      const auto p = count_params(m);
      if (table)
        fmt::print("{:<{}} {:>16} {:>7} {:>7} {:>8} {:>13}  {}\n", m.id, id_width, format_count(p.total()), m.layers, m.hidden,
                   m.is_moe() ? fmt::format("{}/{}", m.moe.experts_per_token, m.moe.experts) : "-",
                   format_gib(weight_bytes(m, DType::nvfp4)), m.name);
      j.push_back({{"id", m.id}, {"name", m.name}, {"params", p.total()}});
    }
    if (!json.empty()) write_json(json, j);
    return 0;
  }
  if (action != "show") throw InputError(fmt::format("racksim model: '{}' is not one of list, show", action));
  if (id.empty()) throw InputError("racksim model show: missing ID (racksim model list shows them)");
  const ModelConfig m = find_model(id, "racksim model show", "ID");
  const auto p = count_params(m);
  nlohmann::json j = {{"id", m.id},
                      {"name", m.name},
                      {"source", m.source},
                      {"architecture", m.architecture},
                      {"params", p.total()},
                      {"layers", m.layers},
                      {"hidden", m.hidden},
                      {"heads", m.heads},
                      {"kv_heads", m.kv_heads},
                      {"head_dim", m.head_dim},
                      {"rotary_dim", m.rope_dim()},
                      {"ffn", m.ffn},
                      {"vocab", m.vocab},
                      {"tied_embeddings", m.tied_embeddings},
                      {"rope_theta", m.rope_theta},
                      {"max_position", m.max_position},
                      {"params_by_role",
                       {{"embedding", p.embedding}, {"lm_head", p.lm_head}, {"attention", p.attention}, {"mlp", p.mlp},
                        {"router", p.router}, {"norms", p.norms}, {"routing_bias", p.routing_bias}}},
                      {"gemm_flops_per_token", 2 * gemm_params_per_token(m)}};
  if (m.is_moe()) j["moe"] = {{"experts", m.moe.experts}, {"experts_per_token", m.moe.experts_per_token}};
  for (DType t : kWeights) j["weight_bytes"][std::string(to_string(t))] = weight_bytes(m, t);
  for (DType t : kKv) j["kv_bytes_per_token"][std::string(to_string(t))] = kv_bytes_per_token(m, t);
  if (table) {
    fmt::print("{} ({}), {}\n  source: {}\n", m.id, m.name, m.architecture, m.source);
    if (m.rope_dim() != m.head_dim) fmt::print("  partial RoPE: {} of {} head dims\n", m.rope_dim(), m.head_dim);
    fmt::print("  layers {}, hidden {}, heads {} (kv {}), head_dim {}, ffn {}, vocab {}{}\n", m.layers, m.hidden, m.heads,
               m.kv_heads, m.head_dim, m.ffn, m.vocab,
               m.is_moe() ? fmt::format(", experts {} (top {})", m.moe.experts, m.moe.experts_per_token) : "");
    fmt::print("  parameters {}: embedding {}, lm_head {}, attention {}, mlp {}, router {}, norms {}{}\n", format_count(p.total()),
               format_count(p.embedding), format_count(p.lm_head), format_count(p.attention), format_count(p.mlp),
               format_count(p.router), format_count(p.norms),
               p.routing_bias ? fmt::format(", routing bias {}", format_count(p.routing_bias)) : std::string());
    fmt::print("  GEMM FLOPs per token: {:.4g} (2 x {})\n", 2.0 * static_cast<double>(gemm_params_per_token(m)),
               format_count(gemm_params_per_token(m)));
    fmt::print("  weights (linear layers in the format, embedding/lm_head/norms/router in bf16{}):\n",
               p.routing_bias ? ", routing bias in fp32" : "");
    for (DType t : kWeights) fmt::print("    {:<9} {:>15.0f} bytes  {:>10}\n", to_string(t), weight_bytes(m, t), format_gib(weight_bytes(m, t)));
    fmt::print("  KV cache per token:\n");
    for (DType t : kKv) fmt::print("    {:<6} {:>10.0f} bytes\n", to_string(t), kv_bytes_per_token(m, t));
  }
  if (!json.empty()) write_json(json, j);
  return 0;
}

}  // namespace racksim::cli
