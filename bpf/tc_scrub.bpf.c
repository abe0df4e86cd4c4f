// SPDX-License-Identifier: GPL-2.0-only
/*
 * tc_scrub: the last TC stage, on both hooks. Normalises what passes: raises the IPv4 TTL /
 * IPv6 hop limit to a minimum, clamps the MSS option of SYN and SYN-ACK segments, clears the
 * IPv4 DF bit and randomises the IPv4 ID of unfragmented packets. Every rewrite goes through
 * bpf_skb_store_bytes with the checksum fixed incrementally (bpf_l3_csum_replace for the IPv4
 * header, bpf_l4_csum_replace for TCP); no packet pointer is held across a helper that may
 * move the data.
 */
#include "lib/common.bpf.h"
#include "lib/parse.bpf.h"
#include "lib/tc_chain.bpf.h"
#include "lib/tcpopt.bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define TCP_FLAG_SYN 0x02

/* IPv4 header offsets */
#define IP4_ID_OFF    4
#define IP4_FRAG_OFF  6
#define IP4_TTL_OFF   8
#define IP4_CSUM_OFF  10
#define IP4_DF        0x4000
#define IP6_HOPS_OFF  7
#define TCP_CSUM_OFF  16
#define TCP_FLAGS_OFF 13

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scrub_settings);
} scrub_settings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SCRUB_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} scrub_stats SEC(".maps");

/* BTF for userspace */
enum scrub_flags _scrub_flags_btf;
enum scrub_stat _scrub_stat_btf;

static __always_inline void scrub_count(__u32 stat)
{
	__u64 *c = bpf_map_lookup_elem(&scrub_stats, &stat);

	if (c)
		*c += 1;
}

/* Rewrites one 16-bit word of the IPv4 header and its checksum. */
static __always_inline void scrub_ip4_word(struct __sk_buff *skb, __u32 l3, __u32 off, __be16 old,
					   __be16 new)
{
	if (bpf_skb_store_bytes(skb, l3 + off, &new, sizeof(new), 0))
		return;
	bpf_l3_csum_replace(skb, l3 + IP4_CSUM_OFF, old, new, sizeof(new));
}

static __always_inline void scrub_ipv4(struct __sk_buff *skb, const struct scrub_settings *s,
				       __u32 l3, bool fragment)
{
	__be16 w[5];

	/* version/ihl/tos, tot_len, id, frag_off, ttl/protocol */
	if (bpf_skb_load_bytes(skb, l3, w, sizeof(w)))
		return;
	if ((s->flags & SCRUB_F_MIN_TTL) && ((__u8 *)w)[IP4_TTL_OFF] < s->min_ttl) {
		__be16 ttl = w[IP4_TTL_OFF / 2];

		((__u8 *)&ttl)[0] = s->min_ttl;
		scrub_ip4_word(skb, l3, IP4_TTL_OFF, w[IP4_TTL_OFF / 2], ttl);
		scrub_count(SCRUB_STAT_TTL_RAISED);
	}
	if ((s->flags & SCRUB_F_CLEAR_DF) && (w[IP4_FRAG_OFF / 2] & bpf_htons(IP4_DF))) {
		scrub_ip4_word(skb, l3, IP4_FRAG_OFF, w[IP4_FRAG_OFF / 2],
			       w[IP4_FRAG_OFF / 2] & ~bpf_htons(IP4_DF));
		scrub_count(SCRUB_STAT_DF_CLEARED);
	}
	/* fragments of one datagram must keep the ID they share */
	if ((s->flags & SCRUB_F_RANDOM_IP_ID) && !fragment) {
		__be16 id = bpf_get_prandom_u32();

		scrub_ip4_word(skb, l3, IP4_ID_OFF, w[IP4_ID_OFF / 2], id);
		scrub_count(SCRUB_STAT_IP_ID_RANDOMISED);
	}
}

static __always_inline void scrub_ipv6(struct __sk_buff *skb, const struct scrub_settings *s,
				       __u32 l3)
{
	__u8 hops, min = s->min_ttl;

	if (!(s->flags & SCRUB_F_MIN_TTL))
		return;
	if (bpf_skb_load_bytes(skb, l3 + IP6_HOPS_OFF, &hops, 1) || hops >= min)
		return;
	/* no checksum covers the hop limit */
	if (!bpf_skb_store_bytes(skb, l3 + IP6_HOPS_OFF, &min, 1, 0))
		scrub_count(SCRUB_STAT_TTL_RAISED);
}

/* Clamps the MSS option of a SYN (or SYN-ACK) to max_mss. */
static __always_inline void scrub_mss(struct __sk_buff *skb, const struct scrub_settings *s,
				      __u32 l4)
{
	struct tcp_opt_scan scan = {};
	__u64 at;
	__u32 value_off;
	__be16 old, new;
	__u16 mss;

	if (tcp_opt_find(skb, l4, &scan, TCPOPT_MSS, TCPOLEN_MSS) < 0)
		return;
	at = scan.found + 2;
	VERIFIER_MASK(at, 63);
	mss = (__u16)scan.opts[at] << 8;
	at = scan.found + 3;
	VERIFIER_MASK(at, 63);
	mss |= scan.opts[at];
	if (mss <= s->max_mss)
		return;
	value_off = sizeof(struct tcphdr) + scan.found + 2;
	new = bpf_htons(s->max_mss);
	if (bpf_skb_store_bytes(skb, l4 + value_off, &new, sizeof(new), 0))
		return;
	/*
	 * The checksum sums 16-bit words from the start of the segment: a value at an odd offset
	 * (after a single NOP) straddles two words and counts byte-swapped.
	 */
	if (value_off & 1) {
		old = mss;
		new = s->max_mss;
	} else {
		old = bpf_htons(mss);
	}
	bpf_l4_csum_replace(skb, l4 + TCP_CSUM_OFF, old, new, sizeof(new));
	scrub_count(SCRUB_STAT_MSS_CLAMPED);
}

static __always_inline int scrub_stage(struct __sk_buff *skb)
{
	struct tc_handover *h = tc_handover_get();
	struct scrub_settings s;
	const struct scrub_settings *sp;
	__u32 zero = 0, l3, l4;
	__u8 family, proto, flags, tcp_flags;
	bool ingress;

	if (!h)
		return TC_ACT_UNSPEC;
	ingress = h->ingress;
	sp = bpf_map_lookup_elem(&scrub_settings, &zero);
	if (!sp || !(sp->flags & SCRUB_F_ENABLED) || h->p.parse_result != PARSE_OK)
		return tc_chain_next(skb, ingress, TC_STAGE_SCRUB);
	s = *sp;
	scrub_count(SCRUB_STAT_SEEN);
	/* what the helpers below could make stale: copied out first */
	l3 = h->p.l3_off;
	l4 = h->p.l4_off;
	family = h->p.family;
	proto = h->p.proto;
	flags = h->p.flags;
	tcp_flags = h->p.l4x;

	if (family == FW_FAMILY_V4)
		scrub_ipv4(skb, &s, l3, flags & PKT_F_FRAGMENT);
	else
		scrub_ipv6(skb, &s, l3);
	if ((s.flags & SCRUB_F_MAX_MSS) && proto == IPPROTO_TCP && (flags & PKT_F_L4) &&
	    (tcp_flags & TCP_FLAG_SYN))
		scrub_mss(skb, &s, l4);
	return tc_chain_next(skb, ingress, TC_STAGE_SCRUB);
}

SEC("tc")
int tc_scrub(struct __sk_buff *skb)
{
	return scrub_stage(skb);
}
