"""One bridge's sFlow v5 agent: flow samples from the datapath, counter
samples of its ports, and (when it is the host's agent) the Host sFlow
structures of the hypervisor and its VMs, packed into datagrams for the
collectors.

Data sources and their sequence numbers:
    0:ifIndex   a port: its sampler (flow samples) and its poller (0:1 + 0:2)
    2:1         the host (physical entity): 2000, 2001, 2003-2006
    3:n         VM n (logical entity): 2000, 2002 (parent 2:1), 2104, and
                2101-2103 when a VmStatsProvider gives them
Each source numbers its flow samples and its counter samples separately;
the datagrams of the agent are numbered too.  A port's ifIndex is its
Linux ifindex; ports without a device (patch) get PATCH_IFINDEX_BASE +
OpenFlow port number.

Packing: samples wait in one buffer that is sent as soon as the next one
would take the datagram past max_datagram bytes, and at every tick
(tick() is called about once a second), so nothing waits longer than that.
Output interface of a flow sample: the port's ifIndex (one output), 0x3FFFFFFF
(only to the controller: the switch itself), 0x80000000 | n (n outputs,
flooded or multicast), 0x40000000 | 256 (dropped).
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import logging
import random
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from vswitch.datapath import SFLOW_F_LOCAL, DpUpcall
from vswitch.sflow import host as hostinfo
from vswitch.sflow import xdr
from vswitch.sflow.settings import SflowSettings, parse_collector
from vswitch.sflow.vm import Vm, VmStatsProvider, vms_from_ports

log = logging.getLogger("vswitchd.sflow")

PATCH_IFINDEX_BASE = 1_000_000_000
HOST_INDEX = 1                        # the host's data source 2:1, as hsflowd
MAX_DATAGRAM = 1400
SIOCGIFADDR = 0x8915


@dataclass
class PortView:
    """What the agent needs to know about one switch port."""
    ofport: int
    name: str
    ifindex: int                      # Linux ifindex, 0 = none
    link_up: bool
    stats: dict                       # Datapath.port_stats()
    external_ids: dict = field(default_factory=dict)
    promiscuous: bool = False


def port_ifindex(p: PortView) -> int:
    return p.ifindex if p.ifindex else PATCH_IFINDEX_BASE + (p.ofport & 0xFFFF)


def interface_ipv4(name: str) -> str:
    """The IPv4 address of a network interface (SIOCGIFADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            res = fcntl.ioctl(s.fileno(), SIOCGIFADDR,
                              struct.pack("256s", name.encode()[:15]))
        except OSError as e:
            raise OSError(e.errno, f"interface {name}: no IPv4 address ({e.strerror})") from e
    return socket.inet_ntoa(res[20:24])


def resolve_agent_address(agent: str, first_collector: tuple[str, int, int]) -> str:
    """agent: an IP address, an interface name, or "" (the source address of
    the route to the first collector)."""
    if agent:
        try:
            return str(ipaddress.ip_address(agent))
        except ValueError:
            return interface_ipv4(agent)
    family, host, port = first_collector
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect((host, port))
        return s.getsockname()[0]


class SflowAgent:
    """Samplers, pollers and the datagram buffer of one bridge."""

    def __init__(self, settings: SflowSettings, ports: Callable[[], list[PortView]], *,
                 sub_agent_id: int = 0, host: bool = True,
                 vm_stats: VmStatsProvider | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 max_datagram: int = MAX_DATAGRAM) -> None:
        self.settings = settings
        self._ports = ports
        self.sub_agent_id = sub_agent_id
        self.host = host
        self.vm_stats = vm_stats
        self._clock = clock
        self._start = clock()
        self.max_datagram = max_datagram
        self._collectors: list[tuple[int, tuple]] = []
        self._socks: dict[int, socket.socket] = {}
        for c in settings.collectors:
            h, p = parse_collector(c)
            info = socket.getaddrinfo(h, p, type=socket.SOCK_DGRAM)[0]
            self._collectors.append((info[0], info[4]))
            if info[0] not in self._socks:
                s = socket.socket(info[0], socket.SOCK_DGRAM)
                s.setblocking(False)
                self._socks[info[0]] = s
        first = self._collectors[0]
        self.agent_address = resolve_agent_address(settings.agent,
                                                   (first[0], first[1][0], first[1][1]))
        self._buf: list[bytes] = []
        self._buf_len = 0
        self._budget = max_datagram - (len(xdr.datagram(self.agent_address, 0, 0, 0, [])))
        self._dgram_seq = 0
        self._flow_seq: dict[int, int] = {}
        self._ctr_seq: dict[int, int] = {}
        self._ifindex: dict[int, int] = {}           # ofport -> ifIndex
        self._next_poll: dict[int, float] = {}       # source id -> when
        self._vm_index: dict[str, int] = {}
        self._host_descr: hostinfo.HostDescr | None = None     # read on first use
        self.counters = {"datagrams": 0, "send_errors": 0, "flow_samples": 0,
                         "counter_samples": 0, "oversize_samples": 0}
        self._refresh_ports()

    # ---- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        self.flush()
        for s in self._socks.values():
            s.close()
        self._socks.clear()

    def uptime_ms(self) -> int:
        return int((self._clock() - self._start) * 1000)

    # ---- flow samples ----------------------------------------------------------------

    def _ifindex_of(self, ofport: int) -> int:
        idx = self._ifindex.get(ofport)
        if idx is None:
            self._refresh_ports()
            idx = self._ifindex.get(ofport, PATCH_IFINDEX_BASE + (ofport & 0xFFFF))
        return idx

    def output_field(self, u: DpUpcall) -> int:
        local = bool(u.sflow_flags & SFLOW_F_LOCAL)
        n = u.sflow_n_out + int(local)
        if n == 0:
            return xdr.IF_DISCARD | xdr.DISCARD_UNKNOWN
        if n > 1:
            return xdr.IF_MULTIPLE | min(n, xdr.IF_MULTIPLE_UNKNOWN)
        return xdr.IF_LOCAL if local else self._ifindex_of(u.sflow_out_port)

    def on_sample(self, u: DpUpcall) -> None:
        """A flow sample (a DpUpcall of kind UPCALL_SFLOW) from the datapath."""
        in_if = self._ifindex_of(u.in_port)
        src = xdr.source_id(xdr.DS_IFINDEX, in_if)
        seq = self._flow_seq[src] = self._flow_seq.get(src, 0) + 1
        records = [xdr.raw_header(u.len, u.data),
                   xdr.extended_switch(u.sflow_vlan_in, u.sflow_vlan_out)]
        self._add(xdr.flow_sample(seq, src, u.sflow_rate, u.sflow_pool, u.sflow_drops, in_if,
                                  self.output_field(u), records))
        self.counters["flow_samples"] += 1

    # ---- counter samples -------------------------------------------------------------

    def _refresh_ports(self) -> list[PortView]:
        ports = self._ports()
        self._ifindex = {p.ofport: port_ifindex(p) for p in ports}
        return ports

    def _due(self, src: int, now: float) -> bool:
        """Pollers start at a random phase of the interval (no bursts)."""
        interval = self.settings.polling
        when = self._next_poll.get(src)
        if when is None:
            self._next_poll[src] = now + random.uniform(0, interval)
            return False
        if now < when:
            return False
        self._next_poll[src] = max(when + interval, now)
        return True

    def _counters(self, src: int, records: list[bytes]) -> None:
        seq = self._ctr_seq[src] = self._ctr_seq.get(src, 0) + 1
        self._add(xdr.counters_sample(seq, src, records))
        self.counters["counter_samples"] += 1

    def port_records(self, p: PortView) -> list[bytes]:
        st = p.stats
        speed, direction = hostinfo.if_speed_duplex(p.name) if p.ifindex else (0, 0)
        c = xdr.IfCounters(
            if_index=port_ifindex(p), speed=speed, direction=direction, admin_up=True,
            oper_up=p.link_up, in_octets=st["rx_bytes"], in_ucast=st["rx_packets"],
            in_discards=st["rx_dropped"], in_errors=st["rx_errors"],
            out_octets=st["tx_bytes"], out_ucast=st["tx_packets"],
            out_discards=st["tx_dropped"], out_errors=st["tx_errors"],
            promiscuous=p.promiscuous)
        return [xdr.generic_if(c), xdr.ethernet(st["rx_oversize"] + st["tx_oversize"])]

    def host_records(self) -> list[bytes]:
        if self._host_descr is None:
            self._host_descr = hostinfo.describe()
        d = self._host_descr
        adapters = [(idx, [mac]) for idx, _, mac in hostinfo.adapters()][:32]
        return [xdr.host_descr(d.hostname, d.uuid, d.machine_type, d.os_name, d.os_release),
                xdr.host_adapters(adapters), xdr.host_cpu(hostinfo.cpu()),
                xdr.host_memory(hostinfo.memory()), xdr.host_disk_io(hostinfo.disk()),
                xdr.host_net_io(hostinfo.net())]

    def vm_records(self, vm: Vm, by_ofport: dict[int, PortView]) -> list[bytes]:
        net = hostinfo.NetCounters()
        for itf in vm.interfaces:
            p = by_ofport.get(itf.ofport)
            if p is None:
                continue
            st = p.stats                  # the switch's rx is the VM's tx
            net.bytes_in += st["tx_bytes"]
            net.pkts_in += st["tx_packets"]
            net.errs_in += st["tx_errors"]
            net.drops_in += st["tx_dropped"]
            net.bytes_out += st["rx_bytes"]
            net.pkts_out += st["rx_packets"]
            net.errs_out += st["rx_errors"]
            net.drops_out += st["rx_dropped"]
        recs = [xdr.host_descr(vm.name, vm.uuid, 0, 0, ""),
                xdr.host_parent(xdr.DS_PHYSICAL_ENTITY, HOST_INDEX), xdr.virt_net_io(net)]
        if self.vm_stats is not None:
            cpu = self.vm_stats.cpu(vm)
            if cpu is not None:
                recs.append(xdr.virt_cpu(cpu.state, cpu.cpu_time_ms, cpu.n_vcpus))
            mem = self.vm_stats.memory(vm)
            if mem is not None:
                recs.append(xdr.virt_memory(mem.memory, mem.max_memory))
            dsk = self.vm_stats.disk(vm)
            if dsk is not None:
                recs.append(xdr.virt_disk_io(dsk.capacity, dsk.allocation, dsk.available,
                                             dsk.rd_req, dsk.rd_bytes, dsk.wr_req,
                                             dsk.wr_bytes, dsk.errs))
        return recs

    def poll(self, now: float | None = None, force: bool = False) -> None:
        """Send the counter samples that are due (force: all of them)."""
        if self.settings.polling <= 0 and not force:
            return
        now = self._clock() if now is None else now
        ports = self._refresh_ports()
        for p in ports:
            src = xdr.source_id(xdr.DS_IFINDEX, port_ifindex(p))
            if force or self._due(src, now):
                self._counters(src, self.port_records(p))
        if not self.host:
            return
        src = xdr.source_id(xdr.DS_PHYSICAL_ENTITY, HOST_INDEX)
        if force or self._due(src, now):
            self._counters(src, self.host_records())
        by_ofport = {p.ofport: p for p in ports}
        for vm in vms_from_ports((p.name, p.ofport, p.external_ids) for p in ports):
            idx = self._vm_index.setdefault(vm.vm_id, len(self._vm_index) + 1)
            src = xdr.source_id(xdr.DS_LOGICAL_ENTITY, idx)
            if force or self._due(src, now):
                self._counters(src, self.vm_records(vm, by_ofport))

    def tick(self, now: float | None = None) -> None:
        """About once a second: poll what is due, send what waits."""
        try:
            self.poll(now)
        finally:
            self.flush()

    # ---- datagrams -------------------------------------------------------------------

    def _add(self, sample: bytes) -> None:
        if len(sample) > self._budget:
            self.counters["oversize_samples"] += 1
            log.warning("sFlow sample of %d bytes does not fit a datagram: not sent",
                        len(sample))
            return
        if self._buf_len + len(sample) > self._budget:
            self.flush()
        self._buf.append(sample)
        self._buf_len += len(sample)

    def flush(self) -> None:
        if not self._buf:
            return
        self._dgram_seq += 1
        dg = xdr.datagram(self.agent_address, self.sub_agent_id, self._dgram_seq,
                          self.uptime_ms(), self._buf)
        self._buf = []
        self._buf_len = 0
        self.counters["datagrams"] += 1
        for family, addr in self._collectors:
            try:
                self._socks[family].sendto(dg, addr)
            except OSError as e:
                self.counters["send_errors"] += 1
                if e.errno not in (errno.EAGAIN, errno.ECONNREFUSED, errno.ENETUNREACH):
                    log.warning("sFlow: sending to %s: %s", addr, e)
