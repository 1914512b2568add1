"""A fake sysfs for SR-IOV tests, mounted with FUSE so that the code under test does real
open/read/write/readlink/listdir calls and gets the kernel's errors back from write(2).

The tree follows the kernel's layout (devices/pci0000:00/ADDR with the bus/pci/devices,
class/net and bus/pci/drivers symlinks, kernel/iommu_groups) for two kinds of PF:
Intel-like (i40e PF, iavf VFs, legacy mode) and Mellanox-like (mlx5_core for both, with
switchdev representors pf0vfN in the PF's net/ directory).  Writes behave as in the
kernel where the code depends on it:

    sriov_numvfs        EINVAL for non-numbers, ERANGE above sriov_totalvfs, EBUSY for
                        nonzero -> different nonzero, ENOENT with no PF driver, EBUSY
                        for 0 while pfs[pci]["in_use"], ENOMEM above
                        pfs[pci]["resources"] (what drivers answer); creates
                        or removes the virtfnN/physfn links and the VF devices (bound to
                        the VF driver, with a netdev, when sriov_drivers_autoprobe is 1)
    driver_override     stored ("(null)" when cleared)
    drivers/X/unbind    ENODEV unless bound to X; removes the VF's netdev
    drivers/X/bind      ENODEV if the device is bound already, if its driver_override
                        names another driver, or for vfio-pci without an override
    deny(path)          makes opening that path for writing fail with EACCES

Real SR-IOV is not emulated beyond that: no config space, no VF traffic.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import tempfile
import threading
import time

try:
    import mfusepy as fuse
except ImportError:              # tests that need FUSE skip (see fuse_unavailable)
    fuse = None

PCI_BASE = "devices/pci0000:00"


def fuse_unavailable() -> str | None:
    """Why a FUSE fake cannot be mounted here, or None."""
    if fuse is None:
        return "needs the mfusepy package (pip install mfusepy)"
    if not os.path.exists("/dev/fuse"):
        return "needs /dev/fuse"
    if os.geteuid() != 0:
        return "needs root to mount FUSE file systems"
    try:
        subprocess.run(["fusermount3", "-V"], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "needs fusermount3 (apt install fuse3)"
    return None


class Node:
    __slots__ = ("kind", "data", "target", "on_write", "denied", "read_errno")

    def __init__(self, kind: str, data: bytes = b"", target: str = "", on_write=None) -> None:
        self.kind = kind              # "dir", "file" or "link"
        self.data = data
        self.target = target
        self.on_write = on_write      # handler(bytes) -> None, raising OSError like the kernel
        self.denied = False
        self.read_errno = 0           # reading fails with this (0: reads fine)


class FakeSysfs:
    """The tree and its kernel rules; `mount()` exposes it at a temporary directory."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {"": Node("dir")}
        self.lock = threading.RLock()
        self.pfs: dict[str, dict] = {}
        self._next_ifindex = 1000
        self._next_group = 40
        self.writes: list[tuple[str, str]] = []     # every write, for assertions
        for d in ("bus/pci/devices", "bus/pci/drivers", "class/net", "kernel/iommu_groups",
                  PCI_BASE):
            self.mkdir(d)
        self.on_numvfs = None         # hook(pf_pci, n): the VFs' netlink side follows
        self.mountpoint: str | None = None
        self._thread: threading.Thread | None = None

    # -- tree primitives -------------------------------------------------------------

    def mkdir(self, path: str) -> None:
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            self.nodes.setdefault("/".join(parts[:i]), Node("dir"))

    def file(self, path: str, text: str = "", on_write=None) -> None:
        self.mkdir(os.path.dirname(path))
        self.nodes[path] = Node("file", text.encode(), on_write=on_write)

    def link(self, path: str, target_path: str) -> None:
        """A symlink at `path` to the tree path `target_path` (stored relative, as sysfs)."""
        self.mkdir(os.path.dirname(path))
        # like the kernel's: up to the target's parent, then its name (never "../..")
        rel = os.path.join(os.path.relpath(os.path.dirname(target_path) or ".",
                                           os.path.dirname(path) or "."),
                           os.path.basename(target_path))
        self.nodes[path] = Node("link", target=rel)

    def remove(self, path: str) -> None:
        for p in [p for p in self.nodes if p == path or p.startswith(path + "/")]:
            del self.nodes[p]

    def read(self, path: str) -> str:
        return self.nodes[path].data.decode()

    def deny(self, path: str) -> None:
        self.nodes[path].denied = True

    def children(self, path: str) -> list[str]:
        pre = path + "/" if path else ""
        return sorted({p[len(pre):].split("/")[0] for p in self.nodes
                       if p.startswith(pre) and p != path})

    # -- devices ----------------------------------------------------------------------

    def _dev(self, pci: str) -> str:
        return f"{PCI_BASE}/{pci}"

    def add_driver(self, name: str) -> None:
        base = f"bus/pci/drivers/{name}"
        self.mkdir(base)
        self.file(f"{base}/bind", on_write=lambda d, n=name: self._bind(n, d))
        self.file(f"{base}/unbind", on_write=lambda d, n=name: self._unbind(n, d))

    def _add_netdev(self, pci: str, ifname: str, port_name: str = "",
                    switch_id: str = "") -> None:
        net = f"{self._dev(pci)}/net/{ifname}"
        self._next_ifindex += 1
        self.file(f"{net}/ifindex", f"{self._next_ifindex}\n")
        # a driver without these answers EOPNOTSUPP on read, as older kernels do
        self.file(f"{net}/phys_port_name", port_name + "\n" if port_name else "")
        self.file(f"{net}/phys_switch_id", switch_id + "\n" if switch_id else "")
        if not port_name:
            self.nodes[f"{net}/phys_port_name"].read_errno = errno.EOPNOTSUPP
        if not switch_id:
            self.nodes[f"{net}/phys_switch_id"].read_errno = errno.EOPNOTSUPP
        self.link(f"{net}/device", self._dev(pci))
        self.link(f"class/net/{ifname}", net)

    def _del_netdevs(self, pci: str, only: str | None = None) -> None:
        for name in self.children(f"{self._dev(pci)}/net"):
            if only is None or name == only:
                self.remove(f"{self._dev(pci)}/net/{name}")
                self.remove(f"class/net/{name}")

    def _add_device(self, pci: str, vendor: str, device: str, driver: str | None) -> None:
        dev = self._dev(pci)
        self.mkdir(dev)
        self.file(f"{dev}/vendor", f"0x{vendor}\n")
        self.file(f"{dev}/device", f"0x{device}\n")
        self.file(f"{dev}/driver_override", "(null)\n",
                  on_write=lambda d, p=pci: self._override(p, d))
        group = self._next_group
        self._next_group += 1
        self.mkdir(f"kernel/iommu_groups/{group}/devices")
        self.link(f"kernel/iommu_groups/{group}/devices/{pci}", dev)
        self.link(f"{dev}/iommu_group", f"kernel/iommu_groups/{group}")
        self.link(f"bus/pci/devices/{pci}", dev)
        if driver:
            self._attach(pci, driver)

    def _attach(self, pci: str, driver: str) -> None:
        self.link(f"{self._dev(pci)}/driver", f"bus/pci/drivers/{driver}")
        self.link(f"bus/pci/drivers/{driver}/{pci}", self._dev(pci))

    def add_pf(self, pci: str, ifname: str, *, kind: str = "intel", totalvfs: int = 8,
               switchdev: bool = False, rep_name=None) -> None:
        """An SR-IOV PF.  kind "intel": 8086:1572 on i40e, VFs 8086:154c on iavf;
        "mellanox": 15b3:1017 on mlx5_core, VFs 15b3:1018 on mlx5_core.  switchdev:
        each VF gets a representor netdev rep_name(i) (default ifname_i) in the PF's
        net/ with phys_port_name pf0vfI."""
        if kind == "intel":
            ids = ("8086", "1572", "i40e", "154c", "iavf")
        else:
            ids = ("15b3", "1017", "mlx5_core", "1018", "mlx5_core")
        vendor, device, driver, vf_device, vf_driver = ids
        for d in (driver, vf_driver, "vfio-pci"):
            if d not in self.children("bus/pci/drivers"):
                self.add_driver(d)
        self._add_device(pci, vendor, device, driver)
        switch_id = f"{abs(hash(pci)) & 0xFFFFFFFFFFFF:012x}" if switchdev else ""
        self._add_netdev(pci, ifname, "p0" if switchdev else "", switch_id)
        dev = self._dev(pci)
        self.file(f"{dev}/sriov_totalvfs", f"{totalvfs}\n")
        self.file(f"{dev}/sriov_numvfs", "0\n", on_write=lambda d, p=pci: self._numvfs(p, d))
        self.file(f"{dev}/sriov_drivers_autoprobe", "1\n",
                  on_write=lambda d, p=pci: self._autoprobe(p, d))
        bus, slot = int(pci[5:7], 16), int(pci[8:10], 16)
        self.pfs[pci] = {"ifname": ifname, "vendor": vendor, "vf_device": vf_device,
                         "vf_driver": vf_driver, "totalvfs": totalvfs, "numvfs": 0,
                         "switch_id": switch_id, "in_use": False, "resources": totalvfs,
                         "rep_name": rep_name or (lambda i, n=ifname: f"{n}_{i}"),
                         "vf_base": (bus, slot + 2)}

    def vf_pci(self, pf_pci: str, index: int) -> str:
        bus, slot = self.pfs[pf_pci]["vf_base"]
        return f"{pf_pci[:4]}:{bus:02x}:{slot + index // 8:02x}.{index % 8}"

    # -- kernel behaviour on writes ---------------------------------------------------

    @staticmethod
    def _int(data: bytes) -> int:
        text = data.decode(errors="replace").strip()
        if not text.isdigit():
            raise OSError(errno.EINVAL, "not a number")
        return int(text)

    def _numvfs(self, pf_pci: str, data: bytes) -> None:
        pf = self.pfs[pf_pci]
        n = self._int(data)
        if n == pf["numvfs"]:
            return
        if n > pf["totalvfs"]:
            raise OSError(errno.ERANGE, "above totalvfs")
        if "driver" not in self.children(self._dev(pf_pci)):
            raise OSError(errno.ENOENT, "no driver")
        if n and pf["numvfs"]:
            raise OSError(errno.EBUSY, "VFs already enabled")
        if n == 0 and pf["in_use"]:
            raise OSError(errno.EBUSY, "the PF driver will not free VFs in use")
        if n > pf["resources"]:
            raise OSError(errno.ENOMEM, "not enough bus resources for that many VFs")
        if n == 0:
            self.remove_vfs(pf_pci)
        else:
            self.create_vfs(pf_pci, n)

    def create_vfs(self, pf_pci: str, n: int) -> None:
        pf = self.pfs[pf_pci]
        auto = self.read(f"{self._dev(pf_pci)}/sriov_drivers_autoprobe").strip() == "1"
        for i in range(n):
            vf = self.vf_pci(pf_pci, i)
            self._add_device(vf, pf["vendor"], pf["vf_device"],
                             pf["vf_driver"] if auto else None)
            if auto:
                self._add_netdev(vf, f"{pf['ifname']}v{i}")
            self.link(f"{self._dev(pf_pci)}/virtfn{i}", self._dev(vf))
            self.link(f"{self._dev(vf)}/physfn", self._dev(pf_pci))
            if pf["switch_id"]:
                self._add_netdev(pf_pci, pf["rep_name"](i), f"pf0vf{i}", pf["switch_id"])
        pf["numvfs"] = n
        self.nodes[f"{self._dev(pf_pci)}/sriov_numvfs"].data = f"{n}\n".encode()
        if self.on_numvfs:
            self.on_numvfs(pf_pci, n)

    def remove_vfs(self, pf_pci: str) -> None:
        """What disabling SR-IOV (or a PF reset) does: every VF device goes."""
        pf = self.pfs[pf_pci]
        for i in range(pf["numvfs"]):
            vf = self.vf_pci(pf_pci, i)
            self._del_netdevs(vf)
            for p in [p for p in self.nodes if p.startswith("bus/pci/drivers/")
                      and p.endswith("/" + vf)]:
                del self.nodes[p]
            group = os.path.basename(self.nodes[f"{self._dev(vf)}/iommu_group"].target)
            self.remove(f"kernel/iommu_groups/{group}")
            self.remove(self._dev(vf))
            self.remove(f"bus/pci/devices/{vf}")
            self.remove(f"{self._dev(pf_pci)}/virtfn{i}")
            if pf["switch_id"]:
                self._del_netdevs(pf_pci, pf["rep_name"](i))
        pf["numvfs"] = 0
        self.nodes[f"{self._dev(pf_pci)}/sriov_numvfs"].data = b"0\n"
        if self.on_numvfs:
            self.on_numvfs(pf_pci, 0)

    def _autoprobe(self, pf_pci: str, data: bytes) -> None:
        n = self._int(data)
        if n > 1:
            raise OSError(errno.EINVAL, "0 or 1")
        self.nodes[f"{self._dev(pf_pci)}/sriov_drivers_autoprobe"].data = f"{n}\n".encode()

    def _override(self, pci: str, data: bytes) -> None:
        text = data.decode().strip()
        self.nodes[f"{self._dev(pci)}/driver_override"].data = (text or "(null)").encode() + b"\n"

    def _bound(self, pci: str) -> str | None:
        node = self.nodes.get(f"{self._dev(pci)}/driver")
        return os.path.basename(node.target) if node else None

    def _unbind(self, driver: str, data: bytes) -> None:
        pci = data.decode().strip()
        if self._bound(pci) != driver:
            raise OSError(errno.ENODEV, "not bound to this driver")
        self._del_netdevs(pci)
        del self.nodes[f"{self._dev(pci)}/driver"]
        del self.nodes[f"bus/pci/drivers/{driver}/{pci}"]

    def _bind(self, driver: str, data: bytes) -> None:
        pci = data.decode().strip()
        dev = self._dev(pci)
        if dev not in self.nodes:
            raise OSError(errno.ENODEV, "no such device")
        # bind_store: a device that has a driver, or that the driver does not match,
        # is ENODEV; vfio-pci has no id table, so only driver_override matches it
        override = self.read(f"{dev}/driver_override").strip()
        if override not in ("(null)", driver):
            raise OSError(errno.ENODEV, "driver_override names another driver")
        if override == "(null)" and driver == "vfio-pci":
            raise OSError(errno.ENODEV, "vfio-pci matches no id without driver_override")
        if self._bound(pci) is not None:
            raise OSError(errno.ENODEV, "already bound")
        self._attach(pci, driver)
        physfn = self.nodes.get(f"{dev}/physfn")
        if physfn is not None and driver != "vfio-pci":
            pf_pci = os.path.basename(physfn.target)
            index = next(i for i in range(self.pfs[pf_pci]["numvfs"])
                         if self.vf_pci(pf_pci, i) == pci)
            self._add_netdev(pci, f"{self.pfs[pf_pci]['ifname']}v{index}")

    # -- FUSE ---------------------------------------------------------------------------

    def mount(self) -> str:
        self.mountpoint = tempfile.mkdtemp(prefix="fakesys-")
        ops = _Ops(self)
        ready = threading.Event()

        def run() -> None:
            ready.set()
            fuse.FUSE(ops, self.mountpoint, foreground=True, nothreads=True,
                      attr_timeout=0, entry_timeout=0, negative_timeout=0)

        self._thread = threading.Thread(target=run, daemon=True, name="fakesysfs")
        self._thread.start()
        ready.wait()
        deadline = time.monotonic() + 10
        while not os.path.ismount(self.mountpoint):
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("FUSE mount of the fake sysfs did not come up")
            time.sleep(0.02)
        return self.mountpoint

    def unmount(self) -> None:
        if self.mountpoint is None:
            return
        if subprocess.run(["fusermount3", "-u", self.mountpoint],
                          capture_output=True).returncode != 0:
            subprocess.run(["fusermount3", "-u", "-z", self.mountpoint], capture_output=True)
        if self._thread is not None:
            self._thread.join(5)
        try:
            os.rmdir(self.mountpoint)
        except OSError:
            pass
        self.mountpoint = None


_Base = fuse.Operations if fuse is not None else object


class _Ops(_Base):
    use_ns = True

    def __init__(self, fs: FakeSysfs) -> None:
        self.fs = fs

    def _node(self, path: str) -> Node:
        node = self.fs.nodes.get(path.strip("/"))
        if node is None:
            raise fuse.FuseOSError(errno.ENOENT)
        return node

    def getattr(self, path, fh=None):
        with self.fs.lock:
            node = self._node(path)
            if node.kind == "dir":
                return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2}
            if node.kind == "link":
                return {"st_mode": stat.S_IFLNK | 0o777, "st_nlink": 1,
                        "st_size": len(node.target)}
            mode = 0o644 if node.on_write else 0o444
            # sysfs reports 4096 for every attribute; a short read is the end
            return {"st_mode": stat.S_IFREG | mode, "st_nlink": 1, "st_size": 4096}

    def readdir(self, path, fh):
        with self.fs.lock:
            self._node(path)
            return [".", "..", *self.fs.children(path.strip("/"))]

    def readlink(self, path):
        with self.fs.lock:
            node = self._node(path)
            if node.kind != "link":
                raise fuse.FuseOSError(errno.EINVAL)
            return node.target

    def open(self, path, flags):
        with self.fs.lock:
            node = self._node(path)
            if flags & (os.O_WRONLY | os.O_RDWR):
                if node.denied or node.on_write is None:
                    raise fuse.FuseOSError(errno.EACCES)
            return 0

    def read(self, path, size, offset, fh):
        with self.fs.lock:
            node = self._node(path)
            if node.read_errno:
                raise fuse.FuseOSError(node.read_errno)
            return node.data[offset:offset + size]

    def write(self, path, data, offset, fh):
        with self.fs.lock:
            node = self._node(path)
            self.fs.writes.append((path.strip("/"), bytes(data).decode(errors="replace")))
            try:
                node.on_write(bytes(data))
            except OSError as e:
                raise fuse.FuseOSError(e.errno) from None
            return len(data)

    def truncate(self, path, length, fh=None):
        return 0

    def create(self, path, mode, fi=None):
        raise fuse.FuseOSError(errno.EACCES)
