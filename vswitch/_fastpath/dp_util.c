/* dp_util.c -- small helpers for the datapath: errors, netdev ioctls
 * (name, MTU, flags) and software checksum completion. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dp_private.h"

int dp_err(struct vs_error *err, int errnum, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->type = 0;
        err->code = (uint16_t)errnum;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -errnum;
}

static int ifreq_ioctl(unsigned long req, struct ifreq *ifr)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -errno;
    int rc = ioctl(s, req, ifr) < 0 ? -errno : 0;
    close(s);
    return rc;
}

static int ifreq_name(struct ifreq *ifr, const char *name)
{
    memset(ifr, 0, sizeof *ifr);
    size_t n = strnlen(name, IFNAMSIZ);
    if (n == 0 || n >= IFNAMSIZ)
        return -EINVAL;
    memcpy(ifr->ifr_name, name, n);
    return 0;
}

int dp_netdev_name(uint32_t ifindex, char name[VS_DP_NAME_LEN])
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_ifindex = (int)ifindex;
    int rc = ifreq_ioctl(SIOCGIFNAME, &ifr);
    if (rc == 0) {
        memcpy(name, ifr.ifr_name, VS_DP_NAME_LEN);
        name[VS_DP_NAME_LEN - 1] = 0;
    }
    return rc;
}

int dp_netdev_mtu(const char *name, uint32_t *mtu)
{
    struct ifreq ifr;
    int rc = ifreq_name(&ifr, name);
    if (rc == 0 && (rc = ifreq_ioctl(SIOCGIFMTU, &ifr)) == 0)
        *mtu = (uint32_t)ifr.ifr_mtu;
    return rc;
}

int dp_netdev_set_mtu(const char *name, uint32_t mtu)
{
    struct ifreq ifr;
    int rc = ifreq_name(&ifr, name);
    if (rc == 0) {
        ifr.ifr_mtu = (int)mtu;
        rc = ifreq_ioctl(SIOCSIFMTU, &ifr);
    }
    return rc;
}

int dp_netdev_flags(const char *name, uint32_t *flags)
{
    struct ifreq ifr;
    int rc = ifreq_name(&ifr, name);
    if (rc == 0 && (rc = ifreq_ioctl(SIOCGIFFLAGS, &ifr)) == 0)
        *flags = (uint16_t)ifr.ifr_flags;
    return rc;
}

int dp_netdev_set_up(const char *name)
{
    struct ifreq ifr;
    int rc = ifreq_name(&ifr, name);
    if (rc == 0 && (rc = ifreq_ioctl(SIOCGIFFLAGS, &ifr)) == 0) {
        ifr.ifr_flags |= IFF_UP;
        rc = ifreq_ioctl(SIOCSIFFLAGS, &ifr);
    }
    return rc;
}

int dp_netdev_link(const char *name, uint32_t *up)
{
    uint32_t flags = 0;
    int rc = dp_netdev_flags(name, &flags);
    if (rc < 0)
        return rc;
    if (!(flags & IFF_UP)) {
        *up = 0;
        return 0;
    }
    /* The carrier itself: IFF_RUNNING follows it only after linkwatch ran. */
    struct ethtool_value ev = {.cmd = ETHTOOL_GLINK};
    struct ifreq ifr;
    ifreq_name(&ifr, name);
    ifr.ifr_data = (char *)&ev;
    if (ifreq_ioctl(SIOCETHTOOL, &ifr) == 0)
        *up = ev.data != 0;
    else
        *up = (flags & IFF_RUNNING) != 0;
    return 0;
}

int dp_netdev_attach(struct dp_port *p, const char *kind, struct vs_error *err)
{
    uint32_t mtu = 0, up = 0;
    int rc;
    if (!p->ifindex) {
        if (!p->name[0])
            return dp_err(err, EINVAL, "%s port %u: ifindex or name required", kind, p->port_no);
        p->ifindex = if_nametoindex(p->name);
        if (!p->ifindex)
            return dp_err(err, ENODEV, "%s port %u: no device %.16s", kind, p->port_no, p->name);
    }
    if ((rc = dp_netdev_name(p->ifindex, p->name)) < 0)
        return dp_err(err, -rc, "%s port %u: no device with ifindex %u", kind, p->port_no,
                      p->ifindex);
    if ((rc = dp_netdev_mtu(p->name, &mtu)) < 0 || (rc = dp_netdev_link(p->name, &up)) < 0)
        return dp_err(err, -rc, "%s: cannot read MTU/link", p->name);
    p->mtu = mtu;
    p->max_frame = mtu + 14 + 8;
    p->link_up = up;
    return 0;
}

/* ---- checksums ------------------------------------------------------------- */

uint32_t dp_sum16(uint32_t sum, const uint8_t *p, uint32_t n)
{
    for (; n >= 2; p += 2, n -= 2)
        sum += dp_be16(p);
    if (n)
        sum += (uint32_t)p[0] << 8;
    return sum;
}

uint16_t dp_fold(uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)sum;
}

int dp_l4_csum_locate(const uint8_t *f, uint32_t len, struct dp_l4_csum *c)
{
    if (len < 14)
        return -1;
    uint32_t off = 12;
    uint16_t et = dp_be16(f + off);
    for (int tags = 0; (et == 0x8100 || et == 0x88a8) && tags < 2; tags++) {
        off += 4;
        if (off + 2 > len)
            return -1;
        et = dp_be16(f + off);
    }
    off += 2;
    uint32_t ph = 0;
    if (et == 0x0800) {
        if (off + 20 > len)
            return -1;
        uint32_t ihl = (f[off] & 0xfu) * 4;
        uint32_t tot = dp_be16(f + off + 2);
        if ((f[off] >> 4) != 4 || ihl < 20 || tot < ihl || tot > len - off)
            return -1;
        if (dp_be16(f + off + 6) & 0x3fff)
            return -1;                 /* a fragment: nothing to complete */
        c->proto = f[off + 9];
        c->l4 = off + ihl;
        c->l4len = tot - ihl;
        ph = dp_sum16(ph, f + off + 12, 8);
    } else if (et == 0x86dd) {
        if (off + 40 > len)
            return -1;
        uint32_t plen = dp_be16(f + off + 4);
        if (plen > len - off - 40)
            return -1;
        c->proto = f[off + 6];         /* extension headers: left alone */
        c->l4 = off + 40;
        c->l4len = plen;
        ph = dp_sum16(ph, f + off + 8, 32);
    } else {
        return -1;
    }
    if (c->proto == 6 && c->l4len >= 20)
        c->csum_off = c->l4 + 16;
    else if (c->proto == 17 && c->l4len >= 8)
        c->csum_off = c->l4 + 6;
    else
        return -1;
    c->pseudo = ph + c->proto + c->l4len;   /* l4len < 65536 + 40: no overflow */
    return 0;
}

/* A sender that leaves the checksum to the NIC (CHECKSUM_PARTIAL) hands
 * AF_PACKET a frame whose TCP/UDP checksum field holds only the pseudo-header
 * sum.  Forwarded as is, the receiver would drop it; compute it fully. */
void dp_csum_complete(uint8_t *f, uint32_t len)
{
    struct dp_l4_csum c;
    if (dp_l4_csum_locate(f, len, &c) < 0)
        return;
    f[c.csum_off] = f[c.csum_off + 1] = 0;
    uint16_t sum = (uint16_t)~dp_fold(dp_sum16(c.pseudo, f + c.l4, c.l4len));
    if (c.proto == 17 && sum == 0)
        sum = 0xffff;
    dp_put16(f + c.csum_off, sum);
}

void dp_count_rx(struct dp_port *p, uint32_t n, uint64_t bytes, uint64_t oversize,
                 uint64_t errors)
{
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
}

void dp_count_tx(struct dp_port *p, uint64_t sent, uint64_t bytes, uint64_t dropped,
                 uint64_t errors)
{
    DP_ADD(&p->st.tx_packets, sent);
    DP_ADD(&p->st.tx_bytes, bytes);
    if (dropped)
        DP_ADD(&p->st.tx_dropped, dropped);
    if (errors)
        DP_ADD(&p->st.tx_errors, errors);
}
