//! The compressed form of an SSE frame: a Huffman-only deflate of the frame on its own, from a
//! fresh state, ending with a full flush (the empty stored block `00 00 ff ff`), so the pieces of
//! any frames, in any order, after one [`GZIP_HEADER`], inflate as one gzip stream.
//!
//! Why Huffman-only: an SSE body is almost all base64, 64 symbols at 6 bits of information each
//! in 8-bit bytes, and the video under it is already compressed, so string matching (LZ77) finds
//! next to nothing while costing most of a deflater's time. One dynamic Huffman block gives each
//! base64 symbol its 6 bits back and costs a frequency count and a table lookup per byte. Tiny
//! frames (keepalives, `reset`) use the fixed code when that is shorter than the dynamic header.
//!
//! The exact output size is known before writing, so a frame costs one allocation of exactly
//! the right size. Pure: bytes in, bytes out; no I/O, no state between frames.

/// A gzip member header (RFC 1952) with no name, time or flags, OS "unknown". Sent once per
/// compressed connection; no trailer ever follows, since the stream ends when the connection
/// does, like the plain one.
pub const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// Literal/length symbols used: the 256 byte values and end-of-block.
const LITERALS: usize = 257;
const END_OF_BLOCK: usize = 256;
/// Longest literal code deflate allows.
const MAX_CODE_BITS: u8 = 15;
/// Longest code-length code deflate allows.
const MAX_CL_BITS: u8 = 7;
/// The order in which code-length code lengths are sent (RFC 1951, 3.2.7).
const CL_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];
/// Code lengths sent for the literal alphabet (257) and two distance codes of one bit each:
/// no distance is ever used, but a complete distance code keeps every inflater happy (zlib's
/// own Huffman-only mode does the same).
const SENT_LENGTHS: usize = LITERALS + 2;
/// The full-flush trailer of every frame after the 3-bit stored-block header and padding.
const FLUSH_MARK: [u8; 4] = [0, 0, 0xff, 0xff];

/// Deflates `input` on its own: one non-final Huffman block and a full flush, byte-aligned.
pub fn deflate_frame(input: &[u8]) -> Box<[u8]> {
    let freq = histogram(input);
    let mut lit_len = [0u8; LITERALS];
    code_lengths(&freq, MAX_CODE_BITS, &mut lit_len);
    let lit_code = canonical_codes(&lit_len);

    let mut sent = [0u8; SENT_LENGTHS];
    sent[..LITERALS].copy_from_slice(&lit_len);
    sent[LITERALS] = 1;
    sent[LITERALS + 1] = 1;
    let mut rle = [(0u8, 0u8); SENT_LENGTHS];
    let rle_n = run_length(&sent, &mut rle);
    let mut cl_freq = [0u32; 19];
    for &(sym, _) in &rle[..rle_n] {
        cl_freq[usize::from(sym)] += 1;
    }
    let mut cl_len = [0u8; 19];
    code_lengths(&cl_freq, MAX_CL_BITS, &mut cl_len);
    let cl_code = canonical_codes(&cl_len);
    let hclen = CL_ORDER
        .iter()
        .rposition(|&s| cl_len[s] != 0)
        .map_or(4, |i| (i + 1).max(4));

    let data_bits: u64 = (0..LITERALS)
        .map(|s| u64::from(freq[s]) * u64::from(lit_len[s]))
        .sum();
    let header_bits = 3
        + 5
        + 5
        + 4
        + 3 * hclen as u64
        + rle[..rle_n]
            .iter()
            .map(|&(sym, _)| u64::from(cl_len[usize::from(sym)]) + extra_bits(sym))
            .sum::<u64>();
    let dynamic_bits = header_bits + data_bits;
    let fixed_bits = 3
        + (0..LITERALS)
            .map(|s| u64::from(freq[s]) * u64::from(fixed_len(s)))
            .sum::<u64>();
    let use_fixed = fixed_bits <= dynamic_bits;
    let block_bits = if use_fixed { fixed_bits } else { dynamic_bits };
    // The block, then the stored block's 3 header bits padded to a byte, then its empty LEN/NLEN.
    let size = (block_bits + 3).div_ceil(8) as usize + FLUSH_MARK.len();

    let mut w = BitWriter::new(size);
    if use_fixed {
        w.put(0b010, 3); // BFINAL=0, BTYPE=01
        let table: [u32; LITERALS] = std::array::from_fn(|s| {
            let len = fixed_len(s);
            pack(reverse(fixed_code(s), len), len)
        });
        w.symbols(input, &table);
        w.put_packed(table[END_OF_BLOCK]);
    } else {
        w.put(0b100, 3); // BFINAL=0, BTYPE=10
        w.put(0, 5); // HLIT: 257 literal/length codes
        w.put(1, 5); // HDIST: 2 distance codes
        w.put(hclen as u32 - 4, 4);
        for &s in &CL_ORDER[..hclen] {
            w.put(u32::from(cl_len[s]), 3);
        }
        for &(sym, extra) in &rle[..rle_n] {
            let s = usize::from(sym);
            w.put(u32::from(cl_code[s]), u32::from(cl_len[s]));
            w.put(u32::from(extra), extra_bits(sym) as u32);
        }
        let table: [u32; LITERALS] =
            std::array::from_fn(|s| pack(u32::from(lit_code[s]), lit_len[s]));
        w.symbols(input, &table);
        w.put_packed(table[END_OF_BLOCK]);
    }
    w.put(0, 3); // BFINAL=0, BTYPE=00: the empty stored block of a full flush
    w.finish_with(&FLUSH_MARK)
}

/// Byte counts, plus the one end-of-block. Four tables so that runs of one byte value do not
/// serialize on a single counter.
fn histogram(input: &[u8]) -> [u32; LITERALS] {
    let mut t = [[0u32; 256]; 4];
    let mut chunks = input.chunks_exact(4);
    for c in &mut chunks {
        t[0][usize::from(c[0])] += 1;
        t[1][usize::from(c[1])] += 1;
        t[2][usize::from(c[2])] += 1;
        t[3][usize::from(c[3])] += 1;
    }
    for &b in chunks.remainder() {
        t[0][usize::from(b)] += 1;
    }
    let mut freq = [0u32; LITERALS];
    for (s, f) in freq[..256].iter_mut().enumerate() {
        *f = t[0][s] + t[1][s] + t[2][s] + t[3][s];
    }
    freq[END_OF_BLOCK] = 1;
    freq
}

/// Huffman code lengths for `freq`, none longer than `limit`. Over the limit, the counts are
/// halved (keeping every used symbol) and the tree rebuilt: for the few rare symbols of an SSE
/// frame (the digits of an id) that costs a fraction of a bit per frame. A lone symbol gets a
/// partner so the code is complete, as inflaters require. Everything on the stack.
fn code_lengths<const N: usize>(freq: &[u32; N], limit: u8, out: &mut [u8; N]) {
    let mut f = *freq;
    loop {
        huffman(&f, out);
        if out.iter().all(|&l| l <= limit) {
            break;
        }
        for x in f.iter_mut().filter(|x| **x > 0) {
            *x = (*x >> 1).max(1);
        }
    }
    let used = out.iter().filter(|&&l| l > 0).count();
    if used == 1 {
        let partner = usize::from(out[0] != 0);
        out.iter_mut().for_each(|l| *l = u8::from(*l > 0));
        out[partner] = 1;
    } else if used == 0 {
        out[0] = 1;
        out[1] = 1;
    }
}

/// Unlimited Huffman code lengths by the two-queue method: leaves sorted by count, internal
/// nodes made in non-decreasing order, so the two smallest are always at a queue's front.
fn huffman<const N: usize>(freq: &[u32; N], out: &mut [u8; N]) {
    out.fill(0);
    let mut leaves = [(0u32, 0u16); N];
    let mut n = 0;
    for (s, &f) in freq.iter().enumerate() {
        if f > 0 {
            leaves[n] = (f, s as u16);
            n += 1;
        }
    }
    if n < 2 {
        if n == 1 {
            out[usize::from(leaves[0].1)] = 1;
        }
        return;
    }
    let leaves = &mut leaves[..n];
    leaves.sort_unstable();
    // Nodes 0..n are the leaves, n.. the internal nodes in the order they are made.
    let mut weight = [0u64; 2 * 288];
    let mut parent = [0u16; 2 * 288];
    debug_assert!(
        2 * N <= weight.len(),
        "alphabet too large for the node arrays"
    );
    for (i, &(f, _)) in leaves.iter().enumerate() {
        weight[i] = u64::from(f);
    }
    let (mut next_leaf, mut next_node, mut made) = (0, n, n);
    for _ in 0..n - 1 {
        let mut pick = || {
            let take_leaf =
                next_leaf < n && (next_node >= made || weight[next_leaf] <= weight[next_node]);
            if take_leaf {
                next_leaf += 1;
                next_leaf - 1
            } else {
                next_node += 1;
                next_node - 1
            }
        };
        let (a, b) = (pick(), pick());
        weight[made] = weight[a] + weight[b];
        parent[a] = made as u16;
        parent[b] = made as u16;
        made += 1;
    }
    // The root is the last node made; every other node was made (or is a leaf) before its parent.
    let mut depth = [0u8; 2 * 288];
    for i in (0..made - 1).rev() {
        depth[i] = depth[usize::from(parent[i])] + 1;
    }
    for (i, &(_, s)) in leaves.iter().enumerate() {
        out[usize::from(s)] = depth[i];
    }
}

/// Canonical codes (RFC 1951, 3.2.2) for `len`, bit-reversed for LSB-first output.
fn canonical_codes<const N: usize>(len: &[u8; N]) -> [u16; N] {
    let mut count = [0u16; 16];
    for &l in len {
        count[usize::from(l)] += 1;
    }
    count[0] = 0;
    let mut next = [0u16; 16];
    let mut code = 0u16;
    for bits in 1..16 {
        code = (code + count[bits - 1]) << 1;
        next[bits] = code;
    }
    let mut codes = [0u16; N];
    for (s, &l) in len.iter().enumerate() {
        if l > 0 {
            codes[s] = reverse(u32::from(next[usize::from(l)]), l) as u16;
            next[usize::from(l)] += 1;
        }
    }
    codes
}

fn reverse(code: u32, len: u8) -> u32 {
    code.reverse_bits() >> (32 - u32::from(len))
}

/// The fixed literal/length code (RFC 1951, 3.2.6) for the symbols used here.
fn fixed_len(s: usize) -> u8 {
    match s {
        0..=143 => 8,
        144..=255 => 9,
        _ => 7,
    }
}

fn fixed_code(s: usize) -> u32 {
    match s {
        0..=143 => 0x30 + s as u32,
        144..=255 => 0x190 + (s as u32 - 144),
        _ => 0,
    }
}

/// Run-length codes for the code lengths: 16 repeats the last length 3-6 times, 17 and 18
/// repeat zero 3-10 and 11-138 times. Returns how many `(symbol, extra value)` pairs it wrote.
fn run_length(lengths: &[u8], out: &mut [(u8, u8); SENT_LENGTHS]) -> usize {
    let mut n = 0;
    let mut emit = |sym: u8, extra: u8| {
        out[n] = (sym, extra);
        n += 1;
    };
    let mut i = 0;
    while i < lengths.len() {
        let l = lengths[i];
        let run = lengths[i..].iter().take_while(|&&x| x == l).count();
        i += run;
        let mut left = run;
        if l == 0 {
            while left >= 11 {
                let r = left.min(138);
                emit(18, (r - 11) as u8);
                left -= r;
            }
            if left >= 3 {
                emit(17, (left - 3) as u8);
                left = 0;
            }
        } else {
            emit(l, 0);
            left -= 1;
            while left >= 3 {
                let r = left.min(6);
                emit(16, (r - 3) as u8);
                left -= r;
            }
        }
        for _ in 0..left {
            emit(l, 0);
        }
    }
    n
}

fn extra_bits(sym: u8) -> u64 {
    match sym {
        16 => 2,
        17 => 3,
        18 => 7,
        _ => 0,
    }
}

/// A code and its length in one word for the per-byte loop: code in the low 16 bits.
fn pack(code: u32, len: u8) -> u32 {
    code | u32::from(len) << 16
}

/// LSB-first bits into a buffer of exactly the size computed beforehand.
struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    bits: u32,
}

impl BitWriter {
    fn new(size: usize) -> BitWriter {
        BitWriter {
            out: Vec::with_capacity(size),
            acc: 0,
            bits: 0,
        }
    }

    fn put(&mut self, value: u32, n: u32) {
        debug_assert!(n <= 16 && u64::from(value) >> n == 0, "bad bit field");
        self.acc |= u64::from(value) << self.bits;
        self.bits += n;
        if self.bits >= 32 {
            self.out.extend_from_slice(&(self.acc as u32).to_le_bytes());
            self.acc >>= 32;
            self.bits -= 32;
        }
    }

    fn put_packed(&mut self, packed: u32) {
        self.put(packed & 0xffff, packed >> 16);
    }

    /// The hot loop: one table lookup per byte; whole 32-bit words out.
    fn symbols(&mut self, input: &[u8], table: &[u32; LITERALS]) {
        let (mut acc, mut bits) = (self.acc, self.bits);
        for &b in input {
            let p = table[usize::from(b)];
            acc |= u64::from(p & 0xffff) << bits;
            bits += p >> 16;
            if bits >= 32 {
                self.out.extend_from_slice(&(acc as u32).to_le_bytes());
                acc >>= 32;
                bits -= 32;
            }
        }
        (self.acc, self.bits) = (acc, bits);
    }

    /// Pads to a byte and appends `tail`.
    fn finish_with(mut self, tail: &[u8]) -> Box<[u8]> {
        let bytes = self.bits.div_ceil(8) as usize;
        self.out.extend_from_slice(&self.acc.to_le_bytes()[..bytes]);
        self.out.extend_from_slice(tail);
        debug_assert_eq!(
            self.out.len(),
            self.out.capacity(),
            "the computed size is exact"
        );
        self.out.into_boxed_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use flate2::{Decompress, FlushDecompress, Status};
    use std::io::Write;

    /// Inflates raw deflate data with a standard inflater, asking for a sync flush only: it
    /// must give back everything without a final block.
    fn inflate(data: &[u8]) -> Vec<u8> {
        let mut d = Decompress::new(false);
        let mut out = Vec::with_capacity(data.len() * 8 + 64);
        let status = d
            .decompress_vec(data, &mut out, FlushDecompress::Sync)
            .expect("valid deflate");
        assert_eq!(status, Status::Ok, "no final block");
        assert_eq!(d.total_in() as usize, data.len(), "all input taken");
        out
    }

    fn noise(n: usize, mut seed: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    }

    fn sse_of(n: usize) -> Vec<u8> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(noise(n, n as u64 + 1));
        format!("id: 1234.1732400000123\nevent: data\ndata: {b64}\n\n").into_bytes()
    }

    #[test]
    fn round_trips_through_a_standard_inflater() {
        let cases: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"x".to_vec(),
            b": keepalive\n\n".to_vec(),
            vec![b'a'; 100_000],
            (0..=255u8).collect(),
            noise(70_000, 7),
            sse_of(1),
            sse_of(50_000),
            sse_of(300_000),
        ];
        for c in cases {
            assert_eq!(inflate(&deflate_frame(&c)), c, "length {}", c.len());
        }
    }

    #[test]
    fn every_frame_ends_byte_aligned_with_a_full_flush() {
        for n in [0, 1, 2, 13, 100, 4097] {
            let d = deflate_frame(&sse_of(n));
            assert!(d.ends_with(&FLUSH_MARK), "length {n}");
            // The first block is not final (its first bit is BFINAL).
            assert_eq!(d[0] & 1, 0);
        }
    }

    #[test]
    fn frames_compressed_apart_inflate_as_one_gzip_stream() {
        let frames = [
            sse_of(10),
            b": keepalive\n\n".to_vec(),
            sse_of(40_000),
            sse_of(3),
        ];
        let mut wire = GZIP_HEADER.to_vec();
        for f in &frames {
            wire.extend_from_slice(&deflate_frame(f));
        }
        let mut gz = flate2::write::GzDecoder::new(Vec::new());
        gz.write_all(&wire).expect("valid gzip");
        gz.flush().expect("flush");
        assert_eq!(gz.get_ref(), &frames.concat());
    }

    #[test]
    fn base64_shrinks_to_the_size_of_what_it_encodes() {
        let frame = sse_of(70_000);
        let d = deflate_frame(&frame);
        let ratio = d.len() as f64 / 70_000.0;
        assert!(
            ratio < 1.005,
            "{} bytes for 70000 of media: {ratio}",
            d.len()
        );
    }

    #[test]
    fn tiny_frames_use_the_fixed_code_and_barely_grow() {
        let k = b": keepalive\n\n";
        let d = deflate_frame(k);
        assert_eq!(d[0] & 0b111, 0b010, "fixed block");
        assert!(d.len() <= k.len() + 7, "{} bytes", d.len());
    }

    #[test]
    fn code_lengths_are_limited_and_complete() {
        // Fibonacci counts make the deepest possible unlimited tree.
        let mut freq = [0u32; LITERALS];
        let (mut a, mut b) = (1u32, 1u32);
        for f in freq.iter_mut().take(30) {
            *f = a;
            (a, b) = (b, a.saturating_add(b));
        }
        let mut len = [0u8; LITERALS];
        code_lengths(&freq, MAX_CODE_BITS, &mut len);
        assert!(len.iter().all(|&l| l <= MAX_CODE_BITS));
        let kraft: f64 = len
            .iter()
            .filter(|&&l| l > 0)
            .map(|&l| 0.5f64.powi(i32::from(l)))
            .sum();
        assert!((kraft - 1.0).abs() < 1e-12, "complete code: {kraft}");
        let mut one = [0u32; 19];
        one[5] = 9;
        let mut len = [0u8; 19];
        code_lengths(&one, MAX_CL_BITS, &mut len);
        assert_eq!(len.iter().filter(|&&l| l == 1).count(), 2, "{len:?}");
    }
}
