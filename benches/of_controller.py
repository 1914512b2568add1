"""A minimal OpenFlow 1.3 controller for benchmarks (asyncio, in a thread of
the benchmark process), the same for every switch measured:

- on connect: HELLO, FEATURES_REQUEST, SET_CONFIG (whole frames in packet-ins),
  delete every flow, a table-miss flow to CONTROLLER (no buffering), BARRIER;
  ECHO requests are answered.
- mode "count": every PACKET_IN is counted (time of the first and last).
- mode "reactive": every PACKET_IN of an IPv4/UDP frame installs an exact
  flow (in_port, addresses, UDP ports) to the other port of a two-port
  switch (1 <-> 2) and sends the frame on with a PACKET_OUT.

Nothing here is shared with vswitch's own OpenFlow code: messages are built
and parsed with struct after the spec's layouts.
"""

from __future__ import annotations

import asyncio
import struct
import threading
import time

OFP_VERSION = 4
HELLO, ECHO_REQUEST, ECHO_REPLY, FEATURES_REQUEST, FEATURES_REPLY = 0, 2, 3, 5, 6
SET_CONFIG, PACKET_IN, PACKET_OUT, FLOW_MOD, BARRIER_REQUEST, BARRIER_REPLY = (
    9, 10, 13, 14, 20, 21)
ERROR = 1
NO_BUFFER = 0xFFFFFFFF
OFPP_CONTROLLER, OFPP_ANY, OFPG_ANY = 0xFFFFFFFD, 0xFFFFFFFF, 0xFFFFFFFF
OFPCML_NO_BUFFER = 0xFFFF


def _msg(t: int, body: bytes, xid: int = 0) -> bytes:
    return struct.pack("!BBHI", OFP_VERSION, t, 8 + len(body), xid) + body


def _oxm(field: int, value: bytes) -> bytes:
    return struct.pack("!HBB", 0x8000, field << 1, len(value)) + value


def _match(*oxms: bytes) -> bytes:
    body = b"".join(oxms)
    m = struct.pack("!HH", 1, 4 + len(body)) + body
    return m + bytes(-len(m) % 8)


def _output(port: int, max_len: int = 0) -> bytes:
    return struct.pack("!HHIH6x", 0, 16, port, max_len)


def _apply(*actions: bytes) -> bytes:
    acts = b"".join(actions)
    return struct.pack("!HH4x", 4, 8 + len(acts)) + acts


def flow_mod(match: bytes, instructions: bytes, priority: int, command: int = 0,
             table: int = 0) -> bytes:
    body = struct.pack("!QQBBHHHIIIH2x", 0, 0, table, command, 0, 0, priority, NO_BUFFER,
                       OFPP_ANY, OFPG_ANY, 0)
    return _msg(FLOW_MOD, body + match + instructions)


def _in_port(match: bytes) -> int | None:
    """OXM in_port from an ofp_match (type, length, fields)."""
    if len(match) < 4:
        return None
    _, length = struct.unpack_from("!HH", match)
    off = 4
    while off + 4 <= min(length, len(match)):
        cls, fh, ln = struct.unpack_from("!HBB", match, off)
        if cls == 0x8000 and fh >> 1 == 0 and ln == 4 and off + 8 <= len(match):
            return struct.unpack_from("!I", match, off + 4)[0]
        off += 4 + ln
    return None


class Controller:
    """Listens on 127.0.0.1:port; `stats()` has the counters."""

    def __init__(self, port: int, mode: str = "count") -> None:
        assert mode in ("count", "reactive")
        self.port = port
        self.mode = mode
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.ready = threading.Event()
        self.lock = threading.Lock()
        self.reset()
        self.connections = 0
        self.configured = threading.Event()      # table-miss installed and barrier done
        self.errors: list[tuple[int, int]] = []

    def reset(self) -> None:
        with self.lock:
            self.packet_ins = 0
            self.first_pin: float | None = None
            self.last_pin: float | None = None
            self.flows_installed = 0

    def stats(self) -> dict:
        with self.lock:
            return {"packet_ins": self.packet_ins, "first": self.first_pin,
                    "last": self.last_pin, "flows_installed": self.flows_installed,
                    "connections": self.connections, "errors": list(self.errors)}

    # --- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("controller did not start")

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port))
        self.ready.set()
        try:
            self.loop.run_forever()
        finally:
            server.close()
            tasks = asyncio.all_tasks(self.loop)
            for task in tasks:
                task.cancel()
            # let every connection task finish its cancellation before the loop closes
            self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self.loop.close()

    # --- one switch --------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self.lock:
            self.connections += 1
        table_miss = flow_mod(_match(), _apply(_output(OFPP_CONTROLLER, OFPCML_NO_BUFFER)), 0)
        delete_all = flow_mod(_match(), b"", 0, command=3, table=0xFF)
        writer.write(_msg(HELLO, struct.pack("!HHI", 1, 8, 1 << OFP_VERSION), 1)
                     + _msg(FEATURES_REQUEST, b"", 2)
                     + _msg(SET_CONFIG, struct.pack("!HH", 0, 0xFFFF), 3)
                     + delete_all + table_miss + _msg(BARRIER_REQUEST, b"", 4))
        try:
            while True:
                head = await reader.readexactly(8)
                _, t, length, xid = struct.unpack("!BBHI", head)
                body = await reader.readexactly(length - 8) if length > 8 else b""
                if t == PACKET_IN:
                    self._packet_in(body, writer)
                elif t == ECHO_REQUEST:
                    writer.write(struct.pack("!BBHI", OFP_VERSION, ECHO_REPLY, length, xid)
                                 + body)
                elif t == BARRIER_REPLY and xid == 4:
                    self.configured.set()
                elif t == ERROR and len(body) >= 4:
                    with self.lock:
                        self.errors.append(struct.unpack_from("!HH", body))
                if writer.transport.get_write_buffer_size() > 1 << 20:
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def _packet_in(self, body: bytes, writer: asyncio.StreamWriter) -> None:
        now = time.perf_counter()
        with self.lock:
            self.packet_ins += 1
            if self.first_pin is None:
                self.first_pin = now
            self.last_pin = now
        if self.mode != "reactive" or len(body) < 24:
            return
        # buffer_id, total_len, reason, table_id, cookie, then the match
        mlen = struct.unpack_from("!H", body, 18)[0]
        match = body[16:16 + mlen]
        frame = body[16 + mlen + (-mlen % 8) + 2:]
        in_port = _in_port(match)
        if in_port not in (1, 2) or len(frame) < 42:
            return
        if frame[12:14] != b"\x08\x00" or frame[23] != 17:
            return
        ihl = (frame[14] & 0xF) * 4
        sport, dport = struct.unpack_from("!HH", frame, 14 + ihl)
        out = 3 - in_port
        m = _match(_oxm(0, struct.pack("!I", in_port)), _oxm(5, b"\x08\x00"),
                   _oxm(10, b"\x11"), _oxm(11, frame[26:30]), _oxm(12, frame[30:34]),
                   _oxm(15, struct.pack("!H", sport)), _oxm(16, struct.pack("!H", dport)))
        writer.write(flow_mod(m, _apply(_output(out)), 100))
        acts = _output(out)
        writer.write(_msg(PACKET_OUT, struct.pack("!IIH6x", NO_BUFFER, in_port, len(acts))
                          + acts + frame))
        with self.lock:
            self.flows_installed += 1
