#include "hierspec/latency.hpp"

#include <cstddef>

#include "renewal.hpp"

namespace hierspec {

namespace {

// Cost of a pass over `num_tokens` tokens (1-based n, table column n - 1).
double pass_cost(const CostTable& costs, int model, int num_tokens) {
  return costs[model][static_cast<std::size_t>(num_tokens) - 1];
}

}  // namespace

Evaluation evaluate(const CostTable& costs, const AcceptanceMatrix& acceptance,
                    const std::vector<int>& chain, const std::vector<int>& draft_lengths,
                    const EarlyStopping& early_stopping) {
  const int num_models = validate_acceptance(acceptance);
  validate_costs(costs, num_models);
  validate_early_stopping(early_stopping, num_models);
  validate_chain(chain, draft_lengths, num_models);
  require_columns(costs, chain_columns_needed(draft_lengths));

  const int top = static_cast<int>(draft_lengths.size());  // K: the target's level
  const int target = chain[top];
  Evaluation result;
  if (top == 0) {  // plain decoding: one pass of one token per committed token
    result.latency = pass_cost(costs, target, 1);
    result.passes_per_token = {1.0};
    result.tokens_per_token = {1.0};
    result.cost_per_token = {result.latency};
    result.tokens_per_target_pass = 1.0;
    return result;
  }

  // Per call of each level l < K: expected passes, tokens processed and own pass cost.
  // Level 0 (rule 1) hands up G tokens, G ~ bottom_batch_law (a point mass at T_0 without early
  // stopping), in min(G + 1, T_0) passes, the first over 2 tokens.
  const double rho = early_stopping.continue_rate(chain[0]);
  const std::vector<double> bottom_law = detail::bottom_batch_law(rho, draft_lengths[0]);
  std::vector<double> passes_per_call(top), tokens_per_call(top), own_cost_per_call(top);
  passes_per_call[0] = detail::bottom_expected_passes(rho, draft_lengths[0]);
  tokens_per_call[0] = passes_per_call[0] + 1.0;
  own_cost_per_call[0] =
      pass_cost(costs, chain[0], 2) + (passes_per_call[0] - 1.0) * pass_cost(costs, chain[0], 1);
  // E[h(G + 1)] over the bottom batch: what a pass over "pending token + bottom batch" costs.
  const auto over_bottom_batch = [&bottom_law](const auto& h) {
    double total = 0.0;
    for (std::size_t batch = 0; batch < bottom_law.size(); ++batch) {
      total += bottom_law[batch] * h(static_cast<int>(batch) + 1);
    }
    return total;
  };

  // Law of the hand-up L into the target: hand_up_law[k] = P(L = min_hand_up + k).
  // K = 1: L = G, the bottom batch; K >= 2: the end point of level K-1's renewal (rule 3).
  int min_hand_up = 0;
  std::vector<double> hand_up_law = bottom_law;
  // Extra cost of a cycle that starts in the bonus state b = 1 (K >= 2, rules 1-4): level 0's
  // first pass of the cycle processes 3 tokens instead of 2 and the first verification of every
  // intermediate level l one token more (G + 2 instead of G + 1; for level 1 in expectation
  // over the bottom batch G, which does not depend on b).
  std::vector<double> bonus_extra_cost(top, 0.0);
  if (top >= 2) {
    bonus_extra_cost[0] = pass_cost(costs, chain[0], 3) - pass_cost(costs, chain[0], 2);
  }
  for (int level = 1; level < top; ++level) {
    // G: the hand-up of level - 1 (random from level 0, fixed T_{l-1} from a higher level).
    const int batch_length = draft_lengths[level - 1];
    // The renewal stops once s >= threshold + 1: T + 1 for a lower level, T for level K-1.
    const int threshold = level == top - 1 ? draft_lengths[level] - 1 : draft_lengths[level];
    const double accept =
        level == 1 ? early_stopping.bottom_acceptance(acceptance, chain[0], chain[1])
                   : acceptance[chain[level - 1]][chain[level]];
    // Above the bottom, one verification's output is truncated geometric with rate a rho
    // (renewal.hpp); higher up rho plays no part.
    const double rate = level == 1 ? accept * rho : accept;
    const std::vector<double> law = detail::output_law(rate, batch_length);
    const std::vector<double> density = detail::renewal_density(law, threshold);
    double verifications = 0.0;  // E[N] = sum_{s=0}^{threshold} f(s)
    for (int s = 0; s <= threshold; ++s) verifications += density[s];
    const int model = chain[level];
    const double pass_tokens =
        level == 1 ? over_bottom_batch([](int n) { return static_cast<double>(n); })
                   : batch_length + 1.0;
    const double pass_cost_mean =
        level == 1 ? over_bottom_batch([&](int n) { return pass_cost(costs, model, n); })
                   : pass_cost(costs, model, batch_length + 1);
    passes_per_call[level] = verifications;
    tokens_per_call[level] = verifications * pass_tokens;
    own_cost_per_call[level] = verifications * pass_cost_mean;  // Wald
    bonus_extra_cost[level] =
        level == 1 ? over_bottom_batch([&](int n) {
          return pass_cost(costs, model, n + 1) - pass_cost(costs, model, n);
        })
                   : pass_cost(costs, model, batch_length + 2) -
                         pass_cost(costs, model, batch_length + 1);
    if (level == top - 1) {
      // End point e in T..T+G: level K-1 hands up all e tokens.
      hand_up_law = detail::end_point_law(density, law, threshold);
      min_hand_up = threshold + 1;
    }
  }

  // Calls of each level per target cycle: 1 for level K-1, times E[N] going down (Wald).
  std::vector<double> calls_per_cycle(top);
  calls_per_cycle[top - 1] = 1.0;
  for (int level = top - 1; level >= 1; --level) {
    calls_per_cycle[level - 1] = calls_per_cycle[level] * passes_per_call[level];
  }

  // The target's standard pass (rules 2, 4) processes its pending token and the L drafts,
  // e = L + 1 tokens, and commits h(e) = sum_{k<e} a^k in expectation (a: the bottom acceptance
  // for a single draft). It accepts all L with probability a^L: the next cycle then starts in
  // the bonus state (K >= 2).
  const double target_rate = top == 1
                                 ? early_stopping.bottom_acceptance(acceptance, chain[0], target)
                                 : acceptance[chain[top - 1]][target];
  const int max_pass_length = min_hand_up + static_cast<int>(hand_up_law.size());
  const std::vector<double> outputs =
      detail::expected_outputs_by_pass_length(target_rate, max_pass_length);
  double target_cost = 0.0, target_tokens = 0.0, committed = 0.0, full_acceptance = 0.0;
  double power = 1.0;  // a^L
  for (int k = 0; k < min_hand_up; ++k) power *= target_rate;
  for (std::size_t k = 0; k < hand_up_law.size(); ++k) {
    const int pass_length = min_hand_up + static_cast<int>(k) + 1;
    target_cost += hand_up_law[k] * pass_cost(costs, target, pass_length);
    target_tokens += hand_up_law[k] * pass_length;
    committed += hand_up_law[k] * outputs[pass_length];
    full_acceptance += hand_up_law[k] * power;
    power *= target_rate;
  }
  // pi = P(b = 1) at the start of a cycle: b is the indicator that the previous cycle's target
  // accepted everything, independent of this cycle's draws (docs/theory.md §4).
  const double bonus_state = top >= 2 ? full_acceptance : 0.0;

  result.tokens_per_target_pass = committed;
  result.bonus_state_probability = bonus_state;
  result.passes_per_token.resize(top + 1);
  result.tokens_per_token.resize(top + 1);
  result.cost_per_token.resize(top + 1);
  for (int level = 0; level < top; ++level) {
    // Per cycle: the calls' expectations plus, in the bonus state, one more token in the
    // level's first pass of the cycle.
    result.passes_per_token[level] = calls_per_cycle[level] * passes_per_call[level] / committed;
    result.tokens_per_token[level] =
        (calls_per_cycle[level] * tokens_per_call[level] + bonus_state) / committed;
    result.cost_per_token[level] = (calls_per_cycle[level] * own_cost_per_call[level] +
                                    bonus_state * bonus_extra_cost[level]) /
                                   committed;
  }
  result.passes_per_token[top] = 1.0 / committed;
  result.tokens_per_token[top] = target_tokens / committed;
  result.cost_per_token[top] = target_cost / committed;
  for (double cost : result.cost_per_token) result.latency += cost;
  return result;
}

Evaluation evaluate(const std::vector<double>& cost_per_pass, const AcceptanceMatrix& acceptance,
                    const std::vector<int>& chain, const std::vector<int>& draft_lengths,
                    const EarlyStopping& early_stopping) {
  const int num_models = validate_acceptance(acceptance);
  validate_constant_costs(cost_per_pass, num_models);
  validate_chain(chain, draft_lengths, num_models);
  return evaluate(expand_constant_costs(cost_per_pass, chain_columns_needed(draft_lengths)),
                  acceptance, chain, draft_lengths, early_stopping);
}

double expected_latency(const CostTable& costs, const AcceptanceMatrix& acceptance,
                        const std::vector<int>& chain, const std::vector<int>& draft_lengths,
                        const EarlyStopping& early_stopping) {
  return evaluate(costs, acceptance, chain, draft_lengths, early_stopping).latency;
}

double expected_latency(const std::vector<double>& cost_per_pass,
                        const AcceptanceMatrix& acceptance, const std::vector<int>& chain,
                        const std::vector<int>& draft_lengths,
                        const EarlyStopping& early_stopping) {
  return evaluate(cost_per_pass, acceptance, chain, draft_lengths, early_stopping).latency;
}

}  // namespace hierspec
