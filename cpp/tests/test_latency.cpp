// The evaluator against closed forms and hand derivations, and the renewal building blocks
// against each other (docs/theory.md §2-§5).
#include <cmath>
#include <random>

#include "check.hpp"
#include "hierspec/latency.hpp"
#include "random_instances.hpp"
#include "renewal.hpp"

using hierspec::AcceptanceMatrix;
using hierspec::CostTable;
using test_instances::random_acceptance;
using test_instances::random_costs;
using test_instances::uniform;
using test_instances::uniform_int;

namespace {

AcceptanceMatrix two_models(double rate) { return {{1.0, rate}, {0.0, 1.0}}; }

}  // namespace

// theory §5: one draft with batch g and table costs (policy rule 1 for level 0):
// latency = (c0(2) + (g-1) c0(1) + c1(g+1)) / ((1 - a^(g+1)) / (1 - a)).
TEST(single_draft_matches_closed_form) {
  std::mt19937_64 generator(1);
  for (int trial = 0; trial < 200; ++trial) {
    const int batch = uniform_int(generator, 1, 12);
    const double rate = trial % 10 == 0 ? 0.0 : uniform(generator, 0.0, 0.999);
    const CostTable costs = random_costs(generator, 2, batch + 3);
    const double expected =
        (costs[0][1] + (batch - 1) * costs[0][0] + costs[1][batch]) /
        ((1.0 - std::pow(rate, batch + 1)) / (1.0 - rate));
    CHECK_CLOSE(hierspec::expected_latency(costs, two_models(rate), {0, 1}, {batch}), expected,
                1e-12);
  }
}

// Early stopping (policy rule 1, theory §11): the bottom batch G has P(G = g) = rho^g (1 - rho),
// g < T, P(G = T) = rho^T; level 0 runs min(G + 1, T) passes; the target verifies G drafts in a
// pass of G + 1 and commits sum_{o=1}^{T+1} (a rho)^(o-1) tokens on average.
TEST(single_draft_with_early_stopping_matches_direct_sum) {
  std::mt19937_64 generator(2);
  for (int trial = 0; trial < 200; ++trial) {
    const int batch = uniform_int(generator, 1, 12);
    const double rate = trial % 10 == 0 ? 0.0 : uniform(generator, 0.0, 0.999);
    const double rho = trial % 7 == 0 ? 0.0 : uniform(generator, 0.0, 1.0);
    const CostTable costs = random_costs(generator, 2, batch + 3);
    double cost = 0.0, committed = 0.0, probability_total = 0.0;
    for (int drafted = 0; drafted <= batch; ++drafted) {
      const double probability =
          std::pow(rho, drafted) * (drafted < batch ? 1.0 - rho : 1.0);
      const int passes = std::min(drafted + 1, batch);
      const double outputs = (1.0 - std::pow(rate, drafted + 1)) / (1.0 - rate);
      cost += probability * (costs[0][1] + (passes - 1) * costs[0][0] + costs[1][drafted]);
      committed += probability * outputs;
      probability_total += probability;
    }
    CHECK_CLOSE(probability_total, 1.0, 1e-12);
    const hierspec::Evaluation evaluation =
        hierspec::evaluate(costs, two_models(0.5), {0, 1}, {batch}, {{rho, 1.0}, two_models(rate)});
    CHECK_CLOSE(evaluation.latency, cost / committed, 1e-12);
    CHECK_CLOSE(evaluation.tokens_per_target_pass, committed, 1e-12);
    const double effective = rate * rho;
    CHECK_CLOSE(committed, (1.0 - std::pow(effective, batch + 1)) / (1.0 - effective), 1e-12);
  }
}

// A continue rate of 1 with the main acceptance is no early stopping, bit for bit; the rates
// of models above level 0 are never used.
TEST(continue_rate_one_changes_nothing) {
  std::mt19937_64 generator(3);
  const CostTable costs = random_costs(generator, 4, 20);
  const AcceptanceMatrix acceptance = {
      {1, .75, .6, .5}, {0, 1, .8, .65}, {0, 0, 1, .85}, {0, 0, 0, 1}};
  for (const std::vector<int>& chain : {std::vector<int>{0, 3}, {0, 1, 3}, {0, 1, 2, 3}}) {
    const std::vector<int> lengths(chain.size() - 1, 4);
    const double plain = hierspec::expected_latency(costs, acceptance, chain, lengths);
    CHECK(plain == hierspec::expected_latency(costs, acceptance, chain, lengths,
                                              {{1, 1, 1, 1}, acceptance}));
    CHECK(plain == hierspec::expected_latency(costs, acceptance, chain, lengths,
                                              {{1, 0, 0, 0}, {}}));
  }
}

// With constant costs this is the form of Leviathan et al.: (g c0 + c1)(1 - a)/(1 - a^(g+1)).
TEST(single_draft_constant_costs_is_leviathan_form) {
  for (double rate : {0.0, 0.3, 0.75, 0.99}) {
    for (int batch : {1, 2, 5, 16}) {
      const double expected =
          (batch * 0.2 + 3.0) * (1.0 - rate) / (1.0 - std::pow(rate, batch + 1));
      CHECK_CLOSE(hierspec::expected_latency(std::vector<double>{0.2, 3.0}, two_models(rate),
                                             {0, 1}, {batch}),
                  expected, 1e-12);
    }
  }
}

// a = 1: every token accepted, g + 1 committed per cycle (the limit of the closed form).
TEST(single_draft_full_acceptance_limit) {
  const CostTable costs = {{0.5, 0.7, 0.9, 1.1, 1.3, 1.5, 1.7}, {5, 6, 7, 8, 9, 10, 11}};
  for (int batch = 1; batch <= 6; ++batch) {
    const double expected = (0.7 + (batch - 1) * 0.5 + costs[1][batch]) / (batch + 1);
    const hierspec::Evaluation evaluation =
        hierspec::evaluate(costs, two_models(1.0), {0, 1}, {batch});
    CHECK_CLOSE(evaluation.latency, expected, 1e-14);
    CHECK_CLOSE(evaluation.tokens_per_target_pass, batch + 1.0, 1e-14);
    // and the limit from below is continuous
    const double near = hierspec::expected_latency(costs, two_models(1.0 - 1e-9), {0, 1}, {batch});
    CHECK_CLOSE(near, expected, 1e-7);
  }
}

TEST(target_alone_is_one_pass_of_one_token) {
  const CostTable costs = {{1, 2}, {3, 4}, {7, 9}};
  const AcceptanceMatrix acceptance = {{1, .5, .5}, {0, 1, .5}, {0, 0, 1}};
  const hierspec::Evaluation evaluation = hierspec::evaluate(costs, acceptance, {2}, {});
  CHECK(evaluation.latency == 7.0);
  CHECK(evaluation.passes_per_token.size() == 1 && evaluation.passes_per_token[0] == 1.0);
  CHECK(evaluation.tokens_per_token[0] == 1.0 && evaluation.cost_per_token[0] == 7.0);
  CHECK(evaluation.tokens_per_target_pass == 1.0);
}

// theory §3-§5, hand-derived: chain [0, 1, 2], T_0 = 1, T_1 = 2. Level 1 verifies 1 token per
// iteration (O = 1 w.p. 1 - a, 2 w.p. a) until s >= 2: E[N] = 2 - a; it hands up all e tokens
// with P(e = 2) = a + (1 - a)^2, P(e = 3) = a (1 - a). The target's standard pass over e + 1
// tokens commits 1 + b + ... + b^e in expectation and accepts everything w.p. b^e; then the
// next cycle is in the bonus state: level 0's first pass processes 3 tokens instead of 2 and
// level 1's first verification 3 instead of 2.
TEST(three_levels_hand_derivation) {
  const double a = 0.35, b = 0.8;
  const CostTable costs = {{0.1, 0.15, 0.3, 9}, {1.0, 1.4, 2.0, 9}, {10, 11, 12.5, 14}};
  const AcceptanceMatrix acceptance = {{1, a, 0.5}, {0, 1, b}, {0, 0, 1}};
  const double verifications = 2 - a;
  const double p2 = a + (1 - a) * (1 - a), p3 = a * (1 - a);
  const double committed = p2 * (1 + b + b * b) + p3 * (1 + b + b * b + b * b * b);
  const double bonus = p2 * b * b + p3 * b * b * b;  // pi = E[b^e]
  const double extra = (0.3 - 0.15) + (2.0 - 1.4);  // D = delta_0 + delta_1
  const double cost = p2 * 12.5 + p3 * 14 + verifications * (1.4 + 0.15) + bonus * extra;
  const hierspec::Evaluation evaluation = hierspec::evaluate(costs, acceptance, {0, 1, 2}, {1, 2});
  CHECK_CLOSE(evaluation.latency, cost / committed, 1e-14);
  CHECK_CLOSE(evaluation.tokens_per_target_pass, committed, 1e-14);
  CHECK_CLOSE(evaluation.bonus_state_probability, bonus, 1e-14);
  CHECK_CLOSE(evaluation.passes_per_token[0], verifications / committed, 1e-14);
  CHECK_CLOSE(evaluation.passes_per_token[1], verifications / committed, 1e-14);
  CHECK_CLOSE(evaluation.passes_per_token[2], 1 / committed, 1e-14);
  CHECK_CLOSE(evaluation.tokens_per_token[0], (2 * verifications + bonus) / committed, 1e-14);
  CHECK_CLOSE(evaluation.tokens_per_token[1], (2 * verifications + bonus) / committed, 1e-14);
  CHECK_CLOSE(evaluation.tokens_per_token[2], (3 * p2 + 4 * p3) / committed, 1e-14);
  CHECK_CLOSE(evaluation.cost_per_token[0],
              (verifications * 0.15 + bonus * (0.3 - 0.15)) / committed, 1e-14);
  CHECK_CLOSE(evaluation.cost_per_token[1],
              (verifications * 1.4 + bonus * (2.0 - 1.4)) / committed, 1e-14);
  CHECK_CLOSE(evaluation.cost_per_token[2], (p2 * 12.5 + p3 * 14) / committed, 1e-14);
}

// The same chain with early stopping at level 0 (continue rate r, bottom acceptance a): G = 0
// w.p. 1 - r, G = 1 w.p. r, one pass either way; level 1's outputs have rate a r, its pass costs
// E[c_1(G + 1)] and, in the bonus state, delta_1 = E[c_1(G + 2) - c_1(G + 1)] more (G = 0: the
// pass over the pending tokens alone, 1 + b of them); level 0's delta stays c_0(3) - c_0(2).
TEST(three_levels_hand_derivation_with_early_stopping) {
  const double a = 0.6, r = 0.7, b = 0.8, ar = a * r;
  const CostTable costs = {{0.1, 0.15, 0.3, 9}, {1.0, 1.4, 2.0, 9}, {10, 11, 12.5, 14}};
  const AcceptanceMatrix acceptance = {{1, 0.35, 0.5}, {0, 1, b}, {0, 0, 1}};
  hierspec::EarlyStopping early_stopping;
  early_stopping.continue_rates = {r, 1, 1};
  early_stopping.acceptance = {{1, a, 0.5}, {0, 1, b}, {0, 0, 1}};
  const double verifications = 2 - ar;
  const double p2 = ar + (1 - ar) * (1 - ar), p3 = ar * (1 - ar);
  const double committed = p2 * (1 + b + b * b) + p3 * (1 + b + b * b + b * b * b);
  const double bonus = p2 * b * b + p3 * b * b * b;  // pi = E[b^e]
  const double level1_pass = (1 - r) * 1.0 + r * 1.4;
  const double level1_delta = (1 - r) * (1.4 - 1.0) + r * (2.0 - 1.4);
  const double extra = (0.3 - 0.15) + level1_delta;  // D = delta_0 + delta_1
  const double cost =
      p2 * 12.5 + p3 * 14 + verifications * (level1_pass + 0.15) + bonus * extra;
  const hierspec::Evaluation evaluation =
      hierspec::evaluate(costs, acceptance, {0, 1, 2}, {1, 2}, early_stopping);
  CHECK_CLOSE(evaluation.latency, cost / committed, 1e-14);
  CHECK_CLOSE(evaluation.bonus_state_probability, bonus, 1e-14);
  CHECK_CLOSE(evaluation.tokens_per_token[0], (2 * verifications + bonus) / committed, 1e-14);
  CHECK_CLOSE(evaluation.tokens_per_token[1], ((1 + r) * verifications + bonus) / committed,
              1e-14);
  CHECK_CLOSE(evaluation.cost_per_token[1],
              (verifications * level1_pass + bonus * level1_delta) / committed, 1e-14);
}

// Per-level costs add up to the latency; a level's passes times its pass cost is its cost
// when the pass length is fixed.
TEST(per_level_counts_are_consistent) {
  std::mt19937_64 generator(2);
  for (int trial = 0; trial < 100; ++trial) {
    const int num_models = uniform_int(generator, 2, 6);
    std::vector<int> chain, draft_lengths;
    test_instances::random_chain(generator, num_models, uniform_int(generator, 1, num_models - 1),
                                 8, chain, draft_lengths);
    const AcceptanceMatrix acceptance = random_acceptance(generator, num_models);
    const std::vector<double> cost_per_pass = {0.1, 0.5, 1.0, 2.0, 4.0, 9.0};
    const std::vector<double> costs(cost_per_pass.begin(), cost_per_pass.begin() + num_models);
    const hierspec::Evaluation evaluation =
        hierspec::evaluate(costs, acceptance, chain, draft_lengths);
    double total = 0.0;
    for (std::size_t level = 0; level < chain.size(); ++level) {
      total += evaluation.cost_per_token[level];
      CHECK_CLOSE(evaluation.cost_per_token[level],
                  evaluation.passes_per_token[level] * costs[chain[level]], 1e-12);
    }
    CHECK_CLOSE(total, evaluation.latency, 1e-12);
    const std::size_t top = chain.size() - 1;
    CHECK_CLOSE(evaluation.passes_per_token[top] * evaluation.tokens_per_target_pass, 1.0, 1e-12);
    // level 0 processes T_0 + 1 tokens in T_0 passes per call, plus one token per cycle in
    // the bonus state (K >= 2)
    const double bonus = evaluation.bonus_state_probability * evaluation.passes_per_token[top];
    CHECK(top >= 2 || evaluation.bonus_state_probability == 0.0);
    CHECK_CLOSE((evaluation.tokens_per_token[0] - bonus) * draft_lengths[0],
                evaluation.passes_per_token[0] * (draft_lengths[0] + 1), 1e-12);
  }
}

// theory §2: the sliding-window renewal equals the direct convolution.
TEST(geometric_renewal_equals_direct_convolution) {
  std::mt19937_64 generator(3);
  std::vector<double> fast;
  for (int trial = 0; trial < 300; ++trial) {
    const int batch = uniform_int(generator, 1, 40);
    const double rate = trial % 7 == 0 ? 1.0 : trial % 7 == 1 ? 0.0 : uniform(generator, 0, 1);
    const int s_max = uniform_int(generator, 0, 300);
    const std::vector<double> direct =
        hierspec::detail::renewal_density(hierspec::detail::output_law(rate, batch), s_max);
    hierspec::detail::renewal_density_geometric(rate, batch, s_max, fast);
    for (int s = 0; s <= s_max; ++s) CHECK_CLOSE(fast[s], direct[s], 1e-12);
  }
}

// theory §3: the end-point law is a probability law and Wald's identity holds:
// E[e] = E[N] E[O].
TEST(end_point_law_and_wald_identity) {
  std::mt19937_64 generator(4);
  for (int trial = 0; trial < 300; ++trial) {
    const int batch = uniform_int(generator, 1, 20);
    const int threshold = uniform_int(generator, 1, 40);
    const double rate = trial % 5 == 0 ? 1.0 : uniform(generator, 0, 1);
    const std::vector<double> law = hierspec::detail::output_law(rate, batch);
    const std::vector<double> density = hierspec::detail::renewal_density(law, threshold);
    const std::vector<double> end = hierspec::detail::end_point_law(density, law, threshold);
    double total = 0.0, mean_end = 0.0, verifications = 0.0, mean_output = 0.0;
    for (std::size_t k = 0; k < end.size(); ++k) {
      total += end[k];
      mean_end += end[k] * (threshold + 1 + static_cast<double>(k));
    }
    for (int s = 0; s <= threshold; ++s) verifications += density[s];
    for (int output = 1; output <= batch + 1; ++output) mean_output += output * law[output];
    CHECK_CLOSE(total, 1.0, 1e-12);
    CHECK_CLOSE(mean_end, verifications * mean_output, 1e-11);
    const double expected_output =
        rate == 1.0 ? batch + 1.0 : (1 - std::pow(rate, batch + 1)) / (1 - rate);
    CHECK_CLOSE(mean_output, expected_output, 1e-12);
  }
}

int main() { return check::run_all(); }
