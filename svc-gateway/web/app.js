/*
 * Stranger chat — the bundled web client.
 *
 * Speaks the client protocol (PROTOCOL.md, version 1) over one WebSocket at
 * /ws on the page's own host. No framework, no build step.
 *
 * Layout of this file:
 *   storage, ids, text helpers
 *   connection (connect, backoff, reconnect)
 *   frame handlers (one per server frame type)
 *   chat flow (search, match, end, skip)
 *   outgoing messages (send, ack, retry)
 *   incoming messages and receipts
 *   rendering and UI wiring
 *
 * Every piece of text that comes from a user or the server is put into the
 * page with textContent, never innerHTML.
 */
(function () {
  'use strict';

  const MAX_TEXT = 500;                // code points, as the server counts
  const BACKOFF_START_MS = 500;
  const BACKOFF_CAP_MS = 15000;
  const SEND_RETRY_MAX = 8;            // tries on `unavailable` before giving up
  const TOKEN_KEY = 'chat.session';
  const CONV_KEY = 'chat.conversation';
  const EARLY_MAX = 100;               // messages kept for a chat not yet matched
  // The server answers every send within its RPC timeout (3 s by default);
  // no answer for this long means the socket is dead without having said so.
  const ACK_TIMEOUT_MS = 15000;

  /* ---------------------------------------------------------------- helpers */

  // localStorage can throw (privacy modes, quota); the chat works without it.
  const store = {
    get(k) { try { return window.localStorage.getItem(k); } catch (e) { return null; } },
    set(k, v) { try { window.localStorage.setItem(k, v); } catch (e) { /* ignore */ } },
    del(k) { try { window.localStorage.removeItem(k); } catch (e) { /* ignore */ } },
  };

  // crypto.randomUUID needs a secure context; getRandomValues does not.
  function randomId() {
    const b = new Uint8Array(16);
    window.crypto.getRandomValues(b);
    return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  }

  // The server limits text in Unicode code points, not UTF-16 units.
  function codePoints(text) { return [...text].length; }

  function isStr(v, max) { return typeof v === 'string' && v.length > 0 && v.length <= (max || 64); }
  function isSeq(v) { return Number.isInteger(v) && v >= 1; }

  function fmtTime(ts) {
    const d = Number.isFinite(ts) ? new Date(ts) : new Date();
    return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }

  /* ------------------------------------------------------------------ state */

  const S = {
    // connection
    ws: null,
    connected: false,
    userId: null,
    attempt: 0,             // reconnect attempts since the last `connected`
    reconnectAt: 0,
    reconnectTimer: null,
    kicked: false,
    usedToken: false,       // the current socket presented a session token
    connTimer: null,        // ticks the "reconnecting in N s" countdown
    reqSeq: 0,
    wantHistory: false,     // the chat was restored after a reload: fetch it
    // chat
    phase: 'start',         // start | searching | chatting | ended
    conv: null,             // conversation id of the chat on screen
    ending: false,          // end_chat sent, waiting for chat_ended
    skipAfterEnd: false,    // Skip: search again once the end is confirmed
    pendingEnd: null,       // conversation to end once connected
    seen: new Set(),        // "conv\nseq" of incoming messages, for dedupe
    maxSeq: 0,              // highest incoming seq of the current chat
    deliveredSent: 0,
    readSent: 0,
    receiptTimer: null,
    outbox: new Map(),      // client_msg_id -> my message not yet acked
    mineBySeq: [],          // my acked messages of the current chat, for receipts
    early: new Map(),       // conv -> messages that came before their `matched`
    rateUntil: 0,
    rateTimer: null,
    typingTimer: null,
  };

  /* -------------------------------------------------------------- elements */

  const $ = (id) => document.getElementById(id);
  const el = {
    body: document.body,
    connText: $('conn-text'),
    reconnectNow: $('reconnect-now'),
    banner: $('banner'),
    bannerText: $('banner-text'),
    bannerClose: $('banner-close'),
    startScreen: $('start-screen'),
    startNote: $('start-note'),
    startBtn: $('start-btn'),
    chatScreen: $('chat-screen'),
    status: $('status'),
    searchPanel: $('search-panel'),
    cancelBtn: $('cancel-btn'),
    messages: $('messages'),
    typing: $('typing'),
    endedPanel: $('ended-panel'),
    endedText: $('ended-text'),
    newChatBtn: $('new-chat-btn'),
    composer: $('composer'),
    input: $('input'),
    counter: $('counter'),
    sendBtn: $('send-btn'),
    skipBtn: $('skip-btn'),
    endBtn: $('end-btn'),
    error: $('error'),
  };

  /* ------------------------------------------------------------ connection */

  function wsUrl() {
    const proto = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
    let url = proto + '//' + window.location.host + '/ws';
    const token = store.get(TOKEN_KEY);
    S.usedToken = !!token;
    if (token) url += '?session=' + encodeURIComponent(token);
    return url;
  }

  function connect() {
    if (S.kicked) return;
    clearTimeout(S.reconnectTimer);
    S.reconnectTimer = null;
    setConn('connecting');
    let ws;
    try {
      ws = new WebSocket(wsUrl());
    } catch (e) {
      scheduleReconnect();
      return;
    }
    S.ws = ws;
    // A socket replaced by a newer one must not touch the state any more.
    ws.onmessage = (ev) => { if (S.ws === ws) onFrame(ev.data); };
    ws.onclose = (ev) => { if (S.ws === ws) onClose(ev.code); };
    ws.onerror = () => { /* a close event always follows */ };
  }

  function onClose(code) {
    S.ws = null;
    S.connected = false;
    clearTimeout(S.receiptTimer);
    S.receiptTimer = null;
    // An end_chat whose answer was lost is asked again after the reconnect.
    if (S.ending && S.conv) S.pendingEnd = S.conv;
    if (code === 4403 || S.kicked) {
      kicked();
      return;
    }
    if (code === 4401 && S.usedToken) {
      // The token was refused: forget it and come back as a new user at once.
      store.del(TOKEN_KEY);
      S.reconnectTimer = setTimeout(connect, 0);
      return;
    }
    scheduleReconnect();
  }

  // Exponential backoff with full jitter: wait a random time in
  // [0, min(cap, start * 2^attempt)).
  function scheduleReconnect() {
    const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_START_MS * Math.pow(2, S.attempt));
    S.attempt = Math.min(S.attempt + 1, 30);
    const delay = Math.floor(Math.random() * ceiling);
    S.reconnectAt = Date.now() + delay;
    S.reconnectTimer = setTimeout(connect, delay);
    setConn('reconnecting');
  }

  // Give up on a socket that went silent (no close event yet, e.g. a phone
  // that changed networks) and start over; unacked sends are retried.
  function dropSocket() {
    const ws = S.ws;
    if (!ws) return;
    S.ws = null;                         // its late events are ignored from now on
    try { ws.close(1000); } catch (e) { /* ignore */ }
    onClose(1006);
  }

  function reconnectNow() {
    if (S.ws || S.kicked) return;
    connect();
  }

  function wsSend(obj) {
    if (!S.ws || !S.connected || S.ws.readyState !== WebSocket.OPEN) return false;
    S.ws.send(JSON.stringify(obj));
    return true;
  }

  function nextReq(kind) { S.reqSeq += 1; return kind + ':' + S.reqSeq; }

  function kicked() {
    S.kicked = true;
    S.connected = false;
    if (S.ws) { try { S.ws.close(); } catch (e) { /* ignore */ } S.ws = null; }
    clearTimeout(S.reconnectTimer);
    setConn('kicked');
    showError('Removed by an operator.');
    if (S.phase !== 'start') setStatus('Removed by an operator');
    for (const m of S.outbox.values()) {
      if (m.status !== 'failed') failMine(m, 'Not sent: removed by an operator', true);
    }
    render();
  }

  /* --------------------------------------------------------- frame handlers */

  const handlers = {
    connected: onConnected,
    searching: () => {},
    search_stopped: () => {},
    matched: onMatched,
    message: onMessage,
    ack: onAck,
    chat_ended: onChatEnded,
    partner_disconnected: onPartnerDisconnected,
    receipt: onReceipt,
    typing: onTyping,
    announcement: onAnnouncement,
    history: onHistory,
    error: onError,
  };

  function onFrame(data) {
    let f;
    try { f = JSON.parse(data); } catch (e) { return; }
    if (!f || typeof f !== 'object' || typeof f.type !== 'string') return;
    const h = Object.prototype.hasOwnProperty.call(handlers, f.type) ? handlers[f.type] : null;
    if (!h) return;   // unknown or unused frame types are ignored on purpose
    try { h(f); } catch (e) { console.error('frame', f.type, e); }
  }

  function onConnected(f) {
    if (!isStr(f.user_id, 64)) return;
    const sameUser = f.resumed === true && (S.userId === null || S.userId === f.user_id);
    if (isStr(f.session, 4096)) store.set(TOKEN_KEY, f.session);
    S.connected = true;
    S.attempt = 0;
    setConn('connected');

    if (!sameUser && (S.phase === 'chatting' || S.phase === 'ended')) {
      // A new identity cannot see the old chat any more.
      resetToStart('Your session expired, so your last chat is gone. Start a new one!');
    }
    S.userId = f.user_id;
    if (S.phase === 'chatting' && S.conv && !S.ending) setStatus('Chatting with a stranger');

    // Replay what was waiting for the connection.
    if (S.phase === 'searching') wsSend({ type: 'start_search', req: nextReq('start') });
    if (S.pendingEnd) sendEnd(S.pendingEnd);
    for (const m of S.outbox.values()) {
      if (m.conv === S.conv && (m.status === 'sending' || m.status === 'retrying')) {
        clearTimeout(m.timer);
        transmit(m);
      }
    }
    requestHistory();
    // A receipt sent just before the drop may have been lost: send it again.
    if (S.conv && S.maxSeq > 0) {
      S.deliveredSent = 0;
      S.readSent = 0;
      scheduleReceipt();
    }
    render();
  }

  function onError(f) {
    const code = typeof f.code === 'string' ? f.code : 'error';
    const req = typeof f.req === 'string' ? f.req : '';
    const kind = req.slice(0, req.indexOf(':'));
    if (code === 'kicked') { kicked(); return; }
    if (code === 'unauthorized') { store.del(TOKEN_KEY); return; }   // close 4401 follows
    if (code === 'rate_limited') startRateLimit(f.retry_after_ms);

    switch (kind) {
      case 'send': onSendError(req.slice(5), code, f); return;
      case 'rcpt': return;                     // a lost receipt only means a replay later
      case 'hist': return;                     // the restored chat just starts empty
      case 'start': onStartError(code, f); return;
      case 'stop': return;                     // Cancel is already applied on screen
      case 'end': onEndError(code, f); return;
      default:
        if (code !== 'rate_limited') showError(describeError(code, f.message));
    }
  }

  // Once per restored chat: its last messages, so a reload does not start blank.
  function requestHistory() {
    if (!S.wantHistory || S.phase !== 'chatting' || !S.conv) return;
    if (wsSend({ type: 'history', conversation_id: S.conv, limit: 100, req: nextReq('hist') })) {
      S.wantHistory = false;
    }
  }

  function describeError(code, message) {
    switch (code) {
      case 'too_long': return 'Message too long (at most ' + MAX_TEXT + ' characters).';
      case 'conversation_closed': return 'This chat has ended.';
      case 'unavailable': return 'The service is unavailable right now. Please try again.';
      case 'not_found': case 'not_member': return 'That chat no longer exists.';
      case 'already_in_chat': return 'You are already in a chat.';
      default: return typeof message === 'string' && message ? message : 'Error: ' + code;
    }
  }

  /* ------------------------------------------------------------- chat flow */

  function startSearch() {
    if (S.kicked) return;
    clearChat();
    S.phase = 'searching';
    hideError();
    setStatus('Looking for a stranger…');
    wsSend({ type: 'start_search', req: nextReq('start') });   // or once connected
    render();
    el.cancelBtn.focus();
  }

  function cancelSearch() {
    if (S.phase !== 'searching') return;
    wsSend({ type: 'stop_search', req: nextReq('stop') });
    // Shown at once; a `matched` that crosses the cancel still opens the chat.
    resetToStart(null);
    el.startBtn.focus();
  }

  function onStartError(code, f) {
    if (S.phase !== 'searching') return;
    if (code === 'already_in_chat') {
      const conv = store.get(CONV_KEY);
      if (conv) {
        openChat(conv, 'Back in your chat with the stranger.');
        S.wantHistory = true;
        requestHistory();
        return;
      }
      resetToStart(null);
      showError('You are already in a chat in another tab or window.');
      return;
    }
    resetToStart(null);
    showError(code === 'unavailable'
      ? 'Could not start searching: the service is unavailable. Please try again.'
      : describeError(code, f.message));
  }

  function onMatched(f) {
    if (!isStr(f.conversation_id)) return;
    if (f.conversation_id === S.conv && S.phase === 'chatting') return;   // another tab's copy
    openChat(f.conversation_id, 'You are now chatting with a random stranger. Say hi!');
  }

  function openChat(conv, notice) {
    clearChat();
    S.phase = 'chatting';
    S.conv = conv;
    store.set(CONV_KEY, conv);
    hideError();
    setStatus('Chatting with a stranger');
    addSystem(notice);
    const early = S.early.get(conv) || [];
    S.early.clear();
    for (const m of early) onMessage(m);
    render();
    el.input.focus();
  }

  function endChat(skip) {
    if (S.phase !== 'chatting' || !S.conv || S.ending) return;
    S.ending = true;
    S.skipAfterEnd = skip;
    setStatus(skip ? 'Skipping…' : 'Ending the chat…');
    sendEnd(S.conv);
    render();
  }

  function sendEnd(conv) {
    S.pendingEnd = conv;
    if (wsSend({ type: 'end_chat', conversation_id: conv, req: nextReq('end') })) S.pendingEnd = null;
  }

  function onEndError(code, f) {
    if (!S.ending) return;
    if (code === 'conversation_closed' || code === 'not_found' || code === 'not_member') {
      chatOver('You ended the chat.');   // it is over either way
      return;
    }
    S.ending = false;
    S.skipAfterEnd = false;
    setStatus('Chatting with a stranger');
    showError(code === 'unavailable'
      ? 'Could not end the chat: the service is unavailable. Please try again.'
      : describeError(code, f.message));
    render();
  }

  function onChatEnded(f) {
    if (!isStr(f.conversation_id)) return;
    if (f.conversation_id !== S.conv) {
      // A chat we no longer show ended while we were away.
      if (f.by === 'timeout' && S.phase === 'start') {
        showNote('Your last chat ended because you were away too long.');
      }
      return;
    }
    if (f.by === 'partner') chatOver('Stranger left');
    else if (f.by === 'timeout') chatOver('Chat ended (you were away too long)');
    else chatOver('You ended the chat.');
  }

  function onPartnerDisconnected(f) {
    if (f.conversation_id !== S.conv || S.phase !== 'chatting') return;
    chatOver('Stranger disconnected');
  }

  // The current chat is over, for whatever reason.
  function chatOver(reason) {
    const skip = S.skipAfterEnd;     // Skip pressed: go on to the next stranger
    S.ending = false;
    S.skipAfterEnd = false;
    S.pendingEnd = null;
    store.del(CONV_KEY);
    for (const m of S.outbox.values()) {
      if (m.conv !== S.conv) continue;
      if (m.status === 'failed') { m.final = true; updateMine(m); }
      else failMine(m, 'Not sent: the chat has ended', true);
    }
    if (skip) { startSearch(); return; }
    if (S.phase === 'ended') return;
    S.phase = 'ended';
    setStatus(reason);
    el.endedText.textContent = 'Ready to meet someone new?';
    addSystem(reason);
    showTyping(false);
    render();
    el.newChatBtn.focus();
  }

  function resetToStart(note) {
    clearChat();
    S.phase = 'start';
    store.del(CONV_KEY);
    showNote(note);
    render();
  }

  // Forget everything about the chat on screen.
  function clearChat() {
    for (const m of S.outbox.values()) clearTimeout(m.timer);
    S.outbox.clear();
    S.mineBySeq = [];
    S.seen.clear();
    S.conv = null;
    S.maxSeq = 0;
    S.deliveredSent = 0;
    S.readSent = 0;
    S.ending = false;
    S.skipAfterEnd = false;
    S.pendingEnd = null;
    S.wantHistory = false;
    clearTimeout(S.receiptTimer);
    S.receiptTimer = null;
    el.messages.textContent = '';
    el.input.value = '';
    showTyping(false);
    updateComposer();
  }

  /* ---------------------------------------------------- outgoing messages */

  function sendFromInput() {
    const text = el.input.value;
    if (!canSend(text)) return;
    const m = {
      cmid: randomId(),    // reused on every retry, so the server stores it once
      conv: S.conv,
      text: text,
      status: 'sending',
      error: '',
      final: false,
      tries: 0,
      timer: null,
      seq: 0,
      node: null,
    };
    S.outbox.set(m.cmid, m);
    m.node = addMine(m);
    el.input.value = '';
    updateComposer();
    transmit(m);
    el.input.focus();
  }

  function canSend(text) {
    const n = codePoints(text);
    return S.phase === 'chatting' && !S.ending && !S.kicked && Date.now() >= S.rateUntil &&
      n >= 1 && n <= MAX_TEXT && text.trim() !== '';
  }

  // Send (or, while offline, leave for onConnected to send) one of my messages.
  function transmit(m) {
    m.timer = null;
    if (m.status !== 'retrying') m.status = 'sending';
    updateMine(m);
    const sent = wsSend({ type: 'send', conversation_id: m.conv, text: m.text,
                          client_msg_id: m.cmid, req: 'send:' + m.cmid });
    if (!sent) return;
    const ws = S.ws;
    m.timer = setTimeout(() => {
      m.timer = null;
      if (S.ws === ws && S.outbox.get(m.cmid) === m && m.status !== 'failed') dropSocket();
    }, ACK_TIMEOUT_MS);
  }

  function onAck(f) {
    const m = S.outbox.get(f.client_msg_id);
    if (!m) return;
    clearTimeout(m.timer);
    S.outbox.delete(m.cmid);
    m.status = 'sent';
    m.seq = isSeq(f.seq) ? f.seq : 0;
    if (m.conv === S.conv) S.mineBySeq.push(m);
    if (Number.isFinite(f.ts)) m.ts = f.ts;
    updateMine(m);
  }

  function onSendError(cmid, code, f) {
    const m = S.outbox.get(cmid);
    if (!m) { if (code !== 'rate_limited') showError(describeError(code, f.message)); return; }
    clearTimeout(m.timer);               // the ack watchdog: the server did answer
    m.timer = null;
    switch (code) {
      case 'unavailable':
        m.tries += 1;
        if (m.tries > SEND_RETRY_MAX) { failMine(m, 'Not sent: the service is unavailable'); return; }
        m.status = 'retrying';
        updateMine(m);
        // Same backoff shape as reconnecting; same client_msg_id on retry.
        m.timer = setTimeout(() => transmit(m),
          Math.floor(Math.random() * Math.min(BACKOFF_CAP_MS, 1000 * Math.pow(2, m.tries - 1))) + 250);
        return;
      case 'rate_limited':
        failMine(m, 'Not sent: slow down');
        return;
      case 'too_long':
        failMine(m, 'Not sent: too long');
        showError(describeError(code));
        return;
      case 'conversation_closed':
        failMine(m, 'Not sent: the chat has ended', true);
        if (m.conv === S.conv && S.phase === 'chatting') chatOver('Chat ended');
        return;
      default:
        failMine(m, 'Not sent: ' + describeError(code, f.message));
    }
  }

  // final: retrying cannot help (the chat is over), so offer no Retry.
  function failMine(m, why, final) {
    clearTimeout(m.timer);
    m.timer = null;
    m.status = 'failed';
    m.error = why;
    m.final = !!final;
    updateMine(m);
  }

  function retryMine(m) {
    if (S.phase !== 'chatting' || m.conv !== S.conv || m.final || Date.now() < S.rateUntil) return;
    m.tries = 0;
    m.error = '';
    m.status = 'sending';
    transmit(m);
  }

  function startRateLimit(ms) {
    const wait = Number.isFinite(ms) && ms > 0 ? Math.min(ms, 3600000) : 1000;
    S.rateUntil = Date.now() + wait;
    clearInterval(S.rateTimer);
    const tick = () => {
      const left = S.rateUntil - Date.now();
      if (left <= 0) {
        clearInterval(S.rateTimer);
        S.rateTimer = null;
        if (el.error.dataset.kind === 'rate') hideError();
        updateComposer();
        return;
      }
      showError('Slow down — you can send again in ' + Math.ceil(left / 1000) + ' s', 'rate');
    };
    tick();
    S.rateTimer = setInterval(tick, 250);
    updateComposer();
  }

  /* ---------------------------------------------- incoming messages, receipts */

  function onMessage(f) {
    if (!isStr(f.conversation_id) || !isSeq(f.seq) || typeof f.text !== 'string') return;
    if (f.conversation_id !== S.conv) {
      // A partner's first message can overtake our `matched`: keep it for a moment.
      if (S.phase === 'searching' && S.early.size < EARLY_MAX) {
        const list = S.early.get(f.conversation_id) || [];
        if (list.length < EARLY_MAX) list.push(f);
        S.early.set(f.conversation_id, list);
      }
      return;
    }
    const key = f.conversation_id + '\n' + f.seq;
    if (!S.seen.has(key)) {
      S.seen.add(key);
      addTheirs(f);
      showTyping(false);
    }
    if (f.seq > S.maxSeq) S.maxSeq = f.seq;
    scheduleReceipt();
  }

  // One receipt for the highest seq seen, a moment after a burst.
  function scheduleReceipt() {
    if (S.receiptTimer) return;
    S.receiptTimer = setTimeout(flushReceipt, 100);
  }

  function flushReceipt() {
    S.receiptTimer = null;
    if (!S.conv || !S.connected || S.maxSeq < 1) return;
    const visible = document.visibilityState === 'visible';
    const status = visible ? 'read' : 'delivered';
    if (S.maxSeq <= (visible ? S.readSent : S.deliveredSent)) return;
    const ok = wsSend({ type: 'receipt', conversation_id: S.conv, seq: S.maxSeq,
                        status: status, req: nextReq('rcpt') });
    if (!ok) return;
    S.deliveredSent = S.maxSeq;            // a read also confirms delivery
    if (visible) S.readSent = S.maxSeq;
  }

  // The partner's receipts mark my messages delivered or seen.
  function onReceipt(f) {
    if (f.conversation_id !== S.conv || !isSeq(f.seq) || f.user_id === S.userId) return;
    for (const m of S.mineBySeq) {
      if (m.seq < 1 || m.seq > f.seq) continue;
      if (f.status === 'read') m.status = 'read';
      else if (f.status === 'delivered' && m.status === 'sent') m.status = 'delivered';
      else continue;
      updateMine(m);
    }
  }

  // The page of the restored chat, put in order among what replay brought.
  function onHistory(f) {
    if (f.conversation_id !== S.conv || !Array.isArray(f.messages)) return;
    for (const h of f.messages) {
      if (!h || !isSeq(h.seq) || typeof h.text !== 'string') continue;
      if (h.from === S.userId) {
        if (S.mineBySeq.some((m) => m.seq === h.seq)) continue;
        const m = { cmid: '', conv: S.conv, text: h.text, status: 'sent', error: '', final: true,
                    tries: 0, timer: null, seq: h.seq, ts: h.ts, node: null };
        m.node = addMine(m);
        S.mineBySeq.push(m);
        updateMine(m);
        continue;
      }
      const key = S.conv + '\n' + h.seq;
      if (S.seen.has(key)) continue;
      S.seen.add(key);
      addTheirs(h);
      if (h.seq > S.maxSeq) S.maxSeq = h.seq;
    }
    el.messages.scrollTop = el.messages.scrollHeight;
    scheduleReceipt();
  }

  function onTyping(f) {
    if (f.conversation_id !== S.conv || S.phase !== 'chatting' || f.user_id === S.userId) return;
    showTyping(f.state === 'start');
  }

  function onAnnouncement(f) {
    if (typeof f.text !== 'string' || !f.text) return;
    el.bannerText.textContent = f.text;
    el.banner.hidden = false;
  }

  /* ------------------------------------------------------------- rendering */

  function nearBottom() {
    const l = el.messages;
    return l.scrollHeight - l.scrollTop - l.clientHeight < 80;
  }

  // Messages with a seq go before the first shown message with a higher
  // one (replay and history can arrive after newer live messages).
  function append(li, force, seq) {
    const stick = force || nearBottom();
    let before = null;
    if (seq) {
      for (const other of el.messages.children) {
        if (other.dataset.seq && Number(other.dataset.seq) > seq) { before = other; break; }
      }
    }
    el.messages.insertBefore(li, before);
    if (stick) el.messages.scrollTop = el.messages.scrollHeight;
  }

  function addSystem(text) {
    if (!text) return;
    const li = document.createElement('li');
    li.className = 'msg system';
    li.textContent = text;
    append(li, true);
  }

  function bubble(text) {
    const b = document.createElement('div');
    b.className = 'bubble';
    b.textContent = text;
    return b;
  }

  function addTheirs(f) {
    const li = document.createElement('li');
    li.className = 'msg theirs';
    li.dataset.seq = String(f.seq);
    const who = document.createElement('span');
    who.className = 'visually-hidden';
    who.textContent = 'Stranger: ';
    li.appendChild(who);
    li.appendChild(bubble(f.text));
    const meta = document.createElement('div');
    meta.className = 'meta';
    meta.textContent = fmtTime(f.ts);
    li.appendChild(meta);
    append(li, false, f.seq);
  }

  function addMine(m) {
    const li = document.createElement('li');
    li.className = 'msg mine';
    const who = document.createElement('span');
    who.className = 'visually-hidden';
    who.textContent = 'You: ';
    li.appendChild(who);
    li.appendChild(bubble(m.text));
    const meta = document.createElement('div');
    meta.className = 'meta';
    li.appendChild(meta);
    if (m.seq) li.dataset.seq = String(m.seq);
    append(li, true, m.seq);
    return li;
  }

  const STATUS_TEXT = {
    sending: 'sending…',
    retrying: 'sending… (retrying)',
    sent: 'sent',
    delivered: 'delivered',
    read: 'seen',
  };

  function updateMine(m) {
    if (!m.node) return;
    m.node.dataset.status = m.status;
    if (m.seq) m.node.dataset.seq = String(m.seq);
    const meta = m.node.querySelector('.meta');
    meta.textContent = '';
    const label = document.createElement('span');
    label.className = 'state';
    if (m.status === 'failed') {
      label.textContent = m.error || 'Not sent';
      meta.appendChild(label);
      if (S.phase === 'chatting' && m.conv === S.conv && !m.final) {
        const b = document.createElement('button');
        b.type = 'button';
        b.textContent = 'Retry';
        b.addEventListener('click', () => retryMine(m));
        meta.appendChild(b);
      }
      return;
    }
    label.textContent = (m.ts ? fmtTime(m.ts) + ' · ' : '') + STATUS_TEXT[m.status];
    meta.appendChild(label);
  }

  function setStatus(text) { el.status.textContent = text; }

  function showTyping(on) {
    clearTimeout(S.typingTimer);
    el.typing.hidden = !on;
    // A lost `stop` must not leave the indicator on for ever.
    if (on) S.typingTimer = setTimeout(() => { el.typing.hidden = true; }, 8000);
  }

  function showError(text, kind) {
    el.error.textContent = text;
    el.error.dataset.kind = kind || 'error';
    el.error.hidden = false;
  }

  function hideError() {
    if (S.kicked) return;
    el.error.hidden = true;
    el.error.textContent = '';
    el.error.dataset.kind = '';
  }

  function showNote(text) {
    el.startNote.textContent = text || '';
    el.startNote.hidden = !text;
  }

  function setConn(state) {
    el.body.dataset.conn = state;
    clearInterval(S.connTimer);
    el.reconnectNow.hidden = state !== 'reconnecting';
    if (state === 'connected') el.connText.textContent = 'Connected';
    else if (state === 'connecting') el.connText.textContent = 'Connecting…';
    else if (state === 'kicked') el.connText.textContent = 'Removed by an operator';
    else if (state === 'reconnecting') {
      const tick = () => {
        const s = Math.max(0, Math.ceil((S.reconnectAt - Date.now()) / 1000));
        el.connText.textContent = 'Reconnecting in ' + s + ' s';
      };
      tick();
      S.connTimer = setInterval(tick, 250);
    }
    updateComposer();
  }

  function updateComposer() {
    const text = el.input.value;
    const n = codePoints(text);
    el.counter.textContent = n + '/' + MAX_TEXT;
    el.counter.classList.toggle('over', n > MAX_TEXT);
    el.input.setAttribute('aria-invalid', n > MAX_TEXT ? 'true' : 'false');
    el.sendBtn.disabled = !canSend(text);
  }

  function render() {
    const p = S.phase;
    el.body.dataset.phase = p;
    el.startScreen.hidden = p !== 'start';
    el.chatScreen.hidden = p === 'start';
    el.searchPanel.hidden = p !== 'searching';
    el.messages.hidden = p === 'searching';
    el.endedPanel.hidden = p !== 'ended';
    el.composer.hidden = p !== 'chatting';
    el.startBtn.disabled = S.kicked;
    el.newChatBtn.disabled = S.kicked;
    el.cancelBtn.disabled = S.kicked;
    el.skipBtn.disabled = S.ending || S.kicked;
    el.endBtn.disabled = S.ending || S.kicked;
    el.input.disabled = S.kicked;
    for (const m of S.outbox.values()) if (m.status === 'failed') updateMine(m);
    updateComposer();
  }

  /* ------------------------------------------------------------ UI wiring */

  el.startBtn.addEventListener('click', startSearch);
  el.newChatBtn.addEventListener('click', startSearch);
  el.cancelBtn.addEventListener('click', cancelSearch);
  el.skipBtn.addEventListener('click', () => endChat(true));
  el.endBtn.addEventListener('click', () => endChat(false));
  el.reconnectNow.addEventListener('click', reconnectNow);
  el.bannerClose.addEventListener('click', () => { el.banner.hidden = true; });
  el.composer.addEventListener('submit', (e) => { e.preventDefault(); sendFromInput(); });
  el.input.addEventListener('input', updateComposer);
  el.input.addEventListener('keydown', (e) => {
    // Enter sends, Shift+Enter is a newline; leave IME composition alone.
    if (e.key !== 'Enter' || e.shiftKey || e.isComposing || e.keyCode === 229) return;
    e.preventDefault();
    sendFromInput();
  });
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') scheduleReceipt();
  });
  // Back online: no reason to sit out the rest of the backoff.
  window.addEventListener('online', reconnectNow);

  // After a reload, come back to the chat we were in; the server replays
  // what we missed, or tells us it ended.
  const savedConv = store.get(CONV_KEY);
  if (savedConv && store.get(TOKEN_KEY)) {
    S.phase = 'chatting';
    S.conv = savedConv;
    S.wantHistory = true;
    setStatus('Reconnecting to your chat…');
    addSystem('Back in your chat with the stranger.');
  } else {
    store.del(CONV_KEY);
  }
  render();
  connect();
})();
