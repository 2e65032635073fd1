//! `plan --fit` on histories as real exports come: in seconds instead of milliseconds. What
//! the reader refuses exits 2 naming where.

use crate::common::{root, scratch, sim_in};

/// The committed fixture's lines (header first).
fn fixture_lines() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("fixtures/history/fit-small.csv")).unwrap();
    text.lines().map(str::to_owned).collect()
}

fn write(dir: &str, name: &str, lines: &[String]) {
    std::fs::write(format!("{dir}/{name}"), lines.join("\n") + "\n").unwrap();
}

#[test]
fn a_history_in_seconds_exits_two_naming_the_date_it_reads_as() {
    let dir = scratch("plan-fit-seconds");
    let lines: Vec<String> = fixture_lines()
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                return l;
            }
            let (time, rest) = l.split_once(',').unwrap();
            format!("{},{rest}", time.parse::<u64>().unwrap() / 1000)
        })
        .collect();
    write(&dir, "seconds.csv", &lines);
    let (code, stdout, err) = sim_in(dir.as_ref(), &["plan", "--fit", "seconds.csv"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(
            "seconds.csv:2: time_ms = \"1704067838\": reads as 1970-01-20T17:21:07.838Z, before Bitcoin's genesis \
             block (2009-01-03T18:15:05Z), when no sat had been paid: time_ms is milliseconds since the epoch (UTC); \
             seconds? multiply by 1000"
        ),
        "{err}"
    );
    assert!(stdout.is_empty(), "{stdout}");
}
