//! `chainfleet` subcommands for the gateway (to be written).

use anyhow::Result;
use clap::Subcommand;

/// gateway subcommands.
#[derive(Subcommand)]
pub enum Commands {}

/// Run one gateway subcommand.
pub async fn run(command: Commands) -> Result<()> {
    match command {}
}
