//! End to end: `ebpfsentinel run` on the router end of a veth pair between two namespaces,
//! started through `ip netns exec` with a pin root on a bpffs mounted for the test; real
//! UDP, TCP and ICMP from an address inside a Spamhaus DROP prefix are dropped, the same from
//! an unlisted address pass, and the pinned counters agree with the traffic.

mod common;

use ebpfsentinel::maps::Generations;
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use common::daemon::{Daemon, Scratch};
use common::netns::{veth, Netns};
use common::traffic;
use ebpfsentinel::abi::fw_stat;
use ebpfsentinel::maps::firewall::FirewallMaps;

const LISTED_V4: &str = "1.10.16.5"; // inside 1.10.16.0/20 of the shipped Spamhaus DROP list
const CLEAN_V4: &str = "10.77.0.2";
const ROUTER_V4: &str = "10.77.0.1";
const LISTED_V6: &str = "2001:db8:bad::5";
const CLEAN_V6: &str = "2001:db8:77::2";
const ROUTER_V6: &str = "2001:db8:77::1";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn stat(maps: &FirewallMaps, s: fw_stat) -> u64 {
    maps.stats().unwrap()[s.0 as usize]
}

#[test]
fn spamhaus_drop_list_blocks_real_traffic() {
    if !common::privileged("spamhaus_drop_list_blocks_real_traffic") {
        return;
    }
    let client = Netns::new("e2e-client");
    let router = Netns::new("e2e-router");
    veth(&client, "eC", &router, "eR");
    client.exec(&["ip", "addr", "add", "10.77.0.2/24", "dev", "eC"]);
    client.exec(&["ip", "addr", "add", "1.10.16.5/32", "dev", "eC"]);
    client.exec(&[
        "ip",
        "-6",
        "addr",
        "add",
        "2001:db8:77::2/64",
        "dev",
        "eC",
        "nodad",
    ]);
    client.exec(&[
        "ip",
        "-6",
        "addr",
        "add",
        "2001:db8:bad::5/128",
        "dev",
        "eC",
        "nodad",
    ]);
    client.exec(&["ip", "-6", "route", "add", "default", "via", ROUTER_V6]);
    router.exec(&["ip", "addr", "add", "10.77.0.1/24", "dev", "eR"]);
    router.exec(&["ip", "route", "add", "1.10.16.5/32", "dev", "eR"]);
    router.exec(&[
        "ip",
        "-6",
        "addr",
        "add",
        "2001:db8:77::1/64",
        "dev",
        "eR",
        "nodad",
    ]);
    router.exec(&[
        "ip",
        "-6",
        "route",
        "add",
        "2001:db8:bad::5/128",
        "via",
        CLEAN_V6,
    ]);

    let scratch = Scratch::new("e2e");
    let config = scratch.dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
interfaces: [eR]
xdp_mode: auto
firewall:
  aliases:
    spamhaus: {{ file: {}/spamhaus_drop.netset }}
  rules:
    - {{ id: drop-spamhaus, action: drop, src: "@spamhaus", log: true }}
    - {{ id: drop-v6-lab, action: drop, src: "2001:db8:bad::/48" }}
"#,
            common::feeds_dir().display()
        ),
    )
    .unwrap();

    let pin_root = scratch.pin_root();
    let mut daemon = Daemon::start(&router, &config, &pin_root, &["--transient"]);
    assert!(daemon.ready.contains("eR"), "{}", daemon.ready);

    let maps = FirewallMaps::from_pins(&pin_root).expect("pinned maps");

    // UDP: exact counts, nothing else comes from the listed source meanwhile
    let rx4 = traffic::udp_bind(&router, SocketAddr::new(ip(ROUTER_V4), 5555));
    let rx6 = traffic::udp_bind(&router, SocketAddr::new(ip(ROUTER_V6), 5555));
    let drops_before = stat(&maps, fw_stat::FW_STAT_DROP_RULE);
    let passes_before = stat(&maps, fw_stat::FW_STAT_PASS_DEFAULT);
    const N: usize = 50;
    // Clean sources first: neighbour discovery sourced from a listed address is dropped too,
    // which would leave the client unable to resolve the router at all.
    traffic::udp_send(
        &client,
        ip(CLEAN_V4),
        SocketAddr::new(ip(ROUTER_V4), 5555),
        N,
    );
    traffic::udp_send(
        &client,
        ip(CLEAN_V6),
        SocketAddr::new(ip(ROUTER_V6), 5555),
        N,
    );
    traffic::udp_send(
        &client,
        ip(LISTED_V4),
        SocketAddr::new(ip(ROUTER_V4), 5555),
        N,
    );
    traffic::udp_send(
        &client,
        ip(LISTED_V6),
        SocketAddr::new(ip(ROUTER_V6), 5555),
        N,
    );
    let got4 = traffic::udp_drain(&rx4);
    let got6 = traffic::udp_drain(&rx6);
    assert_eq!(
        got4.get(&ip(LISTED_V4)),
        None,
        "listed v4 source got through: {got4:?}"
    );
    assert_eq!(
        got4.get(&ip(CLEAN_V4)),
        Some(&N),
        "clean v4 source: {got4:?}"
    );
    assert_eq!(
        got6.get(&ip(LISTED_V6)),
        None,
        "listed v6 source got through: {got6:?}"
    );
    assert_eq!(
        got6.get(&ip(CLEAN_V6)),
        Some(&N),
        "clean v6 source: {got6:?}"
    );
    let dropped = stat(&maps, fw_stat::FW_STAT_DROP_RULE) - drops_before;
    assert_eq!(
        dropped,
        2 * N as u64,
        "drop counter vs datagrams from listed sources"
    );
    let passed = stat(&maps, fw_stat::FW_STAT_PASS_DEFAULT) - passes_before;
    assert!(
        passed >= 2 * N as u64,
        "pass counter {passed} vs {} clean datagrams",
        2 * N
    );
    let gen = maps.active_generation().unwrap();
    let hits = maps.rule_hits(gen, 2).unwrap();
    assert_eq!(hits[0].0, N as u64, "hits of drop-spamhaus");
    assert_eq!(hits[1].0, N as u64, "hits of drop-v6-lab");

    // TCP: the handshake from the listed source never completes, the clean one echoes
    let server = traffic::tcp_echo_server(
        traffic::tcp_listen(&router, SocketAddr::new(ip(ROUTER_V4), 5556)),
        1,
    );
    let blocked = traffic::tcp_exchange(
        &client,
        ip(LISTED_V4),
        SocketAddr::new(ip(ROUTER_V4), 5556),
        Duration::from_millis(1500),
    );
    assert!(blocked.is_err(), "TCP from the listed source connected");
    traffic::tcp_exchange(
        &client,
        ip(CLEAN_V4),
        SocketAddr::new(ip(ROUTER_V4), 5556),
        Duration::from_secs(5),
    )
    .expect("TCP from the clean source");
    assert_eq!(server.join().unwrap(), 1);

    // ICMP echo
    let before = stat(&maps, fw_stat::FW_STAT_DROP_RULE);
    assert!(!traffic::ping4(
        &client,
        ip(LISTED_V4),
        ip(ROUTER_V4),
        0x4242,
        Duration::from_millis(800)
    ));
    assert!(traffic::ping4(
        &client,
        ip(CLEAN_V4),
        ip(ROUTER_V4),
        0x4243,
        Duration::from_secs(3)
    ));
    assert_eq!(
        stat(&maps, fw_stat::FW_STAT_DROP_RULE) - before,
        1,
        "one echo request dropped"
    );
    assert!(
        stat(&maps, fw_stat::FW_STAT_PASS_NON_IP) >= 1,
        "ARP/ND pass as non-IP"
    );

    // the logged rule's events reached the daemon's stdout as JSON lines
    std::thread::sleep(Duration::from_millis(500));
    let events: Vec<serde_json::Value> = daemon
        .stdout
        .try_iter()
        .map(|l| serde_json::from_str(&l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    let udp_events = events
        .iter()
        .filter(|e| e["src_ip"] == LISTED_V4 && e["proto"] == "UDP")
        .count();
    assert_eq!(udp_events, N, "one event per dropped datagram");
    let e = events
        .iter()
        .find(|e| e["proto"] == "ICMP")
        .expect("an ICMP event");
    assert_eq!(e["rule_id"], "drop-spamhaus");
    assert_eq!(e["action"], "drop");
    assert_eq!(e["in_iface"], "eR");
    assert_eq!(e["icmp_type"], 8);

    // status sees the daemon and its interface
    let status = Command::new(env!("CARGO_BIN_EXE_ebpfsentinel"))
        .args(["status", "--json", "--pin-root"])
        .arg(&pin_root)
        .output()
        .unwrap();
    assert!(status.status.success());
    let st: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(st["daemon_pid"].is_u64(), "{st}");
    assert_eq!(st["interfaces"][0]["ifname"], "eR");

    // a transient run detaches and unpins on SIGTERM; traffic from the listed source flows again
    daemon.signal(libc::SIGTERM);
    let exit = daemon.wait();
    assert!(exit.success(), "daemon exit: {exit:?}");
    assert!(!pin_root.join("fw_stats").exists(), "pins left behind");
    let link = Command::new("ip")
        .args(["-n", &router.name, "link", "show", "eR"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&link.stdout).contains("prog/xdp"),
        "XDP left attached"
    );
    traffic::udp_send(
        &client,
        ip(LISTED_V4),
        SocketAddr::new(ip(ROUTER_V4), 5555),
        5,
    );
    let after = traffic::udp_drain(&rx4);
    assert_eq!(
        after.get(&ip(LISTED_V4)),
        Some(&5),
        "forwarding restored after stop"
    );
}
