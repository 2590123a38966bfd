//! One optimization step on the GPU, recorded into one encoder and
//! submitted once (DESIGN §2):
//!
//! ```text
//!     parameter (Fourier spectrum or pixels)
//!       → image t → colour decorrelation + sigmoid → image in [0, 1]
//!       → random affine warp (one map per image) → preprocessing
//!       → VGG16 forward to the target → objective → backward to the input
//!       → adjoints of preprocessing, warp, colour, parameterization
//!       → Adam on the parameter
//! ```
//!
//! Every buffer, pipeline and bind group is created once, in [`Pipeline::new`].
//! Per step only the warp maps and Adam's step size are written.

use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::model::{Network, Vgg16};
use crate::ops::adam::{Adam, AdamStep};
use crate::ops::image::{self, Preprocess};
use crate::ops::objective::Target;
use crate::ops::warp::{self, WarpMaps};
use crate::ops::{fourier, unpad_channels, Shape};
use crate::rng::Rng;
use crate::transform::{Affine, Recipe};

/// How the image is parameterized.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Param {
    /// Lucid's fft_image with colour decorrelation (the article's default).
    Fourier { decay_power: f32 },
    /// Plain pixels, normal(0, 0.01), no decorrelation (for comparison).
    Pixel,
}

impl Param {
    pub fn by_name(name: &str) -> Result<Param> {
        match name {
            "fft" => Ok(Param::Fourier { decay_power: 1.0 }),
            "pixel" => Ok(Param::Pixel),
            _ => Err(Error::Invalid(format!("unknown parameterization `{name}`: use fft or pixel"))),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub batch: usize,
    pub height: usize,
    pub width: usize,
    /// Target layer name (`conv4_3`, `conv4_3_pre_relu`, …).
    pub layer: String,
    pub param: Param,
    pub transforms: Recipe,
    pub adam: Adam,
    pub preprocess: Preprocess,
    pub seed: u64,
}

pub struct Pipeline {
    pub settings: Settings,
    pub net: Network,
    shape: Shape,
    /// The optimized variable: spectrum (B, 3, H, FW, 2) or pixels (B, H, W, 4).
    pub param: Tensor,
    /// The image in [0, 1], before the warp (B, H, W, 4).
    pub image: Tensor,
    maps: WarpMaps,
    adam: AdamStep,
    rng: Rng,
    step: u32,
    forward: Vec<Dispatch>,
    backward: Vec<Dispatch>,
    _buffers: Vec<Tensor>,
}

impl Pipeline {
    pub async fn new(gpu: &Gpu, model: &Vgg16, settings: Settings) -> Result<Pipeline> {
        let (b, h, w) = (settings.batch, settings.height, settings.width);
        let net = Network::new(gpu, model, b, h, w, &settings.layer).await?;
        let shape = Shape::new(b, h, w, 3);
        let mut rng = Rng::new(settings.seed);
        let decorrelate = matches!(settings.param, Param::Fourier { .. });
        let n_img = shape.padded_len();

        let (param, t_img, tmp, grad_param) = match settings.param {
            Param::Fourier { .. } => {
                let n = fourier::spectrum_len(b, h, w);
                let param = gpu.tensor_from("spectrum", &rng.normal_vec(n, 0.01))?;
                (param, Some(gpu.tensor("fourier image", n_img)?), Some(gpu.tensor("fourier intermediate", n)?), gpu.tensor("spectrum gradient", n)?)
            }
            Param::Pixel => {
                let px = rng.normal_vec(shape.pixels() * 3, 0.01);
                let param = gpu.tensor_from("pixels", &crate::ops::pad_channels(&px, shape))?;
                (param, None, None, gpu.tensor("pixel gradient", n_img)?)
            }
        };
        let image = gpu.tensor("image", n_img)?;
        let warped = gpu.tensor("warped image", n_img)?;
        let d_warped = gpu.tensor("warped image gradient", n_img)?;
        let d_image = gpu.tensor("image gradient", n_img)?;
        let maps = WarpMaps::new(gpu, b)?;
        let m = gpu.tensor("adam m", param.len)?;
        let v = gpu.tensor("adam v", param.len)?;

        let mut forward = Vec::new();
        let t = match (&settings.param, &t_img, &tmp) {
            (Param::Fourier { decay_power }, Some(t_img), Some(tmp)) => {
                forward.extend(fourier::forward(gpu, shape, *decay_power, &param, tmp, t_img).await?);
                t_img
            }
            _ => &param,
        };
        forward.push(image::color_forward(gpu, shape, decorrelate, t, &image).await?);
        forward.push(warp::forward(gpu, shape, &maps, &image, &warped).await?);
        forward.push(image::preprocess_forward(gpu, shape, &settings.preprocess, &warped, &net.input).await?);

        let mut backward = vec![
            image::preprocess_backward(gpu, shape, &settings.preprocess, &net.grad_input, &d_warped).await?,
            warp::adjoint(gpu, shape, &maps, &d_warped, &d_image).await?,
        ];
        match (&settings.param, &t_img, &tmp) {
            (Param::Fourier { decay_power }, Some(_), Some(tmp)) => {
                let dt = gpu.tensor("fourier image gradient", n_img)?;
                backward.push(image::color_backward(gpu, shape, decorrelate, &d_image, &image, &dt).await?);
                backward.extend(fourier::backward(gpu, shape, *decay_power, &dt, tmp, &grad_param).await?);
            }
            _ => backward.push(image::color_backward(gpu, shape, decorrelate, &d_image, &image, &grad_param).await?),
        }
        let adam = AdamStep::new(gpu, settings.adam, &grad_param, &param, &m, &v).await?;
        let mut buffers = vec![warped, d_warped, d_image, m, v, grad_param];
        buffers.extend(t_img);
        buffers.extend(tmp);
        Ok(Pipeline { settings, net, shape, param, image, maps, adam, rng, step: 0, forward, backward, _buffers: buffers })
    }

    /// Each image's objective (one per batch image).
    pub fn set_objectives(&self, gpu: &Gpu, targets: &[(Target, f32)]) -> Result<()> {
        self.net.set_objectives(gpu, targets)
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u32 {
        self.step
    }

    /// Run `n` optimization steps (one submit each).
    pub async fn run(&mut self, gpu: &Gpu, n: u32) -> Result<()> {
        for _ in 0..n {
            let maps: Vec<Affine> =
                (0..self.shape.batch).map(|_| self.settings.transforms.draw(&mut self.rng, self.shape.height, self.shape.width)).collect();
            self.maps.set(gpu, &maps)?;
            self.step += 1;
            self.adam.set_step(gpu, self.step);
            let mut ds: Vec<&Dispatch> = self.forward.iter().collect();
            ds.extend(self.net.step_dispatches());
            ds.extend(self.backward.iter());
            ds.push(&self.adam.dispatch);
            gpu.run("optimization step", &ds).await?;
        }
        Ok(())
    }

    /// Each image's objective value on the untransformed image (identity
    /// warp), without changing the optimization state.
    pub async fn evaluate(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        self.maps.set(gpu, &vec![Affine::identity(); self.shape.batch])?;
        let mut ds: Vec<&Dispatch> = self.forward.iter().collect();
        ds.extend(self.net.forward_dispatches());
        gpu.run("evaluate", &ds).await?;
        self.net.read_values(gpu).await
    }

    /// The current images in [0, 1], unpadded (B, H, W, 3) RGB.
    pub async fn read_images(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        Ok(unpad_channels(&gpu.read(&self.image).await?, self.shape))
    }
}
