# cmake -DBUILD_DIR=<build> -P check_test_names.cmake
#
# Checks that every Catch2 test registered with ctest (catch_discover_tests) selects exactly one
# test case: a test name that ctest splits (at ';', or around '[') or that no longer matches
# would otherwise run nothing. Uses --list-test-names-only, so it needs no GPU.
if(NOT BUILD_DIR)
  message(FATAL_ERROR "check_test_names: pass -DBUILD_DIR=<build folder>")
endif()
include(${CMAKE_CURRENT_LIST_DIR}/ctest_json.cmake)
piecewise_ctest_json("${BUILD_DIR}" json last)
set(checked 0)
set(bad "")
foreach(i RANGE ${last})
  string(JSON name GET "${json}" tests ${i} name)
  string(JSON ncmd ERROR_VARIABLE no_cmd LENGTH "${json}" tests ${i} command)
  if(no_cmd OR ncmd LESS 2)
    continue()   # not a Catch2 test case
  endif()
  string(JSON exe GET "${json}" tests ${i} command 0)
  if(exe STREQUAL "${CMAKE_COMMAND}")
    continue()   # a script test such as this check itself
  endif()
  string(JSON spec GET "${json}" tests ${i} command 1)
  execute_process(COMMAND "${exe}" --list-test-names-only "${spec}"
                  OUTPUT_VARIABLE listed RESULT_VARIABLE lrc ERROR_QUIET)
  string(STRIP "${listed}" listed)
  string(REGEX MATCHALL "[^\n]+" lines "${listed}")
  list(LENGTH lines n)
  if(NOT n EQUAL 1)
    string(APPEND bad "\n  '${name}' selects ${n} test cases (spec: ${spec})")
  endif()
  math(EXPR checked "${checked} + 1")
endforeach()
if(bad)
  message(FATAL_ERROR "check_test_names: ctest entries that do not select exactly one test case:${bad}")
endif()
message(STATUS "check_test_names: ${checked} ctest entries each select exactly one Catch2 test case")
