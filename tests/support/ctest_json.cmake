# include()d by the -P scripts beside it. piecewise_ctest_json(<build> <json-var> <last-index-var>)
# reads `ctest --show-only=json-v1` for a build folder; <last-index-var> is the index of the last
# test. A build folder without tests is an error.
function(piecewise_ctest_json build json_var last_var)
  execute_process(COMMAND "${CMAKE_CTEST_COMMAND}" --test-dir "${build}" --show-only=json-v1
                  OUTPUT_VARIABLE json RESULT_VARIABLE rc ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "ctest --show-only failed in ${build}: ${err}")
  endif()
  string(JSON count LENGTH "${json}" tests)
  if(count EQUAL 0)
    message(FATAL_ERROR "no tests are registered in ${build}")
  endif()
  math(EXPR last "${count} - 1")
  set(${json_var} "${json}" PARENT_SCOPE)
  set(${last_var} ${last} PARENT_SCOPE)
endfunction()
