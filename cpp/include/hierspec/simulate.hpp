// A seeded Monte Carlo of the decoding policy (docs/policy.md), token by token, to check the
// evaluator: every draft token is accepted independently with the pair's acceptance rate.
#pragma once

#include <cstdint>
#include <vector>

#include "hierspec/cancel.hpp"
#include "hierspec/inputs.hpp"

namespace hierspec {

/// Counts of a simulated run, per committed token of the target.
struct SimulationResult {
  /// Total cost of all forward passes / committed tokens.
  double latency = 0.0;
  /// [level] forward passes per committed token.
  std::vector<double> passes_per_token;
  /// [level] tokens processed by forward passes per committed token.
  std::vector<double> tokens_per_token;
  /// [level] cost of the level's passes per committed token.
  std::vector<double> cost_per_token;
  /// Committed tokens / target passes.
  double tokens_per_target_pass = 0.0;
  /// Tokens committed (>= the number requested: the run stops after the first target pass
  /// that reaches it).
  std::int64_t num_tokens = 0;
  /// Target passes run.
  std::int64_t num_target_passes = 0;
};

/// Runs target cycles until at least `num_tokens` (in [1, kMaxSimulatedTokens]) tokens are
/// committed. O(num_tokens x work per committed token), the work growing with the draft lengths
/// and falling with the acceptance rates; `should_stop` is polled about every 2^16 processed
/// tokens (Cancelled when it answers true). Randomness:
/// std::mt19937_64 seeded with `seed`; a uniform double in [0, 1) from the top 53 bits of each
/// draw decides one acceptance (accepted iff u < a, so a = 1 always and a = 0 never accepts).
/// Same inputs and seed give the same result on every platform. early_stopping (see
/// EarlyStopping; default: never stop early): with a bottom continue rate rho < 1, one more
/// draw before each bottom draft decides whether level 0 drafts it (u < rho) or stops its batch
/// there; level 1 (the target for a single draft) accepts the bottom drafts with the bottom
/// acceptance.
SimulationResult simulate(const CostTable& costs, const AcceptanceMatrix& acceptance,
                          const std::vector<int>& chain, const std::vector<int>& draft_lengths,
                          std::int64_t num_tokens, std::uint64_t seed,
                          const EarlyStopping& early_stopping = {},
                          const StopRequested& should_stop = {});

/// Same with a constant cost per forward pass for each model: cost_per_pass [M].
SimulationResult simulate(const std::vector<double>& cost_per_pass,
                          const AcceptanceMatrix& acceptance, const std::vector<int>& chain,
                          const std::vector<int>& draft_lengths, std::int64_t num_tokens,
                          std::uint64_t seed, const EarlyStopping& early_stopping = {},
                          const StopRequested& should_stop = {});

}  // namespace hierspec
