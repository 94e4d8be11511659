#pragma once
// Shared pieces of the racksim sub-commands: argument parsing with the spec's errors, JSON
// output, and the sub-command table.

#include <string>
#include <vector>

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

namespace racksim {
struct LatencySummary;
struct RequestRecord;
struct IterationRecord;
}

namespace racksim::cli {

namespace po = boost::program_options;

/// Arguments after the sub-command name (argv[0] = "racksim <cmd>").
struct Args {
  std::string command;             ///< "graph", "hw show", ...
  std::vector<std::string> argv;
};

/// Parses `args` with `desc` and positional names; InputError on anything unknown or malformed.
/// Returns false if --help was asked (and printed).
bool parse(const Args& args, const po::options_description& desc, const po::positional_options_description& pos,
           po::variables_map& vm, const std::string& usage);

/// Writes JSON (2-space indent, trailing newline) to a path or "-" for stdout, atomically.
void write_json(const std::string& path, const nlohmann::json& j);

/// A simulated latency's mean and percentiles, milliseconds, as `simulate --json` writes them.
[[nodiscard]] nlohmann::json latency_json(const LatencySummary& l);

/// `--csv`: one row per request (request, replica, arrival_s, first_token_s, finish_s,
/// input_tokens, output_tokens), as `racksim simulate` and `racksim exec --serve` write it.
[[nodiscard]] std::string requests_csv(const std::vector<RequestRecord>& requests);

/// `--trace`: a Chrome / Perfetto trace of serving iterations, one process per entry of
/// `processes` (an iteration's `replica` is its process index).
[[nodiscard]] std::string iterations_trace(const std::string& name, const std::vector<std::string>& processes,
                                           const std::vector<IterationRecord>& iterations);

int cmd_hw(const Args& args);
int cmd_model(const Args& args);
int cmd_graph(const Args& args);
int cmd_simulate(const Args& args);
int cmd_validate(const Args& args);
int cmd_version(const Args& args);
int cmd_calibrate(const Args& args);
int cmd_bench(const Args& args);
int cmd_exec(const Args& args);

}  // namespace racksim::cli
