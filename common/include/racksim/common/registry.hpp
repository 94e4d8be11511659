#pragma once
/// A table of named implementations (cost models, schedulers, backends), each with a one-line
/// description. Entries are added explicitly by the module that owns them, never by static
/// constructors (a static library can drop those silently). Unknown names fail with the list.

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "racksim/common/error.hpp"

namespace racksim {

/// Registry of factories producing T, keyed by name.
template <class Factory>
class Registry {
 public:
  struct Entry {
    std::string name;
    std::string description;
    Factory factory;
  };

  /// `what` names the kind of thing in messages ("cost model").
  explicit Registry(std::string what) : what_(std::move(what)) {}

  /// Adds an entry; a duplicate name is a programming error.
  void add(std::string name, std::string description, Factory factory) {
    for (const auto& e : entries_)
      RACKSIM_ASSERT(e.name != name, fmt::format("{} '{}' registered twice", what_, name));
    entries_.push_back({std::move(name), std::move(description), std::move(factory)});
  }

  /// The entry called `name`; InputError listing the valid names otherwise.
  [[nodiscard]] const Entry& get(std::string_view name) const {
    for (const auto& e : entries_)
      if (e.name == name) return e;
    std::string names;
    for (const auto& e : entries_) names += (names.empty() ? "" : ", ") + e.name;
    throw InputError(fmt::format("unknown {} '{}'; valid: {}", what_, name, names));
  }

  /// All entries in registration order.
  [[nodiscard]] const std::vector<Entry>& entries() const noexcept { return entries_; }

 private:
  std::string what_;
  std::vector<Entry> entries_;
};

}  // namespace racksim
