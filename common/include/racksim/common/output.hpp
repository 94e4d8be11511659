#pragma once
/// Writing results: whole files or nothing (temporary file, then rename), "-" for stdout.

#include <string>
#include <string_view>

namespace racksim {

/// Writes `contents` to `path` atomically: a temporary file beside it, then rename, so an
/// existing file is replaced whole and a failed run leaves nothing half-written (spec).
/// `path == "-"` writes to stdout. Throws InputError if the directory cannot be written.
void write_output(const std::string& path, std::string_view contents);

/// Checks before any work that `path` ("-" or a file in an existing directory) can be
/// written, so a run fails fast instead of after its computation. InputError naming `option`.
void check_output_path(const std::string& path, const std::string& option);

}  // namespace racksim
