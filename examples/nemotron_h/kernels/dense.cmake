# Dense NemotronH kernels: embedding, norms, squared ReLU, cuBLASLt GEMM, KV cache and
# attention (prefill + decode). Included from examples/nemotron_h/CMakeLists.txt.
set(_nh_dense_dir ${CMAKE_CURRENT_LIST_DIR}/..)

add_library(nh_dense_kernels STATIC
  ${CMAKE_CURRENT_LIST_DIR}/embedding.cu
  ${CMAKE_CURRENT_LIST_DIR}/norms.cu
  ${CMAKE_CURRENT_LIST_DIR}/activations.cu
  ${CMAKE_CURRENT_LIST_DIR}/gemm.cu
  ${CMAKE_CURRENT_LIST_DIR}/attention_prefill.cu
  ${CMAKE_CURRENT_LIST_DIR}/attention_decode.cu)
target_link_libraries(nh_dense_kernels PUBLIC nh_common)
set_target_properties(nh_dense_kernels PROPERTIES POSITION_INDEPENDENT_CODE ON
                                                  CUDA_SEPARABLE_COMPILATION OFF)

if(PIECEWISE_BUILD_TESTS)
  # CPU checks of the float64 dense reference itself (runs in CI).
  piecewise_add_host_test(nh_dense_ref_tests ${_nh_dense_dir}/tests/test_dense_ref.cpp
                          LIBS nh_reference)
  # GPU kernels vs the float64 reference, eager and inside captured graphs.
  piecewise_add_gpu_test(nh_dense_gpu_tests
    ${_nh_dense_dir}/tests/test_norms.cu
    ${_nh_dense_dir}/tests/test_gemm.cu
    ${_nh_dense_dir}/tests/test_attention.cu
    LIBS nh_dense_kernels nh_reference)
endif()

if(PIECEWISE_BUILD_BENCH)
  find_package(benchmark REQUIRED)
  add_executable(nh_dense_bench ${_nh_dense_dir}/bench/bench_dense.cu)
  target_link_libraries(nh_dense_bench PRIVATE nh_dense_kernels benchmark::benchmark)
endif()
