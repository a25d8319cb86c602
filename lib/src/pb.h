/* Private: packing protobuf messages into nng messages. */
#ifndef CHAT_LIB_PB_H
#define CHAT_LIB_PB_H

#include <nng/nng.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* Packs msg into a new nng message. Returns 0 (caller owns *out) or an nng error. */
int chat_pb_to_nng(const ProtobufCMessage *msg, nng_msg **out);

/* Packs msg into a new malloc'd buffer (*out, *len; the caller frees it).
 * Returns 0 or NNG_ENOMEM. */
int chat_pb_pack(const ProtobufCMessage *msg, uint8_t **out, size_t *len);

/* Wraps n packed items into one chat.Batch nng message (envelope.proto).
 * Returns 0 (caller owns *out) or an nng error. */
int chat_batch_to_nng(const ProtobufCBinaryData *items, size_t n, nng_msg **out);

/* nng_close() with a deadline. nng 1.5.2 can block forever in nng_close()
 * when peers keep sending while a socket closes (seen with REQ and REP
 * contexts). Returns 0 once closed, or -1 after ms: the close goes on in a
 * detached thread, and the caller must then leave alone (leak) everything
 * the socket's callbacks might still touch. Only used at shutdown. */
int chat_nng_close_bounded(nng_socket s, int ms);

#endif
