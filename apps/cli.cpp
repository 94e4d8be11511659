#include "cli.hpp"

#include <iostream>

#include <fmt/format.h>

#include "racksim/common/error.hpp"
#include "racksim/common/output.hpp"

namespace racksim::cli {

bool parse(const Args& args, const po::options_description& desc, const po::positional_options_description& pos,
           po::variables_map& vm, const std::string& usage) {
  po::options_description all(desc);
  all.add_options()("help,h", "show this help");
  try {
    po::store(po::command_line_parser(args.argv).options(all).positional(pos).run(), vm);
    if (vm.count("help")) {
      std::cout << "usage: " << usage << "\n\n" << all << "\n";
      return false;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    throw InputError(fmt::format("racksim {}: {} (usage: {})", args.command, e.what(), usage));
  }
  return true;
}

void write_json(const std::string& path, const nlohmann::json& j) { write_output(path, j.dump(2) + "\n"); }

}  // namespace racksim::cli
