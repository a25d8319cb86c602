/* Configuration from environment variables, described by one table per
 * program. The same table parses, validates and prints --help. */
#ifndef CHAT_CONFIG_H
#define CHAT_CONFIG_H

#include <stddef.h>
#include <stdio.h>

typedef enum { CHAT_CFG_INT, CHAT_CFG_STR } chat_cfg_type;

typedef struct chat_cfg_item {
    const char *env; /* environment variable, e.g. "CHAT_MAX_TEXT" */
    chat_cfg_type type;
    const char *def;    /* default, as text */
    long long min, max; /* bounds (CHAT_CFG_INT only) */
    const char *help;
    void *dst; /* long long * or const char ** (points into environ or def);
                  a string item may have none: listed for --help, read by the
                  module that uses it (e.g. CHAT_REDIS_CFG_AUTH) */
} chat_cfg_item;

/* Loads every item from the environment (or its default) into dst.
 * Returns 0, or -1 with a message naming the variable in err. */
int chat_cfg_load(const chat_cfg_item *items, size_t n, char *err, size_t errlen);

void chat_cfg_print_help(FILE *f, const char *prog, const char *about,
                         const chat_cfg_item *items, size_t n);

/* For main(): handles --help (returns 1: exit 0), loads the table (returns
 * -1 after printing the error: exit 2) or returns 0 to go on. */
int chat_cfg_main(int argc, char **argv, const char *about, const chat_cfg_item *items,
                  size_t n);

#endif
