//! Parts of the result files that more than one job reads, as types that
//! are written and read back as themselves.

use serde::{Deserialize, Serialize};

use crate::settings::Backend;

/// Where a run's models were served, as data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// One OpenAI-compatible server (`--endpoint`).
    Server,
    /// Several servers (`--endpoint` more than once, or a config file).
    Servers,
    /// The embedded llama.cpp engine.
    Embedded,
}

impl BackendKind {
    pub fn of(backend: &Backend) -> BackendKind {
        match backend {
            Backend::Embedded(_) => BackendKind::Embedded,
            Backend::Servers(s) if s.endpoints.len() > 1 => BackendKind::Servers,
            Backend::Servers(_) => BackendKind::Server,
        }
    }
}

/// `stats.json`'s `models`: the model of each role of a run, and where
/// they ran.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunModels {
    /// Where, in words (URLs without credentials), for a reader.
    #[serde(default)]
    pub endpoint: String,
    /// Where, as data (absent from the stats of older runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendKind>,
    #[serde(default)]
    pub evolve: String,
    #[serde(default)]
    pub judge: String,
    #[serde(default)]
    pub answer: String,
}

impl RunModels {
    /// Where the models ran: as recorded, else (a run made before it was
    /// recorded) read from the words older runs wrote.
    pub fn backend(&self) -> Option<BackendKind> {
        self.backend.or(match self.endpoint.as_str() {
            "" => None,
            "the embedded engine" => Some(BackendKind::Embedded),
            e if e.ends_with(" servers") => Some(BackendKind::Servers),
            _ => Some(BackendKind::Server),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_read_back_as_written_and_older_runs_are_understood() {
        let models = RunModels {
            endpoint: "http://127.0.0.1:8000/v1".into(),
            backend: Some(BackendKind::Servers),
            evolve: "通义千问".into(),
            judge: "j".into(),
            answer: "a".into(),
        };
        let back: RunModels = serde_json::from_value(serde_json::to_value(&models).unwrap()).unwrap();
        assert_eq!(back, models);
        assert_eq!(back.backend(), Some(BackendKind::Servers), "the record wins over the words");
        let older = |endpoint: &str| RunModels { endpoint: endpoint.into(), ..RunModels::default() }.backend();
        assert_eq!(older("the embedded engine"), Some(BackendKind::Embedded));
        assert_eq!(older("3 servers"), Some(BackendKind::Servers));
        assert_eq!(older("http://h/v1"), Some(BackendKind::Server));
        assert_eq!(older(""), None);
    }
}
