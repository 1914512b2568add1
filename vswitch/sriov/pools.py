"""Resource pools of VFs chosen by selectors, in the style of the Kubernetes SR-IOV
network device plugin's resourceList:

    {"vendors": ["8086"], "devices": ["154c"], "drivers": ["iavf"],
     "pfNames": ["ens1f0#0-3", "ens1f1"], "pciAddresses": ["0000:03:02.0"]}

A VF belongs to a pool when every selector given matches (a selector matches when any
of its values does).  pfNames entries are a PF netdev name, optionally with `#` and VF
index ranges (`#0-3`, `#0,2,5-7`).  Vendor and device ids are the VF's own, as hex
without 0x, compared case-insensitively.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from vswitch.sriov.sysfs import PF, VF, SriovError

SELECTOR_KEYS = ("vendors", "devices", "drivers", "pfNames", "pciAddresses")
_POOL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_HEX_ID = re.compile(r"(0x)?[0-9a-fA-F]{4}")
_PF_NAME = re.compile(r"([A-Za-z0-9_.-]{1,15})(?:#([0-9,\-]+))?")
MAX_VF_INDEX = 65535


def check_pool_name(name: object) -> str:
    if not isinstance(name, str) or not _POOL_NAME.fullmatch(name):
        raise SriovError(f"invalid pool name {name!r}: 1-63 characters from A-Z a-z 0-9 _ . -")
    return name


def parse_ranges(text: str) -> set[int]:
    """'0-3,7' -> {0, 1, 2, 3, 7}"""
    out: set[int] = set()
    for part in text.split(","):
        lo, dash, hi = part.partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()):
            raise SriovError(f"bad VF range {text!r} (expected e.g. 0-3,7)")
        a, b = int(lo), int(hi) if dash else int(lo)
        if a > b or b > MAX_VF_INDEX:
            raise SriovError(f"bad VF range {part!r} in {text!r}")
        out.update(range(a, b + 1))
    return out


def validate_selectors(sel: object) -> dict[str, list[str]]:
    """Check and normalise a selector object; raises SriovError naming what is wrong."""
    if not isinstance(sel, Mapping) or not sel:
        raise SriovError("a pool needs at least one selector (vendors, devices, drivers, "
                         "pfNames, pciAddresses)")
    out: dict[str, list[str]] = {}
    for key, values in sel.items():
        if key not in SELECTOR_KEYS:
            raise SriovError(f"unknown selector {key!r} (known: {', '.join(SELECTOR_KEYS)})")
        if (not isinstance(values, list) or not values
                or not all(isinstance(v, str) and v for v in values)):
            raise SriovError(f"selector {key} must be a non-empty list of strings")
        if key in ("vendors", "devices"):
            for v in values:
                if not _HEX_ID.fullmatch(v):
                    raise SriovError(f"bad {key[:-1]} id {v!r} (4 hex digits, e.g. 8086)")
            values = [v.lower().removeprefix("0x") for v in values]
        elif key == "pfNames":
            for v in values:
                m = _PF_NAME.fullmatch(v)
                if not m:
                    raise SriovError(f"bad pfNames entry {v!r} (e.g. ens1f0 or ens1f0#0-3)")
                if m.group(2) is not None:
                    parse_ranges(m.group(2))
        out[key] = list(values)
    return out


def _pf_name_match(entries: list[str], pf: PF, vf: VF) -> bool:
    for entry in entries:
        m = _PF_NAME.fullmatch(entry)
        if m is None or m.group(1) != pf.netdev:
            continue
        if m.group(2) is None or vf.index in parse_ranges(m.group(2)):
            return True
    return False


def matches(sel: Mapping[str, list[str]], pf: PF, vf: VF, driver: str | None = None) -> bool:
    """Does `vf` (of `pf`) belong to a pool with selectors `sel`?  `driver` overrides the
    VF's current driver (an assigned VF moved to vfio-pci still counts as its pool's)."""
    vf_driver = driver if driver is not None else vf.driver
    checks = {
        "vendors": lambda vals: vf.vendor.lower().removeprefix("0x") in vals,
        "devices": lambda vals: vf.device.lower().removeprefix("0x") in vals,
        "drivers": lambda vals: vf_driver in vals,
        "pfNames": lambda vals: _pf_name_match(vals, pf, vf),
        "pciAddresses": lambda vals: vf.pci in vals,
    }
    return all(checks[k](v) for k, v in sel.items())
