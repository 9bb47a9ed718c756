// Bucket generation, pick(n) (exhaustively against a brute-force reference), the padding
// bound, validation and the overflow policies.
#include <catch2/catch.hpp>

#include <algorithm>

#include "piecewise/buckets.hpp"

using piecewise::capture_buckets;
using piecewise::overflow_policy;

namespace {
int brute_pick(const std::vector<int>& sizes, long long n) {
  for (int s : sizes)
    if (s >= n) return s;
  return 0;
}
void check_exhaustive(const capture_buckets& b, int granularity, int per_octave) {
  for (long long n = 1; n <= b.largest(); ++n) {
    const piecewise::bucket_pick pk = b.pick(n);
    const int p = pk.size;
    REQUIRE(p == brute_pick(b.sizes(), n));
    REQUIRE(!pk.above_largest());
    REQUIRE(b.sizes()[static_cast<std::size_t>(pk.index)] == p);
    REQUIRE(pk.count == n);
    // The documented padding bound: pick(n) - n < max(granularity, n / per_octave).
    REQUIRE(static_cast<double>(p - n) < std::max<double>(granularity, static_cast<double>(n) / per_octave));
  }
}
}  // namespace

TEST_CASE("default prefill buckets: sizes, pick and the padding bound, exhaustively") {
  const auto b = capture_buckets::default_prefill();
  REQUIRE(b.largest() == 8192);
  REQUIRE(b.smallest() == 8);
  REQUIRE(b.count() == 36);
  REQUIRE(std::is_sorted(b.sizes().begin(), b.sizes().end()));
  check_exhaustive(b, 8, 4);
  // Relative waste below 25% once n >= 32.
  for (int n = 32; n <= b.largest(); ++n) REQUIRE(b.pick(n).size - n < 0.25 * n);
}

TEST_CASE("default decode buckets: exact up to 8, bounded waste above, exhaustively") {
  const auto b = capture_buckets::default_decode();
  REQUIRE(b.largest() == 256);
  REQUIRE(b.count() == 28);
  for (int n = 1; n <= 8; ++n) REQUIRE(b.pick(n).size == n);
  check_exhaustive(b, 1, 4);
  REQUIRE(b.worst_padding_ratio() < 0.25);
}

TEST_CASE("geometric generator for other shapes keeps its bound") {
  for (int largest : {1, 7, 100, 1000, 4096, 5000, 70000}) {
    for (int g : {1, 4, 16}) {
      for (int k : {1, 2, 8}) {
        const auto b = capture_buckets::geometric(largest, g, k);
        REQUIRE(b.largest() == largest);
        if (largest <= 5000) check_exhaustive(b, g, k);
      }
    }
  }
  // Above the table limit pick uses binary search: spot-check it.
  const auto big = capture_buckets::geometric(70000, 16, 4);
  for (long long n : {1LL, 17LL, 65535LL, 65536LL, 65537LL, 69999LL, 70000LL})
    REQUIRE(big.pick(n).size == brute_pick(big.sizes(), n));
}

TEST_CASE("custom lists are validated") {
  REQUIRE_NOTHROW(capture_buckets({1, 2, 3, 100}));
  REQUIRE_THROWS_WITH(capture_buckets(std::vector<int>{}), Catch::Contains("empty"));
  REQUIRE_THROWS_WITH(capture_buckets({4, 0, 8}), Catch::Contains("size #1 is 0"));
  REQUIRE_THROWS_WITH(capture_buckets({-3}), Catch::Contains("positive"));
  REQUIRE_THROWS_WITH(capture_buckets({4, 8, 8}), Catch::Contains("sorted and unique"));
  REQUIRE_THROWS_WITH(capture_buckets({16, 8}), Catch::Contains("size #1 (8) follows 16"));
  REQUIRE_THROWS_AS(capture_buckets::geometric(0, 1, 1), piecewise::config_error);
  REQUIRE_THROWS_WITH(capture_buckets::geometric(64, 1, 3), Catch::Contains("power of two"));
}

TEST_CASE("pick: non-positive counts are errors, above the largest is a value and the policy decides") {
  const capture_buckets eager({8, 16, 32});
  REQUIRE_THROWS_AS(eager.pick(0), piecewise::config_error);
  REQUIRE_THROWS_WITH(eager.pick(-5), Catch::Contains("-5"));
  const piecewise::bucket_pick above = eager.pick(33);
  REQUIRE(above.above_largest());
  REQUIRE(above.index == -1);
  REQUIRE(above.size == 0);
  REQUIRE(above.count == 33);
  REQUIRE_NOTHROW(eager.check_overflow(33));  // policy eager: the caller runs it eagerly
  REQUIRE(eager.pick(32).size == 32);
  REQUIRE(eager.pick(32).index == 2);
  REQUIRE(eager.pick(17).size == 32);
  REQUIRE(eager.pick(16).size == 16);
  REQUIRE(eager.pick(16).index == 1);
  REQUIRE(eager.pick(1).size == 8);
  REQUIRE(eager.pick(1).index == 0);

  const capture_buckets chunk({8, 16, 32}, overflow_policy::chunk);
  REQUIRE(chunk.pick(32).size == 32);
  REQUIRE(chunk.pick(100).above_largest());  // pick itself never throws for a large n
  try {
    chunk.check_overflow(100);
    FAIL("expected bucket_overflow");
  } catch (const piecewise::bucket_overflow& e) {
    REQUIRE(e.requested() == 100);
    REQUIRE(e.largest() == 32);
    REQUIRE_THAT(e.what(), Catch::Contains("100") && Catch::Contains("32") && Catch::Contains("chunk"));
  }
  REQUIRE(chunk.chunks(100) == std::vector<int>{32, 32, 32, 4});
  REQUIRE(chunk.chunks(32) == std::vector<int>{32});
  REQUIRE_THROWS(chunk.chunks(0));
}

TEST_CASE("index_of, worst padding and to_string") {
  const capture_buckets b({1, 2, 4, 8});
  REQUIRE(b.index_of(4) == 2);
  REQUIRE(b.index_of(3) == -1);
  REQUIRE(b.worst_padding_ratio() == Approx(0.6));  // n = 5 -> 8
  REQUIRE_THAT(b.to_string(), Catch::Contains("4 sizes [1, 2, 4, 8]") && Catch::Contains("eager"));
}
