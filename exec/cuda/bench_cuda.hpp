#pragma once
// The CUDA side of racksim bench (compiled only with RACKSIM_CUDA); plain C++ interface, routed
// by backend_registry.cpp to racksim/exec/cuda_bench.hpp.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "racksim/exec/cuda_bench.hpp"

namespace racksim::exec::cuda {

CudaDevice require_device();
MeasurementRun measurement_run(const std::string& source);
double check_gemm(std::string_view dtype_name, std::int64_t m, std::int64_t n, std::int64_t k);
std::vector<MeasurementRecord> bench_gemm(std::span<const GemmCase> cases, const BenchTiming& timing, const RecordSink& done);
std::vector<MeasurementRecord> bench_memory(std::span<const double> sizes, const BenchTiming& timing, const RecordSink& done);
std::vector<MeasurementRecord> bench_launch(int batch, const BenchTiming& timing, const RecordSink& done);
std::vector<MeasurementRecord> bench_power(std::span<const GemmCase> cases, const PowerOptions& options, const RecordSink& done);

}  // namespace racksim::exec::cuda
