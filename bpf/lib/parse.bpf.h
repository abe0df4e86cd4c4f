/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * BPF-only: the one packet parser. Contract: parse_packet() reads nothing it has not
 * bounds-checked against data_end, fills struct pkt, and answers PARSE_OK, PARSE_NON_IP
 * (no IPv4/IPv6 under at most two VLAN tags) or PARSE_MALFORMED (a header is truncated or
 * inconsistent, including an IP length that claims more than the frame holds). Fields parsed
 * before a malformation stay filled for events.
 */
#ifndef EBPFSENTINEL_PARSE_BPF_H
#define EBPFSENTINEL_PARSE_BPF_H

#include "common.bpf.h"

enum parse_result {
	PARSE_OK = 0,
	PARSE_NON_IP,
	PARSE_MALFORMED,
};

enum pkt_flags {
	PKT_F_VLAN = 1 << 0,
	/* ports / ICMP type and code / TCP flags are valid */
	PKT_F_L4 = 1 << 1,
	PKT_F_FRAGMENT = 1 << 2,
	/* sport/dport are TCP or UDP ports (not ICMP type and code) */
	PKT_F_PORTS = 1 << 3,
};

struct pkt {
	__u8 saddr[16]; /* IPv4 in the first 4 bytes */
	__u8 daddr[16];
	__u32 len;
	/* FW_DIM_ABSENT_16 when the packet has no such field */
	__u32 l4x;
	/* bytes from the transport header to the end of the IP payload */
	__u32 l4_len;
	/* offsets from the start of the frame, for stages that rewrite headers */
	__u16 l3_off;
	__u16 l4_off;
	__u16 sport; /* host order; ICMP: type */
	__u16 dport; /* host order; ICMP: code */
	__u16 vlan_id;
	__u8 family; /* enum fw_family */
	__u8 proto;
	__u8 flags;        /* enum pkt_flags */
	__u8 parse_result; /* enum parse_result */
	__u8 stage_flags;  /* enum pkt_stage_flags: what earlier stages decided */
	__u8 ct_class;     /* enum ct_class, CT_CLASS_NEW while conntrack is off */
};

enum pkt_stage_flags {
	/* the source is allowlisted: no later stage may drop it */
	PKT_STAGE_ALLOWLISTED = 1 << 0,
};

struct vlan_tag {
	__be16 tci;
	__be16 encap_proto;
};

struct ipv6_ext {
	__u8 nexthdr;
	__u8 hdrlen;
};

struct ipv6_frag {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off;
	__be32 identification;
};

#define IPV4_FRAG_OFFSET 0x1fff
#define IPV4_FRAG_MORE   0x2000
#define IPV6_FRAG_OFFSET 0xfff8
#define IPV6_FRAG_MORE   0x0001

/*
 * l4_len is what the IP header says the transport layer holds. Length checks against it are
 * done on scalars: a second pointer bound (l3 + tot) would let clang drop the data_end check
 * that the verifier needs.
 */
static __always_inline int parse_l4(void *l4, __u32 l4_len, void *data_end, struct pkt *p)
{
	p->l4_len = l4_len;
	if (p->proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > data_end || l4_len < sizeof(*th))
			return PARSE_MALFORMED;
		if (th->doff < 5 || th->doff * 4 > l4_len)
			return PARSE_MALFORMED;
		p->sport = bpf_ntohs(th->source);
		p->dport = bpf_ntohs(th->dest);
		p->l4x = ((__u8 *)th)[13];
		p->flags |= PKT_F_PORTS;
	} else if (p->proto == IPPROTO_UDP) {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > data_end || l4_len < sizeof(*uh))
			return PARSE_MALFORMED;
		p->sport = bpf_ntohs(uh->source);
		p->dport = bpf_ntohs(uh->dest);
		p->flags |= PKT_F_PORTS;
	} else if ((p->proto == IPPROTO_ICMP && p->family == FW_FAMILY_V4) ||
		   (p->proto == NH_ICMPV6 && p->family == FW_FAMILY_V6)) {
		__u8 *icmp = l4;

		/* type, code and checksum */
		if ((void *)(icmp + 4) > data_end || l4_len < 4)
			return PARSE_MALFORMED;
		p->sport = icmp[0];
		p->dport = icmp[1];
		p->l4x = (__u32)icmp[0] << 8 | icmp[1];
	} else {
		return PARSE_OK;
	}
	p->flags |= PKT_F_L4;
	return PARSE_OK;
}

static __always_inline int parse_ipv4(void *l3, void *data_end, struct pkt *p)
{
	struct iphdr *ip = l3;
	__u32 hlen, tot;
	__u16 frag;

	p->family = FW_FAMILY_V4;
	if ((void *)(ip + 1) > data_end)
		return PARSE_MALFORMED;
	if (ip->version != 4 || ip->ihl < 5)
		return PARSE_MALFORMED;
	__builtin_memcpy(p->saddr, &ip->saddr, 4);
	__builtin_memcpy(p->daddr, &ip->daddr, 4);
	p->proto = ip->protocol;
	hlen = ip->ihl * 4;
	tot = bpf_ntohs(ip->tot_len);
	if (tot < hlen || tot > p->len - p->l3_off)
		return PARSE_MALFORMED;
	frag = bpf_ntohs(ip->frag_off);
	if (frag & (IPV4_FRAG_OFFSET | IPV4_FRAG_MORE))
		p->flags |= PKT_F_FRAGMENT;
	/* a non-first fragment carries no L4 header: only address and protocol rules see it */
	if (frag & IPV4_FRAG_OFFSET)
		return PARSE_OK;
	p->l4_off = p->l3_off + hlen;
	return parse_l4(l3 + hlen, tot - hlen, data_end, p);
}

static __always_inline int parse_ipv6(void *l3, void *data_end, struct pkt *p)
{
	struct ipv6hdr *ip6 = l3;
	void *payload = ip6 + 1;
	__u32 plen, off = 0;
	__u8 nexthdr;
	int i;

	p->family = FW_FAMILY_V6;
	if ((void *)(ip6 + 1) > data_end)
		return PARSE_MALFORMED;
	if (ip6->version != 6)
		return PARSE_MALFORMED;
	__builtin_memcpy(p->saddr, &ip6->saddr, 16);
	__builtin_memcpy(p->daddr, &ip6->daddr, 16);
	plen = bpf_ntohs(ip6->payload_len);
	if (plen > p->len - p->l3_off - sizeof(*ip6))
		return PARSE_MALFORMED;
	nexthdr = ip6->nexthdr;

#pragma unroll
	for (i = 0; i < PARSE_MAX_IPV6_EXT; i++) {
		struct ipv6_ext *ext = payload + off;

		if (nexthdr == NH_HOPOPTS || nexthdr == NH_ROUTING || nexthdr == NH_DSTOPTS) {
			if ((void *)(ext + 1) > data_end)
				return PARSE_MALFORMED;
			nexthdr = ext->nexthdr;
			off += (ext->hdrlen + 1) * 8;
		} else if (nexthdr == IPPROTO_AH) {
			if ((void *)(ext + 1) > data_end)
				return PARSE_MALFORMED;
			nexthdr = ext->nexthdr;
			off += (ext->hdrlen + 2) * 4;
		} else if (nexthdr == NH_FRAGMENT) {
			struct ipv6_frag *fh = payload + off;
			__u16 frag;

			if ((void *)(fh + 1) > data_end)
				return PARSE_MALFORMED;
			nexthdr = fh->nexthdr;
			frag = bpf_ntohs(fh->frag_off);
			p->flags |= PKT_F_FRAGMENT;
			off += sizeof(*fh);
			if (frag & IPV6_FRAG_OFFSET) {
				p->proto = nexthdr;
				return off > plen ? PARSE_MALFORMED : PARSE_OK;
			}
		} else {
			break;
		}
		if (off > plen)
			return PARSE_MALFORMED;
	}
	if (nexthdr == NH_HOPOPTS || nexthdr == NH_ROUTING || nexthdr == NH_DSTOPTS ||
	    nexthdr == IPPROTO_AH || nexthdr == NH_FRAGMENT)
		return PARSE_MALFORMED;
	p->proto = nexthdr;
	p->l4_off = p->l3_off + sizeof(*ip6) + off;
	return parse_l4(payload + off, plen - off, data_end, p);
}

/*
 * frame_len is the whole frame; data_end may end earlier (a TC skb's linear part), and header
 * reads stop there, but IP lengths are checked against the frame.
 */
static __always_inline int parse_packet(void *data, void *data_end, __u32 frame_len, struct pkt *p)
{
	struct ethhdr *eth = data;
	void *cur;
	__u16 proto;
	int i;

	p->len = frame_len;
	p->l4x = FW_DIM_ABSENT_16;
	if ((void *)(eth + 1) > data_end)
		return PARSE_MALFORMED;
	proto = eth->h_proto;
	cur = eth + 1;

#pragma unroll
	for (i = 0; i < PARSE_MAX_VLAN_TAGS; i++) {
		struct vlan_tag *tag = cur;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if ((void *)(tag + 1) > data_end)
			return PARSE_MALFORMED;
		if (!(p->flags & PKT_F_VLAN)) {
			p->vlan_id = bpf_ntohs(tag->tci) & 0x0fff;
			p->flags |= PKT_F_VLAN;
		}
		proto = tag->encap_proto;
		cur = tag + 1;
	}
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD))
		return PARSE_MALFORMED;
	p->l3_off = cur - data;
	if (proto == bpf_htons(ETH_P_IP))
		return parse_ipv4(cur, data_end, p);
	if (proto == bpf_htons(ETH_P_IPV6))
		return parse_ipv6(cur, data_end, p);
	return PARSE_NON_IP;
}

#endif
