// Inputs shared by the evaluator, the simulator and the planner, and their validation.
//
// Terms (docs/policy.md): models 0..M-1, cheapest first, model M-1 the target. A chain is a
// strictly increasing list of model indices ending at the target; position l in the chain is
// level l. draft_lengths[l] = T_l >= 1 for every level but the target.
#pragma once

#include <cstddef>
#include <vector>

namespace hierspec {

/// costs[model][n - 1] = cost of one forward pass of `model` that processes n tokens,
/// n = 1..N. Every row has the same length N. Entries are finite and >= 0.
using CostTable = std::vector<std::vector<double>>;

/// acceptance[i][j] for i < j: probability that model j accepts one draft token of model i
/// (i.i.d. model). Shape [M][M]; entries with i >= j are not used and not checked.
using AcceptanceMatrix = std::vector<std::vector<double>>;

/// The bottom level's early stopping (policy rule 1): level 0 may stop its batch before T_0
/// tokens when its own next-token distribution says a draft is unlikely to survive. Modelled as
/// i.i.d.: at each of its draft positions level 0 drafts with probability continue_rates[m]
/// (m its model) and otherwise stops the batch there; the drafts it does hand up are accepted by
/// the level above with probability acceptance[m][j] (the drafts it was confident about), which
/// may differ from the main acceptance matrix (every draft of m, as an intermediate level).
/// Default-constructed: level 0 never stops early and the main matrix applies everywhere.
struct EarlyStopping {
  /// [M] in [0, 1], or empty for 1 everywhere (never stop early). Used for level 0 only.
  std::vector<double> continue_rates;
  /// [M][M] like the main acceptance matrix (entries above the diagonal in [0, 1]), or empty
  /// for the main matrix. Row m is used when model m is level 0.
  std::vector<std::vector<double>> acceptance;

  /// continue_rates[model], or 1 when empty.
  double continue_rate(int model) const {
    return continue_rates.empty() ? 1.0 : continue_rates[static_cast<std::size_t>(model)];
  }
  /// Acceptance by `verifier` of the drafts of `drafter` as level 0 (the main matrix's entry
  /// when `acceptance` is empty).
  double bottom_acceptance(const std::vector<std::vector<double>>& main, int drafter,
                           int verifier) const {
    const auto& matrix = acceptance.empty() ? main : acceptance;
    return matrix[static_cast<std::size_t>(drafter)][static_cast<std::size_t>(verifier)];
  }
  /// True when `drafter` behaves as level 0 exactly as it does higher up: it never stops early
  /// and its bottom acceptance row equals the main one.
  bool is_plain_bottom(const std::vector<std::vector<double>>& main, int drafter) const;
};

/// Largest draft length accepted anywhere (evaluate, simulate, plan; the engine uses the same
/// limit through hierspec._core.MAX_DRAFT_LENGTH). Sized so that the documented planner case
/// finishes in about a second: plan is O(M^2 T^2) time (docs/theory.md), about 0.4 s for
/// M = 3 candidates and T = 4096 on one 2020s CPU core; evaluate is O(K T^2), about 0.02 s per
/// level at T = 4096.
inline constexpr int kMaxDraftLength = 1 << 12;

/// Largest num_tokens accepted by simulate: about a second of simulation for short draft
/// lengths (the work per committed token grows with the draft lengths and falls with the
/// acceptance rates, so long drafts take longer; the simulation is interruptible).
inline constexpr long long kMaxSimulatedTokens = 10'000'000;

/// A table whose row m is `cost_per_pass[m]` repeated `num_columns` times (a pass costs the
/// same whatever the number of tokens it processes). Validates like a table.
/// Throws std::invalid_argument for a negative or non-finite cost or num_columns < 1.
CostTable expand_constant_costs(const std::vector<double>& cost_per_pass, int num_columns);

/// Throws std::invalid_argument unless `acceptance` is a non-empty square matrix whose entries
/// above the diagonal are in [0, 1] (NaN rejected). Returns M.
int validate_acceptance(const AcceptanceMatrix& acceptance);

/// Throws std::invalid_argument unless `costs` has `num_models` rows of one length N >= 1 with
/// finite entries >= 0.
void validate_costs(const CostTable& costs, int num_models);

/// Throws std::invalid_argument unless `cost_per_pass` has `num_models` finite entries >= 0.
void validate_constant_costs(const std::vector<double>& cost_per_pass, int num_models);

/// Throws std::invalid_argument unless `early_stopping.continue_rates` is empty or has
/// `num_models` entries in [0, 1] and `early_stopping.acceptance` is empty or a valid [M][M]
/// acceptance matrix (NaN rejected; the message names early_stopping.<field>).
void validate_early_stopping(const EarlyStopping& early_stopping, int num_models);

/// Throws std::invalid_argument unless `chain` is a strictly increasing list of model indices
/// in [0, num_models) ending at the target (num_models - 1) and `draft_lengths` has one entry in
/// [1, kMaxDraftLength] per level below the target.
void validate_chain(const std::vector<int>& chain, const std::vector<int>& draft_lengths,
                    int num_models);

/// Largest number of tokens one forward pass of this chain can process (docs/policy.md):
/// 1 for the target alone; max(2, T_0 + 1) for one draft (level 0's first pass of 2 tokens,
/// the target's standard pass over its pending token plus T_0 drafts); for deeper chains the
/// maximum of 3 (level 0's first pass of a cycle after a full acceptance by the target: 2 + b
/// tokens, rule 1), T_{l-1} + 2 (the first verification of intermediate level l in such a
/// cycle: 1 + b pending tokens plus the batch) and the target's pass 1 + L <= 1 + T_{K-1} +
/// T_{K-2} (standard verification with a bonus token, rule 4). Structural: the largest pass
/// that can occur for some rates, whatever the rates given.
/// `draft_lengths` = [T_0, ..., T_{K-1}]. Precondition: validate_chain passed.
int chain_columns_needed(const std::vector<int>& draft_lengths);

/// Largest pass any chain of `num_models` candidates with draft lengths <= max_draft_length can
/// need: 1 (M = 1), max(2, max_draft_length + 1) (M = 2), 2 max_draft_length + 1 (M >= 3).
int plan_columns_needed(int num_models, int max_draft_length);

/// Throws std::invalid_argument unless the cost table covers `columns_needed` pass lengths.
void require_columns(const CostTable& costs, int columns_needed);

}  // namespace hierspec
