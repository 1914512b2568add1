/* dp_port_afxdp.c -- `afxdp` ports: an existing netdev over AF_XDP (an XSK
 * socket, libxdp + libbpf).  Built only when build_core.py found libxdp
 * (-DVS_HAVE_AFXDP); otherwise adding such a port is refused with a message
 * that says why, and vs_dp_afxdp_available() returns 0.
 *
 * Setup (control thread, under the global port-table mutex of dp.c)
 * -----
 * One UMEM per port: an anonymous mmap of XS_RX_FRAMES + XS_TX_FRAMES
 * frames of `fsize` bytes (2048, or 4096 when MTU + 22 + the kernel's 256
 * bytes of XDP headroom do not fit in 2048; larger MTUs are refused: no
 * multi-buffer).  One XSK socket bound to (device, queue), with
 * XDP_USE_NEED_WAKEUP, copy or zero-copy as the driver allows (no mode flag:
 * the kernel tries zero-copy and falls back to copy), and libxdp's default
 * XDP program (xsk_def_prog: redirect to the XSKMAP entry of the rx queue if
 * one is set, else XDP_PASS) attached in native mode (XDP_FLAGS_DRV_MODE),
 * or in generic (SKB) mode when native fails.  The device is made
 * promiscuous through an AF_PACKET socket of protocol 0 holding a
 * PACKET_MR_PROMISC membership: it receives nothing, and the kernel drops
 * the membership (and the promiscuity) when it is closed.
 *
 * UMEM frame ownership (THE invariant of this file)
 * --------------------
 * The UMEM is split in two fixed pools; a frame never changes pool.
 *  rx pool: frames [0, XS_RX_FRAMES).  Each is at every moment in exactly
 *    one place: the fill ring, the kernel (taken from the fill ring, not yet
 *    on the rx ring), the rx ring, or `held` (handed to the pipeline by
 *    afx_rx, back to the fill ring in afx_rx_done).  The fill ring and the
 *    rx ring have XS_RX_FRAMES slots, so putting every held frame back on
 *    the fill ring can never find it full, and the rx ring has a slot for
 *    every frame the kernel can fill (when we are slow it runs out of fill
 *    frames and drops, counted in XDP_STATISTICS).  rx descriptors are
 *    released as soon as they are read: a released rx slot does not give
 *    the frame back, only the fill ring does.
 *  tx pool: frames [XS_RX_FRAMES, XS_RX_FRAMES + XS_TX_FRAMES).  Each is in
 *    exactly one place: `tx_free` (a stack), the tx ring, the kernel (sent
 *    or being sent), or the completion ring.  tx and completion rings have
 *    XS_TX_FRAMES slots, so reserving a tx slot for a frame taken from
 *    tx_free cannot fail and the completion ring cannot overflow.  We only
 *    submit descriptors the kernel accepts (14 <= len <= fsize, offset 0 of
 *    a tx frame): an invalid descriptor is skipped by the kernel without a
 *    completion, which would lose the frame.
 * Frames handed to vs_process_batch point into the UMEM (no copy on
 * receive); they stay valid until afx_rx_done, which dp_thread.c calls after
 * the batch's emits were transmitted.  Emits to an afxdp port are copied
 * into free tx frames (an emit may point into any port's memory, including
 * this port's rx frames: no zero-copy transmit).
 *
 * Threads and rings
 * -----------------
 *  - rx ring and fill ring: the port's receiving poll thread only (rx and
 *    rx_done run there, under the datapath's read lock).
 *  - tx ring, completion ring and tx_free: any thread may transmit on any
 *    port (poll threads, packet-out), so they are touched only with
 *    tx_lock held (a mutex: the holder may sleep in sendto).  The receiving
 *    thread also takes it (trylock) to push out frames a previous transmit
 *    left on the tx ring.
 *  - the XSK fd is in the receiving thread's epoll set (EPOLLIN: the rx
 *    ring is not empty).  Transmit kicks the kernel with sendto() when the
 *    tx ring says it needs a wakeup (always in copy mode: copy-mode
 *    transmit happens inside sendto, at most 32 frames per call by default,
 *    hence the loop in kick_tx); receive kicks with recvfrom() when the fill
 *    ring needs a wakeup (zero-copy drivers).
 *  - stats_lock serialises the control threads' reads of XDP_STATISTICS
 *    (cumulative counters turned into deltas).
 * Removal happens after the datapath's write lock was held (no round sees
 * the port): xsk_socket__delete (its XSKMAP entry goes; libxdp detaches the
 * default program when no other socket on the device uses it), then
 * xsk_umem__delete, munmap, close the promiscuity socket.  The kernel
 * releases a socket's queue binding asynchronously, so re-adding a port on
 * the same queue right after removing it may see EBUSY for a few ms: the
 * open retries for up to XS_BUSY_WAIT_MS. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "dp_private.h"

#ifndef VS_HAVE_AFXDP

int vs_dp_afxdp_available(void) { return 0; }

int dp_afxdp_open(struct vs_dp *dp, struct dp_port *p, const struct vs_dp_port_config *cfg,
                  struct vs_error *err)
{
    (void)dp;
    (void)cfg;
    return dp_err(err, EOPNOTSUPP,
                  "port %u: afxdp not built: vswitch was built without libxdp (install "
                  "libxdp-dev and libbpf-dev and rebuild)", p->port_no);
}

void dp_afxdp_poll_stats(struct dp_port *p) { (void)p; }
void dp_afxdp_info(struct dp_port *p, struct vs_dp_port_info *out) { (void)p; (void)out; }

#else /* VS_HAVE_AFXDP */

#include <linux/if_ether.h>
#include <linux/if_link.h>
#include <linux/if_packet.h>
#include <linux/if_xdp.h>
#include <net/if.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bpf/libbpf.h>
#include <xdp/libxdp.h>
#include <xdp/xsk.h>

#ifndef XDP_PKT_CONTD
#define XDP_PKT_CONTD (1 << 0)         /* uapi headers before 6.6 */
#endif

#define XS_RX_FRAMES 4096u             /* = fill ring = rx ring slots */
#define XS_TX_FRAMES 2048u             /* = tx ring = completion ring slots */
#define XS_HEADROOM 256u               /* XDP_PACKET_HEADROOM: the kernel's, per rx frame */
#define XS_BUSY_WAIT_MS 2000u
#define XS_KICK_BUDGET 32u             /* frames the kernel sends per copy-mode sendto */

struct afx {
    struct xsk_umem *umem;
    struct xsk_socket *xsk;
    uint8_t *area;
    size_t area_len;
    uint32_t fsize;                    /* frame (chunk) size: 2048 or 4096 */
    uint32_t queue;
    uint32_t mode;                     /* VS_DP_XDP_NATIVE or VS_DP_XDP_GENERIC */
    uint32_t zerocopy;
    int promisc_fd;
    /* rx side: the receiving thread only. */
    struct xsk_ring_cons rx;
    struct xsk_ring_prod fq;
    uint64_t *held;                    /* rx frames out with the pipeline (XS_RX_FRAMES) */
    uint32_t n_held;
    uint32_t tx_pending;               /* atomic: frames may sit on the tx ring unsent */
    /* tx side: under tx_lock. */
    pthread_mutex_t tx_lock;
    struct xsk_ring_prod tx;
    struct xsk_ring_cons cq;
    uint64_t *tx_free;                 /* free tx frames (XS_TX_FRAMES) */
    uint32_t n_tx_free;
    uint32_t tx_queued;                /* submitted, not yet seen on the completion ring */
    /* XDP_STATISTICS already counted (cumulative in the kernel). */
    pthread_mutex_t stats_lock;
    struct xdp_statistics seen;
};

/* libxdp/libbpf create and destroy calls (program attach/detach and their
 * reference counting per device) are serialised across datapaths. */
static pthread_mutex_t g_xdp_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t g_log_once = PTHREAD_ONCE_INIT;
static int g_log_debug;

int vs_dp_afxdp_available(void) { return 1; }

/* libxdp and libbpf print to stderr by default (e.g. "No bpffs found",
 * which is not an error: libxdp then attaches without its dispatcher).
 * Quiet unless VSWITCH_XDP_DEBUG is set. */
static int xdp_log(enum libxdp_print_level level, const char *fmt, va_list ap)
{
    (void)level;
    return g_log_debug ? vfprintf(stderr, fmt, ap) : 0;
}

static int bpf_log(enum libbpf_print_level level, const char *fmt, va_list ap)
{
    (void)level;
    return g_log_debug ? vfprintf(stderr, fmt, ap) : 0;
}

static void log_init(void)
{
    g_log_debug = getenv("VSWITCH_XDP_DEBUG") != NULL;
    libxdp_set_print(xdp_log);
    libbpf_set_print(bpf_log);
}

/* ---- checksums a local sender left to offload -------------------------------- */

/* A local sender that left its TCP/UDP checksum to offload
 * (CHECKSUM_PARTIAL: a veth peer, a TAP) hands XDP a frame whose checksum
 * field holds only the pseudo-header sum, and XDP carries no flag saying so
 * (AF_PACKET has TP_STATUS_CSUMNOTREADY).  Forwarded as is, the receiver
 * drops it.  So: when the field equals the pseudo-header sum, the segment
 * is summed; if the checksum does not verify as is, it is completed.  A
 * complete checksum that happens to equal the pseudo-header sum verifies
 * and is left alone.  Cost: a pseudo-header sum per TCP/UDP frame, a full
 * sum only for such frames.  Every read is bounds-checked against len. */
static void csum_fixup(uint8_t *f, uint32_t len)
{
    struct dp_l4_csum c;
    if (dp_l4_csum_locate(f, len, &c) < 0)
        return;
    uint16_t field = dp_be16(f + c.csum_off);
    uint16_t partial = dp_fold(c.pseudo);
    if (field == 0 && c.proto == 17)
        return;                        /* UDP without a checksum */
    if (field != partial && !((field == 0 || field == 0xffff) &&
                              (partial == 0 || partial == 0xffff)))
        return;
    uint32_t seg = dp_sum16(0, f + c.l4, c.l4len);    /* includes the field */
    if (dp_fold(c.pseudo + seg) == 0xffff)
        return;                        /* already valid */
    uint32_t rest = seg + (0xffffu - field);          /* one's complement: minus field */
    uint16_t sum = (uint16_t)~dp_fold(c.pseudo + rest);
    if (c.proto == 17 && sum == 0)
        sum = 0xffff;
    dp_put16(f + c.csum_off, sum);
}

/* ---- transmit (tx_lock held) ------------------------------------------------ */

/* Completed tx frames back to tx_free. */
static void reap(struct dp_port *p, struct afx *x)
{
    uint32_t idx = 0;
    uint32_t n = xsk_ring_cons__peek(&x->cq, XS_TX_FRAMES, &idx);
    uint64_t bad = 0;
    const uint64_t lo = (uint64_t)XS_RX_FRAMES * x->fsize;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t a = *xsk_ring_cons__comp_addr(&x->cq, idx + i);
        /* Only addresses we submitted: offset 0 of a tx-pool frame. */
        if (a < lo || a >= x->area_len || (a & (x->fsize - 1)) || x->n_tx_free >= XS_TX_FRAMES) {
            bad++;
            continue;
        }
        x->tx_free[x->n_tx_free++] = a;
    }
    if (n) {
        xsk_ring_cons__release(&x->cq, n);
        x->tx_queued = x->tx_queued >= n ? x->tx_queued - n : 0;
    }
    if (bad)
        DP_ADD(&p->st.tx_errors, bad);
}

/* Have the kernel send what is on the tx ring.  In copy mode this happens
 * inside sendto(), a budget of frames per call (EAGAIN: more to do). */
static void kick_tx(struct afx *x, int fd, uint32_t pending)
{
    uint32_t tries = xsk_ring_prod__needs_wakeup(&x->tx) ? pending / XS_KICK_BUDGET + 4 : 0;
    while (tries--) {
        if (sendto(fd, NULL, 0, MSG_DONTWAIT, NULL, 0) >= 0)
            break;
        if (errno != EAGAIN && errno != EBUSY && errno != EINTR)
            break;                     /* ENETDOWN, ENXIO, ENOBUFS: frames stay queued */
    }
    /* Whatever the kernel has not taken yet stays on the ring; the next
     * transmit or the receiving thread's next round kicks again. */
    DP_STORE(&x->tx_pending, xsk_prod_nb_free(&x->tx, XS_TX_FRAMES) < XS_TX_FRAMES);
}

static void afx_tx(struct dp_port *p, const uint8_t *const *frames, const uint32_t *lens,
                   uint32_t n)
{
    struct afx *x = p->priv;
    uint64_t sent = 0, bytes = 0, dropped = 0;
    uint32_t k = 0;                    /* descriptors reserved, not yet submitted */
    pthread_mutex_lock(&x->tx_lock);
    reap(p, x);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t len = lens[i];
        if (len < ETH_HLEN || len > x->fsize) {
            dropped++;                 /* the kernel would skip it and lose the frame */
            continue;
        }
        if (!x->n_tx_free) {
            /* Every tx frame is queued: submit, push them out, take back
             * the completed ones. */
            if (k) {
                xsk_ring_prod__submit(&x->tx, k);
                x->tx_queued += k;
                k = 0;
            }
            kick_tx(x, p->fd, x->tx_queued);
            reap(p, x);
            if (!x->n_tx_free) {
                dropped++;             /* the device does not keep up */
                continue;
            }
        }
        uint32_t idx = 0;
        /* Cannot fail: at most XS_TX_FRAMES frames are out of tx_free and
         * the tx ring has that many slots. */
        if (xsk_ring_prod__reserve(&x->tx, 1, &idx) != 1) {
            dropped++;
            continue;
        }
        uint64_t a = x->tx_free[--x->n_tx_free];
        memcpy(x->area + a, frames[i], len);
        struct xdp_desc *d = xsk_ring_prod__tx_desc(&x->tx, idx);
        d->addr = a;
        d->len = len;
        d->options = 0;
        k++;
        sent++;
        bytes += len;
    }
    if (k) {
        xsk_ring_prod__submit(&x->tx, k);
        x->tx_queued += k;
    }
    if (sent)
        kick_tx(x, p->fd, x->tx_queued);
    pthread_mutex_unlock(&x->tx_lock);
    /* tx_packets counts frames put on the tx ring; the kernel's refusals
     * show up in XDP_STATISTICS (tx_errors). */
    dp_count_tx(p, sent, bytes, dropped, 0);
}

/* ---- receive (the receiving poll thread) --------------------------------------- */

static uint32_t afx_rx(struct dp_port *p, const uint8_t **frames, uint32_t *lens, uint32_t max)
{
    struct afx *x = p->priv;
    uint32_t n = 0;
    uint64_t bytes = 0, oversize = 0, errors = 0;

    if (DP_LOAD(&x->tx_pending) && pthread_mutex_trylock(&x->tx_lock) == 0) {
        reap(p, x);
        kick_tx(x, p->fd, x->tx_queued);
        pthread_mutex_unlock(&x->tx_lock);
    }
    /* held is empty here (rx_done ran after the previous rx); never hold
     * more frames than it has room for. */
    if (max > XS_RX_FRAMES - x->n_held)
        max = XS_RX_FRAMES - x->n_held;
    uint32_t idx = 0;
    uint32_t got = xsk_ring_cons__peek(&x->rx, max, &idx);
    if (!got) {
        /* A zero-copy driver that ran out of fill-ring frames waits for a
         * wakeup (copy mode never asks for one). */
        if (xsk_ring_prod__needs_wakeup(&x->fq))
            recvfrom(p->fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
        return 0;
    }
    const uint64_t rx_end = (uint64_t)XS_RX_FRAMES * x->fsize;
    for (uint32_t i = 0; i < got; i++) {
        const struct xdp_desc *d = xsk_ring_cons__rx_desc(&x->rx, idx + i);
        uint64_t a = xsk_umem__extract_addr(d->addr);
        uint32_t len = d->len, opt = d->options;
        uint64_t off = a & (x->fsize - 1);
        /* The kernel fills only frames we put on the fill ring: rx pool. */
        if (a >= rx_end) {
            errors++;
            continue;
        }
        x->held[x->n_held++] = a - off;       /* back to the fill ring in rx_done */
        if (off + len > x->fsize || (opt & XDP_PKT_CONTD)) {
            errors++;                  /* no multi-buffer: XDP_USE_SG is not set */
            continue;
        }
        if (len > p->max_frame) {
            oversize++;
            continue;
        }
        csum_fixup(x->area + a, len);
        frames[n] = x->area + a;
        lens[n] = len;
        bytes += len;
        n++;
    }
    /* The descriptors only: the frames stay ours until rx_done. */
    xsk_ring_cons__release(&x->rx, got);
    dp_count_rx(p, n, bytes, oversize, errors);
    return n;
}

static void afx_rx_done(struct dp_port *p)
{
    struct afx *x = p->priv;
    if (!x->n_held)
        return;
    uint32_t idx = 0;
    /* Cannot fail (see the invariant): the fill ring has a slot for every
     * rx frame.  Should it, the frames stay held and go back next time. */
    if (xsk_ring_prod__reserve(&x->fq, x->n_held, &idx) != x->n_held)
        return;
    for (uint32_t i = 0; i < x->n_held; i++)
        *xsk_ring_prod__fill_addr(&x->fq, idx + i) = x->held[i];
    xsk_ring_prod__submit(&x->fq, x->n_held);
    x->n_held = 0;
    if (xsk_ring_prod__needs_wakeup(&x->fq))
        recvfrom(p->fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
}

static void afx_error(struct dp_port *p)
{
    int e = 0;
    socklen_t l = sizeof e;
    /* Reading SO_ERROR clears it.  ENETDOWN: the device was unregistered
     * and the socket unbound for good; stop receiving from it. */
    getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &e, &l);
    if (e == ENETDOWN || e == ENODEV || e == ENXIO) {
        DP_STORE(&p->dead, 1);
        DP_STORE(&p->link_up, 0);
    }
}

/* ---- setup and removal ------------------------------------------------------------ */

static void afx_release(struct afx *x)
{
    pthread_mutex_lock(&g_xdp_mutex);
    if (x->xsk)
        xsk_socket__delete(x->xsk);
    x->xsk = NULL;
    if (x->umem)
        xsk_umem__delete(x->umem);
    x->umem = NULL;
    pthread_mutex_unlock(&g_xdp_mutex);
}

static void afx_close(struct dp_port *p)
{
    struct afx *x = p->priv;
    if (x) {
        afx_release(x);
        if (x->area)
            munmap(x->area, x->area_len);
        if (x->promisc_fd >= 0)
            close(x->promisc_fd);
        free(x->held);
        free(x->tx_free);
        pthread_mutex_destroy(&x->tx_lock);
        pthread_mutex_destroy(&x->stats_lock);
        free(x);
    }
    p->priv = NULL;
    p->fd = -1;                        /* the XSK fd was closed by xsk_socket__delete */
}

static const struct dp_port_ops afx_ops = {
    .rx = afx_rx, .rx_done = afx_rx_done, .tx = afx_tx, .error = afx_error, .close = afx_close,
};

/* One try at UMEM + socket + program in one XDP mode; 0 or -errno, with
 * nothing left behind on failure. */
static int afx_try(struct dp_port *p, struct afx *x, uint32_t xdp_flags)
{
    struct xsk_umem_config uc = {
        .fill_size = XS_RX_FRAMES,
        .comp_size = XS_TX_FRAMES,
        .frame_size = x->fsize,
        .frame_headroom = 0,
        .flags = 0,
    };
    struct xsk_socket_config sc = {
        .rx_size = XS_RX_FRAMES,
        .tx_size = XS_TX_FRAMES,
        .libxdp_flags = 0,             /* load libxdp's default program */
        .xdp_flags = xdp_flags,
        .bind_flags = XDP_USE_NEED_WAKEUP,   /* copy/zero-copy: the kernel picks */
    };
    memset(&x->fq, 0, sizeof x->fq);
    memset(&x->cq, 0, sizeof x->cq);
    memset(&x->rx, 0, sizeof x->rx);
    memset(&x->tx, 0, sizeof x->tx);
    pthread_mutex_lock(&g_xdp_mutex);
    int rc = xsk_umem__create(&x->umem, x->area, x->area_len, &x->fq, &x->cq, &uc);
    if (rc) {
        x->umem = NULL;
        pthread_mutex_unlock(&g_xdp_mutex);
        return rc < 0 ? rc : -rc;
    }
    rc = xsk_socket__create(&x->xsk, p->name, x->queue, x->umem, &x->rx, &x->tx, &sc);
    pthread_mutex_unlock(&g_xdp_mutex);
    if (rc) {
        x->xsk = NULL;
        afx_release(x);
        return rc < 0 ? rc : -rc;
    }
    return 0;
}

static const char *mode_name(uint32_t m)
{
    return m == VS_DP_XDP_NATIVE ? "native" : "generic";
}

/* The mode the program on the device is really attached in (another
 * socket on the same device may have attached it before us). */
static uint32_t attached_mode(uint32_t ifindex, uint32_t asked)
{
    struct xdp_multiprog *mp = xdp_multiprog__get_from_ifindex((int)ifindex);
    if (libxdp_get_error(mp) || !mp)
        return asked;
    enum xdp_attach_mode m = xdp_multiprog__attach_mode(mp);
    xdp_multiprog__close(mp);
    return m == XDP_MODE_SKB ? VS_DP_XDP_GENERIC : m == XDP_MODE_NATIVE ? VS_DP_XDP_NATIVE
                                                                         : asked;
}

int dp_afxdp_open(struct vs_dp *dp, struct dp_port *p, const struct vs_dp_port_config *cfg,
                  struct vs_error *err)
{
    int rc;
    (void)dp;
    pthread_once(&g_log_once, log_init);

    if (cfg->xdp_mode > VS_DP_XDP_GENERIC)
        return dp_err(err, EINVAL, "afxdp port %u: bad xdp_mode %u", p->port_no, cfg->xdp_mode);
    if ((rc = dp_netdev_attach(p, "afxdp", err)) < 0)
        return rc;
    const uint32_t mtu = p->mtu;
    uint32_t fsize = p->max_frame + XS_HEADROOM <= 2048 ? 2048 : 4096;
    if (p->max_frame + XS_HEADROOM > fsize)
        return dp_err(err, EINVAL, "%s: MTU %u too large for AF_XDP (at most %u: no "
                      "multi-buffer support)", p->name, mtu, 4096 - XS_HEADROOM - 22);

    struct afx *x = calloc(1, sizeof *x);
    if (!x)
        return dp_err(err, ENOMEM, "out of memory");
    x->promisc_fd = -1;
    x->fsize = fsize;
    x->queue = cfg->queue;
    pthread_mutex_init(&x->tx_lock, NULL);
    pthread_mutex_init(&x->stats_lock, NULL);
    p->priv = x;
    p->ops = &afx_ops;
    x->held = calloc(XS_RX_FRAMES, sizeof *x->held);
    x->tx_free = calloc(XS_TX_FRAMES, sizeof *x->tx_free);
    x->area_len = (size_t)(XS_RX_FRAMES + XS_TX_FRAMES) * fsize;
    x->area = mmap(NULL, x->area_len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (x->area == MAP_FAILED)
        x->area = NULL;
    if (!x->held || !x->tx_free || !x->area) {
        rc = dp_err(err, ENOMEM, "%s: out of memory for the UMEM", p->name);
        goto fail;
    }

    /* Native first (unless generic was asked for), generic if that fails.
     * EBUSY: an earlier socket on this queue is still being released by
     * the kernel (or another program holds the queue): wait a little. */
    uint32_t modes[2], n_modes = 0;
    if (cfg->xdp_mode != VS_DP_XDP_GENERIC)
        modes[n_modes++] = VS_DP_XDP_NATIVE;
    if (cfg->xdp_mode != VS_DP_XDP_NATIVE)
        modes[n_modes++] = VS_DP_XDP_GENERIC;
    uint64_t deadline = dp_now_ns() + (uint64_t)XS_BUSY_WAIT_MS * 1000000ull;
    int first_rc = 0;
    uint32_t mi = 0;
    for (;;) {
        uint32_t fl = modes[mi] == VS_DP_XDP_NATIVE ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE;
        rc = afx_try(p, x, fl);
        if (rc == 0)
            break;
        if (rc == -EBUSY && dp_now_ns() < deadline) {
            usleep(5000);
            continue;
        }
        if (!first_rc)
            first_rc = rc;
        if (++mi == n_modes) {
            if (n_modes == 2)
                rc = dp_err(err, -rc, "%s queue %u: AF_XDP socket: native mode: %s; "
                            "generic mode: %s", p->name, x->queue, strerror(-first_rc),
                            strerror(-rc));
            else
                rc = dp_err(err, -rc, "%s queue %u: AF_XDP socket (%s mode): %s", p->name,
                            x->queue, mode_name(modes[0]), strerror(-rc));
            goto fail;
        }
        deadline = dp_now_ns() + (uint64_t)XS_BUSY_WAIT_MS * 1000000ull;
    }
    p->fd = xsk_socket__fd(x->xsk);
    x->mode = attached_mode(p->ifindex, modes[mi]);
    struct xdp_options xo;
    socklen_t ol = sizeof xo;
    memset(&xo, 0, sizeof xo);
    if (getsockopt(p->fd, SOL_XDP, XDP_OPTIONS, &xo, &ol) == 0)
        x->zerocopy = (xo.flags & XDP_OPTIONS_ZEROCOPY) ? 1 : 0;

    /* Every rx frame onto the fill ring; every tx frame free. */
    uint32_t idx = 0;
    if (xsk_ring_prod__reserve(&x->fq, XS_RX_FRAMES, &idx) != XS_RX_FRAMES) {
        rc = dp_err(err, EIO, "%s: cannot fill the AF_XDP fill ring", p->name);
        goto fail;
    }
    for (uint32_t i = 0; i < XS_RX_FRAMES; i++)
        *xsk_ring_prod__fill_addr(&x->fq, idx + i) = (uint64_t)i * fsize;
    xsk_ring_prod__submit(&x->fq, XS_RX_FRAMES);
    for (uint32_t i = 0; i < XS_TX_FRAMES; i++)
        x->tx_free[i] = (uint64_t)(XS_RX_FRAMES + XS_TX_FRAMES - 1 - i) * fsize;
    x->n_tx_free = XS_TX_FRAMES;

    /* Promiscuous while the port exists (a NIC filters unicast by MAC;
     * veth does not).  Not fatal. */
    x->promisc_fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
    if (x->promisc_fd >= 0) {
        struct packet_mreq mr;
        memset(&mr, 0, sizeof mr);
        mr.mr_ifindex = (int)p->ifindex;
        mr.mr_type = PACKET_MR_PROMISC;
        setsockopt(x->promisc_fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr);
    }
    return 0;
fail:
    afx_close(p);
    return rc;
}

/* Control thread, datapath read lock held: the kernel's drop counters. */
void dp_afxdp_poll_stats(struct dp_port *p)
{
    struct afx *x = p->priv;
    if (!x || p->fd < 0)
        return;
    struct xdp_statistics s;
    socklen_t l = sizeof s;
    memset(&s, 0, sizeof s);
    pthread_mutex_lock(&x->stats_lock);
    if (getsockopt(p->fd, SOL_XDP, XDP_STATISTICS, &s, &l) == 0) {
        /* Cumulative; older kernels fill only the first three fields. */
#define DELTA(f) (s.f > x->seen.f ? s.f - x->seen.f : 0)
        uint64_t ring = DELTA(rx_dropped) + DELTA(rx_ring_full);
        uint64_t rx_bad = DELTA(rx_invalid_descs), tx_bad = DELTA(tx_invalid_descs);
#undef DELTA
        if (ring) {
            DP_ADD(&p->st.rx_ring_drops, ring);
            DP_ADD(&p->st.rx_dropped, ring);
        }
        if (rx_bad)
            DP_ADD(&p->st.rx_errors, rx_bad);
        if (tx_bad)
            DP_ADD(&p->st.tx_errors, tx_bad);
        x->seen = s;
    }
    pthread_mutex_unlock(&x->stats_lock);
}

void dp_afxdp_info(struct dp_port *p, struct vs_dp_port_info *out)
{
    struct afx *x = p->priv;
    if (!x)
        return;
    out->queue = x->queue;
    out->xdp_mode = x->mode;
    out->xdp_zerocopy = x->zerocopy;
}

#endif /* VS_HAVE_AFXDP */
