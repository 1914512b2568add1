/* dp_port_vxlan.c -- `vxlan` tunnel ports (RFC 7348).  The contract is in
 * datapath.h (VXLAN tunnel ports); why a UDP socket for receive and
 * AF_PACKET for transmit: docs/datapath.md.
 *
 * Receive: recvmmsg on a non-blocking UDP socket bound to local_ip:dst_port
 * into per-port slots; the inner frame starts 8 bytes into its slot.  The
 * kernel has checked the outer IP/UDP headers (and reassembled fragments);
 * a bound socket also stops the kernel from answering ICMP port
 * unreachable.  Checks per datagram, each with its own counter: length,
 * VXLAN flags word, sender, VNI.
 *
 * Transmit: per frame, a 50-byte outer header (Ethernet, IPv4, UDP, VXLAN)
 * is written into a stack array and sent with the inner frame as a second
 * iovec (no copy of the inner frame), one sendmmsg per batch on an
 * AF_PACKET socket (protocol 0: it receives nothing) addressed to the
 * egress ifindex.
 *
 * Locking: the route (vs_dp_vxlan_set_route) and the port's mtu/max_frame
 * change only under the datapath's write lock (and the global mutex, as
 * every port-table writer; link state follows through vs_dp_set_port_link,
 * which the control plane calls after a route change); transmitters hold the read lock, so a tx call
 * sees one route from start to end.  Counters are relaxed atomics.  The
 * receive slots belong to the port's poll thread. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "dp_private.h"

#define VX_HDR 8u                      /* VXLAN header */
#define VX_OUTER 50u                   /* Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8 */
#define VX_SLOT (9216u + 64u)          /* jumbo underlay datagram + slack */
#define VX_TXB 64u                     /* frames per sendmmsg */
#define VX_CTL 64u                     /* cmsgs: SO_RXQ_OVFL, IP_PKTINFO */
#define VX_SPORT_MIN 32768u            /* outer source ports (as OVS's default range) */
#define VX_SPORT_SPAN (61000u - 32768u)

/* The vxlan ports of one datapath that share a receive socket (same
 * local_ip and dst_port): one socket per UDP port, as the kernel allows,
 * and datagrams go to the member whose remote_ip sent them and whose key
 * is their VNI (a key=flow member takes any VNI from its remote).  The
 * first member's port owns the socket's receive side (p->fd, a poll
 * thread); the others have fd -1.  When the owner goes, the next member
 * takes the socket over in the same poll thread (vx_close).
 * Groups are created and members added or removed only by port-table
 * writers (global mutex held) and, for the member array the owner's poll
 * thread reads, under the datapath's write lock as well. */
struct vx_group {
    struct vs_dp *dp;
    uint8_t local_ip[4];
    uint16_t dst_port;
    int fd;
    struct dp_port **members;
    uint32_t n, cap;
    struct vx_group *next;
    /* Datagrams from an address no member has as remote_ip (atomic). */
    uint64_t unknown_remote;
    /* Datagrams the kernel dropped with the socket's buffer full: its
     * cumulative count (SO_RXQ_OVFL), as last seen (atomic). */
    uint64_t sock_drops;
};
static struct vx_group *g_groups;      /* global mutex */

/* A remote of a flow-based port (remote_ip=flow): open addressing on the
 * destination address; entries are never removed, a withdrawn route keeps
 * its slot with ifindex 0 (so probing stays simple).  Written under the
 * write lock only. */
#define VX_DEST_BITS 9
#define VX_DEST_SLOTS (1u << VX_DEST_BITS)
#define VX_DEST_MAX 256u               /* remotes per flow-based port (half the slots) */
#define VX_WANTED 64u                  /* unresolved destinations queued for the resolver */
struct vx_dest {
    uint32_t dst;                      /* network order; 0 = free slot */
    uint32_t pad;
    struct vs_dp_vxlan_route r;
    uint64_t tx_packets;               /* atomic */
};

struct vxlan {
    struct vs_dp_vxlan_config cfg;
    struct vs_dp_vxlan_route route;    /* write lock to change; see above */
    struct vx_dest *dests;             /* remote_ip=flow: VX_DEST_SLOTS */
    uint32_t n_dests;
    uint32_t wanted[VX_WANTED];        /* lossy; atomic slots, 0 = empty */
    uint32_t wanted_at;
    struct vx_group *group;
    int tx_fd;                         /* AF_PACKET, send only */
    uint32_t ip_id;                    /* outer IPv4 id (atomic) */
    /* Receive side, used while this port owns the group's socket. */
    uint8_t *slots;                    /* batch * VX_SLOT */
    struct mmsghdr *msgs;
    struct iovec *iov;
    struct sockaddr_in *from;
    uint8_t *ctl;                      /* batch * VX_CTL: SO_RXQ_OVFL cmsgs */
    struct vs_tun_md *md;              /* tunnel metadata of each frame of the last rx */
    uint32_t *in_port;                 /* member port of each frame of the last rx */
    struct vs_dp_vxlan_stats st;       /* relaxed atomics */
};

/* The outer UDP source port: a hash of the inner flow (addresses, and for
 * IPv4 the protocol and the first 4 L4 bytes, i.e. TCP/UDP ports), so that
 * ECMP underlays spread flows but keep each one in order. */
static uint16_t inner_hash_port(const uint8_t *f, uint32_t len)
{
    uint32_t h = 2166136261u;
    uint32_t n = len < 14 ? len : 14;
    for (uint32_t i = 0; i < n; i++)
        h = (h ^ f[i]) * 16777619u;
    uint32_t l3 = 14;
    if (len >= 18 && dp_be16(f + 12) == 0x8100)
        l3 = 18;
    if (len >= l3 + 20 && dp_be16(f + l3 - 2) == 0x0800 && (f[l3] >> 4) == 4) {
        uint32_t ihl = (f[l3] & 0xf) * 4u;
        for (uint32_t i = 9; i < 20; i++)      /* proto, (csum), addresses */
            if (i != 10 && i != 11)
                h = (h ^ f[l3 + i]) * 16777619u;
        bool first = !(dp_be16(f + l3 + 6) & 0x1fff);
        if (ihl >= 20 && first && len >= l3 + ihl + 4)
            for (uint32_t i = 0; i < 4; i++)
                h = (h ^ f[l3 + ihl + i]) * 16777619u;
    }
    h ^= h >> 16;
    return (uint16_t)(VX_SPORT_MIN + h % VX_SPORT_SPAN);
}

/* ---- receive ------------------------------------------------------------------ */

/* The member for a datagram from src with this VNI: exact key first, else
 * a key=flow member of that remote.  *known: some member has src as remote
 * (then the datagram's errors are counted on it). */
static struct dp_port *vx_demux(const struct vx_group *g, uint32_t src, uint32_t vni,
                                struct dp_port **known)
{
    struct dp_port *flow = NULL;
    *known = NULL;
    /* Ports with src as their fixed remote first, then remote_ip=flow ports
     * (a sender no fixed port knows). */
    for (int pass = 0; pass < 2 && !*known; pass++) {
        for (uint32_t i = 0; i < g->n; i++) {
            struct dp_port *m = g->members[i];
            const struct vxlan *v = m->priv;
            uint32_t r;
            memcpy(&r, v->cfg.remote_ip, 4);
            if (pass == 0 ? (v->cfg.remote_flow || r != src) : !v->cfg.remote_flow)
                continue;
            if (!*known)
                *known = m;
            if (v->cfg.key_flow)
                flow = flow ? flow : m;
            else if (v->cfg.key == vni)
                return m;
        }
    }
    return flow;
}

static uint32_t vx_rx(struct dp_port *p, const uint8_t **frames, uint32_t *lens, uint32_t max)
{
    struct vxlan *v = p->priv;
    struct vx_group *g = v->group;
    if (max > p->batch)
        max = p->batch;
    for (uint32_t i = 0; i < max; i++) {
        v->iov[i] = (struct iovec){v->slots + (size_t)i * VX_SLOT, VX_SLOT};
        v->msgs[i].msg_hdr = (struct msghdr){
            .msg_name = &v->from[i], .msg_namelen = sizeof v->from[i],
            .msg_iov = &v->iov[i], .msg_iovlen = 1,
            .msg_control = v->ctl + (size_t)i * VX_CTL, .msg_controllen = VX_CTL};
        v->msgs[i].msg_len = 0;
    }
    int r;
    do {
        r = recvmmsg(p->fd, v->msgs, max, MSG_DONTWAIT, NULL);
    } while (r < 0 && errno == EINTR);
    if (r <= 0) {
        if (r < 0 && errno != EAGAIN)
            dp_count_rx(p, 0, 0, 0, 1);
        return 0;
    }
    /* Per datagram: the address it was sent to (IP_PKTINFO: tun_ipv4_dst);
     * the socket's drop count (SO_RXQ_OVFL), newest in the last one. */
    uint32_t local_ip[VS_MAX_BATCH];
    for (int i = 0; i < r; i++) {
        struct msghdr *mh = &v->msgs[i].msg_hdr;
        memcpy(&local_ip[i], g->local_ip, 4);
        for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
            if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO &&
                c->cmsg_len >= CMSG_LEN(sizeof(struct in_pktinfo))) {
                struct in_pktinfo pi;
                memcpy(&pi, CMSG_DATA(c), sizeof pi);
                memcpy(&local_ip[i], &pi.ipi_addr, 4);
            } else if (i == r - 1 && c->cmsg_level == SOL_SOCKET &&
                       c->cmsg_type == SO_RXQ_OVFL &&
                       c->cmsg_len >= CMSG_LEN(sizeof(uint32_t))) {
                uint32_t drops;
                memcpy(&drops, CMSG_DATA(c), sizeof drops);
                DP_STORE(&g->sock_drops, (uint64_t)drops);
            }
        }
    }
    uint32_t n = 0;
    for (int i = 0; i < r; i++) {
        const uint8_t *d = v->slots + (size_t)i * VX_SLOT;
        uint32_t len = v->msgs[i].msg_len;
        uint32_t vni = len >= VX_HDR ? (uint32_t)d[4] << 16 | (uint32_t)d[5] << 8 | d[6] : 0;
        struct dp_port *known;
        struct dp_port *m = vx_demux(g, v->from[i].sin_addr.s_addr, vni, &known);
        if (!known) {
            DP_ADD(&g->unknown_remote, 1);
            dp_count_rx(p, 0, 0, 0, 1);
            continue;
        }
        struct vxlan *mv = known->priv;
        if (v->msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
            DP_ADD(&mv->st.rx_truncated, 1);
            dp_count_rx(known, 0, 0, 0, 1);
            continue;
        }
        if (len < VX_HDR + 14) {
            DP_ADD(&mv->st.rx_short, 1);
            dp_count_rx(known, 0, 0, 0, 1);
            continue;
        }
        /* Flags: only I (0x08) set; the reserved 24 bits and the byte after
         * the VNI are zero (as the Linux driver without GBP/GPE requires). */
        if (d[0] != 0x08 || d[1] || d[2] || d[3] || d[7]) {
            DP_ADD(&mv->st.rx_bad_header, 1);
            dp_count_rx(known, 0, 0, 0, 1);
            continue;
        }
        if (!m) {
            DP_ADD(&mv->st.rx_unknown_vni, 1);
            dp_count_rx(known, 0, 0, 0, 1);
            continue;
        }
        uint32_t flen = len - VX_HDR;
        if (flen > m->max_frame) {
            dp_count_rx(m, 0, 0, 1, 0);
            continue;
        }
        frames[n] = d + VX_HDR;
        lens[n] = flen;
        v->md[n] = (struct vs_tun_md){.tunnel_id = vni};
        memcpy(v->md[n].ipv4_src, &v->from[i].sin_addr.s_addr, 4);
        memcpy(v->md[n].ipv4_dst, &local_ip[i], 4);
        v->in_port[n] = m->port_no;
        dp_count_rx(m, 1, flen, 0, 0);
        DP_ADD(&((struct vxlan *)m->priv)->st.rx_packets, 1);
        n++;
    }
    return n;
}

static void vx_rx_meta(struct dp_port *p, uint32_t *in_ports, struct vs_tun_md *md, uint32_t n)
{
    struct vxlan *v = p->priv;
    memcpy(md, v->md, (size_t)n * sizeof *md);
    memcpy(in_ports, v->in_port, (size_t)n * sizeof *in_ports);
}

static void vx_rx_done(struct dp_port *p) { (void)p; }

/* ---- transmit ----------------------------------------------------------------- */

/* A flow-based port's route to dst (network order), NULL if not resolved:
 * the destination is then queued for the control plane (lossy ring). */
static const struct vx_dest *vx_dest_find(struct vxlan *v, uint32_t dst)
{
    uint32_t h = (dst * 2654435761u) >> (32 - VX_DEST_BITS);
    for (uint32_t i = 0; i < VX_DEST_SLOTS; i++) {
        struct vx_dest *d = &v->dests[(h + i) & (VX_DEST_SLOTS - 1)];
        if (!d->dst)
            return NULL;
        if (d->dst == dst)
            return d->r.ifindex ? d : NULL;
    }
    return NULL;
}

static void vx_want(struct vxlan *v, uint32_t dst)
{
    for (uint32_t i = 0; i < VX_WANTED; i++)
        if (DP_LOAD(&v->wanted[i]) == dst)
            return;
    uint32_t at = DP_ADD(&v->wanted_at, 1) % VX_WANTED;
    DP_STORE(&v->wanted[at], dst);
}

static void vx_tx_tun(struct dp_port *p, const uint8_t *const *frames, const uint32_t *lens,
                      const uint64_t *tun_ids, const uint32_t *tun_dsts, uint32_t n)
{
    struct vxlan *v = p->priv;
    bool flow = v->cfg.remote_flow;
    if (!flow && !v->route.ifindex) {
        DP_ADD(&v->st.tx_unresolved, n);
        dp_count_tx(p, 0, 0, n, 0);
        return;
    }
    uint8_t hdr[VX_TXB][VX_OUTER];
    struct iovec iov[VX_TXB][2];
    struct mmsghdr msgs[VX_TXB];
    struct sockaddr_ll to[VX_TXB];
    struct vx_dest *counted[VX_TXB];   /* per-remote counters of flow-based ports */
    uint32_t fixed_remote;
    memcpy(&fixed_remote, v->cfg.remote_ip, 4);
    uint16_t dport = v->cfg.dst_port;
    uint64_t sent = 0, bytes = 0, dropped = 0, errors = 0, unresolved = 0;
    for (uint32_t i = 0; i < n;) {
        uint32_t k = 0;
        for (; i < n && k < VX_TXB; i++) {
            uint32_t len = lens[i];
            const struct vs_dp_vxlan_route *rt = &v->route;
            uint32_t remote = fixed_remote;
            counted[k] = NULL;
            if (flow) {
                remote = tun_dsts[i];
                const struct vx_dest *d = remote ? vx_dest_find(v, remote) : NULL;
                if (!d) {
                    if (remote)
                        vx_want(v, remote);
                    unresolved++;
                    continue;
                }
                rt = &d->r;
                counted[k] = (struct vx_dest *)d;
            }
            /* The outer IPv4 packet must fit the egress MTU (flush()
             * already dropped what exceeds max_frame; this is the exact
             * bound for untagged inner frames too). */
            if (len < 14 || len + 36 > rt->mtu) {
                dropped++;
                DP_ADD(&p->st.tx_oversize, len >= 14);
                continue;
            }
            to[k] = (struct sockaddr_ll){.sll_family = AF_PACKET,
                                         .sll_protocol = htons(ETH_P_IP),
                                         .sll_ifindex = (int)rt->ifindex, .sll_halen = 6};
            memcpy(to[k].sll_addr, rt->dst_mac, 6);
            uint8_t *h = hdr[k];
            memcpy(h, rt->dst_mac, 6);
            memcpy(h + 6, rt->src_mac, 6);
            dp_put16(h + 12, 0x0800);
            uint8_t *ip = h + 14;
            ip[0] = 0x45;
            ip[1] = v->cfg.tos;
            dp_put16(ip + 2, (uint16_t)(len + 36));
            dp_put16(ip + 4, (uint16_t)DP_ADD(&v->ip_id, 1));
            dp_put16(ip + 6, v->cfg.df ? 0x4000 : 0);
            ip[8] = v->cfg.ttl;
            ip[9] = 17;
            ip[10] = ip[11] = 0;
            memcpy(ip + 12, rt->src_ip, 4);
            memcpy(ip + 16, &remote, 4);
            dp_put16(ip + 10, (uint16_t)~dp_fold(dp_sum16(0, ip, 20)));
            uint8_t *udp = ip + 20;
            dp_put16(udp, inner_hash_port(frames[i], len));
            dp_put16(udp + 2, dport);
            dp_put16(udp + 4, (uint16_t)(len + 16));
            udp[6] = udp[7] = 0;       /* no checksum: allowed for IPv4 (RFC 7348 5.) */
            uint8_t *vx = udp + 8;
            uint32_t vni = v->cfg.key_flow ? (uint32_t)(tun_ids[i] & 0xffffff) : v->cfg.key;
            vx[0] = 0x08;
            vx[1] = vx[2] = vx[3] = 0;
            vx[4] = (uint8_t)(vni >> 16);
            vx[5] = (uint8_t)(vni >> 8);
            vx[6] = (uint8_t)vni;
            vx[7] = 0;
            iov[k][0] = (struct iovec){h, VX_OUTER};
            iov[k][1] = (struct iovec){(void *)frames[i], len};
            msgs[k].msg_hdr = (struct msghdr){.msg_name = &to[k], .msg_namelen = sizeof to[k],
                                              .msg_iov = iov[k], .msg_iovlen = 2};
            msgs[k].msg_len = 0;
            k++;
        }
        uint32_t done = 0;
        while (done < k) {
            int r = sendmmsg(v->tx_fd, msgs + done, k - done, MSG_DONTWAIT);
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == ENOBUFS || errno == ENETDOWN ||
                    errno == ENXIO) {
                    dropped += k - done;   /* busy or down: as other ports count it */
                } else {
                    errors += k - done;
                    DP_ADD(&v->st.tx_errors, k - done);
                }
                break;
            }
            for (int j = 0; j < r; j++) {
                bytes += msgs[done + j].msg_len;
                if (counted[done + j])
                    DP_ADD(&counted[done + j]->tx_packets, 1);
            }
            done += (uint32_t)r;
            sent += (uint32_t)r;
        }
    }
    if (unresolved)
        DP_ADD(&v->st.tx_unresolved, unresolved);
    DP_ADD(&v->st.tx_packets, sent);
    dp_count_tx(p, sent, bytes, dropped + unresolved, errors);
}

static void vx_tx(struct dp_port *p, const uint8_t *const *frames, const uint32_t *lens,
                  uint32_t n)
{
    uint64_t zero[VX_TXB];
    for (uint32_t i = 0; i < n;) {
        uint32_t k = n - i < VX_TXB ? n - i : VX_TXB;
        memset(zero, 0, k * sizeof *zero);
        vx_tx_tun(p, frames + i, lens + i, zero, (const uint32_t *)zero, k);
        i += k;
    }
}

static void vx_error(struct dp_port *p)
{
    int e = 0;
    socklen_t l = sizeof e;
    getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &e, &l);   /* clears it; nothing to do */
}

static void vx_free_rx(struct vxlan *v)
{
    free(v->slots);
    free(v->msgs);
    free(v->iov);
    free(v->from);
    free(v->ctl);
    free(v->md);
    free(v->in_port);
    v->ctl = NULL;
    v->slots = NULL;
    v->msgs = NULL;
    v->iov = NULL;
    v->from = NULL;
    v->md = NULL;
    v->in_port = NULL;
}

static int vx_alloc_rx(struct vxlan *v, size_t b)
{
    v->slots = malloc(b * VX_SLOT);
    v->msgs = calloc(b, sizeof *v->msgs);
    v->iov = calloc(b, sizeof *v->iov);
    v->from = calloc(b, sizeof *v->from);
    v->ctl = calloc(b, VX_CTL);
    v->md = calloc(b, sizeof *v->md);
    v->in_port = calloc(b, sizeof *v->in_port);
    if (!v->slots || !v->msgs || !v->iov || !v->from || !v->ctl || !v->md || !v->in_port) {
        vx_free_rx(v);
        return -ENOMEM;
    }
    return 0;
}

/* The owner p leaves a group that still has members: the first of them
 * takes over the socket in p's poll thread.  Global mutex held; the
 * datapath's write lock is taken here (del_port has released it). */
/* Take an empty group off g_groups and free it with its socket (global mutex). */
static void vx_group_free(struct vx_group *g)
{
    for (struct vx_group **pp = &g_groups; *pp; pp = &(*pp)->next) {
        if (*pp == g) {
            *pp = g->next;
            break;
        }
    }
    close(g->fd);
    free(g->members);
    free(g);
}

static void vx_handover(struct vx_group *g, struct dp_port *p)
{
    struct vs_dp *dp = g->dp;
    if (DP_LOAD(&dp->stop) || p->thread < 0)
        return;                        /* the datapath is going away */
    struct dp_thread *t = &dp->threads[p->thread];
    for (uint32_t i = 0; i < g->n; i++) {
        struct dp_port *m = g->members[i];
        struct vxlan *mv = m->priv;
        if (!m->id || vx_alloc_rx(mv, m->batch) < 0)
            continue;                  /* not in the table yet / no memory: next */
        pthread_rwlock_wrlock(&dp->lock);
        bool ok = false;
        if (t->n_rx == t->cap_rx) {
            uint32_t cap = t->cap_rx ? 2 * t->cap_rx : 8;
            struct dp_port **n = realloc(t->rx, cap * sizeof *n);
            if (n) {
                t->rx = n;
                t->cap_rx = cap;
            }
        }
        if (t->n_rx < t->cap_rx) {
            struct epoll_event ev = {.events = EPOLLIN, .data.u64 = m->id};
            if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, g->fd, &ev) == 0) {
                m->fd = g->fd;
                m->thread = (int32_t)t->idx;
                t->rx[t->n_rx++] = m;
                ok = true;
            }
        }
        pthread_rwlock_unlock(&dp->lock);
        if (ok) {
            dp_thread_wake(t);
            return;
        }
        vx_free_rx(mv);
    }
}

static void vx_leave(struct dp_port *p)
{
    struct vxlan *v = p->priv;
    struct vx_group *g = v->group;
    if (!g)
        return;
    v->group = NULL;
    bool owner = p->fd >= 0 && p->fd == g->fd;
    /* The owner's poll thread reads the member array: change it under the
     * write lock (not needed once the threads are stopped). */
    bool lock = !DP_LOAD(&g->dp->stop);
    if (lock)
        pthread_rwlock_wrlock(&g->dp->lock);
    for (uint32_t i = 0; i < g->n; i++) {
        if (g->members[i] == p) {
            memmove(&g->members[i], &g->members[i + 1], (g->n - i - 1) * sizeof *g->members);
            g->n--;
            break;
        }
    }
    if (lock)
        pthread_rwlock_unlock(&g->dp->lock);
    if (owner)
        p->fd = -1;                    /* the socket is the group's */
    if (g->n) {
        if (owner)
            vx_handover(g, p);
        return;
    }
    vx_group_free(g);
}

static void vx_close(struct dp_port *p)
{
    struct vxlan *v = p->priv;
    if (v) {
        vx_leave(p);
        if (v->tx_fd >= 0)
            close(v->tx_fd);
        vx_free_rx(v);
        free(v->dests);
        free(v);
    }
    p->priv = NULL;
    p->fd = -1;
}

static const struct dp_port_ops vx_ops = {
    .rx = vx_rx, .rx_done = vx_rx_done, .tx = vx_tx, .error = vx_error, .close = vx_close,
    .rx_meta = vx_rx_meta, .tx_tun = vx_tx_tun,
};

static void ip_text(const uint8_t ip[4], char *buf, size_t n)
{
    inet_ntop(AF_INET, ip, buf, (socklen_t)n);
}

static struct vx_group *vx_group_find(struct vs_dp *dp, const struct vs_dp_vxlan_config *c)
{
    for (struct vx_group *g = g_groups; g; g = g->next)
        if (g->dp == dp && g->dst_port == c->dst_port && !memcmp(g->local_ip, c->local_ip, 4))
            return g;
    return NULL;
}

static int vx_group_new(struct vs_dp *dp, struct dp_port *p, const struct vs_dp_vxlan_config *c,
                        struct vx_group **out, struct vs_error *err)
{
    struct vx_group *g = calloc(1, sizeof *g);
    if (!g)
        return dp_err(err, ENOMEM, "out of memory");
    g->dp = dp;
    memcpy(g->local_ip, c->local_ip, 4);
    g->dst_port = c->dst_port;
    g->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (g->fd < 0) {
        int e = errno;
        free(g);
        return dp_err(err, e, "vxlan port %u: socket: %s", p->port_no, strerror(e));
    }
    /* A deep buffer absorbs bursts while the poll thread is busy; FORCE
     * (we are root) goes past net.core.rmem_max. */
    int rcvbuf = 8 << 20, one = 1;
    if (setsockopt(g->fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0)
        setsockopt(g->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    setsockopt(g->fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof one);
    setsockopt(g->fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(c->dst_port)};
    memcpy(&sa.sin_addr, c->local_ip, 4);
    if (bind(g->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int e = errno;
        char ip[INET_ADDRSTRLEN];
        ip_text(c->local_ip, ip, sizeof ip);
        close(g->fd);
        free(g);
        return dp_err(err, e, "vxlan port %u: bind %s:%u: %s%s", p->port_no, ip, c->dst_port,
                      strerror(e), e == EADDRINUSE ? " (another bridge or program has this "
                                                    "UDP port)" : "");
    }
    g->next = g_groups;
    g_groups = g;
    *out = g;
    return 0;
}

/* Called by vs_dp_add_port with the global mutex held, before the port is
 * in the table (p->id is still 0 until add_port gives it one). */
int dp_vxlan_open(struct vs_dp *dp, struct dp_port *p, const struct vs_dp_port_config *cfg,
                  struct vs_error *err)
{
    const struct vs_dp_vxlan_config *c = cfg->vxlan;
    if (!c)
        return dp_err(err, EINVAL, "vxlan port %u: options required", p->port_no);
    uint32_t remote;
    memcpy(&remote, c->remote_ip, 4);
    if (!remote && !c->remote_flow)
        return dp_err(err, EINVAL, "vxlan port %u: remote_ip required", p->port_no);
    if (remote && c->remote_flow)
        return dp_err(err, EINVAL, "vxlan port %u: remote_ip=flow takes no address",
                      p->port_no);
    if (!c->key_flow && c->key > 0xffffff)
        return dp_err(err, EINVAL, "vxlan port %u: key %u is not a 24-bit VNI", p->port_no,
                      c->key);
    struct vxlan *v = calloc(1, sizeof *v);
    if (!v)
        return dp_err(err, ENOMEM, "out of memory");
    p->priv = v;
    p->ops = &vx_ops;
    p->fd = -1;
    v->tx_fd = -1;
    v->cfg = *c;
    if (!v->cfg.dst_port)
        v->cfg.dst_port = 4789;
    if (!v->cfg.ttl)
        v->cfg.ttl = 64;
    int rc;
    struct vx_group *g = vx_group_find(dp, &v->cfg);
    if (g) {
        for (uint32_t i = 0; i < g->n; i++) {
            const struct vxlan *o = g->members[i]->priv;
            if (!memcmp(o->cfg.remote_ip, c->remote_ip, 4) && o->cfg.key_flow == v->cfg.key_flow &&
                o->cfg.remote_flow == v->cfg.remote_flow &&
                (v->cfg.key_flow || o->cfg.key == v->cfg.key)) {
                char ip[INET_ADDRSTRLEN];
                ip_text(c->remote_ip, ip, sizeof ip);
                rc = dp_err(err, EEXIST, "vxlan port %u: port %u already tunnels to %s with "
                            "this key", p->port_no, g->members[i]->port_no,
                            v->cfg.remote_flow ? "flow" : ip);
                goto fail;
            }
        }
    } else if ((rc = vx_group_new(dp, p, &v->cfg, &g, err)) < 0) {
        goto fail;
    }
    if (g->cap == g->n) {
        uint32_t cap = g->cap ? 2 * g->cap : 8;
        struct dp_port **m = realloc(g->members, cap * sizeof *m);
        if (!m) {
            rc = dp_err(err, ENOMEM, "out of memory");
            goto fail_group;
        }
        g->members = m;
        g->cap = cap;
    }
    bool first = g->n == 0;
    if (first && (rc = vx_alloc_rx(v, p->batch)) < 0) {
        rc = dp_err(err, ENOMEM, "out of memory");
        goto fail_group;
    }
    if (v->cfg.remote_flow && !(v->dests = calloc(VX_DEST_SLOTS, sizeof *v->dests))) {
        rc = dp_err(err, ENOMEM, "out of memory");
        goto fail_group;
    }
    v->tx_fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
    if (v->tx_fd < 0) {
        rc = dp_err(err, errno, "vxlan port %u: AF_PACKET: %s", p->port_no, strerror(errno));
        goto fail_group;
    }
    int sndbuf = 4 << 20;
    if (setsockopt(v->tx_fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof sndbuf) < 0)
        setsockopt(v->tx_fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    pthread_rwlock_wrlock(&dp->lock);  /* the owner's poll thread reads members */
    g->members[g->n++] = p;
    pthread_rwlock_unlock(&dp->lock);
    v->group = g;
    if (first)
        p->fd = g->fd;                 /* the receive side: add_port gives it a thread */
    /* Until the control plane pushes a route: no egress, a nominal MTU. */
    p->mtu = 1500 - VX_OUTER;
    p->max_frame = 1500 - 36;
    p->link_up = 0;
    p->ifindex = 0;
    return 0;
fail_group:
    if (g->n == 0) {                   /* made for us: undo */
        vx_group_free(g);
    }
fail:
    vx_close(p);
    return rc;
}

/* ---- control ---------------------------------------------------------------------- */

int vs_dp_vxlan_set_route(struct vs_dp *dp, uint32_t port_no, const struct vs_dp_vxlan_route *r)
{
    if (r->ifindex && (r->mtu < 68 + VX_OUTER || r->mtu > VS_DP_MAX_FRAME - 14))
        return -EINVAL;
    dp_global_lock();
    pthread_rwlock_wrlock(&dp->lock);
    struct dp_port *p = dp_find_port(dp, port_no);
    int rc = 0;
    if (!p || p->type != VS_DP_PORT_VXLAN) {
        rc = -ENOENT;
    } else {
        struct vxlan *v = p->priv;
        v->route = *r;
        if (r->ifindex) {
            /* Inner frame + 36 bytes of IPv4/UDP/VXLAN <= the egress MTU. */
            p->mtu = r->mtu - VX_OUTER;
            p->max_frame = r->mtu - 36;
        }
        DP_ADD(&v->st.route_updates, 1);
    }
    pthread_rwlock_unlock(&dp->lock);
    dp_global_unlock();
    return rc;
}

int vs_dp_vxlan_set_dest(struct vs_dp *dp, uint32_t port_no, const uint8_t dst[4],
                         const struct vs_dp_vxlan_route *r)
{
    uint32_t d;
    memcpy(&d, dst, 4);
    if (!d || (r->ifindex && (r->mtu < 68 + VX_OUTER || r->mtu > VS_DP_MAX_FRAME - 14)))
        return -EINVAL;
    dp_global_lock();
    pthread_rwlock_wrlock(&dp->lock);
    struct dp_port *p = dp_find_port(dp, port_no);
    struct vxlan *v = p && p->type == VS_DP_PORT_VXLAN ? p->priv : NULL;
    int rc = -ENOENT;
    if (v && v->dests) {
        uint32_t h = (d * 2654435761u) >> (32 - VX_DEST_BITS);
        struct vx_dest *slot = NULL;
        for (uint32_t i = 0; i < VX_DEST_SLOTS; i++) {
            struct vx_dest *e = &v->dests[(h + i) & (VX_DEST_SLOTS - 1)];
            if (e->dst == d || !e->dst) {
                slot = e;
                break;
            }
        }
        if (slot && !slot->dst && v->n_dests >= VX_DEST_MAX)
            slot = NULL;
        if (!slot) {
            rc = -ENOSPC;
        } else {
            if (!slot->dst)
                v->n_dests++;
            slot->dst = d;
            slot->r = *r;
            /* The port's MTU: the smallest of its resolved remotes'. */
            uint32_t min = 0;
            for (uint32_t i = 0; i < VX_DEST_SLOTS; i++) {
                uint32_t m = v->dests[i].r.ifindex ? v->dests[i].r.mtu : 0;
                if (m && (!min || m < min))
                    min = m;
            }
            if (min) {
                p->mtu = min - VX_OUTER;
                p->max_frame = min - 36;
            }
            DP_ADD(&v->st.route_updates, 1);
            rc = 0;
        }
    }
    pthread_rwlock_unlock(&dp->lock);
    dp_global_unlock();
    return rc;
}

size_t vs_dp_vxlan_wanted(struct vs_dp *dp, uint32_t port_no, uint8_t *out, size_t max)
{
    size_t n = 0;
    pthread_rwlock_rdlock(&dp->lock);
    struct dp_port *p = dp_find_port(dp, port_no);
    struct vxlan *v = p && p->type == VS_DP_PORT_VXLAN ? p->priv : NULL;
    if (v && v->dests) {
        for (uint32_t i = 0; i < VX_WANTED && n < max; i++) {
            uint32_t d = __atomic_exchange_n(&v->wanted[i], 0, __ATOMIC_RELAXED);
            if (d)
                memcpy(out + 4 * n++, &d, 4);
        }
    }
    pthread_rwlock_unlock(&dp->lock);
    return n;
}

size_t vs_dp_vxlan_dests(struct vs_dp *dp, uint32_t port_no, struct vs_dp_vxlan_dest *out,
                         size_t max)
{
    size_t n = 0;
    pthread_rwlock_rdlock(&dp->lock);
    struct dp_port *p = dp_find_port(dp, port_no);
    struct vxlan *v = p && p->type == VS_DP_PORT_VXLAN ? p->priv : NULL;
    if (v && v->dests) {
        for (uint32_t i = 0; i < VX_DEST_SLOTS && n < max; i++) {
            const struct vx_dest *d = &v->dests[i];
            if (!d->dst)
                continue;
            memset(&out[n], 0, sizeof out[n]);
            memcpy(out[n].dst, &d->dst, 4);
            out[n].ifindex = d->r.ifindex;
            out[n].mtu = d->r.mtu;
            out[n].tx_packets = DP_LOAD(&d->tx_packets);
            n++;
        }
    }
    pthread_rwlock_unlock(&dp->lock);
    return n;
}

int vs_dp_vxlan_stats(struct vs_dp *dp, uint32_t port_no, struct vs_dp_vxlan_stats *out)
{
    pthread_rwlock_rdlock(&dp->lock);
    struct dp_port *p = dp_find_port(dp, port_no);
    int rc = 0;
    if (!p || p->type != VS_DP_PORT_VXLAN) {
        rc = -ENOENT;
    } else {
        struct vxlan *v = p->priv;
        const uint64_t *src = (const uint64_t *)&v->st;
        uint64_t *dst = (uint64_t *)out;
        size_t n64 = offsetof(struct vs_dp_vxlan_stats, resolved) / sizeof(uint64_t);
        for (size_t i = 0; i < n64; i++)
            dst[i] = DP_LOAD(&src[i]);
        if (v->group) {
            out->rx_unknown_remote = DP_LOAD(&v->group->unknown_remote);
            out->rx_socket_drops = DP_LOAD(&v->group->sock_drops);
        }
        out->resolved = v->route.ifindex != 0;
        out->ifindex = v->route.ifindex;
        out->underlay_mtu = v->route.mtu;
        out->pad = 0;
    }
    pthread_rwlock_unlock(&dp->lock);
    return rc;
}
