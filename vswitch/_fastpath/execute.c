/* execute.c -- run a composed action program on one packet's bytes.
 *
 * Packets start as read-only views of the caller's frames.  The first write
 * copies the frame into the batch arena with headroom (copy on write); an
 * emit records a pointer to the bytes as they are, so a write after an emit
 * copies again and earlier emits keep their bytes.  Checksums are updated
 * incrementally (RFC 1624).  Every write is bounds-checked against the
 * layer offsets the parser vouched for (layers.l3_ok / l4_ok). */
#include <stdlib.h>

#include "core.h"

#define HEADROOM 64

/* ---- arena: chunked bump allocator, reset per batch / flush ------------ */

struct arena_chunk {
    struct arena_chunk *next;
    size_t size, used;
    _Alignas(16) uint8_t data[];
};

void *arena_alloc(struct arena *a, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    for (;;) {
        struct arena_chunk *c = a->cur;
        if (c && c->size - c->used >= size) {
            void *p = c->data + c->used;
            c->used += size;
            return p;
        }
        if (c && c->next) {       /* reuse chunks kept from before a reset */
            a->cur = c->next;
            a->cur->used = 0;
            continue;
        }
        size_t csize = size > (1u << 20) ? size : (1u << 20);
        struct arena_chunk *n = malloc(sizeof *n + csize);
        if (!n)
            return NULL;
        n->next = NULL;
        n->size = csize;
        n->used = 0;
        if (c)
            c->next = n;
        else
            a->head = n;
        a->cur = n;
    }
}

void arena_reset(struct arena *a)
{
    a->cur = a->head;
    if (a->cur)
        a->cur->used = 0;
}

void arena_free(struct arena *a)
{
    struct arena_chunk *c = a->head, *n;
    for (; c; c = n) {
        n = c->next;
        free(c);
    }
    a->head = a->cur = NULL;
}

/* ---- packet state ------------------------------------------------------ */

static bool writable(struct exec_ctx *x, struct pkt_state *ps)
{
    if (ps->owned && !ps->emitted)
        return true;
    uint8_t *buf = arena_alloc(x->pkt_arena, ps->len + HEADROOM);
    if (!buf)
        return false;
    memcpy(buf + HEADROOM, ps->data, ps->len);
    ps->data = buf + HEADROOM;
    ps->headroom = HEADROOM;
    ps->owned = 1;
    ps->emitted = 0;
    return true;
}

static void emit_port(struct exec_ctx *x, struct pkt_state *ps, uint32_t port)
{
    struct vs_batch_result *out = x->out;
    if (out->n_emits >= x->max_emits) {
        x->stats->emit_overflow++;
        return;
    }
    struct vs_emit *e = &out->emits[out->n_emits++];
    e->pkt = ps->idx;
    e->port = port;
    e->queue = ps->queue;
    e->len = ps->len;
    e->data = ps->data;
    e->tunnel_id = ps->tun_id;
    memcpy(e->tun_ipv4_dst, ps->tun_dst, 4);
    memset(e->pad, 0, sizeof e->pad);
    ps->emitted = 1;
    x->stats->emits++;
}

static void output(struct exec_ctx *x, struct pkt_state *ps, uint32_t port)
{
    if (port == VS_OFPP_IN_PORT) {
        emit_port(x, ps, ps->in_port);
    } else if (port == VS_OFPP_ALL || port == VS_OFPP_FLOOD) {
        const struct vs_pipeline *p = x->p;
        for (uint32_t i = 0; i < p->n_ports; i++) {
            const struct vs_port *pp = &p->ports[i];
            if (pp->port == ps->in_port)
                continue;
            if (port == VS_OFPP_FLOOD && (pp->flags & VS_PORT_NO_FLOOD))
                continue;
            emit_port(x, ps, pp->port);
        }
    } else if (port != ps->in_port) {
        emit_port(x, ps, port);
    }
}

static void upcall(struct exec_ctx *x, struct pkt_state *ps, uint8_t reason, uint8_t table_id,
                   uint64_t cookie, uint16_t max_len, uint64_t metadata)
{
    struct vs_batch_result *out = x->out;
    if (out->n_upcalls >= x->max_upcalls) {
        x->stats->upcall_overflow++;
        return;
    }
    struct vs_upcall *u = &out->upcalls[out->n_upcalls++];
    u->pkt = ps->idx;
    u->reason = reason;
    u->table_id = table_id;
    u->max_len = max_len;
    u->cookie = cookie;
    u->metadata = metadata;
    u->tunnel_id = be64(ps->key->tunnel_id);
    u->in_port = ps->in_port;
    u->len = ps->len;
    u->data = ps->data;
    ps->emitted = 1;
    x->stats->upcalls++;
}

/* ---- checksums --------------------------------------------------------- */

static uint32_t fold(uint32_t s)
{
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return s;
}

/* RFC 1624 eqn. 3 for the 16-bit words [lo, hi) that changed from old to
 * the current bytes at data+lo. */
static void csum_fix(uint8_t *csum, const uint8_t *old, const uint8_t *now, uint32_t n, bool udp)
{
    uint16_t hc = be16(csum);
    if (udp && hc == 0)
        return;                        /* UDP without a checksum */
    uint32_t s = (uint16_t)~hc;
    for (uint32_t i = 0; i + 1 < n; i += 2) {
        s += (uint16_t)~be16(old + i);
        s += be16(now + i);
    }
    uint16_t r = (uint16_t)~fold(s);
    if (udp && r == 0)
        r = 0xffff;
    put16(csum, r);
}

enum { CS_NONE = 0, CS_IP = 1, CS_L4 = 2, CS_L4_PSEUDO = 4 };

/* Where the L4 checksum is, or NULL. */
static uint8_t *l4_csum(struct pkt_state *ps, bool *udp)
{
    const struct vs_key *k = ps->key;
    *udp = false;
    if (!(k->present & VS_PRESENT_L4) || ps->L.l4 == VS_NO_LAYER)
        return NULL;
    switch (k->ip_proto) {
    case 6: return ps->data + ps->L.l4 + 16;
    case 17: *udp = true; return ps->data + ps->L.l4 + 6;
    case 1: case 58: return ps->data + ps->L.l4 + 2;
    default: return NULL;               /* SCTP's CRC32c is not updated */
    }
}

/* RFC 1624's update cannot tell +0 from -0: an ICMPv4 message that became
 * all zeros sums to +0, so its checksum is 0xffff, not the 0 the update
 * gives.  (TCP, UDP and ICMPv6 sums include a non-zero pseudo-header and the
 * IPv4 header a non-zero version: only ICMPv4 can be all zeros.) */
static void icmp4_zero_fix(struct pkt_state *ps, uint8_t *c)
{
    if (be16(c) != 0 || ps->L.l3 == VS_NO_LAYER || (uint32_t)ps->L.l3 + 4 > ps->len)
        return;
    uint32_t end = ps->L.l3 + be16(ps->data + ps->L.l3 + 2);
    if (end > ps->len)
        end = ps->len;
    for (uint32_t i = ps->L.l4; i < end; i++)
        if (ps->data[i])
            return;
    put16(c, 0xffff);
}

/* Overwrites n bytes at ofs (ofs + n <= len checked by the caller) and fixes
 * the checksums named in which. */
static void rewrite(struct pkt_state *ps, uint32_t ofs, const uint8_t *src, uint32_t n, int which)
{
    uint32_t lo = ofs & ~1u, hi = (ofs + n + 1) & ~1u;
    uint8_t old[40];
    uint32_t span = hi - lo;
    bool in_frame = hi <= ps->len && span <= sizeof old;
    if (in_frame)
        memcpy(old, ps->data + lo, span);
    memcpy(ps->data + ofs, src, n);
    if (!in_frame)
        return;
    if ((which & CS_IP) && ps->L.l3 != VS_NO_LAYER)
        csum_fix(ps->data + ps->L.l3 + 10, old, ps->data + lo, span, false);
    if (which & (CS_L4 | CS_L4_PSEUDO)) {
        bool udp;
        uint8_t *c = l4_csum(ps, &udp);
        /* ICMPv4 has no pseudo-header. */
        if (c && !((which & CS_L4_PSEUDO) && !(which & CS_L4) && ps->key->ip_proto == 1)) {
            csum_fix(c, old, ps->data + lo, span, udp);
            if (ps->key->ip_proto == 1 && (which & CS_L4))
                icmp4_zero_fix(ps, c);
        }
    }
}

/* ---- set_field ---------------------------------------------------------- */

static void set_field(struct exec_ctx *x, struct pkt_state *ps, uint32_t f, const uint8_t *v)
{
    const struct vs_key *k = ps->key;
    uint16_t et = be16(k->eth_type);
    bool l3 = (k->present & VS_PRESENT_L3) && ps->L.l3 != VS_NO_LAYER;
    bool l4 = (k->present & VS_PRESENT_L4) && ps->L.l4 != VS_NO_LAYER;
    uint32_t L3 = ps->L.l3, L4 = ps->L.l4;
    uint32_t ofs = 0, n = vs_fields[f].len;
    int cs = CS_NONE;
    uint8_t buf[16];

    if (f == VS_F_TUNNEL_ID) {             /* metadata: travels with the emit */
        ps->tun_id = be64(v);
        return;
    }
    if (f == VS_F_TUN_IPV4_DST) {
        memcpy(ps->tun_dst, v, 4);
        return;
    }
    if (f == VS_F_TUN_IPV4_SRC)            /* metadata only a tunnel port reads */
        return;
    switch (f) {
    case VS_F_ETH_DST: case VS_F_ETH_SRC:
        if (!(k->present & VS_PRESENT_L2))
            return;
        ofs = f == VS_F_ETH_DST ? 0 : 6;
        break;
    case VS_F_VLAN_VID: case VS_F_VLAN_PCP: {
        if (!ps->L.n_vlan || ps->len < 18)
            return;
        uint16_t tci = be16(ps->data + 14);
        tci = f == VS_F_VLAN_VID ? (uint16_t)((tci & 0xf000) | (be16(v) & 0x0fff))
                                 : (uint16_t)((tci & 0x1fff) | (v[0] & 7) << 13);
        put16(buf, tci);
        v = buf;
        ofs = 14;
        n = 2;
        break;
    }
    case VS_F_IP_DSCP: case VS_F_IP_ECN:
        if (!l3)
            return;
        if (et == 0x0800) {
            uint8_t tos = ps->data[L3 + 1];
            buf[0] = f == VS_F_IP_DSCP ? (uint8_t)((v[0] << 2) | (tos & 3))
                                       : (uint8_t)((tos & 0xfc) | (v[0] & 3));
            ofs = L3 + 1;
            cs = CS_IP;
        } else if (et == 0x86dd) {
            uint16_t w = be16(ps->data + L3);   /* version:4 tc:8 flabel-hi:4 */
            uint8_t tc = (uint8_t)(w >> 4);
            tc = f == VS_F_IP_DSCP ? (uint8_t)((v[0] << 2) | (tc & 3))
                                   : (uint8_t)((tc & 0xfc) | (v[0] & 3));
            put16(buf, (uint16_t)((w & 0xf00f) | tc << 4));
            v = buf;
            ofs = L3;
            n = 2;
            break;
        } else {
            return;
        }
        v = buf;
        n = 1;
        break;
    case VS_F_IPV4_SRC: case VS_F_IPV4_DST:
        if (!l3 || et != 0x0800)
            return;
        ofs = L3 + (f == VS_F_IPV4_SRC ? 12 : 16);
        cs = CS_IP | CS_L4_PSEUDO;
        break;
    case VS_F_TCP_SRC: case VS_F_TCP_DST: case VS_F_UDP_SRC: case VS_F_UDP_DST:
    case VS_F_SCTP_SRC: case VS_F_SCTP_DST: {
        static const uint8_t proto[] = {6, 6, 17, 17, 132, 132};
        if (!l4 || k->ip_proto != proto[f - VS_F_TCP_SRC])
            return;
        ofs = L4 + ((f - VS_F_TCP_SRC) % 2 ? 2 : 0);
        cs = CS_L4;
        break;
    }
    case VS_F_ICMPV4_TYPE: case VS_F_ICMPV4_CODE:
        if (!l4 || et != 0x0800 || k->ip_proto != 1)
            return;
        ofs = L4 + (f == VS_F_ICMPV4_CODE);
        cs = CS_L4;
        break;
    case VS_F_ICMPV6_TYPE: case VS_F_ICMPV6_CODE:
        if (!l4 || et != 0x86dd || k->ip_proto != 58)
            return;
        ofs = L4 + (f == VS_F_ICMPV6_CODE);
        cs = CS_L4;
        break;
    case VS_F_ARP_OP: case VS_F_ARP_SHA: case VS_F_ARP_SPA: case VS_F_ARP_THA:
    case VS_F_ARP_TPA:
        if (!l3 || et != 0x0806)
            return;
        ofs = L3 + (f == VS_F_ARP_OP ? 6 : f == VS_F_ARP_SHA ? 8 : f == VS_F_ARP_SPA ? 14
                    : f == VS_F_ARP_THA ? 18 : 24);
        break;
    case VS_F_IPV6_SRC: case VS_F_IPV6_DST:
        if (!l3 || et != 0x86dd)
            return;
        ofs = L3 + (f == VS_F_IPV6_SRC ? 8 : 24);
        cs = CS_L4_PSEUDO;
        break;
    case VS_F_IPV6_FLABEL: {
        if (!l3 || et != 0x86dd)
            return;
        uint32_t w = be32(ps->data + L3);
        put32(buf, (w & 0xfff00000u) | (be32(v) & 0xfffff));
        v = buf;
        ofs = L3;
        n = 4;
        break;
    }
    case VS_F_IPV6_ND_TARGET:
        if (!l4 || !(k->present & VS_PRESENT_ND))
            return;
        ofs = L4 + 8;
        cs = CS_L4;
        break;
    case VS_F_IPV6_ND_SLL: case VS_F_IPV6_ND_TLL: {
        uint8_t want = f == VS_F_IPV6_ND_SLL ? 1 : 2;
        if (!l4 || !(k->present & (want == 1 ? VS_PRESENT_ND_SLL : VS_PRESENT_ND_TLL)))
            return;
        /* Find the option the parser found: the first of its type with
         * length 1, scanning as the parser does. */
        uint32_t end = ps->len, o = L4 + 24;
        ofs = 0;
        while (o + 2 <= end) {
            uint32_t olen = ps->data[o + 1] * 8u;
            if (!olen || o + olen > end)
                break;
            if (ps->data[o] == want && olen == 8) {
                ofs = o + 2;
                break;
            }
            o += olen;
        }
        if (!ofs)
            return;
        cs = CS_L4;
        break;
    }
    default:                               /* tunnel_id: key only */
        return;
    }
    if (ofs + n > ps->len || !writable(x, ps))
        return;
    rewrite(ps, ofs, v, n, cs);
}

/* ---- VLAN, TTL ---------------------------------------------------------- */

static void shift_layers(struct vs_layers *L, int d)
{
    if (L->l2_5 != VS_NO_LAYER) L->l2_5 = (uint16_t)(L->l2_5 + d);
    if (L->l3 != VS_NO_LAYER) L->l3 = (uint16_t)(L->l3 + d);
    if (L->l4 != VS_NO_LAYER) L->l4 = (uint16_t)(L->l4 + d);
}

static void push_vlan(struct exec_ctx *x, struct pkt_state *ps, uint16_t tpid)
{
    if (!(ps->key->present & VS_PRESENT_L2) || ps->len < 14)
        return;
    if (ps->owned && ps->headroom < 4)
        ps->emitted = 1;                /* forces a fresh copy with headroom */
    if (!writable(x, ps))
        return;
    uint16_t tci = ps->L.n_vlan && ps->len >= 18 ? be16(ps->data + 14) : 0;
    ps->headroom -= 4;
    ps->data -= 4;
    memmove(ps->data, ps->data + 4, 12);
    put16(ps->data + 12, tpid);
    put16(ps->data + 14, tci);
    ps->len += 4;
    ps->L.vlan = 12;
    if (ps->L.n_vlan < 255)
        ps->L.n_vlan++;
    shift_layers(&ps->L, 4);
}

static void pop_vlan(struct exec_ctx *x, struct pkt_state *ps)
{
    if (!ps->L.n_vlan || ps->len < 18 || !writable(x, ps))
        return;
    memmove(ps->data + 4, ps->data, 12);
    ps->data += 4;
    ps->headroom += 4;
    ps->len -= 4;
    ps->L.n_vlan--;
    if (!ps->L.n_vlan)
        ps->L.vlan = VS_NO_LAYER;
    shift_layers(&ps->L, -4);
}

/* 0: done, 1: TTL expired (caller stops the packet). */
static int ttl_op(struct exec_ctx *x, struct pkt_state *ps, bool dec, uint8_t value)
{
    const struct vs_key *k = ps->key;
    if (!(k->present & VS_PRESENT_L3) || ps->L.l3 == VS_NO_LAYER)
        return 0;
    uint16_t et = be16(k->eth_type);
    uint32_t at;
    if (et == 0x0800)
        at = ps->L.l3 + 8;
    else if (et == 0x86dd)
        at = ps->L.l3 + 7;
    else
        return 0;
    if (at >= ps->len)
        return 0;
    uint8_t ttl = ps->data[at];
    if (dec) {
        if (ttl <= 1)
            return 1;
        value = (uint8_t)(ttl - 1);
    }
    if (!writable(x, ps))
        return 0;
    rewrite(ps, at, &value, 1, et == 0x0800 ? CS_IP : CS_NONE);
    return 0;
}

/* ---- meters and groups -------------------------------------------------- */

/* 0: pass, 1: drop. */
static int meter(struct exec_ctx *x, struct pkt_state *ps, uint32_t id)
{
    struct vs_meter *m = pipeline_find_meter(x->p, id);
    if (!m || x->dry_run)
        return 0;
    int verdict = 0;
    int64_t best_rate = -1;
    int best = -1;
    pthread_spin_lock(&m->lock);
    uint64_t now = x->now;
    m->n_packets++;
    m->n_bytes += ps->len;
    for (int i = 0; i < m->n_bands; i++) {
        struct meter_band_state *b = &m->bands[i];
        /* rate units per second = rate * 1000 tokens per 1e9 ns.  The clock
         * only advances by the time actually converted into whole tokens,
         * so frequent small batches do not lose the remainders. */
        if (now > b->last_ns) {
            uint64_t add = (uint64_t)((__int128)(now - b->last_ns) * b->cfg.rate / 1000000);
            if (add) {
                b->tokens += (int64_t)add;
                b->last_ns += (uint64_t)((__int128)add * 1000000 / b->cfg.rate);
            }
            if (b->tokens >= b->capacity) {
                b->tokens = b->capacity;
                b->last_ns = now;
            }
        }
        int64_t cost = (m->flags & VS_MF_PKTPS) ? 1000 : (int64_t)ps->len * 8;
        if (b->tokens >= cost) {
            b->tokens -= cost;
        } else if ((int64_t)b->cfg.rate > best_rate) {
            best_rate = b->cfg.rate;
            best = i;
        }
    }
    if (best >= 0) {
        struct meter_band_state *b = &m->bands[best];
        b->cfg.packet_count++;
        b->cfg.byte_count += ps->len;
        if (b->cfg.type == VS_MBT_DROP)
            verdict = 1;
    }
    uint8_t prec = best >= 0 && m->bands[best].cfg.type == VS_MBT_DSCP_REMARK
                       ? m->bands[best].cfg.prec_level : 0;
    pthread_spin_unlock(&m->lock);
    if (prec && (ps->key->present & VS_PRESENT_L3)) {
        /* Raise the drop precedence (AFxy: y is DSCP bits 1-2), capped. */
        uint8_t dscp = ps->key->ip_dscp;
        uint32_t y = ((dscp >> 1) & 3) + prec;
        if (y > 3)
            y = 3;
        uint8_t nd = (uint8_t)((dscp & ~6u) | (y << 1));
        set_field(x, ps, VS_F_IP_DSCP, &nd);
    }
    if (verdict)
        x->stats->meter_drops++;
    return verdict;
}

static uint32_t select_hash(const struct vs_key *k)
{
    static const uint8_t fields[] = {VS_F_ETH_DST, VS_F_ETH_SRC, VS_F_ETH_TYPE, VS_F_VLAN_VID,
                                     VS_F_IP_PROTO, VS_F_IPV4_SRC, VS_F_IPV4_DST, VS_F_IPV6_SRC,
                                     VS_F_IPV6_DST, VS_F_TCP_SRC, VS_F_TCP_DST};
    uint32_t h = 2166136261u;
    for (unsigned i = 0; i < sizeof fields; i++) {
        const struct vs_field_info *fi = &vs_fields[fields[i]];
        const uint8_t *p = (const uint8_t *)k + fi->offset;
        for (unsigned j = 0; j < fi->len; j++) {
            h ^= p[j];
            h *= 16777619u;
        }
    }
    /* FNV's low bits are weak (they only see the low bits of the input):
     * finish with murmur3's fmix32 before the modulo. */
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

static bool port_live(const struct vs_pipeline *p, uint32_t port)
{
    if (port == VS_OFPP_ANY)
        return true;
    const struct vs_port *pp = pipeline_find_port(p, port);
    return pp && (pp->flags & VS_PORT_LIVE);
}

static void run(struct exec_ctx *, struct pkt_state *, const uint8_t *, uint32_t);

static void bucket(struct exec_ctx *x, struct pkt_state *ps, struct vs_group *g, uint32_t b)
{
    struct group_bucket *gb = &g->buckets[b];
    if (!x->dry_run) {
        ATOMIC_ADD(&gb->n_packets, 1);
        ATOMIC_ADD(&gb->n_bytes, ps->len);
    }
    struct pkt_state clone = *ps;
    clone.owned = 0;          /* the bucket's writes go to its own copy */
    clone.emitted = 0;
    uint32_t n_emits = x->out->n_emits, n_upcalls = x->out->n_upcalls;
    run(x, &clone, gb->actions, gb->actions_len);
    /* An emit or upcall made before the bucket's first write shares our bytes
     * (the bucket may have copied them since, so clone.data no longer says
     * so): we must copy before writing again. */
    for (uint32_t i = n_emits; i < x->out->n_emits; i++)
        if (x->out->emits[i].data == ps->data)
            ps->emitted = 1;
    for (uint32_t i = n_upcalls; i < x->out->n_upcalls; i++)
        if (x->out->upcalls[i].data == ps->data)
            ps->emitted = 1;
}

static void group(struct exec_ctx *x, struct pkt_state *ps, uint32_t id)
{
    struct vs_group *g = pipeline_find_group(x->p, id);
    if (!g)
        return;
    if (!x->dry_run) {
        ATOMIC_ADD(&g->n_packets, 1);
        ATOMIC_ADD(&g->n_bytes, ps->len);
    }
    switch (g->type) {
    case VS_GT_ALL:
        for (uint32_t b = 0; b < g->n_buckets; b++)
            bucket(x, ps, g, b);
        break;
    case VS_GT_INDIRECT:
        if (g->n_buckets)
            bucket(x, ps, g, 0);
        break;
    case VS_GT_FF:
        for (uint32_t b = 0; b < g->n_buckets; b++) {
            if (port_live(x->p, g->buckets[b].watch_port)) {
                bucket(x, ps, g, b);
                break;
            }
        }
        break;
    case VS_GT_SELECT: {
        uint64_t total = 0;
        for (uint32_t b = 0; b < g->n_buckets; b++)
            if (g->buckets[b].weight && port_live(x->p, g->buckets[b].watch_port))
                total += g->buckets[b].weight;
        if (!total)
            break;
        uint64_t point = select_hash(ps->key) % total;
        for (uint32_t b = 0; b < g->n_buckets; b++) {
            struct group_bucket *gb = &g->buckets[b];
            if (!gb->weight || !port_live(x->p, gb->watch_port))
                continue;
            if (point < gb->weight) {
                bucket(x, ps, g, b);
                break;
            }
            point -= gb->weight;
        }
        break;
    }
    }
}

/* ---- the interpreter ---------------------------------------------------- */

static void run(struct exec_ctx *x, struct pkt_state *ps, const uint8_t *prog, uint32_t len)
{
    for (uint32_t off = 0; off + 8 <= len;) {
        struct vs_op op;
        memcpy(&op, prog + off, sizeof op);
        const uint8_t *body = prog + off + 8;
        switch (op.type) {
        case VS_A_OUTPUT:
            if (op.arg == VS_OFPP_CONTROLLER) {   /* only in bucket lists */
                uint16_t max_len;
                memcpy(&max_len, body, 2);
                upcall(x, ps, x->g_reason, x->g_table, x->g_cookie, max_len, x->g_metadata);
            } else {
                output(x, ps, op.arg);
            }
            break;
        case VS_X_GROUP:
            x->g_reason = body[0];
            x->g_table = body[1];
            memcpy(&x->g_cookie, body + 8, 8);
            memcpy(&x->g_metadata, body + 16, 8);
            group(x, ps, op.arg);
            break;
        case VS_A_SET_QUEUE:
            ps->queue = op.arg;
            break;
        case VS_A_SET_FIELD:
            set_field(x, ps, op.arg, body);
            break;
        case VS_A_PUSH_VLAN:
            push_vlan(x, ps, (uint16_t)op.arg);
            break;
        case VS_A_POP_VLAN:
            pop_vlan(x, ps);
            break;
        case VS_A_SET_NW_TTL:
            ttl_op(x, ps, false, (uint8_t)op.arg);
            break;
        case VS_A_DEC_NW_TTL:          /* only in bucket action lists */
            if (ttl_op(x, ps, true, 0)) {
                x->stats->invalid_ttl++;
                upcall(x, ps, VS_R_INVALID_TTL, x->g_table, x->g_cookie, VS_OFPCML_NO_BUFFER,
                       x->g_metadata);
                return;
            }
            break;
        case VS_X_DEC_TTL:
            if (ttl_op(x, ps, true, 0)) {
                uint64_t cookie;
                memcpy(&cookie, body + 8, 8);
                x->stats->invalid_ttl++;
                upcall(x, ps, VS_R_INVALID_TTL, body[0], cookie, VS_OFPCML_NO_BUFFER, 0);
                return;
            }
            break;
        case VS_X_CONTROLLER: {
            uint64_t cookie, meta;
            memcpy(&cookie, body + 8, 8);
            memcpy(&meta, body + 16, 8);
            upcall(x, ps, body[0], body[1], cookie, (uint16_t)op.arg, meta);
            break;
        }
        case VS_X_METER:
            if (meter(x, ps, op.arg))
                return;
            break;
        default:
            break;
        }
        off += op.len;
    }
}

void execute(struct exec_ctx *x, struct pkt_state *ps, const uint8_t *prog, uint32_t len)
{
    run(x, ps, prog, len);
}
