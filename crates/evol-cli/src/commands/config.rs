//! `evol config show run ARGS...`: the settings `evol run ARGS...` would
//! run with, resolved from its flags, its `--config` file and the
//! environment, as JSON; keys never shown (only where each comes from and
//! whether it is set), and credentials in URLs redacted. Nothing is read
//! but the config, operator and template files, and nothing is sent.

use serde_json::{json, Value};

use crate::cli::{ConfigCommand, ShowCommand};
use crate::settings::{Backend, FromArgs, RunSettings};

pub fn config(command: ConfigCommand) -> anyhow::Result<()> {
    let ConfigCommand::Show { command: ShowCommand::Run(args) } = command;
    let settings = RunSettings::from_args(*args)?;
    crate::stdout(&(serde_json::to_string_pretty(&resolved(&settings))? + "\n"))
}

fn resolved(s: &RunSettings) -> Value {
    let backend = match &s.backend {
        Backend::Servers(servers) => {
            let endpoints: Vec<Value> = servers
                .endpoints
                .iter()
                .map(|e| {
                    let var = e.api_key_env.clone().unwrap_or_else(|| servers.api_key_env.clone());
                    json!({
                        "url": evol_text::redact_url(&e.url),
                        "model": e.model,
                        "weight": e.weight,
                        "rpm": e.rpm,
                        "tpm": e.tpm,
                        "max_concurrency": e.max_concurrency,
                        "api_key": if e.api_key.is_some() { format!("set (from ${var})") } else { format!("not set (${var} is empty or unset)") },
                    })
                })
                .collect();
            json!({
                "kind": "servers",
                "endpoints": endpoints,
                "adaptive": servers.adaptive,
                "timeout_seconds": servers.timeout.as_secs_f64(),
                "max_retries": servers.retry.max_retries,
                "stall_timeout_seconds": servers.stall_timeout.as_secs_f64(),
                "batch_api": servers.batch.is_some(),
            })
        }
        Backend::Embedded(engine) => json!({
            "kind": "embedded",
            "model_path": engine.model_path,
            "chat_template": engine.chat_template,
            "threads": engine.threads,
            "ctx_size": engine.ctx_size,
            "parallel": engine.parallel,
            "batch_size": engine.batch_size,
            "prefix_cache": engine.prefix_cache,
        }),
    };
    let models = &s.models;
    json!({
        "command": "run",
        "seeds": s.seeds,
        "output": s.output,
        "fresh": s.fresh,
        "dry_run": s.dry_run,
        "include_seeds": s.include_seeds,
        "input": {
            "format": format!("{:?}", s.ingest.format).to_lowercase(),
            "instruction_field": s.ingest.fields.instruction,
            "id_field": s.ingest.fields.id,
            "limit": s.ingest.limit,
            "shard": s.ingest.shard.map(|x| x.to_string()),
            "skip_invalid": s.ingest.skip_invalid,
        },
        "method": s.method,
        "templates": s.templates.digest(),
        "models": {
            "evolve": models.evolve, "judge": models.judge, "answer": models.answer, "score": models.score,
        },
        "backend": backend,
        "execution": {
            "concurrency": s.execution.concurrency,
            "retry_failed": s.execution.retry_failed,
            "caps": s.execution.caps,
            "prices": s.execution.prices,
            "default_price": s.execution.default_price,
        },
    })
}
