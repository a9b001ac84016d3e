//! The three libc calls the load generator needs and std does not offer: raising the open-file
//! limit, reading this process's CPU time, and glibc's vectorised `memchr` for finding line ends
//! in megabytes of base64 — plus reading another process's CPU time from /proc. Every `unsafe`
//! block of the binary is here.

use std::io;
use std::time::Duration;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the new soft limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: `limit` is a valid rlimit; raising the soft limit up to the hard one needs no
        // privilege and affects only this process.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // rlim_t is 32 bits on some 32-bit targets (a Raspberry Pi OS, for one).
    #[allow(clippy::unnecessary_cast)]
    Ok(limit.rlim_cur as u64)
}

/// User plus system CPU time this process has used so far.
pub fn cpu_time() -> Duration {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage for the duration of the call.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU time used so far by every thread of the processes `pids` (the first field of each
/// `/proc/PID/task/TID/schedstat`: nanoseconds on the CPU, exact, unlike the 10 ms ticks of
/// `/proc/PID/stat`). `None` when a process cannot be read (gone, or not ours to see).
pub fn processes_cpu_ns(pids: &[u32]) -> Option<u64> {
    let mut total = 0u64;
    for pid in pids {
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
            let Ok(task) = task else { continue };
            // A thread that ended between the listing and the read is simply not counted.
            let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else {
                continue;
            };
            let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
            total = total.saturating_add(ns);
        }
    }
    Some(total)
}

/// Position of the first `needle` in `haystack`.
#[inline]
pub fn find_byte(needle: u8, haystack: &[u8]) -> Option<usize> {
    if haystack.is_empty() {
        return None;
    }
    // SAFETY: memchr reads at most `haystack.len()` bytes starting at `haystack.as_ptr()`, which
    // is exactly the borrowed slice; it returns null or a pointer into that slice.
    let found = unsafe {
        libc::memchr(
            haystack.as_ptr().cast(),
            libc::c_int::from(needle),
            haystack.len(),
        )
    };
    if found.is_null() {
        None
    } else {
        Some(found as usize - haystack.as_ptr() as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_byte_matches_a_plain_search() {
        let hay: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        for needle in [0u8, 10, 250, 255] {
            for start in [0, 1, 7, 500, 999, 1000] {
                let expected = hay[start..].iter().position(|&b| b == needle);
                assert_eq!(
                    find_byte(needle, &hay[start..]),
                    expected,
                    "{needle} from {start}"
                );
            }
        }
    }

    #[test]
    fn cpu_time_is_monotonic() {
        let a = cpu_time();
        let mut x = 0u64;
        for i in 0..1_000_000u64 {
            x = x.wrapping_add(std::hint::black_box(i));
        }
        std::hint::black_box(x);
        assert!(cpu_time() >= a);
    }
}
