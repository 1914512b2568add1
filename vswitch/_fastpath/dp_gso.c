/* dp_gso.c -- receive-side offloads of `system` ports: the virtio_net_hdr
 * that PACKET_VNET_HDR puts in front of every frame, checksum completion
 * (VIRTIO_NET_HDR_F_NEEDS_CSUM) and software segmentation of GSO
 * super-frames (TCPv4, TCPv6, UDP L4) into wire-sized frames.
 *
 * Why: a sender behind a veth (or any device with TSO/GSO, and GRO on a
 * NIC) hands AF_PACKET up to 64 KiB "super-frames" whose TCP/UDP checksum
 * holds only the pseudo-header sum.  The pipeline, the flows and the
 * counters must see what a real wire would carry, so each super-frame is
 * cut into gso_size payload pieces, each with a copy of the headers fixed
 * up exactly as the kernel's own software GSO does it (tcp_gso_segment,
 * inet_gso_segment, ipv6_gso_segment, __udp_gso_segment):
 *   IPv4: total length, ID + i, header checksum;
 *   IPv6: payload length;
 *   TCP:  sequence number + i * gso_size; FIN and PSH only on the last
 *         segment, CWR only on the first; full checksum;
 *   UDP:  length; full checksum (0 sent as 0xffff).
 *
 * Trust: nothing in the vnet header or the frame is trusted.  hdr_len is
 * only bounds-checked (the kernel fills it with skb_headlen(), which need
 * not be the header length); the header length used is parsed from the
 * frame itself.  Every read is bounds-checked against the frame length and
 * every write against the caller's output capacity, and all limits
 * (DP_GSO_MAX_FRAME, DP_GSO_MAX_SEGS, DP_GSO_MAX_HDR) are checked before
 * the first byte is written, so a rejected frame leaves `out` untouched.
 *
 * Checksums are summed over native-endian 16-bit words and stored back the
 * same way: the Internet checksum is byte-order independent (RFC 1071 2(B)),
 * so no swapping is needed as long as every addend (pseudo-header fields
 * included) is laid out in network order in memory before it is summed. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>

#include "dp_private.h"

/* virtio_net_hdr values (linux/virtio_net.h; GSO_UDP_L4 is missing from
 * older copies of that header). */
#define VNET_F_NEEDS_CSUM  1
#define VNET_GSO_NONE      0
#define VNET_GSO_TCPV4     1
#define VNET_GSO_UDP       3           /* UFO (IP fragmentation): not supported */
#define VNET_GSO_TCPV6     4
#define VNET_GSO_UDP_L4    5
#define VNET_GSO_ECN       0x80

#define TCP_FIN 0x01
#define TCP_PSH 0x08
#define TCP_CWR 0x80

_Static_assert(DP_GSO_MAX_HDR >= 14 + 8 + 60 + 60, "headers: L2 + 2 tags + IPv4 opts + TCP opts");

/* ---- checksums ------------------------------------------------------------- */

/* Sum n bytes at p as native-endian 16-bit words into acc (p is the start
 * of a word: callers only pass even offsets within a checksummed region).
 * 64-bit accumulator: 32-bit addends, at most 2^16 of them per call here,
 * cannot overflow it. */
static uint64_t csum_add(uint64_t acc, const uint8_t *p, size_t n)
{
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        acc += (w & 0xffffffffu) + (w >> 32);
    }
    for (; n >= 2; p += 2, n -= 2) {
        uint16_t w;
        memcpy(&w, p, 2);
        acc += w;
    }
    if (n) {                           /* odd byte: a word padded with a zero byte */
        uint8_t last[2] = {p[0], 0};
        uint16_t w;
        memcpy(&w, last, 2);
        acc += w;
    }
    return acc;
}

/* Fold to 16 bits and complement: the value to store (native order). */
static uint16_t csum_finish(uint64_t acc)
{
    while (acc >> 16)
        acc = (acc & 0xffff) + (acc >> 16);
    return (uint16_t)~acc;
}

static void store_csum(uint8_t *p, uint16_t c)
{
    memcpy(p, &c, 2);
}

/* The TCP/UDP pseudo-header sum for an L4 segment of l4len bytes. */
static uint64_t pseudo_sum(const uint8_t *ip, bool v6, uint8_t proto, uint32_t l4len)
{
    uint8_t tail[8] = {(uint8_t)(l4len >> 24), (uint8_t)(l4len >> 16), (uint8_t)(l4len >> 8),
                       (uint8_t)l4len, 0, 0, 0, proto};
    uint64_t acc = v6 ? csum_add(0, ip + 8, 32) : csum_add(0, ip + 12, 8);
    return csum_add(acc, tail, 8);
}

/* ---- parsing ------------------------------------------------------------------ */

struct l34 {
    uint32_t l3;                       /* IP header */
    uint32_t l4;                       /* TCP/UDP header */
    uint32_t payload;                  /* first payload byte = header length */
    uint32_t end;                      /* end of the IP packet (<= frame length) */
    uint8_t proto;
    bool v6;
};

/* Ethernet (+ at most two 802.1Q/802.1ad tags), IPv4 or IPv6 (no extension
 * headers), TCP or UDP.  0 or -EINVAL; every offset it sets is <= len. */
static int parse_l34(const uint8_t *f, uint32_t len, struct l34 *o)
{
    if (len < 14)
        return -EINVAL;
    uint32_t off = 12;
    uint16_t et = dp_be16(f + off);
    for (int tags = 0; (et == 0x8100 || et == 0x88a8) && tags < 2; tags++) {
        off += 4;
        if (off + 2 > len)
            return -EINVAL;
        et = dp_be16(f + off);
    }
    off += 2;
    o->l3 = off;
    if (et == 0x0800) {
        if (off + 20 > len)
            return -EINVAL;
        uint32_t ihl = (f[off] & 0xfu) * 4, tot = dp_be16(f + off + 2);
        if ((f[off] >> 4) != 4 || ihl < 20 || tot < ihl || tot > len - off)
            return -EINVAL;
        if (dp_be16(f + off + 6) & 0x3fff)
            return -EINVAL;            /* a fragment cannot be a super-frame */
        o->v6 = false;
        o->proto = f[off + 9];
        o->l4 = off + ihl;
        o->end = off + tot;
    } else if (et == 0x86dd) {
        if (off + 40 > len || (f[off] >> 4) != 6)
            return -EINVAL;
        uint32_t plen = dp_be16(f + off + 4);
        if (plen > len - off - 40)
            return -EINVAL;            /* also: jumbograms (BIG TCP, plen 0) */
        o->v6 = true;
        o->proto = f[off + 6];         /* extension headers: refused below */
        o->l4 = off + 40;
        o->end = off + 40 + plen;
    } else {
        return -EINVAL;
    }
    if (o->proto == 6) {
        if (o->end - o->l4 < 20)
            return -EINVAL;
        uint32_t thl = (uint32_t)(f[o->l4 + 12] >> 4) * 4;
        if (thl < 20 || thl > o->end - o->l4)
            return -EINVAL;
        o->payload = o->l4 + thl;
    } else if (o->proto == 17) {
        if (o->end - o->l4 < 8)
            return -EINVAL;
        o->payload = o->l4 + 8;
    } else {
        return -EINVAL;
    }
    return 0;
}

/* ---- checksum completion --------------------------------------------------- */

/* CRC32c (Castagnoli, reflected polynomial 0x82F63B78), 4 bits at a time:
 * SCTP only, rare enough that a 16-entry table is the right size. */
static uint32_t crc32c(const uint8_t *p, size_t n)
{
    static const uint32_t t[16] = {
        0x00000000, 0x105ec76f, 0x20bd8ede, 0x30e349b1, 0x417b1dbc, 0x5125dad3,
        0x61c69362, 0x7198540d, 0x82f63b78, 0x92a8fc17, 0xa24bb5a6, 0xb21572c9,
        0xc38d26c4, 0xd3d3e1ab, 0xe330a81a, 0xf36e6f75,
    };
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        c = (c >> 4) ^ t[c & 15];
        c = (c >> 4) ^ t[c & 15];
    }
    return ~c;
}

/* The IP protocol and L4 offset of f, or proto 0 when it is not IPv4/IPv6
 * (no extension headers) inside the frame. */
static uint8_t l4_of(const uint8_t *f, uint32_t len, uint32_t *l4)
{
    if (len < 14)
        return 0;
    uint32_t off = 12;
    uint16_t et = dp_be16(f + off);
    for (int tags = 0; (et == 0x8100 || et == 0x88a8) && tags < 2; tags++) {
        off += 4;
        if (off + 2 > len)
            return 0;
        et = dp_be16(f + off);
    }
    off += 2;
    if (et == 0x0800 && off + 20 <= len && (f[off] & 0xfu) >= 5) {
        *l4 = off + (f[off] & 0xfu) * 4;
        return f[off + 9];
    }
    if (et == 0x86dd && off + 40 <= len) {
        *l4 = off + 40;
        return f[off + 6];
    }
    return 0;
}

/* VIRTIO_NET_HDR_F_NEEDS_CSUM: what a NIC does for CHECKSUM_PARTIAL (and
 * what the kernel's skb_checksum_help does): the 16-bit field at
 * csum_start + csum_offset holds the pseudo-header sum; sum everything from
 * csum_start to the end of the frame and store the complement there.
 * SCTP is the exception: its CHECKSUM_PARTIAL means a CRC32c (the kernel's
 * csum_not_inet, which the vnet header cannot say), stored little-endian
 * over the packet with the field zeroed, as sctp_compute_cksum() does. */
static int csum_complete(uint8_t *f, uint32_t len, const struct dp_vnet *vh)
{
    uint32_t cs = vh->csum_start, co = vh->csum_offset, l4 = 0;
    if (cs < 14 || cs >= len || co > len - cs || len - cs - co < 2)
        return -EINVAL;
    if (co == 8 && len - cs >= 12 && l4_of(f, len, &l4) == 132 && l4 == cs) {
        memset(f + cs + 8, 0, 4);
        uint32_t crc = crc32c(f + cs, len - cs);
        uint8_t le[4] = {(uint8_t)crc, (uint8_t)(crc >> 8), (uint8_t)(crc >> 16),
                         (uint8_t)(crc >> 24)};
        memcpy(f + cs + 8, le, 4);
        return 0;
    }
    uint16_t c = csum_finish(csum_add(0, f + cs, len - cs));
    store_csum(f + cs + co, c ? c : 0xffff);   /* 0 means "no checksum" to UDP */
    return 0;
}

/* ---- segmentation ------------------------------------------------------------- */

static int gso_segment(const uint8_t *f, uint32_t len, const struct dp_vnet *vh,
                       uint32_t max_frame, uint8_t *out, size_t cap,
                       const uint8_t **segs, uint32_t *lens, uint32_t max_segs)
{
    uint8_t type = vh->gso_type & (uint8_t)~VNET_GSO_ECN;
    uint32_t mss = vh->gso_size;
    struct l34 h;
    if (len > DP_GSO_MAX_FRAME)
        return -EMSGSIZE;
    if (mss == 0 || vh->hdr_len > len || parse_l34(f, len, &h) < 0)
        return -EINVAL;
    /* The GSO type must say what the frame is. */
    if (!((type == VNET_GSO_TCPV4 && !h.v6 && h.proto == 6) ||
          (type == VNET_GSO_TCPV6 && h.v6 && h.proto == 6) ||
          (type == VNET_GSO_UDP_L4 && h.proto == 17)))
        return -EINVAL;
    uint32_t hl = h.payload;           /* headers copied into every segment */
    uint32_t pl = h.end - hl;          /* payload bytes to spread */
    if (hl > DP_GSO_MAX_HDR)
        return -EINVAL;
    uint32_t nseg = pl ? (pl - 1) / mss + 1 : 1;
    if (nseg > DP_GSO_MAX_SEGS)
        return -EINVAL;
    uint32_t first = pl < mss ? pl : mss;
    if (hl + first > max_frame)
        return -EMSGSIZE;              /* segments too big for the port: as on a wire */
    /* nseg <= DP_GSO_MAX_SEGS and hl <= DP_GSO_MAX_HDR: no overflow. */
    size_t need = (size_t)nseg * hl + pl;
    if (nseg > max_segs || need > cap)
        return -ENOBUFS;

    const uint8_t *ip = f + h.l3;
    uint16_t id0 = h.v6 ? 0 : dp_be16(ip + 4);
    uint32_t seq0 = 0;
    uint8_t tflags = 0;
    if (h.proto == 6) {
        const uint8_t *th = f + h.l4;
        seq0 = (uint32_t)th[4] << 24 | (uint32_t)th[5] << 16 | (uint32_t)th[6] << 8 | th[7];
        tflags = th[13];
    }
    uint8_t *o = out;
    for (uint32_t i = 0; i < nseg; i++) {
        uint32_t off = i * mss;        /* < pl <= 65535 + ..., no overflow */
        uint32_t chunk = pl - off < mss ? pl - off : mss;   /* 0 only if pl == 0 */
        memcpy(o, f, hl);
        memcpy(o + hl, f + hl + off, chunk);
        uint8_t *sip = o + h.l3, *l4 = o + h.l4;
        uint32_t l4len = hl - h.l4 + chunk;
        if (h.v6) {
            dp_put16(sip + 4, (uint16_t)(hl - h.l3 - 40 + chunk));
        } else {
            uint32_t ihl = h.l4 - h.l3;
            dp_put16(sip + 2, (uint16_t)(hl - h.l3 + chunk));
            dp_put16(sip + 4, (uint16_t)(id0 + i));
            sip[10] = sip[11] = 0;
            store_csum(sip + 10, csum_finish(csum_add(0, sip, ihl)));
        }
        uint32_t csum_at;
        if (h.proto == 6) {
            uint32_t seq = seq0 + off;
            l4[4] = (uint8_t)(seq >> 24);
            l4[5] = (uint8_t)(seq >> 16);
            l4[6] = (uint8_t)(seq >> 8);
            l4[7] = (uint8_t)seq;
            uint8_t fl = tflags;
            if (i + 1 < nseg)
                fl &= (uint8_t)~(TCP_FIN | TCP_PSH);
            if (i > 0)
                fl &= (uint8_t)~TCP_CWR;
            l4[13] = fl;
            csum_at = 16;
        } else {
            dp_put16(l4 + 4, (uint16_t)l4len);
            csum_at = 6;
        }
        l4[csum_at] = l4[csum_at + 1] = 0;
        uint16_t c = csum_finish(csum_add(pseudo_sum(sip, h.v6, h.proto, l4len), l4, l4len));
        if (h.proto == 17 && c == 0)
            c = 0xffff;
        store_csum(l4 + csum_at, c);
        segs[i] = o;
        lens[i] = hl + chunk;
        o += hl + chunk;
    }
    return (int)nseg;
}

int dp_vnet_rx(uint8_t *f, uint32_t len, const struct dp_vnet *vh, uint32_t max_frame,
               uint8_t *out, size_t cap, const uint8_t **segs, uint32_t *lens,
               uint32_t max_segs)
{
    if (max_segs < 1)
        return -ENOBUFS;
    /* NEEDS_CSUM must point inside the frame even when segmentation will
     * recompute every checksum anyway: a header that lies is malformed. */
    if (vh->flags & VNET_F_NEEDS_CSUM) {
        uint32_t cs = vh->csum_start, co = vh->csum_offset;
        if (cs < 14 || cs >= len || co > len - cs || len - cs - co < 2)
            return -EINVAL;
    }
    if (vh->gso_type != VNET_GSO_NONE)
        return gso_segment(f, len, vh, max_frame, out, cap, segs, lens, max_segs);
    if (len > max_frame)
        return -EMSGSIZE;
    if ((vh->flags & VNET_F_NEEDS_CSUM) && csum_complete(f, len, vh) < 0)
        return -EINVAL;
    segs[0] = f;
    lens[0] = len;
    return 1;
}

size_t dp_gso_out_bound(uint32_t len, uint32_t gso_size)
{
    /* Segments hold the payload once and the headers (at most
     * DP_GSO_MAX_HDR) nseg times; counts beyond DP_GSO_MAX_SEGS are
     * refused by gso_segment, so the bound stops there too. */
    uint32_t nseg = gso_size ? len / gso_size + 1 : 1;
    if (nseg > DP_GSO_MAX_SEGS)
        nseg = DP_GSO_MAX_SEGS;
    return (size_t)len + (size_t)nseg * DP_GSO_MAX_HDR;
}

void dp_vnet_read(struct dp_vnet *vh, const uint8_t *raw)
{
    /* PACKET_VNET_HDR uses the legacy virtio layout in host byte order
     * (the kernel's vio_le() is true exactly on little-endian hosts). */
    uint16_t v[4];
    vh->flags = raw[0];
    vh->gso_type = raw[1];
    memcpy(v, raw + 2, sizeof v);
    vh->hdr_len = v[0];
    vh->gso_size = v[1];
    vh->csum_start = v[2];
    vh->csum_offset = v[3];
}

/* ---- test hook (datapath.h) ----------------------------------------------------- */

int vs_dp_gso_segment_test(const uint8_t *frame, uint32_t len, const uint8_t *vnet,
                           uint32_t mtu, uint8_t *out, uint32_t out_cap, uint32_t *lens,
                           uint32_t max_segs)
{
    /* Bounds of the hook itself (the copy below); frame lengths the port
     * would refuse are dp_vnet_rx's to judge. */
    if (!frame || !vnet || !out || !lens || len > (1u << 20) || mtu > 65535)
        return -EINVAL;
    if (max_segs > DP_GSO_MAX_SEGS)
        max_segs = DP_GSO_MAX_SEGS;
    struct dp_vnet vh;
    dp_vnet_read(&vh, vnet);
    uint8_t *f = malloc(len ? len : 1);
    const uint8_t **segs = calloc(max_segs ? max_segs : 1, sizeof *segs);
    int rc = -ENOMEM;
    if (!f || !segs)
        goto out;
    memcpy(f, frame, len);
    rc = dp_vnet_rx(f, len, &vh, mtu + 14 + 8, out, out_cap, segs, lens, max_segs);
    if (rc == 1 && segs[0] == f) {     /* handled in place: hand the frame back */
        if (len > out_cap)
            rc = -ENOBUFS;
        else
            memcpy(out, f, len);
    }
    /* Otherwise the segments already lie back to back at the start of out. */
out:
    free(f);
    free(segs);
    return rc;
}
