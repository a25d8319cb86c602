/* The client side of RFC 6455 and ws:// URLs: pure functions (no I/O), so
 * test_ws.c covers them. Only what a load generator needs: IPv4 literal or
 * resolvable host, no TLS, no extensions. */
#include "bench.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

int cb_url_parse(const char *text, cb_url *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (strlen(text) >= sizeof out->text) {
        snprintf(err, errlen, "URL too long");
        return -1;
    }
    snprintf(out->text, sizeof out->text, "%s", text);
    if (strncmp(text, "ws://", 5) != 0) {
        snprintf(err, errlen, "'%s': only ws:// URLs are supported", text);
        return -1;
    }
    const char *host = text + 5;
    const char *slash = strchr(host, '/');
    size_t hp_len = slash ? (size_t)(slash - host) : strlen(host);
    if (hp_len == 0 || hp_len >= sizeof out->hostport) {
        snprintf(err, errlen, "'%s': missing or too long host", text);
        return -1;
    }
    memcpy(out->hostport, host, hp_len);
    snprintf(out->path, sizeof out->path, "%s", slash ? slash : "/ws");

    char name[96];
    int port = 80;
    memcpy(name, host, hp_len);
    name[hp_len] = '\0';
    char *colon = strrchr(name, ':');
    if (colon) {
        char *end;
        long p = strtol(colon + 1, &end, 10);
        if (*end != '\0' || p < 1 || p > 65535) {
            snprintf(err, errlen, "'%s': bad port", text);
            return -1;
        }
        port = (int)p;
        *colon = '\0';
    }
    out->addr.sin_family = AF_INET;
    out->addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, name, &out->addr.sin_addr) == 1)
        return 0;
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(name, NULL, &hints, &res);
    if (rc != 0 || res == NULL) {
        snprintf(err, errlen, "'%s': cannot resolve host '%s' (%s)", text, name,
                 rc ? gai_strerror(rc) : "no IPv4 address");
        return -1;
    }
    out->addr.sin_addr = ((struct sockaddr_in *)res->ai_addr)->sin_addr;
    freeaddrinfo(res);
    return 0;
}

void cb_ws_key(uint64_t *rng, char key[25])
{
    unsigned char raw[16];
    uint64_t a = cb_rand(rng), b = cb_rand(rng);
    memcpy(raw, &a, 8);
    memcpy(raw + 8, &b, 8);
    EVP_EncodeBlock((unsigned char *)key, raw, 16); /* 24 chars + NUL */
}

/* Appends s percent-encoded (everything outside RFC 3986 "unreserved"). */
static size_t url_escape(char *dst, size_t cap, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        bool plain = isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~';
        if (n + 4 > cap)
            return cap; /* caller sees it did not fit */
        if (plain) {
            dst[n++] = (char)ch;
        } else {
            dst[n++] = '%';
            dst[n++] = hex[ch >> 4];
            dst[n++] = hex[ch & 15];
        }
    }
    return n;
}

int cb_ws_request(char *buf, size_t cap, const cb_url *u, const char *session, const char *key)
{
    char target[256 + 3 * CB_TOKEN_MAX + 16];
    size_t n = (size_t)snprintf(target, sizeof target, "%s", u->path);
    if (session) {
        n += (size_t)snprintf(target + n, sizeof target - n,
                              "%ssession=", strchr(u->path, '?') ? "&" : "?");
        size_t e = url_escape(target + n, sizeof target - n - 1, session);
        if (e >= sizeof target - n - 1)
            return -1;
        n += e;
        target[n] = '\0';
    }
    int len = snprintf(buf, cap,
                       "GET %s HTTP/1.1\r\n"
                       "Host: %s\r\n"
                       "Upgrade: websocket\r\n"
                       "Connection: Upgrade\r\n"
                       "Sec-WebSocket-Key: %s\r\n"
                       "Sec-WebSocket-Version: 13\r\n"
                       "\r\n",
                       target, u->hostport, key);
    return len < 0 || (size_t)len >= cap ? -1 : len;
}

static void accept_for(const char *key, char out[29])
{
    char in[24 + sizeof WS_GUID];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    int n = snprintf(in, sizeof in, "%s%s", key, WS_GUID);
    EVP_Digest(in, (size_t)n, md, &md_len, EVP_sha1(), NULL);
    EVP_EncodeBlock((unsigned char *)out, md, (int)md_len); /* 28 chars + NUL */
}

/* The value of header `name` in head[0..len) (case-insensitive name),
 * trimmed; NULL if absent. */
static const char *header_value(const char *head, size_t len, const char *name, size_t *vlen)
{
    size_t nl = strlen(name);
    const char *p = memchr(head, '\n', len);
    const char *end = head + len;
    while (p && p + 1 < end) {
        p++;
        if ((size_t)(end - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (v < end && (*v == ' ' || *v == '\t'))
                v++;
            const char *e = v;
            while (e < end && *e != '\r' && *e != '\n')
                e++;
            while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
            *vlen = (size_t)(e - v);
            return v;
        }
        p = memchr(p, '\n', (size_t)(end - p));
    }
    return NULL;
}

int cb_ws_response(const char *buf, size_t len, const char *key, int *status, size_t *head_len)
{
    const char *end = NULL;
    for (size_t i = 3; i < len; i++)
        if (buf[i] == '\n' && buf[i - 1] == '\r' && buf[i - 2] == '\n' && buf[i - 3] == '\r') {
            end = buf + i + 1;
            break;
        }
    if (!end)
        return CB_WS_MORE;
    size_t hl = (size_t)(end - buf);
    *status = 0;
    if (hl < 12 || strncmp(buf, "HTTP/1.", 7) != 0)
        return CB_WS_BAD;
    *status = atoi(buf + 9);
    if (*status != 101)
        return CB_WS_BAD;
    size_t vlen = 0;
    const char *v = header_value(buf, hl, "Sec-WebSocket-Accept", &vlen);
    char want[29];
    accept_for(key, want);
    if (!v || vlen != 28 || memcmp(v, want, 28) != 0)
        return CB_WS_BAD;
    *head_len = hl;
    return CB_WS_OK;
}

int cb_ws_parse(const uint8_t *p, size_t n, uint64_t max, cb_ws_frame *f)
{
    if (n < 2)
        return 0;
    if (p[0] & 0x70)
        return -1; /* RSV bits: we negotiated no extension */
    int op = p[0] & 0x0f;
    bool masked = p[1] & 0x80;
    if (masked || (op > 2 && op < 8) || op > 10)
        return -1;
    uint64_t len = p[1] & 0x7f;
    size_t hl = 2;
    if (len == 126) {
        if (n < 4)
            return 0;
        len = ((uint64_t)p[2] << 8) | p[3];
        hl = 4;
    } else if (len == 127) {
        if (n < 10)
            return 0;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = (len << 8) | p[2 + i];
        hl = 10;
    }
    if (len > max || (op >= 8 && len > 125))
        return -1;
    if (n - hl < len)
        return 0;
    f->fin = p[0] & 0x80;
    f->opcode = op;
    f->hdr_len = hl;
    f->len = len;
    return 1;
}

size_t cb_ws_encode(uint8_t *out, int opcode, const void *payload, size_t len, uint32_t mask)
{
    size_t h = 0;
    out[h++] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        out[h++] = (uint8_t)(0x80 | len);
    } else if (len <= 0xffff) {
        out[h++] = 0x80 | 126;
        out[h++] = (uint8_t)(len >> 8);
        out[h++] = (uint8_t)len;
    } else {
        out[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            out[h++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    uint8_t mk[4];
    memcpy(mk, &mask, 4);
    memcpy(out + h, mk, 4);
    h += 4;
    const uint8_t *src = payload;
    uint8_t *dst = out + h;
    size_t i = 0;
    /* 8 bytes at a time: the mask repeats every 4 bytes. */
    uint64_t m8;
    uint8_t mk8[8] = {mk[0], mk[1], mk[2], mk[3], mk[0], mk[1], mk[2], mk[3]};
    memcpy(&m8, mk8, 8);
    for (; i + 8 <= len; i += 8) {
        uint64_t v;
        memcpy(&v, src + i, 8);
        v ^= m8;
        memcpy(dst + i, &v, 8);
    }
    for (; i < len; i++)
        dst[i] = src[i] ^ mk[i & 3];
    return h + len;
}
