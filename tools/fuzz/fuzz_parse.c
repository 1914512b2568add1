/* fuzz_parse.c -- libFuzzer target for vs_parse (vswitch/_fastpath/parse.c).
 *
 * The input is one Ethernet frame.  It is parsed as a whole and, when it is
 * short (<= PREFIX_MAX bytes), every prefix of it is parsed too, each from a
 * heap copy of exactly that many bytes so that AddressSanitizer sees any read
 * past the end.  The key and layers are heap objects of exactly their size.
 *
 * Invariants checked (fastpath.h):
 *  - every layer offset is < len or VS_NO_LAYER; vlan is 12 when present;
 *  - l4 > l3 when both are set, l3 > l2_5 when both are set;
 *  - l3_ok / l4_ok agree with the offsets and with key.present;
 *  - key.pad is all zero; in_port is the one given; metadata, tunnel_id,
 *    in_phy_port and pbb_isid are zero (never set by the parser);
 *  - a frame shorter than 14 bytes gives an all-zero key but for in_port;
 *  - the result does not depend on what the key held before (parse into a
 *    0x00-filled and a 0xff-filled key and compare), nor on the alignment
 *    of the frame.
 * A violated invariant aborts with a message (libFuzzer reports a crash).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fastpath.h"

#define PREFIX_MAX 192

#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "fuzz_parse: invariant failed: %s (len %u): ",   \
                    #cond, (unsigned)len);                                   \
            fprintf(stderr, __VA_ARGS__);                                    \
            fputc('\n', stderr);                                             \
            abort();                                                         \
        }                                                                    \
    } while (0)

static int all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void check_offset(uint16_t off, uint32_t len, const char *name)
{
    CHECK(off == VS_NO_LAYER || off < len, "%s = %u", name, off);
}

static void check(const uint8_t *data, uint32_t len, uint32_t in_port)
{
    /* Exactly-sized heap copies: ASan flags any out-of-bounds access. */
    uint8_t *frame = malloc(len ? len : 1);
    struct vs_key *key = malloc(sizeof *key);
    struct vs_key *key2 = malloc(sizeof *key2);
    struct vs_layers *L = malloc(sizeof *L);
    struct vs_layers *L2 = malloc(sizeof *L2);
    if (!frame || !key || !key2 || !L || !L2)
        abort();
    if (len)
        memcpy(frame, data, len);

    memset(key, 0x00, sizeof *key);
    memset(L, 0x00, sizeof *L);
    CHECK(vs_parse(frame, len, in_port, key, L) == 0, "vs_parse returned nonzero");

    check_offset(L->l2_5, len, "l2_5");
    check_offset(L->l3, len, "l3");
    check_offset(L->l4, len, "l4");
    check_offset(L->vlan, len, "vlan");
    CHECK(L->vlan == VS_NO_LAYER || L->vlan == 12, "vlan = %u", L->vlan);
    CHECK((L->vlan == VS_NO_LAYER) == (L->n_vlan == 0), "vlan %u n_vlan %u", L->vlan, L->n_vlan);
    CHECK(L->n_vlan <= 2, "n_vlan = %u", L->n_vlan);
    if (L->l3 != VS_NO_LAYER && L->l4 != VS_NO_LAYER)
        CHECK(L->l4 > L->l3, "l3 %u l4 %u", L->l3, L->l4);
    if (L->l2_5 != VS_NO_LAYER && L->l3 != VS_NO_LAYER)
        CHECK(L->l3 > L->l2_5, "l2_5 %u l3 %u", L->l2_5, L->l3);
    CHECK(L->l3_ok == (L->l3 != VS_NO_LAYER), "l3_ok %u l3 %u", L->l3_ok, L->l3);
    CHECK(L->l4_ok == (L->l4 != VS_NO_LAYER), "l4_ok %u l4 %u", L->l4_ok, L->l4);
    CHECK(!L->l4_ok || L->l3_ok, "l4 without l3");
    CHECK(L->pad == 0, "layers.pad = %u", L->pad);

    /* Tunnel metadata never comes from the frame. */
    CHECK(all_zero(key->tun_ipv4_src, sizeof key->tun_ipv4_src), "tun_ipv4_src set");
    CHECK(all_zero(key->tun_ipv4_dst, sizeof key->tun_ipv4_dst), "tun_ipv4_dst set");
    CHECK(rd32(key->in_port) == in_port, "in_port %#x != %#x", rd32(key->in_port), in_port);
    CHECK(all_zero(key->in_phy_port, sizeof key->in_phy_port), "in_phy_port set");
    CHECK(all_zero(key->metadata, sizeof key->metadata), "metadata set");
    CHECK(all_zero(key->tunnel_id, sizeof key->tunnel_id), "tunnel_id set");
    CHECK(all_zero(key->pbb_isid, sizeof key->pbb_isid), "pbb_isid set");
    CHECK(!!(key->present & VS_PRESENT_L2) == (len >= 14), "present %#x", key->present);
    CHECK(!!(key->present & VS_PRESENT_L3) == L->l3_ok, "present %#x l3_ok %u",
          key->present, L->l3_ok);
    CHECK(!!(key->present & VS_PRESENT_L4) == L->l4_ok, "present %#x l4_ok %u",
          key->present, L->l4_ok);
    CHECK(!(key->present & ~0x3fu), "present %#x has unknown bits", key->present);
    if (key->present & (VS_PRESENT_ND | VS_PRESENT_ND_SLL | VS_PRESENT_ND_TLL))
        CHECK(L->l4_ok && key->ip_proto == 58, "ND without ICMPv6 L4");
    if (key->present & (VS_PRESENT_ND_SLL | VS_PRESENT_ND_TLL))
        CHECK(key->present & VS_PRESENT_ND, "ND option without ND target");
    if (len < 14) {
        struct vs_key z;
        memset(&z, 0, sizeof z);
        memcpy(z.in_port, key->in_port, 4);
        CHECK(memcmp(&z, key, sizeof z) == 0, "runt frame set key fields");
        CHECK(L->l2_5 == VS_NO_LAYER && L->l3 == VS_NO_LAYER && L->l4 == VS_NO_LAYER &&
              L->vlan == VS_NO_LAYER, "runt frame has layers");
    } else {
        CHECK(memcmp(key->eth_dst, frame, 12) == 0, "eth addresses");
    }

    /* Same answer whatever the output buffers held before. */
    memset(key2, 0xff, sizeof *key2);
    memset(L2, 0xff, sizeof *L2);
    vs_parse(frame, len, in_port, key2, L2);
    CHECK(memcmp(key, key2, sizeof *key) == 0, "key depends on its previous contents");
    CHECK(memcmp(L, L2, sizeof *L) == 0, "layers depend on their previous contents");

    /* Same answer from an odd address (frames are not aligned). */
    uint8_t *odd = malloc(len + 1);
    if (!odd)
        abort();
    if (len)
        memcpy(odd + 1, data, len);
    vs_parse(odd + 1, len, in_port, key2, L2);
    CHECK(memcmp(key, key2, sizeof *key) == 0, "key depends on alignment");
    free(odd);

    free(frame);
    free(key);
    free(key2);
    free(L);
    free(L2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > UINT32_MAX)
        return 0;
    const uint32_t len = (uint32_t)size;
    /* in_port from the length, so that it varies but needs no input bytes. */
    const uint32_t in_port = 0x9e3779b9u * (len + 1);
    check(data, len, in_port);
    if (len <= PREFIX_MAX)
        for (uint32_t n = 0; n < len; n++)
            check(data, n, in_port ^ n);
    return 0;
}
