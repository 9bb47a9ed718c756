// A consumer of the installed / embedded library: links, builds a table and buckets.
#include <piecewise/piecewise.hpp>

#include <cstdio>

int main() {
  piecewise::segment_table table(4);
  table.set_split(2, {"split", [](const piecewise::split_args&) {}, true, {}});
  const auto buckets = piecewise::capture_buckets::default_decode(64);
  std::printf("%s%s\n", table.to_string().c_str(), buckets.to_string().c_str());
  return buckets.pick(3).size == 3 ? 0 : 1;
}
