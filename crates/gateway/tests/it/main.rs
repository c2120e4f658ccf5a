//! Gateway tests with real litecoind, anvil and monerod nodes behind it.

mod bad_input;
mod cache;
mod controller;
mod evm;
mod harness;
mod litecoin;
mod monero;
mod routing;
mod ws;
