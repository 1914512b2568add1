"""SR-IOV pools and VF assignments, kept in the daemon's configuration database.

The tables are part of the configuration schema (`vswitch.config.MIGRATIONS`, version 4)
and are used through the same file and transactions (`ConfigStore.connection()`).  An
assignment is keyed by the VF's PCI address, the one name that
survives a reboot (IOMMU group numbers and netdev names do not): the primary key is
what makes a double allocation impossible, across restarts and crashes too.

An assignment's `state`:
    applying   written before the hardware is touched; a crash leaves it so, and the
               next reconcile finishes the job
    active     the VF has its desired config (as of the last reconcile)
    lost       the VF is gone (PF reset, numvfs lowered): kept, reported, re-applied
               when the VF comes back
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass, field

from vswitch.config import ConfigError, ConfigStore

STATES = ("applying", "active", "lost")


class StoreError(ConfigError):
    """A refused pool or assignment change (a ConfigError: the daemon reports it)."""


@dataclass
class Assignment:
    vf_pci: str
    pf_pci: str
    pf_name: str | None
    vf_index: int
    vm_id: str
    pool: str | None = None
    desired: dict = field(default_factory=dict)       # VF settings asked for
    original: dict = field(default_factory=dict)      # their values before the first change
    original_driver: str | None = None                # set when the driver was changed
    driver: str | None = None                         # the driver asked for (vfio-pci)
    bridge: str | None = None                         # representor port added to this bridge
    port: str | None = None
    state: str = "applying"
    error: str | None = None

    def to_json(self) -> dict:
        return asdict(self)


def _assignment(row: sqlite3.Row) -> Assignment:
    d = dict(row)
    d["desired"] = json.loads(d["desired"])
    d["original"] = json.loads(d["original"])
    return Assignment(**d)


class SriovStore:
    """Its tables come with the configuration schema (config.MIGRATIONS, version 4)."""

    def __init__(self, config: ConfigStore) -> None:
        self.config = config

    # -- pools ---------------------------------------------------------------------------

    def set_pool(self, name: str, selectors: dict) -> None:
        with self.config.connection() as db:
            db.execute("INSERT INTO sriov_pools VALUES (?, ?) ON CONFLICT (name) DO UPDATE "
                       "SET selectors = excluded.selectors",
                       (name, json.dumps(selectors, sort_keys=True)))

    def del_pool(self, name: str) -> None:
        with self.config.connection() as db:
            if db.execute("DELETE FROM sriov_pools WHERE name = ?", (name,)).rowcount == 0:
                raise StoreError(f"no pool named {name}")

    def pools(self) -> dict[str, dict]:
        with self.config.connection(write=False) as db:
            return {r["name"]: json.loads(r["selectors"])
                    for r in db.execute("SELECT * FROM sriov_pools ORDER BY name")}

    # -- assignments -----------------------------------------------------------------------

    def add(self, a: Assignment) -> None:
        with self.config.connection() as db:
            row = db.execute("SELECT vm_id FROM sriov_assignments WHERE vf_pci = ?",
                             (a.vf_pci,)).fetchone()
            if row is not None:
                raise StoreError(f"VF {a.vf_pci} is already assigned to VM {row[0]}")
            d = a.to_json()
            d["desired"] = json.dumps(d["desired"], sort_keys=True)
            d["original"] = json.dumps(d["original"], sort_keys=True)
            cols = ", ".join(d)
            db.execute(f"INSERT INTO sriov_assignments ({cols}) VALUES "
                       f"({', '.join('?' * len(d))})", tuple(d.values()))

    def update(self, vf_pci: str, **changes) -> Assignment:
        allowed = {"desired", "original", "original_driver", "driver", "bridge", "port",
                   "state", "error", "pf_name"}
        if not changes.keys() <= allowed:
            raise StoreError(f"cannot update {sorted(changes.keys() - allowed)}")
        if changes.get("state", "active") not in STATES:
            raise StoreError(f"bad state {changes['state']!r}")
        with self.config.connection() as db:
            for col, value in changes.items():
                if col in ("desired", "original"):
                    value = json.dumps(value, sort_keys=True)
                db.execute(f"UPDATE sriov_assignments SET {col} = ? WHERE vf_pci = ?",
                           (value, vf_pci))
            return self.get(vf_pci)

    def delete(self, vf_pci: str) -> None:
        with self.config.connection() as db:
            db.execute("DELETE FROM sriov_assignments WHERE vf_pci = ?", (vf_pci,))

    def get(self, vf_pci: str) -> Assignment:
        with self.config.connection(write=False) as db:
            row = db.execute("SELECT * FROM sriov_assignments WHERE vf_pci = ?",
                             (vf_pci,)).fetchone()
        if row is None:
            raise StoreError(f"VF {vf_pci} is not assigned")
        return _assignment(row)

    def find(self, vf_pci: str) -> Assignment | None:
        try:
            return self.get(vf_pci)
        except StoreError:
            return None

    def list(self, vm_id: str | None = None) -> list[Assignment]:
        with self.config.connection(write=False) as db:
            if vm_id is None:
                rows = db.execute("SELECT * FROM sriov_assignments ORDER BY vf_pci")
            else:
                rows = db.execute("SELECT * FROM sriov_assignments WHERE vm_id = ? "
                                  "ORDER BY vf_pci", (vm_id,))
            return [_assignment(r) for r in rows]
