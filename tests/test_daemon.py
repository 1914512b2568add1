"""Integration tests of vswitchd and vswitchctl: a real daemon in a
subprocess with a private state directory, driven by vswitchctl (click's
CliRunner) and by raw JSON-RPC lines on its control socket, switching real
traffic between network namespaces (tests/nettopo.py).

Needs root, network namespaces, /dev/net/tun and pyroute2; skipped
otherwise.  Every test uses unique names and removes what it made even when
it fails; stopping the daemon is itself checked (SIGTERM -> exit 0, socket
and bridge devices gone).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time

import pytest

pytest.importorskip("pyroute2", reason="pyroute2 is needed to build topologies")

from click.testing import CliRunner  # noqa: E402
from nettopo import (  # noqa: E402
    Host,
    Sniffer,
    Topology,
    disable_ipv6,
    drain,
    ping,
    topology_unusable,
    udp_sender,
    udp_socket,
)
from pyroute2 import IPRoute, NetNS, netns  # noqa: E402

from vswitch import cli  # noqa: E402
from vswitch.config import ConfigStore  # noqa: E402
from vswitch.daemon import socket_alive  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX = "vd"
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


_SKIP = topology_unusable(PREFIX, "network namespaces, AF_PACKET, TAP devices",
                          need_tun=True)
pytestmark = pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")


def link_exists(name: str) -> bool:
    with IPRoute() as ipr:
        return bool(ipr.link_lookup(ifname=name))


def wait_for(cond, timeout: float = 3.0, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return bool(cond())


class Vswitchd:
    """One vswitchd subprocess on a state directory (its log goes to a file there)."""

    def __init__(self, state_dir: str, *extra: str) -> None:
        self.state_dir = state_dir
        self.sock = os.path.join(state_dir, "vswitchd.sock")
        self.extra = extra
        self.log_path = os.path.join(state_dir, "vswitchd.log")
        self.proc: subprocess.Popen | None = None

    def command(self, *extra: str) -> list[str]:
        return [sys.executable, "-m", "vswitch.daemon", "--state-dir", self.state_dir,
                "--log-level", "debug", *extra]

    @staticmethod
    def env() -> dict:
        path = os.environ.get("PYTHONPATH")
        return {**os.environ, "PYTHONPATH": REPO + (os.pathsep + path if path else "")}

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command(*self.extra), cwd=REPO, env=self.env(),
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not socket_alive(self.sock):
            if self.proc.poll() is not None:
                pytest.fail(f"vswitchd exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"vswitchd did not open {self.sock}:\n{self.log()}")
            time.sleep(0.02)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int:
        """SIGTERM; the exit status (the daemon is killed if it does not stop)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()
                pytest.fail(f"vswitchd ignored SIGTERM for {STOP_TIMEOUT_S}s:\n{self.log()}")
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-20000:]
        except OSError:
            return ""


class Env:
    """A topology, a state directory and the daemon running on it."""

    def __init__(self) -> None:
        self.topo = Topology(PREFIX)
        self.dir = tempfile.mkdtemp(prefix="vsd")
        self.d = Vswitchd(self.dir)
        self.subnet = random.randrange(16, 250)
        self.bridges: set[str] = set()          # bridge devices the daemon made
        self.runner = CliRunner()

    # --- addressing ---
    def ip(self, i: int) -> str:
        return f"10.{self.subnet}.0.{i}"

    def cidr(self, i: int) -> str:
        return f"{self.ip(i)}/24"

    def hosts(self, n: int) -> list[Host]:
        start = len(self.topo.hosts)
        return [self.topo.add_host(self.cidr(start + i + 1)) for i in range(n)]

    # --- vswitchctl ---
    def ctl(self, *args: str, input: str | None = None):
        r = self.runner.invoke(cli.main, ["--state-dir", self.dir, *args], input=input,
                               catch_exceptions=False)
        assert r.exit_code == 0, f"vswitchctl {' '.join(args)}: {r.output}\n{self.d.log()}"
        return r

    def out(self, *args: str, input: str | None = None) -> str:
        return self.ctl(*args, input=input).stdout

    def json(self, *args: str):
        return json.loads(self.ctl("--format", "json", *args).stdout)

    def fails(self, *args: str, match: str | None = None, usage: bool = False) -> str:
        """The command fails with one `vswitchctl: ...` line (or a click usage
        error); returns stderr."""
        r = self.runner.invoke(cli.main, ["--state-dir", self.dir, *args],
                               catch_exceptions=False)
        assert r.exit_code == (2 if usage else 1), f"{args}: exit {r.exit_code}: {r.output}"
        if not usage:
            assert r.stderr.startswith("vswitchctl: ") and r.stderr.count("\n") == 1, r.stderr
        if match:
            assert re.search(match, r.stderr, re.I), r.stderr
        return r.stderr

    def add_br(self, suffix: str = "b", *opts: str) -> str:
        name = self.topo.name(suffix)
        self.ctl("add-br", name, *opts)
        self.bridges.add(name)
        disable_ipv6(name)         # no router solicitations from LOCAL in the counters
        return name

    def add_ports(self, br: str, hosts: list[Host], *opts: str) -> None:
        for h in hosts:
            self.ctl("add-port", br, h.port, *opts)

    # --- raw JSON-RPC ---
    def connect(self, timeout: float = 10.0) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(self.d.sock)
        return s

    def raw(self, data: bytes) -> list[dict]:
        """Send bytes, close our side, return every reply line."""
        with self.connect() as s:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            return _read_replies(s)

    def rpc(self, method, params=None, req_id=1) -> dict:
        req = {"jsonrpc": "2.0", "id": req_id, "method": method}
        if params is not None:
            req["params"] = params
        (reply,) = self.raw(json.dumps(req).encode() + b"\n")
        return reply

    # --- teardown ---
    def close(self) -> None:
        rc = sock_left = None
        try:
            if self.d.running:
                rc = self.d.stop()
                sock_left = os.path.exists(self.d.sock)
        finally:
            self.d.kill()
            try:
                self.topo.close()
            finally:
                log = self.d.log()
                shutil.rmtree(self.dir, ignore_errors=True)
        if rc is not None:
            assert rc == 0, f"vswitchd exited with {rc} on SIGTERM:\n{log}"
            assert not sock_left, "vswitchd left its socket behind"
        left = [b for b in self.bridges if link_exists(b)]
        assert not left, f"bridge devices left behind: {left}"


def _read_replies(s: socket.socket, reset_ok: bool = False) -> list[dict]:
    """Reply lines until EOF (or, with reset_ok, until the daemon resets a
    connection it refused to read further)."""
    buf = b""
    while True:
        try:
            chunk = s.recv(1 << 16)
        except ConnectionResetError:
            if not reset_ok:
                raise
            break
        if not chunk:
            break
        buf += chunk
    return [json.loads(line) for line in buf.splitlines()]


@pytest.fixture
def env():
    e = Env()
    try:
        e.d.start()
        yield e
    finally:
        e.close()


def n_packets(line: str) -> int:
    return int(re.search(r"n_packets=(\d+)", line).group(1))


def normal_flow(e: Env, br: str) -> str:
    (line,) = [f for f in e.out("dump-flows", br).splitlines() if "actions=NORMAL" in f]
    assert "priority=0 actions=NORMAL" in line
    return line


def flow_texts(e: Env, br: str, *args: str) -> list[str]:
    """dump-flows lines without duration and counters (stable across calls)."""
    return [re.sub(r"duration=[^,]*, |n_packets=\d+, n_bytes=\d+, ", "", f["text"])
            for f in e.json("dump-flows", br, *args)]


def _udp_match(dport: int):
    def match(f: bytes) -> bool:
        return (len(f) >= 42 and f[12:14] == b"\x08\x00" and f[23] == 17
                and struct.unpack_from("!H", f, 14 + (f[14] & 0xF) * 4 + 2)[0] == dport)
    return match


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def _ip_csum_ok(frame: bytes) -> bool:
    hdr = frame[14:14 + (frame[14] & 0xF) * 4]
    s = sum(struct.unpack(f"!{len(hdr) // 2}H", hdr))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s == 0xFFFF


# --- configuration and forwarding --------------------------------------------------

def test_bridge_ports_learning_and_show(env):
    br = env.add_br()
    h1, h2 = env.hosts(2)
    assert br in env.out("list-br").split()
    assert env.json("list-br") == [br]
    assert env.out("add-port", br, h1.port) == f"{h1.port}: ofport 1\n"
    assert env.json("add-port", br, h2.port) == {"ofport": 2}
    assert env.out("list-ports", br).split() == [h1.port, h2.port]

    text = env.out("show")
    assert f"Bridge {br}\n    fail_mode: standalone\n" in text
    assert f"Port {br} (ofport LOCAL, internal, link up)" in text
    assert f"Port {h1.port} (ofport 1, system, link up, mtu 1500)" in text
    assert f"Port {h2.port} (ofport 2, system, link up, mtu 1500)" in text
    shown = env.json("show")
    assert env.json("show") == json.loads(env.ctl("show", "--format", "json").stdout)
    (b,) = shown
    assert b["name"] == br and b["running"] and b["local"]["type"] == "internal"
    assert [(p["name"], p["ofport"], p["type"], p["state"]["link"], p["error"])
            for p in b["ports"]] == [(h1.port, 1, "system", "up", None),
                                     (h2.port, 2, "system", "up", None)]

    # A fresh bridge is a learning switch: priority=0 actions=NORMAL.
    assert [f["text"].split(", ")[-1] for f in env.json("dump-flows", br)] == [
        "priority=0 actions=NORMAL"]
    n0 = n_packets(normal_flow(env, br))
    assert ping(h1, h2.ip) == 3
    assert wait_for(lambda: n_packets(normal_flow(env, br)) >= n0 + 6)  # 3 + 3 (+ ARP)
    n1 = n_packets(normal_flow(env, br))
    assert ping(h2, h1.ip) == 3
    assert wait_for(lambda: n_packets(normal_flow(env, br)) >= n1 + 6)

    fdb = {e["mac"]: e for e in env.json("fdb-show", br)}
    assert fdb[h1.mac]["port"] == h1.port and fdb[h1.mac]["ofport"] == 1
    assert fdb[h2.mac]["port"] == h2.port and fdb[h2.mac]["vlan"] == 0
    text = env.out("fdb-show", br)
    assert h1.mac in text and h2.mac in text

    env.ctl("del-port", br, h2.port)
    assert env.out("list-ports", br).split() == [h1.port]
    assert ping(h1, h2.ip, count=2, timeout=0.3) == 0
    env.ctl("add-port", br, h2.port)              # the freed ofport is reused
    assert env.json("get", "port", h2.port, "ofport") == 2
    assert ping(h1, h2.ip) == 3
    env.ctl("del-port", h2.port)                  # without the bridge
    env.ctl("del-port", "--if-exists", h2.port)
    env.ctl("del-br", br)
    assert env.json("list-br") == [] and env.json("show") == []
    assert wait_for(lambda: not link_exists(br))
    env.ctl("del-br", "--if-exists", br)
    assert ping(h1, h2.ip, count=1, timeout=0.3) == 0


def test_flows_add_mod_del_dump(env, tmp_path):
    br = env.add_br()
    h1, h2 = env.hosts(2)
    env.add_ports(br, [h1, h2])
    assert ping(h1, h2.ip) == 3

    # A flow that drops h1's IP traffic stops the ping; deleting it restores it.
    env.ctl("add-flow", br, f"priority=100,ip,nw_src={h1.ip},actions=drop")
    assert ping(h1, h2.ip, count=2, timeout=0.3) == 0
    env.ctl("del-flows", br, f"ip,nw_src={h1.ip}")
    assert flow_texts(env, br) == [" cookie=0x0, table=0, priority=0 actions=NORMAL"]
    assert ping(h1, h2.ip) == 3

    # add-flows: all or nothing.
    good = tmp_path / "good.flows"
    good.write_text("# comment\n\n"
                    "cookie=0x1,priority=50,udp,tp_dst=7001,actions=drop\n"
                    "cookie=0x2,priority=60,udp,in_port=1,tp_dst=7001,actions=drop\n"
                    "table=1,priority=10,tcp,actions=output:2\n")
    assert env.out("add-flows", br, str(good)) == "added 3 flows\n"
    before = flow_texts(env, br)
    assert len(before) == 4
    normal_before = n_packets(normal_flow(env, br))
    assert normal_before > 0
    bad_syntax = tmp_path / "bad.flows"
    bad_syntax.write_text("priority=70,udp,tp_dst=7002,actions=drop\n"
                          "priority=71,udp,tp_dst=7003,actions=frobnicate\n")
    env.fails("add-flows", br, str(bad_syntax), match="frobnicate")
    bad_of = tmp_path / "bad_of.flows"
    bad_of.write_text("priority=70,udp,tp_dst=7002,actions=drop\n"
                      "cookie=0x1,priority=50,udp,tp_dst=7001,actions=output:1\n"
                      "table=5,priority=1,actions=goto_table:2\n")
    env.fails("add-flows", br, str(bad_of), match="OpenFlow error")
    assert flow_texts(env, br) == before
    # The undo put back the flow the file replaced and left the others alone.
    assert n_packets(normal_flow(env, br)) >= normal_before
    assert env.out("add-flows", br, "-", input="priority=5,arp,actions=NORMAL\n") == \
        "added 1 flows\n"
    env.ctl("del-flows", br, "--strict", "priority=5,arp")

    # mod-flows: loose modifies every flow the match covers, --strict one.
    env.ctl("mod-flows", br, "udp,tp_dst=7001,actions=output:2")
    assert sorted(f for f in flow_texts(env, br, "udp") if "output:2" in f) == [
        " cookie=0x1, table=0, priority=50,udp,tp_dst=7001 actions=output:2",
        " cookie=0x2, table=0, priority=60,udp,in_port=1,tp_dst=7001 actions=output:2"]
    env.ctl("mod-flows", br, "--strict", "priority=60,udp,in_port=1,tp_dst=7001,actions=drop")
    assert sorted(flow_texts(env, br, "udp")) == [
        " cookie=0x1, table=0, priority=50,udp,tp_dst=7001 actions=output:2",
        " cookie=0x2, table=0, priority=60,udp,in_port=1,tp_dst=7001 actions=drop"]
    env.ctl("mod-flows", br, "--strict", "priority=61,udp,in_port=1,tp_dst=7001,actions=drop")
    assert len(flow_texts(env, br, "udp")) == 2                 # nothing matched strictly

    # dump-flows filters and sorting.
    assert flow_texts(env, br, "table=1") == [
        " cookie=0x0, table=1, priority=10,tcp actions=output:2"]
    assert len(flow_texts(env, br, "cookie=0x2/0xffffffffffffffff")) == 1
    assert [f["priority"] for f in env.json("dump-flows", br, "--sort", "priority")] == [
        0, 10, 50, 60]
    assert [f["priority"] for f in env.json("dump-flows", br, "--rsort", "priority")] == [
        60, 50, 10, 0]
    text = env.out("dump-flows", br, "--rsort", "priority").splitlines()
    assert "priority=60" in text[0] and "priority=0 " in text[-1]
    assert [f["table_id"] for f in env.json("dump-flows", br, "--rsort", "table")][0] == 1

    # dump-aggregate and dump-tables.
    agg = env.json("dump-aggregate", br)
    assert agg["flow_count"] == 4 and agg["packet_count"] >= normal_before
    assert env.json("dump-aggregate", br, "udp")["flow_count"] == 2
    assert re.fullmatch(r"packet_count=\d+ byte_count=\d+ flow_count=2\n",
                        env.out("dump-aggregate", br, "udp"))
    tables = {t["table_id"]: t for t in env.json("dump-tables", br)}
    assert tables[0]["active_count"] == 3 and tables[1]["active_count"] == 1
    assert tables[0]["lookup_count"] >= normal_before
    assert "table 1: active=1" in env.out("dump-tables", br)

    # del-flows with a filter removes only what it covers; without one, all.
    env.ctl("del-flows", br, "udp,tp_dst=7001")
    assert len(flow_texts(env, br)) == 2
    env.ctl("del-flows", br)
    assert env.json("dump-flows", br) == []
    assert ping(h1, h2.ip, count=2, timeout=0.3) == 0           # no flows: drop
    env.ctl("add-flow", br, "actions=NORMAL")
    assert ping(h1, h2.ip) == 3


def test_port_counters_match_traffic(env):
    br = env.add_br()
    h1, h2 = env.hosts(2)
    env.add_ports(br, [h1, h2])
    env.topo.set_neighbor(h1, h2.ip, h2.mac)         # no ARP in the counts
    env.topo.set_neighbor(h2, h1.ip, h1.mac)
    env.ctl("add-flow", br, "priority=200,udp,in_port=1,tp_dst=7100,actions=output:2")
    n, payload = 50, b"c" * 100
    frame_len = 14 + 20 + 8 + len(payload)
    before = {p["name"]: p for p in env.json("dump-ports", br)}
    assert set(before) == {br, h1.port, h2.port}
    rx, tx = udp_socket(h2, 7100), udp_sender(h1)
    try:
        for _ in range(n):
            tx.sendto(payload, (h2.ip, 7100))
        got = drain(rx, expect=n)
    finally:
        rx.close()
        tx.close()
    assert len(got) == n

    def delta(port: str, key: str) -> int:
        now = {p["name"]: p for p in env.json("dump-ports", br)}
        return now[port][key] - before[port][key]

    assert wait_for(lambda: delta(h2.port, "tx_packets") >= n)
    assert delta(h1.port, "rx_packets") == n
    assert delta(h1.port, "rx_bytes") == n * frame_len
    assert delta(h2.port, "tx_packets") == n
    assert delta(h2.port, "tx_bytes") == n * frame_len
    assert delta(h1.port, "tx_packets") == 0 and delta(h2.port, "rx_packets") == 0
    assert delta(h1.port, "rx_dropped") == 0 and delta(h2.port, "tx_dropped") == 0
    (flow,) = env.json("dump-flows", br, "udp,tp_dst=7100")
    assert (flow["packet_count"], flow["byte_count"]) == (n, n * frame_len)
    assert env.json("dump-aggregate", br, "udp") == {
        "packet_count": n, "byte_count": n * frame_len, "flow_count": 1}
    text = env.out("dump-ports", br)
    assert text.startswith("port stats: 3 ports\n")
    assert f"port {h1.port} (1): rx pkts={before[h1.port]['rx_packets'] + n}, " in text
    stats = env.json("dpif-stats", br)
    assert sum(t["packets"] for t in stats["threads"]) >= n


def test_rewrite_flows_seen_on_the_wire(env):
    br = env.add_br()
    h1, h2 = env.hosts(2)
    env.add_ports(br, [h1, h2])
    env.topo.set_neighbor(h1, h2.ip, h2.mac)
    env.ctl("add-flows", br, "-", input=(
        "priority=300,udp,in_port=1,tp_dst=7200,actions=mod_nw_tos:32,output:2\n"
        "priority=300,udp,in_port=1,tp_dst=7201,"
        "actions=set_field:02:aa:bb:cc:dd:ee->eth_dst,output:2\n"))
    rx, tx = udp_socket(h2, 7200), udp_sender(h1)
    try:
        with Sniffer(h2.ns, "eth0") as sn:
            tx.sendto(b"tos", (h2.ip, 7200))
            tx.sendto(b"dst", (h2.ip, 7201))
            frames = sn.frames(0.3, lambda f: _udp_match(7200)(f) or _udp_match(7201)(f))
        tos = [f for f in frames if _udp_match(7200)(f[0])]
        dst = [f for f in frames if _udp_match(7201)(f[0])]
        got = drain(rx, wait=0.2, expect=1)
    finally:
        rx.close()
        tx.close()
    assert len(tos) == 1 and len(dst) == 1
    frame = tos[0][0]
    assert frame[15] == 32 and _ip_csum_ok(frame)
    assert frame[0:6] == _mac(h2.mac)
    assert got == [b"tos"]                 # checksums fixed: the host took it
    frame = dst[0][0]
    assert frame[0:6] == _mac("02:aa:bb:cc:dd:ee") and frame[15] == 0
    assert frame[6:12] == _mac(h1.mac)


def test_vlan_access_ports(env):
    br = env.add_br()
    h1, h2, h3, h4 = env.hosts(4)
    env.add_ports(br, [h1, h2], "--tag", "10")
    env.add_ports(br, [h3, h4], "--tag", "20")
    assert ping(h1, h2.ip) == 3                         # same tag
    assert ping(h3, h4.ip) == 3
    assert ping(h1, h3.ip, count=2, timeout=0.3) == 0   # different tags: isolated
    assert ping(h2, h4.ip, count=1, timeout=0.3) == 0
    (b,) = env.json("show")
    assert [(p["name"], p["tag"]) for p in b["ports"]] == [
        (h1.port, 10), (h2.port, 10), (h3.port, 20), (h4.port, 20)]
    assert f"Port {h3.port} (ofport 3, system, tag 20, link up" in env.out("show")
    fdb = {e["mac"]: e["vlan"] for e in env.json("fdb-show", br)}
    assert fdb[h1.mac] == fdb[h2.mac] == 10 and fdb[h3.mac] == fdb[h4.mac] == 20
    env.ctl("set", "port", h3.port, "tag=10")           # moves h3 to VLAN 10
    assert env.json("get", "port", h3.port, "tag") == 10
    # h1's neighbour entry for h3 failed while they were apart: the first
    # echo can go while ARP resolves again, so warm up before counting.
    ping(h1, h3.ip, count=1)
    assert ping(h1, h3.ip) == 3
    assert ping(h4, h3.ip, count=1, timeout=0.3) == 0


def test_trace(env):
    br = env.add_br()
    h1, h2 = env.hosts(2)
    env.add_ports(br, [h1, h2])
    env.ctl("add-flows", br, "-", input=(
        "priority=100,tcp,actions=goto_table:1\n"
        "table=1,priority=100,tcp,tp_dst=80,actions=mod_nw_tos:16,output:2\n"))
    pkt = f"in_port=1,tcp,nw_src={h1.ip},nw_dst={h2.ip},tp_dst=80"
    lines = env.out("trace", br, pkt).splitlines()
    assert lines[0] == "0. priority=100,tcp actions=goto_table:1"
    assert lines[1] == ("1. table=1, priority=100,tcp,tp_dst=80 "
                        "actions=set_field:4->ip_dscp,output:2")
    mega = lines[3]
    assert mega.startswith("Megaflow: ") and "tcp" in mega and "tp_dst=80" in mega
    assert lines[4] == f"Datapath actions: {h2.port}"
    r = env.json("trace", br, pkt)
    assert [s["table"] for s in r["steps"]] == [0, 1]
    assert [(o["port"], o["ofport"]) for o in r["outputs"]] == [(h2.port, 2)]
    assert r["upcalls"] == []

    lines = env.out("trace", br, "in_port=1,tcp,tp_dst=22").splitlines()
    assert lines[1] == "1. No match: drop" and lines[-1] == "Datapath actions: drop"
    lines = env.out("trace", br, "in_port=2,udp,tp_dst=53").splitlines()
    assert lines[0] == "0. priority=0 actions=NORMAL"
    assert lines[-1] == "Datapath actions: NORMAL"
    env.ctl("add-flows", br, "-", input=(
        "priority=50,sctp,tp_dst=9,actions=output:2\n"
        "priority=50,icmp6,icmp_type=135,nd_target=2001:db8::5,nd_sll=02:00:00:00:00:07,"
        "actions=output:1\n"))
    assert env.out("trace", br, "in_port=1,sctp,tp_dst=9").endswith(
        f"Datapath actions: {h2.port}\n")
    assert env.out("trace", br, "in_port=2,icmp6,icmp_type=135,nd_target=2001:db8::5,"
                   "nd_sll=02:00:00:00:00:07").endswith(f"Datapath actions: {h1.port}\n")
    env.ctl("add-flow", br, "priority=100,arp,actions=CONTROLLER:64")
    r = env.json("trace", br, "in_port=1,arp,arp_tpa=10.0.0.9")
    assert r["steps"][0]["rule"] == "priority=100,arp actions=CONTROLLER:64"
    assert len(r["upcalls"]) == 1
    assert "(+1 to controller)" in env.out("trace", br, "in_port=1,arp")
    env.fails("trace", br, "in_port=1,tcp,tp_dst=99999", match="too wide")
    env.fails("trace", br + "x", "in_port=1", match="no bridge")


def test_groups_and_meters_through_the_cli(env):
    br = env.add_br()
    h1, h2 = env.hosts(2)
    env.add_ports(br, [h1, h2])
    env.ctl("add-group", br, "group_id=1,type=all,bucket=output:2")
    env.ctl("add-meter", br, "meter=3,pktps,band=type=drop,rate=1000")
    env.ctl("add-flow", br, "priority=20,in_port=1,ip,actions=meter:3,group:1")
    groups = env.json("dump-groups", br)
    assert [(g["group_id"], g["ref_count"]) for g in groups] == [(1, 1)]
    assert groups[0]["text"] == "group_id=1,type=all,bucket=actions=output:2"
    assert "meter=3 pktps bands=type=drop rate=1000" in env.out("dump-meters", br)
    assert ping(h1, h2.ip)                     # ARP by NORMAL, IP by the group
    assert env.json("dump-groups", br)[0]["packet_count"] > 0
    assert env.json("dump-meters", br)[0]["packet_in_count"] > 0
    env.ctl("mod-group", br, "group_id=1,type=all,bucket=actions=drop")
    assert not ping(h1, h2.ip, count=1)
    env.fails("add-group", br, "group_id=1,type=all,bucket=output:2", match="exists")
    env.fails("add-group", br, "group_id=2,type=frob", match="group type")
    env.fails("add-meter", br, "meter=4,band=type=drop", match="rate")
    env.ctl("del-groups", br, "group_id=1")        # removes the flow using it too
    assert "group:1" not in env.out("dump-flows", br)
    env.ctl("del-meters", br)
    assert env.json("dump-meters", br) == []


def test_link_state_follows_the_kernel(env):
    br = env.add_br()
    [h1] = env.hosts(1)
    env.add_ports(br, [h1])

    def link() -> str:
        [p] = [p for p in env.json("show")[0]["ports"] if p["name"] == h1.port]
        return p["state"]["link"]

    assert wait_for(lambda: link() == "up")
    with NetNS(h1.ns) as n:
        (idx,) = n.link_lookup(ifname="eth0")
        n.link("set", index=idx, state="down")     # the veth peer loses carrier
    assert wait_for(lambda: link() == "down")
    with NetNS(h1.ns) as n:
        n.link("set", index=idx, state="up")
    assert wait_for(lambda: link() == "up")


def test_trace_leaves_counters_alone(env):
    br = env.add_br()
    env.ctl("add-flow", br, "priority=10,udp,actions=drop")
    env.ctl("trace", br, "in_port=1,udp,tp_dst=53")
    assert env.json("dump-aggregate", br, "udp")["packet_count"] == 0


def test_restart_restores_bridges_and_ports(env):
    br = env.add_br()
    spare = env.add_br("c")
    h1, h2, h3 = env.hosts(3)
    env.add_ports(br, [h1, h2, h3])
    env.ctl("set", "port", h3.port, "external_ids:vm-id=vm3")
    env.ctl("add-flow", br, "priority=9,arp,actions=NORMAL")
    assert ping(h1, h2.ip) == 3

    def config(shown):
        """show --format json without what a restart changes (ifindex, thread)."""
        if isinstance(shown, dict):
            return {k: config(v) for k, v in shown.items() if k not in ("ifindex", "thread")}
        if isinstance(shown, list):
            return [config(v) for v in shown]
        return shown

    shown = env.json("show")
    assert env.d.stop() == 0
    assert not os.path.exists(env.d.sock)
    assert not link_exists(br) and not link_exists(spare)
    assert ping(h1, h2.ip, count=1, timeout=0.3) == 0
    env.d.start()
    assert config(env.json("show")) == config(shown)
    assert ping(h1, h2.ip) == 3 and ping(h3, h1.ip) == 3        # no new command
    assert flow_texts(env, br) == [" cookie=0x0, table=0, priority=0 actions=NORMAL"]
    assert env.json("get", "port", h3.port, "external_ids") == {"vm-id": "vm3"}

    # Restart with a port's device gone and the spare bridge's name taken by
    # another device: both stay configured, show says so, and they can be
    # deleted; everything else works.
    assert env.d.stop() == 0
    with IPRoute() as ipr:
        ipr.link("del", index=ipr.link_lookup(ifname=h3.port)[0])
        ipr.link("add", ifname=spare, kind="veth", peer=env.topo.name("cq"))
    env.topo.links.append(spare)                        # removed with the topology
    env.bridges.discard(spare)
    env.d.start()
    by_name = {b["name"]: b for b in env.json("show")}
    assert by_name[spare]["running"] is False
    (p3,) = [p for p in by_name[br]["ports"] if p["name"] == h3.port]
    assert p3["error"] == "not attached" and p3["state"] == {}
    assert f"Port {h3.port} (ofport 3, system, error: not attached)" in env.out("show")
    assert env.json("list-br") == sorted([br, spare])
    assert ping(h1, h2.ip) == 3
    env.ctl("del-port", h3.port)
    env.ctl("del-br", spare)
    assert env.json("list-br") == [br]
    assert link_exists(spare)                           # not ours: left alone
    assert [p["name"] for p in env.json("show")[0]["ports"]] == [h1.port, h2.port]


def test_fail_mode_secure_and_patch_ports(env):
    br1 = env.add_br("b", "--fail-mode", "secure")
    assert env.json("dump-flows", br1) == []            # secure: no flows of its own
    br2 = env.add_br("c")
    h1, h2 = env.hosts(2)
    env.ctl("add-port", br1, h1.port)
    env.ctl("add-port", br2, h2.port)
    pa, pb = env.topo.name("pa"), env.topo.name("pb")
    env.ctl("add-port", br1, pa, "--type", "patch", "--option", f"peer={pb}")
    env.ctl("add-port", br2, pb, "--type", "patch", "--option", f"peer={pa}")
    assert ping(h1, h2.ip, count=1, timeout=0.3) == 0
    env.ctl("add-flow", br1, "actions=NORMAL")
    assert ping(h1, h2.ip) == 3
    fdb = {e["mac"]: e["port"] for e in env.json("fdb-show", br1)}
    assert fdb[h2.mac] == pa
    assert env.json("get", "bridge", br1, "fail_mode") == "secure"

    # The peer bridge goes away and comes back: the patch hooks up again.
    env.ctl("del-br", br2)
    assert ping(h1, h2.ip, count=1, timeout=0.3) == 0
    env.ctl("add-br", br2)
    env.ctl("add-port", br2, h2.port)
    env.ctl("add-port", br2, pb, "--type", "patch", "--option", f"peer={pa}")
    assert ping(h1, h2.ip) == 3
    # So does a peer port deleted and added again.
    env.ctl("del-port", pb)
    assert ping(h1, h2.ip, count=1, timeout=0.3) == 0
    env.ctl("add-port", br2, pb, "--type", "patch", "--option", f"peer={pa}")
    assert ping(h1, h2.ip) == 3


# --- bad input ------------------------------------------------------------------------

def test_bad_requests_leave_state_intact(env):
    br = env.add_br()
    h1, h2 = env.hosts(2)                               # h2's veth is not a port
    env.ctl("add-port", br, h1.port, "--tag", "7")
    env.ctl("add-flow", br, "priority=10,udp,actions=drop")
    shown = env.json("show")
    flows = flow_texts(env, br)
    missing = env.topo.name("zz")                       # no such device
    nobr = env.topo.name("nob")

    env.fails("add-br", br, match="already exists")
    for bad in ("bad/name", "-x", "a" * 16, "", "sp ace", ".x"):
        env.fails("add-br", "--", bad, match="invalid bridge name")
    env.fails("del-br", nobr, match="no bridge")
    env.fails("list-ports", nobr, match="no bridge")
    env.fails("add-port", nobr, h1.port, match="no bridge")
    env.fails("add-port", br, h1.port, match="already used")
    env.fails("add-port", br, br, match="already used")
    env.fails("add-port", br, "bad/port", match="invalid port name")
    env.fails("add-port", br, missing, match="no device")
    env.fails("add-port", br, h2.port, "--type", "tap", match="cannot add port")
    env.fails("add-port", br, h2.port, "--type", "internal", match="cannot add port")
    env.fails("add-port", br, missing, "--type", "patch", match="peer")
    env.fails("add-port", br, missing, "--ofport", "1", match="ofport 1")
    env.fails("add-port", br, missing, "--tag", "5000", usage=True)
    env.fails("add-port", br, missing, "--trunks", "10,x", match="bad VLAN list")
    env.fails("add-port", br, missing, "--type", "internal", "--trunks", "5000",
              match="5000")
    env.fails("add-port", br, missing, "--type", "internal", "--option", "vlan_mode=bogus",
              match="vlan_mode")
    env.fails("del-port", missing, match="no port")
    env.fails("del-port", nobr, h1.port, match="not " + nobr)
    env.fails("set", "port", h1.port, "tag=5000", match="5000")
    env.fails("set", "port", h1.port, "ofport=9", match="cannot be set")
    env.fails("set", "bridge", br, "fail_mode=open", match="fail_mode")
    env.fails("get", "port", missing, match="no port")
    env.fails("dump-flows", nobr, match="no bridge")
    env.fails("add-flow", br, "priority=1,actions=frobnicate", match="frobnicate")
    env.fails("add-flow", br, "nw_dst=10.0.0.300,actions=drop", match="bad address")
    env.fails("add-flow", br, "priority=1,in_port=1", match="actions")
    env.fails("add-flow", br, "tp_dst=80,actions=drop", match="tp_dst needs")
    env.fails("add-flow", br, "table=3,actions=goto_table:1", match="OpenFlow error")
    env.fails("add-flow", br, "nw_src=10.0.0.1,actions=drop", match="OpenFlow error")
    env.fails("add-flow", br, "tcp_dst=80,actions=drop", match="OpenFlow error")
    env.fails("add-flow", br, "ip,actions=group:7", match="OpenFlow error")
    env.fails("add-flow", br, "actions=output:0", match="OpenFlow error")
    env.fails("add-flow", br, "table=255,actions=drop", match="OpenFlow error|table")
    env.fails("mod-flows", br, "udp,actions=frobnicate", match="frobnicate")
    env.fails("del-flows", br, "cookie=0x1", match="cookie mask")
    env.fails("dump-flows", br, "tp_dst=80", match="tp_dst needs")
    env.fails("dump-flows", br, "--sort", "color", match="cannot sort")
    env.fails("trace", br, "in_port=1,frob=2", match="frob")
    env.fails("del-port", "a", "b", "c", match="usage")

    assert env.json("show") == shown
    assert flow_texts(env, br) == flows
    assert env.out("list-ports", br).split() == [h1.port]
    assert not link_exists(missing)
    assert link_exists(h2.port) and ping(h2, h1.ip, count=1, timeout=0.3) == 0
    # Nothing of the refused ports was kept: the next port gets ofport 2.
    assert env.json("add-port", br, missing, "--type", "internal") == {"ofport": 2}
    env.bridges.add(missing)                            # must vanish with the daemon


def test_protocol_garbage_gets_errors(env):
    br = env.add_br()
    shown = env.json("show")

    def alive():
        assert env.rpc("list-br") == {"jsonrpc": "2.0", "id": 1, "result": [br]}

    def error(reply: dict, code: int, match: str) -> None:
        assert reply["jsonrpc"] == "2.0" and "result" not in reply, reply
        assert reply["error"]["code"] == code, reply
        assert re.search(match, reply["error"]["message"], re.I), reply

    (r,) = env.raw(b"not json\n")
    error(r, -32700, "parse error")
    assert r["id"] is None
    (r,) = env.raw(b"\xff\xfe\x00garbage\n")
    error(r, -32700, "parse error")
    (r,) = env.raw(b"[" * 100_000 + b"\n")              # nesting deeper than the parser
    error(r, -32700, "parse error")
    (r,) = env.raw(b'["list-br"]\n')
    error(r, -32600, "invalid request")
    (r,) = env.raw(b'{"jsonrpc": "2.0", "id": 3}\n')
    error(r, -32600, "invalid request")
    (r,) = env.raw(b'{"id": 4, "method": 17}\n')
    error(r, -32600, "invalid request")
    error(env.rpc("frobnicate", req_id=5), -32000, "unknown method")
    assert env.rpc("frobnicate", req_id=5)["id"] == 5
    alive()

    ok = env.topo.name("ok")
    bad_params = [
        ("list-br", ["x"], "params must be an object"),
        ("list-br", {"bridge": br}, "bad parameters"),
        ("add-br", {}, "bad parameters"),
        ("add-br", {"bridge": 5}, "invalid bridge name"),
        ("add-br", {"bridge": ["x"]}, "bad parameters"),
        ("add-br", {"bridge": ok, "threads": "many"}, "n_poll_threads"),
        ("add-br", {"bridge": ok, "threads": 0}, "n_poll_threads"),
        ("add-br", {"bridge": ok, "fail_mode": "open"}, "fail_mode"),
        ("list-ports", {"bridge": {"a": 1}}, "."),
        ("add-port", {"bridge": br, "port": "vdx", "tag": 5000}, "5000"),
        ("add-port", {"bridge": br, "port": "vdx", "tag": "7"}, "tag"),
        ("add-port", {"bridge": br, "port": "vdx", "trunks": "10"}, "trunks"),
        ("add-port", {"bridge": br, "port": "vdx", "options": ["a"]}, "options"),
        ("add-port", {"bridge": br, "port": "vdx", "type": "warp"}, "port type"),
        ("add-port", {"bridge": br, "port": "vdx", "ofport": 0}, "ofport"),
        ("add-flow", {"bridge": br, "flow": 5}, "flow must be text"),
        ("add-flows", {"bridge": br, "flows": [1, 2]}, "list of strings"),
        ("add-flows", {"bridge": br, "flows": "actions=drop"}, "list of strings"),
        ("dump-flows", {"bridge": br, "sort": 5}, "sort must be a string"),
        ("set", {"kind": "port", "name": "vdx", "key": "tag", "value": 1}, "no port"),
        ("set", {"kind": "table", "name": br, "key": "x", "value": 1}, "unknown table"),
        ("get", {"kind": "bridge", "name": br, "key": "nope"}, "no column"),
        ("trace", {"bridge": br, "packet": None}, "must be text"),
        ("del-port", {"port": None}, "no port"),
    ]
    for method, params, match in bad_params:
        error(env.rpc(method, params), -32000, match)
    alive()

    # Several requests on one connection are answered in order; a notification
    # (no id) is answered too, with a null id.
    replies = env.raw(b'{"id": 1, "method": "list-br"}\n'
                      b'{"id": 2, "method": "nope"}\n'
                      b'{"method": "list-br"}\n')
    assert [r.get("id") for r in replies] == [1, 2, None]
    assert replies[0]["result"] == [br] and "error" in replies[1]

    # A 10 MB line: not JSON, or JSON with a 10 MB parameter.
    (r,) = env.raw(b"x" * (10 << 20) + b"\n")
    error(r, -32700, "parse error")
    big = json.dumps({"id": 9, "method": "list-br", "params": {"pad": "y" * (10 << 20)}})
    (r,) = env.raw(big.encode() + b"\n")
    error(r, -32000, "bad parameters")
    assert len(json.dumps(r)) < 4096
    alive()

    # A line over the daemon's limit (16 MiB) is refused and the connection closed.
    with env.connect(timeout=20) as s:
        def send():
            with contextlib.suppress(OSError):
                s.sendall(b"z" * (17 << 20) + b"\n")
        th = threading.Thread(target=send)
        th.start()
        replies = _read_replies(s, reset_ok=True)
        th.join()
    (r,) = replies
    error(r, -32600, "too large")
    alive()

    # Clients that go away: mid-request, before reading the reply, mid-reply.
    with env.connect() as s:
        s.sendall(b'{"id": 1, "method": "li')
    with env.connect() as s:
        s.sendall(b'{"id": 1, "method": "show"}\n' * 50)
    with env.connect() as s:
        s.sendall(b'{"id": 1, "method": "show"}\n' * 2000)
        s.recv(10)
    with env.connect() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.sendall(b'{"id": 1, "meth')
    alive()

    assert env.json("show") == shown
    assert env.d.running
    log = env.d.log()
    assert "Traceback" not in log and "internal error" not in log, log


def test_socket_is_private_and_second_daemon_refused(env, tmp_path):
    br = env.add_br()
    h1, h2 = env.hosts(2)
    env.add_ports(br, [h1, h2])
    st = os.stat(env.d.sock)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600

    def second(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "vswitch.daemon", "--log-level", "debug",
                               *args], cwd=REPO, env=Vswitchd.env(), capture_output=True,
                              text=True, timeout=30)

    # Same state directory (and so the same socket).
    r = second("--state-dir", env.dir)
    assert r.returncode != 0 and "another daemon is serving" in r.stderr, r
    assert "bridge" not in r.stdout + r.stderr, r       # touched nothing on its way out
    # Another state directory, the same socket.
    r = second("--state-dir", str(tmp_path / "other"), "--socket", env.d.sock)
    assert r.returncode != 0 and "another daemon is serving" in r.stderr, r
    # The same state directory, another socket.
    r = second("--state-dir", env.dir, "--socket", str(tmp_path / "other.sock"))
    assert r.returncode != 0 and "another vswitchd is running" in r.stderr, r
    assert not os.path.exists(tmp_path / "other.sock")

    # A socket it cannot bind: a one-line error, no traceback, nothing left.
    other = tmp_path / "third"
    r = second("--state-dir", str(other), "--socket", str(tmp_path / "no" / "such.sock"))
    assert r.returncode == 1 and "cannot listen on" in r.stderr, r
    assert "Traceback" not in r.stderr, r

    assert os.path.exists(env.d.sock) and env.d.running
    assert env.json("list-br") == [br]
    assert ping(h1, h2.ip) == 3


# --- the demo -------------------------------------------------------------------------

def _demo_leftovers() -> list[str]:
    with IPRoute() as ipr:
        links = [lk.get_attr("IFLA_IFNAME") for lk in ipr.get_links()]
    return [n for n in links + netns.listnetns() if n.startswith("vsdemo")]


def test_demo_topology():
    if _demo_leftovers():
        pytest.skip(f"something named vsdemo exists here: {_demo_leftovers()}")
    state = tempfile.mkdtemp(prefix="vsd")
    d = Vswitchd(state, "--demo")
    try:
        d.start()
        assert "ping each other" in d.log() and "DO NOT" not in d.log()
        assert {"vsdemo-a", "vsdemo-b"} <= set(netns.listnetns())
        assert link_exists("vsdemo0")
        runner = CliRunner()
        r = runner.invoke(cli.main, ["--state-dir", state, "--format", "json", "show"])
        (b,) = json.loads(r.stdout)
        assert b["name"] == "vsdemo0"
        assert [p["name"] for p in b["ports"]] == ["vsdemo-pa", "vsdemo-pb"]
        a = Host(ns="vsdemo-a", ifname="eth0", port="vsdemo-pa", port_ifindex=0,
                 ip="10.199.0.1", cidr="10.199.0.1/24", mac="")
        assert ping(a, "10.199.0.2") == 3
        r = subprocess.run(["ip", "netns", "exec", "vsdemo-b", "ping", "-c", "2", "-i", "0.2",
                            "-W", "1", "10.199.0.1"], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        assert d.stop() == 0, d.log()
        assert _demo_leftovers() == []
        assert not os.path.exists(d.sock)
        with ConfigStore(os.path.join(state, "conf.db")) as store:
            assert store.list_bridges() == []             # not kept in the configuration

        # SIGTERM while the demo is still being set up cleans up as well.
        with open(d.log_path, "ab") as log:
            d.proc = subprocess.Popen(d.command("--demo"), cwd=REPO, env=Vswitchd.env(),
                                      stdout=log, stderr=subprocess.STDOUT)
        assert wait_for(lambda: "vsdemo-a" in netns.listnetns(), timeout=START_TIMEOUT_S)
        assert d.stop() == 0, d.log()
        assert _demo_leftovers() == []
        assert not os.path.exists(d.sock)
    finally:
        d.kill()
        with IPRoute() as ipr:                            # only what the demo made
            for name in ("vsdemo-pa", "vsdemo-pb"):
                for idx in ipr.link_lookup(ifname=name):
                    with contextlib.suppress(Exception):
                        ipr.link("del", index=idx)
        for ns in ("vsdemo-a", "vsdemo-b"):
            if ns in netns.listnetns():
                netns.remove(ns)
        shutil.rmtree(state, ignore_errors=True)
