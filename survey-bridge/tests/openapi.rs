//! `docs/openapi/results-webhook.yaml` against a running bridge: the documented path and
//! method exist; each required header and body property is required (a request without it
//! is refused, naming it); every documented status code is produced by a request the
//! document describes, and every answer is documented, with a body of the documented type;
//! the example body is accepted; and the examples fit their schemas.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use common::{Bridge, guid, sqlite, start};
use serde_json::{Value, json};
use sqlx::Connection;
use survey_bridge::{
    config::WebhookConfig,
    results::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign},
};

const SECRET: &str = "a-shared-secret-of-more-than-32-characters";

fn spec() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi/results-webhook.yaml");
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `node`, or what its `$ref` (a pointer into this document) names.
fn resolve<'a>(spec: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(target) => {
            let pointer =
                target.strip_prefix('#').unwrap_or_else(|| panic!("{target}: not in this document"));
            resolve(spec, spec.pointer(pointer).unwrap_or_else(|| panic!("{target}: nothing there")))
        }
        None => node,
    }
}

/// What is wrong with `value` against `schema`, for the JSON Schema keywords the document
/// uses (`type`, `const`, `minimum`, `minLength`, `format: uuid`, `required`, `properties`,
/// `additionalProperties`); a keyword it does not know fails the test.
fn violations(spec: &Value, schema: &Value, value: &Value, at: &str) -> Vec<String> {
    const KNOWN: [&str; 10] = [
        "type",
        "const",
        "minimum",
        "minLength",
        "format",
        "required",
        "properties",
        "additionalProperties",
        "description",
        "$ref",
    ];
    let schema = resolve(spec, schema);
    for keyword in schema.as_object().unwrap().keys() {
        assert!(KNOWN.contains(&keyword.as_str()), "{at}: keyword {keyword} not checked by this test");
    }
    let mut errors = Vec::new();
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::Array(types) => types.iter().map(|t| t.as_str().unwrap()).collect(),
            one => vec![one.as_str().unwrap()],
        };
        let fits = types.iter().any(|t| match *t {
            "object" => value.is_object(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            other => panic!("{at}: type {other} not checked by this test"),
        });
        if !fits {
            errors.push(format!("{at}: not of type {types:?}"));
            return errors;
        }
    }
    if let Some(expected) = schema.get("const")
        && value != expected
    {
        errors.push(format!("{at}: not {expected}"));
    }
    if let (Some(minimum), Some(n)) = (schema.get("minimum").and_then(Value::as_f64), value.as_f64())
        && n < minimum
    {
        errors.push(format!("{at}: below {minimum}"));
    }
    if let (Some(min), Some(s)) = (schema.get("minLength").and_then(Value::as_u64), value.as_str())
        && (s.chars().count() as u64) < min
    {
        errors.push(format!("{at}: shorter than {min}"));
    }
    if schema.get("format").and_then(Value::as_str) == Some("uuid")
        && let Some(s) = value.as_str()
        && uuid::Uuid::parse_str(s).is_err()
    {
        errors.push(format!("{at}: not a UUID"));
    }
    if let Some(object) = value.as_object() {
        for name in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            if !object.contains_key(name.as_str().unwrap()) {
                errors.push(format!("{at}: {name} is required"));
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (key, item) in object {
            let at = format!("{at}.{key}");
            match (properties.and_then(|p| p.get(key)), schema.get("additionalProperties")) {
                (Some(property), _) => errors.extend(violations(spec, property, item, &at)),
                (None, Some(Value::Bool(false))) => errors.push(format!("{at}: not allowed")),
                (None, Some(extra @ Value::Object(_))) => errors.extend(violations(spec, extra, item, &at)),
                (None, _) => {}
            }
        }
    }
    errors
}

/// How a request is signed.
#[derive(Clone, Copy)]
enum Signing<'a> {
    /// Both headers, with the right secret and the bridge's time.
    Signed,
    /// Both headers but this one.
    Without(&'a str),
}

/// The bridge, the operation as documented, and the status codes seen so far.
struct Webhook<'a> {
    spec: &'a Value,
    operation: &'a Value,
    bridge: Bridge,
    seen: BTreeSet<u16>,
}

impl Webhook<'_> {
    /// Posts `body`; asserts that the answer is documented, with a body of the documented
    /// type, and returns its status and (JSON or text) body.
    async fn post(&mut self, body: &str, signing: Signing<'_>) -> (u16, Value) {
        let now = self.bridge.clock.now().as_second();
        let signature = sign(SECRET.as_bytes(), now, body.as_bytes());
        let mut request =
            self.bridge.http().post(self.bridge.url("/results")).header("content-type", "application/json");
        for (name, value) in [(TIMESTAMP_HEADER, now.to_string()), (SIGNATURE_HEADER, signature)] {
            if !matches!(signing, Signing::Without(without) if without.eq_ignore_ascii_case(name)) {
                request = request.header(name, value);
            }
        }
        let response = request.body(body.to_string()).send().await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let text = response.text().await.unwrap();
        let documented = self.operation["responses"]
            .get(status.to_string())
            .unwrap_or_else(|| panic!("{status} is not documented: {text}"));
        let documented = resolve(self.spec, documented);
        let (media, content) = documented["content"]
            .as_object()
            .unwrap()
            .iter()
            .find(|(media, _)| content_type.starts_with(media.as_str()))
            .unwrap_or_else(|| panic!("{status}: {content_type} is not documented"));
        let value =
            if media == "application/json" { serde_json::from_str(&text).unwrap() } else { json!(text) };
        let errors = violations(self.spec, &content["schema"], &value, &format!("{status} body"));
        assert!(errors.is_empty(), "{errors:?}: {text}");
        self.seen.insert(status);
        (status, value)
    }
}

#[tokio::test]
async fn the_results_webhook_answers_as_its_openapi_description_says() {
    let spec = spec();
    assert_eq!(spec["openapi"], "3.1.0");
    let paths: Vec<&String> = spec["paths"].as_object().unwrap().keys().collect();
    assert_eq!(paths, ["/results"]);
    let methods: Vec<&String> = spec["paths"]["/results"].as_object().unwrap().keys().collect();
    assert_eq!(methods, ["post"]);
    let operation = &spec["paths"]["/results"]["post"];
    let json_body = &operation["requestBody"]["content"]["application/json"];
    let body_schema = resolve(&spec, &json_body["schema"]);

    // The examples fit their schemas, and the check refuses what the schema refuses.
    let examples: Vec<&Value> =
        json_body["examples"].as_object().unwrap().values().map(|e| &e["value"]).collect();
    assert!(!examples.is_empty());
    for example in &examples {
        assert_eq!(violations(&spec, body_schema, example, "example"), Vec::<String>::new());
    }
    for (code, response) in operation["responses"].as_object().unwrap() {
        for (media, content) in resolve(&spec, response)["content"].as_object().unwrap() {
            if let Some(example) = content.get("example") {
                let errors =
                    violations(&spec, &content["schema"], example, &format!("{code} {media} example"));
                assert!(errors.is_empty(), "{errors:?}");
            }
        }
    }
    let mut extra = examples[0].clone();
    extra["patient"] = json!("x");
    assert_eq!(violations(&spec, body_schema, &extra, "body"), ["body.patient: not allowed"]);
    let mut negative = examples[0].clone();
    negative["answers"]["overall"] = json!(-1);
    assert_eq!(violations(&spec, body_schema, &negative, "body"), ["body.answers.overall: below 0"]);

    let dir = tempfile::tempdir().unwrap();
    let bridge = start(&sqlite(dir.path()), |config| {
        let secret_file = config.tls.cert.with_file_name("webhook.secret");
        std::fs::write(&secret_file, SECRET).unwrap();
        config.webhook = Some(WebhookConfig { secret_file, ..WebhookConfig::default() });
    })
    .await;
    let max_body_bytes = bridge.config.webhook.as_ref().unwrap().max_body_bytes;
    let mut hook = Webhook { spec: &spec, operation, bridge, seen: BTreeSet::new() };

    // The example as it stands: refused until the patient agrees, then accepted, then used.
    let example = examples[0].clone();
    let body = example.to_string();
    let example_guid = example["guid"].as_str().unwrap();
    hook.bridge.invite(example_guid, "prov-w1", "en").await;
    let (status, reply) = hook.post(&body, Signing::Signed).await;
    assert_eq!(status, 403, "{reply}");
    hook.bridge.consent(example_guid).await;
    let (status, reply) = hook.post(&body, Signing::Signed).await;
    assert_eq!((status, &reply), (200, &json!({"status": "accepted"})));
    let (status, reply) = hook.post(&body, Signing::Signed).await;
    assert_eq!(status, 409, "{reply}");

    // A GUID never recorded.
    let mut unknown = example.clone();
    unknown["guid"] = json!(guid());
    let (status, reply) = hook.post(&unknown.to_string(), Signing::Signed).await;
    assert_eq!(status, 404, "{reply}");

    // Each required header, left out: 401 naming it.
    let mut headers = 0;
    for parameter in operation["parameters"].as_array().unwrap() {
        let parameter = resolve(&spec, parameter);
        assert_eq!(parameter["in"], "header");
        assert_eq!(parameter["required"], true, "{parameter}");
        let name = parameter["name"].as_str().unwrap();
        let (status, reply) = hook.post(&unknown.to_string(), Signing::Without(name)).await;
        assert_eq!(status, 401, "{name}: {reply}");
        assert!(reply["error"].as_str().unwrap().contains(name), "{reply} should name {name}");
        headers += 1;
    }
    assert_eq!(headers, 2);

    // Each required property, left out: 422 naming it; a property not documented: 422.
    let required: Vec<&str> =
        body_schema["required"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert_eq!(required, ["guid", "answers"]);
    for property in required {
        let mut without = unknown.clone();
        without.as_object_mut().unwrap().remove(property);
        let (status, reply) = hook.post(&without.to_string(), Signing::Signed).await;
        assert_eq!(status, 422, "{property}: {reply}");
        let error = reply["error"].as_str().unwrap();
        assert!(error.contains(&format!("`{property}`")), "{error} should name {property}");
    }
    let mut extra = unknown.clone();
    extra["patient"] = json!("x");
    let (status, reply) = hook.post(&extra.to_string(), Signing::Signed).await;
    assert_eq!(status, 422, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("unknown field `patient`"), "{reply}");

    // A body over the limit.
    let huge = format!("{{\"guid\": \"{}\", \"pad\": \"{}\"}}", guid(), "x".repeat(max_body_bytes));
    let (status, _) = hook.post(&huge, Signing::Signed).await;
    assert_eq!(status, 413);

    // The database not answering (another process holds the SQLite file locked): nothing
    // is counted, 503; the same answers are taken once it answers again.
    let late = guid();
    hook.bridge.invite(&late, "prov-w1", "en").await;
    hook.bridge.consent(&late).await;
    let mut answers = example.clone();
    answers["guid"] = json!(late);
    let mut lock = sqlx::SqliteConnection::connect(&hook.bridge.database_url).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE").execute(&mut lock).await.unwrap();
    let (status, reply) = hook.post(&answers.to_string(), Signing::Signed).await;
    assert_eq!(status, 503, "{reply}");
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    let (status, reply) = hook.post(&answers.to_string(), Signing::Signed).await;
    assert_eq!(status, 200, "{reply}");

    let documented: BTreeSet<u16> =
        operation["responses"].as_object().unwrap().keys().map(|code| code.parse().unwrap()).collect();
    assert_eq!(hook.seen, documented, "every documented status produced");
    hook.bridge.stop().await.unwrap();
}
