//! Settings of the evaluation commands: `answer`, `judge` and `arena`.

use std::path::{Path, PathBuf};

use evol_llm::Sampling;

use super::{non_empty, sampling, usage, FromArgs};
use super::{AnswerSettings, ArenaSettings, ArenaSource, EvalModel, JudgeSettings, ModelSettings, UsageError};
use crate::cli::{AnswerArgs, ArenaArgs, AttemptArgs, JudgeArgs};

/// The one model an evaluation command calls: `--model`, or the command's
/// own flag for it (`--judge-model`), not both.
pub(super) fn eval_model(
    mut model: ModelSettings,
    named: Option<(&str, &Option<String>)>,
    retry_failed: bool,
    sampling: Sampling,
    seed: u64,
) -> Result<EvalModel, UsageError> {
    if let Some((flag, value)) = named {
        if let Some(name) = non_empty(flag, value)? {
            if model.model.as_ref().is_some_and(|m| m != &name) {
                return Err(usage(format!("pass {flag} or --model, not both (the command calls one model)")));
            }
            model.model = Some(name);
        }
    }
    let execution = model.execution(retry_failed);
    let sampling = Sampling { thinking: model.thinking, ..sampling };
    Ok(EvalModel { model, execution, sampling, seed })
}

impl FromArgs<AnswerArgs> for AnswerSettings {
    type Error = UsageError;

    fn from_args(args: AnswerArgs) -> Result<AnswerSettings, UsageError> {
        let AnswerArgs {
            testset,
            output,
            name,
            system,
            temperature,
            top_p,
            max_tokens,
            limit,
            seed,
            samples,
            reference_field,
            pick,
            judge_model,
            format,
            attempt: AttemptArgs { fresh, retry_failed },
            models,
            quiet: _,
        } = args;
        if !(1..=64).contains(&samples) {
            return Err(usage("--answers must be between 1 and 64"));
        }
        let reference_field = super::field_name(reference_field.as_deref(), "--reference-field")?;
        use evol::settings::Pick;
        let pick = pick.unwrap_or(if reference_field.is_some() { Pick::First } else { Pick::Score });
        if samples > 1 && reference_field.is_none() && pick != Pick::Score {
            return Err(usage(
                "--answers K without --reference-field needs --pick score: nothing else tells the answers apart",
            ));
        }
        if samples == 1 && (reference_field.is_some() || judge_model.is_some()) {
            return Err(usage("--reference-field and --judge-model choose among several answers: give --answers K"));
        }
        let judge_model = non_empty("--judge-model", &judge_model)?;

        let sampling = sampling("", temperature, top_p, max_tokens)?;
        if limit == Some(0) {
            return Err(usage("--limit must be at least 1"));
        }
        let name = non_empty("--name", &name)?;
        let system = non_empty("--system", &system)?;
        let model = ModelSettings::from_args(models)?;
        if judge_model.is_some() && matches!(model.backend, super::Backend::Embedded(_)) {
            return Err(usage("--judge-model needs --endpoint (the embedded engine runs one model)"));
        }
        Ok(AnswerSettings {
            testset,
            output,
            fresh,
            format,
            name,
            system,
            limit,
            eval: eval_model(model, None, retry_failed, sampling, seed)?,
            samples,
            reference_field,
            pick,
            judge_model,
        })
    }
}

fn bootstrap_rounds(rounds: usize) -> Result<usize, UsageError> {
    if rounds > 100_000 {
        return Err(usage("--bootstrap must be at most 100000"));
    }
    Ok(rounds)
}

impl FromArgs<JudgeArgs> for JudgeSettings {
    type Error = UsageError;

    fn from_args(args: JudgeArgs) -> Result<JudgeSettings, UsageError> {
        let JudgeArgs {
            testset,
            candidate,
            reference,
            output,
            judge_model,
            single_order,
            temperature,
            max_tokens,
            bootstrap,
            seed,
            format,
            attempt: AttemptArgs { fresh, retry_failed },
            models,
            quiet: _,
            json: _,
        } = args;
        let sampling = sampling("", temperature, 1.0, max_tokens)?;
        let model = ModelSettings::from_args(models)?;
        Ok(JudgeSettings {
            testset,
            candidate,
            reference,
            output,
            fresh,
            format,
            both_orders: !single_order,
            bootstrap: bootstrap_rounds(bootstrap)?,
            eval: eval_model(model, Some(("--judge-model", &judge_model)), retry_failed, sampling, seed)?,
        })
    }
}

impl FromArgs<ArenaArgs> for ArenaSettings {
    type Error = UsageError;

    fn from_args(args: ArenaArgs) -> Result<ArenaSettings, UsageError> {
        let ArenaArgs {
            answers,
            battles,
            output,
            judge_model,
            pairs_per_question,
            bootstrap,
            seed,
            anchor,
            style_control,
            target,
            learn,
            min_margin,
            temperature,
            max_tokens,
            attempt: AttemptArgs { fresh, retry_failed },
            models,
            quiet: _,
            json: _,
        } = args;
        let source = match (answers.is_empty(), battles.is_empty()) {
            (false, true) => {
                let files: Vec<(Option<String>, PathBuf)> = answers
                    .iter()
                    .map(|a| match a.split_once('=') {
                        Some((name, path)) if !name.trim().is_empty() && !Path::new(a).exists() => {
                            (Some(name.trim().to_string()), PathBuf::from(path))
                        }
                        _ => (None, PathBuf::from(a)),
                    })
                    .collect();
                if files.len() < 2 {
                    return Err(usage("--answers needs the answers of at least two models"));
                }
                ArenaSource::Answers(files)
            }
            (true, false) => {
                if learn.is_some() {
                    return Err(usage(
                        "--learn needs the answers (--answers): battle logs hold the scores, not the texts",
                    ));
                }
                ArenaSource::Battles(battles)
            }
            _ => return Err(usage("pass the models' answers (--answers A B ...) or battle logs (--battles FILE ...)")),
        };
        if pairs_per_question == Some(0) {
            return Err(usage("--pairs-per-question must be at least 1"));
        }
        let anchor = anchor
            .as_deref()
            .map(|a| {
                let (model, rating) =
                    a.rsplit_once('=').ok_or_else(|| usage("--anchor takes MODEL=RATING, e.g. gpt-4=1200"))?;
                let rating: f64 = rating
                    .trim()
                    .parse()
                    .ok()
                    .filter(|r: &f64| r.is_finite())
                    .ok_or_else(|| usage(format!("--anchor: `{rating}` is not a rating")))?;
                Ok::<_, UsageError>((model.trim().to_string(), rating))
            })
            .transpose()?;
        if !(min_margin.is_finite() && min_margin >= 0.0) {
            return Err(usage("--min-margin must be a number of at least 0"));
        }
        let learn = match (non_empty("--target", &target)?, learn) {
            (Some(target), Some(dir)) => Some((target, dir)),
            _ => None,
        };
        let sampling = sampling("", temperature, 1.0, max_tokens)?;
        let model = ModelSettings::from_args(models)?;
        Ok(ArenaSettings {
            source,
            output,
            fresh,
            pairs_per_question,
            bootstrap: bootstrap_rounds(bootstrap)?,
            anchor,
            style_control,
            learn,
            min_margin,
            eval: eval_model(model, Some(("--judge-model", &judge_model)), retry_failed, sampling, seed)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `evol answer`'s settings from its flags, or the usage error.
    fn answer(extra: &[&str]) -> Result<AnswerSettings, String> {
        use clap::Parser;
        let words = ["evol", "answer", "set.jsonl", "-o", "out", "--endpoint", "http://127.0.0.1:9/v1"];
        let cli = crate::cli::Cli::try_parse_from(words.iter().chain(extra)).map_err(|e| e.to_string())?;
        let crate::cli::Command::Answer(args) = cli.command else { unreachable!("an answer command") };
        AnswerSettings::from_args(*args).map_err(|e| e.to_string())
    }

    #[test]
    fn k_answers_need_something_to_tell_them_apart() {
        use evol::settings::Pick;
        let err = answer(&["--answers", "3", "--pick", "first"]).err().unwrap();
        assert!(err.contains("needs --pick score"), "{err}");
        assert!(answer(&["--reference-field", "answer"]).is_err(), "a reference needs several answers");
        let err = answer(&["--answers", "2", "--pick", "best"]).err().unwrap();
        assert!(err.contains("first") && err.contains("score"), "the choices are listed: {err}");
        // The default pick: the first correct with a reference, else the
        // judge's; `--samples` is the same flag.
        assert_eq!(answer(&["--answers", "3"]).unwrap().pick, Pick::Score);
        let checked = answer(&["--samples", "3", "--reference-field", "answer"]).unwrap();
        assert_eq!((checked.samples, checked.pick), (3, Pick::First));
    }
}
