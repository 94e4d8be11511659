#pragma once
/// Units parsed at the edge ("3.35TB/s", "80GiB", "2us", "700W") into SI doubles.
/// Inside racksim a quantity's name carries its unit: bytes_per_s, time_s, flops, watts.

#include <optional>
#include <string>
#include <string_view>

namespace racksim {

/// What a quantity measures; each parses only its own units.
enum class Dimension {
  count,         ///< plain number ("count", or no unit)
  fraction,      ///< 0..1 ("fraction", or "%" which divides by 100)
  bytes,         ///< B, KB, MB, GB, TB (10^3 steps), KiB, MiB, GiB, TiB (2^10 steps)
  bytes_per_s,   ///< B/s ... TB/s, and bits per second Gb/s, Mb/s (divided by 8)
  flops_per_s,   ///< FLOP/s, GFLOP/s, TFLOP/s, PFLOP/s
  ops_per_s,     ///< op/s, Mop/s, Gop/s, Top/s
  seconds,       ///< ns, us, ms, s
  watts,         ///< W, kW
  hertz,         ///< Hz, MHz, GHz
};

/// Name of a dimension for messages ("bytes per second").
[[nodiscard]] std::string_view to_string(Dimension d) noexcept;
/// The units a dimension accepts, comma separated, for error messages.
[[nodiscard]] std::string_view allowed_units(Dimension d) noexcept;

/// Multiplier from `unit` to SI base of `d`, or nullopt if `unit` does not measure `d`.
[[nodiscard]] std::optional<double> unit_scale(std::string_view unit, Dimension d) noexcept;

/// Parses "3.35TB/s" / "3.35 TB/s" / "80" (bare number allowed for count/fraction only unless
/// `bare_unit` names the unit a bare number is in). Nullopt if malformed or the wrong dimension.
[[nodiscard]] std::optional<double> parse_quantity(std::string_view text, Dimension d,
                                                   std::string_view bare_unit = {}) noexcept;

/// Formats an integer with thousands separators: 68,976,648,192.
[[nodiscard]] std::string format_count(long long n);
/// Formats bytes as "128.5 GiB" (binary units, one decimal).
[[nodiscard]] std::string format_gib(double bytes);
/// Formats a value with SI prefix and unit, 4 significant digits: format_si(3.35e12, "B/s") = "3.35 TB/s".
[[nodiscard]] std::string format_si(double value, std::string_view unit);

}  // namespace racksim
