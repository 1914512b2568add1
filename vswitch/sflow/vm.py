"""VMs as the sFlow agent sees them, and the interface that gives their
CPU, memory and disk counters.

A VM is known by its interfaces on the switch: a port whose external_ids
carry an interface id and a VM id, as Open vSwitch's integrations mark
them (iface-id, and vm-id or vm-uuid; optional attached-mac and vm-name).
Its network counters come from those ports' counters, turned around: what
the switch received on the port is what the VM sent.  CPU, memory and disk
come from a VmStatsProvider; none is registered until the host manager
supplies one, and then its records are sent too.
"""

from __future__ import annotations

import uuid as _uuid
from dataclasses import dataclass, field
from typing import Protocol

_NAMESPACE = _uuid.UUID("5b3a4c1e-7f7e-4a51-9b0e-2f1d8c6a9e10")


@dataclass
class VmInterface:
    port: str
    ofport: int
    iface_id: str
    mac: str = ""


@dataclass
class Vm:
    vm_id: str
    name: str
    uuid: bytes                       # 16 bytes
    interfaces: list[VmInterface] = field(default_factory=list)


@dataclass
class VirtCpu:
    state: int                        # libvirt virDomainState (1 = running)
    cpu_time_ms: int
    n_vcpus: int


@dataclass
class VirtMemory:
    memory: int                       # bytes in use
    max_memory: int


@dataclass
class VirtDisk:
    capacity: int
    allocation: int
    available: int
    rd_req: int
    rd_bytes: int
    wr_req: int
    wr_bytes: int
    errs: int


class VmStatsProvider(Protocol):
    """What the host manager implements for its VM drivers; None = unknown
    (the record is then left out)."""

    def cpu(self, vm: Vm) -> VirtCpu | None: ...

    def memory(self, vm: Vm) -> VirtMemory | None: ...

    def disk(self, vm: Vm) -> VirtDisk | None: ...


def vm_uuid(vm_id: str) -> bytes:
    """The VM id as a UUID when it is one, else a stable UUID made from it."""
    try:
        return _uuid.UUID(vm_id).bytes
    except ValueError:
        return _uuid.uuid5(_NAMESPACE, vm_id).bytes


def vms_from_ports(ports) -> list[Vm]:
    """VMs from (port name, ofport, external_ids) triples, in order of
    first appearance; ports without both ids are not VM interfaces."""
    vms: dict[str, Vm] = {}
    for name, ofport, ext in ports:
        iface = ext.get("iface-id")
        vm_id = ext.get("vm-id") or ext.get("vm-uuid")
        if not iface or not vm_id:
            continue
        vm = vms.get(vm_id)
        if vm is None:
            vm = vms[vm_id] = Vm(vm_id, ext.get("vm-name") or vm_id, vm_uuid(vm_id))
        vm.interfaces.append(VmInterface(name, ofport, iface, ext.get("attached-mac", "")))
    return list(vms.values())
