// nh_tokenizer_bench: encode throughput of the C++ tokenizer on one core.
//
//   nh_tokenizer_bench TOKENIZER_JSON TEXT_FILE [--repeat N] [--lines]
//
// Encodes the whole file as one string (or, with --lines, each line as its own call) N times
// (default 5) on this thread, and prints the first (cold word cache) and best times, MB/s,
// the token count and an FNV-1a hash of the ids. bench/hf_tokenizer_bench.py prints the same
// for Hugging Face `tokenizers`, so the two can be compared side by side (the hashes must be
// equal).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include "piecewise/error.hpp"
#include "text/tokenizer.hpp"

namespace {

std::uint64_t fnv1a(std::uint64_t h, std::uint32_t id) {
  for (int i = 0; i < 4; ++i) {
    h ^= (id >> (8 * i)) & 0xFF;
    h *= 0x100000001b3ull;
  }
  return h;
}

int usage() {
  std::fprintf(stderr, "usage: nh_tokenizer_bench TOKENIZER_JSON TEXT_FILE [--repeat N] [--lines]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return usage();
  int repeat = 5;
  bool lines = false;
  for (int i = 3; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--lines") lines = true;
    else if (a == "--repeat" && i + 1 < argc) repeat = std::atoi(argv[++i]);
    else return usage();
  }
  if (repeat < 1) return usage();
  try {
    const auto t0 = std::chrono::steady_clock::now();
    const nemotron_h::text::tokenizer tok = nemotron_h::text::tokenizer::from_file(argv[1]);
    const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::FILE* f = std::fopen(argv[2], "rb");
    if (f == nullptr) throw piecewise::config_error(std::string(argv[2]) + ": cannot open the text file");
    std::string text;
    char buf[1 << 16];
    for (std::size_t n; (n = std::fread(buf, 1, sizeof(buf), f)) > 0;) text.append(buf, n);
    std::fclose(f);
    std::vector<std::string_view> pieces;
    if (lines) {  // each line with its '\n', as Python's str.splitlines(keepends=True) for '\n'
      std::size_t b = 0;
      for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '\n') {
          pieces.push_back(std::string_view(text).substr(b, i + 1 - b));
          b = i + 1;
        }
      }
      if (b < text.size()) pieces.push_back(std::string_view(text).substr(b));
    } else {
      pieces.push_back(text);
    }
    double first = 0, best = 1e30;
    std::size_t count = 0;
    std::uint64_t hash = 0;
    for (int r = 0; r < repeat; ++r) {
      std::uint64_t h = 0xcbf29ce484222325ull;
      std::size_t c = 0;
      const auto s = std::chrono::steady_clock::now();
      for (std::string_view p : pieces) {
        const auto ids = tok.encode(p);
        c += ids.size();
        for (std::uint32_t id : ids) h = fnv1a(h, id);
      }
      const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - s).count();
      if (r == 0) first = dt, count = c, hash = h;
      if (c != count || h != hash) throw piecewise::config_error("the ids changed between repeats (a bug)");
      best = std::min(best, dt);
    }
    const double mb = static_cast<double>(text.size()) / 1e6;
    std::printf("nh_tokenizer_bench: %s, %.2f MB (%s), load %.2f s\n", argv[2], mb, lines ? "per line" : "one string", load_s);
    std::printf("  tokens %zu  ids_fnv1a %016llx\n", count, static_cast<unsigned long long>(hash));
    std::printf("  first %.3f s (%.2f MB/s)  best of %d %.3f s (%.2f MB/s)\n", first, mb / first, repeat, best, mb / best);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nh_tokenizer_bench: %s\n", e.what());
    return 1;
  }
}
