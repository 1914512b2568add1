"""What the switch does with OpenFlow 1.3 messages: one `OFSwitch` per bridge.

The wire codec (`wire`, `messages`) turns bytes into message objects and the
channel (`channel`, `connmgr`) moves them; this module is the behaviour in
between.  It calls the same `Bridge` methods as vswitchctl does, so a flow
added by a controller and one added from the command line are the same thing.

Per connection it keeps what OpenFlow makes per connection: role, the async
message masks (SET_ASYNC) and the switch config (miss_send_len, fragment
handling).  Switch-wide state:

- packet buffers: a ring of `N_BUFFERS` frames sent to controllers with a
  buffer id; PACKET_OUT / FLOW_MOD may name one (once);
- the role generation id (ROLE_REQUEST stale check);
- fail mode: with controllers configured, a `standalone` bridge that has
  had no controller connection for one probe interval "fails open": it adds
  a catch-all NORMAL rule at the highest priority in table 0 (cookie
  `FAIL_OPEN_COOKIE`, hidden from controllers, shown by vswitchctl), and
  removes it when a controller connects.  A `secure` bridge keeps its flows,
  and packets sent to an absent controller are dropped (counted).

Every request is handled to the end before the next one is read, so BARRIER
is answered at once: everything before it is done.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import struct
import time
from dataclasses import dataclass, field

from vswitch import ofp
from vswitch.bridge import Bridge, BridgeError
from vswitch.datapath import DatapathError, DpUpcall
from vswitch.flowtable import validate_match
from vswitch.ofp import OFError
from vswitch.ofproto import messages as m
from vswitch.ofproto import wire
from vswitch.ofproto.channel import Channel
from vswitch.ofproto.connmgr import Target
from vswitch.ofproto.groupsyntax import GroupSpec, MeterSpec

log = logging.getLogger("vswitchd.ofp")

N_BUFFERS = 256
FAIL_OPEN_COOKIE = 0xF0F0F0F0F0F0F0F0
SW_DESC = "vswitch 0.1.0"
OFPP_MAX = ofp.OFPP_MAX
NO_BUFFER = m.OFP_NO_BUFFER
OFPC_CAPABILITIES = (m.OFPC_FLOW_STATS | m.OFPC_TABLE_STATS | m.OFPC_PORT_STATS
                     | m.OFPC_GROUP_STATS | m.OFPC_QUEUE_STATS)
# Async defaults (OpenFlow 1.3.5 A.3.10 / Open vSwitch): (master or equal, slave).
ASYNC_DEFAULT = {"packet_in": (0b011, 0), "port_status": (0b111, 0b111),
                 "flow_removed": (0b1111, 0)}
ASYNC_SERVICE = {"packet_in": (0, 0), "port_status": (0, 0), "flow_removed": (0, 0)}
# Messages that change the switch, refused to a slave (OFPBRC_IS_SLAVE).
MODIFY_MESSAGES = (m.PacketOut, m.FlowMod, m.GroupMod, m.PortMod, m.TableMod, m.MeterMod)
# What set_field may write (the core's settable() in pipeline.c).
SETTABLE_FIELDS = frozenset((
    "eth_dst", "eth_src", "vlan_vid", "vlan_pcp", "ip_dscp", "ip_ecn", "ipv4_src", "ipv4_dst",
    "tcp_src", "tcp_dst", "udp_src", "udp_dst", "sctp_src", "sctp_dst", "icmpv4_type",
    "icmpv4_code", "arp_op", "arp_spa", "arp_tpa", "arp_sha", "arp_tha", "ipv6_src",
    "ipv6_dst", "ipv6_flabel", "icmpv6_type", "icmpv6_code", "ipv6_nd_target", "ipv6_nd_sll",
    "ipv6_nd_tll", "tunnel_id", "tun_ipv4_src", "tun_ipv4_dst"))
_SPEED_BITS = {10: 1 << 1, 100: 1 << 3, 1000: 1 << 5, 10000: 1 << 6, 40000: 1 << 7,
               100000: 1 << 8, 1000000: 1 << 9}


@dataclass
class ConnState:
    """What OpenFlow keeps per connection."""

    channel: Channel
    service: bool                              # accepted on a ptcp:/punix: listener
    role: int = m.OFPCR_ROLE_EQUAL
    masks: dict = field(default_factory=lambda: dict(ASYNC_DEFAULT))
    miss_send_len: int = 128
    config_flags: int = m.OFPC_FRAG_NORMAL

    def wants(self, kind: str, reason: int) -> bool:
        mask = self.masks[kind][1 if self.role == m.OFPCR_ROLE_SLAVE else 0]
        return bool(mask & (1 << reason))


@dataclass
class OFCounters:
    packet_ins: int = 0
    packet_in_no_controller: int = 0    # upcalls with no connection that wants them
    packet_outs: int = 0
    flow_mods: int = 0
    errors: int = 0
    fail_open: bool = False
    fail_open_engaged: int = 0


class OFSwitch:
    def __init__(self, bridge: Bridge, datapath_id: int) -> None:
        self.bridge = bridge
        self.datapath_id = datapath_id
        self.conns: dict[Channel, ConnState] = {}
        self.counters = OFCounters()
        self.generation_id: int | None = None
        self.buffers: list[tuple[int, int, bytes] | None] = [None] * N_BUFFERS
        self._next_buffer = 0
        self.port_config: dict[int, int] = {}   # OFPPC_* bits set by PORT_MOD
        self.started = time.monotonic()
        self._handlers = {
            m.FeaturesRequest: self._features, m.GetConfigRequest: self._get_config,
            m.SetConfig: self._set_config, m.Experimenter: self._experimenter,
            m.BarrierRequest: lambda st, msg: m.BarrierReply(xid=msg.xid),   # see Channel
            m.FlowMod: self._flow_mod, m.GroupMod: self._group_mod,
            m.MeterMod: self._meter_mod, m.PortMod: self._port_mod,
            m.TableMod: self._table_mod, m.PacketOut: self._packet_out,
            m.RoleRequest: self._role, m.GetAsyncRequest: self._get_async,
            m.SetAsync: self._set_async, m.QueueGetConfigRequest: self._queue_config,
            m.DescRequest: self._desc, m.FlowStatsRequest: self._flow_stats,
            m.AggregateStatsRequest: self._aggregate, m.TableStatsRequest: self._table_stats,
            m.PortStatsRequest: self._port_stats, m.QueueStatsRequest: self._queue_stats,
            m.GroupStatsRequest: self._group_stats, m.GroupDescRequest: self._group_desc,
            m.GroupFeaturesRequest: self._group_features,
            m.MeterStatsRequest: self._meter_stats, m.MeterConfigRequest: self._meter_config,
            m.MeterFeaturesRequest: self._meter_features,
            m.TableFeaturesRequest: self._table_features, m.PortDescRequest: self._port_desc,
        }

    # --- connections (called by the ConnectionManager) ------------------------------------

    def channel_opened(self, ch: Channel, target: Target) -> None:
        service = not target.active
        self.conns[ch] = ConnState(ch, service,
                                   masks=dict(ASYNC_SERVICE if service else ASYNC_DEFAULT))

    def channel_closed(self, ch: Channel) -> None:
        self.conns.pop(ch, None)

    def on_message(self, ch: Channel, msg) -> None:
        st = self.conns.get(ch)
        if st is None:
            return
        if st.role == m.OFPCR_ROLE_SLAVE and isinstance(msg, MODIFY_MESSAGES):
            raise OFError(m.OFPET_BAD_REQUEST, m.OFPBRC_IS_SLAVE, "slave role")
        fn = self._handlers.get(type(msg))
        if fn is None:          # a reply or async message sent to the switch
            raise OFError(m.OFPET_BAD_REQUEST, m.OFPBRC_BAD_TYPE,
                          f"{type(msg).__name__} is not a request")
        try:
            reply = fn(st, msg)
        except OFError:
            self.counters.errors += 1
            raise
        except (BridgeError, DatapathError, ValueError) as e:
            # The core validates with OpenFlow codes; what slips past as a
            # plain error is still the request's fault, not the switch's.
            self.counters.errors += 1
            raise OFError(m.OFPET_BAD_REQUEST, m.OFPBRC_EPERM, str(e)) from e
        if reply is not None:
            ch.send(reply)
        if isinstance(msg, (m.FlowMod, m.GroupMod)):     # deletes may have removed flows
            self.flush_removed()

    # --- fail mode -------------------------------------------------------------------------

    def fail_open_tick(self, seconds_without_controller: float, probe_interval: float,
                       has_controllers: bool) -> None:
        """Called about once a second by the daemon."""
        want = (self.bridge.fail_mode == "standalone" and has_controllers
                and seconds_without_controller >= max(probe_interval, 1.0))
        if want == self.counters.fail_open:
            return
        if want:
            self.bridge.pipeline.flow_mod(ofp.OFPFC_ADD, 0, 0xFFFF, ofp.Match(),
                                          [ofp.ApplyActions((ofp.Output(ofp.OFPP_NORMAL),))],
                                          cookie=FAIL_OPEN_COOKIE)
            self.counters.fail_open_engaged += 1
            log.warning("%s: no controller for %.0f s: failing open (NORMAL switching)",
                        self.bridge.name, seconds_without_controller)
        else:
            self.bridge.pipeline.flow_mod(ofp.OFPFC_DELETE_STRICT, 0, 0xFFFF, ofp.Match(),
                                          cookie=FAIL_OPEN_COOKIE, cookie_mask=(1 << 64) - 1)
            log.info("%s: controller back: fail-open rule removed", self.bridge.name)
        self.counters.fail_open = want

    @staticmethod
    def _hidden(e: ofp.FlowEntry) -> bool:
        return e.cookie == FAIL_OPEN_COOKIE and e.table_id == 0 and e.priority == 0xFFFF

    # --- asynchronous messages -----------------------------------------------------------

    def _broadcast(self, kind: str, reason: int, msg) -> int:
        sent = 0
        for st in list(self.conns.values()):
            if st.channel.version is not None and st.wants(kind, reason):
                sent += st.channel.send_async(msg)
        return sent

    def upcalls(self, batch: list[DpUpcall]) -> None:
        """A batch of frames the pipeline sent to the controller: one write
        per connection for the whole batch."""
        channels = [st.channel for st in self.conns.values()]
        for ch in channels:
            ch.cork()
        try:
            for u in batch:
                self.upcall(u)
        finally:
            for ch in channels:
                ch.uncork()

    def upcall(self, u: DpUpcall) -> None:
        """A frame the pipeline sent to the controller."""
        if u.reason > ofp.OFPR_INVALID_TTL:
            return
        if self.port_config.get(u.in_port, 0) & m.OFPPC_NO_PACKET_IN:
            return
        max_len = u.max_len
        if u.reason == ofp.OFPR_INVALID_TTL:
            max_len = min((st.miss_send_len for st in self.conns.values()), default=128)
        buffer_id = NO_BUFFER
        data = u.data
        if max_len != ofp.OFPCML_NO_BUFFER and max_len < len(u.data):
            buffer_id = self._buffer(u.in_port, u.data)
            data = u.data[:max_len]
        fields = {"in_port": (u.in_port, 0xFFFFFFFF)}
        if u.metadata:
            fields["metadata"] = (u.metadata, (1 << 64) - 1)
        if u.tunnel_id:
            fields["tunnel_id"] = (u.tunnel_id, (1 << 64) - 1)
        msg = m.PacketIn(buffer_id=buffer_id, total_len=u.len, reason=u.reason,
                         table_id=u.table_id, cookie=u.cookie,
                         match=ofp.Match.from_fields(fields), data=data)
        if self._broadcast("packet_in", u.reason, msg):
            self.counters.packet_ins += 1
        else:
            self.counters.packet_in_no_controller += 1

    def flush_removed(self) -> None:
        for e in self.bridge.pipeline.drain_removed():
            if self._hidden(e):
                continue
            self._broadcast("flow_removed", e.reason, m.FlowRemoved(
                cookie=e.cookie, priority=e.priority, reason=e.reason, table_id=e.table_id,
                duration_sec=e.duration_ns // 10**9, duration_nsec=e.duration_ns % 10**9,
                idle_timeout=e.idle_timeout, hard_timeout=e.hard_timeout,
                packet_count=e.packet_count, byte_count=e.byte_count, match=e.match))

    def port_status(self, reason: int, port_no: int, desc: m.Port | None = None) -> None:
        """A port was added, deleted (desc = how it was) or changed."""
        if desc is None:
            desc = self.port_desc(port_no)
            if desc is None:
                return
        self._broadcast("port_status", reason, m.PortStatus(reason=reason, desc=desc))

    # --- buffers ---------------------------------------------------------------------

    def _buffer(self, in_port: int, frame: bytes) -> int:
        # Ids count up and the slot is id % N_BUFFERS, so an old id whose slot
        # was reused is refused instead of releasing somebody else's packet.
        buffer_id = self._next_buffer
        self._next_buffer = (self._next_buffer + 1) % NO_BUFFER
        self.buffers[buffer_id % N_BUFFERS] = (buffer_id, in_port, frame)
        return buffer_id

    def _take_buffer(self, buffer_id: int) -> tuple[int, bytes]:
        entry = self.buffers[buffer_id % N_BUFFERS]
        if entry is None or entry[0] != buffer_id:
            raise OFError(m.OFPET_BAD_REQUEST, m.OFPBRC_BUFFER_UNKNOWN,
                          f"no buffered packet {buffer_id:#x}")
        self.buffers[buffer_id % N_BUFFERS] = None
        return entry[1], entry[2]

    # --- switch configuration ------------------------------------------------------------

    def _features(self, st: ConnState, msg):
        return m.FeaturesReply(xid=msg.xid, datapath_id=self.datapath_id, n_buffers=N_BUFFERS,
                               n_tables=ofp.OFPTT_ALL, auxiliary_id=0,
                               capabilities=OFPC_CAPABILITIES)

    def _get_config(self, st: ConnState, msg):
        return m.GetConfigReply(xid=msg.xid, flags=st.config_flags,
                                miss_send_len=st.miss_send_len)

    def _set_config(self, st: ConnState, msg):
        if msg.flags & ~m.OFPC_FRAG_MASK or msg.flags & m.OFPC_FRAG_MASK != m.OFPC_FRAG_NORMAL:
            raise OFError(m.OFPET_SWITCH_CONFIG_FAILED, m.OFPSCFC_BAD_FLAGS,
                          "only fragment handling NORMAL is supported")
        st.config_flags = msg.flags
        st.miss_send_len = msg.miss_send_len
        return None

    def _experimenter(self, st: ConnState, msg):
        raise OFError(m.OFPET_BAD_REQUEST, m.OFPBRC_BAD_EXPERIMENTER,
                      f"no experimenter extensions (experimenter {msg.experimenter:#x})")

    def _role(self, st: ConnState, msg):
        role = msg.role
        if role not in (m.OFPCR_ROLE_NOCHANGE, m.OFPCR_ROLE_EQUAL, m.OFPCR_ROLE_MASTER,
                        m.OFPCR_ROLE_SLAVE):
            raise OFError(m.OFPET_ROLE_REQUEST_FAILED, m.OFPRRFC_BAD_ROLE, f"role {role}")
        if role in (m.OFPCR_ROLE_MASTER, m.OFPCR_ROLE_SLAVE):
            gen = msg.generation_id
            if self.generation_id is not None:
                diff = (gen - self.generation_id) & 0xFFFFFFFFFFFFFFFF
                if diff >= 1 << 63:              # (int64)(gen - cached) < 0
                    raise OFError(m.OFPET_ROLE_REQUEST_FAILED, m.OFPRRFC_STALE,
                                  "stale generation id")
            self.generation_id = gen
        if role == m.OFPCR_ROLE_MASTER:
            for other in self.conns.values():
                if other is not st and other.role == m.OFPCR_ROLE_MASTER:
                    other.role = m.OFPCR_ROLE_SLAVE
        if role != m.OFPCR_ROLE_NOCHANGE:
            st.role = role
        return m.RoleReply(xid=msg.xid, role=st.role,
                           generation_id=self.generation_id or 0)

    def _get_async(self, st: ConnState, msg):
        return m.GetAsyncReply(xid=msg.xid, packet_in_mask=st.masks["packet_in"],
                               port_status_mask=st.masks["port_status"],
                               flow_removed_mask=st.masks["flow_removed"])

    def _set_async(self, st: ConnState, msg):
        st.masks = {"packet_in": tuple(msg.packet_in_mask),
                    "port_status": tuple(msg.port_status_mask),
                    "flow_removed": tuple(msg.flow_removed_mask)}
        return None

    # --- modifications -------------------------------------------------------------------

    def _flow_mod(self, st: ConnState, msg: m.FlowMod):
        buffered = None
        if msg.buffer_id != NO_BUFFER and msg.command in (ofp.OFPFC_ADD, ofp.OFPFC_MODIFY,
                                                          ofp.OFPFC_MODIFY_STRICT):
            buffered = self._take_buffer(msg.buffer_id)
        self.bridge.pipeline.flow_mod(
            command=msg.command, table_id=msg.table_id, priority=msg.priority,
            match=msg.match, instructions=msg.instructions, cookie=msg.cookie,
            cookie_mask=msg.cookie_mask, idle_timeout=msg.idle_timeout,
            hard_timeout=msg.hard_timeout, flags=msg.flags, out_port=msg.out_port,
            out_group=msg.out_group)
        self.counters.flow_mods += 1
        if buffered is not None:
            in_port, frame = buffered
            self.bridge.dp.packet_out(in_port, [ofp.Output(ofp.OFPP_TABLE)], frame)
        return None

    def _group_mod(self, st: ConnState, msg: m.GroupMod):
        # the wire's command is 16 bits, the core's 8: unknown ones stop here
        if msg.command not in (ofp.OFPGC_ADD, ofp.OFPGC_MODIFY, ofp.OFPGC_DELETE):
            raise OFError(m.OFPET_GROUP_MOD_FAILED, m.OFPGMFC_BAD_COMMAND,
                          f"group mod command {msg.command}")
        self.bridge.apply_group_mod(msg.command, GroupSpec(msg.group_id, msg.type,
                                                           list(msg.buckets)))
        return None

    def _meter_mod(self, st: ConnState, msg: m.MeterMod):
        if msg.command not in (ofp.OFPMC_ADD, ofp.OFPMC_MODIFY, ofp.OFPMC_DELETE):
            raise OFError(m.OFPET_METER_MOD_FAILED, m.OFPMMFC_BAD_COMMAND,
                          f"meter mod command {msg.command}")
        self.bridge.apply_meter_mod(msg.command, MeterSpec(msg.meter_id, msg.flags,
                                                           list(msg.bands)))
        return None

    def _port_mod(self, st: ConnState, msg: m.PortMod):
        desc = self.port_desc(msg.port_no)
        if desc is None or msg.port_no > OFPP_MAX:
            raise OFError(m.OFPET_PORT_MOD_FAILED, m.OFPPMFC_BAD_PORT, f"port {msg.port_no}")
        if msg.hw_addr != desc.hw_addr:
            raise OFError(m.OFPET_PORT_MOD_FAILED, m.OFPPMFC_BAD_HW_ADDR,
                          "hw_addr does not match the port's")
        supported = m.OFPPC_PORT_DOWN | m.OFPPC_NO_PACKET_IN
        if msg.mask & ~supported:
            raise OFError(m.OFPET_PORT_MOD_FAILED, m.OFPPMFC_BAD_CONFIG,
                          "only PORT_DOWN and NO_PACKET_IN can be changed")
        old = self.port_config.get(msg.port_no, 0)
        new = (old & ~msg.mask) | (msg.config & msg.mask)
        if (old ^ new) & m.OFPPC_PORT_DOWN:
            self._set_admin_state(msg.port_no, not new & m.OFPPC_PORT_DOWN)
        self.port_config[msg.port_no] = new
        if old != new:
            self.port_status(m.OFPPR_MODIFY, msg.port_no)
        return None

    def _set_admin_state(self, port_no: int, up: bool) -> None:
        """PORT_DOWN takes the port's device down, as Open vSwitch does; a
        patch port, having no device, goes down in the datapath only."""
        info = self.bridge.dp.port_info(port_no)
        if not info.name or info.type == "patch":
            self.bridge.dp.set_port_link(port_no, up)
            return
        ifreq = struct.pack("16sH14x", info.name.encode()[:15], 0)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            flags = struct.unpack_from("16sH", fcntl.ioctl(s, 0x8913, ifreq))[1]  # SIOCGIFFLAGS
            flags = flags | 1 if up else flags & ~1                              # IFF_UP
            fcntl.ioctl(s, 0x8914, struct.pack("16sH14x", info.name.encode()[:15], flags))
        self.bridge.dp.set_port_link(port_no, up)

    def _table_mod(self, st: ConnState, msg: m.TableMod):
        if msg.table_id >= ofp.OFPTT_ALL and msg.table_id != ofp.OFPTT_ALL:
            raise OFError(m.OFPET_TABLE_MOD_FAILED, m.OFPTMFC_BAD_TABLE, f"table {msg.table_id}")
        if msg.config & ~m.OFPTC_DEPRECATED_MASK:
            raise OFError(m.OFPET_TABLE_MOD_FAILED, m.OFPTMFC_BAD_CONFIG,
                          f"table config {msg.config:#x}")
        return None       # 1.3 leaves only the deprecated bits: nothing to do

    def _packet_out(self, st: ConnState, msg: m.PacketOut):
        in_port = msg.in_port
        if not (in_port in (ofp.OFPP_CONTROLLER, ofp.OFPP_LOCAL, ofp.OFPP_ANY)
                or self.bridge.port_by_ofport(in_port) is not None):
            raise OFError(m.OFPET_BAD_REQUEST, m.OFPBRC_BAD_PORT, f"in_port {in_port}")
        data = msg.data
        if msg.buffer_id != NO_BUFFER:
            _port, data = self._take_buffer(msg.buffer_id)
        if in_port == ofp.OFPP_ANY:
            in_port = ofp.OFPP_CONTROLLER
        self.bridge.dp.packet_out(in_port, msg.actions, data)
        self.counters.packet_outs += 1
        return None

    def _queue_config(self, st: ConnState, msg):
        if msg.port != ofp.OFPP_ANY and self.port_desc(msg.port) is None:
            raise OFError(m.OFPET_QUEUE_OP_FAILED, m.OFPQOFC_BAD_PORT, f"port {msg.port}")
        return m.QueueGetConfigReply(xid=msg.xid, port=msg.port, queues=())

    # --- multipart -----------------------------------------------------------------------

    def _desc(self, st: ConnState, msg):
        return m.DescReply(xid=msg.xid, mfr_desc="vswitch project", hw_desc="vswitch",
                           sw_desc=SW_DESC, serial_num="None", dp_desc=self.bridge.name)

    def _flow_entries(self, msg) -> list[ofp.FlowEntry]:
        validate_match(msg.match)
        entries = self.bridge.pipeline.dump_flows(msg.table_id, msg.match, msg.out_port,
                                                  msg.out_group, msg.cookie, msg.cookie_mask)
        return [e for e in entries if not self._hidden(e)]

    def _flow_stats(self, st: ConnState, msg):
        flows = tuple(m.FlowStats(
            table_id=e.table_id, duration_sec=e.duration_ns // 10**9,
            duration_nsec=e.duration_ns % 10**9, priority=e.priority,
            idle_timeout=e.idle_timeout, hard_timeout=e.hard_timeout, flags=e.flags,
            cookie=e.cookie, packet_count=e.packet_count, byte_count=e.byte_count,
            match=e.match, instructions=tuple(e.instructions))
            for e in self._flow_entries(msg))
        return m.FlowStatsReply(xid=msg.xid, flows=flows)

    def _aggregate(self, st: ConnState, msg):
        if self.counters.fail_open:         # the hidden rule must not be counted
            entries = self._flow_entries(msg)
            packets, nbytes, n = (sum(e.packet_count for e in entries),
                                  sum(e.byte_count for e in entries), len(entries))
        else:
            validate_match(msg.match)
            packets, nbytes, n = self.bridge.pipeline.aggregate(
                msg.table_id, msg.match, msg.out_port, msg.out_group, msg.cookie,
                msg.cookie_mask)
        return m.AggregateStatsReply(xid=msg.xid, packet_count=packets, byte_count=nbytes,
                                     flow_count=n)

    def _table_stats(self, st: ConnState, msg):
        stats = []
        for t in range(ofp.OFPTT_ALL):
            s = self.bridge.pipeline.table_stats(t)
            active = s.active_count - (t == 0 and self.counters.fail_open)
            stats.append(m.TableStats(table_id=t, active_count=active,
                                      lookup_count=s.lookup_count,
                                      matched_count=s.matched_count))
        return m.TableStatsReply(xid=msg.xid, stats=tuple(stats))

    def _port_numbers(self, port_no: int) -> list[int]:
        numbers = self.bridge.dp.port_numbers()
        if port_no == ofp.OFPP_ANY:
            return numbers
        if port_no not in numbers:
            raise OFError(m.OFPET_BAD_REQUEST, m.OFPBRC_BAD_PORT, f"port {port_no}")
        return [port_no]

    def _port_stats(self, st: ConnState, msg):
        now = time.monotonic() - self.started
        stats = []
        for n in self._port_numbers(msg.port_no):
            try:
                s = self.bridge.dp.port_stats(n)
            except DatapathError:
                continue
            stats.append(m.PortStats(
                port_no=n, rx_packets=s["rx_packets"], tx_packets=s["tx_packets"],
                rx_bytes=s["rx_bytes"], tx_bytes=s["tx_bytes"],
                rx_dropped=s.get("rx_dropped", 0), tx_dropped=s.get("tx_dropped", 0),
                rx_errors=s.get("rx_errors", 0), tx_errors=s.get("tx_errors", 0),
                rx_frame_err=0, rx_over_err=0, rx_crc_err=0, collisions=0,
                duration_sec=int(now), duration_nsec=int(now % 1 * 1e9)))
        return m.PortStatsReply(xid=msg.xid, stats=tuple(stats))

    def _queue_stats(self, st: ConnState, msg):
        self._port_numbers(msg.port_no)
        if msg.queue_id != m.OFPQ_ALL:
            raise OFError(m.OFPET_QUEUE_OP_FAILED, m.OFPQOFC_BAD_QUEUE,
                          f"no queue {msg.queue_id} (no queues are configured)")
        return m.QueueStatsReply(xid=msg.xid, stats=())

    def _group_stats(self, st: ConnState, msg):
        out = []
        for g in self.bridge.pipeline.group_stats():
            if msg.group_id not in (m.OFPG_ALL, g["group_id"]):
                continue
            d = g["duration_ns"]
            out.append(m.GroupStats(group_id=g["group_id"], ref_count=g["ref_count"],
                                    packet_count=g["packet_count"],
                                    byte_count=g["byte_count"], duration_sec=d // 10**9,
                                    duration_nsec=d % 10**9,
                                    bucket_stats=tuple(tuple(b) for b in g["buckets"])))
        return m.GroupStatsReply(xid=msg.xid, stats=tuple(out))

    def _group_desc(self, st: ConnState, msg):
        return m.GroupDescReply(xid=msg.xid, groups=tuple(
            m.GroupDesc(type=s.type, group_id=gid, buckets=tuple(s.buckets))
            for gid, s in sorted(self.bridge.groups.items())))

    def _group_features(self, st: ConnState, msg):
        types = sum(1 << t for t in (ofp.OFPGT_ALL, ofp.OFPGT_SELECT, ofp.OFPGT_INDIRECT,
                                     ofp.OFPGT_FF))
        actions = sum(1 << a for a in (m.OFPAT_OUTPUT, m.OFPAT_PUSH_VLAN, m.OFPAT_POP_VLAN,
                                       m.OFPAT_SET_QUEUE, m.OFPAT_GROUP, m.OFPAT_SET_NW_TTL,
                                       m.OFPAT_DEC_NW_TTL, m.OFPAT_SET_FIELD))
        return m.GroupFeaturesReply(xid=msg.xid, types=types,
                                    capabilities=m.OFPGFC_SELECT_WEIGHT
                                    | m.OFPGFC_SELECT_LIVENESS,
                                    max_groups=(65535,) * 4, actions=(actions,) * 4)

    def _meter_stats(self, st: ConnState, msg):
        out = []
        for s in self.bridge.pipeline.meter_stats():
            if msg.meter_id not in (m.OFPM_ALL, s["meter_id"]):
                continue
            d = s["duration_ns"]
            out.append(m.MeterStats(
                meter_id=s["meter_id"], flow_count=s["flow_count"],
                packet_in_count=s["packet_in_count"], byte_in_count=s["byte_in_count"],
                duration_sec=d // 10**9, duration_nsec=d % 10**9,
                band_stats=tuple((b["packet_count"], b["byte_count"]) for b in s["bands"])))
        return m.MeterStatsReply(xid=msg.xid, stats=tuple(out))

    def _meter_config(self, st: ConnState, msg):
        return m.MeterConfigReply(xid=msg.xid, configs=tuple(
            m.MeterConfig(flags=s.flags, meter_id=mid, bands=tuple(s.bands))
            for mid, s in sorted(self.bridge.meters.items())
            if msg.meter_id in (m.OFPM_ALL, mid)))

    def _meter_features(self, st: ConnState, msg):
        return m.MeterFeaturesReply(
            xid=msg.xid, max_meter=65535,
            band_types=(1 << ofp.OFPMBT_DROP) | (1 << ofp.OFPMBT_DSCP_REMARK),
            capabilities=ofp.OFPMF_KBPS | ofp.OFPMF_PKTPS | ofp.OFPMF_BURST | ofp.OFPMF_STATS,
            max_bands=8, max_color=0)

    def _table_features(self, st: ConnState, msg):
        if msg.tables:
            raise OFError(m.OFPET_TABLE_FEATURES_FAILED, m.OFPTFFC_EPERM,
                          "table features cannot be changed")
        return m.TableFeaturesReply(xid=msg.xid, tables=tuple(
            table_features(t) for t in range(ofp.OFPTT_ALL)))

    def port_desc(self, port_no: int) -> m.Port | None:
        """The port as PORT_DESC and PORT_STATUS describe it (None: no such port)."""
        try:
            info = self.bridge.dp.port_info(port_no)
        except DatapathError:
            return None
        name = info.name or self.bridge.port_name(port_no)
        speed = _sysfs_int(name, "speed")
        curr = _SPEED_BITS.get(speed, m.OFPPF_OTHER) | m.OFPPF_COPPER if speed > 0 else 0
        state = (m.OFPPS_LIVE if info.link_up else m.OFPPS_LINK_DOWN)
        return m.Port(port_no=port_no, hw_addr=_mac(info.name), name=name[:15],
                      config=self.port_config.get(port_no, 0), state=state, curr=curr,
                      advertised=0, supported=0, peer=0,
                      curr_speed=max(speed, 0) * 1000, max_speed=max(speed, 0) * 1000)

    def _port_desc(self, st: ConnState, msg):
        ports = [self.port_desc(n) for n in self.bridge.dp.port_numbers()]
        return m.PortDescReply(xid=msg.xid, ports=tuple(p for p in ports if p is not None))


def _sysfs_int(ifname: str, attr: str) -> int:
    try:
        with open(f"/sys/class/net/{ifname}/{attr}") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return -1


def _mac(ifname: str) -> bytes:
    if not ifname or "/" in ifname:
        return bytes(6)
    try:
        with open(os.path.join("/sys/class/net", ifname, "address")) as f:
            return bytes.fromhex(f.read().strip().replace(":", ""))[:6].ljust(6, b"\0")
    except (OSError, ValueError):
        return bytes(6)


def datapath_id_for(configured: str | None, bridge_name: str) -> int:
    """The configured datapath id, else the bridge's MAC address (as OVS)."""
    if configured:
        return int(configured, 16)
    return int.from_bytes(_mac(bridge_name), "big")


def table_features(table_id: int) -> m.TableFeatures:
    """What every table of the pipeline supports (all tables are alike)."""
    instructions = (m.OFPIT_GOTO_TABLE, m.OFPIT_WRITE_METADATA, m.OFPIT_WRITE_ACTIONS,
                    m.OFPIT_APPLY_ACTIONS, m.OFPIT_CLEAR_ACTIONS, m.OFPIT_METER)
    actions = (m.OFPAT_OUTPUT, m.OFPAT_GROUP, m.OFPAT_SET_QUEUE, m.OFPAT_PUSH_VLAN,
               m.OFPAT_POP_VLAN, m.OFPAT_SET_NW_TTL, m.OFPAT_DEC_NW_TTL, m.OFPAT_SET_FIELD)
    fields = [f for f in ofp.FIELDS.values() if f.name in wire.OXM_FIELDS]
    match = tuple(_oxm_id(f.name, f.maskable) for f in fields)
    wildcards = tuple(_oxm_id(f.name) for f in fields)
    setfield = tuple(_oxm_id(f.name) for f in fields if f.name in SETTABLE_FIELDS)
    nxt = tuple(range(table_id + 1, ofp.OFPTT_ALL))
    P = m.TableFeatureProp
    props = (P(type=m.OFPTFPT_INSTRUCTIONS, ids=instructions),
             P(type=m.OFPTFPT_INSTRUCTIONS_MISS, ids=instructions),
             P(type=m.OFPTFPT_NEXT_TABLES, ids=nxt),
             P(type=m.OFPTFPT_NEXT_TABLES_MISS, ids=nxt),
             P(type=m.OFPTFPT_WRITE_ACTIONS, ids=actions),
             P(type=m.OFPTFPT_WRITE_ACTIONS_MISS, ids=actions),
             P(type=m.OFPTFPT_APPLY_ACTIONS, ids=actions),
             P(type=m.OFPTFPT_APPLY_ACTIONS_MISS, ids=actions),
             P(type=m.OFPTFPT_MATCH, ids=match),
             P(type=m.OFPTFPT_WILDCARDS, ids=wildcards),
             P(type=m.OFPTFPT_WRITE_SETFIELD, ids=setfield),
             P(type=m.OFPTFPT_WRITE_SETFIELD_MISS, ids=setfield),
             P(type=m.OFPTFPT_APPLY_SETFIELD, ids=setfield),
             P(type=m.OFPTFPT_APPLY_SETFIELD_MISS, ids=setfield))
    return m.TableFeatures(table_id=table_id, name=f"table{table_id}",
                           metadata_match=(1 << 64) - 1, metadata_write=(1 << 64) - 1,
                           config=0, max_entries=1_000_000, properties=props)


def _oxm_id(name: str, masked: bool = False) -> int | tuple[int, int]:
    """A field as table features list it: its OXM header, with the
    experimenter id for an experimenter OXM."""
    header = wire.oxm_header(name, masked)
    exp = wire.OXM_FIELDS[name][2]
    return header if exp is None else (header, exp)
