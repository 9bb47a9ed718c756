// piecewise/piecewise.hpp — umbrella header: everything a user of the library needs.
#pragma once

#include "piecewise/arena.hpp"          // device_arena: fixed-address buffers
#include "piecewise/buckets.hpp"        // capture_buckets: sizes and pick(n)
#include "piecewise/error.hpp"          // error types and check macros
#include "piecewise/graph_inspect.hpp"  // node counts, DOT export
#include "piecewise/handles.hpp"        // RAII stream / event / graph / graph_exec
#include "piecewise/padding.hpp"        // padded-row zeroing kernels
#include "piecewise/runner.hpp"         // graph_runner, forward_context, modes
#include "piecewise/schedule.hpp"       // split_schedule: forward vs table checks
#include "piecewise/segment_table.hpp"  // segment_table, split points
