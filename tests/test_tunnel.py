"""vxlan port options (vswitch.tunnel.VxlanConfig): what is accepted, what is
refused and with which message.  No network needed."""

from __future__ import annotations

import pytest

from vswitch.tunnel import TunnelError, VxlanConfig


def test_defaults_are_ovs_defaults():
    c = VxlanConfig.from_options({"remote_ip": "192.0.2.1"})
    assert c == VxlanConfig(remote_ip="192.0.2.1", local_ip="", key=0, dst_port=4789, tos=0,
                            ttl=64, df_default=True)
    assert c.remote_ip_bytes == bytes([192, 0, 2, 1]) and c.local_ip_bytes == bytes(4)


def test_all_options():
    c = VxlanConfig.from_options({"remote_ip": "192.0.2.1", "local_ip": "192.0.2.9",
                                  "key": "0xffffff", "dst_port": "8472", "tos": "184",
                                  "ttl": "5", "df_default": "false"})
    assert (c.local_ip, c.key, c.dst_port, c.tos, c.ttl, c.df_default) == \
        ("192.0.2.9", 0xFFFFFF, 8472, 184, 5, False)
    assert VxlanConfig.from_options({"remote_ip": "192.0.2.1", "key": "flow"}).key is None
    c = VxlanConfig.from_options({"remote_ip": "flow", "key": "flow"})
    assert c.remote_flow and c.remote_ip == "" and c.remote_ip_bytes == bytes(4)


@pytest.mark.parametrize("opts, match", [
    ({}, "needs options remote_ip"),
    ({"remote_ip": "2001:db8::1"}, "need an IPv4 address"),
    ({"remote_ip": "192.0.2.1", "local_ip": "x"}, "local_ip='x': need an IPv4 address"),
    ({"remote_ip": "192.0.2.1", "key": "16777216"}, "key='16777216'"),
    ({"remote_ip": "192.0.2.1", "key": "-1"}, "key='-1'"),
    ({"remote_ip": "192.0.2.1", "key": "0xzz"}, "key='0xzz'"),
    ({"remote_ip": "192.0.2.1", "dst_port": "0"}, "dst_port='0'"),
    ({"remote_ip": "192.0.2.1", "dst_port": "65536"}, "dst_port"),
    ({"remote_ip": "192.0.2.1", "tos": "256"}, "tos"),
    ({"remote_ip": "192.0.2.1", "tos": "inherit"}, "tos=inherit is not supported"),
    ({"remote_ip": "192.0.2.1", "ttl": "0"}, "ttl"),
    ({"remote_ip": "192.0.2.1", "ttl": "inherit"}, "ttl=inherit is not supported"),
    ({"remote_ip": "192.0.2.1", "df_default": "yes"}, "df_default"),
    ({"remote_ip": "192.0.2.1", "csum": "true"}, "unknown vxlan option 'csum'"),
])
def test_refused(opts, match):
    with pytest.raises(TunnelError, match=match):
        VxlanConfig.from_options(opts)
