//! `jget PATH < doc.json`: prints the JSON value at a dotted path (`nodes.1.tier`,
//! `failed_pages.EBUSY`) for the VM scenarios, which run under busybox without jq.
//! Strings print bare, arrays print their length, other values as JSON; a missing
//! path exits 1.

use std::io::Read;

fn main() -> anyhow::Result<()> {
    let path = std::env::args().nth(1).unwrap_or_default();
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    let mut v: serde_json::Value = serde_json::from_str(&text)?;
    for key in path.split('.').filter(|k| !k.is_empty()) {
        v = match v {
            serde_json::Value::Array(mut a) => {
                let i: usize = key
                    .parse()
                    .map_err(|_| anyhow::anyhow!("{key:?} is not an index"))?;
                if i >= a.len() {
                    std::process::exit(1);
                }
                a.swap_remove(i)
            }
            serde_json::Value::Object(mut o) => match o.remove(key) {
                Some(x) => x,
                None => std::process::exit(1),
            },
            _ => std::process::exit(1),
        };
    }
    match v {
        serde_json::Value::String(s) => println!("{s}"),
        serde_json::Value::Array(a) => println!("{}", a.len()),
        other => println!("{other}"),
    }
    Ok(())
}
