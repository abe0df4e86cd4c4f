/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * The kernel<->user ABI of ebpfsentinel, included by every BPF program. The Rust side never
 * re-declares these types: it takes them from the skeletons' BTF (src/abi.rs). Plain C with
 * fixed-width types only; the includer provides __u8..__u64 (vmlinux.h in BPF).
 */
#ifndef EBPFSENTINEL_ABI_H
#define EBPFSENTINEL_ABI_H

#include "abi/limits.h"
#include "abi/event.h"
#include "abi/chain.h"
#include "abi/conntrack.h"
#include "abi/firewall.h"
#include "abi/ratelimit.h"
#include "abi/threatintel.h"
#include "abi/scrub.h"
#include "abi/dns.h"
#include "abi/lb.h"
#include "abi/ids.h"

#endif
