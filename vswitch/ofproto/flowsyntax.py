"""The `ovs-ofctl` flow text syntax, both ways.

    parse_flow("priority=100,tcp,tp_dst=80,actions=mod_vlan_vid:10,output:2")
    format_flow(entry)  ->  " cookie=0x0, duration=1.5s, table=0, ... actions=drop"

Parsing follows `man ovs-fields` / `ovs-actions` / `ovs-ofctl`; output is what
`ovs-ofctl -O OpenFlow13 dump-flows` prints.  Where OVS and OpenFlow 1.3 part:
- Instructions may come in any order; they are stored (and printed) in the
  order OpenFlow runs them.  Loose actions form one apply-actions, in order.
- `mod_vlan_vid` / `mod_vlan_pcp` emit push_vlan(0x8100) first unless the match
  (or an earlier push_vlan/pop_vlan) says the packet is tagged, as OVS does.
- nw_src/nw_dst/icmp_type without dl_type mean the IPv4 fields; the core, not
  this module, checks prerequisites.  tp_src/tp_dst need the protocol.
- Refused: rarp, load (except a whole-field load of the tunnel id, which is
  set_field), move, resubmit, masked set_field, controller options
  other than max_len.  Fields OVS lacks (in_phy_port, pbb_isid, ipv6_exthdr)
  use the OpenFlow names.
- Round trip: parse_flow(format_flow(e)) gives e's match and instructions,
  except ip_frag 0/1 and 2/2, printed as OVS does ("no", "later"), which read
  back as the equivalent 0/3 and 3/3; an empty apply-actions, which vanishes;
  the max_len of a non-controller output; and matches that break prerequisites.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from vswitch import ofp
from vswitch.ofp import FIELDS, FlowEntry, Match, Output, SetField


class FlowSyntaxError(ValueError):
    """Flow text that cannot be parsed; the one-line message names the bad token."""


@dataclass
class FlowSpec:
    table_id: int = 0
    priority: int = 0x8000
    match: Match = field(default_factory=Match)
    instructions: tuple = ()
    cookie: int = 0
    cookie_mask: int = 0
    idle_timeout: int = 0
    hard_timeout: int = 0
    flags: int = 0
    out_port: int = ofp.OFPP_ANY
    out_group: int = ofp.OFPG_ANY


# --- tables ------------------------------------------------------------------

_PORTS = {"in_port": ofp.OFPP_IN_PORT, "table": ofp.OFPP_TABLE, "normal": ofp.OFPP_NORMAL,
          "flood": ofp.OFPP_FLOOD, "all": ofp.OFPP_ALL, "controller": ofp.OFPP_CONTROLLER,
          "local": ofp.OFPP_LOCAL, "any": ofp.OFPP_ANY, "none": ofp.OFPP_ANY}
_PORT_NAMES = {v: k.upper() for k, v in _PORTS.items() if k != "none"}
_FLAGS = {"send_flow_rem": ofp.OFPFF_SEND_FLOW_REM, "check_overlap": ofp.OFPFF_CHECK_OVERLAP,
          "reset_counts": ofp.OFPFF_RESET_COUNTS, "no_packet_counts": ofp.OFPFF_NO_PKT_COUNTS,
          "no_byte_counts": ofp.OFPFF_NO_BYT_COUNTS}
_IGNORED = {"duration", "n_packets", "n_bytes", "idle_age", "hard_age"}  # dump-flows output
_COMMANDS = {"add": "add", "mod": "mod", "modify": "mod", "mod_strict": "mod",
             "modify_strict": "mod", "del": "del", "delete": "del", "del_strict": "del",
             "delete_strict": "del"}

_IP, _IP6, _ARP = 0x0800, 0x86DD, 0x0806
_SHORTHANDS = {"ip": (_IP, None), "ipv6": (_IP6, None), "icmp": (_IP, 1),
               "icmp6": (_IP6, 58), "tcp": (_IP, 6), "tcp6": (_IP6, 6), "udp": (_IP, 17),
               "udp6": (_IP6, 17), "sctp": (_IP, 132), "sctp6": (_IP6, 132),
               "arp": (_ARP, None), "mpls": (0x8847, None), "mplsm": (0x8848, None)}
_SHORT_NAMES = {v: k for k, v in _SHORTHANDS.items()}
_L4 = {6: "tcp", 17: "udp", 132: "sctp"}

_MAC = {"eth_src", "eth_dst", "arp_sha", "arp_tha", "ipv6_nd_sll", "ipv6_nd_tll"}
_IP4F = {"ipv4_src", "ipv4_dst", "arp_spa", "arp_tpa", "tun_ipv4_src", "tun_ipv4_dst"}
_IP6F = {"ipv6_src", "ipv6_dst", "ipv6_nd_target"}
_PORTF = {"in_port", "in_phy_port"}
_HEX = {"metadata", "tunnel_id", "ipv6_flabel", "eth_type", "pbb_isid", "ipv6_exthdr",
        "ip_frag", "tcp_flags"}

# OVS names (and OpenFlow names) that need no context -> OpenFlow field.
_ALIASES = {n: n for n in FIELDS if n not in ("vlan_pcp", "ip_frag", "tcp_flags")}
_ALIASES.update({
    "dl_src": "eth_src", "dl_dst": "eth_dst", "dl_type": "eth_type", "ip_src": "ipv4_src",
    "ip_dst": "ipv4_dst", "nw_ecn": "ip_ecn", "nw_ttl": "ip_ttl", "ipv6_label": "ipv6_flabel",
    "nd_target": "ipv6_nd_target", "nd_sll": "ipv6_nd_sll", "nd_tll": "ipv6_nd_tll",
    "tun_id": "tunnel_id", "tun_src": "tun_ipv4_src", "tun_dst": "tun_ipv4_dst"})
# How OVS names a field in set_field (and in a match where context is not needed).
_SET_NAMES = {"ip_ecn": "nw_ecn", "ip_ttl": "nw_ttl", "ip_proto": "nw_proto",
              "ipv4_src": "ip_src", "ipv4_dst": "ip_dst", "icmpv4_type": "icmp_type",
              "icmpv4_code": "icmp_code", "ipv6_flabel": "ipv6_label",
              "ipv6_nd_target": "nd_target", "ipv6_nd_sll": "nd_sll",
              "ipv6_nd_tll": "nd_tll", "tunnel_id": "tun_id", "tun_ipv4_src": "tun_src",
              "tun_ipv4_dst": "tun_dst"}
_SET_ALIASES = {**_ALIASES, "vlan_pcp": "vlan_pcp", "nw_src": "ipv4_src",
                "nw_dst": "ipv4_dst", "nw_proto": "ip_proto", "icmp_type": "icmpv4_type",
                "icmp_code": "icmpv4_code", "ip_frag": "ip_frag", "tcp_flags": "tcp_flags"}

_TCP_FLAGS = ["fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr", "ns",
              "[200]", "[400]", "[800]"]
_FRAGS = {"no": (0, 3), "first": (1, 3), "later": (3, 3), "yes": (1, 1),
          "not_later": (0, 2)}
_FRAG_NAMES = {**{v: k for k, v in _FRAGS.items()}, (0, 1): "no", (2, 2): "later"}

_NUM = re.compile(r"0[xX][0-9a-fA-F]+|[0-9]+")
_MACRE = re.compile(r"[0-9a-fA-F]{1,2}(?::[0-9a-fA-F]{1,2}){5}")
_ACTIONS_RE = re.compile(r"(?:^|[\s,])(actions?\s*=)")
_DELIMS = ", \t\r\n"


# --- values --------------------------------------------------------------------

def _int(text: str, bits: int, what: str) -> int:
    if not _NUM.fullmatch(text):
        raise FlowSyntaxError(f"{what}: bad number {text!r}")
    hexa = text[:2] in ("0x", "0X")
    digits = text[2:] if hexa else text
    if len(digits.lstrip("0")) > 40:
        raise FlowSyntaxError(f"{what}: value {text[:40]!r}... too wide for {bits} bits")
    v = int(digits, 16 if hexa else 10)
    if v >> bits:
        raise FlowSyntaxError(f"{what}: value {text!r} too wide for {bits} bits")
    return v


def _port(text: str, what: str) -> int:
    return _PORTS.get(text.lower()) or _int(text, 32, what)


def _value(name: str, text: str, what: str) -> int:
    try:
        if name in _MAC:
            if not _MACRE.fullmatch(text):
                raise ValueError
            return int.from_bytes(bytes(int(p, 16) for p in text.split(":")), "big")
        if name in _IP4F:
            return int(ipaddress.IPv4Address(text))
        if name in _IP6F:
            if "%" in text:
                raise ValueError
            return int(ipaddress.IPv6Address(text))
    except ValueError:
        raise FlowSyntaxError(f"{what}: bad address {text!r}") from None
    if name in _PORTF:
        return _port(text, what)
    return _int(text, FIELDS[name].bits, what)


def _masked(name: str, text: str, what: str) -> tuple[int, int]:
    spec = FIELDS[name]
    val, sep, mtext = text.partition("/")
    v = _value(name, val, what)
    if not sep:
        return v, spec.full_mask
    if name in _IP4F | _IP6F and mtext.isascii() and mtext.isdigit() and len(mtext) < 4:
        n = int(mtext)
        if n > spec.bits:
            raise FlowSyntaxError(f"{what}: prefix /{mtext} too long")
        m = ((1 << n) - 1) << (spec.bits - n)
    else:
        m = _value(name, mtext, what)
    if m != spec.full_mask and not spec.maskable:
        raise FlowSyntaxError(f"{what}: mask not allowed on {name} in {text!r}")
    return v & m, m


def _tokens(s: str):
    """Yield (key, value-or-None) as ovs-ofctl splits them: `k=v`, `k:v`, `k(v)`, `k`."""
    i, n = 0, len(s)
    while True:
        while i < n and s[i] in _DELIMS:
            i += 1
        if i >= n:
            return
        j = i
        while j < n and s[j] not in ":=(" + _DELIMS:
            j += 1
        key = s[i:j]
        if not key:
            raise FlowSyntaxError(f"missing keyword before {s[j:j + 20]!r}")
        if j == n or s[j] in _DELIMS:
            yield key, None
            i = j
            continue
        depth, k = (1, j + 1) if s[j] == "(" else (0, j + 1)
        while k < n:
            c = s[k]
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
                if depth < 0:
                    raise FlowSyntaxError(f"{key}: unbalanced ')' in {s[i:k + 1]!r}")
                if depth == 0 and s[j] == "(":
                    break
            elif depth == 0 and c in _DELIMS:
                break
            k += 1
        if depth:
            raise FlowSyntaxError(f"{key}: unbalanced '(' in {s[i:k]!r}")
        yield key, s[j + 1:k]
        i = k + 1 if s[j] == "(" else k


def _need(key: str, value: str | None) -> str:
    if not value:
        raise FlowSyntaxError(f"{key}: missing value")
    return value


def _bare(key: str, value: str | None) -> None:
    if value is not None:
        raise FlowSyntaxError(f"{key} takes no value (got {value!r})")


# --- matches -------------------------------------------------------------------

def _put(fields: dict, name: str, v: int, m: int, token: str) -> None:
    if not m:
        return
    if fields.get(name, (v & m, m)) != (v & m, m):
        raise FlowSyntaxError(f"{token!r} conflicts with an earlier {name} in the match")
    fields[name] = (v & m, m)


def _exact(fields: dict, name: str) -> int | None:
    vm = fields.get(name)
    return vm[0] if vm and vm[1] == FIELDS[name].full_mask else None


def _resolve(key: str, fields: dict) -> str:
    """The OpenFlow field an OVS name means, given what the match says."""
    eth, proto = _exact(fields, "eth_type"), _exact(fields, "ip_proto")
    if key in ("nw_src", "nw_dst"):
        return ("arp_spa" if key == "nw_src" else "arp_tpa") if eth == _ARP else "ipv4_" + key[3:]
    if key == "nw_proto":
        return "arp_op" if eth == _ARP else "ip_proto"
    kind = {"icmp_type": "type", "icmp_code": "code"}.get(key)
    if key.startswith("tp_") or key.startswith("mod_tp_"):
        if proto in _L4:
            return f"{_L4[proto]}_{key[-3:]}"
        if key.startswith("tp_") and (eth, proto) in ((_IP, 1), (_IP6, 58)):
            kind = "type" if key == "tp_src" else "code"
        else:
            raise FlowSyntaxError(f"{key} needs tcp, udp or sctp (ip_proto) in the match")
    return f"icmpv6_{kind}" if eth == _IP6 else f"icmpv4_{kind}"


def _tcp_flags(text: str, what: str) -> tuple[int, int]:
    if _NUM.match(text):
        v, _, m = text.partition("/")
        return _int(v, 12, what), _int(m, 12, what) if m else 0xFFF
    if text[0] in "+-":
        v = m = 0
        for sign, name in re.findall(r"([+-])([^+-]*)", text):
            if name not in _TCP_FLAGS:
                raise FlowSyntaxError(f"{what}: unknown TCP flag {name!r}")
            bit = 1 << _TCP_FLAGS.index(name)
            if m & bit:
                raise FlowSyntaxError(f"{what}: TCP flag {name!r} given twice")
            m |= bit
            v |= bit if sign == "+" else 0
        return v, m
    v = 0
    for name in text.split("|"):
        if name not in _TCP_FLAGS:
            raise FlowSyntaxError(f"{what}: unknown TCP flag {name!r}")
        v |= 1 << _TCP_FLAGS.index(name)
    return v, 0xFFF


def _match_field(fields: dict, key: str, text: str) -> None:
    what = f"{key}={text}"
    if key == "dl_vlan":
        vid = _int(text, 16, what)
        if vid != 0xFFFF and vid > 0xFFF:
            raise FlowSyntaxError(f"{what}: VLAN id must be 0-4095 or 0xffff (untagged)")
        _put(fields, "vlan_vid", 0 if vid == 0xFFFF else 0x1000 | vid, 0x1FFF, what)
    elif key == "vlan_tci":
        t, sep, mt = text.partition("/")
        tci = _int(t, 16, what)
        tm = _int(mt, 16, what) if sep else 0xFFFF
        v = tci & tm
        pcp_mask = tm >> 13
        if pcp_mask not in (0, 7):
            raise FlowSyntaxError(f"{what}: partial PCP mask not supported")
        if pcp_mask and not tm & 0x1000:
            raise FlowSyntaxError(f"{what}: matching PCP needs the 0x1000 (CFI) bit in the mask")
        if pcp_mask and v & 0x1000:
            _put(fields, "vlan_pcp", v >> 13, 7, what)
        elif pcp_mask and v >> 13:
            raise FlowSyntaxError(f"{what}: PCP given for untagged packets")
        _put(fields, "vlan_vid", v & 0x1FFF, tm & 0x1FFF, what)
    elif key in ("dl_vlan_pcp", "vlan_pcp"):
        _put(fields, "vlan_pcp", _int(text, 3, what), 7, what)
    elif key == "nw_tos":
        tos = _int(text, 8, what)
        if tos & 3:
            raise FlowSyntaxError(f"{what}: low 2 bits (ECN) must be 0; use nw_ecn")
        _put(fields, "ip_dscp", tos >> 2, 0x3F, what)
    elif key in ("nw_frag", "ip_frag"):
        _put(fields, "ip_frag", *(_FRAGS.get(text) or _masked("ip_frag", text, what)), what)
    elif key == "tcp_flags":
        _put(fields, "tcp_flags", *_tcp_flags(text, what), what)
    else:
        name = _ALIASES.get(key) or _resolve(key, fields)
        _put(fields, name, *_masked(name, text, what), what)


_MATCH_SPECIAL = {"dl_vlan", "vlan_tci", "dl_vlan_pcp", "vlan_pcp", "nw_tos", "nw_frag",
                  "ip_frag", "tcp_flags", "nw_src", "nw_dst", "nw_proto", "tp_src", "tp_dst",
                  "icmp_type", "icmp_code"}
_MATCH_ORDER = {"dl_type": 0, "eth_type": 0, "ip_proto": 1, "nw_proto": 1}


# --- flow-mod keywords -----------------------------------------------------------

def _cookie(spec: FlowSpec, value: str, cmd: str) -> None:
    v, sep, m = value.partition("/")
    if sep and cmd == "add":
        raise FlowSyntaxError(f"cookie={value}: flow additions cannot use a cookie mask")
    if not sep and cmd == "del":
        raise FlowSyntaxError(f"cookie={value}: deletions need a cookie mask (cookie=V/M)")
    spec.cookie = _int(v, 64, "cookie")
    spec.cookie_mask = _int(m, 64, "cookie") if sep else 0


def _out(attr: str):
    def set_out(spec: FlowSpec, value: str, cmd: str) -> None:
        if cmd == "add":
            raise FlowSyntaxError(f"{attr}={value}: only for mod/del")
        if attr == "out_port":
            spec.out_port = _port(value, attr)
        else:
            names = {"any": ofp.OFPG_ANY, "all": 0xFFFFFFFC}
            spec.out_group = names.get(value.lower()) or _int(value, 32, attr)
    return set_out


def _setint(attr: str, bits: int):
    def set_int(spec: FlowSpec, value: str, cmd: str) -> None:
        setattr(spec, attr, _int(value, bits, attr))
    return set_int


_KEYWORDS = {"priority": _setint("priority", 16), "table": _setint("table_id", 8),
             "idle_timeout": _setint("idle_timeout", 16),
             "hard_timeout": _setint("hard_timeout", 16), "cookie": _cookie,
             "out_port": _out("out_port"), "out_group": _out("out_group")}


# --- actions ----------------------------------------------------------------------

class _State:
    """What the actions parsed so far know: the match, and whether the packet is tagged."""

    def __init__(self, fields: dict, tagged: bool) -> None:
        self.fields, self.tagged = fields, tagged


def _push_if_needed(st: _State, field_name: str, value: int) -> list:
    out = [] if st.tagged else [ofp.PushVlan(0x8100)]
    st.tagged = True
    return out + [SetField(field_name, value)]


def _set_field(value: str, st: _State) -> list:
    val, arrow, name = value.rpartition("->")
    name = name.lower()
    if not arrow or not val:
        raise FlowSyntaxError(f"set_field:{value}: expected set_field:VALUE->FIELD")
    if "/" in val:
        raise FlowSyntaxError(f"set_field:{value}: masked set_field: not in OpenFlow 1.3")
    if name == "nw_tos":
        return [_tos(val, st)]
    if name in ("tp_src", "tp_dst"):
        fname = _resolve("mod_" + name, st.fields)
    else:
        fname = _SET_ALIASES.get(name)
    if fname is None:
        raise FlowSyntaxError(f"set_field:{value}: unknown field {name!r}")
    return [SetField(fname, _value(fname, val, "set_field"))]


def _tos(value: str, st: _State) -> SetField:
    tos = _int(value, 8, "mod_nw_tos")
    if tos & 3:
        raise FlowSyntaxError(f"mod_nw_tos:{value}: low 2 bits (ECN) must be 0")
    return SetField("ip_dscp", tos >> 2)


def _controller(value: str | None, st: _State) -> list:
    if not value:
        return [Output(ofp.OFPP_CONTROLLER)]
    if _NUM.fullmatch(value):
        return [Output(ofp.OFPP_CONTROLLER, _int(value, 16, "controller"))]
    max_len = ofp.OFPCML_NO_BUFFER
    for k, v in _tokens(value):
        if k != "max_len":
            raise FlowSyntaxError(f"controller({value}): option {k!r} not supported (only max_len)")
        max_len = _int(_need(k, v), 16, "controller max_len")
    return [Output(ofp.OFPP_CONTROLLER, max_len)]


def _refuse(msg: str):
    def refuse(value: str | None, st: _State) -> list:
        raise FlowSyntaxError(msg)
    return refuse


# load:VALUE->FIELD[] is accepted for the tunnel id only (what tunnel flows
# written for OVS use); it is set_field of the whole field.
_LOAD_FIELDS = {"nxm_nx_tun_id": "tunnel_id", "tun_id": "tunnel_id", "tunnel_id": "tunnel_id"}


def _load(value: str) -> list:
    src, sep, dst = value.partition("->")
    m = re.fullmatch(r"([A-Za-z0-9_]+)\[(?:0\.\.63)?\]", dst.strip()) if sep else None
    fname = _LOAD_FIELDS.get(m.group(1).lower()) if m else None
    if fname is None:
        raise FlowSyntaxError(f"load:{value}: only load:VALUE->NXM_NX_TUN_ID[] is supported: "
                              "use set_field:VALUE->FIELD")
    return [SetField(fname, _value(fname, src.strip(), "load"))]


def _sf(name: str):
    return lambda v, st: [SetField(name, _value(name, _need(name, v), name))]


def _vlan(v, st):
    return _push_if_needed(st, "vlan_vid", 0x1000 | _int(_need("mod_vlan_vid", v), 12,
                                                          "mod_vlan_vid"))


def _pop(v, st):
    _bare("pop_vlan", v)
    st.tagged = False
    return [ofp.PopVlan()]


def _push(v, st):
    st.tagged = True
    return [ofp.PushVlan(_int(_need("push_vlan", v), 16, "push_vlan"))]


_ACTIONS = {
    "output": lambda v, st: [Output(_port(_need("output", v), "output"))],
    "controller": _controller,
    "mod_vlan_vid": _vlan,
    "mod_vlan_pcp": lambda v, st: _push_if_needed(
        st, "vlan_pcp", _int(_need("mod_vlan_pcp", v), 3, "mod_vlan_pcp")),
    "strip_vlan": _pop, "pop_vlan": _pop, "push_vlan": _push,
    "set_field": lambda v, st: _set_field(_need("set_field", v), st),
    "mod_dl_src": _sf("eth_src"), "mod_dl_dst": _sf("eth_dst"),
    "mod_nw_src": _sf("ipv4_src"), "mod_nw_dst": _sf("ipv4_dst"),
    "mod_nw_tos": lambda v, st: [_tos(_need("mod_nw_tos", v), st)],
    "mod_nw_ecn": _sf("ip_ecn"),
    "mod_nw_ttl": lambda v, st: [ofp.SetNwTtl(_int(_need("mod_nw_ttl", v), 8, "mod_nw_ttl"))],
    "mod_tp_src": lambda v, st: _sf(_resolve("mod_tp_src", st.fields))(v, st),
    "mod_tp_dst": lambda v, st: _sf(_resolve("mod_tp_dst", st.fields))(v, st),
    "set_tunnel": _sf("tunnel_id"), "set_tunnel64": _sf("tunnel_id"),
    "dec_ttl": lambda v, st: _bare("dec_ttl", v) or [ofp.DecNwTtl()],
    "set_queue": lambda v, st: [ofp.SetQueue(_int(_need("set_queue", v), 32, "set_queue"))],
    "group": lambda v, st: [ofp.Group(_int(_need("group", v), 32, "group"))],
    "load": lambda v, st: _load(_need("load", v)),
    "move": _refuse("move is not supported"),
    "resubmit": _refuse("resubmit is not supported: use goto_table"),
    "apply_actions": _refuse("apply_actions is the default instruction: list the actions"),
}
_ACTIONS["set_nw_ttl"] = _ACTIONS["mod_nw_ttl"]
_INSTR_RANK = {ofp.Meter: 0, ofp.ApplyActions: 1, ofp.ClearActions: 2, ofp.WriteActions: 3,
               ofp.WriteMetadata: 4, ofp.GotoTable: 5}


def _write_metadata(value: str) -> ofp.WriteMetadata:
    v, sep, m = value.partition("/")
    mask = _int(m, 64, "write_metadata") if sep else (1 << 64) - 1
    return ofp.WriteMetadata(_int(v, 64, "write_metadata"), mask)


def _parse_actions(text: str, st: _State, nested: bool = False) -> tuple:
    actions: list = []
    instrs: dict = {}
    drop = False
    for key, value in _tokens(text):
        k = key.lower()
        ins = None
        if k == "drop":
            _bare(key, value)
            drop = True
        elif k in ("meter", "goto_table", "write_metadata", "write_actions", "clear_actions"):
            if nested:
                raise FlowSyntaxError(f"{key}: instruction not allowed inside write_actions")
            if k == "meter":
                ins = ofp.Meter(_int(_need(key, value), 32, "meter"))
            elif k == "goto_table":
                ins = ofp.GotoTable(_int(_need(key, value), 8, "goto_table"))
            elif k == "write_metadata":
                ins = _write_metadata(_need(key, value))
            elif k == "clear_actions":
                _bare(key, value)
                ins = ofp.ClearActions()
            else:
                nested_st = _State(st.fields, st.tagged)
                ins = ofp.WriteActions(_parse_actions(value or "", nested_st, True))
            if type(ins) in instrs:
                raise FlowSyntaxError(f"{key}: instruction given twice")
            instrs[type(ins)] = ins
        elif k in _ACTIONS:
            actions += _ACTIONS[k](value, st)
        elif k in _PORTS and value is None:
            actions.append(Output(_PORTS[k]))
        elif _NUM.fullmatch(k) and value is None:
            actions.append(Output(_int(k, 32, "output")))
        else:
            raise FlowSyntaxError(f"unknown action {key!r}")
    if drop and (actions or instrs):
        raise FlowSyntaxError('"drop" must not be accompanied by any other action or instruction')
    if nested:
        return tuple(actions)
    if actions:
        instrs[ofp.ApplyActions] = ofp.ApplyActions(tuple(actions))
    return tuple(sorted(instrs.values(), key=lambda i: _INSTR_RANK[type(i)]))


# --- parse_flow --------------------------------------------------------------------

def parse_flow(text: str, command: str = "add") -> FlowSpec:
    """Parse an ovs-ofctl flow (add-flow / mod-flows / del-flows syntax).

    command is "add", "mod" or "del" (also "modify", "delete", "*_strict").
    Raises FlowSyntaxError (a ValueError) for anything it cannot take.
    """
    if not isinstance(text, str):
        raise FlowSyntaxError(f"flow must be text, not {type(text).__name__}")
    cmd = _COMMANDS.get(command) if isinstance(command, str) else None
    if cmd is None:
        raise FlowSyntaxError(f"unknown command {command!r} (add, mod or del)")
    found = _ACTIONS_RE.search(text)
    match_text = text[:found.start(1)] if found else text
    if found is None and cmd in ("add", "mod"):
        raise FlowSyntaxError("must specify actions=... (last)")
    # Without table=, mod and del apply to every table (as ovs-ofctl does).
    spec = FlowSpec(table_id=0 if cmd == "add" else ofp.OFPTT_ALL)
    fields: dict = {}
    deferred = []
    for key, value in _tokens(match_text):
        k = key.lower()
        if k in _SHORTHANDS or k == "rarp":
            _bare(key, value)
            if k == "rarp":
                raise FlowSyntaxError("rarp is not supported")
            eth, proto = _SHORTHANDS[k]
            _put(fields, "eth_type", eth, 0xFFFF, key)
            if proto is not None:
                _put(fields, "ip_proto", proto, 0xFF, key)
        elif k in _FLAGS:
            _bare(key, value)
            spec.flags |= _FLAGS[k]
        elif k in _KEYWORDS:
            _KEYWORDS[k](spec, _need(key, value), cmd)
        elif k in _IGNORED:
            _need(key, value)
        elif k in _ALIASES or k in _MATCH_SPECIAL:
            deferred.append((k, _need(key, value)))
        else:
            raise FlowSyntaxError(f"unknown field or keyword {key!r}")
    for k, value in sorted(deferred, key=lambda kv: _MATCH_ORDER.get(kv[0], 2)):
        _match_field(fields, k, value)
    if "vlan_pcp" in fields and "vlan_vid" not in fields:
        fields["vlan_vid"] = (0x1000, 0x1000)
    spec.match = Match.from_fields(fields)
    if found:
        vid = fields.get("vlan_vid", (0, 0))
        st = _State(fields, bool(vid[0] & vid[1] & 0x1000))
        spec.instructions = _parse_actions(text[found.end():], st)
    return spec


# --- formatting --------------------------------------------------------------------

def _cx(v: int) -> str:
    """C's %#x, as OVS prints: 0 is "0", not "0x0"."""
    return f"{v:#x}" if v else "0"


def _fmt_port(p: int) -> str:
    return _PORT_NAMES.get(p, str(p))


def _fmt_value(name: str, v: int, hex_width: int = 0) -> str:
    spec = FIELDS.get(name)
    if spec is None or v < 0 or v >> (8 * spec.nbytes):
        return _cx(v)
    if name in _MAC:
        return ":".join(f"{b:02x}" for b in v.to_bytes(6, "big"))
    if name in _IP4F:
        return str(ipaddress.IPv4Address(v))
    if name in _IP6F:  # glibc inet_ntop: ::a.b.c.d and ::ffff:a.b.c.d
        if v >> 32 == 0xFFFF or (v >> 32 == 0 and v >> 16 & 0xFFFF):
            return ("::ffff:" if v >> 32 else "::") + str(ipaddress.IPv4Address(v & 0xFFFFFFFF))
        return str(ipaddress.IPv6Address(v))
    if name in _PORTF:
        return _fmt_port(v)
    if hex_width:
        return f"0x{v:0{hex_width}x}"
    return _cx(v) if name in _HEX else str(v)


def _fmt_field(name: str, v: int, m: int, hex_width: int = 0) -> str:
    spec = FIELDS[name]
    if m == spec.full_mask:
        return _fmt_value(name, v, hex_width)
    if name in _IP4F | _IP6F:
        n = bin(m).count("1")
        if m == ((1 << n) - 1) << (spec.bits - n):
            return f"{_fmt_value(name, v)}/{n}"
    if name in _MAC | _IP4F | _IP6F:
        return f"{_fmt_value(name, v)}/{_fmt_value(name, m)}"
    if hex_width:
        return f"0x{v:0{hex_width}x}/0x{m:0{hex_width}x}"
    return f"{_cx(v)}/{_cx(m)}"


def _fmt_tcp_flags(v: int, m: int) -> str:
    if m == 0xFFF:
        return "|".join(n for i, n in enumerate(_TCP_FLAGS) if v >> i & 1) or "0"
    return "".join(("+" if v >> i & 1 else "-") + n
                   for i, n in enumerate(_TCP_FLAGS) if m >> i & 1)


def _fmt_vlan(f: dict) -> list[str]:
    vid, pcp = f.pop("vlan_vid", (0, 0)), f.pop("vlan_pcp", None)
    if pcp and not vid[0] & vid[1] & 0x1000:
        return ([f"vlan_vid={_fmt_field('vlan_vid', *vid, 4)}"] if vid[1] else []) + [
            f"vlan_pcp={pcp[0]}"]
    tci, tm = vid[0] | (pcp[0] << 13 if pcp else 0), vid[1] | (0xE000 if pcp else 0)
    if not tm:
        return []
    if tci & tm & 0x1000 and tm & 0xFFF in (0, 0xFFF) and (tm & 0xFFF or pcp):
        return ([f"dl_vlan={tci & 0xFFF}"] if tm & 0xFFF else []) + (
            [f"dl_vlan_pcp={pcp[0]}"] if pcp else [])
    return [f"vlan_tci=0x{tci:04x}" if tm == 0xFFFF else f"vlan_tci=0x{tci:04x}/0x{tm:04x}"]


def format_match(match: Match) -> str:
    """The match as ovs-ofctl prints it (shorthands, OVS field names), without priority."""
    f = dict(match.fields)
    eth, proto = _exact(f, "eth_type"), _exact(f, "ip_proto")
    out = []
    short = _SHORT_NAMES.get((eth, proto)) if eth in (_IP, _IP6) and proto else None
    if short:
        del f["ip_proto"]
    short = short or _SHORT_NAMES.get((eth, None))
    if short:
        out.append(short)
        del f["eth_type"]

    def emit(name: str, of_name: str | None = None, hex_width: int = 0) -> None:
        of_name = of_name or name
        if of_name in f:
            out.append(f"{name}={_fmt_field(of_name, *f.pop(of_name), hex_width)}")

    for n in ("tun_id", "tun_src", "tun_dst", "metadata", "in_port", "in_phy_port"):
        emit(n, _ALIASES[n])
    out.extend(_fmt_vlan(f))
    emit("dl_src", "eth_src")
    emit("dl_dst", "eth_dst")
    emit("dl_type", "eth_type", 4)
    emit("ipv6_src")
    emit("ipv6_dst")
    emit("ipv6_label", "ipv6_flabel", 5)
    emit("arp_spa")
    emit("arp_tpa")
    arp = eth == _ARP
    emit("ipv4_src" if arp else "nw_src", "ipv4_src")
    emit("ipv4_dst" if arp else "nw_dst", "ipv4_dst")
    emit("ip_proto" if arp else "nw_proto", "ip_proto")
    for n in ("arp_op", "arp_sha", "arp_tha"):
        emit(n)
    if "ip_dscp" in f:
        out.append(f"nw_tos={f.pop('ip_dscp')[0] << 2}")
    for n in ("nw_ecn", "nw_ttl", "mpls_label", "mpls_tc", "mpls_bos"):
        emit(n, _ALIASES[n])
    if "ip_frag" in f:
        vm = f.pop("ip_frag")
        name = _FRAG_NAMES.get(vm)
        out.append(f"nw_frag={name}" if name else f"ip_frag={_fmt_field('ip_frag', *vm)}")
    for n in ("type", "code"):
        emit("icmpv4_" + n if eth == _IP6 else "icmp_" + n, "icmpv4_" + n)
    for n in ("type", "code"):
        emit("icmp_" + n if eth == _IP6 else "icmpv6_" + n, "icmpv6_" + n)
    for n in ("nd_target", "nd_sll", "nd_tll"):
        emit(n, _ALIASES[n])
    for p, l4 in _L4.items():
        for n in ("src", "dst"):
            emit(f"tp_{n}" if proto == p else f"{l4}_{n}", f"{l4}_{n}")
    if "tcp_flags" in f:
        out.append(f"tcp_flags={_fmt_tcp_flags(*f.pop('tcp_flags'))}")
    for n in sorted(f, key=lambda n: FIELDS[n].id):
        emit(n)
    return ",".join(out)


def _fmt_action(a) -> str:
    if isinstance(a, Output):
        if a.port == ofp.OFPP_CONTROLLER:
            return f"CONTROLLER:{a.max_len}"
        return f"output:{a.port}" if a.port < ofp.OFPP_MAX or a.port not in _PORT_NAMES \
            else _PORT_NAMES[a.port]
    if isinstance(a, SetField):
        return f"set_field:{_fmt_value(a.field, a.value)}->{_SET_NAMES.get(a.field, a.field)}"
    simple = {ofp.Group: "group:{0.group_id}", ofp.SetQueue: "set_queue:{0.queue_id}",
              ofp.PushVlan: "push_vlan:{1}", ofp.PopVlan: "pop_vlan",
              ofp.SetNwTtl: "mod_nw_ttl:{0.ttl}", ofp.DecNwTtl: "dec_ttl"}
    if type(a) not in simple:
        raise TypeError(f"not an action: {a!r}")
    return simple[type(a)].format(a, _cx(getattr(a, "ethertype", 0)))


def format_actions(instructions: tuple | list) -> str:
    """Instructions as ovs-ofctl prints them after `actions=` ("drop" when there are none)."""
    parts = []
    for ins in sorted(instructions, key=lambda i: _INSTR_RANK.get(type(i), 9)):
        if isinstance(ins, ofp.ApplyActions):
            parts += [_fmt_action(a) for a in ins.actions]
        elif isinstance(ins, ofp.WriteActions):
            parts.append(f"write_actions({','.join(_fmt_action(a) for a in ins.actions)})")
        elif isinstance(ins, ofp.Meter):
            parts.append(f"meter:{ins.meter_id}")
        elif isinstance(ins, ofp.ClearActions):
            parts.append("clear_actions")
        elif isinstance(ins, ofp.WriteMetadata):
            mask = "" if ins.mask == (1 << 64) - 1 else f"/{_cx(ins.mask)}"
            parts.append(f"write_metadata:{_cx(ins.value)}{mask}")
        elif isinstance(ins, ofp.GotoTable):
            parts.append(f"goto_table:{ins.table_id}")
        else:
            raise TypeError(f"not an instruction: {ins!r}")
    return ",".join(parts) or "drop"


def _fmt_duration(ns: int) -> str:
    sec, nsec = divmod(ns, 10**9)
    if not nsec:
        return f"{sec}s"
    if nsec % 10**6 == 0:
        return f"{sec}.{nsec // 10**6:03d}s"
    return f"{sec}.{nsec:09d}".rstrip("0") + "s"


def format_flow(entry: FlowEntry, stats: bool = True) -> str:
    """One line of `ovs-ofctl -O OpenFlow13 dump-flows` (with --no-stats when stats=False)."""
    s = ""
    if stats or entry.cookie:
        s += f"cookie={entry.cookie:#x}, "
    if stats:
        # Millisecond resolution, as Open vSwitch reports durations.
        s += f"duration={_fmt_duration(entry.duration_ns // 10**6 * 10**6)}, "
    if stats or entry.table_id:
        s += f"table={entry.table_id}, "
    if stats:
        s += f"n_packets={entry.packet_count}, n_bytes={entry.byte_count}, "
    if entry.idle_timeout:
        s += f"idle_timeout={entry.idle_timeout}, "
    if entry.hard_timeout:
        s += f"hard_timeout={entry.hard_timeout}, "
    s += "".join(f"{n} " for n, bit in _FLAGS.items() if entry.flags & bit)
    match = format_match(entry.match)
    if entry.priority != 0x8000:
        match = f"priority={entry.priority}" + ("," + match if match else "")
    s += f"{match} " if match else ""
    s += "actions=" + format_actions(entry.instructions)
    return (" " + s) if stats else s
