//! What the running kernel offers, probed the way libbpf does (loading tiny maps and programs),
//! so that a stage that needs something newer can say so in one line instead of failing in
//! the verifier.

use libbpf_rs::libbpf_sys as sys;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Feature {
    pub name: &'static str,
    /// None when the probe itself failed (no privileges)
    pub available: Option<bool>,
    /// the upstream version that introduced it, for the message when it is missing
    pub since: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Features {
    pub kernel: String,
    pub btf: bool,
    pub features: Vec<Feature>,
}

/// libbpf answers 1 (yes), 0 (no) or -errno (could not probe).
fn answer(rc: i32) -> Option<bool> {
    (rc >= 0).then_some(rc == 1)
}

fn map(t: sys::bpf_map_type) -> Option<bool> {
    // SAFETY: probing takes no pointers but the optional (null) options.
    answer(unsafe { sys::libbpf_probe_bpf_map_type(t, std::ptr::null()) })
}

fn helper(prog: sys::bpf_prog_type, f: sys::bpf_func_id) -> Option<bool> {
    // SAFETY: as above.
    answer(unsafe { sys::libbpf_probe_bpf_helper(prog, f, std::ptr::null()) })
}

pub fn kernel_release() -> String {
    // SAFETY: uname fills the zeroed struct.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: u is a valid out-pointer.
    if unsafe { libc::uname(&mut u) } != 0 {
        return "unknown".into();
    }
    // SAFETY: release is NUL-terminated by uname.
    unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// libbpf's map probes report "unsupported" for "not permitted" too: without CAP_BPF (or
/// CAP_SYS_ADMIN) nothing can be told.
fn may_probe() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_BPF: u32 = 39;
    let caps = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0);
    caps & (1 << CAP_SYS_ADMIN | 1 << CAP_BPF) != 0
}

pub fn probe() -> Features {
    let xdp = sys::BPF_PROG_TYPE_XDP;
    let allowed = may_probe();
    let f = |name, available: Option<bool>, since| Feature {
        name,
        available: available.filter(|_| allowed),
        since,
    };
    Features {
        kernel: kernel_release(),
        btf: std::path::Path::new("/sys/kernel/btf/vmlinux").exists(),
        features: vec![
            f("lpm_trie", map(sys::BPF_MAP_TYPE_LPM_TRIE), "4.11"),
            f("ringbuf", map(sys::BPF_MAP_TYPE_RINGBUF), "5.8"),
            f("lru_hash", map(sys::BPF_MAP_TYPE_LRU_HASH), "4.10"),
            f("percpu_hash", map(sys::BPF_MAP_TYPE_PERCPU_HASH), "4.6"),
            f("prog_array", map(sys::BPF_MAP_TYPE_PROG_ARRAY), "4.2"),
            f("devmap", map(sys::BPF_MAP_TYPE_DEVMAP), "4.14"),
            f("cpumap", map(sys::BPF_MAP_TYPE_CPUMAP), "4.15"),
            f("bloom_filter", map(sys::BPF_MAP_TYPE_BLOOM_FILTER), "5.16"),
            f(
                "ringbuf_query",
                helper(xdp, sys::BPF_FUNC_ringbuf_query),
                "5.8",
            ),
            f("bpf_loop", helper(xdp, sys::BPF_FUNC_loop), "5.17"),
            f("fib_lookup", helper(xdp, sys::BPF_FUNC_fib_lookup), "4.18"),
            f(
                "tcp_raw_syncookie",
                helper(xdp, sys::BPF_FUNC_tcp_raw_gen_syncookie_ipv4),
                "6.0",
            ),
            f(
                "ktime_get_coarse",
                helper(xdp, sys::BPF_FUNC_ktime_get_coarse_ns),
                "5.11",
            ),
            f(
                "tc_socket_cookie",
                helper(
                    sys::BPF_PROG_TYPE_SCHED_CLS,
                    sys::BPF_FUNC_get_socket_cookie,
                ),
                "4.12",
            ),
            // without it the TC pipeline hangs on clsact filters instead of TCX links
            Feature {
                name: "tcx",
                available: Some(kernel_has_struct("tcx_entry")),
                since: "6.6",
            },
            f(
                "skb_vlan_push",
                helper(sys::BPF_PROG_TYPE_SCHED_CLS, sys::BPF_FUNC_skb_vlan_push),
                "4.3",
            ),
        ],
    }
}

/// Whether the kernel's BTF describes a struct of this name (false without BTF).
fn kernel_has_struct(name: &str) -> bool {
    let Ok(c_name) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: libbpf (1.0 mode) returns an owned BTF object, freed below, or NULL.
    let btf = unsafe { sys::btf__load_vmlinux_btf() };
    if btf.is_null() {
        return false;
    }
    // SAFETY: btf is valid and c_name NUL-terminated.
    let id = unsafe { sys::btf__find_by_name_kind(btf, c_name.as_ptr(), sys::BTF_KIND_STRUCT) };
    // SAFETY: btf came from btf__load_vmlinux_btf.
    unsafe { sys::btf__free(btf) };
    id > 0
}

/// What the TC pipeline and the conntrack table need (loaded with the firewall).
pub const CONNTRACK_NEEDS: [&str; 3] = ["lru_hash", "bpf_loop", "ktime_get_coarse"];

/// What tc_threatintel needs (loaded with the firewall).
pub const THREATINTEL_NEEDS: [&str; 2] = ["bloom_filter", "bpf_loop"];

/// What tc_ids and tc_dns (bpf_loop over payload and labels) and xdp_lb (FIB lookup, the
/// mirror's DEVMAP, the steering CPUMAP) need; all are loaded with the firewall.
pub const LATER_STAGES_NEEDS: [&str; 4] = ["bpf_loop", "fib_lookup", "devmap", "cpumap"];

/// What xdp_firewall needs: refuse to load with one line naming what is missing rather than
/// letting libbpf and the verifier fail half-way.
pub const FIREWALL_NEEDS: [&str; 4] = ["lpm_trie", "ringbuf", "ringbuf_query", "prog_array"];

impl Features {
    pub fn missing(&self, needed: &[&str]) -> Vec<String> {
        self.features
            .iter()
            .filter(|f| needed.contains(&f.name) && f.available == Some(false))
            .map(|f| format!("{} (Linux {})", f.name, f.since))
            .collect()
    }
}
