"""One OpenFlow connection: framing, version negotiation and keep-alive.

A `Channel` is the asyncio protocol of one connection, whichever side opened
it (an active `tcp:`/`ssl:`/`unix:` controller or a connection accepted on a
`ptcp:`/`punix:` listener).  It does three things and nothing about switch
behaviour:

- framing: every complete message in the received bytes is handled in the
  same callback, in order (a controller that pipelines FLOW_MOD + BARRIER
  pairs costs one wake-up, not four coroutine steps); a header that cannot be
  framed (length < 8) ends this connection only, with a log line;
- HELLO: sends ours (version bitmap {1.3}) on connect and requires the
  peer's to be the first message; no common version -> HELLO_FAILED /
  INCOMPATIBLE and close (OpenFlow 1.3.5, 6.3.1);
- inactivity probe: after `probe_interval` seconds without a message from the
  peer it sends ECHO_REQUEST, and closes the connection when another interval
  passes in silence (as Open vSwitch's rconn does).

Every other message is decoded and handed to `on_message(channel, msg)`; a
message the codec or the handler refuses is answered with the ERROR they name
(type, code, and the request itself) and the connection stays up.
Flow control: while the peer does not read our replies (the transport's
buffer is over its high-water mark) we stop reading its requests.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from vswitch import ofp
from vswitch.ofproto import messages as m
from vswitch.ofproto import wire

log = logging.getLogger("vswitchd.ofp")

OFP13 = 0x04
HEADER = struct.Struct("!BBHI")
# Asynchronous messages (packet-ins) are dropped, and counted, while this
# much is waiting in the socket's send buffer: a slow controller must not
# make the daemon's memory grow without bound.
MAX_BACKLOG = 4 << 20
MAX_ERROR_DATA = 0xFFFF - 12    # an ERROR's header and type/code, then the request


@dataclass
class ChannelStats:
    rx_msgs: int = 0
    tx_msgs: int = 0
    rx_errors: int = 0           # requests answered with an ERROR
    echo_probes: int = 0
    async_dropped: int = 0       # async messages dropped for backlog


class Channel(asyncio.Protocol):
    """An OpenFlow 1.3 connection.  `on_message` may send replies through the
    channel and may raise `ofp.OFError` to have an ERROR sent instead.
    `on_open`/`on_close` are called when the connection starts and ends."""

    def __init__(self, *, peer: str, probe_interval: float,
                 on_message: Callable[[Channel, object], None],
                 on_open: Callable[[Channel], None] = lambda ch: None,
                 on_close: Callable[[Channel], None] = lambda ch: None) -> None:
        self.peer = peer
        self.probe_interval = probe_interval
        self.on_message = on_message
        self.on_open = on_open
        self.on_close = on_close
        self.stats = ChannelStats()
        self.version: int | None = None       # negotiated, once the peer's HELLO came
        self.connected_at = time.monotonic()
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._buf = bytearray()
        self._last_rx = time.monotonic()
        self._probe: asyncio.Task | None = None
        self._next_xid = 0x10000000
        self._corked: list[bytes] | None = None

    # --- asyncio protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.connected_at = self._last_rx = time.monotonic()
        name = transport.get_extra_info("peername")
        if isinstance(name, tuple) and self.peer.startswith("p"):
            self.peer = f"{self.peer} <- {name[0]}:{name[1]}"
        self.send(m.Hello(versions=frozenset({OFP13}), xid=self.xid()))
        if self.probe_interval > 0:
            self._probe = asyncio.get_running_loop().create_task(self._probe_loop())
        self.on_open(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._probe is not None:
            self._probe.cancel()
        self._finish(f"connection error: {exc}" if exc else "connection closed by peer")
        self.on_close(self)

    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        self._last_rx = time.monotonic()
        buf = self._buf
        buf += data
        off = 0
        while len(buf) - off >= HEADER.size and not self.done.done():
            length = HEADER.unpack_from(buf, off)[2]
            if length < HEADER.size:
                self.close(f"bad framing: message length {length} < 8")
                break
            if len(buf) - off < length:
                break
            msg = bytes(buf[off:off + length])
            off += length
            self.stats.rx_msgs += 1
            self._handle(msg)
        del buf[:off]

    # --- sending -----------------------------------------------------------------------

    def xid(self) -> int:
        self._next_xid = (self._next_xid + 1) & 0xFFFFFFFF
        return self._next_xid

    def send(self, msg) -> None:
        """Queue one message (a multipart reply may become several)."""
        if self.closed:
            return
        for data in wire.encode_split(msg):
            if self._corked is not None:
                self._corked.append(data)
            else:
                self.transport.write(data)
            self.stats.tx_msgs += 1

    def cork(self) -> None:
        """Hold what is sent until uncork(): a burst of packet-ins then costs
        one write, not a system call each."""
        if self._corked is None:
            self._corked = []

    def uncork(self) -> None:
        held, self._corked = self._corked, None
        if held and not self.closed:
            self.transport.write(b"".join(held))

    def send_async(self, msg) -> bool:
        """Queue an asynchronous message unless the peer is not reading."""
        if self.closed or self.transport.get_write_buffer_size() > MAX_BACKLOG:
            self.stats.async_dropped += 1
            return False
        self.send(msg)
        return True

    def send_error(self, err: ofp.OFError, request: bytes, xid: int) -> None:
        """The spec asks for at least 64 bytes of the request; like Open
        vSwitch we send all of it that fits, so ovs-ofctl can decode it."""
        self.stats.rx_errors += 1
        self.send(m.Error(type=err.type, code=err.code, data=request[:MAX_ERROR_DATA],
                          xid=xid))

    def close(self, why: str = "closed by the switch") -> None:
        """End the connection after what is queued has been sent."""
        self._finish(why)
        if self.transport is not None:
            self.transport.close()

    def _finish(self, why: str) -> None:
        if not self.done.done():
            self.done.set_result(why)

    @property
    def closed(self) -> bool:
        return self.done.done() or self.transport is None or self.transport.is_closing()

    async def run(self) -> str:
        """Wait for the connection to end; returns why.  Cancelling closes it."""
        try:
            return await asyncio.shield(self.done)
        except asyncio.CancelledError:
            self.close("stopped")
            raise

    # --- receiving -----------------------------------------------------------------------

    def _handle(self, data: bytes) -> None:
        version, type_, _length, xid = HEADER.unpack_from(data)
        if self.version is None:
            self._hello(data, version, type_, xid)
            return
        if version != OFP13:
            self.send_error(ofp.OFError(m.OFPET_BAD_REQUEST, m.OFPBRC_BAD_VERSION), data, xid)
            return
        if type_ == m.OFPT_BARRIER_REQUEST and len(data) == HEADER.size:
            # Requests are handled to the end one by one, so a barrier is
            # answered at once; ovs-ofctl sends one after every flow mod.
            self.transport.write(HEADER.pack(OFP13, m.OFPT_BARRIER_REPLY, HEADER.size, xid))
            self.stats.tx_msgs += 1
            return
        try:
            msg = wire.decode(data)
        except wire.WireError as e:
            self.send_error(e, data, xid)
            return
        if isinstance(msg, m.EchoRequest):
            self.send(m.EchoReply(data=msg.data, xid=xid))
            return
        if isinstance(msg, (m.EchoReply, m.Hello)):
            return
        try:
            self.on_message(self, msg)
        except ofp.OFError as e:
            self.send_error(e, data, xid)
        except Exception as e:                 # a bug: report it, keep serving
            log.exception("%s: internal error handling %s", self.peer, type(msg).__name__)
            self.send_error(ofp.OFError(m.OFPET_BAD_REQUEST, m.OFPBRC_EPERM, str(e)), data, xid)

    def _hello(self, data: bytes, version: int, type_: int, xid: int) -> None:
        if type_ != m.OFPT_HELLO:
            self.send(m.Error(type=m.OFPET_HELLO_FAILED, code=m.OFPHFC_EPERM,
                              data=b"first message must be HELLO", xid=xid))
            self.close(f"first message was type {type_}, not HELLO")
            return
        try:
            versions = wire.decode(data).versions
        except wire.WireError:
            versions = frozenset({version})       # an element we cannot parse: header only
        if OFP13 in versions or (version > OFP13 and not hello_has_bitmap(data)):
            self.version = OFP13
            return
        self.send(m.Error(type=m.OFPET_HELLO_FAILED, code=m.OFPHFC_INCOMPATIBLE,
                          data=b"vswitch speaks OpenFlow 1.3 (0x04) only", xid=xid))
        self.close(f"no common version (peer offers {sorted(versions)})")

    async def _probe_loop(self) -> None:
        """ECHO after an interval of silence; give up after a second one."""
        while not self.closed:
            idle = time.monotonic() - self._last_rx
            if idle >= 2 * self.probe_interval:
                log.info("%s: no answer to inactivity probe, disconnecting", self.peer)
                self.close("inactivity probe timeout")
                return
            if idle >= self.probe_interval:
                self.stats.echo_probes += 1
                self.send(m.EchoRequest(xid=self.xid()))
                await asyncio.sleep(self.probe_interval)
            else:
                await asyncio.sleep(self.probe_interval - idle)


def hello_has_bitmap(data: bytes) -> bool:
    """Does a HELLO carry a version-bitmap element (type 1)?  Without one the
    header version alone says what the peer speaks."""
    off = HEADER.size
    while off + 4 <= len(data):
        etype, elen = struct.unpack_from("!HH", data, off)
        if etype == m.OFPHET_VERSIONBITMAP:
            return True
        if elen < 4:
            break
        off += (elen + 7) // 8 * 8
    return False
