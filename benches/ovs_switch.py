"""Open vSwitch 3.1 as a peer for OpenFlow benchmarks: a private ovsdb-server
and ovs-vswitchd (own run directory, database and control sockets, nothing
shared with a system OVS), one bridge with datapath_type=netdev, an OpenFlow
ptcp listener on a loopback port, and optionally controllers.

    with OvsSwitch("vbof1a2b3") as ovs:
        ovs.add_port("veth0")
        ovs.ofctl("add-flows", ovs.target, "flows.txt")

Needs Debian's openvswitch-switch (`apt-get install -y openvswitch-switch`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

OVS_SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
TOOLS = ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl", "ovs-appctl")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout: float, what: str) -> None:
    """Poll pred until true; RuntimeError naming `what` after timeout seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def tcp_listening(port: int) -> bool:
    """Does something accept connections on 127.0.0.1:port?"""
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def ovs_missing() -> str | None:
    """Why Open vSwitch cannot be started here, or None."""
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing or not OVS_SCHEMA.exists():
        return ("Open vSwitch not installed (apt-get install -y openvswitch-switch): "
                f"missing {' '.join(missing) or OVS_SCHEMA}")
    return None


def ovs_version() -> str:
    try:
        r = subprocess.run(["ovs-vswitchd", "--version"], capture_output=True, text=True,
                           timeout=10)
        return r.stdout.splitlines()[0].strip()
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


class OvsSwitch:
    """ovsdb-server + ovs-vswitchd in a temporary directory, one netdev bridge
    listening for OpenFlow on ptcp:PORT:127.0.0.1 (`target` is what ovs-ofctl
    takes)."""

    def __init__(self, bridge: str, fail_mode: str = "secure",
                 other_config: dict[str, str] | None = None) -> None:
        self.bridge = bridge
        self.fail_mode = fail_mode
        self.other_config = other_config or {}      # Open_vSwitch's, set before it starts
        self.port = free_port()
        self.target = f"tcp:127.0.0.1:{self.port}"
        self.dir: Path | None = None
        self.ovsdb: subprocess.Popen | None = None
        self.vswitchd: subprocess.Popen | None = None
        self.env: dict[str, str] = {}

    def __enter__(self) -> OvsSwitch:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _cmd(self, *args: str, timeout: float = 60, check: bool = True,
             stdin: str | None = None) -> subprocess.CompletedProcess:
        r = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                           env=self.env, input=stdin)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip()}")
        return r

    def vsctl(self, *args: str, check: bool = True) -> str:
        assert self.dir is not None
        return self._cmd("ovs-vsctl", f"--db=unix:{self.dir}/db.sock", "--timeout=15", *args,
                         check=check).stdout

    def appctl(self, *args: str, target: str = "ovs-vswitchd", check: bool = True) -> str:
        assert self.dir is not None
        return self._cmd("ovs-appctl", "-t", f"{self.dir}/{target}.ctl", *args, check=check,
                         timeout=20).stdout

    def ofctl(self, *args: str, check: bool = True, timeout: float = 300,
              stdin: str | None = None) -> subprocess.CompletedProcess:
        return self._cmd("ovs-ofctl", "-O", "OpenFlow13", *args, check=check,
                         timeout=timeout, stdin=stdin)

    def start(self) -> None:
        why = ovs_missing()
        if why:
            raise RuntimeError(why)
        self.dir = Path(tempfile.mkdtemp(prefix="vs-ovs-"))
        d = self.dir
        self.env = dict(os.environ, OVS_RUNDIR=str(d), OVS_LOGDIR=str(d), OVS_DBDIR=str(d),
                        OVS_SYSCONFDIR=str(d), OVS_PKGDATADIR="/usr/share/openvswitch")
        try:
            self._cmd("ovsdb-tool", "create", str(d / "conf.db"), str(OVS_SCHEMA))
            with open(d / "stderr.log", "w") as log:
                self.ovsdb = subprocess.Popen(
                    ["ovsdb-server", str(d / "conf.db"), f"--remote=punix:{d}/db.sock",
                     f"--unixctl={d}/ovsdb-server.ctl", f"--log-file={d}/ovsdb-server.log",
                     "-vconsole:off"], stdout=subprocess.DEVNULL, stderr=log, env=self.env)
                wait_until(lambda: (d / "db.sock").exists(), 10, "ovsdb-server")
                self.vsctl("--no-wait", "init")
                if self.other_config:
                    self.vsctl("--no-wait", "set", "Open_vSwitch", ".",
                               *(f"other_config:{k}={v}" for k, v in self.other_config.items()))
                self.vswitchd = subprocess.Popen(
                    ["ovs-vswitchd", f"unix:{d}/db.sock", f"--unixctl={d}/ovs-vswitchd.ctl",
                     f"--log-file={d}/ovs-vswitchd.log", "-vconsole:off"],
                    stdout=subprocess.DEVNULL, stderr=log, env=self.env)
            wait_until(lambda: (d / "ovs-vswitchd.ctl").exists(), 15, "ovs-vswitchd")
            br = self.bridge
            self.vsctl("add-br", br, "--", "set", "Bridge", br, "datapath_type=netdev",
                       f"fail_mode={self.fail_mode}", "other_config:disable-in-band=true",
                       "protocols=OpenFlow13")
            self.vsctl("set-controller", br, f"ptcp:{self.port}:127.0.0.1")
            wait_until(self._listening, 10, "ovs-vswitchd's OpenFlow listener")
        except BaseException:
            self.stop()
            raise

    def _listening(self) -> bool:
        return tcp_listening(self.port)

    def add_port(self, name: str, ofport: int) -> None:
        self.vsctl("add-port", self.bridge, name, "--", "set", "Interface", name,
                   f"ofport_request={ofport}")

    def set_controllers(self, *targets: str) -> None:
        """Active controllers besides the ptcp listener (kept)."""
        self.vsctl("set-controller", self.bridge, f"ptcp:{self.port}:127.0.0.1", *targets)

    def flow_count(self) -> int:
        out = self.ofctl("dump-aggregate", self.target).stdout
        return int(out.split("flow_count=")[1].split()[0])

    def stop(self) -> None:
        if self.dir is None:
            return
        for proc, target in ((self.vswitchd, "ovs-vswitchd"), (self.ovsdb, "ovsdb-server")):
            if proc is None or proc.poll() is not None:
                continue
            with contextlib.suppress(Exception):
                if target == "ovs-vswitchd":
                    self.vsctl("--if-exists", "del-br", self.bridge, check=False)
                self.appctl("exit", target=target, check=False)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.vswitchd = self.ovsdb = None
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None
