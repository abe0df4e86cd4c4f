/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * BPF-only: answering a SYN with a SYN cookie from XDP (SYN-ACK built in place, XDP_TX) and
 * checking the cookie of the returning ACK, with the kernel's own cookie helpers, as the
 * kernel's xdp_synproxy does. The cookie carries the MSS only (no timestamps option), so the
 * connection loses window scaling and SACK while the flood lasts, as with the kernel's own
 * fallback cookies. The local stack accepts the ACK when net.ipv4.tcp_syncookies=2.
 */
#ifndef EBPFSENTINEL_SYNCOOKIE_BPF_H
#define EBPFSENTINEL_SYNCOOKIE_BPF_H

#include "common.bpf.h"
#include "parse.bpf.h"

#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10
/* TCP header of the SYN-ACK: 20 bytes and the MSS option */
#define SYNACK_TCP_LEN 24
#define SYNACK_WINDOW  65535
#define SYNACK_TTL     64
/* L2 headers are at most Ethernet and two VLAN tags */
#define MAX_L2_LEN 22

/*
 * The cookie helpers read th_len bytes of TCP header, and the verifier wants that size
 * constant: one call per possible data offset.
 */
#define SYNCOOKIE_GEN(helper, ip, th, th_len, data_end, out)               \
	do {                                                               \
		switch (th_len) {                                          \
			SYNCOOKIE_CASE(helper, ip, th, 20, data_end, out); \
			SYNCOOKIE_CASE(helper, ip, th, 24, data_end, out); \
			SYNCOOKIE_CASE(helper, ip, th, 28, data_end, out); \
			SYNCOOKIE_CASE(helper, ip, th, 32, data_end, out); \
			SYNCOOKIE_CASE(helper, ip, th, 36, data_end, out); \
			SYNCOOKIE_CASE(helper, ip, th, 40, data_end, out); \
			SYNCOOKIE_CASE(helper, ip, th, 44, data_end, out); \
			SYNCOOKIE_CASE(helper, ip, th, 48, data_end, out); \
			SYNCOOKIE_CASE(helper, ip, th, 52, data_end, out); \
			SYNCOOKIE_CASE(helper, ip, th, 56, data_end, out); \
			SYNCOOKIE_CASE(helper, ip, th, 60, data_end, out); \
		default:                                                   \
			return -1;                                         \
		}                                                          \
	} while (0)

#define SYNCOOKIE_CASE(helper, ip, th, len, data_end, out) \
	case len:                                          \
		if ((void *)(th) + (len) > (data_end))     \
			return -1;                         \
		(out) = helper(ip, th, len);               \
		break

static __always_inline __u16 csum_fold(__s64 sum)
{
	__u64 s = (__u64)sum & 0xffffffffULL;

	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return ~s & 0xffff;
}

struct pseudo_v4 {
	__be32 saddr;
	__be32 daddr;
	__u8 zero;
	__u8 proto;
	__be16 len;
};

struct pseudo_v6 {
	struct in6_addr saddr;
	struct in6_addr daddr;
	__be32 len;
	__u8 zero[3];
	__u8 nexthdr;
};

struct synack_fields {
	__u8 smac[6];
	__u8 dmac[6];
	__be16 sport;
	__be16 dport;
	__be32 seq;
};

static __always_inline void synack_tcp(struct tcphdr *th, const struct synack_fields *f,
				       __u32 cookie, __u16 mss)
{
	__u8 *raw = (__u8 *)th;

	th->source = f->dport;
	th->dest = f->sport;
	th->seq = bpf_htonl(cookie);
	th->ack_seq = bpf_htonl(bpf_ntohl(f->seq) + 1);
	raw[12] = (SYNACK_TCP_LEN / 4) << 4;
	raw[13] = TCP_FLAG_SYN | TCP_FLAG_ACK;
	th->window = bpf_htons(SYNACK_WINDOW);
	th->check = 0;
	th->urg_ptr = 0;
	raw[20] = 2; /* MSS */
	raw[21] = 4;
	raw[22] = mss >> 8;
	raw[23] = mss & 0xff;
}

static __always_inline void synack_eth(void *data, const struct synack_fields *f)
{
	struct ethhdr *eth = data;

	__builtin_memcpy(eth->h_dest, f->smac, 6);
	__builtin_memcpy(eth->h_source, f->dmac, 6);
}

/*
 * Turns the IPv4 SYN in ctx into the SYN-ACK answering it. Returns 0, or -1 when the packet
 * cannot be answered (IP options, a TCP header out of the packet): let it through then.
 */
static __always_inline int syncookie_answer_v4(struct xdp_md *ctx, const struct pkt *p)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	__u32 l3 = p->l3_off, th_len, cookie;
	struct synack_fields f;
	struct pseudo_v4 ph;
	struct tcphdr *th;
	struct iphdr *ip;
	__be32 saddr, daddr;
	__s64 gen;
	__u16 mss;

	if (l3 > MAX_L2_LEN || data + sizeof(struct ethhdr) > data_end)
		return -1;
	ip = data + l3;
	if ((void *)(ip + 1) > data_end || ip->ihl != 5)
		return -1;
	th = (void *)(ip + 1);
	if ((void *)(th + 1) > data_end)
		return -1;
	th_len = th->doff * 4;
	SYNCOOKIE_GEN(bpf_tcp_raw_gen_syncookie_ipv4, ip, th, th_len, data_end, gen);
	if (gen < 0)
		return -1;
	cookie = (__u32)gen;
	mss = gen >> 32;
	__builtin_memcpy(f.smac, ((struct ethhdr *)data)->h_source, 6);
	__builtin_memcpy(f.dmac, ((struct ethhdr *)data)->h_dest, 6);
	f.sport = th->source;
	f.dport = th->dest;
	f.seq = th->seq;
	saddr = ip->saddr;
	daddr = ip->daddr;

	if (bpf_xdp_adjust_tail(ctx,
				(int)(l3 + sizeof(*ip) + SYNACK_TCP_LEN) - (int)(data_end - data)))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + sizeof(struct ethhdr) > data_end)
		return -1;
	synack_eth(data, &f);
	ip = data + l3;
	if ((void *)(ip + 1) > data_end)
		return -1;
	th = (void *)(ip + 1);
	if ((void *)th + SYNACK_TCP_LEN > data_end)
		return -1;

	ip->version = 4;
	ip->ihl = 5;
	ip->tos = 0;
	ip->tot_len = bpf_htons(sizeof(*ip) + SYNACK_TCP_LEN);
	ip->id = 0;
	ip->frag_off = bpf_htons(0x4000); /* DF */
	ip->ttl = SYNACK_TTL;
	ip->protocol = IPPROTO_TCP;
	ip->check = 0;
	ip->saddr = daddr;
	ip->daddr = saddr;
	ip->check = csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)ip, sizeof(*ip), 0));

	synack_tcp(th, &f, cookie, mss);
	ph.saddr = daddr;
	ph.daddr = saddr;
	ph.zero = 0;
	ph.proto = IPPROTO_TCP;
	ph.len = bpf_htons(SYNACK_TCP_LEN);
	th->check = csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)th, SYNACK_TCP_LEN,
					    bpf_csum_diff(NULL, 0, (__be32 *)&ph, sizeof(ph), 0)));
	return 0;
}

/* The same for IPv6 (no extension headers before TCP). */
static __always_inline int syncookie_answer_v6(struct xdp_md *ctx, const struct pkt *p)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	__u32 l3 = p->l3_off, th_len, cookie;
	struct in6_addr saddr, daddr;
	struct synack_fields f;
	struct pseudo_v6 ph = {};
	struct ipv6hdr *ip6;
	struct tcphdr *th;
	__s64 gen;
	__u16 mss;

	if (l3 > MAX_L2_LEN || p->l4_off != l3 + sizeof(*ip6) ||
	    data + sizeof(struct ethhdr) > data_end)
		return -1;
	ip6 = data + l3;
	if ((void *)(ip6 + 1) > data_end)
		return -1;
	th = (void *)(ip6 + 1);
	if ((void *)(th + 1) > data_end)
		return -1;
	th_len = th->doff * 4;
	SYNCOOKIE_GEN(bpf_tcp_raw_gen_syncookie_ipv6, ip6, th, th_len, data_end, gen);
	if (gen < 0)
		return -1;
	cookie = (__u32)gen;
	mss = gen >> 32;
	__builtin_memcpy(f.smac, ((struct ethhdr *)data)->h_source, 6);
	__builtin_memcpy(f.dmac, ((struct ethhdr *)data)->h_dest, 6);
	f.sport = th->source;
	f.dport = th->dest;
	f.seq = th->seq;
	saddr = ip6->saddr;
	daddr = ip6->daddr;

	if (bpf_xdp_adjust_tail(ctx,
				(int)(l3 + sizeof(*ip6) + SYNACK_TCP_LEN) - (int)(data_end - data)))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + sizeof(struct ethhdr) > data_end)
		return -1;
	synack_eth(data, &f);
	ip6 = data + l3;
	if ((void *)(ip6 + 1) > data_end)
		return -1;
	th = (void *)(ip6 + 1);
	if ((void *)th + SYNACK_TCP_LEN > data_end)
		return -1;

	ip6->payload_len = bpf_htons(SYNACK_TCP_LEN);
	ip6->nexthdr = IPPROTO_TCP;
	ip6->hop_limit = SYNACK_TTL;
	ip6->saddr = daddr;
	ip6->daddr = saddr;

	synack_tcp(th, &f, cookie, mss);
	ph.saddr = daddr;
	ph.daddr = saddr;
	ph.len = bpf_htonl(SYNACK_TCP_LEN);
	ph.nexthdr = IPPROTO_TCP;
	th->check = csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)th, SYNACK_TCP_LEN,
					    bpf_csum_diff(NULL, 0, (__be32 *)&ph, sizeof(ph), 0)));
	return 0;
}

/* 0 when the ACK in ctx carries a valid cookie, -1 otherwise. */
static __always_inline int syncookie_check(struct xdp_md *ctx, const struct pkt *p)
{
	void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
	__u32 l3 = p->l3_off;

	if (l3 > MAX_L2_LEN)
		return -1;
	if (p->family == FW_FAMILY_V4) {
		struct iphdr *ip = data + l3;
		struct tcphdr *th;

		if ((void *)(ip + 1) > data_end || ip->ihl != 5)
			return -1;
		th = (void *)(ip + 1);
		if ((void *)(th + 1) > data_end)
			return -1;
		return bpf_tcp_raw_check_syncookie_ipv4(ip, th) ? -1 : 0;
	}
	struct ipv6hdr *ip6 = data + l3;
	struct tcphdr *th;

	if (p->l4_off != l3 + sizeof(*ip6) || (void *)(ip6 + 1) > data_end)
		return -1;
	th = (void *)(ip6 + 1);
	if ((void *)(th + 1) > data_end)
		return -1;
	return bpf_tcp_raw_check_syncookie_ipv6(ip6, th) ? -1 : 0;
}

#endif
