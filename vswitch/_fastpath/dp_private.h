/* dp_private.h -- internals shared by the datapath's C files (dp_*.c); not
 * part of the cffi interface.  The design and THE LOCKING RULE are in
 * datapath.h. */
#ifndef VSWITCH_DP_PRIVATE_H
#define VSWITCH_DP_PRIVATE_H

#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "fastpath.h"
#include "datapath.h"

#define DP_ADD(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)
#define DP_LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define DP_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)

static inline uint64_t dp_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
static inline uint16_t dp_be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline void dp_put16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = v & 0xff; }

/* Fills err (if any) and returns -errnum. */
int dp_err(struct vs_error *err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- ports ----------------------------------------------------------------- */
struct dp_port;
struct dp_port_ops {
    /* Receive up to max frames (owner thread only, under the read lock).
     * The frames stay valid until rx_done. */
    uint32_t (*rx)(struct dp_port *, const uint8_t **frames, uint32_t *lens, uint32_t max);
    void (*rx_done)(struct dp_port *);
    /* Transmit (any thread, under the read lock). */
    void (*tx)(struct dp_port *, const uint8_t *const *frames, const uint32_t *lens, uint32_t n);
    /* The fd reported EPOLLERR/EPOLLHUP (owner thread, under the read lock). */
    void (*error)(struct dp_port *);
    void (*close)(struct dp_port *);
    /* Tunnel ports only (NULL elsewhere).  rx_meta: after rx, the in_port
     * (a tunnel port may receive for others sharing its socket) and the
     * tunnel metadata of each of the n frames it returned.  tx_tun: tx,
     * with each frame's tunnel_id and tun_ipv4_dst (network order). */
    void (*rx_meta)(struct dp_port *, uint32_t *in_ports, struct vs_tun_md *md, uint32_t n);
    void (*tx_tun)(struct dp_port *, const uint8_t *const *frames, const uint32_t *lens,
                   const uint64_t *tun_ids, const uint32_t *tun_dsts, uint32_t n);
};

struct dp_port {
    uint32_t port_no;
    uint32_t type;
    uint32_t ifindex;
    uint32_t mtu;
    uint32_t max_frame;                /* mtu + 14 + 8 */
    char name[VS_DP_NAME_LEN];
    uint64_t id;                       /* unique, never reused: epoll data */
    int fd;                            /* -1: none (patch) */
    int32_t thread;                    /* receiving thread, -1 none */
    uint32_t link_up;                  /* atomic */
    uint32_t dead;                     /* receive disabled after a fatal error (atomic) */
    uint32_t flags;                    /* VS_DP_PF_* */
    uint32_t batch;                    /* receive batch size */
    /* VLAN configuration (changed only under the write lock). */
    uint32_t vlan_mode;
    uint16_t tag;
    uint8_t trunks_all;
    uint8_t trunks[512];
    /* patch */
    struct vs_dp *peer;                /* NULL once the peer is freed */
    uint32_t peer_port;
    const struct dp_port_ops *ops;
    void *priv;
    struct vs_dp_port_stats st;        /* relaxed atomics */
};

/* ---- sFlow sampling (dp_sflow.c) --------------------------------------------- */
/* Per poll thread: which frames of the level-0 batch in flight were picked
 * and what the emit loop saw them become.  Owned by the thread alone. */
struct dp_sflow_pick {
    uint32_t pkt;                      /* index in the batch */
    uint32_t n_out, out_port;
    const uint8_t *out_data;           /* first output frame (for its VLAN) */
    uint32_t out_len;
    uint32_t flags;                    /* VS_DP_SFLOW_F_* */
};
struct dp_sflow_thread {
    uint64_t rng;                      /* xorshift64* state, never 0 */
    struct dp_port *port;              /* the batch's input port; NULL: none picked */
    uint32_t n;
    int16_t slot[VS_MAX_BATCH];        /* batch index -> picks[] or -1 */
    struct dp_sflow_pick picks[VS_MAX_BATCH];
};

int dp_afpacket_open(struct vs_dp *, struct dp_port *, struct vs_error *);
int dp_tap_open(struct vs_dp *, struct dp_port *, struct vs_error *);
void dp_afpacket_poll_stats(struct dp_port *);   /* control thread, read lock */
/* dp_port_afxdp.c (refuses with "not built" without VS_HAVE_AFXDP). */
int dp_afxdp_open(struct vs_dp *, struct dp_port *, const struct vs_dp_port_config *,
                  struct vs_error *);
void dp_afxdp_poll_stats(struct dp_port *);      /* control thread, read lock */
void dp_afxdp_info(struct dp_port *, struct vs_dp_port_info *);
/* dp_port_vxlan.c */
int dp_vxlan_open(struct vs_dp *, struct dp_port *, const struct vs_dp_port_config *,
                  struct vs_error *);
/* Hold g_mutex (dp.c): a port-table writer that is not in dp.c. */
void dp_global_lock(void);
void dp_global_unlock(void);

/* dp_util.c: netdev ioctls (0 or -errno) and frame helpers. */
int dp_netdev_name(uint32_t ifindex, char name[VS_DP_NAME_LEN]);
int dp_netdev_mtu(const char *name, uint32_t *mtu);
int dp_netdev_set_mtu(const char *name, uint32_t mtu);
int dp_netdev_flags(const char *name, uint32_t *flags);
int dp_netdev_set_up(const char *name);
int dp_netdev_link(const char *name, uint32_t *up);   /* admin up and carrier */
/* A port on a kernel device (system, afxdp): find it by ifindex or name, fill
 * in both, the MTU, max_frame (MTU + Ethernet + two VLAN tags) and the link
 * state.  kind names the port type in errors.  0, or -errno with err set. */
int dp_netdev_attach(struct dp_port *, const char *kind, struct vs_error *err);
/* One's complement sums (RFC 1071): add big-endian 16-bit words; fold. */
uint32_t dp_sum16(uint32_t sum, const uint8_t *p, uint32_t n);
uint16_t dp_fold(uint32_t sum);
/* Where an unfragmented IPv4/IPv6 TCP or UDP frame keeps its checksum, and
 * its pseudo-header sum; -1 if the frame is anything else or its lengths
 * do not fit in len. */
struct dp_l4_csum {
    uint32_t l4, l4len, csum_off, pseudo;
    uint8_t proto;
};
int dp_l4_csum_locate(const uint8_t *frame, uint32_t len, struct dp_l4_csum *c);
/* Complete a TCP/UDP checksum left to offload (CHECKSUM_PARTIAL). */
void dp_csum_complete(uint8_t *frame, uint32_t len);
/* A port's receive / transmit outcome of one call, added to its counters
 * (oversize frames count as dropped too). */
void dp_count_rx(struct dp_port *p, uint32_t n, uint64_t bytes, uint64_t oversize,
                 uint64_t errors);
void dp_count_tx(struct dp_port *p, uint64_t sent, uint64_t bytes, uint64_t dropped,
                 uint64_t errors);

/* ---- receive offloads: vnet headers, checksums, software GSO (dp_gso.c) ---- */
#define DP_VNET_HDR_LEN   10u          /* struct virtio_net_hdr (PACKET_VNET_HDR) */
/* Largest super-frame accepted: an IPv6 payload of 65535 bytes behind
 * Ethernet, two VLAN tags and the IPv6 header (IPv4 is smaller). */
#define DP_GSO_MAX_FRAME  (65535u + 14 + 8 + 40)
#define DP_GSO_MAX_SEGS   1024u        /* segments per super-frame (gso_size >= ~64) */
#define DP_GSO_MAX_HDR    160u         /* L2 + 2 tags + IPv4 w/ options + TCP w/ options */
/* A virtio_net_hdr as read from the ring (host byte order, widened so that
 * adding a re-inserted VLAN tag's 4 bytes cannot wrap). */
struct dp_vnet {
    uint8_t flags, gso_type;
    uint32_t hdr_len, gso_size, csum_start, csum_offset;
};
void dp_vnet_read(struct dp_vnet *, const uint8_t *raw);   /* DP_VNET_HDR_LEN bytes */
/* Make the frame f[0..len) (writable) wire-ready per its vnet header:
 *  - not GSO: the checksum is completed in place if NEEDS_CSUM; returns 1
 *    with segs[0] = f;
 *  - GSO (TCPv4, TCPv6, UDP L4): the segments are written back to back to
 *    out (cap bytes), their addresses and lengths to segs/lens (max_segs);
 *    returns their number (each at most max_frame bytes).
 * -EINVAL malformed (vnet header inconsistent with itself or the frame,
 * truncated headers, more than DP_GSO_MAX_SEGS segments); -EMSGSIZE a
 * frame or segment longer than max_frame (super-frame: DP_GSO_MAX_FRAME);
 * -ENOBUFS out/max_segs too small.  Nothing is written to out on error. */
int dp_vnet_rx(uint8_t *f, uint32_t len, const struct dp_vnet *, uint32_t max_frame,
               uint8_t *out, size_t cap, const uint8_t **segs, uint32_t *lens,
               uint32_t max_segs);
/* Upper bound of the bytes dp_vnet_rx writes to out for a super-frame of
 * len bytes with this gso_size (whatever the frame holds). */
size_t dp_gso_out_bound(uint32_t len, uint32_t gso_size);

/* ---- per-thread state ---------------------------------------------------------- */
struct dp_tx {
    struct dp_port *port;              /* NULL once sent */
    const uint8_t *data;
    uint32_t len;
    uint32_t in_port;                  /* for TABLE re-injection */
    uint64_t tun_id;                   /* the emit's tunnel_id (tunnel ports) */
    uint32_t tun_dst;                  /* and tun_ipv4_dst, network order */
};

struct dp_chunk;
struct dp_scratch {
    struct dp_chunk *head, *cur;
};

/* One level of patch nesting: level 0 is the thread's own pipeline. */
struct dp_level {
    struct vs_context *ctx;
    struct dp_tx *tx;
    uint32_t n_tx, cap_tx;
    struct dp_scratch scratch;         /* frames NORMAL re-tagged */
    const uint8_t *frames[VS_MAX_BATCH];
    uint32_t lens[VS_MAX_BATCH];
    uint32_t in_ports[VS_MAX_BATCH];
    struct vs_tun_md md[VS_MAX_BATCH]; /* tunnel metadata each frame arrived with */
    uint64_t cur_tun;                  /* tunnel_id of the emit being staged */
    uint32_t cur_tun_dst;              /* and its tun_ipv4_dst */
};

struct dp_thread {
    struct vs_dp *dp;
    uint32_t idx;
    bool started;
    pthread_t tid;
    int epfd, wakefd;
    struct dp_port **rx;               /* ports it receives from (under dp->lock) */
    uint32_t n_rx, cap_rx;
    uint32_t rr;                       /* round-robin start */
    struct vs_dp *held[VS_DP_MAX_DEPTH + 2];   /* datapaths read-locked now */
    uint32_t n_held;
    uint64_t err_ids[64];              /* ports whose fd reported an error */
    uint32_t n_err;
    struct vs_dp_thread_stats st;      /* written by the thread, relaxed */
    struct dp_level lv[VS_DP_MAX_DEPTH + 1];
    struct dp_sflow_thread sflow;
};

int dp_thread_init(struct dp_thread *, struct vs_dp *, uint32_t idx, bool poll);
int dp_thread_start(struct dp_thread *);
void dp_thread_destroy(struct dp_thread *);
void dp_thread_wake(struct dp_thread *);
/* Run lv[depth].frames/lens/in_ports[0..n) through pl and deliver the
 * results; dp's read lock is held.  table_ok: emits to
 * VS_DP_PORT_RESERVED re-enter dp's own pipeline (packet-out's TABLE). */
void dp_run_batch(struct dp_thread *, struct vs_dp *, struct vs_pipeline *pl,
                  unsigned depth, uint32_t n, bool table_ok);
void dp_stage_tx(struct dp_level *, struct vs_dp *, struct dp_port *, const uint8_t *data,
                 uint32_t len, uint32_t in_port);
void *dp_scratch_alloc(struct dp_scratch *, size_t);

/* ---- NORMAL and the MAC table (dp_normal.c) ------------------------------------- */
struct dp_fdb;
struct dp_fdb *dp_fdb_new(uint32_t max, uint64_t aging_ns);
void dp_fdb_free(struct dp_fdb *);
void dp_fdb_flush_port(struct dp_fdb *, uint32_t port);   /* VS_OFPP_ANY = all */
size_t dp_fdb_dump(struct dp_fdb *, struct vs_dp_fdb_entry *, size_t max, uint64_t now);
void dp_fdb_counts(struct dp_fdb *, struct vs_dp_stats *);
void dp_normal(struct dp_thread *, struct dp_level *, struct vs_dp *, uint32_t in_port,
               const uint8_t *data, uint32_t len, uint64_t now);
bool dp_port_has_vlan(const struct dp_port *, uint16_t vlan);

/* Hooks of dp_thread.c.  dp_sflow_pick: a batch of n frames was received
 * from p at level 0 (count them in the pool, pick samples).  dp_sflow_note:
 * the emit for batch index pkt staged L->tx[from..L->n_tx) (or, with
 * VS_DP_SFLOW_F_*, went elsewhere).  dp_sflow_flush: queue the picks as
 * upcalls (before the staged frames are sent). */
void dp_sflow_pick(struct dp_thread *, struct vs_dp *, struct dp_port *, uint32_t n);
void dp_sflow_note(struct dp_thread *, const struct dp_level *, uint32_t pkt, uint32_t from,
                   uint32_t flags);
void dp_sflow_flush(struct dp_thread *, struct vs_dp *, const struct dp_level *);

/* ---- upcall queue (dp_upcall.c) -------------------------------------------------- */
struct dp_upq;
struct dp_upq *dp_upq_new(uint32_t cap);
void dp_upq_free(struct dp_upq *);
int dp_upq_fd(struct dp_upq *);
/* 0 queued, -1 dropped (full or out of memory). */
int dp_upq_push(struct dp_upq *, const struct vs_upcall *);
/* Queue a prepared entry and len bytes of data (0 or -1 as above). */
int dp_upq_push_raw(struct dp_upq *, const struct vs_dp_upcall *, const uint8_t *data,
                    uint32_t len);
int dp_upq_pop(struct dp_upq *, struct vs_dp_upcall *, uint8_t *buf, uint32_t buflen);
uint32_t dp_upq_len(struct dp_upq *);

/* ---- the datapath (dp.c) ----------------------------------------------------------- */
struct vs_dp {
    struct vs_dp_config cfg;
    struct vs_pipeline *pipeline;      /* borrowed */
    pthread_rwlock_t lock;             /* the port table; see datapath.h */
    struct dp_port **ports;            /* sorted by port number */
    uint32_t n_ports, cap_ports;
    struct dp_thread *threads;
    uint32_t n_threads;
    uint32_t stop;                     /* atomic */
    uint64_t aging_ns;
    struct dp_fdb *fdb;
    struct dp_upq *upq;
    /* packet-out: serialised by po_mutex */
    pthread_mutex_t po_mutex;
    struct vs_pipeline *po_pipeline;
    struct dp_thread *po;
    struct vs_dp *next;                /* all datapaths (global mutex) */
    /* counters, relaxed atomics */
    uint64_t upcalls, upcall_drops, normal_packets, normal_floods, normal_drops;
    uint64_t tx_no_port, patch_loop_drops, staging_drops;
    /* sFlow (dp_sflow.c): read by poll threads once per batch, relaxed */
    uint32_t sflow_rate, sflow_header;
    uint64_t sflow_samples, sflow_drops;
};

/* Port by number; caller holds dp->lock (either mode). */
struct dp_port *dp_find_port(const struct vs_dp *, uint32_t port_no);

#endif /* VSWITCH_DP_PRIVATE_H */
