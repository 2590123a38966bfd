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
use crate::model::{Network, ObjectiveValues, Vgg16};
use crate::objective::Objective;
use crate::ops::adam::{Adam, AdamStep};
use crate::ops::image;
use crate::ops::objective as obj;
use crate::ops::warp::{self, WarpMaps};
use crate::ops::{fourier, unpad_channels, Shape};
use crate::rng::Rng;
use crate::transform::{Affine, Recipe};
use crate::weights::Preprocessing;

/// How the image is parameterized.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Param {
    /// Lucid's fft_image with colour decorrelation (the article's default).
    Fourier { decay_power: f32 },
    /// Plain pixels, normal(0, 0.01), no decorrelation (for comparison).
    Pixel,
}

impl Param {
    /// The name [`Param::by_name`] takes.
    pub fn name(&self) -> &'static str {
        match self {
            Param::Fourier { .. } => "fft",
            Param::Pixel => "pixel",
        }
    }

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
    pub param: Param,
    pub transforms: Recipe,
    pub adam: Adam,
    pub preprocess: Preprocessing,
    pub seed: u64,
    /// Lucid's redirected ReLU gradient for the first [`REDIRECT_STEPS`] steps.
    pub redirect_relu: bool,
}

/// Steps that use the redirected ReLU gradient: Lucid's override is active
/// while its global step (0 at the first step) is at most 16, so 17 steps.
pub const REDIRECT_STEPS: u32 = 17;

impl Settings {
    /// Lucid's defaults for a batch of `batch` images of `size`×`size`:
    /// Fourier parameterization with decorrelated colour, the Distill
    /// article's transforms, Adam at 0.05, redirected ReLU on.
    pub fn new(batch: usize, size: usize, preprocess: Preprocessing) -> Settings {
        Settings {
            batch,
            height: size,
            width: size,
            param: Param::Fourier { decay_power: 1.0 },
            transforms: Recipe::distill(),
            adam: Adam::default(),
            preprocess,
            seed: 0,
            redirect_relu: true,
        }
    }
}

/// A pipeline's optimization state (see [`Pipeline::state`]).
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineState {
    pub step: u32,
    pub rng: [u64; 5],
    pub param: Vec<f32>,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
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
    /// Adam's first and second moments, shaped like `param`.
    m: Tensor,
    v: Tensor,
    rng: Rng,
    step: u32,
    forward: Vec<Dispatch>,
    /// Values of the image regularizers (empty without them).
    image_value: Vec<Dispatch>,
    backward: Vec<Dispatch>,
    _buffers: Vec<Tensor>,
}

impl Pipeline {
    /// Prepare the optimization of `objective` (see [`crate::objective`]).
    pub async fn new(gpu: &Gpu, model: &Vgg16, settings: Settings, objective: &Objective) -> Result<Pipeline> {
        let (b, h, w) = (settings.batch, settings.height, settings.width);
        let plan = crate::objective::plan(objective, b, h, w, model.has_fc(), model.classes())?;
        let net = Network::with_plan(gpu, model, None, h, w, plan).await?;
        let shape = Shape::new(b, h, w, 3);
        let mut rng = Rng::new(settings.seed);
        let decorrelate = matches!(settings.param, Param::Fourier { .. });
        let n_img = shape.padded_len();

        let (param, t_img, tmp, grad_param) = match settings.param {
            Param::Fourier { .. } => {
                // Adam works on vec4s: the buffers are padded to a multiple
                // of 4 values with zeros, whose gradient stays 0.
                let exact = fourier::spectrum_len(b, h, w);
                let n = exact.next_multiple_of(4);
                let mut init = rng.normal_vec(exact, 0.01);
                init.resize(n, 0.0);
                let param = gpu.tensor_from("spectrum", &init)?;
                (
                    param,
                    Some(gpu.tensor("fourier image", n_img)?),
                    Some(gpu.tensor("fourier intermediate", n)?),
                    gpu.tensor("spectrum gradient", n)?,
                )
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
        let mut image_value = Vec::new();
        let regs = gpu.tensor_from("image regularizer weights", bytemuck::cast_slice(&net.plan.image))?;
        if net.plan.has_image_terms() {
            backward.push(obj::regularize_grad(gpu, shape, &regs, &image, &d_image).await?);
            image_value.push(obj::regularize_value(gpu, shape, &regs, &image, &net.values, net.layout.image).await?);
        }
        match (&settings.param, &t_img, &tmp) {
            (Param::Fourier { decay_power }, Some(_), Some(tmp)) => {
                let dt = gpu.tensor("fourier image gradient", n_img)?;
                backward.push(image::color_backward(gpu, shape, decorrelate, &d_image, &image, &dt).await?);
                backward.extend(fourier::backward(gpu, shape, *decay_power, &dt, tmp, &grad_param).await?);
            }
            _ => backward.push(image::color_backward(gpu, shape, decorrelate, &d_image, &image, &grad_param).await?),
        }
        let adam = AdamStep::new(gpu, settings.adam, &grad_param, &param, &m, &v).await?;
        let mut buffers = vec![warped, d_warped, d_image, grad_param, regs];
        buffers.extend(t_img);
        buffers.extend(tmp);
        Ok(Pipeline {
            settings,
            net,
            shape,
            param,
            image,
            maps,
            adam,
            m,
            v,
            rng,
            step: 0,
            forward,
            image_value,
            backward,
            _buffers: buffers,
        })
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u32 {
        self.step
    }

    /// Everything the next steps depend on besides the settings: the
    /// parameter, Adam's moments, the step count and the generator.
    pub async fn state(&self, gpu: &Gpu) -> Result<PipelineState> {
        Ok(PipelineState {
            step: self.step,
            rng: self.rng.state(),
            param: gpu.read(&self.param).await?,
            m: gpu.read(&self.m).await?,
            v: gpu.read(&self.v).await?,
        })
    }

    /// Continue from `state` (taken from a pipeline with the same settings
    /// and objective): the steps that follow are those the original would
    /// have taken.
    pub fn restore(&mut self, gpu: &Gpu, state: &PipelineState) -> Result<()> {
        for (what, got, want) in
            [("parameter", state.param.len(), self.param.len), ("Adam m", state.m.len(), self.m.len), ("Adam v", state.v.len(), self.v.len)]
        {
            if got != want {
                return Err(Error::Invalid(format!(
                    "the saved {what} holds {got} values, this render's holds {want}: the state is from other settings"
                )));
            }
        }
        gpu.write(&self.param, &state.param)?;
        gpu.write(&self.m, &state.m)?;
        gpu.write(&self.v, &state.v)?;
        self.step = state.step;
        self.rng = Rng::from_state(state.rng);
        Ok(())
    }

    /// Run `n` optimization steps (one submit each).
    pub async fn run(&mut self, gpu: &Gpu, n: u32) -> Result<()> {
        for _ in 0..n {
            let maps: Vec<Affine> =
                (0..self.shape.batch).map(|_| self.settings.transforms.draw(&mut self.rng, self.shape.height, self.shape.width)).collect();
            self.maps.set(gpu, &maps)?;
            let redirect = self.settings.redirect_relu && self.step < REDIRECT_STEPS;
            self.step += 1;
            self.adam.set_step(gpu, self.step);
            gpu.run("optimization step", &self.step_dispatches(redirect)).await?;
        }
        Ok(())
    }

    /// Each image's objective value on the untransformed image (identity
    /// warp), without changing the optimization state.
    pub async fn evaluate(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        Ok(self.evaluate_objective(gpu).await?.per_image.iter().map(|v| *v as f32).collect())
    }

    /// The objective, whole and per image, on the untransformed images.
    pub async fn evaluate_objective(&self, gpu: &Gpu) -> Result<ObjectiveValues> {
        self.maps.set(gpu, &vec![Affine::identity(); self.shape.batch])?;
        let mut ds: Vec<&Dispatch> = self.forward.iter().collect();
        ds.extend(self.net.forward_dispatches());
        ds.extend(self.image_value.iter());
        gpu.run("evaluate", &ds).await?;
        self.net.read_objective(gpu).await
    }

    /// Each image's objective as the last step computed it (on that step's
    /// transformed image): a read of a few floats, no extra GPU work.
    pub async fn read_losses(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        Ok(self.net.read_objective(gpu).await?.per_image.iter().map(|v| *v as f32).collect())
    }

    /// Every dispatch of one step, in order.
    pub fn step_dispatches(&self, redirect: bool) -> Vec<&Dispatch> {
        let mut ds: Vec<&Dispatch> = self.forward.iter().collect();
        ds.extend(self.net.step_dispatches_with(redirect));
        ds.extend(self.image_value.iter());
        ds.extend(self.backward.iter());
        ds.push(&self.adam.dispatch);
        ds
    }

    /// The dispatches of one step outside the network (parameterization,
    /// colour, warp, preprocessing, their adjoints, Adam): for the benchmark.
    pub fn image_dispatches(&self) -> Vec<&Dispatch> {
        self.forward.iter().chain(self.image_value.iter()).chain(self.backward.iter()).chain(std::iter::once(&self.adam.dispatch)).collect()
    }

    /// The current images in [0, 1], unpadded (B, H, W, 3) RGB: the image
    /// of the parameter as it is now (after the last Adam update; the
    /// parameterization's forward runs again first).
    pub async fn read_images(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        let ds: Vec<&Dispatch> = self.forward.iter().collect();
        gpu.run("image", &ds).await?;
        Ok(unpad_channels(&gpu.read(&self.image).await?, self.shape))
    }
}
