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

    let engine_settings = <evol::settings::EngineSettings as crate::settings::FromArgs<_>>::from_args(args.engine)?;
    let seconds = |flag: &str, v: f64| {
        if v.is_finite() && v > 0.0 && v <= 1e7 {
            Ok(std::time::Duration::from_secs_f64(v))
        } else {
            Err(crate::settings::UsageError(format!("{flag} must be a positive number of seconds, at most 10000000")))
        }
    };
    if args.max_connections == 0 {
        return Err(crate::settings::UsageError("--max-connections must be at least 1".into()).into());
    }
    let limits = evol_serve::Limits {
        header_timeout: seconds("--header-timeout", args.header_timeout)?,
        max_connections: args.max_connections,
    };
    let config = evol_serve::ServeConfig {
        api_key: args.api_key,
        max_tokens_cap: args.max_tokens_cap.max(1),
        max_body_bytes: args.max_body_bytes,
        body_timeout: seconds("--body-timeout", args.body_timeout)?,
    };
    let (name, path) =
        evol::engine::resolve(Some(&args.model), &engine_settings, &crate::printer::Printer::new(args.quiet))?;
    let engine = evol::engine::start(name, path, &engine_settings)?;
    if !args.quiet {
        crate::say!("evol: embedded engine: {}", evol::engine::describe(&engine));
    }
    let listener =
        tokio::net::TcpListener::bind(&args.addr).await.with_context(|| format!("cannot listen on `{}`", args.addr))?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}/v1");
    std::io::stdout().flush()?;
    evol_serve::serve_with(listener, evol_serve::app(engine, config), crate::printer::stop_signal(), limits).await?;
    Ok(())
}
