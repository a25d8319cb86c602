/* announce: a text to every connection of every gateway, or with --room to
 * the room's members only (message knows them, the gateways filter). */
#include "chatctl.h"

#include <inttypes.h>
#include <string.h>

#include "chat/util.h"

static ctl_rc announce_run(ctl *c, const ctl_opts *o)
{
    const char *text = o->args[0], *room = o->room;
    if (text[strspn(text, " \t\r\n")] == '\0')
        return ctl_usage(c, "announce: empty TEXT");
    if (room != NULL && !chat_room_valid(room))
        return ctl_usage(c, "--room: not a room name ([a-z0-9_-], 1..%d): %s", CHAT_ROOM_MAX,
                         room);
    Chat__AdminRequest req;
    Chat__AdminAnnounceReq body = CHAT__ADMIN_ANNOUNCE_REQ__INIT;
    ctl_req_init(&req);
    body.text = (char *)text;
    req.body_case = CHAT__ADMIN_REQUEST__BODY_ANNOUNCE;
    req.announce = &body;
    ctl_result rr = {0};
    if (room != NULL) {
        ctl_rc rc = ctl_room_get(c, room, true, &rr);
        if (rc != CTL_OK)
            return rc;
        /* Only the members' connections; none when the room is empty. */
        body.filtered = true;
        body.n_only_users = rr.reply->conversation->n_members;
        body.only_users = rr.reply->conversation->members;
    }
    uint64_t reached;
    ctl_rc rc = ctl_gateways_affected(c, &req, &reached);
    ctl_result_clear(&rr);
    cJSON_AddStringToObject(c->doc, "text", text);
    ctl_json_str(c->doc, "room", room);
    ctl_json_num(c->doc, "reached", (double)reached);
    if (room != NULL)
        ctl_say(c, "announced to room %s: %" PRIu64 " connections reached", room, reached);
    else
        ctl_say(c, "announced: %" PRIu64 " connections reached", reached);
    return rc;
}

const ctl_command ctl_cmd_announce = {
    .name = "announce",
    .usage = "announce TEXT [--room NAME]",
    .summary =
        "send {\"type\":\"announcement\",\"text\":TEXT} to every connection (or a room's)",
    .help =
        "Every gateway sends the announcement to each of its connections; with --room\n"
        "only to the room's members (message lists them; unknown room: exit 4).\n"
        "Empty TEXT is bad usage (exit 2). A TEXT starting with '-' goes after \"--\".\n"
        "JSON: {\"text\",\"room\" (null without --room),\"reached\" (connections, summed)}\n",
    .flags = CTL_F_ROOM,
    .min_args = 1,
    .max_args = 1,
    .run = announce_run,
};
