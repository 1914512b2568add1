"""SR-IOV (vswitch.sriov) without SR-IOV hardware.

- sysfs: a fake tree mounted with FUSE (tests/fakesysfs.py) with the kernel's layout and
  write rules, so the real code does real file system calls and gets EBUSY, ERANGE,
  EINVAL, EACCES, ENODEV back from write(2).  Skipped where FUSE is missing.
- netlink: requests are decoded byte by byte (tests/fakertnl.py, plain struct code),
  and also sent for real to a veth in a private network namespace, where the kernel
  answers a well-formed VF request with EOPNOTSUPP and a malformed one with an error
  of its own.  Read-back parsing runs on replies in the kernel's rtnl_fill_vfinfo layout.
- manager: assignments, release, reconcile against the fake sysfs and the rtnetlink
  stand-in (which applies attributes in the kernel's order and stops at the first
  error, as do_setvfinfo does).
- daemon: a real vswitchd on the fake tree, driven with vswitchctl, with switchdev
  representors that are real veths added to a real bridge.

Nothing here pretends hardware is present: the README says what was not tested.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import subprocess
import uuid

import pytest
from fakertnl import (
    IFINFO,
    IFLA_VF_INFO,
    IFLA_VFINFO_LIST,
    NLMSG,
    VF_MAC,
    VF_RATE,
    VF_SPOOFCHK,
    VF_TRUST,
    VF_VLAN,
    KernelVfs,
    Links,
    Vf,
    attrs,
    newlink,
)
from fakesysfs import FakeSysfs, fuse_unavailable

from vswitch import config
from vswitch.config import ConfigStore
from vswitch.sriov import netlink, pools, sysfs
from vswitch.sriov.manager import SriovManager
from vswitch.sriov.netlink import Rtnl, VfNetlinkError, VfState
from vswitch.sriov.store import Assignment, SriovStore
from vswitch.sriov.sysfs import SriovError

INTEL, MLX = "0000:03:00.0", "0000:81:00.0"
NO_FUSE = fuse_unavailable()
needs_fuse = pytest.mark.skipif(NO_FUSE is not None, reason=f"FUSE fake sysfs: {NO_FUSE}")


@pytest.fixture
def fake():
    fs = FakeSysfs()
    fs.add_pf(INTEL, "ens1f0", totalvfs=8)
    fs.add_pf(MLX, "enp129s0", kind="mellanox", totalvfs=4, switchdev=True)
    fs.mount()
    try:
        yield fs
    finally:
        fs.unmount()


@pytest.fixture
def kernel(fake):
    """The netlink side of both PFs, following numvfs as hardware does (new VFs start
    with a zero MAC, no VLAN, no rate limit, spoof checking on)."""
    links = Links(KernelVfs(7, "ens1f0"), KernelVfs(8, "enp129s0"))
    by_pci = {INTEL: links.pfs[7], MLX: links.pfs[8]}

    def follow(pf_pci: str, n: int) -> None:
        by_pci[pf_pci].vfs = [Vf() for _ in range(n)]

    fake.on_numvfs = follow
    return links


@pytest.fixture
def mgr(fake, kernel, tmp_path):
    store = ConfigStore(tmp_path / "conf.db")
    m = SriovManager(store, fake.mountpoint, Rtnl(kernel.socket), kernel.ifindex_of)
    yield m
    store.close()


def pf_path(fake: FakeSysfs, pci: str, name: str) -> str:
    return os.path.join(fake.mountpoint, "bus/pci/devices", pci, name)


# --- sysfs ----------------------------------------------------------------------------

@needs_fuse
def test_discovery_reads_both_layouts(fake):
    root = fake.mountpoint
    pfs = {p.pci: p for p in sysfs.list_pfs(root)}
    assert set(pfs) == {INTEL, MLX}
    intel = pfs[INTEL]
    assert (intel.netdev, intel.vendor, intel.device, intel.driver) == \
        ("ens1f0", "0x8086", "0x1572", "i40e")
    assert (intel.numvfs, intel.totalvfs, intel.autoprobe, intel.vfs) == (0, 8, True, [])
    assert isinstance(intel.iommu_group, int)
    pf = sysfs.set_numvfs(root, intel, 3)
    assert [(v.index, v.pci, v.driver, v.netdev) for v in pf.vfs] == [
        (0, "0000:03:02.0", "iavf", "ens1f0v0"), (1, "0000:03:02.1", "iavf", "ens1f0v1"),
        (2, "0000:03:02.2", "iavf", "ens1f0v2")]
    assert all(v.vendor == "0x8086" and v.device == "0x154c" for v in pf.vfs)
    assert len({v.iommu_group for v in pf.vfs} | {intel.iommu_group}) == 4
    # i40e-like: no port name or switch id (read fails, as with older kernels)
    with pytest.raises(OSError) as e:
        open(os.path.join(root, "class/net/ens1f0/phys_port_name")).read()
    assert e.value.errno == errno.EOPNOTSUPP
    # by netdev name and by PCI address, through the class/net and bus links
    assert sysfs.find_pf(root, "ens1f0").pci == INTEL
    assert sysfs.find_pf(root, INTEL).netdev == "ens1f0"
    # Mellanox-like switchdev: representors sit in the PF's net/ beside its own netdev
    mlx = sysfs.set_numvfs(root, pfs[MLX], 2)
    assert mlx.netdev == "enp129s0" and mlx.driver == "mlx5_core"
    assert [(v.driver, v.representor) for v in mlx.vfs] == [
        ("mlx5_core", "enp129s0_0"), ("mlx5_core", "enp129s0_1")]
    assert sorted(os.listdir(pf_path(fake, MLX, "net"))) == [
        "enp129s0", "enp129s0_0", "enp129s0_1"]


@needs_fuse
def test_numvfs_follows_the_kernel_rules(fake):
    root = fake.mountpoint
    path = pf_path(fake, INTEL, "sriov_numvfs")
    pf = sysfs.set_numvfs(root, sysfs.find_pf(root, "ens1f0"), 2)
    # the fixture itself answers like the kernel
    for value, err in (("5", errno.EBUSY), ("9", errno.ERANGE), ("x", errno.EINVAL)):
        fd = os.open(path, os.O_WRONLY)
        try:
            with pytest.raises(OSError) as e:
                os.write(fd, value.encode())
            assert e.value.errno == err
        finally:
            os.close(fd)
    # nonzero -> nonzero goes through 0
    fake.writes.clear()
    pf = sysfs.set_numvfs(root, pf, 5)
    assert [w for w in fake.writes if w[0].endswith("sriov_numvfs")] == [
        (f"devices/pci0000:00/{INTEL}/sriov_numvfs", "0\n"),     # symlinks resolved
        (f"devices/pci0000:00/{INTEL}/sriov_numvfs", "5\n")]
    assert pf.numvfs == 5 and len(pf.vfs) == 5
    assert sorted(n for n in os.listdir(pf_path(fake, INTEL, "")) if n.startswith("virtfn")) \
        == [f"virtfn{i}" for i in range(5)]
    # above totalvfs: refused before any write, state intact
    fake.writes.clear()
    with pytest.raises(SriovError, match="at most 8"):
        sysfs.set_numvfs(root, pf, 9)
    assert fake.writes == [] and sysfs.find_pf(root, "ens1f0").numvfs == 5
    # an ERANGE from the kernel itself is reported with its name
    with pytest.raises(SriovError, match=r"out of range \(ERANGE\)"):
        sysfs._write(path, "99\n", "test")
    # autoprobe off: new VFs have no driver and no netdev
    pf = sysfs.set_numvfs(root, pf, 2, autoprobe=False)
    assert pf.autoprobe is False and [(v.driver, v.netdev) for v in pf.vfs] == [(None, None)] * 2
    assert sysfs.set_numvfs(root, pf, 0).vfs == []


@needs_fuse
def test_numvfs_error_paths_leave_state_intact(fake):
    root = fake.mountpoint
    pf = sysfs.set_numvfs(root, sysfs.find_pf(root, "ens1f0"), 2)
    fake.deny(f"devices/pci0000:00/{INTEL}/sriov_numvfs")
    with pytest.raises(SriovError, match="(?i)cannot open .*permission denied"):
        sysfs.set_numvfs(root, pf, 0)
    assert sysfs.find_pf(root, INTEL).numvfs == 2
    with pytest.raises(SriovError, match="no PF named nope"):
        sysfs.find_pf(root, "nope")
    fake.file("devices/virtual/net/br9/ifindex", "9\n")
    fake.link("class/net/br9", "devices/virtual/net/br9")
    with pytest.raises(SriovError, match="br9 is not a PCI device"):
        sysfs.find_pf(root, "br9")
    with pytest.raises(SriovError, match="not an SR-IOV physical function"):
        sysfs.read_pf(root, "0000:03:02.0")          # a VF
    with pytest.raises(SriovError, match="no PCI device"):
        sysfs.read_pf(root, "0000:09:00.0")
    with pytest.raises(SriovError, match="invalid PCI address"):
        sysfs.read_pf(root, "../../etc")
    # a PF without a driver cannot enable VFs (the kernel would say ENOENT)
    mlx = sysfs.find_pf(root, MLX)
    with open(os.path.join(root, "bus/pci/drivers/mlx5_core/unbind"), "w") as f:
        f.write(MLX)
    mlx = sysfs.read_pf(root, MLX)
    assert mlx.driver is None and mlx.netdev is None
    with pytest.raises(SriovError, match="no driver bound"):
        sysfs.set_numvfs(root, mlx, 1)
    with pytest.raises(SriovError, match="ENOENT"):
        sysfs._write(pf_path(fake, MLX, "sriov_numvfs"), "1\n", "test")


@needs_fuse
def test_numvfs_driver_refusals_are_reported(fake):
    root = fake.mountpoint
    pf = sysfs.set_numvfs(root, sysfs.find_pf(root, "ens1f0"), 2)
    fake.pfs[INTEL]["in_use"] = True           # the driver will not free VFs in use
    with pytest.raises(SriovError, match=r"device busy \(EBUSY\)"):
        sysfs.set_numvfs(root, pf, 0)
    assert sysfs.find_pf(root, INTEL).numvfs == 2
    fake.pfs[INTEL]["in_use"] = False
    fake.pfs[INTEL]["resources"] = 4           # the bus cannot take 6 VFs
    with pytest.raises(SriovError, match=r"ENOMEM.*numvfs 2 restored"):
        sysfs.set_numvfs(root, pf, 6)
    pf = sysfs.find_pf(root, INTEL)
    assert pf.numvfs == 2 and len(pf.vfs) == 2
    # autoprobe alone does not churn the VFs
    fake.writes.clear()
    pf = sysfs.set_numvfs(root, pf, 2, autoprobe=False)
    assert [w[1] for w in fake.writes] == ["0\n"] and pf.autoprobe is False
    assert [v.driver for v in pf.vfs] == ["iavf", "iavf"]


@needs_fuse
def test_vf_to_vfio_pci_and_back(fake):
    root = fake.mountpoint
    pf = sysfs.set_numvfs(root, sysfs.find_pf(root, "ens1f0"), 2)
    vf = sysfs.bind_driver(root, pf.vfs[1], sysfs.VFIO_DRIVER)
    assert (vf.driver, vf.netdev, vf.driver_override) == ("vfio-pci", None, "vfio-pci")
    assert not os.path.exists(os.path.join(root, "class/net/ens1f0v1"))
    vf = sysfs.bind_driver(root, vf, "iavf")
    assert (vf.driver, vf.netdev, vf.driver_override) == ("iavf", "ens1f0v1", None)
    vf = sysfs.bind_driver(root, vf, None)
    assert vf.driver is None
    # vfio-pci not loaded: a clear error, the VF left as it was
    fake.remove("bus/pci/drivers/vfio-pci")
    with pytest.raises(SriovError, match="not loaded.*modprobe vfio-pci"):
        sysfs.bind_driver(root, pf.vfs[0], sysfs.VFIO_DRIVER)
    assert sysfs.read_pf(root, INTEL).vfs[0].driver == "iavf"


@needs_fuse
def test_failed_bind_puts_the_vf_back(fake):
    root = fake.mountpoint
    pf = sysfs.set_numvfs(root, sysfs.find_pf(root, "ens1f0"), 1)
    fake.deny("bus/pci/drivers/vfio-pci/bind")
    with pytest.raises(SriovError, match="(?i)vfio-pci/bind: permission denied"):
        sysfs.bind_driver(root, pf.vfs[0], sysfs.VFIO_DRIVER)
    vf = sysfs.read_pf(root, INTEL).vfs[0]
    assert (vf.driver, vf.netdev, vf.driver_override) == ("iavf", "ens1f0v0", None)


@needs_fuse
def test_vf_in_use_by_a_vm_is_not_unbound(fake, tmp_path):
    """Unbinding from vfio-pci while a process holds the VFIO group would block in the
    kernel: the holder is found in /proc and named instead."""
    root = fake.mountpoint
    pf = sysfs.set_numvfs(root, sysfs.find_pf(root, "ens1f0"), 1)
    vf = sysfs.bind_driver(root, pf.vfs[0], sysfs.VFIO_DRIVER, str(tmp_path))
    group = tmp_path / str(vf.iommu_group)
    group.write_text("")
    with open(group) as held:                   # this process stands in for QEMU
        assert held.readable()
        with pytest.raises(SriovError, match=f"open in process {os.getpid()} .*stop the VM"):
            sysfs.bind_driver(root, vf, "iavf", str(tmp_path))
    assert sysfs.read_pf(root, INTEL).vfs[0].driver == "vfio-pci"
    assert sysfs.bind_driver(root, vf, "iavf", str(tmp_path)).driver == "iavf"


# --- netlink messages -------------------------------------------------------------------

def decode_setlink(data: bytes) -> tuple[int, list[tuple[int, tuple]]]:
    """ifindex and the VF attributes (type, unpacked fields) of an RTM_SETLINK."""
    length, mtype, flags, _, _ = NLMSG.unpack_from(data)
    assert (length, mtype, flags) == (len(data), 19, 0x5)
    _, _, ifindex, _, _ = IFINFO.unpack_from(data, NLMSG.size)
    (top,) = attrs(data[NLMSG.size + IFINFO.size:])
    assert top[0] == IFLA_VFINFO_LIST
    (info,) = attrs(top[1])
    assert info[0] == IFLA_VF_INFO
    out = []
    for atype, payload in attrs(info[1]):
        if atype == VF_MAC:
            out.append((atype, (struct.unpack_from("=I", payload)[0], payload[4:10].hex(":"),
                                payload[10:36])))
        else:
            out.append((atype, struct.unpack(f"={len(payload) // 4}I", payload)))
    return ifindex, out


def test_setlink_bytes_carry_every_setting_in_kernel_order():
    cur = VfState(3, "00:00:00:00:00:00", 0, 0, 10, 0, True, False, "auto")
    cfg = {"trust": True, "max_tx_rate": 500, "vlan": 100, "qos": 5,
           "mac": "02:AA:00:00:00:03", "spoofchk": False, "link_state": "disable"}
    before = dict(cfg)
    ifindex, got = decode_setlink(netlink.build_setlink(42, 3, netlink.validate_config(cfg), cur))
    assert cfg == before                       # our dict is not consumed by pyroute2
    assert ifindex == 42
    assert got == [
        (VF_MAC, (3, "02:aa:00:00:00:03", b"\0" * 26)),
        (VF_VLAN, (3, 100, 5)),
        (VF_RATE, (3, 10, 500)),               # min copied from the current value
        (VF_SPOOFCHK, (3, 0)),
        (5, (3, 2)),                           # IFLA_VF_LINK_STATE disable
        (VF_TRUST, (3, 1))]


def test_getlink_asks_for_vfs_without_stats():
    data = netlink.build_getlink(77, seq=5)
    length, mtype, flags, seq, _ = NLMSG.unpack_from(data)
    assert (length, mtype, flags, seq) == (len(data), 18, 0x1, 5)
    assert IFINFO.unpack_from(data, NLMSG.size)[2] == 77
    assert attrs(data[NLMSG.size + IFINFO.size:]) == [(29, struct.pack("=I", 1 | 8))]


def test_paired_settings_keep_their_partner():
    cur = VfState(0, "02:00:00:00:00:01", 20, 3, 100, 900, True, False, "auto")
    _, got = decode_setlink(netlink.build_setlink(1, 0, {"min_tx_rate": 50}, cur))
    assert got == [(VF_RATE, (0, 50, 900))]    # max kept, not zeroed
    _, got = decode_setlink(netlink.build_setlink(1, 0, {"vlan": 30}, cur))
    assert got == [(VF_VLAN, (0, 30, 3))]      # qos kept
    _, got = decode_setlink(netlink.build_setlink(1, 0, {"vlan": 0}, cur))
    assert got == [(VF_VLAN, (0, 0, 0))]       # untagged has no priority


@pytest.mark.parametrize("cfg, match", [
    ({"mac": "02:00:00:00:00"}, "invalid mac"),
    ({"mac": "01:00:5e:00:00:01"}, "multicast"),
    ({"vlan": 4096}, "invalid vlan"),
    ({"qos": 8, "vlan": 5}, "invalid qos"),
    ({"qos": 3, "vlan": 0}, "qos needs a VLAN"),
    ({"max_tx_rate": -1}, "invalid max_tx_rate"),
    ({"min_tx_rate": 200, "max_tx_rate": 100}, "min_tx_rate is above"),
    ({"spoofchk": "maybe"}, "invalid spoofchk"),
    ({"link_state": "up"}, "invalid link_state"),
    ({"colour": "red"}, "unknown VF setting"),
    ({"vlan": True}, "invalid vlan"),
])
def test_bad_settings_are_refused(cfg, match):
    with pytest.raises(VfNetlinkError, match=match):
        netlink.validate_config(cfg)


def test_parse_kernel_layout_reply():
    vfs = [Vf(bytes.fromhex("0200000000aa"), 100, 2, 10, 500, 0, 2, 1),
           Vf(bytes.fromhex("020000000bbb"), 0, 0, 0, 0, 1, 0, 0)]
    link = netlink.parse_link(newlink(1, 9, "ens1f0", vfs, 2))
    assert (link.ifindex, link.ifname, link.num_vf, link.truncated) == (9, "ens1f0", 2, False)
    assert link.vfs[0] == VfState(0, "02:00:00:00:00:aa", 100, 2, 10, 500, False, True,
                                  "disable")
    assert link.vfs[1].config() == {"mac": "02:00:00:00:0b:bb", "vlan": 0, "qos": 0,
                                    "min_tx_rate": 0, "max_tx_rate": 0, "spoofchk": True,
                                    "trust": False, "link_state": "auto"}
    # a dump cut short: IFLA_NUM_VF tells the real count
    many = newlink(1, 9, "ens1f0", [Vf() for _ in range(250)], 250, list_limit=220)
    link = netlink.parse_link(many)
    assert link.truncated and len(link.vfs) == 220 and link.num_vf == 250


# --- netlink against the real kernel (a veth in a private namespace) ----------------

def _netns_veth():
    if os.geteuid() != 0:
        pytest.skip("needs root to make a network namespace")
    ns = "vsr" + uuid.uuid4().hex[:8]
    try:
        subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
        subprocess.run(["ip", "-n", ns, "link", "add", "pf0", "type", "veth", "peer", "name",
                        "pf1"], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as e:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        pytest.skip(f"cannot make a namespace with a veth: {e}")
    return ns


def test_requests_against_the_kernel():
    from nettopo import in_netns
    ns = _netns_veth()
    try:
        def open_socket():
            with in_netns(ns):
                return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)

        rtnl = Rtnl(open_socket)
        with in_netns(ns):
            idx = socket.if_nametoindex("pf0")
        link = netlink.get_vfs(rtnl, idx)
        assert (link.ifname, link.vfs) == ("pf0", {})      # no SR-IOV on a veth
        for cfg in ({"mac": "02:00:00:00:00:01"}, {"vlan": 10, "qos": 1},
                    {"max_tx_rate": 100}, {"min_tx_rate": 5}, {"spoofchk": False},
                    {"trust": True}, {"link_state": "enable"}):
            with pytest.raises(VfNetlinkError, match="EOPNOTSUPP") as e:
                netlink.set_vf(rtnl, idx, 0, cfg)
            assert e.value.errno == errno.EOPNOTSUPP, cfg
        # malformed: an IFLA_VF_MAC too short for struct ifla_vf_mac
        def malformed(seq: int) -> bytes:
            good = netlink.build_setlink(idx, 0, {"mac": "02:00:00:00:00:01"}, None, seq)
            hdr = good[:NLMSG.size + IFINFO.size]
            mac = struct.pack("=HHI", 8, VF_MAC, 0)
            info = struct.pack("=HH", 4 + len(mac), IFLA_VF_INFO) + mac
            lst = struct.pack("=HH", 4 + len(info), IFLA_VFINFO_LIST) + info
            body = hdr[NLMSG.size:] + lst
            return NLMSG.pack(NLMSG.size + len(body), 19, 5, seq, 0) + body
        with pytest.raises(VfNetlinkError) as e:
            rtnl.request(malformed)
        assert e.value.errno not in (0, errno.EOPNOTSUPP)
        # a VF list holding something other than IFLA_VF_INFO
        def wrong_nest(seq: int) -> bytes:
            good = netlink.build_setlink(idx, 0, {"trust": True}, None, seq)
            body = good[NLMSG.size:NLMSG.size + IFINFO.size] + struct.pack(
                "=HHHHI", 12, IFLA_VFINFO_LIST, 8, 7, 0)
            return NLMSG.pack(NLMSG.size + len(body), 19, 5, seq, 0) + body
        with pytest.raises(VfNetlinkError) as e:
            rtnl.request(wrong_nest)
        assert e.value.errno == errno.EINVAL
        with pytest.raises(VfNetlinkError, match="no link|No such device"):
            netlink.get_vfs(rtnl, 0x7FFFFFF0)
        assert rtnl.requests >= 10 and rtnl.errors >= 9
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


# --- pools ------------------------------------------------------------------------------

def test_pool_selectors():
    pf = sysfs.PF(INTEL, "ens1f0", "0x8086", "0x1572", "i40e", 4, 8, True, 1)
    vfs = [sysfs.VF(i, f"0000:03:02.{i}", "0x8086", "0x154c", "iavf", None, 5 + i, None)
           for i in range(4)]
    def members(sel):
        return [v.index for v in vfs if pools.matches(pools.validate_selectors(sel), pf, v)]
    assert members({"vendors": ["8086"]}) == [0, 1, 2, 3]
    assert members({"vendors": ["0x8086"], "devices": ["154C"]}) == [0, 1, 2, 3]
    assert members({"devices": ["1018"]}) == []
    assert members({"pfNames": ["ens1f0#1-2"]}) == [1, 2]
    assert members({"pfNames": ["ens1f0#0,3", "ens1f1"]}) == [0, 3]
    assert members({"pfNames": ["ens1f0"], "drivers": ["vfio-pci"]}) == []
    assert members({"pciAddresses": ["0000:03:02.2"]}) == [2]
    # an assigned VF moved to vfio-pci counts with the driver it had
    sel = pools.validate_selectors({"drivers": ["iavf"]})
    moved = sysfs.VF(0, "0000:03:02.0", "0x8086", "0x154c", "vfio-pci", None, 5, "vfio-pci")
    assert not pools.matches(sel, pf, moved) and pools.matches(sel, pf, moved, "iavf")
    for bad, match in (({}, "at least one selector"), ({"vendor": ["8086"]}, "unknown selector"),
                       ({"vendors": "8086"}, "non-empty list"), ({"vendors": ["80861"]}, "bad"),
                       ({"pfNames": ["ens1f0#3-1"]}, "bad VF range"),
                       ({"pfNames": ["ens1f0#x"]}, "bad")):
        with pytest.raises(SriovError, match=match):
            pools.validate_selectors(bad)


# --- manager ----------------------------------------------------------------------------

@needs_fuse
def test_assign_and_release_restore_only_what_changed(mgr, kernel, fake):
    mgr.set_numvfs("ens1f0", 4)
    vfk = kernel.pfs[7].vfs
    vfk[0].max_tx_rate = 300          # set by someone else before the assignment
    vfk[0].trust = 1
    mgr.pool_add("fast", {"pfNames": ["ens1f0#0-1"], "drivers": ["iavf"]})
    a = mgr.assign("vm-1", pool="fast", config={"mac": "02:00:00:00:01:01", "vlan": 42,
                                                "min_tx_rate": 50})
    assert (a["vf_pci"], a["state"], a["vm_id"]) == ("0000:03:02.0", "active", "vm-1")
    assert a["original"] == {"mac": "00:00:00:00:00:00", "vlan": 0, "min_tx_rate": 0}
    assert (vfk[0].mac.hex(":"), vfk[0].vlan, vfk[0].min_tx_rate, vfk[0].max_tx_rate) == \
        ("02:00:00:00:01:01", 42, 50, 300)               # max kept by the paired write
    vfk[0].trust = 0                  # changed behind our back: not ours to restore
    (r,) = mgr.release(vm_id="vm-1")
    assert r["restored"]
    assert (vfk[0].mac, vfk[0].vlan, vfk[0].min_tx_rate, vfk[0].max_tx_rate, vfk[0].trust) \
        == (b"\0" * 6, 0, 0, 300, 0)
    assert mgr.assignments() == []
    with pytest.raises(SriovError, match="has no VF assigned"):
        mgr.release(vm_id="vm-1")


@needs_fuse
def test_config_of_an_assigned_vf_joins_its_assignment(mgr, kernel):
    mgr.set_numvfs("ens1f0", 2)
    vfk = kernel.pfs[7].vfs[1]
    vfk.mac = bytes.fromhex("020000000abc")
    mgr.assign("vm-5", vf="ens1f0#1", config={"vlan": 9})
    assert mgr.configure("ens1f0#1", {"mac": "02:00:00:00:05:05"})["mac"] == \
        "02:00:00:00:05:05"
    (a,) = mgr.assignments()
    assert a["desired"] == {"vlan": 9, "mac": "02:00:00:00:05:05"}
    assert a["original"] == {"vlan": 0, "mac": "02:00:00:00:0a:bc"}
    # refused by the kernel: the original is saved anyway, desired stays as it was
    kernel.pfs[7].unsupported[VF_TRUST] = errno.EPERM
    with pytest.raises(SriovError, match="EPERM"):
        mgr.configure("ens1f0#1", {"trust": True})
    (a,) = mgr.assignments()
    assert "trust" not in a["desired"] and a["original"]["trust"] is False
    mgr.release(vm_id="vm-5")
    assert (vfk.mac.hex(":"), vfk.vlan) == ("02:00:00:00:0a:bc", 0)


@needs_fuse
def test_failed_restore_keeps_the_assignment(mgr, kernel):
    mgr.set_numvfs("ens1f0", 1)
    mgr.assign("vm-6", vf="ens1f0#0", config={"mac": "02:00:00:00:06:06"})
    kernel.pfs[7].unsupported[VF_MAC] = errno.EBUSY      # e.g. the VF driver holds it
    with pytest.raises(SriovError, match="EBUSY.*the assignment is kept"):
        mgr.release(vm_id="vm-6")
    (a,) = mgr.assignments()
    assert a["state"] == "active" and "EBUSY" in a["error"]
    del kernel.pfs[7].unsupported[VF_MAC]
    assert mgr.release(vm_id="vm-6")[0]["restored"]
    assert kernel.pfs[7].vfs[0].mac == b"\0" * 6 and mgr.assignments() == []


@needs_fuse
def test_no_double_allocation_across_restarts(mgr, fake, kernel, tmp_path):
    mgr.set_numvfs("ens1f0", 3)
    mgr.pool_add("two", {"pfNames": ["ens1f0#1-2"]})
    assert mgr.assign("vm-a", pool="two")["vf_pci"] == "0000:03:02.1"
    with pytest.raises(SriovError, match="already assigned to VM vm-a"):
        mgr.assign("vm-x", vf="ens1f0#1")
    mgr.config.close()
    # a restart: a new manager on the same database
    again = SriovManager(ConfigStore(tmp_path / "conf.db"), fake.mountpoint,
                         Rtnl(kernel.socket), kernel.ifindex_of)
    assert [a["vm_id"] for a in again.assignments()] == ["vm-a"]
    assert again.assign("vm-b", pool="two")["vf_pci"] == "0000:03:02.2"
    with pytest.raises(SriovError, match="pool two has no free VF"):
        again.assign("vm-c", pool="two")
    (p,) = again.pools()
    assert (p["total"], p["free"]) == (2, 0)
    with pytest.raises(SriovError, match="has assigned VFs"):
        again.set_numvfs("ens1f0", 1)
    with pytest.raises(SriovError, match="has assigned VFs"):
        again.pool_del("two")
    assert sysfs.find_pf(fake.mountpoint, "ens1f0").numvfs == 3
    mgr.config = again.config           # the fixture closes this one
    for bad, match in ((dict(vm_id="vm d"), "invalid VM id"),
                       (dict(vm_id="vm-d"), "exactly one of a pool or a VF"),
                       (dict(vm_id="vm-d", pool="nope"), "no pool named nope"),
                       (dict(vm_id="vm-d", vf="ens1f0#7"), "has no VF 7"),
                       (dict(vm_id="vm-d", vf="0000:03:00.0"), "not a VF")):
        with pytest.raises(SriovError, match=match):
            again.assign(**bad)


@needs_fuse
def test_half_applied_config_is_reported_and_undone(mgr, kernel):
    mgr.set_numvfs("ens1f0", 2)
    kernel.pfs[7].unsupported[VF_SPOOFCHK] = errno.EOPNOTSUPP
    with pytest.raises(SriovError) as e:
        mgr.assign("vm-1", vf="ens1f0#0", config={"mac": "02:00:00:00:00:09", "vlan": 5,
                                                  "spoofchk": False, "trust": True})
    msg = str(e.value)
    assert "EOPNOTSUPP" in msg and "in effect anyway: ['mac', 'vlan']" in msg
    vf0 = kernel.pfs[7].vfs[0]
    assert (vf0.mac, vf0.vlan, vf0.trust) == (b"\0" * 6, 0, 0)     # undone
    assert mgr.assignments() == [] and mgr.counters["assign_failed"] == 1
    # direct config reports the same way and keeps what the kernel applied
    with pytest.raises(SriovError, match=r"in effect anyway: \['mac'\]"):
        mgr.configure("ens1f0#1", {"mac": "02:00:00:00:00:0a", "spoofchk": False})
    assert kernel.pfs[7].vfs[1].mac.hex(":") == "02:00:00:00:00:0a"


@needs_fuse
def test_vfio_passthrough_and_back(mgr, fake):
    mgr.set_numvfs("ens1f0", 2)
    a = mgr.assign("vm-9", vf="0000:03:02.1", vfio=True, config={"vlan": 7})
    assert (a["driver"], a["original_driver"]) == ("vfio-pci", "iavf")
    vf = sysfs.read_pf(fake.mountpoint, INTEL).vfs[1]
    assert (vf.driver, vf.netdev) == ("vfio-pci", None)
    mgr.release(vf="ens1f0#1")
    vf = sysfs.read_pf(fake.mountpoint, INTEL).vfs[1]
    assert (vf.driver, vf.netdev, vf.driver_override) == ("iavf", "ens1f0v1", None)


@needs_fuse
def test_reconcile_after_crash_and_pf_reset(mgr, fake, kernel):
    mgr.set_numvfs("ens1f0", 2)
    # a crash between writing the record and touching the hardware
    mgr.store.add(Assignment("0000:03:02.1", INTEL, "ens1f0", 1, "vm-c", None,
                             {"mac": "02:00:00:00:0c:01"}, {"mac": "00:00:00:00:00:00"}))
    mgr.assign("vm-d", vf="ens1f0#0", config={"vlan": 11}, vfio=True)
    report = {r["vm_id"]: r["action"] for r in mgr.reconcile()}
    assert report == {"vm-c": "reapplied config", "vm-d": "in line"}
    assert kernel.pfs[7].vfs[1].mac.hex(":") == "02:00:00:00:0c:01"
    assert {a["vm_id"]: a["state"] for a in mgr.assignments()} == {"vm-c": "active",
                                                                   "vm-d": "active"}
    # a PF reset: VFs and their settings gone
    fake.remove_vfs(INTEL)
    assert {r["action"] for r in mgr.reconcile("ens1f0")} == {"lost"}
    lost = {a["vm_id"]: a for a in mgr.assignments()}
    assert lost["vm-d"]["state"] == "lost" and "VF gone" in lost["vm-d"]["error"]
    # the VFs come back with default settings: desired config and driver re-applied
    fake.create_vfs(INTEL, 2)
    report = {r["vm_id"]: r["action"] for r in mgr.reconcile()}
    assert report == {"vm-c": "reapplied config", "vm-d": "reapplied config+driver"}
    assert kernel.pfs[7].vfs[0].vlan == 11
    assert sysfs.read_pf(fake.mountpoint, INTEL).vfs[0].driver == "vfio-pci"
    # releasing a VF that is gone again only drops the record
    fake.remove_vfs(INTEL)
    assert [r["restored"] for r in mgr.release(vm_id="vm-c")] == [False]


@needs_fuse
def test_truncated_vf_list_is_an_error_not_absence(mgr, kernel):
    mgr.set_numvfs("ens1f0", 4)
    kernel.pfs[7].list_limit = 2
    with pytest.raises(SriovError, match=r"VF 3 is beyond the 2 VFs .*IFLA_NUM_VF=4"):
        mgr.configure("ens1f0#3", {"trust": True})
    assert mgr.configure("ens1f0#1", {"trust": True})["trust"] is True


@needs_fuse
def test_pf_without_driver_is_a_clear_error(mgr, fake):
    mgr.set_numvfs("enp129s0", 1)
    with open(os.path.join(fake.mountpoint, "bus/pci/drivers/mlx5_core/unbind"), "w") as f:
        f.write(MLX)
    with pytest.raises(SriovError, match="PF 0000:81:00.0 has no network device"):
        mgr.configure("0000:81:02.0", {"vlan": 3})
    with pytest.raises(SriovError, match="has no network device"):
        mgr.assign("vm-7", vf="0000:81:02.0", config={"vlan": 3})
    assert mgr.assignments() == []
    (pf,) = [p for p in mgr.list() if p["pci"] == MLX]
    assert "has no network device" in pf["config_error"]


@needs_fuse
def test_listing_shows_settings_and_assignments(mgr, kernel):
    mgr.set_numvfs("ens1f0", 2)
    mgr.configure("ens1f0#1", {"max_tx_rate": 1000, "link_state": "enable"})
    mgr.assign("vm-l", vf="ens1f0#1")
    pfs = {p["pci"]: p for p in mgr.list()}
    vf1 = pfs[INTEL]["vfs"][1]
    assert vf1["config"]["max_tx_rate"] == 1000 and vf1["config"]["link_state"] == "enable"
    assert vf1["assignment"] == {"vm_id": "vm-l", "pool": None, "state": "active"}
    assert pfs[MLX]["vfs"] == [] and pfs[MLX]["config_error"] is None


def test_store_tables_come_with_the_config_schema(tmp_path):
    with ConfigStore(tmp_path / "conf.db") as cfg:
        store = SriovStore(cfg)
        store.set_pool("p", {"pfNames": ["ens1f0"]})
        assert cfg.schema_version == config.SCHEMA_VERSION
    with ConfigStore(tmp_path / "conf.db") as cfg:       # kept across a reopen
        assert SriovStore(cfg).pools() == {"p": {"pfNames": ["ens1f0"]}}
