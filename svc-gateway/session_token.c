/* Session tokens: "v1.<user uuid>.<expiry unix s>.<hex HMAC-SHA256>", the MAC
 * taken with CHAT_SESSION_SECRET over everything before the last dot. Every
 * character is URL-safe, so the token goes into ?session= unescaped, and any
 * gateway with the same secret accepts it. */
#include "gw_wire.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define TOKEN_PREFIX "v1."
#define TOKEN_MAC_HEX 64
#define TOKEN_MAX_EXPIRY_DIGITS 19

/* Writes the lower-case hex HMAC of data[0..len) into hex[65]. */
static int token_mac(const char *secret, const char *data, size_t len,
                     char hex[TOKEN_MAC_HEX + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)data, len, md,
             &mdlen) == NULL ||
        mdlen * 2 != TOKEN_MAC_HEX)
        return -1;
    static const char digits[] = "0123456789abcdef";
    for (unsigned int i = 0; i < mdlen; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 0xF];
    }
    hex[TOKEN_MAC_HEX] = '\0';
    return 0;
}

int gw_token_sign(const char *secret, const char *user_id, int64_t expiry_s,
                  char out[GW_TOKEN_MAX])
{
    if (!chat_uuid_valid(user_id) || expiry_s <= 0)
        return -1;
    int n = snprintf(out, GW_TOKEN_MAX, TOKEN_PREFIX "%s.%" PRId64, user_id, expiry_s);
    if (n < 0 || n + 1 + TOKEN_MAC_HEX >= GW_TOKEN_MAX)
        return -1;
    char mac[TOKEN_MAC_HEX + 1];
    if (token_mac(secret, out, (size_t)n, mac) != 0)
        return -1;
    out[n] = '.';
    memcpy(out + n + 1, mac, TOKEN_MAC_HEX + 1);
    return 0;
}

/* Parses "<digits>" of exactly len bytes into *v (no sign, no leading '+'). */
static int token_parse_u63(const char *s, size_t len, int64_t *v)
{
    if (len == 0 || len > TOKEN_MAX_EXPIRY_DIGITS)
        return -1;
    int64_t x = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        if (x > (INT64_MAX - (s[i] - '0')) / 10)
            return -1;
        x = x * 10 + (s[i] - '0');
    }
    *v = x;
    return 0;
}

int gw_token_verify(const char *secret, const char *token, int64_t now_s,
                    char user_out[CHAT_UUID_LEN + 1])
{
    if (token == NULL)
        return -1;
    size_t len = strnlen(token, GW_TOKEN_MAX);
    const size_t prefix = sizeof TOKEN_PREFIX - 1;
    /* prefix, uuid, '.', >= 1 digit, '.', mac */
    if (len >= GW_TOKEN_MAX || len < prefix + CHAT_UUID_LEN + 3 + TOKEN_MAC_HEX ||
        memcmp(token, TOKEN_PREFIX, prefix) != 0 || token[prefix + CHAT_UUID_LEN] != '.')
        return -1;
    char user[CHAT_UUID_LEN + 1];
    memcpy(user, token + prefix, CHAT_UUID_LEN);
    user[CHAT_UUID_LEN] = '\0';
    if (!chat_uuid_valid(user))
        return -1;

    size_t signed_len = len - TOKEN_MAC_HEX - 1;
    if (token[signed_len] != '.')
        return -1;
    const char *exp_text = token + prefix + CHAT_UUID_LEN + 1;
    int64_t expiry;
    if (token_parse_u63(exp_text, (size_t)(token + signed_len - exp_text), &expiry) != 0)
        return -1;

    char mac[TOKEN_MAC_HEX + 1];
    if (token_mac(secret, token, signed_len, mac) != 0)
        return -1;
    /* Constant time, so the MAC cannot be guessed byte by byte. */
    if (CRYPTO_memcmp(mac, token + signed_len + 1, TOKEN_MAC_HEX) != 0)
        return -1;
    if (expiry <= now_s)
        return -1;
    memcpy(user_out, user, CHAT_UUID_LEN + 1);
    return 0;
}
