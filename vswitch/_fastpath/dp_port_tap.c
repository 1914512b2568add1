/* dp_port_tap.c -- `tap` and `internal` ports: a TAP device the datapath
 * creates (/dev/net/tun, IFF_TAP|IFF_NO_PI, non-blocking, not persistent:
 * closing the fd removes the device, even after it was moved into another
 * network namespace).
 *
 * Receive: read() into per-port slots (one per batch entry), until EAGAIN
 * or the batch is full.  Transmit: one write() per frame (a TAP has no batch
 * write without vnet headers); any thread may write, the kernel serialises.
 * Without IFF_VNET_HDR and offload flags the kernel hands the TAP only
 * complete, segmented frames with finished checksums. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "dp_private.h"

struct tap {
    uint8_t *buf;
    uint32_t slot;                     /* max_frame + 1: a full slot means too long */
};

static void tap_kill(struct dp_port *p)
{
    /* The device is gone (e.g. its namespace was deleted): stop reading so
     * that a permanently readable/erroring fd does not spin the thread. */
    DP_STORE(&p->dead, 1);
    DP_STORE(&p->link_up, 0);
}

static uint32_t tap_rx(struct dp_port *p, const uint8_t **frames, uint32_t *lens, uint32_t max)
{
    struct tap *t = p->priv;
    uint32_t n = 0;
    uint64_t bytes = 0, oversize = 0, errors = 0;
    if (DP_LOAD(&p->dead))
        return 0;
    if (max > p->batch)
        max = p->batch;
    while (n < max) {
        uint8_t *b = t->buf + (size_t)n * t->slot;
        ssize_t r = read(p->fd, b, t->slot);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN) {
                if (errno == EBADFD || errno == EIO || errno == ENXIO || errno == EBADF)
                    tap_kill(p);
                errors++;
            }
            break;
        }
        if ((uint32_t)r > p->max_frame) {
            oversize++;
            continue;
        }
        frames[n] = b;
        lens[n] = (uint32_t)r;
        bytes += (uint64_t)r;
        n++;
    }
    dp_count_rx(p, n, bytes, oversize, errors);
    return n;
}

static void tap_rx_done(struct dp_port *p) { (void)p; }

static void tap_tx(struct dp_port *p, const uint8_t *const *frames, const uint32_t *lens,
                   uint32_t n)
{
    uint64_t sent = 0, bytes = 0, dropped = 0, errors = 0;
    for (uint32_t i = 0; i < n; i++) {
        ssize_t r;
        do {
            r = write(p->fd, frames[i], lens[i]);
        } while (r < 0 && errno == EINTR);
        if (r >= 0) {
            sent++;
            bytes += lens[i];
        } else if (errno == EAGAIN || errno == EIO || errno == ENOBUFS) {
            dropped++;                 /* EIO: the device is down */
        } else {
            errors++;
        }
    }
    dp_count_tx(p, sent, bytes, dropped, errors);
}

static void tap_error(struct dp_port *p)
{
    tap_kill(p);
}

static void tap_close(struct dp_port *p)
{
    struct tap *t = p->priv;
    if (t)
        free(t->buf);
    free(t);
    p->priv = NULL;
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
}

static const struct dp_port_ops tap_ops = {
    .rx = tap_rx, .rx_done = tap_rx_done, .tx = tap_tx, .error = tap_error, .close = tap_close,
};

int dp_tap_open(struct vs_dp *dp, struct dp_port *p, struct vs_error *err)
{
    int rc;
    size_t nl = strnlen(p->name, VS_DP_NAME_LEN);
    if (nl == 0 || nl >= VS_DP_NAME_LEN)
        return dp_err(err, EINVAL, "tap port %u: a device name (1-15 chars) is required",
                      p->port_no);
    struct tap *t = calloc(1, sizeof *t);
    if (!t)
        return dp_err(err, ENOMEM, "out of memory");
    p->priv = t;
    p->ops = &tap_ops;
    p->fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (p->fd < 0) {
        rc = dp_err(err, errno, "/dev/net/tun: %s", strerror(errno));
        goto fail;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    memcpy(ifr.ifr_name, p->name, nl);
    if (ioctl(p->fd, TUNSETIFF, &ifr) < 0) {
        rc = dp_err(err, errno, "%s: TUNSETIFF: %s", p->name, strerror(errno));
        goto fail;
    }
    memcpy(p->name, ifr.ifr_name, VS_DP_NAME_LEN);
    p->name[VS_DP_NAME_LEN - 1] = 0;
    p->ifindex = if_nametoindex(p->name);
    if (p->mtu && (rc = dp_netdev_set_mtu(p->name, p->mtu)) < 0) {
        rc = dp_err(err, -rc, "%s: set MTU %u: %s", p->name, p->mtu, strerror(-rc));
        goto fail;
    }
    if ((p->flags & VS_DP_PF_ADMIN_UP) && (rc = dp_netdev_set_up(p->name)) < 0) {
        rc = dp_err(err, -rc, "%s: set up: %s", p->name, strerror(-rc));
        goto fail;
    }
    uint32_t mtu = 1500, up = 0;
    dp_netdev_mtu(p->name, &mtu);
    dp_netdev_link(p->name, &up);
    p->mtu = mtu;
    p->max_frame = mtu + 14 + 8;
    if (p->max_frame > VS_DP_MAX_FRAME) {
        rc = dp_err(err, EINVAL, "%s: MTU %u too large", p->name, mtu);
        goto fail;
    }
    p->link_up = up;
    t->slot = (p->max_frame + 1 + 63) & ~63u;
    t->buf = malloc((size_t)t->slot * p->batch);
    if (!t->buf) {
        rc = dp_err(err, ENOMEM, "out of memory");
        goto fail;
    }
    (void)dp;
    return 0;
fail:
    tap_close(p);
    return rc;
}
