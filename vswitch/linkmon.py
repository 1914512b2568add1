"""Carrier changes from the kernel (rtnetlink RTM_NEWLINK), for port link state.

    mon = LinkMonitor(on_change)          # on_change(ifindex, ifname, up)
    loop.add_reader(mon.fileno(), mon.poll)

A port is up when the kernel reports IFF_RUNNING (operational carrier);
that is what the datapath's liveness (FLOOD, fast-failover groups) follows.
A plain non-blocking netlink socket, so it fits any event loop; pyroute2
decodes the messages.
"""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Callable

from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

log = logging.getLogger("vswitchd.linkmon")

RTMGRP_LINK = 1
RTM_NEWLINK, RTM_DELLINK = 16, 17
IFF_RUNNING = 0x40
_NLMSG = struct.Struct("=IHHII")          # nlmsghdr: len, type, flags, seq, pid


class LinkMonitor:
    def __init__(self, on_change: Callable[[int, str, bool], None]) -> None:
        self._on_change = on_change
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self._sock.bind((0, RTMGRP_LINK))
        self._sock.setblocking(False)

    def fileno(self) -> int:
        return self._sock.fileno()

    def poll(self) -> None:
        """Handle what the socket has; call when it is readable."""
        while True:
            try:
                data = self._sock.recv(1 << 16)
            except BlockingIOError:
                return
            except OSError as e:               # ENOBUFS: events lost, keep going
                log.warning("netlink: %s", e)
                return
            self._handle(data)

    def _handle(self, data: bytes) -> None:
        off = 0
        while off + _NLMSG.size <= len(data):
            length, mtype, _, _, _ = _NLMSG.unpack_from(data, off)
            if length < _NLMSG.size or off + length > len(data):
                return                          # malformed: drop the rest
            if mtype in (RTM_NEWLINK, RTM_DELLINK):
                try:
                    msg = ifinfmsg(data[off:off + length])
                    msg.decode()
                    up = mtype == RTM_NEWLINK and bool(msg["flags"] & IFF_RUNNING)
                    self._on_change(msg["index"], msg.get_attr("IFLA_IFNAME") or "", up)
                except Exception:               # one bad message must not stop monitoring
                    log.exception("link change message")
            off += (length + 3) & ~3

    def close(self) -> None:
        self._sock.close()
