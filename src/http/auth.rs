//! Publisher credentials: the key a publisher presents, as `Authorization: Bearer KEY`, as the
//! password of HTTP Basic, or as `?key=KEY` (percent-decoded), checked against `--publish-key`
//! in constant time. Pure.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// Longest key looked at; longer presented keys are simply wrong.
const MAX_KEY: usize = 512;

/// What a publish request's credentials say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// No credentials at all.
    Missing,
    Valid,
    Invalid,
}

/// Compares in time that depends only on the lengths, never on where the bytes differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Judges the credentials of a request against `key`: the `Authorization` header value (if
/// any) and the raw `key` query parameter (if any).
pub fn check(key: &[u8], authorization: Option<&[u8]>, query_key: Option<&str>) -> Auth {
    let mut presented = false;
    let mut valid = false;
    if let Some(value) = authorization {
        presented = true;
        let mut buf = [0u8; MAX_KEY];
        if let Some(k) = key_from_authorization(value, &mut buf) {
            valid |= constant_time_eq(k, key);
        }
    }
    if let Some(q) = query_key {
        presented = true;
        let mut buf = [0u8; MAX_KEY];
        if let Some(k) = percent_decode(q.as_bytes(), &mut buf) {
            valid |= constant_time_eq(k, key);
        }
    }
    match (presented, valid) {
        (false, _) => Auth::Missing,
        (true, true) => Auth::Valid,
        (true, false) => Auth::Invalid,
    }
}

/// The key in `Bearer KEY` or in the password of `Basic base64(user:KEY)`.
fn key_from_authorization<'a>(value: &[u8], buf: &'a mut [u8; MAX_KEY]) -> Option<&'a [u8]> {
    let value = value.trim_ascii();
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    let rest = rest.trim_ascii();
    if scheme.eq_ignore_ascii_case(b"bearer") {
        let n = rest.len();
        if n > MAX_KEY {
            return None;
        }
        buf[..n].copy_from_slice(rest);
        return Some(&buf[..n]);
    }
    if scheme.eq_ignore_ascii_case(b"basic") {
        if rest.len() > MAX_KEY * 4 / 3 + 4 {
            return None;
        }
        let mut decoded = [0u8; MAX_KEY + 4];
        let n = STANDARD.decode_slice(rest, &mut decoded).ok()?;
        let pair = &decoded[..n];
        let colon = pair.iter().position(|&b| b == b':')?;
        let password = &pair[colon + 1..];
        if password.len() > MAX_KEY {
            return None;
        }
        buf[..password.len()].copy_from_slice(password);
        return Some(&buf[..password.len()]);
    }
    None
}

/// `%XX` escapes and `+` (as a space) decoded into `buf`; `None` if malformed or too long.
fn percent_decode<'a>(s: &[u8], buf: &'a mut [u8; MAX_KEY]) -> Option<&'a [u8]> {
    let mut n = 0;
    let mut i = 0;
    while i < s.len() {
        let b = match s[i] {
            b'%' => {
                let hi = (*s.get(i + 1)? as char).to_digit(16)?;
                let lo = (*s.get(i + 2)? as char).to_digit(16)?;
                i += 2;
                (hi * 16 + lo) as u8
            }
            b'+' => b' ',
            b => b,
        };
        *buf.get_mut(n)? = b;
        n += 1;
        i += 1;
    }
    Some(&buf[..n])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_way_of_presenting_the_key() {
        let key = b"s3cret key/+";
        let basic = format!("Basic {}", STANDARD.encode("ffmpeg:s3cret key/+"));
        assert_eq!(check(key, None, None), Auth::Missing);
        assert_eq!(check(key, Some(b"Bearer s3cret key/+"), None), Auth::Valid);
        assert_eq!(
            check(key, Some(b"bearer   s3cret key/+ "), None),
            Auth::Valid
        );
        assert_eq!(check(key, Some(basic.as_bytes()), None), Auth::Valid);
        assert_eq!(check(key, None, Some("s3cret%20key%2F%2B")), Auth::Valid);
        assert_eq!(check(key, None, Some("s3cret+key%2f%2b")), Auth::Valid);
        assert_eq!(check(key, Some(b"Bearer nope"), None), Auth::Invalid);
        assert_eq!(check(key, Some(b"Digest x"), None), Auth::Invalid);
        assert_eq!(check(key, Some(b"Basic !!!"), None), Auth::Invalid);
        assert_eq!(check(key, None, Some("s3cret%2")), Auth::Invalid);
        assert_eq!(check(key, None, Some(&"a".repeat(5000))), Auth::Invalid);
        let no_colon = format!("Basic {}", STANDARD.encode("s3cret key/+"));
        assert_eq!(check(key, Some(no_colon.as_bytes()), None), Auth::Invalid);
    }

    #[test]
    fn comparison_is_exact() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }
}
