"""`vswitchd --demo`: a bridge with two namespaced hosts that can ping.

Creates namespaces vsdemo-a and vsdemo-b, each with an eth0 on a veth pair
whose other end is a `system` port of bridge vsdemo0, addresses
10.199.0.1/24 and 10.199.0.2/24, and checks that they ping each other
through the switch.  Everything is removed again on stop.  The demo bridge
is not kept in the configuration across restarts.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess

from pyroute2 import IPRoute, NetNS, netns

log = logging.getLogger("vswitchd.demo")

BRIDGE = "vsdemo0"
HOSTS = [("vsdemo-a", "vsdemo-pa", "10.199.0.1"), ("vsdemo-b", "vsdemo-pb", "10.199.0.2")]


class Demo:
    def __init__(self, daemon) -> None:
        self.daemon = daemon

    def start(self) -> None:
        self.stop(quiet=True)                    # leftovers of a killed run
        ipr = IPRoute()
        try:
            for ns, port, addr in HOSTS:
                netns.create(ns)
                ipr.link("add", ifname=port, kind="veth", peer="vsdemo-tmp")
                (peer,) = ipr.link_lookup(ifname="vsdemo-tmp")
                ipr.link("set", index=peer, net_ns_fd=ns)
                (idx,) = ipr.link_lookup(ifname=port)
                ipr.link("set", index=idx, state="up")
                with NetNS(ns) as n:
                    (h,) = n.link_lookup(ifname="vsdemo-tmp")
                    n.link("set", index=h, ifname="eth0")
                    n.addr("add", index=h, address=addr, prefixlen=24)
                    n.link("set", index=h, state="up")
                    (lo,) = n.link_lookup(ifname="lo")
                    n.link("set", index=lo, state="up")
        finally:
            ipr.close()
        self.daemon.add_br(BRIDGE, may_exist=True)
        for _, port, _ in HOSTS:
            self.daemon.add_port(BRIDGE, port)
        ok = self.ping()
        log.info("demo: hosts %s and %s on bridge %s %s", HOSTS[0][2], HOSTS[1][2], BRIDGE,
                 "ping each other" if ok else "DO NOT ping each other")
        log.info("demo: try `ip netns exec %s ping %s` and `vswitchctl dump-flows %s`",
                 HOSTS[0][0], HOSTS[1][2], BRIDGE)

    @staticmethod
    def ping() -> bool:
        r = subprocess.run(["ip", "netns", "exec", HOSTS[0][0], "ping", "-c", "3", "-i", "0.2",
                            "-W", "1", HOSTS[1][2]], capture_output=True, text=True)
        return r.returncode == 0

    def stop(self, quiet: bool = False) -> None:
        with contextlib.suppress(Exception):
            self.daemon.del_br(BRIDGE, if_exists=True)
        ipr = IPRoute()
        try:
            for ns, port, _ in HOSTS:
                for idx in ipr.link_lookup(ifname=port):
                    with contextlib.suppress(Exception):
                        ipr.link("del", index=idx)
                if ns in netns.listnetns():
                    netns.remove(ns)
        finally:
            ipr.close()
        if not quiet:
            log.info("demo: removed")
