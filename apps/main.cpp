// racksim: one binary, one sub-command per file (spec: "Binary and sub-commands").

#include <cstdio>
#include <exception>
#include <iostream>
#include <string>
#include <string_view>

#include "cli.hpp"
#include "racksim/common/error.hpp"

namespace {

struct Command {
  std::string_view name;
  std::string_view help;
  int (*run)(const racksim::cli::Args&);
};

constexpr Command kCommands[] = {
    {"simulate", "discrete-event simulation of a serving scenario: throughput, latency percentiles, power", racksim::cli::cmd_simulate},
    {"validate", "run the calibration-set scenarios: predicted, published, error; exit 4 above --threshold", racksim::cli::cmd_validate},
    {"hw", "hardware catalog: 'hw list', 'hw show ID' (every figure with its source)", racksim::cli::cmd_hw},
    {"model", "model catalog: 'model list', 'model show ID' (parameters, bytes per precision)", racksim::cli::cmd_model},
    {"graph", "operator graph of one step of a scenario, with each op's cost and bound", racksim::cli::cmd_graph},
    {"version", "version and build features", racksim::cli::cmd_version},
    {"calibrate", "fit hardware-model factors to measurement files; write them with a residual report", racksim::cli::cmd_calibrate},
    {"exec", "run real steps of a scenario's model (CPU reference or CUDA), time every op, and an offline serving loop", racksim::cli::cmd_exec},
    {"bench", "GPU microbenchmarks (gemm, memory, launch, power, NCCL collectives) written to a measurement file", racksim::cli::cmd_bench},
};

void usage(std::FILE* to) {
  std::fprintf(to, "usage: racksim COMMAND [ARGS...]   (racksim COMMAND --help for its options)\n\ncommands:\n");
  for (const auto& c : kCommands)
    std::fprintf(to, "  %-9.*s %.*s\n", static_cast<int>(c.name.size()), c.name.data(), static_cast<int>(c.help.size()), c.help.data());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    usage(stderr);
    return static_cast<int>(racksim::ExitCode::bad_input);
  }
  const std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    usage(stdout);
    return 0;
  }
  if (name == "--version") return racksim::cli::cmd_version({"version", {}});
  racksim::cli::Args args{name, {}};
  for (int i = 2; i < argc; ++i) args.argv.emplace_back(argv[i]);
  try {
    for (const auto& c : kCommands)
      if (c.name == name) return c.run(args);
    std::string names;
    for (const auto& c : kCommands) names += (names.empty() ? "" : ", ") + std::string(c.name);
    throw racksim::InputError("racksim: '" + name + "' is not a command; allowed: " + names);
  } catch (const racksim::Error& e) {
    std::cout.flush();
    std::cerr << "error: " << e.what() << "\n";
    return static_cast<int>(e.code());
  } catch (const std::exception& e) {
    std::cout.flush();
    std::cerr << "error: internal: " << e.what() << "\n";
    return static_cast<int>(racksim::ExitCode::internal);
  }
}
