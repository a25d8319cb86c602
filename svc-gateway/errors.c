/* Client error codes (PROTOCOL.md "Errors") and their mapping from the
 * services' chat.Code. */
#include "gw_wire.h"

static const struct {
    const char *name;
    const char *text;
} err_table[GW_E_COUNT] = {
    [GW_E_NONE] = {"", ""},
    [GW_E_BAD_JSON] = {"bad_json", "the frame is not a JSON object"},
    [GW_E_UNKNOWN_TYPE] = {"unknown_type", "type is missing or unknown"},
    [GW_E_BAD_REQUEST] = {"bad_request",
                          "a field is missing, of the wrong type, or out of range"},
    [GW_E_TOO_LONG] = {"too_long", "text is over the limit"},
    [GW_E_RATE_LIMITED] = {"rate_limited", "too many messages; retry later"},
    [GW_E_NOT_MEMBER] = {"not_member", "you are not in that conversation"},
    [GW_E_NOT_FOUND] = {"not_found", "unknown conversation or user"},
    [GW_E_ALREADY_IN_CHAT] = {"already_in_chat", "you are already in a random chat"},
    [GW_E_CONVERSATION_CLOSED] = {"conversation_closed", "the chat has ended"},
    [GW_E_UNAVAILABLE] = {"unavailable",
                          "a backend is unavailable; nothing was done; retry later"},
    [GW_E_UNAUTHORIZED] = {"unauthorized", "invalid or expired session"},
    [GW_E_KICKED] = {"kicked", "removed by an operator"},
};

const char *gw_err_name(gw_err e)
{
    return (e >= 0 && e < GW_E_COUNT) ? err_table[e].name : "unavailable";
}

const char *gw_err_text(gw_err e)
{
    return (e >= 0 && e < GW_E_COUNT) ? err_table[e].text : "";
}

gw_err gw_err_from_code(int code)
{
    switch (code) {
    case CHAT__CODE__OK: return GW_E_NONE;
    case CHAT__CODE__BAD_REQUEST: return GW_E_BAD_REQUEST;
    case CHAT__CODE__NOT_MEMBER: return GW_E_NOT_MEMBER;
    case CHAT__CODE__NOT_FOUND: return GW_E_NOT_FOUND;
    case CHAT__CODE__ALREADY_IN_CHAT: return GW_E_ALREADY_IN_CHAT;
    case CHAT__CODE__CONVERSATION_CLOSED: return GW_E_CONVERSATION_CLOSED;
    case CHAT__CODE__RATE_LIMITED: return GW_E_RATE_LIMITED;
    case CHAT__CODE__TOO_LONG: return GW_E_TOO_LONG;
    /* The client has no "internal": to it, a failing backend is unavailable. */
    case CHAT__CODE__UNAVAILABLE:
    case CHAT__CODE__INTERNAL:
    default: return GW_E_UNAVAILABLE;
    }
}
