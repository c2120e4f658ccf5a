//! Control-plane tests with real litecoind and anvil processes.

mod alerts;
mod failover;
mod fleet;
mod reconcile;
