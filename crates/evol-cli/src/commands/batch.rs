//! `evol batch cancel OUT`: cancels a `--batch-api` run's batches in flight.

use anyhow::bail;
use evol_openai::{ClientConfig, OpenAiClient};
use evol_store::OutputDir;

use crate::cli::BatchCommand;

pub async fn batch(command: BatchCommand) -> anyhow::Result<()> {
    let BatchCommand::Cancel { output } = command;
    let out = OutputDir::existing_any(&output)?;
    let journal = out.journal()?;
    let Some(server) = journal.batch_server()? else {
        bail!("`{}` is not a --batch-api run", output.display());
    };
    let mut config = ClientConfig::new(&server.url, "");
    config.api_key = std::env::var(&server.api_key_env).ok().filter(|k| !k.trim().is_empty());
    let client = OpenAiClient::new(config)?;
    let batches = journal.unsettled_batches()?;
    let mut cancelled = 0;
    for id in &batches {
        // A batch the provider no longer knows has nothing left to cancel.
        let unknown = |e: &evol_llm::ChatError| e.kind == evol_llm::ErrorKind::NotFound;
        let info = match client.batch(id).await {
            Err(e) if unknown(&e) => {
                crate::say!("evol: batch `{}`: unknown to the server, nothing to cancel", evol_text::shown(id));
                continue;
            }
            info => info?,
        };
        if info.ended() {
            continue;
        }
        match client.cancel_batch(id).await {
            Err(e) if unknown(&e) => {
                crate::say!("evol: batch `{}`: unknown to the server, nothing to cancel", evol_text::shown(id));
                continue;
            }
            info => crate::say!("evol: batch `{}`: {}", evol_text::shown(id), evol_text::shown(&info?.status)),
        }
        cancelled += 1;
    }
    crate::say!(
        "evol: cancelled {cancelled} of the run's {} unsettled batches; rerun the run's command to take their partial results and send the rest",
        batches.len()
    );
    Ok(())
}
