"""A MAC learning switch as an os-ken application (OpenFlow 1.3), in the
manner of os-ken's simple_switch_13 example: a table-miss flow sends every
unknown frame to the controller; the controller learns source MAC -> in_port
and, once the destination is known, installs an in_port/eth_src/eth_dst flow
that outputs to the learned port, then forwards the frame with a packet-out.

For the tests it keeps a small JSON status file (path in the environment
variable OSKEN_LS_STATE, rewritten after every event) with counters that a
test can assert on:

    {"switches": {"<dpid>": {...}}, "packet_ins": N, "flows_installed": N,
     "reasons": {"no_match": N, ...}, "roles": [{"role": ..., "generation_id": ...}],
     "errors": [...]}

With OSKEN_LS_ROLE=master|slave|equal (and OSKEN_LS_GENERATION=N) it sends
a ROLE_REQUEST on connect and records the ROLE_REPLY.
"""

from __future__ import annotations

import json
import os
import tempfile

from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import CONFIG_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from os_ken.lib.packet import ether_types, ethernet, packet
from os_ken.ofproto import ofproto_v1_3

COOKIE = 0x05C0FFEE          # every flow this app installs carries it
FLOW_PRIORITY = 10
ROLES = {"master": "OFPCR_ROLE_MASTER", "slave": "OFPCR_ROLE_SLAVE",
         "equal": "OFPCR_ROLE_EQUAL", "nochange": "OFPCR_ROLE_NOCHANGE"}


class LearningSwitch(app_manager.OSKenApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.mac_to_port: dict[int, dict[str, int]] = {}
        self.state_path = os.environ.get("OSKEN_LS_STATE")
        self.state = {"switches": {}, "packet_ins": 0, "flows_installed": 0,
                      "reasons": {}, "roles": [], "errors": []}
        self._save()

    # --- status file -------------------------------------------------------------
    def _save(self) -> None:
        if not self.state_path:
            return
        # write-then-rename: a reader never sees a half-written file
        d = os.path.dirname(self.state_path) or "."
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".ls")
        with os.fdopen(fd, "w") as f:
            json.dump(self.state, f)
        os.replace(tmp, self.state_path)

    # --- handshake -----------------------------------------------------------------
    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def switch_features(self, ev) -> None:
        dp = ev.msg.datapath
        ofp, parser = dp.ofproto, dp.ofproto_parser
        self.state["switches"][str(dp.id)] = {"n_tables": ev.msg.n_tables,
                                              "capabilities": ev.msg.capabilities}
        role = os.environ.get("OSKEN_LS_ROLE")
        if role:
            gen = int(os.environ.get("OSKEN_LS_GENERATION", "0"))
            dp.send_msg(parser.OFPRoleRequest(dp, getattr(ofp, ROLES[role]), gen))
        # table-miss: everything unknown goes to us, whole (no buffering)
        self.add_flow(dp, 0, parser.OFPMatch(),
                      [parser.OFPActionOutput(ofp.OFPP_CONTROLLER, ofp.OFPCML_NO_BUFFER)])
        self._save()

    def add_flow(self, dp, priority: int, match, actions) -> None:
        ofp, parser = dp.ofproto, dp.ofproto_parser
        inst = [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions)]
        dp.send_msg(parser.OFPFlowMod(datapath=dp, cookie=COOKIE, priority=priority,
                                      match=match, instructions=inst))
        self.state["flows_installed"] += 1

    # --- learning ------------------------------------------------------------------
    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def packet_in(self, ev) -> None:
        msg = ev.msg
        dp = msg.datapath
        ofp, parser = dp.ofproto, dp.ofproto_parser
        self.state["packet_ins"] += 1
        reason = {ofp.OFPR_NO_MATCH: "no_match", ofp.OFPR_ACTION: "action",
                  ofp.OFPR_INVALID_TTL: "invalid_ttl"}.get(msg.reason, str(msg.reason))
        self.state["reasons"][reason] = self.state["reasons"].get(reason, 0) + 1
        in_port = msg.match["in_port"]
        eth = packet.Packet(msg.data).get_protocols(ethernet.ethernet)
        if not eth or eth[0].ethertype == ether_types.ETH_TYPE_LLDP:
            self._save()
            return
        src, dst = eth[0].src, eth[0].dst
        table = self.mac_to_port.setdefault(dp.id, {})
        table[src] = in_port
        out_port = table.get(dst, ofp.OFPP_FLOOD)
        actions = [parser.OFPActionOutput(out_port)]
        if out_port != ofp.OFPP_FLOOD:
            self.add_flow(dp, FLOW_PRIORITY,
                          parser.OFPMatch(in_port=in_port, eth_src=src, eth_dst=dst), actions)
        data = msg.data if msg.buffer_id == ofp.OFP_NO_BUFFER else None
        dp.send_msg(parser.OFPPacketOut(datapath=dp, buffer_id=msg.buffer_id,
                                        in_port=in_port, actions=actions, data=data))
        self._save()

    # --- roles and errors ---------------------------------------------------------
    @set_ev_cls(ofp_event.EventOFPRoleReply, MAIN_DISPATCHER)
    def role_reply(self, ev) -> None:
        names = {v: k for k, v in ((n, getattr(ev.msg.datapath.ofproto, c))
                                   for n, c in ROLES.items())}
        self.state["roles"].append({"role": names.get(ev.msg.role, ev.msg.role),
                                    "generation_id": ev.msg.generation_id})
        self._save()

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def error(self, ev) -> None:
        self.state["errors"].append({"type": ev.msg.type, "code": ev.msg.code})
        self._save()
