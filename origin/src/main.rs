//! `c`: parse the command line, set up logging, resolve the configuration and keep a tunnel open.

use common::cli;
use origin::config::{self, App, Cli};
use tokio_util::sync::CancellationToken;

fn main() {
    let cli: Cli = cli::parse_or_exit();
    common::logging::init(cli.log_format);
    common::tls::install_default_provider();
    let runtime = common::runtime::build(cli.threads, Some(common::tuning::MAX_BLOCKING_THREADS));
    common::runtime::run_main(runtime, async_main(cli))
}

async fn async_main(cli: Cli) -> i32 {
    let settings = match config::resolve(&cli) {
        Ok(s) => s,
        Err(e) => cli::usage_error(e.flag, e.message),
    };
    if matches!(settings.trust, common::tls::Trust::Insecure) {
        tracing::warn!(
            "--insecure: the proxy's certificate is NOT verified; anyone on the network path can read and change \
             every request and the token. Use --ca or a proxy with a real certificate."
        );
    }
    for note in &settings.notes {
        tracing::info!("{note}");
    }
    match &settings.app {
        App::Files(files) => {
            tracing::info!(root = %files.root().display(), origin = %settings.name, "serving files");
            if files.root_holds_keys() {
                tracing::warn!(
                    root = %files.root().display(),
                    "the root holds key material (a file named token or *-key.pem): nothing in it will be served"
                );
            }
        }
        App::Upstream(up) => {
            tracing::info!(upstream = %up.url(), origin = %settings.name, "forwarding to a local service")
        }
    }
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        common::shutdown::signal().await;
        stop.cancel();
    });
    // After a burst, drop the kept file-chunk buffers and give the heap's free pages back.
    let app = settings.app.clone();
    tokio::spawn(common::memory::release_when_quiet(move || app.release_kept_memory()));
    match origin::run(settings, shutdown).await {
        Ok(()) => {
            tracing::info!("origin stopped");
            0
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "origin failed");
            1
        }
    }
}
