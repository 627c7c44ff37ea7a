// The latency-optimal hierarchy: chain and draft lengths over all subsets of the candidates.
//
// Generalized shortest path over nodes (model, T) (docs/theory.md §6). A sub-chain topped by
// model i handing up exactly T tokens (policy rule 3 for levels below K-1) has an expected call
// cost Cost and Dsum, the extra cost of a cycle in the bonus state (policy rule 4):
//   level 0:        Cost = c_i(2) + (T - 1) c_i(1),           Dsum = c_i(3) - c_i(2)
//   over (p, G):    Cost = E[N](a_pi, G, T) (c_i(G + 1) + Cost_p),
//                   Dsum = c_i(G + 2) - c_i(G + 1) + Dsum_p
// With early stopping (EarlyStopping) a level 0 that may stop early hands up a random batch
// G' <= G: it is a separate bottom node (p, G) with one line, Cost = c_p(2) + (E[min(G' + 1, G)]
// - 1) c_p(1) and Dsum = c_p(3) - c_p(2), and a model above it pays E[c_i(G' + 1)] per
// verification, delta = E[c_i(G' + 2) - c_i(G' + 1)], at the rate a_b rho of docs/theory.md §11.
// The chain above sees a sub-chain only through Cost + lambda Dsum with lambda in [0, 1], so each
// node keeps the lower envelope of those lines (one line for flat cost curves), and the last
// step (p, G) -> (j, T) -> target evaluates every line of (p, G) with the exact law of level
// K-1's random hand-up L: latency = (E[c_K(L+1)] + E[N](c_j(G+1) + Cost_p)
// + pi (c_j(G+2) - c_j(G+1) + Dsum_p)) / E[O_K], pi = E[a_K^L]. Exact for the policy of
// docs/policy.md; O(M^2 T^2 h log h) time with h the largest envelope (h = 1 for flat tables),
// O(M T h) memory. Before the bonus state (h = 1 always) it took about 0.4 s for M = 3,
// T = kMaxDraftLength = 4096 on one CPU core and 8 s for M = 8; not re-measured since.
// Interruptible through `should_stop` (hierspec/cancel.hpp).
//
// Cost tables shorter than plan_columns_needed(M, max_draft_length): configurations that need a
// pass longer than the table covers are skipped (never extrapolated), and the result says so
// (limited_by_cost_table). A table of width >= plan_columns_needed(M, max_draft_length) never
// limits the search.
#pragma once

#include <optional>
#include <vector>

#include "hierspec/cancel.hpp"
#include "hierspec/inputs.hpp"

namespace hierspec {

/// One configuration with its predicted latency.
struct PlanEntry {
  /// Model indices, increasing, ending at the target.
  std::vector<int> chain;
  /// [T_0, ..., T_{K-1}], one per level below the target.
  std::vector<int> draft_lengths;
  /// Expected cost per committed token (as evaluate computes it).
  double latency = 0.0;
  /// target_latency / latency.
  double speedup = 0.0;
  /// best single-draft latency / latency; NaN when no single-draft configuration fits.
  double speedup_vs_single_draft = 0.0;
};

struct PlanResult {
  /// The latency-optimal configuration (the target alone if drafting never pays).
  PlanEntry best;
  /// c_target(1): latency of plain decoding.
  double target_latency = 0.0;
  /// The best chain [i, target] over every draft i and T_0; empty when none fits
  /// (one model only, or a cost table with a single column).
  std::optional<PlanEntry> best_single_draft;
  /// Sorted by latency (ties: shorter chain first): for each model directly below the target
  /// the best configuration with that model there, for each draft the best single-draft
  /// configuration (when different), and the target alone. alternatives[0] is `best`.
  std::vector<PlanEntry> alternatives;
  /// The search bound on every draft length.
  int max_draft_length = 0;
  /// N: pass lengths 1..N covered by the cost table.
  int cost_table_columns = 0;
  /// plan_columns_needed(M, max_draft_length): the table width that limits nothing.
  int columns_needed = 0;
  /// True when cost_table_columns < columns_needed, i.e. some configurations with draft lengths
  /// <= max_draft_length were skipped because they need passes the table does not cover.
  bool limited_by_cost_table = false;
};

/// Exact optimum by dynamic programming. costs [M][N], acceptance [M][M],
/// max_draft_length in [1, kMaxDraftLength], early_stopping: see EarlyStopping (a model that
/// behaves differently as level 0 is searched both as a bottom with its random batch and bottom
/// acceptance and, above another model, as an intermediate level; about twice the work for the
/// pairs it drafts for).
/// Throws std::invalid_argument for invalid input and Cancelled when `should_stop` (polled about
/// every 2^16 inner iterations) answers true.
PlanResult plan(const CostTable& costs, const AcceptanceMatrix& acceptance, int max_draft_length,
                const EarlyStopping& early_stopping = {}, const StopRequested& should_stop = {});

/// Same with a constant cost per forward pass (cost_per_pass [M]); never limited.
PlanResult plan(const std::vector<double>& cost_per_pass, const AcceptanceMatrix& acceptance,
                int max_draft_length, const EarlyStopping& early_stopping = {},
                const StopRequested& should_stop = {});

/// The same result by exhaustive enumeration of every chain and draft-length vector, each
/// evaluated with evaluate(): O(sum over chains of max_draft_length^K) evaluations. For tests;
/// interruptible like plan.
PlanResult brute_force_plan(const CostTable& costs, const AcceptanceMatrix& acceptance,
                            int max_draft_length, const EarlyStopping& early_stopping = {},
                            const StopRequested& should_stop = {});
PlanResult brute_force_plan(const std::vector<double>& cost_per_pass,
                            const AcceptanceMatrix& acceptance, int max_draft_length,
                            const EarlyStopping& early_stopping = {},
                            const StopRequested& should_stop = {});

}  // namespace hierspec
