#pragma once
/// NCCL collectives for tensor parallelism: all-reduce, all-gather and reduce-scatter, timed the
/// nccl-tests way (doc/PERFORMANCE.md) and written as measurement records. The host side (sweeps,
/// counts, bandwidths, records) is here and unit tested without a GPU; the NCCL calls are in
/// exec/cuda/collectives.cu, reached through the cuda_* entry points (backend_registry.cpp),
/// which throw InfeasibleError (exit 3) without the CUDA backend or a device.
///
/// Sizes follow nccl-tests' "size" (the measurement schema's `bytes`): the buffer each rank
/// holds, i.e. all_reduce: the send (= receive) buffer; all_gather: the gathered output
/// (ranks x the send buffer); reduce_scatter: the input (ranks x the output).

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "racksim/common/measurement.hpp"
#include "racksim/exec/bench.hpp"
#include "racksim/exec/process_group.hpp"

namespace racksim::exec {

/// The collectives of tensor parallelism.
enum class CollectiveOp { all_reduce, all_gather, reduce_scatter };
/// The measurement kind ("all_reduce", "all_gather", "reduce_scatter").
[[nodiscard]] std::string_view to_string(CollectiveOp op) noexcept;
/// Parses a kind name; InputError naming `option`, the value and the allowed names.
[[nodiscard]] CollectiveOp parse_collective_op(std::string_view name, std::string_view option);

/// Element types of the collectives bench (NCCL ncclFloat32, ncclBfloat16, ncclFloat16, ncclInt8).
enum class CollectiveDType { fp32, bf16, fp16, int8 };
[[nodiscard]] std::string_view to_string(CollectiveDType t) noexcept;
/// Parses "fp32", "bf16", "fp16", "int8"; InputError naming `option`, the value and the allowed names.
[[nodiscard]] CollectiveDType parse_collective_dtype(std::string_view name, std::string_view option);
/// Bytes of one element: 4, 2, 2, 1.
[[nodiscard]] int element_bytes(CollectiveDType t) noexcept;

/// nccl-tests' bus-bandwidth factor: busbw = algbw x factor. all_reduce 2(n-1)/n; all_gather,
/// reduce_scatter (n-1)/n. 0 for n = 1 (nothing crosses a link).
[[nodiscard]] double bus_factor(CollectiveOp op, int ranks) noexcept;

/// One collective to time: what each rank passes to NCCL.
struct CollectiveCase {
  CollectiveOp op = CollectiveOp::all_reduce;
  CollectiveDType dtype = CollectiveDType::bf16;
  int ranks = 1;
  std::int64_t send_count = 0;   ///< elements in each rank's send buffer
  std::int64_t recv_count = 0;   ///< elements in each rank's receive buffer
  std::int64_t count = 0;        ///< the NCCL call's count: all_reduce count, all_gather sendcount, reduce_scatter recvcount

  [[nodiscard]] double send_bytes() const noexcept;
  [[nodiscard]] double recv_bytes() const noexcept;
  /// nccl-tests "size": the larger of the two buffers (schema `bytes`).
  [[nodiscard]] double size_bytes() const noexcept;
};

/// The case of nccl-tests size `size_bytes` on `ranks` ranks: whole elements, and for
/// all_gather and reduce_scatter `ranks` equal chunks, rounding down as nccl-tests does
/// (size_bytes() then says what is timed). count is 0 when the size cannot give every rank one
/// element (the sweep skips such cases). InputError for ranks < 1 or a size that is not finite
/// and positive.
[[nodiscard]] CollectiveCase collective_case(CollectiveOp op, CollectiveDType dtype, double size_bytes, int ranks);

/// Sizes of the collectives sweep: powers of two from `min_bytes` to `max_bytes` (default
/// 1 KiB .. 1 GiB); InputError when min_bytes < 1 or min > max.
[[nodiscard]] std::vector<double> collective_sizes(double min_bytes = 1024, double max_bytes = 1073741824.0);

/// Every (op, dtype, size) on `ranks` ranks in that nesting order, cases of count 0 left out.
[[nodiscard]] std::vector<CollectiveCase> collective_sweep(std::span<const CollectiveOp> ops, std::span<const CollectiveDType> dtypes,
                                                           std::span<const double> sizes, int ranks);

/// The record of a timed case: kind, ranks, bytes (= size_bytes()), dtype; time is the slowest
/// rank's median (the caller's reduction).
[[nodiscard]] MeasurementRecord collective_record(const CollectiveCase& c, const TimingStats& t);
/// algbw = bytes / time (bytes/s), nccl-tests' definition. 0 for a record that is not a collective.
[[nodiscard]] double algbw(const MeasurementRecord& r) noexcept;
/// busbw = algbw x bus_factor(kind, ranks) (bytes/s).
[[nodiscard]] double busbw(const MeasurementRecord& r) noexcept;

/// NCCL's version code (ncclGetVersion: major x 10000 + minor x 100 + patch since 2.9, major x
/// 1000 + minor x 100 + patch before) as "2.28.9".
[[nodiscard]] std::string nccl_version_text(int code);

/// The NCCL unique id: NCCL_UNIQUE_ID_BYTES (static_assert in collectives.cu).
using NcclId = std::array<std::byte, 128>;

// ---- routed to exec/cuda/collectives.cu (InfeasibleError without the CUDA backend) --------

/// ncclGetUniqueId (rank 0 of a multi-process run).
[[nodiscard]] NcclId cuda_nccl_unique_id();
/// The NCCL library's version ("2.28.9"), "" without the CUDA backend.
[[nodiscard]] std::string cuda_nccl_version();

/// One process over CUDA devices 0..gpus-1 (ncclCommInitAll, one stream each, every call in an
/// ncclGroupStart/End): each case timed per `timing` on every device (warm-up, a probe sizing
/// the repetitions, each repetition between CUDA events on each device's stream, no L2 flush:
/// nccl-tests' practice), out of place; the record's time is the slowest device's median.
/// `done` gets each record as it is measured. InputError when gpus exceeds the visible devices.
[[nodiscard]] std::vector<MeasurementRecord> cuda_bench_collectives(std::span<const CollectiveCase> cases, const BenchTiming& timing,
                                                                    int gpus, const RecordSink& done);

/// One process per GPU (under MPI): this process drives CUDA device `device` as rank
/// `placement.rank` of a communicator made from `id` (ncclCommInitRank). The ranks agree through
/// `group` on the repetitions (the slowest probe), on each time (max over ranks of the median,
/// MPI_Allreduce MAX) and on a stop request (a signal on any rank stops every rank after the same
/// point), so every rank returns the same records. Collective: every rank calls it with the same cases.
[[nodiscard]] std::vector<MeasurementRecord> cuda_bench_collectives_mpi(ProcessGroup& group, const RankPlacement& placement, int device,
                                                                        const NcclId& id, std::span<const CollectiveCase> cases,
                                                                        const BenchTiming& timing, const RecordSink& done);

/// One collective over CUDA devices 0..inputs.size()-1 of this process (the correctness tests):
/// inputs[r] are rank r's send values, rounded on the host to `dtype` (round to nearest even;
/// int8: nearest, saturating), and the result is each rank's receive buffer as floats. Sizes:
/// all_reduce every input n values -> n; all_gather n -> ranks x n (rank r's at r x n);
/// reduce_scatter ranks x n -> n (rank r gets block r of the sum). InputError on unequal or
/// mis-sized inputs or more ranks than devices.
[[nodiscard]] std::vector<std::vector<float>> cuda_collective_values(CollectiveOp op, CollectiveDType dtype,
                                                                     const std::vector<std::vector<float>>& inputs);

}  // namespace racksim::exec
