// piecewise/piecewise.hpp — umbrella header: everything a user of the library needs.
#pragma once

#include "piecewise/arena.hpp"            // device_arena: fixed-address buffers
#include "piecewise/buckets.hpp"          // capture_buckets: sizes and pick(n)
#include "piecewise/cuda_error.hpp"       // cuda_error, PIECEWISE_CUDA_TRY
#include "piecewise/element_type.hpp"     // element types, bf16/f16 decoding
#include "piecewise/error.hpp"            // error types, PIECEWISE_EXPECTS (host-only)
#include "piecewise/forward_context.hpp"  // what a forward sees: counts, stream, split(i)
#include "piecewise/graph_inspect.hpp"    // node counts, DOT export
#include "piecewise/handles.hpp"          // RAII stream / event / graph / graph_exec / device_buffer
#include "piecewise/padding.hpp"          // padded-row zeroing kernels
#include "piecewise/runner.hpp"           // graph_runner: modes, capture, replay, update
#include "piecewise/runner_options.hpp"   // mode, runner_options, progress and log callbacks
#include "piecewise/runner_stats.hpp"     // bucket_stats, run_stats, update/validation reports
#include "piecewise/schedule.hpp"         // split_schedule: forward vs table checks
#include "piecewise/segment_table.hpp"    // segment_table, split points, declared buffers
