//! What an exploration records, and the report made from it.
//!
//! The explorer records the graph it explored rather than counts: per
//! decision state (by key) and choice, where the choice leads (the next
//! decision state, an outcome or a failure) and what it costs. A state
//! explored again with a larger budget records the same choices and more;
//! so whichever order workers (or shards) explored in, the union of their
//! records is one graph: every reachable state with the choices its
//! largest budget affords. The report is a function of that graph alone,
//! hence the same on any number of threads or shards:
//!
//! * states: the distinct decision states;
//! * schedules: every choice that ends in an outcome, a failure or a
//!   state reached before (each state's first arrival continues);
//! * per outcome, the choices that end in it, and the smallest schedule
//!   that reaches it within the bound ([`schedule_rank`]), found by a
//!   shortest-path search over (state, budget left).

use crate::scenario::Observation;
use crate::sched::Schedule;
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

/// Where a run from a decision (or from the start) ends up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// The next decision state, by key.
    State(u64),
    /// The run finished; the observation by its digest
    /// ([`StateGraph::observations`]).
    Outcome(u64),
    /// The run broke an invariant or got stuck.
    Failure(String),
}

/// A run from one decision to the next: where it ends, and the structural
/// properties broken on the way (property, message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leg {
    /// Where it ends.
    pub end: End,
    /// The structural findings (with `check_structure`).
    pub findings: Vec<(String, String)>,
}

/// One choice at a decision state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    /// Preemptions it costs (0 without a bound).
    pub cost: usize,
    /// Where it leads.
    pub leg: Leg,
}

/// One distinct outcome.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The observation of its example schedule.
    pub observation: Observation,
    /// How many choices (or the start) ended here.
    pub schedules: u64,
    /// The smallest schedule within the bound that reaches it
    /// (`schedule_rank`: fewest non-canonical choices, then fewest
    /// choices, then by the choices).
    pub example: Schedule,
}

/// What an exploration found.
#[derive(Clone, Debug, Default)]
pub struct Exploration {
    /// Distinct decision states visited.
    pub states: u64,
    /// Arrivals at an outcome, a failure or a state already reached (see
    /// `crate::state_graph`).
    pub schedules: u64,
    /// Distinct outcomes, by their smallest example schedule: the
    /// canonical schedule's outcome first.
    pub outcomes: Vec<Outcome>,
    /// Schedules that broke an invariant or got stuck, with the error.
    pub failures: Vec<(Schedule, String)>,
    /// With `check_structure`: per structural property broken (the text
    /// before its message's first `:`), the smallest schedule found that
    /// breaks it and the message.
    pub structure: BTreeMap<String, (Schedule, String)>,
    /// Whether every state was explored (`false` when the time limit
    /// stopped it).
    pub complete: bool,
}

/// The explored graph (see the module's documentation).
#[derive(Clone, Debug, Default)]
pub struct StateGraph {
    /// The run from the start to the first decision, and the preemption
    /// budget the exploration starts with (`usize::MAX` without a bound).
    pub origin: Option<(usize, Leg)>,
    /// Per decision state (key) and choice (its index among the runnable
    /// tasks): where it leads.
    pub choices: BTreeMap<(u64, usize), Choice>,
    /// The observations reached, by digest: the outcome key
    /// ([`crate::outcome_key`]) and the observation.
    pub observations: HashMap<u64, (String, Observation)>,
}

/// The order in which schedules count as smaller: fewer non-canonical
/// choices, then fewer choices, then by the choices themselves. The
/// canonical schedule (all first choices) comes first, and the order
/// survives extension (`a < b` implies `a + [c] < b + [c]`), which the
/// shortest-path search needs.
pub fn schedule_rank(schedule: &[usize]) -> (usize, usize, &[usize]) {
    let detours = schedule.iter().filter(|c| **c != 0).count();
    (detours, schedule.len(), schedule)
}

/// `a` before `b` by [`schedule_rank`].
pub fn schedule_cmp(a: &Schedule, b: &Schedule) -> Ordering {
    schedule_rank(&a.0).cmp(&schedule_rank(&b.0))
}

/// A schedule ordered by [`schedule_rank`].
#[derive(PartialEq, Eq)]
struct Ranked(Vec<usize>);

impl Ord for Ranked {
    fn cmp(&self, other: &Ranked) -> Ordering {
        schedule_rank(&self.0).cmp(&schedule_rank(&other.0))
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Ranked) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Keeps `candidate` if it ranks before what `slot` holds.
fn keep_smallest<V>(slot: &mut Found<V>, candidate: &[usize], value: impl FnOnce() -> V) {
    let smaller = slot
        .as_ref()
        .is_none_or(|(known, _)| schedule_rank(candidate) < schedule_rank(known));
    if smaller {
        *slot = Some((candidate.to_vec(), value()));
    }
}

/// The shortest-path search's queue: schedule, state, budget left.
type Queue = BinaryHeap<Reverse<(Ranked, u64, usize)>>;

/// The smallest schedule found so far and what it carries.
type Found<V> = Option<(Vec<usize>, V)>;

/// What the shortest-path search finds: the smallest schedule per outcome
/// key (with the digest of its observation), per failing choice and per
/// structural property.
#[derive(Default)]
struct Smallest {
    outcomes: HashMap<String, Found<u64>>,
    /// By the failing choice (`None`: the start).
    failures: HashMap<Option<(u64, usize)>, Found<String>>,
    structure: BTreeMap<String, Found<String>>,
}

impl StateGraph {
    /// Adds what another worker or shard recorded (in any order: the
    /// union does not depend on it).
    pub fn absorb(&mut self, other: StateGraph) {
        if self.origin.is_none() {
            self.origin = other.origin;
        }
        self.choices.extend(other.choices);
        for (digest, observation) in other.observations {
            self.observations.entry(digest).or_insert(observation);
        }
    }

    /// Records a choice.
    pub fn record(&mut self, state: u64, index: usize, choice: Choice) {
        self.choices.insert((state, index), choice);
    }

    /// The distinct decision states reached.
    pub fn states(&self) -> u64 {
        let ends = self
            .origin
            .iter()
            .map(|(_, leg)| leg)
            .chain(self.choices.values().map(|c| &c.leg));
        let states: HashSet<u64> = ends
            .filter_map(|leg| match leg.end {
                End::State(key) => Some(key),
                _ => None,
            })
            .collect();
        states.len() as u64
    }

    /// The report (see the module's documentation).
    pub fn report(&self, complete: bool) -> Exploration {
        let states = self.states();
        let legs = self
            .origin
            .iter()
            .map(|(_, leg)| leg)
            .chain(self.choices.values().map(|c| &c.leg));
        let arrivals = legs.clone().count() as u64;
        let mut reached: HashMap<&str, u64> = HashMap::new();
        for leg in legs {
            if let End::Outcome(digest) = &leg.end {
                *reached.entry(self.outcome_key(*digest)).or_default() += 1;
            }
        }
        let smallest = self.smallest();
        let mut outcomes: Vec<Outcome> = smallest
            .outcomes
            .into_iter()
            .filter_map(|(key, found)| {
                let (schedule, digest) = found?;
                Some(Outcome {
                    observation: self.observations[&digest].1.clone(),
                    schedules: reached[key.as_str()],
                    example: Schedule(schedule),
                })
            })
            .collect();
        outcomes.sort_by(|a, b| schedule_cmp(&a.example, &b.example));
        let mut failures: Vec<(Schedule, String)> = smallest
            .failures
            .into_values()
            .flatten()
            .map(|(s, message)| (Schedule(s), message))
            .collect();
        failures.sort_by(|a, b| schedule_cmp(&a.0, &b.0).then_with(|| a.1.cmp(&b.1)));
        let structure = smallest
            .structure
            .into_iter()
            .filter_map(|(property, found)| {
                let (s, message) = found?;
                Some((property, (Schedule(s), message)))
            })
            .collect();
        Exploration {
            states,
            // Every arrival ends a schedule but the first at each state,
            // which goes on.
            schedules: arrivals - states,
            outcomes,
            failures,
            structure,
            complete,
        }
    }

    fn outcome_key(&self, digest: u64) -> &str {
        &self.observations[&digest].0
    }

    /// The shortest-path search over (state, budget left) from the start,
    /// by [`schedule_rank`] (extension never makes a schedule smaller, so
    /// the first time a node is taken from the queue is the smallest).
    fn smallest(&self) -> Smallest {
        let mut found = Smallest::default();
        let Some((budget, origin)) = &self.origin else {
            return found;
        };
        let mut queue = Queue::new();
        let mut settled: HashSet<(u64, usize)> = HashSet::new();
        self.note_leg(&mut found, origin, &[], None, (*budget, &mut queue));
        while let Some(Reverse((Ranked(path), state, budget))) = queue.pop() {
            if !settled.insert((state, budget)) {
                continue;
            }
            for (&(_, index), choice) in self.choices.range((state, 0)..=(state, usize::MAX)) {
                if choice.cost > budget {
                    continue;
                }
                let mut next = path.clone();
                next.push(index);
                let left = budget - choice.cost;
                self.note_leg(
                    &mut found,
                    &choice.leg,
                    &next,
                    Some((state, index)),
                    (left, &mut queue),
                );
            }
        }
        found
    }

    /// Notes what `leg`, taken by schedule `path`, reaches.
    fn note_leg(
        &self,
        found: &mut Smallest,
        leg: &Leg,
        path: &[usize],
        from: Option<(u64, usize)>,
        (budget, queue): (usize, &mut Queue),
    ) {
        for (property, message) in &leg.findings {
            let slot = found.structure.entry(property.clone()).or_default();
            keep_smallest(slot, path, || message.clone());
        }
        match &leg.end {
            End::State(key) => queue.push(Reverse((Ranked(path.to_vec()), *key, budget))),
            End::Outcome(digest) => {
                let slot = found
                    .outcomes
                    .entry(self.outcome_key(*digest).to_string())
                    .or_default();
                keep_smallest(slot, path, || *digest);
            }
            End::Failure(message) => {
                let slot = found.failures.entry(from).or_default();
                keep_smallest(slot, path, || message.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leg(end: End) -> Leg {
        Leg {
            end,
            findings: Vec::new(),
        }
    }

    fn observation(name: &str) -> Observation {
        Observation {
            scenario: name.to_string(),
            ..Observation::default()
        }
    }

    /// Start -> A; A: choice 0 -> B, choice 1 (a preemption) -> B;
    /// B: choice 0 -> outcome x, choice 1 (a preemption) -> outcome y.
    fn diamond(budget: usize) -> StateGraph {
        let mut g = StateGraph {
            origin: Some((budget, leg(End::State(1)))),
            ..StateGraph::default()
        };
        for (i, cost) in [(0, 0), (1, 1)] {
            g.record(
                1,
                i,
                Choice {
                    cost,
                    leg: leg(End::State(2)),
                },
            );
        }
        for (i, cost, digest) in [(0, 0, 10), (1, 1, 11)] {
            g.record(
                2,
                i,
                Choice {
                    cost,
                    leg: leg(End::Outcome(digest)),
                },
            );
        }
        g.observations.insert(10, ("x".into(), observation("x")));
        g.observations.insert(11, ("y".into(), observation("y")));
        g
    }

    #[test]
    fn the_report_counts_states_once_and_finds_the_smallest_schedules() {
        let found = diamond(1).report(true);
        assert_eq!(found.states, 2);
        // Four choices and the start arrive somewhere; two are the first
        // arrivals at A and B.
        assert_eq!(found.schedules, 3);
        let examples: Vec<Vec<usize>> =
            found.outcomes.iter().map(|o| o.example.0.clone()).collect();
        assert_eq!(examples, [vec![0, 0], vec![0, 1]]);
        assert_eq!(found.outcomes[0].observation.scenario, "x");
    }

    #[test]
    fn the_smallest_schedule_stays_within_the_budget() {
        // With no preemption to spend, B's second choice is out of reach.
        let found = diamond(0).report(true);
        assert_eq!(found.outcomes.len(), 1);
    }

    #[test]
    fn the_union_of_records_does_not_depend_on_their_order() {
        let whole = diamond(1);
        let (mut a, mut b) = (StateGraph::default(), StateGraph::default());
        for (n, (k, c)) in whole.choices.iter().enumerate() {
            let part = if n % 2 == 0 { &mut a } else { &mut b };
            part.record(k.0, k.1, c.clone());
        }
        a.origin = whole.origin.clone();
        a.observations = whole.observations.clone();
        let mut ab = a.clone();
        ab.absorb(b.clone());
        let mut ba = b;
        ba.absorb(a);
        let (x, y) = (ab.report(true), ba.report(true));
        assert_eq!((x.states, x.schedules), (y.states, y.schedules));
        assert_eq!(x.outcomes.len(), y.outcomes.len());
    }

    #[test]
    fn ranks_put_the_canonical_schedule_first_and_survive_extension() {
        let canonical = [0, 0, 0, 0];
        assert!(schedule_rank(&canonical) < schedule_rank(&[1]));
        assert!(schedule_rank(&[0, 1]) < schedule_rank(&[1, 0, 0]));
        assert!(schedule_rank(&[0, 1, 2]) < schedule_rank(&[0, 2, 1]));
    }
}
