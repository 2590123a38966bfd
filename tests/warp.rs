//! The random affine warp: GPU forward against the CPU bilinear reference
//! for every preset, batch > 1 with a map per image; the adjoint identity;
//! same seed, same maps; the identity map copies.

mod common;

use featvis::ops::warp::{self, WarpMaps};
use featvis::ops::{pad_channels, unpad_channels, Shape};
use featvis::rng::Rng;
use featvis::transform::{sample, Affine, Recipe};

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

async fn run(shape: Shape, maps: &[Affine], img: &[f32], adjoint: bool) -> Vec<f32> {
    let g = common::gpu().await;
    let m = WarpMaps::new(g, shape.batch).unwrap();
    m.set(g, maps).unwrap();
    let src = g.tensor_from("src", &pad_channels(img, shape)).unwrap();
    let dst = g.tensor_filled("dst", shape.padded_len(), f32::NAN).unwrap();
    let d = if adjoint { warp::adjoint(g, shape, &m, &src, &dst).await } else { warp::forward(g, shape, &m, &src, &dst).await }.unwrap();
    g.run("warp test", &[&d]).await.unwrap();
    unpad_channels(&g.read(&dst).await.unwrap(), shape)
}

fn reference(shape: Shape, maps: &[Affine], img: &[f32]) -> Vec<f32> {
    let (h, w) = (shape.height, shape.width);
    let mut out = vec![0.0; img.len()];
    for (b, map) in maps.iter().enumerate() {
        let im = &img[b * h * w * 3..(b + 1) * h * w * 3];
        for v in 0..h {
            for u in 0..w {
                let s = map.apply((u as f64 + 0.5, v as f64 + 0.5));
                for c in 0..3 {
                    out[((b * h + v) * w + u) * 3 + c] = sample(im, h, w, c, s) as f32;
                }
            }
        }
    }
    out
}

gpu_test! {
    async fn warp_matches_reference_for_every_preset() {
        for (i, name) in ["distill", "lucid", "none"].iter().enumerate() {
            let recipe = Recipe::by_name(name).unwrap();
            for &(b, h, w) in &[(3usize, 23usize, 31usize), (2, 40, 40)] {
                let s = Shape::new(b, h, w, 3);
                let mut rng = Rng::new(1000 + i as u64);
                let maps: Vec<Affine> = (0..b).map(|_| recipe.draw(&mut rng, h, w)).collect();
                let img = rng.uniform_vec(s.pixels() * 3, 0.0, 1.0);
                let got = run(s, &maps, &img, false).await;
                common::assert_close(&format!("warp {name} {s}"), &got, &reference(s, &maps, &img), 1e-4);
                if *name == "none" {
                    common::assert_close("identity warp copies", &got, &img, 1e-6);
                }
            }
        }
    }
}

gpu_test! {
    async fn warp_adjoint_identity() {
        let recipe = Recipe::distill();
        let s = Shape::new(3, 21, 26, 3);
        let mut rng = Rng::new(1100);
        let mut maps: Vec<Affine> = (0..3).map(|_| recipe.draw(&mut rng, 21, 26)).collect();
        // Also a strong rotation and shrink, to exercise the adjoint's search box.
        maps[2] = Affine::compose(21, 26, 4, (1.0, 3.0), 0.6, 33.0, 4, (2.0, 0.0), 2);
        let x = rng.normal_vec(s.pixels() * 3, 1.0);
        let y = rng.normal_vec(s.pixels() * 3, 1.0);
        let wx = run(s, &maps, &x, false).await;
        let w0 = run(s, &maps, &vec![0.0; x.len()], false).await; // the constant (0.5 fill) part
        let wty = run(s, &maps, &y, true).await;
        let lhs: f64 = wx.iter().zip(&w0).zip(&y).map(|((a, z), b)| (*a as f64 - *z as f64) * *b as f64).sum();
        let rhs: f64 = x.iter().zip(&wty).map(|(a, b)| *a as f64 * *b as f64).sum();
        assert!((lhs - rhs).abs() <= 1e-4 * lhs.abs().max(1.0), "<Wx, y> = {lhs}, <x, Wᵀy> = {rhs}");
    }
}

gpu_test! {
    async fn same_seed_same_maps_and_presets_differ() {
        let draw = |seed| {
            let mut rng = Rng::new(seed);
            (0..4).map(|_| Recipe::distill().draw(&mut rng, 128, 128)).collect::<Vec<_>>()
        };
        assert_eq!(draw(5), draw(5));
        assert_ne!(draw(5), draw(6));
        let maps = draw(5);
        assert!(maps.windows(2).any(|p| p[0] != p[1]), "each image draws its own map");
        assert!(Recipe::by_name("fancy").is_err());
        // Lucid's preset has 26 angles (−10…10 and five extra zeros) and 11 scales.
        assert_eq!(Recipe::lucid().angles.len(), 26);
        assert_eq!(Recipe::lucid().scales.len(), 11);
    }
}
