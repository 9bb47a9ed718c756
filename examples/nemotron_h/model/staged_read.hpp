// Parallel file reads through a small ring of staging buffers: the host half of the
// checkpoint upload (runner/device_weights.cpp streams a safetensors checkpoint into the GPU
// with it). Reader threads pread() chunks of the file ranges into their staging slots and
// hand each filled slot to a sink (the GPU side: an asynchronous copy); before a slot is
// refilled the sink is asked to wait until its previous copy has finished. No model is ever
// materialised on the host: at most threads x slots_per_thread x chunk_bytes are in flight.
//
// Host only, C++17, POSIX (pread); nothing here touches the GPU.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace nemotron_h {

/// One range of a file to copy to `dst` (an offset in the sink's destination space).
struct read_job {
  int fd = -1;
  std::uint64_t offset = 0;  ///< absolute byte offset in the file
  std::uint64_t bytes = 0;
  std::uint64_t dst = 0;
  std::string what;  ///< for messages: "<file>: tensor '<name>'"
};

/// A piece of a job of at most the chunk size.
struct read_chunk {
  std::size_t job = 0;
  std::uint64_t offset = 0;  ///< absolute file offset
  std::uint64_t bytes = 0;
  std::uint64_t dst = 0;
};

/// Splits the jobs (in order) into chunks of at most `chunk_bytes` (> 0; else
/// piecewise::config_error). Empty jobs give no chunk.
std::vector<read_chunk> split_read_jobs(const std::vector<read_job>& jobs, std::uint64_t chunk_bytes);

/// Where filled staging slots go.
class staging_sink {
 public:
  virtual ~staging_sink() = default;
  /// Blocks until the last submit() out of `slot` no longer reads it.
  virtual void wait(int slot) = 0;
  /// Consumes `bytes` at `src` (slot `slot`, filled by reader thread `thread`) into `dst`.
  virtual void submit(int thread, int slot, const void* src, std::uint64_t dst, std::uint64_t bytes) = 0;
};

/// Options of staged_read.
struct staged_read_options {
  int threads = 4;                             ///< reader threads (>= 1)
  int slots_per_thread = 2;                    ///< >= 1; 2 overlaps a read with the previous copy
  std::uint64_t chunk_bytes = std::uint64_t(64) << 20;  ///< slot size
};

/// Reads every job through the slots (`slots[t * slots_per_thread + k]`, each at least
/// chunk_bytes, provided by the caller: pinned memory for the GPU) into the sink, `threads`
/// readers taking chunks in order. Returns after every chunk has been submitted (the sink's
/// copies may still be in flight). Throws piecewise::config_error naming the job's `what` and
/// the offset when a read fails or the file ends early (the file changed after its header was
/// checked), and for bad options or too few slots; the first error stops every thread. An
/// exception thrown by the sink is rethrown.
void staged_read(const std::vector<read_job>& jobs, const std::vector<void*>& slots, staging_sink& sink,
                 const staged_read_options& opt);

}  // namespace nemotron_h
