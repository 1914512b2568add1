"""Build a frame from an ovs-ofctl style description, for `vswitchctl trace`.

    build_frame("in_port=1,tcp,nw_src=10.0.0.1,nw_dst=10.0.0.2,tp_dst=80")

The description is parsed as a flow match; fields not given get harmless
defaults.  Checksums are computed so the frame is what a host would send.
"""

from __future__ import annotations

import struct

from vswitch.ofp import Match
from vswitch.ofproto.flowsyntax import parse_flow


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the SCTP checksum."""
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def _get(m: Match, name: str, default: int = 0) -> int:
    v = m.get(name)
    return v[0] if v else default


def build_frame(text: str) -> tuple[bytes, int]:
    """(frame, in_port) for a description such as `in_port=1,udp,tp_dst=53`."""
    spec = parse_flow(text, "del")
    m = spec.match
    in_port = _get(m, "in_port", 1)
    eth_type = _get(m, "eth_type", 0x0800)
    l2 = (_get(m, "eth_dst", 0x020000000002).to_bytes(6, "big")
          + _get(m, "eth_src", 0x020000000001).to_bytes(6, "big"))
    vid = _get(m, "vlan_vid")
    if vid & 0x1000:
        l2 += struct.pack("!HH", 0x8100, (_get(m, "vlan_pcp") << 13) | (vid & 0xFFF))
    l2 += struct.pack("!H", eth_type)
    proto = _get(m, "ip_proto", 17)
    if eth_type == 0x0800:
        l4 = _l4(m, proto, b"", 0)
        tos = (_get(m, "ip_dscp") << 2) | _get(m, "ip_ecn")
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + len(l4), 0, 0,
                          _get(m, "ip_ttl", 64), proto, 0,
                          _get(m, "ipv4_src", 0x0A000001).to_bytes(4, "big"),
                          _get(m, "ipv4_dst", 0x0A000002).to_bytes(4, "big"))
        hdr = hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:]
        l4 = _l4(m, proto, hdr[12:20], len(l4))
        return l2 + hdr + l4, in_port
    if eth_type == 0x86DD:
        src = _get(m, "ipv6_src", 1).to_bytes(16, "big")
        dst = _get(m, "ipv6_dst", 2).to_bytes(16, "big")
        proto = _get(m, "ip_proto", 17)
        l4 = _l4(m, proto, src + dst, None)
        tc = (_get(m, "ip_dscp") << 2) | _get(m, "ip_ecn")
        hdr = struct.pack("!IHBB", 6 << 28 | tc << 20 | _get(m, "ipv6_flabel"), len(l4), proto,
                          _get(m, "ip_ttl", 64)) + src + dst
        return l2 + hdr + l4, in_port
    if eth_type == 0x0806:
        arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, _get(m, "arp_op", 1),
                          _get(m, "arp_sha").to_bytes(6, "big"),
                          _get(m, "arp_spa").to_bytes(4, "big"),
                          _get(m, "arp_tha").to_bytes(6, "big"),
                          _get(m, "arp_tpa").to_bytes(4, "big"))
        return l2 + arp, in_port
    return l2 + bytes(46), in_port


def _l4(m: Match, proto: int, pseudo_addrs: bytes, _len) -> bytes:
    """TCP/UDP/ICMP header with payload; checksum over the pseudo header
    when the addresses are known (second pass)."""
    payload = b"vswitch trace".ljust(18, b".")
    if proto == 6:
        body = struct.pack("!HHIIBBHHH", _get(m, "tcp_src", 40000), _get(m, "tcp_dst", 80),
                           0, 0, 5 << 4, _get(m, "tcp_flags", 0x02) & 0xFF, 8192, 0, 0)
        csum_at = 16
    elif proto == 17:
        body = struct.pack("!HHHH", _get(m, "udp_src", 40000), _get(m, "udp_dst", 53),
                           8 + len(payload), 0)
        csum_at = 6
    elif proto == 132:
        seg = bytearray(struct.pack("!HHII", _get(m, "sctp_src", 40000),
                                    _get(m, "sctp_dst", 80), 1, 0) + payload)
        seg[8:12] = struct.pack("<I", _crc32c(bytes(seg)))
        return bytes(seg)
    elif proto in (1, 58):
        t = _get(m, "icmpv4_type" if proto == 1 else "icmpv6_type", 8 if proto == 1 else 128)
        c = _get(m, "icmpv4_code" if proto == 1 else "icmpv6_code")
        body = struct.pack("!BBHHH", t, c, 0, 1, 1)
        csum_at = 2
        if proto == 58 and t in (135, 136) and c == 0:      # neighbor solicit/advert
            body = struct.pack("!BBHI", t, c, 0, 0x60000000 if t == 136 else 0) + \
                _get(m, "ipv6_nd_target").to_bytes(16, "big")
            ll = "ipv6_nd_sll" if t == 135 else "ipv6_nd_tll"
            if m.get(ll):
                body += struct.pack("!BB", 1 if t == 135 else 2, 1) + \
                    _get(m, ll).to_bytes(6, "big")
            payload = b""
    else:
        return payload
    seg = bytearray(body + payload)
    if proto == 1:
        pseudo = b""
    elif len(pseudo_addrs) == 32:
        pseudo = pseudo_addrs + struct.pack("!IxxxB", len(seg), proto)
    elif pseudo_addrs:
        pseudo = pseudo_addrs + struct.pack("!xBH", proto, len(seg))
    else:
        return bytes(seg)
    c = _csum(pseudo + bytes(seg))
    if proto == 17 and c == 0:
        c = 0xFFFF
    seg[csum_at:csum_at + 2] = struct.pack("!H", c)
    return bytes(seg)
