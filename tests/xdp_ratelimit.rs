//! xdp_ratelimit through BPF_PROG_TEST_RUN (the firewall tail-calls it): bucket exhaustion and
//! refill, per-source and per-policy keys, v4 and v6, policy selection by prefix, protocol and
//! port, pass-and-log, the allowlist, and the configured rate held within ±15% whether a flood
//! is pinned to one CPU or spread over all of them.

mod common;

use std::time::{Duration, Instant};

use common::{privileged, Firewall, XDP_DROP, XDP_PASS};
use ebpfsentinel::abi::rl_stat;
use ebpfsentinel::packet::{PacketBuilder, TcpFlags};
use libbpf_rs::ProgramInput;

fn udp(src: &str, dport: u16) -> Vec<u8> {
    PacketBuilder::new()
        .ip(
            src.parse().unwrap(),
            if src.contains(':') {
                "2001:db8::1"
            } else {
                "192.0.2.1"
            }
            .parse()
            .unwrap(),
        )
        .udp(4000, dport)
        .build()
}

fn tcp(src: &str, dport: u16) -> Vec<u8> {
    PacketBuilder::new()
        .ip(src.parse().unwrap(), "192.0.2.1".parse().unwrap())
        .tcp(4000, dport, TcpFlags::SYN)
        .build()
}

/// Tests that measure rates take this: one of them saturating both CPUs would skew another.
static TIMING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t with one bit set, for this thread only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0,
            "pinning to CPU {cpu}"
        );
    }
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs `frame` `n` times in one BPF_PROG_TEST_RUN on the current CPU.
fn burst(fw: &Firewall, frame: &[u8], n: u32) -> u32 {
    fw.dp
        .firewall_program()
        .test_run(ProgramInput {
            data_in: Some(frame),
            repeat: n,
            ..Default::default()
        })
        .expect("test run")
        .return_value
}

fn stat(fw: &Firewall, s: rl_stat) -> u64 {
    fw.rl_maps.stats().unwrap()[s.0 as usize]
}

/// (passed in rate, dropped over rate) while `f` runs.
fn counted(fw: &Firewall, f: impl FnOnce()) -> (u64, u64) {
    let (p0, d0) = (
        stat(fw, rl_stat::RL_STAT_PASS_IN_RATE),
        stat(fw, rl_stat::RL_STAT_DROP_OVER_RATE),
    );
    f();
    (
        stat(fw, rl_stat::RL_STAT_PASS_IN_RATE) - p0,
        stat(fw, rl_stat::RL_STAT_DROP_OVER_RATE) - d0,
    )
}

#[test]
fn buckets_exhaust_and_refill() {
    if !privileged("buckets_exhaust_and_refill") {
        return;
    }
    let _timing = TIMING.lock().unwrap_or_else(|p| p.into_inner());
    pin_to_cpu(0);
    let fw = Firewall::load(
        "ratelimit:\n  policies:\n    - { id: per-source, src: 10.0.0.0/8, rate: 1000, burst: 50 }\n",
    );
    let frame = udp("10.1.1.1", 9);
    // 200 packets within microseconds: the burst, then nothing
    let (passed, dropped) = counted(&fw, || assert_eq!(burst(&fw, &frame, 200), XDP_DROP));
    assert!((50..=51).contains(&passed), "burst of 50, passed {passed}");
    assert_eq!(passed + dropped, 200);
    // 100 ms refill 100 tokens, capped at the burst
    std::thread::sleep(Duration::from_millis(100));
    // the bucket empties at some instant inside this call; it refills from then on, so the
    // time since the call began bounds what the next burst can find
    let drained_before = Instant::now();
    let (passed, _) = counted(&fw, || {
        burst(&fw, &frame, 200);
    });
    assert!(
        (50..=51).contains(&passed),
        "refill capped at the burst, passed {passed}"
    );
    // a pause refills one token per millisecond (1000/s); a test run with repeat takes
    // milliseconds of wall time on both sides of its packets, which refills too: bound by
    // what the clock saw
    let pause_start = Instant::now();
    std::thread::sleep(Duration::from_millis(20));
    let paused = pause_start.elapsed().as_secs_f64();
    let (passed, _) = counted(&fw, || {
        burst(&fw, &frame, 100);
    });
    let upper = drained_before.elapsed().as_secs_f64();
    let (lo, hi) = ((1000.0 * paused) as u64, (1000.0 * upper).ceil() as u64 + 1);
    assert!(
        (lo..=hi.min(51)).contains(&passed),
        "{passed} passed after a pause of {:.1} ms, {:.1} ms after the drain began",
        paused * 1e3,
        upper * 1e3
    );
}

#[test]
fn keys_policies_families_and_actions() {
    if !privileged("keys_policies_families_and_actions") {
        return;
    }
    pin_to_cpu(0);
    let fw = Firewall::load(
        r#"
firewall:
  allowlist: [10.9.9.9]
ratelimit:
  policies:
    - { id: dns, src: 10.0.0.0/8, proto: udp, dst_port: 53, rate: 1, burst: 5 }
    - { id: any-10, src: 10.0.0.0/8, rate: 1, burst: 10 }
    - { id: shared, src: 172.16.0.0/12, rate: 1, burst: 8, key: policy }
    - { id: v6, src: "2001:db8:bad::/48", rate: 1, burst: 3 }
    - { id: noisy, src: 198.51.100.0/24, rate: 1, burst: 2, action: pass-and-log }
"#,
    );
    let passed = |frame: Vec<u8>, n: u32| {
        counted(&fw, || {
            burst(&fw, &frame, n);
        })
        .0
    };
    assert_eq!(
        passed(udp("10.1.1.1", 53), 20),
        5,
        "dns policy: its own burst"
    );
    assert_eq!(
        passed(tcp("10.1.1.1", 53), 20),
        10,
        "tcp falls to the /8 policy without a port"
    );
    assert_eq!(
        passed(udp("10.1.1.2", 53), 20),
        5,
        "per source: another source, another bucket"
    );
    assert_eq!(passed(udp("172.16.0.1", 1), 5), 5, "policy key");
    assert_eq!(
        passed(udp("172.17.0.1", 1), 10),
        3,
        "policy key: one budget for all sources"
    );
    assert_eq!(passed(udp("2001:db8:bad::1", 1), 10), 3, "IPv6 sources");
    assert_eq!(passed(udp("2001:db8:bad::2", 1), 10), 3, "IPv6 per source");
    let unlimited0 = stat(&fw, rl_stat::RL_STAT_PASS_NO_POLICY);
    assert_eq!(burst(&fw, &udp("192.0.2.50", 1), 100), XDP_PASS);
    assert_eq!(stat(&fw, rl_stat::RL_STAT_PASS_NO_POLICY) - unlimited0, 100);
    let allow0 = stat(&fw, rl_stat::RL_STAT_PASS_UNLIMITED);
    assert_eq!(
        burst(&fw, &udp("10.9.9.9", 53), 100),
        XDP_PASS,
        "allowlisted: never limited"
    );
    assert_eq!(stat(&fw, rl_stat::RL_STAT_PASS_UNLIMITED) - allow0, 100);
    // pass-and-log: over the rate still passes, and reports once per key and second
    let (over0, ev0) = (
        stat(&fw, rl_stat::RL_STAT_PASS_OVER_RATE),
        stat(&fw, rl_stat::RL_STAT_EVENTS_SENT),
    );
    assert_eq!(burst(&fw, &udp("198.51.100.7", 1), 50), XDP_PASS);
    assert_eq!(stat(&fw, rl_stat::RL_STAT_PASS_OVER_RATE) - over0, 48);
    assert_eq!(stat(&fw, rl_stat::RL_STAT_EVENTS_SENT) - ev0, 1);
}

/// Floods one source from `threads` threads, each pinned to its own CPU, for three seconds;
/// returns the passing rate measured over the last two (the burst is spent by then).
fn flood_rate(fw: &Firewall, threads: usize, frame: &[u8]) -> f64 {
    let start = Instant::now();
    let run = Duration::from_secs(3);
    std::thread::scope(|s| {
        for cpu in 0..threads {
            s.spawn(move || {
                pin_to_cpu(cpu);
                // thousands per call: each test run costs milliseconds of wall time here,
                // and the offered load must stay far above the rate
                while start.elapsed() < run {
                    burst(fw, frame, 2000);
                }
            });
        }
        std::thread::sleep(Duration::from_secs(1));
        let (p1, t1) = (stat(fw, rl_stat::RL_STAT_PASS_IN_RATE), Instant::now());
        std::thread::sleep(Duration::from_millis(1800));
        let (p2, t2) = (stat(fw, rl_stat::RL_STAT_PASS_IN_RATE), Instant::now());
        (p2 - p1) as f64 / (t2 - t1).as_secs_f64()
    })
}

#[test]
fn configured_rate_holds_pinned_and_spread() {
    if !privileged("configured_rate_holds_pinned_and_spread") {
        return;
    }
    let _timing = TIMING.lock().unwrap_or_else(|p| p.into_inner());
    // Each test run costs ~15 ms of wall time on this machine between its packets: the
    // burst must cover such a gap (a bucket that fills up wastes refill, as it should), so
    // 1000 tokens = 200 ms at the rate.
    const RATE: f64 = 5000.0;
    let yaml = "ratelimit:\n  policies:\n    - { id: flood, src: 203.0.113.0/24, rate: 5000, burst: 1000 }\n";
    for (label, threads, src) in [
        ("pinned to one CPU", 1, "203.0.113.1"),
        ("spread over all CPUs", cpus(), "203.0.113.2"),
    ] {
        let fw = Firewall::load(yaml);
        let rate = flood_rate(&fw, threads, &udp(src, 9));
        let ratio = rate / RATE;
        eprintln!("{label}: {rate:.0} packets/s passed against {RATE} configured ({ratio:.3})");
        assert!(
            (0.85..=1.15).contains(&ratio),
            "{label}: {rate:.0} packets/s passed, {RATE} configured ±15%"
        );
    }
}

/// The daemon in a netns lab: a UDP flood from one namespace reaches the receiver at the
/// configured rate, and a policy-free source is not touched.
#[test]
fn udp_flood_is_cut_to_the_rate_in_the_lab() {
    use common::daemon::{Daemon, Scratch};
    use common::netns::{veth, Netns};
    use common::traffic;
    use std::net::SocketAddr;

    if !privileged("udp_flood_is_cut_to_the_rate_in_the_lab") {
        return;
    }
    let _timing = TIMING.lock().unwrap_or_else(|p| p.into_inner());
    let client = Netns::new("rl-client");
    let router = Netns::new("rl-router");
    veth(&client, "eC", &router, "eR");
    client.exec(&["ip", "addr", "add", "10.79.0.2/24", "dev", "eC"]);
    client.exec(&["ip", "addr", "add", "10.79.0.3/24", "dev", "eC"]);
    router.exec(&["ip", "addr", "add", "10.79.0.1/24", "dev", "eR"]);
    let scratch = Scratch::new("rl");
    let config = scratch.dir.join("config.yaml");
    std::fs::write(
        &config,
        "interfaces: [eR]\nratelimit:\n  policies:\n    - { id: flood, src: 10.79.0.2, proto: udp, rate: 200, burst: 200 }\n",
    )
    .unwrap();
    let _daemon = Daemon::start(&router, &config, &scratch.pin_root(), &["--transient"]);
    let rx = traffic::udp_bind(&router, SocketAddr::new("10.79.0.1".parse().unwrap(), 7000));
    let dst = SocketAddr::new("10.79.0.1".parse().unwrap(), 7000);
    // read while sending: a socket left unread overflows its buffer long before 1200 datagrams
    let receiving = std::thread::spawn(move || traffic::udp_drain(&rx));
    // ~400 datagrams a second; a one-second burst means a sender stalled by a loaded
    // machine loses no tokens, so the count stays rate*t + burst
    // one sending CPU: the per-CPU buckets re-share a key's rate by recent packets, and a
    // sender migrated by a loaded scheduler strands the tokens of the CPU it left
    pin_to_cpu(0);
    traffic::udp_send(&client, "10.79.0.3".parse().unwrap(), dst, 20);
    let sent_start = Instant::now();
    traffic::udp_send(&client, "10.79.0.2".parse().unwrap(), dst, 1200);
    let secs = sent_start.elapsed().as_secs_f64();
    let got = receiving.join().unwrap();
    let limited = *got.get(&"10.79.0.2".parse().unwrap()).unwrap_or(&0) as f64;
    let expected = 200.0 * secs + 200.0;
    eprintln!("flood: {limited} of 1200 received in {secs:.2} s, expected {expected:.0}");
    assert!(
        limited < 1100.0,
        "flood: {limited} of 1200 received, the limiter did not cut"
    );
    assert!(
        (0.85..=1.15).contains(&(limited / expected)),
        "flood: {limited} received in {secs:.2} s, expected {expected:.0} ±15%"
    );
    assert_eq!(
        got.get(&"10.79.0.3".parse().unwrap()),
        Some(&20),
        "unlimited source"
    );
}

#[test]
fn icmp_and_amplification_guards() {
    if !privileged("icmp_and_amplification_guards") {
        return;
    }
    let _timing = TIMING.lock().unwrap_or_else(|p| p.into_inner());
    pin_to_cpu(0);
    let fw = Firewall::load(
        "ddos:\n  icmp: { rate: 1, burst: 5, max_payload: 100 }\n  amplification:\n    ports: [ { port: 53, rate: 1, burst: 3 }, { port: 123, rate: 1, burst: 4 } ]\n",
    );
    let b = || PacketBuilder::new();
    let v4 = |s: &str| -> std::net::IpAddr { s.parse().unwrap() };
    let delta = |s: rl_stat, f: &dyn Fn()| {
        let before = stat(&fw, s);
        f();
        stat(&fw, s) - before
    };
    let echo = b()
        .ip(v4("192.0.2.9"), v4("192.0.2.1"))
        .icmp(8, 0)
        .payload(&[7; 56])
        .build();
    assert_eq!(
        delta(rl_stat::RL_STAT_ICMP_PASSED, &|| {
            burst(&fw, &echo, 20);
        }),
        5,
        "echo: the burst"
    );
    assert_eq!(burst(&fw, &echo, 1), XDP_DROP, "echo over the rate");
    let frag_needed = b()
        .ip(v4("192.0.2.9"), v4("192.0.2.1"))
        .icmp(3, 4)
        .payload(&[0; 28])
        .build();
    assert_eq!(
        burst(&fw, &frag_needed, 50),
        XDP_PASS,
        "PMTU discovery is never limited"
    );
    let too_big = b()
        .ip(v4("2001:db8::9"), v4("2001:db8::1"))
        .icmpv6(2, 0)
        .payload(&[0; 48])
        .build();
    assert_eq!(
        burst(&fw, &too_big, 50),
        XDP_PASS,
        "ICMPv6 packet too big is never limited"
    );
    let echo6 = b()
        .ip(v4("2001:db8::9"), v4("2001:db8::1"))
        .icmpv6(128, 0)
        .build();
    assert_eq!(
        delta(rl_stat::RL_STAT_ICMP_PASSED, &|| {
            burst(&fw, &echo6, 20);
        }),
        5,
        "ICMPv6 echo: the burst"
    );
    let big = b()
        .ip(v4("192.0.2.10"), v4("192.0.2.1"))
        .icmp(8, 0)
        .payload(&[7; 200])
        .build();
    assert_eq!(
        delta(rl_stat::RL_STAT_ICMP_OVERSIZED, &|| {
            burst(&fw, &big, 3);
        }),
        3
    );
    assert_eq!(
        burst(&fw, &big, 1),
        XDP_DROP,
        "oversized echo dropped within the budget too"
    );

    let dns_reply = b()
        .ip(v4("198.51.100.53"), v4("192.0.2.1"))
        .udp(53, 40000)
        .build();
    assert_eq!(
        delta(rl_stat::RL_STAT_AMP_PASSED, &|| {
            burst(&fw, &dns_reply, 10);
        }),
        3
    );
    let ntp_reply = b()
        .ip(v4("198.51.100.53"), v4("192.0.2.1"))
        .udp(123, 40000)
        .build();
    assert_eq!(
        delta(rl_stat::RL_STAT_AMP_PASSED, &|| {
            burst(&fw, &ntp_reply, 10);
        }),
        4,
        "a budget per port"
    );
    let other = b()
        .ip(v4("198.51.100.53"), v4("192.0.2.1"))
        .udp(5353, 40000)
        .build();
    assert_eq!(
        burst(&fw, &other, 100),
        XDP_PASS,
        "other source ports untouched"
    );
    let to_dns = b()
        .ip(v4("198.51.100.54"), v4("192.0.2.1"))
        .udp(40000, 53)
        .build();
    assert_eq!(
        burst(&fw, &to_dns, 100),
        XDP_PASS,
        "queries to port 53 are not replies"
    );

    // the default reflector list
    let fw = Firewall::load("ddos:\n  amplification: {}\n");
    let chargen = b()
        .ip(v4("198.51.100.19"), v4("192.0.2.1"))
        .udp(19, 40000)
        .build();
    let before = stat(&fw, rl_stat::RL_STAT_AMP_PASSED);
    burst(&fw, &chargen, 100);
    assert_eq!(
        stat(&fw, rl_stat::RL_STAT_AMP_PASSED) - before,
        20,
        "chargen: 10/s, burst 20"
    );
}

/// Runs one frame and returns (verdict, output frame).
fn run_out(fw: &Firewall, frame: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; 256];
    let res = fw
        .dp
        .firewall_program()
        .test_run(ProgramInput {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..Default::default()
        })
        .expect("test run");
    let (verdict, len) = (res.return_value, res.data.map_or(0, |d| d.len()));
    out.truncate(len);
    (verdict, out)
}

fn folds_to_ffff(bytes: &[u8]) -> bool {
    ebpfsentinel::packet::ones_complement_sum(bytes) == 0xffff
}

#[test]
fn syn_cookies_above_the_threshold() {
    if !privileged("syn_cookies_above_the_threshold") {
        return;
    }
    let _timing = TIMING.lock().unwrap_or_else(|p| p.into_inner());
    pin_to_cpu(0);
    let fw = Firewall::load("ddos:\n  syn: { threshold_pps: 1 }\n");
    for (client, server, l3_len) in [
        ("198.51.100.7", "192.0.2.1", 20usize),
        ("2001:db8:7::7", "2001:db8::1", 40),
    ] {
        let (c, s): (std::net::IpAddr, std::net::IpAddr) =
            (client.parse().unwrap(), server.parse().unwrap());
        let mut syn = PacketBuilder::new()
            .ip(c, s)
            .tcp(40000, 80, TcpFlags::SYN)
            .build();
        let l4 = 14 + l3_len;
        syn[l4 + 4..l4 + 8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        // the first SYN is within the threshold: untouched
        let received0 = stat(&fw, rl_stat::RL_STAT_SYN_RECEIVED);
        assert_eq!(
            run_out(&fw, &syn).0,
            XDP_PASS,
            "{client}: under the threshold"
        );
        let (verdict, out) = run_out(&fw, &syn);
        assert_eq!(
            verdict, 3,
            "{client}: XDP_TX of a SYN-ACK over the threshold"
        );
        assert_eq!(stat(&fw, rl_stat::RL_STAT_SYN_RECEIVED) - received0, 2);
        assert_eq!(
            out.len(),
            14 + l3_len + 24,
            "{client}: Ethernet, IP, TCP with MSS"
        );
        assert_eq!(&out[0..6], &syn[6..12], "destination MAC is the client's");
        assert_eq!(&out[6..12], &syn[0..6]);
        let tcp = &out[l4..];
        assert_eq!(u16::from_be_bytes([tcp[0], tcp[1]]), 80);
        assert_eq!(u16::from_be_bytes([tcp[2], tcp[3]]), 40000);
        assert_eq!(
            u32::from_be_bytes(tcp[8..12].try_into().unwrap()),
            0x1234_5679,
            "ack = seq + 1"
        );
        assert_eq!(tcp[13], 0x12, "SYN|ACK");
        assert_eq!((tcp[20], tcp[21]), (2, 4), "MSS option");
        let pseudo = ebpfsentinel::packet::pseudo_header(s, c, 6, 24);
        assert!(
            folds_to_ffff(&[pseudo.as_slice(), tcp].concat()),
            "{client}: TCP checksum"
        );
        if l3_len == 20 {
            assert!(folds_to_ffff(&out[14..34]), "IPv4 header checksum");
            assert_eq!(&out[26..30], &syn[30..34], "source is the server");
        } else {
            assert_eq!(&out[22..38], &syn[38..54], "source is the server");
        }
        let cookie = u32::from_be_bytes(tcp[4..8].try_into().unwrap());
        // the client's ACK carries cookie + 1: the kernel's check accepts it, a wrong one not
        let mut ack = PacketBuilder::new()
            .ip(c, s)
            .tcp(40000, 80, TcpFlags::ACK)
            .build();
        ack[l4 + 4..l4 + 8].copy_from_slice(&0x1234_5679u32.to_be_bytes());
        ack[l4 + 8..l4 + 12].copy_from_slice(&cookie.wrapping_add(1).to_be_bytes());
        let valid0 = stat(&fw, rl_stat::RL_STAT_SYNCOOKIE_ACK_VALID);
        assert_eq!(run_out(&fw, &ack).0, XDP_PASS);
        assert_eq!(
            stat(&fw, rl_stat::RL_STAT_SYNCOOKIE_ACK_VALID) - valid0,
            1,
            "{client}: valid cookie"
        );
        // (the cookie's low bits encode the MSS: a forged one differs in the hashed bits)
        ack[l4 + 8..l4 + 12].copy_from_slice(&(cookie ^ 0x5a5a_0000).wrapping_add(1).to_be_bytes());
        let invalid0 = stat(&fw, rl_stat::RL_STAT_SYNCOOKIE_ACK_INVALID);
        assert_eq!(
            run_out(&fw, &ack).0,
            XDP_PASS,
            "checked, not dropped without conntrack"
        );
        assert_eq!(
            stat(&fw, rl_stat::RL_STAT_SYNCOOKIE_ACK_INVALID) - invalid0,
            1
        );
    }
}

/// A TCP SYN (header only) from `src:sport` for a raw socket.
fn raw_syn(src: std::net::IpAddr, dst: std::net::IpAddr, sport: u16, dport: u16) -> Vec<u8> {
    let mut th = vec![0u8; 20];
    th[0..2].copy_from_slice(&sport.to_be_bytes());
    th[2..4].copy_from_slice(&dport.to_be_bytes());
    th[4..8].copy_from_slice(&(u32::from(sport) * 7919).to_be_bytes());
    th[12] = 5 << 4;
    th[13] = 0x02;
    th[14..16].copy_from_slice(&64240u16.to_be_bytes());
    let pseudo = ebpfsentinel::packet::pseudo_header(src, dst, 6, 20);
    let sum = !ebpfsentinel::packet::ones_complement_sum(&[pseudo.as_slice(), &th].concat());
    th[16..18].copy_from_slice(&sum.to_be_bytes());
    th
}

/// The daemon in a netns lab: a SYN flood at the listener's address is answered with cookies
/// from XDP while a real client still connects and exchanges data.
#[test]
fn real_client_connects_through_a_syn_flood() {
    use common::daemon::{Daemon, Scratch};
    use common::netns::{veth, Netns};
    use common::traffic;
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicBool, Ordering};

    if !privileged("real_client_connects_through_a_syn_flood") {
        return;
    }
    let _timing = TIMING.lock().unwrap_or_else(|p| p.into_inner());
    let client = Netns::new("syn-client");
    let router = Netns::new("syn-router");
    veth(&client, "eC", &router, "eR");
    client.exec(&["ip", "addr", "add", "10.80.0.2/24", "dev", "eC"]);
    router.exec(&["ip", "addr", "add", "10.80.0.1/24", "dev", "eR"]);
    // the stack accepts the cookie ACKs XDP answered for
    router.exec(&["sysctl", "-qw", "net.ipv4.tcp_syncookies=2"]);
    let scratch = Scratch::new("syn");
    let config = scratch.dir.join("config.yaml");
    std::fs::write(
        &config,
        // generic XDP: a veth peer without NAPI drops native XDP_TX frames (real NICs do not)
        "interfaces: [eR]\nxdp_mode: generic\nddos:\n  syn: { threshold_pps: 20 }\n",
    )
    .unwrap();
    let _daemon = Daemon::start(&router, &config, &scratch.pin_root(), &["--transient"]);
    let server_addr = SocketAddr::new("10.80.0.1".parse().unwrap(), 8080);
    let server = traffic::tcp_echo_server(traffic::tcp_listen(&router, server_addr), 5);

    let flooding = AtomicBool::new(true);
    let sent = std::thread::scope(|s| {
        let flood = s.spawn(|| {
            let raw = client.run(|| {
                let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::TCP)).unwrap();
                sock.bind(&SockAddr::from(SocketAddr::new(
                    "10.80.0.2".parse().unwrap(),
                    0,
                )))
                .unwrap();
                sock
            });
            let (src, dst) = ("10.80.0.2".parse().unwrap(), server_addr.ip());
            let mut sent = 0u32;
            while flooding.load(Ordering::Relaxed) {
                let sport = 10000 + (sent % 50000) as u16;
                let _ = raw.send_to(
                    &raw_syn(src, dst, sport, 8080),
                    &SockAddr::from(server_addr),
                );
                sent += 1;
                if sent % 20 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            sent
        });
        std::thread::sleep(Duration::from_millis(500));
        // results, not panics: the flood must stop whatever happens here
        let outcomes: Vec<Result<(), String>> = (0..5)
            .map(|_| {
                traffic::tcp_exchange(
                    &client,
                    "10.80.0.2".parse().unwrap(),
                    server_addr,
                    Duration::from_secs(5),
                )
            })
            .collect();
        flooding.store(false, Ordering::Relaxed);
        (flood.join().unwrap(), outcomes)
    });
    let (sent, outcomes) = sent;
    for (i, o) in outcomes.iter().enumerate() {
        assert!(o.is_ok(), "connection {i} during the flood: {o:?}");
    }
    assert_eq!(server.join().unwrap(), 5, "every connection was served");
    if std::env::var_os("RL_DEBUG").is_some() {
        let st =
            common::daemon::cli(&["status", "--pin-root", scratch.pin_root().to_str().unwrap()]);
        eprintln!("{}", String::from_utf8_lossy(&st.stdout));
    }
    let rl = ebpfsentinel::maps::ratelimit::RateLimitMaps::from_pins(&scratch.pin_root()).unwrap();
    let st = rl.stats().unwrap();
    let cookies = st[rl_stat::RL_STAT_SYNCOOKIES_SENT.0 as usize];
    let syns = st[rl_stat::RL_STAT_SYN_RECEIVED.0 as usize];
    eprintln!("{sent} flood SYNs sent, {syns} SYNs seen, {cookies} answered with cookies");
    assert!(sent > 1000, "the flood ran: {sent}");
    assert!(
        cookies > syns / 2,
        "most SYNs answered from XDP: {cookies} of {syns}"
    );
}
