/* Small JSON helpers for the frames we read and write. */
#include "bench.h"

#include <string.h>

const char *cb_json_str(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

bool cb_json_u64(const cJSON *o, const char *name, uint64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9007199254740992.0)
        return false;
    *out = (uint64_t)v->valuedouble;
    return true;
}

int cb_json_escape(char *dst, size_t cap, const char *src)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    for (const unsigned char *s = (const unsigned char *)src; *s; s++) {
        if (n + 7 > cap)
            return -1;
        if (*s == '"' || *s == '\\') {
            dst[n++] = '\\';
            dst[n++] = (char)*s;
        } else if (*s < 0x20) {
            memcpy(dst + n, "\\u00", 4);
            dst[n + 4] = hex[*s >> 4];
            dst[n + 5] = hex[*s & 15];
            n += 6;
        } else {
            dst[n++] = (char)*s;
        }
    }
    if (n + 1 > cap)
        return -1;
    dst[n] = '\0';
    return (int)n;
}
