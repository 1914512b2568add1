"""A small, independent builder of valid OpenFlow 1.3 messages (spec 1.3.5
layouts, written out with struct) for feeding switches in tests, and a
blocking client that does the HELLO exchange and reads whole messages.

It is deliberately not vswitch's own codec: a message built here is checked
against the switch, not against the code under test.
"""

from __future__ import annotations

import socket
import struct
import time

OFP_VERSION = 0x04
HELLO, ERROR, ECHO_REQUEST, ECHO_REPLY, EXPERIMENTER = 0, 1, 2, 3, 4
FEATURES_REQUEST, FEATURES_REPLY, GET_CONFIG_REQUEST, SET_CONFIG = 5, 6, 7, 9
PACKET_OUT, FLOW_MOD, GROUP_MOD, PORT_MOD, TABLE_MOD = 13, 14, 15, 16, 17
MULTIPART_REQUEST, BARRIER_REQUEST, BARRIER_REPLY = 18, 20, 21
QUEUE_GET_CONFIG_REQUEST, ROLE_REQUEST, GET_ASYNC_REQUEST, SET_ASYNC, METER_MOD = (
    22, 24, 26, 28, 29)
OFPP_CONTROLLER, OFPP_ANY = 0xFFFFFFFD, 0xFFFFFFFF
OFPG_ANY = 0xFFFFFFFF
NO_BUFFER = 0xFFFFFFFF


def header(msg_type: int, body: bytes, xid: int, version: int = OFP_VERSION) -> bytes:
    return struct.pack("!BBHI", version, msg_type, 8 + len(body), xid) + body


def hello(xid: int = 1) -> bytes:
    # one version-bitmap element: OpenFlow 1.3 only
    return header(HELLO, struct.pack("!HHI", 1, 8, 1 << OFP_VERSION), xid)


def echo_request(xid: int, data: bytes = b"") -> bytes:
    return header(ECHO_REQUEST, data, xid)


def _pad8(b: bytes) -> bytes:
    return b + bytes(-len(b) % 8)


def oxm(field: int, value: bytes, mask: bytes | None = None) -> bytes:
    payload = value + (mask or b"")
    return struct.pack("!HBB", 0x8000, (field << 1) | (mask is not None), len(payload)) + payload


def match(*oxms: bytes) -> bytes:
    body = b"".join(oxms)
    return _pad8(struct.pack("!HH", 1, 4 + len(body)) + body)


def output(port: int, max_len: int = 0xFFFF) -> bytes:
    return struct.pack("!HHIH6x", 0, 16, port, max_len)


def set_field(oxm_tlv: bytes) -> bytes:
    body = struct.pack("!HH", 25, 0) + oxm_tlv
    body = _pad8(body)
    return body[:2] + struct.pack("!H", len(body)) + body[4:]


def apply_actions(*actions: bytes) -> bytes:
    acts = b"".join(actions)
    return struct.pack("!HH4x", 4, 8 + len(acts)) + acts


def goto_table(table: int) -> bytes:
    return struct.pack("!HHB3x", 1, 8, table)


def flow_mod(xid: int, *, table: int = 0, command: int = 0, priority: int = 100,
             cookie: int = 0, match_: bytes | None = None, instructions: bytes = b"",
             flags: int = 0, idle: int = 0, hard: int = 0) -> bytes:
    body = struct.pack("!QQBBHHHIIIH2x", cookie, 0, table, command, idle, hard, priority,
                       NO_BUFFER, OFPP_ANY, OFPG_ANY, flags)
    return header(FLOW_MOD, body + (match_ or match()) + instructions, xid)


def multipart(xid: int, mp_type: int, body: bytes = b"") -> bytes:
    return header(MULTIPART_REQUEST, struct.pack("!HH4x", mp_type, 0) + body, xid)


def flow_stats_body(table: int = 0xFF) -> bytes:
    return struct.pack("!B3xII4xQQ", table, OFPP_ANY, OFPG_ANY, 0, 0) + match()


def group_mod(xid: int, group_id: int, command: int = 0, gtype: int = 0,
              buckets: list[bytes] | None = None) -> bytes:
    bs = b""
    for acts in buckets if buckets is not None else [output(1)]:
        bs += struct.pack("!HHII4x", 16 + len(acts), 0, OFPP_ANY, OFPG_ANY) + acts
    return header(GROUP_MOD, struct.pack("!HBxI", command, gtype, group_id) + bs, xid)


def meter_mod(xid: int, meter_id: int, command: int = 0, rate: int = 1000) -> bytes:
    band = struct.pack("!HHII4x", 1, 16, rate, 0)
    return header(METER_MOD, struct.pack("!HHI", command, 0x1, meter_id) + band, xid)


def packet_out(xid: int, frame: bytes, actions: bytes, in_port: int = OFPP_CONTROLLER) -> bytes:
    body = struct.pack("!IIH6x", NO_BUFFER, in_port, len(actions)) + actions + frame
    return header(PACKET_OUT, body, xid)


def valid_messages(xid: int = 100) -> list[bytes]:
    """One of each request a controller sends, all well-formed."""
    ipv4 = match(oxm(5, b"\x08\x00"), oxm(12, bytes([10, 0, 0, 0]), bytes([255, 255, 255, 0])))
    tcp80 = match(oxm(0, struct.pack("!I", 1)), oxm(5, b"\x08\x00"), oxm(10, b"\x06"),
                  oxm(14, struct.pack("!H", 80)))
    frame = bytes.fromhex("ffffffffffff02000000000188b5") + bytes(46)
    msgs = [
        hello(xid), echo_request(xid, b"ping"), header(FEATURES_REQUEST, b"", xid),
        header(GET_CONFIG_REQUEST, b"", xid), header(SET_CONFIG, struct.pack("!HH", 0, 128), xid),
        header(BARRIER_REQUEST, b"", xid), header(GET_ASYNC_REQUEST, b"", xid),
        header(SET_ASYNC, struct.pack("!6I", 7, 0, 15, 0, 15, 0), xid),
        header(ROLE_REQUEST, struct.pack("!I4xQ", 3, 0), xid),          # nochange
        header(QUEUE_GET_CONFIG_REQUEST, struct.pack("!I4x", OFPP_ANY), xid),
        header(EXPERIMENTER, struct.pack("!II", 0x00002320, 1) + b"abcd", xid),
        header(TABLE_MOD, struct.pack("!B3xI", 0, 0), xid),
        header(PORT_MOD, struct.pack("!I4x6s2xIII4x", 1, b"\x02\0\0\0\0\x01", 0, 0, 0), xid),
        flow_mod(xid, match_=ipv4, instructions=apply_actions(output(1))),
        flow_mod(xid, table=1, priority=7, cookie=0xAB, match_=tcp80,
                 instructions=apply_actions(set_field(oxm(14, struct.pack("!H", 8080))),
                                            output(2))),
        flow_mod(xid, priority=3, instructions=goto_table(1)),
        flow_mod(xid, command=3, match_=ipv4),                           # delete
        group_mod(xid, 7, buckets=[output(1), output(2)]),
        group_mod(xid, 7, command=2),                                    # delete
        meter_mod(xid, 3), meter_mod(xid, 3, command=2),
        packet_out(xid, frame, output(OFPP_CONTROLLER, 128)),
    ]
    for mp_type, body in ((0, b""), (1, flow_stats_body()), (2, flow_stats_body()),
                          (3, b""), (4, struct.pack("!I4x", OFPP_ANY)),
                          (5, struct.pack("!II", OFPP_ANY, 0xFFFFFFFF)),
                          (6, struct.pack("!I4x", OFPG_ANY)), (7, b""), (8, b""),
                          (9, struct.pack("!I4x", 0xFFFFFFFF)), (10, struct.pack("!I4x", 1)),
                          (11, b""), (12, b""), (13, b"")):
        msgs.append(multipart(xid, mp_type, body))
    return msgs


class Client:
    """A controller-side OpenFlow connection to a switch's passive listener."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.received: list[tuple[int, int, bytes]] = []     # (type, xid, body)
        self.sock.sendall(hello())
        t, _, _ = self.read()
        assert t == HELLO, f"switch answered HELLO with type {t}"

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self, timeout: float = 5.0) -> tuple[int, int, bytes]:
        """One whole message; raises ConnectionError when the switch closed."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 8:
                version, t, length, xid = struct.unpack_from("!BBHI", self.buf)
                # (the version is not checked: a HELLO carries the sender's highest,
                # and a switch may answer an ECHO or with an ERROR in the version of
                # the message it answers)
                assert length >= 8, self.buf[:16].hex()
                if len(self.buf) >= length:
                    body, self.buf = self.buf[8:length], self.buf[length:]
                    return t, xid, body
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no whole message from the switch")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("switch closed the connection")
            self.buf += chunk

    def echo(self, xid: int, data: bytes = b"", timeout: float = 10.0) -> None:
        """ECHO round trip; every message before the reply is kept in `received`."""
        self.send(echo_request(xid, data))
        deadline = time.monotonic() + timeout
        while True:
            t, rxid, body = self.read(max(deadline - time.monotonic(), 0.01))
            if t == ECHO_REPLY and rxid == xid:
                assert body == data, (body, data)
                return
            self.received.append((t, rxid, body))

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True once the switch has closed (EOF or reset) within timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                if not self.sock.recv(65536):
                    return True
            except (ConnectionResetError, BrokenPipeError):
                return True
            except TimeoutError:
                return False
        return False

    def close(self) -> None:
        self.sock.close()
