// [cuda] tests: run only where a CUDA device is visible. Without one this program prints why
// and exits 77, which CTest reports as SKIPPED (never as a pass).

#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>

#include "racksim/exec/backend.hpp"

int main(int argc, char** argv) {
  const int devices = racksim::exec::cuda_device_count();
  if (devices == 0) {
    const std::string status = racksim::exec::backend_registry().get("cuda").factory();
    std::printf("SKIP: [cuda] tests not run: no CUDA device visible (cuda backend: %s)\n", status.c_str());
    return 77;
  }
  return Catch::Session().run(argc, argv);
}

TEST_CASE("the CUDA backend sees the device and its libraries", "[cuda]") {
  const std::string status = racksim::exec::backend_registry().get("cuda").factory();
  INFO(status);
  CHECK(status.find("device(s)") != std::string::npos);
  CHECK(status.find("cuBLASLt") != std::string::npos);
  CHECK(status.find("NCCL") != std::string::npos);
  CHECK(status.find("sm_") != std::string::npos);
}
