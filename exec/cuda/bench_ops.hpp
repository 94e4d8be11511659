#pragma once
// The step-op benches (bench_ops.cu; compiled only with RACKSIM_CUDA): plain C++ interface,
// routed by backend_registry.cpp to racksim/exec/cuda_ops_bench.hpp.

#include <span>
#include <vector>

#include "racksim/exec/cuda_ops_bench.hpp"

namespace racksim::exec::cuda {

std::vector<MeasurementRecord> bench_attention_decode(std::span<const AttentionDecodeCase> cases, const BenchTiming& timing,
                                                      const RecordSink& done, int device);
std::vector<MeasurementRecord> bench_attention_prefill(std::span<const AttentionPrefillCase> cases, const BenchTiming& timing,
                                                       const RecordSink& done, int device);
std::vector<MeasurementRecord> bench_elementwise(std::span<const ElementwiseCase> cases, const BenchTiming& timing, const RecordSink& done,
                                                 int device);

}  // namespace racksim::exec::cuda
