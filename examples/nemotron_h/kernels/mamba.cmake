# Mamba2 NemotronH kernels: causal conv1d + SiLU (prefill, decode), SSD chunked scan
# (prefill) and the recurrent decode update, with the state-slot layout (mamba_state.cuh).
# Included from examples/nemotron_h/CMakeLists.txt.
set(_nh_mamba_dir ${CMAKE_CURRENT_LIST_DIR}/..)

add_library(nh_mamba_kernels STATIC
  ${CMAKE_CURRENT_LIST_DIR}/conv1d.cu
  ${CMAKE_CURRENT_LIST_DIR}/ssd_scan.cu
  ${CMAKE_CURRENT_LIST_DIR}/mamba_decode.cu)
target_link_libraries(nh_mamba_kernels PUBLIC nh_common)
set_target_properties(nh_mamba_kernels PROPERTIES POSITION_INDEPENDENT_CODE ON
                                                  CUDA_SEPARABLE_COMPILATION OFF)

if(PIECEWISE_BUILD_TESTS)
  # CPU checks of the float64 Mamba2 reference itself (runs in CI).
  piecewise_add_host_test(nh_mamba_ref_tests ${_nh_mamba_dir}/tests/test_mamba_ref.cpp
                          LIBS nh_reference)
  # GPU kernels vs the float64 reference, eager and inside captured graphs.
  piecewise_add_gpu_test(nh_mamba_gpu_tests
    ${_nh_mamba_dir}/tests/test_conv1d.cu
    ${_nh_mamba_dir}/tests/test_ssd_scan.cu
    ${_nh_mamba_dir}/tests/test_mamba_decode.cu
    LIBS nh_mamba_kernels nh_reference)
endif()

if(PIECEWISE_BUILD_BENCH)
  find_package(benchmark REQUIRED)
  add_executable(nh_mamba_bench ${_nh_mamba_dir}/bench/bench_mamba.cu)
  # nh_dense_kernels (the GEMM the SSD scan is compared with) is defined in dense.cmake.
  target_link_libraries(nh_mamba_bench PRIVATE nh_mamba_kernels nh_dense_kernels benchmark::benchmark)
endif()
