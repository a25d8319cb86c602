/* The command table, the checks every command line gets before anything is
 * sent, and the --help texts. */
#include "chatctl.h"

#include <stdio.h>
#include <string.h>

static const ctl_command *const commands[] = {
    &ctl_cmd_status,       &ctl_cmd_users, &ctl_cmd_user,      &ctl_cmd_kick,
    &ctl_cmd_ban,          &ctl_cmd_unban, &ctl_cmd_announce,  &ctl_cmd_queue,
    &ctl_cmd_conversation, &ctl_cmd_room,  &ctl_cmd_retention, &ctl_cmd_drain,
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static const struct {
    unsigned flag;
    const char *name;
} cmd_flags[] = {
    {CTL_F_REASON, "--reason"},
    {CTL_F_FOR, "--for"},
    {CTL_F_ROOM, "--room"},
    {CTL_F_OVER, "--over"},
};

const ctl_command *ctl_command_find(const char *name)
{
    for (size_t i = 0; name != NULL && i < N_COMMANDS; i++)
        if (strcmp(commands[i]->name, name) == 0)
            return commands[i];
    return NULL;
}

ctl_rc ctl_command_check(const ctl_opts *o, const ctl_command **cmd, char *err, size_t errn)
{
    if (o->command == NULL) {
        snprintf(err, errn, "no command given");
        return CTL_USAGE;
    }
    const ctl_command *c = ctl_command_find(o->command);
    if (c == NULL) {
        snprintf(err, errn, "unknown command %s", o->command);
        return CTL_USAGE;
    }
    for (size_t i = 0; i < sizeof cmd_flags / sizeof cmd_flags[0]; i++)
        if ((o->flags_seen & cmd_flags[i].flag) && !(c->flags & cmd_flags[i].flag)) {
            snprintf(err, errn, "%s: unknown flag %s", c->name, cmd_flags[i].name);
            return CTL_USAGE;
        }
    if (o->n_args < c->min_args || o->n_args > c->max_args) {
        snprintf(err, errn, "%s: %s argument (usage: chatctl %s)", c->name,
                 o->n_args < c->min_args ? "missing" : "extra", c->usage);
        return CTL_USAGE;
    }
    *cmd = c;
    return CTL_OK;
}

static const char help_head[] =
    "usage: chatctl [GLOBAL FLAGS] COMMAND [ARGS] [FLAGS]\n"
    "\n"
    "The admin CLI of the chat backend: asks every gateway and every replica of\n"
    "svc-message, svc-match and svc-presence on their admin addresses.\n"
    "\n"
    "commands:\n";

static const char help_tail[] =
    "\n"
    "global flags (before or after the command):\n"
    "  --gateways ADDRS    gateways' admin addresses   (env CHAT_GATEWAY_ADMIN_ADDRS,\n"
    "                      default tcp://127.0.0.1:7103)\n"
    "  --message ADDRS     svc-message's               (env CHAT_MESSAGE_ADMIN_ADDRS,\n"
    "                      default tcp://127.0.0.1:7203)\n"
    "  --match ADDRS       svc-match's                 (env CHAT_MATCH_ADMIN_ADDRS,\n"
    "                      default tcp://127.0.0.1:7303)\n"
    "  --presence ADDRS    svc-presence's              (env CHAT_PRESENCE_ADMIN_ADDRS,\n"
    "                      default tcp://127.0.0.1:7403)\n"
    "      ADDRS: comma-separated nng URLs, every replica; a tcp://NAME:PORT reaches\n"
    "      every address NAME resolves to (CHAT_HOSTS_FILE first, then DNS).\n"
    "      tls+tcp:// addresses use mutual TLS: CHAT_TLS_CERT, CHAT_TLS_KEY and\n"
    "      CHAT_TLS_CA name chatctl's certificate, key and the cluster's CA.\n"
    "  --token-file FILE   the admin secret from FILE (trailing blanks dropped);\n"
    "                      else env CHAT_ADMIN_TOKEN, else env CHAT_ADMIN_TOKEN_FILE\n"
    "  --env FILE          defaults from FILE (lines KEY=VALUE, # comments, optional\n"
    "                      quotes; the environment overrides it, flags override both).\n"
    "                      Without --env: $CHAT_ENV_FILE, else the first that exists\n"
    "                      of $CHAT_STATE_DIR/chatctl.env, ./deploy/local/.state/\n"
    "                      chatctl.env, <chatctl's dir>/../../deploy/local/.state/\n"
    "                      chatctl.env (deploy/local/run.sh writes it)\n"
    "  --json              one JSON document on stdout instead of tables\n"
    "  --timeout MS        per request: to connect and to answer (default 3000)\n"
    "  --help              this text; chatctl COMMAND --help for one command\n"
    "\n"
    "exit status: 0 done; 1 failed or partly failed (stderr and the JSON \"errors\"\n"
    "name each process: kind, address, error); 2 bad usage; 3 unauthorized (a\n"
    "process refused the token: \"unauthorized\" on stderr; wins over the others);\n"
    "4 not found (unknown user, conversation, room, gateway).\n"
    "\n"
    "--json: one document on stdout with the command's fields (chatctl COMMAND\n"
    "--help; docs/CHATCTL.md) and nothing else when everything worked. When a\n"
    "process failed it also has \"errors\": [{\"kind\",\"address\",\"error\"}], one\n"
    "per process; when the command failed as a whole (bad usage, unknown user,\n"
    "unauthorized) \"error\": the text also printed on stderr.\n"
    "Every request carries a fresh req_id (ctl-<12 hex>), logged by the services.\n";

void ctl_help_global(void)
{
    fputs(help_head, stdout);
    for (size_t i = 0; i < N_COMMANDS; i++)
        printf("  %s\n      %s\n", commands[i]->usage, commands[i]->summary);
    fputs(help_tail, stdout);
}

void ctl_help_command(const ctl_command *cmd)
{
    printf("usage: chatctl [GLOBAL FLAGS] %s\n\n%s.\n\n%s", cmd->usage, cmd->summary,
           cmd->help);
    printf(
        "\nGlobal flags, exit status and the fields of every JSON document: chatctl --help\n");
}
