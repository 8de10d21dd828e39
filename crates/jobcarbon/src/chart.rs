//! `plan --chart`: grams of CO2e per inference against traffic, one line per strategy, with
//! every break-even point marked. SVG through plotters (no font files needed: SVG text is laid
//! out by the viewer).

use jobcarbon_core::plan::{
    BreakEven, Horizon, RequestRate, Scale, StrategyCost, SweepAxis, range,
};
use plotters::prelude::*;

/// Colours of the strategy lines, in order (Okabe–Ito, readable with colour blindness).
const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(240, 228, 66),
    RGBColor(0, 0, 0),
];

/// Samples per line: log-spaced, enough for a smooth curve.
const SAMPLES: usize = 61;

/// The traffic span drawn (requests/day): the sweep's range when one is given, else two
/// decades either side of the plan's traffic; widened to show every break-even point.
pub fn span(
    horizon: &Horizon,
    break_evens: &[(usize, usize, BreakEven)],
    sweep: Option<(f64, f64)>,
) -> (f64, f64) {
    let traffic = horizon.traffic.requests_per_day();
    let (mut lo, mut hi) = sweep.unwrap_or((traffic / 100.0, traffic * 100.0));
    for (_, _, be) in break_evens {
        if let Some(r) = be.traffic() {
            lo = lo.min(r.requests_per_day() / 10.0);
            hi = hi.max(r.requests_per_day() * 10.0);
        }
    }
    (lo, hi)
}

/// Render the chart as an SVG document. `span` is in requests per day.
pub fn render(
    strategies: &[StrategyCost],
    horizon: &Horizon,
    break_evens: &[(usize, usize, BreakEven)],
    span: (f64, f64),
) -> anyhow::Result<String> {
    let per_day = range(SweepAxis::Traffic, span.0, span.1, SAMPLES, Scale::Log)?;
    let curves = curves(strategies, horizon, &per_day);
    let markers = markers(strategies, horizon, break_evens);
    let ys = curves.iter().flatten().map(|p| p.1);
    let (y_lo, y_hi) = ys.fold((f64::INFINITY, 0.0f64), |(lo, hi), y| {
        (lo.min(y), hi.max(y))
    });
    if !(y_lo.is_finite() && y_lo > 0.0 && y_hi.is_finite()) {
        anyhow::bail!("nothing to chart: per-inference carbon is zero or not finite");
    }

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 600)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Life-cycle carbon per inference (ASCe) against traffic",
                ("sans-serif", 22),
            )
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(80)
            .build_cartesian_2d(
                (span.0..span.1).log_scale(),
                (y_lo / 1.5..y_hi * 1.5).log_scale(),
            )
            .map_err(draw_error)?;
        chart
            .configure_mesh()
            .x_desc("traffic (requests/day)")
            .y_desc("gCO2e per inference")
            .x_label_formatter(&|v| format!("{v:.0e}"))
            .y_label_formatter(&|v| format!("{v:.1e}"))
            .draw()
            .map_err(draw_error)?;
        for (i, (strategy, curve)) in strategies.iter().zip(&curves).enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(
                    curve.iter().copied(),
                    colour.stroke_width(3),
                ))
                .map_err(draw_error)?
                .label(strategy.name.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 4), (x + 16, y + 4)], colour.filled())
                });
        }
        chart
            .draw_series(markers.iter().map(|(x, y, _)| {
                Circle::new((*x, *y), 6, ShapeStyle::from(&BLACK).stroke_width(2))
            }))
            .map_err(draw_error)?
            .label("break-even")
            .legend(|(x, y)| Circle::new((x + 8, y), 5, ShapeStyle::from(&BLACK).stroke_width(2)));
        chart
            .draw_series(markers.iter().map(|(x, y, label)| {
                Text::new(
                    format!("{label} at {}/day", crate::report_fmt::sig(*x)),
                    (*x, *y * 1.25),
                    ("sans-serif", 12),
                )
            }))
            .map_err(draw_error)?;
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(draw_error)?;
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

/// Per strategy, per-inference carbon at each traffic in `per_day`.
fn curves(strategies: &[StrategyCost], horizon: &Horizon, per_day: &[f64]) -> Vec<Vec<(f64, f64)>> {
    strategies
        .iter()
        .map(|s| {
            per_day
                .iter()
                .map(|&r| {
                    let h = Horizon {
                        traffic: RequestRate::per_day(r),
                        ..*horizon
                    };
                    (r, s.outlook(&h).per_inference_g)
                })
                .collect()
        })
        .collect()
}

/// Each break-even point at its traffic and carbon, labelled with the two strategies.
fn markers(
    strategies: &[StrategyCost],
    horizon: &Horizon,
    break_evens: &[(usize, usize, BreakEven)],
) -> Vec<(f64, f64, String)> {
    break_evens
        .iter()
        .filter_map(|(a, b, be)| {
            let r = be.traffic()?;
            let h = Horizon {
                traffic: r,
                ..*horizon
            };
            let g = strategies.get(*a)?.outlook(&h).per_inference_g;
            let names = (
                strategies.get(*a)?.name.as_str(),
                strategies.get(*b)?.name.as_str(),
            );
            Some((
                r.requests_per_day(),
                g,
                format!("{} = {}", names.0, names.1),
            ))
        })
        .collect()
}

fn draw_error<E: std::error::Error + Send + Sync + 'static>(
    e: DrawingAreaErrorKind<E>,
) -> anyhow::Error {
    anyhow::anyhow!("drawing the chart: {e}")
}
