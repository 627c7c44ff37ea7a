#include "renewal.hpp"

#include <algorithm>

namespace hierspec::detail {

std::vector<double> bottom_batch_law(double continue_rate, int draft_length) {
  std::vector<double> law(static_cast<std::size_t>(draft_length) + 1, 0.0);
  double power = 1.0;  // rho^g
  for (int batch = 0; batch < draft_length; ++batch) {
    law[batch] = power * (1.0 - continue_rate);
    power *= continue_rate;
  }
  law[draft_length] = power;
  return law;
}

double bottom_expected_passes(double continue_rate, int draft_length) {
  double passes = 0.0, power = 1.0;
  for (int pass = 1; pass <= draft_length; ++pass) {
    passes += power;
    power *= continue_rate;
  }
  return passes;
}

std::vector<double> output_law(double acceptance, int batch_length) {
  std::vector<double> law(static_cast<std::size_t>(batch_length) + 2, 0.0);
  double power = 1.0;  // a^(o-1)
  for (int output = 1; output <= batch_length; ++output) {
    law[output] = power * (1.0 - acceptance);
    power *= acceptance;
  }
  law[batch_length + 1] = power;  // a^G: every draft accepted, plus the bonus token
  return law;
}

std::vector<double> renewal_density(const std::vector<double>& output_law, int s_max) {
  const int max_output = static_cast<int>(output_law.size()) - 1;  // G + 1
  std::vector<double> density(static_cast<std::size_t>(s_max) + 1, 0.0);
  density[0] = 1.0;
  for (int s = 1; s <= s_max; ++s) {
    double total = 0.0;
    for (int output = 1; output <= std::min(s, max_output); ++output) {
      total += density[s - output] * output_law[output];
    }
    density[s] = total;
  }
  return density;
}

void renewal_density_geometric(double acceptance, int batch_length, int s_max,
                               std::vector<double>& density) {
  density.assign(static_cast<std::size_t>(s_max) + 1, 0.0);
  double power_g = 1.0;  // a^G
  for (int k = 0; k < batch_length; ++k) power_g *= acceptance;
  density[0] = 1.0;
  double window = 0.0;  // S(s)
  for (int s = 1; s <= s_max; ++s) {
    const int dropped = s - 1 - batch_length;  // index leaving the window
    const double f_dropped = dropped >= 0 ? density[dropped] : 0.0;
    window = density[s - 1] + acceptance * window - power_g * f_dropped;
    density[s] = (1.0 - acceptance) * window + power_g * f_dropped;
  }
}

std::vector<double> end_point_law(const std::vector<double>& density,
                                  const std::vector<double>& output_law, int threshold) {
  const int max_output = static_cast<int>(output_law.size()) - 1;  // G + 1
  std::vector<double> law(static_cast<std::size_t>(max_output), 0.0);
  for (int s = std::max(0, threshold + 1 - max_output); s <= threshold; ++s) {
    for (int output = threshold + 1 - s; output <= max_output; ++output) {
      law[s + output - threshold - 1] += density[s] * output_law[output];
    }
  }
  return law;
}

std::vector<double> expected_outputs_by_pass_length(double acceptance, int max_e) {
  std::vector<double> outputs(static_cast<std::size_t>(max_e) + 1, 0.0);
  for (int e = 1; e <= max_e; ++e) outputs[e] = 1.0 + acceptance * outputs[e - 1];
  return outputs;
}

}  // namespace hierspec::detail
