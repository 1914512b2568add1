"""End-to-end forwarding benchmark: vswitch and Open vSwitch's userspace
datapath side by side, on the same veth topology, in the same run.

    python3 -m benches.bench_e2e [--quick] [--duration S] [--repeat N] [--json FILE]
                                 [--flows 256,65536] [--only vswitch|ovs] [--perf DIR]

Needs root, network namespaces, gcc, and for the OVS half the Debian package
openvswitch-switch (3.1 on Debian 12: `apt-get install -y openvswitch-switch`).

Topology (rebuilt for every switch and every repeat; unique names):

    [gen ns] eth0 ==veth== port1 [switch under test] port2 ==veth== eth0 [sink ns]

- Generator (tools/trafficgen.c): 60-byte IPv4/UDP frames (64 on the wire
  with the FCS), N flows (source address and UDP source port vary), sent as
  fast as one core allows for --duration seconds with sendmmsg batches
  (PACKET_QDISC_BYPASS; `--gen-mode ring` uses a PACKET_TX_RING instead).
  offered = frames the kernel accepted / seconds.
- Sink: a TPACKET_V3 ring in the sink namespace; counts only frames with
  the run's magic payload.  forwarded = counted / generator seconds.  The
  test frames are addressed to a MAC that the sink announces (a few
  broadcast frames from it before each run, so NORMAL learns it on the sink
  port and forwards the test frames as known unicast) but that its eth0 does
  not own: the sink's stack drops them at once (PACKET_OTHERHOST in
  ip_rcv) after the packet socket saw them.  With the sink's own MAC they
  would cost an IP route lookup each (no route, forwarding off: ~20% of
  the switch core, since that softirq runs on the sender's core).
- Switches: vswitch (`Datapath`, 1 poll thread) with `system` ports and with
  `afxdp` ports if this build has them; Open vSwitch (ovs-vswitchd and
  ovsdb-server started here with a private run directory and database,
  bridge datapath_type=netdev) with `system` ports and with `afxdp` ports if
  its build and the kernel allow.  Pipelines: `flow` (in_port=1,actions=
  output:2 and back) and `normal` (a MAC learning switch: vswitch's
  make_standalone, OVS's actions=NORMAL).
- CPUs (2-core machine): generator and sink on --gen-cpu (0); the switch's
  forwarding on --switch-cpu (1): vswitch's poll thread is pinned there;
  every ovs-vswitchd thread is pinned there and other_config:pmd-cpu-mask
  names it (system ports are polled by OVS's main thread, afxdp ports by a
  PMD thread).  The kernel work of a send (veth, the receiver's softirq)
  runs on the sender's core: the generator's core also pays the switch's
  receive softirq, the switch's core also pays the sink's.
- Latency: ICMP echo gen -> sink through the idle switch, --pings at
  --ping-interval; RTT from send to the kernel's receive timestamp; median
  and p99 over every repeat's pings.

Runs are interleaved (repeat 1 of every case, then repeat 2, ...) and the
table shows medians.  The ratio column is vswitch/OVS forwarded pps for the
same port type, pipeline and flow count.  Diagnostics per case: the switch
core's CPU split (/proc/stat), vswitch's thread counters (busy ns per
packet, batch size, cache hits, ring drops) and OVS's pmd-stats-show.
`--perf DIR` adds one unmeasured run per case and flow count with
`perf record -e cpu-clock -g` on the switch's threads and on the generator's
core, and keeps the data and reports in DIR.

Reading the figures: a switch is saturated when it forwards less than is
offered (its rx ring drops).  When forwarded == offered the generator's core
was the limit (with afxdp ports on veth it also runs the XDP program and the
copy into the UMEM), and "sw CPU%" / "sw ns/pkt" are the figures to compare.
Results and analysis: benches/RESULTS.md, "End-to-end forwarding".
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import importlib.util
import json
import os
import platform
import random
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from benches.ovs_switch import OvsSwitch, ovs_missing, ovs_version

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "ve"                          # namespaces and devices: ve + 6 hex + suffix

GEN_PORT, SINK_PORT = 1, 2


def _load(path: Path, name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


nettopo = _load(ROOT / "tests" / "nettopo.py", "nettopo")
trafficgen = _load(ROOT / "tools" / "trafficgen.py", "trafficgen")


class Skip(Exception):
    """This case cannot run here (the reason is printed and reported)."""


class CaseTimeout(Exception):
    """A case overran its time budget (SIGALRM)."""


@dataclass(frozen=True)
class Case:
    switch: str                        # "vswitch" | "ovs"
    port_type: str                     # "system" | "afxdp"
    pipeline: str                      # "flow" | "normal"

    @property
    def label(self) -> str:
        return f"{self.switch}/{self.port_type}/{self.pipeline}"


@dataclass
class Run:
    offered_pps: float
    forwarded_pps: float
    sent: int
    counted: int
    seconds: float
    flows_seen: int
    sink_ring_drops: int
    cpu: dict[str, dict[str, float]]
    switch_thread_ns: int              # CPU time of the switch's threads during the run
    switch: dict[str, Any]


@dataclass
class CaseResult:
    case: Case
    runs: dict[int, list[Run]] = field(default_factory=dict)    # flows -> runs
    rtt_us: list[float] = field(default_factory=list)
    pings_sent: int = 0
    skipped: str | None = None
    errors: list[str] = field(default_factory=list)
    perf: dict[int, str] = field(default_factory=dict)          # flows -> report excerpt
    info: dict[str, str] = field(default_factory=dict)          # e.g. OVS port status


# --- small helpers ---------------------------------------------------------------

def _percentile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = (len(s) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def _cpu_times() -> dict[str, list[int]]:
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3:4].isdigit():
                name, *vals = line.split()
                out[name] = [int(v) for v in vals[:8]]
    return out


def _cpu_split(before: dict[str, list[int]], after: dict[str, list[int]],
               cpus: list[int]) -> dict[str, dict[str, float]]:
    """Per CPU: % user, system, softirq, idle, steal between two samples."""
    out = {}
    for c in cpus:
        a, b = before.get(f"cpu{c}"), after.get(f"cpu{c}")
        if not a or not b:
            continue
        d = [y - x for x, y in zip(a, b)]
        tot = sum(d) or 1
        user, nice, system, idle, iowait, irq, softirq, steal = d
        out[f"cpu{c}"] = {"usr": 100 * (user + nice) / tot, "sys": 100 * system / tot,
                          "sirq": 100 * (softirq + irq) / tot,
                          "idle": 100 * (idle + iowait) / tot, "steal": 100 * steal / tot}
    return out


def _threads(pid: int | str = "self") -> list[tuple[int, str]]:
    out = []
    base = Path(f"/proc/{pid}/task")
    for t in base.iterdir():
        with contextlib.suppress(OSError):
            out.append((int(t.name), (t / "comm").read_text().strip()))
    return out


def _pin(tid: int, cpu: int) -> None:
    with contextlib.suppress(OSError):
        os.sched_setaffinity(tid, {cpu})


def _sched_ns(pid: int, tids: list[int]) -> dict[int, int]:
    """Nanoseconds each thread has run (first field of /proc/.../schedstat)."""
    out = {}
    for t in tids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            out[t] = int(Path(f"/proc/{pid}/task/{t}/schedstat").read_text().split()[0])
    return out


# --- switches under test ------------------------------------------------------------

class VswitchSUT:
    """vswitch: a Datapath with one poll thread over the two veth ends."""

    def __init__(self, case: Case, cpu: int) -> None:
        self.case = case
        self.cpu = cpu
        self.dp = None
        self.pipeline = None
        self.port_status: dict[str, str] = {}

    def start(self, gen_port: str, sink_port: str) -> None:
        from vswitch.datapath import Datapath, DatapathError, make_standalone
        from vswitch.flowtable import Pipeline
        from vswitch.ofp import Match, Output, apply

        self.pipeline = Pipeline()
        if self.case.pipeline == "normal":
            make_standalone(self.pipeline)
        else:
            self.pipeline.add_flow(0, 100, Match(in_port=GEN_PORT), [apply(Output(SINK_PORT))])
            self.pipeline.add_flow(0, 100, Match(in_port=SINK_PORT), [apply(Output(GEN_PORT))])
        self.dp = Datapath(self.pipeline, n_threads=1)
        for no, name in ((GEN_PORT, gen_port), (SINK_PORT, sink_port)):
            try:
                info = self.dp.add_port(no, self.case.port_type, name=name)
            except DatapathError as e:
                if self.case.port_type == "afxdp":
                    raise Skip(f"vswitch afxdp port refused: {e}") from None
                raise
            if self.case.port_type == "afxdp":
                role = "gen" if no == GEN_PORT else "sink"
                self.port_status[role] = (f"xdp_mode={getattr(info, 'xdp_mode', '?')} "
                                          f"zerocopy={getattr(info, 'xdp_zerocopy', '?')}")
        self.pin()

    def threads(self) -> tuple[int, list[int]]:
        """(pid, tids) of the forwarding threads: the poll threads."""
        return os.getpid(), [t for t, comm in _threads() if comm.startswith("vs-poll")]

    def pin(self) -> None:
        for tid in self.threads()[1]:
            _pin(tid, self.cpu)

    def snapshot(self) -> dict[str, Any]:
        assert self.dp is not None
        return {"thread": self.dp.thread_stats(0), "gen_port": self.dp.port_stats(GEN_PORT),
                "sink_port": self.dp.port_stats(SINK_PORT), "dp": self.dp.stats()}

    def begin(self) -> None:
        self.pin()
        self._before = self.snapshot()

    def end(self) -> dict[str, Any]:
        a, b = self._before, self.snapshot()
        th = {k: b["thread"][k] - a["thread"][k] for k in
              ("packets", "batches", "emc_hits", "megaflow_hits", "misses", "busy_rounds",
               "idle_rounds", "sleeps", "proc_ns")}
        pk = th["packets"] or 1
        return {
            "busy_ns_per_pkt": th["proc_ns"] / pk,
            "avg_batch": th["packets"] / (th["batches"] or 1),
            "emc_pct": 100 * th["emc_hits"] / pk,
            "megaflow_pct": 100 * th["megaflow_hits"] / pk,
            "miss_pct": 100 * th["misses"] / pk,
            "rx_ring_drops": b["gen_port"]["rx_ring_drops"] - a["gen_port"]["rx_ring_drops"],
            "tx_dropped": b["sink_port"]["tx_dropped"] - a["sink_port"]["tx_dropped"],
            "normal_packets": b["dp"]["normal_packets"] - a["dp"]["normal_packets"],
            "normal_floods": b["dp"]["normal_floods"] - a["dp"]["normal_floods"],
            "thread": th,
        }

    def stop(self) -> None:
        if self.dp is not None:
            self.dp.close()
            self.dp = None
        if self.pipeline is not None:
            self.pipeline.close()
            self.pipeline = None


class OvsSUT(OvsSwitch):
    """Open vSwitch userspace datapath (benches/ovs_switch.py: a private
    ovsdb-server and ovs-vswitchd, one netdev bridge), its PMD on `cpu`."""

    def __init__(self, case: Case, cpu: int, bridge: str) -> None:
        super().__init__(bridge, other_config={"pmd-cpu-mask": f"{1 << cpu:#x}"})
        self.case = case
        self.cpu = cpu
        self.port_status: dict[str, str] = {}

    def start(self, gen_port: str, sink_port: str) -> None:
        super().start()
        d = self.dir
        self._pin_all()
        br = self.bridge
        for no, name in ((GEN_PORT, gen_port), (SINK_PORT, sink_port)):
            args = ["add-port", br, name, "--", "set", "Interface", name,
                    f"ofport_request={no}"]
            if self.case.port_type == "afxdp":
                args += ["type=afxdp", "options:n_rxq=1"]
            self.vsctl(*args, check=False)
            ofport = self.vsctl("get", "Interface", name, "ofport").strip()
            if ofport != str(no):
                err = self.vsctl("get", "Interface", name, "error", check=False).strip()
                msg = f"OVS {self.case.port_type} port {name}: ofport {ofport}, error {err}"
                if self.case.port_type == "afxdp":
                    raise Skip(msg + self._log_tail("afxdp|xdp|XDP"))
                raise RuntimeError(msg + self._log_tail())
        self.ofctl("del-flows", br)
        if self.case.pipeline == "normal":
            self.ofctl("add-flow", br, "priority=0,actions=NORMAL")
        else:
            self.ofctl("add-flow", br, f"in_port={GEN_PORT},actions=output:{SINK_PORT}")
            self.ofctl("add-flow", br, f"in_port={SINK_PORT},actions=output:{GEN_PORT}")
        if self.case.port_type == "afxdp":
            log = (d / "ovs-vswitchd.log").read_text(errors="replace")
            for role, name in (("gen", gen_port), ("sink", sink_port)):
                m = re.findall(rf"{name}: (.*XDP mode will be in use)", log)
                self.port_status[role] = m[-1] if m else "xdp mode not logged"
        self._pin_all()

    def _log_tail(self, pattern: str = "ERR|WARN") -> str:
        assert self.dir is not None
        try:
            lines = (self.dir / "ovs-vswitchd.log").read_text().splitlines()
        except OSError:
            return ""
        hits = [ln for ln in lines if re.search(pattern, ln)][-4:]
        return ("; log: " + " | ".join(hits)) if hits else ""

    def threads(self) -> tuple[int, list[int]]:
        """(pid, tids): every ovs-vswitchd thread (main, PMD, handlers, ...)."""
        if self.vswitchd is None or self.vswitchd.poll() is not None:
            return 0, []
        return self.vswitchd.pid, [t for t, _ in _threads(self.vswitchd.pid)]

    def _pin_all(self) -> None:
        for tid in self.threads()[1]:
            _pin(tid, self.cpu)

    def begin(self) -> None:
        self._pin_all()
        self.appctl("dpif-netdev/pmd-stats-clear", check=False)

    def end(self) -> dict[str, Any]:
        text = self.appctl("dpif-netdev/pmd-stats-show", check=False)
        return {"pmd_stats": _parse_pmd_stats(text)}


def _parse_pmd_stats(text: str) -> dict[str, dict[str, float]]:
    """pmd-stats-show -> {thread: {stat: value}} (cycles as numbers)."""
    out: dict[str, dict[str, float]] = {}
    cur = None
    for line in text.splitlines():
        if line.endswith(":") and ("thread" in line):
            cur = line.rstrip(":").strip()
            out[cur] = {}
            continue
        m = re.match(r"\s*([a-z][a-z. ]+?):\s*([\d.]+)", line)
        if m and cur is not None:
            out[cur][m.group(1)] = float(m.group(2))
    return out


# --- one case -----------------------------------------------------------------------

@dataclass
class Settings:
    duration: float
    warmup: float
    flows: list[int]
    pings: int
    ping_interval_ms: float
    gen_cpu: int
    switch_cpu: int
    gen_mode: str
    perf_dir: Path | None


# Functions whose inclusive share (perf --children) says where a packet's time
# goes on the switch's threads: user-space pipeline, receive, transmit (which
# includes the veth and the sink namespace's softirq, run inline).
PERF_KEY_SYMBOLS = (
    "vs_process_batch", "dp_normal", "dp_run_batch", "afp_rx", "dp_netdev_input__",
    "dp_netdev_process_rxq_port", "netdev_linux_rxq_recv", "netdev_afxdp_rxq_recv",
    "netdev_send", "dp_netdev_pmd_flush_output_packets", "__sys_sendmmsg", "__sys_recvmmsg",
    "__sys_sendto", "packet_sendmsg", "packet_recvmsg", "xsk_sendmsg", "__xsk_sendmsg",
    "veth_xmit", "__netif_receive_skb", "process_backlog", "net_rx_action",
    "tpacket_rcv", "packet_rcv", "ip_rcv", "ip_route_input_noref", "do_epoll_wait",
    "do_sys_poll", "__x64_sys_poll", "schedule",
)


def _perf_record(target: tuple[int, list[int]], seconds: float,
                 out: Path) -> subprocess.Popen | None:
    pid, tids = target
    if not shutil.which("perf") or not tids:
        return None
    who = ["-t", ",".join(map(str, tids))] if pid == os.getpid() else ["-p", str(pid)]
    return subprocess.Popen(
        ["perf", "record", "-q", "-e", "cpu-clock", *who, "-g", "-o", str(out),
         "--", "sleep", f"{seconds:.2f}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _perf_report(data: Path, top: int = 25) -> str:
    r = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--stdio",
                        "--sort", "dso,sym", "-g", "none", "--percent-limit", "0.7"],
                       capture_output=True, text=True, timeout=120)
    lines = [ln for ln in r.stdout.splitlines() if ln.strip() and not ln.startswith("#")]
    out = ["self time (top):", *lines[:top]]
    r = subprocess.run(["perf", "report", "-i", str(data), "--children", "--stdio",
                        "--sort", "sym", "-g", "none"],
                       capture_output=True, text=True, timeout=120)
    incl = []
    for ln in r.stdout.splitlines():
        parts = ln.split()
        if len(parts) >= 4 and parts[-1] in PERF_KEY_SYMBOLS and parts[0].endswith("%"):
            incl.append(f"  {parts[0]:>8} {parts[-1]}")
    if incl:
        out += ["inclusive (with callees):", *incl]
    return "\n".join(out)


def run_case(tg, case: Case, st: Settings, res: CaseResult, first: bool) -> None:
    """Build the topology and the switch, measure latency and throughput,
    tear everything down (whatever happens)."""
    subnet = random.randrange(64, 250)
    with nettopo.Topology(PREFIX) as topo:
        gen = topo.add_host(f"10.{subnet}.0.1/24")
        sink = topo.add_host(f"10.{subnet}.0.2/24")
        sut: VswitchSUT | OvsSUT
        if case.switch == "vswitch":
            sut = VswitchSUT(case, st.switch_cpu)
        else:
            sut = OvsSUT(case, st.switch_cpu, topo.name("br"))
        try:
            sut.start(gen.port, sink.port)
            res.info.update({f"{k} port": v for k, v in sut.port_status.items()})
            # Teach NORMAL both MACs (and fill ARP caches): not measured.
            warm = tg.ping(gen.ns, sink.ip, count=5, interval_ms=20)
            if warm["received"] == 0:
                raise RuntimeError(f"{case.label}: no ping through the switch")
            p = tg.ping(gen.ns, sink.ip, count=st.pings, interval_ms=st.ping_interval_ms)
            res.rtt_us.extend(p["rtt_us"])
            res.pings_sent += p["sent"]
            # The MAC the test frames go to: announced by the sink, not its own.
            sink_mac = "02:5e:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(4))
            for flows in st.flows:
                gen_args = dict(src_mac=gen.mac, dst_mac=sink_mac, src_ip=f"10.{subnet}.128.0",
                                dst_ip=f"10.{subnet}.0.250", flows=flows, cpu=st.gen_cpu,
                                mode=st.gen_mode)
                tg.hello(sink.ns, sink_mac)
                tg.generate(gen.ns, duration=st.warmup, run_id=0, **gen_args)
                run = _measure(tg, sut, gen, sink, st, gen_args)
                res.runs.setdefault(flows, []).append(run)
                print(f"  {case.label:22} flows={flows:<6} offered {run.offered_pps / 1e6:6.3f}"
                      f" Mpps  forwarded {run.forwarded_pps / 1e6:6.3f} Mpps", flush=True)
                if first and st.perf_dir is not None:
                    res.perf[flows] = _perf_run(tg, sut, gen, sink, st, gen_args, case, flows)
        finally:
            sut.stop()


def _measure(tg, sut, gen, sink, st: Settings, gen_args: dict[str, Any]) -> Run:
    run_id = secrets.randbits(31) | 1
    sut.begin()
    pid, tids = sut.threads()
    with tg.sink(sink.ns, run_id=run_id, cpu=st.gen_cpu, max_seconds=st.duration + 60) as sk:
        c0, t0 = _cpu_times(), _sched_ns(pid, tids)
        g = tg.generate(gen.ns, duration=st.duration, run_id=run_id, **gen_args)
        c1, t1 = _cpu_times(), _sched_ns(pid, tids)
        time.sleep(0.1)                # frames still in rings
    s = sk.result or {}
    diag = sut.end()
    secs = g["seconds"] or 1.0
    return Run(offered_pps=g["sent"] / secs, forwarded_pps=s.get("count", 0) / secs,
               sent=g["sent"], counted=s.get("count", 0), seconds=secs,
               flows_seen=s.get("flows_seen", 0), sink_ring_drops=s.get("ring_drops", 0),
               cpu=_cpu_split(c0, c1, [st.gen_cpu, st.switch_cpu]),
               switch_thread_ns=sum(t1[t] - t0[t] for t in t1 if t in t0), switch=diag)


def _perf_run(tg, sut, gen, sink, st: Settings, gen_args: dict[str, Any], case: Case,
              flows: int) -> str:
    assert st.perf_dir is not None
    st.perf_dir.mkdir(parents=True, exist_ok=True)
    name = f"{case.switch}-{case.port_type}-{case.pipeline}-{flows}"
    data = st.perf_dir / f"{name}.data"
    dur = max(st.duration, 3.0)
    gdata = st.perf_dir / f"{name}-gencpu.data"
    rec = _perf_record(sut.threads(), dur - 1.0, data)
    if rec is None:
        return "perf not installed"
    grec = subprocess.Popen(
        ["perf", "record", "-q", "-e", "cpu-clock", "-C", str(st.gen_cpu), "-g", "-o",
         str(gdata), "--", "sleep", f"{dur - 1.0:.2f}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        tg.generate(gen.ns, duration=dur, run_id=0, **gen_args)
        rec.wait(timeout=30)
        grec.wait(timeout=30)
    finally:
        for p in (rec, grec):
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=10)
    report = ("switch threads, " + _perf_report(data) + "\n\ngenerator core (cpu"
              f"{st.gen_cpu}: generator, sink, softirqs it runs), " + _perf_report(gdata, 15))
    (st.perf_dir / f"{name}.txt").write_text(report + "\n")
    return report


# --- report ---------------------------------------------------------------------------

def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def summarize(results: list[CaseResult], switch_cpu: int,
              gen_cpu: int) -> list[dict[str, Any]]:
    rows = []
    by_key: dict[tuple[str, str, str, int], float] = {}
    for r in results:
        for flows, runs in r.runs.items():
            by_key[(r.case.switch, r.case.port_type, r.case.pipeline, flows)] = _median(
                [x.forwarded_pps for x in runs])
    for r in results:
        base = {"switch": r.case.switch, "port_type": r.case.port_type,
                "pipeline": r.case.pipeline,
                "rtt_p50_us": _percentile(r.rtt_us, 0.5), "rtt_p99_us": _percentile(r.rtt_us, 0.99),
                "pings_sent": r.pings_sent, "pings_received": len(r.rtt_us),
                "errors": r.errors, "info": r.info}
        if r.skipped or not r.runs:
            why = r.skipped or ("failed: " + "; ".join(r.errors) if r.errors else "not run")
            rows.append(base | {"flows": None, "skipped": why})
            continue
        for flows, runs in sorted(r.runs.items()):
            fwd = _median([x.forwarded_pps for x in runs])
            ovs = by_key.get(("ovs", r.case.port_type, r.case.pipeline, flows))
            sw_cpu, gen_cpu_name = f"cpu{switch_cpu}", f"cpu{gen_cpu}"
            row = base | {
                "flows": flows, "runs": len(runs),
                "offered_pps": _median([x.offered_pps for x in runs]),
                "forwarded_pps": fwd,
                "forwarded_min": min(x.forwarded_pps for x in runs),
                "forwarded_max": max(x.forwarded_pps for x in runs),
                "ratio_vs_ovs": (fwd / ovs) if (r.case.switch == "vswitch" and ovs) else None,
                "switch_cpu_pct": _median([100 * x.switch_thread_ns / (x.seconds * 1e9)
                                           for x in runs]),
                "switch_ns_per_pkt": _median([x.switch_thread_ns / max(x.counted, 1)
                                              for x in runs]),
                "flows_seen": min(x.flows_seen for x in runs),
                "sink_ring_drops": max(x.sink_ring_drops for x in runs),
                "switch_cpu": {k: _median([x.cpu.get(sw_cpu, {}).get(k, 0.0) for x in runs])
                               for k in ("usr", "sys", "sirq", "idle", "steal")},
                "gen_cpu": {k: _median([x.cpu.get(gen_cpu_name, {}).get(k, 0.0) for x in runs])
                            for k in ("usr", "sys", "sirq", "idle", "steal")},
                "switch_diag": _median_diag([x.switch for x in runs]),
            }
            if flows in r.perf:
                row["perf"] = r.perf[flows]
            rows.append(row)
    return rows


def _median_diag(diags: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of every numeric leaf across runs (nested dicts kept)."""
    if not diags:
        return {}
    out: dict[str, Any] = {}
    for k, v in diags[0].items():
        if isinstance(v, dict):
            out[k] = _median_diag([d.get(k, {}) for d in diags])
        elif isinstance(v, (int, float)):
            out[k] = _median([d.get(k, 0) for d in diags])
    return out


def _fmt_m(pps: float | None) -> str:
    return "-" if pps is None else f"{pps / 1e6:.3f}"


def print_table(rows: list[dict[str, Any]]) -> None:
    hdr = (f"{'switch':8} {'ports':7} {'pipeline':8} {'flows':>6} {'offered':>8} "
           f"{'fwd':>8} {'fwd/off':>7} {'vs/OVS':>6} {'RTT p50':>8} {'RTT p99':>8} "
           f"{'sw CPU%':>7} {'sw ns/pkt':>9}  core usr/sys/sirq/steal %")
    print()
    print("Mpps (median of runs); RTT in microseconds (idle switch, gen -> sink -> gen);")
    print("sw CPU% / ns/pkt: CPU time of the switch's threads (incl. the softirq work they run")
    print("inline) per second / per forwarded packet; last: /proc/stat split of the switch core")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        if r.get("skipped"):
            print(f"{r['switch']:8} {r['port_type']:7} {r['pipeline']:8}  skipped: "
                  f"{r['skipped']}")
            continue
        ratio = "-" if r["ratio_vs_ovs"] is None else f"{r['ratio_vs_ovs']:.2f}"
        c = r["switch_cpu"]
        print(f"{r['switch']:8} {r['port_type']:7} {r['pipeline']:8} {r['flows']:>6} "
              f"{_fmt_m(r['offered_pps']):>8} {_fmt_m(r['forwarded_pps']):>8} "
              f"{r['forwarded_pps'] / (r['offered_pps'] or 1):>7.2f} {ratio:>6} "
              f"{r['rtt_p50_us']:>8.0f} {r['rtt_p99_us']:>8.0f} "
              f"{r['switch_cpu_pct']:>7.0f} {r['switch_ns_per_pkt']:>9.0f}  "
              f"{c['usr']:.0f}/{c['sys']:.0f}/{c['sirq']:.0f}/{c['steal']:.0f}")
    print()
    for r in rows:
        d = r.get("switch_diag") or {}
        if r.get("skipped") or not d:
            continue
        tag = f"{r['switch']}/{r['port_type']}/{r['pipeline']}/{r['flows']}"
        if r["switch"] == "vswitch":
            print(f"  {tag}: poll thread {d['busy_ns_per_pkt']:.0f} ns/pkt busy, batch "
                  f"{d['avg_batch']:.1f}, EMC {d['emc_pct']:.0f}% megaflow "
                  f"{d['megaflow_pct']:.0f}%, rx ring drops {d['rx_ring_drops']:.0f}, "
                  f"tx dropped {d['tx_dropped']:.0f}")
        else:
            for th, s in (d.get("pmd_stats") or {}).items():
                if not s.get("packets received"):
                    continue
                cyc = (f"{s['avg processing cycles per packet']:.0f} proc cycles/pkt (TSC), "
                       if "avg processing cycles per packet" in s else "")
                n = s["packets received"]
                print(f"  {tag}: {th}: {cyc}{s.get('avg. packets per output batch', 0):.1f} "
                      f"pkts/output batch, simple match "
                      f"{100 * s.get('simple match hits', 0) / n:.0f}% EMC "
                      f"{100 * s.get('emc hits', 0) / n:.0f}% megaflow "
                      f"{100 * s.get('megaflow hits', 0) / n:.0f}%")
    seen = set()
    for r in rows:
        key = (r["switch"], r["port_type"], r["pipeline"])
        if key in seen:
            continue
        seen.add(key)
        for k, v in (r.get("info") or {}).items():
            print(f"  {'/'.join(key)}: {k}: {v}")
        for e in r.get("errors") or []:
            print(f"  {'/'.join(key)}: error: {e}")
    for r in rows:
        if r.get("perf"):
            print(f"\nperf, switch core, {r['switch']}/{r['port_type']}/{r['pipeline']}/"
                  f"{r['flows']} flows:\n{r['perf']}")


def machine() -> dict[str, str]:
    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "cores": str(os.cpu_count()), "kernel": platform.release(),
            "python": platform.python_version(), "ovs": ovs_version()}


# --- main ---------------------------------------------------------------------------------

def _vswitch_afxdp_hint() -> str | None:
    """What vswitch.datapath says about AF_XDP, if it says anything."""
    try:
        import vswitch.datapath as d
    except Exception as e:                    # the C core not built
        return f"vswitch not importable: {e}"
    for name in ("AFXDP_AVAILABLE", "afxdp_available", "HAVE_AFXDP"):
        v = getattr(d, name, None)
        if v is None:
            continue
        ok = v() if callable(v) else v
        if not ok:
            return f"vswitch.datapath.{name} is false"
        return None
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    ap.add_argument("--duration", type=float, default=None,
                    help="seconds per measured run (default 5; 1 quick)")
    ap.add_argument("--repeat", type=int, default=None, help="runs per case (default 3; 1 quick)")
    ap.add_argument("--flows", default="256,65536", help="comma-separated flow counts")
    ap.add_argument("--only", choices=("vswitch", "ovs"), help="one switch only")
    ap.add_argument("--port-types", default="system,afxdp")
    ap.add_argument("--pipelines", default="flow,normal")
    ap.add_argument("--pings", type=int, default=None, help="pings per case (default 200)")
    ap.add_argument("--ping-interval", type=float, default=10.0, help="ms between pings")
    ap.add_argument("--gen-cpu", type=int, default=0)
    ap.add_argument("--switch-cpu", type=int, default=1)
    ap.add_argument("--gen-mode", choices=("mmsg", "ring"), default="mmsg")
    ap.add_argument("--perf", metavar="DIR", help="profile the switch core once per case")
    ap.add_argument("--time-limit", type=float, default=3600,
                    help="stop starting new cases after this many seconds")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args(argv)

    if os.geteuid() != 0:
        print("bench_e2e: needs root (namespaces, AF_PACKET)", file=sys.stderr)
        return 2
    st = Settings(
        duration=args.duration or (1.0 if args.quick else 5.0),
        warmup=0.3 if args.quick else 1.0,
        flows=[int(x) for x in args.flows.split(",") if x],
        pings=args.pings or (50 if args.quick else 200),
        ping_interval_ms=args.ping_interval,
        gen_cpu=args.gen_cpu, switch_cpu=args.switch_cpu, gen_mode=args.gen_mode,
        perf_dir=Path(args.perf) if args.perf else None)
    repeat = args.repeat or (1 if args.quick else 3)
    switches = [args.only] if args.only else ["vswitch", "ovs"]
    cases = [Case(sw, pt, pl) for pt in args.port_types.split(",")
             for pl in args.pipelines.split(",") for sw in switches]
    results = {c: CaseResult(c) for c in cases}

    why_no_ovs = ovs_missing()
    vs_afxdp = _vswitch_afxdp_hint()
    for c in cases:
        if c.switch == "ovs" and why_no_ovs:
            results[c].skipped = why_no_ovs
        if c.switch == "vswitch" and c.port_type == "afxdp" and vs_afxdp:
            results[c].skipped = vs_afxdp

    main_pid = os.getpid()

    def on_term(signum, frame):
        # pyroute2 forks helpers (netns sockets) and stops them with SIGTERM:
        # they inherit this handler and must just die, not unwind our stack.
        if os.getpid() != main_pid:
            os._exit(128 + signum)
        raise SystemExit(128 + signum)

    def on_alarm(signum, frame):
        raise CaseTimeout("case overran its time budget")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGALRM, on_alarm)
    nettopo.reap_stale(PREFIX)
    mach = machine()
    print(f"machine: {mach}")
    print(f"duration {st.duration} s, repeat {repeat}, flows {st.flows}, generator "
          f"{st.gen_mode} on cpu{st.gen_cpu}, switch on cpu{st.switch_cpu}")
    t_start = time.monotonic()
    with trafficgen.TrafficGen.build() as tg:
        for rep in range(repeat):
            for c in cases:
                res = results[c]
                if res.skipped:
                    continue
                if time.monotonic() - t_start > args.time_limit:
                    print(f"time limit reached: {c.label} repeat {rep + 1} not run")
                    continue
                budget = 120 + len(st.flows) * (st.warmup + st.duration + 30)
                if rep == 0 and st.perf_dir is not None:
                    budget += len(st.flows) * (max(st.duration, 3.0) + 150)
                faulthandler.dump_traceback_later(budget - 5)
                signal.setitimer(signal.ITIMER_REAL, budget)
                try:
                    run_case(tg, c, st, res, first=rep == 0)
                except Skip as e:
                    res.skipped = str(e)
                    print(f"  {c.label}: skipped: {e}", flush=True)
                except (CaseTimeout, RuntimeError, OSError,
                        trafficgen.TrafficGenError) as e:
                    res.errors.append(f"repeat {rep + 1}: {type(e).__name__}: {e}")
                    print(f"  {c.label}: FAILED: {type(e).__name__}: {e}", flush=True)
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                    faulthandler.cancel_dump_traceback_later()
    rows = summarize(list(results.values()), st.switch_cpu, st.gen_cpu)
    print_table(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": time.strftime("%Y-%m-%d %H:%M"), "machine": mach,
                       "settings": {k: str(v) if isinstance(v, Path) else v
                                    for k, v in asdict(st).items()},
                       "repeat": repeat, "rows": rows,
                       "runs": {c.label: {str(k): [asdict(x) for x in v]
                                          for k, v in r.runs.items()}
                                for c, r in results.items()}}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
