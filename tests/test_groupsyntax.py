"""ovs-ofctl group and meter syntax: parse, format, round trip, errors."""

from __future__ import annotations

import pytest

from vswitch import ofp
from vswitch.ofp import Bucket, MeterBand, Output, SetField
from vswitch.ofproto.flowsyntax import FlowSyntaxError
from vswitch.ofproto.groupsyntax import (
    GroupSpec,
    MeterSpec,
    format_group,
    format_meter,
    parse_group,
    parse_meter,
)


def test_select_group_with_weights_and_rewrites():
    g = parse_group("group_id=1,type=select,bucket=weight:10,output:1,"
                    "bucket=weight:20,actions=set_field:10.0.0.1->ip_dst,output:2")
    assert g == GroupSpec(1, ofp.OFPGT_SELECT, [
        Bucket((Output(1),), weight=10),
        Bucket((SetField("ipv4_dst", 0x0A000001), Output(2)), weight=20)])
    assert parse_group(format_group(g)) == g


def test_fast_failover_watch_ports():
    g = parse_group("group_id=7,type=ff,bucket=watch_port:1,output:1,"
                    "bucket=watch_port:2,output:2")
    assert [b.watch_port for b in g.buckets] == [1, 2]
    assert parse_group(format_group(g)) == g


def test_all_and_indirect_defaults():
    assert parse_group("group_id=3,bucket=output:4").type == ofp.OFPGT_ALL
    assert parse_group("group_id=3,type=indirect,bucket=output:4").buckets[0].weight == 1


def test_delete_forms():
    assert parse_group("group_id=5", need_buckets=False).group_id == 5
    assert parse_group("", need_buckets=False).group_id == 0xFFFFFFFC


def test_meter_round_trip():
    m = parse_meter("meter=1,pktps,burst,stats,band=type=drop,rate=1000,burst_size=100,"
                    "band=type=dscp_remark,rate=500,prec_level=1")
    assert m == MeterSpec(1, ofp.OFPMF_PKTPS | ofp.OFPMF_BURST | ofp.OFPMF_STATS, [
        MeterBand(ofp.OFPMBT_DROP, 1000, 100), MeterBand(ofp.OFPMBT_DSCP_REMARK, 500, 0, 1)])
    assert format_meter(m).startswith("meter=1 pktps burst stats bands=type=drop rate=1000")
    assert parse_meter("meter=2,band=type=drop,rate=10").flags == ofp.OFPMF_KBPS


@pytest.mark.parametrize("text", [
    "type=all,bucket=output:1", "group_id=x,bucket=output:1", "group_id=1,type=foo",
    "group_id=1,bucket=frob", "group_id=1,bucket=goto_table:2", "group_id=1,group_id=2",
    "group_id=1,bucket=weight:x,output:1",
])
def test_bad_groups(text):
    with pytest.raises(FlowSyntaxError):
        parse_group(text)


@pytest.mark.parametrize("text", [
    "meter=1", "band=type=drop,rate=1", "meter=1,band=type=x,rate=1",
    "meter=1,band=type=drop", "meter=1,kbps=3,band=type=drop,rate=1",
    "meter=1,band=type=drop,rate=1,colour=red",
])
def test_bad_meters(text):
    with pytest.raises(FlowSyntaxError):
        parse_meter(text)
