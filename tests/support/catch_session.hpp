// Runs a Catch2 session that fails (exit code 2) when the command line's test spec matches no
// test case. ctest runs every Catch2 test case by name (catch_discover_tests); a name that
// no longer matches (renamed, or split by ctest at a ';') must fail, not pass with zero tests.
#pragma once
#include <catch2/catch.hpp>

namespace piecewise_test {

inline int run_catch_session(int argc, char** argv) {
  Catch::Session session;
  if (int rc = session.applyCommandLine(argc, argv); rc != 0) return rc;
  auto& cfg = session.configData();
  cfg.warnings = static_cast<Catch::WarnAbout::What>(cfg.warnings | Catch::WarnAbout::NoTests);
  return session.run();
}

}  // namespace piecewise_test
