/* chat-bench: options, a preflight connection, the run, the report. */
#include "bench.h"

#include <stdio.h>

int main(int argc, char **argv)
{
    static cb_opts o; /* large (URLs, binds): not on the stack */
    int rc = cb_opts_parse(&o, argc, argv);
    if (rc == 1)
        return 0;
    if (rc != 0)
        return 2;

    char err[512];
    if (cb_preflight(&o, err, sizeof err) != 0) {
        fprintf(stderr, "chat-bench: %s\n", err);
        return 3;
    }

    static cb_run run;
    if (cb_run_all(&o, &run) != 0)
        return 1;
    if (o.json)
        cb_report_json(&o, &run);
    else
        cb_report_text(&o, &run);
    fflush(stdout);
    /* Nothing connected at all: the figures say nothing about the server. */
    return run.res.c[CB_C_CONN_OK] == 0 ? 1 : 0;
}
