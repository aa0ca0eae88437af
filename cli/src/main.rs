//! The `pulpish` command. `serve` runs the server; client commands come with the CLI issue.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "pulpish", version, about = "A container content manager with Pulp 3's container API")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the management API, the /v2 content app and the task workers on one port.
    Serve(pulpish_server::Config),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(config) => serve(config),
    }
}

fn serve(config: pulpish_server::Config) -> anyhow::Result<()> {
    pulpish_server::init_logging(&config.log_format);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = std::net::TcpListener::bind(config.bind)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.bind))?;
        let state = pulpish_server::prepare(config).await?;
        let running = pulpish_server::start(state, listener).await?;
        tracing::info!(addr = %running.addr, "pulpish is serving: API at /pulp/api/v3/, registry at /v2/");
        running.server.await?;
        Ok(())
    })
}
