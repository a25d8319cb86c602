/* The command line, the env file and the token: everything read before a
 * request is sent. */
#include "chatctl.h"

#include <ctype.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CTL_DEFAULT_TIMEOUT_MS 3000
#define CTL_LINE_MAX 8192

static const char *const kind_env[CTL_KINDS] = {
    "CHAT_GATEWAY_ADMIN_ADDRS", "CHAT_MESSAGE_ADMIN_ADDRS", "CHAT_MATCH_ADMIN_ADDRS",
    "CHAT_PRESENCE_ADMIN_ADDRS"};
static const char *const kind_default[CTL_KINDS] = {
    "tcp://127.0.0.1:7103", "tcp://127.0.0.1:7203", "tcp://127.0.0.1:7303",
    "tcp://127.0.0.1:7403"};

/* A flag that takes a value: its name and where the value goes. */
typedef struct opt_flag {
    const char *name;
    unsigned cmd_flag; /* CTL_F_* for a command flag, 0 for a global one */
    size_t offset;     /* of the const char * in ctl_opts */
} opt_flag;

#define OPT_AT(field) offsetof(ctl_opts, field)

static const opt_flag value_flags[] = {
    {"--gateways", 0, OPT_AT(addrs[CTL_GATEWAY])},
    {"--message", 0, OPT_AT(addrs[CTL_MESSAGE])},
    {"--match", 0, OPT_AT(addrs[CTL_MATCH])},
    {"--presence", 0, OPT_AT(addrs[CTL_PRESENCE])},
    {"--token-file", 0, OPT_AT(token_file)},
    {"--env", 0, OPT_AT(env_file)},
    {"--timeout", 0, 0}, /* parsed, not stored as text */
    {"--reason", CTL_F_REASON, OPT_AT(reason)},
    {"--for", CTL_F_FOR, OPT_AT(for_text)},
    {"--room", CTL_F_ROOM, OPT_AT(room)},
    {"--over", CTL_F_OVER, OPT_AT(over_text)},
};

bool ctl_parse_int(const char *s, long min, long max, long *out)
{
    if (s == NULL || !isdigit((unsigned char)s[0]))
        return false;
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

bool ctl_parse_duration(const char *s, int64_t *ms)
{
    static const struct {
        char unit;
        int64_t ms;
    } units[] = {{'s', 1000}, {'m', 60000}, {'h', 3600000}, {'d', 86400000}};
    size_t n = s ? strlen(s) : 0;
    if (n < 2 || n > 12)
        return false;
    char num[16];
    memcpy(num, s, n - 1);
    num[n - 1] = '\0';
    long v;
    /* Ten years at most: until_ms stays far from overflowing. */
    if (!ctl_parse_int(num, 1, 3650L * 86400, &v))
        return false;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (s[n - 1] == units[i].unit && (int64_t)v * units[i].ms <= 3650LL * 86400000) {
            *ms = (int64_t)v * units[i].ms;
            return true;
        }
    }
    return false;
}

/* Takes a flag's value ("--x=v" or the next argument); NULL when none. */
static const char *opt_value(const char *arg, size_t name_len, int argc, char **argv, int *i)
{
    if (arg[name_len] == '=')
        return arg + name_len + 1;
    if (*i + 1 >= argc)
        return NULL;
    return argv[++*i];
}

/* Handles one "--..." argument. */
static ctl_rc opt_flag_parse(int argc, char **argv, int *i, ctl_opts *o, char *err, size_t errn)
{
    const char *arg = argv[*i];
    if (strcmp(arg, "--json") == 0) {
        o->json = true;
        return CTL_OK;
    }
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
        o->help = true;
        return CTL_OK;
    }
    for (size_t f = 0; f < sizeof value_flags / sizeof value_flags[0]; f++) {
        const opt_flag *fl = &value_flags[f];
        size_t len = strlen(fl->name);
        if (strncmp(arg, fl->name, len) != 0 || (arg[len] != '\0' && arg[len] != '='))
            continue;
        const char *v = opt_value(arg, len, argc, argv, i);
        if (v == NULL) {
            snprintf(err, errn, "%s needs a value", fl->name);
            return CTL_USAGE;
        }
        if (strcmp(fl->name, "--timeout") == 0) {
            long ms;
            if (!ctl_parse_int(v, 1, 600000, &ms)) {
                snprintf(err, errn, "--timeout: not a number of ms in 1..600000: %s", v);
                return CTL_USAGE;
            }
            o->timeout_ms = (int)ms;
            return CTL_OK;
        }
        *(const char **)((char *)o + fl->offset) = v;
        o->flags_seen |= fl->cmd_flag;
        return CTL_OK;
    }
    snprintf(err, errn, "unknown flag %s", arg);
    return CTL_USAGE;
}

ctl_rc ctl_opts_parse(int argc, char **argv, ctl_opts *o, char *err, size_t errn)
{
    memset(o, 0, sizeof *o);
    o->timeout_ms = CTL_DEFAULT_TIMEOUT_MS;
    bool flags_done = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!flags_done && strcmp(arg, "--") == 0) {
            flags_done = true;
            continue;
        }
        if (!flags_done && arg[0] == '-' && arg[1] != '\0') {
            ctl_rc rc = opt_flag_parse(argc, argv, &i, o, err, errn);
            if (rc != CTL_OK)
                return rc;
            continue;
        }
        if (o->command == NULL) {
            o->command = arg;
        } else if (o->n_args < CTL_ARGS_MAX) {
            o->args[o->n_args++] = arg;
        } else {
            snprintf(err, errn, "too many arguments");
            return CTL_USAGE;
        }
    }
    return CTL_OK;
}

/* Drops blanks at both ends, in place. */
static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static bool env_key_ok(const char *k)
{
    if (!isalpha((unsigned char)k[0]) && k[0] != '_')
        return false;
    for (; *k; k++)
        if (!isalnum((unsigned char)*k) && *k != '_')
            return false;
    return true;
}

int ctl_env_line(const char *line, char *key, size_t keyn, char *val, size_t valn)
{
    char buf[CTL_LINE_MAX];
    snprintf(buf, sizeof buf, "%s", line);
    char *s = trim(buf);
    if (*s == '\0' || *s == '#')
        return 0;
    if (strncmp(s, "export ", 7) == 0)
        s = trim(s + 7);
    char *eq = strchr(s, '=');
    if (eq == NULL)
        return -1;
    *eq = '\0';
    char *k = trim(s), *v = trim(eq + 1);
    size_t n = strlen(v);
    if (n >= 2 && (v[0] == '"' || v[0] == '\'') && v[n - 1] == v[0]) {
        v[n - 1] = '\0';
        v++;
    }
    if (!env_key_ok(k) || strlen(k) >= keyn || strlen(v) >= valn)
        return -1;
    strcpy(key, k);
    strcpy(val, v);
    return 1;
}

int ctl_env_load(const char *path, char *err, size_t errn)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errn, "%s: %s", path, strerror(errno));
        return -1;
    }
    char line[CTL_LINE_MAX], key[256], val[CTL_LINE_MAX];
    int rv = 0;
    for (int no = 1; fgets(line, sizeof line, f) != NULL; no++) {
        int r = ctl_env_line(line, key, sizeof key, val, sizeof val);
        if (r < 0) {
            snprintf(err, errn, "%s:%d: not KEY=VALUE", path, no);
            rv = -1;
            break;
        }
        /* The real environment wins over the file. */
        if (r == 1 && getenv(key) == NULL)
            setenv(key, val, 0);
    }
    fclose(f);
    return rv;
}

/* <dir of the binary>/../../deploy/local/.state/chatctl.env into buf. */
static bool env_beside_binary(char *buf, size_t n)
{
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0)
        return false;
    exe[len] = '\0';
    snprintf(buf, n, "%s/../../deploy/local/.state/chatctl.env", dirname(exe));
    return true;
}

ctl_rc ctl_env_setup(const ctl_opts *o, char *err, size_t errn)
{
    const char *named = o->env_file ? o->env_file : getenv("CHAT_ENV_FILE");
    if (named != NULL && named[0] != '\0')
        return ctl_env_load(named, err, errn) == 0 ? CTL_OK : CTL_USAGE;
    char cands[3][PATH_MAX];
    int n = 0;
    const char *state = getenv("CHAT_STATE_DIR");
    if (state != NULL && state[0] != '\0')
        snprintf(cands[n++], PATH_MAX, "%s/chatctl.env", state);
    snprintf(cands[n++], PATH_MAX, "./deploy/local/.state/chatctl.env");
    if (env_beside_binary(cands[n], PATH_MAX))
        n++;
    for (int i = 0; i < n; i++)
        if (access(cands[i], R_OK) == 0)
            return ctl_env_load(cands[i], err, errn) == 0 ? CTL_OK : CTL_USAGE;
    return CTL_OK;
}

static ctl_rc token_from_file(const char *path, char *tok, size_t tokn, char *err, size_t errn)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errn, "token file %s: %s", path, strerror(errno));
        return CTL_USAGE;
    }
    size_t n = fread(tok, 1, tokn - 1, f);
    fclose(f);
    tok[n] = '\0';
    while (n > 0 && isspace((unsigned char)tok[n - 1]))
        tok[--n] = '\0';
    return CTL_OK;
}

ctl_rc ctl_token_read(const ctl_opts *o, char *tok, size_t tokn, char *err, size_t errn)
{
    tok[0] = '\0';
    if (o->token_file != NULL)
        return token_from_file(o->token_file, tok, tokn, err, errn);
    const char *env = getenv("CHAT_ADMIN_TOKEN");
    if (env != NULL && env[0] != '\0') {
        snprintf(tok, tokn, "%s", env);
        return CTL_OK;
    }
    const char *file = getenv("CHAT_ADMIN_TOKEN_FILE");
    if (file != NULL && file[0] != '\0')
        return token_from_file(file, tok, tokn, err, errn);
    return CTL_OK;
}

const char *ctl_addrs(const ctl_opts *o, ctl_kind k)
{
    if (o->addrs[k] != NULL)
        return o->addrs[k];
    const char *env = getenv(kind_env[k]);
    return env != NULL ? env : kind_default[k];
}
