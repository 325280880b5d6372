//! Extreme values and NUL bytes in every path parameter, query parameter and JSON body of every
//! endpoint (API and portal), as the county admin and anonymously, on SQLite and PostgreSQL.
//! Nothing may answer 5xx or drop the connection; API refusals are `{"error":{…}}` naming the
//! offending field.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, item_body, spawn_app};
use crate::on_both_databases;

const COUNTY: &str = "530426";

/// Path and query values, already percent-encoded: they are sent exactly as written.
fn extremes() -> Vec<String> {
    let mut values: Vec<String> = [
        "0",
        "-1",
        "9223372036854775807",
        "9223372036854775808",
        "18446744073709551616",
        "99999999999999999999999999",
        "%00",
        "a%00b",
        "%01",
        "%7F",
        "..%2F..",
        "%E0%A4%A",
    ]
    .iter()
    .map(|v| (*v).to_owned())
    .collect();
    values.insert(10, "x".repeat(10_000));
    values
}

const QUERY_PARAMS: [&str; 13] = [
    "limit",
    "offset",
    "after",
    "state",
    "area",
    "q",
    "channel",
    "channels",
    "targets",
    "kind",
    "disclosure",
    "emergency",
    "no_such_parameter",
];

/// List endpoints and endpoints with a query.
const QUERY_ROUTES: [&str; 13] = [
    "/api/v1/items",
    "/api/v1/deliveries",
    "/api/v1/audit",
    "/api/v1/users",
    "/api/v1/targets",
    "/api/v1/tokens",
    "/api/v1/interpretations/due",
    "/api/v1/items/{id}/targets",
    "/api/v1/items/{id}/deliveries",
    "/",
    "/xxgk",
    "/search",
    "/feed.xml",
];

/// Endpoints that read their query string as named, typed parameters: a refusal names the
/// parameter.
const TYPED_QUERY_ROUTES: [&str; 5] = [
    "/api/v1/items",
    "/api/v1/deliveries",
    "/api/v1/audit",
    "/api/v1/items/{id}/targets",
    "/api/v1/items/{id}/deliveries",
];

const PORTAL_ROUTES: [&str; 10] = [
    "/",
    "/xxgk",
    "/xxgk/catalog/{code}",
    "/xxgk/organs/{name}",
    "/xxgk/areas/{code}",
    "/xxgk/items/{id}",
    "/xxgk/attachments/{sha256}",
    "/xxgk/cleanup",
    "/search",
    "/feed.xml",
];

/// What an answer must be, beyond "not 5xx, not dropped, API errors shaped".
#[derive(Clone, Debug)]
enum Rule {
    Any,
    Status(u16),
    /// Some 4xx.
    Refused,
    /// A 4xx whose `field` names this parameter.
    RefusedNaming(String),
    /// If refused (4xx), the `field` names this parameter.
    NamingIfRefused(String),
}

/// Which item a JSON-body operation needs, made fresh for each request.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Needs {
    Nothing,
    Draft,
    InReview,
    Checked,
    Approved,
    Published,
}

struct BodyOp {
    method: Method,
    path: &'static str,
    needs: Needs,
    /// String fields (or string-array fields) of the body.
    strings: &'static [&'static str],
    /// Where a huge number goes.
    number_field: &'static str,
}

const ITEM_STRINGS: &[&str] = &[
    "title",
    "body",
    "summary",
    "disclosure",
    "legal_reason",
    "index_no",
    "issuers",
    "doc_no",
    "written_date",
    "topic",
    "validity",
    "genre",
    "keywords",
    "catalog",
    "area_code",
    "tags",
    "interprets",
];

fn body_ops() -> Vec<BodyOp> {
    let op = |method, path, needs, strings, number_field| BodyOp {
        method,
        path,
        needs,
        strings,
        number_field,
    };
    vec![
        op(
            Method::POST,
            "/api/v1/session",
            Needs::Nothing,
            &["username", "password"],
            "username",
        ),
        op(
            Method::POST,
            "/api/v1/users",
            Needs::Nothing,
            &["username", "display_name", "role", "area_code", "password"],
            "username",
        ),
        op(
            Method::POST,
            "/api/v1/tokens",
            Needs::Nothing,
            &["name", "user_id"],
            "name",
        ),
        op(
            Method::POST,
            "/api/v1/items",
            Needs::Nothing,
            ITEM_STRINGS,
            "title",
        ),
        op(
            Method::PUT,
            "/api/v1/items/{id}",
            Needs::Draft,
            ITEM_STRINGS,
            "title",
        ),
        op(
            Method::POST,
            "/api/v1/items/{id}/confidentiality-check",
            Needs::InReview,
            &["comment"],
            "version",
        ),
        op(
            Method::POST,
            "/api/v1/items/{id}/approve",
            Needs::Checked,
            &["comment"],
            "version",
        ),
        op(
            Method::POST,
            "/api/v1/items/{id}/reject",
            Needs::InReview,
            &["comment"],
            "version",
        ),
        op(
            Method::POST,
            "/api/v1/items/{id}/publish",
            Needs::Approved,
            &["channels", "targets"],
            "channels",
        ),
        op(
            Method::POST,
            "/api/v1/items/{id}/withdraw",
            Needs::Published,
            &["reason"],
            "reason",
        ),
        op(
            Method::POST,
            "/api/v1/targets",
            Needs::Nothing,
            &["channel", "name", "area_code", "catalogs", "tags"],
            "name",
        ),
        op(
            Method::POST,
            "/api/v1/organs",
            Needs::Nothing,
            &["name", "aliases", "area_code"],
            "name",
        ),
    ]
}

fn base_body(path: &str) -> Value {
    match path {
        "/api/v1/session" => json!({"username": "admin", "password": "admin-password-1"}),
        "/api/v1/users" => {
            json!({"username": format!("sweep-{}", uuid::Uuid::new_v4().simple()), "display_name": "张三", "role": "publisher", "area_code": COUNTY, "password": "sweep-password-1"})
        }
        "/api/v1/tokens" => json!({"name": "sweep", "user_id": null}),
        "/api/v1/items" | "/api/v1/items/{id}" => {
            let mut body = item_body(COUNTY);
            body["legal_reason"] = json!("无");
            body["interprets"] = Value::Null;
            body
        }
        "/api/v1/items/{id}/confidentiality-check" => {
            json!({"version": 1, "confirmed": true, "comment": "未发现涉密内容"})
        }
        "/api/v1/items/{id}/approve" => json!({"version": 1, "comment": "同意"}),
        "/api/v1/items/{id}/reject" => json!({"version": 1, "comment": "请修改"}),
        "/api/v1/items/{id}/publish" => json!({"channels": ["portal"], "targets": []}),
        "/api/v1/items/{id}/withdraw" => json!({"reason": "政策调整"}),
        "/api/v1/targets" => {
            json!({"channel": "portal", "name": "门户", "area_code": COUNTY, "catalogs": [], "tags": []})
        }
        "/api/v1/organs" => {
            json!({"name": format!("峨山彝族自治县机关{}", uuid::Uuid::new_v4().simple()), "aliases": ["县机关"], "area_code": COUNTY})
        }
        _ => json!({}),
    }
}

struct Sweep<'a> {
    app: &'a TestApp,
    backend: Backend,
    sent: usize,
    failures: Vec<String>,
    /// Normal values for path parameters other than the one being swept.
    item_id: String,
    sha256: String,
}

struct Sent {
    method: Method,
    url: String,
    admin: bool,
    body: Option<(String, Vec<u8>)>,
    headers: Vec<(&'static str, String)>,
    what: String,
}

/// Whether a percent-encoded value decodes to text holding a control character.
fn holds_control_character(value: &str) -> bool {
    ["%00", "%01", "%7F"]
        .iter()
        .any(|encoded| value.contains(encoded))
}

fn field_matches(field: Option<&str>, name: &str) -> bool {
    field.is_some_and(|f| {
        f == name || f.starts_with(&format!("{name}[")) || f.starts_with(&format!("{name}."))
    })
}

impl Sweep<'_> {
    async fn send(&mut self, sent: Sent, rule: Rule) {
        self.sent += 1;
        let path = sent.url.clone();
        let url = format!("{}{}", self.app.address, sent.url);
        let shown: String = if path.chars().count() > 120 {
            format!(
                "{}…({} chars)",
                path.chars().take(120).collect::<String>(),
                path.chars().count()
            )
        } else {
            path.clone()
        };
        let who = if sent.admin { "admin" } else { "anonymous" };
        let label = format!(
            "[{:?}] {} {shown} as {who}{}",
            self.backend, sent.method, sent.what
        );
        match reqwest::Url::parse(&url) {
            Ok(parsed) if parsed.as_str() == url => {}
            Ok(parsed) => {
                self.failures.push(format!(
                    "{label}: the client would send {} instead",
                    parsed.as_str()
                ));
                return;
            }
            Err(e) => {
                self.failures.push(format!("{label}: unparseable URL: {e}"));
                return;
            }
        }
        let mut request = self.app.client.request(sent.method.clone(), &url);
        if sent.admin {
            request = request.bearer_auth(&self.app.tokens["admin"]);
        }
        for (name, value) in &sent.headers {
            request = request.header(*name, value);
        }
        if let Some((content_type, bytes)) = sent.body {
            request = request.header("content-type", content_type).body(bytes);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                self.failures.push(format!("{label}: dropped connection: {e}"));
                return;
            }
        };
        let status = response.status().as_u16();
        let text = match response.text().await {
            Ok(text) => text,
            Err(e) => {
                self.failures
                    .push(format!("{label}: {status}, body cut off: {e}"));
                return;
            }
        };
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let short: String = text.chars().take(300).collect();
        let mut problems = Vec::new();
        if status >= 500 {
            problems.push(format!("{status}"));
        }
        let api = path.starts_with("/api/v1");
        let field = json["error"]["field"].as_str();
        if api && (400..500).contains(&status) {
            let error = &json["error"];
            let shaped = error["code"].is_string()
                && error["message"].is_string()
                && error.as_object().is_some_and(|e| e.contains_key("field"))
                && (error["field"].is_null() || error["field"].is_string());
            if !shaped {
                problems.push(format!(
                    "{status} without an {{\"error\":{{code,message,field}}}} body"
                ));
            }
        }
        let refused = (400..500).contains(&status);
        match &rule {
            Rule::Any => {}
            Rule::Status(expected) if status != *expected => {
                problems.push(format!("expected {expected}, got {status}"));
            }
            Rule::Status(_) => {}
            Rule::Refused if !refused => problems.push(format!("expected a 4xx, got {status}")),
            Rule::Refused => {}
            Rule::RefusedNaming(name) if !refused || !field_matches(field, name) => problems.push(format!(
                "expected a 4xx naming field `{name}`, got {status} with field {field:?}"
            )),
            Rule::RefusedNaming(_) => {}
            Rule::NamingIfRefused(name) if refused && !field_matches(field, name) => problems.push(format!(
                "a refusal should name field `{name}`, got {status} with field {field:?}"
            )),
            Rule::NamingIfRefused(_) => {}
        }
        if !problems.is_empty() {
            self.failures
                .push(format!("{label}: {}; body: {short}", problems.join("; ")));
        }
    }

    fn normal(&self, param: &str) -> String {
        match param {
            "id" => self.item_id.clone(),
            "version" => "1".into(),
            "channel" => "portal".into(),
            "sha256" => self.sha256.clone(),
            "code" => "530426".into(),
            "name" => "%E5%B3%A8%E5%B1%B1".into(),
            other => panic!("no normal value for {{{other}}}"),
        }
    }

    /// A fresh item in the state `needs`, or none.
    async fn fixture(&self, needs: Needs) -> Option<String> {
        if needs == Needs::Nothing {
            return None;
        }
        let app = self.app;
        let id = app.create_item("publisher", &item_body(COUNTY)).await;
        match needs {
            Needs::Draft | Needs::Nothing => {}
            Needs::InReview | Needs::Checked => {
                let submitted = app
                    .post("publisher", &format!("/api/v1/items/{id}/submit"), &json!({}))
                    .await;
                assert_eq!(submitted.status, 200, "{}", submitted.json);
                if needs == Needs::Checked {
                    let path = format!("/api/v1/items/{id}/confidentiality-check");
                    let checked = app
                        .post("reviewer", &path, &json!({"version": 1, "confirmed": true}))
                        .await;
                    assert_eq!(checked.status, 200, "{}", checked.json);
                }
            }
            Needs::Approved | Needs::Published => {
                let approved = app.approve("publisher", "reviewer", &id).await;
                assert_eq!(approved.status, 200, "{}", approved.json);
                if needs == Needs::Published {
                    let published = app.publish("publisher", &id, &format!("sweep-{id}")).await;
                    assert_eq!(published.status, 201, "{}", published.json);
                }
            }
        }
        Some(id)
    }
}

fn params_of(path: &str) -> Vec<String> {
    path.split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name.to_owned()))
        .collect()
}

fn json_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("json")
}

on_both_databases! {
    async fn no_value_anywhere_makes_the_server_fail(app: TestApp) {
        let started = std::time::Instant::now();
        let pdf = b"%PDF-1.7\n%sweep\n".to_vec();
        let stored = app.upload("publisher", "application/pdf", pdf).await;
        let sha256 = stored.json["sha256"].as_str().expect("sha").to_owned();
        let mut body = item_body(COUNTY);
        body["attachments"] = json!([{"sha256": sha256, "filename": "附件.pdf"}]);
        let item_id = app.publish_new(&body, &json!({})).await;
        app.deliver_due().await;
        let backend = if app.hub.settings.storage.database_url.starts_with("postgres") { Backend::Postgres } else { Backend::Sqlite };
        let mut sweep = Sweep { app: &app, backend, sent: 0, failures: Vec::new(), item_id, sha256 };
        let values = extremes();

        let api: Vec<(Method, String)> = herald::http::api_routes()
            .iter()
            .map(|r| (r.method.as_str().parse().expect("method"), r.path.to_owned()))
            .collect();
        let portal: Vec<(Method, String)> = PORTAL_ROUTES.iter().map(|p| (Method::GET, (*p).to_owned())).collect();
        let all: Vec<(Method, String)> = api.iter().chain(portal.iter()).cloned().collect();

        // Every path parameter of every route, with every value; other parameters normal.
        for (method, path) in &all {
            let params = params_of(path);
            let is_api = path.starts_with("/api/v1");
            for param in &params {
                for value in &values {
                    let mut url = path.replace(&format!("{{{param}}}"), value);
                    for other in params.iter().filter(|p| *p != param) {
                        url = url.replace(&format!("{{{other}}}"), &sweep.normal(other));
                    }
                    let body = (*method != Method::GET && *method != Method::DELETE)
                        .then(|| ("application/json".to_owned(), json_bytes(&base_body(path))));
                    let headers = if path.ends_with("/publish") { vec![("Idempotency-Key", format!("sweep-{}", sweep.sent))] } else { Vec::new() };
                    for admin in [true, false] {
                        // A control character is refused at the edge, before anyone is asked
                        // who they are: the answer names the path, for anyone.
                        let rule = if holds_control_character(value) {
                            Rule::RefusedNaming("path".into())
                        } else if is_api && !admin {
                            Rule::Status(401)
                        } else {
                            Rule::Any
                        };
                        let sent = Sent { method: method.clone(), url: url.clone(), admin, body: body.clone(), headers: headers.clone(), what: format!(" ({{{param}}})") };
                        sweep.send(sent, rule).await;
                    }
                }
            }
        }

        // Every query parameter of list endpoints and endpoints with a query, with every value.
        for route in QUERY_ROUTES {
            let base = route.replace("{id}", &sweep.item_id);
            let typed = TYPED_QUERY_ROUTES.contains(&route);
            let is_api = route.starts_with("/api/v1");
            for param in QUERY_PARAMS {
                for value in &values {
                    let url = format!("{base}?{param}={value}");
                    let callers: &[bool] = if is_api { &[true, false] } else { &[false] };
                    for &admin in callers {
                        let rule = if holds_control_character(value) {
                            Rule::RefusedNaming(param.to_owned())
                        } else if is_api && !admin {
                            Rule::Status(401)
                        } else if typed {
                            Rule::NamingIfRefused(param.to_owned())
                        } else {
                            Rule::Any
                        };
                        let sent = Sent { method: Method::GET, url: url.clone(), admin, body: None, headers: Vec::new(), what: String::new() };
                        sweep.send(sent, rule).await;
                    }
                }
            }
        }

        // JSON bodies: NUL in each string, huge numbers, a 1 MB string, the wrong media type,
        // trailing bytes and deep nesting.
        for op in body_ops() {
            let mut variants: Vec<(String, String, Vec<u8>, Rule)> = Vec::new();
            for field in op.strings {
                let mut body = base_body(op.path);
                body[*field] = if body[*field].is_array() { json!(["a\u{0}b"]) } else { json!("a\u{0}b") };
                variants.push((format!(" (NUL in `{field}`)"), "application/json".into(), json_bytes(&body), Rule::RefusedNaming((*field).to_owned())));
            }
            for number in ["1e400", "18446744073709551616", "-9223372036854775809"] {
                let mut body = base_body(op.path);
                body[op.number_field] = json!("__NUMBER__");
                let text = body.to_string().replace("\"__NUMBER__\"", number);
                variants.push((format!(" ({number} in `{}`)", op.number_field), "application/json".into(), text.into_bytes(), Rule::Refused));
            }
            let mut body = base_body(op.path);
            let first = op.strings[0];
            body[first] = if body[first].is_array() { json!(["a".repeat(1 << 20)]) } else { json!("a".repeat(1 << 20)) };
            // Only "no 5xx": a long comment may be acceptable.
            variants.push((format!(" (1 MB `{first}`)"), "application/json".into(), json_bytes(&body), Rule::Any));
            variants.push((" (application/jsonx)".into(), "application/jsonx".into(), json_bytes(&base_body(op.path)), Rule::Status(415)));
            let mut trailing = json_bytes(&base_body(op.path));
            trailing.extend_from_slice(b"garbage");
            variants.push((" (valid JSON then `garbage`)".into(), "application/json".into(), trailing, Rule::Status(400)));
            variants.push((" (`{}garbage`)".into(), "application/json".into(), b"{}garbage".to_vec(), Rule::Status(400)));
            let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
            variants.push((" (nested 10,000 deep)".into(), "application/json".into(), deep.into_bytes(), Rule::Refused));
            for (what, content_type, bytes, rule) in variants {
                let id = sweep.fixture(op.needs).await;
                let url = match &id { Some(id) => op.path.replace("{id}", id), None => op.path.to_owned() };
                let headers = if op.path.ends_with("/publish") { vec![("Idempotency-Key", format!("sweep-body-{}", sweep.sent))] } else { Vec::new() };
                let login = op.path == "/api/v1/session";
                for admin in [false, true] {
                    let rule = if admin || login { rule.clone() } else { Rule::Status(401) };
                    let sent = Sent { method: op.method.clone(), url: url.clone(), admin, body: Some((content_type.clone(), bytes.clone())), headers: headers.clone(), what: what.clone() };
                    sweep.send(sent, rule).await;
                }
            }
        }

        let sent = sweep.sent;
        let failures = std::mem::take(&mut sweep.failures);
        eprintln!("[{backend:?}] sweep: {sent} requests in {:.1} s, {} failed", started.elapsed().as_secs_f64(), failures.len());
        assert!(failures.is_empty(), "{} of {sent} requests failed:\n{}", failures.len(), failures.join("\n"));
    }
}
