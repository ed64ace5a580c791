//! A slab in fixed-size pages: keys stay valid, and growth adds a page
//! rather than doubling and copying one vector, so at most one page is
//! slack whatever the count (a doubled vector can be half empty).

const PAGE: usize = 128;
const NONE: u32 = u32::MAX;

#[derive(Debug)]
enum Slot<T> {
    Full(T),
    /// The next free slot.
    Free(u32),
}

#[derive(Debug)]
pub(crate) struct Pages<T> {
    pages: Vec<Vec<Slot<T>>>,
    free: u32,
    len: usize,
}

impl<T> Default for Pages<T> {
    fn default() -> Self {
        Pages {
            pages: Vec::new(),
            free: NONE,
            len: 0,
        }
    }
}

impl<T> Pages<T> {
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn slot(&self, key: usize) -> Option<&Slot<T>> {
        self.pages.get(key / PAGE)?.get(key % PAGE)
    }

    fn slot_mut(&mut self, key: usize) -> Option<&mut Slot<T>> {
        self.pages.get_mut(key / PAGE)?.get_mut(key % PAGE)
    }

    /// The key the next `insert` returns.
    pub(crate) fn vacant_key(&self) -> usize {
        if self.free != NONE {
            return self.free as usize;
        }
        match self.pages.last() {
            Some(p) if p.len() < PAGE => (self.pages.len() - 1) * PAGE + p.len(),
            _ => self.pages.len() * PAGE,
        }
    }

    pub(crate) fn insert(&mut self, value: T) -> usize {
        let key = self.vacant_key();
        assert!(key < NONE as usize, "too many entries");
        if self.free != NONE {
            let next = match self.slot(key) {
                Some(Slot::Free(n)) => *n,
                _ => unreachable!("the free list holds free slots"),
            };
            self.free = next;
            *self.slot_mut(key).expect("free slot exists") = Slot::Full(value);
        } else {
            if self.pages.last().is_none_or(|p| p.len() == PAGE) {
                self.pages.push(Vec::with_capacity(PAGE));
            }
            self.pages
                .last_mut()
                .expect("pushed above")
                .push(Slot::Full(value));
        }
        self.len += 1;
        key
    }

    pub(crate) fn get(&self, key: usize) -> Option<&T> {
        match self.slot(key)? {
            Slot::Full(v) => Some(v),
            Slot::Free(_) => None,
        }
    }

    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        match self.slot_mut(key)? {
            Slot::Full(v) => Some(v),
            Slot::Free(_) => None,
        }
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, key: usize) -> bool {
        self.get(key).is_some()
    }

    /// Drops the entry at `key` where it lies (a large entry is not moved
    /// out to be dropped); panics when there is none.
    pub(crate) fn remove(&mut self, key: usize) {
        let free = self.free;
        let s = self.slot_mut(key).expect("a key of this slab");
        assert!(matches!(s, Slot::Full(_)), "removing a free slot");
        *s = Slot::Free(free);
        self.free = key as u32;
        self.len -= 1;
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &T)> + '_ {
        self.pages.iter().enumerate().flat_map(|(p, page)| {
            page.iter().enumerate().filter_map(move |(n, s)| match s {
                Slot::Full(v) => Some((p * PAGE + n, v)),
                Slot::Free(_) => None,
            })
        })
    }
}

impl<T> std::ops::Index<usize> for Pages<T> {
    type Output = T;
    fn index(&self, key: usize) -> &T {
        self.get(key).expect("a live key")
    }
}

impl<T> std::ops::IndexMut<usize> for Pages<T> {
    fn index_mut(&mut self, key: usize) -> &mut T {
        self.get_mut(key).expect("a live key")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_reused_and_stay_valid() {
        let mut p = Pages::default();
        let keys: Vec<usize> = (0..300).map(|n| p.insert(n)).collect();
        assert_eq!(keys, (0..300).collect::<Vec<_>>());
        // The entries dropped are the ones at their keys.
        assert_eq!((p[7], p[200]), (7, 200));
        p.remove(7);
        p.remove(200);
        assert_eq!((p[6], p[8], p[199], p[201]), (6, 8, 199, 201));
        assert!(!p.contains(7) && p.get(200).is_none());
        assert_eq!(p.vacant_key(), 200);
        assert_eq!(p.insert(1000), 200);
        assert_eq!(p.insert(1001), 7);
        assert_eq!(p.insert(1002), 300);
        assert_eq!((p[7], p[200], p.len()), (1001, 1000, 301));
        assert_eq!(p.iter().count(), 301);
        assert_eq!(p.pages.len(), 3);
    }
}
