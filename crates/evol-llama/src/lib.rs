//! `evol`'s embedded inference engine: llama.cpp (through `llama-cpp-2`)
//! with continuous batching, behind [`evol_llm::ChatModel`].
//!
//! [`LlamaEngine::start`] loads a GGUF model and starts one engine thread
//! that owns the llama.cpp context (see [`engine`]). Callers on any thread
//! format and tokenize their messages (the model is shared read-only), send
//! the tokens to the engine and receive text and a finish event back on
//! their own channel. Any GGUF that llama.cpp loads works; the chat format
//! comes from the model's template or `--chat-template` (see [`template`]).

mod engine;
pub mod sample;
pub mod stop;
pub mod template;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use evol_llm::{ChatError, ChatModel, ChatRequest, ChatResponse, Completion, ErrorKind, Message, Usage};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

pub use engine::{Activity, Event, Finished};
use template::{ChatTemplate, TemplateSource};

/// How to load and run a model.
#[derive(Debug, Clone)]
pub struct LlamaSettings {
    pub model_path: PathBuf,
    /// The name reported for the model (default: the file name).
    pub name: Option<String>,
    /// KV-cache cells in all (each sequence gets `ctx_size / parallel`).
    pub ctx_size: u32,
    /// Sequences decoded together; more requests wait in a queue.
    pub parallel: u32,
    /// Tokens per decode step (prompt chunks fill what generation leaves).
    pub batch_size: u32,
    /// CPU threads (default: the physical cores).
    pub threads: Option<u32>,
    /// `--chat-template`: a built-in name, a file, or Jinja text.
    pub chat_template: Option<String>,
    /// Reuse the KV cache of a prompt prefix that a finished request left in
    /// a sequence (evolving prompts share their whole scaffold).
    pub prefix_cache: bool,
    /// How the KV cache stores keys and values.
    pub kv_cache: KvCache,
}

/// The KV cache's number format. Decoding a batch of long sequences on a
/// CPU spends much of each step in attention over the cache, where a
/// smaller format is faster: with 32 sequences of 600 tokens, 8-bit decodes
/// about 1.35 times as fast as 16-bit (`bench_decode` with
/// `EVOL_BENCH_CONTEXT=600`), at a precision loss llama.cpp users commonly
/// accept. Quantized caches use llama.cpp's flash attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvCache {
    F16,
    Q8_0,
    Q4_0,
}

impl std::str::FromStr for KvCache {
    type Err = String;
    fn from_str(s: &str) -> Result<KvCache, String> {
        match s.to_ascii_lowercase().as_str() {
            "f16" => Ok(KvCache::F16),
            "q8_0" | "q8" => Ok(KvCache::Q8_0),
            "q4_0" | "q4" => Ok(KvCache::Q4_0),
            _ => Err(format!("unknown KV cache type `{s}` (expected f16, q8_0 or q4_0)")),
        }
    }
}

impl KvCache {
    fn llama(self) -> llama_cpp_2::context::params::KvCacheType {
        use llama_cpp_2::context::params::KvCacheType;
        match self {
            KvCache::F16 => KvCacheType::F16,
            KvCache::Q8_0 => KvCacheType::Q8_0,
            KvCache::Q4_0 => KvCacheType::Q4_0,
        }
    }
}

impl LlamaSettings {
    pub fn new(model_path: impl Into<PathBuf>) -> LlamaSettings {
        LlamaSettings {
            model_path: model_path.into(),
            name: None,
            ctx_size: 65_536,
            parallel: 16,
            batch_size: 512,
            threads: None,
            chat_template: None,
            prefix_cache: true,
            kv_cache: KvCache::Q8_0,
        }
    }
}

/// The number of physical CPU cores, the default thread count.
pub fn physical_cores() -> u32 {
    num_cpus::get_physical().max(1) as u32
}

/// Why a model could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("`{path}` is not a model llama.cpp can load: {message}")]
    Model { path: String, message: String },
    #[error("cannot create a llama.cpp context ({message}); try a smaller --ctx-size")]
    Context { message: String },
    #[error(
        "the model `{path}` has no chat template; pass --chat-template with one of {builtins}, a file, or Jinja text"
    )]
    NoChatTemplate { path: String, builtins: String },
    #[error("chat template: {0}")]
    Template(String),
    #[error("invalid engine settings: {0}")]
    Settings(String),
}

/// Facts about a running engine.
#[derive(Debug, Clone)]
pub struct EngineInfo {
    pub name: String,
    pub path: PathBuf,
    pub parallel: u32,
    pub seq_ctx: u32,
    pub threads: u32,
    pub batch_size: u32,
    pub n_params: u64,
    pub template: TemplateSource,
    /// The model's template is formatted by llama.cpp (minijinja could not
    /// render it).
    pub llama_cpp_template: bool,
}

/// A running embedded engine. Cheap to clone; the engine thread stops when
/// the last clone is dropped.
#[derive(Clone)]
pub struct LlamaEngine {
    jobs: UnboundedSender<engine::Job>,
    model: Arc<LlamaModel>,
    template: Arc<ChatTemplate>,
    stops: Arc<Vec<String>>,
    /// The BOS token's text: a prompt that already starts with it gets no
    /// second BOS from the tokenizer.
    bos: Arc<str>,
    /// How a message that spells a special token is told.
    special: Arc<SpecialTexts>,
    info: Arc<EngineInfo>,
    activity: Arc<std::sync::Mutex<Activity>>,
}

/// How a message that spells a special token is told: the tokens that
/// llama.cpp's tokenizer makes from text only when it parses special tokens
/// are the vocabulary's control and unknown ones, so a text holds none of
/// them exactly when both ways of tokenizing it agree.
enum SpecialTexts {
    /// The vocabulary has no such token.
    None,
    /// An automaton over their texts, built once at load.
    Found(aho_corasick::AhoCorasick),
    /// Too many to build one: each message is tokenized both ways.
    Tokenize,
}

fn special_texts(model: &LlamaModel) -> SpecialTexts {
    use llama_cpp_2::token_type::LlamaTokenAttr;
    let vocab = model.vocab();
    let texts: Vec<Vec<u8>> = vocab
        .tokens()
        .filter(|&t| {
            let attr = vocab.attr(t);
            attr.contains(LlamaTokenAttr::Control) || attr.contains(LlamaTokenAttr::Unknown)
        })
        .filter_map(|t| vocab.text(t).map(|c| c.to_bytes().to_vec()))
        .filter(|t| !t.is_empty())
        .collect();
    if texts.is_empty() {
        return SpecialTexts::None;
    }
    match aho_corasick::AhoCorasick::new(texts) {
        Ok(found) => SpecialTexts::Found(found),
        Err(_) => SpecialTexts::Tokenize,
    }
}

fn backend() -> &'static LlamaBackend {
    static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();
    BACKEND.get_or_init(|| {
        let mut backend = LlamaBackend::init().expect("llama.cpp is initialised once, here");
        backend.void_logs();
        backend
    })
}

impl LlamaEngine {
    /// Loads the model and starts the engine thread.
    pub fn start(settings: LlamaSettings) -> Result<LlamaEngine, LoadError> {
        if settings.parallel == 0 || settings.batch_size == 0 {
            return Err(LoadError::Settings("--parallel and --batch-size must be at least 1".into()));
        }
        if settings.ctx_size / settings.parallel < 64 {
            return Err(LoadError::Settings(format!(
                "--ctx-size {} leaves fewer than 64 tokens for each of {} sequences",
                settings.ctx_size, settings.parallel
            )));
        }
        let path = settings.model_path.display().to_string();
        let backend = backend();
        let model = LlamaModel::load_from_file(backend, &settings.model_path, &LlamaModelParams::default())
            .map_err(|e| LoadError::Model { path: path.clone(), message: e.to_string() })?;
        let model = Arc::new(model);

        let source = match &settings.chat_template {
            Some(setting) => TemplateSource::from_setting(setting).map_err(LoadError::Template)?,
            None => match model.chat_template(None) {
                Ok(t) => TemplateSource::Model(t.to_string().map_err(|e| LoadError::Template(e.to_string()))?),
                Err(_) => {
                    return Err(LoadError::NoChatTemplate { path, builtins: template::builtin_names() });
                }
            },
        };
        let vocab = model.vocab();
        let piece = |t| String::from_utf8_lossy(&vocab.token_to_piece(t, true, None)).into_owned();
        let (bos, eos) = (piece(vocab.bos()), piece(vocab.eos()));
        let stops = source.stops();
        let special = special_texts(&model);
        let template = ChatTemplate::for_model(source.clone(), &bos, &eos, &model)
            .map_err(|e| LoadError::Template(e.to_string()))?;

        let threads = settings.threads.unwrap_or_else(physical_cores).max(1);
        let parallel = settings.parallel;
        let batch_size = settings.batch_size.max(parallel);
        let (jobs, receiver) = unbounded_channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let activity = Arc::new(std::sync::Mutex::new(Activity { parallel, ..Activity::default() }));
        let thread_activity = activity.clone();
        let thread_model = model.clone();
        let ctx_size = settings.ctx_size;
        let prefix_cache = settings.prefix_cache;
        let kv_cache = settings.kv_cache;
        // Quantized values need flash attention; with 16-bit, llama.cpp decides.
        let flash_attention = match kv_cache {
            KvCache::F16 => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_AUTO,
            _ => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED,
        };
        std::thread::Builder::new()
            .name("evol-llama".into())
            .spawn(move || {
                let params = LlamaContextParams::default()
                    .with_n_ctx(std::num::NonZeroU32::new(ctx_size))
                    .with_n_batch(batch_size)
                    .with_n_ubatch(batch_size)
                    .with_n_seq_max(parallel)
                    .with_kv_unified(false)
                    .with_n_threads(threads as i32)
                    .with_n_threads_batch(threads as i32)
                    .with_flash_attention_policy(flash_attention)
                    .with_type_k(kv_cache.llama())
                    .with_type_v(kv_cache.llama());
                let ctx = match thread_model.new_context(backend, params) {
                    Ok(ctx) => ctx,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let seq_ctx = ctx.n_ctx() / parallel;
                let _ = ready_tx.send(Ok(seq_ctx));
                let scheduler = engine::Scheduler {
                    model: &thread_model,
                    ctx,
                    batch_size: batch_size as usize,
                    seq_ctx,
                    kv: vec![Vec::new(); parallel as usize],
                    prefix_cache,
                    threads: threads as usize,
                    activity: thread_activity,
                };
                scheduler.run(receiver, parallel as usize);
            })
            .map_err(|e| LoadError::Context { message: e.to_string() })?;
        let seq_ctx = ready_rx
            .recv()
            .map_err(|_| LoadError::Context { message: "the engine thread stopped".into() })?
            .map_err(|message| LoadError::Context { message })?;

        let name = settings.name.clone().unwrap_or_else(|| {
            settings.model_path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into())
        });
        let info = EngineInfo {
            name,
            path: settings.model_path.clone(),
            parallel,
            seq_ctx,
            threads,
            batch_size,
            n_params: model.n_params(),
            template: source,
            llama_cpp_template: template.is_llama_cpp(),
        };
        Ok(LlamaEngine {
            jobs,
            model,
            template: Arc::new(template),
            stops: Arc::new(stops),
            bos: bos.into(),
            special: Arc::new(special),
            info: Arc::new(info),
            activity,
        })
    }

    pub fn info(&self) -> &EngineInfo {
        &self.info
    }

    /// The loaded model (shared, read-only).
    pub fn model(&self) -> &Arc<LlamaModel> {
        &self.model
    }

    /// What the engine has done so far.
    pub fn activity(&self) -> Activity {
        *self.activity.lock().expect("the engine thread holds the lock briefly")
    }

    /// The prompt text for `messages`, as the model's template makes it.
    pub fn format(&self, messages: &[Message]) -> Result<String, ChatError> {
        self.format_thinking(messages, None)
    }

    /// The prompt text, the template's `enable_thinking` set when given.
    pub fn format_thinking(&self, messages: &[Message], thinking: Option<bool>) -> Result<String, ChatError> {
        self.template
            .render_with(messages, thinking)
            .map_err(|e| ChatError::new(ErrorKind::Rejected, format!("the chat template failed: {e}")))
    }

    /// The prompt for `messages` and its tokens. Only the template's own
    /// markup may make special tokens: text in a message that spells one
    /// (`<|im_end|>`, `<|endoftext|>`) is tokenized as the text it is, so a
    /// message cannot close its turn or open another role's.
    pub fn tokenize(&self, messages: &[Message]) -> Result<(String, Vec<llama_cpp_2::token::LlamaToken>), ChatError> {
        self.tokenize_thinking(messages, None)
    }

    /// [`Self::tokenize`], the template's `enable_thinking` set when given.
    pub fn tokenize_thinking(
        &self,
        messages: &[Message],
        thinking: Option<bool>,
    ) -> Result<(String, Vec<llama_cpp_2::token::LlamaToken>), ChatError> {
        let prompt = self.format_thinking(messages, thinking)?;
        let vocab = self.model.vocab();
        let add_bos = vocab.should_add_bos() && (self.bos.is_empty() || !prompt.starts_with(&*self.bos));
        if !messages.iter().any(|m| self.spells_special(&m.content)) {
            // The common case: the whole prompt at once, as llama.cpp does.
            let tokens = vocab.tokenize(prompt.as_bytes(), add_bos, true);
            return Ok((prompt, tokens));
        }
        // Render with a placeholder for each message's text, then tokenize
        // the template's parts as markup and the messages' as plain text.
        let marks: Vec<String> = (0..messages.len()).map(|i| format!("\u{E000}evol-content-{i}\u{E001}")).collect();
        let marked: Vec<Message> =
            messages.iter().zip(&marks).map(|(m, mark)| Message { role: m.role, content: mark.clone() }).collect();
        let skeleton = self.format_thinking(&marked, thinking)?;
        let refused = || {
            ChatError::new(
                ErrorKind::Rejected,
                "a message spells a special token (such as <|im_end|>) and the model's chat template rewrites message text, so it cannot be kept as plain text",
            )
        };
        let mut tokens = Vec::new();
        let mut rest = skeleton.as_str();
        let mut first = true;
        for (message, mark) in messages.iter().zip(&marks) {
            let (markup, after) = rest.split_once(mark.as_str()).ok_or_else(refused)?;
            if after.contains(mark.as_str()) {
                return Err(refused());
            }
            tokens.extend(vocab.tokenize(markup.as_bytes(), first && add_bos, true));
            tokens.extend(vocab.tokenize(message.content.as_bytes(), false, false));
            first = false;
            rest = after;
        }
        tokens.extend(vocab.tokenize(rest.as_bytes(), false, true));
        Ok((prompt, tokens))
    }

    /// Whether `text` holds the text of a token that only markup may make
    /// (so it tokenizes differently when special tokens are parsed): found
    /// without tokenizing it, so each message is tokenized once, with the
    /// whole prompt.
    pub fn spells_special(&self, text: &str) -> bool {
        match self.special.as_ref() {
            SpecialTexts::None => false,
            SpecialTexts::Found(texts) => texts.is_match(text),
            SpecialTexts::Tokenize => {
                let vocab = self.model.vocab();
                vocab.tokenize(text.as_bytes(), false, true) != vocab.tokenize(text.as_bytes(), false, false)
            }
        }
    }

    /// The prompt text up to where a user's message begins, after
    /// `system` when given: what the model continues to write a user's
    /// message itself (Magpie).
    pub fn user_prefix(&self, system: Option<&str>) -> Result<String, ChatError> {
        const MARK: &str = "\u{E000}evol-user-turn\u{E001}";
        let mut messages: Vec<Message> = system.map(Message::system).into_iter().collect();
        messages.push(Message::user(MARK));
        let rendered = self.format(&messages)?;
        match rendered.split_once(MARK) {
            Some((prefix, _)) if !prefix.trim().is_empty() => Ok(prefix.to_string()),
            _ => Err(ChatError::new(
                ErrorKind::Rejected,
                "the model's chat template rewrites a user's message, so where one begins cannot be told",
            )),
        }
    }

    /// Starts a generation and returns its event stream: text pieces in
    /// order, then one `Done`. Dropping the receiver cancels it.
    pub fn stream(&self, request: &ChatRequest) -> Result<UnboundedReceiver<Event>, ChatError> {
        self.generate(request).map(|(events, _)| events)
    }

    /// Starts a generation; also says whether the prompt ends by opening a
    /// reasoning block (`<think>`), which the reply then continues.
    fn generate(&self, request: &ChatRequest) -> Result<(UnboundedReceiver<Event>, bool), ChatError> {
        if request.sampling.thinking.effort.is_some() {
            return Err(ChatError::new(
                ErrorKind::Rejected,
                "the embedded engine has no reasoning effort (the template's thinking switch is all it has)",
            ));
        }
        let (prompt, tokens) = match &request.completion {
            None => self.tokenize_thinking(&request.messages, request.sampling.thinking.enabled)?,
            // A text continued as it is: its special tokens are markup.
            Some(completion) => {
                let text = match completion {
                    Completion::Text(text) => text.clone(),
                    Completion::UserTurn { system } => self.user_prefix(system.as_deref())?,
                };
                let vocab = self.model.vocab();
                let add_bos = vocab.should_add_bos() && (self.bos.is_empty() || !text.starts_with(&*self.bos));
                let tokens = vocab.tokenize(text.as_bytes(), add_bos, true);
                (text, tokens)
            }
        };
        let thinking = request.completion.is_none() && opens_reasoning(&prompt);
        // Refused here, before any event, so that a streaming caller can
        // still answer with an error status.
        check_prompt(tokens.len(), self.info.seq_ctx).map_err(|m| ChatError::new(ErrorKind::Rejected, m))?;
        let mut stop = request.stop.clone();
        stop.extend(self.stops.iter().cloned());
        let s = request.sampling;
        let seed = s.seed.unwrap_or_else(|| rand_seed(&prompt));
        let (events, receiver) = unbounded_channel();
        let job = engine::Job {
            tokens,
            temperature: s.temperature,
            top_p: s.top_p,
            max_tokens: s.max_tokens.max(1),
            seed,
            stop,
            events,
        };
        self.jobs.send(job).map_err(|_| ChatError::new(ErrorKind::Backend, "the embedded engine has stopped"))?;
        Ok((receiver, thinking))
    }
}

/// Why a prompt of `tokens` cannot run in a sequence of `seq_ctx` cells:
/// it is empty, or leaves no room for a generated token.
fn check_prompt(tokens: usize, seq_ctx: u32) -> Result<(), String> {
    if tokens == 0 {
        return Err("the prompt is empty".into());
    }
    if tokens as u64 >= u64::from(seq_ctx) {
        return Err(format!(
            "the prompt has {tokens} tokens; the context of a sequence holds {seq_ctx} (raise --ctx-size or lower --parallel)"
        ));
    }
    Ok(())
}

/// Whether a prompt ends by opening a reasoning block (some reasoning
/// models' templates do), so that the reply starts inside it.
fn opens_reasoning(prompt: &str) -> bool {
    prompt.trim_end().ends_with("<think>")
}

/// A seed for requests that bring none: different for every call.
fn rand_seed(prompt: &str) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(prompt.as_bytes());
    h.finish()
}

#[async_trait::async_trait]
impl ChatModel for LlamaEngine {
    fn name(&self) -> &str {
        &self.info.name
    }

    async fn chat(&self, request: ChatRequest) -> Result<ChatResponse, ChatError> {
        let (mut events, thinking) = self.generate(&request)?;
        let mut text = String::new();
        while let Some(event) = events.recv().await {
            match event {
                Event::Text(piece) => text.push_str(&piece),
                Event::Done(Ok(f)) => {
                    // Reasoning models think first: the answer is what follows.
                    let (text, reasoning) = evol_llm::split_reasoning(&text, thinking);
                    return Ok(ChatResponse {
                        text,
                        reasoning,
                        finish_reason: f.reason,
                        usage: Usage {
                            prompt_tokens: f.prompt_tokens.into(),
                            completion_tokens: f.completion_tokens.into(),
                            cached_tokens: f.cached_tokens.into(),
                            reasoning_tokens: 0,
                        },
                        retries: 0,
                        signals: Default::default(),
                    });
                }
                Event::Done(Err(message)) => return Err(ChatError::new(ErrorKind::Rejected, message)),
            }
        }
        Err(ChatError::new(ErrorKind::Backend, "the embedded engine stopped during the request"))
    }
}

/// llama.cpp's report of the CPU features its kernels were built with, e.g.
/// `CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | FMA = 1 | ...`.
#[allow(unsafe_code)]
pub fn system_info() -> String {
    backend();
    // SAFETY: llama_print_system_info returns a pointer to a static,
    // NUL-terminated buffer owned by llama.cpp; it is copied at once.
    unsafe {
        let ptr = llama_cpp_sys_2::llama_print_system_info();
        if ptr.is_null() {
            return String::new();
        }
        std::ffi::CStr::from_ptr(ptr).to_string_lossy().into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_that_open_a_reasoning_block_are_recognised() {
        assert!(opens_reasoning("<|im_start|>assistant\n<think>\n"));
        assert!(!opens_reasoning("<|im_start|>assistant\n"));
        // A closed, empty block (thinking turned off) is not an open one.
        assert!(!opens_reasoning("<|im_start|>assistant\n<think>\n\n</think>\n\n"));
    }
}
