// Parallel staged file reads (see staged_read.hpp).
#include "model/staged_read.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>

#include "piecewise/error.hpp"

namespace nemotron_h {

std::vector<read_chunk> split_read_jobs(const std::vector<read_job>& jobs, std::uint64_t chunk_bytes) {
  PIECEWISE_EXPECTS(chunk_bytes > 0, "staged read: the chunk size must be positive");
  std::vector<read_chunk> out;
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    for (std::uint64_t done = 0; done < jobs[j].bytes; done += chunk_bytes) {
      const std::uint64_t n = std::min(chunk_bytes, jobs[j].bytes - done);
      out.push_back({j, jobs[j].offset + done, n, jobs[j].dst + done});
    }
  }
  return out;
}

namespace {

/// pread until `n` bytes are in, or throw naming the job.
void pread_all(const read_job& job, std::uint64_t offset, std::uint64_t n, void* out) {
  auto* p = static_cast<std::uint8_t*>(out);
  std::uint64_t got = 0;
  while (got < n) {
    const ssize_t r = ::pread(job.fd, p + got, static_cast<std::size_t>(n - got), static_cast<off_t>(offset + got));
    if (r < 0) {
      if (errno == EINTR) continue;
      throw piecewise::config_error(
          fmt::format("{}: read failed at byte {}: {}", job.what, offset + got, std::strerror(errno)));
    }
    if (r == 0) {
      throw piecewise::config_error(fmt::format(
          "{}: the file ends at byte {}, the header promised {} (file changed or truncated after it was opened?)",
          job.what, offset + got, job.offset + job.bytes));
    }
    got += static_cast<std::uint64_t>(r);
  }
}

}  // namespace

void staged_read(const std::vector<read_job>& jobs, const std::vector<void*>& slots, staging_sink& sink,
                 const staged_read_options& opt) {
  PIECEWISE_EXPECTS(opt.threads >= 1 && opt.slots_per_thread >= 1,
                    "staged read: threads ({}) and slots_per_thread ({}) must be positive", opt.threads,
                    opt.slots_per_thread);
  PIECEWISE_EXPECTS(slots.size() >= static_cast<std::size_t>(opt.threads) * opt.slots_per_thread,
                    "staged read: {} staging slots for {} threads x {} slots", slots.size(), opt.threads,
                    opt.slots_per_thread);
  const std::vector<read_chunk> chunks = split_read_jobs(jobs, opt.chunk_bytes);
  std::atomic<std::size_t> next{0};
  std::atomic<bool> stop{false};
  std::exception_ptr first;
  std::mutex first_mutex;
  auto reader = [&](int t) {
    try {
      for (int k = 0; !stop.load(std::memory_order_relaxed); ++k) {
        const std::size_t c = next.fetch_add(1);
        if (c >= chunks.size()) break;
        const read_chunk& ch = chunks[c];
        const int slot = t * opt.slots_per_thread + k % opt.slots_per_thread;
        sink.wait(slot);
        pread_all(jobs[ch.job], ch.offset, ch.bytes, slots[static_cast<std::size_t>(slot)]);
        sink.submit(t, slot, slots[static_cast<std::size_t>(slot)], ch.dst, ch.bytes);
      }
    } catch (...) {
      stop = true;
      const std::lock_guard<std::mutex> lock(first_mutex);
      if (!first) first = std::current_exception();
    }
  };
  const int nt = static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(opt.threads), std::max<std::size_t>(chunks.size(), 1)));
  if (nt == 1) {
    reader(0);
  } else {
    std::vector<std::thread> pool;
    for (int t = 0; t < nt; ++t) pool.emplace_back(reader, t);
    for (auto& th : pool) th.join();
  }
  if (first) std::rethrow_exception(first);
}

}  // namespace nemotron_h
