#pragma once
// Device memory and cuBLASLt checks shared by the bench sources (compiled only with RACKSIM_CUDA).

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
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

/// One eager call timed alone (after `warmup` untimed calls): the estimate graph_calls sizes a
/// graph with. Seconds.
template <class Call>
[[nodiscard]] double time_one_call(cudaStream_t s, const BenchTiming& t, EventPair& ev, Call&& call) {
  for (int i = 0; i < std::max(t.warmup, 1); ++i) call(i);
  RACKSIM_CUDA_CHECK(cudaEventRecord(ev.start, s));
  call(std::max(t.warmup, 1));
  RACKSIM_CUDA_CHECK(cudaEventRecord(ev.stop, s));
  RACKSIM_CUDA_CHECK(cudaStreamSynchronize(s));
  RACKSIM_CUDA_CHECK(cudaGetLastError());
  return ev.elapsed_s();
}

/// A captured, instantiated CUDA graph, destroyed on scope exit.
class CapturedGraph {
 public:
  /// Captures what `record()` enqueues on `s` (thread-local capture mode: other threads' CUDA
  /// calls are not disturbed) and instantiates it. A throw from record() ends the capture first.
  template <class Record>
  CapturedGraph(cudaStream_t s, Record&& record) {
    RACKSIM_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    try {
      record();
    } catch (...) {
      cudaGraph_t g = nullptr;
      cudaStreamEndCapture(s, &g);
      if (g) cudaGraphDestroy(g);
      cudaGetLastError();
      throw;
    }
    RACKSIM_CUDA_CHECK(cudaStreamEndCapture(s, &graph_));
    const cudaError_t e = cudaGraphInstantiate(&exec_, graph_, 0);
    if (e != cudaSuccess) {
      cudaGraphDestroy(graph_);
      RACKSIM_CUDA_CHECK(e);
    }
  }
  ~CapturedGraph() {
    if (exec_) cudaGraphExecDestroy(exec_);
    if (graph_) cudaGraphDestroy(graph_);
  }
  CapturedGraph(const CapturedGraph&) = delete;
  CapturedGraph& operator=(const CapturedGraph&) = delete;
  void launch(cudaStream_t s) const { RACKSIM_CUDA_CHECK(cudaGraphLaunch(exec_, s)); }

 private:
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
};

/// `racksim bench --timing graph` (BenchTiming): call(0) .. call(calls - 1) captured back to back
/// into one graph (the caller rotates its operand copies with the index), `warmup` untimed
/// replays (at least 1: the first replay uploads the graph), one timed probe replay that sizes
/// reps_for(probe, target_s, min_reps, max_reps) replays, each between its own pair of events.
/// Returns each replay's time / calls, in seconds. `ev` must hold at least one pair.
template <class Call>
[[nodiscard]] std::vector<double> time_graph(cudaStream_t s, const BenchTiming& t, int calls, std::vector<EventPair>& ev, Call&& call) {
  if (calls < 1 || ev.empty()) throw InputError(text("time_graph: ", calls, " calls and ", ev.size(), " event pairs (need >= 1 of each)"));
  RACKSIM_CUDA_CHECK(cudaStreamSynchronize(s));
  const CapturedGraph graph(s, [&] {
    for (int i = 0; i < calls; ++i) call(i);
  });
  for (int i = 0; i < std::max(t.warmup, 1); ++i) graph.launch(s);
  RACKSIM_CUDA_CHECK(cudaEventRecord(ev[0].start, s));
  graph.launch(s);
  RACKSIM_CUDA_CHECK(cudaEventRecord(ev[0].stop, s));
  RACKSIM_CUDA_CHECK(cudaStreamSynchronize(s));
  const int reps = std::min(reps_for(ev[0].elapsed_s(), t.target_s, t.min_reps, t.max_reps), static_cast<int>(ev.size()));
  for (int r = 0; r < reps; ++r) {
    RACKSIM_CUDA_CHECK(cudaEventRecord(ev[static_cast<std::size_t>(r)].start, s));
    graph.launch(s);
    RACKSIM_CUDA_CHECK(cudaEventRecord(ev[static_cast<std::size_t>(r)].stop, s));
  }
  RACKSIM_CUDA_CHECK(cudaStreamSynchronize(s));
  RACKSIM_CUDA_CHECK(cudaGetLastError());
  std::vector<double> times;
  for (int r = 0; r < reps; ++r) times.push_back(ev[static_cast<std::size_t>(r)].elapsed_s() / calls);
  return times;
}

/// `racksim bench --timing graph` over `copies` copies of a call's operands (or offsets into a
/// buffer) of `bytes` each, which call(i) rotates with i: graph_warm_note on stderr when they fit
/// in 2 x L2, one eager call to size the graph (graph_calls: a multiple of the copies), then
/// time_graph. Every bench's graph timing goes through here.
template <class Call>
[[nodiscard]] std::vector<double> time_graph_rotating(cudaStream_t s, const BenchTiming& t, std::vector<EventPair>& ev, double bytes,
                                                      int copies, std::int64_t l2_bytes, Call&& call) {
  if (ev.empty()) throw InputError("time_graph_rotating: no event pairs");
  if (const std::string note = graph_warm_note(bytes, copies, l2_bytes); !note.empty()) std::fprintf(stderr, "%s\n", note.c_str());
  const int calls = graph_calls(time_one_call(s, t, ev[0], call), copies);
  return time_graph(s, t, calls, ev, call);
}

}  // namespace racksim::exec::cuda

/// Checks a cuBLASLt call; on failure throws with the statement, file and line.
#define RACKSIM_CUBLAS_CHECK(stmt)                                                                        \
  do {                                                                                                    \
    const cublasStatus_t racksim_cublas_st_ = (stmt);                                                     \
    if (racksim_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                                      \
      ::racksim::exec::cuda::cublas_failed(racksim_cublas_st_, #stmt, __FILE__, __LINE__);                \
  } while (false)
