//! The deployment guide and its samples (issue 10, point 16): nginx accepts the sample
//! server config, and the guide, the samples and Herald itself agree on addresses, paths,
//! limits, commands and settings.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use crate::cli::herald;

const GUIDE: &str = "docs/deployment.md";
const NGINX_SAMPLE: &str = "deploy/nginx/herald.conf";
const SYSTEMD_UNIT: &str = "deploy/systemd/herald.service";
const INSTALL_TEST_DEPS: &str = "scripts/install-test-deps";
/// Where the sample expects the certificate; the test puts a throwaway one in its place.
const SAMPLE_CERTIFICATE: &str = "/etc/nginx/ssl/herald.crt";
const SAMPLE_KEY: &str = "/etc/nginx/ssl/herald.key";

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo_path(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// Debian's nginx is /usr/sbin/nginx, which is not on an ordinary user's PATH.
fn nginx() -> PathBuf {
    let debian = PathBuf::from("/usr/sbin/nginx");
    if debian.is_file() {
        return debian;
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("nginx"))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "nginx is not installed, and this test checks {NGINX_SAMPLE} with `nginx -t`: \
                 run {INSTALL_TEST_DEPS} (as root), as scripts/test does"
            )
        })
}

fn output_text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn nginx_accepts_the_sample_server_config_with_a_certificate_in_place() {
    let nginx = nginx();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let (certificate, key) = (root.join("herald.crt"), root.join("herald.key"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=www.example.gov.cn", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&certificate)
        .output()
        .unwrap_or_else(|e| panic!("openssl: {e}; run {INSTALL_TEST_DEPS} (as root), as scripts/test does"));
    assert!(made.status.success(), "openssl: {}", output_text(&made));

    let sample = read(NGINX_SAMPLE);
    for expected in [SAMPLE_CERTIFICATE, SAMPLE_KEY] {
        assert!(
            sample.contains(expected),
            "{NGINX_SAMPLE} no longer names {expected}; update this test and {GUIDE} with it"
        );
    }
    let site = root.join("herald.conf");
    std::fs::write(
        &site,
        sample
            .replace(SAMPLE_CERTIFICATE, &certificate.display().to_string())
            .replace(SAMPLE_KEY, &key.display().to_string()),
    )
    .expect("write the site");

    // Everything nginx would write goes into the temporary folder, so the test needs no
    // system paths and no running nginx; the sample is included where Debian's nginx.conf
    // includes conf.d/, inside `http`.
    let inside = |name: &str| root.join(name).display().to_string();
    let mime_types = Path::new("/etc/nginx/mime.types");
    let main_config = format!(
        "pid \"{pid}\";\nerror_log stderr;\nevents {{}}\nhttp {{\n{mime}    access_log off;\n\
         \x20   client_body_temp_path \"{body}\";\n    proxy_temp_path \"{proxy}\";\n\
         \x20   fastcgi_temp_path \"{fastcgi}\";\n    uwsgi_temp_path \"{uwsgi}\";\n\
         \x20   scgi_temp_path \"{scgi}\";\n    include \"{site}\";\n}}\n",
        pid = inside("nginx.pid"),
        mime = if mime_types.is_file() {
            format!("    include \"{}\";\n", mime_types.display())
        } else {
            String::new()
        },
        body = inside("client_body"),
        proxy = inside("proxy"),
        fastcgi = inside("fastcgi"),
        uwsgi = inside("uwsgi"),
        scgi = inside("scgi"),
        site = site.display(),
    );
    let main_path = root.join("nginx.conf");
    std::fs::write(&main_path, &main_config).expect("write nginx.conf");

    // `-e stderr`: without it nginx opens its built-in error log under /var/log first.
    let checked = Command::new(&nginx)
        .arg("-t")
        .arg("-c")
        .arg(&main_path)
        .arg("-p")
        .arg(format!("{}/", root.display()))
        .args(["-e", "stderr"])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", nginx.display()));
    assert!(
        checked.status.success(),
        "`nginx -t` refused {NGINX_SAMPLE}:\n{}\nwith this main config:\n{main_config}",
        output_text(&checked)
    );
}

/// The value of `directive` in an nginx config or `Key=` in a unit: its first occurrence,
/// comments left out.
fn first_value<'a>(text: &'a str, directive: &str) -> Option<&'a str> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(directive))
        .map(|rest| rest.trim().trim_end_matches(';').trim())
}

/// nginx sizes: `21m`, `512k`, `1g` or plain bytes.
fn nginx_size(value: &str) -> u64 {
    let (digits, unit) = value.split_at(value.trim_end_matches(char::is_alphabetic).len());
    let number: u64 = digits.parse().unwrap_or_else(|e| panic!("size `{value}`: {e}"));
    number
        * match unit.to_ascii_lowercase().as_str() {
            "" => 1,
            "k" => 1 << 10,
            "m" => 1 << 20,
            "g" => 1 << 30,
            other => panic!("size `{value}`: unit `{other}`"),
        }
}

/// The guide's production configuration: its first TOML block.
fn guide_config(guide: &str) -> &str {
    let start = guide.find("```toml\n").expect("the guide has a ```toml block") + "```toml\n".len();
    let length = guide[start..].find("```").expect("the TOML block ends");
    &guide[start..start + length]
}

#[test]
fn the_samples_and_the_guide_agree_with_heralds_defaults() {
    let example: toml::Value = toml::from_str(&read("herald.example.toml")).expect("herald.example.toml");
    let default_listen = example["server"]["listen"].as_str().expect("server.listen");
    let attachment_limit = example["content"]["max_attachment_bytes"]
        .as_integer()
        .expect("content.max_attachment_bytes");

    let sample = read(NGINX_SAMPLE);
    let upstream = sample
        .split_once("upstream herald {")
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(block, _)| block)
        .expect("the sample's `upstream herald` block");
    assert_eq!(
        first_value(upstream, "server "),
        Some(default_listen),
        "{NGINX_SAMPLE} proxies to an address other than server.listen's default"
    );
    let body_limit = nginx_size(first_value(&sample, "client_max_body_size").expect("client_max_body_size"));
    assert!(
        body_limit >= u64::try_from(attachment_limit).expect("positive"),
        "{NGINX_SAMPLE}: client_max_body_size ({body_limit} bytes) cuts off attachments Herald \
         accepts (content.max_attachment_bytes = {attachment_limit})"
    );

    let guide = read(GUIDE);
    let config: toml::Value =
        toml::from_str(guide_config(&guide)).expect("the guide's configuration is TOML");
    assert_eq!(
        config["server"]["listen"].as_str(),
        Some(default_listen),
        "{GUIDE}: the configuration listens elsewhere than where the nginx sample proxies"
    );
    let data_dir = config["storage"]["data_dir"].as_str().expect("storage.data_dir");
    let unit = read(SYSTEMD_UNIT);
    assert_eq!(
        first_value(&unit, "ReadWritePaths="),
        Some(data_dir),
        "{SYSTEMD_UNIT} lets the hub write elsewhere than the guide's storage.data_dir"
    );
    assert_eq!(
        first_value(&unit, "StateDirectory=").map(|name| format!("/var/lib/{name}")),
        Some(data_dir.to_owned()),
        "{SYSTEMD_UNIT} creates another directory than the guide's storage.data_dir"
    );
    let exec_start = first_value(&unit, "ExecStart=").expect("ExecStart=");
    assert!(
        guide.contains(exec_start),
        "{GUIDE} does not show the unit's command `{exec_start}`"
    );
    let mut words = exec_start.split_whitespace();
    let (binary, config_flag, config_path) = (words.next(), words.next(), words.next());
    assert_eq!(
        (binary, config_flag, words.collect::<Vec<_>>()),
        (Some("/usr/local/bin/herald"), Some("--config"), vec!["serve"]),
        "{SYSTEMD_UNIT}: ExecStart"
    );
    let config_path = config_path.expect("--config FILE");
    assert!(
        guide.contains(&format!("Write `{config_path}`")),
        "{GUIDE} does not say to write {config_path}, the file the unit reads"
    );

    for file in [NGINX_SAMPLE, SYSTEMD_UNIT] {
        assert!(guide.contains(file), "{GUIDE} does not mention {file}");
    }
    assert!(
        read("README.md").contains(GUIDE),
        "README.md does not link to {GUIDE}"
    );
}

#[test]
fn the_guides_configuration_passes_check_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("herald.toml");
    std::fs::write(&path, guide_config(&read(GUIDE))).expect("write");
    let checked = herald()
        .arg("--config")
        .arg(&path)
        .arg("check-config")
        .output()
        .expect("herald runs");
    assert!(
        checked.status.success(),
        "the configuration in {GUIDE} fails `herald check-config`:\n{}",
        output_text(&checked)
    );
}

/// Subcommands `herald <path> --help` lists.
fn subcommands(path: &[&str]) -> BTreeSet<String> {
    let help = herald().args(path).arg("--help").output().expect("herald runs");
    let text = String::from_utf8_lossy(&help.stdout).into_owned();
    text.lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_command_and_setting_the_guide_names_exists() {
    let guide = read(GUIDE);
    let commands = subcommands(&[]);
    assert!(
        commands.contains("serve") && commands.contains("backup"),
        "read no commands from `herald --help`: {commands:?}"
    );
    // `herald [--config FILE] COMMAND [SUBCOMMAND]`, wherever the guide shows one; not the
    // user or database of that name (`--owner=herald herald`).
    let invocation =
        regex::Regex::new(r"(?m)(?:^|[\s`/])herald(?: --config \S+)? ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?")
            .expect("regex");
    let mut checked = 0;
    for found in invocation.captures_iter(&guide) {
        let command = &found[1];
        assert!(
            commands.contains(command),
            "{GUIDE} names `herald {command}` (in `{}`), which does not exist; commands: {commands:?}",
            found[0].trim_matches(|c: char| c == '`' || c.is_whitespace())
        );
        let nested = subcommands(&[command]);
        if let (false, Some(sub)) = (nested.is_empty(), found.get(2)) {
            assert!(
                nested.contains(sub.as_str()),
                "{GUIDE} names `herald {command} {}`, which does not exist; {command} has {nested:?}",
                sub.as_str()
            );
        }
        checked += 1;
    }
    assert!(checked >= 10, "found only {checked} herald commands in {GUIDE}");

    let example: toml::Value = toml::from_str(&read("herald.example.toml")).expect("herald.example.toml");
    let exists = |section: &str, key: &str| example.get(section).and_then(|table| table.get(key)).is_some();
    let setting = regex::Regex::new(r"`(server|storage|content|auth|workflow|delivery|mqtt)\.([a-z_]+)\b")
        .expect("regex");
    let mut settings = 0;
    for found in setting.captures_iter(&guide) {
        assert!(
            exists(&found[1], &found[2]),
            "{GUIDE} names the setting {}.{}, which herald.example.toml does not have",
            &found[1],
            &found[2]
        );
        settings += 1;
    }
    assert!(settings >= 10, "found only {settings} settings in {GUIDE}");
    let variable = regex::Regex::new(r"\bHERALD_([A-Z]+)__([A-Z_]+)\b").expect("regex");
    for found in variable.captures_iter(&guide) {
        assert!(
            exists(&found[1].to_lowercase(), &found[2].to_lowercase()),
            "{GUIDE} names {}, which sets nothing",
            &found[0]
        );
    }
}

/// Upgrades with several instances (section 8 of the guide): instances started at once on a
/// fresh PostgreSQL database all come up, and each migration is applied exactly once.
#[tokio::test]
async fn instances_migrating_one_postgresql_at_once_all_succeed_and_apply_each_migration_once() {
    use sea_orm::{ConnectionTrait, Database};
    let Ok(base) = std::env::var("HERALD_TEST_DATABASE_URL") else {
        eprintln!("HERALD_TEST_DATABASE_URL is not set: no PostgreSQL for this test");
        return;
    };
    let url = crate::helpers::fresh_postgres_url(&base).await;
    let data_dir = tempfile::tempdir().expect("tempdir");
    let instances: Vec<_> = (0..4)
        .map(|_| {
            herald()
                .arg("migrate")
                .env("HERALD_STORAGE__DATABASE_URL", &url)
                .env("HERALD_STORAGE__SECRETS_KEY", "7e57".repeat(16))
                .env("HERALD_STORAGE__DATA_DIR", data_dir.path())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("herald migrate starts")
        })
        .collect();
    for instance in instances {
        let output = instance.wait_with_output().expect("herald migrate ends");
        assert!(
            output.status.success(),
            "an instance failed to migrate: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let db = Database::connect(url.as_str()).await.expect("connect");
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT count(*) AS applied, count(DISTINCT version) AS distinct_versions FROM seaql_migrations",
        ))
        .await
        .expect("query")
        .expect("a row");
    let applied: i64 = row.try_get("", "applied").expect("applied");
    let distinct: i64 = row.try_get("", "distinct_versions").expect("distinct");
    assert_eq!(applied, distinct, "a migration was recorded twice");
    assert!(applied >= 20, "only {applied} migrations were applied");
}
