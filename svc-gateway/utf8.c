/* UTF-8 checks for client text: the WebSocket layer needs strict validation
 * (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF) and the
 * send frame needs lengths in code points, not bytes. */
#include "gw_wire.h"

/* Length of the sequence starting with lead byte c, or 0 if c cannot start
 * one (a continuation byte, an overlong lead C0/C1, or F5..FF). */
static int utf8_seq_len(uint8_t c)
{
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return 2;
    if (c >= 0xE0 && c <= 0xEF)
        return 3;
    if (c >= 0xF0 && c <= 0xF4)
        return 4;
    return 0;
}

/* Decodes one code point at s (n bytes left). Returns its length, or 0 when
 * the bytes there are not a valid, shortest-form UTF-8 sequence. */
static int utf8_decode(const uint8_t *s, size_t n, uint32_t *cp)
{
    int len = utf8_seq_len(s[0]);
    if (len == 0 || (size_t)len > n)
        return 0;
    if (len == 1) {
        *cp = s[0];
        return 1;
    }
    uint32_t v = s[0] & (0xFF >> (len + 1));
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    /* The lead byte ranges above exclude most overlongs; these catch the
     * 3- and 4-byte ones, UTF-16 surrogates and values past U+10FFFF. */
    if ((len == 3 && v < 0x800) || (len == 4 && v < 0x10000) || (v >= 0xD800 && v <= 0xDFFF) ||
        v > 0x10FFFF)
        return 0;
    *cp = v;
    return len;
}

bool gw_utf8_valid(const void *data, size_t n)
{
    const uint8_t *s = data;
    size_t i = 0;
    while (i < n) {
        /* Fast path: ASCII runs are the common case. */
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        int len = utf8_decode(s + i, n - i, &cp);
        if (len == 0)
            return false;
        i += (size_t)len;
    }
    return true;
}

size_t gw_utf8_count(const char *text, size_t n)
{
    const uint8_t *s = (const uint8_t *)text;
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) /* every byte but continuation bytes starts one */
            count++;
    return count;
}

/* Unicode's White_Space property (PropList.txt). */
static bool utf8_is_space(uint32_t cp)
{
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 ||
           cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
           cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

bool gw_utf8_only_space(const char *text, size_t n)
{
    const uint8_t *s = (const uint8_t *)text;
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        int len = utf8_decode(s + i, n - i, &cp);
        if (len == 0)
            return false; /* not text at all: let other checks judge it */
        if (!utf8_is_space(cp))
            return false;
        i += (size_t)len;
    }
    return true;
}
