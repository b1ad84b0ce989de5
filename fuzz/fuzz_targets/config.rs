//! tierd's config file (`tierd --config`, `tierctl reload`, `tierctl config check`):
//! `Config::parse` must never panic on any text, and a config it accepts must render
//! (`tierctl config show`) to TOML that parses again to the same config.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use tierd_config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = Config::parse(text, Path::new("fuzz.toml")) {
        let shown = cfg.to_toml();
        let again = Config::parse(&shown, Path::new("shown.toml"))
            .unwrap_or_else(|e| panic!("config show output does not parse: {e}\n{shown}"));
        assert!(cfg.diff(&again).is_empty(), "{:?}", cfg.diff(&again));
    }
});
