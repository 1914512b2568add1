"""Multi-host topologies for tunnel tests: each "host" is a network namespace
running its own vswitchd (own state directory and control socket); hosts
share an underlay L2 segment (a Linux bridge in a namespace of its own);
"VMs" are namespaces whose veth peer sits in a host's namespace, on that
host's vswitch bridge.

    with Fabric() as f:
        h1, h2 = f.host(), f.host()
        vm1, vm2 = f.vm(h1), f.vm(h2)
        f.tunnel(h1, h2, key=5000); f.tunnel(h2, h1, key=5000)
        assert ping(vm1, vm2.ip)

Everything (namespaces, daemons, state directories) goes away on close,
also after a failure.  Names come from nettopo.Topology (prefix + random).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from click.testing import CliRunner
from nettopo import Host, Topology, disable_ipv6
from pyroute2 import NetNS

from vswitch import cli
from vswitch.daemon import socket_alive

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


def wait_for(cond, timeout: float = 5.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return bool(cond())


@dataclass
class VsHost:
    """A hypervisor host: a namespace, its underlay address and its vswitchd."""
    ns: Host                        # ns.ns is the namespace; ns.ip the underlay address
    dir: str
    bridge: str
    proc: subprocess.Popen | None = None

    @property
    def ip(self) -> str:
        return self.ns.ip

    @property
    def log_path(self) -> str:
        return os.path.join(self.dir, "vswitchd.log")

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-20000:]
        except OSError:
            return ""


OVS_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
OVS_TOOLS = ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-appctl")


def ovs_missing() -> str | None:
    missing = [t for t in OVS_TOOLS if not shutil.which(t)]
    if missing or not os.path.exists(OVS_SCHEMA):
        return f"Open vSwitch not installed: missing {' '.join(missing) or OVS_SCHEMA}"
    return None


class OvsHost:
    """ovsdb-server and ovs-vswitchd in a namespace, with a private run
    directory and database."""

    def __init__(self, host: Host, d: str) -> None:
        self.host = host
        self.dir = d
        self.env = dict(os.environ, OVS_RUNDIR=d, OVS_LOGDIR=d, OVS_DBDIR=d,
                        OVS_SYSCONFDIR=d, OVS_PKGDATADIR="/usr/share/openvswitch")
        self.procs: list[subprocess.Popen] = []

    @property
    def ip(self) -> str:
        return self.host.ip

    def run(self, *args: str, check: bool = True) -> str:
        r = subprocess.run(["ip", "netns", "exec", self.host.ns, *args], capture_output=True,
                           text=True, env=self.env, timeout=30)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip()}\n{self.log()}")
        return r.stdout

    def vsctl(self, *args: str) -> str:
        return self.run("ovs-vsctl", f"--db=unix:{self.dir}/db.sock", "--timeout=15", *args)

    def appctl(self, *args: str) -> str:
        return self.run("ovs-appctl", "-t", f"{self.dir}/ovs-vswitchd.ctl", *args)

    def log(self) -> str:
        try:
            with open(os.path.join(self.dir, "ovs-vswitchd.log"), errors="replace") as f:
                return f.read()[-6000:]
        except OSError:
            return ""

    def start(self) -> None:
        d = self.dir
        subprocess.run(["ovsdb-tool", "create", f"{d}/conf.db", OVS_SCHEMA], check=True,
                       capture_output=True, env=self.env)
        for args, ready in (
                (["ovsdb-server", f"{d}/conf.db", f"--remote=punix:{d}/db.sock",
                  f"--unixctl={d}/ovsdb-server.ctl", f"--log-file={d}/ovsdb-server.log",
                  "-vconsole:off"], f"{d}/db.sock"),
                (["ovs-vswitchd", f"unix:{d}/db.sock", f"--unixctl={d}/ovs-vswitchd.ctl",
                  f"--log-file={d}/ovs-vswitchd.log", "-vconsole:off"],
                 f"{d}/ovs-vswitchd.ctl")):
            self.procs.append(subprocess.Popen(["ip", "netns", "exec", self.host.ns, *args],
                                               stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL, env=self.env))
            if not wait_for(lambda r=ready: os.path.exists(r), 15):
                raise RuntimeError(f"{args[0]} did not start")
            if args[0] == "ovsdb-server":
                self.vsctl("--no-wait", "init")

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.procs.clear()
        shutil.rmtree(self.dir, ignore_errors=True)


class Fabric:
    def __init__(self, prefix: str = "vx") -> None:
        self.topo = Topology(prefix)
        self.runner = CliRunner()
        self.hosts: list[VsHost] = []
        self.sub = random.randrange(16, 250)          # 10.<sub>.0.0/24: the VMs
        self.usub = random.randrange(16, 250)         # 172.<usub>.0.0/24: the underlay
        self._switch = None                           # the underlay switch namespace
        self.ovs: list[OvsHost] = []
        self._n_vm = 0

    def __enter__(self) -> Fabric:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- building ------------------------------------------------------------

    def _underlay(self) -> Host:
        if self._switch is None:
            sw = self.topo.add_host(None)
            with NetNS(sw.ns) as n:
                n.link("add", ifname="usw", kind="bridge")
                (idx,) = n.link_lookup(ifname="usw")
                n.link("set", index=idx, state="up")
            disable_ipv6("usw", sw.ns)
            self._switch = sw
        return self._switch

    def _plug_underlay(self, root_end: str, name: str) -> None:
        sw = self._underlay()
        self.topo.move_into(root_end, sw, new_name=name)
        with NetNS(sw.ns) as n:
            (br,) = n.link_lookup(ifname="usw")
            (idx,) = n.link_lookup(ifname=name)
            n.link("set", index=idx, master=br)

    def underlay_ip(self, i: int) -> str:
        return f"172.{self.usub}.0.{i}"

    def host(self, mtu: int | None = None, start: bool = True) -> VsHost:
        """A namespace on the underlay (eth0, 172.x.0.N/24) with a vswitchd
        and bridge br0-like `<tag>bN`."""
        i = len(self.hosts) + 1
        h = self.topo.add_host(f"{self.underlay_ip(i)}/24", mtu=mtu)
        self._plug_underlay(h.port, f"u{i}")
        vh = VsHost(ns=h, dir=tempfile.mkdtemp(prefix="vsx"), bridge=self.topo.name(f"b{i}"))
        self.hosts.append(vh)
        if start:
            self.start(vh)
            self.ctl(vh, "add-br", vh.bridge)
        return vh

    def plain_host(self, mtu: int | None = None, address: bool = True) -> Host:
        """A namespace on the underlay without vswitchd (for kernel or OVS
        peers); address=False leaves eth0 without its underlay address
        (h.ip is still the one meant for it)."""
        i = len(self.hosts) + 1
        h = self.topo.add_host(f"{self.underlay_ip(i)}/24" if address else None, mtu=mtu)
        h.ip = self.underlay_ip(i)
        self._plug_underlay(h.port, f"u{i}")
        self.hosts.append(VsHost(ns=h, dir=tempfile.mkdtemp(prefix="vsx"), bridge=""))
        return h

    def start(self, h: VsHost) -> None:
        sock = os.path.join(h.dir, "vswitchd.sock")
        path = os.environ.get("PYTHONPATH")
        # The repository after what the caller has: tools/sanitize.sh puts its
        # sanitized build first, and the daemons must load that one too (-P:
        # the working directory, the repository, is not put before it).
        env = {**os.environ, "PYTHONPATH": (path + os.pathsep if path else "") + REPO}
        with open(h.log_path, "ab") as log:
            h.proc = subprocess.Popen(
                ["ip", "netns", "exec", h.ns.ns, sys.executable, "-P", "-m", "vswitch.daemon",
                 "--state-dir", h.dir, "--log-level", "debug"],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not socket_alive(sock):
            if h.proc.poll() is not None:
                raise RuntimeError(f"vswitchd exited with {h.proc.returncode}:\n{h.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"vswitchd did not start:\n{h.log()}")
            time.sleep(0.02)

    def stop(self, h: VsHost) -> int | None:
        if h.proc is None:
            return None
        if h.proc.poll() is None:
            h.proc.send_signal(signal.SIGTERM)
            try:
                h.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                h.proc.kill()
                h.proc.wait()
        rc = h.proc.returncode
        h.proc = None
        return rc

    def vm(self, h: VsHost, i: int | None = None, mtu: int | None = None,
           ofport: int | None = None) -> Host:
        """A VM namespace with 10.x.0.i/24 whose veth peer is a system port
        on h's bridge."""
        if i is None:
            self._n_vm += 1
            i = self._n_vm
        v = self.topo.add_host(f"10.{self.sub}.0.{i}/24", mtu=mtu)
        self.attach_vm(v, h, ofport=ofport)
        return v

    def attach_vm(self, v: Host, h: VsHost, ofport: int | None = None) -> None:
        self.topo.move_into(v.port, h.ns)
        args = ["add-port", h.bridge, v.port]
        if ofport is not None:
            args += ["--ofport", str(ofport)]
        self.ctl(h, *args)

    def tunnel(self, h: VsHost, remote: VsHost | str, name: str | None = None,
               key: int | str = 0, ofport: int | None = None, bridge: str | None = None,
               **opts) -> str:
        """A vxlan port on h towards remote (a host or an IPv4 address)."""
        rip = remote if isinstance(remote, str) else remote.ip
        name = name or self.topo.name(f"t{len(self.hosts)}{random.randrange(100)}")
        args = ["add-port", bridge or h.bridge, name, "--type", "vxlan",
                "--option", f"remote_ip={rip}", "--option", f"key={key}"]
        for k, v in opts.items():
            args += ["--option", f"{k}={v}"]
        if ofport is not None:
            args += ["--ofport", str(ofport)]
        self.ctl(h, *args)
        return name

    # --- vswitchctl ----------------------------------------------------------

    def ctl(self, h: VsHost, *args: str) -> str:
        r = self.runner.invoke(cli.main, ["--state-dir", h.dir, *args], catch_exceptions=False)
        if r.exit_code != 0:
            raise AssertionError(f"vswitchctl {' '.join(args)}: {r.output}\n{h.log()}")
        return r.stdout

    def ctl_fails(self, h: VsHost, *args: str) -> str:
        r = self.runner.invoke(cli.main, ["--state-dir", h.dir, *args], catch_exceptions=False)
        assert r.exit_code != 0, f"vswitchctl {' '.join(args)} succeeded: {r.output}"
        return r.output

    def json(self, h: VsHost, *args: str):
        return json.loads(self.ctl(h, "--format", "json", *args))

    def tunnel_state(self, h: VsHost, name: str) -> dict:
        for t in self.json(h, "tunnel-show"):
            if t["name"] == name:
                return t
        raise AssertionError(f"no tunnel {name} on {h.bridge}")

    def wait_resolved(self, h: VsHost, name: str, timeout: float = 10.0) -> dict:
        ok = wait_for(lambda: self.tunnel_state(h, name)["underlay"].get("resolved"), timeout)
        st = self.tunnel_state(h, name)
        assert ok, f"tunnel {name} unresolved: {st}\n{h.log()}"
        return st

    # --- Open vSwitch peers --------------------------------------------------

    def ovs_host(self) -> OvsHost:
        """A namespace running Open vSwitch's userspace datapath the way its
        userspace-tunneling guide sets it up: the underlay NIC on a netdev
        bridge `brp` that carries the underlay address, VMs and the vxlan
        port on a netdev bridge `bri`."""
        h = self.plain_host(address=False)
        o = OvsHost(h, tempfile.mkdtemp(prefix="vsovs"))
        self.ovs.append(o)
        o.start()
        o.vsctl("add-br", "brp", "--", "set", "Bridge", "brp", "datapath_type=netdev",
                f"other_config:hwaddr={h.mac}")
        o.vsctl("add-port", "brp", "eth0")
        o.vsctl("add-br", "bri", "--", "set", "Bridge", "bri", "datapath_type=netdev")
        with NetNS(h.ns) as n:
            (idx,) = n.link_lookup(ifname="brp")
            n.addr("add", index=idx, address=h.ip, prefixlen=24)
            n.link("set", index=idx, state="up")
        disable_ipv6("brp", h.ns)
        return o

    def ovs_vm(self, o: OvsHost, i: int, mtu: int | None = None) -> Host:
        v = self.topo.add_host(f"10.{self.sub}.0.{i}/24", mtu=mtu)
        self.topo.move_into(v.port, o.host)
        o.vsctl("add-port", "bri", v.port)
        return v

    # --- teardown --------------------------------------------------------------

    def close(self) -> None:
        errors = []
        for o in self.ovs:
            try:
                o.stop()
            except Exception as e:
                errors.append(e)
        for h in self.hosts:
            try:
                self.stop(h)
            except Exception as e:
                errors.append(e)
        try:
            self.topo.close()
        except Exception as e:
            errors.append(e)
        for h in self.hosts:
            shutil.rmtree(h.dir, ignore_errors=True)
        if errors:
            raise errors[0]
