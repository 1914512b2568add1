"""vswitchd: runs every bridge in the configuration and serves the control
socket.

Configuration lives in SQLite (vswitch.config) under the state directory and
is restored on start.  The control socket speaks JSON-RPC 2.0, one request
per line, on a Unix socket only root can open.  Every method validates its
input; a refused request leaves the configuration as it was (the store
change and the bridge change happen in one transaction: if the bridge
refuses, the store is rolled back).  Flows are not persisted, as in Open
vSwitch: a standalone bridge starts with `priority=0 actions=NORMAL`,
a secure one with no flows.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path

from vswitch import ofp
from vswitch.bridge import Bridge, BridgeError, PortState
from vswitch.config import DEFAULT_STATE_DIR, ConfigError, ConfigStore
from vswitch.datapath import UPCALL_SFLOW
from vswitch.linkmon import LinkMonitor
from vswitch.ofp import OFError
from vswitch.ofproto import messages as ofm
from vswitch.ofproto.connmgr import ConnectionManager
from vswitch.ofproto.flowsyntax import FlowSyntaxError, format_flow
from vswitch.ofproto.ofswitch import OFSwitch, datapath_id_for
from vswitch.packet import build_frame
from vswitch.sflow.service import SflowService
from vswitch.sriov.manager import SriovManager
from vswitch.sriov.sysfs import DEFAULT_ROOT as DEFAULT_SYSFS_ROOT

log = logging.getLogger("vswitchd")

SOCKET_NAME = "vswitchd.sock"
LOCK_NAME = "vswitchd.lock"
EXPIRE_INTERVAL_S = 1.0
MAX_REQUEST = 16 << 20          # add-flows can carry many flows
UPCALL_BATCH = 256             # upcalls handled per wake-up, so requests still get served


class RequestError(Exception):
    """A request the daemon refuses: its message goes back to the client."""


def default_socket(state_dir: str) -> str:
    return os.path.join(state_dir, SOCKET_NAME)


class Daemon:
    def __init__(self, state_dir: str, sysfs_root: str = DEFAULT_SYSFS_ROOT) -> None:
        self.state_dir = state_dir
        Path(state_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
        self.store = ConfigStore(os.path.join(state_dir, "conf.db"))
        self.bridges: dict[str, Bridge] = {}
        self.sriov = SriovManager(
            self.store, sysfs_root,
            add_port=lambda br, port, ids: self.add_port(br, port, external_ids=ids),
            del_port=lambda port: self.del_port(port, if_exists=True))
        # OpenFlow per bridge: what messages do, and the connections.  They
        # need the event loop, so they start in start_openflow().
        self.openflow: dict[str, tuple[OFSwitch, ConnectionManager]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.sflow = SflowService(self.store, self.bridges)

    # --- lifecycle -----------------------------------------------------------

    def restore(self) -> None:
        """Start every configured bridge and its ports.  A port whose device
        is missing stays configured and is reported by `show`."""
        for br in self.store.list_bridges():
            try:
                self._start_bridge(br.name, br.fail_mode, br.datapath_options)
            except BridgeError as e:
                log.error("bridge %s: %s", br.name, e)
                continue
        for br in list(self.bridges):
            for port in self.store.list_ports(br):
                try:
                    self._attach(br, self._port_state(port))
                except BridgeError as e:
                    log.error("port %s: %s", port.name, e)
        for br in list(self.bridges):
            try:
                self.sflow.apply(br)
            except ValueError as e:
                log.error("bridge %s: %s", br, e)
        self._sriov_reconcile()

    def close(self) -> None:
        self.sflow.close()
        for name in list(self.bridges):
            self._of_stop(name)
            self.bridges.pop(name).close()
        self.store.close()

    # --- OpenFlow ------------------------------------------------------------

    def start_openflow(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        for name in self.bridges:
            self._of_start(name)

    def _of_start(self, name: str) -> None:
        br = self.bridges[name]
        cfg = self.store.get_bridge(name)
        sw = OFSwitch(br, datapath_id_for(cfg.datapath_id, name))
        mgr = ConnectionManager(name, on_open=sw.channel_opened, on_close=sw.channel_closed,
                                on_message=sw.on_message)
        self.openflow[name] = (sw, mgr)
        self.loop.add_reader(br.dp.upcall_fd, self._upcalls, name)
        self._of_configure(name)

    def _of_configure(self, name: str) -> None:
        """(Re)apply the bridge's controllers, channel options and SSL files."""
        if name not in self.openflow:
            return
        mgr = self.openflow[name][1]
        cfg = self.store.get_bridge(name)
        probe = int(cfg.options.get("inactivity_probe", 5000)) / 1000
        backoff = int(cfg.options.get("max_backoff", 8000)) / 1000
        mgr.configure(self.store.get_controllers(name), probe, backoff, self.store.get_ssl())

    def _of_stop(self, name: str) -> asyncio.Task | None:
        """Stop reading the bridge's upcalls and close its connections (the
        closing finishes in the returned task)."""
        of = self.openflow.pop(name, None)
        if of is None:
            return None
        sw, mgr = of
        self.loop.remove_reader(sw.bridge.dp.upcall_fd)
        return self.loop.create_task(mgr.close())

    async def stop_openflow(self) -> None:
        tasks = [t for name in list(self.openflow) if (t := self._of_stop(name))]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _upcalls(self, name: str) -> None:
        of = self.openflow.get(name)
        if of is None:
            return
        sw = of[0]
        packet_ins = []
        for u in sw.bridge.dp.upcalls(UPCALL_BATCH):
            if u.kind == UPCALL_SFLOW:          # a flow sample, not a packet-in
                self.sflow.on_sample(name, u)
            else:
                packet_ins.append(u)
        if packet_ins:
            sw.upcalls(packet_ins)

    def tick(self) -> None:
        """Once a second: flow timeouts, flow-removed messages, fail mode, sFlow."""
        for name, br in list(self.bridges.items()):
            br.expire()
            of = self.openflow.get(name)
            if of is None:
                br.pipeline.drain_removed()     # nobody to tell; do not let it grow
                continue
            sw, mgr = of
            sw.flush_removed()
            sw.fail_open_tick(mgr.seconds_without_controller(), mgr.probe_interval,
                              mgr.has_controllers())
        # Samples alone wake the upcall reader only in bulk: collect the rest.
        for name in list(self.sflow.agents):
            self._upcalls(name)
        self.sflow.tick()

    def _port_status(self, bridge: str, reason: int, ofport: int, desc=None) -> None:
        of = self.openflow.get(bridge)
        if of is not None:
            of[0].port_status(reason, ofport, desc)

    def _start_bridge(self, name: str, fail_mode: str, options: dict) -> Bridge:
        threads = int(options.get("n_poll_threads", 1))
        controllers = bool(self.store.get_controllers(name))
        br = Bridge(name, n_threads=threads, fail_mode=fail_mode, controllers=controllers)
        self.bridges[name] = br
        if self.loop is not None:
            self._of_start(name)
        log.info("bridge %s started (%d poll thread%s)", name, threads, "s"[:threads > 1])
        return br

    @staticmethod
    def _port_state(port) -> PortState:
        return PortState(port.name, port.type, port.ofport, port.tag, tuple(port.trunks),
                         dict(port.options))

    def _attach(self, bridge: str, port: PortState) -> None:
        peer = None
        if port.type == "patch":
            peer_name = port.options.get("peer")
            if not peer_name:
                raise BridgeError(f"patch port {port.name} needs options peer=PORT")
            for other in self.bridges.values():
                if peer_name in other.ports and other.ports[peer_name].type == "patch":
                    peer = (other, other.ports[peer_name])
        self.bridges[bridge].add_port(port, peer)

    # --- dispatch ------------------------------------------------------------

    def handle(self, method: str, params: dict):
        fn = METHODS.get(method)
        if fn is None:
            raise RequestError(f"unknown method {method!r}")
        if not isinstance(params, dict):
            raise RequestError("params must be an object")
        try:
            return fn(self, **params)
        except TypeError as e:
            raise RequestError(f"{method}: bad parameters ({e})") from e
        except (ConfigError, BridgeError, FlowSyntaxError, ValueError) as e:
            raise RequestError(str(e)) from e
        except OFError as e:
            raise RequestError(f"OpenFlow error: {e.msg} (type {e.type}, code {e.code})") from e

    def bridge(self, name: str) -> Bridge:
        br = self.bridges.get(name)
        if br is None:
            raise RequestError(f"no bridge named {name}")
        return br

    # --- configuration methods ---------------------------------------------------

    def add_br(self, bridge: str, fail_mode: str = "standalone", threads: int = 1,
               may_exist: bool = False):
        if bridge in self.bridges:
            if may_exist:
                return None
            raise RequestError(f"bridge {bridge} already exists")
        with self.store.transaction():
            self.store.add_bridge(bridge, fail_mode=fail_mode,
                                  datapath_options={"n_poll_threads": str(threads)})
            self._start_bridge(bridge, fail_mode, {"n_poll_threads": threads})
            # The datapath id is chosen once (from the bridge's MAC, as OVS
            # does) and kept, so controllers see the same switch after a restart.
            # (_start_bridge's OFSwitch derived the same id from the MAC.)
            self.store.set_datapath_id(bridge, f"{datapath_id_for(None, bridge):016x}")
        return None

    def del_br(self, bridge: str, if_exists: bool = False):
        br = self.bridges.get(bridge)
        if br is None:                  # absent, or configured but failed to start
            self.store.del_bridge(bridge, if_exists=if_exists)
            return None
        with self.store.transaction():
            self.store.del_bridge(bridge)
            self.sflow.forget(bridge)
            self.bridges.pop(bridge)
        self._of_stop(bridge)
        br.close()
        self._unhook_peers(set(br.ports))
        return None

    def list_br(self):
        """Configured bridges, also one that failed to start (see `show`)."""
        return sorted(b.name for b in self.store.list_bridges())

    def add_port(self, bridge: str, port: str, type: str = "system", tag: int | None = None,
                 trunks: list | None = None, options: dict | None = None,
                 ofport: int | None = None, external_ids: dict | None = None,
                 may_exist: bool = False):
        br = self.bridge(bridge)
        if may_exist and port in br.ports:
            return br.ports[port].ofport
        with self.store.transaction():
            row = self.store.add_port(bridge, port, type, ofport=ofport, tag=tag,
                                      trunks=trunks or (), options=options or {},
                                      external_ids=external_ids or {})
            self._attach(bridge, self._port_state(row))
        if br.ports[port].attached:
            self._port_status(bridge, ofm.OFPPR_ADD, row.ofport)
        return row.ofport

    def del_port(self, port: str, bridge: str | None = None, if_exists: bool = False):
        found = self.store.find_port(port)
        if found is None:
            if if_exists:
                return None
            raise RequestError(f"no port named {port}")
        br_name, _ = found
        if bridge is not None and bridge != br_name:
            raise RequestError(f"port {port} is on bridge {br_name}, not {bridge}")
        of = self.openflow.get(br_name)
        desc = None
        if of is not None and port in of[0].bridge.ports:
            desc = of[0].port_desc(of[0].bridge.ports[port].ofport)
        with self.store.transaction():
            self.store.del_port(port)
            if br_name in self.bridges and port in self.bridges[br_name].ports:
                self.bridges[br_name].del_port(port)
        if desc is not None:
            self._port_status(br_name, ofm.OFPPR_DELETE, desc.port_no, desc)
        self._unhook_peers({port})
        return None

    def _unhook_peers(self, gone: set[str]) -> None:
        """Patch ports whose peer was removed wait for it again (detached
        from the datapath), so that a new peer of that name hooks them up."""
        for br in self.bridges.values():
            for p in list(br.ports.values()):
                if p.type == "patch" and p.attached and p.options.get("peer") in gone:
                    br.detach_port(p.name)

    def list_ports(self, bridge: str):
        return [p.name for p in self.store.list_ports(bridge)]

    def show(self):
        out = []
        for cfg in self.store.list_bridges():
            br = self.bridges.get(cfg.name)
            live = br.show() if br else {"ports": [], "waiting_for_peer": []}
            by_name = {p["name"]: p for p in live["ports"]}
            ports = []
            for p in self.store.list_ports(cfg.name):
                ports.append({"name": p.name, "type": p.type, "ofport": p.ofport,
                              "tag": p.tag, "trunks": list(p.trunks),
                              "options": dict(p.options), "external_ids": dict(p.external_ids),
                              "state": by_name.get(p.name, {}),
                              "error": None if p.name in by_name else "not attached"})
            out.append({"name": cfg.name, "fail_mode": cfg.fail_mode,
                        "controllers": self.store.get_controllers(cfg.name),
                        "openflow": self._of_summary(cfg.name),
                        "running": br is not None, "ports": ports,
                        "local": by_name.get(cfg.name)})
        return out

    def set_fail_mode(self, bridge: str, mode: str):
        br = self.bridge(bridge)
        with self.store.transaction():
            self.store.set_fail_mode(bridge, mode)
            br.fail_mode = mode
        return None

    # --- controllers -------------------------------------------------------------

    def set_controller(self, bridge: str, targets: list):
        """Replace the bridge's controllers and listeners (ovs-vsctl
        set-controller): connections to targets that stay are kept."""
        self.bridge(bridge)
        if not isinstance(targets, list) or not targets:
            raise RequestError("set-controller: need at least one target "
                               "(del-controller removes them all)")
        self.store.set_controllers(bridge, targets)
        self._of_configure(bridge)
        return None

    def del_controller(self, bridge: str):
        self.bridge(bridge)
        self.store.set_controllers(bridge, [])
        self._of_configure(bridge)
        return None

    def get_controller(self, bridge: str):
        self.bridge(bridge)
        return self.store.get_controllers(bridge)

    def set_ssl(self, private_key: str, certificate: str, ca_cert: str):
        for path in (private_key, certificate, ca_cert):
            if isinstance(path, str) and not os.path.isfile(path):
                raise RequestError(f"set-ssl: no such file {path}")
        self.store.set_ssl(private_key, certificate, ca_cert)
        for name in self.openflow:
            self._of_configure(name)
        return None

    def get_ssl(self):
        return self.store.get_ssl()

    def del_ssl(self):
        self.store.del_ssl()
        return None

    def _of_summary(self, bridge: str) -> dict | None:
        of = self.openflow.get(bridge)
        if of is None:
            return None
        return {"datapath_id": f"{of[0].datapath_id:016x}",
                "controllers": [{k: t[k] for k in ("target", "state", "last_error", "connections")}
                                for t in of[1].status()]}

    def openflow_status(self, bridge: str):
        """Connections, their counters, and what the OpenFlow side did."""
        self.bridge(bridge)
        of = self.openflow.get(bridge)
        if of is None:
            return {"controllers": [], "counters": {}}
        sw, mgr = of
        roles = {st.channel: st for st in sw.conns.values()}
        status = mgr.status()
        for t, target in zip(status, mgr.targets.values(), strict=True):
            for conn, ch in zip(t["connections"], target.channels, strict=True):
                st = roles.get(ch)
                conn["role"] = ROLE_NAMES.get(st.role, "?") if st else "?"
        return {"datapath_id": f"{sw.datapath_id:016x}", "controllers": status,
                "counters": vars(sw.counters), "probe_interval_s": mgr.probe_interval,
                "seconds_without_controller": round(mgr.seconds_without_controller(), 1)}

    def get(self, kind: str, name: str, key: str | None = None):
        snap = self._row(kind, name)
        if key is None:
            return snap
        if key not in snap:
            raise RequestError(f"{kind} {name} has no column {key!r}")
        return snap[key]

    def _row(self, kind: str, name: str) -> dict:
        if kind == "bridge":
            b = self.store.get_bridge(name)
            return {"name": b.name, "fail_mode": b.fail_mode, "datapath_id": b.datapath_id,
                    "datapath_options": dict(b.datapath_options), "options": dict(b.options)}
        if kind == "port":
            p = self.store.get_port(name)
            return {"name": p.name, "bridge": p.bridge, "type": p.type, "ofport": p.ofport,
                    "tag": p.tag, "trunks": list(p.trunks), "options": dict(p.options),
                    "external_ids": dict(p.external_ids)}
        raise RequestError(f"unknown table {kind!r} (bridge or port)")

    def set(self, kind: str, name: str, key: str, value):
        """Set one column: port tag/trunks/options/external_ids, bridge
        options/fail_mode."""
        with self.store.transaction():
            if kind == "port":
                found = self.store.find_port(name)
                if found is None:
                    raise RequestError(f"no port named {name}")
                br_name, port = found
                if key == "tag":
                    self.store.set_port_tag(name, None if value in (None, "") else int(value))
                elif key == "trunks":
                    self.store.set_port_trunks(name, [int(v) for v in value])
                elif key == "options":
                    self.store.set_port_options(name, dict(value))
                elif key == "external_ids":
                    self.store.set_port_external_ids(name, dict(value))
                    return None
                else:
                    raise RequestError(f"port column {key!r} cannot be set")
                p = self.store.get_port(name)
                br = self.bridges.get(br_name)
                if br and name in br.ports:
                    br.set_port_vlan(name, p.tag, p.trunks, dict(p.options))
            elif kind == "bridge":
                if key == "fail_mode":
                    return self.set_fail_mode(name, value)
                if key != "options":
                    raise RequestError(f"bridge column {key!r} cannot be set")
                self.store.set_bridge_options(name, options=dict(value))
                self._of_configure(name)
            else:
                raise RequestError(f"unknown table {kind!r} (bridge or port)")
        return None

    # --- flow methods ----------------------------------------------------------------

    def add_flow(self, bridge: str, flow: str):
        self.bridge(bridge).add_flows([flow])
        return None

    def add_flows(self, bridge: str, flows: list):
        if not isinstance(flows, list) or not all(isinstance(f, str) for f in flows):
            raise RequestError("add-flows: flows must be a list of strings")
        return self.bridge(bridge).add_flows([f for f in flows if f.strip()
                                              and not f.lstrip().startswith("#")])

    def mod_flows(self, bridge: str, flow: str, strict: bool = False):
        self.bridge(bridge).mod_flows(flow, strict)
        return None

    def del_flows(self, bridge: str, flow: str = "", strict: bool = False):
        self.bridge(bridge).del_flows(flow, strict)
        return None

    def dump_flows(self, bridge: str, flow: str = "", sort: str | None = None):
        br = self.bridge(bridge)
        entries = br.dump_flows(flow)
        if sort is not None and not isinstance(sort, str):
            raise RequestError("dump-flows: sort must be a string")
        if sort:
            desc = sort.startswith("-")
            key = sort.lstrip("-+")
            if key not in ("priority", "table", "cookie", "packet_count", "byte_count",
                           "duration"):
                raise RequestError(f"cannot sort by {key!r}")
            attr = {"table": "table_id", "duration": "duration_ns"}.get(key, key)
            entries.sort(key=lambda e: getattr(e, attr), reverse=desc)
        return [{"text": format_flow(e), "table_id": e.table_id, "priority": e.priority,
                 "cookie": e.cookie, "packet_count": e.packet_count,
                 "byte_count": e.byte_count, "duration_s": e.duration_ns / 1e9}
                for e in entries]

    def dump_aggregate(self, bridge: str, flow: str = ""):
        return self.bridge(bridge).aggregate(flow)

    def dump_ports(self, bridge: str):
        return self.bridge(bridge).port_stats()

    def dump_tables(self, bridge: str):
        return self.bridge(bridge).table_stats()

    def group_mod(self, bridge: str, group: str, command: str = "add"):
        cmds = {"add": ofp.OFPGC_ADD, "mod": ofp.OFPGC_MODIFY, "del": ofp.OFPGC_DELETE}
        if command not in cmds:
            raise RequestError(f"group command must be add, mod or del, not {command!r}")
        self.bridge(bridge).group_mod(group, cmds[command])
        return None

    def meter_mod(self, bridge: str, meter: str, command: str = "add"):
        cmds = {"add": ofp.OFPMC_ADD, "mod": ofp.OFPMC_MODIFY, "del": ofp.OFPMC_DELETE}
        if command not in cmds:
            raise RequestError(f"meter command must be add, mod or del, not {command!r}")
        self.bridge(bridge).meter_mod(meter, cmds[command])
        return None

    def link_changed(self, ifindex: int, name: str, up: bool) -> None:
        for br_name, br in self.bridges.items():
            ofport = br.link_changed(ifindex, up)
            if ofport is not None:
                log.info("port %s: link %s", name, "up" if up else "down")
                self._port_status(br_name, ofm.OFPPR_MODIFY, ofport)
        self._sriov_link_event(name)

    def dump_groups(self, bridge: str):
        return self.bridge(bridge).dump_groups()

    def dump_meters(self, bridge: str):
        return self.bridge(bridge).dump_meters()

    def fdb_show(self, bridge: str):
        br = self.bridge(bridge)
        return [{"port": br.port_name(e.port), "ofport": e.port, "vlan": e.vlan, "mac": e.mac,
                 "age_s": e.age_ms // 1000} for e in br.dp.fdb()]

    def trace(self, bridge: str, packet: str):
        frame, in_port = build_frame(packet)
        return self.bridge(bridge).trace(frame, in_port)

    def dpif_stats(self, bridge: str):
        br = self.bridge(bridge)
        return {"datapath": br.dp.stats(), "threads": br.dp.thread_stats()}

    # --- sFlow -----------------------------------------------------------------------------

    def sflow_set(self, bridge: str, settings: dict):
        """Export sFlow from a bridge (replaces its settings)."""
        self.bridge(bridge)
        try:
            with self.store.transaction():
                checked = self.store.set_sflow(bridge, settings)
                self.sflow.apply(bridge)
        except ValueError:
            self.sflow.apply(bridge)          # the stored (previous) settings again
            raise
        return checked

    def sflow_show(self, bridge: str):
        self.bridge(bridge)
        return {"settings": self.store.get_sflow(bridge), "status": self.sflow.status(bridge)}

    def sflow_del(self, bridge: str, if_exists: bool = False):
        self.bridge(bridge)
        with self.store.transaction():
            if not self.store.del_sflow(bridge) and not if_exists:
                raise RequestError(f"bridge {bridge} has no sFlow settings")
            self.sflow.apply(bridge)
        return None

    # --- SR-IOV (vswitch.sriov) -------------------------------------------------------

    def _sriov_reconcile(self, pf: str | None = None) -> list:
        """Never fails the caller: a reconcile problem is logged and kept in the
        assignment's error column."""
        try:
            report = self.sriov.reconcile(pf)
        except Exception:
            log.exception("SR-IOV reconcile")
            return []
        for r in report:
            if r["action"] != "in line":
                log.info("SR-IOV VF %s (VM %s): %s", r["vf_pci"], r["vm_id"], r["action"])
        return report

    def _sriov_link_event(self, name: str) -> None:
        """A PF's link changing may be a PF reset, which removes its VFs and their
        settings: reconcile the assignments on that PF."""
        if name and any(a.pf_name == name for a in self.sriov.store.list()):
            self._sriov_reconcile(name)

    def vf_list(self):
        return {"pfs": self.sriov.list(), "assignments": self.sriov.assignments(),
                "counters": dict(self.sriov.counters),
                "netlink": {"requests": self.sriov.rtnl.requests,
                            "errors": self.sriov.rtnl.errors}}

    def vf_set_numvfs(self, pf: str, numvfs: int, autoprobe: bool | None = None):
        return self.sriov.set_numvfs(pf, numvfs, autoprobe)

    def vf_config(self, vf: str, settings: dict):
        return self.sriov.configure(vf, settings)

    def vf_assign(self, vm_id: str, pool: str | None = None, vf: str | None = None,
                  config: dict | None = None, vfio: bool = False, bridge: str | None = None):
        if bridge is not None:
            self.bridge(bridge)
        return self.sriov.assign(vm_id, pool=pool, vf=vf, config=config, vfio=bool(vfio),
                                 bridge=bridge)

    def vf_release(self, vm_id: str | None = None, vf: str | None = None):
        return self.sriov.release(vm_id=vm_id, vf=vf)

    def vf_pools(self):
        return self.sriov.pools()

    def vf_pool_add(self, name: str, selectors: dict):
        self.sriov.pool_add(name, selectors)
        return None

    def vf_pool_del(self, name: str):
        self.sriov.pool_del(name)
        return None

    def vf_reconcile(self, pf: str | None = None):
        return self.sriov.reconcile(pf)

    def tunnel_show(self, bridge: str | None = None):
        names = [bridge] if bridge is not None else sorted(self.bridges)
        return [{"bridge": n, **t} for n in names for t in self.bridge(n).tunnels()]


METHODS = {
    "add-br": Daemon.add_br, "del-br": Daemon.del_br, "list-br": Daemon.list_br,
    "add-port": Daemon.add_port, "del-port": Daemon.del_port,
    "list-ports": Daemon.list_ports, "show": Daemon.show,
    "set-fail-mode": Daemon.set_fail_mode, "get": Daemon.get, "set": Daemon.set,
    "add-flow": Daemon.add_flow, "add-flows": Daemon.add_flows,
    "mod-flows": Daemon.mod_flows, "del-flows": Daemon.del_flows,
    "dump-flows": Daemon.dump_flows, "dump-aggregate": Daemon.dump_aggregate,
    "dump-ports": Daemon.dump_ports, "dump-tables": Daemon.dump_tables,
    "dump-groups": Daemon.dump_groups, "dump-meters": Daemon.dump_meters,
    "group-mod": Daemon.group_mod, "meter-mod": Daemon.meter_mod,
    "fdb-show": Daemon.fdb_show, "trace": Daemon.trace, "dpif-stats": Daemon.dpif_stats,
    "set-controller": Daemon.set_controller, "del-controller": Daemon.del_controller,
    "get-controller": Daemon.get_controller, "set-ssl": Daemon.set_ssl,
    "get-ssl": Daemon.get_ssl, "del-ssl": Daemon.del_ssl,
    "openflow-status": Daemon.openflow_status,
    "tunnel-show": Daemon.tunnel_show,
}
METHODS.update({
    "vf-list": Daemon.vf_list, "vf-set-numvfs": Daemon.vf_set_numvfs,
    "vf-config": Daemon.vf_config, "vf-assign": Daemon.vf_assign,
    "vf-release": Daemon.vf_release, "vf-pools": Daemon.vf_pools,
    "vf-pool-add": Daemon.vf_pool_add, "vf-pool-del": Daemon.vf_pool_del,
    "vf-reconcile": Daemon.vf_reconcile,
})
ROLE_NAMES = {ofm.OFPCR_ROLE_EQUAL: "equal", ofm.OFPCR_ROLE_MASTER: "master",
              ofm.OFPCR_ROLE_SLAVE: "slave"}
METHODS.update({"sflow-set": Daemon.sflow_set, "sflow-show": Daemon.sflow_show,
                "sflow-del": Daemon.sflow_del})


# --- the control socket ------------------------------------------------------------


def _reply(req_id, result=None, error: str | None = None, code: int = -32000) -> bytes:
    msg = {"jsonrpc": "2.0", "id": req_id}
    if error is None:
        msg["result"] = result
    else:
        msg["error"] = {"code": code, "message": error}
    return (json.dumps(msg) + "\n").encode()


def answer(daemon: Daemon, line: bytes) -> bytes:
    """One request line in, one reply line out; never raises."""
    try:
        req = json.loads(line)
    except (ValueError, RecursionError):      # UnicodeDecodeError is a ValueError
        return _reply(None, error="parse error: not JSON", code=-32700)
    if not isinstance(req, dict) or not isinstance(req.get("method"), str):
        return _reply(None, error="invalid request: need an object with a method", code=-32600)
    req_id = req.get("id")
    try:
        result = daemon.handle(req["method"], req.get("params") or {})
        return _reply(req_id, result)
    except RequestError as e:
        log.info("refused %s: %s", req["method"], e)
        return _reply(req_id, error=str(e))
    except Exception as e:                    # a bug: report it, keep serving
        log.exception("internal error in %s", req["method"])
        return _reply(req_id, error=f"internal error: {e}", code=-32603)


async def serve(daemon: Daemon, sock_path: str, stop: asyncio.Event) -> None:
    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError:
                    break
                except asyncio.LimitOverrunError:
                    writer.write(_reply(None, error="request too large", code=-32600))
                    break
                writer.write(answer(daemon, line))
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    if os.path.exists(sock_path):
        if socket_alive(sock_path):
            raise SystemExit(f"vswitchd: another daemon is serving {sock_path}")
        os.unlink(sock_path)
    old_umask = os.umask(0o077)                # root-only socket
    try:
        server = await asyncio.start_unix_server(client, sock_path, limit=MAX_REQUEST)
    except OSError as e:
        raise SystemExit(f"vswitchd: cannot listen on {sock_path}: {e.strerror or e}") from None
    finally:
        os.umask(old_umask)
    os.chmod(sock_path, 0o600)
    log.info("listening on %s", sock_path)

    async def expire() -> None:
        while True:
            await asyncio.sleep(EXPIRE_INTERVAL_S)
            daemon.tick()

    daemon.start_openflow(asyncio.get_running_loop())
    ticker = asyncio.create_task(expire())
    try:
        async with server:
            await stop.wait()
    finally:
        ticker.cancel()
        await daemon.stop_openflow()
        server.close()
        if os.path.exists(sock_path):
            os.unlink(sock_path)


# Set by a SIGTERM that came before the event loop took the signal over.
_stop_requested = False


def _exit_on_signal(signum: int, main_pid: int) -> None:
    global _stop_requested
    if os.getpid() != main_pid:
        # A child forked without exec (pyroute2's NetNS helper) inherits this
        # handler: it must die as before, not run the daemon's cleanup.
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    # If the signal lands while a __del__ runs (an event loop or socket being
    # collected), Python swallows this exception: the flag still stops us.
    _stop_requested = True
    raise SystemExit(0)


def _lock_state_dir(state_dir: str) -> int:
    """Hold STATE_DIR/vswitchd.lock while running: two daemons on one
    configuration would both try to run its bridges."""
    Path(state_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(os.path.join(state_dir, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ConfigError(f"another vswitchd is running on {state_dir}") from None
    return fd


def socket_alive(path: str) -> bool:
    """Is a daemon accepting connections on this Unix socket?"""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="vswitchd", description=__doc__.splitlines()[0])
    ap.add_argument("--state-dir", default=os.environ.get("VSWITCH_STATE_DIR",
                                                          DEFAULT_STATE_DIR))
    ap.add_argument("--socket", help="control socket (default STATE_DIR/vswitchd.sock)")
    ap.add_argument("--log-level", default="info",
                    choices=["debug", "info", "warning", "error"])
    ap.add_argument("--demo", action="store_true",
                    help="also create bridge vsdemo0 with two namespaced hosts (removed on stop)")
    ap.add_argument("--sysfs-root", default=os.environ.get("VSWITCH_SYSFS_ROOT",
                                                           DEFAULT_SYSFS_ROOT),
                    help="where sysfs is (SR-IOV discovery; tests point it at a fake tree)")
    args = ap.parse_args(argv)
    level = getattr(logging, args.log_level.upper())
    # debug is for vswitchd's own loggers: libraries (pyroute2 dumps every
    # netlink message) stay at info.
    logging.basicConfig(level=max(level, logging.INFO),
                        format="%(asctime)s vswitchd %(levelname)s %(message)s")
    log.setLevel(level)
    if os.geteuid() != 0:
        print("vswitchd: must run as root (it creates network devices)", file=sys.stderr)
        return 1
    sock_path = args.socket or default_socket(args.state_dir)
    # Refuse before touching anything: a second daemon would fight the first
    # over its devices (and --demo would tear down the first one's demo).
    if socket_alive(sock_path):
        print(f"vswitchd: another daemon is serving {sock_path}", file=sys.stderr)
        return 1
    try:
        lock_fd = _lock_state_dir(args.state_dir)
        daemon = Daemon(args.state_dir, sysfs_root=args.sysfs_root)
    except (ConfigError, OSError) as e:
        print(f"vswitchd: {e}", file=sys.stderr)
        return 1
    # SIGTERM while starting (or while the demo sets up) still cleans up.
    main_pid = os.getpid()
    signal.signal(signal.SIGTERM, lambda signum, _frame: _exit_on_signal(signum, main_pid))
    demo = None
    try:
        daemon.restore()
        if args.demo:
            from vswitch.demo import Demo
            demo = Demo(daemon)
            demo.start()
        stop = asyncio.Event()

        async def run() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            if _stop_requested:
                stop.set()
            links = LinkMonitor(daemon.link_changed)
            loop.add_reader(links.fileno(), links.poll)
            try:
                await serve(daemon, sock_path, stop)
            finally:
                loop.remove_reader(links.fileno())
                links.close()

        asyncio.run(run())
        log.info("stopping")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)      # stopping already
        if demo is not None:
            demo.stop()
        daemon.close()
        os.close(lock_fd)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["Daemon", "answer", "main", "socket_alive"]
