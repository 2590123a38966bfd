//! The tuning cache: what `featvis tune` chose on this machine's adapters,
//! kept in the platform's cache folder (`~/.cache/featvis/tuning.json` on
//! Linux; `FEATVIS_CACHE_DIR` overrides the folder) and applied to the GPU
//! of every command that renders, so each adapter is tuned once.
//!
//! One entry per adapter and featvis version: the adapter's name and driver,
//! its subgroup size and workgroup limits, and this featvis's version must
//! all match, since a schedule chosen elsewhere may be slow or (on another
//! driver) never checked here. A file that does not parse, or an entry that
//! names a schedule this featvis does not know, is ignored with a warning;
//! `featvis tune` writes the file again.

use std::path::PathBuf;

use featvis::tune::ShapeChoice;
use featvis::{ConvConfig, Gpu};
use serde::{Deserialize, Serialize};

use crate::render::write_atomic;

#[derive(Serialize, Deserialize, Default)]
pub struct CacheFile {
    pub format: String,
    pub version: u32,
    pub entries: Vec<Entry>,
}

/// One adapter's tuning.
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
pub struct Entry {
    /// [`key`] of the adapter and featvis that tuned it.
    pub key: String,
    /// The schedule of shapes not tuned one by one.
    pub global: String,
    /// The image size and batch the shapes were timed at.
    pub size: usize,
    pub batch: usize,
    pub shapes: Vec<ShapeChoice>,
}

const FORMAT: &str = "featvis-tuning";

/// The identity a cache entry must match: adapter (name, backend, type,
/// driver), subgroup size, workgroup limits, featvis version.
pub fn key(gpu: &Gpu) -> String {
    format!(
        "{} | subgroup {} | invocations {} | workgroup memory {} | featvis {}",
        gpu.adapter,
        gpu.subgroup_size,
        gpu.limits.max_compute_invocations_per_workgroup,
        gpu.limits.max_compute_workgroup_storage_size,
        env!("CARGO_PKG_VERSION")
    )
}

/// The cache file's path (its folder may not exist yet).
pub fn path() -> Option<PathBuf> {
    let dir = match std::env::var_os("FEATVIS_CACHE_DIR") {
        Some(d) => PathBuf::from(d),
        None => dirs::cache_dir()?.join("featvis"),
    };
    Some(dir.join("tuning.json"))
}

/// The cache as it is on disk: empty when there is none; None (after a
/// warning) when the file is not a tuning cache this featvis reads.
pub fn read() -> Option<CacheFile> {
    let path = path()?;
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(CacheFile::default()),
        Err(e) => {
            eprintln!("featvis: cannot read the tuning cache {}: {e}; using the built-in schedules", path.display());
            return None;
        }
    };
    match serde_json::from_slice::<CacheFile>(&bytes) {
        Ok(c) if c.format == FORMAT && c.version == 1 => Some(c),
        Ok(c) => {
            eprintln!(
                "featvis: ignoring the tuning cache {}: format {:?} version {}, not {FORMAT} version 1; `featvis tune` writes it again",
                path.display(),
                c.format,
                c.version
            );
            None
        }
        Err(e) => {
            eprintln!("featvis: ignoring the tuning cache {}: it is corrupt ({e}); `featvis tune` writes it again", path.display());
            None
        }
    }
}

/// This adapter's entry, checked: every schedule in it must parse.
pub fn entry_for(gpu: &Gpu, cache: &CacheFile) -> Option<Entry> {
    let key = key(gpu);
    let Some(e) = cache.entries.iter().find(|e| e.key == key) else {
        // This adapter, tuned by another featvis or under other limits: not used.
        let adapter = gpu.adapter.to_string();
        if let Some(old) = cache.entries.iter().find(|e| e.key.split(" | ").next() == Some(adapter.as_str())) {
            eprintln!(
                "featvis: ignoring the tuning cache's entry for this adapter: it was made for `{}`, this is `{key}`; `featvis tune` chooses again",
                old.key
            );
        }
        return None;
    };
    let bad = std::iter::once(&e.global).chain(e.shapes.iter().map(|s| &s.spec)).find(|s| ConvConfig::parse(s).is_none());
    if let Some(bad) = bad {
        eprintln!(
            "featvis: ignoring this adapter's tuning cache entry: it names an unknown schedule `{bad}`; `featvis tune` writes it again"
        );
        return None;
    }
    Some(e.clone())
}

/// Set an entry's schedules on `gpu` (unless FEATVIS_CONV forces one).
pub fn apply(gpu: &Gpu, e: &Entry) {
    if gpu.conv_forced() {
        return;
    }
    if let Some(c) = ConvConfig::parse(&e.global) {
        gpu.set_conv_config(c);
    }
    for s in &e.shapes {
        if let Some(c) = ConvConfig::parse(&s.spec) {
            gpu.set_conv_choice(s.shape, c);
        }
    }
}

/// Open the GPU and apply this adapter's tuning, if the cache has it.
pub fn open_gpu() -> Result<Gpu, String> {
    let gpu = pollster::block_on(Gpu::new()).map_err(|e| e.to_string())?;
    if let Some(e) = read().as_ref().and_then(|c| entry_for(&gpu, c)) {
        apply(&gpu, &e);
    }
    Ok(gpu)
}

/// Whether `e` holds a choice for every conv layer shape of `size` px images.
pub fn covers(e: &Entry, size: usize) -> bool {
    featvis::tune::vgg_shapes(size).iter().all(|s| e.shapes.iter().any(|c| c.shape == *s))
}

/// Keep `e` as this adapter's entry: its default and shapes replace what the
/// entry had, the other shapes it had stay (other adapters' entries stay).
/// Returns the file and the entry as kept.
pub fn write(mut e: Entry) -> Result<(PathBuf, Entry), String> {
    let path = path().ok_or("no cache folder on this system: set FEATVIS_CACHE_DIR")?;
    let mut cache = read().unwrap_or_default();
    cache.format = FORMAT.into();
    cache.version = 1;
    if let Some(old) = cache.entries.iter().find(|x| x.key == e.key) {
        let keep: Vec<ShapeChoice> = old.shapes.iter().filter(|o| !e.shapes.iter().any(|n| n.shape == o.shape)).cloned().collect();
        e.shapes.extend(keep);
        e.shapes.sort_by_key(|c| std::cmp::Reverse(c.shape));
    }
    cache.entries.retain(|x| x.key != e.key);
    cache.entries.push(e.clone());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
    }
    write_atomic(&path, serde_json::to_string_pretty(&cache).unwrap_or_default().as_bytes())?;
    Ok((path, e))
}

/// Tune on the first render of a size on a GPU: when this adapter's cache
/// entry has no choice for some layer shape of `size` px, check the
/// schedules and time them on those shapes within about two seconds, keep
/// the choices and apply them. CPU adapters keep their static choice (a
/// tuning there takes minutes: `featvis tune` does it when asked);
/// `FEATVIS_TUNE=0` never tunes, `FEATVIS_TUNE=1` tunes on any adapter.
pub fn tune_first_time(gpu: &Gpu, size: usize, batch: usize, quiet: bool) {
    let mode = std::env::var("FEATVIS_TUNE").unwrap_or_default();
    let cpu = gpu.adapter.device_type.contains("Cpu");
    if gpu.conv_forced() || mode == "0" || (cpu && mode != "1") {
        return;
    }
    let entry = read().as_ref().and_then(|c| entry_for(gpu, c));
    if entry.as_ref().is_some_and(|e| covers(e, size)) {
        return;
    }
    let t0 = std::time::Instant::now();
    let now = move || t0.elapsed().as_secs_f64() * 1e3;
    let result = pollster::block_on(async {
        let t = featvis::tune::tune(gpu, &now, &mut |_| {}).await?;
        let configs = t.correct_fastest_first();
        let shapes: Vec<_> = featvis::tune::vgg_shapes(size)
            .into_iter()
            .filter(|s| !entry.as_ref().is_some_and(|e| e.shapes.iter().any(|c| c.shape == *s)))
            .collect();
        let choices = featvis::tune::tune_shapes(gpu, &configs, &shapes, batch, 2000.0, &now, &mut |_, _, _| {}).await?;
        Ok::<_, featvis::Error>(Entry { key: key(gpu), global: t.chosen_spec, size, batch, shapes: choices })
    });
    match result.map_err(|e| e.to_string()).and_then(write) {
        Ok((path, kept)) => {
            apply(gpu, &kept);
            if !quiet {
                eprintln!(
                    "featvis: chose conv schedules for this GPU's layers at {size} px in {:.1} s (kept in {}; `featvis tune` shows them)",
                    t0.elapsed().as_secs_f64(),
                    path.display()
                );
            }
        }
        Err(e) => eprintln!("featvis: could not tune the conv schedules ({e}); using the built-in ones"),
    }
}
