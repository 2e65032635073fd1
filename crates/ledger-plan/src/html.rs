//! The HTML reports: one self-contained page each, inline SVG written by hand, no scripts,
//! no network. Every string that comes from input (the scenario's name, labels, keys,
//! targets) is escaped.
//!
//! The answer comes first: a solve's verdict line per target, a frontier's table, a plan's
//! count of configurations that never ran dry, naming those that ran dry and those with a thin
//! margin. A plan's overview follows (the map of depletion across a sweep, then the table, with
//! each configuration's lowest p5), and its charts are drawn for 12 configurations at most
//! (the rest are in the table). Then the charts, in a grid that fills the
//! page's width, two a row (the last of an odd number across the page, drawn wider, so that
//! no row is left with a blank half): the pool's balance by day (p5-p95 band and median, on
//! a logarithmic scale in sats so that a pool that dies on day 1 shows its fall, not a flat
//! line at zero) with the target drawn on it; a solve's values tested (the share of seeds
//! with the target's bad event, with the limit and the indifference band); a frontier's
//! curve with each interval as an error bar; a plan's served shares by tier and probability
//! of depletion across the sweep.

use std::fmt::Write as _;

use super::frontier::{result_interval_words, FrontierOutput};
use super::report::{thousands, PlanOutput, PoolBand, Summary};
use super::scenario::{fmt_f64, PlanScenario};
use super::solve::{
    self, decision_word, level_word, unit, Level, SolveOutput, SolveRange, Step, TargetResult, Verdict,
};
use super::sprt::Decision;
use super::target::{Metric, Target};

const FREE: &str = "#2e7d32";
const PARTIAL: &str = "#f9a825";
const GATED: &str = "#9e9e9e";
const BAND: &str = "#90caf9";
const MEDIAN: &str = "#0d47a1";
const TARGET: &str = "#6a1b9a";
const DRY: &str = "#c62828";
/// A configuration with a thin margin: amber, the badge's background; darker, the line and
/// words on its chart, which read on white.
const THIN: &str = "#f9a825";
const THIN_INK: &str = "#b26a00";

/// `s` with the characters that mean something in HTML or an attribute escaped.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// `s` escaped, for a table cell that wraps: a word with a hyphen in it (`--max-seeds`) is
/// kept whole rather than broken after the hyphen.
fn esc_cell(s: &str) -> String {
    s.split(' ')
        .map(|w| if w.contains('-') { format!(r#"<span class="nw">{}</span>"#, esc(w)) } else { esc(w) })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A round step giving about `n` ticks up to `max`.
fn tick_step(max: f64, n: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let raw = max / n;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// The days on a balance chart's axis to `days`: about six, on whole days only (a step of 1,
/// 2, 5, 10, ... days).
fn day_ticks(days: u32) -> Vec<u32> {
    let step = tick_step(f64::from(days), 6.0).max(1.0).round() as usize;
    (0..=days).step_by(step).collect()
}

/// Ticks from `lo` to `hi`, about `n` of them, on round values.
fn ticks(lo: f64, hi: f64, n: f64) -> Vec<f64> {
    let step = tick_step(hi - lo, n);
    let mut v = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while v <= hi + step * 1e-9 {
        out.push(if v.abs() < step * 1e-9 { 0.0 } else { v });
        v += step;
    }
    out
}

fn short(v: f64) -> String {
    // The unit is chosen after rounding: 999,960 is "1M", not "1000k".
    if v >= 999_950.0 {
        format!("{}M", fmt_f64((v / 1e5).round() / 10.0))
    } else if v >= 999.95 {
        format!("{}k", fmt_f64((v / 1e2).round() / 10.0))
    } else {
        fmt_f64((v * 1e6).round() / 1e6)
    }
}

/// Requests per seed: whole requests with thousands separators from 100 up, else at most one
/// decimal.
fn per_seed(v: f64) -> String {
    if v >= 99.95 {
        thousands(v.round() as u64)
    } else {
        fmt_f64((v * 10.0).round() / 10.0)
    }
}

/// About how wide `text` is at `size` units a line: 0.64 of the size a character (DejaVu Sans,
/// the widest common fallback, gives a digit 0.636 and a lower-case letter at most 0.64 but for
/// m and w), 0.72 in bold.
fn text_width(text: &str, size: f64, bold: bool) -> f64 {
    text.chars().count() as f64 * size * if bold { 0.72 } else { 0.64 }
}

/// The attributes that squeeze a text wider than `room` (at `size`, bold or not) to fit rather
/// than let it run off the chart's edge; none when it fits.
fn squeeze(text: &str, size: f64, bold: bool, room: f64) -> String {
    if text_width(text, size, bold) > room {
        format!(r#" textLength="{room:.0}" lengthAdjust="spacingAndGlyphs""#)
    } else {
        String::new()
    }
}

/// A percentage with one decimal.
fn pct1(p: f64) -> String {
    fmt_f64((p * 1000.0).round() / 10.0)
}

/// The opening of an SVG of `w` x `h` units that scales to the width of its grid cell.
fn svg_open(o: &mut String, w: f64, h: f64, label: &str) {
    let _ = write!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" role="img" aria-label="{}">"#,
        esc(label)
    );
}

/// Whether chart `i` of `n` takes a row of its own. The grid puts charts two a row (each
/// column is at least 40 % of its width, so three never fit) and the last of an odd number
/// goes across the page, drawn wider, rather than leave half a row blank.
fn across(i: usize, n: usize) -> bool {
    n % 2 == 1 && i + 1 == n
}

/// A chart in the grid, across the page if `wide`.
fn figure(o: &mut String, wide: bool, svg: &str) {
    let _ = write!(o, "<figure{}>{svg}</figure>", if wide { r#" class="wide""# } else { "" });
}

/// The height of a row of tick labels under the x axis, in SVG units.
const TICK_ROW: f64 = 11.0;

/// The plot area of a chart, in SVG units.
#[derive(Clone, Copy)]
struct Frame {
    w: f64,
    h: f64,
    l: f64,
    t: f64,
    r: f64,
    b: f64,
}

impl Frame {
    fn new(w: f64, h: f64) -> Frame {
        Frame { w, h, l: 58.0, t: 26.0, r: 14.0, b: 34.0 }
    }
    fn pw(&self) -> f64 {
        self.w - self.l - self.r
    }
    fn ph(&self) -> f64 {
        self.h - self.t - self.b
    }
    /// `f` in 0..=1 across the plot.
    fn x(&self, f: f64) -> f64 {
        self.l + self.pw() * f
    }
    /// `f` in 0..=1 up the plot.
    fn y(&self, f: f64) -> f64 {
        self.t + self.ph() * (1.0 - f)
    }
    /// The title, the axis names and the plot's border.
    fn chrome(&self, o: &mut String, title: &str, x_name: &str, y_name: &str) {
        // A title wider than the chart (about 7 units a character at its size) is squeezed
        // to fit rather than cut off at the edge.
        let room = self.w - 8.0;
        let fit = if title.chars().count() as f64 * 7.0 > room {
            format!(r#" textLength="{room:.0}" lengthAdjust="spacingAndGlyphs""#)
        } else {
            String::new()
        };
        let _ = write!(o, r##"<text x="4" y="16" class="t"{fit}>{}</text>"##, esc(title));
        let _ = write!(
            o,
            r##"<text x="{:.1}" y="{:.1}" class="ax" text-anchor="middle">{}</text>"##,
            self.l + self.pw() / 2.0,
            self.h - 4.0,
            esc(x_name)
        );
        let (yx, yy) = (13.0, self.t + self.ph() / 2.0);
        let _ = write!(
            o,
            r##"<text x="{yx}" y="{yy:.1}" class="ax" text-anchor="middle" transform="rotate(-90 {yx} {yy:.1})">{}</text>"##,
            esc(y_name)
        );
        let _ = write!(
            o,
            r##"<rect x="{}" y="{}" width="{:.1}" height="{:.1}" fill="none" stroke="#9e9e9e"/>"##,
            self.l,
            self.t,
            self.pw(),
            self.ph()
        );
    }
    fn x_tick(&self, o: &mut String, f: f64, label: &str) {
        self.x_tick_in_row(o, f, label, 0);
    }
    /// A tick with its label in row `row` under the axis (0 the first), [`TICK_ROW`] apart.
    fn x_tick_in_row(&self, o: &mut String, f: f64, label: &str, row: usize) {
        let x = self.x(f);
        let _ = write!(
            o,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{:.1}" stroke="#9e9e9e"/><text x="{x:.1}" y="{:.1}" class="n" text-anchor="middle">{}</text>"##,
            self.t + self.ph(),
            self.t + self.ph() + 4.0,
            self.t + self.ph() + 15.0 + TICK_ROW * row as f64,
            esc(label)
        );
    }
    fn y_tick(&self, o: &mut String, f: f64, label: &str) {
        let y = self.y(f);
        let _ = write!(
            o,
            r##"<line x1="{}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#eeeeee"/><text x="{}" y="{:.1}" class="n" text-anchor="end">{}</text>"##,
            self.l,
            self.l + self.pw(),
            // Clear of a dot on the plot's left edge.
            self.l - 7.0,
            y + 3.5,
            esc(label)
        );
    }
}

/// The balance axis: `log10(1 + sats)` from 0 to `10^decades` sats, so that 0 has a place
/// and every power of ten the same height.
#[derive(Clone, Copy)]
struct SatsScale {
    decades: u32,
}

impl SatsScale {
    /// A scale that holds `max` sats.
    fn holding(max: u64) -> SatsScale {
        let mut decades = 1;
        while decades < 19 && 10f64.powi(decades as i32) < max as f64 {
            decades += 1;
        }
        SatsScale { decades }
    }
    fn f(&self, sats: f64) -> f64 {
        ((1.0 + sats.max(0.0)).log10() / f64::from(self.decades)).min(1.0)
    }
    fn ticks(&self) -> Vec<f64> {
        let mut t = vec![0.0];
        t.extend((1..=self.decades).map(|d| 10f64.powi(d as i32)));
        t
    }
}

/// Something a balance chart marks besides the band.
enum Mark {
    /// A day, as a vertical line.
    Day { day: u32, label: String, color: &'static str },
    /// A balance, as a horizontal line.
    Sats { sats: f64, label: String, color: &'static str },
}

/// The marks a target puts on a balance chart.
fn target_marks(target: &Target) -> Vec<Mark> {
    match target.metric {
        Metric::PDry { day } => {
            vec![Mark::Day {
                day,
                label: format!("target: dry by day {day} in ≤ {} of seeds", pct_words(target)),
                color: TARGET,
            }]
        }
        Metric::Pool { day, pct } => vec![
            Mark::Sats {
                sats: target.value,
                label: format!("target p{pct} {} {} sats", op_sign(target), short(target.value)),
                color: TARGET,
            },
            Mark::Day { day, label: format!("day {day}"), color: TARGET },
        ],
        Metric::PeakLocked { .. } | Metric::Free { .. } => Vec::new(),
    }
}

fn op_sign(t: &Target) -> &'static str {
    match t.op {
        super::target::Op::AtMost => "≤",
        super::target::Op::AtLeast => "≥",
    }
}

fn pct_words(t: &Target) -> String {
    format!("{} %", pct1(t.limit()))
}

/// A balance chart: the p5-p95 band and the median by day, day 0 the starting pool.
struct PoolChart<'a> {
    title: String,
    band: &'a PoolBand,
    initial_sats: u64,
    /// The last day on the axis (at least the band's).
    days: u32,
    scale: SatsScale,
    /// The median day the pool ran dry and the share of seeds that did.
    dry: Option<(u32, f64)>,
    marks: Vec<Mark>,
    w: f64,
    h: f64,
}

impl PoolChart<'_> {
    fn render(&self) -> String {
        let f = Frame::new(self.w, self.h);
        let mut o = String::new();
        svg_open(&mut o, self.w, self.h, &self.title);
        let days = self.days.max(self.band.p50.len() as u32).max(1);
        let dx = |d: f64| f.x(d / f64::from(days));
        let sy = |v: f64| f.y(self.scale.f(v));
        for v in self.scale.ticks() {
            f.y_tick(&mut o, self.scale.f(v), &short(v));
        }
        for d in day_ticks(days) {
            f.x_tick(&mut o, f64::from(d) / f64::from(days), &d.to_string());
        }
        // Day 0 is the starting balance; day d the balance at the end of day d.
        let pt = |d: usize, v: u64| format!("{:.1},{:.1}", dx(d as f64), sy(v as f64));
        if !self.band.p50.is_empty() {
            let mut band: Vec<String> = vec![pt(0, self.initial_sats)];
            band.extend(self.band.p95.iter().enumerate().map(|(i, v)| pt(i + 1, *v)));
            band.extend(self.band.p5.iter().enumerate().rev().map(|(i, v)| pt(i + 1, *v)));
            let _ =
                write!(o, r#"<polygon points="{}" fill="{BAND}" fill-opacity="0.75" stroke="none"/>"#, band.join(" "));
            let mut line: Vec<String> = vec![pt(0, self.initial_sats)];
            line.extend(self.band.p50.iter().enumerate().map(|(i, v)| pt(i + 1, *v)));
            let _ = write!(
                o,
                r#"<polyline points="{}" fill="none" stroke="{MEDIAN}" stroke-width="1.8"/>"#,
                line.join(" ")
            );
        }
        // The marks' lines, then their words, each where it covers no other word and stays
        // inside the plot (and off the median where it can): a balance's at the right end above
        // its line, else below it, else at the left end; a day's beside its line at the top (on
        // the side with room first), else a row lower, else across the line.
        let mut lines: Vec<(f64, String, &str)> = Vec::new();
        let mut levels: Vec<(f64, &str, &str)> = Vec::new();
        if let Some((day, share)) = self.dry {
            lines.push((dx(f64::from(day)), format!("dry: median day {day} ({} % of seeds)", pct1(share)), DRY));
        }
        for m in &self.marks {
            match m {
                Mark::Day { day, label, color } => lines.push((dx(f64::from(*day)), label.clone(), color)),
                Mark::Sats { sats, label, color } => levels.push((sy(*sats), label, color)),
            }
        }
        for &(x, _, color) in &lines {
            let _ = write!(
                o,
                r##"<line x1="{x:.1}" x2="{x:.1}" y1="{}" y2="{:.1}" stroke="{color}" stroke-dasharray="4,3"/>"##,
                f.t,
                f.t + f.ph(),
            );
        }
        for &(y, _, color) in &levels {
            let _ = write!(
                o,
                r##"<line x1="{}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="{color}" stroke-dasharray="4,3"/>"##,
                f.l,
                f.l + f.pw(),
            );
        }
        let mut labels = Labels::inside(&f);
        // The median, which a label had better not cross.
        if !self.band.p50.is_empty() {
            let at = |d: usize, v: u64| (dx(d as f64), sy(v as f64));
            let median: Vec<(f64, f64)> = std::iter::once(at(0, self.initial_sats))
                .chain(self.band.p50.iter().enumerate().map(|(i, v)| at(i + 1, *v)))
                .collect();
            for pair in median.windows(2) {
                labels.avoid_line(pair[0], pair[1]);
            }
        }
        let (right, left) = (f.l + f.pw() - 4.0, f.l + 4.0);
        for &(y, label, color) in &levels {
            let candidates = [
                (right, y - 4.0, Anchor::End),
                (right, y + 11.0, Anchor::End),
                (left, y - 4.0, Anchor::Start),
                (left, y + 11.0, Anchor::Start),
            ];
            let spot = labels.place(&candidates, label);
            labels.text(&mut o, spot, label, &format!(r#"class="m" fill="{color}""#));
        }
        for (x, label, color) in &lines {
            let (after, before) = ((x + 4.0, Anchor::Start), (x - 4.0, Anchor::End));
            let (first, second) = if *x < f.x(0.6) { (after, before) } else { (before, after) };
            let row = |k: u32| f.t + 12.0 + 13.0 * f64::from(k);
            let mut candidates: Vec<_> =
                (0..8).flat_map(|k| [(first.0, row(k), first.1), (second.0, row(k), second.1)]).collect();
            // Words wider than the room either side of the line run across it, from an end of
            // the plot.
            let ends = [(right, Anchor::End), (left, Anchor::Start)];
            let ends = if first.1 == Anchor::Start { ends } else { [ends[1], ends[0]] };
            candidates.extend((0..8).flat_map(|k| ends.map(|(x, anchor)| (x, row(k), anchor))));
            let spot = labels.place(&candidates, label);
            labels.text(&mut o, spot, label, &format!(r#"class="m" fill="{color}""#));
        }
        f.chrome(&mut o, &self.title, "day", "pool balance, sats (log scale)");
        o.push_str("</svg>");
        o
    }
}

/// The label of a tier's bar: the tier and its requests per seed.
fn tier_label(ts: &super::report::TierShare, seeds: u64) -> String {
    format!("{} ({} req.)", ts.tier, per_seed(ts.requests as f64 / seeds.max(1) as f64))
}

/// Stacked bars of free / partial / gated shares per tier; `wide` across the page.
fn tier_chart(s: &Summary, wide: bool) -> String {
    let (r, t, row) = (10.0, 24.0, 20.0);
    let w = if wide { 900.0 } else { 420.0 };
    // The labels end 4 units left of the bars; the margin holds the longest whole.
    let labels: Vec<String> = s.tiers.iter().map(|ts| tier_label(ts, s.seeds)).collect();
    let longest = labels.iter().map(|x| text_width(x, 10.0, false)).fold(0.0, f64::max);
    let l = (longest + 10.0).max(132.0).ceil();
    let pw = w - l - r;
    let h = t + row * s.tiers.len() as f64 + 6.0;
    let mut o = String::new();
    svg_open(&mut o, w, h, &s.label);
    let _ = write!(
        o,
        r##"<text x="4" y="15" class="t"{}>{}</text>"##,
        squeeze(&s.label, 12.0, true, w - 8.0),
        esc(&s.label)
    );
    for (i, (ts, label)) in s.tiers.iter().zip(&labels).enumerate() {
        let yy = t + row * i as f64;
        let _ = write!(
            o,
            r##"<text x="{}" y="{:.1}" class="n" text-anchor="end">{}</text>"##,
            l - 4.0,
            yy + 12.0,
            esc(label)
        );
        let mut x0 = l;
        for (share, color, name) in
            [(ts.free, FREE, "free"), (ts.partial, PARTIAL, "partial"), (ts.gated, GATED, "gated")]
        {
            let bw = pw * share;
            if bw > 0.0 {
                let _ = write!(
                    o,
                    r#"<rect x="{x0:.1}" y="{yy:.1}" width="{bw:.1}" height="{}" fill="{color}"><title>{name} {:.1}%</title></rect>"#,
                    row - 4.0,
                    share * 100.0
                );
                if bw > 30.0 {
                    let _ = write!(
                        o,
                        r##"<text x="{:.1}" y="{:.1}" class="n" fill="#fff" text-anchor="middle">{:.0}%</text>"##,
                        x0 + bw / 2.0,
                        yy + 12.0,
                        share * 100.0
                    );
                }
            }
            x0 += bw;
        }
    }
    o.push_str("</svg>");
    o
}

/// Green (0) to red (1).
fn heat(p: f64) -> String {
    let p = p.clamp(0.0, 1.0);
    let (r0, g0, b0) = (46.0, 125.0, 50.0);
    let (r1, g1, b1) = (198.0, 40.0, 40.0);
    let mix = |a: f64, b: f64| (a + (b - a) * p).round() as u8;
    format!("#{:02x}{:02x}{:02x}", mix(r0, r1), mix(g0, g1), mix(b0, b1))
}

/// The two lines of a configuration's cell on a heat-map: the probability of depletion and
/// the median balance on the last day.
fn heat_texts(s: &Summary) -> (String, String) {
    let last = s.pool_p50.last().copied().unwrap_or(0);
    (format!("{}%", pct1(s.depletion_probability)), format!("p50 end {} sats", short(last as f64)))
}

/// Heatmaps of P(depletion) over the last two sweep axes, one per value of the others.
fn heatmaps(out: &PlanOutput) -> String {
    let axes = &out.sweep;
    if axes.is_empty() {
        return String::new();
    }
    let xa = axes.len() - 1;
    let ya = (axes.len() >= 2).then(|| axes.len() - 2);
    let mut groups: Vec<(Vec<usize>, Vec<usize>)> = Vec::new();
    for c in &out.configs {
        let key: Vec<usize> = c.at[..ya.unwrap_or(xa)].to_vec();
        match groups.iter_mut().find(|g| g.0 == key) {
            Some(g) => g.1.push(c.index),
            None => groups.push((key, vec![c.index])),
        }
    }
    let nx = axes[xa].values.len();
    let ny = ya.map_or(1, |a| axes[a].values.len());
    // Every cell as wide as the widest of its texts, of the values above the columns and of
    // 92 units; the margin on the left as wide as the values beside the rows and the name of
    // their key above them (none without rows); the map as wide as its title: no text runs into its neighbour's
    // cell or off the map, whatever the number of rows and columns.
    let texts: Vec<(String, String)> = out.summaries.iter().map(heat_texts).collect();
    let cw = texts
        .iter()
        .map(|(p, end)| text_width(p, 12.0, true).max(text_width(end, 9.0, false)) + 8.0)
        .chain(axes[xa].values.iter().map(|v| text_width(v, 10.0, false) + 6.0))
        .fold(92.0, f64::max)
        .ceil();
    let y_key = ya.map(|a| format!("{} ↓", axes[a].key));
    let l = ya
        .map(|a| axes[a].values.iter().map(|v| text_width(v, 10.0, false) + 12.0).fold(0.0, f64::max))
        .into_iter()
        .chain(y_key.iter().map(|k| text_width(k, 12.0, true) + 14.0))
        .fold(if ya.is_some() { 110.0 } else { 10.0 }, f64::max)
        .ceil();
    let (ch, t) = (40.0, 40.0);
    let mut o = String::new();
    for (key, members) in groups {
        let title: Vec<String> =
            key.iter().enumerate().map(|(a, &i)| format!("{}={}", axes[a].key, axes[a].values[i])).collect();
        let title = if title.is_empty() {
            format!("{} →", axes[xa].key)
        } else {
            format!("{}: {} →", title.join(" "), axes[xa].key)
        };
        let w = (l + cw * nx as f64 + 10.0).max((text_width(&title, 12.0, true) + 12.0).ceil());
        let h = t + ch * ny as f64 + 10.0;
        let _ = write!(
            o,
            r#"<figure class="fixed"><svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}">"#
        );
        let _ = write!(o, r##"<text x="6" y="14" class="t">{}</text>"##, esc(&title));
        if let Some(y_key) = &y_key {
            let _ = write!(o, r##"<text x="6" y="{}" class="t">{}</text>"##, t - 6.0, esc(y_key));
        }
        for (i, v) in axes[xa].values.iter().enumerate() {
            let _ = write!(
                o,
                r##"<text x="{:.1}" y="{}" class="n" text-anchor="middle">{}</text>"##,
                l + cw * (i as f64 + 0.5),
                t - 6.0,
                esc(v)
            );
        }
        for &ci in &members {
            let c = &out.configs[ci];
            let s = &out.summaries[ci];
            let (ix, iy) = (c.at[xa], ya.map_or(0, |a| c.at[a]));
            let (x0, y0) = (l + cw * ix as f64, t + ch * iy as f64);
            if ix == 0 {
                if let Some(ya) = ya {
                    let _ = write!(
                        o,
                        r##"<text x="{}" y="{:.1}" class="n" text-anchor="end">{}</text>"##,
                        l - 6.0,
                        y0 + ch / 2.0 + 4.0,
                        esc(&axes[ya].values[iy])
                    );
                }
            }
            let (p, end) = &texts[ci];
            let _ = write!(
                o,
                r##"<rect x="{x0:.1}" y="{y0:.1}" width="{cw}" height="{ch}" fill="{}" stroke="#fff"><title>{}</title></rect><text x="{:.1}" y="{:.1}" font-size="12" fill="#fff" text-anchor="middle" font-weight="600">{}</text><text x="{:.1}" y="{:.1}" font-size="9" fill="#fff" text-anchor="middle">{}</text>"##,
                heat(s.depletion_probability),
                esc(&s.label),
                x0 + cw / 2.0,
                y0 + 17.0,
                esc(p),
                x0 + cw / 2.0,
                y0 + 31.0,
                esc(end)
            );
        }
        o.push_str("</svg></figure>");
    }
    o
}

/// The page's head and style, and the title with the scenario's settings under it.
/// The page's head and the scenario's line. A key in `varied` (swept, solved or the frontier's
/// second key) is shown as `varied` rather than by the base file's value, which no run used.
fn open_page(o: &mut String, s: &PlanScenario, title: &str, extra: &str, varied: &[&str]) {
    let name = if s.name.is_empty() { "capacity plan" } else { &s.name };
    let _ = write!(
        o,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{} · {}</title><style>
body{{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:20px 24px;color:#212121;max-width:1240px;overflow-wrap:break-word}}
h1{{font-size:21px;margin:0 0 2px}} h2{{font-size:16px;margin:22px 0 8px;border-bottom:1px solid #e0e0e0;padding-bottom:2px}}
table{{border-collapse:collapse;font-size:12px}} td,th{{padding:3px 5px;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}}
td:first-child,th:first-child{{text-align:left}} th{{white-space:normal;vertical-align:bottom}} td.l,th.l{{text-align:left}} td.l{{white-space:normal;min-width:4em}} .nw{{white-space:nowrap}}
.scroll{{overflow-x:auto;max-width:100%}}
.grid{{display:grid;grid-template-columns:repeat(auto-fill,minmax(max(360px,40%),1fr));gap:12px 18px;align-items:start}}
.grid>*{{min-width:0}} .wide{{grid-column:1/-1}} .flow{{display:flex;flex-wrap:wrap;gap:12px}}
figure{{margin:0}} figure svg{{width:100%;height:auto;display:block}} figure.fixed{{max-width:100%;overflow-x:auto}} figure.fixed svg{{width:auto}}
svg text{{font-size:11px}} svg text:not([fill]){{fill:#424242}} svg text.t{{font-size:12px;font-weight:600;fill:#212121}} svg .n{{font-size:10px}} svg .ax{{font-size:10.5px;fill:#616161}} svg .m{{font-size:10px}}
.muted{{color:#757575;font-size:12px;margin:4px 0}} .key span{{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}}
.bad{{color:{DRY};font-weight:600}}
.verdict{{font-size:15px;margin:6px 0;padding:8px 12px;border-left:5px solid #9e9e9e;background:#fafafa}}
.verdict.met{{border-color:{FREE}}} .verdict.not{{border-color:{DRY}}}
.badge{{display:inline-block;font-size:12px;font-weight:700;color:#fff;background:#9e9e9e;border-radius:3px;padding:1px 7px;margin-right:8px}}
.met .badge{{background:{FREE}}} .not .badge{{background:{DRY}}} .verdict.thin{{border-color:{THIN}}} .thin .badge{{background:{THIN};color:#212121}}
.note{{font-size:13px;margin:4px 0}} .tag{{display:inline-block;font-size:10px;font-weight:700;border-radius:3px;padding:0 5px;margin-left:6px;white-space:nowrap}} .tag.thin{{background:{THIN};color:#212121}}
</style></head><body>"#,
        esc(title),
        esc(name)
    );
    let pop = s.population.by_tier();
    let shown = |key: &str, value: String| if varied.contains(&key) { "varied".to_owned() } else { value };
    let _ = write!(
        o,
        r#"<h1>{} · {}</h1><p class="muted">{} days · population new/established/trusted/elite {}/{}/{}/{} ({}) · budgets {}/{}/{}/{} sats a day · pool {} · credit {}{}</p>"#,
        esc(title),
        esc(name),
        s.days,
        shown("population.new", pop[0].to_string()),
        shown("population.established", pop[1].to_string()),
        shown("population.trusted", pop[2].to_string()),
        shown("population.elite", pop[3].to_string()),
        shown("population.growth_pct_per_day", format!("+{} %/day", fmt_f64(s.population.growth_pct_per_day))),
        shown("budget.new", s.budget.new.to_string()),
        shown("budget.established", s.budget.established.to_string()),
        shown("budget.trusted", s.budget.trusted.to_string()),
        shown("budget.elite", s.budget.elite.to_string()),
        shown("pool_initial_sats", format!("{} sats", thousands(s.pool_initial_sats))),
        shown("credit_pct", format!("{} %", fmt_f64(s.credit_pct))),
        esc(extra)
    );
}

/// The page's last line. A seed carried up to a larger credit or genesis (`model::Carry`) was
/// checked where it ran, not again at the value it was carried to: the line says so, in words
/// true of a page with carried seeds and without (the page is the same either way).
fn close_page(o: &mut String, format: &str) {
    let _ = write!(
        o,
        r#"<p class="muted">ledger-sim plan · {} · reference engine, invariants I1–I6 checked after every command run (a seed carried up to a larger credit or genesis, where it ran).</p></body></html>"#,
        esc(format)
    );
    o.push('\n');
}

/// The plan report (`plan --report`, `merge --report`).
pub fn render(out: &PlanOutput) -> String {
    let s = &out.scenario;
    let sweep = if out.sweep.is_empty() {
        String::new()
    } else {
        format!(
            " · sweep {}",
            out.sweep.iter().map(|a| format!("{}={}", a.key, a.values.join(","))).collect::<Vec<_>>().join(" ")
        )
    };
    let mut o = String::new();
    open_page(
        &mut o,
        s,
        "Capacity plan",
        &format!(" · {} seeds per configuration · {} configuration(s){sweep}", s.seeds, out.configs.len()),
        &out.sweep.iter().map(|a| a.key.as_str()).collect::<Vec<_>>(),
    );
    let initial: Vec<u64> = out.summaries.iter().map(|x| initial_of(out, x)).collect();
    let thin: Vec<bool> = out.summaries.iter().zip(&initial).map(|(x, &i)| thin_margin(x, i)).collect();
    o.push_str(&plan_headline(out, &initial, &thin));
    // The overview first: the map of depletion across the sweep, then the table.
    if !out.sweep.is_empty() {
        o.push_str(r#"<h2>Probability of depletion across the sweep</h2><p class="muted">Each cell a configuration: the share of seeds in which the pool ran dry (green none, red all) and the median balance on the last day.</p><div class="flow">"#);
        o.push_str(&heatmaps(out));
        o.push_str("</div>");
    }
    o.push_str("<h2>Summary</h2><div class=\"scroll\"><table><tr><th>configuration</th><th>P(dry)</th><th>dry day p50</th><th>lowest p5, sats (of start)</th><th>pool end p5, sats</th><th>p50</th><th>p95</th><th>free</th><th>partial</th><th>gated</th><th>absorbed, sats</th><th>paid</th><th>credited</th><th>peak locked</th><th>violations</th></tr>");
    for ((x, &start), &thin) in out.summaries.iter().zip(&initial).zip(&thin) {
        let last = |v: &Vec<u64>| v.last().map_or("-".to_owned(), |v| thousands(*v));
        let _ = write!(
            o,
            "<tr><td class=\"l\">{}{}</td><td>{:.1}%</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}%</td><td>{:.1}%</td><td>{:.1}%</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td{}>{}</td></tr>",
            esc_cell(&x.label),
            if thin { r#" <span class="tag thin">thin margin</span>"# } else { "" },
            x.depletion_probability * 100.0,
            x.depletion_day_p50.map_or("-".to_owned(), |d| d.to_string()),
            lowest_words(x, start),
            last(&x.pool_p5),
            last(&x.pool_p50),
            last(&x.pool_p95),
            x.all[0] * 100.0,
            x.all[1] * 100.0,
            x.all[2] * 100.0,
            thousands(x.absorbed_sats_mean),
            thousands(x.paid_sats_mean),
            thousands(x.credited_sats_mean),
            thousands(x.reserved_peak_sats_mean),
            if x.violations > 0 { r#" class="bad""# } else { "" },
            x.violations
        );
    }
    let _ = write!(
        o,
        "</table></div><p class=\"muted\">Amounts are means per seed over the whole run. P(dry): share of seeds in which some request was gated because the pool was empty. Lowest p5: the lowest over the days of the pool's 5th percentile over seeds at the end of each day, and its share of the starting pool; within a day the pool can fall lower, and a pool that ran dry may have refilled from the day's payments by its end, so a configuration that ran dry can still show a large lowest p5. {}</p>",
        THIN_RULE
    );
    let shown = charted(out, &initial);
    let top =
        out.summaries.iter().flat_map(|x| x.pool_p95.iter().copied()).chain([s.pool_initial_sats]).max().unwrap_or(1);
    let scale = SatsScale::holding(top);
    let n = shown.len();
    let _ = write!(
        o,
        r#"<h2>Pool balance by day</h2>{}<p class="muted">End-of-day balance in sats on a logarithmic scale (0 at the bottom, each power of ten the same height, one scale for all): shaded p5–p95 over seeds, line the median; red, the median day the pool ran dry{}.</p><div class="grid">"#,
        charted_words(out, &shown, &initial),
        if shown.iter().any(|&k| thin[k]) {
            "; amber, 5 % of the starting pool, on a chart with a thin margin"
        } else {
            ""
        }
    );
    for (i, &k) in shown.iter().enumerate() {
        let x = &out.summaries[k];
        let wide = across(i, n);
        let band = PoolBand { p5: x.pool_p5.clone(), p50: x.pool_p50.clone(), p95: x.pool_p95.clone() };
        let marks = if thin[k] {
            let sats = THIN_MARGIN * initial[k] as f64;
            vec![Mark::Sats { sats, label: format!("thin margin: p5 below {} sats", short(sats)), color: THIN_INK }]
        } else {
            Vec::new()
        };
        let chart = PoolChart {
            title: if thin[k] { format!("{} · thin margin", x.label) } else { x.label.clone() },
            band: &band,
            initial_sats: initial[k],
            days: s.days,
            scale,
            dry: x.depletion_day_p50.map(|d| (d, x.depletion_probability)),
            marks,
            w: if wide { 900.0 } else { 420.0 },
            h: if wide { 300.0 } else { 230.0 },
        };
        figure(&mut o, wide, &chart.render());
    }
    o.push_str("</div>");
    let _ = write!(
        o,
        r#"<h2>Served by tier</h2><p class="muted key">{}Share of requests decided<span style="background:{FREE}"></span>free<span style="background:{PARTIAL}"></span>partial<span style="background:{GATED}"></span>gated (charged in full) — requests per seed in brackets.</p><div class="grid">"#,
        if n < out.summaries.len() { "The configurations drawn above. " } else { "" }
    );
    for (i, &k) in shown.iter().enumerate() {
        let wide = across(i, n);
        figure(&mut o, wide, &tier_chart(&out.summaries[k], wide));
    }
    o.push_str("</div>");
    close_page(&mut o, &out.format);
    o
}

/// A configuration has a thin margin when it never ran dry but the lowest p5 of its pool over
/// the days fell below this share of its starting pool.
const THIN_MARGIN: f64 = 0.05;

/// [`THIN_MARGIN`] in words, as a plan's page states it.
const THIN_RULE: &str = "Thin margin: never ran dry, but the lowest p5 fell below 5 % of the starting pool.";

/// The most configurations a plan's page draws charts for; the rest are in its table.
const MAX_CHARTS: usize = 12;

/// The most configurations a headline names before "and N more".
const MAX_NAMED: usize = 5;

/// The starting pool of a configuration: its value of a swept `pool_initial_sats`, else the
/// scenario's.
fn initial_of(out: &PlanOutput, x: &Summary) -> u64 {
    let Some(axis) = out.sweep.iter().position(|a| a.key == "pool_initial_sats") else {
        return out.scenario.pool_initial_sats;
    };
    out.configs
        .iter()
        .find(|c| c.index == x.config)
        .and_then(|c| out.sweep[axis].values.get(*c.at.get(axis)?))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(out.scenario.pool_initial_sats, |v| v as u64)
}

/// The lowest p5 of the pool over the days (the starting pool when there are none).
fn lowest_p5(x: &Summary, initial: u64) -> u64 {
    x.pool_p5.iter().copied().min().unwrap_or(initial)
}

/// The lowest p5 as a share of the starting pool (of 1 sat when it starts empty).
fn margin(x: &Summary, initial: u64) -> f64 {
    lowest_p5(x, initial) as f64 / initial.max(1) as f64
}

/// Whether a configuration never ran dry but its margin was thin (see [`THIN_MARGIN`]).
fn thin_margin(x: &Summary, initial: u64) -> bool {
    x.depletion_probability == 0.0 && (lowest_p5(x, initial) as f64) < THIN_MARGIN * initial as f64
}

/// A table's lowest p5: `1,234 (4.3 %)`.
fn lowest_words(x: &Summary, initial: u64) -> String {
    let low = lowest_p5(x, initial);
    if initial == 0 {
        thousands(low)
    } else {
        // Rounded down, so that a share under the rule's 5 % never reads as 5 %.
        let share = 100.0 * low as f64 / initial as f64;
        let share = if share >= 10.0 { share.floor() } else { (share * 10.0).floor() / 10.0 };
        format!("{} ({} %)", thousands(low), fmt_f64(share))
    }
}

/// The first [`MAX_NAMED`] of `names` joined, then "and N more", escaped.
fn named(names: &[String]) -> String {
    let mut o = esc(&names.iter().take(MAX_NAMED).cloned().collect::<Vec<_>>().join("; "));
    if names.len() > MAX_NAMED {
        let _ = write!(o, " and {} more", names.len() - MAX_NAMED);
    }
    o
}

/// The configurations, riskiest first: those that ran dry, most often first (then the
/// earliest median day), then those that never did, the lowest p5 against the starting pool
/// first; the table's order between equals.
fn by_risk(out: &PlanOutput, initial: &[u64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..out.summaries.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&out.summaries[a], &out.summaries[b]);
        let dry = |s: &Summary| s.depletion_probability > 0.0;
        dry(y)
            .cmp(&dry(x))
            .then(y.depletion_probability.total_cmp(&x.depletion_probability))
            .then(x.depletion_day_p50.unwrap_or(u32::MAX).cmp(&y.depletion_day_p50.unwrap_or(u32::MAX)))
            .then(margin(x, initial[a]).total_cmp(&margin(y, initial[b])))
            .then(a.cmp(&b))
    });
    order
}

/// The plan's answer: how many configurations never ran dry and which, which ran dry (the
/// riskiest first), which of those that never did had a thin margin, and the earliest day a
/// pool ran dry; each list at most [`MAX_NAMED`] names long.
fn plan_headline(out: &PlanOutput, initial: &[u64], thin: &[bool]) -> String {
    let s = &out.scenario;
    let n = out.summaries.len();
    let alive: Vec<String> =
        out.summaries.iter().filter(|x| x.depletion_probability == 0.0).map(|x| x.label.clone()).collect();
    let dry: Vec<String> = by_risk(out, initial)
        .into_iter()
        .map(|i| &out.summaries[i])
        .filter(|x| x.depletion_probability > 0.0)
        .map(|x| {
            let day = x.depletion_day_p50.map_or(String::new(), |d| format!(", median day {d}"));
            format!("{} ({} %{day})", x.label, pct1(x.depletion_probability))
        })
        .collect();
    let thin: Vec<String> = out.summaries.iter().zip(thin).filter(|(_, &t)| t).map(|(x, _)| x.label.clone()).collect();
    let (class, badge) = if !dry.is_empty() {
        ("not", "ran dry")
    } else if !thin.is_empty() {
        ("thin", "thin margin")
    } else {
        ("met", "never dry")
    };
    let mut o = format!(
        r#"<div class="verdict {class}"><span class="badge">{badge}</span>{} of {n} configuration(s) kept the pool from running dry in all {} seeds over {} days"#,
        alive.len(),
        s.seeds,
        s.days
    );
    if !alive.is_empty() && !dry.is_empty() {
        let _ = write!(o, ": {}", named(&alive));
    }
    o.push('.');
    if !thin.is_empty() {
        let _ = write!(
            o,
            " {} of them with a thin margin (the lowest p5 below 5 % of the starting pool): {}.",
            thin.len(),
            named(&thin)
        );
    }
    if !dry.is_empty() {
        let _ = write!(o, " {} ran dry, the most often first: {}.", dry.len(), named(&dry));
    }
    if let Some(d) = out.summaries.iter().filter_map(|x| x.depletion_day_min).min() {
        let _ = write!(o, " The earliest a pool ran dry: day {d}.");
    }
    o.push_str("</div>");
    o
}

/// The configurations a plan's page draws charts for, in the table's order: every one up to
/// [`MAX_CHARTS`]; past that the riskiest and the safest ([`by_risk`]), then, in turn from
/// either side of the line between running dry and not, the never-dry ones with the thinnest
/// margin and the dry ones that ran dry least often.
fn charted(out: &PlanOutput, initial: &[u64]) -> Vec<usize> {
    let n = out.summaries.len();
    if n <= MAX_CHARTS {
        return (0..n).collect();
    }
    let order = by_risk(out, initial);
    let line = out.summaries.iter().filter(|x| x.depletion_probability > 0.0).count();
    let mut picked = vec![order[0], order[n - 1]];
    let (mut safe, mut dry) = (order[line..].iter(), order[..line].iter().rev());
    while picked.len() < MAX_CHARTS {
        for next in [safe.next(), dry.next()].into_iter().flatten() {
            if picked.len() < MAX_CHARTS && !picked.contains(next) {
                picked.push(*next);
            }
        }
    }
    picked.sort_unstable();
    picked
}

/// What a plan's page says of the balance charts it draws: nothing when it draws every
/// configuration; else which it draws and that the rest are in the table.
fn charted_words(out: &PlanOutput, shown: &[usize], initial: &[u64]) -> String {
    let n = out.summaries.len();
    if shown.len() == n {
        return String::new();
    }
    let order = by_risk(out, initial);
    let dry = out.summaries.iter().filter(|x| x.depletion_probability > 0.0).count();
    let rest = shown.len() - 2;
    let nearest = if dry == 0 {
        format!("the {rest} with the thinnest margins (the lowest p5 against the starting pool)")
    } else if dry == n {
        format!("the {rest} that ran dry least often")
    } else {
        format!("the {rest} nearest the line between running dry and not, from either side in turn: the never-dry ones with the thinnest margins (the lowest p5 against the starting pool) and those that ran dry least often")
    };
    format!(
        "<p class=\"note\"><b>{} of {n} configurations drawn</b>: the riskiest ({}), the safest ({}) and, of the rest, {nearest}. The other {} are in the table above.</p>",
        shown.len(),
        esc(&out.summaries[order[0]].label),
        esc(&out.summaries[order[n - 1]].label),
        n - shown.len()
    )
}

/// The verdict of one target as a line with a badge.
fn verdict_div(r: &TargetResult) -> String {
    let (class, badge) = match r.verdict {
        Verdict::NoneMeets if !r.undecided_at.is_empty() => ("not", "undecided"),
        Verdict::Between { .. } | Verdict::AllMeet => ("met", "met"),
        Verdict::NoneMeets => ("not", "not met"),
    };
    format!(r#"<div class="verdict {class}"><span class="badge">{badge}</span>{}</div>"#, esc(&r.line))
}

/// The step at `value`, the last (the surest) tested there.
fn step_at(r: &TargetResult, value: f64) -> Option<&Step> {
    r.steps.iter().rfind(|s| s.value == value)
}

/// The values whose balance a report shows for a target: the two sides of the answer, or the
/// two ends of the range.
fn shown_values(r: &TargetResult, range: &SolveRange) -> Vec<f64> {
    let mut v = match r.verdict {
        Verdict::Between { meets_at, fails_at, .. } => vec![meets_at, fails_at],
        Verdict::AllMeet | Verdict::NoneMeets => vec![range.lo, range.hi],
    };
    v.sort_by(f64::total_cmp);
    v
}

/// The starting pool at a point: the solved or second key when it is the pool, else the
/// scenario's.
fn initial_at(base_sats: u64, settings: &[(&str, f64)]) -> u64 {
    settings.iter().find(|(k, _)| *k == "pool_initial_sats").map_or(base_sats, |(_, v)| *v as u64)
}

/// A balance chart's account of the decision at its value: `sure meets, 161 seeds`; or, for a
/// test that ran out of seeds, `undecided at the 300-seed cap` (not "sure undecided").
fn decided(step: &Step) -> String {
    match step.decision {
        Decision::Undecided => format!("undecided at the {}-seed cap", thousands(step.seeds)),
        d => format!("{} {}, {} seeds", level_word(step.level), decision_word(d), thousands(step.seeds)),
    }
}

/// A balance chart of the seeds one step used; `wide` across the page.
fn step_chart(
    title: String,
    step: &Step,
    initial_sats: u64,
    target: &Target,
    days: u32,
    scale: SatsScale,
    wide: bool,
) -> String {
    PoolChart {
        title,
        band: &step.pool,
        initial_sats,
        days: target.last_day().unwrap_or(days),
        scale,
        dry: None,
        marks: target_marks(target),
        w: if wide { 900.0 } else { 420.0 },
        h: if wide { 300.0 } else { 230.0 },
    }
    .render()
}

/// The radius of a tested value's dot.
const DOT_R: f64 = 4.5;

/// A box on a chart, in SVG units.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Rect {
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
}

impl Rect {
    /// The square of half-side `r` around `(x, y)`.
    fn around(x: f64, y: f64, r: f64) -> Rect {
        Rect { x0: x - r, y0: y - r, x1: x + r, y1: y + r }
    }

    /// The box of `text` at 10 units a line with its baseline at `(x, y)`: about 6 units a
    /// character (DejaVu Sans, the widest common fallback, gives a digit 6.4), from the cap
    /// height to the descenders.
    fn of_text(x: f64, y: f64, anchor: Anchor, text: &str) -> Rect {
        let w = 6.0 * text.chars().count() as f64;
        let x0 = match anchor {
            Anchor::Start => x,
            Anchor::Middle => x - w / 2.0,
            Anchor::End => x - w,
        };
        Rect { x0, y0: y - 8.0, x1: x0 + w, y1: y + 2.5 }
    }

    /// The box of a ▲ or ▼ at 13 units a line with its baseline at `(x, y)`, centred on `x`
    /// (DejaVu Sans draws them about 0.8 of the size wide, from the baseline up).
    fn of_glyph(x: f64, y: f64) -> Rect {
        Rect { x0: x - 5.5, y0: y - 10.5, x1: x + 5.5, y1: y + 1.0 }
    }

    /// The area `self` and `other` share.
    fn overlap(&self, other: &Rect) -> f64 {
        let w = self.x1.min(other.x1) - self.x0.max(other.x0);
        let h = self.y1.min(other.y1) - self.y0.max(other.y0);
        if w > 0.0 && h > 0.0 {
            w * h
        } else {
            0.0
        }
    }

    /// `self` with `d` more on its left and its right.
    fn widened(&self, d: f64) -> Rect {
        Rect { x0: self.x0 - d, x1: self.x1 + d, ..*self }
    }

    /// The area of `self` outside `bounds`.
    fn outside(&self, bounds: &Rect) -> f64 {
        (self.x1 - self.x0) * (self.y1 - self.y0) - self.overlap(bounds)
    }
}

/// Where a text's `x` is.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Anchor {
    Start,
    Middle,
    End,
}

impl Anchor {
    /// Where a thin line tying a label at `x` (so anchored) to its point meets the label: a
    /// little inside its nearer side.
    fn tie_x(self, x: f64) -> f64 {
        match self {
            Anchor::Start => x + 3.0,
            Anchor::Middle => x,
            Anchor::End => x - 3.0,
        }
    }

    fn svg(self) -> &'static str {
        match self {
            Anchor::Start => "start",
            Anchor::Middle => "middle",
            Anchor::End => "end",
        }
    }
}

/// The room two labels side by side keep between them, in units: boxes that touch read as
/// one word (a "10" beside a "7" reads "107"), and a text's box is a little narrower than
/// some fonts draw it ([`Rect::of_text`]).
const LABEL_GAP: f64 = 3.0;

/// The labels of a plot, each put at the first of its places that covers nothing taken
/// before it (a point, another label, a line), keeps [`LABEL_GAP`] from the labels beside it
/// and stays inside the plot; when every place falls short, the one that covers least, a
/// line only if nothing else will do, and a label too close only then.
struct Labels {
    bounds: Rect,
    /// What is placed: points and marks (`false`), and labels (`true`), which another label
    /// keeps [`LABEL_GAP`] from side by side.
    taken: Vec<(Rect, bool)>,
    /// What a label had better not cover but may (a curve), rather than a point or a label.
    crossed: Vec<Rect>,
    /// The thin lines that tie labels to their points, from the point to the label.
    leaders: Vec<((f64, f64), (f64, f64))>,
}

impl Labels {
    fn inside(f: &Frame) -> Labels {
        Labels {
            bounds: Rect { x0: f.l, y0: f.t, x1: f.l + f.pw(), y1: f.t + f.ph() },
            taken: Vec::new(),
            crossed: Vec::new(),
            leaders: Vec::new(),
        }
    }

    fn take(&mut self, r: Rect) {
        self.taken.push((r, false));
    }

    /// The line from `a` to `b`, which a label had better not cross: boxes a few units apart
    /// along it.
    fn avoid_line(&mut self, a: (f64, f64), b: (f64, f64)) {
        let n = ((b.0 - a.0).hypot(b.1 - a.1) / 3.0).ceil().max(1.0) as u32;
        for k in 0..=n {
            let f = f64::from(k) / f64::from(n);
            self.crossed.push(Rect::around(a.0 + (b.0 - a.0) * f, a.1 + (b.1 - a.1) * f, 1.0));
        }
    }

    /// The first free place of `candidates` for `text` (or the least covering one), taken.
    fn place(&mut self, candidates: &[(f64, f64, Anchor)], text: &str) -> (f64, f64, Anchor) {
        self.place_box(candidates, |&(x, y, anchor)| Rect::of_text(x, y, anchor, text))
    }

    /// How many leaders a label whose box is `r` would cross, and, with its own leader `tie`
    /// (from the point it names), how many leaders, labels and points other than its own
    /// that leader would cross.
    fn tangles(&self, r: &Rect, tie: Option<((f64, f64), (f64, f64))>) -> f64 {
        let mut n = self.leaders.iter().filter(|l| segment_meets_rect(l.0, l.1, r)).count();
        if let Some((from, to)) = tie {
            n += self.leaders.iter().filter(|l| segments_cross((from, to), **l)).count();
            // Not the point's own dot, nor another it starts inside of (dots drawn over it).
            let own = |t: &Rect| t.x0 <= from.0 && from.0 <= t.x1 && t.y0 <= from.1 && from.1 <= t.y1;
            n += self.taken.iter().filter(|(t, label)| (*label || !own(t)) && segment_meets_rect(from, to, t)).count();
        }
        n as f64
    }

    /// The first free place of `candidates` for the number `text` of the point at `(x, y)`,
    /// tied to it by a leader (see [`leader`]) at every place from `beside` on: a place free of
    /// what [`Labels::place_box`] avoids, whose label crosses no leader and whose leader crosses
    /// no other leader, label or point; else the least covering, then the least tangled.
    fn place_tied(
        &mut self,
        candidates: &[(f64, f64, Anchor)],
        beside: usize,
        (x, y): (f64, f64),
        text: &str,
    ) -> (f64, f64, Anchor) {
        let tied = |c: &(f64, f64, Anchor)| {
            let i = candidates.iter().position(|d| d == c).unwrap_or(0);
            (i >= beside).then(|| leader((x, y), *c))
        };
        let tangles: Vec<f64> =
            candidates.iter().map(|c| self.tangles(&Rect::of_text(c.0, c.1, c.2, text), tied(c))).collect();
        let spot = self.place_scored(
            candidates,
            |&(x, y, anchor)| Rect::of_text(x, y, anchor, text),
            |c| candidates.iter().position(|d| d == c).map_or(0.0, |i| tangles[i]),
        );
        if let Some(l) = tied(&spot) {
            self.leaders.push(l);
        }
        spot
    }

    /// The first free place of `candidates` for something whose box at a place is `size`'s
    /// (or the least covering one), taken.
    fn place_box(
        &mut self,
        candidates: &[(f64, f64, Anchor)],
        size: impl Fn(&(f64, f64, Anchor)) -> Rect,
    ) -> (f64, f64, Anchor) {
        self.place_scored(candidates, size, |_| 0.0)
    }

    /// [`Labels::place_box`] with `tangled` (a count of leaders crossed) weighed after what a
    /// place covers and before the rest.
    fn place_scored(
        &mut self,
        candidates: &[(f64, f64, Anchor)],
        size: impl Fn(&(f64, f64, Anchor)) -> Rect,
        tangled: impl Fn(&(f64, f64, Anchor)) -> f64,
    ) -> (f64, f64, Anchor) {
        let cost = |c: &(f64, f64, Anchor)| {
            let r = size(c);
            let covered = r.outside(&self.bounds) + self.taken.iter().map(|(t, _)| r.overlap(t)).sum::<f64>();
            let crossed = self.crossed.iter().map(|t| r.overlap(t)).sum::<f64>();
            let apart = r.widened(LABEL_GAP);
            let crowded = self.taken.iter().filter(|(_, label)| *label).map(|(t, _)| apart.overlap(t)).sum::<f64>();
            (covered, tangled(c), crossed, crowded)
        };
        let spot = candidates
            .iter()
            .find(|c| cost(c) == (0.0, 0.0, 0.0, 0.0))
            .or_else(|| {
                candidates.iter().min_by(|a, b| {
                    let (a, b) = (cost(a), cost(b));
                    a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.total_cmp(&b.2)).then(a.3.total_cmp(&b.3))
                })
            })
            .copied()
            .expect("at least one place");
        self.taken.push((size(&spot), true));
        spot
    }

    /// `text` at `spot` with the attributes `attrs`.
    fn text(&self, o: &mut String, (x, y, anchor): (f64, f64, Anchor), text: &str, attrs: &str) {
        let _ = write!(o, r#"<text x="{x:.1}" y="{y:.1}" {attrs} text-anchor="{}">{}</text>"#, anchor.svg(), esc(text));
    }
}

/// The thin line from the dot at `(x, y)` to its number at `spot`: from the dot's edge, on
/// the way from its centre, to the middle of the number's nearer side.
fn leader((x, y): (f64, f64), spot: (f64, f64, Anchor)) -> ((f64, f64), (f64, f64)) {
    let to = (spot.2.tie_x(spot.0), if spot.1 < y { spot.1 + 2.5 } else { spot.1 - 8.0 });
    let d = (to.0 - x).hypot(to.1 - y).max(1e-9);
    ((x + DOT_R * (to.0 - x) / d, y + DOT_R * (to.1 - y) / d), to)
}

/// Whether segments `a` and `b` cross (touching ends do not count).
fn segments_cross(a: ((f64, f64), (f64, f64)), b: ((f64, f64), (f64, f64))) -> bool {
    let side = |p: (f64, f64), q: (f64, f64), r: (f64, f64)| (q.0 - p.0) * (r.1 - p.1) - (q.1 - p.1) * (r.0 - p.0);
    let (d1, d2) = (side(a.0, a.1, b.0), side(a.0, a.1, b.1));
    let (d3, d4) = (side(b.0, b.1, a.0), side(b.0, b.1, a.1));
    d1 * d2 < 0.0 && d3 * d4 < 0.0
}

/// Whether the segment from `a` to `b` passes through the inside of `r` (its ends, a unit
/// from each, aside; an edge grazed by less than half a unit aside).
fn segment_meets_rect(a: (f64, f64), b: (f64, f64), r: &Rect) -> bool {
    let len = (b.0 - a.0).hypot(b.1 - a.1);
    if len <= 2.0 {
        return false;
    }
    let n = (len * 2.0).ceil() as u32;
    (0..=n).any(|k| {
        let t = f64::from(k) / f64::from(n);
        let d = t * len;
        let (x, y) = (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t);
        d >= 1.0 && len - d >= 1.0 && x > r.x0 + 0.5 && x < r.x1 - 0.5 && y > r.y0 + 0.5 && y < r.y1 - 0.5
    })
}

/// The values a solve tested for one target: the share of seeds with the bad event at each,
/// coloured by the decision, with the limit, the indifference band and the answer's interval;
/// `wide` across the page rather than in one cell of the grid.
fn steps_chart(r: &TargetResult, range: &SolveRange, zoomed: bool, wide: bool) -> String {
    let (w, h) = if wide { (900.0, 300.0) } else { (420.0, 230.0) };
    let f = Frame::new(w, h);
    let mut o = String::new();
    let title = if zoomed {
        // To a millionth, as the ticks are: the ends are a midpoint plus or minus a few steps,
        // which binary fractions write as 11.274999999999999.
        let end = |v: f64| fmt_f64((v * 1e6).round() / 1e6);
        format!("{}: near the answer, {}..{}", r.target.text, end(range.lo), end(range.hi))
    } else {
        format!("{}: values tested", r.target.text)
    };
    svg_open(&mut o, w, h, &title);
    let share = |s: &Step| if s.seeds == 0 { 0.0 } else { s.events as f64 / s.seeds as f64 };
    let inside = |s: &&Step| s.value >= range.lo && s.value <= range.hi;
    let top = r.steps.iter().filter(inside).map(share).fold(r.test.p1 * 2.0, f64::max).min(1.0);
    let top = ((top / tick_step(top, 4.0)).ceil() * tick_step(top, 4.0)).min(1.0);
    // A dot's width of room inside each side of the plot: a value at an end of the range, or
    // a share of 0 or 1, is drawn whole, not cut in half by the frame.
    let (pad_x, pad_y) = ((DOT_R + 3.0) / f.pw(), (DOT_R + 3.0) / f.ph());
    let fx = |v: f64| pad_x + (1.0 - 2.0 * pad_x) * (v - range.lo) / (range.hi - range.lo);
    let fy = |p: f64| pad_y + (1.0 - 2.0 * pad_y) * p / top;
    for p in ticks(0.0, top, 4.0) {
        f.y_tick(&mut o, fy(p), &fmt_f64((p * 1e6).round() / 1e6));
    }
    for v in ticks(range.lo, range.hi, 5.0) {
        f.x_tick(&mut o, fx(v), &fmt_f64((v * 1e6).round() / 1e6));
    }
    // The points first, so that every label can keep clear of them.
    let points: Vec<(usize, &Step, f64, f64)> = r
        .steps
        .iter()
        .enumerate()
        .filter(|(_, s)| inside(s))
        .map(|(i, s)| (i + 1, s, f.x(fx(s.value)), f.y(fy(share(s)))))
        .collect();
    let mut labels = Labels::inside(&f);
    for &(_, _, x, y) in &points {
        labels.take(Rect::around(x, y, DOT_R + 1.0));
    }
    let (y0, y1) = (f.y(fy(r.test.p0)), f.y(fy(r.test.p1)));
    let limit = r.target.limit();
    let ly = f.y(fy(limit));
    let _ = write!(
        o,
        r##"<rect x="{}" y="{y1:.1}" width="{:.1}" height="{:.1}" fill="{TARGET}" fill-opacity="0.10"/><line x1="{}" x2="{:.1}" y1="{ly:.1}" y2="{ly:.1}" stroke="{TARGET}" stroke-dasharray="4,3"/>"##,
        f.l,
        f.pw(),
        (y0 - y1).max(0.5),
        f.l,
        f.l + f.pw(),
    );
    if let Verdict::Between { meets_at, fails_at, .. } = r.verdict {
        let (a, b) = (f.x(fx(meets_at.min(fails_at))), f.x(fx(meets_at.max(fails_at))));
        let _ = write!(
            o,
            r##"<rect x="{:.1}" y="{}" width="{:.1}" height="{:.1}" fill="{FREE}" fill-opacity="0.18"/>"##,
            a - 1.5,
            f.t,
            (b - a).max(0.0) + 3.0,
            f.ph(),
        );
        // Beside the band, on the side with more room, else on the other side, else within the
        // band (one that spans the plot, the range a single step wide), at a height no point or
        // label is at.
        let (right, left, within) = ((b + 4.0, Anchor::Start), (a - 4.0, Anchor::End), ((a + b) / 2.0, Anchor::Middle));
        let sides = if a < f.x(0.7) { [right, left, within] } else { [left, right, within] };
        let heights = [0.5, 0.35, 0.65, 0.2, 0.8].map(|h| f.t + f.ph() * h);
        let places: Vec<(f64, f64, Anchor)> =
            sides.iter().flat_map(|&(x, anchor)| heights.map(|y| (x, y, anchor))).collect();
        let spot = labels.place(&places, "answer");
        labels.text(&mut o, spot, "answer", &format!(r#"class="m" fill="{FREE}""#));
    }
    // The limit's words at the right end above its line, else below it, else at the left end.
    let (right, left) = (f.l + f.pw() - 4.0, f.l + 4.0);
    let limit_words = format!("limit {} (band {}–{})", fmt_f64(limit), fmt_f64(r.test.p0), fmt_f64(r.test.p1));
    let spot = labels.place(
        &[
            (right, y1 - 4.0, Anchor::End),
            (right, y0 + 11.0, Anchor::End),
            (left, y1 - 4.0, Anchor::Start),
            (left, y0 + 11.0, Anchor::Start),
        ],
        &limit_words,
    );
    labels.text(&mut o, spot, &limit_words, &format!(r#"class="m" fill="{TARGET}""#));
    for &(_, s, x, y) in &points {
        let color = match s.decision {
            Decision::Meets => FREE,
            Decision::Fails => DRY,
            Decision::Undecided => GATED,
        };
        // A sure decision filled, a scout's a ring.
        let (fill, stroke) = match s.level {
            Level::Sure => (color, "#fff"),
            Level::Scout => ("#fff", color),
        };
        let _ = write!(
            o,
            r##"<circle cx="{x:.1}" cy="{y:.1}" r="{DOT_R}" fill="{fill}" stroke="{stroke}" stroke-width="1.5"><title>{}={}: {} {} after {} seeds, {} with the event</title></circle>"##,
            esc(&range.key),
            fmt_f64(s.value),
            level_word(s.level),
            decision_word(s.decision),
            s.seeds,
            s.events,
        );
    }
    // Each point's number beside it where no other point or number is: a value tested twice
    // (a scout, then a sure test) or two values close together would otherwise print one
    // number over the other. A scout's number goes above its ring first, a sure decision's
    // below its dot.
    for &(n, s, x, y) in &points {
        let (above, below) = ((x, y - 7.0, Anchor::Middle), (x, y + 15.0, Anchor::Middle));
        let (first, second) = match s.level {
            Level::Scout => (above, below),
            Level::Sure => (below, above),
        };
        let mut candidates = vec![
            first,
            second,
            (x + 7.0, y + 3.5, Anchor::Start),
            (x - 7.0, y + 3.5, Anchor::End),
            (x + 6.0, y - 6.0, Anchor::Start),
            (x - 6.0, y - 6.0, Anchor::End),
            (x + 6.0, y + 13.0, Anchor::Start),
            (x - 6.0, y + 13.0, Anchor::End),
        ];
        let beside = candidates.len();
        // Then farther up or down, a line of text at a time, and to either side: values crowded
        // together fan their numbers out above (or below) the crowd, each tied to its dot by a
        // line that crosses no other line, number or dot.
        for k in 1..=12 {
            let d = 11.0 * f64::from(k);
            for (y, anchor) in [(y - 7.0 - d, Anchor::Middle), (y + 15.0 + d, Anchor::Middle)] {
                candidates.push((x, y, anchor));
                for j in 1..=4 {
                    let dx = 9.0 * f64::from(j);
                    candidates.extend([(x + dx, y, anchor), (x - dx, y, anchor)]);
                }
            }
        }
        let number = n.to_string();
        let spot = labels.place_tied(&candidates, beside, (x, y), &number);
        if !candidates[..beside].contains(&spot) {
            // A number away from its dot is tied to it by a thin line.
            let ((x1, y1), (x2, y2)) = leader((x, y), spot);
            let _ = write!(
                o,
                r##"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="#9e9e9e" stroke-width="0.6"/>"##
            );
        }
        labels.text(&mut o, spot, &number, r#"class="n""#);
    }
    f.chrome(&mut o, &title, &format!("{}{}", range.key, unit_suffix(&range.key)), "share of seeds with the bad event");
    o.push_str("</svg>");
    o
}

/// The neighbourhood of the answer, four resolution steps (or a fiftieth of the range) either
/// side, when the values tested there crowd together on the chart of the whole range.
fn near_the_answer(r: &TargetResult, range: &SolveRange, resolution: f64) -> Option<SolveRange> {
    let Verdict::Between { meets_at, fails_at, .. } = r.verdict else { return None };
    let width = range.hi - range.lo;
    let half = (4.0 * resolution).max(width / 50.0);
    if 2.0 * half > width / 4.0 {
        return None;
    }
    let mid = (meets_at + fails_at) / 2.0;
    let lo = (mid - half).max(range.lo);
    let hi = (mid + half).min(range.hi);
    Some(SolveRange { key: range.key.clone(), lo, hi })
}

/// ` (%)`, ` (sats)` or nothing.
fn unit_suffix(key: &str) -> String {
    match unit(key).trim() {
        "" => String::new(),
        u => format!(" ({u})"),
    }
}

/// A table of the values tested.
fn steps_table(r: &TargetResult, key: &str) -> String {
    let mut o = format!(
        r#"<table style="width:100%"><tr><th>#</th><th>{}</th><th>test</th><th>decision</th><th>seeds</th><th>with the event</th><th>share</th><th>seeds read</th></tr>"#,
        esc(key)
    );
    for (i, s) in r.steps.iter().enumerate() {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            i + 1,
            fmt_f64(s.value),
            level_word(s.level),
            decision_word(s.decision),
            thousands(s.seeds),
            thousands(s.events),
            fmt_f64((s.events as f64 / s.seeds.max(1) as f64 * 1e4).round() / 1e4),
            thousands(s.seeds_run)
        );
    }
    o.push_str("</table>");
    o
}

/// The test in words, with how the chart shows each level.
fn test_words(r: &TargetResult) -> String {
    format!(
        "{}; on the chart a ring is a scout's decision, a dot a sure one (what the verdict rests on)",
        solve::test_words(r)
    )
}

const BALANCE_NOTE: &str = "End-of-day balance in sats on a logarithmic scale over the seeds each decision used: shaded p5–p95, line the median. A run of a p_dry target stops on the day its pool runs dry and counts as 0 sats after it.";

/// The solve report (`plan --target T --solve KEY=LO..HI --report FILE.html`).
pub fn render_solve(out: &SolveOutput) -> String {
    let s = &out.scenario;
    let key = &out.range.key;
    let mut o = String::new();
    open_page(
        &mut o,
        s,
        "Solve",
        &format!(
            " · solving {key} over {}..{} to {}",
            fmt_f64(out.range.lo),
            fmt_f64(out.range.hi),
            fmt_f64(out.resolution)
        ),
        &[key.as_str()],
    );
    for r in &out.results {
        o.push_str(&verdict_div(r));
    }
    let top = out
        .results
        .iter()
        .flat_map(|r| &r.steps)
        .flat_map(|st| st.pool.p95.iter().copied())
        .chain([s.pool_initial_sats])
        .max()
        .unwrap_or(1);
    let top = if key == "pool_initial_sats" { top.max(out.range.hi as u64) } else { top };
    let scale = SatsScale::holding(top);
    for r in &out.results {
        let mut figures = Vec::new();
        if let Some(near) = near_the_answer(r, &out.range, out.resolution) {
            figures.push(steps_chart(r, &near, true, false));
        }
        for v in shown_values(r, &out.range) {
            if let Some(step) = step_at(r, v) {
                let title = format!("{key} {}{}: {}", fmt_f64(v), unit(key), decided(step));
                let initial = initial_at(s.pool_initial_sats, &[(key, v)]);
                figures.push(step_chart(title, step, initial, &r.target, s.days, scale, false));
            }
        }
        // Two charts a row (see `across`): with an even number of others the chart of the
        // values tested takes a row of its own, across the page, rather than leave half a row
        // blank.
        let wide = figures.len() % 2 == 0;
        let _ = write!(
            o,
            r#"<h2>{}</h2><p class="muted">{}. Values tested, numbered in order; balances at the two sides of the answer. {BALANCE_NOTE}</p><div class="grid"><figure{}>{}</figure>"#,
            esc(&r.target.text),
            esc(&test_words(r)),
            if wide { r#" class="wide""# } else { "" },
            steps_chart(r, &out.range, false, wide)
        );
        for fig in figures {
            let _ = write!(o, "<figure>{fig}</figure>");
        }
        // The table across the page: alone in a cell it would leave the other half blank.
        let _ = write!(o, r#"<figure class="wide"><div class="scroll">{}</div></figure></div>"#, steps_table(r, key));
    }
    if out.violations > 0 {
        let _ = write!(
            o,
            r#"<p class="bad">{} invariant violation(s); the first: {}</p>"#,
            out.violations,
            esc(out.first_violation.as_deref().unwrap_or(""))
        );
    }
    close_page(&mut o, &out.format);
    o
}

/// The frontier of one target: the second key across, the solved key up, each interval an
/// error bar, the curve through the values shown to meet. Every label keeps clear of the
/// others and of the points however close two values of the second key are: the values'
/// names under the axis stagger into a second row (or more) where they would touch; a value
/// at which every (no) value of the key meets gets a ▼ or ▲ at the plot's edge, and neighbours
/// with the same such verdict share one "all meet" ("none meets"); an interval's numbers go
/// beside its dot, else above or below its bar, else farther off tied to it by a thin line.
fn frontier_chart(out: &FrontierOutput, t: usize) -> String {
    let key = &out.range.key;
    let over = &out.over.key;
    let target = &out.points[0].results[t].target;
    let title = format!("{}: {key} that meets it, by {over}", target.text);
    let xs: Vec<f64> = out.points.iter().map(|p| p.value.parse::<f64>().unwrap_or(0.0)).collect();
    let (xmin, xmax) = xs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
    let pad = if xmax > xmin { (xmax - xmin) * 0.06 } else { xmin.abs().max(1.0) * 0.5 };
    let (x0, x1) = (xmin - pad, xmax + pad);
    let (lo, hi) = (out.range.lo, out.range.hi);
    let fx = |x: f64| (x - x0) / (x1 - x0);
    let fy = |v: f64| (v - lo) / (hi - lo);
    // The values left to right (they come in the order given).
    let mut order: Vec<usize> = (0..xs.len()).collect();
    order.sort_by(|&a, &b| xs[a].total_cmp(&xs[b]));
    // Each value's name under the axis goes in the first row where it touches no other name;
    // the chart grows by a row for each row past the first.
    let mut f = Frame::new(900.0, 300.0);
    let mut ends: Vec<f64> = Vec::new();
    let mut rows = vec![0; xs.len()];
    for &i in &order {
        let r = Rect::of_text(f.x(fx(xs[i])), 0.0, Anchor::Middle, &out.points[i].value);
        let row = ends.iter().position(|&end| end + 4.0 <= r.x0).unwrap_or(ends.len());
        if row == ends.len() {
            ends.push(r.x1);
        } else {
            ends[row] = r.x1;
        }
        rows[i] = row;
    }
    let extra = TICK_ROW * ends.len().saturating_sub(1) as f64;
    f.h += extra;
    f.b += extra;
    let mut o = String::new();
    svg_open(&mut o, f.w, f.h, &title);
    for v in ticks(lo, hi, 5.0) {
        f.y_tick(&mut o, fy(v), &fmt_f64((v * 1e6).round() / 1e6));
    }
    for ((x, p), row) in xs.iter().zip(&out.points).zip(&rows) {
        f.x_tick_in_row(&mut o, fx(*x), &p.value, *row);
    }
    // Which way the answer moves: from any interval, more of the key helps when it meets at
    // the higher end.
    let increasing = out
        .points
        .iter()
        .find_map(|p| match p.results[t].verdict {
            Verdict::Between { meets_at, fails_at, .. } => Some(meets_at > fails_at),
            _ => None,
        })
        .unwrap_or(true);
    // The intervals (the value, low end, high end, the end that meets), in the order given.
    let mut pts: Vec<(f64, f64, f64, f64)> = Vec::new();
    for (x, p) in xs.iter().zip(&out.points) {
        if let Verdict::Between { meets_at, fails_at, .. } = p.results[t].verdict {
            pts.push((*x, meets_at.min(fails_at), meets_at.max(fails_at), meets_at));
        }
    }
    let mut sorted = pts.clone();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    if sorted.len() >= 2 {
        let mut band: Vec<String> = sorted.iter().map(|p| format!("{:.1},{:.1}", f.x(fx(p.0)), f.y(fy(p.2)))).collect();
        band.extend(sorted.iter().rev().map(|p| format!("{:.1},{:.1}", f.x(fx(p.0)), f.y(fy(p.1)))));
        let _ = write!(o, r#"<polygon points="{}" fill="{BAND}" fill-opacity="0.5" stroke="none"/>"#, band.join(" "));
        let line: Vec<String> = sorted.iter().map(|p| format!("{:.1},{:.1}", f.x(fx(p.0)), f.y(fy(p.3)))).collect();
        let _ =
            write!(o, r#"<polyline points="{}" fill="none" stroke="{MEDIAN}" stroke-width="1.8"/>"#, line.join(" "));
    }
    // The bars, dots and curve first, so that every label can keep clear of them.
    let mut labels = Labels::inside(&f);
    for pair in sorted.windows(2) {
        let at = |p: &(f64, f64, f64, f64)| (f.x(fx(p.0)), f.y(fy(p.3)));
        labels.avoid_line(at(&pair[0]), at(&pair[1]));
    }
    for (x, a, b, m) in &pts {
        let cx = f.x(fx(*x));
        let (ya, yb, my) = (f.y(fy(*a)), f.y(fy(*b)), f.y(fy(*m)));
        labels.take(Rect { x0: cx - 5.0, y0: yb, x1: cx + 5.0, y1: ya });
        labels.take(Rect::around(cx, my, 5.0));
        let _ = write!(
            o,
            r##"<line x1="{cx:.1}" x2="{cx:.1}" y1="{ya:.1}" y2="{yb:.1}" stroke="#212121" stroke-width="1.5"/><line x1="{:.1}" x2="{:.1}" y1="{ya:.1}" y2="{ya:.1}" stroke="#212121"/><line x1="{:.1}" x2="{:.1}" y1="{yb:.1}" y2="{yb:.1}" stroke="#212121"/><circle cx="{cx:.1}" cy="{my:.1}" r="4" fill="{FREE}" stroke="#fff"><title>{}={}: {} between {} and {}</title></circle>"##,
            cx - 5.0,
            cx + 5.0,
            cx - 5.0,
            cx + 5.0,
            esc(over),
            fmt_f64(*x),
            esc(key),
            fmt_f64(*a),
            fmt_f64(*b),
        );
    }
    // All meet: the answer lies beyond the end that helps least; none: beyond the end that
    // helps most. The glyph sits inside the plot at that edge (the baseline of its first row
    // and the step of the next, into the plot), its words beside it.
    let edge = |all: bool| {
        if all != increasing {
            (f.y(1.0) + 14.0, 12.0, "▲")
        } else {
            (f.y(0.0) - 4.0, -12.0, "▼")
        }
    };
    // Runs of neighbours with the same verdict at an edge, close enough that their words
    // would touch: (all meet, the first's x, the last's x).
    let mut groups: Vec<(bool, f64, f64)> = Vec::new();
    let mut previous: Option<bool> = None;
    for &i in &order {
        let cx = f.x(fx(xs[i]));
        let verdict = &out.points[i].results[t].verdict;
        let all = match verdict {
            Verdict::Between { .. } => {
                previous = None;
                continue;
            }
            Verdict::AllMeet | Verdict::NoneMeets => *verdict == Verdict::AllMeet,
        };
        let words = if all { "all meet" } else { "none meets" };
        let room = 8.0 + Rect::of_text(0.0, 0.0, Anchor::Start, words).x1 + 10.0;
        match groups.last_mut() {
            Some(g) if previous == Some(all) && cx - g.2 < room => g.2 = cx,
            _ => groups.push((all, cx, cx)),
        }
        previous = Some(all);
        // A glyph that would touch another goes a row farther into the plot.
        let (gy, step, glyph) = edge(all);
        let candidates: Vec<_> = (0..=8).map(|k| (cx, gy + step * f64::from(k), Anchor::Middle)).collect();
        let (gx, gy, _) = labels.place_box(&candidates, |&(x, y, _)| Rect::of_glyph(x, y));
        let _ = write!(
            o,
            r##"<text x="{gx:.1}" y="{gy:.1}" font-size="13" fill="{}" text-anchor="middle">{glyph}</text>"##,
            if all { FREE } else { DRY }
        );
    }
    for &(all, a, b) in &groups {
        let words = if all { "all meet" } else { "none meets" };
        let (gy, step, _) = edge(all);
        let wy = gy - 1.0;
        let (right, left) = ((b + 8.0, wy, Anchor::Start), (a - 8.0, wy, Anchor::End));
        let mut candidates = if b > f.x(0.8) { vec![left, right] } else { vec![right, left] };
        for k in 1..=8 {
            let y = wy + step * f64::from(k);
            candidates.extend([
                (b + 8.0, y, Anchor::Start),
                (a - 8.0, y, Anchor::End),
                ((a + b) / 2.0, y, Anchor::Middle),
            ]);
        }
        let spot = labels.place(&candidates, words);
        labels.text(&mut o, spot, words, r#"class="m""#);
    }
    // Neighbours with the same interval whose numbers would touch share them: (their x left
    // to right, the interval's ends, the end that meets).
    let mut same: Vec<(Vec<f64>, f64, f64, f64)> = Vec::new();
    let mut previous: Option<(f64, f64, f64)> = None;
    for &i in &order {
        let Verdict::Between { meets_at, fails_at, .. } = out.points[i].results[t].verdict else {
            previous = None;
            continue;
        };
        let (a, b) = (meets_at.min(fails_at), meets_at.max(fails_at));
        let cx = f.x(fx(xs[i]));
        let room = 14.0 + Rect::of_text(0.0, 0.0, Anchor::Start, &format!("{}–{}", fmt_f64(a), fmt_f64(b))).x1;
        match same.last_mut() {
            Some(g) if previous == Some((a, b, meets_at)) && g.0.last().is_some_and(|x| cx - x < room) => g.0.push(cx),
            _ => same.push((vec![cx], a, b, meets_at)),
        }
        previous = Some((a, b, meets_at));
    }
    // Each interval's numbers beside its dot (beside the outermost of neighbours that share
    // them), else above or below its bar, else farther up or down a line of text at a time,
    // tied to the bar by a thin line.
    for (at, a, b, m) in &same {
        let (first, last) = (at[0], at[at.len() - 1]);
        let mid = (first + last) / 2.0;
        let (ya, yb, my) = (f.y(fy(*a)), f.y(fy(*b)), f.y(fy(*m)));
        // Above the bar and its dot (the dot is at an end of the bar), or below them.
        let (up, down) = (yb.min(my - 4.0) - 4.0, ya.max(my + 4.0) + 11.0);
        let mut candidates = vec![
            (last + 7.0, my + 3.5, Anchor::Start),
            (first - 7.0, my + 3.5, Anchor::End),
            (mid, up, Anchor::Middle),
            (mid, down, Anchor::Middle),
        ];
        let beside = candidates.len();
        for k in 1..=8 {
            let d = TICK_ROW * f64::from(k);
            candidates.extend([
                (mid, up - d, Anchor::Middle),
                (last + 3.0, up - d, Anchor::Start),
                (first - 3.0, up - d, Anchor::End),
                (mid, down + d, Anchor::Middle),
                (last + 3.0, down + d, Anchor::Start),
                (first - 3.0, down + d, Anchor::End),
            ]);
        }
        let text = format!("{}–{}", fmt_f64(*a), fmt_f64(*b));
        let spot = labels.place(&candidates, &text);
        if !candidates[..beside].contains(&spot) {
            // From the end of the nearest bar (or its dot) to the middle of the numbers' nearer
            // side.
            let tx = spot.2.tie_x(spot.0);
            let cx = at.iter().copied().min_by(|p, q| (p - tx).abs().total_cmp(&(q - tx).abs())).unwrap_or(mid);
            let (ey, ty) = if spot.1 < my { (up + 4.0, spot.1 + 2.5) } else { (down - 11.0, spot.1 - 8.0) };
            let _ = write!(
                o,
                r##"<line x1="{cx:.1}" y1="{ey:.1}" x2="{tx:.1}" y2="{ty:.1}" stroke="#9e9e9e" stroke-width="0.6"/>"##
            );
        }
        labels.text(&mut o, spot, &text, r#"class="n""#);
    }
    f.chrome(&mut o, &title, &format!("{over}{}", unit_suffix(over)), &format!("{key}{}", unit_suffix(key)));
    o.push_str("</svg>");
    o
}

/// The frontier report (`plan --target T --solve KEY=LO..HI --over KEY2=V1,... --report`).
pub fn render_frontier(out: &FrontierOutput) -> String {
    let s = &out.scenario;
    let key = &out.range.key;
    let over = &out.over.key;
    let mut o = String::new();
    open_page(
        &mut o,
        s,
        "Frontier",
        &format!(
            " · solving {key} over {}..{} to {} for each {over} in {}",
            fmt_f64(out.range.lo),
            fmt_f64(out.range.hi),
            fmt_f64(out.resolution),
            out.over.values.join(", ")
        ),
        &[key.as_str(), out.over.key.as_str()],
    );
    let n_targets = out.points.first().map_or(0, |p| p.results.len());
    for t in 0..n_targets {
        let first = &out.points[0].results[t];
        let met = out.points.iter().filter(|p| p.results[t].verdict != Verdict::NoneMeets).count();
        let confidence = fmt_f64((100.0 * (1.0 - first.test.alpha.max(first.test.beta)) * 1e6).round() / 1e6);
        let seeds: u64 = out.points.iter().map(|p| p.results[t].seeds_run).sum();
        let _ = write!(
            o,
            r#"<div class="verdict {}"><span class="badge">met at {met} of {}</span>{}: {} that meets it, for each {}; {} % confidence each{}; {} seeds spent<div class="scroll" style="margin-top:6px"><table><tr><th>{}</th><th class="l">{}</th><th>seeds</th><th class="l">verdict</th></tr>"#,
            if met == out.points.len() { "met" } else { "not" },
            out.points.len(),
            esc(&first.target.text),
            esc(key),
            esc(over),
            confidence,
            if out.points.iter().any(|p| !p.results[t].undecided_at.is_empty()) {
                ", none where undecided"
            } else {
                ""
            },
            thousands(seeds),
            esc(over),
            esc(key)
        );
        for p in &out.points {
            let r = &p.results[t];
            let _ = write!(
                o,
                r#"<tr><td class="l">{}</td><td class="l">{}</td><td>{}</td><td class="l">{}</td></tr>"#,
                esc(&p.value),
                esc_cell(&result_interval_words(&out.range, r)),
                thousands(r.seeds_run),
                esc_cell(r.line.split_once(": ").map_or(r.line.as_str(), |(_, rest)| rest))
            );
        }
        o.push_str("</table></div></div>");
    }
    let top = out
        .points
        .iter()
        .flat_map(|p| p.results.iter().flat_map(|r| &r.steps))
        .flat_map(|st| st.pool.p95.iter().copied())
        .chain(out.points.iter().map(|p| p.pool_initial_sats))
        .max()
        .unwrap_or(1);
    let scale = SatsScale::holding(top);
    for t in 0..n_targets {
        let first = &out.points[0].results[t];
        let _ = write!(
            o,
            r#"<h2>{}</h2><p class="muted">The frontier: for each {}, the interval of {} in which the target starts to be met (error bar; the line joins the values shown to meet). {}. Then the balance at the value shown to meet, for each {}. {BALANCE_NOTE}</p><div class="grid"><figure class="wide">{}</figure>"#,
            esc(&first.target.text),
            esc(over),
            esc(key),
            esc(&test_words(first)),
            esc(over),
            frontier_chart(out, t)
        );
        let shown: Vec<_> = out
            .points
            .iter()
            .filter_map(|p| {
                let r = &p.results[t];
                let v = match r.verdict {
                    Verdict::Between { meets_at, .. } => meets_at,
                    Verdict::AllMeet | Verdict::NoneMeets => shown_values(r, &out.range)[1],
                };
                step_at(r, v).map(|step| (p, r, v, step))
            })
            .collect();
        for (i, &(p, r, v, step)) in shown.iter().enumerate() {
            let title = format!("{over}={} · {key} {}{}: {}", p.value, fmt_f64(v), unit(key), decided(step));
            let wide = across(i, shown.len());
            let initial = initial_at(p.pool_initial_sats, &[(key, v)]);
            figure(&mut o, wide, &step_chart(title, step, initial, &r.target, s.days, scale, wide));
        }
        o.push_str("</div>");
    }
    if out.violations > 0 {
        let _ = write!(
            o,
            r#"<p class="bad">{} invariant violation(s); the first: {}</p>"#,
            out.violations,
            esc(out.first_violation.as_deref().unwrap_or(""))
        );
    }
    close_page(&mut o, &out.format);
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sprt::SprtSpec;

    #[test]
    fn short_numbers_take_the_unit_their_rounding_reaches() {
        let cases = [
            (0.0, "0"),
            (999.0, "999"),
            (999.96, "1k"),
            (1_000.0, "1k"),
            (262_500.0, "262.5k"),
            (999_940.0, "999.9k"),
            (999_960.0, "1M"),
            (1_000_000.0, "1M"),
            (25_400_000.0, "25.4M"),
        ];
        for (v, want) in cases {
            assert_eq!(short(v), want, "short({v})");
        }
    }

    /// The value of attribute `name` in the tag `tag`.
    fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
        let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        Some(&tag[at..at + tag[at..].find('"')?])
    }

    fn num(tag: &str, name: &str) -> f64 {
        attr(tag, name).unwrap_or_else(|| panic!("{name} in {tag}")).parse().unwrap()
    }

    /// Every text of an SVG not turned (the y axis's name is) with its box, and the box of
    /// every dot.
    fn boxes(svg: &str) -> (Vec<(String, Rect)>, Vec<Rect>) {
        let mut texts = Vec::new();
        for piece in svg.split("<text").skip(1) {
            let (tag, rest) = piece.split_once('>').unwrap();
            if tag.contains("transform=") {
                continue;
            }
            let content = rest.split_once("</text>").unwrap().0.to_owned();
            let anchor = match attr(tag, "text-anchor") {
                Some("middle") => Anchor::Middle,
                Some("end") => Anchor::End,
                _ => Anchor::Start,
            };
            let r = if content == "▲" || content == "▼" {
                Rect::of_glyph(num(tag, "x"), num(tag, "y"))
            } else {
                Rect::of_text(num(tag, "x"), num(tag, "y"), anchor, &content)
            };
            texts.push((content, r));
        }
        let dots = svg
            .split("<circle")
            .skip(1)
            .map(|piece| {
                let tag = piece.split_once('>').unwrap().0;
                Rect::around(num(tag, "cx"), num(tag, "cy"), num(tag, "r"))
            })
            .collect();
        (texts, dots)
    }

    /// What no text of `svg` may do: cover another text or a dot, or sit closer than
    /// [`LABEL_GAP`] beside another text (where the two would read as one).
    fn overlaps(svg: &str) -> Vec<String> {
        let (texts, dots) = boxes(svg);
        let mut found = Vec::new();
        for (i, (a, ra)) in texts.iter().enumerate() {
            for (b, rb) in &texts[i + 1..] {
                if ra.overlap(rb) > 0.0 {
                    found.push(format!("{a:?} covers {b:?}"));
                } else if ra.widened(LABEL_GAP - 0.01).overlap(rb) > 0.0 {
                    found.push(format!("{a:?} touches {b:?}"));
                }
            }
            for d in &dots {
                if ra.overlap(d) > 0.0 {
                    found.push(format!(
                        "{a:?} covers the dot at {:.1},{:.1}",
                        (d.x0 + d.x1) / 2.0,
                        (d.y0 + d.y1) / 2.0
                    ));
                }
            }
        }
        found
    }

    fn step(value: f64, level: Level, decision: Decision, seeds: u64, events: u64) -> Step {
        Step { value, level, decision, seeds, events, seeds_run: seeds, pool: PoolBand::default() }
    }

    #[test]
    fn a_balance_charts_title_says_a_test_that_ran_out_of_seeds_is_undecided_at_the_cap() {
        assert_eq!(decided(&step(72.5, Level::Sure, Decision::Meets, 262, 6)), "sure meets, 262 seeds");
        assert_eq!(decided(&step(44.0, Level::Sure, Decision::Fails, 1234, 68)), "sure fails, 1,234 seeds");
        assert_eq!(decided(&step(11.0, Level::Sure, Decision::Undecided, 2000, 90)), "undecided at the 2,000-seed cap");
    }

    /// The solve of the README's planning question: eleven decisions, two values tested twice
    /// (a scout, then a sure test), four values within 1.5 % of each other.
    fn launch_solve() -> (TargetResult, SolveRange) {
        use Decision::{Fails, Meets};
        use Level::{Scout, Sure};
        let target = Target::parse("p_dry(day=90) <= 0.05", 90).unwrap();
        let result = TargetResult {
            target,
            event: "pool dry by day 90".to_owned(),
            test: SprtSpec::new(0.04, 0.06, 0.05, 0.05, 2000).unwrap(),
            scout: SprtSpec::new(0.03, 0.07, 0.2, 0.2, 2000).unwrap(),
            steps: vec![
                step(0.0, Scout, Fails, 2, 2),
                step(50.0, Scout, Fails, 2, 2),
                step(75.0, Scout, Meets, 33, 0),
                step(62.5, Scout, Fails, 2, 2),
                step(68.5, Scout, Fails, 2, 2),
                step(71.5, Scout, Fails, 24, 3),
                step(73.0, Scout, Meets, 33, 0),
                step(72.0, Scout, Meets, 33, 0),
                step(72.0, Sure, Fails, 377, 26),
                step(72.5, Scout, Meets, 33, 0),
                step(72.5, Sure, Meets, 262, 6),
            ],
            verdict: Verdict::Between { meets_at: 72.5, fails_at: 72.0, fails_decided: true },
            undecided_at: Vec::new(),
            seeds_run: 737,
            line: String::new(),
        };
        (result, SolveRange { key: "credit_pct".to_owned(), lo: 0.0, hi: 100.0 })
    }

    /// The solve of `plan fixtures/scenarios/plan-tipping.toml --target 'p_dry(day=7) <= 0.3'
    /// --solve credit_pct=0..100 --band 0.1`: five values within 2.5 % of each other at 0,
    /// three tested twice.
    fn tipping_solve() -> (TargetResult, SolveRange) {
        use Decision::{Fails, Meets};
        use Level::{Scout, Sure};
        let (mut result, range) = launch_solve();
        result.target = Target::parse("p_dry(day=7) <= 0.3", 7).unwrap();
        result.test = SprtSpec::new(0.2, 0.4, 0.05, 0.05, 2000).unwrap();
        result.scout = SprtSpec::new(0.1, 0.5, 0.2, 0.2, 2000).unwrap();
        result.steps = vec![
            step(0.0, Scout, Fails, 1, 1),
            step(50.0, Scout, Meets, 3, 0),
            step(25.0, Scout, Meets, 3, 0),
            step(12.5, Scout, Meets, 3, 0),
            step(6.0, Scout, Fails, 1, 1),
            step(9.0, Scout, Fails, 3, 2),
            step(10.5, Scout, Meets, 3, 0),
            step(9.5, Scout, Fails, 8, 3),
            step(10.0, Scout, Meets, 3, 0),
            step(10.0, Sure, Fails, 61, 21),
            step(10.5, Sure, Fails, 51, 18),
            step(11.5, Scout, Meets, 3, 0),
            step(11.5, Sure, Meets, 18, 2),
            step(11.0, Scout, Meets, 3, 0),
            step(11.0, Sure, Fails, 71, 24),
        ];
        result.verdict = Verdict::Between { meets_at: 11.5, fails_at: 11.0, fails_decided: true };
        (result, range)
    }

    /// Every number, the limit's words and the answer's are legible on the chart of the whole
    /// range (in a cell and across the page) and on the one near the answer: none covers
    /// another or a dot.
    #[test]
    fn no_label_of_the_values_tested_covers_another() {
        for (r, range) in [launch_solve(), tipping_solve()] {
            let near = near_the_answer(&r, &range, 0.5).expect("the values crowd together");
            for (shown, zoomed, wide) in [(&range, false, false), (&range, false, true), (&near, true, false)] {
                let svg = steps_chart(&r, shown, zoomed, wide);
                let at = format!("{}, {}..{}", r.target.text, shown.lo, shown.hi);
                assert_eq!(overlaps(&svg), Vec::<String>::new(), "{at}: {svg}");
                // The number of every value in the range is there.
                let (texts, _) = boxes(&svg);
                for (i, s) in r.steps.iter().enumerate() {
                    if s.value >= shown.lo && s.value <= shown.hi {
                        let n = (i + 1).to_string();
                        assert!(texts.iter().any(|(t, _)| *t == n), "{at}: number {n} missing");
                    }
                }
            }
        }
    }

    /// The leaders of `svg` (its lines 0.6 units wide), each from its point to its label.
    fn leaders(svg: &str) -> Vec<((f64, f64), (f64, f64))> {
        svg.split("<line")
            .skip(1)
            .map(|piece| piece.split_once("/>").unwrap().0)
            .filter(|tag| tag.contains(r#"stroke-width="0.6""#))
            .map(|tag| ((num(tag, "x1"), num(tag, "y1")), (num(tag, "x2"), num(tag, "y2"))))
            .collect()
    }

    /// What no leader of `svg` may do: cross another leader, or run through a text or a dot
    /// other than its own (the text it ends at, the dots it starts from).
    fn tangles(svg: &str) -> Vec<String> {
        let (texts, dots) = boxes(svg);
        let near =
            |r: &Rect, (x, y): (f64, f64)| x >= r.x0 - 0.6 && x <= r.x1 + 0.6 && y >= r.y0 - 0.6 && y <= r.y1 + 0.6;
        let all = leaders(svg);
        let mut found = Vec::new();
        for (i, &(a, b)) in all.iter().enumerate() {
            let own = texts.iter().find(|(_, r)| near(r, b)).map_or("?".to_owned(), |(t, _)| t.clone());
            for (t, r) in &texts {
                if !near(r, b) && segment_meets_rect(a, b, r) {
                    found.push(format!("the leader of {own:?} runs through {t:?}"));
                }
            }
            for d in dots.iter().filter(|d| !near(d, a)) {
                if segment_meets_rect(a, b, d) {
                    found.push(format!(
                        "the leader of {own:?} runs through the dot at {:.1},{:.1}",
                        (d.x0 + d.x1) / 2.0,
                        (d.y0 + d.y1) / 2.0
                    ));
                }
            }
            for &other in &all[i + 1..] {
                if segments_cross((a, b), other) {
                    found.push(format!(
                        "the leader of {own:?} crosses the one from {:.1},{:.1}",
                        other.0 .0, other.0 .1
                    ));
                }
            }
        }
        found
    }

    /// The numbers of values tested close together fan out above (or below) them, each tied to
    /// its dot by a leader that crosses no other leader and runs through no other number or
    /// dot: on the README's solve, the tipping point's and a crowd of four values a step apart,
    /// two tested twice, on the chart of the whole range and near the answer.
    #[test]
    fn no_leader_of_the_values_tested_crosses_another() {
        use Decision::{Fails, Meets};
        use Level::{Scout, Sure};
        let (mut crowd, range) = launch_solve();
        crowd.steps = vec![step(0.0, Scout, Fails, 2, 2), step(100.0, Scout, Meets, 33, 0)];
        for k in 0..4u32 {
            let v = 52.0 + f64::from(k);
            crowd.steps.push(step(v, Scout, if k < 2 { Fails } else { Meets }, 33, u64::from(4 - 2 * k.min(2))));
        }
        crowd.steps.extend([step(53.0, Sure, Fails, 280, 21), step(54.0, Sure, Meets, 242, 5)]);
        crowd.verdict = Verdict::Between { meets_at: 54.0, fails_at: 53.0, fails_decided: true };
        let mut leaders_seen = 0;
        for (r, range) in [launch_solve(), tipping_solve(), (crowd, range)] {
            let near = near_the_answer(&r, &range, 0.5).expect("the values crowd together");
            for (shown, zoomed, wide) in [(&range, false, false), (&range, false, true), (&near, true, false)] {
                let svg = steps_chart(&r, shown, zoomed, wide);
                let at = format!("{}, {}..{}", r.target.text, shown.lo, shown.hi);
                assert_eq!(tangles(&svg), Vec::<String>::new(), "{at}: {svg}");
                assert_eq!(overlaps(&svg), Vec::<String>::new(), "{at}: {svg}");
                leaders_seen += leaders(&svg).len();
            }
        }
        assert!(leaders_seen >= 10, "the crowds stack their numbers: {leaders_seen} leaders");
    }

    /// A balance chart's days fall on whole days only, however few (no day 2.5), and the
    /// median day a pool ran dry is marked on that day, where its balance is drawn.
    #[test]
    fn day_ticks_are_whole_days_and_the_dry_mark_is_on_its_day() {
        assert_eq!(day_ticks(1), vec![0, 1]);
        assert_eq!(day_ticks(3), vec![0, 1, 2, 3]);
        assert_eq!(day_ticks(5), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(day_ticks(10), vec![0, 2, 4, 6, 8, 10]);
        assert_eq!(day_ticks(90), vec![0, 20, 40, 60, 80]);
        for days in 1..=120 {
            let t = day_ticks(days);
            assert!(t.len() >= 2 && t.len() <= 11 && t[0] == 0 && *t.last().unwrap() <= days, "{days}: {t:?}");
        }
        let band = PoolBand { p5: vec![5, 0, 0], p50: vec![50, 0, 0], p95: vec![500, 10, 0] };
        let svg = PoolChart {
            title: "t".to_owned(),
            band: &band,
            initial_sats: 1000,
            days: 3,
            scale: SatsScale::holding(1000),
            dry: Some((2, 0.5)),
            marks: Vec::new(),
            w: 420.0,
            h: 230.0,
        }
        .render();
        let f = Frame::new(420.0, 230.0);
        let (texts, _) = boxes(&svg);
        let days: Vec<&str> = texts.iter().filter(|(_, r)| r.y0 > f.t + f.ph()).map(|(t, _)| t.as_str()).collect();
        assert_eq!(days, ["0", "1", "2", "3", "day"], "{svg}");
        let x = f.x(2.0 / 3.0);
        assert!(svg.contains(&format!(r#"<line x1="{x:.1}" x2="{x:.1}" y1="26" y2="196.0" stroke="{DRY}""#)), "{svg}");
    }

    /// A range one step wide, both ends tested (`--solve credit_pct=71..72`): the dots at the
    /// ends, and at shares 0 and 1, are drawn whole inside the plot, not cut by its frame; the
    /// answer's band spans the plot, and its word is inside it, not cut off past its edge.
    #[test]
    fn the_values_at_the_ends_of_the_range_are_drawn_whole() {
        use Decision::{Fails, Meets};
        use Level::{Scout, Sure};
        let (mut r, _) = launch_solve();
        r.steps = vec![step(71.0, Scout, Fails, 1, 1), step(72.0, Scout, Meets, 18, 0), step(72.0, Sure, Meets, 74, 1)];
        r.steps.push(step(71.0, Sure, Fails, 5, 3));
        r.verdict = Verdict::Between { meets_at: 72.0, fails_at: 71.0, fails_decided: true };
        let range = SolveRange { key: "credit_pct".to_owned(), lo: 71.0, hi: 72.0 };
        for wide in [false, true] {
            let svg = steps_chart(&r, &range, false, wide);
            let near = SolveRange { key: range.key.clone(), lo: 11.235 - 0.04, hi: 11.235 + 0.04 };
            assert!(steps_chart(&r, &near, true, wide).contains("near the answer, 11.195..11.275</text>"));
            let f = if wide { Frame::new(900.0, 300.0) } else { Frame::new(420.0, 230.0) };
            let plot = Rect { x0: f.l, y0: f.t, x1: f.l + f.pw(), y1: f.t + f.ph() };
            let (texts, dots) = boxes(&svg);
            assert_eq!(dots.len(), 4, "{svg}");
            for d in &dots {
                assert_eq!(d.outside(&plot), 0.0, "a dot cut by the frame: {d:?} in {plot:?}");
            }
            let answer = texts.iter().find(|(t, _)| t == "answer").expect("the answer's word");
            assert_eq!(answer.1.outside(&plot), 0.0, "{answer:?} in {plot:?}");
            assert_eq!(overlaps(&svg), Vec::<String>::new(), "{svg}");
            assert_eq!(outside_the_chart(&svg), Vec::<String>::new(), "{svg}");
        }
    }

    /// The texts of `svg` (not turned) that run outside its view box.
    fn outside_the_chart(svg: &str) -> Vec<String> {
        let view = attr(svg, "viewBox").unwrap();
        let n: Vec<f64> = view.split(' ').map(|v| v.parse().unwrap()).collect();
        let chart = Rect { x0: n[0], y0: n[1], x1: n[0] + n[2], y1: n[1] + n[3] };
        let (texts, _) = boxes(svg);
        texts.into_iter().filter(|(_, r)| r.outside(&chart) > 0.0).map(|(t, r)| format!("{t:?} at {r:?}")).collect()
    }

    /// A frontier of `credit_pct` over `budget.trusted` with these values and verdicts.
    fn frontier_of(points: &[(&str, Verdict)]) -> FrontierOutput {
        use crate::frontier::FrontierPoint;
        let (result, range) = launch_solve();
        FrontierOutput {
            format: crate::frontier::FORMAT.to_owned(),
            scenario: PlanScenario::default(),
            range,
            resolution: 0.5,
            over: crate::report::Axis {
                key: "budget.trusted".to_owned(),
                values: points.iter().map(|(v, _)| (*v).to_owned()).collect(),
            },
            points: points
                .iter()
                .map(|(v, verdict)| FrontierPoint {
                    value: (*v).to_owned(),
                    pool_initial_sats: 14_500,
                    results: vec![TargetResult { verdict: verdict.clone(), ..result.clone() }],
                    requests: 0,
                })
                .collect(),
            requests: 0,
            violations: 0,
            first_violation: None,
        }
    }

    fn between(meets_at: f64, fails_at: f64) -> Verdict {
        Verdict::Between { meets_at, fails_at, fails_decided: true }
    }

    /// Every label of a frontier's chart is legible however close two values of the second key
    /// sit: the values' names, the ▼ and ▲ of values at which no (every) value meets and their
    /// words, and each interval's numbers; none covers another or a dot, none runs off the
    /// chart, and each is there.
    #[test]
    fn no_label_of_a_frontier_covers_another() {
        use Verdict::{AllMeet, NoneMeets};
        let cases: Vec<Vec<(&str, Verdict)>> = vec![
            // `--over budget.trusted=50,200,5000 --max-seeds 5` on the tipping fixture: every
            // value undecided, 50 and 200 a few units apart on an axis to 5,000.
            vec![("50", NoneMeets), ("200", NoneMeets), ("5000", NoneMeets)],
            // The same at `--max-seeds 300` with 1000 and 1100: two intervals side by side.
            vec![
                ("50", AllMeet),
                ("200", between(11.5, 11.0)),
                ("1000", between(15.0, 14.5)),
                ("1100", between(15.0, 14.5)),
                ("5000", between(15.0, 14.5)),
            ],
            // Crowds of values a unit apart on an axis to 100,000, of each kind, given out of
            // order, on a frontier that falls.
            vec![
                ("100000", between(2.0, 2.5)),
                ("1002", NoneMeets),
                ("1000", NoneMeets),
                ("1001", NoneMeets),
                ("1003", AllMeet),
                ("1004", AllMeet),
                ("1005", between(99.5, 100.0)),
                ("1006", between(99.0, 99.5)),
                ("1007", between(98.5, 99.0)),
                ("99999", between(2.5, 3.0)),
            ],
            // Near the ends of the key's range, where a dot meets the glyphs' edge.
            vec![("10", between(0.5, 0.0)), ("11", NoneMeets), ("12", AllMeet), ("13", between(100.0, 99.5))],
            // One value.
            vec![("50", NoneMeets)],
        ];
        for points in cases {
            let out = frontier_of(&points);
            let svg = frontier_chart(&out, 0);
            let at = points.iter().map(|(v, _)| *v).collect::<Vec<_>>().join(",");
            assert_eq!(overlaps(&svg), Vec::<String>::new(), "{at}: {svg}");
            assert_eq!(outside_the_chart(&svg), Vec::<String>::new(), "{at}: {svg}");
            let (texts, _) = boxes(&svg);
            let has = |t: &str| texts.iter().filter(|(x, _)| x == t).count();
            for (v, verdict) in &points {
                assert_eq!(has(v), 1, "{at}: the name of {v}");
                if let Verdict::Between { meets_at, fails_at, .. } = verdict {
                    let numbers = format!("{}–{}", fmt_f64(meets_at.min(*fails_at)), fmt_f64(meets_at.max(*fails_at)));
                    assert!(has(&numbers) >= 1, "{at}: {numbers} missing");
                }
            }
            // On a rising frontier no value meets beyond the top, all beyond the bottom.
            let rising = !at.starts_with("100000");
            let (up, down) = ("▲", "▼");
            for (verdict, glyph, words) in [
                (NoneMeets, if rising { up } else { down }, "none meets"),
                (AllMeet, if rising { down } else { up }, "all meet"),
            ] {
                let n = points.iter().filter(|(_, v)| *v == verdict).count();
                assert_eq!(has(glyph), n, "{at}: a {glyph} for each of {n}");
                assert_eq!(has(words) > 0, n > 0, "{at}: {words}");
            }
            // The same frontier gives the same bytes.
            assert_eq!(frontier_chart(&out, 0), svg);
        }
    }

    /// A balance chart's marks keep their words apart and on the chart: a target balance near
    /// the top of the scale, its day at the right edge, and a day in the middle of a chart in a
    /// cell, whose words are wider than the room right of it.
    #[test]
    fn no_label_of_a_balance_chart_covers_another() {
        let scale = SatsScale::holding(1_000_000);
        let band = PoolBand::default();
        for (target, days, dry) in
            [("pool_p5(day=10) >= 500000", 10, None), ("p_dry(day=45) <= 0.05", 90, Some((40, 0.25)))]
        {
            let target = Target::parse(target, days).unwrap();
            for wide in [false, true] {
                let svg = PoolChart {
                    title: "t".to_owned(),
                    band: &band,
                    initial_sats: 14_500,
                    days,
                    scale,
                    dry,
                    marks: target_marks(&target),
                    w: if wide { 900.0 } else { 420.0 },
                    h: if wide { 300.0 } else { 230.0 },
                }
                .render();
                let at = format!("{}, wide {wide}", target.text);
                assert_eq!(overlaps(&svg), Vec::<String>::new(), "{at}: {svg}");
                assert_eq!(outside_the_chart(&svg), Vec::<String>::new(), "{at}: {svg}");
            }
        }
    }
}
