//! Integration tests of the chain adapters: real daemons (litecoind, anvil,
//! monerod) through testkit, recorded answers for CometBFT and Solana, and a
//! garbage-serving server for hostile answers.

mod bitcoin;
mod cometbft;
mod evm;
mod hostile;
mod monero;
mod solana;
mod support;
