#include "racksim/hwmodels/figure.hpp"

#include <fmt/format.h>

namespace racksim {

Figure read_figure(const YamlMap& parent, std::string_view key, Dimension d) {
  YamlMap y = parent.map(key);
  Figure f;
  f.raw = y.number("value", -1e30, 1e30);
  f.unit = y.string("unit");
  auto scale = unit_scale(f.unit, d);
  if (!scale) y.fail("unit", fmt::format("is not a unit of {}; allowed: {}", to_string(d), allowed_units(d)));
  f.value = f.raw * *scale;
  f.source = y.string("source");
  if (f.source.empty()) y.fail_plain("source", "must name where the figure comes from");
  if (y.has("placeholder")) f.placeholder = y.boolean("placeholder");
  if (auto n = y.optional_string("note")) f.note = *n;
  y.finish();
  return f;
}

}  // namespace racksim
