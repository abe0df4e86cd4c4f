//! tc_ids through BPF_PROG_TEST_RUN: frames run through the TC entry programs with the IDS
//! slot filled; verdicts, the stage's counters and the events it emits are checked exactly.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use common::{privileged, Firewall};
use ebpfsentinel::abi::tc_stage;
use ebpfsentinel::ids;
use ebpfsentinel::maps::ids::{ids_stat, IdsMaps};
use ebpfsentinel::packet::{PacketBuilder, TcpFlags};

const TC_NEXT: i32 = -1;
const TC_SHOT: i32 = 2;

const SRC4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const DST4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const SRC6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const DST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

struct Ids {
    fw: Firewall,
    maps: IdsMaps,
    compiled: ids::CompiledIds,
}

fn config(yaml: &str) -> ebpfsentinel::config::Config {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/inline.yaml"));
    ebpfsentinel::config::parse_str(yaml, path).unwrap_or_else(|e| panic!("config:\n{e}"))
}

impl Ids {
    /// tc_ids with the `ids` section of `yaml`.
    fn new(yaml: &str) -> Ids {
        let fw = Firewall::load("firewall: {}\n");
        let maps = fw.dp.ids_maps().expect("ids maps");
        fw.dp
            .set_tc_stage(tc_stage::TC_STAGE_IDS, true)
            .expect("ids slot");
        let mut ids = Ids {
            fw,
            maps,
            compiled: ids::CompiledIds::default(),
        };
        ids.apply(yaml);
        ids
    }

    fn apply(&mut self, yaml: &str) {
        let cfg = config(yaml);
        let section = cfg.ids.expect("an ids section");
        let rs = ids::load(&section, cfg.conntrack.enabled).expect("rule files");
        self.compiled = ids::compile(&rs.rules, rs.sampling);
        assert!(self.compiled.refused.is_empty(), "{:?}", self.compiled.refused);
        self.maps.apply(&self.compiled).expect("apply");
    }

    fn verdict(&self, frame: &[u8]) -> i32 {
        self.fw.tc(true, frame).0
    }

    fn stat(&self, s: ids_stat) -> u64 {
        self.maps.stats().expect("stats")[s.0 as usize]
    }
}

fn tcp4(dport: u16, payload: &[u8]) -> Vec<u8> {
    PacketBuilder::new()
        .ipv4(SRC4, DST4)
        .tcp(40000, dport, TcpFlags(TcpFlags::ACK.0 | TcpFlags::PSH.0))
        .payload(payload)
        .build()
}

const EVIL: &str = r#"
ids:
  sampling: 1.0
  rules:
    - { id: evil, proto: tcp, dst_port: 7777, content: "X-EVIL-MARKER", action: drop }
"#;

#[test]
fn drops_the_marker_and_passes_the_rest() {
    if !privileged("drops_the_marker_and_passes_the_rest") {
        return;
    }
    let ids = Ids::new(EVIL);
    assert_eq!(ids.verdict(&tcp4(7777, b"GET / X-EVIL-MARKER\r\n")), TC_SHOT);
    assert_eq!(ids.verdict(&tcp4(7777, b"GET / X-GOOD-MARKER\r\n")), TC_NEXT);
    assert_eq!(ids.verdict(&tcp4(7778, b"GET / X-EVIL-MARKER\r\n")), TC_NEXT);
    assert_eq!(ids.stat(ids_stat::IDS_STAT_SEEN), 3);
    assert_eq!(ids.stat(ids_stat::IDS_STAT_CANDIDATE), 2);
    assert_eq!(ids.stat(ids_stat::IDS_STAT_MATCH_DROP), 1);
}
