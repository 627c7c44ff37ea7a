// The exact expected latency of a chain under the decoding policy of docs/policy.md.
//
// Derivation: docs/theory.md. Per target cycle the target calls level K-1 once, verifies the
// hand-up of L tokens in one standard pass over L + 1 tokens (its pending token plus the
// drafts; a bonus token when all are accepted) and commits O_K tokens. For K >= 2 a cycle that
// follows a full acceptance (the bonus state b = 1, probability pi = E[a_K^L]) costs
// D = sum_l delta_l more: level 0's first pass processes 3 tokens instead of 2
// (delta_0 = c_0(3) - c_0(2)) and the first verification of every intermediate level l one token
// more (delta_l = c_l(T_{l-1} + 2) - c_l(T_{l-1} + 1)). b is independent of the cycle's own
// draws, so by the renewal-reward theorem the latency per committed token is
//   (E[c_K(L + 1)] + Cost_{K-1} + pi D) / E[O_K],     E[O_K | L] = (1 - a_K^(L+1)) / (1 - a_K),
// with Cost_0 = c_0(2) + (T_0 - 1) c_0(1) and Cost_l = E[N_l] (c_l(T_{l-1} + 1) + Cost_{l-1})
// (Wald), E[N_l] from the renewal recursion of level l. For K = 1, D = 0 (classic speculative
// decoding; level 0 is normalised to 2 pending tokens after any outcome).
#pragma once

#include <vector>

#include "hierspec/inputs.hpp"

namespace hierspec {

/// Expected quantities of a chain, per committed token (of the target).
struct Evaluation {
  /// Expected cost per committed token (sum of cost_per_token).
  double latency = 0.0;
  /// [level] expected forward passes of the level's model per committed token.
  std::vector<double> passes_per_token;
  /// [level] expected tokens processed by the level's forward passes per committed token.
  std::vector<double> tokens_per_token;
  /// [level] expected cost of the level's forward passes per committed token.
  std::vector<double> cost_per_token;
  /// E[O_K]: expected tokens committed per target pass.
  double tokens_per_target_pass = 0.0;
  /// pi = E[a_K^L]: probability that a target cycle starts in the bonus state (the previous
  /// target pass accepted every draft, so every level below it has one more pending token;
  /// policy rules 1-4). 0 for K <= 1, where the state does not change any pass.
  double bonus_state_probability = 0.0;
};

/// Exact expectation for `chain` (model indices, increasing, ending at the target) with
/// `draft_lengths` [T_0, ..., T_{K-1}]. costs: [M][N] with N >= chain_columns_needed.
/// early_stopping: see EarlyStopping (default: the bottom level never stops early). With a
/// continue rate rho < 1 at level 0 the bottom batch G has P(G = g) = rho^g (1 - rho) for
/// g < T_0 and P(G = T_0) = rho^T_0, and level 0 runs min(G + 1, T_0) passes (docs/policy.md
/// rule 1); level 1 accepts its drafts with the bottom acceptance of the pair.
/// Throws std::invalid_argument for invalid input (message names the argument and value).
Evaluation evaluate(const CostTable& costs, const AcceptanceMatrix& acceptance,
                    const std::vector<int>& chain, const std::vector<int>& draft_lengths,
                    const EarlyStopping& early_stopping = {});

/// Same with a constant cost per forward pass for each model: cost_per_pass [M].
Evaluation evaluate(const std::vector<double>& cost_per_pass, const AcceptanceMatrix& acceptance,
                    const std::vector<int>& chain, const std::vector<int>& draft_lengths,
                    const EarlyStopping& early_stopping = {});

/// evaluate(...).latency.
double expected_latency(const CostTable& costs, const AcceptanceMatrix& acceptance,
                        const std::vector<int>& chain, const std::vector<int>& draft_lengths,
                        const EarlyStopping& early_stopping = {});
double expected_latency(const std::vector<double>& cost_per_pass,
                        const AcceptanceMatrix& acceptance, const std::vector<int>& chain,
                        const std::vector<int>& draft_lengths,
                        const EarlyStopping& early_stopping = {});

}  // namespace hierspec
