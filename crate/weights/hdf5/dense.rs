//! Dense link and attribute storage (what HDF5 switches to past 8 links or
//! attributes with libver="latest"): the records are fractal-heap objects
//! found through a v2 B-tree name index. Supported: a v2 B-tree of depth 0 or
//! 1, an unfiltered heap whose root is a direct block or an indirect block of
//! direct blocks, managed and tiny objects. Anything larger is refused.

use super::file::{err, Cursor, File, UNDEF};
use crate::weights::Result;

/// The stored records (link or attribute messages) of a dense storage.
pub fn records<'a>(f: &File<'a>, heap: u64, index: u64, what: &str) -> Result<Vec<&'a [u8]>> {
    let h = Heap::parse(f, heap)?;
    if index == UNDEF {
        return Err(err(format!("dense {what} without a name index")));
    }
    heap_ids(f, index)?.iter().map(|id| h.object(f, id)).collect()
}

/// Heap IDs from the records of the v2 B-tree at `addr`.
fn heap_ids<'a>(f: &File<'a>, addr: u64) -> Result<Vec<&'a [u8]>> {
    let mut c = f.from(addr, "v2 B-tree header")?;
    if c.bytes(4)? != b"BTHD" {
        return Err(err(format!("v2 B-tree header at {addr} lacks its BTHD signature")));
    }
    c.skip(1)?;
    let kind = c.u8()?;
    let node_size = c.u32()? as usize;
    let record_size = c.u16()? as usize;
    let depth = c.u16()?;
    c.skip(2)?;
    let root = f.offset(&mut c)?;
    let root_records = c.u16()? as usize;
    // Where the heap ID sits in a record, by B-tree type.
    let (id_at, id_len) = match kind {
        5 => (4, record_size.saturating_sub(4)),
        6 => (8, record_size.saturating_sub(8)),
        8 | 9 => (0, 8),
        t => return Err(err(format!("v2 B-tree of type {t} where a link or attribute index was expected"))),
    };
    if id_at + id_len > record_size || record_size == 0 {
        return Err(err(format!("v2 B-tree records of {record_size} bytes")));
    }
    let mut out = Vec::new();
    let leaf = |at: u64, n: usize, out: &mut Vec<&'a [u8]>| -> Result<()> {
        let mut c = f.from(at, "v2 B-tree leaf")?;
        if c.bytes(4)? != b"BTLF" {
            return Err(err(format!("v2 B-tree leaf at {at} lacks its BTLF signature")));
        }
        c.skip(2)?;
        for _ in 0..n {
            let r = c.bytes(record_size)?;
            out.push(&r[id_at..id_at + id_len]);
        }
        Ok(())
    };
    match depth {
        0 => leaf(root, root_records, &mut out)?,
        1 => {
            let max_leaf = node_size.saturating_sub(10) / record_size;
            let count_bytes = ((usize::BITS - max_leaf.leading_zeros()) as usize).div_ceil(8).max(1);
            let mut c = f.from(root, "v2 B-tree internal node")?;
            if c.bytes(4)? != b"BTIN" {
                return Err(err(format!("v2 B-tree node at {root} lacks its BTIN signature")));
            }
            c.skip(2)?;
            for _ in 0..root_records {
                let r = c.bytes(record_size)?;
                out.push(&r[id_at..id_at + id_len]);
            }
            let mut children = Vec::new();
            for _ in 0..=root_records {
                let a = f.offset(&mut c)?;
                let n = c.uint(count_bytes)? as usize;
                children.push((a, n));
            }
            for (a, n) in children {
                if a == root || n > max_leaf {
                    return Err(err("v2 B-tree child is malformed"));
                }
                leaf(a, n, &mut out)?;
            }
        }
        d => return Err(err(format!("v2 B-tree of depth {d} (more than ~2000 links or attributes) is not supported"))),
    }
    Ok(out)
}

struct Heap {
    id_len: usize,
    off_size: usize,
    len_size: usize,
    checksummed: bool,
    width: u64,
    start: u64,
    max_direct: u64,
    root: u64,
    rows: u64,
}

fn log2(x: u64) -> u32 {
    63 - x.max(1).leading_zeros()
}

impl Heap {
    fn parse(f: &File<'_>, addr: u64) -> Result<Heap> {
        let mut c = f.from(addr, "fractal heap header")?;
        if c.bytes(4)? != b"FRHP" {
            return Err(err(format!("fractal heap header at {addr} lacks its FRHP signature")));
        }
        c.skip(1)?;
        let id_len = c.u16()? as usize;
        let filters = c.u16()?;
        let flags = c.u8()?;
        let max_managed = c.u32()? as u64;
        f.length(&mut c)?;
        f.offset(&mut c)?;
        f.length(&mut c)?;
        f.offset(&mut c)?;
        for _ in 0..8 {
            f.length(&mut c)?;
        }
        let width = c.u16()? as u64;
        let start = f.length(&mut c)?;
        let max_direct = f.length(&mut c)?;
        let max_heap_bits = c.u16()? as usize;
        c.skip(2)?;
        let root = f.offset(&mut c)?;
        let rows = c.u16()? as u64;
        if filters != 0 {
            return Err(err("a fractal heap with I/O filters is not supported"));
        }
        if width == 0 || !start.is_power_of_two() || !max_direct.is_power_of_two() || max_direct < start || max_heap_bits > 64 {
            return Err(err(format!("fractal heap at {addr}: table width {width}, block sizes {start}…{max_direct}")));
        }
        let len_size = (log2(max_direct.min(max_managed)) / 8 + 1) as usize;
        Ok(Heap {
            id_len,
            off_size: max_heap_bits.div_ceil(8),
            len_size,
            checksummed: flags & 2 != 0,
            width,
            start,
            max_direct,
            root,
            rows,
        })
    }

    /// The bytes of the object whose heap ID is `id`.
    fn object<'a>(&self, f: &File<'a>, id: &'a [u8]) -> Result<&'a [u8]> {
        let mut c = Cursor::new(id, "fractal heap ID");
        let b0 = c.u8()?;
        match (b0 >> 4) & 3 {
            0 => {}
            2 => {
                let n = (b0 & 15) as usize + 1;
                // Tiny objects live in the ID itself.
                return c.bytes(n);
            }
            t => return Err(err(format!("fractal heap object of type {t} (huge objects are not supported)"))),
        }
        if id.len() > self.id_len.max(1) + 8 {
            return Err(err("fractal heap ID longer than the heap declares"));
        }
        let off = c.uint(self.off_size.min(8))?;
        let len = c.uint(self.len_size.min(8))?;
        let (block, block_off, size) = self.block_of(f, off)?;
        let at = off - block_off;
        if at.checked_add(len).is_none_or(|e| e > size) {
            return Err(err(format!("fractal heap object at offset {off} with {len} bytes overruns its block")));
        }
        let data = f.slice(block, size, "fractal heap direct block")?;
        if !data.starts_with(b"FHDB") {
            return Err(err(format!("fractal heap direct block at {block} lacks its FHDB signature")));
        }
        let header = 5 + f.so + self.off_size + if self.checksummed { 4 } else { 0 };
        if at < header as u64 {
            return Err(err(format!("fractal heap object at offset {off} overlaps its block's header")));
        }
        Ok(&data[at as usize..(at + len) as usize])
    }

    /// The direct block holding heap offset `off`: (address, its heap offset, size).
    fn block_of(&self, f: &File<'_>, off: u64) -> Result<(u64, u64, u64)> {
        if self.rows == 0 {
            return Ok((self.root, 0, self.start));
        }
        let max_direct_rows = (log2(self.max_direct) - log2(self.start) + 2) as u64;
        let mut c = f.from(self.root, "fractal heap indirect block")?;
        if c.bytes(4)? != b"FHIB" {
            return Err(err(format!("fractal heap indirect block at {} lacks its FHIB signature", self.root)));
        }
        c.skip(1 + f.so + self.off_size)?;
        let mut row_start = 0u64;
        for r in 0..self.rows.min(max_direct_rows) {
            let size = if r < 2 { self.start } else { self.start.checked_shl((r - 1) as u32).unwrap_or(u64::MAX) };
            let row_len = size.saturating_mul(self.width);
            if off < row_start.saturating_add(row_len) {
                let col = (off - row_start) / size;
                c.skip(((r * self.width + col) as usize) * f.so)?;
                let addr = f.offset(&mut c)?;
                return Ok((addr, row_start + col * size, size));
            }
            row_start = row_start.saturating_add(row_len);
        }
        Err(err(format!("fractal heap offset {off} lies in a nested indirect block (heaps that large are not supported)")))
    }
}
