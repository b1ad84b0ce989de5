//! `[[scope]]`: groups of processes managed together (a cgroup, a systemd unit, or the
//! processes whose command name matches a regex), each with a policy, a priority and
//! optionally a fast-tier budget and a guaranteed minimum.

use crate::{Amount, Invalid, PolicyName};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScopeConfig {
    /// Unique name, shown in `tierctl status` and the state tree.
    pub name: String,
    /// A cgroup, relative to the cgroup2 root (`/system.slice/vllm.service`); its
    /// sub-cgroups belong to the scope too.
    pub cgroup: Option<String>,
    /// A systemd unit (`vllm.service`; no suffix means `.service`): its cgroup.
    pub unit: Option<String>,
    /// A regex matched against each process's command name (`/proc/PID/comm`).
    pub comm: Option<String>,
    /// Policy of the scope's processes; unset: `policy.default_policy`.
    pub policy: Option<PolicyName>,
    /// Priority of the scope's processes (higher wins the fast tier when it is short).
    pub priority: i32,
    /// At most this much of the fast tier for the scope's processes together: bytes
    /// (`"2GiB"`) or a percentage of the fast tier (`"25%"`); unset: no cap.
    pub fast_budget: Option<Amount>,
    /// At least this much of the fast tier for the scope's hot data, before
    /// priorities; unset: no guarantee.
    pub fast_min: Option<Amount>,
    /// The scope's GPU: a PCI address (`"0000:3b:00.0"`, or `"3b:00.0"` in domain 0)
    /// or an index among the GPUs in PCI bus order (`3` or `"3"`). The scope's fast
    /// tier becomes the fast node(s) near that GPU; unset: the whole fast tier.
    #[serde(deserialize_with = "gpu_name", skip_serializing_if = "Option::is_none")]
    pub gpu: Option<String>,
}

/// A GPU named by index (a TOML integer) or by text.
fn gpu_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Index(u64),
        Text(String),
    }
    Ok(Some(match Raw::deserialize(d)? {
        Raw::Index(i) => i.to_string(),
        Raw::Text(s) => s,
    }))
}

/// Checks how a GPU is named: a decimal index, or a PCI address `[dddd:]bb:dd.f` in
/// hex. Whether that GPU exists is the daemon's check (it knows the machine).
pub fn check_gpu(g: &str) -> Result<(), String> {
    let g = g.trim();
    if !g.is_empty() && g.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(());
    }
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let parts: Vec<&str> = g.split(':').collect();
    let ok = match parts[..] {
        [bus, df] => Some((bus, df)),
        [dom, bus, df] if hex(dom, 4) => Some((bus, df)),
        _ => None,
    }
    .and_then(|(bus, df)| Some((bus, df.split_once('.')?)))
    .is_some_and(|(bus, (dev, fun))| hex(bus, 2) && hex(dev, 2) && hex(fun, 1));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "gpu {g:?} is neither an index (0, 1, ...) nor a PCI address (0000:3b:00.0)"
        ))
    }
}

/// What a scope selects, exactly one of the three.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Cgroup(String),
    Unit(String),
    Comm(String),
}

impl Selector {
    /// `cgroup`, `unit` or `comm`.
    pub fn kind(&self) -> &'static str {
        match self {
            Selector::Cgroup(_) => "cgroup",
            Selector::Unit(_) => "unit",
            Selector::Comm(_) => "comm",
        }
    }

    pub fn value(&self) -> &str {
        match self {
            Selector::Cgroup(v) | Selector::Unit(v) | Selector::Comm(v) => v,
        }
    }

    /// Checks the value: a cgroup path is absolute without `.`/`..` components, a
    /// unit name has no `/`, a comm regex compiles.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Selector::Cgroup(p) => {
                if !p.starts_with('/') {
                    return Err(format!(
                        "cgroup {p:?} must start with / (relative to the cgroup2 root)"
                    ));
                }
                if p.split('/').any(|c| c == ".." || c == ".") {
                    return Err(format!("cgroup {p:?} must not contain . or .."));
                }
                Ok(())
            }
            Selector::Unit(u) => {
                if u.is_empty() || u.contains('/') || u.starts_with('.') {
                    return Err(format!("unit {u:?} is not a unit name"));
                }
                Ok(())
            }
            Selector::Comm(r) => regex::Regex::new(r)
                .map(|_| ())
                .map_err(|e| format!("comm {r:?} is not a regex: {e}")),
        }
    }
}

impl ScopeConfig {
    /// The scope's selector, if exactly one of `cgroup`, `unit`, `comm` is set.
    pub fn selector(&self) -> Result<Selector, String> {
        let set: Vec<Selector> = [
            self.cgroup.clone().map(Selector::Cgroup),
            self.unit.clone().map(Selector::Unit),
            self.comm.clone().map(Selector::Comm),
        ]
        .into_iter()
        .flatten()
        .collect();
        match <[Selector; 1]>::try_from(set) {
            Ok([s]) => Ok(s),
            Err(v) => Err(format!(
                "needs exactly one of cgroup, unit, comm ({} set)",
                v.len()
            )),
        }
    }

    /// Checks one scope (key prefix `scope`).
    pub fn check(&self) -> Result<(), String> {
        if self.name.is_empty() {
            return Err("name must be set".into());
        }
        self.selector()?.check()?;
        if let Some(g) = &self.gpu {
            check_gpu(g)?;
        }
        // Comparable only when both are bytes or both percentages (the daemon caps the
        // minimum at the budget once the fast tier's size is known).
        let over = match (self.fast_min, self.fast_budget) {
            (Some(Amount::Bytes(min)), Some(Amount::Bytes(max))) => min > max,
            (Some(Amount::Percent(min)), Some(Amount::Percent(max))) => min > max,
            _ => false,
        };
        if over {
            return Err("fast_min must not exceed fast_budget".into());
        }
        Ok(())
    }
}

/// Checks every scope and that names are unique.
pub(crate) fn validate(scopes: &[ScopeConfig]) -> Result<(), Invalid> {
    for (i, s) in scopes.iter().enumerate() {
        s.check()
            .map_err(|r| Invalid::new("scope.name", format!("scope {:?}: {r}", s.name)))?;
        if scopes[..i].iter().any(|o| o.name == s.name) {
            return Err(Invalid::new(
                "scope.name",
                format!("two scopes are named {:?}", s.name),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::{Amount, Config, PolicyName};
    use std::path::Path;

    #[test]
    fn scopes_parse_and_are_checked() {
        let c = Config::parse(
            "[[scope]]\nname = \"vllm\"\ncgroup = \"/system.slice/vllm.service\"\n\
             policy = \"lru-tiered\"\npriority = 5\nfast_budget = \"25%\"\nfast_min = \"1GiB\"\n\
             [[scope]]\nname = \"py\"\ncomm = \"^python[0-9.]*$\"\n",
            Path::new("c"),
        )
        .unwrap();
        assert_eq!(c.scopes.len(), 2);
        assert_eq!(c.scopes[0].policy, Some(PolicyName::LruTiered));
        assert_eq!(c.scopes[0].fast_budget, Some(Amount::Percent(25.0)));
        assert_eq!(c.scopes[0].fast_min, Some(Amount::Bytes(1 << 30)));
        assert_eq!(c.scopes[1].selector().unwrap().kind(), "comm");
        let again = Config::parse(&c.to_toml(), Path::new("x")).unwrap();
        assert_eq!(again, c);

        for (text, want) in [
            ("[[scope]]\nname = \"a\"\n", "exactly one of"),
            (
                "[[scope]]\nname = \"a\"\ncgroup = \"/x\"\nunit = \"x\"\n",
                "exactly one of",
            ),
            ("[[scope]]\nname = \"a\"\ncgroup = \"/x/../y\"\n", ".."),
            ("[[scope]]\nname = \"a\"\ncgroup = \"x\"\n", "must start with /"),
            ("[[scope]]\nname = \"a\"\ncomm = \"(\"\n", "not a regex"),
            (
                "[[scope]]\nname = \"a\"\ncomm = \"x\"\n[[scope]]\nname = \"a\"\ncomm = \"y\"\n",
                "two scopes",
            ),
            (
                "[[scope]]\nname = \"a\"\ncomm = \"x\"\nfast_budget = \"10%\"\nfast_min = \"20%\"\n",
                "fast_min",
            ),
        ] {
            let m = Config::parse(text, Path::new("c")).unwrap_err().to_string();
            assert!(m.contains(want), "{text}: {m}");
        }
    }

    #[test]
    fn a_scope_names_its_gpu_by_pci_address_or_index() {
        let c = Config::parse(
            "[[scope]]\nname = \"a\"\nunit = \"a\"\ngpu = \"0000:3B:00.0\"\n\
             [[scope]]\nname = \"b\"\nunit = \"b\"\ngpu = 3\n\
             [[scope]]\nname = \"c\"\nunit = \"c\"\ngpu = \"17:00.0\"\n\
             [[scope]]\nname = \"d\"\nunit = \"d\"\n",
            Path::new("c"),
        )
        .unwrap();
        let gpus: Vec<Option<&str>> = c.scopes.iter().map(|s| s.gpu.as_deref()).collect();
        assert_eq!(
            gpus,
            [Some("0000:3B:00.0"), Some("3"), Some("17:00.0"), None]
        );
        let again = Config::parse(&c.to_toml(), Path::new("x")).unwrap();
        assert_eq!(again, c);
        for bad in [
            "\"\"",
            "\"gpu0\"",
            "\"3b:00\"",
            "\"00:3b:00.0\"",
            "\"1:2:3:4\"",
            "-1",
        ] {
            let text = format!("[[scope]]\nname = \"a\"\nunit = \"a\"\ngpu = {bad}\n");
            assert!(
                Config::parse(&text, Path::new("c")).is_err(),
                "{bad} accepted"
            );
        }
        let m = Config::parse(
            "[[scope]]\nname = \"a\"\nunit = \"a\"\ngpu = \"gpu0\"\n",
            Path::new("c"),
        )
        .unwrap_err()
        .to_string();
        assert!(m.contains("neither an index"), "{m}");
    }
}
