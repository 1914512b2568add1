/* dp.c -- the datapath object: configuration, the port table, threads,
 * statistics, packet-out.  Design and THE LOCKING RULE: datapath.h.
 *
 * Every port-table writer (add/del port, VLAN and link changes, unhooking
 * patch ports in vs_dp_free) holds the global mutex g_mutex for the whole
 * operation, and the datapath's write lock around the table change itself.
 * So writers never hold a datapath lock while waiting for another one, and
 * at most one writer anywhere waits on a datapath lock: the argument for
 * patch ports (two read locks held at once) in datapath.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>

#include "dp_private.h"

static pthread_mutex_t g_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct vs_dp *g_dps;            /* all live datapaths */
static uint64_t g_port_id;             /* last port id handed out */

struct dp_port *dp_find_port(const struct vs_dp *dp, uint32_t port_no)
{
    uint32_t lo = 0, hi = dp->n_ports;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        uint32_t v = dp->ports[mid]->port_no;
        if (v == port_no)
            return dp->ports[mid];
        if (v < port_no)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

void dp_global_lock(void) { pthread_mutex_lock(&g_mutex); }
void dp_global_unlock(void) { pthread_mutex_unlock(&g_mutex); }

static bool dp_live(const struct vs_dp *dp)
{
    for (struct vs_dp *x = g_dps; x; x = x->next)
        if (x == dp)
            return true;
    return false;
}

/* ---- lifecycle --------------------------------------------------------------- */

static int check_config(struct vs_dp_config *c, struct vs_error *err)
{
    if (!c->n_threads)
        c->n_threads = 1;
    if (!c->batch_size)
        c->batch_size = 64;
    if (!c->busy_rounds)
        c->busy_rounds = 128;
    if (!c->upcall_queue_len)
        c->upcall_queue_len = 1024;
    if (!c->mac_aging_s)
        c->mac_aging_s = 300;
    if (!c->mac_max)
        c->mac_max = 8192;
    if (!c->ring_block_size)
        c->ring_block_size = 256 * 1024;
    if (!c->ring_block_nr)
        c->ring_block_nr = 16;
    if (!c->ring_tov_ms)
        c->ring_tov_ms = 1;
    if (!c->patch_max_depth)
        c->patch_max_depth = 4;
    struct vs_context_config *x = &c->ctx;
    if (!x->emc_entries && !x->emc_insert_inv_prob && !x->megaflow_max && !x->max_emits &&
        !x->max_upcalls) {
        x->emc_entries = 8192;
        x->emc_insert_inv_prob = 100;
        x->megaflow_max = 65536;
    }
    if (!x->max_emits)
        x->max_emits = 16 * VS_MAX_BATCH;
    if (!x->max_upcalls)
        x->max_upcalls = VS_MAX_BATCH;
    if (c->n_threads > VS_DP_MAX_THREADS)
        return dp_err(err, EINVAL, "n_threads %u > %u", c->n_threads, VS_DP_MAX_THREADS);
    if (c->batch_size > VS_MAX_BATCH)
        return dp_err(err, EINVAL, "batch_size %u > %u", c->batch_size, VS_MAX_BATCH);
    if (c->patch_max_depth > VS_DP_MAX_DEPTH)
        return dp_err(err, EINVAL, "patch_max_depth %u > %u", c->patch_max_depth,
                      VS_DP_MAX_DEPTH);
    if (c->ring_block_size < 4096 || (c->ring_block_size & (c->ring_block_size - 1)) ||
        c->ring_block_nr > 4096)
        return dp_err(err, EINVAL, "ring_block_size must be a power of two >= 4096 and "
                      "ring_block_nr <= 4096");
    if (c->upcall_queue_len > (1u << 24) || c->mac_max > (1u << 24))
        return dp_err(err, EINVAL, "upcall_queue_len and mac_max must be <= 2^24");
    if (x->emc_entries & (x->emc_entries - 1))
        return dp_err(err, EINVAL, "ctx.emc_entries must be a power of two");
    return 0;
}

static void dp_destroy(struct vs_dp *dp)
{
    DP_STORE(&dp->stop, 1);
    for (uint32_t i = 0; i < dp->n_threads; i++)
        dp_thread_destroy(&dp->threads[i]);
    free(dp->threads);
    for (uint32_t i = 0; i < dp->n_ports; i++) {
        struct dp_port *p = dp->ports[i];
        if (p->ops)
            p->ops->close(p);
        vs_pipeline_del_port(dp->pipeline, p->port_no);
        free(p);
    }
    free(dp->ports);
    if (dp->po) {
        dp_thread_destroy(dp->po);
        free(dp->po);
    }
    if (dp->po_pipeline)
        vs_pipeline_free(dp->po_pipeline);
    dp_fdb_free(dp->fdb);
    dp_upq_free(dp->upq);
    pthread_mutex_destroy(&dp->po_mutex);
    pthread_rwlock_destroy(&dp->lock);
    free(dp);
}

struct vs_dp *vs_dp_new(const struct vs_dp_config *cfg, struct vs_pipeline *pipeline,
                        struct vs_error *err)
{
    struct vs_dp_config c;
    memset(&c, 0, sizeof c);
    if (cfg)
        c = *cfg;
    if (!pipeline) {
        dp_err(err, EINVAL, "a pipeline is required");
        return NULL;
    }
    if (check_config(&c, err) < 0)
        return NULL;
    struct vs_dp *dp = calloc(1, sizeof *dp);
    if (!dp) {
        dp_err(err, ENOMEM, "out of memory");
        return NULL;
    }
    dp->cfg = c;
    dp->pipeline = pipeline;
    dp->aging_ns = (uint64_t)c.mac_aging_s * 1000000000ull;
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&dp->lock, &ra);
    pthread_rwlockattr_destroy(&ra);
    pthread_mutex_init(&dp->po_mutex, NULL);
    dp->fdb = dp_fdb_new(c.mac_max, dp->aging_ns);
    dp->upq = dp_upq_new(c.upcall_queue_len);
    dp->po_pipeline = vs_pipeline_new();
    dp->po = calloc(1, sizeof *dp->po);
    if (dp->po)
        dp->po->epfd = dp->po->wakefd = -1;
    dp->threads = calloc(c.n_threads, sizeof *dp->threads);
    if (!dp->fdb || !dp->upq || !dp->po_pipeline || !dp->po || !dp->threads) {
        dp_err(err, ENOMEM, "out of memory");
        goto fail;
    }
    for (uint32_t i = 0; i < c.n_threads; i++)
        dp->threads[i].epfd = dp->threads[i].wakefd = -1;
    if (dp_thread_init(dp->po, dp, UINT32_MAX, false) < 0) {
        dp_err(err, ENOMEM, "out of memory");
        goto fail;
    }
    dp->n_threads = c.n_threads;
    for (uint32_t i = 0; i < c.n_threads; i++) {
        int rc = dp_thread_init(&dp->threads[i], dp, i, true);
        if (rc < 0) {
            dp_err(err, -rc, "poll thread %u: %s", i, strerror(-rc));
            goto fail;
        }
    }
    for (uint32_t i = 0; i < c.n_threads; i++) {
        int rc = dp_thread_start(&dp->threads[i]);
        if (rc < 0) {
            dp_err(err, -rc, "pthread_create: %s", strerror(-rc));
            goto fail;
        }
    }
    pthread_mutex_lock(&g_mutex);
    dp->next = g_dps;
    g_dps = dp;
    pthread_mutex_unlock(&g_mutex);
    return dp;
fail:
    if (dp->threads)
        dp->n_threads = c.n_threads;   /* all initialised or with fds at -1 */
    dp_destroy(dp);
    return NULL;
}

void vs_dp_free(struct vs_dp *dp)
{
    if (!dp)
        return;
    pthread_mutex_lock(&g_mutex);
    for (struct vs_dp **pp = &g_dps; *pp; pp = &(*pp)->next) {
        if (*pp == dp) {
            *pp = dp->next;
            break;
        }
    }
    /* No thread may reach us through a patch port once this is done. */
    for (struct vs_dp *x = g_dps; x; x = x->next) {
        bool any = false;
        for (uint32_t i = 0; i < x->n_ports && !any; i++)
            any = x->ports[i]->type == VS_DP_PORT_PATCH && x->ports[i]->peer == dp;
        if (!any)
            continue;
        pthread_rwlock_wrlock(&x->lock);
        for (uint32_t i = 0; i < x->n_ports; i++)
            if (x->ports[i]->type == VS_DP_PORT_PATCH && x->ports[i]->peer == dp)
                x->ports[i]->peer = NULL;
        pthread_rwlock_unlock(&x->lock);
    }
    pthread_mutex_unlock(&g_mutex);
    dp_destroy(dp);
}

/* ---- ports -------------------------------------------------------------------- */

static uint32_t pipeline_flags(const struct dp_port *p)
{
    return (DP_LOAD(&p->link_up) ? VS_PORT_LIVE : 0) |
           ((p->flags & VS_DP_PF_NO_FLOOD) ? VS_PORT_NO_FLOOD : 0);
}

static void set_vlan(struct dp_port *p, uint32_t mode, uint32_t tag, const uint8_t *trunks)
{
    p->vlan_mode = mode;
    p->tag = (uint16_t)tag;
    p->trunks_all = 1;
    memset(p->trunks, 0, sizeof p->trunks);
    if (trunks) {
        for (size_t i = 0; i < sizeof p->trunks; i++) {
            if (trunks[i]) {
                p->trunks_all = 0;
                break;
            }
        }
        if (!p->trunks_all)
            memcpy(p->trunks, trunks, sizeof p->trunks);
    }
}

static bool valid_port_no(uint32_t n)
{
    return (n >= 1 && n < VS_OFPP_MAX) || n == VS_OFPP_LOCAL;
}

int vs_dp_add_port(struct vs_dp *dp, const struct vs_dp_port_config *cfg, struct vs_error *err)
{
    if (!valid_port_no(cfg->port_no))
        return dp_err(err, EINVAL, "bad port number %#x (1..0xfffffeff or LOCAL)",
                      cfg->port_no);
    if (cfg->vlan_mode > VS_DP_VLAN_NATIVE_TAGGED || cfg->tag > 4095)
        return dp_err(err, EINVAL, "port %u: bad VLAN mode %u or tag %u", cfg->port_no,
                      cfg->vlan_mode, cfg->tag);
    if (cfg->thread < -1 || cfg->thread >= (int32_t)dp->n_threads)
        return dp_err(err, EINVAL, "port %u: no poll thread %d", cfg->port_no, cfg->thread);
    switch (cfg->type) {
    case VS_DP_PORT_SYSTEM:
    case VS_DP_PORT_TAP:
    case VS_DP_PORT_INTERNAL:
        break;
    case VS_DP_PORT_PATCH:
        if (!cfg->peer || !valid_port_no(cfg->peer_port))
            return dp_err(err, EINVAL, "patch port %u: peer datapath and peer port required",
                          cfg->port_no);
        break;
    case VS_DP_PORT_AFXDP:             /* refused by dp_afxdp_open if not built */
    case VS_DP_PORT_VXLAN:             /* options checked by dp_vxlan_open */
        break;
    default:
        return dp_err(err, EINVAL, "port %u: unknown port type %u", cfg->port_no, cfg->type);
    }

    struct dp_port *p = calloc(1, sizeof *p);
    if (!p)
        return dp_err(err, ENOMEM, "out of memory");
    p->port_no = cfg->port_no;
    p->type = cfg->type;
    p->ifindex = cfg->ifindex;
    p->mtu = cfg->mtu;
    p->flags = cfg->flags;
    p->fd = -1;
    p->thread = -1;
    p->batch = dp->cfg.batch_size;
    memcpy(p->name, cfg->name, VS_DP_NAME_LEN);
    p->name[VS_DP_NAME_LEN - 1] = 0;
    set_vlan(p, cfg->vlan_mode, cfg->tag, cfg->trunks);

    int rc = 0;
    pthread_mutex_lock(&g_mutex);
    if (dp_find_port(dp, p->port_no)) {
        rc = dp_err(err, EEXIST, "port %u already exists", p->port_no);
        goto fail;
    }
    switch (p->type) {
    case VS_DP_PORT_SYSTEM:
        rc = dp_afpacket_open(dp, p, err);
        break;
    case VS_DP_PORT_TAP:
    case VS_DP_PORT_INTERNAL:
        rc = dp_tap_open(dp, p, err);
        break;
    case VS_DP_PORT_AFXDP:
        rc = dp_afxdp_open(dp, p, cfg, err);
        break;
    case VS_DP_PORT_VXLAN:
        rc = dp_vxlan_open(dp, p, cfg, err);
        break;
    case VS_DP_PORT_PATCH:
        if (!dp_live(cfg->peer)) {
            rc = dp_err(err, ENOENT, "patch port %u: the peer datapath does not exist",
                        p->port_no);
            break;
        }
        p->peer = cfg->peer;
        p->peer_port = cfg->peer_port;
        p->link_up = 1;
        p->mtu = 65535 - 22;
        p->max_frame = VS_DP_MAX_FRAME;
        break;
    }
    if (rc < 0)
        goto fail;

    struct dp_thread *t = NULL;
    if (p->fd >= 0) {
        if (cfg->thread >= 0) {
            t = &dp->threads[cfg->thread];
        } else {
            t = &dp->threads[0];
            for (uint32_t i = 1; i < dp->n_threads; i++)
                if (dp->threads[i].n_rx < t->n_rx)
                    t = &dp->threads[i];
        }
        p->thread = (int32_t)t->idx;
    }
    p->id = ++g_port_id;

    pthread_rwlock_wrlock(&dp->lock);
    if (dp->n_ports == dp->cap_ports) {
        uint32_t cap = dp->cap_ports ? 2 * dp->cap_ports : 16;
        struct dp_port **n = realloc(dp->ports, cap * sizeof *n);
        if (!n) {
            rc = dp_err(err, ENOMEM, "out of memory");
            goto unlock;
        }
        dp->ports = n;
        dp->cap_ports = cap;
    }
    if (t && t->n_rx == t->cap_rx) {
        uint32_t cap = t->cap_rx ? 2 * t->cap_rx : 8;
        struct dp_port **n = realloc(t->rx, cap * sizeof *n);
        if (!n) {
            rc = dp_err(err, ENOMEM, "out of memory");
            goto unlock;
        }
        t->rx = n;
        t->cap_rx = cap;
    }
    if (vs_pipeline_set_port(dp->pipeline, p->port_no, pipeline_flags(p)) < 0 ||
        vs_pipeline_set_port(dp->po_pipeline, p->port_no, pipeline_flags(p)) < 0) {
        vs_pipeline_del_port(dp->pipeline, p->port_no);
        rc = dp_err(err, EINVAL, "port %u: the pipeline refused it", p->port_no);
        goto unlock;
    }
    if (t) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = p->id};
        if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, p->fd, &ev) < 0) {
            rc = dp_err(err, errno, "port %u: epoll: %s", p->port_no, strerror(errno));
            vs_pipeline_del_port(dp->pipeline, p->port_no);
            vs_pipeline_del_port(dp->po_pipeline, p->port_no);
            goto unlock;
        }
        t->rx[t->n_rx++] = p;
    }
    uint32_t i = dp->n_ports;
    while (i > 0 && dp->ports[i - 1]->port_no > p->port_no) {
        dp->ports[i] = dp->ports[i - 1];
        i--;
    }
    dp->ports[i] = p;
    dp->n_ports++;
unlock:
    pthread_rwlock_unlock(&dp->lock);
    if (t)
        dp_thread_wake(t);             /* frames may already be waiting */
    if (rc < 0)
        goto fail;
    pthread_mutex_unlock(&g_mutex);
    return 0;
fail:
    pthread_mutex_unlock(&g_mutex);
    if (p->ops)
        p->ops->close(p);
    free(p);
    return rc;
}

int vs_dp_del_port(struct vs_dp *dp, uint32_t port_no)
{
    pthread_mutex_lock(&g_mutex);
    pthread_rwlock_wrlock(&dp->lock);
    struct dp_port *p = dp_find_port(dp, port_no);
    if (!p) {
        pthread_rwlock_unlock(&dp->lock);
        pthread_mutex_unlock(&g_mutex);
        return -ENOENT;
    }
    uint32_t i = 0;
    while (dp->ports[i] != p)
        i++;
    memmove(&dp->ports[i], &dp->ports[i + 1], (dp->n_ports - i - 1) * sizeof *dp->ports);
    dp->n_ports--;
    if (p->thread >= 0) {
        struct dp_thread *t = &dp->threads[p->thread];
        for (uint32_t j = 0; j < t->n_rx; j++) {
            if (t->rx[j] == p) {
                memmove(&t->rx[j], &t->rx[j + 1], (t->n_rx - j - 1) * sizeof *t->rx);
                t->n_rx--;
                break;
            }
        }
        epoll_ctl(t->epfd, EPOLL_CTL_DEL, p->fd, NULL);
    }
    vs_pipeline_del_port(dp->pipeline, port_no);
    vs_pipeline_del_port(dp->po_pipeline, port_no);
    pthread_rwlock_unlock(&dp->lock);
    /* No round can see the port any more: nobody learns on it again. */
    dp_fdb_flush_port(dp->fdb, port_no);
    if (p->ops)
        p->ops->close(p);
    free(p);
    pthread_mutex_unlock(&g_mutex);
    return 0;
}

int vs_dp_set_port_link(struct vs_dp *dp, uint32_t port_no, uint32_t up)
{
    pthread_mutex_lock(&g_mutex);      /* the table cannot change under us */
    struct dp_port *p = dp_find_port(dp, port_no);
    if (!p) {
        pthread_mutex_unlock(&g_mutex);
        return -ENOENT;
    }
    DP_STORE(&p->link_up, up ? 1u : 0u);
    vs_pipeline_set_port(dp->pipeline, port_no, pipeline_flags(p));
    vs_pipeline_set_port(dp->po_pipeline, port_no, pipeline_flags(p));
    if (!up)
        dp_fdb_flush_port(dp->fdb, port_no);
    pthread_mutex_unlock(&g_mutex);
    return 0;
}

int vs_dp_set_port_vlan(struct vs_dp *dp, uint32_t port_no, uint32_t vlan_mode, uint32_t tag,
                        const uint8_t *trunks)
{
    if (vlan_mode > VS_DP_VLAN_NATIVE_TAGGED || tag > 4095)
        return -EINVAL;
    pthread_mutex_lock(&g_mutex);
    pthread_rwlock_wrlock(&dp->lock);
    struct dp_port *p = dp_find_port(dp, port_no);
    if (p)
        set_vlan(p, vlan_mode, tag, trunks);
    pthread_rwlock_unlock(&dp->lock);
    if (p)
        dp_fdb_flush_port(dp->fdb, port_no);
    pthread_mutex_unlock(&g_mutex);
    return p ? 0 : -ENOENT;
}

int vs_dp_port_info(struct vs_dp *dp, uint32_t port_no, struct vs_dp_port_info *out)
{
    pthread_rwlock_rdlock(&dp->lock);
    struct dp_port *p = dp_find_port(dp, port_no);
    if (p) {
        memset(out, 0, sizeof *out);
        out->port_no = p->port_no;
        out->type = p->type;
        out->ifindex = p->ifindex;
        out->mtu = p->mtu;
        out->thread = p->thread;
        out->link_up = DP_LOAD(&p->link_up) && !DP_LOAD(&p->dead);
        out->flags = p->flags;
        out->vlan_mode = p->vlan_mode;
        out->tag = p->tag;
        out->peer_port = p->peer_port;
        out->peer_attached = p->peer != NULL;
        memcpy(out->name, p->name, VS_DP_NAME_LEN);
        if (p->type == VS_DP_PORT_AFXDP)
            dp_afxdp_info(p, out);
    }
    pthread_rwlock_unlock(&dp->lock);
    return p ? 0 : -ENOENT;
}

int vs_dp_port_stats(struct vs_dp *dp, uint32_t port_no, struct vs_dp_port_stats *out)
{
    pthread_rwlock_rdlock(&dp->lock);
    struct dp_port *p = dp_find_port(dp, port_no);
    if (p) {
        if (p->type == VS_DP_PORT_SYSTEM)
            dp_afpacket_poll_stats(p);
        else if (p->type == VS_DP_PORT_AFXDP)
            dp_afxdp_poll_stats(p);
        const uint64_t *src = (const uint64_t *)&p->st;
        uint64_t *dst = (uint64_t *)out;
        for (size_t i = 0; i < sizeof *out / sizeof(uint64_t); i++)
            dst[i] = DP_LOAD(&src[i]);
    }
    pthread_rwlock_unlock(&dp->lock);
    return p ? 0 : -ENOENT;
}

size_t vs_dp_port_list(struct vs_dp *dp, uint32_t *out, size_t max)
{
    pthread_rwlock_rdlock(&dp->lock);
    size_t n = dp->n_ports;
    for (size_t i = 0; i < n && i < max; i++)
        out[i] = dp->ports[i]->port_no;
    pthread_rwlock_unlock(&dp->lock);
    return n;
}

/* ---- statistics ------------------------------------------------------------------ */

uint32_t vs_dp_n_threads(struct vs_dp *dp) { return dp->n_threads; }

int vs_dp_thread_stats(struct vs_dp *dp, uint32_t idx, struct vs_dp_thread_stats *out)
{
    if (idx >= dp->n_threads)
        return -ENOENT;
    struct dp_thread *t = &dp->threads[idx];
    const uint64_t *src = (const uint64_t *)&t->st;
    uint64_t *dst = (uint64_t *)out;
    size_t n64 = offsetof(struct vs_dp_thread_stats, n_rxq) / sizeof(uint64_t);
    for (size_t i = 0; i < n64; i++)
        dst[i] = DP_LOAD(&src[i]);
    pthread_rwlock_rdlock(&dp->lock);
    out->n_rxq = t->n_rx;
    pthread_rwlock_unlock(&dp->lock);
    out->pad = 0;
    return 0;
}

void vs_dp_get_stats(struct vs_dp *dp, struct vs_dp_stats *s)
{
    memset(s, 0, sizeof *s);
    pthread_rwlock_rdlock(&dp->lock);
    s->n_ports = dp->n_ports;
    pthread_rwlock_unlock(&dp->lock);
    s->n_threads = dp->n_threads;
    s->upcall_queued = dp_upq_len(dp->upq);
    s->upcalls = DP_LOAD(&dp->upcalls);
    s->upcall_drops = DP_LOAD(&dp->upcall_drops);
    dp_fdb_counts(dp->fdb, s);
    s->normal_packets = DP_LOAD(&dp->normal_packets);
    s->normal_floods = DP_LOAD(&dp->normal_floods);
    s->normal_drops = DP_LOAD(&dp->normal_drops);
    s->tx_no_port = DP_LOAD(&dp->tx_no_port);
    s->patch_loop_drops = DP_LOAD(&dp->patch_loop_drops);
    s->staging_drops = DP_LOAD(&dp->staging_drops);
    s->sflow_samples = DP_LOAD(&dp->sflow_samples);
    s->sflow_drops = DP_LOAD(&dp->sflow_drops);
}

size_t vs_dp_fdb_dump(struct vs_dp *dp, struct vs_dp_fdb_entry *out, size_t max)
{
    return dp_fdb_dump(dp->fdb, out, out ? max : 0, dp_now_ns());
}

void vs_dp_fdb_flush(struct vs_dp *dp, uint32_t port)
{
    dp_fdb_flush_port(dp->fdb, port);
}

/* ---- upcalls and packet-out -------------------------------------------------------- */

int vs_dp_upcall_fd(struct vs_dp *dp) { return dp_upq_fd(dp->upq); }

int vs_dp_recv_upcall(struct vs_dp *dp, struct vs_dp_upcall *u, uint8_t *buf, uint32_t buflen)
{
    return dp_upq_pop(dp->upq, u, buf, buflen);
}

static void pin(struct vs_flow_mod *fm, const struct vs_key *k, size_t off, size_t len,
                const uint8_t *mask)
{
    memcpy((uint8_t *)&fm->match + off, (const uint8_t *)k + off, len);
    memcpy((uint8_t *)&fm->mask + off, mask, len);
    for (size_t i = 0; i < len; i++)
        ((uint8_t *)&fm->match)[off + i] &= mask[i];
}

int vs_dp_packet_out(struct vs_dp *dp, uint32_t in_port, const uint8_t *actions,
                     uint32_t actions_len, const uint8_t *frame, uint32_t flen,
                     struct vs_error *err)
{
    static const uint8_t ff[2] = {0xff, 0xff}, vid_mask[2] = {0x1f, 0xff};
    if (flen < 14 || flen > VS_DP_MAX_FRAME)
        return dp_err(err, EINVAL, "packet-out: frame length %u outside 14..%u", flen,
                      VS_DP_MAX_FRAME);
    if (actions_len % 8 || actions_len > 65536 - 8)
        return dp_err(err, EINVAL, "packet-out: bad action list length %u", actions_len);
    uint8_t *ins = malloc(8 + (size_t)actions_len);
    if (!ins)
        return dp_err(err, ENOMEM, "out of memory");
    /* One apply-actions instruction around a copy of the list, with
     * OUTPUT:TABLE pointed at our private port. */
    struct vs_op hdr = {.type = VS_I_APPLY, .len = (uint16_t)(8 + actions_len), .arg = 0};
    memcpy(ins, &hdr, 8);
    if (actions_len)
        memcpy(ins + 8, actions, actions_len);
    for (uint32_t off = 0; off < actions_len;) {
        struct vs_op op;
        memcpy(&op, ins + 8 + off, sizeof op);
        if (op.len < 8 || op.len % 8 || op.len > actions_len - off)
            break;                     /* the pipeline reports it */
        if (op.type == VS_A_OUTPUT && op.arg == VS_DP_PORT_RESERVED) {
            free(ins);
            if (err) {
                err->type = VS_OFPET_BAD_ACTION;
                err->code = 4;         /* OFPBAC_BAD_OUT_PORT */
                snprintf(err->msg, sizeof err->msg, "output to port %#x", op.arg);
            }
            return -EINVAL;
        }
        if (op.type == VS_A_OUTPUT && op.arg == VS_OFPP_TABLE) {
            op.arg = VS_DP_PORT_RESERVED;
            memcpy(ins + 8 + off, &op, sizeof op);
        }
        off += op.len;
    }

    /* The rule's match pins what the frame has, so that set_field
     * prerequisites (eth_type, ip_proto, ICMPv6 type, VLAN) hold. */
    struct vs_key key;
    struct vs_layers layers;
    vs_parse(frame, flen, in_port, &key, &layers);
    struct vs_flow_mod fm;
    memset(&fm, 0, sizeof fm);
    fm.command = VS_FC_ADD;
    fm.priority = 1;
    fm.out_port = VS_OFPP_ANY;
    fm.out_group = VS_OFPG_ANY;
    fm.instructions = ins;
    fm.instructions_len = 8 + actions_len;
    uint16_t et = dp_be16(key.eth_type);
    if (et)
        pin(&fm, &key, offsetof(struct vs_key, eth_type), 2, ff);
    if (dp_be16(key.vlan_vid))
        pin(&fm, &key, offsetof(struct vs_key, vlan_vid), 2, vid_mask);
    if (et == 0x0800 || et == 0x86dd) {
        pin(&fm, &key, offsetof(struct vs_key, ip_proto), 1, ff);
        if (et == 0x86dd && key.ip_proto == 58)
            pin(&fm, &key, offsetof(struct vs_key, icmp_type), 1, ff);
    }

    pthread_mutex_lock(&dp->po_mutex);
    struct vs_flow_mod del;
    memset(&del, 0, sizeof del);
    del.command = VS_FC_DELETE;
    del.out_port = VS_OFPP_ANY;
    del.out_group = VS_OFPG_ANY;
    struct vs_error e2;
    vs_pipeline_flow_mod(dp->po_pipeline, &del, &e2);
    struct vs_error e;
    memset(&e, 0, sizeof e);
    int rc = vs_pipeline_flow_mod(dp->po_pipeline, &fm, &e);
    free(ins);
    if (rc < 0) {
        pthread_mutex_unlock(&dp->po_mutex);
        if (err)
            *err = e;
        return -EINVAL;
    }
    pthread_rwlock_rdlock(&dp->lock);
    struct dp_thread *t = dp->po;
    t->held[0] = dp;
    t->n_held = 1;
    t->lv[0].frames[0] = frame;
    t->lv[0].lens[0] = flen;
    t->lv[0].in_ports[0] = in_port;
    memset(&t->lv[0].md[0], 0, sizeof t->lv[0].md[0]);
    dp_run_batch(t, dp, dp->po_pipeline, 0, 1, true);
    t->n_held = 0;
    pthread_rwlock_unlock(&dp->lock);
    pthread_mutex_unlock(&dp->po_mutex);
    return 0;
}
