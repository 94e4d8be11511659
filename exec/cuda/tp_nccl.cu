// The step executor's tensor-parallel collectives through NCCL (tensor_parallel.hpp,
// DeviceTpComm): ncclAllReduce (sum, BF16, in place) after the row-parallel o_proj and
// down_proj, and ncclAllGather of the FP32 logits' vocabulary slices. Both are enqueued on the
// step's stream, so a captured decode graph holds them too (NCCL >= 2.9 supports capture).

#include "tp_nccl.hpp"

#include <cuda_runtime.h>
#include <nccl.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "cuda_check.hpp"
#include "nccl_check.hpp"

namespace racksim::exec::cuda {

namespace {

/// The communicators of one ncclCommInitAll (or the one of this process's rank), torn down
/// together: ncclCommDestroy finalizes, an intra-node collective, so one thread finalizing
/// several ranks must group the calls (NCCL docs, ncclCommDestroy / ncclCommFinalize), and an
/// aborted communicator is gone already.
class NcclCommSet {
 public:
  explicit NcclCommSet(std::vector<ncclComm_t> comms) : comms_(std::move(comms)), aborted_(comms_.size(), false) {}
  ~NcclCommSet() {
    std::vector<ncclComm_t> live;
    for (std::size_t i = 0; i < comms_.size(); ++i)
      if (!aborted_[i]) live.push_back(comms_[i]);
    if (live.empty()) return;
    ncclGroupStart();
    for (ncclComm_t c : live) ncclCommFinalize(c);
    ncclGroupEnd();
    for (ncclComm_t c : live) ncclCommDestroy(c);
  }
  NcclCommSet(const NcclCommSet&) = delete;
  NcclCommSet& operator=(const NcclCommSet&) = delete;
  [[nodiscard]] ncclComm_t comm(std::size_t i) const { return comms_[i]; }
  /// ncclCommAbort on every communicator not yet aborted (from any thread).
  void abort() noexcept {
    const std::lock_guard lock(m_);
    for (std::size_t i = 0; i < comms_.size(); ++i)
      if (!aborted_[i]) {
        ncclCommAbort(comms_[i]);
        aborted_[i] = true;
      }
  }

 private:
  std::vector<ncclComm_t> comms_;
  std::vector<bool> aborted_;
  std::mutex m_;
};

class NcclTpComm final : public DeviceTpComm {
 public:
  NcclTpComm(std::shared_ptr<NcclCommSet> set, std::size_t index, int rank, int size)
      : set_(std::move(set)), index_(index), rank_(rank), size_(size) {}
  [[nodiscard]] int rank() const override { return rank_; }
  [[nodiscard]] int size() const override { return size_; }
  void all_reduce_sum_bf16(void* data, std::size_t count, void* stream) override {
    RACKSIM_NCCL_CHECK(ncclAllReduce(data, data, count, ncclBfloat16, ncclSum, set_->comm(index_), static_cast<cudaStream_t>(stream)));
  }
  void all_reduce_sum_f32(void* data, std::size_t count, void* stream) override {
    RACKSIM_NCCL_CHECK(ncclAllReduce(data, data, count, ncclFloat32, ncclSum, set_->comm(index_), static_cast<cudaStream_t>(stream)));
  }
  void all_gather_f32(const void* in, void* out, std::size_t count, void* stream) override {
    RACKSIM_NCCL_CHECK(ncclAllGather(in, out, count, ncclFloat32, set_->comm(index_), static_cast<cudaStream_t>(stream)));
  }
  void abort() noexcept override { set_->abort(); }

 private:
  std::shared_ptr<NcclCommSet> set_;  ///< the last rank to go tears the set down
  std::size_t index_;
  int rank_, size_;
};

}  // namespace

std::vector<std::unique_ptr<DeviceTpComm>> nccl_tp_comms(std::span<const int> devices) {
  int visible = 0;
  if (cudaGetDeviceCount(&visible) != cudaSuccess) visible = 0;
  for (int d : devices)
    if (d < 0 || d >= visible)
      throw Error(ExitCode::infeasible, "tensor parallel over " + std::to_string(devices.size()) + " GPUs needs device cuda:" +
                                            std::to_string(d) + "; " + std::to_string(visible) + " visible");
  std::vector<ncclComm_t> comms(devices.size());
  RACKSIM_NCCL_CHECK(ncclCommInitAll(comms.data(), static_cast<int>(devices.size()), devices.data()));
  const int n = static_cast<int>(comms.size());
  auto set = std::make_shared<NcclCommSet>(std::move(comms));
  std::vector<std::unique_ptr<DeviceTpComm>> out;
  for (int i = 0; i < n; ++i) out.push_back(std::make_unique<NcclTpComm>(set, static_cast<std::size_t>(i), i, n));
  return out;
}

std::unique_ptr<DeviceTpComm> nccl_tp_comm(std::span<const std::byte> id, int rank, int size, int device) {
  ncclUniqueId uid;
  if (id.size() != sizeof uid) throw Error(ExitCode::internal, "nccl_tp_comm: the id has " + std::to_string(id.size()) + " bytes");
  std::memcpy(&uid, id.data(), sizeof uid);
  RACKSIM_CUDA_CHECK(cudaSetDevice(device));
  ncclComm_t comm = nullptr;
  RACKSIM_NCCL_CHECK(ncclCommInitRank(&comm, size, uid, rank));
  return std::make_unique<NcclTpComm>(std::make_shared<NcclCommSet>(std::vector<ncclComm_t>{comm}), 0, rank, size);
}

}  // namespace racksim::exec::cuda
