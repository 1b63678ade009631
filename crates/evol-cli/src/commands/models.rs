//! `evol models pull|list`: the embedded engine's model cache.

use crate::cli::ModelsCommand;

pub fn models(command: ModelsCommand) -> anyhow::Result<()> {
    let cache = evol_models::cache_dir()?;
    match command {
        ModelsCommand::Pull { name, force } => {
            let model = evol_models::find(&name)?;
            let options = evol_models::PullOptions { force, ..Default::default() };
            let path = evol_models::pull(&cache, model, &options, &mut |step| eprintln!("evol: {step}"))?;
            eprintln!("evol: `{name}` is ready");
            println!("{}", path.display());
        }
        ModelsCommand::List => {
            println!("{:<24} {:>8}  {:<8} description", "name", "size", "cached");
            for l in evol_models::list(&cache) {
                println!(
                    "{:<24} {:>6}MB  {:<8} {}",
                    l.model.name,
                    l.model.size / 1_000_000,
                    if l.cached { "yes" } else { "no" },
                    l.model.description
                );
            }
            eprintln!("cache: {}", cache.display());
        }
    }
    Ok(())
}
