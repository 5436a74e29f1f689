//! Dewey numbers (Flink `DeweyNumber`): the version of a branch of a partial
//! match. Shared-buffer edges carry the version of the run that made them, so
//! that extraction follows only the edges of one branch.

use smallvec::SmallVec;

/// A branch version such as `1.0.2`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct DeweyNumber(SmallVec<[u32; 4]>);

impl Clone for DeweyNumber {
    fn clone(&self) -> Self {
        DeweyNumber(SmallVec::from_slice(&self.0))
    }
}

impl DeweyNumber {
    /// A one-digit version.
    pub fn new(start: u32) -> Self {
        let mut v = SmallVec::new();
        v.push(start);
        DeweyNumber(v)
    }

    /// Adds `times` to the last digit.
    pub fn increase(&self, times: u32) -> Self {
        let mut v: SmallVec<[u32; 4]> = SmallVec::from_slice(&self.0);
        if let Some(last) = v.last_mut() {
            *last = last.wrapping_add(times);
        }
        DeweyNumber(v)
    }

    /// Appends a `0` digit.
    pub fn add_stage(&self) -> Self {
        let mut v = SmallVec::with_capacity(self.0.len() + 1);
        v.extend_from_slice(&self.0);
        v.push(0);
        DeweyNumber(v)
    }

    /// Number of digits.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is no digit (never, for versions the NFA makes).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Flink `isCompatibleWith`: `self` is a descendant of, or a later sibling
    /// of, `other`.
    pub fn is_compatible_with(&self, other: &DeweyNumber) -> bool {
        let (a, b) = (&self.0, &other.0);
        if a.len() > b.len() {
            a[..b.len()] == b[..]
        } else if a.len() == b.len() && !a.is_empty() {
            let last = a.len() - 1;
            a[..last] == b[..last] && a[last] >= b[last]
        } else {
            false
        }
    }
}

impl std::fmt::Display for DeweyNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compatibility_follows_flink() {
        let a = DeweyNumber::new(1);
        let b = a.add_stage(); // 1.0
        let c = b.increase(2); // 1.2
        assert!(b.is_compatible_with(&a));
        assert!(c.is_compatible_with(&b));
        assert!(!b.is_compatible_with(&c));
        assert!(!a.is_compatible_with(&b));
        assert!(!DeweyNumber::new(2).add_stage().is_compatible_with(&b));
        assert_eq!(c.to_string(), "1.2");
    }
}
