//! `adapter-server` binary: parse arguments, set up logging to stderr, run, map the result
//! to the exit code (the hook's 0 / 1 / 2 are meaningful to OpenVPN).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = adapter_server::cli::Cli::parse();
    if let Some(ca) = &cli.common.ca_file {
        service_api::tls::set_default_ca_file(ca.clone());
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    match adapter_server::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            tracing::error!("{:#}", anyhow::Error::from(e));
            ExitCode::from(1)
        }
    }
}
