// SPDX-License-Identifier: GPL-2.0-only
/*
 * tc_threatintel: both addresses of every packet against the IOC sets of the active
 * generation. A Bloom filter answers first (no false negatives); only a positive probe costs a
 * confirmation: the exact-IOC hash, or the trie of CIDR IOCs. A match alerts, drops, or tags
 * the packet with the quarantine VLAN, as its IOC says.
 */
#include "lib/common.bpf.h"
#include "lib/parse.bpf.h"
#include "lib/events.bpf.h"
#include "lib/tc_chain.bpf.h"

char LICENSE[] SEC("license") = "GPL";

/*
 * A Bloom filter cannot delete, and userspace cannot empty one: a feed refresh fills a fresh
 * filter map and swaps it into the inactive slot of ti_blooms, then flips ti_active_gen. The
 * two named filters are the ones the object starts with.
 */
struct ti_bloom_map {
	__uint(type, BPF_MAP_TYPE_BLOOM_FILTER);
	__uint(max_entries, TI_MAX_BLOOM);
	__uint(map_extra, TI_BLOOM_HASHES);
	__type(value, struct ti_bloom_key);
};

struct ti_bloom_map ti_bloom_0 SEC(".maps");
struct ti_bloom_map ti_bloom_1 SEC(".maps");

/* generation -> its Bloom filter */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, ES_GENERATIONS);
	__type(key, __u32);
	__array(values, struct ti_bloom_map);
} ti_blooms SEC(".maps") = {
	.values = { &ti_bloom_0, &ti_bloom_1 },
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TI_MAX_EXACT);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ti_v4_key);
	__type(value, struct ti_ioc);
} ti_ioc_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TI_MAX_EXACT);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ti_v6_key);
	__type(value, struct ti_ioc);
} ti_ioc_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, TI_MAX_CIDRS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ti_lpm_v4_key);
	__type(value, struct ti_ioc);
} ti_lpm_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, TI_MAX_CIDRS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ti_lpm_v6_key);
	__type(value, struct ti_ioc);
} ti_lpm_v6 SEC(".maps");

/* 0 -> the active generation (its Bloom filter and ti_settings slot) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} ti_active_gen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ES_GENERATIONS);
	__type(key, __u32);
	__type(value, struct ti_settings);
} ti_settings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TI_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} ti_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TI_BLOOM_STAGE);
	__type(key, __u32);
	__type(value, struct ti_bloom_key);
} ti_bloom_stage SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ti_bloom_fill_ctl);
} ti_bloom_fill_ctl SEC(".maps");

/* BTF for userspace */
enum ti_action _ti_action_btf;
enum ti_bloom_kind _ti_bloom_kind_btf;
enum ti_limits _ti_limits_btf;
enum ti_settings_flags _ti_settings_flags_btf;
enum ti_stat _ti_stat_btf;
struct ti_bloom_key _ti_bloom_key_btf;
struct ips_block _ips_block_btf;
struct ti_bloom_fill_ctl _ti_bloom_fill_ctl_btf;

static __always_inline void ti_count(__u32 stat)
{
	__u64 *c = bpf_map_lookup_elem(&ti_stats, &stat);

	if (c)
		*c += 1;
}

static __always_inline bool ti_bloom_has(void *bloom, const struct ti_bloom_key *k)
{
	return bpf_map_peek_elem(bloom, (void *)k) == 0;
}

/*
 * The IOC an address is, or NULL. `positive` counts the probes the filter answered yes to,
 * so that the caller can tell a clean packet from a false positive.
 */
static __always_inline const struct ti_ioc *ti_match(const __u8 *addr, __u8 family, void *bloom,
						     __u32 flags, __u32 *positive)
{
	struct ti_bloom_key k = { .kind = TI_BLOOM_EXACT };
	const struct ti_ioc *ioc;

	if (family == FW_FAMILY_V4) {
		struct ti_lpm_v4_key l = { .prefixlen = 32 };
		struct ti_v4_key e;

		k.addr[10] = 0xff;
		k.addr[11] = 0xff;
		__builtin_memcpy(&k.addr[12], addr, 4);
		if (ti_bloom_has(bloom, &k)) {
			*positive += 1;
			__builtin_memcpy(e.addr, addr, 4);
			ioc = bpf_map_lookup_elem(&ti_ioc_v4, &e);
			if (ioc)
				return ioc;
		}
		if (!(flags & TI_SET_CIDRS_V4))
			return NULL;
		if (!(flags & TI_SET_TRIE_ALWAYS_V4)) {
			_Static_assert(TI_BUCKET_BITS_V4 == 16, "bucket mask");
			k.kind = TI_BLOOM_BUCKET;
			k.addr[14] = 0;
			k.addr[15] = 0;
			if (!ti_bloom_has(bloom, &k))
				return NULL;
			*positive += 1;
		}
		__builtin_memcpy(l.addr, addr, 4);
		return bpf_map_lookup_elem(&ti_lpm_v4, &l);
	}

	struct ti_lpm_v6_key l6 = { .prefixlen = 128 };
	struct ti_v6_key e6;

	__builtin_memcpy(k.addr, addr, 16);
	if (ti_bloom_has(bloom, &k)) {
		*positive += 1;
		__builtin_memcpy(e6.addr, addr, 16);
		ioc = bpf_map_lookup_elem(&ti_ioc_v6, &e6);
		if (ioc)
			return ioc;
	}
	if (!(flags & TI_SET_CIDRS_V6))
		return NULL;
	if (!(flags & TI_SET_TRIE_ALWAYS_V6)) {
		_Static_assert(TI_BUCKET_BITS_V6 == 32, "bucket mask");
		k.kind = TI_BLOOM_BUCKET;
		__builtin_memset(&k.addr[4], 0, 12);
		if (!ti_bloom_has(bloom, &k))
			return NULL;
		*positive += 1;
	}
	__builtin_memcpy(l6.addr, addr, 16);
	return bpf_map_lookup_elem(&ti_lpm_v6, &l6);
}

static __always_inline int ti_stage(struct __sk_buff *skb)
{
	struct tc_handover *h = tc_handover_get();
	const struct ti_settings *s;
	const struct ti_ioc *ioc;
	__u32 zero = 0, gen, positive = 0;
	__u32 *genp;
	void *bloom;
	bool ingress;
	__u8 action;

	if (!h)
		return TC_ACT_UNSPEC;
	ingress = h->ingress;
	genp = bpf_map_lookup_elem(&ti_active_gen, &zero);
	if (!genp)
		return tc_chain_next(skb, ingress, TC_STAGE_THREATINTEL);
	gen = *genp & 1;
	s = bpf_map_lookup_elem(&ti_settings, &gen);
	if (!s || !(s->flags & TI_SET_ENABLED) || h->p.parse_result != PARSE_OK)
		return tc_chain_next(skb, ingress, TC_STAGE_THREATINTEL);

	bloom = bpf_map_lookup_elem(&ti_blooms, &gen);
	if (!bloom)
		return tc_chain_next(skb, ingress, TC_STAGE_THREATINTEL);
	ti_count(TI_STAT_SEEN);
	ioc = ti_match(h->p.saddr, h->p.family, bloom, s->flags, &positive);
	if (!ioc)
		ioc = ti_match(h->p.daddr, h->p.family, bloom, s->flags, &positive);
	if (!ioc) {
		ti_count(positive ? TI_STAT_BLOOM_FALSE_POSITIVE : TI_STAT_BLOOM_NEGATIVE);
		return tc_chain_next(skb, ingress, TC_STAGE_THREATINTEL);
	}

	action = ioc->action;
	if (action == TI_ACTION_DROP) {
		ti_count(TI_STAT_MATCH_DROP);
		ti_count(emit_packet_event(skb->ifindex, &h->p, EVENT_TI_MATCH, EVENT_ACTION_DROP,
					   ioc->feed_id) ?
				 TI_STAT_EVENTS_SENT :
				 TI_STAT_EVENTS_DROPPED);
		return TC_ACT_SHOT;
	}
	if (action == TI_ACTION_QUARANTINE) {
		struct pkt p = h->p;

		ti_count(emit_packet_event(skb->ifindex, &p, EVENT_TI_MATCH,
					   EVENT_ACTION_QUARANTINE, ioc->feed_id) ?
				 TI_STAT_EVENTS_SENT :
				 TI_STAT_EVENTS_DROPPED);
		if (bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), s->quarantine_vlan)) {
			ti_count(TI_STAT_QUARANTINE_FAILED);
			return TC_ACT_SHOT;
		}
		ti_count(TI_STAT_MATCH_QUARANTINE);
		/* the headers moved: later stages would read stale offsets */
		return TC_ACT_UNSPEC;
	}
	ti_count(TI_STAT_MATCH_ALERT);
	ti_count(emit_packet_event(skb->ifindex, &h->p, EVENT_TI_MATCH, EVENT_ACTION_PASS,
				   ioc->feed_id) ?
			 TI_STAT_EVENTS_SENT :
			 TI_STAT_EVENTS_DROPPED);
	return tc_chain_next(skb, ingress, TC_STAGE_THREATINTEL);
}

SEC("tc")
int tc_threatintel(struct __sk_buff *skb)
{
	return ti_stage(skb);
}

struct ti_fill {
	__u32 gen;
	__u32 pushed;
	__u32 failed;
};

static long ti_fill_one(__u64 index, void *ctx)
{
	struct ti_fill *f = ctx;
	struct ti_bloom_key *k;
	__u32 i = index, gen = f->gen;
	void *bloom;

	k = bpf_map_lookup_elem(&ti_bloom_stage, &i);
	/* the filter again per key: a map pointer does not survive the trip through ctx */
	bloom = bpf_map_lookup_elem(&ti_blooms, &gen);
	if (!k || !bloom)
		return 1;
	if (bpf_map_push_elem(bloom, k, 0))
		f->failed++;
	else
		f->pushed++;
	return 0;
}

/*
 * Bulk loader (never attached): pushes the staged keys into generation gen's filter. Run by
 * userspace through BPF_PROG_TEST_RUN before that generation is made active.
 */
SEC("xdp")
int ti_bloom_fill(struct xdp_md *ctx)
{
	struct ti_bloom_fill_ctl *ctl;
	struct ti_fill f = {};
	__u32 zero = 0, count;

	ctl = bpf_map_lookup_elem(&ti_bloom_fill_ctl, &zero);
	if (!ctl)
		return XDP_ABORTED;
	f.gen = ctl->gen & 1;
	count = ctl->count;
	if (count > TI_BLOOM_STAGE)
		count = TI_BLOOM_STAGE;
	bpf_loop(count, ti_fill_one, &f, 0);
	ctl->pushed = f.pushed;
	ctl->failed = f.failed;
	return XDP_PASS;
}
