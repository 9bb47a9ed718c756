# CPU references (float64) of the NemotronH building blocks: the math every kernel, the
# whole-model CPU forward and --check are measured against.
add_library(nh_reference STATIC
  ${CMAKE_CURRENT_LIST_DIR}/dense_ref.cpp
  ${CMAKE_CURRENT_LIST_DIR}/mamba_ref.cpp
  ${CMAKE_CURRENT_LIST_DIR}/sampling_ref.cpp
  ${CMAKE_CURRENT_LIST_DIR}/moe_ref.cpp)
target_include_directories(nh_reference PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
