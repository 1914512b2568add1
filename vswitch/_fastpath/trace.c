/* trace.c -- explain one frame's way through the pipeline (for
 * `vswitchctl trace`): the translation the batch path would do, reported
 * table by table.  Runs under the pipeline's read lock like a batch. */
#include <stdlib.h>

#include "core.h"

int vs_pipeline_trace(struct vs_pipeline *p, const uint8_t *frame, uint32_t len,
                      uint32_t in_port, struct vs_trace_step *steps, uint32_t max,
                      struct vs_key *megaflow_mask)
{
    struct vs_key key;
    struct vs_layers layers;
    struct xlate_out *xo = calloc(1, sizeof *xo);
    if (!xo)
        return -1;
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
    }
    pthread_rwlock_unlock(&p->lock);
    free(xo->prog);
    free(xo);
    return n;
}
