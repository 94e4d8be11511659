// The step executor's tensor-parallel collectives through NCCL (tensor_parallel.hpp,
// DeviceTpComm): ncclAllReduce (sum, BF16, in place) after the row-parallel o_proj and
// down_proj, and ncclAllGather of the FP32 logits' vocabulary slices. Both are enqueued on the
// step's stream, so a captured decode graph holds them too (NCCL >= 2.9 supports capture).

#include "tp_nccl.hpp"

#include <cuda_runtime.h>
#include <nccl.h>

#include <cstring>

#include "cuda_check.hpp"
#include "nccl_check.hpp"

namespace racksim::exec::cuda {

namespace {

class NcclTpComm final : public DeviceTpComm {
 public:
  NcclTpComm(ncclComm_t comm, int rank, int size) : comm_(comm), rank_(rank), size_(size) {}
  ~NcclTpComm() override { ncclCommDestroy(comm_); }
  NcclTpComm(const NcclTpComm&) = delete;
  NcclTpComm& operator=(const NcclTpComm&) = delete;
  [[nodiscard]] int rank() const override { return rank_; }
  [[nodiscard]] int size() const override { return size_; }
  void all_reduce_sum_bf16(void* data, std::size_t count, void* stream) override {
    RACKSIM_NCCL_CHECK(ncclAllReduce(data, data, count, ncclBfloat16, ncclSum, comm_, static_cast<cudaStream_t>(stream)));
  }
  void all_gather_f32(const void* in, void* out, std::size_t count, void* stream) override {
    RACKSIM_NCCL_CHECK(ncclAllGather(in, out, count, ncclFloat32, comm_, static_cast<cudaStream_t>(stream)));
  }

 private:
  ncclComm_t comm_;
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
  std::vector<std::unique_ptr<DeviceTpComm>> out;
  for (std::size_t i = 0; i < comms.size(); ++i)
    out.push_back(std::make_unique<NcclTpComm>(comms[i], static_cast<int>(i), static_cast<int>(comms.size())));
  return out;
}

std::unique_ptr<DeviceTpComm> nccl_tp_comm(std::span<const std::byte> id, int rank, int size, int device) {
  ncclUniqueId uid;
  if (id.size() != sizeof uid) throw Error(ExitCode::internal, "nccl_tp_comm: the id has " + std::to_string(id.size()) + " bytes");
  std::memcpy(&uid, id.data(), sizeof uid);
  RACKSIM_CUDA_CHECK(cudaSetDevice(device));
  ncclComm_t comm = nullptr;
  RACKSIM_NCCL_CHECK(ncclCommInitRank(&comm, size, uid, rank));
  return std::make_unique<NcclTpComm>(comm, rank, size);
}

}  // namespace racksim::exec::cuda
