#pragma once
/// The discrete-event engine: integer time, and events in a total order (time, priority,
/// insertion sequence), so the same input gives byte-identical output. Metrics, power and traces
/// listen to signals; they never patch the run loop.

#include <cmath>
#include <cstdint>
#include <functional>
#include <queue>
#include <vector>

#include "racksim/common/error.hpp"

namespace racksim {

/// Simulated time in integer picoseconds (2^63 ps = 106 days).
class SimTime {
 public:
  constexpr SimTime() = default;
  [[nodiscard]] static constexpr SimTime ps(std::int64_t v) noexcept { return SimTime(v); }
  /// Rounds seconds to the nearest picosecond.
  [[nodiscard]] static SimTime seconds(double s) noexcept { return SimTime(static_cast<std::int64_t>(std::llround(s * 1e12))); }
  [[nodiscard]] constexpr std::int64_t ps() const noexcept { return ps_; }
  [[nodiscard]] constexpr double to_seconds() const noexcept { return static_cast<double>(ps_) * 1e-12; }
  constexpr SimTime operator+(SimTime o) const noexcept { return SimTime(ps_ + o.ps_); }
  constexpr SimTime operator-(SimTime o) const noexcept { return SimTime(ps_ - o.ps_); }
  constexpr auto operator<=>(const SimTime&) const = default;

 private:
  constexpr explicit SimTime(std::int64_t v) : ps_(v) {}
  std::int64_t ps_ = 0;
};

/// A typed broadcast: listeners connect once, emit calls each in connection order.
template <class... Args>
class Signal {
 public:
  void connect(std::function<void(Args...)> f) { slots_.push_back(std::move(f)); }
  void emit(Args... args) const {
    for (const auto& s : slots_) s(args...);
  }
  [[nodiscard]] bool empty() const noexcept { return slots_.empty(); }

 private:
  std::vector<std::function<void(Args...)>> slots_;
};

/// One scheduled event: `kind` and `target` are the owner's to interpret.
struct Event {
  SimTime time;
  int priority = 0;         ///< lower runs first at equal time
  std::uint64_t sequence = 0;  ///< insertion order, the final tie-break
  std::uint32_t kind = 0;
  std::uint32_t target = 0;
};

/// Pops events in (time, priority, sequence) order and hands them to one dispatcher.
class Engine {
 public:
  using Dispatcher = std::function<void(const Event&)>;
  explicit Engine(Dispatcher dispatch) : dispatch_(std::move(dispatch)) {}

  /// Schedules an event at `at` (never before now).
  void schedule(SimTime at, int priority, std::uint32_t kind, std::uint32_t target) {
    RACKSIM_ASSERT(at >= now_, "an event may not be scheduled in the past");
    queue_.push(Event{at, priority, next_sequence_++, kind, target});
  }
  /// Runs until no event is left; returns the number of events executed.
  std::uint64_t run() {
    while (!queue_.empty()) {
      const Event e = queue_.top();
      queue_.pop();
      RACKSIM_ASSERT(e.time >= now_, "time went back");
      now_ = e.time;
      ++executed_;
      dispatch_(e);
    }
    return executed_;
  }
  [[nodiscard]] SimTime now() const noexcept { return now_; }
  [[nodiscard]] std::uint64_t executed() const noexcept { return executed_; }

 private:
  struct Later {
    bool operator()(const Event& a, const Event& b) const noexcept {
      if (a.time != b.time) return a.time > b.time;
      if (a.priority != b.priority) return a.priority > b.priority;
      return a.sequence > b.sequence;
    }
  };
  Dispatcher dispatch_;
  std::priority_queue<Event, std::vector<Event>, Later> queue_;
  SimTime now_;
  std::uint64_t next_sequence_ = 0;
  std::uint64_t executed_ = 0;
};

}  // namespace racksim
