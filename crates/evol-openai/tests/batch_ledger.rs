//! A provider batch that the journal cannot record is cancelled and stops
//! the run (it would never be adopted, so it would be paid for in vain).

use std::sync::Arc;
use std::time::Duration;

use evol_llm::{ChatRequest, ErrorKind, Message, Sampling};
use evol_mock::MockConfig;
use evol_openai::{BatchLedger, BatchSettings, Batches, ClientConfig, OpenAiClient};

/// A ledger whose storage has failed.
struct Broken;

impl BatchLedger for Broken {
    fn submitted(&self, _batch_id: &str) -> Result<(), String> {
        Err("disk full".into())
    }
    fn unsettled(&self) -> Result<Vec<String>, String> {
        Ok(Vec::new())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unjournaled_batch_is_cancelled_and_fatal() {
    let config =
        MockConfig { batch: evol_mock::BatchConfig { delay_ms: 5_000, ..Default::default() }, ..Default::default() };
    let url = evol_mock::spawn(config).await.unwrap();
    let client = OpenAiClient::new(ClientConfig::new(&url, "mock")).unwrap();
    let settings = BatchSettings { wave: Duration::from_millis(10), ..BatchSettings::default() };
    let batches = Batches::start(client, Arc::new(Broken), settings).await.unwrap();
    let model = batches.role("mock");
    let request = ChatRequest::new(
        vec![Message::user("Name a fruit.")],
        Sampling { temperature: 0.0, top_p: 1.0, max_tokens: 8, seed: None, thinking: Default::default() },
    );
    let err = model.chat(request).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Backend);
    assert!(err.kind.is_fatal());
    assert!(err.message.contains("could not be journaled (disk full)"), "{}", err.message);
    assert!(err.message.contains("it was cancelled"), "{}", err.message);
    let stats: serde_json::Value =
        reqwest::get(format!("{}/stats", url.trim_end_matches("/v1"))).await.unwrap().json().await.unwrap();
    assert_eq!(stats["batches_cancelled"], 1, "{stats}");
}
