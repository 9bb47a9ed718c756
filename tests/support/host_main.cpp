// Catch2 main for host (CPU-only) test executables: fails when the test spec matches nothing.
#define CATCH_CONFIG_RUNNER
#include "catch_session.hpp"

int main(int argc, char** argv) { return piecewise_test::run_catch_session(argc, argv); }
