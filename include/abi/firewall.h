/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/* Included by BPF programs and (through BTF) by userspace: xdp_firewall's maps and counters. */
#ifndef EBPFSENTINEL_ABI_FIREWALL_H
#define EBPFSENTINEL_ABI_FIREWALL_H

enum fw_family {
	FW_FAMILY_V4 = 0,
	FW_FAMILY_V6 = 1,
};

enum fw_action {
	FW_ACTION_PASS = 0,
	FW_ACTION_DROP = 1,
};

enum fw_rule_flags {
	FW_RULE_LOG = 1 << 0,
};

/*
 * Every packet lands in exactly one of the verdict slots (PASS_* or DROP_*); SEEN counts them
 * all, the remaining slots count side effects.
 */
enum fw_stat {
	FW_STAT_SEEN = 0,
	FW_STAT_PASS_RULE,
	FW_STAT_PASS_DEFAULT,
	FW_STAT_PASS_ALLOWLIST,
	FW_STAT_PASS_NON_IP,
	FW_STAT_PASS_MALFORMED,
	/* monitor mode: drop verdicts that were let through */
	FW_STAT_PASS_MONITOR,
	/* conntrack fast path: an ESTABLISHED or RELATED packet, no rule consulted */
	FW_STAT_PASS_TRACKED,
	FW_STAT_DROP_RULE,
	FW_STAT_DROP_DEFAULT,
	FW_STAT_DROP_MALFORMED,
	/* the source is on the IPS blacklist */
	FW_STAT_DROP_BLOCKED,
	FW_STAT_EVENTS_SENT,
	/* the ring was 3/4 full or a reservation failed */
	FW_STAT_EVENTS_DROPPED,
	FW_STAT_COUNT,
};

/*
 * Classifier dimensions. Each packet field value selects one bitmap of the rules that accept
 * it; the first bit set in the AND of all active dimensions is the first matching rule.
 */
enum fw_dim {
	FW_DIM_SRC = 0, /* LPM tries fw_cls_src_v4/v6 */
	FW_DIM_DST,     /* LPM tries fw_cls_dst_v4/v6 */
	FW_DIM_PROTO,
	FW_DIM_SPORT,
	FW_DIM_DPORT,
	FW_DIM_VLAN,
	/* TCP: the flags byte; ICMP/ICMPv6: type << 8 | code */
	FW_DIM_L4X,
	/* enum ct_class of the packet */
	FW_DIM_CT,
	FW_DIM_COUNT,
};

/*
 * Layout of one (generation, family) block of fw_cls_dims. Port and L4X slots have one extra
 * value for "absent" (non-first fragments, protocols without ports); VLAN has one for
 * "untagged".
 */
enum fw_dim_layout {
	FW_DIM_ABSENT_16 = 65536,
	FW_DIM_UNTAGGED = 4096,
	FW_DIM_OFF_PROTO = 0,
	FW_DIM_OFF_SPORT = FW_DIM_OFF_PROTO + 256,
	FW_DIM_OFF_DPORT = FW_DIM_OFF_SPORT + 65537,
	FW_DIM_OFF_VLAN = FW_DIM_OFF_DPORT + 65537,
	FW_DIM_OFF_L4X = FW_DIM_OFF_VLAN + 4097,
	FW_DIM_OFF_CT = FW_DIM_OFF_L4X + 65537,
	FW_DIM_BLOCK = FW_DIM_OFF_CT + CT_CLASS_COUNT,
	FW_DIM_SLOTS = FW_DIM_BLOCK * ES_GENERATIONS * ES_FAMILIES,
};

enum fw_cls_hash {
	/* up to this many distinct prefix lengths a hash lookup per length beats a trie walk */
	FW_CLS_HASH_LENS = 4,
	FW_LEN_NONE = 0xff,
};

enum fw_settings_flags {
	FW_SET_MONITOR = 1 << 0,
};

enum fw_family_flags {
	FW_FAM_ALLOWLIST = 1 << 0,
	FW_FAM_SRC_EXACT = 1 << 1,
	FW_FAM_SRC_LPM = 1 << 2,
	FW_FAM_DST_EXACT = 1 << 3,
	FW_FAM_DST_LPM = 1 << 4,
};

/* One per generation (fw_settings[gen]); written before the generation is made active. */
struct fw_settings {
	__u8 default_action;   /* enum fw_action */
	__u8 malformed_action; /* enum fw_action */
	__u8 flags;            /* enum fw_settings_flags */
	__u8 pad;
	__u8 family_flags[2]; /* enum fw_family_flags, by enum fw_family */
	/* general rules per family; 0 skips the classifier */
	__u16 general_rules[2];
	/* bit per enum fw_dim: a dimension no rule constrains is not looked up */
	__u8 active_dims[2];
	__u8 pad2[4];
	/*
	 * [family][0 src, 1 dst]: the prefix lengths of a classifier address dimension that is
	 * kept in fw_cls_hash_v4/v6 (one exact lookup per length, longest first, as ipset's
	 * hash:net), ended by FW_LEN_NONE. All FW_LEN_NONE: the dimension has more lengths than
	 * FW_CLS_HASH_LENS and lives in the fw_cls_src/dst tries.
	 */
	__u8 cls_lens[2][2][FW_CLS_HASH_LENS];
};

/*
 * Keys of every address trie and exact hash. The generation sits in front of the address so
 * one map holds both generations: prefixlen = 32 + the address prefix length.
 */
struct fw_lpm_v4_key {
	__u32 prefixlen;
	__u32 gen;
	__u8 addr[4];
};

struct fw_lpm_v6_key {
	__u32 prefixlen;
	__u32 gen;
	__u8 addr[16];
};

/* Exact-address keys (hash in front of the tries, for /32 and /128 entries). */
struct fw_exact_v4_key {
	__u32 gen;
	__u8 addr[4];
};

struct fw_exact_v6_key {
	__u32 gen;
	__u8 addr[16];
};

/* classifier address dimensions in hash mode: the prefix masked to len */
struct fw_cls_v4_key {
	__u8 gen;
	__u8 dir; /* 0 source, 1 destination */
	__u8 len;
	__u8 pad;
	__u8 addr[4];
};

struct fw_cls_v6_key {
	__u8 gen;
	__u8 dir;
	__u8 len;
	__u8 pad;
	__u8 addr[16];
};

/*
 * A decided rule: CIDR-only trie and exact-hash values, and classifier rule slots. rank is the
 * rule's position in the whole ruleset (priority, then file order): the lowest rank wins
 * whichever structure matched.
 */
struct fw_rule_ref {
	__u16 rank;
	__u8 action; /* enum fw_action */
	__u8 flags;  /* enum fw_rule_flags */
};

struct fw_bitmap {
	/* bit w set when words[w] is non-zero */
	__u64 summary;
	__u64 words[FW_BITMAP_WORDS];
};

/* Per-rule hit counter (per CPU), indexed by gen * FW_MAX_RANKS + rank. */
struct fw_counter {
	__u64 packets;
	__u64 bytes;
};

_Static_assert((int)FW_MAX_RANKS <= (int)EVENT_RULE_RANK_MASK, "ranks fit an event's rule_id");

/* The Rust side asserts the same sizes (src/abi.rs). */
_Static_assert(sizeof(struct fw_settings) == 32, "fw_settings layout");
_Static_assert(sizeof(struct fw_cls_v4_key) == 8, "fw_cls_v4_key layout");
_Static_assert(sizeof(struct fw_cls_v6_key) == 20, "fw_cls_v6_key layout");
_Static_assert(sizeof(struct fw_lpm_v4_key) == 12, "fw_lpm_v4_key layout");
_Static_assert(sizeof(struct fw_lpm_v6_key) == 24, "fw_lpm_v6_key layout");
_Static_assert(sizeof(struct fw_exact_v4_key) == 8, "fw_exact_v4_key layout");
_Static_assert(sizeof(struct fw_exact_v6_key) == 20, "fw_exact_v6_key layout");
_Static_assert(sizeof(struct fw_rule_ref) == 4, "fw_rule_ref layout");
_Static_assert(sizeof(struct fw_bitmap) == 8 + 8 * FW_BITMAP_WORDS, "fw_bitmap layout");
_Static_assert(sizeof(struct fw_counter) == 16, "fw_counter layout");

#endif
