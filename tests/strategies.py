"""Hypothesis strategies for pipeline tests (the model's own and C-vs-model).

Frames, matches and set_field values are drawn from the same small pools of
addresses, ports and tags, so that random rules actually hit random packets.

    frames()                          valid frames of every protocol in docs/parsing.md,
                                      truncated ones, random garbage (bytes)
    matches()                         valid Matches (prerequisites satisfied)
    action_lists(match, group_ids)    valid apply/write action lists for a rule with `match`
    bucket_action_lists()             valid group bucket action lists (no groups)
    instruction_lists(table_id, n_tables, match, group_ids, meter_ids)
    groups()                          [(group_id, type, buckets)] to install first
    rule_sets(n_tables, group_ids)    [(table_id, priority, match, instructions)]
"""

from __future__ import annotations

import ipaddress

from hypothesis import strategies as st
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
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

from vswitch import ofp
from vswitch.model import prereqs_met
from vswitch.ofp import (
    FIELDS,
    ApplyActions,
    Bucket,
    ClearActions,
    DecNwTtl,
    GotoTable,
    Group,
    Match,
    Meter,
    Output,
    PopVlan,
    PushVlan,
    SetField,
    SetNwTtl,
    SetQueue,
    WriteActions,
    WriteMetadata,
)

# --- value pools ---------------------------------------------------------------

PORTS = [1, 2, 3, 4]                     # ports a test pipeline knows (set_port)
MACS = [0x020000000001, 0x020000000002, 0xFFFFFFFFFFFF]
IP4S = [0x0A000001, 0x0A000002, 0xC0A80101]
IP6S = [0x20010DB8 << 96 | 1, 0x20010DB8 << 96 | 2, 0xFE80 << 112 | 0x1234]
L4PORTS = [0, 53, 80]
VIDS = [1, 2, 100]
PCPS = [0, 3, 7]
DSCPS = [0, 10, 46]
TTLS = [0, 1, 2, 64]
FLABELS = [0, 1, 0x12345]
TCP_FLAGS = [0x002, 0x012, 0x010, 0x011]
ICMP4_TYPES, ICMP6_TYPES, ICMP_CODES = [0, 3, 8], [128, 129, 135, 136], [0, 1]
MPLS_LABELS = [16, 17, 0xFFFFF]
METADATA = [0, 1, 0xFF, 1 << 63]
EXTHDRS = [0, 0x040, 0x010, 0x008, 0x020, 0x048]
RESERVED_OUT = [ofp.OFPP_IN_PORT, ofp.OFPP_ALL, ofp.OFPP_FLOOD, ofp.OFPP_CONTROLLER,
                ofp.OFPP_LOCAL, ofp.OFPP_NORMAL]


def _mac(v: int) -> str:
    return ":".join(f"{b:02x}" for b in v.to_bytes(6, "big"))


def _ip4(v: int) -> str:
    return ".".join(str(b) for b in v.to_bytes(4, "big"))


def _ip6(v: int) -> str:
    return str(ipaddress.IPv6Address(v))


# --- frames --------------------------------------------------------------------

def _l4_v4(draw):
    kind = draw(st.sampled_from(["tcp", "udp", "sctp", "icmp", "other"]))
    sport, dport = draw(st.sampled_from(L4PORTS)), draw(st.sampled_from(L4PORTS))
    if kind == "tcp":
        return TCP(sport=sport, dport=dport, flags=draw(st.sampled_from(TCP_FLAGS)))
    if kind == "udp":
        return UDP(sport=sport, dport=dport)
    if kind == "sctp":
        return SCTP(sport=sport, dport=dport)
    if kind == "icmp":
        return ICMP(type=draw(st.sampled_from(ICMP4_TYPES)), code=draw(st.sampled_from(ICMP_CODES)))
    return None


def _l4_v6(draw):
    kind = draw(st.sampled_from(["tcp", "udp", "sctp", "echo", "ns", "na", "other"]))
    sport, dport = draw(st.sampled_from(L4PORTS)), draw(st.sampled_from(L4PORTS))
    tgt = _ip6(draw(st.sampled_from(IP6S)))
    mac = _mac(draw(st.sampled_from(MACS)))
    if kind == "tcp":
        return TCP(sport=sport, dport=dport, flags=draw(st.sampled_from(TCP_FLAGS)))
    if kind == "udp":
        return UDP(sport=sport, dport=dport)
    if kind == "sctp":
        return SCTP(sport=sport, dport=dport)
    if kind == "echo":
        cls = draw(st.sampled_from([ICMPv6EchoRequest, ICMPv6EchoReply]))
        return cls(code=draw(st.sampled_from(ICMP_CODES)))
    if kind == "ns":
        ns = ICMPv6ND_NS(tgt=tgt)
        return ns / ICMPv6NDOptSrcLLAddr(lladdr=mac) if draw(st.booleans()) else ns
    if kind == "na":
        na = ICMPv6ND_NA(tgt=tgt)
        return na / ICMPv6NDOptDstLLAddr(lladdr=mac) if draw(st.booleans()) else na
    return None


_EXT = {"hop": IPv6ExtHdrHopByHop, "dest": IPv6ExtHdrDestOpt, "rt": IPv6ExtHdrRouting}


@st.composite
def packets(draw, max_tags: int = 2):
    """A scapy packet of one of the protocols the parser knows, with up to
    `max_tags` VLAN tags."""
    dst, src = draw(st.sampled_from(MACS)), draw(st.sampled_from(MACS))
    kind = draw(st.sampled_from(["ipv4", "ipv4", "ipv6", "ipv6", "arp", "mpls", "llc", "other"]))
    if kind == "llc":
        return Dot3(dst=_mac(dst), src=_mac(src)) / LLC() / b"payload"
    pkt = Ether(dst=_mac(dst), src=_mac(src))
    for i in range(min(max_tags, draw(st.sampled_from([0, 0, 1, 2])))):
        if i == 0 and draw(st.booleans()):
            pkt.type = 0x88A8
        pkt = pkt / Dot1Q(vlan=draw(st.sampled_from(VIDS)), prio=draw(st.sampled_from(PCPS)))
    ttl, dscp, ecn = (draw(st.sampled_from(p)) for p in (TTLS, DSCPS, [0, 1, 2, 3]))
    if kind == "ipv4":
        frag = draw(st.sampled_from(["none", "none", "none", "first", "later"]))
        ip = IP(src=_ip4(draw(st.sampled_from(IP4S))), dst=_ip4(draw(st.sampled_from(IP4S))),
                ttl=ttl, tos=dscp << 2 | ecn, flags="MF" if frag != "none" else 0,
                frag=100 if frag == "later" else 0)
        l4 = _l4_v4(draw)
        return pkt / ip / (l4 if l4 is not None else b"\x00" * 8)
    if kind == "ipv6":
        ip = IPv6(src=_ip6(draw(st.sampled_from(IP6S))), dst=_ip6(draw(st.sampled_from(IP6S))),
                  hlim=ttl, tc=dscp << 2 | ecn, fl=draw(st.sampled_from(FLABELS)))
        for ext in draw(st.lists(st.sampled_from(["hop", "dest", "rt", "frag", "later"]),
                                 max_size=2)):
            if ext in ("frag", "later"):
                ip = ip / IPv6ExtHdrFragment(m=1, offset=8 if ext == "later" else 0)
            else:
                ip = ip / _EXT[ext]()
        l4 = _l4_v6(draw)
        if l4 is None:
            return pkt / ip / IPv6ExtHdrDestOpt(nh=59)
        if isinstance(l4, (ICMPv6ND_NS, ICMPv6ND_NA)):
            ip.hlim = 255
        return pkt / ip / l4
    if kind == "arp":
        return pkt / ARP(op=draw(st.sampled_from([1, 2])),
                         hwsrc=_mac(draw(st.sampled_from(MACS))),
                         psrc=_ip4(draw(st.sampled_from(IP4S))),
                         hwdst=_mac(draw(st.sampled_from(MACS))),
                         pdst=_ip4(draw(st.sampled_from(IP4S))))
    if kind == "mpls":
        if isinstance(pkt.lastlayer(), Dot1Q):
            pkt.lastlayer().type = 0x8847
        else:
            pkt.type = 0x8847
        return pkt / MPLS(label=draw(st.sampled_from(MPLS_LABELS)), cos=draw(st.integers(0, 7)),
                          s=1, ttl=ttl) / IP() / UDP()
    pkt.lastlayer().type = 0x1234
    return pkt / (b"\x00" * 20)


@st.composite
def frames(draw, garbage: bool = True, max_tags: int = 2):
    """Frame bytes: mostly whole valid frames, some truncated, some random."""
    choice = draw(st.integers(0, 9))
    if garbage and choice == 0:
        return draw(st.binary(max_size=80))
    frame = bytes(draw(packets(max_tags)))
    if choice == 1:
        return frame[:draw(st.integers(0, len(frame)))]
    return frame


def in_ports():
    return st.sampled_from(PORTS)


# --- matches -------------------------------------------------------------------

_POOLS = {
    "in_port": PORTS, "metadata": METADATA, "eth_dst": MACS, "eth_src": MACS,
    "vlan_pcp": PCPS, "ip_dscp": DSCPS, "ip_ecn": [0, 1, 2, 3], "ipv4_src": IP4S,
    "ipv4_dst": IP4S, "tcp_src": L4PORTS, "tcp_dst": L4PORTS, "udp_src": L4PORTS,
    "udp_dst": L4PORTS, "sctp_src": L4PORTS, "sctp_dst": L4PORTS,
    "icmpv4_type": ICMP4_TYPES, "icmpv4_code": ICMP_CODES, "icmpv6_type": ICMP6_TYPES,
    "icmpv6_code": ICMP_CODES, "arp_op": [1, 2], "arp_spa": IP4S, "arp_tpa": IP4S,
    "arp_sha": MACS, "arp_tha": MACS, "ipv6_src": IP6S, "ipv6_dst": IP6S,
    "ipv6_flabel": FLABELS, "ipv6_nd_target": IP6S, "ipv6_nd_sll": MACS, "ipv6_nd_tll": MACS,
    "mpls_label": MPLS_LABELS, "mpls_tc": [0, 5], "mpls_bos": [0, 1], "tunnel_id": [0, 1, 7],
    "ipv6_exthdr": EXTHDRS, "ip_frag": [0, 1, 3], "tcp_flags": TCP_FLAGS, "ip_ttl": TTLS,
    "vlan_vid": [0x1000 | v for v in VIDS],
}
_MASKS = {
    "eth_dst": [0xFFFFFF000000, 0x010000000000], "eth_src": [0xFFFFFF000000],
    "arp_sha": [0xFFFFFF000000], "arp_tha": [0xFFFFFF000000],
    "ipv4_src": [0xFFFFFF00, 0xFF000000], "ipv4_dst": [0xFFFFFF00, 0xFFFF0000],
    "arp_spa": [0xFFFFFF00], "arp_tpa": [0xFFFFFF00],
    "ipv6_src": [(1 << 128) - (1 << 64)], "ipv6_dst": [(1 << 128) - (1 << 64)],
    "metadata": [0xFF, 1 << 63], "tunnel_id": [0xFF], "ipv6_flabel": [0xFFFF0],
    "ipv6_exthdr": [0x040, 0x010], "ip_frag": [1, 2], "tcp_flags": [0x002, 0x010],
    "vlan_vid": [0x10FF],
}

# Layer paths: (eth_type values, ip_proto values, the fields each step opens).
_L2 = ["in_port", "metadata", "eth_dst", "eth_src", "tunnel_id", "vlan_vid"]
_L3 = {
    0x0800: ["ip_dscp", "ip_ecn", "ip_frag", "ip_ttl", "ipv4_src", "ipv4_dst"],
    0x86DD: ["ip_dscp", "ip_ecn", "ip_frag", "ip_ttl", "ipv6_src", "ipv6_dst", "ipv6_flabel",
             "ipv6_exthdr"],
    0x0806: ["arp_op", "arp_spa", "arp_tpa", "arp_sha", "arp_tha"],
    0x8847: ["mpls_label", "mpls_tc", "mpls_bos"],
    0x1234: [],
}
_L4 = {
    6: ["tcp_src", "tcp_dst", "tcp_flags"], 17: ["udp_src", "udp_dst"],
    132: ["sctp_src", "sctp_dst"], 1: ["icmpv4_type", "icmpv4_code"],
    58: ["icmpv6_type", "icmpv6_code"],
}


def _field_value(draw, name: str) -> tuple[int, int]:
    full = FIELDS[name].full_mask
    v = draw(st.sampled_from(_POOLS[name]))
    if name in _MASKS and draw(st.integers(0, 2)) == 0:
        m = draw(st.sampled_from(_MASKS[name]))
        return v & m, m
    return v, full


@st.composite
def matches(draw, max_fields: int = 3):
    """A valid Match: fields from the pools, some masked, prerequisites met."""
    fields: dict[str, tuple[int, int]] = {}
    depth = draw(st.sampled_from([0, 0, 1, 1, 2, 2, 3]))
    names = list(_L2)
    if depth >= 1:
        eth_type = draw(st.sampled_from(sorted(_L3)))
        fields["eth_type"] = (eth_type, 0xFFFF)
        names += _L3[eth_type]
        if depth >= 2 and eth_type in (0x0800, 0x86DD):
            protos = [6, 17, 132, 1] if eth_type == 0x0800 else [6, 17, 132, 58]
            proto = draw(st.sampled_from(protos))
            fields["ip_proto"] = (proto, 0xFF)
            names += _L4[proto]
            if depth >= 3 and proto == 58:
                t = draw(st.sampled_from([135, 136]))
                fields["icmpv6_type"] = (t, 0xFF)
                names += ["ipv6_nd_target", "ipv6_nd_sll" if t == 135 else "ipv6_nd_tll"]
    n = draw(st.sampled_from([0, 1, 1, 2, max_fields]))
    for name in draw(st.lists(st.sampled_from(names), min_size=n, max_size=n, unique=True)):
        if name not in fields:
            fields[name] = _field_value(draw, name)
    if "vlan_vid" in fields and fields["vlan_vid"][0] & 0x1000 and draw(st.booleans()):
        fields["vlan_pcp"] = (draw(st.sampled_from(PCPS)), 7)
    elif "vlan_vid" in fields and draw(st.integers(0, 3)) == 0:
        fields["vlan_vid"] = draw(st.sampled_from([(0, 0x1FFF), (0x1000, 0x1000)]))
    return Match.from_fields(fields)


# --- actions and instructions ----------------------------------------------------

_ANYWHERE = ["eth_dst", "eth_src", "tunnel_id"]
_SETTABLE_BY_PREREQ = [
    "ip_dscp", "ip_ecn", "ipv4_src", "ipv4_dst", "tcp_src", "tcp_dst", "udp_src", "udp_dst",
    "sctp_src", "sctp_dst", "icmpv4_type", "icmpv4_code", "icmpv6_type", "icmpv6_code",
    "arp_op", "arp_spa", "arp_tpa", "arp_sha", "arp_tha", "ipv6_src", "ipv6_dst",
    "ipv6_flabel", "ipv6_nd_target", "ipv6_nd_sll", "ipv6_nd_tll",
]


def _settable(match: Match | None, with_push: bool) -> list[str]:
    """Fields a set_field may name in a rule with `match` (None: a bucket)."""
    if match is None:
        return _ANYWHERE + ["vlan_vid", "vlan_pcp"] + _SETTABLE_BY_PREREQ
    out = _ANYWHERE + [f for f in _SETTABLE_BY_PREREQ if prereqs_met(f, match.fields)]
    v, m = match.fields.get("vlan_vid", (0, 0))
    if with_push or v & m & 0x1000:
        out += ["vlan_vid", "vlan_pcp"]
    return out


def _set_value(draw, name: str) -> int:
    if name == "vlan_vid":
        return draw(st.sampled_from([0x1000 | v for v in VIDS] + VIDS))
    return draw(st.sampled_from(_POOLS[name]))


@st.composite
def _action(draw, settable: list[str], group_ids, in_bucket: bool):
    kinds = ["output"] * 4 + ["set_field"] * 3 + ["push", "pop", "queue", "ttl", "dec"]
    if group_ids and not in_bucket:
        kinds.append("group")
    kind = draw(st.sampled_from(kinds))
    if kind == "output":
        port = draw(st.sampled_from(PORTS + PORTS + RESERVED_OUT + [7]))
        return Output(port, draw(st.sampled_from([ofp.OFPCML_NO_BUFFER, 128])))
    if kind == "set_field":
        name = draw(st.sampled_from(settable))
        return SetField(name, _set_value(draw, name))
    if kind == "push":
        return PushVlan(draw(st.sampled_from([0x8100, 0x88A8])))
    if kind == "pop":
        return PopVlan()
    if kind == "queue":
        return SetQueue(draw(st.sampled_from([0, 1, 5])))
    if kind == "ttl":
        return SetNwTtl(draw(st.sampled_from(TTLS)))
    if kind == "dec":
        return DecNwTtl()
    return Group(draw(st.sampled_from(list(group_ids))))


@st.composite
def action_lists(draw, match: Match | None = None, group_ids=(), max_size: int = 4):
    """A valid action list for a rule matching `match` (set_field only on
    fields whose prerequisites the match meets; vlan fields after a push)."""
    with_push = draw(st.booleans())
    settable = _settable(match if match is not None else Match(), with_push)
    acts = draw(st.lists(_action(settable, group_ids, False), max_size=max_size))
    if with_push and any(isinstance(a, SetField) and a.field.startswith("vlan") for a in acts):
        acts.insert(0, PushVlan(0x8100))
    return tuple(acts)


@st.composite
def bucket_action_lists(draw, max_size: int = 3):
    return tuple(draw(st.lists(_action(_settable(None, True), (), True), max_size=max_size)))


@st.composite
def instruction_lists(draw, table_id: int = 0, n_tables: int = 1, match: Match | None = None,
                      group_ids=(), meter_ids=()):
    """Valid instructions for a rule in `table_id` of a pipeline using tables
    0..n_tables-1 (gotos only forward), in random order."""
    out = []
    if meter_ids and draw(st.integers(0, 4)) == 0:
        out.append(Meter(draw(st.sampled_from(list(meter_ids)))))
    if draw(st.integers(0, 3)):
        out.append(ApplyActions(draw(action_lists(match, group_ids))))
    if draw(st.integers(0, 5)) == 0:
        out.append(ClearActions())
    if draw(st.booleans()):
        out.append(WriteActions(draw(action_lists(match, group_ids))))
    if draw(st.integers(0, 4)) == 0:
        out.append(WriteMetadata(draw(st.sampled_from(METADATA)),
                                 draw(st.sampled_from([0xFF, 1 << 63, (1 << 64) - 1]))))
    if table_id + 1 < n_tables and draw(st.booleans()):
        out.append(GotoTable(draw(st.integers(table_id + 1, n_tables - 1))))
    return tuple(draw(st.permutations(out)))


@st.composite
def groups(draw, max_groups: int = 3):
    """[(group_id, type, buckets)] with distinct ids, valid for group_mod ADD."""
    ids = draw(st.lists(st.sampled_from([1, 2, 3, 10, 0xFFFFFF00]), max_size=max_groups,
                        unique=True))
    out = []
    for gid in ids:
        gtype = draw(st.sampled_from([ofp.OFPGT_ALL, ofp.OFPGT_SELECT, ofp.OFPGT_INDIRECT,
                                      ofp.OFPGT_FF]))
        n = 1 if gtype == ofp.OFPGT_INDIRECT else draw(st.integers(0, 3))
        watch = PORTS + [9] + ([] if gtype == ofp.OFPGT_FF else [ofp.OFPP_ANY] * 3)
        buckets = [Bucket(draw(bucket_action_lists()), weight=draw(st.sampled_from([0, 1, 1, 3])),
                          watch_port=draw(st.sampled_from(watch)))
                   for _ in range(n)]
        out.append((gid, gtype, buckets))
    return out


@st.composite
def rule_sets(draw, n_tables: int = 3, group_ids=(), meter_ids=(), max_rules: int = 8):
    """[(table_id, priority, match, instructions)], priorities unique per table."""
    rules = []
    used: set[tuple[int, int]] = set()
    if draw(st.booleans()):       # a table-miss entry makes most packets do something
        used.add((0, 0))
        rules.append((0, 0, Match(), draw(instruction_lists(0, n_tables, Match(), group_ids,
                                                             meter_ids))))
    tables = st.sampled_from([0, 0, 0, 1, 1, 2, 3, 4][:n_tables * 2 - 1] or [0])
    for _ in range(draw(st.integers(1, max_rules))):
        table_id = min(draw(tables), n_tables - 1)
        priority = draw(st.sampled_from([0, 1, 10, 100, 1000, 0x8000, 0xFFFF]))
        if (table_id, priority) in used:
            continue
        used.add((table_id, priority))
        match = draw(matches())
        ins = draw(instruction_lists(table_id, n_tables, match, group_ids, meter_ids))
        rules.append((table_id, priority, match, ins))
    return rules
