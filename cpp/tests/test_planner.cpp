// The dynamic-programming planner against exhaustive enumeration (docs/theory.md §6).
#include <cmath>
#include <random>

#include "check.hpp"
#include "hierspec/latency.hpp"
#include "hierspec/planner.hpp"
#include "random_instances.hpp"

using hierspec::AcceptanceMatrix;
using hierspec::CostTable;
using hierspec::PlanResult;
using test_instances::uniform_int;

namespace {

// Same optimum, same optimum per model below the target, same best single draft, and every
// reported latency is what evaluate() gives for the reported configuration.
void check_same_result(const PlanResult& planned, const PlanResult& brute,
                       const CostTable& costs, const AcceptanceMatrix& acceptance,
                       const hierspec::EarlyStopping& rates = {}) {
  CHECK_CLOSE(planned.best.latency, brute.best.latency, 1e-10);
  CHECK_CLOSE(planned.target_latency, brute.target_latency, 0.0);
  CHECK(planned.best_single_draft.has_value() == brute.best_single_draft.has_value());
  if (planned.best_single_draft && brute.best_single_draft) {
    CHECK_CLOSE(planned.best_single_draft->latency, brute.best_single_draft->latency, 1e-10);
  }
  CHECK(planned.alternatives.size() == brute.alternatives.size());
  for (std::size_t k = 0; k < planned.alternatives.size() && k < brute.alternatives.size(); ++k) {
    CHECK_CLOSE(planned.alternatives[k].latency, brute.alternatives[k].latency, 1e-10);
  }
  for (std::size_t k = 0; k < planned.alternatives.size(); ++k) {
    const hierspec::PlanEntry& entry = planned.alternatives[k];
    CHECK_CLOSE(
        hierspec::expected_latency(costs, acceptance, entry.chain, entry.draft_lengths, rates),
        entry.latency, 1e-10);
    CHECK(k == 0 || planned.alternatives[k - 1].latency <= entry.latency);
    CHECK_CLOSE(entry.speedup, planned.target_latency / entry.latency, 1e-14);
  }
  CHECK(planned.best.chain == planned.alternatives[0].chain);
  CHECK(planned.limited_by_cost_table == brute.limited_by_cost_table);
}

// Plans, enumerates and checks that both agree (check_same_result); returns the plan.
PlanResult plan_equals_brute_force(const CostTable& costs, const AcceptanceMatrix& acceptance,
                                   int max_draft_length,
                                   const hierspec::EarlyStopping& rates = {}) {
  const PlanResult planned = hierspec::plan(costs, acceptance, max_draft_length, rates);
  const PlanResult brute = hierspec::brute_force_plan(costs, acceptance, max_draft_length, rates);
  check_same_result(planned, brute, costs, acceptance, rates);
  return planned;
}

// Costs whose one-token steps differ wildly (every entry uniform in [0.1, 6] times a per-model
// scale growing 4-12x per model) and acceptance in [0.7, 1]: the bonus-state deltas
// c(G + 2) - c(G + 1) range from strongly negative to large.
void spread_instance(std::mt19937_64& generator, int num_models, int columns, CostTable& costs,
                     AcceptanceMatrix& acceptance) {
  costs.assign(num_models, std::vector<double>(columns));
  double scale = 1.0;
  for (auto& row : costs) {
    for (double& entry : row) entry = scale * test_instances::uniform(generator, 0.1, 6.0);
    scale *= test_instances::uniform(generator, 4.0, 12.0);
  }
  acceptance = test_instances::random_acceptance(generator, num_models);
  for (auto& row : acceptance) {
    for (double& rate : row) rate = 0.7 + 0.3 * rate;
  }
}

}  // namespace

TEST(planner_equals_brute_force_on_random_instances) {
  std::mt19937_64 generator(7);
  for (int trial = 0; trial < 150; ++trial) {
    const int num_models = uniform_int(generator, 1, 5);
    const int max_draft_length = uniform_int(generator, 1, num_models >= 5 ? 4 : 5);
    const CostTable costs = test_instances::random_costs(
        generator, num_models, hierspec::plan_columns_needed(num_models, max_draft_length));
    const AcceptanceMatrix acceptance = test_instances::random_acceptance(generator, num_models);
    const PlanResult planned =
        plan_equals_brute_force(costs, acceptance, max_draft_length);
    CHECK(!planned.limited_by_cost_table);
  }
}

// Drafting that pays: cheap drafts, high acceptance, so deep chains win and are compared.
TEST(planner_equals_brute_force_when_deep_chains_win) {
  std::mt19937_64 generator(8);
  int deep_wins = 0;
  for (int trial = 0; trial < 60; ++trial) {
    const int num_models = 5;
    const int max_draft_length = 4;
    CostTable costs = test_instances::random_costs(generator, num_models, 9);
    AcceptanceMatrix acceptance = test_instances::random_acceptance(generator, num_models);
    for (int row = 0; row < num_models; ++row) {
      for (int column = row + 1; column < num_models; ++column) {
        const double neighbour = column - row == 1 ? 1.0 : 0.6;
        acceptance[row][column] = 0.5 + 0.5 * acceptance[row][column] * neighbour;
      }
    }
    const PlanResult planned =
        plan_equals_brute_force(costs, acceptance, max_draft_length);
    if (planned.best.chain.size() >= 3) ++deep_wins;
  }
  CHECK(deep_wins >= 10);  // the instances do exercise the last step of the DP
}

// The bottom level may stop early (random continue rates): a model is searched both as a
// bottom with a random batch and as an intermediate level that never stops.
TEST(planner_equals_brute_force_with_early_stopping) {
  std::mt19937_64 generator(12);
  int stopping_bottom_wins = 0;
  for (int trial = 0; trial < 150; ++trial) {
    const int num_models = uniform_int(generator, 2, 5);
    const int max_draft_length = uniform_int(generator, 1, num_models >= 5 ? 4 : 5);
    const bool short_table = uniform_int(generator, 0, 4) == 0;
    const int needed = hierspec::plan_columns_needed(num_models, max_draft_length);
    const CostTable costs = test_instances::random_costs(
        generator, num_models, short_table ? uniform_int(generator, 1, needed) : needed);
    AcceptanceMatrix acceptance = test_instances::random_acceptance(generator, num_models);
    if (trial % 2 == 0) {  // drafting that pays, so deep chains are compared too
      for (auto& row : acceptance) {
        for (double& rate : row) rate = 0.5 + 0.5 * rate;
      }
    }
    const hierspec::EarlyStopping rates =
        test_instances::random_early_stopping(generator, acceptance);
    const PlanResult planned =
        plan_equals_brute_force(costs, acceptance, max_draft_length, rates);
    if (planned.best.chain.size() >= 2 && !rates.is_plain_bottom(acceptance, planned.best.chain[0])) {
      ++stopping_bottom_wins;
    }
  }
  CHECK(stopping_bottom_wins >= 10);
}

// Cost tables where one more token in a pass costs very different amounts (the bonus state's
// deltas c(G + 2) - c(G + 1) and c(3) - c(2) range from strongly negative to large): a node's
// cheapest sub-chain is then often not the best one for the chain above it, and the planner must
// keep the lower envelope of (Cost, Dsum) per node (docs/theory.md §6) to match brute force.
TEST(planner_equals_brute_force_when_bonus_extra_costs_differ) {
  std::mt19937_64 generator(12);
  int deep_wins = 0;
  for (int trial = 0; trial < 80; ++trial) {
    const int num_models = uniform_int(generator, 4, 5);
    const int max_draft_length = uniform_int(generator, 2, num_models == 5 ? 4 : 5);
    CostTable costs;
    AcceptanceMatrix acceptance;
    spread_instance(generator, num_models,
                    hierspec::plan_columns_needed(num_models, max_draft_length), costs, acceptance);
    const PlanResult planned =
        plan_equals_brute_force(costs, acceptance, max_draft_length);
    if (planned.best.chain.size() >= 4) ++deep_wins;
  }
  CHECK(deep_wins >= 5);  // sub-chains of 2+ levels below level K-1 are compared
}

// Both at once: a bottom that may stop early (one line per bottom node, expected pass costs over
// its random batch, delta_1 = E[c(G + 2) - c(G + 1)]) below nodes whose envelopes hold several
// lines (very different bonus-state deltas).
TEST(planner_equals_brute_force_with_early_stopping_when_bonus_extra_costs_differ) {
  std::mt19937_64 generator(13);
  int deep_stopping_wins = 0;
  for (int trial = 0; trial < 80; ++trial) {
    const int num_models = uniform_int(generator, 4, 5);
    const int max_draft_length = uniform_int(generator, 2, num_models == 5 ? 4 : 5);
    CostTable costs;
    AcceptanceMatrix acceptance;
    spread_instance(generator, num_models,
                    hierspec::plan_columns_needed(num_models, max_draft_length), costs, acceptance);
    const hierspec::EarlyStopping rates =
        test_instances::random_early_stopping(generator, acceptance);
    const PlanResult planned =
        plan_equals_brute_force(costs, acceptance, max_draft_length, rates);
    if (planned.best.chain.size() >= 3 &&
        !rates.is_plain_bottom(acceptance, planned.best.chain[0])) {
      ++deep_stopping_wins;
    }
  }
  CHECK(deep_stopping_wins >= 5);  // a stopping bottom under a bonus-state chain is compared
}

// A table shorter than the search needs: configurations that do not fit are skipped by both.
TEST(planner_equals_brute_force_with_short_tables) {
  std::mt19937_64 generator(9);
  for (int trial = 0; trial < 80; ++trial) {
    const int num_models = uniform_int(generator, 2, 5);
    const int max_draft_length = uniform_int(generator, 2, 4);
    const int needed = hierspec::plan_columns_needed(num_models, max_draft_length);
    const int num_columns = uniform_int(generator, 1, needed - 1);
    const CostTable costs = test_instances::random_costs(generator, num_models, num_columns);
    const AcceptanceMatrix acceptance = test_instances::random_acceptance(generator, num_models);
    const PlanResult planned =
        plan_equals_brute_force(costs, acceptance, max_draft_length);
    CHECK(planned.limited_by_cost_table);
    CHECK(planned.cost_table_columns == num_columns && planned.columns_needed == needed);
    for (const hierspec::PlanEntry& entry : planned.alternatives) {
      CHECK(hierspec::chain_columns_needed(entry.draft_lengths) <= num_columns);
    }
  }
}

// Larger T than brute force can reach: the DP's reported latency is the evaluator's, and no
// single-level change of one draft length (a local search) improves on it.
TEST(planner_is_locally_optimal_for_large_batches) {
  std::mt19937_64 generator(11);
  for (int trial = 0; trial < 20; ++trial) {
    const int num_models = 6, max_draft_length = 32;
    const CostTable costs = test_instances::random_costs(
        generator, num_models, hierspec::plan_columns_needed(num_models, max_draft_length));
    AcceptanceMatrix acceptance = test_instances::random_acceptance(generator, num_models);
    for (auto& row : acceptance) {
      for (double& rate : row) rate = 0.6 + 0.4 * rate;
    }
    const PlanResult planned = hierspec::plan(costs, acceptance, max_draft_length);
    const hierspec::PlanEntry& best = planned.best;
    CHECK_CLOSE(hierspec::expected_latency(costs, acceptance, best.chain, best.draft_lengths),
                best.latency, 1e-10);
    std::vector<int> sizes = best.draft_lengths;
    for (std::size_t level = 0; level < sizes.size(); ++level) {
      for (int size = 1; size <= max_draft_length; ++size) {
        sizes[level] = size;
        CHECK(hierspec::expected_latency(costs, acceptance, best.chain, sizes) >=
              best.latency * (1 - 1e-12));
      }
      sizes[level] = best.draft_lengths[level];
    }
  }
}

TEST(constant_costs_plan_matches_expanded_table) {
  const std::vector<double> cost_per_pass = {0.05, 0.4, 1.5, 6.0};
  const AcceptanceMatrix acceptance = {
      {1, .75, .6, .5}, {0, 1, .8, .65}, {0, 0, 1, .85}, {0, 0, 0, 1}};
  const PlanResult from_constant = hierspec::plan(cost_per_pass, acceptance, 16);
  const PlanResult from_table = hierspec::plan(
      hierspec::expand_constant_costs(cost_per_pass, 40), acceptance, 16);
  CHECK(from_constant.best.chain == from_table.best.chain);
  CHECK(from_constant.best.draft_lengths == from_table.best.draft_lengths);
  CHECK(!from_constant.limited_by_cost_table && !from_table.limited_by_cost_table);
  CHECK(from_constant.best.chain.size() >= 3);  // a hierarchy pays here
  CHECK(from_constant.best.speedup > from_constant.best_single_draft->speedup);
}

TEST(single_model_and_single_column_edge_cases) {
  const PlanResult alone = hierspec::plan(std::vector<double>{3.0}, {{1.0}}, 8);
  CHECK(alone.best.chain == std::vector<int>{0} && alone.best.latency == 3.0);
  CHECK(!alone.best_single_draft.has_value() && alone.alternatives.size() == 1);
  CHECK(std::isnan(alone.best.speedup_vs_single_draft));
  const PlanResult one_column = hierspec::plan(CostTable{{0.1}, {1.0}, {5.0}},
                                               {{1, .9, .9}, {0, 1, .9}, {0, 0, 1}}, 4);
  CHECK(one_column.best.chain == std::vector<int>{2} && one_column.limited_by_cost_table);
  CHECK(!one_column.best_single_draft.has_value());
}

int main() { return check::run_all(); }
