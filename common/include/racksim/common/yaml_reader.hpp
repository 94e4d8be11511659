#pragma once
/// Strict reading of YAML input files: every key a reader asks for is recorded, and finish()
/// rejects any other key, so a misspelt key is an error rather than silently ignored.
/// Errors name the file, the dotted key, the value and what is allowed (spec: exit code 2).

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "racksim/common/units.hpp"

namespace racksim {

/// Where a YAML tree came from: the file name as the user typed it, and which dotted paths
/// were replaced by `--set KEY=VALUE` (so messages blame the right place).
struct YamlSource {
  std::string file;
  std::map<std::string, std::string, std::less<>> overrides;  ///< dotted path -> "KEY=VALUE"
};

/// Parses a file into a node; syntax errors become InputError with file:line:column.
[[nodiscard]] YAML::Node load_yaml_file(const std::string& path);
/// Parses text (e.g. an embedded catalog file) named `name` in messages.
[[nodiscard]] YAML::Node load_yaml_text(std::string_view text, const std::string& name);

/// Applies `--set a.b.c=value`: the value is parsed as YAML, so numbers and lists work.
/// Intermediate maps are created; records the path in `source.overrides`.
void apply_override(YAML::Node& root, std::string_view assignment, YamlSource& source);

/// A YAML mapping read under strict rules.
class YamlMap {
 public:
  /// Wraps the document root; throws InputError if it is not a mapping.
  static YamlMap root(const YAML::Node& node, std::shared_ptr<const YamlSource> source);
  /// The root of `text` (an embedded catalog file), named `name` in messages; no overrides.
  static YamlMap from_text(std::string_view text, const std::string& name);
  /// The root of the file at `path`, named as typed; no overrides.
  static YamlMap from_file(const std::string& path);

  /// Dotted path of this map ("" at the root).
  [[nodiscard]] const std::string& path() const noexcept { return path_; }
  /// Dotted path of a key of this map.
  [[nodiscard]] std::string key_path(std::string_view key) const;
  /// File (or --set) a key came from, for messages.
  [[nodiscard]] std::string origin(std::string_view key) const;

  /// True if the key is present (and records it as known).
  [[nodiscard]] bool has(std::string_view key) const;
  /// The raw node of a present key (records it); throws if missing.
  [[nodiscard]] YAML::Node node(std::string_view key) const;

  [[nodiscard]] YamlMap map(std::string_view key) const;
  [[nodiscard]] std::optional<YamlMap> optional_map(std::string_view key) const;
  /// Elements of a sequence of mappings.
  [[nodiscard]] std::vector<YamlMap> map_list(std::string_view key) const;

  [[nodiscard]] std::string string(std::string_view key) const;
  [[nodiscard]] std::optional<std::string> optional_string(std::string_view key) const;
  [[nodiscard]] std::int64_t integer(std::string_view key, std::int64_t min, std::int64_t max) const;
  [[nodiscard]] double number(std::string_view key, double min, double max) const;
  [[nodiscard]] bool boolean(std::string_view key) const;
  /// A number with a unit ("3.35TB/s", or a bare number in `bare_unit` if given).
  [[nodiscard]] double quantity(std::string_view key, Dimension d, std::string_view bare_unit = {}) const;
  /// One of `allowed`; the message lists them.
  [[nodiscard]] std::string choice(std::string_view key, std::span<const std::string_view> allowed) const;

  /// Every key present, in document order.
  [[nodiscard]] std::vector<std::string> keys() const;
  /// Rejects keys nobody asked for: "file: a.b.key: unknown key (did you mean ...?); allowed: ...".
  void finish() const;
  /// Throws InputError "file: path.key: 'value' <what>".
  [[noreturn]] void fail(std::string_view key, std::string_view what) const;
  /// Throws InputError "file: path.key: <what>" without quoting a value.
  [[noreturn]] void fail_plain(std::string_view key, std::string_view what) const;

 private:
  YamlMap(YAML::Node node, std::shared_ptr<const YamlSource> source, std::string path);
  [[nodiscard]] YAML::Node scalar(std::string_view key) const;
  [[nodiscard]] std::string value_text(std::string_view key) const;

  YAML::Node node_;
  std::shared_ptr<const YamlSource> source_;
  std::string path_;
  mutable std::vector<std::string> known_;
};

/// Levenshtein distance, for "did you mean" suggestions.
[[nodiscard]] std::size_t edit_distance(std::string_view a, std::string_view b);
/// The closest candidate within a small distance, if any.
[[nodiscard]] std::optional<std::string> closest(std::string_view word, std::span<const std::string> candidates);
/// Joins with ", ".
[[nodiscard]] std::string join(std::span<const std::string> items, std::string_view sep = ", ");
[[nodiscard]] std::string join(std::span<const std::string_view> items, std::string_view sep = ", ");

}  // namespace racksim
