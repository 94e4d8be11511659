#include "racksim/common/units.hpp"

#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <string>
#include <utility>

namespace racksim {
namespace {

struct UnitEntry {
  std::string_view name;
  Dimension dim;
  double scale;
};

constexpr std::array<UnitEntry, 37> kUnits = {{
    {"count", Dimension::count, 1.0},
    {"fraction", Dimension::fraction, 1.0},
    {"%", Dimension::fraction, 0.01},
    {"B", Dimension::bytes, 1.0},
    {"KB", Dimension::bytes, 1e3},
    {"MB", Dimension::bytes, 1e6},
    {"GB", Dimension::bytes, 1e9},
    {"TB", Dimension::bytes, 1e12},
    {"KiB", Dimension::bytes, 1024.0},
    {"MiB", Dimension::bytes, 1048576.0},
    {"GiB", Dimension::bytes, 1073741824.0},
    {"TiB", Dimension::bytes, 1099511627776.0},
    {"B/s", Dimension::bytes_per_s, 1.0},
    {"MB/s", Dimension::bytes_per_s, 1e6},
    {"GB/s", Dimension::bytes_per_s, 1e9},
    {"TB/s", Dimension::bytes_per_s, 1e12},
    {"Mb/s", Dimension::bytes_per_s, 1e6 / 8},
    {"Gb/s", Dimension::bytes_per_s, 1e9 / 8},
    {"Tb/s", Dimension::bytes_per_s, 1e12 / 8},
    {"FLOP/s", Dimension::flops_per_s, 1.0},
    {"GFLOP/s", Dimension::flops_per_s, 1e9},
    {"TFLOP/s", Dimension::flops_per_s, 1e12},
    {"PFLOP/s", Dimension::flops_per_s, 1e15},
    {"op/s", Dimension::ops_per_s, 1.0},
    {"Mop/s", Dimension::ops_per_s, 1e6},
    {"Gop/s", Dimension::ops_per_s, 1e9},
    {"Top/s", Dimension::ops_per_s, 1e12},
    {"ns", Dimension::seconds, 1e-9},
    {"us", Dimension::seconds, 1e-6},
    {"ms", Dimension::seconds, 1e-3},
    {"s", Dimension::seconds, 1.0},
    {"W", Dimension::watts, 1.0},
    {"kW", Dimension::watts, 1e3},
    {"Hz", Dimension::hertz, 1.0},
    {"MHz", Dimension::hertz, 1e6},
    {"GHz", Dimension::hertz, 1e9},
    {"GiB/s", Dimension::bytes_per_s, 1073741824.0},
}};

}  // namespace

std::string_view to_string(Dimension d) noexcept {
  switch (d) {
    case Dimension::count: return "count";
    case Dimension::fraction: return "fraction";
    case Dimension::bytes: return "bytes";
    case Dimension::bytes_per_s: return "bytes per second";
    case Dimension::flops_per_s: return "FLOP per second";
    case Dimension::ops_per_s: return "operations per second";
    case Dimension::seconds: return "time";
    case Dimension::watts: return "power";
    case Dimension::hertz: return "frequency";
  }
  return "?";
}

std::string_view allowed_units(Dimension d) noexcept {
  switch (d) {
    case Dimension::count: return "a plain number, or unit count";
    case Dimension::fraction: return "a number in [0, 1], unit fraction or %";
    case Dimension::bytes: return "B, KB, MB, GB, TB, KiB, MiB, GiB, TiB";
    case Dimension::bytes_per_s: return "B/s, MB/s, GB/s, TB/s, GiB/s, Mb/s, Gb/s, Tb/s";
    case Dimension::flops_per_s: return "FLOP/s, GFLOP/s, TFLOP/s, PFLOP/s";
    case Dimension::ops_per_s: return "op/s, Mop/s, Gop/s, Top/s";
    case Dimension::seconds: return "ns, us, ms, s";
    case Dimension::watts: return "W, kW";
    case Dimension::hertz: return "Hz, MHz, GHz";
  }
  return "?";
}

std::optional<double> unit_scale(std::string_view unit, Dimension d) noexcept {
  for (const auto& u : kUnits)
    if (u.name == unit && u.dim == d) return u.scale;
  return std::nullopt;
}

std::optional<double> parse_quantity(std::string_view text, Dimension d, std::string_view bare_unit) noexcept {
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  if (text.empty()) return std::nullopt;
  double value = 0;
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(begin, end, value);
  if (ec != std::errc{} || !std::isfinite(value)) return std::nullopt;
  std::string_view unit(ptr, static_cast<std::size_t>(end - ptr));
  while (!unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
  if (unit.empty()) {
    if (d == Dimension::count || d == Dimension::fraction) return value;
    if (bare_unit.empty()) return std::nullopt;
    unit = bare_unit;
  }
  auto scale = unit_scale(unit, d);
  if (!scale) return std::nullopt;
  return value * *scale;
}

std::string format_count(long long n) {
  std::string digits = std::to_string(n < 0 ? -n : n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

std::string format_gib(double bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f", bytes / 1073741824.0);
  std::string s(buf);
  if (s.ends_with(".0")) s.resize(s.size() - 2);  // "80 GiB", as the spec's messages read
  return s + " GiB";
}

std::string format_si(double value, std::string_view unit) {
  static constexpr std::array<std::pair<double, const char*>, 6> kPrefixes = {
      {{1e15, "P"}, {1e12, "T"}, {1e9, "G"}, {1e6, "M"}, {1e3, "k"}, {1.0, ""}}};
  const char* prefix = "";
  double scaled = value;
  for (const auto& [factor, p] : kPrefixes) {
    if (std::fabs(value) >= factor) {
      scaled = value / factor;
      prefix = p;
      break;
    }
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.4g %s%.*s", scaled, prefix, static_cast<int>(unit.size()), unit.data());
  return buf;
}

}  // namespace racksim
