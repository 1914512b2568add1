"""A pure-Python reference model of the vswitch pipeline.

This is the readable statement of what the switch does: `docs/parsing.md`
(`parse`) and `docs/semantics.md` (`ModelPipeline`), written independently of
the C fast path so that property tests can run the same rules and packets
through both and compare every decision.  Precision and clarity come first,
speed does not matter: the frame is parsed again whenever an action needs to
know its layers.

    p = ModelPipeline()
    p.set_port(1); p.set_port(2)
    p.add_flow(0, 100, Match(in_port=1), [apply(Output(2))])
    p.process(frame, 1).outputs  ->  [(2, frame, 0)]

Choices made here where the docs are silent (OpenFlow 1.3 readings):
- The packet is parsed again after every action that changes it; later
  tables and actions see exactly what parse() finds in the new bytes.
- set_field vlan_vid/vlan_pcp needs a match on a tagged packet (vlan_vid with
  the 0x1000 bit) or a push_vlan in the same action list.  Bucket actions
  have no match: their set_fields are not checked, and are no-ops at run
  time where the packet lacks the field.
- Group buckets run as ordered action lists; an invalid TTL in a bucket
  stops only that bucket's copy.  push_vlan copies VID and PCP, DEI is 0.
- output:LOCAL is suppressed like any output to the in_port.
- A fast-failover bucket must watch a port (GROUP_MOD_FAILED/BAD_WATCH);
  group delete with OFPG_ALL deletes every group; deleting a group or meter
  removes the rules that use it.  A duplicate instruction is UNSUP_INST.
- MODIFY checks the new instructions against the request's match.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from vswitch import ofp
from vswitch.ofp import (
    FIELDS,
    ApplyActions,
    ClearActions,
    DecNwTtl,
    FlowEntry,
    GotoTable,
    Group,
    Match,
    Meter,
    OFError,
    Output,
    PopVlan,
    PushVlan,
    SetField,
    SetNwTtl,
    SetQueue,
    WriteActions,
    WriteMetadata,
)

# Error types and codes (OpenFlow 1.3.5, ofp_error_type and friends).
ET_BAD_ACTION, ET_BAD_INSTRUCTION, ET_BAD_MATCH = 2, 3, 4
ET_FLOW_MOD_FAILED, ET_GROUP_MOD_FAILED, ET_METER_MOD_FAILED = 5, 6, 12
BAC_BAD_TYPE, BAC_BAD_OUT_PORT, BAC_BAD_ARGUMENT, BAC_BAD_OUT_GROUP = 0, 4, 5, 9
BAC_MATCH_INCONSISTENT, BAC_BAD_SET_TYPE, BAC_BAD_SET_ARGUMENT = 10, 13, 15
BIC_UNKNOWN_INST, BIC_UNSUP_INST, BIC_BAD_TABLE_ID, BIC_UNSUP_METADATA = 0, 1, 2, 3
BMC_BAD_FIELD, BMC_BAD_WILDCARDS, BMC_BAD_VALUE, BMC_BAD_MASK, BMC_BAD_PREREQ = 6, 5, 7, 8, 9
FMFC_BAD_TABLE_ID, FMFC_OVERLAP, FMFC_BAD_COMMAND = 2, 3, 6
GMFC_GROUP_EXISTS, GMFC_INVALID_GROUP, GMFC_CHAINING_UNSUPPORTED = 0, 1, 5
GMFC_WATCH_UNSUPPORTED, GMFC_UNKNOWN_GROUP, GMFC_BAD_TYPE = 6, 8, 10
GMFC_BAD_COMMAND, GMFC_BAD_BUCKET, GMFC_BAD_WATCH = 11, 12, 13
MMFC_METER_EXISTS, MMFC_INVALID_METER, MMFC_UNKNOWN_METER, MMFC_BAD_COMMAND = 1, 2, 3, 4

OFPG_MAX, OFPG_ALL, OFPM_MAX = 0xFFFFFF00, 0xFFFFFFFC, 0xFFFF0000
OFPRR_METER_DELETE = 4
FRAG_ANY, FRAG_LATER = 0x01, 0x02
N_TABLES = 255

# ipv6_exthdr bits (OFPIEH_*) by extension header type.
IEH_NONEXT, IEH_ESP, IEH_AUTH, IEH_DEST, IEH_FRAG = 0x001, 0x002, 0x004, 0x008, 0x010
IEH_ROUTER, IEH_HOP, IEH_UNREP, IEH_UNSEQ = 0x020, 0x040, 0x080, 0x100
_EXT_BIT = {0: IEH_HOP, 43: IEH_ROUTER, 60: IEH_DEST, 44: IEH_FRAG, 51: IEH_AUTH,
            50: IEH_ESP, 59: IEH_NONEXT}

# =============================================================================
# Parsing (docs/parsing.md)


def _be(frame: bytes, off: int, n: int) -> int:
    return int.from_bytes(frame[off:off + n], "big")


def parse(frame: bytes, in_port: int) -> dict[str, int]:
    """The match fields of `frame` by OXM name.  A field is present exactly
    when the packet has it (under every name whose prerequisites the packet
    meets: a TCP packet gives tcp_src, not udp_src); absent fields read as 0.
    metadata and tunnel_id are not part of the frame and are left out."""
    return _parse(frame, in_port)[0]


def _parse(frame: bytes, in_port: int) -> tuple[dict[str, int], dict[str, int]]:
    """(fields, layers): layers has the offsets an action needs: "vlan"
    (tags parsed), "l3", "l4", "sll", "tll" (ND option starts), each only
    when present."""
    frame = bytes(frame)
    f: dict[str, int] = {"in_port": in_port}
    lay: dict[str, int] = {"vlan": 0}
    n = len(frame)
    if n < 14:
        return f, lay
    f["eth_dst"], f["eth_src"] = _be(frame, 0, 6), _be(frame, 6, 6)
    etype, off = _be(frame, 12, 2), 14
    while etype in (0x8100, 0x88A8):
        if lay["vlan"] == 2 or n - off < 4:
            f["eth_type"] = etype
            return f, lay
        tci = _be(frame, off, 2)
        if lay["vlan"] == 0:
            f["vlan_vid"], f["vlan_pcp"] = 0x1000 | (tci & 0xFFF), tci >> 13
        lay["vlan"] += 1
        etype, off = _be(frame, off + 2, 2), off + 4
    if etype < 0x0600:
        f["eth_type"] = 0x05FF
        return f, lay
    f["eth_type"] = etype
    if etype in (0x8847, 0x8848):
        if n - off >= 4:
            entry = _be(frame, off, 4)
            f.update(mpls_label=entry >> 12, mpls_tc=(entry >> 9) & 7, mpls_bos=(entry >> 8) & 1)
    elif etype == 0x0806:
        _parse_arp(frame, off, f, lay)
    elif etype == 0x0800:
        _parse_ipv4(frame, off, f, lay)
    elif etype == 0x86DD:
        _parse_ipv6(frame, off, f, lay)
    return f, lay


def _parse_arp(frame: bytes, off: int, f: dict, lay: dict) -> None:
    if len(frame) - off < 28 or frame[off:off + 6] != b"\x00\x01\x08\x00\x06\x04":
        return
    lay["l3"] = off
    f.update(arp_op=_be(frame, off + 6, 2), arp_sha=_be(frame, off + 8, 6),
             arp_spa=_be(frame, off + 14, 4), arp_tha=_be(frame, off + 18, 6),
             arp_tpa=_be(frame, off + 24, 4))


def _parse_ipv4(frame: bytes, off: int, f: dict, lay: dict) -> None:
    remain = len(frame) - off
    if remain < 20:
        return
    ihl = (frame[off] & 15) * 4
    tot_len = _be(frame, off + 2, 2)
    if frame[off] >> 4 != 4 or ihl < 20 or ihl > remain or tot_len < ihl:
        return
    lay["l3"] = off
    tos, frag_off = frame[off + 1], _be(frame, off + 6, 2)
    offset, more = frag_off & 0x1FFF, frag_off & 0x2000
    f.update(ip_dscp=tos >> 2, ip_ecn=tos & 3, ip_ttl=frame[off + 8], ip_proto=frame[off + 9],
             ipv4_src=_be(frame, off + 12, 4), ipv4_dst=_be(frame, off + 16, 4),
             ip_frag=(FRAG_ANY if offset or more else 0) | (FRAG_LATER if offset else 0))
    if not offset:
        _parse_l4(frame, off + ihl, off + min(remain, tot_len), 4, f, lay)


def _parse_ipv6(frame: bytes, off: int, f: dict, lay: dict) -> None:
    n = len(frame)
    if n - off < 40 or frame[off] >> 4 != 6:
        return
    lay["l3"] = off
    word = _be(frame, off, 4)
    payload_len = _be(frame, off + 4, 2)
    end = n if payload_len == 0 else min(n, off + 40 + payload_len)
    f.update(ip_dscp=(word >> 22) & 0x3F, ip_ecn=(word >> 20) & 3, ipv6_flabel=word & 0xFFFFF,
             ip_ttl=frame[off + 7], ipv6_src=_be(frame, off + 8, 16),
             ipv6_dst=_be(frame, off + 24, 16), ip_frag=0)
    nh, pos, bits, seen, l4_ok = frame[off + 6], off + 40, 0, [], False
    while True:
        if nh not in _EXT_BIT:
            l4_ok = True
            break
        if len(seen) == 16:
            break
        bits |= _EXT_BIT[nh]
        if nh == 0 and seen:
            bits |= IEH_UNSEQ
        if seen.count(nh) >= (2 if nh == 60 else 1):
            bits |= IEH_UNREP
        seen.append(nh)
        if nh in (50, 59):
            break
        if nh == 44:
            size = 8
        elif end - pos < 2:
            break
        else:
            size = (frame[pos + 1] + 2) * 4 if nh == 51 else (frame[pos + 1] + 1) * 8
        if end - pos < size:
            break
        if nh == 44:
            offset, more = _be(frame, pos + 2, 2) >> 3, frame[pos + 3] & 1
            f["ip_frag"] |= (FRAG_ANY if offset or more else 0) | (FRAG_LATER if offset else 0)
            if offset:
                nh = frame[pos]
                break
        nh, pos = frame[pos], pos + size
    f["ip_proto"], f["ipv6_exthdr"] = nh, bits
    if l4_ok:
        _parse_l4(frame, pos, end, 6, f, lay)


_L4_SIZE = {6: 20, 17: 8, 132: 12, 1: 4, 58: 4}
_L4_NAMES = {6: "tcp", 17: "udp", 132: "sctp", 1: "icmpv4", 58: "icmpv6"}


def _parse_l4(frame: bytes, off: int, end: int, family: int, f: dict, lay: dict) -> None:
    proto = f["ip_proto"]
    if (proto not in _L4_SIZE or end - off < _L4_SIZE[proto]
            or (proto == 1 and family != 4) or (proto == 58 and family != 6)):
        return
    name = _L4_NAMES[proto]
    if proto == 6:
        if frame[off + 12] >> 4 < 5:
            return
        f["tcp_flags"] = _be(frame, off + 12, 2) & 0xFFF
    lay["l4"] = off
    if proto in (1, 58):
        f[name + "_type"], f[name + "_code"] = frame[off], frame[off + 1]
    else:
        f[name + "_src"], f[name + "_dst"] = _be(frame, off, 2), _be(frame, off + 2, 2)
    if proto != 58 or frame[off] not in (135, 136) or frame[off + 1] or end - off < 24:
        return
    f["ipv6_nd_target"] = _be(frame, off + 8, 16)
    want = ("sll", 1) if frame[off] == 135 else ("tll", 2)
    pos = off + 24
    while end - pos >= 2:
        size = frame[pos + 1] * 8
        if size == 0 or pos + size > end:
            break
        if (frame[pos], size) == (want[1], 8) and want[0] not in lay:
            lay[want[0]] = pos
            f["ipv6_nd_" + want[0]] = _be(frame, pos + 2, 6)
        pos += size


def select_hash(fields: dict[str, int]) -> int:
    """FNV-1a (32 bits), finished with fmix32, over the key bytes of eth_dst, eth_src, eth_type,
    vlan_vid, ip_proto, ipv4_src, ipv4_dst, ipv6_src, ipv6_dst, tp_src, tp_dst
    (the C key's shared storage: ARP SPA/TPA are ipv4_src/dst, the ports of
    TCP, UDP or SCTP are tp_src/tp_dst)."""
    def get(*names: str) -> int:
        return next((fields[n] for n in names if n in fields), 0)

    parts = [
        (get("eth_dst"), 6), (get("eth_src"), 6), (get("eth_type"), 2), (get("vlan_vid"), 2),
        (get("ip_proto"), 1), (get("ipv4_src", "arp_spa"), 4), (get("ipv4_dst", "arp_tpa"), 4),
        (get("ipv6_src"), 16), (get("ipv6_dst"), 16),
        (get("tcp_src", "udp_src", "sctp_src"), 2), (get("tcp_dst", "udp_dst", "sctp_dst"), 2),
    ]
    h = 2166136261
    for byte in b"".join(v.to_bytes(size, "big") for v, size in parts):
        h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
    # finished with murmur3's fmix32 (FNV's low bits are weak)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    return h ^ (h >> 16)


# =============================================================================
# Matches: validation and lookup (docs/semantics.md, "Matches")

_IP = (0x0800, 0x86DD)
_TCP = [("eth_type", _IP), ("ip_proto", (6,))]
_UDP = [("eth_type", _IP), ("ip_proto", (17,))]
_SCTP = [("eth_type", _IP), ("ip_proto", (132,))]
_ICMP4 = [("eth_type", (0x0800,)), ("ip_proto", (1,))]
_ICMP6 = [("eth_type", (0x86DD,)), ("ip_proto", (58,))]
_ARP = [("eth_type", (0x0806,))]
_V6 = [("eth_type", (0x86DD,))]
_MPLS = [("eth_type", (0x8847, 0x8848))]
# A prerequisite (field, values) is met when the match pins field with a full
# mask to one of values (None: to any value).  vlan_pcp is special (below).
PREREQS: dict[str, list] = {
    "in_phy_port": [("in_port", None)],
    **dict.fromkeys(("ip_dscp", "ip_ecn", "ip_proto", "ip_frag", "ip_ttl"), [("eth_type", _IP)]),
    "ipv4_src": [("eth_type", (0x0800,))], "ipv4_dst": [("eth_type", (0x0800,))],
    **dict.fromkeys(("arp_op", "arp_spa", "arp_tpa", "arp_sha", "arp_tha"), _ARP),
    **dict.fromkeys(("ipv6_src", "ipv6_dst", "ipv6_flabel", "ipv6_exthdr"), _V6),
    "tcp_src": _TCP, "tcp_dst": _TCP, "tcp_flags": _TCP,
    "udp_src": _UDP, "udp_dst": _UDP, "sctp_src": _SCTP, "sctp_dst": _SCTP,
    "icmpv4_type": _ICMP4, "icmpv4_code": _ICMP4,
    "icmpv6_type": _ICMP6, "icmpv6_code": _ICMP6,
    "ipv6_nd_target": _ICMP6 + [("icmpv6_type", (135, 136))],
    "ipv6_nd_sll": _ICMP6 + [("icmpv6_type", (135,))],
    "ipv6_nd_tll": _ICMP6 + [("icmpv6_type", (136,))],
    "mpls_label": _MPLS, "mpls_tc": _MPLS, "mpls_bos": _MPLS,
    "pbb_isid": [("eth_type", (0x88E7,))],
}


def _tagged(fields: dict[str, tuple[int, int]]) -> bool:
    v, m = fields.get("vlan_vid", (0, 0))
    return bool(v & m & 0x1000)


def prereqs_met(name: str, fields: dict[str, tuple[int, int]]) -> bool:
    """Does a match with these fields meet `name`'s prerequisites?"""
    if name == "vlan_pcp":
        return _tagged(fields)
    for pre, values in PREREQS.get(name, ()):
        vm = fields.get(pre)
        if vm is None or vm[1] != FIELDS[pre].full_mask:
            return False
        if values is not None and vm[0] not in values:
            return False
    return True


def check_match(match: Match) -> None:
    """Raise OFError(BAD_MATCH, ...) unless `match` is a valid match."""
    for name, (v, m) in match.fields.items():
        spec = FIELDS.get(name)
        if spec is None:
            raise OFError(ET_BAD_MATCH, BMC_BAD_FIELD, f"unknown field {name}")
        if not 0 <= v <= spec.full_mask:
            raise OFError(ET_BAD_MATCH, BMC_BAD_VALUE, f"{name}: value too wide")
        if not 0 <= m <= spec.full_mask or (m != spec.full_mask and not spec.maskable):
            raise OFError(ET_BAD_MATCH, BMC_BAD_MASK, f"{name}: bad mask")
        if v & ~m:
            raise OFError(ET_BAD_MATCH, BMC_BAD_WILDCARDS, f"{name}: value bits outside mask")
    for name in match.fields:
        if not prereqs_met(name, match.fields):
            raise OFError(ET_BAD_MATCH, BMC_BAD_PREREQ, f"{name}: prerequisites not met")


def matches(match: Match, key: dict[str, int]) -> bool:
    """Does a packet with this key match? Absent fields read as 0."""
    return all(key.get(name, 0) & m == v for name, (v, m) in match.fields.items())


def covers(req: Match, entry: Match) -> bool:
    """Is `entry` equal to or more specific than `req` on every field `req`
    names (the non-strict modify/delete selection)?"""
    for name, (v, m) in req.fields.items():
        ev, em = entry.fields.get(name, (0, 0))
        if em & m != m or ev & m != v:
            return False
    return True


def overlaps(a: Match, b: Match) -> bool:
    """Could one packet match both?"""
    return all((va ^ b.fields[name][0]) & ma & b.fields[name][1] == 0
               for name, (va, ma) in a.fields.items() if name in b.fields)


def is_table_miss(entry: FlowEntry) -> bool:
    return entry.priority == 0 and not entry.match.fields


# =============================================================================
# Packet editing (docs/semantics.md, "Actions")

SETTABLE = {
    "eth_dst", "eth_src", "vlan_vid", "vlan_pcp", "ip_dscp", "ip_ecn", "ipv4_src", "ipv4_dst",
    "tcp_src", "tcp_dst", "udp_src", "udp_dst", "sctp_src", "sctp_dst", "icmpv4_type",
    "icmpv4_code", "icmpv6_type", "icmpv6_code", "arp_op", "arp_spa", "arp_tpa", "arp_sha",
    "arp_tha", "ipv6_src", "ipv6_dst", "ipv6_flabel", "ipv6_nd_target", "ipv6_nd_sll",
    "ipv6_nd_tll", "tunnel_id", "tun_ipv4_src", "tun_ipv4_dst",
}


def _csum_update(frame: bytearray, at: int, old: bytes, new: bytes, udp: bool) -> None:
    """RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'), over the 16-bit words that
    changed.  A UDP checksum of 0 stays 0; one that computes to 0 is 0xffff."""
    hc = _be(frame, at, 2)
    if udp and hc == 0:
        return
    s = ~hc & 0xFFFF
    for i in range(0, len(old), 2):
        m, m2 = _be(old, i, 2), _be(new, i, 2)
        if m != m2:
            s += (~m & 0xFFFF) + m2
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    hc = ~s & 0xFFFF
    frame[at:at + 2] = (0xFFFF if udp and hc == 0 else hc).to_bytes(2, "big")


def _write(frame: bytearray, off: int, data: bytes, sums=()) -> None:
    """Write `data` at `off`, then update each checksum (csum_offset, base,
    is_udp) in `sums` for the change; `base` gives the 16-bit word alignment."""
    old = bytes(frame)
    frame[off:off + len(data)] = data
    for at, base, udp in sums:
        a = off - (off - base) % 2
        b = off + len(data) + (off + len(data) - base) % 2
        _csum_update(frame, at, old[a:b].ljust(b - a, b"\0"),
                     bytes(frame[a:b]).ljust(b - a, b"\0"), udp)


def _l4_sums(f: dict, lay: dict, pseudo: bool) -> list:
    """The L4 checksum to update for a change in the L4 header (or, with
    `pseudo`, in an address of the pseudo-header), if the L4 header is there."""
    l4 = lay.get("l4")
    if l4 is None:
        return []
    proto = f["ip_proto"]
    if proto == 6:
        return [(l4 + 16, l4, False)]
    if proto == 17:
        return [(l4 + 6, l4, True)]
    if proto == 58 or (proto == 1 and not pseudo):
        return [(l4 + 2, l4, False)]
    return []      # SCTP (CRC not updated), ICMPv4 has no pseudo-header


def set_field(frame: bytearray, in_port: int, name: str, value: int) -> None:
    """Rewrite one header field of `frame` in place (a no-op if the packet
    does not have the field), keeping checksums right."""
    f, lay = _parse(frame, in_port)
    if name not in f:
        return
    l3, l4 = lay.get("l3"), lay.get("l4")
    ip4 = [(l3 + 10, l3, False)] if l3 is not None and f["eth_type"] == 0x0800 else []
    if name in ("eth_dst", "eth_src"):
        _write(frame, 0 if name == "eth_dst" else 6, value.to_bytes(6, "big"))
    elif name in ("vlan_vid", "vlan_pcp"):
        tci = _be(frame, 14, 2)
        tci = ((tci & 0xF000) | (value & 0xFFF) if name == "vlan_vid"
               else (tci & 0x1FFF) | ((value & 7) << 13))
        _write(frame, 14, tci.to_bytes(2, "big"))
    elif name in ("ip_dscp", "ip_ecn") and ip4:
        tos = frame[l3 + 1]
        tos = (value << 2) | (tos & 3) if name == "ip_dscp" else (tos & 0xFC) | value
        _write(frame, l3 + 1, bytes([tos]), ip4)
    elif name in ("ip_dscp", "ip_ecn", "ipv6_flabel"):
        word = _be(frame, l3, 4)
        if name == "ip_dscp":
            word = (word & ~(0x3F << 22)) | (value << 22)
        elif name == "ip_ecn":
            word = (word & ~(3 << 20)) | (value << 20)
        else:
            word = (word & ~0xFFFFF) | value
        _write(frame, l3, word.to_bytes(4, "big"))
    elif name in ("ipv4_src", "ipv4_dst"):
        off = l3 + (12 if name == "ipv4_src" else 16)
        _write(frame, off, value.to_bytes(4, "big"), ip4 + _l4_sums(f, lay, True))
    elif name in ("ipv6_src", "ipv6_dst"):
        off = l3 + (8 if name == "ipv6_src" else 24)
        _write(frame, off, value.to_bytes(16, "big"), _l4_sums(f, lay, True))
    elif name.endswith(("_src", "_dst")):          # tcp/udp/sctp ports
        _write(frame, l4 + (0 if name.endswith("_src") else 2), value.to_bytes(2, "big"),
               _l4_sums(f, lay, False))
    elif name.endswith(("_type", "_code")):        # icmpv4/icmpv6
        _write(frame, l4 + (0 if name.endswith("_type") else 1), bytes([value]),
               _l4_sums(f, lay, False))
        if name.startswith("icmpv4"):
            # The incremental update cannot tell +0 from -0: a message that is
            # now all zeros sums to +0, and its checksum is 0xffff, not 0.
            end = min(len(frame), l3 + _be(frame, l3 + 2, 2))
            if _be(frame, l4 + 2, 2) == 0 and not any(frame[l4:end]):
                frame[l4 + 2:l4 + 4] = b"\xff\xff"
    elif name.startswith("arp_"):
        off, size = {"arp_op": (6, 2), "arp_sha": (8, 6), "arp_spa": (14, 4),
                     "arp_tha": (18, 6), "arp_tpa": (24, 4)}[name]
        _write(frame, l3 + off, value.to_bytes(size, "big"))
    elif name == "ipv6_nd_target":
        _write(frame, l4 + 8, value.to_bytes(16, "big"), _l4_sums(f, lay, False))
    elif name in ("ipv6_nd_sll", "ipv6_nd_tll"):
        _write(frame, lay[name[-3:]] + 2, value.to_bytes(6, "big"), _l4_sums(f, lay, False))


def set_ttl(frame: bytearray, in_port: int, ttl: int) -> None:
    """Set the IPv4 TTL (with the header checksum) or IPv6 hop limit."""
    f, lay = _parse(frame, in_port)
    if "ip_ttl" in f:
        l3 = lay["l3"]
        if f["eth_type"] == 0x0800:
            _write(frame, l3 + 8, bytes([ttl]), [(l3 + 10, l3, False)])
        else:
            _write(frame, l3 + 7, bytes([ttl]))


def push_vlan(frame: bytearray, in_port: int, tpid: int) -> None:
    """A new outer tag at offset 12, VID and PCP copied from the old outer
    tag (0 if none)."""
    f = parse(frame, in_port)
    if len(frame) < 14:
        return
    tci = (f.get("vlan_vid", 0) & 0xFFF) | (f.get("vlan_pcp", 0) << 13)
    frame[12:12] = tpid.to_bytes(2, "big") + tci.to_bytes(2, "big")


def pop_vlan(frame: bytearray, in_port: int) -> None:
    if "vlan_vid" in parse(frame, in_port):
        del frame[12:16]


# =============================================================================
# The pipeline


@dataclass
class PacketResult:
    outputs: list = field(default_factory=list)   # (port, frame bytes, queue)
    upcalls: list = field(default_factory=list)   # (reason, table_id, cookie, frame bytes)


@dataclass
class _Packet:
    """The packet on its way through the pipeline."""

    frame: bytearray
    in_port: int
    metadata: int = 0
    tunnel_id: int = 0
    tun_ipv4_src: int = 0           # tunnel metadata (a tunnel port sets them)
    tun_ipv4_dst: int = 0
    queue: int = 0

    def key(self) -> dict[str, int]:
        return {**parse(self.frame, self.in_port), "metadata": self.metadata,
                "tunnel_id": self.tunnel_id, "tun_ipv4_src": self.tun_ipv4_src,
                "tun_ipv4_dst": self.tun_ipv4_dst}

    def copy(self) -> _Packet:
        return dataclasses.replace(self, frame=bytearray(self.frame))


_INSTRUCTION_ORDER = (Meter, ApplyActions, ClearActions, WriteActions, WriteMetadata, GotoTable)
_SET_ORDER = (PopVlan, PushVlan, DecNwTtl, SetNwTtl, SetField, SetQueue, Group, Output)
_RESERVED_OUT = {ofp.OFPP_IN_PORT, ofp.OFPP_NORMAL, ofp.OFPP_FLOOD, ofp.OFPP_ALL,
                 ofp.OFPP_CONTROLLER, ofp.OFPP_LOCAL}


def _set_kind(action) -> tuple[int, int]:
    """The action-set slot of an action; sorting slots gives execution order."""
    sub = FIELDS[action.field].id if isinstance(action, SetField) else 0
    return _SET_ORDER.index(type(action)), sub


def _actions_of(entry: FlowEntry):
    for ins in entry.instructions:
        if isinstance(ins, (ApplyActions, WriteActions)):
            yield from ins.actions


class ModelPipeline:
    """Tables 0-254, groups, meters (ids only) and ports, with the semantics
    of docs/semantics.md.  Counters and timeouts are stored but never move."""

    def __init__(self) -> None:
        self.tables: dict[int, list[FlowEntry]] = {}
        self.groups: dict[int, tuple[int, tuple]] = {}     # id -> (type, buckets)
        self.meters: set[int] = set()
        self.ports: dict[int, tuple[bool, bool]] = {}      # port -> (live, no_flood)
        self.removed: list[FlowEntry] = []                 # SEND_FLOW_REM records

    # --- ports --------------------------------------------------------------

    def set_port(self, port: int, live: bool = True, no_flood: bool = False) -> None:
        if not 0 < port <= ofp.OFPP_MAX:
            raise ValueError(f"bad port number {port}")
        self.ports[port] = (live, no_flood)

    def del_port(self, port: int) -> None:
        del self.ports[port]

    # --- validation ---------------------------------------------------------

    def _check_actions(self, actions, match: Match | None) -> None:
        """Raise OFError unless `actions` is valid for a rule with `match`
        (None: in a group bucket, where set_field prerequisites are not
        checked and group actions are chaining)."""
        has_push = any(isinstance(a, PushVlan) for a in actions)
        for a in actions:
            if isinstance(a, Output):
                if a.port == 0 or (a.port > ofp.OFPP_MAX and a.port not in _RESERVED_OUT):
                    raise OFError(ET_BAD_ACTION, BAC_BAD_OUT_PORT, f"output to {a.port:#x}")
            elif isinstance(a, Group):
                if match is None:
                    raise OFError(ET_GROUP_MOD_FAILED, GMFC_CHAINING_UNSUPPORTED, "chaining")
                if a.group_id not in self.groups:
                    raise OFError(ET_BAD_ACTION, BAC_BAD_OUT_GROUP, f"no group {a.group_id}")
            elif isinstance(a, SetField):
                spec = FIELDS.get(a.field)
                if a.field not in SETTABLE:
                    raise OFError(ET_BAD_ACTION, BAC_BAD_SET_TYPE, f"cannot set {a.field}")
                if not 0 <= a.value <= spec.full_mask:
                    raise OFError(ET_BAD_ACTION, BAC_BAD_SET_ARGUMENT, f"{a.field}: too wide")
                if match is None:
                    continue
                if a.field in ("vlan_vid", "vlan_pcp"):
                    ok = has_push or _tagged(match.fields)
                else:
                    ok = prereqs_met(a.field, match.fields)
                if not ok:
                    raise OFError(ET_BAD_ACTION, BAC_MATCH_INCONSISTENT, f"set {a.field}")
            elif isinstance(a, PushVlan):
                if a.ethertype not in (0x8100, 0x88A8):
                    raise OFError(ET_BAD_ACTION, BAC_BAD_ARGUMENT, "push_vlan tpid")
            elif isinstance(a, SetNwTtl):
                if not 0 <= a.ttl <= 255:
                    raise OFError(ET_BAD_ACTION, BAC_BAD_ARGUMENT, "ttl")
            elif not isinstance(a, (SetQueue, PopVlan, DecNwTtl)):
                raise OFError(ET_BAD_ACTION, BAC_BAD_TYPE, f"unknown action {a!r}")

    def _check_instructions(self, instructions, table_id: int, match: Match) -> None:
        seen = set()
        for ins in instructions:
            if type(ins) not in _INSTRUCTION_ORDER:
                raise OFError(ET_BAD_INSTRUCTION, BIC_UNKNOWN_INST, f"{ins!r}")
            if type(ins) in seen:
                # OpenFlow 1.3 has no DUP_INST code (1.4 added it): "unsupported".
                raise OFError(ET_BAD_INSTRUCTION, BIC_UNSUP_INST, f"two {type(ins).__name__}")
            seen.add(type(ins))
            if isinstance(ins, Meter) and ins.meter_id not in self.meters:
                raise OFError(ET_METER_MOD_FAILED, MMFC_UNKNOWN_METER, f"meter {ins.meter_id}")
            if isinstance(ins, (ApplyActions, WriteActions)):
                self._check_actions(ins.actions, match)
            if isinstance(ins, WriteMetadata) and not (0 <= ins.value < 1 << 64
                                                       and 0 <= ins.mask < 1 << 64):
                raise OFError(ET_BAD_INSTRUCTION, BIC_UNSUP_METADATA, "metadata")
            if isinstance(ins, GotoTable) and not table_id < ins.table_id < N_TABLES:
                raise OFError(ET_BAD_INSTRUCTION, BIC_BAD_TABLE_ID, f"goto {ins.table_id}")

    # --- flow mods ----------------------------------------------------------

    def flow_mod(self, command: int = ofp.OFPFC_ADD, table_id: int = 0,
                 priority: int = 0x8000, match: Match | None = None, instructions=(),
                 cookie: int = 0, cookie_mask: int = 0, idle_timeout: int = 0,
                 hard_timeout: int = 0, flags: int = 0, out_port: int = ofp.OFPP_ANY,
                 out_group: int = ofp.OFPG_ANY) -> list[FlowEntry]:
        """Apply a flow mod.  Returns the entries a delete removed (every one,
        reason DELETE; those with SEND_FLOW_REM are also queued for
        drain_removed()).  On OFError nothing changed."""
        match = match if match is not None else Match()
        instructions = tuple(instructions)
        deleting = command in (ofp.OFPFC_DELETE, ofp.OFPFC_DELETE_STRICT)
        if command not in range(5):
            raise OFError(ET_FLOW_MOD_FAILED, FMFC_BAD_COMMAND, f"command {command}")
        if not (0 <= table_id < N_TABLES or (deleting and table_id == ofp.OFPTT_ALL)):
            raise OFError(ET_FLOW_MOD_FAILED, FMFC_BAD_TABLE_ID, f"table {table_id}")
        check_match(match)
        if not deleting:
            self._check_instructions(instructions, table_id, match)
        strict = command in (ofp.OFPFC_MODIFY_STRICT, ofp.OFPFC_DELETE_STRICT)

        def selected(e: FlowEntry) -> bool:
            if strict and (e.priority != priority or e.match != match):
                return False
            return (covers(match, e.match) and (e.cookie ^ cookie) & cookie_mask == 0
                    and (not deleting or self._has_out(e, out_port, out_group)))

        if command == ofp.OFPFC_ADD:
            table = self.tables.setdefault(table_id, [])
            if flags & ofp.OFPFF_CHECK_OVERLAP and any(
                    e.priority == priority and overlaps(e.match, match) for e in table):
                raise OFError(ET_FLOW_MOD_FAILED, FMFC_OVERLAP, "overlapping entry")
            new = FlowEntry(table_id, priority, match, instructions, cookie, idle_timeout,
                            hard_timeout, flags)
            same = [i for i, e in enumerate(table) if e.priority == priority and e.match == match]
            if same:
                table[same[0]] = new
            else:
                table.append(new)
            return []
        if not deleting:
            for e in self.tables.get(table_id, []):
                if selected(e):
                    e.instructions = instructions
            return []
        tids = range(N_TABLES) if table_id == ofp.OFPTT_ALL else [table_id]
        return self._remove(lambda e: e.table_id in tids and selected(e), ofp.OFPRR_DELETE)

    def add_flow(self, table_id: int = 0, priority: int = 0x8000, match: Match | None = None,
                 instructions=(), **kw) -> list[FlowEntry]:
        return self.flow_mod(ofp.OFPFC_ADD, table_id, priority, match, instructions, **kw)

    @staticmethod
    def _has_out(e: FlowEntry, out_port: int, out_group: int) -> bool:
        """The out_port / out_group filter of deletes (ANY: no filter)."""
        acts = list(_actions_of(e))
        port_ok = out_port == ofp.OFPP_ANY or any(
            isinstance(a, Output) and a.port == out_port for a in acts)
        group_ok = out_group == ofp.OFPG_ANY or any(
            isinstance(a, Group) and a.group_id == out_group for a in acts)
        return port_ok and group_ok

    def _remove(self, pred, reason: int) -> list[FlowEntry]:
        gone = []
        for tid in sorted(self.tables):
            gone += [e for e in self.tables[tid] if pred(e)]
            self.tables[tid] = [e for e in self.tables[tid] if not pred(e)]
        gone = [dataclasses.replace(e, reason=reason) for e in _sorted(gone)]
        self.removed += [e for e in gone if e.flags & ofp.OFPFF_SEND_FLOW_REM]
        return gone

    def dump_flows(self, table_id: int = ofp.OFPTT_ALL, match: Match | None = None,
                   out_port: int = ofp.OFPP_ANY, out_group: int = ofp.OFPG_ANY,
                   cookie: int = 0, cookie_mask: int = 0) -> list[FlowEntry]:
        """Entries selected as a non-strict delete would select them, in table
        order then descending priority."""
        match = match if match is not None else Match()
        return [dataclasses.replace(e) for tid in sorted(self.tables)
                for e in _sorted(self.tables[tid])
                if table_id in (ofp.OFPTT_ALL, tid) and covers(match, e.match)
                and (e.cookie ^ cookie) & cookie_mask == 0
                and self._has_out(e, out_port, out_group)]

    def drain_removed(self) -> list[FlowEntry]:
        """Removal records of entries that had SEND_FLOW_REM set."""
        out, self.removed = self.removed, []
        return out

    # --- groups and meters ---------------------------------------------------

    def group_mod(self, command: int, type: int, group_id: int, buckets=()) -> None:
        buckets = tuple(buckets)
        if command not in (ofp.OFPGC_ADD, ofp.OFPGC_MODIFY, ofp.OFPGC_DELETE):
            raise OFError(ET_GROUP_MOD_FAILED, GMFC_BAD_COMMAND, f"command {command}")
        if command == ofp.OFPGC_DELETE:
            if group_id == OFPG_ALL:
                doomed = set(self.groups)
            elif group_id > OFPG_MAX:
                raise OFError(ET_GROUP_MOD_FAILED, GMFC_INVALID_GROUP, f"group {group_id:#x}")
            else:
                doomed = {group_id} & set(self.groups)
            for g in doomed:
                del self.groups[g]
            self._remove(lambda e: any(isinstance(a, Group) and a.group_id in doomed
                                       for a in _actions_of(e)), ofp.OFPRR_GROUP_DELETE)
            return
        if group_id > OFPG_MAX:
            raise OFError(ET_GROUP_MOD_FAILED, GMFC_INVALID_GROUP, f"group {group_id:#x}")
        if type not in (ofp.OFPGT_ALL, ofp.OFPGT_SELECT, ofp.OFPGT_INDIRECT, ofp.OFPGT_FF):
            raise OFError(ET_GROUP_MOD_FAILED, GMFC_BAD_TYPE, f"type {type}")
        if type == ofp.OFPGT_INDIRECT and len(buckets) != 1:
            raise OFError(ET_GROUP_MOD_FAILED, GMFC_BAD_BUCKET, "indirect needs one bucket")
        for b in buckets:
            if b.watch_group != ofp.OFPG_ANY:
                raise OFError(ET_GROUP_MOD_FAILED, GMFC_WATCH_UNSUPPORTED, "watch_group")
            if type == ofp.OFPGT_FF and b.watch_port == ofp.OFPP_ANY:
                raise OFError(ET_GROUP_MOD_FAILED, GMFC_BAD_WATCH, "fast failover needs a watch")
            self._check_actions(b.actions, None)
        if command == ofp.OFPGC_ADD and group_id in self.groups:
            raise OFError(ET_GROUP_MOD_FAILED, GMFC_GROUP_EXISTS, f"group {group_id}")
        if command == ofp.OFPGC_MODIFY and group_id not in self.groups:
            raise OFError(ET_GROUP_MOD_FAILED, GMFC_UNKNOWN_GROUP, f"group {group_id}")
        self.groups[group_id] = (type, buckets)

    def meter_mod(self, command: int, meter_id: int, flags: int = ofp.OFPMF_KBPS,
                  bands=()) -> None:
        """Meters are only ids here (rates are time-based and out of scope)."""
        if command not in (ofp.OFPMC_ADD, ofp.OFPMC_MODIFY, ofp.OFPMC_DELETE):
            raise OFError(ET_METER_MOD_FAILED, MMFC_BAD_COMMAND, f"command {command}")
        if not 0 < meter_id <= OFPM_MAX:
            raise OFError(ET_METER_MOD_FAILED, MMFC_INVALID_METER, f"meter {meter_id:#x}")
        if command == ofp.OFPMC_ADD and meter_id in self.meters:
            raise OFError(ET_METER_MOD_FAILED, MMFC_METER_EXISTS, f"meter {meter_id}")
        if command == ofp.OFPMC_MODIFY and meter_id not in self.meters:
            raise OFError(ET_METER_MOD_FAILED, MMFC_UNKNOWN_METER, f"meter {meter_id}")
        if command == ofp.OFPMC_DELETE:
            self.meters.discard(meter_id)
            self._remove(lambda e: Meter(meter_id) in e.instructions, OFPRR_METER_DELETE)
        else:
            self.meters.add(meter_id)

    # --- packets --------------------------------------------------------------

    def lookup(self, table_id: int, key: dict[str, int]) -> FlowEntry | None:
        """The highest-priority entry of the table matching `key` (the first
        added among equals)."""
        hits = [e for e in self.tables.get(table_id, []) if matches(e.match, key)]
        return max(hits, key=lambda e: e.priority, default=None)

    def process(self, frame: bytes, in_port: int) -> PacketResult:
        res = PacketResult()
        pkt = _Packet(bytearray(frame), in_port)
        hash_ = select_hash(parse(frame, in_port))
        action_set: dict[tuple[int, int], object] = {}
        table_id, entry = 0, None
        while True:
            entry = self.lookup(table_id, pkt.key())
            if entry is None:
                return res              # table miss: drop, action set discarded
            ins = {type(i): i for i in entry.instructions}
            if ApplyActions in ins and not self._run(ins[ApplyActions].actions, pkt, entry,
                                                     hash_, res):
                return res
            if ClearActions in ins:
                action_set.clear()
            for a in ins[WriteActions].actions if WriteActions in ins else ():
                action_set[_set_kind(a)] = a
            if WriteMetadata in ins:
                wm = ins[WriteMetadata]
                pkt.metadata = (pkt.metadata & ~wm.mask) | (wm.value & wm.mask)
            if GotoTable not in ins:
                break
            table_id = ins[GotoTable].table_id
        actions = [action_set[k] for k in sorted(action_set)]
        if any(isinstance(a, Group) for a in actions):
            actions = [a for a in actions if not isinstance(a, Output)]
        self._run(actions, pkt, entry, hash_, res)
        return res

    def _run(self, actions, pkt: _Packet, rule: FlowEntry, hash_: int,
             res: PacketResult) -> bool:
        """Execute an action list on `pkt` on behalf of `rule`.  False if the
        packet was stopped (invalid TTL)."""
        for a in actions:
            if isinstance(a, Output):
                self._output(a.port, pkt, rule, res)
            elif isinstance(a, Group):
                for bucket in self._buckets(a.group_id, hash_):
                    self._run(bucket.actions, pkt.copy(), rule, hash_, res)
            elif isinstance(a, SetQueue):
                pkt.queue = a.queue_id
            elif isinstance(a, SetField) and a.field == "tunnel_id":
                pkt.tunnel_id = a.value
            elif isinstance(a, SetField) and a.field in ("tun_ipv4_src", "tun_ipv4_dst"):
                setattr(pkt, a.field, a.value)
            elif isinstance(a, SetField):
                set_field(pkt.frame, pkt.in_port, a.field, a.value)
            elif isinstance(a, PushVlan):
                push_vlan(pkt.frame, pkt.in_port, a.ethertype)
            elif isinstance(a, PopVlan):
                pop_vlan(pkt.frame, pkt.in_port)
            elif isinstance(a, SetNwTtl):
                set_ttl(pkt.frame, pkt.in_port, a.ttl)
            elif isinstance(a, DecNwTtl):
                ttl = parse(pkt.frame, pkt.in_port).get("ip_ttl")
                if ttl is not None and ttl <= 1:
                    res.upcalls.append((ofp.OFPR_INVALID_TTL, rule.table_id, rule.cookie,
                                        bytes(pkt.frame)))
                    return False
                if ttl is not None:
                    set_ttl(pkt.frame, pkt.in_port, ttl - 1)
        return True

    def _buckets(self, group_id: int, hash_: int) -> list:
        gtype, buckets = self.groups[group_id]

        def live(b) -> bool:
            return b.watch_port == ofp.OFPP_ANY or self.ports.get(b.watch_port, (False,))[0]

        if gtype in (ofp.OFPGT_ALL, ofp.OFPGT_INDIRECT):
            return list(buckets)
        if gtype == ofp.OFPGT_FF:
            return [next(b for b in buckets if live(b))] if any(map(live, buckets)) else []
        cands = [b for b in buckets if b.weight > 0 and live(b)]
        if not cands:
            return []
        pick = hash_ % sum(b.weight for b in cands)
        for b in cands:
            if pick < b.weight:
                return [b]
            pick -= b.weight
        raise AssertionError("unreachable")

    def _output(self, port: int, pkt: _Packet, rule: FlowEntry, res: PacketResult) -> None:
        data = bytes(pkt.frame)
        if port == ofp.OFPP_CONTROLLER:
            reason = ofp.OFPR_NO_MATCH if is_table_miss(rule) else ofp.OFPR_ACTION
            res.upcalls.append((reason, rule.table_id, rule.cookie, data))
        elif port == ofp.OFPP_IN_PORT:
            res.outputs.append((pkt.in_port, data, pkt.queue))
        elif port in (ofp.OFPP_ALL, ofp.OFPP_FLOOD):
            for p, (_live, no_flood) in sorted(self.ports.items()):
                if p != pkt.in_port and not (port == ofp.OFPP_FLOOD and no_flood):
                    res.outputs.append((p, data, pkt.queue))
        elif port != pkt.in_port:
            res.outputs.append((port, data, pkt.queue))


def _sorted(entries) -> list[FlowEntry]:
    """Table order, then descending priority (stable)."""
    return sorted(entries, key=lambda e: (e.table_id, -e.priority))
