"""OpenFlow 1.3 messages as plain values, and the protocol's numbers.

One frozen dataclass per message (and per multipart request/reply kind); every message
has `xid`.  Matches, actions, instructions, buckets and meter bands are the shared
`vswitch.ofp` types.  `vswitch.ofproto.wire` turns these into bytes and back; what the
switch *does* with a message lives elsewhere.  Names of constants follow the 1.3.5 spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vswitch import ofp

OFP_VERSION = 0x04
OFP_HEADER_LEN = 8
OFP_NO_BUFFER = 0xFFFFFFFF
OFP_DEFAULT_PRIORITY = 0x8000
OFP_MAX_PORT_NAME_LEN = 16
OFP_MAX_TABLE_NAME_LEN = 32
DESC_STR_LEN = 256
SERIAL_NUM_LEN = 32

# --- message types (ofp_type) ---------------------------------------------
OFPT_HELLO = 0
OFPT_ERROR = 1
OFPT_ECHO_REQUEST = 2
OFPT_ECHO_REPLY = 3
OFPT_EXPERIMENTER = 4
OFPT_FEATURES_REQUEST = 5
OFPT_FEATURES_REPLY = 6
OFPT_GET_CONFIG_REQUEST = 7
OFPT_GET_CONFIG_REPLY = 8
OFPT_SET_CONFIG = 9
OFPT_PACKET_IN = 10
OFPT_FLOW_REMOVED = 11
OFPT_PORT_STATUS = 12
OFPT_PACKET_OUT = 13
OFPT_FLOW_MOD = 14
OFPT_GROUP_MOD = 15
OFPT_PORT_MOD = 16
OFPT_TABLE_MOD = 17
OFPT_MULTIPART_REQUEST = 18
OFPT_MULTIPART_REPLY = 19
OFPT_BARRIER_REQUEST = 20
OFPT_BARRIER_REPLY = 21
OFPT_QUEUE_GET_CONFIG_REQUEST = 22
OFPT_QUEUE_GET_CONFIG_REPLY = 23
OFPT_ROLE_REQUEST = 24
OFPT_ROLE_REPLY = 25
OFPT_GET_ASYNC_REQUEST = 26
OFPT_GET_ASYNC_REPLY = 27
OFPT_SET_ASYNC = 28
OFPT_METER_MOD = 29

# --- multipart types (ofp_multipart_type) and flags ------------------------
OFPMP_DESC = 0
OFPMP_FLOW = 1
OFPMP_AGGREGATE = 2
OFPMP_TABLE = 3
OFPMP_PORT_STATS = 4
OFPMP_QUEUE = 5
OFPMP_GROUP = 6
OFPMP_GROUP_DESC = 7
OFPMP_GROUP_FEATURES = 8
OFPMP_METER = 9
OFPMP_METER_CONFIG = 10
OFPMP_METER_FEATURES = 11
OFPMP_TABLE_FEATURES = 12
OFPMP_PORT_DESC = 13
OFPMP_EXPERIMENTER = 0xFFFF
OFPMPF_REQ_MORE = 1
OFPMPF_REPLY_MORE = 1

# --- hello elements ---------------------------------------------------------
OFPHET_VERSIONBITMAP = 1

# --- switch config, capabilities, roles ------------------------------------
OFPC_FRAG_NORMAL = 0
OFPC_FRAG_DROP = 1
OFPC_FRAG_REASM = 2
OFPC_FRAG_MASK = 3
OFPC_FLOW_STATS = 1 << 0
OFPC_TABLE_STATS = 1 << 1
OFPC_PORT_STATS = 1 << 2
OFPC_GROUP_STATS = 1 << 3
OFPC_IP_REASM = 1 << 5
OFPC_QUEUE_STATS = 1 << 6
OFPC_PORT_BLOCKED = 1 << 8
OFPCR_ROLE_NOCHANGE = 0
OFPCR_ROLE_EQUAL = 1
OFPCR_ROLE_MASTER = 2
OFPCR_ROLE_SLAVE = 3
OFPTC_DEPRECATED_MASK = 3

# --- ports -------------------------------------------------------------------
OFPPC_PORT_DOWN = 1 << 0
OFPPC_NO_RECV = 1 << 2
OFPPC_NO_FWD = 1 << 5
OFPPC_NO_PACKET_IN = 1 << 6
OFPPS_LINK_DOWN = 1 << 0
OFPPS_BLOCKED = 1 << 1
OFPPS_LIVE = 1 << 2
OFPPF_10MB_HD = 1 << 0
OFPPF_10MB_FD = 1 << 1
OFPPF_100MB_HD = 1 << 2
OFPPF_100MB_FD = 1 << 3
OFPPF_1GB_HD = 1 << 4
OFPPF_1GB_FD = 1 << 5
OFPPF_10GB_FD = 1 << 6
OFPPF_40GB_FD = 1 << 7
OFPPF_100GB_FD = 1 << 8
OFPPF_1TB_FD = 1 << 9
OFPPF_OTHER = 1 << 10
OFPPF_COPPER = 1 << 11
OFPPF_FIBER = 1 << 12
OFPPF_AUTONEG = 1 << 13
OFPPF_PAUSE = 1 << 14
OFPPF_PAUSE_ASYM = 1 << 15
OFPPR_ADD = 0
OFPPR_DELETE = 1
OFPPR_MODIFY = 2

# --- groups, meters, queues ------------------------------------------------
OFPG_MAX = 0xFFFFFF00
OFPG_ALL = 0xFFFFFFFC
OFPG_ANY = 0xFFFFFFFF
OFPGFC_SELECT_WEIGHT = 1
OFPGFC_SELECT_LIVENESS = 2
OFPGFC_CHAINING = 4
OFPGFC_CHAINING_CHECKS = 8
OFPM_MAX = 0xFFFF0000
OFPM_SLOWPATH = 0xFFFFFFFD
OFPM_CONTROLLER = 0xFFFFFFFE
OFPM_ALL = 0xFFFFFFFF
OFPMBT_EXPERIMENTER = 0xFFFF
OFPQ_ALL = 0xFFFFFFFF
OFPQT_MIN_RATE = 1
OFPQT_MAX_RATE = 2
OFPQT_EXPERIMENTER = 0xFFFF
OFPCML_MAX = 0xFFE5

# --- action and instruction types ------------------------------------------
OFPAT_OUTPUT = 0
OFPAT_COPY_TTL_OUT = 11
OFPAT_COPY_TTL_IN = 12
OFPAT_SET_MPLS_TTL = 15
OFPAT_DEC_MPLS_TTL = 16
OFPAT_PUSH_VLAN = 17
OFPAT_POP_VLAN = 18
OFPAT_PUSH_MPLS = 19
OFPAT_POP_MPLS = 20
OFPAT_SET_QUEUE = 21
OFPAT_GROUP = 22
OFPAT_SET_NW_TTL = 23
OFPAT_DEC_NW_TTL = 24
OFPAT_SET_FIELD = 25
OFPAT_PUSH_PBB = 26
OFPAT_POP_PBB = 27
OFPAT_EXPERIMENTER = 0xFFFF
OFPIT_GOTO_TABLE = 1
OFPIT_WRITE_METADATA = 2
OFPIT_WRITE_ACTIONS = 3
OFPIT_APPLY_ACTIONS = 4
OFPIT_CLEAR_ACTIONS = 5
OFPIT_METER = 6
OFPIT_EXPERIMENTER = 0xFFFF

# --- match ------------------------------------------------------------------
OFPMT_STANDARD = 0
OFPMT_OXM = 1
OFPXMC_NXM_0 = 0x0000
OFPXMC_NXM_1 = 0x0001
OFPXMC_OPENFLOW_BASIC = 0x8000
OFPXMC_EXPERIMENTER = 0xFFFF

# --- table feature property types -------------------------------------------
OFPTFPT_INSTRUCTIONS = 0
OFPTFPT_INSTRUCTIONS_MISS = 1
OFPTFPT_NEXT_TABLES = 2
OFPTFPT_NEXT_TABLES_MISS = 3
OFPTFPT_WRITE_ACTIONS = 4
OFPTFPT_WRITE_ACTIONS_MISS = 5
OFPTFPT_APPLY_ACTIONS = 6
OFPTFPT_APPLY_ACTIONS_MISS = 7
OFPTFPT_MATCH = 8
OFPTFPT_WILDCARDS = 10
OFPTFPT_WRITE_SETFIELD = 12
OFPTFPT_WRITE_SETFIELD_MISS = 13
OFPTFPT_APPLY_SETFIELD = 14
OFPTFPT_APPLY_SETFIELD_MISS = 15
OFPTFPT_EXPERIMENTER = 0xFFFE
OFPTFPT_EXPERIMENTER_MISS = 0xFFFF

# --- error types (ofp_error_type) and codes -------------------------------
OFPET_HELLO_FAILED = 0
OFPET_BAD_REQUEST = 1
OFPET_BAD_ACTION = 2
OFPET_BAD_INSTRUCTION = 3
OFPET_BAD_MATCH = 4
OFPET_FLOW_MOD_FAILED = 5
OFPET_GROUP_MOD_FAILED = 6
OFPET_PORT_MOD_FAILED = 7
OFPET_TABLE_MOD_FAILED = 8
OFPET_QUEUE_OP_FAILED = 9
OFPET_SWITCH_CONFIG_FAILED = 10
OFPET_ROLE_REQUEST_FAILED = 11
OFPET_METER_MOD_FAILED = 12
OFPET_TABLE_FEATURES_FAILED = 13
OFPET_EXPERIMENTER = 0xFFFF

OFPHFC_INCOMPATIBLE = 0
OFPHFC_EPERM = 1

OFPBRC_BAD_VERSION = 0
OFPBRC_BAD_TYPE = 1
OFPBRC_BAD_MULTIPART = 2
OFPBRC_BAD_EXPERIMENTER = 3
OFPBRC_BAD_EXP_TYPE = 4
OFPBRC_EPERM = 5
OFPBRC_BAD_LEN = 6
OFPBRC_BUFFER_EMPTY = 7
OFPBRC_BUFFER_UNKNOWN = 8
OFPBRC_BAD_TABLE_ID = 9
OFPBRC_IS_SLAVE = 10
OFPBRC_BAD_PORT = 11
OFPBRC_BAD_PACKET = 12
OFPBRC_MULTIPART_BUFFER_OVERFLOW = 13

OFPBAC_BAD_TYPE = 0
OFPBAC_BAD_LEN = 1
OFPBAC_BAD_EXPERIMENTER = 2
OFPBAC_BAD_EXP_TYPE = 3
OFPBAC_BAD_OUT_PORT = 4
OFPBAC_BAD_ARGUMENT = 5
OFPBAC_EPERM = 6
OFPBAC_TOO_MANY = 7
OFPBAC_BAD_QUEUE = 8
OFPBAC_BAD_OUT_GROUP = 9
OFPBAC_MATCH_INCONSISTENT = 10
OFPBAC_UNSUPPORTED_ORDER = 11
OFPBAC_BAD_TAG = 12
OFPBAC_BAD_SET_TYPE = 13
OFPBAC_BAD_SET_LEN = 14
OFPBAC_BAD_SET_ARGUMENT = 15

OFPBIC_UNKNOWN_INST = 0
OFPBIC_UNSUP_INST = 1
OFPBIC_BAD_TABLE_ID = 2
OFPBIC_UNSUP_METADATA = 3
OFPBIC_UNSUP_METADATA_MASK = 4
OFPBIC_BAD_EXPERIMENTER = 5
OFPBIC_BAD_EXP_TYPE = 6
OFPBIC_BAD_LEN = 7
OFPBIC_EPERM = 8
OFPBIC_DUP_INST = 9

OFPBMC_BAD_TYPE = 0
OFPBMC_BAD_LEN = 1
OFPBMC_BAD_TAG = 2
OFPBMC_BAD_DL_ADDR_MASK = 3
OFPBMC_BAD_NW_ADDR_MASK = 4
OFPBMC_BAD_WILDCARDS = 5
OFPBMC_BAD_FIELD = 6
OFPBMC_BAD_VALUE = 7
OFPBMC_BAD_MASK = 8
OFPBMC_BAD_PREREQ = 9
OFPBMC_DUP_FIELD = 10
OFPBMC_EPERM = 11

OFPFMFC_UNKNOWN = 0
OFPFMFC_TABLE_FULL = 1
OFPFMFC_BAD_TABLE_ID = 2
OFPFMFC_OVERLAP = 3
OFPFMFC_EPERM = 4
OFPFMFC_BAD_TIMEOUT = 5
OFPFMFC_BAD_COMMAND = 6
OFPFMFC_BAD_FLAGS = 7

OFPGMFC_GROUP_EXISTS = 0
OFPGMFC_INVALID_GROUP = 1
OFPGMFC_WEIGHT_UNSUPPORTED = 2
OFPGMFC_OUT_OF_GROUPS = 3
OFPGMFC_OUT_OF_BUCKETS = 4
OFPGMFC_CHAINING_UNSUPPORTED = 5
OFPGMFC_WATCH_UNSUPPORTED = 6
OFPGMFC_LOOP = 7
OFPGMFC_UNKNOWN_GROUP = 8
OFPGMFC_CHAINED_GROUP = 9
OFPGMFC_BAD_TYPE = 10
OFPGMFC_BAD_COMMAND = 11
OFPGMFC_BAD_BUCKET = 12
OFPGMFC_BAD_WATCH = 13
OFPGMFC_EPERM = 14

OFPPMFC_BAD_PORT = 0
OFPPMFC_BAD_HW_ADDR = 1
OFPPMFC_BAD_CONFIG = 2
OFPPMFC_BAD_ADVERTISE = 3
OFPPMFC_EPERM = 4

OFPTMFC_BAD_TABLE = 0
OFPTMFC_BAD_CONFIG = 1
OFPTMFC_EPERM = 2

OFPQOFC_BAD_PORT = 0
OFPQOFC_BAD_QUEUE = 1
OFPQOFC_EPERM = 2

OFPSCFC_BAD_FLAGS = 0
OFPSCFC_BAD_LEN = 1
OFPSCFC_EPERM = 2

OFPRRFC_STALE = 0
OFPRRFC_UNSUP = 1
OFPRRFC_BAD_ROLE = 2

OFPMMFC_UNKNOWN = 0
OFPMMFC_METER_EXISTS = 1
OFPMMFC_INVALID_METER = 2
OFPMMFC_UNKNOWN_METER = 3
OFPMMFC_BAD_COMMAND = 4
OFPMMFC_BAD_FLAGS = 5
OFPMMFC_BAD_RATE = 6
OFPMMFC_BAD_BURST = 7
OFPMMFC_BAD_BAND = 8
OFPMMFC_BAD_BAND_VALUE = 9
OFPMMFC_OUT_OF_METERS = 10
OFPMMFC_OUT_OF_BANDS = 11

OFPTFFC_BAD_TABLE = 0
OFPTFFC_BAD_METADATA = 1
OFPTFFC_BAD_TYPE = 2
OFPTFFC_BAD_LEN = 3
OFPTFFC_BAD_ARGUMENT = 4
OFPTFFC_EPERM = 5

_msg = dataclass(frozen=True, kw_only=True)


# --- symmetric and controller-to-switch messages ---------------------------

@_msg
class Hello:
    """versions: the OpenFlow version numbers the sender speaks (4 = 1.3)."""

    xid: int = 0
    versions: frozenset[int] = frozenset({OFP_VERSION})


@_msg
class Error:
    """For type OFPET_EXPERIMENTER, code is exp_type and data starts with the
    4-byte experimenter id."""

    xid: int = 0
    type: int = 0
    code: int = 0
    data: bytes = b""


@_msg
class EchoRequest:
    xid: int = 0
    data: bytes = b""


@_msg
class EchoReply:
    xid: int = 0
    data: bytes = b""


@_msg
class Experimenter:
    xid: int = 0
    experimenter: int = 0
    exp_type: int = 0
    data: bytes = b""


@_msg
class FeaturesRequest:
    xid: int = 0


@_msg
class FeaturesReply:
    xid: int = 0
    datapath_id: int = 0
    n_buffers: int = 0
    n_tables: int = 0
    auxiliary_id: int = 0
    capabilities: int = 0


@_msg
class GetConfigRequest:
    xid: int = 0


@_msg
class GetConfigReply:
    xid: int = 0
    flags: int = OFPC_FRAG_NORMAL
    miss_send_len: int = 128


@_msg
class SetConfig:
    xid: int = 0
    flags: int = OFPC_FRAG_NORMAL
    miss_send_len: int = 128


@_msg
class PacketIn:
    xid: int = 0
    buffer_id: int = OFP_NO_BUFFER
    total_len: int = 0
    reason: int = ofp.OFPR_NO_MATCH
    table_id: int = 0
    cookie: int = 0
    match: ofp.Match = field(default_factory=ofp.Match)
    data: bytes = b""


@_msg
class FlowRemoved:
    xid: int = 0
    cookie: int = 0
    priority: int = OFP_DEFAULT_PRIORITY
    reason: int = ofp.OFPRR_IDLE_TIMEOUT
    table_id: int = 0
    duration_sec: int = 0
    duration_nsec: int = 0
    idle_timeout: int = 0
    hard_timeout: int = 0
    packet_count: int = 0
    byte_count: int = 0
    match: ofp.Match = field(default_factory=ofp.Match)


@_msg
class Port:
    """ofp_port.  name is at most 15 bytes of UTF-8 on the wire."""

    port_no: int = 0
    hw_addr: bytes = bytes(6)
    name: str = ""
    config: int = 0
    state: int = 0
    curr: int = 0
    advertised: int = 0
    supported: int = 0
    peer: int = 0
    curr_speed: int = 0
    max_speed: int = 0


@_msg
class PortStatus:
    xid: int = 0
    reason: int = OFPPR_ADD
    desc: Port = field(default_factory=Port)


@_msg
class PacketOut:
    xid: int = 0
    buffer_id: int = OFP_NO_BUFFER
    in_port: int = ofp.OFPP_CONTROLLER
    actions: tuple = ()
    data: bytes = b""


@_msg
class FlowMod:
    xid: int = 0
    cookie: int = 0
    cookie_mask: int = 0
    table_id: int = 0
    command: int = ofp.OFPFC_ADD
    idle_timeout: int = 0
    hard_timeout: int = 0
    priority: int = OFP_DEFAULT_PRIORITY
    buffer_id: int = OFP_NO_BUFFER
    out_port: int = ofp.OFPP_ANY
    out_group: int = ofp.OFPG_ANY
    flags: int = 0
    match: ofp.Match = field(default_factory=ofp.Match)
    instructions: tuple = ()


@_msg
class GroupMod:
    xid: int = 0
    command: int = ofp.OFPGC_ADD
    type: int = ofp.OFPGT_ALL
    group_id: int = 0
    buckets: tuple = ()


@_msg
class PortMod:
    xid: int = 0
    port_no: int = 0
    hw_addr: bytes = bytes(6)
    config: int = 0
    mask: int = 0
    advertise: int = 0


@_msg
class TableMod:
    xid: int = 0
    table_id: int = 0
    config: int = 0


@_msg
class MeterMod:
    xid: int = 0
    command: int = ofp.OFPMC_ADD
    flags: int = ofp.OFPMF_KBPS
    meter_id: int = 0
    bands: tuple = ()


@_msg
class BarrierRequest:
    xid: int = 0


@_msg
class BarrierReply:
    xid: int = 0


@_msg
class QueueGetConfigRequest:
    xid: int = 0
    port: int = ofp.OFPP_ANY


@_msg
class QueueRateProp:
    """OFPQT_MIN_RATE / OFPQT_MAX_RATE; rate in 1/10 of a percent."""

    type: int = OFPQT_MIN_RATE
    rate: int = 0


@_msg
class QueueExperimenterProp:
    experimenter: int = 0
    data: bytes = b""


@_msg
class PacketQueue:
    queue_id: int = 0
    port: int = 0
    properties: tuple = ()


@_msg
class QueueGetConfigReply:
    xid: int = 0
    port: int = 0
    queues: tuple = ()


@_msg
class RoleRequest:
    xid: int = 0
    role: int = OFPCR_ROLE_NOCHANGE
    generation_id: int = 0


@_msg
class RoleReply:
    xid: int = 0
    role: int = OFPCR_ROLE_NOCHANGE
    generation_id: int = 0


@_msg
class GetAsyncRequest:
    xid: int = 0


@_msg
class GetAsyncReply:
    """Each mask is (master/equal role mask, slave role mask)."""

    xid: int = 0
    packet_in_mask: tuple[int, int] = (0, 0)
    port_status_mask: tuple[int, int] = (0, 0)
    flow_removed_mask: tuple[int, int] = (0, 0)


@_msg
class SetAsync:
    xid: int = 0
    packet_in_mask: tuple[int, int] = (0, 0)
    port_status_mask: tuple[int, int] = (0, 0)
    flow_removed_mask: tuple[int, int] = (0, 0)


# --- multipart: one class per request/reply kind -----------------------------

@_msg
class DescRequest:
    xid: int = 0
    flags: int = 0


@_msg
class DescReply:
    xid: int = 0
    flags: int = 0
    mfr_desc: str = ""
    hw_desc: str = ""
    sw_desc: str = ""
    serial_num: str = ""
    dp_desc: str = ""


@_msg
class FlowStatsRequest:
    xid: int = 0
    flags: int = 0
    table_id: int = ofp.OFPTT_ALL
    out_port: int = ofp.OFPP_ANY
    out_group: int = ofp.OFPG_ANY
    cookie: int = 0
    cookie_mask: int = 0
    match: ofp.Match = field(default_factory=ofp.Match)


@_msg
class FlowStats:
    table_id: int = 0
    duration_sec: int = 0
    duration_nsec: int = 0
    priority: int = OFP_DEFAULT_PRIORITY
    idle_timeout: int = 0
    hard_timeout: int = 0
    flags: int = 0
    cookie: int = 0
    packet_count: int = 0
    byte_count: int = 0
    match: ofp.Match = field(default_factory=ofp.Match)
    instructions: tuple = ()


@_msg
class FlowStatsReply:
    xid: int = 0
    flags: int = 0
    flows: tuple = ()


@_msg
class AggregateStatsRequest:
    xid: int = 0
    flags: int = 0
    table_id: int = ofp.OFPTT_ALL
    out_port: int = ofp.OFPP_ANY
    out_group: int = ofp.OFPG_ANY
    cookie: int = 0
    cookie_mask: int = 0
    match: ofp.Match = field(default_factory=ofp.Match)


@_msg
class AggregateStatsReply:
    xid: int = 0
    flags: int = 0
    packet_count: int = 0
    byte_count: int = 0
    flow_count: int = 0


@_msg
class TableStatsRequest:
    xid: int = 0
    flags: int = 0


@_msg
class TableStats:
    table_id: int = 0
    active_count: int = 0
    lookup_count: int = 0
    matched_count: int = 0


@_msg
class TableStatsReply:
    xid: int = 0
    flags: int = 0
    stats: tuple = ()


@_msg
class PortStatsRequest:
    xid: int = 0
    flags: int = 0
    port_no: int = ofp.OFPP_ANY


@_msg
class PortStats:
    port_no: int = 0
    rx_packets: int = 0
    tx_packets: int = 0
    rx_bytes: int = 0
    tx_bytes: int = 0
    rx_dropped: int = 0
    tx_dropped: int = 0
    rx_errors: int = 0
    tx_errors: int = 0
    rx_frame_err: int = 0
    rx_over_err: int = 0
    rx_crc_err: int = 0
    collisions: int = 0
    duration_sec: int = 0
    duration_nsec: int = 0


@_msg
class PortStatsReply:
    xid: int = 0
    flags: int = 0
    stats: tuple = ()


@_msg
class QueueStatsRequest:
    xid: int = 0
    flags: int = 0
    port_no: int = ofp.OFPP_ANY
    queue_id: int = OFPQ_ALL


@_msg
class QueueStats:
    port_no: int = 0
    queue_id: int = 0
    tx_bytes: int = 0
    tx_packets: int = 0
    tx_errors: int = 0
    duration_sec: int = 0
    duration_nsec: int = 0


@_msg
class QueueStatsReply:
    xid: int = 0
    flags: int = 0
    stats: tuple = ()


@_msg
class GroupStatsRequest:
    xid: int = 0
    flags: int = 0
    group_id: int = OFPG_ALL


@_msg
class GroupStats:
    """bucket_stats: one (packet_count, byte_count) per bucket."""

    group_id: int = 0
    ref_count: int = 0
    packet_count: int = 0
    byte_count: int = 0
    duration_sec: int = 0
    duration_nsec: int = 0
    bucket_stats: tuple = ()


@_msg
class GroupStatsReply:
    xid: int = 0
    flags: int = 0
    stats: tuple = ()


@_msg
class GroupDescRequest:
    xid: int = 0
    flags: int = 0


@_msg
class GroupDesc:
    type: int = ofp.OFPGT_ALL
    group_id: int = 0
    buckets: tuple = ()


@_msg
class GroupDescReply:
    xid: int = 0
    flags: int = 0
    groups: tuple = ()


@_msg
class GroupFeaturesRequest:
    xid: int = 0
    flags: int = 0


@_msg
class GroupFeaturesReply:
    """max_groups and actions: one entry per group type (all, select,
    indirect, ff); actions are bitmaps of OFPAT_* (bit n = action type n)."""

    xid: int = 0
    flags: int = 0
    types: int = 0
    capabilities: int = 0
    max_groups: tuple = (0, 0, 0, 0)
    actions: tuple = (0, 0, 0, 0)


@_msg
class MeterStatsRequest:
    xid: int = 0
    flags: int = 0
    meter_id: int = OFPM_ALL


@_msg
class MeterStats:
    """band_stats: one (packet_band_count, byte_band_count) per band."""

    meter_id: int = 0
    flow_count: int = 0
    packet_in_count: int = 0
    byte_in_count: int = 0
    duration_sec: int = 0
    duration_nsec: int = 0
    band_stats: tuple = ()


@_msg
class MeterStatsReply:
    xid: int = 0
    flags: int = 0
    stats: tuple = ()


@_msg
class MeterConfigRequest:
    xid: int = 0
    flags: int = 0
    meter_id: int = OFPM_ALL


@_msg
class MeterConfig:
    flags: int = 0
    meter_id: int = 0
    bands: tuple = ()


@_msg
class MeterConfigReply:
    xid: int = 0
    flags: int = 0
    configs: tuple = ()


@_msg
class MeterFeaturesRequest:
    xid: int = 0
    flags: int = 0


@_msg
class MeterFeaturesReply:
    xid: int = 0
    flags: int = 0
    max_meter: int = 0
    band_types: int = 0
    capabilities: int = 0
    max_bands: int = 0
    max_color: int = 0


@_msg
class TableFeatureProp:
    """One table-feature property.  ids by property type:
    instructions -> OFPIT_* ints; next_tables -> table ids; write/apply actions ->
    OFPAT_* ints; match/wildcards/setfield -> 32-bit OXM headers.  An experimenter
    instruction/action/OXM id is the tuple (type_or_header, experimenter).
    Experimenter properties (OFPTFPT_EXPERIMENTER[_MISS]) keep experimenter,
    exp_type and the raw data instead of ids."""

    type: int = OFPTFPT_INSTRUCTIONS
    ids: tuple = ()
    experimenter: int = 0
    exp_type: int = 0
    data: bytes = b""


@_msg
class TableFeatures:
    table_id: int = 0
    name: str = ""
    metadata_match: int = 0
    metadata_write: int = 0
    config: int = 0
    max_entries: int = 0
    properties: tuple = ()


@_msg
class TableFeaturesRequest:
    """Empty tables = just a query; otherwise a request to reconfigure."""

    xid: int = 0
    flags: int = 0
    tables: tuple = ()


@_msg
class TableFeaturesReply:
    xid: int = 0
    flags: int = 0
    tables: tuple = ()


@_msg
class PortDescRequest:
    xid: int = 0
    flags: int = 0


@_msg
class PortDescReply:
    xid: int = 0
    flags: int = 0
    ports: tuple = ()


MULTIPART_REQUESTS: dict[type, int] = {
    DescRequest: OFPMP_DESC,
    FlowStatsRequest: OFPMP_FLOW,
    AggregateStatsRequest: OFPMP_AGGREGATE,
    TableStatsRequest: OFPMP_TABLE,
    PortStatsRequest: OFPMP_PORT_STATS,
    QueueStatsRequest: OFPMP_QUEUE,
    GroupStatsRequest: OFPMP_GROUP,
    GroupDescRequest: OFPMP_GROUP_DESC,
    GroupFeaturesRequest: OFPMP_GROUP_FEATURES,
    MeterStatsRequest: OFPMP_METER,
    MeterConfigRequest: OFPMP_METER_CONFIG,
    MeterFeaturesRequest: OFPMP_METER_FEATURES,
    TableFeaturesRequest: OFPMP_TABLE_FEATURES,
    PortDescRequest: OFPMP_PORT_DESC,
}
MULTIPART_REPLIES: dict[type, int] = {
    DescReply: OFPMP_DESC,
    FlowStatsReply: OFPMP_FLOW,
    AggregateStatsReply: OFPMP_AGGREGATE,
    TableStatsReply: OFPMP_TABLE,
    PortStatsReply: OFPMP_PORT_STATS,
    QueueStatsReply: OFPMP_QUEUE,
    GroupStatsReply: OFPMP_GROUP,
    GroupDescReply: OFPMP_GROUP_DESC,
    GroupFeaturesReply: OFPMP_GROUP_FEATURES,
    MeterStatsReply: OFPMP_METER,
    MeterConfigReply: OFPMP_METER_CONFIG,
    MeterFeaturesReply: OFPMP_METER_FEATURES,
    TableFeaturesReply: OFPMP_TABLE_FEATURES,
    PortDescReply: OFPMP_PORT_DESC,
}

# The list field of each multipart reply whose entries encode_split may spread
# over several messages (replies with a single fixed body are not split).
REPLY_LIST_FIELD: dict[type, str] = {
    FlowStatsReply: "flows",
    TableStatsReply: "stats",
    PortStatsReply: "stats",
    QueueStatsReply: "stats",
    GroupStatsReply: "stats",
    GroupDescReply: "groups",
    MeterStatsReply: "stats",
    MeterConfigReply: "configs",
    TableFeaturesReply: "tables",
    PortDescReply: "ports",
}
