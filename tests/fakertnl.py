"""A stand-in for the kernel's rtnetlink VF handling, for SR-IOV tests without hardware.

`KernelVfs.socket()` returns an object with the netlink socket calls vswitch.sriov's
Rtnl uses (bind, sendto, recv, settimeout, close).  Requests are decoded here with
plain struct code (not pyroute2, which built them), so a test also checks the bytes:
the layout of nlmsghdr, ifinfomsg, IFLA_VFINFO_LIST > IFLA_VF_INFO > IFLA_VF_* and the
values in them.  The behaviour copies net/core/rtnetlink.c do_setvfinfo: attributes
applied in the kernel's fixed order, the first error stops the rest; IFLA_VF_RATE sets
min and max together.  RTM_GETLINK answers in the kernel's layout (rtnl_fill_vfinfo),
including IFLA_NUM_VF and a VF list cut at `list_limit` entries, as a full dump is.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass, field

NLMSG = struct.Struct("=IHHII")
IFINFO = struct.Struct("=BxHiII")
RTM_NEWLINK, RTM_GETLINK, RTM_SETLINK, NLMSG_ERROR = 16, 18, 19, 2
IFLA_IFNAME, IFLA_NUM_VF, IFLA_VFINFO_LIST, IFLA_EXT_MASK = 3, 21, 22, 29
IFLA_VF_INFO = 1
VF_MAC, VF_VLAN, VF_TX_RATE, VF_SPOOFCHK, VF_LINK_STATE, VF_RATE, VF_RSS, VF_STATS, \
    VF_TRUST, VF_BROADCAST = 1, 2, 3, 4, 5, 6, 7, 8, 9, 13
# do_setvfinfo's order
APPLY_ORDER = (VF_MAC, VF_VLAN, 12, VF_TX_RATE, VF_RATE, VF_SPOOFCHK, VF_LINK_STATE, VF_RSS,
               VF_TRUST)


def attr(atype: int, payload: bytes) -> bytes:
    data = struct.pack("=HH", 4 + len(payload), atype) + payload
    return data + b"\0" * (-len(data) % 4)


def attrs(data: bytes) -> list[tuple[int, bytes]]:
    out, off = [], 0
    while off + 4 <= len(data):
        length, atype = struct.unpack_from("=HH", data, off)
        if length < 4 or off + length > len(data):
            raise ValueError(f"bad attribute length {length} at {off}")
        out.append((atype & 0x3FFF, data[off + 4:off + length]))
        off += (length + 3) & ~3
    return out


@dataclass
class Vf:
    mac: bytes = b"\0" * 6
    vlan: int = 0
    qos: int = 0
    min_tx_rate: int = 0
    max_tx_rate: int = 0
    spoofchk: int = 1
    link_state: int = 0
    trust: int = 0


def vf_info(index: int, vf: Vf) -> bytes:
    """One IFLA_VF_INFO as rtnl_fill_vfinfo writes it."""
    body = (attr(VF_MAC, struct.pack("=I", index) + vf.mac + b"\0" * 26)
            + attr(VF_BROADCAST, b"\xff" * 6 + b"\0" * 26)
            + attr(VF_VLAN, struct.pack("=III", index, vf.vlan, vf.qos))
            + attr(VF_RATE, struct.pack("=III", index, vf.min_tx_rate, vf.max_tx_rate))
            + attr(VF_TX_RATE, struct.pack("=II", index, vf.max_tx_rate))
            + attr(VF_SPOOFCHK, struct.pack("=II", index, vf.spoofchk))
            + attr(VF_LINK_STATE, struct.pack("=II", index, vf.link_state))
            + attr(VF_RSS, struct.pack("=II", index, 0xFFFFFFFF))
            + attr(VF_TRUST, struct.pack("=II", index, vf.trust)))
    return attr(IFLA_VF_INFO | 0x8000, body)


def newlink(seq: int, ifindex: int, ifname: str, vfs: list[Vf], num_vf: int | None,
            list_limit: int | None = None) -> bytes:
    shown = vfs if list_limit is None else vfs[:list_limit]
    body = IFINFO.pack(0, 1, ifindex, 0x1003, 0) + attr(IFLA_IFNAME, ifname.encode() + b"\0")
    if num_vf is not None:
        body += attr(IFLA_NUM_VF, struct.pack("=I", num_vf))
        body += attr(IFLA_VFINFO_LIST | 0x8000,
                     b"".join(vf_info(i, v) for i, v in enumerate(shown)))
    return NLMSG.pack(NLMSG.size + len(body), RTM_NEWLINK, 0, seq, 0) + body


def ack(seq: int, err: int, request: bytes) -> bytes:
    body = struct.pack("=i", -err) + request[:NLMSG.size]
    return NLMSG.pack(NLMSG.size + len(body), NLMSG_ERROR, 0, seq, 0) + body


@dataclass
class KernelVfs:
    """One PF's VFs as the kernel holds them."""

    ifindex: int
    ifname: str
    vfs: list[Vf] = field(default_factory=list)
    unsupported: dict[int, int] = field(default_factory=dict)   # VF attr -> errno
    list_limit: int | None = None
    requests: list[dict] = field(default_factory=list)           # decoded SETLINKs

    def socket(self) -> FakeSocket:
        return FakeSocket(self)

    def handle(self, data: bytes) -> list[bytes]:
        length, mtype, flags, seq, _ = NLMSG.unpack_from(data)
        _, _, index, _, _ = IFINFO.unpack_from(data, NLMSG.size)
        top = dict(attrs(data[NLMSG.size + IFINFO.size:length]))
        if index != self.ifindex:
            return [ack(seq, errno.ENODEV, data)]
        if mtype == RTM_GETLINK:
            return [newlink(seq, self.ifindex, self.ifname, self.vfs, len(self.vfs),
                            self.list_limit)]
        if mtype != RTM_SETLINK:
            return [ack(seq, errno.EOPNOTSUPP, data)]
        err = 0
        for atype, info in attrs(top.get(IFLA_VFINFO_LIST, b"")):
            if atype != IFLA_VF_INFO:
                return [ack(seq, errno.EINVAL, data)]
            err = self._setvfinfo(dict(attrs(info)))
            if err:
                break
        return [ack(seq, err, data)]

    def _setvfinfo(self, a: dict[int, bytes]) -> int:
        decoded: dict = {}
        for atype in APPLY_ORDER:
            if atype not in a:
                continue
            payload = a[atype]
            vf_index = struct.unpack_from("=I", payload)[0]
            if vf_index >= len(self.vfs):
                return errno.EINVAL
            if atype in self.unsupported:
                self.requests.append(decoded)
                return self.unsupported[atype]
            vf = self.vfs[vf_index]
            decoded["vf"] = vf_index
            if atype == VF_MAC:
                vf.mac = payload[4:10]
                decoded["mac"] = vf.mac.hex(":")
            elif atype == VF_VLAN:
                vf.vlan, vf.qos = struct.unpack_from("=II", payload, 4)
                if vf.vlan > 4095 or vf.qos > 7:
                    return errno.EINVAL
                decoded.update(vlan=vf.vlan, qos=vf.qos)
            elif atype == VF_RATE:
                vf.min_tx_rate, vf.max_tx_rate = struct.unpack_from("=II", payload, 4)
                decoded.update(min_tx_rate=vf.min_tx_rate, max_tx_rate=vf.max_tx_rate)
            elif atype == VF_TX_RATE:
                vf.max_tx_rate = struct.unpack_from("=I", payload, 4)[0]
                decoded["tx_rate"] = vf.max_tx_rate
            elif atype == VF_SPOOFCHK:
                vf.spoofchk = struct.unpack_from("=I", payload, 4)[0]
                decoded["spoofchk"] = vf.spoofchk
            elif atype == VF_LINK_STATE:
                vf.link_state = struct.unpack_from("=I", payload, 4)[0]
                decoded["link_state"] = vf.link_state
            elif atype == VF_TRUST:
                vf.trust = struct.unpack_from("=I", payload, 4)[0]
                decoded["trust"] = vf.trust
        self.requests.append(decoded)
        return 0


class Links:
    """Several PFs behind one netlink socket factory; unknown ifindex -> ENODEV."""

    def __init__(self, *pfs: KernelVfs) -> None:
        self.pfs = {pf.ifindex: pf for pf in pfs}

    def socket(self) -> FakeSocket:
        return FakeSocket(self)

    def ifindex_of(self, name: str) -> int:
        for pf in self.pfs.values():
            if pf.ifname == name:
                return pf.ifindex
        raise OSError(errno.ENODEV, "no such device")

    def handle(self, data: bytes) -> list[bytes]:
        index = IFINFO.unpack_from(data, NLMSG.size)[2]
        if index in self.pfs:
            return self.pfs[index].handle(data)
        return [ack(NLMSG.unpack_from(data)[3], errno.ENODEV, data)]


class FakeSocket:
    def __init__(self, kernel: KernelVfs | Links) -> None:
        self.kernel = kernel
        self.queue: list[bytes] = []

    def settimeout(self, _t: float) -> None:
        pass

    def bind(self, _addr) -> None:
        pass

    def sendto(self, data: bytes, _addr) -> int:
        self.queue.extend(self.kernel.handle(data))
        return len(data)

    def recv(self, _n: int) -> bytes:
        if not self.queue:
            raise TimeoutError
        return self.queue.pop(0)

    def close(self) -> None:
        pass
