"""Per-bridge sFlow settings: parsing and checking (the CLI, the daemon and
the configuration store share these rules)."""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field

DEFAULT_PORT = 6343
DEFAULT_SAMPLING = 400                # as Open vSwitch
DEFAULT_POLLING = 30                  # seconds, as hsflowd
DEFAULT_HEADER = 128
MAX_HEADER = 256                      # VS_DP_SFLOW_MAX_HEADER
MAX_COLLECTORS = 16


class SflowSettingsError(ValueError):
    """Bad sFlow settings; the message is one line for the user."""


@dataclass
class SflowSettings:
    collectors: list[str] = field(default_factory=list)   # "host:port" / "[v6]:port"
    agent: str = ""               # IP address or interface name; "" = route to collector
    sampling: int = DEFAULT_SAMPLING                      # 1-in-N; 0 = no flow samples
    polling: int = DEFAULT_POLLING                        # s; 0 = no counter samples
    header: int = DEFAULT_HEADER                          # bytes of each sampled frame

    def to_dict(self) -> dict:
        return asdict(self)


def parse_collector(text: str) -> tuple[str, int]:
    """"host", "host:port", "v4:port", "[v6]:port" or a bare IPv6 address."""
    if not isinstance(text, str) or not text.strip():
        raise SflowSettingsError("collector must be HOST[:PORT]")
    t = text.strip()
    if t.startswith("["):
        host, sep, rest = t[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise SflowSettingsError(f"bad collector {text!r}: use [IPv6]:PORT")
        port_s = rest[1:] if rest else ""
    elif t.count(":") > 1:
        host, port_s = t, ""              # a bare IPv6 address
    else:
        host, _, port_s = t.partition(":")
    if not host or any(c.isspace() for c in host):
        raise SflowSettingsError(f"bad collector {text!r}: no host")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise SflowSettingsError(f"bad collector {text!r}: not an IPv6 address") from None
    port = DEFAULT_PORT
    if port_s:
        if not port_s.isdigit() or not 1 <= int(port_s) <= 65535:
            raise SflowSettingsError(f"bad collector {text!r}: port must be 1..65535")
        port = int(port_s)
    return host, port


def _int(what: str, v: object, lo: int, hi: int) -> int:
    if isinstance(v, bool):
        raise SflowSettingsError(f"{what} must be an integer")
    try:
        n = int(v)                    # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SflowSettingsError(f"{what} must be an integer, not {v!r}") from None
    if not lo <= n <= hi:
        raise SflowSettingsError(f"{what} {n} outside {lo}..{hi}")
    return n


def check(d: object) -> SflowSettings:
    """Settings from a dict (the RPC's or the store's), checked."""
    if not isinstance(d, dict):
        raise SflowSettingsError("sFlow settings must be an object")
    unknown = set(d) - {"collectors", "agent", "sampling", "polling", "header"}
    if unknown:
        raise SflowSettingsError(f"unknown sFlow setting(s): {', '.join(sorted(unknown))}")
    cols = d.get("collectors") or []
    if isinstance(cols, str):
        cols = [c for c in cols.split(",") if c.strip()]
    if not isinstance(cols, list) or not cols:
        raise SflowSettingsError("sFlow needs at least one collector (HOST[:PORT])")
    if len(cols) > MAX_COLLECTORS:
        raise SflowSettingsError(f"at most {MAX_COLLECTORS} collectors")
    norm = []
    for c in cols:
        host, port = parse_collector(c)
        norm.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    agent = d.get("agent") or ""
    if not isinstance(agent, str) or len(agent) > 64 or any(c.isspace() for c in agent):
        raise SflowSettingsError("agent must be an IP address or an interface name")
    if agent and not _is_ip(agent) and (len(agent) >= 16 or "/" in agent):
        raise SflowSettingsError(f"agent {agent!r} is neither an IP address nor an "
                                 "interface name")
    return SflowSettings(
        collectors=norm, agent=agent,
        sampling=_int("sampling", d.get("sampling", DEFAULT_SAMPLING), 0, 2**32 - 1),
        polling=_int("polling", d.get("polling", DEFAULT_POLLING), 0, 86400),
        header=_int("header", d.get("header", DEFAULT_HEADER), 14, MAX_HEADER))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
