//! The benchmark's FMA-bound peak kernel (shaders/peak.wgsl) computes the
//! fma chains it claims, against the CPU reference, so that its FLOP count
//! is work actually done.

mod common;

use featvis::bench::{peak_dispatch, peak_flop, peak_reference, PEAK_CHAINS, PEAK_ROUNDS, PEAK_SHADER};

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

gpu_test! {
    async fn peak_kernel_matches_reference() {
        let g = common::gpu().await;
        // Invocation counts that are not multiples of the workgroup (64);
        // the output is longer than them, and its tail must stay untouched.
        for (n, iterations, seed) in [(1usize, 1u32, -3.0f32), (200, 3, -3.0), (4133, 5, 2.5), (70, 0, 1.0)] {
            let tail = 7;
            let out = g.tensor_filled("peak output", n + tail, f32::NAN).unwrap();
            let d = peak_dispatch(g, &out, n, iterations, seed).await.unwrap();
            g.run("peak kernel test", &[&d]).await.unwrap();
            let got = g.read(&out).await.unwrap();
            let want = peak_reference(n, iterations, seed);
            common::assert_close(&format!("peak_fma n={n} iterations={iterations}"), &got[..n], &want, 1e-5);
            assert!(got[n..].iter().all(|v| v.is_nan()), "peak_fma n={n}: wrote past its {n} invocations: {:?}", &got[n..]);
        }
    }
}

gpu_test! {
    async fn peak_reference_tells_iterations_and_invocations_apart() {
        // One round more, or one invocation's start for another's, moves the
        // result by far more than the tolerance above: the check has teeth.
        let (a, b) = (peak_reference(64, 3, -3.0), peak_reference(65, 3, -3.0));
        let c = peak_reference(64, 4, -3.0);
        for i in 0..64 {
            let rel = |x: f32, y: f32| ((x - y).abs() / y.abs().max(1.0)) as f64;
            assert!(rel(c[i], a[i]) > 1e-3, "iterations: index {i}: {} vs {}", c[i], a[i]);
            assert!(rel(b[i + 1], a[i]) > 1e-3, "invocations: index {i}: {} vs {}", b[i + 1], a[i]);
        }
    }
}

gpu_test! {
    async fn peak_flop_counts_every_fma_of_the_shader() {
        // Each fma in the loop body is one vec4 fma: 2 × 4 FLOP.
        let fmas = PEAK_SHADER.matches("= fma(").count() as u32;
        assert_eq!(fmas, PEAK_CHAINS * PEAK_ROUNDS, "peak.wgsl's loop body");
        assert_eq!(peak_flop(1, 1), 8.0 * fmas as f64);
        assert_eq!(peak_flop(100, 7), 700.0 * 8.0 * fmas as f64);
    }
}
