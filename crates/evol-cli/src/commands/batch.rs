//! `evol batch cancel OUT`: cancels a `--batch-api` run's batches in flight.

use anyhow::{anyhow, bail};
use evol_openai::{ClientConfig, OpenAiClient};

use crate::cli::BatchCommand;
use crate::commands::run::BATCH_SERVER;
use crate::commands::status::open_journal;

pub async fn batch(command: BatchCommand) -> anyhow::Result<()> {
    let BatchCommand::Cancel { output } = command;
    let journal = open_journal(&output)?;
    let Some(server) = journal.meta(BATCH_SERVER)? else {
        bail!("`{}` is not a --batch-api run", output.display());
    };
    let server: serde_json::Value = serde_json::from_str(&server)?;
    let url = server["url"].as_str().ok_or_else(|| anyhow!("the journal names no batch server"))?;
    let key_env = server["api_key_env"].as_str().unwrap_or("OPENAI_API_KEY");
    let mut config = ClientConfig::new(url, "");
    config.api_key = std::env::var(key_env).ok().filter(|k| !k.trim().is_empty());
    let client = OpenAiClient::new(config)?;
    let batches = journal.unsettled_batches()?;
    let mut cancelled = 0;
    for id in &batches {
        let info = client.batch(id).await?;
        if info.ended() {
            continue;
        }
        let info = client.cancel_batch(id).await?;
        eprintln!("evol: batch `{id}`: {}", info.status);
        cancelled += 1;
    }
    eprintln!(
        "evol: cancelled {cancelled} of the run's {} unsettled batches; rerun the run's command to take their partial results and send the rest",
        batches.len()
    );
    Ok(())
}
