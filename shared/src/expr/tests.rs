use std::sync::Arc;

use arrow::array::{Array, AsArray, Int32Array, Int64Array, StringArray};
use arrow::datatypes::{Int32Type, Int64Type};

use super::*;

fn events() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("status", DataType::Int32, true),
        Field::new("path", DataType::Utf8, true),
        Field::new("agent", DataType::Utf8, true),
        Field::new("bytes", DataType::Int64, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int32Array::from(vec![
                Some(200),
                Some(404),
                None,
                Some(503),
            ])),
            Arc::new(StringArray::from(vec![
                Some("/a/b?x=1"),
                Some("/img/logo.png"),
                None,
                Some("/"),
            ])),
            Arc::new(StringArray::from(vec![
                Some("Googlebot/2.1"),
                Some("Mozilla/5.0"),
                None,
                Some("curl/8"),
            ])),
            Arc::new(Int64Array::from(vec![Some(10), None, Some(5), Some(7)])),
        ],
    )
    .unwrap()
}

fn strings(sql: &str) -> Vec<Option<String>> {
    let b = events();
    let a = compile(sql, &b.schema()).unwrap().evaluate(&b).unwrap();
    let a = a.as_string::<i32>();
    (0..a.len())
        .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
        .collect()
}

fn s(v: &[Option<&str>]) -> Vec<Option<String>> {
    v.iter().map(|x| x.map(str::to_string)).collect()
}

#[test]
fn string_functions() {
    assert_eq!(
        strings("lower(agent)"),
        s(&[
            Some("googlebot/2.1"),
            Some("mozilla/5.0"),
            None,
            Some("curl/8")
        ])
    );
    assert_eq!(
        strings("substr(path, 1, 4)"),
        s(&[Some("/a/b"), Some("/img"), None, Some("/")])
    );
    assert_eq!(
        strings("split_part(path, '/', 2)"),
        s(&[Some("a"), Some("img"), None, Some("")])
    );
    assert_eq!(
        strings(r"regexp_replace(path, '\?.*$', '')"),
        s(&[Some("/a/b"), Some("/img/logo.png"), None, Some("/")])
    );
    assert_eq!(
        strings(r"regexp_extract(path, '^/([^/?]*)', 1)"),
        s(&[Some("a"), Some("img"), None, Some("")])
    );
    assert_eq!(
        strings(r"regexp_extract(agent, '[0-9.]+')"),
        s(&[Some("2.1"), Some("5.0"), None, Some("8")])
    );
    assert_eq!(
        strings("coalesce(agent, 'unknown')"),
        s(&[
            Some("Googlebot/2.1"),
            Some("Mozilla/5.0"),
            Some("unknown"),
            Some("curl/8")
        ])
    );
}

#[test]
fn case_and_arithmetic() {
    assert_eq!(
        strings(
            "CASE WHEN lower(agent) LIKE '%bot%' THEN 'bot' WHEN agent IS NULL THEN NULL ELSE 'human' END"
        ),
        s(&[Some("bot"), Some("human"), None, Some("human")])
    );
    let b = events();
    let c = compile("status / 100 * 100", &b.schema()).unwrap();
    assert_eq!(c.data_type, DataType::Int64);
    let a = c.evaluate(&b).unwrap();
    let a = a.as_primitive::<Int64Type>();
    assert_eq!(
        a.iter().collect::<Vec<_>>(),
        vec![Some(200), Some(400), None, Some(500)]
    );
    // Narrow integers are widened to the types the stages store.
    let c = compile("CAST(status AS SMALLINT)", &b.schema()).unwrap();
    assert_eq!(c.data_type, DataType::Int32);
    let a = c.evaluate(&b).unwrap();
    assert_eq!(a.as_primitive::<Int32Type>().value(1), 404);
    let c = compile("bytes * 1.5", &b.schema()).unwrap();
    assert_eq!(c.data_type, DataType::Float64);
}

#[test]
fn date_trunc_gives_utc_microseconds() {
    let schema = Arc::new(Schema::new(vec![Field::new("ts", timestamp_type(), true)]));
    let ts = arrow::array::TimestampMicrosecondArray::from(vec![Some(90_061_000_001)])
        .with_timezone("UTC");
    let b = RecordBatch::try_new(schema.clone(), vec![Arc::new(ts)]).unwrap();
    let c = compile("date_trunc('hour', ts)", &schema).unwrap();
    assert_eq!(c.data_type, timestamp_type());
    let a = c.evaluate(&b).unwrap();
    assert_eq!(a.data_type(), &timestamp_type());
    assert_eq!(
        a.as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
            .value(0),
        90_000_000_000
    );
}

#[test]
fn errors_name_the_problem() {
    let schema = events().schema();
    let err = compile("lower(agnet)", &schema).unwrap_err();
    assert!(err.contains("agnet"), "{err}");
    let err = compile("no_such_fn(path)", &schema).unwrap_err();
    assert!(err.contains("no_such_fn"), "{err}");
    let err = compile("status +", &schema).unwrap_err();
    assert!(!err.is_empty());
    let err = compile("regexp_extract(path, '(', 1)", &schema);
    // A bad pattern is found when the expression first runs.
    if let Ok(c) = err {
        assert!(c.evaluate(&events()).is_err());
    }
    let err = Predicate::compile("lower(path)", &schema).unwrap_err();
    assert!(err.contains("true or false"), "{err}");
}

#[test]
fn old_filters_mean_what_they_meant() {
    let b = events();
    let pass = |text: &str| -> Vec<bool> {
        let m = Predicate::compile(text, &b.schema())
            .unwrap()
            .evaluate(&b)
            .unwrap();
        (0..m.len()).map(|i| m.value(i)).collect()
    };
    assert_eq!(pass("status >= 400"), [false, true, false, true]);
    assert_eq!(pass("status == 200"), [true, false, false, false]);
    // Double quotes are a string in the filter language, as they always were.
    assert_eq!(pass(r#"agent = "curl/8""#), [false, false, false, true]);
    assert_eq!(
        pass("status not in (200, 404)"),
        [false, false, false, true]
    );
    assert_eq!(pass("status is null"), [false, false, true, false]);
    assert_eq!(
        pass("bytes is not null and status != 503"),
        [true, false, false, false]
    );
    // SQL beyond the filter language.
    assert_eq!(
        pass("status >= 500 OR path LIKE '/img/%'"),
        [false, true, false, true]
    );
    assert_eq!(
        filter_sql("path = 'it''s' and x in (1.5, 2)"),
        r#""path" = 'it''s' AND "x" IN (1.5, 2)"#
    );
}

#[test]
fn derivations_chain() {
    let b = events();
    let d = Derivations::compile(
        &b.schema(),
        &[
            DerivedColumn {
                name: "class".into(),
                expr: "status / 100".into(),
            },
            DerivedColumn {
                name: "label".into(),
                expr: "CAST(class AS VARCHAR) || 'xx'".into(),
            },
        ],
    )
    .unwrap();
    let out = d.apply(b.clone()).unwrap();
    assert_eq!(out.num_columns(), 6);
    assert_eq!(out.column(5).as_string::<i32>().value(0), "2xx");
    let err = Derivations::compile(
        &b.schema(),
        &[DerivedColumn {
            name: "path".into(),
            expr: "1".into(),
        }],
    )
    .unwrap_err();
    assert_eq!(err.0, 0);
    assert!(err.1.contains("already"), "{}", err.1);
}

/// The test of the filter evaluator this module replaced, unchanged but for the call.
#[test]
fn masks_rows_as_the_hand_written_evaluator_did() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("status", DataType::Int32, true),
        Field::new("method", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int32Array::from(vec![
                Some(200),
                Some(404),
                None,
                Some(500),
            ])),
            Arc::new(StringArray::from(vec![
                Some("GET"),
                Some("GET"),
                Some("GET"),
                None,
            ])),
        ],
    )
    .unwrap();
    let f = |text: &str| {
        let mask = Predicate::compile(text, &schema)
            .unwrap()
            .evaluate(&batch)
            .unwrap();
        (0..mask.len()).map(|i| mask.value(i)).collect::<Vec<_>>()
    };
    assert_eq!(f("status >= 400"), vec![false, true, false, true]);
    assert_eq!(
        f("status >= 400 and method = 'GET'"),
        vec![false, true, false, false]
    );
    assert_eq!(f("status is null"), vec![false, false, true, false]);
    assert_eq!(f("status in (200, 500)"), vec![true, false, false, true]);
    assert_eq!(
        f("status not in (200, 500)"),
        vec![false, true, false, false]
    );
    assert_eq!(f("method != 'GET'"), vec![false, false, false, false]);
}
