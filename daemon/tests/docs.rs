//! Docs a newcomer can trust: every thread tierd names (a `"tierd-…"` string literal
//! given to a thread builder in `src/`) is described in docs/architecture.md.

use std::path::Path;

fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push((
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            ));
        }
    }
}

#[test]
fn architecture_md_names_every_thread() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("../docs/architecture.md")).unwrap();
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    // Thread names: the `"tierd-…"` literals of the code (outside unit tests), which
    // are the names given to thread builders; test-only threads say "test".
    let re = regex::Regex::new(r#""(tierd-[a-z0-9-]+)""#).unwrap();
    let mut names = std::collections::BTreeSet::new();
    for (path, text) in &files {
        // Only the code, not a file's unit tests.
        let code = text.split("#[cfg(test)]\nmod").next().unwrap_or_default();
        for c in re.captures_iter(code) {
            let name = &c[1];
            if !name.contains("test") {
                names.insert((name.to_string(), path.clone()));
            }
        }
    }
    assert!(names.len() >= 10, "found only {names:?}");
    let missing: Vec<_> = names
        .iter()
        .filter(|(n, _)| !doc.contains(&format!("`{n}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "threads not in docs/architecture.md: {missing:?}"
    );
}
