"""In-memory benchmark of the C fast path: no I/O, one thread.

    python -m benches.bench_fastpath [--quick] [--repeat N] [--json FILE]

One thread; 64-byte TCP/UDP IPv4 frames.
Mpps: packets per second per core, C-timed: the median of the runs [min-max];
ns/pkt from the median.  vs_bench_batches() runs a batch `rounds` times in C
and returns the nanoseconds it took.  timing:
  C*R     one call runs the batch R times (no Python at all);
  C/call  one call per batch, to rotate over more flows than a batch holds
          (65,536 flows; uncached runs use 4,096 flows so that the working
          set is not just one batch's); the C-timed ns are summed.  "wall" is
          the same run by wall clock: it adds the cffi call and Python loop.
paths: % of the timed packets served by the EMC / the megaflow cache / the
full pipeline, then megaflow entries/subtables in the context afterwards.
Traffic: 90% of the flows aim at a random rule (so at every priority band),
10% at nothing but the priority-0 catch-all that every rule set has.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from vswitch.flowtable import Context, Pipeline, ffi, lib
from vswitch.ofp import GotoTable, Match, Output, SetField, WriteMetadata, apply

IN_PORTS = range(1, 17)
OUT_PORTS = range(100, 108)
BATCH_SIZES = (32, 256)
FRAME_LEN = 64
SRC_MAC = bytes.fromhex("020000000001")
IP4 = (0x0800, 0xFFFF)
# Prefix lengths in the order masks are handed out, and the rule shapes.
PLENS = (32, 24, 16, 28, 20, 30, 18, 26, 22, 31, 17, 25, 19, 27, 21, 29, 23)
SHAPES = ("route", "acl_dst", "acl_src", "pair")

Fields = dict[str, tuple[int, int]]


def _csum(data: bytes) -> int:
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s & 0xFFFF) + (s >> 16)
    return ~(s + (s >> 16)) & 0xFFFF


def frame(f: dict[str, int]) -> bytes:
    """A 64-byte Ethernet/IPv4/TCP-or-UDP frame from a flow dict."""
    proto, sport, dport = f["ip_proto"], f["tp_src"], f["tp_dst"]
    pay = bytes(FRAME_LEN - 34 - (20 if proto == 6 else 8))
    l4 = (struct.pack("!HHIIBBHHH", sport, dport, 0, 0, 0x50, 0x10, 65535, 0, 0) if proto == 6
          else struct.pack("!HHHH", sport, dport, 8 + len(pay), 0))
    ip = struct.pack("!BBHHHBBHII", 0x45, 0, FRAME_LEN - 14, 0, 0x4000, 64, proto, 0,
                     f["ipv4_src"], f["ipv4_dst"])
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    return f["eth_dst"].to_bytes(6, "big") + SRC_MAC + b"\x08\x00" + ip + l4 + pay


_KEY_OF = {"tcp_dst": "tp_dst", "udp_dst": "tp_dst", "tcp_src": "tp_src", "udp_src": "tp_src"}


def craft(rng: random.Random, fields: Fields | None) -> dict[str, int]:
    """A flow that matches `fields` (None: a flow no rule but the catch-all
    matches).  Unconstrained bits are random, drawn from ranges no rule uses."""
    f = {"in_port": rng.choice(IN_PORTS), "eth_dst": 0x020000000000 | rng.getrandbits(40),
         "ip_proto": rng.choice((6, 17)), "ipv4_src": 0xC0A80000 | rng.getrandbits(16),
         "ipv4_dst": 0xC6120000 | rng.getrandbits(17), "tp_src": rng.randint(1024, 65535),
         "tp_dst": rng.randint(1024, 65535)}
    for name, (v, m) in (fields or {}).items():
        k = _KEY_OF.get(name, name)
        if k in f:
            f[k] = (v & m) | (f[k] & ~m)
    return f


class Batch(NamedTuple):
    """cffi arrays for one batch, built once (keep holds the frame buffers)."""

    n: int
    frames: object
    lens: object
    ports: object
    keep: list


def batches(flows: list[tuple[bytes, int]], size: int) -> list[Batch]:
    out = []
    for chunk in (flows[i:i + size] for i in range(0, len(flows), size)):
        keep = [ffi.from_buffer("uint8_t[]", fr) for fr, _ in chunk]
        out.append(Batch(len(chunk), ffi.new("const uint8_t *[]", keep),
                         ffi.new("uint32_t[]", [len(fr) for fr, _ in chunk]),
                         ffi.new("uint32_t[]", [p for _, p in chunk]), keep))
    return out


def _rule_fields(shape: str, plen: int, rng: random.Random) -> Fields:
    if shape == "l2":
        return {"in_port": (rng.choice(IN_PORTS), 0xFFFFFFFF),
                "eth_dst": (0x00163E000000 | rng.getrandbits(24), 0xFFFFFFFFFFFF)}
    m = ((1 << plen) - 1) << (32 - plen)
    addr = rng.randint(0x01000000, 0x7EFFFFFF) & m      # 1.0.0.0-126.255.255.255
    if shape == "route":
        return {"eth_type": IP4, "ipv4_dst": (addr, m)}
    if shape == "pair":
        dst = rng.randint(0x01000000, 0x7EFFFFFF) & 0xFFFFFF00
        return {"in_port": (rng.choice(IN_PORTS), 0xFFFFFFFF), "eth_type": IP4,
                "ipv4_src": (addr, m), "ipv4_dst": (dst, 0xFFFFFF00)}
    proto = rng.choice((6, 17))
    port = ("tcp_dst" if proto == 6 else "udp_dst", (rng.randint(1, 1023), 0xFFFF))
    ip = "ipv4_dst" if shape == "acl_dst" else "ipv4_src"
    return {"eth_type": IP4, "ip_proto": (proto, 0xFF), ip: (addr, m), port[0]: port[1]}


def make_rules(n: int, n_masks: int, seed: int = 1) -> list[tuple[int, Fields]]:
    """n distinct (priority, fields) rules over exactly n_masks masks, round
    robin.  Each mask gets its own priority band (more specific masks first,
    as a controller would order them); the band holds distinct priorities
    while it has room (uint16 cannot hold 100,000 distinct values)."""
    masks = [(s, p) for p in PLENS for s in SHAPES]
    masks.insert(2, ("l2", 48))
    assert n_masks <= len(masks)
    rng = random.Random(seed)
    band = 60000 // n_masks
    seen: set[tuple] = set()
    rules = []
    while len(rules) < n:
        i = len(rules) % n_masks
        fields = _rule_fields(*masks[i], rng)
        key = (i, tuple(sorted(fields.items())))
        if key not in seen:
            seen.add(key)
            rules.append((60000 - i * band - (len(rules) // n_masks) % band, fields))
    return rules


def _output(i: int) -> list:
    return [apply(Output(OUT_PORTS[i % len(OUT_PORTS)]))]


def flow_mods(rules: list[tuple[int, Fields]],
              insts: Callable[[int], list] = _output) -> list[tuple[int, Match, list]]:
    """(priority, match, instructions) for the rules plus a priority-0 catch-all."""
    return [(prio, Match.from_fields(f), insts(i)) for i, (prio, f) in enumerate(rules)] + [
        (0, Match(), insts(-1))]


def install(pipe: Pipeline, mods: list[tuple[int, Match, list]]) -> float:
    """Add to table 0; returns the seconds spent in Pipeline.add_flow."""
    t0 = time.perf_counter()
    for prio, match, ins in mods:
        pipe.add_flow(0, prio, match, ins)
    return time.perf_counter() - t0


def new_pipeline() -> Pipeline:
    pipe = Pipeline()
    for port in (*IN_PORTS, *OUT_PORTS):
        pipe.set_port(port)
    return pipe


def traffic(rules: list[tuple[int, Fields]], n: int, seed: int = 2,
            miss_frac: float = 0.1) -> list[tuple[bytes, int]]:
    """n distinct microflows: each aims at a random rule, or (miss_frac of
    them) at nothing but the catch-all."""
    rng = random.Random(seed)
    out: dict[tuple[bytes, int], None] = {}
    while len(out) < n:
        target = None if rng.random() < miss_frac else rng.choice(rules)[1]
        f = craft(rng, target)
        out[(frame(f), f["in_port"])] = None
    return list(out)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


STAT_KEYS = ("packets", "emc_hits", "megaflow_hits", "misses", "flushes")


@dataclass
class Case:
    name: str
    batch: int
    timing: str                 # "C*R" or "C/call" (see module doc)
    bs: list[Batch]
    ctx: Context | None = None  # None: parse only
    pipe: Pipeline | None = None

    scale: int = 1
    samples: list[float] = field(default_factory=list)   # C-timed Mpps
    walls: list[float] = field(default_factory=list)     # wall-clock Mpps
    py_ns: int = 0
    before: dict = field(default_factory=dict)

    def calibrate(self, target_s: float, warm: int) -> None:
        """Warm the caches up, then pick the scale that runs ~target_s."""
        self.run(warm)
        scale, t = 1, self.run(1)[2] / 1e9
        while t < target_s / 10:
            scale = max(scale * 2, int(scale * target_s / 10 / max(t, 1e-6)))
            t = self.run(scale)[2] / 1e9
        self.scale = max(1, round(scale * target_s / t))
        self.before = self.ctx.stats() if self.ctx else {}

    def sample(self) -> None:
        pkts, c_ns, wall = self.run(self.scale)
        self.samples.append(pkts / c_ns * 1e3)
        self.walls.append(pkts / wall * 1e3)
        self.py_ns += wall - c_ns

    def result(self) -> dict:
        after, med = self.ctx.stats() if self.ctx else {}, statistics.median(self.samples)
        calls = len(self.samples) * len(self.bs) * (1 if self.timing == "C*R" else self.scale)
        st = {k: after[k] - self.before[k] for k in STAT_KEYS} | {
            k: after[k] for k in ("megaflows", "megaflow_subtables")} if after else {}
        return {"case": self.name, "batch": self.batch, "timing": self.timing,
                "scale": self.scale, "mpps": med, "mpps_min": min(self.samples),
                "mpps_max": max(self.samples), "ns_per_pkt": 1e3 / med,
                "samples": self.samples, "wall_mpps": statistics.median(self.walls),
                "py_ns_per_call": self.py_ns / calls, "stats": st}

    def run(self, scale: int) -> tuple[int, int, int]:
        """(packets, C-timed ns, wall ns); scale = rounds (C*R) or passes."""
        rounds, passes = (scale, 1) if self.timing == "C*R" else (1, scale)
        c_ns = 0
        t0 = time.perf_counter_ns()
        if self.ctx is None:
            for b in self.bs:
                c_ns += lib.vs_bench_parse(b.frames, b.lens, b.n, rounds)
        else:
            c, p, bench = self.ctx.handle, self.pipe.handle, lib.vs_bench_batches
            for _ in range(passes):
                for b in self.bs:
                    c_ns += bench(c, p, b.frames, b.lens, b.ports, b.n, rounds)
        wall = time.perf_counter_ns() - t0
        return sum(b.n for b in self.bs) * rounds * passes, c_ns, wall


def _paths(st: dict) -> str:
    n = max(st["packets"], 1)
    return (f"{100 * st['emc_hits'] / n:5.1f} {100 * st['megaflow_hits'] / n:5.1f} "
            f"{100 * st['misses'] / n:5.1f}  {st['megaflows']:>6}/{st['megaflow_subtables']:<3}"
            + (f" flushes={st['flushes']}" if st["flushes"] else ""))


def row(r: dict) -> str:
    return (f"{r['case']:<44} {r['batch']:>5} {r['mpps']:7.2f} {r['mpps_min']:7.2f}"
            f"-{r['mpps_max']:<7.2f} {r['ns_per_pkt']:7.1f} "
            + (f"{r['wall_mpps']:6.2f}" if r["timing"] == "C/call" else " " * 6)
            + f"  {r['timing']:<6} " + (_paths(r["stats"]) if r["stats"] else ""))


def machine() -> dict:
    with open("/proc/cpuinfo") as f:
        models = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
    return {"cpu": models[0] if models else "?", "cores": os.cpu_count(),
            "kernel": platform.release(), "python": platform.python_version(),
            "loadavg_start": os.getloadavg()[0]}


def three_tables(rules: list[tuple[int, Fields]]) -> Pipeline:
    """Table 0: the rule set, writes a class id to metadata, goto 1; table 1:
    metadata -> set eth_dst, goto 2; table 2: eth_dst -> output."""
    pipe = new_pipeline()
    install(pipe, flow_mods(rules, lambda i: [WriteMetadata(i % 16 + 1, 0xFF), GotoTable(1)]))
    for k in range(1, 17):
        mac = 0x00163F000000 + k
        pipe.add_flow(1, 100, Match(metadata=(k, 0xFF)),
                      [apply(SetField("eth_dst", mac)), GotoTable(2)])
        pipe.add_flow(2, 100, Match(eth_dst=mac), [apply(Output(OUT_PORTS[k % 8]))])
    return pipe


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small round counts (CI smoke run)")
    ap.add_argument("--repeat", type=int, default=None, help="runs per case (default 5; 1 quick)")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args(argv)
    repeat = args.repeat or (1 if args.quick else 5)
    if repeat < 1:
        ap.error("--repeat must be at least 1")
    target, warm = (0.01, 50) if args.quick else (0.25, 1000)
    n_uncached = 1024 if args.quick else 4096

    mach = machine()
    print(f"vswitch fast path, in-memory benchmark, {time.strftime('%Y-%m-%d %H:%M:%S')}")
    print(f"machine: {mach['cpu']}, {mach['cores']} cores, Linux {mach['kernel']}, "
          f"Python {mach['python']}; load average {mach['loadavg_start']:.2f}")

    sets = {1: make_rules(1, 1), 1000: make_rules(1000, 16), 100_000: make_rules(100_000, 64)}
    mods, big = flow_mods(sets[100_000]), new_pipeline()
    gc.collect()
    rss0, secs = rss_bytes(), install(big, mods)
    mem = {"rules": len(mods), "bytes_per_rule": (rss_bytes() - rss0) / len(mods),
           "install_us_per_rule": secs / len(mods) * 1e6}
    print(f"100,000 rules (+catch-all) in 64 masks: RSS +{mem['bytes_per_rule']:.0f} B/rule, "
          f"Pipeline.add_flow {mem['install_us_per_rule']:.1f} us/rule")
    pipes = {1: new_pipeline(), 1000: new_pipeline(), 100_000: big}
    for n in (1, 1000):
        install(pipes[n], flow_mods(sets[n]))
    p3 = three_tables(sets[1000])
    hot = traffic(sets[1000], 256)
    flows_64k = traffic(sets[1000], 65536, seed=3)
    parse_flows = [(frame(craft(random.Random(i), None) | {"ip_proto": 17}), 1)
                   for i in range(256)]

    def uncached() -> Context:
        return Context(emc_entries=0, megaflow_max=0)

    unc_flows = {n: traffic(rules, n_uncached) for n, rules in sets.items()}
    per_batch = []
    for b in BATCH_SIZES:
        unc = {n: batches(flows, b) for n, flows in unc_flows.items()}
        per_batch.append([
            Case("parse only (vs_bench_parse, UDP)", b, "C*R", batches(parse_flows, b)),
            Case("EMC hits (1k rules, 256 flows)", b, "C*R", batches(hot, b),
                 Context(emc_insert_inv_prob=1), pipes[1000]),
            Case("megaflow hits (1k rules, 256 flows, EMC off)", b, "C*R", batches(hot, b),
                 Context(emc_entries=0), pipes[1000]),
            Case("miss: 1 rule (+ catch-all)", b, "C/call", unc[1], uncached(), pipes[1]),
            Case("miss: 1,000 rules / 16 masks", b, "C/call", unc[1000], uncached(),
                 pipes[1000]),
            Case("miss: 100,000 rules / 64 masks", b, "C/call", unc[100_000], uncached(),
                 pipes[100_000]),
            Case("3 tables, default ctx (256 flows)", b, "C*R", batches(hot, b), Context(), p3),
            Case("3 tables, uncached", b, "C/call", unc[1000], uncached(), p3),
            Case("default ctx, 1k rules, 256 flows", b, "C*R", batches(hot, b), Context(),
                 pipes[1000]),
            Case("default ctx, 1k rules, 65,536 flows", b, "C/call", batches(flows_64k, b),
                 Context(), pipes[1000]),
        ])
    cases = [c for pair in zip(*per_batch) for c in pair]

    print("\n" + __doc__[__doc__.index("One thread"):])
    print(f"{'case':<44} {'batch':>5} {'Mpps':>7} {'min-max':^15} {'ns/pkt':>7} {'wall':>6}  "
          f"{'timing':<6} {'emc%':>5} {'mf%':>5} {'miss%':>5}  megaflows")
    for case in cases:
        case.calibrate(target, warm if case.timing == "C*R" else 3)
    for _ in range(repeat):     # interleaved, so that a burst of other load hits
        for case in cases:      # one sample of many cases, not every sample of one
            case.sample()
    results = [case.result() for case in cases]
    print("\n".join(row(r) for r in results))
    ovh = statistics.median(r["py_ns_per_call"] for r in results if r["timing"] == "C/call")
    mach["loadavg_end"] = os.getloadavg()[0]
    print(f"\ncffi call + Python loop (in \"wall\", not in Mpps): {ovh:.0f} ns per batch call;"
          f" load average at the end {mach['loadavg_end']:.2f} (shared machine: other load"
          " slows every figure)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": time.strftime("%Y-%m-%d"), "machine": mach, "repeat": repeat,
                       "quick": args.quick, "memory": mem, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
