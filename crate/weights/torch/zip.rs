//! A zip archive reader for the archives `torch.save` writes: end of central
//! directory (and its zip64 form), central directory, local headers; stored
//! and deflated members; CRC-32 checked on every member read. Offsets and
//! sizes are checked against the file before any slice is taken.

use std::borrow::Cow;

use super::super::inflate;
use super::super::{Result, WeightsError};

fn err(message: impl std::fmt::Display) -> WeightsError {
    WeightsError::Header(format!("zip archive: {message}"))
}

/// One member of the archive, as the central directory describes it.
#[derive(Clone, Debug)]
pub struct Entry {
    pub name: String,
    method: u16,
    flags: u16,
    crc: u32,
    compressed: u64,
    size: u64,
    local_offset: u64,
}

impl Entry {
    pub fn size(&self) -> u64 {
        self.size
    }
}

pub struct Zip<'a> {
    bytes: &'a [u8],
    pub entries: Vec<Entry>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

fn cut(what: &str, needed: u64, available: usize) -> WeightsError {
    WeightsError::Truncated { what: format!("zip {what}"), needed, available: available as u64 }
}

/// CRC-32 (IEEE 802.3, the one zip uses), slicing by 16 bytes: a 553 MB
/// VGG16 checkpoint is checked at memory-like speed.
pub fn crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[[u32; 256]; 16]> = std::sync::OnceLock::new();
    let t = TABLE.get_or_init(|| {
        let mut t = [[0u32; 256]; 16];
        for i in 0..256u32 {
            let mut c = i;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
            t[0][i as usize] = c;
        }
        for i in 0..256 {
            for k in 1..16 {
                let prev = t[k - 1][i];
                t[k][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            }
        }
        t
    });
    let mut c = !0u32;
    let mut chunks = data.chunks_exact(16);
    for ch in &mut chunks {
        let w = |k: usize| u32::from_le_bytes([ch[k], ch[k + 1], ch[k + 2], ch[k + 3]]);
        let (a, b, d, e) = (c ^ w(0), w(4), w(8), w(12));
        let byte = |x: u32, s: u32| ((x >> s) & 0xff) as usize;
        c = t[15][byte(a, 0)]
            ^ t[14][byte(a, 8)]
            ^ t[13][byte(a, 16)]
            ^ t[12][byte(a, 24)]
            ^ t[11][byte(b, 0)]
            ^ t[10][byte(b, 8)]
            ^ t[9][byte(b, 16)]
            ^ t[8][byte(b, 24)]
            ^ t[7][byte(d, 0)]
            ^ t[6][byte(d, 8)]
            ^ t[5][byte(d, 16)]
            ^ t[4][byte(d, 24)]
            ^ t[3][byte(e, 0)]
            ^ t[2][byte(e, 8)]
            ^ t[1][byte(e, 16)]
            ^ t[0][byte(e, 24)];
    }
    for &b in chunks.remainder() {
        c = t[0][((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

impl<'a> Zip<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Zip<'a>> {
        let n = bytes.len();
        if n < 22 {
            return Err(cut("end of central directory", 22, n));
        }
        // The end record is the last "PK\x05\x06" whose comment reaches the end.
        let lowest = n.saturating_sub(22 + 0xffff);
        let eocd = (lowest..=n - 22)
            .rev()
            .find(|&i| bytes[i..i + 4] == *b"PK\x05\x06" && u16_at(bytes, i + 20).map(|c| i + 22 + c as usize) == Some(n))
            .or_else(|| (lowest..=n - 22).rev().find(|&i| bytes[i..i + 4] == *b"PK\x05\x06"))
            .ok_or_else(|| err("no end-of-central-directory record (not a zip file, or truncated)"))?;
        let field16 = |at: usize| u16_at(bytes, eocd + at).unwrap_or(0);
        let field32 = |at: usize| u32_at(bytes, eocd + at).unwrap_or(0);
        let (mut disk, mut cd_disk) = (field16(4) as u32, field16(6) as u32);
        let mut count = field16(10) as u64;
        let mut cd_size = field32(12) as u64;
        let mut cd_offset = field32(16) as u64;
        // zip64: a locator right before the end record points at the zip64 end record.
        if eocd >= 20 && bytes[eocd - 20..eocd - 16] == *b"PK\x06\x07" {
            let at = u64_at(bytes, eocd - 12).unwrap_or(u64::MAX);
            let at = usize::try_from(at).ok().filter(|&a| a.checked_add(56).is_some_and(|e| e <= eocd - 20));
            let at = at.ok_or_else(|| err("the zip64 locator points outside the file"))?;
            if bytes[at..at + 4] != *b"PK\x06\x06" {
                return Err(err("the zip64 locator does not point at a zip64 end-of-central-directory record"));
            }
            disk = u32_at(bytes, at + 16).unwrap_or(0);
            cd_disk = u32_at(bytes, at + 20).unwrap_or(0);
            count = u64_at(bytes, at + 32).unwrap_or(0);
            cd_size = u64_at(bytes, at + 40).unwrap_or(0);
            cd_offset = u64_at(bytes, at + 48).unwrap_or(0);
        } else if count == 0xffff || cd_size == 0xffff_ffff || cd_offset == 0xffff_ffff {
            return Err(err("the end record asks for zip64 values but there is no zip64 locator"));
        }
        if disk != 0 || cd_disk != 0 {
            return Err(err("multi-disk (split) archives are not supported"));
        }
        let cd_end = cd_offset.checked_add(cd_size).filter(|&e| e <= n as u64).ok_or_else(|| {
            cut("central directory", cd_offset.saturating_add(cd_size), n)
        })?;
        // Each central record is at least 46 bytes: a count beyond that is a lie.
        if count > cd_size / 46 {
            return Err(err(format!("{count} entries cannot fit in a {cd_size}-byte central directory")));
        }
        let mut entries = Vec::with_capacity(count as usize);
        let mut p = cd_offset as usize;
        for k in 0..count {
            let r = bytes.get(p..cd_end as usize).unwrap_or(&[]);
            if r.len() < 46 || r[..4] != *b"PK\x01\x02" {
                return Err(err(format!("central directory entry {k} is missing or damaged")));
            }
            let g16 = |at| u16_at(r, at).unwrap_or(0);
            let g32 = |at| u32_at(r, at).unwrap_or(0);
            let (name_len, extra_len, comment_len) = (g16(28) as usize, g16(30) as usize, g16(32) as usize);
            let total = 46 + name_len + extra_len + comment_len;
            if r.len() < total {
                return Err(err(format!("central directory entry {k} runs past the directory's end")));
            }
            let name = String::from_utf8_lossy(&r[46..46 + name_len]).into_owned();
            let mut e = Entry {
                name,
                flags: g16(8),
                method: g16(10),
                crc: g32(16),
                compressed: g32(20) as u64,
                size: g32(24) as u64,
                local_offset: g32(42) as u64,
            };
            // zip64 extended information: only the fields saturated above, in this order.
            let mut extra = &r[46 + name_len..46 + name_len + extra_len];
            while extra.len() >= 4 {
                let id = u16_at(extra, 0).unwrap_or(0);
                let len = u16_at(extra, 2).unwrap_or(0) as usize;
                let body = extra.get(4..4 + len).ok_or_else(|| err(format!("`{}`: extra field runs past its end", e.name)))?;
                if id == 1 {
                    let mut q = 0;
                    let mut next = |what: &str| -> Result<u64> {
                        let v = u64_at(body, q).ok_or_else(|| err(format!("`{}`: zip64 field lacks the {what}", e.name)))?;
                        q += 8;
                        Ok(v)
                    };
                    if e.size == 0xffff_ffff {
                        e.size = next("size")?;
                    }
                    if e.compressed == 0xffff_ffff {
                        e.compressed = next("compressed size")?;
                    }
                    if e.local_offset == 0xffff_ffff {
                        e.local_offset = next("header offset")?;
                    }
                }
                extra = &extra[4 + len..];
            }
            entries.push(e);
            p += total;
        }
        Ok(Zip { bytes, entries })
    }

    pub fn find(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The member's bytes (borrowed when stored), CRC-checked.
    pub fn read(&self, e: &Entry) -> Result<Cow<'a, [u8]>> {
        let n = self.bytes.len();
        if e.flags & 1 != 0 {
            return Err(err(format!("`{}` is encrypted", e.name)));
        }
        let at = usize::try_from(e.local_offset).ok().filter(|&a| a <= n).ok_or_else(|| cut(&format!("member `{}`", e.name), e.local_offset, n))?;
        let local = self.bytes.get(at..at + 30).ok_or_else(|| cut(&format!("local header of `{}`", e.name), at as u64 + 30, n))?;
        if local[..4] != *b"PK\x03\x04" {
            return Err(err(format!("the local header of `{}` is missing (bad offset or corrupt file)", e.name)));
        }
        let start = at + 30 + u16_at(local, 26).unwrap_or(0) as usize + u16_at(local, 28).unwrap_or(0) as usize;
        let end = (start as u64).checked_add(e.compressed).filter(|&x| x <= n as u64);
        let end = end.ok_or_else(|| cut(&format!("member `{}`", e.name), start as u64 + e.compressed, n))? as usize;
        let raw = &self.bytes[start..end];
        let data: Cow<'a, [u8]> = match e.method {
            0 => {
                if e.compressed != e.size {
                    return Err(err(format!("stored member `{}` has compressed size {} but size {}", e.name, e.compressed, e.size)));
                }
                Cow::Borrowed(raw)
            }
            8 => {
                let limit = usize::try_from(e.size).map_err(|_| err(format!("`{}` is too large for this machine", e.name)))?;
                let out = inflate::inflate(raw, limit).map_err(|x| err(format!("member `{}`: {x}", e.name)))?;
                if out.len() as u64 != e.size {
                    return Err(err(format!("member `{}` inflates to {} bytes, the directory says {}", e.name, out.len(), e.size)));
                }
                Cow::Owned(out)
            }
            m => return Err(err(format!("member `{}` uses compression method {m} (only stored and deflate are supported)", e.name))),
        };
        let crc = crc32(&data);
        if crc != e.crc {
            return Err(err(format!("CRC-32 of member `{}` is {crc:08x}, the directory says {:08x}: the file is corrupt", e.name, e.crc)));
        }
        Ok(data)
    }
}
