/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/* Included by BPF programs and (through BTF) by userspace: xdp_lb's maps and counters. */
#ifndef EBPFSENTINEL_ABI_LB_H
#define EBPFSENTINEL_ABI_LB_H

enum lb_limits {
	LB_MAX_SERVICES = 64,
	LB_MAX_BACKENDS_PER_SERVICE = 256,
	LB_MAX_BACKENDS = LB_MAX_SERVICES * LB_MAX_BACKENDS_PER_SERVICE,
	/*
	 * Slots of one service's Maglev table at most (a prime); a service may use a smaller
	 * prime. Each service owns LB_RING_STRIDE consecutive lb_ring entries.
	 */
	LB_RING_STRIDE = 65537,
	/* a ring slot that names no backend: every backend of the service is down or drained */
	LB_NO_BACKEND = 0xffffffff,
	/* egress interfaces whose forwarded packets can be mirrored (one DEVMAP each) */
	LB_MIRROR_EGRESS = 8,
	/* CPUs packets may be steered to (CPU ids below this) */
	LB_MAX_CPUS = 64,
	/* most packets a CPU's cpumap queue holds */
	LB_MAX_CPU_QUEUE = 16384,
};

/* (VIP, port, protocol) of a service; IPv4 in the first 4 bytes of vip */
struct lb_service_key {
	__u8 vip[16];
	__be16 port;
	__u8 proto;
	__u8 family; /* enum fw_family */
};

struct lb_service {
	/* slot of the service: its ring is lb_ring[index * LB_RING_STRIDE ..][table_size] */
	__u32 index;
	/* prime, at most LB_RING_STRIDE */
	__u32 table_size;
};

/* lb_backends key: service index * LB_MAX_BACKENDS_PER_SERVICE + backend slot */
struct lb_backend {
	__u8 addr[16];
	__be16 port;
	__u8 family;
	/* 0: down or drained; the ring no longer names it once the daemon rebuilt it */
	__u8 up;
	__u32 service;
};

/*
 * Reverse mapping for replies: (backend address, port, protocol) -> the service's key. A
 * backend address and port belong to one service, so the mapping is stateless.
 */
struct lb_reverse_key {
	__u8 addr[16];
	__be16 port;
	__u8 proto;
	__u8 family;
};

/* per service and CPU */
struct lb_service_stats {
	__u64 packets;
	__u64 bytes;
	__u64 no_backend;
};

enum lb_stat {
	LB_STAT_SEEN = 0,
	/* not TCP or UDP to a service nor from a backend */
	LB_STAT_MISS,
	/* rewritten and sent with XDP_TX or a redirect after the FIB lookup */
	LB_STAT_FORWARDED,
	/* rewritten, the FIB had no neighbour (or no route): the stack forwards it */
	LB_STAT_FORWARDED_STACK,
	LB_STAT_NO_BACKEND,
	/* replies rewritten back to the VIP */
	LB_STAT_REPLY,
	/* replies to this host itself (health checks): left alone */
	LB_STAT_REPLY_LOCAL,
	/* fragments and malformed packets to a VIP: passed untouched */
	LB_STAT_UNSUPPORTED,
	/* forwarded packets also copied to the mirror port */
	LB_STAT_MIRRORED,
	/* packets for the stack redirected to a CPU of the steering set */
	LB_STAT_STEERED,
	LB_STAT_COUNT,
};

_Static_assert(sizeof(struct lb_service_key) == 20, "lb_service_key layout");
_Static_assert(sizeof(struct lb_service) == 8, "lb_service layout");
_Static_assert(sizeof(struct lb_backend) == 24, "lb_backend layout");
_Static_assert(sizeof(struct lb_reverse_key) == 20, "lb_reverse_key layout");
_Static_assert(sizeof(struct lb_service_stats) == 24, "lb_service_stats layout");

#endif
