"""The host's own counters for the Host sFlow structures, read from /proc
and /sys (Linux).  Every reader returns a value even when a file is missing
(containers hide some): fields it cannot read are 0, or the sFlow
"unknown" value where the structure has one.

Which network devices are the host's adapters: those backed by a device
(/sys/class/net/X/device: NICs, virtio), as hsflowd reports them; the
switch's veth/TAP ports are VM or container interfaces, not the host's.
Host network I/O sums those adapters, so traffic is not counted twice.
"""

from __future__ import annotations

import os
import platform
import socket
import uuid as _uuid
from dataclasses import dataclass
from pathlib import Path

SYS_NET = Path("/sys/class/net")
MACHINE_TYPES = {"x86_64": 3, "amd64": 3, "i386": 2, "i486": 2, "i586": 2, "i686": 2,
                 "ia64": 4, "sparc": 5, "sparc64": 5, "alpha": 6, "ppc": 7, "ppc64": 7,
                 "ppc64le": 7, "m68k": 8, "mips": 9, "mips64": 9, "aarch64": 10,
                 "armv7l": 10, "armv6l": 10, "parisc": 11, "s390": 12, "s390x": 12}
OS_LINUX = 2
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_SECTOR = 512


def _read(path: str | Path) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _int(text: str, default: int = 0) -> int:
    try:
        return int(text.strip())
    except ValueError:
        return default


@dataclass
class HostDescr:
    hostname: str
    uuid: bytes                       # 16 bytes
    machine_type: int
    os_name: int
    os_release: str


def host_uuid() -> bytes:
    """SMBIOS product UUID when readable, else the systemd machine id (both
    stable across restarts), else zeros."""
    for path in ("/sys/class/dmi/id/product_uuid", "/etc/machine-id",
                 "/var/lib/dbus/machine-id"):
        text = _read(path).strip()
        try:
            return _uuid.UUID(text).bytes
        except ValueError:
            continue
    return bytes(16)


def describe() -> HostDescr:
    return HostDescr(hostname=socket.gethostname(), uuid=host_uuid(),
                     machine_type=MACHINE_TYPES.get(platform.machine().lower(), 1),
                     os_name=OS_LINUX, os_release=platform.release())


def _mac(text: str) -> bytes | None:
    try:
        mac = bytes.fromhex(text.strip().replace(":", ""))
    except ValueError:
        return None
    return mac if len(mac) == 6 and any(mac) else None


def adapters() -> list[tuple[int, str, bytes]]:
    """(ifindex, name, MAC) of the host's device-backed network adapters."""
    out = []
    try:
        names = sorted(os.listdir(SYS_NET))
    except OSError:
        return out
    for name in names:
        d = SYS_NET / name
        if not (d / "device").exists():
            continue
        mac = _mac(_read(d / "address"))
        if mac is None:
            continue
        out.append((_int(_read(d / "ifindex")), name, mac))
    return out


@dataclass
class CpuCounters:
    load_one: float = 0.0
    load_five: float = 0.0
    load_fifteen: float = 0.0
    proc_run: int = 0
    proc_total: int = 0
    cpu_num: int = 0
    cpu_speed_mhz: int = 0
    uptime_s: int = 0
    user_ms: int = 0
    nice_ms: int = 0
    system_ms: int = 0
    idle_ms: int = 0
    wio_ms: int = 0
    intr_ms: int = 0
    sintr_ms: int = 0
    interrupts: int = 0
    contexts: int = 0
    steal_ms: int = 0
    guest_ms: int = 0
    guest_nice_ms: int = 0


def cpu() -> CpuCounters:
    c = CpuCounters(cpu_num=os.cpu_count() or 0)
    load = _read("/proc/loadavg").split()
    if len(load) >= 4:
        c.load_one, c.load_five, c.load_fifteen = (float(v) for v in load[:3])
        run, _, total = load[3].partition("/")
        c.proc_run, c.proc_total = _int(run), _int(total)
    for line in _read("/proc/stat").splitlines():
        f = line.split()
        if not f:
            continue
        if f[0] == "cpu":
            ms = [_int(v) * 1000 // _CLK_TCK for v in f[1:11]] + [0] * 10
            (c.user_ms, c.nice_ms, c.system_ms, c.idle_ms, c.wio_ms, c.intr_ms, c.sintr_ms,
             c.steal_ms, c.guest_ms, c.guest_nice_ms) = ms[:10]
        elif f[0] == "intr" and len(f) > 1:
            c.interrupts = _int(f[1])
        elif f[0] == "ctxt" and len(f) > 1:
            c.contexts = _int(f[1])
    up = _read("/proc/uptime").split()
    if up:
        c.uptime_s = int(float(up[0]))
    mhz = _int(_read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")) // 1000
    if not mhz:
        for line in _read("/proc/cpuinfo").splitlines():
            if line.startswith("cpu MHz"):
                mhz = int(float(line.split(":")[1]))
                break
    c.cpu_speed_mhz = mhz
    return c


@dataclass
class MemoryCounters:
    total: int = 0
    free: int = 0
    shared: int = 0
    buffers: int = 0
    cached: int = 0
    swap_total: int = 0
    swap_free: int = 0
    page_in: int = 0
    page_out: int = 0
    swap_in: int = 0
    swap_out: int = 0


def memory() -> MemoryCounters:
    kb = {}
    for line in _read("/proc/meminfo").splitlines():
        key, _, rest = line.partition(":")
        kb[key] = _int(rest.split()[0]) * 1024 if rest.split() else 0
    vm = {}
    for line in _read("/proc/vmstat").splitlines():
        key, _, val = line.partition(" ")
        vm[key] = _int(val)
    return MemoryCounters(total=kb.get("MemTotal", 0), free=kb.get("MemFree", 0),
                          shared=kb.get("Shmem", 0), buffers=kb.get("Buffers", 0),
                          cached=kb.get("Cached", 0), swap_total=kb.get("SwapTotal", 0),
                          swap_free=kb.get("SwapFree", 0), page_in=vm.get("pgpgin", 0),
                          page_out=vm.get("pgpgout", 0), swap_in=vm.get("pswpin", 0),
                          swap_out=vm.get("pswpout", 0))


@dataclass
class DiskCounters:
    total: int = 0                    # bytes, mounted block-device file systems
    free: int = 0
    part_max_used: int = 0            # fullest partition, hundredths of a percent
    reads: int = 0
    bytes_read: int = 0
    read_time_ms: int = 0
    writes: int = 0
    bytes_written: int = 0
    write_time_ms: int = 0


def _whole_disks() -> set[str]:
    try:
        return {d for d in os.listdir("/sys/block")
                if not d.startswith(("loop", "ram", "zram", "dm-", "sr"))}
    except OSError:
        return set()


def disk() -> DiskCounters:
    d = DiskCounters()
    seen = set()
    for line in _read("/proc/mounts").splitlines():
        f = line.split()
        if len(f) < 2 or not f[0].startswith("/dev/") or f[0] in seen:
            continue
        seen.add(f[0])
        try:
            st = os.statvfs(f[1].replace("\\040", " "))
        except OSError:
            continue
        total, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
        d.total += total
        d.free += free
        if total:
            d.part_max_used = max(d.part_max_used, (total - free) * 10000 // total)
    disks = _whole_disks()
    for line in _read("/proc/diskstats").splitlines():
        f = line.split()
        if len(f) < 14 or f[2] not in disks:
            continue
        d.reads += _int(f[3])
        d.bytes_read += _int(f[5]) * _SECTOR
        d.read_time_ms += _int(f[6])
        d.writes += _int(f[7])
        d.bytes_written += _int(f[9]) * _SECTOR
        d.write_time_ms += _int(f[10])
    return d


@dataclass
class NetCounters:
    bytes_in: int = 0
    pkts_in: int = 0
    errs_in: int = 0
    drops_in: int = 0
    bytes_out: int = 0
    pkts_out: int = 0
    errs_out: int = 0
    drops_out: int = 0


def net(names: set[str] | None = None) -> NetCounters:
    """Sum of /proc/net/dev over the adapters (default: the host's)."""
    if names is None:
        names = {name for _, name, _ in adapters()}
    n = NetCounters()
    for line in _read("/proc/net/dev").splitlines()[2:]:
        name, _, rest = line.partition(":")
        f = rest.split()
        if name.strip() not in names or len(f) < 16:
            continue
        v = [_int(x) for x in f]
        n.bytes_in += v[0]
        n.pkts_in += v[1]
        n.errs_in += v[2]
        n.drops_in += v[3]
        n.bytes_out += v[8]
        n.pkts_out += v[9]
        n.errs_out += v[10]
        n.drops_out += v[11]
    return n


def if_speed_duplex(name: str) -> tuple[int, int]:
    """(bits per second, sFlow ifDirection) of a device; 0 when unknown."""
    speed = _int(_read(SYS_NET / name / "speed"), 0)
    duplex = _read(SYS_NET / name / "duplex").strip()
    return (max(speed, 0) * 1_000_000, {"full": 1, "half": 2}.get(duplex, 0))
