//! The SVG plot: well-formed XML, one `<path>` per drawn series, axis titles and tick
//! labels, every x axis, log y, empty runs, and the atomic refresh of runs/NAME/loss.svg.

use plot::{refresh_loss_svg, render_svg, MetricRow, Run, SvgOptions, XAxis};

/// A falling, slightly noisy run: a train row every 10 steps, a val row every 100.
fn run(name: &str, steps: u64, floor: f64) -> Run {
    let rows = (0..=steps)
        .step_by(10)
        .map(|step| {
            let s = step as f64;
            let loss = floor + 2.7 * (-s / 300.0).exp();
            let wiggle = if step.is_multiple_of(20) { 0.04 } else { -0.04 };
            MetricRow {
                step,
                tokens: step * 16_384,
                train_loss: Some(loss + wiggle),
                val_loss: step.is_multiple_of(100).then_some(loss + 0.1),
                elapsed_s: s * 0.5,
                ..MetricRow::default()
            }
        })
        .collect();
    Run { name: name.to_owned(), rows }
}

/// Checks that `text` is well-formed XML with one root element: tags balance, attribute
/// values are quoted, `&` starts a known entity, and nothing but whitespace sits outside
/// the root. Returns the element names in document order.
fn check_xml(text: &str) -> Vec<String> {
    let mut stack: Vec<String> = Vec::new();
    let mut elements = Vec::new();
    let mut roots = 0;
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        let (before, after) = rest.split_at(open);
        check_text(before);
        assert!(!stack.is_empty() || before.trim().is_empty(), "text outside the root: {before:?}");
        if let Some(body) = after.strip_prefix("<![CDATA[") {
            let end = body.find("]]>").expect("CDATA is closed");
            rest = &body[end + 3..];
            continue;
        }
        if let Some(body) = after.strip_prefix("<!--") {
            let end = body.find("-->").expect("comment is closed");
            rest = &body[end + 3..];
            continue;
        }
        let close = tag_end(after);
        let tag = &after[1..close];
        rest = &after[close + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop().unwrap_or_else(|| panic!("</{name}> closes nothing"));
            assert_eq!(open, name.trim(), "</{name}> closes <{open}>");
            continue;
        }
        if tag.starts_with('?') {
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let name = tag.split_whitespace().next().expect("tag has a name").to_owned();
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':'), "bad name {name:?}");
        check_attributes(&tag[name.len()..]);
        if stack.is_empty() {
            roots += 1;
        }
        elements.push(name.clone());
        if !self_closing {
            stack.push(name);
        }
    }
    check_text(rest);
    assert!(rest.trim().is_empty(), "text after the root: {rest:?}");
    assert!(stack.is_empty(), "unclosed elements: {stack:?}");
    assert_eq!(roots, 1, "exactly one root element");
    elements
}

/// The index of the `>` ending the tag at the start of `text`, skipping quoted values.
fn tag_end(text: &str) -> usize {
    let mut quote = None;
    for (i, c) in text.char_indices().skip(1) {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '>') => return i,
            (None, '<') => panic!("`<` inside a tag: {}", &text[..i]),
            _ => {}
        }
    }
    panic!("unterminated tag: {}", &text[..text.len().min(80)]);
}

/// `name="value"` pairs, each value without `<` and with well-formed entities.
fn check_attributes(mut text: &str) {
    loop {
        text = text.trim_start();
        if text.is_empty() {
            return;
        }
        let eq = text.find('=').unwrap_or_else(|| panic!("attribute without value: {text:?}"));
        let name = text[..eq].trim();
        assert!(!name.is_empty() && !name.contains(char::is_whitespace), "bad attribute name {name:?}");
        let value = text[eq + 1..].trim_start();
        let quote = value.chars().next().expect("attribute value");
        assert!(quote == '"' || quote == '\'', "unquoted value for {name}");
        let end = value[1..].find(quote).expect("closing quote") + 1;
        let inner = &value[1..end];
        assert!(!inner.contains('<'), "`<` in attribute {name}");
        check_text(inner);
        text = &value[end + 1..];
    }
}

/// Character data: every `&` starts an entity.
fn check_text(text: &str) {
    for (i, _) in text.match_indices('&') {
        let entity = &text[i..];
        let known = ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;", "&#"];
        assert!(known.iter().any(|e| entity.starts_with(e)), "bare & in {text:?}");
    }
}

fn count(elements: &[String], name: &str) -> usize {
    elements.iter().filter(|e| *e == name).count()
}

#[test]
fn the_checker_catches_broken_xml() {
    for bad in ["<svg><g></svg>", "<svg a=b/>", "<svg>&</svg>", "<svg/><svg/>", "<svg><g></g>"] {
        assert!(std::panic::catch_unwind(|| check_xml(bad)).is_err(), "{bad} passed");
    }
    check_xml("<svg a=\"1\"><g b='x &amp; y'/><![CDATA[ a < b ]]></svg>");
}

#[test]
fn two_runs_draw_three_paths_each_with_axis_labels() {
    let svg = render_svg(&[run("small", 1000, 1.5), run("wide", 800, 1.3)], &SvgOptions::default());
    let elements = check_xml(&svg);
    assert_eq!(elements[0], "svg");
    // Per run: raw train, smoothed train, val.
    assert_eq!(count(&elements, "path"), 6, "{svg}");
    assert_eq!(svg.matches("class=\"train-raw\"").count(), 2);
    assert_eq!(svg.matches("class=\"train\"").count(), 2);
    assert_eq!(svg.matches("class=\"val\"").count(), 2);
    assert!(svg.contains(">step</text>"), "x axis title");
    assert!(svg.contains(">loss</text>"), "y axis title");
    assert!(svg.contains(">0</text>") && svg.contains(">1000</text>"), "x tick labels");
    assert!(svg.contains(">2.0</text>") || svg.contains(">2</text>"), "y tick labels");
    assert!(svg.contains("small: val loss (best") && svg.contains("wide: train loss"), "legend");
    assert!(svg.contains("Loss: small vs wide"), "title");
    // Val markers: 11 + 9 points, plus one in each val legend entry.
    assert_eq!(count(&elements, "circle"), 11 + 9 + 2);
}

#[test]
fn a_short_run_draws_one_train_path_and_one_val_path() {
    let svg = render_svg(&[run("tiny", 100, 2.0)], &SvgOptions::default());
    let elements = check_xml(&svg);
    assert_eq!(count(&elements, "path"), 2);
    assert!(svg.contains("train loss (latest"), "unsmoothed legend: {svg}");
}

#[test]
fn every_x_axis_and_log_y_have_titles() {
    let runs = [run("small", 1000, 1.5)];
    let tokens = render_svg(&runs, &SvgOptions { x: XAxis::Tokens, ..SvgOptions::default() });
    check_xml(&tokens);
    assert!(tokens.contains(">tokens</text>") && tokens.contains("M</text>"), "{tokens}");
    let time = render_svg(&runs, &SvgOptions { x: XAxis::Time, ..SvgOptions::default() });
    check_xml(&time);
    assert!(time.contains(">time (min)</text>"));
    let log = render_svg(&runs, &SvgOptions { log_y: true, ..SvgOptions::default() });
    assert_eq!(count(&check_xml(&log), "path"), 3);
    assert!(log.contains(">loss (log scale)</text>"));
}

#[test]
fn odd_inputs_still_give_well_formed_pictures() {
    let empty = Run { name: "a <b> & 'c'".to_owned(), rows: Vec::new() };
    let svg = render_svg(std::slice::from_ref(&empty), &SvgOptions::default());
    let elements = check_xml(&svg);
    assert_eq!(count(&elements, "path"), 0);
    assert!(svg.contains("no loss values yet") && svg.contains("a &lt;b&gt; &amp; &apos;c&apos;"));
    check_xml(&render_svg(&[], &SvgOptions::default()));

    let one = Run {
        name: "one".to_owned(),
        rows: vec![MetricRow { train_loss: Some(2.0), ..MetricRow::default() }],
    };
    assert_eq!(count(&check_xml(&render_svg(&[one], &SvgOptions::default())), "path"), 1);

    let mut weird = run("weird", 200, 1.0);
    weird.rows[3].train_loss = Some(f64::NAN);
    weird.rows[4].train_loss = Some(-1.0);
    weird.rows[5].val_loss = Some(f64::INFINITY);
    for log_y in [false, true] {
        let svg = render_svg(&[weird.clone(), empty.clone()], &SvgOptions { log_y, ..SvgOptions::default() });
        check_xml(&svg);
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }
}

#[test]
fn auto_reload_is_a_cdata_script() {
    let svg = render_svg(
        &[run("small", 300, 1.5)],
        &SvgOptions { auto_reload_s: Some(15), ..SvgOptions::default() },
    );
    let elements = check_xml(&svg);
    assert_eq!(count(&elements, "script"), 1);
    assert!(svg.contains("15000"));
}

#[test]
fn refresh_writes_loss_svg_beside_metrics() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rows = run("ignored", 500, 1.5).rows;
    let text: String = rows.iter().map(|r| serde_json::to_string(r).expect("row") + "\n").collect();
    std::fs::write(dir.path().join("metrics.jsonl"), text + "{\"step\":51").expect("metrics");
    refresh_loss_svg(dir.path()).expect("refresh");
    let svg = std::fs::read_to_string(dir.path().join("loss.svg")).expect("loss.svg written");
    assert_eq!(count(&check_xml(&svg), "path"), 3);
    let names: Vec<_> =
        std::fs::read_dir(dir.path()).expect("list").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(names.len(), 2, "no temporary file left behind: {names:?}");

    let missing = refresh_loss_svg(&dir.path().join("nope")).expect_err("no run folder").to_string();
    assert!(missing.contains("nope"), "{missing}");
}
