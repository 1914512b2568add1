"""A bridge: one pipeline, one datapath and its ports.

This is the one implementation of "add a port", "add a flow", "dump flows"
that both control paths call (vswitchctl through the daemon's control
socket, and later OpenFlow).  It knows nothing about persistence: the daemon
writes the configuration store and then calls in here, and undoes the store
change if this raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vswitch import ofp
from vswitch.datapath import Datapath, DatapathError, make_standalone
from vswitch.flowtable import Pipeline, TableStats, trace
from vswitch.ofp import FlowEntry, OFError
from vswitch.ofproto.flowsyntax import FlowSpec, format_flow, format_match, parse_flow
from vswitch.ofproto.groupsyntax import (
    GroupSpec,
    MeterSpec,
    format_group,
    format_meter,
    parse_group,
    parse_meter,
)
from vswitch.tunnel import VxlanConfig, resolver

PORT_TYPES = ("system", "tap", "internal", "patch", "afxdp", "vxlan")
RESERVED_PORTS = {ofp.OFPP_NORMAL: "NORMAL", ofp.OFPP_FLOOD: "FLOOD", ofp.OFPP_ALL: "ALL",
                  ofp.OFPP_CONTROLLER: "CONTROLLER", ofp.OFPP_IN_PORT: "IN_PORT"}


class BridgeError(ValueError):
    """A request the bridge refuses; the message is one line for the user."""


@dataclass
class PortState:
    name: str
    type: str
    ofport: int
    tag: int | None = None
    trunks: tuple = ()
    options: dict = field(default_factory=dict)
    attached: bool = False        # present in the datapath (patch: once both ends exist)


def vlan_config(tag: int | None, trunks, options: dict) -> dict:
    """Datapath VLAN settings from OVS-style port columns."""
    mode = options.get("vlan_mode")
    if mode in ("native-untagged", "native-tagged"):
        if tag is None:
            raise BridgeError(f"vlan_mode={mode} needs a tag (the native VLAN)")
        return {"vlan_mode": mode.replace("-", "_"), "tag": tag, "trunks": tuple(trunks)}
    if mode not in (None, "access", "trunk"):
        raise BridgeError(f"unknown vlan_mode {mode!r}")
    if tag is not None and mode != "trunk":
        return {"vlan_mode": "access", "tag": tag}
    return {"vlan_mode": "trunk", "trunks": tuple(trunks)}


class Bridge:
    """Ports, flows and counters of one bridge."""

    def __init__(self, name: str, *, n_threads: int = 1, fail_mode: str = "standalone",
                 controllers: bool = False) -> None:
        self.name = name
        self.fail_mode = fail_mode
        self.pipeline = Pipeline()
        try:
            self.dp = Datapath(self.pipeline, n_threads=n_threads)
            # The bridge's own host-side interface, OpenFlow port LOCAL.
            self.dp.add_internal_port(name, up=True)
        except (DatapathError, OFError) as e:
            self.pipeline.close()
            raise BridgeError(f"cannot create bridge {name}: {e}") from e
        self.ports: dict[str, PortState] = {}
        self.groups: dict[int, object] = {}     # group id -> GroupSpec, for dump-groups
        self.meters: dict[int, object] = {}     # meter id -> MeterSpec
        self.reset_flows(controllers)

    def close(self) -> None:
        resolver().remove(self.dp)         # before the datapath goes
        self.dp.close()
        self.pipeline.close()

    def reset_flows(self, controllers: bool = False) -> None:
        """A fresh standalone bridge without controllers forwards as a MAC
        learning switch (as OVS adds `priority=0 actions=NORMAL`); a secure
        one, or one with controllers, sets up no flows on its own (the fail
        mode decides what happens while no controller is connected)."""
        self.pipeline.flow_mod(ofp.OFPFC_DELETE, ofp.OFPTT_ALL)
        if self.fail_mode == "standalone" and not controllers:
            make_standalone(self.pipeline)

    # --- ports ---------------------------------------------------------------

    def add_port(self, port: PortState, peer: tuple[Bridge, PortState] | None = None) -> None:
        """Attach a configured port to the datapath.  A patch port waits
        for its peer (peer = the other bridge and its port state)."""
        if port.type not in PORT_TYPES:
            raise BridgeError(f"unknown port type {port.type!r}")
        if port.name in self.ports:
            raise BridgeError(f"port {port.name} already exists on {self.name}")
        vlan = vlan_config(port.tag, port.trunks, port.options)
        try:
            if port.type == "patch":
                if peer is not None:
                    other_br, other = peer
                    self.dp.add_port(port.ofport, "patch", peer=other_br.dp,
                                     peer_port=other.ofport, **vlan)
                    port.attached = True
                    if not other.attached:
                        other_br.dp.add_port(other.ofport, "patch", peer=self.dp,
                                             peer_port=port.ofport,
                                             **vlan_config(other.tag, other.trunks,
                                                           other.options))
                        other.attached = True
            elif port.type == "vxlan":
                self._add_vxlan(port, VxlanConfig.from_options(port.options), vlan)
            else:
                up = port.type in ("tap", "internal")
                self.dp.add_port(port.ofport, port.type, name=port.name, up=up, **vlan)
                port.attached = True
        except (DatapathError, OFError, ValueError) as e:
            raise BridgeError(f"cannot add port {port.name}: {e}") from e
        self.ports[port.name] = port

    def del_port(self, name: str) -> PortState:
        port = self.ports.pop(name, None)
        if port is None:
            raise BridgeError(f"no port {name} on {self.name}")
        if port.attached:
            if port.type == "vxlan":
                resolver().remove(self.dp, port.ofport)
            try:
                self.dp.del_port(port.ofport)
            except DatapathError:
                pass                          # already gone with its device
        return port

    def detach_port(self, name: str) -> None:
        """Take a patch port out of the datapath (its peer went away); it
        stays configured and waits for a new peer."""
        port = self._port(name)
        if port.attached:
            try:
                self.dp.del_port(port.ofport)
            except DatapathError:
                pass
            port.attached = False

    def set_port_vlan(self, name: str, tag: int | None, trunks, options: dict) -> None:
        port = self._port(name)
        vlan = vlan_config(tag, trunks, options)
        if port.type == "vxlan" and port.attached:
            self._reconfigure_vxlan(port, options, vlan)
        if port.attached:
            self.dp.set_port_vlan(port.ofport, **vlan)
        port.tag, port.trunks, port.options = tag, tuple(trunks), dict(options)

    # --- tunnels ---------------------------------------------------------------

    def _add_vxlan(self, port: PortState, cfg: VxlanConfig, vlan: dict) -> None:
        self.dp.add_port(port.ofport, "vxlan", name=port.name, vxlan=cfg, **vlan)
        port.attached = True
        resolver().add(self.dp, port.ofport, cfg)

    def _reconfigure_vxlan(self, port: PortState, options: dict, vlan: dict) -> None:
        """New tunnel options take effect by re-creating the port (its
        counters restart); invalid ones are refused before anything changes."""
        try:
            new = VxlanConfig.from_options(options)
        except ValueError as e:
            raise BridgeError(f"port {port.name}: {e}") from e
        old = VxlanConfig.from_options(port.options)
        if new == old:
            return
        resolver().remove(self.dp, port.ofport)
        self.dp.del_port(port.ofport)
        port.attached = False
        try:
            self._add_vxlan(port, new, vlan)
        except (DatapathError, ValueError) as e:
            self._add_vxlan(port, old, vlan_config(port.tag, port.trunks, port.options))
            raise BridgeError(f"port {port.name}: {e}") from e

    def tunnels(self) -> list[dict]:
        """Tunnel ports: options, underlay state, effective MTU, counters
        (one remote per port, so the port's counters are the remote's)."""
        out = []
        for p in self.ports.values():
            if p.type != "vxlan" or not p.attached:
                continue
            cfg = VxlanConfig.from_options(p.options)
            try:
                info = self.dp.port_info(p.ofport)
                st = self.dp.vxlan_stats(p.ofport)
                ps = self.dp.port_stats(p.ofport)
            except DatapathError:
                continue
            out.append({
                "name": p.name, "ofport": p.ofport, "remote_ip": cfg.remote_ip or "flow",
                "local_ip": cfg.local_ip or "any",
                "key": "flow" if cfg.key is None else cfg.key, "dst_port": cfg.dst_port,
                "tos": cfg.tos, "ttl": cfg.ttl, "df_default": cfg.df_default,
                "mtu": info.mtu, "link": "up" if info.link_up else "down",
                "underlay": resolver().state(self.dp, p.ofport),
                "counters": {**st, "tx_oversize": ps["tx_oversize"],
                             "tx_dropped": ps["tx_dropped"], "rx_errors": ps["rx_errors"]},
                "remotes": self.dp.vxlan_dests(p.ofport) if cfg.remote_flow else [],
            })
        return out

    def _port(self, name: str) -> PortState:
        try:
            return self.ports[name]
        except KeyError:
            raise BridgeError(f"no port {name} on {self.name}") from None

    def port_by_ofport(self, ofport: int) -> PortState | None:
        for p in self.ports.values():
            if p.ofport == ofport:
                return p
        return None

    def port_name(self, ofport: int) -> str:
        if ofport == ofp.OFPP_LOCAL:
            return self.name
        if ofport in RESERVED_PORTS:
            return RESERVED_PORTS[ofport]
        p = self.port_by_ofport(ofport)
        return p.name if p else str(ofport)

    def resolve_port(self, text: str) -> int:
        """A port given by number or by name."""
        if text.isdigit():
            return int(text)
        if text == self.name:
            return ofp.OFPP_LOCAL
        return self._port(text).ofport

    def show(self) -> dict:
        ports = []
        for info in self.dp.ports():
            st = self.port_by_ofport(info.port_no)
            ports.append({
                "name": info.name or (st.name if st else ""), "ofport": info.port_no,
                "type": info.type, "ifindex": info.ifindex, "mtu": info.mtu,
                "link": "up" if info.link_up else "down", "vlan_mode": info.vlan_mode,
                "tag": st.tag if st else None, "trunks": list(st.trunks) if st else [],
                "thread": info.thread,
            })
        waiting = [p.name for p in self.ports.values() if not p.attached]
        return {"name": self.name, "fail_mode": self.fail_mode, "ports": ports,
                "waiting_for_peer": waiting, "threads": self.dp.n_threads}

    def port_stats(self) -> list[dict]:
        out = []
        for n in self.dp.port_numbers():
            try:
                s = self.dp.port_stats(n)
            except DatapathError:
                continue
            out.append({"port": n, "name": self.port_name(n), **s})
        return out

    # --- flows ---------------------------------------------------------------

    def flow_mod(self, spec: FlowSpec, command: int) -> None:
        self.pipeline.flow_mod(
            command=command, table_id=spec.table_id, priority=spec.priority,
            match=spec.match, instructions=spec.instructions, cookie=spec.cookie,
            cookie_mask=spec.cookie_mask, idle_timeout=spec.idle_timeout,
            hard_timeout=spec.hard_timeout, flags=spec.flags, out_port=spec.out_port,
            out_group=spec.out_group)

    def add_flows(self, texts: list[str]) -> int:
        """Add flows given in ovs-ofctl syntax.  All are parsed first; a
        syntax error adds none.  An OpenFlow error stops at that flow and
        undoes the ones added before it (other flows keep their counters)."""
        specs = [parse_flow(t, "add") for t in texts]
        before = self.pipeline.dump_flows()
        done: list[FlowSpec] = []
        try:
            for spec in specs:
                self.flow_mod(spec, ofp.OFPFC_ADD)
                done.append(spec)
        except OFError:
            self._undo(done, before)
            raise
        return len(specs)

    def _undo(self, added: list[FlowSpec], before: list[FlowEntry]) -> None:
        """Remove the flows `added`, and put back the ones they replaced."""
        for spec in added:
            self.pipeline.flow_mod(ofp.OFPFC_DELETE_STRICT, spec.table_id, spec.priority,
                                   spec.match)
        present = {(e.table_id, e.priority, e.match) for e in self.pipeline.dump_flows()}
        for e in before:
            if (e.table_id, e.priority, e.match) in present:
                continue
            self.pipeline.flow_mod(
                table_id=e.table_id, priority=e.priority, match=e.match,
                instructions=e.instructions, cookie=e.cookie, idle_timeout=e.idle_timeout,
                hard_timeout=e.hard_timeout, flags=e.flags)

    def mod_flows(self, text: str, strict: bool = False) -> None:
        """Without table=, every table (as ovs-ofctl); OpenFlow 1.3 itself
        only modifies one table per request, so this is one per table that
        has flows.  A request the core refuses is refused on the first
        table, before anything changed (only a goto_table that is valid in
        some tables but not in later ones can stop part way)."""
        cmd = ofp.OFPFC_MODIFY_STRICT if strict else ofp.OFPFC_MODIFY
        spec = parse_flow(text, "mod")
        if spec.table_id != ofp.OFPTT_ALL:
            self.flow_mod(spec, cmd)
            return
        tables = sorted({e.table_id for e in self.pipeline.dump_flows()}) or [0]
        for t in tables:
            spec.table_id = t
            self.flow_mod(spec, cmd)

    def del_flows(self, text: str = "", strict: bool = False) -> None:
        cmd = ofp.OFPFC_DELETE_STRICT if strict else ofp.OFPFC_DELETE
        self.flow_mod(parse_flow(text, "del"), cmd)

    def dump_flows(self, text: str = "") -> list[FlowEntry]:
        spec = parse_flow(text, "del") if text else None
        if spec is None:
            entries = self.pipeline.dump_flows()
        else:
            entries = self.pipeline.dump_flows(
                spec.table_id, spec.match, spec.out_port, spec.out_group, spec.cookie,
                spec.cookie_mask)
        return entries

    def aggregate(self, text: str = "") -> dict:
        spec = parse_flow(text, "del") if text else None
        if spec is None:
            packets, nbytes, n = self.pipeline.aggregate()
        else:
            packets, nbytes, n = self.pipeline.aggregate(
                spec.table_id, spec.match, spec.out_port, spec.out_group, spec.cookie,
                spec.cookie_mask)
        return {"packet_count": packets, "byte_count": nbytes, "flow_count": n}

    def table_stats(self) -> list[dict]:
        out = []
        for t in range(ofp.OFPTT_ALL):
            s: TableStats = self.pipeline.table_stats(t)
            if s.active_count or s.lookup_count or t == 0:
                out.append({"table_id": t, "active_count": s.active_count,
                            "lookup_count": s.lookup_count, "matched_count": s.matched_count,
                            "subtables": s.n_subtables})
        return out

    def expire(self) -> int:
        return self.pipeline.expire()

    # --- groups and meters (ovs-ofctl syntax) ------------------------------------

    def group_mod(self, text: str, command: int) -> None:
        self.apply_group_mod(command, parse_group(text, need_buckets=command != ofp.OFPGC_DELETE))

    def apply_group_mod(self, command: int, spec: GroupSpec) -> None:
        """A group mod from either control path; the bridge remembers the
        buckets for dump-groups and GROUP_DESC."""
        self.pipeline.group_mod(command, spec.type, spec.group_id, spec.buckets)
        if command == ofp.OFPGC_DELETE:
            if spec.group_id == 0xFFFFFFFC:
                self.groups.clear()
            else:
                self.groups.pop(spec.group_id, None)
        else:
            self.groups[spec.group_id] = spec

    def dump_groups(self) -> list[dict]:
        out = []
        for g in self.pipeline.group_stats():
            spec = self.groups.get(g["group_id"])
            out.append({**g, "text": format_group(spec) if spec else f"group_id={g['group_id']}"})
        return out

    def meter_mod(self, text: str, command: int) -> None:
        self.apply_meter_mod(command, parse_meter(text, need_bands=command != ofp.OFPMC_DELETE))

    def apply_meter_mod(self, command: int, spec: MeterSpec) -> None:
        self.pipeline.meter_mod(command, spec.meter_id, spec.flags, spec.bands)
        if command == ofp.OFPMC_DELETE:
            if spec.meter_id == 0xFFFFFFFF:
                self.meters.clear()
            else:
                self.meters.pop(spec.meter_id, None)
        else:
            self.meters[spec.meter_id] = spec

    def dump_meters(self) -> list[dict]:
        out = []
        for m in self.pipeline.meter_stats():
            spec = self.meters.get(m["meter_id"])
            out.append({**m, "text": format_meter(spec) if spec else f"meter={m['meter_id']}"})
        return out

    def link_changed(self, ifindex: int, up: bool) -> int | None:
        """A kernel carrier change; the OpenFlow port number if it changed
        one of our ports."""
        for info in self.dp.ports():
            if info.ifindex == ifindex and info.link_up != up:
                self.dp.set_port_link(info.port_no, up)
                return info.port_no
        return None

    # --- trace ---------------------------------------------------------------

    def trace(self, frame: bytes, in_port: int) -> dict:
        """One frame through the pipeline as a dry run (no counters, no
        meters, nothing sent): the rule each table matched, the megaflow the
        decision depends on, and where the frame would go (as ofproto/trace
        shows it)."""
        t = trace(self.pipeline, frame, in_port)
        rules = {(e.table_id, e.priority, e.match): e for e in self.pipeline.dump_flows()}
        out_steps = []
        for s in t.steps:
            e = rules.get((s.table_id, s.priority, s.match)) if s.matched else None
            out_steps.append({"table": s.table_id,
                              "rule": format_flow(e, stats=False) if e else None})
        return {
            "steps": out_steps,
            "megaflow": format_match(t.megaflow),
            "outputs": [{"port": self.port_name(p), "ofport": p, "len": n, "queue": q}
                        for p, n, q in t.outputs],
            "upcalls": [{"reason": r, "table_id": tb, "cookie": c} for r, tb, c in t.upcalls],
        }
