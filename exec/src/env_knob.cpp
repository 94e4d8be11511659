// The executor's environment checked up front (env_knob.hpp check_executor_environment).
#include "racksim/exec/env_knob.hpp"

#include <algorithm>
#include <unistd.h>  // environ (g++ defines _GNU_SOURCE)

#include "racksim/common/yaml_reader.hpp"  // edit_distance
#include "racksim/exec/fp4_gemm_path.hpp"
#include "racksim/exec/paged_kv.hpp"
#include "racksim/exec/step_plan.hpp"

namespace racksim::exec {

std::vector<std::string> environment_names() {
  std::vector<std::string> names;
  for (char** e = environ; e && *e; ++e) {
    const std::string_view kv = *e;
    names.emplace_back(kv.substr(0, kv.find('=')));
  }
  return names;
}

void check_executor_environment(std::span<const std::string> names, const std::function<const char*(const char*)>& get) {
  constexpr std::string_view kPrefix = "RACKSIM_";
  constexpr std::array<std::string_view, 4> kFamilies = {"RACKSIM_FP4", "RACKSIM_ATTENTION", "RACKSIM_FUSE", "RACKSIM_PDL"};
  for (const std::string& name : names) {
    if (!name.starts_with(kPrefix) || std::find(kExecutorKnobs.begin(), kExecutorKnobs.end(), name) != kExecutorKnobs.end()) continue;
    std::string_view nearest;
    std::size_t best = std::string_view::npos;
    for (const std::string_view k : kExecutorKnobs)
      if (const std::size_t d = edit_distance(name, k); d < best) best = d, nearest = k;
    const bool family = std::any_of(kFamilies.begin(), kFamilies.end(), [&](std::string_view f) { return name.starts_with(f); });
    if (!family && best > 2) continue;
    std::string all;
    for (const std::string_view k : kExecutorKnobs) all += fmt::format("{}{}", all.empty() ? "" : ", ", k);
    const char* value = get(name.c_str());
    throw InputError(fmt::format("environment {}: '{}': no such executor knob (nearest: {}); the knobs are {}", name, value ? value : "",
                                 nearest, all));
  }
  // Each knob through the parser its launch reads it with (a knob without a call here is caught
  // by the unit test that sets every one of kExecutorKnobs to a bad value).
  (void)fp4_mma_knobs(get("RACKSIM_FP4_MMA_SPLITS"), get("RACKSIM_FP4_MMA_TILES"), get("RACKSIM_FP4_MMA_DEPTH"), get("RACKSIM_FP4_MMA_MMA"),
                      get("RACKSIM_FP4_MMA_PIPE"), get("RACKSIM_FP4_MMA_X"), get("RACKSIM_FP4_MMA_REDUCE"), get("RACKSIM_FP4_MMA_CTAS"));
  (void)fp4_mma_tune_knob(get("RACKSIM_FP4_MMA_TUNE"));
  (void)fp4_large_m_fp8(get("RACKSIM_FP4_LARGE_M"));
  (void)attention_decode_keys_as_m(get("RACKSIM_ATTENTION_DECODE"));
  (void)attention_fp8_single_p(get("RACKSIM_ATTENTION_FP8_P"));
  (void)fuse_norm_knob(get("RACKSIM_FUSE_NORM"));
  (void)fuse_swiglu_knob(get("RACKSIM_FUSE_SWIGLU"));
  (void)pdl_knob(get("RACKSIM_PDL"));
}

}  // namespace racksim::exec
