//! `evol dedup IN -o OUT`: flags to settings, the library's dedup, the
//! summary on stdout (or, with `--json`, on stderr with the JSON on
//! stdout).

use crate::cli::DedupArgs;
use crate::settings::{DedupSettings, FromArgs};

pub fn dedup(args: DedupArgs) -> anyhow::Result<()> {
    let json = args.json;
    let settings = DedupSettings::from_args(args)?;
    if settings.explain {
        crate::stdout(&evol::jobs::dedup::explain(&settings))?;
    }
    if settings.files.is_none() {
        return Ok(());
    }
    let report = evol::jobs::dedup::dedup(&settings, &crate::printer::Printer::new(false))?;
    let text = evol_text::shown(&report.text()).into_owned();
    if json {
        crate::printer::err_text(&text);
        return crate::stdout(&(serde_json::to_string(&report)? + "\n"));
    }
    crate::stdout(&text)
}

/// `evol decontaminate IN --benchmark FILE... -o OUT`: flags to settings,
/// the library's job, `--json` on stdout.
pub fn decontaminate(args: crate::cli::DecontaminateArgs) -> anyhow::Result<()> {
    use evol::settings::DecontaminateSettings;
    let json = args.json;
    let settings = DecontaminateSettings::from_args(args)?;
    let report = evol::jobs::decontaminate::decontaminate(&settings, &crate::printer::Printer::new(false))?;
    if json {
        crate::stdout(&(serde_json::to_string(&report)? + "\n"))?;
    }
    Ok(())
}
