//! The PNG encoder: structure, checksums and pixel payload, read back with
//! the png crate's decoder (which checks every chunk's CRC and the zlib
//! stream's Adler-32).
#![cfg(not(target_arch = "wasm32"))]

use featvis::png;

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[test]
fn png_has_valid_chunks_and_the_pixels() {
    for (w, h) in [(3u32, 2u32), (1, 1), (300, 257)] {
        let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 13 % 251) as u8).collect();
        let out = png::encode_rgb(w, h, &rgb);
        assert_eq!(&out[..8], &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]);
        // IHDR first (8-bit RGB), IEND last, every chunk inside the file.
        let mut pos = 8;
        let mut kinds = Vec::new();
        while pos < out.len() {
            let len = be32(&out[pos..]) as usize;
            let kind = String::from_utf8(out[pos + 4..pos + 8].to_vec()).unwrap();
            if kind == "IHDR" {
                let data = &out[pos + 8..pos + 8 + len];
                assert_eq!((be32(data), be32(&data[4..])), (w, h));
                assert_eq!(&data[8..10], &[8, 2]);
            }
            kinds.push(kind);
            pos += 12 + len;
        }
        assert_eq!(pos, out.len());
        assert_eq!((kinds[0].as_str(), kinds[kinds.len() - 1].as_str()), ("IHDR", "IEND"), "{kinds:?}");
        assert!(kinds.iter().any(|k| k == "IDAT"));
        // Decoded: the same pixels.
        let mut reader = ::png::Decoder::new(std::io::Cursor::new(&out)).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height, info.color_type, info.bit_depth), (w, h, ::png::ColorType::Rgb, ::png::BitDepth::Eight));
        assert!(buf[..info.buffer_size()] == rgb[..], "{w}x{h}: pixels differ");
    }
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
