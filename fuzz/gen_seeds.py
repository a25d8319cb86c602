#!/usr/bin/env python3
"""Writes the seeds of corpus/frame, corpus/token and corpus/http (the proto
seeds come from gen_proto_seeds.c). Usage: fuzz/gen_seeds.py [FUZZ_DIR].
Each seed is one input file; names say what it is. Re-running rewrites the
same files."""
import hashlib
import hmac
import json
import os
import sys

ROOT = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
UA = "0f8c2a4e-9b1d-4c3a-8e7f-123456789abc"
UB = "11111111-2222-4333-8444-555555555555"
CONV = "c-7f3a9e"
# fuzz_token.c verifies with this secret at this time.
SECRET = b"fuzz-secret"
NOW = 1700000000


def write(target, name, data):
    d = os.path.join(ROOT, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def frames():
    j = lambda o: json.dumps(o, separators=(",", ":"), ensure_ascii=False)
    ok = {
        "start_search": {"type": "start_search"},
        "start_search_req": {"type": "start_search", "req": "r1"},
        "stop_search": {"type": "stop_search"},
        "end_chat": {"type": "end_chat", "conversation_id": CONV},
        "send": {"type": "send", "conversation_id": CONV, "text": "hello",
                 "client_msg_id": "m1", "req": "r2"},
        "send_unicode": {"type": "send", "conversation_id": CONV,
                         "text": "h\u00e9llo \u4e16\u754c \U0001f600", "client_msg_id": "m2"},
        "send_max": {"type": "send", "conversation_id": CONV, "text": "x" * 500,
                     "client_msg_id": "m3"},
        "receipt_delivered": {"type": "receipt", "conversation_id": CONV, "seq": 3,
                              "status": "delivered"},
        "receipt_read": {"type": "receipt", "conversation_id": CONV, "seq": 9007199254740992,
                         "status": "read"},
        "presence": {"type": "presence", "user_ids": [UA, UB]},
        "presence_empty": {"type": "presence", "user_ids": []},
        "presence_100": {"type": "presence", "user_ids": [UA] * 100},
        "open_dm": {"type": "open_dm", "user_id": UB},
        "join_room": {"type": "join_room", "room": "general"},
        "leave_room": {"type": "leave_room", "room": "a_b-9"},
        "history": {"type": "history", "conversation_id": CONV},
        "history_full": {"type": "history", "conversation_id": CONV, "before": 51, "limit": 100},
        "typing_start": {"type": "typing", "conversation_id": CONV, "state": "start"},
        "typing_stop": {"type": "typing", "conversation_id": CONV, "state": "stop"},
        # Frames of PROTOCOL.md 1.1 the gateway does not parse (yet): unknown_type.
        "conversations": {"type": "conversations"},
        "set_profile": {"type": "set_profile", "display_name": "Ann"},
        "set_profile_null": {"type": "set_profile", "display_name": None},
        "profiles": {"type": "profiles", "user_ids": [UA]},
    }
    for name, o in ok.items():
        write("frame", "ok-" + name, j(o))
    bad = {
        "empty": "",
        "space": " \t\r\n",
        "not_json": "nope",
        "array": "[]",
        "string": '"start_search"',
        "trailing": '{"type":"start_search"} x',
        "two_objects": '{"type":"start_search"}{"type":"stop_search"}',
        "truncated": '{"type":"send","conversation_id":"c',
        "no_type": '{"req":"r"}',
        "type_number": '{"type":1}',
        "type_unknown": '{"type":"fly"}',
        "req_number": '{"type":"start_search","req":5}',
        "req_long": j({"type": "start_search", "req": "r" * 65}),
        "send_no_text": j({"type": "send", "conversation_id": CONV, "client_msg_id": "m"}),
        "send_empty": j({"type": "send", "conversation_id": CONV, "text": "",
                         "client_msg_id": "m"}),
        "send_spaces": j({"type": "send", "conversation_id": CONV,
                          "text": " \u3000\u2028\u00a0", "client_msg_id": "m"}),
        "send_too_long": j({"type": "send", "conversation_id": CONV, "text": "\u00e9" * 501,
                            "client_msg_id": "m"}),
        "send_long_id": j({"type": "send", "conversation_id": "c" * 65, "text": "hi",
                           "client_msg_id": "m"}),
        "send_escapes": '{"type":"send","conversation_id":"c","text":"\\u0000\\ud83d\\ude00'
                        '\\ud800\\n\\"","client_msg_id":"m"}',
        "send_nul_escape": '{"type":"send","conversation_id":"c","text":"\\u0000",'
                           '"client_msg_id":"m"}',
        "receipt_zero": j({"type": "receipt", "conversation_id": CONV, "seq": 0,
                           "status": "read"}),
        "receipt_float": '{"type":"receipt","conversation_id":"c","seq":1.5,"status":"read"}',
        "receipt_huge": '{"type":"receipt","conversation_id":"c","seq":1e300,"status":"read"}',
        "receipt_2p53p1": '{"type":"receipt","conversation_id":"c","seq":9007199254740993,'
                          '"status":"read"}',
        "receipt_status": j({"type": "receipt", "conversation_id": CONV, "seq": 1,
                             "status": "seen"}),
        "presence_101": j({"type": "presence", "user_ids": [UA] * 101}),
        "presence_not_uuid": j({"type": "presence", "user_ids": [UA, "nope", 3]}),
        "presence_object": '{"type":"presence","user_ids":{}}',
        "open_dm_bad": j({"type": "open_dm", "user_id": "0f8c2a4e9b1d4c3a8e7f123456789abc"}),
        "join_room_upper": j({"type": "join_room", "room": "General"}),
        "join_room_long": j({"type": "join_room", "room": "r" * 65}),
        "history_limit0": j({"type": "history", "conversation_id": CONV, "limit": 0}),
        "history_limit101": j({"type": "history", "conversation_id": CONV, "limit": 101}),
        "history_before_neg": j({"type": "history", "conversation_id": CONV, "before": -1}),
        "history_before_str": j({"type": "history", "conversation_id": CONV, "before": "5"}),
        "typing_bad": j({"type": "typing", "conversation_id": CONV, "state": "on"}),
        "duplicate_keys": '{"type":"open_dm","type":"join_room","room":"x","user_id":"y"}',
        "nul_byte": '{"type":"start_search"}\x00',
        "deep_array": '{"type":"start_search","x":' + "[" * 1100 + "]" * 1100 + "}",
        "deep_object": '{"type":"start_search","x":' + '{"a":' * 1100 + "1" + "}" * 1100 + "}",
        "deep_999": '{"type":"presence","user_ids":' + "[" * 998 + "]" * 998 + "}",
        "big_array": j({"type": "presence", "user_ids": list(range(3000))}),
        "big_object": "{" + ",".join('"k%d":%d' % (i, i) for i in range(1200))
                      + ',"type":"stop_search"}',
        "numbers": '{"type":"history","conversation_id":"c","before":1E2,"limit":-0,'
                   '"x":[1e-400,-1.7976931348623157e309,0.1,123456789012345678901234567890]}',
        "literals": '{"type":"typing","conversation_id":"c","state":null,"a":true,"b":false}',
    }
    for name, s in bad.items():
        write("frame", "bad-" + name, s)
    write("frame", "bad-utf8_invalid", b'{"type":"send","text":"\xc3\x28"}')


def tokens():
    def sign(user, expiry, secret=SECRET):
        body = "v1.%s.%d" % (user, expiry)
        mac = hmac.new(secret, body.encode(), hashlib.sha256).hexdigest()
        return body + "." + mac

    write("token", "ok", sign(UA, NOW + 3600))
    write("token", "ok_far", sign(UB, 9223372036854775807))
    write("token", "ok_upper_uuid", sign(UA.upper(), NOW + 1))
    write("token", "expired", sign(UA, NOW))
    write("token", "expired_long_ago", sign(UA, 1))
    write("token", "other_secret", sign(UA, NOW + 3600, b"another"))
    good = sign(UA, NOW + 3600)
    write("token", "bad_mac", good[:-1] + ("0" if good[-1] != "0" else "1"))
    write("token", "mac_upper", good[: good.rindex(".") + 1] + good[good.rindex(".") + 1:].upper())
    write("token", "short_mac", good[:-2])
    write("token", "long_mac", good + "00")
    write("token", "v2", "v2" + good[2:])
    write("token", "no_expiry", "v1.%s..%s" % (UA, "0" * 64))
    write("token", "expiry_sign", "v1.%s.+5.%s" % (UA, "0" * 64))
    write("token", "expiry_overflow", "v1.%s.99999999999999999999.%s" % (UA, "0" * 64))
    write("token", "expiry_19_nines", "v1.%s.9999999999999999999.%s" % (UA, "0" * 64))
    write("token", "bad_uuid", "v1.%s.%d.%s" % ("x" * 36, NOW + 9, "0" * 64))
    write("token", "empty", "")
    write("token", "too_long", "v1." + "a" * 200)
    write("token", "nul_inside", good[:40] + "\x00" + good[41:])
    # Inputs for the sign -> verify round trip (first 24 bytes: uuid, expiry).
    write("token", "rt_expiry_max", bytes(range(16)) + b"\xff\xff\xff\xff\xff\xff\xff\x7f")
    write("token", "rt_expiry_neg", bytes(range(16)) + b"\x00\x00\x00\x00\x00\x00\x00\x80")
    write("token", "rt_expiry_one", bytes(16) + b"\x01" + bytes(7))


def http():
    lines = {
        "ws": "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n",
        "ws_session": "GET /ws?session=v1.%s.1.%s HTTP/1.1\r\n\r\n" % (UA, "a" * 64),
        "pct_valid": "GET /ws?session=%41%62 HTTP/1.1\r\n",
        "pct_nul": "GET /ws?session=%00 HTTP/1.1\r\n",
        "pct_bad": "GET /ws?session=%zz%4 HTTP/1.1\r\n",
        "pct_end": "GET /%",
        "pct_end2": "GET /%4",
        "pct_after_eol": "GET / HTTP/1.1\r\nX: %00%zz\r\n",
        "pct_many": "GET /" + "%" * 300 + " HTTP/1.1\r\n",
        "no_eol": "GET /healthz HTTP/1.1",
        "healthz": "GET /healthz HTTP/1.1\r\n\r\n",
        "history_path": "/api/conversations/%s/messages" % CONV,
        "history_path_64": "/api/conversations/%s/messages" % ("c" * 64),
        "history_path_65": "/api/conversations/%s/messages" % ("c" * 65),
        "history_path_slash": "/api/conversations/a/b/messages",
        "history_path_empty": "/api/conversations//messages",
        "history_path_short": "/api/conversations/messages",
        "history_get": "GET /api/conversations/%s/messages?before=10&limit=5 HTTP/1.1\r\n"
                       "Authorization: Bearer v1.x\r\n\r\n" % CONV,
        "uint_1": "1",
        "uint_100": "100",
        "uint_2p53": "9007199254740992",
        "uint_2p53p1": "9007199254740993",
        "uint_max": "18446744073709551615",
        "uint_over": "18446744073709551616",
        "uint_lead0": "0007",
        "uint_sign": "+5",
        "uint_empty": "",
        "bearer": "Bearer v1.%s.1.%s" % (UA, "b" * 64),
        "bearer_lower_tab": "bearer\t\t tok",
        "bearer_only": "Bearer ",
        "bearer_nospace": "Bearertok",
        "basic": "Basic dXNlcjpwdw==",
    }
    for name, s in lines.items():
        write("http", name, s)


frames()
tokens()
http()
