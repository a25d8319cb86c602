/* Request/reply and publish/subscribe over nng, carrying protobuf-c bytes.
 *
 * Server: a REP socket with N contexts, each driven RECV -> handler -> SEND.
 * The handler runs on an nng thread and must not block for long; it owns the
 * job and finishes it exactly once with chat_rpc_job_reply*(), from any
 * thread, possibly later (e.g. after a batched database commit).
 *
 * Client: a REQ socket dialing one or more servers (comma-separated URLs;
 * requests are spread over connected replicas). Each request uses its own
 * context so many are outstanding at once.
 *
 * Batching (proto/envelope.proto): every nng message is a chat.Batch of
 * packed items. chat_rpc_call_queued() calls wait in the client until
 * chat_rpc_client_flush() sends them as one request; the server runs the
 * handler once per item (a job each, replied in any order from any thread)
 * and sends one reply batch when the last item is answered. So a batch is
 * as slow as its slowest item: queue only quick calls. A call fails at once with
 * NNG_ECONNREFUSED while no server is connected, and with NNG_ETIMEDOUT after
 * the client's timeout. */
#ifndef CHAT_RPC_H
#define CHAT_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

/* ---- server ---- */
typedef struct chat_rpc_server chat_rpc_server;
typedef struct chat_rpc_job chat_rpc_job;

/* data/len stay valid until the job is replied to. */
typedef void (*chat_rpc_handler)(chat_rpc_job *job, const uint8_t *data, size_t len, void *arg);

/* Listens on url with `contexts` concurrent requests. On success *out is the
 * caller's, freed by chat_rpc_server_close(). Returns 0 or an nng error. */
int chat_rpc_server_open(chat_rpc_server **out, const char *url, int contexts,
                         chat_rpc_handler handler, void *arg);
/* Replies with bytes (copied). The job must not be used afterwards. */
void chat_rpc_job_reply(chat_rpc_job *job, const uint8_t *data, size_t len);
/* Replies with a packed protobuf message. */
void chat_rpc_job_reply_pb(chat_rpc_job *job, const ProtobufCMessage *msg);
/* Stops receiving, closes the socket, frees everything. NULL is fine. */
void chat_rpc_server_close(chat_rpc_server *srv);

/* ---- client ---- */
typedef struct chat_rpc_client chat_rpc_client;

/* err is 0 on success; data/len are the reply, valid only during the call.
 * Runs on an nng thread: copy or decode, do not block. */
typedef void (*chat_rpc_done)(int err, const uint8_t *data, size_t len, void *arg);

int chat_rpc_client_open(chat_rpc_client **out, const char *urls, int timeout_ms);
/* Starts a call now, alone; cb always runs exactly once (also on failure
 * to start, then on the caller's thread). */
void chat_rpc_call_async(chat_rpc_client *c, const ProtobufCMessage *req, chat_rpc_done cb,
                         void *arg);
/* Like chat_rpc_call_async(), but the call waits for the next
 * chat_rpc_client_flush() (or until 128 are waiting) and shares its
 * request with the others queued by then. Thread-safe. */
void chat_rpc_call_queued(chat_rpc_client *c, const ProtobufCMessage *req, chat_rpc_done cb,
                          void *arg);
/* Sends the queued calls as one request (nothing when none wait). */
void chat_rpc_client_flush(chat_rpc_client *c);
/* Blocking call. On success returns 0 and *reply (malloc'd, caller frees)
 * with *reply_len; otherwise an nng error and nothing is written. */
int chat_rpc_call(chat_rpc_client *c, const ProtobufCMessage *req, uint8_t **reply,
                  size_t *reply_len);
/* Unpacks data as a d message with what protobuf-c may allocate bounded:
 * every allocation counts its size plus 16 bytes, in all at most
 * CHAT_PB_UNPACK_FACTOR * len + CHAT_PB_UNPACK_SLACK. A well-formed request
 * needs a fraction of it; a megabyte of empty repeated strings (half a
 * million allocations) does not get them. NULL: malformed or over the
 * bound. Free with protobuf_c_message_free_unpacked(m, NULL). */
#define CHAT_PB_UNPACK_FACTOR 4
#define CHAT_PB_UNPACK_SLACK 16384
ProtobufCMessage *chat_pb_unpack(const ProtobufCMessageDescriptor *d, size_t len,
                                 const uint8_t *data);

/* chat_rpc_call() plus decoding: on success returns 0 and *reply, a
 * reply_desc message (the caller frees it with
 * protobuf_c_message_free_unpacked); NNG_EPROTO when the reply does not
 * decode; otherwise chat_rpc_call()'s error. Nothing is written on failure. */
int chat_rpc_call_decode(chat_rpc_client *c, const ProtobufCMessage *req,
                         const ProtobufCMessageDescriptor *reply_desc,
                         ProtobufCMessage **reply);
/* Waits until at least one server is connected, at most max_ms (less if a
 * stop signal came: chat_stopping()). True when one is. */
bool chat_rpc_client_wait_peers(chat_rpc_client *c, int max_ms);
/* chat_rpc_client_wait_peers() that logs a miss (peer_missing, naming
 * the peer); a start that goes on without it is not fatal. */
bool chat_rpc_client_await(chat_rpc_client *c, const char *name, int max_ms);
/* Number of servers currently connected (0: every call fails at once). */
int chat_rpc_client_peers(chat_rpc_client *c);
void chat_rpc_client_close(chat_rpc_client *c);

/* ---- publish/subscribe ---- */
typedef struct chat_pub chat_pub;
typedef struct chat_sub chat_sub;

/* An idle publisher's heartbeat period (see Batch in envelope.proto). */
#define CHAT_PUB_HEARTBEAT_MS 200
/* The largest nng message a subscriber takes: a larger one makes nng drop
 * the connection, and with it every later event of that publisher. */
#define CHAT_SUB_MAX_BYTES (16u << 20)
/* chat_pub_send_many() starts a new batch before one grows past this, so a
 * batch stays far below CHAT_SUB_MAX_BYTES whatever the number of events. */
#define CHAT_PUB_BATCH_BYTES (1u << 20)

int chat_pub_open(chat_pub **out, const char *url);
/* Thread-safe. Returns 0 or an nng error. Events are best effort (a slow or
 * absent subscriber misses them). */
int chat_pub_send(chat_pub *p, const ProtobufCMessage *msg);
/* Publishes n messages in this order, as one batch or, past
 * CHAT_PUB_BATCH_BYTES, as several in a row. A message that alone could not
 * reach a subscriber is not sent (NNG_EMSGSIZE, counted as failed); the
 * others are. */
int chat_pub_send_many(chat_pub *p, const ProtobufCMessage *const *msgs, size_t n);
/* Tests only: from now on every Nth batch is numbered but not sent, as if
 * the network had lost it (0: none). */
void chat_pub_test_drop(chat_pub *p, unsigned every);
/* Batches published so far, and batches nng refused (NULL: 0). */
void chat_pub_counts(chat_pub *p, uint64_t *sent, uint64_t *failed);
void chat_pub_close(chat_pub *p);

/* Called on an nng thread for every published message (in a batch's
 * order); data is valid only during the call. */
typedef void (*chat_sub_cb)(const uint8_t *data, size_t len, void *arg);
/* Called on the same thread, before the batch that revealed it, when
 * batches of a publisher never arrived (count: how many). */
typedef void (*chat_sub_lost_cb)(uint64_t count, void *arg);
/* Dials every URL of the comma-separated list (retrying in the background;
 * DNS names followed as they change, see lib/src/dialers.h) and subscribes
 * to everything. lost may be NULL. */
int chat_sub_open(chat_sub **out, const char *urls, chat_sub_cb cb, chat_sub_lost_cb lost,
                  void *arg);
int chat_sub_peers(chat_sub *s);
/* Publishers dialed now (addresses of the list; a name counts once per
 * address it resolves to). */
int chat_sub_publishers(chat_sub *s);
/* Batches lost so far, over every publisher. */
uint64_t chat_sub_lost(chat_sub *s);
void chat_sub_close(chat_sub *s);

#endif
