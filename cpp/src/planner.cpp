#include "hierspec/planner.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <tuple>

#include "hierspec/latency.hpp"
#include "renewal.hpp"

namespace hierspec {

namespace {

constexpr double kInfinity = std::numeric_limits<double>::infinity();

// The best configuration found so far for one role (e.g. "model j directly below the target").
struct Candidate {
  double latency = kInfinity;
  std::vector<int> chain;
  std::vector<int> draft_lengths;
  bool found() const { return latency < kInfinity; }
};

void check_max_draft_length(int max_draft_length) {
  if (max_draft_length < 1 || max_draft_length > kMaxDraftLength) {
    throw std::invalid_argument("max_draft_length = " + std::to_string(max_draft_length) +
                                " must be in [1, " + std::to_string(kMaxDraftLength) +
                                "] (MAX_DRAFT_LENGTH)");
  }
}

PlanEntry make_entry(const Candidate& candidate) {
  PlanEntry entry;
  entry.chain = candidate.chain;
  entry.draft_lengths = candidate.draft_lengths;
  entry.latency = candidate.latency;
  return entry;
}

// Builds the result from the best configuration per model directly below the target and the
// best single-draft configuration per draft. Shared by the planner and the brute force so
// that both report the same structure.
PlanResult assemble(const std::vector<Candidate>& best_below_target,
                    const std::vector<Candidate>& best_single_draft, int target,
                    double target_latency, int max_draft_length, int cost_table_columns) {
  PlanResult result;
  result.target_latency = target_latency;
  result.max_draft_length = max_draft_length;
  result.cost_table_columns = cost_table_columns;
  result.columns_needed = plan_columns_needed(target + 1, max_draft_length);
  result.limited_by_cost_table = cost_table_columns < result.columns_needed;

  std::vector<PlanEntry> entries;
  for (std::size_t model = 0; model < best_below_target.size(); ++model) {
    if (best_below_target[model].found()) entries.push_back(make_entry(best_below_target[model]));
    const Candidate& single = best_single_draft[model];
    if (single.found() && best_below_target[model].chain.size() != 2) {
      entries.push_back(make_entry(single));
    }
  }
  Candidate alone;
  alone.latency = target_latency;
  alone.chain = {target};
  entries.push_back(make_entry(alone));
  std::stable_sort(entries.begin(), entries.end(), [](const PlanEntry& x, const PlanEntry& y) {
    return std::make_tuple(x.latency, x.chain.size(), x.chain, x.draft_lengths) <
           std::make_tuple(y.latency, y.chain.size(), y.chain, y.draft_lengths);
  });

  const Candidate* single_best = nullptr;
  for (const Candidate& single : best_single_draft) {
    if (single.found() && (single_best == nullptr || single.latency < single_best->latency)) {
      single_best = &single;
    }
  }
  const double single_latency =
      single_best != nullptr ? single_best->latency : std::numeric_limits<double>::quiet_NaN();
  for (PlanEntry& entry : entries) {
    entry.speedup = target_latency / entry.latency;
    entry.speedup_vs_single_draft = single_latency / entry.latency;
  }
  result.alternatives = entries;
  result.best = entries.front();
  if (single_best != nullptr) {
    PlanEntry single = make_entry(*single_best);
    single.speedup = target_latency / single.latency;
    single.speedup_vs_single_draft = 1.0;
    result.best_single_draft = single;
  }
  return result;
}

// Node (model, T) of the shortest-path graph: the cheapest sub-chain topped by `model` that
// hands up exactly T tokens, and where it came from.
struct Node {
  double cost = kInfinity;  // D(model, T): expected cost of one call
  int below_model = -1;     // -1: the model is level 0
  int below_batch = 0;      // G handed up by below_model
  bool below_is_bottom = false;  // below_model is level 0 (it has no node of its own)
};

// What the last step of a configuration with model j directly below the target used.
struct TopChoice {
  double latency = kInfinity;
  int below_model = -1;  // -1: j is level 0 (a single draft)
  int below_batch = 0;
  int batch = 0;  // T of j
  bool below_is_bottom = false;
};

}  // namespace

PlanResult plan(const CostTable& costs, const AcceptanceMatrix& acceptance, int max_draft_length,
                const EarlyStopping& early_stopping, const StopRequested& should_stop) {
  StopPoller poller(should_stop);
  const int num_models = validate_acceptance(acceptance);
  validate_costs(costs, num_models);
  validate_early_stopping(early_stopping, num_models);
  check_max_draft_length(max_draft_length);

  const int target = num_models - 1;
  const int num_columns = static_cast<int>(costs[0].size());  // N
  const int max_batch = max_draft_length;                       // Tmax
  const auto cost = [&costs](int model, int num_tokens) {
    return costs[model][static_cast<std::size_t>(num_tokens) - 1];
  };

  // nodes[i][T], T = 1..Tmax (index 0 unused). bottom[i][T]: model i as level 0 (rule 1).
  // A model that never stops early (rate 1) hands up exactly T as level 0 too, like a node, so
  // its bottom cost seeds its node and one pass over the nodes covers both; a model that may
  // stop early hands up a random batch as level 0 and is searched as a bottom separately.
  std::vector<std::vector<Node>> nodes(target, std::vector<Node>(max_batch + 1));
  std::vector<std::vector<double>> bottom(target, std::vector<double>(max_batch + 1, kInfinity));
  std::vector<TopChoice> top_choice(target);
  std::vector<TopChoice> single_choice(target);

  // A target pass of e tokens commits sum_{k<e} a^k tokens in expectation: standard
  // verification of e - 1 drafts (single draft) or deferred verification of e (rule 4).
  const int max_target_pass = std::min(num_columns, 2 * max_batch + 1);
  std::vector<double> target_outputs;

  std::vector<double> density;              // f(0..Tmax) of the current (p, G, i)
  std::vector<double> window_cost(max_batch + 1), window_outputs(max_batch + 1);
  // E[c(G + 1)] over a bottom batch G ~ bottom_batch_law(rho, T) for T = 1..Tmax (index T).
  const auto over_bottom_batch = [&](int model, double rho, std::vector<double>& expected) {
    expected.assign(max_batch + 1, kInfinity);
    double prefix = 0.0, power = 1.0;  // sum_{g<T} rho^g (1 - rho) c(g + 1), rho^T
    for (int batch = 1; batch <= max_batch && batch + 1 <= num_columns; ++batch) {
      prefix += power * (1.0 - rho) * cost(model, batch);  // g = T - 1
      power *= rho;
      expected[batch] = prefix + power * cost(model, batch + 1);
    }
  };
  std::vector<double> expected_pass_cost;

  for (int model = 0; model < target; ++model) {
    const double rho = early_stopping.continue_rate(model);
    const bool plain_bottom = early_stopping.is_plain_bottom(acceptance, model);
    // Level 0 (policy rule 1): c(2) + (E[passes] - 1) c(1); needs the pass over 2 tokens.
    if (num_columns >= 2) {
      double passes = 0.0, power = 1.0;  // E[min(G + 1, T)] = sum_{k=1}^{T} rho^(k-1)
      for (int batch = 1; batch <= max_batch; ++batch) {
        passes += power;
        power *= rho;
        bottom[model][batch] = cost(model, 2) + (passes - 1.0) * cost(model, 1);
        if (plain_bottom) nodes[model][batch].cost = bottom[model][batch];
      }
    }
    const double target_rate = acceptance[model][target];
    target_outputs = detail::expected_outputs_by_pass_length(target_rate, max_target_pass);

    // Single draft [model, target]: the target verifies the G tokens in a pass of G + 1 and
    // commits sum_{o=1}^{T+1} (a rho)^(o-1) on average (a: the bottom acceptance).
    {
      const double bottom_rate = early_stopping.bottom_acceptance(acceptance, model, target);
      const std::vector<double> outputs =
          detail::expected_outputs_by_pass_length(bottom_rate * rho, max_target_pass);
      over_bottom_batch(target, rho, expected_pass_cost);
      for (int batch = 1; batch <= std::min(max_batch, num_columns - 1); ++batch) {
        const double latency =
            (expected_pass_cost[batch] + bottom[model][batch]) / outputs[batch + 1];
        if (latency < single_choice[model].latency) {
          single_choice[model] = {latency, -1, 0, batch, false};
        }
      }
    }
    top_choice[model] = single_choice[model];

    for (int below = 0; below < model; ++below) {
      const double below_rho = early_stopping.continue_rate(below);
      // Pass 0 over the nodes of `below` (an intermediate level, or a level 0 that behaves like
      // one: never stops early, same acceptance); pass 1 over `below` as a level 0 otherwise.
      const bool below_plain = early_stopping.is_plain_bottom(acceptance, below);
      for (int kind = 0; kind < (below_plain ? 1 : 2); ++kind) {
        const bool as_bottom = kind == 1;
        const double rate =
            as_bottom ? early_stopping.bottom_acceptance(acceptance, below, model) * below_rho
                      : acceptance[below][model];
        if (as_bottom) over_bottom_batch(model, below_rho, expected_pass_cost);
        for (int below_batch = 1; below_batch <= max_batch; ++below_batch) {
          poller.add(static_cast<std::uint64_t>(max_batch) * 4);  // the loops below: O(Tmax)
          const double below_cost =
              as_bottom ? bottom[below][below_batch] : nodes[below][below_batch].cost;
          if (!(below_cost < kInfinity) || below_batch + 1 > num_columns) continue;
          // One iteration of `model`'s loop: call `below`, verify its G tokens in a pass of
          // G + 1 (G random, at most T, for a level 0 that may stop early).
          const double iteration_cost =
              (as_bottom ? expected_pass_cost[below_batch] : cost(model, below_batch + 1)) +
              below_cost;
          detail::renewal_density_geometric(rate, below_batch, max_batch, density);

          // Intermediate `model` handing up exactly T: D = E[N](T) * iteration cost,
          // E[N](T) = sum_{s=0}^{T} f(s).
          double verifications = density[0];
          for (int batch = 1; batch <= max_batch; ++batch) {
            verifications += density[batch];
            const double call_cost = verifications * iteration_cost;
            Node& node = nodes[model][batch];
            if (call_cost < node.cost) node = {call_cost, below, below_batch, as_bottom};
          }

          // `model` directly below the target (rule 3): it stops once s >= T and hands up all
          // e = s tokens, e in T..T+G; the target's deferred pass processes e tokens (rule 4)
          // and must fit the table. In the renewal's terms the stopping threshold is b = T - 1
          // (stop once s >= b + 1), so batch T reads the sums up to s = b.
          const int last_threshold = std::min(max_batch - 1, num_columns - below_batch - 1);
          if (last_threshold < 0) continue;
          // H(s) = sum_{o=1}^{G+1} q(o) h(s + o) for h = target cost and h = E[O_K | e], by a
          // backward sliding window W(s) = sum_{o=1}^{G} a^(o-1) h(s + o):
          //   W(s - 1) = h(s) + a W(s) - a^G h(s + G),   H(s) = (1 - a) W(s) + a^G h(s + G + 1).
          double power_g = 1.0;
          for (int k = 0; k < below_batch; ++k) power_g *= rate;
          double cost_sum = 0.0, outputs_sum = 0.0, power = 1.0;
          for (int output = 1; output <= below_batch; ++output) {
            cost_sum += power * cost(target, last_threshold + output);
            outputs_sum += power * target_outputs[last_threshold + output];
            power *= rate;
          }
          for (int s = last_threshold;; --s) {
            const int last = s + below_batch + 1;
            window_cost[s] = (1.0 - rate) * cost_sum + power_g * cost(target, last);
            window_outputs[s] = (1.0 - rate) * outputs_sum + power_g * target_outputs[last];
            if (s == 0) break;
            cost_sum = cost(target, s) + rate * cost_sum - power_g * cost(target, s + below_batch);
            outputs_sum = target_outputs[s] + rate * outputs_sum -
                          power_g * target_outputs[s + below_batch];
          }
          // E[h(e)] = sum_{s=0}^{b} f(s) H(s) - sum_{u=1}^{b} f(u) h(u)   (docs/theory.md §4).
          double expected_cost = 0.0, expected_outputs = 0.0;
          verifications = 0.0;
          TopChoice& choice = top_choice[model];
          for (int threshold = 0; threshold <= last_threshold; ++threshold) {
            expected_cost += density[threshold] * window_cost[threshold];
            expected_outputs += density[threshold] * window_outputs[threshold];
            if (threshold > 0) {
              expected_cost -= density[threshold] * cost(target, threshold);
              expected_outputs -= density[threshold] * target_outputs[threshold];
            }
            verifications += density[threshold];
            const double latency =
                (expected_cost + verifications * iteration_cost) / expected_outputs;
            if (latency < choice.latency) {
              choice = {latency, below, below_batch, threshold + 1, as_bottom};
            }
          }
        }
      }
    }
  }

  // Walk the back-pointers of node (model, batch) down to level 0.
  const auto sub_chain = [&nodes](int model, int batch, bool is_bottom, Candidate& candidate) {
    std::vector<int> chain, draft_lengths;
    while (model >= 0) {
      chain.push_back(model);
      draft_lengths.push_back(batch);
      if (is_bottom) break;
      const Node& node = nodes[model][batch];
      model = node.below_model;
      batch = node.below_batch;
      is_bottom = node.below_is_bottom;
    }
    candidate.chain.assign(chain.rbegin(), chain.rend());
    candidate.draft_lengths.assign(draft_lengths.rbegin(), draft_lengths.rend());
  };
  const auto to_candidate = [&](int model, const TopChoice& choice) {
    Candidate candidate;
    if (!(choice.latency < kInfinity)) return candidate;
    if (choice.below_model >= 0) {
      sub_chain(choice.below_model, choice.below_batch, choice.below_is_bottom, candidate);
    }
    candidate.chain.push_back(model);
    candidate.draft_lengths.push_back(choice.batch);
    candidate.chain.push_back(target);
    candidate.latency = choice.latency;
    return candidate;
  };
  std::vector<Candidate> best_below_target, best_single_draft;
  for (int model = 0; model < target; ++model) {
    best_below_target.push_back(to_candidate(model, top_choice[model]));
    best_single_draft.push_back(to_candidate(model, single_choice[model]));
  }
  return assemble(best_below_target, best_single_draft, target, cost(target, 1), max_draft_length,
                  num_columns);
}

PlanResult plan(const std::vector<double>& cost_per_pass, const AcceptanceMatrix& acceptance,
                int max_draft_length, const EarlyStopping& early_stopping,
                const StopRequested& should_stop) {
  const int num_models = validate_acceptance(acceptance);
  validate_constant_costs(cost_per_pass, num_models);
  check_max_draft_length(max_draft_length);
  return plan(expand_constant_costs(cost_per_pass, plan_columns_needed(num_models, max_draft_length)),
              acceptance, max_draft_length, early_stopping, should_stop);
}

PlanResult brute_force_plan(const CostTable& costs, const AcceptanceMatrix& acceptance,
                            int max_draft_length, const EarlyStopping& early_stopping,
                            const StopRequested& should_stop) {
  StopPoller poller(should_stop);
  const int num_models = validate_acceptance(acceptance);
  validate_costs(costs, num_models);
  validate_early_stopping(early_stopping, num_models);
  check_max_draft_length(max_draft_length);
  if (num_models > 24) {
    throw std::invalid_argument("brute_force_plan: " + std::to_string(num_models) +
                                " models is too many to enumerate (limit 24)");
  }
  const int target = num_models - 1;
  const int num_columns = static_cast<int>(costs[0].size());
  std::vector<Candidate> best_below_target(target), best_single_draft(target);

  for (unsigned mask = 1; mask < (1u << target); ++mask) {
    std::vector<int> chain;
    for (int model = 0; model < target; ++model) {
      if (mask & (1u << model)) chain.push_back(model);
    }
    chain.push_back(target);
    std::vector<int> draft_lengths(chain.size() - 1, 1);
    while (true) {  // odometer over [1, max_draft_length]^K
      poller.add(chain.size() + static_cast<std::uint64_t>(draft_lengths.back()) *
                                    draft_lengths.back());  // evaluate: O(K T^2) at most
      if (chain_columns_needed(draft_lengths) <= num_columns) {
        const double latency =
            expected_latency(costs, acceptance, chain, draft_lengths, early_stopping);
        const int below = chain[chain.size() - 2];
        for (Candidate* best : {&best_below_target[below],
                                chain.size() == 2 ? &best_single_draft[below] : nullptr}) {
          if (best != nullptr && latency < best->latency) *best = {latency, chain, draft_lengths};
        }
      }
      std::size_t level = 0;
      while (level < draft_lengths.size() && draft_lengths[level] == max_draft_length) {
        draft_lengths[level++] = 1;
      }
      if (level == draft_lengths.size()) break;
      ++draft_lengths[level];
    }
  }
  const double target_latency = expected_latency(costs, acceptance, {target}, {});
  return assemble(best_below_target, best_single_draft, target, target_latency, max_draft_length,
                  num_columns);
}

PlanResult brute_force_plan(const std::vector<double>& cost_per_pass,
                            const AcceptanceMatrix& acceptance, int max_draft_length,
                            const EarlyStopping& early_stopping,
                            const StopRequested& should_stop) {
  const int num_models = validate_acceptance(acceptance);
  validate_constant_costs(cost_per_pass, num_models);
  check_max_draft_length(max_draft_length);
  return brute_force_plan(
      expand_constant_costs(cost_per_pass, plan_columns_needed(num_models, max_draft_length)),
      acceptance, max_draft_length, early_stopping, should_stop);
}

}  // namespace hierspec
