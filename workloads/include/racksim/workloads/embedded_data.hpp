#pragma once
/// The workloads data folder compiled into the binary (models/*.yaml, lengths/*.csv).

#include <span>

#include "racksim/common/embedded_file.hpp"

namespace racksim::embedded {
/// Files under workloads/data/, paths relative to it.
[[nodiscard]] std::span<const EmbeddedFile> workloads_data();
}  // namespace racksim::embedded
