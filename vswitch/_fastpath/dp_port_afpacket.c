/* dp_port_afpacket.c -- `system` ports: an existing netdev over AF_PACKET.
 *
 * Receive: a TPACKET_V3 ring (blocks of variable-size frames, mmap'ed).  The
 * kernel hands a block to user space when it is full or after ring_tov_ms;
 * the owner thread walks its frames in place (zero copy) and gives the
 * block back (TP_STATUS_KERNEL) only after the batch holding its last frame
 * has been processed and transmitted.  Fix-ups happen in the ring:
 *  - a VLAN tag the kernel took out of the frame (TP_STATUS_VLAN_VALID) is
 *    put back: the 12 address bytes move 4 bytes down, into the headroom
 *    PACKET_RESERVE guarantees between the ring header and the frame;
 *  - offloads (PACKET_VNET_HDR): the kernel writes a virtio_net_hdr right
 *    before each frame.  A checksum left to offload (NEEDS_CSUM) is
 *    completed in place; a GSO super-frame (up to 64 KiB from a TSO/GSO
 *    sender on a veth, or from GRO) is cut into wire-sized segments by
 *    dp_gso.c, written to a per-port segment buffer (seg_buf), so that the
 *    pipeline and the counters see what a wire would carry.
 *    Without PACKET_VNET_HDR (kernel refused it), TP_STATUS_CSUMNOTREADY
 *    frames get their checksum completed and super-frames are oversize.
 * Transmit: sendmmsg on the same socket (PACKET_QDISC_BYPASS), from any
 * thread: the kernel serialises sends, counters are atomic.  With
 * PACKET_VNET_HDR every frame sent needs a vnet header too: an all-zero
 * one (checksums complete, not GSO) goes in front of each as its own iovec.
 *
 * Segment buffer lifetime (owner thread only): segments handed to the
 * pipeline stay valid until the next rx call.  A super-frame whose
 * segments do not all fit in the caller's batch leaves the rest as a
 * "carry" (seg[carry_pos..carry_n)), handed out first by the next rx calls;
 * seg_buf is reset only by an rx call that starts with no carry (every
 * segment handed out before has been processed by then: rx_done ran). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dp_private.h"

#define RESERVE 4                      /* headroom for one VLAN tag */
#define TX_CHUNK 64
/* Ring blocks hold whole frames: a super-frame plus its ring header,
 * sockaddr_ll, PACKET_RESERVE and vnet header (< 256 bytes together). */
#define MIN_GSO_BLOCK (128u * 1024)
_Static_assert(DP_GSO_MAX_FRAME + 512 <= MIN_GSO_BLOCK, "a super-frame fits a ring block");
/* The segment buffer: any one acceptable super-frame's segments fit in an
 * empty one (dp_gso_out_bound; +4 for a re-inserted VLAN tag), and in
 * practice 3 typical ones (64 KiB at MSS 1448 -> ~68 KiB) fill a batch. */
#define SEG_BUF (256u * 1024)
_Static_assert(DP_GSO_MAX_FRAME + 4 + (size_t)DP_GSO_MAX_SEGS * DP_GSO_MAX_HDR <= SEG_BUF,
               "the worst super-frame fits an empty segment buffer");

struct afp {
    uint8_t *map;
    size_t map_len;
    uint32_t bsize, bnr;
    uint32_t cur;                      /* block being read */
    uint32_t opened;                   /* cur is ours and `left`/`next` are valid */
    uint32_t left;                     /* frames not yet taken from cur */
    uint8_t *next;                     /* next frame header in cur */
    uint32_t rel_start, n_rel;         /* consumed blocks not yet given back */
    uint32_t vnet;                     /* PACKET_VNET_HDR is on */
    /* Software GSO (see the top of the file). */
    uint8_t *seg_buf;                  /* SEG_BUF bytes, allocated on first use */
    size_t seg_used;
    uint32_t carry_pos, carry_n;       /* seg[carry_pos..carry_n) not handed out */
    const uint8_t *seg[DP_GSO_MAX_SEGS];
    uint32_t seg_len[DP_GSO_MAX_SEGS];
};

static inline struct tpacket_block_desc *blk(struct afp *a, uint32_t i)
{
    return (struct tpacket_block_desc *)(a->map + (size_t)i * a->bsize);
}

static void afp_advance(struct afp *a)
{
    a->opened = 0;
    a->left = 0;
    a->cur = (a->cur + 1) % a->bnr;
    a->n_rel++;
}

static uint32_t afp_rx(struct dp_port *p, const uint8_t **frames, uint32_t *lens, uint32_t max)
{
    struct afp *a = p->priv;
    uint32_t n = 0;
    uint64_t bytes = 0, oversize = 0, errors = 0;
    const uint32_t vlen = a->vnet ? DP_VNET_HDR_LEN : 0;

    /* Segments left over from the last call go first. */
    if (a->carry_pos == a->carry_n) {
        a->carry_pos = a->carry_n = 0;
        a->seg_used = 0;
    }
    for (; n < max && a->carry_pos < a->carry_n; a->carry_pos++, n++) {
        frames[n] = a->seg[a->carry_pos];
        lens[n] = a->seg_len[a->carry_pos];
        bytes += lens[n];
    }
    while (n < max && a->n_rel < a->bnr) {
        struct tpacket_block_desc *bd = blk(a, a->cur);
        uint8_t *end = (uint8_t *)bd + a->bsize;
        if (!a->opened) {
            if (!(__atomic_load_n(&bd->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER))
                break;
            uint32_t off = bd->hdr.bh1.offset_to_first_pkt;
            a->opened = 1;
            a->left = bd->hdr.bh1.num_pkts;
            if (off < sizeof *bd || off + sizeof(struct tpacket3_hdr) > a->bsize) {
                errors += a->left;
                a->left = 0;
            }
            a->next = (uint8_t *)bd + off;
        }
        if (!a->left) {
            afp_advance(a);
            continue;
        }
        struct tpacket3_hdr *h = (struct tpacket3_hdr *)a->next;
        uint32_t mac = h->tp_mac, snap = h->tp_snaplen, len = h->tp_len;
        uint32_t st = h->tp_status, nxt = h->tp_next_offset;
        bool framing_ok = mac >= sizeof *h + RESERVE + vlen &&
                          mac <= (size_t)(end - (uint8_t *)h) &&
                          snap <= (size_t)(end - (uint8_t *)h) - mac;
        struct dp_vnet vh = {0};
        if (framing_ok && vlen) {
            /* Copied out now: the VLAN fix-up below overwrites it. */
            dp_vnet_read(&vh, (uint8_t *)h + mac - vlen);
            /* A super-frame is taken only when its segments are sure to
             * fit the segment buffer; otherwise it stays in the ring
             * (nothing of it modified yet) until the next call, which
             * starts with an empty buffer when n > 0 here.  With n == 0
             * the buffer is empty now, and dp_gso_out_bound() of any
             * frame that DP_GSO_MAX_FRAME admits fits SEG_BUF. */
            if (vh.gso_type && snap >= len && len <= DP_GSO_MAX_FRAME) {
                if (!a->seg_buf && !(a->seg_buf = malloc(SEG_BUF)))
                    framing_ok = false;        /* counted as an error, dropped */
                else if (n > 0 && a->seg_used + 4 + dp_gso_out_bound(len, vh.gso_size) > SEG_BUF)
                    break;
            }
        }
        /* Take the frame: step to the next one in the block. */
        if (--a->left) {
            if (nxt < sizeof *h || nxt > (size_t)(end - (uint8_t *)h) ||
                (size_t)(end - ((uint8_t *)h + nxt)) < sizeof *h) {
                errors += a->left;     /* corrupt chain: skip the rest */
                a->left = 0;
            } else {
                a->next = (uint8_t *)h + nxt;
            }
        }
        if (!framing_ok) {
            errors++;
            continue;
        }
        uint8_t *f = (uint8_t *)h + mac;
        if (snap < len || (!vh.gso_type && len > p->max_frame)) {
            oversize++;                /* truncated by the ring, or too long */
            continue;
        }
        if ((st & TP_STATUS_VLAN_VALID) && snap >= 12) {
            uint16_t tpid = (st & TP_STATUS_VLAN_TPID_VALID) && h->hv1.tp_vlan_tpid
                            ? h->hv1.tp_vlan_tpid : ETH_P_8021Q;
            memmove(f - 4, f, 12);
            f -= 4;
            dp_put16(f + 12, tpid);
            dp_put16(f + 14, (uint16_t)h->hv1.tp_vlan_tci);
            snap += 4;
            /* The vnet offsets count from the frame the kernel saw. */
            vh.csum_start += 4;
            vh.hdr_len += 4;
        }
        if (!vlen) {
            if (st & TP_STATUS_CSUMNOTREADY)
                dp_csum_complete(f, snap);
            frames[n] = f;
            lens[n] = snap;
            bytes += snap;
            n++;
            continue;
        }
        /* vh.gso_type != 0: a->seg_buf exists and has room (checked above);
         * without GSO out is not used. */
        uint8_t *out = a->seg_buf ? a->seg_buf + a->seg_used : NULL;
        size_t room = a->seg_buf ? SEG_BUF - a->seg_used : 0;
        int r = dp_vnet_rx(f, snap, &vh, p->max_frame, out, room, a->seg, a->seg_len,
                           DP_GSO_MAX_SEGS);
        if (r == -EMSGSIZE) {
            oversize++;
            continue;
        }
        if (r <= 0) {                  /* -EINVAL: malformed; -ENOBUFS cannot happen */
            errors++;
            continue;
        }
        if (r == 1 && a->seg[0] == f) {        /* not GSO: the frame itself */
            frames[n] = f;
            lens[n] = snap;
            bytes += snap;
            n++;
            continue;
        }
        for (uint32_t i = 0; i < (uint32_t)r; i++)
            a->seg_used += a->seg_len[i];
        uint32_t i = 0;
        for (; i < (uint32_t)r && n < max; i++, n++) {
            frames[n] = a->seg[i];
            lens[n] = a->seg_len[i];
            bytes += lens[n];
        }
        a->carry_pos = i;              /* the rest waits for the next call */
        a->carry_n = (uint32_t)r;
    }
    dp_count_rx(p, n, bytes, oversize, errors);
    return n;
}

static void afp_rx_done(struct dp_port *p)
{
    struct afp *a = p->priv;
    for (; a->n_rel; a->n_rel--) {
        __atomic_store_n(&blk(a, a->rel_start)->hdr.bh1.block_status, TP_STATUS_KERNEL,
                         __ATOMIC_RELEASE);
        a->rel_start = (a->rel_start + 1) % a->bnr;
    }
}

static void afp_tx(struct dp_port *p, const uint8_t *const *frames, const uint32_t *lens,
                   uint32_t n)
{
    /* All zero: no GSO, checksums complete (the pipeline only ever emits
     * complete frames: offloads were resolved on receive). */
    static const uint8_t zero_vnet[DP_VNET_HDR_LEN];
    const struct afp *a = p->priv;
    struct mmsghdr m[TX_CHUNK];
    struct iovec iov[TX_CHUNK][2];
    uint64_t sent = 0, bytes = 0, dropped = 0, errors = 0;
    for (uint32_t base = 0; base < n; base += TX_CHUNK) {
        uint32_t k = n - base < TX_CHUNK ? n - base : TX_CHUNK;
        memset(m, 0, k * sizeof *m);
        for (uint32_t i = 0; i < k; i++) {
            struct iovec *v = iov[i];
            if (a->vnet) {
                v->iov_base = (void *)zero_vnet;
                v->iov_len = sizeof zero_vnet;
                v++;
            }
            v->iov_base = (void *)frames[base + i];
            v->iov_len = lens[base + i];
            m[i].msg_hdr.msg_iov = iov[i];
            m[i].msg_hdr.msg_iovlen = a->vnet ? 2 : 1;
        }
        uint32_t i = 0;
        while (i < k) {
            int r = sendmmsg(p->fd, m + i, k - i, MSG_DONTWAIT);
            if (r > 0) {
                for (int j = 0; j < r; j++)
                    bytes += lens[base + i + j];
                sent += r;
                i += r;
            } else if (r < 0 && errno == EINTR) {
                continue;
            } else if (r < 0 && (errno == EAGAIN || errno == ENOBUFS || errno == ENETDOWN ||
                                 errno == ENXIO || errno == EMSGSIZE)) {
                dropped++;             /* this frame; try the rest */
                i++;
            } else {
                errors++;
                i++;
            }
        }
    }
    dp_count_tx(p, sent, bytes, dropped, errors);
}

static void afp_error(struct dp_port *p)
{
    int e = 0;
    socklen_t l = sizeof e;
    /* Reading SO_ERROR clears it (ENETDOWN when the device went down or
     * away), so that epoll stops reporting it. */
    getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &e, &l);
}

static void afp_close(struct dp_port *p)
{
    struct afp *a = p->priv;
    if (a && a->map)
        munmap(a->map, a->map_len);
    if (a)
        free(a->seg_buf);
    free(a);
    p->priv = NULL;
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
}

static const struct dp_port_ops afp_ops = {
    .rx = afp_rx, .rx_done = afp_rx_done, .tx = afp_tx, .error = afp_error, .close = afp_close,
};

/* Called from the control thread: the kernel's ring-full drop count.
 * PACKET_STATISTICS resets on read, so it is accumulated. */
void dp_afpacket_poll_stats(struct dp_port *p)
{
    struct tpacket_stats_v3 s;
    socklen_t l = sizeof s;
    memset(&s, 0, sizeof s);
    if (p->fd >= 0 && getsockopt(p->fd, SOL_PACKET, PACKET_STATISTICS, &s, &l) == 0 &&
        s.tp_drops) {
        DP_ADD(&p->st.rx_ring_drops, s.tp_drops);
        DP_ADD(&p->st.rx_dropped, s.tp_drops);
    }
}

static int setopt(int fd, int level, int name, int v)
{
    return setsockopt(fd, level, name, &v, sizeof v) < 0 ? -errno : 0;
}

int dp_afpacket_open(struct vs_dp *dp, struct dp_port *p, struct vs_error *err)
{
    const struct vs_dp_config *c = &dp->cfg;
    int rc;

    if ((rc = dp_netdev_attach(p, "system", err)) < 0)
        return rc;
    const uint32_t mtu = p->mtu;
    if (p->max_frame + 256 > c->ring_block_size)
        return dp_err(err, EINVAL, "%s: MTU %u too large for ring blocks of %u bytes", p->name,
                      mtu, c->ring_block_size);
    /* Offloads are on by default on most devices, and a ring block that
     * cannot hold a 64 KiB super-frame would truncate every one of them. */
    if (c->ring_block_size < MIN_GSO_BLOCK)
        return dp_err(err, EINVAL, "%s: ring blocks of %u bytes cannot hold 64 KiB offload "
                      "(GSO) frames: ring_block_size must be >= %u", p->name,
                      c->ring_block_size, MIN_GSO_BLOCK);

    struct afp *a = calloc(1, sizeof *a);
    if (!a)
        return dp_err(err, ENOMEM, "out of memory");
    p->priv = a;
    p->ops = &afp_ops;
    p->fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (p->fd < 0) {
        rc = dp_err(err, errno, "%s: AF_PACKET socket: %s", p->name, strerror(errno));
        goto fail;
    }
    if ((rc = setopt(p->fd, SOL_PACKET, PACKET_VERSION, TPACKET_V3)) < 0 ||
        (rc = setopt(p->fd, SOL_PACKET, PACKET_RESERVE, RESERVE)) < 0) {
        rc = dp_err(err, -rc, "%s: TPACKET_V3: %s", p->name, strerror(-rc));
        goto fail;
    }
    /* Before the ring exists (EBUSY after).  A kernel without it leaves
     * the port without offload support: super-frames are then oversize. */
    a->vnet = setopt(p->fd, SOL_PACKET, PACKET_VNET_HDR, 1) == 0;
    struct tpacket_req3 req;
    memset(&req, 0, sizeof req);
    req.tp_block_size = c->ring_block_size;
    req.tp_block_nr = c->ring_block_nr;
    req.tp_frame_size = 2048;
    req.tp_frame_nr = c->ring_block_size / 2048 * c->ring_block_nr;
    req.tp_retire_blk_tov = c->ring_tov_ms;
    if (setsockopt(p->fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) < 0) {
        rc = dp_err(err, errno, "%s: PACKET_RX_RING: %s", p->name, strerror(errno));
        goto fail;
    }
    a->bsize = c->ring_block_size;
    a->bnr = c->ring_block_nr;
    a->map_len = (size_t)a->bsize * a->bnr;
    a->map = mmap(NULL, a->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, p->fd, 0);
    if (a->map == MAP_FAILED) {
        a->map = NULL;
        rc = dp_err(err, errno, "%s: mmap ring: %s", p->name, strerror(errno));
        goto fail;
    }
    /* Not fatal on kernels without them (before 4.20 / 3.14). */
    setopt(p->fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1);
    setopt(p->fd, SOL_PACKET, PACKET_QDISC_BYPASS, 1);
    setopt(p->fd, SOL_SOCKET, SO_SNDBUF, 4 << 20);

    struct packet_mreq mr;
    memset(&mr, 0, sizeof mr);
    mr.mr_ifindex = (int)p->ifindex;
    mr.mr_type = PACKET_MR_PROMISC;
    if (setsockopt(p->fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr) < 0) {
        rc = dp_err(err, errno, "%s: promiscuous mode: %s", p->name, strerror(errno));
        goto fail;
    }
    struct sockaddr_ll sll;
    memset(&sll, 0, sizeof sll);
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = (int)p->ifindex;
    if (bind(p->fd, (struct sockaddr *)&sll, sizeof sll) < 0) {
        rc = dp_err(err, errno, "%s: bind: %s", p->name, strerror(errno));
        goto fail;
    }
    return 0;
fail:
    afp_close(p);
    return rc;
}
