"""SR-IOV through sysfs: discover physical functions (PFs) and their virtual functions
(VFs), change the number of VFs, and move a VF between drivers.

All paths are relative to `root` (normally /sys).  The layout read:

    bus/pci/devices/ADDR -> ../../../devices/.../ADDR    every PCI device
    ADDR/sriov_totalvfs, sriov_numvfs, sriov_drivers_autoprobe     only on a PF
    ADDR/virtfnN -> ../VFADDR,  VFADDR/physfn -> ../ADDR
    ADDR/vendor, device ("0x8086"), driver -> .../bus/pci/drivers/NAME,
    ADDR/iommu_group -> .../kernel/iommu_groups/N, ADDR/net/IFNAME/
    ADDR/driver_override; bus/pci/drivers/NAME/{bind,unbind}; bus/pci/drivers_probe
    class/net/IFNAME/{ifindex,phys_port_name,phys_switch_id}; IFNAME/device -> PCI dir

Kernel rules followed (drivers/pci/iov.c, sriov_numvfs_store): a nonzero VF count is
changed by writing 0 first (nonzero to nonzero is EBUSY); above sriov_totalvfs is ERANGE;
a PF without a bound driver cannot enable VFs.  Errors become `SriovError` with the
path and the kernel's reason; nothing here retries or half-applies a change silently.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import asdict, dataclass, field

from vswitch.sriov import vfio

DEFAULT_ROOT = "/sys"
_PCI_ADDR = re.compile(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]")
_REPRESENTOR = re.compile(r"(?:c\d+)?pf(\d+)vf(\d+)")
VFIO_DRIVER = "vfio-pci"


class SriovError(ValueError):
    """A refused or failed SR-IOV operation; the message is one line for the operator."""


@dataclass
class VF:
    index: int
    pci: str
    vendor: str
    device: str
    driver: str | None
    netdev: str | None
    iommu_group: int | None
    driver_override: str | None
    representor: str | None = None       # switchdev: the pfXvfY netdev on the host side


@dataclass
class PF:
    pci: str
    netdev: str | None
    vendor: str
    device: str
    driver: str | None
    numvfs: int
    totalvfs: int
    autoprobe: bool | None
    iommu_group: int | None
    vfs: list[VF] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def _path(root: str, *parts: str) -> str:
    return os.path.join(root, *parts)


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise SriovError(f"cannot read {path}: {e.strerror}") from None


def _read_optional(path: str) -> str | None:
    """A netdev attribute the driver may not implement: phys_port_name and
    phys_switch_id read as EOPNOTSUPP (older kernels) or are absent (newer ones)."""
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.EOPNOTSUPP, errno.EINVAL,
                       errno.ENODATA):
            return None
        raise SriovError(f"cannot read {path}: {e.strerror}") from None


def _read_int(path: str) -> int | None:
    text = _read(path)
    if text is None or not text:
        return None
    try:
        return int(text, 0)
    except ValueError:
        raise SriovError(f"unexpected content in {path}: {text!r}") from None


def _link_name(path: str) -> str | None:
    """Last component of a symlink's target (driver name, IOMMU group, VF address)."""
    try:
        return os.path.basename(os.readlink(path))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        if e.errno == errno.EINVAL:         # not a symlink
            return None
        raise SriovError(f"cannot read link {path}: {e.strerror}") from None


def _write(path: str, value: str, what: str) -> None:
    """One write(2) of the whole value, as echo does: sysfs takes a store per write."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        raise SriovError(f"{what}: {path} does not exist") from None
    except OSError as e:
        raise SriovError(f"{what}: cannot open {path}: {e.strerror}") from None
    try:
        os.write(fd, value.encode())
    except OSError as e:
        reason = {errno.EBUSY: "device busy", errno.ERANGE: "out of range",
                  errno.ENOENT: "no driver bound, or the driver cannot do SR-IOV",
                  errno.EACCES: "permission denied", errno.EPERM: "permission denied",
                  errno.ENODEV: "no such device for this driver"}.get(e.errno, e.strerror)
        raise SriovError(f"{what}: writing {value.strip()!r} to {path}: {reason} "
                         f"({errno.errorcode.get(e.errno, e.errno)})") from None
    finally:
        os.close(fd)


def pci_dir(root: str, pci: str) -> str:
    return _path(root, "bus/pci/devices", pci)


def is_pci(name: object) -> bool:
    return isinstance(name, str) and _PCI_ADDR.fullmatch(name) is not None


def physfn(root: str, vf_pci: str) -> str | None:
    """The PF of a VF (its physfn link), or None if `vf_pci` is not a VF."""
    return _link_name(os.path.join(pci_dir(root, check_pci(vf_pci)), "physfn"))


def check_pci(pci: object) -> str:
    if not isinstance(pci, str) or not _PCI_ADDR.fullmatch(pci):
        raise SriovError(f"invalid PCI address {pci!r} (expected e.g. 0000:03:00.1)")
    return pci


def _netdevs(dev: str) -> list[str]:
    try:
        return sorted(os.listdir(os.path.join(dev, "net")))
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as e:
        raise SriovError(f"cannot list {dev}/net: {e.strerror}") from None


def _group(dev: str) -> int | None:
    name = _link_name(os.path.join(dev, "iommu_group"))
    return int(name) if name is not None and name.isdigit() else None


def _vf_links(dev: str) -> list[tuple[int, str]]:
    out = []
    try:
        names = os.listdir(dev)
    except OSError as e:
        raise SriovError(f"cannot list {dev}: {e.strerror}") from None
    for name in names:
        if name.startswith("virtfn") and name[6:].isdigit():
            target = _link_name(os.path.join(dev, name))
            if target is not None:
                out.append((int(name[6:]), target))
    return sorted(out)


def read_vf(root: str, index: int, pci: str) -> VF:
    dev = pci_dir(root, pci)
    netdevs = _netdevs(dev)
    override = _read(os.path.join(dev, "driver_override"))
    return VF(index, pci, _read(os.path.join(dev, "vendor")) or "",
              _read(os.path.join(dev, "device")) or "", _link_name(os.path.join(dev, "driver")),
              netdevs[0] if netdevs else None, _group(dev),
              None if override in (None, "", "(null)") else override)


def read_pf(root: str, pci: str) -> PF:
    check_pci(pci)
    dev = pci_dir(root, pci)
    total = _read_int(os.path.join(dev, "sriov_totalvfs"))
    if total is None:
        if not os.path.exists(dev):
            raise SriovError(f"no PCI device {pci}")
        raise SriovError(f"{pci} is not an SR-IOV physical function (no sriov_totalvfs)")
    # In switchdev mode the VF representors sit in the PF's net/ too: the PF's own
    # netdev is the one whose port name is not pfXvfY.
    netdevs = [n for n in _netdevs(dev) if not _REPRESENTOR.fullmatch(
        _read_optional(_path(root, "class/net", n, "phys_port_name")) or "")]
    auto = _read_int(os.path.join(dev, "sriov_drivers_autoprobe"))
    pf = PF(pci, netdevs[0] if netdevs else None, _read(os.path.join(dev, "vendor")) or "",
            _read(os.path.join(dev, "device")) or "", _link_name(os.path.join(dev, "driver")),
            _read_int(os.path.join(dev, "sriov_numvfs")) or 0, total,
            None if auto is None else bool(auto), _group(dev))
    pf.vfs = [read_vf(root, i, vf) for i, vf in _vf_links(dev)]
    reps = representors(root, pf)
    for vf in pf.vfs:
        vf.representor = reps.get(vf.index)
    return pf


def list_pfs(root: str = DEFAULT_ROOT) -> list[PF]:
    base = _path(root, "bus/pci/devices")
    try:
        names = sorted(os.listdir(base))
    except FileNotFoundError:
        return []
    except OSError as e:
        raise SriovError(f"cannot list {base}: {e.strerror}") from None
    return [read_pf(root, n) for n in names
            if _PCI_ADDR.fullmatch(n) and os.path.exists(os.path.join(base, n, "sriov_totalvfs"))]


def netdev_pci(root: str, ifname: str) -> str | None:
    return _link_name(_path(root, "class/net", ifname, "device"))


def find_pf(root: str, name: str) -> PF:
    """A PF by netdev name or PCI address."""
    if not isinstance(name, str) or not name:
        raise SriovError(f"invalid PF name {name!r}")
    if _PCI_ADDR.fullmatch(name):
        return read_pf(root, name)
    pci = netdev_pci(root, name)
    if pci is None:
        if os.path.exists(_path(root, "class/net", name)):
            raise SriovError(f"{name} is not a PCI device (a virtual netdev)")
        raise SriovError(f"no PF named {name} (no {_path(root, 'class/net', name)})")
    if not _PCI_ADDR.fullmatch(pci):
        raise SriovError(f"{name} is not a PCI device (its device is {pci})")
    return read_pf(root, pci)


def ifindex(root: str, ifname: str) -> int:
    idx = _read_int(_path(root, "class/net", ifname, "ifindex"))
    if idx is None:
        raise SriovError(f"no network device {ifname}")
    return idx


def representors(root: str, pf: PF) -> dict[int, str]:
    """switchdev mode: VF index -> representor netdev.  A representor shares the PF's
    phys_switch_id and names its port pfXvfY (X: this PF's port, from its own
    phys_port_name pN/pfN; a PF without one is taken as pf0)."""
    if pf.netdev is None:
        return {}
    net = _path(root, "class/net")
    switch_id = _read_optional(os.path.join(net, pf.netdev, "phys_switch_id"))
    if not switch_id:
        return {}
    own = _read_optional(os.path.join(net, pf.netdev, "phys_port_name")) or ""
    m = re.fullmatch(r"p(?:f)?(\d+)", own)
    pf_port = int(m.group(1)) if m else 0
    out: dict[int, str] = {}
    try:
        names = sorted(os.listdir(net))
    except OSError:
        return {}
    for name in names:
        if name == pf.netdev:
            continue
        if _read_optional(os.path.join(net, name, "phys_switch_id")) != switch_id:
            continue
        m = _REPRESENTOR.fullmatch(
            _read_optional(os.path.join(net, name, "phys_port_name")) or "")
        if m and int(m.group(1)) == pf_port:
            out[int(m.group(2))] = name
    return out


def set_numvfs(root: str, pf: PF, count: int, autoprobe: bool | None = None) -> PF:
    """Set the PF's VF count the kernel's way: refuse above totalvfs, go through 0 when
    changing one nonzero count to another.  Autoprobe is written first: it decides
    whether VFs created after it get their driver.  If the new count fails after the old
    VFs were removed, the old count is written back."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise SriovError(f"numvfs must be a non-negative integer, not {count!r}")
    if autoprobe is not None and not isinstance(autoprobe, bool):
        raise SriovError(f"autoprobe must be true or false, not {autoprobe!r}")
    if count > pf.totalvfs:
        raise SriovError(f"{pf.netdev or pf.pci}: {count} VFs requested, the device "
                         f"supports at most {pf.totalvfs} (sriov_totalvfs)")
    if count and pf.driver is None:
        raise SriovError(f"{pf.netdev or pf.pci}: no driver bound to the PF, cannot "
                         "enable VFs")
    dev = pci_dir(root, pf.pci)
    numvfs = os.path.join(dev, "sriov_numvfs")
    what = f"{pf.netdev or pf.pci}: set numvfs {count}"
    if autoprobe is not None and autoprobe != pf.autoprobe:
        # takes effect for VFs created after it: written before the count
        _write(os.path.join(dev, "sriov_drivers_autoprobe"), f"{int(autoprobe)}\n", what)
    if count == pf.numvfs:
        return read_pf(root, pf.pci)
    if pf.numvfs:
        _write(numvfs, "0\n", what)
    if count:
        try:
            _write(numvfs, f"{count}\n", what)
        except SriovError as e:
            if not pf.numvfs:
                raise
            # The old VFs are gone already: bring their number back rather than leave
            # the PF with none.
            try:
                _write(numvfs, f"{pf.numvfs}\n", what)
            except SriovError as e2:
                raise SriovError(f"{e}; restoring numvfs {pf.numvfs} failed too: "
                                 f"{e2}") from None
            raise SriovError(f"{e}; numvfs {pf.numvfs} restored (their VFs have the "
                             "driver's default settings again)") from None
    return read_pf(root, pf.pci)


def bind_driver(root: str, vf: VF, driver: str | None,
                vfio_dir: str = vfio.DEFAULT_DEV_DIR) -> VF:
    """Move a VF to `driver` (None: no driver): unbind, driver_override, bind; the
    override is cleared afterwards unless the target is vfio-pci, whose binding must
    survive a later reprobe.  A VF whose VFIO group is open (a running VM) is not
    moved away from vfio-pci.  If a step fails, the VF is put back on the driver it
    had.  Returns the VF as read back."""
    dev = pci_dir(root, vf.pci)
    override = os.path.join(dev, "driver_override")
    what = f"VF {vf.pci}: bind to {driver or 'no driver'}"
    if driver is not None and not os.path.isdir(_path(root, "bus/pci/drivers", driver)):
        hint = " (modprobe vfio-pci)" if driver == VFIO_DRIVER else ""
        raise SriovError(f"{what}: driver {driver} is not loaded{hint}")
    if vf.driver == driver:
        return read_vf(root, vf.index, vf.pci)
    if vf.driver == VFIO_DRIVER and vf.iommu_group is not None:
        pids = vfio.holders(vf.iommu_group, vfio_dir)
        if pids:
            raise SriovError(f"{what}: {vfio_dir}/{vf.iommu_group} is open in process "
                             f"{', '.join(map(str, pids))} (stop the VM first)")
    try:
        if vf.driver is not None:
            _write(_path(root, "bus/pci/drivers", vf.driver, "unbind"), vf.pci, what)
        if driver is not None:
            _write(override, f"{driver}\n", what)
            _write(_path(root, "bus/pci/drivers", driver, "bind"), vf.pci, what)
            if driver != VFIO_DRIVER:
                _write(override, "\n", what)
        else:
            _write(override, "\n", what)
    except SriovError:
        _rebind(root, vf, override)
        raise
    back = read_vf(root, vf.index, vf.pci)
    if back.driver != driver:
        raise SriovError(f"{what}: the VF is bound to {back.driver or 'no driver'} after it")
    return back


def _rebind(root: str, vf: VF, override: str) -> None:
    """Best effort after a failed move: the old override, the old driver."""
    try:
        _write(override, f"{vf.driver_override or ''}\n", "restore")
        now = read_vf(root, vf.index, vf.pci)
        if now.driver is None and vf.driver is not None:
            _write(_path(root, "bus/pci/drivers", vf.driver, "bind"), vf.pci, "restore")
    except SriovError:
        pass                            # the caller's error says what failed first
