#pragma once
// The calibration summary (hwmodels/gpu_calibration.hpp) as JSON, shared by `hw show` and
// `simulate --json`: one object per factor family with its source.

#include <vector>

#include <nlohmann/json.hpp>

#include "racksim/hwmodels/gpu_calibration.hpp"

namespace racksim::cli {

/// [{"factor": "gemm nvfp4", "source": "carried", "from": "b200 nvfp4", "note": "..."}, ...]
inline nlohmann::json calibration_json(const std::vector<FactorSource>& sources) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& s : sources) {
    nlohmann::json e = {{"factor", s.factor}, {"source", s.source}, {"note", s.note}};
    if (!s.from.empty()) e["from"] = s.from;
    j.push_back(std::move(e));
  }
  return j;
}

}  // namespace racksim::cli
