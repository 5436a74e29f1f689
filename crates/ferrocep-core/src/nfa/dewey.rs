//! Dewey numbers (Flink `DeweyNumber`): the version of a branch of a partial
//! match. Shared-buffer edges carry the version of the run that made them, so
//! that extraction follows only the edges of one branch.
//!
//! Every run and every edge holds one, so the representation is 16 bytes:
//! up to six digits inline (the first, which counts the runs a key has
//! started, up to `u32::MAX`; the others, which count branches and loop
//! iterations, up to `u16::MAX`), a shared slice otherwise. Equal versions
//! always take the same form.

use triomphe::ThinArc;

/// A branch version such as `1.0.2`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DeweyNumber(Repr);

const INLINE_REST: usize = 5;

#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    Inline {
        len: u8,
        first: u32,
        rest: [u16; INLINE_REST],
    },
    /// Shared, so that cloning a long version (every run and edge of a
    /// long pattern has one) is a count increment, not an allocation.
    Heap(ThinArc<(), u32>),
}

impl DeweyNumber {
    /// The version of digits `d` (in its one form for that value).
    pub(crate) fn from_digits(d: &[u32]) -> Self {
        let fits = !d.is_empty()
            && d.len() <= 1 + INLINE_REST
            && d[1..].iter().all(|&x| x <= u16::MAX as u32);
        if fits {
            let mut rest = [0u16; INLINE_REST];
            for (r, &x) in rest.iter_mut().zip(&d[1..]) {
                *r = x as u16;
            }
            DeweyNumber(Repr::Inline {
                len: d.len() as u8,
                first: d[0],
                rest,
            })
        } else {
            DeweyNumber(Repr::Heap(ThinArc::from_header_and_slice((), d)))
        }
    }

    /// Digit `i` (`i < len`).
    #[inline]
    fn digit(&self, i: usize) -> u32 {
        match &self.0 {
            Repr::Inline { first, rest, .. } => {
                if i == 0 {
                    *first
                } else {
                    rest[i - 1] as u32
                }
            }
            Repr::Heap(d) => d.slice[i],
        }
    }

    /// The digits, first to last.
    pub(crate) fn digits(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len()).map(|i| self.digit(i))
    }

    /// Copies the digits into `buf`, returning the used prefix.
    fn to_buf<'b>(&self, buf: &'b mut [u32; 1 + INLINE_REST + 1]) -> Option<&'b mut [u32]> {
        let n = self.len();
        if n > buf.len() {
            return None;
        }
        for (i, b) in buf.iter_mut().enumerate().take(n) {
            *b = self.digit(i);
        }
        Some(&mut buf[..n])
    }

    /// A one-digit version.
    pub fn new(start: u32) -> Self {
        DeweyNumber(Repr::Inline {
            len: 1,
            first: start,
            rest: [0; INLINE_REST],
        })
    }

    /// Adds `times` to the last digit.
    #[inline]
    pub fn increase(&self, times: u32) -> Self {
        if let Repr::Inline { len, first, rest } = &self.0 {
            let (len, mut first, mut rest) = (*len, *first, *rest);
            if len == 1 {
                first = first.wrapping_add(times);
                return DeweyNumber(Repr::Inline { len, first, rest });
            }
            if len >= 2 && times <= u16::MAX as u32 {
                let last = rest[len as usize - 2] as u32 + times;
                if last <= u16::MAX as u32 {
                    rest[len as usize - 2] = last as u16;
                    return DeweyNumber(Repr::Inline { len, first, rest });
                }
            }
        }
        self.increase_slow(times)
    }

    /// [`Self::increase`] of a version that leaves (or is not in) the
    /// inline form: out of the callers' way.
    #[cold]
    #[inline(never)]
    fn increase_slow(&self, times: u32) -> Self {
        let mut buf = [0u32; 1 + INLINE_REST + 1];
        match self.to_buf(&mut buf) {
            Some(d) => {
                if let Some(last) = d.last_mut() {
                    *last = last.wrapping_add(times);
                }
                Self::from_digits(d)
            }
            None => {
                let mut d: smallvec::SmallVec<[u32; 16]> = self.digits().collect();
                if let Some(last) = d.last_mut() {
                    *last = last.wrapping_add(times);
                }
                Self::from_digits(&d)
            }
        }
    }

    /// Appends a `0` digit.
    #[inline]
    pub fn add_stage(&self) -> Self {
        if let Repr::Inline { len, first, rest } = &self.0 {
            if (*len as usize) <= INLINE_REST {
                // The new digit is already 0 in `rest`.
                return DeweyNumber(Repr::Inline {
                    len: len + 1,
                    first: *first,
                    rest: *rest,
                });
            }
        }
        self.add_stage_slow()
    }

    #[cold]
    #[inline(never)]
    fn add_stage_slow(&self) -> Self {
        let mut d: smallvec::SmallVec<[u32; 16]> = self.digits().collect();
        d.push(0);
        Self::from_digits(&d)
    }

    /// The digit of a one-digit version.
    pub(crate) fn single(&self) -> Option<u32> {
        match &self.0 {
            Repr::Inline { len: 1, first, .. } => Some(*first),
            _ => None,
        }
    }

    /// Number of digits.
    #[inline]
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Inline { len, .. } => *len as usize,
            Repr::Heap(d) => d.slice.len(),
        }
    }

    /// Whether there is no digit (never, for versions the NFA makes).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Flink `isCompatibleWith`: `self` is a descendant of, or a later sibling
    /// of, `other`.
    #[inline]
    pub fn is_compatible_with(&self, other: &DeweyNumber) -> bool {
        if let (
            Repr::Inline {
                len: la,
                first: fa,
                rest: ra,
            },
            Repr::Inline {
                len: lb,
                first: fb,
                rest: rb,
            },
        ) = (&self.0, &other.0)
        {
            let (la, lb) = (*la as usize, *lb as usize);
            let same_rest = |n: usize| ra[..n].iter().zip(&rb[..n]).all(|(x, y)| x == y);
            return if la > lb {
                fa == fb && same_rest(lb - 1)
            } else if la == lb && la > 0 {
                if la == 1 {
                    fa >= fb
                } else {
                    fa == fb && same_rest(la - 2) && ra[la - 2] >= rb[la - 2]
                }
            } else {
                false
            };
        }
        let (la, lb) = (self.len(), other.len());
        let same = |n: usize| (0..n).all(|i| self.digit(i) == other.digit(i));
        if la > lb {
            same(lb)
        } else if la == lb && la > 0 {
            let last = la - 1;
            same(last) && self.digit(last) >= other.digit(last)
        } else {
            false
        }
    }
}

/// A version of up to four digits, the first up to `u32::MAX` and the
/// others up to `u8::MAX`, in 8 bytes: the form a version takes where one is
/// kept per pending partial match (a key's waiting run, a node's only edge),
/// 8 bytes less than [`DeweyNumber`]. Versions it cannot hold stay
/// [`DeweyNumber`]s, so every version has a place.
///
/// `len` is last and has only four values: what is left of the byte is the
/// niche that the enums keeping it use for their tags.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct PackedDewey {
    first: u32,
    rest: [u8; PACKED_REST],
    len: PackedLen,
}

const PACKED_REST: usize = 3;

#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum PackedLen {
    One = 1,
    Two = 2,
    Three = 3,
    Four = 4,
}

impl PackedDewey {
    /// `d` in 8 bytes, if its digits fit.
    #[inline]
    pub(crate) fn pack(d: &DeweyNumber) -> Option<PackedDewey> {
        let Repr::Inline { len, first, rest } = &d.0 else {
            return None;
        };
        let len = match *len {
            1 => PackedLen::One,
            2 => PackedLen::Two,
            3 => PackedLen::Three,
            4 => PackedLen::Four,
            _ => return None,
        };
        // Digits past `len` are 0 in both forms.
        if rest[..PACKED_REST].iter().any(|&x| x > u8::MAX as u16) {
            return None;
        }
        Some(PackedDewey {
            first: *first,
            rest: [rest[0] as u8, rest[1] as u8, rest[2] as u8],
            len,
        })
    }

    /// `v.is_compatible_with(&self.unpack())`, without unpacking.
    #[inline(always)]
    pub(crate) fn is_compatible_from(self, v: &DeweyNumber) -> bool {
        let Repr::Inline { len, first, rest } = &v.0 else {
            return v.is_compatible_with(&self.unpack());
        };
        let (la, lb) = (*len as usize, self.len as usize);
        let same_rest = |n: usize| (0..n).all(|i| rest[i] == self.rest[i] as u16);
        if la > lb {
            *first == self.first && same_rest(lb - 1)
        } else if la == lb {
            if la == 1 {
                *first >= self.first
            } else {
                *first == self.first
                    && same_rest(la - 2)
                    && rest[la - 2] >= self.rest[la - 2] as u16
            }
        } else {
            false
        }
    }

    /// The version as a [`DeweyNumber`] (inline: no allocation).
    #[inline]
    pub(crate) fn unpack(self) -> DeweyNumber {
        let mut rest = [0u16; INLINE_REST];
        for (r, &x) in rest.iter_mut().zip(&self.rest) {
            *r = x as u16;
        }
        DeweyNumber(Repr::Inline {
            len: self.len as u8,
            first: self.first,
            rest,
        })
    }
}

impl std::fmt::Debug for PackedDewey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedDewey({})", self.unpack())
    }
}

impl std::fmt::Debug for DeweyNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeweyNumber({self})")
    }
}

impl std::fmt::Display for DeweyNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, d) in self.digits().enumerate() {
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

    /// The inline comparison agrees with the digit-by-digit one.
    #[test]
    fn compatibility_inline_equals_general() {
        let mut all = Vec::new();
        for first in [0u32, 1, 7] {
            let base = DeweyNumber::new(first);
            all.push(base.clone());
            for a in 0..3 {
                let v1 = base.add_stage().increase(a);
                all.push(v1.clone());
                for b in 0..3 {
                    let v2 = v1.add_stage().increase(b);
                    all.push(v2.clone());
                    all.push(v2.add_stage().add_stage().increase(b));
                }
            }
        }
        for x in &all {
            for y in &all {
                let digits = |d: &DeweyNumber| d.digits().collect::<Vec<_>>();
                let (a, b) = (digits(x), digits(y));
                let want = if a.len() > b.len() {
                    a[..b.len()] == b[..]
                } else if a.len() == b.len() && !a.is_empty() {
                    let l = a.len() - 1;
                    a[..l] == b[..l] && a[l] >= b[l]
                } else {
                    false
                };
                assert_eq!(x.is_compatible_with(y), want, "{x} vs {y}");
            }
        }
    }

    /// Packing keeps the value, and only versions that fit are packed.
    #[test]
    fn packed_versions_round_trip() {
        assert_eq!(std::mem::size_of::<PackedDewey>(), 8);
        assert_eq!(std::mem::size_of::<Option<PackedDewey>>(), 8);
        let fits = [
            DeweyNumber::new(u32::MAX),
            DeweyNumber::new(1).add_stage(),
            DeweyNumber::from_digits(&[7, 255, 0, 3]),
            DeweyNumber::from_digits(&[0, 1, 2]),
        ];
        for d in &fits {
            let p = PackedDewey::pack(d).expect("fits");
            assert_eq!(&p.unpack(), d, "{d}");
            assert_eq!(p.unpack().to_string(), d.to_string());
        }
        // The packed comparison agrees with the general one.
        let mut all = vec![DeweyNumber::from_digits(&[1, 2, 3, 4, 5, 6, 7])];
        for first in [0u32, 1, 7] {
            let base = DeweyNumber::new(first);
            all.push(base.clone());
            for a in [0, 1, 2, 300] {
                let v1 = base.add_stage().increase(a);
                all.push(v1.clone());
                for b in 0..3 {
                    let v2 = v1.add_stage().increase(b);
                    all.push(v2.clone());
                    all.push(v2.add_stage().add_stage().increase(b));
                }
            }
        }
        for x in &all {
            for y in &all {
                if let Some(p) = PackedDewey::pack(y) {
                    assert_eq!(
                        p.is_compatible_from(x),
                        x.is_compatible_with(y),
                        "{x} vs {y}"
                    );
                }
            }
        }
        for d in [
            DeweyNumber::from_digits(&[7, 256]),
            DeweyNumber::from_digits(&[1, 2, 3, 4, 5]),
            DeweyNumber::from_digits(&[1, 0, 0, 0, 0, 0, 0, 0, 0]),
        ] {
            assert!(PackedDewey::pack(&d).is_none(), "{d}");
        }
    }

    #[test]
    fn sixteen_bytes_and_one_form_per_value() {
        assert_eq!(std::mem::size_of::<DeweyNumber>(), 16);
        // Long and wide versions spill to the heap and back, equal by value.
        let mut v = DeweyNumber::new(u32::MAX);
        for _ in 0..8 {
            v = v.add_stage();
        }
        assert_eq!(v.len(), 9);
        assert_eq!(v.to_string(), format!("{}.0.0.0.0.0.0.0.0", u32::MAX));
        let wide = DeweyNumber::new(3).add_stage().increase(70_000);
        assert_eq!(
            DeweyNumber::new(3).add_stage().increase(65_535).increase(1),
            DeweyNumber::from_digits(&[3, 65_536])
        );
        assert_eq!(
            DeweyNumber::new(3)
                .add_stage()
                .increase(u32::MAX)
                .to_string(),
            format!("3.{}", u32::MAX)
        );
        assert_eq!(wide.to_string(), "3.70000");
        let narrow = DeweyNumber::new(3).add_stage().increase(5);
        assert_eq!(narrow, DeweyNumber::from_digits(&[3, 5]));
        assert_eq!(wide, DeweyNumber::from_digits(&[3, 70_000]));
        assert!(wide.is_compatible_with(&narrow));
        assert!(!narrow.is_compatible_with(&wide));
        let six = DeweyNumber::from_digits(&[1, 2, 3, 4, 5, 6]);
        assert_eq!(six.add_stage().to_string(), "1.2.3.4.5.6.0");
        assert_eq!(six.add_stage().increase(1).to_string(), "1.2.3.4.5.6.1");
        assert!(six.add_stage().is_compatible_with(&six));
    }
}
