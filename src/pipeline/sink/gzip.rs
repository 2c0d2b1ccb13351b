//! A small gzip (RFC 1952) encoder for Parquet pages of a few hundred bytes.
//!
//! Why not flate2: its deflate state (miniz_oxide) is ~230 KB that is allocated or cleared for
//! every stream, and a game's two files hold nine pages, each its own gzip stream: measured,
//! that was ~200 µs of the ~250 µs it took to encode a game. This encoder keeps one 16 KB hash
//! table and emits a single fixed-Huffman deflate block (RFC 1951 §3.2.6) with greedy LZ77
//! matches, which any gzip reader decodes. Pages are tiny, so dynamic Huffman tables would not
//! pay for themselves.

/// Hash table size (entries) for 3-byte prefixes.
const HASH_BITS: u32 = 12;
/// Largest distance deflate can express.
const WINDOW: usize = 32 * 1024;
const MIN_MATCH: usize = 3;
const MAX_MATCH: usize = 258;

const LEN_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LEN_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

/// Reusable encoder state.
pub struct Gzip {
    /// Last position + 1 of each 3-byte hash (0 = none), cleared per stream.
    head: Vec<u32>,
}

impl Default for Gzip {
    fn default() -> Self {
        Self::new()
    }
}

impl Gzip {
    pub fn new() -> Self {
        Gzip {
            head: vec![0; 1 << HASH_BITS],
        }
    }

    /// Appends one gzip member holding `input` to `out`.
    pub fn compress_into(&mut self, input: &[u8], out: &mut Vec<u8>) {
        // Header: magic, CM=deflate, no flags, no mtime, XFL=fastest, OS=unknown.
        out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255]);
        let mut bits = BitWriter { out, acc: 0, n: 0 };
        // BFINAL=1, BTYPE=01 (fixed Huffman).
        bits.put(0b011, 3);
        self.head.fill(0);
        let mut i = 0;
        while i < input.len() {
            let (len, dist) = self.longest_match(input, i);
            if len >= MIN_MATCH {
                put_length(&mut bits, len);
                put_distance(&mut bits, dist);
                // Index the skipped positions too, so later repeats find them.
                for j in i + 1..(i + len).min(input.len().saturating_sub(MIN_MATCH - 1)) {
                    self.head[hash(input, j)] = j as u32 + 1;
                }
                i += len;
            } else {
                put_literal(&mut bits, input[i]);
                i += 1;
            }
        }
        put_symbol(&mut bits, 256);
        bits.flush();
        let mut crc = flate2::Crc::new();
        crc.update(input);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&(input.len() as u32).to_le_bytes());
    }

    /// The longest earlier match at `i` via the hash table (which this updates), or (0, 0).
    fn longest_match(&mut self, input: &[u8], i: usize) -> (usize, usize) {
        if i + MIN_MATCH > input.len() {
            return (0, 0);
        }
        let h = hash(input, i);
        let candidate = self.head[h] as usize;
        self.head[h] = i as u32 + 1;
        if candidate == 0 {
            return (0, 0);
        }
        let c = candidate - 1;
        let dist = i - c;
        if dist > WINDOW {
            return (0, 0);
        }
        let max = (input.len() - i).min(MAX_MATCH);
        let len = (0..max)
            .take_while(|&k| input[c + k] == input[i + k])
            .count();
        if len >= MIN_MATCH {
            (len, dist)
        } else {
            (0, 0)
        }
    }
}

fn hash(input: &[u8], i: usize) -> usize {
    let v = u32::from(input[i]) | u32::from(input[i + 1]) << 8 | u32::from(input[i + 2]) << 16;
    (v.wrapping_mul(0x9E37_79B1) >> (32 - HASH_BITS)) as usize
}

/// Deflate's bit order: values least significant bit first, Huffman codes most significant first.
struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    n: u32,
}

impl BitWriter<'_> {
    fn put(&mut self, value: u32, count: u32) {
        self.acc |= u64::from(value) << self.n;
        self.n += count;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    fn put_code(&mut self, code: u32, len: u32) {
        self.put(code.reverse_bits() >> (32 - len), len);
    }

    fn flush(&mut self) {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
        self.acc = 0;
        self.n = 0;
    }
}

/// A literal/length symbol with the fixed code of RFC 1951 §3.2.6.
fn put_symbol(bits: &mut BitWriter, symbol: u16) {
    let s = u32::from(symbol);
    match symbol {
        0..=143 => bits.put_code(0x30 + s, 8),
        144..=255 => bits.put_code(0x190 + (s - 144), 9),
        256..=279 => bits.put_code(s - 256, 7),
        _ => bits.put_code(0xC0 + (s - 280), 8),
    }
}

fn put_literal(bits: &mut BitWriter, byte: u8) {
    put_symbol(bits, u16::from(byte));
}

fn put_length(bits: &mut BitWriter, len: usize) {
    let len = len as u16;
    // 258 has its own code; otherwise the last base not above `len`.
    let i = if len == 258 {
        28
    } else {
        LEN_BASE[..28].partition_point(|&b| b <= len) - 1
    };
    put_symbol(bits, 257 + i as u16);
    bits.put(u32::from(len - LEN_BASE[i]), u32::from(LEN_EXTRA[i]));
}

fn put_distance(bits: &mut BitWriter, dist: usize) {
    let dist = dist as u16;
    let i = DIST_BASE.partition_point(|&b| b <= dist) - 1;
    bits.put_code(i as u32, 5);
    bits.put(u32::from(dist - DIST_BASE[i]), u32::from(DIST_EXTRA[i]));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Read;

    fn round_trip(input: &[u8]) -> Vec<u8> {
        let mut gz = Gzip::new();
        let mut out = vec![0xAA]; // appends, never overwrites
        gz.compress_into(input, &mut out);
        assert_eq!(out[0], 0xAA);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&out[1..])
            .read_to_end(&mut back)
            .expect("a valid gzip stream");
        assert_eq!(back, input);
        out
    }

    #[test]
    fn edge_cases() {
        round_trip(b"");
        round_trip(b"a");
        round_trip(b"ab");
        round_trip(b"abc");
        round_trip(&[0u8; 1000]); // overlapping matches, distance 1, length 258
        round_trip(&[255u8; 259]);
        let all: Vec<u8> = (0..=255).collect();
        round_trip(&all.repeat(200)); // distances up to the window edge
        let mut far = vec![7u8; 10];
        far.extend((0..40_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        far.extend_from_slice(&[7u8; 10]);
        round_trip(&far); // a repeat beyond the 32 KB window
    }

    #[test]
    fn repeated_tokens_shrink() {
        let token = b"6f1c0d6e-8a39-4d55-9b2a-3f3f0c9e2a10";
        let mut page = Vec::new();
        for _ in 0..3 {
            page.extend_from_slice(&(token.len() as u32).to_le_bytes());
            page.extend_from_slice(token);
        }
        let out = round_trip(&page);
        assert!(out.len() < page.len(), "{} >= {}", out.len(), page.len());
    }

    proptest! {
        #[test]
        fn any_bytes_round_trip(input in proptest::collection::vec(any::<u8>(), 0..3000)) {
            round_trip(&input);
        }

        #[test]
        fn repetitive_bytes_round_trip(
            input in proptest::collection::vec(0u8..4, 0..5000),
        ) {
            round_trip(&input);
        }
    }
}
