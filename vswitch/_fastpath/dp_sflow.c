/* dp_sflow.c -- sFlow packet sampling in the poll threads.
 *
 * Every frame a poll thread receives from a port (level 0: not frames
 * injected through patch ports, which their own datapath sampled) is picked
 * with probability 1/rate, independently of every other frame: a
 * per-thread xorshift64* draw per frame, so neither batching nor the port
 * mix biases the count.  The port's sflow_pool counts the frames seen
 * while sampling is on (the sFlow sample_pool); a pick the upcall queue
 * has no room for is counted in the port's sflow_drops (the sFlow drops),
 * and both travel in every sample, so a collector sees exactly what was
 * seen and what was lost.
 *
 * Life of a pick (all in the owning poll thread, under the datapath read
 * lock, so the frame and the staged emits are still valid):
 *   dp_sflow_pick   before the pipeline: choose the batch indexes
 *   dp_sflow_note   in the emit loop: what each picked frame became
 *   dp_sflow_flush  before the staged frames are sent: queue the samples
 * With sampling off the cost is the one `rate == 0` test per batch. */
#define _GNU_SOURCE
#include <errno.h>
#include <time.h>

#include "dp_private.h"

int vs_dp_set_sflow(struct vs_dp *dp, uint32_t rate, uint32_t header_bytes)
{
    if (rate && (header_bytes == 0 || header_bytes > VS_DP_SFLOW_MAX_HEADER))
        return -EINVAL;
    /* Header first: a thread that sees the new rate sees a valid size. */
    DP_STORE(&dp->sflow_header, header_bytes ? header_bytes : 128);
    DP_STORE(&dp->sflow_rate, rate);
    return 0;
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

void dp_sflow_pick(struct dp_thread *t, struct vs_dp *dp, struct dp_port *p, uint32_t n)
{
    struct dp_sflow_thread *s = &t->sflow;
    s->port = NULL;
    s->n = 0;
    uint32_t rate = DP_LOAD(&dp->sflow_rate);
    if (!rate)
        return;
    DP_ADD(&p->st.sflow_pool, n);
    if (!s->rng) {
        s->rng = dp_now_ns() ^ ((uint64_t)(t->idx + 1) << 40) ^ (uintptr_t)t;
        if (!s->rng)
            s->rng = 0x9E3779B97F4A7C15ull;
    }
    /* P(pick) = floor(2^32 / rate) / 2^32: 1/rate within 2^-32. */
    uint64_t threshold = (1ull << 32) / rate;      /* 2^32 for rate 1: always */
    for (uint32_t i = 0; i < n; i++) {
        if ((rng_next(&s->rng) >> 32) < threshold) {
            s->slot[i] = (int16_t)s->n;
            s->picks[s->n++] = (struct dp_sflow_pick){.pkt = i};
        } else {
            s->slot[i] = -1;
        }
    }
    if (s->n)
        s->port = p;
}

void dp_sflow_note(struct dp_thread *t, const struct dp_level *L, uint32_t pkt, uint32_t from,
                   uint32_t flags)
{
    struct dp_sflow_thread *s = &t->sflow;
    if (pkt >= VS_MAX_BATCH || s->slot[pkt] < 0)
        return;
    struct dp_sflow_pick *k = &s->picks[s->slot[pkt]];
    k->flags |= flags;
    for (uint32_t j = from; j < L->n_tx; j++) {
        if (k->n_out++ == 0) {
            k->out_port = L->tx[j].port->port_no;
            k->out_data = L->tx[j].data;
            k->out_len = L->tx[j].len;
        }
    }
}

/* The VLAN a frame is in on port p: its 802.1Q tag, else the port's access
 * or native VLAN, else 0. */
static uint16_t frame_vlan(const struct dp_port *p, const uint8_t *f, uint32_t len)
{
    if (f && len >= 16 && dp_be16(f + 12) == 0x8100)
        return dp_be16(f + 14) & 0x0fff;
    if (p && p->vlan_mode != VS_DP_VLAN_TRUNK)
        return p->tag;
    return 0;
}

void dp_sflow_flush(struct dp_thread *t, struct vs_dp *dp, const struct dp_level *L)
{
    struct dp_sflow_thread *s = &t->sflow;
    struct dp_port *in = s->port;
    if (!in)
        return;
    uint32_t hdr = DP_LOAD(&dp->sflow_header);
    uint64_t ok = 0, lost = 0;
    for (uint32_t i = 0; i < s->n; i++) {
        const struct dp_sflow_pick *k = &s->picks[i];
        const uint8_t *f = L->frames[k->pkt];
        uint32_t len = L->lens[k->pkt];
        struct vs_dp_upcall u = {
            .kind = VS_DP_UPCALL_SFLOW,
            .in_port = in->port_no,
            .len = len,
            .sflow_rate = DP_LOAD(&dp->sflow_rate),
            .sflow_n_out = k->n_out,
            .sflow_out_port = k->n_out == 1 ? k->out_port : 0,
            .sflow_vlan_in = frame_vlan(in, f, len),
            .sflow_flags = k->flags,
        };
        if (k->n_out) {
            /* out_port is a staged port, alive under our read lock. */
            const struct dp_port *op = dp_find_port(dp, k->out_port);
            u.sflow_vlan_out = frame_vlan(op, k->out_data, k->out_len);
        }
        /* pool and drops as of this sample: this one counted in the pool,
         * and a loss of it counted before the next sample reads drops. */
        u.sflow_pool = DP_LOAD(&in->st.sflow_pool);
        u.sflow_drops = DP_LOAD(&in->st.sflow_drops);
        if (dp_upq_push_raw(dp->upq, &u, f, len < hdr ? len : hdr) == 0) {
            ok++;
        } else {
            lost++;
            DP_ADD(&in->st.sflow_drops, 1);
        }
    }
    if (ok)
        DP_ADD(&dp->sflow_samples, ok);
    if (lost)
        DP_ADD(&dp->sflow_drops, lost);
    s->port = NULL;
    s->n = 0;
}
