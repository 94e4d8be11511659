#include "racksim/sim/requests.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <numeric>

#include <fmt/format.h>

#include "racksim/common/error.hpp"
#include "racksim/workloads/lengths.hpp"

namespace racksim {

namespace {
/// splitmix64: decorrelates (seed, stream) into a generator seed.
std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}
}  // namespace

Rng::Rng(std::uint64_t seed, std::uint64_t stream) : gen_(mix(seed * 0x100000001b3ULL + mix(stream))) {}

double Rng::uniform() { return static_cast<double>(gen_() >> 11) * 0x1.0p-53; }

std::uint64_t Rng::below(std::uint64_t n) {
  RACKSIM_ASSERT(n > 0, "below(0)");
  const std::uint64_t limit = ~std::uint64_t{0} - (~std::uint64_t{0} % n);  // reject the partial last range
  std::uint64_t x = gen_();
  while (x >= limit) x = gen_();
  return x % n;
}

double Rng::exponential(double rate) { return -std::log1p(-uniform()) / rate; }

double Rng::normal() {
  const double u1 = 1.0 - uniform(), u2 = uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

namespace {

enum Stream : std::uint64_t { kArrivals = 1, kInput = 2, kOutput = 3, kPermutation = 4 };

/// Sample indices into a data set: seeded permutations, one after another, so every sample is
/// used once before any repeats (MLPerf issues each of its samples).
std::vector<std::uint32_t> dataset_order(std::size_t n_requests, std::size_t n_samples, std::uint64_t seed) {
  Rng rng(seed, kPermutation);
  std::vector<std::uint32_t> out;
  out.reserve(n_requests);
  std::vector<std::uint32_t> perm(n_samples);
  while (out.size() < n_requests) {
    std::iota(perm.begin(), perm.end(), 0U);
    for (std::size_t i = n_samples - 1; i > 0; --i) std::swap(perm[i], perm[rng.below(i + 1)]);
    for (std::size_t i = 0; i < n_samples && out.size() < n_requests; ++i) out.push_back(perm[i]);
  }
  return out;
}

std::uint32_t clamp_len(double v, std::int64_t lo, std::int64_t hi) {
  return static_cast<std::uint32_t>(std::clamp<std::int64_t>(std::llround(v), lo, hi));
}

/// Lengths from one distribution. For lognormal(mean M, max B): sigma is chosen so that B is
/// the 99.9th percentile (ln B = mu + 3.09 sigma with mu = ln M - sigma^2/2), then clamped to [1, B].
std::vector<std::uint32_t> draw(const LengthDistribution& d, std::size_t n, const std::vector<std::uint32_t>& order,
                                bool output, Rng& rng) {
  std::vector<std::uint32_t> v(n);
  if (d.kind == "fixed") {
    std::fill(v.begin(), v.end(), static_cast<std::uint32_t>(d.value));
  } else if (d.kind == "uniform") {
    const auto span = static_cast<std::uint64_t>(d.max - d.min + 1);
    for (auto& x : v) x = static_cast<std::uint32_t>(d.min + static_cast<std::int64_t>(rng.below(span)));
  } else if (d.kind == "lognormal") {
    const double z = 3.090232306167813, r = std::log(static_cast<double>(d.max) / d.mean);
    const double disc = z * z - 2.0 * r;
    const double sigma = disc > 0 ? z - std::sqrt(disc) : z;
    const double mu = std::log(d.mean) - sigma * sigma / 2;
    for (auto& x : v) x = clamp_len(std::exp(mu + sigma * rng.normal()), 1, d.max);
  } else {
    const LengthTable& t = dataset_lengths(d.name);
    if (!output) {
      for (std::size_t i = 0; i < n; ++i) v[i] = t.input[order[i]];
    } else {
      // Only the generated mean is published: rescale the reference answers' shape to it.
      const double scale = d.mean > 0 ? d.mean / t.mean_output() : 1.0;
      for (std::size_t i = 0; i < n; ++i) v[i] = clamp_len(t.output[order[i]] * scale, 1, t.max_output);
    }
  }
  return v;
}

}  // namespace

RequestSet generate_requests(const Scenario& s, double qps) {
  const auto& w = s.workload;
  if (w.scenario == "trace") {
    RequestSet r = read_trace(w.trace);
    if (w.requests > 0) {  // workload.requests on a trace: its first N rows
      const auto n = static_cast<std::size_t>(w.requests);
      if (n > r.size())
        throw InputError(fmt::format("{}: workload.requests {} is more than the trace's {} requests", w.trace, w.requests, r.size()));
      r.arrival.resize(n);
      r.input.resize(n);
      r.output.resize(n);
    }
    return r;
  }
  const auto n = static_cast<std::size_t>(w.requests);
  RequestSet r;
  // One sample order shared by input and output, so a data set's lengths stay paired.
  std::size_t samples = 0;
  if (w.input_tokens.kind == "dataset") samples = dataset_lengths(w.input_tokens.name).input.size();
  else if (w.output_tokens.kind == "dataset") samples = dataset_lengths(w.output_tokens.name).input.size();
  const auto order = samples ? dataset_order(n, samples, s.seed) : std::vector<std::uint32_t>{};
  Rng in_rng(s.seed, kInput), out_rng(s.seed, kOutput);
  r.input = draw(w.input_tokens, n, order, false, in_rng);
  r.output = draw(w.output_tokens, n, order, true, out_rng);
  r.arrival.resize(n);
  // Offline: all at t = 0. Concurrency: the first clients' requests at t = 0, the rest when a
  // client's previous request finishes (the simulation sets those times).
  if (w.scenario != "offline" && w.scenario != "concurrency") {
    Rng arr(s.seed, kArrivals);
    double t = 0;
    for (auto& a : r.arrival) {
      t += arr.exponential(qps);
      a = SimTime::seconds(t);
    }
  }
  return r;
}

RequestSet read_trace(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError(fmt::format("{}: cannot open trace", path));
  RequestSet r;
  std::string line;
  std::size_t no = 0;
  double last = 0;
  while (std::getline(in, line)) {
    ++no;
    if (!line.empty() && line.back() == '\r') line.pop_back();  // CRLF files
    if (line.empty() || line[0] == '#') continue;
    if (r.size() == 0 && line.rfind("arrival_s,", 0) == 0) continue;  // the header names the columns
    double t = 0;
    long long a = 0, b = 0;
    const char* p = line.data();
    const char* end = line.data() + line.size();
    auto r1 = std::from_chars(p, end, t);
    bool ok = r1.ec == std::errc{} && r1.ptr < end && *r1.ptr == ',';
    if (ok) {
      auto r2 = std::from_chars(r1.ptr + 1, end, a);
      ok = r2.ec == std::errc{} && r2.ptr < end && *r2.ptr == ',';
      if (ok) {
        auto r3 = std::from_chars(r2.ptr + 1, end, b);
        ok = r3.ec == std::errc{} && r3.ptr == end;
      }
    }
    constexpr long long kMaxTokens = 1LL << 24;
    if (!ok || t < 0 || a < 1 || b < 1 || a > kMaxTokens || b > kMaxTokens || !std::isfinite(t) || t > 1e6)
      throw InputError(fmt::format("{}:{}: '{}' is not arrival_s,input_tokens,output_tokens (0 <= arrival <= 1e6 s, 1 <= tokens <= {})",
                                   path, no, line, kMaxTokens));
    if (t < last) throw InputError(fmt::format("{}:{}: arrival {} is before the previous one ({}); sort the trace", path, no, t, last));
    last = t;
    r.arrival.push_back(SimTime::seconds(t));
    r.input.push_back(static_cast<std::uint32_t>(a));
    r.output.push_back(static_cast<std::uint32_t>(b));
  }
  if (r.size() == 0) throw InputError(fmt::format("{}: trace has no requests", path));
  return r;
}

}  // namespace racksim
