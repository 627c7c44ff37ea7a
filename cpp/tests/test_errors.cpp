// Every invalid input throws std::invalid_argument naming the argument and the value.
#include <cmath>
#include <limits>

#include "check.hpp"
#include "hierspec/hierspec.hpp"

using hierspec::AcceptanceMatrix;
using hierspec::CostTable;

namespace {
const AcceptanceMatrix kAcceptance = {{1, .5, .5, .5}, {0, 1, .5, .5}, {0, 0, 1, .5},
                                      {0, 0, 0, 1}};
const std::vector<double> kConstant = {1, 2, 3, 4};
CostTable table(int columns) { return hierspec::expand_constant_costs(kConstant, columns); }
const double kNaN = std::numeric_limits<double>::quiet_NaN();
}  // namespace

TEST(early_stopping_errors) {
  CHECK_THROWS_WITH(hierspec::evaluate(table(9), kAcceptance, {0, 3}, {2}, {{1, 1, 1}, {}}),
                    "early_stopping.continue_rates has 3 entries but acceptance has 4 models");
  CHECK_THROWS_WITH(hierspec::plan(table(9), kAcceptance, 4, {{1, 1.5, 1, 1}, {}}),
                    "early_stopping.continue_rates[1] = 1.5 is outside [0, 1]");
  CHECK_THROWS_WITH(
      hierspec::simulate(table(9), kAcceptance, {0, 3}, {2}, 10, 0, {{kNaN, 1, 1, 1}, {}}),
      "early_stopping.continue_rates[0] = nan is outside [0, 1]");
  AcceptanceMatrix bad = kAcceptance;
  bad[1][3] = 2.0;
  CHECK_THROWS_WITH(hierspec::brute_force_plan(kConstant, kAcceptance, 2, {{}, bad}),
                    "early_stopping.acceptance[1][3] = 2 is outside [0, 1]");
  CHECK_THROWS_WITH(
      hierspec::evaluate(table(9), kAcceptance, {0, 3}, {2}, {{}, {{1, .5}, {0, 1}}}),
      "early_stopping.acceptance has 2 rows; it must be [M, M] with M = 4");
}

TEST(acceptance_errors) {
  AcceptanceMatrix bad = kAcceptance;
  bad[0][2] = 1.5;
  CHECK_THROWS_WITH(hierspec::evaluate(table(9), bad, {0, 3}, {2}),
                    "acceptance[0][2] = 1.5 is outside [0, 1]");
  bad[0][2] = -0.25;
  CHECK_THROWS_WITH(hierspec::plan(table(9), bad, 4), "acceptance[0][2] = -0.25 is outside [0, 1]");
  bad[0][2] = kNaN;
  CHECK_THROWS_WITH(hierspec::simulate(table(9), bad, {0, 3}, {2}, 10, 0),
                    "acceptance[0][2] = nan is outside [0, 1]");
  CHECK_THROWS_WITH(hierspec::evaluate(table(9), {{1, .5}, {0}}, {1}, {}),
                    "acceptance[1] has 1 entries");
  CHECK_THROWS_WITH(hierspec::plan(kConstant, {}, 4), "acceptance has 0 rows");
  // entries on and below the diagonal are not used
  AcceptanceMatrix lower = kAcceptance;
  lower[3][0] = kNaN;
  lower[1][1] = 7;
  CHECK(hierspec::expected_latency(kConstant, lower, {0, 3}, {2}) ==
        hierspec::expected_latency(kConstant, kAcceptance, {0, 3}, {2}));
}

TEST(chain_errors) {
  CHECK_THROWS_WITH(hierspec::evaluate(table(9), kAcceptance, {2, 1, 3}, {1, 1}),
                    "chain = [2, 1, 3] is not strictly increasing");
  CHECK_THROWS_WITH(hierspec::evaluate(table(9), kAcceptance, {1, 1, 3}, {1, 1}),
                    "chain = [1, 1, 3] is not strictly increasing");
  CHECK_THROWS_WITH(hierspec::evaluate(table(9), kAcceptance, {0, 2}, {1}),
                    "chain must end at the target (model 3), got 2");
  CHECK_THROWS_WITH(hierspec::evaluate(table(9), kAcceptance, {-1, 3}, {1}),
                    "chain[0] = -1 is not a model index in [0, 3]");
  CHECK_THROWS_WITH(hierspec::evaluate(table(9), kAcceptance, {0, 4}, {1}),
                    "chain[1] = 4 is not a model index in [0, 3]");
  CHECK_THROWS_WITH(hierspec::evaluate(table(9), kAcceptance, {}, {}), "chain = [] is empty");
}

TEST(draft_length_errors) {
  CHECK_THROWS_WITH(hierspec::evaluate(table(9), kAcceptance, {0, 1, 3}, {2, 0}),
                    "draft_lengths[1] = 0 must be >= 1");
  CHECK_THROWS_WITH(hierspec::evaluate(kConstant, kAcceptance, {0, 1, 3}, {-3, 2}),
                    "draft_lengths[0] = -3 must be >= 1");
  CHECK_THROWS_WITH(hierspec::evaluate(table(9), kAcceptance, {0, 1, 3}, {2}),
                    "draft_lengths has 1 entries, chain needs 2");
  CHECK_THROWS_WITH(hierspec::evaluate(table(9), kAcceptance, {3}, {2}),
                    "draft_lengths has 1 entries, chain needs 0");
  CHECK_THROWS_WITH(hierspec::plan(kConstant, kAcceptance, 0), "max_draft_length = 0 must be in");
  CHECK_THROWS_WITH(hierspec::simulate(kConstant, kAcceptance, {0, 3}, {2}, 0, 1),
                    "num_tokens = 0 must be >= 1");
}

TEST(cost_errors) {
  CostTable bad = table(9);
  bad[1][0] = -2;
  CHECK_THROWS_WITH(hierspec::evaluate(bad, kAcceptance, {0, 3}, {2}),
                    "costs[1][0] = -2 is negative");
  bad[1][0] = kNaN;
  CHECK_THROWS_WITH(hierspec::plan(bad, kAcceptance, 4), "costs[1][0] = nan is not a number");
  bad[1][0] = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH(hierspec::plan(bad, kAcceptance, 4), "costs[1][0] = inf is not finite");
  const std::vector<double> negative = {1, -0.5, 3, 4};
  CHECK_THROWS_WITH(hierspec::evaluate(negative, kAcceptance, {0, 3}, {2}),
                    "costs[1] = -0.5 is negative");
  CHECK_THROWS_WITH(hierspec::evaluate(std::vector<double>{1, 2, 3}, kAcceptance, {0, 3}, {2}),
                    "costs has 3 entries but acceptance has 4 models");
  CHECK_THROWS_WITH(hierspec::evaluate(CostTable{{1}, {2}, {3}}, kAcceptance, {3}, {}),
                    "costs has 3 rows but acceptance has 4 models");
  const CostTable ragged = {{1, 2}, {2}, {3, 4}, {4, 5}};
  CHECK_THROWS_WITH(hierspec::evaluate(ragged, kAcceptance, {3}, {}),
                    "costs[1] has 1 columns but costs[0] has 2");
  CHECK_THROWS_WITH(hierspec::evaluate(CostTable{{}, {}, {}, {}}, kAcceptance, {3}, {}),
                    "costs has 0 columns");
}

TEST(table_too_short) {
  // chain [0, 2, 3] with T = 4, 4: the target's pass may process 1 + 4 + 4 = 9 tokens.
  CHECK_THROWS_WITH(hierspec::evaluate(table(5), kAcceptance, {0, 2, 3}, {4, 4}),
                    "costs has 5 columns (passes of n = 1..5 tokens); this chain needs passes of "
                    "up to n = 9");
  CHECK_THROWS_WITH(hierspec::simulate(table(1), kAcceptance, {0, 3}, {1}, 10, 0),
                    "this chain needs passes of up to n = 2");
  CHECK(hierspec::expected_latency(table(9), kAcceptance, {0, 2, 3}, {4, 4}) > 0);
  // chain [0, 1, 2, 3] with T = 6, 1, 1: after a full acceptance by the target, level 1's first
  // verification processes its 2 pending tokens and T_0 drafts, 8 tokens (the target's pass 3).
  CHECK_THROWS_WITH(hierspec::evaluate(table(7), kAcceptance, {0, 1, 2, 3}, {6, 1, 1}),
                    "this chain needs passes of up to n = 8");
  CHECK(hierspec::expected_latency(table(1), kAcceptance, {3}, {}) == 4.0);
}

TEST(limits) {
  const int too_long = hierspec::kMaxDraftLength + 1;
  CHECK_THROWS_WITH(hierspec::plan(kConstant, kAcceptance, too_long),
                    "max_draft_length = " + std::to_string(too_long) + " must be in [1, " +
                        std::to_string(hierspec::kMaxDraftLength) + "] (MAX_DRAFT_LENGTH)");
  CHECK_THROWS_WITH(hierspec::evaluate(kConstant, kAcceptance, {0, 3}, {too_long}),
                    "draft_lengths[0] = " + std::to_string(too_long) + " exceeds MAX_DRAFT_LENGTH");
  CHECK_THROWS_WITH(hierspec::simulate(kConstant, kAcceptance, {0, 3}, {2},
                                       hierspec::kMaxSimulatedTokens + 1, 0),
                    "exceeds MAX_SIMULATED_TOKENS");
}

TEST(cancellation) {
  // A caller that asks to stop at its n-th poll: every long computation throws Cancelled, and
  // polls at a coarse interval (not once per inner iteration).
  int polls = 0;
  const hierspec::StopRequested stop_at_third = [&polls]() { return ++polls >= 3; };
  bool cancelled = false;
  try {
    hierspec::plan(kConstant, kAcceptance, hierspec::kMaxDraftLength, {}, stop_at_third);
  } catch (const hierspec::Cancelled&) {
    cancelled = true;
  }
  CHECK(cancelled && polls == 3);
  polls = 0;
  cancelled = false;
  try {
    hierspec::simulate(kConstant, kAcceptance, {0, 1, 3}, {8, 8}, hierspec::kMaxSimulatedTokens,
                       0, {}, stop_at_third);
  } catch (const hierspec::Cancelled&) {
    cancelled = true;
  }
  CHECK(cancelled && polls == 3);
  polls = 0;
  cancelled = false;
  try {
    hierspec::brute_force_plan(kConstant, kAcceptance, 64, {}, stop_at_third);
  } catch (const hierspec::Cancelled&) {
    cancelled = true;
  }
  CHECK(cancelled && polls == 3);
  // A caller that never stops changes nothing: the same plan as without one.
  polls = 0;
  const hierspec::StopRequested never = [&polls]() { return ++polls < 0; };
  const auto with = hierspec::plan(kConstant, kAcceptance, 300, {}, never);
  const auto without = hierspec::plan(kConstant, kAcceptance, 300);
  CHECK(polls > 0 && with.best.chain == without.best.chain &&
        with.best.draft_lengths == without.best.draft_lengths &&
        with.best.latency == without.best.latency);
}

int main() { return check::run_all(); }
