# Dense NemotronH kernels: embedding, norms, squared ReLU, cuBLASLt GEMM, KV cache and
# attention (prefill + decode). Included from examples/nemotron_h/CMakeLists.txt.
set(_nh_dense_dir ${CMAKE_CURRENT_LIST_DIR}/..)

add_library(nh_dense_kernels STATIC
  ${CMAKE_CURRENT_LIST_DIR}/embedding.cu
  ${CMAKE_CURRENT_LIST_DIR}/norms.cu
  ${CMAKE_CURRENT_LIST_DIR}/activations.cu
  ${CMAKE_CURRENT_LIST_DIR}/gemm.cu
  ${CMAKE_CURRENT_LIST_DIR}/gemv.cu
  ${CMAKE_CURRENT_LIST_DIR}/quantize_fp8.cu
  ${CMAKE_CURRENT_LIST_DIR}/nvfp4.cu
  ${CMAKE_CURRENT_LIST_DIR}/attention_prefill.cu
  ${CMAKE_CURRENT_LIST_DIR}/attention_decode.cu)
# The Hopper prefill-attention kernel uses wgmma/setmaxnreg, which exist only on the sm_90a
# target: its file is built for sm_90a alone, whatever CMAKE_CUDA_ARCHITECTURES says (the host
# side picks it at run time on compute capability 9.0 devices only).
add_library(nh_attention_sm90 STATIC ${CMAKE_CURRENT_LIST_DIR}/attention_prefill_sm90.cu)
target_link_libraries(nh_attention_sm90 PUBLIC nh_common)
set_target_properties(nh_attention_sm90 PROPERTIES CUDA_ARCHITECTURES OFF
                                                   POSITION_INDEPENDENT_CODE ON)
target_compile_options(nh_attention_sm90 PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:-gencode=arch=compute_90a,code=sm_90a>)
target_link_libraries(nh_dense_kernels PUBLIC nh_common PRIVATE nh_attention_sm90)
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
    ${_nh_dense_dir}/tests/test_fused_fp8.cu
    ${_nh_dense_dir}/tests/test_nvfp4.cu
    ${_nh_dense_dir}/tests/test_attention.cu
    LIBS nh_dense_kernels nh_reference)
endif()

if(PIECEWISE_BUILD_BENCH)
  find_package(benchmark REQUIRED)
  add_executable(nh_dense_bench ${_nh_dense_dir}/bench/bench_dense.cu)
  target_link_libraries(nh_dense_bench PRIVATE nh_dense_kernels benchmark::benchmark)
endif()
