/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * Included by BPF programs and (through BTF) by userspace: tc_threatintel's IOC sets and the
 * IPS blacklist xdp_firewall checks first.
 */
#ifndef EBPFSENTINEL_ABI_THREATINTEL_H
#define EBPFSENTINEL_ABI_THREATINTEL_H

enum ti_action {
	TI_ACTION_ALERT = 0,
	TI_ACTION_DROP = 1,
	/* push ti_settings.quarantine_vlan as an 802.1Q tag and pass */
	TI_ACTION_QUARANTINE = 2,
};

/*
 * What the Bloom filter of a generation holds, as struct ti_bloom_key:
 *   TI_BLOOM_EXACT:  every IOC that is one address (/32, /128), addr as is.
 *   TI_BLOOM_BUCKET: for every CIDR IOC, each bucket it overlaps: the address masked to
 *                    TI_BUCKET_BITS_V4 (v4) or TI_BUCKET_BITS_V6 (v6) bits. A CIDR shorter
 *                    than TI_MIN_BUCKETED_* would need too many buckets: it sets
 *                    TI_SET_TRIE_ALWAYS instead and the trie is walked for every packet.
 * A packet address whose EXACT probe and BUCKET probe are both negative is no IOC; a
 * positive EXACT probe is confirmed in ti_ioc_v4/v6, a positive BUCKET probe in ti_lpm_v4/v6.
 */
enum ti_bloom_kind {
	TI_BLOOM_EXACT = 1,
	TI_BLOOM_BUCKET = 2,
};

enum ti_limits {
	TI_BUCKET_BITS_V4 = 16,
	TI_BUCKET_BITS_V6 = 32,
	TI_MIN_BUCKETED_V4 = 8,  /* at most 256 buckets per CIDR */
	TI_MIN_BUCKETED_V6 = 20, /* at most 4096 */
	/* Bloom filter entries per generation (exact IOCs plus buckets) */
	TI_MAX_BLOOM = 1 << 21,
	TI_MAX_EXACT = 1 << 21,
	TI_MAX_CIDRS = 1 << 18,
	TI_BLOOM_HASHES = 5,
	/* ti_feeds slots: a feed's id is its index */
	TI_MAX_FEEDS = 256,
	/* keys staged per run of ti_bloom_fill */
	TI_BLOOM_STAGE = 1 << 16,
	IPS_MAX_BLOCKED = 1 << 18,
	IPS_MAX_BLOCKED_CIDRS = 1 << 16,
};

/* IPv4 addresses as ::ffff:a.b.c.d, so one filter serves both families */
struct ti_bloom_key {
	__u8 kind; /* enum ti_bloom_kind */
	__u8 pad[3];
	__u8 addr[16];
};

/* What an IOC is: the feed that listed it (highest confidence wins on merge). */
struct ti_ioc {
	__u16 feed_id;
	__u8 confidence; /* 0..100 */
	__u8 category;   /* index into the daemon's category names */
	__u8 action;     /* enum ti_action */
	__u8 pad[3];
};

struct ti_v4_key {
	__u8 addr[4];
};

struct ti_v6_key {
	__u8 addr[16];
};

/* LPM keys of the CIDR IOCs (prefixlen = the CIDR's length) */
struct ti_lpm_v4_key {
	__u32 prefixlen;
	__u8 addr[4];
};

struct ti_lpm_v6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

enum ti_settings_flags {
	TI_SET_ENABLED = 1 << 0,
	/* a CIDR IOC too short to bucket: the trie of that family is always walked */
	TI_SET_TRIE_ALWAYS_V4 = 1 << 1,
	TI_SET_TRIE_ALWAYS_V6 = 1 << 2,
	/* some CIDR IOC exists in that family: probe the bucket */
	TI_SET_CIDRS_V4 = 1 << 3,
	TI_SET_CIDRS_V6 = 1 << 4,
};

/* ti_settings[generation]; ti_active_gen[0] selects one (and the Bloom filter of it) */
struct ti_settings {
	__u32 flags; /* enum ti_settings_flags */
	__u16 quarantine_vlan;
	__u16 pad;
};

enum ti_stat {
	TI_STAT_SEEN = 0,
	/* both addresses bloom-negative: nothing else looked up */
	TI_STAT_BLOOM_NEGATIVE,
	/* a positive probe the confirmation did not confirm */
	TI_STAT_BLOOM_FALSE_POSITIVE,
	TI_STAT_MATCH_ALERT,
	TI_STAT_MATCH_DROP,
	TI_STAT_MATCH_QUARANTINE,
	/* bpf_skb_vlan_push failed: dropped instead */
	TI_STAT_QUARANTINE_FAILED,
	TI_STAT_EVENTS_SENT,
	TI_STAT_EVENTS_DROPPED,
	TI_STAT_COUNT,
};

/*
 * ti_bloom_fill_ctl[0]: a bulk fill of a Bloom filter. Userspace writes `count` keys into
 * ti_bloom_stage, sets gen and count, and runs ti_bloom_fill (BPF_PROG_TEST_RUN): one push per
 * key in the kernel instead of one syscall per key. pushed/failed are the run's answer.
 */
struct ti_bloom_fill_ctl {
	__u32 gen;
	__u32 count;
	__u32 pushed;
	__u32 failed;
};

/*
 * IPS blacklist: xdp_firewall drops a source listed here before anything else. Exact
 * addresses in a hash, CIDR blocks in a trie (walked only while ips_settings says one exists).
 */
struct ips_block {
	/* CLOCK_MONOTONIC (coarse) ns after which the block is void; 0: until unblocked */
	__u64 expires_ns;
	/* index into the daemon's reasons; 0 manual */
	__u32 reason;
	__u32 pad;
};

/* which of the four maps hold entries: an empty one is not looked up */
enum ips_settings_flags {
	IPS_SET_CIDRS_V4 = 1 << 0,
	IPS_SET_CIDRS_V6 = 1 << 1,
	IPS_SET_EXACT_V4 = 1 << 2,
	IPS_SET_EXACT_V6 = 1 << 3,
};

struct ips_settings {
	__u32 flags; /* enum ips_settings_flags */
	__u32 pad;
};

/* The Rust side asserts the same sizes (src/abi.rs). */
_Static_assert(sizeof(struct ti_bloom_key) == 20, "ti_bloom_key layout");
_Static_assert(sizeof(struct ti_ioc) == 8, "ti_ioc layout");
_Static_assert(sizeof(struct ti_lpm_v4_key) == 8, "ti_lpm_v4_key layout");
_Static_assert(sizeof(struct ti_lpm_v6_key) == 20, "ti_lpm_v6_key layout");
_Static_assert(sizeof(struct ti_settings) == 8, "ti_settings layout");
_Static_assert(sizeof(struct ips_block) == 16, "ips_block layout");
_Static_assert(sizeof(struct ti_bloom_fill_ctl) == 16, "ti_bloom_fill_ctl layout");

#endif
