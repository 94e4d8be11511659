#pragma once
/// The model catalog: YAML files compiled into the binary, or a path to a model YAML.

#include <string>
#include <vector>

#include "racksim/workloads/model.hpp"

namespace racksim {

/// All catalog models, sorted by id.
[[nodiscard]] const std::vector<ModelConfig>& model_catalog();

/// A catalog id, or a path to a model YAML file (anything containing '/' or ending in .yaml).
/// InputError naming `origin` and `key` (e.g. "scenario.yaml", "model") on failure.
[[nodiscard]] ModelConfig find_model(const std::string& id_or_path, const std::string& origin = "racksim",
                                     const std::string& key = "model");

/// Parses one model YAML (strict: unknown keys are errors). `name` is used in messages.
[[nodiscard]] ModelConfig parse_model_yaml(std::string_view text, const std::string& name);

}  // namespace racksim
