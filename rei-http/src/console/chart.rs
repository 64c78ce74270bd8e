//! Charts as SVG, drawn by the server in whole numbers (no floats, no script): bars for one series, lines for
//! several over the same buckets. Every bar and point carries a `<title>` with its exact value, which a browser
//! shows on hover.

use maud::{Markup, html};

/// The drawing area, in SVG units (the SVG scales to its box).
const WIDTH: i64 = 640;
const HEIGHT: i64 = 200;
const LEFT: i64 = 64;
const BOTTOM: i64 = 24;
const TOP: i64 = 8;

/// One series of a chart: its name, its colour and one value per bucket.
pub(super) struct Line<'a> {
    /// Its name, in the legend.
    pub(super) name: &'a str,
    /// A CSS colour.
    pub(super) color: &'a str,
    /// One value per bucket, in the order of the chart's labels.
    pub(super) values: Vec<i64>,
}

/// The largest value, rounded up to a "nice" number (1, 2 or 5 times a power of ten), at least 1.
fn nice_max(max: i64) -> i64 {
    let max = max.max(1);
    let mut step = 1_i64;
    loop {
        for m in [1, 2, 5] {
            if let Some(n) = step.checked_mul(m)
                && n >= max
            {
                return n;
            }
        }
        match step.checked_mul(10) {
            Some(s) => step = s,
            None => return i64::MAX,
        }
    }
}

fn y_of(value: i64, max: i64) -> i64 {
    let h = i128::from(HEIGHT - TOP - BOTTOM);
    let v = i128::from(value.clamp(0, max));
    let y = i128::from(HEIGHT - BOTTOM) - v * h / i128::from(max);
    i64::try_from(y).unwrap_or(TOP)
}

fn x_of(i: usize, n: usize) -> i64 {
    let span = WIDTH - LEFT - 8;
    let n = i64::try_from(n.max(1)).unwrap_or(1);
    let i = i64::try_from(i).unwrap_or(0);
    LEFT + span * (2 * i + 1) / (2 * n)
}

/// Which labels to print under the axis: about eight, evenly spread from the first.
fn shown(i: usize, n: usize) -> bool {
    let every = n.div_ceil(8).max(1);
    i.is_multiple_of(every)
}

fn axes(max: i64, format: &dyn Fn(i64) -> String) -> Markup {
    let mid = max / 2;
    html! {
        line class="axis" x1=(LEFT) y1=(HEIGHT - BOTTOM) x2=(WIDTH) y2=(HEIGHT - BOTTOM) {}
        @for v in [mid, max] {
            line class="grid" x1=(LEFT) y1=(y_of(v, max)) x2=(WIDTH) y2=(y_of(v, max)) {}
            text class="tick" x=(LEFT - 4) y=(y_of(v, max) + 4) text-anchor="end" { (format(v)) }
        }
        text class="tick" x=(LEFT - 4) y=(HEIGHT - BOTTOM + 4) text-anchor="end" { (format(0)) }
    }
}

fn x_labels(labels: &[String]) -> Markup {
    html! {
        @for (i, label) in labels.iter().enumerate() {
            @if shown(i, labels.len()) {
                text class="tick" x=(x_of(i, labels.len())) y=(HEIGHT - 6) text-anchor="middle" { (label) }
            }
        }
    }
}

/// A bar chart of one series: `values[i]` over `labels[i]`, values printed by `format`.
#[must_use]
pub(super) fn bars(
    id: &str,
    title: &str,
    labels: &[String],
    values: &[i64],
    color: &str,
    format: &dyn Fn(i64) -> String,
) -> Markup {
    let max = nice_max(values.iter().copied().max().unwrap_or(0));
    let n = values.len().max(1);
    let width = ((WIDTH - LEFT - 8) / i64::try_from(n).unwrap_or(1) * 7 / 10).max(1);
    let total: i64 = values.iter().fold(0_i64, |a, v| a.saturating_add(*v));
    html! {
        figure.chart id=(id) data-total=(total) {
            figcaption { (title) " " span.total { (format(total)) } }
            svg.plot viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-label=(title) {
                (axes(max, format))
                @for (i, v) in values.iter().enumerate() {
                    @let y = y_of(*v, max);
                    rect.bar x=(x_of(i, n) - width / 2) y=(y) width=(width) height=((HEIGHT - BOTTOM - y).max(0))
                        fill=(color) data-value=(v) {
                        title { (labels.get(i).map_or("", String::as_str)) ": " (format(*v)) }
                    }
                }
                (x_labels(labels))
            }
        }
    }
}

/// A line chart of several series over the same `labels`, values printed by `format`.
#[must_use]
pub(super) fn lines(
    id: &str,
    title: &str,
    labels: &[String],
    series: &[Line<'_>],
    format: &dyn Fn(i64) -> String,
) -> Markup {
    let max = nice_max(series.iter().flat_map(|s| s.values.iter().copied()).max().unwrap_or(0));
    let n = labels.len().max(1);
    html! {
        figure.chart id=(id) {
            figcaption {
                (title)
                @for s in series {
                    " " span.legend {
                        svg.swatch width="10" height="10" viewBox="0 0 10 10" { rect width="10" height="10" fill=(s.color) {} }
                        " " (s.name)
                    }
                }
            }
            svg.plot viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-label=(title) {
                (axes(max, format))
                @for s in series {
                    @let points = s.values.iter().enumerate()
                        .map(|(i, v)| format!("{},{}", x_of(i, n), y_of(*v, max)))
                        .collect::<Vec<_>>().join(" ");
                    polyline.series points=(points) fill="none" stroke=(s.color) stroke-width="2" data-name=(s.name) {}
                    @for (i, v) in s.values.iter().enumerate() {
                        circle cx=(x_of(i, n)) cy=(y_of(*v, max)) r="3" fill=(s.color) data-value=(v) {
                            title { (s.name) " " (labels.get(i).map_or("", String::as_str)) ": " (format(*v)) }
                        }
                    }
                }
                (x_labels(labels))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_round_up_to_nice_numbers() {
        assert_eq!(nice_max(0), 1);
        assert_eq!(nice_max(3), 5);
        assert_eq!(nice_max(11), 20);
        assert_eq!(nice_max(50_001), 100_000);
        assert_eq!(nice_max(i64::MAX), i64::MAX);
    }

    #[test]
    fn bars_stand_on_the_axis_and_the_tallest_reaches_its_value() {
        let labels: Vec<String> = (0..4).map(|i| format!("{i}h")).collect();
        let svg = bars("c", "Revenue", &labels, &[0, 5, 10, 2], "#36c", &|v| v.to_string()).into_string();
        assert_eq!(svg.matches("<rect").count(), 4);
        assert!(svg.contains("data-total=\"17\""));
        // 10 is the scale's max: its bar starts at the top margin.
        assert!(svg.contains(&format!("y=\"{TOP}\"")), "{svg}");
        assert!(svg.contains("<title>2h: 10</title>"));
    }

    #[test]
    fn lines_draw_every_series_and_escape_names() {
        let labels: Vec<String> = (0..3).map(|i| i.to_string()).collect();
        let series = [
            Line { name: "ok", color: "green", values: vec![1, 2, 3] },
            Line { name: "<b>", color: "red", values: vec![0, 0, 1] },
        ];
        let svg = lines("l", "Jobs", &labels, &series, &|v| v.to_string()).into_string();
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("&lt;b&gt;") && !svg.contains("<b>"));
    }
}
