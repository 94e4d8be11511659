#include "racksim/common/measurement.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "racksim/common/dtype.hpp"
#include "racksim/common/error.hpp"
#include "racksim/common/output.hpp"
#include "racksim/common/yaml_reader.hpp"

namespace racksim {
namespace {

using nlohmann::json;

constexpr std::string_view kKinds[] = {
    "embedding", "rmsnorm", "gemm", "moe_gemm", "rope", "attention_prefill", "attention_decode", "swiglu",
    "residual_add", "moe_router_topk", "moe_permute", "moe_finalize", "sampling", "all_reduce", "all_gather", "reduce_scatter", "all_to_all",
    "send_recv", "memcpy", "launch", "idle", "step"};
constexpr std::string_view kCollectives[] = {"all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv"};
constexpr std::string_view kMemcpyVariants[] = {"copy", "read"};
constexpr std::string_view kLaunchVariants[] = {"kernel", "graph_node"};
constexpr std::string_view kStepVariants[] = {"decode", "prefill"};
constexpr std::string_view kStepTimings[] = {"graph", "eager"};
constexpr std::string_view kElementTypes[] = {"fp32", "bf16", "fp16", "fp8", "int8", "nvfp4", "mxfp4"};
constexpr std::string_view kClockEvents[] = {"gpu_idle",   "applications_clocks", "sw_power_cap",   "hw_slowdown",   "sync_boost",
                                             "sw_thermal", "hw_thermal",          "hw_power_brake", "display_clocks"};

/// A JSON object read under strict rules: every key read is recorded, finish() rejects the rest.
class StrictObject {
 public:
  StrictObject(const json& j, std::string file, std::string path) : j_(j), file_(std::move(file)), path_(std::move(path)) {
    if (!j_.is_object()) throw InputError(fmt::format("{}: {}: must be an object, got {}", file_, where(""), j_.dump()));
  }
  [[nodiscard]] std::string where(std::string_view key) const {
    if (path_.empty()) return std::string(key);
    return key.empty() ? path_ : fmt::format("{}.{}", path_, key);
  }
  [[noreturn]] void fail(std::string_view key, std::string_view what) const {
    const auto it = j_.find(std::string(key));
    throw InputError(fmt::format("{}: {}: {}{}", file_, where(key), it == j_.end() ? "" : fmt::format("'{}' ", it->dump()), what));
  }
  [[nodiscard]] bool has(std::string_view key) {
    known_.emplace_back(key);
    return j_.contains(std::string(key));
  }
  const json& get(std::string_view key) {
    if (!has(key)) throw InputError(fmt::format("{}: {}: missing (required)", file_, where(key)));
    return j_.at(std::string(key));
  }
  std::string string(std::string_view key) {
    const json& v = get(key);
    if (!v.is_string()) fail(key, "must be a string");
    return v.get<std::string>();
  }
  std::string optional_string(std::string_view key) { return has(key) ? string(key) : std::string(); }
  double number(std::string_view key, double min, double max) {
    const json& v = get(key);
    if (!v.is_number()) fail(key, "must be a number");
    const double x = v.get<double>();
    if (!std::isfinite(x) || x < min || x > max) fail(key, fmt::format("is out of range [{:g}, {:g}]", min, max));
    return x;
  }
  std::optional<double> optional_number(std::string_view key, double min, double max) {
    if (!has(key)) return std::nullopt;
    return number(key, min, max);
  }
  std::int64_t integer(std::string_view key, std::int64_t min, std::int64_t max) {
    const json& v = get(key);
    if (!v.is_number_integer()) fail(key, "must be an integer");
    const std::int64_t x = v.get<std::int64_t>();
    if (x < min || x > max) fail(key, fmt::format("is out of range [{}, {}]", min, max));
    return x;
  }
  std::string choice(std::string_view key, std::span<const std::string_view> allowed) {
    std::string s = string(key);
    if (std::find(allowed.begin(), allowed.end(), s) == allowed.end()) fail(key, fmt::format("is not one of {}", join(allowed)));
    return s;
  }
  void finish() const {
    for (auto it = j_.begin(); it != j_.end(); ++it)
      if (std::find(known_.begin(), known_.end(), it.key()) == known_.end()) {
        std::vector<std::string> names(known_.begin(), known_.end());
        std::sort(names.begin(), names.end());
        names.erase(std::unique(names.begin(), names.end()), names.end());
        const auto near = closest(it.key(), names);
        throw InputError(fmt::format("{}: {}: unknown key (value {}){}; allowed: {}", file_, where(it.key()), it.value().dump(),
                                     near ? fmt::format(", did you mean '{}'?", *near) : "", join(names)));
      }
  }
  [[nodiscard]] const std::string& file() const { return file_; }

 private:
  const json& j_;
  std::string file_;
  std::string path_;
  std::vector<std::string> known_;
};

std::string dtype_choice(StrictObject& o, std::string_view key) {
  std::vector<std::string_view> names;
  for (DType t : all_dtypes()) names.push_back(to_string(t));
  return o.choice(key, names);
}

bool is_attention_kind(std::string_view kind) noexcept { return kind == "attention_prefill" || kind == "attention_decode"; }

MeasuredOp read_op(StrictObject& o) {
  MeasuredOp op;
  op.kind = o.choice("kind", kKinds);
  if (is_collective_kind(op.kind)) {
    op.ranks = static_cast<int>(o.integer("ranks", 1, 1 << 20));
    op.bytes = o.number("bytes", 0, 1e18);
    op.dtype = o.choice("dtype", kElementTypes);
    op.algorithm = o.optional_string("algorithm");
  } else if (op.kind == "memcpy") {
    op.bytes = o.number("bytes", 0, 1e18);
    if (o.has("variant")) op.variant = o.choice("variant", kMemcpyVariants);
  } else if (op.kind == "launch") {
    if (o.has("variant")) op.variant = o.choice("variant", kLaunchVariants);
  } else if (op.kind == "step") {
    op.model = o.string("model");
    if (op.model.empty()) o.fail("model", "must name the model the step ran");
    op.variant = o.choice("variant", kStepVariants);
    op.sequences = o.integer("sequences", 1, std::int64_t{1} << 40);
    op.m = o.integer("m", 1, std::int64_t{1} << 40);
    op.n = o.integer("n", 0, std::int64_t{1} << 40);
    op.k = o.integer("k", 1, 1 << 20);
    op.ranks = static_cast<int>(o.integer("ranks", 1, 1 << 20));
    op.a_dtype = dtype_choice(o, "a_dtype");
    op.w_dtype = dtype_choice(o, "w_dtype");
    op.dtype = dtype_choice(o, "dtype");
  } else if (is_attention_kind(op.kind)) {
    op.m = o.integer("m", 1, std::int64_t{1} << 40);
    op.n = o.integer("n", 1, std::int64_t{1} << 20);
    op.k = o.integer("k", 1, std::int64_t{1} << 20);
    op.a_dtype = dtype_choice(o, "a_dtype");
    op.w_dtype = dtype_choice(o, "w_dtype");
    op.sequences = o.integer("sequences", 1, std::int64_t{1} << 40);
    op.pairs = o.number("pairs", 1, 1e30);
  } else if (op.kind != "idle") {
    op.m = o.integer("m", 0, std::int64_t{1} << 40);
    op.n = o.integer("n", 0, std::int64_t{1} << 40);
    op.k = o.integer("k", 0, std::int64_t{1} << 40);
    op.a_dtype = dtype_choice(o, "a_dtype");
    op.w_dtype = o.has("w_dtype") ? dtype_choice(o, "w_dtype") : op.a_dtype;
    op.c_dtype = o.has("c_dtype") ? dtype_choice(o, "c_dtype") : std::string("bf16");
  }
  o.finish();
  return op;
}

json op_json(const MeasuredOp& op) {
  json j = {{"kind", op.kind}};
  if (is_collective_kind(op.kind)) {
    j["ranks"] = op.ranks;
    j["bytes"] = op.bytes;
    j["dtype"] = op.dtype;
    if (!op.algorithm.empty()) j["algorithm"] = op.algorithm;
  } else if (op.kind == "memcpy") {
    j["bytes"] = op.bytes;
    if (!op.variant.empty()) j["variant"] = op.variant;
  } else if (op.kind == "launch") {
    if (!op.variant.empty()) j["variant"] = op.variant;
  } else if (op.kind == "step") {
    j["model"] = op.model;
    j["variant"] = op.variant;
    j["sequences"] = op.sequences;
    j["m"] = op.m;
    j["n"] = op.n;
    j["k"] = op.k;
    j["ranks"] = op.ranks;
    j["a_dtype"] = op.a_dtype;
    j["w_dtype"] = op.w_dtype;
    j["dtype"] = op.dtype;
  } else if (op.kind != "idle") {
    j["m"] = op.m;
    j["n"] = op.n;
    j["k"] = op.k;
    j["a_dtype"] = op.a_dtype;
    j["w_dtype"] = op.w_dtype;
    if (is_attention_kind(op.kind)) {
      j["sequences"] = op.sequences;
      j["pairs"] = op.pairs;
    } else {
      j["c_dtype"] = op.c_dtype;
    }
  }
  return j;
}

}  // namespace

std::span<const std::string_view> measurement_kinds() noexcept { return kKinds; }

std::span<const std::string_view> clock_event_kinds() noexcept { return kClockEvents; }

std::vector<std::string> clock_event_names(std::uint64_t mask) {
  std::vector<std::string> out;
  for (int bit = 0; bit < 64; ++bit)
    if (mask & (std::uint64_t{1} << bit))
      out.push_back(bit < static_cast<int>(std::size(kClockEvents)) ? std::string(kClockEvents[bit]) : fmt::format("bit_{}", bit));
  return out;
}

bool is_collective_kind(std::string_view kind) noexcept {
  return std::find(std::begin(kCollectives), std::end(kCollectives), kind) != std::end(kCollectives);
}

std::string MeasuredOp::identity() const {
  if (is_collective_kind(kind))
    return fmt::format("{} ranks={} bytes={:.0f} dtype={}{}", kind, ranks, bytes, dtype, algorithm.empty() ? "" : " algo=" + algorithm);
  const std::string v = variant.empty() ? "" : " variant=" + variant;
  if (kind == "memcpy") return fmt::format("memcpy bytes={:.0f}{}", bytes, v);
  if (kind == "launch" || kind == "idle") return kind + v;
  if (kind == "step")
    return fmt::format("step {} model={} seqs={} tokens={} context={} layers={} gpus={} a={} w={} kv={}", variant, model, sequences, m, n,
                       k, ranks, a_dtype, w_dtype, dtype);
  if (is_attention_kind(kind))
    return fmt::format("{} tokens={} heads={} head_dim={} seqs={} pairs={:.0f} q={} kv={}", kind, m, n, k, sequences, pairs, a_dtype,
                       w_dtype);
  // Same spelling as Op::identity() (workloads/op.hpp), so predictions join on it.
  return fmt::format("{} m={} n={} k={} a={} w={} c={}", kind, m, n, k, a_dtype, w_dtype, c_dtype);
}

MeasurementFile parse_measurements(std::string_view text, const std::string& name) {
  json root;
  try {
    root = json::parse(text);
  } catch (const json::parse_error& e) {
    throw InputError(fmt::format("{}: not valid JSON: {}", name, e.what()));
  }
  MeasurementFile f;
  f.path = name;
  StrictObject top(root, name, "");
  const std::string schema = top.string("schema");
  if (schema != kMeasurementSchema) top.fail("schema", fmt::format("is not '{}'", kMeasurementSchema));
  {
    StrictObject r(top.get("run"), name, "run");
    MeasurementRun& run = f.run;
    run.device = r.string("device");
    run.gpu = r.optional_string("gpu");
    run.system = r.optional_string("system");
    run.driver = r.optional_string("driver");
    run.cuda = r.optional_string("cuda");
    run.nccl = r.optional_string("nccl");
    run.software = r.optional_string("software");
    run.sm_clock_mhz = r.optional_number("sm_clock_mhz", 1, 1e5);
    run.memory_clock_mhz = r.optional_number("memory_clock_mhz", 1, 1e5);
    run.power_limit_w = r.optional_number("power_limit_w", 1, 1e5);
    run.temperature_c = r.optional_number("temperature_c", -50, 200);
    run.date = r.optional_string("date");
    run.commit = r.optional_string("commit");
    run.source = r.string("source");
    if (r.has("timing")) {
      static constexpr std::string_view kTimings[] = {"call", "graph"};
      run.timing = r.choice("timing", kTimings);
    }
    r.finish();
  }
  const json& recs = top.get("records");
  if (!recs.is_array()) top.fail("records", "must be a list of records");
  f.records.reserve(recs.size());
  for (std::size_t i = 0; i < recs.size(); ++i) {
    const std::string path = fmt::format("records[{}]", i);
    StrictObject r(recs[i], name, path);
    MeasurementRecord rec;
    {
      StrictObject o(r.get("op"), name, path + ".op");
      rec.op = read_op(o);
    }
    rec.time_median_s = r.number("time_median_s", 0, 1e6);
    if (!(rec.time_median_s > 0)) r.fail("time_median_s", "must be > 0");
    rec.time_min_s = r.optional_number("time_min_s", 0, 1e6);
    rec.time_max_s = r.optional_number("time_max_s", 0, 1e6);
    if (rec.time_min_s && *rec.time_min_s > rec.time_median_s) r.fail("time_min_s", "must not exceed time_median_s");
    if (rec.time_max_s && *rec.time_max_s < rec.time_median_s) r.fail("time_max_s", "must not be below time_median_s");
    rec.reps = r.has("reps") ? r.integer("reps", 0, std::numeric_limits<std::int64_t>::max()) : 0;
    rec.flops = r.optional_number("flops", 0, 1e30);
    rec.bytes_moved = r.optional_number("bytes_moved", 0, 1e30);
    // flops_per_s and bytes_per_s (the achieved rates, written for readers) must be the record's
    // own quotient: a file edited by hand cannot carry a rate that disagrees with its time.
    const auto rate = [&](std::string_view key, std::string_view of, const std::optional<double>& amount) {
      if (!r.has(key)) return;
      const double v = r.number(key, 0, 1e40);
      if (!amount) r.fail(key, fmt::format("needs {} (the rate is {} / time_median_s)", of, of));
      const double want = *amount / rec.time_median_s;
      if (std::fabs(v - want) > 1e-9 * std::max(std::fabs(want), 1e-300))
        r.fail(key, fmt::format("is not {} / time_median_s ({:.9g})", of, want));
    };
    rate("flops_per_s", "flops", rec.flops);
    rate("bytes_per_s", "bytes_moved", rec.bytes_moved);
    rec.energy_j = r.optional_number("energy_j", 0, 1e12);
    rec.power_w = r.optional_number("power_w", 0, 1e6);
    rec.sm_clock_mhz = r.optional_number("sm_clock_mhz", 1, 1e5);
    // How a step's time was taken; only step records say (the run block's `timing` is the ops').
    if (rec.op.kind == "step") rec.timing = r.choice("timing", kStepTimings);
    if (r.has("clock_events")) {
      const json& ev = r.get("clock_events");
      if (!ev.is_array()) r.fail("clock_events", "must be a list of NVML clock-event names");
      for (const json& e : ev) {
        const std::string event = e.is_string() ? e.get<std::string>() : std::string();
        const bool known = std::find(std::begin(kClockEvents), std::end(kClockEvents), event) != std::end(kClockEvents);
        int bit = -1;
        if (event.starts_with("bit_") && event.size() <= 6 && event.size() > 4 &&
            std::all_of(event.begin() + 4, event.end(), [](char c) { return c >= '0' && c <= '9'; }))
          bit = std::stoi(event.substr(4));
        if (!known && !(bit >= 9 && bit <= 63))
          r.fail("clock_events", fmt::format("holds {}, not one of {} or bit_N (N in 9..63)", e.dump(), join(kClockEvents)));
        rec.clock_events.push_back(event);
      }
    }
    r.finish();
    f.records.push_back(std::move(rec));
  }
  top.finish();
  return f;
}

MeasurementFile read_measurements(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(fmt::format("{}: cannot read measurement file", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse_measurements(ss.str(), path);
}

std::string format_measurements(const MeasurementFile& file) {
  const MeasurementRun& r = file.run;
  json run = {{"device", r.device}, {"source", r.source}};
  auto put = [&](const char* key, const std::string& v) {
    if (!v.empty()) run[key] = v;
  };
  put("gpu", r.gpu);
  put("system", r.system);
  put("driver", r.driver);
  put("cuda", r.cuda);
  put("nccl", r.nccl);
  put("software", r.software);
  if (r.sm_clock_mhz) run["sm_clock_mhz"] = *r.sm_clock_mhz;
  if (r.memory_clock_mhz) run["memory_clock_mhz"] = *r.memory_clock_mhz;
  if (r.power_limit_w) run["power_limit_w"] = *r.power_limit_w;
  if (r.temperature_c) run["temperature_c"] = *r.temperature_c;
  put("date", r.date);
  put("commit", r.commit);
  put("timing", r.timing);
  json recs = json::array();
  for (const auto& rec : file.records) {
    json j = {{"op", op_json(rec.op)}, {"time_median_s", rec.time_median_s}};
    if (rec.time_min_s) j["time_min_s"] = *rec.time_min_s;
    if (rec.time_max_s) j["time_max_s"] = *rec.time_max_s;
    if (rec.reps) j["reps"] = rec.reps;
    if (rec.flops) j["flops"] = *rec.flops;
    if (rec.bytes_moved) j["bytes_moved"] = *rec.bytes_moved;
    // The achieved rates, for readers of the file (derived: the reader checks them, never keeps them).
    if (rec.flops) j["flops_per_s"] = *rec.flops / rec.time_median_s;
    if (rec.bytes_moved) j["bytes_per_s"] = *rec.bytes_moved / rec.time_median_s;
    if (rec.energy_j) j["energy_j"] = *rec.energy_j;
    if (rec.power_w) j["power_w"] = *rec.power_w;
    if (rec.sm_clock_mhz) j["sm_clock_mhz"] = *rec.sm_clock_mhz;
    if (!rec.clock_events.empty()) j["clock_events"] = rec.clock_events;
    if (!rec.timing.empty()) j["timing"] = rec.timing;
    recs.push_back(std::move(j));
  }
  json root = {{"schema", kMeasurementSchema}, {"run", std::move(run)}, {"records", std::move(recs)}};
  return root.dump(2) + "\n";
}

void write_measurements(const std::string& path, const MeasurementFile& file) { write_output(path, format_measurements(file)); }

}  // namespace racksim
