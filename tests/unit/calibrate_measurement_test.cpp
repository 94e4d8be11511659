// common/measurement: the measurement-file schema the executor writes and calibration reads.

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "racksim/common/error.hpp"
#include "racksim/common/measurement.hpp"
#include "racksim/workloads/op.hpp"

using namespace racksim;

namespace {

MeasurementFile sample() {
  MeasurementFile f;
  f.run.device = "NVIDIA H100 80GB HBM3";
  f.run.gpu = "h100-sxm";
  f.run.driver = "570.86";
  f.run.cuda = "12.8";
  f.run.nccl = "2.29.2";
  f.run.sm_clock_mhz = 1980;
  f.run.power_limit_w = 700;
  f.run.temperature_c = 41;
  f.run.date = "2026-01-02";
  f.run.commit = "abc123";
  f.run.source = "racksim bench gemm";
  MeasurementRecord g;
  g.op.kind = "gemm";
  g.op.m = 1;
  g.op.n = 8192;
  g.op.k = 8192;
  g.op.a_dtype = g.op.w_dtype = "bf16";
  g.op.c_dtype = "bf16";
  g.time_median_s = 49.18e-6;
  g.time_min_s = 48.0e-6;
  g.time_max_s = 51.0e-6;
  g.reps = 100;
  g.flops = 2.0 * 8192 * 8192;
  g.energy_j = 0.02;
  MeasurementRecord c;
  c.op.kind = "all_reduce";
  c.op.ranks = 8;
  c.op.bytes = 1 << 20;
  c.op.dtype = "fp16";
  c.time_median_s = 25.4e-6;
  f.records = {g, c};
  return f;
}

/// `text` with its first `from` replaced by `to` (which must be there): a file edited by hand.
std::string edited(std::string text, const std::string& from, const std::string& to) {
  const auto pos = text.find(from);
  REQUIRE(pos != std::string::npos);
  return text.replace(pos, from.size(), to);
}

}  // namespace

TEST_CASE("measurement files round-trip through JSON", "[calibrate]") {
  // A GEMM (with optional min/max/energy) and an all-reduce, written and read back: every field equal.
  const MeasurementFile f = sample();
  const MeasurementFile back = parse_measurements(format_measurements(f), "sample.json");
  CHECK(back.run.device == f.run.device);
  CHECK(back.run.gpu == "h100-sxm");
  CHECK(back.run.nccl == "2.29.2");
  CHECK(*back.run.sm_clock_mhz == 1980);
  CHECK(*back.run.temperature_c == 41);
  CHECK(!back.run.memory_clock_mhz);
  REQUIRE(back.records.size() == 2);
  CHECK(back.records[0].op.identity() == "gemm m=1 n=8192 k=8192 a=bf16 w=bf16 c=bf16");
  CHECK(back.records[0].time_median_s == f.records[0].time_median_s);
  CHECK(*back.records[0].time_max_s == 51.0e-6);
  CHECK(back.records[0].reps == 100);
  CHECK(*back.records[0].energy_j == 0.02);
  CHECK(!back.records[0].power_w);
  CHECK(back.records[1].op.identity() == "all_reduce ranks=8 bytes=1048576 dtype=fp16");
  CHECK(format_measurements(back) == format_measurements(f));
}

TEST_CASE("records carry their achieved FLOP/s and bytes/s, checked on reading", "[calibrate]") {
  // The GEMM of sample(): 134,217,728 FLOP in 49.18 us = 2.72911e12 FLOP/s; no bytes_moved, so no
  // bytes/s; the all-reduce has neither.
  MeasurementFile f = sample();
  f.records[0].bytes_moved = 134250496.0;  // 2 x (8192 + 8192^2 + 8192) B: 2.72978e12 B/s
  const std::string text = format_measurements(f);
  const auto j = nlohmann::json::parse(text);
  CHECK(j["records"][0]["flops_per_s"].get<double>() == Approx(134217728.0 / 49.18e-6).epsilon(1e-15));
  CHECK(j["records"][0]["flops_per_s"].get<double>() == Approx(2.72911e12).epsilon(1e-5));
  CHECK(j["records"][0]["bytes_per_s"].get<double>() == Approx(2.72978e12).epsilon(1e-5));
  CHECK(!j["records"][1].contains("flops_per_s"));
  CHECK(!j["records"][1].contains("bytes_per_s"));
  CHECK(format_measurements(parse_measurements(text, "r.json")) == text);
  // A rate that is not the record's own quotient, or without the amount it divides, is refused.
  auto edited = j;
  edited["records"][0]["flops_per_s"] = 3e12;
  CHECK_THROWS_WITH(parse_measurements(edited.dump(), "r.json"),
                    Catch::Contains("r.json: records[0].flops_per_s: '3000000000000.0' is not flops / time_median_s (2.729112e+12)"));
  edited = j;
  edited["records"][1]["bytes_per_s"] = 1e9;
  CHECK_THROWS_WITH(parse_measurements(edited.dump(), "r.json"),
                    Catch::Contains("records[1].bytes_per_s: '1000000000.0' needs bytes_moved (the rate is bytes_moved / time_median_s)"));
}

TEST_CASE("a run header says how its times were taken", "[calibrate]") {
  // Absent (every file before --timing graph, and bench's default): written as nothing, read as "".
  MeasurementFile f = sample();
  CHECK(format_measurements(f).find("timing") == std::string::npos);
  CHECK(parse_measurements(format_measurements(f), "a.json").run.timing.empty());
  // graph and call round-trip; another value is refused naming the file, key, value and the allowed.
  for (const std::string t : {"graph", "call"}) {
    f.run.timing = t;
    const MeasurementFile back = parse_measurements(format_measurements(f), "b.json");
    CHECK(back.run.timing == t);
    CHECK(format_measurements(back) == format_measurements(f));
  }
  f.run.timing = "stream";
  CHECK_THROWS_WITH(parse_measurements(format_measurements(f), "c.json"),
                    Catch::Contains("c.json: run.timing: '\"stream\"' is not one of call, graph"));
}

TEST_CASE("measurement files are strict", "[calibrate]") {
  // Unknown keys, bad values and a wrong schema tag are InputErrors naming file, key and value.
  const std::string good = format_measurements(sample());
  auto with = [&](const std::string& from, const std::string& to) { return edited(good, from, to); };
  CHECK_THROWS_WITH(parse_measurements(with("\"reps\": 100", "\"repz\": 100"), "m.json"),
                    Catch::Contains("m.json: records[0].repz: unknown key (value 100)") && Catch::Contains("did you mean 'reps'?"));
  CHECK_THROWS_WITH(parse_measurements(with("\"kind\": \"gemm\"", "\"kind\": \"gemv\""), "m.json"),
                    Catch::Contains("m.json: records[0].op.kind: '\"gemv\"' is not one of") && Catch::Contains("gemm"));
  CHECK_THROWS_WITH(parse_measurements(with("\"a_dtype\": \"bf16\"", "\"a_dtype\": \"fp3\""), "m.json"),
                    Catch::Contains("records[0].op.a_dtype: '\"fp3\"' is not one of fp32, bf16"));
  CHECK_THROWS_WITH(parse_measurements(with("\"device\"", "\"devise\""), "m.json"), Catch::Contains("m.json: run.device: missing"));
  CHECK_THROWS_WITH(parse_measurements(with("racksim-measurements/1", "racksim-measurements/0"), "m.json"),
                    Catch::Contains("m.json: schema: '\"racksim-measurements/0\"' is not 'racksim-measurements/1'"));
  CHECK_THROWS_AS(parse_measurements("{not json", "m.json"), InputError);
  CHECK_THROWS_WITH(parse_measurements(with("\"time_median_s\": 2.54e-05", "\"time_median_s\": -1"), "m.json"),
                    Catch::Contains("records[1].time_median_s: '-1' is out of range"));
  // Clock events are NVML's names (or bit_N beyond the nine known): a made-up one is refused.
  CHECK(clock_event_names(0x4 | 0x40 | 0x100) == std::vector<std::string>{"sw_power_cap", "hw_thermal", "display_clocks"});
  CHECK(clock_event_names(0).empty());
  CHECK(clock_event_kinds().size() == 9);
  CHECK_THROWS_WITH(parse_measurements(with("\"reps\": 100", "\"reps\": 100, \"clock_events\": [\"too_hot\"]"), "m.json"),
                    Catch::Contains("m.json: records[0].clock_events: ") && Catch::Contains("holds \"too_hot\", not one of gpu_idle"));
  CHECK_THROWS_WITH(parse_measurements(with("\"reps\": 100", "\"reps\": 100, \"clock_events\": [\"bit_3\"]"), "m.json"),
                    Catch::Contains("bit_N (N in 9..63)"));
  // A GPU sensor reads -50..200 C at most (a Kelvin or Fahrenheit figure is caught).
  CHECK_THROWS_WITH(parse_measurements(with("\"temperature_c\": 41", "\"temperature_c\": 314"), "m.json"),
                    Catch::Contains("m.json: run.temperature_c: '314.0' is out of range [-50, 200]"));
}

TEST_CASE("attention records carry sequences and pairs, spelled as the graph's op identity", "[calibrate]") {
  // A decode-attention op of Llama-2-70B (TP1, 64 query heads of 128) over 4 sequences at context
  // 511: pairs = 4 x 512. The record's identity must equal Op::identity() so that it joins.
  Op op;
  op.kind = OpKind::attention_decode;
  op.m = 4;
  op.n = 64;
  op.k = 128;
  op.in_dtype = DType::bf16;
  op.weight_dtype = DType::fp8;
  op.sequences = 4;
  op.attended_pairs = 4 * 512;
  MeasurementFile f = sample();
  MeasurementRecord a;
  a.op.kind = "attention_decode";
  a.op.m = 4;
  a.op.n = 64;
  a.op.k = 128;
  a.op.a_dtype = "bf16";
  a.op.w_dtype = "fp8";
  a.op.sequences = 4;
  a.op.pairs = 2048;
  a.time_median_s = 30e-6;
  f.records = {a};
  const MeasurementFile back = parse_measurements(format_measurements(f), "att.json");
  REQUIRE(back.records.size() == 1);
  CHECK(back.records[0].op.identity() == op.identity());
  CHECK(back.records[0].op.identity() == "attention_decode tokens=4 heads=64 head_dim=128 seqs=4 pairs=2048 q=bf16 kv=fp8");
  // Both sums are required of an attention record.
  std::string text = format_measurements(f);
  text.replace(text.find("\"pairs\""), 7, "\"pears\"");
  CHECK_THROWS_WITH(parse_measurements(text, "att.json"), Catch::Contains("att.json: records[0].op.pairs: missing"));
}

TEST_CASE("step records: a whole step of racksim exec, its timing required and only there", "[calibrate]") {
  MeasurementFile f = sample();
  MeasurementRecord s;
  s.op.kind = "step";
  s.op.model = "llama2-70b";
  s.op.variant = "decode";
  s.op.sequences = 64;
  s.op.m = 64;
  s.op.n = 1024;
  s.op.k = 80;
  s.op.ranks = 4;
  s.op.a_dtype = "bf16";
  s.op.w_dtype = "nvfp4";
  s.op.dtype = "fp8";
  s.time_median_s = 0.045;
  s.reps = 5;
  s.timing = "graph";
  s.flops = 2.2e12;
  s.energy_j = 80.0;
  s.power_w = 1760.0;
  f.records = {s};
  const std::string text = format_measurements(f);
  const MeasurementFile back = parse_measurements(text, "s.json");
  REQUIRE(back.records.size() == 1);
  CHECK(back.records[0].op.identity() == "step decode model=llama2-70b seqs=64 tokens=64 context=1024 layers=80 gpus=4 a=bf16 w=nvfp4 kv=fp8");
  CHECK(back.records[0].timing == "graph");
  CHECK(format_measurements(back) == text);
  auto with = [&](const std::string& from, const std::string& to) { return edited(text, from, to); };
  // A step says how it was timed (graph or eager); no other record kind may say it.
  CHECK_THROWS_WITH(parse_measurements(with("\"timing\": \"graph\"", "\"timing\": \"call\""), "s.json"),
                    Catch::Contains("s.json: records[0].timing: '\"call\"' is not one of graph, eager"));
  CHECK_THROWS_WITH(parse_measurements(with(",\n      \"timing\": \"graph\"", ""), "s.json"),
                    Catch::Contains("s.json: records[0].timing: missing (required)"));
  CHECK_THROWS_WITH(parse_measurements(with("\"variant\": \"decode\"", "\"variant\": \"verify\""), "s.json"),
                    Catch::Contains("records[0].op.variant: '\"verify\"' is not one of decode, prefill"));
  MeasurementFile g = sample();
  g.records[0].timing = "graph";  // written as is, refused on reading: the run block says how ops were timed
  CHECK_THROWS_WITH(parse_measurements(format_measurements(g), "g.json"), Catch::Contains("g.json: records[0].timing: unknown key"));
}
