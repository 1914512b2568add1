/* fuzz_pipeline.c -- libFuzzer target for the control and data path of the
 * vswitch fast path (pipeline.c, classifier.c, xlate.c, context.c,
 * execute.c, parse.c).
 *
 * Input layout (consumed front to back; a short input reads as zeros):
 *
 *   u8 cfg_emc, u8 cfg_mf, u8 cfg_limits      cached context's configuration
 *                                              (cfg_limits & 0x80: also run a
 *                                              full batch of VS_MAX_BATCH)
 *   u8 n_ops, then n_ops control ops:          (n_ops % 16)
 *     u8 kind % 8:  0 set_port   1 del_port   2 meter_mod   3 group_mod
 *                   4..7 flow_mod
 *   u8 n_frames, then n_frames frames:         (1 + n_frames % 32)
 *     u8 in_port selector, u8 kind:  kind % 16 == 8: a variant of an earlier
 *                                    frame (a few bytes flipped);
 *                                    kind % 8 == 0: raw bytes (u16 length);
 *                                    otherwise a templated Ethernet frame
 *   then a few bytes for a filtered dump's selector.
 *
 * Everything is decoded by small builders driven by input bytes: they make
 * matches that usually validate (fields with their prerequisites, values
 * under their masks), instruction and action lists that are well formed
 * but for fuzzed fields (ports, field ids, values, group and meter ids,
 * goto targets), and, when a selector byte says so, raw or length-corrupted
 * encodings, so that validation sees garbage and near-valid encodings while
 * most inputs still reach translation and execution.  Values are often
 * drawn from small per-field sets shared with the frame templates so that
 * rules and frames match each other.
 *
 * Then the batch runs:
 *   1. twice through one context (caches cold, then warm: EMC / megaflows),
 *   2. once through an uncached context (emc_entries = 0, megaflow_max = 0),
 * and the three results must agree: the same emits (pkt, port, queue, len,
 * bytes) and upcalls, in the same order -- unless a meter band fired (meters
 * depend on the clock), in which case only the per-run invariants are
 * checked.  Every emit and upcall must be readable for its len (ASan), the
 * len within [min(input, 14), input + 4 * (pushes possible)], in packet
 * order, and the caller's frames must be left unmodified.  An output frame
 * must still parse as its input did (eth_type, ip_proto, L3/L4 present) and
 * keep a valid IPv4 header checksum and TCP/UDP/ICMP/ICMPv6 checksum where
 * the input had one (the templates make them valid).
 * Afterwards: dump flows (every dumped match must validate, the count must
 * equal the tables' active counts), group and meter stats, expire with a
 * far-future time (no entry with a timeout may survive), drain the removal
 * records, run the batch once more and free everything (LeakSanitizer).
 *
 * FUZZ_VERBOSE=1 in the environment prints what the control ops did and the
 * first run's frames, emits and upcalls.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fastpath.h"

#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "fuzz_pipeline: invariant failed: %s: ", #cond); \
            fprintf(stderr, __VA_ARGS__);                                    \
            fputc('\n', stderr);                                             \
            abort();                                                         \
        }                                                                    \
    } while (0)

/* FUZZ_VERBOSE=1 in the environment: print what each control op did. */
static int verbose;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *v = getenv("FUZZ_VERBOSE");
    verbose = v && *v && *v != '0';
    return 0;
}

static void report(const char *what, int rc, const struct vs_error *err)
{
    if (verbose)
        fprintf(stderr, "  %s: %s%s\n", what, rc < 0 ? "refused: " : "ok",
                rc < 0 ? err->msg : "");
}

/* ---------------------------------------------------------------------- */
/* Input reader. */

struct src {
    const uint8_t *p;
    size_t n;
};

static uint8_t u8(struct src *s)
{
    if (!s->n)
        return 0;
    s->n--;
    return *s->p++;
}
/* Little endian; each read is its own statement so that the order in
 * which bytes are consumed does not depend on the compiler. */
static uint16_t u16(struct src *s)
{
    uint16_t lo = u8(s);
    return (uint16_t)(lo | u8(s) << 8);
}
static uint32_t u32(struct src *s)
{
    uint32_t lo = u16(s);
    return lo | (uint32_t)u16(s) << 16;
}
static uint64_t u64(struct src *s)
{
    uint64_t lo = u32(s);
    return lo | (uint64_t)u32(s) << 32;
}
static void take(struct src *s, uint8_t *dst, size_t n)
{
    size_t k = n < s->n ? n : s->n;
    memcpy(dst, s->p, k);
    memset(dst + k, 0, n - k);
    s->p += k;
    s->n -= k;
}

static void put16be(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = (uint8_t)v; }
static void put32be(uint8_t *p, uint32_t v)
{
    p[0] = v >> 24; p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

/* ---------------------------------------------------------------------- */
/* Small value sets shared by rules and frames. */

static const uint32_t PORTS[] = {
    1, 2, 3, 4, 5, 6, 7, 8, VS_OFPP_IN_PORT, VS_OFPP_FLOOD, VS_OFPP_ALL,
    VS_OFPP_CONTROLLER, VS_OFPP_LOCAL, VS_OFPP_NORMAL, VS_OFPP_TABLE, VS_OFPP_ANY, 0,
    VS_OFPP_MAX, VS_OFPP_MAX + 1,
};
#define N_PORTS (sizeof PORTS / sizeof PORTS[0])

static uint32_t pick_port(struct src *s)
{
    uint8_t b = u8(s);
    return b < 0xf0 ? PORTS[b % N_PORTS] : u32(s);
}

/* Ports frames arrive on (and that in_port matches use). */
static uint32_t pick_in_port(struct src *s)
{
    uint8_t b = u8(s);
    if (b < 0xf0)
        return 1 + b % 6;              /* 1..6 */
    return b == 0xf0 ? VS_OFPP_LOCAL : b == 0xf1 ? 0 : u32(s);
}

static uint32_t pick_group(struct src *s)
{
    uint8_t b = u8(s);
    if (b < 0xf0)
        return 1 + b % 4;
    return b == 0xf0 ? VS_OFPG_ANY : b == 0xf1 ? VS_OFPG_MAX : b == 0xf2 ? 0
         : b == 0xf3 ? 0xfffffffcu /* OFPG_ALL */ : u32(s);
}

static uint32_t pick_meter(struct src *s)
{
    uint8_t b = u8(s);
    if (b < 0xf0)
        return 1 + b % 4;
    return b == 0xf0 ? 0xffffffffu : b == 0xf1 ? VS_OFPM_MAX : b == 0xf2 ? 0 : u32(s);
}

static const uint16_t ETH_TYPES[] = {0x0800, 0x86dd, 0x0806, 0x8847, 0x8848, 0x88e7,
                                     0x8100, 0x05ff};
static const uint8_t IP_PROTOS[] = {6, 17, 132, 1, 58, 0, 44, 59};
static const uint16_t TP_PORTS[] = {80, 53, 443, 1};
static const uint8_t ICMP_TYPES[] = {135, 136, 128, 8, 0, 3, 1, 2};

/* value := the idx-th small value of field f (zeros but the last byte, or
 * from the sets above for eth_type, ip_proto, ports, ICMP types). */
static void small_value(int f, unsigned idx, uint8_t *v)
{
    const struct vs_field_info *fi = &vs_fields[f];
    memset(v, 0, fi->len);
    switch (f) {
    case VS_F_ETH_TYPE:
        put16be(v, ETH_TYPES[idx % 8]);
        return;
    case VS_F_IP_PROTO:
        v[0] = IP_PROTOS[idx % 8];
        return;
    case VS_F_TCP_SRC: case VS_F_TCP_DST: case VS_F_UDP_SRC: case VS_F_UDP_DST:
    case VS_F_SCTP_SRC: case VS_F_SCTP_DST:
        put16be(v, TP_PORTS[idx % 4]);
        return;
    case VS_F_ICMPV4_TYPE: case VS_F_ICMPV6_TYPE:
        v[0] = ICMP_TYPES[idx % 8];
        return;
    case VS_F_VLAN_VID:
        put16be(v, (uint16_t)(VS_OFPVID_PRESENT | (idx % 4)));
        return;
    default:
        v[fi->len - 1] = (uint8_t)(idx % 4 + 1);
        for (unsigned i = 0; i < fi->len; i++)
            v[i] &= fi->valid_bits[i];
        return;
    }
}

/* ---------------------------------------------------------------------- */
/* Matches. */

/* Fields build_match() named in the match being built (bit i = VS_F_i). */
static uint64_t named;

static uint8_t *kfield(struct vs_key *k, int f) { return (uint8_t *)k + vs_fields[f].offset; }

static void set_exact(struct vs_key *match, struct vs_key *mask, int f, uint64_t value)
{
    const struct vs_field_info *fi = &vs_fields[f];
    uint8_t *v = kfield(match, f), *m = kfield(mask, f);
    named |= 1ull << f;
    for (int i = fi->len - 1; i >= 0; i--, value >>= 8)
        v[i] = (uint8_t)value & fi->valid_bits[i];
    memcpy(m, fi->valid_bits, fi->len);
}

/* Pins what field f's OXM prerequisites need; sel picks among choices. */
static void add_prereqs(struct vs_key *match, struct vs_key *mask, int f, uint8_t sel)
{
    uint16_t ip = sel & 1 ? 0x86dd : 0x0800;
    switch (f) {
    case VS_F_IN_PHY_PORT:
        set_exact(match, mask, VS_F_IN_PORT, 1 + sel % 6);
        break;
    case VS_F_VLAN_PCP:
        kfield(match, VS_F_VLAN_VID)[0] |= 0x10;
        kfield(mask, VS_F_VLAN_VID)[0] |= 0x10;
        named |= 1ull << VS_F_VLAN_VID;
        break;
    case VS_F_IP_DSCP: case VS_F_IP_ECN: case VS_F_IP_PROTO: case VS_F_IP_FRAG:
    case VS_F_IP_TTL:
        set_exact(match, mask, VS_F_ETH_TYPE, ip);
        break;
    case VS_F_IPV4_SRC: case VS_F_IPV4_DST:
        set_exact(match, mask, VS_F_ETH_TYPE, 0x0800);
        break;
    case VS_F_TCP_SRC: case VS_F_TCP_DST: case VS_F_TCP_FLAGS:
        set_exact(match, mask, VS_F_ETH_TYPE, ip);
        set_exact(match, mask, VS_F_IP_PROTO, 6);
        break;
    case VS_F_UDP_SRC: case VS_F_UDP_DST:
        set_exact(match, mask, VS_F_ETH_TYPE, ip);
        set_exact(match, mask, VS_F_IP_PROTO, 17);
        break;
    case VS_F_SCTP_SRC: case VS_F_SCTP_DST:
        set_exact(match, mask, VS_F_ETH_TYPE, ip);
        set_exact(match, mask, VS_F_IP_PROTO, 132);
        break;
    case VS_F_ICMPV4_TYPE: case VS_F_ICMPV4_CODE:
        set_exact(match, mask, VS_F_ETH_TYPE, 0x0800);
        set_exact(match, mask, VS_F_IP_PROTO, 1);
        break;
    case VS_F_ARP_OP: case VS_F_ARP_SPA: case VS_F_ARP_TPA: case VS_F_ARP_SHA:
    case VS_F_ARP_THA:
        set_exact(match, mask, VS_F_ETH_TYPE, 0x0806);
        break;
    case VS_F_IPV6_SRC: case VS_F_IPV6_DST: case VS_F_IPV6_FLABEL: case VS_F_IPV6_EXTHDR:
        set_exact(match, mask, VS_F_ETH_TYPE, 0x86dd);
        break;
    case VS_F_ICMPV6_TYPE: case VS_F_ICMPV6_CODE:
        set_exact(match, mask, VS_F_ETH_TYPE, 0x86dd);
        set_exact(match, mask, VS_F_IP_PROTO, 58);
        break;
    case VS_F_IPV6_ND_TARGET: case VS_F_IPV6_ND_SLL: case VS_F_IPV6_ND_TLL:
        set_exact(match, mask, VS_F_ETH_TYPE, 0x86dd);
        set_exact(match, mask, VS_F_IP_PROTO, 58);
        set_exact(match, mask, VS_F_ICMPV6_TYPE,
                  f == VS_F_IPV6_ND_SLL ? 135 : f == VS_F_IPV6_ND_TLL ? 136 : 135 + (sel & 1));
        break;
    case VS_F_MPLS_LABEL: case VS_F_MPLS_TC: case VS_F_MPLS_BOS:
        set_exact(match, mask, VS_F_ETH_TYPE, sel & 1 ? 0x8848 : 0x8847);
        break;
    case VS_F_PBB_ISID:
        set_exact(match, mask, VS_F_ETH_TYPE, 0x88e7);
        break;
    default:
        break;
    }
}

/* A match: raw key bytes (mode % 4 == 0) or up to 3 fields, each with a
 * value (small or raw), a mask (full or raw, if maskable) and fix-ups that
 * flag bits can turn off (value under mask and valid bits, prerequisites).
 * Returns the fields it named (bit i = VS_F_i), for vs_flow_mod.fields. */
static uint64_t build_match(struct src *s, struct vs_key *match, struct vs_key *mask)
{
    named = 0;
    memset(match, 0, sizeof *match);
    memset(mask, 0, sizeof *mask);
    uint8_t mode = u8(s);
    if (mode % 4 == 0) {
        unsigned n = mode / 4 % 8;
        for (unsigned i = 0; i < n; i++) {
            unsigned pos = u8(s) % VS_KEY_SIZE;
            ((uint8_t *)mask)[pos] = u8(s);
            ((uint8_t *)match)[pos] = u8(s);
        }
        return named;
    }
    unsigned nf = mode / 4 % 4;
    for (unsigned i = 0; i < nf; i++) {
        int f = u8(s) % VS_N_FIELDS;
        uint8_t fl = u8(s);
        const struct vs_field_info *fi = &vs_fields[f];
        uint8_t v[16], m[16];
        if (fl & 0x01)
            take(s, v, fi->len);
        else
            small_value(f, fl >> 5, v);
        if (fi->maskable && (fl & 0x02))
            take(s, m, fi->len);
        else
            memcpy(m, fi->valid_bits, fi->len);
        for (unsigned j = 0; j < fi->len; j++) {
            if (!(fl & 0x04))
                m[j] &= fi->valid_bits[j];
            if (!(fl & 0x08))
                v[j] &= m[j] & fi->valid_bits[j];
        }
        memcpy(kfield(match, f), v, fi->len);
        memcpy(kfield(mask, f), m, fi->len);
        named |= 1ull << f;
        if (!(fl & 0x10))
            add_prereqs(match, mask, f, u8(s));
    }
    return named;
}

/* ---------------------------------------------------------------------- */
/* Op lists. */

#define BUF_MAX 2048

struct buf {
    uint8_t d[BUF_MAX];
    uint32_t len;
};

/* Appends an op; len_fix != 0 replaces the header's len (corruption). */
static void put_op(struct buf *b, uint16_t type, uint32_t arg, const uint8_t *body,
                   uint32_t blen, int len_fix)
{
    uint32_t padded = (blen + 7) & ~7u;
    if (b->len + 8 + padded > BUF_MAX)
        return;
    struct vs_op op = {type, (uint16_t)(8 + padded), arg};
    if (len_fix)
        op.len = (uint16_t)(op.len + len_fix);
    memcpy(b->d + b->len, &op, sizeof op);
    memset(b->d + b->len + 8, 0, padded);
    if (blen)
        memcpy(b->d + b->len + 8, body, blen);
    b->len += 8 + padded;
}

static const int SETTABLE[] = {
    VS_F_ETH_DST, VS_F_ETH_SRC, VS_F_VLAN_VID, VS_F_VLAN_PCP, VS_F_IP_DSCP, VS_F_IP_ECN,
    VS_F_IPV4_SRC, VS_F_IPV4_DST, VS_F_TCP_SRC, VS_F_TCP_DST, VS_F_UDP_SRC, VS_F_UDP_DST,
    VS_F_SCTP_SRC, VS_F_SCTP_DST, VS_F_ICMPV4_TYPE, VS_F_ICMPV4_CODE, VS_F_ARP_OP,
    VS_F_ARP_SPA, VS_F_ARP_TPA, VS_F_ARP_SHA, VS_F_ARP_THA, VS_F_IPV6_SRC, VS_F_IPV6_DST,
    VS_F_IPV6_FLABEL, VS_F_ICMPV6_TYPE, VS_F_ICMPV6_CODE, VS_F_IPV6_ND_TARGET,
    VS_F_IPV6_ND_SLL, VS_F_IPV6_ND_TLL, VS_F_TUNNEL_ID,
};
#define N_SETTABLE (sizeof SETTABLE / sizeof SETTABLE[0])

/* Fields that set_field actions of the rule being built write, whose
 * prerequisites do_flow() then adds to the rule's match (so that the
 * set_field validates and reaches execution), unless told not to. */
static uint64_t set_fields;

/* Up to 7 actions.  Selector byte: low 4 bits the action, 0xf0.. rare
 * corruptions of the op length. */
static void build_actions(struct src *s, struct buf *b)
{
    unsigned n = u8(s) % 8;
    for (unsigned i = 0; i < n; i++) {
        uint8_t k = u8(s);
        int len_fix = k >= 0xf8 ? (int)(u8(s) % 17) - 8 : 0;
        uint8_t body[24] = {0};
        switch (k % 16) {
        case 0: case 1: {
            uint16_t max_len = u8(s) & 1 ? VS_OFPCML_NO_BUFFER : u16(s);
            memcpy(body, &max_len, 2);
            put_op(b, VS_A_OUTPUT, pick_port(s), body, 8, len_fix);
            break;
        }
        case 2: case 3:
            put_op(b, VS_A_GROUP, pick_group(s), NULL, 0, len_fix);
            break;
        case 4:
            put_op(b, VS_A_SET_QUEUE, u8(s), NULL, 0, len_fix);
            break;
        case 5: case 6: {
            uint8_t fb = u8(s);
            int f = fb < 0xe0 ? SETTABLE[fb % N_SETTABLE] : fb % (VS_N_FIELDS + 2);
            uint8_t vb = u8(s);
            unsigned flen = f < VS_N_FIELDS ? vs_fields[f].len : 8;
            if (vb & 1)
                take(s, body, flen);
            else if (f < VS_N_FIELDS)
                small_value(f, vb >> 1, body);
            if (!(vb & 0x80) && f < VS_N_FIELDS)
                for (unsigned j = 0; j < flen; j++)
                    body[j] &= vs_fields[f].valid_bits[j];
            put_op(b, VS_A_SET_FIELD, (uint32_t)f, body, flen, len_fix);
            if (f < VS_N_FIELDS && !(vb & 0x40))
                set_fields |= 1ull << f;
            break;
        }
        case 7: case 8: {
            uint8_t t = u8(s);
            uint32_t tpid = t < 0x80 ? 0x8100 : t < 0xf0 ? 0x88a8 : u16(s);
            put_op(b, VS_A_PUSH_VLAN, tpid, NULL, 0, len_fix);
            break;
        }
        case 9:
            put_op(b, VS_A_POP_VLAN, 0, NULL, 0, len_fix);
            break;
        case 10: {
            uint8_t t = u8(s);
            put_op(b, VS_A_SET_NW_TTL, t < 0xf0 ? t % 4 : u32(s), NULL, 0, len_fix);
            break;
        }
        case 11: case 12:
            put_op(b, VS_A_DEC_NW_TTL, 0, NULL, 0, len_fix);
            break;
        case 13: {                     /* recognised, refused */
            uint16_t type = (uint16_t)(VS_A_COPY_TTL_OUT + u8(s) % 8);
            put_op(b, type, u16(s), NULL, 0, len_fix);
            break;
        }
        case 14: {                     /* internal ops: never accepted */
            uint16_t type = (uint16_t)(VS_X_CONTROLLER + u8(s) % 4);
            put_op(b, type, u32(s), body, 24, len_fix);
            break;
        }
        default: {                     /* anything */
            uint16_t type = u16(s);
            uint32_t blen = u8(s) % 24;
            take(s, body, blen);
            put_op(b, type, u32(s), body, blen, len_fix);
            break;
        }
        }
    }
}

/* Up to 5 instructions for a rule in table_id. */
static void build_instructions(struct src *s, struct buf *b, uint8_t table_id)
{
    unsigned n = u8(s) % 6;
    for (unsigned i = 0; i < n; i++) {
        uint8_t k = u8(s);
        int len_fix = k >= 0xf8 ? (int)(u8(s) % 17) - 8 : 0;
        switch (k % 10) {
        case 0:
            put_op(b, VS_I_METER, pick_meter(s), NULL, 0, len_fix);
            break;
        case 1: case 2: case 3: case 4: {
            struct buf *acts = malloc(sizeof *acts);
            if (!acts)
                abort();
            acts->len = 0;
            build_actions(s, acts);
            put_op(b, k % 10 == 4 ? VS_I_WRITE : VS_I_APPLY, 0, acts->d, acts->len, len_fix);
            free(acts);
            break;
        }
        case 5:
            put_op(b, VS_I_CLEAR, 0, NULL, 0, len_fix);
            break;
        case 6: {
            uint64_t vm[2];
            vm[0] = u64(s);
            vm[1] = u64(s);
            put_op(b, VS_I_WRITE_METADATA, 0, (const uint8_t *)vm, 16, len_fix);
            break;
        }
        case 7: case 8: {
            uint8_t t = u8(s);
            uint32_t to = t < 0xf0 ? table_id + 1u + t % 3 : u32(s);
            put_op(b, VS_I_GOTO, to, NULL, 0, len_fix);
            break;
        }
        default: {
            uint8_t body[16];
            uint32_t blen = u8(s) % 17;
            take(s, body, blen);
            uint16_t type = u16(s);
            put_op(b, type, u32(s), body, blen, len_fix);
            break;
        }
        }
    }
}

/* Raw bytes as an op list (garbage for validation). */
static void build_raw(struct src *s, struct buf *b)
{
    uint32_t n = u8(s);
    if (n > BUF_MAX)
        n = BUF_MAX;
    take(s, b->d, n);
    b->len = n;
}

/* ---------------------------------------------------------------------- */
/* Control ops. */

struct totals {
    uint64_t op_bytes;                 /* all op-list bytes handed to the core */
};

static void do_port(struct src *s, struct vs_pipeline *p, bool del)
{
    uint8_t b = u8(s);
    uint32_t port = b < 0xf0 ? 1 + b % 8 : b == 0xf0 ? VS_OFPP_LOCAL : u32(s);
    if (del)
        vs_pipeline_del_port(p, port);
    else
        vs_pipeline_set_port(p, port, u8(s) % 4);
}

static void do_meter(struct src *s, struct vs_pipeline *p)
{
    static const uint16_t FLAGS[] = {VS_MF_KBPS, VS_MF_PKTPS, VS_MF_KBPS | VS_MF_BURST,
                                     VS_MF_PKTPS | VS_MF_BURST | VS_MF_STATS,
                                     VS_MF_KBPS | VS_MF_STATS, VS_MF_KBPS | VS_MF_PKTPS, 0};
    static const uint32_t RATES[] = {1, 100, 1000000, 0xffffffffu, 0, 8, 64, 10000};
    uint8_t c = u8(s);
    uint8_t cmd = c < 0x80 ? VS_MC_ADD : c % 4;
    uint8_t fb = u8(s);
    uint16_t flags = fb < 0xf0 ? FLAGS[fb % 7] : u16(s);
    uint32_t id = pick_meter(s);
    uint32_t n = u8(s) % (VS_MAX_BANDS + 2);
    struct vs_meter_band bands[VS_MAX_BANDS + 1];
    memset(bands, 0, sizeof bands);
    for (uint32_t i = 0; i < n; i++) {
        uint8_t t = u8(s);
        bands[i].type = t < 0xf0 ? 1 + t % 2 : u16(s);
        bands[i].prec_level = u8(s) % 4;
        bands[i].rate = RATES[u8(s) % 8];
        bands[i].burst_size = RATES[u8(s) % 8];
    }
    struct vs_error err;
    int rc = vs_pipeline_meter_mod(p, cmd, flags, id, bands, n, &err);
    if (verbose)
        fprintf(stderr, "meter_mod cmd %u id %#x flags %#x bands %u\n", cmd, id, flags, n);
    report("meter_mod", rc, &err);
}

static void do_group(struct src *s, struct vs_pipeline *p, struct totals *t)
{
    uint8_t c = u8(s);
    uint8_t cmd = c < 0x80 ? VS_GC_ADD : c % 4;
    uint8_t type = u8(s) % 5;
    uint32_t id = pick_group(s);
    struct buf *b = malloc(sizeof *b);
    if (!b)
        abort();
    b->len = 0;
    uint8_t mode = u8(s);
    if (mode % 8 == 0) {
        build_raw(s, b);
    } else {
        unsigned nb = mode / 8 % 6;
        for (unsigned i = 0; i < nb; i++) {
            struct buf *acts = malloc(sizeof *acts);
            if (!acts)
                abort();
            acts->len = 0;
            build_actions(s, acts);
            struct vs_bucket_hdr h = {.actions_len = acts->len};
            uint8_t wb = u8(s);
            h.weight = wb < 0xf0 ? wb % 4 : u16(s);
            h.watch_port = u8(s) & 1 ? VS_OFPP_ANY : pick_port(s);
            h.watch_group = u8(s) < 0xf8 ? VS_OFPG_ANY : u32(s);
            uint8_t c = u8(s);
            if (c >= 0xf8)
                h.actions_len += (uint32_t)(c % 17) - 8;   /* corrupt */
            if (b->len + sizeof h + acts->len <= BUF_MAX) {
                memcpy(b->d + b->len, &h, sizeof h);
                memcpy(b->d + b->len + sizeof h, acts->d, acts->len);
                b->len += (uint32_t)sizeof h + acts->len;
            }
            free(acts);
        }
    }
    t->op_bytes += b->len;
    struct vs_error err;
    int rc = vs_pipeline_group_mod(p, cmd, type, id, b->len ? b->d : NULL, b->len, &err);
    if (verbose)
        fprintf(stderr, "group_mod cmd %u type %u id %#x buckets %u bytes\n", cmd, type, id,
                b->len);
    report("group_mod", rc, &err);
    free(b);
}

static void do_flow(struct src *s, struct vs_pipeline *p, struct totals *t)
{
    static const uint16_t PRIOS[] = {0, 1, 100, 0x8000, 0xffff, 50, 200, 0x7fff};
    struct vs_flow_mod fm;
    memset(&fm, 0, sizeof fm);
    uint8_t c = u8(s);
    fm.command = c < 160 ? VS_FC_ADD : c % 6;
    uint8_t tb = u8(s);
    fm.table_id = tb < 200 ? tb % 4 : tb;
    uint8_t pb = u8(s);
    fm.priority = pb < 0xf0 ? PRIOS[pb % 8] : u16(s);
    uint8_t fb = u8(s);
    fm.flags = fb < 0xf0 ? (fb & 0x1d) | (fb >= 0xe0 ? VS_FF_CHECK_OVERLAP : 0) : u16(s);
    uint8_t to = u8(s);
    fm.idle_timeout = to & 3;
    fm.hard_timeout = to >> 2 & 3;
    uint8_t ob = u8(s);
    fm.out_port = ob & 1 ? pick_port(s) : VS_OFPP_ANY;
    fm.out_group = ob & 2 ? pick_group(s) : VS_OFPG_ANY;
    fm.cookie = ob >> 2 & 3;
    fm.cookie_mask = ob & 0x10 ? ~0ull : ob & 0x20 ? u64(s) : 0;
    uint64_t names = build_match(s, &fm.match, &fm.mask);
    /* fields: inferred (0), as named, or anything. */
    uint8_t nb = u8(s);
    fm.fields = nb < 0x80 ? 0 : nb < 0xf0 ? names : u64(s);
    struct buf *b = malloc(sizeof *b);
    if (!b)
        abort();
    b->len = 0;
    set_fields = 0;
    uint8_t im = u8(s);
    if (im % 8 == 0)
        build_raw(s, b);
    else
        build_instructions(s, b, fm.table_id);
    for (int f = 0; f < VS_N_FIELDS; f++) {
        if (!(set_fields & (1ull << f)))
            continue;
        named = 0;
        if (f == VS_F_VLAN_VID)
            add_prereqs(&fm.match, &fm.mask, VS_F_VLAN_PCP, im >> 3);   /* tagged */
        else
            add_prereqs(&fm.match, &fm.mask, f, im >> 3);
        if (fm.fields && nb < 0xf0)
            fm.fields |= named;
    }
    t->op_bytes += b->len;
    /* An exactly-sized copy: ASan sees reads past instructions_len. */
    uint8_t *ins = b->len ? malloc(b->len) : NULL;
    if (b->len) {
        if (!ins)
            abort();
        memcpy(ins, b->d, b->len);
    }
    fm.instructions = ins;
    fm.instructions_len = b->len;
    free(b);
    struct vs_error err;
    int rc = vs_pipeline_flow_mod(p, &fm, &err);
    if (verbose)
        fprintf(stderr, "flow_mod cmd %u table %u prio %u fields %#llx insts %u bytes\n",
                fm.command, fm.table_id, fm.priority, (unsigned long long)fm.fields,
                fm.instructions_len);
    report("flow_mod", rc, &err);
    free(ins);
}

/* ---------------------------------------------------------------------- */
/* Frames. */

#define FRAME_MAX 2048
#define MAX_FRAMES 32

static void addr(struct src *s, uint8_t *p, unsigned n)
{
    uint8_t b = u8(s);
    if (b & 0x80) {
        take(s, p, n);
    } else {
        memset(p, 0, n);
        p[n - 1] = (uint8_t)(b % 4 + 1);
        if (b & 0x40)
            memset(p, 0xff, n);        /* broadcast */
    }
}

/* L4 header + payload at p; returns its length and sets *proto. */
static uint32_t build_l4(struct src *s, uint8_t *p, bool v6, uint8_t *proto)
{
    uint8_t k = u8(s);
    uint32_t n = 0;
    switch (k % 8) {
    case 0: case 1:                    /* TCP */
        *proto = 6;
        memset(p, 0, 20);
        put16be(p, TP_PORTS[k >> 3 & 3]);
        put16be(p + 2, TP_PORTS[k >> 5 & 3]);
        p[12] = k & 0x80 ? (uint8_t)(u8(s) & 0xf1) : 0x50;
        p[13] = u8(s);
        put16be(p + 16, u16(s));
        n = 20;
        break;
    case 2: case 3:                    /* UDP */
        *proto = 17;
        put16be(p, TP_PORTS[k >> 3 & 3]);
        put16be(p + 2, TP_PORTS[k >> 5 & 3]);
        put16be(p + 4, 0);
        put16be(p + 6, k & 0x80 ? 0 : 0xffff);   /* 0: no checksum */
        n = 8;
        break;
    case 4:                            /* SCTP */
        *proto = 132;
        memset(p, 0, 12);
        put16be(p, TP_PORTS[k >> 3 & 3]);
        put16be(p + 2, TP_PORTS[k >> 5 & 3]);
        n = 12;
        break;
    case 5: case 6:                    /* ICMP / ICMPv6, ND with options */
        *proto = v6 ? 58 : 1;
        p[0] = ICMP_TYPES[k >> 3 & 7];
        p[1] = k & 0x40 ? u8(s) : 0;
        put16be(p + 2, u16(s));
        memset(p + 4, 0, 4);
        n = 8;
        if (v6 && (p[0] == 135 || p[0] == 136)) {
            addr(s, p + 8, 16);
            n = 24;
            unsigned nopt = u8(s) % 4;
            for (unsigned i = 0; i < nopt; i++) {
                uint8_t ob = u8(s);
                p[n] = ob & 0x80 ? u8(s) : 1 + (ob & 1);
                p[n + 1] = ob & 0x40 ? u8(s) % 3 : 1;
                addr(s, p + n + 2, 6);
                n += 8;
            }
        }
        break;
    default:                           /* anything */
        *proto = u8(s);
        break;
    }
    uint32_t pl = u8(s) % 48;
    take(s, p + n, pl);
    if (*proto == 17)
        put16be(p + 4, (uint16_t)(n + pl));
    return n + pl;
}

static void fix_checksums(uint8_t *f, uint32_t len);

static uint32_t build_frame(struct src *s, uint8_t *f, uint8_t kind)
{
    if (kind % 8 == 0) {
        uint32_t len = u16(s) % FRAME_MAX;
        take(s, f, len);
        return len;
    }
    uint32_t n = 0;
    addr(s, f, 6);
    addr(s, f + 6, 6);
    n = 12;
    uint8_t vb = u8(s);
    unsigned ntags = vb % 4 == 3 ? 0 : vb % 4;      /* 0, 1, 2 tags */
    if (vb >= 0xf0)
        ntags = 3;
    for (unsigned i = 0; i < ntags; i++) {
        put16be(f + n, i == 0 && (vb & 0x10) ? 0x88a8 : 0x8100);
        put16be(f + n + 2, (uint16_t)((vb & 0x20 ? u16(s) : (uint16_t)(vb >> 6)) & 0xefff));
        n += 4;
    }
    uint8_t *et = f + n;
    n += 2;
    uint8_t *l3 = f + n;
    uint8_t proto = 0;
    switch (kind >> 3 & 7) {
    case 0: case 1: case 2: {          /* IPv4 */
        put16be(et, 0x0800);
        uint8_t ob = u8(s);
        uint32_t ihl = ob & 0x80 ? 24 : 20;
        memset(l3, 0, ihl);
        l3[0] = (uint8_t)(0x40 | ihl / 4);
        l3[1] = u8(s);
        static const uint16_t FRAG[] = {0, 0x4000, 0x2000, 0x2001, 0x0001};
        put16be(l3 + 6, FRAG[ob % 5]);
        static const uint8_t TTL[] = {64, 1, 0, 2};
        l3[8] = ob & 0x40 ? u8(s) : TTL[ob >> 3 & 3];
        put16be(l3 + 10, u16(s));
        addr(s, l3 + 12, 4);
        addr(s, l3 + 16, 4);
        uint32_t l4len = build_l4(s, l3 + ihl, false, &proto);
        l3[9] = proto;
        put16be(l3 + 2, (uint16_t)(ihl + l4len));
        n += ihl + l4len;
        break;
    }
    case 3: case 4: {                  /* IPv6, maybe extension headers */
        put16be(et, 0x86dd);
        uint8_t ob = u8(s);
        memset(l3, 0, 40);
        put32be(l3, 0x60000000u | (ob & 0x20 ? u32(s) & 0x0fffffffu : 0));
        static const uint8_t HL[] = {64, 1, 0, 255};
        l3[7] = HL[ob & 3];
        addr(s, l3 + 8, 16);
        addr(s, l3 + 24, 16);
        uint32_t m = 40;
        uint8_t *nh = l3 + 6;
        unsigned next = ob >> 2 & 3;
        for (unsigned i = 0; i < next; i++) {
            static const uint8_t EXT[] = {0, 43, 60, 44, 51, 0, 60, 44};
            uint8_t eb = u8(s);
            uint8_t type = EXT[eb % 8];
            *nh = type;
            nh = l3 + m;
            memset(l3 + m, 0, 8);
            if (type == 44) {
                put16be(l3 + m + 2, (uint16_t)(eb & 0x80 ? 8 : eb & 0x40 ? 1 : 0));
                m += 8;
            } else if (type == 51) {
                l3[m + 1] = 0;         /* (0 + 2) * 4 = 8 bytes */
                m += 8;
            } else {
                m += 8;
            }
        }
        uint32_t l4len = build_l4(s, l3 + m, true, &proto);
        *nh = proto;
        put16be(l3 + 4, (uint16_t)(m - 40 + l4len));
        n += m + l4len;
        break;
    }
    case 5: {                          /* ARP */
        put16be(et, 0x0806);
        put16be(l3, 1);
        put16be(l3 + 2, 0x0800);
        l3[4] = 6;
        l3[5] = 4;
        put16be(l3 + 6, (uint16_t)(1 + u8(s) % 2));
        addr(s, l3 + 8, 6);
        addr(s, l3 + 14, 4);
        addr(s, l3 + 18, 6);
        addr(s, l3 + 24, 4);
        n += 28;
        break;
    }
    case 6: {                          /* MPLS */
        put16be(et, u8(s) & 1 ? 0x8848 : 0x8847);
        put32be(l3, (uint32_t)(u8(s) % 4 + 1) << 12 | 0x100 | 64);
        uint32_t pl = u8(s) % 32;
        take(s, l3 + 4, pl);
        n += 4 + pl;
        break;
    }
    default: {                         /* other ethertype / 802.3 length */
        put16be(et, u16(s));
        uint32_t pl = u8(s) % 64;
        take(s, l3, pl);
        n += pl;
        break;
    }
    }
    if (!(kind & 0x80))
        fix_checksums(f, n);
    if (kind & 0x40) {                  /* truncate */
        uint32_t cut = u8(s);
        if (cut < n)
            n = cut;
    }
    return n;
}

/* ---------------------------------------------------------------------- */
/* Header oracles: what the actions may not break. */

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static uint32_t sum16(const uint8_t *p, uint32_t n, uint32_t s)
{
    for (uint32_t i = 0; i + 1 < n; i += 2)
        s += (uint32_t)rd16(p + i);
    if (n & 1)
        s += (uint32_t)p[n - 1] << 8;
    return s;
}

static uint16_t fold16(uint32_t s)
{
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)s;
}

struct hdr_facts {
    int l3_ok, l4_ok;
    uint16_t eth_type;
    uint8_t ip_proto;
    int ip_csum;                       /* -1 not applicable, 0 bad, 1 good */
    int l4_csum;
};

/* The IPv4 header checksum and the TCP/UDP/ICMP/ICMPv6 checksum of a frame,
 * where they can be checked: a complete, unfragmented datagram, no IPv6
 * extension headers, UDP checksum present, SCTP excluded (its CRC32c is not
 * maintained). */
static void facts(const uint8_t *f, uint32_t len, struct hdr_facts *o)
{
    struct vs_key k;
    struct vs_layers L;
    vs_parse(f, len, 0, &k, &L);
    memset(o, 0, sizeof *o);
    o->ip_csum = o->l4_csum = -1;
    o->l3_ok = L.l3_ok;
    o->l4_ok = L.l4_ok;
    o->eth_type = rd16(k.eth_type);
    o->ip_proto = k.ip_proto;
    if (!L.l3_ok)
        return;
    const uint8_t *h = f + L.l3;
    uint32_t l4len, pseudo;
    if (o->eth_type == 0x0800) {
        uint32_t ihl = (h[0] & 15u) * 4;
        o->ip_csum = fold16(sum16(h, ihl, 0)) == 0xffff;
        uint32_t tot = rd16(h + 2);
        if (!L.l4_ok || k.ip_frag || L.l3 + tot > len)
            return;
        l4len = tot - ihl;
        pseudo = sum16(h + 12, 8, 0) + k.ip_proto + l4len;
        if (k.ip_proto == 1)
            pseudo = 0;                /* ICMPv4: no pseudo-header */
    } else if (o->eth_type == 0x86dd) {
        uint32_t plen = rd16(h + 4);
        if (!L.l4_ok || L.l4 != L.l3 + 40 || plen == 0 || L.l3 + 40 + plen > len)
            return;
        l4len = plen;
        pseudo = sum16(h + 8, 32, 0) + (l4len >> 16) + (l4len & 0xffff) + k.ip_proto;
    } else {
        return;
    }
    const uint8_t *l4 = f + L.l4;
    uint32_t at;
    switch (k.ip_proto) {
    case 6: at = 16; break;
    case 17: at = 6; break;
    case 1: case 58: at = 2; break;
    default: return;
    }
    if (at + 2 > l4len || (k.ip_proto == 17 && rd16(l4 + 6) == 0))
        return;
    o->l4_csum = fold16(sum16(l4, l4len, pseudo)) == 0xffff;
}

/* An emitted frame against the frame it came from. */
static void check_headers(const struct hdr_facts *in, const uint8_t *data, uint32_t len,
                          const char *what, uint32_t i)
{
    if (!in->l3_ok)
        return;
    struct hdr_facts out;
    facts(data, len, &out);
    if (out.eth_type == 0x8100 || out.eth_type == 0x88a8)
        return;                        /* a third tag was pushed: not parsed */
    CHECK(out.l3_ok && out.eth_type == in->eth_type && out.l4_ok == in->l4_ok &&
          out.ip_proto == in->ip_proto,
          "%s: output %u: L3/L4 headers no longer parse as they did (eth_type %#x -> %#x, "
          "l3_ok %d -> %d, l4_ok %d -> %d)", what, i, in->eth_type, out.eth_type,
          in->l3_ok, out.l3_ok, in->l4_ok, out.l4_ok);
    CHECK(!(in->ip_csum == 1 && out.ip_csum == 0),
          "%s: output %u: IPv4 header checksum broken", what, i);
    CHECK(!(in->l4_csum == 1 && out.l4_csum == 0),
          "%s: output %u: L4 (proto %u) checksum broken", what, i, in->ip_proto);
}

/* Makes the IPv4 header and L4 checksums of a built frame valid. */
static void fix_checksums(uint8_t *f, uint32_t len)
{
    struct vs_key k;
    struct vs_layers L;
    vs_parse(f, len, 0, &k, &L);
    if (!L.l3_ok)
        return;
    uint8_t *h = f + L.l3;
    uint16_t et = rd16(k.eth_type);
    if (et == 0x0800) {
        uint32_t ihl = (h[0] & 15u) * 4;
        put16be(h + 10, 0);
        put16be(h + 10, (uint16_t)~fold16(sum16(h, ihl, 0)));
    }
    struct hdr_facts fa;
    facts(f, len, &fa);                /* finds the L4 region, if any */
    if (fa.l4_csum < 0)
        return;
    uint8_t *l4 = f + L.l4;
    uint32_t at = k.ip_proto == 6 ? 16 : k.ip_proto == 17 ? 6 : 2;
    put16be(l4 + at, 0);
    uint32_t l4len, pseudo;
    if (et == 0x0800) {
        l4len = rd16(h + 2) - (h[0] & 15u) * 4;
        pseudo = k.ip_proto == 1 ? 0 : sum16(h + 12, 8, 0) + k.ip_proto + l4len;
    } else {
        l4len = rd16(h + 4);
        pseudo = sum16(h + 8, 32, 0) + (l4len >> 16) + (l4len & 0xffff) + k.ip_proto;
    }
    uint16_t c = (uint16_t)~fold16(sum16(l4, l4len, pseudo));
    if (k.ip_proto == 17 && c == 0)
        c = 0xffff;
    put16be(l4 + at, c);
}

/* ---------------------------------------------------------------------- */
/* Results: owned copies, compared across runs. */

struct emit_rec {
    uint32_t pkt, port, queue, len;
    uint8_t *data;
};
struct upcall_rec {
    struct vs_upcall u;                /* data pointer cleared */
    uint8_t *data;
};
struct result {
    uint32_t n_emits, n_upcalls;
    struct emit_rec *emits;
    struct upcall_rec *upcalls;
};

struct batch {
    uint32_t n;
    const uint8_t *frames[VS_MAX_BATCH + 1];
    uint8_t *pristine[VS_MAX_BATCH + 1];
    uint32_t lens[VS_MAX_BATCH + 1];
    uint32_t in_ports[VS_MAX_BATCH + 1];
    struct hdr_facts facts[VS_MAX_BATCH + 1];
};

static uint8_t *dup_bytes(const uint8_t *p, uint32_t n)
{
    uint8_t *d = malloc(n ? n : 1);
    if (!d)
        abort();
    if (n)
        memcpy(d, p, n);               /* ASan: every byte must be readable */
    return d;
}

static void result_free(struct result *r)
{
    for (uint32_t i = 0; i < r->n_emits; i++)
        free(r->emits[i].data);
    for (uint32_t i = 0; i < r->n_upcalls; i++)
        free(r->upcalls[i].data);
    free(r->emits);
    free(r->upcalls);
    memset(r, 0, sizeof *r);
}

static void run_batch(struct vs_context *c, struct vs_pipeline *p, const struct batch *b,
                      uint64_t max_growth, const struct vs_context_config *cfg,
                      struct result *r, const char *what)
{
    struct vs_context_stats before, after;
    vs_context_get_stats(c, &before);
    struct vs_batch_result out;
    memset(&out, 0, sizeof out);
    CHECK(vs_process_batch(c, p, b->frames, b->lens, b->in_ports, b->n, &out) == 0,
          "%s: vs_process_batch failed", what);
    vs_context_get_stats(c, &after);
    CHECK(after.emits - before.emits == out.n_emits, "%s: %llu emits counted, %u returned",
          what, (unsigned long long)(after.emits - before.emits), out.n_emits);
    CHECK(after.upcalls - before.upcalls == out.n_upcalls, "%s: upcall count", what);
    CHECK(after.packets - before.packets == b->n, "%s: packet count", what);
    uint32_t max_emits = cfg->max_emits ? cfg->max_emits : 4 * VS_MAX_BATCH;
    uint32_t max_upcalls = cfg->max_upcalls ? cfg->max_upcalls : VS_MAX_BATCH;
    CHECK(out.n_emits <= max_emits, "%s: %u emits > max %u", what, out.n_emits, max_emits);
    CHECK(out.n_upcalls <= max_upcalls, "%s: %u upcalls > max", what, out.n_upcalls);

    r->n_emits = out.n_emits;
    r->n_upcalls = out.n_upcalls;
    r->emits = calloc(out.n_emits + 1, sizeof *r->emits);
    r->upcalls = calloc(out.n_upcalls + 1, sizeof *r->upcalls);
    if (!r->emits || !r->upcalls)
        abort();
    uint32_t last = 0;
    for (uint32_t i = 0; i < out.n_emits; i++) {
        const struct vs_emit *e = &out.emits[i];
        CHECK(e->pkt < b->n, "%s: emit %u pkt %u >= %u", what, i, e->pkt, b->n);
        CHECK(e->pkt >= last, "%s: emits out of packet order", what);
        last = e->pkt;
        uint32_t in = b->lens[e->pkt];
        CHECK(e->len <= in + max_growth, "%s: emit len %u > %u + %llu", what, e->len, in,
              (unsigned long long)max_growth);
        CHECK(e->len >= (in < 14 ? in : 14), "%s: emit len %u < input %u", what, e->len, in);
        CHECK(e->len == 0 || e->data != NULL, "%s: emit data NULL", what);
        r->emits[i] = (struct emit_rec){e->pkt, e->port, e->queue, e->len,
                                        dup_bytes(e->data, e->len)};
        check_headers(&b->facts[e->pkt], r->emits[i].data, e->len, what, i);
    }
    last = 0;
    for (uint32_t i = 0; i < out.n_upcalls; i++) {
        const struct vs_upcall *u = &out.upcalls[i];
        CHECK(u->pkt < b->n, "%s: upcall pkt %u", what, u->pkt);
        CHECK(u->pkt >= last, "%s: upcalls out of packet order", what);
        last = u->pkt;
        uint32_t in = b->lens[u->pkt];
        CHECK(u->in_port == b->in_ports[u->pkt], "%s: upcall in_port", what);
        CHECK(u->len <= in + max_growth, "%s: upcall len %u > %u + %llu", what, u->len, in,
              (unsigned long long)max_growth);
        CHECK(u->reason <= VS_R_INVALID_TTL, "%s: upcall reason %u", what, u->reason);
        CHECK(u->len == 0 || u->data != NULL, "%s: upcall data NULL", what);
        r->upcalls[i].u = *u;
        r->upcalls[i].u.data = NULL;
        r->upcalls[i].data = dup_bytes(u->data, u->len);
        check_headers(&b->facts[u->pkt], r->upcalls[i].data, u->len, what, i);
    }
    for (uint32_t i = 0; i < b->n; i++)
        CHECK(memcmp(b->frames[i], b->pristine[i], b->lens[i]) == 0,
              "%s: input frame %u was modified", what, i);
}

static void dump_hex(const char *tag, const uint8_t *p, uint32_t n)
{
    fprintf(stderr, "  %s (%u):", tag, n);
    for (uint32_t i = 0; i < n && i < 96; i++)
        fprintf(stderr, " %02x", p[i]);
    fprintf(stderr, n > 96 ? " ...\n" : "\n");
}

static void compare(const struct result *a, const struct result *b, const char *what)
{
    bool same = a->n_emits == b->n_emits && a->n_upcalls == b->n_upcalls;
    uint32_t bad = 0;
    for (uint32_t i = 0; same && i < a->n_emits; i++) {
        const struct emit_rec *x = &a->emits[i], *y = &b->emits[i];
        if (x->pkt != y->pkt || x->port != y->port || x->queue != y->queue ||
            x->len != y->len || memcmp(x->data, y->data, x->len)) {
            same = false;
            bad = i;
        }
    }
    for (uint32_t i = 0; same && i < a->n_upcalls; i++) {
        const struct upcall_rec *x = &a->upcalls[i], *y = &b->upcalls[i];
        if (memcmp(&x->u, &y->u, sizeof x->u) || memcmp(x->data, y->data, x->u.len)) {
            same = false;
            bad = 0x80000000u | i;
        }
    }
    if (same)
        return;
    fprintf(stderr, "fuzz_pipeline: %s: results differ (%u/%u emits, %u/%u upcalls, first "
            "difference at %s %u)\n", what, a->n_emits, b->n_emits, a->n_upcalls,
            b->n_upcalls, bad & 0x80000000u ? "upcall" : "emit", bad & 0x7fffffffu);
    for (int k = 0; k < 2; k++) {
        const struct result *r = k ? b : a;
        fprintf(stderr, " run %c:\n", k ? 'B' : 'A');
        for (uint32_t i = 0; i < r->n_emits; i++) {
            char tag[80];
            snprintf(tag, sizeof tag, "emit pkt %u port %#x queue %u", r->emits[i].pkt,
                     r->emits[i].port, r->emits[i].queue);
            dump_hex(tag, r->emits[i].data, r->emits[i].len);
        }
        for (uint32_t i = 0; i < r->n_upcalls; i++) {
            const struct vs_upcall *u = &r->upcalls[i].u;
            char tag[120];
            snprintf(tag, sizeof tag, "upcall pkt %u reason %u table %u cookie %llu meta %llu",
                     u->pkt, u->reason, u->table_id, (unsigned long long)u->cookie,
                     (unsigned long long)u->metadata);
            dump_hex(tag, r->upcalls[i].data, u->len);
        }
    }
    abort();
}

/* Did any meter band apply to a packet (results then depend on the clock)? */
static bool meters_fired(struct vs_pipeline *p)
{
    size_t n = vs_pipeline_meter_stats(p, NULL, 0);
    if (!n)
        return false;
    struct vs_meter_stats *ms = calloc(n, sizeof *ms);
    if (!ms)
        abort();
    size_t m = vs_pipeline_meter_stats(p, ms, n);
    CHECK(m == n, "meter count changed %zu -> %zu", n, m);
    bool fired = false;
    for (size_t i = 0; i < n; i++) {
        CHECK(ms[i].n_bands <= VS_MAX_BANDS, "meter %u has %u bands", ms[i].meter_id,
              ms[i].n_bands);
        CHECK(i == 0 || ms[i - 1].meter_id < ms[i].meter_id, "meters not sorted");
        for (unsigned b = 0; b < ms[i].n_bands; b++)
            if (ms[i].bands[b].packet_count)
                fired = true;
    }
    free(ms);
    return fired;
}

static void check_groups(struct vs_pipeline *p)
{
    size_t n = vs_pipeline_group_stats(p, NULL, 0);
    if (!n)
        return;
    struct vs_group_stats *gs = calloc(n, sizeof *gs);
    if (!gs)
        abort();
    size_t m = vs_pipeline_group_stats(p, gs, n);
    CHECK(m == n, "group count changed %zu -> %zu", n, m);
    for (size_t i = 0; i < n; i++) {
        CHECK(gs[i].n_buckets <= 32, "group %u has %u buckets", gs[i].group_id, gs[i].n_buckets);
        CHECK(gs[i].type <= VS_GT_FF, "group type %u", gs[i].type);
        CHECK(i == 0 || gs[i - 1].group_id < gs[i].group_id, "groups not sorted");
    }
    free(gs);
}

/* Dumps every flow; checks it against the table counts and validation. */
static size_t check_dump(struct vs_pipeline *p, bool no_timeouts)
{
    struct vs_key zero;
    memset(&zero, 0, sizeof zero);
    struct vs_flow_list *l = vs_pipeline_dump(p, VS_OFPTT_ALL, &zero, &zero, VS_OFPP_ANY,
                                              VS_OFPG_ANY, 0, 0);
    CHECK(l != NULL, "dump returned NULL");
    size_t active = 0;
    for (int t = 0; t < VS_N_TABLES; t++) {
        struct vs_table_stats ts;
        CHECK(vs_pipeline_table_stats(p, (uint8_t)t, &ts) == 0, "table_stats %d", t);
        active += ts.active_count;
        CHECK(ts.matched_count <= ts.lookup_count, "table %d matched > lookups", t);
    }
    CHECK(l->n == active, "dump has %zu flows, tables count %zu", l->n, active);
    for (size_t i = 0; i < l->n; i++) {
        const struct vs_flow_stats *f = &l->flows[i];
        struct vs_error err;
        /* What the core accepted must validate with fields inferred. */
        int rc = vs_match_validate(&f->match, &f->mask, 0, &err);
        CHECK(rc == 0, "dumped flow %zu (table %u) does not validate: %s", i, f->table_id,
              err.msg);
        for (unsigned j = 0; j < VS_KEY_SIZE; j++)
            CHECK(!(((const uint8_t *)&f->match)[j] & ~((const uint8_t *)&f->mask)[j]),
                  "dumped match has bits outside its mask");
        CHECK(f->table_id < VS_N_TABLES, "dumped table id %u", f->table_id);
        CHECK(i == 0 || l->flows[i - 1].table_id < f->table_id ||
              (l->flows[i - 1].table_id == f->table_id &&
               l->flows[i - 1].priority >= f->priority), "dump order");
        CHECK(f->instructions_len == 0 || f->instructions != NULL, "instructions NULL");
        volatile uint8_t sink = 0;
        for (uint32_t j = 0; j < f->instructions_len; j++)
            sink ^= f->instructions[j];
        (void)sink;
        if (no_timeouts)
            CHECK(!f->idle_timeout && !f->hard_timeout,
                  "flow with timeouts %u/%u survived expiry", f->idle_timeout, f->hard_timeout);
    }
    size_t n = l->n;
    vs_flow_list_free(l);
    return n;
}

/* ---------------------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct src s = {data, size};
    struct totals tot = {0};

    /* Context configuration. */
    static const uint32_t EMC[] = {1, 2, 16, 1024, 0, 4, 64, 8};
    static const uint32_t INV[] = {1, 2, 100, 1};
    static const uint32_t MF[] = {200000, 1, 2, 8, 200000, 3, 64, 200000};
    static const uint32_t LIM[] = {0, 1, 3, 64};
    uint8_t ce = u8(&s), cm = u8(&s), cl = u8(&s);
    struct vs_context_config cached = {
        .emc_entries = EMC[ce % 8], .emc_insert_inv_prob = INV[ce >> 3 & 3],
        .megaflow_max = MF[cm % 8], .max_emits = LIM[cl & 3], .max_upcalls = LIM[cl >> 2 & 3],
    };
    struct vs_context_config uncached = cached;
    uncached.emc_entries = 0;
    uncached.megaflow_max = 0;

    struct vs_pipeline *p = vs_pipeline_new();
    if (!p)
        abort();

    /* Control ops. */
    unsigned n_ops = u8(&s) % 16;
    for (unsigned i = 0; i < n_ops; i++) {
        switch (u8(&s) % 8) {
        case 0: do_port(&s, p, false); break;
        case 1: do_port(&s, p, true); break;
        case 2: do_meter(&s, p); break;
        case 3: do_group(&s, p, &tot); break;
        default: do_flow(&s, p, &tot); break;
        }
    }

    /* Frames: exactly-sized heap copies (ASan sees over-reads). */
    struct batch b;
    memset(&b, 0, sizeof b);
    b.n = 1 + u8(&s) % MAX_FRAMES;
    uint8_t *tmp = malloc(FRAME_MAX + 512);
    if (!tmp)
        abort();
    for (uint32_t i = 0; i < b.n; i++) {
        b.in_ports[i] = pick_in_port(&s);
        uint8_t kind = u8(&s);
        uint32_t len;
        if (kind % 16 == 8 && i > 0) {
            /* A variant of an earlier frame: the same bytes with up to 3
             * bytes flipped, so that the caches see keys that agree on
             * some fields and differ on others. */
            uint32_t from = u8(&s) % i;
            len = b.lens[from];
            memcpy(tmp, b.pristine[from], len);
            unsigned nm = u8(&s);
            for (unsigned k = 0; k < nm % 4; k++) {
                uint8_t o = u8(&s), x = u8(&s);
                if (len)
                    tmp[o % len] ^= x ? x : 1;
            }
            if (nm & 0x80)
                fix_checksums(tmp, len);
        } else {
            len = build_frame(&s, tmp, kind);
        }
        uint8_t *f = malloc(len ? len : 1);
        if (!f)
            abort();
        memcpy(f, tmp, len);
        b.frames[i] = f;
        b.pristine[i] = dup_bytes(tmp, len);
        b.lens[i] = len;
        facts(f, len, &b.facts[i]);
    }
    free(tmp);

    /* Each push_vlan is an op of >= 8 bytes and runs at most once per
     * packet on any one path (goto only goes forward; a group bucket runs
     * on its own copy), so this bounds how much a frame can grow. */
    const uint64_t max_growth = 4 * (tot.op_bytes / 8);

    struct vs_context *ca = vs_context_new(&cached);
    struct vs_context *cb = vs_context_new(&uncached);
    CHECK(ca && cb, "vs_context_new failed");

    struct result r1 = {0}, r2 = {0}, r3 = {0};
    run_batch(ca, p, &b, max_growth, &cached, &r1, "cached (cold)");
    if (verbose) {
        for (uint32_t i = 0; i < b.n; i++)
            fprintf(stderr, "frame %u: in_port %#x len %u eth_type %#x l3 %d l4 %d csum ip %d l4 %d\n",
                    i, b.in_ports[i], b.lens[i], b.facts[i].eth_type, b.facts[i].l3_ok,
                    b.facts[i].l4_ok, b.facts[i].ip_csum, b.facts[i].l4_csum);
        for (uint32_t i = 0; i < r1.n_emits; i++)
        {
            struct hdr_facts fa;
            facts(r1.emits[i].data, r1.emits[i].len, &fa);
            fprintf(stderr, "emit: pkt %u port %#x queue %u len %u csum ip %d l4 %d\n",
                    r1.emits[i].pkt, r1.emits[i].port, r1.emits[i].queue, r1.emits[i].len,
                    fa.ip_csum, fa.l4_csum);
        }
        for (uint32_t i = 0; i < r1.n_upcalls; i++)
            fprintf(stderr, "upcall: pkt %u reason %u table %u len %u\n", r1.upcalls[i].u.pkt,
                    r1.upcalls[i].u.reason, r1.upcalls[i].u.table_id, r1.upcalls[i].u.len);
    }
    run_batch(ca, p, &b, max_growth, &cached, &r2, "cached (warm)");
    run_batch(cb, p, &b, max_growth, &uncached, &r3, "uncached");
    if (!meters_fired(p)) {
        compare(&r1, &r2, "cold vs warm cache");
        compare(&r1, &r3, "cached vs uncached");
    }
    result_free(&r1);
    result_free(&r2);
    result_free(&r3);

    struct vs_context_stats st;
    vs_context_get_stats(ca, &st);
    CHECK(st.packets == 2ull * b.n, "cached context counted %llu packets",
          (unsigned long long)st.packets);
    CHECK(st.emc_hits + st.megaflow_hits + st.misses == st.packets,
          "hits %llu + %llu + misses %llu != packets %llu", (unsigned long long)st.emc_hits,
          (unsigned long long)st.megaflow_hits, (unsigned long long)st.misses,
          (unsigned long long)st.packets);
    if (cached.megaflow_max)
        CHECK(st.megaflows <= cached.megaflow_max, "%llu megaflows > max %u",
              (unsigned long long)st.megaflows, cached.megaflow_max);
    vs_context_get_stats(cb, &st);
    CHECK(st.misses == st.packets && !st.emc_hits && !st.megaflow_hits && !st.megaflows,
          "uncached context used a cache");

    /* Control-plane reads, expiry, removal records. */
    check_dump(p, false);
    check_groups(p);
    meters_fired(p);
    {
        /* A filtered dump with a fuzzed selector. */
        struct vs_key m, k;
        build_match(&s, &m, &k);
        uint8_t tb = u8(&s);
        uint32_t out_port = pick_port(&s);
        uint32_t out_group = pick_group(&s);
        uint64_t cookie = u8(&s) % 4;
        uint64_t cookie_mask = u8(&s) & 1 ? ~0ull : 0;
        struct vs_flow_list *l = vs_pipeline_dump(p, tb, &m, &k, out_port, out_group,
                                                  cookie, cookie_mask);
        vs_flow_list_free(l);
    }
    vs_pipeline_expire(p, 1ull << 62);
    check_dump(p, true);
    struct vs_flow_list *rm = vs_pipeline_drain_removed(p);
    if (rm) {
        CHECK(rm->n > 0, "empty removal list");
        for (size_t i = 0; i < rm->n; i++) {
            const struct vs_flow_stats *f = &rm->flows[i];
            CHECK(f->reason <= VS_RR_METER_DELETE, "removal reason %u", f->reason);
            CHECK(f->flags & VS_FF_SEND_FLOW_REM, "removal record without SEND_FLOW_REM");
            CHECK(f->instructions_len == 0 || f->instructions != NULL, "instructions NULL");
        }
        vs_flow_list_free(rm);
    }
    CHECK(vs_pipeline_drain_removed(p) == NULL, "removal records drained twice");

    /* After expiry (generation bumped): the caches must flush, and still
     * agree with the uncached path. */
    run_batch(ca, p, &b, max_growth, &cached, &r1, "cached (after expiry)");
    run_batch(cb, p, &b, max_growth, &uncached, &r3, "uncached (after expiry)");
    if (!meters_fired(p))
        compare(&r1, &r3, "cached vs uncached after expiry");
    result_free(&r1);
    result_free(&r3);

    if (cl & 0x80) {
        /* A full batch: the frames again on VS_MAX_BATCH distinct in_ports
         * (in_port is always exact in a megaflow), so that megaflow
         * subtables grow and the EMC sees collisions. */
        struct batch *w = calloc(1, sizeof *w);
        if (!w)
            abort();
        w->n = VS_MAX_BATCH;
        for (uint32_t i = 0; i < w->n; i++) {
            uint32_t j = i % b.n;
            w->frames[i] = b.frames[j];
            w->pristine[i] = b.pristine[j];
            w->lens[i] = b.lens[j];
            w->facts[i] = b.facts[j];
            w->in_ports[i] = i + 1;
        }
        struct vs_batch_result out;
        CHECK(vs_process_batch(ca, p, w->frames, w->lens, w->in_ports, VS_MAX_BATCH + 1,
                               &out) < 0, "a batch of %u frames was accepted", VS_MAX_BATCH + 1);
        run_batch(ca, p, w, max_growth, &cached, &r1, "cached (full batch)");
        run_batch(cb, p, w, max_growth, &uncached, &r3, "uncached (full batch)");
        if (!meters_fired(p))
            compare(&r1, &r3, "cached vs uncached, full batch");
        result_free(&r1);
        result_free(&r3);
        free(w);
    }

    vs_context_free(ca);
    vs_context_free(cb);
    vs_pipeline_free(p);
    for (uint32_t i = 0; i < b.n; i++) {
        free((void *)b.frames[i]);
        free(b.pristine[i]);
    }
    return 0;
}
