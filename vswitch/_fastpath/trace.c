/* trace.c -- explain one frame's way through the pipeline (for
 * `vswitchctl trace`): the translation the batch path would do, reported
 * table by table, then the program run on the frame as a dry run (no
 * counters, no meters).  Runs under the pipeline's read lock like a batch. */
#include <stdlib.h>

#include "core.h"

#define TRACE_MAX_EMITS 256
#define TRACE_MAX_UPCALLS 64

static void run_dry(const struct vs_pipeline *p, const uint8_t *frame, uint32_t len,
                    uint32_t in_port, const struct vs_key *key, const struct vs_layers *layers,
                    const struct xlate_out *xo, struct vs_trace_output *outs,
                    uint32_t max_outs, uint32_t *n_outs)
{
    struct vs_emit emits[TRACE_MAX_EMITS];
    struct vs_upcall upcalls[TRACE_MAX_UPCALLS];
    struct vs_batch_result res = {0, 0, emits, upcalls};
    struct vs_context_stats stats = {0};
    struct arena arena = {0};
    struct exec_ctx x = {.p = p, .pkt_arena = &arena, .out = &res,
                         .max_emits = TRACE_MAX_EMITS, .max_upcalls = TRACE_MAX_UPCALLS,
                         .stats = &stats, .now = now_ns(), .dry_run = 1};
    struct pkt_state ps = {.data = (uint8_t *)frame, .len = len, .in_port = in_port,
                           .idx = 0, .key = key, .L = *layers,
                           .tun_id = be64(key->tunnel_id)};
    memcpy(ps.tun_dst, key->tun_ipv4_dst, 4);
    execute(&x, &ps, xo->prog, xo->len);
    uint32_t n = 0;
    for (uint32_t i = 0; i < res.n_emits && n < max_outs; i++, n++) {
        memset(&outs[n], 0, sizeof outs[n]);
        outs[n].port = emits[i].port;
        outs[n].queue = emits[i].queue;
        outs[n].len = emits[i].len;
    }
    for (uint32_t i = 0; i < res.n_upcalls && n < max_outs; i++, n++) {
        memset(&outs[n], 0, sizeof outs[n]);
        outs[n].is_upcall = 1;
        outs[n].reason = upcalls[i].reason;
        outs[n].table_id = upcalls[i].table_id;
        outs[n].cookie = upcalls[i].cookie;
        outs[n].len = upcalls[i].len;
    }
    *n_outs = n;
    arena_free(&arena);
}

int vs_pipeline_trace(struct vs_pipeline *p, const uint8_t *frame, uint32_t len,
                      uint32_t in_port, struct vs_trace_step *steps, uint32_t max,
                      struct vs_key *megaflow_mask, struct vs_trace_output *outs,
                      uint32_t max_outs, uint32_t *n_outs)
{
    struct vs_key key;
    struct vs_layers layers;
    struct xlate_out *xo = calloc(1, sizeof *xo);
    if (!xo)
        return -1;
    if (n_outs)
        *n_outs = 0;
    vs_parse(frame, len, in_port, &key, &layers);
    pthread_rwlock_rdlock(&p->lock);
    int n = -1;
    if (xlate(p, &key, xo) == 0) {
        n = 0;
        for (uint32_t i = 0; i < xo->n_lookups && (uint32_t)n < max; i++, n++) {
            const struct vs_rule *r = xo->lookups[i].rule;
            struct vs_trace_step *s = &steps[n];
            memset(s, 0, sizeof *s);
            s->table_id = xo->lookups[i].table_id;
            if (r) {
                s->matched = 1;
                s->priority = (uint16_t)r->cr.priority;
                s->cookie = r->cookie;
                s->match = r->cr.key;
                s->mask = r->cr.st->mask;
            }
        }
        if (megaflow_mask)
            *megaflow_mask = xo->wc;
        if (outs && n_outs)
            run_dry(p, frame, len, in_port, &key, &layers, xo, outs, max_outs, n_outs);
    }
    pthread_rwlock_unlock(&p->lock);
    free(xo->prog);
    free(xo);
    return n;
}
