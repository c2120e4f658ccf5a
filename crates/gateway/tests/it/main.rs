//! Gateway tests with real litecoind and anvil nodes behind it.

mod bad_input;
mod controller;
mod evm;
mod harness;
mod litecoin;
mod routing;
mod ws;
