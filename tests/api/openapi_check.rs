//! `Conformance`: checks real answers against the generated OpenAPI document, strictly.
//!
//! Any test may hold one: `check_reply(method, path_template, &reply)` fails the test when the
//! status is not documented for the operation, the media type is not the documented one, a
//! documented response header is missing, or the JSON body does not validate against the
//! documented schema. The test's copy of the document is made strict first: every object schema
//! that lists `properties` and says nothing of `additionalProperties` rejects extra fields, so
//! an undocumented field fails too. Nullability is the document's own (OpenAPI 3.1
//! `type: [..., "null"]`), validated as draft 2020-12 with formats (date, date-time) asserted.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
};

use serde_json::{Value, json};

use crate::helpers::Reply;

pub struct Conformance {
    document: Value,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
    exercised: Mutex<BTreeSet<(String, String)>>,
}

impl Default for Conformance {
    fn default() -> Self {
        Self::new()
    }
}

/// Makes every object schema with `properties` and no `additionalProperties` closed.
fn make_strict(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            map.values_mut().for_each(make_strict);
        }
        Value::Array(items) => items.iter_mut().for_each(make_strict),
        _ => {}
    }
}

fn media_type(raw: &str) -> String {
    raw.split(';').next().unwrap_or(raw).trim().to_ascii_lowercase()
}

impl Conformance {
    /// Reads the document the server serves (`herald::http::openapi_document`).
    pub fn new() -> Self {
        let mut document = herald::http::openapi_document();
        assert!(document["paths"].is_object(), "no generated OpenAPI document");
        make_strict(&mut document);
        Self {
            document,
            validators: Mutex::new(HashMap::new()),
            exercised: Mutex::new(BTreeSet::new()),
        }
    }

    /// The strict copy of the document.
    pub fn document(&self) -> &Value {
        &self.document
    }

    /// Every documented (METHOD, path template).
    pub fn operations(&self) -> BTreeSet<(String, String)> {
        let mut operations = BTreeSet::new();
        for (path, item) in self.document["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                operations.insert((method.to_uppercase(), path.clone()));
            }
        }
        operations
    }

    /// The operations no `check` has seen yet.
    pub fn unexercised(&self) -> BTreeSet<(String, String)> {
        let seen = self.exercised.lock().expect("lock");
        self.operations().difference(&seen).cloned().collect()
    }

    /// Fails unless every documented operation was checked at least once.
    pub fn assert_all_exercised(&self) {
        let missing = self.unexercised();
        assert!(missing.is_empty(), "operations never exercised: {missing:?}");
    }

    /// A validator for the schema at `pointer` (a JSON pointer into the document), compiled
    /// against the whole document so that `#/components/schemas/…` references resolve.
    pub fn validator(&self, pointer: &str) -> Arc<jsonschema::Validator> {
        let mut cache = self.validators.lock().expect("lock");
        if let Some(validator) = cache.get(pointer) {
            return validator.clone();
        }
        let schema = self
            .document
            .pointer(pointer)
            .unwrap_or_else(|| panic!("no schema at {pointer}"))
            .clone();
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "allOf": [schema],
            "components": self.document["components"],
        });
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("schema at {pointer} does not compile: {e}"));
        let validator = Arc::new(validator);
        cache.insert(pointer.to_owned(), validator.clone());
        validator
    }

    /// Validates `body` against the component schema `name`.
    pub fn check_schema(&self, name: &str, body: &Value) {
        let validator = self.validator(&format!("/components/schemas/{name}"));
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{name} does not match its schema: {errors:#?}\nbody: {body}"
        );
    }

    /// Checks one answer of `method path_template`: documented status and media type, and a
    /// body valid against the documented schema. `content_type` is the answer's Content-Type.
    pub fn check(
        &self,
        method: &str,
        path_template: &str,
        status: u16,
        content_type: Option<&str>,
        body: &Value,
    ) {
        let method_key = method.to_ascii_lowercase();
        let what = format!("{} {path_template} → {status}", method.to_uppercase());
        let operation = self.document["paths"][path_template]
            .get(&method_key)
            .unwrap_or_else(|| panic!("{what}: operation not documented"));
        self.exercised
            .lock()
            .expect("lock")
            .insert((method.to_uppercase(), path_template.to_owned()));
        let status_key = status.to_string();
        let Some(response) = operation["responses"].get(&status_key) else {
            let documented: Vec<_> = operation["responses"]
                .as_object()
                .map(|r| r.keys().cloned().collect())
                .unwrap_or_default();
            panic!("{what}: status not documented (documented: {documented:?}); body: {body}");
        };
        let Some(content) = response.get("content").and_then(Value::as_object) else {
            assert!(
                body.is_null() || body.as_str() == Some(""),
                "{what}: documented without a body, answered {body}"
            );
            return;
        };
        let actual = media_type(content_type.unwrap_or_else(|| panic!("{what}: no Content-Type")));
        let documented = if content.contains_key(&actual) {
            actual.clone()
        } else if content.contains_key("*/*") {
            "*/*".to_owned()
        } else {
            panic!(
                "{what}: answered {actual}, documented {:?}",
                content.keys().collect::<Vec<_>>()
            )
        };
        if documented == "*/*" {
            return; // Raw bytes: nothing to validate but that the operation says so.
        }
        let pointer = format!(
            "/paths/{}/{method_key}/responses/{status_key}/content/{}/schema",
            path_template.replace('~', "~0").replace('/', "~1"),
            documented.replace('~', "~0").replace('/', "~1"),
        );
        if actual != "application/json" {
            // Text answers are read as JSON strings by `TestApp::send` unless they parse as JSON.
            let text = match body {
                Value::String(text) => Value::String(text.clone()),
                other => Value::String(other.to_string()),
            };
            let validator = self.validator(&pointer);
            assert!(
                validator.is_valid(&text),
                "{what}: text body does not match its schema"
            );
            return;
        }
        let validator = self.validator(&pointer);
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{what}: body does not match the documented schema: {errors:#?}\nbody: {body}"
        );
    }

    /// `check` for a `TestApp` reply, plus: every documented response header is present.
    pub fn check_reply(&self, method: &str, path_template: &str, reply: &Reply) {
        let content_type = reply
            .headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        self.check(method, path_template, reply.status, content_type, &reply.json);
        let response = &self.document["paths"][path_template][method.to_ascii_lowercase()]["responses"]
            [reply.status.to_string()];
        if let Some(headers) = response["headers"].as_object() {
            for name in headers.keys() {
                assert!(
                    reply.headers.contains_key(name.as_str()),
                    "{method} {path_template} → {}: documented header {name} missing",
                    reply.status
                );
            }
        }
    }
}
