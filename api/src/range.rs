//! `START-END` address ranges as typed on the command line: decimal or `0x` hex.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A half-open virtual address range `[start, end)`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct AddrRange {
    pub start: u64,
    pub end: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RangeParseError {
    #[error("range {0:?} is not START-END")]
    Shape(String),
    #[error("address {0:?} is neither decimal nor 0x-hex")]
    Number(String),
    #[error("range {start:#x}-{end:#x} is empty or reversed")]
    Empty { start: u64, end: u64 },
}

/// Parses `123`, `0x7f00` or `0X7F00`.
pub fn parse_addr(s: &str) -> Result<u64, RangeParseError> {
    let t = s.trim();
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => t.parse::<u64>(),
    };
    parsed.map_err(|_| RangeParseError::Number(s.to_string()))
}

impl AddrRange {
    pub fn new(start: u64, end: u64) -> Result<Self, RangeParseError> {
        if end <= start {
            return Err(RangeParseError::Empty { start, end });
        }
        Ok(AddrRange { start, end })
    }

    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

impl FromStr for AddrRange {
    type Err = RangeParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| RangeParseError::Shape(s.to_string()))?;
        AddrRange::new(parse_addr(a)?, parse_addr(b)?)
    }
}

impl fmt::Display for AddrRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}-{:#x}", self.start, self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal_and_hex() {
        assert_eq!(
            "4096-0x3000".parse::<AddrRange>().unwrap(),
            AddrRange {
                start: 4096,
                end: 0x3000
            }
        );
        assert_eq!(parse_addr("0X10").unwrap(), 16);
    }

    #[test]
    fn rejects_bad_ranges() {
        assert!(matches!(
            "12".parse::<AddrRange>(),
            Err(RangeParseError::Shape(_))
        ));
        assert!(matches!(
            "0xzz-5".parse::<AddrRange>(),
            Err(RangeParseError::Number(_))
        ));
        assert!(matches!(
            "5-5".parse::<AddrRange>(),
            Err(RangeParseError::Empty { .. })
        ));
        assert!(matches!(
            "9-5".parse::<AddrRange>(),
            Err(RangeParseError::Empty { .. })
        ));
    }
}
