//! `herald bench portal`: an item page under load, from the hub's kept pages, beside nginx
//! serving the same bytes saved to a file, in one run; prints requests per second and p99 of
//! each (wrk, 64 connections) and their ratio.

use std::{path::Path, process::Command, sync::Arc};

use anyhow::Context;

use super::{approved_item, err, on_scratch};
use crate::{
    clock::Clock,
    config::Settings,
    delivery,
    http::Application,
    idempotency::IdempotencyKey,
    startup::open_hub,
    workflow::{self, PublishInput},
};

pub struct PortalOptions {
    pub seconds: u64,
    pub connections: usize,
    pub postgres_url: Option<String>,
}

pub async fn portal(options: PortalOptions) -> anyhow::Result<()> {
    on_scratch(options.postgres_url.clone(), |settings| async move {
        run(&settings, &options).await
    })
    .await
}

/// What wrk measured.
struct Load {
    requests_per_second: f64,
    p99_ms: f64,
    non_2xx: u64,
}

fn milliseconds(figure: &str) -> Option<f64> {
    let (number, unit) = figure.split_at(figure.find(|c: char| c.is_ascii_alphabetic())?);
    let number: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => number / 1000.0,
        "ms" => number,
        "s" => number * 1000.0,
        "m" => number * 60_000.0,
        _ => return None,
    })
}

/// wrk's `--latency` report, read: `Requests/sec:`, the `99%` line, `Non-2xx` if any.
fn read_wrk(report: &str) -> anyhow::Result<Load> {
    let field = |prefix: &str| {
        report
            .lines()
            .map(str::trim)
            .find_map(|line| line.strip_prefix(prefix).map(|rest| rest.trim().to_owned()))
    };
    let requests_per_second = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's report:\n{report}"))?;
    let p99_ms = field("99%")
        .and_then(|v| milliseconds(&v))
        .with_context(|| format!("no 99% latency in wrk's report:\n{report}"))?;
    let non_2xx = field("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(Load {
        requests_per_second,
        p99_ms,
        non_2xx,
    })
}

/// Runs wrk against `url` (off the async runtime: it blocks for the whole run).
async fn load(url: String, options: &PortalOptions) -> anyhow::Result<Load> {
    let (seconds, connections) = (options.seconds, options.connections);
    let output = tokio::task::spawn_blocking(move || {
        Command::new("wrk")
            .args([
                "-t2",
                &format!("-c{connections}"),
                &format!("-d{seconds}s"),
                "--latency",
                &url,
            ])
            .output()
    })
    .await?
    .context("running wrk (scripts/install-test-deps installs it)")?;
    anyhow::ensure!(
        output.status.success(),
        "wrk failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    read_wrk(&String::from_utf8_lossy(&output.stdout))
}

/// nginx serving `dir` on `port`, as a county would serve a static copy: two workers (one per
/// core, as the hub has), access log off, the file's ETag and Last-Modified on.
fn start_nginx(dir: &Path, port: u16) -> anyhow::Result<Nginx> {
    let config = dir.join("nginx.conf");
    std::fs::write(
        &config,
        format!(
            "worker_processes 2;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log;\ndaemon off;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n\
               fastcgi_temp_path {dir}/fastcgi;\n  uwsgi_temp_path {dir}/uwsgi;\n  scgi_temp_path {dir}/scgi;\n\
               types {{ text/html html; }}\n\
               server {{ listen 127.0.0.1:{port}; root {dir}/site; location / {{ try_files $uri $uri/index.html =404; }} }}\n}}\n",
            dir = dir.display()
        ),
    )?;
    let program = if Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    };
    let args = vec![
        "-c".to_owned(),
        config.display().to_string(),
        "-p".to_owned(),
        dir.display().to_string(),
    ];
    let master = Command::new(program)
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting nginx (scripts/install-test-deps installs it)")?;
    Ok(Nginx {
        program,
        args,
        master,
    })
}

struct Nginx {
    program: &'static str,
    args: Vec<String>,
    master: std::process::Child,
}

impl Nginx {
    /// Stops nginx with its workers: a killed master leaves them running.
    fn stop(mut self) {
        let _ = Command::new(self.program)
            .args(&self.args)
            .args(["-s", "stop"])
            .status();
        let _ = self.master.wait();
    }
}

async fn run(settings: &Settings, options: &PortalOptions) -> anyhow::Result<()> {
    let mut settings = settings.clone();
    settings.server.listen = "127.0.0.1:0".into();
    let hub = Arc::new(open_hub(settings, Clock::System).await?);
    let (publisher, item_id) = approved_item(&hub).await?;
    let key = IdempotencyKey::parse("bench-portal").map_err(err)?;
    workflow::publish(&hub, &publisher, &item_id, &key, PublishInput::default())
        .await
        .map_err(err)?;
    let in_flight = delivery::worker::InFlight::default();
    while delivery::worker::try_execute_batch(&hub, &in_flight, "bench")
        .await
        .map_err(err)?
        > 0
    {}

    let app = Application::build(hub.clone())?;
    let hub_port = app.port();
    let server = tokio::spawn(app.run_until_stopped());
    let page_url = format!("http://127.0.0.1:{hub_port}/xxgk/items/{item_id}");
    let page = reqwest::get(&page_url).await?;
    anyhow::ensure!(
        page.status().is_success(),
        "the item page answered {}",
        page.status()
    );
    let bytes = page.bytes().await?;

    let dir = std::env::temp_dir().join(format!("herald-bench-nginx-{}", uuid::Uuid::new_v4().simple()));
    let site = dir.join("site/xxgk/items").join(&item_id);
    std::fs::create_dir_all(&site)?;
    std::fs::write(site.join("index.html"), &bytes)?;
    let nginx_port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?.port()
    };
    let nginx = start_nginx(&dir, nginx_port)?;
    let nginx_url = format!("http://127.0.0.1:{nginx_port}/xxgk/items/{item_id}/");
    let mut answered = false;
    for _ in 0..50 {
        if reqwest::get(&nginx_url)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            answered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let result = async {
        anyhow::ensure!(answered, "nginx did not answer on port {nginx_port}");
        println!(
            "bench portal: item page of {} bytes, {} connections, {} s each, on {}",
            bytes.len(),
            options.connections,
            options.seconds,
            if crate::store::is_postgres(&hub.db) {
                "PostgreSQL"
            } else {
                "SQLite"
            },
        );
        let herald = load(page_url, options).await?;
        let peer = load(nginx_url, options).await?;
        anyhow::ensure!(
            herald.non_2xx == 0 && peer.non_2xx == 0,
            "errors under load: herald {}, nginx {}",
            herald.non_2xx,
            peer.non_2xx
        );
        println!(
            "  herald (kept pages, server.portal_recheck_ms = {:>5}) {:>10.0} req/s  p99 {:>7.2} ms",
            hub.settings.server.portal_recheck_ms, herald.requests_per_second, herald.p99_ms
        );
        println!(
            "  nginx (the same bytes from a file)                {:>10.0} req/s  p99 {:>7.2} ms",
            peer.requests_per_second, peer.p99_ms
        );
        println!(
            "  ratio herald / nginx: {:.2}×",
            herald.requests_per_second / peer.requests_per_second
        );
        Ok(())
    }
    .await;
    nginx.stop();
    let _ = std::fs::remove_dir_all(&dir);
    server.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrks_report() {
        let report = "Running 1s test @ http://127.0.0.1:1/\n  2 threads and 64 connections\n  Latency Distribution\n     50%  1.10ms\n     99%  12.50ms\n  1000 requests in 1.00s, 1.00MB read\nRequests/sec:   1000.50\nTransfer/sec:      1.00MB\n";
        let load = read_wrk(report).unwrap();
        assert_eq!(
            (load.requests_per_second, load.p99_ms, load.non_2xx),
            (1000.5, 12.5, 0)
        );
        assert_eq!(milliseconds("850.00us"), Some(0.85));
        assert_eq!(milliseconds("1.20s"), Some(1200.0));
        assert!(read_wrk("nothing").is_err());
    }
}
