#pragma once
// Device memory and cuBLASLt checks shared by the bench sources (compiled only with RACKSIM_CUDA).

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <string>
#include <sstream>
#include <string_view>
#include <vector>

#include "cuda_check.hpp"
#include "racksim/exec/cuda_bench.hpp"

namespace racksim::exec::cuda {

/// The arguments streamed into one string. (fmt is not used in .cu files: nvcc 13's front end
/// rejects fmt 9's constexpr paths in C++20 mode.)
template <class... Args>
std::string text(const Args&... args) {
  std::ostringstream ss;
  ss.precision(4);
  (ss << ... << args);
  return ss.str();
}

/// v with `digits` digits after the point ("24.1"), for text().
inline std::string fixed(double v, int digits) {
  std::ostringstream ss;
  ss.setf(std::ios::fixed);
  ss.precision(digits);
  ss << v;
  return ss.str();
}

/// Throws Error(internal) naming the failed cuBLASLt statement, where it is and the status.
[[noreturn]] inline void cublas_failed(cublasStatus_t st, const char* stmt, const char* file, int line) {
  throw Error(ExitCode::internal, std::string("cuBLASLt error '") + cublasLtGetStatusString(st) + "' in `" + stmt + "` at " +
                                      file + ":" + std::to_string(line));
}

/// Device bytes freed on scope exit (an exception from a later check must not leak them).
class DeviceBytes {
 public:
  DeviceBytes() = default;
  explicit DeviceBytes(std::size_t bytes) : size_(bytes) {
    if (bytes) RACKSIM_CUDA_CHECK(cudaMalloc(&ptr_, bytes));
  }
  ~DeviceBytes() {
    if (ptr_) cudaFree(ptr_);
  }
  DeviceBytes(DeviceBytes&& o) noexcept : ptr_(o.ptr_), size_(o.size_) { o.ptr_ = nullptr; o.size_ = 0; }
  DeviceBytes& operator=(DeviceBytes&& o) noexcept {
    if (this != &o) {
      if (ptr_) cudaFree(ptr_);
      ptr_ = o.ptr_;
      size_ = o.size_;
      o.ptr_ = nullptr;
      o.size_ = 0;
    }
    return *this;
  }
  DeviceBytes(const DeviceBytes&) = delete;
  DeviceBytes& operator=(const DeviceBytes&) = delete;
  template <class T = void>
  T* as() const { return static_cast<T*>(ptr_); }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }

 private:
  void* ptr_ = nullptr;
  std::size_t size_ = 0;
};

/// A pair of CUDA events; elapsed() in seconds once both completed.
class EventPair {
 public:
  EventPair() {
    RACKSIM_CUDA_CHECK(cudaEventCreate(&start));
    RACKSIM_CUDA_CHECK(cudaEventCreate(&stop));
  }
  ~EventPair() {
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
  }
  EventPair(const EventPair&) = delete;
  EventPair& operator=(const EventPair&) = delete;
  [[nodiscard]] double elapsed_s() const {
    float ms = 0;
    RACKSIM_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    return static_cast<double>(ms) * 1e-3;
  }
  cudaEvent_t start = nullptr, stop = nullptr;
};

/// A stream destroyed on scope exit.
class Stream {
 public:
  Stream() { RACKSIM_CUDA_CHECK(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking)); }
  ~Stream() { cudaStreamDestroy(s_); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  [[nodiscard]] cudaStream_t get() const noexcept { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

/// Replaces the L2's contents with clean lines: a read of all of `flush` (>= 2 x L2 bytes; none
/// when empty). A write (memset) would leave up to L2-size dirty lines whose write-back then
/// shares the DRAM with the timed call: a 35 MB FP4 GEMV on an H200 would pay for up to 50 MB
/// of writes that no decode step makes (bench_device.cu).
void evict_l2(DeviceBytes& flush, cudaStream_t s);

/// The benches' timing loop (BenchTiming, cuda_bench.hpp): `warmup` untimed calls, one timed
/// probe that sizes the repetitions (reps_for), then that many calls each between its own pair
/// of events, the L2 evicted before each when `flush` is non-empty (evict_l2). `call(i)` gets a running
/// call index (benches rotate their buffers with it). Returns the per-call seconds.
template <class Call>
[[nodiscard]] std::vector<double> time_calls(cudaStream_t s, const BenchTiming& t, DeviceBytes& flush, std::vector<EventPair>& ev,
                                             Call&& call) {
  if (flush.size() > 0) RACKSIM_CUDA_CHECK(cudaMemsetAsync(flush.as(), 0, flush.size(), s));  // defined bytes for evict_l2 to read
  for (int i = 0; i < t.warmup; ++i) call(i);
  RACKSIM_CUDA_CHECK(cudaEventRecord(ev[0].start, s));
  call(t.warmup);
  RACKSIM_CUDA_CHECK(cudaEventRecord(ev[0].stop, s));
  RACKSIM_CUDA_CHECK(cudaStreamSynchronize(s));
  const int reps = std::min(reps_for(ev[0].elapsed_s(), t.target_s, t.min_reps, t.max_reps), static_cast<int>(ev.size()));
  for (int r = 0; r < reps; ++r) {
    evict_l2(flush, s);
    RACKSIM_CUDA_CHECK(cudaEventRecord(ev[static_cast<std::size_t>(r)].start, s));
    call(t.warmup + 1 + r);
    RACKSIM_CUDA_CHECK(cudaEventRecord(ev[static_cast<std::size_t>(r)].stop, s));
  }
  RACKSIM_CUDA_CHECK(cudaStreamSynchronize(s));
  RACKSIM_CUDA_CHECK(cudaGetLastError());
  std::vector<double> times;
  for (int r = 0; r < reps; ++r) times.push_back(ev[static_cast<std::size_t>(r)].elapsed_s());
  return times;
}

}  // namespace racksim::exec::cuda

/// Checks a cuBLASLt call; on failure throws with the statement, file and line.
#define RACKSIM_CUBLAS_CHECK(stmt)                                                                        \
  do {                                                                                                    \
    const cublasStatus_t racksim_cublas_st_ = (stmt);                                                     \
    if (racksim_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                                      \
      ::racksim::exec::cuda::cublas_failed(racksim_cublas_st_, #stmt, __FILE__, __LINE__);                \
  } while (false)
