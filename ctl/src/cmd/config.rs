//! `tierctl config show`, `tierctl reload`, `tierctl metrics`.

use crate::client::{call, Failure};
use std::path::Path;
use tierd_api::{ConfigReply, MetricsReply, ReloadReply, Request};

#[derive(clap::Subcommand, Debug)]
pub enum ConfigCmd {
    /// Print the config in force (TOML).
    Show,
}

pub fn run(socket: &Path, json: bool, c: ConfigCmd) -> Result<(), Failure> {
    match c {
        ConfigCmd::Show => {
            let (r, v): (ConfigReply, _) = call(socket, &Request::ConfigShow)?;
            if json {
                return super::print_json(&v);
            }
            println!(
                "# from {}",
                r.path.as_deref().unwrap_or("built-in defaults")
            );
            print!("{}", r.toml);
            Ok(())
        }
    }
}

pub fn reload(socket: &Path, json: bool) -> Result<(), Failure> {
    let (r, v): (ReloadReply, _) = call(socket, &Request::Reload)?;
    if json {
        return super::print_json(&v);
    }
    println!(
        "config reloaded from {}",
        r.path.as_deref().unwrap_or("built-in defaults")
    );
    if r.changes.is_empty() {
        println!("  (no changes)");
    }
    for c in &r.changes {
        println!("  {c}");
    }
    Ok(())
}

pub fn metrics(socket: &Path, json: bool) -> Result<(), Failure> {
    let (r, v): (MetricsReply, _) = call(socket, &Request::Metrics)?;
    if json {
        return super::print_json(&v);
    }
    print!("{}", r.text);
    Ok(())
}
