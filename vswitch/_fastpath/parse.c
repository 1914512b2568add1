/* parse.c -- frame parser (vs_parse), field descriptors (vs_fields) and the
 * parse benchmark helper (vs_bench_parse).
 *
 * The rules implemented here are written down in docs/parsing.md; the Python
 * reference model implements the same rules independently.  Every read is
 * bounds-checked against len (or against a smaller region end derived from
 * the IP length fields), so the parser never reads outside data[0..len).
 */
#define _POSIX_C_SOURCE 200809L   /* clock_gettime under -std=c99/c11 */

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "fastpath.h"

_Static_assert(sizeof(struct vs_key) == VS_KEY_SIZE,
               "struct vs_key must be VS_KEY_SIZE bytes");
/* Some copies below fill two adjacent key fields at once (src + dst, as in
 * the wire headers); KEY_AT addresses the key as a whole for them. */
#define KEY_AT(key, field) ((uint8_t *)(key) + offsetof(struct vs_key, field))
_Static_assert(offsetof(struct vs_key, ipv4_dst) ==
               offsetof(struct vs_key, ipv4_src) + 4, "ipv4_src/dst adjacent");
_Static_assert(offsetof(struct vs_key, ipv6_dst) ==
               offsetof(struct vs_key, ipv6_src) + 16, "ipv6_src/dst adjacent");
_Static_assert(offsetof(struct vs_key, tp_dst) ==
               offsetof(struct vs_key, tp_src) + 2, "tp_src/dst adjacent");

/* ---------------------------------------------------------------------- */
/* Big-endian helpers.  memcpy, never a cast: frames are not aligned. */

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define VS_BE16(x) __builtin_bswap16(x)
#define VS_BE32(x) __builtin_bswap32(x)
#elif defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define VS_BE16(x) (x)
#define VS_BE32(x) (x)
#else
#error "unknown byte order"
#endif

static inline uint16_t ld_be16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return (uint16_t)VS_BE16(v);
}

static inline uint32_t ld_be32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return (uint32_t)VS_BE32(v);
}

static inline void st_be16(uint8_t *p, uint16_t v)
{
    v = (uint16_t)VS_BE16(v);
    memcpy(p, &v, sizeof v);
}

static inline void st_be32(uint8_t *p, uint32_t v)
{
    v = (uint32_t)VS_BE32(v);
    memcpy(p, &v, sizeof v);
}

/* Zero the key with explicit 8-byte stores (gcc merges them into 16-byte
 * stores).  A 152-byte memset, or a loop, becomes `rep stosq`, whose
 * start-up cost alone is twice that of a whole parse. */
static inline void zero_key(struct vs_key *key)
{
    const uint64_t z = 0;
    uint8_t *p = (uint8_t *)key;
#define Z8(o) memcpy(p + (o), &z, 8)
    Z8(0);   Z8(8);   Z8(16);  Z8(24);  Z8(32);  Z8(40);  Z8(48);  Z8(56);
    Z8(64);  Z8(72);  Z8(80);  Z8(88);  Z8(96);  Z8(104); Z8(112); Z8(120);
    Z8(128); Z8(136); Z8(144);
#undef Z8
}
_Static_assert(VS_KEY_SIZE == 19 * 8, "zero_key() writes 19 words");

#if defined(__GNUC__)
#define VS_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define VS_ALWAYS_INLINE inline
#endif

/* ---------------------------------------------------------------------- */
/* Constants. */

#define ETH_HLEN        14u
#define ETHTYPE_IPV4    0x0800u
#define ETHTYPE_ARP     0x0806u
#define ETHTYPE_VLAN    0x8100u
#define ETHTYPE_QINQ    0x88a8u
#define ETHTYPE_IPV6    0x86ddu
#define ETHTYPE_MPLS    0x8847u
#define ETHTYPE_MPLS_MC 0x8848u
#define ETHTYPE_MIN     0x0600u   /* below: an 802.3 length field */
#define ETHTYPE_NONE    0x05ffu   /* eth_type of an 802.3 frame (as OVS) */

#define IPPROTO_V_ICMP    1u
#define IPPROTO_V_TCP     6u
#define IPPROTO_V_UDP    17u
#define IPPROTO_V_ICMPV6 58u
#define IPPROTO_V_SCTP  132u

#define IP6_HOP     0u
#define IP6_ROUTING 43u
#define IP6_FRAG    44u
#define IP6_ESP     50u
#define IP6_AH      51u
#define IP6_NONEXT  59u
#define IP6_DEST    60u
#define IP6_MAX_EXTHDRS 16u

#define ND_NS 135u
#define ND_NA 136u
#define ND_OPT_SLL 1u
#define ND_OPT_TLL 2u

static inline int is_vlan_tpid(uint32_t t)
{
    return t == ETHTYPE_VLAN || t == ETHTYPE_QINQ;
}

/* ---------------------------------------------------------------------- */
/* L4: the header at data[off..end).  The caller guarantees off <= end <= len.
 * is_v6 picks which ICMP is acceptable (ICMPv4 over IPv4, ICMPv6 over IPv6
 * only).  Layer offsets fit in 16 bits: the deepest L4 start is 14 + 8 + 40
 * + 16 extension headers of at most 2048 bytes each, well below 0xffff. */
static VS_ALWAYS_INLINE void parse_l4(const uint8_t *data, uint32_t off,
                                      uint32_t end, uint8_t proto, int is_v6,
                                      struct vs_key *key,
                                      struct vs_layers *layers)
{
    const uint8_t *h = data + off;
    const uint32_t rem = end - off;

    switch (proto) {
    case IPPROTO_V_TCP:
        /* Data offset < 5 words is not a TCP header. */
        if (rem < 20 || (h[12] >> 4) < 5)
            return;
        memcpy(KEY_AT(key, tp_src), h, 4);    /* tp_src + tp_dst */
        /* 12 bits: NS (low bit of byte 12) + the 8 classic flag bits. */
        st_be16(key->tcp_flags, (uint16_t)(ld_be16(h + 12) & 0x0fffu));
        break;
    case IPPROTO_V_UDP:
        if (rem < 8)
            return;
        memcpy(KEY_AT(key, tp_src), h, 4);    /* tp_src + tp_dst */
        break;
    case IPPROTO_V_SCTP:
        if (rem < 12)
            return;
        memcpy(KEY_AT(key, tp_src), h, 4);    /* tp_src + tp_dst */
        break;
    case IPPROTO_V_ICMP:
        if (is_v6 || rem < 4)
            return;
        key->icmp_type = h[0];
        key->icmp_code = h[1];
        break;
    case IPPROTO_V_ICMPV6: {
        if (!is_v6 || rem < 4)
            return;
        const uint8_t type = h[0];
        key->icmp_type = type;
        key->icmp_code = h[1];
        if ((type == ND_NS || type == ND_NA) && h[1] == 0 && rem >= 24) {
            memcpy(key->nd_target, h + 8, 16);
            key->present |= VS_PRESENT_ND;
            /* Options: (type, len in 8-byte units, ...).  A zero length or
             * one running past the region ends option parsing; what was
             * taken so far is kept.  Only the first well-formed (len 1)
             * SLL in an NS / TLL in an NA is taken. */
            int have_ll = 0;
            uint32_t o = 24;
            while (rem - o >= 2) {
                const uint32_t olen = (uint32_t)h[o + 1] * 8u;
                if (olen == 0 || olen > rem - o)
                    break;
                if (!have_ll && h[o + 1] == 1) {
                    if (type == ND_NS && h[o] == ND_OPT_SLL) {
                        memcpy(key->nd_sll, h + o + 2, 6);
                        key->present |= VS_PRESENT_ND_SLL;
                        have_ll = 1;
                    } else if (type == ND_NA && h[o] == ND_OPT_TLL) {
                        memcpy(key->nd_tll, h + o + 2, 6);
                        key->present |= VS_PRESENT_ND_TLL;
                        have_ll = 1;
                    }
                }
                o += olen;
            }
        }
        break;
    }
    default:
        return;
    }
    layers->l4 = (uint16_t)off;
    layers->l4_ok = 1;
    key->present |= VS_PRESENT_L4;
}

/* ---------------------------------------------------------------------- */
/* IPv6 extension-header chain in data[*pp..end).  hdr[0] of every header is
 * the next header.  Sets ip_proto, ipv6_exthdr and (fragment header) ip_frag.
 * Returns 1 if L4 should be parsed at *pp, 0 if parsing stops here. */
static VS_ALWAYS_INLINE int parse_ipv6_ext(const uint8_t *data, uint32_t *pp,
                                           uint32_t end, uint8_t nh,
                                           struct vs_key *key)
{
    uint32_t p = *pp;
    uint32_t n = 0;          /* extension headers recognised so far */
    uint32_t n_dest = 0;     /* destination-options headers seen */
    uint16_t bits = 0;
    int go_l4 = 0;

    for (;;) {
        uint16_t bit;
        switch (nh) {
        case IP6_HOP:     bit = VS_IEH_HOP;    break;
        case IP6_ROUTING: bit = VS_IEH_ROUTER; break;
        case IP6_DEST:    bit = VS_IEH_DEST;   break;
        case IP6_FRAG:    bit = VS_IEH_FRAG;   break;
        case IP6_AH:      bit = VS_IEH_AUTH;   break;
        case IP6_ESP:     bit = VS_IEH_ESP;    break;
        case IP6_NONEXT:  bit = VS_IEH_NONEXT; break;
        default:
            /* Not an extension header: the upper-layer protocol. */
            go_l4 = 1;
            goto out;
        }
        /* The 17th extension header (any of the seven kinds) is not
         * examined: its bit is not set, ip_proto is its type, no L4. */
        if (n == IP6_MAX_EXTHDRS)
            goto out;
        /* Repeats: destination options may legitimately appear twice
         * (before routing and before the upper layer), others once. */
        if (nh == IP6_DEST) {
            if (++n_dest > 2)
                bits |= VS_IEH_UNREP;
        } else if (bits & bit) {
            bits |= VS_IEH_UNREP;
        }
        /* Hop-by-hop must be the first extension header. */
        if (nh == IP6_HOP && n != 0)
            bits |= VS_IEH_UNSEQ;
        bits |= bit;
        n++;

        const uint8_t *h = data + p;
        const uint32_t rem = end - p;
        uint32_t size;
        switch (nh) {
        case IP6_ESP:
        case IP6_NONEXT:
            /* ESP payload is opaque; no-next-header ends the chain. */
            goto out;
        case IP6_FRAG: {
            if (rem < 8)
                goto out;              /* truncated: ip_proto = 44 */
            const uint16_t fo = (uint16_t)(ld_be16(h + 2) >> 3);
            if (fo != 0 || (h[3] & 1))
                key->ip_frag |= VS_FRAG_ANY;
            if (fo != 0) {
                /* Later fragment: upper-layer header is not here. */
                key->ip_frag |= VS_FRAG_LATER;
                nh = h[0];
                goto out;
            }
            size = 8;
            break;
        }
        case IP6_AH:
            if (rem < 2)
                goto out;
            size = ((uint32_t)h[1] + 2u) * 4u;   /* 4-byte units, minus 2 */
            break;
        default:                                   /* hop, routing, dest */
            if (rem < 2)
                goto out;
            size = ((uint32_t)h[1] + 1u) * 8u;   /* 8-byte units, minus 1 */
            break;
        }
        if (size > rem)
            goto out;                  /* truncated: ip_proto = its type */
        nh = h[0];
        p += size;
    }
out:
    key->ip_proto = nh;
    st_be16(key->ipv6_exthdr, bits);
    *pp = p;
    return go_l4;
}

/* ---------------------------------------------------------------------- */

int vs_parse(const uint8_t *data, uint32_t len, uint32_t in_port,
             struct vs_key *key, struct vs_layers *layers)
{
    zero_key(key);
    layers->l2_5 = VS_NO_LAYER;
    layers->l3 = VS_NO_LAYER;
    layers->l4 = VS_NO_LAYER;
    layers->vlan = VS_NO_LAYER;
    layers->n_vlan = 0;
    layers->l3_ok = 0;
    layers->l4_ok = 0;
    layers->pad = 0;
    st_be32(key->in_port, in_port);

    if (len < ETH_HLEN)
        return 0;
    memcpy(KEY_AT(key, eth_dst), data, 12);   /* eth_dst + eth_src */
    key->present = VS_PRESENT_L2;

    uint32_t off = ETH_HLEN;                   /* first byte after type */
    uint32_t type = ld_be16(data + 12);

    /* VLAN tags, at most two.  A tag needs TCI + the next type (4 bytes);
     * a tag that does not fit, or a third tag, ends parsing with eth_type =
     * that TPID. */
    if (is_vlan_tpid(type)) {
        if (len - off < 4)
            goto l2_only;
        const uint16_t tci = ld_be16(data + off);
        st_be16(key->vlan_vid, (uint16_t)(VS_OFPVID_PRESENT | (tci & 0x0fffu)));
        key->vlan_pcp = (uint8_t)(tci >> 13);
        st_be16(key->vlan_tpid, (uint16_t)type);
        layers->vlan = 12;
        layers->n_vlan = 1;
        type = ld_be16(data + off + 2);
        off += 4;
        if (is_vlan_tpid(type)) {
            if (len - off < 4)
                goto l2_only;
            const uint16_t tci2 = ld_be16(data + off);
            /* PCP and VID kept, the CFI/DEI bit replaced by "present". */
            st_be16(key->vlan2_tci,
                    (uint16_t)((tci2 & 0xefffu) | VS_OFPVID_PRESENT));
            layers->n_vlan = 2;
            type = ld_be16(data + off + 2);
            off += 4;
            if (is_vlan_tpid(type))
                goto l2_only;                  /* third tag: not parsed */
        }
    }

    if (type < ETHTYPE_MIN) {
        st_be16(key->eth_type, ETHTYPE_NONE);
        return 0;
    }
    st_be16(key->eth_type, (uint16_t)type);

    const uint8_t *h = data + off;
    const uint32_t rem = len - off;

    if (type == ETHTYPE_IPV4) {
        if (rem < 20 || (h[0] >> 4) != 4)
            return 0;
        const uint32_t ihl = (uint32_t)(h[0] & 0x0fu) * 4u;
        const uint32_t tot = ld_be16(h + 2);
        if (ihl < 20 || ihl > rem || tot < ihl)
            return 0;
        layers->l3 = (uint16_t)off;
        layers->l3_ok = 1;
        key->present |= VS_PRESENT_L3;
        key->ip_dscp = (uint8_t)(h[1] >> 2);
        key->ip_ecn = (uint8_t)(h[1] & 3u);
        key->ip_ttl = h[8];
        key->ip_proto = h[9];
        memcpy(KEY_AT(key, ipv4_src), h + 12, 8); /* ipv4_src + ipv4_dst */
        const uint16_t frag = ld_be16(h + 6);
        if (frag & 0x3fffu) {                  /* MF or offset */
            key->ip_frag = VS_FRAG_ANY;
            if (frag & 0x1fffu) {
                key->ip_frag = VS_FRAG_ANY | VS_FRAG_LATER;
                return 0;
            }
        }
        /* L4 ends at tot_len (L2 padding excluded) or at the frame end
         * (truncated IP), whichever is first. */
        parse_l4(data, off + ihl, off + (tot < rem ? tot : rem), h[9], 0,
                 key, layers);
        return 0;
    }

    if (type == ETHTYPE_IPV6) {
        if (rem < 40 || (h[0] >> 4) != 6)
            return 0;
        const uint32_t w = ld_be32(h);
        const uint8_t tc = (uint8_t)(w >> 20);
        layers->l3 = (uint16_t)off;
        layers->l3_ok = 1;
        key->present |= VS_PRESENT_L3;
        key->ip_dscp = (uint8_t)(tc >> 2);
        key->ip_ecn = (uint8_t)(tc & 3u);
        key->ip_ttl = h[7];
        st_be32(key->ipv6_flabel, w & 0x000fffffu);
        memcpy(KEY_AT(key, ipv6_src), h + 8, 32); /* ipv6_src + ipv6_dst */
        /* Region end: payload_len, capped at the frame end; 0 (jumbogram
         * or unknown) means the frame end. */
        const uint32_t plen = ld_be16(h + 4);
        const uint32_t end = (plen != 0 && plen <= rem - 40)
                             ? off + 40 + plen : len;
        uint32_t p = off + 40;
        if (parse_ipv6_ext(data, &p, end, h[6], key))
            parse_l4(data, p, end, key->ip_proto, 1, key, layers);
        return 0;
    }

    if (type == ETHTYPE_ARP) {
        /* Only Ethernet/IPv4 ARP is understood. */
        if (rem < 28 || ld_be16(h) != 1 || ld_be16(h + 2) != ETHTYPE_IPV4 ||
            h[4] != 6 || h[5] != 4)
            return 0;
        layers->l3 = (uint16_t)off;
        layers->l3_ok = 1;
        key->present |= VS_PRESENT_L3;
        memcpy(key->arp_op, h + 6, 2);
        memcpy(key->nd_sll, h + 8, 6);         /* SHA */
        memcpy(key->ipv4_src, h + 14, 4);      /* SPA */
        memcpy(key->nd_tll, h + 18, 6);        /* THA */
        memcpy(key->ipv4_dst, h + 24, 4);      /* TPA */
        return 0;
    }

    if (type == ETHTYPE_MPLS || type == ETHTYPE_MPLS_MC) {
        /* Top label stack entry only; nothing below the stack is parsed. */
        if (rem < 4)
            return 0;
        const uint32_t lse = ld_be32(h);
        layers->l2_5 = (uint16_t)off;
        st_be32(key->mpls_label, lse >> 12);
        key->mpls_tc = (uint8_t)((lse >> 9) & 7u);
        key->mpls_bos = (uint8_t)((lse >> 8) & 1u);
        return 0;
    }
    return 0;

l2_only:
    st_be16(key->eth_type, (uint16_t)type);
    return 0;
}

/* ---------------------------------------------------------------------- */

uint64_t vs_bench_parse(const uint8_t *const *frames, const uint32_t *lens,
                        uint32_t n, uint64_t rounds)
{
    /* Same footprint as a real batch: one key per packet slot (~42 KB). */
    struct vs_key keys[VS_MAX_BATCH];
    struct vs_layers layers[VS_MAX_BATCH];
    struct timespec t0, t1;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (uint64_t r = 0; r < rounds; r++) {
        for (uint32_t i = 0; i < n; i++) {
            const uint32_t s = i & (VS_MAX_BATCH - 1);
            vs_parse(frames[i], lens[i], i, &keys[s], &layers[s]);
        }
        /* Tell the compiler the keys are consumed, so no round is elided. */
        __asm__ __volatile__("" : : "r"(keys), "r"(layers) : "memory");
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (uint64_t)(t1.tv_sec - t0.tv_sec) * 1000000000u
           + (uint64_t)t1.tv_nsec - (uint64_t)t0.tv_nsec;
}

/* ---------------------------------------------------------------------- */
/* Field descriptors.  maskable per the OpenFlow 1.3.5 OXM table (ip_frag and
 * tcp_flags maskable as in Open vSwitch's NXM, ip_ttl not). */

#define KOFF(f) ((uint16_t)offsetof(struct vs_key, f))
#define B1 0xff
#define B2 0xff, 0xff
#define B4 0xff, 0xff, 0xff, 0xff
#define B6 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
#define B8 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
#define B16 B8, B8
#define FIELD(id, nm, f, ln, msk, ...) \
    [id] = { nm, KOFF(f), ln, msk, { __VA_ARGS__ } }

const struct vs_field_info vs_fields[VS_N_FIELDS] = {
    FIELD(VS_F_IN_PORT,        "in_port",        in_port,      4, 0, B4),
    FIELD(VS_F_IN_PHY_PORT,    "in_phy_port",    in_phy_port,  4, 0, B4),
    FIELD(VS_F_METADATA,       "metadata",       metadata,     8, 1, B8),
    FIELD(VS_F_ETH_DST,        "eth_dst",        eth_dst,      6, 1, B6),
    FIELD(VS_F_ETH_SRC,        "eth_src",        eth_src,      6, 1, B6),
    FIELD(VS_F_ETH_TYPE,       "eth_type",       eth_type,     2, 0, B2),
    FIELD(VS_F_VLAN_VID,       "vlan_vid",       vlan_vid,     2, 1, 0x1f, 0xff),
    FIELD(VS_F_VLAN_PCP,       "vlan_pcp",       vlan_pcp,     1, 0, 0x07),
    FIELD(VS_F_IP_DSCP,        "ip_dscp",        ip_dscp,      1, 0, 0x3f),
    FIELD(VS_F_IP_ECN,         "ip_ecn",         ip_ecn,       1, 0, 0x03),
    FIELD(VS_F_IP_PROTO,       "ip_proto",       ip_proto,     1, 0, B1),
    FIELD(VS_F_IPV4_SRC,       "ipv4_src",       ipv4_src,     4, 1, B4),
    FIELD(VS_F_IPV4_DST,       "ipv4_dst",       ipv4_dst,     4, 1, B4),
    FIELD(VS_F_TCP_SRC,        "tcp_src",        tp_src,       2, 0, B2),
    FIELD(VS_F_TCP_DST,        "tcp_dst",        tp_dst,       2, 0, B2),
    FIELD(VS_F_UDP_SRC,        "udp_src",        tp_src,       2, 0, B2),
    FIELD(VS_F_UDP_DST,        "udp_dst",        tp_dst,       2, 0, B2),
    FIELD(VS_F_SCTP_SRC,       "sctp_src",       tp_src,       2, 0, B2),
    FIELD(VS_F_SCTP_DST,       "sctp_dst",       tp_dst,       2, 0, B2),
    FIELD(VS_F_ICMPV4_TYPE,    "icmpv4_type",    icmp_type,    1, 0, B1),
    FIELD(VS_F_ICMPV4_CODE,    "icmpv4_code",    icmp_code,    1, 0, B1),
    FIELD(VS_F_ARP_OP,         "arp_op",         arp_op,       2, 0, B2),
    FIELD(VS_F_ARP_SPA,        "arp_spa",        ipv4_src,     4, 1, B4),
    FIELD(VS_F_ARP_TPA,        "arp_tpa",        ipv4_dst,     4, 1, B4),
    FIELD(VS_F_ARP_SHA,        "arp_sha",        nd_sll,       6, 1, B6),
    FIELD(VS_F_ARP_THA,        "arp_tha",        nd_tll,       6, 1, B6),
    FIELD(VS_F_IPV6_SRC,       "ipv6_src",       ipv6_src,    16, 1, B16),
    FIELD(VS_F_IPV6_DST,       "ipv6_dst",       ipv6_dst,    16, 1, B16),
    FIELD(VS_F_IPV6_FLABEL,    "ipv6_flabel",    ipv6_flabel,  4, 1, 0x00, 0x0f, 0xff, 0xff),
    FIELD(VS_F_ICMPV6_TYPE,    "icmpv6_type",    icmp_type,    1, 0, B1),
    FIELD(VS_F_ICMPV6_CODE,    "icmpv6_code",    icmp_code,    1, 0, B1),
    FIELD(VS_F_IPV6_ND_TARGET, "ipv6_nd_target", nd_target,   16, 0, B16),
    FIELD(VS_F_IPV6_ND_SLL,    "ipv6_nd_sll",    nd_sll,       6, 0, B6),
    FIELD(VS_F_IPV6_ND_TLL,    "ipv6_nd_tll",    nd_tll,       6, 0, B6),
    FIELD(VS_F_MPLS_LABEL,     "mpls_label",     mpls_label,   4, 0, 0x00, 0x0f, 0xff, 0xff),
    FIELD(VS_F_MPLS_TC,        "mpls_tc",        mpls_tc,      1, 0, 0x07),
    FIELD(VS_F_MPLS_BOS,       "mpls_bos",       mpls_bos,     1, 0, 0x01),
    FIELD(VS_F_PBB_ISID,       "pbb_isid",       pbb_isid,     3, 1, 0xff, 0xff, 0xff),
    FIELD(VS_F_TUNNEL_ID,      "tunnel_id",      tunnel_id,    8, 1, B8),
    FIELD(VS_F_IPV6_EXTHDR,    "ipv6_exthdr",    ipv6_exthdr,  2, 1, 0x01, 0xff),
    FIELD(VS_F_IP_FRAG,        "ip_frag",        ip_frag,      1, 1, 0x03),
    FIELD(VS_F_TCP_FLAGS,      "tcp_flags",      tcp_flags,    2, 1, 0x0f, 0xff),
    FIELD(VS_F_IP_TTL,         "ip_ttl",         ip_ttl,       1, 0, B1),
    FIELD(VS_F_TUN_IPV4_SRC,   "tun_ipv4_src",   tun_ipv4_src, 4, 1, B4),
    FIELD(VS_F_TUN_IPV4_DST,   "tun_ipv4_dst",   tun_ipv4_dst, 4, 1, B4),
};
