//! Config value types with units: byte sizes (`"64MiB"` or an integer) and amounts that
//! are either bytes or a percentage of a node (`"5%"`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A byte count; TOML accepts `67108864` or `"64MiB"` / `"64 MB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Bytes(pub u64);

impl Bytes {
    pub const fn mib(n: u64) -> Bytes {
        Bytes(n << 20)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(Bytes(n)),
            Raw::Text(s) => parse_bytes(&s).map(Bytes).map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
        for (name, unit) in UNITS {
            if self.0 >= unit && self.0.is_multiple_of(unit) {
                return write!(f, "{}{}", self.0 / unit, name);
            }
        }
        write!(f, "{}", self.0)
    }
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("{s:?} is not a byte size (like \"64MiB\"): {e}"))
}

/// Bytes, or a percentage of the node's total memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    Bytes(u64),
    Percent(f64),
}

impl Amount {
    /// `"25%"`, `"2GiB"` or a plain byte count, as the config takes them.
    pub fn parse(s: &str) -> Result<Amount, String> {
        match s.trim().strip_suffix('%') {
            Some(p) => {
                let v: f64 = p
                    .trim()
                    .parse()
                    .map_err(|_| format!("{s:?} is not a percentage"))?;
                if !(0.0..=100.0).contains(&v) {
                    return Err(format!("{s:?}: a percentage must be within 0%..100%"));
                }
                Ok(Amount::Percent(v))
            }
            None => parse_bytes(s).map(Amount::Bytes),
        }
    }

    /// Resolves against a node of `total_bytes`.
    pub fn of(&self, total_bytes: u64) -> u64 {
        match *self {
            Amount::Bytes(b) => b,
            Amount::Percent(p) => ((total_bytes as f64) * p / 100.0) as u64,
        }
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(Amount::Bytes(n)),
            Raw::Text(s) => Amount::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Amount::Bytes(b) => Bytes(*b).serialize(s),
            Amount::Percent(p) => s.serialize_str(&format!("{p}%")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct T {
        b: Bytes,
        a: Amount,
    }

    #[test]
    fn sizes_and_percentages() {
        let t: T = toml::from_str("b = \"64MiB\"\na = \"5%\"").unwrap();
        assert_eq!(t.b, Bytes(64 << 20));
        assert_eq!(t.a.of(1000), 50);
        let t: T = toml::from_str("b = 4096\na = \"1 GiB\"").unwrap();
        assert_eq!(t.b, Bytes(4096));
        assert_eq!(t.a, Amount::Bytes(1 << 30));
        assert!(toml::from_str::<T>("b = \"lots\"\na = 1").is_err());
        assert!(toml::from_str::<T>("b = 1\na = \"150%\"").is_err());
        assert_eq!(Bytes(64 << 20).to_string(), "64MiB");
    }
}
