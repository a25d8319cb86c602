#include "pb.h"

int chat_pb_to_nng(const ProtobufCMessage *msg, nng_msg **out)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    nng_msg *m;
    int rv = nng_msg_alloc(&m, len);
    if (rv != 0)
        return rv;
    protobuf_c_message_pack(msg, nng_msg_body(m));
    *out = m;
    return 0;
}
