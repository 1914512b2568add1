/* datapath.h -- ports and poll threads that switch real traffic through a
 * pipeline (see fastpath.h for the pipeline itself).
 *
 * What it is
 * ==========
 * A datapath (struct vs_dp) serves one bridge.  It owns ports (real network
 * devices, TAP devices, patch links to other datapaths) and N poll threads;
 * it borrows one struct vs_pipeline from the caller, who keeps ownership and
 * must free it only after vs_dp_free().  Each poll thread owns a vs_context
 * and the receive side of a subset of the ports:
 *
 *   round:  for each of my ports: take up to batch_size frames
 *             -> vs_process_batch(ctx, pipeline)
 *             -> upcalls:  copied into the datapath's upcall queue
 *             -> emits:    port N / LOCAL: staged for port N
 *                          NORMAL: MAC learning switch (below) -> staged
 *                          patch port: injected into the peer datapath
 *             -> staged frames sent per port in one call (sendmmsg / a loop
 *                of write() on a TAP, which has no batch write)
 *             -> the receive buffers are given back (ring blocks released)
 *   idle:   after busy_rounds empty rounds the thread blocks in epoll_wait
 *           on its ports' fds and a wake-up eventfd, so an idle datapath
 *           costs no CPU; traffic wakes it and it polls again.
 * The poll threads are plain pthreads: Python's GIL is never involved.
 *
 * Port types
 * ==========
 *  system    an existing netdev (by ifindex or name) over AF_PACKET with a
 *            TPACKET_V3 mmap'ed RX ring, promiscuous (PACKET_MR_PROMISC),
 *            PACKET_IGNORE_OUTGOING (it does not see its own sends) and
 *            PACKET_QDISC_BYPASS; transmit with sendmmsg.  VLAN tags the
 *            kernel took out of the frame (tp_vlan_tci) are put back.
 *            Offloads (PACKET_VNET_HDR, see docs/datapath.md): every frame
 *            comes with a virtio_net_hdr; checksums left to offload
 *            (NEEDS_CSUM, e.g. from a veth peer) are completed and GSO
 *            super-frames (TCPv4/v6, UDP L4, up to 64 KiB) are cut into
 *            MTU-sized frames in software (dp_gso.c) before the pipeline;
 *            malformed vnet headers count as rx_errors.  Ring blocks must
 *            be >= 128 KiB to hold a super-frame.  Frames are sent with a
 *            zero vnet header (complete, not GSO).
 *  tap       a TAP device the datapath creates (IFF_TAP|IFF_NO_PI,
 *            non-blocking) and removes again (closing it destroys it).
 *  internal  the bridge's own host interface: a TAP named after the bridge,
 *            port number OFPP_LOCAL by convention (the caller passes it).
 *  patch     one end of a link between two datapaths: a frame output to it
 *            is run through the peer datapath's pipeline with the peer patch
 *            port as in_port, inline, in the same thread.  Nested patch hops
 *            go at most patch_max_depth deep; deeper frames are dropped and
 *            counted (patch_loop_drops).  Each end names its peer datapath
 *            and peer port; the pair is made by adding both ends.
 *  afxdp     an existing netdev (by ifindex or name) over AF_XDP: one UMEM
 *            and one XSK socket per port bound to one rx queue (`queue`),
 *            libxdp's default XDP program redirecting that queue to the
 *            socket, attached in native mode (XDP_FLAGS_DRV_MODE) or, when
 *            the driver refuses, generic (SKB) mode (`xdp_mode` forces
 *            one); zero-copy where the driver allows, else copy mode.
 *            Frames go to the pipeline straight from the UMEM; emits are
 *            copied into free UMEM tx frames (any thread may transmit: a
 *            per-port tx mutex guards the tx and completion rings).  The
 *            design and UMEM frame ownership: dp_port_afxdp.c.  Optional:
 *            built only with libxdp + libbpf (vs_dp_afxdp_available());
 *            otherwise vs_dp_add_port refuses it and says why.
 * Every port has an OpenFlow port number (1..OFPP_MAX-1, or OFPP_LOCAL), is
 * registered in the pipeline (vs_pipeline_set_port: FLOOD/ALL, liveness) and
 * has counters (relaxed atomics: any thread may transmit on any port).
 * Frames longer than the port's MTU + 14 + 8 (two VLAN tags) are counted
 * (rx/tx_oversize) and dropped.
 *
 * NORMAL (a MAC learning switch, as Open vSwitch's)
 * ======
 * Emits to OFPP_NORMAL are switched by the datapath: the frame's VLAN comes
 * from the input port's mode (access: the port's tag, tagged frames dropped;
 * trunk: the 802.1Q tag, untagged = VLAN 0; native-untagged/native-tagged:
 * untagged = the native VLAN `tag`); a trunk carries the VLANs in its
 * `trunks` bitmap (all zero = all VLANs, the native VLAN implicitly).  The
 * source (VLAN, MAC) is learned unless the MAC is multicast; a known unicast
 * destination goes to its port (never back out of the input port); unknown
 * unicast, broadcast and multicast flood to every port that carries the
 * VLAN except the input port and ports with VS_DP_PF_NO_FLOOD.  On output
 * the tag is added or removed per the output port's mode.  A priority tag
 * (VID 0) counts as untagged.  Only TPID 0x8100 is a VLAN tag for NORMAL.
 * The table ages entries (mac_aging_s, default 300 s) and holds at most
 * mac_max (default 8192) entries, evicting the least recently used.
 * A pipeline with no flows drops everything (table miss): for a standalone
 * learning switch install one table-miss rule `priority=0 actions=NORMAL`
 * (vswitch/datapath.py: make_standalone()).
 *
 * Upcalls and packet-out
 * ======================
 * CONTROLLER upcalls are copied into a bounded FIFO (upcall_queue_len,
 * default 1024); when it is full they are dropped and counted.  An eventfd
 * (vs_dp_upcall_fd) is readable from the moment a CONTROLLER upcall is
 * queued, or sFlow samples (VS_DP_UPCALL_SFLOW) fill 1/8 of the queue,
 * until the queue is empty: samples alone below that wait for the reader's
 * periodic drain (the daemon drains every second).
 * vs_dp_packet_out runs an action list on one frame: the actions become the
 * one rule of a private scratch pipeline (table 0, a match pinning the
 * frame's own eth_type/ip_proto/VLAN so that set_field prerequisites hold);
 * OUTPUT:TABLE is rewritten to a private port number whose emits the
 * datapath runs through the real pipeline.  Output to ports, IN_PORT, ALL,
 * FLOOD, LOCAL, NORMAL and CONTROLLER, set_field, push/pop VLAN and the TTL
 * actions work; group actions are refused (the scratch pipeline has no
 * groups).
 *
 * THE LOCKING RULE
 * ================
 *  - Each datapath has a port-table rwlock (dp->lock, writer-preferring).
 *    A poll thread holds it for reading for one round (receive, process,
 *    transmit, release) and NEVER while it waits in epoll; the control
 *    thread holds it for writing to add/delete ports or change a port's
 *    VLAN configuration.  So when vs_dp_del_port() returns, no thread is
 *    touching the port: its fd is closed and its memory freed after the
 *    write lock has been held (every round that could see it is over).
 *    Epoll events carry a port id, never a pointer; ids are looked up in
 *    the thread's current port list under the read lock.
 *  - Lock order: datapath lock before pipeline lock.  vs_process_batch()
 *    takes the pipeline's read lock itself and releases it before it
 *    returns; the datapath calls vs_pipeline_set_port/del_port (pipeline
 *    write lock) only while holding its own write lock.
 *  - Patch: a thread that injects into the peer takes the peer datapath's
 *    read lock (unless it already holds it: A -> B -> A), then
 *    vs_process_batch takes the peer pipeline's read lock itself.  Holding
 *    two datapath read locks cannot deadlock because every port-table
 *    writer of every datapath first takes one global mutex: with at most one
 *    writer waiting anywhere, a reader blocked on a lock never holds the
 *    lock the writer waits for.
 *  - MAC learning: the table is striped over 64 spinlocks by hash bucket;
 *    entries come from a preallocated pool (its free list has its own
 *    spinlock, taken after a stripe lock, never before).
 *  - The upcall queue has its own mutex; vs_dp_packet_out is serialised by
 *    a mutex of its own (taken before the datapath read lock).
 *  - vs_dp_free() first unhooks every patch port of other datapaths that
 *    points at it (under their write locks), then stops and joins its
 *    threads, closes its sockets and removes the TAP devices it created.
 *  - Counters are relaxed atomics; readers may see a port's rx and tx a few
 *    packets apart, never torn values.
 *
 * Errors: functions that can fail return a negative errno and fill
 * err->msg (err->type stays 0, err->code = errno) when err is not NULL.
 */
#ifndef VSWITCH_DATAPATH_H
#define VSWITCH_DATAPATH_H

#include <stddef.h>
#include <stdint.h>

#include "fastpath.h"

#define VS_DP_MAX_THREADS     64
#define VS_DP_MAX_DEPTH       8        /* upper bound for patch_max_depth */
#define VS_DP_NAME_LEN        16       /* IFNAMSIZ */
#define VS_DP_MAX_FRAME       65535

/* Port types. */
#define VS_DP_PORT_SYSTEM     1
#define VS_DP_PORT_TAP        2
#define VS_DP_PORT_INTERNAL   3
#define VS_DP_PORT_PATCH      4
#define VS_DP_PORT_AFXDP      5        /* only if vs_dp_afxdp_available() */
#define VS_DP_PORT_VXLAN      6        /* RFC 7348 tunnel: dp_port_vxlan.c */

/* afxdp XDP attach modes (vs_dp_port_config.xdp_mode, vs_dp_port_info). */
#define VS_DP_XDP_AUTO        0        /* native, generic if native fails */
#define VS_DP_XDP_NATIVE      1        /* XDP_FLAGS_DRV_MODE only */
#define VS_DP_XDP_GENERIC     2        /* XDP_FLAGS_SKB_MODE only */

/* Port flags. */
#define VS_DP_PF_NO_FLOOD     0x1      /* NORMAL and FLOOD skip the port */
#define VS_DP_PF_ADMIN_UP     0x2      /* tap/internal: bring the device up */

/* VLAN modes (for NORMAL). */
#define VS_DP_VLAN_TRUNK           0   /* default: trunks (all VLANs if empty) */
#define VS_DP_VLAN_ACCESS          1   /* untagged, VLAN `tag` */
#define VS_DP_VLAN_NATIVE_UNTAGGED 2   /* trunk; `tag` untagged in and out */
#define VS_DP_VLAN_NATIVE_TAGGED   3   /* trunk; untagged in = `tag`, out tagged */

/* A port number the datapath keeps for itself (packet-out's TABLE). */
#define VS_DP_PORT_RESERVED   0xffffff00u

struct vs_dp;
struct vs_dp_vxlan_config;

struct vs_dp_config {
    uint32_t n_threads;            /* poll threads; 0 = 1 */
    uint32_t batch_size;           /* frames per receive; 0 = 64; <= VS_MAX_BATCH */
    uint32_t busy_rounds;          /* empty rounds before blocking; 0 = 128 */
    uint32_t upcall_queue_len;     /* 0 = 1024 */
    uint32_t mac_aging_s;          /* 0 = 300 */
    uint32_t mac_max;              /* 0 = 8192 */
    uint32_t ring_block_size;      /* TPACKET_V3 block; power of two; 0 = 256 KiB;
                                    * system ports need >= 128 KiB (64 KiB GSO frames) */
    uint32_t ring_block_nr;        /* 0 = 16 */
    uint32_t ring_tov_ms;          /* block retire timeout; 0 = 1 ms */
    uint32_t patch_max_depth;      /* 0 = 4; at most VS_DP_MAX_DEPTH */
    struct vs_context_config ctx;  /* per poll thread; zeros = defaults */
};

struct vs_dp_port_config {
    uint32_t port_no;              /* 1..OFPP_MAX-1 or OFPP_LOCAL */
    uint32_t type;                 /* VS_DP_PORT_* */
    uint32_t ifindex;              /* system: the device (or give name) */
    uint32_t mtu;                  /* tap/internal: set it (0 = leave) */
    int32_t  thread;               /* poll thread for receive; -1 = least loaded */
    uint32_t flags;                /* VS_DP_PF_* */
    uint32_t vlan_mode;            /* VS_DP_VLAN_* */
    uint32_t tag;                  /* access VLAN or native VLAN, 0..4095 */
    uint8_t  trunks[512];          /* bitmap of VLANs 0..4095; all zero = all */
    char     name[VS_DP_NAME_LEN]; /* tap/internal: device to create; system: optional */
    struct vs_dp *peer;            /* patch: the peer datapath */
    uint32_t peer_port;            /* patch: the peer's patch port number */
    uint32_t pad;
    uint32_t queue;                /* afxdp: the device's rx queue to bind (0 = first) */
    uint32_t xdp_mode;             /* afxdp: VS_DP_XDP_* */
    const struct vs_dp_vxlan_config *vxlan;   /* vxlan: required */
};

struct vs_dp_port_info {
    uint32_t port_no;
    uint32_t type;
    uint32_t ifindex;
    uint32_t mtu;
    int32_t  thread;               /* -1: no receive side (patch) */
    uint32_t link_up;
    uint32_t flags;
    uint32_t vlan_mode;
    uint32_t tag;
    uint32_t peer_port;
    uint32_t peer_attached;        /* patch: the peer datapath still exists */
    uint32_t pad;
    char     name[VS_DP_NAME_LEN];
    uint32_t queue;                /* afxdp: the rx queue bound */
    uint32_t xdp_mode;             /* afxdp: VS_DP_XDP_NATIVE or _GENERIC, as attached */
    uint32_t xdp_zerocopy;         /* afxdp: 1 zero-copy, 0 copy mode */
    uint32_t pad2;
};

struct vs_dp_port_stats {
    uint64_t rx_packets;           /* frames handed to the pipeline */
    uint64_t rx_bytes;
    uint64_t rx_dropped;           /* rx_oversize + rx_ring_drops */
    uint64_t rx_errors;            /* malformed ring entries or vnet headers, read errors */
    uint64_t rx_oversize;
    uint64_t rx_ring_drops;        /* the kernel found the RX ring full */
    uint64_t tx_packets;
    uint64_t tx_bytes;
    uint64_t tx_dropped;           /* oversize, device busy or down */
    uint64_t tx_errors;            /* other send errors */
    uint64_t tx_oversize;
    /* sFlow sampler of the port (dp_sflow.c): frames received while
     * sampling was on, and samples lost because the upcall queue was full. */
    uint64_t sflow_pool;
    uint64_t sflow_drops;
};

struct vs_dp_thread_stats {
    uint64_t packets;              /* frames received and processed */
    uint64_t batches;
    uint64_t emc_hits;
    uint64_t megaflow_hits;
    uint64_t misses;               /* full pipeline runs */
    uint64_t upcalls;              /* queued for the controller */
    uint64_t upcall_drops;         /* queue full or per-batch overflow */
    uint64_t busy_rounds;          /* rounds that found frames */
    uint64_t idle_rounds;          /* rounds that found nothing */
    uint64_t sleeps;               /* times it blocked in epoll_wait */
    uint64_t proc_ns;              /* time spent in busy rounds */
    uint64_t ns_per_packet;        /* proc_ns / packets */
    uint64_t patch_packets;        /* frames this thread injected into peers */
    uint64_t patch_loop_drops;     /* dropped at the patch depth limit */
    uint32_t n_rxq;                /* ports it receives from */
    uint32_t pad;
};

struct vs_dp_stats {
    uint32_t n_ports;
    uint32_t n_threads;
    uint32_t upcall_queued;        /* in the queue now */
    uint32_t fdb_entries;
    uint64_t upcalls;              /* queued since creation */
    uint64_t upcall_drops;         /* queue full */
    uint64_t fdb_learned;
    uint64_t fdb_moves;            /* a MAC seen on another port */
    uint64_t fdb_evictions;        /* table full: least recent entry replaced */
    uint64_t fdb_expired;
    uint64_t normal_packets;       /* frames switched by NORMAL */
    uint64_t normal_floods;
    uint64_t normal_drops;         /* VLAN not allowed, hairpin, too short */
    uint64_t tx_no_port;           /* emits to a port the datapath lacks */
    uint64_t patch_loop_drops;
    uint64_t staging_drops;        /* per-round transmit staging full */
    uint64_t sflow_samples;        /* flow samples queued */
    uint64_t sflow_drops;          /* flow samples lost (queue full) */
};

struct vs_dp_fdb_entry {
    uint8_t  mac[6];
    uint16_t vlan;
    uint32_t port;
    uint64_t age_ms;
};

struct vs_dp_upcall {
    uint32_t in_port;
    uint8_t  reason;               /* VS_R_* */
    uint8_t  table_id;
    uint16_t max_len;
    uint64_t cookie;
    uint64_t metadata;
    uint64_t tunnel_id;
    uint32_t len;                  /* the frame's length */
    uint32_t copied;               /* bytes copied into the caller's buffer */
    /* What the entry is: VS_DP_UPCALL_CONTROLLER (a packet-in; the fields
     * above) or VS_DP_UPCALL_SFLOW (a flow sample: in_port, len = the
     * frame's full length, the first header_bytes of it, and the sflow_*
     * fields below; reason/table_id/cookie/metadata/tunnel_id are 0). */
    uint32_t kind;
    uint32_t sflow_rate;           /* the 1-in-N the frame was sampled at */
    uint64_t sflow_pool;           /* in_port's sflow_pool when sampled */
    uint64_t sflow_drops;          /* in_port's sflow_drops when sampled */
    uint32_t sflow_n_out;          /* frames sent (0: dropped) */
    uint32_t sflow_out_port;       /* the output port when sflow_n_out == 1 */
    uint16_t sflow_vlan_in;        /* 802.1Q VID in (the access tag if untagged) */
    uint16_t sflow_vlan_out;       /* VID of the first output (ditto) */
    uint32_t sflow_flags;          /* VS_DP_SFLOW_F_* */
};

/* struct vs_dp_upcall.kind */
#define VS_DP_UPCALL_CONTROLLER  0
#define VS_DP_UPCALL_SFLOW       1
/* struct vs_dp_upcall.sflow_flags */
#define VS_DP_SFLOW_F_FLOOD      0x1   /* NORMAL flooded it (unknown/multicast dst) */
#define VS_DP_SFLOW_F_LOCAL      0x2   /* went to the controller (the switch itself) */
#define VS_DP_SFLOW_MAX_HEADER   256   /* header_bytes upper bound */

/* Create a datapath over pipeline (borrowed) and start its threads. */
struct vs_dp *vs_dp_new(const struct vs_dp_config *, struct vs_pipeline *,
                        struct vs_error *err);
/* Stop the threads, close every port (TAPs it created disappear), unhook
 * other datapaths' patch ports that point here, unregister the ports from
 * the pipeline.  The pipeline itself is not freed. */
void vs_dp_free(struct vs_dp *);

int vs_dp_add_port(struct vs_dp *, const struct vs_dp_port_config *, struct vs_error *err);
int vs_dp_del_port(struct vs_dp *, uint32_t port_no);
/* Link (carrier) changed: records it, sets VS_PORT_LIVE in the pipeline, and
 * forgets the MACs learned on the port when it goes down. */
int vs_dp_set_port_link(struct vs_dp *, uint32_t port_no, uint32_t up);
int vs_dp_set_port_vlan(struct vs_dp *, uint32_t port_no, uint32_t vlan_mode, uint32_t tag,
                        const uint8_t *trunks /* 512 bytes or NULL = all */);
int vs_dp_port_info(struct vs_dp *, uint32_t port_no, struct vs_dp_port_info *);
int vs_dp_port_stats(struct vs_dp *, uint32_t port_no, struct vs_dp_port_stats *);
/* Port numbers in ascending order; returns the number of ports. */
size_t vs_dp_port_list(struct vs_dp *, uint32_t *out, size_t max);

uint32_t vs_dp_n_threads(struct vs_dp *);
int vs_dp_thread_stats(struct vs_dp *, uint32_t idx, struct vs_dp_thread_stats *);
void vs_dp_get_stats(struct vs_dp *, struct vs_dp_stats *);

/* Learned MACs (expired entries are swept first); returns the count, fills
 * up to max. */
size_t vs_dp_fdb_dump(struct vs_dp *, struct vs_dp_fdb_entry *out, size_t max);
/* Forget the MACs learned on port (VS_OFPP_ANY = all). */
void vs_dp_fdb_flush(struct vs_dp *, uint32_t port);

/* Readable while a controller upcall waits or samples fill 1/8 of the queue
 * (see "Upcalls and packet-out" above); drain it until recv gives 0. */
int vs_dp_upcall_fd(struct vs_dp *);
/* Take the oldest upcall: 1 (u filled, min(len, buflen) bytes copied to
 * buf), 0 when the queue is empty. */
int vs_dp_recv_upcall(struct vs_dp *, struct vs_dp_upcall *u, uint8_t *buf, uint32_t buflen);

/* Execute an action list (the format of fastpath.h) on a frame arriving on
 * in_port (a port, OFPP_LOCAL or OFPP_CONTROLLER).  0 or -errno with err
 * (an invalid action list gives the OpenFlow error in err->type/code). */
int vs_dp_packet_out(struct vs_dp *, uint32_t in_port, const uint8_t *actions,
                     uint32_t actions_len, const uint8_t *frame, uint32_t flen,
                     struct vs_error *err);

/* sFlow packet sampling (dp_sflow.c): every frame a poll thread receives
 * from a port is sampled with probability 1/rate (independently, from a
 * per-thread PRNG, so batching biases nothing); a sample becomes a
 * VS_DP_UPCALL_SFLOW entry of the upcall queue carrying the first
 * header_bytes (1..VS_DP_SFLOW_MAX_HEADER) of the frame as received and
 * where it went.  rate 0 turns sampling off (one branch per batch).
 * Frames entering through a patch port are sampled by the datapath they
 * were received in, not again.  -EINVAL for a bad header_bytes. */
int vs_dp_set_sflow(struct vs_dp *, uint32_t rate, uint32_t header_bytes);

/* 1 if AF_XDP ports (VS_DP_PORT_AFXDP) were built in (libxdp + libbpf
 * found at build time), else 0: adding one is then refused. */
int vs_dp_afxdp_available(void);

/* TEST HOOK, not an API: run the receive-side offload handling of a
 * `system` port (dp_gso.c) on one frame, as if it had come out of the ring
 * behind the vnet header `vnet` (10 bytes: struct virtio_net_hdr in host
 * byte order) on a port with this MTU.  The resulting frames (the frame
 * itself with its checksum completed, or its GSO segments) are written
 * back to back to out (out_cap bytes), their lengths to lens (max_segs).
 * Returns their number, or -EINVAL for what a port counts in rx_errors and
 * drops (malformed vnet header, truncated or inconsistent headers, too many
 * segments), -EMSGSIZE for what it counts in rx_oversize, -ENOBUFS when
 * out/lens are too small. */
int vs_dp_gso_segment_test(const uint8_t *frame, uint32_t len, const uint8_t *vnet,
                           uint32_t mtu, uint8_t *out, uint32_t out_cap, uint32_t *lens,
                           uint32_t max_segs);

/* ---- VXLAN tunnel ports (dp_port_vxlan.c; design in docs/datapath.md) ----
 * Receive: a kernel UDP socket bound to local_ip:dst_port, read with
 * recvmmsg; the VXLAN header is checked (flags word exactly 0x08000000,
 * reserved byte zero), the sender must be remote_ip and the VNI the port's
 * key (unless key_flow); the inner frame enters the pipeline with
 * tunnel_id = VNI.  Anything else is counted (struct vs_dp_vxlan_stats) and
 * dropped.  The vxlan ports of a datapath with the same local_ip and
 * dst_port share one socket (datagrams go to the port of their sender and
 * VNI); another datapath or program cannot have that UDP port too.
 * Transmit: the outer Ethernet/IPv4/UDP/VXLAN headers are built per frame
 * from the port's options and its route (egress device, MACs, source
 * address, MTU), which the control plane resolves and pushes with
 * vs_dp_vxlan_set_route (never resolved per packet), and sent with
 * sendmmsg on an AF_PACKET socket of the egress device.  Until a route is
 * set frames are dropped (tx_unresolved).  The outer UDP source port is a
 * hash of the inner flow; the UDP checksum is zero (allowed over IPv4).
 * The port's MTU (vs_dp_port_info.mtu) is the largest inner IP packet that
 * fits: egress MTU - 50; longer inner frames count as tx_oversize. */
struct vs_dp_vxlan_config {
    uint8_t  local_ip[4];          /* receive address (0.0.0.0 = any) */
    uint8_t  remote_ip[4];         /* the peer: outer destination, accepted source */
    uint32_t key;                  /* VNI, 0..2^24-1, unless key_flow */
    uint32_t key_flow;             /* 1: VNI = the flow's tunnel_id (low 24 bits) */
    uint16_t dst_port;             /* UDP port, host order; 0 = 4789 */
    uint8_t  tos;                  /* outer TOS byte */
    uint8_t  ttl;                  /* outer TTL; 0 = 64 */
    uint32_t df;                   /* 1: set DF in the outer header */
    uint32_t remote_flow;          /* 1: remote_ip=flow (remote_ip 0): the outer
                                    * destination is the frame's tun_ipv4_dst; receives
                                    * from senders no fixed-remote port has */
};

struct vs_dp_vxlan_route {
    uint32_t ifindex;              /* egress device; 0 = unresolved */
    uint32_t mtu;                  /* its MTU */
    uint8_t  src_mac[6];           /* the egress device's address */
    uint8_t  dst_mac[6];           /* the next hop's */
    uint8_t  src_ip[4];            /* outer source address */
};

struct vs_dp_vxlan_stats {
    uint64_t rx_packets;           /* decapsulated, handed to the pipeline */
    uint64_t rx_short;             /* datagram shorter than VXLAN + Ethernet headers */
    uint64_t rx_bad_header;        /* flags word or reserved bits wrong */
    uint64_t rx_unknown_vni;       /* from this remote, a VNI no port has */
    uint64_t rx_unknown_remote;    /* sender is no port's remote_ip (shared
                                    * by the ports on one socket) */
    uint64_t rx_truncated;         /* datagram longer than the receive slot */
    uint64_t tx_packets;           /* encapsulated and sent */
    uint64_t tx_unresolved;        /* dropped: no route / next hop yet */
    uint64_t tx_errors;            /* sendmmsg failures */
    uint64_t route_updates;        /* vs_dp_vxlan_set_route calls */
    uint64_t rx_socket_drops;      /* the kernel found the socket's buffer full
                                    * (shared by the ports on one socket) */
    uint32_t resolved;             /* a route is set */
    uint32_t ifindex;              /* its egress device */
    uint32_t underlay_mtu;
    uint32_t pad;
};

int vs_dp_vxlan_set_route(struct vs_dp *, uint32_t port_no, const struct vs_dp_vxlan_route *);

/* remote_ip=flow ports: routes per destination (ifindex 0 withdraws one),
 * at most 256 destinations (-ENOSPC).  Frames to a destination without a
 * route are dropped (tx_unresolved) and the destination is queued (lossy,
 * 64 entries) for vs_dp_vxlan_wanted, which takes the queue (4-byte
 * addresses into out). */
struct vs_dp_vxlan_dest {
    uint8_t  dst[4];
    uint32_t ifindex;              /* 0: withdrawn */
    uint32_t mtu;
    uint32_t pad;
    uint64_t tx_packets;
};
int vs_dp_vxlan_set_dest(struct vs_dp *, uint32_t port_no, const uint8_t dst[4],
                         const struct vs_dp_vxlan_route *);
size_t vs_dp_vxlan_wanted(struct vs_dp *, uint32_t port_no, uint8_t *out, size_t max);
size_t vs_dp_vxlan_dests(struct vs_dp *, uint32_t port_no, struct vs_dp_vxlan_dest *out,
                         size_t max);
int vs_dp_vxlan_stats(struct vs_dp *, uint32_t port_no, struct vs_dp_vxlan_stats *);

#endif /* VSWITCH_DATAPATH_H */
