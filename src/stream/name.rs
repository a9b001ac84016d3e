//! Stream names: 1–64 characters of `A-Z a-z 0-9 _ -`, with the path words the server uses for
//! itself reserved. Stored inline (no allocation), so a routed request stays `Copy`.

use std::fmt;

/// Longest stream name.
pub const MAX_NAME: usize = 64;

/// Words that are endpoints, never stream names.
pub const RESERVED: [&str; 5] = ["events", "publish", "api", "metrics", "healthz"];

/// Why a string is not a stream name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    Empty,
    TooLong,
    BadChar,
    Reserved,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameError::Empty => "a stream name cannot be empty",
            NameError::TooLong => "a stream name has at most 64 characters",
            NameError::BadChar => "a stream name has only the characters A-Z a-z 0-9 _ -",
            NameError::Reserved => {
                "events, publish, api, metrics and healthz are reserved and cannot be stream names"
            }
        })
    }
}

/// A valid stream name.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamName {
    len: u8,
    bytes: [u8; MAX_NAME],
}

impl StreamName {
    pub fn parse(s: &str) -> Result<StreamName, NameError> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > MAX_NAME {
            return Err(NameError::TooLong);
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(NameError::BadChar);
        }
        if RESERVED.contains(&s) {
            return Err(NameError::Reserved);
        }
        let mut bytes = [0u8; MAX_NAME];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        Ok(StreamName {
            len: s.len() as u8,
            bytes,
        })
    }

    pub fn as_str(&self) -> &str {
        // INVARIANT: `parse` admits ASCII only, so the bytes are valid UTF-8.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl fmt::Debug for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_and_invalid_names() {
        assert_eq!(StreamName::parse("cam-1_B").unwrap().as_str(), "cam-1_B");
        assert_eq!(
            StreamName::parse(&"a".repeat(64)).unwrap().as_str().len(),
            64
        );
        assert_eq!(StreamName::parse(""), Err(NameError::Empty));
        assert_eq!(StreamName::parse(&"a".repeat(65)), Err(NameError::TooLong));
        for bad in ["a.b", "a/b", "..", "%65", "a b", "é", "a?"] {
            assert_eq!(StreamName::parse(bad), Err(NameError::BadChar), "{bad}");
        }
        for r in RESERVED {
            assert_eq!(StreamName::parse(r), Err(NameError::Reserved));
        }
        assert!(
            StreamName::parse("Events").is_ok(),
            "reserved words are exact"
        );
    }
}
