"""Tests for the C frame parser (vs_parse in vswitch/_fastpath/parse.c).

The rules checked here are the ones in docs/parsing.md.  Every check compares
the whole 152-byte key (every field not named in the expectation must be
zero) and the whole struct vs_layers.
"""

from __future__ import annotations

import ctypes
import mmap
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import ARP, LLC, Dot1Q, Dot3, Ether
from scapy.layers.sctp import SCTP
from vswitch._fastpath._core import ffi, lib

NO = 0xFFFF
MAC1 = "02:00:00:00:00:01"
MAC2 = "02:00:00:00:00:02"
MAC1_I = 0x020000000001
MAC2_I = 0x020000000002
IP4A, IP4B = "10.0.0.1", "192.168.1.2"
IP4A_I, IP4B_I = 0x0A000001, 0xC0A80102
IP6A, IP6B = "2001:db8::1", "2001:db8::2"
IP6A_I = 0x20010DB8000000000000000000000001
IP6B_I = 0x20010DB8000000000000000000000002

FRAG_ANY, FRAG_LATER = lib.VS_FRAG_ANY, lib.VS_FRAG_LATER
IEH = {
    "NONEXT": lib.VS_IEH_NONEXT, "ESP": lib.VS_IEH_ESP, "AUTH": lib.VS_IEH_AUTH,
    "DEST": lib.VS_IEH_DEST, "FRAG": lib.VS_IEH_FRAG, "ROUTER": lib.VS_IEH_ROUTER,
    "HOP": lib.VS_IEH_HOP, "UNREP": lib.VS_IEH_UNREP, "UNSEQ": lib.VS_IEH_UNSEQ,
}

# ---------------------------------------------------------------------------
# Helpers


def _field_table() -> dict[str, tuple[int, int]]:
    table = {}
    for i in range(lib.VS_N_FIELDS):
        f = lib.vs_fields[i]
        table[ffi.string(f.name).decode()] = (f.offset, f.len)
    # Key members by their own names too (tp_src, nd_sll, vlan2_tci, pad...).
    for name, fld in ffi.typeof("struct vs_key").fields:
        size = ffi.sizeof(fld.type)
        if (fld.offset, size) not in table.values() or name not in table:
            table.setdefault(name, (fld.offset, size))
    return table


FIELDS = _field_table()
LAYER_NAMES = ("l2_5", "l3", "l4", "vlan", "n_vlan", "l3_ok", "l4_ok", "pad")


class _GuardedBuffer:
    """A page followed by an inaccessible page.  A frame placed so that it
    ends exactly at the boundary makes any read past data[len-1] fault."""

    def __init__(self) -> None:
        self.page = mmap.PAGESIZE
        self.mm = mmap.mmap(-1, 2 * self.page, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        self.anchor = ctypes.c_char.from_buffer(self.mm)
        self.base = ctypes.addressof(self.anchor)
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        if libc.mprotect(self.base + self.page, self.page, 0) != 0:   # PROT_NONE
            raise OSError(ctypes.get_errno(), "mprotect")

    def place(self, frame: bytes):
        assert len(frame) <= self.page
        addr = self.base + self.page - len(frame)
        ctypes.memmove(addr, frame, len(frame))
        return ffi.cast("uint8_t *", addr)


GUARD = _GuardedBuffer()


def _parse_ptr(ptr, n: int, in_port: int) -> tuple[bytes, dict]:
    key = ffi.new("struct vs_key *")
    layers = ffi.new("struct vs_layers *")
    # Poison the outputs: vs_parse must set every byte itself.
    ffi.memmove(key, b"\xa5" * ffi.sizeof(key[0]), ffi.sizeof(key[0]))
    ffi.memmove(layers, b"\xa5" * ffi.sizeof(layers[0]), ffi.sizeof(layers[0]))
    assert lib.vs_parse(ptr, n, in_port, key, layers) == 0
    return bytes(ffi.buffer(key)), {name: getattr(layers, name) for name in LAYER_NAMES}


def _raw_parse(frame: bytes, in_port: int = 1) -> tuple[bytes, dict]:
    """Parse with the frame ending at a guard page (over-reads fault)."""
    return _parse_ptr(GUARD.place(frame), len(frame), in_port)


def _raw_parse_bytes(frame: bytes, in_port: int = 1) -> tuple[bytes, dict]:
    """Parse straight from the Python bytes object."""
    return _parse_ptr(ffi.from_buffer(frame), len(frame), in_port)


def parse(frame: bytes, in_port: int = 1) -> tuple[dict, dict]:
    """Parse `frame`; return ({field name: int}, {layer name: int})."""
    raw, layers = _raw_parse(frame, in_port)
    fields = {n: int.from_bytes(raw[o:o + ln], "big") for n, (o, ln) in FIELDS.items()}
    return fields, layers


def _key_bytes(fields: dict) -> bytes:
    buf = bytearray(ffi.sizeof("struct vs_key"))
    for name, value in fields.items():
        off, ln = FIELDS[name]
        buf[off:off + ln] = value.to_bytes(ln, "big")
    return bytes(buf)


def _want_present(n: int, layers: dict, fields: dict) -> int:
    """key.present as implied by the frame length, layers and ND fields."""
    p = lib.VS_PRESENT_L2 if n >= 14 else 0
    p |= lib.VS_PRESENT_L3 if layers["l3"] != NO else 0
    p |= lib.VS_PRESENT_L4 if layers["l4"] != NO else 0
    if fields.get("eth_type") == 0x86DD:
        p |= lib.VS_PRESENT_ND if "ipv6_nd_target" in fields else 0
        p |= lib.VS_PRESENT_ND_SLL if "ipv6_nd_sll" in fields else 0
        p |= lib.VS_PRESENT_ND_TLL if "ipv6_nd_tll" in fields else 0
    return p


def check(frame: bytes, *, in_port: int = 1, l2_5: int = NO, l3: int = NO,
          l4: int = NO, vlan: int = NO, n_vlan: int = 0, **fields: int) -> None:
    """Parse and compare the whole key and all layers with the expectation.

    Fields not given must be zero; l3_ok/l4_ok follow from l3/l4 (ARP and
    IPv4/IPv6 set l3_ok, every L4 sets l4_ok); key.present follows from the
    layers and the ND fields given unless `present` is passed."""
    raw, layers = _raw_parse(frame, in_port)
    want_layers = {"l2_5": l2_5, "l3": l3, "l4": l4, "vlan": vlan,
                   "n_vlan": n_vlan, "l3_ok": int(l3 != NO),
                   "l4_ok": int(l4 != NO), "pad": 0}
    fields.setdefault("present", _want_present(len(frame), want_layers, fields))
    want = _key_bytes({"in_port": in_port, **fields})
    if raw != want:
        diffs = {}
        for name, (off, ln) in FIELDS.items():
            if raw[off:off + ln] != want[off:off + ln]:
                diffs[name] = (hex(int.from_bytes(raw[off:off + ln], "big")),
                               hex(int.from_bytes(want[off:off + ln], "big")))
        pytest.fail(f"key fields differ (got, want): {diffs}")
    assert layers == want_layers


def eth(type_: int | None = None) -> Ether:
    if type_ is None:
        return Ether(dst=MAC1, src=MAC2)
    return Ether(dst=MAC1, src=MAC2, type=type_)


L2 = {"eth_dst": MAC1_I, "eth_src": MAC2_I}


def ip4_fields(proto: int, **kw: int) -> dict:
    d = {**L2, "eth_type": 0x0800, "ipv4_src": IP4A_I, "ipv4_dst": IP4B_I,
         "ip_proto": proto, "ip_ttl": 64}
    d.update(kw)
    return d


def ip6_fields(proto: int, **kw: int) -> dict:
    d = {**L2, "eth_type": 0x86DD, "ipv6_src": IP6A_I, "ipv6_dst": IP6B_I,
         "ip_proto": proto, "ip_ttl": 64}
    d.update(kw)
    return d


def ip4(**kw) -> IP:
    return IP(src=IP4A, dst=IP4B, **kw)


def ip6(**kw) -> IPv6:
    return IPv6(src=IP6A, dst=IP6B, **kw)


def b(pkt) -> bytes:
    return bytes(pkt)


# ---------------------------------------------------------------------------
# Field descriptor table


def test_field_table() -> None:
    names = [ffi.string(lib.vs_fields[i].name).decode() for i in range(lib.VS_N_FIELDS)]
    assert names[lib.VS_F_IN_PORT] == "in_port"
    assert names[lib.VS_F_ETH_DST] == "eth_dst"
    assert names[lib.VS_F_TCP_DST] == "tcp_dst"
    assert names[lib.VS_F_IPV6_EXTHDR] == "ipv6_exthdr"
    assert names[lib.VS_F_IP_TTL] == "ip_ttl"
    assert len(set(names)) == lib.VS_N_FIELDS
    # Shared storage.
    assert FIELDS["tcp_src"] == FIELDS["udp_src"] == FIELDS["sctp_src"]
    assert FIELDS["arp_spa"] == FIELDS["ipv4_src"]
    assert FIELDS["arp_sha"] == FIELDS["ipv6_nd_sll"]
    assert FIELDS["icmpv4_type"] == FIELDS["icmpv6_type"]
    for i in range(lib.VS_N_FIELDS):
        f = lib.vs_fields[i]
        assert 1 <= f.len <= 16
        assert f.offset + f.len <= lib.VS_KEY_SIZE
        assert f.maskable in (0, 1)
        vb = bytes(f.valid_bits)
        assert any(vb[:f.len]) and not any(vb[f.len:])
    vb = {names[i]: int.from_bytes(bytes(lib.vs_fields[i].valid_bits)[:lib.vs_fields[i].len], "big")
          for i in range(lib.VS_N_FIELDS)}
    assert vb["vlan_vid"] == 0x1FFF
    assert vb["vlan_pcp"] == 0x07
    assert vb["ip_dscp"] == 0x3F
    assert vb["ip_ecn"] == 0x03
    assert vb["ipv6_flabel"] == 0xFFFFF
    assert vb["mpls_label"] == 0xFFFFF
    assert vb["mpls_bos"] == 0x01
    assert vb["ipv6_exthdr"] == 0x1FF
    assert vb["tcp_flags"] == 0xFFF
    assert vb["ip_frag"] == 0x03
    assert vb["pbb_isid"] == 0xFFFFFF
    mask = {names[i]: lib.vs_fields[i].maskable for i in range(lib.VS_N_FIELDS)}
    assert mask["eth_dst"] and mask["ipv4_src"] and mask["vlan_vid"] and mask["metadata"]
    assert not mask["in_port"] and not mask["eth_type"] and not mask["tcp_dst"]


# ---------------------------------------------------------------------------
# Ethernet, VLAN, 802.3


def test_short_frames() -> None:
    for n in range(14):
        check(b"\xff" * n, in_port=0xFFFFFFFE)


def test_in_port_only_metadata_zero() -> None:
    fields, _ = parse(b(eth(0x1234) / b"payload"), in_port=0x01020304)
    assert fields["in_port"] == 0x01020304
    assert fields["in_phy_port"] == fields["metadata"] == fields["tunnel_id"] == 0
    assert fields["pbb_isid"] == 0


def test_ethernet() -> None:
    check(b(eth(0x1234) / b"xyz"), **L2, eth_type=0x1234)
    check(b(eth(0x1234)), **L2, eth_type=0x1234)           # exactly 14 bytes
    check(b(eth(0x0600)), **L2, eth_type=0x0600)           # smallest ethertype


def test_8023_length_frame() -> None:
    frame = b(Dot3(dst=MAC1, src=MAC2) / LLC() / b"data")
    assert frame[12:14] == b"\x00\x07"
    check(frame, **L2, eth_type=0x05FF)
    check(b(eth(0x05FF) / b"x"), **L2, eth_type=0x05FF)
    check(b(eth(0x0000)), **L2, eth_type=0x05FF)
    # After a VLAN tag as well.
    frame = b(eth() / Dot1Q(vlan=5, type=0x0020) / b"llc....")
    check(frame, **L2, eth_type=0x05FF, vlan_vid=0x1005, vlan_tpid=0x8100,
          vlan=12, n_vlan=1)


def test_8021q() -> None:
    frame = b(eth() / Dot1Q(vlan=100, prio=5, dei=1) / ip4() / UDP(sport=1000, dport=53))
    check(frame, **ip4_fields(17, tp_src=1000, tp_dst=53), vlan_vid=0x1000 | 100,
          vlan_pcp=5, vlan_tpid=0x8100, vlan=12, n_vlan=1, l3=18, l4=38)
    # VID 0 (priority tag) is still a tag.
    frame = b(eth() / Dot1Q(vlan=0, prio=7, type=0x0800) / (b"\x00" * 4))
    check(frame, **L2, eth_type=0x0800, vlan_vid=0x1000, vlan_pcp=7,
          vlan_tpid=0x8100, vlan=12, n_vlan=1)
    # VID 0xfff, 802.1ad TPID on a single tag.
    frame = b(eth(0x88A8) / Dot1Q(vlan=0xFFF, prio=1, type=0x1234))
    check(frame, **L2, eth_type=0x1234, vlan_vid=0x1FFF, vlan_pcp=1,
          vlan_tpid=0x88A8, vlan=12, n_vlan=1)


def test_qinq() -> None:
    frame = b(eth(0x88A8) / Dot1Q(vlan=10, prio=3) / Dot1Q(vlan=20, prio=6, dei=1)
              / ip4() / TCP(sport=1, dport=2, flags="S"))
    check(frame, **ip4_fields(6, tp_src=1, tp_dst=2, tcp_flags=0x002),
          vlan_vid=0x100A, vlan_pcp=3, vlan_tpid=0x88A8,
          vlan2_tci=(6 << 13) | 0x1000 | 20, vlan=12, n_vlan=2, l3=22, l4=42)
    # 0x8100 outer, 0x8100 inner; inner DEI/CFI clear, VID 0.
    frame = b(eth() / Dot1Q(vlan=1) / Dot1Q(vlan=0, prio=0, type=0x1234))
    check(frame, **L2, eth_type=0x1234, vlan_vid=0x1001, vlan_tpid=0x8100,
          vlan2_tci=0x1000, vlan=12, n_vlan=2)


def test_third_tag_not_parsed() -> None:
    frame = b(eth(0x88A8) / Dot1Q(vlan=1, prio=2) / Dot1Q(vlan=2, prio=3)
              / Dot1Q(vlan=3) / ip4() / UDP())
    check(frame, **L2, eth_type=0x8100, vlan_vid=0x1001, vlan_pcp=2,
          vlan_tpid=0x88A8, vlan2_tci=0x1000 | (3 << 13) | 2, vlan=12, n_vlan=2)
    frame = b(eth() / Dot1Q(vlan=1) / Dot1Q(vlan=2, type=0x88A8) / (b"\x00" * 30))
    check(frame, **L2, eth_type=0x88A8, vlan_vid=0x1001, vlan_tpid=0x8100,
          vlan2_tci=0x1002, vlan=12, n_vlan=2)


def test_truncated_tags() -> None:
    base = b(eth() / Dot1Q(vlan=7) / Dot1Q(vlan=8, type=0x0800))
    for n in range(14, 18):      # outer tag incomplete
        check(base[:n], **L2, eth_type=0x8100)
    for n in range(18, 22):      # inner tag incomplete
        check(base[:n], **L2, eth_type=0x8100, vlan_vid=0x1007,
              vlan_tpid=0x8100, vlan=12, n_vlan=1)
    check(base, **L2, eth_type=0x0800, vlan_vid=0x1007, vlan_tpid=0x8100,
          vlan2_tci=0x1008, vlan=12, n_vlan=2)


# ---------------------------------------------------------------------------
# ARP


def test_arp_request_reply() -> None:
    req = b(eth() / ARP(op=1, hwsrc="aa:bb:cc:dd:ee:01", psrc=IP4A,
                        hwdst="00:00:00:00:00:00", pdst=IP4B))
    check(req, **L2, eth_type=0x0806, arp_op=1, arp_spa=IP4A_I, arp_tpa=IP4B_I,
          arp_sha=0xAABBCCDDEE01, l3=14)
    rep = b(eth() / ARP(op=2, hwsrc="aa:bb:cc:dd:ee:02", psrc=IP4B,
                        hwdst="aa:bb:cc:dd:ee:01", pdst=IP4A) / (b"\x00" * 18))
    check(rep, **L2, eth_type=0x0806, arp_op=2, arp_spa=IP4B_I, arp_tpa=IP4A_I,
          arp_sha=0xAABBCCDDEE02, arp_tha=0xAABBCCDDEE01, l3=14)
    # Any 16-bit opcode is kept.
    frame = bytearray(req)
    frame[20:22] = b"\x12\x34"
    check(bytes(frame), **L2, eth_type=0x0806, arp_op=0x1234, arp_spa=IP4A_I,
          arp_tpa=IP4B_I, arp_sha=0xAABBCCDDEE01, l3=14)
    # Behind a VLAN tag.
    frame = b(eth() / Dot1Q(vlan=3) / ARP(op=1, hwsrc=MAC2, psrc=IP4A, pdst=IP4B))
    check(frame, **L2, eth_type=0x0806, arp_op=1, arp_spa=IP4A_I, arp_tpa=IP4B_I,
          arp_sha=MAC2_I, vlan_vid=0x1003, vlan_tpid=0x8100, vlan=12, n_vlan=1, l3=18)


@pytest.mark.parametrize("pos,value", [
    (14, b"\x00\x06"),    # htype 6 (IEEE 802)
    (16, b"\x86\xdd"),    # ptype IPv6
    (18, b"\x08"),        # hlen 8
    (19, b"\x10"),        # plen 16
])
def test_arp_malformed(pos: int, value: bytes) -> None:
    frame = bytearray(b(eth() / ARP(op=1, hwsrc=MAC2, psrc=IP4A, pdst=IP4B)))
    frame[pos:pos + len(value)] = value
    check(bytes(frame), **L2, eth_type=0x0806)


def test_arp_truncated() -> None:
    frame = b(eth() / ARP(op=1, hwsrc=MAC2, psrc=IP4A, pdst=IP4B))
    assert len(frame) == 42
    check(frame[:41], **L2, eth_type=0x0806)


# ---------------------------------------------------------------------------
# IPv4


def test_ipv4_basic_and_tos_ttl() -> None:
    frame = b(eth() / ip4(tos=0xB9, ttl=7) / (b"\x00" * 8))
    check(frame, **ip4_fields(0, ip_dscp=0x2E, ip_ecn=1, ip_ttl=7), l3=14)
    frame = b(eth() / ip4(tos=0xFF, ttl=255, proto=200) / b"x")
    check(frame, **ip4_fields(200, ip_dscp=0x3F, ip_ecn=3, ip_ttl=255), l3=14)


def test_ipv4_options() -> None:
    frame = b(eth() / ip4(options=[IPOption_NOP()] * 8) / UDP(sport=7, dport=9))
    assert frame[14] == 0x47
    check(frame, **ip4_fields(17, tp_src=7, tp_dst=9), l3=14, l4=14 + 28)
    frame = b(eth() / ip4(ihl=15, options=[IPOption_NOP()] * 40) / TCP(sport=5, dport=6, flags=0))
    check(frame, **ip4_fields(6, tp_src=5, tp_dst=6), l3=14, l4=14 + 60)


def test_ipv4_fragments() -> None:
    first = b(eth() / ip4(flags="MF", frag=0, proto=17) / UDP(sport=1, dport=2) / (b"x" * 16))
    check(first, **ip4_fields(17, ip_frag=FRAG_ANY, tp_src=1, tp_dst=2), l3=14, l4=34)
    later = b(eth() / ip4(flags="MF", frag=100, proto=17) / UDP(sport=1, dport=2))
    check(later, **ip4_fields(17, ip_frag=FRAG_ANY | FRAG_LATER), l3=14)
    last = b(eth() / ip4(flags=0, frag=1, proto=6) / TCP())
    check(last, **ip4_fields(6, ip_frag=FRAG_ANY | FRAG_LATER), l3=14)
    df = b(eth() / ip4(flags="DF") / UDP(sport=1, dport=2))
    check(df, **ip4_fields(17, tp_src=1, tp_dst=2), l3=14, l4=34)
    # The reserved (evil) bit is not a fragment bit.
    evil = b(eth() / ip4(flags="evil") / UDP(sport=1, dport=2))
    check(evil, **ip4_fields(17, tp_src=1, tp_dst=2), l3=14, l4=34)


@pytest.mark.parametrize("mutate", [
    lambda f: f.__setitem__(14, 0x44),                    # IHL 4
    lambda f: f.__setitem__(14, 0x40),                    # IHL 0
    lambda f: f.__setitem__(14, 0x55),                    # version 5
    lambda f: f.__setitem__(14, 0x65),                    # version 6
    lambda f: f.__setitem__(slice(16, 18), b"\x00\x13"),  # tot_len 19 < 20
    lambda f: f.__setitem__(slice(16, 18), b"\x00\x00"),  # tot_len 0
    lambda f: f.__setitem__(14, 0x4F),                    # IHL 15 > frame
])
def test_ipv4_invalid(mutate) -> None:
    frame = bytearray(b(eth() / ip4() / UDP(sport=1, dport=2)))
    mutate(frame)
    check(bytes(frame), **L2, eth_type=0x0800)


def test_ipv4_short_header() -> None:
    frame = b(eth() / ip4() / UDP())
    for n in range(14, 34):
        check(frame[:n], **L2, eth_type=0x0800)
    # IHL 6 but only 20 header bytes present.
    frame = bytearray(b(eth() / ip4()))
    frame[14] = 0x46
    check(bytes(frame), **L2, eth_type=0x0800)


def test_ipv4_tot_len_and_padding() -> None:
    # Minimum-size frame: L2 padding after tot_len is ignored.
    frame = b(eth() / ip4() / UDP(sport=10, dport=20)) + b"\xee" * 18
    check(frame, **ip4_fields(17, tp_src=10, tp_dst=20), l3=14, l4=34)
    # tot_len exactly the IP header: no L4 even though the bytes are there.
    frame = bytearray(b(eth() / ip4() / TCP(sport=1, dport=2)))
    frame[16:18] = b"\x00\x14"
    check(bytes(frame), **ip4_fields(6), l3=14)
    # tot_len covers only 19 bytes of TCP.
    frame[16:18] = struct.pack("!H", 20 + 19)
    check(bytes(frame), **ip4_fields(6), l3=14)
    frame[16:18] = struct.pack("!H", 20 + 20)
    check(bytes(frame), **ip4_fields(6, tp_src=1, tp_dst=2, tcp_flags=2), l3=14, l4=34)
    # tot_len larger than the frame (truncated capture): L4 still parsed.
    frame[16:18] = b"\x05\xdc"
    check(bytes(frame), **ip4_fields(6, tp_src=1, tp_dst=2, tcp_flags=2), l3=14, l4=34)


# ---------------------------------------------------------------------------
# L4 over IPv4


def test_tcp_flags() -> None:
    for flags, want in [("S", 0x002), ("SA", 0x012), ("FPU", 0x029),
                        ("E", 0x040), ("C", 0x080), ("N", 0x100), (0x1FF, 0x1FF)]:
        frame = b(eth() / ip4() / TCP(sport=443, dport=50000, flags=flags))
        check(frame, **ip4_fields(6, tp_src=443, tp_dst=50000, tcp_flags=want), l3=14, l4=34)
    # Reserved bits are within the 12 bits; data offset is not.
    frame = b(eth() / ip4() / TCP(sport=1, dport=2, reserved=7, flags=0x1FF))
    check(frame, **ip4_fields(6, tp_src=1, tp_dst=2, tcp_flags=0xFFF), l3=14, l4=34)


def test_tcp_bad() -> None:
    frame = bytearray(b(eth() / ip4() / TCP(sport=1, dport=2)))
    frame[46] = 0x40                                   # data offset 4
    check(bytes(frame), **ip4_fields(6), l3=14)
    frame = b(eth() / ip4() / TCP(sport=1, dport=2))
    check(frame[:-1], **ip4_fields(6), l3=14)         # 19 bytes of TCP
    # Data offset larger than the segment is accepted (only >= 5 is checked).
    frame = bytearray(frame)
    frame[46] = 0xF0
    check(bytes(frame), **ip4_fields(6, tp_src=1, tp_dst=2, tcp_flags=2), l3=14, l4=34)


def test_udp_sctp_icmp() -> None:
    frame = b(eth() / ip4() / UDP(sport=68, dport=67))
    check(frame, **ip4_fields(17, tp_src=68, tp_dst=67), l3=14, l4=34)
    check(frame[:-1], **ip4_fields(17), l3=14)
    frame = b(eth() / ip4() / SCTP(sport=3868, dport=2905))
    check(frame, **ip4_fields(132, tp_src=3868, tp_dst=2905), l3=14, l4=34)
    check(frame[:34 + 11], **ip4_fields(132), l3=14)
    frame = b(eth() / ip4() / ICMP(type=8, code=0))
    check(frame, **ip4_fields(1, icmpv4_type=8), l3=14, l4=34)
    frame = b(eth() / ip4() / ICMP(type=3, code=13))
    check(frame, **ip4_fields(1, icmpv4_type=3, icmpv4_code=13), l3=14, l4=34)
    check(frame[:37], **ip4_fields(1), l3=14)
    check(frame[:38], **ip4_fields(1, icmpv4_type=3, icmpv4_code=13), l3=14, l4=34)


def test_icmp_family_mismatch() -> None:
    frame = b(eth() / ip4(proto=58) / ICMPv6EchoRequest())
    check(frame, **ip4_fields(58), l3=14)
    frame = b(eth() / ip6(nh=1) / ICMP(type=8))
    check(frame, **ip6_fields(1), l3=14)


def test_unknown_l4() -> None:
    frame = b(eth() / ip4(proto=47) / (b"\x00" * 40))
    check(frame, **ip4_fields(47), l3=14)


# ---------------------------------------------------------------------------
# IPv6


def test_ipv6_basic() -> None:
    frame = b(eth() / ip6(tc=0xB9, fl=0x12345, hlim=7) / UDP(sport=546, dport=547))
    check(frame, **ip6_fields(17, ip_dscp=0x2E, ip_ecn=1, ip_ttl=7,
                              ipv6_flabel=0x12345, tp_src=546, tp_dst=547), l3=14, l4=54)
    frame = b(eth() / ip6(tc=0xFF, fl=0xFFFFF, hlim=255) / TCP(sport=1, dport=2, flags="A"))
    check(frame, **ip6_fields(6, ip_dscp=0x3F, ip_ecn=3, ip_ttl=255,
                              ipv6_flabel=0xFFFFF, tp_src=1, tp_dst=2, tcp_flags=0x10),
          l3=14, l4=54)
    frame = b(eth() / ip6() / SCTP(sport=9, dport=10))
    check(frame, **ip6_fields(132, tp_src=9, tp_dst=10), l3=14, l4=54)


def test_ipv6_invalid() -> None:
    frame = bytearray(b(eth() / ip6() / UDP()))
    frame[14] = 0x40 | (frame[14] & 0x0F)             # version 4
    check(bytes(frame), **L2, eth_type=0x86DD)
    frame = b(eth() / ip6() / UDP())
    for n in range(14, 54):
        check(frame[:n], **L2, eth_type=0x86DD)


def test_ipv6_payload_len() -> None:
    # payload_len shorter than UDP: no L4 (trailing bytes are padding).
    frame = bytearray(b(eth() / ip6() / UDP(sport=1, dport=2)))
    frame[18:20] = b"\x00\x07"
    check(bytes(frame), **ip6_fields(17), l3=14)
    # payload_len 0: region runs to the frame end.
    frame[18:20] = b"\x00\x00"
    check(bytes(frame), **ip6_fields(17, tp_src=1, tp_dst=2), l3=14, l4=54)
    # payload_len beyond the frame: capped at the frame end.
    frame[18:20] = b"\xff\xff"
    check(bytes(frame), **ip6_fields(17, tp_src=1, tp_dst=2), l3=14, l4=54)
    # Padding after payload_len is not an extension header.
    frame = bytearray(b(eth() / ip6(nh=0, plen=0)) + b"\x11\x00" + b"\x00" * 6
                      + b(UDP(sport=1, dport=2)))
    frame[18:20] = b"\x00\x07"                        # hop-by-hop cut at 7
    check(bytes(frame), **ip6_fields(0, ipv6_exthdr=IEH["HOP"]), l3=14)


def test_ipv6_hop_by_hop() -> None:
    frame = b(eth() / ip6() / IPv6ExtHdrHopByHop() / UDP(sport=1, dport=2))
    check(frame, **ip6_fields(17, tp_src=1, tp_dst=2, ipv6_exthdr=IEH["HOP"]),
          l3=14, l4=62)


def test_ipv6_routing_destopts() -> None:
    frame = b(eth() / ip6() / IPv6ExtHdrRouting(addresses=["2001:db8::9", IP6B])
              / TCP(sport=1, dport=2, flags="S"))
    check(frame, **ip6_fields(6, tp_src=1, tp_dst=2, tcp_flags=2,
                              ipv6_exthdr=IEH["ROUTER"]), l3=14, l4=54 + 40)
    frame = b(eth() / ip6() / IPv6ExtHdrDestOpt() / UDP(sport=1, dport=2))
    check(frame, **ip6_fields(17, tp_src=1, tp_dst=2, ipv6_exthdr=IEH["DEST"]),
          l3=14, l4=62)
    # The usual full order: hop, dest, routing, dest (dest twice is fine).
    frame = b(eth() / ip6() / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
              / IPv6ExtHdrRouting() / IPv6ExtHdrDestOpt() / UDP(sport=1, dport=2))
    check(frame, **ip6_fields(17, tp_src=1, tp_dst=2,
                              ipv6_exthdr=IEH["HOP"] | IEH["DEST"] | IEH["ROUTER"]),
          l3=14, l4=54 + 32)


def test_ipv6_unrep_unseq() -> None:
    d = IPv6ExtHdrDestOpt
    frame = b(eth() / ip6() / d() / d() / d() / UDP(sport=1, dport=2))
    check(frame, **ip6_fields(17, tp_src=1, tp_dst=2,
                              ipv6_exthdr=IEH["DEST"] | IEH["UNREP"]), l3=14, l4=54 + 24)
    frame = b(eth() / ip6() / IPv6ExtHdrRouting() / IPv6ExtHdrRouting() / UDP(sport=1, dport=2))
    check(frame, **ip6_fields(17, tp_src=1, tp_dst=2,
                              ipv6_exthdr=IEH["ROUTER"] | IEH["UNREP"]), l3=14, l4=54 + 16)
    frame = b(eth() / ip6() / d() / IPv6ExtHdrHopByHop() / UDP(sport=1, dport=2))
    check(frame, **ip6_fields(17, tp_src=1, tp_dst=2,
                              ipv6_exthdr=IEH["DEST"] | IEH["HOP"] | IEH["UNSEQ"]),
          l3=14, l4=54 + 16)
    frame = b(eth() / ip6() / IPv6ExtHdrHopByHop() / IPv6ExtHdrHopByHop() / UDP(sport=1, dport=2))
    check(frame, **ip6_fields(17, tp_src=1, tp_dst=2,
                              ipv6_exthdr=IEH["HOP"] | IEH["UNSEQ"] | IEH["UNREP"]),
          l3=14, l4=54 + 16)


def test_ipv6_fragment() -> None:
    first = b(eth() / ip6() / IPv6ExtHdrFragment(m=1, offset=0, id=7)
              / UDP(sport=1, dport=2) / (b"x" * 8))
    check(first, **ip6_fields(17, tp_src=1, tp_dst=2, ip_frag=FRAG_ANY,
                              ipv6_exthdr=IEH["FRAG"]), l3=14, l4=62)
    later = b(eth() / ip6() / IPv6ExtHdrFragment(m=1, offset=100, nh=6) / (b"\x00" * 24))
    check(later, **ip6_fields(6, ip_frag=FRAG_ANY | FRAG_LATER,
                              ipv6_exthdr=IEH["FRAG"]), l3=14)
    last = b(eth() / ip6() / IPv6ExtHdrFragment(m=0, offset=1, nh=17) / (b"\x00" * 8))
    check(last, **ip6_fields(17, ip_frag=FRAG_ANY | FRAG_LATER,
                             ipv6_exthdr=IEH["FRAG"]), l3=14)
    # A later fragment stops even if the next header looks like an ext header.
    later = b(eth() / ip6() / IPv6ExtHdrFragment(m=1, offset=8, nh=0) / (b"\x00" * 16))
    check(later, **ip6_fields(0, ip_frag=FRAG_ANY | FRAG_LATER,
                              ipv6_exthdr=IEH["FRAG"]), l3=14)
    # Atomic fragment (offset 0, M 0): not a fragment.
    atomic = b(eth() / ip6() / IPv6ExtHdrFragment(m=0, offset=0) / UDP(sport=1, dport=2))
    check(atomic, **ip6_fields(17, tp_src=1, tp_dst=2, ipv6_exthdr=IEH["FRAG"]),
          l3=14, l4=62)
    # Truncated fragment header (7 bytes).
    frame = b(eth() / ip6() / IPv6ExtHdrFragment(m=1, nh=17))[:14 + 40 + 7]
    check(frame, **ip6_fields(44, ipv6_exthdr=IEH["FRAG"]), l3=14)


def _ah(nh: int, icv_words: int = 3) -> bytes:
    """AH header: payload length = total 4-byte words - 2."""
    total = 12 + 4 * icv_words
    return bytes([nh, total // 4 - 2, 0, 0]) + b"\x00\x00\x01\x00" + b"\x00\x00\x00\x05" \
        + b"\xab" * (4 * icv_words)


def test_ipv6_ah_esp_nonext() -> None:
    frame = b(eth() / ip6(nh=51)) + _ah(17) + b(UDP(sport=1, dport=2))
    check(frame, **ip6_fields(17, tp_src=1, tp_dst=2, ipv6_exthdr=IEH["AUTH"]),
          l3=14, l4=54 + 24)
    frame = b(eth() / ip6(nh=51)) + _ah(17, icv_words=1) + b(UDP(sport=1, dport=2))
    check(frame, **ip6_fields(17, tp_src=1, tp_dst=2, ipv6_exthdr=IEH["AUTH"]),
          l3=14, l4=54 + 16)
    esp = b(eth() / ip6(nh=50)) + b"\x00\x00\x01\x00\x00\x00\x00\x01" + b"\x11" * 32
    check(esp, **ip6_fields(50, ipv6_exthdr=IEH["ESP"]), l3=14)
    esp = b(eth() / ip6(plen=0) / IPv6ExtHdrHopByHop(nh=51)) + _ah(50) + b"\x00" * 16
    check(esp, **ip6_fields(50, ipv6_exthdr=IEH["HOP"] | IEH["AUTH"] | IEH["ESP"]), l3=14)
    nonext = b(eth() / ip6(nh=59)) + b"\x06\x00" * 20
    check(nonext, **ip6_fields(59, ipv6_exthdr=IEH["NONEXT"]), l3=14)
    nonext = b(eth() / ip6() / IPv6ExtHdrDestOpt(nh=59))
    check(nonext, **ip6_fields(59, ipv6_exthdr=IEH["DEST"] | IEH["NONEXT"]), l3=14)


def test_ipv6_ext_truncated() -> None:
    full = b(eth() / ip6() / IPv6ExtHdrRouting(addresses=[IP6B]) / UDP(sport=1, dport=2))
    for n in range(54, 54 + 24):   # routing header is 24 bytes
        check(full[:n], **ip6_fields(43, ipv6_exthdr=IEH["ROUTER"]), l3=14)
    for n in range(54 + 24, 54 + 32):
        check(full[:n], **ip6_fields(17, ipv6_exthdr=IEH["ROUTER"]), l3=14)
    check(full, **ip6_fields(17, tp_src=1, tp_dst=2, ipv6_exthdr=IEH["ROUTER"]),
          l3=14, l4=78)
    # Hop-by-hop length field claims more than the payload.
    frame = b(eth() / ip6(nh=0)) + b"\x11\x05" + b"\x00" * 30 + b(UDP())
    check(frame, **ip6_fields(0, ipv6_exthdr=IEH["HOP"]), l3=14)
    # AH truncated after its length field.
    frame = b(eth() / ip6(nh=51)) + _ah(17)[:23]
    check(frame, **ip6_fields(51, ipv6_exthdr=IEH["AUTH"]), l3=14)
    # Truncated after an earlier complete header: earlier bits are kept.
    frame = b(eth() / ip6() / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / UDP())[:54 + 9]
    check(frame, **ip6_fields(60, ipv6_exthdr=IEH["HOP"] | IEH["DEST"]), l3=14)


def test_ipv6_ext_limit() -> None:
    d = b(IPv6ExtHdrDestOpt(nh=60))
    last = b(IPv6ExtHdrDestOpt(nh=17))
    udp = b(UDP(sport=1, dport=2))
    bits = IEH["DEST"] | IEH["UNREP"]
    frame = b(eth() / ip6(nh=60)) + d * 15 + last + udp      # 16 headers: fine
    check(frame, **ip6_fields(17, tp_src=1, tp_dst=2, ipv6_exthdr=bits),
          l3=14, l4=54 + 16 * 8)
    frame = b(eth() / ip6(nh=60)) + d * 16 + last + udp      # 17 headers: stop
    check(frame, **ip6_fields(60, ipv6_exthdr=bits), l3=14)
    # The 17th header, even ESP, is not examined.
    frame = b(eth() / ip6(nh=60)) + d * 15 + b(IPv6ExtHdrDestOpt(nh=50)) + b"\x00" * 16
    check(frame, **ip6_fields(50, ipv6_exthdr=bits), l3=14)


def test_icmpv6_echo() -> None:
    frame = b(eth() / ip6() / ICMPv6EchoRequest(id=1, seq=2))
    check(frame, **ip6_fields(58, icmpv6_type=128), l3=14, l4=54)
    check(frame[:57], **ip6_fields(58), l3=14)


TGT = "fe80::1234"
TGT_I = 0xFE800000000000000000000000001234
LL1, LL1_I = "aa:bb:cc:dd:ee:01", 0xAABBCCDDEE01
LL2, LL2_I = "aa:bb:cc:dd:ee:02", 0xAABBCCDDEE02


def nd_fields(type_: int, **kw: int) -> dict:
    return ip6_fields(58, ip_ttl=255, icmpv6_type=type_, **kw)


def test_nd_ns_sll() -> None:
    frame = b(eth() / ip6(hlim=255) / ICMPv6ND_NS(tgt=TGT) / ICMPv6NDOptSrcLLAddr(lladdr=LL1))
    check(frame, **nd_fields(135, ipv6_nd_target=TGT_I, ipv6_nd_sll=LL1_I), l3=14, l4=54)
    # No options.
    frame = b(eth() / ip6(hlim=255) / ICMPv6ND_NS(tgt=TGT))
    check(frame, **nd_fields(135, ipv6_nd_target=TGT_I), l3=14, l4=54)
    # Too short for the target: type/code only.
    check(frame[:54 + 23], **nd_fields(135), l3=14, l4=54)
    # TLL in an NS is ignored; only the first SLL counts.
    frame = b(eth() / ip6(hlim=255) / ICMPv6ND_NS(tgt=TGT) / ICMPv6NDOptDstLLAddr(lladdr=LL2)
              / ICMPv6NDOptSrcLLAddr(lladdr=LL1) / ICMPv6NDOptSrcLLAddr(lladdr=LL2))
    check(frame, **nd_fields(135, ipv6_nd_target=TGT_I, ipv6_nd_sll=LL1_I), l3=14, l4=54)
    # Nonzero code: no ND parsing.
    frame = b(eth() / ip6(hlim=255) / ICMPv6ND_NS(tgt=TGT, code=1)
              / ICMPv6NDOptSrcLLAddr(lladdr=LL1))
    check(frame, **nd_fields(135, icmpv6_code=1), l3=14, l4=54)


def test_nd_present_with_zero_values() -> None:
    """key.present records ND target/SLL even when their values are zero."""
    frame = b(eth() / ip6(hlim=255) / ICMPv6ND_NS(tgt="::")
              / ICMPv6NDOptSrcLLAddr(lladdr="00:00:00:00:00:00"))
    p = lib.VS_PRESENT_L2 | lib.VS_PRESENT_L3 | lib.VS_PRESENT_L4
    check(frame, **nd_fields(135), present=p | lib.VS_PRESENT_ND | lib.VS_PRESENT_ND_SLL,
          l3=14, l4=54)
    frame = b(eth() / ip6(hlim=255) / ICMPv6ND_NA(tgt="::"))
    check(frame, **nd_fields(136), present=p | lib.VS_PRESENT_ND, l3=14, l4=54)
    frame = b(eth() / ip4() / UDP(sport=0, dport=0))
    check(frame, **ip4_fields(17), present=p, l3=14, l4=34)
    check(b"\x00" * 14, eth_type=0x05FF, present=lib.VS_PRESENT_L2)
    check(b"\x00" * 13, present=0)


def test_nd_na_tll() -> None:
    frame = b(eth() / ip6(hlim=255) / ICMPv6ND_NA(tgt=TGT, R=0, S=1, O=1)
              / ICMPv6NDOptDstLLAddr(lladdr=LL2))
    check(frame, **nd_fields(136, ipv6_nd_target=TGT_I, ipv6_nd_tll=LL2_I), l3=14, l4=54)
    # SLL in an NA is ignored.
    frame = b(eth() / ip6(hlim=255) / ICMPv6ND_NA(tgt=TGT) / ICMPv6NDOptSrcLLAddr(lladdr=LL1))
    check(frame, **nd_fields(136, ipv6_nd_target=TGT_I), l3=14, l4=54)
    # Unknown options are skipped.
    frame = b(eth() / ip6(hlim=255, plen=0) / ICMPv6ND_NA(tgt=TGT)) + b"\x05\x01" + b"\x00" * 6 \
        + b(ICMPv6NDOptDstLLAddr(lladdr=LL2))
    check(frame, **nd_fields(136, ipv6_nd_target=TGT_I, ipv6_nd_tll=LL2_I), l3=14, l4=54)


def test_nd_bad_options() -> None:
    ns = b(eth() / ip6(hlim=255, plen=0) / ICMPv6ND_NS(tgt=TGT))
    good = b(ICMPv6NDOptSrcLLAddr(lladdr=LL1))
    # Length 0 stops option parsing: target kept, SLL after it not taken.
    check(ns + b"\x01\x00" + b"\x00" * 6 + good,
          **nd_fields(135, ipv6_nd_target=TGT_I), l3=14, l4=54)
    # Option running past the frame.
    check(ns + b"\x01\x02" + b"\x00" * 6 + b"\x00" * 7,
          **nd_fields(135, ipv6_nd_target=TGT_I), l3=14, l4=54)
    # SLL already taken is kept when a later option is bad.
    check(ns + good + b"\x01\x00",
          **nd_fields(135, ipv6_nd_target=TGT_I, ipv6_nd_sll=LL1_I), l3=14, l4=54)
    # SLL with length 2 is not taken, a following length-1 SLL is.
    check(ns + b"\x01\x02" + b"\x11" * 14 + good,
          **nd_fields(135, ipv6_nd_target=TGT_I, ipv6_nd_sll=LL1_I), l3=14, l4=54)
    # One trailing byte: not an option.
    check(ns + b"\x01",
          **nd_fields(135, ipv6_nd_target=TGT_I), l3=14, l4=54)
    # Option cut by payload_len, bytes present after it.
    frame = bytearray(b(eth() / ip6(hlim=255) / ICMPv6ND_NS(tgt=TGT)
                        / ICMPv6NDOptSrcLLAddr(lladdr=LL1)))
    frame[18:20] = struct.pack("!H", 24 + 7)
    check(bytes(frame), **nd_fields(135, ipv6_nd_target=TGT_I), l3=14, l4=54)


# ---------------------------------------------------------------------------
# MPLS


def test_mpls() -> None:
    frame = b(eth() / MPLS(label=0xABCDE, cos=5, s=1, ttl=64) / ip4() / UDP())
    check(frame, **L2, eth_type=0x8847, mpls_label=0xABCDE, mpls_tc=5, mpls_bos=1, l2_5=14)
    frame = b(eth() / MPLS(label=16, cos=0, s=0) / MPLS(label=0xFFFFF, cos=7, s=1) / ip4())
    check(frame, **L2, eth_type=0x8847, mpls_label=16, l2_5=14)
    frame = b(eth(0x8848) / MPLS(label=0xFFFFF, cos=7, s=1, ttl=0))
    check(frame, **L2, eth_type=0x8848, mpls_label=0xFFFFF, mpls_tc=7, mpls_bos=1, l2_5=14)
    frame = b(eth() / Dot1Q(vlan=9, type=0x8847) / MPLS(label=3, cos=1, s=1))
    check(frame, **L2, eth_type=0x8847, mpls_label=3, mpls_tc=1, mpls_bos=1,
          vlan_vid=0x1009, vlan_tpid=0x8100, vlan=12, n_vlan=1, l2_5=18)
    check(frame[:21], **L2, eth_type=0x8847, vlan_vid=0x1009, vlan_tpid=0x8100,
          vlan=12, n_vlan=1)


# ---------------------------------------------------------------------------
# Truncation: every prefix of a few frames.


def _frames_with_stages() -> list:
    """(frame, stages): a stage (need, fields, layers) applies when the prefix
    is at least `need` bytes long; later stages override earlier ones."""
    cases = []

    f = b(eth() / Dot1Q(vlan=100, prio=2) / ip4(options=[IPOption_NOP()] * 4, tos=4)
          / TCP(sport=80, dport=81, flags="PA") / b"data")
    cases.append((f, [
        (14, dict(L2, eth_type=0x8100), {}),
        (18, dict(eth_type=0x0800, vlan_vid=0x1064, vlan_pcp=2, vlan_tpid=0x8100),
         dict(vlan=12, n_vlan=1)),
        (42, dict(ipv4_src=IP4A_I, ipv4_dst=IP4B_I, ip_proto=6, ip_ttl=64, ip_dscp=1),
         dict(l3=18, l3_ok=1)),
        (62, dict(tp_src=80, tp_dst=81, tcp_flags=0x18), dict(l4=42, l4_ok=1)),
    ]))

    f = b(eth(0x88A8) / Dot1Q(vlan=1) / Dot1Q(vlan=2) / ip6() / IPv6ExtHdrHopByHop()
          / UDP(sport=5, dport=6) / (b"x" * 5))
    cases.append((f, [
        (14, dict(L2, eth_type=0x88A8), {}),
        (18, dict(eth_type=0x8100, vlan_vid=0x1001, vlan_tpid=0x88A8),
         dict(vlan=12, n_vlan=1)),
        (22, dict(eth_type=0x86DD, vlan2_tci=0x1002), dict(n_vlan=2)),
        (62, dict(ipv6_src=IP6A_I, ipv6_dst=IP6B_I, ip_ttl=64, ip_proto=0,
                  ipv6_exthdr=IEH["HOP"]), dict(l3=22, l3_ok=1)),
        (70, dict(ip_proto=17), {}),
        (78, dict(tp_src=5, tp_dst=6), dict(l4=70, l4_ok=1)),
    ]))

    f = b(eth() / ARP(op=2, hwsrc=LL1, psrc=IP4A, hwdst=LL2, pdst=IP4B))
    cases.append((f, [
        (14, dict(L2, eth_type=0x0806), {}),
        (42, dict(arp_op=2, arp_sha=LL1_I, arp_spa=IP4A_I, arp_tha=LL2_I, arp_tpa=IP4B_I),
         dict(l3=14, l3_ok=1)),
    ]))

    f = b(eth() / ip6(hlim=255) / ICMPv6ND_NS(tgt=TGT) / ICMPv6NDOptSrcLLAddr(lladdr=LL1))
    cases.append((f, [
        (14, dict(L2, eth_type=0x86DD), {}),
        (54, dict(ipv6_src=IP6A_I, ipv6_dst=IP6B_I, ip_ttl=255, ip_proto=58),
         dict(l3=14, l3_ok=1)),
        (58, dict(icmpv6_type=135), dict(l4=54, l4_ok=1)),
        (78, dict(ipv6_nd_target=TGT_I), {}),
        (86, dict(ipv6_nd_sll=LL1_I), {}),
    ]))

    f = b(eth() / MPLS(label=77, cos=3, s=0) / MPLS(label=78, s=1) / ip4() / UDP())
    cases.append((f, [
        (14, dict(L2, eth_type=0x8847), {}),
        (18, dict(mpls_label=77, mpls_tc=3), dict(l2_5=14)),
    ]))

    f = b(eth() / ip4() / SCTP(sport=1, dport=2))
    cases.append((f, [
        (14, dict(L2, eth_type=0x0800), {}),
        (34, dict(ipv4_src=IP4A_I, ipv4_dst=IP4B_I, ip_proto=132, ip_ttl=64),
         dict(l3=14, l3_ok=1)),
        (46, dict(tp_src=1, tp_dst=2), dict(l4=34, l4_ok=1)),
    ]))

    f = b(eth() / ip6() / IPv6ExtHdrFragment(m=1, nh=58) / ICMPv6EchoRequest())
    cases.append((f, [
        (14, dict(L2, eth_type=0x86DD), {}),
        (54, dict(ipv6_src=IP6A_I, ipv6_dst=IP6B_I, ip_ttl=64, ip_proto=44,
                  ipv6_exthdr=IEH["FRAG"]), dict(l3=14, l3_ok=1)),
        (62, dict(ip_proto=58, ip_frag=FRAG_ANY), {}),
        (66, dict(icmpv6_type=128), dict(l4=62, l4_ok=1)),
    ]))
    return cases


@pytest.mark.parametrize("case", range(len(_frames_with_stages())))
def test_every_prefix(case: int) -> None:
    frame, stages = _frames_with_stages()[case]
    for n in range(len(frame) + 1):
        fields = {"in_port": 9}
        layers = {"l2_5": NO, "l3": NO, "l4": NO, "vlan": NO, "n_vlan": 0,
                  "l3_ok": 0, "l4_ok": 0, "pad": 0}
        for need, f, lay in stages:
            if n >= need:
                fields.update(f)
                layers.update(lay)
        fields["present"] = _want_present(n, layers, fields)
        raw, got_layers = _raw_parse(frame[:n], 9)
        assert raw == _key_bytes(fields), f"prefix {n}"
        assert got_layers == layers, f"prefix {n}"
    # The full frame agrees with the last stage (stages are complete).
    assert n == len(frame)


# ---------------------------------------------------------------------------
# Over-read detection (every parse here ends at a guard page)


def test_guarded_prefixes_of_many_frames() -> None:
    frames = [
        b(eth() / ip4(options=[IPOption_NOP()] * 4) / TCP()),
        b(eth() / ip6() / IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting(addresses=[IP6B])
          / IPv6ExtHdrDestOpt() / IPv6ExtHdrFragment(m=1) / UDP()),
        b(eth(0x88A8) / Dot1Q() / Dot1Q() / Dot1Q() / ip4() / UDP()),
        b(eth() / ip6(plen=0, nh=51)) + _ah(58) + b(ICMPv6ND_NA(tgt=TGT)
                                                    / ICMPv6NDOptDstLLAddr(lladdr=LL2)),
        b(eth() / ip6(plen=0) / ICMPv6ND_NS(tgt=TGT)) + b"\x01\x01" + b"\x00" * 6 + b"\x01",
    ]
    for frame in frames:
        for n in range(len(frame) + 1):
            raw, layers = _raw_parse(frame[:n], 1)
            assert raw == _raw_parse_bytes(frame[:n], 1)[0]
            _check_invariants(raw, layers, n)


# ---------------------------------------------------------------------------
# Properties over random bytes.

L4_MIN = {6: 20, 17: 8, 132: 12, 1: 4, 58: 4}


def _check_invariants(raw: bytes, layers: dict, n: int) -> None:
    f = {name: int.from_bytes(raw[o:o + ln], "big") for name, (o, ln) in FIELDS.items()}
    assert f["in_phy_port"] == f["metadata"] == f["tunnel_id"] == f["pbb_isid"] == 0
    assert f["tun_ipv4_src"] == f["tun_ipv4_dst"] == 0 and layers["pad"] == 0
    pr = f["present"]
    assert bool(pr & lib.VS_PRESENT_L2) == (n >= 14)
    assert bool(pr & lib.VS_PRESENT_L3) == bool(layers["l3_ok"])
    assert bool(pr & lib.VS_PRESENT_L4) == bool(layers["l4_ok"])
    nd = lib.VS_PRESENT_ND | lib.VS_PRESENT_ND_SLL | lib.VS_PRESENT_ND_TLL
    if pr & nd:
        assert layers["l4_ok"] and f["ip_proto"] == 58 and f["icmpv6_code"] == 0
        assert pr & lib.VS_PRESENT_ND and f["icmpv6_type"] in (135, 136)
        assert not pr & lib.VS_PRESENT_ND_SLL or f["icmpv6_type"] == 135
        assert not pr & lib.VS_PRESENT_ND_TLL or f["icmpv6_type"] == 136
    else:
        assert f["ipv6_nd_target"] == 0
    if n < 14:
        assert raw[4:] == bytes(len(raw) - 4)
        assert layers["vlan"] == layers["l3"] == layers["l4"] == layers["l2_5"] == NO
        return
    assert layers["n_vlan"] in (0, 1, 2)
    assert (layers["vlan"] == 12) == (layers["n_vlan"] > 0) == (f["vlan_vid"] != 0)
    assert (f["vlan2_tci"] != 0) == (layers["n_vlan"] == 2)
    assert f["vlan_vid"] & ~0x1FFF == 0 and f["vlan_pcp"] <= 7
    assert layers["l3_ok"] == (layers["l3"] != NO)
    assert layers["l4_ok"] == (layers["l4"] != NO)
    base = 14 + 4 * layers["n_vlan"]
    et = f["eth_type"]
    if layers["l2_5"] != NO:
        assert et in (0x8847, 0x8848) and layers["l2_5"] == base and base + 4 <= n
        assert f["mpls_label"] <= 0xFFFFF and f["mpls_tc"] <= 7 and f["mpls_bos"] <= 1
    else:
        assert f["mpls_label"] == f["mpls_tc"] == f["mpls_bos"] == 0
    if layers["l3"] == NO:
        assert layers["l4"] == NO
        assert f["ip_proto"] == f["ipv4_src"] == f["ipv6_src"] == f["arp_op"] == 0
        assert f["ip_ttl"] == f["ip_dscp"] == f["ip_ecn"] == f["ip_frag"] == 0
        return
    assert layers["l3"] == base
    need = {0x0800: 20, 0x86DD: 40, 0x0806: 28}[et]
    assert base + need <= n
    assert f["ip_dscp"] <= 0x3F and f["ip_ecn"] <= 3 and f["ip_frag"] in (0, 1, 3)
    assert f["ipv6_flabel"] <= 0xFFFFF and f["ipv6_exthdr"] <= 0x1FF
    if et != 0x86DD:
        assert f["ipv6_src"] == f["ipv6_dst"] == f["ipv6_exthdr"] == f["ipv6_flabel"] == 0
    if et != 0x0800 and et != 0x86DD:
        assert f["ip_proto"] == f["ip_ttl"] == 0
    if layers["l4"] != NO:
        proto = f["ip_proto"]
        assert f["ip_frag"] & FRAG_LATER == 0
        assert layers["l4"] >= base + need
        assert layers["l4"] + L4_MIN[proto] <= n
        if proto == 1:
            assert et == 0x0800
        if proto == 58:
            assert et == 0x86DD
    else:
        assert f["tp_src"] == f["tp_dst"] == f["tcp_flags"] == 0
        assert f["icmpv4_type"] == f["icmpv4_code"] == 0
    if f["tcp_flags"]:
        assert f["ip_proto"] == 6 and f["tcp_flags"] <= 0xFFF


HEADS = [
    b"",
    bytes.fromhex("020000000001020000000002 0800 45"),
    bytes.fromhex("020000000001020000000002 86dd 60"),
    bytes.fromhex("020000000001020000000002 8100 0064 0800 45"),
    bytes.fromhex("020000000001020000000002 88a8 0001 8100 0002 86dd 60"),
    bytes.fromhex("020000000001020000000002 0806 0001 0800 0604"),
    bytes.fromhex("020000000001020000000002 8847"),
]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(head=st.sampled_from(HEADS), body=st.binary(max_size=200),
       cut=st.integers(min_value=0, max_value=300), in_port=st.integers(0, 2**32 - 1))
def test_random_bytes(head: bytes, body: bytes, cut: int, in_port: int) -> None:
    frame = (head + body)[:cut]
    raw, layers = _raw_parse(frame, in_port)
    assert int.from_bytes(raw[:4], "big") == in_port
    _check_invariants(raw, layers, len(frame))
    # Parsing is a function of the bytes (no stale state).
    assert (raw, layers) == _raw_parse_bytes(frame, in_port)


IP6_NH = st.sampled_from([0, 43, 60, 44, 51, 50, 59, 6, 17, 58, 132, 1, 99])


@st.composite
def ipv6_chains(draw) -> bytes:
    """Plausible IPv6 extension-header chains with random lengths."""
    hdrs = b""
    nh0 = draw(IP6_NH)
    nh = nh0
    for _ in range(draw(st.integers(0, 20))):
        if nh not in (0, 43, 60, 44, 51):
            break
        nxt = draw(IP6_NH)
        if nh == 44:
            hdrs += bytes([nxt, 0]) + draw(st.binary(min_size=6, max_size=6))
        elif nh == 51:
            ln = draw(st.integers(0, 4))
            hdrs += bytes([nxt, ln]) + bytes((ln + 2) * 4 - 2)
        else:
            ln = draw(st.integers(0, 3))
            hdrs += bytes([nxt, ln]) + bytes((ln + 1) * 8 - 2)
        nh = nxt
    tail = draw(st.binary(max_size=48))
    plen = draw(st.sampled_from([0, len(hdrs) + len(tail), draw(st.integers(0, 0xFFFF))]))
    ip = bytes([0x60, 0, 0, 0]) + struct.pack("!HBB", plen, nh0, 64) + bytes(32)
    return b(eth(0x86DD)) + ip + hdrs + tail


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=ipv6_chains(), cut=st.integers(min_value=0, max_value=2000))
def test_random_ipv6_chains(frame: bytes, cut: int) -> None:
    frame = frame[:cut]
    raw, layers = _raw_parse(frame, 1)
    _check_invariants(raw, layers, len(frame))


def test_bench_parse_runs() -> None:
    frames = [b(eth() / ip4() / UDP()), b(eth() / ip6() / TCP()), b"\x00" * 5]
    bufs = [ffi.from_buffer(f) for f in frames]
    ptrs = ffi.new("const uint8_t *[]", bufs)
    lens = ffi.new("uint32_t[]", [len(f) for f in frames])
    ns = lib.vs_bench_parse(ptrs, lens, len(frames), 1000)
    assert 0 < ns < 10**10
    assert lib.vs_bench_parse(ptrs, lens, 0, 10) < 10**9
