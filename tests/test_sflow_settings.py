"""sFlow settings: parsing and checking, and their place in the
configuration store (schema migration, set/get/delete, cascade)."""

from __future__ import annotations

import sqlite3

import pytest

from vswitch import config
from vswitch.config import ConfigError, ConfigStore
from vswitch.sflow.settings import SflowSettingsError, check, parse_collector


@pytest.mark.parametrize("text, want", [
    ("10.0.0.1", ("10.0.0.1", 6343)),
    ("10.0.0.1:9999", ("10.0.0.1", 9999)),
    ("collector.example", ("collector.example", 6343)),
    ("[2001:db8::1]:7000", ("2001:db8::1", 7000)),
    ("[2001:db8::1]", ("2001:db8::1", 6343)),
    ("2001:db8::1", ("2001:db8::1", 6343)),
])
def test_collector_forms(text, want):
    assert parse_collector(text) == want


@pytest.mark.parametrize("text", ["", " ", ":6343", "10.0.0.1:0", "10.0.0.1:65536",
                                  "10.0.0.1:x", "[2001:db8::1", "[nothex::]:1", "a b:1",
                                  "[2001:db8::1]x"])
def test_bad_collectors(text):
    with pytest.raises(SflowSettingsError):
        parse_collector(text)


def test_defaults_and_normal_form():
    s = check({"collectors": ["10.0.0.1", "[2001:db8::2]:7000"]})
    assert s.to_dict() == {"collectors": ["10.0.0.1:6343", "[2001:db8::2]:7000"], "agent": "",
                           "sampling": 400, "polling": 30, "header": 128}
    assert check({"collectors": "10.0.0.1,10.0.0.2:1"}).collectors == ["10.0.0.1:6343",
                                                                       "10.0.0.2:1"]


@pytest.mark.parametrize("bad, msg", [
    ({}, "at least one collector"),
    ({"collectors": ["10.0.0.1"] * 17}, "at most 16"),
    ({"collectors": ["10.0.0.1"], "sampling": -1}, "sampling -1 outside"),
    ({"collectors": ["10.0.0.1"], "sampling": 2**32}, "outside"),
    ({"collectors": ["10.0.0.1"], "sampling": True}, "integer"),
    ({"collectors": ["10.0.0.1"], "polling": 86401}, "polling"),
    ({"collectors": ["10.0.0.1"], "header": 13}, "header 13 outside 14..256"),
    ({"collectors": ["10.0.0.1"], "header": 257}, "header"),
    ({"collectors": ["10.0.0.1"], "agent": "a b"}, "agent"),
    ({"collectors": ["10.0.0.1"], "agent": "x" * 20}, "neither"),
    ({"collectors": ["10.0.0.1"], "agent": 5}, "agent"),
    ({"collectors": ["10.0.0.1"], "extra": 1}, "unknown sFlow setting"),
    ([], "must be an object"),
])
def test_bad_settings(bad, msg):
    with pytest.raises(SflowSettingsError, match=msg):
        check(bad)


def test_store_keeps_sflow_per_bridge(tmp_path):
    with ConfigStore(tmp_path / "conf.db") as s:
        s.add_bridge("br0")
        s.add_bridge("br1")
        assert s.get_sflow("br0") is None
        got = s.set_sflow("br0", {"collectors": ["10.0.0.9"], "sampling": 64, "agent": "eth0"})
        assert got["collectors"] == ["10.0.0.9:6343"] and got["sampling"] == 64
        with pytest.raises(ConfigError, match="header"):
            s.set_sflow("br0", {"collectors": ["10.0.0.9"], "header": 1000})
        with pytest.raises(ConfigError):
            s.set_sflow("nosuch", {"collectors": ["10.0.0.9"]})
        assert s.get_sflow("br0") == got                  # the bad update changed nothing
        assert s.get_sflow("br1") is None
    with ConfigStore(tmp_path / "conf.db") as s:          # kept across a reopen
        assert s.get_sflow("br0") == got
        assert s.del_sflow("br0") is True and s.del_sflow("br0") is False
        s.set_sflow("br1", {"collectors": ["10.0.0.9"]})
        s.del_bridge("br1")                               # cascades
        s.add_bridge("br1")
        assert s.get_sflow("br1") is None


def test_version_1_database_gains_the_sflow_table(tmp_path):
    path = tmp_path / "conf.db"
    with sqlite3.connect(path) as db:                     # what vswitch 1 wrote
        for sql in config.MIGRATIONS[0]:
            db.execute(sql)
        db.execute("INSERT INTO schema_version VALUES (1)")
        db.execute("INSERT INTO bridges (name, fail_mode) VALUES ('old0', 'standalone')")
    with ConfigStore(path) as s:
        assert s.schema_version == config.SCHEMA_VERSION
        assert [b.name for b in s.list_bridges()] == ["old0"]
        s.set_sflow("old0", {"collectors": ["192.0.2.1:6343"]})
        assert s.get_sflow("old0")["collectors"] == ["192.0.2.1:6343"]
