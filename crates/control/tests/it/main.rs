//! Control-plane tests with real litecoind and anvil processes.

mod failover;
mod fleet;
mod reconcile;
