//! The unsubscribe page's multipart form reader (`survey_bridge::unsubscribe`), used for
//! RFC 8058 one-click POSTs: a boundary is read from the content type or refused; a body is
//! read into fields or refused; fields read are written back and read again unchanged; the
//! one-click form written with any accepted boundary is read as one-click.
//!
//! Input: the `Content-Type` value, a newline, the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use survey_bridge::unsubscribe::{ONE_CLICK, boundary, is_one_click, multipart_fields};

/// `fields` as a multipart body with CRLF line ends.
fn write(fields: &[(String, String)], boundary: &str) -> String {
    let mut body = String::new();
    for (name, value) in fields {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    body
}

fuzz_target!(|data: &[u8]| {
    let (content_type, body) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let content_type = String::from_utf8_lossy(content_type);
    let Some(boundary) = boundary(&content_type) else { return };
    assert!(!boundary.is_empty() && boundary.len() <= 70);

    let one_click = [(ONE_CLICK.0.to_string(), ONE_CLICK.1.to_string())];
    let written = write(&one_click, &boundary);
    assert_eq!(
        multipart_fields(written.as_bytes(), &boundary).as_deref(),
        Some(&one_click[..]),
        "the one-click form with boundary {boundary:?}"
    );

    let Some(fields) = multipart_fields(body, &boundary) else { return };
    for (name, value) in &fields {
        assert!(!name.contains('\n') && !name.contains(';'), "{name:?}");
        assert!(!value.contains(&format!("\n--{boundary}")), "a value holds the delimiter");
    }
    if is_one_click(&fields) {
        assert_eq!(fields, one_click);
    }
    // A bare CR survives reading (only CRLF becomes LF), so written back it may pair up
    // differently; the round trip is checked without them.
    let plain = |s: &str| !s.contains('\r');
    if plain(&boundary) && fields.iter().all(|(n, v)| plain(n) && plain(v)) {
        let again = multipart_fields(write(&fields, &boundary).as_bytes(), &boundary);
        assert_eq!(again.as_ref(), Some(&fields), "written back and read again");
    }
});
