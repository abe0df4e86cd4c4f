// SPDX-License-Identifier: GPL-2.0-only
/*
 * xdp_ratelimit: per-source (or per-policy) token buckets for the packets the firewall passed.
 * The policy is the first of those covering the source's longest prefix whose protocol and
 * destination port match. Buckets are per CPU (no atomics); each CPU refills at the rate times
 * its share of the key's recent packets, so the configured rate holds whether a flood is
 * pinned to one CPU, spread over all, or moving between them.
 */
#include "lib/common.bpf.h"
#include "lib/parse.bpf.h"
#include "lib/events.bpf.h"
#include "lib/chain.bpf.h"
#include "lib/syncookie.bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define RL_NANO 1000000000ULL

/* CPUs whose buckets may hold a share; set from libbpf_num_possible_cpus() before load */
const volatile __u32 rl_nr_cpus = 1;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} rl_active_gen SEC(".maps");

/* generation * RL_MAX_POLICIES + index -> policy */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RL_MAX_POLICIES *ES_GENERATIONS);
	__type(key, __u32);
	__type(value, struct rl_policy);
} rl_policies SEC(".maps");

/* source prefix -> the policies covering it (generation-keyed like the firewall's tries) */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, RL_MAX_PREFIXES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct fw_lpm_v4_key);
	__type(value, struct rl_match);
} rl_lpm_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, RL_MAX_PREFIXES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct fw_lpm_v6_key);
	__type(value, struct rl_match);
} rl_lpm_v6 SEC(".maps");

/* generation -> the ICMP guard's settings */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ES_GENERATIONS);
	__type(key, __u32);
	__type(value, struct rl_guards);
} rl_guards SEC(".maps");

/* (generation, UDP source port) -> the amplification guard's rate for that service */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RL_MAX_AMP_PORTS *ES_GENERATIONS);
	__type(key, struct rl_amp_key);
	__type(value, struct rl_amp_port);
} rl_amp_ports SEC(".maps");

/* destination -> when a SYN cookie was last sent to protect it (ACKs to it get checked) */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1 << 16);
	__type(key, struct rl_key);
	__type(value, __u64);
} rl_syn_flooded SEC(".maps");

/* (policy, source) -> token bucket, per CPU; the least recently used key goes first */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, RL_MAX_BUCKETS);
	__type(key, struct rl_key);
	__type(value, struct rl_bucket);
} rl_buckets SEC(".maps");

/* enum rl_stat -> packets (per CPU) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RL_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} rl_stats SEC(".maps");

/* Puts the constant-only enums into BTF so the Rust side gets them from the skeleton. */
enum rl_limits _rl_limits_btf;
enum rl_action _rl_action_btf;
enum rl_key_mode _rl_key_mode_btf;
enum rl_stat _rl_stat_btf;
enum rl_guard_key _rl_guard_key_btf;

static __always_inline void rl_count(__u32 stat)
{
	__u64 *v = bpf_map_lookup_elem(&rl_stats, &stat);

	if (v)
		*v += 1;
}

static __always_inline const struct rl_match *rl_lookup(const struct pkt *p, __u32 gen)
{
	if (p->family == FW_FAMILY_V4) {
		struct fw_lpm_v4_key k = { .prefixlen = 64, .gen = gen };

		__builtin_memcpy(k.addr, p->saddr, 4);
		return bpf_map_lookup_elem(&rl_lpm_v4, &k);
	}
	struct fw_lpm_v6_key k = { .prefixlen = 160, .gen = gen };

	__builtin_memcpy(k.addr, p->saddr, 16);
	return bpf_map_lookup_elem(&rl_lpm_v6, &k);
}

static __always_inline bool rl_applies(const struct rl_policy *pol, const struct pkt *p)
{
	if (pol->proto && pol->proto != p->proto)
		return false;
	if (pol->port_match) {
		if (!(p->flags & PKT_F_PORTS))
			return false;
		if (p->dport < pol->dport_lo || p->dport > pol->dport_hi)
			return false;
	}
	return true;
}

static __always_inline __u64 rl_decayed(__u64 recent, __u64 last_ns, __u64 now)
{
	/* another CPU may have stamped a packet after this one read the clock */
	__u64 halvings = now > last_ns ? (now - last_ns) / RL_RECENT_HALF_LIFE_NS : 0;

	return halvings >= 63 ? 0 : recent >> halvings;
}

/* v * w / 2^16 without overflow or losing the small values (w <= 2^16) */
static __always_inline __u64 rl_scale(__u64 v, __u64 w)
{
	return (v >> 16) * w + (((v & 0xffff) * w) >> 16);
}

/* The recent packets of this key on the other CPUs. */
static __always_inline __u64 rl_recent_elsewhere(const struct rl_key *key, __u32 self, __u64 now)
{
	__u64 sum = 0;
	__u32 cpu;

	for (cpu = 0; cpu < RL_MAX_CPUS; cpu++) {
		struct rl_bucket *b;

		if (cpu >= rl_nr_cpus)
			break;
		if (cpu == self)
			continue;
		b = bpf_map_lookup_percpu_elem(&rl_buckets, key, cpu);
		if (b && b->last_ns)
			sum += rl_decayed(b->recent, b->last_ns, now);
	}
	return sum;
}

/*
 * true when the packet fits the budget; *report when an over-rate event is due. This CPU
 * refills at the rate times its share of the key's recent packets and holds as much of the
 * burst: a flood pinned to one CPU gets the whole rate, one spread evenly over N gets rate/N
 * on each, and one that moves between CPUs follows within a few half-lives.
 */
static __always_inline bool rl_take(const struct rl_key *key, const struct rl_policy *pol,
				    bool *report)
{
	__u64 now = bpf_ktime_get_ns(), own, total, share, cap, elapsed;
	__u32 cpu = bpf_get_smp_processor_id();
	struct rl_bucket *b;

	b = bpf_map_lookup_elem(&rl_buckets, key);
	if (!b) {
		struct rl_bucket fresh = {};

		bpf_map_update_elem(&rl_buckets, key, &fresh, BPF_NOEXIST);
		b = bpf_map_lookup_elem(&rl_buckets, key);
		if (!b)
			return true;
	}
	own = (b->last_ns ? rl_decayed(b->recent, b->last_ns, now) : 0) + RL_RECENT_ONE;
	total = own + rl_recent_elsewhere(key, cpu, now);
	/* this CPU's share in 2^16ths */
	share = (own << 16) / total;
	cap = rl_scale(pol->burst * RL_NANO, share);
	if (!b->last_ns) {
		b->nanotokens = cap;
	} else {
		elapsed = now - b->last_ns;
		/* bounded so that elapsed * rate fits 64 bits at the largest rates */
		if (elapsed > 10000000000ULL)
			elapsed = 10000000000ULL;
		b->nanotokens += rl_scale(elapsed * pol->rate_pps, share);
		if (b->nanotokens > cap)
			b->nanotokens = cap;
	}
	b->recent = own;
	b->last_ns = now;
	if (b->nanotokens >= RL_NANO) {
		b->nanotokens -= RL_NANO;
		return true;
	}
	if (now - b->last_event_ns >= RL_EVENT_INTERVAL_NS) {
		b->last_event_ns = now;
		*report = true;
	}
	return false;
}

static __always_inline void rl_report(struct xdp_md *ctx, const struct pkt *p, __u8 kind,
				      __u8 action, __u16 rule_id)
{
	if (emit_packet_event(ctx->ingress_ifindex, p, kind, action, rule_id))
		rl_count(RL_STAT_EVENTS_SENT);
	else
		rl_count(RL_STAT_EVENTS_DROPPED);
}

#define RL_GUARD_NONE -1
/* ACKs to a destination are checked this long after its last SYN cookie */
#define RL_SYN_FLOOD_MEMORY_NS (10ULL * 1000000000ULL)

/*
 * SYNs to one destination above the threshold are answered with a cookie (XDP_TX): the
 * listener never sees them. Below it they pass untouched. ACKs to a destination that needed
 * cookies recently are checked and counted; both kinds pass (the stack answers a stray ACK
 * with a reset), since telling an ACK of an established connection from a forged one needs
 * connection tracking.
 */
static __always_inline int rl_syn_guard(struct xdp_md *ctx, const struct pkt *p,
					const struct rl_guards *g)
{
	struct rl_key dst = { .policy = RL_KEY_SYN, .family = p->family };
	struct rl_policy budget = {};
	bool report = false;
	__u8 flags = p->l4x;
	__u64 now, *flooded;

	__builtin_memcpy(dst.addr, p->daddr, 16);
	if ((flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN) {
		rl_count(RL_STAT_SYN_RECEIVED);
		budget.rate_pps = g->syn_threshold_pps;
		budget.burst = g->syn_threshold_pps;
		if (rl_take(&dst, &budget, &report))
			return RL_GUARD_NONE;
		if ((p->family == FW_FAMILY_V4 ? syncookie_answer_v4(ctx, p) :
						 syncookie_answer_v6(ctx, p)) != 0)
			return RL_GUARD_NONE;
		now = bpf_ktime_get_ns();
		flooded = bpf_map_lookup_elem(&rl_syn_flooded, &dst);
		if (!flooded || now - *flooded > RL_SYN_FLOOD_MEMORY_NS / 100)
			bpf_map_update_elem(&rl_syn_flooded, &dst, &now, BPF_ANY);
		rl_count(RL_STAT_SYNCOOKIES_SENT);
		return XDP_TX;
	}
	if ((flags & (TCP_FLAG_SYN | TCP_FLAG_RST | TCP_FLAG_ACK)) == TCP_FLAG_ACK) {
		flooded = bpf_map_lookup_elem(&rl_syn_flooded, &dst);
		if (flooded && bpf_ktime_get_ns() - *flooded < RL_SYN_FLOOD_MEMORY_NS)
			rl_count(syncookie_check(ctx, p) == 0 ? RL_STAT_SYNCOOKIE_ACK_VALID :
								RL_STAT_SYNCOOKIE_ACK_INVALID);
	}
	return RL_GUARD_NONE;
}

/*
 * The DDoS guards: XDP_DROP, XDP_PASS, or RL_GUARD_NONE when no guard covers the packet.
 * Path MTU discovery (ICMP "fragmentation needed", ICMPv6 "packet too big") is never limited.
 */
static __always_inline int rl_guard(struct xdp_md *ctx, const struct pkt *p, __u32 gen)
{
	struct rl_key key = { .family = p->family };
	struct rl_policy budget = {};
	const struct rl_guards *g;
	bool report = false;
	__u8 kind;

	if (!(p->flags & PKT_F_L4))
		return RL_GUARD_NONE;
	__builtin_memcpy(key.addr, p->saddr, 16);
	if (p->proto == IPPROTO_TCP) {
		g = bpf_map_lookup_elem(&rl_guards, &gen);
		if (!g || !g->syn_threshold_pps)
			return RL_GUARD_NONE;
		return rl_syn_guard(ctx, p, g);
	}
	if ((p->proto == IPPROTO_ICMP && p->family == FW_FAMILY_V4) ||
	    (p->proto == NH_ICMPV6 && p->family == FW_FAMILY_V6)) {
		bool v4 = p->family == FW_FAMILY_V4;
		__u16 type = p->sport, code = p->dport;
		bool echo;

		g = bpf_map_lookup_elem(&rl_guards, &gen);
		if (!g || !g->icmp_rate_pps)
			return RL_GUARD_NONE;
		if ((v4 && type == 3 && code == 4) || (!v4 && type == 2)) {
			rl_count(RL_STAT_ICMP_PASSED);
			return XDP_PASS;
		}
		echo = v4 ? (type == 8 || type == 0) : (type == 128 || type == 129);
		/* 8 bytes of ICMP header before the echo data */
		if (echo && g->icmp_max_payload && p->l4_len > g->icmp_max_payload + 8) {
			rl_count(RL_STAT_ICMP_OVERSIZED);
			return XDP_DROP;
		}
		key.policy = RL_KEY_ICMP;
		budget.rate_pps = g->icmp_rate_pps;
		budget.burst = g->icmp_burst;
		kind = EVENT_DDOS_ICMP;
		if (rl_take(&key, &budget, &report)) {
			rl_count(RL_STAT_ICMP_PASSED);
			return XDP_PASS;
		}
		rl_count(RL_STAT_ICMP_DROPPED);
	} else if (p->proto == IPPROTO_UDP) {
		struct rl_amp_key ak = { .gen = gen, .port = p->sport };
		const struct rl_amp_port *amp = bpf_map_lookup_elem(&rl_amp_ports, &ak);

		if (!amp)
			return RL_GUARD_NONE;
		key.policy = RL_KEY_AMP_BASE + (amp->index & (RL_MAX_AMP_PORTS - 1));
		budget.rate_pps = amp->rate_pps;
		budget.burst = amp->burst;
		kind = EVENT_DDOS_AMP;
		if (rl_take(&key, &budget, &report)) {
			rl_count(RL_STAT_AMP_PASSED);
			return XDP_PASS;
		}
		rl_count(RL_STAT_AMP_DROPPED);
	} else {
		return RL_GUARD_NONE;
	}
	if (report)
		rl_report(ctx, p, kind, EVENT_ACTION_DROP,
			  EVENT_RULE(gen, key.policy & EVENT_RULE_RANK_MASK));
	return XDP_DROP;
}

static __always_inline int rl_decide(struct xdp_md *ctx, struct pkt *p)
{
	const struct rl_policy *pol = NULL;
	const struct rl_match *m;
	struct rl_key key = {};
	__u32 zero = 0, gen, slot;
	bool report = false;
	__u32 *genp;
	int i, guard;

	rl_count(RL_STAT_SEEN);
	if (p->parse_result != PARSE_OK || (p->stage_flags & PKT_STAGE_ALLOWLISTED)) {
		rl_count(RL_STAT_PASS_UNLIMITED);
		return XDP_PASS;
	}
	genp = bpf_map_lookup_elem(&rl_active_gen, &zero);
	if (!genp)
		return XDP_PASS;
	gen = *genp & 1;
	guard = rl_guard(ctx, p, gen);
	if (guard == XDP_DROP || guard == XDP_TX)
		return guard;
	m = rl_lookup(p, gen);
	if (!m) {
		rl_count(RL_STAT_PASS_NO_POLICY);
		return XDP_PASS;
	}
#pragma unroll
	for (i = 0; i < RL_POLICIES_PER_PREFIX; i++) {
		const struct rl_policy *cand;

		if (i >= m->count)
			break;
		slot = gen * RL_MAX_POLICIES + (m->policy[i] & (RL_MAX_POLICIES - 1));
		cand = bpf_map_lookup_elem(&rl_policies, &slot);
		if (cand && rl_applies(cand, p)) {
			pol = cand;
			key.policy = m->policy[i];
			break;
		}
	}
	if (!pol) {
		rl_count(RL_STAT_PASS_NO_POLICY);
		return XDP_PASS;
	}
	if (pol->key_mode == RL_KEY_SOURCE) {
		key.family = p->family;
		__builtin_memcpy(key.addr, p->saddr, 16);
	}
	if (rl_take(&key, pol, &report)) {
		rl_count(RL_STAT_PASS_IN_RATE);
		return XDP_PASS;
	}
	if (report)
		rl_report(ctx, p, EVENT_RL_OVER_RATE,
			  pol->action == RL_ACTION_DROP ? EVENT_ACTION_DROP : EVENT_ACTION_PASS,
			  EVENT_RULE(gen, key.policy));
	if (pol->action == RL_ACTION_PASS_LOG) {
		rl_count(RL_STAT_PASS_OVER_RATE);
		return XDP_PASS;
	}
	rl_count(RL_STAT_DROP_OVER_RATE);
	return XDP_DROP;
}

SEC("xdp")
int xdp_ratelimit(struct xdp_md *ctx)
{
	struct pkt *p;
	__u32 zero = 0;
	int verdict;

	p = bpf_map_lookup_elem(&xdp_scratch, &zero);
	if (!p)
		return XDP_PASS;
	verdict = rl_decide(ctx, p);
	if (verdict == XDP_DROP || verdict == XDP_TX)
		return verdict;
	return xdp_chain_next(ctx, XDP_STAGE_RATELIMIT);
}
