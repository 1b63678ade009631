//! `evol serve`: the embedded engine behind an OpenAI-compatible HTTP API
//! (the `evol-serve` library), on the address and with the model the flags
//! name.

use crate::cli::ServeArgs;

#[cfg(not(feature = "embedded"))]
pub async fn serve(_args: ServeArgs) -> anyhow::Result<()> {
    anyhow::bail!("this evol was built without the embedded engine (cargo feature `embedded`)")
}

#[cfg(feature = "embedded")]
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;

    let engine_settings = crate::settings::EngineSettings::from_args(args.engine)?;
    let config = evol_serve::ServeConfig {
        api_key: args.api_key,
        max_tokens_cap: args.max_tokens_cap.max(1),
        max_body_bytes: args.max_body_bytes,
    };
    let (name, path) = crate::local::resolve(Some(&args.model), &engine_settings, args.quiet)?;
    let engine = crate::local::start(name, path, &engine_settings)?;
    if !args.quiet {
        eprintln!("evol: embedded engine: {}", crate::local::describe(&engine));
    }
    let listener =
        tokio::net::TcpListener::bind(&args.addr).await.with_context(|| format!("cannot listen on `{}`", args.addr))?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}/v1");
    std::io::stdout().flush()?;
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    evol_serve::serve(listener, evol_serve::app(engine, config), shutdown).await?;
    Ok(())
}
