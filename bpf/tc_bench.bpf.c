// SPDX-License-Identifier: GPL-2.0-only
/*
 * TC benchmark harness, never attached. BPF_PROG_TEST_RUN's repeat loop runs a program on
 * the same skb, so a stage that rewrites the packet (scrub) would only rewrite it on the
 * first run. tc_bench_restore writes the original frame back before each run and tail-calls
 * the program in bench_target (the TC entry program); tc_bench_floor does the same write and
 * stops, so the harness's own cost cancels out.
 */
#include "lib/common.bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define TC_ACT_UNSPEC   (-1)
#define BENCH_FRAME_MAX 256
/* an impossible verdict: the harness itself failed, which the benchmark checks for */
#define TC_ACT_SHOT_BENCH_FAILED 99

struct bench_frame {
	__u32 len;
	__u8 bytes[BENCH_FRAME_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bench_frame);
} bench_frame SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} bench_target SEC(".maps");

static __always_inline int restore_frame(struct __sk_buff *skb)
{
	__u32 zero = 0, len;
	struct bench_frame *f = bpf_map_lookup_elem(&bench_frame, &zero);

	if (!f)
		return -1;
	len = f->len;
	if (len == 0 || len > BENCH_FRAME_MAX || len > skb->len)
		return -1;
	return bpf_skb_store_bytes(skb, 0, f->bytes, len, 0);
}

SEC("tc")
int tc_bench_restore(struct __sk_buff *skb)
{
	if (restore_frame(skb))
		return TC_ACT_SHOT_BENCH_FAILED;
	bpf_tail_call(skb, &bench_target, 0);
	return TC_ACT_SHOT_BENCH_FAILED;
}

SEC("tc")
int tc_bench_floor(struct __sk_buff *skb)
{
	if (restore_frame(skb))
		return TC_ACT_SHOT_BENCH_FAILED;
	return TC_ACT_UNSPEC;
}
