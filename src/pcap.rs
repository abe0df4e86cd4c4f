//! pcap/pcapng reading.
