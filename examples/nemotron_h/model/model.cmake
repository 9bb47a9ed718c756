# NemotronH host-side model pieces: config.json / presets, safetensors checkpoints, host
# weights (loaded or synthetic), .npy I/O and the whole-model float64 CPU forward.
find_package(nlohmann_json REQUIRED)

add_library(nh_model STATIC
  ${CMAKE_CURRENT_LIST_DIR}/config.cpp
  ${CMAKE_CURRENT_LIST_DIR}/layer_kinds.cpp
  ${CMAKE_CURRENT_LIST_DIR}/tensor.cpp
  ${CMAKE_CURRENT_LIST_DIR}/safetensors.cpp
  ${CMAKE_CURRENT_LIST_DIR}/staged_read.cpp
  ${CMAKE_CURRENT_LIST_DIR}/weights.cpp
  ${CMAKE_CURRENT_LIST_DIR}/cpu_forward.cpp
  ${CMAKE_CURRENT_LIST_DIR}/npy.cpp
  ${CMAKE_CURRENT_LIST_DIR}/quant_config.cpp
  ${CMAKE_CURRENT_LIST_DIR}/quantize.cpp)
# Host only: no CUDA include path or library, so a CUDA header reached from model/ (directly
# or through another header) fails this build, as it fails the fuzzers' (fuzz/run_fuzzers.sh).
target_include_directories(nh_model PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(nh_model PUBLIC piecewise::host nh_reference nlohmann_json::nlohmann_json)
target_compile_features(nh_model PUBLIC cxx_std_20)
# The synthetic draw (model/synthetic_draw.hpp) must round exactly as the GPU fill does: no
# contraction of a * b + c into an FMA even where the target has one.
if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/weights.cpp PROPERTIES COMPILE_OPTIONS -ffp-contract=off)
endif()

if(PIECEWISE_BUILD_TESTS)
  set(_nh_model_test_dir ${CMAKE_CURRENT_LIST_DIR}/../tests)
  piecewise_add_host_test(nh_model_tests
    ${_nh_model_test_dir}/test_config.cpp
    ${_nh_model_test_dir}/test_safetensors.cpp
    ${_nh_model_test_dir}/test_weights.cpp
    ${_nh_model_test_dir}/test_cpu_forward.cpp
    ${_nh_model_test_dir}/test_fuzz_corpus.cpp
    ${_nh_model_test_dir}/test_moe.cpp
    ${_nh_model_test_dir}/test_quant_config.cpp
    ${_nh_model_test_dir}/test_quantize.cpp
    LIBS nh_model)
  target_compile_definitions(nh_model_tests PRIVATE
    NH_TEST_DATA_DIR="${_nh_model_test_dir}/data"
    NH_FUZZ_CORPUS_DIR="${CMAKE_CURRENT_LIST_DIR}/../fuzz/corpus")
  # The transformers MoE fixtures (tests/data/tiny_moe, tiny_latent_moe, made on the GPU
  # machine by tests/data/make_moe_fixture.py): a test whose fixture is not there yet prints
  # "SKIPPED: <why>" and exits 77, which ctest reports as skipped (Catch2 2 has no SKIP).
  add_executable(nh_moe_fixture_tests ${_nh_model_test_dir}/test_moe_fixture.cpp)
  add_dependencies(piecewise_all_host_tests nh_moe_fixture_tests)
  target_link_libraries(nh_moe_fixture_tests PRIVATE piecewise_host_test_main nh_model)
  target_compile_definitions(nh_moe_fixture_tests PRIVATE NH_TEST_DATA_DIR="${_nh_model_test_dir}/data")
  catch_discover_tests(nh_moe_fixture_tests TEST_PREFIX "host: " PROPERTIES SKIP_RETURN_CODE 77 LABELS host)
endif()
