# Fails when the table of proto_types.h lacks a message type of the generated
# protobuf-c headers, so a new message in proto/*.proto is fuzzed from the
# day it is added. Run at build time (target fuzz_proto_table) and as the
# test fuzz.proto_table:
#   cmake -DGEN=<dir of *.pb-c.h> -DSOURCE=proto_types.h -P check_proto_table.cmake
file(GLOB headers "${GEN}/*.pb-c.h")
if(NOT headers)
  message(FATAL_ERROR "check_proto_table: no *.pb-c.h in ${GEN}")
endif()
file(READ "${SOURCE}" src)
set(missing "")
set(count 0)
foreach(h ${headers})
  file(STRINGS "${h}" lines REGEX "^extern const ProtobufCMessageDescriptor [a-z0-9_]+;")
  foreach(l ${lines})
    string(REGEX REPLACE "^extern const ProtobufCMessageDescriptor ([a-z0-9_]+);.*" "\\1" name "${l}")
    math(EXPR count "${count} + 1")
    string(FIND "${src}" "    &${name},\n" at)
    if(at EQUAL -1)
      list(APPEND missing ${name})
    endif()
  endforeach()
endforeach()
if(missing)
  message(FATAL_ERROR "check_proto_table: ${SOURCE} does not fuzz: ${missing} "
                      "(append them to proto_types and raise the _Static_assert)")
endif()
string(FIND "${src}" "PROTO_N_TYPES == ${count}," at)
if(at EQUAL -1)
  message(FATAL_ERROR "check_proto_table: the headers declare ${count} messages; "
                      "set the _Static_assert in ${SOURCE} to that")
endif()
message(STATUS "check_proto_table: all ${count} message types are in the table")
