"""Carrier changes from the kernel (rtnetlink RTM_NEWLINK), for port link state.

    mon = LinkMonitor(on_change)          # on_change(ifindex, ifname, up)
    loop.add_reader(mon.fileno(), mon.poll)

A port is up when the kernel reports IFF_RUNNING (operational carrier);
that is what the datapath's liveness (FLOOD, fast-failover groups) follows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pyroute2 import IPRoute

log = logging.getLogger("vswitchd.linkmon")

IFF_RUNNING = 0x40


class LinkMonitor:
    def __init__(self, on_change: Callable[[int, str, bool], None]) -> None:
        self._on_change = on_change
        self._ipr = IPRoute()
        self._ipr.bind()                 # default groups include RTMGRP_LINK

    def fileno(self) -> int:
        return self._ipr.fileno()

    def poll(self) -> None:
        """Handle what the socket has; call when it is readable."""
        try:
            msgs = self._ipr.get()
        except OSError as e:
            log.warning("netlink: %s", e)
            return
        for msg in msgs:
            if msg.get("event") not in ("RTM_NEWLINK", "RTM_DELLINK"):
                continue
            up = msg.get("event") == "RTM_NEWLINK" and bool(msg["flags"] & IFF_RUNNING)
            name = msg.get_attr("IFLA_IFNAME") or ""
            try:
                self._on_change(msg["index"], name, up)
            except Exception:           # a bad callback must not stop monitoring
                log.exception("link change handler for %s", name)

    def close(self) -> None:
        self._ipr.close()
