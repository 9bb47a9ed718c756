# Mixture-of-experts kernels (routing, plan, grouped GEMM, combine) for the 'E' layers.
# Included from examples/nemotron_h/CMakeLists.txt.
set(_nh_moe_dir ${CMAKE_CURRENT_LIST_DIR}/..)

add_library(nh_moe_kernels STATIC ${CMAKE_CURRENT_LIST_DIR}/moe.cu)
# The Hopper grouped GEMM uses wgmma, which exists only on the sm_90a target: its file is built
# for sm_90a alone, whatever CMAKE_CUDA_ARCHITECTURES says (moe.cu picks it at run time on
# compute capability 9.0 devices only; elsewhere the mma.sync kernels run).
add_library(nh_moe_sm90 STATIC ${CMAKE_CURRENT_LIST_DIR}/moe_sm90.cu)
target_link_libraries(nh_moe_sm90 PUBLIC nh_common)
set_target_properties(nh_moe_sm90 PROPERTIES CUDA_ARCHITECTURES OFF POSITION_INDEPENDENT_CODE ON)
target_compile_options(nh_moe_sm90 PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:-gencode=arch=compute_90a,code=sm_90a>)
target_link_libraries(nh_moe_kernels PUBLIC nh_common PRIVATE nh_moe_sm90)
set_target_properties(nh_moe_kernels PROPERTIES POSITION_INDEPENDENT_CODE ON)

if(PIECEWISE_BUILD_TESTS)
  # The kernels against the float64 reference (reference/moe_ref.cpp) and host sorts, the
  # bit-identity contract, graph replay; a "[.][bench]" case times them at Nano-30B shapes
  # against a cuBLASLt dense GEMM (nh_dense_kernels).
  piecewise_add_gpu_test(nh_moe_gpu_tests
    ${_nh_moe_dir}/tests/test_moe_kernels.cu
    LIBS nh_moe_kernels nh_dense_kernels nh_reference)
endif()
