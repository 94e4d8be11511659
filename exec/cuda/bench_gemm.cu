// racksim bench gemm / power on one CUDA device (--device cuda:N): one GemmRunner per case owns the operands and the
// cuBLASLt plan of one of five paths (bench.hpp gemm_case):
//   bf16 x bf16 -> bf16 and fp8 x fp8 -> bf16 (per-tensor A/B scale pointers): cuBLASLt;
//   nvfp4 x nvfp4 -> bf16 (VEC16_UE4M3 block scales, sm_100+): cuBLASLt;
//   bf16 x nvfp4 -> bf16 (Hopper), M <= 128 and K % 32 == 0: fp4_gemm_mma (tensor cores, fused);
//   bf16 x nvfp4 -> bf16 (Hopper, larger M): dequantize W each call, then cuBLASLt (Fp4LargeM:
//   BF16, or E4M3 W and x + cuBLASLt FP8 under RACKSIM_FP4_LARGE_M=fp8).
// cuBLASLt is called in "TN" form, which FP8 and FP4 require: y[M x N] row-major is the
// column-major N x M D = op(A) B with A = W stored K-major (transa = T) and B = x (K x M).

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <random>
#include <thread>

#include "bench_cuda.hpp"
#include "device_buffer.cuh"
#include "fp4_gemm_mma.hpp"
#include "fp4_large_m.cuh"
#include "lt_plan.cuh"
#include "random_fill.cuh"
#include "nvml_power.hpp"
#include "racksim/exec/fp4.hpp"
#include "racksim/exec/fp4_gemm_path.hpp"
#include "racksim/exec/fp4_matrix.hpp"

namespace racksim::exec::cuda {

namespace {

constexpr std::size_t kWorkspaceBytes = kLtWorkspaceBytes;
constexpr int kScaleStride = 4;  // floats between the FP8 A and B scales: 16 bytes

enum class Path { lt_bf16, lt_fp8, lt_nvfp4, mma_fp4, dequant_fp4 };

Path path_of(const GemmCase& c) {
  using D = DType;
  if (c.a == D::bf16 && c.w == D::bf16 && c.c == D::bf16) return Path::lt_bf16;
  if (c.a == D::fp8 && c.w == D::fp8 && c.c == D::bf16) return Path::lt_fp8;
  if (c.a == D::nvfp4 && c.w == D::nvfp4 && c.c == D::bf16) return Path::lt_nvfp4;
  if (c.a == D::bf16 && c.w == D::nvfp4 && c.c == D::bf16) return fp4_mma_supported(c.m, c.n, c.k) ? Path::mma_fp4 : Path::dequant_fp4;
  throw InputError(text("bench gemm: no GEMM path for a=", to_string(c.a), " w=", to_string(c.w), " c=", to_string(c.c)));
}

const char* path_name(Path p) {
  switch (p) {
    case Path::lt_bf16: return "cuBLASLt bf16";
    case Path::lt_fp8: return "cuBLASLt fp8 e4m3 (per-tensor scales)";
    case Path::lt_nvfp4: return "cuBLASLt nvfp4 (VEC16_UE4M3)";
    case Path::mma_fp4: return "fp4_gemm_mma (Hopper FP4 weights, tensor cores)";
    case Path::dequant_fp4:
      return large_m_fp8_knob() ? "nvfp4 -> e4m3 dequant, x -> e4m3 (per-tensor) + cuBLASLt fp8" : "nvfp4 -> bf16 dequant + cuBLASLt bf16";
  }
  return "?";
}

// ---- random operands (never zeros: METHOD.md, zeros run faster than real data) -------------

__global__ void fill_fp8_kernel(__nv_fp8_storage_t* p, std::size_t n, std::uint64_t seed) {
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n; i += std::size_t{gridDim.x} * blockDim.x)
    p[i] = __nv_cvt_float_to_fp8(uniform_pm1(seed, i) * 448.0f, __NV_SATFINITE, __NV_E4M3);
}

// ---- one GEMM: operands and plan ------------------------------------------------------------

/// Operands of one case on the device, filled by fill_random() or upload(), and its plan.
class GemmRunner {
 public:
  GemmRunner(cublasLtHandle_t h, const GemmCase& c, void* workspace) : h_(h), c_(c), path_(path_of(c)), ws_(workspace) {
    const auto m = static_cast<std::size_t>(c.m), n = static_cast<std::size_t>(c.n), k = static_cast<std::size_t>(c.k);
    switch (path_) {
      case Path::lt_bf16:
        w_ = DeviceBytes(n * k * 2), x_ = DeviceBytes(m * k * 2), d_ = DeviceBytes(m * n * 2);
        break;
      case Path::lt_fp8:
        // The two per-tensor scales 16 bytes apart: cuBLASLt refused every algorithm with the B scale
        // 4 bytes after A's (H200, cuBLASLt 13.1, 2026-11-30); each now starts its own 16-byte unit.
        w_ = DeviceBytes(n * k), x_ = DeviceBytes(m * k), d_ = DeviceBytes(m * n * 2), scal_ = DeviceBytes(kScaleStride * 2 * sizeof(float));
        break;
      case Path::lt_nvfp4:
        w_ = DeviceBytes(n * k / 2), x_ = DeviceBytes(m * k / 2), d_ = DeviceBytes(m * n * 2);
        w_scales_ = DeviceBytes(static_cast<std::size_t>(fp4::cublaslt_scale_bytes(c.n, c.k / 16)));
        x_scales_ = DeviceBytes(static_cast<std::size_t>(fp4::cublaslt_scale_bytes(c.m, c.k / 16)));
        break;
      case Path::mma_fp4: {
        int dev = 0;
        RACKSIM_CUDA_CHECK(cudaGetDevice(&dev));
        RACKSIM_CUDA_CHECK(cudaDeviceGetAttribute(&sms_, cudaDevAttrMultiProcessorCount, dev));
        w_ = DeviceBytes(n * k / 2), w_scales_ = DeviceBytes(n * k / 16), x_ = DeviceBytes(m * k * 2), d_ = DeviceBytes(m * n * 2);
        tile_buffers();
        const auto ws = static_cast<std::size_t>(fp4_mma_plan(c.m, c.n, c.k, sms_).workspace_bytes);
        if (ws) mma_ws_ = DeviceBytes(ws);
        break;
      }
      case Path::dequant_fp4:
        w_ = DeviceBytes(n * k / 2), w_scales_ = DeviceBytes(n * k / 16), large_m_ = Fp4LargeM(c.n * c.k, c.m * c.k, large_m_fp8_knob());
        x_ = DeviceBytes(m * k * 2), d_ = DeviceBytes(m * n * 2);
        if (fp4_mma_supported(1, c.n, c.k)) tile_buffers();  // the executor holds such a weight tiled
        break;
    }
    if (path_ == Path::dequant_fp4)
      plan_ = large_m_.make_plan(h, c.m, c.n, c.k);
    else if (path_ == Path::lt_bf16)
      plan_ = std::make_unique<LtPlan>(h, CUDA_R_16BF, CUDA_R_16BF, c.m, c.n, c.k, nullptr, nullptr, false);
    else if (path_ == Path::lt_fp8)
      plan_ = std::make_unique<LtPlan>(h, CUDA_R_8F_E4M3, CUDA_R_16BF, c.m, c.n, c.k, scal_.as<float>(), scal_.as<float>() + kScaleStride, false);
    else if (path_ == Path::lt_nvfp4)
      plan_ = std::make_unique<LtPlan>(h, CUDA_R_4F_E2M1, CUDA_R_16BF, c.m, c.n, c.k, w_scales_.as(), x_scales_.as(), true);
  }

  [[nodiscard]] Path path() const noexcept { return path_; }

  /// RACKSIM_FP4_MMA_TUNE=on, on the fused path: the variants timed as the step executor times
  /// them (fp4_mma_tune, 15 rounds, cold L2 when `flush` is set), the pick kept for run() and
  /// printed to stderr (never into a measurement file written to stdout) with its ratio to the
  /// environment's knobs; the operands must be filled.
  void tune(cudaStream_t s, DeviceBytes& flush) {
    if (path_ != Path::mma_fp4) return;
    const Fp4MmaTuneResult r = fp4_mma_tune(x_.as<std::uint16_t>(), c_.m, c_.n, c_.k, wt_.as<std::uint8_t>(), wt_scales_.as<std::uint8_t>(),
                                            tensor_scale_, d_.as<std::uint16_t>(), mma_ws_.size() ? mma_ws_.as<float>() : nullptr, sms_, s, 15,
                                            flush.size() ? &flush : nullptr);
    tuned_ = r.candidates[r.pick];
    std::fprintf(stderr, "  tuned m=%lld n=%lld k=%lld over %zu variants: %s, %.1f us (%.2fx the %s launch's %.1f us)\n", static_cast<long long>(c_.m),
                static_cast<long long>(c_.n), static_cast<long long>(c_.k), r.candidates.size(), fp4_mma_knobs_words(*tuned_).c_str(),
                r.median_s[r.pick] * 1e6, r.median_s[r.pick] / r.median_s[0], fp4_mma_knobs_words(r.candidates[0]).c_str(), r.median_s[0] * 1e6);
  }
  /// Another runner's tuner pick (the same case), so that the copies of --timing graph run alike.
  void adopt_tuning(const GemmRunner& o) { tuned_ = o.tuned_; }
  [[nodiscard]] const DeviceBytes& output() const noexcept { return d_; }

  /// Random operands: values in [-1, 1) (FP8: [-448, 448) with scales 1/448), E2M1 codes
  /// uniform over all 16, UE4M3 block scales uniform over [0.5, 1) x 2^0..2^1 (codes 0x30..0x3F).
  void fill_random(std::uint64_t seed, cudaStream_t s) {
    const auto m = static_cast<std::size_t>(c_.m), n = static_cast<std::size_t>(c_.n), k = static_cast<std::size_t>(c_.k);
    switch (path_) {
      case Path::lt_bf16:
        fill_bf16(w_, n * k, seed, s), fill_bf16(x_, m * k, seed + 1, s);
        break;
      case Path::lt_fp8: {
        fill_fp8_kernel<<<fill_grid(n * k), 256, 0, s>>>(w_.as<__nv_fp8_storage_t>(), n * k, seed);
        fill_fp8_kernel<<<fill_grid(m * k), 256, 0, s>>>(x_.as<__nv_fp8_storage_t>(), m * k, seed + 1);
        const float sc[kScaleStride + 1] = {1.0f / 448, 0, 0, 0, 1.0f / 448};
        RACKSIM_CUDA_CHECK(cudaMemcpyAsync(scal_.as(), sc, sizeof sc, cudaMemcpyHostToDevice, s));
        RACKSIM_CUDA_CHECK(cudaStreamSynchronize(s));
        break;
      }
      case Path::lt_nvfp4:
        fill_bytes(w_, seed, 0, 256, s), fill_bytes(x_, seed + 1, 0, 256, s);
        fill_bytes(w_scales_, seed + 2, 0x30, 16, s), fill_bytes(x_scales_, seed + 3, 0x30, 16, s);
        alpha_ = 1.0f;
        break;
      case Path::mma_fp4:
      case Path::dequant_fp4:
        fill_bytes(w_, seed, 0, 256, s), fill_bytes(w_scales_, seed + 2, 0x30, 16, s), fill_bf16(x_, m * k, seed + 1, s);
        tensor_scale_ = 1.0f;
        retile(s);
        break;
    }
    RACKSIM_CUDA_CHECK(cudaGetLastError());
  }

  /// The tiled copy of W (fp4_gemm_path.hpp) that the Hopper step executor holds and the fused
  /// kernel and the tiled dequantize read.
  void tile_buffers() {
    const Fp4MmaTiling t = fp4_mma_tiling(c_.n, c_.k);
    wt_ = DeviceBytes(static_cast<std::size_t>(t.code_bytes)), wt_scales_ = DeviceBytes(static_cast<std::size_t>(t.scale_bytes));
  }
  void retile(cudaStream_t s) {
    if (wt_.size() == 0) return;
    fp4_mma_tile_launch(w_.as<std::uint8_t>(), w_scales_.as<std::uint8_t>(), c_.n, c_.k, wt_.as<std::uint8_t>(), wt_scales_.as<std::uint8_t>(), s);
  }

  /// Host copies of the operands in their device formats (the correctness check).
  void upload(const void* w, const void* x, const void* w_scales, const void* x_scales, float a_scale, float b_scale, float alpha,
              float tensor_scale) {
    RACKSIM_CUDA_CHECK(cudaMemcpy(w_.as(), w, w_.size(), cudaMemcpyHostToDevice));
    RACKSIM_CUDA_CHECK(cudaMemcpy(x_.as(), x, x_.size(), cudaMemcpyHostToDevice));
    if (w_scales) RACKSIM_CUDA_CHECK(cudaMemcpy(w_scales_.as(), w_scales, w_scales_.size(), cudaMemcpyHostToDevice));
    if (x_scales) RACKSIM_CUDA_CHECK(cudaMemcpy(x_scales_.as(), x_scales, x_scales_.size(), cudaMemcpyHostToDevice));
    if (scal_.size()) {
      const float sc[kScaleStride + 1] = {a_scale, 0, 0, 0, b_scale};
      RACKSIM_CUDA_CHECK(cudaMemcpy(scal_.as(), sc, sizeof sc, cudaMemcpyHostToDevice));
    }
    alpha_ = alpha;
    tensor_scale_ = tensor_scale;
    retile(nullptr);
    RACKSIM_CUDA_CHECK(cudaDeviceSynchronize());
  }

  /// One call of the op as a serving step would make it (the Hopper FP4 large-M path includes
  /// the dequantization of W).
  void run(cudaStream_t s) const {
    switch (path_) {
      case Path::lt_bf16:
      case Path::lt_fp8:
      case Path::lt_nvfp4:
        plan_->run(h_, alpha_, w_.as(), x_.as(), d_.as(), ws_, s);
        break;
      case Path::mma_fp4:
        fp4_gemm_mma_launch(x_.as<std::uint16_t>(), c_.m, c_.n, c_.k, wt_.as<std::uint8_t>(), wt_scales_.as<std::uint8_t>(), tensor_scale_,
                            d_.as<std::uint16_t>(), mma_ws_.size() ? mma_ws_.as<float>() : nullptr, sms_, s, tuned_ ? &*tuned_ : nullptr);
        break;
      case Path::dequant_fp4: {
        const bool tiled = wt_.size() > 0;
        large_m_.run(h_, *plan_, (tiled ? wt_ : w_).as<std::uint8_t>(), (tiled ? wt_scales_ : w_scales_).as<std::uint8_t>(), tiled,
                     tensor_scale_, x_.as<__nv_bfloat16>(), c_.m, c_.n, c_.k, d_.as<__nv_bfloat16>(), ws_, s);
        break;
      }
    }
  }

 private:
  static void fill_bf16(const DeviceBytes& b, std::size_t n, std::uint64_t seed, cudaStream_t s) {
    cuda::fill_bf16(b.as<std::uint16_t>(), n, seed, 0.0f, 1.0f, s);
  }
  static void fill_bytes(const DeviceBytes& b, std::uint64_t seed, unsigned lo, unsigned span, cudaStream_t s) {
    cuda::fill_bytes(b.as<std::uint8_t>(), b.size(), seed, lo, span, s);
  }

  cublasLtHandle_t h_;
  GemmCase c_;
  Path path_;
  void* ws_;
  DeviceBytes w_, x_, d_, w_scales_, x_scales_, scal_, mma_ws_, wt_, wt_scales_;
  Fp4LargeM large_m_;
  int sms_ = 1;
  std::optional<Fp4MmaKnobs> tuned_;  ///< the tuner's pick (RACKSIM_FP4_MMA_TUNE=on), else the environment's knobs
  std::unique_ptr<LtPlan> plan_;
  float alpha_ = 1.0f;
  float tensor_scale_ = 1.0f;
};

/// cuBLASLt handle and workspace for a bench, released on scope exit.
class LtContext {
 public:
  LtContext() : ws_(kWorkspaceBytes) { RACKSIM_CUBLAS_CHECK(cublasLtCreate(&h_)); }
  ~LtContext() { cublasLtDestroy(h_); }
  LtContext(const LtContext&) = delete;
  LtContext& operator=(const LtContext&) = delete;
  [[nodiscard]] cublasLtHandle_t handle() const noexcept { return h_; }
  [[nodiscard]] void* workspace() const noexcept { return ws_.as(); }

 private:
  cublasLtHandle_t h_ = nullptr;
  DeviceBytes ws_;
};


std::vector<std::uint16_t> to_bf16_bits(const std::vector<float>& v, std::vector<float>* rounded) {
  std::vector<std::uint16_t> out(v.size());
  rounded->resize(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    const __nv_bfloat16 b = __float2bfloat16_rn(v[i]);
    (*rounded)[i] = __bfloat162float(b);
    out[i] = __bfloat16_as_ushort(b);
  }
  return out;
}

std::vector<std::uint8_t> to_fp8(const std::vector<float>& v, float scale, std::vector<float>* rounded) {
  std::vector<std::uint8_t> out(v.size());
  rounded->resize(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    const __nv_fp8_e4m3 q(v[i] / scale);
    out[i] = q.__x;
    (*rounded)[i] = static_cast<float>(q) * scale;
  }
  return out;
}

float amax(const std::vector<float>& v) {
  float a = 0;
  for (float x : v) a = std::max(a, std::fabs(x));
  return a > 0 ? a : 1.0f;
}

}  // namespace

double check_gemm(std::string_view dtype_name, std::int64_t m, std::int64_t n, std::int64_t k, int device) {
  const GemmCase c = gemm_case(dtype_name, GemmShape{"check", n, k}, m, require_device(device).sm_major);
  LtContext lt;
  GemmRunner run(lt.handle(), c, lt.workspace());
  const auto mu = static_cast<std::size_t>(m), nu = static_cast<std::size_t>(n), ku = static_cast<std::size_t>(k);
  // Fresh random inputs each call (METHOD.md): the seed comes from the clock.
  std::mt19937_64 rng(static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> x(mu * ku), w(nu * ku), xr, wr;  // xr, wr: the values the device multiplies
  for (auto& v : x) v = u(rng);
  for (auto& v : w) v = u(rng) * std::exp2(3.0f * u(rng));
  switch (run.path()) {
    case Path::lt_bf16: {
      const auto wb = to_bf16_bits(w, &wr), xb = to_bf16_bits(x, &xr);
      run.upload(wb.data(), xb.data(), nullptr, nullptr, 1, 1, 1, 1);
      break;
    }
    case Path::lt_fp8: {
      const float sw = amax(w) / 448, sx = amax(x) / 448;  // per-tensor scales: amax maps to E4M3's max
      const auto wq = to_fp8(w, sw, &wr), xq = to_fp8(x, sx, &xr);
      run.upload(wq.data(), xq.data(), nullptr, nullptr, sw, sx, 1, 1);
      break;
    }
    case Path::lt_nvfp4: {
      const Fp4Matrix qw = quantize_fp4(DType::nvfp4, w, n, k), qx = quantize_fp4(DType::nvfp4, x, m, k);
      wr = dequantize(qw), xr = dequantize(qx);
      const auto sw = swizzle_scales_cublaslt(qw.scales, n, k / 16), sx = swizzle_scales_cublaslt(qx.scales, m, k / 16);
      run.upload(qw.packed.data(), qx.packed.data(), sw.data(), sx.data(), 1, 1, qw.tensor_scale * qx.tensor_scale, 1);
      break;
    }
    case Path::mma_fp4:
    case Path::dequant_fp4: {
      const Fp4Matrix qw = quantize_fp4(DType::nvfp4, w, n, k);
      wr = dequantize(qw);
      const auto xb = to_bf16_bits(x, &xr);
      run.upload(qw.packed.data(), xb.data(), qw.scales.data(), nullptr, 1, 1, 1, qw.tensor_scale);
      if (run.path() == Path::dequant_fp4 && large_m_fp8_knob()) {
        // The values the FP8 variant multiplies: its E4M3 codes of W x 8 / tensor_scale and of x / x_scale.
        const Fp8LargeMOperands o = fp4_large_m_fp8_operands(xr, m, qw);
        const double ws = static_cast<double>(qw.tensor_scale) * act::kNvfp4E4m3WeightDivisor;
        for (std::size_t i = 0; i < wr.size(); ++i) wr[i] = static_cast<float>(act::e4m3_value(o.w[i]) * ws);
        for (std::size_t i = 0; i < xr.size(); ++i) xr[i] = act::e4m3_value(o.x[i]) * o.x_scale;
      }
      break;
    }
  }
  // Poison the output (all-ones bytes: NaN in BF16) so an unwritten element fails.
  RACKSIM_CUDA_CHECK(cudaMemset(run.output().as(), 0xFF, run.output().size()));
  run.run(nullptr);
  RACKSIM_CUDA_CHECK(cudaGetLastError());
  RACKSIM_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<float> got(mu * nu);
  std::vector<std::uint16_t> bits(mu * nu);  // every path writes BF16
  RACKSIM_CUDA_CHECK(cudaMemcpy(bits.data(), run.output().as(), mu * nu * 2, cudaMemcpyDeviceToHost));
  for (std::size_t i = 0; i < bits.size(); ++i) got[i] = __bfloat162float(__ushort_as_bfloat16(bits[i]));
  double err2 = 0, ref2 = 0;
  std::size_t bad = 0;
  for (std::size_t r = 0; r < mu; ++r)
    for (std::size_t j = 0; j < nu; ++j) {
      double ref = 0;
      for (std::size_t i = 0; i < ku; ++i) ref += static_cast<double>(xr[r * ku + i]) * wr[j * ku + i];
      const double g = got[r * nu + j];
      if (!std::isfinite(g)) ++bad;
      err2 += (g - ref) * (g - ref);
      ref2 += ref * ref;
    }
  const double rel = std::sqrt(err2 / std::max(ref2, 1e-300));
  // BF16 output: one rounding of 2^-9 relative per element.
  const double tol = 1e-2;
  if (bad || !(rel <= tol))
    throw Error(ExitCode::internal,
                text("GEMM check failed: ", path_name(run.path()), " (", dtype_name, " m=", m, " n=", n, " k=", k, " a=",
                     to_string(c.a), " w=", to_string(c.w), " c=", to_string(c.c), "): relative error ", rel, " (tolerance ", tol,
                     "), ", bad, " non-finite outputs"));
  return rel;
}

namespace {

/// --timing graph: graph_banks() runners of the case (each its own random operands, so the
/// rotation reads fresh lines from DRAM), the first tuned and its pick adopted by the others,
/// one eager call to size the graph (graph_calls), then time_graph over the runners in turn.
std::vector<double> gemm_graph_times(const LtContext& lt, const GemmCase& c, const BenchTiming& t, const CudaDevice& dev, cudaStream_t s,
                                     std::vector<EventPair>& ev, std::uint64_t seed, bool tune, DeviceBytes& flush) {
  const double bytes = gemm_record(c, TimingStats{1, 1, 1, 1}).bytes_moved.value_or(0);
  const int banks = graph_banks(bytes, dev.l2_bytes);
  std::vector<std::unique_ptr<GemmRunner>> runs;
  for (int b = 0; b < banks; ++b) {
    runs.push_back(std::make_unique<GemmRunner>(lt.handle(), c, lt.workspace()));
    runs.back()->fill_random(seed + kGraphCopySeedStride * static_cast<std::uint64_t>(b), s);
  }
  if (tune) {
    runs[0]->tune(s, flush);
    for (auto& r : runs) r->adopt_tuning(*runs[0]);
  }
  // A serial split-K launch takes its counters from an array a graph cannot allocate.
  if (runs[0]->path() == Path::mma_fp4) fp4_mma_serial_prepare();
  return time_graph_rotating(s, t, ev, bytes, banks, dev.l2_bytes, [&](int i) { runs[static_cast<std::size_t>(i % banks)]->run(s); });
}

}  // namespace

std::vector<MeasurementRecord> bench_gemm(std::span<const GemmCase> cases, const BenchTiming& t, const RecordSink& done, int device) {
  const CudaDevice dev = require_device(device);
  LtContext lt;
  Stream stream;
  const cudaStream_t s = stream.get();
  static const bool tune = fp4_mma_tune_knob(std::getenv("RACKSIM_FP4_MMA_TUNE"));
  // Under --timing graph the flush serves the tuner only (it times each variant cold, as the
  // step executor's tuner does).
  DeviceBytes flush(t.flush_l2 || (t.graph && tune) ? 2 * static_cast<std::size_t>(dev.l2_bytes) : 0);
  std::vector<EventPair> ev(static_cast<std::size_t>(std::max(t.max_reps, 1)));
  std::vector<MeasurementRecord> out;
  std::uint64_t seed = 1;
  for (const GemmCase& c : cases) {
    if (t.graph) {
      const std::vector<double> times = gemm_graph_times(lt, c, t, dev, s, ev, seed += 8, tune, flush);
      out.push_back(gemm_record(c, timing_stats(std::span<const double>(times.data(), times.size()))));
      if (done) done(out.back());
      continue;
    }
    GemmRunner run(lt.handle(), c, lt.workspace());
    run.fill_random(seed += 8, s);
    if (tune) run.tune(s, flush);
    const std::vector<double> times = time_calls(s, t, flush, ev, [&](int) { run.run(s); });
    out.push_back(gemm_record(c, timing_stats(std::span<const double>(times.data(), times.size()))));
    if (done) done(out.back());
  }
  return out;
}

std::vector<MeasurementRecord> bench_power(std::span<const GemmCase> cases, const PowerOptions& o, const RecordSink& done, int device) {
  (void)require_device(device);
  char bus[32] = {};
  RACKSIM_CUDA_CHECK(cudaDeviceGetPCIBusId(bus, sizeof bus, device));
  const NvmlDevice dev(bus);
  if (!dev.ok()) throw InfeasibleError("bench power: NVML unavailable: " + dev.why());
  using Clock = std::chrono::steady_clock;
  const auto secs = [](Clock::duration d) { return std::chrono::duration<double>(d).count(); };
  const auto summarize = [&](PowerSampler& sampler, PowerSample& p) {
    const auto& samples = sampler.stop();
    double sum = 0, clock = 0;
    std::uint64_t reasons = 0;
    for (const auto& x : samples) sum += x.power_w, clock += x.sm_clock_mhz, reasons |= x.reasons;
    p.samples = static_cast<std::int64_t>(samples.size());
    if (!samples.empty()) p.mean_power_w = sum / static_cast<double>(samples.size());
    if (!samples.empty() && clock > 0) p.mean_sm_clock_mhz = clock / static_cast<double>(samples.size());
    p.clock_events = reasons;
    std::printf("  %lld power samples, mean SM clock %.0f MHz, clock-event reasons seen 0x%llx\n",
                static_cast<long long>(p.samples), samples.empty() ? 0.0 : clock / static_cast<double>(samples.size()),
                static_cast<unsigned long long>(reasons));
  };
  std::vector<MeasurementRecord> out;
  {  // Idle first, before the loads warm the card.
    RACKSIM_CUDA_CHECK(cudaDeviceSynchronize());
    PowerSample p;
    const auto e0 = dev.energy_j();
    const auto t0 = Clock::now();
    PowerSampler sampler(dev, o.sample_interval_s);
    std::this_thread::sleep_for(std::chrono::duration<double>(o.idle_s));
    const auto e1 = dev.energy_j();
    p.seconds = secs(Clock::now() - t0);
    if (e0 && e1) p.energy_j = *e1 - *e0;
    summarize(sampler, p);
    out.push_back(idle_record(p));
    if (done) done(out.back());
  }
  LtContext lt;
  Stream stream;
  const cudaStream_t s = stream.get();
  for (const GemmCase& c : cases) {
    GemmRunner run(lt.handle(), c, lt.workspace());
    run.fill_random(99, s);
    // Ramp: back-to-back calls until ramp_s has passed; its rate sets the batch (~20 ms) per sync.
    std::int64_t calls = 0;
    auto t0 = Clock::now();
    do {
      run.run(s);
      ++calls;
      if (calls % 16 == 0) RACKSIM_CUDA_CHECK(cudaStreamSynchronize(s));
    } while (secs(Clock::now() - t0) < o.ramp_s);
    RACKSIM_CUDA_CHECK(cudaStreamSynchronize(s));
    const double per_call = secs(Clock::now() - t0) / static_cast<double>(calls);
    const auto batch = static_cast<std::int64_t>(std::clamp(0.02 / per_call, 1.0, 100000.0));
    PowerSample p;
    const auto e0 = dev.energy_j();
    t0 = Clock::now();
    PowerSampler sampler(dev, o.sample_interval_s);
    calls = 0;
    while (secs(Clock::now() - t0) < o.seconds) {
      for (std::int64_t i = 0; i < batch; ++i) run.run(s);
      calls += batch;
      RACKSIM_CUDA_CHECK(cudaStreamSynchronize(s));
    }
    p.seconds = secs(Clock::now() - t0);
    const auto e1 = dev.energy_j();
    RACKSIM_CUDA_CHECK(cudaGetLastError());
    p.calls = calls;
    if (e0 && e1) p.energy_j = *e1 - *e0;
    summarize(sampler, p);
    out.push_back(power_record(c, p));
    if (done) done(out.back());
  }
  return out;
}

}  // namespace racksim::exec::cuda
