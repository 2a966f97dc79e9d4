use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = adapter_client::cli::Cli::parse();
    if let Some(ca) = &cli.ca_file {
        service_api::tls::set_default_ca_file(ca.clone());
    }
    adapter_client::cli::init_tracing(cli.log_filter());
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("adapter-client: could not start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(adapter_client::cli::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = e.exit_code();
            tracing::error!("{:#}", anyhow::Error::from(e));
            ExitCode::from(code)
        }
    }
}
