// Cooperative cancellation of long computations (plan, brute_force_plan, simulate).
//
// The core stays free of Python: the caller passes a StopRequested function, and the
// computation asks it at a coarse interval (StopPoller) whether to stop. The Python binding
// implements it by taking the GIL about every 50 ms and running Python's signal handlers, so
// Ctrl-C interrupts a long call.
#pragma once

#include <cstdint>
#include <functional>
#include <stdexcept>

namespace hierspec {

/// Returns true when the caller wants the running computation to stop. Called on the thread
/// running the computation, about once per StopPoller::kDefaultInterval units of work (a few
/// microseconds to a millisecond apart); an empty function never stops anything.
using StopRequested = std::function<bool()>;

/// Thrown by a computation whose StopRequested returned true. Not an input error: no result.
class Cancelled : public std::runtime_error {
 public:
  Cancelled() : std::runtime_error("hierspec: the computation was cancelled by its caller") {}
};

/// Counts units of work (roughly: inner-loop iterations) and asks `should_stop` once per
/// `interval` units; throws Cancelled when it answers true.
class StopPoller {
 public:
  static constexpr std::uint64_t kDefaultInterval = std::uint64_t{1} << 16;

  explicit StopPoller(const StopRequested& should_stop,
                      std::uint64_t interval = kDefaultInterval)
      : should_stop_(should_stop), interval_(interval) {}

  void add(std::uint64_t work) {
    if (!should_stop_) return;
    done_ += work;
    if (done_ < interval_) return;
    done_ = 0;
    if (should_stop_()) throw Cancelled();
  }

 private:
  const StopRequested& should_stop_;
  std::uint64_t interval_;
  std::uint64_t done_ = 0;
};

}  // namespace hierspec
