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

  // Law of the length e of the target's pass: pass_length_law[k] = P(e = first_pass_length + k).
  // K = 1: e = G + 1 (standard verification of the bottom batch); K >= 2: e = L, the hand-up of
  // level K-1 (deferred verification, rule 4).
  int first_pass_length = 1;
  std::vector<double> pass_length_law = bottom_law;
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
    if (level == top - 1) {
      // End point e in T..T+G; level K-1 hands up all e tokens and the target's deferred pass
      // processes e tokens.
      pass_length_law = detail::end_point_law(density, law, threshold);
      first_pass_length = threshold + 1;
    }
  }

  // Calls of each level per target cycle: 1 for level K-1, times E[N] going down (Wald).
  std::vector<double> calls_per_cycle(top);
  calls_per_cycle[top - 1] = 1.0;
  for (int level = top - 1; level >= 1; --level) {
    calls_per_cycle[level - 1] = calls_per_cycle[level] * passes_per_call[level];
  }

  const double target_rate = top == 1
                                 ? early_stopping.bottom_acceptance(acceptance, chain[0], target)
                                 : acceptance[chain[top - 1]][target];
  const int max_pass_length = first_pass_length + static_cast<int>(pass_length_law.size()) - 1;
  const std::vector<double> outputs =
      detail::expected_outputs_by_pass_length(target_rate, max_pass_length);
  double target_cost = 0.0, target_tokens = 0.0, committed = 0.0;
  for (std::size_t k = 0; k < pass_length_law.size(); ++k) {
    const int pass_length = first_pass_length + static_cast<int>(k);
    target_cost += pass_length_law[k] * pass_cost(costs, target, pass_length);
    target_tokens += pass_length_law[k] * pass_length;
    committed += pass_length_law[k] * outputs[pass_length];
  }

  result.tokens_per_target_pass = committed;
  result.passes_per_token.resize(top + 1);
  result.tokens_per_token.resize(top + 1);
  result.cost_per_token.resize(top + 1);
  for (int level = 0; level < top; ++level) {
    result.passes_per_token[level] = calls_per_cycle[level] * passes_per_call[level] / committed;
    result.tokens_per_token[level] = calls_per_cycle[level] * tokens_per_call[level] / committed;
    result.cost_per_token[level] = calls_per_cycle[level] * own_cost_per_call[level] / committed;
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
