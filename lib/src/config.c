/* Table-driven configuration from the environment (see config.h). */
#include "chat/config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int cfg_parse_int(const chat_cfg_item *it, const char *text, char *err, size_t errlen)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0') {
        snprintf(err, errlen, "%s=\"%s\" is not an integer", it->env, text);
        return -1;
    }
    if (v < it->min || v > it->max) {
        snprintf(err, errlen, "%s=%lld is out of range [%lld, %lld]", it->env, v, it->min,
                 it->max);
        return -1;
    }
    *(long long *)it->dst = v;
    return 0;
}

int chat_cfg_load(const chat_cfg_item *items, size_t n, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        const chat_cfg_item *it = &items[i];
        const char *text = getenv(it->env);
        if (text == NULL)
            text = it->def;
        if (it->type == CHAT_CFG_STR) {
            if (it->dst != NULL) /* NULL: listed for --help, read by its module */
                *(const char **)it->dst = text;
        } else if (cfg_parse_int(it, text, err, errlen) != 0) {
            return -1;
        }
    }
    return 0;
}

void chat_cfg_print_help(FILE *f, const char *prog, const char *about,
                         const chat_cfg_item *items, size_t n)
{
    fprintf(f, "usage: %s [--help]\n%s\n\nConfiguration (environment variables):\n", prog,
            about);
    for (size_t i = 0; i < n; i++) {
        const chat_cfg_item *it = &items[i];
        if (it->type == CHAT_CFG_INT)
            fprintf(f, "  %-28s %s (default %s, %lld..%lld)\n", it->env, it->help, it->def,
                    it->min, it->max);
        else
            fprintf(f, "  %-28s %s (default \"%s\")\n", it->env, it->help, it->def);
    }
}

int chat_cfg_main(int argc, char **argv, const char *about, const chat_cfg_item *items,
                  size_t n)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            chat_cfg_print_help(stdout, argv[0], about, items, n);
            return 1;
        }
        fprintf(stderr, "%s: unknown argument \"%s\" (try --help)\n", argv[0], argv[i]);
        return -1;
    }
    char err[256];
    if (chat_cfg_load(items, n, err, sizeof err) != 0) {
        fprintf(stderr, "%s: configuration error: %s\n", argv[0], err);
        return -1;
    }
    return 0;
}
