"""VF settings through rtnetlink: read back (RTM_GETLINK with RTEXT_FILTER_VF) and set
(RTM_SETLINK with IFLA_VFINFO_LIST) on the PF's netdev.

Messages are built and parsed with pyroute2's ifinfmsg and sent on a plain netlink
socket: no IPRoute object, so this works inside the daemon's asyncio loop and from any
thread.  Every request is built from fresh dicts, since pyroute2's encoders rewrite the
values they are given (a MAC string becomes a byte list).

Kernel behaviour this module is written around (net/core/rtnetlink.c, do_setvfinfo):
- attributes are applied in a fixed order, MAC, VLAN, TX_RATE, RATE, SPOOFCHK,
  LINK_STATE, RSS_QUERY_EN, TRUST, and the first error stops the rest: the VF may be
  left half-configured, so after an error the VF is read back and the error says which
  settings took effect;
- IFLA_VF_RATE sets min and max together: sending only one zeroes the other, so both are
  always sent, the one not asked for copied from the current value;
- IFLA_VF_VLAN sets VLAN and QoS together, likewise;
- a link dump carries at most as many VF entries as fit in one message (about 220); the
  count is IFLA_NUM_VF, and a VF beyond the list is reported as unreadable, not absent.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import struct
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

RTM_NEWLINK, RTM_GETLINK, RTM_SETLINK = 16, 18, 19
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
RTEXT_FILTER_VF = 1
RTEXT_FILTER_SKIP_STATS = 1 << 3       # no IFLA_VF_STATS: more VFs fit in one reply
LINK_STATES = {"auto": 0, "enable": 1, "disable": 2}
LINK_STATE_NAMES = {v: k for k, v in LINK_STATES.items()}
CONFIG_KEYS = ("mac", "vlan", "qos", "min_tx_rate", "max_tx_rate", "spoofchk", "trust",
               "link_state")
_NLMSG = struct.Struct("=IHHII")
_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")
_U32_MAX = 0xFFFFFFFF
RECV_TIMEOUT_S = 5.0


class VfNetlinkError(ValueError):
    """A VF request the kernel (or validation) refused.  `errno` is the kernel's error,
    `applied` the settings found in effect after a partial failure."""

    def __init__(self, msg: str, err: int | None = None, applied: dict | None = None) -> None:
        super().__init__(msg)
        self.errno = err
        self.applied = applied or {}


@dataclass
class VfState:
    """One VF's settings as the kernel reports them."""

    vf: int
    mac: str
    vlan: int
    qos: int
    min_tx_rate: int
    max_tx_rate: int
    spoofchk: bool | None        # None: the driver does not report it
    trust: bool | None
    link_state: str

    def config(self) -> dict:
        d = asdict(self)
        del d["vf"]
        return d


@dataclass
class LinkVfs:
    ifindex: int
    ifname: str
    num_vf: int | None           # IFLA_NUM_VF: the real count, also when the list is cut
    vfs: dict[int, VfState]

    @property
    def truncated(self) -> bool:
        return self.num_vf is not None and len(self.vfs) < self.num_vf


def validate_config(cfg: Mapping) -> dict:
    """Check a desired VF config ({key: value}, keys from CONFIG_KEYS); returns a clean
    copy or raises VfNetlinkError naming the bad key."""
    if not isinstance(cfg, Mapping):
        raise VfNetlinkError(f"VF config must be an object, not {cfg!r}")
    out: dict = {}
    for key, value in cfg.items():
        if key not in CONFIG_KEYS:
            raise VfNetlinkError(f"unknown VF setting {key!r} (known: {', '.join(CONFIG_KEYS)})")
        if key == "mac":
            if not isinstance(value, str) or not _MAC.fullmatch(value):
                raise VfNetlinkError(f"invalid mac {value!r} (expected 02:00:00:00:00:01)")
            if int(value[:2], 16) & 1:
                raise VfNetlinkError(f"invalid mac {value}: a multicast address")
            value = value.lower()
        elif key in ("spoofchk", "trust"):
            if isinstance(value, str) and value in ("on", "off"):
                value = value == "on"
            if not isinstance(value, bool):
                raise VfNetlinkError(f"invalid {key} {value!r} (on/off or true/false)")
        elif key == "link_state":
            if value not in LINK_STATES:
                raise VfNetlinkError(f"invalid link_state {value!r} (auto, enable or disable)")
        else:
            if isinstance(value, str) and value.isdigit():
                value = int(value)
            limit = {"vlan": 4095, "qos": 7}.get(key, _U32_MAX)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
                raise VfNetlinkError(f"invalid {key} {value!r} (an integer 0-{limit})")
        out[key] = value
    if out.get("qos") and not out.get("vlan", 1):
        raise VfNetlinkError("qos needs a VLAN (vlan 0 has no priority)")
    if (out.get("min_tx_rate") and out.get("max_tx_rate")
            and out["min_tx_rate"] > out["max_tx_rate"]):
        raise VfNetlinkError("min_tx_rate is above max_tx_rate")
    return out


def vf_attrs(vf: int, cfg: Mapping, current: VfState | None) -> list[tuple[str, dict]]:
    """The IFLA_VF_* attributes for `cfg`, in the kernel's order.  Paired settings
    (vlan+qos, min+max rate) are completed from `current` so that one is not reset."""
    cur = current.config() if current is not None else {}
    attrs: list[tuple[str, dict]] = []
    if "mac" in cfg:
        attrs.append(("IFLA_VF_MAC", {"vf": vf, "mac": cfg["mac"]}))
    if "vlan" in cfg or "qos" in cfg:
        vlan = cfg.get("vlan", cur.get("vlan", 0))
        qos = cfg.get("qos", cur.get("qos", 0)) if vlan else 0    # untagged has no priority
        attrs.append(("IFLA_VF_VLAN", {"vf": vf, "vlan": vlan, "qos": qos}))
    if "min_tx_rate" in cfg or "max_tx_rate" in cfg:
        attrs.append(("IFLA_VF_RATE", {
            "vf": vf, "min_tx_rate": cfg.get("min_tx_rate", cur.get("min_tx_rate", 0)),
            "max_tx_rate": cfg.get("max_tx_rate", cur.get("max_tx_rate", 0))}))
    if "spoofchk" in cfg:
        attrs.append(("IFLA_VF_SPOOFCHK", {"vf": vf, "spoofchk": int(cfg["spoofchk"])}))
    if "link_state" in cfg:
        attrs.append(("IFLA_VF_LINK_STATE",
                      {"vf": vf, "link_state": LINK_STATES[cfg["link_state"]]}))
    if "trust" in cfg:
        attrs.append(("IFLA_VF_TRUST", {"vf": vf, "trust": int(cfg["trust"])}))
    return attrs


def build_setlink(ifindex: int, vf: int, cfg: Mapping, current: VfState | None,
                  seq: int = 1) -> bytes:
    msg = ifinfmsg()
    msg["family"] = socket.AF_UNSPEC
    msg["index"] = ifindex
    msg["attrs"] = [("IFLA_VFINFO_LIST",
                     {"attrs": [("IFLA_VF_INFO", {"attrs": vf_attrs(vf, cfg, current)})]})]
    msg["header"]["type"] = RTM_SETLINK
    msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK
    msg["header"]["sequence_number"] = seq
    msg.encode()
    return bytes(msg.data)


def build_getlink(ifindex: int, seq: int = 1) -> bytes:
    msg = ifinfmsg()
    msg["family"] = socket.AF_UNSPEC
    msg["index"] = ifindex
    msg["attrs"] = [("IFLA_EXT_MASK", RTEXT_FILTER_VF | RTEXT_FILTER_SKIP_STATS)]
    msg["header"]["type"] = RTM_GETLINK
    msg["header"]["flags"] = NLM_F_REQUEST
    msg["header"]["sequence_number"] = seq
    msg.encode()
    return bytes(msg.data)


def parse_link(data: bytes) -> LinkVfs:
    """One RTM_NEWLINK message -> its VFs' settings."""
    msg = ifinfmsg(data)
    msg.decode()
    vfs: dict[int, VfState] = {}
    vflist = msg.get_attr("IFLA_VFINFO_LIST")
    for info in (vflist or {}).get("attrs", []):
        if info[0] != "IFLA_VF_INFO":
            continue
        a = {name: value for name, value in info[1].get("attrs", [])}
        if "IFLA_VF_MAC" not in a:
            continue                              # every kernel VF entry has one
        idx = a["IFLA_VF_MAC"]["vf"]
        vlan = a.get("IFLA_VF_VLAN", {})
        rate = a.get("IFLA_VF_RATE")
        if rate is None and "IFLA_VF_TX_RATE" in a:   # kernels before 3.16
            rate = {"min_tx_rate": 0, "max_tx_rate": a["IFLA_VF_TX_RATE"]["tx_rate"]}
        rate = rate or {}
        spoof = a.get("IFLA_VF_SPOOFCHK", {}).get("spoofchk")
        trust = a.get("IFLA_VF_TRUST", {}).get("trust")
        state = a.get("IFLA_VF_LINK_STATE", {}).get("link_state", 0)
        # -1 (u32 all ones) means "not supported by the driver"
        vfs[idx] = VfState(idx, a["IFLA_VF_MAC"]["mac"], vlan.get("vlan", 0), vlan.get("qos", 0),
                           rate.get("min_tx_rate", 0), rate.get("max_tx_rate", 0),
                           None if spoof in (None, _U32_MAX) else bool(spoof),
                           None if trust in (None, _U32_MAX) else bool(trust),
                           LINK_STATE_NAMES.get(state, str(state)))
    return LinkVfs(msg["index"], msg.get_attr("IFLA_IFNAME") or "",
                   msg.get_attr("IFLA_NUM_VF"), vfs)


def errno_name(err: int | None) -> str:
    if err == errno.EOPNOTSUPP:             # errorcode maps 95 to its alias ENOTSUP
        return "EOPNOTSUPP"
    return errno.errorcode.get(err or 0, str(err))


def _messages(data: bytes):
    off = 0
    while off + _NLMSG.size <= len(data):
        length, mtype, flags, seq, _ = _NLMSG.unpack_from(data, off)
        if length < _NLMSG.size or off + length > len(data):
            raise VfNetlinkError("malformed netlink reply")
        yield mtype, seq, data[off:off + length]
        off += (length + 3) & ~3


class Rtnl:
    """A request/response rtnetlink channel.  `open_socket` makes the socket (default: a
    NETLINK_ROUTE socket in the caller's network namespace); one request at a time."""

    def __init__(self, open_socket: Callable[[], socket.socket] | None = None) -> None:
        self._open = open_socket or (lambda: socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE))
        self._lock = threading.Lock()
        self._seq = 0
        self.requests = 0            # counters: what was asked, what the kernel refused
        self.errors = 0

    def request(self, build: Callable[[int], bytes]) -> list[bytes]:
        """Send build(seq); return the RTM_NEWLINK replies; raise on an NLMSG_ERROR."""
        with self._lock:
            self._seq = self._seq % 0x7FFFFFFF + 1
            seq = self._seq
            self.requests += 1
            sock = self._open()
            try:
                sock.settimeout(RECV_TIMEOUT_S)
                sock.bind((0, 0))
                sock.sendto(build(seq), (0, 0))
                replies: list[bytes] = []
                while True:
                    try:
                        data = sock.recv(1 << 20)
                    except TimeoutError:
                        raise VfNetlinkError("no answer from the kernel") from None
                    for mtype, mseq, msg in _messages(data):
                        if mseq != seq:
                            continue
                        if mtype == NLMSG_ERROR:
                            code = -struct.unpack_from("=i", msg, _NLMSG.size)[0]
                            if code:
                                self.errors += 1
                                raise VfNetlinkError(os.strerror(code), code)
                            return replies
                        if mtype == NLMSG_DONE:
                            return replies
                        if mtype == RTM_NEWLINK:
                            replies.append(msg)
                            return replies          # GETLINK by index: one answer
            finally:
                sock.close()


def get_vfs(rtnl: Rtnl, ifindex: int) -> LinkVfs:
    replies = rtnl.request(lambda seq: build_getlink(ifindex, seq))
    if not replies:
        raise VfNetlinkError(f"no link with ifindex {ifindex}", errno.ENODEV)
    return parse_link(replies[0])


def set_vf(rtnl: Rtnl, ifindex: int, vf: int, cfg: Mapping,
           current: VfState | None = None) -> None:
    """Apply `cfg` to VF `vf` of the PF at `ifindex`.  On a kernel error, the VF is read
    back and the error lists the settings that are in effect anyway."""
    cfg = validate_config(cfg)
    if not cfg:
        return
    try:
        rtnl.request(lambda seq: build_setlink(ifindex, vf, cfg, current, seq))
    except VfNetlinkError as e:
        applied: dict = {}
        try:
            now = get_vfs(rtnl, ifindex).vfs.get(vf)
            if now is not None:
                applied = {k: v for k, v in now.config().items()
                           if k in cfg and v == cfg[k]}
        except VfNetlinkError:
            pass
        extra = f"; in effect anyway: {sorted(applied)}" if applied else ""
        reason = {errno.EOPNOTSUPP: "the driver does not support this VF setting"}.get(
            e.errno, str(e))
        raise VfNetlinkError(f"VF {vf}: {reason} ({errno_name(e.errno)})"
                             f"{extra}", e.errno, applied) from None
