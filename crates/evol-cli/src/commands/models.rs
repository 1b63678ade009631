//! `evol models pull|list`: the embedded engine's model cache.

use std::fmt::Write as _;

use crate::cli::ModelsCommand;

pub fn models(command: ModelsCommand) -> anyhow::Result<()> {
    let cache = evol_models::cache_dir()?;
    match command {
        ModelsCommand::Pull { name, force } => {
            let model = evol_models::find(&name)?;
            let options = evol_models::PullOptions { force, ..Default::default() };
            let path = evol_models::pull(&cache, model, &options, &mut |step| crate::say!("evol: {step}"))?;
            crate::say!("evol: `{name}` is ready");
            crate::stdout(&format!("{}\n", path.display()))?;
        }
        ModelsCommand::List => {
            let mut out = format!("{:<24} {:>8}  {:<8} description\n", "name", "size", "cached");
            for l in evol_models::list(&cache) {
                let _ = writeln!(
                    out,
                    "{:<24} {:>6}MB  {:<8} {}",
                    l.model.name,
                    l.model.size / 1_000_000,
                    if l.cached { "yes" } else { "no" },
                    l.model.description
                );
            }
            crate::stdout(&out)?;
            crate::say!("cache: {}", cache.display());
        }
    }
    Ok(())
}
