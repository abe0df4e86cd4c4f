pub mod config;
pub mod packet;
pub mod pcap;
pub mod skel;
