#pragma once
/// GPUs and systems of the hardware catalog: every figure sourced (hwmodels/data/).

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "racksim/common/dtype.hpp"
#include "racksim/hwmodels/figure.hpp"

namespace racksim {

/// The group of GPUs a GPU's calibrated factors carry to and from (docs/calibration.md,
/// "Transfer between GPUs of a family"): the same die, so the same achieved fraction of peak.
struct GpuFamily {
  std::string name;           ///< hopper | blackwell | blackwell-ultra
  int nvlink_generation = 0;  ///< collectives carry only between GPUs of the same NVLink generation
  std::string source;         ///< why this GPU belongs to the family (die, compute capability)
};

/// One GPU's datasheet figures.
struct GpuSpec {
  std::string id;
  std::string name;
  std::string architecture;        ///< hopper | blackwell | blackwell-ultra
  std::string compute_capability;  ///< "9.0", "10.0", "10.3"
  GpuFamily family;
  std::map<DType, Figure> dense_peak;  ///< FLOP/s per tensor-core format; absent = unsupported
  Figure hbm_capacity;         ///< bytes
  Figure hbm_bandwidth;        ///< bytes/s
  Figure l2_cache;             ///< bytes
  Figure sm_count;             ///< count
  Figure boost_clock;          ///< Hz
  Figure exp_throughput;       ///< exponentials per second (special-function units)
  Figure nvlink_bandwidth;     ///< bytes/s per direction
  Figure host_link_bandwidth;  ///< bytes/s per direction
  Figure nic_bandwidth;        ///< bytes/s
  Figure power_limit;          ///< W
  Figure idle_power;           ///< W
  Figure launch_overhead;      ///< s per kernel

  /// Dense peak for a compute format, or nullptr if the GPU has no tensor cores for it.
  [[nodiscard]] const Figure* peak(DType t) const;
  /// Every scalar figure with its key, in file order, for listings.
  [[nodiscard]] std::vector<std::pair<std::string, const Figure*>> figures() const;
};

/// The GEMM formats `gpu` has tensor cores for (peak() not null), in all_dtypes() order:
/// its dense_peak formats and fp8_block wherever it has fp8.
[[nodiscard]] std::vector<DType> gemm_formats(const GpuSpec& gpu);

/// A named component count with per-unit power (CPUs, switches, NICs).
struct Component {
  std::string model;
  Figure count;
  Figure power;      ///< W per unit
  Figure bandwidth;  ///< NICs only: bytes/s per NIC
};

/// A system: GPUs in NVLink domains plus what else draws power.
struct SystemSpec {
  std::string id;
  std::string name;
  GpuSpec gpu;
  Figure gpu_count;
  Figure nvlink_domain_size;
  Figure nvlink_sharp;  ///< 1 if the switches reduce in-network (NVLS)
  Component cpu;
  Component nvswitch;
  Component nic;
  Figure other_power;
  Figure psu_efficiency;
  Figure max_power;

  [[nodiscard]] int gpus() const noexcept { return static_cast<int>(gpu_count.value); }
  [[nodiscard]] int domain_size() const noexcept { return static_cast<int>(nvlink_domain_size.value); }
  [[nodiscard]] bool has_nvls() const noexcept { return nvlink_sharp.value > 0.5; }
  /// Every scalar figure with its dotted key, for listings.
  [[nodiscard]] std::vector<std::pair<std::string, const Figure*>> figures() const;
};

/// Catalog GPUs, sorted by id.
[[nodiscard]] const std::vector<GpuSpec>& gpu_catalog();
/// Catalog systems, sorted by id.
[[nodiscard]] const std::vector<SystemSpec>& system_catalog();
/// A catalog GPU by id; InputError listing the ids otherwise.
[[nodiscard]] const GpuSpec& find_gpu(const std::string& id, const std::string& origin = "racksim",
                                      const std::string& key = "gpu");
/// A catalog system id, or a path to a system YAML; InputError naming origin and key otherwise.
[[nodiscard]] SystemSpec find_system(const std::string& id_or_path, const std::string& origin = "racksim",
                                     const std::string& key = "system");
/// Parses one GPU or system YAML (strict).
[[nodiscard]] GpuSpec parse_gpu_yaml(std::string_view text, const std::string& name);
[[nodiscard]] SystemSpec parse_system_yaml(std::string_view text, const std::string& name);

}  // namespace racksim
