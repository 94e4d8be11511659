#include "racksim/sim/step_timer.hpp"

namespace racksim {

StepTimer::StepTimer(const ModelConfig& model, const Deployment& dep, const Precision& prec, const CostModel& cost,
                     const EnergyModel& energy)
    : model_(model), one_layer_(model), dep_(dep), one_stage_(dep), prec_(prec), cost_(cost), energy_(energy) {
  one_layer_.layers = 1;
  one_stage_.pipeline_parallel = 1;
}

void StepTimer::accumulate(Part& p, const Op& op, double times) const {
  const OpCost c = cost_.cost(op);
  p.time_s += times * c.time_s;
  p.energy_j += times * op_energy_j(energy_, op, c.compute_s);
  p.flops += times * op.flops;
}

StepTimer::Part StepTimer::token_part(std::int64_t tokens) {
  const auto idx = static_cast<std::size_t>(tokens);
  if (idx >= by_tokens_.size()) by_tokens_.resize(idx + 1);
  Part& p = by_tokens_[idx];
  if (p.time_s >= 0) return p;
  // One layer, one stage, T decode tokens, nothing sampled: every op here except attention
  // depends on T alone. Layer ops count `layers` times; the rest once.
  BatchShape shape;
  shape.decode_seqs = tokens;
  shape.decode_pairs = static_cast<double>(tokens);
  const StepGraph g(one_layer_, shape, one_stage_, prec_);
  p = Part{0, 0, 0};
  for (std::size_t v = 0; v < g.size(); ++v) {
    const Op& op = g.op(v);
    if (op.kind == OpKind::attention_decode) continue;
    accumulate(p, op, op.layer >= 0 ? model_.layers : 1.0);
  }
  // Stage boundaries: one activation transfer per extra stage.
  if (dep_.pipeline_parallel > 1) {
    Op recv;
    recv.kind = OpKind::send_recv;
    recv.comm_bytes = storage_bytes(DType::bf16, static_cast<double>(tokens) * model_.hidden);
    recv.participants = 2;
    accumulate(p, recv, dep_.pipeline_parallel - 1);
  }
  return p;
}

StepTimer::Part StepTimer::head_part(std::int64_t sampled) {
  const auto idx = static_cast<std::size_t>(sampled);
  if (idx >= by_sampled_.size()) by_sampled_.resize(idx + 1);
  Part& p = by_sampled_[idx];
  if (p.time_s >= 0) return p;
  p = Part{0, 0, 0};
  if (sampled == 0) return p;
  BatchShape shape;
  shape.decode_seqs = sampled;
  shape.decode_pairs = static_cast<double>(sampled);
  shape.sampled = sampled;
  const StepGraph g(one_layer_, shape, one_stage_, prec_);
  for (std::size_t v = 0; v < g.size(); ++v) {
    const Op& op = g.op(v);
    // The head: lm_head, the logits gather and sampling (final_norm depends on T: token_part).
    if (op.layer >= 0 || op.kind == OpKind::embedding || op.kind == OpKind::rmsnorm) continue;
    accumulate(p, op, 1.0);
  }
  return p;
}

StepCost StepTimer::cost(const BatchShape& shape) {
  Part all = token_part(shape.tokens());
  const Part h = head_part(shape.sampled);
  all.time_s += h.time_s;
  all.energy_j += h.energy_j;
  all.flops += h.flops;
  if (shape.prefill_seqs > 0) accumulate(all, make_attention_prefill(model_, dep_, prec_, shape, 0), model_.layers);
  if (shape.decode_seqs > 0) accumulate(all, make_attention_decode(model_, dep_, prec_, shape, 0), model_.layers);
  const double time = all.time_s, energy = all.energy_j, flops = all.flops;
  // Energy and FLOPs above are over all stages; each GPU holds one stage.
  const double pp = dep_.pipeline_parallel;
  const CappedWork w = apply_power_limit(energy_, time, energy);
  return StepCost{w.time_s, time, energy / pp, flops / pp, w.capped};
}

}  // namespace racksim
