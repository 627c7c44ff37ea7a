#include "hierspec/rates.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "format.hpp"

namespace hierspec {
namespace {

// Keeps a prior of exactly 0 or 1 from giving its fresh run a zero likelihood.
constexpr double kRateFloor = 1e-4;

// log B(alpha + successes, beta + failures) - log B(alpha, beta): the log probability of one
// sequence of `successes` and `failures` Bernoulli draws whose rate has the prior
// Beta(alpha, beta) (the chain rule of the sequential predictive; exchangeable, so the order
// does not matter).
double sequence_log_likelihood(double alpha, double beta, long successes, long failures) {
  double result = 0.0;
  for (long k = 0; k < successes; ++k) result += std::log(alpha + static_cast<double>(k));
  for (long k = 0; k < failures; ++k) result += std::log(beta + static_cast<double>(k));
  const double total = alpha + beta;
  for (long k = 0; k < successes + failures; ++k) {
    result -= std::log(total + static_cast<double>(k));
  }
  return result;
}

}  // namespace

RatePosteriors::RatePosteriors(std::vector<double> prior, std::vector<double> strength,
                               double discount, double change_rate, int max_runs)
    : prior_(std::move(prior)),
      strength_(std::move(strength)),
      discount_(discount),
      change_rate_(change_rate) {
  if (prior_.empty() || strength_.size() != prior_.size()) {
    throw std::invalid_argument("prior and strength must have the same size >= 1, got " +
                                std::to_string(prior_.size()) + " and " +
                                std::to_string(strength_.size()));
  }
  if (!(change_rate >= 0.0 && change_rate < 1.0)) {  // also refuses NaN
    throw std::invalid_argument("change_rate must be in [0, 1), got " + detail::format_number(change_rate));
  }
  if (max_runs < 2) {
    throw std::invalid_argument("max_runs must be >= 2, got " + std::to_string(max_runs));
  }
  if (!(discount > 0.0 && discount <= 1.0)) {
    throw std::invalid_argument("discount must be in (0, 1], got " + detail::format_number(discount));
  }
  runs_ = change_rate == 0.0 ? 1 : static_cast<std::size_t>(max_runs);
  const std::size_t cells = runs_ * prior_.size();
  weight_.assign(cells, 0.0);
  prior_weight_.assign(cells, 0.0);
  successes_.assign(cells, 0.0);
  failures_.assign(cells, 0.0);
  for (std::size_t entry = 0; entry < prior_.size(); ++entry) {
    weight_[at(0, entry)] = 1.0;
    prior_weight_[at(0, entry)] = strength_[entry];
  }
}

void RatePosteriors::observe(std::size_t entry, long successes, long failures) {
  if (entry >= prior_.size()) {
    throw std::invalid_argument("entry " + std::to_string(entry) + " is out of range for " +
                            std::to_string(prior_.size()) + " rates");
  }
  if (successes < 0 || failures < 0) {
    throw std::invalid_argument("successes and failures must be >= 0, got " +
                                std::to_string(successes) + " and " + std::to_string(failures));
  }
  const long draws = successes + failures;
  if (draws == 0) return;
  if (change_rate_ > 0.0) {
    const std::size_t runs = runs_;
    const double rate = std::min(std::max(prior_[entry], kRateFloor), 1.0 - kRateFloor);
    const double strength = strength_[entry];
    // The draws' log probability under each run's posterior (hypotheses not in use, weight 0,
    // have none) and under a new run (the prior).
    std::vector<double> grown(runs, -std::numeric_limits<double>::infinity());
    double scale = sequence_log_likelihood(strength * rate, strength * (1.0 - rate), successes,
                                           failures);
    const double fresh = scale;
    double old_total = 0.0;
    for (std::size_t run = 0; run < runs; ++run) {
      const std::size_t cell = at(run, entry);
      old_total += weight_[cell];
      if (weight_[cell] > 0.0) {
        const double pseudo = prior_weight_[cell];
        grown[run] = sequence_log_likelihood(pseudo * rate + successes_[cell],
                                             pseudo * (1.0 - rate) + failures_[cell], successes,
                                             failures);
        scale = std::max(scale, grown[run]);
      }
    }
    // Run r + 1 grows from run r; run 0 is a change; the two oldest merge into the last.
    const double keep = 1.0 - change_rate_;
    const std::size_t last = runs - 1;
    const std::size_t last_cell = at(last, entry);
    const double oldest = keep * weight_[last_cell] * std::exp(grown[last] - scale);
    const double old_last[3] = {prior_weight_[last_cell], successes_[last_cell],
                                failures_[last_cell]};
    for (std::size_t run = last; run >= 1; --run) {
      const std::size_t cell = at(run, entry);
      const std::size_t previous = at(run - 1, entry);
      weight_[cell] = keep * weight_[previous] * std::exp(grown[run - 1] - scale);
      prior_weight_[cell] = prior_weight_[previous];
      successes_[cell] = successes_[previous];
      failures_[cell] = failures_[previous];
    }
    const std::size_t first = at(0, entry);
    weight_[first] = change_rate_ * old_total * std::exp(fresh - scale);
    prior_weight_[first] = strength;
    successes_[first] = 0.0;
    failures_[first] = 0.0;
    const double merged = weight_[last_cell] + oldest;
    if (merged > 0.0) {
      double* values[3] = {&prior_weight_[last_cell], &successes_[last_cell],
                           &failures_[last_cell]};
      for (int k = 0; k < 3; ++k) {
        *values[k] = (weight_[last_cell] * *values[k] + oldest * old_last[k]) / merged;
      }
    }
    weight_[last_cell] = merged;
    double total = 0.0;
    for (std::size_t run = 0; run < runs; ++run) total += weight_[at(run, entry)];
    for (std::size_t run = 0; run < runs; ++run) weight_[at(run, entry)] /= total;
  }
  const double decay = std::pow(discount_, static_cast<double>(draws));
  for (std::size_t run = 0; run < runs_; ++run) {
    const std::size_t cell = at(run, entry);
    prior_weight_[cell] *= decay;
    successes_[cell] = decay * successes_[cell] + static_cast<double>(successes);
    failures_[cell] = decay * failures_[cell] + static_cast<double>(failures);
  }
}

void RatePosteriors::run_posterior(std::size_t run, std::size_t entry, double& mean,
                                   double& size) const {
  const std::size_t cell = at(run, entry);
  size = prior_weight_[cell] + successes_[cell] + failures_[cell];
  mean = size > 0.0 ? (prior_weight_[cell] * prior_[entry] + successes_[cell]) / size : 0.0;
}

std::vector<double> RatePosteriors::means() const {
  std::vector<double> result(prior_.size(), 0.0);
  for (std::size_t entry = 0; entry < prior_.size(); ++entry) {
    for (std::size_t run = 0; run < runs_; ++run) {
      double mean = 0.0;
      double size = 0.0;
      run_posterior(run, entry, mean, size);
      result[entry] += weight_[at(run, entry)] * mean;
    }
  }
  return result;
}

std::vector<double> RatePosteriors::stds() const {
  std::vector<double> result(prior_.size(), 0.0);
  for (std::size_t entry = 0; entry < prior_.size(); ++entry) {
    double first = 0.0;
    double second = 0.0;
    for (std::size_t run = 0; run < runs_; ++run) {
      double mean = 0.0;
      double size = 0.0;
      run_posterior(run, entry, mean, size);
      const double weight = weight_[at(run, entry)];
      first += weight * mean;
      second += weight * (mean * (1.0 - mean) / (size + 1.0) + mean * mean);
    }
    result[entry] = std::sqrt(std::max(second - first * first, 0.0));
  }
  return result;
}

std::vector<double> RatePosteriors::evidence() const {
  std::vector<double> result(prior_.size(), 0.0);
  for (std::size_t entry = 0; entry < prior_.size(); ++entry) {
    for (std::size_t run = 0; run < runs_; ++run) {
      const std::size_t cell = at(run, entry);
      result[entry] += weight_[cell] * (successes_[cell] + failures_[cell]);
    }
  }
  return result;
}

}  // namespace hierspec
