/* dp_upcall.c -- the bounded upcall queue between poll threads and the
 * control plane.  A FIFO of heap copies under a mutex; an eventfd tells
 * the reader to come (written at most once until the queue is empty again,
 * drained on the last pop, both under the mutex).  It is written when a
 * controller upcall is queued (packet-ins are urgent), or when sFlow
 * samples fill an eighth of the queue: a sample can wait for the reader's
 * periodic drain, and not waking it for every one saves the poll thread a
 * wake-up (a syscall and an IPI) per sample. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "dp_private.h"

struct upq_item {
    struct vs_dp_upcall u;
    uint32_t dlen;                 /* bytes in data (u.len may be larger: sFlow) */
    uint8_t data[];
};

struct dp_upq {
    pthread_mutex_t mu;
    struct upq_item **items;
    uint32_t cap, head, n;
    uint32_t wake_at;              /* samples queued that make the fd readable */
    bool signaled;                 /* efd written since the queue was last empty */
    int efd;
};

struct dp_upq *dp_upq_new(uint32_t cap)
{
    struct dp_upq *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->cap = cap;
    q->wake_at = cap / 8 ? cap / 8 : 1;
    q->items = calloc(cap, sizeof *q->items);
    q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!q->items || q->efd < 0) {
        if (q->efd >= 0)
            close(q->efd);
        free(q->items);
        free(q);
        return NULL;
    }
    pthread_mutex_init(&q->mu, NULL);
    return q;
}

void dp_upq_free(struct dp_upq *q)
{
    if (!q)
        return;
    for (uint32_t i = 0; i < q->n; i++)
        free(q->items[(q->head + i) % q->cap]);
    free(q->items);
    close(q->efd);
    pthread_mutex_destroy(&q->mu);
    free(q);
}

int dp_upq_fd(struct dp_upq *q) { return q->efd; }

uint32_t dp_upq_len(struct dp_upq *q)
{
    pthread_mutex_lock(&q->mu);
    uint32_t n = q->n;
    pthread_mutex_unlock(&q->mu);
    return n;
}

int dp_upq_push(struct dp_upq *q, const struct vs_upcall *up)
{
    uint32_t len = up->len > VS_DP_MAX_FRAME ? VS_DP_MAX_FRAME : up->len;
    struct vs_dp_upcall u = {
        .kind = VS_DP_UPCALL_CONTROLLER,
        .in_port = up->in_port,
        .reason = up->reason,
        .table_id = up->table_id,
        .max_len = up->max_len,
        .cookie = up->cookie,
        .metadata = up->metadata,
        .tunnel_id = up->tunnel_id,
        .len = len,
    };
    return dp_upq_push_raw(q, &u, up->data, len);
}

int dp_upq_push_raw(struct dp_upq *q, const struct vs_dp_upcall *u, const uint8_t *data,
                    uint32_t len)
{
    if (len > VS_DP_MAX_FRAME)
        len = VS_DP_MAX_FRAME;
    struct upq_item *it = malloc(sizeof *it + len);
    if (!it)
        return -1;
    it->u = *u;
    it->u.copied = 0;
    it->dlen = len;
    memcpy(it->data, data, len);

    pthread_mutex_lock(&q->mu);
    if (q->n >= q->cap) {
        pthread_mutex_unlock(&q->mu);
        free(it);
        return -1;
    }
    q->items[(q->head + q->n) % q->cap] = it;
    q->n++;
    if (!q->signaled && (u->kind != VS_DP_UPCALL_SFLOW || q->n >= q->wake_at)) {
        q->signaled = true;
        uint64_t one = 1;
        ssize_t r = write(q->efd, &one, sizeof one);
        (void)r;
    }
    pthread_mutex_unlock(&q->mu);
    return 0;
}

int dp_upq_pop(struct dp_upq *q, struct vs_dp_upcall *u, uint8_t *buf, uint32_t buflen)
{
    pthread_mutex_lock(&q->mu);
    if (!q->n) {
        pthread_mutex_unlock(&q->mu);
        return 0;
    }
    struct upq_item *it = q->items[q->head];
    q->items[q->head] = NULL;
    q->head = (q->head + 1) % q->cap;
    if (--q->n == 0 && q->signaled) {
        q->signaled = false;
        uint64_t v;
        ssize_t r = read(q->efd, &v, sizeof v);
        (void)r;
    }
    pthread_mutex_unlock(&q->mu);
    *u = it->u;
    u->copied = it->dlen < buflen ? it->dlen : buflen;
    if (buf && u->copied)
        memcpy(buf, it->data, u->copied);
    else
        u->copied = 0;
    free(it);
    return 1;
}
