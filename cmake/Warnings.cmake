# raftkv_warnings: an interface target carrying the project's warning flags.
# Our own targets link it; generated protobuf code gets none of these.
add_library(raftkv_warnings INTERFACE)
target_compile_options(raftkv_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow=local -Wnon-virtual-dtor
  -Woverloaded-virtual -Wimplicit-fallthrough)
if(RAFTKV_WERROR)
  target_compile_options(raftkv_warnings INTERFACE -Werror)
endif()
