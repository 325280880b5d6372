//! The authorization matrix: every caller × every API operation × a resource inside and outside
//! the caller's area, checked against the table `MATRIX`, on SQLite and PostgreSQL.
//!
//! Besides the status each cell names, every answer to a signed-in caller is searched for the
//! ids, titles and names of resources in areas that are neither within nor above the caller's
//! (zero leaks), and list answers are checked row by row against the caller's area.

use std::collections::{BTreeSet, HashMap};

use herald_channels::ChannelKind;
use regex::Regex;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, Reply, TestApp, VILLAGE_A, VILLAGE_B, item_body, spawn_app_with};
use crate::scripted::{Scripted, Step};

const COUNTY: &str = "530426";
const TOWNSHIP: &str = "530426101";
/// 化念镇: outside for everyone of 甸中镇 (530426101).
const OTHER_TOWNSHIP: &str = "530426102";

/// The callers, in the order of the table's columns.
const CALLERS: [&str; 12] = [
    "admin",
    "publisher",
    "reviewer",
    "township_publisher",
    "township_admin",
    "township_reviewer",
    "village_a",
    "village_b",
    "anonymous",
    "disabled",
    "disabled_session",
    "revoked",
];

/// Which resource a cell is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    /// The operation names no resource.
    Na,
    /// A resource in the caller's own area (the county's for callers without credentials).
    In,
    /// A resource in an area outside the caller's (another village, or 化念镇 for 甸中镇).
    Out,
    /// The caller's own token.
    Own,
    /// An id that does not exist.
    Missing,
    /// A published county item (an ancestor area of every township and village).
    AncestorPublished,
    /// A county draft.
    AncestorDraft,
    /// A county item written by the publisher, edited by the county admin (v2) and the
    /// publisher again (v3), in review.
    AdminEdited,
    /// Uploaded by village A, referenced by a village A `not_public` item.
    AttVillageA,
    /// Uploaded by the county publisher, referenced by a 化念镇 item.
    AttOtherTownship,
    /// Uploaded by village A and referenced by nothing.
    AttOrphan,
    /// Uploaded by village B, referenced by version 1 of a village B item but not version 2.
    AttOldVersion,
    /// Attached to a live published county item.
    AttPublished,
    /// Attached to a county item that was published and withdrawn.
    AttWithdrawn,
}
use Scope::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// This status exactly.
    Is(u16),
    /// 403 or 404: refused without saying more.
    Refused,
    /// Exactly what the same caller gets for a nonexistent id (status, code, field, message
    /// apart from the id).
    LikeMissing,
    /// No such cell (no resource outside a county caller's area, …).
    NotApplicable,
}

const OK: Expect = Expect::Is(200);
const CR: Expect = Expect::Is(201);
const NC: Expect = Expect::Is(204);
const U: Expect = Expect::Is(401);
const F: Expect = Expect::Is(403);
const NF: Expect = Expect::Is(404);
const V: Expect = Expect::Is(422);
const R: Expect = Expect::Refused;
const LM: Expect = Expect::LikeMissing;
const NA: Expect = Expect::NotApplicable;

type Row = (&'static str, Scope, [Expect; 12]);

/// The expected answers. Operations are `METHOD path` as in `api_routes()`, with `#variant` or
/// `?query` added where one route is checked in several ways.
/// OK 200, CR 201, NC 204, U 401, F 403, NF 404, V 422, R 403-or-404, LM like a nonexistent id,
/// NA no such cell.
#[rustfmt::skip]
const MATRIX: &[Row] = &[
    //                                                              county           | township 101   | villages  | no valid credentials
    // operation                                      scope           admin pub  rev  | pub  adm  rev  | a    b    | anon disab d_ses revok
    ("GET /healthz",                                   Na,            [OK,  OK,  OK,   OK,  OK,  OK,   OK,  OK,   OK,  OK,  OK,  OK]),
    // Metrics answer only the scraper's token (server.metrics_token), never a user's.
    ("GET /metrics",                                   Na,            [U,   U,   U,    U,   U,   U,    U,   U,    U,   U,   U,   U]),
    ("GET /api/openapi.json",                          Na,            [OK,  OK,  OK,   OK,  OK,  OK,   OK,  OK,   OK,  OK,  OK,  OK]),
    ("POST /api/v1/session",                           Na,            [OK,  OK,  OK,   OK,  OK,  OK,   OK,  OK,   OK,  OK,  OK,  OK]),
    ("POST /api/v1/session#disabled-user",             Na,            [NA,  NA,  NA,   NA,  NA,  NA,   NA,  NA,   U,   NA,  NA,  NA]),
    ("DELETE /api/v1/session",                         Na,            [NC,  NC,  NC,   NC,  NC,  NC,   NC,  NC,   NC,  NC,  NC,  NC]),
    ("GET /api/v1/me",                                 Na,            [OK,  OK,  OK,   OK,  OK,  OK,   OK,  OK,   U,   U,   U,   U]),
    ("GET /api/v1/areas",                              Na,            [OK,  OK,  OK,   OK,  OK,  OK,   OK,  OK,   U,   U,   U,   U]),
    ("GET /api/v1/catalog",                            Na,            [OK,  OK,  OK,   OK,  OK,  OK,   OK,  OK,   U,   U,   U,   U]),
    // Reference data every form offers: the 主题分类 vocabulary and the organ list (public
    // bodies, like the area tree: read by everyone signed in, whatever their area).
    ("GET /api/v1/topics",                             Na,            [OK,  OK,  OK,   OK,  OK,  OK,   OK,  OK,   U,   U,   U,   U]),
    ("GET /api/v1/organs",                             Na,            [OK,  OK,  OK,   OK,  OK,  OK,   OK,  OK,   U,   U,   U,   U]),
    // The organ list is edited by administrators, for organs of their area.
    ("POST /api/v1/organs",                            In,            [CR,  F,   F,    F,   CR,  F,    F,   F,    U,   U,   U,   U]),
    ("POST /api/v1/organs",                            Out,           [NA,  NA,  NA,   F,   F,   F,    F,   F,    NA,  NA,  NA,  NA]),
    ("PATCH /api/v1/organs/{id}",                      In,            [OK,  F,   F,    F,   OK,  F,    F,   F,    U,   U,   U,   U]),
    ("PATCH /api/v1/organs/{id}",                      Out,           [NA,  NA,  NA,   F,   F,   F,    F,   F,    NA,  NA,  NA,  NA]),
    // The audit log: administrators and reviewers, scoped like items.
    ("GET /api/v1/audit",                              Na,            [OK,  F,   OK,   F,   OK,  OK,   F,   F,    U,   U,   U,   U]),
    // 年报 statistics: every member of staff, counted within their own area.
    ("GET /api/v1/reports/annual",                     Na,            [OK,  OK,  OK,   OK,  OK,  OK,   OK,  OK,   U,   U,   U,   U]),
    ("GET /api/v1/reports/annual.csv",                 Na,            [OK,  OK,  OK,   OK,  OK,  OK,   OK,  OK,   U,   U,   U,   U]),
    // Users: administrators only.
    ("GET /api/v1/users",                              Na,            [OK,  F,   F,    F,   OK,  F,    F,   F,    U,   U,   U,   U]),
    ("POST /api/v1/users",                             In,            [CR,  F,   F,    F,   CR,  F,    F,   F,    U,   U,   U,   U]),
    ("POST /api/v1/users",                             Out,           [NA,  NA,  NA,   F,   F,   F,    F,   F,    NA,  NA,  NA,  NA]),
    ("POST /api/v1/users/{id}/disable",                In,            [OK,  F,   F,    F,   OK,  F,    F,   F,    U,   U,   U,   U]),
    ("POST /api/v1/users/{id}/disable",                Out,           [NA,  NA,  NA,   F,   R,   F,    F,   F,    NA,  NA,  NA,  NA]),
    ("POST /api/v1/users/{id}/unlock",                 In,            [OK,  F,   F,    F,   OK,  F,    F,   F,    U,   U,   U,   U]),
    ("POST /api/v1/users/{id}/unlock",                 Out,           [NA,  NA,  NA,   F,   R,   F,    F,   F,    NA,  NA,  NA,  NA]),
    ("POST /api/v1/users/{id}/password-reset",         In,            [OK,  F,   F,    F,   OK,  F,    F,   F,    U,   U,   U,   U]),
    ("POST /api/v1/users/{id}/password-reset",         Out,           [NA,  NA,  NA,   F,   R,   F,    F,   F,    NA,  NA,  NA,  NA]),
    // Everyone signed in changes their own password, proving the current one (a wrong one here).
    ("POST /api/v1/me/password",                       Na,            [V,   V,   V,    V,   V,   V,    V,   V,    U,   U,   U,   U]),
    // Tokens: everyone their own; administrators those of their area's users.
    ("GET /api/v1/tokens",                             Na,            [OK,  OK,  OK,   OK,  OK,  OK,   OK,  OK,   U,   U,   U,   U]),
    ("POST /api/v1/tokens",                            Na,            [CR,  CR,  CR,   CR,  CR,  CR,   CR,  CR,   U,   U,   U,   U]),
    ("POST /api/v1/tokens#for-another-user",           In,            [CR,  F,   F,    F,   CR,  F,    F,   F,    U,   U,   U,   U]),
    ("POST /api/v1/tokens#for-another-user",           Out,           [NA,  NA,  NA,   F,   R,   F,    F,   F,    NA,  NA,  NA,  NA]),
    ("DELETE /api/v1/tokens/{id}",                     Own,           [OK,  OK,  OK,   OK,  OK,  OK,   OK,  OK,   NA,  NA,  NA,  NA]),
    ("DELETE /api/v1/tokens/{id}",                     In,            [OK,  F,   F,    F,   OK,  F,    F,   F,    U,   U,   U,   U]),
    ("DELETE /api/v1/tokens/{id}",                     Out,           [NA,  NA,  NA,   R,   R,   R,    R,   R,    NA,  NA,  NA,  NA]),
    // Items: reading.
    ("GET /api/v1/items",                              Na,            [OK,  OK,  OK,   OK,  OK,  OK,   OK,  OK,   U,   U,   U,   U]),
    ("GET /api/v1/items?area={area}",                  In,            [OK,  OK,  OK,   OK,  OK,  OK,   OK,  OK,   U,   U,   U,   U]),
    ("GET /api/v1/items?area={area}",                  Out,           [NA,  NA,  NA,   F,   F,   F,    F,   F,    NA,  NA,  NA,  NA]),
    ("GET /api/v1/items/{id}",                         In,            [OK,  OK,  OK,   OK,  OK,  OK,   OK,  OK,   U,   U,   U,   U]),
    ("GET /api/v1/items/{id}",                         Out,           [NA,  NA,  NA,   F,   F,   F,    F,   F,    NA,  NA,  NA,  NA]),
    ("GET /api/v1/items/{id}/versions",                In,            [OK,  OK,  OK,   OK,  OK,  OK,   OK,  OK,   U,   U,   U,   U]),
    ("GET /api/v1/items/{id}/versions",                Out,           [NA,  NA,  NA,   F,   F,   F,    F,   F,    NA,  NA,  NA,  NA]),
    ("GET /api/v1/items/{id}/versions/{version}",      In,            [OK,  OK,  OK,   OK,  OK,  OK,   OK,  OK,   U,   U,   U,   U]),
    ("GET /api/v1/items/{id}/versions/{version}",      Out,           [NA,  NA,  NA,   F,   F,   F,    F,   F,    NA,  NA,  NA,  NA]),
    ("GET /api/v1/items/{id}/targets",                 In,            [OK,  OK,  OK,   OK,  OK,  OK,   OK,  OK,   U,   U,   U,   U]),
    ("GET /api/v1/items/{id}/targets",                 Out,           [NA,  NA,  NA,   F,   F,   F,    F,   F,    NA,  NA,  NA,  NA]),
    ("GET /api/v1/items/{id}/preview/{channel}",       In,            [OK,  OK,  OK,   OK,  OK,  OK,   OK,  OK,   U,   U,   U,   U]),
    ("GET /api/v1/items/{id}/preview/{channel}",       Out,           [NA,  NA,  NA,   F,   F,   F,    F,   F,    NA,  NA,  NA,  NA]),
    ("GET /api/v1/items/{id}/deliveries",              In,            [OK,  OK,  OK,   OK,  OK,  OK,   OK,  OK,   U,   U,   U,   U]),
    ("GET /api/v1/items/{id}/deliveries",              Out,           [NA,  NA,  NA,   F,   F,   F,    F,   F,    NA,  NA,  NA,  NA]),
    ("GET /api/v1/items/{id}/receipts.csv",            In,            [OK,  OK,  OK,   OK,  OK,  OK,   OK,  OK,   U,   U,   U,   U]),
    ("GET /api/v1/items/{id}/receipts.csv",            Out,           [NA,  NA,  NA,   F,   F,   F,    F,   F,    NA,  NA,  NA,  NA]),
    ("GET /api/v1/interpretations/due",                Na,            [OK,  OK,  OK,   OK,  OK,  OK,   OK,  OK,   U,   U,   U,   U]),
    // Items: authoring (publisher, village_operator, admin). Outside: 422 on area_code.
    ("POST /api/v1/items",                             In,            [CR,  CR,  F,    CR,  CR,  F,    CR,  CR,   U,   U,   U,   U]),
    ("POST /api/v1/items",                             Out,           [NA,  NA,  NA,   V,   V,   F,    V,   V,    NA,  NA,  NA,  NA]),
    ("POST /api/v1/items#interprets",                  Missing,       [V,   V,   F,    V,   V,   F,    V,   V,    U,   U,   U,   U]),
    ("POST /api/v1/items#interprets",                  Out,           [NA,  NA,  NA,   LM,  LM,  F,    LM,  LM,   NA,  NA,  NA,  NA]),
    ("POST /api/v1/items#interprets",                  AncestorDraft, [NA,  NA,  NA,   LM,  LM,  F,    LM,  LM,   NA,  NA,  NA,  NA]),
    ("POST /api/v1/items#interprets",                  AncestorPublished, [NA, NA, NA, CR,  CR,  F,    CR,  CR,   NA,  NA,  NA,  NA]),
    ("PUT /api/v1/items/{id}",                         In,            [OK,  OK,  F,    OK,  OK,  F,    OK,  OK,   U,   U,   U,   U]),
    ("PUT /api/v1/items/{id}",                         Out,           [NA,  NA,  NA,   F,   F,   F,    F,   F,    NA,  NA,  NA,  NA]),
    ("POST /api/v1/items/{id}/submit",                 In,            [OK,  OK,  F,    OK,  OK,  F,    OK,  OK,   U,   U,   U,   U]),
    ("POST /api/v1/items/{id}/submit",                 Out,           [NA,  NA,  NA,   F,   F,   F,    F,   F,    NA,  NA,  NA,  NA]),
    // Review (reviewer, admin), never by anyone who wrote any version.
    ("POST /api/v1/items/{id}/confidentiality-check",  In,            [OK,  F,   OK,   F,   OK,  OK,   F,   F,    U,   U,   U,   U]),
    ("POST /api/v1/items/{id}/confidentiality-check",  Out,           [NA,  NA,  NA,   F,   F,   F,    F,   F,    NA,  NA,  NA,  NA]),
    ("POST /api/v1/items/{id}/confidentiality-check",  AdminEdited,   [F,   F,   OK,   F,   F,   F,    F,   F,    NA,  NA,  NA,  NA]),
    ("POST /api/v1/items/{id}/approve",                In,            [OK,  F,   OK,   F,   OK,  OK,   F,   F,    U,   U,   U,   U]),
    ("POST /api/v1/items/{id}/approve",                Out,           [NA,  NA,  NA,   F,   F,   F,    F,   F,    NA,  NA,  NA,  NA]),
    ("POST /api/v1/items/{id}/approve",                AdminEdited,   [F,   F,   OK,   F,   F,   F,    F,   F,    NA,  NA,  NA,  NA]),
    ("POST /api/v1/items/{id}/reject",                 In,            [OK,  F,   OK,   F,   OK,  OK,   F,   F,    U,   U,   U,   U]),
    ("POST /api/v1/items/{id}/reject",                 Out,           [NA,  NA,  NA,   F,   F,   F,    F,   F,    NA,  NA,  NA,  NA]),
    ("POST /api/v1/items/{id}/reject",                 AdminEdited,   [F,   F,   OK,   F,   F,   F,    F,   F,    NA,  NA,  NA,  NA]),
    // Publishing (may_publish: publisher, village_operator, admin), withdrawing (may_withdraw:
    // publisher, reviewer, admin).
    ("POST /api/v1/items/{id}/publish",                In,            [CR,  CR,  F,    CR,  CR,  F,    CR,  CR,   U,   U,   U,   U]),
    ("POST /api/v1/items/{id}/publish",                Out,           [NA,  NA,  NA,   F,   F,   F,    F,   F,    NA,  NA,  NA,  NA]),
    ("POST /api/v1/items/{id}/withdraw",               In,            [OK,  OK,  OK,   OK,  OK,  OK,   F,   F,    U,   U,   U,   U]),
    ("POST /api/v1/items/{id}/withdraw",               Out,           [NA,  NA,  NA,   F,   F,   F,    F,   F,    NA,  NA,  NA,  NA]),
    // Attachments: readable through an item the caller may see (any version), or by their
    // uploader while unreferenced; otherwise 404 like a nonexistent hash.
    ("POST /api/v1/attachments",                       Na,            [CR,  CR,  CR,   CR,  CR,  CR,   CR,  CR,   U,   U,   U,   U]),
    ("GET /api/v1/attachments/{sha256}",               AttVillageA,   [OK,  OK,  OK,   OK,  OK,  OK,   OK,  NF,   U,   U,   U,   U]),
    ("GET /api/v1/attachments/{sha256}",               AttOtherTownship, [OK, OK, OK,  NF,  NF,  NF,   NF,  NF,   U,   U,   U,   U]),
    ("GET /api/v1/attachments/{sha256}",               AttOldVersion, [OK,  OK,  OK,   OK,  OK,  OK,   NF,  OK,   U,   U,   U,   U]),
    ("GET /api/v1/attachments/{sha256}",               AttOrphan,     [NF,  NF,  NF,   NF,  NF,  NF,   OK,  NF,   U,   U,   U,   U]),
    ("GET /api/v1/attachments/{sha256}",               Missing,       [NF,  NF,  NF,   NF,  NF,  NF,   NF,  NF,   U,   U,   U,   U]),
    // The portal serves only attachments of live published pages, to anyone.
    ("GET /xxgk/attachments/{sha256}",                 AttPublished,  [NA,  NA,  NA,   NA,  NA,  NA,   NA,  NA,   OK,  NA,  NA,  NA]),
    ("GET /xxgk/attachments/{sha256}",                 AttWithdrawn,  [NA,  NA,  NA,   NA,  NA,  NA,   NA,  NA,   NF,  NA,  NA,  NA]),
    ("GET /xxgk/attachments/{sha256}",                 AttVillageA,   [NA,  NA,  NA,   NA,  NA,  NA,   NA,  NA,   NF,  NA,  NA,  NA]),
    ("GET /xxgk/attachments/{sha256}",                 AttOrphan,     [NA,  NA,  NA,   NA,  NA,  NA,   NA,  NA,   NF,  NA,  NA,  NA]),
    // Deliveries and targets.
    ("GET /api/v1/deliveries",                         Na,            [OK,  OK,  OK,   OK,  OK,  OK,   OK,  OK,   U,   U,   U,   U]),
    ("GET /api/v1/deliveries?area={area}",             In,            [OK,  OK,  OK,   OK,  OK,  OK,   OK,  OK,   U,   U,   U,   U]),
    ("GET /api/v1/deliveries?area={area}",             Out,           [NA,  NA,  NA,   F,   F,   F,    F,   F,    NA,  NA,  NA,  NA]),
    ("POST /api/v1/deliveries/{id}/retry",             In,            [OK,  OK,  F,    OK,  OK,  F,    F,   F,    U,   U,   U,   U]),
    ("POST /api/v1/deliveries/{id}/retry",             Out,           [NA,  NA,  NA,   R,   R,   R,    R,   R,    NA,  NA,  NA,  NA]),
    ("POST /api/v1/deliveries/{id}/reconcile",         In,            [OK,  OK,  F,    OK,  OK,  F,    F,   F,    U,   U,   U,   U]),
    ("POST /api/v1/deliveries/{id}/reconcile",         Out,           [NA,  NA,  NA,   R,   R,   R,    R,   R,    NA,  NA,  NA,  NA]),
    ("POST /api/v1/deliveries/{id}/cancel",            In,            [OK,  OK,  F,    OK,  OK,  F,    OK,  OK,   U,   U,   U,   U]),
    ("POST /api/v1/deliveries/{id}/cancel",            Out,           [NA,  NA,  NA,   R,   R,   R,    R,   R,    NA,  NA,  NA,  NA]),
    // Receipts that matched no delivery: administrators, for targets in their area.
    ("GET /api/v1/receipts/unmatched",                 Na,            [OK,  F,   F,    F,   OK,  F,    F,   F,    U,   U,   U,   U]),
    ("GET /api/v1/targets",                            Na,            [OK,  OK,  OK,   OK,  OK,  OK,   OK,  OK,   U,   U,   U,   U]),
    ("POST /api/v1/targets",                           In,            [CR,  F,   F,    F,   CR,  F,    F,   F,    U,   U,   U,   U]),
    ("POST /api/v1/targets",                           Out,           [NA,  NA,  NA,   R,   R,   R,    R,   R,    NA,  NA,  NA,  NA]),
    // The device registry: anyone of an area sees its devices; administrators register and revoke.
    ("GET /api/v1/devices",                            Na,            [OK,  OK,  OK,   OK,  OK,  OK,   OK,  OK,   U,   U,   U,   U]),
    ("POST /api/v1/devices",                           In,            [CR,  F,   F,    F,   CR,  F,    F,   F,    U,   U,   U,   U]),
    ("POST /api/v1/devices",                           Out,           [NA,  NA,  NA,   R,   R,   R,    R,   R,    NA,  NA,  NA,  NA]),
    ("POST /api/v1/devices/{id}/revoke",               In,            [OK,  F,   F,    F,   OK,  F,    F,   F,    U,   U,   U,   U]),
    ("POST /api/v1/devices/{id}/revoke",               Out,           [NA,  NA,  NA,   R,   R,   R,    R,   R,    NA,  NA,  NA,  NA]),
    // CAP alerts: administrators, for their own area.
    ("POST /api/v1/alerts/cap",                        In,            [CR,  F,   F,    F,   CR,  F,    F,   F,    U,   U,   U,   U]),
    ("POST /api/v1/alerts/cap",                        Out,           [NA,  NA,  NA,   R,   R,   R,    R,   R,    NA,  NA,  NA,  NA]),
];

/// Cells of `MATRIX` that are checked; the table may grow but never silently shrink.
const EXPECTED_CELLS: usize = 956;

fn home(caller: &str) -> &'static str {
    match caller {
        "township_publisher" | "township_admin" | "township_reviewer" => TOWNSHIP,
        "village_a" => VILLAGE_A,
        "village_b" => VILLAGE_B,
        _ => COUNTY,
    }
}

fn away(caller: &str) -> &'static str {
    match caller {
        "township_publisher" | "township_admin" | "township_reviewer" => OTHER_TOWNSHIP,
        "village_a" => VILLAGE_B,
        "village_b" => VILLAGE_A,
        other => panic!("{other} has no outside area"),
    }
}

/// Who writes (and publishes) the fixtures of an area.
fn author(area: &str) -> &'static str {
    match area {
        TOWNSHIP => "township_publisher",
        VILLAGE_A => "village_a",
        VILLAGE_B => "village_b",
        _ => "publisher",
    }
}

fn within(area: &str, scope: &str) -> bool {
    area.starts_with(scope)
}

/// Neither within the caller's area nor one of its ancestors: a resource that must never show.
fn foreign(area: &str, scope: &str) -> bool {
    !area.starts_with(scope) && !scope.starts_with(area)
}

#[derive(Clone, Debug)]
enum Cred {
    Bearer(String),
    Cookie(String),
    Nobody,
}

#[derive(Clone, Debug)]
struct Resource {
    label: String,
    areas: Vec<String>,
}

struct Req {
    method: Method,
    path: String,
    body: Option<Value>,
    raw: Option<(&'static str, Vec<u8>)>,
    headers: Vec<(&'static str, String)>,
    /// What the request is about, for failure messages.
    subject: String,
    /// The id in the path or body that a `LikeMissing` comparison blanks out.
    id: Option<String>,
}

fn req(method: Method, path: impl Into<String>) -> Req {
    Req {
        method,
        path: path.into(),
        body: None,
        raw: None,
        headers: Vec::new(),
        subject: String::new(),
        id: None,
    }
}

impl Req {
    fn json(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }
    fn about(mut self, subject: impl Into<String>) -> Self {
        self.subject = subject.into();
        self
    }
}

struct Fx {
    creds: HashMap<&'static str, Cred>,
    user_ids: HashMap<&'static str, String>,
    /// Ids and MX tags of every resource the test made, with their areas.
    registry: HashMap<String, Resource>,
    bodies: HashMap<String, Value>,
    /// Per area: the WeChat target and a published item.
    wechat: HashMap<&'static str, String>,
    live: HashMap<&'static str, String>,
    county_draft: String,
    disabled_username: String,
    /// Per area: a user other than any caller.
    clerks: HashMap<&'static str, String>,
    attachments: HashMap<&'static str, String>,
    next: u32,
    markers: Regex,
}

const PDF: &[u8] = b"%PDF-1.7\n%matrix\n";

impl Fx {
    fn tag(&mut self) -> String {
        self.next += 1;
        format!("MX{:05}", self.next)
    }

    fn register(&mut self, id: &str, tag: Option<&str>, label: String, areas: &[&str]) {
        let resource = Resource {
            label,
            areas: areas.iter().map(|a| (*a).to_owned()).collect(),
        };
        if let Some(tag) = tag {
            self.registry.insert(tag.to_owned(), resource.clone());
        }
        self.registry.insert(id.to_owned(), resource);
    }

    async fn send(&self, app: &TestApp, caller: &str, req: &Req) -> Reply {
        let url = format!("{}{}", app.address, req.path);
        let mut request = app.client.request(req.method.clone(), url);
        match &self.creds[caller] {
            Cred::Bearer(token) => request = request.bearer_auth(token),
            Cred::Cookie(session) => request = request.header("cookie", format!("herald_session={session}")),
            Cred::Nobody => {}
        }
        for (name, value) in &req.headers {
            request = request.header(*name, value);
        }
        if let Some(body) = &req.body {
            request = request.json(body);
        }
        if let Some((content_type, bytes)) = &req.raw {
            request = request.header("content-type", *content_type).body(bytes.clone());
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{} {} as {caller}: no answer: {e}", req.method, req.path));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body read");
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply {
            status,
            json,
            headers,
        }
    }

    /// A setup request that must succeed with `status`.
    async fn must(&self, app: &TestApp, caller: &str, req: Req, status: u16) -> Value {
        let reply = self.send(app, caller, &req).await;
        assert_eq!(
            reply.status, status,
            "fixture setup: {} {} as {caller}: {}",
            req.method, req.path, reply.json
        );
        reply.json
    }

    fn tagged_item(&mut self, area: &str) -> (String, Value) {
        let tag = self.tag();
        let mut body = item_body(area);
        body["title"] = json!(format!("关于做好2026年秋冬季森林防火工作的通知（{tag}）"));
        (tag, body)
    }

    async fn create(
        &mut self,
        app: &TestApp,
        user: &'static str,
        area: &str,
        body: Value,
        tag: &str,
    ) -> String {
        let created = self
            .must(
                app,
                user,
                req(Method::POST, "/api/v1/items").json(body.clone()),
                201,
            )
            .await;
        let id = created["id"].as_str().expect("id").to_owned();
        self.register(&id, Some(tag), format!("item {id} ({tag}, area {area})"), &[area]);
        self.bodies.insert(id.clone(), body);
        id
    }

    async fn draft(&mut self, app: &TestApp, area: &'static str) -> String {
        let (tag, body) = self.tagged_item(area);
        self.create(app, author(area), area, body, &tag).await
    }

    async fn submit(&self, app: &TestApp, user: &str, id: &str) -> i64 {
        let submitted = self
            .must(
                app,
                user,
                req(Method::POST, format!("/api/v1/items/{id}/submit")).json(json!({})),
                200,
            )
            .await;
        submitted["current_version"].as_i64().expect("version")
    }

    async fn in_review(&mut self, app: &TestApp, area: &'static str) -> (String, i64) {
        let id = self.draft(app, area).await;
        let version = self.submit(app, author(area), &id).await;
        (id, version)
    }

    async fn check(&self, app: &TestApp, id: &str, version: i64) {
        let path = format!("/api/v1/items/{id}/confidentiality-check");
        self.must(
            app,
            "reviewer",
            req(Method::POST, path).json(json!({"version": version, "confirmed": true})),
            200,
        )
        .await;
    }

    async fn checked(&mut self, app: &TestApp, area: &'static str) -> (String, i64) {
        let (id, version) = self.in_review(app, area).await;
        self.check(app, &id, version).await;
        (id, version)
    }

    async fn approved(&mut self, app: &TestApp, area: &'static str) -> String {
        let (id, version) = self.checked(app, area).await;
        let path = format!("/api/v1/items/{id}/approve");
        self.must(
            app,
            "reviewer",
            req(Method::POST, path).json(json!({"version": version})),
            200,
        )
        .await;
        id
    }

    async fn publish(&self, app: &TestApp, area: &str, id: &str, input: Value) {
        let mut request = req(Method::POST, format!("/api/v1/items/{id}/publish")).json(input);
        request.headers.push(("Idempotency-Key", format!("fixture-{id}")));
        self.must(app, author(area), request, 201).await;
    }

    async fn published(&mut self, app: &TestApp, area: &'static str) -> String {
        let id = self.approved(app, area).await;
        self.publish(app, area, &id, json!({})).await;
        id
    }

    /// A delivery of a fresh item of `area` to the area's WeChat target: pending, or (once
    /// sent) unconfirmed.
    async fn delivery(&mut self, app: &TestApp, area: &'static str, sent: bool) -> String {
        let id = self.approved(app, area).await;
        let target = self.wechat[area].clone();
        self.publish(
            app,
            area,
            &id,
            json!({"channels": ["wechat"], "targets": [target]}),
        )
        .await;
        if sent {
            app.deliver_due().await;
        }
        let listed = self
            .must(
                app,
                "admin",
                req(Method::GET, format!("/api/v1/items/{id}/deliveries")),
                200,
            )
            .await;
        let row = listed["deliveries"]
            .as_array()
            .expect("deliveries")
            .iter()
            .find(|d| d["target_id"] == target.as_str())
            .cloned()
            .expect("the delivery to the area's target");
        assert_eq!(
            row["state"],
            if sent { "unconfirmed" } else { "pending" },
            "{row}"
        );
        let delivery_id = row["id"].as_str().expect("id").to_owned();
        self.register(
            &delivery_id,
            None,
            format!("delivery {delivery_id} (area {area})"),
            &[area],
        );
        delivery_id
    }

    async fn user(&mut self, app: &TestApp, role: &str, area: &str) -> String {
        self.named_user(app, role, area).await.0
    }

    /// A new user of `area`; returns their id and user name.
    async fn named_user(&mut self, app: &TestApp, role: &str, area: &str) -> (String, String) {
        let tag = self.tag();
        let username = format!("user.{tag}");
        let body =
            json!({"username": username, "role": role, "area_code": area, "password": "matrix-password-1"});
        let created = self
            .must(app, "admin", req(Method::POST, "/api/v1/users").json(body), 201)
            .await;
        let id = created["user"]["id"].as_str().expect("id").to_owned();
        self.register(
            &id,
            Some(&tag),
            format!("user {id} ({tag}, area {area})"),
            &[area],
        );
        (id, username)
    }

    /// A token of `user_id` (of `area`), issued by the county admin.
    async fn token(&mut self, app: &TestApp, user_id: &str, area: &str) -> (String, String) {
        let body = json!({"name": "matrix", "user_id": user_id});
        let created = self
            .must(app, "admin", req(Method::POST, "/api/v1/tokens").json(body), 201)
            .await;
        let id = created["token"]["id"].as_str().expect("id").to_owned();
        self.register(&id, None, format!("token {id} (area {area})"), &[area]);
        (id, created["secret"].as_str().expect("secret").to_owned())
    }

    /// A user of `area` who is not `caller`.
    fn other_user(&self, area: &'static str, caller: &str) -> String {
        let name = match area {
            COUNTY if caller == "publisher" => "reviewer",
            COUNTY => "publisher",
            TOWNSHIP if caller == "township_publisher" => "township_reviewer",
            TOWNSHIP => "township_publisher",
            _ => return self.clerks[area].clone(),
        };
        self.user_ids[name].clone()
    }

    async fn upload(&mut self, app: &TestApp, user: &str, area: &str) -> String {
        let tag = self.tag();
        let mut bytes = PDF.to_vec();
        bytes.extend_from_slice(tag.as_bytes());
        let mut request = req(Method::POST, "/api/v1/attachments");
        request.raw = Some(("application/pdf", bytes));
        let stored = self.must(app, user, request, 201).await;
        let sha = stored["sha256"].as_str().expect("sha").to_owned();
        self.register(
            &sha,
            None,
            format!("attachment {sha} (uploaded in {area})"),
            &[area],
        );
        sha
    }

    fn with_attachment(body: &mut Value, sha: &str) {
        body["attachments"] = json!([{"sha256": sha, "filename": "附件.pdf"}]);
    }

    /// County item: publisher v1, admin v2, publisher v3, in review.
    async fn admin_edited(&mut self, app: &TestApp) -> (String, i64) {
        let id = self.draft(app, COUNTY).await;
        for (n, editor) in [(2, "admin"), (3, "publisher")] {
            let mut body = self.bodies[&id].clone();
            body["summary"] = json!(format!("第{n}稿"));
            self.must(
                app,
                editor,
                req(Method::PUT, format!("/api/v1/items/{id}")).json(body),
                200,
            )
            .await;
        }
        let version = self.submit(app, "publisher", &id).await;
        assert_eq!(version, 3);
        (id, version)
    }

    async fn setup(app: &TestApp) -> Fx {
        let mut fx = Fx {
            creds: HashMap::new(),
            user_ids: HashMap::new(),
            registry: HashMap::new(),
            bodies: HashMap::new(),
            wechat: HashMap::new(),
            live: HashMap::new(),
            county_draft: String::new(),
            disabled_username: String::new(),
            clerks: HashMap::new(),
            attachments: HashMap::new(),
            next: 0,
            markers: Regex::new(
                r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{64}|MX\d{5}",
            )
            .expect("regex"),
        };
        for &(name, _, area) in crate::helpers::USERS {
            fx.creds.insert(name, Cred::Bearer(app.tokens[name].clone()));
            let me = fx.must(app, name, req(Method::GET, "/api/v1/me"), 200).await;
            let id = me["id"].as_str().expect("id").to_owned();
            fx.register(&id, None, format!("user {name} {id} (area {area})"), &[area]);
            fx.user_ids.insert(name, id);
            let tokens = fx.must(app, name, req(Method::GET, "/api/v1/tokens"), 200).await;
            for token in tokens.as_array().expect("tokens") {
                let token_id = token["id"].as_str().expect("id");
                fx.register(
                    token_id,
                    None,
                    format!("token {token_id} of {name} (area {area})"),
                    &[area],
                );
            }
        }
        fx.creds.insert("anonymous", Cred::Nobody);
        for (name, role) in [("township_admin", "admin"), ("township_reviewer", "reviewer")] {
            let id = fx.user(app, role, TOWNSHIP).await;
            let (_, secret) = fx.token(app, &id, TOWNSHIP).await;
            fx.creds.insert(name, Cred::Bearer(secret));
            fx.user_ids.insert(name, id);
        }
        for (area, role) in [
            (VILLAGE_A, "village_operator"),
            (VILLAGE_B, "village_operator"),
            (OTHER_TOWNSHIP, "publisher"),
        ] {
            let id = fx.user(app, role, area).await;
            fx.token(app, &id, area).await;
            fx.clerks.insert(area, id);
        }
        // The login probe: a user anyone may sign in as.
        fx.must(
            app,
            "admin",
            req(Method::POST, "/api/v1/users")
                .json(json!({"username": "login.probe", "role": "reviewer", "area_code": COUNTY, "password": "probe-password-1"})),
            201,
        )
        .await;
        // A disabled user, holding a token and a session from before.
        let (disabled, username) = fx.named_user(app, "publisher", COUNTY).await;
        let (_, secret) = fx.token(app, &disabled, COUNTY).await;
        let login = fx
            .send(
                app,
                "anonymous",
                &req(Method::POST, "/api/v1/session")
                    .json(json!({"username": username, "password": "matrix-password-1"})),
            )
            .await;
        assert_eq!(login.status, 200, "disabled user logs in before: {}", login.json);
        let cookie = login
            .headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix("herald_session="))
            .and_then(|v| v.split(';').next())
            .expect("session cookie")
            .to_owned();
        fx.must(
            app,
            "admin",
            req(Method::POST, format!("/api/v1/users/{disabled}/disable")),
            200,
        )
        .await;
        fx.creds.insert("disabled", Cred::Bearer(secret));
        fx.creds.insert("disabled_session", Cred::Cookie(cookie));
        fx.disabled_username = username;
        // A revoked token.
        let created = fx
            .must(
                app,
                "publisher",
                req(Method::POST, "/api/v1/tokens").json(json!({"name": "to revoke"})),
                201,
            )
            .await;
        let revoked_id = created["token"]["id"].as_str().expect("id").to_owned();
        fx.register(
            &revoked_id,
            None,
            format!("token {revoked_id} (county)"),
            &[COUNTY],
        );
        fx.must(
            app,
            "publisher",
            req(Method::DELETE, format!("/api/v1/tokens/{revoked_id}")),
            200,
        )
        .await;
        fx.creds.insert(
            "revoked",
            Cred::Bearer(created["secret"].as_str().expect("secret").to_owned()),
        );

        // Targets: WeChat in every area, and portal targets in village B and 化念镇.
        let areas = [COUNTY, TOWNSHIP, VILLAGE_A, VILLAGE_B, OTHER_TOWNSHIP];
        for area in areas {
            let tag = fx.tag();
            let id = app
                .add_target("wechat", &format!("公众号{tag}"), area, json!({}))
                .await;
            fx.register(
                &id,
                Some(&tag),
                format!("target {id} ({tag}, area {area})"),
                &[area],
            );
            fx.wechat.insert(area, id);
        }
        for area in [VILLAGE_B, OTHER_TOWNSHIP] {
            let tag = fx.tag();
            let id = app
                .add_target("portal", &format!("门户{tag}"), area, json!({}))
                .await;
            fx.register(
                &id,
                Some(&tag),
                format!("target {id} ({tag}, area {area})"),
                &[area],
            );
        }
        // A published item in every area, delivered.
        for area in areas {
            let id = fx.published(app, area).await;
            fx.live.insert(area, id);
        }
        app.deliver_due().await;
        fx.county_draft = fx.draft(app, COUNTY).await;
        // Interpretations of the county policy, due in every lower area.
        for area in [TOWNSHIP, VILLAGE_A, VILLAGE_B, OTHER_TOWNSHIP] {
            let (tag, mut body) = fx.tagged_item(area);
            body["genre"] = json!("interpretation");
            body["interprets"] = json!(fx.live[COUNTY]);
            fx.create(app, author(area), area, body, &tag).await;
        }
        // Attachments.
        let sha = fx.upload(app, "village_a", VILLAGE_A).await;
        let (tag, mut body) = fx.tagged_item(VILLAGE_A);
        body["disclosure"] = json!("not_public");
        body["legal_reason"] = json!("涉及个人隐私");
        Fx::with_attachment(&mut body, &sha);
        fx.create(app, "village_a", VILLAGE_A, body, &tag).await;
        fx.attachments.insert("village_a", sha);

        let sha = fx.upload(app, "publisher", OTHER_TOWNSHIP).await;
        let (tag, mut body) = fx.tagged_item(OTHER_TOWNSHIP);
        Fx::with_attachment(&mut body, &sha);
        fx.create(app, "publisher", OTHER_TOWNSHIP, body, &tag).await;
        fx.attachments.insert("other_township", sha);

        let sha = fx.upload(app, "village_a", VILLAGE_A).await;
        fx.attachments.insert("orphan", sha);

        let sha = fx.upload(app, "village_b", VILLAGE_B).await;
        let (tag, mut body) = fx.tagged_item(VILLAGE_B);
        Fx::with_attachment(&mut body, &sha);
        let id = fx.create(app, "village_b", VILLAGE_B, body.clone(), &tag).await;
        body["attachments"] = json!([]);
        fx.must(
            app,
            "village_b",
            req(Method::PUT, format!("/api/v1/items/{id}")).json(body),
            200,
        )
        .await;
        fx.attachments.insert("old_version", sha);

        for (key, withdraw) in [("published", false), ("withdrawn", true)] {
            let sha = fx.upload(app, "publisher", COUNTY).await;
            let (tag, mut body) = fx.tagged_item(COUNTY);
            Fx::with_attachment(&mut body, &sha);
            let id = fx.create(app, "publisher", COUNTY, body, &tag).await;
            let approved = app.approve("publisher", "reviewer", &id).await;
            assert_eq!(approved.status, 200, "{}", approved.json);
            fx.publish(app, COUNTY, &id, json!({})).await;
            if withdraw {
                let path = format!("/api/v1/items/{id}/withdraw");
                fx.must(
                    app,
                    "publisher",
                    req(Method::POST, path).json(json!({"reason": "政策调整"})),
                    200,
                )
                .await;
            }
            fx.attachments.insert(key, sha);
        }
        app.deliver_due().await;
        fx
    }

    /// Builds the request of one cell, making the resource it needs.
    async fn prepare(&mut self, app: &TestApp, op: &str, scope: Scope, caller: &'static str) -> Req {
        let area = if scope == Out { away(caller) } else { home(caller) };
        let item_path = |id: &str, rest: &str| format!("/api/v1/items/{id}{rest}");
        let (method, path) = op.split_once(' ').expect("METHOD path");
        let method: Method = method.parse().expect("method");
        match op {
            "GET /healthz"
            | "GET /metrics"
            | "GET /api/openapi.json"
            | "GET /api/v1/me"
            | "GET /api/v1/areas"
            | "GET /api/v1/catalog"
            | "GET /api/v1/topics"
            | "GET /api/v1/organs"
            | "GET /api/v1/users"
            | "GET /api/v1/tokens"
            | "GET /api/v1/items"
            | "GET /api/v1/interpretations/due"
            | "GET /api/v1/deliveries"
            | "GET /api/v1/targets"
            | "GET /api/v1/devices"
            | "GET /api/v1/receipts/unmatched"
            | "DELETE /api/v1/session" => req(method, path),
            "GET /api/v1/audit" => req(method, "/api/v1/audit?limit=1000"),
            "GET /api/v1/reports/annual" | "GET /api/v1/reports/annual.csv" => {
                req(method, format!("{path}?year=2026"))
            }
            "POST /api/v1/session" => req(method, "/api/v1/session")
                .json(json!({"username": "login.probe", "password": "probe-password-1"})),
            "POST /api/v1/session#disabled-user" => req(Method::POST, "/api/v1/session")
                .json(json!({"username": self.disabled_username, "password": "matrix-password-1"}))
                .about("the disabled user's own password"),
            "POST /api/v1/users" => {
                let tag = self.tag();
                req(method, path)
                    .json(json!({"username": format!("user.{tag}"), "role": "publisher", "area_code": area, "password": "matrix-password-1"}))
                    .about(format!("new user in {area}"))
            }
            "POST /api/v1/users/{id}/disable" => {
                let id = self.user(app, "publisher", area).await;
                req(method, format!("/api/v1/users/{id}/disable")).about(format!("user {id} of {area}"))
            }
            "POST /api/v1/users/{id}/unlock" => {
                let id = self.user(app, "publisher", area).await;
                req(method, format!("/api/v1/users/{id}/unlock")).about(format!("user {id} of {area}"))
            }
            "POST /api/v1/users/{id}/password-reset" => {
                let id = self.user(app, "publisher", area).await;
                req(method, format!("/api/v1/users/{id}/password-reset"))
                    .about(format!("user {id} of {area}"))
            }
            "POST /api/v1/me/password" => req(method, path)
                .json(json!({"current_password": "not-my-password-1", "new_password": "森林防火-2026-峨山"})),
            "POST /api/v1/tokens" => req(method, path).json(json!({"name": "mine"})),
            "POST /api/v1/tokens#for-another-user" => {
                let user = self.other_user(area, caller);
                req(Method::POST, "/api/v1/tokens")
                    .json(json!({"name": "for another", "user_id": user}))
                    .about(format!("user {user} of {area}"))
            }
            "DELETE /api/v1/tokens/{id}" => {
                let user = if scope == Own {
                    self.user_ids[caller].clone()
                } else {
                    self.other_user(area, caller)
                };
                let (id, _) = self.token(app, &user, area).await;
                req(method, format!("/api/v1/tokens/{id}"))
                    .about(format!("token {id} of user {user} ({area})"))
            }
            "GET /api/v1/items?area={area}" | "GET /api/v1/deliveries?area={area}" => {
                req(method, path.replace("{area}", area)).about(format!("area {area}"))
            }
            "POST /api/v1/items" => {
                let (tag, body) = self.tagged_item(area);
                req(method, path)
                    .json(body)
                    .about(format!("new item {tag} in {area}"))
            }
            "POST /api/v1/items#interprets" => {
                let policy = match scope {
                    Missing => uuid::Uuid::now_v7().to_string(),
                    Out => self.live[away(caller)].clone(),
                    AncestorPublished => self.live[COUNTY].clone(),
                    AncestorDraft => self.county_draft.clone(),
                    other => panic!("no interprets fixture for {other:?}"),
                };
                let (tag, mut body) = self.tagged_item(home(caller));
                body["genre"] = json!("interpretation");
                body["interprets"] = json!(policy);
                let mut request = req(Method::POST, "/api/v1/items")
                    .json(body)
                    .about(format!("new item {tag} interpreting {policy}"));
                request.id = Some(policy);
                request
            }
            "GET /api/v1/items/{id}"
            | "GET /api/v1/items/{id}/versions"
            | "GET /api/v1/items/{id}/targets"
            | "GET /api/v1/items/{id}/deliveries"
            | "GET /api/v1/items/{id}/receipts.csv" => {
                let id = self.live[area].clone();
                req(method, path.replace("{id}", &id)).about(format!("published item {id} of {area}"))
            }
            "GET /api/v1/items/{id}/versions/{version}" => {
                let id = self.live[area].clone();
                req(method, item_path(&id, "/versions/1")).about(format!("published item {id} of {area}"))
            }
            "GET /api/v1/items/{id}/preview/{channel}" => {
                let id = self.live[area].clone();
                req(method, item_path(&id, "/preview/portal")).about(format!("published item {id} of {area}"))
            }
            "PUT /api/v1/items/{id}" => {
                let id = self.draft(app, area).await;
                let mut body = self.bodies[&id].clone();
                body["summary"] = json!("修改后的摘要");
                req(method, item_path(&id, ""))
                    .json(body)
                    .about(format!("draft {id} of {area}"))
            }
            "POST /api/v1/items/{id}/submit" => {
                let id = self.draft(app, area).await;
                req(method, item_path(&id, "/submit"))
                    .json(json!({}))
                    .about(format!("draft {id} of {area}"))
            }
            "POST /api/v1/items/{id}/confidentiality-check" | "POST /api/v1/items/{id}/reject" => {
                let (id, version) = if scope == AdminEdited {
                    self.admin_edited(app).await
                } else {
                    self.in_review(app, area).await
                };
                let body = if op.ends_with("reject") {
                    json!({"version": version, "comment": "请补充依据"})
                } else {
                    json!({"version": version, "confirmed": true})
                };
                let what = if scope == AdminEdited {
                    "in review, v2 by the county admin"
                } else {
                    "in review"
                };
                req(method, path.replace("{id}", &id))
                    .json(body)
                    .about(format!("item {id} of {area}, {what}"))
            }
            "POST /api/v1/items/{id}/approve" => {
                let (id, version) = if scope == AdminEdited {
                    let (id, version) = self.admin_edited(app).await;
                    self.check(app, &id, version).await;
                    (id, version)
                } else {
                    self.checked(app, area).await
                };
                let what = if scope == AdminEdited {
                    "checked, v2 by the county admin"
                } else {
                    "checked"
                };
                req(method, item_path(&id, "/approve"))
                    .json(json!({"version": version, "comment": "同意"}))
                    .about(format!("item {id} of {area}, {what}"))
            }
            "POST /api/v1/items/{id}/publish" => {
                let id = self.approved(app, area).await;
                let mut request = req(method, item_path(&id, "/publish"))
                    .json(json!({}))
                    .about(format!("approved item {id} of {area}"));
                request.headers.push(("Idempotency-Key", format!("matrix-{id}")));
                request
            }
            "POST /api/v1/items/{id}/withdraw" => {
                let id = self.published(app, area).await;
                req(method, item_path(&id, "/withdraw"))
                    .json(json!({"reason": "政策调整"}))
                    .about(format!("published item {id} of {area}"))
            }
            "POST /api/v1/attachments" => {
                let tag = self.tag();
                let mut bytes = PDF.to_vec();
                bytes.extend_from_slice(tag.as_bytes());
                let mut request = req(method, path);
                request.raw = Some(("application/pdf", bytes));
                request
            }
            "GET /api/v1/attachments/{sha256}" | "GET /xxgk/attachments/{sha256}" => {
                let (key, what) = match scope {
                    AttVillageA => (
                        "village_a",
                        "uploaded by village A, on a village A not_public item",
                    ),
                    AttOtherTownship => ("other_township", "on a 化念镇 item"),
                    AttOrphan => ("orphan", "uploaded by village A, unreferenced"),
                    AttOldVersion => ("old_version", "on v1 (not v2) of a village B item"),
                    AttPublished => ("published", "on a live published county item"),
                    AttWithdrawn => ("withdrawn", "on a withdrawn county item"),
                    Missing => ("", "nonexistent"),
                    other => panic!("no attachment fixture for {other:?}"),
                };
                let sha = self
                    .attachments
                    .get(key)
                    .cloned()
                    .unwrap_or_else(|| herald::domain::item::sha256_hex(b"never uploaded"));
                req(method, path.replace("{sha256}", &sha)).about(format!("attachment {sha} {what}"))
            }
            "POST /api/v1/deliveries/{id}/retry"
            | "POST /api/v1/deliveries/{id}/reconcile"
            | "POST /api/v1/deliveries/{id}/cancel" => {
                let retry = !op.ends_with("cancel");
                let id = self.delivery(app, area, retry).await;
                let state = if retry { "unconfirmed" } else { "pending" };
                req(method, path.replace("{id}", &id)).about(format!("{state} delivery {id} of {area}"))
            }
            "POST /api/v1/alerts/cap" => {
                let tag = self.tag();
                let expires = app.hub.clock.now() + chrono::Duration::hours(6);
                let xml = crate::helpers::cap_message(&tag, "Alert", None, area, expires);
                let mut request = req(method, path).about(format!("CAP alert {tag} for {area}"));
                request.raw = Some(("application/cap+xml", xml.into_bytes()));
                request
            }
            "POST /api/v1/devices" => {
                let tag = self.tag();
                req(method, path)
                    .json(json!({"channel": "loudspeaker", "name": format!("喇叭{tag}"), "area_code": area}))
                    .about(format!("new device {tag} in {area}"))
            }
            "POST /api/v1/devices/{id}/revoke" => {
                let tag = self.tag();
                let new = herald::delivery::devices::NewDevice {
                    channel: ChannelKind::Loudspeaker,
                    device_id: None,
                    name: format!("喇叭{tag}"),
                    area_code: area.to_owned(),
                    group: String::new(),
                    public_key: None,
                };
                let issued =
                    herald::delivery::devices::add_devices(&app.hub, "matrix", None, vec![(1, new)], &|_| {})
                        .await
                        .expect("store")
                        .expect("a valid device");
                let id = issued[0].device.device_id.clone();
                self.register(&id, Some(&tag), format!("device {id} of {area}"), &[area]);
                req(method, path.replace("{id}", &id)).about(format!("device {id} of {area}"))
            }
            "POST /api/v1/organs" => {
                let tag = self.tag();
                req(method, path)
                    .json(json!({"name": format!("峨山彝族自治县机关{tag}"), "area_code": area}))
                    .about(format!("new organ {tag} in {area}"))
            }
            "PATCH /api/v1/organs/{id}" => {
                let tag = self.tag();
                let made = self
                    .must(
                        app,
                        "admin",
                        req(Method::POST, "/api/v1/organs")
                            .json(json!({"name": format!("峨山彝族自治县机关{tag}"), "area_code": area})),
                        201,
                    )
                    .await;
                let id = made["id"].as_str().expect("id").to_owned();
                req(method, path.replace("{id}", &id))
                    .json(json!({"aliases": [format!("机关{tag}")]}))
                    .about(format!("organ {id} ({tag}) of {area}"))
            }
            "POST /api/v1/targets" => {
                let tag = self.tag();
                req(method, path)
                    .json(json!({"channel": "portal", "name": format!("门户{tag}"), "area_code": area}))
                    .about(format!("new target {tag} in {area}"))
            }
            other => panic!("no request for {other}"),
        }
    }

    /// Registers what a successful cell created, so later leak checks know it.
    fn created(&mut self, op: &str, req: &Req, reply: &Reply) {
        if !(200..300).contains(&reply.status) {
            return;
        }
        let area = req
            .body
            .as_ref()
            .and_then(|b| b["area_code"].as_str())
            .map(str::to_owned);
        let (id, tag) = match op {
            "POST /api/v1/items" | "POST /api/v1/items#interprets" => (
                reply.json["id"].as_str(),
                req.body
                    .as_ref()
                    .and_then(|b| self.markers.find(b["title"].as_str().unwrap_or_default()))
                    .map(|m| m.as_str().to_owned()),
            ),
            "POST /api/v1/users" => (
                reply.json["user"]["id"].as_str(),
                req.body
                    .as_ref()
                    .and_then(|b| self.markers.find(b["username"].as_str().unwrap_or_default()))
                    .map(|m| m.as_str().to_owned()),
            ),
            "POST /api/v1/devices" => (
                reply.json["device"]["device_id"].as_str(),
                req.body
                    .as_ref()
                    .and_then(|b| self.markers.find(b["name"].as_str().unwrap_or_default()))
                    .map(|m| m.as_str().to_owned()),
            ),
            "POST /api/v1/targets" => (
                reply.json["id"].as_str(),
                req.body
                    .as_ref()
                    .and_then(|b| self.markers.find(b["name"].as_str().unwrap_or_default()))
                    .map(|m| m.as_str().to_owned()),
            ),
            _ => (None, None),
        };
        if let (Some(id), Some(area)) = (id, area) {
            let id = id.to_owned();
            self.register(
                &id,
                tag.as_deref(),
                format!("{op} result {id} (area {area})"),
                &[area.as_str()],
            );
        }
    }

    /// Resources of areas foreign to `caller` that `text` names.
    fn leaks(&self, caller: &str, text: &str) -> BTreeSet<String> {
        let scope = home(caller);
        self.markers
            .find_iter(text)
            .filter_map(|m| self.registry.get(m.as_str()))
            .filter(|r| r.areas.iter().all(|a| foreign(a, scope)))
            .map(|r| r.label.clone())
            .collect()
    }

    /// Rows of a list answer that lie outside the caller's area.
    fn rows_outside(&self, op: &str, caller: &str, json: &Value) -> Vec<String> {
        let scope = home(caller);
        let rows = |v: &Value| v.as_array().cloned().unwrap_or_default();
        let by_area = |rows: Vec<Value>, what: &str| {
            rows.iter()
                .filter(|r| !within(r["area_code"].as_str().unwrap_or_default(), scope))
                .map(|r| format!("{what} {} of area {}", r["id"], r["area_code"]))
                .collect::<Vec<_>>()
        };
        match op.split('?').next().unwrap_or(op) {
            "GET /api/v1/items" => by_area(rows(&json["items"]), "item"),
            "GET /api/v1/deliveries" => by_area(rows(json), "delivery"),
            "GET /api/v1/targets" => by_area(rows(json), "target"),
            "GET /api/v1/devices" => by_area(rows(json), "device"),
            "GET /api/v1/users" => by_area(rows(json), "user"),
            "GET /api/v1/tokens" => rows(json)
                .iter()
                .filter(|t| t["user_id"] != self.user_ids[caller].as_str())
                .map(|t| format!("token {} of user {}", t["id"], t["user_id"]))
                .collect(),
            "GET /api/v1/interpretations/due" => rows(json)
                .iter()
                .filter_map(|d| {
                    let id = d["interpretation_id"].as_str().unwrap_or_default();
                    match self.registry.get(id) {
                        Some(r) if r.areas.iter().any(|a| within(a, scope)) => None,
                        Some(r) => Some(format!("interpretation {}", r.label)),
                        None => Some(format!("interpretation {id} the test did not make")),
                    }
                })
                .collect(),
            "GET /api/v1/audit" if scope != COUNTY => self.audit_outside(caller, json),
            _ => Vec::new(),
        }
    }

    /// Audit entries about resources the test knows to be outside the caller's area.
    fn audit_outside(&self, caller: &str, json: &Value) -> Vec<String> {
        let scope = home(caller);
        json.as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|e| {
                let target = e["target_id"].as_str().unwrap_or_default();
                let resource = self.registry.get(target)?;
                (!resource.areas.iter().any(|a| within(a, scope)))
                    .then(|| format!("entry {} {} about {}", e["seq"], e["action"], resource.label))
            })
            .collect()
    }
}

fn expectation(expect: Expect) -> String {
    match expect {
        Expect::Is(status) => status.to_string(),
        Expect::Refused => "403 or 404".into(),
        Expect::LikeMissing => "the answer for a nonexistent id".into(),
        Expect::NotApplicable => "nothing".into(),
    }
}

fn short(reply: &Reply) -> String {
    let text = reply.text();
    if text.chars().count() > 300 {
        format!("{}…", text.chars().take(300).collect::<String>())
    } else {
        text
    }
}

/// An error answer with the id blanked out, for `LikeMissing`.
fn shape(reply: &Reply, id: &str) -> (u16, Value, Value, String) {
    let error = &reply.json["error"];
    (
        reply.status,
        error["code"].clone(),
        error["field"].clone(),
        error["message"].as_str().unwrap_or_default().replace(id, "{id}"),
    )
}

async fn run_matrix(backend: Backend) {
    let scripted = Scripted::new(ChannelKind::Wechat, &[], Step::Unknown);
    let app = spawn_app_with(backend, vec![scripted]).await;
    let started = std::time::Instant::now();

    // The table covers every API operation, and names only real ones.
    let routes: BTreeSet<String> = herald::http::api_routes()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    let covered: BTreeSet<String> = MATRIX
        .iter()
        .map(|(op, _, _)| op.split(['#', '?']).next().unwrap_or(op).to_owned())
        .collect();
    let uncovered: Vec<_> = routes.difference(&covered).collect();
    assert!(
        uncovered.is_empty(),
        "operations missing from MATRIX: {uncovered:?}"
    );
    let unknown: Vec<_> = covered
        .iter()
        .filter(|op| !routes.contains(*op) && !op.starts_with("GET /xxgk/"))
        .collect();
    assert!(
        unknown.is_empty(),
        "MATRIX names operations that do not exist: {unknown:?}"
    );
    let cells = MATRIX
        .iter()
        .flat_map(|(_, _, row)| row.iter())
        .filter(|e| **e != NA)
        .count();
    assert_eq!(
        cells, EXPECTED_CELLS,
        "the matrix changed size: update EXPECTED_CELLS deliberately"
    );

    let mut fx = Fx::setup(&app).await;
    let mut failures = Vec::new();
    let mut checks = 0;
    for (op, scope, row) in MATRIX {
        for (caller, expect) in CALLERS.iter().zip(row) {
            if *expect == NA {
                continue;
            }
            checks += 1;
            let request = fx.prepare(&app, op, *scope, caller).await;
            let reply = fx.send(&app, caller, &request).await;
            fx.created(op, &request, &reply);
            let mut problems = Vec::new();
            match *expect {
                Expect::Is(status) if reply.status != status => {
                    problems.push(format!("expected {status}, got {}", reply.status));
                }
                Expect::Refused if !matches!(reply.status, 403 | 404) => {
                    problems.push(format!("expected 403 or 404, got {}", reply.status));
                }
                Expect::LikeMissing => {
                    let twin = fx.prepare(&app, op, Missing, caller).await;
                    let missing = fx.send(&app, caller, &twin).await;
                    fx.created(op, &twin, &missing);
                    let got = shape(&reply, request.id.as_deref().unwrap_or_default());
                    let wanted = shape(&missing, twin.id.as_deref().unwrap_or_default());
                    if got != wanted {
                        problems.push(format!(
                            "expected the answer for a nonexistent id {wanted:?}, got {got:?}"
                        ));
                    }
                }
                _ => {}
            }
            let signed_in = !matches!(fx.creds[caller], Cred::Nobody)
                && !matches!(*caller, "disabled" | "disabled_session" | "revoked");
            if signed_in && request.path.starts_with("/api/v1") {
                let leaks = fx.leaks(caller, &reply.text());
                if !leaks.is_empty() {
                    problems.push(format!(
                        "the answer names resources outside {}: {leaks:?}",
                        home(caller)
                    ));
                }
                if (200..300).contains(&reply.status) {
                    let outside = fx.rows_outside(op, caller, &reply.json);
                    if !outside.is_empty() {
                        problems.push(format!("rows outside {}: {outside:?}", home(caller)));
                    }
                }
            }
            if !problems.is_empty() {
                failures.push(format!(
                    "[{backend:?}] {op} as {caller} ({scope:?}{}{}): expected {}; {}; body: {}",
                    if request.subject.is_empty() { "" } else { ": " },
                    request.subject,
                    expectation(*expect),
                    problems.join("; "),
                    short(&reply)
                ));
            }
        }
    }
    assert_eq!(checks, EXPECTED_CELLS);

    // The whole audit log, page by page: a township admin and a township reviewer see nothing
    // about resources outside 甸中镇; the county admin sees entries about 化念镇.
    let mut audit_checks = 0;
    for caller in ["township_admin", "township_reviewer", "admin"] {
        audit_checks += 1;
        let mut after = 0;
        let mut outside = Vec::new();
        let mut about_other_township = 0;
        loop {
            let page = fx
                .send(
                    &app,
                    caller,
                    &req(Method::GET, format!("/api/v1/audit?after={after}&limit=1000")),
                )
                .await;
            let Some(entries) = page.json.as_array().filter(|e| !e.is_empty()).cloned() else {
                break;
            };
            after = entries.last().and_then(|e| e["seq"].as_i64()).expect("seq");
            outside.extend(fx.audit_outside(caller, &page.json));
            about_other_township += entries
                .iter()
                .filter(|e| {
                    fx.registry
                        .get(e["target_id"].as_str().unwrap_or_default())
                        .is_some_and(|r| r.areas.iter().all(|a| within(a, OTHER_TOWNSHIP)))
                })
                .count();
        }
        if caller == "admin" {
            if about_other_township == 0 {
                failures.push(format!("[{backend:?}] GET /api/v1/audit as admin: expected entries about 化念镇 resources, got none"));
            }
        } else if !outside.is_empty() {
            failures.push(format!(
                "[{backend:?}] GET /api/v1/audit (all pages) as {caller}: expected only entries about resources in {TOWNSHIP}; got {} outside: {:?}",
                outside.len(),
                outside.iter().take(10).collect::<Vec<_>>()
            ));
        }
    }
    eprintln!(
        "[{backend:?}] authorization matrix: {checks} cells + {audit_checks} audit scans in {:.1} s, {} failed",
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} checks failed:\n{}",
        failures.len(),
        checks + audit_checks,
        failures.join("\n")
    );
}

mod authorization_matrix {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        run_matrix(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        run_matrix(Backend::Postgres).await;
    }
}
