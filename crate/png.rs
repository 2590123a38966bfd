//! PNG grids of rendered images: 8-bit RGB, encoded by the `png` crate.
//! Runs in wasm too.

/// Encode `rgb` (height × width × 3 bytes, row-major) as a PNG file.
pub fn encode_rgb(width: u32, height: u32, rgb: &[u8]) -> Vec<u8> {
    assert_eq!(rgb.len(), width as usize * height as usize * 3, "png: pixel buffer size");
    let mut out = Vec::new();
    let mut encoder = ::png::Encoder::new(&mut out, width, height);
    encoder.set_color(::png::ColorType::Rgb);
    encoder.set_depth(::png::BitDepth::Eight);
    // Writing to memory fails only on sizes PNG cannot hold (zero or over
    // 2³¹ pixels a side), which no grid has.
    let written = encoder.write_header().and_then(|mut w| {
        w.write_image_data(rgb)?;
        w.finish()
    });
    if let Err(e) = written {
        panic!("png: encoding a {width}×{height} image: {e}");
    }
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
