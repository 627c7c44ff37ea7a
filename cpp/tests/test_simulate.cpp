// The simulator (token by token) against the evaluator (docs/theory.md §7).
#include <random>

#include "check.hpp"
#include "hierspec/latency.hpp"
#include "hierspec/simulate.hpp"
#include "random_instances.hpp"

using hierspec::AcceptanceMatrix;
using hierspec::CostTable;
using test_instances::uniform_int;

namespace {

// Random chains with `num_levels` levels below the target; the latency and every level's
// passes per token agree within `tolerance` (relative).
void check_agreement(int num_levels, std::uint64_t seed, double tolerance,
                     bool early_stopping = false) {
  std::mt19937_64 generator(seed);
  for (int trial = 0; trial < 6; ++trial) {
    const int num_models = uniform_int(generator, num_levels + 1, num_levels + 3);
    std::vector<int> chain, draft_lengths;
    test_instances::random_chain(generator, num_models, num_levels, 8, chain, draft_lengths);
    AcceptanceMatrix acceptance = test_instances::random_acceptance(generator, num_models);
    for (auto& row : acceptance) {  // keep rates in (0.2, 0.95) so runs are not degenerate
      for (double& rate : row) rate = 0.2 + 0.75 * rate;
    }
    const CostTable costs = test_instances::random_costs(generator, num_models, 17);
    hierspec::EarlyStopping rates;
    if (early_stopping) {
      rates = test_instances::random_early_stopping(generator, acceptance);
      rates.continue_rates[chain[0]] = test_instances::uniform(generator, 0.3, 0.95);
    }
    const hierspec::Evaluation expected =
        hierspec::evaluate(costs, acceptance, chain, draft_lengths, rates);
    const hierspec::SimulationResult simulated = hierspec::simulate(
        costs, acceptance, chain, draft_lengths, 400000, seed + trial, rates);
    CHECK_CLOSE(simulated.latency, expected.latency, tolerance);
    CHECK_CLOSE(simulated.tokens_per_target_pass, expected.tokens_per_target_pass, tolerance);
    for (std::size_t level = 0; level < chain.size(); ++level) {
      CHECK_CLOSE(simulated.passes_per_token[level], expected.passes_per_token[level], tolerance);
      CHECK_CLOSE(simulated.tokens_per_token[level], expected.tokens_per_token[level], tolerance);
      CHECK_CLOSE(simulated.cost_per_token[level] / expected.latency,
                  expected.cost_per_token[level] / expected.latency, tolerance);
    }
  }
}

}  // namespace

TEST(simulator_agrees_with_evaluator_three_levels) { check_agreement(2, 10, 0.01); }
TEST(simulator_agrees_with_evaluator_four_levels) { check_agreement(3, 20, 0.01); }
TEST(simulator_agrees_with_evaluator_two_levels) { check_agreement(1, 30, 0.01); }
// The bottom level stops early (policy rule 1): a random bottom batch.
TEST(simulator_agrees_with_evaluator_early_stopping_two_levels) {
  check_agreement(1, 40, 0.01, true);
}
TEST(simulator_agrees_with_evaluator_early_stopping_three_levels) {
  check_agreement(2, 50, 0.01, true);
}
TEST(simulator_agrees_with_evaluator_early_stopping_four_levels) {
  check_agreement(3, 60, 0.01, true);
}

// Continue rates of 1 are no early stopping: the very same run, draw for draw.
TEST(continue_rate_one_is_no_early_stopping) {
  const std::vector<double> costs = {0.1, 1.0, 4.0};
  const AcceptanceMatrix acceptance = {{1, .7, .5}, {0, 1, .8}, {0, 0, 1}};
  const auto without = hierspec::simulate(costs, acceptance, {0, 1, 2}, {3, 4}, 5000, 3);
  const auto with = hierspec::simulate(costs, acceptance, {0, 1, 2}, {3, 4}, 5000, 3, {{1, 1, 1}, acceptance});
  CHECK(without.latency == with.latency && without.num_tokens == with.num_tokens);
}

// a = 1 everywhere: the process is deterministic and the simulation is exact.
TEST(deterministic_process_is_exact) {
  std::mt19937_64 generator(5);
  const CostTable costs = test_instances::random_costs(generator, 4, 20);
  const AcceptanceMatrix acceptance = {{1, 1, 1, 1}, {0, 1, 1, 1}, {0, 0, 1, 1}, {0, 0, 0, 1}};
  const std::vector<int> chain = {0, 1, 3}, draft_lengths = {3, 5};
  const hierspec::Evaluation expected =
      hierspec::evaluate(costs, acceptance, chain, draft_lengths);
  const hierspec::SimulationResult simulated =
      hierspec::simulate(costs, acceptance, chain, draft_lengths, 9 * 1000, 0);
  // Level 1 verifies 3 tokens, gets 4 per pass, stops at s = 8 >= 5, hands up 8; the target's
  // pass of 9 tokens commits 9, and every cycle after the first is in the bonus state.
  CHECK(simulated.num_tokens == 9000 && simulated.num_target_passes == 9000 / 9);
  CHECK_CLOSE(simulated.passes_per_token[1], 2.0 / 9, 1e-14);
  CHECK_CLOSE(expected.tokens_per_target_pass, 9.0, 1e-14);
  CHECK_CLOSE(expected.bonus_state_probability, 1.0, 1e-14);
  // The first cycle is not in the bonus state: the simulation is short of 1 token and D once.
  const double bonus_extra = (costs[0][2] - costs[0][1]) + (costs[1][4] - costs[1][3]);
  CHECK_CLOSE(simulated.latency, expected.latency - bonus_extra / 9000, 1e-12);
  CHECK_CLOSE(simulated.tokens_per_token[0], expected.tokens_per_token[0] - 1.0 / 9000, 1e-12);
}

TEST(same_seed_same_result) {
  const std::vector<double> costs = {0.1, 1.0, 5.0};
  const AcceptanceMatrix acceptance = {{1, .6, .5}, {0, 1, .8}, {0, 0, 1}};
  const auto first = hierspec::simulate(costs, acceptance, {0, 1, 2}, {3, 4}, 5000, 42);
  const auto second = hierspec::simulate(costs, acceptance, {0, 1, 2}, {3, 4}, 5000, 42);
  const auto other = hierspec::simulate(costs, acceptance, {0, 1, 2}, {3, 4}, 5000, 43);
  CHECK(first.latency == second.latency && first.num_tokens == second.num_tokens);
  CHECK(first.passes_per_token == second.passes_per_token);
  CHECK(first.latency != other.latency);
}

int main() { return check::run_all(); }
