//! `evol report DIR... -o report.html`: the library's report page.

use crate::cli::ReportArgs;
use crate::printer::Printer;
use crate::settings::FromArgs;

pub fn report(args: ReportArgs) -> anyhow::Result<()> {
    let printer = Printer::new(args.quiet);
    let settings = evol::settings::ReportSettings::from_args(args)?;
    evol::jobs::report::report(&settings, &printer).map(|_page| ())
}
