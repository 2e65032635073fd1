//! More seeds than a report lists (10,000 per invariant) break an invariant: the report still
//! counts them all, on the terminal, in JSON and in JUnit, and shards merge to the report of
//! one run over the range, byte for byte but for the speed.

use crate::common::{json, root, scratch, sim_in};

/// The seed engine on the small CI scenario breaks I2 on nearly every seed.
const RUN: [&str; 6] = ["run", "--engine", "seed", "--scenario", "fixtures/scenarios/ci-small.toml", "--seeds"];
const SEEDS: &str = "0..10400";

fn run(extra: &[&str]) -> (i32, String, String) {
    let mut args = RUN.to_vec();
    args.push(SEEDS);
    args.extend(extra);
    sim_in(&root(), &args)
}

#[test]
fn seeds_beyond_the_list_are_counted_and_shards_merge_to_the_whole() {
    let dir = scratch("breaking-count");
    let (code, text, _) = run(&[]);
    assert_eq!(code, 1);
    let (code, whole, err) = run(&["--json"]);
    assert_eq!(code, 1, "{err}");
    let mut whole = json(&whole);
    let mut shards = Vec::new();
    for i in ["1/2", "2/2"] {
        let (code, out, err) = run(&["--shard", i, "--json"]);
        assert_eq!(code, 1, "{err}");
        let path = format!("{dir}/shard-{}.json", &i[..1]);
        std::fs::write(&path, &out).unwrap();
        shards.push((path, json(&out)));
    }
    // Each shard's 5,200 seeds are all listed: together they are the true count.
    let listed = |r: &serde_json::Value, inv: &str| -> (usize, u64) {
        let v = r["violations"].as_array().unwrap().iter().find(|v| v["invariant"] == inv).unwrap();
        (v["seeds"].as_array().unwrap().len(), v.get("seeds_unlisted").map_or(0, |n| n.as_u64().unwrap()))
    };
    let truth: usize = shards.iter().map(|(_, r)| listed(r, "I2").0).sum();
    assert!(truth > 10_000, "the scenario no longer breaks I2 on more than 10,000 of {SEEDS}: {truth}");
    assert!(shards.iter().all(|(_, r)| listed(r, "I2").1 == 0));
    assert_eq!(listed(&whole, "I2"), (10_000, (truth - 10_000) as u64));
    assert!(text.contains(&format!("VIOLATION I2 conservation (seed 0; {truth} seed(s) broke it)")), "{text}");

    let junit = format!("{dir}/merged.xml");
    let (code, merged, err) = sim_in(&root(), &["merge-runs", &shards[0].0, &shards[1].0, "--junit", &junit]);
    assert_eq!(code, 1, "{err}");
    let mut merged = json(&merged);
    assert!(std::fs::read_to_string(&junit).unwrap().contains(&format!("({truth} seed(s) broke it)")));
    for r in [&mut whole, &mut merged] {
        let o = r.as_object_mut().unwrap();
        for k in ["steps_per_sec", "shards"] {
            o.remove(k);
        }
    }
    assert_eq!(merged, whole);
}
