/* A reply being built (match_out) and the checks every handler shares. The
 * bottom layer: service.c and the handlers call it; it calls none of them. */
#include "match.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void match_out_init(match_out *o)
{
    memset(o, 0, sizeof *o);
    Chat__MatchReply init = CHAT__MATCH_REPLY__INIT;
    o->reply = init;
    o->reply.code = CHAT__CODE__OK;
}

void match_out_free(match_out *o)
{
    if (o == NULL || o->timeouts == NULL)
        return;
    size_t n =
        o->reply.n_timed_out_conversation_ids + o->reply.n_partner_ended_conversation_ids;
    for (size_t i = 0; i < n; i++)
        free(o->timeouts[i]);
    free(o->timeouts);
    o->timeouts = NULL;
    o->reply.n_timed_out_conversation_ids = 0;
    o->reply.timed_out_conversation_ids = NULL;
    o->reply.n_partner_ended_conversation_ids = 0;
    o->reply.partner_ended_conversation_ids = NULL;
}

void match_out_err(match_out *o, Chat__Code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->detail, sizeof o->detail, fmt, ap);
    va_end(ap);
    o->reply.code = code;
    o->reply.detail = o->detail;
}

bool match_conv_id_valid(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    return n > 0 && n <= MATCH_ID_MAX;
}
