# raftkv_add_gtests(LABEL <label> LINK <targets...>)
#
# Makes one GoogleTest binary of every *_test.cc in the calling directory,
# linked with gtest_main, the project's warnings and LINK, and registers each
# test case with CTest under LABEL (the layer: `ctest -L raftstore`).
include(GoogleTest)

function(raftkv_add_gtests)
  cmake_parse_arguments(ARG "" "LABEL" "LINK" ${ARGN})
  file(GLOB sources CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*_test.cc)
  foreach(src ${sources})
    get_filename_component(name ${src} NAME_WE)
    add_executable(${name} ${src})
    target_link_libraries(${name} PRIVATE ${ARG_LINK} GTest::gtest_main
                          raftkv_warnings)
    gtest_discover_tests(${name} PROPERTIES LABELS ${ARG_LABEL}
                         DISCOVERY_TIMEOUT 60)
  endforeach()
endfunction()
