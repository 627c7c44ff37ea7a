// Online posteriors of Bernoulli rates (a pair's acceptance, a level's continue rate) from
// counts of successes and failures: the estimator the adaptive decoder updates after every
// verification (python/hierspec/adaptive.py, RatePosteriors), here so that an update costs
// microseconds, not the tens of a dozen small numpy calls.
#pragma once

#include <cstddef>
#include <vector>

namespace hierspec {

/// Posteriors of `prior.size()` Bernoulli rates (the entries; any shape flattened by the
/// caller). Entry e's prior is Beta(n0 p, n0 (1 - p)) with p = prior[e], n0 = strength[e]; the
/// counts and the prior's pseudo-observations are discounted by `discount` per observed draw.
/// With change_rate > 0 each rate may jump before each observation with that probability, to
/// a value drawn from its prior again (Bayesian online change-point detection, Adams and MacKay
/// 2007): the posterior is a mixture over the run length (observations since the last change),
/// one discounted Beta posterior per run length, at most `max_runs` of them (the two oldest
/// merged, weight-averaged, beyond it). With change_rate == 0 there is one run and the mean is
/// (w p + successes) / (w + draws).
class RatePosteriors {
 public:
  /// prior and strength of equal size (>= 1); change_rate in [0, 1); max_runs >= 2 (used only
  /// with change_rate > 0). The values of prior and strength are not checked (entries a caller
  /// never observes may hold anything); std::invalid_argument otherwise.
  RatePosteriors(std::vector<double> prior, std::vector<double> strength, double discount,
                 double change_rate = 0.0, int max_runs = 32);

  /// Draws of rate `entry`: `successes` successes, then `failures` failures (a change point
  /// may fall before them, not between them). std::invalid_argument for an entry >= size()
  /// or a negative count (nothing changed).
  void observe(std::size_t entry, long successes, long failures);

  /// [entries] posterior means (the prior where a rate has no draws).
  std::vector<double> means() const;
  /// [entries] posterior standard deviations of the mixture over the run length: each run's
  /// Beta posterior has variance m (1 - m) / (n + 1) (m its mean, n its discounted
  /// pseudo-observations and draws).
  std::vector<double> stds() const;
  /// [entries] discounted draws, expected over the run length.
  std::vector<double> evidence() const;

  std::size_t size() const { return prior_.size(); }
  /// Run-length hypotheses kept per entry (1 with change_rate == 0).
  std::size_t runs() const { return runs_; }

 private:
  std::size_t at(std::size_t run, std::size_t entry) const { return run * prior_.size() + entry; }
  /// Run r's Beta posterior of entry e: its mean and its pseudo-observations plus draws (0 and
  /// 0 for a hypothesis not in use).
  void run_posterior(std::size_t run, std::size_t entry, double& mean, double& size) const;

  std::vector<double> prior_;
  std::vector<double> strength_;
  double discount_;
  double change_rate_;
  std::size_t runs_;
  // [run][entry]: the hypothesis' posterior weight, the prior's remaining pseudo-observations
  // and the discounted counts.
  std::vector<double> weight_;
  std::vector<double> prior_weight_;
  std::vector<double> successes_;
  std::vector<double> failures_;
};

}  // namespace hierspec
