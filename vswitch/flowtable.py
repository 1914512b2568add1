"""Python face of the C flow tables.

`Pipeline` owns a C pipeline (tables 0-254, groups, meters, ports);
`Context` owns one thread's caches and runs batches of frames through a
pipeline.  Both free their C memory on `close()` (or when collected).

    p = Pipeline()
    p.set_port(1); p.set_port(2)
    p.add_flow(0, 100, Match(in_port=1), [apply(Output(2))])
    ctx = Context()
    [res] = ctx.process(p, [frame], [1])
    res.outputs  ->  [(2, frame, 0)]

Everything is encoded into the compact op format documented in
vswitch/_fastpath/fastpath.h; the C side validates all of it again.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from vswitch import ofp
from vswitch._fastpath._core import ffi, lib
from vswitch.ofp import (
    FIELDS,
    FIELDS_BY_ID,
    ApplyActions,
    Bucket,
    ClearActions,
    DecNwTtl,
    FlowEntry,
    GotoTable,
    Group,
    Match,
    Meter,
    MeterBand,
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

# Op types (enum vs_op_type).
_I_METER, _I_APPLY, _I_CLEAR, _I_WRITE, _I_WRITE_METADATA, _I_GOTO = range(1, 7)
(_A_OUTPUT, _A_GROUP, _A_SET_QUEUE, _A_SET_FIELD, _A_PUSH_VLAN, _A_POP_VLAN,
 _A_SET_NW_TTL, _A_DEC_NW_TTL) = range(16, 24)

_HDR = struct.Struct("<HHI")


@dataclass(frozen=True)
class _Slot:
    offset: int
    nbytes: int


def _field_slots() -> dict[str, _Slot]:
    slots = {}
    for i in range(lib.VS_N_FIELDS):
        info = lib.vs_fields[i]
        name = ffi.string(info.name).decode()
        spec = FIELDS[name]
        if spec.id != i or spec.nbytes != info.len:
            raise RuntimeError(f"field table mismatch for {name}")
        slots[name] = _Slot(info.offset, info.len)
    return slots


SLOTS = _field_slots()


# --- encoding ----------------------------------------------------------------

def _op(type_: int, arg: int = 0, body: bytes = b"") -> bytes:
    body += b"\0" * (-len(body) % 8)
    return _HDR.pack(type_, 8 + len(body), arg & 0xFFFFFFFF) + body


def encode_action(a: ofp.Action) -> bytes:
    if isinstance(a, Output):
        return _op(_A_OUTPUT, a.port, struct.pack("<H", a.max_len))
    if isinstance(a, Group):
        return _op(_A_GROUP, a.group_id)
    if isinstance(a, SetQueue):
        return _op(_A_SET_QUEUE, a.queue_id)
    if isinstance(a, SetField):
        spec = FIELDS[a.field]
        if a.value < 0 or a.value >= 1 << (8 * spec.nbytes):
            raise OFError(2, 15, f"set_field {a.field}: value out of range")
        return _op(_A_SET_FIELD, spec.id, a.value.to_bytes(spec.nbytes, "big"))
    if isinstance(a, PushVlan):
        return _op(_A_PUSH_VLAN, a.ethertype)
    if isinstance(a, PopVlan):
        return _op(_A_POP_VLAN)
    if isinstance(a, SetNwTtl):
        return _op(_A_SET_NW_TTL, a.ttl)
    if isinstance(a, DecNwTtl):
        return _op(_A_DEC_NW_TTL)
    raise TypeError(f"not an action: {a!r}")


def encode_actions(actions) -> bytes:
    return b"".join(encode_action(a) for a in actions)


def encode_instructions(instructions) -> bytes:
    out = []
    for ins in instructions:
        if isinstance(ins, Meter):
            out.append(_op(_I_METER, ins.meter_id))
        elif isinstance(ins, ApplyActions):
            out.append(_op(_I_APPLY, 0, encode_actions(ins.actions)))
        elif isinstance(ins, ClearActions):
            out.append(_op(_I_CLEAR))
        elif isinstance(ins, WriteActions):
            out.append(_op(_I_WRITE, 0, encode_actions(ins.actions)))
        elif isinstance(ins, WriteMetadata):
            out.append(_op(_I_WRITE_METADATA, 0, struct.pack("<QQ", ins.value, ins.mask)))
        elif isinstance(ins, GotoTable):
            out.append(_op(_I_GOTO, ins.table_id))
        else:
            raise TypeError(f"not an instruction: {ins!r}")
    return b"".join(out)


# Controllers install many rules with the same instructions: their encoding
# is kept by value (instructions are immutable, hashable dataclasses).
_ENCODED: dict[tuple, bytes] = {}


def _encoded_instructions(instructions) -> bytes:
    try:
        blob = _ENCODED.get(instructions)
    except TypeError:                  # a list somewhere: not hashable, not cached
        return encode_instructions(instructions)
    if blob is None:
        blob = encode_instructions(instructions)
        if len(_ENCODED) >= 1024:
            _ENCODED.clear()
        _ENCODED[instructions] = blob
    return blob


def _ops(data: bytes):
    off = 0
    while off + 8 <= len(data):
        type_, length, arg = _HDR.unpack_from(data, off)
        yield type_, arg, data[off + 8:off + length]
        off += length


def decode_actions(data: bytes) -> tuple:
    acts = []
    for type_, arg, body in _ops(data):
        if type_ == _A_OUTPUT:
            acts.append(Output(arg, struct.unpack_from("<H", body)[0]))
        elif type_ == _A_GROUP:
            acts.append(Group(arg))
        elif type_ == _A_SET_QUEUE:
            acts.append(SetQueue(arg))
        elif type_ == _A_SET_FIELD:
            spec = FIELDS_BY_ID[arg]
            acts.append(SetField(spec.name, int.from_bytes(body[:spec.nbytes], "big")))
        elif type_ == _A_PUSH_VLAN:
            acts.append(PushVlan(arg))
        elif type_ == _A_POP_VLAN:
            acts.append(PopVlan())
        elif type_ == _A_SET_NW_TTL:
            acts.append(SetNwTtl(arg))
        elif type_ == _A_DEC_NW_TTL:
            acts.append(DecNwTtl())
    return tuple(acts)


def decode_instructions(data: bytes) -> tuple:
    out = []
    for type_, arg, body in _ops(data):
        if type_ == _I_METER:
            out.append(Meter(arg))
        elif type_ == _I_APPLY:
            out.append(ApplyActions(decode_actions(body)))
        elif type_ == _I_CLEAR:
            out.append(ClearActions())
        elif type_ == _I_WRITE:
            out.append(WriteActions(decode_actions(body)))
        elif type_ == _I_WRITE_METADATA:
            out.append(WriteMetadata(*struct.unpack_from("<QQ", body)))
        elif type_ == _I_GOTO:
            out.append(GotoTable(arg))
    return tuple(out)


def match_to_key(match: Match | None, key, mask) -> int:
    """Write a Match into C vs_key structs (value, mask); returns the
    bitmap of field ids it names (vs_flow_mod.fields)."""
    kb = ffi.buffer(key)
    mb = ffi.buffer(mask)
    named = 0
    for name, (v, m) in (match.fields.items() if match else ()):
        s = SLOTS[name]
        kb[s.offset:s.offset + s.nbytes] = v.to_bytes(s.nbytes, "big")
        mb[s.offset:s.offset + s.nbytes] = m.to_bytes(s.nbytes, "big")
        named |= 1 << FIELDS[name].id
    return named


# Storage shared between OXM names, resolved by what the match pins.
_ALIASES = {
    "tcp_src": {6: "tcp_src", 17: "udp_src", 132: "sctp_src"},
    "tcp_dst": {6: "tcp_dst", 17: "udp_dst", 132: "sctp_dst"},
}


def key_to_match(key, mask) -> Match:
    """Read a C (value, mask) pair back into a Match with the right names."""
    kb = bytes(ffi.buffer(key))
    mb = bytes(ffi.buffer(mask))
    raw: dict[str, tuple[int, int]] = {}
    seen: set[int] = set()
    for name, s in SLOTS.items():
        if s.offset in seen:
            continue
        seen.add(s.offset)
        m = int.from_bytes(mb[s.offset:s.offset + s.nbytes], "big")
        if m:
            raw[name] = (int.from_bytes(kb[s.offset:s.offset + s.nbytes], "big"), m)
    eth_type = raw.get("eth_type", (None, 0))[0]
    proto = raw.get("ip_proto", (None, 0))[0]
    fields = {}
    for name, vm in raw.items():
        if name in _ALIASES:
            name = _ALIASES[name].get(proto, name)
        elif name in ("icmpv4_type", "icmpv4_code") and eth_type == 0x86DD:
            name = name.replace("icmpv4", "icmpv6")
        elif name in ("ipv4_src", "ipv4_dst") and eth_type == 0x0806:
            name = {"ipv4_src": "arp_spa", "ipv4_dst": "arp_tpa"}[name]
        elif name in ("arp_sha", "arp_tha") and eth_type == 0x86DD:
            name = {"arp_sha": "ipv6_nd_sll", "arp_tha": "ipv6_nd_tll"}[name]
        fields[name] = vm
    return Match.from_fields(fields)


def _check(rc: int, err) -> None:
    if rc < 0:
        raise OFError(err.type, err.code, ffi.string(err.msg).decode(errors="replace"))


def _entry(s) -> FlowEntry:
    insts = bytes(ffi.buffer(s.instructions, s.instructions_len)) if s.instructions_len else b""
    return FlowEntry(
        table_id=s.table_id, priority=s.priority,
        match=key_to_match(ffi.addressof(s, "match"), ffi.addressof(s, "mask")),
        instructions=decode_instructions(insts), cookie=s.cookie,
        idle_timeout=s.idle_timeout, hard_timeout=s.hard_timeout, flags=s.flags,
        packet_count=s.packet_count, byte_count=s.byte_count, duration_ns=s.duration_ns,
        idle_ns=s.idle_ns, reason=s.reason,
    )


def _entries(lst) -> list[FlowEntry]:
    if lst == ffi.NULL:
        return []
    try:
        return [_entry(lst.flows[i]) for i in range(lst.n)]
    finally:
        lib.vs_flow_list_free(lst)


# --- pipeline ------------------------------------------------------------------

@dataclass
class TableStats:
    active_count: int
    n_subtables: int
    lookup_count: int
    matched_count: int


class Pipeline:
    """Tables 0-254 with groups, meters and the ports FLOOD/ALL and
    fast-failover need.  Thread-safe: see fastpath.h."""

    def __init__(self) -> None:
        p = lib.vs_pipeline_new()
        if p == ffi.NULL:
            raise MemoryError("vs_pipeline_new")
        self._p = ffi.gc(p, lib.vs_pipeline_free)

    @property
    def handle(self):
        if self._p is None:
            raise ValueError("pipeline is closed")
        return self._p

    def close(self) -> None:
        if self._p is not None:
            ffi.release(self._p)
            self._p = None

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def generation(self) -> int:
        return lib.vs_pipeline_generation(self.handle)

    # ports
    def set_port(self, port: int, live: bool = True, no_flood: bool = False) -> None:
        flags = (lib.VS_PORT_LIVE if live else 0) | (lib.VS_PORT_NO_FLOOD if no_flood else 0)
        if lib.vs_pipeline_set_port(self.handle, port, flags) < 0:
            raise ValueError(f"bad port number {port}")

    def del_port(self, port: int) -> None:
        if lib.vs_pipeline_del_port(self.handle, port) < 0:
            raise KeyError(port)

    # flows
    def flow_mod(self, command: int = ofp.OFPFC_ADD, table_id: int = 0,
                 priority: int = 0x8000, match: Match | None = None, instructions=(),
                 cookie: int = 0, cookie_mask: int = 0, idle_timeout: int = 0,
                 hard_timeout: int = 0, flags: int = 0, out_port: int = ofp.OFPP_ANY,
                 out_group: int = ofp.OFPG_ANY) -> None:
        """Apply an OpenFlow 1.3 flow mod; raises OFError and changes
        nothing when the request is refused."""
        fm = ffi.new("struct vs_flow_mod *")
        fm.command = command
        fm.table_id = table_id
        fm.priority = priority
        fm.flags = flags
        fm.idle_timeout = idle_timeout
        fm.hard_timeout = hard_timeout
        fm.out_port = out_port
        fm.out_group = out_group
        fm.cookie = cookie
        fm.cookie_mask = cookie_mask
        fm.fields = match_to_key(match, ffi.addressof(fm, "match"), ffi.addressof(fm, "mask"))
        blob = _encoded_instructions(instructions)
        buf = ffi.from_buffer(blob)
        fm.instructions = buf
        fm.instructions_len = len(blob)
        err = ffi.new("struct vs_error *")
        _check(lib.vs_pipeline_flow_mod(self.handle, fm, err), err)

    def add_flow(self, table_id: int = 0, priority: int = 0x8000, match: Match | None = None,
                 instructions=(), **kw) -> None:
        self.flow_mod(ofp.OFPFC_ADD, table_id, priority, match, instructions, **kw)

    def dump_flows(self, table_id: int = ofp.OFPTT_ALL, match: Match | None = None,
                   out_port: int = ofp.OFPP_ANY, out_group: int = ofp.OFPG_ANY,
                   cookie: int = 0, cookie_mask: int = 0) -> list[FlowEntry]:
        key = ffi.new("struct vs_key *")
        mask = ffi.new("struct vs_key *")
        match_to_key(match, key, mask)
        return _entries(lib.vs_pipeline_dump(self.handle, table_id, key, mask, out_port,
                                             out_group, cookie, cookie_mask))

    def aggregate(self, table_id: int = ofp.OFPTT_ALL, match: Match | None = None,
                  out_port: int = ofp.OFPP_ANY, out_group: int = ofp.OFPG_ANY,
                  cookie: int = 0, cookie_mask: int = 0) -> tuple[int, int, int]:
        """(packet_count, byte_count, flow_count) of the rules dump_flows
        would return, without building them."""
        key = ffi.new("struct vs_key *")
        mask = ffi.new("struct vs_key *")
        match_to_key(match, key, mask)
        agg = ffi.new("struct vs_aggregate *")
        if lib.vs_pipeline_aggregate(self.handle, table_id, key, mask, out_port, out_group,
                                     cookie, cookie_mask, agg) < 0:
            raise ValueError(f"bad table {table_id}")
        return agg.packet_count, agg.byte_count, agg.flow_count

    def expire(self, now_ns: int = 0) -> int:
        """Remove entries whose timeouts passed; returns how many."""
        return lib.vs_pipeline_expire(self.handle, now_ns)

    def drain_removed(self) -> list[FlowEntry]:
        """Removal records of entries that had SEND_FLOW_REM set."""
        return _entries(lib.vs_pipeline_drain_removed(self.handle))

    def table_stats(self, table_id: int) -> TableStats:
        s = ffi.new("struct vs_table_stats *")
        if lib.vs_pipeline_table_stats(self.handle, table_id, s) < 0:
            raise ValueError(f"bad table {table_id}")
        return TableStats(s.active_count, s.n_subtables, s.lookup_count, s.matched_count)

    # groups
    def group_mod(self, command: int, type: int, group_id: int, buckets=()) -> None:
        blob = b"".join(
            struct.pack("<HHIII", b.weight, 0, b.watch_port, b.watch_group, len(acts)) + acts
            for b in buckets for acts in [encode_actions(b.actions)]
        )
        err = ffi.new("struct vs_error *")
        _check(lib.vs_pipeline_group_mod(self.handle, command, type, group_id,
                                         ffi.from_buffer(blob), len(blob), err), err)

    def add_group(self, group_id: int, type: int, buckets: list[Bucket]) -> None:
        self.group_mod(ofp.OFPGC_ADD, type, group_id, buckets)

    def group_stats(self) -> list[dict]:
        n = lib.vs_pipeline_group_stats(self.handle, ffi.NULL, 0)
        arr = ffi.new("struct vs_group_stats[]", max(n, 1))
        n = min(n, lib.vs_pipeline_group_stats(self.handle, arr, n))
        return [{
            "group_id": g.group_id, "type": g.type, "ref_count": g.ref_count,
            "packet_count": g.packet_count, "byte_count": g.byte_count,
            "duration_ns": g.duration_ns,
            "buckets": [(g.bucket_packets[b], g.bucket_bytes[b]) for b in range(g.n_buckets)],
        } for g in arr[0:n]]

    # meters
    def meter_mod(self, command: int, meter_id: int, flags: int = ofp.OFPMF_KBPS,
                  bands: list[MeterBand] = ()) -> None:
        arr = ffi.new("struct vs_meter_band[]", max(len(bands), 1))
        for i, b in enumerate(bands):
            arr[i].type = b.type
            arr[i].rate = b.rate
            arr[i].burst_size = b.burst_size
            arr[i].prec_level = b.prec_level
        err = ffi.new("struct vs_error *")
        _check(lib.vs_pipeline_meter_mod(self.handle, command, flags, meter_id, arr,
                                         len(bands), err), err)

    def meter_stats(self) -> list[dict]:
        n = lib.vs_pipeline_meter_stats(self.handle, ffi.NULL, 0)
        arr = ffi.new("struct vs_meter_stats[]", max(n, 1))
        n = min(n, lib.vs_pipeline_meter_stats(self.handle, arr, n))
        return [{
            "meter_id": m.meter_id, "flags": m.flags, "flow_count": m.flow_count,
            "packet_in_count": m.packet_in_count, "byte_in_count": m.byte_in_count,
            "duration_ns": m.duration_ns,
            "bands": [{"type": b.type, "rate": b.rate, "burst_size": b.burst_size,
                       "packet_count": b.packet_count, "byte_count": b.byte_count}
                      for b in m.bands[0:m.n_bands]],
        } for m in arr[0:n]]


@dataclass
class TraceStep:
    table_id: int
    matched: bool
    priority: int = 0
    cookie: int = 0
    match: Match | None = None


@dataclass
class Trace:
    steps: list[TraceStep]
    megaflow: Match
    outputs: list[tuple[int, int, int]]        # (port, len, queue)
    upcalls: list[tuple[int, int, int]]        # (reason, table_id, cookie)


def trace(pipeline: Pipeline, frame: bytes, in_port: int) -> Trace:
    """The rule each table's lookup finds for frame, the megaflow (the
    header bits the decision depends on) and where the frame would go.  A
    dry run: no counter moves, meters pass everything."""
    steps = ffi.new("struct vs_trace_step[]", lib.VS_N_TABLES)
    wc = ffi.new("struct vs_key *")
    outs = ffi.new("struct vs_trace_output[]", 256)
    n_outs = ffi.new("uint32_t *")
    n = lib.vs_pipeline_trace(pipeline.handle, frame, len(frame), in_port, steps,
                              lib.VS_N_TABLES, wc, outs, 256, n_outs)
    if n < 0:
        raise MemoryError("vs_pipeline_trace")
    out = []
    for s in steps[0:n]:
        m = (key_to_match(ffi.addressof(s, "match"), ffi.addressof(s, "mask"))
             if s.matched else None)
        out.append(TraceStep(s.table_id, bool(s.matched), s.priority, s.cookie, m))
    key = ffi.new("struct vs_key *")
    layers = ffi.new("struct vs_layers *")
    lib.vs_parse(frame, len(frame), in_port, key, layers)
    kb, wb = ffi.buffer(key), bytes(ffi.buffer(wc))
    kb[:] = bytes(a & b for a, b in zip(bytes(kb), wb))
    megaflow = key_to_match(key, _only_fields(wc))
    results = outs[0:n_outs[0]]
    return Trace(out, megaflow,
                 [(o.port, o.len, o.queue) for o in results if not o.is_upcall],
                 [(o.reason, o.table_id, o.cookie) for o in results if o.is_upcall])


def _only_fields(mask):
    """A copy of a key mask restricted to bytes that belong to fields."""
    raw = bytes(ffi.buffer(mask))
    keep = bytearray(len(raw))
    for name, slot in SLOTS.items():
        m = int.from_bytes(raw[slot.offset:slot.offset + slot.nbytes], "big")
        m &= FIELDS[name].full_mask
        keep[slot.offset:slot.offset + slot.nbytes] = m.to_bytes(slot.nbytes, "big")
    out = ffi.new("struct vs_key *")
    ffi.buffer(out)[:] = bytes(keep)
    return out


def validate_match(match: Match) -> None:
    """Raise OFError if the core would refuse this match."""
    key = ffi.new("struct vs_key *")
    mask = ffi.new("struct vs_key *")
    named = match_to_key(match, key, mask)
    err = ffi.new("struct vs_error *")
    _check(lib.vs_match_validate(key, mask, named, err), err)


# --- batches ---------------------------------------------------------------------

@dataclass
class Upcall:
    reason: int
    table_id: int
    cookie: int
    data: bytes
    max_len: int
    metadata: int
    in_port: int


@dataclass
class PacketResult:
    outputs: list[tuple[int, bytes, int]] = field(default_factory=list)  # (port, bytes, queue)
    upcalls: list[Upcall] = field(default_factory=list)


_STAT_NAMES = [name for name, _ in ffi.typeof("struct vs_context_stats").fields]


class Context:
    """One thread's caches: EMC and megaflow cache.  Not thread-safe; give
    each thread its own."""

    def __init__(self, emc_entries: int = 8192, emc_insert_inv_prob: int = 100,
                 megaflow_max: int = 200_000, max_emits: int = 4096,
                 max_upcalls: int = 256) -> None:
        cfg = ffi.new("struct vs_context_config *")
        cfg.emc_entries = emc_entries
        cfg.emc_insert_inv_prob = emc_insert_inv_prob
        cfg.megaflow_max = megaflow_max
        cfg.max_emits = max_emits
        cfg.max_upcalls = max_upcalls
        c = lib.vs_context_new(cfg)
        if c == ffi.NULL:
            raise ValueError("bad context config (emc_entries must be a power of two)")
        self._c = ffi.gc(c, lib.vs_context_free)

    @property
    def handle(self):
        if self._c is None:
            raise ValueError("context is closed")
        return self._c

    def close(self) -> None:
        if self._c is not None:
            ffi.release(self._c)
            self._c = None

    def stats(self) -> dict[str, int]:
        s = ffi.new("struct vs_context_stats *")
        lib.vs_context_get_stats(self.handle, s)
        return {name: getattr(s, name) for name in _STAT_NAMES}

    def process(self, pipeline: Pipeline, frames: list[bytes],
                in_ports: list[int]) -> list[PacketResult]:
        """Run frames (arriving on in_ports) through the pipeline, in batches
        of at most 256; one PacketResult per frame."""
        results = [PacketResult() for _ in frames]
        for start in range(0, len(frames), lib.VS_MAX_BATCH):
            self._batch(pipeline, frames[start:start + lib.VS_MAX_BATCH],
                        in_ports[start:start + lib.VS_MAX_BATCH], results, start)
        return results

    def _batch(self, pipeline: Pipeline, frames, in_ports, results, base: int) -> None:
        n = len(frames)
        bufs = [ffi.from_buffer("uint8_t[]", f) for f in frames]
        ptrs = ffi.new("const uint8_t *[]", bufs) if n else ffi.NULL
        lens = ffi.new("uint32_t[]", [len(f) for f in frames]) if n else ffi.NULL
        ports = ffi.new("uint32_t[]", list(in_ports)) if n else ffi.NULL
        out = ffi.new("struct vs_batch_result *")
        if lib.vs_process_batch(self.handle, pipeline.handle, ptrs, lens, ports, n, out) < 0:
            raise ValueError("batch too large")
        for i in range(out.n_emits):
            e = out.emits[i]
            results[base + e.pkt].outputs.append(
                (e.port, bytes(ffi.buffer(e.data, e.len)), e.queue))
        for i in range(out.n_upcalls):
            u = out.upcalls[i]
            results[base + u.pkt].upcalls.append(Upcall(
                u.reason, u.table_id, u.cookie, bytes(ffi.buffer(u.data, u.len)), u.max_len,
                u.metadata, u.in_port))
        del bufs
