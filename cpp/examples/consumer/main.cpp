// Plans a hierarchy for three models with the installed hierspec library and prints it.
#include <hierspec/hierspec.hpp>

#include <cstdio>

int main() {
  // Constant cost per forward pass (ms): a tiny drafter, a mid-size draft, the target.
  const std::vector<double> cost_per_pass = {1.0, 8.0, 40.0};
  const hierspec::AcceptanceMatrix acceptance = {
      {1.0, 0.7, 0.55},
      {0.0, 1.0, 0.85},
      {0.0, 0.0, 1.0},
  };
  const hierspec::PlanResult result =
      hierspec::plan(hierspec::expand_constant_costs(
                         cost_per_pass, hierspec::plan_columns_needed(3, 8)),
                     acceptance, /*max_draft_length=*/8);
  std::printf("chain:");
  for (int model : result.best.chain) std::printf(" %d", model);
  std::printf("  draft lengths:");
  for (int size : result.best.draft_lengths) std::printf(" %d", size);
  std::printf("  latency %.4f ms/token, speedup %.3fx\n", result.best.latency,
              result.best.speedup);
  const double check = hierspec::expected_latency(
      hierspec::expand_constant_costs(cost_per_pass, 64), acceptance, result.best.chain,
      result.best.draft_lengths);
  return (check > 0.999999 * result.best.latency && check < 1.000001 * result.best.latency) ? 0 : 1;
}
