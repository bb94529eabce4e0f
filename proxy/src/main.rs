//! `p`: parse the command line, set up logging, TLS and the token, bind, run until a signal.

use common::cli::{self, EX_USAGE};
use proxy::config::{self, Cli, Command};
use tokio_util::sync::CancellationToken;

fn main() {
    let cli: Cli = cli::parse_or_exit();
    common::logging::init(cli.log_format);
    common::tls::install_default_provider();
    let runtime = common::runtime::build(cli.threads, None);
    common::runtime::run_main(runtime, async_main(cli))
}

async fn async_main(cli: Cli) -> i32 {
    if let Some(Command::Status) = cli.command {
        return match proxy::admin::fetch_status(cli.admin_listen).await {
            Ok(status) => {
                print!("{}", proxy::admin::status_table(&status));
                0
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                1
            }
        };
    }
    let settings = match config::resolve(&cli) {
        Ok(s) => s,
        Err(e) => cli::usage_error(e.flag, e.message),
    };
    let listeners = match proxy::Listeners::bind(cli.listen, cli.tunnel_listen, cli.admin_listen).await {
        Ok(l) => l,
        Err((flag, e)) => {
            eprintln!("error: cannot listen on the {flag} address: {e}");
            return if e.kind() == std::io::ErrorKind::InvalidInput { EX_USAGE } else { 1 };
        }
    };
    for note in &settings.notes {
        tracing::info!("{note}");
    }
    let scheme = if settings.frontend_tls.is_some() { "https" } else { "http" };
    tracing::info!(
        front_end = %format!("{scheme}://{}", local(&listeners.frontend)),
        tunnel = %local(&listeners.tunnel),
        admin = %format!("http://{}", local(&listeners.admin)),
        "proxy listening"
    );
    let proxy = proxy::Proxy::with_limits(settings.token, settings.limits);
    let tls = proxy::Tls { tunnel: settings.tunnel_tls, frontend: settings.frontend_tls };
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        common::shutdown::signal().await;
        stop.cancel();
    });
    proxy::run(proxy, listeners, tls, shutdown).await;
    tracing::info!("proxy stopped");
    0
}

fn local(listener: &tokio::net::TcpListener) -> String {
    listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|e| format!("unknown ({e})"))
}
