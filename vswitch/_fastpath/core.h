/* core.h -- internals shared by the fast path's C files (not part of the
 * cffi interface; see fastpath.h for the design and the locking rule). */
#ifndef VSWITCH_CORE_H
#define VSWITCH_CORE_H

#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "fastpath.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

/* Relaxed atomics for counters readers bump under the read lock. */
#define ATOMIC_ADD(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)
#define ATOMIC_LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define ATOMIC_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Keys are byte arrays; word access goes through memcpy so that no
 * alignment is assumed (it compiles to plain loads). */
static inline uint64_t kw(const struct vs_key *k, unsigned i)
{
    uint64_t w;
    memcpy(&w, (const uint8_t *)k + 8 * i, 8);
    return w;
}
static inline void kw_set(struct vs_key *k, unsigned i, uint64_t w)
{
    memcpy((uint8_t *)k + 8 * i, &w, 8);
}
static inline void key_or(struct vs_key *dst, const struct vs_key *src)
{
    for (unsigned i = 0; i < VS_KEY_WORDS; i++)
        kw_set(dst, i, kw(dst, i) | kw(src, i));
}
static inline uint64_t mix64(uint64_t h, uint64_t w)
{
    w *= 0x87c37b91114253d5ull;
    w = (w << 31) | (w >> 33);
    h ^= w * 0x4cf5ad432745937full;
    return ((h << 27) | (h >> 37)) * 5 + 0x52dce729;
}
static inline uint32_t fin32(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return (uint32_t)h;
}
static inline uint32_t key_hash(const struct vs_key *k)
{
    uint64_t h = 0;
    for (unsigned i = 0; i < VS_KEY_WORDS; i++)
        h = mix64(h, kw(k, i));
    return fin32(h);
}
static inline bool key_eq(const struct vs_key *a, const struct vs_key *b)
{
    return memcmp(a, b, sizeof *a) == 0;
}

static inline uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void put16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = v & 0xff; }
static inline void put32(uint8_t *p, uint32_t v)
{
    p[0] = v >> 24; p[1] = (v >> 16) & 0xff; p[2] = (v >> 8) & 0xff; p[3] = v & 0xff;
}
static inline uint64_t be64(const uint8_t *p) { return (uint64_t)be32(p) << 32 | be32(p + 4); }
static inline void put64(uint8_t *p, uint64_t v) { put32(p, v >> 32); put32(p + 4, (uint32_t)v); }

/* ---- compact masks: only the nonzero words of a mask ------------------ */
struct minimask {
    uint8_t n;                         /* nonzero words */
    uint8_t idx[VS_KEY_WORDS];
    uint64_t w[VS_KEY_WORDS];
};
void minimask_init(struct minimask *, const struct vs_key *mask);
static inline uint32_t minimask_hash(const struct minimask *m, const struct vs_key *k)
{
    uint64_t h = 0;
    for (unsigned i = 0; i < m->n; i++)
        h = mix64(h, kw(k, m->idx[i]) & m->w[i]);
    return fin32(h);
}
/* k (unmasked) & m == stored (already masked)? */
static inline bool minimask_eq(const struct minimask *m, const struct vs_key *k,
                               const struct vs_key *stored)
{
    for (unsigned i = 0; i < m->n; i++)
        if ((kw(k, m->idx[i]) & m->w[i]) != kw(stored, m->idx[i]))
            return false;
    return true;
}

/* ---- classifier (classifier.c) ---------------------------------------- */
struct cls_subtable;
struct cls_rule {
    struct cls_rule *hnext;            /* next head with a different key */
    struct cls_rule *same;             /* same masked key, lower priority */
    struct cls_subtable *st;
    uint32_t hash;
    int32_t priority;
    struct vs_key key;                 /* masked match values */
};
struct cls_subtable {
    struct vs_key mask;
    struct minimask mm;
    struct cls_rule **buckets;
    uint32_t n_buckets;                /* power of two */
    uint32_t n_heads;
    uint32_t n_rules;
    int32_t max_priority;
    uint32_t n_max;                    /* rules at max_priority (rescan when it hits 0) */
};
struct classifier {
    struct cls_subtable **st;          /* sorted by max_priority, descending */
    uint32_t n_st, cap_st;
    uint32_t n_rules;
};
void cls_init(struct classifier *);
void cls_destroy(struct classifier *);   /* frees subtables, not rules */
int cls_insert(struct classifier *, struct cls_rule *, const struct vs_key *mask);
void cls_remove(struct classifier *, struct cls_rule *);
/* Highest-priority rule matching key; ORs the masks of visited subtables
 * into *wc when wc is not NULL. */
struct cls_rule *cls_lookup(const struct classifier *, const struct vs_key *key,
                            struct vs_key *wc);
/* Rule with exactly this (masked) match, mask and priority. */
struct cls_rule *cls_find_exact(const struct classifier *, const struct vs_key *match,
                                const struct vs_key *mask, int32_t priority);
/* Calls fn on every rule; fn may not modify the classifier. */
void cls_for_each(const struct classifier *, void (*fn)(struct cls_rule *, void *), void *aux);

/* ---- pipeline state (pipeline.c) --------------------------------------- */
struct vs_rule {
    struct cls_rule cr;                /* first: rules are cast from cls_rule */
    uint8_t table_id;
    uint8_t table_miss;                /* priority 0, empty match */
    uint16_t flags;
    uint16_t idle_timeout, hard_timeout;
    uint32_t meter_id;                 /* 0 = none */
    uint64_t cookie;
    uint64_t created_ns;
    uint64_t used_ns;                  /* atomic */
    uint64_t n_packets, n_bytes;       /* atomic */
    /* Decoded instructions: pointers into insts. */
    uint8_t *insts;
    uint32_t insts_len;
    const uint8_t *apply, *write;
    uint32_t apply_len, write_len;
    uint8_t clear, has_goto, goto_table, has_meta;
    uint64_t meta_value, meta_mask;
};

struct vs_table {
    struct classifier cls;
    uint64_t lookup_count, matched_count;   /* atomic */
};

struct vs_port {
    uint32_t port;
    uint32_t flags;
};

struct vs_group {
    uint32_t group_id;
    uint8_t type;
    uint32_t n_buckets;
    uint32_t total_weight;
    uint64_t created_ns;
    uint64_t n_packets, n_bytes;       /* atomic */
    struct group_bucket {
        uint16_t weight;
        uint32_t watch_port;
        const uint8_t *actions;
        uint32_t actions_len;
        uint64_t n_packets, n_bytes;   /* atomic */
    } *buckets;
    uint8_t *blob;                     /* the actions, owned */
};

struct vs_meter {
    uint32_t meter_id;
    uint16_t flags;
    uint16_t n_bands;
    uint64_t created_ns;
    pthread_spinlock_t lock;           /* guards the counters and buckets below */
    uint64_t n_packets, n_bytes;
    struct meter_band_state {
        struct vs_meter_band cfg;
        int64_t tokens;                /* bits (KBPS) or millipackets */
        int64_t capacity;
        uint64_t last_ns;              /* tokens are credited up to here */
    } bands[VS_MAX_BANDS];
};

struct vs_pipeline {
    uint64_t id;                       /* unique for the process: caches key on it */
    /* Writers (control thread) take it for writing; vs_process_batch takes
     * it for reading for a whole batch.  Writer-preferring, so a stream of
     * batches cannot starve flow mods. */
    pthread_rwlock_t lock;
    uint64_t gen;                      /* bumped under the write lock */
    uint64_t n_rules;
    struct vs_table tables[VS_N_TABLES];
    struct vs_port *ports;             /* sorted by port number */
    uint32_t n_ports, cap_ports;
    struct vs_group **groups;          /* sorted by id */
    uint32_t n_groups, cap_groups;
    struct vs_meter **meters;          /* sorted by id */
    uint32_t n_meters, cap_meters;
    struct vs_flow_stats *removed;     /* queued removal records */
    size_t n_removed, cap_removed;
};

struct vs_group *pipeline_find_group(const struct vs_pipeline *, uint32_t id);
struct vs_meter *pipeline_find_meter(const struct vs_pipeline *, uint32_t id);
const struct vs_port *pipeline_find_port(const struct vs_pipeline *, uint32_t port);

/* ---- translation (xlate.c) --------------------------------------------- */
#define XLATE_MAX_LOOKUPS VS_N_TABLES  /* goto only goes forward: at most one lookup per table */
struct xlate_lookup {
    struct vs_rule *rule;              /* NULL: table miss */
    uint8_t table_id;
};
struct xlate_out {
    uint8_t *prog;                     /* composed action program */
    uint32_t len, cap;
    uint32_t n_lookups;
    struct xlate_lookup lookups[XLATE_MAX_LOOKUPS];
    struct vs_key wc;                  /* header bits the result depends on */
};
/* Runs the pipeline for key; 0 or -1 on allocation failure. */
int xlate(const struct vs_pipeline *, const struct vs_key *key, struct xlate_out *);

/* Internal ops in composed programs (see fastpath.h):
 * VS_X_CONTROLLER: arg max_len; +8 reason, +9 table_id; +16 cookie; +24 metadata
 * VS_X_DEC_TTL:    +8 table_id; +16 cookie (for the INVALID_TTL upcall)
 * VS_X_GROUP:      arg group id; +8 reason, +9 table_id; +16 cookie; +24 metadata
 *                  (the invoking rule, for upcalls from its buckets) */
#define VS_X_DEC_TTL 50
#define VS_X_GROUP 51
#define X_GROUP_LEN 32
#define X_CONTROLLER_LEN 32
#define X_DEC_TTL_LEN 24

/* ---- execution (execute.c) --------------------------------------------- */
struct arena_chunk;
struct arena {
    struct arena_chunk *head, *cur;
};
void *arena_alloc(struct arena *, size_t size);
void arena_reset(struct arena *);
void arena_free(struct arena *);

struct pkt_state {
    uint8_t *data;
    uint32_t len;
    uint8_t owned;                     /* data is ours to write (in the arena) */
    uint8_t emitted;                   /* an emit points at data: copy before writing */
    uint16_t headroom;                 /* writable bytes in front of data (owned only) */
    uint32_t queue;
    uint32_t in_port;
    uint32_t idx;                      /* index in the batch */
    const struct vs_key *key;          /* as parsed on arrival */
    uint64_t tun_id;                   /* tunnel_id now (set_field changes it) */
    uint8_t tun_dst[4];                /* tun_ipv4_dst now */
    struct vs_layers L;
};

struct exec_ctx {
    const struct vs_pipeline *p;
    /* The rule that invoked the group now running (VS_X_GROUP), for upcalls
     * from bucket actions. */
    uint8_t g_reason, g_table;
    uint64_t g_cookie, g_metadata;
    struct arena *pkt_arena;
    struct vs_batch_result *out;
    uint32_t max_emits, max_upcalls;
    struct vs_context_stats *stats;
    uint64_t now;
    uint8_t dry_run;                   /* trace: touch no shared counter or meter */
};
/* Runs a composed program on one packet. */
void execute(struct exec_ctx *, struct pkt_state *, const uint8_t *prog, uint32_t len);

#endif /* VSWITCH_CORE_H */
