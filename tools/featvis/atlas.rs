//! `featvis atlas`: every channel of the chosen layers, written as PNGs with
//! their snapshots and JSON records, in shards that separate processes (or
//! machines) render independently, resumably.
//!
//! The unit of work is a *group*: up to `--batch` consecutive channels of
//! one layer's chosen channels (`--channels`, all by default: 0–15, 16–31,
//! …), rendered as one batch with the
//! atlas's seed. Groups do not depend on the sharding or on what was
//! rendered before, so every channel's picture is the same however the
//! atlas is split or resumed, and its record holds the request that
//! renders it again (`featvis render` or the page). Shard I of N takes the
//! groups whose index is I−1 modulo N.
//!
//! DIR/atlas.json holds the settings and the weights' sha256: a run whose
//! settings differ is refused. A channel is done when DIR/LAYER/C.json
//! exists (written last, atomically); a run skips done groups.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use featvis::job::JobSpec;
use featvis::model::{Vgg16, Vgg16Weights, CONVS};
use featvis::render::Render;
use featvis::weights::Preprocessing;
use serde::{Deserialize, Serialize};

use crate::render::{write_atomic, Optimization};
use crate::whole;

/// Render every channel of the chosen layers into an atlas folder, in shards, resumably.
#[derive(Args)]
pub struct AtlasArgs {
    /// Weights file (featvis safetensors).
    #[arg(long, value_name = "FILE", default_value = "www/weights/vgg16-imagenet.safetensors")]
    weights: PathBuf,
    /// Random weights instead of a file (for tests).
    #[arg(long)]
    random_weights: bool,
    /// Comma list of conv layers, or `all` (the 13 conv layers).
    #[arg(long, default_value = "all")]
    layers: String,
    /// The channels of every listed layer: a list like 0-7,12, or `all`.
    #[arg(long, default_value = "all")]
    channels: String,
    /// Image side in pixels.
    #[arg(long, value_name = "PX", default_value = "128", value_parser = whole)]
    size: usize,
    #[command(flatten)]
    optimization: Optimization,
    /// Seed of every group's initial images and transforms.
    #[arg(long, default_value = "1", value_parser = whole)]
    seed: usize,
    /// Channels per group (one GPU batch).
    #[arg(long, default_value = "16", value_parser = whole)]
    batch: usize,
    /// The atlas folder.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// This process's part: I/N takes groups I-1, I-1+N, … (1 ≤ I ≤ N).
    #[arg(long, value_name = "I/N", default_value = "1/1")]
    shard: String,
    /// One JSON summary on stdout at the end.
    #[arg(long)]
    json: bool,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
}

/// What DIR/atlas.json records: a run with other settings is refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AtlasSettings {
    pub format: String,
    pub version: u32,
    pub weights_sha256: String,
    /// The channels of each layer (`all`, or a list like 0-7,12): they decide the groups.
    #[serde(default = "all_channels")]
    pub channels: String,
    pub size: usize,
    pub steps: u32,
    pub transforms: String,
    pub param: String,
    pub lr: f32,
    pub seed: u64,
    pub batch: usize,
    pub snapshots: Vec<u32>,
}

/// One channel's record, DIR/LAYER/C.json (and, all of a layer's in
/// channel order, DIR/LAYER/index.json: what the page reads).
#[derive(Serialize, Deserialize)]
struct ChannelRecord {
    layer: String,
    channel: usize,
    initial_activation: f32,
    final_activation: f32,
    ms_per_step: f64,
    /// The PNGs: final, then each snapshot's.
    files: Vec<String>,
    /// The request that renders this channel again (`featvis render` or the
    /// page): its group, as a batch; the channel is image `index` of it.
    request: JobSpec,
    index: usize,
}

/// One shard's record, DIR/shards/I-of-N.json, rewritten after every group.
#[derive(Serialize)]
struct ShardRecord<'a> {
    shard: String,
    adapter: String,
    settings: &'a AtlasSettings,
    groups: usize,
    groups_done: usize,
    channels_rendered: usize,
    channels_skipped: usize,
    channels: Vec<(String, usize, f32, f32)>,
    ms_per_step: f64,
}

fn all_channels() -> String {
    "all".into()
}

/// `[0, 1, 2, 3, 7]` → `0-3,7`: the shortest list [`featvis::job::parse_channels`] reads back.
fn fmt_channels(list: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut k = 0;
    while k < list.len() {
        let mut end = k;
        while end + 1 < list.len() && list[end + 1] == list[end] + 1 {
            end += 1;
        }
        parts.push(if end > k { format!("{}-{}", list[k], list[end]) } else { list[k].to_string() });
        k = end + 1;
    }
    parts.join(",")
}

/// Every group of the atlas in order: (layer, its channels), up to `batch` each.
fn plan(layers: &[(&'static str, usize)], channels: &str, batch: usize) -> Result<Vec<(&'static str, Vec<usize>)>, String> {
    let mut groups = Vec::new();
    for &(layer, count) in layers {
        let mut list = featvis::job::parse_channels(channels, Some(count)).map_err(|e| format!("--channels: {e}"))?;
        list.sort_unstable();
        list.dedup();
        if let Some(&c) = list.iter().find(|&&c| c >= count) {
            return Err(format!("--channels: channel {c} is out of range for {layer}, which has {count} channels (0-{})", count - 1));
        }
        groups.extend(list.chunks(batch).map(|g| (layer, g.to_vec())));
    }
    Ok(groups)
}

fn parse_shard(text: &str) -> Result<(usize, usize), String> {
    let bad = || format!("--shard expects I/N with 1 ≤ I ≤ N, e.g. 2/8 — got `{text}`");
    let (i, n) = text.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
    if n == 0 || i == 0 || i > n {
        return Err(bad());
    }
    Ok((i, n))
}

fn layers(text: &str) -> Result<Vec<(&'static str, usize)>, String> {
    if text.trim() == "all" {
        return Ok(CONVS.iter().map(|c| (c.0, c.2)).collect());
    }
    text.split(',')
        .map(|name| {
            let name = name.trim();
            CONVS
                .iter()
                .find(|c| c.0 == name)
                .map(|c| (c.0, c.2))
                .ok_or_else(|| format!("unknown layer `{name}` for an atlas; use conv layers ({}) or `all`", CONVS.map(|c| c.0).join(", ")))
        })
        .collect()
}

fn fmt_secs(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s / 60 % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

pub fn main(a: AtlasArgs) -> Result<(), String> {
    let (shard_i, shard_n) = parse_shard(&a.shard)?;
    let layers = layers(&a.layers)?;
    if a.batch == 0 {
        return Err("--batch must be at least 1".into());
    }
    // Groups of the whole atlas, in order; this shard's are every N-th.
    let groups = plan(&layers, &a.channels, a.batch)?;
    // The folder records the list in one spelling: `0-3,7` however it was typed.
    let channel_list = if a.channels.trim() == "all" {
        all_channels()
    } else {
        let mut list = featvis::job::parse_channels(&a.channels, None).map_err(|e| format!("--channels: {e}"))?;
        list.sort_unstable();
        list.dedup();
        fmt_channels(&list)
    };
    let mine: Vec<&(&str, Vec<usize>)> = groups.iter().enumerate().filter(|(k, _)| k % shard_n == shard_i - 1).map(|(_, g)| g).collect();

    let request_of = |layer: &str, group: &[usize]| {
        a.optimization.apply_to(JobSpec {
            layer: Some(layer.to_string()),
            channels: Some(fmt_channels(group)),
            batch: Some(a.batch),
            size: Some(a.size),
            seed: Some(a.seed as u64),
            snapshots: Some("lucid".into()),
            ..Default::default()
        })
    };
    let probe = request_of(layers[0].0, &[0]).build(None).map_err(|e| e.to_string())?.job;

    let (weights, preprocess, weights_sha) = if a.random_weights {
        (Vgg16Weights::random(1, None), Preprocessing::keras(), "random weights, seed 1".to_string())
    } else {
        let path = a.weights.display().to_string();
        let bytes = std::fs::read(&a.weights).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                format!("weights file {path} does not exist; run `featvis fetch-weights` or pass --weights FILE")
            }
            _ => format!("cannot read weights {path}: {e}"),
        })?;
        let f = featvis::weights::WeightsFile::from_bytes(&bytes).map_err(|e| format!("{path}: {e}"))?;
        (f.weights, f.preprocessing, featvis::checkpoint::sha256_hex(&bytes))
    };
    let settings = AtlasSettings {
        format: "featvis-atlas".into(),
        version: 1,
        weights_sha256: weights_sha,
        channels: channel_list,
        size: a.size,
        steps: probe.steps,
        transforms: probe.transforms.name().into(),
        param: probe.param.name().into(),
        lr: probe.adam.lr,
        seed: probe.seed,
        batch: a.batch,
        snapshots: probe.snapshots.clone(),
    };

    // The folder's settings: recorded by the first run, the same for every later one.
    std::fs::create_dir_all(a.out.join("shards")).map_err(|e| format!("cannot create {}: {e}", a.out.display()))?;
    let settings_path = a.out.join("atlas.json");
    match std::fs::read(&settings_path) {
        Ok(bytes) => {
            let there: AtlasSettings =
                serde_json::from_slice(&bytes).map_err(|e| format!("{} is not a featvis atlas record: {e}", settings_path.display()))?;
            if there != settings {
                let (x, y) = (serde_json::to_value(&there).unwrap_or_default(), serde_json::to_value(&settings).unwrap_or_default());
                let key = x.as_object().and_then(|o| o.iter().find(|(k, v)| y.get(k.as_str()) != Some(*v)).map(|(k, _)| k.clone()));
                let key = key.unwrap_or_else(|| "settings".into());
                return Err(format!(
                    "{} holds an atlas with {key} {} but this run has {}; use another --out or the same settings",
                    a.out.display(),
                    x.get(&key).map(|v| v.to_string()).unwrap_or_default(),
                    y.get(&key).map(|v| v.to_string()).unwrap_or_default()
                ));
            }
        }
        Err(_) => write_atomic(&settings_path, serde_json::to_string_pretty(&settings).unwrap_or_default().as_bytes())?,
    }

    let done = |layer: &str, c: usize| a.out.join(layer).join(format!("{c}.json")).exists();
    let total_channels: usize = mine.iter().map(|g| g.1.len()).sum();
    let todo: Vec<_> = mine.iter().filter(|g| g.1.iter().any(|&c| !done(g.0, c))).collect();
    let skipped = total_channels - todo.iter().map(|g| g.1.len()).sum::<usize>();
    let quiet = a.quiet;
    if !quiet {
        eprintln!(
            "atlas {}: shard {shard_i}/{shard_n}: {} groups, {total_channels} channels ({skipped} done already)",
            a.out.display(),
            mine.len()
        );
    }

    let gpu = crate::tuning::open_gpu()?;
    crate::tuning::tune_first_time(&gpu, a.size, a.batch, a.quiet);
    let model = Vgg16::upload(&gpu, &weights).map_err(|e| e.to_string())?;
    let tty = std::io::stderr().is_terminal();
    let start = Instant::now();
    let mut rendered = 0usize;
    let mut channels = Vec::new();
    let mut step_ms = Vec::new();
    let shard_path = a.out.join("shards").join(format!("{shard_i}-of-{shard_n}.json"));
    for (k, group) in todo.iter().enumerate() {
        let (layer, chans) = (group.0, &group.1);
        let request = request_of(layer, chans);
        let job = request.build(None).map_err(|e| e.to_string())?.job;
        let mut r = Render::new(&gpu, &model, &preprocess, &job).map_err(|e| e.to_string())?;
        while !r.is_finished() {
            pollster::block_on(r.step(&gpu, &model)).map_err(|e| e.to_string())?;
        }
        let out = r.output();
        let dir = a.out.join(layer);
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let (h, w) = (job.height, job.width);
        let png = |img: &[f32]| {
            let (gw, gh, rgb) = featvis::png::grid(&[img.to_vec()], h, w, 1, 0);
            featvis::png::encode_rgb(gw, gh, &rgb)
        };
        for (i, img) in out.images.iter().enumerate() {
            let c = chans[i];
            let mut files = vec![format!("{c}.png")];
            write_atomic(&dir.join(&files[0]), &png(&img.pixels))?;
            for snap in &out.snapshots {
                if snap.step != job.steps {
                    let name = format!("{c}-{}.png", snap.step);
                    write_atomic(&dir.join(&name), &png(&snap.images[i]))?;
                    files.push(name);
                }
            }
            let rec = ChannelRecord {
                layer: layer.to_string(),
                channel: c,
                initial_activation: img.initial,
                final_activation: img.last,
                ms_per_step: out.ms_per_step,
                files,
                request: request.clone(),
                index: i,
            };
            // The record last: its existence marks the channel done.
            write_atomic(&dir.join(format!("{c}.json")), serde_json::to_string_pretty(&rec).unwrap_or_default().as_bytes())?;
            channels.push((layer.to_string(), c, img.initial, img.last));
        }
        rendered += chans.len();
        step_ms.push(out.ms_per_step);
        let ms_per_step = step_ms.iter().sum::<f64>() / step_ms.len() as f64;
        let record = ShardRecord {
            shard: format!("{shard_i}/{shard_n}"),
            adapter: gpu.adapter.to_string(),
            settings: &settings,
            groups: mine.len(),
            groups_done: mine.len() - todo.len() + k + 1,
            channels_rendered: rendered,
            channels_skipped: skipped,
            channels: channels.clone(),
            ms_per_step,
        };
        write_atomic(&shard_path, serde_json::to_string_pretty(&record).unwrap_or_default().as_bytes())?;
        if !quiet {
            let secs = start.elapsed().as_secs_f64();
            let left = secs / (k + 1) as f64 * (todo.len() - k - 1) as f64;
            let line = format!(
                "{layer} {}: done; {} of {total_channels} channels, {:.1} ms per step, time left {}",
                fmt_channels(chans),
                skipped + rendered,
                out.ms_per_step,
                fmt_secs(left)
            );
            if tty {
                eprintln!("\r{line}")
            } else {
                eprintln!("{line}")
            }
        }
    }
    // The last shard to finish (the one that finds every group of the atlas
    // done) writes the site.
    let site = if groups.iter().all(|g| g.1.iter().all(|&c| done(g.0, c))) {
        let pages = write_site(&a.out)?;
        if !quiet {
            eprintln!("every shard is done: wrote {}/index.html and {pages} channel pages", a.out.display());
        }
        Some(a.out.join("index.html").display().to_string())
    } else {
        None
    };
    if a.json {
        let summary = serde_json::json!({
            "site": site,
            "out": a.out.display().to_string(),
            "shard": format!("{shard_i}/{shard_n}"),
            "adapter": gpu.adapter.to_string(),
            "channels": total_channels,
            "rendered": rendered,
            "skipped": skipped,
            "seconds": start.elapsed().as_secs_f64(),
        });
        println!("{summary}");
    }
    Ok(())
}

/// Write the atlas's static site: DIR/index.html (the layers), one grid page
/// per layer (every channel with its activation), one page per channel
/// (its snapshots). Plain HTML with relative links and the page's CSS
/// copied beside it: it works from file:// and from any static host.
#[derive(Args)]
pub struct IndexArgs {
    /// The atlas folder (written by `featvis atlas`).
    dir: PathBuf,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn page(title: &str, css: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<link rel=\"stylesheet\" href=\"{css}\">\n</head>\n<body class=\"atlas\">\n<main>\n{body}\n</main>\n</body>\n</html>\n",
        esc(title)
    )
}

/// DIR/atlas-index.json: what the page reads to browse an atlas.
#[derive(Serialize)]
struct SiteIndex<'a> {
    format: &'static str,
    version: u32,
    settings: &'a AtlasSettings,
    layers: Vec<SiteLayer>,
}

/// A layer of the site: `channels` of its `total` are in DIR/LAYER/index.json.
#[derive(Serialize)]
struct SiteLayer {
    name: &'static str,
    total: usize,
    channels: usize,
    /// The channel whose picture stands for the layer.
    cover: usize,
}

pub fn index_main(a: IndexArgs) -> Result<(), String> {
    let pages = write_site(&a.dir)?;
    eprintln!("wrote {}/index.html and {pages} channel pages", a.dir.display());
    Ok(())
}

/// Write the site of the atlas in `dir`; the number of channel pages.
fn write_site(dir: &std::path::Path) -> Result<usize, String> {
    let settings: AtlasSettings = serde_json::from_slice(
        &std::fs::read(dir.join("atlas.json")).map_err(|e| format!("{} is not an atlas folder (no atlas.json: {e})", dir.display()))?,
    )
    .map_err(|e| format!("{}/atlas.json: {e}", dir.display()))?;
    write_atomic(&dir.join("atlas.css"), ATLAS_CSS.as_bytes())?;
    let about = format!(
        "{} px, {} steps, {} transforms, {} parameterization, lr {}, seed {}; weights sha256 {}…",
        settings.size,
        settings.steps,
        settings.transforms,
        settings.param,
        settings.lr,
        settings.seed,
        settings.weights_sha256.get(..16).unwrap_or(&settings.weights_sha256)
    );
    let mut layer_rows = String::new();
    let mut pages = 0usize;
    let mut site_layers = Vec::new();
    for &(layer, channels) in CONVS.iter().map(|c| (c.0, c.2)).collect::<Vec<_>>().iter() {
        let ldir = dir.join(layer);
        let mut recs: Vec<ChannelRecord> = Vec::new();
        for c in 0..channels {
            if let Ok(bytes) = std::fs::read(ldir.join(format!("{c}.json"))) {
                recs.push(serde_json::from_slice(&bytes).map_err(|e| format!("{layer}/{c}.json: {e}"))?);
            }
        }
        if recs.is_empty() {
            continue;
        }
        let mut tiles = String::new();
        for (k, r) in recs.iter().enumerate() {
            tiles.push_str(&format!(
                "<a class=\"tile\" href=\"{c}.html\"><img src=\"{c}.png\" alt=\"{layer} channel {c}\" width=\"{s}\" height=\"{s}\" loading=\"lazy\">\
                 <span>{c} · {act:.0}</span></a>\n",
                c = r.channel,
                s = settings.size,
                act = r.final_activation
            ));
            let prev =
                if k > 0 { format!("<a href=\"{}.html\">← {}</a>", recs[k - 1].channel, recs[k - 1].channel) } else { String::new() };
            let next = recs.get(k + 1).map(|n| format!("<a href=\"{}.html\">{} →</a>", n.channel, n.channel)).unwrap_or_default();
            // The snapshots in step order, the final image last.
            let mut files: Vec<(u32, &String)> = r
                .files
                .iter()
                .map(|f| (f.trim_end_matches(".png").rsplit_once('-').and_then(|(_, s)| s.parse().ok()).unwrap_or(settings.steps), f))
                .collect();
            files.sort();
            let snaps: String = files
                .iter()
                .map(|(step, f)| {
                    format!("<figure><img src=\"{f}\" alt=\"step {step}\" width=\"{s}\" height=\"{s}\"><figcaption>step {step}</figcaption></figure>", s = settings.size)
                })
                .collect::<Vec<_>>()
                .join("\n");
            let request = serde_json::to_string(&r.request).unwrap_or_default();
            let body = format!(
                "<nav><a href=\"../index.html\">atlas</a> / <a href=\"index.html\">{layer}</a> / channel {c} {prev} {next}</nav>\n\
                 <h1>{layer}, channel {c}</h1>\n<div class=\"snapshots\">{snaps}</div>\n\
                 <p>Mean activation {ini:.2} → {fin:.2}; {ms:.1} ms per step.</p>\n\
                 <p class=\"note\">Rendered as image {idx} of the batch <code>{req}</code>.</p>\n",
                c = r.channel,
                ini = r.initial_activation,
                fin = r.final_activation,
                ms = r.ms_per_step,
                idx = r.index,
                req = esc(&request)
            );
            write_atomic(
                &ldir.join(format!("{}.html", r.channel)),
                page(&format!("{layer} channel {}", r.channel), "../atlas.css", &body).as_bytes(),
            )?;
            pages += 1;
        }
        let body = format!(
            "<nav><a href=\"../index.html\">atlas</a> / {layer}</nav>\n<h1>{layer}</h1>\n<p class=\"note\">{n} of {channels} channels · {about}</p>\n<div class=\"grid\">\n{tiles}</div>\n",
            n = recs.len(),
            about = esc(&about)
        );
        write_atomic(&ldir.join("index.html"), page(layer, "../atlas.css", &body).as_bytes())?;
        write_atomic(&ldir.join("index.json"), serde_json::to_string(&recs).unwrap_or_default().as_bytes())?;
        site_layers.push(SiteLayer { name: layer, total: channels, channels: recs.len(), cover: recs[0].channel });
        layer_rows.push_str(&format!(
            "<li><a href=\"{layer}/index.html\"><img src=\"{layer}/{c}.png\" alt=\"\" width=\"64\" height=\"64\"> {layer}</a> — {n} of {channels} channels</li>\n",
            c = recs[0].channel,
            n = recs.len()
        ));
    }
    let body = format!("<h1>VGG16 atlas</h1>\n<p class=\"note\">{}</p>\n<ul class=\"layers\">\n{layer_rows}</ul>\n", esc(&about));
    write_atomic(&dir.join("index.html"), page("VGG16 atlas", "atlas.css", &body).as_bytes())?;
    let site = SiteIndex { format: "featvis-atlas-index", version: 1, settings: &settings, layers: site_layers };
    write_atomic(&dir.join("atlas-index.json"), serde_json::to_string_pretty(&site).unwrap_or_default().as_bytes())?;
    Ok(pages)
}

const ATLAS_CSS: &str = "\
body.atlas { margin: 0; font: 15px/1.5 system-ui, sans-serif; color: #1d1d1f; background: #fbfbfa; }
main { max-width: 1100px; margin: 0 auto; padding: 16px 20px; }
nav { color: #666; font-size: 14px; } nav a { margin-right: 6px; }
.note { color: #666; font-size: 14px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(96px, 1fr)); gap: 8px; }
.tile { display: flex; flex-direction: column; color: inherit; text-decoration: none; font-size: 12px; }
.tile img, .snapshots img, .layers img { width: 100%; height: auto; image-rendering: pixelated; border-radius: 3px; }
.layers { list-style: none; padding: 0; } .layers li { display: flex; align-items: center; gap: 10px; margin: 6px 0; }
.layers img { width: 64px; }
.snapshots { display: flex; flex-wrap: wrap; gap: 10px; } .snapshots figure { margin: 0; width: 160px; }
figcaption { font-size: 12px; color: #666; }
code { font-size: 12px; word-break: break-all; }
";
