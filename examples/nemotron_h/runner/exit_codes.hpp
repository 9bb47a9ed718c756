// The exit statuses of nemotron_h_run, stated once (main() returns them, --help prints them,
// the CLI tests check them). Host only.
#pragma once

namespace nemotron_h {

/// What nemotron_h_run's exit status means.
enum class exit_code : int {
  ok = 0,            ///< the run (or --dry-run, --help, --version) finished
  check_failed = 1,  ///< --check or --mode compare found a disagreement
  usage = 2,         ///< bad arguments: unknown option, bad value, --buckets not increasing, ...
  bad_input = 3,     ///< bad config.json, checkpoint, prompt ids or output path
  no_gpu = 4,        ///< every check passed, but no usable CUDA GPU
  failed = 5,        ///< an error while running on the GPU (a CUDA error, out of memory)
};

/// The table --help prints: one line a status.
inline constexpr const char* kExitCodeHelp =
    "Exit status:\n"
    "  0  ok (also --dry-run, --help, --version)\n"
    "  1  check failed (--check, or --mode compare found the modes disagreeing)\n"
    "  2  usage error (unknown option, bad value, --buckets not increasing, ...)\n"
    "  3  bad input (config.json, checkpoint headers, prompt ids, output paths)\n"
    "  4  no usable CUDA GPU (reached only after every check passed; --dry-run needs none)\n"
    "  5  failure while running on the GPU (CUDA error, out of device memory)\n";

}  // namespace nemotron_h
