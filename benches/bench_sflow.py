"""sFlow overhead: forwarding with sampling at 1:64 versus without, in the
same run, and the agent's own CPU and memory with 1 s polling of 50 ports.

    python3 -m benches.bench_sflow [--quick] [--duration S] [--repeat N]
                                   [--rate 64] [--ports 50] [--load-seconds 30]
                                   [--json FILE]

Part 1 (forwarding) reuses benches/bench_e2e.py: the same generator ->
switch -> sink veth topology, vswitch with `system` ports and the `normal`
pipeline, 256 flows, generator and sink on --gen-cpu, the poll thread
pinned to --switch-cpu.  Cases "off" and "1:N" alternate (repeat 1 of both,
then repeat 2, ...); medians.  With sampling on, the whole path is
running: the poll thread samples into the upcall queue, and an SflowAgent
in a Python thread of this process (pinned to --agent-cpu, default the
generator's core, as a daemon's control thread would not share the
forwarding core) reads the queue through the upcall eventfd, encodes the
samples and sends datagrams to a UDP socket on loopback, polling the two
ports' counters every second.  Reported: forwarded pps, the poll thread's
busy (wall) and CPU ns per packet, the agent thread's CPU, samples queued and lost.

Part 2 (agent load): a real vswitchd (python3 -m vswitch.daemon) with one
bridge and --ports TAP ports; its CPU (utime + stime from /proc) and RSS
are read over --load-seconds with sFlow off, then again with sFlow on
(polling 1 s, host structures, sampling 1:400 of no traffic), and the
datagrams a loopback collector received are counted and decoded.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benches import bench_e2e as e2e

ROOT = Path(__file__).resolve().parents[1]
decoder = e2e._load(ROOT / "tests" / "sflow_testdecode.py", "sflow_testdecode")


# ---- part 1: forwarding with and without sampling -------------------------------------

class SampledVswitch(e2e.VswitchSUT):
    """VswitchSUT plus, when rate > 0, sampling and a running agent."""

    def __init__(self, rate: int, cpu: int, agent_cpu: int) -> None:
        super().__init__(e2e.Case("vswitch", "system", "normal"), cpu)
        self.rate = rate
        self.agent_cpu = agent_cpu
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.agent_cpu_s = 0.0
        self.samples = 0

    def start(self, gen_port: str, sink_port: str) -> None:
        super().start(gen_port, sink_port)
        if not self.rate:
            return
        from vswitch.sflow.agent import PortView, SflowAgent
        from vswitch.sflow.settings import SflowSettings
        dp = self.dp
        self.collector = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.collector.bind(("127.0.0.1", 0))

        def ports():
            return [PortView(i.port_no, i.name, i.ifindex, i.link_up, dp.port_stats(i.port_no))
                    for i in dp.ports()]

        settings = SflowSettings(collectors=[f"127.0.0.1:{self.collector.getsockname()[1]}"],
                                 agent="127.0.0.1", sampling=self.rate, polling=1)
        self.agent = SflowAgent(settings, ports, host=False)
        dp.set_sflow(self.rate, 128)
        self._thread = threading.Thread(target=self._run, name="sflow-agent", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        os.sched_setaffinity(threading.get_native_id(), {self.agent_cpu})
        fd = self.dp.upcall_fd
        next_tick = time.monotonic() + 1
        while not self._stop.is_set():
            # Readable when samples fill 1/8 of the queue; drained anyway
            # every 0.2 s (the daemon drains once a second).
            select.select([fd], [], [], 0.2)
            for u in self.dp.upcalls(limit=256):
                self.agent.on_sample(u)
            if time.monotonic() >= next_tick:
                self.agent.tick()
                next_tick += 1
            # drain the collector too, so its socket buffer never fills
            try:
                while True:
                    self.collector.recv(65535, socket.MSG_DONTWAIT)
            except BlockingIOError:
                pass

    def begin(self) -> None:
        super().begin()
        self._t0 = self._thread_cpu()
        self._s0 = self.dp.stats()

    def _thread_cpu(self) -> float:
        if self._thread is None or self._thread.native_id is None:
            return 0.0
        ns = e2e._sched_ns(os.getpid(), [self._thread.native_id])
        return ns.get(self._thread.native_id, 0) / 1e9

    def end(self) -> dict:
        d = super().end()
        s1 = self.dp.stats()
        d["sflow_samples"] = s1["sflow_samples"] - self._s0["sflow_samples"]
        d["sflow_drops"] = s1["sflow_drops"] - self._s0["sflow_drops"]
        d["agent_cpu_s"] = self._thread_cpu() - self._t0
        return d

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self.agent.close()
            self.collector.close()
        super().stop()


def forwarding_run(tg, rate: int, st: e2e.Settings, agent_cpu: int,
                   perf_dir: Path | None = None) -> e2e.Run:
    subnet = random.randrange(64, 250)
    with e2e.nettopo.Topology(e2e.PREFIX) as topo:
        gen = topo.add_host(f"10.{subnet}.0.1/24")
        sink = topo.add_host(f"10.{subnet}.0.2/24")
        sut = SampledVswitch(rate, st.switch_cpu, agent_cpu)
        try:
            sut.start(gen.port, sink.port)
            if tg.ping(gen.ns, sink.ip, count=5, interval_ms=20)["received"] == 0:
                raise RuntimeError("no ping through the switch")
            sink_mac = "02:5e:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(4))
            args = dict(src_mac=gen.mac, dst_mac=sink_mac, src_ip=f"10.{subnet}.128.0",
                        dst_ip=f"10.{subnet}.0.250", flows=256, cpu=st.gen_cpu,
                        mode=st.gen_mode)
            tg.hello(sink.ns, sink_mac)
            tg.generate(gen.ns, duration=st.warmup, run_id=0, **args)
            rec = None
            if perf_dir is not None:             # profile the poll thread during the run
                perf_dir.mkdir(parents=True, exist_ok=True)
                data = perf_dir / f"poll-{rate}.data"
                rec = e2e._perf_record(sut.threads(), max(st.duration - 1, 1), data)
            run = e2e._measure(tg, sut, gen, sink, st, args)
            if rec is not None:
                rec.wait()
                (perf_dir / f"poll-{rate}.txt").write_text(e2e._perf_report(data, top=40))
            return run
        finally:
            sut.stop()


def _cpu_ns_per_pkt(r: e2e.Run) -> float:
    """CPU time the poll thread really ran (schedstat) per frame it
    processed: unlike busy wall time, not inflated by preemption."""
    return r.switch_thread_ns / max(1, r.switch["thread"]["packets"])


# ---- part 2: the agent's CPU and memory in vswitchd ------------------------------------

def _rpc(sock_path: str, method: str, **params):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(sock_path)
        s.sendall((json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                               "params": params}) + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    reply = json.loads(buf)
    if "error" in reply:
        raise RuntimeError(f"{method}: {reply['error']['message']}")
    return reply["result"]


def _proc_cpu_s(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def agent_load(n_ports: int, seconds: float) -> dict:
    state = tempfile.mkdtemp(prefix="vsbs")
    sock_path = os.path.join(state, "vswitchd.sock")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = open(os.path.join(state, "log"), "wb")
    proc = subprocess.Popen([sys.executable, "-m", "vswitch.daemon", "--state-dir", state,
                             "--log-level", "warning"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    tag = "vb" + secrets.token_hex(3)
    col = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    col.bind(("127.0.0.1", 0))
    col.setblocking(False)
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(sock_path):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("vswitchd did not start")
            time.sleep(0.05)
        time.sleep(0.2)
        br = tag + "br"
        _rpc(sock_path, "add-br", bridge=br)
        for i in range(n_ports):
            _rpc(sock_path, "add-port", bridge=br, port=f"{tag}t{i}", type="tap")
        time.sleep(2)

        def measure(dgs: list[bytes] | None = None) -> tuple[float, int, float]:
            """CPU share and RSS over `seconds`, reading the collector all along
            (a full socket buffer would drop datagrams)."""
            c0, t0 = _proc_cpu_s(proc.pid), time.monotonic()
            end = t0 + seconds
            while (left := end - time.monotonic()) > 0:
                if select.select([col], [], [], left)[0]:
                    try:
                        while True:
                            d = col.recv(65536)
                            if dgs is not None:
                                dgs.append(d)
                    except BlockingIOError:
                        pass
            c1, t1 = _proc_cpu_s(proc.pid), time.monotonic()
            return (c1 - c0) / (t1 - t0), _rss_kib(proc.pid), t1 - t0

        cpu_off, rss_off, _ = measure()
        _rpc(sock_path, "sflow-set", bridge=br,
             settings={"collectors": [f"127.0.0.1:{col.getsockname()[1]}"],
                       "agent": "127.0.0.1", "polling": 1, "sampling": 400})
        time.sleep(3)
        while True:                                   # start counting from now
            try:
                col.recv(65536)
            except BlockingIOError:
                break
        dgs: list[bytes] = []
        cpu_on, rss_on, elapsed = measure(dgs)
        decoded = [decoder.decode(d) for d in dgs]
        sources = {(s["source_type"], s["source_index"]) for d in decoded
                   for s in d["samples"]}
        n_ctr = sum(len(d["samples"]) for d in decoded)
        _rpc(sock_path, "del-br", bridge=br)
        return {"ports": n_ports, "seconds": seconds,
                "cpu_off_pct": 100 * cpu_off, "cpu_on_pct": 100 * cpu_on,
                "agent_cpu_pct": 100 * (cpu_on - cpu_off),
                "rss_off_kib": rss_off, "rss_on_kib": rss_on,
                "datagrams_per_s": len(dgs) / elapsed,
                "counter_samples_per_s": n_ctr / elapsed,
                "sources": len(sources), "bytes_per_s": sum(map(len, dgs)) / elapsed}
    finally:
        col.close()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        subprocess.run(["rm", "-rf", state], check=False)


# ---- main ------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--duration", type=float, default=None)
    ap.add_argument("--repeat", type=int, default=None)
    ap.add_argument("--rate", type=int, default=64)
    ap.add_argument("--ports", type=int, default=50)
    ap.add_argument("--load-seconds", type=float, default=None)
    ap.add_argument("--gen-cpu", type=int, default=0)
    ap.add_argument("--switch-cpu", type=int, default=1)
    ap.add_argument("--agent-cpu", type=int, default=None)
    ap.add_argument("--skip-forwarding", action="store_true")
    ap.add_argument("--skip-load", action="store_true")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--perf", metavar="DIR", help="profile the poll thread (first repeat)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_sflow: needs root", file=sys.stderr)
        return 2
    st = e2e.Settings(duration=args.duration or (1.0 if args.quick else 5.0),
                      warmup=0.3 if args.quick else 1.0, flows=[256], pings=0,
                      ping_interval_ms=10, gen_cpu=args.gen_cpu, switch_cpu=args.switch_cpu,
                      gen_mode="mmsg", perf_dir=None)
    repeat = args.repeat or (1 if args.quick else 5)
    agent_cpu = args.gen_cpu if args.agent_cpu is None else args.agent_cpu
    out: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": e2e.machine()}
    print(f"machine: {out['machine']}")
    if not args.skip_forwarding:
        e2e.nettopo.reap_stale(e2e.PREFIX)
        runs: dict[int, list[e2e.Run]] = {0: [], args.rate: []}
        with e2e.trafficgen.TrafficGen.build() as tg:
            for rep in range(repeat):
                for rate in runs:
                    perf = Path(args.perf) if args.perf and rep == 0 else None
                    r = forwarding_run(tg, rate, st, agent_cpu, perf)
                    runs[rate].append(r)
                    sw = r.switch
                    print(f"  repeat {rep + 1} sampling {'1:' + str(rate) if rate else 'off':5}"
                          f" offered {r.offered_pps / 1e6:.3f} forwarded "
                          f"{r.forwarded_pps / 1e6:.3f} Mpps, poll thread "
                          f"{sw['busy_ns_per_pkt']:.0f} ns/pkt busy, "
                          f"{_cpu_ns_per_pkt(r):.0f} ns/pkt CPU, samples "
                          f"{sw.get('sflow_samples', 0)} lost {sw.get('sflow_drops', 0)}, "
                          f"agent {sw.get('agent_cpu_s', 0) / r.seconds * 100:.1f}% CPU",
                          flush=True)
        med = {rate: {"offered_mpps": statistics.median(x.offered_pps for x in rs) / 1e6,
                      "forwarded_mpps": statistics.median(x.forwarded_pps for x in rs) / 1e6,
                      "poll_ns_per_pkt": statistics.median(x.switch["busy_ns_per_pkt"]
                                                           for x in rs),
                      "poll_cpu_ns_per_pkt": statistics.median(_cpu_ns_per_pkt(x) for x in rs),
                      "samples_per_s": statistics.median(x.switch.get("sflow_samples", 0)
                                                         / x.seconds for x in rs),
                      "lost": sum(x.switch.get("sflow_drops", 0) for x in rs),
                      "agent_cpu_pct": statistics.median(
                          100 * x.switch.get("agent_cpu_s", 0) / x.seconds for x in rs)}
               for rate, rs in runs.items()}
        off, on = med[0], med[args.rate]
        ratio = on["forwarded_mpps"] / off["forwarded_mpps"] if off["forwarded_mpps"] else 0
        print(f"\nforwarding, medians of {repeat}:")
        for rate, m in med.items():
            print(f"  sampling {'1:' + str(rate) if rate else 'off':5} offered "
                  f"{m['offered_mpps']:.3f} forwarded {m['forwarded_mpps']:.3f} Mpps, "
                  f"poll {m['poll_ns_per_pkt']:.0f} ns/pkt busy, "
                  f"{m['poll_cpu_ns_per_pkt']:.0f} ns/pkt CPU, {m['samples_per_s']:.0f} "
                  f"samples/s, lost {m['lost']}, agent {m['agent_cpu_pct']:.1f}% CPU")
        print(f"  forwarded with sampling / without: {ratio:.3f}")
        out["forwarding"] = {"repeat": repeat, "duration": st.duration, "rate": args.rate,
                             "medians": {str(k): v for k, v in med.items()}, "ratio": ratio}
    if not args.skip_load:
        secs = args.load_seconds or (5.0 if args.quick else 30.0)
        load = agent_load(args.ports, secs)
        print(f"\nagent load, vswitchd with {load['ports']} TAP ports, {secs:.0f} s each:")
        print(f"  CPU: sFlow off {load['cpu_off_pct']:.2f}%, on {load['cpu_on_pct']:.2f}% "
              f"of a core (agent {load['agent_cpu_pct']:.2f}%)")
        print(f"  RSS: off {load['rss_off_kib'] / 1024:.1f} MiB, on "
              f"{load['rss_on_kib'] / 1024:.1f} MiB")
        print(f"  {load['datagrams_per_s']:.1f} datagrams/s, {load['counter_samples_per_s']:.1f}"
              f" counter samples/s from {load['sources']} sources, "
              f"{load['bytes_per_s']:.0f} bytes/s")
        out["agent_load"] = load
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
