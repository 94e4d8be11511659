#pragma once
/// The hwmodels data folder compiled into the binary (gpus/, systems/, efficiency/).

#include <span>

#include "racksim/common/embedded_file.hpp"

namespace racksim::embedded {
/// Files under hwmodels/data/, paths relative to it.
[[nodiscard]] std::span<const EmbeddedFile> hwmodels_data();
}  // namespace racksim::embedded
