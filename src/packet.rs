//! Packet builder.
