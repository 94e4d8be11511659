#include "nvml_power.hpp"

#include <dlfcn.h>

#include <chrono>

namespace racksim::exec::cuda {

namespace {

// NVML's C API (nvml.h): nvmlReturn_t is an int enum, NVML_SUCCESS = 0; nvmlDevice_t an opaque
// pointer; nvmlClockType_t NVML_CLOCK_SM = 1, NVML_CLOCK_MEM = 2.
using NvmlReturn = int;
using NvmlHandle = void*;
constexpr int kClockSm = 1;
constexpr int kClockMem = 2;
constexpr int kTemperatureGpu = 0;  // nvmlTemperatureSensors_t NVML_TEMPERATURE_GPU

struct NvmlApi {
  void* lib = nullptr;
  std::string error;
  NvmlReturn (*init)() = nullptr;
  const char* (*error_string)(NvmlReturn) = nullptr;
  NvmlReturn (*handle_by_pci)(const char*, NvmlHandle*) = nullptr;
  NvmlReturn (*driver_version)(char*, unsigned) = nullptr;
  NvmlReturn (*power_usage)(NvmlHandle, unsigned*) = nullptr;
  NvmlReturn (*total_energy)(NvmlHandle, unsigned long long*) = nullptr;
  NvmlReturn (*clock_info)(NvmlHandle, int, unsigned*) = nullptr;
  NvmlReturn (*power_limit)(NvmlHandle, unsigned*) = nullptr;
  NvmlReturn (*clock_reasons)(NvmlHandle, unsigned long long*) = nullptr;
  NvmlReturn (*temperature)(NvmlHandle, int, unsigned*) = nullptr;

  template <class F>
  void load(F& f, const char* name) {
    f = reinterpret_cast<F>(dlsym(lib, name));
  }

  NvmlApi() {
    lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      const char* e = dlerror();
      error = std::string("cannot load libnvidia-ml.so.1 (") + (e ? e : "?") + ")";
      return;
    }
    load(init, "nvmlInit_v2");
    load(error_string, "nvmlErrorString");
    load(handle_by_pci, "nvmlDeviceGetHandleByPciBusId_v2");
    load(driver_version, "nvmlSystemGetDriverVersion");
    load(power_usage, "nvmlDeviceGetPowerUsage");
    load(total_energy, "nvmlDeviceGetTotalEnergyConsumption");
    load(clock_info, "nvmlDeviceGetClockInfo");
    load(power_limit, "nvmlDeviceGetEnforcedPowerLimit");
    load(clock_reasons, "nvmlDeviceGetCurrentClocksEventReasons");
    if (!clock_reasons) load(clock_reasons, "nvmlDeviceGetCurrentClocksThrottleReasons");
    load(temperature, "nvmlDeviceGetTemperature");
    if (!init || !handle_by_pci) {
      error = "libnvidia-ml.so.1 lacks nvmlInit_v2 or nvmlDeviceGetHandleByPciBusId_v2";
      return;
    }
    const NvmlReturn r = init();
    if (r != 0) error = std::string("nvmlInit_v2 failed: ") + (error_string ? error_string(r) : std::to_string(r));
  }
  // The library stays loaded for the life of the process (nvmlShutdown at exit is optional).
};

const NvmlApi& api() {
  static const NvmlApi a;
  return a;
}

template <class T, class Fn, class... Args>
std::optional<T> query(Fn fn, Args... args) {
  if (!fn) return std::nullopt;
  T v{};
  if (fn(args..., &v) != 0) return std::nullopt;
  return v;
}

}  // namespace

NvmlDevice::NvmlDevice(const std::string& pci_bus_id) {
  const NvmlApi& a = api();
  if (!a.error.empty()) {
    why_ = a.error;
    return;
  }
  NvmlHandle h = nullptr;
  const NvmlReturn r = a.handle_by_pci(pci_bus_id.c_str(), &h);
  if (r != 0) {
    why_ = "nvmlDeviceGetHandleByPciBusId_v2(" + pci_bus_id + ") failed: " + (a.error_string ? a.error_string(r) : std::to_string(r));
    return;
  }
  device_ = h;
}

std::optional<std::string> NvmlDevice::driver_version() const {
  if (!ok() || !api().driver_version) return std::nullopt;
  char buf[96] = {};
  if (api().driver_version(buf, sizeof buf) != 0) return std::nullopt;
  return std::string(buf);
}

std::optional<double> NvmlDevice::power_w() const {
  if (!ok()) return std::nullopt;
  const auto mw = query<unsigned>(api().power_usage, device_);
  return mw ? std::optional<double>(*mw / 1000.0) : std::nullopt;
}

std::optional<double> NvmlDevice::energy_j() const {
  if (!ok()) return std::nullopt;
  const auto mj = query<unsigned long long>(api().total_energy, device_);
  return mj ? std::optional<double>(static_cast<double>(*mj) / 1000.0) : std::nullopt;
}

std::optional<double> NvmlDevice::sm_clock_mhz() const {
  if (!ok()) return std::nullopt;
  const auto c = query<unsigned>(api().clock_info, device_, kClockSm);
  return c ? std::optional<double>(*c) : std::nullopt;
}

std::optional<double> NvmlDevice::memory_clock_mhz() const {
  if (!ok()) return std::nullopt;
  const auto c = query<unsigned>(api().clock_info, device_, kClockMem);
  return c ? std::optional<double>(*c) : std::nullopt;
}

std::optional<double> NvmlDevice::power_limit_w() const {
  if (!ok()) return std::nullopt;
  const auto mw = query<unsigned>(api().power_limit, device_);
  return mw ? std::optional<double>(*mw / 1000.0) : std::nullopt;
}

std::optional<double> NvmlDevice::temperature_c() const {
  if (!ok()) return std::nullopt;
  const auto t = query<unsigned>(api().temperature, device_, kTemperatureGpu);
  return t ? std::optional<double>(*t) : std::nullopt;
}

std::optional<std::uint64_t> NvmlDevice::clock_event_reasons() const {
  if (!ok()) return std::nullopt;
  const auto r = query<unsigned long long>(api().clock_reasons, device_);
  return r ? std::optional<std::uint64_t>(*r) : std::nullopt;
}

PowerSampler::PowerSampler(const NvmlDevice& dev, double interval_s) : dev_(dev), interval_s_(interval_s) {
  thread_ = std::thread([this] {
    const auto period = std::chrono::duration<double>(interval_s_);
    auto next = std::chrono::steady_clock::now();
    while (!stop_.load(std::memory_order_relaxed)) {
      Sample s;
      if (const auto p = dev_.power_w()) {
        s.power_w = *p;
        s.sm_clock_mhz = dev_.sm_clock_mhz().value_or(0);
        s.reasons = dev_.clock_event_reasons().value_or(0);
        samples_.push_back(s);
      }
      next += std::chrono::duration_cast<std::chrono::steady_clock::duration>(period);
      std::this_thread::sleep_until(next);
    }
  });
}

PowerSampler::~PowerSampler() { stop(); }

const std::vector<PowerSampler::Sample>& PowerSampler::stop() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
  return samples_;
}

}  // namespace racksim::exec::cuda
