//! `report --chart`: hand-built SVG (no fonts, no dependencies): stacked bars by ASCᵉ term per
//! group for a window, or one line of ASCᵉ per group across the steps.

use crate::report::label;
use crate::report_fmt::grams;
use serde_json::Value;
use std::fmt::Write as _;

const TERMS: [&str; 6] = [
    "operational",
    "embodied_system",
    "platform_operational",
    "platform_embodied",
    "model_epc",
    "retraining",
];
/// Okabe–Ito, readable with colour blindness (as `chart.rs`).
const COLOURS: [&str; 8] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#f0e442", "#000000",
];
/// Groups drawn; the rest are in the table.
const MAX_GROUPS: usize = 30;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn term(item: &Value, t: &str) -> f64 {
    item["terms"][t].as_f64().unwrap_or(0.0).max(0.0)
}

/// Stacked horizontal bars, one per group, segments by term, with a legend.
pub fn bars(answer: &Value, fields: &[String]) -> String {
    let items: Vec<&Value> = answer["items"]
        .as_array()
        .into_iter()
        .flatten()
        .take(MAX_GROUPS)
        .collect();
    let (pad, plot, bar) = (220.0, 560.0, 20.0);
    let height = 40.0 + items.len() as f64 * (bar + 6.0) + 30.0;
    let max = items
        .iter()
        .map(|i| TERMS.iter().map(|t| term(i, t)).sum::<f64>())
        .fold(1e-12, f64::max);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" font-family="sans-serif" font-size="11">"#,
        w = pad + plot + 90.0
    );
    let _ = write!(
        svg,
        r#"<text x="10" y="18" font-size="14">ASCe by term, {}</text>"#,
        escape(&window(answer))
    );
    for (row, item) in items.iter().enumerate() {
        let y = 40.0 + row as f64 * (bar + 6.0);
        let name = escape(&label(item, fields).join(" / "));
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end">{name}</text>"#,
            pad - 6.0,
            y + bar * 0.7
        );
        let mut x = pad;
        for (k, t) in TERMS.iter().enumerate() {
            let w = term(item, t) / max * plot;
            if w > 0.0 {
                let _ = write!(
                    svg,
                    r#"<rect class="{t}" x="{x:.2}" y="{y}" width="{w:.2}" height="{bar}" fill="{}"><title>{t}: {}</title></rect>"#,
                    COLOURS[k],
                    grams(term(item, t))
                );
            }
            x += w;
        }
        let total = item["asce_g"].as_f64().unwrap_or(0.0);
        let _ = write!(
            svg,
            r#"<text x="{:.2}" y="{}">{}</text>"#,
            x + 4.0,
            y + bar * 0.7,
            grams(total)
        );
    }
    let legend_y = height - 14.0;
    for (k, t) in TERMS.iter().enumerate() {
        let x = 10.0 + k as f64 * 150.0;
        let _ = write!(
            svg,
            r#"<rect x="{x}" y="{}" width="10" height="10" fill="{}"/><text x="{}" y="{legend_y}">{t}</text>"#,
            legend_y - 9.0,
            COLOURS[k],
            x + 14.0
        );
    }
    svg + "</svg>\n"
}

fn window(answer: &Value) -> String {
    format!(
        "{} .. {}",
        answer["window"]["start"].as_str().unwrap_or("?"),
        answer["window"]["end"].as_str().unwrap_or("?")
    )
}

/// One polyline of ASCᵉ per group across the steps (the largest groups of the window).
pub fn lines(answer: &Value, fields: &[String]) -> String {
    let steps: Vec<&Value> = answer["steps"].as_array().into_iter().flatten().collect();
    let groups: Vec<Vec<String>> = answer["items"]
        .as_array()
        .into_iter()
        .flatten()
        .take(COLOURS.len())
        .map(|i| label(i, fields))
        .collect();
    let series = per_step(&steps, &groups, fields);
    let (left, top, w, h) = (70.0, 30.0, 640.0, 300.0);
    let max = series.iter().flatten().copied().fold(1e-12, f64::max);
    let x = |i: usize| left + w * i as f64 / (steps.len().max(2) - 1) as f64;
    let y = |v: f64| top + h - h * v / max;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" font-family="sans-serif" font-size="11">"#,
        left + w + 20.0,
        top + h + 40.0 + 16.0 * groups.len() as f64
    );
    let _ = write!(
        svg,
        r#"<text x="10" y="18" font-size="14">ASCe per step, {}</text>"#,
        escape(&window(answer))
    );
    let _ = write!(
        svg,
        r#"<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="black"/>"#,
        top + h,
        left + w,
        top + h,
        top + h
    );
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="end">{}</text><text x="{}" y="{}" text-anchor="end">0</text>"#,
        left - 4.0,
        top + 4.0,
        grams(max),
        left - 4.0,
        top + h
    );
    for (n, (group, values)) in groups.iter().zip(&series).enumerate() {
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.2},{:.2}", x(i), y(*v)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline class="group" fill="none" stroke="{}" stroke-width="2" points="{}"><title>{}</title></polyline>"#,
            COLOURS[n],
            points.join(" "),
            escape(&group.join(" / "))
        );
        let ly = top + h + 36.0 + 16.0 * n as f64;
        let _ = write!(
            svg,
            r#"<rect x="{left}" y="{}" width="10" height="10" fill="{}"/><text x="{}" y="{ly}">{}</text>"#,
            ly - 9.0,
            COLOURS[n],
            left + 14.0,
            escape(&group.join(" / "))
        );
    }
    if let (Some(first), Some(last)) = (steps.first(), steps.last()) {
        let _ = write!(
            svg,
            r#"<text x="{left}" y="{}">{}</text><text x="{}" y="{}" text-anchor="end">{}</text>"#,
            top + h + 14.0,
            escape(first["window"]["start"].as_str().unwrap_or("")),
            left + w,
            top + h + 14.0,
            escape(last["window"]["start"].as_str().unwrap_or(""))
        );
    }
    svg + "</svg>\n"
}

/// ASCᵉ of each group in each step (0 where the group booked nothing).
fn per_step(steps: &[&Value], groups: &[Vec<String>], fields: &[String]) -> Vec<Vec<f64>> {
    let asce_in = |s: &Value, g: &Vec<String>| {
        s["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| &label(i, fields) == g)
            .and_then(|i| i["asce_g"].as_f64())
            .unwrap_or(0.0)
    };
    groups
        .iter()
        .map(|g| steps.iter().map(|s| asce_in(s, g)).collect())
        .collect()
}
