#include "racksim/exec/backend.hpp"

#include <fmt/format.h>

#include "racksim/common/error.hpp"
#include "racksim/exec/cuda_bench.hpp"
#include "racksim/exec/cuda_ops.hpp"

#ifdef RACKSIM_HAVE_CUDA
#include "cuda/bench_cuda.hpp"
#include "cuda/device_info.hpp"
#include "cuda/fp4_gemm_small_m.hpp"
#endif

namespace racksim::exec {

const Registry<BackendStatus>& backend_registry() {
  static const Registry<BackendStatus> registry = [] {
    Registry<BackendStatus> r("backend");
    r.add("cpu", "CPU reference: FP32 math over NVFP4/MXFP4-packed weights, small models, one GPU's graph",
          [] { return std::string("built; FP32 activations and KV cache, weights nvfp4, mxfp4 or bf16, parallel sizes 1"); });
#ifdef RACKSIM_HAVE_CUDA
    r.add("cuda", "CUDA GPUs: cuBLASLt GEMMs, NCCL collectives, NVML power", [] { return cuda::device_summary(); });
#else
    r.add("cuda", "CUDA GPUs (not built)", [] { return std::string("not built (RACKSIM_CUDA=OFF or no CUDA toolkit at configure time)"); });
#endif
    return r;
  }();
  return registry;
}

int cuda_device_count() {
#ifdef RACKSIM_HAVE_CUDA
  return cuda::device_count();
#else
  return 0;
#endif
}

std::vector<float> cuda_fp4_gemm_small_m(std::span<const float> x, std::int64_t m, const Fp4Matrix& w) {
  if (w.format != DType::nvfp4 || w.cols % 16 != 0 || m < 1 || m > 16 || x.size() != static_cast<std::size_t>(m * w.cols))
    throw InputError(fmt::format("cuda_fp4_gemm_small_m: needs NVFP4 weights with K % 16 == 0, 1 <= m <= 16 and x of m x K "
                                 "(got {} weights, K = {}, m = {}, {} x values)",
                                 to_string(w.format), w.cols, m, x.size()));
#ifdef RACKSIM_HAVE_CUDA
  std::vector<float> y(static_cast<std::size_t>(m * w.rows));
  cuda::fp4_gemm_small_m(x.data(), m, w.rows, w.cols, w.packed.data(), w.scales.data(), w.tensor_scale, y.data());
  return y;
#else
  throw Error(ExitCode::infeasible, "CUDA backend not built (RACKSIM_CUDA=OFF or no CUDA toolkit at configure time)");
#endif
}

#ifndef RACKSIM_HAVE_CUDA
namespace {
[[noreturn]] void not_built() {
  throw InfeasibleError("built without CUDA: this racksim has no CUDA backend (RACKSIM_CUDA=OFF or no CUDA toolkit at configure time)");
}
}  // namespace
#endif

// The bench entry points: the CUDA implementation, or "built without CUDA" (exit 3).
#ifdef RACKSIM_HAVE_CUDA
CudaDevice cuda_require_device() { return cuda::require_device(); }
MeasurementRun cuda_measurement_run(const std::string& source) { return cuda::measurement_run(source); }
double cuda_check_gemm(std::string_view dtype_name, std::int64_t m, std::int64_t n, std::int64_t k) {
  return cuda::check_gemm(dtype_name, m, n, k);
}
std::vector<MeasurementRecord> cuda_bench_gemm(std::span<const GemmCase> cases, const BenchTiming& timing, const RecordSink& done) {
  return cuda::bench_gemm(cases, timing, done);
}
std::vector<MeasurementRecord> cuda_bench_memory(std::span<const double> sizes, const BenchTiming& timing, const RecordSink& done) {
  return cuda::bench_memory(sizes, timing, done);
}
std::vector<MeasurementRecord> cuda_bench_launch(int batch, const BenchTiming& timing, const RecordSink& done) {
  return cuda::bench_launch(batch, timing, done);
}
std::vector<MeasurementRecord> cuda_bench_power(std::span<const GemmCase> cases, const PowerOptions& options, const RecordSink& done) {
  return cuda::bench_power(cases, options, done);
}
#else
CudaDevice cuda_require_device() { not_built(); }
MeasurementRun cuda_measurement_run(const std::string&) { not_built(); }
double cuda_check_gemm(std::string_view, std::int64_t, std::int64_t, std::int64_t) { not_built(); }
std::vector<MeasurementRecord> cuda_bench_gemm(std::span<const GemmCase>, const BenchTiming&, const RecordSink&) { not_built(); }
std::vector<MeasurementRecord> cuda_bench_memory(std::span<const double>, const BenchTiming&, const RecordSink&) { not_built(); }
std::vector<MeasurementRecord> cuda_bench_launch(int, const BenchTiming&, const RecordSink&) { not_built(); }
std::vector<MeasurementRecord> cuda_bench_power(std::span<const GemmCase>, const PowerOptions&, const RecordSink&) { not_built(); }
#endif

}  // namespace racksim::exec
