#pragma once
// The CUDA side of racksim bench (compiled only with RACKSIM_CUDA); plain C++ interface, routed
// by backend_registry.cpp to racksim/exec/cuda_bench.hpp.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "racksim/exec/collectives.hpp"
#include "racksim/exec/cuda_bench.hpp"

namespace racksim::exec::cuda {

CudaDevice require_device(int device);
MeasurementRun measurement_run(const std::string& source, int device);
double check_gemm(std::string_view dtype_name, std::int64_t m, std::int64_t n, std::int64_t k, int device);
std::vector<MeasurementRecord> bench_gemm(std::span<const GemmCase> cases, const BenchTiming& timing, const RecordSink& done, int device);
std::vector<MeasurementRecord> bench_memory(std::span<const double> sizes, const BenchTiming& timing, const RecordSink& done, int device);
std::vector<MeasurementRecord> bench_launch(int batch, const BenchTiming& timing, const RecordSink& done, int device);
std::vector<MeasurementRecord> bench_power(std::span<const GemmCase> cases, const PowerOptions& options, const RecordSink& done, int device);

// NCCL collectives (collectives.cu; racksim/exec/collectives.hpp documents each).
NcclId nccl_unique_id();
std::string nccl_version();
std::vector<MeasurementRecord> bench_collectives(std::span<const CollectiveCase> cases, const BenchTiming& timing, int gpus,
                                                 const RecordSink& done);
std::vector<MeasurementRecord> bench_collectives_mpi(ProcessGroup& group, const RankPlacement& placement, int device, const NcclId& id,
                                                     std::span<const CollectiveCase> cases, const BenchTiming& timing,
                                                     const RecordSink& done);
std::vector<std::vector<float>> collective_values(CollectiveOp op, CollectiveDType dtype, const std::vector<std::vector<float>>& inputs);

}  // namespace racksim::exec::cuda
