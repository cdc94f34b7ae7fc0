//! Bulk derivation: many texts turned into names slice by slice, in order, by the caller's thread
//! and (from [`PARALLEL_AT`] inputs on) one helper thread. Pure Rust: a [`Caller`] supplies the
//! inputs and takes the names (the Python binding: Python strings in, a list out, GIL released
//! while names are derived or awaited).
//!
//! An error is the first bad input's, whichever thread met it: an input the caller could not take
//! (a wrong type) or one that `derive` refused, counted over the whole input. A panic in `derive`,
//! on either thread, reaches the caller after both threads ended; neither thread ever waits for
//! one that is gone.

use std::cell::OnceCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::naming::StrList;

/// How many names are derived per slice: each slice's inputs, buffer and names stay cache-hot.
pub const SLICE: usize = 2048;
/// From this many inputs on, a second thread derives names (a thread costs tens of microseconds).
pub const PARALLEL_AT: usize = 8 * SLICE;
/// How many slices the caller's thread takes ahead of the one whose names it puts.
const AHEAD: usize = 2;
/// How long a thread of a parallel call spins before it sleeps, waiting for the other.
const SPIN: Duration = Duration::from_micros(200);
/// How long the caller's thread of a parallel call waits for the helper's slice before it derives
/// one itself (a slice takes 100-300 us to derive).
const SPIN_BEFORE_CLAIM: Duration = Duration::from_micros(40);
/// The helper thread's name.
const HELPER_NAME: &str = "batchfiles-bulk";

/// The caller's side of [`run`]: where the inputs come from and the names go, in the caller's
/// thread only (so its items need not be `Send`: Python objects, say).
pub trait Caller {
    /// An input as taken, kept until the call ends (a Python `str` held by a reference).
    type Item;
    /// Why an input could not be taken or a name put; a refusal of `derive` becomes one too.
    type Error;

    /// Takes input `index` (inputs are taken in order, each once).
    fn take(&mut self, index: usize) -> Result<Self::Item, Self::Error>;
    /// The text of an input taken, borrowed from it.
    fn text<'i>(&self, item: &'i Self::Item) -> Result<&'i str, Self::Error>;
    /// Puts the name of input `index` (names are put in order, each once).
    fn put(&mut self, index: usize, name: &str) -> Result<(), Self::Error>;
    /// Runs `f`, which derives names or waits for the helper's, as the caller's thread should run
    /// long work (the binding: with the GIL released). By default, just runs it.
    fn detach<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        f()
    }
}

/// Derives one name per input `0..len` of `caller` with `derive`, and puts them in order.
///
/// `derive(texts, first, out)` appends one name per text to `out` or fails, naming the index of
/// a bad text counted from `first` (as [`crate::naming::container_names`] does). The inputs are
/// taken slice by slice ([`SLICE`]); from [`PARALLEL_AT`] inputs on, a helper thread derives each
/// slice while the caller's thread takes the next and puts the names of the last, and the
/// caller's thread derives a slice itself rather than wait long for one (see [`Pipeline`]).
///
/// Errors: the first bad input's, as the caller's or `derive`'s error; nothing is put from the
/// bad input on. Panics: if `derive` panics (on either thread) or returns a wrong count of names.
pub fn run<C, D, F>(caller: &mut C, len: usize, derive: F) -> Result<(), C::Error>
where
    C: Caller,
    C::Error: From<D>,
    D: Send,
    F: Fn(&[&str], usize, &mut StrList) -> Result<(), D> + Sync,
{
    if len < PARALLEL_AT {
        one_thread(caller, len, &derive)
    } else {
        two_threads(caller, len, &derive)
    }
}

/// [`run`] in the caller's thread alone, reusing one name buffer.
fn one_thread<C, D, F>(caller: &mut C, len: usize, derive: &F) -> Result<(), C::Error>
where
    C: Caller,
    C::Error: From<D>,
    D: Send,
    F: Fn(&[&str], usize, &mut StrList) -> Result<(), D> + Sync,
{
    let mut buf = StrList::default();
    for n in 0..len.div_ceil(SLICE) {
        let mut taken = Taken::new(n, len);
        let items = taken.take(caller);
        let texts = taken.texts(caller, &items);
        buf.clear();
        caller.detach(|| derive(&texts, n * SLICE, &mut buf))?;
        put(caller, n, texts.len(), &buf)?;
        taken.result()?;
    }
    Ok(())
}

/// [`run`] with a helper thread (or without one if none can be started).
fn two_threads<C, D, F>(caller: &mut C, len: usize, derive: &F) -> Result<(), C::Error>
where
    C: Caller,
    C::Error: From<D>,
    D: Send,
    F: Fn(&[&str], usize, &mut StrList) -> Result<(), D> + Sync,
{
    let slices = len.div_ceil(SLICE);
    // The items of each slice, kept here (in the caller's thread) while the helper reads their texts.
    let held: Vec<OnceCell<Vec<C::Item>>> = (0..slices).map(|_| OnceCell::new()).collect();
    let pipeline = Pipeline::new(slices);
    let mut feed = Feed {
        held: &held,
        len,
        handed: 0,
        failed: None,
    };
    std::thread::scope(|scope| {
        // Also on an error or a panic in this thread: the helper stops rather than wait for texts.
        let _done = CallerDone(&pipeline);
        let helper = std::thread::Builder::new().name(HELPER_NAME.into());
        if helper
            .spawn_scoped(scope, || help(&pipeline, derive))
            .is_err()
        {
            // No thread to be had (a limit reached): this one derives every slice itself.
            pipeline.helper_gone.store(true, Ordering::Release);
        }
        for n in 0..slices {
            feed.hand_over(caller, &pipeline, n + AHEAD);
            // Rather than wait long for slice n, derive the next slice no thread has claimed.
            let derived = loop {
                if let Some(derived) = pipeline.spin_done(n, SPIN_BEFORE_CLAIM) {
                    break derived;
                }
                let Some(m) = pipeline.claim() else {
                    break match caller.detach(|| pipeline.wait_done(n)) {
                        Some(derived) => derived,
                        // The helper ended before deriving it: derive it here.
                        None => caller.detach(|| derive_slice(derive, pipeline.texts_of(n), n)),
                    };
                };
                feed.hand_over(caller, &pipeline, m + AHEAD); // and the helper's next ones
                let derived = caller.detach(|| derive_slice(derive, pipeline.texts_of(m), m));
                pipeline.finish(m, derived);
            };
            put(caller, n, pipeline.texts_of(n).len(), &derived?)?;
            if let Some((_, error)) = feed.failed.take_if(|(at, _)| *at == n) {
                return Err(error);
            }
        }
        Ok(())
    })
}

/// Puts the names of slice `n`, which has `count` texts.
fn put<C: Caller>(caller: &mut C, n: usize, count: usize, names: &StrList) -> Result<(), C::Error> {
    assert_eq!(names.len(), count, "derive must give one name per text");
    for (i, name) in names.iter().enumerate() {
        caller.put(n * SLICE + i, name)?;
    }
    Ok(())
}

/// The taking of one slice's inputs: the items and texts up to the first that failed, and its error.
struct Taken<E> {
    first: usize,
    count: usize,
    error: Option<E>,
}

impl<E> Taken<E> {
    /// Slice `n` of `len` inputs.
    fn new(n: usize, len: usize) -> Self {
        let first = n * SLICE;
        Self {
            first,
            count: len.saturating_sub(first).min(SLICE),
            error: None,
        }
    }

    /// The slice's items, up to the first that could not be taken.
    fn take<C: Caller<Error = E>>(&mut self, caller: &mut C) -> Vec<C::Item> {
        let mut items = Vec::with_capacity(self.count);
        for index in self.first..self.first + self.count {
            match caller.take(index) {
                Ok(item) => items.push(item),
                Err(error) => {
                    self.error = Some(error);
                    break;
                }
            }
        }
        items
    }

    /// The texts of `items`, up to the first that has none (an error before any of taking).
    fn texts<'i, C: Caller<Error = E>>(
        &mut self,
        caller: &C,
        items: &'i [C::Item],
    ) -> Vec<&'i str> {
        let mut texts = Vec::with_capacity(items.len());
        for item in items {
            match caller.text(item) {
                Ok(text) => texts.push(text),
                Err(error) => {
                    self.error = Some(error); // at an earlier input than a failed take
                    break;
                }
            }
        }
        texts
    }

    /// The error of the slice's first bad input, if taking met one.
    fn result(self) -> Result<(), E> {
        self.error.map_or(Ok(()), Err)
    }
}

/// The caller's thread's taking of slices for a parallel call.
struct Feed<'h, C: Caller> {
    held: &'h [OnceCell<Vec<C::Item>>],
    len: usize,
    /// The slices taken and handed over so far.
    handed: usize,
    /// The slice where taking failed, and why; none is taken after it.
    failed: Option<(usize, C::Error)>,
}

impl<'h, C: Caller> Feed<'h, C> {
    /// Takes the slices up to `last` (or to the end, or to a failure) and hands their texts over.
    fn hand_over<D>(&mut self, caller: &mut C, pipeline: &Pipeline<'h, D>, last: usize) {
        while self.handed <= last && self.handed < self.held.len() && self.failed.is_none() {
            let n = self.handed;
            let mut taken = Taken::new(n, self.len);
            let items = taken.take(caller);
            let items = self.held[n].get_or_init(|| items);
            let texts = taken.texts(caller, items);
            let _ = pipeline.texts[n].set(texts);
            pipeline.signal();
            if let Err(error) = taken.result() {
                self.failed = Some((n, error));
            }
            self.handed += 1;
        }
    }
}

/// The helper thread: derives slice after slice until none is left, one fails, or the caller is done.
fn help<D, F>(pipeline: &Pipeline<'_, D>, derive: &F)
where
    F: Fn(&[&str], usize, &mut StrList) -> Result<(), D>,
{
    let _gone = HelperGone(pipeline); // also if deriving panicked: no one waits for this thread
    while !pipeline.stopped.load(Ordering::Acquire) {
        let Some(n) = pipeline.claim() else {
            return;
        };
        let Some(texts) = pipeline.wait_texts(n) else {
            return;
        };
        let derived = derive_slice(derive, texts, n);
        let failed = derived.is_err();
        pipeline.finish(n, derived);
        if failed {
            return;
        }
    }
}

/// The names of slice `n`, whose texts are `texts`.
fn derive_slice<D, F>(derive: &F, texts: &[&str], n: usize) -> Result<StrList, D>
where
    F: Fn(&[&str], usize, &mut StrList) -> Result<(), D>,
{
    let mut buf = StrList::with_capacity(texts.len(), 48);
    derive(texts, n * SLICE, &mut buf).map(|()| buf)
}

/// The slices of a parallel call between the caller's thread, which takes each slice's inputs, hands
/// over their texts and puts the names, and the helper, which derives the names and hands them back.
/// Either thread claims the next slice to derive from one counter: the helper one after another, the
/// caller's thread when the slice it needs is not ready soon.
struct Pipeline<'a, D> {
    texts: Vec<OnceLock<Vec<&'a str>>>,
    /// The next slice no thread has claimed to derive.
    next: AtomicUsize,
    done: Vec<Mutex<Option<Result<StrList, D>>>>,
    /// The caller's thread is done (finished, failed or panicking): the helper stops.
    stopped: AtomicBool,
    /// The helper ended (or never started).
    helper_gone: AtomicBool,
    /// Signalled whenever one of the above changes.
    changed: (Mutex<()>, Condvar),
}

impl<'a, D> Pipeline<'a, D> {
    fn new(slices: usize) -> Self {
        Self {
            texts: (0..slices).map(|_| OnceLock::new()).collect(),
            next: AtomicUsize::new(0),
            done: (0..slices).map(|_| Mutex::new(None)).collect(),
            stopped: AtomicBool::new(false),
            helper_gone: AtomicBool::new(false),
            changed: (Mutex::new(()), Condvar::new()),
        }
    }

    /// Wakes the other thread (taking the lock first, so that a waiter either sees the change or is
    /// already waiting).
    fn signal(&self) {
        drop(self.changed.0.lock());
        self.changed.1.notify_all();
    }

    /// Waits until `ready` or the other side is gone (`gone`); `ready`'s value, if it came.
    fn wait_for<T>(&self, gone: &AtomicBool, mut ready: impl FnMut() -> Option<T>) -> Option<T> {
        // Spin a little first: the other thread is usually about to hand it over, and waking a thread
        // from a condition variable takes longer than a slice on a busy machine.
        let spin_until = Instant::now() + SPIN;
        while Instant::now() < spin_until {
            for _ in 0..64 {
                if let Some(value) = ready() {
                    return Some(value);
                }
                std::hint::spin_loop();
            }
        }
        let mut guard = self.changed.0.lock().ok()?;
        loop {
            if let Some(value) = ready() {
                return Some(value);
            }
            if gone.load(Ordering::Acquire) {
                return None;
            }
            guard = self.changed.1.wait(guard).ok()?;
        }
    }

    /// Either thread: the next slice to derive, now this thread's; None when all are claimed.
    fn claim(&self) -> Option<usize> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        (n < self.texts.len()).then_some(n)
    }

    /// In the caller's thread: the texts of slice `n`, handed over before (none if it never was).
    fn texts_of(&self, n: usize) -> &[&'a str] {
        self.texts[n].get().map_or(&[], Vec::as_slice)
    }

    /// In the caller's thread: the names of slice `n` if derived already.
    fn take_done(&self, n: usize) -> Option<Result<StrList, D>> {
        self.done[n].lock().ok()?.take()
    }

    /// In the caller's thread: the names of slice `n` if derived within `spin` (at once if the helper
    /// is gone).
    fn spin_done(&self, n: usize, spin: Duration) -> Option<Result<StrList, D>> {
        if self.helper_gone.load(Ordering::Acquire) {
            return self.take_done(n);
        }
        let until = Instant::now() + spin;
        loop {
            if let Some(derived) = self.take_done(n) {
                return Some(derived);
            }
            if Instant::now() >= until {
                return None;
            }
            std::hint::spin_loop();
        }
    }

    /// In the helper: the texts of slice `n` once handed over; None once the caller is done.
    fn wait_texts(&self, n: usize) -> Option<&[&'a str]> {
        self.wait_for(&self.stopped, || self.texts[n].get().map(Vec::as_slice))
    }

    /// Either thread: hands over the names of slice `n`.
    fn finish(&self, n: usize, derived: Result<StrList, D>) {
        if let Ok(mut done) = self.done[n].lock() {
            *done = Some(derived);
        }
        self.signal();
    }

    /// In the caller's thread: the names of slice `n` once derived; None if the helper ended first.
    fn wait_done(&self, n: usize) -> Option<Result<StrList, D>> {
        self.wait_for(&self.helper_gone, || self.take_done(n))
    }
}

/// Marks the caller's thread done when dropped (returned, failed or panicking), and wakes the helper,
/// which then stops.
struct CallerDone<'p, 'a, D>(&'p Pipeline<'a, D>);

impl<D> Drop for CallerDone<'_, '_, D> {
    fn drop(&mut self) {
        self.0.stopped.store(true, Ordering::Release);
        self.0.signal();
    }
}

/// Marks the helper thread gone when dropped (returned or panicking), and wakes the caller's thread.
struct HelperGone<'p, 'a, D>(&'p Pipeline<'a, D>);

impl<D> Drop for HelperGone<'_, '_, D> {
    fn drop(&mut self) {
        self.0.helper_gone.store(true, Ordering::Release);
        self.0.signal();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::naming::{self, NamingError};
    use std::cell::Cell;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::atomic::AtomicUsize;

    /// An input the test caller cannot take, and one it can take but has no text of.
    const UNTAKEABLE: &str = "<untakeable>";
    const TEXTLESS: &str = "<textless>";
    /// An input the test `derive`s refuse.
    const BAD: &str = "bad id";

    #[derive(Debug, PartialEq)]
    enum Error {
        Take(usize),
        Text(usize),
        Derive(usize),
    }

    /// `derive`'s refusal: the index of the input.
    struct Refused(usize);

    impl From<Refused> for Error {
        fn from(Refused(index): Refused) -> Self {
            Error::Derive(index)
        }
    }

    impl From<NamingError> for Error {
        fn from(err: NamingError) -> Self {
            Error::Derive(err.index.expect("a bulk error names its input"))
        }
    }

    thread_local! {
        /// In the caller's thread: inside `Caller::detach`.
        static DETACHED: Cell<bool> = const { Cell::new(false) };
    }

    fn on_helper() -> bool {
        std::thread::current().name() == Some(HELPER_NAME)
    }

    /// Inputs from a slice of texts, names into a `Vec`; checks that each input is taken once and
    /// each name put once, in order.
    struct Texts<'a> {
        inputs: &'a [String],
        taken: usize,
        names: Vec<String>,
        /// Panics when putting the name of this input.
        panic_at: Option<usize>,
    }

    impl<'a> Texts<'a> {
        fn new(inputs: &'a [String]) -> Self {
            Self {
                inputs,
                taken: 0,
                names: Vec::new(),
                panic_at: None,
            }
        }
    }

    impl<'a> Caller for Texts<'a> {
        type Item = (usize, &'a str);
        type Error = Error;

        fn take(&mut self, index: usize) -> Result<Self::Item, Error> {
            assert_eq!(index, self.taken, "inputs are taken in order, once");
            self.taken += 1;
            match self.inputs[index].as_str() {
                UNTAKEABLE => Err(Error::Take(index)),
                text => Ok((index, text)),
            }
        }

        fn text<'i>(&self, item: &'i Self::Item) -> Result<&'i str, Error> {
            match item.1 {
                TEXTLESS => Err(Error::Text(item.0)),
                text => Ok(text),
            }
        }

        fn put(&mut self, index: usize, name: &str) -> Result<(), Error> {
            assert_eq!(index, self.names.len(), "names are put in order, once");
            assert_ne!(self.panic_at, Some(index), "put panics here");
            self.names.push(name.to_owned());
            Ok(())
        }

        fn detach<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
            DETACHED.set(true);
            let value = f();
            DETACHED.set(false);
            value
        }
    }

    /// The test derive: each text upper-cased, [`BAD`] refused; on the caller's thread, only
    /// inside `detach`.
    fn upper(texts: &[&str], first: usize, out: &mut StrList) -> Result<(), Refused> {
        assert!(
            on_helper() || DETACHED.get(),
            "derived off the caller's lock"
        );
        for (i, text) in texts.iter().enumerate() {
            if *text == BAD {
                return Err(Refused(first + i));
            }
            out.push(&text.to_uppercase());
        }
        Ok(())
    }

    fn inputs(len: usize) -> Vec<String> {
        (0..len).map(|i| format!("in{i}")).collect()
    }

    fn expected(inputs: &[String]) -> Vec<String> {
        inputs.iter().map(|s| s.to_uppercase()).collect()
    }

    /// The sizes around each boundary: one slice, the second thread, many slices.
    const SIZES: [usize; 9] = [
        1,
        SLICE - 1,
        SLICE,
        SLICE + 1,
        PARALLEL_AT - 1,
        PARALLEL_AT,
        PARALLEL_AT + 1,
        PARALLEL_AT + 5 * SLICE + 7,
        40 * SLICE + 1,
    ];

    #[test]
    fn empty_input_derives_nothing() {
        let calls = AtomicUsize::new(0);
        let mut caller = Texts::new(&[]);
        run(&mut caller, 0, |texts, first, out| {
            calls.fetch_add(1, Ordering::Relaxed);
            upper(texts, first, out)
        })
        .unwrap();
        assert_eq!(calls.load(Ordering::Relaxed), 0);
        assert_eq!((caller.taken, caller.names.len()), (0, 0));
    }

    #[test]
    fn one_input() {
        let inputs = ["job".to_owned()];
        let mut caller = Texts::new(&inputs);
        run(&mut caller, 1, upper).unwrap();
        assert_eq!(caller.names, ["JOB"]);
    }

    #[test]
    fn many_inputs_keep_their_order() {
        for len in SIZES {
            let inputs = inputs(len);
            let mut caller = Texts::new(&inputs);
            run(&mut caller, len, upper).unwrap();
            assert_eq!(caller.taken, len);
            assert_eq!(caller.names, expected(&inputs), "{len} inputs");
        }
    }

    #[test]
    fn naming_in_bulk_equals_one_by_one() {
        let ids: Vec<String> = (0..3 * PARALLEL_AT)
            .map(|i| {
                if i % 3 == 0 {
                    format!("Job_{i}")
                } else {
                    format!("job-{i}")
                }
            })
            .collect();
        let mut caller = Texts::new(&ids);
        run(&mut caller, ids.len(), naming::container_names).unwrap();
        let one_by_one: Vec<String> = ids
            .iter()
            .map(|id| naming::container_name(id).unwrap())
            .collect();
        assert_eq!(caller.names, one_by_one);
    }

    #[test]
    fn the_error_is_the_first_bad_input_s() {
        let len = PARALLEL_AT + 6 * SLICE;
        let cases: &[&[(usize, &str)]] = &[
            &[(0, BAD)],
            &[(0, UNTAKEABLE)],
            &[(0, TEXTLESS)],
            &[(len - 1, BAD)],
            &[(len - 1, UNTAKEABLE)],
            // A refusal of derive before a failed take, in the same slice and in slices ahead.
            &[(SLICE + 3, BAD), (SLICE + 9, UNTAKEABLE)],
            &[(SLICE + 3, BAD), (3 * SLICE, UNTAKEABLE)],
            &[(SLICE + 3, BAD), (4 * SLICE + 1, TEXTLESS)],
            // A failed take or text before a refusal, in the same slice and later.
            &[(5, UNTAKEABLE), (7, BAD)],
            &[(5, TEXTLESS), (6, UNTAKEABLE)],
            &[(2 * SLICE, TEXTLESS), (5 * SLICE, BAD)],
            &[
                (PARALLEL_AT, BAD),
                (PARALLEL_AT + 1, BAD),
                (len - 2, UNTAKEABLE),
            ],
        ];
        for &size in &[SLICE + 40, len] {
            for &case in cases {
                let mut inputs = inputs(size);
                let case: Vec<_> = case.iter().filter(|(at, _)| *at < size).collect();
                for &&(at, input) in &case {
                    inputs[at] = input.to_owned();
                }
                let Some(&&(first, input)) = case.first() else {
                    continue;
                };
                let mut caller = Texts::new(&inputs);
                let err = run(&mut caller, size, upper).unwrap_err();
                let want = match input {
                    BAD => Error::Derive(first),
                    UNTAKEABLE => Error::Take(first),
                    _ => Error::Text(first),
                };
                assert_eq!(err, want, "{size} inputs, bad {case:?}");
                assert!(
                    caller.names.len() <= first,
                    "nothing put from the bad input on"
                );
                assert_eq!(caller.names, expected(&inputs[..caller.names.len()]));
            }
        }
    }

    #[test]
    fn either_thread_may_derive_any_slice() {
        let inputs = inputs(PARALLEL_AT + 9 * SLICE + 5);
        // A slow helper: the caller's thread derives slices rather than wait for them.
        let by_caller = AtomicUsize::new(0);
        let mut caller = Texts::new(&inputs);
        run(&mut caller, inputs.len(), |texts, first, out| {
            if on_helper() {
                std::thread::sleep(Duration::from_millis(3));
            } else {
                by_caller.fetch_add(1, Ordering::Relaxed);
            }
            upper(texts, first, out)
        })
        .unwrap();
        assert_eq!(caller.names, expected(&inputs));
        assert!(by_caller.load(Ordering::Relaxed) > 0);
        // A slow caller's thread: the helper derives ahead of it.
        let mut caller = Texts::new(&inputs);
        run(&mut caller, inputs.len(), |texts, first, out| {
            if !on_helper() {
                std::thread::sleep(Duration::from_millis(3));
            }
            upper(texts, first, out)
        })
        .unwrap();
        assert_eq!(caller.names, expected(&inputs));
    }

    #[test]
    fn a_panicking_helper_is_not_waited_for() {
        // The helper dies on its first slice: the caller's thread derives every slice itself, then the
        // helper's panic reaches the caller.
        let inputs = inputs(PARALLEL_AT + 3 * SLICE);
        let mut caller = Texts::new(&inputs);
        let helper_died = AtomicBool::new(false);
        let result = catch_unwind(AssertUnwindSafe(|| {
            run(&mut caller, inputs.len(), |texts, first, out| {
                if on_helper() {
                    helper_died.store(true, Ordering::Release);
                    panic!("the helper panics");
                }
                // Whichever slices this thread claimed, the helper claims one meanwhile.
                while !helper_died.load(Ordering::Acquire) {
                    std::thread::yield_now();
                }
                upper(texts, first, out)
            })
        }));
        assert!(result.is_err());
        assert_eq!(caller.names, expected(&inputs));
    }

    #[test]
    fn a_panicking_caller_stops_the_helper() {
        // The helper waits for texts the caller's thread will never hand over: it stops, and the
        // panic reaches the caller once both threads ended.
        let inputs = inputs(PARALLEL_AT + 3 * SLICE);
        for at in [0, SLICE + 1, inputs.len() - 1] {
            let mut caller = Texts::new(&inputs);
            caller.panic_at = Some(at);
            let result = catch_unwind(AssertUnwindSafe(|| run(&mut caller, inputs.len(), upper)));
            assert!(result.is_err());
            assert_eq!(caller.names.len(), at);
        }
    }

    #[test]
    fn a_failed_take_stops_the_helper() {
        // The caller's thread returns early while the helper waits for the next slice's texts.
        let mut inputs = inputs(PARALLEL_AT + 3 * SLICE);
        inputs[SLICE] = UNTAKEABLE.to_owned();
        let mut caller = Texts::new(&inputs);
        let err = run(&mut caller, inputs.len(), upper).unwrap_err();
        assert_eq!(err, Error::Take(SLICE));
        assert_eq!(
            caller.taken,
            SLICE + 1,
            "nothing taken after the failed input"
        );
    }
}
