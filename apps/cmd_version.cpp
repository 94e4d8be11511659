// racksim version: what was built, and whether a CUDA backend (and a device) is there.

#include <fmt/format.h>

#include "cli.hpp"
#include "racksim/exec/backend.hpp"

namespace racksim::cli {

int cmd_version(const Args& args) {
  po::options_description desc("version options");
  po::positional_options_description pos;
  po::variables_map vm;
  if (!args.argv.empty() && !parse(args, desc, pos, vm, "racksim version")) return 0;
  fmt::print("racksim {}\n", RACKSIM_VERSION);
  for (const auto& b : exec::backend_registry().entries()) fmt::print("backend {}: {}\n", b.name, b.factory());
  return 0;
}

}  // namespace racksim::cli
