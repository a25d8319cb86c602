/* libFuzzer target: session tokens. The input is verified as a ?session=
 * value would be (a C string), and its bytes also seed a sign -> verify
 * round trip, so both directions of session_token.c are checked against
 * each other: a signed token verifies until its expiry and not after, and
 * a token with one MAC digit changed never does. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_wire.h"

/* The seeds in corpus/token are signed with this secret at this time. */
#define TOKEN_SECRET "fuzz-secret"
#define TOKEN_NOW 1700000000

static void token_verify_input(const uint8_t *data, size_t size)
{
    char *token = malloc(size + 1);
    if (token == NULL)
        return;
    memcpy(token, data, size);
    token[size] = '\0';
    char user[CHAT_UUID_LEN + 1] = "untouched";
    if (gw_token_verify(TOKEN_SECRET, token, TOKEN_NOW, user) == 0) {
        /* "v1." + the user id it names. */
        if (!chat_uuid_valid(user) || memcmp(token + 3, user, CHAT_UUID_LEN) != 0)
            abort();
    } else if (strcmp(user, "untouched") != 0) {
        abort(); /* a failed verify wrote its output */
    }
    free(token);
}

/* A user id and an expiry from the first 24 bytes of the input. */
static void token_round_trip(const uint8_t *data, size_t size)
{
    if (size < 24)
        return;
    char user[CHAT_UUID_LEN + 1];
    snprintf(user, sizeof user,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", data[0],
             data[1], data[2], data[3], data[4], data[5], data[6], data[7], data[8], data[9],
             data[10], data[11], data[12], data[13], data[14], data[15]);
    int64_t expiry;
    memcpy(&expiry, data + 16, sizeof expiry);
    char token[GW_TOKEN_MAX], got[CHAT_UUID_LEN + 1];
    if (gw_token_sign(TOKEN_SECRET, user, expiry, token) != 0) {
        if (expiry > 0)
            abort(); /* every positive int64 expiry fits the token */
        return;
    }
    if (gw_token_verify(TOKEN_SECRET, token, expiry - 1, got) != 0 || strcmp(got, user) != 0)
        abort();
    if (gw_token_verify(TOKEN_SECRET, token, expiry, got) == 0)
        abort(); /* expired */
    if (gw_token_verify("other-secret", token, expiry - 1, got) == 0)
        abort();
    size_t last = strlen(token) - 1;
    token[last] = token[last] == '0' ? '1' : '0';
    if (gw_token_verify(TOKEN_SECRET, token, expiry - 1, got) == 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    token_verify_input(data, size);
    token_round_trip(data, size);
    return 0;
}
