//! A small PNG encoder (8-bit RGB, zlib with stored blocks): enough to save
//! visualizations without another dependency. Runs in wasm too.

fn crc32(data: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (i, t) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
        }
        *t = c;
    }
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c = table[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
    }
    c ^ 0xFFFF_FFFF
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += x as u32;
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    (b << 16) | a
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend((data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend(kind);
    out.extend(data);
    let crc = crc32(&out[start..]);
    out.extend(crc.to_be_bytes());
}

/// Encode `rgb` (height × width × 3 bytes, row-major) as a PNG file.
pub fn encode_rgb(width: u32, height: u32, rgb: &[u8]) -> Vec<u8> {
    assert_eq!(rgb.len(), width as usize * height as usize * 3, "png: pixel buffer size");
    let row = width as usize * 3;
    let mut raw = Vec::with_capacity((row + 1) * height as usize);
    for y in 0..height as usize {
        raw.push(0); // filter: none
        raw.extend(&rgb[y * row..(y + 1) * row]);
    }
    let mut z = vec![0x78, 0x01];
    let mut blocks = raw.chunks(65535).peekable();
    if blocks.peek().is_none() {
        z.extend([1, 0, 0, 0xFF, 0xFF]);
    }
    while let Some(b) = blocks.next() {
        z.push(u8::from(blocks.peek().is_none()));
        z.extend((b.len() as u16).to_le_bytes());
        z.extend((!(b.len() as u16)).to_le_bytes());
        z.extend(b);
    }
    z.extend(adler32(&raw).to_be_bytes());
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    let mut ihdr = Vec::new();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]); // 8-bit, RGB, deflate, adaptive filters, no interlace
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &z);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// Lay out `images` (each h × w × 3, values in [0, 1]) in a grid of
/// `cols` columns with `margin` white pixels between and around tiles.
pub fn grid(images: &[Vec<f32>], h: usize, w: usize, cols: usize, margin: usize) -> (u32, u32, Vec<u8>) {
    let cols = cols.max(1).min(images.len().max(1));
    let rows = images.len().div_ceil(cols).max(1);
    let (gw, gh) = (cols * w + (cols + 1) * margin, rows * h + (rows + 1) * margin);
    let mut out = vec![255u8; gw * gh * 3];
    for (i, img) in images.iter().enumerate() {
        let (ox, oy) = (margin + (i % cols) * (w + margin), margin + (i / cols) * (h + margin));
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let v = img[(y * w + x) * 3 + c];
                    out[((oy + y) * gw + ox + x) * 3 + c] = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
                }
            }
        }
    }
    (gw as u32, gh as u32, out)
}

/// 3×5 bitmaps of the digits 0–9, one row per 3 bits (high bit left).
const DIGITS: [[u8; 5]; 10] = [
    [0b111, 0b101, 0b101, 0b101, 0b111],
    [0b010, 0b110, 0b010, 0b010, 0b111],
    [0b111, 0b001, 0b111, 0b100, 0b111],
    [0b111, 0b001, 0b111, 0b001, 0b111],
    [0b101, 0b101, 0b111, 0b001, 0b001],
    [0b111, 0b100, 0b111, 0b001, 0b111],
    [0b111, 0b100, 0b111, 0b101, 0b111],
    [0b111, 0b001, 0b001, 0b001, 0b001],
    [0b111, 0b101, 0b111, 0b101, 0b111],
    [0b111, 0b101, 0b111, 0b001, 0b111],
];

/// Pixel scale of the label digits and the height of the strip under a tile.
const LABEL_SCALE: usize = 2;
pub const LABEL_HEIGHT: usize = 5 * LABEL_SCALE + 4;

/// [`grid`] with a number under each tile (OpenAI Microscope style: the
/// channel index), drawn in dark grey in a strip of [`LABEL_HEIGHT`] pixels.
pub fn grid_labeled(images: &[Vec<f32>], h: usize, w: usize, cols: usize, margin: usize, labels: &[usize]) -> (u32, u32, Vec<u8>) {
    let cols = cols.max(1).min(images.len().max(1));
    let rows = images.len().div_ceil(cols).max(1);
    let cell_h = h + LABEL_HEIGHT;
    let (gw, gh) = (cols * w + (cols + 1) * margin, rows * cell_h + (rows + 1) * margin);
    let mut out = vec![255u8; gw * gh * 3];
    for (i, img) in images.iter().enumerate() {
        let (ox, oy) = (margin + (i % cols) * (w + margin), margin + (i / cols) * (cell_h + margin));
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let v = img[(y * w + x) * 3 + c];
                    out[((oy + y) * gw + ox + x) * 3 + c] = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
                }
            }
        }
        let Some(label) = labels.get(i) else { continue };
        let text = label.to_string();
        let advance = 4 * LABEL_SCALE;
        let width = text.len() * advance - LABEL_SCALE;
        let x0 = ox + w.saturating_sub(width) / 2;
        let y0 = oy + h + 2;
        for (k, ch) in text.bytes().enumerate() {
            let glyph = DIGITS[(ch - b'0') as usize];
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..3 {
                    if bits >> (2 - col) & 1 == 0 {
                        continue;
                    }
                    for dy in 0..LABEL_SCALE {
                        for dx in 0..LABEL_SCALE {
                            let (x, y) = (x0 + k * advance + col * LABEL_SCALE + dx, y0 + row * LABEL_SCALE + dy);
                            if x < ox + w && y < gh {
                                out[(y * gw + x) * 3..(y * gw + x) * 3 + 3].fill(64);
                            }
                        }
                    }
                }
            }
        }
    }
    (gw as u32, gh as u32, out)
}
