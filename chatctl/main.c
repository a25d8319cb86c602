/* chatctl: reads the command line, the env file and the token, runs one
 * command, prints, exits with its status (see chatctl.h). */
#include "chatctl.h"

#include <stdio.h>
#include <stdlib.h>

#include "chat/log.h"

/* The library logs nothing chatctl's user needs below errors. */
static void log_setup(void)
{
    setenv("CHAT_LOG_LEVEL", "error", 0);
    chat_log_init("chatctl");
}

/* --help: true when it was asked for (and printed). */
static bool help(const ctl_opts *o)
{
    if (!o->help)
        return false;
    const ctl_command *cmd = ctl_command_find(o->command);
    if (cmd != NULL)
        ctl_help_command(cmd);
    else
        ctl_help_global();
    return true;
}

/* --json promises a document on stdout, a refused command line too. */
static void usage_json(const char *err)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "error", err);
    char *s = cJSON_Print(doc);
    if (s != NULL)
        printf("%s\n", s);
    free(s);
    cJSON_Delete(doc);
}

/* Everything before the first request; CTL_OK when the command may run. */
static ctl_rc prepare(int argc, char **argv, ctl_opts *o, const ctl_command **cmd, char *tok,
                      size_t tokn, bool *done)
{
    char err[512];
    ctl_rc rc = ctl_opts_parse(argc, argv, o, err, sizeof err);
    *done = rc == CTL_OK && help(o);
    if (*done)
        return CTL_OK;
    if (rc == CTL_OK)
        rc = ctl_command_check(o, cmd, err, sizeof err);
    if (rc == CTL_OK)
        rc = ctl_env_setup(o, err, sizeof err);
    if (rc == CTL_OK)
        rc = ctl_token_read(o, tok, tokn, err, sizeof err);
    if (rc != CTL_OK) {
        ctl_usage_print(err);
        if (o->json)
            usage_json(err);
    }
    return rc;
}

int main(int argc, char **argv)
{
    ctl_opts o;
    const ctl_command *cmd = NULL;
    static char tok[CTL_TOKEN_MAX];
    bool done;
    ctl_rc rc = prepare(argc, argv, &o, &cmd, tok, sizeof tok, &done);
    if (done || rc != CTL_OK)
        return (int)rc;
    log_setup();
    ctl c;
    if (ctl_init(&c, &o) != CTL_OK) {
        fprintf(stderr, "chatctl: out of memory\n");
        ctl_fini(&c);
        return CTL_FAILED;
    }
    snprintf(c.token, sizeof c.token, "%s", tok);
    rc = cmd->run(&c, &o);
    if (rc == CTL_UNAUTHORIZED)
        ctl_fail(&c, rc, "unauthorized");
    if (c.json)
        ctl_json_print(&c);
    ctl_fini(&c);
    return (int)rc;
}
