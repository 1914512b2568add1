"""One OpenFlow connection: framing, version negotiation and keep-alive.

A `Channel` owns an asyncio stream pair, whichever side opened it (an active
`tcp:`/`ssl:`/`unix:` controller or a connection accepted on a `ptcp:`/`punix:`
listener).  It does three things and nothing about switch behaviour:

- framing: reads one whole message at a time by its header length; a header
  that cannot be framed (length < 8) ends this connection only, with a log line;
- HELLO: sends ours (version bitmap {1.3}) first, and requires the peer's to
  be the first message it sends; no common version -> HELLO_FAILED/INCOMPATIBLE
  and close (OpenFlow 1.3.5, 6.3.1);
- inactivity probe: after `probe_interval` seconds without a message from the
  peer it sends ECHO_REQUEST, and closes the connection when another interval
  passes in silence (as Open vSwitch's rconn does).

Every other message is decoded and handed to `on_message(channel, msg)`; a
message the codec refuses is answered with the ERROR the codec names (type,
code, the first 64 bytes of the request) and the connection stays up.
Counters are kept per channel for `vswitchctl show`.
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
OFPT_HELLO = 0
# Asynchronous messages (packet-ins) are dropped, and counted, while this
# much is waiting in the socket's send buffer: a slow controller must not
# make the daemon's memory grow without bound.
MAX_BACKLOG = 4 << 20


class ChannelClosed(Exception):
    """The connection ended; the message says why."""


@dataclass
class ChannelStats:
    rx_msgs: int = 0
    tx_msgs: int = 0
    rx_errors: int = 0           # requests answered with an ERROR by the codec or handler
    echo_probes: int = 0
    async_dropped: int = 0       # async messages dropped for backlog


class Channel:
    """An OpenFlow 1.3 connection.  `on_message` may return replies (or None)
    and may raise `ofp.OFError` to have an ERROR sent for the request."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 peer: str, probe_interval: float,
                 on_message: Callable[[Channel, object], None]) -> None:
        self.reader = reader
        self.writer = writer
        self.peer = peer
        self.probe_interval = probe_interval
        self.on_message = on_message
        self.stats = ChannelStats()
        self.version: int | None = None       # negotiated, once the peer's HELLO came
        self.connected_at = time.monotonic()
        self._last_rx = time.monotonic()
        self._closed = False
        self._next_xid = 0x10000000

    # --- sending -------------------------------------------------------------------

    def xid(self) -> int:
        self._next_xid = (self._next_xid + 1) & 0xFFFFFFFF
        return self._next_xid

    def send(self, msg) -> None:
        """Queue one message (a multipart reply may become several)."""
        if self._closed:
            return
        for data in wire.encode_split(msg):
            self.writer.write(data)
            self.stats.tx_msgs += 1

    def send_async(self, msg) -> bool:
        """Queue an asynchronous message unless the peer is not reading."""
        if self.writer.transport.get_write_buffer_size() > MAX_BACKLOG:
            self.stats.async_dropped += 1
            return False
        self.send(msg)
        return True

    def send_error(self, err, request: bytes, xid: int) -> None:
        self.stats.rx_errors += 1
        self.send(m.Error(type=err.type, code=err.code, data=request[:64], xid=xid))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.writer.close()

    @property
    def closed(self) -> bool:
        return self._closed

    # --- receiving -----------------------------------------------------------------

    async def _read_message(self) -> bytes:
        try:
            head = await self.reader.readexactly(HEADER.size)
            _version, _type, length, _xid = HEADER.unpack(head)
            if length < HEADER.size:
                raise ChannelClosed(f"bad framing: message length {length} < 8")
            body = await self.reader.readexactly(length - HEADER.size)
        except asyncio.IncompleteReadError as e:
            raise ChannelClosed("connection closed by peer" if not e.partial
                                else "connection closed mid-message") from None
        except (ConnectionError, OSError) as e:
            raise ChannelClosed(f"connection error: {e}") from None
        self._last_rx = time.monotonic()
        self.stats.rx_msgs += 1
        return head + body

    async def _hello(self) -> None:
        self.send(m.Hello(versions=frozenset({OFP13}), xid=self.xid()))
        data = await self._read_message()
        version, type_, _length, xid = HEADER.unpack_from(data)
        if type_ != OFPT_HELLO:
            self.send(m.Error(type=m.OFPET_HELLO_FAILED, code=m.OFPHFC_EPERM,
                              data=b"first message must be HELLO", xid=xid))
            raise ChannelClosed(f"first message was type {type_}, not HELLO")
        try:
            hello = wire.decode(data)
            versions = hello.versions
        except wire.WireError:
            versions = frozenset({version})       # an element we cannot parse: header only
        if OFP13 not in versions and not (version > OFP13 and not hello_has_bitmap(data)):
            self.send(m.Error(type=m.OFPET_HELLO_FAILED, code=m.OFPHFC_INCOMPATIBLE,
                              data=b"vswitch speaks OpenFlow 1.3 (0x04) only", xid=xid))
            raise ChannelClosed(f"no common version (peer offers {sorted(versions)})")
        self.version = OFP13

    async def run(self) -> str:
        """Serve the connection until it ends; returns why it ended."""
        probe = asyncio.create_task(self._probe()) if self.probe_interval > 0 else None
        try:
            await self._hello()
            while True:
                data = await self._read_message()
                self._dispatch(data)
                await self._drain()
        except ChannelClosed as e:
            return str(e)
        finally:
            if probe is not None:
                probe.cancel()
            self.close()

    async def _drain(self) -> None:
        try:
            await self.writer.drain()
        except (ConnectionError, OSError) as e:
            raise ChannelClosed(f"connection error: {e}") from None

    def _dispatch(self, data: bytes) -> None:
        version, type_, _length, xid = HEADER.unpack_from(data)
        if version != OFP13:
            self.send_error(ofp.OFError(m.OFPET_BAD_REQUEST, m.OFPBRC_BAD_VERSION), data, xid)
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

    async def _probe(self) -> None:
        """ECHO after an interval of silence; give up after a second one."""
        while True:
            idle = time.monotonic() - self._last_rx
            if idle >= 2 * self.probe_interval:
                log.info("%s: no answer to inactivity probe, disconnecting", self.peer)
                self.close()
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
        if etype == 1:
            return True
        if elen < 4:
            break
        off += (elen + 7) // 8 * 8
    return False
