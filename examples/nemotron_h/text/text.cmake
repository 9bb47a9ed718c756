# Text in, text out: the Hugging Face tokenizer.json tokenizer (byte-level BPE, PCRE2 split
# patterns), incremental decoding, the family's chat formats and stop strings. Host only, no CUDA: the runner links it.
find_package(nlohmann_json REQUIRED)
# PCRE2 (8-bit): found by find_path / find_library, so a CMAKE_PREFIX_PATH prefix (the GPU
# machine's staged Debian packages) wins over pkg-config, whose hints come after it.
find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(NH_PC_PCRE2 QUIET libpcre2-8)
endif()
find_path(NH_PCRE2_INCLUDE_DIR pcre2.h HINTS ${NH_PC_PCRE2_INCLUDE_DIRS})
find_library(NH_PCRE2_LIBRARY NAMES pcre2-8 HINTS ${NH_PC_PCRE2_LIBRARY_DIRS})
if(NOT NH_PCRE2_INCLUDE_DIR OR NOT NH_PCRE2_LIBRARY)
  message(FATAL_ERROR "PCRE2 (8-bit) not found: the NemotronH tokenizer needs it for the split "
                      "patterns of tokenizer.json. Install Debian's libpcre2-dev (apt-get install "
                      "libpcre2-dev) or point CMAKE_PREFIX_PATH at a prefix holding pcre2.h and libpcre2-8.")
endif()
message(STATUS "PCRE2: ${NH_PCRE2_LIBRARY}")
add_library(nh_pcre2 INTERFACE)
target_include_directories(nh_pcre2 INTERFACE ${NH_PCRE2_INCLUDE_DIR})
target_link_libraries(nh_pcre2 INTERFACE ${NH_PCRE2_LIBRARY})

add_library(nh_text STATIC
  ${CMAKE_CURRENT_LIST_DIR}/regex.cpp
  ${CMAKE_CURRENT_LIST_DIR}/tokenizer_json.cpp
  ${CMAKE_CURRENT_LIST_DIR}/tokenizer.cpp
  ${CMAKE_CURRENT_LIST_DIR}/stream_decoder.cpp
  ${CMAKE_CURRENT_LIST_DIR}/chat_format.cpp
  ${CMAKE_CURRENT_LIST_DIR}/stop_strings.cpp)
target_include_directories(nh_text PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(nh_text PUBLIC piecewise::host nlohmann_json::nlohmann_json PRIVATE nh_pcre2)
target_compile_features(nh_text PUBLIC cxx_std_20)

if(PIECEWISE_BUILD_BENCH)
  # Encode throughput on one core; bench/hf_tokenizer_bench.py is its Hugging Face counterpart.
  add_executable(nh_tokenizer_bench ${CMAKE_CURRENT_LIST_DIR}/../bench/tokenizer_bench.cpp)
  target_link_libraries(nh_tokenizer_bench PRIVATE nh_text)
endif()

if(PIECEWISE_BUILD_TESTS)
  set(_nh_text_test_dir ${CMAKE_CURRENT_LIST_DIR}/../tests)
  piecewise_add_host_test(nh_text_tests
    ${_nh_text_test_dir}/test_tokenizer.cpp
    ${_nh_text_test_dir}/test_tokenizer_golden.cpp
    ${_nh_text_test_dir}/test_tokenizer_fuzz_corpus.cpp
    ${_nh_text_test_dir}/test_chat.cpp
    LIBS nh_text)
  target_compile_definitions(nh_text_tests PRIVATE
    NH_TEST_DATA_DIR="${_nh_text_test_dir}/data"
    NH_FUZZ_CORPUS_DIR="${CMAKE_CURRENT_LIST_DIR}/../fuzz/corpus")
endif()
