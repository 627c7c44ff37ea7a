// The renewal quantities of one level (internal; derivations in docs/theory.md §2-§4).
//
// A level verifies batches of fixed length G drafted by the level below with acceptance a.
// One verification outputs O tokens, O in [1, G + 1]:
//   q(o) = a^(o-1) (1 - a)  for 1 <= o <= G,   q(G + 1) = a^G          (policy rule 2)
// The level accumulates s += O until s >= T + 1 (policy rule 3). With f the renewal density
//   f(0) = 1,  f(s) = sum_{o=1}^{min(s, G+1)} f(s - o) q(o)   (probability that s is visited)
// the expected number of verifications per call is E[N](T) = sum_{s=0}^{T} f(s) and the end
// point e = s + O (first s >= T + 1) has P(e) = sum_{s <= T, s + o = e} f(s) q(o).
#pragma once

#include <vector>

namespace hierspec::detail {

/// P(G = g), g = 0..T: the bottom level's batch length when it drafts each of its T positions
/// with probability `continue_rate` (early stopping, policy rule 1):
///   rho^g (1 - rho) for g < T,   rho^T for g = T   (a point mass at T for rho = 1).
std::vector<double> bottom_batch_law(double continue_rate, int draft_length);

/// Expected passes of one bottom call, E[min(G + 1, T)] = sum_{k=1}^{T} rho^(k-1).
double bottom_expected_passes(double continue_rate, int draft_length);

/// q[0..G+1] with q[0] = 0: the law of one verification's output for a batch of length G.
std::vector<double> output_law(double acceptance, int batch_length);

/// For a bottom batch G with the law of bottom_batch_law(rho, T) whose drafts are each accepted
/// with probability a, one verification's output has the law output_law(a * rho, T): for o <= T,
/// P(O = o) = P(G >= o) a^(o-1) (1 - a) + P(G = o - 1) a^(o-1) = (a rho)^(o-1) (1 - a rho), and
/// P(O = T + 1) = (a rho)^T (docs/theory.md §11).

/// f[0..s_max] by direct convolution with q (O(s_max * G)); the reference implementation.
std::vector<double> renewal_density(const std::vector<double>& output_law, int s_max);

/// f[0..s_max] for the truncated-geometric q of output_law(acceptance, batch_length), in
/// O(s_max) with a sliding geometric window (used by the planner):
///   S(s) = sum_{o=1}^{G} a^(o-1) f(s-o) = f(s-1) + a S(s-1) - a^G f(s-1-G),
///   f(s) = (1 - a) S(s) + a^G f(s-1-G).
/// Writes into `density` (resized to s_max + 1).
void renewal_density_geometric(double acceptance, int batch_length, int s_max,
                               std::vector<double>& density);

/// P(e) for e = T+1 .. T+G+1 (index e - T - 1) given f[0..T] and q: the law of the end point
/// of a call with threshold T (the call stops once s >= T + 1; level K-1 uses T = T_{K-1} - 1).
std::vector<double> end_point_law(const std::vector<double>& density,
                                  const std::vector<double>& output_law, int threshold);

/// E[O | L] for one verification of a batch of L = e - 1 tokens: sum_{k=0}^{e-1} a^k
/// (= (1 - a^e) / (1 - a), = e for a = 1), for e = 0..max_e (index e). No division.
std::vector<double> expected_outputs_by_pass_length(double acceptance, int max_e);

}  // namespace hierspec::detail
