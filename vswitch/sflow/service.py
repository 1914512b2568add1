"""The daemon's side of sFlow: one SflowAgent per bridge that has sFlow
settings, fed by a reader of that bridge's upcall queue and ticked about
once a second from the daemon's event loop.

The upcall reader dispatches on the entry's kind: UPCALL_SFLOW entries go
to the bridge's agent (SflowAgent.on_sample), UPCALL_CONTROLLER entries to
`controller_handler` (the OpenFlow packet-in path, when one is plugged in;
until then they are counted in `controller_unhandled`).  It reads at most
READ_BUDGET entries per wake-up so one busy bridge cannot starve the loop;
the eventfd stays readable while entries remain.

The host's own structures (data source 2:1) and the VMs' are sent by one
agent only: the one of the first bridge, by name, that has sFlow.
Sub-agent ids are a stable hash of the bridge name, so that the bridges'
datagram sequence numbers stay apart at the collector.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Callable

from vswitch.datapath import UPCALL_SFLOW, DatapathError, DpUpcall
from vswitch.sflow.agent import PortView, SflowAgent
from vswitch.sflow.settings import check
from vswitch.sflow.vm import VmStatsProvider

log = logging.getLogger("vswitchd.sflow")

READ_BUDGET = 256
TICK_S = 1.0


def sub_agent_id(bridge: str) -> int:
    return zlib.crc32(bridge.encode()) & 0x7FFFFFFF


class SflowService:
    def __init__(self, store, bridges: dict) -> None:
        self.store = store
        self.bridges = bridges                 # name -> vswitch.bridge.Bridge (shared)
        self.agents: dict[str, SflowAgent] = {}
        self._readers: dict[str, int] = {}     # bridge -> upcall fd being watched
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.vm_stats: VmStatsProvider | None = None
        self.controller_handler: Callable[[str, DpUpcall], None] | None = None
        self.controller_unhandled = 0

    # ---- lifecycle -------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        for name in list(self.agents):
            self._watch(name)
        self._timer = loop.call_later(TICK_S, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for name in list(self._readers):
            self._unwatch(name)
        self._loop = None

    def close(self) -> None:
        self.stop()
        for name in list(self.agents):
            self.forget(name)

    # ---- configuration ---------------------------------------------------------------

    def apply_all(self) -> None:
        for name in sorted(self.bridges):
            self.apply(name)

    def apply(self, bridge: str) -> None:
        """(Re)start or stop a bridge's agent after its settings changed."""
        self.forget(bridge)
        br = self.bridges.get(bridge)
        raw = self.store.get_sflow(bridge) if br is not None else None
        if raw is None:
            self._pick_host_agent()
            return
        settings = check(raw)
        try:
            agent = SflowAgent(settings, lambda: self._ports(bridge),
                               sub_agent_id=sub_agent_id(bridge), host=False,
                               vm_stats=self.vm_stats)
        except OSError as e:
            raise ValueError(f"sFlow on {bridge}: {e.strerror or e}") from None
        self.agents[bridge] = agent
        br.dp.set_sflow(settings.sampling, settings.header)
        self._watch(bridge)
        self._pick_host_agent()
        log.info("sFlow on %s: agent %s, collectors %s, 1:%d, polling %ds", bridge,
                 agent.agent_address, ", ".join(settings.collectors), settings.sampling,
                 settings.polling)

    def forget(self, bridge: str) -> None:
        """Stop a bridge's agent (before its datapath goes away)."""
        self._unwatch(bridge)
        agent = self.agents.pop(bridge, None)
        if agent is None:
            return
        br = self.bridges.get(bridge)
        if br is not None:
            try:
                br.dp.set_sflow(0)
            except (DatapathError, ValueError):
                pass                          # closed already
        agent.close()

    def _pick_host_agent(self) -> None:
        names = sorted(self.agents)
        for name in names:
            self.agents[name].host = name == names[0]

    def status(self, bridge: str) -> dict | None:
        agent = self.agents.get(bridge)
        if agent is None:
            return None
        br = self.bridges[bridge]
        st = br.dp.stats()
        return {"agent_address": agent.agent_address, "sub_agent_id": agent.sub_agent_id,
                "host_structures": agent.host, **agent.counters,
                "samples_queued": st["sflow_samples"], "samples_lost": st["sflow_drops"]}

    # ---- data -----------------------------------------------------------------------

    def _ports(self, bridge: str) -> list[PortView]:
        br = self.bridges.get(bridge)
        if br is None:
            return []
        ext = {p.name: dict(p.external_ids) for p in self.store.list_ports(bridge)}
        out = []
        for info in br.dp.ports():
            try:
                stats = br.dp.port_stats(info.port_no)
            except DatapathError:
                continue                      # deleted meanwhile
            out.append(PortView(info.port_no, info.name, info.ifindex, info.link_up, stats,
                                ext.get(info.name, {}), promiscuous=info.type == "system"))
        return out

    def _watch(self, bridge: str) -> None:
        if self._loop is None or bridge in self._readers:
            return
        fd = self.bridges[bridge].dp.upcall_fd
        self._loop.add_reader(fd, self.drain, bridge)
        self._readers[bridge] = fd

    def _unwatch(self, bridge: str) -> None:
        fd = self._readers.pop(bridge, None)
        if fd is not None and self._loop is not None:
            self._loop.remove_reader(fd)

    def drain(self, bridge: str) -> int:
        """Dispatch up to READ_BUDGET queued upcalls of a bridge by kind."""
        br = self.bridges.get(bridge)
        agent = self.agents.get(bridge)
        if br is None:
            return 0
        n = 0
        while n < READ_BUDGET:
            u = br.dp.recv_upcall()
            if u is None:
                break
            n += 1
            if u.kind == UPCALL_SFLOW:
                if agent is not None:
                    agent.on_sample(u)
            elif self.controller_handler is not None:
                self.controller_handler(bridge, u)
            else:
                self.controller_unhandled += 1
        return n

    def _tick(self) -> None:
        now = time.monotonic()
        for name, agent in list(self.agents.items()):
            try:
                agent.tick(now)
            except Exception:                 # one bad bridge must not stop the rest
                log.exception("sFlow tick on %s", name)
        if self._loop is not None:
            self._timer = self._loop.call_later(TICK_S, self._tick)

