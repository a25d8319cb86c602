/* Every message type of the .proto files in proto/, for fuzz_proto.c and its seed
 * generator gen_proto_seeds.c. check_proto_table.cmake fails the build when
 * a generated descriptor is missing here. */
#ifndef FUZZ_PROTO_TYPES_H
#define FUZZ_PROTO_TYPES_H

#include "admin.pb-c.h"
#include "common.pb-c.h"
#include "envelope.pb-c.h"
#include "events.pb-c.h"
#include "match.pb-c.h"
#include "message.pb-c.h"
#include "presence.pb-c.h"

/* Append only: a seed's first byte is an index into this table. */
static const ProtobufCMessageDescriptor *const proto_types[] = {
    /* envelope.proto */
    &chat__batch__descriptor,
    /* common.proto */
    &chat__stored_message__descriptor,
    &chat__conn_ref__descriptor,
    /* match.proto */
    &chat__start_search_req__descriptor,
    &chat__stop_search_req__descriptor,
    &chat__end_chat_req__descriptor,
    &chat__user_offline_req__descriptor,
    &chat__user_gone_req__descriptor,
    &chat__session_req__descriptor,
    &chat__match_request__descriptor,
    &chat__match_reply__descriptor,
    /* message.proto */
    &chat__create_conversation_req__descriptor,
    &chat__close_conversation_req__descriptor,
    &chat__conversation_info_req__descriptor,
    &chat__send_req__descriptor,
    &chat__replay_req__descriptor,
    &chat__receipt_req__descriptor,
    &chat__register_user_req__descriptor,
    &chat__open_dm_req__descriptor,
    &chat__join_room_req__descriptor,
    &chat__leave_room_req__descriptor,
    &chat__history_req__descriptor,
    &chat__typing_req__descriptor,
    &chat__contacts_req__descriptor,
    &chat__fill_req__descriptor,
    &chat__message_request__descriptor,
    &chat__message_reply__descriptor,
    &chat__conv_seq__descriptor,
    /* presence.proto */
    &chat__connect_req__descriptor,
    &chat__disconnect_req__descriptor,
    &chat__heartbeat_req__descriptor,
    &chat__query_req__descriptor,
    &chat__bans_req__descriptor,
    &chat__presence_request__descriptor,
    &chat__user_status__descriptor,
    &chat__presence_reply__descriptor,
    &chat__ban_entry__descriptor,
    /* events.proto */
    &chat__matched_evt__descriptor,
    &chat__chat_ended_evt__descriptor,
    &chat__partner_disconnected_evt__descriptor,
    &chat__receipt_evt__descriptor,
    &chat__typing_evt__descriptor,
    &chat__presence_evt__descriptor,
    &chat__event__descriptor,
    /* admin.proto */
    &chat__admin_status_req__descriptor,
    &chat__admin_users_req__descriptor,
    &chat__admin_user_req__descriptor,
    &chat__admin_kick_req__descriptor,
    &chat__admin_ban_req__descriptor,
    &chat__admin_unban_req__descriptor,
    &chat__admin_announce_req__descriptor,
    &chat__admin_queue_req__descriptor,
    &chat__admin_conversation_req__descriptor,
    &chat__admin_room_req__descriptor,
    &chat__admin_retention_req__descriptor,
    &chat__admin_drain_req__descriptor,
    &chat__admin_request__descriptor,
    &chat__admin_proc_status__descriptor,
    &chat__admin_gateway_users__descriptor,
    &chat__admin_conn__descriptor,
    &chat__admin_conv_ref__descriptor,
    &chat__admin_user_info__descriptor,
    &chat__admin_ban__descriptor,
    &chat__admin_queue_info__descriptor,
    &chat__admin_conversation_info__descriptor,
    &chat__admin_retention_info__descriptor,
    &chat__admin_drain_info__descriptor,
    &chat__admin_reply__descriptor,
};

#define PROTO_N_TYPES (sizeof proto_types / sizeof proto_types[0])
/* The count of messages in the .proto files; check_proto_table.cmake checks
 * the names, this the table's length. */
_Static_assert(PROTO_N_TYPES == 68, "a message type is missing from proto_types");

#endif
