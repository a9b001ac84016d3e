//! A file stream's source: the embedded sample or a memory-mapped file, the guard that notices
//! when a mapped file shrinks under us, and the playout that releases its fragments. Owns the one
//! `unsafe` block of the crate (the mmap).

use super::playout::Playout;
use crate::mp4::{Movie, Mp4Error};
use memmap2::{Advice, Mmap, UncheckedAdvice};
use std::fmt;
use std::fs::File;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// The sample played when no file is given: a 6 s fragmented H.264+AAC test pattern made by
/// `web/make-sample.sh`.
pub const SAMPLE: &[u8] = include_bytes!("../../web/sample.mp4");

/// Why a video cannot be (or can no longer be) played.
#[derive(Debug)]
pub enum VideoError {
    Open {
        path: PathBuf,
        source: io::Error,
    },
    Empty {
        path: PathBuf,
    },
    Parse {
        path: PathBuf,
        source: Mp4Error,
    },
    /// The file got shorter while mapped: reading past its new end would kill the process.
    Shrunk {
        path: PathBuf,
        mapped: u64,
        now: u64,
    },
}

impl fmt::Display for VideoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VideoError::Open { path, source } => {
                write!(f, "cannot open '{}': {source}", path.display())
            }
            VideoError::Empty { path } => write!(f, "'{}' is empty", path.display()),
            VideoError::Parse { path, source } => write!(f, "'{}': {source}", path.display()),
            VideoError::Shrunk { path, mapped, now } => write!(
                f,
                "'{}' was truncated while being served ({mapped} -> {now} bytes); \
                 replace files by renaming a new one over them, never by rewriting in place",
                path.display()
            ),
        }
    }
}

impl std::error::Error for VideoError {}

enum Bytes {
    Embedded(&'static [u8]),
    Mapped { map: Mmap, file: File },
}

/// Where the video's bytes come from.
pub struct Video {
    name: PathBuf,
    bytes: Bytes,
}

impl Video {
    /// The embedded sample.
    pub fn sample() -> Video {
        Video {
            name: PathBuf::from("(embedded sample)"),
            bytes: Bytes::Embedded(SAMPLE),
        }
    }

    /// Maps a file read-only and parses it.
    pub fn open(path: &Path) -> Result<(Video, Movie), VideoError> {
        let open_err = |source| VideoError::Open {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(open_err)?;
        let meta = file.metadata().map_err(open_err)?;
        if !meta.is_file() {
            return Err(open_err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            )));
        }
        if meta.len() == 0 {
            return Err(VideoError::Empty {
                path: path.to_path_buf(),
            });
        }
        // SAFETY: the mapping is read-only and private to this process, but the file can still be
        // changed by others. Writes in place change what we read (harmless: at worst a garbled
        // fragment); truncation would make reads past the new end raise SIGBUS. ssecast never
        // writes the file, reads it only when a fragment goes live, and `check` compares the
        // file's length with the mapping before every such read, stopping with a clear error if
        // it shrank. The README tells users to replace files by renaming, not in place.
        let map = unsafe { Mmap::map(&file) }.map_err(open_err)?;
        // The parse reads the moov and, in a fragmented file, every moof header: pages here and
        // there across the whole file. Without read-ahead only those are read, and the ones it is
        // done with are given back as it goes, so a 1 GB file does not fill the RSS (mapped pages
        // count in it) nor the page cache. Playout reads fragment after fragment: normal again.
        if let Err(e) = map.advise(Advice::Random) {
            log::debug!("madvise(MADV_RANDOM): {e}");
        }
        let parsed = Movie::parse_releasing(&map, &mut |r| give_back(&map, r));
        give_back(&map, 0..map.len());
        if let Err(e) = map.advise(Advice::Normal) {
            log::debug!("madvise(MADV_NORMAL): {e}");
        }
        let movie = parsed.map_err(|source| VideoError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        let video = Video {
            name: path.to_path_buf(),
            bytes: Bytes::Mapped { map, file },
        };
        Ok((video, movie))
    }

    /// The bytes the movie was parsed from.
    pub fn bytes(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Embedded(b) => b,
            Bytes::Mapped { map, .. } => map,
        }
    }

    /// Gives back the mapped pages of `range` (a fragment that went out; see `give_back`): reading
    /// them again faults them in from the page cache, so the RSS of a long file being played
    /// stays at what one fragment needs instead of growing to the whole file.
    pub fn release(&self, range: Range<usize>) {
        if let Bytes::Mapped { map, .. } = &self.bytes {
            give_back(map, range);
        }
    }

    pub fn name(&self) -> &Path {
        &self.name
    }

    /// Checks that a mapped file still has all the bytes that were mapped.
    pub fn check(&self) -> Result<(), VideoError> {
        let Bytes::Mapped { map, file } = &self.bytes else {
            return Ok(());
        };
        let now = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mapped = map.len() as u64;
        if now < mapped {
            return Err(VideoError::Shrunk {
                path: self.name.clone(),
                mapped,
                now,
            });
        }
        Ok(())
    }
}

/// `madvise(MADV_DONTNEED)` on the pages of `map` from the one `range` starts in to the last one
/// it fills: a page it shares with the fragment before (already sent) goes, one it shares with
/// the next fragment stays until that one is given back.
fn give_back(map: &Mmap, range: Range<usize>) {
    // SAFETY: sysconf only reads a system constant.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let start = range.start / page.max(1) * page;
    let end = range.end.min(map.len()) / page.max(1) * page;
    if end <= start {
        return;
    }
    // SAFETY: MADV_DONTNEED on a read-only, private file mapping only drops the pages from this
    // process's page tables; the next read faults them in again from the file, unchanged. No
    // reference into the mapping is invalidated (its contents do not change), which is the
    // contract memmap2 asks of `unchecked_advise_range`.
    if let Err(e) =
        unsafe { map.unchecked_advise_range(UncheckedAdvice::DontNeed, start, end - start) }
    {
        log::debug!("madvise(MADV_DONTNEED): {e}");
    }
}

/// A file played as a looping live channel into the stream with registry key `stream`.
pub struct FileSource {
    pub stream: usize,
    pub video: Video,
    pub playout: Playout,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn temp(name: &str, bytes: &[u8]) -> PathBuf {
        let p = std::env::temp_dir().join(format!("ssecast-video-{}-{name}", std::process::id()));
        let mut f = File::create(&p).unwrap();
        f.write_all(bytes).unwrap();
        p
    }

    #[test]
    fn maps_and_parses_a_file() {
        let p = temp("ok.mp4", SAMPLE);
        let (v, m) = Video::open(&p).unwrap();
        assert_eq!(v.bytes(), SAMPLE);
        assert_eq!(m.fragments.len(), 6);
        v.check().unwrap();
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn shrinking_file_is_noticed() {
        let p = temp("shrink.mp4", SAMPLE);
        let (v, _) = Video::open(&p).unwrap();
        File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(100)
            .unwrap();
        let err = v.check().unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn missing_empty_and_bad_files_are_clear_errors() {
        let err = Video::open(Path::new("/nonexistent/x.mp4")).err().unwrap();
        assert!(err.to_string().contains("cannot open '/nonexistent/x.mp4'"));
        let p = temp("empty.mp4", b"");
        assert!(matches!(Video::open(&p), Err(VideoError::Empty { .. })));
        std::fs::remove_file(p).unwrap();
        let p = temp("text.mp4", b"hello, this is not a video at all");
        let err = Video::open(&p).err().unwrap();
        assert!(err.to_string().contains("not an MP4"), "{err}");
        std::fs::remove_file(p).unwrap();
        let err = Video::open(Path::new("/")).err().unwrap();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
}
