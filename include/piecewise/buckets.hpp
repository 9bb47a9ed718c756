// piecewise/buckets.hpp — padded-batch capture sizes ("buckets") and pick(n).
//
// A capture_buckets holds a validated, sorted list of sizes (token counts for prefill,
// batch sizes for decode). pick(n) returns the smallest size >= n in constant time (a
// lookup table up to the largest size; binary search above 65536). What happens to an n
// above the largest size is an explicit policy: run eagerly (the runner counts every such
// fallback) or make the caller chunk (bucket_overflow is thrown); pick(n) reports "above the
// largest" as a value and check_overflow() applies the policy.
//
// Generated lists (`geometric`, `default_prefill`, `default_decode`) have a documented
// padding bound: for every 1 <= n <= largest,
//     pick(n) - n < max(granularity, n / per_octave)          (strictly)
// so the relative waste is below 1/per_octave once n >= granularity * per_octave.
// All functions are host-only and capture-safe.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "piecewise/error.hpp"

namespace piecewise {

/// What to do with a count above the largest bucket.
enum class overflow_policy {
  eager,  ///< run the forward eagerly (unpadded) and count the fallback
  chunk,  ///< the caller must split the work: check_overflow() throws bucket_overflow
};

/// The result of capture_buckets::pick(n): bucket `index` of sizes() (size `size`), or
/// above the largest bucket (index -1, size 0).
struct bucket_pick {
  long long count = 0;  ///< the n asked for
  int index = -1;       ///< position in sizes(); -1 when n is above the largest size
  int size = 0;         ///< the bucket size; 0 when n is above the largest size
  [[nodiscard]] bool above_largest() const noexcept { return index < 0; }
};

class capture_buckets {
 public:
  /// Validates a custom list: non-empty, every size positive, strictly increasing (sorted,
  /// unique). Throws config_error naming the offending entry.
  explicit capture_buckets(std::vector<int> sizes, overflow_policy policy = overflow_policy::eager)
      : sizes_(std::move(sizes)), policy_(policy) {
    PIECEWISE_EXPECTS(!sizes_.empty(), "capture_buckets: the size list is empty");
    for (std::size_t i = 0; i < sizes_.size(); ++i) {
      PIECEWISE_EXPECTS(sizes_[i] > 0, "capture_buckets: size #{} is {}, sizes must be positive", i,
                        sizes_[i]);
      PIECEWISE_EXPECTS(i == 0 || sizes_[i] > sizes_[i - 1],
                        "capture_buckets: sizes must be sorted and unique, but size #{} ({}) "
                        "follows {}",
                        i, sizes_[i], sizes_[i - 1]);
    }
    build_table();
  }

  /// Sizes g, 2g, ... growing by step(s) = max(g, floor_pow2(s) / per_octave), up to and
  /// including `largest` (always the last size). Padding bound: see the file comment.
  /// Throws config_error for non-positive arguments or per_octave not a power of two.
  static capture_buckets geometric(int largest, int granularity, int per_octave,
                                   overflow_policy policy = overflow_policy::eager) {
    PIECEWISE_EXPECTS(largest > 0 && granularity > 0 && per_octave > 0,
                      "capture_buckets::geometric: largest ({}), granularity ({}) and per_octave "
                      "({}) must be positive",
                      largest, granularity, per_octave);
    PIECEWISE_EXPECTS((per_octave & (per_octave - 1)) == 0,
                      "capture_buckets::geometric: per_octave ({}) must be a power of two",
                      per_octave);
    std::vector<int> s;
    long long v = granularity;
    while (v < largest) {
      s.push_back(static_cast<int>(v));
      long long fp2 = 1;
      while (fp2 * 2 <= v) fp2 *= 2;
      v += std::max<long long>(granularity, fp2 / per_octave);
    }
    s.push_back(largest);
    return capture_buckets(std::move(s), policy);
  }

  /// Token-count buckets for prefill: granularity 8, 4 per octave, up to `largest`
  /// (default 8192: 36 sizes). Waste < max(8 tokens, 25%).
  static capture_buckets default_prefill(int largest = 8192,
                                         overflow_policy policy = overflow_policy::eager) {
    return geometric(largest, 8, 4, policy);
  }

  /// Batch-size buckets for decode: granularity 1, 4 per octave, up to `largest`
  /// (default 256: 28 sizes). Waste < max(1, 25%): exact sizes up to 8.
  static capture_buckets default_decode(int largest = 256,
                                        overflow_policy policy = overflow_policy::eager) {
    return geometric(largest, 1, 4, policy);
  }

  /// The bucket of n: the smallest size >= n (its size and its index in sizes()), or, for
  /// n > largest(), a pick that says so (above_largest()). What to do then is the overflow
  /// policy's business, decided by whoever runs the work (graph_runner: eager fallback or
  /// bucket_overflow); pick itself never throws for a large n. Throws config_error for
  /// n <= 0. O(1) for largest() <= 65536, else O(log sizes).
  [[nodiscard]] bucket_pick pick(long long n) const {
    if (n <= 0) throw config_error(fmt::format("capture_buckets::pick: count {} must be positive", n));
    if (n > sizes_.back()) return bucket_pick{n, -1, 0};
    const int idx = !table_.empty()
                        ? static_cast<int>(table_[static_cast<std::size_t>(n)])
                        : static_cast<int>(std::lower_bound(sizes_.begin(), sizes_.end(), static_cast<int>(n)) -
                                           sizes_.begin());
    return bucket_pick{n, idx, sizes_[static_cast<std::size_t>(idx)]};
  }

  /// Throws bucket_overflow when the policy is chunk (the one place the policy is enforced);
  /// returns normally under overflow_policy::eager. Call only for n > largest().
  void check_overflow(long long n) const {
    if (policy_ == overflow_policy::chunk) {
      throw bucket_overflow(n, sizes_.back(),
                            fmt::format("capture_buckets: count {} exceeds the largest capture size {} "
                                        "and the policy is 'chunk': split the work into chunks of at "
                                        "most {}",
                                        n, sizes_.back(), sizes_.back()));
    }
  }

  /// Index of `size` in sizes(), or -1.
  [[nodiscard]] int index_of(int size) const noexcept {
    auto it = std::lower_bound(sizes_.begin(), sizes_.end(), size);
    return (it != sizes_.end() && *it == size) ? static_cast<int>(it - sizes_.begin()) : -1;
  }

  /// Splits n into chunks of at most largest(): full chunks first, then the remainder.
  [[nodiscard]] std::vector<int> chunks(long long n) const {
    PIECEWISE_EXPECTS(n > 0, "capture_buckets::chunks: count {} must be positive", n);
    std::vector<int> out;
    for (long long left = n; left > 0; left -= sizes_.back())
      out.push_back(static_cast<int>(std::min<long long>(left, sizes_.back())));
    return out;
  }

  [[nodiscard]] const std::vector<int>& sizes() const noexcept { return sizes_; }
  [[nodiscard]] int largest() const noexcept { return sizes_.back(); }
  [[nodiscard]] int smallest() const noexcept { return sizes_.front(); }
  [[nodiscard]] std::size_t count() const noexcept { return sizes_.size(); }
  [[nodiscard]] overflow_policy policy() const noexcept { return policy_; }

  /// The largest padding ratio (pick(n) - n) / n over 1 <= n <= largest(). O(largest).
  [[nodiscard]] double worst_padding_ratio() const {
    double worst = 0;
    int prev = 0;
    for (int s : sizes_) {
      // The worst n in (prev, s] is prev + 1.
      worst = std::max(worst, static_cast<double>(s - (prev + 1)) / (prev + 1));
      prev = s;
    }
    return worst;
  }

  [[nodiscard]] std::string to_string() const {
    return fmt::format("{} sizes [{}], overflow: {}", sizes_.size(), fmt::join(sizes_, ", "),
                       policy_ == overflow_policy::eager ? "eager fallback" : "caller chunks");
  }

 private:
  static constexpr int kTableLimit = 65536;

  void build_table() {
    if (sizes_.back() > kTableLimit) return;
    table_.assign(static_cast<std::size_t>(sizes_.back()) + 1, 0);
    std::uint16_t idx = 0;
    for (int n = 1; n <= sizes_.back(); ++n) {
      while (sizes_[idx] < n) ++idx;
      table_[static_cast<std::size_t>(n)] = idx;
    }
  }

  std::vector<int> sizes_;
  std::vector<std::uint16_t> table_;  // n -> index of pick(n), for n in [1, largest]
  overflow_policy policy_;
};

}  // namespace piecewise
