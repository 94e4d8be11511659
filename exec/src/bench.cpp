#include "racksim/exec/bench.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <ctime>

#include <fmt/format.h>

#include "racksim/common/error.hpp"

namespace racksim::exec {

std::vector<GemmShape> layer_gemm_shapes(const ModelConfig& model, int tp) {
  if (model.is_moe())
    throw InputError(fmt::format("bench gemm: model {} is a mixture of experts; the layer sweep covers dense models", model.id));
  if (tp < 1 || model.heads % tp != 0 || model.kv_heads % tp != 0 || model.ffn % tp != 0)
    throw InputError(fmt::format("bench gemm: tensor_parallel {} must divide heads {}, kv_heads {} and ffn {} of {}", tp,
                                 model.heads, model.kv_heads, model.ffn, model.id));
  using I = std::int64_t;
  const I hd = model.head_dim, heads = model.heads / tp, kv = model.kv_heads / tp, f = model.ffn / tp, h = model.hidden;
  return {{"qkv_proj", (heads + 2 * kv) * hd, h}, {"o_proj", h, heads * hd}, {"gate_up_proj", 2 * f, h}, {"down_proj", h, f}};
}

std::vector<std::int64_t> default_gemm_ms() {
  std::vector<std::int64_t> ms;
  for (std::int64_t m = 1; m <= 8192; m *= 2) {
    if (ms.empty() || ms.back() != m) ms.push_back(m);
    ms.push_back(m + 1);
  }
  return ms;
}

double GemmCase::flops() const noexcept {
  return 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
}

double GemmCase::bytes() const noexcept {
  const double md = static_cast<double>(m), nd = static_cast<double>(n), kd = static_cast<double>(k);
  return storage_bytes(a, md * kd) + storage_bytes(w, nd * kd) + storage_bytes(c, md * nd);
}

GemmCase gemm_case(std::string_view dtype_name, const GemmShape& shape, std::int64_t m, int sm_major) {
  GemmCase c{shape.name, m, shape.n, shape.k};
  if (dtype_name == "bf16") {
    c.a = c.w = c.c = DType::bf16;
  } else if (dtype_name == "fp8") {
    c.a = c.w = DType::fp8;
    c.c = DType::bf16;
  } else if (dtype_name == "nvfp4") {
    c.w = DType::nvfp4;
    if (sm_major >= 10) {
      c.a = DType::nvfp4;
      c.c = DType::bf16;
    } else {  // Hopper: BF16 activations, the step executor's kernels (fp4_mma_plan decides which)
      c.a = c.c = DType::bf16;
    }
  } else {
    throw InputError(fmt::format("bench gemm: --dtypes: '{}' is not one of bf16, fp8, nvfp4", dtype_name));
  }
  if (m < 1 || shape.n < 1 || shape.k < 1 || shape.k % 16 != 0)
    throw InputError(fmt::format("bench gemm: shape {} m={} n={} k={}: needs m, n >= 1 and k a positive multiple of 16",
                                 shape.name, m, shape.n, shape.k));
  return c;
}

std::vector<GemmCase> gemm_sweep(std::span<const std::string> dtypes, std::span<const GemmShape> shapes,
                                 std::span<const std::int64_t> ms, int sm_major) {
  std::vector<GemmCase> out;
  for (const auto& d : dtypes)
    for (const auto& s : shapes)
      for (std::int64_t m : ms) out.push_back(gemm_case(d, s, m, sm_major));
  return out;
}

int reps_for(double estimate_s, double target_s, int min_reps, int max_reps) noexcept {
  if (!(estimate_s > 0) || !std::isfinite(estimate_s)) return max_reps;
  const double r = std::ceil(target_s / estimate_s);
  return static_cast<int>(std::clamp(r, static_cast<double>(min_reps), static_cast<double>(max_reps)));
}

int graph_banks(double bytes_per_call, std::int64_t l2_bytes) {
  if (!(bytes_per_call > 0) || !std::isfinite(bytes_per_call) || l2_bytes < 1)
    throw InputError(fmt::format("graph_banks: bytes per call {} and L2 bytes {} must be positive", bytes_per_call, l2_bytes));
  const double banks = std::ceil(2.0 * static_cast<double>(l2_bytes) / bytes_per_call);
  return static_cast<int>(std::clamp(banks, 1.0, static_cast<double>(kGraphMaxBanks)));
}

int graph_calls(double call_s, int banks) {
  if (banks < 1 || banks > kGraphMaxCalls) throw InputError(fmt::format("graph_calls: banks = {} is not 1..{}", banks, kGraphMaxCalls));
  const double want = call_s > 0 && std::isfinite(call_s) ? std::ceil(kGraphReplayS / call_s) : kGraphMinCalls;
  const auto n = static_cast<int>(std::clamp(want, static_cast<double>(kGraphMinCalls), static_cast<double>(kGraphMaxCalls)));
  const int up = (n + banks - 1) / banks * banks;
  return up <= kGraphMaxCalls ? up : std::max(banks, kGraphMaxCalls / banks * banks);
}

std::string timing_name(const BenchTiming& t) { return t.graph ? "graph" : ""; }

std::string graph_warm_note(double bytes_per_call, int copies, std::int64_t l2_bytes) {
  const double span = bytes_per_call * copies, need = 2.0 * static_cast<double>(l2_bytes);
  if (span >= need) return "";
  return fmt::format("note: --timing graph: {} cop{} of {:.0f} B rotate over {:.0f} B, under 2 x L2 ({:.0f} B): the calls partly hit the L2",
                     copies, copies == 1 ? "y" : "ies", bytes_per_call, span, need);
}

TimingStats timing_stats(std::span<const double> samples) {
  if (samples.empty()) throw InputError("timing_stats: no samples");
  std::vector<double> v(samples.begin(), samples.end());
  for (double x : v)
    if (!std::isfinite(x) || !(x > 0)) throw InputError(fmt::format("timing_stats: sample {} is not a positive time", x));
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  // Median of an even count: the mean of the two middle samples.
  const double median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  return {median, v.front(), v.back(), static_cast<std::int64_t>(n)};
}

std::vector<double> memory_sizes(double min_bytes, double max_bytes) {
  if (!(min_bytes >= 1) || !(max_bytes >= min_bytes))
    throw InputError(fmt::format("bench memory: sizes {:g}..{:g} bytes: need 1 <= min <= max", min_bytes, max_bytes));
  std::vector<double> out;
  for (double s = std::exp2(std::ceil(std::log2(min_bytes))); s <= max_bytes; s *= 2) out.push_back(s);
  return out;
}

MeasurementRecord timed_record(MeasuredOp op, const TimingStats& t) {
  MeasurementRecord r;
  r.op = std::move(op);
  r.time_median_s = t.median_s;
  r.time_min_s = t.min_s;
  r.time_max_s = t.max_s;
  r.reps = t.reps;
  return r;
}

MeasurementRecord gemm_record(const GemmCase& c, const TimingStats& t) {
  MeasuredOp op;
  op.kind = "gemm";
  op.m = c.m;
  op.n = c.n;
  op.k = c.k;
  op.a_dtype = std::string(to_string(c.a));
  op.w_dtype = std::string(to_string(c.w));
  op.c_dtype = std::string(to_string(c.c));
  MeasurementRecord r = timed_record(std::move(op), t);
  r.flops = c.flops();
  r.bytes_moved = c.bytes();
  return r;
}

MeasurementRecord memory_record(std::string_view variant, double size_bytes, const TimingStats& t) {
  if (variant != "copy" && variant != "read")
    throw InputError(fmt::format("memory_record: variant '{}' is not one of copy, read", variant));
  MeasuredOp op;
  op.kind = "memcpy";
  op.bytes = size_bytes;
  op.variant = std::string(variant);
  MeasurementRecord r = timed_record(std::move(op), t);
  r.bytes_moved = variant == "copy" ? 2 * size_bytes : size_bytes;
  return r;
}

MeasurementRecord launch_record(std::string_view variant, const TimingStats& t) {
  if (variant != "kernel" && variant != "graph_node")
    throw InputError(fmt::format("launch_record: variant '{}' is not one of kernel, graph_node", variant));
  MeasuredOp op;
  op.kind = "launch";
  op.variant = std::string(variant);
  return timed_record(std::move(op), t);
}

MeasurementRecord power_record(const GemmCase& c, const PowerSample& p) {
  if (p.calls < 1 || !(p.seconds > 0))
    throw InputError(fmt::format("power_record: {} calls in {:g} s: need at least one call in a positive time", p.calls, p.seconds));
  const double per_call = p.seconds / static_cast<double>(p.calls);
  MeasurementRecord r = gemm_record(c, TimingStats{per_call, per_call, per_call, p.calls});
  r.time_min_s.reset();
  r.time_max_s.reset();
  if (p.energy_j) r.energy_j = *p.energy_j / static_cast<double>(p.calls);
  r.power_w = p.mean_power_w;
  r.sm_clock_mhz = p.mean_sm_clock_mhz;
  r.clock_events = clock_event_names(p.clock_events);
  return r;
}

MeasurementRecord idle_record(const PowerSample& p) {
  if (!(p.seconds > 0)) throw InputError(fmt::format("idle_record: window {:g} s must be positive", p.seconds));
  MeasurementRecord r;
  r.op.kind = "idle";
  r.time_median_s = p.seconds;
  r.energy_j = p.energy_j;
  r.power_w = p.mean_power_w;
  r.sm_clock_mhz = p.mean_sm_clock_mhz;
  r.clock_events = clock_event_names(p.clock_events);
  return r;
}

int parse_cuda_device(std::string_view value, int device_count) {
  constexpr std::string_view prefix = "cuda:";
  const std::string_view digits = value.substr(std::min(value.size(), prefix.size()));
  const bool well_formed = value.size() > prefix.size() && value.substr(0, prefix.size()) == prefix && digits.size() <= 6 &&
                           std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!well_formed)
    throw InputError(fmt::format("racksim bench: --device: '{}' is not allowed; use cuda:N, N a CUDA device index (cuda:0 is the first)", value));
  int n = 0;
  for (char c : digits) n = n * 10 + (c - '0');
  if (device_count > 0 && n >= device_count)
    throw InputError(fmt::format("racksim bench: --device: '{}' is not a visible device; allowed: cuda:0{} ({} CUDA device{} visible)", value,
                                 device_count > 1 ? fmt::format("..cuda:{}", device_count - 1) : std::string(), device_count,
                                 device_count > 1 ? "s" : ""));
  return n;
}

// ---- stop requests ------------------------------------------------------------------------

namespace {

volatile std::sig_atomic_t g_stop_signal = 0;
struct sigaction g_old_int {}, g_old_term {};
bool g_handlers_installed = false;
// The stop agreement lives on the main thread only (the handler never touches it).
int g_agreements = 0;
int g_agreed_signal = 0;

extern "C" void on_stop_signal(int sig) {
  g_stop_signal = sig;
  // write(2) is async-signal-safe; fprintf is not.
  static const char msg[] = "\nracksim bench: stopping after the current point (a second signal ends it now)\n";
  const ssize_t ignored = ::write(STDERR_FILENO, msg, sizeof msg - 1);
  (void)ignored;
}

}  // namespace

int stop_requested() noexcept { return g_agreements > 0 ? g_agreed_signal : static_cast<int>(g_stop_signal); }
int signal_received() noexcept { return static_cast<int>(g_stop_signal); }
void request_stop(int signal) noexcept { g_stop_signal = signal; }
void clear_stop() noexcept {
  g_stop_signal = 0;
  g_agreed_signal = 0;
}

StopAgreement::StopAgreement() noexcept {
  if (g_agreements++ == 0) g_agreed_signal = 0;
}
StopAgreement::~StopAgreement() { --g_agreements; }
void set_agreed_stop(int signal) noexcept { g_agreed_signal = signal; }

StopSignals::StopSignals() {
  RACKSIM_ASSERT(!g_handlers_installed, "one StopSignals at a time");
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  // SA_RESETHAND: the second signal meets the default action and ends the process at once.
  // SA_RESTART: blocking calls (a CUDA synchronize, a file write) resume after the handler.
  sa.sa_flags = SA_RESETHAND | SA_RESTART;
  sigaction(SIGINT, &sa, &g_old_int);
  sigaction(SIGTERM, &sa, &g_old_term);
  g_handlers_installed = true;
}

StopSignals::~StopSignals() {
  sigaction(SIGINT, &g_old_int, nullptr);
  sigaction(SIGTERM, &g_old_term, nullptr);
  g_handlers_installed = false;
}

int stopped_exit_code(int signal) noexcept { return signal > 0 ? 128 + signal : 0; }

std::string progress_line(std::size_t done, std::size_t total, std::string_view what, double elapsed_s) {
  return fmt::format("[{}/{}] {}, {:.1f} s elapsed", done, total, what, elapsed_s);
}

SweepRecorder::SweepRecorder(std::size_t total_points, Output out)
    : total_(total_points), out_(std::move(out)), t0_(std::chrono::steady_clock::now()) {}

double SweepRecorder::elapsed_s() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count(); }

void SweepRecorder::add(const MeasurementRecord& r) {
  records_.push_back(r);
  const std::string id = r.op.identity();
  // A TTY progress line is cleared first, so the result line does not land on top of it.
  if (line_open_) std::fputs("\r\033[K", out_.progress);
  if (out_.log) {
    std::fprintf(out_.log, "%s\n", out_.describe ? out_.describe(r).c_str() : id.c_str());
    std::fflush(out_.log);
  }
  if (out_.progress) {
    const std::string line = progress_line(records_.size(), std::max(total_, records_.size()), id, elapsed_s());
    std::fprintf(out_.progress, out_.progress_tty ? "%s" : "%s\n", line.c_str());
    std::fflush(out_.progress);
    line_open_ = out_.progress_tty;
  }
  if (stop_requested()) throw SweepStopped();
}

RecordSink SweepRecorder::sink() {
  return [this](const MeasurementRecord& r) { add(r); };
}

int SweepRecorder::run(const std::function<void(const RecordSink&)>& body) {
  if (const int sig = stop_requested()) return sig;
  try {
    body(sink());
  } catch (const SweepStopped&) {
    return stop_requested();
  }
  return 0;
}

void SweepRecorder::drop_planned(std::size_t points) noexcept { total_ -= std::min(total_, points); }

void SweepRecorder::finish() {
  if (line_open_) std::fputs("\r\033[K", out_.progress);
  line_open_ = false;
}

std::string catalog_gpu_id(std::string_view name) {
  const auto has = [&](std::string_view s) { return name.find(s) != std::string_view::npos; };
  if (has("PCIe") || has("NVL")) return "";
  if (has("GB300")) return "gb300";
  if (has("GB200")) return "gb200";
  if (has("B300")) return "b300";
  if (has("B200")) return "b200";
  if (has("H200")) return "h200-sxm";
  if (has("H100") && (has("HBM3") || has("SXM"))) return "h100-sxm";
  return "";
}

std::string build_commit() {
#ifdef RACKSIM_GIT_COMMIT
  return RACKSIM_GIT_COMMIT;
#else
  return "";
#endif
}

std::string utc_now_iso8601() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace racksim::exec
