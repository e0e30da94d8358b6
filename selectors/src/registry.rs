//! The fd → key bookkeeping, written once for every backend (CPython's
//! `_BaseSelectorImpl._fd_to_key`).
//!
//! Keys live in a vector indexed by fd, so the lookup `select` does for each
//! ready fd is one bounds check and one load. File descriptors are small
//! integers in practice; a key for an fd at or above [`DENSE_LIMIT`] (which
//! only an absurd caller can produce, since the poll and select backends do not
//! ask the kernel at `register`) goes to a hash map instead of growing the
//! vector to gigabytes.

use std::collections::hash_map::{self, HashMap};
use std::iter::FilterMap;
use std::os::unix::io::RawFd;
use std::slice;

use crate::SelectorKey;

/// File descriptors below this are stored densely, by index.
const DENSE_LIMIT: usize = 1 << 16;

/// The keys of one selector, by fd.
#[derive(Debug)]
pub(crate) struct Registry<T> {
    dense: Vec<Option<SelectorKey<T>>>,
    sparse: HashMap<RawFd, SelectorKey<T>>,
    len: usize,
}

impl<T> Registry<T> {
    pub(crate) fn new() -> Self {
        Registry { dense: Vec::new(), sparse: HashMap::new(), len: 0 }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The dense index for `fd`, or `None` if it belongs in the sparse map
    /// (negative fds never get this far: `register` refuses them).
    #[inline]
    fn dense_index(fd: RawFd) -> Option<usize> {
        usize::try_from(fd).ok().filter(|&i| i < DENSE_LIMIT)
    }

    #[inline]
    pub(crate) fn get(&self, fd: RawFd) -> Option<&SelectorKey<T>> {
        match Self::dense_index(fd) {
            Some(i) => self.dense.get(i).and_then(Option::as_ref),
            None => self.get_sparse(fd),
        }
    }

    /// The lookup of a huge fd, out of line: inlined, the hash map's lookup
    /// made every `select` set up its hasher's keys, needed or not.
    #[cold]
    #[inline(never)]
    fn get_sparse(&self, fd: RawFd) -> Option<&SelectorKey<T>> {
        self.sparse.get(&fd)
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, fd: RawFd) -> Option<&mut SelectorKey<T>> {
        match Self::dense_index(fd) {
            Some(i) => self.dense.get_mut(i).and_then(Option::as_mut),
            None => self.sparse.get_mut(&fd),
        }
    }

    /// Stores `key`, which the caller has checked is not yet registered.
    ///
    /// The common case (a small fd whose slot already exists) is kept small
    /// enough to inline into `register`; growing the table and the hash map
    /// live out of line.
    #[inline]
    pub(crate) fn insert(&mut self, key: SelectorKey<T>) -> &SelectorKey<T> {
        match Self::dense_index(key.fd) {
            Some(i) if i < self.dense.len() => {
                self.len += 1;
                self.dense[i].insert(key)
            }
            _ => self.insert_slow(key),
        }
    }

    #[cold]
    #[inline(never)]
    fn insert_slow(&mut self, key: SelectorKey<T>) -> &SelectorKey<T> {
        self.len += 1;
        let fd = key.fd;
        match Self::dense_index(fd) {
            Some(i) => {
                if self.dense.len() <= i {
                    self.dense.resize_with(i + 1, || None);
                }
                self.dense[i].insert(key)
            }
            None => match self.sparse.entry(fd) {
                hash_map::Entry::Vacant(slot) => slot.insert(key),
                hash_map::Entry::Occupied(mut slot) => {
                    slot.insert(key);
                    self.len -= 1;
                    slot.into_mut()
                }
            },
        }
    }

    #[inline]
    pub(crate) fn remove(&mut self, fd: RawFd) -> Option<SelectorKey<T>> {
        let removed = match Self::dense_index(fd) {
            Some(i) => self.dense.get_mut(i).and_then(Option::take),
            None => self.sparse.remove(&fd),
        };
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    pub(crate) fn keys(&self) -> Keys<'_, T> {
        Keys {
            dense: self.dense.iter().filter_map(Option::as_ref),
            sparse: self.sparse.values(),
            remaining: self.len,
        }
    }
}

type DenseKeys<'a, T> = FilterMap<
    slice::Iter<'a, Option<SelectorKey<T>>>,
    fn(&Option<SelectorKey<T>>) -> Option<&SelectorKey<T>>,
>;

/// Iterator over a selector's keys (Python's `get_map().values()`), in no
/// particular order. Returned by [`Selector::keys`](crate::Selector::keys).
pub struct Keys<'a, T> {
    dense: DenseKeys<'a, T>,
    sparse: hash_map::Values<'a, RawFd, SelectorKey<T>>,
    remaining: usize,
}

impl<'a, T> Iterator for Keys<'a, T> {
    type Item = &'a SelectorKey<T>;

    fn next(&mut self) -> Option<Self::Item> {
        let key = self.dense.next().or_else(|| self.sparse.next())?;
        self.remaining -= 1;
        Some(key)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<T> ExactSizeIterator for Keys<'_, T> {}

impl<T> std::fmt::Debug for Keys<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").field("remaining", &self.remaining).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Events;

    fn key(fd: RawFd) -> SelectorKey<RawFd> {
        SelectorKey { fd, events: Events::READ, data: fd / 2 }
    }

    #[test]
    fn dense_and_sparse_fds_behave_alike() {
        let mut registry = Registry::new();
        let huge = RawFd::MAX - 1;
        for fd in [0, 7, huge] {
            assert_eq!(registry.insert(key(fd)).data, fd / 2);
        }
        assert_eq!(registry.len(), 3);
        assert_eq!(registry.get(huge).map(|k| k.fd), Some(huge));
        assert!(registry.get(8).is_none());
        assert!(registry.dense.len() < 100, "a huge fd must not grow the dense table");

        let mut fds: Vec<RawFd> = registry.keys().map(|k| k.fd).collect();
        fds.sort_unstable();
        assert_eq!(fds, [0, 7, huge]);
        assert_eq!(registry.keys().len(), 3);

        assert_eq!(registry.remove(huge).map(|k| k.fd), Some(huge));
        assert_eq!(registry.remove(7).map(|k| k.fd), Some(7));
        assert!(registry.remove(7).is_none());
        assert_eq!(registry.len(), 1);
    }

    #[test]
    fn get_mut_changes_the_stored_key() {
        let mut registry = Registry::new();
        registry.insert(key(3));
        registry.get_mut(3).expect("registered").events = Events::WRITE;
        assert_eq!(registry.get(3).map(|k| k.events), Some(Events::WRITE));
    }
}
