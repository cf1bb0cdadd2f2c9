//! `--format html`: one self-contained page per run, each report as a chart and a table.
//!
//! The page has no script and no link to anything outside itself (inline CSS, inline SVG),
//! so it opens from a mail attachment or an air-gapped share, and the same rows always give
//! the same bytes. Charts are declared per report (`chart:` in the YAML): `bar` draws one
//! vertical bar per `x` value, stacked by `series`; `hbar` draws labelled horizontal bars,
//! one small chart per value of `per`.

use std::collections::HashMap;
use std::fmt::Write as _;

use arrow::array::{Array, Float64Array, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use shared::config::{ChartConfig, ChartKind};

/// Rows shown in a report's table; the rest are counted.
pub const MAX_TABLE_ROWS: usize = 500;

const PALETTE: [&str; 8] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#9c755f",
];

/// One report on the page.
pub struct HtmlReport<'a> {
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub schema: &'a SchemaRef,
    pub batches: &'a [RecordBatch],
    pub chart: Option<&'a ChartConfig>,
}

/// `&`, `<`, `>`, `"` and `'` escaped.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The whole page.
pub fn render(title: &str, subtitle: &str, reports: &[HtmlReport<'_>]) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<header><h1>{}</h1><p>{}</p>\n<nav>",
        escape(title),
        escape(title),
        escape(subtitle)
    );
    for r in reports {
        let _ = write!(h, "<a href=\"#{0}\">{0}</a> ", escape(r.name));
    }
    h.push_str("</nav></header>\n");
    for r in reports {
        section(&mut h, r);
    }
    h.push_str("</body>\n</html>\n");
    h
}

const CSS: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0 auto;max-width:1100px;padding:1.5rem;color:#222;background:#fff}\
header p{color:#555;margin:.2rem 0 .6rem}nav a{margin-right:1rem;color:#4e79a7}\
section{margin:2rem 0;border-top:1px solid #ddd;padding-top:1rem}h2{margin:.2rem 0}\
.meta{color:#666;font-size:.9rem}.charts{display:flex;flex-wrap:wrap;gap:1rem;margin:1rem 0}\
svg text{font-size:11px;fill:#333}svg .title{font-size:13px;font-weight:600}\
table{border-collapse:collapse;font-size:.85rem;margin-top:.5rem}\
th,td{border:1px solid #ddd;padding:.2rem .5rem;text-align:left}th{background:#f4f4f4}\
td.num{text-align:right;font-variant-numeric:tabular-nums}tr:nth-child(even) td{background:#fafafa}";

fn section(h: &mut String, r: &HtmlReport<'_>) {
    let rows: usize = r.batches.iter().map(|b| b.num_rows()).sum();
    let _ = write!(
        h,
        "<section id=\"{0}\">\n<h2>{0}</h2>\n<p class=\"meta\">{1} row{2}{3}</p>\n",
        escape(r.name),
        rows,
        if rows == 1 { "" } else { "s" },
        r.description
            .map(|d| format!(" · {}", escape(d)))
            .unwrap_or_default()
    );
    let cols = cells(r);
    if let Some(chart) = r.chart {
        h.push_str("<div class=\"charts\">");
        match chart_svg(r, &cols, chart) {
            Ok(svg) => h.push_str(&svg),
            Err(e) => {
                let _ = write!(h, "<p class=\"meta\">no chart: {}</p>", escape(&e));
            }
        }
        h.push_str("</div>\n");
    }
    table(h, r, &cols, rows);
    h.push_str("</section>\n");
}

/// Every column as display strings (NULL as empty).
fn cells(r: &HtmlReport<'_>) -> Vec<Vec<String>> {
    let options = FormatOptions::default().with_null("");
    let mut cols: Vec<Vec<String>> = vec![Vec::new(); r.schema.fields().len()];
    for b in r.batches {
        for (i, col) in b.columns().iter().enumerate() {
            let Ok(f) = ArrayFormatter::try_new(col.as_ref(), &options) else {
                cols[i].extend(std::iter::repeat_n(String::new(), col.len()));
                continue;
            };
            for row in 0..col.len() {
                let mut s = f.value(row).to_string();
                if col.data_type() == &DataType::Float64 && !col.is_null(row) {
                    s = trim_float(&s);
                }
                cols[i].push(s);
            }
        }
    }
    cols
}

/// Doubles shown with at most 4 decimals.
fn trim_float(s: &str) -> String {
    match s.parse::<f64>() {
        Ok(v) if v.fract() != 0.0 => {
            let t = format!("{v:.4}");
            t.trim_end_matches('0').trim_end_matches('.').to_string()
        }
        _ => s.to_string(),
    }
}

fn is_numeric(t: &DataType) -> bool {
    t.is_numeric()
}

fn table(h: &mut String, r: &HtmlReport<'_>, cols: &[Vec<String>], rows: usize) {
    h.push_str("<table>\n<thead><tr>");
    for f in r.schema.fields() {
        let _ = write!(h, "<th>{}</th>", escape(f.name()));
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    let classes: Vec<&str> = r
        .schema
        .fields()
        .iter()
        .map(|f| {
            if is_numeric(f.data_type()) {
                " class=\"num\""
            } else {
                ""
            }
        })
        .collect();
    for row in 0..rows.min(MAX_TABLE_ROWS) {
        h.push_str("<tr>");
        for (col, class) in cols.iter().zip(&classes) {
            let _ = write!(h, "<td{class}>{}</td>", escape(&col[row]));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody>\n</table>\n");
    if rows > MAX_TABLE_ROWS {
        let _ = writeln!(
            h,
            "<p class=\"meta\">first {MAX_TABLE_ROWS} of {rows} rows shown</p>"
        );
    }
}

/// A column of `cols` (the report's display strings) by name.
fn text_column(
    r: &HtmlReport<'_>,
    cols: &[Vec<String>],
    name: &str,
) -> Result<Vec<String>, String> {
    let i = r
        .schema
        .index_of(name)
        .map_err(|_| format!("the report has no column `{name}`"))?;
    Ok(cols[i].clone())
}

/// A numeric column as f64 (NULL as 0).
fn number_column(r: &HtmlReport<'_>, name: &str) -> Result<Vec<f64>, String> {
    let i = r
        .schema
        .index_of(name)
        .map_err(|_| format!("the report has no column `{name}`"))?;
    if !is_numeric(r.schema.field(i).data_type()) {
        return Err(format!("column `{name}` is not numeric"));
    }
    let mut out = Vec::new();
    for b in r.batches {
        let a = arrow::compute::cast(b.column(i), &DataType::Float64).map_err(|e| e.to_string())?;
        let a = a.as_any().downcast_ref::<Float64Array>().expect("cast");
        out.extend((0..a.len()).map(|j| if a.is_null(j) { 0.0 } else { a.value(j) }));
    }
    Ok(out)
}

fn chart_svg(r: &HtmlReport<'_>, cols: &[Vec<String>], c: &ChartConfig) -> Result<String, String> {
    let x = text_column(r, cols, &c.x)?;
    let y = number_column(r, &c.y)?;
    match c.kind {
        ChartKind::Bar => {
            let series = match &c.series {
                Some(s) => Some(text_column(r, cols, s)?),
                None => None,
            };
            Ok(bar_chart(&c.x, &c.y, &x, &y, series.as_deref()))
        }
        ChartKind::Hbar => {
            let per = match &c.per {
                Some(p) => text_column(r, cols, p)?,
                None => vec![String::new(); x.len()],
            };
            let mut groups: Vec<(String, Vec<(String, f64)>)> = Vec::new();
            for ((g, label), v) in per.into_iter().zip(x).zip(y) {
                match groups.iter_mut().find(|(k, _)| *k == g) {
                    Some((_, rows)) => rows.push((label, v)),
                    None => groups.push((g, vec![(label, v)])),
                }
            }
            let mut out = String::new();
            for (g, rows) in groups {
                let title = match &c.per {
                    Some(p) => format!("{} by {} · {p} = {g}", c.y, c.x),
                    None => format!("{} by {}", c.y, c.x),
                };
                out.push_str(&hbar_chart(&title, &rows));
            }
            Ok(out)
        }
    }
}

/// `1234567` → `1.2M`.
fn short_number(v: f64) -> String {
    let a = v.abs();
    let (d, s) = if a >= 1e9 {
        (1e9, "G")
    } else if a >= 1e6 {
        (1e6, "M")
    } else if a >= 1e3 {
        (1e3, "k")
    } else {
        (1.0, "")
    };
    let x = v / d;
    if s.is_empty() && x.fract() != 0.0 {
        trim_float(&format!("{x:.2}"))
    } else if (x - x.round()).abs() < 0.05 {
        format!("{}{s}", x.round())
    } else {
        format!("{x:.1}{s}")
    }
}

/// A "nice" axis maximum (1, 2, 5 × 10^n) at or above `v`.
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * p >= v {
            return m * p;
        }
    }
    10.0 * p
}

/// The values of a bar chart: categories (`x`, in first-seen order), series (in
/// first-seen order; the `y` column's name when there is no `series`) and the sum of `y`
/// per category and series.
struct Stacks<'a> {
    cats: Vec<&'a str>,
    names: Vec<&'a str>,
    values: HashMap<(usize, usize), f64>,
}

impl<'a> Stacks<'a> {
    fn new(x: &'a [String], y: &[f64], series: Option<&'a [String]>, y_name: &'a str) -> Self {
        let mut cats: Vec<&str> = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        let mut values: HashMap<(usize, usize), f64> = HashMap::new();
        for i in 0..x.len() {
            let c = position_or_push(&mut cats, &x[i]);
            let s = position_or_push(&mut names, series.map(|s| s[i].as_str()).unwrap_or(y_name));
            *values.entry((c, s)).or_default() += y[i];
        }
        Stacks {
            cats,
            names,
            values,
        }
    }

    fn value(&self, cat: usize, series: usize) -> f64 {
        self.values.get(&(cat, series)).copied().unwrap_or(0.0)
    }

    /// The axis maximum: a nice number at or above the highest stack.
    fn axis_max(&self) -> f64 {
        let totals = (0..self.cats.len())
            .map(|c| (0..self.names.len()).map(|s| self.value(c, s)).sum::<f64>());
        nice_max(totals.fold(0.0, f64::max))
    }
}

/// The index of `item` in `items`, pushed at the end when it is not there yet.
fn position_or_push<'a>(items: &mut Vec<&'a str>, item: &'a str) -> usize {
    match items.iter().position(|i| *i == item) {
        Some(p) => p,
        None => {
            items.push(item);
            items.len() - 1
        }
    }
}

/// The size of a bar chart and of its plot area, in pixels.
struct Frame {
    w: f64,
    hgt: f64,
    left: f64,
    top: f64,
    plot_w: f64,
    plot_h: f64,
}

impl Frame {
    fn new() -> Frame {
        let (w, hgt, left, top, bottom) = (760.0, 340.0, 60.0, 40.0, 50.0);
        Frame {
            w,
            hgt,
            left,
            top,
            plot_w: w - left - 20.0,
            plot_h: hgt - top - bottom,
        }
    }
}

fn bar_chart(
    x_name: &str,
    y_name: &str,
    x: &[String],
    y: &[f64],
    series: Option<&[String]>,
) -> String {
    let stacks = Stacks::new(x, y, series, y_name);
    let max = stacks.axis_max();
    let f = Frame::new();
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg role=\"img\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\"><title>{2} per {3}{4}</title>",
        f.w,
        f.hgt,
        escape(y_name),
        escape(x_name),
        if series.is_some() { " and series" } else { "" }
    );
    let _ = write!(
        s,
        "<text class=\"title\" x=\"{}\" y=\"16\">{} per {}</text>",
        f.left,
        escape(y_name),
        escape(x_name)
    );
    legend(&mut s, &stacks.names, f.left);
    y_axis(&mut s, &f, max);
    bars(&mut s, &f, &stacks, max);
    s.push_str("</svg>");
    s
}

/// A colour square and the name of each series, in a row above the plot.
fn legend(s: &mut String, names: &[&str], left: f64) {
    let mut lx = left;
    for (i, n) in names.iter().enumerate() {
        let _ = write!(
            s,
            "<rect x=\"{lx}\" y=\"24\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"33\">{}</text>",
            PALETTE[i % PALETTE.len()],
            lx + 14.0,
            escape(n)
        );
        lx += 24.0 + 7.0 * n.chars().count() as f64;
    }
}

/// Five grid lines from 0 to `max`, each with its value on the left.
fn y_axis(s: &mut String, f: &Frame, max: f64) {
    for t in 0..=4 {
        let v = max * t as f64 / 4.0;
        let yy = f.top + f.plot_h - f.plot_h * t as f64 / 4.0;
        let _ = write!(
            s,
            "<line x1=\"{}\" x2=\"{}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#e5e5e5\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            f.left,
            f.left + f.plot_w,
            f.left - 6.0,
            yy + 4.0,
            short_number(v)
        );
    }
}

/// One stack of bars per category, and its label below (at most 24 labels, evenly spaced).
fn bars(s: &mut String, f: &Frame, stacks: &Stacks<'_>, max: f64) {
    let slot = f.plot_w / stacks.cats.len().max(1) as f64;
    let bar_w = (slot * 0.7).max(1.0);
    let every = stacks.cats.len().div_ceil(24).max(1);
    for (c, cat) in stacks.cats.iter().enumerate() {
        let bx = f.left + slot * c as f64 + (slot - bar_w) / 2.0;
        let mut base = f.top + f.plot_h;
        for (si, n) in stacks.names.iter().enumerate() {
            let v = stacks.value(c, si);
            if v <= 0.0 {
                continue;
            }
            let bh = f.plot_h * v / max;
            base -= bh;
            let _ = write!(
                s,
                "<rect x=\"{bx:.1}\" y=\"{base:.1}\" width=\"{bar_w:.1}\" height=\"{bh:.1}\" fill=\"{}\"><title>{} {}: {}</title></rect>",
                PALETTE[si % PALETTE.len()],
                escape(cat),
                escape(n),
                trim_float(&v.to_string())
            );
        }
        if c % every == 0 {
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                bx + bar_w / 2.0,
                f.top + f.plot_h + 16.0,
                escape(cat)
            );
        }
    }
}

fn hbar_chart(title: &str, rows: &[(String, f64)]) -> String {
    let (label_w, bar_max, row_h, top) = (280.0, 220.0, 20.0, 26.0);
    let w = label_w + bar_max + 70.0;
    let hgt = top + row_h * rows.len() as f64 + 8.0;
    let max = rows
        .iter()
        .map(|r| r.1)
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE);
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg role=\"img\" width=\"{w}\" height=\"{hgt}\" viewBox=\"0 0 {w} {hgt}\"><title>{0}</title><text class=\"title\" x=\"0\" y=\"16\">{0}</text>",
        escape(title)
    );
    for (i, (label, v)) in rows.iter().enumerate() {
        let y = top + row_h * i as f64;
        let shown: String = if label.chars().count() > 42 {
            format!("{}…", label.chars().take(41).collect::<String>())
        } else {
            label.clone()
        };
        let bw = bar_max * v.max(0.0) / max;
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}<title>{}</title></text>\
             <rect x=\"{label_w}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"{:.1}\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            label_w - 6.0,
            y + 13.0,
            escape(&shown),
            escape(label),
            y + 3.0,
            row_h - 6.0,
            PALETTE[0],
            label_w + bw + 4.0,
            y + 13.0,
            short_number(*v)
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    fn report() -> (SchemaRef, RecordBatch) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("dt", DataType::Utf8, true),
            Field::new("class", DataType::Utf8, true),
            Field::new("requests", DataType::Int64, true),
            Field::new("share", DataType::Float64, true),
        ]));
        let b = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![
                    "2015-05-17",
                    "2015-05-17",
                    "2015-05-18",
                ])),
                Arc::new(StringArray::from(vec![Some("2xx"), Some("<script>"), None])),
                Arc::new(Int64Array::from(vec![1500, 20, 7])),
                Arc::new(Float64Array::from(vec![0.986842105, 0.013157895, 1.0])),
            ],
        )
        .unwrap();
        (schema, b)
    }

    #[test]
    fn page_is_self_contained_escaped_and_deterministic() {
        let (schema, b) = report();
        let bar = ChartConfig {
            kind: ChartKind::Bar,
            x: "dt".into(),
            y: "requests".into(),
            series: Some("class".into()),
            per: None,
        };
        let hbar = ChartConfig {
            kind: ChartKind::Hbar,
            x: "class".into(),
            y: "requests".into(),
            series: None,
            per: Some("dt".into()),
        };
        let batches = [b];
        let page = |chart| {
            render(
                "access-log",
                "lake out/lake",
                &[HtmlReport {
                    name: "daily",
                    description: Some("Requests per class & day"),
                    schema: &schema,
                    batches: &batches,
                    chart: Some(chart),
                }],
            )
        };
        let p = page(&bar);
        assert_eq!(p, page(&bar));
        assert!(!p.contains("http://") && !p.contains("https://") && !p.contains("<script>"));
        assert!(p.contains("&lt;script&gt;"));
        assert!(p.contains("Requests per class &amp; day"));
        assert!(p.contains("<td class=\"num\">0.9868</td>"), "{p}");
        assert!(p.contains("<svg") && p.contains("1.5k"));
        let p = page(&hbar);
        assert!(p.contains("dt = 2015-05-17") && p.contains("dt = 2015-05-18"));
        let bad = ChartConfig {
            y: "class".into(),
            ..hbar.clone()
        };
        assert!(page(&bad).contains("no chart: column `class` is not numeric"));
    }

    #[test]
    fn axis_numbers() {
        assert_eq!(nice_max(730.0), 1000.0);
        assert_eq!(nice_max(1500.0), 2000.0);
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(short_number(1_234_567.0), "1.2M");
        assert_eq!(short_number(2000.0), "2k");
        assert_eq!(short_number(0.25), "0.25");
    }
}
