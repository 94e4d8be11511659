#pragma once
/// Importer for the published aiconfigurator kernel tables (../shared/reference/aic_kernels):
/// GEMM and NCCL CSVs become measurement files, one per measured system.

#include <map>
#include <string>
#include <vector>

#include "racksim/common/measurement.hpp"

namespace racksim::calibrate {

/// What an import produced and what it left out, with reasons.
struct ImportResult {
  std::vector<MeasurementFile> files;        ///< one per system in the CSV, in first-seen order
  std::size_t rows = 0;                      ///< data rows read
  std::size_t records = 0;                   ///< records produced
  std::map<std::string, std::size_t> skipped;  ///< reason -> rows ("gemm_dtype fp8_block (DeepGEMM block-scaled)")
};

/// aiconfigurator system name -> catalog GPU id (h100_sxm -> h100-sxm, ...); "" if unknown.
[[nodiscard]] std::string aic_system_gpu(const std::string& system);
/// Reads gemm_*.csv (system, device, gemm_dtype, kernel_source, m, n, k, latency_ms).
[[nodiscard]] ImportResult import_aic_gemm_csv(const std::string& path);
/// Reads nccl_*.csv (system, device, nccl_version, op_name, nccl_dtype, num_gpus, message_size_elems, latency_ms).
[[nodiscard]] ImportResult import_aic_nccl_csv(const std::string& path);
/// A measurement file, or an aic CSV recognised by its header; the import's skip counts are
/// added to `skipped`.
[[nodiscard]] std::vector<MeasurementFile> load_measurement_inputs(const std::vector<std::string>& paths,
                                                                   std::map<std::string, std::size_t>* skipped = nullptr);
/// Measurement files given for their step records only (`racksim calibrate --steps`: racksim
/// exec's files, whose op records would otherwise enter the fits beside the benches'): each keeps
/// its run block and its "step" records; the others are counted in `skipped`. InputError naming
/// the file if it holds no step record.
[[nodiscard]] std::vector<MeasurementFile> load_step_inputs(const std::vector<std::string>& paths, std::map<std::string, std::size_t>* skipped);

}  // namespace racksim::calibrate
