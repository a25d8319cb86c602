/* Mutual TLS for nng sockets (see tls.h). The two configurations (listener
 * and dialer side) are made once, on first use, and shared by every socket
 * of the process: nng holds a reference per endpoint. A failure to load
 * them is remembered too, so every TLS address fails the same clear way. */
#include "tls.h"

#include "chat/log.h"

#include <errno.h>
#include <nng/supplemental/tls/tls.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PEM_MAX (1 << 20)

static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static nng_tls_config *tls_server, *tls_client;
static int tls_err;

bool chat_tls_url(const char *url)
{
    return url != NULL && strncmp(url, "tls+", 4) == 0;
}

/* The whole file, NUL-terminated (what mbedTLS's PEM parser wants), or NULL
 * with the reason logged. */
static char *pem_read(const char *setting, const char *path)
{
    if (path == NULL || path[0] == '\0') {
        chat_error("tls_config_missing",
                   "setting=%s (a tls+tcp:// address needs "
                   "CHAT_TLS_CERT, CHAT_TLS_KEY and CHAT_TLS_CA)",
                   setting);
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    char *buf = f != NULL ? malloc(PEM_MAX + 1) : NULL;
    size_t n = buf != NULL ? fread(buf, 1, PEM_MAX + 1, f) : 0;
    int err = errno;
    if (f != NULL)
        fclose(f);
    if (buf == NULL || n == 0 || n > PEM_MAX) {
        chat_error("tls_file_unreadable", "setting=%s path=%s err=\"%s\"", setting, path,
                   f == NULL || buf == NULL ? strerror(err)
                   : n == 0                 ? "empty"
                                            : "too large");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

static int config_make(nng_tls_config **out, nng_tls_mode mode, const char *ca,
                       const char *cert, const char *key, const char *name)
{
    nng_tls_config *c = NULL;
    int rv = nng_tls_config_alloc(&c, mode);
    if (rv == 0)
        rv = nng_tls_config_version(c, NNG_TLS_1_2, NNG_TLS_1_3);
    if (rv == 0 && (rv = nng_tls_config_ca_chain(c, ca, NULL)) != 0)
        chat_error("tls_ca_invalid", "path=%s err=\"%s\"", getenv("CHAT_TLS_CA"),
                   nng_strerror(rv));
    if (rv == 0 && (rv = nng_tls_config_own_cert(c, cert, key, NULL)) != 0)
        chat_error("tls_cert_invalid", "cert=%s key=%s err=\"%s\"", getenv("CHAT_TLS_CERT"),
                   getenv("CHAT_TLS_KEY"), nng_strerror(rv));
    if (rv == 0)
        rv = nng_tls_config_auth_mode(c, NNG_TLS_AUTH_MODE_REQUIRED);
    if (rv == 0 && name != NULL)
        rv = nng_tls_config_server_name(c, name);
    if (rv != 0) {
        if (c != NULL)
            nng_tls_config_free(c);
        return rv;
    }
    *out = c;
    return 0;
}

static void tls_load(void)
{
    char *ca = pem_read("CHAT_TLS_CA", getenv("CHAT_TLS_CA"));
    char *cert = ca != NULL ? pem_read("CHAT_TLS_CERT", getenv("CHAT_TLS_CERT")) : NULL;
    char *key = cert != NULL ? pem_read("CHAT_TLS_KEY", getenv("CHAT_TLS_KEY")) : NULL;
    const char *name = getenv("CHAT_TLS_SERVER_NAME");
    if (name == NULL || name[0] == '\0')
        name = CHAT_TLS_DEFAULT_SERVER_NAME;
    tls_err = key == NULL ? NNG_EINVAL : 0;
    if (tls_err == 0)
        tls_err = config_make(&tls_server, NNG_TLS_MODE_SERVER, ca, cert, key, NULL);
    if (tls_err == 0 &&
        (tls_err = config_make(&tls_client, NNG_TLS_MODE_CLIENT, ca, cert, key, name)) != 0) {
        nng_tls_config_free(tls_server);
        tls_server = NULL;
    }
    if (tls_err == 0)
        chat_info("tls_ready", "cert=%s ca=%s server_name=%s", getenv("CHAT_TLS_CERT"),
                  getenv("CHAT_TLS_CA"), name);
    if (key != NULL)
        memset(key, 0, strlen(key)); /* the key lives on only inside mbedTLS */
    free(ca);
    free(cert);
    free(key);
}

/* The configuration for one side, or NULL with *rv set. */
static nng_tls_config *tls_config(bool server, int *rv)
{
    pthread_once(&tls_once, tls_load);
    *rv = tls_err;
    return tls_err != 0 ? NULL : server ? tls_server : tls_client;
}

int chat_tls_listen(nng_socket sock, const char *url)
{
    if (!chat_tls_url(url))
        return nng_listen(sock, url, NULL, 0);
    int rv;
    nng_tls_config *cfg = tls_config(true, &rv);
    nng_listener l;
    if (cfg == NULL || (rv = nng_listener_create(&l, sock, url)) != 0)
        return rv;
    if ((rv = nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, cfg)) != 0 ||
        (rv = nng_listener_start(l, 0)) != 0)
        nng_listener_close(l);
    return rv;
}

int chat_tls_dial(nng_socket sock, const char *url, nng_dialer *out)
{
    if (!chat_tls_url(url))
        return nng_dial(sock, url, out, NNG_FLAG_NONBLOCK);
    int rv;
    nng_tls_config *cfg = tls_config(false, &rv);
    nng_dialer d;
    if (cfg == NULL || (rv = nng_dialer_create(&d, sock, url)) != 0)
        return rv;
    if ((rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cfg)) != 0 ||
        (rv = nng_dialer_start(d, NNG_FLAG_NONBLOCK)) != 0) {
        nng_dialer_close(d);
        return rv;
    }
    *out = d;
    return 0;
}
