"""An sFlow v5 decoder for the tests, written from the structure
definitions (sflow.org sflow_version_5.txt and sflow_host.txt), sharing no
code with vswitch/sflow: it checks what the agent's encoder wrote.

decode(datagram) -> dict with the header and a list of samples; every
sample carries its records as dicts keyed by (enterprise, format), with
the fields named after the specification.  Unknown records are kept raw.
Strict: trailing or missing bytes raise ValueError.
"""

from __future__ import annotations

import struct


class Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError(f"truncated: need {n} bytes at {self.pos} of {len(self.data)}")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def u32(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack(">Q", self.take(8))[0]

    def f32(self) -> float:
        return struct.unpack(">f", self.take(4))[0]

    def opaque(self) -> bytes:
        n = self.u32()
        b = self.take(n)
        pad = self.take((4 - n % 4) % 4)
        if any(pad):
            raise ValueError("non-zero XDR padding")
        return b

    def string(self) -> str:
        return self.opaque().decode()

    def done(self) -> None:
        if self.pos != len(self.data):
            raise ValueError(f"{len(self.data) - self.pos} bytes left over")


def _fields(r: Reader, spec: str) -> dict:
    """spec: 'name:type name:type ...' with type u32, u64, f32."""
    out = {}
    for item in spec.split():
        name, typ = item.split(":")
        out[name] = getattr(r, typ)()
    return out


COUNTER_LAYOUTS = {
    1: ("ifIndex:u32 ifType:u32 ifSpeed:u64 ifDirection:u32 ifStatus:u32 ifInOctets:u64 "
        "ifInUcastPkts:u32 ifInMulticastPkts:u32 ifInBroadcastPkts:u32 ifInDiscards:u32 "
        "ifInErrors:u32 ifInUnknownProtos:u32 ifOutOctets:u64 ifOutUcastPkts:u32 "
        "ifOutMulticastPkts:u32 ifOutBroadcastPkts:u32 ifOutDiscards:u32 ifOutErrors:u32 "
        "ifPromiscuousMode:u32"),
    2: ("dot3StatsAlignmentErrors:u32 dot3StatsFCSErrors:u32 "
        "dot3StatsSingleCollisionFrames:u32 dot3StatsMultipleCollisionFrames:u32 "
        "dot3StatsSQETestErrors:u32 dot3StatsDeferredTransmissions:u32 "
        "dot3StatsLateCollisions:u32 dot3StatsExcessiveCollisions:u32 "
        "dot3StatsInternalMacTransmitErrors:u32 dot3StatsCarrierSenseErrors:u32 "
        "dot3StatsFrameTooLongs:u32 dot3StatsInternalMacReceiveErrors:u32 "
        "dot3StatsSymbolErrors:u32"),
    2002: "container_type:u32 container_index:u32",
    2003: ("load_one:f32 load_five:f32 load_fifteen:f32 proc_run:u32 proc_total:u32 "
           "cpu_num:u32 cpu_speed:u32 uptime:u32 cpu_user:u32 cpu_nice:u32 cpu_system:u32 "
           "cpu_idle:u32 cpu_wio:u32 cpu_intr:u32 cpu_sintr:u32 interrupts:u32 "
           "contexts:u32 cpu_steal:u32 cpu_guest:u32 cpu_guest_nice:u32"),
    2004: ("mem_total:u64 mem_free:u64 mem_shared:u64 mem_buffers:u64 mem_cached:u64 "
           "swap_total:u64 swap_free:u64 page_in:u32 page_out:u32 swap_in:u32 swap_out:u32"),
    2005: ("disk_total:u64 disk_free:u64 part_max_used:u32 reads:u32 bytes_read:u64 "
           "read_time:u32 writes:u32 bytes_written:u64 write_time:u32"),
    2006: ("bytes_in:u64 pkts_in:u32 errs_in:u32 drops_in:u32 bytes_out:u64 pkts_out:u32 "
           "errs_out:u32 drops_out:u32"),
    2101: "state:u32 cpuTime:u32 nrVirtCpu:u32",
    2102: "memory:u64 maxMemory:u64",
    2103: ("capacity:u64 allocation:u64 available:u64 rd_req:u32 rd_bytes:u64 wr_req:u32 "
           "wr_bytes:u64 errs:u32"),
    2104: ("rx_bytes:u64 rx_packets:u32 rx_errs:u32 rx_drop:u32 tx_bytes:u64 tx_packets:u32 "
           "tx_errs:u32 tx_drop:u32"),
}


def _counter_record(fmt: int, r: Reader) -> dict:
    if fmt == 2000:                   # host_descr
        d = {"hostname": r.string(), "uuid": r.take(16), "machine_type": r.u32(),
             "os_name": r.u32(), "os_release": r.string()}
    elif fmt == 2001:                 # host_adapters
        d = {"adapters": []}
        for _ in range(r.u32()):
            idx = r.u32()
            macs = []
            for _ in range(r.u32()):
                m = r.take(8)
                if m[6:] != b"\0\0":
                    raise ValueError("MAC padding not zero")
                macs.append(m[:6])
            d["adapters"].append({"ifIndex": idx, "macs": macs})
    elif fmt in COUNTER_LAYOUTS:
        d = _fields(r, COUNTER_LAYOUTS[fmt])
    else:
        d = {"raw": r.take(len(r.data) - r.pos)}
    r.done()
    return d


def _flow_record(fmt: int, r: Reader) -> dict:
    if fmt == 1:
        d = {"header_protocol": r.u32(), "frame_length": r.u32(), "stripped": r.u32(),
             "header": r.opaque()}
    elif fmt == 1001:
        d = _fields(r, "src_vlan:u32 src_priority:u32 dst_vlan:u32 dst_priority:u32")
    else:
        d = {"raw": r.take(len(r.data) - r.pos)}
    r.done()
    return d


def _records(r: Reader, decode_one) -> dict:
    out: dict = {}
    for _ in range(r.u32()):
        tag = r.u32()
        body = Reader(r.take(r.u32()))
        key = (tag >> 12, tag & 0xFFF)
        out.setdefault(key, []).append(decode_one(key[1], body) if key[0] == 0 else
                                       {"raw": body.data})
    return out


def decode(data: bytes) -> dict:
    r = Reader(data)
    dg = {"version": r.u32()}
    if dg["version"] != 5:
        raise ValueError(f"version {dg['version']}")
    atype = r.u32()
    if atype == 1:
        dg["agent"] = ".".join(str(b) for b in r.take(4))
    elif atype == 2:
        import ipaddress
        dg["agent"] = str(ipaddress.IPv6Address(r.take(16)))
    else:
        raise ValueError(f"address type {atype}")
    dg.update(_fields(r, "sub_agent_id:u32 sequence_number:u32 uptime:u32"))
    dg["samples"] = []
    for _ in range(r.u32()):
        tag = r.u32()
        body = Reader(r.take(r.u32()))
        ent, fmt = tag >> 12, tag & 0xFFF
        s = {"enterprise": ent, "format": fmt}
        if (ent, fmt) == (0, 1):
            s.update(_fields(body, "sequence_number:u32 source_id:u32 sampling_rate:u32 "
                                   "sample_pool:u32 drops:u32 input:u32 output:u32"))
            s["records"] = _records(body, _flow_record)
        elif (ent, fmt) == (0, 2):
            s.update(_fields(body, "sequence_number:u32 source_id:u32"))
            s["records"] = _records(body, _counter_record)
        else:
            raise ValueError(f"unexpected sample {ent}:{fmt}")
        body.done()
        s["source_type"], s["source_index"] = s["source_id"] >> 24, s["source_id"] & 0xFFFFFF
        dg["samples"].append(s)
    r.done()
    return dg
