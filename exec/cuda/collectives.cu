// NCCL collectives for tensor parallelism (racksim/exec/collectives.hpp): one process over several
// GPUs (ncclCommInitAll, every call in a group) or one process per GPU (ncclCommInitRank from an
// id rank 0 made; the MPI exchange is host code in process_group.cpp, none of it here).
//
// Timing, per case and per rank (nccl-tests doc/PERFORMANCE.md for the bandwidths): warm-up
// calls; one probe call, whose slowest time over every rank sizes the repetitions (reps_for), so
// that every rank makes the same number of calls; then each repetition between a pair of CUDA
// events on each rank's stream. A rank's time is its median; the record's is the largest median
// over ranks (the collective is as fast as its slowest rank). Out of place, no L2 flush.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <exception>
#include <memory>
#include <thread>
#include <utility>

#include "bench_cuda.hpp"
#include "device_buffer.cuh"
#include "nccl_check.hpp"

namespace racksim::exec::cuda {

static_assert(sizeof(ncclUniqueId) == std::tuple_size_v<NcclId>, "NcclId must hold an ncclUniqueId (NCCL_UNIQUE_ID_BYTES)");

namespace {

/// How long a wait for one case's calls may take before the run is declared hung (a peer that
/// died or never joined): far above any call here (1 GiB all-reduce: milliseconds).
constexpr double kWaitLimitS = 300;

ncclDataType_t nccl_type(CollectiveDType t) {
  switch (t) {
    case CollectiveDType::fp32: return ncclFloat32;
    case CollectiveDType::bf16: return ncclBfloat16;
    case CollectiveDType::fp16: return ncclFloat16;
    case CollectiveDType::int8: return ncclInt8;
  }
  throw InputError("collectives: unknown element type");
}

/// One rank this process drives: its device, communicator, stream, buffers and events. Frees
/// what it holds on scope exit (the communicator first: an abort ends kernels that wait on a
/// peer, so the frees after it cannot block on them).
struct LocalRank {
  int device = 0;
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  void* send = nullptr;
  void* recv = nullptr;
  std::size_t send_capacity = 0, recv_capacity = 0;
  std::vector<cudaEvent_t> start, stop;
  bool abort_comm = false;  ///< ncclCommAbort instead of ncclCommDestroy (set when unwinding an error)

  explicit LocalRank(int dev) : device(dev) {
    RACKSIM_CUDA_CHECK(cudaSetDevice(device));
    RACKSIM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  }
  ~LocalRank() {
    cudaSetDevice(device);
    if (comm && abort_comm) (void)ncclCommAbort(comm);
    else if (comm) (void)ncclCommDestroy(comm);
    for (cudaEvent_t e : start) cudaEventDestroy(e);
    for (cudaEvent_t e : stop) cudaEventDestroy(e);
    if (send) cudaFree(send);
    if (recv) cudaFree(recv);
    if (stream) cudaStreamDestroy(stream);
  }
  LocalRank(const LocalRank&) = delete;
  LocalRank& operator=(const LocalRank&) = delete;

  [[nodiscard]] double elapsed_s(std::size_t i) const {
    float ms = 0;
    RACKSIM_CUDA_CHECK(cudaEventElapsedTime(&ms, start[i], stop[i]));
    return static_cast<double>(ms) * 1e-3;
  }
};

/// The ranks of this process and the calls made on all of them at once.
class Ranks {
 public:
  /// One process over devices 0..n-1: ncclCommInitAll (rank i = device i).
  static Ranks all_devices(int n) {
    Ranks r;
    r.total_ = n;
    std::vector<int> devs(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
      devs[static_cast<std::size_t>(i)] = i;
      r.local_.push_back(std::make_unique<LocalRank>(i));
    }
    std::vector<ncclComm_t> comms(static_cast<std::size_t>(n), nullptr);
    RACKSIM_NCCL_CHECK(ncclCommInitAll(comms.data(), n, devs.data()));
    for (int i = 0; i < n; ++i) r.local_[static_cast<std::size_t>(i)]->comm = comms[static_cast<std::size_t>(i)];
    return r;
  }

  /// Rank `rank` of `nranks`, one per process, on `device` (ncclCommInitRank; blocks until every
  /// rank has joined).
  static Ranks one_of(int nranks, int rank, int device, const NcclId& id) {
    Ranks r;
    r.total_ = nranks;
    r.local_.push_back(std::make_unique<LocalRank>(device));
    ncclUniqueId uid;
    std::memcpy(&uid, id.data(), sizeof uid);
    RACKSIM_CUDA_CHECK(cudaSetDevice(device));
    RACKSIM_NCCL_CHECK(ncclCommInitRank(&r.local_.front()->comm, nranks, uid, rank));
    return r;
  }

  Ranks() = default;
  Ranks(Ranks&&) noexcept = default;
  Ranks& operator=(Ranks&&) noexcept = default;
  ~Ranks() {
    // Unwinding an error: abort the communicators (a destroy could wait on a peer that is gone).
    const bool failing = std::uncaught_exceptions() > 0;
    // Rank 0 first, as NCCL's examples destroy them.
    for (auto& l : local_) {
      l->abort_comm = failing;
      l.reset();
    }
  }

  [[nodiscard]] int total() const noexcept { return total_; }
  [[nodiscard]] std::size_t events() const noexcept { return local_.empty() ? 0 : local_.front()->start.size(); }

  /// Buffers of `send_bytes` and `recv_bytes` on every rank (send filled with `fill`, a byte
  /// pattern that is a finite value in every element type), and `pairs` event pairs.
  void allocate(std::size_t send_bytes, std::size_t recv_bytes, int fill, std::size_t pairs) {
    for (auto& l : local_) {
      RACKSIM_CUDA_CHECK(cudaSetDevice(l->device));
      const std::size_t s = std::max<std::size_t>(send_bytes, 1), r = std::max<std::size_t>(recv_bytes, 1);
      RACKSIM_CUDA_CHECK(cudaMalloc(&l->send, s));
      l->send_capacity = s;
      RACKSIM_CUDA_CHECK(cudaMalloc(&l->recv, r));
      l->recv_capacity = r;
      RACKSIM_CUDA_CHECK(cudaMemset(l->send, fill, s));
      RACKSIM_CUDA_CHECK(cudaMemset(l->recv, 0, r));
      for (std::size_t i = 0; i < pairs; ++i) {
        l->start.push_back(nullptr);
        RACKSIM_CUDA_CHECK(cudaEventCreate(&l->start.back()));
        l->stop.push_back(nullptr);
        RACKSIM_CUDA_CHECK(cudaEventCreate(&l->stop.back()));
      }
      RACKSIM_CUDA_CHECK(cudaDeviceSynchronize());
    }
  }

  /// One call of `c` on every rank of this process, inside one NCCL group (with several ranks
  /// in one thread, ungrouped calls would each wait for the others and deadlock).
  void launch(const CollectiveCase& c) {
    RACKSIM_ASSERT(c.ranks == total_, "case ranks match the communicator");
    const auto count = static_cast<std::size_t>(c.count);
    const ncclDataType_t type = nccl_type(c.dtype);
    ncclResult_t first = ncclSuccess;
    const char* failed = "";
    RACKSIM_NCCL_CHECK(ncclGroupStart());
    for (auto& l : local_) {
      RACKSIM_ASSERT(c.send_bytes() <= static_cast<double>(l->send_capacity) && c.recv_bytes() <= static_cast<double>(l->recv_capacity),
                     "collective buffers hold the case");
      ncclResult_t st = ncclSuccess;
      switch (c.op) {
        case CollectiveOp::all_reduce:
          st = ncclAllReduce(l->send, l->recv, count, type, ncclSum, l->comm, l->stream);
          failed = "ncclAllReduce";
          break;
        case CollectiveOp::all_gather:  // count = sendcount; recv holds ranks x count
          st = ncclAllGather(l->send, l->recv, count, type, l->comm, l->stream);
          failed = "ncclAllGather";
          break;
        case CollectiveOp::reduce_scatter:  // count = recvcount; send holds ranks x count
          st = ncclReduceScatter(l->send, l->recv, count, type, ncclSum, l->comm, l->stream);
          failed = "ncclReduceScatter";
          break;
      }
      if (st != ncclSuccess && first == ncclSuccess) first = st;
    }
    // The group is always closed, even after a failed call, so NCCL's group state stays sane.
    const ncclResult_t end = ncclGroupEnd();
    if (first != ncclSuccess) nccl_failed(first, failed, __FILE__, __LINE__);
    if (end != ncclSuccess) nccl_failed(end, "ncclGroupEnd()", __FILE__, __LINE__);
  }

  void record_start(std::size_t i) {
    for (auto& l : local_) {
      RACKSIM_CUDA_CHECK(cudaSetDevice(l->device));
      RACKSIM_CUDA_CHECK(cudaEventRecord(l->start[i], l->stream));
    }
  }
  void record_stop(std::size_t i) {
    for (auto& l : local_) {
      RACKSIM_CUDA_CHECK(cudaSetDevice(l->device));
      RACKSIM_CUDA_CHECK(cudaEventRecord(l->stop[i], l->stream));
    }
  }

  /// Waits for every rank's stream, polling NCCL's asynchronous error state as nccl-tests does,
  /// so that a failed peer or transport ends the run with NCCL's message instead of a hang.
  void wait() {
    using Clock = std::chrono::steady_clock;
    const auto t0 = Clock::now();
    for (auto& l : local_) {
      RACKSIM_CUDA_CHECK(cudaSetDevice(l->device));
      for (;;) {
        const cudaError_t q = cudaStreamQuery(l->stream);
        if (q == cudaSuccess) break;
        if (q != cudaErrorNotReady) RACKSIM_CUDA_CHECK(q);
        ncclResult_t async = ncclSuccess;
        RACKSIM_NCCL_CHECK(ncclCommGetAsyncError(l->comm, &async));
        if (async != ncclSuccess && async != ncclInProgress) nccl_failed(async, "ncclCommGetAsyncError (a collective in flight)", __FILE__, __LINE__);
        if (std::chrono::duration<double>(Clock::now() - t0).count() > kWaitLimitS)
          throw Error(ExitCode::internal, text("NCCL collectives on device ", l->device, " not done after ", kWaitLimitS,
                                               " s: a rank is missing or hung (NCCL_DEBUG=WARN says more)"));
        std::this_thread::yield();
      }
    }
    RACKSIM_CUDA_CHECK(cudaGetLastError());
  }

  /// The slowest rank's time of event pair `i`.
  [[nodiscard]] double max_elapsed(std::size_t i) const {
    double t = 0;
    for (const auto& l : local_) t = std::max(t, l->elapsed_s(i));
    return t;
  }

  /// Timing statistics of pairs 0..reps-1 on each rank of this process.
  [[nodiscard]] std::vector<TimingStats> stats(int reps) const {
    std::vector<TimingStats> out;
    for (const auto& l : local_) {
      std::vector<double> times;
      for (int r = 0; r < reps; ++r) times.push_back(l->elapsed_s(static_cast<std::size_t>(r)));
      out.push_back(timing_stats(std::span<const double>(times.data(), times.size())));
    }
    return out;
  }

  [[nodiscard]] std::vector<std::unique_ptr<LocalRank>>& local() noexcept { return local_; }

 private:
  std::vector<std::unique_ptr<LocalRank>> local_;
  int total_ = 0;
};

/// 0x3C in every byte: 1.0e-2 in FP32 and BF16 (0x3C3C...), 1.06 in FP16, 60 in INT8: finite
/// values, so no NaN or Inf arithmetic runs in the reductions.
constexpr int kFillByte = 0x3C;

/// Times one case on every rank (header comment). `agree_stop`: the ranks of a multi-process
/// run also agree on a stop request with the time reduction (StopAgreement).
MeasurementRecord time_case(Ranks& ranks, ProcessGroup& group, const CollectiveCase& c, const BenchTiming& t, bool agree_stop) {
  for (int i = 0; i < t.warmup; ++i) ranks.launch(c);
  ranks.record_start(0);
  ranks.launch(c);
  ranks.record_stop(0);
  ranks.wait();
  double probe[1] = {ranks.max_elapsed(0)};
  group.max(probe);
  const int reps = std::min(reps_for(probe[0], t.target_s, t.min_reps, t.max_reps), static_cast<int>(ranks.events()));
  for (int r = 0; r < reps; ++r) {
    ranks.record_start(static_cast<std::size_t>(r));
    ranks.launch(c);
    ranks.record_stop(static_cast<std::size_t>(r));
  }
  ranks.wait();
  // [slowest median, -(fastest call), slowest call, stop signal]: one MPI_Allreduce(MAX).
  double agg[4] = {0, -1e300, 0, 0};
  for (const TimingStats& s : ranks.stats(reps)) {
    agg[0] = std::max(agg[0], s.median_s);
    agg[1] = std::max(agg[1], -s.min_s);
    agg[2] = std::max(agg[2], s.max_s);
  }
  agg[3] = agree_stop ? static_cast<double>(signal_received()) : 0.0;
  group.max(agg);
  if (agree_stop) set_agreed_stop(static_cast<int>(agg[3]));
  return collective_record(c, TimingStats{agg[0], -agg[1], agg[2], reps});
}

/// The largest send and receive buffers of the cases.
std::pair<std::size_t, std::size_t> buffer_bytes(std::span<const CollectiveCase> cases) {
  double s = 0, r = 0;
  for (const CollectiveCase& c : cases) s = std::max(s, c.send_bytes()), r = std::max(r, c.recv_bytes());
  return {static_cast<std::size_t>(s), static_cast<std::size_t>(r)};
}

std::vector<MeasurementRecord> run_cases(Ranks& ranks, ProcessGroup& group, std::span<const CollectiveCase> cases, const BenchTiming& t,
                                         const RecordSink& done, bool agree_stop) {
  for (const CollectiveCase& c : cases)
    if (c.ranks != ranks.total() || c.count < 1)
      throw InputError(text("bench collectives: case ", to_string(c.op), " of ", c.ranks, " ranks and count ", c.count,
                            " does not fit a communicator of ", ranks.total(), " ranks"));
  const auto [send, recv] = buffer_bytes(cases);
  ranks.allocate(send, recv, kFillByte, static_cast<std::size_t>(std::max(t.max_reps, 1)));
  std::vector<MeasurementRecord> out;
  for (const CollectiveCase& c : cases) {
    out.push_back(time_case(ranks, group, c, t, agree_stop));
    if (done) done(out.back());
  }
  return out;
}

int visible_devices() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

/// The device count, or the same errors as require_device when there is none.
int require_devices() {
  const int n = visible_devices();
  if (n == 0) (void)require_device(0);  // throws "no CUDA device: ..."
  return n;
}

// ---- host conversions for collective_values -------------------------------------------------

std::vector<unsigned char> encode(const std::vector<float>& v, CollectiveDType t) {
  std::vector<unsigned char> out(v.size() * static_cast<std::size_t>(element_bytes(t)));
  for (std::size_t i = 0; i < v.size(); ++i) {
    switch (t) {
      case CollectiveDType::fp32:
        std::memcpy(&out[4 * i], &v[i], 4);
        break;
      case CollectiveDType::bf16: {
        const unsigned short b = __bfloat16_as_ushort(__float2bfloat16_rn(v[i]));
        std::memcpy(&out[2 * i], &b, 2);
        break;
      }
      case CollectiveDType::fp16: {
        const unsigned short h = __half_as_ushort(__float2half_rn(v[i]));
        std::memcpy(&out[2 * i], &h, 2);
        break;
      }
      case CollectiveDType::int8: {
        const float r = std::nearbyint(std::clamp(v[i], -128.0f, 127.0f));
        const auto q = static_cast<signed char>(r);
        std::memcpy(&out[i], &q, 1);
        break;
      }
    }
  }
  return out;
}

std::vector<float> decode(const std::vector<unsigned char>& bytes, CollectiveDType t) {
  const auto eb = static_cast<std::size_t>(element_bytes(t));
  std::vector<float> out(bytes.size() / eb);
  for (std::size_t i = 0; i < out.size(); ++i) {
    switch (t) {
      case CollectiveDType::fp32:
        std::memcpy(&out[i], &bytes[4 * i], 4);
        break;
      case CollectiveDType::bf16: {
        unsigned short b = 0;
        std::memcpy(&b, &bytes[2 * i], 2);
        out[i] = __bfloat162float(__ushort_as_bfloat16(b));
        break;
      }
      case CollectiveDType::fp16: {
        unsigned short h = 0;
        std::memcpy(&h, &bytes[2 * i], 2);
        out[i] = __half2float(__ushort_as_half(h));
        break;
      }
      case CollectiveDType::int8: {
        signed char q = 0;
        std::memcpy(&q, &bytes[i], 1);
        out[i] = static_cast<float>(q);
        break;
      }
    }
  }
  return out;
}

}  // namespace

NcclId nccl_unique_id() {
  ncclUniqueId uid;
  RACKSIM_NCCL_CHECK(ncclGetUniqueId(&uid));
  NcclId id{};
  std::memcpy(id.data(), &uid, sizeof uid);
  return id;
}

std::string nccl_version() {
  int v = 0;
  if (ncclGetVersion(&v) != ncclSuccess) return "";
  return nccl_version_text(v);
}

std::vector<MeasurementRecord> bench_collectives(std::span<const CollectiveCase> cases, const BenchTiming& timing, int gpus,
                                                 const RecordSink& done) {
  const int n = require_devices();
  if (gpus < 1 || gpus > n)
    throw InputError(text("racksim bench: --gpus ", gpus, ": allowed 1..", n, " (", n, " CUDA device", n > 1 ? "s" : "", " visible)"));
  Ranks ranks = Ranks::all_devices(gpus);
  SingleProcess self;
  return run_cases(ranks, self, cases, timing, done, false);
}

std::vector<MeasurementRecord> bench_collectives_mpi(ProcessGroup& group, const RankPlacement& placement, int device, const NcclId& id,
                                                     std::span<const CollectiveCase> cases, const BenchTiming& timing,
                                                     const RecordSink& done) {
  const int n = require_devices();
  if (device < 0 || device >= n) throw InputError(text("bench collectives: device ", device, " is not one of the ", n, " visible"));
  if (placement.ranks != group.size() || placement.rank != group.rank())
    throw InputError(text("bench collectives: placement rank ", placement.rank, " of ", placement.ranks, " is not this process's ", group.rank(),
                          " of ", group.size()));
  StopAgreement agreement;
  Ranks ranks = Ranks::one_of(placement.ranks, placement.rank, device, id);
  return run_cases(ranks, group, cases, timing, done, true);
}

std::vector<std::vector<float>> collective_values(CollectiveOp op, CollectiveDType dtype, const std::vector<std::vector<float>>& inputs) {
  const int n = static_cast<int>(inputs.size());
  if (n < 1) throw InputError("collective_values: no ranks");
  const int devices = require_devices();
  if (n > devices) throw InputError(text("collective_values: ", n, " ranks but ", devices, " CUDA devices visible"));
  const std::size_t in = inputs.front().size();
  for (const auto& v : inputs)
    if (v.size() != in) throw InputError("collective_values: every rank needs the same number of inputs");
  CollectiveCase c;
  c.op = op;
  c.dtype = dtype;
  c.ranks = n;
  const auto count = static_cast<std::int64_t>(in);
  switch (op) {
    case CollectiveOp::all_reduce:
      c.count = c.send_count = c.recv_count = count;
      break;
    case CollectiveOp::all_gather:
      c.count = c.send_count = count;
      c.recv_count = count * n;
      break;
    case CollectiveOp::reduce_scatter:
      if (count % n != 0) throw InputError(text("collective_values: reduce_scatter input of ", count, " values is not ", n, " equal blocks"));
      c.count = c.recv_count = count / n;
      c.send_count = count;
      break;
  }
  if (c.count < 1) throw InputError("collective_values: empty collective");
  Ranks ranks = Ranks::all_devices(n);
  ranks.allocate(static_cast<std::size_t>(c.send_bytes()), static_cast<std::size_t>(c.recv_bytes()), 0, 0);
  for (int r = 0; r < n; ++r) {
    const auto& l = ranks.local()[static_cast<std::size_t>(r)];
    const std::vector<unsigned char> bytes = encode(inputs[static_cast<std::size_t>(r)], dtype);
    RACKSIM_CUDA_CHECK(cudaSetDevice(l->device));
    RACKSIM_CUDA_CHECK(cudaMemcpy(l->send, bytes.data(), bytes.size(), cudaMemcpyHostToDevice));
    // Poison the output (all-ones bytes: NaN in FP32/BF16/FP16, -1 in INT8) so an unwritten element shows.
    RACKSIM_CUDA_CHECK(cudaMemset(l->recv, 0xFF, static_cast<std::size_t>(c.recv_bytes())));
    // The copy and the memset ran on the legacy default stream, which the rank's non-blocking
    // stream does not wait for (and a pageable upload may return before its DMA is done).
    RACKSIM_CUDA_CHECK(cudaDeviceSynchronize());
  }
  ranks.launch(c);
  ranks.wait();
  std::vector<std::vector<float>> out;
  for (int r = 0; r < n; ++r) {
    const auto& l = ranks.local()[static_cast<std::size_t>(r)];
    std::vector<unsigned char> bytes(static_cast<std::size_t>(c.recv_bytes()));
    RACKSIM_CUDA_CHECK(cudaSetDevice(l->device));
    RACKSIM_CUDA_CHECK(cudaMemcpy(bytes.data(), l->recv, bytes.size(), cudaMemcpyDeviceToHost));
    out.push_back(decode(bytes, dtype));
  }
  return out;
}

}  // namespace racksim::exec::cuda
