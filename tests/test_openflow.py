"""The OpenFlow 1.3 channel of a real vswitchd, driven by a raw client.

The client here speaks the wire format through vswitch's codec; the
interop suites (test_ofctl_interop.py, test_osken.py) use Open vSwitch's
ovs-ofctl and os-ken instead.  These tests check what those tools do not
exercise: version negotiation, errors with the offending bytes, broken
framing, roles and generation ids, async masks, buffers, reply splitting,
the active connection with reconnect, TLS, and the fail modes.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time

import pytest
from nettopo import Sniffer, ping, send_raw
from test_daemon import Env, wait_for

from vswitch import ofp
from vswitch.ofproto import messages as m
from vswitch.ofproto import wire

HEADER = struct.Struct("!BBHI")


class OFClient:
    """A blocking OpenFlow 1.3 peer on one socket."""

    def __init__(self, sock: socket.socket, hello: bool = True) -> None:
        self.s = sock
        self.s.settimeout(5.0)
        self.xid = 100
        self.pending: list = []          # async messages read while waiting for replies
        if hello:
            self.send(m.Hello())
            got = self.recv()
            assert isinstance(got, m.Hello) and 4 in got.versions

    @classmethod
    def tcp(cls, port: int, **kw) -> OFClient:
        return cls(socket.create_connection(("127.0.0.1", port), timeout=5.0), **kw)

    def close(self) -> None:
        self.s.close()

    def send(self, msg) -> int:
        self.s.sendall(wire.encode(msg))
        return msg.xid

    def send_raw(self, data: bytes) -> None:
        self.s.sendall(data)

    def _exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.s.recv(n - len(buf))
            if not chunk:
                raise EOFError("connection closed")
            buf += chunk
        return buf

    def recv_raw(self) -> bytes:
        head = self._exact(8)
        length = HEADER.unpack(head)[2]
        return head + self._exact(length - 8)

    def recv(self):
        return wire.decode(self.recv_raw())

    def next_xid(self) -> int:
        self.xid += 1
        return self.xid

    def request(self, msg, cls=None) -> list:
        """Send msg (its xid is set here) and collect the reply messages
        with that xid (all parts of a multipart reply)."""
        xid = self.next_xid()
        msg = type(msg)(**{**vars_of(msg), "xid": xid})
        self.send(msg)
        out = []
        while True:
            r = self.recv()
            if getattr(r, "xid", None) != xid or isinstance(r, (m.PacketIn, m.PortStatus,
                                                                m.FlowRemoved)):
                self.pending.append(r)
                continue
            out.append(r)
            if isinstance(r, m.Error) or not getattr(r, "flags", 0) & m.OFPMPF_REPLY_MORE:
                break
        if cls is not None:
            assert all(isinstance(r, cls) for r in out), out
        return out

    def one(self, msg, cls=None):
        (r,) = self.request(msg, cls)
        return r

    def barrier(self) -> None:
        self.one(m.BarrierRequest(), m.BarrierReply)

    def wait_for(self, cls, timeout: float = 5.0, pred=lambda msg: True):
        """The next message of class cls (others are kept in pending)."""
        for i, msg in enumerate(self.pending):
            if isinstance(msg, cls) and pred(msg):
                return self.pending.pop(i)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                msg = self.recv()
            except TimeoutError:
                break
            finally:
                self.s.settimeout(5.0)
            if isinstance(msg, cls) and pred(msg):
                return msg
            if isinstance(msg, m.EchoRequest):
                self.send(m.EchoReply(xid=msg.xid, data=msg.data))
                continue
            self.pending.append(msg)
        raise AssertionError(f"no {cls.__name__} within {timeout} s (got {self.pending})")


def vars_of(msg) -> dict:
    return {f: getattr(msg, f) for f in msg.__dataclass_fields__}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(e: Env, br: str) -> list[dict]:
    return e.json("controller-status", br)["controllers"]


@pytest.fixture
def env():
    e = Env()
    try:
        e.d.start()
        yield e
    finally:
        e.close()


@pytest.fixture
def listener(env):
    """A secure bridge with a ptcp listener; yields (env, bridge, port)."""
    br = env.add_br("b", "--fail-mode", "secure")
    port = free_port()
    env.ctl("set-controller", br, f"ptcp:{port}")
    assert wait_for(lambda: status(env, br)[0]["state"] == "listening", 5), status(env, br)
    return env, br, port


def flow_mod(**kw) -> m.FlowMod:
    base = dict(cookie=0, cookie_mask=0, table_id=0, command=ofp.OFPFC_ADD, idle_timeout=0,
                hard_timeout=0, priority=0x8000, buffer_id=m.OFP_NO_BUFFER,
                out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY, flags=0, match=ofp.Match(),
                instructions=())
    base.update(kw)
    return m.FlowMod(**base)


def flow_stats_request(**kw) -> m.FlowStatsRequest:
    base = dict(table_id=ofp.OFPTT_ALL, out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
                cookie=0, cookie_mask=0, match=ofp.Match())
    base.update(kw)
    return m.FlowStatsRequest(**base)


def all_flows(c: OFClient) -> list[m.FlowStats]:
    return [f for r in c.request(flow_stats_request(), m.FlowStatsReply) for f in r.flows]


def subscribe(c: OFClient, packet_in: int = 0b111, port_status: int = 0b111,
              flow_removed: int = 0b1111) -> None:
    """A ptcp connection is a service connection: no async messages until it asks."""
    c.send(m.SetAsync(packet_in_mask=(packet_in, 0), port_status_mask=(port_status, 0),
                      flow_removed_mask=(flow_removed, 0), xid=c.next_xid()))


def assert_alive(c: OFClient) -> None:
    assert c.one(m.EchoRequest(data=b"still there?"), m.EchoReply).data == b"still there?"


# --- handshake and framing ---------------------------------------------------------------

def test_hello_echo_features_desc(listener):
    e, br, port = listener
    c = OFClient.tcp(port)
    try:
        assert_alive(c)
        f = c.one(m.FeaturesRequest(), m.FeaturesReply)
        mac = open(f"/sys/class/net/{br}/address").read().strip()
        assert f.datapath_id == int(mac.replace(":", ""), 16)
        assert f.n_tables == 255 and f.n_buffers == 256
        d = c.one(m.DescRequest(), m.DescReply)
        assert d.dp_desc == br and d.sw_desc.startswith("vswitch")
        cfg = c.one(m.GetConfigRequest(), m.GetConfigReply)
        assert cfg.miss_send_len == 128
        c.send(m.SetConfig(flags=0, miss_send_len=200, xid=7))
        assert c.one(m.GetConfigRequest(), m.GetConfigReply).miss_send_len == 200
        err = c.one(m.SetConfig(flags=m.OFPC_FRAG_REASM, miss_send_len=128), m.Error)
        assert (err.type, err.code) == (m.OFPET_SWITCH_CONFIG_FAILED, m.OFPSCFC_BAD_FLAGS)
    finally:
        c.close()


def test_version_negotiation_fails_cleanly(listener):
    e, br, port = listener
    c = OFClient.tcp(port, hello=False)
    try:
        # An OpenFlow 1.0-only peer: we answer HELLO, then HELLO_FAILED, then close.
        c.send_raw(HEADER.pack(1, 0, 8, 1))
        assert isinstance(c.recv(), m.Hello)
        err = c.recv()
        assert (err.type, err.code) == (m.OFPET_HELLO_FAILED, m.OFPHFC_INCOMPATIBLE)
        with pytest.raises((EOFError, ConnectionResetError)):
            c.recv_raw()
    finally:
        c.close()
    c = OFClient.tcp(port, hello=False)
    try:                                 # a bitmap offering 1.0 and 1.5, but not 1.3
        body = struct.pack("!HHI", 1, 8, (1 << 1) | (1 << 6))
        c.send_raw(HEADER.pack(6, 0, 8 + len(body), 2) + body)
        assert isinstance(c.recv(), m.Hello)
        assert c.recv().type == m.OFPET_HELLO_FAILED
    finally:
        c.close()
    c = OFClient.tcp(port, hello=False)
    try:                                 # a newer peer without a bitmap settles on 1.3
        c.send_raw(HEADER.pack(6, 0, 8, 3))
        assert isinstance(c.recv(), m.Hello)
        assert_alive(c)
    finally:
        c.close()


def test_errors_carry_the_request_and_keep_the_connection(listener):
    e, br, port = listener
    c = OFClient.tcp(port)
    try:
        # A message type that does not exist.
        bad = HEADER.pack(4, 99, 12, 4242) + b"abcd"
        c.send_raw(bad)
        err = c.recv()
        assert (err.type, err.code, err.xid) == (m.OFPET_BAD_REQUEST, m.OFPBRC_BAD_TYPE, 4242)
        assert err.data == bad
        # Wrong version after negotiation.
        c.send_raw(HEADER.pack(1, 2, 8, 5))
        err = c.recv()
        assert (err.type, err.code) == (m.OFPET_BAD_REQUEST, m.OFPBRC_BAD_VERSION)
        # A flow mod the core refuses: goto_table backwards.
        err = c.one(flow_mod(table_id=3, instructions=(ofp.GotoTable(1),)), m.Error)
        assert (err.type, err.code) == (m.OFPET_BAD_INSTRUCTION, m.OFPBIC_BAD_TABLE_ID)
        # Prerequisite missing: tcp_dst without ip_proto.
        err = c.one(flow_mod(match=ofp.Match(eth_type=0x800, tcp_dst=80)), m.Error)
        assert (err.type, err.code) == (m.OFPET_BAD_MATCH, m.OFPBMC_BAD_PREREQ)
        raw = wire.encode(flow_mod(match=ofp.Match(eth_type=0x800, tcp_dst=80), xid=77))
        c.send_raw(raw)
        err = c.recv()
        assert err.data == raw                       # all of it, as Open vSwitch sends
        # An experimenter message.
        err = c.one(m.Experimenter(experimenter=0x2320, exp_type=1, data=b"x"), m.Error)
        assert (err.type, err.code) == (m.OFPET_BAD_REQUEST, m.OFPBRC_BAD_EXPERIMENTER)
        # A reply sent to the switch.
        err = c.one(m.BarrierReply(), m.Error)
        assert (err.type, err.code) == (m.OFPET_BAD_REQUEST, m.OFPBRC_BAD_TYPE)
        # A truncated flow mod (length field says less than the fixed part).
        good = wire.encode(flow_mod(xid=9))
        cut = good[:2] + struct.pack("!H", 40) + good[4:40]
        c.send_raw(cut)
        err = c.recv()
        assert err.type == m.OFPET_BAD_REQUEST and err.code == m.OFPBRC_BAD_LEN
        assert_alive(c)
        assert all_flows(c) == []            # nothing of the refused requests was applied
    finally:
        c.close()


def test_broken_framing_closes_only_that_connection(listener):
    e, br, port = listener
    other = OFClient.tcp(port)
    c = OFClient.tcp(port)
    try:
        c.send_raw(HEADER.pack(4, 2, 4, 1))       # length 4 < header size
        with pytest.raises((EOFError, ConnectionResetError)):
            c.recv_raw()
        assert_alive(other)
        assert "bad framing" in e.d.log()
        e.ctl("show")
    finally:
        c.close()
        other.close()


# --- flows, groups, meters --------------------------------------------------------------

def test_flow_mod_and_stats_round_trip(listener):
    e, br, port = listener
    c = OFClient.tcp(port)
    try:
        subscribe(c)
        match = ofp.Match(in_port=1, eth_type=0x800, ip_proto=6, ipv4_dst="10.1.0.0/16",
                          tcp_dst=443)
        insts = (ofp.apply(ofp.SetField("ipv4_dst", 0x0A010203), ofp.Output(2)),
                 ofp.WriteMetadata(5, 0xFF), ofp.GotoTable(3))
        c.send(flow_mod(table_id=1, priority=300, cookie=0xABC, idle_timeout=60,
                        hard_timeout=120, flags=ofp.OFPFF_SEND_FLOW_REM, match=match,
                        instructions=insts, xid=c.next_xid()))
        c.barrier()
        (f,) = all_flows(c)
        assert (f.table_id, f.priority, f.cookie, f.idle_timeout, f.hard_timeout, f.flags) == \
            (1, 300, 0xABC, 60, 120, ofp.OFPFF_SEND_FLOW_REM)
        assert f.match == match and tuple(f.instructions) == insts
        # vswitchctl sees the same rule: one Bridge behind both control paths.
        (line,) = [x["text"] for x in e.json("dump-flows", br)]
        assert "cookie=0xabc" in line and "table=1" in line and "tp_dst=443" in line \
            or "tcp_dst=443" in line
        agg = c.one(m.AggregateStatsRequest(**vars_of(flow_stats_request())),
                    m.AggregateStatsReply)
        assert agg.flow_count == 1
        # modify (non-strict) changes its actions; delete by cookie removes it.
        c.send(flow_mod(command=ofp.OFPFC_MODIFY, table_id=1, match=ofp.Match(in_port=1),
                        instructions=(ofp.apply(ofp.Output(3)),), xid=c.next_xid()))
        c.barrier()
        (f,) = all_flows(c)
        assert tuple(f.instructions) == (ofp.apply(ofp.Output(3)),)
        c.send(flow_mod(command=ofp.OFPFC_DELETE, table_id=ofp.OFPTT_ALL, cookie=0xABC,
                        cookie_mask=0xFFF, xid=c.next_xid()))
        removed = c.wait_for(m.FlowRemoved)
        assert removed.reason == ofp.OFPRR_DELETE and removed.cookie == 0xABC
        assert all_flows(c) == []
    finally:
        c.close()


def test_large_flow_stats_reply_is_split(listener):
    e, br, port = listener
    c = OFClient.tcp(port)
    try:
        n = 3000
        for i in range(n):
            c.send(flow_mod(priority=100, match=ofp.Match(eth_type=0x800, ipv4_src=i + 1),
                            instructions=(ofp.apply(ofp.Output(1)),), xid=i + 1))
        c.barrier()
        replies = c.request(flow_stats_request(), m.FlowStatsReply)
        assert len(replies) > 1
        assert all(r.flags & m.OFPMPF_REPLY_MORE for r in replies[:-1])
        assert not replies[-1].flags & m.OFPMPF_REPLY_MORE
        got = sorted(f.match.get("ipv4_src")[0] for r in replies for f in r.flows)
        assert got == list(range(1, n + 1))
        tables = c.request(m.TableStatsRequest(), m.TableStatsReply)
        t0 = [t for r in tables for t in r.stats if t.table_id == 0][0]
        assert t0.active_count == n
    finally:
        c.close()


def test_groups_meters_and_their_stats(listener):
    e, br, port = listener
    c = OFClient.tcp(port)
    try:
        buckets = (ofp.Bucket(actions=(ofp.Output(1),), weight=10),
                   ofp.Bucket(actions=(ofp.Output(2),), weight=20))
        c.send(m.GroupMod(command=ofp.OFPGC_ADD, type=ofp.OFPGT_SELECT, group_id=7,
                          buckets=buckets, xid=c.next_xid()))
        bands = (ofp.MeterBand(type=ofp.OFPMBT_DROP, rate=1000, burst_size=100),)
        c.send(m.MeterMod(command=ofp.OFPMC_ADD, flags=ofp.OFPMF_KBPS | ofp.OFPMF_BURST,
                          meter_id=3, bands=bands, xid=c.next_xid()))
        c.send(flow_mod(instructions=(ofp.Meter(3), ofp.apply(ofp.Group(7))),
                        xid=c.next_xid()))
        c.barrier()
        (desc,) = c.one(m.GroupDescRequest(), m.GroupDescReply).groups
        assert (desc.group_id, desc.type, tuple(desc.buckets)) == (7, ofp.OFPGT_SELECT, buckets)
        (gs,) = c.one(m.GroupStatsRequest(group_id=m.OFPG_ALL), m.GroupStatsReply).stats
        assert gs.group_id == 7 and gs.ref_count == 1 and len(gs.bucket_stats) == 2
        (mc,) = c.one(m.MeterConfigRequest(meter_id=m.OFPM_ALL), m.MeterConfigReply).configs
        assert (mc.meter_id, tuple(mc.bands)) == (3, bands)
        (ms,) = c.one(m.MeterStatsRequest(meter_id=3), m.MeterStatsReply).stats
        assert ms.flow_count == 1
        assert c.one(m.GroupFeaturesRequest(), m.GroupFeaturesReply).types == 0b1111
        assert c.one(m.MeterFeaturesRequest(), m.MeterFeaturesReply).max_meter > 0
        err = c.one(m.GroupMod(command=ofp.OFPGC_ADD, type=ofp.OFPGT_ALL, group_id=7,
                               buckets=()), m.Error)
        assert (err.type, err.code) == (m.OFPET_GROUP_MOD_FAILED, m.OFPGMFC_GROUP_EXISTS)
        # vswitchctl shows the group added over OpenFlow.
        assert "group_id=7" in e.out("dump-groups", br)
        # Deleting the group removes the flow that used it.
        c.send(m.GroupMod(command=ofp.OFPGC_DELETE, type=0, group_id=7, buckets=(),
                          xid=c.next_xid()))
        c.barrier()
        assert all_flows(c) == []
        features = c.request(m.TableFeaturesRequest(), m.TableFeaturesReply)
        assert sum(len(r.tables) for r in features) == 255
        err = c.one(m.QueueStatsRequest(port_no=ofp.OFPP_ANY, queue_id=5), m.Error)
        assert err.type == m.OFPET_QUEUE_OP_FAILED
    finally:
        c.close()


# --- roles -----------------------------------------------------------------------------

def test_roles_and_generation_ids(listener):
    e, br, port = listener
    a, b = OFClient.tcp(port), OFClient.tcp(port)
    try:
        r = a.one(m.RoleRequest(role=m.OFPCR_ROLE_MASTER, generation_id=5), m.RoleReply)
        assert (r.role, r.generation_id) == (m.OFPCR_ROLE_MASTER, 5)
        err = b.one(m.RoleRequest(role=m.OFPCR_ROLE_MASTER, generation_id=4), m.Error)
        assert (err.type, err.code) == (m.OFPET_ROLE_REQUEST_FAILED, m.OFPRRFC_STALE)
        assert b.one(m.RoleRequest(role=m.OFPCR_ROLE_SLAVE, generation_id=6),
                     m.RoleReply).role == m.OFPCR_ROLE_SLAVE
        err = b.one(flow_mod(), m.Error)
        assert (err.type, err.code) == (m.OFPET_BAD_REQUEST, m.OFPBRC_IS_SLAVE)
        assert b.request(flow_stats_request(), m.FlowStatsReply)     # reads are allowed
        # b takes over: a is demoted.
        assert b.one(m.RoleRequest(role=m.OFPCR_ROLE_MASTER, generation_id=7),
                     m.RoleReply).role == m.OFPCR_ROLE_MASTER
        assert a.one(m.RoleRequest(role=m.OFPCR_ROLE_NOCHANGE, generation_id=0),
                     m.RoleReply).role == m.OFPCR_ROLE_SLAVE
        assert a.one(flow_mod(), m.Error).code == m.OFPBRC_IS_SLAVE
        err = a.one(m.RoleRequest(role=9, generation_id=0), m.Error)
        assert err.code == m.OFPRRFC_BAD_ROLE
        roles = sorted(c["role"] for t in status(e, br) for c in t["connections"])
        assert roles == ["master", "slave"]
    finally:
        a.close()
        b.close()


# --- packets to and from the controller --------------------------------------------------

def test_packet_in_buffer_and_packet_out(listener):
    e, br, port = listener
    h1, h2 = e.hosts(2)
    e.add_ports(br, [h1, h2])
    c = OFClient.tcp(port)
    try:
        # A service (ptcp) connection asks for packet-ins explicitly.
        subscribe(c)
        c.send(flow_mod(priority=0, instructions=(ofp.apply(ofp.Output(ofp.OFPP_CONTROLLER,
                                                                       max_len=64)),),
                        cookie=0x77, xid=c.next_xid()))
        c.barrier()
        frame = bytes.fromhex("ffffffffffff") + bytes.fromhex(h1.mac.replace(":", "")) + \
            b"\x88\xb5" + bytes(range(100))
        send_raw(h1, frame)
        pin = c.wait_for(m.PacketIn)
        # A priority-0 catch-all is the table-miss entry: its packet-ins say NO_MATCH.
        assert pin.reason == ofp.OFPR_NO_MATCH and pin.cookie == 0x77 and pin.table_id == 0
        assert pin.match.get("in_port")[0] == 1 and pin.total_len == len(frame)
        assert pin.buffer_id != m.OFP_NO_BUFFER and pin.data == frame[:64]
        with Sniffer(h2.ns, h2.ifname) as sn:
            c.send(m.PacketOut(buffer_id=pin.buffer_id, in_port=1,
                               actions=(ofp.Output(2),), data=b"", xid=c.next_xid()))
            c.barrier()
            got = [f for f, _ in sn.frames(1.0) if f == frame]
        assert got, "the buffered frame did not come out of port 2"
        # A buffer is used once.
        err = c.one(m.PacketOut(buffer_id=pin.buffer_id, in_port=1,
                                actions=(ofp.Output(2),), data=b""), m.Error)
        assert (err.type, err.code) == (m.OFPET_BAD_REQUEST, m.OFPBRC_BUFFER_UNKNOWN)
        # Unbuffered packet-out with data, from the controller port.
        with Sniffer(h1.ns, h1.ifname) as sn:
            c.send(m.PacketOut(buffer_id=m.OFP_NO_BUFFER, in_port=ofp.OFPP_CONTROLLER,
                               actions=(ofp.Output(1),), data=frame, xid=c.next_xid()))
            c.barrier()
            assert [f for f, _ in sn.frames(1.0) if f == frame]
        err = c.one(m.PacketOut(buffer_id=m.OFP_NO_BUFFER, in_port=4000,
                                actions=(ofp.Output(1),), data=frame), m.Error)
        assert err.code == m.OFPBRC_BAD_PORT
        # A FLOW_MOD naming a buffer sends that packet through the new rule.
        send_raw(h1, frame)
        pin = c.wait_for(m.PacketIn)
        with Sniffer(h2.ns, h2.ifname) as sn:
            c.send(flow_mod(priority=10, match=ofp.Match(in_port=1, eth_type=0x88B5),
                            buffer_id=pin.buffer_id,
                            instructions=(ofp.apply(ofp.Output(2)),), xid=c.next_xid()))
            c.barrier()
            assert [f for f, _ in sn.frames(1.0) if f == frame]
    finally:
        c.close()


def test_port_status_and_port_desc(listener):
    e, br, port = listener
    (h1,) = e.hosts(1)
    c = OFClient.tcp(port)
    try:
        subscribe(c, packet_in=0, flow_removed=0)
        c.barrier()
        e.ctl("add-port", br, h1.port)
        ps = c.wait_for(m.PortStatus)
        assert ps.reason == m.OFPPR_ADD and ps.desc.name == h1.port and ps.desc.port_no == 1
        mac = open(f"/sys/class/net/{h1.port}/address").read().strip()
        assert ps.desc.hw_addr == bytes.fromhex(mac.replace(":", ""))
        ports = c.one(m.PortDescRequest(), m.PortDescReply).ports
        assert {p.port_no for p in ports} == {1, ofp.OFPP_LOCAL}
        # PORT_MOD: take the port down (its device goes down too), and up.
        c.send(m.PortMod(port_no=1, hw_addr=ps.desc.hw_addr, config=m.OFPPC_PORT_DOWN,
                         mask=m.OFPPC_PORT_DOWN, advertise=0, xid=c.next_xid()))
        mod = c.wait_for(m.PortStatus, pred=lambda p: p.reason == m.OFPPR_MODIFY)
        assert mod.desc.config & m.OFPPC_PORT_DOWN
        flags = int(open(f"/sys/class/net/{h1.port}/flags").read(), 16)
        assert not flags & 1
        c.send(m.PortMod(port_no=1, hw_addr=ps.desc.hw_addr, config=0,
                         mask=m.OFPPC_PORT_DOWN, advertise=0, xid=c.next_xid()))
        c.barrier()
        assert int(open(f"/sys/class/net/{h1.port}/flags").read(), 16) & 1
        err = c.one(m.PortMod(port_no=1, hw_addr=bytes(6), config=0, mask=0, advertise=0),
                    m.Error)
        assert (err.type, err.code) == (m.OFPET_PORT_MOD_FAILED, m.OFPPMFC_BAD_HW_ADDR)
        e.ctl("del-port", h1.port)
        gone = c.wait_for(m.PortStatus, pred=lambda p: p.reason == m.OFPPR_DELETE)
        assert gone.desc.port_no == 1 and gone.desc.name == h1.port
    finally:
        c.close()


def test_idle_timeout_sends_flow_removed(listener):
    e, br, port = listener
    c = OFClient.tcp(port)
    try:
        subscribe(c, packet_in=0, port_status=0)
        c.send(flow_mod(priority=5, idle_timeout=1, flags=ofp.OFPFF_SEND_FLOW_REM,
                        match=ofp.Match(eth_type=0x806), cookie=0x55,
                        instructions=(ofp.apply(ofp.Output(1)),), xid=c.next_xid()))
        c.barrier()
        fr = c.wait_for(m.FlowRemoved, timeout=5)
        assert fr.reason == ofp.OFPRR_IDLE_TIMEOUT and fr.cookie == 0x55 and fr.priority == 5
        assert fr.match == ofp.Match(eth_type=0x806)
    finally:
        c.close()


def test_punix_listener(env):
    br = env.add_br("b", "--fail-mode", "secure")
    path = os.path.join(env.dir, "of.sock")
    env.ctl("set-controller", br, f"punix:{path}")
    assert wait_for(lambda: os.path.exists(path), 5)
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    c = OFClient(s)
    try:
        assert_alive(c)
        assert c.one(m.FeaturesRequest(), m.FeaturesReply).n_tables == 255
    finally:
        c.close()
    env.ctl("del-controller", br)
    assert wait_for(lambda: not os.path.exists(path), 5)
    assert env.json("get-controller", br) == []


# --- active connections and fail modes ----------------------------------------------------

class FakeController:
    """A listening socket the switch dials (accepts one connection at a time)."""

    def __init__(self, port: int) -> None:
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", port))
        self.srv.listen(4)
        self.srv.settimeout(15)

    def accept(self) -> OFClient:
        conn, _ = self.srv.accept()
        return OFClient(conn)

    def close(self) -> None:
        self.srv.close()


def test_active_controller_reconnects_and_gets_packet_ins(env):
    br = env.add_br("b", "--fail-mode", "secure")
    h1, h2 = env.hosts(2)
    env.add_ports(br, [h1, h2])
    port = free_port()
    ctl = FakeController(port)
    try:
        env.ctl("set", "bridge", br, "options:max_backoff=1000")
        env.ctl("set-controller", br, f"tcp:127.0.0.1:{port}")
        c = ctl.accept()
        assert c.one(m.FeaturesRequest(), m.FeaturesReply).n_buffers == 256
        c.send(flow_mod(priority=0, instructions=(ofp.apply(ofp.Output(
            ofp.OFPP_CONTROLLER, max_len=ofp.OFPCML_NO_BUFFER)),), xid=c.next_xid()))
        c.barrier()
        ping(h1, h2.ip, count=1, timeout=0.3)
        pin = c.wait_for(m.PacketIn)
        assert pin.reason == ofp.OFPR_NO_MATCH and pin.buffer_id == m.OFP_NO_BUFFER
        assert pin.match.get("in_port")[0] in (1, 2) and len(pin.data) == pin.total_len
        assert "connected" in env.out("show")
        c.close()                               # the switch dials again
        c = ctl.accept()
        assert_alive(c)
        st = status(env, br)[0]
        assert st["connects"] == 2 and st["disconnects"] == 1
        c.close()
    finally:
        ctl.close()


def test_inactivity_probe_drops_a_silent_controller(env):
    br = env.add_br("b", "--fail-mode", "secure")
    port = free_port()
    ctl = FakeController(port)
    try:
        env.ctl("set", "bridge", br, "options:inactivity_probe=500")
        env.ctl("set-controller", br, f"tcp:127.0.0.1:{port}")
        c = ctl.accept()
        got = c.recv()                          # silence: the switch probes ...
        assert isinstance(got, m.EchoRequest)
        with pytest.raises((EOFError, ConnectionResetError)):
            while True:                         # ... and hangs up when nobody answers
                c.recv_raw()
        c.close()
    finally:
        ctl.close()


def test_fail_modes(env):
    """standalone: NORMAL takes over one probe interval after the controller
    is gone, and hands back when it returns; secure: flows stay, misses drop."""
    br = env.add_br("b")
    h1, h2 = env.hosts(2)
    env.add_ports(br, [h1, h2])
    port = free_port()
    env.ctl("set", "bridge", br, "options:inactivity_probe=1000", "options:max_backoff=1000")
    env.ctl("set-controller", br, f"tcp:127.0.0.1:{port}")     # nobody listens yet
    assert wait_for(lambda: "0xf0f0f0f0f0f0f0f0" in env.out("dump-flows", br), 5)
    assert ping(h1, h2.ip, count=3) >= 2                        # failed open: NORMAL
    ctl = FakeController(port)
    try:
        c = ctl.accept()
        assert wait_for(lambda: "0xf0f0f0f0f0f0f0f0" not in env.out("dump-flows", br), 5)
        # The rule is never shown to a controller; the bridge's own NORMAL rule is.
        assert [f.cookie for f in all_flows(c)] == [0]
        c.send(flow_mod(command=ofp.OFPFC_DELETE, table_id=ofp.OFPTT_ALL, xid=c.next_xid()))
        c.barrier()
        assert ping(h1, h2.ip, count=2, timeout=0.3) == 0       # now the controller decides
        # secure: the controller's flows keep forwarding while it is away.
        env.ctl("set-fail-mode", br, "secure")
        c.send(flow_mod(priority=1, instructions=(ofp.apply(ofp.Output(ofp.OFPP_NORMAL)),),
                        xid=c.next_xid()))
        c.barrier()
        c.close()
        ctl.close()
        time.sleep(2.5)
        assert "0xf0f0f0f0f0f0f0f0" not in env.out("dump-flows", br)
        assert ping(h1, h2.ip, count=3) >= 2
        env.ctl("del-flows", br)
        assert ping(h1, h2.ip, count=2, timeout=0.3) == 0
        counters = env.json("controller-status", br)["counters"]
        assert counters["fail_open_engaged"] == 1
    finally:
        ctl.close()


# --- TLS ------------------------------------------------------------------------------------

def _openssl(*args: str, cwd: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_ssl_controller(env):
    import ssl

    d = tempfile.mkdtemp(prefix="vsssl")
    try:
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                 "/CN=test CA", "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
        for who in ("switch", "ctl"):
            _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={who}",
                     "-keyout", f"{who}.key", "-out", f"{who}.csr", cwd=d)
            _openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                     "-CAcreateserial", "-days", "1", "-out", f"{who}.pem", cwd=d)
        br = env.add_br("b", "--fail-mode", "secure")
        env.ctl("set-ssl", f"{d}/switch.key", f"{d}/switch.pem", f"{d}/ca.pem")
        assert env.json("get-ssl")["certificate"] == f"{d}/switch.pem"
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=f"{d}/ca.pem")
        ctx.verify_mode = ssl.CERT_REQUIRED            # the switch must show its certificate
        ctx.load_cert_chain(f"{d}/ctl.pem", f"{d}/ctl.key")
        port = free_port()
        ctl = FakeController(port)
        try:
            env.ctl("set-controller", br, f"ssl:127.0.0.1:{port}")
            conn, _ = ctl.srv.accept()
            tls = ctx.wrap_socket(conn, server_side=True)
            assert tls.getpeercert()["subject"] == ((("commonName", "switch"),),)
            c = OFClient(tls)
            assert c.one(m.FeaturesRequest(), m.FeaturesReply).n_tables == 255
            c.close()
        finally:
            ctl.close()
        env.fails("set-ssl", f"{d}/nope.key", f"{d}/switch.pem", f"{d}/ca.pem",
                  match="no such file")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_controller_cli_errors(env):
    br = env.add_br()
    env.fails("set-controller", br, "tcp:nowhere:6653", match="bad IP address")
    env.fails("set-controller", br, "ptcp:99999", match="bad TCP port")
    env.fails("set-controller", "nobridge", "ptcp:6653", match="no bridge")
    env.fails("set", "bridge", br, "options:inactivity_probe=soon", match="milliseconds")
    assert env.json("get-controller", br) == []
    assert "priority=0 actions=NORMAL" in env.out("dump-flows", br)
