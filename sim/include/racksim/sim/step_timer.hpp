#pragma once
/// Fast, exact step costs for the simulator. Every transformer layer of a step has the same ops,
/// so a step's cost is: embedding/final-norm/per-layer ops that depend only on the token count T
/// (memoized by T), the head ops that depend only on the sampled sequences S (memoized by S), and
/// the attention ops (recomputed from the batch sums each step). The sum equals estimate_step()
/// over the full StepGraph (tests/unit/sim_step_timer_test.cpp checks it to 1e-9).

#include <cstdint>
#include <memory>
#include <vector>

#include "racksim/hwmodels/cost_model.hpp"
#include "racksim/hwmodels/energy_model.hpp"
#include "racksim/workloads/step_graph.hpp"

namespace racksim {

/// Time and energy of one step on each GPU of the replica.
struct StepCost {
  double time_s = 0;     ///< after the power cap
  double uncapped_s = 0; ///< before the power cap
  double dynamic_j = 0;  ///< dynamic energy per GPU (the busiest stage's GPU for PP)
  double flops = 0;      ///< per GPU
  bool capped = false;
};

/// Memoizing step-cost evaluator for one model / deployment / precision / system.
class StepTimer {
 public:
  StepTimer(const ModelConfig& model, const Deployment& dep, const Precision& prec, const CostModel& cost,
            const EnergyModel& energy);
  /// Cost of one step with these batch sums, through all pipeline stages.
  [[nodiscard]] StepCost cost(const BatchShape& shape);

 private:
  struct Part {
    double time_s = -1;  ///< < 0: not computed yet
    double energy_j = 0;
    double flops = 0;
  };
  /// Adds `times` copies of op to p: its cost-model time, dynamic energy and FLOPs.
  void accumulate(Part& p, const Op& op, double times) const;
  Part token_part(std::int64_t tokens);
  Part head_part(std::int64_t sampled);

  ModelConfig model_;
  ModelConfig one_layer_;
  Deployment dep_;
  Deployment one_stage_;
  Precision prec_;
  const CostModel& cost_;
  EnergyModel energy_;
  std::vector<Part> by_tokens_;
  std::vector<Part> by_sampled_;
};

}  // namespace racksim
