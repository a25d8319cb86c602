#!/usr/bin/python3
"""A stand-in gateway for working on the web page without the real cluster.

Serves svc-gateway/web/ over HTTP and a small in-memory version of the client
protocol at /ws: connected/resume, FIFO matching, end_chat, send/ack/message,
receipts, history, and the grace period for a partner who went away. Not the product:
no persistence, no replay, one process. Debian's /usr/bin/python3 with the
`websockets` 10.x module.

Special texts sent as a chat message let you see the page's rarer states:
  /kick          error kicked, then close 4403
  /announce TXT  an announcement to everyone
  /ratelimit     error rate_limited (retry_after_ms 5000)
  /unavailable   error unavailable once, the retry then succeeds
  /silent        no answer once (the page gives up on the socket after 15 s)
  /bye           stored, then close 1001 before the ack (the page resumes, retries)
  /unknown       a frame of an unknown type (the page must ignore it)

Usage: /usr/bin/python3 mock_gateway.py [--port 48090] [--grace-ms 15000]
"""
import argparse
import asyncio
import json
import mimetypes
import os
import time
import uuid
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import websockets

WEB_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                        '..', '..', 'svc-gateway', 'web'))
MAX_TEXT = 500


class Hub:
    def __init__(self, grace_ms):
        self.grace = grace_ms / 1000.0
        self.conns = {}          # user -> set of websockets
        self.queue = []          # users waiting, oldest first
        self.chat_of = {}        # user -> conversation id
        self.convs = {}          # conversation id -> {"users", "seq", "closed"}
        self.sent = {}           # (user, client_msg_id) -> ack frame
        self.timeouts = {}       # user -> [conversation ids] ended while away
        self.grace_tasks = {}    # user -> task
        self.flaky = set()       # client_msg_ids that failed once on purpose

    async def push(self, user, frame, exclude=None):
        data = json.dumps(frame)
        for ws in list(self.conns.get(user, ())):
            if ws is not exclude:
                try:
                    await ws.send(data)
                except websockets.ConnectionClosed:
                    pass

    def partner(self, conv, user):
        return next(u for u in self.convs[conv]['users'] if u != user)

    async def end(self, conv, ender, by_timeout=False):
        c = self.convs[conv]
        c['closed'] = True
        for u in c['users']:
            self.chat_of.pop(u, None)
        if by_timeout:
            other = self.partner(conv, ender)
            await self.push(other, {'type': 'partner_disconnected', 'conversation_id': conv})
            self.timeouts.setdefault(ender, []).append(conv)
            return
        for u in c['users']:
            await self.push(u, {'type': 'chat_ended', 'conversation_id': conv,
                                'by': 'you' if u == ender else 'partner'})

    async def gone(self, user):
        await asyncio.sleep(self.grace)
        self.grace_tasks.pop(user, None)
        conv = self.chat_of.get(user)
        if conv and not self.conns.get(user):
            await self.end(conv, user, by_timeout=True)


def token_for(user):
    return 'mock.' + user


def user_of(token):
    if token.startswith('mock.'):
        try:
            return str(uuid.UUID(token[5:]))
        except ValueError:
            return None
    return None


async def handle(hub, ws, path):
    query = parse_qs(urlsplit(path).query)
    resumed = 'session' in query
    if resumed:
        user = user_of(query['session'][0])
        if user is None:
            await ws.send(json.dumps({'type': 'error', 'code': 'unauthorized',
                                      'message': 'bad session token'}))
            await ws.close(4401, 'unauthorized')
            return
    else:
        user = str(uuid.uuid4())
    await ws.send(json.dumps({'type': 'connected', 'user_id': user,
                              'session': token_for(user), 'resumed': resumed}))
    hub.conns.setdefault(user, set()).add(ws)
    task = hub.grace_tasks.pop(user, None)
    if task:
        task.cancel()
    for conv in hub.timeouts.pop(user, []):
        await ws.send(json.dumps({'type': 'chat_ended', 'conversation_id': conv, 'by': 'timeout'}))
    try:
        async for raw in ws:
            await on_frame(hub, ws, user, raw)
    except websockets.ConnectionClosed:
        pass
    finally:
        hub.conns[user].discard(ws)
        if not hub.conns[user]:
            if user in hub.queue:
                hub.queue.remove(user)
            hub.grace_tasks[user] = asyncio.ensure_future(hub.gone(user))


async def on_frame(hub, ws, user, raw):
    async def reply(frame):
        if isinstance(f.get('req'), str):
            frame['req'] = f['req']
        await ws.send(json.dumps(frame))

    async def error(code, message='', **extra):
        await reply(dict({'type': 'error', 'code': code, 'message': message}, **extra))

    try:
        f = json.loads(raw)
    except ValueError:
        f = None
    if not isinstance(f, dict):
        f = {}
        await error('bad_json')
        return
    t = f.get('type')
    if t == 'start_search':
        if user in hub.chat_of:
            await error('already_in_chat')
            return
        await reply({'type': 'searching'})
        if user in hub.queue:
            return
        if hub.queue:
            other = hub.queue.pop(0)
            conv = 'c-' + uuid.uuid4().hex[:12]
            hub.convs[conv] = {'users': (other, user), 'seq': 0, 'closed': False, 'log': []}
            hub.chat_of[user] = hub.chat_of[other] = conv
            for u in (other, user):
                await hub.push(u, {'type': 'matched', 'conversation_id': conv, 'kind': 'random'})
        else:
            hub.queue.append(user)
    elif t == 'stop_search':
        if user in hub.queue:
            hub.queue.remove(user)
        await reply({'type': 'search_stopped'})
    elif t == 'end_chat':
        conv = f.get('conversation_id')
        c = hub.convs.get(conv)
        if c is None:
            await error('not_found')
        elif user not in c['users']:
            await error('not_member')
        elif c['closed']:
            await error('conversation_closed')
        else:
            await hub.end(conv, user)
    elif t == 'send':
        await on_send(hub, ws, user, f, reply, error)
    elif t == 'receipt':
        conv = f.get('conversation_id')
        c = hub.convs.get(conv)
        if c is None or user not in c['users']:
            await error('not_found')
            return
        await hub.push(hub.partner(conv, user), {
            'type': 'receipt', 'conversation_id': conv, 'seq': f.get('seq'),
            'status': f.get('status'), 'user_id': user})
    elif t == 'history':
        conv = f.get('conversation_id')
        c = hub.convs.get(conv)
        if c is None or user not in c['users']:
            await error('not_found')
            return
        before = f.get('before') or c['seq'] + 1
        limit = f.get('limit') or 50
        older = [m for m in c['log'] if m['seq'] < before]
        page = older[-limit:]
        await reply({'type': 'history', 'conversation_id': conv, 'messages': page,
                     'next_before': page[0]['seq'] if len(page) < len(older) else None})
    else:
        await error('unknown_type')


async def on_send(hub, ws, user, f, reply, error):
    conv, text, cmid = f.get('conversation_id'), f.get('text'), f.get('client_msg_id')
    if not isinstance(text, str) or not isinstance(cmid, str) or not text.strip():
        await error('bad_request', 'bad send')
        return
    if len(text) > MAX_TEXT:            # Python counts code points
        await error('too_long', 'text over the limit')
        return
    if (user, cmid) in hub.sent:
        await reply(dict(hub.sent[(user, cmid)]))
        return
    c = hub.convs.get(conv)
    if c is None or user not in c['users']:
        await error('not_found')
        return
    if c['closed']:
        await error('conversation_closed')
        return
    cmd = text.strip()
    if cmd == '/kick':
        await error('kicked', 'removed by an operator')
        await ws.close(4403, 'kicked')
        return
    if cmd == '/ratelimit':
        await error('rate_limited', 'slow down', retry_after_ms=5000)
        return
    if cmd == '/silent' and cmid not in hub.flaky:
        hub.flaky.add(cmid)             # no answer at all, once: a dead socket
        return
    if cmd == '/unavailable' and cmid not in hub.flaky:
        hub.flaky.add(cmid)
        await error('unavailable', 'storage is down')
        return
    if cmd == '/unknown':
        await ws.send(json.dumps({'type': 'from_the_future', 'x': 1}))
    if cmd.startswith('/announce '):
        for u in list(hub.conns):
            await hub.push(u, {'type': 'announcement', 'text': cmd[10:]})
    c['seq'] += 1
    ts = int(time.time() * 1000)
    msg_id = str(c['seq'])
    ack = {'type': 'ack', 'client_msg_id': cmid, 'conversation_id': conv,
           'msg_id': msg_id, 'seq': c['seq'], 'ts': ts}
    hub.sent[(user, cmid)] = ack
    c['log'].append({'msg_id': msg_id, 'seq': c['seq'], 'from': user, 'text': text, 'ts': ts})
    if cmd == '/bye':
        # Stored, but the ack is lost with the connection: the page's retry
        # with the same client_msg_id must get this ack and no second copy.
        await ws.close(1001, 'going away')
        return
    await reply(dict(ack))
    await hub.push(hub.partner(conv, user), {
        'type': 'message', 'conversation_id': conv, 'msg_id': msg_id, 'seq': c['seq'],
        'from': user, 'text': text, 'ts': ts})


def static(path, headers):
    """HTTP side: the page's files by name, /healthz; None lets /ws upgrade."""
    p = urlsplit(path).path
    if p == '/ws':
        return None
    if p == '/healthz':
        return HTTPStatus.OK, [('Content-Type', 'text/plain')], b'ok\n'
    name = 'index.html' if p == '/' else p.lstrip('/')
    full = os.path.join(WEB_DIR, name)
    if '/' in name or name.startswith('.') or not os.path.isfile(full):
        return HTTPStatus.NOT_FOUND, [('Content-Type', 'text/plain')], b'not found\n'
    ctype = mimetypes.guess_type(name)[0] or 'application/octet-stream'
    if ctype.startswith('text/') or ctype.endswith('javascript'):
        ctype += '; charset=utf-8'
    with open(full, 'rb') as fh:
        body = fh.read()
    return HTTPStatus.OK, [('Content-Type', ctype), ('Cache-Control', 'no-cache')], body


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--port', type=int, default=48090)
    ap.add_argument('--grace-ms', type=int, default=15000)
    args = ap.parse_args()
    hub = Hub(args.grace_ms)
    async with websockets.serve(lambda ws, path: handle(hub, ws, path), '127.0.0.1', args.port,
                                process_request=static):
        print('mock gateway on http://127.0.0.1:%d/' % args.port, flush=True)
        await asyncio.Future()


if __name__ == '__main__':
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
