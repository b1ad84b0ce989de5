//! `tierctl man --out DIR`: roff man pages from the clap definitions (`clap_mangen`):
//! `tierd.1`, `tierctl.1` and one `tierctl-<sub>.1` per subcommand.

use super::completions::Program;
use crate::client::Failure;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory to write the pages into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

pub fn run(a: Args) -> Result<(), Failure> {
    std::fs::create_dir_all(&a.out)
        .map_err(|e| Failure::Other(format!("{}: cannot create: {e}", a.out.display())))?;
    for p in [Program::Tierd, Program::Tierctl] {
        let (cmd, _) = p.command();
        clap_mangen::generate_to(cmd, &a.out)
            .map_err(|e| Failure::Other(format!("{}: cannot write pages: {e}", a.out.display())))?;
    }
    let mut pages: Vec<String> = std::fs::read_dir(&a.out)
        .map_err(|e| Failure::Other(format!("{}: {e}", a.out.display())))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".1"))
        .collect();
    pages.sort();
    println!("{}: {}", a.out.display(), pages.join(" "));
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn writes_daemon_and_cli_pages() {
        let dir = tempfile::tempdir().unwrap();
        super::run(super::Args {
            out: dir.path().to_path_buf(),
        })
        .unwrap();
        for page in ["tierd.1", "tierctl.1", "tierctl-top.1", "tierctl-status.1"] {
            let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
            assert!(text.contains(".TH"), "{page} is not a roff page");
        }
        let tierd = std::fs::read_to_string(dir.path().join("tierd.1")).unwrap();
        assert!(
            tierd.contains("check\\-config"),
            "tierd.1 documents --check-config"
        );
    }
}
