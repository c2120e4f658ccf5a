//! Control-plane tests with real litecoind and anvil processes.

mod fleet;
mod reconcile;
