"""Small test topologies: network namespaces ("hosts") joined by veth pairs
to the root namespace, built with pyroute2 (no `ip` subprocesses).

    with Topology() as topo:
        h1 = topo.add_host("10.9.0.1/24")
        h2 = topo.add_host("10.9.0.2/24")
        # h1.port is the root-namespace end of h1's veth: give it to a datapath
        assert ping(h1, h2.ip)

Every name is a short prefix plus a random suffix, so parallel runs do not
collide, and everything is removed on exit even when the body failed (the
pytest fixture `topo` does the same).  IPv6 is disabled on every interface
made here, so that no router solicitations or DAD probes add traffic the
tests did not send.

Traffic helpers run in a host's namespace by switching the calling thread
only (setns), so sockets are made in-process: `ping`, `udp_sender`,
`udp_socket`, `Sniffer`, `send_raw`.  `add_vlan` needs the kernel's 8021q
support; `send_raw` + `Sniffer` speak tagged frames without it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import secrets
import select
import socket
import struct
import time
from dataclasses import dataclass, field

from pyroute2 import IPRoute, NetNS, netns

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/var/run/netns"
ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
TP_STATUS_VLAN_VALID = 0x10

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


@contextlib.contextmanager
def in_netns(name: str | None):
    """Run the body with the calling thread in network namespace `name`
    (None: stay where we are).  Sockets made inside keep the namespace."""
    if name is None:
        yield
        return
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    there = os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY)
    try:
        _setns(there)
        try:
            yield
        finally:
            _setns(here)
    finally:
        os.close(here)
        os.close(there)


def _write_sysctl(path: str, value: str) -> None:
    with contextlib.suppress(OSError), open(path, "w") as f:
        f.write(value)


def disable_ipv6(ifname: str, ns: str | None = None) -> None:
    with in_netns(ns):
        _write_sysctl(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6", "1")


@dataclass
class Host:
    """A namespace with one veth (`ifname` inside, `port` the root end)."""

    ns: str
    ifname: str
    port: str                  # root-namespace end, for the datapath
    port_ifindex: int
    ip: str | None             # without prefix length
    cidr: str | None
    mac: str
    vlans: dict[int, str] = field(default_factory=dict)   # vid -> subinterface name

    def netns(self) -> NetNS:
        return NetNS(self.ns)


class Topology:
    """Namespaces and veth pairs that are cleaned up on close()."""

    def __init__(self, prefix: str = "vt") -> None:
        self.tag = prefix + secrets.token_hex(3)     # e.g. vt1a2b3c: 8 chars
        self.hosts: list[Host] = []
        self.namespaces: list[str] = []
        self.links: list[str] = []                  # root-namespace devices we made
        self._ipr = IPRoute()

    def __enter__(self) -> Topology:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def name(self, suffix: str) -> str:
        n = f"{self.tag}{suffix}"
        assert len(n) < 16, n
        return n

    def add_host(self, cidr: str | None = None, mac: str | None = None,
                 mtu: int | None = None, segmentation_offload: bool = True) -> Host:
        """A namespace with eth0 (a veth) addressed with cidr.  Offloads stay
        as the kernel sets them (TSO/GSO on, as on real hosts: the datapath
        takes the super-frames); segmentation_offload=False turns TSO/GSO
        off on eth0 for a test that needs the sender to emit wire-sized
        frames itself."""
        i = len(self.hosts)
        ns = self.name(f"n{i}")
        port = self.name(f"p{i}")
        peer = self.name(f"h{i}")
        netns.create(ns)
        self.namespaces.append(ns)
        mac = mac or ":".join(f"{b:02x}" for b in (2, *secrets.token_bytes(4), i + 1))
        ipr = self._ipr
        ipr.link("add", ifname=port, kind="veth", peer=peer)
        self.links.append(port)
        disable_ipv6(port)
        (pidx,) = ipr.link_lookup(ifname=port)
        (hidx,) = ipr.link_lookup(ifname=peer)
        if mtu:
            ipr.link("set", index=pidx, mtu=mtu)
            ipr.link("set", index=hidx, mtu=mtu)
        ipr.link("set", index=hidx, net_ns_fd=ns)
        ipr.link("set", index=pidx, state="up")
        with NetNS(ns) as n:
            (idx,) = n.link_lookup(ifname=peer)
            n.link("set", index=idx, ifname="eth0", address=mac)
            disable_ipv6("eth0", ns)
            disable_ipv6("default", ns)
            if cidr:
                addr, plen = cidr.split("/")
                n.addr("add", index=idx, address=addr, prefixlen=int(plen))
            n.link("set", index=idx, state="up")
            (lo,) = n.link_lookup(ifname="lo")
            n.link("set", index=lo, state="up")
        host = Host(ns=ns, ifname="eth0", port=port, port_ifindex=pidx,
                    ip=cidr.split("/")[0] if cidr else None, cidr=cidr, mac=mac)
        self.hosts.append(host)
        if not segmentation_offload:
            disable_segmentation_offload(host)
        return host

    def add_vlan(self, host: Host, vid: int, cidr: str) -> str:
        """A VLAN subinterface eth0.<vid> in the host, addressed with cidr."""
        name = f"eth0.{vid}"
        with NetNS(host.ns) as n:
            (base,) = n.link_lookup(ifname=host.ifname)
            n.link("add", ifname=name, kind="vlan", link=base, vlan_id=vid)
            disable_ipv6(name, host.ns)
            (idx,) = n.link_lookup(ifname=name)
            addr, plen = cidr.split("/")
            n.addr("add", index=idx, address=addr, prefixlen=int(plen))
            n.link("set", index=idx, state="up")
        host.vlans[vid] = name
        return name

    def move_into(self, ifname: str, host: Host, cidr: str | None = None,
                  new_name: str | None = None) -> str:
        """Move a root-namespace device (e.g. a datapath's TAP) into host's
        namespace, rename, address and bring it up there."""
        (idx,) = self._ipr.link_lookup(ifname=ifname)
        self._ipr.link("set", index=idx, net_ns_fd=host.ns)
        new_name = new_name or ifname
        with NetNS(host.ns) as n:
            (i,) = n.link_lookup(ifname=ifname)
            if new_name != ifname:
                n.link("set", index=i, ifname=new_name)
            disable_ipv6(new_name, host.ns)
            if cidr:
                addr, plen = cidr.split("/")
                n.addr("add", index=i, address=addr, prefixlen=int(plen))
            n.link("set", index=i, state="up")
        return new_name

    def set_neighbor(self, host: Host, ip: str, mac: str, dev: str = "eth0") -> None:
        """A permanent ARP entry: no ARP traffic for exact counter checks."""
        with NetNS(host.ns) as n:
            (idx,) = n.link_lookup(ifname=dev)
            n.neigh("replace", dst=ip, lladdr=mac, ifindex=idx, state="permanent")

    def link_up(self, ifname: str, up: bool = True) -> None:
        (idx,) = self._ipr.link_lookup(ifname=ifname)
        self._ipr.link("set", index=idx, state="up" if up else "down")

    def close(self) -> None:
        errors = []
        for ns in reversed(self.namespaces):
            try:
                netns.remove(ns)
            except Exception as e:           # keep going: clean up the rest
                errors.append(e)
        self.namespaces.clear()
        for link in self.links:
            with contextlib.suppress(Exception):
                idx = self._ipr.link_lookup(ifname=link)
                if idx:
                    self._ipr.link("del", index=idx[0])
        self.links.clear()
        self._ipr.close()
        if errors:
            raise errors[0]


def leftovers(prefix: str = "vt") -> list[str]:
    """Namespaces from earlier runs with this prefix (for diagnostics)."""
    try:
        return [n for n in os.listdir(NETNS_DIR) if n.startswith(prefix)]
    except FileNotFoundError:
        return []


def reap_stale(prefix: str = "vt", max_age_s: float = 600) -> list[str]:
    """Remove namespaces with this prefix older than max_age_s: left behind
    by a run that was killed (finally blocks do not run on abort).  Younger
    ones may belong to a run in progress and are kept."""
    removed = []
    for n in leftovers(prefix):
        with contextlib.suppress(OSError):
            if time.time() - os.stat(os.path.join(NETNS_DIR, n)).st_mtime > max_age_s:
                netns.remove(n)
                removed.append(n)
    return removed


def topology_unusable(prefix: str = "vt", why_root: str = "network namespaces, AF_PACKET",
                       need_tun: bool = False) -> str | None:
    """Why this machine cannot build test topologies (a skip reason), or None.
    Also reaps what an earlier, killed run left under prefix."""
    if os.geteuid() != 0:
        return f"needs root ({why_root})"
    if need_tun and not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun"
    reap_stale(prefix)
    try:
        with Topology(prefix) as t:
            t.add_host()
    except Exception as e:
        return f"cannot create network namespaces and veth pairs: {e}"
    return None


# --- traffic -------------------------------------------------------------------

def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ping(src: Host, dst_ip: str, count: int = 3, timeout: float = 1.0,
         interval: float = 0.05, payload: bytes = b"vswitch-ping") -> int:
    """ICMP echo from src's namespace to dst_ip; returns replies received."""
    with in_netns(src.ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = secrets.randbits(16)
    got = 0
    try:
        for seq in range(count):
            hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
            pkt = struct.pack("!BBHHH", 8, 0, _csum(hdr + payload), ident, seq) + payload
            s.sendto(pkt, (dst_ip, 0))
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                r, _, _ = select.select([s], [], [], left)
                if not r:
                    break
                data, addr = s.recvfrom(65535)
                ihl = (data[0] & 0xF) * 4
                typ, _, _, rid, rseq = struct.unpack_from("!BBHHH", data, ihl)
                if typ == 0 and rid == ident and rseq == seq and addr[0] == dst_ip:
                    got += 1
                    break
            if interval:
                time.sleep(interval)
    finally:
        s.close()
    return got


def udp_socket(host: Host, port: int, addr: str = "0.0.0.0") -> socket.socket:
    """A bound UDP socket in host's namespace (non-blocking)."""
    with in_netns(host.ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, port))
    s.setblocking(False)
    return s


def udp_sender(host: Host) -> socket.socket:
    with in_netns(host.ns):
        return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


def drain(s: socket.socket, wait: float = 0.5, expect: int | None = None) -> list[bytes]:
    """Everything s receives until `wait` seconds pass with nothing new (or
    `expect` datagrams arrived)."""
    out: list[bytes] = []
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        r, _, _ = select.select([s], [], [], left)
        if not r:
            break
        try:
            while True:
                out.append(s.recv(65535))
                if expect is not None and len(out) >= expect:
                    return out
        except BlockingIOError:
            pass
        deadline = time.monotonic() + wait
    return out


class Sniffer:
    """An AF_PACKET socket on a device in a namespace; frames come with the
    VLAN tag the kernel took out of them, if any (PACKET_AUXDATA)."""

    def __init__(self, ns: str | None, ifname: str) -> None:
        with in_netns(ns):
            self.s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            self.s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            self.s.bind((ifname, ETH_P_ALL))
        self.s.setblocking(False)

    def frames(self, wait: float = 0.5, match=None) -> list[tuple[bytes, int | None]]:
        """(frame, vlan_tci or None) pairs for incoming frames matching."""
        out = []
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            r, _, _ = select.select([self.s], [], [], left)
            if not r:
                break
            while True:
                try:
                    data, anc, _, addr = self.s.recvmsg(65535, 256)
                except BlockingIOError:
                    break
                if addr[2] == socket.PACKET_OUTGOING:
                    continue
                tci = None
                for level, typ, val in anc:
                    if level == SOL_PACKET and typ == PACKET_AUXDATA and len(val) >= 20:
                        status, _, _, _, _, vlan_tci, _ = struct.unpack_from("=IIIHHHH", val)
                        if status & TP_STATUS_VLAN_VALID:
                            tci = vlan_tci
                if match is None or match(data):
                    out.append((data, tci))
        return out

    def close(self) -> None:
        self.s.close()

    def __enter__(self) -> Sniffer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


SIOCETHTOOL = 0x8946
ETHTOOL_GTSO, ETHTOOL_STSO, ETHTOOL_GGSO, ETHTOOL_SGSO = 0x1E, 0x1F, 0x23, 0x24


def _ethtool_value(host: Host, dev: str, cmd: int, value: int = 0) -> int:
    """An ETHTOOL_G*/S* call with a struct ethtool_value; returns .data."""
    import fcntl

    with in_netns(host.ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        val = ctypes.create_string_buffer(struct.pack("=II", cmd, value))
        ifr = struct.pack("16sP", dev.encode(), ctypes.addressof(val)) + b"\0" * 16
        fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifr)
        return struct.unpack("=II", val.raw[:8])[1]
    finally:
        s.close()


def disable_segmentation_offload(host: Host, dev: str = "eth0") -> None:
    """Opt-in: turn TSO and GSO off on a device in host's namespace, so that
    its TCP/UDP senders emit wire-sized frames themselves instead of 64 KiB
    super-frames.  `system` ports no longer need this (they segment
    super-frames in software, docs/datapath.md); it stays for port types
    that do not (e.g. AF_XDP) and for tests that want the sender's own
    segments."""
    for cmd in (ETHTOOL_STSO, ETHTOOL_SGSO):
        _ethtool_value(host, dev, cmd, 0)


def segmentation_offload(host: Host, dev: str = "eth0") -> tuple[bool, bool]:
    """(TSO on, GSO on) for a device in host's namespace."""
    return (bool(_ethtool_value(host, dev, ETHTOOL_GTSO)),
            bool(_ethtool_value(host, dev, ETHTOOL_GGSO)))


def send_raw(host: Host, *frames: bytes, dev: str = "eth0") -> None:
    """Send whole Ethernet frames out of a device in host's namespace."""
    with in_netns(host.ns):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    try:
        s.bind((dev, 0))
        for f in frames:
            s.send(f)
    finally:
        s.close()


def ip_of(cidr: str) -> str:
    return str(ipaddress.ip_interface(cidr).ip)
