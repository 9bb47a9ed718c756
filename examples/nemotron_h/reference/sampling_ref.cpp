// float64 reference of token sampling (see sampling_ref.hpp).
#include "reference/sampling_ref.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

#include "kernels/sampling_rng.hpp"

namespace nemotron_h::ref {

sampling_filter_result sampling_filter(const float* l, int V, const sampling_options& o) {
  sampling_filter_result r;
  r.top_p_margin = std::numeric_limits<double>::infinity();
  int best = -1;
  for (int i = 0; i < V; ++i)
    if (!std::isnan(l[i]) && (best < 0 || l[i] > l[best])) best = i;
  r.greedy_id = best < 0 ? 0 : best;
  if (!(o.temperature > 0.0f) || best < 0 || !std::isfinite(l[best])) return r;
  r.greedy = false;
  const double mx = l[best], T = o.temperature;

  std::vector<float> fin;  // the finite logits, descending
  for (int i = 0; i < V; ++i)
    if (std::isfinite(l[i])) fin.push_back(l[i]);
  std::sort(fin.begin(), fin.end(), std::greater<float>());
  const auto e = [&](float v) { return std::exp((static_cast<double>(v) - mx) / T); };

  float thr = fin.back();
  if (o.top_k > 0 && o.top_k < static_cast<int>(fin.size())) thr = fin[o.top_k - 1];
  if (o.top_p < 1.0f) {
    double Z = 0.0;
    for (float v : fin)
      if (v >= thr) Z += e(v);
    const double target = static_cast<double>(o.top_p) * Z;
    double M = 0.0;
    float thr_p = thr;
    bool found = false;
    for (std::size_t j = 0; j < fin.size() && fin[j] >= thr;) {
      const float v = fin[j];
      for (; j < fin.size() && fin[j] == v; ++j) M += e(v);  // the whole level of value v
      r.top_p_margin = std::min(r.top_p_margin, std::abs(M / Z - static_cast<double>(o.top_p)));
      if (!found && M >= target) {
        thr_p = v;
        found = true;
      }
    }
    thr = std::max(thr, thr_p);
  }
  if (o.min_p > 0.0f) {
    const double lnmp = std::log(static_cast<double>(std::min(o.min_p, 1.0f)));
    // The smallest finite value with (v - max) >= T * ln(min_p) (the maximum always passes).
    float thr_m = static_cast<float>(mx);
    for (float v : fin)
      if (static_cast<double>(v) - mx >= T * lnmp) thr_m = v;
    thr = std::max(thr, thr_m);
  }
  r.threshold = thr;
  double Z = 0.0;
  for (int i = 0; i < V; ++i)
    if (std::isfinite(l[i]) && l[i] >= thr) {
      r.kept.push_back(i);
      r.prob.push_back(e(l[i]));
      Z += r.prob.back();
    }
  for (double& p : r.prob) p /= Z;
  return r;
}

int sampling_draw(const float* l, int V, const sampling_options& o, std::uint64_t seed, std::int64_t position,
                  double* margin) {
  const sampling_filter_result f = sampling_filter(l, V, o);
  if (margin != nullptr) *margin = std::numeric_limits<double>::infinity();
  if (f.greedy) return f.greedy_id;
  const double mx = l[f.greedy_id], T = o.temperature;
  const std::uint64_t stream = sampling_stream(seed, position);
  double best = -std::numeric_limits<double>::infinity(), second = best;
  int best_i = -1;
  for (int i : f.kept) {
    const double u = sampling_uniform(stream, static_cast<std::uint32_t>(i));
    const double s = (static_cast<double>(l[i]) - mx) / T - std::log(-std::log(u));
    if (best_i < 0 || s > best) {
      second = best;
      best = s;
      best_i = i;
    } else if (s > second) {
      second = s;
    }
  }
  if (margin != nullptr && f.kept.size() > 1) *margin = best - second;
  return best_i;
}

}  // namespace nemotron_h::ref
