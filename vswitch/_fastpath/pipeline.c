/* pipeline.c -- tables, flow mods (OpenFlow 1.3 semantics), ports, groups,
 * meters, dumps and expiry.  Every mutating call runs under the pipeline's
 * write lock and bumps pipeline->gen, which invalidates every context's
 * caches (see fastpath.h).  Validation happens before any change, so a
 * refused request leaves the pipeline exactly as it was. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "core.h"

#define MAX_RULES_PER_TABLE 2000000u
#define MAX_GROUPS 65536u
#define MAX_METERS 65536u
#define MAX_BUCKETS 32u

/* Error codes (OpenFlow 1.3.5 section 7.4.4). */
enum { BMC_BAD_FIELD = 6, BMC_BAD_VALUE = 7, BMC_BAD_MASK = 8, BMC_BAD_PREREQ = 9,
       BMC_BAD_WILDCARDS = 5 };
enum { FMF_UNKNOWN = 0, FMF_TABLE_FULL = 1, FMF_BAD_TABLE_ID = 2, FMF_OVERLAP = 3,
       FMF_BAD_COMMAND = 6, FMF_BAD_FLAGS = 7 };
enum { BIC_UNKNOWN_INST = 0, BIC_UNSUP_INST = 1, BIC_BAD_TABLE_ID = 2, BIC_BAD_LEN = 7 };
enum { BAC_BAD_TYPE = 0, BAC_BAD_LEN = 1, BAC_BAD_OUT_PORT = 4, BAC_BAD_ARGUMENT = 5,
       BAC_BAD_OUT_GROUP = 9, BAC_MATCH_INCONSISTENT = 10, BAC_BAD_SET_TYPE = 13,
       BAC_BAD_SET_LEN = 14, BAC_BAD_SET_ARGUMENT = 15 };
enum { GMF_GROUP_EXISTS = 0, GMF_INVALID_GROUP = 1, GMF_OUT_OF_GROUPS = 3,
       GMF_OUT_OF_BUCKETS = 4, GMF_CHAINING_UNSUPPORTED = 5, GMF_WATCH_UNSUPPORTED = 6,
       GMF_UNKNOWN_GROUP = 8, GMF_BAD_TYPE = 10, GMF_BAD_COMMAND = 11, GMF_BAD_BUCKET = 12,
       GMF_BAD_WATCH = 13 };
#define OFPG_ALL 0xfffffffcu
enum { MMF_METER_EXISTS = 1, MMF_INVALID_METER = 2, MMF_UNKNOWN_METER = 3,
       MMF_BAD_COMMAND = 4, MMF_BAD_FLAGS = 5, MMF_BAD_RATE = 6, MMF_BAD_BAND = 8,
       MMF_OUT_OF_METERS = 10, MMF_OUT_OF_BANDS = 11 };

static int fail(struct vs_error *err, uint16_t type, uint16_t code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(struct vs_error *err, uint16_t type, uint16_t code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->type = type;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* ---- field helpers ------------------------------------------------------ */

static const uint8_t *fptr(const struct vs_key *k, int f)
{
    return (const uint8_t *)k + vs_fields[f].offset;
}

static bool field_any(const struct vs_key *m, int f)
{
    const uint8_t *p = fptr(m, f);
    for (unsigned i = 0; i < vs_fields[f].len; i++)
        if (p[i])
            return true;
    return false;
}

static bool field_full(const struct vs_key *m, int f)
{
    return memcmp(fptr(m, f), vs_fields[f].valid_bits, vs_fields[f].len) == 0;
}

static uint64_t field_uint(const struct vs_key *k, int f)
{
    uint64_t v = 0;
    const uint8_t *p = fptr(k, f);
    for (unsigned i = 0; i < vs_fields[f].len && i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* The value a match pins a field to exactly, or -1. */
static int64_t exact(const struct vs_key *v, const struct vs_key *m, int f)
{
    return field_full(m, f) ? (int64_t)field_uint(v, f) : -1;
}

static bool is_ip(int64_t et) { return et == 0x0800 || et == 0x86dd; }

/* OXM prerequisites (OpenFlow 1.3.5 table 11) of field f. */
static bool prereq_ok(const struct vs_key *v, const struct vs_key *m, int f)
{
    int64_t et = exact(v, m, VS_F_ETH_TYPE);
    int64_t proto = is_ip(et) ? exact(v, m, VS_F_IP_PROTO) : -1;
    switch (f) {
    case VS_F_IN_PHY_PORT:
        return field_full(m, VS_F_IN_PORT);
    case VS_F_VLAN_PCP:
        return (field_uint(m, VS_F_VLAN_VID) & VS_OFPVID_PRESENT) &&
               (field_uint(v, VS_F_VLAN_VID) & VS_OFPVID_PRESENT);
    case VS_F_IP_DSCP: case VS_F_IP_ECN: case VS_F_IP_PROTO: case VS_F_IP_FRAG:
    case VS_F_IP_TTL:
        return is_ip(et);
    case VS_F_IPV4_SRC: case VS_F_IPV4_DST:
        return et == 0x0800;
    case VS_F_TCP_SRC: case VS_F_TCP_DST: case VS_F_TCP_FLAGS:
        return proto == 6;
    case VS_F_UDP_SRC: case VS_F_UDP_DST:
        return proto == 17;
    case VS_F_SCTP_SRC: case VS_F_SCTP_DST:
        return proto == 132;
    case VS_F_ICMPV4_TYPE: case VS_F_ICMPV4_CODE:
        return et == 0x0800 && proto == 1;
    case VS_F_ARP_OP: case VS_F_ARP_SPA: case VS_F_ARP_TPA: case VS_F_ARP_SHA:
    case VS_F_ARP_THA:
        return et == 0x0806;
    case VS_F_IPV6_SRC: case VS_F_IPV6_DST: case VS_F_IPV6_FLABEL: case VS_F_IPV6_EXTHDR:
        return et == 0x86dd;
    case VS_F_ICMPV6_TYPE: case VS_F_ICMPV6_CODE:
        return et == 0x86dd && proto == 58;
    case VS_F_IPV6_ND_TARGET: case VS_F_IPV6_ND_SLL: case VS_F_IPV6_ND_TLL: {
        if (!(et == 0x86dd && proto == 58))
            return false;
        int64_t t = exact(v, m, VS_F_ICMPV6_TYPE);
        return f == VS_F_IPV6_ND_TARGET ? (t == 135 || t == 136)
             : f == VS_F_IPV6_ND_SLL ? t == 135 : t == 136;
    }
    case VS_F_MPLS_LABEL: case VS_F_MPLS_TC: case VS_F_MPLS_BOS:
        return et == 0x8847 || et == 0x8848;
    case VS_F_PBB_ISID:
        return et == 0x88e7;
    default:
        return true;
    }
}

int vs_match_validate(const struct vs_key *match, const struct vs_key *mask,
                      uint64_t fields, struct vs_error *err)
{
    /* Bytes that belong to no field must be wildcarded. */
    uint8_t covered[VS_KEY_SIZE] = {0};
    for (int f = 0; f < VS_N_FIELDS; f++)
        memset(covered + vs_fields[f].offset, 1, vs_fields[f].len);
    const uint8_t *mb = (const uint8_t *)mask, *vb = (const uint8_t *)match;
    for (unsigned i = 0; i < VS_KEY_SIZE; i++)
        if (!covered[i] && (mb[i] || vb[i]))
            return fail(err, VS_OFPET_BAD_MATCH, BMC_BAD_FIELD, "byte %u is not a field", i);
    for (int f = 0; f < VS_N_FIELDS; f++) {
        if (fields & (1ull << f) && !field_any(mask, f))
            return fail(err, VS_OFPET_BAD_MATCH, BMC_BAD_MASK, "%s: empty mask", vs_fields[f].name);
        if (fields && !(fields & (1ull << f)) && field_any(mask, f)) {
            /* Named under another name of the same storage? */
            bool named = false;
            for (int g = 0; g < VS_N_FIELDS; g++)
                if ((fields & (1ull << g)) && vs_fields[g].offset == vs_fields[f].offset)
                    named = true;
            if (!named)
                return fail(err, VS_OFPET_BAD_MATCH, BMC_BAD_FIELD,
                            "%s matched but not named", vs_fields[f].name);
        }
    }
    /* Each storage slot once. */
    bool seen[VS_KEY_SIZE] = {false};
    for (int f = 0; f < VS_N_FIELDS; f++) {
        const struct vs_field_info *fi = &vs_fields[f];
        if (seen[fi->offset] || !field_any(mask, f))
            continue;
        seen[fi->offset] = true;
        const uint8_t *m = fptr(mask, f), *v = fptr(match, f);
        for (unsigned i = 0; i < fi->len; i++)
            if (v[i] & ~fi->valid_bits[i])
                return fail(err, VS_OFPET_BAD_MATCH, BMC_BAD_VALUE, "%s: value too wide", fi->name);
        for (unsigned i = 0; i < fi->len; i++)
            if (m[i] & ~fi->valid_bits[i])
                return fail(err, VS_OFPET_BAD_MATCH, BMC_BAD_MASK, "%s: mask too wide", fi->name);
        for (unsigned i = 0; i < fi->len; i++)
            if (v[i] & ~m[i])
                return fail(err, VS_OFPET_BAD_MATCH, BMC_BAD_WILDCARDS,
                            "%s: value has bits outside the mask", fi->name);
        /* The names this slot goes by in this request: each named one must
         * take the mask and have its prerequisites; when nothing is named,
         * some name of the slot must. */
        bool mask_ok = false, prereq = false;
        for (int g = f; g < VS_N_FIELDS; g++) {
            if (vs_fields[g].offset != fi->offset || (fields && !(fields & (1ull << g))))
                continue;
            const struct vs_field_info *gi = &vs_fields[g];
            bool m_ok = gi->maskable || field_full(mask, g);
            bool met = prereq_ok(match, mask, g);
            if (fields && !m_ok)
                return fail(err, VS_OFPET_BAD_MATCH, BMC_BAD_MASK, "%s cannot be masked", gi->name);
            if (fields && !met)
                return fail(err, VS_OFPET_BAD_MATCH, BMC_BAD_PREREQ,
                            "%s: prerequisites not met", gi->name);
            mask_ok |= m_ok;
            prereq |= met && m_ok;
        }
        if (!mask_ok)
            return fail(err, VS_OFPET_BAD_MATCH, BMC_BAD_MASK, "%s cannot be masked", fi->name);
        if (!prereq)
            return fail(err, VS_OFPET_BAD_MATCH, BMC_BAD_PREREQ,
                        "%s: prerequisites not met", fi->name);
    }
    return 0;
}

/* ---- lookup helpers ---------------------------------------------------- */

const struct vs_port *pipeline_find_port(const struct vs_pipeline *p, uint32_t port)
{
    uint32_t lo = 0, hi = p->n_ports;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (p->ports[mid].port == port)
            return &p->ports[mid];
        if (p->ports[mid].port < port)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Binary search in an array of pointers to structs whose first member is a
 * uint32_t id; returns the insertion index and sets *found. */
static uint32_t id_search(void *const *arr, uint32_t n, uint32_t id, bool *found)
{
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        uint32_t mid_id = *(const uint32_t *)arr[mid];
        if (mid_id == id) {
            *found = true;
            return mid;
        }
        if (mid_id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

struct vs_group *pipeline_find_group(const struct vs_pipeline *p, uint32_t id)
{
    bool found;
    uint32_t i = id_search((void *const *)p->groups, p->n_groups, id, &found);
    return found ? p->groups[i] : NULL;
}

struct vs_meter *pipeline_find_meter(const struct vs_pipeline *p, uint32_t id)
{
    bool found;
    uint32_t i = id_search((void *const *)p->meters, p->n_meters, id, &found);
    return found ? p->meters[i] : NULL;
}

static int grow(void **arr, uint32_t *cap, uint32_t n, size_t elem)
{
    if (n < *cap)
        return 0;
    uint32_t c = *cap ? *cap * 2 : 16;
    void *a = realloc(*arr, c * elem);
    if (!a)
        return -1;
    *arr = a;
    *cap = c;
    return 0;
}

/* ---- pipeline lifetime -------------------------------------------------- */

struct vs_pipeline *vs_pipeline_new(void)
{
    struct vs_pipeline *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&p->lock, &a);
    pthread_rwlockattr_destroy(&a);
    for (int t = 0; t < VS_N_TABLES; t++)
        cls_init(&p->tables[t].cls);
    static uint64_t next_id;
    p->id = __atomic_add_fetch(&next_id, 1, __ATOMIC_RELAXED);
    p->gen = 1;
    return p;
}

static void collect(struct cls_rule *cr, void *aux);

struct rule_vec {
    struct vs_rule **r;
    size_t n, cap;
    int oom;
};

static void rule_free(struct vs_rule *r)
{
    if (r) {
        free(r->insts);
        free(r);
    }
}

static void group_free(struct vs_group *g)
{
    if (g) {
        free(g->buckets);
        free(g->blob);
        free(g);
    }
}

static void removed_list_clear(struct vs_pipeline *p)
{
    for (size_t i = 0; i < p->n_removed; i++)
        free(p->removed[i].instructions);
    free(p->removed);
    p->removed = NULL;
    p->n_removed = p->cap_removed = 0;
}

void vs_pipeline_free(struct vs_pipeline *p)
{
    if (!p)
        return;
    for (int t = 0; t < VS_N_TABLES; t++) {
        struct rule_vec v = {0};
        cls_for_each(&p->tables[t].cls, collect, &v);
        for (size_t i = 0; i < v.n; i++)
            rule_free(v.r[i]);
        free(v.r);
        cls_destroy(&p->tables[t].cls);
    }
    for (uint32_t i = 0; i < p->n_groups; i++)
        group_free(p->groups[i]);
    for (uint32_t i = 0; i < p->n_meters; i++) {
        pthread_spin_destroy(&p->meters[i]->lock);
        free(p->meters[i]);
    }
    free(p->groups);
    free(p->meters);
    free(p->ports);
    removed_list_clear(p);
    pthread_rwlock_destroy(&p->lock);
    free(p);
}

uint64_t vs_pipeline_generation(const struct vs_pipeline *p)
{
    return ATOMIC_LOAD(&p->gen);
}

static void wrlock(struct vs_pipeline *p) { pthread_rwlock_wrlock(&p->lock); }
static void rdlock(struct vs_pipeline *p) { pthread_rwlock_rdlock(&p->lock); }
static void unlock(struct vs_pipeline *p) { pthread_rwlock_unlock(&p->lock); }
static void bump(struct vs_pipeline *p) { ATOMIC_STORE(&p->gen, p->gen + 1); }

/* ---- ports ------------------------------------------------------------- */

int vs_pipeline_set_port(struct vs_pipeline *p, uint32_t port, uint32_t flags)
{
    if (port == 0 || (port > VS_OFPP_MAX && port != VS_OFPP_LOCAL))
        return -EINVAL;
    int rc = 0;
    wrlock(p);
    struct vs_port *existing = (struct vs_port *)pipeline_find_port(p, port);
    if (existing) {
        existing->flags = flags;
    } else if (grow((void **)&p->ports, &p->cap_ports, p->n_ports, sizeof *p->ports) < 0) {
        rc = -ENOMEM;
    } else {
        uint32_t i = p->n_ports;
        while (i > 0 && p->ports[i - 1].port > port) {
            p->ports[i] = p->ports[i - 1];
            i--;
        }
        p->ports[i].port = port;
        p->ports[i].flags = flags;
        p->n_ports++;
    }
    bump(p);
    unlock(p);
    return rc;
}

int vs_pipeline_del_port(struct vs_pipeline *p, uint32_t port)
{
    int rc = -ENOENT;
    wrlock(p);
    const struct vs_port *pp = pipeline_find_port(p, port);
    if (pp) {
        uint32_t i = (uint32_t)(pp - p->ports);
        memmove(&p->ports[i], &p->ports[i + 1], (p->n_ports - i - 1) * sizeof *p->ports);
        p->n_ports--;
        rc = 0;
    }
    bump(p);
    unlock(p);
    return rc;
}

/* ---- instruction and action validation ---------------------------------- */

static bool settable(int f)
{
    switch (f) {
    case VS_F_ETH_DST: case VS_F_ETH_SRC: case VS_F_VLAN_VID: case VS_F_VLAN_PCP:
    case VS_F_IP_DSCP: case VS_F_IP_ECN: case VS_F_IPV4_SRC: case VS_F_IPV4_DST:
    case VS_F_TCP_SRC: case VS_F_TCP_DST: case VS_F_UDP_SRC: case VS_F_UDP_DST:
    case VS_F_SCTP_SRC: case VS_F_SCTP_DST: case VS_F_ICMPV4_TYPE: case VS_F_ICMPV4_CODE:
    case VS_F_ARP_OP: case VS_F_ARP_SPA: case VS_F_ARP_TPA: case VS_F_ARP_SHA:
    case VS_F_ARP_THA: case VS_F_IPV6_SRC: case VS_F_IPV6_DST: case VS_F_IPV6_FLABEL:
    case VS_F_ICMPV6_TYPE: case VS_F_ICMPV6_CODE: case VS_F_IPV6_ND_TARGET:
    case VS_F_IPV6_ND_SLL: case VS_F_IPV6_ND_TLL: case VS_F_TUNNEL_ID:
    case VS_F_TUN_IPV4_SRC: case VS_F_TUN_IPV4_DST:
        return true;
    default:
        return false;
    }
}

static bool valid_out_port(uint32_t port)
{
    if (port == 0 || port == VS_OFPP_ANY || port == VS_OFPP_TABLE)
        return false;
    return port <= VS_OFPP_MAX || port >= VS_OFPP_IN_PORT;
}

struct action_check {
    const struct vs_pipeline *p;
    const struct vs_key *match, *mask;  /* NULL: group buckets (no match) */
    bool in_bucket;
};

/* Validates an action list of len bytes. */
static int check_actions(const struct action_check *c, const uint8_t *a, uint32_t len,
                         struct vs_error *err)
{
    bool pushed_vlan = false;
    for (uint32_t off = 0; off < len;) {
        struct vs_op op;
        if (len - off < sizeof op)
            return fail(err, VS_OFPET_BAD_ACTION, BAC_BAD_LEN, "truncated action");
        memcpy(&op, a + off, sizeof op);
        if (op.len < 8 || op.len % 8 || op.len > len - off)
            return fail(err, VS_OFPET_BAD_ACTION, BAC_BAD_LEN, "bad action length %u", op.len);
        if (op.type == VS_A_PUSH_VLAN)
            pushed_vlan = true;
        off += op.len;
    }
    for (uint32_t off = 0; off < len;) {
        struct vs_op op;
        memcpy(&op, a + off, sizeof op);
        const uint8_t *body = a + off + 8;
        switch (op.type) {
        case VS_A_OUTPUT:
            if (op.len != 16)
                return fail(err, VS_OFPET_BAD_ACTION, BAC_BAD_LEN, "output length");
            if (!valid_out_port(op.arg))
                return fail(err, VS_OFPET_BAD_ACTION, BAC_BAD_OUT_PORT, "bad output port %#x", op.arg);
            break;
        case VS_A_GROUP:
            if (op.len != 8)
                return fail(err, VS_OFPET_BAD_ACTION, BAC_BAD_LEN, "group length");
            if (c->in_bucket)
                return fail(err, VS_OFPET_GROUP_MOD_FAILED, GMF_CHAINING_UNSUPPORTED,
                            "groups in buckets are not supported");
            if (!pipeline_find_group(c->p, op.arg))
                return fail(err, VS_OFPET_BAD_ACTION, BAC_BAD_OUT_GROUP, "no group %u", op.arg);
            break;
        case VS_A_SET_QUEUE: case VS_A_POP_VLAN: case VS_A_DEC_NW_TTL:
            if (op.len != 8)
                return fail(err, VS_OFPET_BAD_ACTION, BAC_BAD_LEN, "action length");
            break;
        case VS_A_SET_NW_TTL:
            if (op.len != 8 || op.arg > 255)
                return fail(err, VS_OFPET_BAD_ACTION, BAC_BAD_ARGUMENT, "bad ttl");
            break;
        case VS_A_PUSH_VLAN:
            if (op.len != 8)
                return fail(err, VS_OFPET_BAD_ACTION, BAC_BAD_LEN, "action length");
            if (op.arg != 0x8100 && op.arg != 0x88a8)
                return fail(err, VS_OFPET_BAD_ACTION, BAC_BAD_ARGUMENT,
                            "push_vlan ethertype %#x", op.arg);
            break;
        case VS_A_SET_FIELD: {
            if (op.arg >= VS_N_FIELDS || !settable((int)op.arg))
                return fail(err, VS_OFPET_BAD_ACTION, BAC_BAD_SET_TYPE,
                            "field %u cannot be set", op.arg);
            const struct vs_field_info *fi = &vs_fields[op.arg];
            if (op.len != 8 + ((fi->len + 7u) & ~7u))
                return fail(err, VS_OFPET_BAD_ACTION, BAC_BAD_SET_LEN, "%s: bad length", fi->name);
            for (unsigned i = 0; i < fi->len; i++)
                if (body[i] & ~fi->valid_bits[i])
                    return fail(err, VS_OFPET_BAD_ACTION, BAC_BAD_SET_ARGUMENT,
                                "%s: value too wide", fi->name);
            bool vlan = op.arg == VS_F_VLAN_VID || op.arg == VS_F_VLAN_PCP;
            if (c->match && !(vlan && pushed_vlan)) {
                bool ok;
                if (vlan)  /* the match must say the packet is tagged */
                    ok = (field_uint(c->mask, VS_F_VLAN_VID) & VS_OFPVID_PRESENT) &&
                         (field_uint(c->match, VS_F_VLAN_VID) & VS_OFPVID_PRESENT);
                else
                    ok = prereq_ok(c->match, c->mask, (int)op.arg);
                if (!ok)
                    return fail(err, VS_OFPET_BAD_ACTION, BAC_MATCH_INCONSISTENT,
                                "set_field %s: prerequisites not met by the match", fi->name);
            }
            break;
        }
        default:
            return fail(err, VS_OFPET_BAD_ACTION, BAC_BAD_TYPE, "unsupported action %u", op.type);
        }
        off += op.len;
    }
    return 0;
}

/* Decodes and validates a rule's instructions into r. */
static int check_instructions(const struct vs_pipeline *p, struct vs_rule *r,
                              const struct vs_key *match, const struct vs_key *mask,
                              struct vs_error *err)
{
    const uint8_t *ins = r->insts;
    uint32_t len = r->insts_len;
    unsigned seen = 0;
    struct action_check c = {p, match, mask, false};
    for (uint32_t off = 0; off < len;) {
        struct vs_op op;
        if (len - off < sizeof op)
            return fail(err, VS_OFPET_BAD_INSTRUCTION, BIC_BAD_LEN, "truncated instruction");
        memcpy(&op, ins + off, sizeof op);
        if (op.len < 8 || op.len % 8 || op.len > len - off)
            return fail(err, VS_OFPET_BAD_INSTRUCTION, BIC_BAD_LEN, "bad instruction length");
        if (op.type < VS_I_METER || op.type > VS_I_GOTO)
            return fail(err, VS_OFPET_BAD_INSTRUCTION, BIC_UNKNOWN_INST,
                        "unknown instruction %u", op.type);
        if (seen & (1u << op.type))
            return fail(err, VS_OFPET_BAD_INSTRUCTION, BIC_UNSUP_INST,
                        "instruction %u given twice", op.type);
        seen |= 1u << op.type;
        const uint8_t *body = ins + off + 8;
        uint32_t blen = op.len - 8;
        switch (op.type) {
        case VS_I_METER:
            if (op.len != 8)
                return fail(err, VS_OFPET_BAD_INSTRUCTION, BIC_BAD_LEN, "meter length");
            if (op.arg == 0 || op.arg > VS_OFPM_MAX || !pipeline_find_meter(p, op.arg))
                return fail(err, VS_OFPET_METER_MOD_FAILED, MMF_UNKNOWN_METER, "no meter %u", op.arg);
            r->meter_id = op.arg;
            break;
        case VS_I_APPLY:
        case VS_I_WRITE:
            if (check_actions(&c, body, blen, err) < 0)
                return -1;
            if (op.type == VS_I_APPLY) {
                r->apply = body;
                r->apply_len = blen;
            } else {
                r->write = body;
                r->write_len = blen;
            }
            break;
        case VS_I_CLEAR:
            if (op.len != 8)
                return fail(err, VS_OFPET_BAD_INSTRUCTION, BIC_BAD_LEN, "clear_actions length");
            r->clear = 1;
            break;
        case VS_I_WRITE_METADATA:
            if (op.len != 24)
                return fail(err, VS_OFPET_BAD_INSTRUCTION, BIC_BAD_LEN, "write_metadata length");
            memcpy(&r->meta_value, body, 8);
            memcpy(&r->meta_mask, body + 8, 8);
            r->has_meta = 1;
            break;
        case VS_I_GOTO:
            if (op.len != 8)
                return fail(err, VS_OFPET_BAD_INSTRUCTION, BIC_BAD_LEN, "goto_table length");
            if (op.arg <= r->table_id || op.arg >= VS_N_TABLES)
                return fail(err, VS_OFPET_BAD_INSTRUCTION, BIC_BAD_TABLE_ID,
                            "goto_table %u from table %u", op.arg, r->table_id);
            r->has_goto = 1;
            r->goto_table = (uint8_t)op.arg;
            break;
        }
        off += op.len;
    }
    return 0;
}

/* Does the action list output to port / name group? */
static bool actions_have(const uint8_t *a, uint32_t len, uint16_t type, uint32_t arg)
{
    for (uint32_t off = 0; off + 8 <= len;) {
        struct vs_op op;
        memcpy(&op, a + off, sizeof op);
        if (op.type == type && op.arg == arg)
            return true;
        off += op.len;
    }
    return false;
}

static bool rule_has(const struct vs_rule *r, uint16_t type, uint32_t arg)
{
    return actions_have(r->apply, r->apply_len, type, arg) ||
           actions_have(r->write, r->write_len, type, arg);
}

/* Builds a validated rule from a flow mod, not yet in any table. */
static struct vs_rule *rule_build(const struct vs_pipeline *p, const struct vs_flow_mod *fm,
                                  uint8_t table_id, struct vs_error *err)
{
    struct vs_rule *r = calloc(1, sizeof *r);
    if (!r || (fm->instructions_len && !(r->insts = malloc(fm->instructions_len)))) {
        rule_free(r);
        fail(err, VS_OFPET_FLOW_MOD_FAILED, FMF_UNKNOWN, "out of memory");
        return NULL;
    }
    if (fm->instructions_len)
        memcpy(r->insts, fm->instructions, fm->instructions_len);
    r->insts_len = fm->instructions_len;
    r->table_id = table_id;
    if (check_instructions(p, r, &fm->match, &fm->mask, err) < 0) {
        rule_free(r);
        return NULL;
    }
    r->cr.key = fm->match;
    r->cr.priority = fm->priority;
    r->flags = fm->flags;
    r->idle_timeout = fm->idle_timeout;
    r->hard_timeout = fm->hard_timeout;
    r->cookie = fm->cookie;
    static const struct vs_key zero;
    r->table_miss = fm->priority == 0 && key_eq(&fm->mask, &zero);
    r->created_ns = r->used_ns = now_ns();
    return r;
}

/* ---- selection (non-strict and strict) ---------------------------------- */

static void collect(struct cls_rule *cr, void *aux)
{
    struct rule_vec *v = aux;
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        struct vs_rule **n = realloc(v->r, cap * sizeof *n);
        if (!n) {
            v->oom = 1;
            return;
        }
        v->r = n;
        v->cap = cap;
    }
    v->r[v->n++] = (struct vs_rule *)cr;
}

/* Rule's match is equal to or more specific than (match, mask). */
static bool covered_by(const struct vs_rule *r, const struct vs_key *match,
                       const struct vs_key *mask)
{
    const struct vs_key *rm = &r->cr.st->mask;
    for (unsigned i = 0; i < VS_KEY_WORDS; i++) {
        uint64_t m = kw(mask, i);
        if ((m & ~kw(rm, i)) || ((kw(&r->cr.key, i) ^ kw(match, i)) & m))
            return false;
    }
    return true;
}

struct selector {
    const struct vs_key *match, *mask;
    int strict;
    uint16_t priority;
    uint32_t out_port, out_group;
    uint64_t cookie, cookie_mask;
};

static bool selected(const struct vs_rule *r, const struct selector *s)
{
    if ((r->cookie & s->cookie_mask) != (s->cookie & s->cookie_mask))
        return false;
    if (s->strict) {
        if (r->cr.priority != s->priority || !key_eq(&r->cr.st->mask, s->mask) ||
            !key_eq(&r->cr.key, s->match))
            return false;
    } else if (!covered_by(r, s->match, s->mask)) {
        return false;
    }
    if (s->out_port != VS_OFPP_ANY && !rule_has(r, VS_A_OUTPUT, s->out_port))
        return false;
    if (s->out_group != VS_OFPG_ANY && !rule_has(r, VS_A_GROUP, s->out_group))
        return false;
    return true;
}

static int by_priority(const void *a, const void *b)
{
    const struct vs_rule *x = *(struct vs_rule *const *)a, *y = *(struct vs_rule *const *)b;
    if (x->cr.priority != y->cr.priority)
        return x->cr.priority > y->cr.priority ? -1 : 1;
    return 0;
}

/* Selected rules of one table (or all), table order, priority descending. */
static int select_rules(const struct vs_pipeline *p, uint8_t table_id,
                        const struct selector *s, struct rule_vec *out)
{
    int first = table_id == VS_OFPTT_ALL ? 0 : table_id;
    int last = table_id == VS_OFPTT_ALL ? VS_N_TABLES - 1 : table_id;
    for (int t = first; t <= last; t++) {
        if (!p->tables[t].cls.n_rules)
            continue;
        struct rule_vec all = {0};
        if (s->strict) {
            struct cls_rule *cr = cls_find_exact(&p->tables[t].cls, s->match, s->mask,
                                                 s->priority);
            if (cr)
                collect(cr, &all);
        } else {
            cls_for_each(&p->tables[t].cls, collect, &all);
        }
        if (all.oom) {
            free(all.r);
            return -1;
        }
        size_t start = out->n;
        for (size_t i = 0; i < all.n; i++)
            if (selected(all.r[i], s))
                collect(&all.r[i]->cr, out);
        free(all.r);
        if (out->oom)
            return -1;
        if (out->n > start)
            qsort(out->r + start, out->n - start, sizeof *out->r, by_priority);
    }
    return 0;
}

/* ---- removal records ---------------------------------------------------- */

static void fill_stats(const struct vs_rule *r, uint64_t now, struct vs_flow_stats *s)
{
    memset(s, 0, sizeof *s);
    s->table_id = r->table_id;
    s->priority = (uint16_t)r->cr.priority;
    s->flags = r->flags;
    s->idle_timeout = r->idle_timeout;
    s->hard_timeout = r->hard_timeout;
    s->cookie = r->cookie;
    s->packet_count = ATOMIC_LOAD(&r->n_packets);
    s->byte_count = ATOMIC_LOAD(&r->n_bytes);
    s->duration_ns = now - r->created_ns;
    uint64_t used = ATOMIC_LOAD(&r->used_ns);
    s->idle_ns = now > used ? now - used : 0;
    s->match = r->cr.key;
    s->mask = r->cr.st->mask;
    s->instructions_len = r->insts_len;
}

static int copy_insts(const struct vs_rule *r, struct vs_flow_stats *s)
{
    s->instructions = NULL;
    if (!r->insts_len)
        return 0;
    s->instructions = malloc(r->insts_len);
    if (!s->instructions)
        return -1;
    memcpy(s->instructions, r->insts, r->insts_len);
    return 0;
}

/* Removes r from its table and frees it, queueing a record if asked to. */
static void rule_remove(struct vs_pipeline *p, struct vs_rule *r, uint8_t reason, uint64_t now)
{
    if (r->flags & VS_FF_SEND_FLOW_REM) {
        if (p->n_removed == p->cap_removed) {
            size_t cap = p->cap_removed ? p->cap_removed * 2 : 64;
            struct vs_flow_stats *n = realloc(p->removed, cap * sizeof *n);
            if (n) {
                p->removed = n;
                p->cap_removed = cap;
            }
        }
        if (p->n_removed < p->cap_removed) {
            struct vs_flow_stats *s = &p->removed[p->n_removed];
            fill_stats(r, now, s);
            s->reason = reason;
            if (copy_insts(r, s) == 0)
                p->n_removed++;
        }
    }
    cls_remove(&p->tables[r->table_id].cls, &r->cr);
    p->n_rules--;
    rule_free(r);
}

/* ---- flow mods ---------------------------------------------------------- */

static bool overlaps(const struct vs_rule *r, const struct vs_key *match, const struct vs_key *mask)
{
    const struct vs_key *rm = &r->cr.st->mask;
    for (unsigned i = 0; i < VS_KEY_WORDS; i++)
        if ((kw(&r->cr.key, i) ^ kw(match, i)) & kw(rm, i) & kw(mask, i))
            return false;
    return true;
}

static int flow_add(struct vs_pipeline *p, const struct vs_flow_mod *fm, struct vs_error *err)
{
    struct vs_table *t = &p->tables[fm->table_id];
    /* Validation errors come before overlap and capacity errors. */
    struct vs_rule *r = rule_build(p, fm, fm->table_id, err);
    if (!r)
        return -1;
    if (fm->flags & VS_FF_CHECK_OVERLAP) {
        struct rule_vec all = {0};
        cls_for_each(&t->cls, collect, &all);
        for (size_t i = 0; i < all.n; i++) {
            if (all.r[i]->cr.priority == fm->priority && overlaps(all.r[i], &fm->match, &fm->mask)) {
                free(all.r);
                rule_free(r);
                return fail(err, VS_OFPET_FLOW_MOD_FAILED, FMF_OVERLAP, "overlaps an existing flow");
            }
        }
        free(all.r);
    }
    struct cls_rule *old = cls_find_exact(&t->cls, &fm->match, &fm->mask, fm->priority);
    if (!old && t->cls.n_rules >= MAX_RULES_PER_TABLE) {
        rule_free(r);
        return fail(err, VS_OFPET_FLOW_MOD_FAILED, FMF_TABLE_FULL, "table %u is full", fm->table_id);
    }
    if (cls_insert(&t->cls, &r->cr, &fm->mask) < 0) {
        rule_free(r);
        return fail(err, VS_OFPET_FLOW_MOD_FAILED, FMF_UNKNOWN, "out of memory");
    }
    p->n_rules++;
    if (old) {
        /* Replaced: OpenFlow 1.3 clears the old entry without a removal
         * message. */
        cls_remove(&t->cls, old);
        p->n_rules--;
        rule_free((struct vs_rule *)old);
    }
    return 0;
}

static int flow_modify(struct vs_pipeline *p, const struct vs_flow_mod *fm, struct vs_error *err)
{
    struct selector s = {&fm->match, &fm->mask, fm->command == VS_FC_MODIFY_STRICT,
                         fm->priority, VS_OFPP_ANY, VS_OFPG_ANY, fm->cookie, fm->cookie_mask};
    struct rule_vec v = {0};
    if (select_rules(p, fm->table_id, &s, &v) < 0) {
        free(v.r);
        return fail(err, VS_OFPET_FLOW_MOD_FAILED, FMF_UNKNOWN, "out of memory");
    }
    /* Build every replacement first so that a bad request changes nothing.
     * The instructions are checked against the request's match, as Open
     * vSwitch does. */
    struct vs_rule **repl = calloc(v.n ? v.n : 1, sizeof *repl);
    int rc = repl ? 0 : fail(err, VS_OFPET_FLOW_MOD_FAILED, FMF_UNKNOWN, "out of memory");
    for (size_t i = 0; rc == 0 && i < v.n; i++) {
        repl[i] = rule_build(p, fm, v.r[i]->table_id, err);
        if (!repl[i])
            rc = -1;
    }
    if (v.n == 0 && rc == 0) {
        /* Nothing selected: still validate the instructions. */
        struct vs_rule *probe = rule_build(p, fm, fm->table_id, err);
        rc = probe ? 0 : -1;
        rule_free(probe);
    }
    for (size_t i = 0; i < v.n; i++) {
        struct vs_rule *old = v.r[i], *n = repl ? repl[i] : NULL;
        if (rc < 0) {
            rule_free(n);
            continue;
        }
        /* Swap the instructions in place; everything else is kept. */
        uint8_t *tmp = old->insts;
        old->insts = n->insts;
        old->insts_len = n->insts_len;
        old->apply = n->apply;
        old->apply_len = n->apply_len;
        old->write = n->write;
        old->write_len = n->write_len;
        old->clear = n->clear;
        old->has_goto = n->has_goto;
        old->goto_table = n->goto_table;
        old->has_meta = n->has_meta;
        old->meta_value = n->meta_value;
        old->meta_mask = n->meta_mask;
        old->meter_id = n->meter_id;
        n->insts = tmp;
        rule_free(n);
        if (fm->flags & VS_FF_RESET_COUNTS) {
            ATOMIC_STORE(&old->n_packets, 0);
            ATOMIC_STORE(&old->n_bytes, 0);
        }
    }
    free(repl);
    free(v.r);
    return rc;
}

static int flow_delete(struct vs_pipeline *p, const struct vs_flow_mod *fm, struct vs_error *err)
{
    struct selector s = {&fm->match, &fm->mask, fm->command == VS_FC_DELETE_STRICT,
                         fm->priority, fm->out_port, fm->out_group, fm->cookie, fm->cookie_mask};
    struct rule_vec v = {0};
    if (select_rules(p, fm->table_id, &s, &v) < 0) {
        free(v.r);
        return fail(err, VS_OFPET_FLOW_MOD_FAILED, FMF_UNKNOWN, "out of memory");
    }
    uint64_t now = now_ns();
    for (size_t i = 0; i < v.n; i++)
        rule_remove(p, v.r[i], VS_RR_DELETE, now);
    free(v.r);
    return 0;
}

int vs_pipeline_flow_mod(struct vs_pipeline *p, const struct vs_flow_mod *fm, struct vs_error *err)
{
    if (err)
        memset(err, 0, sizeof *err);
    if (fm->command > VS_FC_DELETE_STRICT)
        return fail(err, VS_OFPET_FLOW_MOD_FAILED, FMF_BAD_COMMAND, "bad command %u", fm->command);
    bool is_delete = fm->command >= VS_FC_DELETE;
    if (fm->table_id >= VS_N_TABLES && !(is_delete && fm->table_id == VS_OFPTT_ALL))
        return fail(err, VS_OFPET_FLOW_MOD_FAILED, FMF_BAD_TABLE_ID, "bad table %u", fm->table_id);
    if (fm->flags & ~0x1fu)
        return fail(err, VS_OFPET_FLOW_MOD_FAILED, FMF_BAD_FLAGS, "bad flags %#x", fm->flags);
    if (vs_match_validate(&fm->match, &fm->mask, fm->fields, err) < 0)
        return -1;
    wrlock(p);
    int rc;
    if (fm->command == VS_FC_ADD)
        rc = flow_add(p, fm, err);
    else if (is_delete)
        rc = flow_delete(p, fm, err);
    else
        rc = flow_modify(p, fm, err);
    bump(p);
    unlock(p);
    return rc;
}

/* ---- dumps, stats, expiry ----------------------------------------------- */

static struct vs_flow_list *list_from(const struct rule_vec *v, uint64_t now)
{
    struct vs_flow_list *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->flows = calloc(v->n ? v->n : 1, sizeof *l->flows);
    if (!l->flows) {
        free(l);
        return NULL;
    }
    for (size_t i = 0; i < v->n; i++) {
        fill_stats(v->r[i], now, &l->flows[i]);
        if (copy_insts(v->r[i], &l->flows[i]) < 0) {
            l->n = i;
            vs_flow_list_free(l);
            return NULL;
        }
    }
    l->n = v->n;
    return l;
}

struct vs_flow_list *vs_pipeline_dump(struct vs_pipeline *p, uint8_t table_id,
                                      const struct vs_key *match, const struct vs_key *mask,
                                      uint32_t out_port, uint32_t out_group,
                                      uint64_t cookie, uint64_t cookie_mask)
{
    if (table_id >= VS_N_TABLES && table_id != VS_OFPTT_ALL)
        return NULL;
    struct selector s = {match, mask, 0, 0, out_port, out_group, cookie, cookie_mask};
    struct rule_vec v = {0};
    rdlock(p);
    struct vs_flow_list *l = NULL;
    if (select_rules(p, table_id, &s, &v) == 0)
        l = list_from(&v, now_ns());
    unlock(p);
    free(v.r);
    return l;
}

int vs_pipeline_aggregate(struct vs_pipeline *p, uint8_t table_id, const struct vs_key *match,
                          const struct vs_key *mask, uint32_t out_port, uint32_t out_group,
                          uint64_t cookie, uint64_t cookie_mask, struct vs_aggregate *agg)
{
    memset(agg, 0, sizeof *agg);
    if (table_id >= VS_N_TABLES && table_id != VS_OFPTT_ALL)
        return -1;
    struct selector s = {match, mask, 0, 0, out_port, out_group, cookie, cookie_mask};
    struct rule_vec v = {0};
    rdlock(p);
    int rc = select_rules(p, table_id, &s, &v);
    for (size_t i = 0; rc == 0 && i < v.n; i++) {
        agg->packet_count += ATOMIC_LOAD(&v.r[i]->n_packets);
        agg->byte_count += ATOMIC_LOAD(&v.r[i]->n_bytes);
    }
    agg->flow_count = rc == 0 ? (uint32_t)v.n : 0;
    unlock(p);
    free(v.r);
    return rc == 0 ? 0 : -1;
}

void vs_flow_list_free(struct vs_flow_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        free(l->flows[i].instructions);
    free(l->flows);
    free(l);
}

struct vs_flow_list *vs_pipeline_drain_removed(struct vs_pipeline *p)
{
    wrlock(p);
    struct vs_flow_list *l = NULL;
    if (p->n_removed && (l = calloc(1, sizeof *l))) {
        l->n = p->n_removed;
        l->flows = p->removed;
        p->removed = NULL;
        p->n_removed = p->cap_removed = 0;
    }
    unlock(p);
    return l;
}

size_t vs_pipeline_expire(struct vs_pipeline *p, uint64_t now)
{
    if (!now)
        now = now_ns();
    size_t n = 0;
    wrlock(p);
    for (int t = 0; t < VS_N_TABLES; t++) {
        if (!p->tables[t].cls.n_rules)
            continue;
        struct rule_vec v = {0};
        cls_for_each(&p->tables[t].cls, collect, &v);
        for (size_t i = 0; i < v.n; i++) {
            struct vs_rule *r = v.r[i];
            uint64_t used = ATOMIC_LOAD(&r->used_ns);
            if (r->hard_timeout && now >= r->created_ns + r->hard_timeout * 1000000000ull) {
                rule_remove(p, r, VS_RR_HARD_TIMEOUT, now);
                n++;
            } else if (r->idle_timeout && now >= used + r->idle_timeout * 1000000000ull) {
                rule_remove(p, r, VS_RR_IDLE_TIMEOUT, now);
                n++;
            }
        }
        free(v.r);
    }
    if (n)
        bump(p);
    unlock(p);
    return n;
}

int vs_pipeline_table_stats(struct vs_pipeline *p, uint8_t table_id, struct vs_table_stats *out)
{
    if (table_id >= VS_N_TABLES)
        return -EINVAL;
    rdlock(p);
    const struct vs_table *t = &p->tables[table_id];
    out->active_count = t->cls.n_rules;
    out->n_subtables = t->cls.n_st;
    out->lookup_count = ATOMIC_LOAD(&t->lookup_count);
    out->matched_count = ATOMIC_LOAD(&t->matched_count);
    unlock(p);
    return 0;
}

/* ---- groups ------------------------------------------------------------- */

static struct vs_group *group_build(const struct vs_pipeline *p, uint8_t type, uint32_t id,
                                   const uint8_t *buckets, uint32_t len, struct vs_error *err)
{
    if (type > VS_GT_FF) {
        fail(err, VS_OFPET_GROUP_MOD_FAILED, GMF_BAD_TYPE, "bad group type %u", type);
        return NULL;
    }
    struct vs_group *g = calloc(1, sizeof *g);
    if (!g || !(g->buckets = calloc(MAX_BUCKETS, sizeof *g->buckets)) ||
        (len && !(g->blob = malloc(len)))) {
        group_free(g);
        fail(err, VS_OFPET_GROUP_MOD_FAILED, GMF_OUT_OF_BUCKETS, "out of memory");
        return NULL;
    }
    if (len)
        memcpy(g->blob, buckets, len);
    g->group_id = id;
    g->type = type;
    struct action_check c = {p, NULL, NULL, true};
    for (uint32_t off = 0; off < len;) {
        struct vs_bucket_hdr h;
        if (len - off < sizeof h) {
            fail(err, VS_OFPET_GROUP_MOD_FAILED, GMF_BAD_BUCKET, "truncated bucket");
            goto bad;
        }
        memcpy(&h, g->blob + off, sizeof h);
        off += sizeof h;
        if (h.actions_len > len - off) {
            fail(err, VS_OFPET_GROUP_MOD_FAILED, GMF_BAD_BUCKET, "bucket actions overrun");
            goto bad;
        }
        if (g->n_buckets == MAX_BUCKETS) {
            fail(err, VS_OFPET_GROUP_MOD_FAILED, GMF_OUT_OF_BUCKETS, "more than %u buckets", MAX_BUCKETS);
            goto bad;
        }
        if (h.watch_group != VS_OFPG_ANY) {
            fail(err, VS_OFPET_GROUP_MOD_FAILED, GMF_WATCH_UNSUPPORTED, "watch_group is not supported");
            goto bad;
        }
        if (type == VS_GT_FF && h.watch_port == VS_OFPP_ANY) {
            fail(err, VS_OFPET_GROUP_MOD_FAILED, GMF_BAD_WATCH, "fast failover bucket without watch_port");
            goto bad;
        }
        if (check_actions(&c, g->blob + off, h.actions_len, err) < 0)
            goto bad;
        struct group_bucket *b = &g->buckets[g->n_buckets++];
        b->weight = type == VS_GT_SELECT ? h.weight : 1;
        b->watch_port = h.watch_port;
        b->actions = g->blob + off;
        b->actions_len = h.actions_len;
        g->total_weight += b->weight;
        off += h.actions_len;
    }
    if (type == VS_GT_INDIRECT && g->n_buckets != 1) {
        fail(err, VS_OFPET_GROUP_MOD_FAILED, GMF_BAD_BUCKET, "indirect group needs one bucket");
        goto bad;
    }
    g->created_ns = now_ns();
    return g;
bad:
    group_free(g);
    return NULL;
}

/* Rules that name group id are removed with the group (OpenFlow 1.3). */
static void remove_rules_with_group(struct vs_pipeline *p, uint32_t id)
{
    struct vs_key zero;
    memset(&zero, 0, sizeof zero);
    struct selector s = {&zero, &zero, 0, 0, VS_OFPP_ANY, id, 0, 0};
    struct rule_vec v = {0};
    select_rules(p, VS_OFPTT_ALL, &s, &v);
    uint64_t now = now_ns();
    for (size_t i = 0; i < v.n; i++)
        rule_remove(p, v.r[i], VS_RR_GROUP_DELETE, now);
    free(v.r);
}

int vs_pipeline_group_mod(struct vs_pipeline *p, uint8_t command, uint8_t type, uint32_t id,
                          const uint8_t *buckets, uint32_t len, struct vs_error *err)
{
    if (err)
        memset(err, 0, sizeof *err);
    if (command > VS_GC_DELETE)
        return fail(err, VS_OFPET_GROUP_MOD_FAILED, GMF_BAD_COMMAND, "bad command %u", command);
    if (id > VS_OFPG_MAX && !(command == VS_GC_DELETE && id == OFPG_ALL))
        return fail(err, VS_OFPET_GROUP_MOD_FAILED, GMF_INVALID_GROUP, "bad group id %#x", id);
    int rc = 0;
    wrlock(p);
    bool found;
    uint32_t i = id_search((void *const *)p->groups, p->n_groups, id, &found);
    if (command == VS_GC_DELETE) {
        if (id == OFPG_ALL) {          /* every group */
            while (p->n_groups) {
                struct vs_group *g = p->groups[--p->n_groups];
                remove_rules_with_group(p, g->group_id);
                group_free(g);
            }
        } else if (found) {
            remove_rules_with_group(p, id);
            group_free(p->groups[i]);
            memmove(&p->groups[i], &p->groups[i + 1], (p->n_groups - i - 1) * sizeof *p->groups);
            p->n_groups--;
        }
    } else if (command == VS_GC_ADD && found) {
        rc = fail(err, VS_OFPET_GROUP_MOD_FAILED, GMF_GROUP_EXISTS, "group %u exists", id);
    } else if (command == VS_GC_MODIFY && !found) {
        rc = fail(err, VS_OFPET_GROUP_MOD_FAILED, GMF_UNKNOWN_GROUP, "no group %u", id);
    } else if (command == VS_GC_ADD && p->n_groups >= MAX_GROUPS) {
        rc = fail(err, VS_OFPET_GROUP_MOD_FAILED, GMF_OUT_OF_GROUPS, "too many groups");
    } else {
        struct vs_group *g = group_build(p, type, id, buckets, len, err);
        if (!g) {
            rc = -1;
        } else if (found) {
            g->n_packets = p->groups[i]->n_packets;
            g->n_bytes = p->groups[i]->n_bytes;
            g->created_ns = p->groups[i]->created_ns;
            group_free(p->groups[i]);
            p->groups[i] = g;
        } else if (grow((void **)&p->groups, &p->cap_groups, p->n_groups, sizeof *p->groups) < 0) {
            group_free(g);
            rc = fail(err, VS_OFPET_GROUP_MOD_FAILED, GMF_OUT_OF_GROUPS, "out of memory");
        } else {
            memmove(&p->groups[i + 1], &p->groups[i], (p->n_groups - i) * sizeof *p->groups);
            p->groups[i] = g;
            p->n_groups++;
        }
    }
    bump(p);
    unlock(p);
    return rc;
}

struct ref_count { uint32_t id; uint16_t type; uint32_t n; };

static void count_refs(struct cls_rule *cr, void *aux)
{
    struct ref_count *rc = aux;
    const struct vs_rule *r = (const struct vs_rule *)cr;
    if (rc->type == VS_I_METER ? r->meter_id == rc->id : rule_has(r, VS_A_GROUP, rc->id))
        rc->n++;
}

static uint32_t refs(const struct vs_pipeline *p, uint16_t type, uint32_t id)
{
    struct ref_count rc = {id, type, 0};
    for (int t = 0; t < VS_N_TABLES; t++)
        cls_for_each(&p->tables[t].cls, count_refs, &rc);
    return rc.n;
}

size_t vs_pipeline_group_stats(struct vs_pipeline *p, struct vs_group_stats *out, size_t max)
{
    rdlock(p);
    uint64_t now = now_ns();
    size_t n = p->n_groups;
    for (size_t i = 0; i < n && i < max; i++) {
        const struct vs_group *g = p->groups[i];
        struct vs_group_stats *s = &out[i];
        memset(s, 0, sizeof *s);
        s->group_id = g->group_id;
        s->type = g->type;
        s->ref_count = refs(p, VS_A_GROUP, g->group_id);
        s->n_buckets = g->n_buckets;
        s->packet_count = ATOMIC_LOAD(&g->n_packets);
        s->byte_count = ATOMIC_LOAD(&g->n_bytes);
        s->duration_ns = now - g->created_ns;
        for (uint32_t b = 0; b < g->n_buckets && b < 32; b++) {
            s->bucket_packets[b] = ATOMIC_LOAD(&g->buckets[b].n_packets);
            s->bucket_bytes[b] = ATOMIC_LOAD(&g->buckets[b].n_bytes);
        }
    }
    unlock(p);
    return n;
}

/* ---- meters ------------------------------------------------------------- */

static int meter_config(struct vs_meter *m, uint16_t flags, const struct vs_meter_band *bands,
                        uint32_t n, struct vs_error *err)
{
    if ((flags & ~0xfu) || !!(flags & VS_MF_KBPS) == !!(flags & VS_MF_PKTPS))
        return fail(err, VS_OFPET_METER_MOD_FAILED, MMF_BAD_FLAGS, "need exactly one of kbps/pktps");
    if (n > VS_MAX_BANDS)
        return fail(err, VS_OFPET_METER_MOD_FAILED, MMF_OUT_OF_BANDS, "more than %d bands", VS_MAX_BANDS);
    for (uint32_t i = 0; i < n; i++) {
        if (bands[i].type != VS_MBT_DROP && bands[i].type != VS_MBT_DSCP_REMARK)
            return fail(err, VS_OFPET_METER_MOD_FAILED, MMF_BAD_BAND, "bad band type %u", bands[i].type);
        if (bands[i].rate == 0)
            return fail(err, VS_OFPET_METER_MOD_FAILED, MMF_BAD_RATE, "band rate 0");
    }
    m->flags = flags;
    m->n_bands = (uint16_t)n;
    for (uint32_t i = 0; i < n; i++) {
        struct meter_band_state *b = &m->bands[i];
        memset(b, 0, sizeof *b);
        b->cfg = bands[i];
        b->cfg.packet_count = b->cfg.byte_count = 0;
        /* Buckets hold bits (kbps) or millipackets (pktps); the burst
         * defaults to one second at the band's rate. */
        uint64_t burst = (flags & VS_MF_BURST) && bands[i].burst_size ? bands[i].burst_size
                                                                       : bands[i].rate;
        b->capacity = (int64_t)burst * 1000;
        b->tokens = b->capacity;
        b->last_ns = now_ns();
    }
    return 0;
}

int vs_pipeline_meter_mod(struct vs_pipeline *p, uint8_t command, uint16_t flags, uint32_t id,
                          const struct vs_meter_band *bands, uint32_t n, struct vs_error *err)
{
    if (err)
        memset(err, 0, sizeof *err);
    if (command > VS_MC_DELETE)
        return fail(err, VS_OFPET_METER_MOD_FAILED, MMF_BAD_COMMAND, "bad command %u", command);
    if (id == 0 || (id > VS_OFPM_MAX && !(command == VS_MC_DELETE && id == 0xffffffffu)))
        return fail(err, VS_OFPET_METER_MOD_FAILED, MMF_INVALID_METER, "bad meter id %#x", id);
    int rc = 0;
    wrlock(p);
    bool found;
    uint32_t i = id_search((void *const *)p->meters, p->n_meters, id, &found);
    if (command == VS_MC_DELETE) {
        uint32_t lo = found ? i : 0, hi = found ? i + 1 : (id == 0xffffffffu ? p->n_meters : 0);
        for (uint32_t j = lo; j < hi; j++) {
            struct vs_meter *m = p->meters[j];
            struct vs_key zero;
            memset(&zero, 0, sizeof zero);
            struct selector s = {&zero, &zero, 0, 0, VS_OFPP_ANY, VS_OFPG_ANY, 0, 0};
            struct rule_vec v = {0};
            select_rules(p, VS_OFPTT_ALL, &s, &v);
            for (size_t k = 0; k < v.n; k++)
                if (v.r[k]->meter_id == m->meter_id)
                    rule_remove(p, v.r[k], VS_RR_METER_DELETE, now_ns());
            free(v.r);
            pthread_spin_destroy(&m->lock);
            free(m);
        }
        if (hi > lo) {
            memmove(&p->meters[lo], &p->meters[hi], (p->n_meters - hi) * sizeof *p->meters);
            p->n_meters -= hi - lo;
        }
    } else if (command == VS_MC_ADD && found) {
        rc = fail(err, VS_OFPET_METER_MOD_FAILED, MMF_METER_EXISTS, "meter %u exists", id);
    } else if (command == VS_MC_MODIFY && !found) {
        rc = fail(err, VS_OFPET_METER_MOD_FAILED, MMF_UNKNOWN_METER, "no meter %u", id);
    } else if (command == VS_MC_ADD && p->n_meters >= MAX_METERS) {
        rc = fail(err, VS_OFPET_METER_MOD_FAILED, MMF_OUT_OF_METERS, "too many meters");
    } else if (found) {
        struct vs_meter tmp = *p->meters[i];
        if (meter_config(&tmp, flags, bands, n, err) < 0) {
            rc = -1;
        } else {
            /* Readers are excluded by the write lock; the spinlock only
             * orders readers among themselves. */
            struct vs_meter *m = p->meters[i];
            m->flags = tmp.flags;
            m->n_bands = tmp.n_bands;
            memcpy(m->bands, tmp.bands, sizeof m->bands);
        }
    } else {
        struct vs_meter *m = calloc(1, sizeof *m);
        if (!m) {
            rc = fail(err, VS_OFPET_METER_MOD_FAILED, MMF_OUT_OF_METERS, "out of memory");
        } else if (meter_config(m, flags, bands, n, err) < 0) {
            free(m);
            rc = -1;
        } else if (grow((void **)&p->meters, &p->cap_meters, p->n_meters, sizeof *p->meters) < 0) {
            free(m);
            rc = fail(err, VS_OFPET_METER_MOD_FAILED, MMF_OUT_OF_METERS, "out of memory");
        } else {
            m->meter_id = id;
            m->created_ns = now_ns();
            pthread_spin_init(&m->lock, PTHREAD_PROCESS_PRIVATE);
            memmove(&p->meters[i + 1], &p->meters[i], (p->n_meters - i) * sizeof *p->meters);
            p->meters[i] = m;
            p->n_meters++;
        }
    }
    bump(p);
    unlock(p);
    return rc;
}

size_t vs_pipeline_meter_stats(struct vs_pipeline *p, struct vs_meter_stats *out, size_t max)
{
    rdlock(p);
    uint64_t now = now_ns();
    size_t n = p->n_meters;
    for (size_t i = 0; i < n && i < max; i++) {
        struct vs_meter *m = p->meters[i];
        struct vs_meter_stats *s = &out[i];
        memset(s, 0, sizeof *s);
        s->meter_id = m->meter_id;
        s->flags = m->flags;
        s->n_bands = m->n_bands;
        s->flow_count = refs(p, VS_I_METER, m->meter_id);
        s->duration_ns = now - m->created_ns;
        pthread_spin_lock(&m->lock);
        s->packet_in_count = m->n_packets;
        s->byte_in_count = m->n_bytes;
        for (uint16_t b = 0; b < m->n_bands; b++)
            s->bands[b] = m->bands[b].cfg;
        pthread_spin_unlock(&m->lock);
    }
    unlock(p);
    return n;
}
