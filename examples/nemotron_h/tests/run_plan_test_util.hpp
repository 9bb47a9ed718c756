// Helpers of the run-plan host tests: the message of the usage or bad-input error
// make_run_plan throws.
#pragma once

#include <string>

#include "runner/run_plan.hpp"

namespace nh_test {

/// The message of a usage_error, "<not a usage error: ...>" for another exception, or
/// "<no exception>".
inline std::string usage_error_of(const nemotron_h::run_args& a) {
  try {
    (void)nemotron_h::make_run_plan(a);
  } catch (const nemotron_h::usage_error& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("<not a usage error: ") + e.what() + ">";
  }
  return "<no exception>";
}

/// The message of a bad-input error (a config_error that is not a usage_error).
inline std::string input_error_of(const nemotron_h::run_args& a) {
  try {
    (void)nemotron_h::make_run_plan(a);
  } catch (const nemotron_h::usage_error& e) {
    return std::string("<usage error: ") + e.what() + ">";
  } catch (const piecewise::config_error& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("<other exception: ") + e.what() + ">";
  }
  return "<no exception>";
}

}  // namespace nh_test
