//! The `pulpish` command: `serve` runs the server; every other command drives its REST API.

mod client;
mod commands;
mod output;
mod profile;
mod pull_through;
mod schedule;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

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
#[expect(clippy::large_enum_variant, reason = "parsed once per process")]
enum Command {
    /// Run the management API, the /v2 content app and the task workers on one port.
    #[command(after_help = "Example:\n  pulpish serve --bind 0.0.0.0:24817 --data-dir /var/lib/pulpish")]
    Serve(Serve),
    #[command(flatten)]
    Client(commands::Command),
}

#[derive(Args)]
struct Serve {
    /// TOML file with serve's settings, keyed by the long flags with `_` (`data_dir = "/srv"`);
    /// flags and PULPISH_* variables override it.
    #[arg(long, env = "PULPISH_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check the settings, print the effective ones as TOML (secrets redacted) and exit.
    #[arg(long)]
    check_config: bool,
    #[command(flatten)]
    settings: pulpish_server::Config,
}

fn main() {
    let (cli, matches) = parse();
    let result = match cli.command {
        Command::Serve(args) if args.check_config => {
            let given = matches.subcommand_matches("serve").expect("serve was parsed");
            print!("{}", pulpish_server::config::effective_settings(given));
            Ok(())
        }
        Command::Serve(args) => serve(args.settings).map_err(|e| client::CliError::Other(format!("{e:#}"))),
        Command::Client(command) => commands::run(command, &cli.conn, cli.format),
    };
    if let Err(e) = result {
        eprintln!("Error: {e}");
        std::process::exit(e.exit_code());
    }
}

/// The command line; for `serve`, what flags and PULPISH_* variables leave unset comes from the
/// --config file and the `*_file` secrets, parsed by the same rules.
fn parse() -> (Cli, ArgMatches) {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let command = Cli::command();
    let mut layer = pulpish_server::config::FileLayer::default();
    // A first, lenient pass learns what the command line and the environment set; a wrong
    // flag is reported by the second one.
    if let Ok(first) = command.clone().ignore_errors(true).try_get_matches_from(&argv) {
        if let Some(("serve", given)) = first.subcommand() {
            let file = given.get_one::<PathBuf>("config").map(PathBuf::as_path);
            layer = pulpish_server::config::FileLayer::read(given, file).unwrap_or_else(|e| config_error(&e));
        }
    }
    let matches = match command.try_get_matches_from(argv.into_iter().chain(layer.args())) {
        Ok(matches) => matches,
        Err(e) => match layer.explain(&e) {
            Some(refused) => config_error(&refused),
            None => e.exit(),
        },
    };
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    (cli, matches)
}

fn config_error(e: &pulpish_server::config::ConfigFileError) -> ! {
    eprintln!("Error: {e}");
    std::process::exit(2)
}

/// Allocations this large or larger are mapped on their own and unmapped when freed.
const MMAP_THRESHOLD: libc::c_int = 4 * 1024 * 1024;
/// Free heap kept at the top of an arena for the next allocations (a download churns through
/// a few MiB of buffers); what is left after a burst is given back by `memory::release_freed_heap`.
const TRIM_THRESHOLD: libc::c_int = 8 * 1024 * 1024;

#[expect(unsafe_code, reason = "mallopt has no safe wrapper")]
fn tune_malloc() {
    // glibc gives each thread that allocates its own arena; with the blocking pools' threads
    // that is tens of MiB of mostly idle heap. Two arenas are plenty for this server.
    // glibc also raises its mapping threshold to the largest mapped chunk freed, and the trim
    // threshold to twice that: after one argon2 password hash (19 MiB) every later allocation
    // under 19 MiB came from the heap and freed heap was never given back (14 MiB more resident
    // after the first authenticated request). A fixed threshold stops both: buffers of the
    // transfer paths (up to 1 MiB) stay in the heap, big one-off blocks are unmapped when freed,
    // and free heap at the top past TRIM_THRESHOLD goes back to the system.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: called before any other thread exists; mallopt only tunes the allocator.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

fn serve(config: pulpish_server::Config) -> anyhow::Result<()> {
    tune_malloc();
    pulpish_server::init_logging(&config.log_format);
    let runtime = tokio::runtime::Runtime::new()?;
    let served: anyhow::Result<pulpish_server::shutdown::ShutdownReport> = runtime.block_on(async move {
        let listener = std::net::TcpListener::bind(config.bind)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.bind))?;
        let state = pulpish_server::prepare(config).await?;
        let running = pulpish_server::start(state, listener).await?;
        tracing::info!(addr = %running.addr, "pulpish is serving: API at /pulp/api/v3/, registry at /v2/");
        Ok(running.run_until_stopped().await?)
    });
    if let Some(code) = served.as_ref().ok().and_then(pulpish_server::shutdown::ShutdownReport::exit_code) {
        // A second signal: the operator wants out now, not after the runtime winds down.
        std::process::exit(code);
    }
    // Shutdown has waited for what it may; a database call stuck on a dead connection must not
    // hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    served.map(|_| ())
}
