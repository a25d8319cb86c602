/* The internal plane's mutual TLS (lib-internal: rpc_server.c, pubsub.c,
 * dialers.c). An nng address "tls+tcp://HOST:PORT" (or tls+tcp4/tls+tcp6)
 * is listened on or dialed with this process's TLS configuration, loaded once
 * from the environment:
 *
 *   CHAT_TLS_CERT         PEM certificate (chain) of this process
 *   CHAT_TLS_KEY          its PEM private key
 *   CHAT_TLS_CA           PEM CA certificate(s) a peer must be signed by
 *   CHAT_TLS_SERVER_NAME  the name a dialer requires in the listener's
 *                         certificate (default "chat-internal")
 *
 * Both ends present a certificate and both verify the other's against the
 * CA: a listener refuses a peer without a CA-signed certificate, a dialer a
 * listener without one (or without the server name). Every other scheme
 * (tcp://, ipc://, inproc://) is used as written, without TLS. */
#ifndef CHAT_TLS_H
#define CHAT_TLS_H

#include <nng/nng.h>
#include <stdbool.h>

#define CHAT_TLS_DEFAULT_SERVER_NAME "chat-internal"

/* The URL names a TLS transport. */
bool chat_tls_url(const char *url);
/* nng_listen(), with the server configuration for a TLS URL. 0 or an nng
 * error (NNG_EINVAL when the TLS settings are missing or unreadable). */
int chat_tls_listen(nng_socket sock, const char *url);
/* nng_dial(..., NNG_FLAG_NONBLOCK), with the client configuration for a TLS
 * URL. 0 or an nng error. */
int chat_tls_dial(nng_socket sock, const char *url, nng_dialer *out);

#endif
