use super::*;

fn cfg(threshold: Option<u32>, window: u64, block_for: u64, whitelist: &[&str]) -> IpsConfig {
    IpsConfig {
        threshold,
        window: Duration::from_secs(window),
        block_for: Duration::from_secs(block_for),
        whitelist: whitelist.iter().map(|s| s.parse().unwrap()).collect(),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A clock: `at(t)` is t seconds after the start.
struct Clock(Instant);

impl Clock {
    fn new() -> Clock {
        Clock(Instant::now())
    }

    fn at(&self, secs: f64) -> Instant {
        self.0 + Duration::from_secs_f64(secs)
    }
}

#[test]
fn threshold_within_the_window_blocks() {
    let c = Clock::new();
    let mut ips = Ips::new(&cfg(Some(3), 60, 3600, &[]));
    let a = ip("198.51.100.7");
    assert_eq!(ips.detect(a, c.at(0.0)), None);
    assert_eq!(ips.detect(a, c.at(10.0)), None);
    assert_eq!(
        ips.detect(a, c.at(59.0)),
        Some(Block {
            src: a,
            duration: Duration::from_secs(3600),
            detections: 3
        })
    );
    // blocked now: no second block, nothing tracked
    assert_eq!(ips.tracked(), 0);
    for t in 60..70 {
        assert_eq!(ips.detect(a, c.at(f64::from(t))), None);
    }
    assert!(ips.is_blocked(a, c.at(3658.0)));
    // the block ran out: counting starts over
    assert!(!ips.is_blocked(a, c.at(3659.0)));
    assert_eq!(ips.detect(a, c.at(3660.0)), None);
    assert_eq!(ips.detect(a, c.at(3661.0)), None);
    assert!(ips.detect(a, c.at(3662.0)).is_some());
}

#[test]
fn detections_slide_out_of_the_window() {
    let c = Clock::new();
    let mut ips = Ips::new(&cfg(Some(3), 60, 600, &[]));
    let a = ip("2001:db8::7");
    assert_eq!(ips.detect(a, c.at(0.0)), None);
    assert_eq!(ips.detect(a, c.at(30.0)), None);
    // the first is exactly one window old: out
    assert_eq!(ips.detect(a, c.at(60.0)), None);
    assert_eq!(ips.detect(a, c.at(120.0)), None);
    // only 120 and 121 are less than a window before 121
    assert_eq!(ips.detect(a, c.at(121.0)), None);
    assert_eq!(ips.detect(a, c.at(122.0)).map(|b| b.detections), Some(3));
}

#[test]
fn sources_are_counted_apart() {
    let c = Clock::new();
    let mut ips = Ips::new(&cfg(Some(2), 60, 60, &[]));
    let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
    assert_eq!(ips.detect(a, c.at(0.0)), None);
    assert_eq!(ips.detect(b, c.at(1.0)), None);
    assert_eq!(ips.tracked(), 2);
    assert_eq!(ips.detect(b, c.at(2.0)).map(|x| x.src), Some(b));
    assert_eq!(ips.detect(a, c.at(3.0)).map(|x| x.src), Some(a));
}

#[test]
fn whitelisted_sources_are_never_blocked() {
    let c = Clock::new();
    let mut ips = Ips::new(&cfg(Some(1), 60, 60, &["192.0.2.0/24", "2001:db8::/32"]));
    assert_eq!(ips.detect(ip("192.0.2.200"), c.at(0.0)), None);
    assert_eq!(ips.detect(ip("2001:db8::1"), c.at(0.0)), None);
    assert_eq!(ips.tracked(), 0);
    assert!(ips.detect(ip("192.0.3.1"), c.at(0.0)).is_some());
}

#[test]
fn no_threshold_no_blocking() {
    let c = Clock::new();
    let mut ips = Ips::new(&cfg(None, 60, 60, &[]));
    for t in 0..100 {
        assert_eq!(ips.detect(ip("192.0.2.1"), c.at(f64::from(t) / 10.0)), None);
    }
    assert_eq!(ips.tracked(), 0);
    let mut zero = Ips::new(&cfg(Some(0), 60, 60, &[]));
    assert_eq!(zero.detect(ip("192.0.2.1"), c.at(0.0)), None);
}

#[test]
fn tracked_sources_are_capped_dropping_the_stalest() {
    let c = Clock::new();
    let mut ips = Ips::with_capacity(&cfg(Some(2), 3600, 60, &[]), 3);
    let srcs: Vec<IpAddr> = (1..=4).map(|i| ip(&format!("10.0.0.{i}"))).collect();
    for (i, s) in srcs.iter().take(3).enumerate() {
        assert_eq!(ips.detect(*s, c.at(i as f64)), None);
    }
    // 10.0.0.1 detected again: now 10.0.0.2 is the stalest
    assert!(ips.detect(srcs[0], c.at(3.0)).is_some());
    assert_eq!(ips.tracked(), 2);
    assert_eq!(ips.detect(srcs[3], c.at(4.0)), None);
    assert_eq!(ips.detect(ip("10.0.0.9"), c.at(5.0)), None);
    assert_eq!(ips.tracked(), 3);
    // 10.0.0.2 was dropped to make room: its first detection again
    assert_eq!(ips.detect(srcs[1], c.at(6.0)), None);
    assert_eq!(ips.tracked(), 3);
    // while 10.0.0.4 kept its track
    assert!(ips.detect(srcs[3], c.at(7.0)).is_some());
}

#[test]
fn stale_tracks_are_pruned() {
    let c = Clock::new();
    let mut ips = Ips::new(&cfg(Some(5), 100, 60, &[]));
    for i in 0..100u8 {
        ips.detect(IpAddr::from([10, 1, 0, i]), c.at(f64::from(i)));
    }
    assert_eq!(ips.tracked(), 100);
    // the sources last seen at 0..=50 s are a window old
    ips.prune(c.at(150.0));
    assert_eq!(ips.tracked(), 49);
    ips.detect(ip("10.2.0.1"), c.at(200.0));
    assert_eq!(ips.tracked(), 1);
}

#[test]
fn remembered_blocks_are_bounded() {
    let c = Clock::new();
    let mut ips = Ips::with_capacity(&cfg(Some(1), 60, 3600, &[]), 4);
    for i in 0..10u8 {
        assert!(ips
            .detect(IpAddr::from([10, 0, 0, i]), c.at(f64::from(i)))
            .is_some());
        assert!(ips.blocked.len() <= 4);
    }
    // the latest ones are remembered
    assert!(ips.is_blocked(IpAddr::from([10, 0, 0, 9]), c.at(10.0)));
    assert!(!ips.is_blocked(IpAddr::from([10, 0, 0, 0]), c.at(10.0)));
}

#[test]
fn unblock_lets_a_source_be_blocked_again() {
    let c = Clock::new();
    let mut ips = Ips::new(&cfg(Some(1), 60, 3600, &[]));
    let a = ip("203.0.113.9");
    assert!(ips.detect(a, c.at(0.0)).is_some());
    assert!(ips.detect(a, c.at(1.0)).is_none());
    ips.unblocked(a);
    assert!(ips.detect(a, c.at(2.0)).is_some());
}

#[test]
fn reconfigure_applies_the_new_rules() {
    let c = Clock::new();
    let mut ips = Ips::new(&cfg(Some(3), 60, 60, &[]));
    let (a, b) = (ip("192.0.2.1"), ip("198.51.100.1"));
    ips.detect(a, c.at(0.0));
    ips.detect(a, c.at(1.0));
    ips.detect(b, c.at(1.0));
    ips.reconfigure(&cfg(Some(3), 60, 120, &["192.0.2.0/24"]));
    assert_eq!(ips.tracked(), 1);
    assert_eq!(ips.detect(a, c.at(2.0)), None);
    // a lower threshold: b's earlier detection counts
    ips.reconfigure(&cfg(Some(2), 60, 120, &[]));
    assert_eq!(
        ips.detect(b, c.at(3.0)),
        Some(Block {
            src: b,
            duration: Duration::from_secs(120),
            detections: 2
        })
    );
    // off: everything forgotten
    ips.detect(a, c.at(4.0));
    ips.reconfigure(&cfg(None, 60, 120, &[]));
    assert_eq!(ips.tracked(), 0);
}

#[test]
fn a_huge_block_for_never_ends() {
    let c = Clock::new();
    let mut ips = Ips::new(&IpsConfig {
        threshold: Some(1),
        window: Duration::from_secs(1),
        block_for: Duration::MAX,
        whitelist: Vec::new(),
    });
    let a = ip("192.0.2.1");
    assert!(ips.detect(a, c.at(0.0)).is_some());
    assert!(ips.is_blocked(a, c.at(1e9)));
}

#[test]
fn reasons_have_stable_ids() {
    let mut r = Reasons::default();
    assert_eq!(r.id("manual"), REASON_MANUAL);
    assert_eq!(r.name(REASON_MANUAL), "manual");
    let feodo = Reasons::feed_reason("feodo");
    assert_eq!(feodo, "threat-intel feed feodo");
    let id = r.id(&feodo);
    assert_ne!(id, REASON_MANUAL);
    assert!(id & 0x8000_0000 != 0);
    assert_eq!(r.id(&feodo), id);
    assert_eq!(r.name(id), feodo);
    // another process derives the same id without being told
    assert_eq!(Reasons::default().id(&feodo), id);
    assert_eq!(Reasons::default().name(id), format!("reason {id:#x}"));
    // a collision moves on
    let mut forced = Reasons::default();
    forced.names.insert(id, "something else".into());
    let moved = forced.id(&feodo);
    assert_ne!(moved, id);
    assert_eq!(forced.name(moved), feodo);
    assert_eq!(forced.id(&feodo), moved);
}

#[test]
fn reasons_round_trip_through_json_and_merge() {
    let mut a = Reasons::default();
    let ia = a.id("ids: ET SCAN");
    let mut b = Reasons::default();
    let ib = b.id("threat-intel feed drop");
    let back: Reasons = serde_json::from_slice(&serde_json::to_vec(&a).unwrap()).unwrap();
    assert_eq!(back, a);
    b.merge(&back);
    assert_eq!(b.name(ia), "ids: ET SCAN");
    assert_eq!(b.name(ib), "threat-intel feed drop");
    assert!(reasons_path(Path::new("/sys/fs/bpf/ebpfsentinel"))
        .ends_with("_sys_fs_bpf_ebpfsentinel-reasons.json"));
}
