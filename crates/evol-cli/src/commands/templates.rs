//! `evol templates DIR`: write the built-in templates out for editing.

use anyhow::{bail, Context};
use evol_core::Templates;

use crate::cli::TemplatesArgs;

pub fn templates(args: TemplatesArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir).with_context(|| format!("cannot create `{}`", args.dir.display()))?;
    let sources: Vec<_> = Templates::builtin_sources().collect();
    if !args.force {
        if let Some((name, _)) = sources.iter().find(|(name, _)| args.dir.join(name).exists()) {
            bail!("`{}` already exists; pass --force to overwrite", args.dir.join(name).display());
        }
    }
    for (name, text) in &sources {
        let path = args.dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write `{}`", path.display()))?;
        crate::stdout(&format!("{}\n", path.display()))?;
    }
    crate::say!(
        "evol: wrote {} template files; edit them and pass `--templates {}` to `evol run` (delete the ones you keep as they are)",
        sources.len(),
        args.dir.display()
    );
    Ok(())
}
