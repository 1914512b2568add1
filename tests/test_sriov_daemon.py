"""SR-IOV through a real vswitchd and vswitchctl: the daemon runs on a FUSE fake sysfs
(--sysfs-root, tests/fakesysfs.py) whose Mellanox-like PF is in switchdev mode.  The
PF's netdev and the VF representors are real veths (root ends of namespaced hosts), so
that netlink requests reach a real kernel (which has no VFs on a veth) and representor
ports switch real traffic: each host stands in for a VM behind its VF.

Skipped without root, network namespaces or FUSE.
"""

from __future__ import annotations

import json

import pytest
from fakesysfs import FakeSysfs, fuse_unavailable

NO_FUSE = fuse_unavailable()
if NO_FUSE is not None:
    pytest.skip(f"FUSE fake sysfs: {NO_FUSE}", allow_module_level=True)

from nettopo import ping  # noqa: E402
from test_daemon import _SKIP, Env, Vswitchd, wait_for  # noqa: E402

pytestmark = pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")

MLX = "0000:81:00.0"


@pytest.fixture
def sr():
    """A daemon on a fake sysfs: PF = host 0's root-side veth, representors of VF 0/1 =
    the root-side veths of hosts 1 and 2."""
    e = Env()
    fs = FakeSysfs()
    try:
        hosts = e.hosts(3)
        reps = [hosts[1].port, hosts[2].port]
        fs.add_pf(MLX, hosts[0].port, kind="mellanox", totalvfs=4, switchdev=True,
                  rep_name=lambda i: reps[i] if i < len(reps) else f"{e.topo.tag}r{i}")
        fs.mount()
        e.d = Vswitchd(e.dir, "--sysfs-root", fs.mountpoint)
        e.d.start()
        e.fs, e.pf, e.h = fs, hosts[0].port, hosts
        yield e
    finally:
        try:
            e.close()
        finally:
            fs.unmount()


def vfs_of(e, pf: str) -> list[dict]:
    (p,) = [p for p in e.json("vf", "list")["pfs"] if p["netdev"] == pf]
    return p["vfs"]


def test_vf_lifecycle_through_vswitchctl(sr):
    e = sr
    (p,) = e.json("vf", "list")["pfs"]
    assert (p["pci"], p["netdev"], p["numvfs"], p["totalvfs"]) == (MLX, e.pf, 0, 4)
    e.fails("vf", "set-numvfs", e.pf, "9", match="at most 4")
    e.fails("vf", "set-numvfs", "nope0", "1", match="no PF named nope0")
    assert e.json("vf", "set-numvfs", e.pf, "2")["numvfs"] == 2
    vfs = vfs_of(e, e.pf)
    assert [(v["pci"], v["driver"], v["representor"]) for v in vfs] == [
        ("0000:81:02.0", "mlx5_core", e.h[1].port), ("0000:81:02.1", "mlx5_core", e.h[2].port)]
    assert "numvfs 2/4" in e.out("vf", "list")

    e.ctl("vf", "pool-add", "mlx", "--vendor", "15b3", "--pf-name", f"{e.pf}#0-1")
    e.fails("vf", "pool-add", "bad", "--vendor", "zz", match="bad vendor id")
    (pool,) = e.json("vf", "pools")
    assert (pool["total"], pool["free"]) == (2, 2)
    assert e.out("vf", "pools").splitlines()[0] == \
        f"mlx: 2 free of 2  pfNames={e.pf}#0-1  vendors=15b3"

    br = e.add_br()
    a = e.json("vf", "assign", "vm-1", "--pool", "mlx", "--vfio", "--bridge", br)
    assert (a["vf_pci"], a["driver"], a["port"], a["state"]) == (
        "0000:81:02.0", "vfio-pci", e.h[1].port, "active")
    assert "-> VM vm-1 (active, pool mlx)" in e.out("vf", "list")
    # the VF's settings go through the real kernel, which has no VFs on a veth: refused,
    # and the refused assignment leaves nothing behind
    e.fails("vf", "assign", "vm-2", "--pool", "mlx", "--mac", "02:00:00:00:00:02",
            match="reports no VF 1 through netlink")
    assert e.json("vf", "pools")[0]["free"] == 1
    e.fails("vf", "assign", "vm-2", "--vf", "0000:81:02.0", match="already assigned to VM vm-1")
    e.fails("vf", "set-numvfs", e.pf, "1", match="has assigned VFs")
    e.json("vf", "assign", "vm-2", "--vf", f"{e.pf}#1", "--bridge", br)

    # both representors are ports of the bridge: the hosts behind them talk through it
    ports = {p["name"]: p for p in e.json("show")[0]["ports"]}
    assert ports[e.h[1].port]["external_ids"] == {"vm-id": "vm-1", "sriov-vf": "0000:81:02.0"}
    assert ports[e.h[2].port]["external_ids"]["vm-id"] == "vm-2"
    assert ping(e.h[1], e.h[2].ip) > 0

    # a restart keeps assignments and representor ports, and reconciles them
    assert e.d.stop() == 0
    e.d.start()
    assert {a["vm_id"]: a["state"] for a in e.json("vf", "list")["assignments"]} == {
        "vm-1": "active", "vm-2": "active"}
    assert "is gone" not in e.d.log()
    assert ping(e.h[1], e.h[2].ip) > 0

    # release: vfio-pci -> mlx5_core again, representor port removed
    (r,) = e.json("vf", "release", "vm-1")
    assert r["restored"] and vfs_of(e, e.pf)[0]["driver"] == "mlx5_core"
    assert e.h[1].port not in {p["name"] for p in e.json("show")[0]["ports"]}
    e.fails("vf", "release", "vm-1", match="no VF assigned")

    # a PF reset: the VFs go and the PF's link flaps; the daemon reconciles on the
    # netlink event and marks the VF lost
    e.fs.remove_vfs(MLX)
    e.topo.link_up(e.pf, False)
    e.topo.link_up(e.pf, True)
    assert wait_for(lambda: e.json("vf", "list")["assignments"][0]["state"] == "lost", 5)
    assert "VF 0000:81:02.1 of VM vm-2 is gone" in e.d.log()
    assert "VM vm-2: VF 0000:81:02.1 lost: VF gone" in e.out("vf", "list")
    (rep,) = e.json("vf", "reconcile")
    assert rep == {"vf_pci": "0000:81:02.1", "vm_id": "vm-2", "action": "lost"}
    assert e.json("vf", "release", "--vf", "0000:81:02.1")[0]["restored"] is False
    e.ctl("vf", "pool-del", "mlx")
    assert e.json("vf", "pools") == []


def test_bad_requests_leave_the_daemon_serving(sr):
    e = sr
    for method, params, match in (
            ("vf-set-numvfs", {"pf": sr.pf, "numvfs": "x"}, "non-negative integer"),
            ("vf-set-numvfs", {"pf": sr.pf, "numvfs": -1}, "non-negative integer"),
            ("vf-set-numvfs", {"pf": 5, "numvfs": 1}, "invalid PF name"),
            ("vf-set-numvfs", {"pf": sr.pf, "numvfs": 1, "autoprobe": "yes"},
             "autoprobe must be true or false"),
            ("vf-assign", {"vm_id": "vm", "pool": ["p"]}, "invalid pool name"),
            ("vf-config", {"vf": "nope#0", "settings": {"vlan": 1}}, "no PF named"),
            ("vf-config", {"vf": f"{sr.pf}#0", "settings": "vlan"}, "must be an object"),
            ("vf-assign", {"vm_id": "vm", "vf": ["x"]}, "invalid VF"),
            ("vf-assign", {"vm_id": "vm", "pool": "p", "bridge": "nobr"}, "no bridge"),
            ("vf-pool-add", {"name": "p", "selectors": {"pfNames": ["a#9-1"]}}, "bad VF range"),
            ("vf-pool-add", {"name": "../p", "selectors": {"vendors": ["8086"]}},
             "invalid pool name"),
            ("vf-release", {}, "exactly one"),
            ("vf-list", {"extra": 1}, "bad parameters")):
        reply = e.rpc(method, params)
        assert match in reply["error"]["message"], (method, params, reply)
        assert reply["error"]["code"] == -32000
    assert e.json("vf", "list")["assignments"] == []
    assert json.loads(e.out("--format", "json", "vf", "pools")) == []
    # the representor of VF 2 is not a real device: the bridge refuses it, and the
    # assignment is undone (vfio-pci binding included)
    e.ctl("vf", "set-numvfs", sr.pf, "3")
    br = e.add_br()
    e.fails("vf", "assign", "vm-3", "--vf", f"{sr.pf}#2", "--vfio", "--bridge", br,
            match=f"cannot add port {e.topo.tag}r2")
    assert vfs_of(e, sr.pf)[2]["driver"] == "mlx5_core"
    assert e.json("vf", "list")["assignments"] == [] and e.json("show")[0]["ports"] == []
