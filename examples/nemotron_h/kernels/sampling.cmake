# Token sampling on the GPU (greedy, temperature, top-k, top-p, min-p, seeded per sequence).
# Included from examples/nemotron_h/CMakeLists.txt.
set(_nh_sampling_dir ${CMAKE_CURRENT_LIST_DIR}/..)

add_library(nh_sampling_kernels STATIC ${CMAKE_CURRENT_LIST_DIR}/sampling.cu)
target_link_libraries(nh_sampling_kernels PUBLIC nh_common)
set_target_properties(nh_sampling_kernels PROPERTIES POSITION_INDEPENDENT_CODE ON)

if(PIECEWISE_BUILD_TESTS)
  # CPU checks of the float64 sampling reference (runs in CI).
  piecewise_add_host_test(nh_sampling_ref_tests ${_nh_sampling_dir}/tests/test_sampling_ref.cpp
                          LIBS nh_reference)
  # The kernel against the reference, greedy rows against argmax_rows (its source is compiled
  # in, so the test does not need the whole runner), graphs, history/step, the fallback.
  piecewise_add_gpu_test(nh_sampling_gpu_tests
    ${_nh_sampling_dir}/tests/test_sampling.cu
    ${_nh_sampling_dir}/runner/model_kernels.cu
    LIBS nh_sampling_kernels nh_reference)
endif()
