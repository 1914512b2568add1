"""Integration tests for the C datapath (vswitch/datapath.py over
vswitch/_fastpath/datapath.h): real traffic between network namespaces
through poll threads, system/tap/internal/patch ports, NORMAL with VLANs,
upcalls, packet-out, counters, idle CPU.

Needs root and network namespaces (and pyroute2); skipped otherwise.
Every test builds its own topology with unique names (tests/nettopo.py) and
removes it even when it fails.
"""

from __future__ import annotations

import os
import random
import select
import socket
import struct
import threading
import time

import pytest

pyroute2 = pytest.importorskip("pyroute2", reason="pyroute2 is needed to build topologies")

from nettopo import (  # noqa: E402
    Sniffer,
    Topology,
    disable_segmentation_offload,
    drain,
    in_netns,
    ping,
    segmentation_offload,
    send_raw,
    topology_unusable,
    udp_sender,
    udp_socket,
)

from vswitch import ofp  # noqa: E402
from vswitch.datapath import (  # noqa: E402
    Datapath,
    DatapathError,
    afxdp_available,
    make_standalone,
    patch,
)
from vswitch.flowtable import Pipeline  # noqa: E402
from vswitch.ofp import Match, Output, SetField, apply  # noqa: E402

_SKIP = topology_unusable(why_root="network namespaces, AF_PACKET, TAP devices",
                          need_tun=True)
pytestmark = pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")


class Env:
    """A topology plus the pipelines and datapaths made on it; closed in
    the right order (datapaths, pipelines, namespaces) whatever happens."""

    def __init__(self) -> None:
        self.topo = Topology()
        self.dps: list[Datapath] = []
        self.pipelines: list[Pipeline] = []
        self.subnet = random.randrange(16, 250)

    def ip(self, host: int, vlan_net: int = 0) -> str:
        return f"10.{self.subnet + vlan_net}.0.{host}"

    def cidr(self, host: int, vlan_net: int = 0) -> str:
        return f"{self.ip(host, vlan_net)}/24"

    def datapath(self, standalone: bool = True, **kw) -> tuple[Datapath, Pipeline]:
        p = Pipeline()
        self.pipelines.append(p)
        if standalone:
            make_standalone(p)
        dp = Datapath(p, **kw)
        self.dps.append(dp)
        return dp, p

    def close(self) -> None:
        for dp in self.dps:
            dp.close()
        for p in self.pipelines:
            p.close()
        self.topo.close()


@pytest.fixture
def env():
    e = Env()
    try:
        yield e
    finally:
        e.close()


def _wait(cond, timeout: float = 2.0, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def _hosts(env: Env, n: int, dp: Datapath, **port_kw) -> list:
    hosts = []
    for i in range(n):
        h = env.topo.add_host(env.cidr(i + 1))
        dp.add_port(i + 1, "system", name=h.port, **port_kw)
        hosts.append(h)
    return hosts


def _udp_frame_match(dport: int):
    def match(f: bytes) -> bool:
        return (len(f) >= 42 and f[12:14] == b"\x08\x00" and f[23] == 17
                and struct.unpack_from("!H", f, 14 + (f[14] & 0xF) * 4 + 2)[0] == dport)
    return match


# --- forwarding -----------------------------------------------------------------

def test_learning_switch_three_hosts(env):
    dp, _ = env.datapath()
    h1, h2, h3 = _hosts(env, 3, dp)
    assert ping(h1, h2.ip) == 3
    assert ping(h1, h3.ip) == 3
    assert ping(h3, h2.ip) == 3
    fdb = {(e.mac, e.vlan): e.port for e in dp.fdb()}
    assert fdb[(h1.mac, 0)] == 1
    assert fdb[(h2.mac, 0)] == 2
    assert fdb[(h3.mac, 0)] == 3
    s = dp.stats()
    assert s["fdb_entries"] == 3 and s["normal_floods"] >= 1
    assert all(p.link_up for p in dp.ports())


def test_learned_addresses_age_out(env):
    dp, _ = env.datapath(mac_aging_s=1)
    h1, h2 = _hosts(env, 2, dp)
    assert ping(h1, h2.ip) == 3
    assert {e.mac for e in dp.fdb()} >= {h1.mac, h2.mac}
    # Nothing is sent for longer than the aging time: both entries go, and
    # the next frame to an unknown address is flooded again.
    assert _wait(lambda: dp.fdb() == [], timeout=4.0)
    floods = dp.stats()["normal_floods"]
    assert ping(h1, h2.ip) == 3
    assert dp.stats()["normal_floods"] > floods
    assert {e.mac for e in dp.fdb()} >= {h1.mac, h2.mac}


def test_explicit_flows(env):
    dp, p = env.datapath(standalone=False)
    h1, h2 = _hosts(env, 2, dp)
    assert ping(h1, h2.ip, count=1, timeout=0.3) == 0          # no flows: table miss drops
    p.add_flow(0, 100, Match(in_port=1), [apply(Output(2))])
    p.add_flow(0, 100, Match(in_port=2), [apply(Output(1))])
    assert ping(h1, h2.ip) == 3
    counts = {f.match.get("in_port")[0]: f.packet_count for f in p.dump_flows()}
    assert counts[1] >= 3 and counts[2] >= 3
    assert dp.fdb() == []                                        # NORMAL never ran


def test_udp_between_hosts(env):
    dp, _ = env.datapath()
    h1, h2 = _hosts(env, 2, dp)
    rx = udp_socket(h2, 5001)
    tx = udp_sender(h1)
    try:
        for i in range(50):
            tx.sendto(b"datagram %d" % i, (h2.ip, 5001))
        got = drain(rx, expect=50)
        # Checksums were left to offload by the veth sender: the datapath
        # completes them, or the receiving stack would drop every datagram.
        assert sorted(got) == sorted(b"datagram %d" % i for i in range(50))
    finally:
        rx.close()
        tx.close()


def _tcp_bulk(h1, h2, blob: bytes, port: int = 5201, timeout: float = 20.0) -> tuple[bytes, float]:
    """Send blob from h1 to h2 over one TCP connection; (what h2 got, seconds)."""
    with in_netns(h2.ns):
        ls = socket.socket()
    ls.bind((h2.ip, port))
    ls.listen(1)
    ls.settimeout(timeout)
    got = bytearray()

    def serve():
        try:
            c, _ = ls.accept()
        except OSError:
            return
        c.settimeout(timeout)
        with c:
            while data := c.recv(1 << 20):
                got.extend(data)

    th = threading.Thread(target=serve)
    th.start()
    t0 = time.monotonic()
    try:
        with in_netns(h1.ns):
            c = socket.socket()
        with c:
            c.settimeout(timeout)
            c.connect((h2.ip, port))
            c.sendall(blob)
    finally:
        th.join(timeout + 5)
        ls.close()
    return bytes(got), time.monotonic() - t0


class _BigFrameCounter:
    """Counts frames longer than `limit` arriving on a root-namespace device,
    through a plain AF_PACKET socket (no vnet header: it sees super-frames
    whole), to prove that the sender really handed over GSO super-frames."""

    def __init__(self, ifname: str, limit: int = 1514) -> None:
        self.s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        self.s.bind((ifname, 0x0003))
        self.s.settimeout(0.05)
        self.limit, self.big, self.largest = limit, 0, 0
        self.stop = threading.Event()
        self.th = threading.Thread(target=self._run)
        self.th.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                n = len(self.s.recv(1, socket.MSG_TRUNC))   # the frame's real length
            except TimeoutError:
                continue
            except OSError:
                return
            self.largest = max(self.largest, n)
            self.big += n > self.limit

    def close(self) -> None:
        self.stop.set()
        self.th.join()
        self.s.close()


def test_tcp_between_hosts(env):
    # Offloads as the kernel sets them: the veth senders hand the datapath
    # 64 KiB TSO super-frames, which it segments in software (dp_gso.c).
    dp, _ = env.datapath()
    h1, h2 = _hosts(env, 2, dp)
    assert segmentation_offload(h1) == (True, True)           # default-on, as on real hosts
    blob = os.urandom(16 << 20)
    big = _BigFrameCounter(h1.port)
    try:
        got, secs = _tcp_bulk(h1, h2, blob)
    finally:
        big.close()
    assert len(got) == len(blob) and got == blob
    assert big.big > 0, "the sender produced no super-frames: nothing was segmented"
    # Everything h1 sent went out to h2 (the last ACKs may still be in flight).
    assert _wait(lambda: dp.port_stats(2)["tx_packets"] + dp.port_stats(2)["tx_dropped"]
                 == dp.port_stats(1)["rx_packets"])
    a, b = dp.port_stats(1), dp.port_stats(2)
    assert a["rx_oversize"] == a["rx_errors"] == 0
    assert b["tx_oversize"] == b["tx_errors"] == 0
    # The pipeline and the counters saw wire-sized frames only.
    assert a["rx_packets"] >= len(blob) // 1448
    assert a["rx_bytes"] / a["rx_packets"] <= 1514
    print(f"TCP through the switch: {len(blob) * 8 / secs / 1e9:.2f} Gbit/s "
          f"(largest super-frame {big.largest} bytes)")


def test_tcp_without_offloads_still_works(env):
    # Opt-out: senders that segment themselves (TSO/GSO off).
    dp, _ = env.datapath()
    h1 = env.topo.add_host(env.cidr(1), segmentation_offload=False)
    h2 = env.topo.add_host(env.cidr(2), segmentation_offload=False)
    dp.add_port(1, name=h1.port)
    dp.add_port(2, name=h2.port)
    assert segmentation_offload(h1) == (False, False)
    blob = os.urandom(1 << 20)
    got, _ = _tcp_bulk(h1, h2, blob)
    assert got == blob
    assert dp.port_stats(1)["rx_oversize"] == dp.port_stats(1)["rx_errors"] == 0


UDP_SEGMENT = 103                     # linux/udp.h: UDP GSO (not in Python's socket module)


def test_udp_gso_super_frame_is_segmented_on_receive(env):
    dp, _ = env.datapath()
    h1, h2 = _hosts(env, 2, dp)
    env.topo.set_neighbor(h1, h2.ip, h2.mac)                  # exact counts: no ARP
    rx = udp_socket(h2, 6100)
    tx = udp_sender(h1)
    big = _BigFrameCounter(h1.port)
    try:
        tx.setsockopt(socket.IPPROTO_UDP, UDP_SEGMENT, 1000)
        payload = bytes(range(256)) * 39 + b"tail"            # 9988 bytes: 9 x 1000 + 988
        tx.sendto(payload, (h2.ip, 6100))
        got = drain(rx, expect=10)
    finally:
        big.close()
        rx.close()
        tx.close()
    assert big.big == 1                                       # one super-frame on the veth
    assert [len(d) for d in got] == [1000] * 9 + [988]        # ten datagrams arrived
    assert b"".join(got) == payload
    st = dp.port_stats(1)
    assert st["rx_packets"] == 10 and st["rx_errors"] == st["rx_oversize"] == 0
    assert st["rx_bytes"] == 9 * (14 + 20 + 8 + 1000) + 14 + 20 + 8 + 988
    assert dp.port_stats(2)["tx_packets"] == 10


def test_ring_blocks_too_small_for_super_frames_are_refused(env):
    dp, _ = env.datapath(ring_block_size=64 * 1024)
    h1 = env.topo.add_host()
    with pytest.raises(DatapathError, match="ring_block_size must be >= 131072"):
        dp.add_port(1, name=h1.port)
    assert dp.port_numbers() == []


# --- software segmentation and checksum completion (dp_gso.c) through its test hook -----
# vs_dp_gso_segment_test() runs exactly what a `system` port does with a
# frame and its virtio_net_hdr after the ring: the frame (checksum completed)
# or its segments, -EINVAL for what the port counts in rx_errors and drops,
# -EMSGSIZE for rx_oversize.

VNET_F_NEEDS_CSUM = 1
GSO_TCPV4, GSO_UDP, GSO_TCPV6, GSO_UDP_L4, GSO_ECN = 1, 3, 4, 5, 0x80


def _vnet(gso_type=0, gso_size=0, hdr_len=0, flags=0, csum_start=0, csum_offset=0) -> bytes:
    # struct virtio_net_hdr, host byte order as PACKET_VNET_HDR uses it.
    return struct.pack("=BBHHHH", flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


def _gso(frame: bytes, vnet: bytes, mtu: int = 1500, out_cap: int = 300 * 1024,
         max_segs: int = 1024):
    """The resulting frames, or the negative errno."""
    from vswitch._fastpath._core import ffi, lib
    out = ffi.new("uint8_t[]", max(out_cap, 1))
    lens = ffi.new("uint32_t[]", max(max_segs, 1))
    n = lib.vs_dp_gso_segment_test(frame, len(frame), vnet, mtu, out, out_cap, lens, max_segs)
    if n < 0:
        return n
    frames, off = [], 0
    for i in range(n):
        assert off + lens[i] <= out_cap
        frames.append(ffi.buffer(out + off, lens[i])[:])
        off += lens[i]
    return frames


def _csum_ok(frame: bytes) -> bool:
    """Every IPv4 header / TCP / UDP checksum in frame is right: scapy,
    told to recompute them, rebuilds the very same bytes."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.l2 import Ether
    p = Ether(frame)
    for layer, field in ((IP, "chksum"), (TCP, "chksum"), (UDP, "chksum")):
        if layer in p:
            setattr(p[layer], field, None)
    return bytes(p) == frame


def _super_tcp(v6: bool = False, payload_len: int = 10000, flags: str = "PAF",
               vlan: int | None = None, options=None) -> tuple[bytes, int]:
    """A TCP super-frame as a TSO sender hands it over: lengths cover the
    whole payload, the TCP checksum holds the pseudo-header sum only.
    Returns (frame, offset of the TCP header)."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Dot1Q, Ether
    l2 = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    if vlan is not None:
        l2 = l2 / Dot1Q(vlan=vlan)
    ip = (IPv6(src="fd00::1", dst="fd00::2") if v6
          else IP(src="10.0.0.1", dst="10.0.0.2", id=0xfffe, flags="DF"))
    tcp = TCP(sport=40000, dport=5201, seq=0xfffff000, ack=77, flags=flags, window=512,
              options=options or [])
    pay = bytes((i * 7) & 0xFF for i in range(payload_len))
    frame = bytearray(bytes(l2 / ip / tcp / pay))
    l4 = len(l2) + (40 if v6 else 20)
    frame[l4 + 16:l4 + 18] = b"\x12\x34"                     # not a valid checksum
    return bytes(frame), l4


def test_gso_tcpv4_segments_as_the_kernel_would():
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    frame, l4 = _super_tcp(flags="FPAC")                     # FIN PSH ACK CWR
    segs = _gso(frame, _vnet(GSO_TCPV4 | GSO_ECN, 1448, l4 + 20, VNET_F_NEEDS_CSUM, l4, 16))
    assert isinstance(segs, list) and len(segs) == 7          # ceil(10000 / 1448)
    payload = b""
    for i, s in enumerate(segs):
        assert len(s) <= 1514 and _csum_ok(s), i
        p = Ether(s)
        assert p[IP].len == len(s) - 14 and p[IP].id == (0xfffe + i) & 0xFFFF
        assert p[IP].flags == "DF" and p[IP].frag == 0
        assert p[TCP].seq == (0xfffff000 + i * 1448) & 0xFFFFFFFF   # wraps
        fl = str(p[TCP].flags)
        assert ("F" in fl, "P" in fl) == ((i == 6),) * 2      # FIN, PSH: last only
        assert ("C" in fl) == (i == 0) and "A" in fl          # CWR: first only
        payload += bytes(p[TCP].payload)
    assert [len(s) - 54 for s in segs] == [1448] * 6 + [10000 - 6 * 1448]
    assert payload == frame[l4 + 20:]


def test_gso_tcpv6_vlan_options_and_udp_l4():
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Dot1Q, Ether
    # TCPv6 with timestamps, behind a VLAN tag, MTU 9000 (jumbo segments).
    frame, l4 = _super_tcp(v6=True, payload_len=30000, vlan=7,
                           options=[("NOP", None), ("NOP", None), ("Timestamp", (1, 2))])
    thl = 32
    mss = 9000 - 40 - thl                                     # 8928: frames of 18 + 9000
    segs = _gso(frame, _vnet(GSO_TCPV6, mss, 0, VNET_F_NEEDS_CSUM, l4, 16), mtu=9000)
    assert len(segs) == 4
    for s in segs:
        p = Ether(s)
        assert p[Dot1Q].vlan == 7 and p[IPv6].plen == len(s) - 18 - 40
        assert len(s) <= 9000 + 18 and _csum_ok(s)
        assert p[TCP].dataofs * 4 == thl and p[TCP].options[2][0] == "Timestamp"
    assert b"".join(s[l4 + thl:] for s in segs) == frame[l4 + thl:]
    # UDP GSO, IPv4 and IPv6: every segment is a datagram of its own.
    for v6 in (False, True):
        ip = IPv6(src="fd00::1", dst="fd00::2") if v6 else IP(src="10.0.0.1", dst="10.0.0.2")
        pay = os.urandom(5000)
        frame = bytes(Ether() / ip / UDP(sport=1, dport=2) / pay)
        l4 = 14 + (40 if v6 else 20)
        segs = _gso(frame, _vnet(GSO_UDP_L4, 1200, l4 + 8, VNET_F_NEEDS_CSUM, l4, 6))
        assert [len(s) - l4 - 8 for s in segs] == [1200] * 4 + [200]
        for s in segs:
            p = Ether(s)
            assert p[UDP].len == len(s) - l4 and _csum_ok(s) and p[UDP].chksum != 0
        assert b"".join(s[l4 + 8:] for s in segs) == pay
    # A super-frame with no more than gso_size payload: one frame, fixed up.
    frame, l4 = _super_tcp(payload_len=100)
    (one,) = _gso(frame, _vnet(GSO_TCPV4, 1448, l4 + 20, VNET_F_NEEDS_CSUM, l4, 16))
    assert one[:l4 + 16] == frame[:l4 + 16] and one[l4 + 18:] == frame[l4 + 18:]
    assert _csum_ok(one)


def _pseudo_partial(frame: bytearray, l3: int, l4: int, csum_at: int, v6: bool) -> None:
    """Put only the pseudo-header sum in the L4 checksum field, as a sender
    that leaves the checksum to offload (CHECKSUM_PARTIAL) does."""
    def fold(x: int) -> int:
        while x >> 16:
            x = (x & 0xFFFF) + (x >> 16)
        return x
    if v6:
        addrs, proto = frame[l3 + 8:l3 + 40], frame[l3 + 6]
    else:
        addrs, proto = frame[l3 + 12:l3 + 20], frame[l3 + 9]
    words = struct.unpack(f"!{len(addrs) // 2}H", addrs)
    s = fold(sum(words) + proto + (len(frame) - l4))
    frame[l4 + csum_at:l4 + csum_at + 2] = struct.pack("!H", s)


def test_needs_csum_completed_in_place():
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Dot1Q, Ether
    for l2, ip, l4cls, co in (
        (Ether(), IP(src="10.1.1.1", dst="10.1.1.2"), UDP(sport=5, dport=6), 6),
        (Ether() / Dot1Q(vlan=3), IP(src="10.1.1.1", dst="10.1.1.2"), TCP(flags="PA"), 16),
        (Ether(), IPv6(src="fd00::1", dst="fd00::2"), TCP(flags="PA"), 16),
        (Ether(), IPv6(src="fd00::1", dst="fd00::2"), UDP(sport=5, dport=6), 6),
    ):
        for n in (0, 1, 501, 1400):                           # odd lengths too
            good = bytes(l2 / ip / l4cls / os.urandom(n))
            l3 = len(l2)
            l4 = l3 + (40 if IPv6 in ip else 20)
            partial = bytearray(good)
            _pseudo_partial(partial, l3, l4, co, IPv6 in ip)
            (done,) = _gso(bytes(partial), _vnet(0, 0, 0, VNET_F_NEEDS_CSUM, l4, co))
            assert _csum_ok(done) and done[:l4 + co] == good[:l4 + co]
    # SCTP's CHECKSUM_PARTIAL is a CRC32c (csum_offset 8); scapy computes it right.
    from scapy.layers.sctp import SCTP, SCTPChunkData
    for ip in (IP(src="10.1.1.1", dst="10.1.1.2"), IPv6(src="fd00::1", dst="fd00::2")):
        good = bytes(Ether() / ip / SCTP(sport=9, dport=9) / SCTPChunkData(data=os.urandom(99)))
        l4 = 14 + (40 if IPv6 in ip else 20)
        partial = good[:l4 + 8] + b"\0" * 4 + good[l4 + 12:]
        assert partial != good
        assert _gso(partial, _vnet(0, 0, 0, VNET_F_NEEDS_CSUM, l4, 8)) == [good]
    # Without NEEDS_CSUM the frame is passed on untouched (even if wrong).
    frame = bytes(Ether() / IP() / UDP(chksum=0x1234) / b"x")
    assert _gso(frame, _vnet()) == [frame]


def test_malformed_vnet_headers_and_super_frames_are_refused():
    frame, l4 = _super_tcp()
    good = _vnet(GSO_TCPV4, 1448, l4 + 20, VNET_F_NEEDS_CSUM, l4, 16)
    assert len(_gso(frame, good)) == 7
    EINVAL, EMSGSIZE, ENOBUFS = -22, -90, -105
    truncated_ip = bytearray(frame)
    truncated_ip[16:18] = struct.pack("!H", len(frame) - 14 + 1)   # IP length > frame
    bad_doff = bytearray(frame)
    bad_doff[l4 + 12] = 0x40                                       # TCP header of 16 bytes
    fragment = bytearray(frame)
    fragment[20:22] = b"\x20\x00"                                  # MF set
    not_ip = bytearray(frame)
    not_ip[12:14] = b"\x88\xb5"
    cases = [
        (frame, _vnet(GSO_TCPV4, 0, 0, VNET_F_NEEDS_CSUM, l4, 16), EINVAL),     # gso_size 0
        (frame, _vnet(GSO_UDP, 1448, 0, VNET_F_NEEDS_CSUM, l4, 16), EINVAL),    # UFO
        (frame, _vnet(2, 1448), EINVAL),                                        # unknown type
        (frame, _vnet(0x7F, 1448), EINVAL),
        (frame, _vnet(GSO_TCPV6, 1448, 0, VNET_F_NEEDS_CSUM, l4, 16), EINVAL),  # not IPv6
        (frame, _vnet(GSO_UDP_L4, 1448, 0, VNET_F_NEEDS_CSUM, l4, 16), EINVAL), # not UDP
        (frame, _vnet(GSO_TCPV4, 1448, len(frame) + 1), EINVAL),               # hdr_len
        (frame, _vnet(GSO_TCPV4, 1448, 0, VNET_F_NEEDS_CSUM, len(frame), 0), EINVAL),
        (frame, _vnet(GSO_TCPV4, 1448, 0, VNET_F_NEEDS_CSUM, l4, 0xFFFF), EINVAL),
        (frame, _vnet(GSO_TCPV4, 1448, 0, VNET_F_NEEDS_CSUM, 4, 0), EINVAL),    # in L2
        (frame, _vnet(GSO_TCPV4, 9), EINVAL),                  # 1112 segments > 1024
        (frame, _vnet(GSO_TCPV4, 8000), EMSGSIZE),             # segments > MTU 1500
        (bytes(truncated_ip), good, EINVAL),
        (bytes(bad_doff), good, EINVAL),
        (bytes(fragment), good, EINVAL),
        (bytes(not_ip), good, EINVAL),
        (frame[:l4 + 10], good, EINVAL),                       # cut inside TCP
        (frame[:30], good, EINVAL),                            # cut inside IP
        (frame[:10], good, EINVAL),
        (b"", good, EINVAL),
        (frame[:l4 + 16], _vnet(0, 0, 0, VNET_F_NEEDS_CSUM, l4, 16), EINVAL),   # field cut
        (frame, _vnet(), EMSGSIZE),                            # not GSO, longer than MTU
    ]
    for i, (f, v, want) in enumerate(cases):
        assert _gso(f, v) == want, i
    # The caller's buffer is bounded too: never written past, refused whole.
    assert _gso(frame, good, out_cap=10000) == ENOBUFS
    assert _gso(frame, good, max_segs=6) == ENOBUFS
    # 64 KiB + 1 byte beyond the largest super-frame.
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    huge = bytes(Ether() / IPv6(plen=0) / (b"\0" * (65535 + 9)))
    assert _gso(huge, _vnet(GSO_TCPV6, 1448)) == EMSGSIZE


def test_gso_fuzz_never_crashes_and_stays_in_bounds():
    # Random vnet headers on random mutations of valid super-frames: every
    # answer is an error or wire-sized frames with the super-frame's headers.
    rnd = random.Random(1234)
    seeds = [_super_tcp()[0], _super_tcp(v6=True, payload_len=3000)[0],
             _super_tcp(vlan=5, payload_len=2000)[0]]
    n_ok = 0
    for _ in range(3000):
        f = bytearray(rnd.choice(seeds))
        for _ in range(rnd.randrange(0, 4)):
            f[rnd.randrange(0, 80)] = rnd.getrandbits(8)
        if rnd.random() < 0.3:
            del f[rnd.randrange(0, len(f)):]
        v = _vnet(rnd.choice([0, 1, 3, 4, 5, 0x81, rnd.getrandbits(8)]),
                  rnd.choice([0, 1, 64, 1000, 1448, 9000, rnd.getrandbits(16)]),
                  rnd.getrandbits(16) if rnd.random() < 0.3 else 0,
                  rnd.getrandbits(8),
                  rnd.choice([14, 34, 54, rnd.getrandbits(16)]),
                  rnd.choice([6, 16, rnd.getrandbits(16)]))
        mtu = rnd.choice([1500, 9000])
        r = _gso(bytes(f), v, mtu=mtu)
        if isinstance(r, list):
            n_ok += 1
            assert r and all(len(s) <= mtu + 22 for s in r)
            # Passed on (checksum completed or not), or segments with at least
            # Ethernet + IPv4 + UDP headers.
            assert (len(r) == 1 and len(r[0]) == len(f)) or all(len(s) >= 42 for s in r)
        else:
            assert r in (-22, -90)
    assert n_ok > 0


def test_set_field_rewrites_seen_on_the_wire(env):
    dp, p = env.datapath(standalone=False)
    h1, h2 = _hosts(env, 2, dp)
    env.topo.set_neighbor(h1, h2.ip, h2.mac)
    udp = Match(in_port=1, eth_type=0x0800, ip_proto=17)
    p.add_flow(0, 200, Match(in_port=1, eth_type=0x0800, ip_proto=17, udp_dst=6000),
               [apply(SetField("ip_dscp", 46), Output(2))])
    p.add_flow(0, 200, Match(in_port=1, eth_type=0x0800, ip_proto=17, udp_dst=6001),
               [apply(SetField("eth_dst", 0x020000000099), Output(2))])
    p.add_flow(0, 100, udp, [apply(Output(2))])
    rx = udp_socket(h2, 6000)
    tx = udp_sender(h1)
    with Sniffer(h2.ns, "eth0") as sn:
        try:
            tx.sendto(b"dscp", (h2.ip, 6000))
            tx.sendto(b"mac", (h2.ip, 6001))
            frames = sn.frames(wait=0.5)
            a = [f for f, _ in frames if _udp_frame_match(6000)(f)]
            b = [f for f, _ in frames if _udp_frame_match(6001)(f)]
            assert len(a) == 1 and len(b) == 1
            assert a[0][15] >> 2 == 46                          # DSCP rewritten
            assert b[0][0:6] == bytes.fromhex("020000000099")   # eth_dst rewritten
            # IP header and UDP checksums stay valid: the stack delivers it.
            assert drain(rx, expect=1) == [b"dscp"]
        finally:
            rx.close()
            tx.close()


def _mac(m: str) -> bytes:
    return bytes.fromhex(m.replace(":", ""))


def test_vlans_access_trunk_native(env):
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import Dot1Q, Ether

    dp, _ = env.datapath()
    t = env.topo
    h1 = t.add_host(env.cidr(1))
    h2 = t.add_host(env.cidr(2))
    h3 = t.add_host(env.cidr(3))
    h4 = t.add_host()               # trunk: speaks tagged frames through a raw socket
    h5 = t.add_host(env.cidr(5))    # native VLAN 10, untagged
    dp.add_port(1, name=h1.port, vlan_mode="access", tag=10)
    dp.add_port(2, name=h2.port, vlan_mode="access", tag=10)
    dp.add_port(3, name=h3.port, vlan_mode="access", tag=20)
    dp.add_port(4, name=h4.port, vlan_mode="trunk", trunks=[10, 20])
    dp.add_port(5, name=h5.port, vlan_mode="native-untagged", tag=10, trunks=[10])
    assert ping(h1, h2.ip) == 3
    assert ping(h1, h3.ip, count=2, timeout=0.3) == 0            # other VLAN
    assert ping(h5, h1.ip) == 3                                  # native: untagged = 10
    assert ping(h5, h3.ip, count=1, timeout=0.3) == 0

    # The trunk: a tagged echo request from h4 reaches h1 untagged, and the
    # reply comes back to the trunk tagged with VLAN 10.
    ip4 = env.ip(4)
    t.set_neighbor(h1, ip4, h4.mac)
    req = (Ether(src=h4.mac, dst=h1.mac) / Dot1Q(vlan=10) / IP(src=ip4, dst=h1.ip)
           / ICMP(id=0x4242, seq=1) / b"trunk")
    with Sniffer(h4.ns, "eth0") as sn4, Sniffer(h1.ns, "eth0") as sn1:
        send_raw(h4, bytes(req))
        at_h1 = sn1.frames(0.3, lambda f: f[6:12] == _mac(h4.mac))
        replies = sn4.frames(0.3, lambda f: f[6:12] == _mac(h1.mac))
    assert at_h1 and all(tci is None for _, tci in at_h1)        # untagged on access
    assert at_h1[0][0][12:14] == b"\x08\x00"
    echo = [(f, tci) for f, tci in replies if f[12:14] == b"\x08\x00" and f[23] == 1
            and f[34] == 0]
    assert echo and echo[0][1] is not None and echo[0][1] & 0xFFF == 10
    fdb = {(e.mac, e.vlan): e.port for e in dp.fdb()}
    assert fdb[(h1.mac, 10)] == 1 and fdb[(h4.mac, 10)] == 4 and fdb[(h5.mac, 10)] == 5
    assert {vlan for (_, vlan) in fdb} == {10}

    # Dropped: a VLAN the trunk does not carry; any tagged frame on an access port.
    before = dp.stats()["normal_drops"]
    bad = Ether(src=h4.mac, dst="ff:ff:ff:ff:ff:ff") / Dot1Q(vlan=30) / (b"x" * 50)
    send_raw(h4, bytes(bad))
    send_raw(h2, bytes(Ether(src=h2.mac, dst=h1.mac) / Dot1Q(vlan=10) / (b"y" * 50)))
    assert _wait(lambda: dp.stats()["normal_drops"] >= before + 2)


def test_flood_and_drop(env):
    dp, p = env.datapath(standalone=False)
    h1, h2, h3 = _hosts(env, 3, dp)
    for a in (h1, h2, h3):
        for b in (h1, h2, h3):
            if a is not b:
                env.topo.set_neighbor(a, b.ip, b.mac)
    p.add_flow(0, 100, Match(in_port=1), [apply(Output(ofp.OFPP_FLOOD))])
    p.add_flow(0, 100, Match(in_port=3), [])                     # explicit drop
    tx1, tx2, tx3 = udp_sender(h1), udp_sender(h2), udp_sender(h3)
    sn1, sn2, sn3 = Sniffer(h1.ns, "eth0"), Sniffer(h2.ns, "eth0"), Sniffer(h3.ns, "eth0")
    try:
        tx1.sendto(b"flood", (h2.ip, 7000))
        assert len(sn2.frames(0.3, _udp_frame_match(7000))) == 1
        assert len(sn3.frames(0.1, _udp_frame_match(7000))) == 1   # flooded to h3 too
        assert sn1.frames(0.05, _udp_frame_match(7000)) == []      # not back out
        before = dp.port_stats(1)["tx_packets"]
        tx2.sendto(b"miss", (h1.ip, 7001))                          # table miss
        tx3.sendto(b"drop", (h1.ip, 7002))                          # drop rule
        assert sn1.frames(0.3, lambda f: _udp_frame_match(7001)(f)
                          or _udp_frame_match(7002)(f)) == []
        assert _wait(lambda: dp.port_stats(2)["rx_packets"] >= 1
                     and dp.port_stats(3)["rx_packets"] >= 1)
        assert dp.port_stats(1)["tx_packets"] == before
    finally:
        for s in (tx1, tx2, tx3, sn1, sn2, sn3):
            s.close()


def test_malformed_frames_do_not_crash(env):
    dp, _ = env.datapath()
    h1, h2 = _hosts(env, 2, dp)
    with in_netns(h1.ns):
        raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    raw.bind(("eth0", 0))
    rnd = random.Random(7)
    try:
        sent = 0
        for n in list(range(1, 80)) + [rnd.randrange(1, 1514) for _ in range(200)]:
            frame = bytes(rnd.getrandbits(8) for _ in range(n))
            if n >= 14 and rnd.random() < 0.5:        # plausible headers, garbage after
                frame = frame[:12] + rnd.choice([b"\x08\x00", b"\x86\xdd", b"\x81\x00",
                                                 b"\x08\x06", b"\x88\x47"]) + frame[14:]
            try:
                raw.send(frame)
                sent += 1
            except OSError:
                pass
        assert sent > 100
        assert _wait(lambda: dp.port_stats(1)["rx_packets"] >= sent * 0.9)
    finally:
        raw.close()
    assert ping(h1, h2.ip) == 3                       # still alive and switching


# --- port types -------------------------------------------------------------------

def test_tap_port_in_a_namespace(env):
    dp, _ = env.datapath()
    h1 = env.topo.add_host(env.cidr(1))
    h2 = env.topo.add_host()                          # the TAP goes in here
    dp.add_port(1, name=h1.port)
    name = env.topo.name("t")
    info = dp.add_port(2, "tap", name=name)
    assert info.type == "tap" and info.name == name and info.ifindex > 0
    env.topo.move_into(name, h2, env.cidr(2))
    dp.set_port_link(2, True)
    assert ping(h1, env.ip(2)) == 3
    st = dp.port_stats(2)
    assert st["rx_packets"] >= 3 and st["tx_packets"] >= 3
    # Frames longer than the MTU the port was added with are counted and
    # dropped: raise the TAP's MTU behind the datapath's back.
    from pyroute2 import NetNS
    with NetNS(h2.ns) as n:
        (idx,) = n.link_lookup(ifname=name)
        n.link("set", index=idx, mtu=9000)
    tx = udp_sender(h2)
    try:
        tx.sendto(b"x" * 8000, (h1.ip, 9))
    finally:
        tx.close()
    assert _wait(lambda: dp.port_stats(2)["rx_oversize"] >= 1)
    assert dp.port_stats(2)["rx_dropped"] >= 1
    dp.close()                                        # removes the TAP it created
    with NetNS(h2.ns) as n:
        assert n.link_lookup(ifname=name) == []


def test_internal_port_is_local(env):
    dp, p = env.datapath(standalone=False)
    h1 = env.topo.add_host(env.cidr(1))
    h2 = env.topo.add_host()
    dp.add_port(1, name=h1.port)
    name = env.topo.name("br")
    info = dp.add_internal_port(name)
    assert info.type == "internal" and info.port_no == ofp.OFPP_LOCAL
    env.topo.move_into(name, h2, env.cidr(2))
    p.add_flow(0, 100, Match(in_port=1), [apply(Output(ofp.OFPP_LOCAL))])
    p.add_flow(0, 100, Match(in_port=ofp.OFPP_LOCAL), [apply(Output(1))])
    assert ping(h1, env.ip(2)) == 3


def test_patch_pair_joins_two_datapaths(env):
    dp1, _ = env.datapath()
    dp2, _ = env.datapath()
    h1 = env.topo.add_host(env.cidr(1))
    h2 = env.topo.add_host(env.cidr(2))
    dp1.add_port(1, name=h1.port)
    dp2.add_port(1, name=h2.port)
    patch(dp1, 10, dp2, 20)
    assert dp1.port_info(10).type == "patch" and dp1.port_info(10).peer_port == 20
    assert ping(h1, h2.ip) == 3
    assert {e.mac: e.port for e in dp1.fdb()}[h2.mac] == 10
    assert {e.mac: e.port for e in dp2.fdb()}[h1.mac] == 20
    assert dp1.port_stats(10)["tx_packets"] >= 3
    assert dp2.port_stats(20)["rx_packets"] == dp1.port_stats(10)["tx_packets"]
    assert dp1.thread_stats(0)["patch_packets"] >= 3
    # Freeing one side unhooks the other's patch port.
    dp2.close()
    assert dp1.port_info(10).peer_attached is False
    assert ping(h1, h2.ip, count=1, timeout=0.2) == 0


def test_patch_loop_is_cut_at_the_depth_limit(env):
    dp, _ = env.datapath(patch_max_depth=3)
    h1, h2 = _hosts(env, 2, dp)
    patch(dp, 10, dp, 11)                             # a loop through itself
    bcast = b"\xff" * 6 + _mac(h1.mac) + b"\x88\xb5" + b"loop" * 12
    with Sniffer(h2.ns, "eth0") as sn:
        send_raw(h1, bcast)
        copies = sn.frames(0.3, lambda f: f[12:14] == b"\x88\xb5")
    # Level 0 floods to h2 and into both patch ends; each of levels 1..3
    # (patch_max_depth) floods one copy per end to h2 again: 1 + 2 * 3.
    assert len(copies) == 7
    assert dp.stats()["patch_loop_drops"] > 0
    assert dp.thread_stats(0)["patch_loop_drops"] > 0
    # Loops break learning (no STP); without the loop the switch recovers.
    dp.del_port(10)
    dp.del_port(11)
    dp.fdb_flush()
    assert ping(h1, h2.ip) == 3


def test_afxdp_and_bad_ports_refused(env):
    dp, _ = env.datapath()
    h1 = env.topo.add_host()
    if not afxdp_available():          # built in: see the AF_XDP tests at the end
        with pytest.raises(DatapathError, match="not built"):
            dp.add_port(5, "afxdp", name=h1.port)
    dp.add_port(1, name=h1.port)
    with pytest.raises(DatapathError, match="exists"):
        dp.add_port(1, name=h1.port)
    with pytest.raises(DatapathError, match="no device"):
        dp.add_port(2, name="vtnosuchdev0")
    with pytest.raises(DatapathError, match="bad port number"):
        dp.add_port(0, name=h1.port)
    with pytest.raises(DatapathError):
        dp.del_port(7)
    assert dp.port_numbers() == [1]


# --- dynamics and counters ----------------------------------------------------------

def test_ports_added_and_removed_under_traffic(env):
    dp, _ = env.datapath(n_threads=2)
    h1, h2, h3 = _hosts(env, 3, dp)
    env.topo.set_neighbor(h1, h2.ip, h2.mac)
    stop = threading.Event()
    sent = [0]

    def blast():
        s = udp_sender(h1)
        try:
            while not stop.is_set():
                for _ in range(64):
                    try:
                        s.sendto(b"f" * 64, (h2.ip, 9999))
                        sent[0] += 1
                    except OSError:
                        pass
                time.sleep(0.0005)
        finally:
            s.close()

    th = threading.Thread(target=blast)
    th.start()
    try:
        deadline = time.monotonic() + 2.0
        cycles = 0
        while time.monotonic() < deadline:
            dp.del_port(3)
            dp.add_port(3, name=h3.port)
            if cycles % 3 == 0:
                dp.del_port(2)
                dp.add_port(2, name=h2.port)
            cycles += 1
            time.sleep(0.01)
    finally:
        stop.set()
        th.join()
    assert cycles > 20 and sent[0] > 1000
    assert dp.port_numbers() == [1, 2, 3]
    time.sleep(0.1)
    rx1 = dp.port_stats(1)["rx_packets"]
    assert 0 < rx1 <= sent[0] + 50
    assert dp.port_stats(2)["tx_packets"] <= rx1
    assert sum(t["packets"] for t in dp.thread_stats()) >= rx1
    assert ping(h1, h2.ip) == 3 and ping(h1, h3.ip) == 3


def test_port_and_thread_counters_match_what_was_sent(env):
    dp, p = env.datapath(standalone=False, n_threads=2)
    h1, h2 = _hosts(env, 2, dp)
    assert {i.thread for i in dp.ports()} == {0, 1}       # spread over the threads
    env.topo.set_neighbor(h1, h2.ip, h2.mac)
    env.topo.set_neighbor(h2, h1.ip, h1.mac)
    p.add_flow(0, 100, Match(in_port=1), [apply(Output(2))])
    p.add_flow(0, 100, Match(in_port=2), [apply(Output(1))])
    rx = udp_socket(h2, 5555)
    tx = udp_sender(h1)
    n, payload = 200, b"p" * 100
    s1, s2 = dp.port_stats(1), dp.port_stats(2)
    try:
        for _ in range(n):
            tx.sendto(payload, (h2.ip, 5555))
        got = drain(rx, expect=n)
    finally:
        rx.close()
        tx.close()
    assert len(got) == n
    frame_len = 14 + 20 + 8 + len(payload)
    assert _wait(lambda: dp.port_stats(2)["tx_packets"] - s2["tx_packets"] == n)
    a, b = dp.port_stats(1), dp.port_stats(2)
    assert a["rx_packets"] - s1["rx_packets"] == n
    assert a["rx_bytes"] - s1["rx_bytes"] == n * frame_len
    assert b["tx_bytes"] - s2["tx_bytes"] == n * frame_len
    assert a["rx_dropped"] == a["rx_errors"] == b["tx_dropped"] == b["tx_errors"] == 0
    ts = dp.thread_stats()
    assert sum(t["packets"] for t in ts) == a["rx_packets"] + b["rx_packets"]
    t1 = ts[dp.port_info(1).thread]
    assert t1["batches"] >= 1 and t1["ns_per_packet"] > 0
    assert t1["emc_hits"] + t1["megaflow_hits"] + t1["misses"] == t1["packets"]


def test_controller_upcalls_and_queue_overflow(env):
    dp, p = env.datapath(standalone=False, upcall_queue_len=4)
    h1, h2 = _hosts(env, 2, dp)
    env.topo.set_neighbor(h1, h2.ip, h2.mac)
    p.add_flow(0, 0, Match(), [apply(Output(ofp.OFPP_CONTROLLER, 128))], cookie=0xC0FFEE)
    tx = udp_sender(h1)
    fd = dp.upcall_fd
    try:
        assert select.select([fd], [], [], 0)[0] == []
        for i in range(3):
            tx.sendto(b"up%d" % i, (h2.ip, 4444))
        assert _wait(lambda: dp.stats()["upcall_queued"] == 3)
        assert select.select([fd], [], [], 0)[0] == [fd]
        ups = dp.upcalls()
        assert len(ups) == 3
        assert select.select([fd], [], [], 0)[0] == []            # empty again
        for i, u in enumerate(ups):
            assert u.in_port == 1 and u.reason == ofp.OFPR_NO_MATCH
            assert u.cookie == 0xC0FFEE and u.max_len == 128 and u.table_id == 0
            assert u.len == len(u.data) == 14 + 20 + 8 + 3
            assert u.data.endswith(b"up%d" % i) and u.data[0:6] == bytes.fromhex(
                h2.mac.replace(":", ""))
        for i in range(10):                                     # 4 fit, 6 are dropped
            tx.sendto(b"over%d" % i, (h2.ip, 4444))
        assert _wait(lambda: dp.stats()["upcall_drops"] == 6)
        assert dp.stats()["upcall_queued"] == 4
        assert dp.thread_stats(0)["upcall_drops"] == 6
        assert [u.data[-5:] for u in dp.upcalls()] == [b"over%d" % i for i in range(4)]
    finally:
        tx.close()


def test_packet_out(env):
    dp, p = env.datapath(standalone=False)
    h1, h2 = _hosts(env, 2, dp)
    p.add_flow(0, 100, Match(in_port=1), [apply(Output(2))])
    dst = bytes.fromhex(h2.mac.replace(":", ""))
    frame = dst + bytes.fromhex("020000000001") + b"\x88\xb5" + b"packet-out" + b"\0" * 40
    with Sniffer(h2.ns, "eth0") as sn:
        dp.packet_out(ofp.OFPP_CONTROLLER, [Output(2)], frame)
        dp.packet_out(ofp.OFPP_CONTROLLER,
                      [SetField("eth_src", 0x0200000000AA), Output(2)], frame)
        dp.packet_out(1, [Output(ofp.OFPP_TABLE)], frame)        # through the pipeline
        got = [f for f, _ in sn.frames(0.3, lambda f: f[12:14] == b"\x88\xb5")]
    assert len(got) == 3
    assert got[0] == frame and got[2] == frame
    assert got[1][6:12] == bytes.fromhex("0200000000aa")
    with pytest.raises(ofp.OFError):
        dp.packet_out(1, [Output(0)], frame)                    # port 0 is refused


def test_idle_datapath_uses_no_cpu(env):
    dp, _ = env.datapath(n_threads=2)
    _hosts(env, 2, dp)
    time.sleep(0.3)
    c0, w0 = time.process_time(), time.monotonic()
    time.sleep(2.0)
    cpu = (time.process_time() - c0) / (time.monotonic() - w0)
    assert cpu < 0.05, f"idle datapath used {cpu:.1%} of a core"
    assert all(t["sleeps"] >= 1 for t in dp.thread_stats())


# --- AF_XDP ports ----------------------------------------------------------------------
# `afxdp` ports exist only when the C core was built with libxdp and libbpf
# (build_core.py detects them); the traffic tests skip otherwise and say why.

from pyroute2 import IPRoute  # noqa: E402

from vswitch.datapath import AFXDP_AVAILABLE  # noqa: E402

_NO_AFXDP = ("AF_XDP ports not built: vswitch was built without libxdp "
             "(install libxdp-dev and libbpf-dev and rebuild)")
needs_afxdp = pytest.mark.skipif(not afxdp_available(), reason=_NO_AFXDP)


def _xdp_prog(ifname: str) -> tuple[int, str | None]:
    """(program id, attach mode) of the XDP program on a root-namespace
    device; (0, None) when there is none."""
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        xdp = ipr.get_links(idx[0])[0].get_attr("IFLA_XDP") if idx else None
    if not xdp or not xdp.get_attr("IFLA_XDP_PROG_ID"):
        return 0, None
    return xdp.get_attr("IFLA_XDP_PROG_ID"), xdp.get_attr("IFLA_XDP_ATTACHED")


def test_afxdp_availability_and_not_built_error(env):
    assert afxdp_available() is AFXDP_AVAILABLE
    dp, _ = env.datapath()
    h1 = env.topo.add_host()
    if not afxdp_available():
        # The refusal says why and what to do.
        with pytest.raises(DatapathError, match="not built") as ei:
            dp.add_port(1, "afxdp", name=h1.port)
        assert "built without libxdp (install libxdp-dev and libbpf-dev and rebuild)" in str(
            ei.value)
        assert dp.port_numbers() == []
        return
    info = dp.add_port(1, "afxdp", name=h1.port)
    assert info.type == "afxdp" and info.name == h1.port and info.queue == 0
    assert info.xdp_mode in ("native", "generic") and info.thread == 0
    # Errors: no such device, no such queue (veth has one), bad mode; nothing
    # is left behind by a failed add.
    h2 = env.topo.add_host()
    with pytest.raises(DatapathError, match="no device"):
        dp.add_port(2, "afxdp", name="vtnosuchdev0")
    with pytest.raises(DatapathError, match="queue 7"):
        dp.add_port(2, "afxdp", name=h2.port, queue=7)
    assert _xdp_prog(h2.port) == (0, None)
    with pytest.raises(KeyError):
        dp.add_port(2, "afxdp", name=h2.port, xdp_mode="offload")
    assert dp.port_numbers() == [1]


@needs_afxdp
@pytest.mark.parametrize("xdp_mode", ["auto", "generic"])
def test_afxdp_hosts_ping_and_exchange_udp(env, xdp_mode):
    dp, _ = env.datapath()
    h1 = env.topo.add_host(env.cidr(1))
    h2 = env.topo.add_host(env.cidr(2))
    i1 = dp.add_port(1, "afxdp", name=h1.port, xdp_mode=xdp_mode)
    dp.add_port(2, "afxdp", name=h2.port, xdp_mode=xdp_mode)
    if xdp_mode == "generic":
        assert i1.xdp_mode == "generic"
    prog, mode = _xdp_prog(h1.port)
    assert prog and mode == {"native": "xdp", "generic": "xdpgeneric"}[i1.xdp_mode]
    assert ping(h1, h2.ip) == 3
    assert ping(h2, h1.ip) == 3
    rx = udp_socket(h2, 5001)
    tx = udp_sender(h1)
    try:
        for i in range(200):
            tx.sendto(b"xdp datagram %d" % i, (h2.ip, 5001))
        got = drain(rx, expect=200)
        # The veth sender leaves UDP checksums to offload; XDP does not say
        # so: the port completes them, or the receiver would drop them.
        assert sorted(got) == sorted(b"xdp datagram %d" % i for i in range(200))
    finally:
        rx.close()
        tx.close()
    a, b = dp.port_stats(1), dp.port_stats(2)
    assert a["rx_packets"] >= 203 and b["tx_packets"] >= 203
    assert a["rx_errors"] == a["rx_dropped"] == b["tx_errors"] == b["tx_dropped"] == 0
    assert {e.mac: e.port for e in dp.fdb()} == {h1.mac: 1, h2.mac: 2}
    # Clean removal: the XDP program goes with the last socket on the device.
    dp.del_port(1)
    assert _xdp_prog(h1.port) == (0, None)
    assert _xdp_prog(h2.port)[0]
    dp.close()
    assert _xdp_prog(h2.port) == (0, None)


@needs_afxdp
def test_afxdp_mixed_with_system_ports(env):
    dp, _ = env.datapath(n_threads=2)
    h1 = env.topo.add_host(env.cidr(1))
    h2 = env.topo.add_host(env.cidr(2))
    h3 = env.topo.add_host(env.cidr(3))
    dp.add_port(1, "afxdp", name=h1.port)
    dp.add_port(2, "system", name=h2.port)
    dp.add_port(3, "afxdp", name=h3.port, xdp_mode="generic")
    for a, b in ((h1, h2), (h2, h3), (h3, h1)):
        assert ping(a, b.ip) == 3
    # UDP both ways between an afxdp and a system port.
    for src, dst in ((h1, h2), (h2, h1)):
        rx = udp_socket(dst, 5002)
        tx = udp_sender(src)
        try:
            for i in range(100):
                tx.sendto(b"mixed %d" % i, (dst.ip, 5002))
            assert len(drain(rx, expect=100)) == 100
        finally:
            rx.close()
            tx.close()
    # TCP, 1 MiB, afxdp (generic mode) -> system: many tx/rx ring cycles.
    # Generic XDP, like the system port, cannot take 64 KiB super-frames.
    disable_segmentation_offload(h3)
    disable_segmentation_offload(h2)
    with in_netns(h2.ns):
        ls = socket.socket()
    ls.bind((h2.ip, 5202))
    ls.listen(1)
    got = bytearray()

    def serve():
        c, _ = ls.accept()
        c.settimeout(5)
        with c:
            while data := c.recv(65536):
                got.extend(data)

    th = threading.Thread(target=serve)
    th.start()
    blob = os.urandom(1 << 20)
    try:
        with in_netns(h3.ns):
            c = socket.socket()
        with c:
            c.settimeout(5)
            c.connect((h2.ip, 5202))
            c.sendall(blob)
    finally:
        th.join(10)
        ls.close()
    assert bytes(got) == blob
    assert dp.port_stats(3)["rx_packets"] > 700
    assert dp.port_stats(3)["rx_oversize"] == 0


@needs_afxdp
def test_afxdp_ports_added_and_removed_under_traffic(env):
    dp, _ = env.datapath(n_threads=2)
    h1, h2, h3, h4 = (env.topo.add_host(env.cidr(i + 1)) for i in range(4))
    # Senders on both threads transmit to port 2 at once (its tx lock).
    dp.add_port(1, "afxdp", name=h1.port, thread=0)
    dp.add_port(2, "afxdp", name=h2.port, thread=1)
    dp.add_port(3, "afxdp", name=h3.port, thread=1)
    dp.add_port(4, "afxdp", name=h4.port, thread=0)
    for h in (h1, h3):
        env.topo.set_neighbor(h, h2.ip, h2.mac)
    assert ping(h2, h1.ip) == 3 and ping(h2, h3.ip) == 3       # learn every MAC
    stop = threading.Event()
    sent = [0, 0]

    def blast(h, k):
        s = udp_sender(h)
        try:
            while not stop.is_set():
                for _ in range(64):
                    try:
                        s.sendto(b"x" * 64, (h2.ip, 9999))
                        sent[k] += 1
                    except OSError:
                        pass
                time.sleep(0.0005)
        finally:
            s.close()

    ths = [threading.Thread(target=blast, args=(h, k)) for k, h in enumerate((h1, h3))]
    for th in ths:
        th.start()
    try:
        deadline = time.monotonic() + 2.5
        cycles = 0
        while time.monotonic() < deadline:
            dp.del_port(4)
            assert _xdp_prog(h4.port) == (0, None)
            dp.add_port(4, "afxdp", name=h4.port)
            if cycles % 3 == 0:
                dp.del_port(2)
                dp.add_port(2, "afxdp", name=h2.port, thread=1)
            cycles += 1
    finally:
        stop.set()
        for th in ths:
            th.join()
    assert cycles >= 5 and sum(sent) > 1000
    assert dp.port_numbers() == [1, 2, 3, 4]
    time.sleep(0.1)
    rx = dp.port_stats(1)["rx_packets"] + dp.port_stats(3)["rx_packets"]
    assert 0 < rx <= sum(sent) + 100
    assert dp.port_stats(2)["tx_packets"] <= rx
    assert dp.port_stats(1)["rx_errors"] == dp.port_stats(3)["rx_errors"] == 0
    assert ping(h1, h2.ip) == 3 and ping(h1, h4.ip) == 3 and ping(h4, h3.ip) == 3
