//! Pattern -> NFA compilation, a line-by-line port of Flink's `NFACompiler`
//! (`NFAFactoryCompiler`): the pattern is walked backwards from the Final
//! state; every stage becomes one or more states with TAKE / IGNORE / PROCEED
//! transitions. State and transition order follow Flink exactly, because the
//! runtime's branch versions (Dewey numbers) and match extraction depend on it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{Action, Nfa, State, StateKind, Transition};
use crate::pattern::{
    Condition, Contiguity, Pattern, PatternError, QuantKind, SkipStrategy, Stage, StageBody, Times,
};

const ENDING_STATE_NAME: &str = "$endState$";
const GROUP_NAME: &str = "GroupPattern";

/// A position in a (possibly nested) pattern: Flink's `Pattern` object with
/// its `previous` link.
struct PRef<'p, E> {
    list: &'p [Stage<E>],
    idx: usize,
}

impl<E> Clone for PRef<'_, E> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<E> Copy for PRef<'_, E> {}

impl<'p, E> PRef<'p, E> {
    fn last_of(p: &'p Pattern<E>) -> Self {
        PRef {
            list: &p.stages,
            idx: p.stages.len() - 1,
        }
    }
    fn st(&self) -> &'p Stage<E> {
        &self.list[self.idx]
    }
    fn previous(&self) -> Option<Self> {
        (self.idx > 0).then(|| PRef {
            list: self.list,
            idx: self.idx - 1,
        })
    }
    fn id(&self) -> *const Stage<E> {
        self.st() as *const _
    }
    fn name(&self) -> &'p str {
        if self.st().is_group() {
            GROUP_NAME
        } else {
            &self.st().name
        }
    }
    fn consuming(&self) -> Contiguity {
        self.st().quantifier.consuming
    }
    fn optional(&self) -> bool {
        self.st().quantifier.optional
    }
    fn group(&self) -> Option<&'p Pattern<E>> {
        match &self.st().body {
            StageBody::Group(g) => Some(g),
            StageBody::Single { .. } => None,
        }
    }
}

struct BState<E> {
    name: String,
    kind: StateKind,
    start: bool,
    /// Flink's `windowTimes` entry of the state (PREVIOUS_AND_CURRENT).
    window: Option<i64>,
    transitions: Vec<(Action, usize, Option<Condition<E>>)>,
}

struct Compiler<'p, E> {
    used_names: HashSet<String>,
    stop_states: HashMap<String, usize>,
    states: Vec<BState<E>>,
    window: Option<i64>,
    current_group: Option<PRef<'p, E>>,
    first_of_loop: HashMap<*const Stage<E>, bool>,
    current: PRef<'p, E>,
    following: Option<PRef<'p, E>>,
    original_state_map: HashMap<String, usize>,
}

fn err(stage: &str, message: impl Into<String>) -> PatternError {
    PatternError::Malformed {
        stage: stage.to_string(),
        message: message.into(),
    }
}

fn and<E>(a: Option<Condition<E>>, b: Condition<E>) -> Condition<E> {
    match a {
        None => b,
        Some(a) => Condition::And(Box::new(a), Box::new(b)),
    }
}

fn not<E>(c: Condition<E>) -> Condition<E> {
    Condition::Not(Box::new(c))
}

// Defined here rather than in `pattern`, so that `pattern` does not depend on
// the NFA it compiles into.
impl<E> Pattern<E> {
    /// Checks the pattern and compiles it into an [`Nfa`]
    /// (Flink `NFACompiler.compileFactory`).
    pub fn compile(self) -> Result<Nfa<E>, PatternError> {
        compile(self)
    }
}

pub(crate) fn compile<E>(pattern: Pattern<E>) -> Result<Nfa<E>, PatternError> {
    if let Some(e) = &pattern.error {
        return Err(e.clone());
    }
    if pattern.stages.is_empty() {
        return Err(err("", "a pattern needs at least one stage"));
    }
    check_groups_nonempty(&pattern)?;
    let mut c = Compiler {
        used_names: HashSet::new(),
        stop_states: HashMap::new(),
        states: Vec::new(),
        window: None,
        current_group: None,
        first_of_loop: HashMap::new(),
        current: PRef::last_of(&pattern),
        following: None,
        original_state_map: HashMap::new(),
    };
    let last = c.current;
    c.check_name_uniqueness()?;
    c.check_skip_strategy(&pattern.skip)?;
    let sink = c.create_ending_state();
    let sink = c.create_middle_states(sink);
    c.create_start_state(sink);
    c.check_window_times()?;
    let last_has_window = c
        .states
        .iter()
        .any(|s| s.name == last.name() && s.window.is_some_and(|w| w > 0));
    if last.consuming() == Contiguity::NotFollow && !last_has_window && c.window.unwrap_or(0) <= 0 {
        return Err(err(
            last.name(),
            "NotFollowedBy is not supported without windowTime as a last part of a Pattern",
        ));
    }
    Ok(c.finish(pattern.skip.clone(), pattern.skip_throw))
}

fn check_groups_nonempty<E>(p: &Pattern<E>) -> Result<(), PatternError> {
    for s in &p.stages {
        if let StageBody::Group(g) = &s.body {
            if g.stages.is_empty() {
                return Err(err(&s.name, "a group pattern needs at least one stage"));
            }
            check_groups_nonempty(g)?;
        }
    }
    Ok(())
}

impl<'p, E> Compiler<'p, E> {
    fn check_name_uniqueness(&mut self) -> Result<(), PatternError> {
        self.check_name(ENDING_STATE_NAME)?;
        let mut p = Some(self.current);
        while let Some(cur) = p {
            self.check_names_of(cur)?;
            p = cur.previous();
        }
        self.used_names.clear();
        Ok(())
    }

    fn check_names_of(&mut self, p: PRef<'p, E>) -> Result<(), PatternError> {
        if let Some(g) = p.group() {
            let mut q = Some(PRef::last_of(g));
            while let Some(cur) = q {
                self.check_names_of(cur)?;
                q = cur.previous();
            }
            Ok(())
        } else {
            self.check_name(&p.st().name)
        }
    }

    fn check_name(&mut self, name: &str) -> Result<(), PatternError> {
        if name.contains(':') {
            return Err(err(
                name,
                "stage names must not contain ':' (Flink uses it for internal state names)",
            ));
        }
        if !self.used_names.insert(name.to_string()) {
            return Err(err(
                name,
                format!("duplicate pattern name: {name}; names must be unique"),
            ));
        }
        Ok(())
    }

    /// Flink's `checkPatternWindowTimes`.
    fn check_window_times(&self) -> Result<(), PatternError> {
        if let Some(w) = self.window {
            if let Some(s) = self
                .states
                .iter()
                .find(|s| s.window.is_some_and(|sw| sw > w))
            {
                return Err(err(
                    original_name(&s.name),
                    "The window length between the previous and current event cannot be larger than the window length between the first and last event for a Pattern.",
                ));
            }
        }
        Ok(())
    }

    fn check_skip_strategy(&self, skip: &SkipStrategy) -> Result<(), PatternError> {
        if let Some(name) = skip.stage_name() {
            let mut p = self.current;
            while p.name() != name {
                match p.previous() {
                    Some(q) => p = q,
                    None => break,
                }
            }
            if p.name() != name {
                return Err(err(
                    name,
                    format!("the pattern name '{name}' specified in AfterMatchSkipStrategy can not be found in the given Pattern"),
                ));
            }
        }
        Ok(())
    }

    fn unique_name(&mut self, base: &str) -> String {
        let mut counter = 0;
        let mut candidate = base.to_string();
        while self.used_names.contains(&candidate) {
            candidate = format!("{base}:{counter}");
            counter += 1;
        }
        self.used_names.insert(candidate.clone());
        candidate
    }

    fn create_state_named(&mut self, base: &str, kind: StateKind) -> usize {
        let name = self.unique_name(base);
        self.states.push(BState {
            name,
            kind,
            start: false,
            window: None,
            transitions: Vec::new(),
        });
        self.states.len() - 1
    }

    fn create_state(&mut self, kind: StateKind) -> usize {
        let name = self.current.name();
        self.create_state_named(name, kind)
    }

    /// Flink's `createState(stateType, true)`: a state that takes the
    /// stage's events gets the stage's PREVIOUS_AND_CURRENT window; with a
    /// quantifier, only its second and later states (names with ':') get
    /// the quantifier's window (`times(n, windowTime)`), and the stage's
    /// own PREVIOUS_AND_CURRENT window is not used.
    fn create_take_state(&mut self, kind: StateKind) -> usize {
        let s = self.create_state(kind);
        let st = self.current.st();
        self.states[s].window = match st.times {
            None => st.prev_window,
            Some(t) if self.states[s].name.contains(':') => t.window,
            Some(_) => None,
        };
        s
    }

    fn add(&mut self, from: usize, action: Action, to: usize, cond: Option<Condition<E>>) {
        self.states[from].transitions.push((action, to, cond));
    }

    fn take_condition(&self, p: PRef<'p, E>) -> Condition<E> {
        let c = p.st().condition();
        match self.group_until() {
            Some(u) => extend_with_until(Some(c), Some(u), true).unwrap_or(Condition::True),
            None => c,
        }
    }

    fn group_until(&self) -> Option<Condition<E>> {
        self.current_group.and_then(|g| g.st().until.clone())
    }

    fn true_function(&self) -> Condition<E> {
        match self.group_until() {
            Some(u) => {
                extend_with_until(Some(Condition::True), Some(u), true).unwrap_or(Condition::True)
            }
            None => Condition::True,
        }
    }

    fn head_of_group(&self, p: PRef<'p, E>) -> bool {
        self.current_group.is_some() && p.previous().is_none()
    }

    fn is_current_group_first_of_loop(&self) -> bool {
        match self.current_group {
            Some(g) => *self.first_of_loop.get(&g.id()).unwrap_or(&true),
            None => true,
        }
    }

    fn set_current_group_first_of_loop(&mut self, v: bool) {
        if self.current.st().is_group() {
            self.first_of_loop.insert(self.current.id(), v);
        }
    }

    fn ignore_for(&self, strategy: Contiguity, p: PRef<'p, E>) -> Option<Condition<E>> {
        let c = match strategy {
            Contiguity::SkipTillNext => Some(not(p.st().condition())),
            Contiguity::SkipTillAny => Some(Condition::True),
            _ => None,
        };
        match self.group_until() {
            Some(u) => extend_with_until(c, Some(u), false),
            None => c,
        }
    }

    fn inner_ignore_condition(&self, p: PRef<'p, E>) -> Option<Condition<E>> {
        let mut strategy = p.st().quantifier.inner;
        if self.head_of_group(p) {
            if let Some(g) = self.current_group {
                strategy = g.st().quantifier.inner;
            }
        }
        self.ignore_for(strategy, p)
    }

    fn ignore_condition(&self, p: PRef<'p, E>) -> Option<Condition<E>> {
        let mut strategy = p.consuming();
        if self.head_of_group(p) {
            if let Some(g) = self.current_group {
                strategy = if self.is_current_group_first_of_loop() {
                    g.st().quantifier.consuming
                } else {
                    g.st().quantifier.inner
                };
            }
        }
        self.ignore_for(strategy, p)
    }

    /// NOT conditions in force before the current stage: a `notFollowedBy`
    /// right before it, or reached backwards through optional stages.
    fn current_not_conditions(&self) -> Vec<(Condition<E>, String)> {
        let mut out = Vec::new();
        let mut prev = self.current;
        while let Some(p) = prev.previous() {
            if !(p.optional() || p.consuming() == Contiguity::NotFollow) {
                break;
            }
            prev = p;
            if p.consuming() == Contiguity::NotFollow {
                out.push((self.take_condition(p), p.name().to_string()));
            }
        }
        out
    }

    fn create_ending_state(&mut self) -> usize {
        let s = self.create_state_named(ENDING_STATE_NAME, StateKind::Final);
        self.window = self.current.st().window;
        s
    }

    fn create_middle_states(&mut self, sink: usize) -> usize {
        let mut last_sink = sink;
        while let Some(prev) = self.current.previous() {
            match self.current.consuming() {
                Contiguity::NotFollow => {
                    if (self.current.st().prev_window.is_some() || self.window.unwrap_or(0) > 0)
                        && self.states[last_sink].kind == StateKind::Final
                    {
                        let not_follow = self.create_take_state(StateKind::Pending);
                        let not_cond = self.take_condition(self.current);
                        let stop = self.create_stop_state(not_cond.clone(), self.current.name());
                        self.add(not_follow, Action::Proceed, stop, Some(not_cond.clone()));
                        self.add(not_follow, Action::Ignore, not_follow, Some(not(not_cond)));
                        last_sink = not_follow;
                    }
                }
                Contiguity::NotNext => {
                    let not_next = self.create_take_state(StateKind::Normal);
                    let not_cond = self.take_condition(self.current);
                    let stop = self.create_stop_state(not_cond.clone(), self.current.name());
                    if self.states[last_sink].kind == StateKind::Final {
                        self.add(
                            not_next,
                            Action::Ignore,
                            last_sink,
                            Some(not(not_cond.clone())),
                        );
                    } else {
                        self.add(
                            not_next,
                            Action::Proceed,
                            last_sink,
                            Some(not(not_cond.clone())),
                        );
                    }
                    self.add(not_next, Action::Proceed, stop, Some(not_cond));
                    last_sink = not_next;
                }
                _ => last_sink = self.convert_pattern(last_sink),
            }
            self.following = Some(self.current);
            self.current = prev;
            if let Some(w) = self.current.st().window {
                if w < self.window.unwrap_or(i64::MAX) {
                    self.window = Some(w);
                }
            }
        }
        last_sink
    }

    fn create_start_state(&mut self, sink: usize) -> usize {
        let s = self.convert_pattern(sink);
        self.states[s].start = true;
        s
    }

    fn convert_pattern(&mut self, sink: usize) -> usize {
        let q = self.current.st().quantifier.kind;
        let times = self.current.st().times.unwrap_or(Times {
            from: 1,
            to: 1,
            window: None,
        });
        let last_sink = match q {
            QuantKind::Looping => {
                self.set_current_group_first_of_loop(false);
                let s = self.copy_without_transitive_nots(sink);
                let looping = self.create_looping(s);
                self.set_current_group_first_of_loop(true);
                self.create_times_state(looping, sink, times)
            }
            QuantKind::Times => self.create_times_state(sink, sink, times),
            QuantKind::Single => self.create_singleton_state_default(sink),
        };
        self.add_stop_states(last_sink);
        last_sink
    }

    fn create_stop_state(&mut self, not_cond: Condition<E>, name: &str) -> usize {
        if let Some(&s) = self.stop_states.get(name) {
            return s;
        }
        let s = self.create_state_named(name, StateKind::Stop);
        self.add(s, Action::Take, s, Some(not_cond));
        self.stop_states.insert(name.to_string(), s);
        s
    }

    fn copy_without_transitive_nots(&mut self, sink: usize) -> usize {
        let nots = self.current_not_conditions();
        if nots.is_empty() || !self.current.optional() {
            return sink;
        }
        let base = self.states[sink].name.clone();
        let kind = self.states[sink].kind;
        let copy = self.create_state_named(&base, kind);
        let transitions: Vec<_> = self.states[sink]
            .transitions
            .iter()
            .map(|(a, t, c)| (*a, *t, c.clone()))
            .collect();
        for (action, target, cond) in transitions {
            if action == Action::Proceed {
                let mut target = target;
                let mut remove = false;
                if self.states[target].kind == StateKind::Stop {
                    for (_, name) in &nots {
                        if self.states[target].name == *name {
                            remove = true;
                        }
                    }
                } else {
                    target = self.copy_without_transitive_nots(target);
                }
                if !remove {
                    self.add(copy, action, target, cond);
                }
            } else {
                let t = if target == sink { copy } else { target };
                self.add(copy, action, t, cond);
            }
        }
        copy
    }

    fn copy(&mut self, state: usize) -> usize {
        let base = original_name(&self.states[state].name).to_string();
        let kind = self.states[state].kind;
        let copy = self.create_state_named(&base, kind);
        let transitions: Vec<_> = self.states[state]
            .transitions
            .iter()
            .map(|(a, t, c)| (*a, *t, c.clone()))
            .collect();
        for (action, target, cond) in transitions {
            let t = if target == state { copy } else { target };
            self.add(copy, action, t, cond);
        }
        copy
    }

    fn add_stop_states(&mut self, state: usize) {
        for (cond, name) in self.current_not_conditions() {
            let stop = self.create_stop_state(cond.clone(), &name);
            self.add(state, Action::Proceed, stop, Some(cond));
        }
    }

    fn add_stop_state_to_looping(&mut self, looping: usize) {
        if let Some(f) = self.following {
            if f.consuming() == Contiguity::NotFollow {
                let cond = self.take_condition(f);
                let stop = self.create_stop_state(cond.clone(), f.name());
                self.add(looping, Action::Proceed, stop, Some(cond));
            }
        }
    }

    fn create_times_state(&mut self, sink: usize, proceed: usize, times: Times) -> usize {
        let mut last_sink = sink;
        self.set_current_group_first_of_loop(false);
        let until = self.current.st().until.clone();
        let inner_ignore = extend_with_until(
            self.inner_ignore_condition(self.current),
            until.clone(),
            false,
        );
        let take = extend_with_until(Some(self.take_condition(self.current)), until.clone(), true)
            .unwrap_or(Condition::True);
        if self.current.st().quantifier.greedy && times.from != times.to {
            if until.is_some() {
                let copy = self.copy(sink);
                let name = self.states[sink].name.clone();
                self.original_state_map.insert(name, copy);
            }
            self.update_with_greedy_condition(sink, take.clone());
        }
        for _ in times.from..times.to {
            last_sink = self.create_singleton_state(
                last_sink,
                Some(proceed),
                take.clone(),
                inner_ignore.clone(),
                true,
            );
            self.add_stop_state_to_looping(last_sink);
        }
        for _ in 0..times.from.saturating_sub(1) {
            last_sink = self.create_singleton_state(
                last_sink,
                None,
                take.clone(),
                inner_ignore.clone(),
                false,
            );
            self.add_stop_state_to_looping(last_sink);
        }
        self.set_current_group_first_of_loop(true);
        let ignore = self.ignore_condition(self.current);
        let optional = self.current.optional();
        self.create_singleton_state(last_sink, Some(proceed), take, ignore, optional)
    }

    fn is_head_of_optional_group(&self, p: PRef<'p, E>) -> bool {
        if !self.head_of_group(p) {
            return false;
        }
        self.is_current_group_first_of_loop() && self.current_group.is_some_and(|g| g.optional())
    }

    fn create_singleton_state_default(&mut self, sink: usize) -> usize {
        let take = self.take_condition(self.current);
        let ignore = self.ignore_condition(self.current);
        let optional = self.current.optional();
        self.create_singleton_state(sink, Some(sink), take, ignore, optional)
    }

    fn create_singleton_state(
        &mut self,
        sink: usize,
        proceed: Option<usize>,
        take: Condition<E>,
        ignore: Option<Condition<E>>,
        optional: bool,
    ) -> usize {
        if let Some(g) = self.current.group() {
            return self.create_group_pattern_state(g, sink, proceed, optional);
        }
        let singleton = self.create_take_state(StateKind::Normal);
        let sink = self.copy_without_transitive_nots(sink);
        self.add(singleton, Action::Take, sink, Some(take.clone()));
        let proceed_cond = self.true_function();
        if optional {
            if let Some(proceed) = proceed {
                if self.current.st().quantifier.greedy {
                    let until = self.current.st().until.clone();
                    if let Some(u) = &until {
                        let pname = self.states[proceed].name.clone();
                        if let Some(&orig) = self.original_state_map.get(&pname) {
                            self.add(
                                singleton,
                                Action::Proceed,
                                orig,
                                Some(and(Some(proceed_cond.clone()), u.clone())),
                            );
                        }
                    }
                    let c = match &until {
                        Some(u) => and(Some(proceed_cond), not(u.clone())),
                        None => proceed_cond,
                    };
                    self.add(singleton, Action::Proceed, proceed, Some(c));
                } else {
                    self.add(singleton, Action::Proceed, proceed, Some(proceed_cond));
                }
            }
        }
        if let Some(ignore) = ignore {
            let ignore_state = if optional || self.is_head_of_optional_group(self.current) {
                let s = self.create_state(StateKind::Normal);
                self.add(s, Action::Take, sink, Some(take));
                self.add(s, Action::Ignore, s, Some(ignore.clone()));
                self.add_stop_states(s);
                s
            } else {
                singleton
            };
            self.add(singleton, Action::Ignore, ignore_state, Some(ignore));
        }
        singleton
    }

    fn enter_group(
        &mut self,
        group: &'p Pattern<E>,
    ) -> (PRef<'p, E>, Option<PRef<'p, E>>, Option<PRef<'p, E>>) {
        let saved = (self.current, self.following, self.current_group);
        self.current_group = Some(self.current);
        self.current = PRef::last_of(group);
        saved
    }

    fn create_group_pattern_state(
        &mut self,
        group: &'p Pattern<E>,
        sink: usize,
        proceed: Option<usize>,
        optional: bool,
    ) -> usize {
        let proceed_cond = self.true_function();
        let saved = self.enter_group(group);
        let mut last_sink = self.create_middle_states(sink);
        last_sink = self.convert_pattern(last_sink);
        if optional {
            if let Some(p) = proceed {
                self.add(last_sink, Action::Proceed, p, Some(proceed_cond));
            }
        }
        (self.current, self.following, self.current_group) = saved;
        last_sink
    }

    fn create_looping_group_pattern_state(&mut self, group: &'p Pattern<E>, sink: usize) -> usize {
        let proceed_cond = self.true_function();
        let dummy = self.create_take_state(StateKind::Normal);
        let saved = self.enter_group(group);
        let mut last_sink = self.create_middle_states(dummy);
        last_sink = self.convert_pattern(last_sink);
        self.add(last_sink, Action::Proceed, sink, Some(proceed_cond.clone()));
        self.add(dummy, Action::Proceed, last_sink, Some(proceed_cond));
        (self.current, self.following, self.current_group) = saved;
        last_sink
    }

    fn create_looping(&mut self, sink: usize) -> usize {
        if let Some(g) = self.current.group() {
            return self.create_looping_group_pattern_state(g, sink);
        }
        let until = self.current.st().until.clone();
        let ignore = extend_with_until(
            self.inner_ignore_condition(self.current),
            until.clone(),
            false,
        );
        let take = extend_with_until(Some(self.take_condition(self.current)), until.clone(), true)
            .unwrap_or(Condition::True);
        let proceed_cond = self.true_function();
        let looping = self.create_take_state(StateKind::Normal);
        if self.current.st().quantifier.greedy {
            if let Some(u) = &until {
                let copy = self.copy(sink);
                self.add(
                    looping,
                    Action::Proceed,
                    copy,
                    Some(and(Some(proceed_cond.clone()), u.clone())),
                );
                let name = self.states[sink].name.clone();
                self.original_state_map.insert(name, copy);
            }
            let c = match &until {
                Some(u) => and(Some(proceed_cond), not(u.clone())),
                None => proceed_cond,
            };
            self.add(looping, Action::Proceed, sink, Some(c));
            let plain_take = self.take_condition(self.current);
            self.update_with_greedy_condition(sink, plain_take);
        } else {
            self.add(looping, Action::Proceed, sink, Some(proceed_cond));
        }
        self.add(looping, Action::Take, looping, Some(take.clone()));
        self.add_stop_state_to_looping(looping);
        if let Some(ignore) = ignore {
            let ignore_state = self.create_state(StateKind::Normal);
            self.add(ignore_state, Action::Take, looping, Some(take));
            self.add(
                ignore_state,
                Action::Ignore,
                ignore_state,
                Some(ignore.clone()),
            );
            self.add(looping, Action::Ignore, ignore_state, Some(ignore));
            self.add_stop_state_to_looping(ignore_state);
        }
        looping
    }

    fn update_with_greedy_condition(&mut self, state: usize, take: Condition<E>) {
        for t in &mut self.states[state].transitions {
            let c = t.2.take();
            t.2 = Some(Condition::And(
                Box::new(c.unwrap_or(Condition::True)),
                Box::new(not(take.clone())),
            ));
        }
    }

    fn finish(self, skip: SkipStrategy, skip_throw: bool) -> Nfa<E> {
        let mut stage_names: Vec<Arc<str>> = Vec::new();
        let mut stage_of = |name: &str| -> u32 {
            let orig = original_name(name);
            if let Some(i) = stage_names.iter().position(|n| &**n == orig) {
                return i as u32;
            }
            stage_names.push(Arc::from(orig));
            (stage_names.len() - 1) as u32
        };
        // Stage indices in pattern order: Flink walks backwards, so visit
        // states in reverse creation order for a readable numbering.
        let mut page = vec![0u32; self.states.len()];
        for i in (0..self.states.len()).rev() {
            page[i] = stage_of(&self.states[i].name);
        }
        let mut start = 0;
        let states: Vec<State<E>> = self
            .states
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                if s.start {
                    start = i;
                }
                State {
                    name: s.name.into(),
                    stage: page[i],
                    kind: s.kind,
                    window: s.window.filter(|w| *w > 0),
                    transitions: s
                        .transitions
                        .into_iter()
                        .map(|(action, target, cond)| Transition {
                            action,
                            target: target as u32,
                            condition: cond.unwrap_or(Condition::True),
                        })
                        .collect(),
                    proceeds: false,
                }
            })
            .collect();
        let skip_stage = skip
            .stage_name()
            .and_then(|n| stage_names.iter().position(|s| &**s == n))
            .map(|i| i as u32);
        Nfa::new(
            states,
            start as u32,
            stage_names,
            self.window.filter(|w| *w > 0),
            skip,
            skip_stage,
            skip_throw,
        )
    }
}

/// The stage name of an internal state name (`name:3` -> `name`).
pub(crate) fn original_name(name: &str) -> &str {
    name.split(':').next().unwrap_or(name)
}

fn extend_with_until<E>(
    cond: Option<Condition<E>>,
    until: Option<Condition<E>>,
    is_take: bool,
) -> Option<Condition<E>> {
    match (until, cond) {
        (Some(u), Some(c)) => Some(Condition::And(Box::new(not(u)), Box::new(c))),
        (Some(u), None) if is_take => Some(not(u)),
        (_, c) => c,
    }
}
