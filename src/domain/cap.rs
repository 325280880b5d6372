//! CAP 1.2 (OASIS Common Alerting Protocol) alerts, as an upstream warning system posts them:
//! parsed, checked element by element, and their areas (geocodes, polygons, circles) mapped to
//! the county's area codes. A CAP message is a standard, so every refusal names the element.

use chrono::{DateTime, Utc};
use quick_xml::{events::Event, name::ResolveResult, reader::NsReader};
use serde::Deserialize;

use super::area::{AreaCode, AreaLevel, AreaTree, Point};

pub const CAP_NAMESPACE: &str = "urn:oasis:names:tc:emergency:cap:1.2";

/// Largest CAP message accepted: real alerts are a few kilobytes, long polygons a few dozen.
pub const MAX_CAP_BYTES: usize = 512 * 1024;

/// Geocode `valueName`s read as GB/T 2260 administrative-division codes (6, 9 or 12 digits);
/// other geocode schemes are ignored. Compared without case, spaces, `/` and `.`.
const AREA_CODE_SCHEMES: [&str; 5] = ["gbt2260", "gb2260", "行政区划代码", "areacode", "adcode"];

/// What was wrong, and in which element (`alert.info[0].expires`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{element}: {message}")]
pub struct CapError {
    pub element: String,
    pub message: String,
}

fn refuse(element: impl Into<String>, message: impl Into<String>) -> CapError {
    CapError {
        element: element.into(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgType {
    Alert,
    Update,
    Cancel,
}

impl MsgType {
    pub fn as_str(self) -> &'static str {
        match self {
            MsgType::Alert => "Alert",
            MsgType::Update => "Update",
            MsgType::Cancel => "Cancel",
        }
    }
}

/// An earlier message an Update or Cancel refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub sender: String,
    pub identifier: String,
}

/// A checked CAP alert.
#[derive(Debug, Clone, PartialEq)]
pub struct CapAlert {
    pub identifier: String,
    pub sender: String,
    pub sent: DateTime<Utc>,
    pub msg_type: MsgType,
    pub references: Vec<Reference>,
    pub infos: Vec<CapInfo>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CapInfo {
    /// RFC 3066 language; CAP's default is en-US, so an info without one is read as such.
    pub language: Option<String>,
    pub event: String,
    pub headline: Option<String>,
    pub description: Option<String>,
    pub instruction: Option<String>,
    pub sender_name: Option<String>,
    pub expires: Option<DateTime<Utc>>,
    pub areas: Vec<CapArea>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CapArea {
    pub desc: String,
    pub polygons: Vec<Vec<Point>>,
    /// Centre and radius in kilometres.
    pub circles: Vec<(Point, f64)>,
    /// Area codes named by geocodes of a known scheme, as given.
    pub area_codes: Vec<String>,
}

#[derive(Deserialize)]
struct RawAlert {
    identifier: Option<String>,
    sender: Option<String>,
    sent: Option<String>,
    status: Option<String>,
    #[serde(rename = "msgType")]
    msg_type: Option<String>,
    scope: Option<String>,
    references: Option<String>,
    #[serde(default)]
    info: Vec<RawInfo>,
}

#[derive(Deserialize)]
struct RawInfo {
    language: Option<String>,
    event: Option<String>,
    urgency: Option<String>,
    severity: Option<String>,
    certainty: Option<String>,
    headline: Option<String>,
    description: Option<String>,
    instruction: Option<String>,
    #[serde(rename = "senderName")]
    sender_name: Option<String>,
    expires: Option<String>,
    #[serde(default)]
    area: Vec<RawArea>,
}

#[derive(Deserialize)]
struct RawArea {
    #[serde(rename = "areaDesc")]
    area_desc: Option<String>,
    #[serde(default)]
    polygon: Vec<String>,
    #[serde(default)]
    circle: Vec<String>,
    #[serde(default)]
    geocode: Vec<RawValue>,
}

#[derive(Deserialize)]
struct RawValue {
    #[serde(rename = "valueName")]
    value_name: Option<String>,
    value: Option<String>,
}

fn required(element: &str, value: Option<String>) -> Result<String, CapError> {
    value
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| refuse(element, "required, and missing or empty"))
}

fn optional(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// CAP times: `2026-12-06T10:00:00+08:00`, always with an offset.
fn cap_time(element: &str, raw: &str) -> Result<DateTime<Utc>, CapError> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            refuse(
                element,
                format!("`{raw}` is not a CAP time (2026-12-06T10:00:00+08:00)"),
            )
        })
}

/// The root element must be `alert` in the CAP 1.2 namespace; CAP 1.1 and other documents are
/// refused before their content is read.
fn check_root(xml: &str) -> Result<(), CapError> {
    let mut reader = NsReader::from_str(xml);
    loop {
        match reader.read_resolved_event() {
            Ok((namespace, Event::Start(start) | Event::Empty(start))) => {
                let local = start.local_name().into_inner();
                if local != "alert" {
                    return Err(refuse(
                        "alert",
                        format!("the root element is `{}`, not `alert`", local),
                    ));
                }
                return match namespace {
                    ResolveResult::Bound(ns) if ns.into_inner() == CAP_NAMESPACE => Ok(()),
                    ResolveResult::Bound(ns) => Err(refuse(
                        "alert",
                        format!("namespace `{}` is not CAP 1.2 ({CAP_NAMESPACE})", ns.into_inner()),
                    )),
                    _ => Err(refuse(
                        "alert",
                        format!("must be in the CAP 1.2 namespace {CAP_NAMESPACE}"),
                    )),
                };
            }
            Ok((_, Event::Eof)) => return Err(refuse("alert", "the document is empty")),
            Ok((_, Event::DocType(_))) => return Err(refuse("alert", "a DOCTYPE is not accepted")),
            Ok(_) => {}
            Err(e) => return Err(refuse("alert", format!("not well-formed XML: {e}"))),
        }
    }
}

impl CapAlert {
    pub fn parse(bytes: &[u8]) -> Result<Self, CapError> {
        if bytes.len() > MAX_CAP_BYTES {
            return Err(refuse("alert", format!("larger than {MAX_CAP_BYTES} bytes")));
        }
        let xml = std::str::from_utf8(bytes).map_err(|_| refuse("alert", "not UTF-8"))?;
        check_root(xml)?;
        let raw: RawAlert =
            quick_xml::de::from_str(xml).map_err(|e| refuse("alert", format!("unreadable: {e}")))?;
        let identifier = required("alert.identifier", raw.identifier)?;
        let sender = required("alert.sender", raw.sender)?;
        let sent = cap_time("alert.sent", &required("alert.sent", raw.sent)?)?;
        let status = required("alert.status", raw.status)?;
        if status != "Actual" {
            let known = ["Exercise", "System", "Test", "Draft"].contains(&status.as_str());
            let message = if known {
                format!("`{status}`: only Actual alerts go out to the villages")
            } else {
                format!("`{status}` is not a CAP status")
            };
            return Err(refuse("alert.status", message));
        }
        let msg_type = match required("alert.msgType", raw.msg_type)?.as_str() {
            "Alert" => MsgType::Alert,
            "Update" => MsgType::Update,
            "Cancel" => MsgType::Cancel,
            other @ ("Ack" | "Error") => {
                return Err(refuse(
                    "alert.msgType",
                    format!("`{other}` messages are not broadcast"),
                ));
            }
            other => {
                return Err(refuse(
                    "alert.msgType",
                    format!("`{other}` is not a CAP message type"),
                ));
            }
        };
        let scope = required("alert.scope", raw.scope)?;
        if scope != "Public" {
            return Err(refuse(
                "alert.scope",
                format!("`{scope}`: only Public alerts are broadcast"),
            ));
        }
        let references = parse_references(optional(raw.references).as_deref())?;
        if msg_type != MsgType::Alert && references.is_empty() {
            return Err(refuse(
                "alert.references",
                format!("an {} names the alert it replaces", msg_type.as_str()),
            ));
        }
        let infos = raw
            .info
            .into_iter()
            .enumerate()
            .map(|(i, info)| parse_info(&format!("alert.info[{i}]"), info))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some((i, _)) = infos
            .iter()
            .enumerate()
            .find(|(_, info)| info.expires.is_some_and(|e| e <= sent))
        {
            return Err(refuse(
                format!("alert.info[{i}].expires"),
                "expires before the alert was sent",
            ));
        }
        if msg_type != MsgType::Cancel && infos.is_empty() {
            return Err(refuse("alert.info", "an Alert or Update needs at least one info"));
        }
        Ok(Self {
            identifier,
            sender,
            sent,
            msg_type,
            references,
            infos,
        })
    }

    /// The info Herald broadcasts: the first in Chinese, else the first. CAP repeats an
    /// alert's info once per language, and may give infos of different severities for
    /// different areas; Herald reads out one, and its areas and expiry go with it.
    pub fn info(&self) -> Option<&CapInfo> {
        let chinese = |info: &&CapInfo| {
            info.language
                .as_deref()
                .is_some_and(|l| l.to_ascii_lowercase().starts_with("zh"))
        };
        self.infos.iter().find(chinese).or_else(|| self.infos.first())
    }

    /// The areas of `tree` the broadcast info reaches, outermost first, none below another:
    /// geocodes as named (a province or prefecture code reaches the county), polygons and
    /// circles by the villages whose seat lies inside.
    pub fn reach(&self, tree: &AreaTree) -> Vec<AreaCode> {
        let mut reached: Vec<AreaCode> = Vec::new();
        for area in self.info().into_iter().flat_map(|info| &info.areas) {
            for code in &area.area_codes {
                reached.extend(covered_by_code(tree, code));
            }
            for seated in tree.iter().filter(|a| a.code.level() == AreaLevel::Village) {
                let Some(seat) = seated.seat else { continue };
                let inside = area.polygons.iter().any(|p| polygon_contains(p, seat))
                    || area
                        .circles
                        .iter()
                        .any(|(centre, km)| distance_km(*centre, seat) <= *km);
                if inside {
                    reached.push(seated.code.clone());
                }
            }
        }
        reached.sort();
        reached.dedup();
        let outermost: Vec<AreaCode> = reached
            .iter()
            .filter(|code| {
                !reached
                    .iter()
                    .any(|other| other != *code && code.is_within(other))
            })
            .cloned()
            .collect();
        outermost
    }

    /// When the broadcast info expires; none when it has no end.
    pub fn expires(&self) -> Option<DateTime<Utc>> {
        self.info().and_then(|info| info.expires)
    }
}

fn parse_references(raw: Option<&str>) -> Result<Vec<Reference>, CapError> {
    let Some(raw) = raw else { return Ok(Vec::new()) };
    raw.split_whitespace()
        .map(|triple| {
            let parts: Vec<&str> = triple.split(',').collect();
            match parts.as_slice() {
                [sender, identifier, sent] if !sender.is_empty() && !identifier.is_empty() => {
                    cap_time("alert.references", sent)?;
                    Ok(Reference {
                        sender: (*sender).to_owned(),
                        identifier: (*identifier).to_owned(),
                    })
                }
                _ => Err(refuse(
                    "alert.references",
                    format!("`{triple}` is not sender,identifier,sent"),
                )),
            }
        })
        .collect()
}

fn parse_info(element: &str, raw: RawInfo) -> Result<CapInfo, CapError> {
    let event = required(&format!("{element}.event"), raw.event)?;
    for (name, value) in [
        ("urgency", raw.urgency),
        ("severity", raw.severity),
        ("certainty", raw.certainty),
    ] {
        required(&format!("{element}.{name}"), value)?;
    }
    let expires = match optional(raw.expires) {
        Some(at) => Some(cap_time(&format!("{element}.expires"), &at)?),
        None => None,
    };
    let areas = raw
        .area
        .into_iter()
        .enumerate()
        .map(|(i, area)| parse_area(&format!("{element}.area[{i}]"), area))
        .collect::<Result<Vec<_>, _>>()?;
    if areas.is_empty() {
        return Err(refuse(format!("{element}.area"), "say where: at least one area"));
    }
    Ok(CapInfo {
        language: optional(raw.language),
        event,
        headline: optional(raw.headline),
        description: optional(raw.description),
        instruction: optional(raw.instruction),
        sender_name: optional(raw.sender_name),
        expires,
        areas,
    })
}

fn parse_area(element: &str, raw: RawArea) -> Result<CapArea, CapError> {
    let desc = required(&format!("{element}.areaDesc"), raw.area_desc)?;
    let polygons = raw
        .polygon
        .iter()
        .enumerate()
        .map(|(i, p)| parse_polygon(&format!("{element}.polygon[{i}]"), p))
        .collect::<Result<Vec<_>, _>>()?;
    let circles = raw
        .circle
        .iter()
        .enumerate()
        .map(|(i, c)| parse_circle(&format!("{element}.circle[{i}]"), c))
        .collect::<Result<Vec<_>, _>>()?;
    let mut area_codes = Vec::new();
    for (i, geocode) in raw.geocode.into_iter().enumerate() {
        let name = required(&format!("{element}.geocode[{i}].valueName"), geocode.value_name)?;
        let value = required(&format!("{element}.geocode[{i}].value"), geocode.value)?;
        let scheme: String = name
            .chars()
            .filter(|c| !matches!(c, ' ' | '/' | '.' | '-' | '_'))
            .flat_map(char::to_lowercase)
            .collect();
        if AREA_CODE_SCHEMES.contains(&scheme.as_str()) {
            AreaCode::parse(&value)
                .map_err(|e| refuse(format!("{element}.geocode[{i}].value"), e.to_string()))?;
            area_codes.push(value);
        }
    }
    Ok(CapArea {
        desc,
        polygons,
        circles,
        area_codes,
    })
}

fn parse_point(element: &str, raw: &str) -> Result<Point, CapError> {
    let bad = || {
        refuse(
            element,
            format!("`{raw}` is not a WGS 84 `latitude,longitude` pair"),
        )
    };
    let (lat, lon) = raw.split_once(',').ok_or_else(bad)?;
    let lat: f64 = lat.trim().parse().map_err(|_| bad())?;
    let lon: f64 = lon.trim().parse().map_err(|_| bad())?;
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
        return Err(bad());
    }
    Ok(Point { lat, lon })
}

/// `lat,lon lat,lon …`: at least four pairs, the first and last the same (CAP 1.2 §3.2.4).
fn parse_polygon(element: &str, raw: &str) -> Result<Vec<Point>, CapError> {
    let points = raw
        .split_whitespace()
        .map(|pair| parse_point(element, pair))
        .collect::<Result<Vec<_>, _>>()?;
    if points.len() < 4 || points.first() != points.last() {
        return Err(refuse(
            element,
            "a polygon is at least four points, the last the same as the first",
        ));
    }
    Ok(points)
}

/// `lat,lon radius` with the radius in kilometres.
fn parse_circle(element: &str, raw: &str) -> Result<(Point, f64), CapError> {
    let (centre, radius) = raw
        .trim()
        .split_once(char::is_whitespace)
        .ok_or_else(|| refuse(element, format!("`{raw}` is not `latitude,longitude radius`")))?;
    let centre = parse_point(element, centre)?;
    let radius: f64 = radius
        .trim()
        .parse()
        .ok()
        .filter(|r: &f64| r.is_finite() && *r >= 0.0)
        .ok_or_else(|| {
            refuse(
                element,
                format!("radius `{}` is not kilometres ≥ 0", radius.trim()),
            )
        })?;
    Ok((centre, radius))
}

/// The areas a GB/T 2260 code covers: itself when the tree has it; the county when the code is
/// its province (`530000`) or prefecture (`530400`).
fn covered_by_code(tree: &AreaTree, code: &str) -> Vec<AreaCode> {
    if let Ok(area) = tree.resolve(code) {
        return vec![area];
    }
    let prefix = if code.len() == 6 && code.ends_with("0000") {
        &code[..2]
    } else if code.len() == 6 && code.ends_with("00") {
        &code[..4]
    } else {
        return Vec::new();
    };
    tree.iter()
        .filter(|a| a.code.level() == AreaLevel::County && a.code.as_str().starts_with(prefix))
        .map(|a| a.code.clone())
        .collect()
}

/// Ray casting in the plane of longitude and latitude: fine for a county's extent.
fn polygon_contains(polygon: &[Point], p: Point) -> bool {
    let mut inside = false;
    for edge in polygon.windows(2) {
        let (a, b) = (edge[0], edge[1]);
        if (a.lat > p.lat) != (b.lat > p.lat) {
            let crossing = a.lon + (p.lat - a.lat) / (b.lat - a.lat) * (b.lon - a.lon);
            if p.lon < crossing {
                inside = !inside;
            }
        }
    }
    inside
}

/// Great-circle distance (haversine, mean Earth radius).
fn distance_km(a: Point, b: Point) -> f64 {
    const EARTH_RADIUS_KM: f64 = 6371.0;
    let (lat1, lat2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = lat2 - lat1;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().asin()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::area::DEMO_AREAS;

    fn alert(msg_type: &str, references: &str, info: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>53042641600000_20261206100000</identifier>
  <sender>yxqx@yunnan.weather.cn</sender>
  <sent>2026-12-06T10:00:00+08:00</sent>
  <status>Actual</status>
  <msgType>{msg_type}</msgType>
  <scope>Public</scope>
  {references}
  {info}
</alert>"#
        )
    }

    const INFO: &str = r#"<info>
    <language>zh-CN</language>
    <category>Met</category>
    <event>暴雨</event>
    <urgency>Immediate</urgency>
    <severity>Extreme</severity>
    <certainty>Observed</certainty>
    <expires>2026-12-06T16:00:00+08:00</expires>
    <senderName>峨山县气象台</senderName>
    <headline>峨山县气象台发布暴雨红色预警信号</headline>
    <description>预计未来3小时内甸中镇将出现100毫米以上降雨。</description>
    <area>
      <areaDesc>甸中镇</areaDesc>
      <geocode><valueName>GB/T 2260</valueName><value>530426101</value></geocode>
    </area>
  </info>"#;

    fn tree() -> AreaTree {
        AreaTree::from_toml(DEMO_AREAS).expect("demo areas")
    }

    fn codes(alert: &CapAlert) -> Vec<String> {
        alert.reach(&tree()).iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn an_alert_is_read_and_its_geocode_mapped() {
        let parsed = CapAlert::parse(alert("Alert", "", INFO).as_bytes()).expect("parses");
        assert_eq!(parsed.msg_type, MsgType::Alert);
        assert_eq!(parsed.infos[0].event, "暴雨");
        assert_eq!(
            parsed.expires().map(|e| e.to_rfc3339()),
            Some("2026-12-06T08:00:00+00:00".into())
        );
        assert_eq!(codes(&parsed), vec!["530426101"]);
    }

    #[test]
    fn a_prefixed_namespace_reads_the_same() {
        let prefixed = alert("Alert", "", INFO)
            .replace("<alert xmlns=", "<cap:alert xmlns:cap=")
            .replace("</alert>", "</cap:alert>");
        // Only the root is prefixed here; the children stay in no namespace, which quick-xml's
        // local-name matching reads alike.
        assert!(CapAlert::parse(prefixed.as_bytes()).is_ok());
    }

    #[test]
    fn polygons_and_circles_reach_the_villages_whose_seat_is_inside() {
        // A box around 甸中镇示例一村委会 (24.34, 102.40) only.
        let polygon = INFO.replace(
            "<geocode><valueName>GB/T 2260</valueName><value>530426101</value></geocode>",
            "<polygon>24.335,102.395 24.345,102.395 24.345,102.405 24.335,102.405 24.335,102.395</polygon>",
        );
        let parsed = CapAlert::parse(alert("Alert", "", &polygon).as_bytes()).expect("parses");
        assert_eq!(codes(&parsed), vec!["530426101001"]);
        // 3 km around 化念镇示例一村委会 (24.055, 102.31).
        let circle = INFO.replace(
            "<geocode><valueName>GB/T 2260</valueName><value>530426101</value></geocode>",
            "<circle>24.06,102.31 3</circle>",
        );
        let parsed = CapAlert::parse(alert("Alert", "", &circle).as_bytes()).expect("parses");
        assert_eq!(codes(&parsed), vec!["530426102001"]);
    }

    #[test]
    fn a_prefecture_code_reaches_the_county_and_nested_codes_collapse() {
        let info = INFO.replace(
            "<geocode><valueName>GB/T 2260</valueName><value>530426101</value></geocode>",
            "<geocode><valueName>GB/T 2260</valueName><value>530400</value></geocode>\
             <geocode><valueName>行政区划代码</valueName><value>530426101</value></geocode>\
             <geocode><valueName>SAME</valueName><value>006113</value></geocode>",
        );
        let parsed = CapAlert::parse(alert("Alert", "", &info).as_bytes()).expect("parses");
        assert_eq!(codes(&parsed), vec!["530426"]);
    }

    #[test]
    fn the_chinese_info_is_broadcast_with_its_own_areas_and_expiry() {
        let english = INFO
            .replace("<language>zh-CN</language>", "<language>en-US</language>")
            .replace("530426101", "530426102")
            .replace("2026-12-06T16:00:00+08:00", "2026-12-07T16:00:00+08:00")
            .replace("暴雨", "Rainstorm");
        let parsed =
            CapAlert::parse(alert("Alert", "", &format!("{english}{INFO}")).as_bytes()).expect("parses");
        assert_eq!(parsed.info().map(|i| i.event.as_str()), Some("暴雨"));
        assert_eq!(codes(&parsed), vec!["530426101"]);
        assert_eq!(
            parsed.expires().map(|e| e.to_rfc3339()),
            Some("2026-12-06T08:00:00+00:00".into())
        );
    }

    #[test]
    fn updates_and_cancels_name_what_they_replace() {
        let refs = "<references>yxqx@yunnan.weather.cn,53042641600000_20261206090000,2026-12-06T09:00:00+08:00</references>";
        let parsed = CapAlert::parse(alert("Cancel", refs, "").as_bytes()).expect("parses");
        assert_eq!(parsed.references[0].identifier, "53042641600000_20261206090000");
        let err = CapAlert::parse(alert("Update", "", INFO).as_bytes()).expect_err("no references");
        assert_eq!(err.element, "alert.references");
    }

    #[test]
    fn each_refusal_names_its_element() {
        let cases: Vec<(String, &str)> = vec![
            (
                alert("Alert", "", INFO)
                    .replace("<identifier>53042641600000_20261206100000</identifier>", ""),
                "alert.identifier",
            ),
            (
                alert("Alert", "", INFO).replace("Actual", "Exercise"),
                "alert.status",
            ),
            (
                alert("Alert", "", INFO).replace("<scope>Public</scope>", "<scope>Private</scope>"),
                "alert.scope",
            ),
            (alert("Ack", "", INFO), "alert.msgType"),
            (alert("Alert", "", ""), "alert.info"),
            (
                alert("Alert", "", &INFO.replace("<urgency>Immediate</urgency>", "")),
                "alert.info[0].urgency",
            ),
            (
                alert(
                    "Alert",
                    "",
                    &INFO.replace("2026-12-06T16:00:00+08:00", "tomorrow"),
                ),
                "alert.info[0].expires",
            ),
            (
                alert(
                    "Alert",
                    "",
                    &INFO.replace("2026-12-06T16:00:00+08:00", "2026-12-06T09:00:00+08:00"),
                ),
                "alert.info[0].expires",
            ),
            (
                alert("Alert", "", &INFO.replace("<areaDesc>甸中镇</areaDesc>", "")),
                "alert.info[0].area[0].areaDesc",
            ),
            (
                alert(
                    "Alert",
                    "",
                    &INFO.replace("<value>530426101</value>", "<value>5304</value>"),
                ),
                "alert.info[0].area[0].geocode[0].value",
            ),
            (
                alert(
                    "Alert",
                    "",
                    &INFO.replace(
                        "<areaDesc>甸中镇</areaDesc>",
                        "<areaDesc>甸中镇</areaDesc><polygon>24,102 25,102 24,102</polygon>",
                    ),
                ),
                "alert.info[0].area[0].polygon[0]",
            ),
            (
                alert(
                    "Alert",
                    "",
                    &INFO.replace(
                        "<areaDesc>甸中镇</areaDesc>",
                        "<areaDesc>甸中镇</areaDesc><circle>24,102 -1</circle>",
                    ),
                ),
                "alert.info[0].area[0].circle[0]",
            ),
            (alert("Alert", "", INFO).replace("cap:1.2", "cap:1.1"), "alert"),
            (
                "<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\"><identifier>x</alert>".into(),
                "alert",
            ),
            ("<feed/>".into(), "alert"),
        ];
        for (xml, element) in cases {
            let err = CapAlert::parse(xml.as_bytes()).expect_err(element);
            assert_eq!(err.element, element, "{err}");
        }
    }

    proptest::proptest! {
        /// Whatever arrives, the decoder answers: a checked alert or a refusal naming an
        /// element, never a panic.
        #[test]
        fn arbitrary_bytes_are_answered_not_panicked_on(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            let _ = CapAlert::parse(&bytes);
        }

        /// Arbitrary text in every field of a real alert: the same.
        #[test]
        fn arbitrary_field_text_is_answered_not_panicked_on(text in "\\PC{0,64}") {
            let escaped = text.replace('&', "&amp;").replace('<', "&lt;");
            for field in ["53042641600000_20261206100000", "Actual", "暴雨", "2026-12-06T16:00:00+08:00", "530426101", "GB/T 2260"] {
                let xml = alert("Alert", "", INFO).replacen(field, &escaped, 1);
                if let Ok(parsed) = CapAlert::parse(xml.as_bytes()) {
                    let _ = parsed.reach(&tree());
                }
            }
        }
    }

    #[test]
    fn a_doctype_is_refused_before_anything_is_expanded() {
        let xml = format!(
            "<!DOCTYPE alert [<!ENTITY x \"boom\">]>{}",
            alert("Alert", "", INFO).replace("<?xml version=\"1.0\" encoding=\"UTF-8\"?>", "")
        );
        let err = CapAlert::parse(xml.as_bytes()).expect_err("doctype");
        assert_eq!(err.element, "alert");
    }
}
