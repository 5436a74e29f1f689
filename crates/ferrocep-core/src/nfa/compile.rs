use crate::pattern::{Pattern, PatternError};
pub(crate) fn compile<E>(p: Pattern<E>) -> Result<super::Nfa<E>, PatternError> {
    let _ = p; todo!()
}
