//! `chainfleet` subcommands for the alerts (to be written).

use anyhow::Result;
use clap::Subcommand;

/// alerts subcommands.
#[derive(Subcommand)]
pub enum Commands {}

/// Run one alerts subcommand.
pub async fn run(command: Commands) -> Result<()> {
    match command {}
}
