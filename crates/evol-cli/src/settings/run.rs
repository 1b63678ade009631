//! Settings of the commands that evolve: `run` and `optimize`.

use std::collections::BTreeMap;
use std::path::Path;

use evol_core::eliminate::Rules;
use evol_core::{Method, OperationSet, OperatorSet, Shard, Templates};
use evol_llm::Thinking;
use evol_store::ingest::IngestOptions;

use super::{dedup_params, field_name, non_empty, sampling, usage, FromArgs};
use super::{Backend, ModelSettings, OptimizeRunSettings, RoleModels, RunSettings, UsageError};
use crate::cli::{AttemptArgs, DedupParamArgs, MagpieArgs, OptimizeArgs, RunArgs};

/// The most rounds a run may have.
const MAX_ROUNDS: u32 = 1000;

impl FromArgs<RunArgs> for RunSettings {
    type Error = anyhow::Error;

    /// Consumes the flags (and reads the `--config` and `--templates`
    /// files they name). A mistake in the flags or the config is a
    /// [`UsageError`]; templates that do not load are a plain error.
    fn from_args(args: RunArgs) -> anyhow::Result<RunSettings> {
        let dir = args.templates.clone();
        let ops_file = args.ops_file.clone();
        let file = ops_file.as_deref().map(read_operator_file).transpose()?;
        // Conversations draw from the follow-up operators unless told.
        let spec = match (args.turns, args.ops.as_str(), &file) {
            (Some(_), "all", None) => "conversation".to_string(),
            _ => args.ops.clone(),
        };
        let (set, mut operations) =
            OperatorSet::choose(&spec, file).map_err(|e| usage(format!("--ops {spec}: {e}")))?;
        if args.turns.is_some() {
            if let Some(op) = operations.iter().find(|op| !op.is_follow_up()) {
                return Err(usage(format!(
                    "--turns adds follow-up turns: `{}` does not write one (the `conversation` set's operators do, kind `follow_up`)",
                    op.name
                ))
                .into());
            }
        } else if let Some(op) = operations.iter().find(|op| op.is_follow_up()) {
            return Err(usage(format!("`{}` writes a conversation's next turn: give --turns N", op.name)).into());
        }
        if !args.tree_nodes.is_empty() {
            operations = operations.with_nodes(&args.tree_nodes).map_err(|e| usage(format!("--tree-nodes: {e}")))?;
        }
        let mut settings = validate_run(args, operations)?;
        settings.templates =
            load_templates(dir.as_deref(), &set, &settings.method.operations).map_err(|e| match &ops_file {
                Some(path) => anyhow::anyhow!("the operator file `{}`: {e:#}", path.display()),
                None => e,
            })?;
        Ok(settings)
    }
}

fn validate_run(args: RunArgs, operations: OperationSet) -> Result<RunSettings, UsageError> {
    let RunArgs {
        seeds,
        output,
        attempt: AttemptArgs { fresh, retry_failed },
        models,
        dry_run,
        answer_model,
        judge_model,
        score_model,
        score_difficulty,
        rounds,
        // Read by `from_args` (the operations and templates).
        ops: _,
        ops_file: _,
        tree_nodes: _,
        turns,
        templates: _,
        seed,
        no_answer,
        answers,
        pick,
        improve_answers,
        include_seeds,
        no_equality_check,
        no_sorry_check,
        no_language_check,
        language,
        refusals,
        refusals_replace,
        no_stop_words_check,
        no_copy_check,
        no_asks_check,
        no_dedup,
        dedup_shingle,
        dedup_hashes,
        dedup_bands,
        dedup_threshold,
        temperature,
        top_p,
        max_tokens,
        answer_temperature,
        answer_top_p,
        answer_max_tokens,
        judge_max_tokens,
        score_max_tokens,
        benchmark,
        benchmark_ngram,
        answer_thinking,
        answer_reasoning_effort,
        judge_thinking,
        judge_reasoning_effort,
        format,
        instruction_field,
        id_field,
        skip_invalid,
        limit,
        shard,
        quiet: _,
    } = args;
    if !(1..=MAX_ROUNDS).contains(&rounds) {
        return Err(usage(format!("--rounds must be between 1 and {MAX_ROUNDS}")));
    }
    if turns.is_some_and(|n| !(2..=9).contains(&n)) {
        return Err(usage("--turns must be from 2 to 9 (the seed's turn and at least one more)"));
    }
    if turns.is_some() && improve_answers > 0 {
        return Err(usage("--improve-answers rewrites one answer alone; a conversation's turns are answered in context: not with --turns"));
    }
    let rounds = turns.map_or(rounds, |n| n - 1);
    if limit == Some(0) {
        return Err(usage("--limit must be at least 1: it is how many seeds to use"));
    }
    if !(1..=64).contains(&answers) {
        return Err(usage("--answers must be between 1 and 64"));
    }
    if answers > 1 && no_answer {
        return Err(usage("--answers and --no-answer contradict each other"));
    }
    if answers == 1 && pick.is_some() {
        return Err(usage("--pick chooses among several answers: give --answers K with K of 2 or more"));
    }
    let best_of = (answers > 1)
        .then(|| evol_core::method::BestOf { answers, pick: pick.unwrap_or(evol_core::best_of::Pick::Score) });
    if improve_answers > 16 {
        return Err(usage("--improve-answers must be at most 16 rounds"));
    }
    if improve_answers > 0 && no_answer {
        return Err(usage("--improve-answers and --no-answer contradict each other"));
    }
    let language = match language.as_str() {
        "off" => None,
        "auto" => Some(evol_core::method::LanguagePolicy { target: None }),
        code if evol_lang::is_known(code) => Some(evol_core::method::LanguagePolicy { target: Some(code.to_string()) }),
        other => {
            return Err(usage(format!(
                "--language `{}`: not a language code evol knows (ISO 639-1, such as en, zh, hi, ja, ar, es)",
                evol_text::shown_inline(other)
            )))
        }
    };
    let min = evol_dedup::contamination::MIN_ITEM_WORDS;
    if !(min..=1000).contains(&benchmark_ngram) {
        return Err(usage(format!("--benchmark-ngram must be between {min} and 1000 words")));
    }
    let mut evolve = sampling("", temperature, top_p, max_tokens)?;
    let mut answer = sampling(
        "--answer-",
        answer_temperature.unwrap_or(temperature),
        answer_top_p.unwrap_or(top_p),
        answer_max_tokens.unwrap_or(max_tokens),
    )?;
    // The judge is asked for one of two words: greedy, and by default
    // the same token limit (reasoning models spend tokens before they
    // answer).
    let mut judge = sampling("--judge-", 0.0, 1.0, judge_max_tokens.unwrap_or(max_tokens))?;
    let model = ModelSettings::from_args(models)?;
    // Each role thinks as its own flags say, else as --thinking and
    // --reasoning-effort say (the scorer as the judge).
    evolve.thinking = model.thinking;
    answer.thinking = Thinking { effort: answer_reasoning_effort, enabled: answer_thinking }.or(model.thinking);
    judge.thinking = Thinking { effort: judge_reasoning_effort, enabled: judge_thinking }.or(model.thinking);
    if matches!(model.backend, Backend::Embedded(_))
        && (answer.thinking.effort.is_some() || judge.thinking.effort.is_some())
    {
        return Err(usage("--answer-reasoning-effort and --judge-reasoning-effort need --endpoint"));
    }
    if matches!(model.backend, Backend::Embedded(_))
        && (answer_model.is_some() || judge_model.is_some() || score_model.is_some())
    {
        return Err(usage(
            "--answer-model, --judge-model and --score-model need --endpoint (the embedded engine runs one model)",
        ));
    }
    let models = RoleModels {
        evolve: model.model.clone(),
        judge: non_empty("--judge-model", &judge_model)?,
        answer: non_empty("--answer-model", &answer_model)?,
        score: non_empty("--score-model", &score_model)?,
        optimize: None,
    };
    let difficulty = score_difficulty
        .then(|| sampling("--score-", 0.0, 1.0, score_max_tokens.or(judge_max_tokens).unwrap_or(max_tokens)))
        .transpose()?
        .map(|s| evol_llm::Sampling { thinking: judge.thinking, ..s });
    let shard = shard.as_deref().map(|s| s.parse::<Shard>().map_err(|e| usage(format!("--shard {e}")))).transpose()?;
    let dedup = if no_dedup {
        None
    } else {
        let params = DedupParamArgs {
            shingle: dedup_shingle,
            hashes: dedup_hashes,
            bands: dedup_bands,
            threshold: dedup_threshold,
        };
        Some(dedup_params(params, "--dedup-*")?)
    };
    Ok(RunSettings {
        ingest: IngestOptions {
            format,
            fields: evol_io::Fields {
                instruction: field_name(instruction_field.as_deref(), "--instruction-field")?,
                id: field_name(id_field.as_deref(), "--id-field")?,
            },
            limit: limit.map(|l| l as u64),
            shard,
            skip_invalid,
            run_seed: seed,
            dedup,
        },
        method: Method {
            rounds,
            operations,
            run_seed: seed,
            rules: Rules {
                equality: !no_equality_check,
                sorry: !no_sorry_check,
                stop_words: !no_stop_words_check,
                copied_prompt: !no_copy_check,
                asks_for_input: !no_asks_check,
                language: !no_language_check,
            },
            answer: !no_answer,
            answer_seeds: (include_seeds || turns.is_some()) && !no_answer,
            evolve_sampling: evolve,
            answer_sampling: answer,
            judge_sampling: judge,
            request_seeds: model.request_seeds,
            dedup,
            difficulty,
            contamination: None,
            best_of,
            improve_answers,
            language,
            refusals: None,
            conversation: turns.is_some(),
        },
        execution: model.execution(retry_failed),
        templates: Templates::builtin(),
        models,
        backend: model.backend,
        include_seeds,
        seeds,
        output,
        fresh,
        dry_run,
        command: Vec::new(),
        defaulted: Default::default(),
        benchmarks: benchmark,
        benchmark_ngram,
        refusals,
        refusals_replace,
    })
}

/// The method settings that each `evol run` flag decides (by argument id).
/// A resume keeps the earlier run's value of a setting none of whose flags
/// was given; a test checks that every flag that shapes the method is here.
const METHOD_FLAGS: &[(&str, &[&str])] = &[
    ("rounds", &["rounds", "turns"]),
    ("operations", &["ops", "ops_file", "tree_nodes", "turns"]),
    ("conversation", &["turns"]),
    ("run_seed", &["seed"]),
    (
        "rules",
        &[
            "no_equality_check",
            "no_sorry_check",
            "no_stop_words_check",
            "no_copy_check",
            "no_asks_check",
            "no_language_check",
        ],
    ),
    ("language", &["language"]),
    ("answer", &["no_answer"]),
    ("answer_seeds", &["no_answer", "include_seeds", "turns"]),
    ("evolve_sampling", &["temperature", "top_p", "max_tokens", "thinking", "reasoning_effort"]),
    (
        "answer_sampling",
        &[
            "answer_temperature",
            "answer_top_p",
            "answer_max_tokens",
            "temperature",
            "top_p",
            "max_tokens",
            "answer_thinking",
            "answer_reasoning_effort",
            "thinking",
            "reasoning_effort",
        ],
    ),
    (
        "judge_sampling",
        &["judge_max_tokens", "max_tokens", "judge_thinking", "judge_reasoning_effort", "thinking", "reasoning_effort"],
    ),
    ("request_seeds", &["no_request_seed"]),
    ("best_of", &["answers", "pick"]),
    ("improve_answers", &["improve_answers"]),
    ("dedup", &["no_dedup", "dedup_shingle", "dedup_hashes", "dedup_bands", "dedup_threshold"]),
    (
        "difficulty",
        &[
            "score_difficulty",
            "score_max_tokens",
            "judge_max_tokens",
            "max_tokens",
            "judge_thinking",
            "judge_reasoning_effort",
            "thinking",
            "reasoning_effort",
        ],
    ),
];

/// The method settings none of whose flags is among `given`.
pub fn defaulted_method_settings(given: &[String]) -> std::collections::BTreeSet<String> {
    METHOD_FLAGS
        .iter()
        .filter(|(_, flags)| !flags.iter().any(|f| given.iter().any(|g| g == f)))
        .map(|(setting, _)| setting.to_string())
        .collect()
}

/// Loads a `--templates` directory: every `.txt` file in it replaces the
/// built-in file of the same name; an unknown `.txt` name is an error (it is
/// most likely a typo that would otherwise be silently ignored).
pub fn load_templates(dir: Option<&Path>, set: &OperatorSet, enabled: &OperationSet) -> anyhow::Result<Templates> {
    let Some(dir) = dir else {
        return Templates::new(BTreeMap::new(), set, enabled)
            .map_err(|e| anyhow::anyhow!("the operator set `{}`: {e}", set.name));
    };
    let entries = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("cannot read the templates directory `{}`: {e}", dir.display()))?;
    let mut overrides = BTreeMap::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("txt") {
            continue;
        }
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let text = evol_io::bounded::read_text(&path, evol_io::bounded::MAX_SETTINGS_BYTES)
            .map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", path.display()))?;
        overrides.insert(name, text);
    }
    Templates::new(overrides, set, enabled)
        .map_err(|e| anyhow::anyhow!("templates in `{}` with the operator set `{}`: {e}", dir.display(), set.name))
}

/// Reads an operator file (`--ops-file`): a mistake names the file, the
/// operator and the field.
pub fn read_operator_file(path: &Path) -> anyhow::Result<OperatorSet> {
    let text = evol_io::bounded::read_text(path, evol_io::bounded::MAX_SETTINGS_BYTES)
        .map_err(|e| anyhow::anyhow!("cannot read the operator file `{}`: {e}", path.display()))?;
    OperatorSet::parse(&text).map_err(|e| anyhow::anyhow!("the operator file `{}`: {e}", path.display()))
}

impl FromArgs<OptimizeArgs> for OptimizeRunSettings {
    type Error = anyhow::Error;

    fn from_args(args: OptimizeArgs) -> anyhow::Result<OptimizeRunSettings> {
        let OptimizeArgs {
            seeds,
            output,
            steps,
            batch,
            evolutions,
            candidates,
            dev,
            from,
            optimizer_model,
            answer_model,
            judge_model,
            temperature,
            optimizer_temperature,
            max_tokens,
            optimizer_max_tokens,
            seed,
            format,
            attempt: AttemptArgs { fresh, retry_failed },
            models,
            quiet: _,
        } = args;
        let mut set = match &from {
            Some(path) => read_operator_file(path)?,
            None => OperatorSet::builtin("auto").expect("built in"),
        };
        let auto = OperatorSet::builtin("auto").expect("built in");
        let optimizer = evol_core::optimize::OPTIMIZER_TEMPLATE;
        if !set.templates.contains_key(optimizer) {
            set.templates.insert(optimizer.to_string(), auto.templates[optimizer].clone());
        }
        let from = from.as_ref().map_or("the `auto` set".to_string(), |p| format!("`{}`", p.display()));
        let literal = |op: &evol_core::Operation| match op.method.as_ref().and_then(|m| set.templates.get(m)) {
            Some(evol_core::ops::SetTemplate::Literal(text)) => Some((op.clone(), op.method.clone()?, text.clone())),
            _ => None,
        };
        let (operator, method_name, start_method) = set.operations.iter().find_map(literal).ok_or_else(|| {
            usage(format!(
                "--from {from}: no operator has a literal method (`[templates.NAME] literal = ...`) to optimise"
            ))
        })?;
        let enabled = set.operations.select(&operator.name).expect("it exists");
        let templates =
            Templates::new(BTreeMap::new(), &set, &enabled).map_err(|e| anyhow::anyhow!("--from {from}: {e}"))?;
        let bounded = |flag: &str, value: u64, low: u64, high: u64| {
            if (low..=high).contains(&value) {
                Ok(())
            } else {
                Err(usage(format!("--{flag} must be between {low} and {high}")))
            }
        };
        bounded("steps", u64::from(steps), 1, 100)?;
        bounded("batch", batch as u64, 1, 1000)?;
        bounded("evolutions", u64::from(evolutions), 1, 10)?;
        bounded("candidates", u64::from(candidates), 1, 20)?;
        bounded("dev", dev as u64, 1, 100_000)?;
        let model = ModelSettings::from_args(models)?;
        let thinking = |s: evol_llm::Sampling| evol_llm::Sampling { thinking: model.thinking, ..s };
        let evolve = thinking(sampling("", temperature, 1.0, max_tokens)?);
        let optimizer_sampling = thinking(sampling("--optimizer-", optimizer_temperature, 1.0, optimizer_max_tokens)?);
        let judge = thinking(sampling("--judge-", 0.0, 1.0, max_tokens)?);
        if matches!(model.backend, Backend::Embedded(_))
            && (answer_model.is_some() || judge_model.is_some() || optimizer_model.is_some())
        {
            return Err(usage(
                "--optimizer-model, --answer-model and --judge-model need --endpoint (the embedded engine runs one model)",
            )
            .into());
        }
        let models = RoleModels {
            evolve: model.model.clone(),
            judge: non_empty("--judge-model", &judge_model)?,
            answer: non_empty("--answer-model", &answer_model)?,
            score: None,
            optimize: non_empty("--optimizer-model", &optimizer_model)?,
        };
        let execution = model.execution(retry_failed);
        let optimize = evol_core::optimize::OptimizeSettings {
            steps,
            batch,
            evolutions,
            candidates,
            run_seed: seed,
            rules: Rules::default(),
            evolve_sampling: evolve,
            answer_sampling: evolve,
            judge_sampling: judge,
            optimizer_sampling,
            request_seeds: model.request_seeds,
        };
        Ok(OptimizeRunSettings {
            seeds,
            output,
            fresh,
            format,
            dev,
            operation: operator,
            method_name,
            start_method,
            set,
            templates,
            optimize,
            models,
            model,
            execution,
        })
    }
}

/// The most generations one `evol magpie` asks for.
const MAX_GENERATIONS: u64 = 100_000_000;

impl FromArgs<MagpieArgs> for evol::settings::MagpieSettings {
    type Error = UsageError;

    fn from_args(args: MagpieArgs) -> Result<evol::settings::MagpieSettings, UsageError> {
        use evol::settings::{Opening, TemplateFamily};
        let MagpieArgs {
            output,
            count,
            topic,
            persona,
            language,
            system,
            template_family,
            prefix,
            temperature,
            top_p,
            max_tokens,
            min_words,
            no_dedup,
            dedup,
            seed,
            attempt: AttemptArgs { fresh, retry_failed },
            models,
            quiet: _,
        } = args;
        if !(1..=MAX_GENERATIONS).contains(&count) {
            return Err(usage(format!("--count must be from 1 to {MAX_GENERATIONS}")));
        }
        let mut parts: Vec<String> = non_empty("--system", &system)?.into_iter().collect();
        if let Some(persona) = non_empty("--persona", &persona)? {
            parts.push(format!("The person you are talking to is {}.", persona.trim_end_matches('.')));
        }
        if let Some(topic) = non_empty("--topic", &topic)? {
            parts.push(format!("They ask you about {}.", topic.trim_end_matches('.')));
        }
        if let Some(code) = non_empty("--language", &language)? {
            if !evol_lang::is_known(&code) {
                return Err(usage(format!(
                    "--language `{code}` is not a language code evol knows (ISO 639-1, such as hi or zh)"
                )));
            }
            parts.push(format!("They write in {}.", evol_lang::name(&code)));
        }
        let system = (!parts.is_empty()).then(|| parts.join(" "));
        let model = ModelSettings::from_args(models)?;
        let embedded = matches!(model.backend, Backend::Embedded(_));
        let opening = match (template_family, non_empty("--prefix", &prefix)?) {
            (Some(name), _) => match TemplateFamily::parse(name.trim()) {
                Some(family) => Opening::Family(family),
                None => {
                    let known: Vec<&str> = TemplateFamily::ALL.iter().map(|f| f.name()).collect();
                    return Err(usage(format!(
                        "--template-family `{name}` is not one evol knows ({}); give the opening itself with --prefix",
                        known.join(", ")
                    )));
                }
            },
            // The system message goes where the prefix says, and only there.
            (None, Some(prefix)) => match (prefix.contains("{system}"), &system) {
                (true, None) => {
                    return Err(usage(
                        "--prefix holds `{system}` but there is no system message: give --system, --topic, --persona or --language, or take `{system}` out",
                    ))
                }
                (false, Some(_)) => {
                    return Err(usage(
                        "--prefix has no `{system}`, so the system message (from --system, --topic, --persona or --language) would not be sent: put `{system}` where the template takes it",
                    ))
                }
                _ => Opening::Text(prefix),
            },
            (None, None) if embedded => Opening::Own,
            (None, None) => {
                return Err(usage(
                    "with --endpoint, say how the server's model opens a user's turn: --template-family chatml|llama3|gemma|phi3|mistral, or --prefix TEXT",
                ))
            }
        };
        if embedded && opening != Opening::Own {
            return Err(usage(
                "--template-family and --prefix are for a server's model: the embedded engine opens the turn with the model's own template",
            ));
        }
        let dedup = match no_dedup {
            true => None,
            false => Some(dedup_params(dedup, "near duplicates")?),
        };
        let sampling = sampling("", temperature, top_p, max_tokens)?;
        Ok(evol::settings::MagpieSettings {
            output,
            fresh,
            count,
            eval: super::eval::eval_model(model, None, retry_failed, sampling, seed)?,
            opening,
            system,
            dedup,
            min_words,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The method of `evol run s.jsonl -o o EXTRA...`, if those flags are
    /// accepted.
    fn method(extra: &[String]) -> Option<serde_json::Value> {
        use clap::Parser;
        let words = ["evol", "run", "s.jsonl", "-o", "o"].iter().map(|w| w.to_string()).chain(extra.iter().cloned());
        let cli = crate::cli::Cli::try_parse_from(words).ok()?;
        let crate::cli::Command::Run(args) = cli.command else { return None };
        let settings = RunSettings::from_args(*args).ok()?;
        Some(serde_json::to_value(&settings.method).unwrap())
    }

    #[test]
    fn every_flag_that_shapes_the_method_is_listed_with_its_setting() {
        use clap::CommandFactory;
        let default = method(&[]).unwrap();
        let words = ["--score-difficulty", "--answers", "2", "--improve-answers", "1"];
        let scored = method(&words.map(String::from)).unwrap();
        for key in scored.as_object().unwrap().keys() {
            assert!(METHOD_FLAGS.iter().any(|(k, _)| k == key), "the setting `{key}` has no flags listed");
        }
        let command = crate::cli::Cli::command();
        let run = command.find_subcommand("run").unwrap();
        let ids: Vec<&str> = run.get_arguments().map(|a| a.get_id().as_str()).collect();
        for flag in METHOD_FLAGS.iter().flat_map(|(_, flags)| flags.iter()) {
            assert!(ids.contains(flag), "`{flag}` is not a flag of `evol run`");
        }
        // A flag not listed leaves the method as it is, whatever its value.
        let listed = |id: &str| METHOD_FLAGS.iter().any(|(_, flags)| flags.contains(&id));
        for arg in run.get_arguments().filter(|a| !a.is_positional() && !listed(a.get_id().as_str())) {
            let Some(long) = arg.get_long() else { continue };
            let tries: Vec<Vec<String>> = if arg.get_action().takes_values() {
                ["3", "0.5", "7", "alpaca", "jsonl", "text"]
                    .iter()
                    .map(|v| vec![format!("--{long}"), v.to_string()])
                    .collect()
            } else {
                vec![vec![format!("--{long}")]]
            };
            for extra in tries {
                if let Some(changed) = method(&extra) {
                    assert_eq!(changed, default, "{extra:?} changes the method: list it in METHOD_FLAGS");
                }
            }
        }
    }

    #[test]
    fn each_role_thinks_as_its_own_flags_say_else_as_the_shared_ones() {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let m = method(&words(&["--thinking", "off", "--answer-thinking", "on", "--score-difficulty"])).unwrap();
        assert_eq!(m["evolve_sampling"]["thinking"], serde_json::json!({"enabled": false}));
        assert_eq!(m["answer_sampling"]["thinking"], serde_json::json!({"enabled": true}));
        assert_eq!(m["judge_sampling"]["thinking"], serde_json::json!({"enabled": false}));
        assert_eq!(m["difficulty"]["thinking"], m["judge_sampling"]["thinking"], "the scorer thinks as the judge");
        let plain = method(&[]).unwrap();
        assert!(plain["evolve_sampling"].get("thinking").is_none(), "unset: settings as runs always wrote them");
        // An effort is a server's: the embedded engine has none.
        assert!(method(&words(&["--reasoning-effort", "high"])).is_none());
        let served = method(&words(&[
            "--endpoint",
            "http://127.0.0.1:9/v1",
            "--reasoning-effort",
            "high",
            "--judge-reasoning-effort",
            "low",
        ]))
        .unwrap();
        assert_eq!(served["answer_sampling"]["thinking"], serde_json::json!({"effort": "high"}));
        assert_eq!(served["judge_sampling"]["thinking"], serde_json::json!({"effort": "low"}));
    }

    #[test]
    fn a_setting_is_defaulted_only_when_none_of_its_flags_is_given() {
        let defaulted = defaulted_method_settings(&["temperature".into(), "no_dedup".into()]);
        assert!(!defaulted.contains("evolve_sampling") && !defaulted.contains("answer_sampling"));
        assert!(!defaulted.contains("dedup"));
        assert!(defaulted.contains("rounds") && defaulted.contains("judge_sampling"));
    }
}
