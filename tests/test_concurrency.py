"""Concurrent readers and a writer on one Pipeline (vswitch/_fastpath).

cffi releases the GIL during C calls, so reader threads (each with its own
Context, as poll threads have) really run batches in parallel in C while a
control thread changes flows, groups, ports and meters.  fastpath.h's rule: a
batch holds the pipeline's read lock from start to end, every mutation takes
it for writing, caches are flushed when the generation moved.

The rules are designed so that the output of every packet names the state it
was processed in; each result must be one the writer could have produced.
Threads never assert: they record problems and the main thread checks them.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import ARP, Ether

from vswitch.flowtable import Context, Pipeline
from vswitch.ofp import (
    OFPFC_ADD,
    OFPFC_DELETE,
    OFPFC_DELETE_STRICT,
    OFPFC_MODIFY_STRICT,
    OFPFF_CHECK_OVERLAP,
    OFPGC_ADD,
    OFPGC_DELETE,
    OFPGC_MODIFY,
    OFPGT_ALL,
    OFPGT_FF,
    OFPGT_INDIRECT,
    OFPMBT_DROP,
    OFPMC_ADD,
    OFPMC_DELETE,
    OFPMC_MODIFY,
    OFPMF_BURST,
    OFPMF_PKTPS,
    OFPP_FLOOD,
    OFPTT_ALL,
    Bucket,
    GotoTable,
    Group,
    Match,
    Meter,
    MeterBand,
    OFError,
    Output,
    SetField,
    apply,
)

MAC_A, MAC_B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
IN = 1
SEC = 1_000_000_000


def frame(dst: str, sport: int = 1000, src: str = "10.9.9.9") -> bytes:
    return bytes(Ether(src=MAC_A, dst=MAC_B) / IP(src=src, dst=dst) / TCP(sport=sport, dport=80)
                 / b"concurrency")


def reader_contexts() -> list[Context]:
    return [
        Context(emc_entries=1024, emc_insert_inv_prob=1),   # EMC always + megaflows
        Context(),                                           # defaults
        Context(emc_entries=0, megaflow_max=0),              # no caches
    ]


@dataclass
class Reader:
    ctx: Context
    batches: int = 0
    packets: int = 0
    problems: list = field(default_factory=list)


def run_readers(readers: list[Reader], body, writer, duration: float) -> None:
    """Run body(reader) in a loop on one thread per reader while writer(stop)
    runs on another, for `duration` seconds."""
    stop = threading.Event()

    def loop(r: Reader):
        try:
            while not stop.is_set():
                body(r)
                r.batches += 1
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            r.problems.append(f"reader crashed: {e!r}")

    writer_problems: list = []

    def write_loop():
        try:
            writer(stop)
        except Exception as e:  # noqa: BLE001
            writer_problems.append(f"writer crashed: {e!r}")
            stop.set()

    threads = [threading.Thread(target=loop, args=(r,)) for r in readers]
    threads.append(threading.Thread(target=write_loop))
    for t in threads:
        t.start()
    time.sleep(duration)
    # On a loaded machine, give every reader a few batches before stopping.
    deadline = time.monotonic() + 30
    while any(r.batches <= 5 for r in readers) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive(), "thread did not stop"
    assert writer_problems == []
    for r in readers:
        assert r.problems[:5] == [], f"{len(r.problems)} problems"
        assert r.batches > 5


# ---------------------------------------------------------------------------
# Many kinds of change at once; every output must come from some valid state.

SRC_A, SRC_B = "172.16.0.1", "172.16.0.2"


def _rewritten(dst: str, src: str) -> bytes:
    return frame(dst, src=src)


KINDS = {
    # name: (ipv4_dst, allowed outputs as tuples of (port, bytes))
    "modify": "10.0.0.1",        # MODIFY_STRICT flips output 2 <-> 3
    "add_delete": "10.0.0.2",    # a priority-20 rule (output 4) comes and goes over one (5)
    "group": "10.0.0.3",         # INDIRECT group modified: output 2 <-> 6
    "failover": "10.0.0.4",      # FF group: watch port 7 toggles live: output 3 / 4
    "flood": "10.0.0.5",         # port 8 added and deleted: FLOOD with or without it
    "set_field": "10.0.0.6",     # set ipv4_src A <-> B, output 2
    "goto": "10.0.0.7",          # goto table 1 where a rule is replaced by ADD: 2 <-> 5
}


def _allowed():
    f = {k: frame(dst) for k, dst in KINDS.items()}
    flood_base = [2, 3, 4, 5, 6, 7]
    return {
        "modify": {((2, f["modify"]),), ((3, f["modify"]),)},
        "add_delete": {((4, f["add_delete"]),), ((5, f["add_delete"]),)},
        "group": {((2, f["group"]),), ((6, f["group"]),)},
        "failover": {((3, f["failover"]),), ((4, f["failover"]),)},
        "flood": {tuple((port, f["flood"]) for port in flood_base),
                  tuple((port, f["flood"]) for port in flood_base + [8])},
        "set_field": {((2, _rewritten(KINDS["set_field"], SRC_A)),),
                      ((2, _rewritten(KINDS["set_field"], SRC_B)),)},
        "goto": {((2, f["goto"]),), ((5, f["goto"]),)},
    }


def _ip(dst: str) -> Match:
    return Match(eth_type=0x0800, ipv4_dst=dst)


def _build() -> Pipeline:
    p = Pipeline()
    for port in range(1, 8):
        p.set_port(port)
    p.add_flow(0, 10, _ip(KINDS["modify"]), [apply(Output(2))])
    p.add_flow(0, 10, _ip(KINDS["add_delete"]), [apply(Output(5))])
    p.add_group(1, OFPGT_INDIRECT, [Bucket((Output(2),))])
    p.add_flow(0, 10, _ip(KINDS["group"]), [apply(Group(1))])
    p.add_group(2, OFPGT_FF, [Bucket((Output(3),), watch_port=7),
                              Bucket((Output(4),), watch_port=6)])
    p.add_flow(0, 10, _ip(KINDS["failover"]), [apply(Group(2))])
    p.add_flow(0, 10, _ip(KINDS["flood"]), [apply(Output(OFPP_FLOOD))])
    p.add_flow(0, 10, _ip(KINDS["set_field"]), [apply(SetField("ipv4_src", SRC_A), Output(2))])
    p.add_flow(0, 10, _ip(KINDS["goto"]), [GotoTable(1)])
    p.add_flow(1, 10, _ip(KINDS["goto"]), [apply(Output(2))])
    return p


def _final_state(p: Pipeline) -> dict:
    """Put the pipeline in a known state; return the expected outputs."""
    p.flow_mod(OFPFC_MODIFY_STRICT, 0, 10, _ip(KINDS["modify"]), [apply(Output(3))])
    p.add_flow(0, 20, _ip(KINDS["add_delete"]), [apply(Output(4))])
    p.group_mod(OFPGC_MODIFY, OFPGT_INDIRECT, 1, [Bucket((Output(6),))])
    p.set_port(7, live=True)
    p.set_port(8)
    p.flow_mod(OFPFC_MODIFY_STRICT, 0, 10, _ip(KINDS["set_field"]),
               [apply(SetField("ipv4_src", SRC_B), Output(2))])
    p.add_flow(1, 10, _ip(KINDS["goto"]), [apply(Output(5))])
    f = {k: frame(dst) for k, dst in KINDS.items()}
    return {
        "modify": [(3, f["modify"], 0)],
        "add_delete": [(4, f["add_delete"], 0)],
        "group": [(6, f["group"], 0)],
        "failover": [(3, f["failover"], 0)],
        "flood": [(port, f["flood"], 0) for port in [2, 3, 4, 5, 6, 7, 8]],
        "set_field": [(2, _rewritten(KINDS["set_field"], SRC_B), 0)],
        "goto": [(5, f["goto"], 0)],
    }


def _churn_match(i: int) -> Match:
    """Rules that never match the readers' packets (in_port 99), each in one
    of many subtables, to restructure the classifier under the readers."""
    shapes = [
        dict(in_port=99),
        dict(in_port=99, eth_type=0x0800, ipv4_dst=f"10.{i % 200}.0.0/16"),
        dict(in_port=99, eth_type=0x0800, ipv4_src=(i % 256, 0xFF)),
        dict(in_port=99, eth_type=0x0800, ip_proto=6, tcp_dst=i % 65536),
        dict(in_port=99, vlan_vid=0x1000 | (i % 4096)),
        dict(in_port=99, eth_dst=(i << 8, 0xFFFFFFFFFF00)),
    ]
    return Match(**shapes[i % len(shapes)])


def test_readers_see_only_valid_states_while_a_writer_changes_everything():
    p = _build()
    allowed = _allowed()
    names = list(KINDS)
    frames = [frame(KINDS[n]) for n in names] * 3
    in_ports = [IN] * len(frames)
    readers = [Reader(ctx) for ctx in reader_contexts()]

    def read(r: Reader):
        results = r.ctx.process(p, frames, in_ports)
        r.packets += len(frames)
        for i, res in enumerate(results):
            name = names[i % len(names)]
            got = tuple((port, data) for port, data, queue in res.outputs)
            if got not in allowed[name] or res.upcalls:
                r.problems.append((name, got, res.upcalls))

    samples = []

    def write(stop: threading.Event):
        i = 0
        while not stop.is_set():
            i += 1
            odd = i % 2
            p.flow_mod(OFPFC_MODIFY_STRICT, 0, 10, _ip(KINDS["modify"]),
                       [apply(Output(3 if odd else 2))])
            if odd:
                p.add_flow(0, 20, _ip(KINDS["add_delete"]), [apply(Output(4))])
            else:
                p.flow_mod(OFPFC_DELETE_STRICT, 0, 20, _ip(KINDS["add_delete"]))
            p.group_mod(OFPGC_MODIFY, OFPGT_INDIRECT, 1, [Bucket((Output(6 if odd else 2),))])
            p.set_port(7, live=not odd)
            if odd:
                p.set_port(8)
            else:
                p.del_port(8)
            p.flow_mod(OFPFC_MODIFY_STRICT, 0, 10, _ip(KINDS["set_field"]),
                       [apply(SetField("ipv4_src", SRC_B if odd else SRC_A), Output(2))])
            p.add_flow(1, 10, _ip(KINDS["goto"]), [apply(Output(5 if odd else 2))])
            # Classifier churn: new subtables appear and vanish, other tables too.
            for j in range(4):
                p.add_flow(j % 3, 1 + (i + j) % 50, _churn_match(i * 4 + j), [apply(Output(9))],
                           hard_timeout=1 if j == 0 else 0)
            if i % 5 == 0:
                p.flow_mod(OFPFC_DELETE, OFPTT_ALL, match=Match(in_port=99))
            if i % 7 == 0:
                p.expire(time.monotonic_ns() + 2 * SEC)
            # Groups that come and go (unused by any flow).
            p.group_mod(OFPGC_ADD if odd else OFPGC_DELETE, OFPGT_ALL, 50, [Bucket((Output(2),))])
            samples.append((p.table_stats(0).lookup_count,
                            next(f.packet_count for f in p.dump_flows(0, _ip(KINDS["modify"]))),
                            next(g["packet_count"] for g in p.group_stats()
                                 if g["group_id"] == 1)))
            time.sleep(0.0005)

    run_readers(readers, read, write, duration=2.5)

    # Counters only ever grew, and are exact once everyone stopped.
    assert len(samples) >= 3           # the writer made progress (machine may be loaded)
    for a, b in zip(samples, samples[1:], strict=False):
        assert all(x <= y for x, y in zip(a, b, strict=True)), (a, b)
    total = sum(r.packets for r in readers)
    per_kind = total // len(names)
    assert p.table_stats(0).lookup_count == total
    assert p.table_stats(1).lookup_count == per_kind
    [modify_rule] = p.dump_flows(0, _ip(KINDS["modify"]))
    assert modify_rule.packet_count == per_kind
    assert next(g for g in p.group_stats() if g["group_id"] == 1)["packet_count"] == per_kind

    # After the writer stops, the next batch in every context shows the final state.
    expected = _final_state(p)
    single = [frame(KINDS[n]) for n in names]
    for ctx in [r.ctx for r in readers] + [Context(emc_entries=0, megaflow_max=0)]:
        results = ctx.process(p, single, [IN] * len(single))
        assert {n: res.outputs for n, res in zip(names, results, strict=True)} == expected


# ---------------------------------------------------------------------------
# One batch sees one state; later batches never see an older one.


def test_each_batch_sees_one_pipeline_version_and_versions_only_grow():
    p = Pipeline()
    match = Match(eth_type=0x0800, ipv4_dst="10.0.0.1")
    p.add_flow(0, 10, match, [apply(Output(100))])
    frames = [frame("10.0.0.1", sport=1000 + i) for i in range(64)]
    readers = [Reader(ctx) for ctx in reader_contexts()]
    last_seen = {id(r): 0 for r in readers}
    versions = [0]

    def read(r: Reader):
        results = r.ctx.process(p, frames, [IN] * len(frames))
        seen = {tuple(port for port, _, _ in res.outputs) for res in results}
        if len(seen) != 1:
            r.problems.append(("mixed versions in one batch", seen))
            return
        [(port,)] = seen
        v = port - 100
        if v < last_seen[id(r)]:
            r.problems.append(("went back", last_seen[id(r)], v))
        last_seen[id(r)] = v
        r.packets += len(frames)

    def write(stop: threading.Event):
        v = 0
        while not stop.is_set() and v < 100_000:
            v += 1
            # ADD of an identical entry replaces it (and resets its counters).
            p.add_flow(0, 10, match, [apply(Output(100 + v))])
            versions.append(v)
            time.sleep(0.0002)

    run_readers(readers, read, write, duration=2.0)
    # The writer made progress.  How much depends on how often three busy
    # Python threads hand it the GIL, so only a few versions are required.
    assert versions[-1] >= 2
    assert max(last_seen.values()) > 0
    final = versions[-1]
    for r in readers:
        results = r.ctx.process(p, frames[:4], [IN] * 4)
        assert [res.outputs[0][0] for res in results] == [100 + final] * 4


# ---------------------------------------------------------------------------
# Tuple-space restructuring under readers: the high-priority rule always wins.


def test_priority_winner_is_stable_while_subtables_come_and_go():
    p = Pipeline()
    winner = Match(eth_type=0x0800, ipv4_dst="10.0.0.1")
    p.add_flow(0, 1000, winner, [apply(Output(2))])
    p.add_flow(0, 1, None, [apply(Output(3))])
    # The second half (ARP to another MAC) matches nothing but the table-miss entry.
    frames = [frame("10.0.0.1", sport=1000 + i) for i in range(32)] \
        + [bytes(Ether(src=MAC_A, dst="02:00:00:00:00:0c") / ARP(pdst=f"10.0.0.{i}"))
           for i in range(32)]
    readers = [Reader(ctx) for ctx in reader_contexts()]

    def read(r: Reader):
        results = r.ctx.process(p, frames, [IN] * len(frames))
        for i, res in enumerate(results):
            want = [2] if i < 32 else [3]
            got = [port for port, _, _ in res.outputs]
            if got != want:
                r.problems.append((i, got))
        r.packets += len(frames)

    def write(stop: threading.Event):
        i = 0
        while not stop.is_set():
            i += 1
            # Lower-priority rules that also match, in many masks, added and removed.
            m = [Match(eth_type=0x0800, ipv4_dst=f"10.0.0.0/{8 + i % 24}"),
                 Match(eth_type=0x0800, ipv4_src="10.9.9.9", ipv4_dst="10.0.0.1"),
                 Match(eth_type=0x0800, ip_proto=6, tcp_dst=80),
                 Match(eth_dst=MAC_B)][i % 4]
            p.add_flow(0, 2 + i % 900, m, [apply(Output(4))])
            try:
                p.add_flow(0, 1000, Match(in_port=99), [apply(Output(4))],
                           flags=OFPFF_CHECK_OVERLAP)
            except OFError:
                pass
            if i % 3 == 0:
                p.flow_mod(OFPFC_DELETE, 0, match=Match(eth_type=0x0800), out_port=4)
                p.flow_mod(OFPFC_DELETE, 0, match=Match(eth_dst=MAC_B), out_port=4)

    run_readers(readers, read, write, duration=0.7)


# ---------------------------------------------------------------------------
# A shared meter: exact accounting under parallel batches.


def test_shared_meter_accounting_is_exact_under_parallel_batches():
    p = Pipeline()
    p.set_port(2)
    burst = 500
    p.meter_mod(OFPMC_ADD, 1, OFPMF_PKTPS | OFPMF_BURST, [MeterBand(OFPMBT_DROP, 1, burst)])
    p.add_flow(0, 1, None, [Meter(1), apply(Output(2))])
    frames = [frame("10.0.0.1", sport=1000 + i) for i in range(32)]
    readers = [Reader(ctx) for ctx in reader_contexts()]
    passed = {id(r): 0 for r in readers}

    def read(r: Reader):
        results = r.ctx.process(p, frames, [IN] * len(frames))
        passed[id(r)] += sum(1 for res in results if res.outputs)
        r.packets += len(frames)

    t0 = time.monotonic()
    run_readers(readers, read, lambda stop: stop.wait(), duration=0.7)
    elapsed = time.monotonic() - t0
    total, ok = sum(r.packets for r in readers), sum(passed.values())
    assert burst <= ok <= burst + 1 * elapsed + 1
    [m] = p.meter_stats()
    assert m["packet_in_count"] == total
    assert m["byte_in_count"] == total * len(frames[0])
    assert m["bands"][0]["packet_count"] == total - ok
    [flow] = p.dump_flows()
    assert flow.packet_count == total


def test_readers_survive_their_rules_and_groups_being_deleted():
    p = Pipeline()
    for port in (1, 2, 3):
        p.set_port(port)
    frames = [frame("10.0.0.1", sport=1000 + i) for i in range(16)]
    readers = [Reader(ctx) for ctx in reader_contexts()]

    def read(r: Reader):
        results = r.ctx.process(p, frames, [IN] * len(frames))
        for res in results:
            if [port for port, _, _ in res.outputs] not in ([], [2], [3], [2, 3]):
                r.problems.append(res.outputs)
        r.packets += len(frames)

    def write(stop: threading.Event):
        while not stop.is_set():
            p.add_group(7, OFPGT_ALL, [Bucket((Output(2),)), Bucket((Output(3),))])
            p.add_flow(0, 5, Match(in_port=IN), [apply(Group(7))])
            p.add_flow(0, 4, None, [apply(Output(2))])
            p.group_mod(OFPGC_DELETE, OFPGT_ALL, 7)           # removes the flow using it
            p.meter_mod(OFPMC_ADD, 3, OFPMF_PKTPS, [MeterBand(OFPMBT_DROP, 10**9)])
            p.flow_mod(OFPFC_ADD, 0, 3, None, [Meter(3), apply(Output(3))])
            p.meter_mod(OFPMC_MODIFY, 3, OFPMF_PKTPS, [MeterBand(OFPMBT_DROP, 10**8)])
            p.flow_mod(OFPFC_DELETE_STRICT, 0, 4, None)
            p.meter_mod(OFPMC_DELETE, 3)                       # removes the flow using it
            p.flow_mod(OFPFC_DELETE, OFPTT_ALL)

    run_readers(readers, read, write, duration=0.6)
    assert p.dump_flows() == [] and p.group_stats() == [] and p.meter_stats() == []
    for r in readers:
        assert all(res.outputs == [] for res in r.ctx.process(p, frames, [IN] * len(frames)))
