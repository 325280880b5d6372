//! The `herald` command line. Each command loads the settings the same way (file, then
//! `HERALD_…` environment, then flags) and reports failure with a message and exit status 1
//! (2 for unusable configuration or arguments).

use std::{io::Read, path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::{
    accounts::{self, NewUser},
    audit,
    clock::Clock,
    config::{Overrides, Settings},
    delivery,
    domain::user::Role,
    http::Application,
    hub::{Hub, ReferenceData},
    startup::open_hub,
    telemetry, workers,
};

/// Names this instance's worker in leases: host, process and a random suffix, so two
/// instances never share a name.
fn worker_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "herald".into());
    format!(
        "{host}-{}-{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "Herald: one post, every channel — 一次发布，多渠道送达"
)]
struct Cli {
    /// TOML configuration file (see herald.example.toml).
    #[arg(long, global = true, env = "HERALD_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory for the embedded SQLite database; overrides storage.data_dir.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hub: HTTP API and background workers. Migrates the database first.
    Serve {
        /// HOST:PORT to listen on; overrides server.listen.
        #[arg(long)]
        listen: Option<String>,
        /// HOST:PORT the in-process MQTT broker listens on (when mqtt.url is empty); overrides
        /// mqtt.listen.
        #[arg(long)]
        mqtt_listen: Option<String>,
    },
    /// Bring the database schema up to date and exit.
    Migrate,
    /// Manage user accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Register, list and revoke village devices (loudspeakers, notice boards).
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Set up an external MQTT broker for the devices.
    #[command(subcommand)]
    Mqtt(MqttCommand),
    /// Run virtual village devices against the broker in mqtt.url: they are registered (under
    /// new ids), then verify, acknowledge and play or show whatever the hub sends them.
    Simulate {
        /// How many devices.
        #[arg(long, default_value_t = 10)]
        devices: usize,
        /// `loudspeaker` or `notice_board`.
        #[arg(long, default_value = "loudspeaker")]
        channel: String,
        /// The village (area code) they stand in.
        #[arg(long)]
        area: String,
        /// Milliseconds each device waits before answering a command.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Share of commands that never reach a device, 0 to 1.
        #[arg(long, default_value_t = 0.0)]
        loss: f64,
        /// Seconds each play (all its repeats) or each cycle through a display's pages takes;
        /// 0: at once.
        #[arg(long, default_value_t = 0)]
        run_seconds: u64,
        /// Stop after this many seconds; 0: run until interrupted.
        #[arg(long, default_value_t = 0)]
        seconds: u64,
        /// Print `arrival DEVICE UNIX_MICROS` as each command arrives (for `herald bench
        /// fanout --device-processes`).
        #[arg(long)]
        print_arrivals: bool,
        /// Loudspeakers: audio codecs they play (comma-separated: mp3, aac, opus, wav); they
        /// download each file, check its size and SHA-256 and decode it. None: text only.
        #[arg(long, value_delimiter = ',')]
        codecs: Vec<String>,
        /// Loudspeakers: they do not speak text (TTS).
        #[arg(long)]
        no_tts: bool,
    },
    /// Load and check the configuration and the files it names, then print it.
    CheckConfig,
    /// Audit log tools.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Write a consistent copy of the embedded database (items, attachments, receipts, the
    /// audit chain) and its secrets key into an empty directory, while the hub runs. To
    /// restore, make that directory the data directory of a stopped hub.
    Backup {
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Benchmarks on a scratch database; they print figures.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Publish one item to many targets; time the publish and the delivery summary.
    Publish {
        #[arg(long, default_value_t = 100_000)]
        targets: usize,
        #[arg(long, default_value_t = 50)]
        summary_runs: usize,
        /// PostgreSQL server URL (postgres://…/db): a scratch database is created there and
        /// dropped afterwards. Without it the benchmark runs on SQLite in a temporary folder.
        #[arg(long)]
        postgres: Option<String>,
    },
    /// Publish one item to many loudspeakers that answer at once; time writing the deliveries
    /// and draining them all to delivered.
    Deliver {
        #[arg(long, default_value_t = 10_000)]
        targets: usize,
        /// As for `bench publish`.
        #[arg(long)]
        postgres: Option<String>,
        /// Publish while the claim loops are busy: the deliveries wait `pending` and are
        /// claimed, as on another instance or behind a backlog. Without it the loops wait
        /// idle, as in a waiting `herald serve`, and the publish hands its deliveries over.
        #[arg(long)]
        busy_loops: bool,
    },
    /// Take one receipt for each of many `accepted` deliveries into the inbox, then time
    /// applying them in batches of 1,000.
    Receipts {
        #[arg(long, default_value_t = 10_000)]
        deliveries: usize,
        /// As for `bench publish`.
        #[arg(long)]
        postgres: Option<String>,
    },
    /// Load an item page of the portal, then nginx serving the same bytes from a file, with wrk;
    /// print requests per second and p99 of each.
    Portal {
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// As for `bench publish`.
        #[arg(long)]
        postgres: Option<String>,
    },
    /// Search the portal and the staff list over many published items; time each kind of
    /// search (p50, p95, max) and check every portal search against a scan.
    Search {
        #[arg(long, default_value_t = 100_000)]
        items: usize,
        /// Searches of each kind (发文字号, 索引号, one word, two, three, a phrase, no match).
        #[arg(long, default_value_t = 30)]
        queries: usize,
        /// As for `bench publish`.
        #[arg(long)]
        postgres: Option<String>,
    },
    /// Publish an emergency to many virtual loudspeakers over a real broker; time how soon
    /// they have it and their acks are stored, beside a plain MQTT client's fan-out.
    Fanout {
        #[arg(long, default_value_t = 1000)]
        devices: usize,
        /// As for `bench publish`.
        #[arg(long)]
        postgres: Option<String>,
        /// The broker the devices and the hub use: `in-process` (the one `herald serve` runs)
        /// or mqtt://HOST:PORT.
        #[arg(long, default_value = "in-process")]
        mqtt: String,
        /// Run the devices in this many `herald simulate` processes, so this one is the hub
        /// alone (its memory, its open files); 0: in this process.
        #[arg(long, default_value_t = 0)]
        device_processes: usize,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user; prints a generated one-time password unless --password-stdin is given.
    Add {
        #[arg(long)]
        username: String,
        #[arg(long, value_enum)]
        role: Role,
        /// Administrative division code the user works within (6, 9 or 12 digits).
        #[arg(long)]
        area: String,
        #[arg(long, default_value = "")]
        display_name: String,
        /// Read the password from standard input instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
    /// Disable a user: their sessions end and their tokens are revoked.
    Disable { username: String },
    /// Lift the login delays failed logins put on a user, from every address.
    Unlock { username: String },
    /// Reset a user's password to a generated one-time password (printed once), to be
    /// changed at their next sign-in; their sessions end.
    ResetPassword { username: String },
    /// Change a user's own password: the current one, then the new one, each on a line of
    /// standard input. Every session of theirs ends.
    Passwd { username: String },
    /// Move a user to another area of the configured area tree (after replacing the demo
    /// county with a real one, say).
    Rescope {
        username: String,
        /// Administrative division code within the configured tree (6, 9 or 12 digits).
        #[arg(long)]
        area: String,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Issue an API token for a user; the secret is printed once.
    Create {
        #[arg(long)]
        user: String,
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// Register one device; its credential is printed once.
    Add {
        /// loudspeaker or notice_board.
        #[arg(long)]
        channel: String,
        #[arg(long)]
        name: String,
        /// The area (village) code it stands in.
        #[arg(long)]
        area: String,
        /// Its group within the area.
        #[arg(long, default_value = "")]
        group: String,
        /// The id it logs in to the broker with; Herald makes one if none is given.
        #[arg(long)]
        device_id: Option<String>,
        /// The Ed25519 public key it signs reports with (64 hex digits), as it shows it.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Register the report-signing key a device shows at installation (or a new one).
    SetKey { device_id: String, public_key: String },
    /// Issue a device a new credential, printed once; the old one stops working.
    Reissue { device_id: String },
    /// List devices, with when each was last seen.
    List,
    /// Revoke a device: its credential stops working and nothing more is delivered to it.
    Revoke { device_id: String },
    /// Register every device of a CSV file (header: channel,name,area_code[,device_id][,group][,public_key]),
    /// all or none; the credentials go to a new file readable only by you.
    Import {
        file: std::path::PathBuf,
        /// Where to write `device_id,credential` for each device (must not exist yet).
        #[arg(long)]
        credentials_out: std::path::PathBuf,
    },
}

#[derive(Subcommand)]
enum MqttCommand {
    /// Write Mosquitto's password file (`passwd`) and ACL file (`acl`) for the hub and every
    /// device not revoked, each device limited to its own topics. Run again after devices
    /// change, then reload Mosquitto (SIGHUP). The hub's broker password is made on the first
    /// run and kept in `hub.credential`.
    Acl {
        #[arg(long)]
        out_dir: PathBuf,
        /// The hub's user name on the broker.
        #[arg(long, default_value = "herald-hub")]
        hub_user: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain; names the first bad row.
    Verify,
}

/// Who the audit log names for changes made from the command line.
const CLI_ACTOR: &str = "cli";

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init();
    let overrides = Overrides {
        data_dir: cli.data_dir.clone(),
        listen: match &cli.command {
            Command::Serve { listen, .. } => listen.clone(),
            _ => None,
        },
        mqtt_listen: match &cli.command {
            Command::Serve { mqtt_listen, .. } => mqtt_listen.clone(),
            _ => None,
        },
    };
    let settings = match Settings::load(cli.config.as_deref(), &overrides) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("herald: {e}");
            return ExitCode::from(2);
        }
    };
    // One TLS provider for every client (PostgreSQL over TLS, later WeChat and MQTT).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("herald: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, settings)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("herald: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<ExitCode> {
    match command {
        Command::CheckConfig => {
            ReferenceData::load(&settings)?;
            println!("{}", toml::to_string_pretty(&settings.shown())?);
            println!("# configuration OK");
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { .. } => serve(settings).await,
        Command::Migrate => {
            open_hub(settings, Clock::System).await?;
            println!("database schema is up to date");
            Ok(ExitCode::SUCCESS)
        }
        Command::User(command) => {
            let hub = open_existing_hub(settings).await?;
            user_command(&hub, command).await
        }
        Command::Device(command) => {
            let hub = open_existing_hub(settings).await?;
            device_command(&hub, command).await
        }
        Command::Simulate {
            devices,
            channel,
            area,
            latency_ms,
            loss,
            run_seconds,
            seconds,
            print_arrivals,
            codecs,
            no_tts,
        } => {
            let behaviour = crate::simulate::Behaviour {
                latency: std::time::Duration::from_millis(latency_ms),
                loss,
                run_seconds,
            };
            simulate(
                settings,
                (devices, channel, area),
                (codecs, !no_tts),
                behaviour,
                (seconds, print_arrivals),
            )
            .await
        }
        Command::Mqtt(MqttCommand::Acl { out_dir, hub_user }) => {
            let hub = open_existing_hub(settings).await?;
            write_broker_files(&hub, &out_dir, &hub_user).await
        }
        Command::Token(TokenCommand::Create { user, name }) => {
            let hub = open_existing_hub(settings).await?;
            let owner = accounts::find_user_by_name(&hub, &user)
                .await
                .map_err(|e| anyhow::anyhow!("{user}: {e}"))?;
            let (token, secret) = accounts::create_token(&hub, CLI_ACTOR, &owner.id, &name)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("token {} for {user}: {secret}", token.id);
            println!("Keep it now: Herald stores only its hash and cannot show it again.");
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Publish {
            targets,
            summary_runs,
            postgres,
        }) => {
            crate::bench::publish(crate::bench::BenchOptions {
                targets,
                summary_runs,
                postgres_url: postgres,
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Deliver {
            targets,
            postgres,
            busy_loops,
        }) => {
            let options = crate::bench::BenchOptions {
                targets,
                summary_runs: 0,
                postgres_url: postgres,
            };
            crate::bench::deliver(options, !busy_loops).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Receipts { deliveries, postgres }) => {
            crate::bench::receipts(crate::bench::BenchOptions {
                targets: deliveries,
                summary_runs: 0,
                postgres_url: postgres,
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Portal {
            seconds,
            connections,
            postgres,
        }) => {
            crate::bench::portal(crate::bench::PortalOptions {
                seconds,
                connections,
                postgres_url: postgres,
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Search {
            items,
            queries,
            postgres,
        }) => {
            crate::bench::search(crate::bench::SearchOptions {
                items,
                queries,
                postgres_url: postgres,
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Fanout {
            devices,
            postgres,
            mqtt,
            device_processes,
        }) => {
            crate::bench::fanout(crate::bench::FanoutOptions {
                devices,
                postgres_url: postgres,
                mqtt_url: mqtt,
                device_processes,
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup { out } => backup(settings, &out).await,
        Command::Audit(AuditCommand::Verify) => {
            let hub = open_existing_hub(settings).await?;
            let verification = audit::verify(&hub.db).await?;
            match verification.first_bad {
                None => {
                    println!("audit log intact: {} rows verified", verification.rows_checked);
                    Ok(ExitCode::SUCCESS)
                }
                Some(bad) => {
                    eprintln!(
                        "audit log BROKEN at row {}: {} ({} rows before it verified)",
                        bad.seq, bad.reason, verification.rows_checked
                    );
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

async fn user_command(hub: &Hub, command: UserCommand) -> anyhow::Result<ExitCode> {
    match command {
        UserCommand::Add {
            username,
            role,
            area,
            display_name,
            password_stdin,
        } => {
            let password = if password_stdin {
                let mut password = String::new();
                std::io::stdin()
                    .read_to_string(&mut password)
                    .context("cannot read the password from standard input")?;
                Some(password.trim_end_matches(['\r', '\n']).to_owned())
            } else {
                None
            };
            let new = NewUser {
                username,
                display_name,
                role,
                area_code: area,
                password,
            };
            let (user, generated) = accounts::create_user(hub, CLI_ACTOR, None, new)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "created {} ({}, area {})",
                user.username,
                user.role.as_str(),
                user.area_code
            );
            if let Some(password) = generated {
                println!("one-time password: {password}");
            }
        }
        UserCommand::List => {
            for user in accounts::list_users(hub, None)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
            {
                let status = if user.disabled { "disabled" } else { "active" };
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    user.username,
                    user.role.as_str(),
                    user.area_code,
                    status,
                    user.display_name
                );
            }
        }
        UserCommand::Disable { username } => {
            let user = user_named(hub, &username).await?;
            accounts::disable_user(hub, CLI_ACTOR, None, &user.id)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("disabled {username}");
        }
        UserCommand::Unlock { username } => {
            let user = user_named(hub, &username).await?;
            accounts::unlock_user(hub, CLI_ACTOR, None, &user.id)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("unlocked {username}");
        }
        UserCommand::ResetPassword { username } => {
            let user = user_named(hub, &username).await?;
            let (_, password) = accounts::reset_password(hub, CLI_ACTOR, None, &user.id)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("one-time password: {password}");
            println!("{username} must choose their own at the next sign-in.");
        }
        UserCommand::Passwd { username } => {
            let user = user_named(hub, &username).await?;
            let mut input = String::new();
            std::io::stdin()
                .read_to_string(&mut input)
                .context("cannot read the passwords from standard input")?;
            let mut lines = input.lines();
            let (Some(current), Some(new)) = (lines.next(), lines.next()) else {
                anyhow::bail!(
                    "standard input must hold the current password, then the new one, each on a line"
                );
            };
            let change = accounts::PasswordChange {
                current_password: current.to_owned(),
                new_password: new.to_owned(),
            };
            let caller = accounts::caller_from(user).map_err(|e| anyhow::anyhow!("{e}"))?;
            accounts::change_password(hub, &caller, &change, None)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("changed the password of {username}");
        }
        UserCommand::Rescope { username, area } => {
            let user = user_named(hub, &username).await?;
            let moved = accounts::rescope_user(hub, CLI_ACTOR, &user.id, &area)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{username} now works within {}", moved.area_code);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `herald backup`: SQLite's `VACUUM INTO` writes a transactionally consistent copy however
/// the running hub writes meanwhile; attachments live in the database, so the copy holds
/// them. The secrets key goes beside it (without it the copy's target secrets are unreadable).
async fn backup(settings: Settings, out: &std::path::Path) -> anyhow::Result<ExitCode> {
    if !settings.storage.database_url.is_empty() {
        eprintln!(
            "herald: backup copies the embedded SQLite database; on PostgreSQL use pg_dump, and keep storage.secrets_key apart from it"
        );
        return Ok(ExitCode::from(2));
    }
    let copy = out.join(crate::config::SQLITE_FILE);
    if copy.exists() {
        anyhow::bail!(
            "{} exists already: back up into an empty directory",
            copy.display()
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let key_file = settings.storage.data_dir.join(crate::secrets::KEY_FILE);
    let hub = open_existing_hub(settings).await?;
    let target = copy.display().to_string().replace('\'', "''");
    sea_orm::ConnectionTrait::execute_unprepared(&hub.db, &format!("VACUUM INTO '{target}'"))
        .await
        .context("copying the database")?;
    if key_file.exists() {
        let key_copy = out.join(crate::secrets::KEY_FILE);
        std::fs::copy(&key_file, &key_copy).context("copying the secrets key")?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key_copy, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    let shown = std::path::absolute(out).unwrap_or_else(|_| out.to_path_buf());
    println!("backed up to {}", shown.display());
    Ok(ExitCode::SUCCESS)
}

/// Opens the hub for a command about what an existing database holds. On the embedded default
/// a data directory without one means the command ran elsewhere than the hub (the data
/// directory is relative to where it runs): an error naming where it looked, never a second,
/// empty database. Only `serve` and `migrate` create one.
async fn open_existing_hub(settings: Settings) -> anyhow::Result<Hub> {
    if settings.storage.database_url.is_empty() {
        let path = settings.storage.data_dir.join(crate::config::SQLITE_FILE);
        if !path.exists() {
            let shown = std::path::absolute(&path).unwrap_or(path);
            anyhow::bail!(
                "no Herald database at {}: run this where `herald serve` runs, or give its data directory with --data-dir (storage.data_dir); `herald migrate` creates a new one",
                shown.display()
            );
        }
    }
    open_hub(settings, Clock::System).await
}

async fn user_named(hub: &Hub, username: &str) -> anyhow::Result<crate::store::entities::user::Model> {
    accounts::find_user_by_name(hub, username)
        .await
        .map_err(|e| anyhow::anyhow!("{username}: {e}"))
}

async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

/// The first `serve` on an empty store creates an administrator for the whole area tree.
async fn ensure_first_admin(hub: &Hub) -> anyhow::Result<()> {
    if accounts::any_user_exists(hub)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
    {
        return Ok(());
    }
    let root = hub.areas.root();
    let new = NewUser {
        username: "admin".into(),
        display_name: "系统管理员".into(),
        role: Role::Admin,
        area_code: root.code.to_string(),
        password: None,
    };
    let (_, password) = accounts::create_user(hub, "system", None, new)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "created the first administrator `admin` for {} ({})",
        root.name, root.code
    );
    if let Some(password) = password {
        println!("one-time password: {password}");
        println!("Sign in and keep it safe: it is not shown again.");
    }
    Ok(())
}

/// The key target secrets are sealed with (and the device issuer key derived from): the
/// embedded default makes its own on first use; PostgreSQL needs one configured, shared by
/// every instance. `false`: there is none, and the reason was printed.
fn ensure_secrets_key(settings: &Settings) -> anyhow::Result<bool> {
    if !settings.storage.secrets_key.is_empty() {
        return Ok(true);
    }
    if settings.storage.database_url.is_empty() {
        // One command still runs on a fresh machine: the embedded default keeps its own key.
        if let Some(path) = crate::secrets::ensure_key_file(&settings.storage.data_dir)? {
            println!(
                "Generated the key that encrypts target secrets: {} (keep it with, but apart from, \
                 backups of the database; or set storage.secrets_key)",
                path.display()
            );
        }
        return Ok(true);
    }
    eprintln!(
        "herald: storage.secrets_key must be set with PostgreSQL: every instance must share \
         the key that encrypts target secrets (64 hex characters, e.g. `openssl rand -hex 32`)"
    );
    Ok(false)
}

async fn serve(mut settings: Settings) -> anyhow::Result<ExitCode> {
    if !ensure_secrets_key(&settings)? {
        return Ok(ExitCode::from(2));
    }
    // No external broker: run one here, and let the hub's own client log in to it.
    let embedded = if settings.mqtt.url.is_empty() && !settings.mqtt.listen.is_empty() {
        let listen = settings.mqtt.listen.clone();
        match crate::broker::EmbeddedBroker::start_for_hub(&listen, &mut settings.mqtt).await {
            Ok(started) => Some(started),
            Err(e) => {
                eprintln!(
                    "herald: {e}. Choose another with --mqtt-listen HOST:PORT (mqtt.listen), or \
                     set mqtt.url to use an external broker."
                );
                return Ok(ExitCode::from(2));
            }
        }
    } else {
        None
    };
    if settings.storage.database_url.is_empty() {
        let data_dir = &settings.storage.data_dir;
        let shown = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.clone());
        println!("data directory: {}", shown.display());
    }
    let hub = Arc::new(open_hub(settings, Clock::System).await?);
    if let Some((broker, gate)) = &embedded {
        gate.attach(hub.clone());
        println!("MQTT broker for devices listening on {}", broker.local_addr());
    }
    ensure_first_admin(&hub).await?;
    let application = Application::build(hub.clone())?;
    println!("Herald listening on http://{}", application.local_addr());
    // Each background worker is a task of its own, so the delivery worker and the device
    // gateway run on different cores instead of taking turns in one task.
    let mut background = tokio::task::JoinSet::new();
    background.spawn(workers::run_expiry_until_stopped(hub.clone()));
    background.spawn(workers::run_housekeeping_until_stopped(hub.clone()));
    background.spawn(workers::run_upkeep_until_stopped(hub.clone()));
    background.spawn(delivery::worker::run_until_stopped(hub.clone(), worker_id()));
    background.spawn(run_device_link(hub.clone()));
    // Stopping mid-delivery is safe: an unfinished delivery's lease runs out and another
    // attempt follows with the same idempotency key.
    tokio::select! {
        result = application.run_until_stopped() => result.context("HTTP server stopped")?,
        Some(ended) = background.join_next() => ended.context("a background worker panicked")??,
        result = async {
            match &embedded {
                Some((broker, _)) => broker.run_revocations_until_stopped(hub.clone()).await,
                None => std::future::pending().await,
            }
        } => result?,
        () = shutdown_signal() => println!("Herald stopping"),
    }
    // The workers first: a delivery in flight must not meet a broker already going down.
    background.shutdown().await;
    if let Some((broker, _)) = embedded {
        broker.shutdown().await;
    }
    Ok(ExitCode::SUCCESS)
}

/// `herald simulate`: registers `count` virtual devices and runs them until `seconds` have
/// passed (0: until interrupted), printing what they did every five seconds.
async fn simulate(
    settings: Settings,
    (count, channel, area): (usize, String, String),
    (codec_names, tts): (Vec<String>, bool),
    behaviour: crate::simulate::Behaviour,
    (seconds, print_arrivals): (u64, bool),
) -> anyhow::Result<ExitCode> {
    use crate::simulate::{Tally, drain_arrivals, run_device};
    use herald_channels::ChannelKind;
    use herald_firmware_protocol::command::AudioCodec;
    let refuse = |message: String| {
        eprintln!("herald simulate: {message}");
        Ok(ExitCode::from(2))
    };
    let Some(kind) = ChannelKind::parse(&channel).filter(|k| k.is_device()) else {
        return refuse(format!(
            "--channel must be loudspeaker or notice_board, not `{channel}`"
        ));
    };
    if !(0.0..=1.0).contains(&behaviour.loss) {
        return refuse(format!("--loss must be between 0 and 1, not {}", behaviour.loss));
    }
    if count == 0 {
        return refuse("--devices must be at least 1".into());
    }
    let mut codecs = Vec::with_capacity(codec_names.len());
    for name in &codec_names {
        match serde_json::from_value::<AudioCodec>(serde_json::Value::from(name.trim())) {
            Ok(codec) => codecs.push(codec),
            Err(_) => return refuse(format!("--codecs: `{name}` is none of mp3, aac, opus, wav")),
        }
    }
    let broker = match crate::device_link::broker_address(&settings.mqtt.url) {
        Ok(broker) => broker,
        Err(e) => return refuse(e.to_string()),
    };
    if !ensure_secrets_key(&settings)? {
        return Ok(ExitCode::from(2));
    }
    let hub = Arc::new(open_existing_hub(settings).await?);
    let link = hub.device_link.clone().context("the hub opened no device link")?;
    // Each logs in with the broker credential it was issued, as a real device is installed.
    let fleet = match crate::simulate::register(&hub, CLI_ACTOR, (kind, &area), count, "sim").await? {
        Ok(fleet) => fleet,
        Err(errors) => {
            for e in errors {
                eprintln!("herald simulate: device {}: {}: {}", e.row, e.field, e.message);
            }
            return Ok(ExitCode::from(2));
        }
    };
    let fleet = fleet.into_iter().map(|mut device| {
        if kind == ChannelKind::Loudspeaker {
            (device.codecs, device.tts) = (codecs.clone(), tts);
        }
        device
    });
    let fleet: Vec<_> = fleet.collect();
    let first = fleet.first().map(|d| d.device_id.clone()).unwrap_or_default();
    let trusted = crate::simulate::trusted(&link);
    let tally = Arc::new(Tally::default());
    // A task each, so a large fleet uses every core.
    let fleet = fleet.into_iter().map(|device| {
        let now = crate::simulate::hub_time(&hub.clock);
        tokio::spawn(run_device(
            device,
            trusted,
            broker.clone(),
            now,
            behaviour,
            tally.clone(),
        ))
    });
    println!(
        "registered {count} {} devices in {area} (ids from {first}); running",
        kind.as_str()
    );
    let report = async {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            println!("{}", tally.line());
        }
    };
    let arrivals = async {
        let mut seen = 0;
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            if print_arrivals {
                for (device, micros) in drain_arrivals(&tally, &mut seen, &hub.clock) {
                    println!("arrival {device} {micros}");
                }
            }
        }
    };
    let deadline = async {
        match seconds {
            0 => std::future::pending().await,
            s => tokio::time::sleep(std::time::Duration::from_secs(s)).await,
        }
    };
    tokio::select! {
        results = futures::future::join_all(fleet) => {
            for result in results {
                result??;
            }
        }
        () = report => {}
        () = arrivals => {}
        () = deadline => {}
        () = shutdown_signal() => {}
    }
    println!("{}", tally.line());
    Ok(ExitCode::SUCCESS)
}

/// Hears village devices while `mqtt.url` names a broker; otherwise waits for the others.
async fn run_device_link(hub: Arc<Hub>) -> anyhow::Result<()> {
    if hub.device_link.is_none() {
        return std::future::pending().await;
    }
    delivery::gateway::run_until_stopped(hub).await
}

async fn device_command(hub: &Hub, command: DeviceCommand) -> anyhow::Result<ExitCode> {
    use crate::delivery::devices::{self, NewDevice};
    let failed = |e: crate::error::Error| anyhow::anyhow!("{e}");
    match command {
        DeviceCommand::Add {
            channel,
            name,
            area,
            group,
            device_id,
            public_key,
        } => {
            let channel = herald_channels::ChannelKind::parse(channel.trim())
                .with_context(|| format!("--channel: unknown channel `{channel}`"))?;
            let new = NewDevice {
                channel,
                device_id,
                name,
                area_code: area,
                group,
                public_key,
            };
            match devices::add_devices(hub, CLI_ACTOR, None, vec![(1, new)], &|_| {})
                .await
                .map_err(failed)?
            {
                Ok(issued) => {
                    for i in issued {
                        println!(
                            "device {} ({}, area {})",
                            i.device.device_id, i.device.name, i.device.area_code
                        );
                        println!("credential: {}", i.credential);
                    }
                    println!("Keep it now: Herald stores only its hash and cannot show it again.");
                }
                Err(errors) => {
                    for e in errors {
                        // Named as the flag that carries the field.
                        let flag = match e.field.as_str() {
                            "area_code" => "area".to_owned(),
                            field => field.replace('_', "-"),
                        };
                        eprintln!("--{flag}: {}", e.message);
                    }
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        DeviceCommand::List => {
            for d in devices::list_devices(hub, None).await.map_err(failed)? {
                let status = if d.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                let seen = d
                    .last_seen_at
                    .map_or_else(|| "never seen".to_owned(), |t| t.to_rfc3339());
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    d.device_id, d.channel, d.area_code, d.group, status, seen, d.name
                );
            }
        }
        DeviceCommand::SetKey {
            device_id,
            public_key,
        } => {
            let device = devices::set_device_key(hub, CLI_ACTOR, None, &device_id, &public_key)
                .await
                .map_err(|e| anyhow::anyhow!("{device_id}: {e}"))?;
            if let Some(key_id) = device.key_id {
                println!("device {device_id} reports under key id {key_id}");
            }
        }
        DeviceCommand::Reissue { device_id } => {
            let issued = devices::reissue_credential(hub, CLI_ACTOR, None, &device_id)
                .await
                .map_err(|e| anyhow::anyhow!("{device_id}: {e}"))?;
            println!("credential: {}", issued.credential);
            println!(
                "Keep it now: Herald stores only its hash. Run `herald mqtt acl` and reload the broker."
            );
        }
        DeviceCommand::Revoke { device_id } => {
            devices::revoke_device(hub, CLI_ACTOR, None, &device_id)
                .await
                .map_err(|e| anyhow::anyhow!("{device_id}: {e}"))?;
            println!("revoked {device_id}");
        }
        DeviceCommand::Import {
            file,
            credentials_out,
        } => {
            let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            // Created before anything is registered, so a credential is never issued with
            // nowhere to go.
            let mut out = std::fs::OpenOptions::new();
            out.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut out, 0o600);
            let out = out
                .open(&credentials_out)
                .with_context(|| format!("--credentials-out: cannot create {}", credentials_out.display()))?;
            let report = |errors: Vec<devices::RowError>| {
                for e in &errors {
                    eprintln!("{}: line {}: {}: {}", file.display(), e.row, e.field, e.message);
                }
                eprintln!("{} rows are wrong; nothing was registered", errors.len());
            };
            let rows = match devices::parse_csv(&bytes) {
                Ok(rows) => rows,
                Err(errors) => {
                    report(errors);
                    drop(out);
                    let _ = std::fs::remove_file(&credentials_out);
                    return Ok(ExitCode::FAILURE);
                }
            };
            let bar = indicatif::ProgressBar::new(rows.len() as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} devices registered")
                    .map_err(anyhow::Error::new)?,
            );
            // The credentials reach the disk before the registration commits: a crash or a
            // full disk leaves either both or neither.
            let mut out = Some(out);
            let mut keep = |issued: &[devices::Issued]| -> crate::error::Result<()> {
                let file = out
                    .take()
                    .ok_or_else(|| anyhow::anyhow!("the credentials file was already written"))?;
                let mut writer = csv::Writer::from_writer(file);
                writer
                    .write_record(["device_id", "credential"])
                    .map_err(anyhow::Error::new)?;
                for i in issued {
                    writer
                        .write_record([i.device.device_id.as_str(), i.credential.as_str()])
                        .map_err(anyhow::Error::new)?;
                }
                let file = writer.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
                file.sync_all().map_err(anyhow::Error::new)?;
                Ok(())
            };
            let result = devices::import_devices(
                hub,
                CLI_ACTOR,
                None,
                rows,
                &|n| bar.set_position(n as u64),
                &mut keep,
            )
            .await;
            bar.finish_and_clear();
            match result.map_err(failed) {
                Ok(Ok(issued)) => {
                    println!(
                        "registered {} devices; their credentials are in {} (Herald keeps only their hashes)",
                        issued.len(),
                        credentials_out.display()
                    );
                }
                other => {
                    let _ = std::fs::remove_file(&credentials_out);
                    match other {
                        Ok(Err(errors)) => {
                            report(errors);
                            return Ok(ExitCode::FAILURE);
                        }
                        Err(e) => return Err(e),
                        Ok(Ok(_)) => {}
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `contents` to `path` through a temporary file and a rename, so a broker reloading
/// meanwhile reads the old file or the new one, never half of one, with permissions `mode` and
/// the group the file had.
fn replace_file(path: &std::path::Path, contents: &str, mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    let partial = path.with_extension("partial");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options
        .open(&partial)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    // A file being replaced keeps its group: the broker's (`chgrp mosquitto passwd`, once).
    #[cfg(unix)]
    if let Ok(existing) = std::fs::metadata(path) {
        let group = std::os::unix::fs::MetadataExt::gid(&existing);
        std::os::unix::fs::chown(&partial, None, Some(group)).with_context(|| {
            format!(
                "cannot give {} the group of {}",
                partial.display(),
                path.display()
            )
        })?;
    }
    std::fs::rename(&partial, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

async fn write_broker_files(
    hub: &Hub,
    out_dir: &std::path::Path,
    hub_user: &str,
) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("--out-dir: cannot create {}", out_dir.display()))?;
    let credential_path = out_dir.join("hub.credential");
    let hub_password = match std::fs::read_to_string(&credential_path) {
        Ok(kept) => kept.trim().to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let made = format!(
                "hhub_{}",
                accounts::random_secret(32).map_err(|e| anyhow::anyhow!("{e}"))?
            );
            replace_file(&credential_path, &made, 0o600)?;
            made
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("cannot read {}", credential_path.display())));
        }
    };
    let files = delivery::devices::mosquitto_files(hub, hub_user, &hub_password)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // The broker's group may read the hashes (`chgrp mosquitto passwd`); others may not.
    replace_file(&out_dir.join("passwd"), &files.password_file, 0o640)?;
    replace_file(&out_dir.join("acl"), &files.acl_file, 0o644)?;
    println!(
        "wrote {}/passwd and {}/acl: the hub ({hub_user}) and {} devices",
        out_dir.display(),
        out_dir.display(),
        files.devices
    );
    println!(
        "The hub's broker password is in {}; reload Mosquitto (SIGHUP) to apply.",
        credential_path.display()
    );
    Ok(ExitCode::SUCCESS)
}
