// [cuda] NCCL all-reduce, all-gather and reduce-scatter over every visible GPU of this process
// (one GPU: a 1-rank communicator, which NCCL supports) against sums computed on the host, and a
// tiny collectives bench producing records calibrate can read.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <random>
#include <string>
#include <vector>

#include "racksim/common/measurement.hpp"
#include "racksim/exec/backend.hpp"
#include "racksim/exec/collectives.hpp"

using namespace racksim;
using namespace racksim::exec;

namespace {

/// Rank r's value at position i: small integers in [-8, 8] that differ by rank and position, so
/// a misplaced block or a missing rank shows. Every partial sum of up to 8 ranks is an integer
/// of magnitude <= 64, exact in BF16 (8 significant bits), FP16, FP32 and INT8: NCCL's reduction
/// order and per-step rounding cannot change the result, and the check is equality.
float value(int r, std::size_t i) { return static_cast<float>(static_cast<int>((static_cast<std::size_t>(r) * 7 + i * 3) % 17) - 8); }

std::vector<std::vector<float>> inputs(int ranks, std::size_t n) {
  std::vector<std::vector<float>> in(static_cast<std::size_t>(ranks), std::vector<float>(n));
  for (int r = 0; r < ranks; ++r)
    for (std::size_t i = 0; i < n; ++i) in[static_cast<std::size_t>(r)][i] = value(r, i);
  return in;
}

float host_sum(const std::vector<std::vector<float>>& in, std::size_t i) {
  float s = 0;
  for (const auto& v : in) s += v[i];
  return s;
}

}  // namespace

TEST_CASE("all-reduce, all-gather and reduce-scatter match host sums on every visible GPU", "[cuda][collectives]") {
  const int ranks = std::min(cuda_device_count(), 8);
  REQUIRE(ranks >= 1);
  // n = 1001 per rank: odd, so no count is a multiple of a vector width or a chunk size.
  const std::size_t n = 1001;
  for (CollectiveDType t : {CollectiveDType::fp32, CollectiveDType::bf16, CollectiveDType::fp16, CollectiveDType::int8}) {
    INFO("dtype " << to_string(t) << ", " << ranks << " ranks");
    {  // all_reduce: every rank ends with the element-wise sum.
      const auto in = inputs(ranks, n);
      const auto out = cuda_collective_values(CollectiveOp::all_reduce, t, in);
      REQUIRE(out.size() == static_cast<std::size_t>(ranks));
      for (int r = 0; r < ranks; ++r) {
        REQUIRE(out[static_cast<std::size_t>(r)].size() == n);
        for (std::size_t i = 0; i < n; ++i) {
          INFO("all_reduce rank " << r << " element " << i);
          REQUIRE(out[static_cast<std::size_t>(r)][i] == host_sum(in, i));
        }
      }
    }
    {  // all_gather: every rank ends with rank q's n values at q x n.
      const auto in = inputs(ranks, n);
      const auto out = cuda_collective_values(CollectiveOp::all_gather, t, in);
      for (int r = 0; r < ranks; ++r) {
        REQUIRE(out[static_cast<std::size_t>(r)].size() == n * static_cast<std::size_t>(ranks));
        for (int q = 0; q < ranks; ++q)
          for (std::size_t i = 0; i < n; ++i) {
            INFO("all_gather rank " << r << " block " << q << " element " << i);
            REQUIRE(out[static_cast<std::size_t>(r)][static_cast<std::size_t>(q) * n + i] == value(q, i));
          }
      }
    }
    {  // reduce_scatter: rank r ends with block r (n values) of the sum of ranks x n inputs.
      const auto in = inputs(ranks, n * static_cast<std::size_t>(ranks));
      const auto out = cuda_collective_values(CollectiveOp::reduce_scatter, t, in);
      for (int r = 0; r < ranks; ++r) {
        REQUIRE(out[static_cast<std::size_t>(r)].size() == n);
        for (std::size_t i = 0; i < n; ++i) {
          INFO("reduce_scatter rank " << r << " element " << i);
          REQUIRE(out[static_cast<std::size_t>(r)][i] == host_sum(in, static_cast<std::size_t>(r) * n + i));
        }
      }
    }
  }
}

TEST_CASE("FP32 all-reduce of random values within the summation bound", "[cuda][collectives]") {
  // Random values in [-1, 1): any summation order of n ranks is within (n - 1) 2^-24 sum |x|
  // of the exact sum (Higham, gamma_{n-1}); computed here in double.
  const int ranks = std::min(cuda_device_count(), 8);
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<std::vector<float>> in(static_cast<std::size_t>(ranks), std::vector<float>(4096));
  for (auto& v : in)
    for (auto& x : v) x = u(rng);
  const auto out = cuda_collective_values(CollectiveOp::all_reduce, CollectiveDType::fp32, in);
  for (int r = 0; r < ranks; ++r)
    for (std::size_t i = 0; i < 4096; ++i) {
      double exact = 0, mag = 0;
      for (const auto& v : in) exact += v[i], mag += std::fabs(v[i]);
      REQUIRE(std::fabs(out[static_cast<std::size_t>(r)][i] - exact) <= std::max(ranks - 1, 1) * std::ldexp(1.0, -24) * mag);
    }
}

TEST_CASE("the collectives bench writes records calibrate can read", "[cuda][collectives][bench]") {
  const int ranks = std::min(cuda_device_count(), 8);
  BenchTiming t;
  t.warmup = 1;
  t.min_reps = 3;
  t.max_reps = 5;
  const std::vector<CollectiveOp> ops = {CollectiveOp::all_reduce, CollectiveOp::all_gather, CollectiveOp::reduce_scatter};
  const std::vector<CollectiveDType> dtypes = {CollectiveDType::bf16};
  const std::vector<double> sizes = {1024, 1 << 20};
  const auto cases = collective_sweep(ops, dtypes, sizes, ranks);
  REQUIRE(cases.size() == 6);
  int seen = 0;
  MeasurementFile f;
  f.records = cuda_bench_collectives(cases, t, ranks, [&](const MeasurementRecord&) { ++seen; });
  REQUIRE(f.records.size() == 6);
  CHECK(seen == 6);
  f.run.device = "test";
  f.run.source = "exec_collectives_test";
  f.run.nccl = cuda_nccl_version();
  CHECK(f.run.nccl.find("2.") == 0);
  const MeasurementFile back = parse_measurements(format_measurements(f), "collectives.json");
  for (const auto& r : back.records) {
    INFO(r.op.identity());
    CHECK(r.op.ranks == ranks);
    CHECK(r.time_median_s > 0);
    CHECK(r.time_median_s < 1.0);
    CHECK(r.reps >= 3);
  }
  CHECK_THROWS_AS(cuda_bench_collectives(cases, t, ranks + 1, nullptr), InputError);
}
