//! One module per subcommand.

pub mod completions;
pub mod config;
pub mod heat;
pub mod heatmap;
pub mod man;
pub mod manage;
pub mod migrate;
pub mod placement;
pub mod status;
pub mod tiers;
pub mod top;

use crate::client::Failure;

/// Prints a reply value as one JSON document.
pub fn print_json(v: &serde_json::Value) -> Result<(), Failure> {
    let s = serde_json::to_string_pretty(v).map_err(|e| Failure::Other(e.to_string()))?;
    println!("{s}");
    Ok(())
}
