"""A tiny authoritative DNS server on 127.0.0.1 for test_lb.py: it plays Docker's
embedded DNS for HAProxy's resolvers, answering

  SRV  _chat._tcp.<zone>   one record per active gateway (its port), with the
                           targets' A records in the additional section
  A    gwN.<zone>          127.0.0.1
  anything else in <zone>  NOERROR without answers (AAAA ...), or NXDOMAIN

Docker answers a scaled service's name with one A record per replica, all on
the same port; here the two gateways of one machine differ by port, so the
test names them by SRV (haproxy.cfg's CHAT_LB_GATEWAYS takes either). The set
of active gateways can change while HAProxy runs (set_gateways), as a
`docker compose up --scale` changes Docker's answer. UDP only, one thread.
"""

import socket
import struct
import threading

TTL = 1


def _name(labels):
    out = b""
    for label in labels:
        raw = label.encode()
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def _parse_qname(msg, off):
    labels = []
    for _ in range(128):  # bounded: a name has at most 127 labels
        n = msg[off]
        off += 1
        if n == 0:
            return labels, off
        if n & 0xC0:
            raise ValueError("compressed name in a question")
        labels.append(msg[off:off + n].decode("ascii", "replace").lower())
        off += n
    raise ValueError("name too long")


class DnsStub:
    def __init__(self, zone="chat.test"):
        self.zone = zone.lower().strip(".")
        self.srv_name = f"_chat._tcp.{self.zone}"
        self._lock = threading.Lock()
        self._gateways = {}          # target name -> port
        self.queries = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="dnsstub", daemon=True)

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def set_gateways(self, ports):
        """From now on the SRV name answers these gateway ports (gw1.<zone> ... in order)."""
        with self._lock:
            self._gateways = {f"gw{i + 1}.{self.zone}": p for i, p in enumerate(ports)}

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _serve(self):
        while not self._stop.is_set():
            try:
                msg, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                reply = self.answer(msg)
            except (ValueError, IndexError, struct.error):
                continue  # not a query we understand: no answer (the resolver retries)
            self.sock.sendto(reply, peer)

    def answer(self, msg):
        qid, flags, qd = struct.unpack("!HHH", msg[:6])
        if qd != 1:
            raise ValueError("one question expected")
        labels, off = _parse_qname(msg, 12)
        qtype, qclass = struct.unpack("!HH", msg[off:off + 4])
        question = msg[12:off + 4]
        name = ".".join(labels)
        self.queries += 1
        with self._lock:
            gws = dict(self._gateways)
        answers, additional = [], []
        rcode = 0
        if name == self.srv_name:
            if qtype == 33:  # SRV
                for target, port in gws.items():
                    rdata = struct.pack("!HHH", 0, 10, port) + _name(target.split("."))
                    answers.append(b"\xc0\x0c" + struct.pack("!HHIH", 33, 1, TTL, len(rdata)) + rdata)
                    additional.append(_name(target.split(".")) + struct.pack("!HHIH", 1, 1, TTL, 4)
                                      + socket.inet_aton("127.0.0.1"))
        elif name in gws:
            if qtype == 1:  # A
                answers.append(b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, TTL, 4)
                               + socket.inet_aton("127.0.0.1"))
        elif name.endswith("." + self.zone) or name == self.zone:
            rcode = 3  # NXDOMAIN
        else:
            rcode = 5  # REFUSED: not our zone
        rflags = 0x8000 | (flags & 0x7800) | 0x0400 | (flags & 0x0100) | rcode  # QR, opcode, AA, RD
        header = struct.pack("!HHHHHH", qid, rflags, 1, len(answers), 0, len(additional))
        return header + question + b"".join(answers) + b"".join(additional)
