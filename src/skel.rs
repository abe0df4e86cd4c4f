//! The generated skeletons: the only door to generated code.
#![allow(
    clippy::all,
    clippy::undocumented_unsafe_blocks,
    unused_qualifications,
    non_camel_case_types,
    dead_code
)]

pub mod xdp_firewall {
    include!(concat!(env!("OUT_DIR"), "/xdp_firewall.skel.rs"));
}

pub mod xdp_floor {
    include!(concat!(env!("OUT_DIR"), "/xdp_floor.skel.rs"));
}

pub mod xdp_ratelimit {
    include!(concat!(env!("OUT_DIR"), "/xdp_ratelimit.skel.rs"));
}

pub mod tc_conntrack {
    include!(concat!(env!("OUT_DIR"), "/tc_conntrack.skel.rs"));
}

pub mod tc_threatintel {
    include!(concat!(env!("OUT_DIR"), "/tc_threatintel.skel.rs"));
}

pub mod tc_scrub {
    include!(concat!(env!("OUT_DIR"), "/tc_scrub.skel.rs"));
}

pub mod tc_bench {
    include!(concat!(env!("OUT_DIR"), "/tc_bench.skel.rs"));
}

pub mod tc_dns {
    include!(concat!(env!("OUT_DIR"), "/tc_dns.skel.rs"));
}

pub mod xdp_lb {
    include!(concat!(env!("OUT_DIR"), "/xdp_lb.skel.rs"));
}

pub mod tc_ids {
    include!(concat!(env!("OUT_DIR"), "/tc_ids.skel.rs"));
}
