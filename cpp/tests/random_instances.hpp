// Random planning instances shared by the C++ tests.
#pragma once

#include <algorithm>
#include <random>
#include <vector>

#include "hierspec/inputs.hpp"

namespace test_instances {

inline double uniform(std::mt19937_64& generator, double low, double high) {
  return std::uniform_real_distribution<double>(low, high)(generator);
}

inline int uniform_int(std::mt19937_64& generator, int low, int high) {
  return std::uniform_int_distribution<int>(low, high)(generator);
}

// [M][M] with entries above the diagonal in [0, 1], sometimes exactly 0 or 1.
inline hierspec::AcceptanceMatrix random_acceptance(std::mt19937_64& generator, int num_models) {
  hierspec::AcceptanceMatrix acceptance(num_models, std::vector<double>(num_models, 0.0));
  for (int row = 0; row < num_models; ++row) {
    for (int column = row + 1; column < num_models; ++column) {
      const int kind = uniform_int(generator, 0, 9);
      acceptance[row][column] = kind == 0 ? 0.0 : kind == 1 ? 1.0 : uniform(generator, 0.0, 1.0);
    }
  }
  return acceptance;
}

// Early stopping of the bottom level: continue rates often 1, sometimes 0, else random; half
// the time a bottom acceptance matrix of its own (higher than the main one: the drafts a level
// is confident about survive more often).
inline hierspec::EarlyStopping random_early_stopping(std::mt19937_64& generator,
                                                     const hierspec::AcceptanceMatrix& main) {
  const int num_models = static_cast<int>(main.size());
  hierspec::EarlyStopping early_stopping;
  early_stopping.continue_rates.resize(num_models);
  for (double& rate : early_stopping.continue_rates) {
    const int kind = uniform_int(generator, 0, 9);
    rate = kind <= 2 ? 1.0 : kind == 3 ? 0.0 : uniform(generator, 0.3, 1.0);
  }
  if (uniform_int(generator, 0, 1) == 1) {
    early_stopping.acceptance = main;
    for (auto& row : early_stopping.acceptance) {
      for (double& rate : row) rate += (1.0 - rate) * uniform(generator, 0.0, 0.5);
    }
  }
  return early_stopping;
}

// [M][N]: model m costs about 4^m per pass, times a random per-n factor in [0.5, 2] (so the
// tables are not monotone in n), sometimes affine in n.
inline hierspec::CostTable random_costs(std::mt19937_64& generator, int num_models,
                                        int num_columns) {
  hierspec::CostTable costs(num_models, std::vector<double>(num_columns));
  double scale = 1.0;
  for (int model = 0; model < num_models; ++model) {
    const bool affine = uniform_int(generator, 0, 2) == 0;
    const double base = scale * uniform(generator, 0.5, 2.0);
    const double slope = scale * uniform(generator, 0.0, 0.3);
    for (int column = 0; column < num_columns; ++column) {
      costs[model][column] =
          affine ? base + slope * column : scale * uniform(generator, 0.5, 2.0);
    }
    scale *= uniform(generator, 1.5, 8.0);
  }
  return costs;
}

// A random chain ending at the target with `num_levels` levels below it, and draft lengths.
inline void random_chain(std::mt19937_64& generator, int num_models, int num_levels,
                         int max_draft_length, std::vector<int>& chain,
                         std::vector<int>& draft_lengths) {
  std::vector<int> drafts;
  for (int model = 0; model < num_models - 1; ++model) drafts.push_back(model);
  std::shuffle(drafts.begin(), drafts.end(), generator);
  chain.assign(drafts.begin(), drafts.begin() + num_levels);
  std::sort(chain.begin(), chain.end());
  chain.push_back(num_models - 1);
  draft_lengths.clear();
  for (int level = 0; level < num_levels; ++level) {
    draft_lengths.push_back(uniform_int(generator, 1, max_draft_length));
  }
}

}  // namespace test_instances
