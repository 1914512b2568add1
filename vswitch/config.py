"""Persistent switch configuration: an embedded SQLite database in the state directory.

`vswitchd` keeps bridges, ports and controllers here and restores them on restart.  The
database runs in WAL mode with foreign keys on, so another process (`vswitchctl`, a test)
may read it while the daemon writes.  Every validation failure raises `ConfigError` and
leaves the database exactly as it was: each public call runs in a transaction, and callers
group several calls atomically with `with store.transaction():` (nested transactions join
the outer one as savepoints, so a failed inner call undoes only its own changes).

Threads: the daemon uses a store from one thread.  An internal lock serialises calls (and
whole `transaction()` blocks) anyway, so use from several threads is safe, just not
concurrent.

Schema changes: append a list of SQL statements to `MIGRATIONS`; entry i takes the
database from version i to i + 1 (sFlow settings and SR-IOV VF tables go there).  A
database written by a newer vswitch is refused.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_STATE_DIR = "/var/lib/vswitch"
DB_FILENAME = "conf.db"
FAIL_MODES = ("standalone", "secure")
OFPORT_MAX = 0xFEFF  # highest port number OpenFlow lets a switch assign (as in OVS)

MIGRATIONS: list[list[str]] = [
    [  # version 1: bridges, ports, controllers
        "CREATE TABLE schema_version (version INTEGER NOT NULL)",
        "CREATE TABLE port_types (name TEXT PRIMARY KEY)",
        "INSERT INTO port_types VALUES ('system'), ('afxdp'), ('tap'), ('internal'), ('patch')",
        """CREATE TABLE bridges (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            fail_mode TEXT NOT NULL CHECK (fail_mode IN ('standalone', 'secure')),
            datapath_id TEXT UNIQUE,
            datapath_options TEXT NOT NULL DEFAULT '{}',
            options TEXT NOT NULL DEFAULT '{}')""",
        """CREATE TABLE ports (
            id INTEGER PRIMARY KEY,
            bridge_id INTEGER NOT NULL REFERENCES bridges(id) ON DELETE CASCADE,
            name TEXT NOT NULL UNIQUE,
            type TEXT NOT NULL REFERENCES port_types(name),
            ofport INTEGER NOT NULL CHECK (ofport BETWEEN 1 AND 65279),
            tag INTEGER CHECK (tag BETWEEN 0 AND 4095),
            trunks TEXT NOT NULL DEFAULT '[]',
            options TEXT NOT NULL DEFAULT '{}',
            external_ids TEXT NOT NULL DEFAULT '{}',
            UNIQUE (bridge_id, ofport))""",
        """CREATE TABLE controllers (
            bridge_id INTEGER NOT NULL REFERENCES bridges(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            target TEXT NOT NULL,
            PRIMARY KEY (bridge_id, position),
            UNIQUE (bridge_id, target))""",
    ],
    [  # version 2: the SSL key, certificate and CA used by ssl: controller targets
        """CREATE TABLE ssl (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            private_key TEXT NOT NULL,
            certificate TEXT NOT NULL,
            ca_cert TEXT NOT NULL)""",
    ],
    [  # version 3: per-bridge sFlow settings (vswitch/sflow/settings.py checks them)
        """CREATE TABLE bridge_sflow (
            bridge_id INTEGER PRIMARY KEY REFERENCES bridges(id) ON DELETE CASCADE,
            settings TEXT NOT NULL)""",
    ],
    [  # version 4: SR-IOV pools and VF assignments (vswitch/sriov/store.py)
        """CREATE TABLE sriov_pools (
            name TEXT PRIMARY KEY,
            selectors TEXT NOT NULL)""",
        """CREATE TABLE sriov_assignments (
            vf_pci TEXT PRIMARY KEY,
            pf_pci TEXT NOT NULL,
            pf_name TEXT,
            vf_index INTEGER NOT NULL CHECK (vf_index >= 0),
            vm_id TEXT NOT NULL,
            pool TEXT,
            desired TEXT NOT NULL DEFAULT '{}',
            original TEXT NOT NULL DEFAULT '{}',
            original_driver TEXT,
            driver TEXT,
            bridge TEXT,
            port TEXT,
            state TEXT NOT NULL CHECK (state IN ('applying', 'active', 'lost')),
            error TEXT)""",
        "CREATE INDEX sriov_assignments_vm ON sriov_assignments (vm_id)",
    ],
    [  # version 5: VXLAN tunnel ports
        "INSERT INTO port_types VALUES ('vxlan')",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)


class ConfigError(ValueError):
    """A refused change or an unusable database; the message is one line."""


@dataclass(frozen=True)
class Bridge:
    name: str
    fail_mode: str = "standalone"
    datapath_id: str | None = None  # 16 lowercase hex digits, or None: the daemon picks one
    datapath_options: dict[str, str] = field(default_factory=dict)  # {"n_poll_threads": "4"}
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Port:
    bridge: str
    name: str
    type: str
    ofport: int
    tag: int | None = None  # access VLAN
    trunks: tuple[int, ...] = ()  # sorted, no duplicates
    options: dict[str, str] = field(default_factory=dict)  # e.g. {"peer": "patch1"}
    external_ids: dict[str, str] = field(default_factory=dict)  # vm-id, iface-id, ...


_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}")
_DPID_RE = re.compile(r"[0-9A-Fa-f]{16}")


def _check_name(kind: str, name: object) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ConfigError(f"invalid {kind} name {name!r}: need 1-15 characters from "
                          "A-Z a-z 0-9 _ . - (not starting with . or -)")
    return name


def _check_vlan(what: str, vlan: object) -> int:
    if isinstance(vlan, bool) or not isinstance(vlan, int) or not 0 <= vlan <= 4095:
        raise ConfigError(f"invalid {what} {vlan!r}: VLAN must be an integer 0-4095")
    return vlan


def _check_map(what: str, m: object, updates: bool = False) -> dict[str, Any]:
    if m is None:
        return {}
    if not isinstance(m, Mapping):
        raise ConfigError(f"invalid {what}: expected a mapping of strings, got {m!r}")
    for k, v in m.items():
        if not (isinstance(k, str) and k) or not (isinstance(v, str) or (updates and v is None)):
            raise ConfigError(f"invalid {what} entry {k!r}: {v!r}: keys must be non-empty "
                              "strings and values strings")
    return dict(m)


def _merge(what: str, current: dict[str, str], updates: object, replace: bool) -> dict[str, str]:
    new = {} if replace else dict(current)
    for k, v in _check_map(what, updates, updates=True).items():
        if v is None:
            new.pop(k, None)
        else:
            new[k] = v
    return new


def _check_datapath_options(opts: dict[str, str]) -> dict[str, str]:
    n = opts.get("n_poll_threads")
    if n is not None and not (n.isascii() and n.isdigit() and 1 <= int(n) <= 1024):
        raise ConfigError(f"invalid datapath option n_poll_threads={n!r}: need an integer 1-1024")
    return opts


# Bridge options that control the OpenFlow channel (milliseconds, as OVS's Controller
# columns): ECHO after this much silence, and the longest wait between reconnection attempts.
_CHANNEL_OPTIONS = {"inactivity_probe": (0, 3_600_000), "max_backoff": (1000, 3_600_000)}


def _check_bridge_options(opts: dict[str, str]) -> dict[str, str]:
    for key, (low, high) in _CHANNEL_OPTIONS.items():
        v = opts.get(key)
        if v is not None and not (v.isascii() and v.isdigit() and low <= int(v) <= high):
            raise ConfigError(f"invalid bridge option {key}={v!r}: need milliseconds "
                              f"{low}-{high}" + (" (0 disables the probe)" if low == 0 else ""))
    return opts


def _check_dpid(dpid: object) -> str | None:
    if dpid is None:
        return None
    if not isinstance(dpid, str) or not _DPID_RE.fullmatch(dpid):
        raise ConfigError(f"invalid datapath id {dpid!r}: need exactly 16 hex digits")
    return dpid.lower()


def _check_port_options(name: str, type_: str, opts: dict[str, str]) -> dict[str, str]:
    peer = opts.get("peer")
    if type_ == "patch" and peer is not None:
        _check_name("peer port", peer)
        if peer == name:
            raise ConfigError(f"patch port {name!r} cannot be its own peer")
    return opts


def _check_ip(target: str, host: str) -> None:
    try:
        if host.startswith("[") and host.endswith("]"):
            ipaddress.IPv6Address(host[1:-1])
        else:
            ipaddress.IPv4Address(host)
    except ValueError:
        raise ConfigError(f"invalid controller target {target!r}: bad IP address {host!r} "
                          "(IPv4 dotted quad, or IPv6 in brackets)") from None


def _check_tcp_port(target: str, port: str, low: int) -> None:
    if not (port.isascii() and port.isdigit() and low <= int(port) <= 65535):
        raise ConfigError(f"invalid controller target {target!r}: bad TCP port {port!r} "
                          f"(need {low}-65535)")


def validate_target(target: object) -> str:
    """Check one controller target: tcp:IP:PORT, ssl:IP:PORT, ptcp:PORT[:IP], punix:/PATH,
    unix:/PATH (IPv6 addresses in brackets).  Returns it unchanged or raises ConfigError."""
    if not isinstance(target, str):
        raise ConfigError(f"invalid controller target {target!r}: not a string")
    kind, _, rest = target.partition(":")
    if kind in ("unix", "punix"):
        if not rest.startswith("/") or "\0" in rest or len(rest.encode()) > 107:
            raise ConfigError(f"invalid controller target {target!r}: need an absolute "
                              "socket path of at most 107 bytes")
    elif kind in ("tcp", "ssl"):
        host, colon, port = rest.rpartition(":")
        if not colon:
            raise ConfigError(f"invalid controller target {target!r}: need {kind}:IP:PORT")
        _check_ip(target, host)
        _check_tcp_port(target, port, 1)
    elif kind == "ptcp":
        port, colon, host = rest.partition(":")
        _check_tcp_port(target, port, 0)
        if colon:
            _check_ip(target, host)
    else:
        raise ConfigError(f"invalid controller target {target!r}: expected tcp:, ssl:, ptcp:, "
                          "punix: or unix:")
    return target


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _bridge(row: sqlite3.Row) -> Bridge:
    return Bridge(row["name"], row["fail_mode"], row["datapath_id"],
                  json.loads(row["datapath_options"]), json.loads(row["options"]))


def _port(row: sqlite3.Row) -> Port:
    return Port(row["bridge"], row["name"], row["type"], row["ofport"], row["tag"],
                tuple(json.loads(row["trunks"])), json.loads(row["options"]),
                json.loads(row["external_ids"]))


_PORT_SELECT = "SELECT p.*, b.name AS bridge FROM ports p JOIN bridges b ON b.id = p.bridge_id"


class ConfigStore:
    """The configuration database at `path` (created, with its directory, if missing)."""

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 5.0) -> None:
        self.path = os.fspath(path)
        self._lock = threading.RLock()
        self._depth = 0
        where = f"cannot open configuration database {self.path}"
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None,
                                       check_same_thread=False)
        except (OSError, sqlite3.Error) as e:
            raise ConfigError(f"{where}: {e}") from e
        try:
            self._db.row_factory = sqlite3.Row
            self._db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._wal(timeout)
            check = self._db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise ConfigError(f"integrity check failed: {check!r}")
            self._migrate()
        except (sqlite3.Error, ConfigError) as e:
            self._db.close()
            raise ConfigError(f"{where}: {e}") from e

    def _wal(self, timeout: float) -> None:
        """Switch to WAL.  The switch needs the database to itself and SQLite
        may refuse it at once, without waiting out busy_timeout, while another
        process migrates a new file: retry until the timeout."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._db.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _migrate(self) -> None:
        with self._tx() as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE "
                                               "type = 'table' AND name NOT LIKE 'sqlite_%'")}
            if "schema_version" in tables:
                version = db.execute("SELECT version FROM schema_version").fetchone()[0]
            elif tables:
                raise ConfigError("not a vswitch configuration database (no schema_version)")
            else:
                version = 0
            if version > len(MIGRATIONS):
                raise ConfigError(f"schema version {version} is newer than this vswitch "
                                  f"supports ({len(MIGRATIONS)}); upgrade vswitch")
            for statements in MIGRATIONS[version:]:
                for sql in statements:
                    db.execute(sql)
            if version < len(MIGRATIONS):
                db.execute("DELETE FROM schema_version")
                db.execute("INSERT INTO schema_version VALUES (?)", (len(MIGRATIONS),))

    @property
    def schema_version(self) -> int:
        with self._tx(write=False) as db:
            return db.execute("SELECT version FROM schema_version").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ConfigStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[ConfigStore]:
        """Group changes atomically: all are committed at the end of the outermost block, or
        none if it raises.  A nested block is a savepoint: if it raises, only its changes
        are undone.  Holds the store's lock (and SQLite's write lock) for the whole block."""
        with self._tx():
            yield self

    @contextmanager
    def _tx(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        with self._lock:
            depth = self._depth
            savepoint = f"sp{depth}"
            try:
                begin = ("BEGIN IMMEDIATE" if write else "BEGIN") if depth == 0 else None
                self._db.execute(begin or f"SAVEPOINT {savepoint}")
            except sqlite3.Error as e:
                raise ConfigError(f"database error: {e}") from e
            self._depth += 1
            try:
                yield self._db
            except BaseException as e:
                self._depth = depth
                with suppress(sqlite3.Error):
                    if depth == 0:
                        self._db.execute("ROLLBACK")
                    else:
                        self._db.execute(f"ROLLBACK TO {savepoint}")
                        self._db.execute(f"RELEASE {savepoint}")
                if isinstance(e, sqlite3.Error):
                    raise ConfigError(f"database error: {e}") from e
                raise
            self._depth = depth
            try:
                self._db.execute("COMMIT" if depth == 0 else f"RELEASE {savepoint}")
            except sqlite3.Error as e:
                if depth == 0:  # an outer block rolls back when this propagates
                    with suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                raise ConfigError(f"database error: {e}") from e

    # -- lookups ------------------------------------------------------------------------

    def _bridge_row(self, db: sqlite3.Connection, name: str) -> sqlite3.Row:
        row = db.execute("SELECT * FROM bridges WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise ConfigError(f"no bridge named {name!r}")
        return row

    def _port_row(self, db: sqlite3.Connection, name: str) -> sqlite3.Row:
        row = db.execute(f"{_PORT_SELECT} WHERE p.name = ?", (name,)).fetchone()
        if row is None:
            raise ConfigError(f"no port named {name!r}")
        return row

    def _check_free_name(self, db: sqlite3.Connection, name: str) -> None:
        """Port and bridge names share one namespace (a bridge has a local port of its name)."""
        if db.execute("SELECT 1 FROM bridges WHERE name = ?", (name,)).fetchone():
            raise ConfigError(f"name {name!r} is already used by bridge {name!r}")
        row = db.execute(f"{_PORT_SELECT} WHERE p.name = ?", (name,)).fetchone()
        if row is not None:
            raise ConfigError(f"name {name!r} is already used by a port on bridge "
                              f"{row['bridge']!r}")

    # -- bridges ------------------------------------------------------------------------

    def add_bridge(self, name: str, *, fail_mode: str = "standalone",
                   datapath_id: str | None = None,
                   datapath_options: Mapping[str, str] | None = None,
                   options: Mapping[str, str] | None = None) -> Bridge:
        _check_name("bridge", name)
        if fail_mode not in FAIL_MODES:
            raise ConfigError(f"invalid fail_mode {fail_mode!r}: expected standalone or secure")
        dpid = _check_dpid(datapath_id)
        dp_opts = _check_datapath_options(_check_map("datapath_options", datapath_options))
        opts = _check_bridge_options(_check_map("bridge options", options))
        with self._tx() as db:
            self._check_free_name(db, name)
            self._check_dpid_free(db, dpid, name)
            db.execute("INSERT INTO bridges (name, fail_mode, datapath_id, datapath_options, "
                       "options) VALUES (?, ?, ?, ?, ?)",
                       (name, fail_mode, dpid, _dumps(dp_opts), _dumps(opts)))
            return _bridge(self._bridge_row(db, name))

    def _check_dpid_free(self, db: sqlite3.Connection, dpid: str | None, bridge: str) -> None:
        row = db.execute("SELECT name FROM bridges WHERE datapath_id = ? AND name != ?",
                         (dpid, bridge)).fetchone()
        if row is not None:
            raise ConfigError(f"datapath id {dpid} is already used by bridge {row['name']!r}")

    def del_bridge(self, name: str, *, if_exists: bool = False) -> None:
        """Delete a bridge with its ports and controllers."""
        with self._tx() as db:
            if db.execute("DELETE FROM bridges WHERE name = ?", (name,)).rowcount == 0:
                if not if_exists:
                    raise ConfigError(f"no bridge named {name!r}")

    def get_bridge(self, name: str) -> Bridge:
        with self._tx(write=False) as db:
            return _bridge(self._bridge_row(db, name))

    def list_bridges(self) -> list[Bridge]:
        with self._tx(write=False) as db:
            return [_bridge(r) for r in db.execute("SELECT * FROM bridges ORDER BY name")]

    def set_bridge_options(self, name: str, *, options: Mapping[str, str | None] | None = None,
                           datapath_options: Mapping[str, str | None] | None = None,
                           replace: bool = False) -> Bridge:
        """Merge the given keys into the bridge's maps (a None value removes the key); with
        `replace`, each given map replaces the stored one instead."""
        with self._tx() as db:
            row = self._bridge_row(db, name)
            if options is not None:
                opts = _merge("bridge options", json.loads(row["options"]), options, replace)
                db.execute("UPDATE bridges SET options = ? WHERE id = ?",
                           (_dumps(_check_bridge_options(opts)), row["id"]))
            if datapath_options is not None:
                dp = _merge("datapath_options", json.loads(row["datapath_options"]),
                            datapath_options, replace)
                db.execute("UPDATE bridges SET datapath_options = ? WHERE id = ?",
                           (_dumps(_check_datapath_options(dp)), row["id"]))
            return _bridge(self._bridge_row(db, name))

    def set_fail_mode(self, name: str, fail_mode: str) -> Bridge:
        if fail_mode not in FAIL_MODES:
            raise ConfigError(f"invalid fail_mode {fail_mode!r}: expected standalone or secure")
        with self._tx() as db:
            db.execute("UPDATE bridges SET fail_mode = ? WHERE id = ?",
                       (fail_mode, self._bridge_row(db, name)["id"]))
            return _bridge(self._bridge_row(db, name))

    def set_datapath_id(self, name: str, datapath_id: str | None) -> Bridge:
        """Set the 16-hex-digit datapath id, or None to let the daemon choose."""
        dpid = _check_dpid(datapath_id)
        with self._tx() as db:
            row = self._bridge_row(db, name)
            self._check_dpid_free(db, dpid, name)
            db.execute("UPDATE bridges SET datapath_id = ? WHERE id = ?", (dpid, row["id"]))
            return _bridge(self._bridge_row(db, name))

    # -- ports --------------------------------------------------------------------------

    def add_port(self, bridge: str, name: str, type: str = "system", *,
                 ofport: int | None = None, tag: int | None = None, trunks: Iterable[int] = (),
                 options: Mapping[str, str] | None = None,
                 external_ids: Mapping[str, str] | None = None) -> Port:
        """Add a port; `ofport` is the lowest free number from 1 on the bridge unless given."""
        _check_name("port", name)
        if ofport is not None and (isinstance(ofport, bool) or not isinstance(ofport, int)
                                   or not 1 <= ofport <= OFPORT_MAX):
            raise ConfigError(f"invalid ofport {ofport!r}: need an integer 1-{OFPORT_MAX}")
        if tag is not None:
            _check_vlan("tag", tag)
        trunk_list = self._check_trunks(trunks)
        opts = _check_port_options(name, type, _check_map("port options", options))
        ids = _check_map("external_ids", external_ids)
        with self._tx() as db:
            br = self._bridge_row(db, bridge)
            if not db.execute("SELECT 1 FROM port_types WHERE name = ?", (type,)).fetchone():
                known = ", ".join(r[0] for r in db.execute("SELECT name FROM port_types"))
                raise ConfigError(f"invalid port type {type!r}: expected one of {known}")
            self._check_free_name(db, name)
            used = [r[0] for r in db.execute(
                "SELECT ofport FROM ports WHERE bridge_id = ? ORDER BY ofport", (br["id"],))]
            if ofport is None:
                taken = set(used)
                ofport = next(n for n in range(1, len(used) + 2) if n not in taken)
                if ofport > OFPORT_MAX:
                    raise ConfigError(f"bridge {bridge!r} has no free ofport")
            elif ofport in used:
                other = db.execute("SELECT name FROM ports WHERE bridge_id = ? AND ofport = ?",
                                   (br["id"], ofport)).fetchone()[0]
                raise ConfigError(f"ofport {ofport} on bridge {bridge!r} is already used by "
                                  f"port {other!r}")
            db.execute("INSERT INTO ports (bridge_id, name, type, ofport, tag, trunks, options, "
                       "external_ids) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (br["id"], name, type, ofport, tag, _dumps(trunk_list), _dumps(opts),
                        _dumps(ids)))
            return _port(self._port_row(db, name))

    @staticmethod
    def _check_trunks(trunks: object) -> list[int]:
        if isinstance(trunks, (str, bytes)) or not isinstance(trunks, Iterable):
            raise ConfigError(f"invalid trunks {trunks!r}: expected a list of VLANs")
        return sorted({_check_vlan("trunk VLAN", v) for v in trunks})

    def del_port(self, name: str, *, bridge: str | None = None, if_exists: bool = False) -> None:
        with self._tx() as db:
            row = db.execute(f"{_PORT_SELECT} WHERE p.name = ?", (name,)).fetchone()
            if row is None:
                if if_exists:
                    return
                raise ConfigError(f"no port named {name!r}")
            if bridge is not None and row["bridge"] != bridge:
                raise ConfigError(f"port {name!r} is on bridge {row['bridge']!r}, not {bridge!r}")
            db.execute("DELETE FROM ports WHERE id = ?", (row["id"],))

    def get_port(self, name: str) -> Port:
        with self._tx(write=False) as db:
            return _port(self._port_row(db, name))

    def find_port(self, name: str) -> tuple[str, Port] | None:
        """(bridge name, port) for the port called `name` on any bridge, or None."""
        with self._tx(write=False) as db:
            row = db.execute(f"{_PORT_SELECT} WHERE p.name = ?", (name,)).fetchone()
            return None if row is None else (row["bridge"], _port(row))

    def list_ports(self, bridge: str) -> list[Port]:
        """The bridge's ports, by ofport."""
        with self._tx(write=False) as db:
            br = self._bridge_row(db, bridge)
            return [_port(r) for r in db.execute(
                f"{_PORT_SELECT} WHERE p.bridge_id = ? ORDER BY p.ofport", (br["id"],))]

    def _update_port(self, name: str, column: str,
                     value_of: Callable[[sqlite3.Row], Any]) -> Port:
        with self._tx() as db:
            row = self._port_row(db, name)
            db.execute(f"UPDATE ports SET {column} = ? WHERE id = ?", (value_of(row), row["id"]))
            return _port(self._port_row(db, name))

    def set_port_options(self, name: str, options: Mapping[str, str | None], *,
                         replace: bool = False) -> Port:
        """Merge keys into the port's options (None removes a key; `replace` replaces all)."""
        return self._update_port(name, "options", lambda row: _dumps(_check_port_options(
            name, row["type"], _merge("port options", json.loads(row["options"]), options,
                                      replace))))

    def set_port_external_ids(self, name: str, external_ids: Mapping[str, str | None], *,
                              replace: bool = False) -> Port:
        """Merge keys into external_ids (None removes a key; `replace` replaces all)."""
        return self._update_port(name, "external_ids", lambda row: _dumps(_merge(
            "external_ids", json.loads(row["external_ids"]), external_ids, replace)))

    def set_port_tag(self, name: str, tag: int | None) -> Port:
        """Set the access VLAN, or clear it with None."""
        value = None if tag is None else _check_vlan("tag", tag)
        return self._update_port(name, "tag", lambda row: value)

    def set_port_trunks(self, name: str, trunks: Iterable[int]) -> Port:
        """Set the trunked VLANs (empty: none)."""
        value = _dumps(self._check_trunks(trunks))
        return self._update_port(name, "trunks", lambda row: value)

    # -- controllers --------------------------------------------------------------------

    def set_controllers(self, bridge: str, targets: Sequence[str]) -> None:
        """Replace the bridge's controller list (order kept; empty removes all)."""
        if isinstance(targets, str):
            raise ConfigError(f"invalid controller list {targets!r}: expected a list of targets")
        checked = [validate_target(t) for t in targets]
        dups = sorted({t for t in checked if checked.count(t) > 1})
        if dups:
            raise ConfigError(f"duplicate controller target {dups[0]!r}")
        with self._tx() as db:
            br_id = self._bridge_row(db, bridge)["id"]
            db.execute("DELETE FROM controllers WHERE bridge_id = ?", (br_id,))
            db.executemany("INSERT INTO controllers VALUES (?, ?, ?)",
                           [(br_id, i, t) for i, t in enumerate(checked)])

    def get_controllers(self, bridge: str) -> list[str]:
        with self._tx(write=False) as db:
            br_id = self._bridge_row(db, bridge)["id"]
            return [r[0] for r in db.execute(
                "SELECT target FROM controllers WHERE bridge_id = ? ORDER BY position", (br_id,))]

    # -- SSL ----------------------------------------------------------------------------

    def set_ssl(self, private_key: str, certificate: str, ca_cert: str) -> None:
        """The files ssl: targets use (absolute paths; read when a connection starts)."""
        for what, path in (("private key", private_key), ("certificate", certificate),
                           ("CA certificate", ca_cert)):
            if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
                raise ConfigError(f"invalid SSL {what} {path!r}: need an absolute path")
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO ssl VALUES (1, ?, ?, ?)",
                       (private_key, certificate, ca_cert))

    def get_ssl(self) -> dict[str, str] | None:
        with self._tx(write=False) as db:
            row = db.execute("SELECT * FROM ssl").fetchone()
            return None if row is None else {k: row[k] for k in ("private_key", "certificate",
                                                                   "ca_cert")}

    def del_ssl(self) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM ssl")

    # -- everything ---------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The whole configuration as plain JSON-able data, read in one transaction."""
        with self._tx(write=False):
            bridges = []
            for br in self.list_bridges():
                ports = [{"name": p.name, "type": p.type, "ofport": p.ofport, "tag": p.tag,
                          "trunks": list(p.trunks), "options": p.options,
                          "external_ids": p.external_ids} for p in self.list_ports(br.name)]
                bridges.append({"name": br.name, "fail_mode": br.fail_mode,
                                "datapath_id": br.datapath_id,
                                "datapath_options": br.datapath_options, "options": br.options,
                                "controllers": self.get_controllers(br.name), "ports": ports})
            return {"schema_version": self.schema_version, "bridges": bridges,
                    "ssl": self.get_ssl()}

    # -- sFlow (one row per bridge that exports it) ------------------------------------

    def set_sflow(self, bridge: str, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Store a bridge's sFlow settings (checked; defaults filled in)."""
        from vswitch.sflow.settings import SflowSettingsError, check
        try:
            checked = check(settings).to_dict()
        except SflowSettingsError as e:
            raise ConfigError(str(e)) from None
        with self._tx() as db:
            br_id = self._bridge_row(db, bridge)["id"]
            db.execute("INSERT OR REPLACE INTO bridge_sflow VALUES (?, ?)",
                       (br_id, _dumps(checked)))
        return checked

    def get_sflow(self, bridge: str) -> dict[str, Any] | None:
        with self._tx(write=False) as db:
            br_id = self._bridge_row(db, bridge)["id"]
            row = db.execute("SELECT settings FROM bridge_sflow WHERE bridge_id = ?",
                             (br_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def del_sflow(self, bridge: str) -> bool:
        """Remove a bridge's sFlow settings; False if it had none."""
        with self._tx() as db:
            br_id = self._bridge_row(db, bridge)["id"]
            return db.execute("DELETE FROM bridge_sflow WHERE bridge_id = ?",
                              (br_id,)).rowcount > 0
    @contextmanager
    def connection(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        """The SQLite connection inside a transaction (joining an open `transaction()`
        block), for modules that keep their own tables here (vswitch.sriov.store)."""
        with self._tx(write) as db:
            yield db
