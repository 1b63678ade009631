//! Chat formatting: messages to the prompt text a model was trained on.
//!
//! The model's own template (GGUF `tokenizer.chat_template`) is rendered
//! with minijinja, with Python-style string methods as Hugging Face
//! templates expect; if minijinja cannot render it, llama.cpp's built-in
//! support for the template families it recognises is used instead. A
//! model without a template (a base model) needs `--chat-template`: a
//! built-in name, a file, or Jinja text.

use std::sync::Arc;

use evol_llm::Message;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use minijinja::{context, Environment, Error, ErrorKind};

/// Built-in templates, written for this project, by name.
pub const BUILTIN: &[(&str, &str, &[&str])] = &[
    (
        "chatml",
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}\
         {% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
        &["<|im_end|>"],
    ),
    (
        "gemma",
        "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m.role == 'assistant' else 'user' }}\n\
         {{ m.content }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}",
        &["<end_of_turn>", "<start_of_turn>"],
    ),
    (
        "llama3",
        "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n{{ m.content }}<|eot_id|>\
         {% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}",
        &["<|eot_id|>"],
    ),
    (
        "plain",
        "{% for m in messages %}{% if m.role == 'system' %}{{ m.content }}\n\n{% elif m.role == 'user' %}User: {{ m.content }}\n\
         {% else %}Assistant: {{ m.content }}\n{% endif %}{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}",
        &["\nUser:"],
    ),
];

/// Names of the built-in templates, for messages.
pub fn builtin_names() -> String {
    BUILTIN.iter().map(|(n, _, _)| *n).collect::<Vec<_>>().join(", ")
}

/// Where a chat template comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateSource {
    /// The GGUF's own template.
    Model(String),
    /// `--chat-template`: a built-in name.
    Builtin(&'static str),
    /// `--chat-template`: a file or literal Jinja text.
    Custom(String),
}

impl TemplateSource {
    /// Resolves `--chat-template`: a built-in name, a path to a file, or
    /// Jinja text.
    pub fn from_setting(setting: &str) -> Result<TemplateSource, String> {
        if let Some((name, _, _)) = BUILTIN.iter().find(|(n, _, _)| *n == setting) {
            return Ok(TemplateSource::Builtin(name));
        }
        let path = std::path::Path::new(setting);
        if path.is_file() {
            // A template is a few kilobytes; a bound keeps a wrong path
            // (a model file, a device) from filling memory.
            const MAX_TEMPLATE_BYTES: u64 = 4 << 20;
            let mut text = String::new();
            std::fs::File::open(path)
                .and_then(|f| {
                    std::io::Read::read_to_string(&mut std::io::Read::take(f, MAX_TEMPLATE_BYTES + 1), &mut text)
                })
                .map_err(|e| format!("cannot read the chat template `{setting}`: {e}"))?;
            if text.len() as u64 > MAX_TEMPLATE_BYTES {
                return Err(format!("the chat template `{setting}` is larger than 4 MiB; is it the right file?"));
            }
            return Ok(TemplateSource::Custom(text));
        }
        if setting.contains("{{") || setting.contains("{%") {
            return Ok(TemplateSource::Custom(setting.to_string()));
        }
        Err(format!("unknown chat template `{setting}`: expected one of {}, a file, or Jinja text", builtin_names()))
    }

    fn text(&self) -> &str {
        match self {
            TemplateSource::Model(t) | TemplateSource::Custom(t) => t,
            TemplateSource::Builtin(name) => BUILTIN.iter().find(|(n, _, _)| n == name).map(|(_, t, _)| *t).unwrap(),
        }
    }

    /// Stop strings that go with a built-in template.
    pub fn stops(&self) -> Vec<String> {
        match self {
            TemplateSource::Builtin(name) => BUILTIN
                .iter()
                .find(|(n, _, _)| n == name)
                .map(|(_, _, s)| s.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

/// A compiled chat template.
pub struct ChatTemplate {
    renderer: Renderer,
    pub source: TemplateSource,
    bos: String,
    eos: String,
}

enum Renderer {
    Jinja(Environment<'static>),
    /// llama.cpp's own formatting of a template family it recognises (for
    /// model templates minijinja cannot handle).
    LlamaCpp {
        model: Arc<LlamaModel>,
        template: LlamaChatTemplate,
    },
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").field("source", &self.source).field("llama_cpp", &self.is_llama_cpp()).finish()
    }
}

impl ChatTemplate {
    /// Compiles a template; `bos` and `eos` are the model's token texts.
    pub fn new(source: TemplateSource, bos: &str, eos: &str) -> Result<ChatTemplate, Error> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |message: String| -> Result<String, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, message))
        });
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned("chat", without_generation_tags(source.text()))?;
        let template =
            ChatTemplate { renderer: Renderer::Jinja(env), source, bos: bos.to_string(), eos: eos.to_string() };
        // Render once so that a template minijinja cannot handle is found now.
        template.render(&probe())?;
        Ok(template)
    }

    /// Compiles the template of `model`'s chat: with minijinja, or, for a
    /// model's own template minijinja cannot handle, with llama.cpp's
    /// formatting if it recognises the template's family. The error is
    /// minijinja's when neither works.
    pub fn for_model(
        source: TemplateSource,
        bos: &str,
        eos: &str,
        model: &Arc<LlamaModel>,
    ) -> Result<ChatTemplate, Error> {
        let error = match ChatTemplate::new(source.clone(), bos, eos) {
            Ok(template) => return Ok(template),
            Err(e) => e,
        };
        let TemplateSource::Model(text) = &source else { return Err(error) };
        let Ok(template) = LlamaChatTemplate::new(text) else { return Err(error) };
        let fallback = ChatTemplate {
            renderer: Renderer::LlamaCpp { model: model.clone(), template },
            source,
            bos: bos.to_string(),
            eos: eos.to_string(),
        };
        match fallback.render(&probe()) {
            Ok(_) => Ok(fallback),
            Err(_) => Err(error),
        }
    }

    /// Whether llama.cpp formats the chat (minijinja could not).
    pub fn is_llama_cpp(&self) -> bool {
        matches!(self.renderer, Renderer::LlamaCpp { .. })
    }

    /// The prompt for `messages`, ending where the assistant's reply starts.
    pub fn render(&self, messages: &[Message]) -> Result<String, Error> {
        self.render_with(messages, None)
    }

    /// The prompt, with the template's `enable_thinking` (Qwen3's switch)
    /// defined when `thinking` is given and left undefined otherwise, as
    /// Hugging Face's `apply_chat_template` does with its keyword.
    pub fn render_with(&self, messages: &[Message], thinking: Option<bool>) -> Result<String, Error> {
        match &self.renderer {
            Renderer::Jinja(env) => {
                let messages: Vec<_> = messages
                    .iter()
                    .map(|m| context! { role => m.role.as_str(), content => m.content.as_str() })
                    .collect();
                let base = context! {
                    messages,
                    add_generation_prompt => true,
                    bos_token => self.bos.as_str(),
                    eos_token => self.eos.as_str(),
                };
                let ctx = match thinking {
                    Some(on) => context! { enable_thinking => on, ..base },
                    None => base,
                };
                env.get_template("chat")?.render(ctx)
            }
            Renderer::LlamaCpp { .. } if thinking.is_some() => Err(Error::new(
                ErrorKind::InvalidOperation,
                "this model's chat template is formatted by llama.cpp, which cannot switch thinking (pass a Jinja template with --chat-template)",
            )),
            Renderer::LlamaCpp { model, template } => {
                let failed = |e: &dyn std::fmt::Display| {
                    Error::new(ErrorKind::InvalidOperation, format!("llama.cpp could not format the chat: {e}"))
                };
                let chat = messages
                    .iter()
                    .map(|m| LlamaChatMessage::new(m.role.as_str().to_string(), m.content.clone()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| failed(&e))?;
                model.apply_chat_template(template, &chat, true).map_err(|e| failed(&e))
            }
        }
    }
}

/// Today's local date and time in a strftime `format`, as Hugging Face's
/// `strftime_now` gives templates (Llama 3.2 prints "Today Date").
fn strftime_now(format: String) -> Result<String, Error> {
    use std::fmt::Write as _;
    let mut out = String::new();
    write!(out, "{}", chrono::Local::now().format(&format))
        .map_err(|_| Error::new(ErrorKind::InvalidOperation, format!("strftime_now: invalid format `{format}`")))?;
    Ok(out)
}

/// What a template is tried on when it is compiled.
fn probe() -> [Message; 2] {
    [Message::system("s"), Message::user("u")]
}

/// Removes Hugging Face's `{% generation %}` and `{% endgeneration %}` tags,
/// which mark the assistant's text for training masks and render nothing;
/// minijinja does not know them. Written by hand: a tag is `{%`, optional
/// whitespace control, the word, optional whitespace control, `%}`.
fn without_generation_tags(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        let tag = &rest[start..];
        let Some(end) = tag.find("%}") else {
            out.push_str(tag);
            return out;
        };
        let inner = tag[2..end].trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace());
        if inner != "generation" && inner != "endgeneration" {
            out.push_str(&tag[..end + 2]);
        }
        rest = &tag[end + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_render() {
        let msgs = [Message::system("Be brief."), Message::user("Hi {{ x }}")];
        let chatml = ChatTemplate::new(TemplateSource::from_setting("chatml").unwrap(), "<s>", "</s>").unwrap();
        assert_eq!(
            chatml.render(&msgs).unwrap(),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi {{ x }}<|im_end|>\n<|im_start|>assistant\n"
        );
        let gemma = ChatTemplate::new(TemplateSource::from_setting("gemma").unwrap(), "<bos>", "<eos>").unwrap();
        let text = gemma.render(&msgs).unwrap();
        assert!(text.starts_with("<bos><start_of_turn>user\nBe brief.<end_of_turn>\n"), "{text}");
        assert!(text.ends_with("<start_of_turn>model\n"));
        assert_eq!(TemplateSource::from_setting("plain").unwrap().stops(), vec!["\nUser:".to_string()]);
    }

    #[test]
    fn hugging_face_style_templates_render() {
        // The shape of real templates: python string methods, loop.first,
        // raise_exception, whitespace control.
        let hf = "{% for message in messages %}{% if message['role'] == 'system' and not loop.first %}\
                  {{ raise_exception('system must come first') }}{% endif %}\
                  {{ '<|' + message['role'] + '|>\\n' + message['content'].strip() + '\\n' }}{% endfor %}\
                  {% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}";
        let t = ChatTemplate::new(TemplateSource::Custom(hf.into()), "", "").unwrap();
        assert_eq!(t.render(&[Message::user("  hi  ")]).unwrap(), "<|user|>\nhi\n<|assistant|>\n");
        let err = t.render(&[Message::user("a"), Message::system("b")]).unwrap_err();
        assert!(err.to_string().contains("system must come first"), "{err}");
    }

    #[test]
    fn the_thinking_switch_reaches_the_template_only_when_set() {
        // Qwen3's switch: an empty thinking block when thinking is off.
        let qwen3 = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}\
                     {% if add_generation_prompt %}<|im_start|>assistant\n\
                     {% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}";
        let t = ChatTemplate::new(TemplateSource::Custom(qwen3.into()), "", "").unwrap();
        let q = [Message::user("1+1?")];
        assert!(t.render_with(&q, Some(false)).unwrap().ends_with("<think>\n\n</think>\n\n"));
        assert!(!t.render_with(&q, Some(true)).unwrap().contains("<think>"));
        assert_eq!(t.render_with(&q, None).unwrap(), t.render(&q).unwrap(), "unset: the template's own default");
        assert!(!t.render(&q).unwrap().contains("<think>"));
    }

    #[test]
    fn generation_tags_are_ignored() {
        let text =
            "{% for m in messages %}{% if m.role == 'assistant' %}{%- generation -%}{{ m.content }}{% endgeneration %}\
                    {% else %}[{{ m.content }}]{% endif %}{% endfor %}";
        assert_eq!(
            without_generation_tags(text),
            "{% for m in messages %}{% if m.role == 'assistant' %}{{ m.content }}\
             {% else %}[{{ m.content }}]{% endif %}{% endfor %}"
        );
        let t = ChatTemplate::new(TemplateSource::Custom(text.into()), "", "").unwrap();
        assert_eq!(t.render(&[Message::user("q")]).unwrap(), "[q]");
        assert!(!t.is_llama_cpp());
        // Other tags, and text that only looks like one, stay.
        assert_eq!(
            without_generation_tags("a {% raw %}{{ x }}{% endraw %} {% b"),
            "a {% raw %}{{ x }}{% endraw %} {% b"
        );
    }

    #[test]
    fn templates_in_the_shape_of_recent_models_render() {
        // Reversed loops, namespaces, `is string`, string methods with
        // arguments, `is defined`/`is false`: what reasoning-model templates
        // use. Earlier assistant turns lose their reasoning block.
        let text = "{%- set ns = namespace(last_user=messages|length - 1) %}\
            {%- for m in messages[::-1] %}{%- if m.role == 'user' and ns.last_user == messages|length - 1 %}\
            {%- set ns.last_user = (messages|length - 1) - loop.index0 %}{%- endif %}{%- endfor %}\
            {%- for m in messages %}{%- set content = m.content if m.content is string else '' %}\
            {%- if m.role == 'assistant' and '</r>' in content %}{%- set content = content.split('</r>')[-1].lstrip('\\n') %}{%- endif %}\
            {{- '<' + m.role + '>' + content.strip() + '</' + m.role + '>' }}{%- endfor %}\
            {%- if add_generation_prompt %}{{- '<assistant>' }}\
            {%- if thinking is defined and thinking is false %}{{- '<r></r>' }}{%- endif %}{%- endif %}";
        let t = ChatTemplate::new(TemplateSource::Custom(text.into()), "", "").unwrap();
        let assistant = Message { role: evol_llm::Role::Assistant, content: "<r>why</r>\n Answer".into() };
        let out = t.render(&[Message::user(" q "), assistant, Message::user("q2")]).unwrap();
        assert_eq!(out, "<user>q</user><assistant>Answer</assistant><user>q2</user><assistant>");
    }

    #[test]
    fn strftime_now_formats_today() {
        let t = ChatTemplate::new(TemplateSource::Custom("{{ strftime_now('%Y-%m-%d') }}".into()), "", "").unwrap();
        let today = chrono::Local::now().format("%Y-%m-%d").to_string();
        assert_eq!(t.render(&[Message::user("u")]).unwrap(), today);
        assert!(ChatTemplate::new(TemplateSource::Custom("{{ strftime_now('%Q') }}".into()), "", "").is_err());
    }

    #[test]
    fn unknown_settings_are_explained() {
        let err = TemplateSource::from_setting("vicuna").unwrap_err();
        assert!(err.contains("chatml, gemma, llama3, plain"), "{err}");
        assert!(matches!(TemplateSource::from_setting("{{ messages }}"), Ok(TemplateSource::Custom(_))));
    }
}
