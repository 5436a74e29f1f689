//! placeholder
pub(crate) mod compile;
/// placeholder
pub struct Nfa<E> { _e: std::marker::PhantomData<E>, window: Option<i64> }
impl<E> Nfa<E> {
    /// The window.
    pub fn window(&self) -> Option<i64> { self.window }
}
