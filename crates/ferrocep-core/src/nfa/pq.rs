//! A binary heap that behaves exactly like `java.util.PriorityQueue`: same
//! sift algorithms, same array order on iteration, same bulk removal. Flink
//! iterates its partial matches in heap-array order, and that order decides
//! the order of shared-buffer edges, hence which path a match extracts.

use std::cmp::Ordering;

use smallvec::SmallVec;

/// `java.util.PriorityQueue` with a comparator given per call; up to `N`
/// elements are stored inline (`N = 0`: a vector).
#[derive(Clone, Debug)]
pub struct JavaPq<T, const N: usize = 0> {
    items: SmallVec<[T; N]>,
}

impl<T, const N: usize> Default for JavaPq<T, N> {
    fn default() -> Self {
        JavaPq {
            items: SmallVec::new(),
        }
    }
}

impl<T, const N: usize> JavaPq<T, N> {
    /// A queue over `items`, which must already be in heap order (or empty).
    /// The vector's buffer is kept when it is larger than `N`.
    pub fn from_heap_vec(items: Vec<T>) -> Self {
        JavaPq {
            items: SmallVec::from_vec(items),
        }
    }

    /// A queue over `items`, which must already be in heap order.
    pub fn from_heap_items(items: SmallVec<[T; N]>) -> Self {
        JavaPq { items }
    }

    /// The backing array, in heap order.
    pub fn into_vec(self) -> Vec<T> {
        self.items.into_vec()
    }

    /// The backing storage, in heap order.
    pub fn into_items(self) -> SmallVec<[T; N]> {
        self.items
    }

    /// Whether the elements live outside the queue.
    pub fn spilled(&self) -> bool {
        self.items.spilled()
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
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.items.iter()
    }

    /// The head, if any.
    pub fn peek(&self) -> Option<&T> {
        self.items.first()
    }

    /// Removes all elements, returning them in array order.
    pub fn drain(&mut self) -> smallvec::Drain<'_, [T; N]> {
        self.items.drain(..)
    }

    /// `offer`.
    #[inline]
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
        let mut marked: SmallVec<[u32; 8]> = SmallVec::new();
        for (i, x) in self.items.iter().enumerate() {
            if remove(x) {
                marked.push(i as u32);
            }
        }
        if marked.is_empty() {
            return SmallVec::new();
        }
        let mut removed: SmallVec<[T; 2]> = SmallVec::with_capacity(marked.len());
        for &i in marked.iter().rev() {
            removed.push(self.items.remove(i as usize));
        }
        removed.reverse();
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
        let mut q: JavaPq<i32> = JavaPq::default();
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
        let mut q: JavaPq<i32> = JavaPq::default();
        for x in [5, 3, 8, 1, 9, 2] {
            q.offer(x, i32::cmp);
        }
        let removed = q.bulk_remove(|x| *x < 3, i32::cmp);
        assert_eq!(removed.to_vec(), vec![1, 2]);
        assert_eq!(q.peek(), Some(&3));
    }

    /// Inline storage behaves exactly as a vector, also when it spills.
    #[test]
    fn inline_storage_is_the_same_queue() {
        let mut a: JavaPq<i32> = JavaPq::default();
        let mut b: JavaPq<i32, 2> = JavaPq::default();
        for x in [5, 3, 8, 1, 9, 2, 7] {
            a.offer(x, i32::cmp);
            b.offer(x, i32::cmp);
        }
        assert!(b.spilled());
        let ra = a.bulk_remove(|x| x % 3 == 0 || *x == 1, i32::cmp);
        let rb = b.bulk_remove(|x| x % 3 == 0 || *x == 1, i32::cmp);
        assert_eq!(ra, rb);
        assert_eq!(a.iter().collect::<Vec<_>>(), b.iter().collect::<Vec<_>>());
        while b.len() > 2 {
            assert_eq!(a.poll(i32::cmp), b.poll(i32::cmp));
        }
        assert_eq!(a.iter().collect::<Vec<_>>(), b.iter().collect::<Vec<_>>());
    }
}
