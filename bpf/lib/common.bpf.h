/* SPDX-License-Identifier: GPL-2.0-only */
/* BPF-only: the includes and small helpers every program starts from. */
#ifndef EBPFSENTINEL_COMMON_BPF_H
#define EBPFSENTINEL_COMMON_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "abi.h"

#define ETH_P_IP     0x0800
#define ETH_P_IPV6   0x86DD
#define ETH_P_8021Q  0x8100
#define ETH_P_8021AD 0x88A8

/* IPv6 next-header values that vmlinux.h lacks (they are macros in uapi/linux/in6.h) */
#define NH_HOPOPTS  0
#define NH_ROUTING  43
#define NH_FRAGMENT 44
#define NH_ICMPV6   58
#define NH_DSTOPTS  60

#ifndef likely
#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#endif

/*
 * Count trailing zeros of a non-zero word by de Bruijn multiplication: no branches, so a loop
 * calling it does not multiply the verifier's paths.
 */
static const __u8 debruijn_ctz64[64] = {
	0,  1,  48, 2,  57, 49, 28, 3,  61, 58, 50, 42, 38, 29, 17, 4,  62, 55, 59, 36, 53, 51,
	43, 22, 45, 39, 33, 30, 24, 18, 12, 5,  63, 47, 56, 27, 60, 41, 37, 16, 54, 35, 52, 21,
	44, 32, 23, 11, 46, 26, 40, 15, 34, 20, 31, 10, 25, 14, 19, 9,  13, 8,  7,  6,
};

/*
 * Clamps an index with an AND the compiler cannot drop: clang removes masks it can prove
 * redundant from value ranges the verifier does not know.
 */
#define VERIFIER_MASK(v, mask) asm volatile("%0 &= " #mask : "+r"(v))

/*
 * A length n known to be in 1..max (max a power of two), rewritten so that every supported
 * verifier bounds it from both sides, as helpers taking a length (bpf_skb_load_bytes) need:
 * 6.1's loses the lower bound across `n == 0 ||` or `n < 1 || n > max`, which clang folds
 * into one unsigned compare of n - 1. The identity on 1..max.
 */
#define VERIFIER_LEN(n, max)                                                                  \
	({                                                                                    \
		_Static_assert((max) > 0 && !((max) & ((max) - 1)), "max is a power of two"); \
		(((n) - 1) & ((max) - 1)) + 1;                                                \
	})

static __always_inline __u32 ctz64(__u64 x)
{
	return debruijn_ctz64[((x & -x) * 0x03f79d71b4cb0a89ULL) >> 58];
}

#endif
