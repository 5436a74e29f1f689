//! A binary heap that behaves exactly like `java.util.PriorityQueue`: same
//! sift algorithms, same array order on iteration, same bulk removal. Flink
//! iterates its partial matches in heap-array order, and that order decides
//! the order of shared-buffer edges, hence which path a match extracts.

use std::cmp::Ordering;

use smallvec::SmallVec;

/// `java.util.PriorityQueue` with a comparator given per call.
#[derive(Clone, Debug)]
pub struct JavaPq<T> {
    items: Vec<T>,
}

impl<T> Default for JavaPq<T> {
    fn default() -> Self {
        JavaPq { items: Vec::new() }
    }
}

impl<T> JavaPq<T> {
    /// A queue over `items`, which must already be in heap order (or empty).
    pub fn from_heap_vec(items: Vec<T>) -> Self {
        JavaPq { items }
    }

    /// The backing array, in heap order.
    pub fn into_vec(self) -> Vec<T> {
        self.items
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Elements in heap-array order (Java's iteration order).
    #[cfg(test)]
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.items.iter()
    }

    /// The head, if any.
    pub fn peek(&self) -> Option<&T> {
        self.items.first()
    }

    /// Removes all elements, returning them in array order.
    pub fn drain(&mut self) -> std::vec::Drain<'_, T> {
        self.items.drain(..)
    }

    /// `offer`.
    pub fn offer(&mut self, x: T, cmp: impl Fn(&T, &T) -> Ordering) {
        self.items.push(x);
        let mut k = self.items.len() - 1;
        while k > 0 {
            let parent = (k - 1) >> 1;
            if cmp(&self.items[k], &self.items[parent]) != Ordering::Less {
                break;
            }
            self.items.swap(k, parent);
            k = parent;
        }
    }

    /// `poll`.
    pub fn poll(&mut self, cmp: impl Fn(&T, &T) -> Ordering) -> Option<T> {
        if self.items.is_empty() {
            return None;
        }
        let last = self.items.len() - 1;
        self.items.swap(0, last);
        let result = self.items.pop();
        if !self.items.is_empty() {
            self.sift_down(0, &cmp);
        }
        result
    }

    fn sift_down(&mut self, mut k: usize, cmp: &impl Fn(&T, &T) -> Ordering) {
        let n = self.items.len();
        let half = n >> 1;
        while k < half {
            let mut child = (k << 1) + 1;
            let right = child + 1;
            if right < n && cmp(&self.items[child], &self.items[right]) == Ordering::Greater {
                child = right;
            }
            if cmp(&self.items[k], &self.items[child]) != Ordering::Greater {
                break;
            }
            self.items.swap(k, child);
            k = child;
        }
    }

    /// `removeIf` / `removeAll`: drops the elements for which `remove` says
    /// so (visiting in array order), keeps the others in order, re-heapifies.
    /// Returns the removed elements in array order.
    pub fn bulk_remove(
        &mut self,
        mut remove: impl FnMut(&T) -> bool,
        cmp: impl Fn(&T, &T) -> Ordering,
    ) -> SmallVec<[T; 2]> {
        let removed: SmallVec<[T; 2]> = self.items.extract_if(.., |x| remove(x)).collect();
        if removed.is_empty() {
            return removed;
        }
        let n = self.items.len();
        for i in (0..n / 2).rev() {
            self.sift_down(i, &cmp);
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_a_min_heap() {
        let mut q = JavaPq::default();
        for x in [5, 3, 8, 1, 9, 2] {
            q.offer(x, i32::cmp);
        }
        // Java: offer 5,3,8,1,9,2 -> [1,3,2,5,9,8]
        assert_eq!(
            q.iter().copied().collect::<Vec<_>>(),
            vec![1, 3, 2, 5, 9, 8]
        );
        let mut out = Vec::new();
        while let Some(x) = q.poll(i32::cmp) {
            out.push(x);
        }
        assert_eq!(out, vec![1, 2, 3, 5, 8, 9]);
    }

    #[test]
    fn bulk_remove_reheapifies() {
        let mut q = JavaPq::default();
        for x in [5, 3, 8, 1, 9, 2] {
            q.offer(x, i32::cmp);
        }
        let removed = q.bulk_remove(|x| *x < 3, i32::cmp);
        assert_eq!(removed.to_vec(), vec![1, 2]);
        assert_eq!(q.peek(), Some(&3));
    }
}
