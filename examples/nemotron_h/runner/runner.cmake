# The NemotronH model on the GPU through piecewise, the engine loop and nemotron_h_run.
find_package(CLI11 REQUIRED)

# Host-side batch planning (limits, batch checks, prefill chunk packing): no CUDA, so the
# runner's host tests run without a GPU.
add_library(nh_batching STATIC ${CMAKE_CURRENT_LIST_DIR}/batching.cpp)
target_include_directories(nh_batching PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(nh_batching PUBLIC piecewise::host)
target_compile_features(nh_batching PUBLIC cxx_std_20)

# Which linear weights the GPU model runs (dtypes, FP8 scales, fused groups): host only, shared
# by the GPU upload and the run plan, tested without a GPU.
add_library(nh_weight_support STATIC ${CMAKE_CURRENT_LIST_DIR}/weight_support.cpp)
target_link_libraries(nh_weight_support PUBLIC nh_model)

# The plan of a nemotron_h_run invocation (every argument, config, checkpoint-header and
# output-path check, the memory estimate): host only, so --dry-run and its tests need no GPU.
add_library(nh_run_plan STATIC ${CMAKE_CURRENT_LIST_DIR}/run_plan.cpp ${CMAKE_CURRENT_LIST_DIR}/prompt_file.cpp
            ${CMAKE_CURRENT_LIST_DIR}/sampling_settings.cpp)
target_link_libraries(nh_run_plan PUBLIC nh_model nh_batching nh_text nh_weight_support)

add_library(nh_runner STATIC
  ${CMAKE_CURRENT_LIST_DIR}/device_weights.cpp
  ${CMAKE_CURRENT_LIST_DIR}/batch_metadata.cpp
  ${CMAKE_CURRENT_LIST_DIR}/gpu_model.cpp
  ${CMAKE_CURRENT_LIST_DIR}/engine.cpp
  ${CMAKE_CURRENT_LIST_DIR}/synthetic_fp8.cpp
  ${CMAKE_CURRENT_LIST_DIR}/model_kernels.cu
  ${CMAKE_CURRENT_LIST_DIR}/../kernels/synthetic_fill.cu)
target_link_libraries(nh_runner PUBLIC nh_model nh_weight_support nh_batching nh_dense_kernels nh_mamba_kernels nh_sampling_kernels nh_moe_kernels nh_common)

add_executable(nemotron_h_run ${CMAKE_CURRENT_LIST_DIR}/main.cpp ${CMAKE_CURRENT_LIST_DIR}/gpu_probe.cpp)
target_link_libraries(nemotron_h_run PRIVATE nh_runner nh_run_plan CLI11::CLI11 ${CMAKE_DL_LIBS})
target_compile_definitions(nemotron_h_run PRIVATE NH_PROJECT_VERSION="${PROJECT_VERSION}"
                                                  NH_CUDA_TOOLKIT_VERSION="${CUDAToolkit_VERSION}")

if(PIECEWISE_BUILD_TESTS)
  piecewise_add_host_test(nh_batching_tests ${CMAKE_CURRENT_LIST_DIR}/../tests/test_batching.cpp LIBS nh_batching)
  target_compile_definitions(nh_batching_tests PRIVATE NH_TEST_DATA_DIR="${CMAKE_CURRENT_LIST_DIR}/../tests/data")
  piecewise_add_host_test(nh_run_plan_tests ${CMAKE_CURRENT_LIST_DIR}/../tests/test_run_plan.cpp
                          ${CMAKE_CURRENT_LIST_DIR}/../tests/test_text_plan.cpp
                          ${CMAKE_CURRENT_LIST_DIR}/../tests/test_gpu_weight_checks.cpp LIBS nh_run_plan)
  target_compile_definitions(nh_run_plan_tests PRIVATE NH_TEST_DATA_DIR="${CMAKE_CURRENT_LIST_DIR}/../tests/data")
  # The built nemotron_h_run with bad inputs, --dry-run and --version: exit status and message
  # (no GPU needed: every check comes first). Label "cli": the asan preset builds no runner.
  include(${CMAKE_CURRENT_LIST_DIR}/../tests/cli_tests.cmake)
  piecewise_add_gpu_test(nh_runner_gpu_tests ${CMAKE_CURRENT_LIST_DIR}/../tests/test_runner.cpp
                         ${CMAKE_CURRENT_LIST_DIR}/../tests/test_generate.cpp
                         ${CMAKE_CURRENT_LIST_DIR}/../tests/test_synthetic_fp8.cpp
                         ${CMAKE_CURRENT_LIST_DIR}/../tests/test_synthetic_nvfp4.cpp LIBS nh_runner)
  target_compile_definitions(nh_runner_gpu_tests PRIVATE NH_TEST_DATA_DIR="${CMAKE_CURRENT_LIST_DIR}/../tests/data")
  # The runner's small kernels (argmax, gather, bookkeeping) against host references.
  piecewise_add_gpu_test(nh_runner_kernels_gpu_tests ${CMAKE_CURRENT_LIST_DIR}/../tests/test_model_kernels.cu
                         LIBS nh_runner)
endif()

if(PIECEWISE_BUILD_BENCH)
  add_executable(nh_model_bench ${CMAKE_CURRENT_LIST_DIR}/../bench/bench_model.cu)
  target_link_libraries(nh_model_bench PRIVATE nh_runner)
  # Each small kernel of a decode step / short prefill alone (bench/bench_step_kernels.cu).
  add_executable(nh_step_kernels_bench ${CMAKE_CURRENT_LIST_DIR}/../bench/bench_step_kernels.cu)
  target_link_libraries(nh_step_kernels_bench PRIVATE nh_runner)
endif()
