//! End-to-end tests of the `chainfleet` binary with real nodes.

mod cli;
mod failover_etcd;
mod lifecycle;
