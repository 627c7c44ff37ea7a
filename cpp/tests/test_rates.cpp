// RatePosteriors: the single discounted posterior, the exact posterior over change points
// (brute force over every set of change points), the merge of the oldest runs, and errors.
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "check.hpp"
#include "hierspec/rates.hpp"

using hierspec::RatePosteriors;

namespace {

// Observations as (successes, failures), successes first.
using Outcomes = std::vector<std::pair<long, long>>;

// Every set of change points before the observations (each with probability change_rate),
// each segment's rate Beta(strength rate, strength (1 - rate)) a priori: the posterior mean
// and standard deviation of the last segment's rate.
std::pair<double, double> segmentation_posterior(const Outcomes& outcomes, double rate,
                                                 double strength, double change_rate) {
  double total = 0.0, weighted = 0.0, second = 0.0;
  const std::size_t n = outcomes.size();
  for (unsigned mask = 0; mask < (1u << n); ++mask) {
    double probability = 1.0, successes = 0.0, failures = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      const bool changed = (mask >> i) & 1u;
      probability *= changed ? change_rate : 1.0 - change_rate;
      if (changed) successes = failures = 0.0;
      double alpha = strength * rate + successes, beta = strength * (1.0 - rate) + failures;
      for (long k = 0; k < outcomes[i].first; ++k, alpha += 1.0) {
        probability *= alpha / (alpha + beta);
      }
      for (long k = 0; k < outcomes[i].second; ++k, beta += 1.0) {
        probability *= beta / (alpha + beta);
      }
      successes += static_cast<double>(outcomes[i].first);
      failures += static_cast<double>(outcomes[i].second);
    }
    const double alpha = strength * rate + successes, size = strength + successes + failures;
    total += probability;
    weighted += probability * alpha / size;
    second += probability * alpha * (alpha + 1.0) / (size * (size + 1.0));
  }
  const double mean = weighted / total;
  return {mean, std::sqrt(second / total - mean * mean)};
}

}  // namespace

TEST(change_rate_zero_is_the_discounted_beta_posterior) {
  RatePosteriors posteriors({0.8, 0.3}, {5.0, 2.0}, 0.9);
  CHECK(posteriors.runs() == 1);
  double prior_weight = 5.0, successes = 0.0, failures = 0.0;
  const Outcomes outcomes = {{3, 1}, {0, 1}, {5, 0}, {2, 1}, {1, 0}};
  for (const auto& [s, f] : outcomes) {
    posteriors.observe(0, s, f);
    const double decay = std::pow(0.9, static_cast<double>(s + f));
    prior_weight *= decay;
    successes = decay * successes + static_cast<double>(s);
    failures = decay * failures + static_cast<double>(f);
  }
  const double size = prior_weight + successes + failures;
  const double mean = (prior_weight * 0.8 + successes) / size;
  CHECK_CLOSE(posteriors.means()[0], mean, 1e-12);
  CHECK_CLOSE(posteriors.stds()[0], std::sqrt(mean * (1.0 - mean) / (size + 1.0)), 1e-12);
  CHECK_CLOSE(posteriors.evidence()[0], successes + failures, 1e-12);
  // The other entry saw nothing: its prior.
  CHECK(posteriors.means()[1] == 0.3);
  CHECK(posteriors.evidence()[1] == 0.0);
  CHECK_CLOSE(posteriors.stds()[1], std::sqrt(0.3 * 0.7 / 3.0), 1e-12);
}

TEST(change_points_give_the_exact_posterior_over_them) {
  const Outcomes outcomes = {{5, 0}, {5, 0}, {0, 1}, {0, 1}, {2, 1}, {5, 0}, {1, 1}};
  for (double change_rate : {0.05, 0.3}) {
    RatePosteriors posteriors({0.4}, {3.0}, 1.0, change_rate, 16);
    Outcomes seen;
    for (const auto& outcome : outcomes) {
      posteriors.observe(0, outcome.first, outcome.second);
      seen.push_back(outcome);
      const auto [mean, std] = segmentation_posterior(seen, 0.4, 3.0, change_rate);
      CHECK_CLOSE(posteriors.means()[0], mean, 1e-9);
      CHECK_CLOSE(posteriors.stds()[0], std, 1e-9);
    }
  }
}

TEST(the_oldest_runs_merge_beyond_max_runs) {
  // Two runs kept: weights stay a distribution (the mean within the range of the run means)
  // and the evidence within the draws seen.
  RatePosteriors posteriors({0.5}, {4.0}, 1.0, 0.2, 2);
  CHECK(posteriors.runs() == 2);
  double draws = 0.0;
  double after_copy = 0.0;
  for (int i = 0; i < 40; ++i) {
    if (i == 20) after_copy = posteriors.means()[0];
    const long successes = i < 20 ? 4 : 0;
    posteriors.observe(0, successes, 1);
    draws += static_cast<double>(successes + 1);
    const double mean = posteriors.means()[0];
    CHECK(mean > 0.0 && mean < 1.0);
    CHECK(posteriors.evidence()[0] <= draws + 1e-9);
  }
  CHECK(posteriors.means()[0] < 0.5 * after_copy);  // follows the drop after the first 20
}

TEST(no_draws_change_nothing) {
  RatePosteriors posteriors({0.6}, {2.0}, 0.5, 0.1);
  posteriors.observe(0, 0, 0);
  CHECK(posteriors.means()[0] == 0.6);
  CHECK(posteriors.evidence()[0] == 0.0);
}

TEST(rate_posteriors_errors) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH(RatePosteriors({0.5}, {1.0, 2.0}, 1.0),
                    "prior and strength must have the same size >= 1, got 1 and 2");
  CHECK_THROWS_WITH(RatePosteriors({}, {}, 1.0), "same size >= 1, got 0 and 0");
  CHECK_THROWS_WITH(RatePosteriors({0.5}, {1.0}, 1.0, 1.0), "change_rate must be in [0, 1), got 1");
  CHECK_THROWS_WITH(RatePosteriors({0.5}, {1.0}, 1.0, nan), "got nan");
  CHECK_THROWS_WITH(RatePosteriors({0.5}, {1.0}, 1.0, 0.1, 1), "max_runs must be >= 2, got 1");
  CHECK_THROWS_WITH(RatePosteriors({0.5}, {1.0}, 0.0), "discount must be in (0, 1], got 0");
  RatePosteriors posteriors({0.5, 0.5}, {1.0, 1.0}, 1.0);
  CHECK_THROWS_WITH(posteriors.observe(2, 1, 0), "entry 2 is out of range for 2 rates");
  CHECK_THROWS_WITH(posteriors.observe(0, -1, 0), "successes and failures must be >= 0");
  CHECK(posteriors.means()[0] == 0.5);  // nothing corrupted
}

int main() { return check::run_all(); }
