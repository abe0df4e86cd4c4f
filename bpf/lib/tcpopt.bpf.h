/* SPDX-License-Identifier: GPL-2.0-only */
/* BPF-only: finding one option in a TC packet's TCP header. */
#ifndef EBPFSENTINEL_TCPOPT_BPF_H
#define EBPFSENTINEL_TCPOPT_BPF_H

#include "common.bpf.h"

#define TCPOPT_EOL     0
#define TCPOPT_NOP     1
#define TCPOPT_MSS     2
#define TCPOPT_WSCALE  3
#define TCPOLEN_MSS    4
#define TCPOLEN_WSCALE 3

struct tcp_opt_scan {
	/* 40 option bytes at most; the 64-byte buffer lets indexes be masked */
	__u8 opts[64];
	__u32 len;
	__u32 off;
	__u8 kind;
	__u8 optlen;
	/* offset of the option in opts, or -1 */
	__s16 found;
};

/*
 * One option per call, through bpf_loop: the callback is verified once, where an unrolled or
 * bounded loop over 40 bytes multiplies the verifier's states past its limit.
 */
static long tcp_opt_step(__u64 index, void *ctx)
{
	struct tcp_opt_scan *scan = ctx;
	__u64 at = scan->off, next = scan->off + 1;
	__u8 kind, optlen;

	if (scan->off + 1 >= scan->len)
		return 1;
	VERIFIER_MASK(at, 63);
	VERIFIER_MASK(next, 63);
	kind = scan->opts[at];
	if (kind == TCPOPT_EOL)
		return 1;
	if (kind == TCPOPT_NOP) {
		scan->off++;
		return 0;
	}
	optlen = scan->opts[next];
	if (kind == scan->kind && optlen == scan->optlen && scan->off + optlen <= scan->len) {
		scan->found = scan->off;
		return 1;
	}
	if (optlen < 2)
		return 1;
	scan->off += optlen;
	return 0;
}

/*
 * Loads the options of the TCP header at l4 into scan and looks for option `kind` of length
 * `optlen`: its offset in scan->opts, or -1 (absent, malformed, or no options).
 */
static __always_inline int tcp_opt_find(struct __sk_buff *skb, __u32 l4, struct tcp_opt_scan *scan,
					__u8 kind, __u8 optlen)
{
	struct tcphdr th;
	__u32 len;

	scan->found = -1;
	if (bpf_skb_load_bytes(skb, l4, &th, sizeof(th)))
		return -1;
	len = th.doff * 4;
	if (len <= sizeof(th))
		return -1;
	len -= sizeof(th);
	if (len > 40)
		return -1;
	if (bpf_skb_load_bytes(skb, l4 + sizeof(th), scan->opts, len))
		return -1;
	scan->len = len;
	scan->off = 0;
	scan->kind = kind;
	scan->optlen = optlen;
	bpf_loop(40, tcp_opt_step, scan, 0);
	return scan->found;
}

#endif
