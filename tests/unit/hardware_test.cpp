// hwmodels/: the catalog holds every id the spec promises, each figure sourced.

#include <map>
#include <vector>

#include <catch2/catch.hpp>

#include "racksim/common/error.hpp"
#include "racksim/hwmodels/efficiency.hpp"
#include "racksim/hwmodels/hardware.hpp"

using namespace racksim;

TEST_CASE("catalog holds the spec's GPU and system ids", "[hwmodels][catalog]") {
  for (const char* id : {"h100-sxm", "h200-sxm", "b200", "b300", "gb200", "gb300"}) CHECK_NOTHROW(find_gpu(id));
  for (const char* id : {"dgx-h100", "hgx-h200", "dgx-b200", "hgx-b300", "gb200-nvl72", "gb300-nvl72", "gb200-tray", "gb300-tray"})
    CHECK_NOTHROW(find_system(id));
  CHECK_THROWS_WITH(find_system("tpu-pod", "s.yaml", "system"), Catch::StartsWith("s.yaml: system: 'tpu-pod' is not a catalog system"));
}

TEST_CASE("every figure has a source and a positive value", "[hwmodels][catalog]") {
  for (const auto& g : gpu_catalog())
    for (const auto& [key, f] : g.figures()) {
      INFO(g.id << "." << key);
      CHECK_FALSE(f->source.empty());
      CHECK(f->value > 0);
    }
  for (const auto& s : system_catalog())
    for (const auto& [key, f] : s.figures()) {
      INFO(s.id << "." << key);
      CHECK_FALSE(f->source.empty());
      CHECK(f->value >= 0);
    }
}

TEST_CASE("datasheet figures from hardware.md", "[hwmodels][catalog]") {
  // hardware.md per-GPU table (dense = sparse / 2).
  const GpuSpec& h100 = find_gpu("h100-sxm");
  CHECK(h100.peak(DType::bf16)->value == Approx(989e12));
  CHECK(h100.peak(DType::fp8)->value == Approx(1979e12));
  CHECK(h100.peak(DType::nvfp4) == nullptr);  // Hopper: no FP4 tensor cores
  CHECK(h100.hbm_capacity.value == 80.0 * 1073741824);
  CHECK(h100.hbm_bandwidth.value == Approx(3.35e12));
  CHECK(h100.nvlink_bandwidth.value == Approx(450e9));
  const GpuSpec& gb300 = find_gpu("gb300");
  CHECK(gb300.peak(DType::nvfp4)->value == Approx(15000e12));
  CHECK(gb300.sm_count.value == 160);
  CHECK(gb300.power_limit.value == 1400);
  CHECK(gb300.nic_bandwidth.value == Approx(100e9));  // 800 Gb/s
  // Blackwell Ultra doubles the softmax exponential rate per SM (NVIDIA blog, hardware.md):
  // per SM per clock, GB300 / GB200 = 2.
  const GpuSpec& gb200 = find_gpu("gb200");
  CHECK(gb300.exp_throughput.value / (gb300.sm_count.value * gb300.boost_clock.value) ==
        Approx(2 * gb200.exp_throughput.value / (gb200.sm_count.value * gb200.boost_clock.value)).epsilon(1e-3));  // figures rounded to Gop/s
  const SystemSpec rack = find_system("gb300-nvl72");
  CHECK(rack.gpus() == 72);
  CHECK(rack.domain_size() == 72);
  CHECK(rack.cpu.count.value == 36);
  CHECK(find_system("dgx-h100").domain_size() == 8);
  CHECK(find_system("gb200-tray").gpus() == 4);
}

TEST_CASE("catalog files are read strictly", "[hwmodels][catalog]") {
  const std::string ok_fig = "{value: 1, unit: W, source: s}";
  const std::string head = "id: x\nname: x\narchitecture: hopper\ncompute_capability: '9.0'\n";
  const std::string family = "family: {name: hopper, nvlink_generation: 4, source: s}\n";
  std::string gpu = head + family + "dense_peak: {bf16: {value: 1, unit: TFLOP/s, source: s}}\n";
  for (const char* k : {"hbm_capacity: {value: 1, unit: GiB, source: s}", "hbm_bandwidth: {value: 1, unit: TB/s, source: s}",
                        "l2_cache: {value: 1, unit: MB, source: s}", "sm_count: {value: 1, unit: count, source: s}",
                        "boost_clock: {value: 1, unit: MHz, source: s}", "exp_throughput: {value: 1, unit: Gop/s, source: s}",
                        "nvlink_bandwidth: {value: 1, unit: GB/s, source: s}", "host_link_bandwidth: {value: 1, unit: GB/s, source: s}",
                        "nic_bandwidth: {value: 1, unit: Gb/s, source: s}", "idle_power: {value: 1, unit: W, source: s}",
                        "launch_overhead: {value: 1, unit: us, source: s}"})
    gpu += std::string(k) + "\n";
  CHECK_NOTHROW(parse_gpu_yaml(gpu + "power_limit: " + ok_fig + "\n", "g.yaml"));
  // fp8_block runs at fp8's peak (GpuSpec::peak); a GPU file cannot give it one of its own.
  std::string with_fp8 = gpu;
  with_fp8.replace(with_fp8.find("dense_peak: {"), 13, "dense_peak: {fp8: {value: 2, unit: TFLOP/s, source: s}, ");
  const GpuSpec g8 = parse_gpu_yaml(with_fp8 + "power_limit: " + ok_fig + "\n", "g.yaml");
  REQUIRE(g8.peak(DType::fp8_block) != nullptr);
  CHECK(g8.peak(DType::fp8_block)->value == 2e12);
  CHECK(gemm_formats(g8) == std::vector<DType>{DType::bf16, DType::fp8, DType::fp8_block});
  std::string block = gpu;
  block.replace(block.find("dense_peak: {"), 13, "dense_peak: {fp8_block: {value: 2, unit: TFLOP/s, source: s}, ");
  CHECK_THROWS_WITH(parse_gpu_yaml(block + "power_limit: " + ok_fig + "\n", "g.yaml"),
                    Catch::Contains("dense_peak.fp8_block") && Catch::Contains("fp8_block runs at fp8's"));
  CHECK_THROWS_WITH(parse_gpu_yaml(gpu + "power_limit: {value: 1, unit: TB/s, source: s}\n", "g.yaml"),
                    "g.yaml: power_limit.unit: 'TB/s' is not a unit of power; allowed: W, kW");
  CHECK_THROWS_WITH(parse_gpu_yaml(gpu + "power_limit: {value: 1, unit: W, sauce: s}\n", "g.yaml"),
                    "g.yaml: power_limit.sauce: unknown key (did you mean 'source'?)");
  // The calibration family (docs/calibration.md, "Transfer between GPUs of a family"): a known
  // name, an NVLink generation and a source, nothing else.
  const std::string rest = gpu.substr(head.size() + family.size()) + "power_limit: " + ok_fig + "\n";
  CHECK_THROWS_WITH(parse_gpu_yaml(head + "family: {name: rubin, nvlink_generation: 6, source: s}\n" + rest, "g.yaml"),
                    Catch::Contains("family.name") && Catch::Contains("hopper, blackwell, blackwell-ultra"));
  CHECK_THROWS_WITH(parse_gpu_yaml(head + "family: {name: hopper, nvlink_generation: 4}\n" + rest, "g.yaml"),
                    Catch::Contains("family.source"));
  CHECK_THROWS_WITH(parse_gpu_yaml(head + "family: {name: hopper, nvlink_generation: 4, source: s, donor: h100-sxm}\n" + rest, "g.yaml"),
                    Catch::Contains("family.donor: unknown key"));
  CHECK_THROWS_WITH(parse_gpu_yaml(head + rest, "g.yaml"), "g.yaml: family: missing (required)");
}

TEST_CASE("GPUs of one family share die, compute capability and NVLink generation", "[hwmodels][catalog]") {
  // The family rule: H100/H200 are GH100 (cc 9.0, NVLink 4); B200/GB200 the B200 GPU (cc 10.0,
  // NVLink 5); B300/GB300 Blackwell Ultra (cc 10.3, NVLink 5). Calibrated factors carry only
  // inside a family, so its members must agree on what the factors depend on.
  std::map<std::string, std::vector<const GpuSpec*>> fam;
  for (const auto& g : gpu_catalog()) {
    CHECK_FALSE(g.family.source.empty());
    fam[g.family.name].push_back(&g);
  }
  CHECK(fam.size() == 3);
  for (const auto& [name, members] : fam) {
    INFO(name);
    CHECK(members.size() == 2);
    for (const GpuSpec* g : members) {
      CHECK(g->compute_capability == members.front()->compute_capability);
      CHECK(g->family.nvlink_generation == members.front()->family.nvlink_generation);
      CHECK(g->sm_count.value == members.front()->sm_count.value);
      CHECK(g->architecture == name);
    }
  }
  CHECK(find_gpu("h200-sxm").family.name == "hopper");
  CHECK(find_gpu("gb200").family.name == "blackwell");
  CHECK(find_gpu("b300").family.name == "blackwell-ultra");
}

TEST_CASE("fitted factors carry along a tensor-core path whose peaks are equal", "[hwmodels][catalog]") {
  // tensor_core_path: mxfp4 -> nvfp4, fp16 -> bf16, every other format itself. Carrying an
  // efficiency along it is sound only where the datasheet peaks agree: check every GPU.
  CHECK(tensor_core_path(DType::mxfp4) == DType::nvfp4);
  CHECK(tensor_core_path(DType::fp16) == DType::bf16);
  for (DType t : {DType::fp32, DType::bf16, DType::fp8, DType::nvfp4}) CHECK(tensor_core_path(t) == t);
  for (const auto& g : gpu_catalog())
    for (DType t : {DType::fp16, DType::mxfp4})
      if (const Figure* p = g.peak(t)) {
        INFO(g.id << " " << to_string(t));
        REQUIRE(g.peak(tensor_core_path(t)) != nullptr);
        CHECK(p->value == g.peak(tensor_core_path(t))->value);
      }
}

TEST_CASE("efficiency curves interpolate in log size and clamp", "[hwmodels][efficiency]") {
  EfficiencyCurve c;
  c.points = {{1e9, 0.2}, {1e11, 0.6}};
  CHECK(c.at(1e8) == 0.2);
  CHECK(c.at(1e12) == 0.6);
  CHECK(c.at(1e10) == Approx(0.4));  // halfway in log10: 9 -> 10 -> 11
  // Every catalog GPU has a table; unmeasured formats are carried from a measured one.
  for (const auto& g : gpu_catalog()) {
    const EfficiencyTable& t = efficiency_for(g.id);
    CHECK_FALSE(t.gemm_curve(DType::bf16).carried);
    if (g.peak(DType::nvfp4)) {
      CHECK_FALSE(t.gemm_curve(DType::nvfp4).carried);
      CHECK(t.gemm_curve(DType::mxfp4).carried);
    }
  }
}
