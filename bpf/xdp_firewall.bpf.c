// SPDX-License-Identifier: GPL-2.0-only
/*
 * xdp_firewall: IPS blacklist, allowlist, conntrack fast path, then CIDR-only rules (exact
 * hash in front of an LPM trie per direction and family) and the general-rule classifier,
 * merged by rank; default policy otherwise. Every ruleset map is generation-keyed so that a
 * reload flips one word (fw_active_gen).
 */
#include "lib/common.bpf.h"
#include "lib/parse.bpf.h"
#include "lib/events.bpf.h"
#include "lib/chain.bpf.h"
#include "lib/bench.bpf.h"
#include "lib/conntrack.bpf.h"
#include "lib/ips.bpf.h"

char LICENSE[] SEC("license") = "GPL";

/* 0 -> active generation (0 or 1); userspace flips it after filling the other one */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} fw_active_gen SEC(".maps");

/* generation -> settings of that generation's ruleset */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ES_GENERATIONS);
	__type(key, __u32);
	__type(value, struct fw_settings);
} fw_settings SEC(".maps");

/* enum fw_stat -> packets (per CPU) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FW_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} fw_stats SEC(".maps");

/* gen * FW_MAX_RANKS + rank -> hits of that rule (per CPU) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FW_MAX_RANKS *ES_GENERATIONS);
	__type(key, __u32);
	__type(value, struct fw_counter);
} fw_rule_hits SEC(".maps");

/* allowlist: source prefixes that no drop logic of any stage may touch */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, FW_MAX_ALLOWLIST);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct fw_lpm_v4_key);
	__type(value, __u8);
} fw_allow_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, FW_MAX_ALLOWLIST);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct fw_lpm_v6_key);
	__type(value, __u8);
} fw_allow_v6 SEC(".maps");

/*
 * CIDR-only rules. Userspace resolves overlaps before writing: the value at each prefix is the
 * lowest-rank rule among all CIDR-only rules of that direction that cover it. /32 and /128
 * entries (alias members, single hosts) live in the exact hashes, which are tried first.
 */
#define FW_CIDR_TRIE(name, keytype)                   \
	struct {                                      \
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);  \
		__uint(max_entries, FW_MAX_CIDRS);    \
		__uint(map_flags, BPF_F_NO_PREALLOC); \
		__type(key, keytype);                 \
		__type(value, struct fw_rule_ref);    \
	} name SEC(".maps")

#define FW_EXACT_HASH(name, keytype)                  \
	struct {                                      \
		__uint(type, BPF_MAP_TYPE_HASH);      \
		__uint(max_entries, FW_MAX_CIDRS);    \
		__uint(map_flags, BPF_F_NO_PREALLOC); \
		__type(key, keytype);                 \
		__type(value, struct fw_rule_ref);    \
	} name SEC(".maps")

FW_CIDR_TRIE(fw_lpm_src_v4, struct fw_lpm_v4_key);
FW_CIDR_TRIE(fw_lpm_dst_v4, struct fw_lpm_v4_key);
FW_CIDR_TRIE(fw_lpm_src_v6, struct fw_lpm_v6_key);
FW_CIDR_TRIE(fw_lpm_dst_v6, struct fw_lpm_v6_key);
FW_EXACT_HASH(fw_exact_src_v4, struct fw_exact_v4_key);
FW_EXACT_HASH(fw_exact_dst_v4, struct fw_exact_v4_key);
FW_EXACT_HASH(fw_exact_src_v6, struct fw_exact_v6_key);
FW_EXACT_HASH(fw_exact_dst_v6, struct fw_exact_v6_key);

/* classifier address dimensions: prefix -> index into fw_bitmaps */
#define FW_CLS_TRIE(name, keytype)                               \
	struct {                                                 \
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);             \
		__uint(max_entries, FW_MAX_CLASSIFIER_PREFIXES); \
		__uint(map_flags, BPF_F_NO_PREALLOC);            \
		__type(key, keytype);                            \
		__type(value, __u32);                            \
	} name SEC(".maps")

#define FW_CLS_HASH(name, keytype)                               \
	struct {                                                 \
		__uint(type, BPF_MAP_TYPE_HASH);                 \
		__uint(max_entries, FW_MAX_CLASSIFIER_PREFIXES); \
		__uint(map_flags, BPF_F_NO_PREALLOC);            \
		__type(key, keytype);                            \
		__type(value, __u32);                            \
	} name SEC(".maps")

FW_CLS_HASH(fw_cls_hash_v4, struct fw_cls_v4_key);
FW_CLS_HASH(fw_cls_hash_v6, struct fw_cls_v6_key);
FW_CLS_TRIE(fw_cls_src_v4, struct fw_lpm_v4_key);
FW_CLS_TRIE(fw_cls_dst_v4, struct fw_lpm_v4_key);
FW_CLS_TRIE(fw_cls_src_v6, struct fw_lpm_v6_key);
FW_CLS_TRIE(fw_cls_dst_v6, struct fw_lpm_v6_key);

/* classifier value dimensions, laid out by enum fw_dim_layout -> index into fw_bitmaps */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FW_DIM_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} fw_cls_dims SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FW_BITMAP_POOL);
	__type(key, __u32);
	__type(value, struct fw_bitmap);
} fw_bitmaps SEC(".maps");

/* (gen * ES_FAMILIES + family) * FW_MAX_RULES_PER_FAMILY + bit -> the general rule */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FW_MAX_RULES_PER_FAMILY *ES_FAMILIES *ES_GENERATIONS);
	__type(key, __u32);
	__type(value, struct fw_rule_ref);
} fw_rules SEC(".maps");

/* Puts the ABI's constant-only enums into BTF so the Rust side gets them from the skeleton. */
enum es_limits _es_limits_btf;
enum fw_stat _fw_stat_btf;
enum fw_dim _fw_dim_btf;
enum fw_dim_layout _fw_dim_layout_btf;
enum fw_settings_flags _fw_settings_flags_btf;
enum fw_family_flags _fw_family_flags_btf;
enum fw_rule_flags _fw_rule_flags_btf;
enum fw_cls_hash _fw_cls_hash_btf;
enum fw_action _fw_action_btf;
enum fw_family _fw_family_btf;
enum xdp_stage _xdp_stage_btf;
enum event_kind _event_kind_btf;
enum event_action _event_action_btf;
enum event_rule _event_rule_btf;
enum ips_settings_flags _ips_settings_flags_btf;
struct ips_settings _ips_settings_btf;
struct packet_event _packet_event_btf;

#define FW_NO_RANK 0x10000

static __always_inline void fw_count(__u32 stat)
{
	__u64 *v = bpf_map_lookup_elem(&fw_stats, &stat);

	if (v)
		*v += 1;
}

static __always_inline void fw_emit(struct xdp_md *ctx, const struct pkt *p, __u8 kind, __u8 action,
				    __u16 rule_id)
{
	if (emit_packet_event(ctx->ingress_ifindex, p, kind, action, rule_id))
		fw_count(FW_STAT_EVENTS_SENT);
	else
		fw_count(FW_STAT_EVENTS_DROPPED);
}

static __always_inline void fw_take(struct fw_rule_ref *best, const struct fw_rule_ref *cand)
{
	if (cand && cand->rank < best->rank)
		*best = *cand;
}

static __always_inline const struct fw_rule_ref *fw_cidr_v4(void *exact, void *trie, __u32 gen,
							    const __u8 *addr, __u8 fam_flags,
							    __u8 exact_flag, __u8 lpm_flag)
{
	const struct fw_rule_ref *r = NULL;

	if (fam_flags & exact_flag) {
		struct fw_exact_v4_key k = { .gen = gen };

		__builtin_memcpy(k.addr, addr, 4);
		r = bpf_map_lookup_elem(exact, &k);
		if (r)
			return r;
	}
	if (fam_flags & lpm_flag) {
		struct fw_lpm_v4_key k = { .prefixlen = 64, .gen = gen };

		__builtin_memcpy(k.addr, addr, 4);
		r = bpf_map_lookup_elem(trie, &k);
	}
	return r;
}

static __always_inline const struct fw_rule_ref *fw_cidr_v6(void *exact, void *trie, __u32 gen,
							    const __u8 *addr, __u8 fam_flags,
							    __u8 exact_flag, __u8 lpm_flag)
{
	const struct fw_rule_ref *r = NULL;

	if (fam_flags & exact_flag) {
		struct fw_exact_v6_key k = { .gen = gen };

		__builtin_memcpy(k.addr, addr, 16);
		r = bpf_map_lookup_elem(exact, &k);
		if (r)
			return r;
	}
	if (fam_flags & lpm_flag) {
		struct fw_lpm_v6_key k = { .prefixlen = 160, .gen = gen };

		__builtin_memcpy(k.addr, addr, 16);
		r = bpf_map_lookup_elem(trie, &k);
	}
	return r;
}

static __always_inline bool fw_allowlisted(const struct pkt *p, __u32 gen)
{
	if (p->family == FW_FAMILY_V4) {
		struct fw_lpm_v4_key k = { .prefixlen = 64, .gen = gen };

		__builtin_memcpy(k.addr, p->saddr, 4);
		return bpf_map_lookup_elem(&fw_allow_v4, &k) != NULL;
	}
	struct fw_lpm_v6_key k = { .prefixlen = 160, .gen = gen };

	__builtin_memcpy(k.addr, p->saddr, 16);
	return bpf_map_lookup_elem(&fw_allow_v6, &k) != NULL;
}

static __always_inline __u32 prefix_mask32(__u32 len)
{
	return len >= 32 ? ~0U : len ? ~0U << (32 - len) : 0;
}

/* The longest of up to FW_CLS_HASH_LENS prefix lengths under which the address is stored. */
static __always_inline __s64 fw_dim_addr_hash(const struct pkt *p, __u32 gen, __u32 dir,
					      const __u8 *lens)
{
	const __u8 *addr = dir ? p->daddr : p->saddr;
	__u32 *idx;
	int i, w;

#pragma unroll
	for (i = 0; i < FW_CLS_HASH_LENS; i++) {
		__u32 len = lens[i];

		if (len == FW_LEN_NONE)
			break;
		if (p->family == FW_FAMILY_V4) {
			struct fw_cls_v4_key k = { .gen = gen, .dir = dir, .len = len };
			__u32 a;

			__builtin_memcpy(&a, addr, 4);
			a = bpf_htonl(bpf_ntohl(a) & prefix_mask32(len));
			__builtin_memcpy(k.addr, &a, 4);
			idx = bpf_map_lookup_elem(&fw_cls_hash_v4, &k);
		} else {
			struct fw_cls_v6_key k = { .gen = gen, .dir = dir, .len = len };

#pragma unroll
			for (w = 0; w < 4; w++) {
				__u32 a, bits = len > w * 32 ? len - w * 32 : 0;

				__builtin_memcpy(&a, addr + w * 4, 4);
				a = bpf_htonl(bpf_ntohl(a) & prefix_mask32(bits));
				__builtin_memcpy(&k.addr[w * 4], &a, 4);
			}
			idx = bpf_map_lookup_elem(&fw_cls_hash_v6, &k);
		}
		if (idx)
			return *idx;
	}
	return -1;
}

/* -1: no general-rule prefix covers the address, so no general rule can match */
static __always_inline __s64 fw_dim_addr(const struct pkt *p, const struct fw_settings *s,
					 __u32 gen, __u32 dir)
{
	const __u8 *lens = s->cls_lens[p->family & 1][dir & 1];
	bool src = dir == 0;
	__u32 *idx;

	if (lens[0] != FW_LEN_NONE)
		return fw_dim_addr_hash(p, gen, dir, lens);
	if (p->family == FW_FAMILY_V4) {
		struct fw_lpm_v4_key k = { .prefixlen = 64, .gen = gen };

		__builtin_memcpy(k.addr, src ? p->saddr : p->daddr, 4);
		idx = bpf_map_lookup_elem(src ? (void *)&fw_cls_src_v4 : (void *)&fw_cls_dst_v4,
					  &k);
	} else {
		struct fw_lpm_v6_key k = { .prefixlen = 160, .gen = gen };

		__builtin_memcpy(k.addr, src ? p->saddr : p->daddr, 16);
		idx = bpf_map_lookup_elem(src ? (void *)&fw_cls_src_v6 : (void *)&fw_cls_dst_v6,
					  &k);
	}
	return idx ? *idx : -1;
}

static __always_inline __s64 fw_dim_value(__u32 block, __u32 off, __u32 value)
{
	__u32 slot = block + off + value;
	__u32 *idx = bpf_map_lookup_elem(&fw_cls_dims, &slot);

	return idx ? *idx : -1;
}

#define FW_DIM_ON(dims, d) ((dims) & (1 << (d)))

static __always_inline const struct fw_bitmap *fw_bitmap_at(__s64 idx)
{
	__u32 slot = idx;

	if (idx < 0)
		return NULL;
	return bpf_map_lookup_elem(&fw_bitmaps, &slot);
}

/*
 * The first general rule of the packet's family that matches, as its bit, or -1. Every
 * dimension resolves to a bitmap of fw_bitmaps (FW_BITMAP_ALL when inactive) before the word
 * loop, so the loop body has no per-dimension branches for the verifier to multiply. The
 * value dimensions (array lookups) go first: when they already rule out every rule, the
 * address tries are never walked.
 */
static __always_inline int fw_classify(const struct pkt *p, const struct fw_settings *s, __u32 gen)
{
	__u8 dims = s->active_dims[p->family & 1];
	__u32 block = (gen * ES_FAMILIES + p->family) * FW_DIM_BLOCK;
	bool ports = p->flags & PKT_F_PORTS;
	const struct fw_bitmap *b0, *b1, *b2, *b3, *b4, *b5, *b6, *b7;
	__u64 summary;
	int n;

	b2 = fw_bitmap_at(FW_DIM_ON(dims, FW_DIM_PROTO) ?
				  fw_dim_value(block, FW_DIM_OFF_PROTO, p->proto) :
				  FW_BITMAP_ALL);
	b3 = fw_bitmap_at(
		FW_DIM_ON(dims, FW_DIM_SPORT) ?
			fw_dim_value(block, FW_DIM_OFF_SPORT, ports ? p->sport : FW_DIM_ABSENT_16) :
			FW_BITMAP_ALL);
	b4 = fw_bitmap_at(
		FW_DIM_ON(dims, FW_DIM_DPORT) ?
			fw_dim_value(block, FW_DIM_OFF_DPORT, ports ? p->dport : FW_DIM_ABSENT_16) :
			FW_BITMAP_ALL);
	b5 = fw_bitmap_at(
		FW_DIM_ON(dims, FW_DIM_VLAN) ?
			fw_dim_value(block, FW_DIM_OFF_VLAN,
				     p->flags & PKT_F_VLAN ? p->vlan_id : FW_DIM_UNTAGGED) :
			FW_BITMAP_ALL);
	b6 = fw_bitmap_at(FW_DIM_ON(dims, FW_DIM_L4X) ?
				  fw_dim_value(block, FW_DIM_OFF_L4X, p->l4x) :
				  FW_BITMAP_ALL);
	b7 = fw_bitmap_at(FW_DIM_ON(dims, FW_DIM_CT) ?
				  fw_dim_value(block, FW_DIM_OFF_CT, p->ct_class & 3) :
				  FW_BITMAP_ALL);
	if (!b2 || !b3 || !b4 || !b5 || !b6 || !b7)
		return -1;
	summary = b2->summary & b3->summary & b4->summary & b5->summary & b6->summary & b7->summary;
	if (!summary)
		return -1;

	b0 = fw_bitmap_at(FW_DIM_ON(dims, FW_DIM_SRC) ? fw_dim_addr(p, s, gen, 0) : FW_BITMAP_ALL);
	if (!b0)
		return -1;
	summary &= b0->summary;
	if (!summary)
		return -1;
	b1 = fw_bitmap_at(FW_DIM_ON(dims, FW_DIM_DST) ? fw_dim_addr(p, s, gen, 1) : FW_BITMAP_ALL);
	if (!b1)
		return -1;
	summary &= b1->summary;

	for (n = 0; n < FW_BITMAP_WORDS && summary; n++) {
		__u64 w = ctz64(summary), word;

		VERIFIER_MASK(w, 63);
		word = b0->words[w] & b1->words[w] & b2->words[w] & b3->words[w] & b4->words[w] &
		       b5->words[w] & b6->words[w] & b7->words[w];

		if (word)
			return w * 64 + ctz64(word);
		summary &= summary - 1;
	}
	return -1;
}

static __always_inline void fw_count_hit(__u32 gen, __u16 rank, __u32 len)
{
	__u32 slot = gen * FW_MAX_RANKS + rank;
	struct fw_counter *c;

	if (rank >= FW_MAX_RANKS)
		return;
	c = bpf_map_lookup_elem(&fw_rule_hits, &slot);
	if (c) {
		c->packets += 1;
		c->bytes += len;
	}
}

/* The verdict for one packet: FW_ACTION_PASS or FW_ACTION_DROP, already counted. */
static __always_inline int fw_decide(struct xdp_md *ctx, struct pkt *p)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct fw_rule_ref best = { .rank = 0xffff };
	const struct fw_settings *s;
	__u32 zero = 0, gen, fam;
	bool monitor, have = false;
	__u8 action, kind;
	__u32 *genp;
	int parsed;

	fw_count(FW_STAT_SEEN);
	genp = bpf_map_lookup_elem(&fw_active_gen, &zero);
	if (!genp)
		return FW_ACTION_PASS;
	gen = *genp & 1;
	s = bpf_map_lookup_elem(&fw_settings, &gen);
	if (!s)
		return FW_ACTION_PASS;
	monitor = s->flags & FW_SET_MONITOR;

	parsed = parse_packet(data, data_end, data_end - data, p);
	p->parse_result = parsed;
	if (parsed == PARSE_NON_IP) {
		fw_count(FW_STAT_PASS_NON_IP);
		return FW_ACTION_PASS;
	}
	if (parsed == PARSE_MALFORMED) {
		if (s->malformed_action != FW_ACTION_DROP) {
			fw_count(FW_STAT_PASS_MALFORMED);
			return FW_ACTION_PASS;
		}
		if (monitor) {
			fw_count(FW_STAT_PASS_MONITOR);
			fw_emit(ctx, p, EVENT_FW_MALFORMED, EVENT_ACTION_WOULD_DROP, EVENT_NO_RULE);
			return FW_ACTION_PASS;
		}
		fw_count(FW_STAT_DROP_MALFORMED);
		return FW_ACTION_DROP;
	}

	if (ips_blocked(p)) {
		if (monitor) {
			fw_count(FW_STAT_PASS_MONITOR);
			return FW_ACTION_PASS;
		}
		fw_count(FW_STAT_DROP_BLOCKED);
		return FW_ACTION_DROP;
	}

	fam = p->family & 1;
	__u8 ff = s->family_flags[fam];

	if ((ff & FW_FAM_ALLOWLIST) && fw_allowlisted(p, gen)) {
		p->stage_flags |= PKT_STAGE_ALLOWLISTED;
		fw_count(FW_STAT_PASS_ALLOWLIST);
		return FW_ACTION_PASS;
	}

	const struct ct_settings *cs = ct_settings_get();

	if (cs && cs->enabled) {
		p->ct_class = ct_classify(data, data_end, p, cs, ct_now());
		if (cs->fast_path &&
		    (p->ct_class == CT_CLASS_ESTABLISHED || p->ct_class == CT_CLASS_RELATED)) {
			ct_count(CT_STAT_FAST_PATH);
			fw_count(FW_STAT_PASS_TRACKED);
			return FW_ACTION_PASS;
		}
	}

	if (fam == FW_FAMILY_V4) {
		fw_take(&best, fw_cidr_v4(&fw_exact_src_v4, &fw_lpm_src_v4, gen, p->saddr, ff,
					  FW_FAM_SRC_EXACT, FW_FAM_SRC_LPM));
		fw_take(&best, fw_cidr_v4(&fw_exact_dst_v4, &fw_lpm_dst_v4, gen, p->daddr, ff,
					  FW_FAM_DST_EXACT, FW_FAM_DST_LPM));
	} else {
		fw_take(&best, fw_cidr_v6(&fw_exact_src_v6, &fw_lpm_src_v6, gen, p->saddr, ff,
					  FW_FAM_SRC_EXACT, FW_FAM_SRC_LPM));
		fw_take(&best, fw_cidr_v6(&fw_exact_dst_v6, &fw_lpm_dst_v6, gen, p->daddr, ff,
					  FW_FAM_DST_EXACT, FW_FAM_DST_LPM));
	}

	if (s->general_rules[fam]) {
		int bit = fw_classify(p, s, gen);

		if (bit >= 0) {
			__u32 slot = (gen * ES_FAMILIES + fam) * FW_MAX_RULES_PER_FAMILY +
				     (bit & (FW_MAX_RULES_PER_FAMILY - 1));

			fw_take(&best, bpf_map_lookup_elem(&fw_rules, &slot));
		}
	}
	have = best.rank != 0xffff;

	if (have) {
		fw_count_hit(gen, best.rank, p->len);
		action = best.action;
		kind = EVENT_FW_RULE;
	} else {
		action = s->default_action;
		kind = EVENT_FW_DEFAULT_POLICY;
	}

	if (action == FW_ACTION_DROP && monitor) {
		fw_count(FW_STAT_PASS_MONITOR);
		fw_emit(ctx, p, kind, EVENT_ACTION_WOULD_DROP,
			have ? EVENT_RULE(gen, best.rank) : EVENT_NO_RULE);
		return FW_ACTION_PASS;
	}
	if (have && (best.flags & FW_RULE_LOG))
		fw_emit(ctx, p, kind,
			action == FW_ACTION_DROP ? EVENT_ACTION_DROP : EVENT_ACTION_PASS,
			EVENT_RULE(gen, best.rank));
	if (action == FW_ACTION_DROP) {
		fw_count(have ? FW_STAT_DROP_RULE : FW_STAT_DROP_DEFAULT);
		return FW_ACTION_DROP;
	}
	fw_count(have ? FW_STAT_PASS_RULE : FW_STAT_PASS_DEFAULT);
	return FW_ACTION_PASS;
}

/* The firewall's decision, then the packet to the next enabled stage. */
static __always_inline int fw_stage(struct xdp_md *ctx)
{
	struct pkt p = {};
	struct pkt *handover;
	__u32 zero = 0;

	if (fw_decide(ctx, &p) == FW_ACTION_DROP)
		return XDP_DROP;
	handover = bpf_map_lookup_elem(&xdp_scratch, &zero);
	if (handover)
		*handover = p;
	return xdp_chain_next(ctx, XDP_STAGE_FIREWALL);
}

SEC("xdp")
int xdp_firewall(struct xdp_md *ctx)
{
	return fw_stage(ctx);
}

/*
 * Benchmark harness (never attached): the same decision on a packet whose addresses are
 * rewritten from bench_addrs on every run, so BPF_PROG_TEST_RUN's repeat loop sees keys spread
 * over the rule set instead of one hot key.
 */
SEC("xdp")
int xdp_firewall_spread(struct xdp_md *ctx)
{
	struct pkt p = {};

	if (bench_spread_addresses(ctx))
		return XDP_ABORTED;
	return fw_decide(ctx, &p) == FW_ACTION_DROP ? XDP_DROP : XDP_PASS;
}

/*
 * Benchmark harness (never attached): xdp_firewall and the stages chained after it, on a
 * packet whose addresses are rewritten from bench_addrs on every run.
 */
SEC("xdp")
int xdp_chain_spread(struct xdp_md *ctx)
{
	if (bench_spread_addresses(ctx))
		return XDP_ABORTED;
	return fw_stage(ctx);
}
