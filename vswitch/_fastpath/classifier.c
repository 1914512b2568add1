/* classifier.c -- tuple space search with priority-ordered subtables.
 *
 * Invariants:
 *  - every subtable holds at least one rule; its max_priority is the highest
 *    priority among them, n_max how many rules have it (so removing rules is
 *    O(1) until the last top-priority one goes, then one rescan, as OVS's
 *    max_count), and cls->st is sorted by max_priority descending;
 *  - in a bucket, each distinct masked key appears once, as the head of a
 *    `same` chain sorted by priority descending (ties in insertion order);
 *  - rule->key is already masked by its subtable's mask.
 * Not thread-safe by itself: the pipeline's rwlock serialises writers
 * against readers (fastpath.h). */
#include <stdlib.h>

#include "core.h"

_Static_assert(sizeof(struct vs_key) == VS_KEY_SIZE, "vs_key layout");

void minimask_init(struct minimask *mm, const struct vs_key *mask)
{
    mm->n = 0;
    for (unsigned i = 0; i < VS_KEY_WORDS; i++) {
        uint64_t w = kw(mask, i);
        if (w) {
            mm->idx[mm->n] = (uint8_t)i;
            mm->w[mm->n] = w;
            mm->n++;
        }
    }
}

void cls_init(struct classifier *cls)
{
    memset(cls, 0, sizeof *cls);
}

void cls_destroy(struct classifier *cls)
{
    for (uint32_t i = 0; i < cls->n_st; i++) {
        free(cls->st[i]->buckets);
        free(cls->st[i]);
    }
    free(cls->st);
    memset(cls, 0, sizeof *cls);
}

/* Keep cls->st sorted after subtable i's max_priority changed. */
static void resort(struct classifier *cls, uint32_t i)
{
    struct cls_subtable *st = cls->st[i];
    while (i > 0 && cls->st[i - 1]->max_priority < st->max_priority) {
        cls->st[i] = cls->st[i - 1];
        i--;
    }
    while (i + 1 < cls->n_st && cls->st[i + 1]->max_priority > st->max_priority) {
        cls->st[i] = cls->st[i + 1];
        i++;
    }
    cls->st[i] = st;
}

static uint32_t index_of(const struct classifier *cls, const struct cls_subtable *st)
{
    for (uint32_t i = 0; i < cls->n_st; i++)
        if (cls->st[i] == st)
            return i;
    return UINT32_MAX;
}

static struct cls_subtable *find_subtable(const struct classifier *cls, const struct vs_key *mask)
{
    for (uint32_t i = 0; i < cls->n_st; i++)
        if (key_eq(&cls->st[i]->mask, mask))
            return cls->st[i];
    return NULL;
}

static int rehash(struct cls_subtable *st, uint32_t n_buckets)
{
    struct cls_rule **b = calloc(n_buckets, sizeof *b);
    if (!b)
        return -1;
    for (uint32_t i = 0; i < st->n_buckets; i++) {
        struct cls_rule *r = st->buckets[i], *next;
        for (; r; r = next) {
            next = r->hnext;
            r->hnext = b[r->hash & (n_buckets - 1)];
            b[r->hash & (n_buckets - 1)] = r;
        }
    }
    free(st->buckets);
    st->buckets = b;
    st->n_buckets = n_buckets;
    return 0;
}

int cls_insert(struct classifier *cls, struct cls_rule *rule, const struct vs_key *mask)
{
    struct cls_subtable *st = find_subtable(cls, mask);
    bool new_st = false;
    if (!st) {
        if (cls->n_st == cls->cap_st) {
            uint32_t cap = cls->cap_st ? cls->cap_st * 2 : 8;
            struct cls_subtable **n = realloc(cls->st, cap * sizeof *n);
            if (!n)
                return -1;
            cls->st = n;
            cls->cap_st = cap;
        }
        st = calloc(1, sizeof *st);
        if (!st || rehash(st, 16) < 0) {
            free(st);
            return -1;
        }
        st->mask = *mask;
        minimask_init(&st->mm, mask);
        st->max_priority = INT32_MIN;
        cls->st[cls->n_st++] = st;
        new_st = true;
    }
    if (st->n_heads + 1 > st->n_buckets && rehash(st, st->n_buckets * 2) < 0) {
        if (new_st) {
            cls->n_st--;
            free(st->buckets);
            free(st);
        }
        return -1;
    }
    for (unsigned i = 0; i < VS_KEY_WORDS; i++)
        kw_set(&rule->key, i, kw(&rule->key, i) & kw(mask, i));
    rule->st = st;
    rule->hash = minimask_hash(&st->mm, &rule->key);
    rule->same = NULL;

    struct cls_rule **pp = &st->buckets[rule->hash & (st->n_buckets - 1)];
    for (; *pp; pp = &(*pp)->hnext) {
        struct cls_rule *head = *pp;
        if (head->hash != rule->hash || !key_eq(&head->key, &rule->key))
            continue;
        if (rule->priority > head->priority) {  /* new head */
            rule->hnext = head->hnext;
            rule->same = head;
            head->hnext = NULL;
            *pp = rule;
        } else {
            struct cls_rule *r = head;
            while (r->same && r->same->priority >= rule->priority)
                r = r->same;
            rule->same = r->same;
            r->same = rule;
            rule->hnext = NULL;
        }
        goto done;
    }
    rule->hnext = NULL;
    *pp = rule;
    st->n_heads++;
done:
    st->n_rules++;
    cls->n_rules++;
    if (rule->priority > st->max_priority) {
        st->max_priority = rule->priority;
        st->n_max = 1;
        resort(cls, index_of(cls, st));
    } else if (rule->priority == st->max_priority) {
        st->n_max++;
    }
    return 0;
}

void cls_remove(struct classifier *cls, struct cls_rule *rule)
{
    struct cls_subtable *st = rule->st;
    struct cls_rule **pp = &st->buckets[rule->hash & (st->n_buckets - 1)];
    for (; *pp; pp = &(*pp)->hnext) {
        struct cls_rule *head = *pp;
        if (head == rule) {
            if (rule->same) {               /* promote the next one */
                rule->same->hnext = rule->hnext;
                *pp = rule->same;
            } else {
                *pp = rule->hnext;
                st->n_heads--;
            }
            break;
        }
        if (head->hash == rule->hash && key_eq(&head->key, &rule->key)) {
            struct cls_rule *r = head;
            while (r->same && r->same != rule)
                r = r->same;
            if (r->same == rule)
                r->same = rule->same;
            break;
        }
    }
    rule->hnext = rule->same = NULL;
    rule->st = NULL;
    st->n_rules--;
    cls->n_rules--;

    uint32_t i = index_of(cls, st);
    if (st->n_rules == 0) {
        memmove(&cls->st[i], &cls->st[i + 1], (cls->n_st - i - 1) * sizeof cls->st[0]);
        cls->n_st--;
        free(st->buckets);
        free(st);
        return;
    }
    if (rule->priority == st->max_priority && --st->n_max == 0) {
        /* The last rule at the top went: rescan, counting every rule of the
         * new maximum (a chain may hold several of them). */
        int32_t max = INT32_MIN;
        uint32_t n = 0;
        for (uint32_t b = 0; b < st->n_buckets; b++)
            for (struct cls_rule *h = st->buckets[b]; h; h = h->hnext)
                for (struct cls_rule *r = h; r; r = r->same) {
                    if (r->priority > max) {
                        max = r->priority;
                        n = 0;
                    }
                    if (r->priority == max)
                        n++;
                    else
                        break;          /* chains are sorted: the rest are lower */
                }
        st->max_priority = max;
        st->n_max = n;
        resort(cls, i);
    }
}

struct cls_rule *cls_lookup(const struct classifier *cls, const struct vs_key *key,
                            struct vs_key *wc)
{
    struct cls_rule *best = NULL;
    for (uint32_t i = 0; i < cls->n_st; i++) {
        const struct cls_subtable *st = cls->st[i];
        /* Sorted by max priority: nothing further on can win. */
        if (best && best->priority >= st->max_priority)
            break;
        if (wc)
            for (unsigned j = 0; j < st->mm.n; j++)
                kw_set(wc, st->mm.idx[j], kw(wc, st->mm.idx[j]) | st->mm.w[j]);
        uint32_t h = minimask_hash(&st->mm, key);
        for (struct cls_rule *r = st->buckets[h & (st->n_buckets - 1)]; r; r = r->hnext) {
            if (r->hash == h && minimask_eq(&st->mm, key, &r->key)) {
                if (!best || r->priority > best->priority)
                    best = r;
                break;
            }
        }
    }
    return best;
}

struct cls_rule *cls_find_exact(const struct classifier *cls, const struct vs_key *match,
                                const struct vs_key *mask, int32_t priority)
{
    const struct cls_subtable *st = find_subtable(cls, mask);
    if (!st)
        return NULL;
    uint32_t h = minimask_hash(&st->mm, match);
    for (struct cls_rule *r = st->buckets[h & (st->n_buckets - 1)]; r; r = r->hnext) {
        if (r->hash == h && minimask_eq(&st->mm, match, &r->key)) {
            for (; r; r = r->same)
                if (r->priority == priority)
                    return r;
            return NULL;
        }
    }
    return NULL;
}

void cls_for_each(const struct classifier *cls, void (*fn)(struct cls_rule *, void *), void *aux)
{
    for (uint32_t i = 0; i < cls->n_st; i++) {
        const struct cls_subtable *st = cls->st[i];
        for (uint32_t b = 0; b < st->n_buckets; b++)
            for (struct cls_rule *h = st->buckets[b]; h; h = h->hnext)
                for (struct cls_rule *r = h; r; r = r->same)
                    fn(r, aux);
    }
}
