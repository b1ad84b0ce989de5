//! Runtime scopes (`tierctl manage --cgroup/--unit/--comm`), kept in
//! `daemon.scopes_file` (`/var/lib/tierd/scopes.json`: not under `/run`, so they survive
//! a reboot too) so a restarted tierd manages them again. Written atomically
//! ([`super::write_atomic`]) by [`crate::scope::Scopes`] on every add and remove; read
//! by main at start. Config scopes are not written here: the config file has them.

use super::{write_atomic, PersistError};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tierd_config::ScopeConfig;

/// Format of the file; bumped on an incompatible change (an unknown one is ignored).
const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct FileV1 {
    version: u32,
    scopes: Vec<ScopeConfig>,
}

/// Rewrites the file with `scopes`.
pub fn save(path: &Path, scopes: &[ScopeConfig]) -> Result<(), PersistError> {
    let file = FileV1 {
        version: VERSION,
        scopes: scopes.to_vec(),
    };
    let bytes = serde_json::to_vec_pretty(&file).map_err(|e| PersistError::Parse {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    write_atomic(path, &bytes)
}

/// The scopes a previous tierd kept; no file is none, another version or a corrupt
/// file an error (the caller logs it and starts with none).
pub fn load(path: &Path) -> Result<Vec<ScopeConfig>, PersistError> {
    Ok(
        super::read_versioned(path, VERSION, |f: &FileV1| f.version)?
            .map_or_else(Vec::new, |f| f.scopes),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tierd_config::Amount;

    #[test]
    fn saved_scopes_load_again_and_bad_files_are_errors() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("lib/scopes.json");
        assert!(load(&path).unwrap().is_empty());
        let s = ScopeConfig {
            name: "vllm".into(),
            cgroup: Some("/system.slice/vllm.service".into()),
            priority: 3,
            fast_budget: Some(Amount::Percent(25.0)),
            ..Default::default()
        };
        save(&path, std::slice::from_ref(&s)).unwrap();
        assert_eq!(load(&path).unwrap(), vec![s]);
        std::fs::write(&path, r#"{"version":9,"scopes":[]}"#).unwrap();
        assert!(matches!(load(&path), Err(PersistError::Parse { .. })));
    }
}
