// Shared helper of the NemotronH libFuzzer targets: an invariant check that aborts (libFuzzer
// then reports a crash and saves the input) instead of throwing.
#pragma once

#include <cstdio>
#include <cstdlib>

/// Aborts with a message when `cond` is false: a parser accepted an input it should reject,
/// or returned a result that breaks its documented guarantees.
#define NH_FUZZ_CHECK(cond)                                                               \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "NH_FUZZ_CHECK failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      std::abort();                                                                       \
    }                                                                                     \
  } while (0)
