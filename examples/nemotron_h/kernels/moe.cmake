# Mixture-of-experts kernels (routing, plan, grouped GEMM, combine) for the 'E' layers.
# Included from examples/nemotron_h/CMakeLists.txt.
set(_nh_moe_dir ${CMAKE_CURRENT_LIST_DIR}/..)

add_library(nh_moe_kernels STATIC ${CMAKE_CURRENT_LIST_DIR}/moe.cu)
target_link_libraries(nh_moe_kernels PUBLIC nh_common)
set_target_properties(nh_moe_kernels PROPERTIES POSITION_INDEPENDENT_CODE ON)

if(PIECEWISE_BUILD_TESTS)
  # The kernels against the float64 reference (reference/moe_ref.cpp) and host sorts, the
  # bit-identity contract, graph replay; a "[.][bench]" case times them at Nano-30B shapes
  # against a cuBLASLt dense GEMM (nh_dense_kernels).
  piecewise_add_gpu_test(nh_moe_gpu_tests
    ${_nh_moe_dir}/tests/test_moe_kernels.cu
    LIBS nh_moe_kernels nh_dense_kernels nh_reference)
endif()
