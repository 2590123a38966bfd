//! `featvis render`: visualize channels of one layer to a PNG grid.

use std::time::Instant;

use featvis::model::{Vgg16, Vgg16Weights};
use featvis::ops::adam::Adam;
use featvis::ops::image::Preprocess;
use featvis::objective::Objective;
use featvis::pipeline::{Param, Pipeline, Settings};
use featvis::transform::Recipe;
use featvis::Gpu;

use crate::args::Args;

fn parse_channels(text: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in text.split(',') {
        let bad = || format!("--channels expects a list like 0-7,12 — got `{text}`");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
                if b < a {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.trim().parse().map_err(|_| bad())?),
        }
    }
    Ok(out)
}

pub fn main(argv: &[String]) -> Result<(), String> {
    let args = Args::parse(
        argv,
        &["weights", "layer", "channels", "size", "steps", "transforms", "param", "seed", "out", "batch", "cols"],
        &["random-weights"],
    )?;
    let layer = args.get("layer").unwrap_or("conv4_3").to_string();
    let channels = parse_channels(args.get("channels").unwrap_or("0-7"))?;
    let size = args.usize_or("size", 128)?;
    let steps = args.usize_or("steps", 512)? as u32;
    if steps == 0 {
        return Err("--steps must be at least 1".into());
    }
    let transforms = Recipe::by_name(args.get("transforms").unwrap_or("distill")).map_err(|e| e.to_string())?;
    let param = Param::by_name(args.get("param").unwrap_or("fft")).map_err(|e| e.to_string())?;
    let seed = args.usize_or("seed", 1)? as u64;
    let out = args.get("out").unwrap_or("grid.png").to_string();
    let batch = args.usize_or("batch", 8)?.max(1);
    let cols = args.usize_or("cols", 8)?;

    let (weights, preprocess) = if args.flag("random-weights") {
        (Vgg16Weights::random(1, None), Preprocess::keras())
    } else {
        let path = args.get("weights").unwrap_or("www/weights/vgg16-imagenet.safetensors");
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read weights `{path}`: {e} (run `featvis fetch-weights`)"))?;
        let f = featvis::weights::WeightsFile::from_bytes(&bytes).map_err(|e| format!("{path}: {e}"))?;
        let pre = f.preprocessing.to_preprocess();
        (f.weights, pre)
    };
    // Check the output path before spending minutes on the GPU.
    std::fs::write(&out, b"").map_err(|e| format!("cannot write `{out}`: {e}"))?;
    let _ = std::fs::remove_file(&out);

    let gpu = pollster::block_on(Gpu::new()).map_err(|e| e.to_string())?;
    let model = Vgg16::upload(&gpu, &weights).map_err(|e| e.to_string())?;
    let mut tiles: Vec<Vec<f32>> = Vec::new();
    let start = Instant::now();
    for (ci, group) in channels.chunks(batch).enumerate() {
        let settings = Settings {
            batch: group.len(),
            height: size,
            width: size,
            param,
            transforms: transforms.clone(),
            adam: Adam::default(),
            preprocess,
            seed: seed.wrapping_add(ci as u64),
            redirect_relu: true,
        };
        let objective = Objective::per_image(group.iter().map(|&c| Objective::channel(&layer, c)).collect()).map_err(|e| e.to_string())?;
        let mut p = pollster::block_on(Pipeline::new(&gpu, &model, settings, &objective)).map_err(|e| e.to_string())?;
        let before = pollster::block_on(p.evaluate(&gpu)).map_err(|e| e.to_string())?;
        let chunk = 16;
        let mut done = 0;
        while done < steps {
            let n = chunk.min(steps - done);
            pollster::block_on(p.run(&gpu, n)).map_err(|e| e.to_string())?;
            done += n;
            eprint!("\rchannels {:?}: step {done}/{steps} ({:.0} ms/step)   ", group, start.elapsed().as_secs_f64() * 1e3 / (ci as f64 * steps as f64 + done as f64));
        }
        let after = pollster::block_on(p.evaluate(&gpu)).map_err(|e| e.to_string())?;
        eprintln!();
        for (c, (b, a)) in group.iter().zip(before.iter().zip(&after)) {
            eprintln!("  {layer}:{c}: {b:.4} → {a:.4}");
        }
        let imgs = pollster::block_on(p.read_images(&gpu)).map_err(|e| e.to_string())?;
        for i in 0..group.len() {
            tiles.push(imgs[i * size * size * 3..(i + 1) * size * size * 3].to_vec());
        }
    }
    let (w, h, rgb) = featvis::png::grid(&tiles, size, size, cols, 4);
    let tmp = format!("{out}.tmp");
    std::fs::write(&tmp, featvis::png::encode_rgb(w, h, &rgb)).map_err(|e| format!("cannot write `{tmp}`: {e}"))?;
    std::fs::rename(&tmp, &out).map_err(|e| format!("cannot write `{out}`: {e}"))?;
    eprintln!("wrote {out} ({w}x{h})");
    Ok(())
}
