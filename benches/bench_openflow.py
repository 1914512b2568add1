"""OpenFlow benchmark: vswitch and Open vSwitch 3.1 (userspace datapath,
datapath_type=netdev) side by side in the same run.

    python3 -m benches.bench_openflow [--quick] [--repeat N] [--flows N]
                                      [--pktin-seconds S] [--setups N]
                                      [--only vswitch|ovs] [--json FILE]

Needs root, network namespaces, gcc (tools/trafficgen.c), Debian's
openvswitch-common (ovs-ofctl) and, for the Open vSwitch half,
openvswitch-switch.

(a) Flow-mod rate: `ovs-ofctl -O OpenFlow13 add-flows tcp:127.0.0.1:PORT FILE`
    with --flows distinct flows (IPv4/TCP matches, output actions) into an
    empty table through the switch's ptcp listener; wall time of the whole
    command (ovs-ofctl sends the flow mods and a barrier, and exits after
    its reply), checked with dump-aggregate (flow_count == N).  The times of
    that dump-aggregate and of the `del-flows` that empties the table again
    are reported too.
(b) Packet-in rate: a controller (benches/of_controller.py, asyncio, the
    same for both switches) with a table-miss flow to CONTROLLER; the
    generator (tools/trafficgen.c) sends 60-byte UDP frames as fast as one
    core allows for --pktin-seconds into port 1; rate = packet-ins received
    / time from the first to the last.  Also: the share of sent frames that
    reached the controller.
(c) Flow-setup latency: the controller in reactive mode (every packet-in of
    a UDP frame installs an exact flow to the other port and sends the frame
    on with a packet-out); --setups frames, each the first of a new flow,
    sent one at a time from the generator namespace; latency = time from
    send() until the frame arrives at the sink namespace.  The second frame
    of each flow, sent in a second pass a second later (switched by the
    installed flow), is the baseline.

Topology (rebuilt for each switch and repeat, unique names):
    [gen ns] eth0 ==veth== port 1 [switch] port 2 ==veth== eth0 [sink ns]
Runs are interleaved (repeat 1 of each switch, then repeat 2...), the table
shows medians over the repeats, and the ratio column is vswitch / OVS
(rate: above 1 is faster; latency: below 1 is faster).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

from benches.of_controller import Controller
from benches.ovs_switch import (
    OvsSwitch,
    free_port,
    ovs_missing,
    ovs_version,
    tcp_listening,
    wait_until,
)
from vswitch.daemon import socket_alive

ROOT = Path(__file__).resolve().parent.parent


def _load(path: Path, name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


nettopo = _load(ROOT / "tests" / "nettopo.py", "nettopo")
trafficgen = _load(ROOT / "tools" / "trafficgen.py", "trafficgen")

PREFIX = "vbo"
SINK_MAC = "02:5e:00:00:00:02"        # not the sink's own: its stack drops the frames


# --- the switches ------------------------------------------------------------------

class VswitchSUT:
    """vswitchd in a private state directory, one secure bridge, a ptcp listener."""

    kind = "vswitch"

    def __init__(self, bridge: str) -> None:
        self.bridge = bridge
        self.port = free_port()
        self.target = f"tcp:127.0.0.1:{self.port}"
        self.dir = tempfile.mkdtemp(prefix="vs-bof-")
        self.sock = os.path.join(self.dir, "vswitchd.sock")
        self.proc: subprocess.Popen | None = None
        self.env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def ctl(self, *args: str) -> str:
        r = subprocess.run([sys.executable, "-m", "vswitch.cli", "--state-dir", self.dir, *args],
                           capture_output=True, text=True, timeout=60, env=self.env, cwd=ROOT)
        if r.returncode != 0:
            raise RuntimeError(f"vswitchctl {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    def start(self) -> None:
        with open(os.path.join(self.dir, "vswitchd.log"), "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vswitch.daemon", "--state-dir", self.dir,
                 "--log-level", "warning"], cwd=ROOT, env=self.env, stdout=log,
                stderr=subprocess.STDOUT)
        wait_until(lambda: socket_alive(self.sock), 20, "vswitchd")
        self.ctl("add-br", self.bridge, "--fail-mode", "secure")
        self.ctl("set-controller", self.bridge, f"ptcp:{self.port}")
        wait_until(lambda: tcp_listening(self.port), 10, "vswitchd's OpenFlow listener")

    def add_port(self, name: str, ofport: int) -> None:
        self.ctl("add-port", self.bridge, name, "--ofport", str(ofport))

    def set_controllers(self, *targets: str) -> None:
        self.ctl("set-controller", self.bridge, f"ptcp:{self.port}", *targets)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class OvsSUT(OvsSwitch):
    kind = "ovs"


def ofctl(*args: str, timeout: float = 900) -> str:
    r = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", *args], capture_output=True,
                       text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"ovs-ofctl {' '.join(args)}: {r.stderr.strip()[:500]}")
    return r.stdout


def flow_count(target: str) -> int:
    return int(ofctl("dump-aggregate", target).split("flow_count=")[1].split()[0])


# --- (a) flow mods -----------------------------------------------------------------

def write_flow_file(n: int, path: str) -> None:
    with open(path, "w") as f:
        for i in range(n):
            f.write(f"priority={100 + i % 7},tcp,nw_src=10.{(i >> 16) & 255}.{(i >> 8) & 255}."
                    f"{i & 255},tp_dst={1 + i % 1000},actions=output:{1 + i % 2}\n")


def bench_flow_mods(sw, path: str, n: int) -> dict:
    ofctl("del-flows", sw.target)
    t0 = time.perf_counter()
    ofctl("add-flows", sw.target, path)
    seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    got = flow_count(sw.target)
    aggregate_s = time.perf_counter() - t0
    if got != n:
        raise RuntimeError(f"{sw.kind}: {got} flows after add-flows of {n}")
    t0 = time.perf_counter()
    ofctl("del-flows", sw.target)
    delete_s = time.perf_counter() - t0
    return {"flows": n, "seconds": seconds, "flow_mods_per_s": n / seconds,
            "aggregate_s": aggregate_s, "delete_all_s": delete_s}


# --- (b) packet-ins ------------------------------------------------------------------

def bench_packet_in(sw, tg, gen, sink, seconds: float, cpu: int | None) -> dict:
    ctl = Controller(free_port(), "count")
    ctl.start()
    try:
        sw.set_controllers(f"tcp:127.0.0.1:{ctl.port}")
        if not ctl.configured.wait(20):
            raise RuntimeError(f"{sw.kind} did not connect to the controller")
        ctl.reset()
        res = tg.generate(gen.ns, src_mac=gen.mac, dst_mac=SINK_MAC, src_ip=gen.ip,
                          dst_ip=sink.ip, flows=1024, duration=seconds,
                          run_id=int.from_bytes(os.urandom(2), "big"), cpu=cpu, mode="mmsg")
        # what is still queued towards the controller arrives after the generator stops
        last = -1
        while (n := ctl.stats()["packet_ins"]) != last:
            last = n
            time.sleep(0.5)
        st = ctl.stats()
    finally:
        sw.set_controllers()
        ctl.stop()
    span = (st["last"] - st["first"]) if st["packet_ins"] > 1 else 0.0
    return {"sent": res["sent"], "offered_pps": res["sent"] / res["seconds"],
            "packet_ins": st["packet_ins"],
            "packet_ins_per_s": st["packet_ins"] / span if span else 0.0,
            "delivered": st["packet_ins"] / res["sent"] if res["sent"] else 0.0}


# --- (c) flow setup --------------------------------------------------------------------

def _udp_frame(src_mac: str, src_ip: str, dst_ip: str, sport: int, tag: bytes) -> bytes:
    payload = tag + bytes(18 - len(tag))
    udp = struct.pack("!HHHH", sport, 9, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                     socket.inet_aton(src_ip), socket.inet_aton(dst_ip))
    s = sum(struct.unpack("!10H", ip))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    ip = ip[:10] + struct.pack("!H", ~s & 0xFFFF) + ip[12:]
    mac = bytes.fromhex
    return (mac(SINK_MAC.replace(":", "")) + mac(src_mac.replace(":", "")) + b"\x08\x00"
            + ip + udp)


def bench_flow_setup(sw, gen, sink, setups: int) -> dict:
    ctl = Controller(free_port(), "reactive")
    ctl.start()
    with nettopo.in_netns(gen.ns):
        tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    tx.bind(("eth0", 0))
    rx = nettopo.Sniffer(sink.ns, "eth0")
    first: list[float] = []
    second: list[float] = []
    lost = 0
    try:
        sw.set_controllers(f"tcp:127.0.0.1:{ctl.port}")
        if not ctl.configured.wait(20):
            raise RuntimeError(f"{sw.kind} did not connect to the controller")
        rx.frames(wait=0.2)                   # drop whatever came before
        # pass 1: the first frame of each new flow (miss, packet-in, flow mod, packet-out);
        # pass 2, once the switch has settled: a frame of each flow again (the flow's hit)
        for out, settle in ((first, 0.0), (second, 1.0)):
            time.sleep(settle)
            for i in range(setups):
                tag = os.urandom(8)
                t = _one_way(tx, rx, _udp_frame(gen.mac, gen.ip, sink.ip, 20000 + i, tag), tag)
                if t is None:
                    lost += 1
                else:
                    out.append(t)
            if out is first:
                installed = ctl.stats()["flows_installed"]
        repeat_misses = ctl.stats()["flows_installed"] - installed
        if os.environ.get("VS_BOF_DEBUG"):
            print(ofctl("dump-flows", sw.target), ctl.stats())
    finally:
        tx.close()
        rx.close()
        sw.set_controllers()
        ctl.stop()
    if not first:
        raise RuntimeError(f"{sw.kind}: no first packet reached the sink")
    return {"setups": setups, "lost": lost, "flows_installed": installed,
            "repeat_misses": repeat_misses,
            "setup_us_median": statistics.median(first) * 1e6,
            "setup_us_p90": _pct(first, 0.9) * 1e6,
            "forward_us_median": statistics.median(second) * 1e6 if second else None}


def _one_way(tx: socket.socket, rx, frame: bytes, tag: bytes, timeout: float = 1.0):
    t0 = time.perf_counter()
    tx.send(frame)
    deadline = t0 + timeout
    while (left := deadline - time.perf_counter()) > 0:
        r, _, _ = select.select([rx.s], [], [], left)
        if not r:
            break
        while True:
            try:
                data, _, _, addr = rx.s.recvmsg(65535, 256)
            except BlockingIOError:
                break
            if addr[2] != socket.PACKET_OUTGOING and tag in data:
                return time.perf_counter() - t0
    return None


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


# --- driver ----------------------------------------------------------------------------

def run_once(kind: str, args, tg, flow_file: str) -> dict:
    topo = nettopo.Topology(PREFIX)
    sw = VswitchSUT(topo.name("br")) if kind == "vswitch" else OvsSUT(topo.name("br"))
    try:
        gen = topo.add_host("10.251.0.1/24")
        sink = topo.add_host("10.251.0.2/24")
        phases: dict[str, float] = {}
        t = time.monotonic()
        sw.start()
        sw.add_port(gen.port, 1)
        sw.add_port(sink.port, 2)
        phases["start"] = time.monotonic() - t
        t = time.monotonic()
        out = {"flow_mod": bench_flow_mods(sw, flow_file, args.flows)}
        phases["flow_mod"] = time.monotonic() - t
        t = time.monotonic()
        out["packet_in"] = bench_packet_in(sw, tg, gen, sink, args.pktin_seconds, args.gen_cpu)
        phases["packet_in"] = time.monotonic() - t
        t = time.monotonic()
        out["flow_setup"] = bench_flow_setup(sw, gen, sink, args.setups)
        phases["flow_setup"] = time.monotonic() - t
        out["phases_s"] = phases
        return out
    finally:
        t = time.monotonic()
        sw.stop()
        topo.close()
        if "out" in locals():
            out["phases_s"]["stop"] = time.monotonic() - t


FIGURES = [("flow_mod", "flow_mods_per_s", "flow mods/s", True),
           ("flow_mod", "seconds", "add-flows s", False),
           ("flow_mod", "aggregate_s", "dump-aggregate s", False),
           ("flow_mod", "delete_all_s", "del-flows (all) s", False),
           ("packet_in", "packet_ins_per_s", "packet-ins/s", True),
           ("packet_in", "delivered", "delivered", True),
           ("flow_setup", "setup_us_median", "setup us (median)", False),
           ("flow_setup", "setup_us_p90", "setup us (p90)", False),
           ("flow_setup", "forward_us_median", "forward us (median)", False)]


def summarize(results: dict[str, list[dict]]) -> dict:
    med: dict[str, dict[str, float]] = {}
    for kind, runs in results.items():
        med[kind] = {}
        for part, key, label, _ in FIGURES:
            vals = [r[part][key] for r in runs if r.get(part, {}).get(key) is not None]
            if vals:
                med[kind][label] = statistics.median(vals)
    return med


def print_table(med: dict, n_runs: int) -> None:
    kinds = list(med)
    print(f"\nmedians over {n_runs} run(s)")
    print(f"{'figure':22}" + "".join(f"{k:>14}" for k in kinds)
          + ("   vswitch/ovs" if len(kinds) == 2 else ""))
    for _, _, label, _ in FIGURES:
        row = f"{label:22}"
        vals = [med[k].get(label) for k in kinds]
        for v in vals:
            row += f"{v:>14.4g}" if v is not None else f"{'-':>14}"
        if len(kinds) == 2 and all(vals) and vals[1]:
            row += f"{vals[0] / vals[1]:>14.2f}"
        print(row)


def machine() -> dict:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "cpus": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(), "ovs": ovs_version(),
            "load": os.getloadavg()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="CI smoke: 2,000 flows, 1 s of packet-ins, 20 setups, 1 run")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--flows", type=int, default=100_000)
    ap.add_argument("--pktin-seconds", type=float, default=3.0)
    ap.add_argument("--setups", type=int, default=200)
    ap.add_argument("--gen-cpu", type=int, default=0)
    ap.add_argument("--only", choices=["vswitch", "ovs"])
    ap.add_argument("--json", help="write every run's figures here")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeat, args.flows, args.pktin_seconds, args.setups = 1, 2000, 1.0, 20
    if os.geteuid() != 0:
        print("bench_openflow: needs root (namespaces, AF_PACKET)", file=sys.stderr)
        return 1
    if shutil.which("ovs-ofctl") is None:
        print("bench_openflow: needs ovs-ofctl (apt-get install -y openvswitch-common)",
              file=sys.stderr)
        return 1
    kinds = [args.only] if args.only else ["vswitch", "ovs"]
    if "ovs" in kinds and (why := ovs_missing()):
        print(f"bench_openflow: skipping Open vSwitch: {why}", file=sys.stderr)
        kinds.remove("ovs")
    nettopo.reap_stale(PREFIX)
    tg = trafficgen.TrafficGen.build()
    fd, flow_file = tempfile.mkstemp(prefix="vs-bof-flows-")
    os.close(fd)
    results: dict[str, list[dict]] = {k: [] for k in kinds}
    try:
        write_flow_file(args.flows, flow_file)
        for rep in range(args.repeat):
            for kind in kinds:
                t0 = time.monotonic()
                r = run_once(kind, args, tg, flow_file)
                results[kind].append(r)
                print(f"run {rep + 1}/{args.repeat} {kind:8} "
                      f"add-flows {r['flow_mod']['seconds']:.2f} s "
                      f"({r['flow_mod']['flow_mods_per_s']:.0f}/s), "
                      f"packet-ins {r['packet_in']['packet_ins_per_s']:.0f}/s "
                      f"({r['packet_in']['delivered']:.1%} of {r['packet_in']['sent']}), "
                      f"setup {r['flow_setup']['setup_us_median']:.0f} us, "
                      f"forward {r['flow_setup']['forward_us_median'] or 0:.0f} us "
                      f"[{time.monotonic() - t0:.0f} s: "
                      + ", ".join(f"{k} {v:.0f}" for k, v in r["phases_s"].items()) + "]",
                      flush=True)
    finally:
        os.unlink(flow_file)
        tg.close()
    med = summarize(results)
    print_table(med, args.repeat)
    info = machine()
    print(f"\nmachine: {info}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "args": vars(args), "runs": results, "medians": med},
                      f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
