"""The switch under test for the OpenFlow interop tests, with one face for
vswitch and for Open vSwitch, so that the same test runs against both (the
Open vSwitch run shows that a test's expectations are those of the reference
implementation, not ours).

    def test_x(switch):              # the `switch` fixture, parametrised
        switch.add_port(host.port, 1)
        switch.ofctl("add-flow", switch.target, "priority=1,actions=output:1")

- `VswitchSwitch`: a real vswitchd (the `Env` harness of test_daemon.py)
  with one bridge and a `ptcp:PORT` OpenFlow listener on 127.0.0.1.
- `benches.ovs_switch.OvsSwitch`: a private ovsdb-server + ovs-vswitchd
  (netdev bridge, ptcp listener); needs Debian's openvswitch-switch, and is
  skipped with the reason when that is not installed.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time

import pytest
from test_daemon import Env

from benches.ovs_switch import OvsSwitch, free_port, ovs_missing

OFCTL_TIMEOUT_S = 60


def wait_listening(port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


def ofctl(*args: str, check: bool = True, timeout: float = OFCTL_TIMEOUT_S,
          stdin: str | None = None) -> subprocess.CompletedProcess:
    """Debian's ovs-ofctl speaking OpenFlow 1.3."""
    r = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", *args], capture_output=True,
                       text=True, timeout=timeout, input=stdin)
    if check:
        assert r.returncode == 0, f"ovs-ofctl {' '.join(args)}: {r.stderr}"
    return r


class VswitchSwitch:
    """A bridge of a running vswitchd with a ptcp listener (`target`)."""

    kind = "vswitch"

    def __init__(self, env: Env, fail_mode: str = "secure") -> None:
        self.env = env
        self.bridge = env.add_br("b", "--fail-mode", fail_mode)
        self.port = free_port()
        self.target = f"tcp:127.0.0.1:{self.port}"
        self.listeners = [f"ptcp:{self.port}"]
        self.env.ctl("set-controller", self.bridge, *self.listeners)
        if not wait_listening(self.port):
            pytest.fail(f"vswitchd does not listen on {self.target}:\n{env.d.log()}")

    def ofctl(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return ofctl(*args, **kw)

    def add_port(self, name: str, ofport: int) -> None:
        self.env.ctl("add-port", self.bridge, name, "--ofport", str(ofport))

    def set_controllers(self, *targets: str) -> None:
        """Controllers (active or passive) besides the ptcp listener, kept."""
        self.env.ctl("set-controller", self.bridge, *self.listeners, *targets)

    def set_fail_mode(self, mode: str) -> None:
        self.env.ctl("set-fail-mode", self.bridge, mode)

    def tune_channel(self, inactivity_probe_ms: int, max_backoff_ms: int) -> None:
        """ECHO after this much silence; reconnect attempts at most this far apart."""
        self.env.ctl("set", "bridge", self.bridge,
                     f"options:inactivity_probe={inactivity_probe_ms}",
                     f"options:max_backoff={max_backoff_ms}")

    def controller_roles(self) -> dict[str, str | None]:
        """Active controller target -> the role of its connection (None: not
        connected), from `vswitchctl --format json controller-status`."""
        status = self.env.json("controller-status", self.bridge)
        return {t["target"]: (t["connections"][0].get("role") if t["connections"] else None)
                for t in status["controllers"] if not t["target"].startswith("p")}

    def log(self) -> str:
        return self.env.d.log()

    def rundir(self) -> str:
        return self.env.dir


class OvsPeer(OvsSwitch):
    """Open vSwitch with the same face as VswitchSwitch."""

    kind = "ovs"

    def ofctl(self, *args: str, check: bool = True, timeout: float = OFCTL_TIMEOUT_S,
              stdin: str | None = None) -> subprocess.CompletedProcess:
        return ofctl(*args, check=check, timeout=timeout, stdin=stdin)

    def set_fail_mode(self, mode: str) -> None:
        self.vsctl("set-fail-mode", self.bridge, mode)

    def tune_channel(self, inactivity_probe_ms: int, max_backoff_ms: int) -> None:
        for uuid in self.vsctl("--bare", "--columns=_uuid", "list", "Controller").split():
            self.vsctl("set", "Controller", uuid, f"inactivity_probe={inactivity_probe_ms}",
                       f"max_backoff={max_backoff_ms}")

    def controller_roles(self) -> dict[str, str | None]:
        """The same from OVS's Controller table (which calls equal "other")."""
        data = json.loads(self.vsctl("--format=json", "--columns=target,is_connected,role",
                                     "list", "Controller"))
        out = {}
        for target, connected, role in data["data"]:
            if not target.startswith("p"):
                role = role if isinstance(role, str) else None
                out[target] = ({"other": "equal"}.get(role, role) if connected is True
                               else None)
        return out

    def rundir(self) -> str:
        assert self.dir is not None
        return str(self.dir)

    def log(self) -> str:
        assert self.dir is not None
        try:
            return (self.dir / "ovs-vswitchd.log").read_text(errors="replace")[-8000:]
        except OSError:
            return ""


def switch_fixture(request, fail_mode: str = "secure"):
    """Generator body for a `switch` fixture parametrised with "vswitch"/"ovs"."""
    if request.param == "ovs":
        why = ovs_missing()
        if why:
            pytest.skip(why)
        sw = OvsPeer("vo" + free_port().to_bytes(2, "big").hex(), fail_mode=fail_mode)
        sw.start()
        try:
            yield sw
        finally:
            sw.stop()
        return
    env = Env()
    try:
        env.d.start()
        yield VswitchSwitch(env, fail_mode)
    finally:
        env.close()
