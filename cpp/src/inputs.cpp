#include "hierspec/inputs.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "format.hpp"

namespace hierspec {

using detail::format_list;
using detail::format_number;

namespace {

void check_cost_value(double value, const std::string& name) {
  if (std::isnan(value)) throw std::invalid_argument(name + " = nan is not a number");
  if (std::isinf(value)) throw std::invalid_argument(name + " = " + format_number(value) +
                                                     " is not finite");
  if (value < 0.0) throw std::invalid_argument(name + " = " + format_number(value) +
                                               " is negative");
}

}  // namespace

int validate_acceptance(const AcceptanceMatrix& acceptance) {
  const std::size_t num_models = acceptance.size();
  if (num_models == 0) {
    throw std::invalid_argument("acceptance has 0 rows; it must be [M, M] with M >= 1 models");
  }
  for (std::size_t row = 0; row < num_models; ++row) {
    if (acceptance[row].size() != num_models) {
      throw std::invalid_argument("acceptance[" + std::to_string(row) + "] has " +
                                  std::to_string(acceptance[row].size()) +
                                  " entries; acceptance must be square [M, M] with M = " +
                                  std::to_string(num_models));
    }
    for (std::size_t column = row + 1; column < num_models; ++column) {
      const double value = acceptance[row][column];
      if (!(value >= 0.0 && value <= 1.0)) {  // also rejects NaN
        throw std::invalid_argument("acceptance[" + std::to_string(row) + "][" +
                                    std::to_string(column) + "] = " + format_number(value) +
                                    " is outside [0, 1]");
      }
    }
  }
  return static_cast<int>(num_models);
}

void validate_early_stopping(const EarlyStopping& early_stopping, int num_models) {
  const std::vector<double>& rates = early_stopping.continue_rates;
  if (!rates.empty() && static_cast<int>(rates.size()) != num_models) {
    throw std::invalid_argument("early_stopping.continue_rates has " +
                                std::to_string(rates.size()) + " entries but acceptance has " +
                                std::to_string(num_models) + " models (one rate per model, or none)");
  }
  for (std::size_t model = 0; model < rates.size(); ++model) {
    if (!(rates[model] >= 0.0 && rates[model] <= 1.0)) {  // also rejects NaN
      throw std::invalid_argument("early_stopping.continue_rates[" + std::to_string(model) +
                                  "] = " + format_number(rates[model]) + " is outside [0, 1]");
    }
  }
  if (early_stopping.acceptance.empty()) return;
  try {
    if (validate_acceptance(early_stopping.acceptance) != num_models) {
      throw std::invalid_argument("acceptance has " +
                                  std::to_string(early_stopping.acceptance.size()) +
                                  " rows; it must be [M, M] with M = " +
                                  std::to_string(num_models) + " like the main matrix");
    }
  } catch (const std::invalid_argument& error) {
    throw std::invalid_argument(std::string("early_stopping.") + error.what());
  }
}

bool EarlyStopping::is_plain_bottom(const std::vector<std::vector<double>>& main,
                                    int drafter) const {
  if (continue_rate(drafter) != 1.0) return false;
  if (acceptance.empty()) return true;
  const std::size_t row = static_cast<std::size_t>(drafter);
  for (std::size_t column = row + 1; column < main.size(); ++column) {
    if (acceptance[row][column] != main[row][column]) return false;
  }
  return true;
}

void validate_costs(const CostTable& costs, int num_models) {
  if (static_cast<int>(costs.size()) != num_models) {
    throw std::invalid_argument("costs has " + std::to_string(costs.size()) +
                                " rows but acceptance has " + std::to_string(num_models) +
                                " models (one row per model)");
  }
  const std::size_t num_columns = costs[0].size();
  if (num_columns == 0) {
    throw std::invalid_argument("costs has 0 columns; costs[m][n - 1] is the cost of a pass "
                                "over n tokens, n = 1..N with N >= 1");
  }
  for (std::size_t model = 0; model < costs.size(); ++model) {
    if (costs[model].size() != num_columns) {
      throw std::invalid_argument("costs[" + std::to_string(model) + "] has " +
                                  std::to_string(costs[model].size()) +
                                  " columns but costs[0] has " + std::to_string(num_columns) +
                                  "; every row needs the same length");
    }
    for (std::size_t column = 0; column < num_columns; ++column) {
      check_cost_value(costs[model][column],
                       "costs[" + std::to_string(model) + "][" + std::to_string(column) + "]");
    }
  }
}

void validate_constant_costs(const std::vector<double>& cost_per_pass, int num_models) {
  if (static_cast<int>(cost_per_pass.size()) != num_models) {
    throw std::invalid_argument("costs has " + std::to_string(cost_per_pass.size()) +
                                " entries but acceptance has " + std::to_string(num_models) +
                                " models (one cost per model)");
  }
  for (std::size_t model = 0; model < cost_per_pass.size(); ++model) {
    check_cost_value(cost_per_pass[model], "costs[" + std::to_string(model) + "]");
  }
}

CostTable expand_constant_costs(const std::vector<double>& cost_per_pass, int num_columns) {
  validate_constant_costs(cost_per_pass, static_cast<int>(cost_per_pass.size()));
  if (num_columns < 1) {
    throw std::invalid_argument("num_columns = " + std::to_string(num_columns) +
                                " must be >= 1");
  }
  CostTable table;
  table.reserve(cost_per_pass.size());
  for (double cost : cost_per_pass) table.emplace_back(num_columns, cost);
  return table;
}

void validate_chain(const std::vector<int>& chain, const std::vector<int>& draft_lengths,
                    int num_models) {
  if (chain.empty()) {
    throw std::invalid_argument("chain = [] is empty; it must end at the target (model " +
                                std::to_string(num_models - 1) + ")");
  }
  for (std::size_t level = 0; level < chain.size(); ++level) {
    if (chain[level] < 0 || chain[level] >= num_models) {
      throw std::invalid_argument("chain[" + std::to_string(level) + "] = " +
                                  std::to_string(chain[level]) + " is not a model index in [0, " +
                                  std::to_string(num_models - 1) + "]");
    }
  }
  for (std::size_t level = 1; level < chain.size(); ++level) {
    if (chain[level] <= chain[level - 1]) {
      throw std::invalid_argument("chain = " + format_list(chain) +
                                  " is not strictly increasing");
    }
  }
  if (chain.back() != num_models - 1) {
    throw std::invalid_argument("chain must end at the target (model " +
                                std::to_string(num_models - 1) + "), got " +
                                std::to_string(chain.back()));
  }
  if (draft_lengths.size() + 1 != chain.size()) {
    throw std::invalid_argument("draft_lengths has " + std::to_string(draft_lengths.size()) +
                                " entries, chain needs " + std::to_string(chain.size() - 1) +
                                " (one per level below the target)");
  }
  for (std::size_t level = 0; level < draft_lengths.size(); ++level) {
    if (draft_lengths[level] < 1) {
      throw std::invalid_argument("draft_lengths[" + std::to_string(level) + "] = " +
                                  std::to_string(draft_lengths[level]) + " must be >= 1");
    }
    if (draft_lengths[level] > kMaxDraftLength) {
      throw std::invalid_argument("draft_lengths[" + std::to_string(level) + "] = " +
                                  std::to_string(draft_lengths[level]) + " exceeds MAX_DRAFT_LENGTH = " +
                                  std::to_string(kMaxDraftLength));
    }
  }
}

int chain_columns_needed(const std::vector<int>& draft_lengths) {
  const std::size_t num_levels = draft_lengths.size();  // K
  if (num_levels == 0) return 1;
  // K = 1: level 0's first pass (2 tokens, policy rule 1) and the target's standard pass over
  // the pending token plus T_0 drafts.
  if (num_levels == 1) return std::max(2, draft_lengths[0] + 1);
  // K >= 2 (policy rules 1-4, bonus state b): level 0's first pass of a cycle processes 2 + b <= 3
  // tokens; the first verification of intermediate level l in a cycle T_{l-1} + 1 + b <=
  // T_{l-1} + 2; the target's pass its pending token plus the hand-up of level K-1, at most
  // 1 + T_{K-1} + T_{K-2} (which also covers level K-1's T_{K-2} + 2 and level 0's 3).
  int needed = 1 + draft_lengths[num_levels - 1] + draft_lengths[num_levels - 2];
  for (std::size_t level = 1; level + 1 < num_levels; ++level) {
    needed = std::max(needed, draft_lengths[level - 1] + 2);
  }
  return needed;
}

int plan_columns_needed(int num_models, int max_draft_length) {
  if (num_models <= 1) return 1;
  if (num_models == 2) return std::max(2, max_draft_length + 1);
  return 2 * max_draft_length + 1;
}

void require_columns(const CostTable& costs, int columns_needed) {
  const int num_columns = static_cast<int>(costs[0].size());
  if (num_columns < columns_needed) {
    throw std::invalid_argument("costs has " + std::to_string(num_columns) +
                                " columns (passes of n = 1.." + std::to_string(num_columns) +
                                " tokens); this chain needs passes of up to n = " +
                                std::to_string(columns_needed));
  }
}

}  // namespace hierspec
