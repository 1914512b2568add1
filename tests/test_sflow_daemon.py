"""sFlow through vswitchd and vswitchctl: settings set, shown, kept across
a restart and removed; a collector (a UDP socket on loopback) receives flow
samples of real traffic and counter samples of the ports, the host and a
VM; bad settings are refused with one clear line and change nothing.

Needs what tests/test_daemon.py needs; skipped otherwise.
"""

from __future__ import annotations

import socket
import time

import pytest

pytest.importorskip("pyroute2", reason="pyroute2 is needed to build topologies")

import sflow_testdecode  # noqa: E402
from nettopo import drain, ping, send_raw  # noqa: E402
from test_daemon import _SKIP, wait_for  # noqa: E402
from test_daemon import Env as DaemonEnv  # noqa: E402
from test_openflow import OFClient, flow_mod, free_port, status, subscribe  # noqa: E402

from vswitch import ofp  # noqa: E402
from vswitch.ofproto import messages as m  # noqa: E402

pytestmark = pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")


@pytest.fixture
def env():
    e = DaemonEnv()
    col = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    col.bind(("127.0.0.1", 0))
    col.setblocking(False)
    e.collector = col
    try:
        e.d.start()
        yield e
    finally:
        col.close()
        e.close()


def collect(env, seconds: float) -> list[dict]:
    out = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        out += [sflow_testdecode.decode(d) for d in drain(env.collector, 0.2)]
    return out


def test_sflow_from_the_daemon(env):
    port = env.collector.getsockname()[1]
    br = env.add_br()
    h1, h2 = env.hosts(2)
    env.add_ports(br, [h1, h2])
    env.ctl("set", "port", h2.port, "external_ids:iface-id=vif2",
            "external_ids:vm-id=guest-2", "external_ids:vm-name=guest-2")
    env.ctl("sflow-set", br, "--collector", f"127.0.0.1:{port}", "--agent", "127.0.0.1",
            "--sampling", "1", "--polling", "1", "--header", "64")
    shown = env.json("sflow-show", br)
    assert shown["settings"] == {"collectors": [f"127.0.0.1:{port}"], "agent": "127.0.0.1",
                                 "sampling": 1, "polling": 1, "header": 64}
    assert shown["status"]["agent_address"] == "127.0.0.1"
    assert shown["status"]["host_structures"] is True
    assert "sampling: 1 in 1" in env.out("sflow-show", br)

    assert ping(h1, h2.ip, count=5) == 5
    dgs = collect(env, 2.5)
    assert dgs and {d["agent"] for d in dgs} == {"127.0.0.1"}
    assert {d["version"] for d in dgs} == {5}
    seqs = [d["sequence_number"] for d in dgs]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    samples = [s for d in dgs for s in d["samples"]]
    flows = [s for s in samples if s["format"] == 1]
    ifidx = {socket.if_nametoindex(h.port) for h in (h1, h2)}
    # Ten ICMP frames (echo and reply) at 1:1, plus whatever ARP went by.
    icmp = [s for s in flows
            if s["records"][(0, 1)][0]["header"][12:14] == b"\x08\x00"
            and s["records"][(0, 1)][0]["header"][23] == 1]
    assert len(icmp) == 10
    assert {s["input"] for s in icmp} == ifidx and {s["output"] for s in icmp} == ifidx
    counters = {(s["source_type"], s["source_index"]) for s in samples if s["format"] == 2}
    assert {(0, i) for i in ifidx} <= counters, env.d.log()
    assert (2, 1) in counters and (3, 1) in counters        # host and the VM

    # Kept across a restart.
    env.d.stop()
    env.d.start()
    assert env.json("sflow-show", br)["settings"]["sampling"] == 1
    drain(env.collector, 0.1)
    assert collect(env, 1.5)

    # Removed: the collector hears nothing more.
    env.ctl("sflow-del", br)
    drain(env.collector, 0.3)
    assert env.json("sflow-show", br) == {"settings": None, "status": None}
    ping(h1, h2.ip, count=2)
    assert collect(env, 1.5) == []


def test_bad_sflow_settings_are_refused(env):
    port = env.collector.getsockname()[1]
    br = env.add_br()
    env.fails("sflow-set", br, "--collector", "127.0.0.1:70000", match="port must be 1..65535")
    env.fails("sflow-set", br, "--collector", "", match="collector")
    env.fails("sflow-set", br, "--collector", "127.0.0.1", "--agent", "nosuchdev0",
              match="nosuchdev0")
    env.fails("sflow-set", br, "--collector", "no.such.host.invalid", match="sFlow on")
    env.fails("sflow-set", br, "--collector", "127.0.0.1", "--header", "300", usage=True)
    env.fails("sflow-set", "nosuchbr", "--collector", "127.0.0.1", match="no bridge")
    env.fails("sflow-del", br, match="no sFlow settings")
    env.ctl("sflow-del", br, "--if-exists")
    assert env.json("sflow-show", br)["settings"] is None
    # A good setting, then a bad one: the good one stays in force.
    env.ctl("sflow-set", br, "--collector", f"127.0.0.1:{port}", "--agent", "127.0.0.1")
    env.fails("sflow-set", br, "--collector", "127.0.0.1", "--agent", "nosuchdev0")
    shown = env.json("sflow-show", br)
    assert shown["settings"]["collectors"] == [f"127.0.0.1:{port}"]
    assert shown["status"]["agent_address"] == "127.0.0.1"
    r = env.rpc("sflow-set", {"bridge": br, "settings": {"collectors": ["127.0.0.1"],
                                                         "sampling": "many"}})
    assert "sampling must be an integer" in r["error"]["message"]
    r = env.rpc("sflow-set", {"bridge": br, "settings": ["x"]})
    assert "must be an object" in r["error"]["message"]
    r = env.rpc("sflow-set", {"bridge": br, "settings": {"collectors": ["127.0.0.1"],
                                                         "bogus": 1}})
    assert "unknown sFlow setting" in r["error"]["message"]
    assert env.json("sflow-show", br)["settings"]["collectors"] == [f"127.0.0.1:{port}"]


def test_packet_ins_and_samples_share_the_upcall_queue(env):
    """One reader per bridge: packet-ins reach the controller and flow
    samples the collector, each one of them."""
    col_port = env.collector.getsockname()[1]
    br = env.add_br("b", "--fail-mode", "secure")
    of_port = free_port()
    env.ctl("set-controller", br, f"ptcp:{of_port}")
    assert wait_for(lambda: status(env, br)[0]["state"] == "listening", 5)
    h1, h2 = env.hosts(2)
    env.add_ports(br, [h1, h2])
    env.ctl("sflow-set", br, "--collector", f"127.0.0.1:{col_port}", "--agent", "127.0.0.1",
            "--sampling", "1", "--polling", "0")
    c = OFClient.tcp(of_port)
    try:
        subscribe(c)
        c.send(flow_mod(priority=0, instructions=(ofp.apply(ofp.Output(ofp.OFPP_CONTROLLER,
                                                                       max_len=64)),),
                        xid=c.next_xid()))
        c.barrier()
        drain(env.collector, 0.2)
        src = bytes.fromhex(h1.mac.replace(":", ""))
        frames = [b"\xff" * 6 + src + b"\x88\xb5" + bytes([i]) * 60 for i in range(20)]
        send_raw(h1, *frames)
        pins = [c.wait_for(m.PacketIn) for _ in range(20)]
        assert sorted(p.data[14] for p in pins) == list(range(20))
        dgs = collect(env, 1.5)
    finally:
        c.close()
    flows = [s for d in dgs for s in d["samples"] if s["format"] == 1
             and s["records"][(0, 1)][0]["header"][12:14] == b"\x88\xb5"]
    assert sorted(s["records"][(0, 1)][0]["header"][14] for s in flows) == list(range(20))
    # To the controller only: the switch itself is the destination.
    assert {s["output"] for s in flows} == {0x3FFFFFFF}
    assert {s["input"] for s in flows} == {socket.if_nametoindex(h1.port)}
