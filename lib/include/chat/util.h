/* Small helpers every program needs. */
#ifndef CHAT_UTIL_H
#define CHAT_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define CHAT_UUID_LEN 36 /* text form, without the NUL */

int64_t chat_now_ms(void);  /* wall clock, unix ms */
int64_t chat_mono_ms(void); /* monotonic ms */
/* CLOCK_REALTIME ms from now: a pthread_cond_timedwait() deadline. */
struct timespec chat_deadline_ms(int64_t ms);

/* Writes a fresh random (v4) UUID in lower-case text into out[37]. */
void chat_uuid_new(char out[CHAT_UUID_LEN + 1]);
/* True when s is a UUID in canonical 8-4-4-4-12 hex text form. */
bool chat_uuid_valid(const char *s);

#define CHAT_ROOM_MAX 64 /* bytes of a room name */
/* True when s is a room name: [a-z0-9_-]{1,CHAT_ROOM_MAX} (NULL: false). */
bool chat_room_valid(const char *s);

/* SIGINT/SIGTERM set a flag (a second SIGINT exits at once); SIGPIPE is
 * ignored. chat_stopping() reads the flag. */
void chat_signals_install(void);
bool chat_stopping(void);
/* Blocks until a stop signal came (no polling). Needs chat_signals_install(). */
void chat_wait_for_stop(void);

/* Splits a comma-separated list in place-safe way: calls fn for every
 * non-empty trimmed item. Returns the first non-zero fn result, or 0. */
int chat_split_list(const char *list, int (*fn)(const char *item, void *arg), void *arg);

/* host's addresses (numeric text): looked up first in the file
 * CHAT_HOSTS_FILE (lines "name addr addr ..."), then with getaddrinfo(); an
 * IP literal is itself. How many, or -1 when it does not resolve. */
#define CHAT_ADDR_TEXT 46 /* INET6_ADDRSTRLEN */
int chat_resolve(const char *host, char out[][CHAT_ADDR_TEXT], int max);

#endif
