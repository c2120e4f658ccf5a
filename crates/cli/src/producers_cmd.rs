//! `chainfleet` subcommands for the producers (to be written).

use anyhow::Result;
use clap::Subcommand;

/// producers subcommands.
#[derive(Subcommand)]
pub enum Commands {}

/// Run one producers subcommand.
pub async fn run(command: Commands) -> Result<()> {
    match command {}
}
