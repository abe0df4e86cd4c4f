/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * BPF-only: the TC pipeline. One entry program per direction parses the packet once, leaves
 * it in tc_scratch and tail-calls the first enabled stage of that direction's chain; each
 * stage hands a passed packet to the next enabled one.
 *
 * Verdicts: a stage drops with TC_ACT_SHOT (TCX_DROP); a packet every stage passed leaves
 * with TC_ACT_UNSPEC, which is TCX_NEXT under TCX and "continue with the next filter" under
 * clsact, so TC programs of other tools on the same hook still see it. TC_ACT_OK would end
 * the hook's processing there.
 */
#ifndef EBPFSENTINEL_TC_CHAIN_BPF_H
#define EBPFSENTINEL_TC_CHAIN_BPF_H

#include "common.bpf.h"
#include "parse.bpf.h"

#define TC_ACT_UNSPEC (-1)
#define TC_ACT_SHOT   2

/* bytes the entry program makes linear before parsing: headers and an ICMP error's quote */
#define TC_PULL_BYTES 256

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, TC_STAGE_COUNT);
	__type(key, __u32);
	__type(value, __u32);
} tc_chain_ingress SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, TC_STAGE_COUNT);
	__type(key, __u32);
	__type(value, __u32);
} tc_chain_egress SEC(".maps");

/* the packet as the entry program parsed it, and which hook it is on */
struct tc_handover {
	struct pkt p;
	__u32 ingress;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tc_handover);
} tc_scratch SEC(".maps");

static __always_inline struct tc_handover *tc_handover_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&tc_scratch, &zero);
}

/*
 * Tail-calls the first filled slot after `after` (-1: from the start) of the packet's
 * direction; returns TC_ACT_UNSPEC when none is left. No loop: clang cannot unroll one
 * around a tail call.
 */
static __always_inline int tc_chain_next(struct __sk_buff *skb, bool ingress, int after)
{
	void *chain = ingress ? (void *)&tc_chain_ingress : (void *)&tc_chain_egress;

	_Static_assert(TC_STAGE_COUNT == 5, "one tail call per slot");
	if (after < TC_STAGE_CONNTRACK)
		bpf_tail_call(skb, chain, TC_STAGE_CONNTRACK);
	if (after < TC_STAGE_IDS)
		bpf_tail_call(skb, chain, TC_STAGE_IDS);
	if (after < TC_STAGE_THREATINTEL)
		bpf_tail_call(skb, chain, TC_STAGE_THREATINTEL);
	if (after < TC_STAGE_DNS)
		bpf_tail_call(skb, chain, TC_STAGE_DNS);
	if (after < TC_STAGE_SCRUB)
		bpf_tail_call(skb, chain, TC_STAGE_SCRUB);
	return TC_ACT_UNSPEC;
}

/*
 * Parses the packet into tc_scratch and starts the chain. A packet the parser refuses still
 * runs the chain (stages check parse_result): the firewall's malformed policy is XDP's.
 */
static __always_inline int tc_entry(struct __sk_buff *skb, bool ingress)
{
	struct tc_handover *h = tc_handover_get();
	void *data, *data_end;
	__u32 want;

	if (!h)
		return TC_ACT_UNSPEC;
	want = skb->len < TC_PULL_BYTES ? skb->len : TC_PULL_BYTES;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	if (data_end - data < want)
		bpf_skb_pull_data(skb, want);
	/*
	 * Pulling invalidates every packet pointer. The barrier keeps clang from reusing a
	 * skb + offset pointer it computed before, which the verifier refuses as a modified ctx.
	 */
	asm volatile("" : "+r"(skb));
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	__builtin_memset(&h->p, 0, sizeof(h->p));
	h->p.parse_result = parse_packet(data, data_end, skb->len, &h->p);
	h->ingress = ingress;
	return tc_chain_next(skb, ingress, -1);
}

#endif
