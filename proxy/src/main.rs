//! `p`: parse the command line, set up logging, TLS, the token and the config, bind, run until
//! a signal; or one of the subcommands (`status`, `check-config`, `hash-password`).

use common::cli::{self, EX_USAGE};
use proxy::config::{self, Cli, Command, LoadError};
use std::io::{BufRead, IsTerminal};
use tokio_util::sync::CancellationToken;

fn main() {
    let cli: Cli = cli::parse_or_exit();
    match &cli.command {
        Some(Command::CheckConfig { file }) => std::process::exit(check_config(file)),
        Some(Command::HashPassword) => std::process::exit(hash_password()),
        _ => {}
    }
    let log_guard = match &cli.command {
        Some(Command::Status { .. }) => {
            common::logging::init(cli.log_format);
            common::logging::LogGuard::default()
        }
        _ => match common::logging::init_with_access(cli.log_format, &cli.access_log) {
            Ok(guard) => guard,
            Err(e) => cli::usage_error("--access-log", format!("cannot open {} to append to: {e}", cli.access_log)),
        },
    };
    common::tls::install_default_provider();
    let runtime = common::runtime::build(cli.threads, None);
    common::runtime::run_main(runtime, async move {
        let code = async_main(cli).await;
        // Write out what the access-log file still has queued.
        drop(log_guard);
        code
    })
}

/// `p check-config FILE`: 0 when good, 64 and `file:line: key: message` when not. Token files
/// are read; a missing default token is not an error here (the running proxy has one).
fn check_config(file: &std::path::Path) -> i32 {
    match proxy::config_file::load(file, &common::Secret::new("check-config: any default token")) {
        Ok(compiled) => {
            println!("{}: ok ({} routes)", file.display(), compiled.table.routes.len());
            0
        }
        Err(e) => {
            eprintln!("{e}");
            EX_USAGE
        }
    }
}

/// `p hash-password`: a password from the terminal (no echo) or one line of standard input.
fn hash_password() -> i32 {
    let password = if std::io::stdin().is_terminal() {
        match rpassword::prompt_password("password: ") {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: cannot read the password: {e}");
                return 1;
            }
        }
    } else {
        let mut line = String::new();
        if let Err(e) = std::io::stdin().lock().read_line(&mut line) {
            eprintln!("error: cannot read the password: {e}");
            return 1;
        }
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    if password.is_empty() {
        eprintln!("error: the password is empty");
        return EX_USAGE;
    }
    match proxy::policy::hash_password(&password) {
        Ok(hash) => {
            println!("{hash}");
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

async fn async_main(cli: Cli) -> i32 {
    if let Some(Command::Status { watch, interval }) = cli.command {
        return proxy::admin::status_command(cli.admin_listen, watch.then_some(interval)).await;
    }
    // Bind first: a proxy that cannot start (a second `p` in the same directory, a port in
    // use) must fail before it writes anything into --certs-dir.
    let listeners = match proxy::Listeners::bind(cli.listen, cli.tunnel_listen, cli.admin_listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return if e.source.kind() == std::io::ErrorKind::InvalidInput { EX_USAGE } else { 1 };
        }
    };
    let settings = match config::resolve(&cli) {
        Ok(s) => s,
        Err(LoadError::Flag(e)) => cli::usage_error(e.flag, e.message),
        Err(LoadError::Config(e)) => {
            eprintln!("error: {e}");
            return EX_USAGE;
        }
    };
    for note in &settings.notes {
        tracing::info!("{note}");
    }
    let config::Settings { sources, loaded, limits, ca, cert_names, .. } = settings;
    let scheme = if loaded.tls.frontend.is_some() { "https" } else { "http" };
    tracing::info!(
        front_end = %format!("{scheme}://{}", local(&listeners.frontend)),
        tunnel = %local(&listeners.tunnel),
        admin = %format!("http://{}", local(&listeners.admin)),
        routes = loaded.table.routes.len(),
        "proxy listening"
    );
    if let Ok(tunnel) = listeners.tunnel.local_addr() {
        let command = config::origin_command(tunnel, &cert_names, ca.as_deref(), &sources.token);
        tracing::info!("next: connect an origin (here, or elsewhere with copies of the CA and token files): {command}");
    }
    let tls = loaded.tls.clone();
    let proxy = proxy::Proxy::with_config(loaded.credentials, loaded.table, limits);
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        common::shutdown::signal().await;
        stop.cancel();
    });
    tokio::spawn(proxy::reload::watch(proxy.clone(), sources, shutdown.clone()));
    // After a burst, give the heap's free pages back (see common::memory).
    tokio::spawn(common::memory::release_when_quiet(|| false));
    proxy::run(proxy, listeners, tls, shutdown).await;
    tracing::info!("proxy stopped");
    0
}

fn local(listener: &tokio::net::TcpListener) -> String {
    listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|e| format!("unknown ({e})"))
}
