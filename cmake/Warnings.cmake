# raftkv_warnings: an interface target carrying the project's warning flags.
# Our own targets link it; generated protobuf code gets none of these.
add_library(raftkv_warnings INTERFACE)
target_compile_options(raftkv_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow=local -Wnon-virtual-dtor
  -Woverloaded-virtual -Wimplicit-fallthrough)
if(RAFTKV_WERROR)
  target_compile_options(raftkv_warnings INTERFACE -Werror)
endif()
# GCC 12 reports -Wrestrict false positives inside libstdc++'s
# operator+(const char*, std::string&&) at -O3 (GCC bug 105329, fixed in
# GCC 13): the warning names memcpy in char_traits.h, not our code.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND
   CMAKE_CXX_COMPILER_VERSION VERSION_GREATER_EQUAL 12 AND
   CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  target_compile_options(raftkv_warnings INTERFACE -Wno-restrict)
endif()
