/* xlate.c -- run the OpenFlow pipeline on a flow key and compose one flat
 * action program (OVS's "translation").
 *
 * The key is a working copy: apply-actions change it so that later tables
 * match the modified packet.  The program is executed later, per packet, by
 * execute.c; decisions that depend on packet bytes or on state that is not
 * in the key (TTL expiry, in_port exclusion, flood port lists, group
 * buckets, meters) are left to execution, so one program serves every
 * packet of the megaflow.
 *
 * out->wc collects the header bits the result depends on: the masks of every
 * classifier subtable visited, plus the fields an action's effect on the key
 * depends on.  Bits are collected on the *original* key positions; when an
 * action moved a value (pop_vlan), the source positions are added too.
 * Called under the pipeline's read lock. */
#include <stdlib.h>

#include "core.h"

static int emit(struct xlate_out *out, const void *op, uint32_t len)
{
    if (out->len + len > out->cap) {
        uint32_t cap = out->cap ? out->cap * 2 : 256;
        while (cap < out->len + len)
            cap *= 2;
        uint8_t *n = realloc(out->prog, cap);
        if (!n)
            return -1;
        out->prog = n;
        out->cap = cap;
    }
    memcpy(out->prog + out->len, op, len);
    out->len += len;
    return 0;
}

static void wc_field(struct vs_key *wc, int f)
{
    memset((uint8_t *)wc + vs_fields[f].offset, 0xff, vs_fields[f].len);
}

/* Fields whose presence decides whether an action touches the key. */
static void wc_layers(struct vs_key *wc)
{
    wc_field(wc, VS_F_ETH_TYPE);
    wc_field(wc, VS_F_IP_PROTO);
    wc_field(wc, VS_F_VLAN_VID);
    wc_field(wc, VS_F_IP_FRAG);
    wc_field(wc, VS_F_ICMPV6_TYPE);
    memset(wc->vlan2_tci, 0xff, sizeof wc->vlan2_tci);
    memset(wc->vlan_tpid, 0xff, sizeof wc->vlan_tpid);
    wc->present = 0xff;
}

static uint16_t key16(const uint8_t *p) { return be16(p); }

/* The effect of one action on the key (what later tables will see). */
static void key_apply(struct vs_key *k, const struct vs_op *op, const uint8_t *body,
                      struct vs_key *wc)
{
    uint16_t et = key16(k->eth_type);
    bool ip = et == 0x0800 || et == 0x86dd;
    switch (op->type) {
    case VS_A_SET_FIELD: {
        const struct vs_field_info *fi = &vs_fields[op->arg];
        bool present;
        wc_layers(wc);
        switch (op->arg) {
        case VS_F_VLAN_VID:
            present = k->vlan_vid[0] & 0x10;
            if (present) {
                uint16_t v = (uint16_t)(VS_OFPVID_PRESENT | (be16(body) & 0xfff));
                put16(k->vlan_vid, v);
            }
            return;
        case VS_F_VLAN_PCP:
            present = k->vlan_vid[0] & 0x10;
            break;
        case VS_F_ETH_DST: case VS_F_ETH_SRC: case VS_F_TUNNEL_ID:
        case VS_F_TUN_IPV4_SRC: case VS_F_TUN_IPV4_DST:
            present = true;
            break;
        case VS_F_IP_DSCP: case VS_F_IP_ECN:
            present = ip;
            break;
        case VS_F_IPV4_SRC: case VS_F_IPV4_DST:
            present = et == 0x0800;
            break;
        case VS_F_ARP_OP: case VS_F_ARP_SPA: case VS_F_ARP_TPA: case VS_F_ARP_SHA:
        case VS_F_ARP_THA:
            present = et == 0x0806;
            break;
        case VS_F_IPV6_SRC: case VS_F_IPV6_DST: case VS_F_IPV6_FLABEL:
            present = et == 0x86dd;
            break;
        case VS_F_TCP_SRC: case VS_F_TCP_DST:
            present = ip && k->ip_proto == 6 && !(k->ip_frag & VS_FRAG_LATER);
            break;
        case VS_F_UDP_SRC: case VS_F_UDP_DST:
            present = ip && k->ip_proto == 17 && !(k->ip_frag & VS_FRAG_LATER);
            break;
        case VS_F_SCTP_SRC: case VS_F_SCTP_DST:
            present = ip && k->ip_proto == 132 && !(k->ip_frag & VS_FRAG_LATER);
            break;
        case VS_F_ICMPV4_TYPE: case VS_F_ICMPV4_CODE:
            present = et == 0x0800 && k->ip_proto == 1 && !(k->ip_frag & VS_FRAG_LATER);
            break;
        case VS_F_ICMPV6_TYPE: case VS_F_ICMPV6_CODE:
            present = et == 0x86dd && k->ip_proto == 58 && !(k->ip_frag & VS_FRAG_LATER);
            break;
        case VS_F_IPV6_ND_TARGET:
            present = k->present & VS_PRESENT_ND;
            break;
        case VS_F_IPV6_ND_SLL:
            present = k->present & VS_PRESENT_ND_SLL;
            break;
        case VS_F_IPV6_ND_TLL:
            present = k->present & VS_PRESENT_ND_TLL;
            break;
        default:
            present = false;
        }
        /* L4 fields exist only where the parser could read them (nd_sll
         * and nd_tll have their own bits, and double as ARP SHA/THA). */
        if (fi->offset >= offsetof(struct vs_key, tp_src) &&
            fi->offset < offsetof(struct vs_key, nd_sll) && !(k->present & VS_PRESENT_L4))
            present = false;
        if (fi->offset >= offsetof(struct vs_key, ip_dscp) && !(k->present & VS_PRESENT_L3))
            present = false;
        if (present)
            memcpy((uint8_t *)k + fi->offset, body, fi->len);
        return;
    }
    case VS_A_PUSH_VLAN: {
        wc_layers(wc);
        wc_field(wc, VS_F_VLAN_PCP);
        if (!(k->present & VS_PRESENT_L2))
            return;  /* runt frame: no Ethernet header, nothing pushed */
        uint16_t old = be16(k->vlan_vid);
        if (old & VS_OFPVID_PRESENT)
            put16(k->vlan2_tci, (uint16_t)(old | (k->vlan_pcp << 13)));
        else
            memset(k->vlan2_tci, 0, 2);
        put16(k->vlan_vid, (uint16_t)(VS_OFPVID_PRESENT | (old & 0xfff)));
        put16(k->vlan_tpid, (uint16_t)op->arg);
        return;
    }
    case VS_A_POP_VLAN: {
        wc_layers(wc);
        wc_field(wc, VS_F_VLAN_PCP);
        if (!(be16(k->vlan_vid) & VS_OFPVID_PRESENT))
            return;
        uint16_t inner = be16(k->vlan2_tci);
        if (inner & VS_OFPVID_PRESENT) {
            put16(k->vlan_vid, (uint16_t)(VS_OFPVID_PRESENT | (inner & 0xfff)));
            k->vlan_pcp = (uint8_t)(inner >> 13);
            put16(k->vlan_tpid, 0x8100);
        } else {
            memset(k->vlan_vid, 0, 2);
            k->vlan_pcp = 0;
            memset(k->vlan_tpid, 0, 2);
        }
        memset(k->vlan2_tci, 0, 2);
        return;
    }
    case VS_A_SET_NW_TTL:
        wc_layers(wc);
        if (ip)
            k->ip_ttl = (uint8_t)op->arg;
        return;
    case VS_A_DEC_NW_TTL:
        wc_layers(wc);
        if (ip && k->ip_ttl > 1)
            k->ip_ttl--;
        return;
    default:
        return;
    }
}

struct xctx {
    const struct vs_pipeline *p;
    struct vs_key key;
    struct xlate_out *out;
    const struct vs_rule *rule;        /* rule whose actions are translated */
};

static int x_action(struct xctx *x, const uint8_t *a)
{
    struct vs_op op;
    memcpy(&op, a, sizeof op);
    if ((op.type == VS_A_OUTPUT && op.arg == VS_OFPP_CONTROLLER) || op.type == VS_A_GROUP) {
        /* Carry the rule's identity for the upcalls this may cause. */
        uint8_t buf[X_CONTROLLER_LEN] = {0};
        struct vs_op h = {VS_X_CONTROLLER, X_CONTROLLER_LEN, 0};
        if (op.type == VS_A_GROUP) {
            h.type = VS_X_GROUP;
            h.arg = op.arg;
        } else {
            uint16_t max_len;
            memcpy(&max_len, a + 8, 2);
            h.arg = max_len;
        }
        memcpy(buf, &h, sizeof h);
        buf[8] = x->rule->table_miss ? VS_R_NO_MATCH : VS_R_ACTION;
        buf[9] = x->rule->table_id;
        memcpy(buf + 16, &x->rule->cookie, 8);
        uint64_t meta = be64(x->key.metadata);
        memcpy(buf + 24, &meta, 8);
        return emit(x->out, buf, sizeof buf);
    }
    if (op.type == VS_A_DEC_NW_TTL) {
        uint8_t buf[X_DEC_TTL_LEN] = {0};
        struct vs_op h = {VS_X_DEC_TTL, X_DEC_TTL_LEN, 0};
        memcpy(buf, &h, sizeof h);
        buf[8] = x->rule->table_id;
        memcpy(buf + 16, &x->rule->cookie, 8);
        /* The TTL check itself happens per packet at execution. */
        key_apply(&x->key, &op, a + 8, &x->out->wc);
        return emit(x->out, buf, sizeof buf);
    }
    key_apply(&x->key, &op, a + 8, &x->out->wc);
    return emit(x->out, a, op.len);
}

/* The action set: one slot per kind, executed in the order of the enum. */
enum { AS_POP_VLAN, AS_PUSH_VLAN, AS_DEC_TTL, AS_SET_TTL, AS_SET_FIELD0,
       AS_SET_QUEUE = AS_SET_FIELD0 + VS_N_FIELDS, AS_GROUP, AS_OUTPUT, AS_N };

static int as_slot(const struct vs_op *op)
{
    switch (op->type) {
    case VS_A_POP_VLAN: return AS_POP_VLAN;
    case VS_A_PUSH_VLAN: return AS_PUSH_VLAN;
    case VS_A_DEC_NW_TTL: return AS_DEC_TTL;
    case VS_A_SET_NW_TTL: return AS_SET_TTL;
    case VS_A_SET_FIELD: return AS_SET_FIELD0 + (int)op->arg;
    case VS_A_SET_QUEUE: return AS_SET_QUEUE;
    case VS_A_GROUP: return AS_GROUP;
    case VS_A_OUTPUT: return AS_OUTPUT;
    default: return -1;
    }
}

int xlate(const struct vs_pipeline *p, const struct vs_key *key, struct xlate_out *out)
{
    struct xctx x = {p, *key, out, NULL};
    const uint8_t *set[AS_N];
    memset(set, 0, sizeof set);
    out->len = 0;
    out->n_lookups = 0;
    memset(&out->wc, 0, sizeof out->wc);
    /* in_port is always exact: execution uses it (in_port exclusion). */
    memset(out->wc.in_port, 0xff, sizeof out->wc.in_port);

    const struct vs_rule *last = NULL;
    unsigned table = 0;
    for (;;) {
        struct vs_rule *r = (struct vs_rule *)cls_lookup(&p->tables[table].cls, &x.key, &out->wc);
        if (out->n_lookups < XLATE_MAX_LOOKUPS) {
            out->lookups[out->n_lookups].rule = r;
            out->lookups[out->n_lookups].table_id = (uint8_t)table;
            out->n_lookups++;
        }
        if (!r) {
            /* Table miss without a table-miss entry: drop, action set
             * discarded. */
            return 0;
        }
        last = x.rule = r;
        if (r->meter_id) {
            struct vs_op op = {VS_X_METER, 8, r->meter_id};
            if (emit(out, &op, sizeof op) < 0)
                return -1;
        }
        for (uint32_t off = 0; off < r->apply_len;) {
            struct vs_op op;
            memcpy(&op, r->apply + off, sizeof op);
            if (x_action(&x, r->apply + off) < 0)
                return -1;
            off += op.len;
        }
        if (r->clear)
            memset(set, 0, sizeof set);
        for (uint32_t off = 0; off < r->write_len;) {
            struct vs_op op;
            memcpy(&op, r->write + off, sizeof op);
            int s = as_slot(&op);
            if (s >= 0)
                set[s] = r->write + off;
            off += op.len;
        }
        if (r->has_meta) {
            uint64_t m = be64(x.key.metadata);
            m = (m & ~r->meta_mask) | (r->meta_value & r->meta_mask);
            put64(x.key.metadata, m);
        }
        if (!r->has_goto)
            break;
        table = r->goto_table;
    }

    /* Action set, attributed to the last rule matched. */
    x.rule = last;
    if (set[AS_GROUP])
        set[AS_OUTPUT] = NULL;
    for (int s = 0; s < AS_N; s++)
        if (set[s] && x_action(&x, set[s]) < 0)
            return -1;
    return 0;
}
