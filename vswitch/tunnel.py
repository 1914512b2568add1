"""VXLAN tunnel ports: their options, and the underlay routes their outer
headers are built from.

The C datapath encapsulates with pre-built outer headers (docs/datapath.md):
it needs, per tunnel port, the egress device, its MAC and MTU, the next
hop's MAC and the outer source address.  `Resolver` looks these up with
pyroute2 (route get, link, neighbour) and pushes them into the datapath,
and keeps them current: a netlink socket subscribed to link, address, route
and neighbour changes wakes it to resolve again, and it retries unresolved
tunnels every second (asking the kernel to resolve a missing next hop by
sending it one datagram).  All of it runs in one thread: pyroute2's sync
API does not work inside the daemon's running asyncio loop.

    cfg = VxlanConfig.from_options({"remote_ip": "10.0.0.2", "key": "5000"})
    dp.add_port(10, "vxlan", name="vx0", vxlan=cfg)
    resolver().add(dp, 10, cfg)          # routes pushed from now on
"""

from __future__ import annotations

import ipaddress
import logging
import select
import socket
import threading
import time
from dataclasses import dataclass, field

log = logging.getLogger("vswitchd.tunnel")

DEFAULT_DST_PORT = 4789
OUTER_OVERHEAD = 50                 # Ethernet + IPv4 + UDP + VXLAN
KEYS = ("remote_ip", "local_ip", "key", "dst_port", "tos", "ttl", "df_default")

# rtnetlink multicast groups the resolver listens to.
_RTMGRP = 0x1 | 0x4 | 0x10 | 0x40   # LINK, NEIGH, IPV4_IFADDR, IPV4_ROUTE
# Neighbour states with a usable link-layer address.
_NUD_USABLE = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80   # REACHABLE STALE DELAY PROBE NOARP PERM
_NUD_STALE = 0x04
RETRY_S = 1.0                       # unresolved tunnels
WANTED_S = 0.05                     # remote_ip=flow ports: new destinations
MAX_DESTS = 256                     # remotes per remote_ip=flow port (the C table)
REFRESH_S = 10.0                    # all tunnels (and stale neighbours are re-probed)
DEBOUNCE_S = 0.05                   # netlink bursts -> one pass
PROBE_PORT = 9                      # discard: the datagram that makes the kernel ARP


class TunnelError(ValueError):
    """Bad tunnel options; the message is one line for the user."""


def _ipv4(name: str, text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise TunnelError(f"vxlan option {name}={text!r}: need an IPv4 address") from None


def _int(name: str, text: str, lo: int, hi: int) -> int:
    if not (isinstance(text, str) and text.isascii() and text.isdigit()) and not (
            isinstance(text, str) and text.lower().startswith("0x")):
        raise TunnelError(f"vxlan option {name}={text!r}: need an integer {lo}-{hi}")
    try:
        v = int(text, 0)
    except ValueError:
        raise TunnelError(f"vxlan option {name}={text!r}: need an integer {lo}-{hi}") from None
    if not lo <= v <= hi:
        raise TunnelError(f"vxlan option {name}={text!r}: need an integer {lo}-{hi}")
    return v


@dataclass(frozen=True)
class VxlanConfig:
    """A vxlan port's options, as Open vSwitch spells them."""
    remote_ip: str                  # "" with remote_flow
    local_ip: str = ""              # "" = receive on any address, source from the route
    key: int | None = 0             # None = "flow": VNI from/to the flow's tunnel_id
    dst_port: int = DEFAULT_DST_PORT
    tos: int = 0
    ttl: int = 64
    df_default: bool = True
    remote_flow: bool = False       # remote_ip=flow: the remote is each frame's tun_dst

    @classmethod
    def from_options(cls, opts: dict) -> VxlanConfig:
        unknown = sorted(set(opts) - set(KEYS) - {"vlan_mode"})
        if unknown:
            raise TunnelError(f"unknown vxlan option {unknown[0]!r} "
                              f"(known: {', '.join(KEYS)})")
        remote = opts.get("remote_ip")
        if not remote:
            raise TunnelError("vxlan port needs options remote_ip=IPv4")
        local = opts.get("local_ip", "")
        key = opts.get("key", "0")
        df = opts.get("df_default", "true")
        if df not in ("true", "false"):
            raise TunnelError(f"vxlan option df_default={df!r}: need true or false")
        tos = opts.get("tos", "0")
        if tos == "inherit":
            raise TunnelError("vxlan option tos=inherit is not supported (give 0-255)")
        ttl = opts.get("ttl", "64")
        if ttl == "inherit":
            raise TunnelError("vxlan option ttl=inherit is not supported (give 1-255)")
        return cls(
            remote_ip="" if remote == "flow" else _ipv4("remote_ip", remote),
            remote_flow=remote == "flow",
            local_ip=_ipv4("local_ip", local) if local else "",
            key=None if key == "flow" else _int("key", key, 0, (1 << 24) - 1),
            dst_port=_int("dst_port", opts.get("dst_port", str(DEFAULT_DST_PORT)), 1, 65535),
            tos=_int("tos", tos, 0, 255),
            ttl=_int("ttl", ttl, 1, 255),
            df_default=df == "true")

    @property
    def remote_ip_bytes(self) -> bytes:
        return ipaddress.IPv4Address(self.remote_ip or "0.0.0.0").packed

    @property
    def local_ip_bytes(self) -> bytes:
        return ipaddress.IPv4Address(self.local_ip or "0.0.0.0").packed


@dataclass(frozen=True)
class Route:
    """Where a tunnel's outer packets go."""
    ifindex: int
    ifname: str
    mtu: int
    src_mac: bytes
    dst_mac: bytes
    src_ip: str
    next_hop: str

    @property
    def src_ip_bytes(self) -> bytes:
        return ipaddress.IPv4Address(self.src_ip).packed


def _mac(text: str | None) -> bytes | None:
    if not text:
        return None
    b = bytes(int(x, 16) for x in text.split(":"))
    return b if len(b) == 6 else None


def lookup_route(ipr, cfg: VxlanConfig, remote: str | None = None
                 ) -> tuple[Route | None, str, bool]:
    """(route or None, why not, whether the next hop should be probed) to
    remote (default: the port's remote_ip)."""
    remote = remote or cfg.remote_ip
    kw = {"dst": remote}
    if cfg.local_ip:
        kw["src"] = cfg.local_ip
    try:
        msgs = list(ipr.route("get", **kw))
    except Exception as e:                       # NetlinkError: unreachable, bad src
        return None, f"no route to {remote}: {e}", False
    if not msgs:
        return None, f"no route to {remote}", False
    r = msgs[0]
    oif = r.get_attr("RTA_OIF")
    src = cfg.local_ip or r.get_attr("RTA_PREFSRC")
    nh = r.get_attr("RTA_GATEWAY") or remote
    links = list(ipr.link("get", index=oif)) if oif else []
    if not links or not src:
        return None, f"no egress device or source address for {remote}", False
    link = links[0]
    name = link.get_attr("IFLA_IFNAME") or str(oif)
    mac = _mac(link.get_attr("IFLA_ADDRESS"))
    if link["ifi_type"] != 1 or mac is None:     # ARPHRD_ETHER only
        return None, f"egress device {name} is not Ethernet (local remote_ip?)", False
    neigh_mac, stale = None, False
    for n in ipr.neigh("dump", ifindex=oif):
        if n.get_attr("NDA_DST") == nh and n["state"] & _NUD_USABLE:
            neigh_mac = _mac(n.get_attr("NDA_LLADDR"))
            stale = bool(n["state"] & _NUD_STALE)
            if neigh_mac:
                break
    if neigh_mac is None:
        return None, f"next hop {nh} on {name} not resolved yet", True
    route = Route(ifindex=oif, ifname=name, mtu=link.get_attr("IFLA_MTU") or 1500,
                  src_mac=mac, dst_mac=neigh_mac, src_ip=src, next_hop=nh)
    return route, "", stale


@dataclass
class _Tunnel:
    dp: object
    port_no: int
    cfg: VxlanConfig
    route: Route | None = None
    why: str = "not resolved yet"
    # remote_ip=flow: the remotes frames were sent to, and their routes.
    dests: dict = field(default_factory=dict)       # address -> (Route | None, why)


class Resolver:
    """Keeps the routes of registered tunnel ports current (one thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()        # _tunnels, and every push into a datapath
        self._tunnels: dict[tuple[int, int], _Tunnel] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._thread: threading.Thread | None = None
        self._stop = False
        self.passes = 0                      # resolution passes, for tests

    # --- registry (any thread) --------------------------------------------------

    def add(self, dp, port_no: int, cfg: VxlanConfig) -> None:
        if cfg.remote_flow:                  # up from the start: remotes come per frame
            dp.set_port_link(port_no, True)
        with self._lock:
            self._tunnels[(id(dp), port_no)] = _Tunnel(dp, port_no, cfg)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="vs-tunnel",
                                                daemon=True)
                self._thread.start()
        self.kick()

    def remove(self, dp, port_no: int | None = None) -> None:
        """Forget a port (or every port of dp).  Once this returns the
        resolver no longer touches dp: the caller may close it."""
        with self._lock:
            for k in [k for k in self._tunnels
                      if k[0] == id(dp) and (port_no is None or k[1] == port_no)]:
                del self._tunnels[k]

    def state(self, dp, port_no: int) -> dict:
        with self._lock:
            t = self._tunnels.get((id(dp), port_no))
            if t is None:
                return {"resolved": False, "why": "not registered"}
            if t.cfg.remote_flow:
                return {"resolved": True, "flow": True, "remotes": {
                    a: ({"egress": r.ifname, "next_hop": r.next_hop, "src_ip": r.src_ip,
                         "underlay_mtu": r.mtu} if r else {"why": why})
                    for a, (r, why) in sorted(t.dests.items())}}
            r = t.route
            if r is None:
                return {"resolved": False, "why": t.why}
            return {"resolved": True, "egress": r.ifname, "next_hop": r.next_hop,
                    "next_hop_mac": ":".join(f"{b:02x}" for b in r.dst_mac),
                    "src_ip": r.src_ip, "underlay_mtu": r.mtu}

    def kick(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    # --- the thread ---------------------------------------------------------------

    def _run(self) -> None:
        from pyroute2 import IPRoute
        mon = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        mon.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        mon.bind((0, _RTMGRP))
        mon.setblocking(False)
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        last_full = 0.0
        with IPRoute() as ipr:
            while not self._stop:
                now = time.monotonic()
                full = now - last_full >= REFRESH_S
                try:
                    self._pass(ipr, probe, full)
                except Exception:
                    log.exception("tunnel route resolution")
                if full:
                    last_full = now
                with self._lock:
                    pending = any(t.route is None and not t.cfg.remote_flow or
                                  any(r is None for r, _ in t.dests.values())
                                  for t in self._tunnels.values())
                    flow = any(t.cfg.remote_flow for t in self._tunnels.values())
                timeout = WANTED_S if flow else RETRY_S if pending else REFRESH_S
                ready, _, _ = select.select([mon, self._wake_r], [], [], timeout)
                if ready:
                    time.sleep(DEBOUNCE_S)           # let a burst of changes land
                    for s in (mon, self._wake_r):
                        while True:
                            try:
                                s.recv(1 << 16)
                            except BlockingIOError:
                                break
                            except OSError:          # ENOBUFS: changes lost; resolve all
                                break
                    last_full = 0.0 if mon in ready else last_full
        mon.close()
        probe.close()

    def _pass(self, ipr, probe: socket.socket, full: bool) -> None:
        with self._lock:
            tunnels = list(self._tunnels.values())
        for t in tunnels:
            if t.cfg.remote_flow:
                self._pass_flow(ipr, probe, t, full)
                continue
            route, why, poke = lookup_route(ipr, t.cfg)
            if poke:
                self._probe(probe, t.cfg)
            if route == t.route and not full:
                continue
            with self._lock:
                if self._tunnels.get((id(t.dp), t.port_no)) is not t:
                    continue                         # removed meanwhile
                changed = route != t.route
                t.route, t.why = route, why
                if not changed:
                    continue
                try:
                    t.dp.set_vxlan_route(t.port_no, route)
                    t.dp.set_port_link(t.port_no, route is not None)
                except (OSError, ValueError) as e:   # port or datapath gone
                    log.info("tunnel port %d: %s", t.port_no, e)
                    continue
            if route is not None:
                log.info("tunnel port %d -> %s via %s (%s), underlay MTU %d", t.port_no,
                         t.cfg.remote_ip, route.ifname, route.next_hop, route.mtu)
            else:
                log.info("tunnel port %d: %s", t.port_no, why)

    def _pass_flow(self, ipr, probe: socket.socket, t: _Tunnel, full: bool) -> None:
        """A remote_ip=flow port: take the destinations its frames wanted,
        resolve new and unresolved ones (all of them on a full pass), push
        what changed."""
        with self._lock:
            if self._tunnels.get((id(t.dp), t.port_no)) is not t:
                return
            try:
                wanted = t.dp.vxlan_wanted(t.port_no)
            except (OSError, ValueError):
                return
            for a in wanted:                 # t.dests changes under the lock only
                if a not in t.dests and len(t.dests) < MAX_DESTS:
                    t.dests[a] = (None, "not resolved yet")
            dests = list(t.dests.items())
        for a, (old, _) in dests:
            if old is not None and not full:
                continue
            route, why, poke = lookup_route(ipr, t.cfg, a)
            if poke:
                self._probe(probe, t.cfg, a)
            with self._lock:
                if self._tunnels.get((id(t.dp), t.port_no)) is not t:
                    return
                t.dests[a] = (route, why)
                if route == old:
                    continue
                try:
                    t.dp.set_vxlan_dest(t.port_no, a, route)
                except (OSError, ValueError) as e:
                    log.info("tunnel port %d remote %s: %s", t.port_no, a, e)
                    continue
            log.info("tunnel port %d remote %s: %s", t.port_no, a,
                     f"via {route.ifname} ({route.next_hop})" if route else why)

    @staticmethod
    def _probe(probe: socket.socket, cfg: VxlanConfig, remote: str | None = None) -> None:
        """One datagram to the remote's discard port: the kernel resolves
        (or re-confirms) the next hop on its way out."""
        try:
            probe.sendto(b"", (remote or cfg.remote_ip, PROBE_PORT))
        except OSError:
            pass


_resolver: Resolver | None = None
_resolver_lock = threading.Lock()


def resolver() -> Resolver:
    """The process's one resolver (started on first use)."""
    global _resolver
    with _resolver_lock:
        if _resolver is None:
            _resolver = Resolver()
        return _resolver
