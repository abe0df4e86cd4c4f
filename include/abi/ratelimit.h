/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/* Included by BPF programs and (through BTF) by userspace: xdp_ratelimit's maps and counters. */
#ifndef EBPFSENTINEL_ABI_RATELIMIT_H
#define EBPFSENTINEL_ABI_RATELIMIT_H

enum rl_limits {
	RL_MAX_POLICIES = 1024,
	/* policies that may cover one prefix (theirs and the shorter ones around it) */
	RL_POLICIES_PER_PREFIX = 8,
	RL_MAX_PREFIXES = 1 << 16,
	/* tracked keys (sources, or one per policy-keyed policy); least recently used evicted */
	RL_MAX_BUCKETS = 1 << 20,
	/*
	 * Each CPU's share of a key's rate is its share of the key's recent packets, counted with
	 * this half-life (see src/ruleset/ratelimit.rs).
	 */
	RL_RECENT_HALF_LIFE_NS = 50000000,
	/* one packet in the recent-packet counters */
	RL_RECENT_ONE = 1024,
	/* at most one event per key and this interval while the key is over its rate */
	RL_EVENT_INTERVAL_NS = 1000000000,
	/* CPUs whose buckets are consulted; more CPUs than this share as if they were one */
	RL_MAX_CPUS = 64,
};

/* bucket keys of the DDoS guards (policy indexes stay below RL_MAX_POLICIES) */
enum rl_guard_key {
	RL_KEY_ICMP = 0xfffe,
	/* SYNs per destination address */
	RL_KEY_SYN = 0xfffd,
	/* + the amplification port's index */
	RL_KEY_AMP_BASE = 0xf000,
	RL_MAX_AMP_PORTS = 64,
};

/* generation -> the DDoS guards' settings */
struct rl_guards {
	__u64 icmp_rate_pps; /* 0: no ICMP guard */
	__u64 icmp_burst;
	/* echo payload above this is dropped (tunnels, oversized floods); 0: no limit */
	__u32 icmp_max_payload;
	__u32 pad;
	/* SYNs per second to one destination above which SYN cookies answer; 0: no guard */
	__u64 syn_threshold_pps;
};

/* (generation, UDP source port) -> per-source rate for replies from that service */
struct rl_amp_key {
	__u32 gen;
	__u16 port;
	__u16 pad;
};

struct rl_amp_port {
	__u64 rate_pps;
	__u64 burst;
	__u16 index;
	__u8 pad[6];
};

enum rl_action {
	RL_ACTION_DROP = 0,
	RL_ACTION_PASS_LOG = 1,
};

enum rl_key_mode {
	RL_KEY_SOURCE = 0,
	RL_KEY_POLICY = 1,
};

/* generation * RL_MAX_POLICIES + policy index -> the policy */
struct rl_policy {
	__u64 rate_pps;
	__u64 burst;
	__u16 dport_lo; /* 0..65535 with dport_hi; any when port_match is 0 */
	__u16 dport_hi;
	__u8 proto; /* 0: any */
	__u8 port_match;
	__u8 action;   /* enum rl_action */
	__u8 key_mode; /* enum rl_key_mode */
};

/* value of the rl_lpm tries: the policies covering a prefix, longest prefix first */
struct rl_match {
	__u16 policy[RL_POLICIES_PER_PREFIX];
	__u8 count;
	__u8 pad[7];
};

/* bucket key: the source (zero for policy-keyed policies) under one policy */
struct rl_key {
	__u16 policy;
	__u8 family;
	__u8 pad;
	__u8 addr[16];
};

/*
 * Per CPU. Tokens are counted in billionths so that the refill of a few hundred nanoseconds
 * between two packets is not truncated away: elapsed_ns * rate_pps nanotokens, exactly.
 */
struct rl_bucket {
	__u64 nanotokens;
	__u64 last_ns;
	__u64 last_event_ns;
	/* packets this CPU saw of the key, in RL_RECENT_ONE units, halved every half-life */
	__u64 recent;
};

enum rl_stat {
	RL_STAT_SEEN = 0,
	/* not IP, malformed or allowlisted: the firewall decided, nothing to limit */
	RL_STAT_PASS_UNLIMITED,
	RL_STAT_PASS_NO_POLICY,
	RL_STAT_PASS_IN_RATE,
	RL_STAT_PASS_OVER_RATE, /* action pass-and-log */
	RL_STAT_DROP_OVER_RATE,
	RL_STAT_EVENTS_SENT,
	RL_STAT_EVENTS_DROPPED,
	RL_STAT_ICMP_PASSED,
	RL_STAT_ICMP_DROPPED,
	/* echo requests and replies above icmp_max_payload, dropped */
	RL_STAT_ICMP_OVERSIZED,
	RL_STAT_AMP_PASSED,
	RL_STAT_AMP_DROPPED,
	/* every SYN the guard saw; those over the threshold were answered with a cookie */
	RL_STAT_SYN_RECEIVED,
	RL_STAT_SYNCOOKIES_SENT,
	/* ACKs to a destination under flood whose cookie the kernel's check accepted, or not */
	RL_STAT_SYNCOOKIE_ACK_VALID,
	RL_STAT_SYNCOOKIE_ACK_INVALID,
	RL_STAT_COUNT,
};

_Static_assert(sizeof(struct rl_policy) == 24, "rl_policy layout");
_Static_assert(sizeof(struct rl_guards) == 32, "rl_guards layout");
_Static_assert(sizeof(struct rl_amp_key) == 8, "rl_amp_key layout");
_Static_assert(sizeof(struct rl_amp_port) == 24, "rl_amp_port layout");
_Static_assert(sizeof(struct rl_match) == 24, "rl_match layout");
_Static_assert(sizeof(struct rl_key) == 20, "rl_key layout");
_Static_assert(sizeof(struct rl_bucket) == 32, "rl_bucket layout");

#endif
