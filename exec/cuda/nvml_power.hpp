#pragma once
// NVML through dlopen("libnvidia-ml.so.1") (compiled only with RACKSIM_CUDA): nvml.h is not
// part of the CUDA toolkit here, and a binary that links the library directly would not start
// on a machine without a driver. The prototypes below are NVML's documented C API.

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace racksim::exec::cuda {

/// One device's NVML readings; every call returns nullopt when NVML or the query is missing.
class NvmlDevice {
 public:
  /// Opens NVML and the device with this PCI bus id ("0000:17:00.0", cudaDeviceGetPCIBusId).
  explicit NvmlDevice(const std::string& pci_bus_id);
  /// True when NVML loaded and found the device; why() says what failed otherwise.
  [[nodiscard]] bool ok() const noexcept { return device_ != nullptr; }
  [[nodiscard]] const std::string& why() const noexcept { return why_; }

  [[nodiscard]] std::optional<std::string> driver_version() const;
  [[nodiscard]] std::optional<double> power_w() const;           ///< nvmlDeviceGetPowerUsage (mW -> W)
  [[nodiscard]] std::optional<double> energy_j() const;          ///< nvmlDeviceGetTotalEnergyConsumption (mJ -> J)
  [[nodiscard]] std::optional<double> sm_clock_mhz() const;      ///< nvmlDeviceGetClockInfo(NVML_CLOCK_SM)
  [[nodiscard]] std::optional<double> memory_clock_mhz() const;  ///< nvmlDeviceGetClockInfo(NVML_CLOCK_MEM)
  [[nodiscard]] std::optional<double> power_limit_w() const;     ///< nvmlDeviceGetEnforcedPowerLimit
  [[nodiscard]] std::optional<std::uint64_t> clock_event_reasons() const;  ///< throttle / clock-event bit mask
  [[nodiscard]] std::optional<double> temperature_c() const;    ///< nvmlDeviceGetTemperature(NVML_TEMPERATURE_GPU), degrees C

 private:
  void* device_ = nullptr;
  std::string why_;
};

/// Samples power, SM clock and clock-event reasons on a thread every `interval_s` until stop().
class PowerSampler {
 public:
  struct Sample {
    double power_w = 0;
    double sm_clock_mhz = 0;
    std::uint64_t reasons = 0;
  };
  PowerSampler(const NvmlDevice& dev, double interval_s);
  ~PowerSampler();
  PowerSampler(const PowerSampler&) = delete;
  PowerSampler& operator=(const PowerSampler&) = delete;
  /// Stops the thread (idempotent) and returns the samples.
  const std::vector<Sample>& stop();

 private:
  const NvmlDevice& dev_;
  double interval_s_;
  std::atomic<bool> stop_{false};
  std::vector<Sample> samples_;
  std::thread thread_;
};

}  // namespace racksim::exec::cuda
