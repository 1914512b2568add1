"""The daemon's side of sFlow: one SflowAgent per bridge that has sFlow
settings.  The daemon's upcall reader (one per bridge, in vswitch/daemon.py)
dispatches on the upcall's kind: UPCALL_SFLOW entries come here
(on_sample), UPCALL_CONTROLLER entries go to OpenFlow as packet-ins.  The
daemon's once-a-second tick calls tick(), which polls counters and sends
what waits.

The host's own structures (data source 2:1) and the VMs' are sent by one
agent only: the one of the first bridge, by name, that has sFlow.
Sub-agent ids are a stable hash of the bridge name, so that the bridges'
datagram sequence numbers stay apart at the collector.
"""

from __future__ import annotations

import logging
import time
import zlib

from vswitch.datapath import DatapathError, DpUpcall
from vswitch.sflow.agent import PortView, SflowAgent
from vswitch.sflow.settings import check
from vswitch.sflow.vm import VmStatsProvider

log = logging.getLogger("vswitchd.sflow")


def sub_agent_id(bridge: str) -> int:
    return zlib.crc32(bridge.encode()) & 0x7FFFFFFF


class SflowService:
    def __init__(self, store, bridges: dict) -> None:
        self.store = store
        self.bridges = bridges                 # name -> vswitch.bridge.Bridge (shared)
        self.agents: dict[str, SflowAgent] = {}
        self.vm_stats: VmStatsProvider | None = None
        self.unclaimed_samples = 0             # samples of a bridge whose agent is gone

    def close(self) -> None:
        for name in list(self.agents):
            self.forget(name)

    # ---- configuration ---------------------------------------------------------------

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
        self._pick_host_agent()
        log.info("sFlow on %s: agent %s, collectors %s, 1:%d, polling %ds", bridge,
                 agent.agent_address, ", ".join(settings.collectors), settings.sampling,
                 settings.polling)

    def forget(self, bridge: str) -> None:
        """Stop a bridge's agent (before its datapath goes away)."""
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
        st = self.bridges[bridge].dp.stats()
        return {"agent_address": agent.agent_address, "sub_agent_id": agent.sub_agent_id,
                "host_structures": agent.host, **agent.counters,
                "samples_queued": st["sflow_samples"], "samples_lost": st["sflow_drops"]}

    # ---- data -----------------------------------------------------------------------

    def on_sample(self, bridge: str, u: DpUpcall) -> None:
        """A flow sample the daemon's upcall reader took from a bridge's queue."""
        agent = self.agents.get(bridge)
        if agent is None:
            self.unclaimed_samples += 1       # sampling was just turned off
            return
        agent.on_sample(u)

    def tick(self) -> None:
        """Once a second (the daemon's tick)."""
        now = time.monotonic()
        for name, agent in list(self.agents.items()):
            try:
                agent.tick(now)
            except Exception:                 # one bad bridge must not stop the rest
                log.exception("sFlow tick on %s", name)

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
