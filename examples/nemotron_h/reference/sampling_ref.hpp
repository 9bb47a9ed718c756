// float64 CPU reference of token sampling (kernels/sampling.cuh): the kept set of the
// temperature -> top-k -> top-p -> min-p filters, the probability of each kept token, and the
// draw with the same counter-based uniforms as the GPU (kernels/sampling_rng.hpp).
//
// Definitions (the GPU kernel implements exactly these; see sampling.cu):
//  - only finite logits are candidates (NaN, -inf never kept); the row is sampled greedily
//    (greedy_id, argmax_rows' rule) when temperature <= 0 or the largest non-NaN logit is not
//    finite (all NaN, all -inf, or a +inf);
//  - p_i = exp((l_i - max) / T) over the kept set, renormalised;
//  - top-k (0 < k < number of finite logits): keep l >= the k-th largest finite logit (ties kept);
//  - top-p (top_p < 1): over the top-k survivors, M(v) = mass of the survivors with l >= v over
//    their total Z; keep l >= the largest logit value v with M(v) >= top_p * Z (ties kept);
//  - min-p (min_p > 0, values above 1 act as 1): keep (double(l) - double(max)) >=
//    double(T) * log(double(min_p)), i.e. p >= min_p * p_max;
//  - the kept set is the intersection (every filter is a threshold on the logit value).
#pragma once

#include <cstdint>
#include <vector>

namespace nemotron_h::ref {

struct sampling_options {
  float temperature = 0.0f;
  int top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;
};

struct sampling_filter_result {
  bool greedy = true;        ///< the row is sampled greedily (see above): only greedy_id counts
  int greedy_id = 0;         ///< first index of the largest non-NaN logit; 0 when all are NaN
  std::vector<int> kept;     ///< kept token ids, ascending (empty when greedy)
  std::vector<double> prob;  ///< prob[j]: probability of kept[j] (sums to 1)
  float threshold = 0.0f;    ///< the smallest kept logit (every finite l >= threshold is kept)
  /// Distance of top_p from the nearest cumulative-mass level M(v)/Z (infinity when top-p is
  /// off): the GPU's fixed-point masses decide the top-p boundary like this reference when
  /// this is above ~1e-6.
  double top_p_margin = 0.0;
};

/// The kept set and probabilities of one row of V logits (bf16 values as float).
sampling_filter_result sampling_filter(const float* logits, int V, const sampling_options& o);

/// The token the GPU draws for this row: the greedy id, or the Gumbel-max argmax over the kept
/// set of (l - max) / T - log(-log(u_i)), u_i = sampling_uniform(sampling_stream(seed,
/// position), i), first index on ties. `margin` (if not null) receives the gap between the best
/// and the second-best score (infinity with one candidate): the GPU scores in float, so its
/// draw equals this one whenever the gap is well above float rounding (~1e-5).
int sampling_draw(const float* logits, int V, const sampling_options& o, std::uint64_t seed,
                  std::int64_t position, double* margin = nullptr);

}  // namespace nemotron_h::ref
