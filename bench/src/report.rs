//! `RESULT key=value` lines (collected by tests/vm/run.sh into results.txt), with an
//! optional prefix so several runs in one scenario stay apart (`kernel.hot_fast_fraction`).

use std::fmt::Display;

#[derive(Debug, Clone, Default)]
pub struct Reporter {
    prefix: String,
}

impl Reporter {
    /// `tag` "" prints bare keys; otherwise keys become `tag.key`.
    pub fn new(tag: &str) -> Reporter {
        let prefix = if tag.is_empty() {
            String::new()
        } else {
            format!("{tag}.")
        };
        Reporter { prefix }
    }

    pub fn line(&self, key: &str, value: impl Display) -> String {
        format!("RESULT {}{key}={value}", self.prefix)
    }

    /// Prints one RESULT line.
    pub fn result(&self, key: &str, value: impl Display) {
        println!("{}", self.line(key, value));
    }

    /// Prints a fraction or ratio with 4 decimals.
    pub fn ratio(&self, key: &str, value: f64) {
        self.result(key, format!("{value:.4}"));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lines() {
        assert_eq!(super::Reporter::new("").line("a", 1), "RESULT a=1");
        assert_eq!(super::Reporter::new("k").line("a", "x"), "RESULT k.a=x");
    }
}
