#include "hierspec/simulate.hpp"

#include <algorithm>
#include <random>
#include <stdexcept>
#include <string>

namespace hierspec {

namespace {

// One run of the policy, level by level, exactly as docs/policy.md states it.
class Simulator {
 public:
  Simulator(const CostTable& costs, const AcceptanceMatrix& acceptance,
            const std::vector<int>& chain, const std::vector<int>& draft_lengths,
            const EarlyStopping& early_stopping, std::uint64_t seed,
            const StopRequested& should_stop)
      : poller_(should_stop),
        costs_(costs),
        acceptance_(acceptance),
        chain_(chain),
        draft_lengths_(draft_lengths),
        top_(static_cast<int>(draft_lengths.size())),
        bottom_continue_rate_(early_stopping.continue_rate(chain[0])),
        bottom_acceptance_(top_ > 0 ? early_stopping.bottom_acceptance(acceptance, chain[0],
                                                                       chain[1])
                                    : 1.0),
        generator_(seed),
        passes_(chain.size(), 0.0),
        tokens_(chain.size(), 0.0),
        cost_(chain.size(), 0.0),
        extra_pending_(chain.size(), 0) {}

  // One target cycle (rule 4): returns the number of tokens committed.
  int target_cycle() {
    if (top_ == 0) {  // plain decoding
      record_pass(0, 1);
      return 1;
    }
    // The bonus state of this cycle (K >= 2): after a full acceptance by the target every
    // level below it has one more pending token, processed by its first pass of the cycle.
    std::fill(extra_pending_.begin(), extra_pending_.end(), bonus_state_ ? 1 : 0);
    const int batch_length = call(top_ - 1);
    // Standard verification with a bonus token (rules 2, 4): a pass over L + 1 tokens.
    record_pass(top_, batch_length + 1);
    const int committed = verify(top_, batch_length);
    bonus_state_ = top_ >= 2 && committed == batch_length + 1;
    return committed;
  }

  const std::vector<double>& passes() const { return passes_; }
  const std::vector<double>& tokens() const { return tokens_; }
  const std::vector<double>& cost() const { return cost_; }

 private:
  // One call of level `level` < K; returns the number of tokens it hands up.
  int call(int level) {
    const int threshold = draft_lengths_[level];
    if (level == 0) {
      // Rule 1: the first pass over 2 (+ b) tokens, then one per draft; before each draft the
      // level may stop (early stopping, drawn only when the continue rate is below 1), and the
      // pass after the last draft of a full batch is never run.
      record_pass(0, 2 + extra_pending_[0]);
      extra_pending_[0] = 0;
      int drafted = 0;
      while (true) {
        if (bottom_continue_rate_ < 1.0 && !(uniform() < bottom_continue_rate_)) break;
        if (++drafted == threshold) break;
        record_pass(0, 1);
      }
      return drafted;
    }
    // Rule 3: level K-1 stops once s >= T and hands up all s tokens; a lower level stops once
    // s >= T + 1 and hands up exactly T.
    const bool below_target = level == top_ - 1;
    const int stop_at = below_target ? threshold : threshold + 1;
    int accumulated = 0;  // s
    while (accumulated < stop_at) {
      const int batch_length = call(level - 1);
      // Rule 2: one pass over the pending token(s) and the L drafts (L + 1, or L + 2 for the
      // first verification of a cycle in the bonus state).
      record_pass(level, batch_length + 1 + extra_pending_[level]);
      extra_pending_[level] = 0;
      accumulated += verify(level, batch_length);
    }
    return below_target ? accumulated : threshold;
  }

  // Rule 2: accept the batch's tokens one by one until the first rejection; output the
  // accepted prefix plus one corrected (or bonus) token.
  int verify(int level, int batch_length) {
    const double rate =
        level == 1 ? bottom_acceptance_ : acceptance_[chain_[level - 1]][chain_[level]];
    int accepted = 0;
    while (accepted < batch_length && uniform() < rate) ++accepted;
    return accepted + 1;
  }

  void record_pass(int level, int num_tokens) {
    poller_.add(static_cast<std::uint64_t>(num_tokens));
    passes_[level] += 1.0;
    tokens_[level] += num_tokens;
    cost_[level] += costs_[chain_[level]][static_cast<std::size_t>(num_tokens) - 1];
  }

  double uniform() { return static_cast<double>(generator_() >> 11) * 0x1.0p-53; }

  StopPoller poller_;
  const CostTable& costs_;
  const AcceptanceMatrix& acceptance_;
  const std::vector<int>& chain_;
  const std::vector<int>& draft_lengths_;
  const int top_;
  const double bottom_continue_rate_;
  const double bottom_acceptance_;  // level 1's acceptance of level 0's drafts
  std::mt19937_64 generator_;
  std::vector<double> passes_, tokens_, cost_;
  // b: the previous target pass accepted all its drafts (only for K >= 2).
  bool bonus_state_ = false;
  // [level] tokens the level's next pass processes beyond the usual (b until its first pass of
  // the cycle, then 0).
  std::vector<int> extra_pending_;
};

}  // namespace

SimulationResult simulate(const CostTable& costs, const AcceptanceMatrix& acceptance,
                          const std::vector<int>& chain, const std::vector<int>& draft_lengths,
                          std::int64_t num_tokens, std::uint64_t seed,
                          const EarlyStopping& early_stopping, const StopRequested& should_stop) {
  const int num_models = validate_acceptance(acceptance);
  validate_costs(costs, num_models);
  validate_early_stopping(early_stopping, num_models);
  validate_chain(chain, draft_lengths, num_models);
  require_columns(costs, chain_columns_needed(draft_lengths));
  if (num_tokens < 1) {
    throw std::invalid_argument("num_tokens = " + std::to_string(num_tokens) +
                                " must be >= 1");
  }
  if (num_tokens > kMaxSimulatedTokens) {
    throw std::invalid_argument("num_tokens = " + std::to_string(num_tokens) +
                                " exceeds MAX_SIMULATED_TOKENS = " +
                                std::to_string(kMaxSimulatedTokens));
  }

  Simulator simulator(costs, acceptance, chain, draft_lengths, early_stopping, seed,
                      should_stop);
  SimulationResult result;
  while (result.num_tokens < num_tokens) {
    result.num_tokens += simulator.target_cycle();
    ++result.num_target_passes;
  }
  const double committed = static_cast<double>(result.num_tokens);
  for (std::size_t level = 0; level < chain.size(); ++level) {
    result.passes_per_token.push_back(simulator.passes()[level] / committed);
    result.tokens_per_token.push_back(simulator.tokens()[level] / committed);
    result.cost_per_token.push_back(simulator.cost()[level] / committed);
    result.latency += simulator.cost()[level];
  }
  result.latency /= committed;
  result.tokens_per_target_pass = committed / static_cast<double>(result.num_target_passes);
  return result;
}

SimulationResult simulate(const std::vector<double>& cost_per_pass,
                          const AcceptanceMatrix& acceptance, const std::vector<int>& chain,
                          const std::vector<int>& draft_lengths, std::int64_t num_tokens,
                          std::uint64_t seed, const EarlyStopping& early_stopping,
                          const StopRequested& should_stop) {
  const int num_models = validate_acceptance(acceptance);
  validate_constant_costs(cost_per_pass, num_models);
  validate_chain(chain, draft_lengths, num_models);
  return simulate(expand_constant_costs(cost_per_pass, chain_columns_needed(draft_lengths)),
                  acceptance, chain, draft_lengths, num_tokens, seed, early_stopping,
                  should_stop);
}

}  // namespace hierspec
