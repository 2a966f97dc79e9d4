use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match core_lite::config::parse_cli() {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("core-lite: error: {e:#}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CORE_LITE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match core_lite::cli::run(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("core-lite: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
