/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * Included by BPF programs and (through BTF) by userspace: the connection tracking table that
 * tc_conntrack writes and xdp_firewall reads, its settings and counters.
 */
#ifndef EBPFSENTINEL_ABI_CONNTRACK_H
#define EBPFSENTINEL_ABI_CONNTRACK_H

/*
 * What an entry is in. TCP walks the SYN_SENT..CLOSED states; UDP and ICMP echo are NEW until
 * the other side answers. One state per protocol so that one timeout table covers them all.
 */
enum ct_state {
	CT_TCP_SYN_SENT = 0,
	CT_TCP_SYN_RECV,
	CT_TCP_ESTABLISHED,
	/* the originator sent a FIN */
	CT_TCP_FIN_WAIT,
	/* the responder sent a FIN */
	CT_TCP_CLOSE_WAIT,
	/* both sides sent a FIN */
	CT_TCP_TIME_WAIT,
	/* a RST ended it */
	CT_TCP_CLOSED,
	CT_UDP_NEW,
	CT_UDP_ESTABLISHED,
	CT_ICMP_NEW,
	CT_ICMP_ESTABLISHED,
	CT_STATE_COUNT,
};

/*
 * What a packet is to the tracker, as firewall rules match it (`state:`). The bit positions
 * are the values of the classifier's FW_DIM_CT dimension.
 */
enum ct_class {
	CT_CLASS_NEW = 0,
	/* the flow has seen both directions, or the packet answers its originator */
	CT_CLASS_ESTABLISHED = 1,
	/* an ICMP error quoting a tracked flow */
	CT_CLASS_RELATED = 2,
	/* TCP without a SYN and without an entry, out of window, or an unsolicited reply */
	CT_CLASS_INVALID = 3,
	CT_CLASS_COUNT = 4,
};

enum ct_dir {
	CT_DIR_ORIGINAL = 0,
	CT_DIR_REPLY = 1,
};

enum ct_entry_flags {
	CT_F_SEEN_REPLY = 1 << 0,
	/* both SYNs carried a window scale option: windows after the handshake are scaled */
	CT_F_WSCALE = 1 << 1,
	/* the originator is the higher endpoint of the key */
	CT_F_ORIGIN_HI = 1 << 2,
	/* both sides sent a SYN without ACK */
	CT_F_SIMULTANEOUS_OPEN = 1 << 3,
};

/*
 * Normalised bidirectional 5-tuple: the lower (address, port) endpoint first, so both
 * directions of a flow find one entry. IPv4 addresses sit in the first 4 bytes, the rest zero.
 * Ports in host order; ICMP echo uses its identifier as both ports.
 */
struct ct_key {
	__u8 addr_lo[16];
	__u8 addr_hi[16];
	__u16 port_lo;
	__u16 port_hi;
	__u8 proto;
	__u8 family; /* enum fw_family */
	__u8 pad[2];
};

/* One direction of a flow: counters and TCP window tracking (sequence space of the sender). */
struct ct_side {
	__u64 packets;
	__u64 bytes;
	/* highest sequence number sent plus its length */
	__u32 td_end;
	/* highest sequence number the other side's ACK and window let this side send */
	__u32 td_maxend;
	/* largest window this side advertised, scaled */
	__u32 td_maxwin;
	/* the window scale this side announced in its SYN */
	__u8 wscale;
	__u8 pad[3];
};

struct ct_entry {
	__u64 first_seen_ns; /* CLOCK_MONOTONIC (coarse), ns */
	__u64 last_seen_ns;
	/* socket cookie of the local socket, 0 until a packet with a socket passed */
	__u64 socket_cookie;
	struct ct_side side[2]; /* by enum ct_dir */
	__u8 state;             /* enum ct_state */
	__u8 flags;             /* enum ct_entry_flags */
	__u8 pad[2];
	/* where the first packet was seen */
	__u32 ifindex;
};

/* ct_settings[0], written by userspace before the TC programs are attached. */
struct ct_settings {
	/* idle time after which an entry in that state is gone, by enum ct_state */
	__u64 timeout_ns[CT_STATE_COUNT];
	__u8 enabled;
	/* xdp_firewall passes ESTABLISHED and RELATED packets before any rule */
	__u8 fast_path;
	/* tc_conntrack drops packets it classes INVALID */
	__u8 drop_invalid;
	__u8 pad[5];
};

/* ct_stats slots (per CPU); every program that consults the table counts here. */
enum ct_stat {
	CT_STAT_LOOKUPS = 0,
	CT_STAT_HITS,
	CT_STAT_NEW,
	CT_STAT_ESTABLISHED,
	CT_STAT_CLOSED,
	CT_STAT_INVALID,
	CT_STAT_RELATED,
	/* entries found past their timeout and removed by a packet */
	CT_STAT_EXPIRED,
	/* packets tc_conntrack dropped as invalid (drop_invalid) */
	CT_STAT_DROP_INVALID,
	/* xdp_firewall passed the packet on the fast path */
	CT_STAT_FAST_PATH,
	/* TIME_WAIT or CLOSED entries a SYN reusing their ports replaced */
	CT_STAT_REUSED,
	CT_STAT_COUNT,
};

enum ct_limits {
	CT_DEFAULT_TABLE_SIZE = 262144,
	/* ACKs may trail the receiver's sequence space by at least this much (nf_conntrack's) */
	CT_MIN_ACK_WINDOW = 66000,
};

/* The Rust side asserts the same sizes (src/abi.rs). */
_Static_assert(sizeof(struct ct_key) == 40, "ct_key layout");
_Static_assert(sizeof(struct ct_side) == 32, "ct_side layout");
_Static_assert(sizeof(struct ct_entry) == 96, "ct_entry layout");
_Static_assert(sizeof(struct ct_settings) == 8 * CT_STATE_COUNT + 8, "ct_settings layout");

#endif
