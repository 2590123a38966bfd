//! DEFLATE decompression (RFC 1951) and its zlib wrapper (RFC 1950), for zip
//! members and HDF5's deflate filter. Never trusts its input: every malformed
//! or truncated stream is an error, the output never grows past `limit`, and
//! every step of the decoder consumes input, so no input can make it loop.

use super::{Result, WeightsError};

fn err(message: impl std::fmt::Display) -> WeightsError {
    WeightsError::Header(format!("DEFLATE stream: {message}"))
}

fn truncated() -> WeightsError {
    err("truncated (the stream ends before its final block does); the file is cut short or corrupt")
}

/// Little-endian bit reader (DEFLATE packs bits starting at each byte's LSB).
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    buf: u64,
    n: u32,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Bits { data, pos: 0, buf: 0, n: 0 }
    }

    fn refill(&mut self) {
        while self.n <= 56 {
            match self.data.get(self.pos) {
                Some(&b) => {
                    self.buf |= (b as u64) << self.n;
                    self.n += 8;
                    self.pos += 1;
                }
                None => break,
            }
        }
    }

    /// The next `k` ≤ 32 bits without consuming them (zeros past the end).
    fn peek(&mut self, k: u32) -> u32 {
        if self.n < k {
            self.refill();
        }
        (self.buf & ((1u64 << k) - 1)) as u32
    }

    fn consume(&mut self, k: u32) -> Result<()> {
        if k > self.n {
            return Err(truncated());
        }
        self.buf >>= k;
        self.n -= k;
        Ok(())
    }

    fn bits(&mut self, k: u32) -> Result<u32> {
        let v = self.peek(k);
        self.consume(k)?;
        Ok(v)
    }

    /// Drop the bits up to the next byte boundary and hand the whole buffered
    /// bytes back, so `pos` is the next unread byte.
    fn align(&mut self) {
        let drop = self.n % 8;
        self.buf >>= drop;
        self.n -= drop;
        self.pos -= (self.n / 8) as usize;
        self.buf = 0;
        self.n = 0;
    }

    /// Bytes consumed so far (a partly used last byte counts as consumed).
    fn consumed(&self) -> usize {
        self.pos - (self.n / 8) as usize
    }
}

/// A canonical Huffman code as a lookup table indexed by the next `bits`
/// input bits; each entry is `symbol << 4 | code length`, length 0 = no code.
struct Huffman {
    table: Vec<u16>,
    bits: u32,
}

const MAX_BITS: usize = 15;

impl Huffman {
    fn new(lengths: &[u8], what: &str) -> Result<Huffman> {
        let mut count = [0u16; MAX_BITS + 1];
        for &l in lengths {
            count[l as usize] += 1;
        }
        count[0] = 0;
        // Over-subscribed codes are invalid; incomplete ones are allowed
        // (their unused codes decode to an error).
        let mut left: i32 = 1;
        for &c in &count[1..] {
            left = (left << 1) - c as i32;
            if left < 0 {
                return Err(err(format!("the {what} code lengths are over-subscribed (not a valid Huffman code)")));
            }
        }
        let bits = (1..=MAX_BITS).rev().find(|&l| count[l] > 0).unwrap_or(1) as u32;
        let mut next = [0u32; MAX_BITS + 2];
        let mut code = 0u32;
        for l in 1..=MAX_BITS {
            code = (code + count[l - 1] as u32) << 1;
            next[l] = code;
        }
        let mut table = vec![0u16; 1 << bits];
        for (symbol, &l) in lengths.iter().enumerate() {
            if l == 0 {
                continue;
            }
            let l = l as u32;
            let c = next[l as usize];
            next[l as usize] += 1;
            // Codes are stored MSB-first; the reader delivers LSB-first.
            let rev = c.reverse_bits() >> (32 - l);
            let entry = ((symbol as u16) << 4) | l as u16;
            let mut i = rev as usize;
            while i < table.len() {
                table[i] = entry;
                i += 1 << l;
            }
        }
        Ok(Huffman { table, bits })
    }

    fn decode(&self, r: &mut Bits<'_>) -> Result<u16> {
        let v = r.peek(self.bits);
        let entry = self.table[v as usize];
        let len = (entry & 15) as u32;
        if len == 0 {
            // Distinguish a stream cut short from an invalid code.
            if r.n < self.bits {
                return Err(truncated());
            }
            return Err(err("invalid Huffman code (the data is corrupt)"));
        }
        r.consume(len)?;
        Ok(entry >> 4)
    }
}

const LENGTH_BASE: [u16; 29] =
    [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
const LENGTH_EXTRA: [u8; 29] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193,
    12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];
const CODE_LENGTH_ORDER: [usize; 19] = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

fn too_large(limit: usize) -> WeightsError {
    err(format!("decompresses to more than the expected {limit} bytes (corrupt, or not the member it claims to be)"))
}

fn fixed_codes() -> Result<(Huffman, Huffman)> {
    let mut lit = [0u8; 288];
    lit[..144].fill(8);
    lit[144..256].fill(9);
    lit[256..280].fill(7);
    lit[280..].fill(8);
    Ok((Huffman::new(&lit, "fixed literal/length")?, Huffman::new(&[5u8; 30], "fixed distance")?))
}

fn dynamic_codes(r: &mut Bits<'_>) -> Result<(Huffman, Huffman)> {
    let hlit = r.bits(5)? as usize + 257;
    let hdist = r.bits(5)? as usize + 1;
    let hclen = r.bits(4)? as usize + 4;
    if hlit > 286 || hdist > 30 {
        return Err(err(format!("dynamic block declares {hlit} literal/length and {hdist} distance codes (at most 286 and 30)")));
    }
    let mut cl = [0u8; 19];
    for &i in &CODE_LENGTH_ORDER[..hclen] {
        cl[i] = r.bits(3)? as u8;
    }
    let clh = Huffman::new(&cl, "code-length")?;
    let mut lengths = [0u8; 286 + 30];
    let total = hlit + hdist;
    let mut i = 0;
    while i < total {
        let sym = clh.decode(r)?;
        let (value, repeat) = match sym {
            0..=15 => (sym as u8, 1),
            16 => {
                if i == 0 {
                    return Err(err("a repeat code comes before any code length"));
                }
                (lengths[i - 1], 3 + r.bits(2)? as usize)
            }
            17 => (0, 3 + r.bits(3)? as usize),
            _ => (0, 11 + r.bits(7)? as usize),
        };
        if i + repeat > total {
            return Err(err("code lengths repeat past the declared number of codes"));
        }
        lengths[i..i + repeat].fill(value);
        i += repeat;
    }
    if lengths[256] == 0 {
        return Err(err("dynamic block has no end-of-block code"));
    }
    Ok((Huffman::new(&lengths[..hlit], "literal/length")?, Huffman::new(&lengths[hlit..total], "distance")?))
}

fn inflate_block(r: &mut Bits<'_>, out: &mut Vec<u8>, limit: usize, lit: &Huffman, dist: &Huffman) -> Result<()> {
    loop {
        let sym = lit.decode(r)?;
        if sym < 256 {
            if out.len() >= limit {
                return Err(too_large(limit));
            }
            out.push(sym as u8);
        } else if sym == 256 {
            return Ok(());
        } else {
            let li = (sym - 257) as usize;
            if li >= 29 {
                return Err(err(format!("invalid length symbol {sym}")));
            }
            let len = LENGTH_BASE[li] as usize + r.bits(LENGTH_EXTRA[li] as u32)? as usize;
            let ds = dist.decode(r)? as usize;
            if ds >= 30 {
                return Err(err(format!("invalid distance symbol {ds}")));
            }
            let d = DIST_BASE[ds] as usize + r.bits(DIST_EXTRA[ds] as u32)? as usize;
            if d > out.len() {
                return Err(err(format!("a back-reference reaches {d} bytes back but only {} were written", out.len())));
            }
            if len > limit - out.len() {
                return Err(too_large(limit));
            }
            let start = out.len() - d;
            if d >= len {
                out.extend_from_within(start..start + len);
            } else {
                for k in 0..len {
                    let b = out[start + k];
                    out.push(b);
                }
            }
        }
    }
}

/// Decompress a raw DEFLATE stream; returns the output and the number of
/// input bytes the stream occupies.
fn inflate_with_length(data: &[u8], limit: usize) -> Result<(Vec<u8>, usize)> {
    let mut r = Bits::new(data);
    let mut out = Vec::with_capacity(limit.min(data.len().saturating_mul(4)).min(1 << 26));
    let mut fixed: Option<(Huffman, Huffman)> = None;
    loop {
        let last = r.bits(1)? == 1;
        match r.bits(2)? {
            0 => {
                r.align();
                let header = data.get(r.pos..r.pos + 4).ok_or_else(truncated)?;
                let len = u16::from_le_bytes([header[0], header[1]]);
                let nlen = u16::from_le_bytes([header[2], header[3]]);
                if len != !nlen {
                    return Err(err(format!("stored block length {len} does not match its complement {nlen}")));
                }
                let len = len as usize;
                let body = data.get(r.pos + 4..r.pos + 4 + len).ok_or_else(truncated)?;
                if len > limit - out.len() {
                    return Err(too_large(limit));
                }
                out.extend_from_slice(body);
                r.pos += 4 + len;
            }
            1 => {
                if fixed.is_none() {
                    fixed = Some(fixed_codes()?);
                }
                if let Some((lit, dist)) = &fixed {
                    inflate_block(&mut r, &mut out, limit, lit, dist)?;
                }
            }
            2 => {
                let (lit, dist) = dynamic_codes(&mut r)?;
                inflate_block(&mut r, &mut out, limit, &lit, &dist)?;
            }
            _ => return Err(err("block type 3 is reserved (the data is corrupt or not DEFLATE)")),
        }
        if last {
            return Ok((out, r.consumed()));
        }
    }
}

/// Decompress a raw DEFLATE stream; `limit` bounds the output size.
/// Bytes after the final block are ignored.
pub fn inflate(data: &[u8], limit: usize) -> Result<Vec<u8>> {
    inflate_with_length(data, limit).map(|(out, _)| out)
}

/// Adler-32 (RFC 1950).
pub fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65521;
    let (mut a, mut b) = (1u32, 0u32);
    // 5552 is the most bytes before `b` can overflow u32.
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += x as u32;
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

/// Decompress a zlib stream (2-byte header, DEFLATE data, big-endian
/// Adler-32 of the output); `limit` bounds the output size.
pub fn zlib(data: &[u8], limit: usize) -> Result<Vec<u8>> {
    let zerr = |m: String| WeightsError::Header(format!("zlib stream: {m}"));
    if data.len() < 2 {
        return Err(zerr(format!("{} bytes is shorter than its 2-byte header", data.len())));
    }
    let (cmf, flg) = (data[0], data[1]);
    if cmf & 15 != 8 || cmf >> 4 > 7 {
        return Err(zerr(format!("header byte 0x{cmf:02x} does not declare DEFLATE with a window of at most 32 KiB")));
    }
    if !(cmf as u16 * 256 + flg as u16).is_multiple_of(31) {
        return Err(zerr("header check bits are wrong (not a zlib stream, or corrupt)".into()));
    }
    if flg & 0x20 != 0 {
        return Err(zerr("needs a preset dictionary, which is not supported".into()));
    }
    let (out, used) = inflate_with_length(&data[2..], limit)?;
    let tail = data.get(2 + used..2 + used + 4).ok_or_else(|| zerr("truncated before its Adler-32 checksum".into()))?;
    let expected = u32::from_be_bytes([tail[0], tail[1], tail[2], tail[3]]);
    let got = adler32(&out);
    if expected != got {
        return Err(zerr(format!("Adler-32 checksum mismatch (stored {expected:08x}, computed {got:08x}): the data is corrupt")));
    }
    Ok(out)
}
