/* A reply being built (pres_out). The bottom layer: service.c and the
 * handlers call it; it calls none of them. */
#include "presence.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pres_out_init(pres_out *o)
{
    memset(o, 0, sizeof *o);
    Chat__PresenceReply init = CHAT__PRESENCE_REPLY__INIT;
    o->reply = init;
    o->reply.code = CHAT__CODE__OK;
}

void pres_out_free(pres_out *o)
{
    if (o == NULL)
        return;
    free(o->statuses);
    free(o->status_ptrs);
    free(o->bans_mem);
    o->bans_mem = NULL;
    o->reply.bans = NULL;
    o->reply.n_bans = 0;
    o->statuses = NULL;
    o->status_ptrs = NULL;
    o->reply.n_statuses = 0;
    o->reply.statuses = NULL;
}

void pres_out_err(pres_out *o, Chat__Code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->detail, sizeof o->detail, fmt, ap);
    va_end(ap);
    o->reply.code = code;
    o->reply.detail = o->detail;
    /* An error reply carries nothing else. */
    o->reply.first = o->reply.last = o->reply.resync = 0;
    o->reply.n_statuses = 0;
    o->reply.statuses = NULL;
}
