/* dp_thread.c -- poll threads: receive a batch, run it through the
 * pipeline, deliver the results (upcalls, NORMAL, patch, per-port batched
 * transmit), block in epoll when idle.
 *
 * Levels: a thread keeps one struct dp_level per patch nesting depth.
 * Level d has its own vs_context (results of vs_process_batch live in the
 * context until its next batch), its own transmit staging and scratch
 * memory, so a patch hop at level d runs the peer's pipeline at level d+1
 * while level d's emits stay valid.  Level 0's context is the thread's main
 * cache (config from the datapath); deeper ones are created on first use
 * with smaller caches.
 *
 * A round holds the datapath's read lock from the first receive to the
 * last ring block given back; epoll_wait happens outside it. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "dp_private.h"

#define CHUNK_SIZE (256u * 1024)
#define SCRATCH_MAX (64u << 20)        /* per level; beyond it frames are dropped */
#define STAGE_MAX 65536u               /* staged frames per level and batch */
#define TXB 256

/* The target of packet-out's OUTPUT:TABLE (emits to VS_DP_PORT_RESERVED). */
static struct dp_port table_port = {.port_no = VS_DP_PORT_RESERVED, .fd = -1, .thread = -1};

/* ---- scratch memory ------------------------------------------------------- */
struct dp_chunk {
    struct dp_chunk *next;
    size_t size, used;
    uint8_t data[];
};

static void scratch_reset(struct dp_scratch *s)
{
    for (struct dp_chunk *c = s->head; c; c = c->next)
        c->used = 0;
    s->cur = s->head;
}

static size_t scratch_total(const struct dp_scratch *s)
{
    size_t t = 0;
    for (struct dp_chunk *c = s->head; c; c = c->next)
        t += c->size;
    return t;
}

void *dp_scratch_alloc(struct dp_scratch *s, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    for (struct dp_chunk *c = s->cur; c; c = c->next) {
        if (c->size - c->used >= n) {
            s->cur = c;
            void *p = c->data + c->used;
            c->used += n;
            return p;
        }
    }
    size_t size = n > CHUNK_SIZE ? n : CHUNK_SIZE;
    if (scratch_total(s) + size > SCRATCH_MAX)
        return NULL;
    struct dp_chunk *c = malloc(sizeof *c + size);
    if (!c)
        return NULL;
    c->size = size;
    c->used = n;
    /* Put it after cur so that later allocations of this batch find it. */
    if (s->cur) {
        c->next = s->cur->next;
        s->cur->next = c;
    } else {
        c->next = s->head;
        s->head = c;
    }
    s->cur = c;
    return c->data;
}

static void scratch_free(struct dp_scratch *s)
{
    for (struct dp_chunk *c = s->head, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    s->head = s->cur = NULL;
}

/* ---- staging and delivery ---------------------------------------------------- */

void dp_stage_tx(struct dp_level *L, struct vs_dp *dp, struct dp_port *p, const uint8_t *data,
                 uint32_t len, uint32_t in_port)
{
    if (L->n_tx == L->cap_tx) {
        uint32_t cap = L->cap_tx ? L->cap_tx * 2 : 1024;
        struct dp_tx *n = cap <= STAGE_MAX ? realloc(L->tx, cap * sizeof *n) : NULL;
        if (!n) {
            DP_ADD(&dp->staging_drops, 1);
            return;
        }
        L->tx = n;
        L->cap_tx = cap;
    }
    L->tx[L->n_tx++] = (struct dp_tx){.port = p, .data = data, .len = len, .in_port = in_port,
                                      .tun_id = L->cur_tun, .tun_dst = L->cur_tun_dst};
}

static bool holds(const struct dp_thread *t, const struct vs_dp *dp)
{
    for (uint32_t i = 0; i < t->n_held; i++)
        if (t->held[i] == dp)
            return true;
    return false;
}

/* Drop every staged frame of p from index i on. */
static uint32_t unstage(struct dp_level *L, uint32_t i, const struct dp_port *p)
{
    uint32_t n = 0;
    for (uint32_t j = i; j < L->n_tx; j++) {
        if (L->tx[j].port == p) {
            L->tx[j].port = NULL;
            n++;
        }
    }
    return n;
}

static void deliver(struct dp_thread *t, struct dp_port *p, struct dp_port *pp,
                    struct vs_dp *peer, unsigned d, uint32_t k, uint64_t bytes)
{
    if (pp) {
        DP_ADD(&p->st.tx_packets, k);
        DP_ADD(&p->st.tx_bytes, bytes);
        DP_ADD(&pp->st.rx_packets, k);
        DP_ADD(&pp->st.rx_bytes, bytes);
        DP_ADD(&t->st.patch_packets, k);
    }
    dp_run_batch(t, peer, peer->pipeline, d, k, false);
}

/* Frames staged for a patch port (or packet-out's TABLE) go through the
 * peer's pipeline at the next level. */
static void inject(struct dp_thread *t, struct vs_dp *dp, unsigned d, uint32_t i)
{
    struct dp_level *L = &t->lv[d];
    struct dp_port *p = L->tx[i].port;
    bool table = p == &table_port;
    struct vs_dp *peer = table ? dp : p->peer;
    if (!peer) {
        DP_ADD(&p->st.tx_dropped, unstage(L, i, p));
        return;
    }
    if (d + 1 > dp->cfg.patch_max_depth) {
        uint32_t n = unstage(L, i, p);
        DP_ADD(&dp->patch_loop_drops, n);
        DP_ADD(&t->st.patch_loop_drops, n);
        return;
    }
    bool lock = !holds(t, peer);
    if (lock)
        pthread_rwlock_rdlock(&peer->lock);
    t->held[t->n_held++] = peer;
    struct dp_port *pp = NULL;
    if (!table) {
        pp = dp_find_port(peer, p->peer_port);
        if (!pp || pp->type != VS_DP_PORT_PATCH) {
            DP_ADD(&p->st.tx_dropped, unstage(L, i, p));
            goto out;
        }
    }
    struct dp_level *N = &t->lv[d + 1];
    uint32_t k = 0;
    uint64_t bytes = 0;
    for (uint32_t j = i; j < L->n_tx; j++) {
        struct dp_tx *x = &L->tx[j];
        if (x->port != p)
            continue;
        x->port = NULL;
        N->frames[k] = x->data;
        N->lens[k] = x->len;
        N->in_ports[k] = table ? x->in_port : p->peer_port;
        /* The tunnel_id and destination cross patch ports (not the source). */
        N->md[k] = (struct vs_tun_md){.tunnel_id = x->tun_id};
        memcpy(N->md[k].ipv4_dst, &x->tun_dst, 4);
        bytes += x->len;
        if (++k == VS_MAX_BATCH) {
            deliver(t, p, pp, peer, d + 1, k, bytes);
            k = 0;
            bytes = 0;
        }
    }
    if (k)
        deliver(t, p, pp, peer, d + 1, k, bytes);
out:
    t->n_held--;
    if (lock)
        pthread_rwlock_unlock(&peer->lock);
}

static void port_tx(struct dp_port *p, const uint8_t *const *fr, const uint32_t *ln,
                    const uint64_t *tn, const uint32_t *td, uint32_t k)
{
    if (p->ops->tx_tun)
        p->ops->tx_tun(p, fr, ln, tn, td, k);
    else
        p->ops->tx(p, fr, ln, k);
}

/* Send everything staged at level d, one tx call per port (in order). */
static void flush(struct dp_thread *t, struct vs_dp *dp, unsigned d)
{
    struct dp_level *L = &t->lv[d];
    const uint8_t *fr[TXB];
    uint32_t ln[TXB];
    uint64_t tn[TXB];
    uint32_t td[TXB];
    for (uint32_t i = 0; i < L->n_tx; i++) {
        struct dp_port *p = L->tx[i].port;
        if (!p)
            continue;
        if (p == &table_port || p->type == VS_DP_PORT_PATCH) {
            inject(t, dp, d, i);
            continue;
        }
        uint32_t k = 0;
        uint64_t oversize = 0;
        for (uint32_t j = i; j < L->n_tx; j++) {
            struct dp_tx *x = &L->tx[j];
            if (x->port != p)
                continue;
            x->port = NULL;
            if (x->len > p->max_frame) {
                oversize++;
                continue;
            }
            fr[k] = x->data;
            ln[k] = x->len;
            tn[k] = x->tun_id;
            td[k] = x->tun_dst;
            if (++k == TXB) {
                port_tx(p, fr, ln, tn, td, k);
                k = 0;
            }
        }
        if (k)
            port_tx(p, fr, ln, tn, td, k);
        if (oversize) {
            DP_ADD(&p->st.tx_oversize, oversize);
            DP_ADD(&p->st.tx_dropped, oversize);
        }
    }
    L->n_tx = 0;
}

static const struct vs_context_config nested_cfg = {
    .emc_entries = 1024, .emc_insert_inv_prob = 100, .megaflow_max = 16384,
    .max_emits = 16 * VS_MAX_BATCH, .max_upcalls = VS_MAX_BATCH,
};

void dp_run_batch(struct dp_thread *t, struct vs_dp *dp, struct vs_pipeline *pl,
                  unsigned d, uint32_t n, bool table_ok)
{
    struct dp_level *L = &t->lv[d];
    if (!L->ctx && !(L->ctx = vs_context_new(&nested_cfg))) {
        DP_ADD(&dp->staging_drops, n);
        return;
    }
    struct vs_batch_result res;
    if (vs_process_batch_tun(L->ctx, pl, L->frames, L->lens, L->in_ports, L->md, n,
                             &res) < 0)
        return;
    uint64_t now = dp_now_ns();
    L->n_tx = 0;
    scratch_reset(&L->scratch);

    uint64_t up_ok = 0, up_drop = 0;
    bool sflow = d == 0 && t->sflow.port;   /* frames of this batch were picked */
    for (uint32_t i = 0; i < res.n_upcalls; i++) {
        if (sflow)
            dp_sflow_note(t, L, res.upcalls[i].pkt, L->n_tx, VS_DP_SFLOW_F_LOCAL);
        if (dp_upq_push(dp->upq, &res.upcalls[i]) == 0)
            up_ok++;
        else
            up_drop++;
    }
    if (up_ok) {
        DP_ADD(&dp->upcalls, up_ok);
        DP_ADD(&t->st.upcalls, up_ok);
    }
    if (up_drop) {
        DP_ADD(&dp->upcall_drops, up_drop);
        DP_ADD(&t->st.upcall_drops, up_drop);
    }

    uint64_t no_port = 0;
    for (uint32_t i = 0; i < res.n_emits; i++) {
        const struct vs_emit *e = &res.emits[i];
        uint32_t in_port = L->in_ports[e->pkt];
        L->cur_tun = e->tunnel_id;
        memcpy(&L->cur_tun_dst, e->tun_ipv4_dst, 4);
        uint32_t staged = L->n_tx;
        if (e->port == VS_OFPP_NORMAL) {
            dp_normal(t, L, dp, in_port, e->data, e->len, now);
        } else if (table_ok && e->port == VS_DP_PORT_RESERVED) {
            dp_stage_tx(L, dp, &table_port, e->data, e->len, in_port);
        } else {
            struct dp_port *p = dp_find_port(dp, e->port);
            if (p)
                dp_stage_tx(L, dp, p, e->data, e->len, in_port);
            else
                no_port++;
        }
        if (sflow)
            dp_sflow_note(t, L, e->pkt, staged,
                          e->port == VS_OFPP_NORMAL && L->n_tx - staged > 1
                              ? VS_DP_SFLOW_F_FLOOD : 0);
    }
    if (no_port)
        DP_ADD(&dp->tx_no_port, no_port);
    if (sflow)
        dp_sflow_flush(t, dp, L);
    flush(t, dp, d);
}

/* ---- the poll loop -------------------------------------------------------------- */

static void handle_errors(struct dp_thread *t)
{
    for (uint32_t i = 0; i < t->n_err; i++) {
        for (uint32_t j = 0; j < t->n_rx; j++) {
            struct dp_port *p = t->rx[j];
            if (p->id != t->err_ids[i])
                continue;
            p->ops->error(p);
            if (DP_LOAD(&p->dead))
                epoll_ctl(t->epfd, EPOLL_CTL_DEL, p->fd, NULL);
        }
    }
    t->n_err = 0;
}

static void sync_ctx_stats(struct dp_thread *t)
{
    struct vs_context_stats cs;
    vs_context_get_stats(t->lv[0].ctx, &cs);
    DP_STORE(&t->st.emc_hits, cs.emc_hits);
    DP_STORE(&t->st.megaflow_hits, cs.megaflow_hits);
    DP_STORE(&t->st.misses, cs.misses);
}

static uint32_t poll_round(struct dp_thread *t)
{
    struct vs_dp *dp = t->dp;
    struct dp_level *L = &t->lv[0];
    uint32_t got = 0;
    pthread_rwlock_rdlock(&dp->lock);
    t->held[0] = dp;
    t->n_held = 1;
    if (t->n_err)
        handle_errors(t);
    uint32_t n = t->n_rx;
    for (uint32_t k = 0; k < n; k++) {
        struct dp_port *p = t->rx[(t->rr + k) % n];
        if (DP_LOAD(&p->dead))
            continue;
        uint32_t m = p->ops->rx(p, L->frames, L->lens, dp->cfg.batch_size);
        if (m) {
            for (uint32_t i = 0; i < m; i++)
                L->in_ports[i] = p->port_no;
            if (p->ops->rx_meta)
                p->ops->rx_meta(p, L->in_ports, L->md, m);
            else
                memset(L->md, 0, (size_t)m * sizeof *L->md);
            dp_sflow_pick(t, dp, p, m);
            dp_run_batch(t, dp, dp->pipeline, 0, m, false);
            got += m;
            DP_ADD(&t->st.batches, 1);
        }
        p->ops->rx_done(p);
    }
    if (n)
        t->rr = (t->rr + 1) % n;
    t->n_held = 0;
    pthread_rwlock_unlock(&dp->lock);
    if (got) {
        DP_ADD(&t->st.packets, got);
        sync_ctx_stats(t);
    }
    return got;
}

static void *poll_main(void *arg)
{
    struct dp_thread *t = arg;
    struct vs_dp *dp = t->dp;
    char name[16];
    snprintf(name, sizeof name, "vs-poll-%u", t->idx);
    pthread_setname_np(pthread_self(), name);
    uint32_t empty = 0;
    struct epoll_event ev[64];
    while (!DP_LOAD(&dp->stop)) {
        uint64_t t0 = dp_now_ns();
        if (poll_round(t)) {
            empty = 0;
            uint64_t dt = dp_now_ns() - t0;
            uint64_t ns = DP_ADD(&t->st.proc_ns, dt) + dt;
            uint64_t pk = DP_LOAD(&t->st.packets);
            DP_ADD(&t->st.busy_rounds, 1);
            DP_STORE(&t->st.ns_per_packet, pk ? ns / pk : 0);
            continue;
        }
        DP_ADD(&t->st.idle_rounds, 1);
        if (++empty < dp->cfg.busy_rounds)
            continue;
        empty = 0;
        DP_ADD(&t->st.sleeps, 1);
        int r = epoll_wait(t->epfd, ev, 64, -1);
        for (int i = 0; i < r; i++) {
            if (ev[i].data.u64 == 0) {
                uint64_t v;
                ssize_t rr = read(t->wakefd, &v, sizeof v);
                (void)rr;
            } else if ((ev[i].events & (EPOLLERR | EPOLLHUP)) &&
                       t->n_err < sizeof t->err_ids / sizeof t->err_ids[0]) {
                t->err_ids[t->n_err++] = ev[i].data.u64;
            }
        }
    }
    return NULL;
}

/* ---- lifecycle -------------------------------------------------------------------- */

int dp_thread_init(struct dp_thread *t, struct vs_dp *dp, uint32_t idx, bool poll)
{
    static const struct vs_context_config po_cfg = {
        .max_emits = 16 * VS_MAX_BATCH, .max_upcalls = VS_MAX_BATCH,
    };
    memset(t, 0, sizeof *t);
    t->dp = dp;
    t->idx = idx;
    t->epfd = t->wakefd = -1;
    t->lv[0].ctx = vs_context_new(poll ? &dp->cfg.ctx : &po_cfg);
    if (!t->lv[0].ctx)
        return -ENOMEM;
    if (!poll)
        return 0;
    t->epfd = epoll_create1(EPOLL_CLOEXEC);
    t->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (t->epfd < 0 || t->wakefd < 0)
        return -errno;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0};
    if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->wakefd, &ev) < 0)
        return -errno;
    return 0;
}

int dp_thread_start(struct dp_thread *t)
{
    sigset_t all, old;
    sigfillset(&all);
    /* Poll threads never take signals: Python handles them in its main thread. */
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&t->tid, NULL, poll_main, t);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc)
        return -rc;
    t->started = true;
    return 0;
}

void dp_thread_wake(struct dp_thread *t)
{
    if (t->wakefd >= 0) {
        uint64_t one = 1;
        ssize_t r = write(t->wakefd, &one, sizeof one);
        (void)r;
    }
}

void dp_thread_destroy(struct dp_thread *t)
{
    if (t->started) {
        dp_thread_wake(t);
        pthread_join(t->tid, NULL);
        t->started = false;
    }
    for (unsigned d = 0; d <= VS_DP_MAX_DEPTH; d++) {
        vs_context_free(t->lv[d].ctx);
        free(t->lv[d].tx);
        scratch_free(&t->lv[d].scratch);
    }
    free(t->rx);
    if (t->epfd >= 0)
        close(t->epfd);
    if (t->wakefd >= 0)
        close(t->wakefd);
    memset(t, 0, sizeof *t);
    t->epfd = t->wakefd = -1;
}
