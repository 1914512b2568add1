/* fastpath.h -- the vswitch packet-classification core.
 *
 * What it is
 * ==========
 * Given a batch of Ethernet frames and the in_port of each, decide what
 * happens to every frame: which ports it leaves on (with which bytes), which
 * frames go up to the controller, which are dropped.  No I/O happens here;
 * the datapath (poll threads) and the tests hand frames in and take the
 * results out.
 *
 *   frame --parse--> struct vs_key
 *         --EMC (exact key)------------------hit--> action program
 *         --megaflow cache (masked key)-------hit--> action program
 *         --pipeline: tables 0..254, each a tuple-space classifier
 *           (translate: run the OpenFlow instructions on a copy of the key,
 *            compose one flat action program, note every header bit any
 *            lookup consulted = the megaflow mask) --> cache, program
 *         --execute program on the frame bytes--> emits / upcalls
 *
 * Keys
 * ====
 * struct vs_key holds every field as the big-endian bytes of its OXM
 * encoding, at a fixed offset, so that a match value from the wire is a
 * memcpy and a masked compare is a loop over 64-bit words.  Fields that
 * OpenFlow keeps apart but that can never be present together share storage
 * (as in Open vSwitch): tcp/udp/sctp ports live in tp_src/tp_dst, ICMPv4
 * and ICMPv6 type/code in icmp_type/icmp_code, ARP SPA/TPA in ipv4_src/dst,
 * ARP SHA/THA in nd_sll/nd_tll.  OXM prerequisites keep them apart: a rule
 * can only test tp_dst as a TCP port if it also pins ip_proto to 6.
 * A field absent from the frame is all-zero in the key.
 *
 * Rules and tables
 * ================
 * A pipeline owns VS_N_TABLES tables (ids 0..254).  A table is a tuple space
 * classifier: one subtable per distinct mask, each a hash table of rules
 * keyed by the masked key; rules with the same masked key chain in priority
 * order.  Subtables are kept sorted by the highest priority they hold, so a
 * lookup stops as soon as the best rule found outranks every subtable not
 * yet searched.  The union of the masks of the subtables a lookup visited is
 * exactly the set of header bits the result depends on.
 *
 * Caches (per context, that is per poll thread: no locking inside)
 * ======
 *  - megaflow cache: masked key -> composed program, one subtable per
 *    distinct megaflow mask.  Megaflows may overlap; any one that matches
 *    gives the right answer because each is exact on every bit the pipeline
 *    consulted.
 *  - EMC: exact key -> megaflow entry, direct-mapped.  A miss inserts only
 *    with probability 1/emc_insert_inv_prob, so a flood of distinct
 *    microflows does not evict the few heavy ones (OVS's lesson).
 * Every change to tables, groups, meters or ports bumps pipeline->gen; a
 * context whose cached generation differs flushes both caches before it
 * uses them.  Flushing is O(1) (arena reset + hash table clear).
 *
 * Thread safety
 * =============
 * One control thread mutates a pipeline (flow/group/meter mods, ports,
 * expiry); any number of poll threads run batches, each with its own
 * vs_context.  The rule is a reader-writer lock per pipeline
 * (pipeline->lock, writer-preferring):
 *  - vs_process_batch() holds it for reading for the whole batch: tables,
 *    rules, groups and meters it sees cannot be freed or changed under it,
 *    and the generation it checked at the start stays valid to the end.
 *  - every mutating vs_pipeline_* call holds it for writing.
 * What readers write to shared memory is only counters: rule/table/group
 * stats are added with relaxed atomics (summed once per batch per megaflow,
 * not per packet), meter buckets take the meter's own spinlock.
 * Results (emits, upcalls) point into the context's arena and into the
 * caller's input frames; they stay valid until the next vs_process_batch()
 * on the same context.
 */
#ifndef VSWITCH_FASTPATH_H
#define VSWITCH_FASTPATH_H

#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------------- */
/* OpenFlow constants the core needs (values from the OpenFlow 1.3.5 spec). */

#define VS_N_TABLES        255          /* table ids 0..254 */
#define VS_OFPTT_ALL       0xff

#define VS_OFPP_MAX        0xffffff00u
#define VS_OFPP_IN_PORT    0xfffffff8u
#define VS_OFPP_TABLE      0xfffffff9u
#define VS_OFPP_NORMAL     0xfffffffau
#define VS_OFPP_FLOOD      0xfffffffbu
#define VS_OFPP_ALL        0xfffffffcu
#define VS_OFPP_CONTROLLER 0xfffffffdu
#define VS_OFPP_LOCAL      0xfffffffeu
#define VS_OFPP_ANY        0xffffffffu
#define VS_OFPG_ANY        0xffffffffu
#define VS_OFPG_MAX        0xffffff00u
#define VS_OFPM_MAX        0xffff0000u
#define VS_OFPCML_NO_BUFFER 0xffff

#define VS_OFPVID_PRESENT  0x1000

/* OXM_OF_* field ids (class 0x8000); VS_F_* index vs_field_info[]. */
enum vs_field_id {
    VS_F_IN_PORT = 0, VS_F_IN_PHY_PORT = 1, VS_F_METADATA = 2,
    VS_F_ETH_DST = 3, VS_F_ETH_SRC = 4, VS_F_ETH_TYPE = 5,
    VS_F_VLAN_VID = 6, VS_F_VLAN_PCP = 7, VS_F_IP_DSCP = 8, VS_F_IP_ECN = 9,
    VS_F_IP_PROTO = 10, VS_F_IPV4_SRC = 11, VS_F_IPV4_DST = 12,
    VS_F_TCP_SRC = 13, VS_F_TCP_DST = 14, VS_F_UDP_SRC = 15,
    VS_F_UDP_DST = 16, VS_F_SCTP_SRC = 17, VS_F_SCTP_DST = 18,
    VS_F_ICMPV4_TYPE = 19, VS_F_ICMPV4_CODE = 20, VS_F_ARP_OP = 21,
    VS_F_ARP_SPA = 22, VS_F_ARP_TPA = 23, VS_F_ARP_SHA = 24,
    VS_F_ARP_THA = 25, VS_F_IPV6_SRC = 26, VS_F_IPV6_DST = 27,
    VS_F_IPV6_FLABEL = 28, VS_F_ICMPV6_TYPE = 29, VS_F_ICMPV6_CODE = 30,
    VS_F_IPV6_ND_TARGET = 31, VS_F_IPV6_ND_SLL = 32, VS_F_IPV6_ND_TLL = 33,
    VS_F_MPLS_LABEL = 34, VS_F_MPLS_TC = 35, VS_F_MPLS_BOS = 36,
    VS_F_PBB_ISID = 37, VS_F_TUNNEL_ID = 38, VS_F_IPV6_EXTHDR = 39,
    VS_N_OXM_FIELDS = 40,
    /* Not OXM basic, but parsed and matchable (as in Open vSwitch's NXM):
     * ip_frag (VS_FRAG_*), tcp_flags (12 bits), ip_ttl (for trace). */
    VS_F_IP_FRAG = 40, VS_F_TCP_FLAGS = 41, VS_F_IP_TTL = 42,
    /* Tunnel metadata (Open vSwitch's NXM_NX_TUN_IPV4_SRC/DST): the outer
     * addresses a frame arrived with from a tunnel port; set_field of
     * tun_ipv4_dst picks a flow-based tunnel's remote. */
    VS_F_TUN_IPV4_SRC = 43, VS_F_TUN_IPV4_DST = 44,
    VS_N_FIELDS = 45
};

/* ip_frag bits (Open vSwitch's nw_frag). */
#define VS_FRAG_ANY   0x01   /* the packet is a fragment */
#define VS_FRAG_LATER 0x02   /* ...and not the first one */

/* ipv6_exthdr pseudo-field bits (OFPIEH_*). */
#define VS_IEH_NONEXT 0x001
#define VS_IEH_ESP    0x002
#define VS_IEH_AUTH   0x004
#define VS_IEH_DEST   0x008
#define VS_IEH_FRAG   0x010
#define VS_IEH_ROUTER 0x020
#define VS_IEH_HOP    0x040
#define VS_IEH_UNREP  0x080
#define VS_IEH_UNSEQ  0x100

/* ---------------------------------------------------------------------- */
/* The flow key.  All multi-byte fields are big-endian (network order).     */

struct vs_key {
    uint8_t in_port[4];        /*   0 */
    uint8_t in_phy_port[4];    /*   4 */
    uint8_t metadata[8];       /*   8 */
    uint8_t tunnel_id[8];      /*  16 */
    uint8_t eth_dst[6];        /*  24 */
    uint8_t eth_src[6];        /*  30 */
    uint8_t eth_type[2];       /*  36 ethertype after all VLAN tags */
    uint8_t vlan_vid[2];       /*  38 outer tag: VS_OFPVID_PRESENT|vid, 0 if none */
    uint8_t vlan_pcp;          /*  40 outer tag */
    uint8_t ip_dscp;           /*  41 6 bits */
    uint8_t ip_ecn;            /*  42 2 bits */
    uint8_t ip_proto;          /*  43 IPv4 protocol / IPv6 final next header */
    uint8_t mpls_label[4];     /*  44 20 bits, top of stack */
    uint8_t mpls_tc;           /*  48 3 bits */
    uint8_t mpls_bos;          /*  49 1 bit */
    uint8_t ip_frag;           /*  50 VS_FRAG_* */
    uint8_t ip_ttl;            /*  51 IPv4 TTL / IPv6 hop limit */
    uint8_t ipv4_src[4];       /*  52 also ARP SPA */
    uint8_t ipv4_dst[4];       /*  56 also ARP TPA */
    uint8_t arp_op[2];         /*  60 */
    uint8_t ipv6_exthdr[2];    /*  62 VS_IEH_* */
    uint8_t ipv6_src[16];      /*  64 */
    uint8_t ipv6_dst[16];      /*  80 */
    uint8_t ipv6_flabel[4];    /*  96 20 bits */
    uint8_t tp_src[2];         /* 100 TCP/UDP/SCTP */
    uint8_t tp_dst[2];         /* 102 */
    uint8_t tcp_flags[2];      /* 104 12 bits */
    uint8_t icmp_type;         /* 106 ICMPv4 or ICMPv6 */
    uint8_t icmp_code;         /* 107 */
    uint8_t nd_target[16];     /* 108 */
    uint8_t nd_sll[6];         /* 124 also ARP SHA */
    uint8_t nd_tll[6];         /* 130 also ARP THA */
    uint8_t vlan2_tci[2];      /* 136 inner tag (QinQ): VS_OFPVID_PRESENT|vid, pcp<<13 */
    uint8_t vlan_tpid[2];      /* 138 outer tag's TPID (0x8100 / 0x88a8), 0 if none */
    uint8_t pbb_isid[3];       /* 140 never set by the parser (no PBB parsing) */
    uint8_t present;           /* 143 VS_PRESENT_*: what the parser found; never matched */
    uint8_t tun_ipv4_src[4];   /* 144 tunnel metadata, not from the frame */
    uint8_t tun_ipv4_dst[4];   /* 148 */
};                             /* 152 bytes = 19 words; checked in classifier.c */
#define VS_KEY_SIZE   152

/* key.present bits: layers whose fields the parser could read, so that
 * actions know what a packet has even where the field values are zero. */
#define VS_PRESENT_L2     0x01   /* Ethernet header (>= 14 bytes) */
#define VS_PRESENT_L3     0x02   /* layers.l3_ok */
#define VS_PRESENT_L4     0x04   /* layers.l4_ok */
#define VS_PRESENT_ND_SLL 0x08   /* ND source link-layer address option */
#define VS_PRESENT_ND_TLL 0x10   /* ND target link-layer address option */
#define VS_PRESENT_ND     0x20   /* ND target (NS/NA, code 0, 24 bytes) */
#define VS_KEY_WORDS  (VS_KEY_SIZE / 8)

/* Where each layer starts in the frame, 0xffff if absent.  Filled by
 * vs_parse() and kept current by the action executor. */
struct vs_layers {
    uint16_t l2_5;     /* first MPLS label stack entry */
    uint16_t l3;       /* IPv4/IPv6/ARP header */
    uint16_t l4;       /* TCP/UDP/SCTP/ICMP header (first fragment only) */
    uint16_t vlan;     /* first VLAN tag (always 12 when present) */
    uint8_t  n_vlan;   /* tags parsed: 0..2 */
    uint8_t  l3_ok;    /* L3 header complete (checksums may be updated) */
    uint8_t  l4_ok;    /* L4 header complete */
    uint8_t  pad;
};
#define VS_NO_LAYER 0xffff

/* Field descriptors: offset/length of each field in struct vs_key, whether
 * OpenFlow allows a mask, and the value bits that may be nonzero (e.g. 0x1fff
 * for vlan_vid, 0x3f for dscp) as a big-endian byte string. */
struct vs_field_info {
    const char *name;          /* OXM name without OXM_OF_: "eth_dst" */
    uint16_t offset;
    uint8_t  len;
    uint8_t  maskable;
    uint8_t  valid_bits[16];   /* first len bytes meaningful */
};
extern const struct vs_field_info vs_fields[VS_N_FIELDS];

/* Parse a frame.  Never reads outside data[0..len).  A truncated frame
 * parses to the layers that are intact: the key holds what was read, the
 * rest stays zero.  key->in_port is set from in_port; metadata and
 * tunnel_id are zero.  Returns 0 (parsing never fails). */
int vs_parse(const uint8_t *data, uint32_t len, uint32_t in_port,
             struct vs_key *key, struct vs_layers *layers);

/* ---------------------------------------------------------------------- */
/* Action and instruction encoding (internal; vswitch/flowtable.py makes it).
 *
 * A list is a sequence of 8-byte aligned ops, each starting with
 * struct vs_op.  len is the op's total size in bytes including the header,
 * a multiple of 8, at least 8.  Integers are host byte order except
 * set_field values, which are the field's big-endian key bytes.
 *
 * Instructions (one list per rule, at most one of each type):
 *   VS_I_METER          arg = meter id
 *   VS_I_APPLY          followed by a nested action list (len covers it)
 *   VS_I_CLEAR
 *   VS_I_WRITE          followed by a nested action list
 *   VS_I_WRITE_METADATA u64 value, u64 mask after the header (len 24)
 *   VS_I_GOTO           arg = table id (must be greater than the rule's table)
 * They execute in this order whatever order they are listed in.
 *
 * Actions:
 *   VS_A_OUTPUT       arg = port; u16 max_len at +8 (len 16)
 *   VS_A_GROUP        arg = group id
 *   VS_A_SET_QUEUE    arg = queue id
 *   VS_A_SET_FIELD    arg = field id; value (field's length) at +8
 *   VS_A_PUSH_VLAN    arg = ethertype (0x8100 or 0x88a8)
 *   VS_A_POP_VLAN
 *   VS_A_SET_NW_TTL   arg = ttl
 *   VS_A_DEC_NW_TTL
 *   VS_A_COPY_TTL_OUT, VS_A_COPY_TTL_IN, VS_A_PUSH_MPLS, VS_A_POP_MPLS,
 *   VS_A_SET_MPLS_TTL, VS_A_DEC_MPLS_TTL, VS_A_PUSH_PBB, VS_A_POP_PBB:
 *                     recognised and refused with OFPBAC_BAD_TYPE (not
 *                     implemented yet).
 * Internal ops, only in composed programs (never accepted from callers):
 *   VS_X_CONTROLLER   arg = max_len; u8 reason, u8 table_id at +8; u64 cookie at +16 (len 24)
 *   VS_X_METER        arg = meter id
 */
struct vs_op {
    uint16_t type;
    uint16_t len;
    uint32_t arg;
};

enum vs_op_type {
    VS_I_METER = 1, VS_I_APPLY, VS_I_CLEAR, VS_I_WRITE, VS_I_WRITE_METADATA,
    VS_I_GOTO,
    VS_A_OUTPUT = 16, VS_A_GROUP, VS_A_SET_QUEUE, VS_A_SET_FIELD,
    VS_A_PUSH_VLAN, VS_A_POP_VLAN, VS_A_SET_NW_TTL, VS_A_DEC_NW_TTL,
    VS_A_COPY_TTL_OUT, VS_A_COPY_TTL_IN, VS_A_PUSH_MPLS, VS_A_POP_MPLS,
    VS_A_SET_MPLS_TTL, VS_A_DEC_MPLS_TTL, VS_A_PUSH_PBB, VS_A_POP_PBB,
    VS_X_CONTROLLER = 48, VS_X_METER
};

/* Packet-in reasons (OFPR_*). */
enum { VS_R_NO_MATCH = 0, VS_R_ACTION = 1, VS_R_INVALID_TTL = 2 };

/* ---------------------------------------------------------------------- */
/* Errors: OpenFlow error type and code, plus a human-readable message. */
struct vs_error {
    uint16_t type;            /* OFPET_*; 0 = no error */
    uint16_t code;
    char msg[128];
};
#define VS_OFPET_BAD_REQUEST        1
#define VS_OFPET_BAD_ACTION         2
#define VS_OFPET_BAD_INSTRUCTION    3
#define VS_OFPET_BAD_MATCH          4
#define VS_OFPET_FLOW_MOD_FAILED    5
#define VS_OFPET_GROUP_MOD_FAILED   6
#define VS_OFPET_METER_MOD_FAILED   12

/* ---------------------------------------------------------------------- */
/* Pipeline (tables, groups, meters, ports).  Opaque. */
struct vs_pipeline;

struct vs_pipeline *vs_pipeline_new(void);
void vs_pipeline_free(struct vs_pipeline *);
uint64_t vs_pipeline_generation(const struct vs_pipeline *);

/* Ports the pipeline knows, for FLOOD/ALL and fast-failover liveness. */
#define VS_PORT_LIVE     0x1
#define VS_PORT_NO_FLOOD 0x2
int vs_pipeline_set_port(struct vs_pipeline *, uint32_t port, uint32_t flags);
int vs_pipeline_del_port(struct vs_pipeline *, uint32_t port);

/* Flow mods (OFPFC_*) and flags (OFPFF_*). */
enum { VS_FC_ADD = 0, VS_FC_MODIFY = 1, VS_FC_MODIFY_STRICT = 2,
       VS_FC_DELETE = 3, VS_FC_DELETE_STRICT = 4 };
#define VS_FF_SEND_FLOW_REM 0x01
#define VS_FF_CHECK_OVERLAP 0x02
#define VS_FF_RESET_COUNTS  0x04
#define VS_FF_NO_PKT_COUNTS 0x08
#define VS_FF_NO_BYT_COUNTS 0x10

struct vs_flow_mod {
    uint8_t  command;
    uint8_t  table_id;         /* VS_OFPTT_ALL allowed for deletes */
    uint16_t priority;
    uint16_t flags;
    uint16_t idle_timeout;     /* seconds, 0 = none */
    uint16_t hard_timeout;
    uint16_t pad;
    uint32_t out_port;         /* delete filter, VS_OFPP_ANY = none */
    uint32_t out_group;        /* delete filter, VS_OFPG_ANY = none */
    uint64_t cookie;
    uint64_t cookie_mask;      /* modify/delete filter */
    struct vs_key match;       /* values, zero where wildcarded */
    struct vs_key mask;        /* 1-bits are matched */
    uint64_t fields;           /* bit i: the request named field i (VS_F_*); 0 = infer */
    const uint8_t *instructions;
    uint32_t instructions_len;
};

/* Apply a flow mod with OpenFlow 1.3 semantics.  On error nothing changed
 * and err says why.  Returns 0 or -1.  Rules removed with
 * VS_FF_SEND_FLOW_REM set are queued for vs_pipeline_drain_removed(). */
int vs_pipeline_flow_mod(struct vs_pipeline *, const struct vs_flow_mod *,
                         struct vs_error *err);

/* Check a match on its own: value outside the field (BAD_VALUE), mask
 * outside the field or partial on an unmaskable field (BAD_MASK), value
 * bits outside the mask (BAD_WILDCARDS), prerequisites (BAD_PREREQ).
 * Fields that share storage (tcp_dst/udp_dst/...) cannot be told apart in a
 * key, so `fields` names the OXM fields the request used (bit i = VS_F_i)
 * and their own prerequisites are checked; with fields == 0 a shared slot is
 * accepted when any of its names' prerequisites hold.  0 or -1 with err. */
int vs_match_validate(const struct vs_key *match, const struct vs_key *mask,
                      uint64_t fields, struct vs_error *err);

/* Flow entry as reported to the control plane. */
struct vs_flow_stats {
    uint8_t  table_id;
    uint8_t  reason;           /* removal reason (OFPRR_*) when removed */
    uint16_t priority;
    uint16_t flags;
    uint16_t idle_timeout;
    uint16_t hard_timeout;
    uint16_t pad;
    uint32_t instructions_len;
    uint64_t cookie;
    uint64_t packet_count;
    uint64_t byte_count;
    uint64_t duration_ns;
    uint64_t idle_ns;          /* time since the entry last matched a packet */
    struct vs_key match;
    struct vs_key mask;
    uint8_t *instructions;     /* owned by the list */
};
enum { VS_RR_IDLE_TIMEOUT = 0, VS_RR_HARD_TIMEOUT = 1, VS_RR_DELETE = 2,
       VS_RR_GROUP_DELETE = 3, VS_RR_METER_DELETE = 4 };

struct vs_flow_list {
    size_t n;
    struct vs_flow_stats *flows;
};
/* Rules of table_id (or all tables) selected like a non-strict delete would
 * select them (match filter, out_port, out_group, cookie/mask), in table
 * order then descending priority.  Pass a zero mask to select all. */
struct vs_flow_list *vs_pipeline_dump(struct vs_pipeline *, uint8_t table_id,
                                      const struct vs_key *match,
                                      const struct vs_key *mask,
                                      uint32_t out_port, uint32_t out_group,
                                      uint64_t cookie, uint64_t cookie_mask);
/* What vs_pipeline_dump would select, summed without copying anything:
 * the counters of AGGREGATE requests.  Returns 0, or -1 for a bad table
 * id or no memory. */
struct vs_aggregate {
    uint64_t packet_count;
    uint64_t byte_count;
    uint32_t flow_count;
    uint32_t pad;
};
int vs_pipeline_aggregate(struct vs_pipeline *, uint8_t table_id, const struct vs_key *match,
                          const struct vs_key *mask, uint32_t out_port, uint32_t out_group,
                          uint64_t cookie, uint64_t cookie_mask, struct vs_aggregate *);
/* Remove entries whose timeouts have passed at monotonic time now_ns
 * (0 = now); removed entries with SEND_FLOW_REM are queued. Returns count. */
size_t vs_pipeline_expire(struct vs_pipeline *, uint64_t now_ns);
/* Take the queued removal records (NULL if none). */
struct vs_flow_list *vs_pipeline_drain_removed(struct vs_pipeline *);
void vs_flow_list_free(struct vs_flow_list *);

struct vs_table_stats {
    uint32_t active_count;
    uint32_t n_subtables;
    uint64_t lookup_count;
    uint64_t matched_count;
};
int vs_pipeline_table_stats(struct vs_pipeline *, uint8_t table_id,
                            struct vs_table_stats *out);

/* Groups (OFPGT_*, OFPGC_*).  Buckets are laid out back to back:
 *   struct vs_bucket_hdr, then actions_len bytes of action list. */
enum { VS_GT_ALL = 0, VS_GT_SELECT = 1, VS_GT_INDIRECT = 2, VS_GT_FF = 3 };
enum { VS_GC_ADD = 0, VS_GC_MODIFY = 1, VS_GC_DELETE = 2 };
struct vs_bucket_hdr {
    uint16_t weight;
    uint16_t pad;
    uint32_t watch_port;       /* VS_OFPP_ANY = none */
    uint32_t watch_group;      /* VS_OFPG_ANY = none */
    uint32_t actions_len;
};
int vs_pipeline_group_mod(struct vs_pipeline *, uint8_t command, uint8_t type,
                          uint32_t group_id, const uint8_t *buckets,
                          uint32_t buckets_len, struct vs_error *err);
struct vs_group_stats {
    uint32_t group_id;
    uint8_t  type;
    uint8_t  pad[3];
    uint32_t ref_count;        /* rules that name the group */
    uint32_t n_buckets;
    uint64_t packet_count;
    uint64_t byte_count;
    uint64_t duration_ns;
    uint64_t bucket_packets[32];
    uint64_t bucket_bytes[32];
};
/* Fills up to max entries sorted by group id; returns the number of groups. */
size_t vs_pipeline_group_stats(struct vs_pipeline *, struct vs_group_stats *out,
                               size_t max);

/* Meters (OFPMC_*, OFPMF_*, OFPMBT_*). */
enum { VS_MC_ADD = 0, VS_MC_MODIFY = 1, VS_MC_DELETE = 2 };
#define VS_MF_KBPS  0x1
#define VS_MF_PKTPS 0x2
#define VS_MF_BURST 0x4
#define VS_MF_STATS 0x8
enum { VS_MBT_DROP = 1, VS_MBT_DSCP_REMARK = 2 };
struct vs_meter_band {
    uint16_t type;
    uint8_t  prec_level;       /* DSCP remark */
    uint8_t  pad;
    uint32_t rate;             /* kb/s or packets/s per flags */
    uint32_t burst_size;       /* kb or packets; 0 = rate's worth */
    uint32_t pad2;
    uint64_t packet_count;     /* out: packets the band applied to */
    uint64_t byte_count;
};
#define VS_MAX_BANDS 8
int vs_pipeline_meter_mod(struct vs_pipeline *, uint8_t command, uint16_t flags,
                          uint32_t meter_id, const struct vs_meter_band *bands,
                          uint32_t n_bands, struct vs_error *err);
struct vs_meter_stats {
    uint32_t meter_id;
    uint16_t flags;
    uint16_t n_bands;
    uint32_t flow_count;
    uint32_t pad;
    uint64_t packet_in_count;
    uint64_t byte_in_count;
    uint64_t duration_ns;
    struct vs_meter_band bands[VS_MAX_BANDS];
};
size_t vs_pipeline_meter_stats(struct vs_pipeline *, struct vs_meter_stats *out,
                               size_t max);

/* Trace: which rule each table's lookup found for a frame, and the
 * megaflow mask the result depends on (what ofproto/trace shows). */
struct vs_trace_step {
    uint8_t  table_id;
    uint8_t  matched;          /* 0: table miss */
    uint16_t priority;
    uint32_t pad;
    uint64_t cookie;
    struct vs_key match;
    struct vs_key mask;
};
/* Where the frame would go: an emit (port, queue, len) or an upcall
 * (is_upcall, reason, table_id, cookie). */
struct vs_trace_output {
    uint32_t port;
    uint32_t queue;
    uint32_t len;
    uint8_t  is_upcall;
    uint8_t  reason;
    uint8_t  table_id;
    uint8_t  pad;
    uint64_t cookie;
};
/* Returns the number of steps written (<= max), or -1 on error.  The frame
 * is run as a dry run: no flow, table, group or meter counter moves and no
 * meter consumes tokens (meters pass everything).  *n_outs is set to the
 * number of outputs written (<= max_outs). */
int vs_pipeline_trace(struct vs_pipeline *, const uint8_t *frame, uint32_t len,
                      uint32_t in_port, struct vs_trace_step *steps, uint32_t max,
                      struct vs_key *megaflow_mask, struct vs_trace_output *outs,
                      uint32_t max_outs, uint32_t *n_outs);

/* ---------------------------------------------------------------------- */
/* Contexts and batches. */

struct vs_context_config {
    uint32_t emc_entries;          /* power of two; 0 = EMC off */
    uint32_t emc_insert_inv_prob;  /* insert 1 in N misses; 1 = always */
    uint32_t megaflow_max;         /* entries before a flush; 0 = cache off */
    uint32_t max_emits;            /* per batch; more are counted, dropped */
    uint32_t max_upcalls;          /* per batch; more are counted, dropped */
};

struct vs_context;
struct vs_context *vs_context_new(const struct vs_context_config *);
void vs_context_free(struct vs_context *);

/* A frame leaving on a port.  data points at the caller's input frame if
 * no action changed it, else into the context's arena. */
struct vs_emit {
    uint32_t pkt;              /* index in the batch */
    uint32_t port;             /* port number, VS_OFPP_LOCAL or VS_OFPP_NORMAL */
    uint32_t queue;            /* set_queue, 0 by default */
    uint32_t len;
    const uint8_t *data;
    uint64_t tunnel_id;        /* the packet's tunnel_id when it was output */
    uint8_t  tun_ipv4_dst[4];  /* and its tun_ipv4_dst */
    uint8_t  pad[4];
};
/* A frame for the controller (CONTROLLER action, table-miss entry with
 * output:CONTROLLER, invalid TTL). */
struct vs_upcall {
    uint32_t pkt;
    uint8_t  reason;           /* VS_R_* */
    uint8_t  table_id;
    uint16_t max_len;
    uint64_t cookie;
    uint64_t metadata;
    uint64_t tunnel_id;
    uint32_t in_port;
    uint32_t len;              /* whole frame; max_len tells how much to send */
    const uint8_t *data;
};

struct vs_batch_result {
    uint32_t n_emits;
    uint32_t n_upcalls;
    struct vs_emit *emits;     /* in packet order */
    struct vs_upcall *upcalls;
};

/* Per-context counters, cumulative. */
struct vs_context_stats {
    uint64_t packets;
    uint64_t batches;
    uint64_t emc_hits;
    uint64_t megaflow_hits;
    uint64_t misses;            /* full pipeline runs */
    uint64_t emc_inserts;
    uint64_t megaflows;         /* entries now in the megaflow cache */
    uint64_t megaflow_subtables;
    uint64_t flushes;           /* cache flushes on generation change/full */
    uint64_t emits;
    uint64_t emit_overflow;     /* emits dropped: max_emits reached */
    uint64_t upcalls;
    uint64_t upcall_overflow;   /* upcalls dropped: max_upcalls reached */
    uint64_t drops;             /* packets that left on no port */
    uint64_t meter_drops;
    uint64_t invalid_ttl;
};
void vs_context_get_stats(const struct vs_context *, struct vs_context_stats *);

/* Run n frames (frames[i], lens[i], arriving on in_ports[i]) through the
 * pipeline.  n <= VS_MAX_BATCH.  now_ns = 0 reads CLOCK_MONOTONIC. */
#define VS_MAX_BATCH 256
int vs_process_batch(struct vs_context *, struct vs_pipeline *,
                     const uint8_t *const *frames, const uint32_t *lens,
                     const uint32_t *in_ports, uint32_t n,
                     struct vs_batch_result *out);

/* The tunnel metadata a frame arrived with (from a tunnel port). */
struct vs_tun_md {
    uint64_t tunnel_id;        /* the VNI */
    uint8_t  ipv4_src[4];      /* the outer source: the remote */
    uint8_t  ipv4_dst[4];      /* the outer destination: this host */
};
/* The same, with the tunnel metadata of each frame (md NULL = all zero):
 * matchable as tunnel_id / tun_ipv4_src / tun_ipv4_dst; tunnel_id and
 * tun_ipv4_dst, changed or not by set_field, come back in each emit. */
int vs_process_batch_tun(struct vs_context *, struct vs_pipeline *,
                         const uint8_t *const *frames, const uint32_t *lens,
                         const uint32_t *in_ports, const struct vs_tun_md *md, uint32_t n,
                         struct vs_batch_result *out);

/* Benchmark helper: run the same batch `rounds` times in C and return the
 * elapsed nanoseconds (no per-batch call overhead from Python). */
uint64_t vs_bench_batches(struct vs_context *, struct vs_pipeline *,
                          const uint8_t *const *frames, const uint32_t *lens,
                          const uint32_t *in_ports, uint32_t n, uint64_t rounds);

/* Benchmark helper: parse the batch `rounds` times; elapsed ns. */
uint64_t vs_bench_parse(const uint8_t *const *frames, const uint32_t *lens,
                        uint32_t n, uint64_t rounds);

#endif /* VSWITCH_FASTPATH_H */
