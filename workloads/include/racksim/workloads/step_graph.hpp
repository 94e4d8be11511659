#pragma once
/// The operator DAG of one serving iteration of one model replica (Boost.Graph), built from the
/// batch of that iteration, the deployment and the precision. Both backends consume it.

#include <cstdint>
#include <string>
#include <vector>

#include <boost/graph/adjacency_list.hpp>

#include "racksim/common/dtype.hpp"
#include "racksim/workloads/model.hpp"
#include "racksim/workloads/op.hpp"

namespace racksim {

/// A prefill chunk: `tokens` new prompt tokens of one sequence after `cached` tokens of it that
/// are already in the KV cache (chunked prefill). `last` if the chunk ends the prompt, so the
/// step produces the sequence's first output token.
struct PrefillChunk {
  std::int64_t tokens = 0;
  std::int64_t cached = 0;
  bool last = true;
};

/// What one iteration processes: prefill chunks and decode sequences. A decode sequence with
/// context c has c tokens in the KV cache; its new token attends to c + 1 keys (itself included).
struct StepBatch {
  std::vector<PrefillChunk> prefill;
  std::vector<std::int64_t> decode_contexts;

  [[nodiscard]] std::int64_t prefill_tokens() const noexcept;
  /// Tokens through the GEMMs: prefill tokens plus one per decode sequence.
  [[nodiscard]] std::int64_t tokens() const noexcept { return prefill_tokens() + static_cast<std::int64_t>(decode_contexts.size()); }
  /// Sequences that get logits this step (decodes, and prefill chunks that end their prompt).
  [[nodiscard]] std::int64_t sampled_sequences() const noexcept;
  /// A decode-only batch of `batch` sequences, each with `context` cached tokens.
  [[nodiscard]] static StepBatch decode(std::int64_t batch, std::int64_t context);
  /// A prefill-only batch of `batch` whole prompts of `tokens` each, after `cached` cached tokens.
  [[nodiscard]] static StepBatch prefill_only(std::int64_t batch, std::int64_t tokens, std::int64_t cached = 0);
};

/// What the step graph needs of a batch: token counts and the sums that attention costs
/// depend on. A StepBatch reduces to one; the simulator builds one directly without vectors.
struct BatchShape {
  std::int64_t prefill_tokens = 0;  ///< query tokens of all prefill chunks
  std::int64_t prefill_seqs = 0;    ///< prefill chunks
  double prefill_pairs = 0;         ///< sum over chunks of q*c + q(q+1)/2 (causal (query, key) pairs)
  double prefill_cached = 0;        ///< sum over chunks of tokens already cached
  std::int64_t decode_seqs = 0;
  double decode_pairs = 0;          ///< sum over decodes of context + 1
  double decode_cached = 0;         ///< sum over decodes of context
  std::int64_t sampled = 0;         ///< sequences that get logits (decodes + prompt-ending chunks)

  [[nodiscard]] std::int64_t tokens() const noexcept { return prefill_tokens + decode_seqs; }
  /// The sums of a concrete batch.
  [[nodiscard]] static BatchShape of(const StepBatch& b);
};

/// How one model replica is split over GPUs (TensorRT-LLM semantics: expert_parallel divides
/// tensor_parallel; MoE layers run expert_parallel x (tensor_parallel / expert_parallel)).
struct Deployment {
  int tensor_parallel = 1;
  int pipeline_parallel = 1;
  int expert_parallel = 1;
  [[nodiscard]] int gpus_per_replica() const noexcept { return tensor_parallel * pipeline_parallel; }
};

/// Number formats of weights, GEMM inputs, and the KV cache.
struct Precision {
  DType weights = DType::bf16;
  DType activations = DType::bf16;
  DType kv_cache = DType::bf16;
  /// FP8/NVFP4 GEMM inputs: written in the GEMM's format by their producer (the norm or the
  /// activation, as the serving engines' fused kernels do; true, scenario key
  /// precision.activation_quantize: fused), or quantized by kernels of their own before each GEMM
  /// (false: separate), whose cost the calibrated GEMM model then keeps (docs/calibration.md,
  /// "Fused activation quantize").
  bool fused_quantize = true;

  /// True when a GEMM's input arrives already in `activations` (fused, narrower than 16 bits,
  /// and not fp8_block, whose 1 x 128 quantize the engines always run as a kernel of its own).
  [[nodiscard]] bool gemm_input_prequantized() const noexcept;
  /// The format the producers of GEMM inputs (norms, SwiGLU, attention, the MoE permute) write:
  /// `activations` when the GEMM input is pre-quantized, else BF16 (the quantize reads BF16).
  [[nodiscard]] DType gemm_input_format() const noexcept { return gemm_input_prequantized() ? activations : DType::bf16; }
};

/// The DAG: vertices are ops, an edge u->v means v reads what u wrote.
using OpGraph = boost::adjacency_list<boost::vecS, boost::vecS, boost::bidirectionalS, Op>;

/// One iteration's operator graph for one GPU of each pipeline stage of a replica.
class StepGraph {
 public:
  StepGraph(ModelConfig model, StepBatch batch, Deployment deployment, Precision precision);
  /// A graph from batch sums only (batch() is then empty): what the simulator costs.
  StepGraph(ModelConfig model, const BatchShape& shape, Deployment deployment, Precision precision);

  [[nodiscard]] const OpGraph& graph() const noexcept { return graph_; }
  [[nodiscard]] const ModelConfig& model() const noexcept { return model_; }
  [[nodiscard]] const StepBatch& batch() const noexcept { return batch_; }
  [[nodiscard]] const BatchShape& shape() const noexcept { return shape_; }
  [[nodiscard]] const Deployment& deployment() const noexcept { return deployment_; }
  [[nodiscard]] const Precision& precision() const noexcept { return precision_; }
  [[nodiscard]] std::size_t size() const noexcept { return boost::num_vertices(graph_); }
  [[nodiscard]] const Op& op(std::size_t v) const { return graph_[v]; }
  /// Ops in a topological order (the order one GPU stream would launch them).
  [[nodiscard]] std::vector<std::size_t> topological_order() const;

 private:
  ModelConfig model_;
  StepBatch batch_;
  BatchShape shape_;
  Deployment deployment_;
  Precision precision_;
  OpGraph graph_;
};

/// The decode-attention op of one layer for `shape`'s decode sequences (per GPU of the replica);
/// unnamed, so the simulator's hot path allocates nothing.
[[nodiscard]] Op make_attention_decode(const ModelConfig& m, const Deployment& dep, const Precision& p, const BatchShape& shape,
                                       int layer);
/// The prefill-attention op of one layer for `shape`'s prefill chunks.
[[nodiscard]] Op make_attention_prefill(const ModelConfig& m, const Deployment& dep, const Precision& p, const BatchShape& shape,
                                        int layer);

/// Layers held by each pipeline stage: layers split as evenly as possible, earlier stages take
/// the remainder (TensorRT-LLM's default split).
[[nodiscard]] std::vector<int> layers_per_stage(int layers, int stages);

/// One GPU's work in a step: FLOPs and HBM bytes (Op::flops, Op::bytes()) summed over the graph's
/// ops, collectives left out (their bytes cross links, not HBM). What racksim exec's step records
/// hold, and what calibrate checks them against.
struct StepWork {
  double flops = 0;
  double bytes = 0;
};
[[nodiscard]] StepWork step_work(const StepGraph& graph);

}  // namespace racksim
