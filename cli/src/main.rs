//! The `pulpish` command: `serve` runs the server; every other command drives its REST API.

mod client;
mod commands;
mod output;
mod profile;

use clap::{Args, Parser, Subcommand};

use output::Format;

const EXIT_CODES: &str = "Exit codes: 0 ok, 1 error or failed task, 2 usage, 3 server unreachable, \
4 authentication failed, 5 not found, 6 invalid input.";

#[derive(Parser)]
#[command(name = "pulpish", version, about = "A container content manager with Pulp 3's container API", after_help = EXIT_CODES)]
struct Cli {
    #[command(flatten)]
    conn: Connection,
    /// Output: readable tables, or the API's JSON for scripts.
    #[arg(long, global = true, value_enum, default_value = "table")]
    format: Format,
    #[command(subcommand)]
    command: Command,
}

/// Where the server is and who we are (flags, then PULPISH_* variables, then the profile).
#[derive(Args, Clone)]
pub struct Connection {
    /// Server URL [default: http://127.0.0.1:24817, or the profile's]
    #[arg(long, global = true, env = "PULPISH_SERVER")]
    server: Option<String>,
    /// [default: admin, or the profile's]
    #[arg(long, global = true, env = "PULPISH_USERNAME")]
    username: Option<String>,
    #[arg(long, global = true, env = "PULPISH_PASSWORD", hide_env_values = true)]
    password: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the management API, the /v2 content app and the task workers on one port.
    #[command(after_help = "Example:\n  pulpish serve --bind 0.0.0.0:24817 --data-dir /var/lib/pulpish")]
    Serve(pulpish_server::Config),
    #[command(flatten)]
    Client(commands::Command),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(config) => serve(config).map_err(|e| client::CliError::Other(format!("{e:#}"))),
        Command::Client(command) => commands::run(command, &cli.conn, cli.format),
    };
    if let Err(e) = result {
        eprintln!("Error: {e}");
        std::process::exit(e.exit_code());
    }
}

#[expect(unsafe_code, reason = "mallopt has no safe wrapper")]
fn limit_malloc_arenas() {
    // glibc gives each thread that allocates its own arena; with the blocking pools' threads
    // that is tens of MiB of mostly idle heap. Two arenas are plenty for this server.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: called before any other thread exists; mallopt only tunes the allocator.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn serve(config: pulpish_server::Config) -> anyhow::Result<()> {
    limit_malloc_arenas();
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
