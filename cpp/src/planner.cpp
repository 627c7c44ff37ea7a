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

// One sub-chain topped by a node (model, T): its expected call cost Cost (D of
// docs/theory.md §6) and Dsum, the extra cost of a cycle in the bonus state (the sum of its
// levels' deltas, policy rule 4), and where it came from.
struct HullPoint {
  double cost = kInfinity;
  double bonus_extra = 0.0;  // Dsum
  int below_model = -1;      // -1: the model is level 0
  int below_batch = 0;       // G handed up by below_model
  int below_point = 0;       // index in the hull of node (below_model, below_batch)
  // below_model is level 0 searched as a bottom (it may stop early or has its own bottom
  // acceptance, so it has no node for this role; docs/theory.md §11).
  bool below_is_bottom = false;
};

// A sub-chain enters every latency above it only through Cost + lambda Dsum, lambda in [0, 1]
// (docs/theory.md §6), so a node keeps the sub-chains that minimise it for some lambda in
// [0, 1]: the lower envelope of the lines Cost + lambda Dsum. Returns them sorted by Dsum
// descending (Cost ascending). For flat cost tables every Dsum is 0 and one point remains.
std::vector<HullPoint> lower_envelope(std::vector<HullPoint> points) {
  std::sort(points.begin(), points.end(), [](const HullPoint& x, const HullPoint& y) {
    return x.bonus_extra != y.bonus_extra ? x.bonus_extra > y.bonus_extra : x.cost < y.cost;
  });
  // crossing(x, y): the lambda where line y (smaller slope Dsum) becomes cheaper than line x.
  const auto crossing = [](const HullPoint& x, const HullPoint& y) {
    return (y.cost - x.cost) / (x.bonus_extra - y.bonus_extra);
  };
  std::vector<HullPoint> hull;
  for (const HullPoint& point : points) {
    if (!hull.empty() && hull.back().bonus_extra == point.bonus_extra) continue;  // dearer
    while (hull.size() >= 2 &&
           crossing(hull[hull.size() - 2], point) <= crossing(hull[hull.size() - 2], hull.back())) {
      hull.pop_back();
    }
    hull.push_back(point);
  }
  // Line k is the minimum on [crossing(k-1, k), crossing(k, k+1)]; keep those meeting [0, 1].
  std::vector<HullPoint> kept;
  for (std::size_t k = 0; k < hull.size(); ++k) {
    const bool starts_by_one = k == 0 || crossing(hull[k - 1], hull[k]) <= 1.0;
    const bool ends_after_zero = k + 1 == hull.size() || crossing(hull[k], hull[k + 1]) >= 0.0;
    if (starts_by_one && ends_after_zero) kept.push_back(hull[k]);
  }
  return kept;
}

// The candidate sub-chains of one node while the planner builds it. A candidate is skipped
// when one line is below it at lambda = 0 and at lambda = 1 (then on all of [0, 1]); the list
// is reduced to its lower envelope whenever it doubles, so it stays small.
class NodeCandidates {
 public:
  void add(const HullPoint& point) {
    for (const std::size_t best : {cheapest_, cheapest_at_one_}) {
      if (best < points_.size() && points_[best].cost <= point.cost &&
          points_[best].cost + points_[best].bonus_extra <= point.cost + point.bonus_extra) {
        return;
      }
    }
    points_.push_back(point);
    const std::size_t index = points_.size() - 1;
    if (cheapest_ >= index || point.cost < points_[cheapest_].cost) cheapest_ = index;
    if (cheapest_at_one_ >= index || point.cost + point.bonus_extra <
                                          points_[cheapest_at_one_].cost +
                                              points_[cheapest_at_one_].bonus_extra) {
      cheapest_at_one_ = index;
    }
    if (points_.size() >= compact_at_) {
      reset(lower_envelope(std::move(points_)));
      compact_at_ = 2 * points_.size() + 8;
    }
  }

  std::vector<HullPoint> finish() { return lower_envelope(std::move(points_)); }

 private:
  void reset(std::vector<HullPoint> points) {
    points_ = std::move(points);
    cheapest_ = cheapest_at_one_ = points_.size();
    for (std::size_t k = 0; k < points_.size(); ++k) {
      if (cheapest_ == points_.size() || points_[k].cost < points_[cheapest_].cost) cheapest_ = k;
      if (cheapest_at_one_ == points_.size() ||
          points_[k].cost + points_[k].bonus_extra <
              points_[cheapest_at_one_].cost + points_[cheapest_at_one_].bonus_extra) {
        cheapest_at_one_ = k;
      }
    }
  }

  std::vector<HullPoint> points_;
  std::size_t cheapest_ = 0, cheapest_at_one_ = 0;  // argmin Cost, argmin Cost + Dsum
  std::size_t compact_at_ = 16;
};

// What the last step of a configuration with model j directly below the target used.
struct TopChoice {
  double latency = kInfinity;
  int below_model = -1;  // -1: j is level 0 (a single draft)
  int below_batch = 0;
  int below_point = 0;
  int batch = 0;  // T of j
  bool below_is_bottom = false;
};

// H(s) = sum_{o=1}^{G+1} q(o) h(s + o), s = 0..last_threshold, for the truncated-geometric q of
// a batch of G at rate a, by a backward sliding window W(s) = sum_{o=1}^{G} a^(o-1) h(s + o):
//   W(s - 1) = h(s) + a W(s) - a^G h(s + G),   H(s) = (1 - a) W(s) + a^G h(s + G + 1).
// h must cover indices up to last_threshold + G + 1.
void slide_output_window(const std::vector<double>& values, double rate, int batch_length,
                         int last_threshold, std::vector<double>& window) {
  double power_g = 1.0;
  for (int k = 0; k < batch_length; ++k) power_g *= rate;
  double sum = 0.0, power = 1.0;
  for (int output = 1; output <= batch_length; ++output) {
    sum += power * values[last_threshold + output];
    power *= rate;
  }
  for (int s = last_threshold;; --s) {
    window[s] = (1.0 - rate) * sum + power_g * values[s + batch_length + 1];
    if (s == 0) break;
    sum = values[s] + rate * sum - power_g * values[s + batch_length];
  }
}

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

  // hulls[i][T], T = 1..Tmax (index 0 unused): the sub-chains kept for node (i, T), model i as
  // an intermediate level (or as a level 0 that behaves like one). bottom[i][T]: the call cost
  // of model i as level 0 (rule 1), one line with Dsum = c_i(3) - c_i(2). A model that never
  // stops early and has the main acceptance as a bottom hands up exactly T as level 0 too, like a
  // node, so its bottom line seeds its node and one pass over the nodes covers both; a model
  // that may stop early (or is accepted differently as level 0) hands up a random batch as
  // level 0 and is searched as a bottom separately.
  std::vector<std::vector<std::vector<HullPoint>>> hulls(
      target, std::vector<std::vector<HullPoint>>(max_batch + 1));
  std::vector<std::vector<double>> bottom(target, std::vector<double>(max_batch + 1, kInfinity));
  std::vector<double> bottom_extra(target, 0.0);
  std::vector<NodeCandidates> candidates(max_batch + 1);
  std::vector<TopChoice> top_choice(target);
  std::vector<TopChoice> single_choice(target);

  // The target's pass over its pending token and a hand-up of e tokens (rule 4) costs
  // c_K(e + 1), commits sum_{k<e+1} a^k tokens in expectation and accepts everything with
  // probability a^e (then the next cycle is in the bonus state): indexed by e.
  const int max_hand_up = std::min(num_columns, 2 * max_batch + 1) - 1;
  std::vector<double> target_outputs, hand_up_cost(max_hand_up + 1), hand_up_outputs,
      hand_up_full(max_hand_up + 1);
  for (int hand_up = 0; hand_up <= max_hand_up; ++hand_up) {
    hand_up_cost[hand_up] = cost(target, hand_up + 1);
  }

  std::vector<double> density;  // f(0..Tmax) of the current (p, G, i)
  std::vector<double> window_cost(max_batch + 1), window_outputs(max_batch + 1),
      window_full(max_batch + 1);
  // expected[T] = E[c(G + shift)] over a bottom batch G ~ bottom_batch_law(rho, T), T = 1..Tmax
  // (infinity where T + shift exceeds the table).
  const auto over_bottom_batch = [&](int model, double rho, int shift,
                                     std::vector<double>& expected) {
    expected.assign(max_batch + 1, kInfinity);
    double prefix = 0.0, power = 1.0;  // sum_{g<T} rho^g (1 - rho) c(g + shift), rho^T
    for (int batch = 1; batch <= max_batch && batch + shift <= num_columns; ++batch) {
      prefix += power * (1.0 - rho) * cost(model, batch - 1 + shift);  // g = T - 1
      power *= rho;
      expected[batch] = prefix + power * cost(model, batch + shift);
    }
  };
  std::vector<double> expected_pass_cost, expected_bonus_pass_cost;

  for (int model = 0; model < target; ++model) {
    const double rho = early_stopping.continue_rate(model);
    const bool plain_bottom = early_stopping.is_plain_bottom(acceptance, model);
    // Level 0 (policy rule 1): Cost = c(2) + (E[passes] - 1) c(1), needs the pass over 2
    // tokens; Dsum = c(3) - c(2) (its first pass of a cycle in the bonus state processes 3
    // tokens; only chains of 3+ models, which need 3 columns anyway, use it).
    bottom_extra[model] = num_columns >= 3 ? cost(model, 3) - cost(model, 2) : 0.0;
    if (num_columns >= 2) {
      double passes = 0.0, power = 1.0;  // E[min(G + 1, T)] = sum_{k=1}^{T} rho^(k-1)
      for (int batch = 1; batch <= max_batch; ++batch) {
        passes += power;
        power *= rho;
        bottom[model][batch] = cost(model, 2) + (passes - 1.0) * cost(model, 1);
        if (plain_bottom) candidates[batch].add({bottom[model][batch], bottom_extra[model]});
      }
    }
    const double target_rate = acceptance[model][target];
    target_outputs = detail::expected_outputs_by_pass_length(target_rate, max_hand_up + 1);
    hand_up_outputs.assign(target_outputs.begin() + 1, target_outputs.end());
    double power = 1.0;
    for (int hand_up = 0; hand_up <= max_hand_up; ++hand_up, power *= target_rate) {
      hand_up_full[hand_up] = power;
    }

    // Single draft [model, target]: the target verifies the G tokens in a pass of G + 1 and
    // commits sum_{o=1}^{T+1} (a rho)^(o-1) on average (a: the bottom acceptance); no bonus
    // state (K = 1).
    {
      const double bottom_rate = early_stopping.bottom_acceptance(acceptance, model, target);
      const std::vector<double> outputs =
          detail::expected_outputs_by_pass_length(bottom_rate * rho, max_hand_up + 1);
      over_bottom_batch(target, rho, 1, expected_pass_cost);
      for (int batch = 1; batch <= std::min(max_batch, num_columns - 1); ++batch) {
        const double latency =
            (expected_pass_cost[batch] + bottom[model][batch]) / outputs[batch + 1];
        if (latency < single_choice[model].latency) {
          single_choice[model] = {latency, -1, 0, 0, batch, false};
        }
      }
    }
    top_choice[model] = single_choice[model];

    for (int below = 0; below < model; ++below) {
      const double below_rho = early_stopping.continue_rate(below);
      // Pass 0 over the nodes of `below` (an intermediate level, or a level 0 that behaves like
      // one: never stops early, same acceptance); pass 1 over `below` as a level 0 otherwise,
      // whose one line is its bottom cost with Dsum = c(3) - c(2).
      const bool below_plain = early_stopping.is_plain_bottom(acceptance, below);
      for (int kind = 0; kind < (below_plain ? 1 : 2); ++kind) {
        const bool as_bottom = kind == 1;
        const double rate =
            as_bottom ? early_stopping.bottom_acceptance(acceptance, below, model) * below_rho
                      : acceptance[below][model];
        if (as_bottom) {
          over_bottom_batch(model, below_rho, 1, expected_pass_cost);
          over_bottom_batch(model, below_rho, 2, expected_bonus_pass_cost);
        }
        std::vector<HullPoint> bottom_line(1);
        for (int below_batch = 1; below_batch <= max_batch; ++below_batch) {
          if (as_bottom) bottom_line[0] = {bottom[below][below_batch], bottom_extra[below]};
          const std::vector<HullPoint>& below_hull =
              as_bottom ? bottom_line : hulls[below][below_batch];
          poller.add(static_cast<std::uint64_t>(max_batch) * (4 + 2 * below_hull.size()));
          // The first verification of a cycle in the bonus state processes G + 2 tokens.
          if (below_hull.empty() || !(below_hull[0].cost < kInfinity) ||
              below_batch + 2 > num_columns) {
            continue;
          }
          // One iteration of `model`'s loop: call `below`, verify its G tokens in a pass of
          // G + 1; for a level 0 that may stop early G is random (at most T) and both the pass
          // cost and delta = c(G + 2) - c(G + 1) are expectations over G.
          const double verify_cost =
              as_bottom ? expected_pass_cost[below_batch] : cost(model, below_batch + 1);
          const double verify_extra =  // delta
              (as_bottom ? expected_bonus_pass_cost[below_batch] : cost(model, below_batch + 2)) -
              verify_cost;
          detail::renewal_density_geometric(rate, below_batch, max_batch, density);

          // Intermediate `model` handing up exactly T: Cost = E[N](T) (c(G + 1) + Cost_below),
          // E[N](T) = sum_{s=0}^{T} f(s); Dsum = delta + Dsum_below.
          for (std::size_t point = 0; point < below_hull.size(); ++point) {
            const double iteration_cost = verify_cost + below_hull[point].cost;
            const double bonus_extra = verify_extra + below_hull[point].bonus_extra;
            const int point_index = static_cast<int>(point);
            double verifications = density[0];
            for (int batch = 1; batch <= max_batch; ++batch) {
              verifications += density[batch];
              candidates[batch].add({verifications * iteration_cost, bonus_extra, below,
                                     below_batch, point_index, as_bottom});
            }
          }

          // `model` directly below the target (rule 3): it stops once s >= T and hands up all
          // e = s tokens, e in T..T+G; the target's pass processes e + 1 tokens (rule 4) and
          // must fit the table. In the renewal's terms the stopping threshold is b = T - 1
          // (stop once s >= b + 1), so batch T reads the sums up to s = b.
          const int last_threshold = std::min(max_batch - 1, num_columns - below_batch - 2);
          if (last_threshold < 0) continue;
          slide_output_window(hand_up_cost, rate, below_batch, last_threshold, window_cost);
          slide_output_window(hand_up_outputs, rate, below_batch, last_threshold, window_outputs);
          slide_output_window(hand_up_full, rate, below_batch, last_threshold, window_full);
          // E[h(e)] = sum_{s=0}^{b} f(s) H(s) - sum_{u=1}^{b} f(u) h(u)   (docs/theory.md §4).
          double expected_cost = 0.0, expected_outputs = 0.0, full_acceptance = 0.0;
          double verifications = 0.0;
          TopChoice& choice = top_choice[model];
          for (int threshold = 0; threshold <= last_threshold; ++threshold) {
            expected_cost += density[threshold] * window_cost[threshold];
            expected_outputs += density[threshold] * window_outputs[threshold];
            full_acceptance += density[threshold] * window_full[threshold];
            if (threshold > 0) {
              expected_cost -= density[threshold] * hand_up_cost[threshold];
              expected_outputs -= density[threshold] * hand_up_outputs[threshold];
              full_acceptance -= density[threshold] * hand_up_full[threshold];
            }
            verifications += density[threshold];
            // latency = (E[c_K(e + 1)] + E[N] (c(G + 1) + Cost_below)
            //            + pi (delta + Dsum_below)) / E[O_K],   pi = E[a_K^e].
            for (std::size_t point = 0; point < below_hull.size(); ++point) {
              const double latency =
                  (expected_cost + verifications * (verify_cost + below_hull[point].cost) +
                   full_acceptance * (verify_extra + below_hull[point].bonus_extra)) /
                  expected_outputs;
              if (latency < choice.latency) {
                choice = {latency, below, below_batch, static_cast<int>(point), threshold + 1,
                          as_bottom};
              }
            }
          }
        }
      }
    }
    for (int batch = 1; batch <= max_batch; ++batch) {
      hulls[model][batch] = candidates[batch].finish();
      candidates[batch] = NodeCandidates();
    }
  }

  // Walk the back-pointers of point `point` of node (model, batch) down to level 0.
  const auto sub_chain = [&hulls](int model, int batch, int point, bool is_bottom,
                                  Candidate& candidate) {
    std::vector<int> chain, draft_lengths;
    while (model >= 0) {
      chain.push_back(model);
      draft_lengths.push_back(batch);
      if (is_bottom) break;
      const HullPoint& node = hulls[model][batch][point];
      model = node.below_model;
      batch = node.below_batch;
      point = node.below_point;
      is_bottom = node.below_is_bottom;
    }
    candidate.chain.assign(chain.rbegin(), chain.rend());
    candidate.draft_lengths.assign(draft_lengths.rbegin(), draft_lengths.rend());
  };
  const auto to_candidate = [&](int model, const TopChoice& choice) {
    Candidate candidate;
    if (!(choice.latency < kInfinity)) return candidate;
    if (choice.below_model >= 0) {
      sub_chain(choice.below_model, choice.below_batch, choice.below_point,
                choice.below_is_bottom, candidate);
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
