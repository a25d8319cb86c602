/* What svc-match answers on the admin plane: the random-chat queue
 * (chatctl queue). Runs on the admin thread with a Redis connection of its
 * own (shared with status's load figure), so an operator's question never
 * takes a worker from the users. */
#include "match.h"

#include "chat/log.h"

uint64_t match_admin_waiting(chat_redis_shared *rs)
{
    uint64_t waiting = 0;
    int64_t longest = 0;
    int rv = match_queue_stats(chat_redis_shared_take(rs), &waiting, &longest);
    chat_redis_shared_give(rs);
    return rv == 0 ? waiting : 0;
}

void match_admin_handle(const Chat__AdminRequest *req, chat_admin_out *out, void *arg)
{
    chat_redis_shared *rs = arg;
    if (req->body_case != CHAT__ADMIN_REQUEST__BODY_QUEUE) {
        chat_admin_fail(out, CHAT__ADMIN_CODE__ADMIN_UNSUPPORTED, "not served by svc-match");
        return;
    }
    Chat__AdminQueueInfo *q = chat_admin_alloc(out, sizeof *q);
    if (q == NULL) {
        chat_admin_fail(out, CHAT__ADMIN_CODE__ADMIN_FAILED, "out of memory");
        return;
    }
    chat__admin_queue_info__init(q);
    int rv = match_queue_stats(chat_redis_shared_take(rs), &q->waiting, &q->longest_wait_ms);
    chat_redis_shared_give(rs);
    if (rv != 0) {
        chat_admin_fail(out, CHAT__ADMIN_CODE__ADMIN_FAILED, "redis unavailable");
        return;
    }
    out->reply.queue = q;
}
