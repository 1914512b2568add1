"""Tests for the configuration database (vswitch/config.py)."""

from __future__ import annotations

import json
import os
import sqlite3
import threading

import pytest

from vswitch import config
from vswitch.config import Bridge, ConfigError, ConfigStore, Port, validate_target


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "state" / "conf.db"


@pytest.fixture
def store(db_path):
    s = ConfigStore(db_path)
    yield s
    s.close()


@pytest.fixture
def populated(store):
    """br0: eth0(1) vm1(2, tag 10) trunk0(3) patch0(4); br1: patch1(1); controllers on br0."""
    store.add_bridge("br0", datapath_id="00000000000000aa",
                     datapath_options={"n_poll_threads": "2"}, options={"mcast_snooping": "true"})
    store.add_bridge("br1", fail_mode="secure")
    store.add_port("br0", "eth0")
    store.add_port("br0", "vm1", "tap", tag=10, external_ids={"vm-id": "v1", "iface-id": "i1"})
    store.add_port("br0", "trunk0", "afxdp", trunks=[20, 10])
    store.add_port("br0", "patch0", "patch", options={"peer": "patch1"})
    store.add_port("br1", "patch1", "patch", options={"peer": "patch0"})
    store.set_controllers("br0", ["tcp:192.0.2.1:6653", "punix:/run/vswitch/br0.mgmt"])
    return store


def raw_counts(path) -> dict[str, int]:
    with sqlite3.connect(path) as db:
        return {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ("bridges", "ports", "controllers")}


# -- every refused change leaves the database exactly as it was --------------------------

BAD_NAMES = ["", "a" * 16, "bad/name", "bad name", "bad:name", ".", "..", "-x", ".x", "é1",
             "tab\t", 5, None]

REFUSED = [
    # bridges
    ("dup bridge", lambda s: s.add_bridge("br0"), "already used by bridge 'br0'"),
    ("bridge named like port", lambda s: s.add_bridge("eth0"), "port on bridge 'br0'"),
    *[(f"bridge name {n!r}", lambda s, n=n: s.add_bridge(n), "invalid bridge name")
      for n in BAD_NAMES],
    ("fail_mode", lambda s: s.add_bridge("br2", fail_mode="open"), "invalid fail_mode"),
    ("dpid short", lambda s: s.add_bridge("br2", datapath_id="123"), "16 hex digits"),
    ("dpid hex", lambda s: s.add_bridge("br2", datapath_id="zz" * 8), "16 hex digits"),
    ("dpid int", lambda s: s.add_bridge("br2", datapath_id=5), "16 hex digits"),
    ("dpid dup", lambda s: s.add_bridge("br2", datapath_id="00000000000000AA"),
     "already used by bridge 'br0'"),
    *[(f"n_poll_threads {v!r}",
       lambda s, v=v: s.add_bridge("br2", datapath_options={"n_poll_threads": v}),
       "n_poll_threads") for v in ("0", "x", "-1", "2000", "")],
    ("dp options int", lambda s: s.add_bridge("br2", datapath_options={"n_poll_threads": 2}),
     "values strings"),
    ("options list", lambda s: s.add_bridge("br2", options=["a"]), "expected a mapping"),
    ("options empty list", lambda s: s.add_bridge("br2", options=[]), "expected a mapping"),
    ("options empty key", lambda s: s.add_bridge("br2", options={"": "x"}), "non-empty"),
    ("del missing bridge", lambda s: s.del_bridge("nope"), "no bridge named 'nope'"),
    ("get missing bridge", lambda s: s.get_bridge("nope"), "no bridge named"),
    ("set options missing", lambda s: s.set_bridge_options("nope", options={}), "no bridge"),
    ("set options value", lambda s: s.set_bridge_options("br0", options={"a": 1}),
     "values strings"),
    ("set dp options", lambda s: s.set_bridge_options(
        "br0", options={"x": "y"}, datapath_options={"n_poll_threads": "0"}), "n_poll_threads"),
    ("set fail_mode bad", lambda s: s.set_fail_mode("br0", "secured"), "invalid fail_mode"),
    ("set fail_mode missing", lambda s: s.set_fail_mode("nope", "secure"), "no bridge"),
    ("set dpid bad", lambda s: s.set_datapath_id("br1", "xyz"), "16 hex digits"),
    ("set dpid dup", lambda s: s.set_datapath_id("br1", "00000000000000aa"), "already used"),
    ("set dpid missing", lambda s: s.set_datapath_id("nope", None), "no bridge"),
    # ports
    ("port missing bridge", lambda s: s.add_port("nope", "p9"), "no bridge named 'nope'"),
    *[(f"port name {n!r}", lambda s, n=n: s.add_port("br0", n), "invalid port name")
      for n in BAD_NAMES],
    ("dup port same bridge", lambda s: s.add_port("br0", "eth0"), "port on bridge 'br0'"),
    ("dup port other bridge", lambda s: s.add_port("br1", "eth0"), "port on bridge 'br0'"),
    ("port named like bridge", lambda s: s.add_port("br0", "br1"), "used by bridge 'br1'"),
    ("port type", lambda s: s.add_port("br0", "p9", "gre9"), "invalid port type 'gre9'"),
    ("ofport collision", lambda s: s.add_port("br0", "p9", ofport=2),
     "ofport 2 on bridge 'br0' is already used by port 'vm1'"),
    *[(f"ofport {v!r}", lambda s, v=v: s.add_port("br0", "p9", ofport=v), "invalid ofport")
      for v in (0, -1, 0xFF00, "5", True, 1.0)],
    *[(f"tag {v!r}", lambda s, v=v: s.add_port("br0", "p9", tag=v), "invalid tag")
      for v in (-1, 4096, "1", True)],
    *[(f"trunks {v!r}", lambda s, v=v: s.add_port("br0", "p9", trunks=v), "invalid trunk")
      for v in ([4096], [-1], [1, "2"], [False], "12", 5)],
    ("patch self peer", lambda s: s.add_port("br0", "p9", "patch", options={"peer": "p9"}),
     "own peer"),
    ("patch bad peer", lambda s: s.add_port("br0", "p9", "patch", options={"peer": "a/b"}),
     "invalid peer port name"),
    ("port options", lambda s: s.add_port("br0", "p9", options={"a": None}), "values strings"),
    ("external_ids", lambda s: s.add_port("br0", "p9", external_ids={1: "a"}), "external_ids"),
    ("del missing port", lambda s: s.del_port("nope"), "no port named 'nope'"),
    ("del wrong bridge", lambda s: s.del_port("eth0", bridge="br1"),
     "port 'eth0' is on bridge 'br0', not 'br1'"),
    ("get missing port", lambda s: s.get_port("nope"), "no port named"),
    ("list missing bridge", lambda s: s.list_ports("nope"), "no bridge"),
    ("set options missing", lambda s: s.set_port_options("nope", {}), "no port"),
    ("set options self peer", lambda s: s.set_port_options("patch0", {"peer": "patch0"}),
     "own peer"),
    ("set options type", lambda s: s.set_port_options("eth0", "a=b"), "expected a mapping"),
    ("set external_ids", lambda s: s.set_port_external_ids("vm1", {"x": 1}), "values strings"),
    ("set tag", lambda s: s.set_port_tag("vm1", 4096), "invalid tag"),
    ("set tag missing", lambda s: s.set_port_tag("nope", 1), "no port"),
    ("set trunks", lambda s: s.set_port_trunks("trunk0", [1, 5000]), "invalid trunk"),
    # controllers
    ("controllers missing bridge", lambda s: s.set_controllers("nope", []), "no bridge"),
    ("controllers one bad", lambda s: s.set_controllers("br0", ["tcp:10.0.0.1:6653", "x"]),
     "invalid controller target 'x'"),
    ("controllers dup", lambda s: s.set_controllers("br0", ["ptcp:6653", "ptcp:6653"]),
     "duplicate controller target 'ptcp:6653'"),
    ("controllers string", lambda s: s.set_controllers("br0", "tcp:10.0.0.1:6653"),
     "expected a list"),
    ("get controllers missing", lambda s: s.get_controllers("nope"), "no bridge"),
]


@pytest.mark.parametrize("op, match", [(op, m) for _, op, m in REFUSED],
                         ids=[i for i, _, _ in REFUSED])
def test_refused_change_leaves_db_unchanged(populated, db_path, op, match):
    before = populated.snapshot()
    with pytest.raises(ConfigError, match=match) as err:
        op(populated)
    assert "\n" not in str(err.value)
    assert isinstance(err.value, ValueError)
    assert populated.snapshot() == before
    with ConfigStore(db_path) as other:  # nothing half-committed either
        assert other.snapshot() == before


# -- opening -------------------------------------------------------------------------------

def test_open_creates_directory_wal_and_schema(store, db_path):
    assert db_path.is_file()
    assert store.schema_version == config.SCHEMA_VERSION == len(config.MIGRATIONS)
    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        version = db.execute("SELECT version FROM schema_version").fetchall()
        assert version == [(config.SCHEMA_VERSION,)]
    assert store._db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store._db.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    assert store.snapshot() == {"schema_version": config.SCHEMA_VERSION, "bridges": [], "ssl": None}


def test_reopen_keeps_everything(populated, db_path):
    before = populated.snapshot()
    populated.close()
    with ConfigStore(db_path) as again:
        assert again.snapshot() == before
        assert again.schema_version == config.SCHEMA_VERSION


def test_garbage_file_refused(tmp_path):
    path = tmp_path / "conf.db"
    path.write_bytes(b"this is not an sqlite database\n" * 200)
    with pytest.raises(ConfigError, match="cannot open configuration database .*not a database"):
        ConfigStore(path)
    assert path.read_bytes() == b"this is not an sqlite database\n" * 200


def test_damaged_page_refused(populated, db_path):
    for i in range(300):
        populated.add_port("br1", f"x{i}", external_ids={"pad": "z" * 200})
    populated.close()
    assert db_path.stat().st_size > 5 * 4096
    with open(db_path, "r+b") as f:
        f.seek(3 * 4096)
        f.write(b"\xa5" * 4096)
    with pytest.raises(ConfigError, match="cannot open configuration database"):
        ConfigStore(db_path)


def test_unopenable_paths_refused(tmp_path):
    with pytest.raises(ConfigError, match="cannot open configuration database"):
        ConfigStore(tmp_path)  # a directory
    (tmp_path / "plain").write_text("x")
    with pytest.raises(ConfigError, match="cannot open configuration database"):
        ConfigStore(tmp_path / "plain" / "conf.db")  # parent is a file


def test_empty_file_is_initialised(tmp_path):
    (tmp_path / "conf.db").write_bytes(b"")
    with ConfigStore(tmp_path / "conf.db") as s:
        assert s.schema_version == config.SCHEMA_VERSION


def test_foreign_database_refused(tmp_path):
    path = tmp_path / "conf.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE something (x)")
    with pytest.raises(ConfigError, match="not a vswitch configuration database"):
        ConfigStore(path)


def test_newer_schema_refused(populated, db_path):
    populated.close()
    with sqlite3.connect(db_path) as db:
        db.execute("UPDATE schema_version SET version = 7")
    with pytest.raises(ConfigError, match="schema version 7 is newer than this vswitch "
                       rf"supports \({config.SCHEMA_VERSION}\); upgrade vswitch"):
        ConfigStore(db_path)
    with sqlite3.connect(db_path) as db:  # left alone
        assert db.execute("SELECT version FROM schema_version").fetchone()[0] == 7


def test_migration_applied_on_open(populated, db_path, monkeypatch):
    before = populated.snapshot()
    populated.close()
    monkeypatch.setattr(config, "MIGRATIONS", [*config.MIGRATIONS, [
        "CREATE TABLE example (bridge_id INTEGER REFERENCES bridges(id) ON DELETE CASCADE)",
        "INSERT INTO port_types VALUES ('example')"]])
    with ConfigStore(db_path) as s:
        assert s.schema_version == config.SCHEMA_VERSION + 1
        assert s.snapshot() == {**before, "schema_version": config.SCHEMA_VERSION + 1}
        assert s.add_port("br1", "ex0", "example").type == "example"


def test_failed_migration_rolls_back(populated, db_path, monkeypatch):
    before = populated.snapshot()
    populated.close()
    monkeypatch.setattr(config, "MIGRATIONS", [*config.MIGRATIONS, [
        "CREATE TABLE example (x)", "THIS IS NOT SQL"]])
    with pytest.raises(ConfigError, match="cannot open configuration database"):
        ConfigStore(db_path)
    monkeypatch.undo()
    with ConfigStore(db_path) as s:
        assert s.snapshot() == before
        assert not s._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'example'").fetchone()


def test_closed_store_raises_config_error(db_path):
    with ConfigStore(db_path) as s:
        s.add_bridge("br0")
    with pytest.raises(ConfigError, match="database error"):
        s.get_bridge("br0")


# -- bridges -------------------------------------------------------------------------------

def test_bridge_add_get_list(store):
    assert store.add_bridge("br1") == Bridge("br1", "standalone", None, {}, {})
    b = store.add_bridge("br0", fail_mode="secure", datapath_id="0000AbCdEf012345",
                         datapath_options={"n_poll_threads": "4"}, options={"k": "v"})
    assert b == Bridge("br0", "secure", "0000abcdef012345", {"n_poll_threads": "4"}, {"k": "v"})
    assert store.get_bridge("br0") == b
    assert [x.name for x in store.list_bridges()] == ["br0", "br1"]
    assert store.add_bridge("a" * 15).name == "a" * 15
    assert store.add_bridge("eth0.100_x-y").name == "eth0.100_x-y"


def test_returned_rows_are_copies(populated):
    populated.get_bridge("br0").options["new"] = "x"
    populated.get_port("vm1").external_ids.clear()
    assert populated.get_bridge("br0").options == {"mcast_snooping": "true"}
    assert populated.get_port("vm1").external_ids == {"vm-id": "v1", "iface-id": "i1"}


def test_del_bridge_cascades(populated, db_path):
    assert raw_counts(db_path) == {"bridges": 2, "ports": 5, "controllers": 2}
    populated.del_bridge("br0")
    assert raw_counts(db_path) == {"bridges": 1, "ports": 1, "controllers": 0}
    assert populated.find_port("eth0") is None
    populated.del_bridge("br0", if_exists=True)
    # names and the datapath id are free again
    populated.add_bridge("eth0", datapath_id="00000000000000aa")
    populated.add_port("eth0", "br0")
    assert populated.get_controllers("eth0") == []


def test_set_bridge_options(populated):
    b = populated.set_bridge_options("br0", options={"a": "1", "mcast_snooping": None})
    assert b.options == {"a": "1"}
    b = populated.set_bridge_options("br0", datapath_options={"n_poll_threads": "8"})
    assert b.datapath_options == {"n_poll_threads": "8"} and b.options == {"a": "1"}
    b = populated.set_bridge_options("br0", options={"b": "2"}, replace=True)
    assert b.options == {"b": "2"}
    assert populated.get_bridge("br0") == b
    assert populated.set_bridge_options("br0", datapath_options={}, replace=True) \
        .datapath_options == {}


def test_set_fail_mode_and_datapath_id(populated):
    assert populated.set_fail_mode("br0", "secure").fail_mode == "secure"
    assert populated.get_bridge("br0").fail_mode == "secure"
    assert populated.set_datapath_id("br0", "00000000000000AA").datapath_id == "00000000000000aa"
    assert populated.set_datapath_id("br0", None).datapath_id is None
    assert populated.set_datapath_id("br1", "00000000000000aa").datapath_id == "00000000000000aa"


# -- ports ---------------------------------------------------------------------------------

def test_port_add_get_find_list(populated):
    assert populated.get_port("vm1") == Port("br0", "vm1", "tap", 2, 10, (),
                                             {}, {"vm-id": "v1", "iface-id": "i1"})
    assert populated.get_port("trunk0").trunks == (10, 20)
    assert populated.find_port("patch1") == ("br1", populated.get_port("patch1"))
    assert populated.find_port("nope") is None
    assert [(p.name, p.ofport) for p in populated.list_ports("br0")] == \
        [("eth0", 1), ("vm1", 2), ("trunk0", 3), ("patch0", 4)]
    p = populated.add_port("br1", "int0", "internal", tag=0, trunks=[4095, 0, 4095])
    assert (p.bridge, p.ofport, p.tag, p.trunks) == ("br1", 2, 0, (0, 4095))
    assert populated.add_port("br1", "p" * 15, "system").name == "p" * 15


def test_ofport_allocation(store, monkeypatch):
    store.add_bridge("br0")
    store.add_bridge("br1")
    assert [store.add_port("br0", f"p{i}").ofport for i in range(3)] == [1, 2, 3]
    assert store.add_port("br1", "q0").ofport == 1  # numbering is per bridge
    store.del_port("p1")
    assert store.add_port("br0", "p3").ofport == 2  # lowest free
    assert store.add_port("br0", "p4", ofport=10).ofport == 10
    assert store.add_port("br0", "p5", ofport=config.OFPORT_MAX).ofport == 0xFEFF
    assert [store.add_port("br0", f"r{i}").ofport for i in range(7)] == [4, 5, 6, 7, 8, 9, 11]
    monkeypatch.setattr(config, "OFPORT_MAX", 2)
    store.add_port("br1", "q1")
    before = store.snapshot()
    with pytest.raises(ConfigError, match="bridge 'br1' has no free ofport"):
        store.add_port("br1", "q2")
    assert store.snapshot() == before


def test_del_port(populated):
    populated.del_port("vm1")
    assert populated.find_port("vm1") is None
    populated.del_port("eth0", bridge="br0")
    populated.del_port("eth0", if_exists=True)
    assert [p.name for p in populated.list_ports("br0")] == ["trunk0", "patch0"]
    assert populated.add_port("br1", "vm1").ofport == 2  # name reusable on another bridge


def test_set_port_fields(populated):
    p = populated.set_port_options("patch0", {"peer": "other"})
    assert p.options == {"peer": "other"}
    assert populated.set_port_options("eth0", {"a": "1", "b": "2"}).options == {"a": "1", "b": "2"}
    assert populated.set_port_options("eth0", {"a": None}).options == {"b": "2"}
    assert populated.set_port_options("eth0", {"c": "3"}, replace=True).options == {"c": "3"}
    p = populated.set_port_external_ids("vm1", {"iface-id": None, "attached-mac": "aa"})
    assert p.external_ids == {"vm-id": "v1", "attached-mac": "aa"}
    assert populated.set_port_external_ids("vm1", {}, replace=True).external_ids == {}
    assert populated.set_port_tag("vm1", 4095).tag == 4095
    assert populated.set_port_tag("vm1", None).tag is None
    assert populated.set_port_trunks("trunk0", range(5, 8)).trunks == (5, 6, 7)
    assert populated.set_port_trunks("trunk0", []).trunks == ()
    snap = populated.snapshot()["bridges"][0]["ports"]
    assert [p["trunks"] for p in snap] == [[], [], [], []]
    assert snap[0]["options"] == {"c": "3"}


# -- controllers ---------------------------------------------------------------------------

GOOD_TARGETS = ["tcp:192.0.2.1:6653", "tcp:10.0.0.1:1", "ssl:10.0.0.1:65535",
                "tcp:[::1]:6653", "ssl:[2001:db8::1]:6654", "tcp:[fe80::1%eth0]:6653",
                "ptcp:6653", "ptcp:0", "ptcp:6653:127.0.0.1", "ptcp:6653:[::]",
                "punix:/run/vswitch/br0.mgmt", "unix:/tmp/ctl sock", "unix:/" + "x" * 106]
BAD_TARGETS = ["", "tcp", "tcp:", "tcp:192.0.2.1", "tcp:192.0.2.1:0", "tcp:192.0.2.1:65536",
               "tcp:::1:6653", "tcp:[192.0.2.1]:6653", "tcp:[::1]", "tcp:ctl.example:6653",
               "tcp:192.0.2:6653", "tcp: 192.0.2.1:6653", "tcp:192.0.2.1:+80",
               "tcp:192.0.2.1:\u0663", "ssl:[::1]:x", "ptcp:", "ptcp:x", "ptcp:6653:",
               "ptcp:6653:::1", "ptcp:6653:any", "ptcp:70000", "punix:", "punix:relative",
               "unix:/" + "x" * 107, "unix:/a\0b", "udp:192.0.2.1:6653", "TCP:192.0.2.1:6653",
               "pssl:6653", 6653, None]


@pytest.mark.parametrize("target", GOOD_TARGETS)
def test_good_targets(store, target):
    assert validate_target(target) == target
    store.add_bridge("br0")
    store.set_controllers("br0", [target])
    assert store.get_controllers("br0") == [target]


@pytest.mark.parametrize("target", BAD_TARGETS)
def test_bad_targets(target):
    with pytest.raises(ConfigError, match="invalid controller target") as err:
        validate_target(target)
    assert "\n" not in str(err.value)


def test_set_controllers_replaces_in_order(populated):
    assert populated.get_controllers("br0") == ["tcp:192.0.2.1:6653",
                                                "punix:/run/vswitch/br0.mgmt"]
    targets = ["ptcp:6653", "tcp:[::1]:6653", "ssl:10.1.1.1:6653"]
    populated.set_controllers("br0", targets)
    assert populated.get_controllers("br0") == targets
    assert populated.get_controllers("br1") == []
    populated.set_controllers("br1", ("ptcp:6653",))  # same target on another bridge: fine
    populated.set_controllers("br0", [])
    assert populated.get_controllers("br0") == []
    assert populated.snapshot()["bridges"][1]["controllers"] == ["ptcp:6653"]


# -- transactions ----------------------------------------------------------------------------

def test_transaction_groups_changes(store, db_path):
    with ConfigStore(db_path) as other:
        with store.transaction() as s:
            assert s is store
            store.add_bridge("br0")
            store.add_port("br0", "eth0")
            store.set_controllers("br0", ["ptcp:6653"])
            assert store.get_port("eth0").ofport == 1  # own writes are visible inside
            assert other.list_bridges() == []  # not yet to others (WAL readers see the past)
        assert other.snapshot() == store.snapshot()
        assert other.get_controllers("br0") == ["ptcp:6653"]


def test_transaction_rolls_back_on_exception(populated, db_path):
    before = populated.snapshot()
    with pytest.raises(RuntimeError, match="boom"):
        with populated.transaction():
            populated.del_bridge("br1")
            populated.add_port("br0", "p9", tag=5)
            populated.set_controllers("br0", [])
            raise RuntimeError("boom")
    assert populated.snapshot() == before
    with pytest.raises(ConfigError, match="ofport 1"):
        with populated.transaction():
            populated.add_bridge("br2")
            populated.add_port("br0", "p9", ofport=1)  # refused: the bridge goes too
    assert populated.snapshot() == before
    with ConfigStore(db_path) as other:
        assert other.snapshot() == before


def test_nested_transactions(populated):
    with populated.transaction():
        populated.add_bridge("br2")
        with populated.transaction():
            populated.add_port("br2", "a0")
        with pytest.raises(ValueError):
            with populated.transaction():
                populated.add_port("br2", "a1")
                raise ValueError("undo only the inner block")
        try:
            populated.add_port("br2", "a2", ofport=1)  # a refused call inside: caught
        except ConfigError:
            pass
        populated.add_port("br2", "a3")
    assert [p.name for p in populated.list_ports("br2")] == ["a0", "a3"]
    assert populated._depth == 0


# -- concurrency ---------------------------------------------------------------------------

def test_two_stores_on_one_path(db_path):
    a = ConfigStore(db_path)
    b = ConfigStore(db_path, timeout=0.2)
    try:
        a.add_bridge("br0")
        assert b.get_bridge("br0").name == "br0"
        b.add_port("br0", "eth0")
        assert a.get_port("eth0").ofport == 1
        with a.transaction():
            a.add_port("br0", "eth1")
            assert b.find_port("eth1") is None  # readers are not blocked by the writer
            with pytest.raises(ConfigError, match="database error: database is locked"):
                b.add_port("br0", "eth2")
        assert b.get_port("eth1").ofport == 2
        assert b.add_port("br0", "eth2").ofport == 3
        assert a.snapshot() == b.snapshot()
    finally:
        a.close()
        b.close()


def test_concurrent_open_of_new_database(tmp_path):
    path = tmp_path / "conf.db"
    stores: list[ConfigStore] = []
    errors: list[BaseException] = []

    def opener() -> None:
        try:
            stores.append(ConfigStore(path))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(stores) == 4
    stores[0].add_bridge("br0")
    assert all(s.get_bridge("br0").name == "br0" and s.schema_version == config.SCHEMA_VERSION
               for s in stores)
    for s in stores:
        s.close()


def test_one_store_many_threads(store):
    store.add_bridge("br0")
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(25):
                with store.transaction():
                    store.add_port("br0", f"t{n}-{i}")
                    store.set_port_tag(f"t{n}-{i}", n)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    ports = store.list_ports("br0")
    assert sorted(p.ofport for p in ports) == list(range(1, 201))
    assert all(p.tag == int(p.name[1:].split("-")[0]) for p in ports)


# -- snapshot ------------------------------------------------------------------------------

def test_snapshot_is_plain_json(populated):
    snap = populated.snapshot()
    assert json.loads(json.dumps(snap)) == snap
    assert snap == {"schema_version": config.SCHEMA_VERSION, "ssl": None, "bridges": [
        {"name": "br0", "fail_mode": "standalone", "datapath_id": "00000000000000aa",
         "datapath_options": {"n_poll_threads": "2"}, "options": {"mcast_snooping": "true"},
         "controllers": ["tcp:192.0.2.1:6653", "punix:/run/vswitch/br0.mgmt"],
         "ports": [
             {"name": "eth0", "type": "system", "ofport": 1, "tag": None, "trunks": [],
              "options": {}, "external_ids": {}},
             {"name": "vm1", "type": "tap", "ofport": 2, "tag": 10, "trunks": [],
              "options": {}, "external_ids": {"iface-id": "i1", "vm-id": "v1"}},
             {"name": "trunk0", "type": "afxdp", "ofport": 3, "tag": None, "trunks": [10, 20],
              "options": {}, "external_ids": {}},
             {"name": "patch0", "type": "patch", "ofport": 4, "tag": None, "trunks": [],
              "options": {"peer": "patch1"}, "external_ids": {}}]},
        {"name": "br1", "fail_mode": "secure", "datapath_id": None, "datapath_options": {},
         "options": {}, "controllers": [],
         "ports": [{"name": "patch1", "type": "patch", "ofport": 1, "tag": None, "trunks": [],
                    "options": {"peer": "patch0"}, "external_ids": {}}]}]}


def test_default_location_constants():
    assert os.path.join(config.DEFAULT_STATE_DIR, config.DB_FILENAME) == \
        "/var/lib/vswitch/conf.db"
