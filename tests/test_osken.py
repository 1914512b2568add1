"""os-ken (the OpenStack fork of Ryu, from PyPI) as the OpenFlow controller
of vswitch: a learning-switch application (tests/osken_apps/learning_switch.py)
makes namespaced hosts on veth ports ping each other through the switch with
the flows it installs; the controller going away and coming back behaves per
the bridge's fail mode:

- secure: the flows stay and still forward; new misses are dropped; the
  controller takes over again when it is back.
- standalone: after the inactivity probe interval without the controller the
  bridge switches like a learning switch (NORMAL) itself; when the
  controller is back it gets the misses again.

os-ken runs as a subprocess (tests/osken_apps/run.py, os-ken 4 has no
osken-manager command) on its own loopback port; its application reports
what it saw in a JSON status file.  Every test runs against vswitch and,
where Debian's openvswitch-switch is installed, against Open vSwitch.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import pytest
from nettopo import Topology, ping, reap_stale
from switch_under_test import switch_fixture, wait_listening
from test_daemon import _SKIP

from benches.ovs_switch import free_port

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX = "vk"
COOKIE = "0x5c0ffee"            # tests/osken_apps/learning_switch.py COOKIE

pytestmark = [
    pytest.mark.skipif(_SKIP is not None, reason=_SKIP or ""),
    pytest.mark.skipif(importlib.util.find_spec("os_ken") is None,
                       reason="os-ken is not installed (pip install os-ken)"),
]


class OsKen:
    """An os-ken controller process running the learning switch on a
    loopback port; stop() and start() again reuse the port."""

    def __init__(self, workdir: str, role: str | None = None, generation: int = 0) -> None:
        self.port = free_port()
        self.state_path = os.path.join(workdir, "osken-state.json")
        self.log_path = os.path.join(workdir, "osken.log")
        self.role = role
        self.generation = generation
        self.proc: subprocess.Popen | None = None

    @property
    def target(self) -> str:
        return f"tcp:127.0.0.1:{self.port}"

    def start(self) -> None:
        if os.path.exists(self.state_path):
            os.unlink(self.state_path)
        env = {**os.environ, "OSKEN_LS_STATE": self.state_path,
               "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
        if self.role:
            env.update(OSKEN_LS_ROLE=self.role, OSKEN_LS_GENERATION=str(self.generation))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.osken_apps.run",
                 "--ofp-listen-host", "127.0.0.1", "--ofp-tcp-listen-port", str(self.port),
                 "tests.osken_apps.learning_switch"],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        if not wait_listening(self.port, 30):
            self.stop()
            pytest.fail(f"os-ken did not listen on {self.target}:\n{self.log()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def state(self) -> dict:
        try:
            with open(self.state_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def wait(self, cond, timeout: float = 15.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.state()
            if st and cond(st):
                return st
            time.sleep(0.05)
        raise AssertionError(f"controller state never matched: {self.state()}\n{self.log()}")

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-6000:]
        except OSError:
            return ""


@pytest.fixture(params=["vswitch", "ovs"])
def switch(request):
    reap_stale(PREFIX)
    yield from switch_fixture(request, "secure")


@pytest.fixture(params=["vswitch", "ovs"])
def standalone_switch(request):
    reap_stale(PREFIX)
    yield from switch_fixture(request, "standalone")


@pytest.fixture
def controller(request):
    d = tempfile.mkdtemp(prefix="vsosk")
    c = OsKen(d, role="master", generation=5)
    c.start()
    try:
        yield c
    finally:
        c.stop()
        for name in os.listdir(d):
            os.unlink(os.path.join(d, name))
        os.rmdir(d)


@pytest.fixture
def topo():
    with Topology(PREFIX) as t:
        yield t


def connect(switch, controller, topo, n_hosts: int = 3):
    subnet = 100 + int.from_bytes(os.urandom(1), "big") % 100
    hosts = [topo.add_host(f"10.{subnet}.7.{i + 1}/24") for i in range(n_hosts)]
    for i, h in enumerate(hosts):
        switch.add_port(h.port, i + 1)
    switch.set_controllers(controller.target)
    # fast probes and reconnects, so that losing and regaining the controller takes seconds
    switch.tune_channel(1000, 1000)
    controller.wait(lambda st: st["switches"] and st["flows_installed"] >= 1)
    # the controller has sent its table-miss flow; wait until the switch has it
    assert wait_for(lambda: any("priority=0 actions=CONTROLLER" in f
                                for f in app_flows(switch)), 10), switch.log()
    return hosts


def app_flows(switch) -> list[str]:
    out = switch.ofctl("dump-flows", switch.target).stdout
    return [ln for ln in out.splitlines() if f"cookie={COOKIE}," in ln]


def pings_until(src, dst_ip: str, ok: bool, timeout: float) -> bool:
    """Ping until the outcome is `ok` (True: a reply; False: none) or time is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (ping(src, dst_ip, count=1, timeout=0.5) > 0) == ok:
            return True
    return False


def test_learning_switch_hosts_ping_through_controller_flows(switch, controller, topo):
    h1, h2, h3 = connect(switch, controller, topo)
    (dpid,) = controller.state()["switches"]
    assert ping(h1, h2.ip) == 3
    assert ping(h2, h3.ip) == 3
    assert ping(h3, h1.ip) == 3
    st = controller.state()
    # ARP and the first echo of each pair went through the controller as misses
    assert st["packet_ins"] >= 6 and st["reasons"].get("no_match", 0) == st["packet_ins"]
    assert st["errors"] == []
    assert st["roles"] == [{"role": "master", "generation_id": 5}]
    assert list(st["switches"]) == [dpid]
    assert wait_for(lambda: switch.controller_roles() == {controller.target: "master"}, 10), \
        switch.controller_roles()
    flows = app_flows(switch)
    # the table-miss flow and one flow per direction per pair (ARP and ICMP share it)
    assert any("priority=0 actions=CONTROLLER:65535" in f for f in flows), flows
    learned = [f for f in flows if "priority=10," in f]
    for a, b in ((h1, h2), (h2, h3), (h3, h1)):
        for s, d in ((a, b), (b, a)):
            assert any(f"dl_src={s.mac},dl_dst={d.mac}" in f for f in learned), (s, d, flows)
    # the flows, not the controller, forward now: counters move, packet-ins do not
    before = controller.state()["packet_ins"]
    assert ping(h1, h2.ip, count=5, interval=0) == 5
    assert controller.state()["packet_ins"] == before
    # (flow counters may lag the traffic a little: Open vSwitch updates them every 0.5 s)
    assert wait_for(lambda: flow_packets(switch, h1, h2) >= 5, 3), app_flows(switch)


def flow_packets(switch, src, dst) -> int:
    (f,) = [f for f in app_flows(switch) if f"dl_src={src.mac},dl_dst={dst.mac}" in f]
    return int(re.search(r"n_packets=(\d+)", f).group(1))


def wait_for(cond, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return bool(cond())


def test_secure_mode_keeps_flows_and_drops_misses_without_controller(switch, controller, topo):
    h1, h2, h3 = connect(switch, controller, topo)
    assert ping(h1, h2.ip) == 3 and ping(h2, h1.ip) == 3
    controller.stop()
    # learned flows still forward; h3 is unknown: its ARP is a miss and is dropped
    time.sleep(2.5)                           # beyond the probe interval
    # the switch shows the controller as not connected
    assert wait_for(lambda: switch.controller_roles() == {controller.target: None}, 10), \
        switch.controller_roles()
    assert ping(h1, h2.ip) == 3
    assert ping(h3, h1.ip, count=2, timeout=0.5) == 0
    flows = app_flows(switch)
    assert any("priority=0 actions=CONTROLLER:65535" in f for f in flows), flows
    # back: the switch reconnects and the controller handles the misses again
    controller.start()
    controller.wait(lambda st: st["switches"], timeout=20)
    assert pings_until(h3, h1.ip, True, 10), switch.log()
    assert controller.state()["packet_ins"] > 0


def test_standalone_mode_falls_back_to_normal_and_controller_regains_control(
        standalone_switch, controller, topo):
    switch = standalone_switch
    h1, h2, h3 = connect(switch, controller, topo)
    assert ping(h1, h2.ip) == 3
    controller.stop()
    # after the probe interval the bridge learns and forwards on its own
    assert pings_until(h3, h1.ip, True, 15), switch.log()
    assert ping(h2, h3.ip) == 3
    # the controller comes back: misses are its again
    controller.start()
    controller.wait(lambda st: st["switches"], timeout=20)
    # h3 and h2 have no controller flow yet: their traffic reaches the controller again
    assert pings_until(h3, h2.ip, True, 10), switch.log()
    st = controller.wait(lambda st: st["packet_ins"] > 0)
    # the new controller learned h3 from a packet-in and installed the flow for h2's reply
    assert wait_for(lambda: any(f"dl_src={h2.mac},dl_dst={h3.mac}" in f
                                for f in app_flows(switch)), 5), (st, app_flows(switch))


def test_roles_master_slave_and_stale_generation(switch, controller, topo, tmp_path):
    """A second os-ken as slave (same generation id) is refused flow mods and
    gets no packet-ins; a third asking for master with an older generation id
    is refused as stale (and stays equal); the master keeps its role."""
    h1, h2 = connect(switch, controller, topo, n_hosts=2)
    controller.wait(lambda st: st["roles"] == [{"role": "master", "generation_id": 5}])
    slave = OsKen(str(tmp_path / "slave"), role="slave", generation=5)
    stale = OsKen(str(tmp_path / "stale"), role="master", generation=4)
    os.makedirs(slave.state_path.rsplit("/", 1)[0])
    os.makedirs(stale.state_path.rsplit("/", 1)[0])
    try:
        slave.start()
        switch.set_controllers(controller.target, slave.target)
        # its table-miss flow mod: OFPET_BAD_REQUEST / OFPBRC_IS_SLAVE
        st = slave.wait(lambda st: st["roles"] and st["errors"])
        assert st["roles"] == [{"role": "slave", "generation_id": 5}]
        assert {"type": 1, "code": 10} in st["errors"], st
        assert ping(h1, h2.ip) == 3
        assert slave.state()["packet_ins"] == 0
        assert controller.state()["packet_ins"] > 0
        stale.start()
        switch.set_controllers(controller.target, slave.target, stale.target)
        # OFPET_ROLE_REQUEST_FAILED / OFPRRFC_STALE, and no role reply
        st = stale.wait(lambda st: {"type": 11, "code": 0} in st["errors"])
        assert st["roles"] == []
        # the master still gets the misses, the slave still none
        before = controller.state()["packet_ins"]
        switch.ofctl("del-flows", switch.target, f"cookie={COOKIE}/-1,dl_dst={h1.mac}")
        assert pings_until(h2, h1.ip, True, 10)
        # (the stale controller, equal now, may answer first: wait for the master's count)
        controller.wait(lambda st: st["packet_ins"] > before, timeout=5)
        assert slave.state()["packet_ins"] == 0
        # and the switch reports each connection's role (Open vSwitch's table lags a little)
        want = {controller.target: "master", slave.target: "slave", stale.target: "equal"}
        assert wait_for(lambda: switch.controller_roles() == want, 10), \
            switch.controller_roles()
    finally:
        slave.stop()
        stale.stop()
