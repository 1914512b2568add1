/* trafficgen.c -- packet generator, counting sink and pinger for the
 * end-to-end forwarding benchmark (benches/bench_e2e.py).
 *
 *   trafficgen gen  --netns NS --ifname eth0 --src-mac M --dst-mac M
 *                   --src-ip A --dst-ip B --flows N --duration S [--size 60]
 *                   [--run-id X] [--cpu C] [--batch B] [--mode ring|mmsg]
 *   trafficgen sink --netns NS --ifname eth0 [--run-id X] [--cpu C]
 *                   [--max-seconds S]
 *   trafficgen ping --netns NS --dst-ip B [--count N] [--interval-ms MS]
 *   trafficgen hello --netns NS --ifname eth0 --src-mac M [--count N]
 *
 * gen: pre-built IPv4/UDP frames (N flows: flow i has source address
 *      A + i / 256 and source port 1024 + i % 256), sent as fast as one
 *      core allows for a fixed duration, through a PACKET_TX_RING
 *      (TPACKET_V2) or sendmmsg batches, both with PACKET_QDISC_BYPASS.
 *      The payload carries a magic, the run id and the flow index.
 *      Prints one JSON line: frames handed to the kernel, seconds, pps.
 * sink: a TPACKET_V3 RX ring bound to ETH_P_IP; counts the frames with the
 *      magic and run id (and the distinct flows seen) until SIGINT/SIGTERM
 *      or --max-seconds.  Prints "ready" once bound, then one JSON line.
 * ping: ICMP echo every interval; RTT from the send time to the kernel's
 *      receive timestamp (SO_TIMESTAMPNS).  One JSON line with every RTT.
 * hello: N broadcast frames (EtherType 0x88b5, local experimental) from
 *      --src-mac, so that a learning switch learns that MAC on this port.
 *
 * --netns NS enters /var/run/netns/NS before any socket is made.  Every
 * access to a ring or a received frame is bounds-checked.  Linux only. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAGIC "VSE2EGEN"               /* 8 bytes at the start of the UDP payload */
#define MAGIC_LEN 8
#define HDRS_LEN 42                    /* Ethernet 14 + IPv4 20 + UDP 8 */
#define MIN_FRAME 60                   /* 64 on the wire with the FCS */
#define MAX_FRAME 1514
#define MAX_FLOWS (1u << 20)
#define MAX_BATCH 1024
#define TX_FRAME_SIZE 2048u            /* TX ring slot: header + frame */
#define TX_BLOCK_SIZE (1u << 16)
#define TX_BLOCK_NR 64u
#define RX_BLOCK_SIZE (1u << 20)
#define RX_BLOCK_NR 64u
#define MAX_PINGS 100000

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void die(const char *what)
{
    fprintf(stderr, "trafficgen: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void usage(const char *msg)
{
    fprintf(stderr, "trafficgen: %s\nusage: trafficgen gen|sink|ping|hello [options] "
            "(see the comment at the top of tools/trafficgen.c)\n", msg);
    exit(2);
}

static uint64_t now_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- options ------------------------------------------------------------ */

struct opts {
    const char *netns, *ifname;
    uint8_t src_mac[6], dst_mac[6];
    uint32_t src_ip, dst_ip;           /* host order */
    uint32_t flows, size, run_id, batch, count;
    double duration, max_seconds, interval_ms;
    int cpu;
    int ring;                          /* gen: 1 = TX ring, 0 = sendmmsg */
};

static int parse_mac(const char *s, uint8_t mac[6])
{
    unsigned v[6];
    char tail;
    if (sscanf(s, "%x:%x:%x:%x:%x:%x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
               &tail) != 6)
        return -1;
    for (int i = 0; i < 6; i++) {
        if (v[i] > 0xff)
            return -1;
        mac[i] = (uint8_t)v[i];
    }
    return 0;
}

static uint32_t parse_ip(const char *s)
{
    struct in_addr a;
    if (inet_pton(AF_INET, s, &a) != 1)
        usage("bad IPv4 address");
    return ntohl(a.s_addr);
}

static unsigned long parse_uint(const char *s, unsigned long lo, unsigned long hi)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 0);
    if (errno || *end || v < lo || v > hi)
        usage("number out of range");
    return v;
}

static double parse_double(const char *s, double lo, double hi)
{
    char *end;
    double v = strtod(s, &end);
    if (*end || !(v >= lo && v <= hi))
        usage("number out of range");
    return v;
}

static void parse_opts(int argc, char **argv, struct opts *o)
{
    memset(o, 0, sizeof *o);
    o->ifname = "eth0";
    o->flows = 256;
    o->size = MIN_FRAME;
    o->batch = 256;
    o->count = 200;
    o->duration = 5;
    o->max_seconds = 600;
    o->interval_ms = 10;
    o->cpu = -1;
    o->ring = 1;
    for (int i = 2; i < argc; i++) {
        const char *k = argv[i];
        if (i + 1 >= argc)
            usage("option without a value");
        const char *v = argv[++i];
        if (!strcmp(k, "--netns"))
            o->netns = v;
        else if (!strcmp(k, "--ifname"))
            o->ifname = v;
        else if (!strcmp(k, "--src-mac") && !parse_mac(v, o->src_mac))
            ;
        else if (!strcmp(k, "--dst-mac") && !parse_mac(v, o->dst_mac))
            ;
        else if (!strcmp(k, "--src-ip"))
            o->src_ip = parse_ip(v);
        else if (!strcmp(k, "--dst-ip"))
            o->dst_ip = parse_ip(v);
        else if (!strcmp(k, "--flows"))
            o->flows = (uint32_t)parse_uint(v, 1, MAX_FLOWS);
        else if (!strcmp(k, "--size"))
            o->size = (uint32_t)parse_uint(v, MIN_FRAME, MAX_FRAME);
        else if (!strcmp(k, "--run-id"))
            o->run_id = (uint32_t)parse_uint(v, 0, UINT32_MAX);
        else if (!strcmp(k, "--batch"))
            o->batch = (uint32_t)parse_uint(v, 1, MAX_BATCH);
        else if (!strcmp(k, "--count"))
            o->count = (uint32_t)parse_uint(v, 1, MAX_PINGS);
        else if (!strcmp(k, "--cpu"))
            o->cpu = (int)parse_uint(v, 0, CPU_SETSIZE - 1);
        else if (!strcmp(k, "--duration"))
            o->duration = parse_double(v, 0.01, 3600);
        else if (!strcmp(k, "--max-seconds"))
            o->max_seconds = parse_double(v, 0.1, 7200);
        else if (!strcmp(k, "--interval-ms"))
            o->interval_ms = parse_double(v, 0.1, 10000);
        else if (!strcmp(k, "--mode") && (!strcmp(v, "ring") || !strcmp(v, "mmsg")))
            o->ring = !strcmp(v, "ring");
        else
            usage(k);
    }
    if (strlen(o->ifname) >= IFNAMSIZ)
        usage("interface name too long");
}

static void enter_netns(const char *name)
{
    if (!name)
        return;
    if (strchr(name, '/') || strlen(name) > 200)
        usage("bad namespace name");
    char path[256];
    snprintf(path, sizeof path, "/var/run/netns/%s", name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die(path);
    if (setns(fd, CLONE_NEWNET) < 0)
        die("setns");
    close(fd);
}

static void pin(int cpu)
{
    if (cpu < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) < 0)
        die("sched_setaffinity");
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;         /* no SA_RESTART: poll() returns EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static int packet_socket(const char *ifname, uint16_t proto, int *ifindex)
{
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(proto));
    if (fd < 0)
        die("AF_PACKET socket");
    *ifindex = (int)if_nametoindex(ifname);
    if (!*ifindex)
        die(ifname);
    return fd;
}

static void bind_packet(int fd, int ifindex, uint16_t proto)
{
    struct sockaddr_ll sll;
    memset(&sll, 0, sizeof sll);
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(proto);
    sll.sll_ifindex = ifindex;
    if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0)
        die("bind");
}

static int setopt(int fd, int level, int name, int v)
{
    return setsockopt(fd, level, name, &v, sizeof v);
}

/* ---- frames ------------------------------------------------------------- */

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)(v >> 16)); put16(p + 2, (uint16_t)v); }

static uint32_t csum_add(uint32_t s, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i + 1 < n; i += 2)
        s += (uint32_t)(p[i] << 8 | p[i + 1]);
    if (n & 1)
        s += (uint32_t)p[n - 1] << 8;
    return s;
}

static uint16_t csum_fold(uint32_t s)
{
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

/* One frame of flow i into f (o->size bytes). */
static void build_frame(const struct opts *o, uint32_t i, uint8_t *f)
{
    uint32_t len = o->size;
    memset(f, 0, len);
    memcpy(f, o->dst_mac, 6);
    memcpy(f + 6, o->src_mac, 6);
    put16(f + 12, ETH_P_IP);
    uint8_t *ip = f + 14;
    uint32_t src = o->src_ip + i / 256;
    uint16_t sport = (uint16_t)(1024 + i % 256);
    ip[0] = 0x45;
    put16(ip + 2, (uint16_t)(len - 14));
    put16(ip + 6, 0x4000);             /* DF */
    ip[8] = 64;
    ip[9] = 17;
    put32(ip + 12, src);
    put32(ip + 16, o->dst_ip);
    put16(ip + 10, csum_fold(csum_add(0, ip, 20)));
    uint8_t *udp = ip + 20;
    uint16_t ulen = (uint16_t)(len - 34);
    put16(udp, sport);
    put16(udp + 2, 9);                 /* discard */
    put16(udp + 4, ulen);
    uint8_t *pay = udp + 8;
    memcpy(pay, MAGIC, MAGIC_LEN);
    put32(pay + 8, o->run_id);
    put32(pay + 12, i);
    /* UDP checksum over the pseudo header. */
    uint8_t ph[12];
    memcpy(ph, ip + 12, 8);
    ph[8] = 0;
    ph[9] = 17;
    put16(ph + 10, ulen);
    uint16_t c = csum_fold(csum_add(csum_add(0, ph, 12), udp, ulen));
    put16(udp + 6, c ? c : 0xffff);
}

/* ---- gen ---------------------------------------------------------------- */

struct gen_result {
    uint64_t sent, wrong_format, send_errors;
    double seconds;
};

static void gen_ring(const struct opts *o, int fd, int ifindex, const uint8_t *frames,
                     struct gen_result *r)
{
    struct tpacket_req req;
    memset(&req, 0, sizeof req);
    req.tp_block_size = TX_BLOCK_SIZE;
    req.tp_block_nr = TX_BLOCK_NR;
    req.tp_frame_size = TX_FRAME_SIZE;
    req.tp_frame_nr = TX_BLOCK_SIZE / TX_FRAME_SIZE * TX_BLOCK_NR;
    if (setopt(fd, SOL_PACKET, PACKET_VERSION, TPACKET_V2) < 0)
        die("PACKET_VERSION");
    if (setsockopt(fd, SOL_PACKET, PACKET_TX_RING, &req, sizeof req) < 0)
        die("PACKET_TX_RING");
    size_t map_len = (size_t)req.tp_block_size * req.tp_block_nr;
    uint8_t *map = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED)
        die("mmap TX ring");
    bind_packet(fd, ifindex, 0);
    const uint32_t nslots = req.tp_frame_nr;
    const size_t data_off = TPACKET_ALIGN(sizeof(struct tpacket2_hdr));
    if (data_off + o->size > TX_FRAME_SIZE)
        usage("frame too large for the TX ring slot");
    uint32_t cur = 0, fi = 0;
    uint64_t t0 = now_ns(CLOCK_MONOTONIC);
    uint64_t end = t0 + (uint64_t)(o->duration * 1e9);
    while (!stop_flag) {
        uint32_t filled = 0;
        while (filled < o->batch) {
            struct tpacket2_hdr *h = (struct tpacket2_hdr *)(map + (size_t)cur * TX_FRAME_SIZE);
            uint32_t st = __atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE);
            if (st & TP_STATUS_WRONG_FORMAT)
                r->wrong_format++;
            else if (st != TP_STATUS_AVAILABLE)
                break;                 /* still owned by the kernel */
            memcpy((uint8_t *)h + data_off, frames + (size_t)fi * o->size, o->size);
            h->tp_len = o->size;
            __atomic_store_n(&h->tp_status, TP_STATUS_SEND_REQUEST, __ATOMIC_RELEASE);
            cur = cur + 1 == nslots ? 0 : cur + 1;
            fi = fi + 1 == o->flows ? 0 : fi + 1;
            filled++;
        }
        if (send(fd, NULL, 0, 0) < 0 && errno != EINTR && errno != EAGAIN &&
            errno != ENOBUFS)
            die("send (TX ring)");
        r->sent += filled;
        if (now_ns(CLOCK_MONOTONIC) >= end)
            break;
    }
    /* Wait (bounded) until the kernel has taken every queued frame. */
    uint64_t wait_end = now_ns(CLOCK_MONOTONIC) + 2000000000ull;
    for (uint32_t s = 0; s < nslots && now_ns(CLOCK_MONOTONIC) < wait_end;) {
        struct tpacket2_hdr *h = (struct tpacket2_hdr *)(map + (size_t)s * TX_FRAME_SIZE);
        uint32_t st = __atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE);
        if (st == TP_STATUS_SEND_REQUEST || st == TP_STATUS_SENDING) {
            send(fd, NULL, 0, MSG_DONTWAIT);
            usleep(100);
            continue;
        }
        if (st & TP_STATUS_WRONG_FORMAT)
            r->wrong_format++;
        s++;
    }
    r->seconds = (double)(now_ns(CLOCK_MONOTONIC) - t0) / 1e9;
    r->sent -= r->wrong_format < r->sent ? r->wrong_format : r->sent;
    munmap(map, map_len);
}

static void gen_mmsg(const struct opts *o, int fd, int ifindex, const uint8_t *frames,
                     struct gen_result *r)
{
    static struct mmsghdr m[MAX_BATCH];
    static struct iovec iov[MAX_BATCH];
    bind_packet(fd, ifindex, 0);
    setopt(fd, SOL_SOCKET, SO_SNDBUF, 4 << 20);
    uint32_t fi = 0;
    uint64_t t0 = now_ns(CLOCK_MONOTONIC);
    uint64_t end = t0 + (uint64_t)(o->duration * 1e9);
    while (!stop_flag) {
        memset(m, 0, o->batch * sizeof m[0]);
        for (uint32_t i = 0; i < o->batch; i++) {
            iov[i].iov_base = (void *)(frames + (size_t)fi * o->size);
            iov[i].iov_len = o->size;
            m[i].msg_hdr.msg_iov = &iov[i];
            m[i].msg_hdr.msg_iovlen = 1;
            fi = fi + 1 == o->flows ? 0 : fi + 1;
        }
        uint32_t done = 0;
        while (done < o->batch && !stop_flag) {
            int n = sendmmsg(fd, m + done, o->batch - done, 0);
            if (n > 0) {
                done += (uint32_t)n;
            } else if (n < 0 && errno != EINTR) {
                r->send_errors++;      /* ENOBUFS and the like: skip one */
                done++;
            }
        }
        r->sent += done;
        if (now_ns(CLOCK_MONOTONIC) >= end)
            break;
    }
    r->seconds = (double)(now_ns(CLOCK_MONOTONIC) - t0) / 1e9;
    r->sent -= r->send_errors < r->sent ? r->send_errors : r->sent;
}

static int cmd_gen(const struct opts *o)
{
    static const uint8_t zero[6];
    if (!memcmp(o->src_mac, zero, 6) || !memcmp(o->dst_mac, zero, 6) || !o->src_ip ||
        !o->dst_ip)
        usage("gen needs --src-mac, --dst-mac, --src-ip and --dst-ip");
    if (o->src_ip > UINT32_MAX - o->flows / 256)
        usage("source address range overflows");
    uint8_t *frames = malloc((size_t)o->flows * o->size);
    if (!frames)
        die("malloc frames");
    for (uint32_t i = 0; i < o->flows; i++)
        build_frame(o, i, frames + (size_t)i * o->size);
    int ifindex;
    int fd = packet_socket(o->ifname, 0, &ifindex);   /* protocol 0: receives nothing */
    if (setopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, 1) < 0)
        die("PACKET_QDISC_BYPASS");
    struct gen_result r;
    memset(&r, 0, sizeof r);
    if (o->ring)
        gen_ring(o, fd, ifindex, frames, &r);
    else
        gen_mmsg(o, fd, ifindex, frames, &r);
    close(fd);
    free(frames);
    printf("{\"sent\": %llu, \"seconds\": %.6f, \"pps\": %.1f, \"wrong_format\": %llu, "
           "\"send_errors\": %llu, \"mode\": \"%s\", \"flows\": %u, \"size\": %u}\n",
           (unsigned long long)r.sent, r.seconds, r.seconds > 0 ? (double)r.sent / r.seconds : 0.0,
           (unsigned long long)r.wrong_format, (unsigned long long)r.send_errors,
           o->ring ? "ring" : "mmsg", o->flows, o->size);
    return 0;
}

/* ---- sink --------------------------------------------------------------- */

struct sink_state {
    uint64_t count, other, first_ns, last_ns;
    uint32_t flows_seen;
    uint8_t *seen;                     /* bitmap of flow indexes, MAX_FLOWS bits */
    uint32_t run_id;
};

static void sink_frame(struct sink_state *s, const uint8_t *f, uint32_t len, uint64_t ts)
{
    if (len < HDRS_LEN + 16 || f[12] != 0x08 || f[13] != 0x00 || f[14] != 0x45 ||
        f[23] != 17 || memcmp(f + HDRS_LEN, MAGIC, MAGIC_LEN) != 0) {
        s->other++;
        return;
    }
    const uint8_t *p = f + HDRS_LEN + MAGIC_LEN;
    uint32_t run = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    uint32_t idx = (uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7];
    if (run != s->run_id) {
        s->other++;
        return;
    }
    s->count++;
    if (!s->first_ns)
        s->first_ns = ts;
    s->last_ns = ts;
    if (idx < MAX_FLOWS && !(s->seen[idx >> 3] & (1u << (idx & 7)))) {
        s->seen[idx >> 3] |= (uint8_t)(1u << (idx & 7));
        s->flows_seen++;
    }
}

/* Walk every block the kernel handed over; returns the blocks released. */
static uint32_t sink_drain(struct sink_state *s, uint8_t *map, uint32_t *cur)
{
    uint32_t released = 0;
    for (;;) {
        struct tpacket_block_desc *bd =
            (struct tpacket_block_desc *)(map + (size_t)*cur * RX_BLOCK_SIZE);
        if (!(__atomic_load_n(&bd->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER))
            return released;
        uint8_t *end = (uint8_t *)bd + RX_BLOCK_SIZE;
        uint32_t n = bd->hdr.bh1.num_pkts;
        uint32_t off = bd->hdr.bh1.offset_to_first_pkt;
        uint8_t *h8 = off >= sizeof *bd && off < RX_BLOCK_SIZE ? (uint8_t *)bd + off : end;
        for (uint32_t i = 0; i < n; i++) {
            if ((size_t)(end - h8) < sizeof(struct tpacket3_hdr))
                break;
            struct tpacket3_hdr *h = (struct tpacket3_hdr *)h8;
            uint32_t mac = h->tp_mac, snap = h->tp_snaplen;
            if (mac <= (size_t)(end - h8) && snap <= (size_t)(end - h8) - mac)
                sink_frame(s, h8 + mac, snap,
                           (uint64_t)h->tp_sec * 1000000000ull + h->tp_nsec);
            else
                s->other++;
            if (!h->tp_next_offset || h->tp_next_offset > (size_t)(end - h8))
                break;
            h8 += h->tp_next_offset;
        }
        __atomic_store_n(&bd->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
        *cur = (*cur + 1) % RX_BLOCK_NR;
        released++;
    }
}

static int cmd_sink(const struct opts *o)
{
    struct sink_state s;
    memset(&s, 0, sizeof s);
    s.run_id = o->run_id;
    s.seen = calloc(MAX_FLOWS / 8, 1);
    if (!s.seen)
        die("calloc");
    int ifindex;
    int fd = packet_socket(o->ifname, ETH_P_IP, &ifindex);
    if (setopt(fd, SOL_PACKET, PACKET_VERSION, TPACKET_V3) < 0)
        die("PACKET_VERSION");
    struct tpacket_req3 req;
    memset(&req, 0, sizeof req);
    req.tp_block_size = RX_BLOCK_SIZE;
    req.tp_block_nr = RX_BLOCK_NR;
    req.tp_frame_size = 2048;
    req.tp_frame_nr = RX_BLOCK_SIZE / 2048 * RX_BLOCK_NR;
    req.tp_retire_blk_tov = 10;
    if (setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) < 0)
        die("PACKET_RX_RING");
    size_t map_len = (size_t)RX_BLOCK_SIZE * RX_BLOCK_NR;
    uint8_t *map = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED)
        die("mmap RX ring");
    setopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1);
    bind_packet(fd, ifindex, ETH_P_IP);
    printf("ready\n");
    fflush(stdout);
    uint64_t deadline = now_ns(CLOCK_MONOTONIC) + (uint64_t)(o->max_seconds * 1e9);
    uint32_t cur = 0;
    while (!stop_flag && now_ns(CLOCK_MONOTONIC) < deadline) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, 100);
        if (r < 0 && errno != EINTR)
            die("poll");
        sink_drain(&s, map, &cur);
    }
    /* Frames still in an open block: wait for the block timeout, then drain. */
    usleep(50 * 1000);
    sink_drain(&s, map, &cur);
    struct tpacket_stats_v3 st;
    socklen_t sl = sizeof st;
    memset(&st, 0, sizeof st);
    getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &st, &sl);
    printf("{\"count\": %llu, \"other\": %llu, \"flows_seen\": %u, \"first_ns\": %llu, "
           "\"last_ns\": %llu, \"kernel_packets\": %u, \"ring_drops\": %u, "
           "\"freeze_q\": %u}\n",
           (unsigned long long)s.count, (unsigned long long)s.other, s.flows_seen,
           (unsigned long long)s.first_ns, (unsigned long long)s.last_ns, st.tp_packets,
           st.tp_drops, st.tp_freeze_q_cnt);
    munmap(map, map_len);
    close(fd);
    free(s.seen);
    return 0;
}

/* ---- hello -------------------------------------------------------------- */

static int cmd_hello(const struct opts *o)
{
    static const uint8_t zero[6];
    if (!memcmp(o->src_mac, zero, 6))
        usage("hello needs --src-mac");
    int ifindex;
    int fd = packet_socket(o->ifname, 0, &ifindex);
    bind_packet(fd, ifindex, 0);
    uint8_t f[MIN_FRAME];
    memset(f, 0, sizeof f);
    memset(f, 0xff, 6);
    memcpy(f + 6, o->src_mac, 6);
    put16(f + 12, 0x88b5);
    memcpy(f + 14, "vswitch-e2e-hello", 17);
    uint32_t sent = 0;
    for (uint32_t i = 0; i < o->count; i++) {
        if (send(fd, f, sizeof f, 0) == (ssize_t)sizeof f)
            sent++;
        usleep(1000);
    }
    close(fd);
    printf("{\"sent\": %u}\n", sent);
    return sent ? 0 : 1;
}

/* ---- ping --------------------------------------------------------------- */

static int cmd_ping(const struct opts *o)
{
    if (!o->dst_ip)
        usage("ping needs --dst-ip");
    int fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
    if (fd < 0)
        die("raw ICMP socket");
    if (setopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, 1) < 0)
        die("SO_TIMESTAMPNS");
    struct sockaddr_in dst;
    memset(&dst, 0, sizeof dst);
    dst.sin_family = AF_INET;
    dst.sin_addr.s_addr = htonl(o->dst_ip);
    uint16_t ident = (uint16_t)(getpid() ^ (uint32_t)now_ns(CLOCK_MONOTONIC));
    double *rtt = calloc(o->count, sizeof *rtt);
    if (!rtt)
        die("calloc");
    uint32_t got = 0;
    uint64_t interval = (uint64_t)(o->interval_ms * 1e6);
    uint64_t next = now_ns(CLOCK_MONOTONIC);
    for (uint32_t seq = 0; seq < o->count && !stop_flag; seq++) {
        uint8_t pkt[64];
        memset(pkt, 0, sizeof pkt);
        pkt[0] = ICMP_ECHO;
        put16(pkt + 4, ident);
        put16(pkt + 6, (uint16_t)seq);
        memcpy(pkt + 8, "vswitch-e2e-ping", 16);
        put16(pkt + 2, csum_fold(csum_add(0, pkt, sizeof pkt)));
        uint64_t sent_rt = now_ns(CLOCK_REALTIME);
        if (sendto(fd, pkt, sizeof pkt, 0, (struct sockaddr *)&dst, sizeof dst) < 0)
            die("sendto");
        uint64_t wait_end = now_ns(CLOCK_MONOTONIC) + 1000000000ull;   /* 1 s: lost */
        for (;;) {
            uint64_t t = now_ns(CLOCK_MONOTONIC);
            if (t >= wait_end)
                break;
            struct pollfd p = {.fd = fd, .events = POLLIN};
            int r = poll(&p, 1, (int)((wait_end - t) / 1000000 + 1));
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            uint8_t buf[1500];
            char cbuf[256];
            struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf};
            struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                                .msg_controllen = sizeof cbuf};
            ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT);
            if (n < 20)
                continue;
            uint32_t ihl = (uint32_t)(buf[0] & 0xf) * 4;
            if (ihl < 20 || (size_t)n < ihl + 8)
                continue;
            const uint8_t *ic = buf + ihl;
            if (ic[0] != ICMP_ECHOREPLY || (uint16_t)(ic[4] << 8 | ic[5]) != ident ||
                (uint16_t)(ic[6] << 8 | ic[7]) != (uint16_t)seq)
                continue;
            uint64_t rx = 0;
            for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_TIMESTAMPNS &&
                    c->cmsg_len >= CMSG_LEN(sizeof(struct timespec))) {
                    struct timespec ts;
                    memcpy(&ts, CMSG_DATA(c), sizeof ts);
                    rx = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
                }
            }
            if (!rx)
                rx = now_ns(CLOCK_REALTIME);
            rtt[got++] = rx > sent_rt ? (double)(rx - sent_rt) / 1000.0 : 0.0;
            break;
        }
        next += interval;
        uint64_t t = now_ns(CLOCK_MONOTONIC);
        if (next > t) {
            struct timespec ts = {.tv_sec = (time_t)(next / 1000000000ull),
                                  .tv_nsec = (long)(next % 1000000000ull)};
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        } else {
            next = t;
        }
    }
    printf("{\"sent\": %u, \"received\": %u, \"rtt_us\": [", o->count, got);
    for (uint32_t i = 0; i < got; i++)
        printf("%s%.3f", i ? ", " : "", rtt[i]);
    printf("]}\n");
    free(rtt);
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage("no command");
    struct opts o;
    parse_opts(argc, argv, &o);
    install_signals();
    enter_netns(o.netns);
    pin(o.cpu);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!strcmp(argv[1], "gen"))
        return cmd_gen(&o);
    if (!strcmp(argv[1], "sink"))
        return cmd_sink(&o);
    if (!strcmp(argv[1], "ping"))
        return cmd_ping(&o);
    if (!strcmp(argv[1], "hello"))
        return cmd_hello(&o);
    usage("unknown command");
    return 2;
}
