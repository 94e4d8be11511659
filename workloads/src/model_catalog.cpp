#include "racksim/workloads/model_catalog.hpp"

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "racksim/common/error.hpp"
#include "racksim/common/yaml_reader.hpp"
#include "racksim/workloads/embedded_data.hpp"

namespace racksim {

ModelConfig parse_model_yaml(std::string_view text, const std::string& name) {
  YamlMap y = YamlMap::from_text(text, name);
  ModelConfig m;
  m.id = y.string("id");
  m.name = y.string("name");
  m.source = y.string("source");
  static constexpr std::array<std::string_view, 5> kArch = {"llama", "mixtral", "qwen3", "qwen3_moe", "minimax_m2"};
  m.architecture = y.choice("architecture", kArch);
  auto dim = [&](std::string_view key) { return static_cast<int>(y.integer(key, 1, 1 << 24)); };
  m.layers = dim("layers");
  m.hidden = dim("hidden");
  m.heads = dim("heads");
  m.kv_heads = dim("kv_heads");
  m.head_dim = dim("head_dim");
  if (y.has("rotary_dim")) m.rotary_dim = static_cast<int>(y.integer("rotary_dim", 2, m.head_dim));
  m.ffn = dim("ffn");
  m.vocab = dim("vocab");
  m.tied_embeddings = y.boolean("tied_embeddings");
  m.rope_theta = y.number("rope_theta", 1, 1e12);
  m.max_position = dim("max_position");
  m.norm_eps = y.number("norm_eps", 0, 1);
  if (auto moe = y.optional_map("moe")) {
    m.moe.experts = static_cast<int>(moe->integer("experts", 2, 4096));
    m.moe.experts_per_token = static_cast<int>(moe->integer("experts_per_token", 1, m.moe.experts));
    moe->finish();
  }
  y.finish();
  if (m.heads % m.kv_heads != 0)
    y.fail("kv_heads", fmt::format("must divide heads ({})", m.heads));
  const bool moe_arch = m.architecture == "mixtral" || m.architecture == "qwen3_moe" || m.architecture == "minimax_m2";
  if (moe_arch != m.is_moe())
    y.fail("architecture", fmt::format("{} a moe: section (mixtral, qwen3_moe and minimax_m2 need one; llama and qwen3 have none)",
                                       moe_arch ? "needs" : "cannot have"));
  if (m.rotary_dim % 2 != 0) y.fail("rotary_dim", "must be even (RoPE rotates pairs of dims)");
  return m;
}

const std::vector<ModelConfig>& model_catalog() {
  static const std::vector<ModelConfig> catalog = [] {
    std::vector<ModelConfig> out;
    for (const auto& f : embedded::workloads_data())
      if (f.path.starts_with("models/")) out.push_back(parse_model_yaml(f.contents, std::string(f.path)));
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
    return out;
  }();
  return catalog;
}

ModelConfig find_model(const std::string& id_or_path, const std::string& origin, const std::string& key) {
  const bool is_path = id_or_path.find('/') != std::string::npos || id_or_path.ends_with(".yaml");
  if (is_path) {
    std::ifstream in(id_or_path);
    if (!in) throw InputError(fmt::format("{}: {}: '{}': model file not found", origin, key, id_or_path));
    std::stringstream ss;
    ss << in.rdbuf();
    return parse_model_yaml(ss.str(), id_or_path);
  }
  std::vector<std::string> ids;
  for (const auto& m : model_catalog()) {
    if (m.id == id_or_path) return m;
    ids.push_back(m.id);
  }
  throw InputError(fmt::format("{}: {}: '{}' is not a catalog model; allowed: {}, or a path to a model YAML",
                               origin, key, id_or_path, join(ids)));
}

}  // namespace racksim
