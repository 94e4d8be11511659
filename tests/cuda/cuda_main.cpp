// [cuda] tests: run only where a CUDA device is visible. Without one this program prints why
// and exits 77, which CTest reports as SKIPPED (never as a pass); listing the tests needs no device.

#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <string_view>

#include "racksim/exec/backend.hpp"

namespace {
/// Whether the command line only lists (tests, tags, reporters) or asks for help: Catch2 runs no
/// test then, so it needs no device (tools/device-session.sh --dry-run checks its test specs so).
bool lists_only(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    for (const std::string_view l : {"-l", "--list-tests", "-t", "--list-tags", "--list-test-names-only", "--list-reporters", "-h", "--help", "-?"})
      if (a == l) return true;
  }
  return false;
}
}  // namespace

int main(int argc, char** argv) {
  const int devices = racksim::exec::cuda_device_count();
  if (devices == 0 && !lists_only(argc, argv)) {
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
