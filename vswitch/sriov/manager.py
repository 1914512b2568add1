"""What vswitchd does with SR-IOV: list PFs and VFs, set numvfs, configure a VF, assign
VFs to VMs from pools and release them, and reconcile records with the hardware.

An assignment is written (state `applying`, with the VF's original settings read back
first) before any hardware change, then the VF is configured and, if asked, moved to
vfio-pci and its representor added to a bridge; then it becomes `active`.  A failure on
the way undoes what was done and removes the record, so a refused assign leaves nothing
behind.  Release restores only what the assignment changed: the settings saved before
the first change, and the driver the VF had.

Reconcile (on start, and when a PF's link changes: a PF reset removes its VFs and
their settings) marks assignments whose VF is gone as `lost` and re-applies the desired
settings to VFs that are back or that drifted.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Callable
from typing import Any

from vswitch.config import ConfigStore
from vswitch.sriov import netlink, pools, sysfs, vfio
from vswitch.sriov.netlink import Rtnl, VfNetlinkError, VfState
from vswitch.sriov.store import Assignment, SriovStore, StoreError
from vswitch.sriov.sysfs import PF, VF, SriovError

log = logging.getLogger("vswitchd.sriov")

_VF_SPEC = re.compile(r"([A-Za-z0-9_.-]{1,15})#(\d{1,5})")
_VM_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")

AddPort = Callable[[str, str, dict], None]        # (bridge, port, external_ids)
DelPort = Callable[[str], None]


def check_vm_id(vm_id: object) -> str:
    if not isinstance(vm_id, str) or not _VM_ID.fullmatch(vm_id):
        raise SriovError(f"invalid VM id {vm_id!r}: 1-128 characters from A-Z a-z 0-9 _ . : -")
    return vm_id


class SriovManager:
    def __init__(self, config: ConfigStore, root: str = sysfs.DEFAULT_ROOT,
                 rtnl: Rtnl | None = None,
                 ifindex_of: Callable[[str], int] = socket.if_nametoindex,
                 add_port: AddPort | None = None, del_port: DelPort | None = None,
                 vfio_dir: str = vfio.DEFAULT_DEV_DIR) -> None:
        self.root = root
        self.vfio_dir = vfio_dir
        self.store = SriovStore(config)
        self.config = config
        self.rtnl = rtnl or Rtnl()
        self._ifindex_of = ifindex_of
        self._add_port = add_port
        self._del_port = del_port
        self.counters = {"assigned": 0, "released": 0, "assign_failed": 0,
                         "reconciled": 0, "reapplied": 0, "lost": 0}

    # -- lookups ---------------------------------------------------------------------------

    def _ifindex(self, pf: PF) -> int:
        if pf.netdev is None:
            raise SriovError(f"PF {pf.pci} has no network device (driver not bound?)")
        try:
            return self._ifindex_of(pf.netdev)
        except OSError:
            raise SriovError(f"PF {pf.netdev}: no such network device in this "
                             "namespace") from None

    def _link(self, pf: PF) -> netlink.LinkVfs:
        try:
            return netlink.get_vfs(self.rtnl, self._ifindex(pf))
        except VfNetlinkError as e:
            raise SriovError(f"PF {pf.netdev}: reading VF settings: {e}") from None

    def vf_state(self, pf: PF, index: int) -> VfState:
        link = self._link(pf)
        state = link.vfs.get(index)
        if state is None:
            if link.truncated:
                raise SriovError(f"PF {pf.netdev}: VF {index} is beyond the {len(link.vfs)} "
                                 f"VFs the kernel listed (IFLA_NUM_VF={link.num_vf})")
            raise SriovError(f"PF {pf.netdev}: the kernel reports no VF {index} through "
                             "netlink (is this an SR-IOV capable driver?)")
        return state

    def find_vf(self, spec: str) -> tuple[PF, VF]:
        """A VF by PCI address or PF#INDEX."""
        if not isinstance(spec, str):
            raise SriovError(f"invalid VF {spec!r} (PCI address or PF#INDEX)")
        m = _VF_SPEC.fullmatch(spec)
        if m:
            pf = sysfs.find_pf(self.root, m.group(1))
            for vf in pf.vfs:
                if vf.index == int(m.group(2)):
                    return pf, vf
            raise SriovError(f"PF {m.group(1)} has no VF {m.group(2)} "
                             f"(numvfs is {pf.numvfs})")
        sysfs.check_pci(spec)
        physfn = sysfs.physfn(self.root, spec)
        if physfn is None:
            raise SriovError(f"{spec} is not a VF (no physfn link)")
        pf = sysfs.read_pf(self.root, physfn)
        for vf in pf.vfs:
            if vf.pci == spec:
                return pf, vf
        raise SriovError(f"VF {spec} is not listed by its PF {physfn}")

    # -- read ------------------------------------------------------------------------------

    def list(self) -> list[dict]:
        assigned = {a.vf_pci: a for a in self.store.list()}
        out = []
        for pf in sysfs.list_pfs(self.root):
            d = pf.to_json()
            states: dict[int, VfState] = {}
            d["config_error"] = None
            if pf.vfs:
                try:
                    link = self._link(pf)
                    states = link.vfs
                    d["num_vf_netlink"] = link.num_vf
                except SriovError as e:
                    d["config_error"] = str(e)
            for vf in d["vfs"]:
                st = states.get(vf["index"])
                vf["config"] = st.config() if st else None
                a = assigned.get(vf["pci"])
                vf["assignment"] = None if a is None else {
                    "vm_id": a.vm_id, "pool": a.pool, "state": a.state}
            out.append(d)
        return out

    def assignments(self, vm_id: str | None = None) -> list[dict]:
        return [a.to_json() for a in self.store.list(vm_id)]

    # -- numvfs and direct config ------------------------------------------------------

    def set_numvfs(self, pf_name: str, count: int, autoprobe: bool | None = None) -> dict:
        pf = sysfs.find_pf(self.root, pf_name)
        held = [a for a in self.store.list() if a.pf_pci == pf.pci]
        if held and count != pf.numvfs:
            raise SriovError(f"PF {pf.netdev or pf.pci} has assigned VFs "
                             f"({', '.join(f'{a.vf_pci} to {a.vm_id}' for a in held)}): "
                             "release them before changing numvfs")
        return sysfs.set_numvfs(self.root, pf, count, autoprobe).to_json()

    def _originals(self, pf: PF, vf: VF, desired: dict, original: dict) -> dict:
        if not desired.keys() - original.keys():
            return dict(original)
        now = self.vf_state(pf, vf.index).config()
        out = dict(original)
        for key in desired:
            out.setdefault(key, now[key])
        return out

    def configure(self, vf_spec: str, settings: dict) -> dict:
        """Set VF settings now.  On an assigned VF they join its desired config (and are
        restored on release like the rest)."""
        settings = self._valid(settings)
        pf, vf = self.find_vf(vf_spec)
        a = self.store.find(vf.pci)
        if a is not None:
            # originals saved before the change, so that release can undo even a
            # half-applied one; desired only grows once the kernel took it all
            self.store.update(vf.pci, original=self._originals(pf, vf, settings, a.original))
        self._set(pf, vf, settings)
        if a is not None:
            self.store.update(vf.pci, desired={**a.desired, **settings})
        return self.vf_state(pf, vf.index).config()

    def _set(self, pf: PF, vf: VF, settings: dict) -> None:
        if not settings:
            return
        cur = self.vf_state(pf, vf.index)
        try:
            netlink.set_vf(self.rtnl, self._ifindex(pf), vf.index, settings, cur)
        except VfNetlinkError as e:
            raise SriovError(f"PF {pf.netdev}: {e}") from None

    @staticmethod
    def _valid(settings: Any) -> dict:
        try:
            return netlink.validate_config(settings or {})
        except VfNetlinkError as e:
            raise SriovError(str(e)) from None

    # -- pools -----------------------------------------------------------------------------

    def pool_add(self, name: str, selectors: dict) -> None:
        self.store.set_pool(pools.check_pool_name(name), pools.validate_selectors(selectors))

    def pool_del(self, name: str) -> None:
        held = [a.vf_pci for a in self.store.list() if a.pool == name]
        if held:
            raise SriovError(f"pool {name} has assigned VFs ({', '.join(held)}): "
                             "release them first")
        try:
            self.store.del_pool(name)
        except StoreError as e:
            raise SriovError(str(e)) from None

    def _members(self, sel: dict, pfs: list[PF],
                 assigned: dict[str, Assignment]) -> list[tuple[PF, VF]]:
        out = []
        for pf in pfs:
            for vf in pf.vfs:
                a = assigned.get(vf.pci)
                driver = a.original_driver if a is not None and a.original_driver else None
                if pools.matches(sel, pf, vf, driver):
                    out.append((pf, vf))
        return out

    def pools(self) -> list[dict]:
        assigned = {a.vf_pci: a for a in self.store.list()}
        pfs = sysfs.list_pfs(self.root)
        out = []
        for name, sel in self.store.pools().items():
            members = self._members(sel, pfs, assigned)
            out.append({"name": name, "selectors": sel, "total": len(members),
                        "free": sum(1 for _, vf in members if vf.pci not in assigned),
                        "vfs": [{"pci": vf.pci, "pf": pf.netdev, "index": vf.index,
                                 "vm_id": assigned[vf.pci].vm_id if vf.pci in assigned
                                 else None} for pf, vf in members]})
        return out

    # -- assign / release ------------------------------------------------------------------

    def assign(self, vm_id: str, pool: str | None = None, vf: str | None = None,
               config: dict | None = None, vfio: bool = False,
               bridge: str | None = None) -> dict:
        check_vm_id(vm_id)
        desired = self._valid(config)
        if (pool is None) == (vf is None):
            raise SriovError("assign needs exactly one of a pool or a VF")
        if pool is not None:
            pools.check_pool_name(pool)
        if bridge is not None and self._add_port is None:
            raise SriovError("representor ports need the daemon's bridges")
        with self.config.transaction():
            assigned = {a.vf_pci: a for a in self.store.list()}
            if vf is not None:
                the_pf, the_vf = self.find_vf(vf)
                if the_vf.pci in assigned:
                    raise SriovError(f"VF {the_vf.pci} is already assigned to VM "
                                     f"{assigned[the_vf.pci].vm_id}")
            else:
                sel = self.store.pools().get(pool)
                if sel is None:
                    raise SriovError(f"no pool named {pool}")
                free = [(p, v) for p, v in self._members(sel, sysfs.list_pfs(self.root),
                                                         assigned) if v.pci not in assigned]
                if not free:
                    raise SriovError(f"pool {pool} has no free VF")
                the_pf, the_vf = free[0]
            if bridge is not None and the_vf.representor is None:
                raise SriovError(f"VF {the_vf.pci} has no representor netdev (is PF "
                                 f"{the_pf.netdev} in switchdev mode?)")
            original = self._originals(the_pf, the_vf, desired, {})
            rec = Assignment(the_vf.pci, the_pf.pci, the_pf.netdev, the_vf.index, vm_id, pool,
                             desired, original,
                             the_vf.driver if vfio else None,
                             sysfs.VFIO_DRIVER if vfio else None)
            self.store.add(rec)
        # The record is committed (state applying) before the hardware is touched: a
        # crash from here on is finished or undone by reconcile, never forgotten.
        try:
            self._set(the_pf, the_vf, desired)
            if vfio:
                sysfs.bind_driver(self.root, the_vf, sysfs.VFIO_DRIVER, self.vfio_dir)
            if bridge is not None:
                self._add_port(bridge, the_vf.representor,
                               {"vm-id": vm_id, "sriov-vf": the_vf.pci})
                self.store.update(the_vf.pci, bridge=bridge, port=the_vf.representor)
        except Exception as e:                # whatever failed (the bridge too): undo all
            self.counters["assign_failed"] += 1
            undo = self._undo(the_pf, the_vf, self.store.get(the_vf.pci))
            self.store.delete(the_vf.pci)
            raise SriovError(f"assign {the_vf.pci} to {vm_id}: {e}"
                             + (f"; undoing: {undo}" if undo else "")) from None
        self.counters["assigned"] += 1
        return self.store.update(the_vf.pci, state="active", error=None).to_json()

    def _undo(self, pf: PF, vf: VF, a: Assignment) -> str:
        """Put back what assignment `a` changed; returns what could not be, or ''."""
        problems = []
        if a.port is not None and self._del_port is not None:
            try:
                self._del_port(a.port)
            except Exception as e:            # the daemon's error types: report, go on
                problems.append(f"port {a.port}: {e}")
        if a.original_driver is not None or a.driver is not None:
            try:
                now = sysfs.read_vf(self.root, vf.index, vf.pci)
                sysfs.bind_driver(self.root, now, a.original_driver, self.vfio_dir)
            except SriovError as e:
                problems.append(str(e))
        if a.original:
            try:
                # only what differs now: a setting the kernel refused to change is
                # still at its original value and is not sent again
                now = self.vf_state(pf, vf.index).config()
                self._set(pf, vf, {k: v for k, v in a.original.items() if now.get(k) != v})
            except SriovError as e:
                problems.append(str(e))
        return "; ".join(problems)

    def release(self, vm_id: str | None = None, vf: str | None = None) -> list[dict]:
        if (vm_id is None) == (vf is None):
            raise SriovError("release needs exactly one of a VM id or a VF")
        if vf is not None:
            pci = vf if sysfs.is_pci(vf) else self.find_vf(vf)[1].pci
            recs = [self.store.find(pci)]
            if recs[0] is None:
                raise SriovError(f"VF {pci} is not assigned")
        else:
            recs = self.store.list(check_vm_id(vm_id))
            if not recs:
                raise SriovError(f"VM {vm_id} has no VF assigned")
        out = []
        for a in recs:
            try:
                pf, the_vf = self.find_vf(a.vf_pci)
            except SriovError:          # gone with a PF reset: nothing left to restore
                pf = the_vf = None
            if pf is not None:
                problems = self._undo(pf, the_vf, a)
                if problems:
                    self.store.update(a.vf_pci, error=f"release: {problems}")
                    raise SriovError(f"release {a.vf_pci}: {problems} (the assignment is "
                                     "kept; fix and release again)")
            elif a.port is not None and self._del_port is not None:
                self._del_port(a.port)
            self.store.delete(a.vf_pci)
            self.counters["released"] += 1
            out.append({**a.to_json(), "restored": pf is not None})
        return out

    # -- reconcile -------------------------------------------------------------------------

    def reconcile(self, pf_name: str | None = None) -> list[dict]:
        """Bring assignments and hardware in line; never raises for one VF's trouble,
        records it in that assignment's `error` and goes on."""
        report = []
        for a in self.store.list():
            if pf_name is not None and pf_name not in (a.pf_name, a.pf_pci):
                continue
            self.counters["reconciled"] += 1
            try:
                pf, vf = self.find_vf(a.vf_pci)
            except SriovError as e:
                if a.state != "lost":
                    self.counters["lost"] += 1
                    log.warning("VF %s of VM %s is gone: %s", a.vf_pci, a.vm_id, e)
                self.store.update(a.vf_pci, state="lost", error=f"VF gone: {e}")
                report.append({"vf_pci": a.vf_pci, "vm_id": a.vm_id, "action": "lost"})
                continue
            try:
                action = self._reapply(pf, vf, a)
                self.store.update(a.vf_pci, state="active", error=None, pf_name=pf.netdev)
            except (SriovError, VfNetlinkError) as e:
                action = "error"
                self.store.update(a.vf_pci, error=str(e))
                log.warning("reconcile VF %s of VM %s: %s", a.vf_pci, a.vm_id, e)
            report.append({"vf_pci": a.vf_pci, "vm_id": a.vm_id, "action": action})
        return report

    def _reapply(self, pf: PF, vf: VF, a: Assignment) -> str:
        changed = []
        if a.desired:
            now = self.vf_state(pf, vf.index).config()
            drift = {k: v for k, v in a.desired.items() if now.get(k) != v}
            if drift:
                self._set(pf, vf, a.desired)
                changed.append("config")
        if a.driver is not None and vf.driver != a.driver:
            sysfs.bind_driver(self.root, vf, a.driver, self.vfio_dir)
            changed.append("driver")
        if changed:
            self.counters["reapplied"] += 1
        return "reapplied " + "+".join(changed) if changed else "in line"
