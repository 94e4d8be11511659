#pragma once
// Helpers shared by the calibration tests that go through files: measurement files written and
// read back as `racksim calibrate` reads them, and the one GPU a calibration fitted.

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "racksim/calibrate/calibration.hpp"
#include "racksim/common/measurement.hpp"
#include "test_support.hpp"

namespace racksim::test {

/// `files` through the measurement-file writer and reader (temp files named `prefix`_i.json).
inline std::vector<MeasurementFile> written_and_read(const std::vector<MeasurementFile>& files, const std::string& prefix) {
  std::vector<MeasurementFile> out;
  for (std::size_t i = 0; i < files.size(); ++i) {
    const std::string path = write_temp(prefix + "_" + std::to_string(i) + ".json", format_measurements(files[i]));
    out.push_back(read_measurements(path));
  }
  return out;
}

/// The factors of the only GPU `r` fitted (a test failure if there is not exactly one).
inline const CalibratedFactors& only_gpu(const calibrate::CalibrationResult& r) {
  REQUIRE(r.gpus.size() == 1);
  return r.gpus.front();
}

}  // namespace racksim::test
