#include "racksim/common/yaml_reader.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <limits>

#include <fmt/format.h>

#include "racksim/common/error.hpp"

namespace racksim {

YAML::Node load_yaml_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError(fmt::format("{}: cannot open file", path));
  try {
    return YAML::Load(in);
  } catch (const YAML::Exception& e) {
    throw InputError(fmt::format("{}:{}:{}: YAML syntax error: {}", path, e.mark.line + 1, e.mark.column + 1, e.msg));
  }
}

YAML::Node load_yaml_text(std::string_view text, const std::string& name) {
  try {
    return YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    throw InputError(fmt::format("{}:{}:{}: YAML syntax error: {}", name, e.mark.line + 1, e.mark.column + 1, e.msg));
  }
}

void apply_override(YAML::Node& root, std::string_view assignment, YamlSource& source) {
  auto eq = assignment.find('=');
  if (eq == std::string_view::npos || eq == 0)
    throw InputError(fmt::format("--set: '{}' is not KEY=VALUE (e.g. serving.max_batch_size=1024)", assignment));
  std::string key(assignment.substr(0, eq));
  std::string value(assignment.substr(eq + 1));
  YAML::Node parsed;
  try {
    parsed = YAML::Load(value);
  } catch (const YAML::Exception& e) {
    throw InputError(fmt::format("--set {}: '{}' is not a valid YAML value: {}", key, value, e.msg));
  }
  if (!root.IsMap() && !root.IsNull()) throw InputError(fmt::format("--set {}: the scenario is not a mapping", key));
  // Walk the dotted path, creating maps as needed. yaml-cpp nodes are handles: assigning
  // through `cur` edits the tree in place, so use reset() to move the handle itself.
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (true) {
    auto dot = key.find('.', start);
    parts.push_back(key.substr(start, dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  for (const auto& p : parts)
    if (p.empty()) throw InputError(fmt::format("--set {}: empty component in the dotted key", key));
  YAML::Node cur = root;
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    YAML::Node next = cur[parts[i]];
    if (!next.IsDefined() || next.IsNull()) {
      cur[parts[i]] = YAML::Node(YAML::NodeType::Map);
      next = cur[parts[i]];
    } else if (!next.IsMap()) {
      throw InputError(fmt::format("--set {}: '{}' is not a mapping in the scenario", key, parts[i]));
    }
    cur.reset(next);
  }
  cur[parts.back()] = parsed;
  source.overrides[key] = std::string(assignment);
}

YamlMap::YamlMap(YAML::Node node, std::shared_ptr<const YamlSource> source, std::string path)
    : node_(std::move(node)), source_(std::move(source)), path_(std::move(path)) {}

YamlMap YamlMap::root(const YAML::Node& node, std::shared_ptr<const YamlSource> source) {
  if (!node.IsMap())
    throw InputError(fmt::format("{}: the file must be a YAML mapping of keys to values", source->file));
  return YamlMap(node, std::move(source), "");
}

namespace {
std::shared_ptr<const YamlSource> source_named(const std::string& name) {
  auto s = std::make_shared<YamlSource>();
  s->file = name;
  return s;
}
}  // namespace

YamlMap YamlMap::from_text(std::string_view text, const std::string& name) { return root(load_yaml_text(text, name), source_named(name)); }

YamlMap YamlMap::from_file(const std::string& path) { return root(load_yaml_file(path), source_named(path)); }

std::string YamlMap::key_path(std::string_view key) const {
  return path_.empty() ? std::string(key) : fmt::format("{}.{}", path_, key);
}

std::string YamlMap::origin(std::string_view key) const {
  // A --set of this key or of any map above it is where the value came from.
  std::string p = key_path(key);
  while (true) {
    auto it = source_->overrides.find(p);
    if (it != source_->overrides.end()) return fmt::format("--set {}", it->second);
    auto dot = p.rfind('.');
    if (dot == std::string::npos) break;
    p.resize(dot);
  }
  return source_->file;
}

bool YamlMap::has(std::string_view key) const {
  if (std::find(known_.begin(), known_.end(), key) == known_.end()) known_.emplace_back(key);
  const YAML::Node& n = node_;
  return static_cast<bool>(n[std::string(key)]);
}

YAML::Node YamlMap::node(std::string_view key) const {
  if (!has(key)) {
    // A required key is missing: if an unknown key is a near miss of it, that typo is the
    // real error, so report it as finish() would.
    std::vector<std::string> unknown;
    for (const auto& k : keys())
      if (std::find(known_.begin(), known_.end(), k) == known_.end()) unknown.push_back(k);
    const std::vector<std::string> wanted{std::string(key)};
    for (const auto& u : unknown)
      if (closest(u, wanted))
        throw InputError(fmt::format("{}: {}: unknown key (did you mean '{}'?)", origin(u), key_path(u), key));
    fail_plain(key, "missing (required)");
  }
  const YAML::Node& n = node_;
  return n[std::string(key)];
}

YamlMap YamlMap::map(std::string_view key) const {
  YAML::Node n = node(key);
  if (!n.IsMap()) fail_plain(key, "must be a mapping of keys to values");
  return YamlMap(n, source_, key_path(key));
}

std::optional<YamlMap> YamlMap::optional_map(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  return map(key);
}

std::vector<YamlMap> YamlMap::map_list(std::string_view key) const {
  YAML::Node n = node(key);
  if (!n.IsSequence()) fail_plain(key, "must be a list");
  std::vector<YamlMap> out;
  for (std::size_t i = 0; i < n.size(); ++i) {
    if (!n[i].IsMap()) fail_plain(key, fmt::format("element {} must be a mapping", i));
    out.push_back(YamlMap(n[i], source_, fmt::format("{}[{}]", key_path(key), i)));
  }
  return out;
}

YAML::Node YamlMap::scalar(std::string_view key) const {
  YAML::Node n = node(key);
  if (!n.IsScalar()) fail_plain(key, "must be a single value, not a list or mapping");
  return n;
}

std::string YamlMap::value_text(std::string_view key) const {
  const YAML::Node& n = node_;
  YAML::Node v = n[std::string(key)];
  if (v && v.IsScalar()) return v.Scalar();
  if (v) {
    YAML::Emitter e;
    e << YAML::Flow << v;
    return e.c_str();
  }
  return "";
}

std::string YamlMap::string(std::string_view key) const { return scalar(key).Scalar(); }

std::optional<std::string> YamlMap::optional_string(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  return string(key);
}

std::int64_t YamlMap::integer(std::string_view key, std::int64_t min, std::int64_t max) const {
  std::string s = string(key);
  std::int64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || ptr != s.data() + s.size()) fail(key, "is not an integer");
  if (v < min || v > max) fail(key, fmt::format("is out of range; allowed {} to {}", min, max));
  return v;
}

double YamlMap::number(std::string_view key, double min, double max) const {
  std::string s = string(key);
  double v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || ptr != s.data() + s.size() || !std::isfinite(v)) fail(key, "is not a number");
  if (v < min || v > max) fail(key, fmt::format("is out of range; allowed {} to {}", min, max));
  return v;
}

bool YamlMap::boolean(std::string_view key) const {
  std::string s = string(key);
  if (s == "true") return true;
  if (s == "false") return false;
  fail(key, "is not one of true, false");
}

double YamlMap::quantity(std::string_view key, Dimension d, std::string_view bare_unit) const {
  std::string s = string(key);
  auto v = parse_quantity(s, d, bare_unit);
  if (!v) fail(key, fmt::format("is not a {} quantity; units allowed: {}", to_string(d), allowed_units(d)));
  return *v;
}

std::string YamlMap::choice(std::string_view key, std::span<const std::string_view> allowed) const {
  std::string s = string(key);
  for (auto a : allowed)
    if (a == s) return s;
  fail(key, fmt::format("is not one of {}", join(allowed)));
}

std::vector<std::string> YamlMap::keys() const {
  std::vector<std::string> out;
  for (const auto& kv : node_) out.push_back(kv.first.as<std::string>());
  return out;
}

void YamlMap::finish() const {
  for (const auto& k : keys()) {
    if (std::find(known_.begin(), known_.end(), k) != known_.end()) continue;
    std::string hint;
    if (auto c = closest(k, known_)) hint = fmt::format(" (did you mean '{}'?)", *c);
    throw InputError(fmt::format("{}: {}: unknown key{}; allowed here: {}", origin(k), key_path(k), hint, join(known_)));
  }
}

void YamlMap::fail(std::string_view key, std::string_view what) const {
  throw InputError(fmt::format("{}: {}: '{}' {}", origin(key), key_path(key), value_text(key), what));
}

void YamlMap::fail_plain(std::string_view key, std::string_view what) const {
  throw InputError(fmt::format("{}: {}: {}", origin(key), key_path(key), what));
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0U : 1U)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::optional<std::string> closest(std::string_view word, std::span<const std::string> candidates) {
  std::optional<std::string> best;
  std::size_t best_d = std::max<std::size_t>(2, word.size() / 3) + 1;
  for (const auto& c : candidates) {
    std::size_t d = edit_distance(word, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  return best;
}

std::string join(std::span<const std::string> items, std::string_view sep) {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) out += sep;
    out += items[i];
  }
  return out;
}

std::string join(std::span<const std::string_view> items, std::string_view sep) {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) out += sep;
    out += items[i];
  }
  return out;
}

}  // namespace racksim
