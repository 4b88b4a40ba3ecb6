//! The engine against scripted limits: the order of reads, asks and commits,
//! what is undone, and what is counted. No clock, no store, no sockets.

use std::sync::Mutex;

use futures::executor::block_on;

use super::*;
use crate::keys::KeySpec;
use crate::limits::spec::{Algorithm, LimitSpec, OnMissing, StoreSpec};

/// A limit that answers as told and writes down every step it is driven
/// through, in one log shared by all the limits of a test.
struct Scripted<'l> {
    name: &'static str,
    asks: bool,
    /// Whether a read admits.
    reads: bool,
    /// Whether a commit (or an ask) admits.
    commits: bool,
    log: &'l Mutex<Vec<String>>,
}

#[derive(Debug)]
struct Held;
impl Permit for Held {}

impl Scripted<'_> {
    fn answer(&self) -> Answer<Held, ()> {
        Answer {
            status: status(self.commits),
            known: true,
            permit: self.commits.then_some(Held),
            undo: self.commits.then_some(()),
        }
    }

    fn note(&self, step: &str) {
        if let Ok(mut log) = self.log.lock() {
            log.push(format!("{step} {}", self.name));
        }
    }
}

fn status(admitted: bool) -> KeyStatus {
    KeyStatus {
        admitted,
        remaining: if admitted { 5 } else { 0 },
        wait_ns: Some(1_000_000_000),
    }
}

impl Limit for Scripted<'_> {
    type Permit = Held;
    type Undo = ();

    fn asks(&self) -> bool {
        self.asks
    }

    fn check(&self, _: Key<'_>, _: u64) -> KeyStatus {
        self.note("read");
        status(self.reads)
    }

    fn commit(&self, _: Key<'_>, _: u64) -> Answer<Held, ()> {
        self.note("commit");
        self.answer()
    }

    async fn ask(&self, _: Key<'_>, _: u64) -> Answer<Held, ()> {
        self.note("ask");
        self.answer()
    }

    fn undo(&self, _: Key<'_>, _: (), _: u64) {
        self.note("undo");
    }
}

fn policy(name: &str, shadow: bool) -> Policy {
    Policy::new(LimitSpec {
        name: name.to_string(),
        algorithm: Algorithm::Concurrency { max: 5 },
        key: KeySpec::Global,
        shadow,
        on_missing: OnMissing::Shared,
        status: 429,
        store: StoreSpec::Local,
        max_keys: 16,
    })
}

/// `(name, asks, reads, commits, shadow)` of each limit → the verdict and
/// the log of steps.
fn run(limits: &[(&'static str, bool, bool, bool, bool)]) -> (Verdict<Held>, Vec<String>) {
    let log = Mutex::new(Vec::new());
    let scripted: Vec<Scripted> = limits
        .iter()
        .map(|&(name, asks, reads, commits, _)| Scripted {
            name,
            asks,
            reads,
            commits,
            log: &log,
        })
        .collect();
    let policies: Vec<Policy> = limits
        .iter()
        .map(|&(name, .., shadow)| policy(name, shadow))
        .collect();
    let entries: Vec<Entry<Scripted>> = scripted
        .iter()
        .zip(&policies)
        .map(|(limit, policy)| Entry {
            policy,
            limit,
            value: Some(b"k"),
            class: Priority::Default,
        })
        .collect();
    let verdict = block_on(admit(&entries, 0));
    drop(entries);
    drop(scripted);
    (verdict, log.into_inner().unwrap_or_default())
}

const A: Option<Decision> = Some(Decision::Admitted);
const R: Option<Decision> = Some(Decision::Rejected);
const S: Option<Decision> = Some(Decision::ShadowRejected);

#[test]
fn a_refusal_at_the_read_commits_nothing_and_counts_only_the_refuser() {
    let (v, log) = run(&[
        ("a", false, true, true, false),
        ("b", false, false, true, false),
        ("c", false, false, true, false),
    ]);
    assert_eq!(v.outcome.index(), Some(1));
    assert_eq!(log, ["read a", "read b", "read c"]);
    // `a` was only read, `c` refused too but did not decide the answer.
    assert_eq!(v.decisions.as_slice(), [None, R, None]);
}

#[test]
fn a_failed_commit_undoes_the_commits_before_it_and_they_count_nothing() {
    let (v, log) = run(&[
        ("a", false, true, true, false),
        ("b", false, true, false, false),
        ("c", false, true, true, false),
    ]);
    assert_eq!(v.outcome.index(), Some(1));
    assert_eq!(
        log,
        ["read a", "read b", "read c", "commit a", "commit b", "undo a"]
    );
    assert_eq!(v.decisions.as_slice(), [None, R, None]);
    assert!(v.permits.is_empty(), "a's slot went back at once");
}

#[test]
fn shared_limits_are_asked_together_after_the_reads_and_before_any_commit() {
    let (v, log) = run(&[
        ("local", false, true, true, false),
        ("x", true, true, true, false),
        ("y", true, true, true, false),
    ]);
    assert!(v.is_admitted());
    assert_eq!(log, ["read local", "ask x", "ask y", "commit local"]);
    assert_eq!(v.decisions.as_slice(), [A, A, A]);
}

#[test]
fn a_refused_ask_gives_the_other_asks_back() {
    let (v, log) = run(&[
        ("local", false, true, true, false),
        ("x", true, true, true, false),
        ("y", true, true, false, false),
    ]);
    assert_eq!(v.outcome.index(), Some(2));
    assert_eq!(log, ["read local", "ask x", "ask y", "undo x"]);
    assert_eq!(v.decisions.as_slice(), [None, None, R]);
}

#[test]
fn a_local_refusal_after_the_asks_gives_them_back() {
    let (v, log) = run(&[
        ("local", false, true, false, false),
        ("x", true, true, true, false),
    ]);
    assert_eq!(v.outcome.index(), Some(0));
    assert_eq!(log, ["read local", "ask x", "commit local", "undo x"]);
    assert_eq!(v.decisions.as_slice(), [R, None]);
}

#[test]
fn shadow_refusals_are_counted_whatever_the_request_becomes() {
    // Refused at the read by an enforced limit: the shadow one still says it
    // would have refused.
    let (v, _) = run(&[
        ("shadow", false, false, false, true),
        ("enforced", false, false, true, false),
    ]);
    assert_eq!(v.outcome.index(), Some(1));
    assert_eq!(v.decisions.as_slice(), [S, R]);

    // A shadow limit that refuses at its commit lets the request through,
    // and is not advertised.
    let (v, log) = run(&[
        ("shadow", false, true, false, true),
        ("enforced", false, true, true, false),
    ]);
    assert!(v.is_admitted());
    assert_eq!(v.decisions.as_slice(), [S, A]);
    assert_eq!(log.last().map(String::as_str), Some("commit enforced"));
    assert_eq!(v.ratelimit.map(|i| i.name), Some("enforced"));

    // A shadow limit that admitted and was then rolled back counts nothing.
    let (v, _) = run(&[
        ("shadow", false, true, true, true),
        ("enforced", false, true, false, false),
    ]);
    assert_eq!(v.decisions.as_slice(), [None, R]);
}

#[test]
fn one_limit_is_committed_without_a_read() {
    let (v, log) = run(&[("only", false, false, true, false)]);
    assert!(v.is_admitted());
    assert_eq!(log, ["commit only"]);
    let (v, log) = run(&[("only", true, false, false, false)]);
    assert_eq!(log, ["ask only"]);
    assert_eq!(v.decisions.as_slice(), [R]);
}

/// The review's case, on the real local limits: `[per_ip (capacity 1),
/// per_key]`, ten requests. What is counted is what was committed.
#[test]
fn ten_requests_over_a_capacity_of_one_count_one_admission_each() {
    use crate::limits::tests::spec;
    use crate::limits::Limiter;
    let per_ip = Limiter::new(spec(
        "per_ip",
        Algorithm::TokenBucket {
            capacity: 1.0,
            fill_rate: 0.001,
        },
    ));
    let per_key = Limiter::new(spec(
        "per_key",
        Algorithm::TokenBucket {
            capacity: 1000.0,
            fill_rate: 1000.0,
        },
    ));
    let mut counts = [[0u32; 3]; 2];
    for _ in 0..10 {
        let entries = [
            per_ip.entry(Some(b"10.0.0.1"), Priority::Default),
            per_key.entry(Some(b"key"), Priority::Default),
        ];
        let v = block_on(admit(&entries, 1_000_000_000));
        for (limit, d) in counts.iter_mut().zip(&v.decisions) {
            match d {
                Some(Decision::Admitted) => limit[0] += 1,
                Some(Decision::Rejected) => limit[1] += 1,
                Some(Decision::ShadowRejected) => limit[2] += 1,
                None => {}
            }
        }
    }
    assert_eq!(counts, [[1, 9, 0], [1, 0, 0]]);
}

impl Outcome {
    fn index(self) -> Option<usize> {
        match self {
            Outcome::Rejected { index, .. } => Some(index),
            Outcome::Admitted => None,
        }
    }
}
