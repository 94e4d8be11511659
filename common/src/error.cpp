#include "racksim/common/error.hpp"

#include <cstdio>
#include <cstdlib>

namespace racksim {

void assertion_failed(const char* expr, const char* file, int line, const std::string& msg) {
  std::fprintf(stderr, "racksim: internal error: %s:%d: assertion '%s' failed: %s\n", file, line, expr, msg.c_str());
  std::abort();
}

}  // namespace racksim
