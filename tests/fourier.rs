//! Lucid's Fourier parameterization on the GPU: against an independent
//! numpy fixture, against the direct-sum reference on odd, even and
//! non-square sizes with batch > 1, known values (DC, Nyquist, one
//! frequency), and the adjoint identity <F s, y> = <s, Fᵀ y>.

mod common;

use featvis::ops::fourier::{self, spectrum_len, spectrum_scale, spectrum_width};
use featvis::ops::{pad_channels, unpad_channels, Shape};
use featvis::reference as r;
use featvis::rng::Rng;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

const FIXTURE: &str = include_str!("fixtures/fourier.txt");

async fn gpu_image(spec: &[f32], b: usize, h: usize, w: usize, decay: f32) -> Vec<f32> {
    let g = common::gpu().await;
    let s = Shape::new(b, h, w, 3);
    let st = g.tensor_from("spectrum", spec).unwrap();
    let tmp = g.tensor_filled("tmp", spec.len(), f32::NAN).unwrap();
    let img = g.tensor_filled("img", s.padded_len(), f32::NAN).unwrap();
    let ds = fourier::forward(g, s, decay, &st, &tmp, &img).await.unwrap();
    g.run("fourier forward", &ds.iter().collect::<Vec<_>>()).await.unwrap();
    unpad_channels(&g.read(&img).await.unwrap(), s)
}

async fn gpu_adjoint(dimg: &[f32], b: usize, h: usize, w: usize, decay: f32) -> Vec<f32> {
    let g = common::gpu().await;
    let s = Shape::new(b, h, w, 3);
    let n = spectrum_len(b, h, w);
    let dt = g.tensor_from("dimg", &pad_channels(dimg, s)).unwrap();
    let tmp = g.tensor_filled("tmp", n, f32::NAN).unwrap();
    let ds = g.tensor_filled("dspectrum", n, f32::NAN).unwrap();
    let d = fourier::backward(g, s, decay, &dt, &tmp, &ds).await.unwrap();
    g.run("fourier backward", &d.iter().collect::<Vec<_>>()).await.unwrap();
    g.read(&ds).await.unwrap()
}

gpu_test! {
    async fn fourier_matches_numpy_fixture() {
        let mut lines = FIXTURE.lines().filter(|l| !l.starts_with('#'));
        let mut cases = 0;
        while let Some(head) = lines.next() {
            let dims: Vec<usize> = head.strip_prefix("case ").unwrap().split(' ').map(|v| v.parse().unwrap()).collect();
            let (h, w) = (dims[0], dims[1]);
            let want: Vec<f32> = lines.next().unwrap().split(' ').map(|v| v.parse().unwrap()).collect();
            let fw = spectrum_width(w);
            let mut spec = vec![0.0f32; spectrum_len(1, h, w)];
            for c in 0..3 {
                for ky in 0..h {
                    for kx in 0..fw {
                        let i = ((c * h + ky) * fw + kx) * 2;
                        spec[i] = (((c * 7 + ky * 3 + kx * 5) % 11) as f32 - 5.0) / 10.0;
                        spec[i + 1] = (((c + 2 * ky + kx) % 7) as f32 - 3.0) / 10.0;
                    }
                }
            }
            common::assert_close(&format!("reference vs numpy {h}x{w}"), &r::fourier_image(&spec, 1, h, w, 1.0), &want, 1e-5);
            common::assert_close(&format!("GPU vs numpy {h}x{w}"), &gpu_image(&spec, 1, h, w, 1.0).await, &want, 1e-4);
            cases += 1;
        }
        assert_eq!(cases, 5);
    }
}

gpu_test! {
    async fn fourier_matches_reference_on_random_spectra() {
        for (i, &(b, h, w)) in [(2usize, 7usize, 9usize), (1, 8, 8), (3, 5, 12), (1, 1, 1), (2, 13, 2)].iter().enumerate() {
            let mut rng = Rng::new(900 + i as u64);
            let spec = rng.normal_vec(spectrum_len(b, h, w), 0.01);
            let decay = if i == 2 { 1.5 } else { 1.0 };
            let want = r::fourier_image(&spec, b, h, w, decay as f64);
            common::assert_close(&format!("fourier {b}x{h}x{w}"), &gpu_image(&spec, b, h, w, decay).await, &want, 1e-4);
        }
    }
}

gpu_test! {
    async fn fourier_known_values_dc_nyquist_and_one_frequency() {
        let (h, w) = (4usize, 6usize);
        let (fw, nx) = (spectrum_width(w), 6.0f64);
        // DC only, with an imaginary part that irfft2d must ignore: a constant image.
        let mut spec = vec![0.0f32; spectrum_len(1, h, w)];
        spec[0] = 1.0;
        spec[1] = 0.7;
        let img = gpu_image(&spec, 1, h, w, 1.0).await;
        let dc = spectrum_scale(0, 0, h, w, 1.0) / (h as f64 * nx) / 4.0;
        for y in 0..h {
            for x in 0..w {
                let v = img[(y * w + x) * 3] as f64;
                assert!((v - dc).abs() < 1e-5 * dc.abs(), "DC at ({x},{y}): {v} vs {dc}");
                assert_eq!(img[(y * w + x) * 3 + 1], 0.0, "other channels stay zero");
            }
        }
        // Nyquist column (kx = 3) of channel 1: (−1)^x, its imaginary part ignored too.
        let mut spec = vec![0.0f32; spectrum_len(1, h, w)];
        let i = (h * fw + 3) * 2; // c = 1, ky = 0, kx = 3
        spec[i] = 1.0;
        spec[i + 1] = -2.0;
        let img = gpu_image(&spec, 1, h, w, 1.0).await;
        let amp = spectrum_scale(0, 3, h, w, 1.0) / (h as f64 * nx) / 4.0;
        for x in 0..w {
            let v = img[x * 3 + 1] as f64;
            let want = amp * if x % 2 == 0 { 1.0 } else { -1.0 };
            assert!((v - want).abs() < 1e-5 * amp, "Nyquist at x={x}: {v} vs {want}");
        }
        // One frequency (ky = 1, kx = 1), real: 2·amp·cos(2π(y/4 + x/6)).
        let mut spec = vec![0.0f32; spectrum_len(1, h, w)];
        spec[((2 * h + 1) * fw + 1) * 2] = 1.0; // c = 2
        let img = gpu_image(&spec, 1, h, w, 1.0).await;
        let amp = spectrum_scale(1, 1, h, w, 1.0) / (h as f64 * nx) / 4.0;
        for y in 0..h {
            for x in 0..w {
                let want = 2.0 * amp * (std::f64::consts::TAU * (y as f64 / 4.0 + x as f64 / 6.0)).cos();
                let v = img[(y * w + x) * 3 + 2] as f64;
                assert!((v - want).abs() < 1e-5 * amp, "cosine at ({x},{y}): {v} vs {want}");
            }
        }
    }
}

gpu_test! {
    async fn fourier_backward_is_the_adjoint() {
        for (i, &(b, h, w)) in [(2usize, 7usize, 9usize), (1, 8, 6), (3, 5, 1)].iter().enumerate() {
            let mut rng = Rng::new(950 + i as u64);
            let spec = rng.normal_vec(spectrum_len(b, h, w), 1.0);
            let y = rng.normal_vec(b * h * w * 3, 1.0);
            let fs = gpu_image(&spec, b, h, w, 1.0).await;
            let fty = gpu_adjoint(&y, b, h, w, 1.0).await;
            let lhs: f64 = fs.iter().zip(&y).map(|(a, b)| *a as f64 * *b as f64).sum();
            let rhs: f64 = spec.iter().zip(&fty).map(|(a, b)| *a as f64 * *b as f64).sum();
            assert!((lhs - rhs).abs() <= 1e-4 * lhs.abs().max(rhs.abs()).max(1e-3), "{b}x{h}x{w}: <Fs, y> = {lhs}, <s, Fᵀy> = {rhs}");
        }
    }
}
