"""OpenFlow 1.3 wire codec: bytes <-> `vswitch.ofproto.messages` values.

    encode(msg) -> bytes                 one whole message, header included
    decode(data) -> msg                  exactly one whole message (8-byte header first)
    parse_header(data) -> (version, type, length, xid)
    encode_split(reply, max_len) -> [bytes]   a multipart reply over several messages

This module knows the byte layout of the 1.3.5 spec and nothing about what a switch does
with a message: prerequisites, port numbers, table ids and the like are checked by the
message handling on top.  What it does check is everything a layout can get wrong, so that
the handler can send the right ERROR: every length, every TLV, match fields (unknown,
duplicate, wrong size, value outside its mask or its width, mask on an unmaskable field),
action and instruction kinds.  Each such problem raises `WireError` with the spec's
OFPET_*/code and the first 64 bytes of the offending message; `decode` raises nothing
else, whatever the bytes, and allocates at most in proportion to the input.

The layout is data: `_MESSAGES` maps each message class to its OFPT type and a
(pack, unpack) pair, `_MULTIPART` does the same per multipart kind, and `OXM_FIELDS` maps
vswitch match field names to OXM class/field (including the Nicira/ONF extension OXMs that
Open vSwitch uses in OpenFlow 1.3 for ip_frag, ip_ttl and tcp_flags).
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from vswitch import ofp
from vswitch.ofproto import messages as m

# Decode outcomes.  "bugs" counts exceptions other than WireError caught by decode's last
# line of defence: it must stay 0 (the fuzz tests assert it).
STATS: Counter = Counter()


@dataclass
class WireError(ofp.OFError):
    """A message that cannot be decoded.  type/code are what the ERROR reply says, data
    the offending message's first 64 bytes."""

    data: bytes = b""


_BAD_LEN = (m.OFPET_BAD_REQUEST, m.OFPBRC_BAD_LEN)
_MATCH_LEN = (m.OFPET_BAD_MATCH, m.OFPBMC_BAD_LEN)
_ACTION_LEN = (m.OFPET_BAD_ACTION, m.OFPBAC_BAD_LEN)
_INST_LEN = (m.OFPET_BAD_INSTRUCTION, m.OFPBIC_BAD_LEN)
_BAND_LEN = (m.OFPET_METER_MOD_FAILED, m.OFPMMFC_BAD_BAND)
_BUCKET_LEN = (m.OFPET_GROUP_MOD_FAILED, m.OFPGMFC_BAD_BUCKET)
_TF_LEN = (m.OFPET_TABLE_FEATURES_FAILED, m.OFPTFFC_BAD_LEN)


def _fail(err: tuple[int, int], msg: str) -> WireError:
    return WireError(err[0], err[1], msg)


def _pad8(n: int) -> int:
    return (n + 7) & ~7


class _Reader:
    """A bounds-checked cursor over buf[pos:end]; every read past `end` raises WireError
    with the error code `err` of the structure being read."""

    __slots__ = ("buf", "pos", "end", "err")

    def __init__(self, buf: bytes, pos: int, end: int, err: tuple[int, int]) -> None:
        self.buf, self.pos, self.end, self.err = buf, pos, end, err

    @property
    def left(self) -> int:
        return self.end - self.pos

    def unpack(self, st: struct.Struct) -> tuple:
        if st.size > self.end - self.pos:
            raise _fail(self.err, "truncated")
        out = st.unpack_from(self.buf, self.pos)
        self.pos += st.size
        return out

    def take(self, n: int) -> bytes:
        if n < 0 or n > self.left:
            raise _fail(self.err, "truncated")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def rest(self) -> bytes:
        return self.take(self.left)

    def sub(self, n: int, err: tuple[int, int]) -> _Reader:
        """The next n bytes as their own reader (reporting `err`), skipped here."""
        if n < 0 or n > self.end - self.pos:
            raise _fail(err, "length runs past its container")
        r = _Reader(self.buf, self.pos, self.pos + n, err)
        self.pos += n
        return r

    def peek_u16(self, offset: int) -> int:
        if offset + 2 > self.left:
            raise _fail(self.err, "truncated")
        return _U16.unpack_from(self.buf, self.pos + offset)[0]

    def done(self) -> None:
        if self.left:
            raise _fail(self.err, f"{self.left} unexpected trailing bytes")


_S = struct.Struct
_HDR = _S("!BBHI")
_U16 = _S("!H")
_U32 = _S("!I")
_TL = _S("!HH")


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _cstr(text: str, size: int) -> bytes:
    """text as a NUL-terminated field of `size` bytes, cut at a character boundary."""
    raw = text.encode("utf-8")[:size - 1]
    return raw.decode("utf-8", "ignore").encode("utf-8").ljust(size, b"\0")


# --- OXM match fields ----------------------------------------------------------------

ONF_EXPERIMENTER = 0x4F4E4600

# field name -> (oxm_class, oxm_field, experimenter id or None).  One line per field;
# names not (yet) in ofp.FIELDS are left out.
_OXM_TABLE: dict[str, tuple[int, int, int | None]] = {
    **{name: (m.OFPXMC_OPENFLOW_BASIC, spec.id, None)
       for name, spec in ofp.FIELDS.items() if spec.id < 40},
    "ip_frag": (m.OFPXMC_NXM_1, 26, None),                         # NXM_NX_IP_FRAG
    "ip_ttl": (m.OFPXMC_NXM_1, 29, None),                          # NXM_NX_IP_TTL
    "tcp_flags": (m.OFPXMC_EXPERIMENTER, 42, ONF_EXPERIMENTER),    # ONFOXM_ET_TCP_FLAGS
    "tun_ipv4_src": (m.OFPXMC_NXM_1, 31, None),                    # NXM_NX_TUN_IPV4_SRC
    "tun_ipv4_dst": (m.OFPXMC_NXM_1, 32, None),                    # NXM_NX_TUN_IPV4_DST
}
OXM_FIELDS = {k: v for k, v in _OXM_TABLE.items() if k in ofp.FIELDS}
# Other encodings accepted on decode for the same field.
_OXM_ALIASES: dict[tuple[int, int, int | None], str] = {
    (m.OFPXMC_NXM_1, 34, None): "tcp_flags",                       # NXM_NX_TCP_FLAGS
}
_OXM_BY_KEY: dict[tuple[int, int, int | None], str] = {
    **{v: k for k, v in OXM_FIELDS.items()},
    **{k: v for k, v in _OXM_ALIASES.items() if v in ofp.FIELDS},
}


def oxm_header(name: str, hasmask: bool = False) -> int:
    """The 32-bit OXM header of field `name` (length includes an experimenter id)."""
    cls, fld, exp = OXM_FIELDS[name]
    n = ofp.FIELDS[name].nbytes * (2 if hasmask else 1) + (4 if exp is not None else 0)
    return cls << 16 | fld << 9 | int(hasmask) << 8 | n


def _oxm_encode(name: str, value: int, mask: int | None) -> bytes:
    spec = ofp.FIELDS[name]
    if name not in OXM_FIELDS:
        raise ValueError(f"match field {name!r} has no OpenFlow 1.3 encoding")
    exp = OXM_FIELDS[name][2]
    out = _U32.pack(oxm_header(name, mask is not None))
    if exp is not None:
        out += _U32.pack(exp)
    out += value.to_bytes(spec.nbytes, "big")
    if mask is not None:
        out += mask.to_bytes(spec.nbytes, "big")
    return out


# per field: (nbytes, full mask, maskable), looked up once per OXM on the decode path
_FIELD_SHAPE = {name: (f.nbytes, f.full_mask, f.maskable) for name, f in ofp.FIELDS.items()}


# exact 32-bit header -> (name, nbytes, full mask, hasmask) of every valid non-experimenter
# OXM, masked and not: the common case costs one dict lookup
_BY_HEADER: dict[int, tuple[str, int, int, bool]] = {}
for (_cls, _fld, _exp), _name in _OXM_BY_KEY.items():
    if _exp is None:
        _nb, _full, _maskable = _FIELD_SHAPE[_name]
        _BY_HEADER[_cls << 16 | _fld << 9 | _nb] = (_name, _nb, _full, False)
        if _maskable:
            _BY_HEADER[_cls << 16 | _fld << 9 | 0x100 | 2 * _nb] = (_name, _nb, _full, True)


def _oxm_decode(r: _Reader, errs: dict[str, tuple[int, int]]) -> tuple[str, int, int | None]:
    """One OXM TLV -> (field name, value, mask or None).  errs maps the kinds of problem
    (len, field, mask, value) to error codes: a match and a set_field report differently.
    Hot on the flow-mod path, hence the inline bounds checks instead of sub-readers."""
    buf, pos = r.buf, r.pos
    if r.end - pos < 4:
        raise _fail(errs["len"], "truncated OXM header")
    (hdr,) = _U32.unpack_from(buf, pos)
    n = hdr & 0xFF
    start, stop = pos + 4, pos + 4 + n
    if stop > r.end:
        raise _fail(errs["len"], f"OXM length {n} runs past its container")
    r.pos = stop
    known = _BY_HEADER.get(hdr)
    if known is not None:  # a well-formed header: only the value and mask to check
        name, nbytes, full, hasmask = known
        value = int.from_bytes(buf[start:start + nbytes], "big")
        if value > full:
            raise _fail(errs["value"], f"{name}: value {value:#x} wider than the field")
        if not hasmask:
            return name, value, None
        mask = int.from_bytes(buf[start + nbytes:stop], "big")
        if mask > full:
            raise _fail(errs["mask"], f"{name}: mask {mask:#x} wider than the field")
        if value & ~mask:
            raise _fail(errs["wildcards"], f"{name}: value {value:#x} outside mask {mask:#x}")
        return name, value, mask
    cls, fld, hasmask = hdr >> 16, (hdr >> 9) & 0x7F, hdr & 0x100
    exp = None
    if cls == m.OFPXMC_EXPERIMENTER:
        if n < 4:
            raise _fail(errs["len"], f"experimenter OXM length {n}")
        (exp,) = _U32.unpack_from(buf, start)
        start += 4
    name = _OXM_BY_KEY.get((cls, fld, exp))
    if name is None:
        raise _fail(errs["field"], f"unknown OXM class {cls:#x} field {fld}"
                    + (f" experimenter {exp:#x}" if exp is not None else ""))
    nbytes, full, maskable = _FIELD_SHAPE[name]
    if stop - start != (2 * nbytes if hasmask else nbytes):
        raise _fail(errs["len"], f"{name}: OXM length {n}")
    value = int.from_bytes(buf[start:start + nbytes], "big")
    if value > full:
        raise _fail(errs["value"], f"{name}: value {value:#x} wider than the field")
    if not hasmask:
        return name, value, None
    if not maskable:
        raise _fail(errs["mask"], f"{name} cannot be masked")
    mask = int.from_bytes(buf[start + nbytes:stop], "big")
    if mask > full:
        raise _fail(errs["mask"], f"{name}: mask {mask:#x} wider than the field")
    if value & ~mask:
        raise _fail(errs["wildcards"], f"{name}: value {value:#x} outside mask {mask:#x}")
    return name, value, mask


_MATCH_ERRS = {
    "len": _MATCH_LEN,
    "field": (m.OFPET_BAD_MATCH, m.OFPBMC_BAD_FIELD),
    "mask": (m.OFPET_BAD_MATCH, m.OFPBMC_BAD_MASK),
    "value": (m.OFPET_BAD_MATCH, m.OFPBMC_BAD_VALUE),
    "wildcards": (m.OFPET_BAD_MATCH, m.OFPBMC_BAD_WILDCARDS),
}
_SET_FIELD_ERRS = {
    "len": (m.OFPET_BAD_ACTION, m.OFPBAC_BAD_SET_LEN),
    "field": (m.OFPET_BAD_ACTION, m.OFPBAC_BAD_SET_TYPE),
    "mask": (m.OFPET_BAD_ACTION, m.OFPBAC_BAD_SET_ARGUMENT),
    "value": (m.OFPET_BAD_ACTION, m.OFPBAC_BAD_SET_ARGUMENT),
    "wildcards": (m.OFPET_BAD_ACTION, m.OFPBAC_BAD_SET_ARGUMENT),
}


def _pack_match(match: ofp.Match) -> bytes:
    """ofp_match (type OXM), padded to 8 bytes.  A full mask is sent as no mask."""
    oxms = b""
    for name, (v, mk) in sorted(match.fields.items(), key=lambda kv: ofp.FIELDS[kv[0]].id):
        full = ofp.FIELDS[name].full_mask
        oxms += _oxm_encode(name, v & mk, None if mk == full else mk)
    n = 4 + len(oxms)
    return _TL.pack(m.OFPMT_OXM, n) + oxms + bytes(_pad8(n) - n)


def _unpack_match(r: _Reader) -> ofp.Match:
    mtype, n = r.unpack(_TL)
    if mtype != m.OFPMT_OXM:
        raise _fail((m.OFPET_BAD_MATCH, m.OFPBMC_BAD_TYPE), f"match type {mtype}")
    if n < 4:
        raise _fail(_MATCH_LEN, f"match length {n}")
    if _pad8(n) - 4 > r.end - r.pos:
        raise _fail(_MATCH_LEN, f"match length {n} runs past the message")
    body = _Reader(r.buf, r.pos, r.pos + n - 4, _MATCH_LEN)
    r.pos += _pad8(n) - 4
    fields: dict[str, tuple[int, int]] = {}
    while body.pos < body.end:
        name, v, mk = _oxm_decode(body, _MATCH_ERRS)
        if name in fields:
            raise _fail((m.OFPET_BAD_MATCH, m.OFPBMC_DUP_FIELD), f"{name} twice")
        fields[name] = (v, _FIELD_SHAPE[name][1] if mk is None else mk)
    return ofp.Match.from_fields(fields)


# --- actions ---------------------------------------------------------------------------

_OUTPUT = _S("!IH6x")
_ACT_U32 = _S("!I")
_ACT_PUSH = _S("!H2x")
_ACT_TTL = _S("!B3x")
_PAD4 = _S("!4x")

_REFUSED_ACTIONS = {m.OFPAT_COPY_TTL_OUT, m.OFPAT_COPY_TTL_IN, m.OFPAT_SET_MPLS_TTL,
                    m.OFPAT_DEC_MPLS_TTL, m.OFPAT_PUSH_MPLS, m.OFPAT_POP_MPLS,
                    m.OFPAT_PUSH_PBB, m.OFPAT_POP_PBB}


def _pack_action(a: object) -> bytes:
    if isinstance(a, ofp.Output):
        t, body = m.OFPAT_OUTPUT, _OUTPUT.pack(a.port, a.max_len)
    elif isinstance(a, ofp.Group):
        t, body = m.OFPAT_GROUP, _ACT_U32.pack(a.group_id)
    elif isinstance(a, ofp.SetQueue):
        t, body = m.OFPAT_SET_QUEUE, _ACT_U32.pack(a.queue_id)
    elif isinstance(a, ofp.PushVlan):
        t, body = m.OFPAT_PUSH_VLAN, _ACT_PUSH.pack(a.ethertype)
    elif isinstance(a, ofp.PopVlan):
        t, body = m.OFPAT_POP_VLAN, _PAD4.pack()
    elif isinstance(a, ofp.SetNwTtl):
        t, body = m.OFPAT_SET_NW_TTL, _ACT_TTL.pack(a.ttl)
    elif isinstance(a, ofp.DecNwTtl):
        t, body = m.OFPAT_DEC_NW_TTL, _PAD4.pack()
    elif isinstance(a, ofp.SetField):
        oxm = _oxm_encode(a.field, a.value, None)
        t, body = m.OFPAT_SET_FIELD, oxm + bytes(_pad8(4 + len(oxm)) - 4 - len(oxm))
    else:
        raise ValueError(f"not an OpenFlow 1.3 action: {a!r}")
    return _TL.pack(t, 4 + len(body)) + body


def _pack_actions(actions: tuple) -> bytes:
    return b"".join(_pack_action(a) for a in actions)


def _unpack_action(r: _Reader) -> object:
    t, n = r.unpack(_TL)
    if n < 8 or n % 8:
        raise _fail(_ACTION_LEN, f"action type {t} length {n}")
    body = r.sub(n - 4, _ACTION_LEN)

    def fixed(st: struct.Struct) -> tuple:
        if body.left != st.size:
            raise _fail(_ACTION_LEN, f"action type {t} length {n}")
        return body.unpack(st)

    if t == m.OFPAT_OUTPUT:
        port, max_len = fixed(_OUTPUT)
        return ofp.Output(port, max_len)
    if t == m.OFPAT_GROUP:
        return ofp.Group(fixed(_ACT_U32)[0])
    if t == m.OFPAT_SET_QUEUE:
        return ofp.SetQueue(fixed(_ACT_U32)[0])
    if t == m.OFPAT_PUSH_VLAN:
        return ofp.PushVlan(fixed(_ACT_PUSH)[0])
    if t == m.OFPAT_POP_VLAN:
        fixed(_PAD4)
        return ofp.PopVlan()
    if t == m.OFPAT_SET_NW_TTL:
        return ofp.SetNwTtl(fixed(_ACT_TTL)[0])
    if t == m.OFPAT_DEC_NW_TTL:
        fixed(_PAD4)
        return ofp.DecNwTtl()
    if t == m.OFPAT_SET_FIELD:
        name, value, mask = _oxm_decode(body, _SET_FIELD_ERRS)
        if mask is not None:
            raise _fail((m.OFPET_BAD_ACTION, m.OFPBAC_BAD_SET_ARGUMENT), "masked set_field")
        if body.left >= 8 or any(body.rest()):
            raise _fail((m.OFPET_BAD_ACTION, m.OFPBAC_BAD_SET_LEN), "set_field padding")
        return ofp.SetField(name, value)
    if t == m.OFPAT_EXPERIMENTER:
        raise _fail((m.OFPET_BAD_ACTION, m.OFPBAC_BAD_EXPERIMENTER),
                    "experimenter action")
    why = "not supported" if t in _REFUSED_ACTIONS else "unknown"
    raise _fail((m.OFPET_BAD_ACTION, m.OFPBAC_BAD_TYPE), f"action type {t} {why}")


def _unpack_actions(r: _Reader) -> tuple:
    out = []
    while r.left:
        out.append(_unpack_action(r))
    return tuple(out)


# --- instructions ----------------------------------------------------------------------

_GOTO = _S("!B3x")
_METADATA = _S("!4xQQ")
_METER = _S("!I")


def _pack_instruction(i: object) -> bytes:
    if isinstance(i, ofp.GotoTable):
        t, body = m.OFPIT_GOTO_TABLE, _GOTO.pack(i.table_id)
    elif isinstance(i, ofp.WriteMetadata):
        t, body = m.OFPIT_WRITE_METADATA, _METADATA.pack(i.value, i.mask)
    elif isinstance(i, ofp.WriteActions):
        t, body = m.OFPIT_WRITE_ACTIONS, _PAD4.pack() + _pack_actions(i.actions)
    elif isinstance(i, ofp.ApplyActions):
        t, body = m.OFPIT_APPLY_ACTIONS, _PAD4.pack() + _pack_actions(i.actions)
    elif isinstance(i, ofp.ClearActions):
        t, body = m.OFPIT_CLEAR_ACTIONS, _PAD4.pack()
    elif isinstance(i, ofp.Meter):
        t, body = m.OFPIT_METER, _METER.pack(i.meter_id)
    else:
        raise ValueError(f"not an OpenFlow 1.3 instruction: {i!r}")
    return _TL.pack(t, 4 + len(body)) + body


def _pack_instructions(insts: tuple) -> bytes:
    return b"".join(_pack_instruction(i) for i in insts)


def _unpack_instruction(r: _Reader) -> tuple[int, object]:
    t, n = r.unpack(_TL)
    if n < 8 or n % 8:
        raise _fail(_INST_LEN, f"instruction type {t} length {n}")
    body = r.sub(n - 4, _INST_LEN)

    def fixed(st: struct.Struct) -> tuple:
        if body.left != st.size:
            raise _fail(_INST_LEN, f"instruction type {t} length {n}")
        return body.unpack(st)

    if t == m.OFPIT_GOTO_TABLE:
        return t, ofp.GotoTable(fixed(_GOTO)[0])
    if t == m.OFPIT_WRITE_METADATA:
        value, mask = fixed(_METADATA)
        return t, ofp.WriteMetadata(value, mask)
    if t in (m.OFPIT_WRITE_ACTIONS, m.OFPIT_APPLY_ACTIONS):
        body.unpack(_PAD4)
        acts = _unpack_actions(body)
        return t, (ofp.WriteActions(acts) if t == m.OFPIT_WRITE_ACTIONS
                   else ofp.ApplyActions(acts))
    if t == m.OFPIT_CLEAR_ACTIONS:
        fixed(_PAD4)
        return t, ofp.ClearActions()
    if t == m.OFPIT_METER:
        return t, ofp.Meter(fixed(_METER)[0])
    if t == m.OFPIT_EXPERIMENTER:
        raise _fail((m.OFPET_BAD_INSTRUCTION, m.OFPBIC_BAD_EXPERIMENTER),
                    "experimenter instruction")
    raise _fail((m.OFPET_BAD_INSTRUCTION, m.OFPBIC_UNKNOWN_INST), f"instruction type {t}")


# Controllers send the same instructions with many matches: decoded instruction lists
# (immutable tuples) are kept by their bytes.  Refused ones are not kept.
_INSTRUCTION_CACHE: dict[bytes, tuple] = {}
_INSTRUCTION_CACHE_MAX = 1024


def _unpack_instructions(r: _Reader) -> tuple:
    raw = r.buf[r.pos:r.end]
    cached = _INSTRUCTION_CACHE.get(raw)
    if cached is not None:
        r.pos = r.end
        return cached
    out, seen = [], set()
    while r.left:
        t, inst = _unpack_instruction(r)
        if t in seen:
            raise _fail((m.OFPET_BAD_INSTRUCTION, m.OFPBIC_DUP_INST), f"instruction {t} twice")
        seen.add(t)
        out.append(inst)
    if len(_INSTRUCTION_CACHE) >= _INSTRUCTION_CACHE_MAX:
        _INSTRUCTION_CACHE.clear()
    _INSTRUCTION_CACHE[raw] = result = tuple(out)
    return result


# --- buckets and bands -----------------------------------------------------------------

_BUCKET = _S("!HHII4x")
_BAND = _S("!HHII")
_BAND_TAIL = _S("!B3x")


def _pack_bucket(b: ofp.Bucket) -> bytes:
    acts = _pack_actions(b.actions)
    return _BUCKET.pack(_BUCKET.size + len(acts), b.weight, b.watch_port, b.watch_group) + acts


def _unpack_buckets(r: _Reader) -> tuple:
    out = []
    while r.left:
        n = r.peek_u16(0)
        if n < _BUCKET.size or n % 8:
            raise _fail(_BUCKET_LEN, f"bucket length {n}")
        body = r.sub(n, _BUCKET_LEN)
        _, weight, watch_port, watch_group = body.unpack(_BUCKET)
        out.append(ofp.Bucket(_unpack_actions(body), weight, watch_port, watch_group))
    return tuple(out)


def _pack_band(b: ofp.MeterBand) -> bytes:
    if b.type not in (ofp.OFPMBT_DROP, ofp.OFPMBT_DSCP_REMARK):
        raise ValueError(f"meter band type {b.type} cannot be encoded")
    prec = b.prec_level if b.type == ofp.OFPMBT_DSCP_REMARK else 0
    return _BAND.pack(b.type, 16, b.rate, b.burst_size) + _BAND_TAIL.pack(prec)


def _unpack_bands(r: _Reader) -> tuple:
    out = []
    while r.left:
        t, n, rate, burst = r.unpack(_BAND)
        if n != 16:
            raise _fail(_BAND_LEN, f"meter band type {t} length {n}")
        (prec,) = r.unpack(_BAND_TAIL)
        if t == ofp.OFPMBT_DROP:
            out.append(ofp.MeterBand(t, rate, burst))
        elif t == ofp.OFPMBT_DSCP_REMARK:
            out.append(ofp.MeterBand(t, rate, burst, prec))
        else:
            raise _fail((m.OFPET_METER_MOD_FAILED, m.OFPMMFC_BAD_BAND),
                        f"meter band type {t}")
    return tuple(out)


# --- ports, queues, table features ------------------------------------------------------

_PORT = _S("!I4x6s2x16sIIIIIIII")


def _pack_port(p: m.Port) -> bytes:
    return _PORT.pack(p.port_no, p.hw_addr, _cstr(p.name, m.OFP_MAX_PORT_NAME_LEN), p.config,
                      p.state, p.curr, p.advertised, p.supported, p.peer, p.curr_speed,
                      p.max_speed)


def _unpack_port(r: _Reader) -> m.Port:
    (port_no, hw_addr, name, config, state, curr, advertised, supported, peer, curr_speed,
     max_speed) = r.unpack(_PORT)
    return m.Port(port_no=port_no, hw_addr=hw_addr, name=_text(name), config=config,
                  state=state, curr=curr, advertised=advertised, supported=supported,
                  peer=peer, curr_speed=curr_speed, max_speed=max_speed)


_QUEUE = _S("!IIH6x")
_QPROP = _S("!HH4x")
_QRATE = _S("!H6x")
_QEXP = _S("!I4x")


def _pack_queue(q: m.PacketQueue) -> bytes:
    props = b""
    for p in q.properties:
        if isinstance(p, m.QueueRateProp):
            props += _QPROP.pack(p.type, 16) + _QRATE.pack(p.rate)
        elif isinstance(p, m.QueueExperimenterProp):
            if len(p.data) % 8:
                raise ValueError("queue experimenter property data must be a multiple of 8")
            props += (_QPROP.pack(m.OFPQT_EXPERIMENTER, 16 + len(p.data))
                      + _QEXP.pack(p.experimenter) + p.data)
        else:
            raise ValueError(f"not a queue property: {p!r}")
    return _QUEUE.pack(q.queue_id, q.port, 16 + len(props)) + props


def _unpack_queues(r: _Reader) -> tuple:
    out = []
    while r.left:
        queue_id, port, n = r.unpack(_QUEUE)
        if n < 16:
            raise _fail(_BAD_LEN, f"queue length {n}")
        body = r.sub(n - 16, _BAD_LEN)
        props: list = []
        while body.left:
            ptype, plen = body.unpack(_QPROP)
            if plen < 16 or plen % 8:
                raise _fail(_BAD_LEN, f"queue property length {plen}")
            pbody = body.sub(plen - 8, _BAD_LEN)
            if ptype in (m.OFPQT_MIN_RATE, m.OFPQT_MAX_RATE):
                if plen != 16:
                    raise _fail(_BAD_LEN, f"queue rate property length {plen}")
                props.append(m.QueueRateProp(type=ptype, rate=pbody.unpack(_QRATE)[0]))
            elif ptype == m.OFPQT_EXPERIMENTER:
                (exp,) = pbody.unpack(_QEXP)
                props.append(m.QueueExperimenterProp(experimenter=exp, data=pbody.rest()))
            else:
                raise _fail((m.OFPET_BAD_REQUEST, m.OFPBRC_BAD_TYPE),
                            f"queue property {ptype}")
        out.append(m.PacketQueue(queue_id=queue_id, port=port, properties=tuple(props)))
    return tuple(out)


_TF = _S("!HB5x32sQQII")
_EXP_PROP = _S("!II")
_INST_PROPS = (m.OFPTFPT_INSTRUCTIONS, m.OFPTFPT_INSTRUCTIONS_MISS)
_TABLE_PROPS = (m.OFPTFPT_NEXT_TABLES, m.OFPTFPT_NEXT_TABLES_MISS)
_ACTION_PROPS = (m.OFPTFPT_WRITE_ACTIONS, m.OFPTFPT_WRITE_ACTIONS_MISS,
                 m.OFPTFPT_APPLY_ACTIONS, m.OFPTFPT_APPLY_ACTIONS_MISS)
_OXM_PROPS = (m.OFPTFPT_MATCH, m.OFPTFPT_WILDCARDS, m.OFPTFPT_WRITE_SETFIELD,
              m.OFPTFPT_WRITE_SETFIELD_MISS, m.OFPTFPT_APPLY_SETFIELD,
              m.OFPTFPT_APPLY_SETFIELD_MISS)
_EXP_PROPS = (m.OFPTFPT_EXPERIMENTER, m.OFPTFPT_EXPERIMENTER_MISS)


def _pack_tf_prop(p: m.TableFeatureProp) -> bytes:
    if p.type in _INST_PROPS or p.type in _ACTION_PROPS:
        # instruction/action ids: (type, len) or, for an experimenter id,
        # (0xffff, 8, experimenter)
        body = b"".join(_TL.pack(i[0], 8) + _U32.pack(i[1]) if isinstance(i, tuple)
                        else _TL.pack(i, 4) for i in p.ids)
    elif p.type in _TABLE_PROPS:
        body = bytes(p.ids)
    elif p.type in _OXM_PROPS:
        body = b"".join(_U32.pack(i[0]) + _U32.pack(i[1]) if isinstance(i, tuple)
                        else _U32.pack(i) for i in p.ids)
    elif p.type in _EXP_PROPS:
        body = _EXP_PROP.pack(p.experimenter, p.exp_type) + p.data
    else:
        raise ValueError(f"table feature property type {p.type} cannot be encoded")
    n = 4 + len(body)
    return _TL.pack(p.type, n) + body + bytes(_pad8(n) - n)


def _unpack_tf_ids(ptype: int, r: _Reader) -> tuple:
    ids: list = []
    if ptype in _TABLE_PROPS:
        return tuple(r.rest())
    while r.left:
        if ptype in _OXM_PROPS:
            (hdr,) = r.unpack(_U32)
            if hdr >> 16 == m.OFPXMC_EXPERIMENTER:
                ids.append((hdr, r.unpack(_U32)[0]))
            else:
                ids.append(hdr)
            continue
        t, n = r.unpack(_TL)
        if t == 0xFFFF and n == 8:
            ids.append((t, r.unpack(_U32)[0]))
        elif t != 0xFFFF and n == 4:
            ids.append(t)
        else:
            raise _fail(_TF_LEN, f"table feature id type {t} length {n}")
    return tuple(ids)


def _pack_table_features(tf: m.TableFeatures) -> bytes:
    props = b"".join(_pack_tf_prop(p) for p in tf.properties)
    return _TF.pack(_TF.size + len(props), tf.table_id,
                    _cstr(tf.name, m.OFP_MAX_TABLE_NAME_LEN), tf.metadata_match,
                    tf.metadata_write, tf.config, tf.max_entries) + props


def _unpack_table_features(r: _Reader) -> tuple:
    out = []
    while r.left:
        n = r.peek_u16(0)
        if n < _TF.size or n % 8:
            raise _fail(_TF_LEN, f"table features length {n}")
        body = r.sub(n, _TF_LEN)
        _, table_id, name, mmatch, mwrite, config, max_entries = body.unpack(_TF)
        props = []
        while body.left:
            ptype, plen = body.unpack(_TL)
            if plen < 4:
                raise _fail(_TF_LEN, f"table feature property length {plen}")
            pbody = body.sub(plen - 4, _TF_LEN)
            body.sub(_pad8(plen) - plen, _TF_LEN)
            if ptype in _EXP_PROPS:
                exp, exp_type = pbody.unpack(_EXP_PROP)
                props.append(m.TableFeatureProp(type=ptype, experimenter=exp,
                                                exp_type=exp_type, data=pbody.rest()))
            elif ptype in _INST_PROPS + _TABLE_PROPS + _ACTION_PROPS + _OXM_PROPS:
                props.append(m.TableFeatureProp(type=ptype, ids=_unpack_tf_ids(ptype, pbody)))
            else:
                raise _fail((m.OFPET_TABLE_FEATURES_FAILED, m.OFPTFFC_BAD_TYPE),
                            f"table feature property type {ptype}")
        out.append(m.TableFeatures(table_id=table_id, name=_text(name),
                                   metadata_match=mmatch, metadata_write=mwrite,
                                   config=config, max_entries=max_entries,
                                   properties=tuple(props)))
    return tuple(out)


# --- message bodies --------------------------------------------------------------------

Pack = Callable[[object], bytes]
Unpack = Callable[[_Reader], dict]


def _fixed(st: struct.Struct, names: tuple[str, ...]) -> tuple[Pack, Unpack]:
    """(pack, unpack) of a body that is exactly one struct, field by field."""

    def pack(msg: object) -> bytes:
        return st.pack(*(getattr(msg, n) for n in names))

    def unpack(r: _Reader) -> dict:
        vals = r.unpack(st)
        r.done()
        return dict(zip(names, vals))

    return pack, unpack


_EMPTY = _fixed(_S(""), ())


def _raw(name: str) -> tuple[Pack, Unpack]:
    return (lambda msg: getattr(msg, name)), (lambda r: {name: r.rest()})


def _entries(name: str, pack_one: Pack, unpack_all: Callable[[_Reader], tuple]
             ) -> tuple[Pack, Unpack]:
    """A body that is a list of variable-length entries (splittable by encode_split)."""
    return ((lambda msg: b"".join(pack_one(e) for e in getattr(msg, name))),
            (lambda r: {name: unpack_all(r)}))


def _fixed_entries(name: str, cls: type, st: struct.Struct, names: tuple[str, ...]
                   ) -> tuple[Pack, Unpack]:
    def pack_one(e: object) -> bytes:
        return st.pack(*(getattr(e, n) for n in names))

    def unpack_all(r: _Reader) -> tuple:
        out = []
        while r.left:
            out.append(cls(**dict(zip(names, r.unpack(st)))))
        return tuple(out)

    return _entries(name, pack_one, unpack_all)


_BITMAP_ELEM = _S("!HH")


def _pack_hello(msg: m.Hello) -> bytes:
    if not msg.versions:
        return b""
    words = [0] * (max(msg.versions) // 32 + 1)
    for v in msg.versions:
        words[v // 32] |= 1 << (v % 32)
    n = 4 + 4 * len(words)
    return (_BITMAP_ELEM.pack(m.OFPHET_VERSIONBITMAP, n)
            + b"".join(_U32.pack(w) for w in words) + bytes(_pad8(n) - n))


def _unpack_hello(r: _Reader, version: int) -> dict:
    versions: set[int] | None = None
    while r.left >= 4:
        etype, n = r.unpack(_BITMAP_ELEM)
        if n < 4:
            raise _fail((m.OFPET_HELLO_FAILED, m.OFPHFC_INCOMPATIBLE), f"hello element {n}")
        body = r.sub(n - 4, (m.OFPET_HELLO_FAILED, m.OFPHFC_INCOMPATIBLE))
        r.take(min(r.left, _pad8(n) - n))
        if etype == m.OFPHET_VERSIONBITMAP:
            versions = set() if versions is None else versions
            # versions are 8-bit: words past the 8th name none and are not looked at
            for word in range(min(body.left // 4, 8)):
                (bits,) = body.unpack(_U32)
                versions.update(word * 32 + b for b in range(32) if bits >> b & 1)
    r.rest()  # spec: ignore what we do not understand
    return {"versions": frozenset({version} if versions is None else versions)}


def _pack_error(msg: m.Error) -> bytes:
    return _TL.pack(msg.type, msg.code) + msg.data


def _unpack_error(r: _Reader) -> dict:
    t, code = r.unpack(_TL)
    return {"type": t, "code": code, "data": r.rest()}


_EXPERIMENTER = _S("!II")


def _pack_experimenter(msg: m.Experimenter) -> bytes:
    return _EXPERIMENTER.pack(msg.experimenter, msg.exp_type) + msg.data


def _unpack_experimenter(r: _Reader) -> dict:
    exp, exp_type = r.unpack(_EXPERIMENTER)
    return {"experimenter": exp, "exp_type": exp_type, "data": r.rest()}


_PACKET_IN = _S("!IHBBQ")


def _pack_packet_in(msg: m.PacketIn) -> bytes:
    return (_PACKET_IN.pack(msg.buffer_id, msg.total_len, msg.reason, msg.table_id,
                            msg.cookie) + _pack_match(msg.match) + bytes(2) + msg.data)


def _unpack_packet_in(r: _Reader) -> dict:
    buffer_id, total_len, reason, table_id, cookie = r.unpack(_PACKET_IN)
    match = _unpack_match(r)
    r.take(2)
    return {"buffer_id": buffer_id, "total_len": total_len, "reason": reason,
            "table_id": table_id, "cookie": cookie, "match": match, "data": r.rest()}


_FLOW_REMOVED = _S("!QHBBIIHHQQ")
_FLOW_REMOVED_NAMES = ("cookie", "priority", "reason", "table_id", "duration_sec",
                       "duration_nsec", "idle_timeout", "hard_timeout", "packet_count",
                       "byte_count")


def _pack_flow_removed(msg: m.FlowRemoved) -> bytes:
    return (_FLOW_REMOVED.pack(*(getattr(msg, n) for n in _FLOW_REMOVED_NAMES))
            + _pack_match(msg.match))


def _unpack_flow_removed(r: _Reader) -> dict:
    out = dict(zip(_FLOW_REMOVED_NAMES, r.unpack(_FLOW_REMOVED)))
    out["match"] = _unpack_match(r)
    r.done()
    return out


_PORT_STATUS = _S("!B7x")


def _pack_port_status(msg: m.PortStatus) -> bytes:
    return _PORT_STATUS.pack(msg.reason) + _pack_port(msg.desc)


def _unpack_port_status(r: _Reader) -> dict:
    (reason,) = r.unpack(_PORT_STATUS)
    desc = _unpack_port(r)
    r.done()
    return {"reason": reason, "desc": desc}


_PACKET_OUT = _S("!IIH6x")


def _pack_packet_out(msg: m.PacketOut) -> bytes:
    acts = _pack_actions(msg.actions)
    return _PACKET_OUT.pack(msg.buffer_id, msg.in_port, len(acts)) + acts + msg.data


def _unpack_packet_out(r: _Reader) -> dict:
    buffer_id, in_port, alen = r.unpack(_PACKET_OUT)
    actions = _unpack_actions(r.sub(alen, _BAD_LEN))
    return {"buffer_id": buffer_id, "in_port": in_port, "actions": actions,
            "data": r.rest()}


_FLOW_MOD = _S("!QQBBHHHIIIH2x")
_FLOW_MOD_NAMES = ("cookie", "cookie_mask", "table_id", "command", "idle_timeout",
                   "hard_timeout", "priority", "buffer_id", "out_port", "out_group", "flags")


def _pack_flow_mod(msg: m.FlowMod) -> bytes:
    return (_FLOW_MOD.pack(*(getattr(msg, n) for n in _FLOW_MOD_NAMES))
            + _pack_match(msg.match) + _pack_instructions(msg.instructions))


def _unpack_flow_mod(r: _Reader) -> dict:
    out = dict(zip(_FLOW_MOD_NAMES, r.unpack(_FLOW_MOD)))
    out["match"] = _unpack_match(r)
    out["instructions"] = _unpack_instructions(r)
    return out


_GROUP_MOD = _S("!HBxI")


def _pack_group_mod(msg: m.GroupMod) -> bytes:
    return (_GROUP_MOD.pack(msg.command, msg.type, msg.group_id)
            + b"".join(_pack_bucket(b) for b in msg.buckets))


def _unpack_group_mod(r: _Reader) -> dict:
    command, gtype, group_id = r.unpack(_GROUP_MOD)
    return {"command": command, "type": gtype, "group_id": group_id,
            "buckets": _unpack_buckets(r)}


_METER_MOD = _S("!HHI")


def _pack_meter_mod(msg: m.MeterMod) -> bytes:
    return (_METER_MOD.pack(msg.command, msg.flags, msg.meter_id)
            + b"".join(_pack_band(b) for b in msg.bands))


def _unpack_meter_mod(r: _Reader) -> dict:
    command, flags, meter_id = r.unpack(_METER_MOD)
    return {"command": command, "flags": flags, "meter_id": meter_id,
            "bands": _unpack_bands(r)}


_QUEUE_GET_CONFIG = _S("!I4x")


def _pack_queue_config_reply(msg: m.QueueGetConfigReply) -> bytes:
    return _QUEUE_GET_CONFIG.pack(msg.port) + b"".join(_pack_queue(q) for q in msg.queues)


def _unpack_queue_config_reply(r: _Reader) -> dict:
    (port,) = r.unpack(_QUEUE_GET_CONFIG)
    return {"port": port, "queues": _unpack_queues(r)}


_ASYNC = _S("!IIIIII")
_ASYNC_NAMES = ("packet_in_mask", "port_status_mask", "flow_removed_mask")


def _pack_async(msg: m.SetAsync) -> bytes:
    return _ASYNC.pack(*(x for n in _ASYNC_NAMES for x in getattr(msg, n)))


def _unpack_async(r: _Reader) -> dict:
    v = r.unpack(_ASYNC)
    r.done()
    return {n: (v[2 * i], v[2 * i + 1]) for i, n in enumerate(_ASYNC_NAMES)}


# --- multipart bodies ------------------------------------------------------------------

_MP = _S("!HH4x")
_DESC = _S(f"!{m.DESC_STR_LEN}s{m.DESC_STR_LEN}s{m.DESC_STR_LEN}s"
           f"{m.SERIAL_NUM_LEN}s{m.DESC_STR_LEN}s")
_DESC_NAMES = ("mfr_desc", "hw_desc", "sw_desc", "serial_num", "dp_desc")
_DESC_SIZES = (m.DESC_STR_LEN,) * 3 + (m.SERIAL_NUM_LEN, m.DESC_STR_LEN)


def _pack_desc(msg: m.DescReply) -> bytes:
    return b"".join(_cstr(getattr(msg, n), s) for n, s in zip(_DESC_NAMES, _DESC_SIZES))


def _unpack_desc(r: _Reader) -> dict:
    vals = r.unpack(_DESC)
    r.done()
    return {n: _text(v) for n, v in zip(_DESC_NAMES, vals)}


_FLOW_REQ = _S("!B3xII4xQQ")
_FLOW_REQ_NAMES = ("table_id", "out_port", "out_group", "cookie", "cookie_mask")


def _pack_flow_req(msg: m.FlowStatsRequest) -> bytes:
    return (_FLOW_REQ.pack(*(getattr(msg, n) for n in _FLOW_REQ_NAMES))
            + _pack_match(msg.match))


def _unpack_flow_req(r: _Reader) -> dict:
    out = dict(zip(_FLOW_REQ_NAMES, r.unpack(_FLOW_REQ)))
    out["match"] = _unpack_match(r)
    r.done()
    return out


_FLOW_STATS = _S("!HBxIIHHHH4xQQQ")
_FLOW_STATS_NAMES = ("table_id", "duration_sec", "duration_nsec", "priority",
                     "idle_timeout", "hard_timeout", "flags", "cookie", "packet_count",
                     "byte_count")


def _pack_flow_stats(f: m.FlowStats) -> bytes:
    tail = _pack_match(f.match) + _pack_instructions(f.instructions)
    return (_FLOW_STATS.pack(_FLOW_STATS.size + len(tail),
                             *(getattr(f, n) for n in _FLOW_STATS_NAMES)) + tail)


def _unpack_flow_stats(r: _Reader) -> tuple:
    out = []
    while r.left:
        n = r.peek_u16(0)
        if n < _FLOW_STATS.size or n % 8:
            raise _fail(_BAD_LEN, f"flow stats length {n}")
        body = r.sub(n, _BAD_LEN)
        vals = dict(zip(_FLOW_STATS_NAMES, body.unpack(_FLOW_STATS)[1:]))
        match = _unpack_match(body)
        out.append(m.FlowStats(**vals, match=match,
                               instructions=_unpack_instructions(body)))
    return tuple(out)


_GROUP_STATS = _S("!H2xII4xQQII")
_BUCKET_COUNTER = _S("!QQ")


def _pack_group_stats(g: m.GroupStats) -> bytes:
    return (_GROUP_STATS.pack(_GROUP_STATS.size + 16 * len(g.bucket_stats), g.group_id,
                              g.ref_count, g.packet_count, g.byte_count, g.duration_sec,
                              g.duration_nsec)
            + b"".join(_BUCKET_COUNTER.pack(*b) for b in g.bucket_stats))


def _unpack_group_stats(r: _Reader) -> tuple:
    out = []
    while r.left:
        n = r.peek_u16(0)
        if n < _GROUP_STATS.size or (n - _GROUP_STATS.size) % 16:
            raise _fail(_BAD_LEN, f"group stats length {n}")
        body = r.sub(n, _BAD_LEN)
        _, gid, refs, pkts, nbytes, sec, nsec = body.unpack(_GROUP_STATS)
        buckets = []
        while body.left:
            buckets.append(body.unpack(_BUCKET_COUNTER))
        out.append(m.GroupStats(group_id=gid, ref_count=refs, packet_count=pkts,
                                byte_count=nbytes, duration_sec=sec, duration_nsec=nsec,
                                bucket_stats=tuple(buckets)))
    return tuple(out)


_GROUP_DESC = _S("!HBxI")


def _pack_group_desc(g: m.GroupDesc) -> bytes:
    buckets = b"".join(_pack_bucket(b) for b in g.buckets)
    return _GROUP_DESC.pack(_GROUP_DESC.size + len(buckets), g.type, g.group_id) + buckets


def _unpack_group_descs(r: _Reader) -> tuple:
    out = []
    while r.left:
        n = r.peek_u16(0)
        if n < _GROUP_DESC.size:
            raise _fail(_BAD_LEN, f"group desc length {n}")
        body = r.sub(n, _BAD_LEN)
        _, gtype, gid = body.unpack(_GROUP_DESC)
        out.append(m.GroupDesc(type=gtype, group_id=gid, buckets=_unpack_buckets(body)))
    return tuple(out)


_GROUP_FEATURES = _S("!II4I4I")


def _pack_group_features(msg: m.GroupFeaturesReply) -> bytes:
    return _GROUP_FEATURES.pack(msg.types, msg.capabilities, *msg.max_groups, *msg.actions)


def _unpack_group_features(r: _Reader) -> dict:
    v = r.unpack(_GROUP_FEATURES)
    r.done()
    return {"types": v[0], "capabilities": v[1], "max_groups": v[2:6], "actions": v[6:10]}


_METER_STATS = _S("!IH6xIQQII")
_BAND_STATS = _S("!QQ")


def _pack_meter_stats(s: m.MeterStats) -> bytes:
    return (_METER_STATS.pack(s.meter_id, _METER_STATS.size + 16 * len(s.band_stats),
                              s.flow_count, s.packet_in_count, s.byte_in_count,
                              s.duration_sec, s.duration_nsec)
            + b"".join(_BAND_STATS.pack(*b) for b in s.band_stats))


def _unpack_meter_stats(r: _Reader) -> tuple:
    out = []
    while r.left:
        n = r.peek_u16(4)
        if n < _METER_STATS.size or (n - _METER_STATS.size) % 16:
            raise _fail(_BAD_LEN, f"meter stats length {n}")
        body = r.sub(n, _BAD_LEN)
        mid, _, flows, pkts, nbytes, sec, nsec = body.unpack(_METER_STATS)
        bands = []
        while body.left:
            bands.append(body.unpack(_BAND_STATS))
        out.append(m.MeterStats(meter_id=mid, flow_count=flows, packet_in_count=pkts,
                                byte_in_count=nbytes, duration_sec=sec, duration_nsec=nsec,
                                band_stats=tuple(bands)))
    return tuple(out)


_METER_CONFIG = _S("!HHI")


def _pack_meter_config(c: m.MeterConfig) -> bytes:
    bands = b"".join(_pack_band(b) for b in c.bands)
    return _METER_CONFIG.pack(_METER_CONFIG.size + len(bands), c.flags, c.meter_id) + bands


def _unpack_meter_configs(r: _Reader) -> tuple:
    out = []
    while r.left:
        n = r.peek_u16(0)
        if n < _METER_CONFIG.size:
            raise _fail(_BAD_LEN, f"meter config length {n}")
        body = r.sub(n, _BAD_LEN)
        _, flags, mid = body.unpack(_METER_CONFIG)
        out.append(m.MeterConfig(flags=flags, meter_id=mid, bands=_unpack_bands(body)))
    return tuple(out)


def _unpack_ports(r: _Reader) -> tuple:
    out = []
    while r.left:
        out.append(_unpack_port(r))
    return tuple(out)


_STAT_U64 = ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_dropped",
             "tx_dropped", "rx_errors", "tx_errors", "rx_frame_err", "rx_over_err",
             "rx_crc_err", "collisions")

# Multipart kinds: OFPMP type -> (request class, (pack, unpack)), (reply class, ...).
_MULTIPART: dict[int, tuple[tuple[type, tuple[Pack, Unpack]],
                            tuple[type, tuple[Pack, Unpack]]]] = {
    m.OFPMP_DESC: ((m.DescRequest, _EMPTY), (m.DescReply, (_pack_desc, _unpack_desc))),
    m.OFPMP_FLOW: ((m.FlowStatsRequest, (_pack_flow_req, _unpack_flow_req)),
                   (m.FlowStatsReply, _entries("flows", _pack_flow_stats,
                                               _unpack_flow_stats))),
    m.OFPMP_AGGREGATE: ((m.AggregateStatsRequest, (_pack_flow_req, _unpack_flow_req)),
                        (m.AggregateStatsReply,
                         _fixed(_S("!QQI4x"), ("packet_count", "byte_count", "flow_count")))),
    m.OFPMP_TABLE: ((m.TableStatsRequest, _EMPTY),
                    (m.TableStatsReply, _fixed_entries(
                        "stats", m.TableStats, _S("!B3xIQQ"),
                        ("table_id", "active_count", "lookup_count", "matched_count")))),
    m.OFPMP_PORT_STATS: ((m.PortStatsRequest, _fixed(_S("!I4x"), ("port_no",))),
                         (m.PortStatsReply, _fixed_entries(
                             "stats", m.PortStats, _S("!I4x12QII"),
                             ("port_no", *_STAT_U64, "duration_sec", "duration_nsec")))),
    m.OFPMP_QUEUE: ((m.QueueStatsRequest, _fixed(_S("!II"), ("port_no", "queue_id"))),
                    (m.QueueStatsReply, _fixed_entries(
                        "stats", m.QueueStats, _S("!IIQQQII"),
                        ("port_no", "queue_id", "tx_bytes", "tx_packets", "tx_errors",
                         "duration_sec", "duration_nsec")))),
    m.OFPMP_GROUP: ((m.GroupStatsRequest, _fixed(_S("!I4x"), ("group_id",))),
                    (m.GroupStatsReply, _entries("stats", _pack_group_stats,
                                                 _unpack_group_stats))),
    m.OFPMP_GROUP_DESC: ((m.GroupDescRequest, _EMPTY),
                         (m.GroupDescReply, _entries("groups", _pack_group_desc,
                                                     _unpack_group_descs))),
    m.OFPMP_GROUP_FEATURES: ((m.GroupFeaturesRequest, _EMPTY),
                             (m.GroupFeaturesReply, (_pack_group_features,
                                                     _unpack_group_features))),
    m.OFPMP_METER: ((m.MeterStatsRequest, _fixed(_S("!I4x"), ("meter_id",))),
                    (m.MeterStatsReply, _entries("stats", _pack_meter_stats,
                                                 _unpack_meter_stats))),
    m.OFPMP_METER_CONFIG: ((m.MeterConfigRequest, _fixed(_S("!I4x"), ("meter_id",))),
                           (m.MeterConfigReply, _entries("configs", _pack_meter_config,
                                                         _unpack_meter_configs))),
    m.OFPMP_METER_FEATURES: ((m.MeterFeaturesRequest, _EMPTY),
                             (m.MeterFeaturesReply, _fixed(
                                 _S("!IIIBB2x"), ("max_meter", "band_types", "capabilities",
                                                  "max_bands", "max_color")))),
    m.OFPMP_TABLE_FEATURES: ((m.TableFeaturesRequest, _entries(
                                 "tables", _pack_table_features, _unpack_table_features)),
                             (m.TableFeaturesReply, _entries(
                                 "tables", _pack_table_features, _unpack_table_features))),
    m.OFPMP_PORT_DESC: ((m.PortDescRequest, _EMPTY),
                        (m.PortDescReply, _entries("ports", _pack_port, _unpack_ports))),
}
_MP_BY_CLASS: dict[type, tuple[int, int, Pack]] = {}
for _mp, ((_req, (_rp, _)), (_rep, (_pp, _))) in _MULTIPART.items():
    _MP_BY_CLASS[_req] = (m.OFPT_MULTIPART_REQUEST, _mp, _rp)
    _MP_BY_CLASS[_rep] = (m.OFPT_MULTIPART_REPLY, _mp, _pp)

# Other messages: class -> (OFPT type, (pack, unpack)).
_MESSAGES: dict[type, tuple[int, tuple[Pack, Unpack]]] = {
    m.Hello: (m.OFPT_HELLO, (_pack_hello, lambda r: {})),  # unpack special-cased
    m.Error: (m.OFPT_ERROR, (_pack_error, _unpack_error)),
    m.EchoRequest: (m.OFPT_ECHO_REQUEST, _raw("data")),
    m.EchoReply: (m.OFPT_ECHO_REPLY, _raw("data")),
    m.Experimenter: (m.OFPT_EXPERIMENTER, (_pack_experimenter, _unpack_experimenter)),
    m.FeaturesRequest: (m.OFPT_FEATURES_REQUEST, _EMPTY),
    m.FeaturesReply: (m.OFPT_FEATURES_REPLY, _fixed(
        _S("!QIBB2xI4x"),
        ("datapath_id", "n_buffers", "n_tables", "auxiliary_id", "capabilities"))),
    m.GetConfigRequest: (m.OFPT_GET_CONFIG_REQUEST, _EMPTY),
    m.GetConfigReply: (m.OFPT_GET_CONFIG_REPLY, _fixed(_S("!HH"),
                                                       ("flags", "miss_send_len"))),
    m.SetConfig: (m.OFPT_SET_CONFIG, _fixed(_S("!HH"), ("flags", "miss_send_len"))),
    m.PacketIn: (m.OFPT_PACKET_IN, (_pack_packet_in, _unpack_packet_in)),
    m.FlowRemoved: (m.OFPT_FLOW_REMOVED, (_pack_flow_removed, _unpack_flow_removed)),
    m.PortStatus: (m.OFPT_PORT_STATUS, (_pack_port_status, _unpack_port_status)),
    m.PacketOut: (m.OFPT_PACKET_OUT, (_pack_packet_out, _unpack_packet_out)),
    m.FlowMod: (m.OFPT_FLOW_MOD, (_pack_flow_mod, _unpack_flow_mod)),
    m.GroupMod: (m.OFPT_GROUP_MOD, (_pack_group_mod, _unpack_group_mod)),
    m.PortMod: (m.OFPT_PORT_MOD, _fixed(_S("!I4x6s2xIII4x"),
                                        ("port_no", "hw_addr", "config", "mask",
                                         "advertise"))),
    m.TableMod: (m.OFPT_TABLE_MOD, _fixed(_S("!B3xI"), ("table_id", "config"))),
    m.BarrierRequest: (m.OFPT_BARRIER_REQUEST, _EMPTY),
    m.BarrierReply: (m.OFPT_BARRIER_REPLY, _EMPTY),
    m.QueueGetConfigRequest: (m.OFPT_QUEUE_GET_CONFIG_REQUEST,
                              _fixed(_QUEUE_GET_CONFIG, ("port",))),
    m.QueueGetConfigReply: (m.OFPT_QUEUE_GET_CONFIG_REPLY,
                            (_pack_queue_config_reply, _unpack_queue_config_reply)),
    m.RoleRequest: (m.OFPT_ROLE_REQUEST, _fixed(_S("!I4xQ"), ("role", "generation_id"))),
    m.RoleReply: (m.OFPT_ROLE_REPLY, _fixed(_S("!I4xQ"), ("role", "generation_id"))),
    m.GetAsyncRequest: (m.OFPT_GET_ASYNC_REQUEST, _EMPTY),
    m.GetAsyncReply: (m.OFPT_GET_ASYNC_REPLY, (_pack_async, _unpack_async)),
    m.SetAsync: (m.OFPT_SET_ASYNC, (_pack_async, _unpack_async)),
    m.MeterMod: (m.OFPT_METER_MOD, (_pack_meter_mod, _unpack_meter_mod)),
}
_BY_TYPE: dict[int, tuple[type, Unpack]] = {
    t: (cls, unpack) for cls, (t, (_, unpack)) in _MESSAGES.items()}

MAX_LEN = 0xFFFF


# --- public API ------------------------------------------------------------------------

def parse_header(data: bytes) -> tuple[int, int, int, int]:
    """(version, type, length, xid) of the message starting data; length is the header's
    claim, not checked against len(data)."""
    if len(data) < _HDR.size:
        raise WireError(m.OFPET_BAD_REQUEST, m.OFPBRC_BAD_LEN, "short header", bytes(data))
    version, mtype, length, xid = _HDR.unpack_from(data, 0)
    if length < _HDR.size:
        raise WireError(m.OFPET_BAD_REQUEST, m.OFPBRC_BAD_LEN, f"length {length}",
                        bytes(data[:64]))
    return version, mtype, length, xid


def _body(msg: object) -> tuple[int, bytes]:
    cls = type(msg)
    if cls in _MP_BY_CLASS:
        ofpt, mp, pack = _MP_BY_CLASS[cls]
        return ofpt, _MP.pack(mp, msg.flags) + pack(msg)
    if cls in _MESSAGES:
        ofpt, (pack, _) = _MESSAGES[cls]
        return ofpt, pack(msg)
    raise TypeError(f"not an OpenFlow message: {msg!r}")


def encode(msg: object) -> bytes:
    """msg as one OpenFlow 1.3 message.  ValueError if it does not fit (see encode_split)
    or holds something OpenFlow 1.3 cannot express."""
    try:
        ofpt, body = _body(msg)
        n = _HDR.size + len(body)
        head = _HDR.pack(m.OFP_VERSION, ofpt, n, msg.xid)
    except (struct.error, OverflowError) as e:
        raise ValueError(f"{type(msg).__name__}: field out of range ({e})") from None
    if n > MAX_LEN:
        raise ValueError(f"{type(msg).__name__} is {n} bytes, over {MAX_LEN}")
    return head + body


def encode_split(reply: object, max_len: int = MAX_LEN) -> list[bytes]:
    """A multipart reply as one or more messages of at most max_len bytes each: its entry
    list is spread over them, every message but the last flagged OFPMPF_REPLY_MORE."""
    try:
        out = _split(reply, max_len)
    except (struct.error, OverflowError) as e:
        raise ValueError(f"{type(reply).__name__}: field out of range ({e})") from None
    if len(out[0]) > max_len:
        raise ValueError(f"{type(reply).__name__} is {len(out[0])} bytes, over {max_len}")
    return out


def _split(reply: object, max_len: int) -> list[bytes]:
    cls = type(reply)
    field_name = m.REPLY_LIST_FIELD.get(cls)
    if field_name is None:
        out = [encode(reply)]
    else:
        ofpt, mp, pack = _MP_BY_CLASS[cls]
        head = _HDR.size + _MP.size
        chunks: list[list[bytes]] = [[]]
        size = head
        for entry in getattr(reply, field_name):
            raw = pack(cls(**{field_name: (entry,)}))
            if head + len(raw) > max_len:
                raise ValueError(f"one {type(entry).__name__} is {len(raw)} bytes, "
                                 f"too big for {max_len}-byte messages")
            if size + len(raw) > max_len:
                chunks.append([])
                size = head
            chunks[-1].append(raw)
            size += len(raw)
        out = []
        for i, chunk in enumerate(chunks):
            flags = reply.flags | (m.OFPMPF_REPLY_MORE if i < len(chunks) - 1 else 0)
            body = _MP.pack(mp, flags) + b"".join(chunk)
            out.append(_HDR.pack(m.OFP_VERSION, ofpt, _HDR.size + len(body), reply.xid) + body)
    return out


def decode(data: bytes) -> object:
    """Exactly one whole message (header included) -> its message value.  Raises only
    WireError, carrying the spec's error type/code and data[:64]."""
    data = bytes(data)
    try:
        msg = _decode(data)
    except WireError as e:
        STATS["errors"] += 1
        e.data = data[:64]
        raise
    except Exception as e:  # noqa: BLE001 - last line of defence, counted as a bug
        STATS["bugs"] += 1
        raise WireError(m.OFPET_BAD_REQUEST, m.OFPBRC_BAD_LEN,
                        f"undecodable ({type(e).__name__}: {e})", data[:64]) from None
    STATS["decoded"] += 1
    return msg


def _decode(data: bytes) -> object:
    version, mtype, length, xid = parse_header(data)
    if length != len(data):
        raise _fail(_BAD_LEN, f"header length {length}, message {len(data)} bytes")
    r = _Reader(data, _HDR.size, length, _BAD_LEN)
    if mtype == m.OFPT_HELLO:
        return m.Hello(xid=xid, **_unpack_hello(r, version))
    if version != m.OFP_VERSION and mtype != m.OFPT_ERROR:
        raise _fail((m.OFPET_BAD_REQUEST, m.OFPBRC_BAD_VERSION), f"version {version}")
    if mtype in (m.OFPT_MULTIPART_REQUEST, m.OFPT_MULTIPART_REPLY):
        mp, flags = r.unpack(_MP)
        kind = _MULTIPART.get(mp)
        if kind is None:
            if mp == m.OFPMP_EXPERIMENTER:
                raise _fail((m.OFPET_BAD_REQUEST, m.OFPBRC_BAD_EXPERIMENTER),
                            "experimenter multipart")
            raise _fail((m.OFPET_BAD_REQUEST, m.OFPBRC_BAD_MULTIPART), f"multipart {mp}")
        cls, (_, unpack) = kind[0 if mtype == m.OFPT_MULTIPART_REQUEST else 1]
        return cls(xid=xid, flags=flags, **unpack(r))
    entry = _BY_TYPE.get(mtype)
    if entry is None:
        raise _fail((m.OFPET_BAD_REQUEST, m.OFPBRC_BAD_TYPE), f"message type {mtype}")
    cls, unpack = entry
    return cls(xid=xid, **unpack(r))
