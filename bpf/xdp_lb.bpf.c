// SPDX-License-Identifier: GPL-2.0-only
/*
 * xdp_lb: L4 load balancing of the packets the earlier stages passed. A packet to a service
 * (VIP, port, protocol) gets a backend from the service's Maglev table, indexed by a hash of
 * the flow, so every packet of a flow reaches the same backend without per-flow state; its
 * destination is rewritten to the backend (checksums updated incrementally) and it leaves
 * through the interface the FIB names, with XDP_TX or a redirect. A reply from a backend
 * (source = a backend's address and port) gets the service's VIP and port back as its source
 * on the way to the client: the stage runs on the backend-facing interfaces too. Replies
 * addressed to this host itself (the daemon's health checks) are left alone.
 */
#include "lib/common.bpf.h"
#include "lib/parse.bpf.h"
#include "lib/chain.bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define AF_INET  2
#define AF_INET6 10

/* (VIP, port, protocol) -> the service's slot and table size */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LB_MAX_SERVICES);
	__type(key, struct lb_service_key);
	__type(value, struct lb_service);
} lb_services SEC(".maps");

/* service slot * LB_MAX_BACKENDS_PER_SERVICE + backend slot -> the backend */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LB_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct lb_backend);
} lb_backends SEC(".maps");

/* service slot * LB_RING_STRIDE + Maglev slot -> backend key (LB_NO_BACKEND: none up) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_MAX_SERVICES *LB_RING_STRIDE);
	__type(key, __u32);
	__type(value, __u32);
} lb_ring SEC(".maps");

/* (backend address, port, protocol) -> the key of its service */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LB_MAX_BACKENDS);
	__type(key, struct lb_reverse_key);
	__type(value, struct lb_service_key);
} lb_reverse SEC(".maps");

/* enum lb_stat -> packets (per CPU) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LB_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} lb_stats SEC(".maps");

/* service slot -> its counters (per CPU) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LB_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct lb_service_stats);
} lb_service_stats SEC(".maps");

/*
 * Mirroring: egress ifindex -> its slot; lb_mirror_<slot> holds that egress interface and the
 * mirror port, and a broadcast redirect into it sends the forwarded packet to both.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LB_MIRROR_EGRESS);
	__type(key, __u32);
	__type(value, __u32);
} lb_mirror_slots SEC(".maps");

/* service slot -> non-zero when mirroring covers the service (`mirror.match.services`) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_MAX_SERVICES);
	__type(key, __u32);
	__type(value, __u32);
} lb_mirror_match SEC(".maps");

#define LB_MIRROR_MAP(n)                           \
	struct {                                   \
		__uint(type, BPF_MAP_TYPE_DEVMAP); \
		__uint(max_entries, 2);            \
		__type(key, __u32);                \
		__type(value, __u32);              \
	} lb_mirror_##n SEC(".maps")

LB_MIRROR_MAP(0);
LB_MIRROR_MAP(1);
LB_MIRROR_MAP(2);
LB_MIRROR_MAP(3);
LB_MIRROR_MAP(4);
LB_MIRROR_MAP(5);
LB_MIRROR_MAP(6);
LB_MIRROR_MAP(7);

/*
 * CPU steering: packets this stage leaves to the stack go to a CPU of the steering set
 * chosen by flow hash, so one flow always lands on one CPU (no reordering).
 */
struct {
	__uint(type, BPF_MAP_TYPE_CPUMAP);
	__uint(max_entries, LB_MAX_CPUS);
	__type(key, __u32);
	__type(value, struct bpf_cpumap_val);
} lb_cpus SEC(".maps");

/* index in the steering set -> CPU id */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_MAX_CPUS);
	__type(key, __u32);
	__type(value, __u32);
} lb_cpu_set SEC(".maps");

/* [0]: CPUs in the steering set; 0 leaves packets on the CPU that received them */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} lb_cpu_count SEC(".maps");

/* packets that reached the stack through the steering, on the CPU they landed on */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lb_cpu_landed SEC(".maps");

enum lb_limits _lb_limits_btf;
enum lb_stat _lb_stat_btf;

static __always_inline void lb_count(__u32 stat)
{
	__u64 *v = bpf_map_lookup_elem(&lb_stats, &stat);

	if (v)
		*v += 1;
}

static __always_inline __u32 lb_mix(__u32 h, __u32 v)
{
	v *= 0xcc9e2d51;
	v = (v << 15) | (v >> 17);
	v *= 0x1b873593;
	h ^= v;
	h = (h << 13) | (h >> 19);
	return h * 5 + 0xe6546b64;
}

/* murmur3 over the client's address, both ports (unless a fragment's) and the protocol */
static __always_inline __u32 lb_flow_hash(const struct pkt *p)
{
	__u32 ports = (p->flags & PKT_F_FRAGMENT) ? 0 : (__u32)p->sport << 16 | p->dport;
	const __u32 *s = (const __u32 *)p->saddr;
	__u32 h = p->proto;

	h = lb_mix(h, s[0]);
	if (p->family == FW_FAMILY_V6) {
		h = lb_mix(h, s[1]);
		h = lb_mix(h, s[2]);
		h = lb_mix(h, s[3]);
	}
	h = lb_mix(h, ports);
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

/* adds the one's-complement difference of replacing old by new (16-bit words) */
static __always_inline __u32 lb_csum_diff(const __u16 *old, const __u16 *new, int words, __u32 acc)
{
#pragma unroll
	for (int i = 0; i < words; i++) {
		acc += (__u16)~old[i];
		acc += new[i];
	}
	return acc;
}

/* RFC 1624: the checksum after the changes summed in diff */
static __always_inline __u16 lb_csum_apply(__u16 check, __u32 diff)
{
	__u32 s = (__u16)~check + diff;

	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return ~s;
}

/*
 * Rewrites the destination (dst) or source address and port of the parsed packet, with the
 * IPv4 header and TCP/UDP checksums updated for the change; false if the headers are not
 * where the parse left them.
 */
static __always_inline bool lb_rewrite(struct xdp_md *ctx, const struct pkt *p, bool dst,
				       const __u8 *addr, __be16 port)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 l3_off = p->l3_off, l4_off = p->l4_off;
	__u16 old_addr[8], new_addr[8];
	__u32 diff = 0;
	__be16 *l4_port;
	__u16 *l4_check;
	__u8 *field;
	int words;

	VERIFIER_MASK(l3_off, 0x3f);
	VERIFIER_MASK(l4_off, 0x3ff);
	__builtin_memcpy(new_addr, addr, 16);
	if (p->family == FW_FAMILY_V4) {
		struct iphdr *ip = data + l3_off;

		if ((void *)(ip + 1) > data_end)
			return false;
		field = dst ? (__u8 *)&ip->daddr : (__u8 *)&ip->saddr;
		__builtin_memcpy(old_addr, field, 4);
		ip->check = lb_csum_apply(ip->check, lb_csum_diff(old_addr, new_addr, 2, 0));
		__builtin_memcpy(field, new_addr, 4);
		words = 2;
	} else {
		struct ipv6hdr *ip6 = data + l3_off;

		if ((void *)(ip6 + 1) > data_end)
			return false;
		field = dst ? (__u8 *)&ip6->daddr : (__u8 *)&ip6->saddr;
		__builtin_memcpy(old_addr, field, 16);
		__builtin_memcpy(field, new_addr, 16);
		words = 8;
	}
	if (p->proto == IPPROTO_TCP) {
		struct tcphdr *th = data + l4_off;

		if ((void *)(th + 1) > data_end)
			return false;
		l4_port = dst ? &th->dest : &th->source;
		l4_check = &th->check;
	} else {
		struct udphdr *uh = data + l4_off;

		if ((void *)(uh + 1) > data_end)
			return false;
		l4_port = dst ? &uh->dest : &uh->source;
		l4_check = &uh->check;
		/* an IPv4 UDP datagram without a checksum keeps none */
		if (p->family == FW_FAMILY_V4 && *l4_check == 0) {
			*l4_port = port;
			return true;
		}
	}
	if (words == 2)
		diff = lb_csum_diff(old_addr, new_addr, 2, 0);
	else
		diff = lb_csum_diff(old_addr, new_addr, 8, 0);
	diff = lb_csum_diff(l4_port, &port, 1, diff);
	*l4_port = port;
	*l4_check = lb_csum_apply(*l4_check, diff);
	if (p->proto == IPPROTO_UDP && *l4_check == 0)
		*l4_check = 0xffff;
	return true;
}

static __always_inline void lb_fib_params(struct xdp_md *ctx, const struct pkt *p,
					  struct bpf_fib_lookup *fib)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 l3_off = p->l3_off;

	VERIFIER_MASK(l3_off, 0x3f);
	fib->ifindex = ctx->ingress_ifindex;
	fib->l4_protocol = p->proto;
	if (p->family == FW_FAMILY_V4) {
		struct iphdr *ip = data + l3_off;

		fib->family = AF_INET;
		if ((void *)(ip + 1) > data_end)
			return;
		fib->tos = ip->tos;
		fib->tot_len = bpf_ntohs(ip->tot_len);
		fib->ipv4_src = ip->saddr;
		fib->ipv4_dst = ip->daddr;
	} else {
		struct ipv6hdr *ip6 = data + l3_off;

		fib->family = AF_INET6;
		if ((void *)(ip6 + 1) > data_end)
			return;
		fib->tot_len = bpf_ntohs(ip6->payload_len) + sizeof(*ip6);
		__builtin_memcpy(fib->ipv6_src, &ip6->saddr, 16);
		__builtin_memcpy(fib->ipv6_dst, &ip6->daddr, 16);
	}
}

/* A packet for the stack: to a CPU of the steering set when there is one. */
static __always_inline int lb_pass(const struct pkt *p)
{
	__u32 zero = 0, idx, *n, *cpu;

	n = bpf_map_lookup_elem(&lb_cpu_count, &zero);
	if (!n || *n == 0 || p->parse_result != PARSE_OK)
		return XDP_PASS;
	idx = lb_flow_hash(p) % *n;
	cpu = bpf_map_lookup_elem(&lb_cpu_set, &idx);
	if (!cpu)
		return XDP_PASS;
	lb_count(LB_STAT_STEERED);
	/* the low bits of the flags: what happens when the CPU has no queue */
	return bpf_redirect_map(&lb_cpus, *cpu, XDP_PASS);
}

#define LB_MIRROR_CASE(n)                   \
	case n:                             \
		lb_count(LB_STAT_MIRRORED); \
		return bpf_redirect_map(&lb_mirror_##n, 0, BPF_F_BROADCAST)

/*
 * The egress interface and the mirror port both get the packet when mirroring covers that
 * interface; -1 otherwise. Broadcast without BPF_F_EXCLUDE_INGRESS, so that XDP_TX's case
 * (egress = ingress) works alike.
 */
static __always_inline long lb_mirror(__u32 ifindex, __u32 service)
{
	__u32 *slot, *match = bpf_map_lookup_elem(&lb_mirror_match, &service);

	if (!match || !*match)
		return -1;
	slot = bpf_map_lookup_elem(&lb_mirror_slots, &ifindex);
	if (!slot)
		return -1;
	switch (*slot) {
		LB_MIRROR_CASE(0);
		LB_MIRROR_CASE(1);
		LB_MIRROR_CASE(2);
		LB_MIRROR_CASE(3);
		LB_MIRROR_CASE(4);
		LB_MIRROR_CASE(5);
		LB_MIRROR_CASE(6);
		LB_MIRROR_CASE(7);
	}
	return -1;
}

/*
 * Sends a rewritten packet where the FIB says, as the kernel's forwarding would (TTL or hop
 * limit decremented, MACs of the next hop). Without a resolved neighbour (or with a tagged
 * frame, whose tag the egress interface may not want) the stack forwards it instead, and
 * resolves the neighbour for the packets that follow.
 */
static __always_inline int lb_send(struct xdp_md *ctx, const struct pkt *p,
				   struct bpf_fib_lookup *fib, long rc, __u32 service)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u32 l3_off = p->l3_off;
	long mirror;

	if (rc != BPF_FIB_LKUP_RET_SUCCESS || (p->flags & PKT_F_VLAN)) {
		lb_count(LB_STAT_FORWARDED_STACK);
		return lb_pass(p);
	}
	VERIFIER_MASK(l3_off, 0x3f);
	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	if (p->family == FW_FAMILY_V4) {
		struct iphdr *ip = data + l3_off;
		__u16 old, new;

		if ((void *)(ip + 1) > data_end || ip->ttl <= 1)
			return XDP_PASS;
		old = *(__u16 *)&ip->ttl;
		ip->ttl--;
		new = *(__u16 *)&ip->ttl;
		ip->check = lb_csum_apply(ip->check, lb_csum_diff(&old, &new, 1, 0));
	} else {
		struct ipv6hdr *ip6 = data + l3_off;

		if ((void *)(ip6 + 1) > data_end || ip6->hop_limit <= 1)
			return XDP_PASS;
		ip6->hop_limit--;
	}
	__builtin_memcpy(eth->h_dest, fib->dmac, 6);
	__builtin_memcpy(eth->h_source, fib->smac, 6);
	lb_count(LB_STAT_FORWARDED);
	mirror = lb_mirror(fib->ifindex, service);
	if (mirror >= 0)
		return mirror;
	if (fib->ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return bpf_redirect(fib->ifindex, 0);
}

static __always_inline int lb_forward(struct xdp_md *ctx, const struct pkt *p,
				      const struct lb_service *svc)
{
	struct lb_service_stats *st;
	struct bpf_fib_lookup fib = {};
	const struct lb_backend *be;
	__u32 slot, key, idx = svc->index;
	__u32 *id;
	long rc;

	st = bpf_map_lookup_elem(&lb_service_stats, &idx);
	if (svc->table_size == 0 || svc->table_size > LB_RING_STRIDE)
		goto no_backend;
	slot = lb_flow_hash(p) % svc->table_size;
	key = idx * LB_RING_STRIDE + slot;
	id = bpf_map_lookup_elem(&lb_ring, &key);
	if (!id || *id == LB_NO_BACKEND)
		goto no_backend;
	be = bpf_map_lookup_elem(&lb_backends, id);
	if (!be || !be->up || be->family != p->family)
		goto no_backend;
	if (!lb_rewrite(ctx, p, true, be->addr, be->port)) {
		lb_count(LB_STAT_UNSUPPORTED);
		return XDP_PASS;
	}
	if (st) {
		st->packets++;
		st->bytes += p->len;
	}
	lb_fib_params(ctx, p, &fib);
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	return lb_send(ctx, p, &fib, rc, idx);

no_backend:
	lb_count(LB_STAT_NO_BACKEND);
	if (st)
		st->no_backend++;
	/* the VIP belongs to no host: the stack could only route it somewhere wrong */
	return XDP_DROP;
}

static __always_inline int lb_reply(struct xdp_md *ctx, const struct pkt *p,
				    const struct lb_service_key *vip)
{
	struct bpf_fib_lookup fib = {};
	const struct lb_service *svc;
	long rc;

	lb_fib_params(ctx, p, &fib);
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH) {
		lb_count(LB_STAT_REPLY_LOCAL);
		return lb_pass(p);
	}
	if (!lb_rewrite(ctx, p, false, vip->vip, vip->port)) {
		lb_count(LB_STAT_UNSUPPORTED);
		return XDP_PASS;
	}
	lb_count(LB_STAT_REPLY);
	/* the service's slot, for the mirror's match; a service being removed matches nothing */
	svc = bpf_map_lookup_elem(&lb_services, vip);
	return lb_send(ctx, p, &fib, rc, svc ? svc->index : LB_MAX_SERVICES);
}

static __always_inline int lb_decide(struct xdp_md *ctx, const struct pkt *p)
{
	struct lb_service_key sk = {};
	struct lb_reverse_key rk = {};
	const struct lb_service_key *vip;
	const struct lb_service *svc;

	lb_count(LB_STAT_SEEN);
	if (p->parse_result != PARSE_OK || (p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP)) {
		lb_count(LB_STAT_MISS);
		return -1;
	}
	__builtin_memcpy(sk.vip, p->daddr, 16);
	sk.port = bpf_htons(p->dport);
	sk.proto = p->proto;
	sk.family = p->family;
	/* a non-first fragment has no ports: its key cannot name the service */
	svc = (p->flags & PKT_F_PORTS) ? bpf_map_lookup_elem(&lb_services, &sk) : NULL;
	if (svc) {
		if (p->flags & PKT_F_FRAGMENT) {
			lb_count(LB_STAT_UNSUPPORTED);
			return -1;
		}
		return lb_forward(ctx, p, svc);
	}
	if ((p->flags & PKT_F_PORTS) && !(p->flags & PKT_F_FRAGMENT)) {
		__builtin_memcpy(rk.addr, p->saddr, 16);
		rk.port = bpf_htons(p->sport);
		rk.proto = p->proto;
		rk.family = p->family;
		vip = bpf_map_lookup_elem(&lb_reverse, &rk);
		if (vip)
			return lb_reply(ctx, p, vip);
	}
	lb_count(LB_STAT_MISS);
	return -1;
}

SEC("xdp")
int xdp_lb(struct xdp_md *ctx)
{
	struct pkt *p;
	__u32 zero = 0;
	int verdict;

	p = bpf_map_lookup_elem(&xdp_scratch, &zero);
	if (!p)
		return XDP_PASS;
	verdict = lb_decide(ctx, p);
	if (verdict >= 0)
		return verdict;
	verdict = xdp_chain_next(ctx, XDP_STAGE_LB);
	return verdict == XDP_PASS ? lb_pass(p) : verdict;
}

/* Runs on the CPU a steered packet landed on, before the stack gets it. */
SEC("xdp/cpumap")
int xdp_lb_cpu(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u64 *v = bpf_map_lookup_elem(&lb_cpu_landed, &zero);

	if (v)
		*v += 1;
	return XDP_PASS;
}
