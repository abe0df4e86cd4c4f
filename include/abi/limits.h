/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/* Included by BPF programs and (through BTF) by userspace: every size both sides rely on. */
#ifndef EBPFSENTINEL_ABI_LIMITS_H
#define EBPFSENTINEL_ABI_LIMITS_H

enum es_limits {
	/* Ruleset generations: a reload fills the inactive one, then flips fw_active_gen. */
	ES_GENERATIONS = 2,
	ES_FAMILIES = 2,

	/* One bit per general rule of a family: 64 words of 64 bits, summarised by one word. */
	FW_BITMAP_WORDS = 64,
	FW_MAX_RULES_PER_FAMILY = FW_BITMAP_WORDS * 64,

	/*
	 * Ranks order every rule of a ruleset (general rules of both families plus CIDR-only
	 * rules); a hit counter exists per rank and generation.
	 */
	FW_MAX_RANKS = 16384,

	/*
	 * Distinct match sets across all classifier dimensions of both families: each generation
	 * owns half of the pool but its last slot, FW_BITMAP_ALL. 520 bytes each: 8.5 MiB
	 * preallocated.
	 */
	FW_BITMAP_POOL = 16384,
	/* every bit set: what an inactive dimension contributes to the AND */
	FW_BITMAP_ALL = FW_BITMAP_POOL - 1,
	FW_BITMAP_POOL_PER_GEN = (FW_BITMAP_POOL - 1) / 2,

	/* Prefixes of CIDR-only rules per trie or exact hash, both generations (1M each). */
	FW_MAX_CIDRS = 1 << 21,
	/* Prefixes named by general rules (address dimension of the classifier). */
	FW_MAX_CLASSIFIER_PREFIXES = 1 << 18,
	FW_MAX_ALLOWLIST = 1 << 16,

	/* Bounded IPv6 extension header chain; a longer chain is malformed. */
	PARSE_MAX_IPV6_EXT = 6,
	/* 802.1Q/802.1ad tags; a third tag is malformed. */
	PARSE_MAX_VLAN_TAGS = 2,

	/*
	 * Shared event ring. Producers skip (and count) events once it is 3/4 full so that a
	 * slow consumer never stalls the datapath.
	 */
	EVENTS_RING_BYTES = 1 << 20,
	/*
	 * Producers wake the consumer only once this much is pending: a wakeup per event costs
	 * tens of microseconds on virtualised routers. The consumer also drains on a short
	 * timer, which bounds the latency of a lone event (see src/daemon.rs).
	 */
	EVENTS_WAKEUP_BYTES = 64 << 10,
};

#endif
