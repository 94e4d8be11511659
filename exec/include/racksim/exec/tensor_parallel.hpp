#pragma once
/// Tensor parallelism in the executor (Megatron-LM's layout, the one the simulator's StepGraph
/// costs: workloads/src/step_graph.cpp): each of `size` ranks holds
///   qkv_proj, gate_up_proj, lm_head: a block of output rows (column parallel): its query heads,
///     its KV heads (one replicated head per rank when size > kv_heads), its slice of the gate and
///     of the up rows, its slice of the vocabulary;
///   o_proj, down_proj: a block of input columns (row parallel), whose partial outputs are summed
///     by an all-reduce (attn_all_reduce, mlp_all_reduce);
///   norms and the embedding: whole.
/// The logits' slices are gathered (logits_all_gather) before sampling, so every rank samples the
/// same tokens. Host code: the layout and the weight shards are tested on the CPU, where
/// ThreadTpGroup runs the ranks as threads of one process.

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <utility>
#include <vector>

#include "racksim/exec/cpu_reference.hpp"
#include "racksim/exec/tp_layout.hpp"

namespace racksim::exec {

/// The rows [ranges] of `w`, codes, scales and values (column parallel).
[[nodiscard]] LinearWeight take_rows(const LinearWeight& w, std::span<const std::pair<std::int64_t, std::int64_t>> ranges);
/// The columns [c0, c1) of `w` (row parallel); both on block boundaries.
[[nodiscard]] LinearWeight take_cols(const LinearWeight& w, std::int64_t c0, std::int64_t c1);
/// Rank `layout.rank`'s shard of weights `w` (a MoE's experts each split as a dense MLP, the router whole).
[[nodiscard]] ModelWeights shard_weights(const ModelWeights& w, const ModelConfig& m, const TpLayout& layout);

/// The collectives a CPU rank needs, on host FP32 arrays; every rank calls them in the same order.
class HostTpComm {
 public:
  virtual ~HostTpComm() = default;
  [[nodiscard]] virtual int rank() const = 0;
  [[nodiscard]] virtual int size() const = 0;
  /// Element-wise sum over the ranks, in place; summed in rank order, so every rank gets the same bits.
  virtual void all_reduce_sum(std::span<float> data) = 0;
  /// `all` = every rank's `mine` in rank order (all.size() = size() x mine.size()).
  virtual void all_gather(std::span<const float> mine, std::span<float> all) = 0;
};

/// The collectives a GPU rank needs (the CUDA step executor), on device arrays, enqueued on a
/// stream; every rank calls them in the same order. NCCL's (exec/cuda/tp_nccl.cu).
class DeviceTpComm {
 public:
  virtual ~DeviceTpComm() = default;
  [[nodiscard]] virtual int rank() const = 0;
  [[nodiscard]] virtual int size() const = 0;
  /// Sum of `count` BF16 values at device address `data` over the ranks, in place, on `stream`
  /// (a cudaStream_t).
  virtual void all_reduce_sum_bf16(void* data, std::size_t count, void* stream) = 0;
  /// The same for FP32 values (MiniMax-M2's QK-norm sums of squares: qk_norm_all_reduce).
  virtual void all_reduce_sum_f32(void* data, std::size_t count, void* stream) = 0;
  /// Device `out` (size() x count FP32, rank-major) = every rank's `count` FP32 at `in`, on `stream`.
  virtual void all_gather_f32(const void* in, void* out, std::size_t count, void* stream) = 0;
  /// Ends the communicator's uncompleted operations, on every rank this process holds (callable
  /// from another thread: a rank that failed alone must not leave the others waiting on a peer
  /// that never comes). The communicators are unusable afterwards.
  virtual void abort() noexcept = 0;
};

/// One process over `devices` (rank i on devices[i]): NCCL communicators from ncclCommInitAll.
/// Error (exit 3) without CUDA built in or with fewer visible devices.
[[nodiscard]] std::vector<std::unique_ptr<DeviceTpComm>> make_device_tp_comms(std::span<const int> devices);

/// Rank `rank` of `size`, one process per GPU (mpirun / srun), on `device`: ncclCommInitRank
/// with rank 0's unique id (128 bytes, NcclId in collectives.hpp, spread by bootstrap_ranks).
/// Blocks until every rank joined. Error (exit 3) without CUDA built in.
[[nodiscard]] std::unique_ptr<DeviceTpComm> make_device_tp_comm(std::span<const std::byte> nccl_id, int rank, int size, int device);

/// Threads for ranks 1..size-1 that live as long as this object, the caller being rank 0: a
/// tensor-parallel step hands each its rank's work and waits for all (starting threads anew
/// every step costs tens of microseconds a step: docs/executor.md). Rank r always runs on
/// the same thread, as a GPU rank's CUDA state (current device, thread-local graph capture)
/// wants.
class RankThreads {
 public:
  explicit RankThreads(int size);
  ~RankThreads();
  RankThreads(const RankThreads&) = delete;
  RankThreads& operator=(const RankThreads&) = delete;
  [[nodiscard]] int size() const noexcept { return static_cast<int>(threads_.size()) + 1; }
  /// work(r) for every rank at once, rank 0 on the calling thread; returns when every rank is
  /// done. If ranks throw, the first failure's exception is rethrown after all returned (the
  /// others' are usually its consequence); `on_error` runs once, on that rank's thread, as soon
  /// as it fails (to abort the others' collectives: they must not wait for a rank that never
  /// comes). `on_error` must not throw (it runs where an exception ends the process).
  void run(const std::function<void(int)>& work, const std::function<void()>& on_error = {});
  /// The thread rank r >= 1 runs on (tests).
  [[nodiscard]] std::thread::id thread_of(int r) const;

 private:
  void loop(int r);
  void guarded(int r) noexcept;
  /// Ends and joins the worker threads.
  void stop() noexcept;
  std::mutex m_;
  std::condition_variable start_, done_;
  const std::function<void(int)>* work_ = nullptr;
  const std::function<void()>* on_error_ = nullptr;
  std::vector<std::exception_ptr> errors_;
  int first_failure_ = -1;
  std::uint64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

/// `size` ranks as threads of one process, meeting at a barrier: the CPU reference's tensor
/// parallelism, and what tests it without GPUs or MPI.
class ThreadTpGroup {
 public:
  explicit ThreadTpGroup(int size);
  ~ThreadTpGroup();
  ThreadTpGroup(const ThreadTpGroup&) = delete;
  ThreadTpGroup& operator=(const ThreadTpGroup&) = delete;
  [[nodiscard]] int size() const noexcept { return size_; }
  /// Rank r's communicator (owned by the group).
  [[nodiscard]] HostTpComm& rank(int r);
  /// Wakes every rank waiting in a collective, and every later one, with an Error: a rank that
  /// failed alone must not leave the others at the barrier.
  void abort() noexcept;

 private:
  class Rank;
  friend class Rank;
  /// std::barrier with an abort: arrive_and_wait throws once aborted.
  class Barrier {
   public:
    explicit Barrier(int n) : n_(n) {}
    void arrive_and_wait();
    void abort() noexcept;

   private:
    std::mutex m_;
    std::condition_variable cv_;
    int n_, arrived_ = 0;
    std::uint64_t phase_ = 0;
    bool aborted_ = false;
  };
  int size_;
  Barrier barrier_;
  std::vector<std::span<float>> reduce_slots_;
  std::vector<std::span<const float>> gather_slots_;
  std::vector<std::unique_ptr<Rank>> ranks_;
};

}  // namespace racksim::exec
