//! `evol report DIR... -o report.html`: the library's report page.

use crate::cli::ReportArgs;
use crate::printer::Printer;

pub fn report(args: ReportArgs) -> anyhow::Result<()> {
    let printer = Printer::new(args.quiet);
    let settings = evol::settings::ReportSettings { dirs: args.dirs, output: args.output };
    evol::jobs::report::report(&settings, &printer).map(|_page| ())
}
