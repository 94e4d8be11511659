#include "racksim/exec/backend.hpp"

#include <fmt/format.h>

#include "racksim/common/error.hpp"
#include "racksim/exec/collectives.hpp"
#include "racksim/exec/cuda_bench.hpp"
#include "racksim/exec/activation_formats.hpp"
#include "racksim/exec/cuda_ops.hpp"
#include "racksim/exec/fp4.hpp"
#include "racksim/exec/fp4_gemm_path.hpp"
#include "racksim/exec/cuda_ops_bench.hpp"
#include "src/cuda_ops_checks.hpp"

#ifdef RACKSIM_HAVE_CUDA
#include "cuda/attention.hpp"
#include "cuda/bench_cuda.hpp"
#include "cuda/bench_ops.hpp"
#include "cuda/device_memory.hpp"
#include "cuda/ops_elementwise.hpp"
#include "cuda/ops_moe.hpp"
#include "cuda/device_info.hpp"
#include "cuda/fp4_gemm_mma.hpp"
#include "cuda/fp4_gemm_small_m.hpp"
#include "cuda/lt_describe.hpp"
#include "cuda/nvfp4_quantize.hpp"
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

namespace {

/// BF16 bits of host values (rounded), and the values of BF16 bits: the GEMM wrappers' x and y.
[[maybe_unused]] std::vector<std::uint16_t> bf16_bits_of(std::span<const float> x) {
  std::vector<std::uint16_t> b(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) b[i] = act::bf16_bits(x[i]);
  return b;
}
[[maybe_unused]] std::vector<float> values_of_bf16(const std::vector<std::uint16_t>& b) {
  std::vector<float> y(b.size());
  for (std::size_t i = 0; i < b.size(); ++i) y[i] = act::bf16_value(b[i]);
  return y;
}

}  // namespace

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

std::vector<float> cuda_fp4_gemm_mma(std::span<const float> x, std::int64_t m, const Fp4Matrix& w, bool swiglu, bool* fused,
                                     const Fp4MmaKnobs* knobs) {
  if (w.format != DType::nvfp4 || !fp4_mma_supported(m, w.rows, w.cols) || x.size() != static_cast<std::size_t>(m * w.cols) ||
      (swiglu && w.rows % 2 != 0))
    throw InputError(fmt::format("cuda_fp4_gemm_mma: needs NVFP4 weights with K % 32 == 0, 1 <= m <= {} and x of m x K "
                                 "(got {} weights, K = {}, m = {}, {} x values){}",
                                 kFp4MmaMaxM, to_string(w.format), w.cols, m, x.size(),
                                 swiglu ? fmt::format(", and for the SwiGLU an even row count (got {})", w.rows) : ""));
#ifdef RACKSIM_HAVE_CUDA
  const std::vector<std::uint16_t> xb = bf16_bits_of(x);
  std::vector<std::uint16_t> yb(static_cast<std::size_t>(m * w.rows));
  std::vector<std::uint16_t> act(swiglu ? static_cast<std::size_t>(m * w.rows / 2) : 0);
  cuda::fp4_gemm_mma(xb.data(), m, w.rows, w.cols, w.packed.data(), w.scales.data(), w.tensor_scale, yb.data(), swiglu ? act.data() : nullptr,
                     fused, knobs);
  return values_of_bf16(swiglu ? act : yb);
#else
  (void)swiglu;
  (void)fused;
  (void)knobs;
  throw Error(ExitCode::infeasible, "CUDA backend not built (RACKSIM_CUDA=OFF or no CUDA toolkit at configure time)");
#endif
}

bool cuda_fp4_mma_wgmma_available() {
#ifdef RACKSIM_HAVE_CUDA
  return cuda::fp4_mma_wgmma_available();
#else
  throw Error(ExitCode::infeasible, "CUDA backend not built (RACKSIM_CUDA=OFF or no CUDA toolkit at configure time)");
#endif
}

int cuda_fp4_mma_resident_per_sm(int tiles, int depth, const Fp4MmaKnobs& knobs) {
#ifdef RACKSIM_HAVE_CUDA
  return cuda::fp4_mma_resident_per_sm(tiles, depth, knobs);
#else
  (void)tiles;
  (void)depth;
  (void)knobs;
  throw Error(ExitCode::infeasible, "CUDA backend not built (RACKSIM_CUDA=OFF or no CUDA toolkit at configure time)");
#endif
}

std::vector<float> cuda_fp4_gemm_mma_grouped(std::span<const float> x, std::span<const std::int32_t> offsets, std::int64_t max_m,
                                             const std::vector<Fp4Matrix>& experts) {
  const auto bad = [](const std::string& why) { throw InputError(fmt::format("cuda_fp4_gemm_mma_grouped: {}", why)); };
  if (experts.empty() || offsets.size() != experts.size() + 1) bad("one weight per expert and experts + 1 offsets");
  const Fp4Matrix& w0 = experts[0];
  for (const Fp4Matrix& w : experts)
    if (w.format != DType::nvfp4 || w.rows != w0.rows || w.cols != w0.cols) bad("every expert an NVFP4 weight of one shape");
  if (!fp4_mma_grouped_supported(max_m, w0.rows, w0.cols)) bad(fmt::format("the fused kernel does not take {} x {} x {}", max_m, w0.rows, w0.cols));
  if (offsets[0] != 0) bad("offsets start at 0");
  for (std::size_t e = 0; e + 1 < offsets.size(); ++e)
    if (offsets[e + 1] < offsets[e] || offsets[e + 1] - offsets[e] > max_m) bad(fmt::format("expert {} has {} rows (0..{})", e, offsets[e + 1] - offsets[e], max_m));
  const auto rows = static_cast<std::size_t>(offsets.back());
  if (x.size() != rows * static_cast<std::size_t>(w0.cols)) bad(fmt::format("x holds {} values, not {} rows of {}", x.size(), rows, w0.cols));
#ifdef RACKSIM_HAVE_CUDA
  const std::vector<std::uint16_t> xb = bf16_bits_of(x);
  std::vector<std::uint16_t> yb(rows * static_cast<std::size_t>(w0.rows));
  std::vector<const std::uint8_t*> packed, scales;
  std::vector<float> tensor_scales;
  for (const Fp4Matrix& w : experts) {
    packed.push_back(w.packed.data());
    scales.push_back(w.scales.data());
    tensor_scales.push_back(w.tensor_scale);
  }
  cuda::fp4_gemm_mma_grouped(xb.data(), std::vector<std::int32_t>(offsets.begin(), offsets.end()), max_m, w0.rows, w0.cols, packed, scales,
                             tensor_scales, yb.data());
  return values_of_bf16(yb);
#else
  throw Error(ExitCode::infeasible, "CUDA backend not built (RACKSIM_CUDA=OFF or no CUDA toolkit at configure time)");
#endif
}

std::vector<float> cuda_fp4_gemm_large_m(std::span<const float> x, std::int64_t m, const Fp4Matrix& w, bool fp8, std::vector<std::uint8_t>* x_codes,
                                         float* x_scale) {
  if (w.format != DType::nvfp4 || m < 1 || w.cols % 16 != 0 || x.size() != static_cast<std::size_t>(m * w.cols))
    throw InputError(fmt::format("cuda_fp4_gemm_large_m: needs NVFP4 weights with K % 16 == 0, m >= 1 and x of m x K "
                                 "(got {} weights, K = {}, m = {}, {} x values)",
                                 to_string(w.format), w.cols, m, x.size()));
#ifdef RACKSIM_HAVE_CUDA
  const std::vector<std::uint16_t> xb = bf16_bits_of(x);
  std::vector<std::uint16_t> yb(static_cast<std::size_t>(m * w.rows));
  if (x_codes) x_codes->resize(x.size());
  cuda::fp4_gemm_large_m(xb.data(), m, w.rows, w.cols, w.packed.data(), w.scales.data(), w.tensor_scale, fp8, yb.data(),
                         x_codes ? x_codes->data() : nullptr, x_scale);
  return values_of_bf16(yb);
#else
  (void)fp8, (void)x_codes, (void)x_scale;
  throw Error(ExitCode::infeasible, "CUDA backend not built (RACKSIM_CUDA=OFF or no CUDA toolkit at configure time)");
#endif
}

std::vector<float> cuda_fp4_mma_tile_dequant(const Fp4Matrix& w, std::vector<std::uint8_t>& codes, std::vector<std::uint8_t>& tiled_scales,
                                             std::vector<std::uint8_t>* e4m3_codes) {
  if (w.format != DType::nvfp4 || !fp4_mma_supported(1, w.rows, w.cols))
    throw InputError(fmt::format("cuda_fp4_mma_tile_dequant: needs NVFP4 weights with K % 32 == 0 (got {} weights, {} x {})",
                                 to_string(w.format), w.rows, w.cols));
#ifdef RACKSIM_HAVE_CUDA
  std::vector<std::uint16_t> bits(static_cast<std::size_t>(w.rows * w.cols));
  if (e4m3_codes) e4m3_codes->resize(bits.size());
  cuda::fp4_mma_tile_dequant(w.packed.data(), w.scales.data(), w.rows, w.cols, w.tensor_scale, codes, tiled_scales, bits.data(),
                             e4m3_codes ? e4m3_codes->data() : nullptr);
  std::vector<float> y(bits.size());
  for (std::size_t i = 0; i < bits.size(); ++i) y[i] = act::bf16_value(bits[i]);
  return y;
#else
  (void)codes, (void)tiled_scales, (void)e4m3_codes;
  throw Error(ExitCode::infeasible, "CUDA backend not built (RACKSIM_CUDA=OFF or no CUDA toolkit at configure time)");
#endif
}

std::size_t cuda_cublaslt_version() noexcept {
#ifdef RACKSIM_HAVE_CUDA
  return cuda::cublaslt_version();
#else
  return 0;
#endif
}

LtGemmSetup describe_cuda_gemm(LtGemm kind, std::int64_t m, std::int64_t n, std::int64_t k) {
  if (m < 1 || n < 1 || k < 1) throw InputError(fmt::format("describe_cuda_gemm: m {}, n {}, k {} must be >= 1", m, n, k));
#ifdef RACKSIM_HAVE_CUDA
  return cuda::describe_gemm(kind, m, n, k);
#else
  (void)kind;
  throw Error(ExitCode::infeasible, "CUDA backend not built (RACKSIM_CUDA=OFF or no CUDA toolkit at configure time)");
#endif
}

Nvfp4Activations cuda_quantize_nvfp4_activations(std::span<const float> x, std::int64_t rows, std::int64_t cols, float encode_scale) {
  if (rows < 1 || cols < 16 || cols % 16 != 0 || x.size() != static_cast<std::size_t>(rows * cols))
    throw InputError(fmt::format("cuda_quantize_nvfp4_activations: needs rows >= 1, cols a multiple of 16 and x of rows x cols (got {} x {}, "
                                 "{} values)",
                                 rows, cols, x.size()));
#ifdef RACKSIM_HAVE_CUDA
  const std::vector<std::uint16_t> bits = bf16_bits_of(x);
  Nvfp4Activations out;
  out.packed.resize(x.size() / 2);
  out.scales.resize(static_cast<std::size_t>(fp4::cublaslt_scale_bytes(rows, cols / 16)));
  cuda::quantize_bf16_nvfp4_host(bits.data(), rows, cols, encode_scale, out.packed.data(), out.scales.data());
  return out;
#else
  (void)encode_scale;
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
CudaDevice cuda_require_device(int device) { return cuda::require_device(device); }
MeasurementRun cuda_measurement_run(const std::string& source, int device) { return cuda::measurement_run(source, device); }
double cuda_check_gemm(std::string_view dtype_name, std::int64_t m, std::int64_t n, std::int64_t k, int device) {
  return cuda::check_gemm(dtype_name, m, n, k, device);
}
std::vector<MeasurementRecord> cuda_bench_gemm(std::span<const GemmCase> cases, const BenchTiming& timing, const RecordSink& done,
                                               int device) {
  return cuda::bench_gemm(cases, timing, done, device);
}
std::vector<MeasurementRecord> cuda_bench_memory(std::span<const double> sizes, const BenchTiming& timing, const RecordSink& done,
                                                 int device) {
  return cuda::bench_memory(sizes, timing, done, device);
}
std::vector<MeasurementRecord> cuda_bench_launch(int batch, const BenchTiming& timing, const RecordSink& done, int device) {
  return cuda::bench_launch(batch, timing, done, device);
}
std::vector<MeasurementRecord> cuda_bench_power(std::span<const GemmCase> cases, const PowerOptions& options, const RecordSink& done,
                                                int device) {
  return cuda::bench_power(cases, options, done, device);
}
NcclId cuda_nccl_unique_id() { return cuda::nccl_unique_id(); }
std::string cuda_nccl_version() { return cuda::nccl_version(); }
std::vector<MeasurementRecord> cuda_bench_collectives(std::span<const CollectiveCase> cases, const BenchTiming& timing, int gpus,
                                                      const RecordSink& done) {
  return cuda::bench_collectives(cases, timing, gpus, done);
}
std::vector<MeasurementRecord> cuda_bench_collectives_mpi(ProcessGroup& group, const RankPlacement& placement, int device, const NcclId& id,
                                                          std::span<const CollectiveCase> cases, const BenchTiming& timing,
                                                          const RecordSink& done) {
  return cuda::bench_collectives_mpi(group, placement, device, id, cases, timing, done);
}
std::vector<std::vector<float>> cuda_collective_values(CollectiveOp op, CollectiveDType dtype, const std::vector<std::vector<float>>& inputs) {
  return cuda::collective_values(op, dtype, inputs);
}
#else
CudaDevice cuda_require_device(int) { not_built(); }
MeasurementRun cuda_measurement_run(const std::string&, int) { not_built(); }
double cuda_check_gemm(std::string_view, std::int64_t, std::int64_t, std::int64_t, int) { not_built(); }
std::vector<MeasurementRecord> cuda_bench_gemm(std::span<const GemmCase>, const BenchTiming&, const RecordSink&, int) { not_built(); }
std::vector<MeasurementRecord> cuda_bench_memory(std::span<const double>, const BenchTiming&, const RecordSink&, int) { not_built(); }
std::vector<MeasurementRecord> cuda_bench_launch(int, const BenchTiming&, const RecordSink&, int) { not_built(); }
std::vector<MeasurementRecord> cuda_bench_power(std::span<const GemmCase>, const PowerOptions&, const RecordSink&, int) { not_built(); }
NcclId cuda_nccl_unique_id() { not_built(); }
std::string cuda_nccl_version() { return ""; }
std::vector<MeasurementRecord> cuda_bench_collectives(std::span<const CollectiveCase>, const BenchTiming&, int, const RecordSink&) {
  not_built();
}
std::vector<MeasurementRecord> cuda_bench_collectives_mpi(ProcessGroup&, const RankPlacement&, int, const NcclId&, std::span<const CollectiveCase>,
                                                          const BenchTiming&, const RecordSink&) {
  not_built();
}
std::vector<std::vector<float>> cuda_collective_values(CollectiveOp, CollectiveDType, const std::vector<std::vector<float>>&) { not_built(); }
#endif

// ---- The step ops (cuda_ops.hpp, cuda_ops_bench.hpp): arguments checked in every build
// (cuda_ops.cpp), then the CUDA implementation, or "built without CUDA" (exit 3).
#ifdef RACKSIM_HAVE_CUDA
#define RACKSIM_CUDA_ROUTE(fn, ...) return cuda::fn(__VA_ARGS__)
#else
namespace {
/// not_built() for a routed call: takes (and ignores) the call's arguments.
template <class... Args>
[[noreturn]] void not_built_call(const Args&...) {
  not_built();
}
}  // namespace
#define RACKSIM_CUDA_ROUTE(fn, ...) not_built_call(__VA_ARGS__)
#endif

DeviceMemory::DeviceMemory(std::size_t bytes) {
  if (bytes == 0) return;
#ifdef RACKSIM_HAVE_CUDA
  ptr_ = cuda::device_alloc(bytes);
  bytes_ = bytes;
#else
  not_built();
#endif
}

DeviceMemory::~DeviceMemory() {
#ifdef RACKSIM_HAVE_CUDA
  cuda::device_free(ptr_);
#endif
}

void DeviceMemory::upload(const void* host, std::size_t bytes, std::size_t offset) {
  if (offset > bytes_ || bytes > bytes_ - offset)
    throw InputError(fmt::format("DeviceMemory::upload: {} bytes at offset {} of {}", bytes, offset, bytes_));
  if (bytes == 0) return;
  RACKSIM_CUDA_ROUTE(copy_to_device, static_cast<char*>(ptr_) + offset, host, bytes);
}

void DeviceMemory::download(void* host, std::size_t bytes, std::size_t offset) const {
  if (offset > bytes_ || bytes > bytes_ - offset)
    throw InputError(fmt::format("DeviceMemory::download: {} bytes at offset {} of {}", bytes, offset, bytes_));
  if (bytes == 0) return;
  RACKSIM_CUDA_ROUTE(copy_to_host, host, static_cast<const char*>(ptr_) + offset, bytes);
}

void DeviceMemory::zero() {
  if (bytes_ == 0) return;
  RACKSIM_CUDA_ROUTE(device_zero, ptr_, bytes_);
}

void cuda_stream_synchronize(CudaStream stream) { RACKSIM_CUDA_ROUTE(stream_synchronize, stream); }

int cuda_sm_count() {
#ifdef RACKSIM_HAVE_CUDA
  return cuda::sm_count();
#else
  not_built();
#endif
}

void cuda_rmsnorm_launch(const Bf16* x, const Bf16* weight, std::int64_t rows, std::int64_t width, float eps, Bf16* y, CudaStream stream) {
  detail::check_rmsnorm(x, nullptr, weight, rows, width, eps, y);
  // One internal entry for both norms: without a branch the kernel only reads x.
  RACKSIM_CUDA_ROUTE(rmsnorm_launch, const_cast<Bf16*>(x), nullptr, weight, rows, width, eps, y, stream);
}

void cuda_residual_add_rmsnorm_launch(Bf16* hidden, const Bf16* branch, const Bf16* weight, std::int64_t rows, std::int64_t width,
                                      float eps, Bf16* y, CudaStream stream) {
  detail::check_rmsnorm(hidden, branch, weight, rows, width, eps, y);
  if (rows > 0 && !branch) throw InputError("residual_add_rmsnorm: branch is a null pointer");
  RACKSIM_CUDA_ROUTE(rmsnorm_launch, hidden, branch, weight, rows, width, eps, y, stream);
}

void cuda_head_rmsnorm_launch(Bf16* qkv, std::int64_t rows, std::int64_t row_width, std::int64_t q_heads, std::int64_t kv_heads,
                              std::int64_t head_dim, const Bf16* q_weight, const Bf16* k_weight, float eps, CudaStream stream) {
  detail::check_head_rmsnorm(qkv, rows, row_width, q_heads, kv_heads, head_dim, q_weight, k_weight, eps);
  RACKSIM_CUDA_ROUTE(head_rmsnorm_launch, qkv, rows, row_width, q_heads, kv_heads, head_dim, q_weight, k_weight, eps, stream);
}

void cuda_residual_add_launch(Bf16* hidden, const Bf16* branch, std::int64_t count, CudaStream stream) {
  detail::check_residual_add(hidden, branch, count);
  RACKSIM_CUDA_ROUTE(residual_add_launch, hidden, branch, count, stream);
}

void cuda_rope_rotate_half_launch(Bf16* qkv, std::int64_t rows, std::int64_t row_width, std::int64_t rotated_heads, std::int64_t head_dim,
                                  std::int64_t rotary_dim, const std::int32_t* positions, double theta, CudaStream stream) {
  detail::check_rope(qkv, rows, row_width, rotated_heads, head_dim, rotary_dim, positions, theta);
  RACKSIM_CUDA_ROUTE(rope_rotate_half_launch, qkv, rows, row_width, rotated_heads, head_dim, rotary_dim, positions, theta, stream);
}

void cuda_qk_sum_squares_launch(const Bf16* qkv, std::int64_t rows, std::int64_t row_width, std::int64_t q_width, std::int64_t k_width,
                                float* sums, CudaStream stream) {
  detail::check_qk_layer("qk_sum_squares", qkv, rows, row_width, q_width, k_width, sums, true);
  RACKSIM_CUDA_ROUTE(qk_sum_squares_launch, qkv, rows, row_width, q_width, k_width, sums, stream);
}

void cuda_qk_layer_norm_launch(Bf16* qkv, std::int64_t rows, std::int64_t row_width, std::int64_t q_width, std::int64_t k_width,
                               const float* sums, std::int64_t q_count, std::int64_t k_count, const Bf16* q_weight, const Bf16* k_weight,
                               float eps, CudaStream stream) {
  detail::check_qk_layer_norm(qkv, rows, row_width, q_width, k_width, sums, q_count, k_count, q_weight, k_weight, eps);
  RACKSIM_CUDA_ROUTE(qk_layer_norm_launch, qkv, rows, row_width, q_width, k_width, sums, q_count, k_count, q_weight, k_weight, eps, stream);
}

void cuda_swiglu_launch(const Bf16* gate_up, std::int64_t rows, std::int64_t ffn, Bf16* y, CudaStream stream) {
  detail::check_swiglu(gate_up, rows, ffn, y);
  RACKSIM_CUDA_ROUTE(swiglu_launch, gate_up, rows, ffn, y, stream);
}

void cuda_embedding_launch(const Bf16* table, std::int64_t vocab, std::int64_t width, const std::int32_t* tokens, std::int64_t rows, Bf16* y,
                           CudaStream stream) {
  detail::check_embedding(table, vocab, width, tokens, rows, y);
  RACKSIM_CUDA_ROUTE(embedding_launch, table, vocab, width, tokens, rows, y, stream);
}

void cuda_argmax_launch(const float* logits, std::int64_t rows, std::int64_t vocab, std::int32_t* tokens, CudaStream stream) {
  detail::check_argmax(logits, rows, vocab, tokens);
  RACKSIM_CUDA_ROUTE(argmax_launch, logits, rows, vocab, tokens, stream);
}

#ifdef RACKSIM_HAVE_CUDA
static_assert(cuda::kMoeMaxExperts == kCudaMoeMaxExperts && cuda::kMoeMaxTopK == kCudaMoeMaxTopK, "the MoE kernels' limits are cuda_ops.hpp's");
#endif

void cuda_moe_topk_launch(const float* logits, const float* bias, std::int64_t rows, int experts, int k, std::int32_t* expert_ids, float* weights,
                          CudaStream stream) {
  detail::check_moe_topk(logits, rows, experts, k, expert_ids, weights);
  RACKSIM_CUDA_ROUTE(moe_topk_launch, logits, bias, rows, experts, k, expert_ids, weights, stream);
}

void cuda_moe_permute_launch(const std::int32_t* expert_ids, std::int64_t assignments, int experts, int k, std::int32_t* offsets,
                             std::int32_t* position, std::int32_t* order, std::int32_t* source_rows, std::int32_t* active, CudaStream stream) {
  detail::check_moe_permute(expert_ids, assignments, experts, k, offsets, position, order, source_rows, active);
  RACKSIM_CUDA_ROUTE(moe_permute_launch, expert_ids, assignments, experts, k, offsets, position, order, source_rows, active, stream);
}

void cuda_moe_finalize_launch(const Bf16* expert_rows, const std::int32_t* position, const float* weights, std::int64_t rows, int k,
                              std::int64_t width, Bf16* y, CudaStream stream) {
  detail::check_moe_finalize(expert_rows, position, weights, rows, k, width, y);
  RACKSIM_CUDA_ROUTE(moe_finalize_launch, expert_rows, position, weights, rows, k, width, y, stream);
}

void cuda_kv_append_launch(const DevicePagedKv& cache, const Bf16* qkv, std::int64_t rows, std::int64_t row_width, std::int64_t heads,
                           const std::int32_t* slots, CudaStream stream) {
  detail::check_kv_append(cache, qkv, rows, row_width, heads, slots);
  RACKSIM_CUDA_ROUTE(kv_append_launch, cache, qkv, rows, row_width, heads, slots, stream);
}

void cuda_attention_decode_launch(const DevicePagedKv& cache, const AttentionDecodeArgs& args, CudaStream stream) {
  detail::check_attention_decode(cache, args);
  RACKSIM_CUDA_ROUTE(attention_decode_launch, cache, args, stream);
}

void cuda_attention_prefill_launch(const DevicePagedKv& cache, const AttentionPrefillArgs& args, CudaStream stream) {
  detail::check_attention_prefill(cache, args);
  RACKSIM_CUDA_ROUTE(attention_prefill_launch, cache, args, stream);
}

std::vector<MeasurementRecord> cuda_bench_attention_decode(std::span<const AttentionDecodeCase> cases, const BenchTiming& timing,
                                                           const RecordSink& done, int device) {
  RACKSIM_CUDA_ROUTE(bench_attention_decode, cases, timing, done, device);
}

std::vector<MeasurementRecord> cuda_bench_attention_prefill(std::span<const AttentionPrefillCase> cases, const BenchTiming& timing,
                                                            const RecordSink& done, int device) {
  RACKSIM_CUDA_ROUTE(bench_attention_prefill, cases, timing, done, device);
}

std::vector<MeasurementRecord> cuda_bench_elementwise(std::span<const ElementwiseCase> cases, const BenchTiming& timing,
                                                      const RecordSink& done, int device) {
  RACKSIM_CUDA_ROUTE(bench_elementwise, cases, timing, done, device);
}

#undef RACKSIM_CUDA_ROUTE

}  // namespace racksim::exec
