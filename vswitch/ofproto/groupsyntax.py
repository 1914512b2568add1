"""ovs-ofctl text syntax for groups and meters, both directions.

    parse_group("group_id=1,type=select,bucket=weight:10,output:1,bucket=weight:20,output:2")
    parse_meter("meter=1,kbps,burst,band=type=drop,rate=1000,burst_size=100")

Bucket actions use the flow action syntax (vswitch.ofproto.flowsyntax).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from vswitch import ofp
from vswitch.ofp import Bucket, MeterBand
from vswitch.ofproto.flowsyntax import (
    FlowSyntaxError,
    _int,
    _parse_actions,
    _port,
    _State,
    _tokens,
    format_actions,
)

GROUP_TYPES = {"all": ofp.OFPGT_ALL, "select": ofp.OFPGT_SELECT,
               "indirect": ofp.OFPGT_INDIRECT, "ff": ofp.OFPGT_FF,
               "fast_failover": ofp.OFPGT_FF}
GROUP_TYPE_NAMES = {ofp.OFPGT_ALL: "all", ofp.OFPGT_SELECT: "select",
                    ofp.OFPGT_INDIRECT: "indirect", ofp.OFPGT_FF: "ff"}
BAND_TYPES = {"drop": ofp.OFPMBT_DROP, "dscp_remark": ofp.OFPMBT_DSCP_REMARK}
METER_FLAGS = {"kbps": ofp.OFPMF_KBPS, "pktps": ofp.OFPMF_PKTPS, "burst": ofp.OFPMF_BURST,
               "stats": ofp.OFPMF_STATS}

_BUCKET_SPLIT = re.compile(r"[,\s]*\bbucket=")
_BAND_SPLIT = re.compile(r"[,\s]*\bbands?=")
_BUCKET_PROP = re.compile(r"\s*(weight|watch_port|watch_group|bucket_id)[:=]([^,\s]+)[,\s]*")


@dataclass
class GroupSpec:
    group_id: int
    type: int = ofp.OFPGT_ALL
    buckets: list[Bucket] = field(default_factory=list)


@dataclass
class MeterSpec:
    meter_id: int
    flags: int = ofp.OFPMF_KBPS
    bands: list[MeterBand] = field(default_factory=list)


def _header(text: str, allowed: set[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for key, value in _tokens(text):
        k = key.lower()
        if k not in allowed:
            raise FlowSyntaxError(f"unknown keyword {key!r}")
        if k in out:
            raise FlowSyntaxError(f"{key} given twice")
        out[k] = value
    return out


def parse_group(text: str, need_buckets: bool = True) -> GroupSpec:
    """add-group / mod-group syntax; del-groups takes `group_id=N` alone
    (need_buckets=False; no group_id means all groups)."""
    if not isinstance(text, str):
        raise FlowSyntaxError("group must be text")
    head, *buckets = _BUCKET_SPLIT.split(text)
    h = _header(head, {"group_id", "type"})
    gid_text = h.get("group_id")
    if gid_text is None:
        if need_buckets or "group_id" in h:
            raise FlowSyntaxError("group_id=N is required")
        gid = 0xFFFFFFFC                     # OFPG_ALL
    else:
        gid = 0xFFFFFFFC if gid_text.lower() == "all" else _int(gid_text, 32, "group_id")
    gtype = GROUP_TYPES.get((h.get("type") or "all").lower())
    if gtype is None:
        raise FlowSyntaxError(f"unknown group type {h.get('type')!r}")
    spec = GroupSpec(gid, gtype)
    for b in buckets:
        props: dict[str, int] = {}
        while m := _BUCKET_PROP.match(b):
            name, value = m.group(1), m.group(2)
            props[name] = (_port(value, name) if name == "watch_port"
                           else _int(value, 32, name))
            b = b[m.end():]
        b = re.sub(r"^\s*actions\s*=", "", b)
        actions = _parse_actions(b, _State({}, False), nested=True)
        spec.buckets.append(Bucket(actions, weight=props.get("weight", 1),
                                   watch_port=props.get("watch_port", ofp.OFPP_ANY),
                                   watch_group=props.get("watch_group", ofp.OFPG_ANY)))
    return spec


def format_group(spec: GroupSpec) -> str:
    parts = [f"group_id={spec.group_id}", f"type={GROUP_TYPE_NAMES[spec.type]}"]
    for b in spec.buckets:
        props = []
        if spec.type == ofp.OFPGT_SELECT:
            props.append(f"weight:{b.weight}")
        if b.watch_port != ofp.OFPP_ANY:
            props.append(f"watch_port:{b.watch_port}")
        acts = format_actions((ofp.ApplyActions(b.actions),)) if b.actions else "drop"
        parts.append("bucket=" + "".join(p + "," for p in props) + "actions=" + acts)
    return ",".join(parts)


def parse_meter(text: str, need_bands: bool = True) -> MeterSpec:
    """add-meter / mod-meter syntax; del-meter takes `meter=N` (or none: all)."""
    if not isinstance(text, str):
        raise FlowSyntaxError("meter must be text")
    head, *bands = _BAND_SPLIT.split(text)
    h = _header(head, {"meter", *METER_FLAGS})
    mid_text = h.get("meter")
    if mid_text is None:
        if need_bands or "meter" in h:
            raise FlowSyntaxError("meter=N is required")
        mid = 0xFFFFFFFF                     # OFPM_ALL
    else:
        mid = 0xFFFFFFFF if mid_text.lower() == "all" else _int(mid_text, 32, "meter")
    flags = 0
    for k in METER_FLAGS:
        if k in h:
            if h[k] is not None:
                raise FlowSyntaxError(f"{k} takes no value")
            flags |= METER_FLAGS[k]
    if not flags & (ofp.OFPMF_KBPS | ofp.OFPMF_PKTPS):
        flags |= ofp.OFPMF_KBPS
    spec = MeterSpec(mid, flags)
    for b in bands:
        p = _header(b, {"type", "rate", "burst_size", "prec_level"})
        btype = BAND_TYPES.get((p.get("type") or "").lower())
        if btype is None:
            raise FlowSyntaxError(f"band type must be drop or dscp_remark, not {p.get('type')!r}")
        if p.get("rate") is None:
            raise FlowSyntaxError("band needs rate=N")
        spec.bands.append(MeterBand(
            btype, _int(p["rate"], 32, "rate"),
            _int(p["burst_size"], 32, "burst_size") if p.get("burst_size") else 0,
            _int(p["prec_level"], 8, "prec_level") if p.get("prec_level") else 0))
    if need_bands and not spec.bands:
        raise FlowSyntaxError("a meter needs at least one band=type=...,rate=N")
    return spec


def format_meter(spec: MeterSpec) -> str:
    flags = [k for k, v in METER_FLAGS.items() if spec.flags & v]
    bands = []
    for b in spec.bands:
        name = next(k for k, v in BAND_TYPES.items() if v == b.type)
        s = f"type={name} rate={b.rate}"
        if b.burst_size:
            s += f" burst_size={b.burst_size}"
        if b.type == ofp.OFPMBT_DSCP_REMARK:
            s += f" prec_level={b.prec_level}"
        bands.append(s)
    return f"meter={spec.meter_id} " + " ".join(flags) + " bands=" + " ".join(bands)
