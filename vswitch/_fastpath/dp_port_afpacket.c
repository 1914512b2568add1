/* dp_port_afpacket.c -- `system` ports: an existing netdev over AF_PACKET.
 *
 * Receive: a TPACKET_V3 ring (blocks of variable-size frames, mmap'ed).  The
 * kernel hands a block to user space when it is full or after ring_tov_ms;
 * the owner thread walks its frames in place (zero copy) and gives the
 * block back (TP_STATUS_KERNEL) only after the batch holding its last frame
 * has been processed and transmitted.  Two fix-ups happen in the ring:
 *  - a VLAN tag the kernel took out of the frame (TP_STATUS_VLAN_VALID) is
 *    put back: the 12 address bytes move 4 bytes down, into the headroom
 *    PACKET_RESERVE guarantees between the ring header and the frame;
 *  - TP_STATUS_CSUMNOTREADY frames get their TCP/UDP checksum completed.
 * Transmit: sendmmsg on the same socket (PACKET_QDISC_BYPASS), from any
 * thread: the kernel serialises sends, counters are atomic. */
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

struct afp {
    uint8_t *map;
    size_t map_len;
    uint32_t bsize, bnr;
    uint32_t cur;                      /* block being read */
    uint32_t opened;                   /* cur is ours and `left`/`next` are valid */
    uint32_t left;                     /* frames not yet taken from cur */
    uint8_t *next;                     /* next frame header in cur */
    uint32_t rel_start, n_rel;         /* consumed blocks not yet given back */
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
        if (--a->left) {
            if (nxt < sizeof *h || nxt > (size_t)(end - (uint8_t *)h) ||
                (size_t)(end - ((uint8_t *)h + nxt)) < sizeof *h) {
                errors += a->left;     /* corrupt chain: skip the rest */
                a->left = 0;
            } else {
                a->next = (uint8_t *)h + nxt;
            }
        }
        if (mac < sizeof *h + RESERVE || mac > (size_t)(end - (uint8_t *)h) ||
            snap > (size_t)(end - (uint8_t *)h) - mac) {
            errors++;
            continue;
        }
        uint8_t *f = (uint8_t *)h + mac;
        if (snap < len || len > p->max_frame) {
            oversize++;
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
        }
        if (st & TP_STATUS_CSUMNOTREADY)
            dp_csum_complete(f, snap);
        frames[n] = f;
        lens[n] = snap;
        bytes += snap;
        n++;
    }
    if (n) {
        DP_ADD(&p->st.rx_packets, n);
        DP_ADD(&p->st.rx_bytes, bytes);
    }
    if (oversize) {
        DP_ADD(&p->st.rx_oversize, oversize);
        DP_ADD(&p->st.rx_dropped, oversize);
    }
    if (errors)
        DP_ADD(&p->st.rx_errors, errors);
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
    struct mmsghdr m[TX_CHUNK];
    struct iovec iov[TX_CHUNK];
    uint64_t sent = 0, bytes = 0, dropped = 0, errors = 0;
    for (uint32_t base = 0; base < n; base += TX_CHUNK) {
        uint32_t k = n - base < TX_CHUNK ? n - base : TX_CHUNK;
        memset(m, 0, k * sizeof *m);
        for (uint32_t i = 0; i < k; i++) {
            iov[i].iov_base = (void *)frames[base + i];
            iov[i].iov_len = lens[base + i];
            m[i].msg_hdr.msg_iov = &iov[i];
            m[i].msg_hdr.msg_iovlen = 1;
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
    DP_ADD(&p->st.tx_packets, sent);
    DP_ADD(&p->st.tx_bytes, bytes);
    if (dropped)
        DP_ADD(&p->st.tx_dropped, dropped);
    if (errors)
        DP_ADD(&p->st.tx_errors, errors);
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
    uint32_t mtu = 0, up = 0;

    if (!p->ifindex) {
        if (!p->name[0])
            return dp_err(err, EINVAL, "system port %u: ifindex or name required", p->port_no);
        p->ifindex = if_nametoindex(p->name);
        if (!p->ifindex)
            return dp_err(err, ENODEV, "system port %u: no device %.16s", p->port_no, p->name);
    }
    if ((rc = dp_netdev_name(p->ifindex, p->name)) < 0)
        return dp_err(err, -rc, "system port %u: no device with ifindex %u", p->port_no,
                      p->ifindex);
    if ((rc = dp_netdev_mtu(p->name, &mtu)) < 0 || (rc = dp_netdev_link(p->name, &up)) < 0)
        return dp_err(err, -rc, "%s: cannot read MTU/link", p->name);
    p->mtu = mtu;
    p->max_frame = mtu + 14 + 8;
    p->link_up = up;
    if (p->max_frame + 256 > c->ring_block_size)
        return dp_err(err, EINVAL, "%s: MTU %u too large for ring blocks of %u bytes", p->name,
                      mtu, c->ring_block_size);

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
