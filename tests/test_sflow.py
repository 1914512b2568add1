"""sFlow from the switch: sampling in the C fast path (real traffic through
a datapath between network namespaces), the agent's datagrams captured on a
UDP socket and decoded by tshark (Debian's Wireshark sFlow dissector) for
datagram headers, flow samples and interface counters, and by the
independent test decoder (tests/sflow_testdecode.py) for the rest.

Needs root, network namespaces and tshark; skipped otherwise.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time

import pytest

pytest.importorskip("pyroute2", reason="pyroute2 is needed to build topologies")

import sflow_testdecode  # noqa: E402
from nettopo import Topology, drain, send_raw, topology_unusable  # noqa: E402

from vswitch.datapath import UPCALL_SFLOW, Datapath, make_standalone  # noqa: E402
from vswitch.flowtable import Pipeline  # noqa: E402
from vswitch.sflow.agent import PortView, SflowAgent  # noqa: E402
from vswitch.sflow.settings import SflowSettings  # noqa: E402
from vswitch.sflow.vm import VirtCpu, VirtDisk, VirtMemory  # noqa: E402

_SKIP = topology_unusable()
pytestmark = pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")
TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")


# ---- capture and tshark --------------------------------------------------------------

class Collector:
    """A UDP socket on loopback that plays the sFlow collector."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.datagrams: list[bytes] = []

    def receive(self, wait: float = 0.3) -> list[bytes]:
        got = drain(self.sock, wait)
        self.datagrams += got
        return got

    def close(self) -> None:
        self.sock.close()


def _csum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def write_pcap(path: str, datagrams: list[bytes]) -> None:
    """Each datagram as an Ethernet/IPv4/UDP frame to port 6343."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, d in enumerate(datagrams):
            udp = struct.pack("!HHHH", 40000, 6343, 8 + len(d), 0) + d
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17,
                             0, bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
            ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
            frame = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + udp
            f.write(struct.pack("<IIII", 1_700_000_000 + i, 0, len(frame), len(frame)))
            f.write(frame)


def tshark_fields(datagrams: list[bytes], fields: list[str]) -> list[dict]:
    """Per datagram: {field: [values in order]} as tshark decodes it."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "sflow.pcap")
        write_pcap(path, datagrams)
        cmd = [TSHARK, "-r", path, "-n", "-T", "json", "-Y", "sflow"]
        for fld in fields:
            cmd += ["-e", fld]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
    pkts = json.loads(out.stdout or "[]")
    return [{k: v for k, v in p["_source"]["layers"].items()} for p in pkts]


# ---- topology ------------------------------------------------------------------------

class Env:
    def __init__(self, n_hosts: int = 3, **dp_kw) -> None:
        self.topo = Topology("vsf")
        self.pipeline = Pipeline()
        make_standalone(self.pipeline)
        self.dp = Datapath(self.pipeline, **dp_kw)
        self.collector = Collector()
        self.hosts = [self.topo.add_host() for _ in range(n_hosts)]
        self.external_ids: dict[int, dict] = {}
        for i, h in enumerate(self.hosts):
            self.dp.add_port(i + 1, "system", name=h.port)

    def ports(self) -> list[PortView]:
        out = []
        for info in self.dp.ports():
            out.append(PortView(info.port_no, info.name, info.ifindex, info.link_up,
                                self.dp.port_stats(info.port_no),
                                self.external_ids.get(info.port_no, {}), promiscuous=True))
        return out

    def agent(self, host: bool = False, **kw) -> SflowAgent:
        s = SflowSettings(collectors=[f"127.0.0.1:{self.collector.port}"], agent="127.0.0.1",
                          sampling=kw.pop("sampling", 1), polling=kw.pop("polling", 30),
                          header=kw.pop("header", 128))
        return SflowAgent(s, self.ports, host=host, **kw)

    def samples(self, wait: float = 0.5, expect: int | None = None):
        """Flow-sample upcalls until `wait` s pass with none (or expect came)."""
        got = []
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            for u in self.dp.upcalls():
                assert u.kind == UPCALL_SFLOW
                got.append(u)
                deadline = time.monotonic() + wait
            if expect is not None and len(got) >= expect:
                break
            time.sleep(0.01)
        return got

    def close(self) -> None:
        self.dp.close()
        self.pipeline.close()
        self.collector.close()
        self.topo.close()


@pytest.fixture
def env():
    e = Env()
    try:
        yield e
    finally:
        e.close()


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def frame(dst: str, src: str, vlan: int | None = None, size: int = 100,
          payload: bytes = b"") -> bytes:
    tag = struct.pack("!HH", 0x8100, vlan) if vlan is not None else b""
    body = payload + bytes(max(0, size - 14 - len(tag) - len(payload)))
    return mac(dst) + mac(src) + tag + b"\x88\xb5" + body     # local experimental type


BCAST = "ff:ff:ff:ff:ff:ff"


def wait_until(cond, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return bool(cond())


# ---- flow samples ----------------------------------------------------------------------

def _vlan_topology(env: Env) -> tuple:
    """Port 1 trunk, ports 2 and 3 access VLAN 10."""
    env.dp.set_port_vlan(2, "access", 10)
    env.dp.set_port_vlan(3, "access", 10)
    h1, h2, h3 = env.hosts
    return h1, h2, h3


@needs_tshark
def test_flow_samples_decode_in_tshark(env):
    h1, h2, h3 = _vlan_topology(env)
    env.dp.set_sflow(1, 64)
    agent = env.agent()
    # 1: h2 broadcasts (VLAN 10 from its access port): flooded to ports 1 and 3.
    send_raw(h2, frame(BCAST, h2.mac, size=300, payload=b"flood"))
    s1 = env.samples(expect=1)
    # 2: h1 sends VLAN 10 tagged to h2 (learned on port 2): one output.
    send_raw(h1, frame(h2.mac, h1.mac, vlan=10, size=200, payload=b"unicast"))
    s2 = env.samples(expect=1)
    # 3: h1 sends on VLAN 20, which no other port carries: dropped.
    send_raw(h1, frame(BCAST, h1.mac, vlan=20, size=120, payload=b"dropped"))
    s3 = env.samples(expect=1)
    assert (len(s1), len(s2), len(s3)) == (1, 1, 1)
    for u in s1 + s2 + s3:
        agent.on_sample(u)
    agent.flush()
    dgs = env.collector.receive()
    assert len(dgs) == 1
    agent.close()

    info = {i: env.dp.port_info(i) for i in (1, 2, 3)}
    (p,) = tshark_fields(dgs, [
        "sflow_245.version", "sflow_245.agent", "sflow_245.sub_agent_id",
        "sflow_245.sequence_number", "sflow_245.numsamples", "sflow_245.sampletype",
        "sflow.flow_sample.sequence_number", "sflow.flow_sample.source_id_class",
        "sflow.flow_sample.index", "sflow.flow_sample.sampling_rate",
        "sflow.flow_sample.sample_pool", "sflow.flow_sample.dropped_packets",
        "sflow.flow_sample.input_interface", "sflow.flow_sample.output_interface_format",
        "sflow.flow_sample.output_interface_value", "sflow.flow_sample.output_interface",
        "sflow_245.header_protocol", "sflow_245.header.frame_length",
        "sflow_245.header.sampled_header_length", "sflow_245.vlan.in", "sflow_245.vlan.out",
        "eth.src", "eth.dst", "vlan.id"])
    assert p["sflow_245.version"] == ["5"]
    assert p["sflow_245.agent"] == ["127.0.0.1"]
    assert p["sflow_245.sub_agent_id"] == ["0"]
    assert p["sflow_245.sequence_number"] == ["1"]
    assert p["sflow_245.numsamples"] == ["3"]
    # Each port is its own sampler: sources 0:ifindex, sequence 1 each.
    assert p["sflow.flow_sample.source_id_class"] == ["0", "0", "0"]
    assert p["sflow.flow_sample.index"] == [
        str(info[2].ifindex), str(info[1].ifindex), str(info[1].ifindex)]
    assert p["sflow.flow_sample.sequence_number"] == ["1", "1", "2"]
    assert p["sflow.flow_sample.input_interface"] == [
        str(info[2].ifindex), str(info[1].ifindex), str(info[1].ifindex)]
    assert p["sflow.flow_sample.sampling_rate"] == ["1", "1", "1"]
    # Pools count the frames each port's sampler saw; nothing was lost.
    assert p["sflow.flow_sample.sample_pool"] == ["1", "1", "2"]
    assert p["sflow.flow_sample.dropped_packets"] == ["0", "0", "0"]
    # Outputs: flooded to 2 ports, port 2's ifindex, dropped (unknown reason).
    assert p["sflow.flow_sample.output_interface_format"] == ["2", "0", "1"]
    assert p["sflow.flow_sample.output_interface_value"] == ["2", str(info[2].ifindex),
                                                              "256"]
    assert p["sflow.flow_sample.output_interface"] == [
        "0x80000002", f"0x{info[2].ifindex:08x}", "0x40000100"]
    assert p["sflow_245.header_protocol"] == ["1", "1", "1"]
    assert p["sflow_245.header.frame_length"] == ["300", "200", "120"]
    assert p["sflow_245.header.sampled_header_length"] == ["64", "64", "64"]
    assert p["sflow_245.vlan.in"] == ["10", "10", "20"]
    assert p["sflow_245.vlan.out"] == ["10", "10", "0"]
    # tshark dissects the sampled headers themselves.
    assert p["eth.src"][-3:] == [h2.mac, h1.mac, h1.mac]
    assert p["eth.dst"][-3:] == [BCAST, h2.mac, BCAST]
    assert p["vlan.id"] == ["10", "20"]


def binomial_two_sided_p(k: int, n: int, p: float) -> float:
    """Exact two-sided binomial test p-value (sum of the outcomes no more
    likely than k)."""
    def logpmf(i: int) -> float:
        return (math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
                + i * math.log(p) + (n - i) * math.log1p(-p))
    ref = logpmf(k) + 1e-9
    return min(1.0, sum(math.exp(v) for i in range(n + 1) if (v := logpmf(i)) <= ref))


def test_sample_count_is_binomial_and_pool_counts_frames_seen(env):
    h1 = env.hosts[0]
    rate, sent = 16, 4000
    env.dp.set_sflow(rate, 128)
    frames = [frame(BCAST, h1.mac, size=80, payload=struct.pack("!I", i))
              for i in range(sent)]
    for i in range(0, sent, 500):
        send_raw(h1, *frames[i:i + 500])
        time.sleep(0.02)
    got = env.samples(wait=0.5)
    st = env.dp.port_stats(1)
    seen = st["sflow_pool"]
    # The pool is what the port really received (the ring may drop some).
    assert seen == st["rx_packets"] and seen >= sent * 0.9
    assert st["sflow_drops"] == 0
    p = binomial_two_sided_p(len(got), seen, 1 / rate)
    assert p > 1e-6, (len(got), seen, p)
    # Every sample: that rate, a pool no larger than the final one and
    # growing, no drops, the frame it was taken from.
    pools = [u.sflow_pool for u in got]
    assert pools == sorted(pools) and pools[-1] <= seen
    assert {u.sflow_rate for u in got} == {rate} and {u.sflow_drops for u in got} == {0}
    idx = [struct.unpack_from("!I", u.data, 14)[0] for u in got]
    assert len(set(idx)) == len(idx) and all(0 <= i < sent for i in idx)
    # No batch position is favoured: positions within 64-frame blocks are
    # uniform (chi-square, 63 degrees of freedom, p ~ 1e-6 cut-off).
    counts = [0] * 64
    for i in idx:
        counts[i % 64] += 1
    exp = len(idx) / 64
    chi2 = sum((c - exp) ** 2 / exp for c in counts)
    assert chi2 < 130, chi2


def test_full_queue_is_counted_as_drops_in_the_samples():
    e = Env(n_hosts=2, upcall_queue_len=8)
    try:
        h1 = e.hosts[0]
        e.dp.set_sflow(1, 64)
        send_raw(h1, *[frame(BCAST, h1.mac, size=70) for _ in range(100)])
        time.sleep(0.5)
        st = e.dp.port_stats(1)
        first = e.samples(wait=0.2)
        assert len(first) == 8                          # the queue's capacity
        assert st["sflow_pool"] == st["rx_packets"]
        lost = st["sflow_pool"] - 8
        assert st["sflow_drops"] == lost and e.dp.stats()["sflow_drops"] == lost
        assert [u.sflow_drops for u in first] == [0] * 8
        # The next sample tells the collector how many were lost.
        send_raw(h1, frame(BCAST, h1.mac, size=70))
        (nxt,) = e.samples(expect=1)
        assert nxt.sflow_drops == lost and nxt.sflow_pool == st["sflow_pool"] + 1
        agent = e.agent()
        agent.on_sample(nxt)
        agent.flush()
        (dg,) = e.collector.receive()
        (s,) = sflow_testdecode.decode(dg)["samples"]
        assert (s["drops"], s["sample_pool"]) == (lost, st["sflow_pool"] + 1)
        agent.close()
    finally:
        e.close()


def test_sampling_off_costs_nothing_and_counts_nothing(env):
    h1 = env.hosts[0]
    env.dp.set_sflow(1, 64)
    env.dp.set_sflow(0)
    send_raw(h1, *[frame(BCAST, h1.mac) for _ in range(20)])
    time.sleep(0.3)
    assert env.samples(wait=0.1) == []
    st = env.dp.port_stats(1)
    assert st["rx_packets"] == 20 and st["sflow_pool"] == 0
    with pytest.raises(ValueError):
        env.dp.set_sflow(1, 0)
    with pytest.raises(ValueError):
        env.dp.set_sflow(1, 257)


def test_datagrams_fill_to_the_mtu_with_sequence_numbers(env):
    h1, h2 = env.hosts[:2]
    env.dp.set_sflow(1, 128)
    send_raw(h1, *[frame(BCAST, h1.mac, size=400) for _ in range(150)])
    send_raw(h2, *[frame(BCAST, h2.mac, size=400) for _ in range(50)])
    got = env.samples(wait=0.5)
    assert len(got) == env.dp.port_stats(1)["rx_packets"] + env.dp.port_stats(2)["rx_packets"]
    agent = env.agent(sub_agent_id=7)
    for u in got:
        agent.on_sample(u)
    agent.flush()
    dgs = env.collector.receive()
    decoded = [sflow_testdecode.decode(d) for d in dgs]
    assert all(len(d) <= 1400 for d in dgs)
    # Full datagrams: each but the last would not have fit one more sample.
    # One sample: tag+length, 8 fields, raw header record (128 bytes), switch record.
    sample_len = 8 + 8 * 4 + (8 + 16 + 128) + (8 + 16)
    assert all(len(d) + sample_len > 1400 for d in dgs[:-1])
    assert [d["sequence_number"] for d in decoded] == list(range(1, len(dgs) + 1))
    assert {d["sub_agent_id"] for d in decoded} == {7}
    seqs: dict[int, list[int]] = {}
    for d in decoded:
        for s in d["samples"]:
            seqs.setdefault(s["source_id"], []).append(s["sequence_number"])
    assert sum(len(v) for v in seqs.values()) == len(got)
    assert all(v == list(range(1, len(v) + 1)) for v in seqs.values())
    uptimes = [d["uptime"] for d in decoded]
    assert uptimes == sorted(uptimes)
    agent.close()


# ---- counter samples -------------------------------------------------------------------

@needs_tshark
def test_interface_counters_decode_in_tshark(env):
    h1, h2, h3 = env.hosts
    send_raw(h1, *[frame(BCAST, h1.mac, size=100) for _ in range(5)])
    assert wait_until(lambda: env.dp.port_stats(3)["tx_packets"] == 5)   # h1 learned
    send_raw(h2, *[frame(h1.mac, h2.mac, size=200) for _ in range(3)])
    assert wait_until(lambda: env.dp.port_stats(1)["tx_packets"] == 3)
    agent = env.agent()
    agent.poll(force=True)
    agent.flush()
    dgs = env.collector.receive()
    agent.close()
    (p,) = tshark_fields(dgs, [
        "sflow_245.numsamples", "sflow.counters_sample.source_id_type",
        "sflow.counters_sample.source_id_index", "sflow.counters_sample.sequence_number",
        "sflow_245.counters_record_format", "sflow_245.ifindex", "sflow_245.iftype",
        "sflow_245.ifadmin_status", "sflow_245.ifoper_status", "sflow_245.ifinoct",
        "sflow_245.ifinpkt", "sflow_245.ifindisc", "sflow_245.ifinerr", "sflow_245.ifoutoct",
        "sflow_245.ifoutpkt", "sflow_245.ifoutdisc", "sflow_245.ifouterr",
        "sflow_245.ifpromisc", "sflow_245.ifinmcast", "sflow_245.dot3StatsFrameTooLongs",
        "sflow_245.dot3StatsFCSErrors"])
    infos = [env.dp.port_info(i) for i in (1, 2, 3)]
    stats = [env.dp.port_stats(i) for i in (1, 2, 3)]
    assert p["sflow_245.numsamples"] == ["3"]
    assert p["sflow.counters_sample.source_id_type"] == ["0"] * 3
    assert p["sflow.counters_sample.source_id_index"] == [str(i.ifindex) for i in infos]
    assert p["sflow.counters_sample.sequence_number"] == ["1"] * 3
    assert p["sflow_245.counters_record_format"] == ["1", "2"] * 3
    # ifIndex is the Linux ifindex of the port's device.
    assert p["sflow_245.ifindex"] == [str(socket.if_nametoindex(h.port)) for h in env.hosts]
    assert p["sflow_245.iftype"] == ["6"] * 3
    assert p["sflow_245.ifadmin_status"] == ["1"] * 3
    assert p["sflow_245.ifoper_status"] == ["1"] * 3
    for key, field in (("rx_bytes", "ifinoct"), ("rx_packets", "ifinpkt"),
                       ("rx_dropped", "ifindisc"), ("rx_errors", "ifinerr"),
                       ("tx_bytes", "ifoutoct"), ("tx_packets", "ifoutpkt"),
                       ("tx_dropped", "ifoutdisc"), ("tx_errors", "ifouterr")):
        assert p[f"sflow_245.{field}"] == [str(s[key]) for s in stats], field
    assert [int(v) for v in p["sflow_245.ifinpkt"]] == [5, 3, 0]
    assert [int(v) for v in p["sflow_245.ifoutpkt"]] == [3, 5, 5]
    assert p["sflow_245.ifpromisc"] == ["1"] * 3
    assert p["sflow_245.ifinmcast"] == ["4294967295"] * 3      # unknown, said so
    assert p["sflow_245.dot3StatsFrameTooLongs"] == ["0"] * 3
    assert p["sflow_245.dot3StatsFCSErrors"] == ["4294967295"] * 3


# ---- host and VM structures (the independent test decoder) ----------------------------

class FixedVmStats:
    """A VmStatsProvider as the host manager will implement it (here with
    fixed answers, to check that what it says is what gets sent)."""

    def cpu(self, vm):
        return VirtCpu(state=1, cpu_time_ms=123456, n_vcpus=4)

    def memory(self, vm):
        return VirtMemory(memory=2 << 30, max_memory=4 << 30)

    def disk(self, vm):
        return VirtDisk(capacity=10 << 30, allocation=3 << 30, available=7 << 30, rd_req=11,
                        rd_bytes=22 << 20, wr_req=33, wr_bytes=44 << 20, errs=0)


def _meminfo() -> dict:
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = int(v.split()[0]) * 1024
    return out


def test_host_and_vm_structures(env):
    h1, h2, h3 = env.hosts
    vm_id = "6f1c2a9e-0d4b-4c1e-9a57-3b2f8e6d1c40"
    env.external_ids[2] = {"iface-id": "vif-a", "vm-id": vm_id, "vm-name": "guest-a",
                           "attached-mac": h2.mac}
    env.external_ids[3] = {"iface-id": "vif-b", "vm-uuid": vm_id}    # same VM, 2nd NIC
    env.external_ids[1] = {"iface-id": "vif-c"}                       # no VM id: not a VM
    send_raw(h2, *[frame(BCAST, h2.mac, size=150) for _ in range(4)])
    assert wait_until(lambda: env.dp.port_stats(3)["tx_packets"] == 4)   # h2 learned
    send_raw(h1, *[frame(h2.mac, h1.mac, size=90) for _ in range(2)])
    assert wait_until(lambda: env.dp.port_stats(2)["tx_packets"] == 2)
    agent = env.agent(host=True, vm_stats=FixedVmStats(), sub_agent_id=3)
    agent.poll(force=True)
    agent.flush()
    dgs = env.collector.receive()
    agent.close()
    samples = [s for d in dgs for s in sflow_testdecode.decode(d)["samples"]]
    by_src = {(s["source_type"], s["source_index"]): s for s in samples}
    assert len(samples) == 5 and len(by_src) == 5   # 3 ports, the host, one VM

    host = by_src[(2, 1)]["records"]
    assert sorted(k for k in host) == [(0, 2000), (0, 2001), (0, 2003), (0, 2004), (0, 2005),
                                       (0, 2006)]
    (descr,) = host[(0, 2000)]
    assert descr["hostname"] == socket.gethostname()
    with open("/etc/machine-id") as f:
        machine_id = f.read().strip()
    if not os.path.exists("/sys/class/dmi/id/product_uuid"):
        assert descr["uuid"].hex() == machine_id
    assert descr["machine_type"] == {"x86_64": 3, "aarch64": 10}.get(os.uname().machine, 1)
    assert descr["os_name"] == 2 and descr["os_release"] == os.uname().release
    (adapters,) = host[(0, 2001)]
    for a in adapters["adapters"]:
        name = socket.if_indextoname(a["ifIndex"])
        with open(f"/sys/class/net/{name}/address") as f:
            assert a["macs"] == [bytes.fromhex(f.read().strip().replace(":", ""))]
        assert os.path.exists(f"/sys/class/net/{name}/device")
    assert {h.port_ifindex for h in env.hosts}.isdisjoint(a["ifIndex"] for a in
                                                           adapters["adapters"])
    (cpu,) = host[(0, 2003)]
    assert cpu["cpu_num"] == os.cpu_count()
    load = os.getloadavg()
    assert abs(cpu["load_one"] - load[0]) < 1.0
    with open("/proc/uptime") as f:
        assert abs(cpu["uptime"] - float(f.read().split()[0])) < 5
    assert cpu["cpu_user"] > 0 and cpu["cpu_idle"] > 0 and cpu["contexts"] > 0
    assert 0 < cpu["proc_run"] <= cpu["proc_total"]
    (mem,) = host[(0, 2004)]
    mi = _meminfo()
    assert mem["mem_total"] == mi["MemTotal"]
    assert mem["swap_total"] == mi["SwapTotal"]
    assert 0 < mem["mem_free"] <= mem["mem_total"]
    (dsk,) = host[(0, 2005)]
    assert dsk["disk_total"] > 0 and dsk["disk_free"] <= dsk["disk_total"]
    assert 0 < dsk["part_max_used"] <= 10000
    assert dsk["reads"] > 0 and dsk["bytes_read"] > 0
    (nio,) = host[(0, 2006)]
    assert nio["bytes_in"] > 0 or not adapters["adapters"]

    vm = by_src[(3, 1)]["records"]
    assert sorted(vm) == [(0, 2000), (0, 2002), (0, 2101), (0, 2102), (0, 2103), (0, 2104)]
    (vdescr,) = vm[(0, 2000)]
    assert vdescr["hostname"] == "guest-a"
    assert vdescr["uuid"].hex() == vm_id.replace("-", "")
    assert vm[(0, 2002)] == [{"container_type": 2, "container_index": 1}]
    # Network I/O of the VM = its two ports' counters, from the VM's side.
    s2, s3 = env.dp.port_stats(2), env.dp.port_stats(3)
    (vnio,) = vm[(0, 2104)]
    assert vnio["rx_packets"] == s2["tx_packets"] + s3["tx_packets"]
    assert vnio["rx_bytes"] == s2["tx_bytes"] + s3["tx_bytes"]
    assert vnio["tx_packets"] == s2["rx_packets"] + s3["rx_packets"] == 4
    assert vnio["tx_bytes"] == s2["rx_bytes"] + s3["rx_bytes"] == 600
    assert vnio["rx_packets"] == 2 + 4        # h1's unicast to port 2, h2's flood to 3
    assert vm[(0, 2101)] == [{"state": 1, "cpuTime": 123456, "nrVirtCpu": 4}]
    assert vm[(0, 2102)] == [{"memory": 2 << 30, "maxMemory": 4 << 30}]
    assert vm[(0, 2103)][0]["wr_bytes"] == 44 << 20 and vm[(0, 2103)][0]["rd_req"] == 11


def test_samples_wake_the_reader_in_bulk_packet_ins_at_once():
    """The upcall eventfd: readable at once for a controller upcall, for
    samples only when they fill 1/8 of the queue (here 2 of 16)."""
    import select

    from vswitch import ofp
    from vswitch.ofp import Match, Output, apply
    e = Env(n_hosts=2, upcall_queue_len=16)
    try:
        h1 = e.hosts[0]
        fd = e.dp.upcall_fd
        e.dp.set_sflow(1, 64)
        send_raw(h1, frame(BCAST, h1.mac))
        assert wait_until(lambda: e.dp.stats()["upcall_queued"] == 1)
        assert select.select([fd], [], [], 0.1)[0] == []       # one sample: no wake-up
        send_raw(h1, frame(BCAST, h1.mac))
        assert wait_until(lambda: e.dp.stats()["upcall_queued"] == 2)
        assert select.select([fd], [], [], 0.1)[0] == [fd]     # 1/8 full
        assert len(e.dp.upcalls()) == 2
        assert select.select([fd], [], [], 0)[0] == []         # empty again
        send_raw(h1, frame(BCAST, h1.mac))
        assert wait_until(lambda: e.dp.stats()["upcall_queued"] == 1)
        e.pipeline.add_flow(0, 100, Match(eth_type=0x88B5),
                            [apply(Output(ofp.OFPP_CONTROLLER, 64))])
        send_raw(h1, frame(BCAST, h1.mac))                     # a packet-in (and a sample)
        assert wait_until(lambda: e.dp.stats()["upcall_queued"] == 3)
        assert select.select([fd], [], [], 0.1)[0] == [fd]
        kinds = [u.kind for u in e.dp.upcalls()]
        assert sorted(kinds) == [0, 1, 1]
        assert select.select([fd], [], [], 0)[0] == []
    finally:
        e.close()
