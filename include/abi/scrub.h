/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * Included by BPF programs and (through BTF) by userspace: tc_scrub's settings and counters.
 * tc_scrub normalises the packets both TC hooks pass: a minimum IPv4 TTL / IPv6 hop limit, the
 * TCP MSS of SYNs clamped, the IPv4 DF bit cleared, the IPv4 ID randomised.
 */
#ifndef EBPFSENTINEL_ABI_SCRUB_H
#define EBPFSENTINEL_ABI_SCRUB_H

enum scrub_flags {
	SCRUB_F_ENABLED = 1 << 0,
	/* raise the TTL / hop limit to min_ttl */
	SCRUB_F_MIN_TTL = 1 << 1,
	/* clamp the MSS option of SYN and SYN-ACK segments to max_mss */
	SCRUB_F_MAX_MSS = 1 << 2,
	SCRUB_F_CLEAR_DF = 1 << 3,
	/* a random IPv4 ID on every packet that is not a fragment */
	SCRUB_F_RANDOM_IP_ID = 1 << 4,
};

/* scrub_settings[0] */
struct scrub_settings {
	__u32 flags; /* enum scrub_flags */
	__u16 max_mss;
	__u8 min_ttl;
	__u8 pad;
};

/* scrub_stats slots: seen counts every packet looked at, the others each change made */
enum scrub_stat {
	SCRUB_STAT_SEEN = 0,
	SCRUB_STAT_TTL_RAISED,
	SCRUB_STAT_MSS_CLAMPED,
	SCRUB_STAT_DF_CLEARED,
	SCRUB_STAT_IP_ID_RANDOMISED,
	SCRUB_STAT_COUNT,
};

/* The Rust side asserts the same size (src/maps/scrub.rs). */
_Static_assert(sizeof(struct scrub_settings) == 8, "scrub_settings layout");

#endif
