/* The dialers of one nng socket for a comma-separated address list, with
 * DNS names followed as they change (lib-internal; rpc_client.c, pubsub.c).
 *
 * A "tcp://NAME:PORT" (or "tls+tcp://NAME:PORT", see tls.h) address is dialed once per address NAME resolves to,
 * and NAME is resolved again every CHAT_RESOLVE_MS (default 2000): new
 * addresses get a dialer, vanished ones lose theirs (nng then moves what
 * was queued for that peer to the others). Names are looked up first in
 * the file CHAT_HOSTS_FILE (lines "name addr addr ...", read each time: a
 * name source tests can change), then with getaddrinfo() (DNS, /etc/hosts).
 * Other addresses (IP literals, ipc://, inproc://) are dialed as written. */
#ifndef CHAT_DIALERS_H
#define CHAT_DIALERS_H

#include <arpa/inet.h>
#include <nng/nng.h>

#include "chat/util.h"

typedef struct chat_dialers chat_dialers;

/* Starts dialing (non-blocking; peers connect in the background). 0 or an
 * nng error (an empty or malformed list). */
int chat_dialers_open(chat_dialers **out, nng_socket sock, const char *urls);
/* The dialers there are now (one per named address). */
int chat_dialers_count(chat_dialers *d);
/* Stops following names; the dialers close with the socket. NULL is fine. */
void chat_dialers_close(chat_dialers *d);
/* chat_resolve() (chat/util.h) follows the same rules. */

#endif
