/* dp_normal.c -- OFPP_NORMAL: a MAC learning switch with VLANs (datapath.h
 * states the behaviour).
 *
 * The MAC table maps (VLAN, MAC) -> port.  It is a chained hash table whose
 * buckets are divided among 64 stripes (bucket i belongs to stripe i % 64),
 * each with a spinlock and an LRU list of its entries, so poll threads
 * learning different MACs rarely meet.  Entries come from a pool allocated
 * once (mac_max entries); its free list has its own spinlock, always taken
 * after a stripe lock.  When the pool is empty the least recently used entry
 * of the learning stripe is reused (or, if that stripe is empty, of another
 * stripe whose lock is free: trylock, so no lock order is needed).
 * Expired entries (older than mac_aging_s) are ignored by lookups and
 * reused first; vs_dp_fdb_dump sweeps them. */
#define _GNU_SOURCE
#include <stdlib.h>

#include "dp_private.h"

#define STRIPES 64

struct fdb_entry {
    struct fdb_entry *hnext;
    struct fdb_entry *prev, *next;     /* stripe LRU, most recent first; free list: next */
    uint64_t key;                      /* vlan << 48 | mac */
    uint64_t used_ns;
    uint32_t port;
    uint32_t bucket;
};

struct fdb_stripe {
    pthread_spinlock_t lock;
    uint32_t n;
    struct fdb_entry lru;              /* sentinel */
} __attribute__((aligned(64)));

struct dp_fdb {
    struct fdb_stripe stripes[STRIPES];
    struct fdb_entry **buckets;
    uint32_t mask;
    struct fdb_entry *pool;
    struct fdb_entry *free;
    pthread_spinlock_t free_lock;
    uint32_t max;
    uint64_t aging_ns;
    uint32_t count;                    /* relaxed atomics from here on */
    uint64_t learned, moves, evictions, expired;
};

static uint64_t mac_key(uint16_t vlan, const uint8_t *mac)
{
    uint64_t k = (uint64_t)vlan << 48;
    for (int i = 0; i < 6; i++)
        k |= (uint64_t)mac[i] << (40 - 8 * i);
    return k;
}

static uint32_t key_bucket(const struct dp_fdb *f, uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    k ^= k >> 33;
    return (uint32_t)k & f->mask;
}

struct dp_fdb *dp_fdb_new(uint32_t max, uint64_t aging_ns)
{
    struct dp_fdb *f;
    if (posix_memalign((void **)&f, 64, sizeof *f))
        return NULL;
    memset(f, 0, sizeof *f);
    uint32_t nb = STRIPES;
    while (nb < max && nb < (1u << 30))
        nb <<= 1;
    f->mask = nb - 1;
    f->max = max;
    f->aging_ns = aging_ns;
    f->buckets = calloc(nb, sizeof *f->buckets);
    f->pool = calloc(max, sizeof *f->pool);
    if (!f->buckets || !f->pool) {
        free(f->buckets);
        free(f->pool);
        free(f);
        return NULL;
    }
    for (uint32_t i = 0; i < max; i++) {
        f->pool[i].next = f->free;
        f->free = &f->pool[i];
    }
    pthread_spin_init(&f->free_lock, PTHREAD_PROCESS_PRIVATE);
    for (int i = 0; i < STRIPES; i++) {
        struct fdb_stripe *s = &f->stripes[i];
        pthread_spin_init(&s->lock, PTHREAD_PROCESS_PRIVATE);
        s->lru.next = s->lru.prev = &s->lru;
    }
    return f;
}

void dp_fdb_free(struct dp_fdb *f)
{
    if (!f)
        return;
    for (int i = 0; i < STRIPES; i++)
        pthread_spin_destroy(&f->stripes[i].lock);
    pthread_spin_destroy(&f->free_lock);
    free(f->buckets);
    free(f->pool);
    free(f);
}

/* ---- with the stripe lock held ------------------------------------------- */

static struct fdb_entry *find(struct dp_fdb *f, uint32_t b, uint64_t key)
{
    for (struct fdb_entry *e = f->buckets[b]; e; e = e->hnext)
        if (e->key == key)
            return e;
    return NULL;
}

static void lru_unlink(struct fdb_entry *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
}

static void lru_front(struct fdb_stripe *s, struct fdb_entry *e)
{
    e->next = s->lru.next;
    e->prev = &s->lru;
    s->lru.next->prev = e;
    s->lru.next = e;
}

/* Takes e out of the table (not back to the pool). */
static void detach(struct dp_fdb *f, struct fdb_stripe *s, struct fdb_entry *e)
{
    struct fdb_entry **pp = &f->buckets[e->bucket];
    while (*pp && *pp != e)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = e->hnext;
    lru_unlink(e);
    s->n--;
    DP_ADD(&f->count, (uint32_t)-1);
}

static void release(struct dp_fdb *f, struct fdb_entry *e)
{
    pthread_spin_lock(&f->free_lock);
    e->next = f->free;
    f->free = e;
    pthread_spin_unlock(&f->free_lock);
}

static struct fdb_entry *take_free(struct dp_fdb *f)
{
    pthread_spin_lock(&f->free_lock);
    struct fdb_entry *e = f->free;
    if (e)
        f->free = e->next;
    pthread_spin_unlock(&f->free_lock);
    return e;
}

static bool expired(const struct dp_fdb *f, const struct fdb_entry *e, uint64_t now)
{
    return now > e->used_ns && now - e->used_ns > f->aging_ns;
}

/* ---- the operations -------------------------------------------------------- */

static void fdb_learn(struct dp_fdb *f, uint16_t vlan, const uint8_t *mac, uint32_t port,
                      uint64_t now)
{
    uint64_t key = mac_key(vlan, mac);
    uint32_t b = key_bucket(f, key);
    uint32_t si = b % STRIPES;
    struct fdb_stripe *s = &f->stripes[si];
    pthread_spin_lock(&s->lock);
    struct fdb_entry *e = find(f, b, key);
    if (e) {
        if (e->port != port) {
            if (!expired(f, e, now))
                DP_ADD(&f->moves, 1);
            e->port = port;
        }
        e->used_ns = now;
        if (s->lru.next != e) {
            lru_unlink(e);
            lru_front(s, e);
        }
        pthread_spin_unlock(&s->lock);
        return;
    }
    e = take_free(f);
    if (!e && s->n) {
        e = s->lru.prev;               /* least recently used in this stripe */
        DP_ADD(expired(f, e, now) ? &f->expired : &f->evictions, 1);
        detach(f, s, e);
    }
    for (uint32_t j = 1; !e && j < STRIPES; j++) {
        struct fdb_stripe *o = &f->stripes[(si + j) % STRIPES];
        if (pthread_spin_trylock(&o->lock))
            continue;
        if (o->n) {
            e = o->lru.prev;
            DP_ADD(expired(f, e, now) ? &f->expired : &f->evictions, 1);
            detach(f, o, e);
        }
        pthread_spin_unlock(&o->lock);
    }
    if (e) {
        e->key = key;
        e->port = port;
        e->used_ns = now;
        e->bucket = b;
        e->hnext = f->buckets[b];
        f->buckets[b] = e;
        lru_front(s, e);
        s->n++;
        DP_ADD(&f->count, 1);
        DP_ADD(&f->learned, 1);
    }
    pthread_spin_unlock(&s->lock);
}

static bool fdb_lookup(struct dp_fdb *f, uint16_t vlan, const uint8_t *mac, uint64_t now,
                       uint32_t *port)
{
    uint64_t key = mac_key(vlan, mac);
    uint32_t b = key_bucket(f, key);
    struct fdb_stripe *s = &f->stripes[b % STRIPES];
    bool found = false;
    pthread_spin_lock(&s->lock);
    struct fdb_entry *e = find(f, b, key);
    if (e && !expired(f, e, now)) {
        *port = e->port;
        found = true;
    }
    pthread_spin_unlock(&s->lock);
    return found;
}

void dp_fdb_flush_port(struct dp_fdb *f, uint32_t port)
{
    for (int i = 0; i < STRIPES; i++) {
        struct fdb_stripe *s = &f->stripes[i];
        pthread_spin_lock(&s->lock);
        for (struct fdb_entry *e = s->lru.next, *nx; e != &s->lru; e = nx) {
            nx = e->next;
            if (port == VS_OFPP_ANY || e->port == port) {
                detach(f, s, e);
                release(f, e);
            }
        }
        pthread_spin_unlock(&s->lock);
    }
}

size_t dp_fdb_dump(struct dp_fdb *f, struct vs_dp_fdb_entry *out, size_t max, uint64_t now)
{
    size_t n = 0;
    for (int i = 0; i < STRIPES; i++) {
        struct fdb_stripe *s = &f->stripes[i];
        pthread_spin_lock(&s->lock);
        for (struct fdb_entry *e = s->lru.next, *nx; e != &s->lru; e = nx) {
            nx = e->next;
            if (expired(f, e, now)) {
                detach(f, s, e);
                release(f, e);
                DP_ADD(&f->expired, 1);
                continue;
            }
            if (n < max) {
                for (int k = 0; k < 6; k++)
                    out[n].mac[k] = (uint8_t)(e->key >> (40 - 8 * k));
                out[n].vlan = (uint16_t)(e->key >> 48);
                out[n].port = e->port;
                out[n].age_ms = now > e->used_ns ? (now - e->used_ns) / 1000000 : 0;
            }
            n++;
        }
        pthread_spin_unlock(&s->lock);
    }
    return n;
}

void dp_fdb_counts(struct dp_fdb *f, struct vs_dp_stats *st)
{
    st->fdb_entries = DP_LOAD(&f->count);
    st->fdb_learned = DP_LOAD(&f->learned);
    st->fdb_moves = DP_LOAD(&f->moves);
    st->fdb_evictions = DP_LOAD(&f->evictions);
    st->fdb_expired = DP_LOAD(&f->expired);
}

/* ---- VLANs ------------------------------------------------------------------- */

bool dp_port_has_vlan(const struct dp_port *p, uint16_t vlan)
{
    bool trunk = p->trunks_all || (p->trunks[vlan >> 3] >> (vlan & 7) & 1);
    switch (p->vlan_mode) {
    case VS_DP_VLAN_ACCESS:
        return vlan == p->tag;
    case VS_DP_VLAN_NATIVE_UNTAGGED:
    case VS_DP_VLAN_NATIVE_TAGGED:
        return vlan == p->tag || trunk;
    default:
        return trunk;
    }
}

/* The VLAN a frame belongs to, -1 to drop it.  tagged: an 802.1Q tag with a
 * nonzero VID (a priority tag counts as untagged).  No port (packet-out from
 * the controller): the frame's own tag decides. */
static int input_vlan(const struct dp_port *p, bool tagged, uint16_t vid)
{
    if (!p)
        return tagged ? vid : 0;
    switch (p->vlan_mode) {
    case VS_DP_VLAN_ACCESS:
        return tagged ? -1 : p->tag;
    case VS_DP_VLAN_NATIVE_UNTAGGED:
    case VS_DP_VLAN_NATIVE_TAGGED:
        if (!tagged)
            return p->tag;
        return dp_port_has_vlan(p, vid) ? vid : -1;
    default: {
        uint16_t v = tagged ? vid : 0;
        return dp_port_has_vlan(p, v) ? v : -1;
    }
    }
}

static bool out_tagged(const struct dp_port *p, uint16_t vlan)
{
    switch (p->vlan_mode) {
    case VS_DP_VLAN_ACCESS:
        return false;
    case VS_DP_VLAN_NATIVE_UNTAGGED:
        return vlan != 0 && vlan != p->tag;
    default:
        return vlan != 0;
    }
}

/* The frame as it leaves: untagged, or tagged with the VLAN.  Built at most
 * once per form per frame. */
struct out_forms {
    const uint8_t *data;
    uint32_t len;
    bool has_tag;                      /* the frame carries a 0x8100 tag */
    uint16_t tci;
    uint16_t vlan;
    const uint8_t *f[2];               /* [0] untagged, [1] tagged */
    uint32_t l[2];
};

static bool out_form(struct dp_level *L, struct out_forms *o, bool tagged)
{
    if (o->f[tagged])
        return true;
    const uint8_t *d = o->data;
    uint32_t len = o->len;
    uint8_t *b;
    if (!tagged) {
        if (!o->has_tag) {
            o->f[0] = d;
            o->l[0] = len;
            return true;
        }
        if (!(b = dp_scratch_alloc(&L->scratch, len - 4)))
            return false;
        memcpy(b, d, 12);
        memcpy(b + 12, d + 16, len - 16);
        o->f[0] = b;
        o->l[0] = len - 4;
        return true;
    }
    uint16_t tci = (uint16_t)((o->has_tag ? o->tci & 0xf000 : 0) | o->vlan);
    if (o->has_tag) {
        if ((o->tci & 0xfff) == o->vlan) {
            o->f[1] = d;
            o->l[1] = len;
            return true;
        }
        if (!(b = dp_scratch_alloc(&L->scratch, len)))
            return false;
        memcpy(b, d, len);
        dp_put16(b + 14, tci);
        o->f[1] = b;
        o->l[1] = len;
        return true;
    }
    if (len + 4 > VS_DP_MAX_FRAME || !(b = dp_scratch_alloc(&L->scratch, len + 4)))
        return false;
    memcpy(b, d, 12);
    dp_put16(b + 12, 0x8100);
    dp_put16(b + 14, tci);
    memcpy(b + 16, d + 12, len - 12);
    o->f[1] = b;
    o->l[1] = len + 4;
    return true;
}

static void output(struct dp_level *L, struct vs_dp *dp, struct out_forms *o,
                   struct dp_port *p, uint32_t in_port)
{
    bool tagged = out_tagged(p, o->vlan);
    if (!out_form(L, o, tagged)) {
        DP_ADD(&dp->staging_drops, 1);
        return;
    }
    dp_stage_tx(L, dp, p, o->f[tagged], o->l[tagged], in_port);
}

void dp_normal(struct dp_thread *t, struct dp_level *L, struct vs_dp *dp, uint32_t in_port,
               const uint8_t *data, uint32_t len, uint64_t now)
{
    (void)t;
    DP_ADD(&dp->normal_packets, 1);
    if (len < 14) {
        DP_ADD(&dp->normal_drops, 1);
        return;
    }
    struct dp_port *in = dp_find_port(dp, in_port);
    struct out_forms o;
    memset(&o, 0, sizeof o);
    o.data = data;
    o.len = len;
    o.has_tag = len >= 18 && dp_be16(data + 12) == 0x8100;
    o.tci = o.has_tag ? dp_be16(data + 14) : 0;
    uint16_t vid = o.tci & 0xfff;
    int vlan = input_vlan(in, o.has_tag && vid, vid);
    if (vlan < 0) {
        DP_ADD(&dp->normal_drops, 1);
        return;
    }
    o.vlan = (uint16_t)vlan;
    if (in && !(data[6] & 1))
        fdb_learn(dp->fdb, o.vlan, data + 6, in_port, now);

    uint32_t out;
    if (!(data[0] & 1) && fdb_lookup(dp->fdb, o.vlan, data, now, &out)) {
        if (out == in_port) {
            DP_ADD(&dp->normal_drops, 1);  /* no hairpin */
            return;
        }
        struct dp_port *p = dp_find_port(dp, out);
        if (p && dp_port_has_vlan(p, o.vlan)) {
            output(L, dp, &o, p, in_port);
            return;
        }
    }
    DP_ADD(&dp->normal_floods, 1);
    for (uint32_t i = 0; i < dp->n_ports; i++) {
        struct dp_port *p = dp->ports[i];
        if (p->port_no == in_port || (p->flags & VS_DP_PF_NO_FLOOD) ||
            !dp_port_has_vlan(p, o.vlan))
            continue;
        /* Split horizon: the other tunnels' hosts got it from the sender. */
        if (in && in->type == VS_DP_PORT_VXLAN && p->type == VS_DP_PORT_VXLAN)
            continue;
        output(L, dp, &o, p, in_port);
    }
}
