/* Private: packing protobuf messages into nng messages. */
#ifndef CHAT_LIB_PB_H
#define CHAT_LIB_PB_H

#include <nng/nng.h>
#include <protobuf-c/protobuf-c.h>

/* Packs msg into a new nng message. Returns 0 (caller owns *out) or an nng error. */
int chat_pb_to_nng(const ProtobufCMessage *msg, nng_msg **out);

#endif
