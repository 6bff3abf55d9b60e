//! `boxoffice`: run every service in one process (`serve`), or manage accounts (`admin`).

use anyhow::Context;
use boxoffice::app::{AccountSpec, Application, ensure_admin, open_auth};
use boxoffice::cli::{AdminCommand, Cli, Command};
use clap::Parser;
use secrecy::SecretString;

/// mimalloc instead of glibc's allocator: a server answering tens of thousands of small requests
/// per second allocates and frees on every core, and glibc's per-thread arenas both cost more per
/// call and keep freed memory after a burst (see docs/performance.md for the before/after).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    boxoffice_shared::telemetry::init_tracing(cli.log_format.into());
    match cli.command {
        Command::Serve(args) => {
            // Listen for SIGTERM/Ctrl-C from the start, so that one arriving during start-up
            // still shuts down gracefully.
            let stop_signal = boxoffice_shared::shutdown::signal();
            let config = args.into_config()?;
            let demo = config.demo;
            let app = Application::build(config).await?;
            if demo {
                println!(
                    "{}",
                    boxoffice::demo::guide(&format!("http://{}", app.address()))
                );
            }
            app.run_until_stopped(stop_signal).await
        }
        Command::Keygen(args) => {
            boxoffice_shared::keys::write_key_pair(&args.private_key, &args.public_key)?;
            println!(
                "wrote {} (private: give it to auth only, as --jwt-key-file) and {} (public: \
                 --jwt-public-key-file for every other service)",
                args.private_key.display(),
                args.public_key.display()
            );
            Ok(())
        }
        Command::Admin(AdminCommand::Create(args)) => {
            let spec = AccountSpec {
                email: args.email,
                password: SecretString::from(args.password),
            };
            // Any address: nothing is served, only the stores are opened.
            let config = args.storage.into_config(([127, 0, 0, 1], 0).into())?;
            let (auth, _, store) = open_auth(&config).await.context("opening the auth store")?;
            ensure_admin(&auth, &spec).await?;
            store.close().await;
            println!(
                "admin account {} is ready",
                spec.email.trim().to_lowercase()
            );
            Ok(())
        }
        Command::Loadtest(args) => {
            let json = args.json;
            let report = boxoffice_loadtest::run(args).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.to_text());
            }
            if report.verdict == boxoffice_loadtest::Verdict::Fail {
                use std::io::Write as _;
                std::io::stdout().flush()?;
                std::process::exit(1);
            }
            Ok(())
        }
    }
}
