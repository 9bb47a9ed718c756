# CPU references (float64) of the NemotronH building blocks. Sources appear as their
# owners add them (dense_ref.cpp, mamba_ref.cpp).
set(_nh_ref_sources "")
foreach(_f dense_ref.cpp mamba_ref.cpp)
  if(EXISTS ${CMAKE_CURRENT_LIST_DIR}/${_f})
    list(APPEND _nh_ref_sources ${CMAKE_CURRENT_LIST_DIR}/${_f})
  endif()
endforeach()
add_library(nh_reference STATIC ${_nh_ref_sources} ${CMAKE_CURRENT_LIST_DIR}/reference.hpp)
set_target_properties(nh_reference PROPERTIES LINKER_LANGUAGE CXX)
target_include_directories(nh_reference PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
