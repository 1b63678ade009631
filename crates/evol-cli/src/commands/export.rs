//! `evol export OUT [--to PATH --format F]`: flags to settings, the
//! library's export, `--json` on stdout.

use crate::cli::ExportArgs;
use crate::printer::Printer;
use crate::settings::FromArgs;

pub fn export(args: ExportArgs) -> anyhow::Result<()> {
    let json = args.json;
    let settings = evol::settings::ExportSettings::from_args(args)?;
    let report = evol::jobs::export(settings, &Printer::new(false))?;
    if json {
        crate::stdout(&format!("{}\n", serde_json::to_string(&report)?))?;
    }
    Ok(())
}
