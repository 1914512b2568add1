/* context.c -- per-thread caches and the batch loop.
 *
 * A context belongs to one thread at a time (a poll thread, or a test); its
 * caches need no locking.  Stage by stage, for a batch of up to 256 frames:
 *   1. parse every frame to a key;
 *   2. per frame: EMC (exact key) -> megaflow cache (masked key) -> xlate;
 *   3. execute the program on the frame (emits/upcalls into the result);
 *   4. add the batch's counts to the rules and tables the megaflows name
 *      (once per megaflow per batch, not per packet).
 * The pipeline's read lock is held across 2-4; see fastpath.h. */
#include <stdlib.h>

#include "core.h"

struct mf_subtable;
struct mf_entry {
    struct mf_entry *next;             /* hash chain */
    struct mf_subtable *st;
    uint32_t hash;
    uint32_t prog_len;
    uint32_t n_lookups;
    uint32_t pend_packets;             /* counts not yet added to the rules */
    uint64_t pend_bytes;
    struct vs_key key;                 /* masked */
    struct xlate_lookup *lookups;      /* n_lookups, in the arena */
    uint8_t *prog;                     /* prog_len, in the arena */
};

struct mf_subtable {
    struct vs_key mask;
    struct minimask mm;
    struct mf_entry **buckets;
    uint32_t n_buckets, n;
    uint64_t hits;
};

struct emc_entry {
    uint32_t hash;
    struct mf_entry *e;
    struct vs_key key;
};

struct vs_context {
    struct vs_context_config cfg;
    struct vs_context_stats stats;
    uint64_t owner;                    /* caches are valid for (pipeline id, gen); ids,
                                          unlike addresses, are never reused */
    uint64_t gen;
    struct emc_entry *emc;
    struct mf_subtable **mf;
    uint32_t n_mf, cap_mf;
    uint64_t n_entries;
    struct arena mf_arena;             /* megaflow entries; reset on flush */
    struct arena pkt_arena;            /* packet copies; reset per batch */
    struct vs_emit *emits;
    struct vs_upcall *upcalls;
    struct xlate_out xo;
    struct mf_entry scratch;           /* uncached translation */
    struct mf_entry *dirty[VS_MAX_BATCH];
    uint32_t n_dirty;
    uint64_t rng;
    struct vs_key keys[VS_MAX_BATCH];
    struct vs_layers layers[VS_MAX_BATCH];
};

struct vs_context *vs_context_new(const struct vs_context_config *cfg)
{
    struct vs_context *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->cfg = *cfg;
    if (c->cfg.emc_entries & (c->cfg.emc_entries - 1))
        goto bad;                      /* not a power of two */
    if (!c->cfg.emc_insert_inv_prob)
        c->cfg.emc_insert_inv_prob = 1;
    if (!c->cfg.max_emits)
        c->cfg.max_emits = 4 * VS_MAX_BATCH;
    if (!c->cfg.max_upcalls)
        c->cfg.max_upcalls = VS_MAX_BATCH;
    if (c->cfg.emc_entries && !(c->emc = calloc(c->cfg.emc_entries, sizeof *c->emc)))
        goto bad;
    c->emits = calloc(c->cfg.max_emits, sizeof *c->emits);
    c->upcalls = calloc(c->cfg.max_upcalls, sizeof *c->upcalls);
    if (!c->emits || !c->upcalls)
        goto bad;
    c->rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)c;
    return c;
bad:
    vs_context_free(c);
    return NULL;
}

static void flush_caches(struct vs_context *c)
{
    for (uint32_t i = 0; i < c->n_mf; i++) {
        free(c->mf[i]->buckets);
        free(c->mf[i]);
    }
    c->n_mf = 0;
    c->n_entries = 0;
    arena_reset(&c->mf_arena);
    if (c->emc)
        memset(c->emc, 0, c->cfg.emc_entries * sizeof *c->emc);
    c->stats.flushes++;
}

void vs_context_free(struct vs_context *c)
{
    if (!c)
        return;
    flush_caches(c);
    free(c->mf);
    free(c->emc);
    free(c->emits);
    free(c->upcalls);
    free(c->xo.prog);
    arena_free(&c->mf_arena);
    arena_free(&c->pkt_arena);
    free(c);
}

void vs_context_get_stats(const struct vs_context *c, struct vs_context_stats *s)
{
    *s = c->stats;
    s->megaflows = c->n_entries;
    s->megaflow_subtables = c->n_mf;
}

/* ---- megaflow cache ------------------------------------------------------ */

static struct mf_entry *mf_lookup(struct vs_context *c, const struct vs_key *key)
{
    for (uint32_t i = 0; i < c->n_mf; i++) {
        struct mf_subtable *st = c->mf[i];
        uint32_t h = minimask_hash(&st->mm, key);
        for (struct mf_entry *e = st->buckets[h & (st->n_buckets - 1)]; e; e = e->next) {
            if (e->hash == h && minimask_eq(&st->mm, key, &e->key)) {
                /* Keep the busiest subtables first (one swap per hit at most). */
                if (++st->hits > (i ? c->mf[i - 1]->hits : UINT64_MAX)) {
                    c->mf[i] = c->mf[i - 1];
                    c->mf[i - 1] = st;
                }
                return e;
            }
        }
    }
    return NULL;
}

static struct mf_subtable *mf_subtable(struct vs_context *c, const struct vs_key *mask)
{
    for (uint32_t i = 0; i < c->n_mf; i++)
        if (key_eq(&c->mf[i]->mask, mask))
            return c->mf[i];
    if (c->n_mf == c->cap_mf) {
        uint32_t cap = c->cap_mf ? c->cap_mf * 2 : 16;
        struct mf_subtable **n = realloc(c->mf, cap * sizeof *n);
        if (!n)
            return NULL;
        c->mf = n;
        c->cap_mf = cap;
    }
    struct mf_subtable *st = calloc(1, sizeof *st);
    if (!st || !(st->buckets = calloc(64, sizeof *st->buckets))) {
        free(st);
        return NULL;
    }
    st->n_buckets = 64;
    st->mask = *mask;
    minimask_init(&st->mm, mask);
    c->mf[c->n_mf++] = st;
    return st;
}

static void mf_grow(struct mf_subtable *st)
{
    uint32_t n = st->n_buckets * 2;
    struct mf_entry **b = calloc(n, sizeof *b);
    if (!b)
        return;                        /* longer chains, still correct */
    for (uint32_t i = 0; i < st->n_buckets; i++) {
        struct mf_entry *e = st->buckets[i], *next;
        for (; e; e = next) {
            next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    }
    free(st->buckets);
    st->buckets = b;
    st->n_buckets = n;
}

/* Fills e (allocated by the caller) from the translation result. */
static int entry_fill(struct arena *a, struct mf_entry *e, const struct xlate_out *xo,
                      const struct vs_key *key)
{
    e->prog_len = xo->len;
    e->n_lookups = xo->n_lookups;
    e->pend_packets = 0;
    e->pend_bytes = 0;
    e->lookups = arena_alloc(a, xo->n_lookups * sizeof *e->lookups + 1);
    e->prog = arena_alloc(a, xo->len + 1);
    if (!e->lookups || !e->prog)
        return -1;
    if (xo->n_lookups)
        memcpy(e->lookups, xo->lookups, xo->n_lookups * sizeof *e->lookups);
    if (xo->len)                       /* an empty program (drop) has no buffer */
        memcpy(e->prog, xo->prog, xo->len);
    for (unsigned i = 0; i < VS_KEY_WORDS; i++)
        kw_set(&e->key, i, kw(key, i) & kw(&xo->wc, i));
    return 0;
}

static struct mf_entry *mf_insert(struct vs_context *c, const struct vs_key *key)
{
    struct mf_subtable *st = mf_subtable(c, &c->xo.wc);
    struct mf_entry *e = st ? arena_alloc(&c->mf_arena, sizeof *e) : NULL;
    if (!e || entry_fill(&c->mf_arena, e, &c->xo, key) < 0)
        return NULL;
    e->st = st;
    e->hash = minimask_hash(&st->mm, key);
    if (st->n + 1 > st->n_buckets * 2)
        mf_grow(st);
    e->next = st->buckets[e->hash & (st->n_buckets - 1)];
    st->buckets[e->hash & (st->n_buckets - 1)] = e;
    st->n++;
    c->n_entries++;
    return e;
}

/* ---- stats --------------------------------------------------------------- */

static void credit(const struct mf_entry *e, uint64_t packets, uint64_t bytes, uint64_t now)
{
    for (uint32_t i = 0; i < e->n_lookups; i++) {
        struct vs_rule *r = e->lookups[i].rule;
        if (r) {
            ATOMIC_ADD(&r->n_packets, packets);
            ATOMIC_ADD(&r->n_bytes, bytes);
            ATOMIC_STORE(&r->used_ns, now);
        }
    }
}

static void credit_tables(struct vs_pipeline *p, const struct mf_entry *e, uint64_t packets)
{
    for (uint32_t i = 0; i < e->n_lookups; i++) {
        struct vs_table *t = &p->tables[e->lookups[i].table_id];
        ATOMIC_ADD(&t->lookup_count, packets);
        if (e->lookups[i].rule)
            ATOMIC_ADD(&t->matched_count, packets);
    }
}

static void flush_dirty(struct vs_context *c, struct vs_pipeline *p, uint64_t now)
{
    for (uint32_t i = 0; i < c->n_dirty; i++) {
        struct mf_entry *e = c->dirty[i];
        credit(e, e->pend_packets, e->pend_bytes, now);
        credit_tables(p, e, e->pend_packets);
        e->pend_packets = 0;
        e->pend_bytes = 0;
    }
    c->n_dirty = 0;
}

/* ---- the batch loop ------------------------------------------------------ */

static inline uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void process_locked(struct vs_context *c, struct vs_pipeline *p,
                           const uint8_t *const *frames, const uint32_t *lens,
                           const uint32_t *in_ports, const struct vs_tun_md *md, uint32_t n,
                           struct vs_batch_result *out, uint64_t now)
{
    if (c->owner != p->id || c->gen != ATOMIC_LOAD(&p->gen)) {
        flush_caches(c);
        c->owner = p->id;
        c->gen = ATOMIC_LOAD(&p->gen);
    }
    arena_reset(&c->pkt_arena);
    out->n_emits = out->n_upcalls = 0;
    out->emits = c->emits;
    out->upcalls = c->upcalls;
    struct exec_ctx x = {.p = p, .pkt_arena = &c->pkt_arena, .out = out,
                         .max_emits = c->cfg.max_emits, .max_upcalls = c->cfg.max_upcalls,
                         .stats = &c->stats, .now = now};

    for (uint32_t i = 0; i < n; i++)
        vs_parse(frames[i], lens[i], in_ports[i], &c->keys[i], &c->layers[i]);
    if (md) {
        for (uint32_t i = 0; i < n; i++) {
            put64(c->keys[i].tunnel_id, md[i].tunnel_id);
            memcpy(c->keys[i].tun_ipv4_src, md[i].ipv4_src, 4);
            memcpy(c->keys[i].tun_ipv4_dst, md[i].ipv4_dst, 4);
        }
    }

    bool use_mf = c->cfg.megaflow_max != 0;
    for (uint32_t i = 0; i < n; i++) {
        const struct vs_key *key = &c->keys[i];
        struct mf_entry *e = NULL;
        struct emc_entry *slot = NULL;
        uint32_t h = 0;
        if (c->emc) {
            h = key_hash(key);
            slot = &c->emc[h & (c->cfg.emc_entries - 1)];
            if (slot->e && slot->hash == h && key_eq(&slot->key, key)) {
                e = slot->e;
                c->stats.emc_hits++;
            }
        }
        if (!e && use_mf && (e = mf_lookup(c, key)))
            c->stats.megaflow_hits++;
        if (!e) {
            c->stats.misses++;
            if (xlate(p, key, &c->xo) < 0) {
                c->stats.drops++;
                continue;
            }
            if (use_mf && c->n_entries >= c->cfg.megaflow_max) {
                flush_dirty(c, p, now);   /* entries are about to go */
                flush_caches(c);
            }
            if (use_mf)
                e = mf_insert(c, key);
            if (!e) {
                /* Uncached: run from the translation buffer directly. */
                e = &c->scratch;
                e->prog = c->xo.prog;
                e->prog_len = c->xo.len;
                e->lookups = c->xo.lookups;
                e->n_lookups = c->xo.n_lookups;
                slot = NULL;
            }
        }
        if (slot && slot->e != e && e != &c->scratch &&
            rng_next(&c->rng) % c->cfg.emc_insert_inv_prob == 0) {
            slot->e = e;
            slot->hash = h;
            slot->key = *key;
            c->stats.emc_inserts++;
        }

        struct pkt_state ps = {.data = (uint8_t *)frames[i], .len = lens[i], .in_port = in_ports[i],
                               .idx = i, .key = key, .L = c->layers[i],
                               .tun_id = md ? md[i].tunnel_id : 0};
        memcpy(ps.tun_dst, key->tun_ipv4_dst, 4);
        uint32_t before = out->n_emits;
        execute(&x, &ps, e->prog, e->prog_len);
        if (out->n_emits == before)
            c->stats.drops++;

        if (e == &c->scratch) {
            credit(e, 1, lens[i], now);
            credit_tables(p, e, 1);
        } else {
            if (!e->pend_packets)
                c->dirty[c->n_dirty++] = e;
            e->pend_packets++;
            e->pend_bytes += lens[i];
        }
    }
    flush_dirty(c, p, now);
    c->stats.packets += n;
    c->stats.batches++;
}

int vs_process_batch(struct vs_context *c, struct vs_pipeline *p, const uint8_t *const *frames,
                     const uint32_t *lens, const uint32_t *in_ports, uint32_t n,
                     struct vs_batch_result *out)
{
    if (n > VS_MAX_BATCH)
        return -1;
    uint64_t now = now_ns();
    pthread_rwlock_rdlock(&p->lock);
    process_locked(c, p, frames, lens, in_ports, NULL, n, out, now);
    pthread_rwlock_unlock(&p->lock);
    return 0;
}

int vs_process_batch_tun(struct vs_context *c, struct vs_pipeline *p,
                         const uint8_t *const *frames, const uint32_t *lens,
                         const uint32_t *in_ports, const struct vs_tun_md *md, uint32_t n,
                         struct vs_batch_result *out)
{
    if (n > VS_MAX_BATCH)
        return -1;
    uint64_t now = now_ns();
    pthread_rwlock_rdlock(&p->lock);
    process_locked(c, p, frames, lens, in_ports, md, n, out, now);
    pthread_rwlock_unlock(&p->lock);
    return 0;
}

uint64_t vs_bench_batches(struct vs_context *c, struct vs_pipeline *p,
                          const uint8_t *const *frames, const uint32_t *lens,
                          const uint32_t *in_ports, uint32_t n, uint64_t rounds)
{
    if (n > VS_MAX_BATCH)
        return 0;
    struct vs_batch_result out;
    uint64_t t0 = now_ns();
    for (uint64_t r = 0; r < rounds; r++)
        vs_process_batch(c, p, frames, lens, in_ports, n, &out);
    return now_ns() - t0;
}
