//! `plan --fit` on histories as real exports come: written twice over, with days missing, in
//! seconds instead of milliseconds. What the reader refuses exits 2 naming where; what the fit
//! warns of is said on stderr and at the top of the scenario, where a reader of either sees it.

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
fn rows_written_twice_exit_two_unless_allowed_and_then_are_said() {
    let dir = scratch("plan-fit-repeats");
    let mut lines = fixture_lines();
    let again = lines[500].clone();
    lines.insert(501, again);
    write(&dir, "twice.csv", &lines);
    let (code, stdout, err) = sim_in(dir.as_ref(), &["plan", "--fit", "twice.csv", "--out", "s.toml"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("twice.csv: 1 row repeats an earlier row in every field (the first: line 502 repeats line 501)"),
        "{err}"
    );
    assert!(err.contains("--allow-duplicate-rows"), "{err}");
    assert!(stdout.is_empty() && !std::path::Path::new(&format!("{dir}/s.toml")).exists());

    let args = ["plan", "--fit", "twice.csv", "--allow-duplicate-rows", "--out", "s.toml"];
    let (code, _, err) = sim_in(dir.as_ref(), &args);
    assert_eq!(code, 0, "{err}");
    let said =
        "WARNING: 1 row repeats an earlier row in every field (the first: line 502 repeats line 501), fitted as \
                they are (--allow-duplicate-rows).";
    assert!(err.contains(&format!("twice.csv: {said}")), "{err}");
    let toml = std::fs::read_to_string(format!("{dir}/s.toml")).unwrap();
    assert!(toml.contains("# WARNING: 1 row repeats an earlier row"), "{toml}");
    // The scenario it wrote plans as it is.
    let (code, _, err) = sim_in(dir.as_ref(), &["plan", "s.toml", "--seeds", "1", "--days", "2"]);
    assert_eq!(code, 0, "{err}");

    // The flag belongs to --fit.
    let fixture = root().join("fixtures/history/fit-small.toml");
    let (code, _, err) = sim_in(dir.as_ref(), &["plan", fixture.to_str().unwrap(), "--allow-duplicate-rows"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--allow-duplicate-rows is for --fit"), "{err}");
}

#[test]
fn days_missing_from_the_export_are_said_on_stderr_and_in_the_scenario() {
    let dir = scratch("plan-fit-gap");
    let lines = fixture_lines();
    // Days 10 to 19 of the fixture (it starts at 2024-01-01T00:00:00Z).
    let (from, to) = (1_704_067_200_000u64 + 10 * 86_400_000, 1_704_067_200_000u64 + 20 * 86_400_000);
    let kept: Vec<String> = lines
        .into_iter()
        .filter(|l| l.split(',').next().unwrap().parse::<u64>().map_or(true, |t| !(from..to).contains(&t)))
        .collect();
    write(&dir, "gap.csv", &kept);
    let (code, toml, err) = sim_in(dir.as_ref(), &["plan", "--fit", "gap.csv"]);
    assert_eq!(code, 0, "{err}");
    let said = "WARNING: 10 of the 28 days have no request: 2024-01-11 to 2024-01-20 (days 10 to 19).";
    assert!(err.contains(&format!("gap.csv: {said}")), "{err}");
    assert!(
        toml.contains("# WARNING: 10 of the 28 days have no request: 2024-01-11 to 2024-01-20 (days 10 to"),
        "{toml}"
    );
    assert!(toml.find("# WARNING").unwrap() < toml.find("\nname = ").unwrap(), "at the top:\n{toml}");
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

/// The operator's audit, end to end: an unpaid session with an actual cost is read; a user who
/// jumps two tiers overnight, and a free request above its tier's default budget, are said on
/// stderr and at the top of the scenario, which plans as it is; times written as ISO 8601 or in
/// scientific notation exit 2 with their own hint, and nothing is written.
#[test]
fn audit_histories_are_read_warned_of_or_refused_with_a_hint() {
    let dir = scratch("plan-fit-audit");
    let header = "time_ms,user,tier,kind,estimate_sats,actual_sats,outcome,paid".to_owned();
    let lines = [
        header.clone(),
        "1741564801000,a,new,session,40,35,gated,false".to_owned(),
        "1741564802000,b,established,job,310,290,free,".to_owned(),
        "1741651201000,a,trusted,job,30,25,free,".to_owned(),
        "1741651202000,b,established,job,30,25,free,".to_owned(),
    ];
    write(&dir, "audit.csv", &lines);
    let (code, toml, err) = sim_in(dir.as_ref(), &["plan", "--fit", "audit.csv"]);
    assert_eq!(code, 0, "{err}");
    for said in [
        "audit.csv: WARNING: 1 tier change(s) between a user's requests that the planner's model cannot make",
        "The first: user a, new on line 2 (2025-03-10, day 0), then trusted on line 4 (2025-03-11, day 1).",
        "audit.csv: WARNING: the history gives users free requests larger than the default daily budget",
        "established 50 to 310 (a free request of 310 sats on line 3)",
    ] {
        assert!(err.contains(said), "{said}\n{err}");
    }
    assert!(toml.contains("# WARNING: 1 tier change(s)") && toml.contains("# WARNING: the history gives users"));
    assert!(toml.contains("\nestablished = 310  # raised from the default 50"), "{toml}");
    std::fs::write(format!("{dir}/audit.toml"), &toml).unwrap();
    let (code, _, err) = sim_in(dir.as_ref(), &["plan", "audit.toml", "--seeds", "1", "--days", "2"]);
    assert_eq!(code, 0, "{err}");

    for (time, hint) in [
        ("2025-03-10T12:00:00Z", "date -d '2025-03-10T12:00:00Z' +%s%3N (this one is 1741608000000)"),
        ("1.7e12", "scientific notation"),
        ("1741608000000000000", "nanoseconds (19 digits)? divide by 1000000"),
    ] {
        write(&dir, "bad.csv", &[header.clone(), format!("{time},a,new,job,25,21,free,")]);
        let (code, stdout, err) = sim_in(dir.as_ref(), &["plan", "--fit", "bad.csv", "--out", "bad.toml"]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(&format!("bad.csv:2: time_ms = \"{time}\": ")) && err.contains(hint), "{err}");
        assert!(stdout.is_empty() && !std::path::Path::new(&format!("{dir}/bad.toml")).exists());
    }
}
