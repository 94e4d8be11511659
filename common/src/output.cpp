#include "racksim/common/output.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <system_error>

#include <fmt/format.h>
#include <unistd.h>

#include "racksim/common/error.hpp"

namespace racksim {

void write_output(const std::string& path, std::string_view contents) {
  if (path == "-") {
    std::cout << contents;
    std::cout.flush();
    return;
  }
  namespace fs = std::filesystem;
  fs::path target(path);
  fs::path tmp = target;
  tmp += fmt::format(".tmp.{}", static_cast<long>(::getpid()));
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw InputError(fmt::format("{}: cannot write (directory missing or not writable)", path));
    out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
    out.flush();
    if (!out) {
      std::error_code ignored;
      fs::remove(tmp, ignored);
      throw InputError(fmt::format("{}: write failed", path));
    }
  }
  std::error_code ec;
  fs::rename(tmp, target, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw InputError(fmt::format("{}: cannot replace file: {}", path, ec.message()));
  }
}

void check_output_path(const std::string& path, const std::string& option) {
  if (path == "-") return;
  namespace fs = std::filesystem;
  fs::path dir = fs::path(path).parent_path();
  if (dir.empty()) dir = ".";
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw InputError(fmt::format("{}: '{}': directory {} does not exist", option, path, dir.string()));
  if (fs::is_directory(path, ec)) throw InputError(fmt::format("{}: '{}' is a directory, not a file", option, path));
}

}  // namespace racksim
