"""Python face of the C datapath (vswitch/_fastpath/datapath.h).

A `Datapath` switches real traffic for one bridge: C poll threads receive
from its ports, run the frames through a `Pipeline` (borrowed: close the
datapath before the pipeline) and transmit the results.  Python only
configures it and reads counters, learned MACs and controller upcalls.

    p = Pipeline()
    make_standalone(p)                  # table-miss -> NORMAL: a learning switch
    dp = Datapath(p, n_threads=2)
    dp.add_port(1, "system", name="veth0")
    dp.add_port(2, "system", name="veth1")
    ...
    dp.close(); p.close()

Port numbers are OpenFlow port numbers; the bridge's own interface is an
`internal` port, by convention numbered OFPP_LOCAL.
"""

from __future__ import annotations

import errno as _errno
import socket
from dataclasses import dataclass

from vswitch import ofp
from vswitch._fastpath._core import ffi, lib
from vswitch.flowtable import Pipeline, encode_actions
from vswitch.ofp import ApplyActions, Match, OFError, Output

PORT_TYPES = {
    "system": lib.VS_DP_PORT_SYSTEM,
    "tap": lib.VS_DP_PORT_TAP,
    "internal": lib.VS_DP_PORT_INTERNAL,
    "patch": lib.VS_DP_PORT_PATCH,
    "afxdp": lib.VS_DP_PORT_AFXDP,
    "vxlan": lib.VS_DP_PORT_VXLAN,
}
PORT_TYPE_NAMES = {v: k for k, v in PORT_TYPES.items()}
VLAN_MODES = {
    "trunk": lib.VS_DP_VLAN_TRUNK,
    "access": lib.VS_DP_VLAN_ACCESS,
    "native-untagged": lib.VS_DP_VLAN_NATIVE_UNTAGGED,
    "native-tagged": lib.VS_DP_VLAN_NATIVE_TAGGED,
}
VLAN_MODE_NAMES = {v: k for k, v in VLAN_MODES.items()}
XDP_MODES = {
    "auto": lib.VS_DP_XDP_AUTO,           # native, generic if the driver refuses
    "native": lib.VS_DP_XDP_NATIVE,
    "generic": lib.VS_DP_XDP_GENERIC,
}
XDP_MODE_NAMES = {v: k for k, v in XDP_MODES.items()}
# AF_XDP ports are built only when libxdp and libbpf were found at build time.
AFXDP_AVAILABLE = bool(lib.vs_dp_afxdp_available())


def afxdp_available() -> bool:
    """Whether `afxdp` ports were built in (else add_port refuses them and
    says why: install libxdp-dev and libbpf-dev and rebuild)."""
    return bool(lib.vs_dp_afxdp_available())
_MAX_FRAME = lib.VS_DP_MAX_FRAME
UPCALL_CONTROLLER = lib.VS_DP_UPCALL_CONTROLLER
UPCALL_SFLOW = lib.VS_DP_UPCALL_SFLOW
SFLOW_F_FLOOD = lib.VS_DP_SFLOW_F_FLOOD
SFLOW_F_LOCAL = lib.VS_DP_SFLOW_F_LOCAL


class DatapathError(OSError):
    """A datapath call failed: errno and the C side's message."""


@dataclass
class PortInfo:
    port_no: int
    type: str
    name: str
    ifindex: int
    mtu: int
    thread: int
    link_up: bool
    no_flood: bool
    vlan_mode: str
    tag: int
    peer_port: int
    peer_attached: bool
    queue: int = 0              # afxdp: the rx queue bound
    xdp_mode: str = ""          # afxdp: "native" or "generic", as attached
    xdp_zerocopy: bool = False  # afxdp: zero-copy (else copy mode)


@dataclass
class FdbEntry:
    mac: str
    vlan: int
    port: int
    age_ms: int


@dataclass
class DpUpcall:
    in_port: int
    reason: int
    table_id: int
    cookie: int
    metadata: int
    tunnel_id: int
    max_len: int
    len: int
    data: bytes
    # Which kind of entry (UPCALL_CONTROLLER: a packet-in; UPCALL_SFLOW: a
    # flow sample, `data` holds the first header bytes of a `len`-byte
    # frame) and, for samples, the sFlow fields (datapath.h).
    kind: int = 0
    sflow_rate: int = 0
    sflow_pool: int = 0
    sflow_drops: int = 0
    sflow_n_out: int = 0
    sflow_out_port: int = 0
    sflow_vlan_in: int = 0
    sflow_vlan_out: int = 0
    sflow_flags: int = 0


def _fields(ctype: str) -> list[str]:
    return [name for name, _ in ffi.typeof(ctype).fields if name != "pad"]


_PORT_STATS = _fields("struct vs_dp_port_stats")
_THREAD_STATS = _fields("struct vs_dp_thread_stats")
_DP_STATS = _fields("struct vs_dp_stats")
_VXLAN_STATS = _fields("struct vs_dp_vxlan_stats")


def _raise(rc: int, err=None, what: str = "") -> None:
    if rc >= 0:
        return
    msg = ffi.string(err.msg).decode(errors="replace") if err is not None else ""
    if err is not None and err.type:
        raise OFError(err.type, err.code, msg)
    raise DatapathError(-rc, msg or f"{what}: {_errno.errorcode.get(-rc, -rc)}")


def _trunk_bitmap(trunks) -> bytes:
    bm = bytearray(512)
    for v in trunks:
        if not 0 <= v <= 4095:
            raise ValueError(f"VLAN {v} outside 0..4095")
        bm[v >> 3] |= 1 << (v & 7)
    return bytes(bm)


def make_standalone(pipeline: Pipeline) -> None:
    """Install the table-miss rule `priority=0 actions=NORMAL` in table 0:
    the bridge then behaves as a MAC learning switch."""
    pipeline.add_flow(0, 0, Match(), [ApplyActions((Output(ofp.OFPP_NORMAL),))])


class Datapath:
    """Ports and C poll threads switching traffic through `pipeline`."""

    def __init__(self, pipeline: Pipeline, *, n_threads: int = 1, batch_size: int = 64,
                 busy_rounds: int = 0, upcall_queue_len: int = 0, mac_aging_s: int = 0,
                 mac_max: int = 0, ring_block_size: int = 0, ring_block_nr: int = 0,
                 ring_tov_ms: int = 0, patch_max_depth: int = 0,
                 emc_entries: int | None = None, megaflow_max: int | None = None) -> None:
        cfg = ffi.new("struct vs_dp_config *")
        cfg.n_threads = n_threads
        cfg.batch_size = batch_size
        cfg.busy_rounds = busy_rounds
        cfg.upcall_queue_len = upcall_queue_len
        cfg.mac_aging_s = mac_aging_s
        cfg.mac_max = mac_max
        cfg.ring_block_size = ring_block_size
        cfg.ring_block_nr = ring_block_nr
        cfg.ring_tov_ms = ring_tov_ms
        cfg.patch_max_depth = patch_max_depth
        if emc_entries is not None or megaflow_max is not None:
            cfg.ctx.emc_entries = 8192 if emc_entries is None else emc_entries
            cfg.ctx.emc_insert_inv_prob = 100
            cfg.ctx.megaflow_max = 65536 if megaflow_max is None else megaflow_max
        err = ffi.new("struct vs_error *")
        h = lib.vs_dp_new(cfg, pipeline.handle, err)
        if h == ffi.NULL:
            _raise(-(err.code or _errno.EINVAL), err, "vs_dp_new")
        self._h = ffi.gc(h, lib.vs_dp_free)
        self.pipeline = pipeline          # keeps the pipeline alive
        self._peers: dict[int, Datapath] = {}
        self._buf = ffi.new("uint8_t[]", _MAX_FRAME)
        self._upcall = ffi.new("struct vs_dp_upcall *")   # reused, as _buf is

    # lifecycle
    @property
    def handle(self):
        if self._h is None:
            raise ValueError("datapath is closed")
        return self._h

    def close(self) -> None:
        """Stop the threads, close the ports (created TAP devices vanish)."""
        if self._h is not None:
            ffi.release(self._h)
            self._h = None
            self._peers.clear()

    def __enter__(self) -> Datapath:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ports
    def add_port(self, port_no: int, type: str = "system", *, name: str = "",
                 ifindex: int = 0, mtu: int = 0, thread: int = -1, no_flood: bool = False,
                 up: bool = False, vlan_mode: str = "trunk", tag: int = 0, trunks=(),
                 peer: Datapath | None = None, peer_port: int = 0, queue: int = 0,
                 xdp_mode: str = "auto", vxlan=None) -> PortInfo:
        """Add a port.  system: an existing device by name or ifindex;
        tap/internal: a TAP device created by name (up=True brings it up);
        patch: peer datapath and the peer's patch port number; afxdp: an
        existing device by name or ifindex over AF_XDP, rx queue `queue`,
        xdp_mode "auto" (native, else generic), "native" or "generic";
        vxlan: a VxlanConfig (vswitch.tunnel), name is only a label."""
        pc = ffi.new("struct vs_dp_port_config *")
        pc.port_no = port_no
        pc.type = PORT_TYPES[type]
        pc.ifindex = ifindex
        pc.mtu = mtu
        pc.thread = thread
        pc.flags = ((lib.VS_DP_PF_NO_FLOOD if no_flood else 0)
                    | (lib.VS_DP_PF_ADMIN_UP if up else 0))
        pc.vlan_mode = VLAN_MODES[vlan_mode]
        pc.tag = tag
        pc.trunks = _trunk_bitmap(trunks)
        pc.queue = queue
        pc.xdp_mode = XDP_MODES[xdp_mode]
        raw = name.encode()
        if len(raw) >= lib.VS_DP_NAME_LEN:
            raise ValueError(f"device name too long: {name!r}")
        pc.name = raw
        if peer is not None:
            pc.peer = peer.handle
            pc.peer_port = peer_port
        if vxlan is not None:
            vx = ffi.new("struct vs_dp_vxlan_config *")
            vx.local_ip = vxlan.local_ip_bytes
            vx.remote_ip = vxlan.remote_ip_bytes
            vx.key = 0 if vxlan.key is None else vxlan.key
            vx.key_flow = int(vxlan.key is None)
            vx.dst_port = vxlan.dst_port
            vx.tos = vxlan.tos
            vx.ttl = vxlan.ttl
            vx.df = int(vxlan.df_default)
            vx.remote_flow = int(vxlan.remote_flow)
            pc.vxlan = vx                 # vx stays alive until the call returns
        err = ffi.new("struct vs_error *")
        _raise(lib.vs_dp_add_port(self.handle, pc, err), err, "add_port")
        if peer is not None:
            self._peers[port_no] = peer
        return self.port_info(port_no)

    def add_internal_port(self, name: str, port_no: int = ofp.OFPP_LOCAL, **kw) -> PortInfo:
        return self.add_port(port_no, "internal", name=name, **kw)

    def del_port(self, port_no: int) -> None:
        _raise(lib.vs_dp_del_port(self.handle, port_no), None, f"del_port {port_no}")
        self._peers.pop(port_no, None)

    def set_port_link(self, port_no: int, up: bool) -> None:
        """Record a carrier change (e.g. from a netlink event)."""
        _raise(lib.vs_dp_set_port_link(self.handle, port_no, int(up)), None, "set_port_link")

    def set_port_vlan(self, port_no: int, vlan_mode: str = "trunk", tag: int = 0,
                      trunks=()) -> None:
        bm = _trunk_bitmap(trunks)
        _raise(lib.vs_dp_set_port_vlan(self.handle, port_no, VLAN_MODES[vlan_mode], tag, bm),
               None, "set_port_vlan")

    def port_info(self, port_no: int) -> PortInfo:
        i = ffi.new("struct vs_dp_port_info *")
        _raise(lib.vs_dp_port_info(self.handle, port_no, i), None, f"port {port_no}")
        return PortInfo(
            port_no=i.port_no, type=PORT_TYPE_NAMES.get(i.type, str(i.type)),
            name=ffi.string(i.name).decode(errors="replace"), ifindex=i.ifindex, mtu=i.mtu,
            thread=i.thread, link_up=bool(i.link_up),
            no_flood=bool(i.flags & lib.VS_DP_PF_NO_FLOOD),
            vlan_mode=VLAN_MODE_NAMES.get(i.vlan_mode, str(i.vlan_mode)), tag=i.tag,
            peer_port=i.peer_port, peer_attached=bool(i.peer_attached), queue=i.queue,
            xdp_mode=(XDP_MODE_NAMES.get(i.xdp_mode, str(i.xdp_mode))
                      if i.type == lib.VS_DP_PORT_AFXDP else ""),
            xdp_zerocopy=bool(i.xdp_zerocopy))

    @staticmethod
    def _vxlan_route(route):
        r = ffi.new("struct vs_dp_vxlan_route *")
        if route is not None:
            r.ifindex = route.ifindex
            r.mtu = route.mtu
            r.src_mac = route.src_mac
            r.dst_mac = route.dst_mac
            r.src_ip = route.src_ip_bytes
        return r

    def set_vxlan_route(self, port_no: int, route) -> None:
        """Give a vxlan port its outer headers' route (a tunnel.Route, or
        None: unresolved, frames are dropped and counted)."""
        _raise(lib.vs_dp_vxlan_set_route(self.handle, port_no, self._vxlan_route(route)), None,
               f"set_vxlan_route {port_no}")

    def set_vxlan_dest(self, port_no: int, dst: str, route) -> None:
        """A remote_ip=flow port's route to dst (None withdraws it)."""
        _raise(lib.vs_dp_vxlan_set_dest(self.handle, port_no, socket.inet_aton(dst),
                                        self._vxlan_route(route)), None,
               f"set_vxlan_dest {port_no} {dst}")

    def vxlan_wanted(self, port_no: int) -> list[str]:
        """Destinations a remote_ip=flow port had no route for (taken)."""
        buf = ffi.new("uint8_t[]", 4 * 64)
        n = lib.vs_dp_vxlan_wanted(self.handle, port_no, buf, 64)
        raw = bytes(ffi.buffer(buf, 4 * n))
        return sorted({socket.inet_ntoa(raw[i:i + 4]) for i in range(0, len(raw), 4)})

    def vxlan_dests(self, port_no: int) -> list[dict]:
        arr = ffi.new("struct vs_dp_vxlan_dest[]", 256)
        n = lib.vs_dp_vxlan_dests(self.handle, port_no, arr, 256)
        return [{"remote_ip": socket.inet_ntoa(bytes(list(d.dst))), "resolved": bool(d.ifindex),
                 "mtu": d.mtu, "tx_packets": d.tx_packets} for d in arr[0:n]]

    def vxlan_stats(self, port_no: int) -> dict[str, int]:
        s = ffi.new("struct vs_dp_vxlan_stats *")
        _raise(lib.vs_dp_vxlan_stats(self.handle, port_no, s), None, f"vxlan port {port_no}")
        return {k: getattr(s, k) for k in _VXLAN_STATS}

    def port_numbers(self) -> list[int]:
        n = lib.vs_dp_port_list(self.handle, ffi.NULL, 0)
        arr = ffi.new("uint32_t[]", max(n, 1))
        n = min(n, lib.vs_dp_port_list(self.handle, arr, n))
        return list(arr[0:n])

    def ports(self) -> list[PortInfo]:
        out = []
        for p in self.port_numbers():
            try:
                out.append(self.port_info(p))
            except DatapathError:
                pass                      # deleted meanwhile
        return out

    def port_stats(self, port_no: int) -> dict[str, int]:
        s = ffi.new("struct vs_dp_port_stats *")
        _raise(lib.vs_dp_port_stats(self.handle, port_no, s), None, f"port {port_no}")
        return {k: getattr(s, k) for k in _PORT_STATS}

    # threads and datapath counters
    @property
    def n_threads(self) -> int:
        return lib.vs_dp_n_threads(self.handle)

    def thread_stats(self, idx: int | None = None):
        """One thread's counters (dict), or a list for all threads."""
        if idx is None:
            return [self.thread_stats(i) for i in range(self.n_threads)]
        s = ffi.new("struct vs_dp_thread_stats *")
        _raise(lib.vs_dp_thread_stats(self.handle, idx, s), None, f"thread {idx}")
        return {k: getattr(s, k) for k in _THREAD_STATS}

    def stats(self) -> dict[str, int]:
        s = ffi.new("struct vs_dp_stats *")
        lib.vs_dp_get_stats(self.handle, s)
        return {k: getattr(s, k) for k in _DP_STATS}

    # MAC learning
    def fdb(self) -> list[FdbEntry]:
        n = lib.vs_dp_fdb_dump(self.handle, ffi.NULL, 0)
        arr = ffi.new("struct vs_dp_fdb_entry[]", max(n, 1) + 16)
        n = min(lib.vs_dp_fdb_dump(self.handle, arr, n + 16), n + 16)
        return [FdbEntry(":".join(f"{b:02x}" for b in e.mac), e.vlan, e.port, e.age_ms)
                for e in arr[0:n]]

    def fdb_flush(self, port: int | None = None) -> None:
        lib.vs_dp_fdb_flush(self.handle, ofp.OFPP_ANY if port is None else port)

    # upcalls and packet-out
    @property
    def upcall_fd(self) -> int:
        """An eventfd readable while a controller upcall waits or sFlow
        samples fill 1/8 of the queue, until the queue is empty (samples
        below that wait for a periodic drain)."""
        return lib.vs_dp_upcall_fd(self.handle)

    def recv_upcall(self) -> DpUpcall | None:
        u = self._upcall
        if not lib.vs_dp_recv_upcall(self.handle, u, self._buf, _MAX_FRAME):
            return None
        return DpUpcall(u.in_port, u.reason, u.table_id, u.cookie, u.metadata, u.tunnel_id,
                        u.max_len, u.len, bytes(ffi.buffer(self._buf, u.copied)),
                        u.kind, u.sflow_rate, u.sflow_pool, u.sflow_drops, u.sflow_n_out,
                        u.sflow_out_port, u.sflow_vlan_in, u.sflow_vlan_out, u.sflow_flags)

    def upcalls(self, limit: int | None = None) -> list[DpUpcall]:
        out = []
        while limit is None or len(out) < limit:
            u = self.recv_upcall()
            if u is None:
                break
            out.append(u)
        return out

    def set_sflow(self, rate: int, header_bytes: int = 128) -> None:
        """Sample 1 in `rate` received frames into the upcall queue as
        UPCALL_SFLOW entries with their first `header_bytes`; rate 0 = off."""
        if not 0 <= rate < 2**32:
            raise ValueError(f"sampling rate {rate} outside 0..2^32-1")
        if rate and not 1 <= header_bytes <= lib.VS_DP_SFLOW_MAX_HEADER:
            raise ValueError(f"header bytes {header_bytes} outside "
                             f"1..{lib.VS_DP_SFLOW_MAX_HEADER}")
        _raise(lib.vs_dp_set_sflow(self.handle, rate, header_bytes), None, "set_sflow")

    def packet_out(self, in_port: int, actions, frame: bytes) -> None:
        """Execute an OpenFlow action list on frame (as if it arrived on
        in_port, which may be OFPP_CONTROLLER)."""
        blob = encode_actions(actions)
        err = ffi.new("struct vs_error *")
        rc = lib.vs_dp_packet_out(self.handle, in_port, ffi.from_buffer(blob), len(blob),
                                  ffi.from_buffer(frame), len(frame), err)
        _raise(rc, err, "packet_out")


def patch(dp1: Datapath, port1: int, dp2: Datapath, port2: int) -> None:
    """Join two datapaths: port1 on dp1 <-> port2 on dp2."""
    dp1.add_port(port1, "patch", peer=dp2, peer_port=port2)
    try:
        dp2.add_port(port2, "patch", peer=dp1, peer_port=port1)
    except BaseException:
        dp1.del_port(port1)
        raise
