//! Bad requests give typed errors that name the kernel, the limit or the
//! layer; never a panic.

mod common;

use featvis::gpu::{Binding, KernelSpec};
use featvis::model::{resolve, Network, Vgg16, Vgg16Weights};
use featvis::Error;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

gpu_test! {
    async fn invalid_shader_is_a_validation_error_naming_the_kernel() {
        let g = common::gpu().await;
        let spec = KernelSpec {
            shader: "broken.wgsl",
            source: "@group(0) @binding(0) var<storage, read_write> y: array<f32>;\n@compute @workgroup_size(1) fn broken_kernel() { y[0] = undefined_name; }",
            entry: "broken_kernel",
            constants: vec![],
            bindings: &[Binding::ReadWrite],
            workgroup_size: 1,
        };
        match g.kernel(&spec).await {
            Err(Error::Validation { kernel, message }) => {
                assert!(kernel.contains("broken_kernel"), "{kernel}");
                assert!(!message.is_empty());
            }
            Err(e) => panic!("expected a validation error, got {e}"),
            Ok(_) => panic!("an invalid shader compiled"),
        }
    }
}

gpu_test! {
    async fn binding_layout_mismatch_is_a_validation_error() {
        let g = common::gpu().await;
        // The shader writes a read-only binding: the explicit layout says read.
        let spec = KernelSpec {
            shader: "mismatch.wgsl",
            source: "@group(0) @binding(0) var<storage, read_write> y: array<f32>;\n@compute @workgroup_size(1) fn mismatched_kernel() { y[0] = 1.0; }",
            entry: "mismatched_kernel",
            constants: vec![],
            bindings: &[Binding::Read],
            workgroup_size: 1,
        };
        let e = g.kernel(&spec).await.err().expect("layout mismatch must fail");
        assert!(e.to_string().contains("mismatched_kernel"), "{e}");
    }
}

gpu_test! {
    async fn unknown_specialization_constant_is_an_error() {
        let g = common::gpu().await;
        let spec = KernelSpec {
            shader: "conv.wgsl",
            source: featvis::ops::conv::SHADER,
            entry: "conv3x3_forward_register",
            constants: vec![("NO_SUCH_CONSTANT", 1)],
            bindings: &[Binding::Uniform],
            workgroup_size: 1,
        };
        let e = g.kernel(&spec).await.err().expect("must fail");
        assert!(matches!(e, Error::Specialize { .. }), "{e}");
    }
}

gpu_test! {
    async fn buffer_over_the_device_limit_names_the_limit() {
        let g = common::gpu().await;
        let too_many = (g.limits.max_storage_buffer_binding_size as usize) / 4 + 1;
        match g.tensor("huge activation", too_many) {
            Err(Error::Limit(l)) => {
                assert_eq!(l.limit, "max_storage_buffer_binding_size");
                let msg = Error::Limit(l).to_string();
                assert!(msg.contains("huge activation") && msg.contains("smaller"), "{msg}");
            }
            Err(e) => panic!("expected a limit error, got {e}"),
            Ok(_) => panic!("a buffer over the binding limit was created"),
        }
    }
}

gpu_test! {
    async fn network_too_large_for_the_device_is_a_limit_error() {
        let g = common::gpu().await;
        let model = Vgg16::upload(g, &Vgg16Weights::random(1, None)).unwrap();
        // conv1_1 output at 1024² × batch 64 is 16 GiB: over every binding limit.
        let e = Network::new(g, &model, 64, 1024, 1024, "conv1_1").await.err().expect("must not fit");
        let msg = e.to_string();
        assert!(matches!(e, Error::Limit(_)), "{msg}");
        assert!(msg.contains("conv1_1") || msg.contains("input"), "{msg}");
    }
}

gpu_test! {
    async fn unknown_layer_and_small_image_and_bad_channel() {
        let e = resolve("conv6_1", false).unwrap_err();
        assert!(matches!(e, Error::UnknownLayer { .. }));
        assert!(e.to_string().contains("conv5_3"), "lists the known layers: {e}");
        let e = resolve("fc7", false).unwrap_err().to_string();
        assert!(e.contains("classifier head"), "{e}");
        assert!(resolve("pool3_pre_relu", false).is_err());
        assert!(resolve("conv4_3_pre_relu", false).is_ok());

        let g = common::gpu().await;
        let model = Vgg16::upload(g, &Vgg16Weights::random(1, None)).unwrap();
        let e = Network::new(g, &model, 1, 15, 15, "conv5_3").await.err().expect("15 px cannot reach conv5_3").to_string();
        assert!(e.contains("too small") && e.contains("16x16"), "{e}");
        assert!(Network::new(g, &model, 1, 16, 16, "conv5_3").await.is_ok());
        let e = Network::new(g, &model, 1, 16, 16, "conv9").await.err().expect("unknown layer");
        assert!(matches!(e, Error::UnknownLayer { .. }), "{e}");

        let net = Network::new(g, &model, 2, 16, 16, "conv1_1").await.unwrap();
        use featvis::ops::objective::Target;
        let e = net.set_objectives(g, &[(Target::Channel(0), 1.0), (Target::Channel(64), 1.0)]).unwrap_err().to_string();
        assert!(e.contains("channel 64") && e.contains("0..63"), "{e}");
    }
}

gpu_test! {
    async fn bad_weights_are_rejected_before_the_gpu() {
        let g = common::gpu().await;
        let mut w = Vgg16Weights::random(1, None);
        w.convs[3].bias.pop();
        let e = Vgg16::upload(g, &w).err().expect("wrong bias length").to_string();
        assert!(e.contains("conv2_2"), "{e}");
    }
}

gpu_test! {
    async fn error_outside_every_scope_fails_the_next_readback() {
        // A device of its own: the error must not reach the other tests' device.
        let g = featvis::Gpu::new().await.expect("a GPU adapter");
        let t = g.tensor_from("probe", &[1.0, 2.0]).unwrap();
        assert_eq!(g.read(&t).await.unwrap(), vec![1.0, 2.0]);
        // MAP_READ together with STORAGE is invalid without a native-only
        // feature: wgpu reports it to the uncaptured-error handler.
        let _bad = g.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("invalid usage"),
            size: 16,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        match g.read(&t).await {
            Err(Error::Readback { buffer, message }) => {
                assert_eq!(buffer, "probe");
                assert!(message.contains("reported an error"), "{message}");
            }
            other => panic!("expected a readback error after an uncaptured GPU error, got {other:?}"),
        }
        // Reported once: the device itself still works.
        assert_eq!(g.read(&t).await.unwrap(), vec![1.0, 2.0]);
    }
}
