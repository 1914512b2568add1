"""Who holds a VFIO group open.  Unbinding a device from vfio-pci while a process (a
VM's QEMU) has its group open blocks in the kernel until the process lets go: vswitchd
would hang with it.  So before moving a VF away from vfio-pci, look for holders in
/proc/*/fd and refuse with their pids instead."""

from __future__ import annotations

import os

DEFAULT_DEV_DIR = "/dev/vfio"


def holders(group: int, dev_dir: str = DEFAULT_DEV_DIR, proc: str = "/proc") -> list[int]:
    """Pids with `dev_dir/group` open (processes that vanish meanwhile are skipped)."""
    target = os.path.join(dev_dir, str(group))
    pids = []
    try:
        entries = os.listdir(proc)
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        fd_dir = os.path.join(proc, entry, "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:                 # gone, or not ours to look at
            continue
        for fd in fds:
            try:
                if os.readlink(os.path.join(fd_dir, fd)) == target:
                    pids.append(int(entry))
                    break
            except OSError:
                continue
    return sorted(pids)
