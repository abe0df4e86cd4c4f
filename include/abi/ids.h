/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * Included by BPF programs and (through BTF) by userspace: tc_ids, the signature IDS. Rules
 * live in ids_rules (an ARRAY, one half per ruleset generation); ids_index (a HASH keyed by
 * generation, protocol, port and which side of the packet the port is on) lists the ranks of
 * the rules a packet with that port must be checked against. A rule matches when every one
 * of its contents is found in the first IDS_SCAN_BYTES of the transport payload.
 */
#ifndef EBPFSENTINEL_ABI_IDS_H
#define EBPFSENTINEL_ABI_IDS_H

enum ids_limits {
	/* rules per generation; an event's rule_id is EVENT_RULE(gen, rank) with 15 rank bits */
	IDS_MAX_RULES = 4096,
	/* ranks one ids_index entry lists */
	IDS_MAX_PER_KEY = 128,
	IDS_MAX_KEYS = 65536,
	IDS_MAX_CONTENTS = 4,
	/* a content's bytes, in 64-bit words compared at once */
	IDS_PATTERN_WORDS = 8,
	IDS_MAX_PATTERN = IDS_PATTERN_WORDS * 8,
	/* payload bytes looked at; a longer payload is scanned up to here (and counted) */
	IDS_SCAN_BYTES = 1024,
	/* alerts one packet reports; further matching alert rules are counted only */
	IDS_MAX_ALERTS = 4,
};

/* which port of the packet an ids_index key names */
enum ids_side {
	/* the destination port: Suricata `-> any PORT` */
	IDS_SIDE_DST = 0,
	/* the source port: `any PORT -> any any` */
	IDS_SIDE_SRC = 1,
	/* any port: the rules of the protocol that no single port keys (port is 0) */
	IDS_SIDE_ANY = 2,
};

struct ids_key {
	__u16 port;
	__u8 proto;
	__u8 side; /* enum ids_side */
	__u8 gen;
	__u8 pad[3];
};

/* ids_index value: ranks in ids_rules of this generation, in rule order */
struct ids_bucket {
	__u16 count;
	__u16 ranks[IDS_MAX_PER_KEY];
};

enum ids_content_flags {
	/* bytes are ASCII-lowercased and the payload is folded before comparing */
	IDS_C_NOCASE = 1 << 0,
};

/*
 * One content: found when it starts at some s with offset <= s and s + len <= offset + depth
 * (depth 0: the end of the scanned payload). words holds the bytes as little-endian words,
 * masks selects the bytes of each word that belong to the content (zero past its end), so
 * that a compare is the same eight loads for every content, without branches.
 */
struct ids_content {
	__u64 words[IDS_PATTERN_WORDS];
	__u64 masks[IDS_PATTERN_WORDS];
	__u16 offset;
	__u16 depth;
	__u8 len;    /* 1..IDS_MAX_PATTERN */
	__u8 nwords; /* 1..IDS_PATTERN_WORDS */
	__u8 flags;  /* enum ids_content_flags */
	__u8 pad;
};

enum ids_action {
	IDS_ACTION_ALERT = 0,
	IDS_ACTION_DROP = 1,
};

enum ids_rule_flags {
	/* only packets tc_conntrack classes ESTABLISHED (Suricata flow:established) */
	IDS_R_ESTABLISHED = 1 << 0,
};

/* ids_rules[gen * IDS_MAX_RULES + rank] */
struct ids_rule {
	/* the ports a packet must have on top of the one its key named */
	__u16 sport_lo;
	__u16 sport_hi;
	__u16 dport_lo;
	__u16 dport_hi;
	__u8 ncontents;
	__u8 action; /* enum ids_action */
	__u8 flags;  /* enum ids_rule_flags */
	__u8 pad[5];
	struct ids_content contents[IDS_MAX_CONTENTS];
};

enum ids_settings_flags {
	IDS_SET_ENABLED = 1 << 0,
};

/* ids_settings[0] */
struct ids_settings {
	__u32 flags; /* enum ids_settings_flags */
	__u32 gen;   /* the active generation */
	/*
	 * Alerts are reported when bpf_get_prandom_u32() < sample_below, or always when
	 * sample_all is set (sampling 1.0). Drops are never sampled.
	 */
	__u32 sample_below;
	__u32 sample_all;
};

enum ids_stat {
	/* TCP/UDP packets looked at */
	IDS_STAT_SEEN = 0,
	/* packets some rule was a candidate for */
	IDS_STAT_CANDIDATE,
	/* payload longer than IDS_SCAN_BYTES: the rest was not scanned */
	IDS_STAT_TRUNCATED,
	/* alert-rule matches (one per rule and packet) */
	IDS_STAT_MATCH_ALERT,
	/* packets dropped by a drop rule */
	IDS_STAT_MATCH_DROP,
	/* alert matches not reported: sampled out */
	IDS_STAT_SAMPLED_OUT,
	IDS_STAT_EVENTS_SENT,
	/* the ring was over 3/4 full (or a reservation failed) */
	IDS_STAT_EVENTS_DROPPED,
	/* the payload could not be copied */
	IDS_STAT_LOAD_FAILED,
	IDS_STAT_COUNT,
};

/* The Rust side asserts the same sizes (src/abi.rs). */
_Static_assert(sizeof(struct ids_key) == 8, "ids_key layout");
_Static_assert(sizeof(struct ids_bucket) == 2 + 2 * IDS_MAX_PER_KEY, "ids_bucket layout");
_Static_assert(sizeof(struct ids_content) == 136, "ids_content layout");
_Static_assert(sizeof(struct ids_rule) == 16 + 136 * IDS_MAX_CONTENTS, "ids_rule layout");
_Static_assert(sizeof(struct ids_settings) == 16, "ids_settings layout");

#endif
