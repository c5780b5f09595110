//! Model-based check of the messaging guarantees under adversarial interleavings.
//!
//! Two senders, two receivers (one acknowledging with `after`, one polling plainly) and the
//! cleanup run concurrently, one store call at a time, in an order proptest chooses (see
//! [`crate::interleave`]). Between steps, time passes and tasks die. Sends may carry an
//! idempotency key and are then retried until they get a final answer; the plain receiver's
//! answers sometimes fail to render (the component failing after the domain answered).
//! Members that stay silent expire and register again. The group's cap is tiny, so trims
//! are constant. Then everything settles and, for every receiver:
//!
//! - nothing is delivered twice, nothing refused is ever delivered, and each sender's
//!   messages arrive in the order they were sent;
//! - every acknowledged message it was owed is delivered or inside a range it was told it
//!   missed (delivered + reported missing = acknowledged);
//! - once a cleanup pass completes, the group accepts sends again (no wedge).

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;
use proptest::test_runner::{RngSeed, TestRunner};
use serde_json::json;

use super::log::{Received, Sent};
use super::members::{self, Registration};
use super::testing::{ObjectStore, raw};
use super::*;
use crate::env::testing::FakeEnv;
use crate::interleave::{self, Choice, Ended, SteppedStore, Task};
use crate::ratelimit::{DEFAULT_LOGIN_FAILURES, DEFAULT_REQUESTS, Limits};
use crate::store::{KvStore, MemoryStore};

const T0: u64 = 1_800_000_000_000;
const CAP: u64 = 4;
const SENDERS: [&str; 2] = ["s0", "s1"];
const RECEIVERS: [&str; 2] = ["r0", "r1"];
const OWNER: &str = "w";
const GROUP: &str = "g";

fn limits() -> LogLimits {
    LogLimits {
        bucket_ms: 1_000,
        cap: CAP,
        max_clients: 100,
        // one or two messages a page
        max_receive_bytes: 300,
    }
}

fn settings(budget: usize) -> Settings {
    Settings {
        client_timeout_ms: 30_000,
        retention_ms: 900_000,
        max_messages_per_group: CAP,
        bucket_ms: 1_000,
        budget,
        limits: Limits {
            requests: DEFAULT_REQUESTS,
            login_failures: DEFAULT_LOGIN_FAILURES,
            user_login_failures: DEFAULT_LOGIN_FAILURES,
        },
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// A sender sends its next message (or retries the pending one); keyed or not, and
    /// whether the answer is lost on the way (a keyed sender then retries).
    Send(usize, bool, bool),
    /// A receiver polls: limit, and (plain receiver only) whether rendering the answer fails.
    Poll(usize, usize, bool),
    Cleanup(usize),
    /// A client registers again (a heartbeat): 0-1 senders, 2-3 receivers.
    Register(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize, any::<bool>(), prop::bool::weighted(0.25))
            .prop_map(|(s, k, lost)| Op::Send(s, k, lost)),
        4 => (0..2usize, 1..4usize, prop::bool::weighted(0.2)).prop_map(|(r, l, f)| Op::Poll(r, l, f)),
        2 => (1..12usize).prop_map(Op::Cleanup),
        1 => (0..4usize).prop_map(Op::Register),
    ]
}

fn choice() -> impl Strategy<Value = Choice> {
    prop_oneof![
        12 => (0..8usize).prop_map(Choice::Run),
        1 => (0..8usize).prop_map(Choice::Crash),
        1 => prop_oneof![Just(1_000u64), Just(6_000), Just(12_000)].prop_map(Choice::Wait),
    ]
}

#[derive(Debug)]
enum Outcome {
    Sent(Result<Sent, ApiError>),
    Polled(Result<Received, ApiError>),
    Cleaned,
    Registered(Result<Registration, ApiError>),
}

/// What the clients know, and what the oracle checks against.
#[derive(Default)]
struct Model {
    next_n: [u64; 2],
    /// The message a sender is still trying to get an answer for: (n, idempotency key).
    pending: [Option<(u64, String)>; 2],
    acked: HashMap<(usize, u64), u64>,
    /// Crashed unkeyed sends: stored or not, nobody knows.
    maybe: HashSet<(usize, u64)>,
    refused: HashSet<(usize, u64)>,
    after: [u64; 2],
    delivered: [Vec<(usize, u64, u64)>; 2],
    missed: [Vec<(u64, u64)>; 2],
    /// The join point of each receiver's current membership.
    joined: [u64; 2],
    /// Clients told they expired: they register before doing anything else.
    expired: HashSet<usize>,
    replays: usize,
}

fn client_name(c: usize) -> &'static str {
    if c < 2 { SENDERS[c] } else { RECEIVERS[c - 2] }
}

fn decode(m: &StoredMessage) -> (usize, u64) {
    let v = m.value();
    (
        v[0].as_u64().unwrap_or(99) as usize,
        v[1].as_u64().unwrap_or(u64::MAX),
    )
}

impl Model {
    fn record_poll(&mut self, r: usize, batch: &Received) {
        for m in &batch.messages {
            let (s, n) = decode(m);
            self.delivered[r].push((s, n, m.seq));
        }
        if let Some(missed) = batch.missed {
            self.missed[r].push((missed.first_seq, missed.last_seq));
        }
        self.after[r] = batch.next_after;
    }

    fn record_send(&mut self, s: usize, n: u64, keyed: bool, lost: bool, result: Ended<Outcome>) {
        match result {
            Ended::Done(Outcome::Sent(Ok(sent))) => {
                if let Some(seq) = self.acked.insert((s, n), sent.seq) {
                    assert_eq!(seq, sent.seq, "a replay answers the original seq");
                    self.replays += 1;
                }
                if !(keyed && lost) {
                    self.pending[s] = None;
                }
            }
            Ended::Done(Outcome::Sent(Err(e))) => {
                if e.code == "client_expired" {
                    self.expired.insert(s);
                }
                let retryable = matches!(e.status, 409 | 410 | 503);
                if !(keyed && retryable) {
                    assert!(
                        !self.acked.contains_key(&(s, n)),
                        "refused after 202: {e:?}"
                    );
                    self.refused.insert((s, n));
                    self.pending[s] = None;
                }
            }
            Ended::Crashed if !keyed => {
                self.maybe.insert((s, n));
                self.pending[s] = None;
            }
            _ => {} // keyed and crashed: retried with the same key
        }
    }

    fn record_registration(&mut self, c: usize, result: &Result<Registration, ApiError>) {
        if let Ok(reg) = result {
            self.expired.remove(&c);
            if c >= 2 {
                let r = c - 2;
                match reg {
                    Registration::Created(rec) => {
                        self.joined[r] = rec.joined_after;
                        self.after[r] = rec.cursor;
                    }
                    Registration::Resumed(rec) => {
                        assert_eq!(rec.joined_after, self.joined[r], "resumed where it joined");
                    }
                    Registration::Refreshed(_) => {}
                }
            }
        }
    }
}

/// One task per op, against the stepped store.
fn task<'a>(
    store: &'a SteppedStore<'a>,
    env: &'a FakeEnv,
    model: &Model,
    op: &Op,
    local: bool,
) -> (Task<'a, Outcome>, bool) {
    let m = Messaging::new(store, env).with_limits(limits());
    match *op {
        Op::Send(s, ..) => {
            let (n, key) = model.pending[s].clone().expect("prepared");
            let key = (!key.is_empty()).then_some(key);
            let task: Task<'a, Outcome> = Box::pin(async move {
                let payload = raw(json!([s, n]));
                Outcome::Sent(
                    m.send(OWNER, SENDERS[s], GROUP, payload, key.as_deref())
                        .await,
                )
            });
            (task, true)
        }
        Op::Poll(r, limit, fail) => {
            let after = (r == 0).then_some(model.after[0]);
            let task: Task<'a, Outcome> = Box::pin(async move {
                let fails = fail && r == 1;
                Outcome::Polled(
                    m.receive(OWNER, RECEIVERS[r], GROUP, after, limit, |batch| {
                        if fails {
                            Err(ApiError::new(500, "component_failed", "render failed"))
                        } else {
                            Ok(batch.clone())
                        }
                    })
                    .await,
                )
            });
            // A plain poll whose answer is lost after the commit is lost by definition: only
            // the acknowledging receiver may die mid-way.
            (task, r == 0)
        }
        Op::Cleanup(budget) => {
            let task: Task<'a, Outcome> = Box::pin(async move {
                let cleanup = Cleanup::new(store, env, settings(budget));
                if local {
                    let _ = cleanup.group(GROUP).await;
                } else {
                    let _ = cleanup.run().await;
                }
                Outcome::Cleaned
            });
            (task, true)
        }
        Op::Register(c) => {
            let task: Task<'a, Outcome> = Box::pin(async move {
                Outcome::Registered(m.register(OWNER, client_name(c), GROUP).await)
            });
            (task, true)
        }
    }
}

fn trace() -> bool {
    std::env::var_os("MODEL_TRACE").is_some()
}

fn check(model: &Model) -> Result<(), TestCaseError> {
    if trace() {
        eprintln!("replays {}", model.replays);
        eprintln!(
            "acked {:?}\nmaybe {:?}\nrefused {:?}\ndelivered {:?}\nmissed {:?}\njoined {:?}",
            model.acked, model.maybe, model.refused, model.delivered, model.missed, model.joined
        );
    }
    for r in 0..2 {
        let delivered = &model.delivered[r];
        let mut seen = HashSet::new();
        let mut last_n: [Option<u64>; 2] = [None, None];
        for &(s, n, seq) in delivered {
            prop_assert!(seen.insert((s, n)), "r{r} got s{s}#{n} twice");
            prop_assert!(
                !model.refused.contains(&(s, n)),
                "r{r} got refused s{s}#{n}"
            );
            match model.acked.get(&(s, n)) {
                Some(&acked_seq) => prop_assert_eq!(acked_seq, seq, "r{} s{}#{}", r, s, n),
                None => prop_assert!(model.maybe.contains(&(s, n)), "r{r} got unsent s{s}#{n}"),
            }
            prop_assert!(
                last_n[s].is_none_or(|prev| prev < n),
                "r{r}: s{s}#{n} after #{:?}",
                last_n[s]
            );
            last_n[s] = Some(n);
            let in_missed = model.missed[r].iter().any(|&(a, b)| (a..=b).contains(&seq));
            prop_assert!(!in_missed, "r{r}: seq {seq} delivered and reported missed");
        }
        for (&(s, n), &seq) in &model.acked {
            if seq <= model.joined[r] {
                continue;
            }
            let got = seen.contains(&(s, n));
            let told = model.missed[r].iter().any(|&(a, b)| (a..=b).contains(&seq));
            prop_assert!(got || told, "r{r} lost s{s}#{n} (seq {seq}) silently");
        }
    }
    Ok(())
}

async fn complete_cleanup(
    store: &dyn KvStore,
    env: &FakeEnv,
    local: bool,
) -> Result<(), TestCaseError> {
    for _ in 0..200 {
        let cleanup = Cleanup::new(store, env, settings(50));
        let report = if local {
            cleanup.group(GROUP).await?.report
        } else {
            cleanup.run().await?
        };
        if report.complete {
            return Ok(());
        }
        if trace() {
            eprintln!("incomplete: {report:?}");
        }
        // An in-flight slot holds a trim back until the grace has passed.
        env.advance(GAP_GRACE_MS / 2);
    }
    Err(TestCaseError::fail("cleanup never completes"))
}

/// `local`: the group is its own storage and cleans itself up (Workers' objects), instead of
/// the scheduled pass over the global indexes.
fn run_model(rounds: Vec<Vec<Op>>, choices: Vec<Choice>, local: bool) -> Result<(), TestCaseError> {
    let memory = MemoryStore::new();
    let view = ObjectStore::group(&memory, GROUP);
    let backing: &dyn KvStore = if local { &view } else { &memory };
    let store = SteppedStore::new(backing);
    let env = FakeEnv::at(T0);
    let mut model = Model::default();
    let direct = Messaging::new(backing, &env).with_limits(limits());
    for c in 0..4 {
        let reg = pollster::block_on(direct.register(OWNER, client_name(c), GROUP));
        model.record_registration(c, &reg);
    }
    let mut choices = choices.into_iter();
    for round in rounds {
        // Clients told they expired register first; each client does one thing at a time.
        let mut ops: Vec<Op> = model.expired.iter().map(|&c| Op::Register(c)).collect();
        let mut busy: HashSet<usize> = model.expired.clone();
        for op in round {
            let client = match op {
                Op::Send(s, ..) => Some(s),
                Op::Poll(r, ..) => Some(r + 2),
                Op::Register(c) => Some(c),
                Op::Cleanup(_) => None,
            };
            if client.is_some_and(|c| !busy.insert(c)) {
                continue;
            }
            if let Op::Send(s, keyed, _) = op
                && model.pending[s].is_none()
            {
                let n = model.next_n[s];
                model.next_n[s] += 1;
                let key = if keyed {
                    format!("k{s}-{n}")
                } else {
                    String::new()
                };
                model.pending[s] = Some((n, key));
            }
            ops.push(op);
        }
        let tasks = ops
            .iter()
            .map(|op| task(&store, &env, &model, op, local))
            .collect();
        let ended = interleave::run(tasks, &mut choices, |ms| env.advance(ms));
        for (op, result) in ops.iter().zip(ended) {
            if trace() {
                let shown = match &result {
                    Ended::Done(o) => format!("{o:?}"),
                    Ended::Crashed => "crashed".into(),
                };
                eprintln!("{op:?} -> {shown}");
            }
            match (op, result) {
                (Op::Send(s, _, lost), result) => {
                    let (n, key) = model.pending[*s].clone().expect("prepared");
                    model.record_send(*s, n, !key.is_empty(), *lost, result);
                }
                (Op::Poll(r, ..), Ended::Done(Outcome::Polled(Ok(batch)))) => {
                    model.record_poll(*r, &batch)
                }
                (Op::Poll(r, ..), Ended::Done(Outcome::Polled(Err(e))))
                    if e.code == "client_expired" =>
                {
                    model.expired.insert(r + 2);
                }
                (Op::Register(c), Ended::Done(Outcome::Registered(reg))) => {
                    model.record_registration(*c, &reg)
                }
                _ => {}
            }
        }
        env.advance(500);
    }

    // Settle: time passes beyond every grace period, pending sends get their final answer,
    // cleanup runs to completion, and each receiver drains what is left.
    env.advance(GAP_GRACE_MS * 2 + members::EXPIRY_LEASE_MS);
    let settle = async {
        // A pass that died mid-way is finished by the next one.
        complete_cleanup(backing, &env, local).await?;
        for c in 0..4 {
            let reg = direct.register(OWNER, client_name(c), GROUP).await;
            model.record_registration(c, &reg);
        }
        for (s, sender) in SENDERS.iter().enumerate() {
            for _ in 0..10 {
                let Some((n, key)) = model.pending[s].clone() else {
                    break;
                };
                let sent = direct
                    .send(OWNER, sender, GROUP, raw(json!([s, n])), Some(&key))
                    .await;
                if trace() {
                    eprintln!("settle: s{s}#{n} -> {sent:?}");
                }
                model.record_send(s, n, true, false, Ended::Done(Outcome::Sent(sent)));
            }
            prop_assert!(model.pending[s].is_none(), "s{s} never got an answer");
        }
        complete_cleanup(backing, &env, local).await?;
        // No wedge: after a complete pass, the group takes a send, or refuses one and takes
        // it after the next complete pass (a send that died between taking its number and
        // flagging it leaves the group full but unflagged, and the refusal flags it).
        let reg = direct.register(OWNER, SENDERS[0], GROUP).await;
        model.record_registration(0, &reg);
        let n = model.next_n[0];
        model.next_n[0] += 1;
        let payload = || raw(json!([0, n]));
        let mut sent = direct.send(OWNER, SENDERS[0], GROUP, payload(), None).await;
        if sent.as_ref().is_err_and(|e| e.code == "group_backlog_full") {
            complete_cleanup(backing, &env, local).await?;
            let reg = direct.register(OWNER, SENDERS[0], GROUP).await;
            model.record_registration(0, &reg);
            sent = direct.send(OWNER, SENDERS[0], GROUP, payload(), None).await;
        }
        if trace() && sent.is_err() {
            let h = head(backing, GROUP).await?;
            let t = tail(backing, GROUP).await?;
            eprintln!("wedge: head {h} tail {t} keys {:?}", memory.keys());
        }
        prop_assert!(sent.is_ok(), "wedged after a complete cleanup: {:?}", sent);
        model.record_send(0, n, false, false, Ended::Done(Outcome::Sent(sent)));
        // Gaps left by crashed sends are sealed once a later message is past the grace.
        env.advance(GAP_GRACE_MS * 2);
        let head = head(backing, GROUP).await?;
        for (r, receiver) in RECEIVERS.iter().enumerate() {
            for _ in 0..500 {
                let after = (r == 0).then_some(model.after[0]);
                let batch = match direct.poll(OWNER, receiver, GROUP, after, 3).await {
                    Err(e) if e.code == "client_expired" => {
                        let reg = direct.register(OWNER, receiver, GROUP).await;
                        model.record_registration(r + 2, &reg);
                        continue;
                    }
                    other => other?,
                };
                let done = batch.messages.is_empty() && batch.next_after >= head;
                model.record_poll(r, &batch);
                if done {
                    break;
                }
            }
        }
        Ok::<(), TestCaseError>(())
    };
    pollster::block_on(settle)?;
    check(&model)
}

/// The schedules explored: the same every run, from 40 seeds (one seed alone missed two
/// defects that others found); PROPTEST_RNG_SEED explores another.
fn seeds() -> Vec<u64> {
    match std::env::var("PROPTEST_RNG_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(seed) => vec![seed],
        None => (1..=40).collect(),
    }
}

fn explore(local: bool) {
    let strategy = (
        prop::collection::vec(prop::collection::vec(op(), 1..5), 1..25),
        prop::collection::vec(choice(), 0..600),
    );
    for seed in seeds() {
        let mut runner = TestRunner::new(ProptestConfig {
            cases: 400,
            rng_seed: RngSeed::Fixed(seed),
            failure_persistence: None,
            ..ProptestConfig::default()
        });
        if let Err(e) = runner.run(&strategy, |(rounds, choices)| {
            run_model(rounds, choices, local)
        }) {
            panic!("seed {seed}: {e}");
        }
    }
}

#[test]
fn delivered_plus_missed_is_acknowledged_under_any_interleaving() {
    explore(false);
}

#[test]
fn the_same_where_the_group_cleans_itself_up() {
    explore(true);
}
