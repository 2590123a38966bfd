//! The PNG encoder: structure, checksums and pixel payload.
#![cfg(not(target_arch = "wasm32"))]

use featvis::png;

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[test]
fn png_has_valid_chunks_and_the_pixels() {
    let (w, h) = (3u32, 2u32);
    let rgb: Vec<u8> = (0..18).map(|i| (i * 13) as u8).collect();
    let out = png::encode_rgb(w, h, &rgb);
    assert_eq!(&out[..8], &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]);
    let mut pos = 8;
    let mut kinds = Vec::new();
    let mut idat = Vec::new();
    while pos < out.len() {
        let len = be32(&out[pos..]) as usize;
        let kind = &out[pos + 4..pos + 8];
        let data = &out[pos + 8..pos + 8 + len];
        if kind == b"IHDR" {
            assert_eq!((be32(data), be32(&data[4..])), (w, h));
            assert_eq!(&data[8..10], &[8, 2]);
        }
        if kind == b"IDAT" {
            idat.extend_from_slice(data);
        }
        kinds.push(String::from_utf8(kind.to_vec()).unwrap());
        pos += 12 + len;
    }
    assert_eq!(kinds, ["IHDR", "IDAT", "IEND"]);
    // zlib header, one final stored block holding the filtered rows.
    assert_eq!(&idat[..2], &[0x78, 0x01]);
    assert_eq!(idat[2], 1);
    let n = u16::from_le_bytes([idat[3], idat[4]]) as usize;
    assert_eq!(n, (w as usize * 3 + 1) * h as usize);
    let raw = &idat[7..7 + n];
    assert_eq!(raw[0], 0);
    assert_eq!(&raw[1..10], &rgb[..9]);
    assert_eq!(&raw[11..20], &rgb[9..]);
}

#[test]
fn grid_places_tiles_with_margins() {
    let tiles = vec![vec![0.0f32; 2 * 2 * 3], vec![1.0f32; 2 * 2 * 3], vec![0.5f32; 2 * 2 * 3]];
    let (w, h, rgb) = png::grid(&tiles, 2, 2, 2, 1);
    assert_eq!((w, h), (7, 7));
    let px = |x: usize, y: usize| rgb[(y * 7 + x) * 3];
    assert_eq!(px(0, 0), 255); // margin
    assert_eq!(px(1, 1), 0); // tile 0
    assert_eq!(px(4, 1), 255); // tile 1 (white)
    assert_eq!(px(1, 4), 128); // tile 2
    assert_eq!(px(4, 4), 255); // empty cell
}
