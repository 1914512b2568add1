"""Encapsulated forwarding rate between two hosts: generator VM -> switch ->
VXLAN underlay -> switch -> sink VM, through vswitch and through Open
vSwitch 3.1's userspace datapath (datapath_type=netdev, vxlan ports, the
underlay address on a netdev bridge as OVS's userspace-tunneling guide
has it), in the same run.

    python3 -m benches.bench_vxlan [--duration 5] [--reps 3] [--flows 1,256]
                                   [--only vswitch|ovs]

Each "host" is a network namespace (tests/vxfabric.py): vswitch hosts run
their own vswitchd (one poll thread, NORMAL), OVS hosts their own
ovsdb-server + ovs-vswitchd (one PMD thread each, on cores 0 and 1:
other_config:pmd-cpu-mask),
joined by a veth underlay through a Linux bridge.  tools/trafficgen.c
generates 60-byte UDP frames (`flows` distinct 5-tuples) from the
generator VM and counts them at the sink VM; the sink first announces the
destination MAC so that both switches learn it.  Runs alternate between
the switches; the table reports medians of offered and forwarded packets
per second and the ratio vswitch/OVS.  Needs root, gcc and
openvswitch-switch.  Everything (namespaces, daemons, directories) is
removed at the end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


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


sys.path.insert(0, str(ROOT / "tests"))
nettopo = _load(ROOT / "tests" / "nettopo.py", "nettopo")
vxfabric = _load(ROOT / "tests" / "vxfabric.py", "vxfabric")
trafficgen = _load(ROOT / "tools" / "trafficgen.py", "trafficgen")

KEY = 5000


def _vswitch_pair(f):
    h1, h2 = f.host(), f.host()
    gen, sink = f.vm(h1, i=1), f.vm(h2, i=2)
    t1, t2 = f.tunnel(h1, h2, key=KEY), f.tunnel(h2, h1, key=KEY)
    f.wait_resolved(h1, t1)
    f.wait_resolved(h2, t2)
    return gen, sink, lambda: {"h1": f.tunnel_state(h1, t1)["counters"],
                               "h2": f.tunnel_state(h2, t2)["counters"]}


def _ovs_pair(f):
    o1, o2 = f.ovs_host(), f.ovs_host()
    # One PMD thread per host, each on its own core (as two hosts would have).
    for cpu, o in enumerate((o1, o2)):
        o.vsctl("set", "Open_vSwitch", ".", f"other_config:pmd-cpu-mask={1 << (cpu % 2):#x}")
    gen, sink = f.ovs_vm(o1, 1), f.ovs_vm(o2, 2)
    for o, other in ((o1, o2), (o2, o1)):
        o.vsctl("add-port", "bri", "vx0", "--", "set", "interface", "vx0", "type=vxlan",
                f"options:remote_ip={other.ip}", f"options:key={KEY}")
    return gen, sink, lambda: {}


def run_switch(tg, switch: str, flows_list: list[int], duration: float, reps: int,
               results: dict) -> None:
    with vxfabric.Fabric("vb") as f:
        gen, sink, diag = (_vswitch_pair if switch == "vswitch" else _ovs_pair)(f)
        warm = tg.ping(gen.ns, sink.ip, count=5, interval_ms=50)
        if warm["received"] == 0:
            raise RuntimeError(f"{switch}: no ping through the tunnel")
        sink_mac = "02:5e:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(4))
        for flows in flows_list:
            args = dict(src_mac=gen.mac, dst_mac=sink_mac, src_ip=f"10.{f.sub}.128.0",
                        dst_ip=f"10.{f.sub}.0.250", flows=flows)
            tg.hello(sink.ns, sink_mac)
            tg.generate(gen.ns, duration=1.0, run_id=0, **args)       # warm-up
            for _ in range(reps):
                run_id = secrets.randbits(31) | 1
                with tg.sink(sink.ns, run_id=run_id, max_seconds=duration + 60) as sk:
                    g = tg.generate(gen.ns, duration=duration, run_id=run_id, **args)
                    time.sleep(0.2)
                secs = g["seconds"] or 1.0
                fwd = (sk.result or {}).get("count", 0) / secs
                results.setdefault((switch, flows), []).append((g["sent"] / secs, fwd))
                print(f"  {switch:8} flows={flows:<5} offered {g['sent'] / secs / 1e6:6.3f} Mpps"
                      f"  forwarded {fwd / 1e6:6.3f} Mpps", flush=True)
        d = diag()
        if d:
            print(f"  {switch} tunnel counters: {d}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--flows", default="1,256")
    ap.add_argument("--only", choices=("vswitch", "ovs"))
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_vxlan: needs root", file=sys.stderr)
        return 1
    flows = [int(x) for x in args.flows.split(",")]
    switches = [args.only] if args.only else ["vswitch", "ovs"]
    if "ovs" in switches and (why := vxfabric.ovs_missing()):
        print(f"bench_vxlan: {why}", file=sys.stderr)
        switches.remove("ovs")
    nettopo.reap_stale("vb")
    results: dict = {}
    with trafficgen.TrafficGen.build() as tg:
        for sw in switches:
            run_switch(tg, sw, flows, args.duration, args.reps, results)
    ovs_v = subprocess.run(["ovs-vswitchd", "--version"], capture_output=True,
                           text=True).stdout.splitlines()[:1]
    print(f"\nmachine: {platform.node()} {os.cpu_count()} CPUs, kernel {platform.release()},"
          f" python {platform.python_version()}, {ovs_v[0] if ovs_v else 'no OVS'}")
    print(f"{'switch':8} {'flows':>5} {'offered':>9} {'forwarded':>10} {'vs/OVS':>7}")
    for (sw, fl), runs in sorted(results.items()):
        off = statistics.median(r[0] for r in runs)
        fwd = statistics.median(r[1] for r in runs)
        ratio = "-"
        if sw == "vswitch" and ("ovs", fl) in results:
            ovs = statistics.median(r[1] for r in results[("ovs", fl)])
            ratio = f"{fwd / ovs:.2f}" if ovs else "-"
        print(f"{sw:8} {fl:>5} {off / 1e6:7.3f} M {fwd / 1e6:8.3f} M {ratio:>7}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
