"""OpenFlow 1.3 vocabulary shared by the C core's Python face and the model.

Plain values only: match fields, actions, instructions, group buckets and
meter bands.  Nothing here touches C; `vswitch.flowtable` encodes these for
the fast path and `vswitch.model` interprets them directly.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

# Reserved ports (OFPP_*), groups, tables.
OFPP_MAX = 0xFFFFFF00
OFPP_IN_PORT = 0xFFFFFFF8
OFPP_TABLE = 0xFFFFFFF9
OFPP_NORMAL = 0xFFFFFFFA
OFPP_FLOOD = 0xFFFFFFFB
OFPP_ALL = 0xFFFFFFFC
OFPP_CONTROLLER = 0xFFFFFFFD
OFPP_LOCAL = 0xFFFFFFFE
OFPP_ANY = 0xFFFFFFFF
OFPG_ANY = 0xFFFFFFFF
OFPTT_ALL = 0xFF
OFPCML_NO_BUFFER = 0xFFFF
OFPVID_PRESENT = 0x1000

# Flow-mod commands and flags.
OFPFC_ADD, OFPFC_MODIFY, OFPFC_MODIFY_STRICT, OFPFC_DELETE, OFPFC_DELETE_STRICT = range(5)
OFPFF_SEND_FLOW_REM = 0x01
OFPFF_CHECK_OVERLAP = 0x02
OFPFF_RESET_COUNTS = 0x04
OFPFF_NO_PKT_COUNTS = 0x08
OFPFF_NO_BYT_COUNTS = 0x10

# Group types and commands; meter flags and band types.
OFPGT_ALL, OFPGT_SELECT, OFPGT_INDIRECT, OFPGT_FF = range(4)
OFPGC_ADD, OFPGC_MODIFY, OFPGC_DELETE = range(3)
OFPMC_ADD, OFPMC_MODIFY, OFPMC_DELETE = range(3)
OFPMF_KBPS, OFPMF_PKTPS, OFPMF_BURST, OFPMF_STATS = 1, 2, 4, 8
OFPMBT_DROP, OFPMBT_DSCP_REMARK = 1, 2

# Packet-in and flow-removed reasons.
OFPR_NO_MATCH, OFPR_ACTION, OFPR_INVALID_TTL = range(3)
OFPRR_IDLE_TIMEOUT, OFPRR_HARD_TIMEOUT, OFPRR_DELETE, OFPRR_GROUP_DELETE = range(4)


@dataclass(frozen=True)
class FieldSpec:
    """One match field: its id (OXM field number, or a vswitch extension
    number >= 40), width in bytes, meaningful bits, and whether OpenFlow
    allows a mask."""

    name: str
    id: int
    nbytes: int
    bits: int
    maskable: bool

    @property
    def full_mask(self) -> int:
        return (1 << self.bits) - 1


def _f(name: str, id: int, nbytes: int, bits: int, maskable: bool) -> FieldSpec:
    return FieldSpec(name, id, nbytes, bits, maskable)


FIELDS: dict[str, FieldSpec] = {
    f.name: f
    for f in (
        _f("in_port", 0, 4, 32, False),
        _f("in_phy_port", 1, 4, 32, False),
        _f("metadata", 2, 8, 64, True),
        _f("eth_dst", 3, 6, 48, True),
        _f("eth_src", 4, 6, 48, True),
        _f("eth_type", 5, 2, 16, False),
        _f("vlan_vid", 6, 2, 13, True),
        _f("vlan_pcp", 7, 1, 3, False),
        _f("ip_dscp", 8, 1, 6, False),
        _f("ip_ecn", 9, 1, 2, False),
        _f("ip_proto", 10, 1, 8, False),
        _f("ipv4_src", 11, 4, 32, True),
        _f("ipv4_dst", 12, 4, 32, True),
        _f("tcp_src", 13, 2, 16, False),
        _f("tcp_dst", 14, 2, 16, False),
        _f("udp_src", 15, 2, 16, False),
        _f("udp_dst", 16, 2, 16, False),
        _f("sctp_src", 17, 2, 16, False),
        _f("sctp_dst", 18, 2, 16, False),
        _f("icmpv4_type", 19, 1, 8, False),
        _f("icmpv4_code", 20, 1, 8, False),
        _f("arp_op", 21, 2, 16, False),
        _f("arp_spa", 22, 4, 32, True),
        _f("arp_tpa", 23, 4, 32, True),
        _f("arp_sha", 24, 6, 48, True),
        _f("arp_tha", 25, 6, 48, True),
        _f("ipv6_src", 26, 16, 128, True),
        _f("ipv6_dst", 27, 16, 128, True),
        _f("ipv6_flabel", 28, 4, 20, True),
        _f("icmpv6_type", 29, 1, 8, False),
        _f("icmpv6_code", 30, 1, 8, False),
        _f("ipv6_nd_target", 31, 16, 128, False),
        _f("ipv6_nd_sll", 32, 6, 48, False),
        _f("ipv6_nd_tll", 33, 6, 48, False),
        _f("mpls_label", 34, 4, 20, False),
        _f("mpls_tc", 35, 1, 3, False),
        _f("mpls_bos", 36, 1, 1, False),
        _f("pbb_isid", 37, 3, 24, True),
        _f("tunnel_id", 38, 8, 64, True),
        _f("ipv6_exthdr", 39, 2, 9, True),
        _f("ip_frag", 40, 1, 2, True),
        _f("tcp_flags", 41, 2, 12, True),
        _f("ip_ttl", 42, 1, 8, False),
        # Tunnel metadata; the OpenFlow codec maps them to NXM_NX_TUN_IPV4_SRC/DST.
        _f("tun_ipv4_src", 43, 4, 32, True),
        _f("tun_ipv4_dst", 44, 4, 32, True),
    )
}
FIELDS_BY_ID: dict[int, FieldSpec] = {f.id: f for f in FIELDS.values()}

_MAC_FIELDS = {"eth_dst", "eth_src", "arp_sha", "arp_tha", "ipv6_nd_sll", "ipv6_nd_tll"}
_IPV4_FIELDS = {"ipv4_src", "ipv4_dst", "arp_spa", "arp_tpa", "tun_ipv4_src", "tun_ipv4_dst"}
_IPV6_FIELDS = {"ipv6_src", "ipv6_dst", "ipv6_nd_target"}

FieldValue = int | str | bytes | tuple


def parse_value(name: str, value: FieldValue) -> tuple[int, int]:
    """Normalise a field value to (value, mask) integers.

    Accepts an int, big-endian bytes, the usual text forms ("aa:bb:..",
    "10.0.0.0/8", "fe80::1", "0x800") and a (value, mask) tuple of any of
    those.  Raises ValueError for unknown fields, out-of-range values and
    masks on fields OpenFlow does not let you mask.
    """
    spec = FIELDS.get(name)
    if spec is None:
        raise ValueError(f"unknown field {name!r}")
    if isinstance(value, tuple):
        if len(value) != 2:
            raise ValueError(f"{name}: expected (value, mask)")
        v, _ = parse_value(name, value[0])
        m, _ = parse_value(name, value[1])
    else:
        if isinstance(value, str) and "/" in value:
            v, m = _parse_prefix(name, value)
        else:
            v, m = _parse_one(name, value), spec.full_mask
    if v < 0 or v > spec.full_mask or m < 0 or m > spec.full_mask:
        raise ValueError(f"{name}: value out of range for {spec.bits} bits")
    if m != spec.full_mask and not spec.maskable:
        raise ValueError(f"{name}: field cannot be masked")
    return v, m


def _parse_one(name: str, value: FieldValue) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name}: bad value {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, bytes):
        return int.from_bytes(value, "big")
    if not isinstance(value, str):
        raise ValueError(f"{name}: bad value {value!r}")
    text = value.strip()
    try:
        if name in _MAC_FIELDS and ":" in text:
            parts = text.split(":")
            if len(parts) != 6:
                raise ValueError
            return int.from_bytes(bytes(int(p, 16) for p in parts), "big")
        if name in _IPV4_FIELDS and "." in text:
            return int(ipaddress.IPv4Address(text))
        if name in _IPV6_FIELDS and ":" in text:
            return int(ipaddress.IPv6Address(text))
        return int(text, 0)
    except ValueError:
        raise ValueError(f"{name}: bad value {value!r}") from None


def _parse_prefix(name: str, text: str) -> tuple[int, int]:
    addr, _, plen = text.partition("/")
    spec = FIELDS[name]
    v = _parse_one(name, addr)
    if plen.isdigit():
        n = int(plen)
        if n > spec.bits:
            raise ValueError(f"{name}: prefix /{n} too long")
        m = ((1 << n) - 1) << (spec.bits - n)
    else:
        m = _parse_one(name, plen)
    return v & m, m


class Match:
    """A set of field constraints: name -> (value, mask), value within mask.

    Match(eth_type=0x800, ipv4_dst="10.0.0.0/8", tcp_dst=80) ...
    Fields not named are wildcarded.  Prerequisites are not checked here:
    the core checks them (and so does the model) when a rule is installed.
    """

    __slots__ = ("fields",)

    def __init__(self, **fields: FieldValue) -> None:
        norm: dict[str, tuple[int, int]] = {}
        for name, value in fields.items():
            v, m = parse_value(name, value)
            if m:
                norm[name] = (v & m, m) if v & ~m == 0 else (v, m)
        self.fields = norm

    @classmethod
    def from_fields(cls, fields: dict[str, tuple[int, int]]) -> Match:
        m = cls()
        m.fields = {k: (v, mk) for k, (v, mk) in fields.items() if mk}
        return m

    def get(self, name: str) -> tuple[int, int] | None:
        return self.fields.get(name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Match) and self.fields == other.fields

    def __hash__(self) -> int:
        return hash(frozenset(self.fields.items()))

    def __repr__(self) -> str:
        parts = []
        for k, (v, m) in sorted(self.fields.items(), key=lambda kv: FIELDS[kv[0]].id):
            full = FIELDS[k].full_mask
            parts.append(f"{k}={v:#x}" if m == full else f"{k}={v:#x}/{m:#x}")
        return f"Match({', '.join(parts)})"


# --- actions ---------------------------------------------------------------

@dataclass(frozen=True)
class Output:
    port: int
    max_len: int = OFPCML_NO_BUFFER


@dataclass(frozen=True)
class Group:
    group_id: int


@dataclass(frozen=True)
class SetQueue:
    queue_id: int


@dataclass(frozen=True)
class SetField:
    field: str
    value: int

    def __post_init__(self) -> None:
        if not isinstance(self.value, int):
            object.__setattr__(self, "value", parse_value(self.field, self.value)[0])


@dataclass(frozen=True)
class PushVlan:
    ethertype: int = 0x8100


@dataclass(frozen=True)
class PopVlan:
    pass


@dataclass(frozen=True)
class SetNwTtl:
    ttl: int


@dataclass(frozen=True)
class DecNwTtl:
    pass


Action = Output | Group | SetQueue | SetField | PushVlan | PopVlan | SetNwTtl | DecNwTtl


# --- instructions ----------------------------------------------------------

@dataclass(frozen=True)
class Meter:
    meter_id: int


@dataclass(frozen=True)
class ApplyActions:
    actions: tuple = ()


@dataclass(frozen=True)
class ClearActions:
    pass


@dataclass(frozen=True)
class WriteActions:
    actions: tuple = ()


@dataclass(frozen=True)
class WriteMetadata:
    value: int
    mask: int = 0xFFFFFFFFFFFFFFFF


@dataclass(frozen=True)
class GotoTable:
    table_id: int


Instruction = (Meter | ApplyActions | ClearActions | WriteActions | WriteMetadata
               | GotoTable)


def apply(*actions: Action) -> ApplyActions:
    """Shorthand: apply(Output(1)) == ApplyActions((Output(1),))."""
    return ApplyActions(tuple(actions))


def write(*actions: Action) -> WriteActions:
    return WriteActions(tuple(actions))


# --- groups and meters -----------------------------------------------------

@dataclass(frozen=True)
class Bucket:
    actions: tuple = ()
    weight: int = 1
    watch_port: int = OFPP_ANY
    watch_group: int = OFPG_ANY


@dataclass(frozen=True)
class MeterBand:
    type: int
    rate: int
    burst_size: int = 0
    prec_level: int = 0


@dataclass
class OFError(Exception):
    """An OpenFlow error: type (OFPET_*), code, and what went wrong."""

    type: int
    code: int
    msg: str = ""

    def __str__(self) -> str:
        return f"OpenFlow error type {self.type} code {self.code}: {self.msg}"


@dataclass
class FlowEntry:
    """A rule as reported by dump/removal: what it matches and does, and its
    counters."""

    table_id: int
    priority: int
    match: Match
    instructions: tuple
    cookie: int = 0
    idle_timeout: int = 0
    hard_timeout: int = 0
    flags: int = 0
    packet_count: int = 0
    byte_count: int = 0
    duration_ns: int = 0
    idle_ns: int = 0
    reason: int = 0
    extra: dict = field(default_factory=dict)
