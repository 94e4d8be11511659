// Host side of the NCCL collectives bench (collectives.hpp): cases, sizes, records, bandwidths.

#include "racksim/exec/collectives.hpp"

#include <cmath>

#include <fmt/format.h>

#include "racksim/common/error.hpp"

namespace racksim::exec {

namespace {

constexpr CollectiveOp kOps[] = {CollectiveOp::all_reduce, CollectiveOp::all_gather, CollectiveOp::reduce_scatter};
constexpr CollectiveDType kDTypes[] = {CollectiveDType::fp32, CollectiveDType::bf16, CollectiveDType::fp16, CollectiveDType::int8};

}  // namespace

std::string_view to_string(CollectiveOp op) noexcept {
  switch (op) {
    case CollectiveOp::all_reduce: return "all_reduce";
    case CollectiveOp::all_gather: return "all_gather";
    case CollectiveOp::reduce_scatter: return "reduce_scatter";
  }
  return "?";
}

CollectiveOp parse_collective_op(std::string_view name, std::string_view option) {
  for (CollectiveOp op : kOps)
    if (to_string(op) == name) return op;
  throw InputError(fmt::format("racksim bench: {}: '{}' is not one of all_reduce, all_gather, reduce_scatter", option, name));
}

std::string_view to_string(CollectiveDType t) noexcept {
  switch (t) {
    case CollectiveDType::fp32: return "fp32";
    case CollectiveDType::bf16: return "bf16";
    case CollectiveDType::fp16: return "fp16";
    case CollectiveDType::int8: return "int8";
  }
  return "?";
}

CollectiveDType parse_collective_dtype(std::string_view name, std::string_view option) {
  for (CollectiveDType t : kDTypes)
    if (to_string(t) == name) return t;
  throw InputError(fmt::format("racksim bench: {}: '{}' is not a collectives element type; allowed: fp32, bf16, fp16, int8", option, name));
}

int element_bytes(CollectiveDType t) noexcept {
  switch (t) {
    case CollectiveDType::fp32: return 4;
    case CollectiveDType::bf16:
    case CollectiveDType::fp16: return 2;
    case CollectiveDType::int8: return 1;
  }
  return 1;
}

double bus_factor(CollectiveOp op, int ranks) noexcept {
  if (ranks < 2) return 0;
  const double n = ranks;
  return op == CollectiveOp::all_reduce ? 2 * (n - 1) / n : (n - 1) / n;
}

double CollectiveCase::send_bytes() const noexcept { return static_cast<double>(send_count) * element_bytes(dtype); }
double CollectiveCase::recv_bytes() const noexcept { return static_cast<double>(recv_count) * element_bytes(dtype); }
double CollectiveCase::size_bytes() const noexcept { return std::max(send_bytes(), recv_bytes()); }

CollectiveCase collective_case(CollectiveOp op, CollectiveDType dtype, double size_bytes, int ranks) {
  if (ranks < 1) throw InputError(fmt::format("collective_case: {} ranks: need at least 1", ranks));
  if (!std::isfinite(size_bytes) || !(size_bytes > 0))
    throw InputError(fmt::format("collective_case: size {:g} bytes: need a finite positive size", size_bytes));
  CollectiveCase c;
  c.op = op;
  c.dtype = dtype;
  c.ranks = ranks;
  const auto elements = static_cast<std::int64_t>(std::floor(size_bytes / element_bytes(dtype)));
  switch (op) {
    case CollectiveOp::all_reduce:
      c.count = c.send_count = c.recv_count = elements;
      break;
    case CollectiveOp::all_gather:  // each rank sends one chunk and receives all `ranks` of them
      c.count = c.send_count = elements / ranks;
      c.recv_count = c.count * ranks;
      break;
    case CollectiveOp::reduce_scatter:  // each rank sends `ranks` chunks and keeps the sum of its own
      c.count = c.recv_count = elements / ranks;
      c.send_count = c.count * ranks;
      break;
  }
  if (c.count == 0) c.send_count = c.recv_count = 0;
  return c;
}

std::vector<double> collective_sizes(double min_bytes, double max_bytes) {
  if (!(min_bytes >= 1) || !(max_bytes >= min_bytes) || !std::isfinite(max_bytes))
    throw InputError(fmt::format("racksim bench: collectives sizes {:g}..{:g} bytes: need 1 <= --min-bytes <= --max-bytes", min_bytes,
                                 max_bytes));
  std::vector<double> out;
  for (double s = std::exp2(std::ceil(std::log2(min_bytes))); s <= max_bytes; s *= 2) out.push_back(s);
  return out;
}

std::vector<CollectiveCase> collective_sweep(std::span<const CollectiveOp> ops, std::span<const CollectiveDType> dtypes,
                                             std::span<const double> sizes, int ranks) {
  std::vector<CollectiveCase> out;
  for (CollectiveOp op : ops)
    for (CollectiveDType t : dtypes)
      for (double s : sizes) {
        CollectiveCase c = collective_case(op, t, s, ranks);
        if (c.count > 0) out.push_back(c);
      }
  return out;
}

MeasurementRecord collective_record(const CollectiveCase& c, const TimingStats& t) {
  MeasurementRecord r;
  r.op.kind = std::string(to_string(c.op));
  r.op.ranks = c.ranks;
  r.op.bytes = c.size_bytes();
  r.op.dtype = std::string(to_string(c.dtype));
  r.time_median_s = t.median_s;
  r.time_min_s = t.min_s;
  r.time_max_s = t.max_s;
  r.reps = t.reps;
  return r;
}

double algbw(const MeasurementRecord& r) noexcept {
  if (!is_collective_kind(r.op.kind) || !(r.time_median_s > 0)) return 0;
  return r.op.bytes / r.time_median_s;
}

double busbw(const MeasurementRecord& r) noexcept {
  const double a = algbw(r);
  if (a == 0) return 0;
  for (CollectiveOp op : kOps)
    if (to_string(op) == r.op.kind) return a * bus_factor(op, r.op.ranks);
  // all_to_all (nccl-tests: (n-1)/n) and send_recv (1): not timed here, but read from files.
  if (r.op.kind == "all_to_all") return r.op.ranks > 1 ? a * (r.op.ranks - 1) / r.op.ranks : 0;
  return a;
}

std::string nccl_version_text(int code) {
  if (code <= 0) return "";
  // NCCL_VERSION(X,Y,Z): X*10000 + Y*100 + Z from 2.9 on; X*1000 + Y*100 + Z before.
  if (code >= 10000) return fmt::format("{}.{}.{}", code / 10000, code % 10000 / 100, code % 100);
  return fmt::format("{}.{}.{}", code / 1000, code % 1000 / 100, code % 100);
}

}  // namespace racksim::exec
