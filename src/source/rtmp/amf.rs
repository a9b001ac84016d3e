//! AMF0 (Action Message Format 0), the encoding of RTMP commands and metadata: decoding with
//! explicit limits on depth, entries and string sizes, and the few encodings the server's
//! answers need. Pure: bytes in, values out.

use std::fmt;

/// Deepest nesting of objects and arrays accepted.
const MAX_DEPTH: usize = 8;
/// Most entries in one object or array.
const MAX_ENTRIES: usize = 1024;

/// An AMF0 value.
#[derive(Debug, Clone, PartialEq)]
pub enum Amf {
    Number(f64),
    Bool(bool),
    String(String),
    Object(Vec<(String, Amf)>),
    Null,
    Undefined,
    Array(Vec<Amf>),
    Date(f64),
}

impl Amf {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Amf::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// A property of an object (or ECMA array).
    pub fn get(&self, key: &str) -> Option<&Amf> {
        match self {
            Amf::Object(props) => props.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Why AMF data could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmfError(pub &'static str);

impl fmt::Display for AmfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad AMF0: {}", self.0)
    }
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], AmfError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or(AmfError("truncated"))?;
        let s = &self.data[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, AmfError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<usize, AmfError> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    fn u32(&mut self) -> Result<usize, AmfError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    fn f64(&mut self) -> Result<f64, AmfError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_be_bytes(a))
    }

    fn string(&mut self, long: bool) -> Result<String, AmfError> {
        let n = if long { self.u32()? } else { self.u16()? };
        // The length is checked against what is left before anything is allocated.
        let bytes = self.take(n)?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    fn properties(&mut self, depth: usize) -> Result<Vec<(String, Amf)>, AmfError> {
        let mut props = Vec::new();
        loop {
            let key = self.string(false)?;
            if key.is_empty() && self.data.get(self.at) == Some(&9) {
                self.at += 1;
                return Ok(props);
            }
            if props.len() >= MAX_ENTRIES {
                return Err(AmfError("too many properties"));
            }
            let v = self.value(depth + 1)?;
            props.push((key, v));
        }
    }

    fn value(&mut self, depth: usize) -> Result<Amf, AmfError> {
        if depth > MAX_DEPTH {
            return Err(AmfError("nested too deep"));
        }
        Ok(match self.u8()? {
            0 => Amf::Number(self.f64()?),
            1 => Amf::Bool(self.u8()? != 0),
            2 => Amf::String(self.string(false)?),
            3 => Amf::Object(self.properties(depth)?),
            5 => Amf::Null,
            6 => Amf::Undefined,
            8 => {
                let _count = self.u32()?;
                Amf::Object(self.properties(depth)?)
            }
            10 => {
                let n = self.u32()?;
                if n > MAX_ENTRIES {
                    return Err(AmfError("array too long"));
                }
                let mut items = Vec::with_capacity(n.min(64));
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Amf::Array(items)
            }
            11 => {
                let t = self.f64()?;
                self.take(2)?;
                Amf::Date(t)
            }
            12 => Amf::String(self.string(true)?),
            _ => return Err(AmfError("unknown type marker")),
        })
    }
}

/// Decodes every value in `data` (a command: name, transaction id, then arguments).
pub fn decode_all(data: &[u8]) -> Result<Vec<Amf>, AmfError> {
    let mut r = Reader { data, at: 0 };
    let mut out = Vec::new();
    while r.at < data.len() {
        if out.len() >= MAX_ENTRIES {
            return Err(AmfError("too many values"));
        }
        out.push(r.value(0)?);
    }
    Ok(out)
}

/// Appends the AMF0 encoding of `v`.
pub fn encode(v: &Amf, out: &mut Vec<u8>) {
    match v {
        Amf::Number(n) => {
            out.push(0);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Amf::Bool(b) => out.extend_from_slice(&[1, u8::from(*b)]),
        Amf::String(s) => {
            out.push(2);
            encode_key(s, out);
        }
        Amf::Object(props) => {
            out.push(3);
            for (k, v) in props {
                encode_key(k, out);
                encode(v, out);
            }
            out.extend_from_slice(&[0, 0, 9]);
        }
        Amf::Null => out.push(5),
        Amf::Undefined => out.push(6),
        Amf::Array(items) => {
            out.push(10);
            out.extend_from_slice(&(items.len() as u32).to_be_bytes());
            for i in items {
                encode(i, out);
            }
        }
        Amf::Date(t) => {
            out.push(11);
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
        }
    }
}

fn encode_key(s: &str, out: &mut Vec<u8>) {
    let b = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

/// A property list, for building answers.
pub fn object(props: &[(&str, Amf)]) -> Amf {
    Amf::Object(
        props
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_a_connect_command() {
        let values = vec![
            Amf::String("connect".into()),
            Amf::Number(1.0),
            object(&[
                ("app", Amf::String("live".into())),
                ("tcUrl", Amf::String("rtmp://127.0.0.1/live".into())),
                ("fpad", Amf::Bool(false)),
                (
                    "nested",
                    object(&[("x", Amf::Array(vec![Amf::Null, Amf::Undefined]))]),
                ),
            ]),
            Amf::Date(5.0),
        ];
        let mut bytes = Vec::new();
        for v in &values {
            encode(v, &mut bytes);
        }
        assert_eq!(decode_all(&bytes).unwrap(), values);
        assert_eq!(
            decode_all(&bytes).unwrap()[2]
                .get("app")
                .and_then(Amf::as_str),
            Some("live")
        );
    }

    #[test]
    fn ecma_arrays_and_long_strings() {
        let mut b = vec![8, 0, 0, 0, 1, 0, 5];
        b.extend_from_slice(b"width");
        b.push(0);
        b.extend_from_slice(&640f64.to_be_bytes());
        b.extend_from_slice(&[0, 0, 9, 12, 0, 0, 0, 2]);
        b.extend_from_slice(b"hi");
        let v = decode_all(&b).unwrap();
        assert_eq!(v[0].get("width").and_then(Amf::as_f64), Some(640.0));
        assert_eq!(v[1], Amf::String("hi".into()));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic_or_a_huge_allocation() {
        for bad in [
            &[2, 0xff, 0xff][..],
            &[12, 0xff, 0xff, 0xff, 0xff],
            &[10, 0xff, 0xff, 0xff, 0xff],
            &[0x42],
            &[0, 1, 2],
            &[3, 0, 1, b'a'],
        ] {
            assert!(decode_all(bad).is_err(), "{bad:?}");
        }
        let deep: Vec<u8> = std::iter::repeat_n([3u8, 0, 1, b'a'], 20)
            .flatten()
            .collect();
        assert!(decode_all(&deep).is_err());
    }
}
