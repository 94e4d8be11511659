// racksim bench memory / launch on one CUDA device (--device cuda:N), and what every measurement file records about
// the device (name, driver, runtime, clocks, power limit).

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "bench_cuda.hpp"
#include "device_buffer.cuh"
#include "nvml_power.hpp"

namespace racksim::exec::cuda {

namespace {

std::string version_text(int v) { return text(v / 1000, ".", (v % 1000) / 10); }

/// Reads every 16-byte word once; writes only if the XOR of all is a magic value (never in
/// practice), which the compiler cannot prove, so the loads stay.
__global__ void read_kernel(const uint4* __restrict__ p, std::size_t n, unsigned* __restrict__ sink) {
  unsigned acc = 0;
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n; i += std::size_t{gridDim.x} * blockDim.x) {
    const uint4 v = p[i];
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x9E3779B9u) *sink = acc;
}

__global__ void empty_kernel() {}

}  // namespace

void evict_l2(DeviceBytes& flush, cudaStream_t s) {
  if (flush.size() < sizeof(uint4)) return;
  read_kernel<<<1024, 256, 0, s>>>(flush.as<uint4>(), flush.size() / sizeof(uint4), flush.as<unsigned>());
  RACKSIM_CUDA_CHECK(cudaGetLastError());
}

CudaDevice require_device(int device) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw InfeasibleError(text("no CUDA device: cudaGetDeviceCount: ", cudaGetErrorString(e), " (", cudaGetErrorName(e), ")"));
  }
  if (n == 0) throw InfeasibleError("no CUDA device: the driver sees none");
  if (device < 0 || device >= n)
    throw InputError(text("racksim bench: --device: 'cuda:", device, "' is not a visible device; allowed: cuda:0..cuda:", n - 1));
  cudaDeviceProp p{};
  RACKSIM_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
  RACKSIM_CUDA_CHECK(cudaSetDevice(device));
  return {p.name, p.major, p.minor, p.multiProcessorCount, p.l2CacheSize, static_cast<std::int64_t>(p.totalGlobalMem)};
}

MeasurementRun measurement_run(const std::string& source, int device) {
  const CudaDevice d = require_device(device);
  MeasurementRun r;
  r.device = d.name;
  r.gpu = catalog_gpu_id(d.name);
  int runtime = 0, driver = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);
  r.cuda = version_text(runtime);
  r.software = text("cuBLASLt ", cublasLtGetVersion(), "; sm_", d.sm_major, d.sm_minor);
  char bus[32] = {};
  RACKSIM_CUDA_CHECK(cudaDeviceGetPCIBusId(bus, sizeof bus, device));
  const NvmlDevice nvml(bus);
  r.driver = nvml.driver_version().value_or("CUDA driver API " + version_text(driver));
  r.sm_clock_mhz = nvml.sm_clock_mhz();
  r.memory_clock_mhz = nvml.memory_clock_mhz();
  r.power_limit_w = nvml.power_limit_w();
  r.temperature_c = nvml.temperature_c();
  if (!nvml.ok()) std::fprintf(stderr, "note: NVML unavailable (%s): no clocks, power limit or temperature recorded\n", nvml.why().c_str());
  r.nccl = nccl_version();  // the library linked in, whether or not the run used it ("" if it does not answer)
  r.date = utc_now_iso8601();
  r.commit = build_commit();
  r.source = source;
  return r;
}

std::vector<MeasurementRecord> bench_memory(std::span<const double> sizes, const BenchTiming& t, const RecordSink& done, int device) {
  const CudaDevice d = require_device(device);
  if (sizes.empty()) return {};
  const auto largest = static_cast<std::size_t>(*std::max_element(sizes.begin(), sizes.end()));
  const std::size_t span = std::max(largest, 4 * static_cast<std::size_t>(d.l2_bytes));
  DeviceBytes src(span), dst(span), sink(sizeof(unsigned));
  DeviceBytes flush(t.flush_l2 ? 2 * static_cast<std::size_t>(d.l2_bytes) : 0);
  RACKSIM_CUDA_CHECK(cudaMemset(src.as(), 0x5A, span));
  RACKSIM_CUDA_CHECK(cudaMemset(dst.as(), 0, span));
  Stream stream;
  const cudaStream_t s = stream.get();
  std::vector<EventPair> ev(static_cast<std::size_t>(std::max(t.max_reps, 1)));
  std::vector<MeasurementRecord> out;
  for (const char* variant : {"copy", "read"}) {
    const bool copy = std::string_view(variant) == "copy";
    for (double size_d : sizes) {
      const auto size = static_cast<std::size_t>(size_d);
      // Offsets rotate through the buffer (256-byte aligned) so each call reads fresh lines.
      const std::size_t step = (size + 255) / 256 * 256, room = span - size + 1;
      const auto call = [&](int r) {
        const std::size_t off = (static_cast<std::size_t>(r) * step) % room / 256 * 256;
        if (copy) {
          RACKSIM_CUDA_CHECK(cudaMemcpyAsync(dst.as<char>() + off, src.as<char>() + off, size, cudaMemcpyDeviceToDevice, s));
        } else {
          const std::size_t words = size / 16;
          const auto grid = static_cast<unsigned>(std::clamp<std::size_t>((words + 511) / 512, 1, 8 * static_cast<std::size_t>(d.sm_count)));
          read_kernel<<<grid, 512, 0, s>>>(reinterpret_cast<const uint4*>(src.as<char>() + off), words, sink.as<unsigned>());
        }
      };
      std::vector<double> times;
      if (t.graph) {
        // Back to back: enough offsets (up to kGraphMaxCalls) that the rotation (over a span of
        // >= 4 x L2) touches 2 x L2 of fresh lines before it comes back to one; below
        // 2 x L2 / kGraphMaxCalls bytes (31 KB on an H200) the calls partly hit the L2.
        const double fresh = std::ceil(2.0 * static_cast<double>(d.l2_bytes) / size_d);
        const int offsets = static_cast<int>(std::clamp(fresh, 1.0, static_cast<double>(kGraphMaxCalls)));
        times = time_graph_rotating(s, t, ev, size_d, offsets, d.l2_bytes, call);
      } else {
        times = time_calls(s, t, flush, ev, call);
      }
      out.push_back(memory_record(variant, size_d, timing_stats(std::span<const double>(times.data(), times.size()))));
      if (done) done(out.back());
    }
  }
  return out;
}

std::vector<MeasurementRecord> bench_launch(int batch, const BenchTiming& t, const RecordSink& done, int device) {
  (void)require_device(device);
  if (batch < 1) throw InputError(text("bench launch: --batch ", batch, " must be >= 1"));
  Stream stream;
  const cudaStream_t s = stream.get();
  const int reps = std::max(t.min_reps, std::min(t.max_reps, 20));
  std::vector<EventPair> ev(static_cast<std::size_t>(reps));
  std::vector<MeasurementRecord> out;
  const auto timed = [&](const char* variant, const auto& launch_all) {
    for (int i = 0; i < std::max(t.warmup, 1); ++i) launch_all();
    RACKSIM_CUDA_CHECK(cudaStreamSynchronize(s));
    for (int r = 0; r < reps; ++r) {
      RACKSIM_CUDA_CHECK(cudaEventRecord(ev[static_cast<std::size_t>(r)].start, s));
      launch_all();
      RACKSIM_CUDA_CHECK(cudaEventRecord(ev[static_cast<std::size_t>(r)].stop, s));
      RACKSIM_CUDA_CHECK(cudaStreamSynchronize(s));
    }
    RACKSIM_CUDA_CHECK(cudaGetLastError());
    std::vector<double> times;
    for (int r = 0; r < reps; ++r) times.push_back(ev[static_cast<std::size_t>(r)].elapsed_s() / batch);
    out.push_back(launch_record(variant, timing_stats(std::span<const double>(times.data(), times.size()))));
    if (done) done(out.back());
  };
  timed("kernel", [&] {
    for (int i = 0; i < batch; ++i) empty_kernel<<<1, 32, 0, s>>>();
  });
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  RACKSIM_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < batch; ++i) empty_kernel<<<1, 32, 0, s>>>();
  RACKSIM_CUDA_CHECK(cudaStreamEndCapture(s, &graph));
  const cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
  if (inst != cudaSuccess) {
    cudaGraphDestroy(graph);
    RACKSIM_CUDA_CHECK(inst);
  }
  try {
    timed("graph_node", [&] { RACKSIM_CUDA_CHECK(cudaGraphLaunch(exec, s)); });
  } catch (...) {
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    throw;
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  // The host round trip of one launch (launch + synchronize), for the log only.
  std::vector<double> rt;
  for (int i = 0; i < 1000; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    empty_kernel<<<1, 32, 0, s>>>();
    RACKSIM_CUDA_CHECK(cudaStreamSynchronize(s));
    rt.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  const TimingStats st = timing_stats(std::span<const double>(rt.data(), rt.size()));
  std::printf("launch + synchronize round trip: median %.2f us, min %.2f us (1000 calls)\n", st.median_s * 1e6, st.min_s * 1e6);
  return out;
}

}  // namespace racksim::exec::cuda
