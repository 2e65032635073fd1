//! The HTML report: one self-contained page, inline SVG written by hand, no scripts, no
//! network. Charts: the pool balance band (p5-p95, median) per configuration as small
//! multiples on one scale, served shares by tier, and for sweeps a heatmap of the
//! probability of depletion over the last two axes.

use std::fmt::Write as _;

use super::report::{thousands, PlanOutput, Summary};
use super::scenario::fmt_f64;

const FREE: &str = "#2e7d32";
const PARTIAL: &str = "#f9a825";
const GATED: &str = "#9e9e9e";
const BAND: &str = "#90caf9";
const MEDIAN: &str = "#0d47a1";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
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

fn short(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", fmt_f64((v / 1e5).round() / 10.0))
    } else if v >= 1e3 {
        format!("{}k", fmt_f64((v / 1e2).round() / 10.0))
    } else {
        fmt_f64(v)
    }
}

/// The pool band chart of one configuration.
fn pool_chart(s: &Summary, y_max: f64, initial: u64, w: f64, h: f64) -> String {
    let (l, r, t, b) = (52.0, 10.0, 22.0, 28.0);
    let (pw, ph) = (w - l - r, h - t - b);
    let days = s.pool_p50.len().max(1);
    let x = |d: f64| l + pw * d / days as f64;
    let y = |v: f64| t + ph * (1.0 - v / y_max);
    let mut o = String::new();
    let _ = write!(o, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}">"#);
    let _ = write!(o, r##"<text x="{l}" y="14" font-size="12" font-weight="600">{}</text>"##, esc(&s.label));
    let step = tick_step(y_max, 4.0);
    let mut v = 0.0;
    while v <= y_max + 1e-9 {
        let _ = write!(
            o,
            r##"<line x1="{l}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#e0e0e0"/><text x="{}" y="{:.1}" font-size="10" text-anchor="end">{}</text>"##,
            l + pw,
            l - 4.0,
            y(v) + 3.0,
            short(v),
            y = y(v)
        );
        v += step;
    }
    let xstep = tick_step(days as f64, 5.0).max(1.0);
    let mut d = 0.0;
    while d <= days as f64 + 1e-9 {
        let _ = write!(
            o,
            r##"<text x="{:.1}" y="{}" font-size="10" text-anchor="middle">{}</text>"##,
            x(d),
            t + ph + 14.0,
            fmt_f64(d)
        );
        d += xstep;
    }
    let _ = write!(o, r##"<text x="{}" y="{}" font-size="10" text-anchor="middle">day</text>"##, l + pw / 2.0, h - 2.0);
    // Day 0 is the genesis balance; day d the balance at the end of day d.
    let pt = |d: usize, v: u64| format!("{:.1},{:.1}", x(d as f64), y(v as f64));
    let mut band: Vec<String> = vec![pt(0, initial)];
    band.extend(s.pool_p95.iter().enumerate().map(|(i, v)| pt(i + 1, *v)));
    band.extend(s.pool_p5.iter().enumerate().rev().map(|(i, v)| pt(i + 1, *v)));
    let _ = write!(o, r#"<polygon points="{}" fill="{BAND}" fill-opacity="0.7" stroke="none"/>"#, band.join(" "));
    let mut line: Vec<String> = vec![pt(0, initial)];
    line.extend(s.pool_p50.iter().enumerate().map(|(i, v)| pt(i + 1, *v)));
    let _ = write!(o, r#"<polyline points="{}" fill="none" stroke="{MEDIAN}" stroke-width="1.8"/>"#, line.join(" "));
    if let Some(dd) = s.depletion_day_p50 {
        let xd = x(f64::from(dd) - 0.5);
        let _ = write!(
            o,
            r##"<line x1="{xd:.1}" x2="{xd:.1}" y1="{t}" y2="{}" stroke="#c62828" stroke-dasharray="3,3"/><text x="{:.1}" y="{}" font-size="10" fill="#c62828">dry d{dd} ({}%)</text>"##,
            t + ph,
            xd + 3.0,
            t + 10.0,
            fmt_f64((s.depletion_probability * 1000.0).round() / 10.0)
        );
    }
    let _ = write!(o, r##"<rect x="{l}" y="{t}" width="{pw}" height="{ph}" fill="none" stroke="#9e9e9e"/></svg>"##);
    o
}

/// Stacked bars of free / partial / gated shares per tier.
fn tier_chart(s: &Summary, w: f64) -> String {
    let (l, r, t, row) = (130.0, 10.0, 22.0, 20.0);
    let pw = w - l - r;
    let h = t + row * s.tiers.len() as f64 + 8.0;
    let mut o = String::new();
    let _ = write!(o, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}">"#);
    let _ = write!(o, r##"<text x="4" y="14" font-size="12" font-weight="600">{}</text>"##, esc(&s.label));
    for (i, ts) in s.tiers.iter().enumerate() {
        let yy = t + row * i as f64;
        let _ = write!(
            o,
            r##"<text x="{}" y="{:.1}" font-size="11" text-anchor="end">{} ({})</text>"##,
            l - 4.0,
            yy + 13.0,
            ts.tier,
            short(ts.requests as f64 / s.seeds.max(1) as f64)
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
                if bw > 34.0 {
                    let _ = write!(
                        o,
                        r##"<text x="{:.1}" y="{:.1}" font-size="10" fill="#fff" text-anchor="middle">{:.0}%</text>"##,
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
    let (cw, ch, l, t) = (92.0, 40.0, 110.0, 40.0);
    let (w, h) = (l + cw * nx as f64 + 10.0, t + ch * ny as f64 + 10.0);
    let mut o = String::new();
    for (key, members) in groups {
        let title: Vec<String> =
            key.iter().enumerate().map(|(a, &i)| format!("{}={}", axes[a].key, axes[a].values[i])).collect();
        let _ = write!(
            o,
            r#"<figure><svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}">"#
        );
        let _ = write!(
            o,
            r##"<text x="{l}" y="14" font-size="12" font-weight="600">{} → {}</text>"##,
            esc(&title.join(" ")),
            esc(&axes[xa].key)
        );
        if let Some(ya) = ya {
            let _ = write!(
                o,
                r##"<text x="6" y="{}" font-size="11" font-weight="600">{} ↓</text>"##,
                t - 6.0,
                esc(&axes[ya].key)
            );
        }
        for (i, v) in axes[xa].values.iter().enumerate() {
            let _ = write!(
                o,
                r##"<text x="{:.1}" y="{}" font-size="11" text-anchor="middle">{}</text>"##,
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
                        r##"<text x="{}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
                        l - 6.0,
                        y0 + ch / 2.0 + 4.0,
                        esc(&axes[ya].values[iy])
                    );
                }
            }
            let last = s.pool_p50.last().copied().unwrap_or(0);
            let _ = write!(
                o,
                r##"<rect x="{x0:.1}" y="{y0:.1}" width="{cw}" height="{ch}" fill="{}" stroke="#fff"><title>{}</title></rect><text x="{:.1}" y="{:.1}" font-size="12" fill="#fff" text-anchor="middle" font-weight="600">{}%</text><text x="{:.1}" y="{:.1}" font-size="9" fill="#fff" text-anchor="middle">p50 end {}</text>"##,
                heat(s.depletion_probability),
                esc(&s.label),
                x0 + cw / 2.0,
                y0 + 17.0,
                fmt_f64((s.depletion_probability * 1000.0).round() / 10.0),
                x0 + cw / 2.0,
                y0 + 31.0,
                short(last as f64)
            );
        }
        o.push_str("</svg></figure>");
    }
    o
}

/// The whole page.
pub fn render(out: &PlanOutput) -> String {
    let s = &out.scenario;
    let name = if s.name.is_empty() { "capacity plan".to_owned() } else { s.name.clone() };
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{}</title><style>
body{{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#212121;max-width:1400px}}
h1{{font-size:22px;margin:0 0 4px}} h2{{font-size:16px;margin:24px 0 8px;border-bottom:1px solid #e0e0e0}}
table{{border-collapse:collapse;font-size:12px}} td,th{{padding:3px 8px;border-bottom:1px solid #eee;text-align:right}}
td:first-child,th:first-child{{text-align:left}} .grid{{display:flex;flex-wrap:wrap;gap:12px}}
figure{{margin:0}} .muted{{color:#757575;font-size:12px}} .key span{{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}}
.bad{{color:#c62828;font-weight:600}}
</style></head><body>"#,
        esc(&name)
    );
    let pop = s.population.by_tier();
    let _ = write!(
        o,
        r#"<h1>{}</h1><p class="muted">{} days · {} seeds per configuration · {} configuration(s) · population new/established/trusted/elite {}/{}/{}/{} (+{}%/day) · budgets {}/{}/{}/{} sats · pool {} sats · credit {}%{}</p>"#,
        esc(&name),
        s.days,
        s.seeds,
        out.configs.len(),
        pop[0],
        pop[1],
        pop[2],
        pop[3],
        fmt_f64(s.population.growth_pct_per_day),
        s.budget.new,
        s.budget.established,
        s.budget.trusted,
        s.budget.elite,
        thousands(s.pool_initial_sats),
        fmt_f64(s.credit_pct),
        if out.sweep.is_empty() {
            String::new()
        } else {
            format!(
                " · sweep {}",
                esc(&out
                    .sweep
                    .iter()
                    .map(|a| format!("{}={}", a.key, a.values.join(",")))
                    .collect::<Vec<_>>()
                    .join(" "))
            )
        }
    );
    o.push_str("<h2>Summary</h2><table><tr><th>configuration</th><th>P(dry)</th><th>dry day p50</th><th>pool end p5</th><th>p50</th><th>p95</th><th>free</th><th>partial</th><th>gated</th><th>absorbed</th><th>paid</th><th>credited</th><th>peak locked</th><th>violations</th></tr>");
    for x in &out.summaries {
        let last = |v: &Vec<u64>| v.last().map_or("-".to_owned(), |v| thousands(*v));
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{:.1}%</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}%</td><td>{:.1}%</td><td>{:.1}%</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td{}>{}</td></tr>",
            esc(&x.label),
            x.depletion_probability * 100.0,
            x.depletion_day_p50.map_or("-".to_owned(), |d| d.to_string()),
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
    o.push_str("</table><p class=\"muted\">Amounts are means per seed over the whole run. P(dry): share of seeds in which some request was gated because the pool was empty.</p>");
    if !out.sweep.is_empty() {
        o.push_str("<h2>Probability of depletion across the sweep</h2><div class=\"grid\">");
        o.push_str(&heatmaps(out));
        o.push_str("</div>");
    }
    let y_max = out
        .summaries
        .iter()
        .flat_map(|x| x.pool_p95.iter().copied())
        .chain([s.pool_initial_sats])
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let y_max = (y_max / tick_step(y_max, 4.0)).ceil() * tick_step(y_max, 4.0);
    let (w, h) = if out.summaries.len() == 1 { (900.0, 340.0) } else { (330.0, 200.0) };
    let _ = write!(
        o,
        r#"<h2>Pool balance by day</h2><p class="muted">End-of-day balance in sats: shaded p5–p95 over seeds, line the median; one scale for all.</p><div class="grid">"#
    );
    for x in &out.summaries {
        let _ = write!(o, "<figure>{}</figure>", pool_chart(x, y_max, s.pool_initial_sats, w, h));
    }
    o.push_str("</div>");
    let _ = write!(
        o,
        r#"<h2>Served by tier</h2><p class="muted key">Share of requests decided<span style="background:{FREE}"></span>free<span style="background:{PARTIAL}"></span>partial<span style="background:{GATED}"></span>gated (charged in full) — requests per seed in brackets.</p><div class="grid">"#
    );
    for x in &out.summaries {
        let _ = write!(o, "<figure>{}</figure>", tier_chart(x, if out.summaries.len() == 1 { 600.0 } else { 330.0 }));
    }
    o.push_str("</div>");
    let _ = write!(
        o,
        r#"<p class="muted">ledger-sim plan · {} · reference engine, invariants I1–I6 checked after every command.</p></body></html>"#,
        super::report::FORMAT
    );
    o.push('\n');
    o
}
