//! Shared by the test files of both lanes: native (llvmpipe) and wasm
//! (headless Chromium, WebGPU on SwiftShader).
#![allow(dead_code)]

use featvis::Gpu;

/// A test that runs natively with pollster and in the browser with
/// wasm-bindgen-test.
#[macro_export]
macro_rules! gpu_test {
    ($(#[$m:meta])* async fn $name:ident() $body:block) => {
        #[cfg(not(target_arch = "wasm32"))]
        #[test]
        $(#[$m])*
        fn $name() {
            pollster::block_on(async $body)
        }
        #[cfg(target_arch = "wasm32")]
        #[wasm_bindgen_test::wasm_bindgen_test]
        $(#[$m])*
        async fn $name() $body
    };
}

#[cfg(not(target_arch = "wasm32"))]
static GPU: std::sync::OnceLock<Gpu> = std::sync::OnceLock::new();

#[cfg(target_arch = "wasm32")]
thread_local! {
    static GPU: std::cell::Cell<Option<&'static Gpu>> = const { std::cell::Cell::new(None) };
}

async fn open() -> Gpu {
    let g = Gpu::new().await.expect("a GPU adapter (llvmpipe natively, WebGPU in the browser)");
    log(&format!("adapter: {} — conv schedule {}", g.adapter, g.conv_config().name()));
    g
}

/// The test device, opened once per process (never dropped: wgpu objects
/// must not be destroyed from thread-local destructors).
#[cfg(not(target_arch = "wasm32"))]
pub async fn gpu() -> &'static Gpu {
    if let Some(g) = GPU.get() {
        return g;
    }
    let g = open().await;
    GPU.get_or_init(|| g)
}

#[cfg(target_arch = "wasm32")]
pub async fn gpu() -> &'static Gpu {
    if let Some(g) = GPU.with(|g| g.get()) {
        return g;
    }
    let g: &'static Gpu = Box::leak(Box::new(open().await));
    GPU.with(|cell| cell.set(Some(g)));
    g
}

pub fn log(msg: &str) {
    #[cfg(target_arch = "wasm32")]
    wasm_bindgen_test::console_log!("{}", msg);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("{msg}");
}

/// Every value finite and within `tol` of the reference, relative to
/// |want| + mean|want| (a relative error with a floor at the tensor's scale).
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().map(|v| v.abs() as f64).sum::<f64>() / want.len().max(1) as f64;
    let scale = scale.max(1e-12);
    let mut worst = (0.0f64, 0usize);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(g.is_finite(), "{what}: index {i}: got {g}, expected {w} (not finite: output not written?)");
        let err = (*g as f64 - *w as f64).abs() / (w.abs() as f64 + scale);
        if err > worst.0 {
            worst = (err, i);
        }
    }
    let (err, i) = worst;
    assert!(err <= tol, "{what}: index {i}: got {}, expected {}, relative error {err:.3e} > {tol:.0e}", got[i], want[i]);
}

/// Is this the wasm lane (SwiftShader is slow: keep sizes modest)?
pub fn in_browser() -> bool {
    cfg!(target_arch = "wasm32")
}
