"""sFlow version 5 wire format (XDR, big-endian, 4-byte aligned).

Datagram (sflow_version_5.txt):
    version=5, agent address (type 1 IPv4 / 2 IPv6 + address), sub_agent_id,
    sequence_number, uptime (ms), samples<>
Sample and record tags are (enterprise << 12) | format; every sample and
record is preceded by its tag and its length in bytes.  Only enterprise 0
(sFlow.org) structures are produced here.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

# Sample formats (enterprise 0).
FLOW_SAMPLE = 1
COUNTERS_SAMPLE = 2
# Flow record formats.
FLOW_RAW_HEADER = 1
FLOW_EXT_SWITCH = 1001
# Counter record formats.
CTR_GENERIC_IF = 1
CTR_ETHERNET = 2
CTR_HOST_DESCR = 2000
CTR_HOST_ADAPTERS = 2001
CTR_HOST_PARENT = 2002
CTR_HOST_CPU = 2003
CTR_HOST_MEMORY = 2004
CTR_HOST_DISK_IO = 2005
CTR_HOST_NET_IO = 2006
CTR_VIRT_CPU = 2101
CTR_VIRT_MEMORY = 2102
CTR_VIRT_DISK_IO = 2103
CTR_VIRT_NET_IO = 2104

# sFlowDataSource types (the top byte of a source_id).
DS_IFINDEX = 0
DS_PHYSICAL_ENTITY = 2
DS_LOGICAL_ENTITY = 3

HEADER_PROTO_ETHERNET = 1
# Interface fields of a flow sample: 2 format bits + 30 bits of value.
IF_LOCAL = 0x3FFFFFFF                 # format 0, the switch itself
IF_DISCARD = 0x40000000               # format 1 | reason
DISCARD_UNKNOWN = 256
IF_MULTIPLE = 0x80000000              # format 2 | number of interfaces
IF_MULTIPLE_UNKNOWN = 0x7FFFFFFF

U32_UNKNOWN = 0xFFFFFFFF              # a counter the agent does not have
U64_UNKNOWN = 0xFFFFFFFFFFFFFFFF


def u32(v: int) -> bytes:
    return struct.pack("!I", v & 0xFFFFFFFF)


def u64(v: int) -> bytes:
    return struct.pack("!Q", v & 0xFFFFFFFFFFFFFFFF)


def f32(v: float) -> bytes:
    return struct.pack("!f", v)


def opaque(data: bytes) -> bytes:
    """Variable-length opaque / string: length, bytes, zero padding to 4."""
    return u32(len(data)) + data + b"\0" * (-len(data) % 4)


def string(text: str, max_len: int) -> bytes:
    return opaque(text.encode("utf-8", "replace")[:max_len])


def record(fmt: int, body: bytes, enterprise: int = 0) -> bytes:
    return u32(enterprise << 12 | fmt) + u32(len(body)) + body


def source_id(ds_type: int, index: int) -> int:
    return (ds_type & 0xFF) << 24 | (index & 0xFFFFFF)


# ---- flow records ------------------------------------------------------------------

def raw_header(frame_length: int, header: bytes, stripped: int = 0) -> bytes:
    """Sampled header (0:1): Ethernet, the frame's length on the wire
    (without FCS, so stripped = 0 for what a poll thread sees)."""
    return record(FLOW_RAW_HEADER, u32(HEADER_PROTO_ETHERNET) + u32(frame_length)
                  + u32(stripped) + opaque(header))


def extended_switch(src_vlan: int, dst_vlan: int, src_priority: int = 0,
                    dst_priority: int = 0) -> bytes:
    return record(FLOW_EXT_SWITCH, u32(src_vlan) + u32(src_priority) + u32(dst_vlan)
                  + u32(dst_priority))


def flow_sample(seq: int, src: int, rate: int, pool: int, drops: int, input_if: int,
                output_if: int, records: list[bytes]) -> bytes:
    body = (u32(seq) + u32(src) + u32(rate) + u32(pool) + u32(drops) + u32(input_if)
            + u32(output_if) + u32(len(records)) + b"".join(records))
    return record(FLOW_SAMPLE, body)


def counters_sample(seq: int, src: int, records: list[bytes]) -> bytes:
    return record(COUNTERS_SAMPLE, u32(seq) + u32(src) + u32(len(records)) + b"".join(records))


# ---- counter records ---------------------------------------------------------------

@dataclass
class IfCounters:
    """Generic interface counters (RFC 2233 subset, sFlow 0:1)."""
    if_index: int
    if_type: int = 6                  # ethernetCsmacd
    speed: int = 0                    # bits per second
    direction: int = 0                # 0 unknown, 1 full, 2 half duplex
    admin_up: bool = False
    oper_up: bool = False
    in_octets: int = 0
    in_ucast: int = 0
    in_mcast: int = U32_UNKNOWN
    in_bcast: int = U32_UNKNOWN
    in_discards: int = 0
    in_errors: int = 0
    in_unknown_protos: int = U32_UNKNOWN
    out_octets: int = 0
    out_ucast: int = 0
    out_mcast: int = U32_UNKNOWN
    out_bcast: int = U32_UNKNOWN
    out_discards: int = 0
    out_errors: int = 0
    promiscuous: bool = False


def generic_if(c: IfCounters) -> bytes:
    status = (1 if c.admin_up else 0) | (2 if c.oper_up else 0)
    body = (u32(c.if_index) + u32(c.if_type) + u64(c.speed) + u32(c.direction) + u32(status)
            + u64(c.in_octets) + u32(c.in_ucast) + u32(c.in_mcast) + u32(c.in_bcast)
            + u32(c.in_discards) + u32(c.in_errors) + u32(c.in_unknown_protos)
            + u64(c.out_octets) + u32(c.out_ucast) + u32(c.out_mcast) + u32(c.out_bcast)
            + u32(c.out_discards) + u32(c.out_errors) + u32(int(c.promiscuous)))
    return record(CTR_GENERIC_IF, body)


def ethernet(frame_too_longs: int) -> bytes:
    """Ethernet counters (0:2): the switch knows only frames too long; the
    other twelve dot3Stats counters are sent as unknown."""
    fields = [U32_UNKNOWN] * 13
    fields[10] = frame_too_longs      # dot3StatsFrameTooLongs
    return record(CTR_ETHERNET, b"".join(u32(v) for v in fields))


def host_descr(hostname: str, uuid: bytes, machine_type: int, os_name: int,
               os_release: str) -> bytes:
    uuid16 = (uuid + b"\0" * 16)[:16]
    body = (string(hostname, 64) + uuid16 + u32(machine_type) + u32(os_name)
            + string(os_release, 32))
    return record(CTR_HOST_DESCR, body)


def host_adapters(adapters: list[tuple[int, list[bytes]]]) -> bytes:
    """(ifIndex, [6-byte MACs]) per adapter; each MAC padded to 8 bytes."""
    body = u32(len(adapters))
    for if_index, macs in adapters:
        body += u32(if_index) + u32(len(macs)) + b"".join(m[:6] + b"\0\0" for m in macs)
    return record(CTR_HOST_ADAPTERS, body)


def host_parent(ds_type: int, index: int) -> bytes:
    return record(CTR_HOST_PARENT, u32(ds_type) + u32(index))


def host_cpu(c) -> bytes:
    """c: host.CpuCounters."""
    body = (f32(c.load_one) + f32(c.load_five) + f32(c.load_fifteen) + u32(c.proc_run)
            + u32(c.proc_total) + u32(c.cpu_num) + u32(c.cpu_speed_mhz) + u32(c.uptime_s)
            + u32(c.user_ms) + u32(c.nice_ms) + u32(c.system_ms) + u32(c.idle_ms)
            + u32(c.wio_ms) + u32(c.intr_ms) + u32(c.sintr_ms) + u32(c.interrupts)
            + u32(c.contexts) + u32(c.steal_ms) + u32(c.guest_ms) + u32(c.guest_nice_ms))
    return record(CTR_HOST_CPU, body)


def host_memory(m) -> bytes:
    """m: host.MemoryCounters (bytes; page and swap counts in pages)."""
    body = (u64(m.total) + u64(m.free) + u64(m.shared) + u64(m.buffers) + u64(m.cached)
            + u64(m.swap_total) + u64(m.swap_free) + u32(m.page_in) + u32(m.page_out)
            + u32(m.swap_in) + u32(m.swap_out))
    return record(CTR_HOST_MEMORY, body)


def host_disk_io(d) -> bytes:
    """d: host.DiskCounters."""
    body = (u64(d.total) + u64(d.free) + u32(d.part_max_used) + u32(d.reads)
            + u64(d.bytes_read) + u32(d.read_time_ms) + u32(d.writes) + u64(d.bytes_written)
            + u32(d.write_time_ms))
    return record(CTR_HOST_DISK_IO, body)


def _net_io(fmt: int, n) -> bytes:
    body = (u64(n.bytes_in) + u32(n.pkts_in) + u32(n.errs_in) + u32(n.drops_in)
            + u64(n.bytes_out) + u32(n.pkts_out) + u32(n.errs_out) + u32(n.drops_out))
    return record(fmt, body)


def host_net_io(n) -> bytes:
    """n: host.NetCounters."""
    return _net_io(CTR_HOST_NET_IO, n)


def virt_net_io(n) -> bytes:
    return _net_io(CTR_VIRT_NET_IO, n)


def virt_cpu(state: int, cpu_time_ms: int, n_vcpus: int) -> bytes:
    return record(CTR_VIRT_CPU, u32(state) + u32(cpu_time_ms) + u32(n_vcpus))


def virt_memory(memory: int, max_memory: int) -> bytes:
    return record(CTR_VIRT_MEMORY, u64(memory) + u64(max_memory))


def virt_disk_io(capacity: int, allocation: int, available: int, rd_req: int, rd_bytes: int,
                 wr_req: int, wr_bytes: int, errs: int) -> bytes:
    body = (u64(capacity) + u64(allocation) + u64(available) + u32(rd_req) + u64(rd_bytes)
            + u32(wr_req) + u64(wr_bytes) + u32(errs))
    return record(CTR_VIRT_DISK_IO, body)


# ---- the datagram ------------------------------------------------------------------

def address(addr: str) -> bytes:
    ip = ipaddress.ip_address(addr)
    return u32(1 if ip.version == 4 else 2) + ip.packed


DATAGRAM_HEADER_MAX = 4 + 4 + 16 + 4 + 4 + 4 + 4    # IPv6 agent


def datagram(agent: str, sub_agent_id: int, seq: int, uptime_ms: int,
             samples: list[bytes]) -> bytes:
    return (u32(5) + address(agent) + u32(sub_agent_id) + u32(seq) + u32(uptime_ms)
            + u32(len(samples)) + b"".join(samples))
